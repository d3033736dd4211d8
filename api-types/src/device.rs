//! The device flow (RFC 8628) and the token endpoint (RFC 6749): discovery, the device
//! authorization form and answer, the token form (device-code and refresh grants), the
//! token answer and the OAuth error body with its error codes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The grant type of the device-code grant.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Where and how a command-line client signs in (`GET /api/v1/auth/discovery`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"issuer": "https://gateway.example.com",
    "client_id": "tokengate-cli", "resource": "https://gateway.example.com/api/v1",
    "scopes": ["account", "keys", "billing", "admin", "offline_access"],
    "device_authorization_endpoint": "https://gateway.example.com/api/v1/auth/device/code",
    "token_endpoint": "https://gateway.example.com/api/v1/auth/token"})))]
pub struct Discovery {
    /// The server's public URL.
    pub issuer: String,
    /// `tokengate-cli`.
    pub client_id: String,
    /// The access tokens' audience: `<public_url>/api/v1`.
    pub resource: String,
    /// The scopes a device grant may ask for.
    pub scopes: Vec<String>,
    pub device_authorization_endpoint: String,
    pub token_endpoint: String,
}

/// Device authorization request (RFC 8628 §3.1), form-encoded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceCodeForm {
    /// `tokengate-cli`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(example = "tokengate-cli", required = true)
    )]
    pub client_id: String,
    /// Space-separated scopes from discovery; default `account keys offline_access`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(example = "account keys billing offline_access")
    )]
    pub scope: Option<String>,
    /// The `resource` from discovery (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// A pending device authorization (RFC 8628 §3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"device_code": "vXq0…",
    "user_code": "BCDF-GHJK", "verification_uri": "https://gateway.example.com/device",
    "verification_uri_complete": "https://gateway.example.com/device?user_code=BCDF-GHJK",
    "expires_in": 600, "interval": 5})))]
pub struct DeviceAuthorization {
    /// Secret; poll the token endpoint with it.
    pub device_code: String,
    /// Show this to the person; they check it on the approval page.
    pub user_code: String,
    /// The portal page where the person signs in and approves.
    pub verification_uri: String,
    pub verification_uri_complete: String,
    /// Seconds until the codes expire (600).
    pub expires_in: i64,
    /// Seconds to wait between polls (5); polling faster gets `slow_down`.
    pub interval: i64,
}

/// The grant a token request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum GrantType {
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4).
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
    /// `refresh_token` (RFC 6749 §6).
    #[serde(rename = "refresh_token")]
    RefreshToken,
}

/// Token request (RFC 8628 §3.4 device code, or RFC 6749 §6 refresh), form-encoded.
// `grant_type` is kept as sent, so that an unknown one is answered `unsupported_grant_type`
// rather than refused as a malformed form; `TokenForm::grant` reads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenForm {
    /// `urn:ietf:params:oauth:grant-type:device_code` or `refresh_token`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = GrantType, required = true, example = "urn:ietf:params:oauth:grant-type:device_code")
    )]
    pub grant_type: String,
    /// `tokengate-cli`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(example = "tokengate-cli", required = true)
    )]
    pub client_id: String,
    /// For the device-code grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_code: Option<String>,
    /// For the refresh grant; refresh tokens rotate on every use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Optional; must equal the resource of the device request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

impl TokenForm {
    /// The grant asked for, or `None` when `grant_type` is none of ours.
    pub fn grant(&self) -> Option<GrantType> {
        match self.grant_type.as_str() {
            DEVICE_CODE_GRANT => Some(GrantType::DeviceCode),
            "refresh_token" => Some(GrantType::RefreshToken),
            _ => None,
        }
    }

    /// A device-code poll.
    pub fn device_code(client_id: &str, device_code: &str, resource: Option<&str>) -> TokenForm {
        TokenForm {
            grant_type: DEVICE_CODE_GRANT.into(),
            client_id: client_id.into(),
            device_code: Some(device_code.into()),
            refresh_token: None,
            resource: resource.map(str::to_string),
        }
    }

    /// A refresh.
    pub fn refresh(client_id: &str, refresh_token: &str) -> TokenForm {
        TokenForm {
            grant_type: "refresh_token".into(),
            client_id: client_id.into(),
            device_code: None,
            refresh_token: Some(refresh_token.into()),
            resource: None,
        }
    }
}

/// Tokens for the Account API (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"access_token": "eyJhbGciOiJIUzI1NiJ9…",
    "token_type": "Bearer", "expires_in": 3600, "refresh_token": "k3J…",
    "scope": "account keys offline_access"})))]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>` to `/api/v1`. Valid 1 hour.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque, valid 30 days, single use: each refresh returns a new one.
    pub refresh_token: String,
    /// The granted scopes, space-separated.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub scope: String,
}

/// The error codes of the device flow and the token endpoint (RFC 6749 §5.2, RFC 8628
/// §3.5, RFC 8707 `invalid_target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OAuthErrorCode {
    /// Not yet approved: poll again after `interval`.
    AuthorizationPending,
    /// Polling too fast (or too many codes asked for): wait longer.
    SlowDown,
    /// The device code expired; start again.
    ExpiredToken,
    /// The person denied the request.
    AccessDenied,
    /// Unknown, used or expired code or refresh token, or an inactive account.
    InvalidGrant,
    /// The client id is not `tokengate-cli`.
    InvalidClient,
    /// A required field is missing or the body is not a form.
    InvalidRequest,
    /// An unknown scope was asked for.
    InvalidScope,
    /// The resource is not this server's API.
    InvalidTarget,
    /// The client may not use this grant.
    UnauthorizedClient,
    /// The grant type is none of the supported ones.
    UnsupportedGrantType,
    /// Command-line login is disabled.
    TemporarilyUnavailable,
    /// The server failed; try again.
    ServerError,
}

impl OAuthErrorCode {
    /// The code as written on the wire (`authorization_pending`).
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::AuthorizationPending => "authorization_pending",
            OAuthErrorCode::SlowDown => "slow_down",
            OAuthErrorCode::ExpiredToken => "expired_token",
            OAuthErrorCode::AccessDenied => "access_denied",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthErrorCode::ServerError => "server_error",
        }
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth 2.0 error body (RFC 6749 §5.2, RFC 8628 §3.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"error": "authorization_pending",
    "error_description": "The user has not approved yet."})))]
pub struct OAuthError {
    pub error: OAuthErrorCode,
    /// A sentence for people.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub error_description: String,
}

impl OAuthError {
    pub fn new(error: OAuthErrorCode, description: impl Into<String>) -> OAuthError {
        OAuthError {
            error,
            error_description: description.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_codes_are_the_rfc_names() {
        for code in [
            OAuthErrorCode::AuthorizationPending,
            OAuthErrorCode::SlowDown,
            OAuthErrorCode::ExpiredToken,
            OAuthErrorCode::AccessDenied,
            OAuthErrorCode::InvalidGrant,
            OAuthErrorCode::InvalidClient,
            OAuthErrorCode::InvalidRequest,
            OAuthErrorCode::InvalidScope,
            OAuthErrorCode::InvalidTarget,
            OAuthErrorCode::UnauthorizedClient,
            OAuthErrorCode::UnsupportedGrantType,
            OAuthErrorCode::TemporarilyUnavailable,
            OAuthErrorCode::ServerError,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
        let e: OAuthError = serde_json::from_str(r#"{"error":"slow_down"}"#).unwrap();
        assert_eq!(e, OAuthError::new(OAuthErrorCode::SlowDown, ""));
        assert_eq!(
            serde_json::to_value(OAuthError::new(OAuthErrorCode::ExpiredToken, "x")).unwrap(),
            json!({"error": "expired_token", "error_description": "x"})
        );
    }

    #[test]
    fn token_forms_encode_and_name_their_grant() {
        let f = TokenForm::device_code("tokengate-cli", "abc", None);
        assert_eq!(f.grant(), Some(GrantType::DeviceCode));
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"grant_type": DEVICE_CODE_GRANT, "client_id": "tokengate-cli", "device_code": "abc"})
        );
        let r = TokenForm::refresh("tokengate-cli", "rt");
        assert_eq!(r.grant(), Some(GrantType::RefreshToken));
        let other = TokenForm {
            grant_type: "password".into(),
            ..Default::default()
        };
        assert_eq!(other.grant(), None);
    }
}

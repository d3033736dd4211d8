//! The error body of `/api/v1` and of the payment webhook:
//! `{"error":{"message","type","code"}}`. The server writes it for every refusal, the
//! portal and the CLI read it to show the message.

use serde::{Deserialize, Serialize};

/// The error body of `/api/v1` and of the payment webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"error": {
    "message": "Sign in or present a valid access token.",
    "type": "authentication_error", "code": "unauthorized"}})))]
pub struct ApiErrorBody {
    pub error: ApiErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiErrorDetail {
    pub message: String,
    /// `authentication_error`, `permission_error`, `invalid_request_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `unauthorized`, `forbidden`, `not_found`, `invalid_request`, `conflict`,
    /// `validation_error`, `unavailable`, `payments_unavailable` or `internal_error`.
    pub code: String,
}

impl ApiErrorBody {
    pub fn new(
        message: impl Into<String>,
        kind: impl Into<String>,
        code: impl Into<String>,
    ) -> ApiErrorBody {
        ApiErrorBody {
            error: ApiErrorDetail {
                message: message.into(),
                kind: kind.into(),
                code: code.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_is_the_documented_shape() {
        let body = ApiErrorBody::new("No such key.", "invalid_request_error", "not_found");
        let wire = json!({"error": {"message": "No such key.",
            "type": "invalid_request_error", "code": "not_found"}});
        assert_eq!(serde_json::to_value(&body).unwrap(), wire);
        assert_eq!(serde_json::from_value::<ApiErrorBody>(wire).unwrap(), body);
    }
}

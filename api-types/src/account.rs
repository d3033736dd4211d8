//! The account API of the signed-in user (`/api/v1/me…`, `/api/v1/balance`, the device
//! request lookup): profile, sessions, balance, API keys, usage, sign-out everywhere.
//! One type per request and response body; the server answers with them, the portal and
//! the CLI read them.

use serde::{Deserialize, Deserializer, Serialize};

use crate::kinds::{KeyStatus, Role, UserStatus};
use crate::{Timestamp, Usd};

/// The signed-in user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 1, "display_name": "Ada",
    "email": "ada@example.com", "email_verified": true, "balance_usd": "5.00", "status": "active",
    "role": "user", "created_at": "2026-11-01T09:30:00Z"})))]
pub struct Me {
    pub id: i64,
    pub display_name: String,
    pub email: String,
    /// Whether the address was verified (the link mailed at sign-up, an operator creating
    /// the account, or an identity provider vouching for it).
    pub email_verified: bool,
    /// Balance less what running requests hold.
    pub balance_usd: Usd,
    pub status: UserStatus,
    pub role: Role,
    pub created_at: Timestamp,
}

/// Profile changes (`PATCH /me`); absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"display_name": "Ada Lovelace"})))]
pub struct ProfilePatch {
    /// 1 to 100 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// One live portal session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"created_at": "2026-11-01T09:30:00Z",
    "expires_at": "2026-12-01T09:30:00Z"})))]
pub struct SessionInfo {
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The account balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"balance_usd": "5.00", "currency": "USD"})))]
pub struct Balance {
    /// Balance less what running requests hold.
    pub balance_usd: Usd,
    /// `USD`.
    pub currency: String,
}

/// An API key (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 7, "name": "fieryeye",
    "key_prefix": "sk-tg-AbCdEf", "status": "active", "balance_usd": "5.00", "spend_limit_usd": null,
    "spent_usd": "0.00", "models": null, "group_id": null, "group": null, "rpm": null, "tpm": null,
    "created_at": "2026-11-01T09:30:00Z", "last_used_at": null, "expires_at": null})))]
pub struct ApiKeyView {
    pub id: i64,
    pub name: String,
    /// The first characters of the secret, for recognising it.
    pub key_prefix: String,
    /// A key past its `expires_at` stays `active` and is refused by time.
    pub status: KeyStatus,
    /// What this key can still spend: the account balance, or less under a spend limit.
    pub balance_usd: Usd,
    /// The most this key may spend in total; null = no limit.
    pub spend_limit_usd: Option<Usd>,
    /// Spent so far with this key.
    pub spent_usd: Usd,
    /// Allowed models and aliases (`provider/*` patterns allowed); null = all.
    pub models: Option<Vec<String>>,
    pub group_id: Option<i64>,
    /// The key group's name.
    pub group: Option<String>,
    /// Requests per minute; null = no limit of its own.
    pub rpm: Option<i64>,
    /// Tokens per minute; null = no limit of its own.
    pub tpm: Option<i64>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

/// A new (or rotated) API key with its secret — shown in this response only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 7, "name": "fieryeye",
    "key_prefix": "sk-tg-AbCdEf", "raw": "sk-tg-AbCdEf…", "status": "active", "balance_usd": "5.00",
    "spend_limit_usd": null, "spent_usd": "0.00", "models": null, "group_id": null, "group": null,
    "rpm": null, "tpm": null, "created_at": "2026-11-01T09:30:00Z", "last_used_at": null,
    "expires_at": null})))]
pub struct CreatedKey {
    /// The secret (`sk-tg-…`). Store it now: it is never shown again.
    pub raw: String,
    pub id: i64,
    pub name: String,
    pub key_prefix: String,
    pub status: KeyStatus,
    pub balance_usd: Usd,
    pub spend_limit_usd: Option<Usd>,
    pub spent_usd: Usd,
    pub models: Option<Vec<String>>,
    pub group_id: Option<i64>,
    /// The key group's name.
    pub group: Option<String>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

impl CreatedKey {
    /// The key as listed, with its secret `raw` added.
    pub fn new(key: ApiKeyView, raw: String) -> CreatedKey {
        let ApiKeyView {
            id,
            name,
            key_prefix,
            status,
            balance_usd,
            spend_limit_usd,
            spent_usd,
            models,
            group_id,
            group,
            rpm,
            tpm,
            created_at,
            last_used_at,
            expires_at,
        } = key;
        CreatedKey {
            raw,
            id,
            name,
            key_prefix,
            status,
            balance_usd,
            spend_limit_usd,
            spent_usd,
            models,
            group_id,
            group,
            rpm,
            tpm,
            created_at,
            last_used_at,
            expires_at,
        }
    }

    /// The secret and the key as listed.
    pub fn into_parts(self) -> (String, ApiKeyView) {
        let key = ApiKeyView {
            id: self.id,
            name: self.name,
            key_prefix: self.key_prefix,
            status: self.status,
            balance_usd: self.balance_usd,
            spend_limit_usd: self.spend_limit_usd,
            spent_usd: self.spent_usd,
            models: self.models,
            group_id: self.group_id,
            group: self.group,
            rpm: self.rpm,
            tpm: self.tpm,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            expires_at: self.expires_at,
        };
        (self.raw, key)
    }
}

/// A revoked key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 7, "status": "revoked"})))]
pub struct RevokedKey {
    pub id: i64,
    /// `revoked`.
    pub status: KeyStatus,
}

/// A new API key (`POST /me/keys`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "fieryeye"})))]
pub struct CreateKeyRequest {
    /// A name to recognise the key by, e.g. the project using it (1 to 100 characters).
    #[cfg_attr(feature = "openapi", schema(example = "fieryeye"))]
    pub name: String,
    /// After this time the key answers 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The most this key may spend in total (its requests are held against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_limit_usd: Option<Usd>,
    /// Models and aliases the key may use (exact names or `provider/*`); absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = json!(["tokengate-fast", "openai/*"])))]
    pub models: Option<Vec<String>>,
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub rpm: Option<i64>,
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub tpm: Option<i64>,
    /// A key group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl CreateKeyRequest {
    /// The fields whose invalid values are answered 422 (a value the server cannot use)
    /// rather than 400 (a body of the wrong shape).
    pub const VALUE_FIELDS: &'static [&'static str] =
        &["expires_at", "spend_limit_usd", "models", "rpm", "tpm"];
}

/// Changes to a key (`PATCH /me/keys/{id}`): absent fields stay, `null` clears a limit.
// In Rust, `None` is an absent field and `Some(None)` a `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"status": "disabled"})))]
pub struct UpdateKeyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `active` or `disabled` (a revoked key stays revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "disabled"))]
    pub status: Option<KeyStatus>,
    /// A new expiry; `null` clears it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Timestamp>))]
    pub expires_at: Option<Option<Timestamp>>,
    /// A new spend limit; `null` clears it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Usd>))]
    pub spend_limit_usd: Option<Option<Usd>>,
    /// Allowed models and aliases; `null` allows all.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub models: Option<Option<Vec<String>>>,
    /// Requests per minute; `null` clears the limit.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>, minimum = 1))]
    pub rpm: Option<Option<i64>>,
    /// Tokens per minute; `null` clears the limit.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>, minimum = 1))]
    pub tpm: Option<Option<i64>>,
}

impl UpdateKeyRequest {
    /// The fields whose invalid values are answered 422 rather than 400.
    pub const VALUE_FIELDS: &'static [&'static str] = &[
        "status",
        "expires_at",
        "spend_limit_usd",
        "models",
        "rpm",
        "tpm",
    ];
}

/// A field that is present (even as `null`) deserializes to `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The query of the usage routes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct UsageQuery {
    /// Days back from now, 1 to 365 (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 365, example = 7))]
    pub days: Option<i64>,
}

/// Usage over the last `days` days (successful requests only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"range_days": 7, "total_requests": 142,
    "total_tokens_in": 12450, "total_tokens_out": 3200, "total_cost_usd": "0.18"})))]
pub struct UsageSummary {
    pub range_days: i64,
    pub total_requests: i64,
    pub total_tokens_in: i64,
    pub total_tokens_out: i64,
    /// Exact sum of the requests' stored costs.
    pub total_cost_usd: Usd,
}

/// Usage per UTC day, per model and per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"range_days": 1, "total_requests": 3,
    "total_tokens_in": 300, "total_tokens_out": 90, "total_cost_usd": "0.00015",
    "total_cost_nano": 150000,
    "days": [{"date": "2026-11-25", "requests": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": "0.00", "cost_nano": 0},
             {"date": "2026-11-26", "requests": 3, "tokens_in": 300, "tokens_out": 90, "cost_usd": "0.00015", "cost_nano": 150000}],
    "by_model": [{"model": "mock/fast-1", "requests": 3, "tokens_in": 300, "tokens_out": 90, "cost_usd": "0.00015", "cost_nano": 150000}],
    "by_key": [{"key_id": 7, "key_name": "fieryeye", "requests": 3, "tokens_in": 300, "tokens_out": 90, "cost_usd": "0.00015", "cost_nano": 150000}]})))]
pub struct UsageDaily {
    pub range_days: i64,
    pub total_requests: i64,
    pub total_tokens_in: i64,
    pub total_tokens_out: i64,
    pub total_cost_usd: Usd,
    /// The same total in nano-USD.
    pub total_cost_nano: i64,
    /// Every day of the range, oldest first, zeros included.
    pub days: Vec<UsageDay>,
    pub by_model: Vec<UsageByModel>,
    pub by_key: Vec<UsageByKey>,
}

/// One day's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageDay {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub requests: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_usd: Usd,
    pub cost_nano: i64,
}

/// One model's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageByModel {
    pub model: String,
    pub requests: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_usd: Usd,
    pub cost_nano: i64,
}

/// One key's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageByKey {
    pub key_id: Option<i64>,
    /// The key's name; null when the key is gone.
    pub key_name: Option<String>,
    pub requests: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_usd: Usd,
    pub cost_nano: i64,
}

/// Every session and token of the account was ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"signed_out": true})))]
pub struct SignedOut {
    /// `true`.
    pub signed_out: bool,
}

/// The query of `GET /auth/device/request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct DeviceRequestQuery {
    /// The code the command-line client shows, e.g. `BCDF-GHJK`.
    #[cfg_attr(feature = "openapi", param(example = "BCDF-GHJK"))]
    pub user_code: String,
}

/// A pending device request, for the approval page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"user_code": "BCDF-GHJK",
    "client_id": "tokengate-cli", "scope": "account keys offline_access", "expires_in": 540})))]
pub struct DeviceRequestView {
    pub user_code: String,
    pub client_id: String,
    /// Space-separated scopes asked for.
    pub scope: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_patch_tells_absent_from_null() {
        let p: UpdateKeyRequest =
            serde_json::from_value(json!({"expires_at": null, "rpm": 5})).unwrap();
        assert_eq!(p.expires_at, Some(None));
        assert_eq!(p.rpm, Some(Some(5)));
        assert_eq!(p.spend_limit_usd, None);
        assert_eq!(p.models, None);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"expires_at": null, "rpm": 5})
        );
        assert!(serde_json::from_value::<UpdateKeyRequest>(json!({"nmae": "x"})).is_err());
    }

    #[test]
    fn created_key_round_trips_and_splits() {
        let v = json!({"id": 7, "name": "k", "key_prefix": "sk-tg-Ab", "raw": "sk-tg-Abcdef",
            "status": "active", "balance_usd": "4.99985", "spend_limit_usd": null,
            "spent_usd": "0.00015", "models": null, "group_id": null, "group": null, "rpm": null,
            "tpm": null, "created_at": "2026-11-01T09:30:00Z", "last_used_at": null,
            "expires_at": null});
        let k: CreatedKey = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(k.balance_usd, Usd(4_999_850_000));
        assert_eq!(serde_json::to_value(&k).unwrap(), v);
        let (raw, view) = k.clone().into_parts();
        assert_eq!(raw, "sk-tg-Abcdef");
        assert_eq!(CreatedKey::new(view, raw), k);
    }

    #[test]
    fn create_request_omits_what_is_not_set() {
        let r = CreateKeyRequest {
            name: "ci".into(),
            spend_limit_usd: Some(Usd(5_000_000_000)),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"name": "ci", "spend_limit_usd": "5.00"})
        );
    }
}

//! The closed sets of words tokengate stores and sends: account, key, payment and grant
//! statuses, roles, provider kinds, ledger entry kinds, rate-limit kinds and the failure
//! kind of a request-log row. Each is defined once here; its string form (`as_str`, serde,
//! `Display`, `FromStr`, `TryFrom<String>`) is exactly the text the database columns and
//! the wire carry, so core reads a column with `#[sqlx(try_from = "String")]` and writes
//! it with `.bind(x.as_str())`. An unknown string is refused with [`UnknownKind`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A string that names no variant of the enum it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind {
    /// What was being parsed, e.g. `"user status"`.
    pub what: &'static str,
    /// The refused text.
    pub value: String,
}

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.value)
    }
}

impl std::error::Error for UnknownKind {}

/// Gives a unit-variant enum its string forms: `ALL`, `as_str`, `Display`, `FromStr`,
/// `TryFrom<String>` and `TryFrom<&str>`. The serde attributes on the enum must produce the
/// same strings (the unit tests check every variant).
macro_rules! string_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stored and wire form.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownKind;
            fn from_str(s: &str) -> Result<Self, UnknownKind> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(UnknownKind { what: $what, value: s.to_string() }),
                }
            }
        }

        impl TryFrom<String> for $ty {
            type Error = UnknownKind;
            fn try_from(s: String) -> Result<Self, UnknownKind> {
                s.parse()
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = UnknownKind;
            fn try_from(s: &str) -> Result<Self, UnknownKind> {
                s.parse()
            }
        }

        impl From<$ty> for &'static str {
            fn from(v: $ty) -> &'static str {
                v.as_str()
            }
        }
    };
}

/// Whether an account may sign in and spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UserStatus {
    Active,
    /// Suspended by an administrator: no sign-in, no requests.
    Suspended,
}
string_enum!(UserStatus, "user status", { Active => "active", Suspended => "suspended" });

/// What an account may do: `admin` runs the server, `user` spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    User,
    Admin,
}
string_enum!(Role, "role", { User => "user", Admin => "admin" });

/// The stored state of an API key. Expiry is not a status: a key past its `expires_at` is
/// still `active` in the table and refused by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KeyStatus {
    Active,
    /// Turned off by its owner; can be turned on again.
    Disabled,
    /// Final: the key never works again and cannot be changed.
    Revoked,
}
string_enum!(KeyStatus, "API key status", {
    Active => "active",
    Disabled => "disabled",
    Revoked => "revoked",
});

/// The state of a top-up checkout session. Only `pending` changes; `paid` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PaymentStatus {
    Pending,
    Paid,
    Failed,
    Expired,
}
string_enum!(PaymentStatus, "payment status", {
    Pending => "pending",
    Paid => "paid",
    Failed => "failed",
    Expired => "expired",
});

/// The state of a device-flow grant (RFC 8628): pending until a signed-in user approves or
/// denies it; an approved grant becomes `used` when its client collects the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum GrantStatus {
    Pending,
    Approved,
    Denied,
    Used,
}
string_enum!(GrantStatus, "device grant status", {
    Pending => "pending",
    Approved => "approved",
    Denied => "denied",
    Used => "used",
});

/// The state of a refresh token: `active` until spent (`rotated`, its successor takes
/// over) or its family is revoked (`revoked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RefreshStatus {
    Active,
    Rotated,
    Revoked,
}
string_enum!(RefreshStatus, "refresh token status", {
    Active => "active",
    Rotated => "rotated",
    Revoked => "revoked",
});

/// The adapter an upstream provider is spoken to with. One definition for the
/// configuration file, the catalog and the gateway's adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProviderKind {
    /// The OpenAI API and every server speaking its wire format.
    #[serde(rename = "openai")]
    OpenAi,
    /// The Anthropic Messages API.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// The built-in mock upstream (no network; for demos and tests).
    #[serde(rename = "mock")]
    Mock,
}
string_enum!(ProviderKind, "provider kind", {
    OpenAi => "openai",
    Anthropic => "anthropic",
    Mock => "mock",
});

impl ProviderKind {
    /// Whether the provider needs a `base_url` (every kind but the in-process mock).
    pub const fn needs_base_url(self) -> bool {
        !matches!(self, ProviderKind::Mock)
    }
}

/// The kind of a ledger entry: why a balance changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EntryKind {
    /// A paid top-up (credit).
    Topup,
    /// Metered `/v1` usage (debit).
    Usage,
    /// An administrator's correction (either sign).
    Adjustment,
    /// Money returned to the payer of a top-up (debit of the balance).
    Refund,
    /// Promotional credit.
    Promo,
    /// A payment the customer disputed with their bank (a chargeback): a debit.
    Dispute,
}
string_enum!(EntryKind, "ledger entry kind", {
    Topup => "topup",
    Usage => "usage",
    Adjustment => "adjustment",
    Refund => "refund",
    Promo => "promo",
    Dispute => "dispute",
});

/// The per-key limit that refused a request: requests per minute or tokens per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RateLimitKind {
    Rpm,
    Tpm,
}
string_enum!(RateLimitKind, "rate-limit kind", { Rpm => "rpm", Tpm => "tpm" });

impl RateLimitKind {
    /// What the limit counts, in words: `requests` or `tokens`.
    pub const fn counted(self) -> &'static str {
        match self {
            RateLimitKind::Rpm => "requests",
            RateLimitKind::Tpm => "tokens",
        }
    }
}

/// Why a logged `/v1` request failed (the `error_type` of a request-log row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FailureKind {
    /// The client went away before the answer was complete.
    ClientClosed,
    /// The request could not be sent to the chosen upstream.
    InvalidRequest,
    /// The upstream refused the request itself (a 4xx that no other target would change).
    UpstreamRejected,
    /// No upstream answered usably (outage, overload, malformed answer, broken stream).
    UpstreamError,
    /// The upstream stopped sending mid-stream.
    UpstreamTimeout,
    /// The database refused the row; its free text was removed before it was stored.
    Quarantined,
}
string_enum!(FailureKind, "request failure kind", {
    ClientClosed => "client_closed",
    InvalidRequest => "invalid_request",
    UpstreamRejected => "upstream_rejected",
    UpstreamError => "upstream_error",
    UpstreamTimeout => "upstream_timeout",
    Quarantined => "quarantined",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant: string → variant → string, serde agrees with `as_str`, and the
    /// strings are distinct; unknown text, other cases and padding are refused.
    fn round_trips<T>(all: &[T], expected: &[&str])
    where
        T: Copy
            + PartialEq
            + fmt::Debug
            + fmt::Display
            + FromStr<Err = UnknownKind>
            + TryFrom<String, Error = UnknownKind>
            + Serialize
            + for<'de> Deserialize<'de>
            + Into<&'static str>,
    {
        let texts: Vec<&str> = all.iter().map(|v| (*v).into()).collect();
        assert_eq!(texts, expected, "the stored strings changed");
        for (v, text) in all.iter().zip(expected) {
            assert_eq!(v.to_string(), *text);
            assert_eq!(text.parse::<T>().unwrap(), *v);
            assert_eq!(T::try_from(text.to_string()).unwrap(), *v);
            let json = serde_json::to_value(v).unwrap();
            assert_eq!(json, serde_json::Value::String(text.to_string()));
            assert_eq!(serde_json::from_value::<T>(json).unwrap(), *v);
            for bad in [text.to_uppercase(), format!(" {text}"), format!("{text}x")] {
                let err = bad.parse::<T>().unwrap_err();
                assert_eq!(err.value, bad);
                assert!(serde_json::from_value::<T>(bad.clone().into()).is_err());
            }
        }
        for bad in ["", "unknown", "Active"] {
            assert!(bad.parse::<T>().is_err(), "{bad:?}");
            assert!(T::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_status() {
        round_trips(UserStatus::ALL, &["active", "suspended"]);
    }

    #[test]
    fn role() {
        round_trips(Role::ALL, &["user", "admin"]);
    }

    #[test]
    fn key_status() {
        round_trips(KeyStatus::ALL, &["active", "disabled", "revoked"]);
    }

    #[test]
    fn payment_status() {
        round_trips(
            PaymentStatus::ALL,
            &["pending", "paid", "failed", "expired"],
        );
    }

    #[test]
    fn grant_status() {
        round_trips(GrantStatus::ALL, &["pending", "approved", "denied", "used"]);
    }

    #[test]
    fn refresh_status() {
        round_trips(RefreshStatus::ALL, &["active", "rotated", "revoked"]);
    }

    #[test]
    fn provider_kind() {
        round_trips(ProviderKind::ALL, &["openai", "anthropic", "mock"]);
        assert!("open_ai".parse::<ProviderKind>().is_err());
        assert!(ProviderKind::OpenAi.needs_base_url());
        assert!(!ProviderKind::Mock.needs_base_url());
    }

    #[test]
    fn entry_kind() {
        round_trips(
            EntryKind::ALL,
            &["topup", "usage", "adjustment", "refund", "promo", "dispute"],
        );
    }

    #[test]
    fn rate_limit_kind() {
        round_trips(RateLimitKind::ALL, &["rpm", "tpm"]);
        assert_eq!(RateLimitKind::Rpm.counted(), "requests");
        assert_eq!(RateLimitKind::Tpm.counted(), "tokens");
    }

    #[test]
    fn failure_kind() {
        round_trips(
            FailureKind::ALL,
            &[
                "client_closed",
                "invalid_request",
                "upstream_rejected",
                "upstream_error",
                "upstream_timeout",
                "quarantined",
            ],
        );
    }

    #[test]
    fn unknown_kind_names_what_and_value() {
        let e = "owner".parse::<Role>().unwrap_err();
        assert_eq!(e.to_string(), "unknown role \"owner\"");
    }
}

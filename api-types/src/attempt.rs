//! One upstream attempt of a `/v1` request, as the gateway records it in the request log
//! (the `attempts_json` column) and the request-log APIs show it (`attempts_detail`).
//!
//! The stored JSON keeps the shape it had when it was built with `json!`: an array of
//! `{"latency_ms", "model", "outcome", "provider"}` objects (keys in that order), where
//! `outcome` is the upstream's HTTP status (a number) or a note (a string, e.g.
//! `"skipped: circuit open"`). A list too long to store is replaced by
//! [`UpstreamAttempt::too_long`], `{"outcome": "attempt list too long to store"}`.

use serde::{Deserialize, Serialize};

/// What one attempt came to: the upstream's HTTP status, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AttemptOutcome {
    /// The upstream answered with this HTTP status.
    Status(u16),
    /// No usable status: the attempt was skipped, timed out, or the answer was malformed.
    Note(String),
}

/// One upstream attempt: which provider and model were tried, what came of it, and how
/// long it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!(
    {"latency_ms": 182, "model": "openai/gpt-4o-mini", "outcome": 200, "provider": "openai"})))]
pub struct UpstreamAttempt {
    /// Time spent on the attempt, in milliseconds (absent only on the too-long marker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// The provider-qualified model tried (empty only on the too-long marker).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    pub outcome: AttemptOutcome,
    /// The provider tried (empty only on the too-long marker).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
}

impl UpstreamAttempt {
    /// The note stored in place of an attempt list too long to store.
    pub const TOO_LONG: &'static str = "attempt list too long to store";

    /// An attempt at `provider`'s `model` that took `latency_ms`.
    pub fn new(
        provider: impl Into<String>,
        model: impl Into<String>,
        outcome: AttemptOutcome,
        latency_ms: i64,
    ) -> UpstreamAttempt {
        UpstreamAttempt {
            latency_ms: Some(latency_ms),
            model: model.into(),
            outcome,
            provider: provider.into(),
        }
    }

    /// The single entry that replaces an attempt list too long to store.
    pub fn too_long() -> UpstreamAttempt {
        UpstreamAttempt {
            latency_ms: None,
            model: String::new(),
            outcome: AttemptOutcome::Note(Self::TOO_LONG.into()),
            provider: String::new(),
        }
    }
}

impl From<u16> for AttemptOutcome {
    fn from(status: u16) -> AttemptOutcome {
        AttemptOutcome::Status(status)
    }
}

impl From<&str> for AttemptOutcome {
    fn from(note: &str) -> AttemptOutcome {
        AttemptOutcome::Note(note.into())
    }
}

impl From<String> for AttemptOutcome {
    fn from(note: String) -> AttemptOutcome {
        AttemptOutcome::Note(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_as_the_json_the_log_always_stored() {
        let list = vec![
            UpstreamAttempt::new("down", "down/m", "skipped: circuit open".into(), 0),
            UpstreamAttempt::new("backup", "backup/m", 200.into(), 35),
        ];
        // What `json!({"provider", "model", "outcome", "latency_ms"})` produced.
        let before = json!([
            {"provider": "down", "model": "down/m", "outcome": "skipped: circuit open", "latency_ms": 0},
            {"provider": "backup", "model": "backup/m", "outcome": 200, "latency_ms": 35},
        ]);
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            before.to_string(),
            "same text"
        );
        let back: Vec<UpstreamAttempt> = serde_json::from_value(before).unwrap();
        assert_eq!(back, list);
    }

    #[test]
    fn the_too_long_marker_keeps_its_stored_form() {
        let stored = r#"[{"outcome":"attempt list too long to store"}]"#;
        assert_eq!(
            serde_json::to_string(&[UpstreamAttempt::too_long()]).unwrap(),
            stored
        );
        let back: Vec<UpstreamAttempt> = serde_json::from_str(stored).unwrap();
        assert_eq!(back, vec![UpstreamAttempt::too_long()]);
    }

    #[test]
    fn an_outcome_is_a_status_or_a_note() {
        let a: UpstreamAttempt = serde_json::from_value(
            json!({"provider": "p", "model": "p/m", "outcome": 503, "latency_ms": 9}),
        )
        .unwrap();
        assert_eq!(a.outcome, AttemptOutcome::Status(503));
        let a: UpstreamAttempt = serde_json::from_value(
            json!({"provider": "p", "model": "p/m", "outcome": "timed out", "latency_ms": 9}),
        )
        .unwrap();
        assert_eq!(a.outcome, AttemptOutcome::Note("timed out".into()));
        // An outcome is required; a status is a valid HTTP status number.
        assert!(serde_json::from_value::<UpstreamAttempt>(json!({"provider": "p"})).is_err());
        assert!(serde_json::from_value::<UpstreamAttempt>(json!({"outcome": 70000})).is_err());
    }
}

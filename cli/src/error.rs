//! The one error type of the CLI, its exit code (0 ok; 1 user error or 4xx; 2 network
//! error; 3 server error, 5xx or device-flow failure) and how a failure is shown: a line
//! and a hint on stderr for people, `{"error": "…"}` on stdout with `--json`.

use std::fmt;

use serde_json::{Value, json};

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// Bad input or missing local state (no key, not signed in): exit 1.
    User {
        message: String,
        hint: Option<String>,
    },
    /// The server answered with an error status: exit 1 for 4xx, 3 for 5xx.
    Api {
        status: u16,
        code: Option<String>,
        message: String,
        hint: Option<String>,
    },
    /// The server could not be reached (refused, DNS, timeout, connection lost): exit 2.
    Network(String),
    /// The server answered nonsense, or the device flow ended without tokens: exit 3.
    Server {
        code: Option<String>,
        message: String,
    },
}

impl CliError {
    pub fn user(message: impl Into<String>) -> Self {
        CliError::User {
            message: message.into(),
            hint: None,
        }
    }

    pub fn user_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::User {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::User { .. } => 1,
            CliError::Api { status, .. } if *status >= 500 => 3,
            CliError::Api { .. } => 1,
            CliError::Network(_) => 2,
            CliError::Server { .. } => 3,
        }
    }

    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            CliError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The machine-readable error code (`insufficient_balance`, `access_denied`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            CliError::Api { code, .. } | CliError::Server { code, .. } => code.as_deref(),
            CliError::Network(_) => Some("network_error"),
            CliError::User { .. } => None,
        }
    }

    fn hint(&self) -> Option<&str> {
        match self {
            CliError::User { hint, .. } | CliError::Api { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }

    /// Adds (or replaces) the hint of a user or API error.
    pub fn with_hint(self, h: impl Into<String>) -> Self {
        match self {
            CliError::User { message, .. } => CliError::User {
                message,
                hint: Some(h.into()),
            },
            CliError::Api {
                status,
                code,
                message,
                ..
            } => CliError::Api {
                status,
                code,
                message,
                hint: Some(h.into()),
            },
            other => other,
        }
    }

    /// The `--json` form: `{"error": "…", "code", "status", "hint", "exit_code"}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"error": self.to_string(), "exit_code": self.exit_code()});
        if let Some(c) = self.code() {
            v["code"] = json!(c);
        }
        if let Some(s) = self.status() {
            v["status"] = json!(s);
        }
        if let Some(h) = self.hint() {
            v["hint"] = json!(h);
        }
        v
    }

    /// The human form, for stderr.
    pub fn to_text(&self) -> String {
        match self.hint() {
            Some(h) => format!("error: {self}\n{h}"),
            None => format!("error: {self}"),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::User { message, .. } => f.write_str(message),
            CliError::Api {
                status,
                code,
                message,
                ..
            } => match code {
                Some(c) => write!(f, "{message} (HTTP {status}, {c})"),
                None => write!(f, "{message} (HTTP {status})"),
            },
            CliError::Network(m) => write!(f, "network error: {m}"),
            CliError::Server { message, .. } => f.write_str(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let api = |status| CliError::Api {
            status,
            code: None,
            message: "x".into(),
            hint: None,
        };
        assert_eq!(CliError::user("x").exit_code(), 1);
        assert_eq!(api(401).exit_code(), 1);
        assert_eq!(api(402).exit_code(), 1);
        assert_eq!(api(422).exit_code(), 1);
        assert_eq!(api(500).exit_code(), 3);
        assert_eq!(api(503).exit_code(), 3);
        assert_eq!(CliError::Network("refused".into()).exit_code(), 2);
        let denied = CliError::Server {
            code: Some("access_denied".into()),
            message: "denied".into(),
        };
        assert_eq!(denied.exit_code(), 3);
        let j = denied.to_json();
        assert_eq!(j["error"], "denied");
        assert_eq!(j["code"], "access_denied");
        assert_eq!(j["exit_code"], 3);
    }
}

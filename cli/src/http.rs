//! HTTP to the tokengate server: the one reqwest client (rustls), the API base URL, and the
//! mapping of every answer to JSON or to a `CliError` — unreachable server → network error,
//! 4xx → user error, 5xx or a non-JSON success → server error. Both error shapes the server
//! speaks are understood: `{"error":{"message","type","code"}}` and OAuth's
//! `{"error","error_description"}`.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder};
use serde_json::Value;

use crate::error::CliError;

/// The API URL when neither `--api-url`, `TOKENGATE_API_URL` nor stored credentials name one.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:3000";

/// A server's answer with a status below 400.
#[derive(Debug)]
pub struct Reply {
    pub headers: HeaderMap,
    pub body: Value,
}

/// The client for one server.
pub struct Http {
    client: Client,
    /// The API URL without a trailing slash, e.g. `http://127.0.0.1:3000`.
    pub base: String,
}

/// `https://host/` or `https://host/v1` → `https://host`; anything but http(s) is refused.
pub fn normalize_api_url(raw: &str) -> Result<String, CliError> {
    let mut s = raw.trim().trim_end_matches('/');
    // People often paste the OpenAI base URL; the API root is one level up.
    if let Some(root) = s.strip_suffix("/v1") {
        s = root.trim_end_matches('/');
    }
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(s.to_string()),
        _ => Err(CliError::user_hint(
            format!("invalid API URL {raw:?}"),
            "Set TOKENGATE_API_URL (or --api-url) to the server's address, e.g. https://gateway.example.com",
        )),
    }
}

/// The innermost cause of an error, which is the part a person can act on.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn network_error(e: &reqwest::Error, url: &str) -> CliError {
    if e.is_timeout() {
        CliError::Network(format!("timed out talking to {url}"))
    } else {
        CliError::Network(format!("could not reach {url}: {}", root_cause(e)))
    }
}

/// The error a status ≥ 400 with `body` (JSON or not) stands for.
pub fn api_error(status: u16, body: &Value, text: &str) -> CliError {
    let (code, message) = match body.get("error") {
        Some(Value::Object(o)) => (
            o.get("code").and_then(Value::as_str).map(str::to_string),
            o.get("message").and_then(Value::as_str).map(str::to_string),
        ),
        Some(Value::String(code)) => (
            Some(code.clone()),
            body.get("error_description")
                .and_then(Value::as_str)
                .map(str::to_string),
        ),
        _ => (None, None),
    };
    let message = message.unwrap_or_else(|| {
        let t: String = text.trim().chars().take(200).collect();
        if t.is_empty() {
            "the server answered with an error".to_string()
        } else {
            t
        }
    });
    CliError::Api {
        status,
        code,
        message,
        hint: None,
    }
}

impl Http {
    pub fn new(base: String) -> Result<Self, CliError> {
        let client = Client::builder()
            .user_agent(concat!("tokengate-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| CliError::user(format!("cannot set up HTTP: {}", root_cause(&e))))?;
        Ok(Http { client, base })
    }

    /// An absolute URL for `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends `req`; a status ≥ 400 becomes `CliError::Api`.
    pub async fn send(&self, req: RequestBuilder) -> Result<Reply, CliError> {
        let (status, headers, body, text) = self.send_raw(req).await?;
        if status >= 400 {
            return Err(api_error(status, &body, &text));
        }
        Ok(Reply { headers, body })
    }

    /// Sends `req` and returns status, headers and body (`Value::Null` if not JSON) for
    /// every status; only failing to talk to the server is an error.
    pub async fn send_raw(
        &self,
        req: RequestBuilder,
    ) -> Result<(u16, HeaderMap, Value, String), CliError> {
        let req = req
            .build()
            .map_err(|e| CliError::user(format!("invalid request: {}", root_cause(&e))))?;
        let url = req.url().to_string();
        let resp = self
            .client
            .execute(req)
            .await
            .map_err(|e| network_error(&e, &url))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| network_error(&e, &url))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status < 400 && body.is_null() && !text.trim().is_empty() {
            return Err(CliError::Server {
                code: Some("bad_response".into()),
                message: format!("{url} answered HTTP {status} with something that is not JSON"),
            });
        }
        Ok((status, headers, body, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_urls() {
        assert_eq!(
            normalize_api_url("http://127.0.0.1:3000/").unwrap(),
            "http://127.0.0.1:3000"
        );
        assert_eq!(
            normalize_api_url(" https://gw.example.com/v1/ ").unwrap(),
            "https://gw.example.com"
        );
        assert_eq!(
            normalize_api_url("https://gw.example.com/prefix").unwrap(),
            "https://gw.example.com/prefix"
        );
        assert!(normalize_api_url("gw.example.com").is_err());
        assert!(normalize_api_url("ftp://gw").is_err());
        assert!(normalize_api_url("http://").is_err());
    }

    #[test]
    fn both_error_shapes() {
        let e = api_error(
            402,
            &json!({"error":{"message":"Top up.","type":"insufficient_quota","code":"insufficient_balance"}}),
            "",
        );
        assert_eq!(e.code(), Some("insufficient_balance"));
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().starts_with("Top up."));
        let e = api_error(
            400,
            &json!({"error":"slow_down","error_description":"Wait."}),
            "",
        );
        assert_eq!(e.code(), Some("slow_down"));
        assert!(e.to_string().starts_with("Wait."));
        let e = api_error(500, &Value::Null, "Internal Server Error");
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().starts_with("Internal Server Error"));
    }
}

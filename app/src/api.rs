//! The portal's client of the account and admin API: every page reads and changes data
//! through `/api/v1` (via the [`crate::session::api`] bridge), so the portal shows exactly
//! what the API answers. Failures come back as the API's own error message.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::session;

/// Calls `/api/v1{path}`; `Ok` holds the JSON body of a 2xx answer, `Err` a message fit to
/// show.
pub async fn call(method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let reply = session::api(
        method.to_string(),
        format!("/api/v1{path}"),
        body.map(|b| b.to_string()),
    )
    .await
    .map_err(|e| format!("The server could not be reached ({e})."))?;
    let json: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    if (200..300).contains(&reply.status) {
        Ok(json)
    } else {
        Err(
            serde_json::from_value::<tokengate_api::error::ApiErrorBody>(json)
                .map(|e| e.error.message)
                .unwrap_or_else(|_| format!("The request failed (HTTP {}).", reply.status)),
        )
    }
}

/// `GET /api/v1{path}`.
pub async fn get(path: String) -> Result<Value, String> {
    call("GET", &path, None).await
}

/// Like [`call`], the answer read as the API type `T` (`tokengate_api::…`).
pub async fn call_as<T: DeserializeOwned>(
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<T, String> {
    let v = call(method, path, body).await?;
    serde_json::from_value(v).map_err(|e| format!("The server's answer could not be read ({e})."))
}

/// `GET /api/v1{path}`, read as the API type `T`.
pub async fn get_as<T: DeserializeOwned>(path: String) -> Result<T, String> {
    call_as("GET", &path, None).await
}

/// Text of a JSON string field ("" when absent or null).
pub fn text(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An integer field (0 when absent).
pub fn int(v: &Value, field: &str) -> i64 {
    v[field].as_i64().unwrap_or(0)
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    crate::auth::urlencode(s)
}

//! The portal's plain HTML form endpoints, for the forms that must work without
//! JavaScript: creating an API key (the answer is a page that shows the secret once,
//! never stored or redirected) and starting a top-up (a redirect to the checkout page).
//! Both go through the same `/api/v1` handlers the hydrated pages use, as the signed-in
//! user; errors come back to the form's page as a message.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::CurrentUser;

/// HTML-escapes text for element content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `path?error=<message>`, for a form's page to show.
fn back_with_error(path: &str, message: &str) -> Response {
    let q = serde_urlencoded::to_string([("error", message)]).unwrap_or_default();
    Redirect::to(&format!("{path}?{q}")).into_response()
}

fn api_error_message(body: &str) -> String {
    serde_json::from_str::<tokengate_api::error::ApiErrorBody>(body)
        .map(|e| e.error.message)
        .unwrap_or_else(|_| "The request failed.".into())
}

#[derive(Deserialize)]
pub struct NewKeyForm {
    name: String,
    #[serde(default)]
    expires_in_days: String,
    #[serde(default)]
    spend_limit_usd: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
}

/// The JSON body of `POST /api/v1/me/keys` for a submitted form; `Err` names the field.
/// The same rules as the hydrated page ([`app::pages::keys::create_body`]).
pub fn key_request(f: &NewKeyForm, now_secs: i64) -> Result<Value, String> {
    app::pages::keys::create_body(
        &[
            ("name", f.name.clone()),
            ("expires_in_days", f.expires_in_days.clone()),
            ("spend_limit_usd", f.spend_limit_usd.clone()),
            ("models", f.models.clone()),
            ("group", f.group.clone()),
            ("rpm", f.rpm.clone()),
            ("tpm", f.tpm.clone()),
        ],
        now_secs,
    )
}

/// `POST /me/keys/new`: creates the key and answers with the page that shows its
/// secret, once.
pub async fn create_key(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    Form(f): Form<NewKeyForm>,
) -> Response {
    let body = match key_request(&f, tokengate_core::now_ms() / 1000) {
        Ok(b) => b,
        Err(m) => return back_with_error("/me/keys", &m),
    };
    let reply = super::call_api(
        &state,
        u.id,
        "POST",
        "/api/v1/me/keys",
        Some(body.to_string()),
    )
    .await;
    if reply.status != 201 {
        return back_with_error("/me/keys", &api_error_message(&reply.body));
    }
    let Ok(key) = serde_json::from_str::<Value>(&reply.body) else {
        return back_with_error("/me/keys", "The key was created but could not be shown.");
    };
    let raw = key["raw"].as_str().unwrap_or_default();
    let name = key["name"].as_str().unwrap_or_default();
    let base = format!("{}/v1", state.config.public_url);
    let page = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>New API key — tokengate</title><link rel="stylesheet" href="/pkg/tokengate.css"/><link rel="icon" href="/favicon.svg" type="image/svg+xml"/></head>
<body><header class="topbar"><a class="brand" href="/">tokengate</a><nav><a href="/console">Dashboard</a><a href="/me/keys">API keys</a><a href="/me/usage">Usage</a><a href="/me/request-logs">Logs</a><a href="/me/billing">Billing</a><a href="/docs">Docs</a><a href="/me/settings">Settings</a></nav></header>
<main><section class="card secret-once" role="alertdialog" aria-labelledby="secret-title">
<h1 id="secret-title">Your new API key “{name}”</h1>
<p class="warning"><strong>Copy it now: this is the only time it is shown.</strong> tokengate stores only a hash; no page, API or reload can show it again.</p>
<p class="label">API key</p>
<pre><code id="new-key-secret">{raw}</code></pre>
<p class="label">Environment</p>
<pre><code id="new-key-env">OPENAI_API_KEY={raw}
OPENAI_BASE_URL={base}</code></pre>
<p><a class="button" href="/me/keys">Done</a></p>
</section></main></body></html>"#,
        name = esc(name),
        raw = esc(raw),
        base = esc(&base),
    );
    let mut resp = (StatusCode::OK, page).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The secret must not be kept by any cache, nor shown again by going back.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, private"),
    );
    resp
}

#[derive(Deserialize)]
pub struct TopupForm {
    amount_usd: String,
}

/// `POST /me/billing/topup`: starts a checkout and sends the browser to it.
pub async fn topup(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    Form(f): Form<TopupForm>,
) -> Response {
    let body = json!({"amount_usd": f.amount_usd.trim()}).to_string();
    let reply = super::call_api(&state, u.id, "POST", "/api/v1/topup", Some(body)).await;
    let url = (reply.status == 200)
        .then(|| serde_json::from_str::<tokengate_api::billing::Checkout>(&reply.body).ok())
        .flatten()
        .map(|c| c.checkout_url);
    match url {
        Some(url) => Redirect::to(&url).into_response(),
        None => back_with_error("/me/billing", &api_error_message(&reply.body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(name: &str) -> NewKeyForm {
        NewKeyForm {
            name: name.into(),
            expires_in_days: String::new(),
            spend_limit_usd: String::new(),
            models: String::new(),
            group: String::new(),
            rpm: String::new(),
            tpm: String::new(),
        }
    }

    #[test]
    fn key_forms_become_api_bodies() {
        assert_eq!(
            key_request(&form(" ci "), 0).unwrap(),
            json!({"name": "ci"})
        );
        let mut f = form("ci");
        f.expires_in_days = "30".into();
        f.spend_limit_usd = "2.50".into();
        f.models = "a/b, c\nd".into();
        f.rpm = "60".into();
        let b = key_request(&f, 1000).unwrap();
        // 1000 s + 30 days, as the API's RFC 3339 time.
        assert_eq!(b["expires_at"], "1970-01-31T00:16:40Z");
        assert_eq!(b["spend_limit_usd"], "2.50");
        assert_eq!(b["models"], json!(["a/b", "c", "d"]));
        assert_eq!(b["rpm"], 60);
        f.tpm = "-1".into();
        assert!(key_request(&f, 0).is_err());
        f.tpm.clear();
        f.expires_in_days = "0".into();
        assert!(key_request(&f, 0).is_err());
    }

    #[test]
    fn escaping_covers_html_specials() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

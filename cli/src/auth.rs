//! Signing in and staying signed in: discovery (`/api/v1/auth/discovery`), the RFC 8628
//! device flow (poll at `interval`, back off on `slow_down`, fail on `expired_token` /
//! `access_denied`), the refresh-token grant shortly before the access token expires (and
//! once more if the server refuses it), and authorised calls to the account API.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokengate_api::account::Me;
use tokengate_api::device::{
    DeviceAuthorization, DeviceCodeForm, Discovery, OAuthError, OAuthErrorCode, TokenForm,
    TokenResponse,
};

use crate::Ctx;
use crate::error::CliError;
use crate::store::Credentials;
use crate::ui;

/// Refresh when the access token has less than this many seconds left.
const REFRESH_MARGIN_SECS: i64 = 60;

/// Unix seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What the CLI's commands need: `account` (whoami, balance, usage), `keys`, `billing`
/// (topup) and a refresh token. Never `admin`, even when the server offers it.
const NEEDED_SCOPES: &[&str] = &["account", "keys", "billing", "offline_access"];

/// The scopes to request: those the CLI needs that the server offers (all of them when
/// the server does not list its scopes).
fn requested_scope(offered: &[String]) -> String {
    NEEDED_SCOPES
        .iter()
        .filter(|s| offered.is_empty() || offered.iter().any(|o| o == *s))
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

fn bad_answer(what: &str, e: &serde_json::Error) -> CliError {
    CliError::Server {
        code: Some("bad_response".into()),
        message: format!("unexpected answer from the {what}: {e}"),
    }
}

fn not_signed_in() -> CliError {
    CliError::user_hint("not signed in", "Run `tokengate login` to sign in.")
}

async fn discover(ctx: &Ctx) -> Result<Discovery, CliError> {
    let url = ctx.http.url("/api/v1/auth/discovery");
    let reply = ctx
        .http
        .send(ctx.http.client().get(&url))
        .await
        .map_err(|e| match e.status() {
            Some(503) => e.with_hint("Command-line login is disabled on this server; ask its operator, or use an API key (TOKENGATE_API_KEY)."),
            Some(404) => e.with_hint(format!(
                "{} does not look like a tokengate server; check TOKENGATE_API_URL.",
                ctx.http.base
            )),
            _ => e,
        })?;
    serde_json::from_value(reply.body).map_err(|e| bad_answer("discovery endpoint", &e))
}

/// `tokengate login`: the device flow, then the tokens saved and the account shown.
pub async fn login(ctx: &Ctx, no_open: bool) -> Result<(), CliError> {
    let out = ctx.out;
    let d = discover(ctx).await?;
    let scope = requested_scope(&d.scopes);
    let form = DeviceCodeForm {
        client_id: d.client_id.clone(),
        scope: Some(scope.clone()),
        resource: Some(d.resource.clone()),
    };
    let reply = ctx
        .http
        .send(
            ctx.http
                .client()
                .post(&d.device_authorization_endpoint)
                .form(&form),
        )
        .await
        .map_err(|e| match e {
            // Any refusal here means the device flow cannot start.
            CliError::Api {
                code,
                message,
                status,
                ..
            } if status < 500 => CliError::Server {
                code,
                message: format!("the server refused to start a login: {message}"),
            },
            other => other,
        })?;
    let code: DeviceAuthorization = serde_json::from_value(reply.body)
        .map_err(|e| bad_answer("device authorization endpoint", &e))?;
    let complete = code.verification_uri_complete.clone();
    let mut interval = code.interval.max(1) as u64;

    if out.json {
        out.json(&json!({
            "status": "pending",
            "verification_uri": code.verification_uri,
            "verification_uri_complete": complete,
            "user_code": code.user_code,
            "expires_in": code.expires_in,
            "interval": interval,
        }));
    } else {
        out.line(&format!("Visit:          {}", code.verification_uri));
        out.line(&format!("And enter code: {}", code.user_code));
        if !no_open && out.interactive() && ui::open_browser(&complete) {
            out.line(&format!("(opened {complete} in your browser)"));
        } else {
            out.line(&format!("(or open {complete})"));
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            out.note("Waiting for authorization...");
        }
    }

    let deadline = Instant::now() + Duration::from_secs(code.expires_in.max(1) as u64);
    let spinner = ui::spinner("Waiting for authorization... (Ctrl-C to cancel)", !out.json);
    let mut network_failures = 0;
    let tokens = loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if Instant::now() >= deadline {
            return Err(CliError::Server {
                code: Some("expired_token".into()),
                message:
                    "the login code expired before it was approved; run `tokengate login` again"
                        .into(),
            });
        }
        let form = TokenForm::device_code(&d.client_id, &code.device_code, Some(&d.resource));
        let (status, _, body, text) = match ctx
            .http
            .send_raw(ctx.http.client().post(&d.token_endpoint).form(&form))
            .await
        {
            Ok(r) => {
                network_failures = 0;
                r
            }
            // A long wait should survive a blip; a dead server should not hang it.
            Err(CliError::Network(_)) if network_failures < 3 => {
                network_failures += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        if status == 200 {
            break serde_json::from_value::<TokenResponse>(body)
                .map_err(|e| bad_answer("token endpoint", &e))?;
        }
        let error = serde_json::from_value::<OAuthError>(body.clone())
            .ok()
            .map(|e| e.error);
        match error {
            Some(OAuthErrorCode::AuthorizationPending) => {}
            Some(OAuthErrorCode::SlowDown) => interval += 5,
            Some(OAuthErrorCode::ExpiredToken) => {
                return Err(CliError::Server {
                    code: Some("expired_token".into()),
                    message:
                        "the login code expired before it was approved; run `tokengate login` again"
                            .into(),
                });
            }
            Some(OAuthErrorCode::AccessDenied) => {
                return Err(CliError::Server {
                    code: Some("access_denied".into()),
                    message: "the login was denied in the browser".into(),
                });
            }
            _ => {
                let e = crate::http::api_error(status, &body, &text);
                return Err(if status >= 500 {
                    e
                } else {
                    CliError::Server {
                        code: e.code().map(str::to_string),
                        message: format!("login failed: {e}"),
                    }
                });
            }
        }
    };
    drop(spinner);

    let creds = Credentials {
        api_url: ctx.http.base.clone(),
        client_id: d.client_id,
        token_endpoint: d.token_endpoint,
        resource: d.resource,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        scope: if tokens.scope.is_empty() {
            scope
        } else {
            tokens.scope
        },
        expires_at: now_secs() + tokens.expires_in,
    };
    ctx.store.save_credentials(&creds)?;
    // Who signed in; the login itself succeeded even if this fails.
    let me = ctx
        .http
        .send(
            ctx.http
                .client()
                .get(ctx.http.url("/api/v1/me"))
                .bearer_auth(&creds.access_token),
        )
        .await
        .ok()
        .and_then(|r| serde_json::from_value::<Me>(r.body).ok());
    if out.json {
        out.json(&json!({
            "status": "logged_in",
            "api_url": creds.api_url,
            "credentials": ctx.store.credentials_path(),
            "expires_at": creds.expires_at,
            "user": me,
        }));
    } else {
        let who = me
            .as_ref()
            .map(|m| format!(" as {}", m.email))
            .unwrap_or_default();
        out.line(&format!("OK logged in{who}"));
    }
    Ok(())
}

/// The stored credentials for this server, or why there are none.
fn credentials(ctx: &Ctx) -> Result<Credentials, CliError> {
    let c = ctx.store.load_credentials()?.ok_or_else(not_signed_in)?;
    if c.api_url != ctx.http.base {
        return Err(CliError::user_hint(
            format!("signed in to {}, not to {}", c.api_url, ctx.http.base),
            "Run `tokengate login` to sign in to this server, or unset TOKENGATE_API_URL / --api-url.",
        ));
    }
    Ok(c)
}

/// New tokens from the refresh-token grant, saved before they are used. Holds the lock, so
/// concurrent processes never present the same (rotating) refresh token twice.
async fn refresh(ctx: &Ctx, stale: &Credentials) -> Result<Credentials, CliError> {
    let _lock = ctx.store.lock().await?;
    // Another process may have refreshed while we waited for the lock.
    if let Some(current) = ctx.store.load_credentials()?
        && current.refresh_token != stale.refresh_token
        && current.api_url == stale.api_url
        && current.expires_at - now_secs() > REFRESH_MARGIN_SECS
    {
        return Ok(current);
    }
    let form = TokenForm::refresh(&stale.client_id, &stale.refresh_token);
    let reply = ctx
        .http
        .send(ctx.http.client().post(&stale.token_endpoint).form(&form))
        .await
        .map_err(|e| match e {
            CliError::Api {
                status, message, ..
            } if status < 500 => CliError::user_hint(
                format!("your sign-in has ended: {message}"),
                "Run `tokengate login` to sign in again.",
            ),
            other => other,
        })?;
    let t: TokenResponse =
        serde_json::from_value(reply.body).map_err(|e| bad_answer("token endpoint", &e))?;
    let fresh = Credentials {
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        scope: if t.scope.is_empty() {
            stale.scope.clone()
        } else {
            t.scope
        },
        expires_at: now_secs() + t.expires_in,
        ..stale.clone()
    };
    ctx.store.save_credentials(&fresh)?;
    Ok(fresh)
}

/// One call to the account API (`/api/v1/…`) with the stored access token, refreshed first
/// when it is about to expire, and once more if the server refuses it.
pub async fn account(
    ctx: &Ctx,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, CliError> {
    let mut creds = credentials(ctx)?;
    let mut refreshed = false;
    if creds.expires_at - now_secs() <= REFRESH_MARGIN_SECS {
        creds = refresh(ctx, &creds).await?;
        refreshed = true;
    }
    loop {
        let mut req = ctx
            .http
            .client()
            .request(method.clone(), ctx.http.url(path))
            .bearer_auth(&creds.access_token);
        if let Some(b) = body {
            req = req.json(b);
        }
        match ctx.http.send(req).await {
            Ok(r) => return Ok(r.body),
            Err(e) if e.status() == Some(401) && !refreshed => {
                creds = refresh(ctx, &creds).await?;
                refreshed = true;
            }
            Err(e) if e.status() == Some(401) => {
                return Err(e.with_hint("Run `tokengate login` to sign in again."));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A current access token for this server (refreshed first when about to expire, or when
/// `refused` says the server just refused the stored one), for requests [`account`] cannot
/// make, such as streamed downloads.
pub async fn access_token(ctx: &Ctx, refused: bool) -> Result<String, CliError> {
    let mut creds = credentials(ctx)?;
    if refused || creds.expires_at - now_secs() <= REFRESH_MARGIN_SECS {
        creds = refresh(ctx, &creds).await?;
    }
    Ok(creds.access_token)
}

/// Like [`account`], the answer read as the API type `T` (an answer of another shape is a
/// server error).
pub async fn account_as<T: DeserializeOwned>(
    ctx: &Ctx,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<T, CliError> {
    let v = account(ctx, method, path, body).await?;
    serde_json::from_value(v).map_err(|e| bad_answer(path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_what_it_needs_and_never_admin() {
        let offered: Vec<String> = ["account", "keys", "billing", "admin", "offline_access"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            requested_scope(&offered),
            "account keys billing offline_access"
        );
        assert_eq!(requested_scope(&[]), "account keys billing offline_access");
        assert_eq!(
            requested_scope(&["account".to_string(), "keys".to_string()]),
            "account keys"
        );
    }
}

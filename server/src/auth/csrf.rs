//! Cross-site request forgery protection for everything a session cookie authenticates: a
//! state-changing request (not GET/HEAD/OPTIONS) that carries the session cookie and no
//! valid bearer token must come from this site — its `Origin` (or, without one, its
//! `Referer`) must be the public URL's origin or the origin of the `Host` it was sent to.
//! Browsers set `Origin` on cross-site posts and pages cannot forge it, so a foreign page
//! cannot create keys, approve devices or top up with a visitor's cookie. The sign-in,
//! sign-up and device-approval forms are checked even without a session cookie (a foreign
//! page must not sign a visitor in to an account of its choosing), and only an
//! `Authorization: Bearer` token that verifies exempts a request, not any header.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::session::COOKIE;
use super::token;
use crate::AppState;

/// Forms checked for their origin even when the request carries no session cookie.
const FORMS: &[&str] = &["/auth/login", "/auth/signup", "/auth/device"];

fn origin_of(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let end = rest.find('/').map_or(url.len(), |i| scheme_end + i);
    Some(&url[..end])
}

fn has_session_cookie(req: &Request) -> bool {
    req.headers().get_all(header::COOKIE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(';')
                .any(|c| c.trim_start().starts_with(&format!("{COOKIE}=")))
        })
    })
}

/// Whether `req` may change state on behalf of its session cookie.
pub fn same_site(req: &Request, public_url: &str) -> bool {
    let h = req.headers();
    let claimed = h
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| *o != "null")
        .map(str::to_string)
        .or_else(|| {
            h.get(header::REFERER)
                .and_then(|v| v.to_str().ok())
                .and_then(origin_of)
                .map(str::to_string)
        });
    let Some(claimed) = claimed else { return false };
    if Some(claimed.as_str()) == origin_of(public_url) {
        return true;
    }
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    !host.is_empty()
        && (claimed == format!("http://{host}") || claimed == format!("https://{host}"))
}

/// Whether `req` carries a bearer token that verifies (signature, audience, expiry): such
/// a request authenticates by the token, which a foreign page cannot attach.
fn valid_bearer(req: &Request, state: &AppState) -> bool {
    let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(raw) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    else {
        return false;
    };
    token::verify(
        &state.config.secret_bytes(),
        raw.trim(),
        &state.config.api_audience(),
        tokengate_core::now_ms() / 1000,
    )
    .is_ok()
}

/// Whether a state-changing `req` must prove it comes from this site.
fn must_be_same_site(req: &Request, state: &AppState) -> bool {
    FORMS.contains(&req.uri().path()) || (has_session_cookie(req) && !valid_bearer(req, state))
}

/// The middleware.
pub async fn protect(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && must_be_same_site(&req, &state) && !same_site(&req, &state.config.public_url) {
        tracing::warn!(
            path = req.uri().path(),
            "cross-site state-changing request refused"
        );
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": {"message": "Cross-site request refused.", "type": "permission_error", "code": "csrf"}})),
        )
            .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req(headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder()
            .method("POST")
            .uri("/auth/logout");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn origin_rules() {
        let p = "https://gw.example.com";
        assert!(same_site(&req(&[("origin", "https://gw.example.com")]), p));
        assert!(!same_site(&req(&[("origin", "https://evil.example")]), p));
        assert!(!same_site(&req(&[("origin", "null")]), p));
        assert!(!same_site(&req(&[]), p));
        assert!(same_site(
            &req(&[("referer", "https://gw.example.com/console/keys")]),
            p
        ));
        assert!(!same_site(
            &req(&[("referer", "https://gw.example.com.evil.example/x")]),
            p
        ));
        assert!(same_site(
            &req(&[
                ("origin", "http://127.0.0.1:3000"),
                ("host", "127.0.0.1:3000")
            ]),
            p
        ));
        assert!(!same_site(
            &req(&[("origin", "http://evil:3000"), ("host", "127.0.0.1:3000")]),
            p
        ));
        assert_eq!(origin_of("http://a:1/b/c"), Some("http://a:1"));
    }
}

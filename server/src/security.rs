//! Security headers on every response: the Content-Security-Policy (HTML pages get a
//! per-response script nonce that the portal hands to Leptos for its hydration and
//! streaming scripts; everything else gets `default-src 'none'`), `frame-ancestors
//! 'none'`, `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy`, HSTS when the
//! public URL is https, and `Cache-Control: no-store` on every dynamic answer that does
//! not set its own caching (API keys, tokens and account pages are never stored).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;

/// The CSP nonce of one HTML response, in the request's extensions for the portal.
#[derive(Debug, Clone)]
pub struct CspNonce(pub Arc<str>);

impl CspNonce {
    fn generate() -> CspNonce {
        let bytes: [u8; 16] = rand::random();
        CspNonce(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(bytes)
                .into(),
        )
    }
}

/// The policy of everything that is not an HTML page (JSON, event streams, files): it
/// loads nothing and cannot be framed.
pub const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// The policy of an HTML page. Scripts come from this origin only, plus inline scripts
/// carrying `nonce` (Leptos's hydration bootstrap and its streamed resource data);
/// `'wasm-unsafe-eval'` lets the portal's WebAssembly compile (it allows no JavaScript
/// `eval`). Inline styles stay allowed: the docs pages have a `<style>` block and the API
/// explorer (Swagger UI) sets styles inline.
pub fn html_policy(nonce: Option<&str>) -> String {
    let nonce = nonce.map(|n| format!(" 'nonce-{n}'")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'{nonce} 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self'; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// What the middleware adds, from the configuration.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    /// `Strict-Transport-Security` when the public URL is https.
    pub hsts: bool,
}

impl SecurityHeaders {
    pub fn from_public_url(public_url: &str) -> SecurityHeaders {
        SecurityHeaders {
            hsts: public_url.starts_with("https://"),
        }
    }
}

/// Paths that never render a portal page, so need no nonce: the gateway and the account
/// API (the hot paths). Everything else may end in a Leptos page, if only a 404.
fn renders_no_page(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/api/v1/")
}

/// Middleware: the headers of this module on every response.
pub async fn headers(
    State(config): State<Arc<SecurityHeaders>>,
    mut req: Request,
    next: Next,
) -> Response {
    let nonce = (!renders_no_page(req.uri().path())).then(|| {
        let n = CspNonce::generate();
        req.extensions_mut().insert(n.clone());
        n
    });
    let mut resp = next.run(req).await;
    let status = resp.status();
    apply(
        resp.headers_mut(),
        status,
        &config,
        nonce.as_ref().map(|n| &*n.0),
    );
    resp
}

fn apply(h: &mut HeaderMap, status: StatusCode, config: &SecurityHeaders, nonce: Option<&str>) {
    let content_type = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        let policy = if content_type.starts_with("text/html") {
            HeaderValue::from_str(&html_policy(nonce)).ok()
        } else {
            Some(HeaderValue::from_static(API_POLICY))
        };
        if let Some(p) = policy {
            h.insert(header::CONTENT_SECURITY_POLICY, p);
        }
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null` on
    // form posts, and the sign-in forms' CSRF check reads `Origin`.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if config.hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL)
        && status != StatusCode::NOT_MODIFIED
        && !is_static_asset(&content_type)
    {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Built assets (scripts, styles, WebAssembly, images, fonts) may be cached; every other
/// answer is specific to its request.
fn is_static_asset(content_type: &str) -> bool {
    content_type.starts_with("text/css")
        || content_type.starts_with("text/javascript")
        || content_type.starts_with("application/javascript")
        || content_type.starts_with("application/wasm")
        || content_type.starts_with("image/")
        || content_type.starts_with("font/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_for(content_type: Option<&str>, status: StatusCode, hsts: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        apply(&mut h, status, &SecurityHeaders { hsts }, Some("abc"));
        h
    }

    #[test]
    fn html_gets_the_nonce_policy_and_json_the_closed_one() {
        let h = headers_for(Some("text/html; charset=utf-8"), StatusCode::OK, false);
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self' 'nonce-abc' 'wasm-unsafe-eval'"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let script_src = csp
            .split(';')
            .find(|d| d.trim().starts_with("script-src"))
            .unwrap();
        assert!(!script_src.contains("unsafe-inline"), "{csp}");
        assert!(!script_src.contains("'unsafe-eval'"), "{csp}");
        let h = headers_for(Some("application/json"), StatusCode::OK, false);
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], API_POLICY);
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(!h.contains_key(header::STRICT_TRANSPORT_SECURITY));
    }

    #[test]
    fn assets_stay_cacheable_and_own_cache_headers_win() {
        let h = headers_for(Some("application/wasm"), StatusCode::OK, true);
        assert!(!h.contains_key(header::CACHE_CONTROL));
        assert_eq!(h[header::STRICT_TRANSPORT_SECURITY], "max-age=31536000");
        let h = headers_for(None, StatusCode::NOT_MODIFIED, false);
        assert!(!h.contains_key(header::CACHE_CONTROL));
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        apply(
            &mut h,
            StatusCode::OK,
            &SecurityHeaders { hsts: false },
            None,
        );
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=300");
    }

    #[test]
    fn only_the_apis_skip_the_nonce() {
        assert!(renders_no_page("/v1/chat/completions"));
        assert!(renders_no_page("/api/v1/me"));
        assert!(!renders_no_page("/pkg/missing.js"));
        assert!(!renders_no_page("/api/nothing-here"));
        assert!(!renders_no_page("/console"));
    }

    #[test]
    fn nonces_are_fresh_and_csp_safe() {
        let a = CspNonce::generate();
        let b = CspNonce::generate();
        assert_ne!(a.0, b.0);
        assert!(a.0.len() >= 22);
        assert!(
            a.0.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}

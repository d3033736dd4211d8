//! The server against the open internet, over real HTTP: security headers on pages and
//! APIs (the CSP nonce on every inline script Leptos renders, no-store on answers that
//! carry secrets), `303 See Other` to sign-in for protected pages, the header-read and
//! body-read timeouts and the connection cap, and demo mode refusing a database that has
//! real accounts (SQLite and PostgreSQL).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Running, on_postgres, start, start_public};
use reqwest::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use reqwest::{Client, Response};
use serde_json::{Value, json};
use tokengate_core::keys::NewKey;
use tokengate_core::{accounts, password};
use tokengate_server::Server;
use tokengate_server::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PW: &str = "correct horse battery staple";
const CLIENT: &str = "tokengate-cli";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn key_spec() -> NewKey {
    NewKey {
        name: "test".into(),
        ..NewKey::default()
    }
}

fn no_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A request that hangs fails the test instead of the whole run.
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

fn header(resp: &Response, name: reqwest::header::HeaderName) -> String {
    resp.headers()
        .get(&name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The `script-src` nonce of a CSP, if it has one.
fn csp_nonce(csp: &str) -> Option<String> {
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))?;
    script_src
        .split_whitespace()
        .find_map(|s| s.strip_prefix("'nonce-"))
        .map(|s| s.trim_end_matches('\'').to_string())
}

/// Every `<script>` of `html` either loads a file (`src`) or carries `nonce`, no element
/// has an inline event handler or a `javascript:` URL. Returns the inline scripts seen.
fn assert_scripts_allowed(html: &str, nonce: Option<&str>, page: &str) -> usize {
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("javascript:"), "{page}: javascript: URL");
    let mut inline = 0;
    let mut rest = 0;
    while let Some(open) = lower[rest..].find('<') {
        let start = rest + open;
        let Some(close) = lower[start..].find('>') else {
            break;
        };
        let tag = &lower[start + 1..start + close];
        let original = &html[start + 1..start + close];
        rest = start + close + 1;
        if tag.starts_with('/') || tag.starts_with('!') {
            continue;
        }
        let name = tag.split_whitespace().next().unwrap_or("");
        for attr in original.split_whitespace().skip(1) {
            let attr_name = attr.split('=').next().unwrap_or("").to_ascii_lowercase();
            assert!(
                !(attr_name.starts_with("on") && attr.contains('=')),
                "{page}: inline event handler in <{original}>"
            );
        }
        if name == "script" {
            if !tag.contains(" src=") {
                inline += 1;
                let nonce =
                    nonce.unwrap_or_else(|| panic!("{page}: inline script without a CSP nonce"));
                assert!(
                    original.contains(&format!("nonce=\"{nonce}\"")),
                    "{page}: inline script without this response's nonce: <{original}>"
                );
            }
            // Skip the script's text: it may contain '<'.
            match lower[rest..].find("</script>") {
                Some(end) => rest += end + "</script>".len(),
                None => panic!("{page}: unclosed <script>"),
            }
        }
    }
    inline
}

/// A user with a password, loaded by the gateway.
async fn password_user(r: &Running, email: &str, role: &str) -> i64 {
    let hash = password::hash(PW).unwrap();
    let u = accounts::create_user(
        &r.server_state.db,
        email,
        "Test",
        Some(&hash),
        role.parse().unwrap(),
    )
    .await
    .unwrap();
    r.server_state.gateway.refresh().await.unwrap();
    u.id
}

/// Signs in through the login form; the session cookie's value.
async fn sign_in(r: &Running, email: &str) -> String {
    let resp = no_redirects()
        .post(format!("{}/auth/login", r.base))
        .header("origin", &r.base)
        .form(&[("email", email), ("password", PW), ("next", "/console")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("tg_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
        .expect("a session cookie")
}

/// An access token for `user_id` with the account and key scopes.
async fn token_for(r: &Running, user_id: i64) -> String {
    r.token(user_id, "account keys billing").await
}

async fn get_page(r: &Running, path: &str, cookie: Option<&str>) -> Response {
    let mut req = no_redirects()
        .get(format!("{}{path}", r.base))
        .header("accept", "text/html");
    if let Some(c) = cookie {
        req = req.header("cookie", format!("tg_session={c}"));
    }
    req.send().await.unwrap()
}

fn assert_common_headers(resp: &Response, what: &str) {
    assert_eq!(header(resp, X_CONTENT_TYPE_OPTIONS), "nosniff", "{what}");
    assert_eq!(header(resp, X_FRAME_OPTIONS), "DENY", "{what}");
    assert_eq!(header(resp, REFERRER_POLICY), "same-origin", "{what}");
    let csp = header(resp, CONTENT_SECURITY_POLICY);
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
}

// ----- 10. security headers ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_apis_carry_security_headers() {
    let r = start_public(None, &[]).await;
    let (_, key) = r
        .customer("api@example.com", 1_000_000_000, key_spec())
        .await;
    password_user(&r, "admin@example.com", "admin").await;
    let cookie = sign_in(&r, "admin@example.com").await;

    // HTML pages: a per-response nonce, and every inline script Leptos renders carries it.
    let mut inline_total = 0;
    for (path, signed_in) in [
        ("/", false),
        ("/login", false),
        ("/signup", false),
        ("/console", true),
        ("/me/keys", true),
        ("/me/usage", true),
        ("/me/billing", true),
        ("/admin/providers", true),
        ("/no-such-page", false),
        ("/pkg/no-such-file.js", false),
    ] {
        let c = signed_in.then_some(cookie.as_str());
        let resp = get_page(&r, path, c).await;
        let again = get_page(&r, path, c).await;
        assert!(
            resp.status() == 200 || (path.contains("no-such") && resp.status() == 404),
            "{path}: {}",
            resp.status()
        );
        assert!(
            header(&resp, CONTENT_TYPE).starts_with("text/html"),
            "{path}"
        );
        assert_common_headers(&resp, path);
        assert_eq!(header(&resp, CACHE_CONTROL), "no-store", "{path}");
        assert!(
            header(&resp, STRICT_TRANSPORT_SECURITY).is_empty(),
            "{path}"
        );
        let csp = header(&resp, CONTENT_SECURITY_POLICY);
        let nonce = csp_nonce(&csp).unwrap_or_else(|| panic!("{path}: no nonce in {csp}"));
        assert!(csp.contains("'wasm-unsafe-eval'"), "{csp}");
        assert!(!csp.contains("'unsafe-eval'"), "{csp}");
        let script_src = csp.split(';').find(|d| d.contains("script-src")).unwrap();
        assert!(!script_src.contains("unsafe-inline"), "{csp}");
        let other = csp_nonce(&header(&again, CONTENT_SECURITY_POLICY)).unwrap();
        assert_ne!(nonce, other, "{path}: the nonce is per response");
        let html = resp.text().await.unwrap();
        let inline = assert_scripts_allowed(&html, Some(&nonce), path);
        assert!(
            inline >= 1,
            "{path}: the hydration script is inline and nonced"
        );
        assert!(
            html.contains(&format!("<script type=\"module\" nonce=\"{nonce}\">")),
            "{path}: hydration bootstrap"
        );
        inline_total += inline;
    }
    // Signed-in pages stream their data as inline scripts too; all were nonced.
    assert!(inline_total > 9, "{inline_total}");

    // The API explorer loads its scripts from files; the CSP allows them and its styles.
    let resp = no_redirects()
        .get(format!("{}/api/docs/", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_common_headers(&resp, "/api/docs/");
    let csp = header(&resp, CONTENT_SECURITY_POLICY);
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("style-src 'self' 'unsafe-inline'"), "{csp}");
    assert!(csp.contains("img-src 'self' data:"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = resp.text().await.unwrap();
    assert_eq!(assert_scripts_allowed(&html, None, "/api/docs/"), 0);
    for src in ["swagger-ui-bundle.js", "swagger-initializer.js"] {
        assert!(html.contains(src), "{src}");
        let resp = no_redirects()
            .get(format!("{}/api/docs/{src}", r.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{src}");
        assert!(header(&resp, CONTENT_TYPE).contains("javascript"), "{src}");
        assert_eq!(header(&resp, X_CONTENT_TYPE_OPTIONS), "nosniff");
        // Built assets may be cached.
        assert_ne!(header(&resp, CACHE_CONTROL), "no-store", "{src}");
    }

    // The docs pages keep their own caching and get the page policy.
    let resp = no_redirects()
        .get(format!("{}/docs", r.base))
        .send()
        .await
        .unwrap();
    assert_common_headers(&resp, "/docs");
    assert_eq!(header(&resp, CACHE_CONTROL), "public, max-age=300");
    let html = resp.text().await.unwrap();
    assert_eq!(assert_scripts_allowed(&html, None, "/docs"), 0);

    // APIs: a policy that loads nothing, and nothing stored.
    for (path, auth) in [
        ("/v1/models", Some(key.as_str())),
        ("/v1/nope", None),
        ("/api/v1/me", None),
        ("/healthz", None),
        ("/openapi.json", None),
    ] {
        let mut req = no_redirects().get(format!("{}{path}", r.base));
        if let Some(k) = auth {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        assert_common_headers(&resp, path);
        assert_eq!(
            header(&resp, CONTENT_SECURITY_POLICY),
            "default-src 'none'; frame-ancestors 'none'",
            "{path}"
        );
        if path != "/openapi.json" {
            assert_eq!(header(&resp, CACHE_CONTROL), "no-store", "{path}");
        }
    }
    let (s, _, _) = common::chat(
        &r.base,
        &key,
        json!({"model": "tokengate-fast", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 200);
    r.stop().await;

    // HSTS when the public URL is https.
    // (Non-page paths: the layer is the same for pages, and a second in-process server's
    // first page render has been seen to hang in this test binary; see the issue notes.)
    let r = start(None, &[("TOKENGATE_PUBLIC_URL", "https://gateway.example")]).await;
    for path in ["/healthz", "/openapi.json", "/v1/models"] {
        let resp = no_redirects()
            .get(format!("{}{path}", r.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&resp, STRICT_TRANSPORT_SECURITY),
            "max-age=31536000",
            "{path}"
        );
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_carry_secrets_are_never_stored() {
    let r = start_public(None, &[]).await;
    let uid = password_user(&r, "keys@example.com", "user").await;
    let token = token_for(&r, uid).await;
    let c = no_redirects();

    // Key creation and rotation (JSON with the raw key).
    let resp = c
        .post(format!("{}/api/v1/me/keys", r.base))
        .bearer_auth(&token)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(header(&resp, CACHE_CONTROL), "no-store");
    assert_common_headers(&resp, "create key");
    let v: Value = resp.json().await.unwrap();
    assert!(v["raw"].as_str().unwrap().starts_with("sk-tg-"));
    let id = v["id"].as_i64().unwrap();
    let resp = c
        .post(format!("{}/api/v1/me/keys/{id}/rotate", r.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, CACHE_CONTROL), "no-store");
    let v: Value = resp.json().await.unwrap();
    assert!(v["raw"].as_str().unwrap().starts_with("sk-tg-"), "{v}");

    // The no-JavaScript key form's page that shows the secret.
    let cookie = sign_in(&r, "keys@example.com").await;
    let resp = c
        .post(format!("{}/me/keys/new", r.base))
        .header("origin", &r.base)
        .header("cookie", format!("tg_session={cookie}"))
        .form(&[("name", "form key")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, CACHE_CONTROL).contains("no-store"));
    assert_common_headers(&resp, "key form");
    let html = resp.text().await.unwrap();
    assert!(html.contains("sk-tg-"));
    assert_eq!(assert_scripts_allowed(&html, None, "key form"), 0);

    // Device-flow tokens.
    let resp = c
        .post(format!("{}/api/v1/auth/device/code", r.base))
        .form(&[
            ("client_id", CLIENT),
            ("scope", "account keys"),
            ("resource", &format!("{}/api/v1", r.base)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, CACHE_CONTROL), "no-store");
    let d: Value = resp.json().await.unwrap();
    let resp = c
        .post(format!("{}/auth/device", r.base))
        .header("origin", &r.base)
        .header("cookie", format!("tg_session={cookie}"))
        .form(&[
            ("user_code", d["user_code"].as_str().unwrap()),
            ("action", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let resp = c
        .post(format!("{}/api/v1/auth/token", r.base))
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("device_code", d["device_code"].as_str().unwrap()),
            ("client_id", CLIENT),
            ("resource", &format!("{}/api/v1", r.base)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, CACHE_CONTROL), "no-store");
    assert_common_headers(&resp, "token");
    let v: Value = resp.json().await.unwrap();
    assert!(v["access_token"].is_string(), "{v}");
    r.stop().await;
}

// ----- 14. protected pages send visitors to sign in -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_pages_answer_see_other_to_sign_in() {
    let r = start_public(None, &[]).await;
    let c = no_redirects();
    for accept in ["*/*", "text/html,application/xhtml+xml"] {
        for (path, next) in [
            ("/console", "%2Fconsole"),
            ("/me/keys", "%2Fme%2Fkeys"),
            ("/me/billing", "%2Fme%2Fbilling"),
            ("/admin", "%2Fadmin"),
            ("/admin/users", "%2Fadmin%2Fusers"),
            (
                "/device?user_code=ABCD-EFGH",
                "%2Fdevice%3Fuser_code%3DABCD-EFGH",
            ),
        ] {
            let resp = c
                .get(format!("{}{path}", r.base))
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 303, "{path} ({accept})");
            assert_eq!(
                header(&resp, LOCATION),
                format!("/login?next={next}"),
                "{path}"
            );
            assert!(resp.headers().get("serverfnredirect").is_none(), "{path}");
            assert_common_headers(&resp, path);
            let body = resp.text().await.unwrap();
            assert!(!body.contains("Sign in to continue"), "{path}: {body}");
        }
    }
    // Public pages and signed-in visits are unchanged.
    for path in ["/", "/login", "/signup", "/docs"] {
        let resp = c.get(format!("{}{path}", r.base)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers().get(LOCATION).is_none(), "{path}");
    }
    password_user(&r, "member@example.com", "user").await;
    let cookie = sign_in(&r, "member@example.com").await;
    let resp = c
        .get(format!("{}/console", r.base))
        .header("cookie", format!("tg_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get(LOCATION).is_none());
    // Administrators only: still a 403 page, not a redirect.
    let resp = c
        .get(format!("{}/admin/users", r.base))
        .header("cookie", format!("tg_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A server function asked without a session answers its data, not a page redirect.
    let path = <app::session::Whoami as leptos::server_fn::ServerFn>::PATH;
    let resp = c
        .post(format!("{}{path}", r.base))
        .header("origin", &r.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    assert!(resp.headers().get(LOCATION).is_none(), "{path}");
    assert_eq!(resp.text().await.unwrap(), "null", "{path}");
    r.stop().await;
}

// ----- 11. timeouts and the connection cap ---------------------------------------------------

fn addr(r: &Running) -> String {
    r.base.trim_start_matches("http://").to_string()
}

/// Reads until the peer closes (or `limit` passes): the bytes read and whether it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body.
async fn read_response(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let text = String::from_utf8_lossy(&out).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return Some(text);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_disconnected() {
    let r = start(None, &[("TOKENGATE_HEADER_READ_TIMEOUT_SECS", "1")]).await;
    let mut slow = TcpStream::connect(addr(&r)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(6)).await;
    assert!(closed, "a half-sent request head kept its connection");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // A connection that sends nothing at all is closed too.
    let mut silent = TcpStream::connect(addr(&r)).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(6)).await;
    assert!(closed, "a silent connection was kept");
    // Prompt clients are served.
    let mut ok = TcpStream::connect(addr(&r)).await.unwrap();
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let resp = read_response(&mut ok, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let r = start(None, &[("TOKENGATE_MAX_CONNECTIONS", "2")]).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr(&r)).await.unwrap();
        s.write_all(request).await.unwrap();
        let resp = read_response(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        held.push(s);
    }
    // The third connection is queued: no answer while both slots are held.
    let mut third = TcpStream::connect(addr(&r)).await.unwrap();
    third.write_all(request).await.unwrap();
    assert!(
        read_response(&mut third, Duration::from_millis(800))
            .await
            .is_none(),
        "a connection over the cap was served"
    );
    // A slot frees: the queued connection is served.
    drop(held.remove(0));
    let resp = read_response(&mut third, Duration::from_secs(5))
        .await
        .expect("the queued connection is served once a slot frees");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    drop(held);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_gets_408_in_the_route_shape() {
    let r = start(None, &[("TOKENGATE_BODY_READ_TIMEOUT_SECS", "1")]).await;
    let (uid, key) = r
        .customer("slow@example.com", 1_000_000_000, key_spec())
        .await;
    let token = token_for(&r, uid).await;
    for (path, auth) in [
        ("/v1/chat/completions", &key),
        ("/v1/messages", &key),
        ("/api/v1/me/keys", &token),
    ] {
        let mut s = TcpStream::connect(addr(&r)).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"model\":"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let resp = read_response(&mut s, Duration::from_secs(6))
            .await
            .unwrap_or_else(|| panic!("{path}: no answer to a stalled body"));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{path}: {waited:?}"
        );
        assert!(resp.starts_with("HTTP/1.1 408"), "{path}: {resp}");
        assert!(
            resp.to_ascii_lowercase().contains("connection: close"),
            "{path}: {resp}"
        );
        let body: Value =
            serde_json::from_str(&resp[resp.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        match path {
            "/v1/messages" => {
                assert_eq!(body["type"], "error", "{body}");
                assert!(body["error"]["message"].is_string(), "{body}");
            }
            "/v1/chat/completions" => {
                common::assert_error(&body, "invalid_request_error", "request_timeout")
            }
            _ => {
                assert_eq!(body["error"]["code"], "request_timeout", "{body}");
                assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
                assert!(body["error"]["message"].is_string(), "{body}");
            }
        }
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        assert!(closed, "{path}: the connection stays open after 408");
    }
    // Bodies that arrive in time are unaffected.
    let (s, _, v) = common::chat(
        &r.base,
        &key,
        json!({"model": "tokengate-fast", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    r.stop().await;
}

// ----- 15. demo mode ------------------------------------------------------------------------

async fn start_and_stop(config: Config) -> Result<(), tokengate_server::StartError> {
    let server = Server::start(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    server.serve(listener, async {}).await.unwrap();
    Ok(())
}

fn demo_config(dir: &std::path::Path, database_url: &Option<String>, demo: bool) -> Config {
    let mut env = vec![
        ("TOKENGATE_DATA_DIR", dir.display().to_string()),
        ("TOKENGATE_LISTEN", "127.0.0.1:0".to_string()),
        ("TOKENGATE_DEMO", if demo { "1" } else { "0" }.to_string()),
    ];
    if let Some(url) = database_url {
        env.push(("TOKENGATE_DATABASE_URL", url.clone()));
    }
    Config::load(None, |k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap()
}

async fn demo_suite(database_url: Option<String>) {
    let dir = std::env::temp_dir().join(format!(
        "tg-demo-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    // A new database: demo mode seeds it; a restart in demo mode is fine.
    start_and_stop(demo_config(&dir, &database_url, true))
        .await
        .unwrap();
    start_and_stop(demo_config(&dir, &database_url, true))
        .await
        .unwrap();
    // Someone else's account appears: demo mode refuses, loudly, and changes nothing.
    let url = database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("tokengate.db").display()));
    let db = tokengate_core::Db::connect(&url).await.unwrap();
    accounts::create_user(&db, "real@example.com", "Real", None, accounts::Role::User)
        .await
        .unwrap();
    db.close().await;
    let err = start_and_stop(demo_config(&dir, &database_url, true))
        .await
        .unwrap_err();
    assert!(
        matches!(err, tokengate_server::StartError::DemoRefused(1)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("DEMO MODE REFUSED"), "{text}");
    assert!(text.contains("1 account(s)"), "{text}");
    assert!(text.contains("TOKENGATE_DEMO"), "{text}");
    // Without demo mode the same database starts.
    start_and_stop(demo_config(&dir, &database_url, false))
        .await
        .unwrap();
    // A database that never was a demo's is refused as well.
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    if database_url.is_none() {
        start_and_stop(demo_config(&fresh, &None, false))
            .await
            .unwrap();
        let db = tokengate_core::Db::connect(&format!(
            "sqlite://{}",
            fresh.join("tokengate.db").display()
        ))
        .await
        .unwrap();
        accounts::create_user(
            &db,
            "owner@example.com",
            "Owner",
            None,
            accounts::Role::Admin,
        )
        .await
        .unwrap();
        db.close().await;
        assert!(matches!(
            start_and_stop(demo_config(&fresh, &None, true)).await,
            Err(tokengate_server::StartError::DemoRefused(1))
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_refuses_a_database_with_real_accounts_on_sqlite() {
    demo_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_refuses_a_database_with_real_accounts_on_postgres() {
    on_postgres(demo_suite).await;
}

//! Hardening of accounts and sessions (issue 13) over real HTTP on SQLite and PostgreSQL:
//! token scopes enforced per route (admin only when an administrator grants it), the CSRF
//! origin check on the sign-in forms, provider keys that stay write-only across a base-URL
//! change, throttles that hold under concurrency (sign-in failures, sign-ups and device
//! codes per address, caps on keys and pending grants, user-code lookups per user), bounded
//! password hashing, and OpenID Connect linking only to verified local accounts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, on_postgres, start_public};
use futures::future::join_all;
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use tokengate_core::{accounts, now_ms, password};

const PW: &str = "correct horse battery staple";
const EVIL: &str = "http://evil.example";
const CLIENT: &str = "tokengate-cli";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A running server and a client that does not follow redirects.
struct T {
    r: Running,
    c: reqwest::Client,
}

impl T {
    async fn start(database_url: Option<String>, extra: &[(&str, &str)]) -> T {
        let r = start_public(database_url, extra).await;
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A request that hangs fails the test instead of the whole run.
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap();
        T { r, c }
    }

    /// A server that trusts 127.0.0.1 as a reverse proxy, so each test request can come
    /// from its own client address (`X-Forwarded-For`).
    async fn behind_proxy(database_url: Option<String>) -> T {
        let r = common::start_with(database_url, &[], |c| {
            c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        })
        .await;
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A request that hangs fails the test instead of the whole run.
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap();
        T { r, c }
    }

    fn base(&self) -> String {
        self.r.base.clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.r.base)
    }

    fn db(&self) -> &tokengate_core::Db {
        &self.r.server_state.db
    }

    async fn stop(self) {
        self.r.stop().await;
    }

    /// A local account with a password.
    async fn user(&self, email: &str, role: &str) -> i64 {
        let hash = password::hash(PW).unwrap();
        accounts::create_user(self.db(), email, "Test", Some(&hash), role.parse().unwrap())
            .await
            .unwrap()
            .id
    }

    /// A portal form post with an optional session cookie and `Origin`.
    async fn form(
        &self,
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        form: &[(&str, &str)],
    ) -> Response {
        let mut req = self.c.post(self.url(path)).form(form);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("tg_session={c}"));
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send().await.unwrap()
    }

    /// Signs in (same-site form post) and returns the session cookie's value.
    async fn sign_in(&self, email: &str) -> String {
        let resp = self
            .form(
                "/auth/login",
                None,
                Some(&self.base()),
                &[("email", email), ("password", PW)],
            )
            .await;
        assert_eq!(resp.status(), 303);
        assert_eq!(location(&resp), "/console");
        session_cookie(&resp).expect("a session cookie after sign-in")
    }

    /// A JSON call with a bearer token or a session cookie (same-site).
    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.c.request(method, self.url(path));
        match auth {
            Auth::Bearer(t) => req = req.bearer_auth(t),
            Auth::Session(c) => {
                req = req
                    .header("cookie", format!("tg_session={c}"))
                    .header("origin", self.base());
            }
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        read(req.send().await.unwrap()).await
    }

    /// A device authorization asking for `scope`.
    async fn device_code(&self, scope: &str) -> Value {
        let resp = self
            .c
            .post(self.url("/api/v1/auth/device/code"))
            .form(&[
                ("client_id", CLIENT),
                ("scope", scope),
                ("resource", &self.url("/api/v1")),
            ])
            .send()
            .await
            .unwrap();
        let (s, v) = read(resp).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Approves `user_code` as `cookie`, with extra form fields.
    async fn approve(&self, cookie: &str, user_code: &str, extra: &[(&str, &str)]) -> Response {
        let mut f = vec![("user_code", user_code), ("action", "approve")];
        f.extend_from_slice(extra);
        self.form("/auth/device", Some(cookie), Some(&self.base()), &f)
            .await
    }

    /// The tokens of an approved device code.
    async fn collect(&self, device_code: &str) -> Value {
        let resp = self
            .c
            .post(self.url("/api/v1/auth/token"))
            .form(&[
                ("grant_type", DEVICE_GRANT),
                ("device_code", device_code),
                ("client_id", CLIENT),
            ])
            .send()
            .await
            .unwrap();
        let (s, v) = read(resp).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// The device flow asking for `scope`, approved by `cookie` with `extra` fields: the
    /// token response.
    async fn device_login(&self, cookie: &str, scope: &str, extra: &[(&str, &str)]) -> Value {
        let d = self.device_code(scope).await;
        let resp = self
            .approve(cookie, d["user_code"].as_str().unwrap(), extra)
            .await;
        assert_eq!(location(&resp), "/device?done=approved");
        self.collect(d["device_code"].as_str().unwrap()).await
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer(&'a str),
    Session(&'a str),
}

async fn read(resp: Response) -> (u16, Value) {
    let s = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (s, v)
}

fn location(resp: &Response) -> String {
    resp.headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn session_cookie(resp: &Response) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("tg_session="))
        .map(|r| r.split(';').next().unwrap_or("").to_string())
        .filter(|v| !v.is_empty())
}

#[track_caller]
fn insufficient_scope(s: u16, v: &Value, scope: &str) {
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["type"], "permission_error", "{v}");
    assert_eq!(v["error"]["code"], "insufficient_scope", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(scope),
        "{v}"
    );
}

fn token(t: &T, user_id: i64, epoch: i64, scope: &str) -> String {
    let c = &t.r.server_state.config;
    tokengate_server::auth::token::mint(
        &c.secret_bytes(),
        user_id,
        epoch,
        &c.api_audience(),
        scope,
        now_ms() / 1000,
        600,
    )
}

// ----- 7. token scopes ------------------------------------------------------------------

async fn scopes_suite(database_url: Option<String>) {
    let t = T::start(database_url, &[]).await;
    let admin_id = t.user("root@example.com", "admin").await;
    t.user("carol@example.com", "user").await;
    let admin = t.sign_in("root@example.com").await;
    let carol = t.sign_in("carol@example.com").await;

    // A device-flow token of an administrator, approved without ticking the admin box:
    // the admin scope it asked for is not granted, and the admin API refuses it.
    let tok = t
        .device_login(&admin, "account keys admin offline_access", &[])
        .await;
    assert_eq!(tok["scope"], "account keys offline_access", "{tok}");
    let at = tok["access_token"].as_str().unwrap();
    let (s, v) = t
        .call(
            Method::GET,
            "/api/v1/admin/users?q=a",
            Auth::Bearer(at),
            None,
        )
        .await;
    insufficient_scope(s, &v, "admin");
    let (s, v) = t
        .call(
            Method::POST,
            &format!("/api/v1/admin/users/{admin_id}/credit"),
            Auth::Bearer(at),
            Some(json!({"amount_usd": "100.00", "kind": "promo", "reason": "self"})),
        )
        .await;
    insufficient_scope(s, &v, "admin");
    // What it was granted works; billing was not asked for.
    let (s, v) = t
        .call(Method::GET, "/api/v1/me", Auth::Bearer(at), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = t
        .call(
            Method::POST,
            "/api/v1/me/keys",
            Auth::Bearer(at),
            Some(json!({"name": "from-cli"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = t
        .call(
            Method::GET,
            "/api/v1/me/billing/payments",
            Auth::Bearer(at),
            None,
        )
        .await;
    insufficient_scope(s, &v, "billing");
    let (s, v) = t
        .call(
            Method::GET,
            "/api/v1/me/request-logs",
            Auth::Bearer(at),
            None,
        )
        .await;
    insufficient_scope(s, &v, "billing");
    // A refreshed token keeps the granted scope, no more.
    let resp =
        t.c.post(t.url("/api/v1/auth/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", tok["refresh_token"].as_str().unwrap()),
                ("client_id", CLIENT),
            ])
            .send()
            .await
            .unwrap();
    let (s, refreshed) = read(resp).await;
    assert_eq!(s, 200, "{refreshed}");
    assert_eq!(refreshed["scope"], "account keys offline_access");
    let (s, v) = t
        .call(
            Method::GET,
            "/api/v1/admin/providers",
            Auth::Bearer(refreshed["access_token"].as_str().unwrap()),
            None,
        )
        .await;
    insufficient_scope(s, &v, "admin");

    // The approval page says that administrator access is asked for, and offers the box.
    let d = t.device_code("account admin").await;
    let code = d["user_code"].as_str().unwrap();
    let page =
        t.c.get(t.url(&format!("/device?user_code={code}")))
            .header("cookie", format!("tg_session={admin}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(page.contains("administrator access"), "{page}");
    assert!(page.contains("name=\"grant_admin\""), "{page}");
    // Ticked by an administrator: granted, and the admin API answers.
    let resp = t.approve(&admin, code, &[("grant_admin", "yes")]).await;
    assert_eq!(location(&resp), "/device?done=approved");
    let tok = t.collect(d["device_code"].as_str().unwrap()).await;
    assert_eq!(tok["scope"], "account admin", "{tok}");
    let (s, v) = t
        .call(
            Method::GET,
            "/api/v1/admin/providers",
            Auth::Bearer(tok["access_token"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // ...but not the keys it did not ask for.
    let (s, v) = t
        .call(
            Method::GET,
            "/api/v1/me/keys",
            Auth::Bearer(tok["access_token"].as_str().unwrap()),
            None,
        )
        .await;
    insufficient_scope(s, &v, "keys");

    // A customer cannot grant admin: the page says so, and a forged tick is ignored.
    let d = t.device_code("account admin").await;
    let code = d["user_code"].as_str().unwrap();
    let page =
        t.c.get(t.url(&format!("/device?user_code={code}")))
            .header("cookie", format!("tg_session={carol}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(page.contains("which you do not have"), "{page}");
    assert!(!page.contains("name=\"grant_admin\""), "{page}");
    let resp = t.approve(&carol, code, &[("grant_admin", "yes")]).await;
    assert_eq!(location(&resp), "/device?done=approved");
    let tok = t.collect(d["device_code"].as_str().unwrap()).await;
    assert_eq!(tok["scope"], "account", "{tok}");

    // Minted tokens: each route family needs its scope; the session holds them all.
    let ep = accounts::get_user(t.db(), admin_id)
        .await
        .unwrap()
        .auth_epoch;
    let account_only = token(&t, admin_id, ep, "account");
    let (s, v) = t
        .call(
            Method::POST,
            "/api/v1/me/keys",
            Auth::Bearer(&account_only),
            Some(json!({"name": "nope"})),
        )
        .await;
    insufficient_scope(s, &v, "keys");
    let (s, v) = t
        .call(
            Method::POST,
            "/api/v1/topup",
            Auth::Bearer(&account_only),
            Some(json!({"amount_usd": "10.00"})),
        )
        .await;
    insufficient_scope(s, &v, "billing");
    let keys_only = token(&t, admin_id, ep, "keys");
    let (s, v) = t
        .call(
            Method::GET,
            "/api/v1/balance",
            Auth::Bearer(&keys_only),
            None,
        )
        .await;
    insufficient_scope(s, &v, "account");
    let none = token(&t, admin_id, ep, "");
    let (s, v) = t
        .call(Method::GET, "/api/v1/me", Auth::Bearer(&none), None)
        .await;
    insufficient_scope(s, &v, "account");
    for path in [
        "/api/v1/admin/providers",
        "/api/v1/me/keys",
        "/api/v1/me/billing/payments",
    ] {
        let (s, v) = t.call(Method::GET, path, Auth::Session(&admin), None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    // The portal's own pages (the in-process bridge) keep working for an administrator.
    let resp =
        t.c.get(t.url("/admin/models"))
            .header("cookie", format!("tg_session={admin}"))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains("mock/coder-1"), "{page}");
    assert!(!page.contains("lacks the"), "{page}");
    // Unknown scopes are still refused at the device endpoint.
    let resp =
        t.c.post(t.url("/api/v1/auth/device/code"))
            .form(&[("client_id", CLIENT), ("scope", "account root")])
            .send()
            .await
            .unwrap();
    let (s, v) = read(resp).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_scope")));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scopes_are_enforced_on_sqlite() {
    scopes_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scopes_are_enforced_on_postgres() {
    on_postgres(scopes_suite).await;
}

// ----- 8. CSRF on the sign-in forms ---------------------------------------------------------

async fn csrf_suite(database_url: Option<String>) {
    let t = T::start(database_url, &[]).await;
    t.user("dave@example.com", "user").await;
    let login = [("email", "dave@example.com"), ("password", PW)];

    // Login CSRF: a foreign page (or a post with no origin at all) cannot sign a visitor
    // in, even with the right password and no session yet.
    for origin in [Some(EVIL), None] {
        let resp = t.form("/auth/login", None, origin, &login).await;
        assert_eq!(resp.status(), 403, "{origin:?}");
        assert_eq!(session_cookie(&resp), None);
        let (_, v) = read(resp).await;
        assert_eq!(v["error"]["code"], "csrf", "{v}");
    }
    let resp =
        t.c.post(t.url("/auth/login"))
            .header("referer", format!("{EVIL}/page"))
            .form(&login)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 403);
    // Same site: signed in.
    let dave = t.sign_in("dave@example.com").await;

    // Sign-up from a foreign page creates nothing.
    let resp = t
        .form(
            "/auth/signup",
            None,
            Some(EVIL),
            &[("email", "planted@example.com"), ("password", PW)],
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert!(
        accounts::get_user_by_email(t.db(), "planted@example.com")
            .await
            .is_err()
    );

    // Device approval from a foreign page without a session: refused before anything.
    let d = t.device_code("account").await;
    let code = d["user_code"].as_str().unwrap();
    let resp = t
        .form(
            "/auth/device",
            None,
            Some(EVIL),
            &[("user_code", code), ("action", "approve")],
        )
        .await;
    assert_eq!(resp.status(), 403);

    // Any Authorization header is not an exemption: with the session cookie and a Basic
    // (or unverifiable Bearer) header, a foreign page still cannot create a key.
    for authz in ["Basic ZGF2ZTpwdw==", "Bearer not-a-token", "Token abc"] {
        let resp =
            t.c.post(t.url("/api/v1/me/keys"))
                .header("cookie", format!("tg_session={dave}"))
                .header("authorization", authz)
                .header("origin", EVIL)
                .json(&json!({"name": "planted"}))
                .send()
                .await
                .unwrap();
        let (s, v) = read(resp).await;
        assert_eq!(s, 403, "{authz}: {v}");
        assert_eq!(v["error"]["code"], "csrf", "{authz}: {v}");
    }
    let uid = accounts::get_user_by_email(t.db(), "dave@example.com")
        .await
        .unwrap()
        .id;
    let (_, keys) = t
        .call(Method::GET, "/api/v1/me/keys", Auth::Session(&dave), None)
        .await;
    assert_eq!(keys.as_array().unwrap().len(), 0, "{keys}");
    // A valid bearer token authenticates by itself; no origin is needed.
    let ep = accounts::get_user(t.db(), uid).await.unwrap().auth_epoch;
    let tok = token(&t, uid, ep, "account keys");
    let resp =
        t.c.post(t.url("/api/v1/me/keys"))
            .header("cookie", format!("tg_session={dave}"))
            .bearer_auth(&tok)
            .header("origin", EVIL)
            .json(&json!({"name": "scripted"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 201);
    let resp =
        t.c.post(t.url("/api/v1/me/keys"))
            .bearer_auth(&tok)
            .json(&json!({"name": "scripted-2"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 201);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_forms_check_origin_on_sqlite() {
    csrf_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_forms_check_origin_on_postgres() {
    on_postgres(csrf_suite).await;
}

// ----- 13. provider keys stay write-only ----------------------------------------------------

/// The provider's stored key, opened (`None` when unset).
async fn stored_key(t: &T, name: &str) -> Option<String> {
    let c = tokengate_core::catalog::load(t.db()).await.unwrap();
    let p = c.providers.iter().find(|p| p.name == name).unwrap();
    p.api_key_enc
        .as_deref()
        .map(|s| tokengate_server::seal::open(t.r.server_state.gateway.secret(), s).unwrap())
}

async fn provider_keys_suite(database_url: Option<String>) {
    let t = T::start(database_url, &[]).await;
    t.user("ops@example.com", "admin").await;
    let ops = t.sign_in("ops@example.com").await;
    let put = |body: Value| {
        let t = &t;
        let ops = ops.clone();
        async move {
            let (s, v) = t
                .call(
                    Method::PUT,
                    "/api/v1/admin/providers/upstream",
                    Auth::Session(&ops),
                    Some(body),
                )
                .await;
            assert_eq!(s, 200, "{v}");
            assert!(
                v.get("api_key_enc").is_none() && !v.to_string().contains("sk-"),
                "{v}"
            );
            v["api_key"].as_str().unwrap().to_string()
        }
    };
    let set = put(
        json!({"kind": "openai", "base_url": "https://api.example.com/v1", "api_key": "sk-first"}),
    )
    .await;
    assert_eq!(set, "set");
    // Same origin (another path, other settings): the key stays.
    let kept =
        put(json!({"kind": "openai", "base_url": "https://API.example.com/v2", "enabled": false}))
            .await;
    assert_eq!(kept, "set");
    assert_eq!(
        stored_key(&t, "upstream").await.as_deref(),
        Some("sk-first")
    );
    // Another host without a new key: the stored key is cleared, never sent there.
    let moved =
        put(json!({"kind": "openai", "base_url": "https://collector.evil.example/v1"})).await;
    assert_eq!(moved, "unset");
    assert_eq!(stored_key(&t, "upstream").await, None);
    // Moving back does not bring it back.
    let back = put(json!({"kind": "openai", "base_url": "https://api.example.com/v1"})).await;
    assert_eq!(back, "unset");
    // A new host with a new key in the same change: the new key.
    put(
        json!({"kind": "openai", "base_url": "https://api.example.com/v1", "api_key": "sk-second"}),
    )
    .await;
    let both = put(json!({"kind": "openai", "base_url": "https://eu.api.example.com/v1", "api_key": "sk-third"})).await;
    assert_eq!(both, "set");
    assert_eq!(
        stored_key(&t, "upstream").await.as_deref(),
        Some("sk-third")
    );
    // Scheme and port are part of the origin; user info and backslashes do not hide a host.
    for url in [
        "http://eu.api.example.com/v1",
        "https://eu.api.example.com:8443/v1",
        // An HTTP client reads this as host evil.example (the backslash ends the host).
        "https://evil.example\\@eu.api.example.com/v1",
    ] {
        put(json!({"kind": "openai", "base_url": "https://eu.api.example.com/v1", "api_key": "sk-fourth"})).await;
        let s = put(json!({"kind": "openai", "base_url": url})).await;
        assert_eq!(s, "unset", "{url}");
    }
    put(json!({"kind": "openai", "base_url": "https://eu.api.example.com/v1", "api_key": "sk-fifth"})).await;
    let s =
        put(json!({"kind": "openai", "base_url": "https://someone@eu.api.example.com/v3"})).await;
    assert_eq!(s, "set");
    // null still clears; an empty key is refused before anything changes.
    let (s, v) = t
        .call(
            Method::PUT,
            "/api/v1/admin/providers/upstream",
            Auth::Session(&ops),
            Some(json!({"kind": "openai", "base_url": "https://x.example/v1", "api_key": ""})),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(
        stored_key(&t, "upstream").await.as_deref(),
        Some("sk-fifth")
    );
    let cleared = put(
        json!({"kind": "openai", "base_url": "https://eu.api.example.com/v1", "api_key": null}),
    )
    .await;
    assert_eq!(cleared, "unset");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_key_cleared_on_host_change_on_sqlite() {
    provider_keys_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_key_cleared_on_host_change_on_postgres() {
    on_postgres(provider_keys_suite).await;
}

// ----- 9. throttles that hold under concurrency --------------------------------------------

/// A same-site form post from client address `ip` (behind the trusted proxy).
async fn form_from(
    t: &T,
    ip: &str,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> Response {
    let mut req =
        t.c.post(t.url(path))
            .header("origin", t.base())
            .header("x-forwarded-for", ip)
            .form(form);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("tg_session={c}"));
    }
    req.send().await.unwrap()
}

async fn throttles_suite(database_url: Option<String>) {
    let t = T::behind_proxy(database_url).await;
    t.user("erin@example.com", "user").await;

    // 30 concurrent wrong passwords for one account, each from its own address: at most
    // 5 are checked (the account's limit), the rest are throttled without a check.
    let ips: Vec<String> = (0..30).map(|i| format!("203.0.113.{i}")).collect();
    let answers = join_all(ips.iter().map(|ip| async {
        form_from(
            &t,
            ip,
            "/auth/login",
            None,
            &[
                ("email", "erin@example.com"),
                ("password", "wrong password!"),
            ],
        )
        .await
    }))
    .await;
    let locations: Vec<String> = answers.iter().map(location).collect();
    let checked = locations
        .iter()
        .filter(|l| l.contains("error=invalid"))
        .count();
    let throttled = locations
        .iter()
        .filter(|l| l.contains("error=throttled"))
        .count();
    assert!(checked <= 5, "{checked} passwords checked: {locations:?}");
    assert_eq!(checked + throttled, 30, "{locations:?}");
    // (Attempts in flight count, so a burst may check fewer; one by one, exactly 5.)
    let mut checked_total = checked;
    for i in 0..10 {
        let resp = form_from(
            &t,
            &format!("203.0.113.{}", 100 + i),
            "/auth/login",
            None,
            &[
                ("email", "erin@example.com"),
                ("password", "wrong password!"),
            ],
        )
        .await;
        if location(&resp).contains("error=invalid") {
            checked_total += 1;
        }
    }
    assert_eq!(checked_total, 5);
    // The right password is now refused too, from anywhere.
    let resp = form_from(
        &t,
        "198.51.100.1",
        "/auth/login",
        None,
        &[("email", "erin@example.com"), ("password", PW)],
    )
    .await;
    assert!(
        location(&resp).contains("error=throttled"),
        "{}",
        location(&resp)
    );
    // Per address: 25 concurrent failures over 25 accounts from one address, at most 20
    // checked.
    let emails: Vec<String> = (0..25).map(|i| format!("nobody{i}@example.com")).collect();
    let answers = join_all(emails.iter().map(|e| async {
        form_from(
            &t,
            "198.51.100.7",
            "/auth/login",
            None,
            &[("email", e), ("password", "wrong password!")],
        )
        .await
    }))
    .await;
    let checked = answers
        .iter()
        .filter(|r| location(r).contains("error=invalid"))
        .count();
    assert!(checked <= 20, "{checked} checked from one address");

    // Sign-ups: 10 per address an hour, concurrency included.
    let emails: Vec<String> = (0..14).map(|i| format!("new{i}@example.com")).collect();
    let answers = join_all(emails.iter().map(|e| async {
        form_from(
            &t,
            "192.0.2.50",
            "/auth/signup",
            None,
            &[("email", e), ("password", PW)],
        )
        .await
    }))
    .await;
    let mut created = answers.iter().filter(|r| location(r) == "/console").count();
    let refused = answers
        .iter()
        .filter(|r| location(r) == "/signup?error=throttled")
        .count();
    assert!(
        created <= 10 && created + refused == 14,
        "{created} {refused}"
    );
    for i in 0..12 {
        let email = format!("later{i}@example.com");
        let resp = form_from(
            &t,
            "192.0.2.50",
            "/auth/signup",
            None,
            &[("email", &email), ("password", PW)],
        )
        .await;
        if location(&resp) == "/console" {
            created += 1;
        } else {
            assert_eq!(location(&resp), "/signup?error=throttled");
        }
    }
    assert_eq!(created, 10);
    let resp = form_from(
        &t,
        "192.0.2.51",
        "/auth/signup",
        None,
        &[("email", "elsewhere@example.com"), ("password", PW)],
    )
    .await;
    assert_eq!(location(&resp), "/console");

    // Device codes: 20 per address in 15 minutes.
    let answers = join_all((0..24).map(|_| {
        t.c.post(t.url("/api/v1/auth/device/code"))
            .header("x-forwarded-for", "192.0.2.60")
            .form(&[("client_id", CLIENT), ("scope", "account")])
            .send()
    }))
    .await;
    let mut ok = 0;
    for r in answers {
        let (s, v) = read(r.unwrap()).await;
        match s {
            200 => ok += 1,
            429 => assert_eq!(v["error"], "slow_down", "{v}"),
            other => panic!("{other}: {v}"),
        }
    }
    assert!(ok <= 20, "{ok}");
    for _ in 0..24 {
        let r =
            t.c.post(t.url("/api/v1/auth/device/code"))
                .header("x-forwarded-for", "192.0.2.60")
                .form(&[("client_id", CLIENT), ("scope", "account")])
                .send()
                .await
                .unwrap();
        if r.status() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 20);

    // Keys: at most 100 not revoked per account, even when created concurrently.
    let uid = t.user("keys@example.com", "user").await;
    let keys_cookie = form_from(
        &t,
        "192.0.2.70",
        "/auth/login",
        None,
        &[("email", "keys@example.com"), ("password", PW)],
    )
    .await;
    let keys_cookie = session_cookie(&keys_cookie).unwrap();
    let secret = t.r.server_state.config.secret_bytes();
    for i in 0..97 {
        let new = tokengate_core::keys::NewKey {
            name: format!("k{i}"),
            ..Default::default()
        };
        tokengate_core::keys::create(t.db(), &secret, uid, &new)
            .await
            .unwrap();
    }
    let answers = join_all((0..8).map(|i| {
        let (t, c) = (&t, &keys_cookie);
        async move {
            t.call(
                Method::POST,
                "/api/v1/me/keys",
                Auth::Session(c),
                Some(json!({"name": format!("c{i}")})),
            )
            .await
        }
    }))
    .await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 3, "{answers:?}");
    for (s, v) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*s, 409, "{v}");
        assert_eq!(v["error"]["code"], "conflict", "{v}");
    }
    // Revoking one makes room for one.
    let (_, list) = t
        .call(
            Method::GET,
            "/api/v1/me/keys",
            Auth::Session(&keys_cookie),
            None,
        )
        .await;
    let id = list[0]["id"].as_i64().unwrap();
    let (s, _) = t
        .call(
            Method::DELETE,
            &format!("/api/v1/me/keys/{id}"),
            Auth::Session(&keys_cookie),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = t
        .call(
            Method::POST,
            "/api/v1/me/keys",
            Auth::Session(&keys_cookie),
            Some(json!({"name": "after-revoke"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    // Device approvals: at most 5 approved and not yet collected per account.
    t.user("approver@example.com", "user").await;
    let ap = session_cookie(
        &form_from(
            &t,
            "192.0.2.80",
            "/auth/login",
            None,
            &[("email", "approver@example.com"), ("password", PW)],
        )
        .await,
    )
    .unwrap();
    let mut codes = vec![];
    for i in 0..6 {
        let resp =
            t.c.post(t.url("/api/v1/auth/device/code"))
                .header("x-forwarded-for", format!("192.0.2.{}", 100 + i))
                .form(&[("client_id", CLIENT), ("scope", "account")])
                .send()
                .await
                .unwrap();
        codes.push(read(resp).await.1);
    }
    let answers = join_all(codes.iter().map(|d| async {
        form_from(
            &t,
            "192.0.2.80",
            "/auth/device",
            Some(&ap),
            &[
                ("user_code", d["user_code"].as_str().unwrap()),
                ("action", "approve"),
            ],
        )
        .await
    }))
    .await;
    let approved = answers
        .iter()
        .filter(|r| location(r) == "/device?done=approved")
        .count();
    let refused = answers
        .iter()
        .filter(|r| location(r) == "/device?error=too_many_devices")
        .count();
    assert_eq!((approved, refused), (5, 1));
    // Collecting one frees a slot.
    let collected = answers
        .iter()
        .position(|r| location(r) == "/device?done=approved")
        .unwrap();
    t.collect(codes[collected]["device_code"].as_str().unwrap())
        .await;
    let pending = answers
        .iter()
        .position(|r| location(r) == "/device?error=too_many_devices")
        .unwrap();
    let resp = form_from(
        &t,
        "192.0.2.80",
        "/auth/device",
        Some(&ap),
        &[
            ("user_code", codes[pending]["user_code"].as_str().unwrap()),
            ("action", "approve"),
        ],
    )
    .await;
    assert_eq!(location(&resp), "/device?done=approved");

    // User-code lookups: 10 unknown codes per user in 15 minutes, then nothing is looked
    // up for that user (not even a real code) — no guessing oracle.
    t.user("guesser@example.com", "user").await;
    let g = session_cookie(
        &form_from(
            &t,
            "192.0.2.90",
            "/auth/login",
            None,
            &[("email", "guesser@example.com"), ("password", PW)],
        )
        .await,
    )
    .unwrap();
    let real =
        t.c.post(t.url("/api/v1/auth/device/code"))
            .header("x-forwarded-for", "192.0.2.91")
            .form(&[("client_id", CLIENT), ("scope", "account")])
            .send()
            .await
            .unwrap();
    let real = read(real).await.1;
    let real_code = real["user_code"].as_str().unwrap().to_string();
    let (s, _) = t
        .call(
            Method::GET,
            &format!("/api/v1/auth/device/request?user_code={real_code}"),
            Auth::Session(&g),
            None,
        )
        .await;
    assert_eq!(s, 200, "a found code does not count");
    let guesses: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "BCDF-GH{}{}",
                ["J", "K", "L"][i % 3],
                ["M", "N", "P", "Q"][i / 3]
            )
        })
        .filter(|c| *c != real_code)
        .take(12)
        .collect();
    let answers = join_all(guesses.iter().map(|c| {
        let (t, g) = (&t, &g);
        async move {
            t.call(
                Method::GET,
                &format!("/api/v1/auth/device/request?user_code={c}"),
                Auth::Session(g),
                None,
            )
            .await
        }
    }))
    .await;
    let mut unknown = answers.iter().filter(|(s, _)| *s == 404).count();
    let limited = answers.iter().filter(|(s, _)| *s == 429).count();
    assert!(
        unknown <= 10 && unknown + limited == guesses.len(),
        "{answers:?}"
    );
    for c in &guesses {
        let (s, _) = t
            .call(
                Method::GET,
                &format!("/api/v1/auth/device/request?user_code={c}"),
                Auth::Session(&g),
                None,
            )
            .await;
        if s == 404 {
            unknown += 1;
        }
    }
    assert_eq!(unknown, 10);
    let (s, v) = t
        .call(
            Method::GET,
            &format!("/api/v1/auth/device/request?user_code={real_code}"),
            Auth::Session(&g),
            None,
        )
        .await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    let resp = form_from(
        &t,
        "192.0.2.90",
        "/auth/device",
        Some(&g),
        &[("user_code", &real_code), ("action", "approve")],
    )
    .await;
    assert_eq!(location(&resp), "/device?error=throttled");
    assert_eq!(
        tokengate_core::auth::grant_by_user_code(t.db(), &real_code)
            .await
            .unwrap()
            .unwrap()
            .status,
        tokengate_core::auth::GrantStatus::Pending
    );
    // Another user is not affected.
    let (s, _) = t
        .call(
            Method::GET,
            &format!("/api/v1/auth/device/request?user_code={real_code}"),
            Auth::Session(&ap),
            None,
        )
        .await;
    assert_eq!(s, 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_hold_under_concurrency_on_sqlite() {
    throttles_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_hold_under_concurrency_on_postgres() {
    on_postgres(throttles_suite).await;
}

/// Peak and current resident set size of a process, in MiB, from `/proc/<pid>/status`.
fn rss_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// 500 concurrent sign-ups against the real binary (SQLite): password hashing waits for
/// its semaphore instead of running 500 argon2 hashes (19 MiB each) at once, so the
/// server's peak RSS stays under 300 MB. Prints the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_sign_ups_keep_rss_bounded() {
    let dir = std::env::temp_dir().join(format!(
        "tg-rss-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.join("config.toml");
    std::fs::write(&config, "trusted_proxies = [\"127.0.0.1\"]\n").unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tokengate-server"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENGATE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .arg("--config")
        .arg(&config)
        .env("TOKENGATE_DATA_DIR", dir.join("data"))
        .env("TOKENGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOKENGATE_PUBLIC_URL", &base)
        .env("TOKENGATE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child, std::path::PathBuf);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let pid = child.id();
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server exited: {status}");
        }
        if c.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _guard = Kill(child, dir);
    let (idle_peak, _) = rss_mib(pid);
    let started = std::time::Instant::now();
    let answers = join_all((0..500u32).map(|i| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let email = format!("user{i}@example.com");
            let resp = c
                .post(format!("{base}/auth/signup"))
                .header("origin", &base)
                .header(
                    "x-forwarded-for",
                    format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                )
                .form(&[("email", email.as_str()), ("password", PW)])
                .send()
                .await;
            resp.map(|r| location(&r))
        }
    }))
    .await;
    let (peak, now) = rss_mib(pid);
    let created = answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(|l| l == "/console"))
        .count();
    println!(
        "500 concurrent sign-ups: {created} created in {:.1} s; server RSS peak {peak} MiB \
         (idle {idle_peak} MiB), now {now} MiB",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        created,
        500,
        "{:?}",
        answers
            .iter()
            .find(|a| !a.as_ref().is_ok_and(|l| l == "/console"))
    );
    assert!(peak < 300, "peak RSS {peak} MiB");
}

// ----- 6. OpenID Connect never takes over an unverified account ---------------------------

/// A minimal SMTP server that hands each message's DATA to the returned receiver.
async fn fake_smtp() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 fake ESMTP\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    let cmd = line.to_ascii_uppercase();
                    let reply: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-fake\r\n250 8BITMIME\r\n"
                    } else if cmd.starts_with("DATA") {
                        w.write_all(b"354 go ahead\r\n").await.unwrap();
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 || line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        let _ = tx.send(data);
                        b"250 queued\r\n"
                    } else if cmd.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, rx)
}

/// The verification link (path and query) in a mailed message.
fn verification_link(message: &str) -> String {
    // Quoted-printable: soft line breaks and an encoded '='.
    let text = message.replace("=\r\n", "").replace("=3D", "=");
    let start = text.find("/auth/verify-email?token=").expect(&text);
    text[start..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .to_string()
}

async fn next_mail(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
        .await
        .expect("a mail within 20 s")
        .unwrap()
}

async fn oidc_suite(database_url: Option<String>) {
    use tokengate_server::auth::oidc::{Identity, Refusal, find_or_create};
    let (smtp_port, mut mails) = fake_smtp().await;
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    let t = T::start(
        database_url,
        &[
            ("TOKENGATE_SMTP_URL", &smtp_url),
            ("TOKENGATE_SMTP_FROM", "tokengate <noreply@example.com>"),
        ],
    )
    .await;
    let idp = tokengate_server::config::OidcConfig {
        id: "idp".into(),
        name: "IdP".into(),
        issuer: "https://idp.example".into(),
        client_id: "tg".into(),
        client_secret: None,
        client_secret_env: None,
        link_by_email: true,
    };
    let state = &t.r.server_state;
    let identity = |subject: &'static str, email: &str, verified: bool| Identity {
        issuer: "https://idp.example",
        subject,
        email: Some(email.to_string()),
        verified,
        name: None,
    };
    let signup = |email: &'static str| {
        let t = &t;
        async move {
            let resp = t
                .form(
                    "/auth/signup",
                    None,
                    Some(&t.base()),
                    &[("email", email), ("password", PW)],
                )
                .await;
            assert_eq!(location(&resp), "/console");
            accounts::get_user_by_email(t.db(), email).await.unwrap().id
        }
    };

    // A squatter signs up with the victim's address and never verifies it (the link goes
    // to the victim's mailbox). The victim's first sign-in with an identity provider that
    // vouches for the address must not land in the squatter's account.
    let squatter = signup("victim@example.com").await;
    let mail = next_mail(&mut mails).await;
    assert!(mail.contains("victim@example.com"), "{mail}");
    assert!(
        !tokengate_core::auth::email_verified(t.db(), squatter)
            .await
            .unwrap()
    );
    let refused = find_or_create(
        state,
        &idp,
        identity("victim", "victim@example.com", true),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, Refusal::Link(_)), "{refused:?}");
    assert!(
        accounts::user_by_identity(t.db(), "https://idp.example", "victim")
            .await
            .unwrap()
            .is_none()
    );
    // Signed in to that account in the same browser (its password proves it), the owner
    // links it.
    let linked = find_or_create(
        state,
        &idp,
        identity("victim", "victim@example.com", false),
        Some(squatter),
    )
    .await
    .unwrap();
    assert_eq!(linked.id, squatter);

    // An account whose owner opened the mailed link is linked by email automatically.
    let carol = signup("carol@example.com").await;
    let link = verification_link(&next_mail(&mut mails).await);
    let resp = t.c.get(t.url(&link)).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/login?verified=1");
    assert!(
        tokengate_core::auth::email_verified(t.db(), carol)
            .await
            .unwrap()
    );
    // A link works once; a forged one not at all.
    let resp = t.c.get(t.url(&link)).send().await.unwrap();
    assert_eq!(location(&resp), "/login?error=verify_link");
    let resp =
        t.c.get(t.url("/auth/verify-email?token=forged"))
            .send()
            .await
            .unwrap();
    assert_eq!(location(&resp), "/login?error=verify_link");
    // ...but not when the provider itself has not verified the address.
    let refused = find_or_create(
        state,
        &idp,
        identity("carol-1", "carol@example.com", false),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, Refusal::Link(_)), "{refused:?}");
    let u = find_or_create(
        state,
        &idp,
        identity("carol", "carol@example.com", true),
        None,
    )
    .await
    .unwrap();
    assert_eq!(u.id, carol);
    // Without link_by_email only the signed-in owner links.
    let strict = tokengate_server::config::OidcConfig {
        link_by_email: false,
        ..idp.clone()
    };
    let refused = find_or_create(
        state,
        &strict,
        identity("carol-2", "carol@example.com", true),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, Refusal::Link(_)), "{refused:?}");

    // A new identity creates an account, verified only if the provider says so.
    let dan = find_or_create(state, &idp, identity("dan", "dan@example.com", true), None)
        .await
        .unwrap();
    assert!(
        tokengate_core::auth::email_verified(t.db(), dan.id)
            .await
            .unwrap()
    );
    let eve = find_or_create(state, &idp, identity("eve", "eve@example.com", false), None)
        .await
        .unwrap();
    assert!(
        !tokengate_core::auth::email_verified(t.db(), eve.id)
            .await
            .unwrap()
    );
    // A link mailed for an address the account no longer has verifies nothing.
    let frank = signup("frank@example.com").await;
    let link = verification_link(&next_mail(&mut mails).await);
    sqlx::query(
        "UPDATE users SET email = 'f2@example.com', email_lower = 'f2@example.com' WHERE id = $1",
    )
    .bind(frank)
    .execute(t.db().pool())
    .await
    .unwrap();
    let resp = t.c.get(t.url(&link)).send().await.unwrap();
    assert_eq!(location(&resp), "/login?error=verify_link");
    assert!(
        !tokengate_core::auth::email_verified(t.db(), frank)
            .await
            .unwrap()
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_links_only_verified_accounts_on_sqlite() {
    oidc_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_links_only_verified_accounts_on_postgres() {
    on_postgres(oidc_suite).await;
}

/// `signups_per_address_per_hour = 0` lifts the sign-up limit (e.g. a suite whose clients
/// all come from one address); the default is 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_limit_is_configurable() {
    let t = T::start(None, &[("TOKENGATE_SIGNUPS_PER_ADDRESS_PER_HOUR", "0")]).await;
    for i in 0..12 {
        let email = format!("many{i}@example.com");
        let resp = t
            .form(
                "/auth/signup",
                None,
                Some(&t.base()),
                &[("email", &email), ("password", PW)],
            )
            .await;
        assert_eq!(location(&resp), "/console", "sign-up {i}");
    }
    t.stop().await;
}

/// The verification link can be mailed again from the settings page (3 an hour), and
/// `GET /api/v1/me` says whether the address is verified.
async fn resend_suite(database_url: Option<String>) {
    let (smtp_port, mut mails) = fake_smtp().await;
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    let t = T::start(
        database_url,
        &[
            ("TOKENGATE_SMTP_URL", &smtp_url),
            ("TOKENGATE_SMTP_FROM", "tokengate <noreply@example.com>"),
        ],
    )
    .await;
    let resp = t
        .form(
            "/auth/signup",
            None,
            Some(&t.base()),
            &[("email", "gina@example.com"), ("password", PW)],
        )
        .await;
    let gina = session_cookie(&resp).unwrap();
    next_mail(&mut mails).await;
    let (_, me) = t
        .call(Method::GET, "/api/v1/me", Auth::Session(&gina), None)
        .await;
    assert_eq!(me["email_verified"], false, "{me}");
    let settings = |t: &T, c: &str| {
        let req =
            t.c.get(t.url("/me/settings"))
                .header("cookie", format!("tg_session={c}"));
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    assert!(settings(&t, &gina).await.contains("email-unverified"));
    let mut last = String::new();
    for _ in 0..3 {
        let resp = t
            .form(
                "/auth/verify-email/resend",
                Some(&gina),
                Some(&t.base()),
                &[],
            )
            .await;
        assert_eq!(location(&resp), "/me/settings?verification=sent");
        last = verification_link(&next_mail(&mut mails).await);
    }
    let resp = t
        .form(
            "/auth/verify-email/resend",
            Some(&gina),
            Some(&t.base()),
            &[],
        )
        .await;
    assert_eq!(location(&resp), "/me/settings?verification=throttled");
    // A foreign page cannot trigger it.
    let resp = t
        .form("/auth/verify-email/resend", Some(&gina), Some(EVIL), &[])
        .await;
    assert_eq!(resp.status(), 403);
    let resp = t.c.get(t.url(&last)).send().await.unwrap();
    assert_eq!(location(&resp), "/login?verified=1");
    let (_, me) = t
        .call(Method::GET, "/api/v1/me", Auth::Session(&gina), None)
        .await;
    assert_eq!(me["email_verified"], true, "{me}");
    assert!(!settings(&t, &gina).await.contains("email-unverified"));
    let resp = t
        .form(
            "/auth/verify-email/resend",
            Some(&gina),
            Some(&t.base()),
            &[],
        )
        .await;
    assert_eq!(location(&resp), "/me/settings?verification=already");
    // Signed out: to sign-in.
    let resp = t
        .form("/auth/verify-email/resend", None, Some(&t.base()), &[])
        .await;
    assert!(location(&resp).starts_with("/login"), "{}", location(&resp));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_link_sent_again_on_sqlite() {
    resend_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_link_sent_again_on_postgres() {
    on_postgres(resend_suite).await;
}

/// Accounts the operator creates count as verified: the demo administrator (and
/// `tokengate-server admin create`); a sign-up does not until its link is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_created_accounts_are_verified() {
    let t = T::start(None, &[("TOKENGATE_DEMO", "1")]).await;
    let admin = accounts::get_user_by_email(t.db(), tokengate_core::demo::DEMO_EMAIL)
        .await
        .unwrap();
    assert!(
        tokengate_core::auth::email_verified(t.db(), admin.id)
            .await
            .unwrap()
    );
    let resp = t
        .form(
            "/auth/signup",
            None,
            Some(&t.base()),
            &[("email", "fresh@example.com"), ("password", PW)],
        )
        .await;
    assert_eq!(location(&resp), "/console");
    let fresh = accounts::get_user_by_email(t.db(), "fresh@example.com")
        .await
        .unwrap();
    assert!(
        !tokengate_core::auth::email_verified(t.db(), fresh.id)
            .await
            .unwrap()
    );
    t.stop().await;
}

/// `tokengate-server admin create` marks the address it was given verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_marks_the_address_verified() {
    let dir = std::env::temp_dir().join(format!(
        "tg-admin-create-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tokengate-server"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENGATE_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(["admin", "create", "--email", "ops@example.com"])
        .env("TOKENGATE_DATA_DIR", &dir)
        .env("TOKENGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let db = tokengate_core::Db::connect(&format!("sqlite://{}/tokengate.db", dir.display()))
        .await
        .unwrap();
    let ops = accounts::get_user_by_email(&db, "ops@example.com")
        .await
        .unwrap();
    assert!(
        tokengate_core::auth::email_verified(&db, ops.id)
            .await
            .unwrap()
    );
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

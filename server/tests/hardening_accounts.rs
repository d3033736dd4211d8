//! Hardening of accounts and sessions (issue 13) over real HTTP on SQLite and PostgreSQL:
//! token scopes enforced per route (admin only when an administrator grants it), the CSRF
//! origin check on the sign-in forms, provider keys that stay write-only across a base-URL
//! change, throttles that hold under concurrency (sign-in failures, sign-ups and device
//! codes per address, caps on keys and pending grants, user-code lookups per user), bounded
//! password hashing, and OpenID Connect linking only to verified local accounts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, on_postgres, start_public};
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
        accounts::create_user(self.db(), email, "Test", Some(&hash), role)
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

#[tokio::test]
async fn token_scopes_are_enforced_on_sqlite() {
    scopes_suite(None).await;
}

#[tokio::test]
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

#[tokio::test]
async fn sign_in_forms_check_origin_on_sqlite() {
    csrf_suite(None).await;
}

#[tokio::test]
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

#[tokio::test]
async fn provider_key_cleared_on_host_change_on_sqlite() {
    provider_keys_suite(None).await;
}

#[tokio::test]
async fn provider_key_cleared_on_host_change_on_postgres() {
    on_postgres(provider_keys_suite).await;
}

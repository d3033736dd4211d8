//! Accounts over real HTTP on SQLite and PostgreSQL: local sign-in and sign-up (portal form
//! posts, session cookie, throttling, session-id rotation, safe redirects), the account API
//! with bearer access tokens (exact contract shapes, key lifecycle seen by `/v1` at once,
//! usage totals, validation), tenant isolation, the device flow end to end (discovery,
//! polling errors, approval and denial, single-use codes, rotating refresh tokens with
//! reuse detection), sign-out everywhere and suspension, the CSRF origin check, and hostile
//! input (non-numeric ids, control characters in `next`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Running, on_postgres, start_public, wait_for_logs};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sqlx::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokengate_core::accounts::{self, EntryKind};
use tokengate_core::money::format_exact;
use tokengate_core::{now_ms, password};

const PW: &str = "correct horse battery staple";
const EVIL: &str = "http://evil.example";
const CLIENT: &str = "tokengate-cli";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const USD: i64 = 1_000_000_000;

/// How a request authenticates.
enum Auth<'a> {
    Anon,
    Bearer(&'a str),
    /// The portal session; state-changing requests carry this site's `Origin`.
    Session(&'a str),
    /// The session cookie with the given `Origin` and `Referer` (each optional).
    Foreign {
        cookie: &'a str,
        origin: Option<&'a str>,
        referer: Option<&'a str>,
    },
}

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

    fn base(&self) -> &str {
        &self.r.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.r.base)
    }

    fn db(&self) -> &tokengate_core::Db {
        &self.r.server_state.db
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: &Auth<'_>,
        body: Option<Value>,
    ) -> Response {
        let state_changing = !matches!(method, Method::GET | Method::HEAD);
        let mut req = self.c.request(method, self.url(path));
        match auth {
            Auth::Anon => {}
            Auth::Bearer(t) => req = req.bearer_auth(t),
            Auth::Session(c) => {
                req = req.header("cookie", format!("tg_session={c}"));
                if state_changing {
                    req = req.header("origin", self.base());
                }
            }
            Auth::Foreign {
                cookie,
                origin,
                referer,
            } => {
                req = req.header("cookie", format!("tg_session={cookie}"));
                if let Some(o) = origin {
                    req = req.header("origin", *o);
                }
                if let Some(r) = referer {
                    req = req.header("referer", *r);
                }
            }
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// A JSON call; the body as JSON (or as a JSON string when it is not JSON).
    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &Auth<'_>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let resp = self.send(method, path, auth, body).await;
        read(resp).await
    }

    async fn me_status(&self, auth: &Auth<'_>) -> u16 {
        self.call(Method::GET, "/api/v1/me", auth, None).await.0
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

    async fn login(&self, cookie: Option<&str>, email: &str, pw: &str, next: &str) -> Response {
        self.form(
            "/auth/login",
            cookie,
            Some(self.base()),
            &[("email", email), ("password", pw), ("next", next)],
        )
        .await
    }

    /// Signs in and returns the session cookie's value.
    async fn sign_in(&self, email: &str, pw: &str) -> String {
        let resp = self.login(None, email, pw, "/console").await;
        assert_eq!(resp.status(), 303);
        assert_eq!(location(&resp), "/console");
        session_cookie(&resp).expect("a session cookie after sign-in")
    }

    /// A form post to an OAuth endpoint: status, `Content-Type`, body.
    async fn oauth(&self, url: &str, form: &[(&str, &str)]) -> (u16, String, Value) {
        let resp = self.c.post(url).form(form).send().await.unwrap();
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (s, v) = read(resp).await;
        (s, ct, v)
    }

    fn token_endpoint(&self) -> String {
        self.url("/api/v1/auth/token")
    }

    fn resource(&self) -> String {
        self.url("/api/v1")
    }

    /// A new device authorization.
    async fn device_code(&self) -> Value {
        let (s, _, v) = self
            .oauth(
                &self.url("/api/v1/auth/device/code"),
                &[
                    ("client_id", CLIENT),
                    ("scope", "account keys offline_access"),
                    ("resource", &self.resource()),
                ],
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// One poll of the token endpoint; every answer is JSON.
    async fn poll(&self, device_code: &str) -> (u16, Value) {
        let (s, ct, v) = self
            .oauth(
                &self.token_endpoint(),
                &[
                    ("grant_type", DEVICE_GRANT),
                    ("device_code", device_code),
                    ("client_id", CLIENT),
                    ("resource", &self.resource()),
                ],
            )
            .await;
        assert!(ct.starts_with("application/json"), "{ct}: {v}");
        (s, v)
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        let (s, ct, v) = self
            .oauth(
                &self.token_endpoint(),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("client_id", CLIENT),
                ],
            )
            .await;
        assert!(ct.starts_with("application/json"), "{ct}: {v}");
        (s, v)
    }

    /// What a client waiting out the poll interval would see: the last poll moved back a
    /// minute in the database instead of sleeping.
    async fn wait_interval(&self, user_code: &str) {
        sqlx::query(
            "UPDATE device_grants SET last_poll_at = last_poll_at - 60000 WHERE user_code = $1",
        )
        .bind(user_code)
        .execute(self.db().pool())
        .await
        .unwrap();
    }

    async fn grant_status(&self, user_code: &str) -> String {
        tokengate_core::auth::grant_by_user_code(self.db(), user_code)
            .await
            .unwrap()
            .unwrap()
            .status
            .to_string()
    }

    /// The device flow approved by the signed-in `cookie`: (access token, refresh token).
    async fn device_login(&self, cookie: &str) -> (String, String) {
        let d = self.device_code().await;
        let user_code = d["user_code"].as_str().unwrap();
        let resp = self
            .form(
                "/auth/device",
                Some(cookie),
                Some(self.base()),
                &[("user_code", user_code), ("action", "approve")],
            )
            .await;
        assert_eq!(resp.status(), 303);
        assert_eq!(location(&resp), "/device?done=approved");
        let (s, v) = self.poll(d["device_code"].as_str().unwrap()).await;
        assert_eq!(s, 200, "{v}");
        (
            v["access_token"].as_str().unwrap().to_string(),
            v["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    async fn chat(&self, key: &str, model: &str) -> (u16, Value) {
        let (s, _, v) = common::chat(
            self.base(),
            key,
            json!({"model": model, "max_tokens": 16,
                "messages": [{"role": "user", "content": "hello"}]}),
        )
        .await;
        (s, v)
    }

    async fn stop(self) {
        self.r.stop().await;
    }
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
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_string()
}

/// The full `Set-Cookie` line of the session cookie, if the response sets it.
fn session_cookie_line(resp: &Response) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tg_session="))
        .map(str::to_string)
}

/// The session cookie's value, if the response sets a non-empty one.
fn session_cookie(resp: &Response) -> Option<String> {
    session_cookie_line(resp)
        .and_then(|l| {
            l.strip_prefix("tg_session=")
                .map(|r| r.split(';').next().unwrap_or("").to_string())
        })
        .filter(|v| !v.is_empty())
}

/// An account-API error: `{"error":{"message","type","code"}}`.
fn api_error(v: &Value, typ: &str, code: &str) {
    assert_eq!(v["error"]["type"], typ, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

/// A USD string in the exact wire form: two to nine decimals, no trailing zero beyond the
/// second (`"5.00"`, `"4.99985"`).
fn is_usd(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| s.split_once('.'))
        .is_some_and(|(w, f)| {
            !w.is_empty()
                && w.bytes().all(|b| b.is_ascii_digit())
                && (2..=9).contains(&f.len())
                && (f.len() == 2 || !f.ends_with('0'))
                && f.bytes().all(|b| b.is_ascii_digit())
        })
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| OffsetDateTime::parse(s, &Rfc3339).is_ok())
}

/// A user (optionally with a password and credit) whose account the gateway has loaded.
async fn user(r: &Running, email: &str, pw: Option<&str>, nanos: i64) -> i64 {
    let db = &r.server_state.db;
    let hash = pw.map(|p| password::hash(p).unwrap());
    let u = accounts::create_user(
        db,
        email,
        "Test User",
        hash.as_deref(),
        accounts::Role::User,
    )
    .await
    .unwrap();
    if nanos > 0 {
        accounts::apply_entry(
            db,
            accounts::Entry {
                user_id: u.id,
                kind: EntryKind::Promo,
                amount_nano: nanos,
                reference: None,
                note: Some("test"),
                created_by: None,
                refuse_negative: false,
            },
        )
        .await
        .unwrap();
    }
    let gw = &r.server_state.gateway;
    for _ in 0..100 {
        gw.refresh().await.unwrap();
        if gw.money.is_active(u.id) && gw.money.account_funds(u.id).persisted == nanos {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(gw.money.is_active(u.id), "account {} never loaded", u.id);
    u.id
}

/// An access token for `user_id` as the device flow would issue it.
async fn token_for(r: &Running, user_id: i64) -> String {
    r.token(user_id, "account keys").await
}

// ----- 1. local sign-in and sign-up -------------------------------------------------------

async fn sign_in_suite(database_url: Option<String>) {
    let t = T::start(database_url.clone(), &[]).await;
    let alice = user(&t.r, "alice@example.com", Some(PW), 0).await;

    // Success: 303 to `next`, an HttpOnly SameSite=Lax session cookie (email case-blind).
    let resp = t
        .login(None, "Alice@Example.COM", PW, "/console/keys")
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/console/keys");
    let line = session_cookie_line(&resp)
        .expect("a session cookie")
        .to_lowercase();
    assert!(line.contains("httponly"), "{line}");
    assert!(line.contains("samesite=lax"), "{line}");
    assert!(line.contains("path=/"), "{line}");
    let c1 = session_cookie(&resp).unwrap();
    let (s, me) = t
        .call(Method::GET, "/api/v1/me", &Auth::Session(&c1), None)
        .await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["id"], alice);
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["display_name"], "Test User");
    assert_eq!(me["balance_usd"], "0.00");
    assert_eq!(me["status"], "active");
    let (s, v) = t.call(Method::GET, "/api/v1/me", &Auth::Anon, None).await;
    assert_eq!(s, 401);
    api_error(&v, "authentication_error", "unauthorized");
    assert_eq!(
        t.me_status(&Auth::Session("AAAAAAAAAAAAAAAAAAAAAA")).await,
        401
    );

    // Wrong password and unknown email look the same, and sign no one in.
    let wrong = t
        .login(
            None,
            "alice@example.com",
            "not the password",
            "/console/keys",
        )
        .await;
    let unknown = t
        .login(None, "nobody@example.com", PW, "/console/keys")
        .await;
    assert_eq!(wrong.status(), 303);
    assert_eq!(unknown.status(), 303);
    assert!(
        location(&wrong).starts_with("/login?error=invalid"),
        "{}",
        location(&wrong)
    );
    assert_eq!(location(&wrong), location(&unknown));
    assert_eq!(session_cookie(&wrong), None);
    assert_eq!(session_cookie(&unknown), None);

    // `next` never leaves the site.
    for next in [
        "//evil.example",
        "https://evil.example/x",
        "/\\evil.example",
    ] {
        let resp = t.login(None, "alice@example.com", PW, next).await;
        assert_eq!(resp.status(), 303);
        assert_eq!(location(&resp), "/console", "next={next}");
        assert!(session_cookie(&resp).is_some());
    }

    // The session id changes at sign-in: a planted id is not adopted, and the cookie a
    // browser had before signing in again stops working.
    let planted = "AAAAAAAAAAAAAAAAAAAAAA";
    let resp = t
        .login(Some(planted), "alice@example.com", PW, "/console")
        .await;
    assert_eq!(resp.status(), 303);
    let fresh = session_cookie(&resp).unwrap();
    assert_ne!(fresh, planted);
    assert_eq!(t.me_status(&Auth::Session(planted)).await, 401);
    assert_eq!(t.me_status(&Auth::Session(&fresh)).await, 200);
    let resp = t
        .login(Some(&c1), "alice@example.com", PW, "/console")
        .await;
    assert_eq!(resp.status(), 303);
    let c2 = session_cookie(&resp).unwrap();
    assert_ne!(c1, c2);
    assert_eq!(t.me_status(&Auth::Session(&c1)).await, 401);
    assert_eq!(t.me_status(&Auth::Session(&c2)).await, 200);

    // Sign-out from another site (or with no Origin/Referer) is refused and changes nothing.
    for origin in [Some(EVIL), None] {
        let resp = t.form("/auth/logout", Some(&c2), origin, &[]).await;
        assert_eq!(resp.status(), 403, "origin {origin:?}");
        api_error(&read(resp).await.1, "permission_error", "csrf");
        assert_eq!(t.me_status(&Auth::Session(&c2)).await, 200);
    }
    let resp = t.form("/auth/logout", Some(&c2), Some(t.base()), &[]).await;
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with("/login"), "{}", location(&resp));
    assert_eq!(t.me_status(&Auth::Session(&c2)).await, 401);
    assert_eq!(
        t.me_status(&Auth::Session(&fresh)).await,
        200,
        "other sessions stay"
    );

    // Five failures lock the account out, even with the right password; others unaffected.
    user(&t.r, "bob@example.com", Some(PW), 0).await;
    for _ in 0..5 {
        let resp = t
            .login(None, "bob@example.com", "guess guess", "/console")
            .await;
        assert!(location(&resp).starts_with("/login?error=invalid"));
    }
    let resp = t.login(None, "BOB@example.com", PW, "/console").await;
    assert_eq!(resp.status(), 303);
    assert!(
        location(&resp).starts_with("/login?error=throttled"),
        "{}",
        location(&resp)
    );
    assert_eq!(session_cookie(&resp), None);
    t.sign_in("alice@example.com", PW).await;

    // Sign-up creates the account and signs in.
    let resp = t
        .form(
            "/auth/signup",
            None,
            Some(t.base()),
            &[
                ("email", "New.User@Example.com"),
                ("password", PW),
                ("display_name", "New User"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/console");
    let cookie = session_cookie(&resp).expect("signed in after sign-up");
    let (s, me) = t
        .call(Method::GET, "/api/v1/me", &Auth::Session(&cookie), None)
        .await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["email"], "New.User@Example.com");
    assert_eq!(me["display_name"], "New User");
    assert_eq!(me["status"], "active");
    assert_eq!(me["balance_usd"], "0.00");
    let created = accounts::get_user_by_email(t.db(), "new.user@example.com")
        .await
        .unwrap();
    assert_eq!(me["id"], created.id);
    t.sign_in("new.user@example.com", PW).await;

    // The same address in another case is refused; so is a weak password.
    let resp = t
        .form(
            "/auth/signup",
            None,
            Some(t.base()),
            &[("email", "new.user@EXAMPLE.com"), ("password", PW)],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert!(
        location(&resp).starts_with("/signup?error=taken"),
        "{}",
        location(&resp)
    );
    assert_eq!(session_cookie(&resp), None);
    let n: i64 = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM users WHERE email_lower = 'new.user@example.com'",
    )
    .fetch_one(t.db().pool())
    .await
    .unwrap()
    .try_get("n")
    .unwrap();
    assert_eq!(n, 1);
    let resp = t
        .form(
            "/auth/signup",
            None,
            Some(t.base()),
            &[("email", "weak@example.com"), ("password", "short")],
        )
        .await;
    assert!(location(&resp).starts_with("/signup?error=weak_password"));
    assert!(
        accounts::get_user_by_email(t.db(), "weak@example.com")
            .await
            .is_err()
    );

    // With sign-up disabled, nothing is created and no one is signed in. (The first
    // server stops first: a second live instance without Redis on one database is refused.)
    t.stop().await;
    let closed = T::start(database_url, &[("TOKENGATE_SIGNUP", "0")]).await;
    let resp = closed
        .form(
            "/auth/signup",
            None,
            Some(closed.base()),
            &[("email", "closed@example.com"), ("password", PW)],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert!(
        location(&resp).starts_with("/login?error=signup_disabled"),
        "{}",
        location(&resp)
    );
    assert_eq!(session_cookie(&resp), None);
    assert!(matches!(
        accounts::get_user_by_email(closed.db(), "closed@example.com").await,
        Err(tokengate_core::Error::NotFound)
    ));
    closed.stop().await;
}

#[tokio::test]
async fn sign_in_and_sign_up_on_sqlite() {
    sign_in_suite(None).await;
}

#[tokio::test]
async fn sign_in_and_sign_up_on_postgres() {
    on_postgres(sign_in_suite).await;
}

// ----- 2. the account API -----------------------------------------------------------------

fn assert_key_shape(k: &Value) {
    assert!(k["id"].is_i64(), "{k}");
    assert!(k["name"].is_string(), "{k}");
    assert!(
        k["key_prefix"]
            .as_str()
            .is_some_and(|p| p.starts_with("sk-tg-")),
        "{k}"
    );
    assert!(k["status"].is_string(), "{k}");
    assert!(is_usd(&k["balance_usd"]), "{k}");
    assert!(is_rfc3339(&k["created_at"]), "{k}");
    let o = k.as_object().unwrap();
    for field in ["last_used_at", "expires_at"] {
        assert!(o.contains_key(field), "{field} missing: {k}");
    }
}

async fn account_api_suite(database_url: Option<String>) {
    let t = T::start(database_url, &[]).await;
    let uid = user(&t.r, "keys@example.com", None, 5 * USD).await;
    let tok = token_for(&t.r, uid).await;
    let me = Auth::Bearer(&tok);

    let (s, v) = t.call(Method::GET, "/api/v1/me", &me, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], uid);
    assert_eq!(v["email"], "keys@example.com");
    assert_eq!(v["display_name"], "Test User");
    assert_eq!(v["balance_usd"], "5.00");
    assert_eq!(v["status"], "active");
    let (s, v) = t.call(Method::GET, "/api/v1/balance", &me, None).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"balance_usd": "5.00", "currency": "USD"}));
    let (s, v) = t
        .call(
            Method::GET,
            "/api/v1/me",
            &Auth::Bearer(&format!("{tok}x")),
            None,
        )
        .await;
    assert_eq!(s, 401);
    api_error(&v, "authentication_error", "unauthorized");

    // Create: 201 with the secret, once.
    let (s, k) = t
        .call(
            Method::POST,
            "/api/v1/me/keys",
            &me,
            Some(json!({"name": "fieryeye"})),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    assert_key_shape(&k);
    assert_eq!(k["name"], "fieryeye");
    assert_eq!(k["status"], "active");
    assert_eq!(k["balance_usd"], "5.00");
    let raw = k["raw"].as_str().unwrap().to_string();
    assert!(raw.starts_with("sk-tg-") && raw.len() > 40, "{raw}");
    assert!(raw.starts_with(k["key_prefix"].as_str().unwrap()));
    assert!(raw.len() > k["key_prefix"].as_str().unwrap().len());
    let id = k["id"].as_i64().unwrap();
    let key_path = format!("/api/v1/me/keys/{id}");

    // The key works on /v1 at once; two requests are metered.
    assert_eq!(t.chat(&raw, "mock/fast-1").await.0, 200);
    assert_eq!(t.chat(&raw, "mock/fast-1").await.0, 200);

    // Listing: an array, never the secret.
    let resp = t.send(Method::GET, "/api/v1/me/keys", &me, None).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(&raw), "the secret leaked into the list");
    assert!(!text.contains(&raw["sk-tg-".len() + 6..]));
    let list: Value = serde_json::from_str(&text).unwrap();
    let items = list.as_array().expect("a JSON array");
    assert_eq!(items.len(), 1);
    assert_key_shape(&items[0]);
    assert_eq!(items[0]["id"], id);
    assert!(!items[0].as_object().unwrap().contains_key("raw"));
    let (s, one) = t.call(Method::GET, &key_path, &me, None).await;
    assert_eq!(s, 200);
    assert_eq!(one["name"], "fieryeye");
    assert!(!one.to_string().contains(&raw) && one.get("raw").is_none());

    // Usage totals are the sums of the stored request logs.
    let logs = wait_for_logs(&t.r, uid, 2).await;
    let ok: Vec<_> = logs
        .iter()
        .filter(|l| (200..300).contains(&l.status))
        .collect();
    assert_eq!(ok.len(), 2);
    let tin: i64 = ok.iter().map(|l| l.tokens_in).sum();
    let tout: i64 = ok.iter().map(|l| l.tokens_out).sum();
    let cost: i64 = ok.iter().map(|l| l.cost_nano).sum();
    assert!(tin > 0 && tout > 0 && cost > 0);
    let (s, u) = t
        .call(Method::GET, "/api/v1/me/usage?days=7", &me, None)
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["range_days"], 7);
    assert_eq!(u["total_requests"], 2);
    assert_eq!(u["total_tokens_in"], tin);
    assert_eq!(u["total_tokens_out"], tout);
    assert_eq!(u["total_cost_usd"], format_exact(cost));
    for days in ["0", "366", "-1", "abc"] {
        let (s, v) = t
            .call(
                Method::GET,
                &format!("/api/v1/me/usage?days={days}"),
                &me,
                None,
            )
            .await;
        assert_eq!(s, 400, "days={days}: {v}");
        api_error(&v, "invalid_request_error", "invalid_request");
    }
    let (s, u) = t
        .call(Method::GET, "/api/v1/me/usage?days=365", &me, None)
        .await;
    assert_eq!((s, u["range_days"].as_i64()), (200, Some(365)));

    // Rename.
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "renamed");
    assert_eq!(
        t.call(Method::GET, &key_path, &me, None).await.1["name"],
        "renamed"
    );

    // Disable: 401 on the very next request; enable: works again.
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("disabled")));
    let (s, v) = t.chat(&raw, "mock/fast-1").await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("active")));
    assert_eq!(t.chat(&raw, "mock/fast-1").await.0, 200);
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"status": "revoked"})),
        )
        .await;
    assert_eq!(s, 422, "status is active or disabled: {v}");

    // Expiry: the past is refused; a near future expires the key on /v1; null clears it.
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"expires_at": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    api_error(&v, "invalid_request_error", "validation_error");
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"expires_at": "not a time"})),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(
        t.call(Method::GET, &key_path, &me, None).await.1["expires_at"],
        Value::Null
    );
    let soon = now_ms() / 1000 + 3;
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"expires_at": soon})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let at = OffsetDateTime::parse(v["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!(at.unix_timestamp(), soon);
    assert_eq!(t.chat(&raw, "mock/fast-1").await.0, 200);
    tokio::time::sleep(Duration::from_millis(
        (soon * 1000 - now_ms()).max(0) as u64 + 100,
    ))
    .await;
    assert_eq!(t.chat(&raw, "mock/fast-1").await.0, 401, "an expired key");
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"expires_at": null})),
        )
        .await;
    assert_eq!((s, &v["expires_at"]), (200, &Value::Null), "{v}");
    assert_eq!(t.chat(&raw, "mock/fast-1").await.0, 200);

    // Spend limit: an exhausted one gives 402; raising it (as a number) restores; null clears.
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"spend_limit_usd": "0.000000001"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["spend_limit_usd"], "0.000000001");
    let (s, v) = t.chat(&raw, "mock/fast-1").await;
    assert_eq!(s, 402, "{v}");
    assert_eq!(v["error"]["code"], "insufficient_balance");
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"spend_limit_usd": 3})),
        )
        .await;
    assert_eq!(
        (s, v["spend_limit_usd"].as_str()),
        (200, Some("3.00")),
        "{v}"
    );
    assert_eq!(t.chat(&raw, "mock/fast-1").await.0, 200);
    for bad in [json!("abc"), json!("-1"), json!(0), json!(true)] {
        let (s, v) = t
            .call(
                Method::PATCH,
                &key_path,
                &me,
                Some(json!({"spend_limit_usd": bad})),
            )
            .await;
        assert_eq!(s, 422, "spend_limit_usd {bad}: {v}");
    }
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"spend_limit_usd": null})),
        )
        .await;
    assert_eq!((s, &v["spend_limit_usd"]), (200, &Value::Null), "{v}");

    // Models: others are refused with 403 at once; null allows all again.
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"models": ["mock/fast-1"]})),
        )
        .await;
    assert_eq!((s, &v["models"]), (200, &json!(["mock/fast-1"])), "{v}");
    let (s, v) = t.chat(&raw, "mock/smart-1").await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "model_not_allowed");
    assert_eq!(t.chat(&raw, "mock/fast-1").await.0, 200);
    let (s, _) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"models": "mock/fast-1"})),
        )
        .await;
    assert_eq!(s, 422);
    let (s, v) = t
        .call(Method::PATCH, &key_path, &me, Some(json!({"models": null})))
        .await;
    assert_eq!((s, &v["models"]), (200, &Value::Null), "{v}");
    assert_eq!(t.chat(&raw, "mock/smart-1").await.0, 200);

    // Rotate: a new secret; the old one is refused on the very next request.
    let (s, v) = t
        .call(Method::POST, &format!("{key_path}/rotate"), &me, None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], id);
    let rotated = v["raw"].as_str().unwrap().to_string();
    assert!(rotated.starts_with("sk-tg-"));
    assert_ne!(rotated, raw);
    assert!(rotated.starts_with(v["key_prefix"].as_str().unwrap()));
    let (s, e) = t.chat(&raw, "mock/fast-1").await;
    assert_eq!(s, 401, "the old secret after rotation: {e}");
    assert_eq!(t.chat(&rotated, "mock/fast-1").await.0, 200);
    let listed = t
        .send(Method::GET, "/api/v1/me/keys", &me, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(!listed.contains(&rotated) && !listed.contains(&raw));

    // Revoke: the documented body, 401 at once, final.
    let (s, v) = t.call(Method::DELETE, &key_path, &me, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], id);
    assert_eq!(v["status"], "revoked");
    let (s, e) = t.chat(&rotated, "mock/fast-1").await;
    assert_eq!(s, 401, "a revoked key: {e}");
    assert_eq!(
        t.call(Method::GET, &key_path, &me, None).await.1["status"],
        "revoked"
    );
    let (s, v) = t
        .call(
            Method::PATCH,
            &key_path,
            &me,
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(s, 409, "a revoked key cannot be re-enabled: {v}");
    assert_eq!(t.chat(&rotated, "mock/fast-1").await.0, 401);

    // Validation: 422 for bad values, 400 for bad JSON; nothing is created by either.
    let long = "x".repeat(101);
    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": long}),
        json!({"name": "k", "spend_limit_usd": "abc"}),
        json!({"name": "k", "expires_at": "2000-01-01T00:00:00Z"}),
        json!({"name": "k", "models": "mock/fast-1"}),
        json!({"name": "k", "rpm": 0}),
        json!({"name": "k", "group": "no-such-group"}),
    ] {
        let (s, v) = t
            .call(Method::POST, "/api/v1/me/keys", &me, Some(body.clone()))
            .await;
        assert_eq!(s, 422, "{body}: {v}");
        api_error(&v, "invalid_request_error", "validation_error");
    }
    for body in [
        json!({"name": "k", "bogus": 1}),
        json!({"name": 5}),
        json!({}),
        json!(["name"]),
    ] {
        let (s, v) = t
            .call(Method::POST, "/api/v1/me/keys", &me, Some(body.clone()))
            .await;
        assert_eq!(s, 400, "{body}: {v}");
        api_error(&v, "invalid_request_error", "invalid_request");
    }
    let (s, v) = t
        .call(Method::PATCH, &key_path, &me, Some(json!({"nmae": "typo"})))
        .await;
    assert_eq!(s, 400, "{v}");
    for (ct, body) in [
        ("application/json", "{not json"),
        ("application/json", ""),
        ("text/plain", r#"{"name":"k"}"#),
    ] {
        let resp =
            t.c.post(t.url("/api/v1/me/keys"))
                .bearer_auth(&tok)
                .header(CONTENT_TYPE, ct)
                .body(body)
                .send()
                .await
                .unwrap();
        let (s, v) = read(resp).await;
        assert_eq!(s, 400, "{ct} {body:?}: {v}");
        api_error(&v, "invalid_request_error", "invalid_request");
    }
    let (s, v) = t
        .call(
            Method::POST,
            "/api/v1/me/keys",
            &me,
            Some(json!({"name": "x".repeat(100)})),
        )
        .await;
    assert_eq!(s, 201, "100 characters is allowed: {v}");
    let (_, list) = t.call(Method::GET, "/api/v1/me/keys", &me, None).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let (s, v) = t
        .call(Method::GET, "/api/v1/me/keys/999999999", &me, None)
        .await;
    assert_eq!(s, 404);
    api_error(&v, "invalid_request_error", "not_found");
    t.stop().await;
}

#[tokio::test]
async fn account_api_on_sqlite() {
    account_api_suite(None).await;
}

#[tokio::test]
async fn account_api_on_postgres() {
    on_postgres(account_api_suite).await;
}

// ----- 3. tenant isolation ----------------------------------------------------------------

async fn cross_tenant_suite(database_url: Option<String>) {
    let t = T::start(database_url, &[]).await;
    let a = user(&t.r, "a@example.com", None, USD).await;
    let b = user(&t.r, "b@example.com", None, USD).await;
    let ta = token_for(&t.r, a).await;
    let tb = token_for(&t.r, b).await;
    let (s, k) = t
        .call(
            Method::POST,
            "/api/v1/me/keys",
            &Auth::Bearer(&ta),
            Some(json!({"name": "a-key"})),
        )
        .await;
    assert_eq!(s, 201);
    let raw = k["raw"].as_str().unwrap().to_string();
    let path = format!("/api/v1/me/keys/{}", k["id"]);
    let (_, before) = t.call(Method::GET, &path, &Auth::Bearer(&ta), None).await;

    let attempts: [(Method, String, Option<Value>); 6] = [
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"name": "pwned"}))),
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"status": "disabled"})),
        ),
        (Method::POST, format!("{path}/rotate"), None),
        (Method::DELETE, path.clone(), None),
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"models": ["mock/smart-1"]})),
        ),
    ];
    for (m, p, body) in attempts {
        let (s, v) = t.call(m.clone(), &p, &Auth::Bearer(&tb), body).await;
        assert_eq!(s, 404, "{m} {p} as B: {v}");
        api_error(&v, "invalid_request_error", "not_found");
    }
    let (_, list) = t
        .call(Method::GET, "/api/v1/me/keys", &Auth::Bearer(&tb), None)
        .await;
    assert_eq!(list, json!([]));

    let (s, after) = t.call(Method::GET, &path, &Auth::Bearer(&ta), None).await;
    assert_eq!(s, 200);
    assert_eq!(after, before, "A's key changed");
    assert_eq!(after["name"], "a-key");
    assert_eq!(after["status"], "active");
    assert_eq!(
        t.chat(&raw, "mock/fast-1").await.0,
        200,
        "A's key still works"
    );
    t.stop().await;
}

#[tokio::test]
async fn cross_tenant_on_sqlite() {
    cross_tenant_suite(None).await;
}

#[tokio::test]
async fn cross_tenant_on_postgres() {
    on_postgres(cross_tenant_suite).await;
}

// ----- 4. the device flow -----------------------------------------------------------------

async fn device_flow_suite(database_url: Option<String>) {
    let t = T::start(database_url, &[]).await;
    let base = t.base().to_string();
    let uid = user(&t.r, "cli@example.com", Some(PW), USD).await;

    // Discovery.
    let (s, d) = t
        .call(Method::GET, "/api/v1/auth/discovery", &Auth::Anon, None)
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["issuer"], base);
    assert_eq!(d["client_id"], CLIENT);
    assert_eq!(d["resource"], format!("{base}/api/v1"));
    let scopes: Vec<&str> = d["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in ["account", "keys", "offline_access"] {
        assert!(scopes.contains(&s), "{d}");
    }
    let dae = d["device_authorization_endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let te = d["token_endpoint"].as_str().unwrap().to_string();
    assert_eq!(dae, format!("{base}/api/v1/auth/device/code"));
    assert_eq!(te, t.token_endpoint());

    // Device authorization errors.
    let resource = t.resource();
    let (s, ct, v) = t
        .oauth(
            &dae,
            &[
                ("client_id", "someone-else"),
                ("scope", "account"),
                ("resource", &resource),
            ],
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    assert!(ct.starts_with("application/json"));
    let (s, _, v) = t
        .oauth(
            &dae,
            &[
                ("client_id", CLIENT),
                ("scope", "account root"),
                ("resource", &resource),
            ],
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_scope")),
        "{v}"
    );

    // A device authorization, in the contract's shape.
    let (s, _, code) = t
        .oauth(
            &dae,
            &[
                ("client_id", CLIENT),
                ("scope", "account keys offline_access"),
                ("resource", &resource),
            ],
        )
        .await;
    assert_eq!(s, 200, "{code}");
    let device_code = code["device_code"].as_str().unwrap().to_string();
    let user_code = code["user_code"].as_str().unwrap().to_string();
    assert!(device_code.len() >= 32);
    assert_eq!(user_code.len(), 9, "{user_code}");
    assert_eq!(&user_code[4..5], "-");
    assert!(
        user_code
            .chars()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_uppercase() || c.is_ascii_digit())
    );
    let vuri = code["verification_uri"].as_str().unwrap();
    assert!(vuri.ends_with("/device"), "{vuri}");
    assert_eq!(vuri, format!("{base}/device"));
    let complete = code["verification_uri_complete"].as_str().unwrap();
    assert!(
        complete.starts_with(vuri) && complete.contains(&user_code),
        "{complete}"
    );
    assert!(code["expires_in"].as_i64().is_some_and(|e| e > 0), "{code}");
    let interval = code["interval"].as_i64().unwrap();
    assert!(interval >= 1, "{code}");

    // Before approval: pending, then slow_down when polled too fast.
    let (s, v) = t.poll(&device_code).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "authorization_pending");
    let (s, v) = t.poll(&device_code).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "slow_down");
    t.wait_interval(&user_code).await;
    let (s, v) = t.poll(&device_code).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("authorization_pending"))
    );

    // The approval page's data needs a session.
    let cookie = t.sign_in("cli@example.com", PW).await;
    let req_path = format!("/api/v1/auth/device/request?user_code={user_code}");
    assert_eq!(
        t.call(Method::GET, &req_path, &Auth::Anon, None).await.0,
        401
    );
    let (s, v) = t
        .call(Method::GET, &req_path, &Auth::Session(&cookie), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["client_id"], CLIENT);
    assert_eq!(v["user_code"], user_code);
    let (s, v) = t
        .call(
            Method::GET,
            "/api/v1/auth/device/request?user_code=BCDF-GHJK",
            &Auth::Session(&cookie),
            None,
        )
        .await;
    assert_eq!(s, 404, "{v}");

    // An approval posted from another site is refused and changes nothing.
    let typed = user_code.replace('-', "").to_lowercase();
    let resp = t
        .form(
            "/auth/device",
            Some(&cookie),
            Some(EVIL),
            &[("user_code", &typed), ("action", "approve")],
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(t.grant_status(&user_code).await, "pending");

    // Approve, typing the code in lower case without the dash.
    let resp = t
        .form(
            "/auth/device",
            Some(&cookie),
            Some(&base),
            &[("user_code", &typed), ("action", "approve")],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/device?done=approved");
    assert_eq!(t.grant_status(&user_code).await, "approved");
    let resp = t
        .form(
            "/auth/device",
            Some(&cookie),
            Some(&base),
            &[("user_code", &user_code), ("action", "deny")],
        )
        .await;
    assert!(
        location(&resp).contains("error=invalid_code"),
        "a decided grant cannot be decided again: {}",
        location(&resp)
    );

    // The next poll (after the interval) yields the tokens.
    t.wait_interval(&user_code).await;
    let resp =
        t.c.post(&te)
            .form(&[
                ("grant_type", DEVICE_GRANT),
                ("device_code", device_code.as_str()),
                ("client_id", CLIENT),
                ("resource", resource.as_str()),
            ])
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let (_, tokens) = read(resp).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(
        tokens["expires_in"].as_i64().is_some_and(|e| e > 0),
        "{tokens}"
    );
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert!(!access.is_empty() && !refresh.is_empty() && access != refresh);

    // The access token acts for the approving user.
    let bearer = Auth::Bearer(&access);
    let (s, me) = t.call(Method::GET, "/api/v1/me", &bearer, None).await;
    assert_eq!((s, me["id"].as_i64()), (200, Some(uid)), "{me}");
    let (s, k) = t
        .call(
            Method::POST,
            "/api/v1/me/keys",
            &bearer,
            Some(json!({"name": "from-cli"})),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    let (_, list) = t.call(Method::GET, "/api/v1/me/keys", &bearer, None).await;
    assert_eq!(list[0]["id"], k["id"]);
    let (s, v) = t
        .call(
            Method::DELETE,
            &format!("/api/v1/me/keys/{}", k["id"]),
            &bearer,
            None,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("revoked")));

    // The device code is single use.
    let (s, v) = t.poll(&device_code).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );

    // Refresh tokens rotate; reuse of a rotated one revokes its whole family.
    let (s, v) = t.refresh(&refresh).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    let access2 = v["access_token"].as_str().unwrap().to_string();
    let refresh2 = v["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);
    assert_ne!(access2, access);
    assert_eq!(t.me_status(&Auth::Bearer(&access2)).await, 200);
    let (s, v) = t.refresh(&refresh).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (s, v) = t.refresh(&refresh2).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "the family is revoked after reuse: {v}"
    );
    let (s, v) = t.refresh("not-a-refresh-token").await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));

    // Denial.
    let denied = t.device_code().await;
    let resp = t
        .form(
            "/auth/device",
            Some(&cookie),
            Some(&base),
            &[
                ("user_code", denied["user_code"].as_str().unwrap()),
                ("action", "deny"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/device?done=denied");
    let (s, v) = t.poll(denied["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );

    // Unknown client and unsupported grant.
    let other = t.device_code().await;
    let other_code = other["device_code"].as_str().unwrap();
    let (s, ct, v) = t
        .oauth(
            &te,
            &[
                ("grant_type", DEVICE_GRANT),
                ("device_code", other_code),
                ("client_id", "someone-else"),
            ],
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    assert!(ct.starts_with("application/json"));
    for grant in ["password", "client_credentials", ""] {
        let (s, ct, v) = t
            .oauth(&te, &[("grant_type", grant), ("client_id", CLIENT)])
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("unsupported_grant_type")),
            "{grant}: {v}"
        );
        assert!(ct.starts_with("application/json"));
    }

    // Expiry: an expired code polls as expired_token and can no longer be approved.
    let other_user_code = other["user_code"].as_str().unwrap();
    sqlx::query("UPDATE device_grants SET expires_at = $1 WHERE user_code = $2")
        .bind(now_ms() - 1000)
        .bind(other_user_code)
        .execute(t.db().pool())
        .await
        .unwrap();
    let (s, v) = t.poll(other_code).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("expired_token")),
        "{v}"
    );
    let resp = t
        .form(
            "/auth/device",
            Some(&cookie),
            Some(&base),
            &[("user_code", other_user_code), ("action", "approve")],
        )
        .await;
    assert!(location(&resp).contains("error=invalid_code"));
    assert_eq!(t.grant_status(other_user_code).await, "pending");
    let (s, _) = t
        .call(
            Method::GET,
            &format!("/api/v1/auth/device/request?user_code={other_user_code}"),
            &Auth::Session(&cookie),
            None,
        )
        .await;
    assert_eq!(s, 404);
    t.stop().await;
}

#[tokio::test]
async fn device_flow_on_sqlite() {
    device_flow_suite(None).await;
}

#[tokio::test]
async fn device_flow_on_postgres() {
    on_postgres(device_flow_suite).await;
}

// ----- 5. sign-out everywhere and suspension ----------------------------------------------

async fn sign_out_everywhere_suite(database_url: Option<String>) {
    let t = T::start(database_url, &[]).await;
    let base = t.base().to_string();
    let uid = user(&t.r, "many@example.com", Some(PW), USD).await;
    let s1 = t.sign_in("many@example.com", PW).await;
    let s2 = t.sign_in("many@example.com", PW).await;
    assert_ne!(s1, s2);
    let (access, refresh) = t.device_login(&s1).await;
    for a in [
        Auth::Session(&s1),
        Auth::Session(&s2),
        Auth::Bearer(&access),
    ] {
        assert_eq!(t.me_status(&a).await, 200);
    }

    // From another site: refused, nothing changes.
    let resp = t
        .form("/auth/logout-everywhere", Some(&s1), Some(EVIL), &[])
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(t.me_status(&Auth::Session(&s2)).await, 200);
    assert_eq!(t.me_status(&Auth::Bearer(&access)).await, 200);

    let resp = t
        .form("/auth/logout-everywhere", Some(&s1), Some(&base), &[])
        .await;
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with("/login"), "{}", location(&resp));
    assert_eq!(t.me_status(&Auth::Session(&s1)).await, 401);
    assert_eq!(t.me_status(&Auth::Session(&s2)).await, 401);
    let (s, v) = t
        .call(Method::GET, "/api/v1/me", &Auth::Bearer(&access), None)
        .await;
    assert_eq!(s, 401, "the access token after sign-out everywhere: {v}");
    api_error(&v, "authentication_error", "unauthorized");
    let (s, v) = t.refresh(&refresh).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(
        tokengate_core::auth::user_sessions(t.db(), uid)
            .await
            .unwrap()
            .is_empty()
    );

    // The API variant, with a bearer token, does the same.
    let s3 = t.sign_in("many@example.com", PW).await;
    let (access3, refresh3) = t.device_login(&s3).await;
    let (s, v) = t
        .call(
            Method::POST,
            "/api/v1/me/logout-everywhere",
            &Auth::Bearer(&access3),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(t.me_status(&Auth::Bearer(&access3)).await, 401);
    assert_eq!(t.me_status(&Auth::Session(&s3)).await, 401);
    assert_eq!(t.refresh(&refresh3).await.1["error"], "invalid_grant");

    // Suspension stops the session, the access token, refresh and the account's keys.
    let s4 = t.sign_in("many@example.com", PW).await;
    let (access4, refresh4) = t.device_login(&s4).await;
    let (s, k) = t
        .call(
            Method::POST,
            "/api/v1/me/keys",
            &Auth::Bearer(&access4),
            Some(json!({"name": "k"})),
        )
        .await;
    assert_eq!(s, 201);
    let raw = k["raw"].as_str().unwrap().to_string();
    assert_eq!(t.chat(&raw, "mock/fast-1").await.0, 200);
    let u = accounts::set_status(t.db(), uid, accounts::UserStatus::Suspended)
        .await
        .unwrap();
    t.r.server_state
        .gateway
        .money
        .set_active(u.id, u.status == accounts::UserStatus::Active);
    assert_eq!(t.me_status(&Auth::Bearer(&access4)).await, 401);
    assert_eq!(t.me_status(&Auth::Session(&s4)).await, 401);
    assert_eq!(t.chat(&raw, "mock/fast-1").await.0, 401);
    assert_eq!(t.refresh(&refresh4).await.1["error"], "invalid_grant");
    let resp = t.login(None, "many@example.com", PW, "/console").await;
    assert!(
        location(&resp).starts_with("/login?error="),
        "{}",
        location(&resp)
    );
    assert_eq!(session_cookie(&resp), None);
    t.stop().await;
}

#[tokio::test]
async fn sign_out_everywhere_and_suspension_on_sqlite() {
    sign_out_everywhere_suite(None).await;
}

#[tokio::test]
async fn sign_out_everywhere_and_suspension_on_postgres() {
    on_postgres(sign_out_everywhere_suite).await;
}

// ----- 6. CSRF ----------------------------------------------------------------------------

async fn csrf_suite(database_url: Option<String>) {
    let t = T::start(database_url, &[]).await;
    let base = t.base().to_string();
    let uid = user(&t.r, "csrf@example.com", Some(PW), 0).await;
    let cookie = t.sign_in("csrf@example.com", PW).await;
    let body = || Some(json!({"name": "csrf"}));
    let lookalike = format!("{base}.evil.example");
    let evil_page = format!("{EVIL}/page");
    let lookalike_page = format!("{lookalike}/console");

    let refused: [(Option<&str>, Option<&str>); 6] = [
        (Some(EVIL), None),
        (None, None),
        (Some("null"), None),
        (None, Some(&evil_page)),
        (Some(&lookalike), None),
        (None, Some(&lookalike_page)),
    ];
    for (origin, referer) in refused {
        let auth = Auth::Foreign {
            cookie: &cookie,
            origin,
            referer,
        };
        let (s, v) = t.call(Method::POST, "/api/v1/me/keys", &auth, body()).await;
        assert_eq!(s, 403, "origin {origin:?} referer {referer:?}: {v}");
        api_error(&v, "permission_error", "csrf");
    }
    let (_, list) = t
        .call(
            Method::GET,
            "/api/v1/me/keys",
            &Auth::Session(&cookie),
            None,
        )
        .await;
    assert_eq!(list, json!([]), "no key was created");

    // From this site: by Origin, or by Referer when there is no Origin.
    let (s, k) = t
        .call(
            Method::POST,
            "/api/v1/me/keys",
            &Auth::Session(&cookie),
            body(),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    let referer = format!("{base}/console/keys");
    let by_referer = Auth::Foreign {
        cookie: &cookie,
        origin: None,
        referer: Some(&referer),
    };
    let (s, v) = t
        .call(Method::POST, "/api/v1/me/keys", &by_referer, body())
        .await;
    assert_eq!(s, 201, "{v}");

    // Changes to an existing key from another site are refused too.
    let path = format!("/api/v1/me/keys/{}", k["id"]);
    let evil = Auth::Foreign {
        cookie: &cookie,
        origin: Some(EVIL),
        referer: None,
    };
    let (s, _) = t
        .call(Method::PATCH, &path, &evil, Some(json!({"name": "pwned"})))
        .await;
    assert_eq!(s, 403);
    assert_eq!(t.call(Method::DELETE, &path, &evil, None).await.0, 403);
    assert_eq!(
        t.call(Method::POST, &format!("{path}/rotate"), &evil, None)
            .await
            .0,
        403
    );
    let (_, now) = t
        .call(Method::GET, &path, &Auth::Session(&cookie), None)
        .await;
    assert_eq!(now["name"], "csrf");
    assert_eq!(now["status"], "active");
    assert_eq!(now["key_prefix"], k["key_prefix"]);

    // A bearer token needs no Origin.
    let tok = token_for(&t.r, uid).await;
    let (s, v) = t
        .call(Method::POST, "/api/v1/me/keys", &Auth::Bearer(&tok), body())
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, list) = t
        .call(Method::GET, "/api/v1/me/keys", &Auth::Bearer(&tok), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    t.stop().await;
}

#[tokio::test]
async fn csrf_on_sqlite() {
    csrf_suite(None).await;
}

#[tokio::test]
async fn csrf_on_postgres() {
    on_postgres(csrf_suite).await;
}

// ----- 7. hostile input: rejections in the API shape, redirects that stay on the site ---------

async fn hostile_input_suite(database_url: Option<String>) {
    let t = T::start(database_url, &[]).await;
    let uid = user(&t.r, "edge@example.com", Some(PW), 0).await;
    let tok = token_for(&t.r, uid).await;
    let me = Auth::Bearer(&tok);

    // Every problem is collected, so that one run reports all of them.
    let mut problems: Vec<String> = Vec::new();

    // A key id that is not a number is an account-API error (JSON), not axum's plain text.
    for (m, p, body) in [
        (Method::GET, "/api/v1/me/keys/not-a-number", None),
        (
            Method::PATCH,
            "/api/v1/me/keys/not-a-number",
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, "/api/v1/me/keys/not-a-number", None),
        (Method::POST, "/api/v1/me/keys/not-a-number/rotate", None),
    ] {
        let (s, v) = t.call(m.clone(), p, &me, body).await;
        let shaped = v["error"]["type"] == "invalid_request_error"
            && v["error"]["code"].is_string()
            && v["error"]["message"].is_string();
        if !(s == 400 || s == 404) || !shaped {
            problems.push(format!("{m} {p}: {s} {v}"));
        }
    }

    // Browsers drop tabs and newlines inside URLs, so `/<TAB>/evil.example` is
    // `//evil.example` to them: such a `next` must not be echoed into Location either.
    for next in ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example"] {
        let resp = t.login(None, "edge@example.com", PW, next).await;
        let s = resp.status().as_u16();
        let loc = resp
            .headers()
            .get(LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
        if (s, loc.as_deref()) != (303, Some("/console")) {
            problems.push(format!("sign-in with next={next:?}: {s}, Location {loc:?}"));
        }
    }
    t.stop().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn hostile_input_on_sqlite() {
    hostile_input_suite(None).await;
}

#[tokio::test]
async fn hostile_input_on_postgres() {
    on_postgres(hostile_input_suite).await;
}

// ----- 8. purging expired sign-in state -------------------------------------------------------

async fn purge_suite(database_url: Option<String>) {
    use tokengate_core::auth::{self as store, NewGrant, SessionRow};
    let t = T::start(database_url, &[]).await;
    let db = t.db();
    let uid = user(&t.r, "purge@example.com", Some(PW), 0).await;
    let now = now_ms();
    for (id, expires_at) in [("expired", now - 1), ("live", now + 60_000)] {
        let row = SessionRow {
            user_id: Some(uid),
            data: "{}".into(),
            created_at: now,
            expires_at,
        };
        store::save_session(db, id, &row).await.unwrap();
    }
    for (code, hash, expires_at) in [
        ("BCDF-GHJK", "h-old", now - 2 * 86_400_000),
        ("BCDF-GHJL", "h-new", now - 1),
    ] {
        let g = NewGrant {
            device_code_hash: hash,
            user_code: code,
            client_id: "tokengate-cli",
            scope: "account",
            resource: "r",
            interval_secs: 5,
            expires_at,
        };
        store::create_grant(db, &g).await.unwrap();
    }
    let removed = store::purge_expired(db).await.unwrap();
    assert_eq!(
        removed, 2,
        "one expired session and one grant expired for over a day"
    );
    assert!(store::load_session(db, "live").await.unwrap().is_some());
    assert!(!store::session_exists(db, "expired").await.unwrap());
    assert!(
        store::grant_by_user_code(db, "BCDF-GHJK")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store::grant_by_user_code(db, "BCDF-GHJL")
            .await
            .unwrap()
            .is_some(),
        "recently expired grant kept"
    );
    t.r.stop().await;
}

#[tokio::test]
async fn purge_on_sqlite() {
    purge_suite(None).await;
}

#[tokio::test]
async fn purge_on_postgres() {
    on_postgres(purge_suite).await;
}

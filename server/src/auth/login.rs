//! Portal sign-in with local accounts (email + password, argon2id off the async runtime),
//! sign-up when enabled (with a mailed link that verifies the address), sign-out and "sign
//! out everywhere", and the device-approval form.
//! These are plain HTML form posts answered with 303 redirects, so they work without
//! JavaScript. Failures give one generic message and are throttled per account and per
//! client address.

use std::net::{IpAddr, SocketAddr};

use axum::Form;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tokengate_core::auth as store;
use tokengate_core::{accounts, now_ms, password};
use tower_sessions::Session;
use utoipa::{IntoParams, ToSchema};

use super::device::{Lookup, hashed, lookup, normalise_user_code, opaque_secret};
use super::{scope, session};
use crate::AppState;
use crate::mail::{self, Mail};

/// Failed sign-ins allowed per account, and per client address, in the window.
const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
const MAX_FAILURES_PER_ADDRESS: i64 = 20;
const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Longest email address an account can have (RFC 5321's path limit).
const MAX_EMAIL_LEN: usize = 254;
/// Verification links one account may ask to be sent again per hour.
const RESENDS_PER_HOUR: i64 = 3;
/// How long a mailed verification link works.
const VERIFY_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// The window of `signups_per_address_per_hour`.
const SIGNUP_WINDOW_MS: i64 = 60 * 60 * 1000;

/// The client's address: the peer, or — when the peer is a trusted reverse proxy — the
/// rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries left of it
/// are client-supplied and could be forged).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

/// A same-site path to return to after sign-in (never another origin).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/console".to_string(),
    }
}

fn encode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)])
        .map(|e| e[2..].to_string())
        .unwrap_or_default()
}

/// The sign-in form.
#[derive(Deserialize, ToSchema)]
pub struct LoginForm {
    #[schema(example = "ada@example.com")]
    email: String,
    #[schema(format = Password)]
    password: String,
    /// A path on this site to return to (default `/console`).
    #[schema(example = "/console")]
    next: Option<String>,
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "sign-in failed internally");
    Redirect::to("/login?error=unavailable").into_response()
}

/// Sign in (portal form)
///
/// The portal's sign-in form (email and password). Answers with a redirect: to `next` with
/// a new session cookie, or back to `/login?error=…` (`invalid`, `throttled`,
/// `unavailable`). Failures are throttled per account (5) and per client address (20) in
/// 15 minutes.
#[utoipa::path(post, path = "/auth/login", tag = "Portal sign-in", operation_id = "portal_login",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in (cookie `tg_session` set), or back to the form with an error.",
        headers(("Location" = String, description = "Where the browser goes next")))))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    session: Session,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let back = |error: &str| {
        Redirect::to(&format!("/login?error={error}&next={}", encode(&next))).into_response()
    };
    // No account has an address this long or with control characters (sign-up refuses
    // them): answer before the address is stored as a throttle subject, so megabyte
    // "emails" are not kept and a NUL never reaches PostgreSQL.
    if f.email.trim().len() > MAX_EMAIL_LEN || f.email.chars().any(char::is_control) {
        return back("invalid");
    }
    let acct = format!("acct:{}", f.email.trim().to_lowercase());
    let ip = format!(
        "ip:{}",
        client_ip(addr.ip(), &headers, &state.config.trusted_proxies)
    );
    let since = now_ms() - FAILURE_WINDOW_MS;
    // The attempt is counted before the password is checked, so concurrent guesses cannot
    // all slip under the limit; it is forgotten again if it succeeds.
    let (attempt, allowed) = match store::attempt(
        &state.db,
        &[
            (&acct, MAX_FAILURES_PER_ACCOUNT),
            (&ip, MAX_FAILURES_PER_ADDRESS),
        ],
        since,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    if !allowed {
        let _ = store::release(&state.db, attempt).await;
        return back("throttled");
    }
    let found = match accounts::credentials(&state.db, &f.email).await {
        Ok(f) => f,
        Err(e) => return internal(e),
    };
    let (user, stored) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, None),
    };
    // Verify even for unknown accounts, so timing does not reveal which emails exist.
    let ok = password::verify_async(f.password, stored).await;
    let user = match user {
        Some(u) if ok && u.status == accounts::UserStatus::Active => u,
        // The attempt stays recorded: it is a failure.
        _ => return back("invalid"),
    };
    let _ = store::release(&state.db, attempt).await;
    let _ = store::clear_failures(&state.db, &acct).await;
    if let Err(e) = session::sign_in(&session, &user, user.auth_epoch).await {
        return internal(e);
    }
    tracing::info!(user = user.id, "signed in");
    Redirect::to(&next).into_response()
}

/// The sign-up form.
#[derive(Deserialize, ToSchema)]
pub struct SignupForm {
    #[schema(example = "ada@example.com")]
    email: String,
    /// At least 10 characters.
    #[schema(format = Password, min_length = 10)]
    password: String,
    display_name: Option<String>,
}

/// Sign up (portal form)
///
/// Creates a local account and signs it in (when sign-up is enabled). Answers with a
/// redirect to `/console`, or back to `/signup?error=…` (`weak_password`,
/// `invalid_email`, `taken`).
#[utoipa::path(post, path = "/auth/signup", tag = "Portal sign-in", operation_id = "portal_signup",
    request_body(content = SignupForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed up and in, or back to the form with an error.",
        headers(("Location" = String, description = "Where the browser goes next")))))]
pub async fn signup(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    session: Session,
    Form(f): Form<SignupForm>,
) -> Response {
    if !state.config.signup {
        return Redirect::to("/login?error=signup_disabled").into_response();
    }
    if f.password.chars().count() < 10 || f.password.len() > 1024 {
        return Redirect::to("/signup?error=weak_password").into_response();
    }
    let email = f.email.trim().to_string();
    // Addresses and names are shown in the portal, printed by the CLI to terminals and
    // written to CSV exports: no control characters (a NUL cannot even be stored on
    // PostgreSQL). A name that breaks this rule is replaced like a missing one.
    if !email.contains('@') || email.len() > MAX_EMAIL_LEN || email.chars().any(char::is_control) {
        return Redirect::to("/signup?error=invalid_email").into_response();
    }
    let name = f
        .display_name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty() && n.chars().count() <= 100 && !n.chars().any(char::is_control))
        .unwrap_or_else(|| email.split('@').next().unwrap_or("").to_string());
    // Counted once the form is valid (a typo costs nothing), before the costly hash.
    let limit = i64::try_from(state.config.signups_per_address_per_hour).unwrap_or(i64::MAX);
    if limit > 0 {
        let ip = client_ip(addr.ip(), &headers, &state.config.trusted_proxies);
        let subject = format!("signup:{ip}");
        match store::attempt(&state.db, &[(&subject, limit)], now_ms() - SIGNUP_WINDOW_MS).await {
            Ok((_, true)) => {}
            Ok((a, false)) => {
                let _ = store::release(&state.db, a).await;
                return Redirect::to("/signup?error=throttled").into_response();
            }
            Err(e) => return internal(e),
        }
    }
    let hash = match password::hash_async(f.password).await {
        Ok(h) => h,
        Err(e) => return internal(e),
    };
    let user =
        match accounts::create_user(&state.db, &email, &name, Some(&hash), accounts::Role::User)
            .await
        {
            Ok(u) => u,
            // The same answer whether or not the address is taken would need email
            // verification; say it plainly instead of silently failing.
            Err(tokengate_core::Error::Conflict(_)) => {
                return Redirect::to("/signup?error=taken").into_response();
            }
            Err(tokengate_core::Error::Invalid(_)) => {
                return Redirect::to("/signup?error=invalid_email").into_response();
            }
            Err(e) => return internal(e),
        };
    state.gateway.money.set_account(user.id, true, 0);
    send_verification(&state, &user).await;
    if let Err(e) = session::sign_in(&session, &user, user.auth_epoch).await {
        return internal(e);
    }
    Redirect::to("/console").into_response()
}

/// Mails `user` a link that proves their address (valid 24 hours, once). The account works
/// without it; only linking an OpenID identity by email needs a verified address.
async fn send_verification(state: &AppState, user: &accounts::User) {
    let token = opaque_secret();
    let expires_at = now_ms() + VERIFY_TTL_MS;
    if let Err(e) =
        store::create_email_verification(&state.db, &hashed(state, &token), user.id, expires_at)
            .await
    {
        tracing::error!(error = %e, user = user.id, "verification link could not be stored");
        return;
    }
    let link = format!(
        "{}/auth/verify-email?token={token}",
        state.config.public_url
    );
    let body = format!(
        "Confirm the email address of your tokengate account by opening this link \
         within 24 hours:\n\n{link}\n\nIf you did not create an account at {}, ignore \
         this message.\n",
        state.config.public_url
    );
    mail::send(
        &state.config,
        user.id,
        Mail {
            to: user.email.clone(),
            subject: "Confirm your email address".into(),
            body,
        },
    );
}

/// Send the verification link again (portal form)
///
/// For the signed-in user whose address is not verified yet: mails a new link (at most 3 an
/// hour). Answers with a redirect to `/me/settings?verification=sent`, `…=already`
/// (nothing to do) or `…=throttled`, or to sign-in first.
#[utoipa::path(post, path = "/auth/verify-email/resend", tag = "Portal sign-in", operation_id = "resend_verification",
    security(("session_cookie" = [])),
    responses((status = 303, description = "To `/me/settings?verification=sent|already|throttled`, or to sign-in first.",
        headers(("Location" = String, description = "Where the browser goes next")))))]
pub async fn resend_verification(State(state): State<AppState>, session: Session) -> Response {
    let absolute = std::time::Duration::from_secs(state.config.session_absolute_secs);
    let user = match session::current_user(&session, &state.db, absolute).await {
        Ok(Some(u)) => u,
        Ok(None) => return Redirect::to("/login?next=%2Fme%2Fsettings").into_response(),
        Err(e) => return internal(e),
    };
    match store::email_verified(&state.db, user.id).await {
        Ok(true) => return Redirect::to("/me/settings?verification=already").into_response(),
        Ok(false) => {}
        Err(e) => return internal(e),
    }
    let subject = format!("verifymail:{}", user.id);
    match store::attempt(
        &state.db,
        &[(&subject, RESENDS_PER_HOUR)],
        now_ms() - SIGNUP_WINDOW_MS,
    )
    .await
    {
        Ok((_, true)) => {}
        Ok((a, false)) => {
            let _ = store::release(&state.db, a).await;
            return Redirect::to("/me/settings?verification=throttled").into_response();
        }
        Err(e) => return internal(e),
    }
    send_verification(&state, &user).await;
    Redirect::to("/me/settings?verification=sent").into_response()
}

/// The verification link's query.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// The token from the mailed link.
    #[allow(dead_code)]
    token: Option<String>,
}

/// Verify an email address (mailed link)
///
/// The link mailed at sign-up: marks the account's address verified (once, within 24
/// hours, while the account still has that address) and answers with a redirect to
/// `/login?verified=1`, or `/login?error=verify_link` for an unknown, used or expired link.
#[utoipa::path(get, path = "/auth/verify-email", tag = "Portal sign-in", operation_id = "verify_email",
    params(VerifyQuery),
    responses((status = 303, description = "To `/login?verified=1` or `/login?error=verify_link`.",
        headers(("Location" = String, description = "Where the browser goes next")))))]
pub async fn verify_email(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    // Read leniently (a malformed query is an unknown link, never a plain-text rejection).
    let token = serde_urlencoded::from_str::<Vec<(String, String)>>(q.as_deref().unwrap_or(""))
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "token"))
        .map(|(_, v)| v);
    let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= 128) else {
        return Redirect::to("/login?error=verify_link").into_response();
    };
    match store::consume_email_verification(&state.db, &hashed(&state, &token)).await {
        Ok(Some(user)) => {
            tracing::info!(user, "email address verified");
            Redirect::to("/login?verified=1").into_response()
        }
        Ok(None) => Redirect::to("/login?error=verify_link").into_response(),
        Err(e) => internal(e),
    }
}

/// Sign out (portal form)
///
/// Ends this session.
#[utoipa::path(post, path = "/auth/logout", tag = "Portal sign-in", operation_id = "portal_logout",
    security(("session_cookie" = [])),
    responses((status = 303, description = "Signed out; to `/login?signed_out=1`.", headers(("Location" = String, description = "Where the browser goes next")))))]
pub async fn logout(session: Session) -> Response {
    let _ = session::sign_out(&session).await;
    Redirect::to("/login?signed_out=1").into_response()
}

/// Sign out everywhere (portal form)
///
/// Every session, refresh token and access token of the user stops working.
#[utoipa::path(post, path = "/auth/logout-everywhere", tag = "Portal sign-in", operation_id = "portal_logout_everywhere",
    security(("session_cookie" = [])),
    responses((status = 303, description = "Signed out everywhere; to `/login?signed_out=everywhere`.", headers(("Location" = String, description = "Where the browser goes next")))))]
pub async fn logout_everywhere(State(state): State<AppState>, session: Session) -> Response {
    let absolute = std::time::Duration::from_secs(state.config.session_absolute_secs);
    match session::current_user(&session, &state.db, absolute).await {
        Ok(Some(user)) => {
            if let Err(e) = store::sign_out_everywhere(&state.db, user.id).await {
                return internal(e);
            }
            let _ = session::sign_out(&session).await;
            Redirect::to("/login?signed_out=everywhere").into_response()
        }
        Ok(None) => Redirect::to("/login").into_response(),
        Err(e) => internal(e),
    }
}

/// The device-approval form.
#[derive(Deserialize, ToSchema)]
pub struct DeviceForm {
    /// The code the command-line client shows.
    #[schema(example = "BCDF-GHJK")]
    user_code: String,
    /// `approve` or `deny`.
    #[schema(example = "approve")]
    action: String,
    /// `yes` to grant the `admin` scope a request asks for (administrators only; without
    /// it the request is approved without `admin`).
    #[schema(example = "yes")]
    grant_admin: Option<String>,
}

/// Approve or deny a device (portal form)
///
/// Approves or denies a pending device-flow request as the signed-in user; the command-line
/// client polling the token endpoint then gets its tokens or `access_denied`.
#[utoipa::path(post, path = "/auth/device", tag = "Device flow", operation_id = "decide_device",
    security(("session_cookie" = [])),
    request_body(content = DeviceForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "To `/device?done=approved|denied`, `/device?error=invalid_code` (unknown, expired \
        or decided), `/device?error=throttled` (more than 10 failed code lookups by this user in 15 minutes), \
        `/device?error=too_many_devices` (5 approved devices have not collected their tokens yet), or to sign-in first.",
        headers(("Location" = String, description = "Where the browser goes next")))))]
pub async fn decide_device(
    State(state): State<AppState>,
    session: Session,
    Form(f): Form<DeviceForm>,
) -> Response {
    let absolute = std::time::Duration::from_secs(state.config.session_absolute_secs);
    let user = match session::current_user(&session, &state.db, absolute).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            let next = format!("/device?user_code={}", encode(&f.user_code));
            return Redirect::to(&format!("/login?next={}", encode(&next))).into_response();
        }
        Err(e) => return internal(e),
    };
    let Some(code) = normalise_user_code(&f.user_code) else {
        return Redirect::to("/device?error=invalid_code").into_response();
    };
    let approver = match f.action.as_str() {
        "approve" => Some(user.id),
        "deny" => None,
        _ => return Redirect::to(&format!("/device?user_code={code}")).into_response(),
    };
    let grant = match lookup(&state.db, user.id, &code).await {
        Ok(Lookup::Found(g)) => g,
        Ok(Lookup::Unknown) => return Redirect::to("/device?error=invalid_code").into_response(),
        Ok(Lookup::Throttled) => return Redirect::to("/device?error=throttled").into_response(),
        Err(e) => return internal(e),
    };
    let granted = granted_scope(&grant.scope, user.role, f.grant_admin.as_deref());
    match store::decide_grant(&state.db, &grant.user_code, approver, Some(&granted)).await {
        Ok(()) => {
            let done = if approver.is_some() {
                "approved"
            } else {
                "denied"
            };
            tracing::info!(user = user.id, done, "device grant decided");
            Redirect::to(&format!("/device?done={done}")).into_response()
        }
        Err(tokengate_core::Error::Conflict(_)) => {
            Redirect::to("/device?error=too_many_devices").into_response()
        }
        Err(tokengate_core::Error::NotFound) => {
            Redirect::to("/device?error=invalid_code").into_response()
        }
        Err(e) => internal(e),
    }
}

/// The scope an approval grants: what was asked, with `admin` only when the approver is an
/// administrator who explicitly granted it.
fn granted_scope(asked: &str, approver_role: accounts::Role, grant_admin: Option<&str>) -> String {
    if approver_role == accounts::Role::Admin && grant_admin == Some("yes") {
        asked.to_string()
    } else {
        scope::without_admin(asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_scope_only_when_an_admin_grants_it() {
        let asked = "account keys admin offline_access";
        assert_eq!(
            granted_scope(asked, accounts::Role::Admin, Some("yes")),
            asked
        );
        assert_eq!(
            granted_scope(asked, accounts::Role::Admin, None),
            "account keys offline_access"
        );
        assert_eq!(
            granted_scope(asked, accounts::Role::User, Some("yes")),
            "account keys offline_access"
        );
        assert_eq!(
            granted_scope("account", accounts::Role::Admin, Some("yes")),
            "account"
        );
    }

    #[test]
    fn client_address_behind_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7, 10.0.0.2".parse().unwrap(),
        );
        let trusted = ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        // Forged left-most entry ignored; the proxies' own hop skipped.
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer is the client, whatever it claims.
        let peer: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(client_ip(peer, &h, &trusted), peer);
        // No proxies configured: the peer.
        assert_eq!(client_ip(proxy, &h, &[]), proxy);
        // A trusted proxy without the header: the proxy itself.
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/device?user_code=ABCD-EFGH")),
            "/device?user_code=ABCD-EFGH"
        );
        assert_eq!(safe_next(Some("//evil.example")), "/console");
        assert_eq!(safe_next(Some("https://evil.example")), "/console");
        assert_eq!(safe_next(Some("/\\evil")), "/console");
        assert_eq!(safe_next(None), "/console");
        // Browsers drop tabs and newlines from URLs: "/\t/evil" would become "//evil".
        assert_eq!(safe_next(Some("/\t/evil.example")), "/console");
        assert_eq!(safe_next(Some("/\r\nSet-Cookie: x=y")), "/console");
    }
}

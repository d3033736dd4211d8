//! Portal sign-in through OpenID Connect providers (any number, from `[[oidc]]` in the
//! config): discovery from the issuer URL (cached after the first success), the
//! authorization-code flow with PKCE, state and nonce kept in the session, and ID-token
//! validation by `openidconnect`; email and name come from the ID token or, when it lacks
//! them, from the userinfo endpoint. Users are keyed by (issuer, subject). A first sign-in
//! whose email names an existing account is linked to it only when that account's own
//! address was verified (a mailed link, or an operator created it), the provider vouches
//! for the email and is configured with `link_by_email` — or when this browser is signed
//! in to that account already (its owner proved it with the password). Otherwise it is
//! refused (`/login?error=oidc_link`): an identity provider's word never takes over an
//! account whose address nobody proved. Without an existing account it creates one.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokengate_core::accounts;
use tokengate_core::auth as store;
use tower_sessions::Session;
use utoipa::IntoParams;

use super::login::safe_next;
use super::session;
use crate::AppState;
use crate::config::OidcConfig;

const PENDING: &str = "oidc_pending";

/// Discovered provider metadata by provider id.
#[derive(Default)]
pub struct OidcCache {
    metadata: RwLock<HashMap<String, Arc<CoreProviderMetadata>>>,
}

/// What the callback needs from the start of the flow.
#[derive(Serialize, Deserialize)]
struct Pending {
    provider: String,
    state: String,
    nonce: String,
    verifier: String,
    next: String,
}

fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    // No redirects: the OpenID client must not follow them (SSRF).
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(15))
        .build()
}

fn fail(reason: &str, detail: impl std::fmt::Display) -> Response {
    tracing::warn!(reason, detail = %detail, "OpenID sign-in failed");
    Redirect::to("/login?error=oidc").into_response()
}

async fn metadata(
    state: &AppState,
    p: &OidcConfig,
    http: &reqwest::Client,
) -> Result<Arc<CoreProviderMetadata>, String> {
    if let Some(m) = state.oidc.metadata.read().get(&p.id) {
        return Ok(m.clone());
    }
    let issuer = IssuerUrl::new(p.issuer.clone()).map_err(|e| e.to_string())?;
    let m = Arc::new(
        CoreProviderMetadata::discover_async(issuer, http)
            .await
            .map_err(|e| e.to_string())?,
    );
    state.oidc.metadata.write().insert(p.id.clone(), m.clone());
    Ok(m)
}

fn provider<'a>(state: &'a AppState, id: &str) -> Option<&'a OidcConfig> {
    state.config.oidc.iter().find(|p| p.id == id)
}

fn redirect_uri(state: &AppState, id: &str) -> String {
    format!("{}/auth/oidc/{id}/callback", state.config.public_url)
}

/// The relying-party client for provider `p`, as `openidconnect` types it after discovery.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// An HTTP client and the discovered, configured OpenID client for `p`.
async fn client_for(
    state: &AppState,
    p: &OidcConfig,
) -> Result<(reqwest::Client, Client), (&'static str, String)> {
    let http = http_client().map_err(|e| ("http client", e.to_string()))?;
    let meta = metadata(state, p, &http)
        .await
        .map_err(|e| ("discovery", e))?;
    let redirect = RedirectUrl::new(redirect_uri(state, &p.id))
        .map_err(|e| ("redirect uri", e.to_string()))?;
    let client = CoreClient::from_provider_metadata(
        (*meta).clone(),
        ClientId::new(p.client_id.clone()),
        p.client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_string())),
    )
    .set_redirect_uri(redirect);
    Ok((http, client))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// A path on this site to return to after sign-in.
    next: Option<String>,
}

/// Sign in with an OpenID provider
///
/// Redirects the browser to the configured OpenID Connect provider (authorization code
/// with PKCE).
#[utoipa::path(get, path = "/auth/oidc/{id}/start", tag = "Portal sign-in", operation_id = "oidc_start",
    params(("id" = String, Path, description = "The provider's `id` from the `[[oidc]]` configuration"), StartQuery),
    responses((status = 303, description = "To the provider's authorization page, or `/login?error=oidc`.",
        headers(("Location" = String, description = "Where the browser goes next")))))]
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    session: Session,
    Query(q): Query<StartQuery>,
) -> Response {
    let Some(p) = provider(&state, &id) else {
        return Redirect::to("/login?error=oidc").into_response();
    };
    let (_, client) = match client_for(&state, p).await {
        Ok(c) => c,
        Err((reason, e)) => return fail(reason, e),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pending = Pending {
        provider: id,
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        next: safe_next(q.next.as_deref()),
    };
    if let Err(e) = session.insert(PENDING, pending).await {
        return fail("session", e);
    }
    Redirect::to(url.as_str()).into_response()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    code: Option<String>,
    /// The state sent at the start.
    state: Option<String>,
    /// The provider's error, if it refused.
    error: Option<String>,
}

/// OpenID provider callback
///
/// Validates the provider's answer, finds or creates the user, signs them in. Register
/// `<public_url>/auth/oidc/<id>/callback` as the redirect URI at the provider.
#[utoipa::path(get, path = "/auth/oidc/{id}/callback", tag = "Portal sign-in", operation_id = "oidc_callback",
    params(("id" = String, Path, description = "The provider's `id`"), CallbackQuery),
    responses((status = 303, description = "Signed in, to the page the sign-in started from; or `/login?error=…`.",
        headers(("Location" = String, description = "Where the browser goes next")))))]
pub async fn callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    session: Session,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let pending: Option<Pending> = session.remove(PENDING).await.ok().flatten();
    let Some(pending) = pending.filter(|p| p.provider == id) else {
        return fail("no pending sign-in in this session", &id);
    };
    if let Some(e) = q.error {
        return fail("provider refused", e);
    }
    let (Some(code), Some(st)) = (q.code, q.state) else {
        return fail("callback without code", &id);
    };
    // Constant-time comparison is not needed for a single-use random state, but equality is.
    if st != pending.state {
        return fail("state mismatch", &id);
    }
    let Some(p) = provider(&state, &id) else {
        return fail("unknown provider", &id);
    };
    let (http, client) = match client_for(&state, p).await {
        Ok(c) => c,
        Err((reason, e)) => return fail(reason, e),
    };
    let request = match client.exchange_code(AuthorizationCode::new(code)) {
        Ok(r) => r,
        Err(e) => return fail("no token endpoint", e),
    };
    let tokens = match request
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
        .request_async(&http)
        .await
    {
        Ok(t) => t,
        Err(e) => return fail("code exchange", e),
    };
    let Some(id_token) = tokens.id_token() else {
        return fail("no id_token", &id);
    };
    let claims = match id_token.claims(&client.id_token_verifier(), &Nonce::new(pending.nonce)) {
        Ok(c) => c,
        Err(e) => return fail("id_token validation", e),
    };
    let issuer = claims.issuer().as_str().to_string();
    let subject = claims.subject().as_str().to_string();
    let mut email = claims.email().map(|e| e.as_str().to_string());
    let mut verified = claims.email_verified().unwrap_or(false);
    let mut name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_string());
    if email.is_none() {
        // Providers may put profile claims only in the userinfo response (OIDC Core 5.4).
        let info: Result<openidconnect::core::CoreUserInfoClaims, String> = match client.user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        ) {
            Ok(req) => req.request_async(&http).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match info {
            Ok(info) => {
                email = info.email().map(|e| e.as_str().to_string());
                verified = info.email_verified().unwrap_or(false);
                if name.is_none() {
                    name = info
                        .name()
                        .and_then(|n| n.get(None))
                        .map(|n| n.as_str().to_string());
                }
            }
            Err(e) => return fail("userinfo", e),
        }
    }
    let absolute = std::time::Duration::from_secs(state.config.session_absolute_secs);
    let signed_in = session::current_user(&session, &state.db, absolute)
        .await
        .ok()
        .flatten()
        .map(|u| u.id);
    let identity = Identity {
        issuer: &issuer,
        subject: &subject,
        email,
        verified,
        name,
    };
    let user = match find_or_create(&state, p, identity, signed_in).await {
        Ok(u) => u,
        Err(Refusal::Link(reason)) => {
            tracing::warn!(reason, subject = %subject, "OpenID sign-in not linked");
            return Redirect::to("/login?error=oidc_link").into_response();
        }
        Err(Refusal::Other(reason)) => return fail(reason, &subject),
    };
    if user.status != accounts::UserStatus::Active {
        return fail("account suspended", user.id);
    }
    if let Err(e) = session::sign_in(&session, &user, user.auth_epoch).await {
        return fail("session", e);
    }
    tracing::info!(user = user.id, provider = %id, "signed in with OpenID Connect");
    Redirect::to(&pending.next).into_response()
}

/// What the provider said about the person signing in.
pub struct Identity<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub email: Option<String>,
    /// The provider's `email_verified`.
    pub verified: bool,
    pub name: Option<String>,
}

/// Why a sign-in found no account.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An account with this email exists and may not be linked (see [`may_link`]).
    Link(&'static str),
    Other(&'static str),
}

/// Whether a first sign-in may be linked to the existing account with its email: when
/// this browser is signed in to that account (its owner proved it), or when the operator
/// allows linking by email, the provider verified the email, and the account's own
/// address was verified too.
fn may_link(
    link_by_email: bool,
    provider_verified: bool,
    account_verified: bool,
    signed_in_to_it: bool,
) -> Result<(), &'static str> {
    if signed_in_to_it {
        return Ok(());
    }
    if !link_by_email {
        return Err("an account with this email exists and linking by email is off");
    }
    if !provider_verified {
        return Err("the provider did not verify the email");
    }
    if !account_verified {
        return Err("the existing account's email was never verified; sign in to it first");
    }
    Ok(())
}

/// The account an identity signs in to: the one already linked to it, else the existing
/// account with its email when [`may_link`] allows it (`signed_in`: the account this
/// browser is signed in to), else a new account.
pub async fn find_or_create(
    state: &AppState,
    p: &OidcConfig,
    id: Identity<'_>,
    signed_in: Option<i64>,
) -> Result<accounts::User, Refusal> {
    let db = &state.db;
    let other = Refusal::Other;
    if let Some(u) = accounts::user_by_identity(db, id.issuer, id.subject)
        .await
        .map_err(|_| other("database"))?
    {
        return Ok(u);
    }
    let email = id.email.ok_or(other("the provider sent no email"))?;
    if let Ok(existing) = accounts::get_user_by_email(db, &email).await {
        let account_verified = store::email_verified(db, existing.id)
            .await
            .map_err(|_| other("database"))?;
        may_link(
            p.link_by_email,
            id.verified,
            account_verified,
            signed_in == Some(existing.id),
        )
        .map_err(Refusal::Link)?;
        accounts::link_identity(db, existing.id, id.issuer, id.subject)
            .await
            .map_err(|_| other("database"))?;
        return Ok(existing);
    }
    if !state.config.signup {
        return Err(other("sign-up is disabled"));
    }
    let display = id
        .name
        .unwrap_or_else(|| email.split('@').next().unwrap_or("").to_string());
    let user = accounts::create_user(db, &email, &display, None, accounts::Role::User)
        .await
        .map_err(|_| other("account creation"))?;
    accounts::link_identity(db, user.id, id.issuer, id.subject)
        .await
        .map_err(|_| other("database"))?;
    if id.verified {
        // The provider vouches for the address of the account it creates.
        store::mark_email_verified(db, user.id)
            .await
            .map_err(|_| other("database"))?;
    }
    state.gateway.money.set_account(user.id, true, 0);
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::may_link;

    #[test]
    fn never_links_to_an_account_whose_address_nobody_proved() {
        // The pre-takeover: a verified IdP email, linking on, the local account unverified.
        assert!(may_link(true, true, false, false).is_err());
        assert!(may_link(true, true, true, false).is_ok());
        assert!(may_link(true, false, true, false).is_err());
        assert!(may_link(false, true, true, false).is_err());
        // Signed in to the account first: its owner links it.
        assert!(may_link(false, false, false, true).is_ok());
    }
}

//! What the portal knows about the visitor: the signed-in user, the sign-in options the
//! server offers, and pending device requests — read through server functions, so the
//! server-rendered page and the hydrated one agree. The server fills these in per request
//! (request extensions and a [`PortalServices`] object); this crate never touches the
//! database.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use tokengate_api::kinds::Role;

/// The signed-in user as the portal shows them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortalUser {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub balance_usd: String,
}

/// How one can sign in here.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct SignInOptions {
    /// (id, button label) of each configured OpenID Connect provider.
    pub oidc: Vec<(String, String)>,
    pub signup: bool,
    /// The URL clients reach this server at (for snippets: `<public_url>/v1`).
    pub public_url: String,
}

/// An answer of the account or admin API (`/api/v1`), as the portal received it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiReply {
    pub status: u16,
    /// The JSON body.
    pub body: String,
}

/// A pending device-flow request, for the approval page: the body of
/// `GET /api/v1/auth/device/request`.
pub type DeviceRequest = tokengate_api::account::DeviceRequestView;

/// Server-side services the portal needs beyond the request itself.
#[cfg(feature = "ssr")]
pub trait PortalServices: Send + Sync {
    /// The pending, unexpired device request with this user code, looked up by `user_id`
    /// (failed lookups are throttled per user).
    fn device_request(
        &self,
        user_id: i64,
        user_code: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<DeviceRequest>> + Send>>;

    /// Calls the account or admin API as `user_id` (same authorisation as a bearer token
    /// of that user: admin routes still require role admin).
    fn api(
        &self,
        user_id: i64,
        method: String,
        path: String,
        body: Option<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ApiReply> + Send>>;
}

/// The per-request portal context the server puts in the request's extensions.
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct PortalContext {
    pub user: Option<PortalUser>,
    pub options: SignInOptions,
    pub services: std::sync::Arc<dyn PortalServices>,
}

#[cfg(feature = "ssr")]
fn context() -> Result<PortalContext, ServerFnError> {
    use_context::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<PortalContext>().cloned())
        .ok_or_else(|| ServerFnError::new("portal context missing"))
}

/// The signed-in user, if any.
#[server(prefix = "/portal/fn")]
pub async fn whoami() -> Result<Option<PortalUser>, ServerFnError> {
    Ok(context()?.user)
}

/// The sign-in options of this server.
#[server(prefix = "/portal/fn")]
pub async fn load_sign_in_options() -> Result<SignInOptions, ServerFnError> {
    Ok(context()?.options)
}

/// The pending device request with `user_code`, for a signed-in user.
#[server(prefix = "/portal/fn")]
pub async fn find_device_request(
    user_code: String,
) -> Result<Option<DeviceRequest>, ServerFnError> {
    let ctx = context()?;
    let Some(user) = ctx.user else {
        return Ok(None);
    };
    Ok(ctx.services.device_request(user.id, user_code).await)
}

/// Calls the account or admin API (`/api/v1/...`) as the signed-in user: one bridge, so
/// every portal page shows exactly what the API answers. Signed out: 401.
#[server(prefix = "/portal/fn")]
pub async fn api(
    method: String,
    path: String,
    body: Option<String>,
) -> Result<ApiReply, ServerFnError> {
    let ctx = context()?;
    if !path.starts_with("/api/v1/") || path.contains("..") {
        return Err(ServerFnError::new("the portal calls only /api/v1 paths"));
    }
    let method = method.to_ascii_uppercase();
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
        return Err(ServerFnError::new("unsupported method"));
    }
    let Some(user) = ctx.user else {
        return Ok(ApiReply {
            status: 401,
            body: r#"{"error":{"message":"Sign in to continue.","type":"authentication_error","code":"unauthorized"}}"#.into(),
        });
    };
    Ok(ctx.services.api(user.id, method, path, body).await)
}

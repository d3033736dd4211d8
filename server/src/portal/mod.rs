//! The portal's place in the router: Leptos server-side rendering of the app's routes (and
//! its server functions under `/portal/fn`), the static site (`/pkg`, CSS, `public/`)
//! that cargo-leptos builds into the site root, and the per-request portal context (who
//! is signed in, how one can sign in, device-request lookups, the `/api/v1` bridge) the
//! app reads, the response's CSP nonce handed to Leptos, and `303 See Other` for pages
//! that send their visitor to sign in. `forms.rs` holds the form endpoints that work
//! without JavaScript.

pub mod forms;
mod render;

use std::sync::Arc;
use std::time::Duration;

use app::session::{
    ApiReply, DeviceRequest, PortalContext, PortalServices, PortalUser, SignInOptions,
};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use leptos::config::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokengate_core::money::format_balance;
use tokengate_core::{Db, now_ms};
use tower::ServiceExt;
use tower_sessions::Session;

use crate::AppState;
use crate::auth::device::{Lookup, lookup};
use crate::security::CspNonce;

/// Leptos options for this server (no cargo-leptos environment needed at run time).
pub fn leptos_options(state: &AppState) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("tokengate")
        .site_root(state.config.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(state.config.listen)
        .build()
}

struct Services {
    db: Db,
    state: AppState,
    /// `/api/v1` with its state, for [`PortalServices::api`].
    api: Router,
}

impl PortalServices for Services {
    fn device_request(
        &self,
        user_id: i64,
        user_code: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<DeviceRequest>> + Send>> {
        let db = self.db.clone();
        Box::pin(async move {
            match lookup(&db, user_id, &user_code).await {
                Ok(Lookup::Found(g)) => Some(DeviceRequest {
                    user_code: g.user_code,
                    client_id: g.client_id,
                    scope: g.scope,
                    expires_in: (g.expires_at - now_ms()) / 1000,
                }),
                Ok(Lookup::Unknown | Lookup::Throttled) => None,
                Err(e) => {
                    tracing::error!(error = %e, "device request lookup failed");
                    None
                }
            }
        })
    }

    fn api(
        &self,
        user_id: i64,
        method: String,
        path: String,
        body: Option<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ApiReply> + Send>> {
        let state = self.state.clone();
        let api = self.api.clone();
        Box::pin(async move { dispatch(api, &state, user_id, &method, &path, body).await })
    }
}

/// Calls `/api/v1` as `user_id`, in process (for the portal's form endpoints).
pub(crate) async fn call_api(
    state: &AppState,
    user_id: i64,
    method: &str,
    path: &str,
    body: Option<String>,
) -> ApiReply {
    let api = crate::api::router().with_state(state.clone());
    dispatch(api, state, user_id, method, path, body).await
}

/// Sends one request to the `/api/v1` router with a one-minute access token of
/// `user_id` that never leaves the server, and collects the answer.
async fn dispatch(
    api: Router,
    state: &AppState,
    user_id: i64,
    method: &str,
    path: &str,
    body: Option<String>,
) -> ApiReply {
    let failed = |status: u16| {
        ApiReply {
        status,
        body: r#"{"error":{"message":"The server had an error processing your request.","type":"api_error","code":"internal_error"}}"#.into(),
    }
    };
    let Ok(user) = tokengate_core::accounts::get_user(&state.db, user_id).await else {
        return failed(401);
    };
    let token = crate::auth::token::mint(
        &state.config.secret_bytes(),
        user.id,
        user.auth_epoch,
        &state.config.api_audience(),
        crate::auth::scope::ALL,
        now_ms() / 1000,
        60,
    );
    let uri = path.strip_prefix("/api/v1").unwrap_or(path).to_string();
    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body.unwrap_or_default()));
    let Ok(req) = req else { return failed(400) };
    let Ok(resp) = api.oneshot(req).await;
    let status = resp.status().as_u16();
    match axum::body::to_bytes(resp.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => ApiReply {
            status,
            body: String::from_utf8_lossy(&b).into_owned(),
        },
        Err(_) => failed(500),
    }
}

/// Puts the [`PortalContext`] of this request into its extensions.
async fn portal_context(
    State((state, services)): State<(AppState, Arc<Services>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let absolute = Duration::from_secs(state.config.session_absolute_secs);
    let user = match req.extensions().get::<Session>() {
        Some(s) => crate::auth::session::current_user(s, &state.db, absolute)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let user = user.map(|u| {
        let pending = state.gateway.money.account_funds(u.id).pending;
        PortalUser {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            role: u.role,
            balance_usd: format_balance(u.balance_nano - pending),
        }
    });
    let options = SignInOptions {
        oidc: state
            .config
            .oidc
            .iter()
            .map(|o| (o.id.clone(), o.name.clone()))
            .collect(),
        signup: state.config.signup,
        public_url: state.config.public_url.clone(),
    };
    req.extensions_mut().insert(PortalContext {
        user,
        options,
        services,
    });
    next.run(req).await
}

/// Portal routes, server functions and the static-file fallback.
pub fn router(state: &AppState) -> Router {
    let options = leptos_options(state);
    let routes = render::run_blocking(|| generate_route_list(app::App));
    let services = Arc::new(Services {
        db: state.db.clone(),
        state: state.clone(),
        api: crate::api::router().with_state(state.clone()),
    });
    Router::new()
        .leptos_routes_with_context(&options, routes, use_response_nonce, {
            let options = options.clone();
            move || app::shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context(
            use_response_nonce,
            app::shell,
        ))
        .with_state(options)
        .layer(middleware::from_fn(render::on_render_thread))
        .layer(middleware::from_fn_with_state(
            (state.clone(), services),
            portal_context,
        ))
        .layer(middleware::from_fn(see_other))
}

/// Gives Leptos the nonce that this response's Content-Security-Policy allows (set by
/// [`crate::security::headers`]), so its hydration and streaming scripts carry it.
fn use_response_nonce() {
    let nonce = leptos::prelude::use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<CspNonce>().cloned());
    if let Some(CspNonce(n)) = nonce {
        leptos::prelude::provide_context(leptos::nonce::Nonce::from_value(n));
    }
}

/// A page that sends its visitor elsewhere (a signed-in page without a session) answers
/// `303 See Other` to every client. Leptos's redirect answers `302` to browsers and `200`
/// with a stray `Location` to anything that does not ask for HTML (scripts, crawlers).
async fn see_other(req: Request, next: Next) -> Response {
    let page = matches!(*req.method(), Method::GET | Method::HEAD)
        && !req.uri().path().starts_with("/portal/fn");
    let resp = next.run(req).await;
    let redirected = resp.status() == StatusCode::FOUND || resp.status() == StatusCode::OK;
    let location = resp
        .headers()
        .get(header::LOCATION)
        .filter(|_| page && redirected)
        .cloned();
    let Some(location) = location else {
        return resp;
    };
    let target = location.to_str().unwrap_or("/");
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"/><title>See other</title>\
         </head><body><p><a href=\"{}\">Continue</a></p></body></html>",
        target
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
    );
    let mut out = (StatusCode::SEE_OTHER, Html(body)).into_response();
    out.headers_mut().insert(header::LOCATION, location);
    out
}

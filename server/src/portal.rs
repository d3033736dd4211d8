//! The portal's place in the router: Leptos server-side rendering of the app's routes (and
//! its server functions under `/portal/fn`), the static site (`/pkg`, CSS, `public/`)
//! that cargo-leptos builds into the site root, and the per-request portal context (who
//! is signed in, how one can sign in, device-request lookups) the app reads.

use std::sync::Arc;
use std::time::Duration;

use app::session::{DeviceRequest, PortalContext, PortalServices, PortalUser, SignInOptions};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use leptos::config::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokengate_core::money::format_balance;
use tokengate_core::{Db, auth as store, now_ms};
use tower_sessions::Session;

use crate::AppState;
use crate::auth::device::normalise_user_code;

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
}

impl PortalServices for Services {
    fn device_request(
        &self,
        user_code: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<DeviceRequest>> + Send>> {
        let db = self.db.clone();
        Box::pin(async move {
            let code = normalise_user_code(&user_code)?;
            let g = store::grant_by_user_code(&db, &code).await.ok().flatten()?;
            (g.status == "pending" && g.expires_at > now_ms()).then(|| DeviceRequest {
                user_code: g.user_code,
                client_id: g.client_id,
                scope: g.scope,
                expires_in: (g.expires_at - now_ms()) / 1000,
            })
        })
    }
}

/// Puts the [`PortalContext`] of this request into its extensions.
async fn portal_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
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
    };
    req.extensions_mut().insert(PortalContext {
        user,
        options,
        services: Arc::new(Services {
            db: state.db.clone(),
        }),
    });
    next.run(req).await
}

/// Portal routes, server functions and the static-file fallback.
pub fn router(state: &AppState) -> Router {
    let options = leptos_options(state);
    let routes = generate_route_list(app::App);
    Router::new()
        .leptos_routes(&options, routes, {
            let options = options.clone();
            move || app::shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(app::shell))
        .with_state(options)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            portal_context,
        ))
}

//! The portal's place in the router: Leptos server-side rendering of the app's routes and
//! the static site (`/pkg`, CSS, `public/`) that cargo-leptos builds into the site root.

use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};

use crate::AppState;

/// Leptos options for this server (no cargo-leptos environment needed at run time).
pub fn leptos_options(state: &AppState) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("tokengate")
        .site_root(state.config.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(state.config.listen)
        .build()
}

/// Portal routes and the static-file fallback.
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
}

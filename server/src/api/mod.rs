//! The management REST API under `/api/v1`: the account, billing and admin handlers and
//! the route table, which also mounts the device-flow routes `crate::auth` declares. The
//! error type and the extractors every rejection goes through are in `crate::http`.
//! Handlers are thin over `tokengate-core` functions. axum's `Json`, `Query` and `Path`
//! (plain-text rejections) are refused here by clippy (`clippy.toml`): use `ApiJson`,
//! `ApiQuery` and `ApiPath`.
#![deny(clippy::disallowed_types)]

pub mod account;
pub mod admin;
pub mod billing;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::http::ApiError;

/// The route table of `/api/v1`: every route is registered with `routes!` from its
/// handler's `#[utoipa::path]`, so this router and the OpenAPI document (`crate::docs`)
/// are built from the same list.
pub fn route_table() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(account::route_table())
        .merge(billing::route_table())
        .merge(crate::auth::route_table())
        .nest("/admin", admin::route_table())
}

/// Everything under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::from(route_table())
        .fallback(|| async { ApiError::NotFound("Unknown API route.".into()) })
}

//! Who is calling: portal sessions ([`session`]) with local sign-in ([`login`]), the
//! device flow for command-line clients ([`device`]), signed access tokens ([`token`]),
//! token scopes per route ([`scope`]), and the extractors that turn a request into a
//! [`CurrentUser`] or an [`AdminUser`]. Errors are `crate::http::ApiError`s; `auth` does not
//! depend on `crate::api`, which mounts [`route_table`] under `/api/v1`.

pub mod csrf;
pub mod device;
pub mod extract;
pub mod login;
pub mod oidc;
pub mod scope;
pub mod session;
pub mod token;

pub use extract::{AdminUser, CurrentUser};

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// The routes `auth` serves under `/api/v1`: the device flow ([`device::route_table`]).
/// The portal's sign-in forms are in `crate::portal_route_table`.
pub fn route_table() -> OpenApiRouter<AppState> {
    device::route_table()
}

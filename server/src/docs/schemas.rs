//! Schema types of the OpenAPI document that belong to no serving module: the bodies of
//! the health probes. The `/v1` wire formats and their error sets are in
//! `crate::gateway::wire`, the `/api/v1` error body and its response sets in
//! `crate::http::error` (the body itself is `tokengate_api::error::ApiErrorBody`); both
//! are re-exported here for the document's builders. Nothing here is used at run time.

use utoipa::ToSchema;

pub use crate::gateway::wire::*;
pub use crate::http::error::{
    AdminErrors, ApiErrorBody, BadRequest, Conflict, NotFound, PaymentsUnavailable, Unauthorized,
    Unprocessable,
};

// ---------------------------------------------------------------------------------------
// Health

/// `{"status":"ok"}`.
#[derive(ToSchema)]
pub struct Healthz {
    /// `ok`.
    pub status: String,
}

/// Readiness: whether the database answers.
#[derive(ToSchema)]
#[schema(example = json!({"status": "ready", "database": "ok"}))]
pub struct Readyz {
    /// `ready` or `unavailable`.
    pub status: String,
    /// `ok` or `unreachable`.
    pub database: String,
}

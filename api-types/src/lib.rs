//! tokengate's wire types: every request and response body of `/api/v1` and the device
//! flow, defined once. The server returns them, the portal and the CLI deserialize them,
//! and with the `openapi` feature each derives the `utoipa::ToSchema` the OpenAPI document
//! is built from. Compiles for the server, the wasm portal and the CLI alike (no I/O).
//!
//! Conventions: money is [`Usd`] (nano-USD, an exact decimal string on the wire);
//! points in time are [`Timestamp`] (RFC 3339, UTC); statuses, roles and kinds are enums.

pub mod account;
pub mod admin;
pub mod attempt;
pub mod billing;
pub mod device;
pub mod error;
pub mod kinds;
pub mod money;
pub mod time;

pub use money::Usd;
pub use time::Timestamp;

//! The HTTP boundary shared by the management API (`crate::api`) and the sign-in and
//! device-flow routes (`crate::auth`): the `/api/v1` error type and its error response
//! sets ([`error`]) and the extractors whose rejections are in that error shape
//! ([`extract`]); [`extract::ApiJson`] is also the JSON answer of `/api/v1`. It depends
//! on neither, so neither depends on the other through it. axum's `Json`, `Query` and
//! `Path` are refused inside `crate::api` by clippy (`clippy.toml`, `disallowed-types`):
//! their rejections are plain text.

pub mod error;
pub mod extract;

pub use error::ApiError;
pub use extract::{ApiJson, ApiPath, ApiQuery, typed_object};

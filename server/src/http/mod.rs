//! The HTTP boundary shared by the management API (`crate::api`) and the sign-in and
//! device-flow routes (`crate::auth`): the `/api/v1` error type and its error response
//! sets ([`error`]) and the extractors whose rejections are in that error shape
//! ([`extract`]). It depends on neither, so neither depends on the other through it.

pub mod error;
pub mod extract;

pub use error::ApiError;
pub use extract::{ApiJson, ApiPath, ApiQuery, typed_object};

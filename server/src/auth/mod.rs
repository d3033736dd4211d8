//! Who is calling the account and admin APIs: signed access tokens ([`token`]) and the
//! extractors that turn a request into a [`CurrentUser`] or an [`AdminUser`].

pub mod extract;
pub mod token;

pub use extract::{AdminUser, CurrentUser};

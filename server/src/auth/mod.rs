//! Who is calling: portal sessions ([`session`]) with local sign-in ([`login`]), the
//! device flow for command-line clients ([`device`]), signed access tokens ([`token`]),
//! token scopes per route ([`scope`]), and the extractors that turn a request into a
//! [`CurrentUser`] or an [`AdminUser`].

pub mod csrf;
pub mod device;
pub mod extract;
pub mod login;
pub mod oidc;
pub mod scope;
pub mod session;
pub mod token;

pub use extract::{AdminUser, CurrentUser};

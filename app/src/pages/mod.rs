//! The signed-in portal pages (one module per section) and the admin console.

pub mod admin;
pub mod billing;
pub mod console;
pub mod keys;
pub mod logs;
pub mod settings;
pub mod usage;

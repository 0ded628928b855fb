//! actix-web glue: startup on a caller-supplied listener, routes, the bearer
//! check, and the error type that decides every status code. Handlers parse
//! their input into core types, then hand over to [`crate::db`].

mod auth;
pub mod error;
mod events;
pub mod startup;

pub use startup::{routes, run, AppOptions, AppState};

//! actix-web glue: startup on a caller-supplied listener, routes, the bearer
//! check, and the error type that decides every status code. Handlers parse
//! their input into core types, then hand over to [`crate::db`].

mod audit;
pub mod auth;
mod body;
mod clients;
pub mod docs;
pub mod error;
mod ingest;
pub mod jwks;
mod listing;
pub mod ops;
pub mod options;
pub mod reports;
mod resource;
mod sessions;
pub mod startup;
mod state;
mod summary;
pub mod telemetry;

pub use ingest::IngestResponse;
pub use options::AppOptions;
pub use options::{IngestOptions, DEFAULT_MAX_BODY_BYTES};
pub use startup::{routes, run};
pub use state::AppState;

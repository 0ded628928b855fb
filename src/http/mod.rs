//! actix-web glue: startup on a caller-supplied listener, routes, the bearer
//! check, and the error type that decides every status code. Handlers parse
//! their input into core types, then hand over to [`crate::db`].

mod assets;
mod audit;
pub mod auth;
pub mod body;
pub mod changes;
pub mod counts;
pub mod dashboard;
pub mod docs;
pub mod error;
pub mod events;
pub mod ingest;
pub mod jwks;
pub mod listing;
pub mod ops;
pub mod options;
pub mod paging;
pub mod resource;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use ingest::IngestResponse;
pub use options::AppOptions;
pub use options::{IngestOptions, DEFAULT_MAX_BODY_BYTES};
pub use startup::{routes, run};
pub use state::AppState;

//! PostgreSQL: the connection pool, migrations, the embedded cluster, the
//! window query of every kind, and ingest.
//!
//! Raw identities are read here and shown through an
//! [`IdentityWriter`](crate::core::identity::IdentityWriter) before any
//! record leaves this module: the [`records`] stream hands the encoder
//! identity values only as [`Shown`](crate::core::identity::Shown).

pub mod audit;
pub mod changes;
mod copy;
pub mod directory;
mod error;
pub mod ingest;
pub mod migrate;
pub mod partition;
pub mod pool;
pub mod records;
pub mod replicas;
pub mod retention;
pub mod tenant;
pub mod tls;
pub mod upkeep;

pub use error::{is_unavailable, DbError};

/// The embedded PostgreSQL cluster (its own crate: process management, not
/// database access).
pub use acctstream_pg_embedded as embedded;

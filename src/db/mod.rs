//! PostgreSQL: the connection pool, migrations, the embedded cluster and the
//! event query.
//!
//! Raw user IDs are read here and pseudonymised before any record leaves this
//! module: the [`events`] stream hands out [`crate::core::encode::EventRecord`]s,
//! which can only carry a [`crate::core::pseudonym::Pseudonym`].

pub mod embedded;
pub mod events;
pub mod ingest;
pub mod migrate;
pub mod pool;
pub mod reports;
pub mod retention;
pub mod rollup;

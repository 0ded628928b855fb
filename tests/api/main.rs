//! Integration tests: the real app on port 0 against a real PostgreSQL
//! cluster that this test binary starts itself (one cluster per binary, one
//! fresh database per test).

mod architecture;
mod audit;
pub mod browser;
pub mod changes;
mod cli;
mod counts;
mod docs;
mod errors;
mod events;
mod freeradius;
mod hardening;
mod helpers;
mod ingest;
mod isolation;
mod kinds;
mod oauth;
mod ops;
mod partitions;
mod registry;
mod replicas;
mod reports;
mod retention;
mod sessions;
mod shutdown;
mod streaming;
mod telemetry;
mod tenants;
mod tls;
mod zones;

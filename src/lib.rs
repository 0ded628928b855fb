//! acctstream: an HTTP service that streams accounting data (authentication
//! events, Wi-Fi client events) out of PostgreSQL as chunked JSON, CSV or
//! NDJSON, every personal identifier pseudonymised.
//!
//! # Layout
//!
//! - [`core`]: the pure core. The vocabulary of a kind's description,
//!   window resolution, content negotiation, identities and pseudonyms, the
//!   streaming encoders, ingest parsing. Knows nothing of actix-web or
//!   PostgreSQL.
//! - [`registry`]. `Entry` (a kind's description, its own routes, its demo)
//!   and `Registry`, which startup, the CLI, retention and audit loop over.
//! - [`kinds`]. Each kind of record in its folder: its description (pure
//!   data) and its entry, with what only it has (routes, storage, demo).
//! - [`db`]: PostgreSQL. Connection pool, migrations, the embedded cluster,
//!   the listing query of any kind that turns rows into encoded chunks, and
//!   ingest.
//! - [`http`]: actix-web glue. Startup on a caller-supplied listener, routes,
//!   authentication, the error type that decides every status code, and the
//!   streaming response body.
//! - [`config`]: every setting the service reads from the environment.
//! - [`metrics`]: the Prometheus metrics every worker shares (framework-free).
//! - [`app`]: `Settings` (every setting, parsed once) and
//!   `Application::build` (pools, server, background jobs, shutdown order),
//!   used by `serve`, `demo` and the tests.
//! - [`cli`]: the subcommands (which database, migrations, the demo, admin
//!   commands).
//! - [`demo`]: realistic demo data of every kind and the live trickles.

pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod db;
pub mod demo;
pub mod http;
pub mod kinds;
pub mod metrics;
pub mod registry;

//! acctstream: an HTTP service that streams accounting data (authentication
//! events) out of PostgreSQL as chunked JSON or CSV.
//!
//! # Layout
//!
//! - [`core`]: the pure core. Window resolution, content negotiation,
//!   pseudonymisation and the streaming encoders. Knows nothing of actix-web
//!   or PostgreSQL.
//! - [`db`]: PostgreSQL. Connection pool, migrations, the embedded cluster,
//!   and the event query that turns rows into pseudonymised records.
//! - [`http`]: actix-web glue. Startup on a caller-supplied listener, routes,
//!   authentication, the error type that decides every status code, and the
//!   streaming response body.
//! - [`config`]: every setting the service reads from the environment.
//! - [`metrics`]: the Prometheus metrics every worker shares (framework-free).
//! - [`cli`]: the `serve`, `migrate`, `demo` and `seed` subcommands.
//! - [`demo`]: realistic demo data and the live trickle of new events.
//! - [`kinds`]: the description of each kind of accounting record
//!   (authentication events, Wi-Fi client events), all the pipeline knows of them.

pub mod cli;
pub mod config;
pub mod core;
pub mod db;
pub mod demo;
pub mod http;
pub mod kinds;
pub mod metrics;

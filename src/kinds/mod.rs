//! The kinds of accounting record acctstream serves, each described once
//! (a [`Kind`]): its columns, time column, filters and paths. The shared
//! pipeline (windows, negotiation, links, encoders, the streaming query,
//! metrics) reads only these descriptions.
//!
//! Adding a kind: a module here with its `static` description, a migration in
//! `sql/`, a demo generator in `crate::demo`, its entry in [`ALL`], and tests.

use crate::core::kind::Kind;

pub mod audit;
pub mod auth;
pub mod client;
pub mod session;

/// Every kind whose windows are served.
pub static ALL: [&Kind; 4] = [&auth::KIND, &client::KIND, &session::KIND, &audit::KIND];

//! The kinds of accounting record acctstream serves, each in its folder:
//! its description (a [`crate::core::kind::Kind`]: columns, time, filters,
//! ingest, retention, audit routes; pure data, in `mod.rs`) and its registry
//! entry, with what only that kind has (its own routes, storage and demo
//! generator, in the folder's other files). The shared pipeline (windows,
//! negotiation, links, encoders, the streaming query, ingest, retention,
//! audit, metrics) reads only descriptions, through [`REGISTRY`].
//!
//! Adding a kind: a folder here with its description and `ENTRY`, a
//! migration in `sql/`, its entry in [`REGISTRY`], and tests (see
//! ARCHITECTURE.md, "Adding a kind").

use crate::registry::Registry;

pub mod audit;
pub mod auth;
pub mod client;
pub mod session;

/// Every built-in kind, in the order its routes are registered.
pub static REGISTRY: Registry =
    Registry::new(&[&auth::ENTRY, &client::ENTRY, &session::ENTRY, &audit::ENTRY]);

#[cfg(test)]
mod tests {
    use super::REGISTRY;
    use crate::core::retention::Days;

    /// Issue 22: a kind that holds raw identities has a retention rule for
    /// its own table (client events once had none), by the records' days.
    #[test]
    fn every_kind_holding_identities_has_retention() {
        for kind in REGISTRY.kinds() {
            if kind.holds_identities() {
                assert!(
                    kind.retention
                        .iter()
                        .any(|r| r.table == kind.table && r.days == Days::Records),
                    "{} holds raw identities but retention never deletes its rows",
                    kind.name
                );
            }
            // Any kind's own table has a rule (the audit trail by its days).
            assert!(
                kind.retention.iter().any(|r| r.table == kind.table),
                "{} has no retention rule",
                kind.name
            );
        }
    }
}

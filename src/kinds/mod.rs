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

#[cfg(test)]
mod tests {
    use super::ALL;
    use crate::core::retention::Days;

    /// Issue 22: a kind that holds raw identities has a retention rule for
    /// its own table (client events once had none), by the records' days.
    #[test]
    fn every_kind_holding_identities_has_retention() {
        for kind in ALL {
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

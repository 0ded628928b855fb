//! The registry of kinds: every kind acctstream serves, each one [`Entry`]
//! (its description, its own routes, its demo data). Startup, the CLI,
//! retention and the audit layer loop over a [`Registry`]; none of them
//! names a kind. The built-in registry is `crate::kinds::REGISTRY`; a test
//! (or an embedding program) may add entries of its own
//! ([`Registry::with`]), which then get windows, ingest, links, retention
//! and audit like the built-in ones.

use std::fmt;

use actix_web::web::ServiceConfig;

use crate::{core::kind::Kind, db::upkeep::Upkeep, demo::Demo};

/// One kind of record and what it brings beyond its description.
pub struct Entry {
    /// What the shared pipeline reads: columns, time, filters, ingest,
    /// retention, audit routes.
    pub kind: &'static Kind,
    /// Routes of its own beyond its windows and ingest route (registered
    /// before the windows, so a fixed segment such as `summary` wins over
    /// a window's `{period}`).
    pub routes: Option<fn(&mut ServiceConfig)>,
    /// How the demo makes its data.
    pub demo: Option<&'static dyn Demo>,
    /// Data derived from its rows and kept up to date beside them (run
    /// before retention, after the demo and by the background job).
    pub upkeep: Option<&'static dyn Upkeep>,
}

impl Entry {
    /// The entry of `kind` with nothing else: windows, ingest (when the
    /// kind has a route), retention and audit come from the description.
    pub const fn of(kind: &'static Kind) -> Entry {
        Entry {
            kind,
            routes: None,
            demo: None,
            upkeep: None,
        }
    }
}

/// A set of entries, in the order their routes are registered.
#[derive(Clone, Copy)]
pub struct Registry(&'static [&'static Entry]);

impl Registry {
    /// The registry of these entries.
    pub const fn new(entries: &'static [&'static Entry]) -> Registry {
        Registry(entries)
    }

    /// The same registry and `entry` after its entries. The new list lives
    /// as long as the program (a registry is built once, at start-up).
    pub fn with(self, entry: &'static Entry) -> Registry {
        let mut entries = self.0.to_vec();
        entries.push(entry);
        Registry(Vec::leak(entries))
    }

    /// Its entries.
    pub fn entries(self) -> &'static [&'static Entry] {
        self.0
    }

    /// Every kind's description.
    pub fn kinds(self) -> Vec<&'static Kind> {
        self.0.iter().map(|e| e.kind).collect()
    }

    /// Every kind's upkeep.
    pub fn upkeeps(self) -> Vec<&'static dyn Upkeep> {
        self.0.iter().filter_map(|e| e.upkeep).collect()
    }

    /// The kind whose records a request of `route` (a route template)
    /// reads: the one whose windows or other routes start it.
    pub fn kind_of_route(self, route: &str) -> Option<&'static Kind> {
        self.0.iter().map(|e| e.kind).find(|kind| {
            route.starts_with(kind.path) || kind.audit_routes.iter().any(|p| route.starts_with(p))
        })
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|e| e.kind.name))
            .finish()
    }
}

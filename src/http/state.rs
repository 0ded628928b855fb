//! What every handler shares: the application state. Handlers import this
//! module, never `startup` (which only wires the routes); it imports no
//! handler (their settings live in [`super::options`]).

use super::options::AppOptions;
use crate::{config::ApiTokens, core::pseudonym::Pseudonymiser};

/// What every handler needs.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The connection pools (one per HTTP worker; `state.pool` derefs to
    /// the calling worker's).
    pub pool: crate::db::pool::Pools,
    /// Keyed pseudonymisation of identities.
    pub pseudonymiser: Pseudonymiser,
    /// Bearer tokens allowed to use the API.
    pub tokens: ApiTokens,
    /// Base URL for links, when configured (no trailing slash).
    pub public_url: Option<String>,
    /// The kinds served (`crate::kinds::REGISTRY`, or more in a test).
    pub kinds: crate::registry::Registry,
    /// Everything else, with defaults (add new settings here).
    pub options: AppOptions,
}

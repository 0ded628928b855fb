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
    /// Streaming replicas that serve reads (`ACCTSTREAM_READ_DATABASE_URL`).
    pub replicas: Option<std::sync::Arc<crate::db::replicas::Replicas>>,
}

/// True when a deployment with these tokens and this OAuth2 verifier has
/// tenants (issue 28): a static token names its organization, or access
/// tokens carry one.
pub fn has_tenants(tokens: &ApiTokens, oauth: Option<&super::jwks::OAuth>) -> bool {
    tokens.names_tenants() || oauth.is_some_and(|oauth| oauth.policy().tenant_claim.is_some())
}

impl AppState {
    /// True when the deployment has tenants (issue 28): a static token
    /// names its organization, or access tokens carry one.
    pub fn has_tenants(&self) -> bool {
        has_tenants(&self.tokens, self.options.oauth.as_deref())
    }

    /// Narrows `selection` to what a caller of `tenancy` may read
    /// ([`Selection::restrict`](crate::core::kind::Selection::restrict)).
    pub fn restrict(
        &self,
        selection: &mut crate::core::kind::Selection,
        tenancy: &crate::core::tenant::Tenancy,
    ) -> Result<(), crate::core::kind::FilterError> {
        selection.restrict(tenancy, &self.pseudonymiser)?;
        selection.without_tenant_term = self.options.tenants_by_row_security_only;
        Ok(())
    }

    /// The organizations `tenant=` names among `pairs` (the other pairs
    /// are left: they are no filters of the route), as a selection of
    /// `kind` narrowed to what a caller of `tenancy` may read.
    pub fn organizations(
        &self,
        kind: &crate::core::kind::Kind,
        pairs: &[(String, String)],
        tenancy: &crate::core::tenant::Tenancy,
    ) -> Result<crate::core::kind::Selection, crate::core::kind::FilterError> {
        let asked: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k == crate::core::kind::TENANT_PARAM)
            .cloned()
            .collect();
        let mut selection = kind.parse_filters(&asked, false)?;
        self.restrict(&mut selection, tenancy)?;
        Ok(selection)
    }

    /// The pool a read that may lag (by at most
    /// `ACCTSTREAM_MAX_REPLICA_LAG`) takes its connection from: a usable
    /// replica's, else the primary's.
    pub async fn read_pool(&self) -> &deadpool_postgres::Pool {
        match &self.replicas {
            Some(replicas) => replicas.pool(&self.pool).await,
            None => self.pool.current(),
        }
    }

    /// The pool a window's read takes its connection from: a replica that
    /// has everything the primary had when this was called (call it after
    /// reading the window's change-feed cursor), else the primary's.
    pub async fn window_pool(&self) -> &deadpool_postgres::Pool {
        match &self.replicas {
            Some(replicas) => replicas.pool_for_window(&self.pool).await,
            None => self.pool.current(),
        }
    }
}

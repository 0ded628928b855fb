//! What a caller may do: a [`Scope`] is a set of [`Grant`]s. Static tokens
//! (`token:read+write`) and OAuth2 access tokens (`core::jwt::ScopeMap`)
//! both come down to one; a handler asks for the grant it needs
//! (`http::auth::require_in_tenant`).

use std::fmt;

/// One of acctstream's grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Read accounting data.
    Read,
    /// Ingest accounting data.
    Write,
    /// See raw identities.
    Identities,
    /// Read the access audit trail.
    Audit,
    /// Read every organization's records (issue 28); without it, a token
    /// of a deployment with tenants reads its own organization's only.
    Tenants,
}

impl Grant {
    /// Every grant.
    pub const ALL: [Grant; 5] = [
        Grant::Read,
        Grant::Write,
        Grant::Identities,
        Grant::Audit,
        Grant::Tenants,
    ];

    /// Its name in `ACCTSTREAM_OAUTH_SCOPES` and in static token scopes.
    pub fn name(self) -> &'static str {
        match self {
            Grant::Read => "read",
            Grant::Write => "write",
            Grant::Identities => "identities",
            Grant::Audit => "audit",
            Grant::Tenants => "tenants",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The grants a caller holds. A static token always reads (pseudonymised
/// data); `write` may also ingest; `identities` sees raw identities (user
/// ids, MAC and IP addresses) instead of pseudonyms; `audit` reads the
/// access audit trail. An OAuth2 access token holds exactly the grants its
/// scopes map to, so it may lack `read`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scope(u8);

impl Scope {
    /// No grant.
    pub const NONE: Scope = Scope(0);
    /// Read only (an entry without a scope, or `token:read`).
    pub const READ: Scope = Scope(Grant::Read.bit());
    /// Read and ingest (`token:read+write`).
    pub const READ_WRITE: Scope = Scope(Grant::Read.bit() | Grant::Write.bit());

    /// This scope and `grant`.
    pub const fn with(self, grant: Grant) -> Scope {
        Scope(self.0 | grant.bit())
    }

    /// True when this scope holds `grant`.
    pub const fn has(self, grant: Grant) -> bool {
        self.0 & grant.bit() != 0
    }

    /// The scope's names joined by `+` (`read+write`), as the audit trail
    /// records them.
    pub fn names(self) -> String {
        Grant::ALL
            .iter()
            .filter(|g| self.has(**g))
            .map(|g| g.name())
            .collect::<Vec<_>>()
            .join("+")
    }

    /// Parses `read`, optionally joined by `+` with `write`, `identities`
    /// and/or `audit` (any order, each once).
    pub fn parse(text: &str) -> Option<Scope> {
        let mut scope = Scope::NONE;
        for part in text.split('+') {
            let grant = Grant::ALL.into_iter().find(|g| g.name() == part)?;
            if scope.has(grant) {
                return None;
            }
            scope = scope.with(grant);
        }
        scope.has(Grant::Read).then_some(scope)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_name_their_grants() {
        assert_eq!(Scope::parse("read"), Some(Scope::READ));
        assert_eq!(Scope::parse("read+write"), Some(Scope::READ_WRITE));
        let all = Scope::parse("audit+read+tenants+identities+write").unwrap();
        assert!(Grant::ALL.iter().all(|g| all.has(*g)));
        assert_eq!(all.names(), "read+write+identities+audit+tenants");
        // Read is required, each grant once, no unknown names.
        for bad in ["write", "read+read", "read+admin", "", "read+"] {
            assert_eq!(Scope::parse(bad), None, "{bad}");
        }
        let audit = Scope::READ.with(Grant::Audit);
        assert!(audit.has(Grant::Audit) && !audit.has(Grant::Write));
        assert_eq!(format!("{audit:?}"), "Scope(read+audit)");
        assert_eq!(Scope::default(), Scope::NONE);
    }
}

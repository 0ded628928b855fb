//! Organizations (issue 28): every record of a kind with tenants belongs to
//! one, and a caller reads its own organization's records only, unless it
//! holds the `tenants` grant.
//!
//! A deployment has tenants as soon as a static token names one
//! (`name=token:read@acme`) or access tokens carry one
//! (`ACCTSTREAM_OAUTH_TENANT_CLAIM`). Without, everything is in the
//! [`DEFAULT_TENANT`] and every caller reads it, so a single-organization
//! deployment behaves exactly as before tenants existed.

use std::sync::Arc;

/// The organization of records stored before tenants existed, of records a
/// token that names none writes, and of every record of a deployment
/// without tenants.
pub const DEFAULT_TENANT: &str = "default";

/// The most characters of an organization's name.
pub const MAX_TENANT_CHARS: usize = 64;

/// What a rule for names says, in errors.
pub const TENANT_NAME_RULE: &str = "1 to 64 of a-z, A-Z, 0-9, `.`, `_` and `-`";

/// True when `name` may name an organization: 1 to 64 ASCII letters,
/// digits, `.`, `_` and `-` (it travels in URLs, headers and log lines
/// unescaped).
pub fn is_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TENANT_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whose records a caller reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tenancy {
    /// Every organization's: the `tenants` grant, or a deployment without
    /// tenants (where every record is the default organization's).
    All,
    /// This organization's only.
    One(Arc<str>),
}

impl Tenancy {
    /// The tenancy of a caller of a deployment that has tenants (`multi`)
    /// or not, holding the `tenants` grant (`every`) or not, whose token
    /// names `tenant` (or none: the default organization).
    pub fn of(multi: bool, every: bool, tenant: Option<&str>) -> Tenancy {
        if every || !multi {
            Tenancy::All
        } else {
            Tenancy::One(Arc::from(tenant.unwrap_or(DEFAULT_TENANT)))
        }
    }

    /// The one organization, when it reads only one.
    pub fn only(&self) -> Option<&str> {
        match self {
            Tenancy::All => None,
            Tenancy::One(tenant) => Some(tenant),
        }
    }

    /// The organization records it writes belong to.
    pub fn writes_to(&self) -> &str {
        self.only().unwrap_or(DEFAULT_TENANT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["acme", "A-1", "campus.guests", "x_y", &"a".repeat(64)] {
            assert!(is_tenant_name(good), "{good}");
        }
        for bad in ["", "two words", "a/b", "é", "a@b", "a,b", &"a".repeat(65)] {
            assert!(!is_tenant_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_caller_reads_all_only_with_the_grant_or_without_tenants() {
        assert_eq!(Tenancy::of(false, false, None), Tenancy::All);
        assert_eq!(Tenancy::of(false, false, Some("acme")), Tenancy::All);
        assert_eq!(Tenancy::of(true, true, Some("acme")), Tenancy::All);
        let acme = Tenancy::of(true, false, Some("acme"));
        assert_eq!(acme.only(), Some("acme"));
        assert_eq!(acme.writes_to(), "acme");
        let unnamed = Tenancy::of(true, false, None);
        assert_eq!(unnamed.only(), Some(DEFAULT_TENANT));
        assert_eq!(Tenancy::All.writes_to(), DEFAULT_TENANT);
    }
}

//! What a request selects of a kind: its filters parsed from the query
//! (`Selection`, 400 vs 403), and the query string that links keep.

use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{Column, ColumnType, Filter, FilterType, Kind};
use crate::core::identity::is_pseudonym;
use crate::core::pseudonym::Pseudonymiser;
use crate::core::tenant::{is_tenant_name, Tenancy, DEFAULT_TENANT, TENANT_NAME_RULE};

/// The query parameter narrowing a kind that keeps organizations apart to
/// some of them.
pub const TENANT_PARAM: &str = "tenant";

/// The most values one filter parameter may have.
pub const MAX_FILTER_VALUES: usize = 100;

/// A filter value as the request gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterValue {
    /// Text (also an identity value given raw).
    Text(String),
    /// An integer.
    Integer(i64),
    /// An identity given as its pseudonym; the database layer resolves it.
    Pseudonym(String),
    /// An identity given as an organization's pseudonym (issue 28): as
    /// given (for links), and the pseudonyms it may stand for, which the
    /// database layer resolves.
    Sealed(String, Vec<String>),
}

/// The filters of one request, in the kind's filter order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// `(index into Kind::filters, values)`, only filters that were given.
    pub filters: Vec<(usize, Vec<FilterValue>)>,
    /// The organizations `tenant=` asked for (issue 28; in links).
    pub tenants: Vec<String>,
    /// The one organization the caller may read ([`Selection::restrict`];
    /// not in links: its token says it).
    pub tenant: Option<std::sync::Arc<str>>,
    /// Tests of the second layer only: the query leaves `tenant` to row
    /// security alone ([`crate::http::options::AppOptions`]'s
    /// `tenants_by_row_security_only`); never set otherwise.
    #[doc(hidden)]
    pub without_tenant_term: bool,
}

impl Selection {
    /// True when nothing narrows the records: no filter, no organization.
    pub fn is_unfiltered(&self) -> bool {
        self.filters.is_empty() && self.tenants.is_empty() && self.tenant.is_none()
    }

    /// Narrows the selection to what a caller of `tenancy` may read: one
    /// organization's records only, when it reads one (asking for another
    /// one is a 403); its pseudonyms are the organization's own
    /// ([`Pseudonymiser::in_tenant`] of `pseudonymiser`), each then
    /// standing for the pseudonyms it unseals to.
    pub fn restrict(
        &mut self,
        tenancy: &Tenancy,
        pseudonymiser: &Pseudonymiser,
    ) -> Result<(), FilterError> {
        if let Tenancy::One(own) = tenancy {
            if self.tenants.iter().any(|t| **t != **own) {
                return Err(FilterError::OtherTenant);
            }
            self.tenant = Some(own.clone());
            if **own != *DEFAULT_TENANT && self.has_pseudonyms() {
                let seal = pseudonymiser.in_tenant(own);
                for (_, values) in &mut self.filters {
                    for value in values.iter_mut() {
                        if let FilterValue::Pseudonym(shown) = value {
                            let open = seal.unseal(shown);
                            *value = FilterValue::Sealed(std::mem::take(shown), open);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The organizations a read of tables beside the kind's own (report
    /// figures, the quarantine) names: the caller's own (unless a test
    /// leaves it to row security alone), else those `tenant=` asked for;
    /// `None` for every one.
    pub fn organizations(&self) -> Option<Vec<String>> {
        match &self.tenant {
            Some(_) if self.without_tenant_term => None,
            Some(own) => Some(vec![own.to_string()]),
            None => (!self.tenants.is_empty()).then(|| self.tenants.clone()),
        }
    }

    /// True when some value is a pseudonym (resolved through the identity
    /// directory).
    pub fn has_pseudonyms(&self) -> bool {
        self.filters.iter().any(|(_, values)| {
            values
                .iter()
                .any(|v| matches!(v, FilterValue::Pseudonym(_) | FilterValue::Sealed(..)))
        })
    }
}

/// A filter parameter that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The value does not fit the filter's type.
    #[error("Invalid value for filter `{param}`: {expected}.")]
    Invalid {
        /// The parameter.
        param: &'static str,
        /// What is accepted.
        expected: &'static str,
    },
    /// Not one of the listed values.
    #[error("Invalid value for filter `{param}`: one of {}.", allowed.join(", "))]
    NotOneOf {
        /// The parameter.
        param: &'static str,
        /// What is accepted.
        allowed: &'static [&'static str],
    },
    /// Too many values.
    #[error("Too many values for filter `{param}` (at most {MAX_FILTER_VALUES}).")]
    TooMany {
        /// The parameter.
        param: &'static str,
    },
    /// Not the name of an organization.
    #[error("Invalid value for filter `tenant`: {TENANT_NAME_RULE}.")]
    Tenant,
    /// An organization the token may not read.
    #[error("This token reads its own organization's records only: leave out `tenant`, or name its own.")]
    OtherTenant,
    /// A raw identity given by a token without the `identities` scope.
    #[error("Filter `{param}` takes a pseudonym (64 lowercase hex digits); raw values need a token with the identities scope.")]
    RawIdentity {
        /// The parameter.
        param: &'static str,
    },
}

impl FilterError {
    /// True when the request was well-formed but the token may not make it (403).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            FilterError::RawIdentity { .. } | FilterError::OtherTenant
        )
    }
}

/// Characters percent-encoded in link query values.
pub const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

impl Kind {
    /// The index of the output column holding each record's time (its
    /// start for intervals), which picks the pseudonymisation key of a
    /// schedule.
    pub fn time_column(&self) -> Option<usize> {
        let time = self.time.order_column();
        self.columns
            .iter()
            .position(|c| c.ty == ColumnType::Timestamp && c.sql == time)
    }

    /// Picks this kind's filters out of the query pairs (other parameters
    /// are left to the caller). `reveal` says whether raw identity values are
    /// allowed (the `identities` scope).
    pub fn parse_filters(
        &self,
        pairs: &[(String, String)],
        reveal: bool,
    ) -> Result<Selection, FilterError> {
        let mut selection = Selection::default();
        for (index, filter) in self.filters.iter().enumerate() {
            let mut values = Vec::new();
            for (_, value) in pairs.iter().filter(|(k, _)| k == filter.param) {
                if values.len() == MAX_FILTER_VALUES {
                    return Err(FilterError::TooMany {
                        param: filter.param,
                    });
                }
                values.push(parse_value(filter, value, reveal)?);
            }
            if !values.is_empty() {
                selection.filters.push((index, values));
            }
        }
        if self.tenant.is_some() {
            for (_, value) in pairs.iter().filter(|(k, _)| k == TENANT_PARAM) {
                if selection.tenants.len() == MAX_FILTER_VALUES {
                    return Err(FilterError::TooMany {
                        param: TENANT_PARAM,
                    });
                }
                if !is_tenant_name(value) {
                    return Err(FilterError::Tenant);
                }
                selection.tenants.push(value.clone());
            }
        }
        Ok(selection)
    }

    /// The query string that reproduces `selection` (without `sort`), in the
    /// kind's filter order, values in request order, percent-encoded; with
    /// `format=` first when the request chose one by parameter.
    pub fn link_query(&self, format: Option<&str>, selection: &Selection) -> String {
        let mut query = String::new();
        let mut add = |key: &str, value: &str| {
            if !query.is_empty() {
                query.push('&');
            }
            let _ = write!(query, "{key}={}", utf8_percent_encode(value, QUERY_VALUE));
        };
        if let Some(format) = format {
            add("format", format);
        }
        for (index, values) in &selection.filters {
            let param = self.filters[*index].param;
            for value in values {
                match value {
                    FilterValue::Text(text)
                    | FilterValue::Pseudonym(text)
                    | FilterValue::Sealed(text, _) => add(param, text),
                    FilterValue::Integer(n) => add(param, &n.to_string()),
                }
            }
        }
        for tenant in &selection.tenants {
            add(TENANT_PARAM, tenant);
        }
        query
    }

    /// The column with this JSON name.
    pub fn column(&self, json: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.json == json)
    }
}

fn parse_value(filter: &Filter, value: &str, reveal: bool) -> Result<FilterValue, FilterError> {
    let invalid = |expected| FilterError::Invalid {
        param: filter.param,
        expected,
    };
    match filter.ty {
        FilterType::Text => {
            if value.is_empty() || value.chars().count() > 1000 || value.contains('\0') {
                Err(invalid(
                    "a non-empty text of at most 1000 characters, without NUL",
                ))
            } else {
                Ok(FilterValue::Text(value.to_owned()))
            }
        }
        FilterType::OneOf(allowed) => {
            if allowed.contains(&value) {
                Ok(FilterValue::Text(value.to_owned()))
            } else {
                Err(FilterError::NotOneOf {
                    param: filter.param,
                    allowed,
                })
            }
        }
        FilterType::Integer => value
            .parse::<i64>()
            .map(FilterValue::Integer)
            .map_err(|_| invalid("an integer")),
        FilterType::Identity(ty) => {
            if is_pseudonym(value) {
                Ok(FilterValue::Pseudonym(value.to_owned()))
            } else if value.is_empty() || value.len() > 1000 || value.contains('\0') {
                Err(invalid("a pseudonym (64 lowercase hex digits)"))
            } else if reveal {
                Ok(FilterValue::Text(ty.normalise(value).into_owned()))
            } else {
                Err(FilterError::RawIdentity {
                    param: filter.param,
                })
            }
        }
    }
}

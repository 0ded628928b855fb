//! Glue between a finished request and the access audit trail: which
//! requests are audited (every `/api/` request of an authenticated client),
//! and their parameters with identity values pseudonymised (the identity
//! parameters are those of the kind the route serves).

use actix_web::{
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    web,
};
use chrono::{DateTime, Utc};

use super::{error::ApiError, AppState};
use crate::{
    core::{
        audit::{AuditEntry, Kept},
        kind::FilterType,
    },
    db::audit::{AuditSink, Reserved},
    registry::Registry,
};

/// An entry waiting for its body to end.
pub struct Pending {
    sink: AuditSink,
    entry: AuditEntry,
    reserved: Option<Reserved>,
}

impl Pending {
    /// Completes the entry and hands it to the writer.
    pub fn finish(mut self, rows: Option<u64>, bytes: u64, completed: bool, duration_ms: f64) {
        self.entry.rows = rows;
        self.entry.bytes = bytes;
        self.entry.completed = completed;
        self.entry.duration_ms = duration_ms;
        self.sink.record(self.entry, self.reserved);
    }
}

/// Parameters of every listing that carry no identity.
const PLAIN: [&str; 17] = [
    "period",
    "datetime",
    "sort",
    "format",
    "limit",
    "offset",
    "before",
    "cursor",
    "start",
    "end",
    "from",
    "to",
    "start_date",
    "end_date",
    "session_status",
    "totalcountrequired",
    "radAcctId",
];

/// How `route`'s parameters are kept: the filters of the kind it serves
/// (a path parameter `user`, `device` or `client` is the filter of that
/// name), the plain listing parameters as given, anything else as a
/// pseudonym.
fn kept_by(kinds: Registry, route: &str) -> impl Fn(&str) -> Option<Kept> {
    let filters = kinds.kind_of_route(route).map_or(&[][..], |k| k.filters);
    move |name: &str| {
        if PLAIN.contains(&name) {
            return Some(Kept::AsGiven);
        }
        filters
            .iter()
            .find(|f| f.param == name)
            .map(|f| match f.ty {
                FilterType::Identity(ty) => Kept::Identity(ty),
                _ => Kept::AsGiven,
            })
    }
}

/// `a=b&c=d` split and percent-decoded (`+` is a space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Before an `/api/` request is served with `ACCTSTREAM_AUDIT_REQUIRED`:
/// its entry's place in the audit buffer (`Ok(None)`: not required, or not
/// audited), or the refusal when the buffer is full.
pub fn reserve(req: &ServiceRequest) -> Result<Option<Reserved>, ApiError> {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Ok(None);
    };
    match &state.options.audit {
        Some(sink) if state.options.audit_required && req.path().starts_with("/api/") => {
            sink.reserve().map(Some).ok_or(ApiError::AuditUnavailable)
        }
        _ => Ok(None),
    }
}

/// The audit entry of `response`, when its request is audited, in the
/// place `reserved` for it if any.
pub fn pending<B>(
    response: &ServiceResponse<B>,
    route: &str,
    request_id: &str,
    at: DateTime<Utc>,
    reserved: Option<Reserved>,
) -> Option<Pending> {
    if !route.starts_with("/api/") {
        return None;
    }
    let req = response.request();
    let state = req.app_data::<web::Data<AppState>>()?;
    let sink = state.options.audit.clone()?;
    let principal = super::auth::principal(req)?;
    let mut pairs: Vec<(String, String)> = req
        .match_info()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    pairs.extend(query_pairs(req.query_string()));
    let parameters =
        crate::core::audit::parameters(&pairs, kept_by(state.kinds, route), &state.pseudonymiser);
    let representation = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::core::audit::representation);
    let tenant = principal.organization(state.has_tenants()).to_owned();
    Some(Pending {
        sink,
        reserved,
        entry: AuditEntry {
            at,
            client: principal.client,
            scopes: principal.scope.names(),
            method: req.method().as_str().to_owned(),
            route: route.to_owned(),
            parameters,
            representation,
            status: response.status().as_u16(),
            rows: None,
            bytes: 0,
            completed: false,
            duration_ms: 0.0,
            request_id: request_id.to_owned(),
            tenant,
        },
    })
}

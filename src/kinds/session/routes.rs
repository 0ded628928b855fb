//! Network access sessions beyond their windows (which the shared window
//! handler serves at `/api/v1/statistics/sessions/{period}[/{datetime}]`):
//!
//! - `POST /api/v1/accounting/radius`: RADIUS accounting requests (one bare
//!   object as `rlm_rest` posts it, answered 204; an array or NDJSON batch,
//!   atomic, answered 200 with what it did or 400 naming record and
//!   attribute);
//! - `GET /api/v1/accounting/radius/rejected`: the quarantine;
//! - `GET /api/v1/sessions` (keyset pages), `/api/v1/sessions/online`,
//!   `/api/v1/sessions/{radAcctId}`;
//! - `GET /api/v1/users/{user}/sessions`, `/api/v1/devices/{device}/sessions`;
//! - `GET /api/v1/devices/sessions/calendar` (calendar widgets' shape).

use crate::core::zone::Zone;
use std::{
    collections::HashSet,
    sync::{Mutex, OnceLock},
};

use actix_web::{
    http::{header, Method},
    web, HttpRequest, HttpResponse,
};
use bytes::BytesMut;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::http::{
    auth::{require_for_kind, require_in_tenant},
    body::{too_large, BodyError, LimitedBody},
    error::ApiError,
    ingest::capitalise,
    listing::{base_url, head_only, identity_policy, negotiate_format, ok, streamed, ListingQuery},
    paging::{cursor, page_links},
    resource::{get_or_head, get_resource, not_allowed, options, POST_ALLOW},
    telemetry::stream_tally,
    AppState,
};
use crate::{
    core::{
        encode::JsonHead,
        identity::{IdentityPolicy, IdentityType, IdentityWriter},
        kind::{Bound, Keyset, Listing, Page, Seek, Selection},
        negotiate::OutputFormat,
        paging::{self, Place},
        pseudonym::Pseudonymiser,
        scope::{Grant, Scope},
        tenant::Tenancy,
        window::Direction,
    },
    db::{
        self,
        records::{self, Output},
    },
};

use super::{
    radius::{self, merge_requests, parse_body, parse_request, Body},
    store::{self as db_sessions, Misplaced},
    INGEST_PATH, KIND, ONLINE_SQL, REJECTED_PATH,
};

/// Most records one page of `/api/v1/sessions` may hold.
pub const MAX_LIMIT: i64 = 1000;
/// The page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 100;
/// Longest range of one calendar request, in days.
pub const MAX_CALENDAR_DAYS: i64 = 92;
/// Most entries of one calendar answer.
pub const MAX_CALENDAR_ENTRIES: i64 = 10_000;

/// Registers the routes (`online` before `{radAcctId}`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(INGEST_PATH)
            .route(web::post().to(post_radius))
            .route(
                web::route()
                    .guard(actix_web::guard::Options())
                    .to(|| options(POST_ALLOW)),
            )
            .default_service(web::to(|| not_allowed(POST_ALLOW))),
    );
    cfg.service(get_resource(REJECTED_PATH, get_or_head().to(rejected)));
    cfg.service(get_resource("/api/v1/sessions", get_or_head().to(list)));
    cfg.service(get_resource(
        "/api/v1/sessions/online",
        get_or_head().to(online),
    ));
    cfg.service(get_resource(
        "/api/v1/sessions/{radAcctId}",
        get_or_head().to(one),
    ));
    cfg.service(get_resource(
        "/api/v1/devices/sessions/calendar",
        get_or_head().to(calendar),
    ));
    cfg.service(get_resource(
        "/api/v1/users/{user}/sessions",
        get_or_head().to(|req, state| history(req, state, "user")),
    ));
    cfg.service(get_resource(
        "/api/v1/devices/{device}/sessions",
        get_or_head().to(|req, state| history(req, state, "device")),
    ));
}

// ---------------------------------------------------------------- ingest --

/// What a batch did.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchAnswer {
    received: u64,
    created: u64,
    updated: u64,
    closed_by_nas_reboot: u64,
}

/// Logs once per NAS that its dates name a zone that cannot be read.
fn warn_zone_once(nas: &str) {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let warned = WARNED.get_or_init(|| Mutex::new(HashSet::new()));
    let first = warned
        .lock()
        .map(|mut set| set.len() < 10_000 && set.insert(nas.to_owned()))
        .unwrap_or(false);
    if first {
        tracing::warn!(
            nas,
            "Event-Timestamp names an ambiguous or unknown time zone: using the time received \
             (less Acct-Delay-Time) for this NAS's requests; run FreeRADIUS with TZ=UTC"
        );
    }
}

/// A request a token of one organization may not write (issue 28): a 403
/// when it belongs to another organization, else (no rule maps it) a 400;
/// nothing is stored.
fn misplaced(why: &Misplaced) -> ApiError {
    let text = format!("{}; nothing was stored.", capitalise(&why.to_string()));
    match why {
        Misplaced::Other(_) => ApiError::Forbidden(format!(
            "{text} This token writes its own organization's sessions only."
        )),
        Misplaced::Unmapped(_) => ApiError::InvalidRequest(text),
    }
}

/// Keeps a request with `reason` (a NAS retransmits a request that is not
/// acknowledged for ever: it is kept and acknowledged).
async fn quarantined(
    state: &AppState,
    reason: &str,
    record: &Value,
    tenant: &str,
) -> Result<HttpResponse, ApiError> {
    let id = db_sessions::quarantine(&state.pool, reason, record, tenant).await?;
    state.options.metrics.radius_requests("quarantined", 1);
    tracing::warn!(id, %reason, "RADIUS request quarantined");
    Ok(HttpResponse::NoContent()
        .insert_header(("Acctstream-Quarantined", id.to_string()))
        .finish())
}

/// `POST /api/v1/accounting/radius`.
async fn post_radius(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (_, tenancy) = require_in_tenant(&req, Grant::Write)?;
    let writer = tenancy.only();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let ndjson = match content_type.as_str() {
        "application/json" => false,
        "application/x-ndjson" => true,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "Send accounting requests as application/json (one object, or an array) \
                 or application/x-ndjson (Content-Type header)."
                    .into(),
            ))
        }
    };
    let limit = state.options.ingest.max_body_bytes;
    let mut body = LimitedBody::new(&req, payload, limit)?;
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(BodyError::TooLarge) => return Err(too_large(limit)),
            Err(BodyError::Read(e)) => {
                return Err(ApiError::InvalidRequest(format!(
                    "The request body could not be read: {}; nothing was stored.",
                    crate::http::body::describe(&e)
                )))
            }
        }
    }
    let received = Utc::now();
    let metrics = &state.options.metrics;
    let parsed = parse_body(&bytes, ndjson).map_err(|e| {
        metrics.radius_requests("refused", 1);
        ApiError::InvalidRequest(format!(
            "{}; nothing was stored.",
            capitalise(&e.to_string())
        ))
    })?;
    match parsed {
        Body::Single(object) => match parse_request(&object, received) {
            Ok((request, notes)) => {
                if let Some(nas) = notes.zone_fallback {
                    warn_zone_once(&nas);
                }
                let steps = merge_requests([request]);
                let reason = match db_sessions::apply(
                    &state.pool,
                    &state.pseudonymiser,
                    &state.options.directory,
                    &steps,
                    writer,
                )
                .await?
                {
                    Ok(_) => {
                        metrics.radius_requests("applied", 1);
                        return Ok(HttpResponse::NoContent().finish());
                    }
                    Err(other @ Misplaced::Other(_)) => {
                        metrics.radius_requests("refused", 1);
                        return Err(misplaced(&other));
                    }
                    // Kept for the operator to map the NAS.
                    Err(unmapped @ Misplaced::Unmapped(_)) => capitalise(&unmapped.to_string()),
                };
                quarantined(&state, &reason, &object.to_value(), tenancy.writes_to()).await
            }
            Err(rejection) => {
                quarantined(
                    &state,
                    &rejection.to_string(),
                    &object.to_value(),
                    tenancy.writes_to(),
                )
                .await
            }
        },
        Body::Batch(objects) => {
            let mut requests = Vec::with_capacity(objects.len());
            for (position, object) in &objects {
                match parse_request(object, received) {
                    Ok((request, notes)) => {
                        if let Some(nas) = notes.zone_fallback {
                            warn_zone_once(&nas);
                        }
                        requests.push(request);
                    }
                    Err(rejection) => {
                        metrics.radius_requests("refused", objects.len() as u64);
                        return Err(ApiError::InvalidRequest(format!(
                            "Record {position}: {rejection}. Nothing was stored."
                        )));
                    }
                }
            }
            let received_count = requests.len() as u64;
            let steps = merge_requests(requests);
            let applied = match db_sessions::apply(
                &state.pool,
                &state.pseudonymiser,
                &state.options.directory,
                &steps,
                writer,
            )
            .await?
            {
                Ok(applied) => applied,
                Err(misplaced_) => {
                    metrics.radius_requests("refused", received_count);
                    return Err(misplaced(&misplaced_));
                }
            };
            metrics.radius_requests("applied", received_count);
            Ok(HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(BatchAnswer {
                    received: received_count,
                    created: applied.created,
                    updated: applied.updated,
                    closed_by_nas_reboot: applied.closed,
                }))
        }
    }
}

/// The attributes of a quarantined request that hold identities.
const IDENTITY_ATTRIBUTES: [(&str, IdentityType); 5] = [
    ("user-name", IdentityType::RadiusUser),
    ("calling-station-id", IdentityType::Mac),
    ("framed-ip-address", IdentityType::Ip),
    ("framed-ipv6-address", IdentityType::Ip),
    ("stripped-user-name", IdentityType::RadiusUser),
];

/// A quarantined request as shown: identity attributes pseudonymised unless
/// the token may see identities.
fn shown_record(record: Value, writer: &mut IdentityWriter) -> Value {
    let Value::Object(map) = record else {
        return record;
    };
    let mut out = Map::new();
    for (name, value) in map {
        let ty = IDENTITY_ATTRIBUTES
            .iter()
            .find(|(attr, _)| name.eq_ignore_ascii_case(attr))
            .map(|(_, ty)| *ty);
        let value = match ty {
            None => value,
            Some(ty) => show_value(value, ty, writer),
        };
        out.insert(name, value);
    }
    Value::Object(out)
}

fn show_value(value: Value, ty: IdentityType, writer: &mut IdentityWriter) -> Value {
    match value {
        Value::String(s) => {
            let text = radius::utf8_from_byte_escapes(&s).into_owned();
            Value::String(writer.show(ty, &text).as_str().to_owned())
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| show_value(v, ty, writer))
                .collect(),
        ),
        Value::Object(mut form) => {
            if let Some(v) = form.remove("value") {
                form.insert("value".into(), show_value(v, ty, writer));
            }
            Value::Object(form)
        }
        // Numbers and others: no identity can be read from them, hide them.
        _ => Value::Null,
    }
}

/// `GET /api/v1/accounting/radius/rejected`: newest first, `limit` (1–1000,
/// default 100) and `before` (an id) to page.
async fn rejected(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (scope, tenancy) = require_in_tenant(&req, Grant::Read)?;
    if !scope.has(Grant::Write) {
        return Err(ApiError::Forbidden(
            "Reading quarantined RADIUS requests needs a token with the read+write scope.".into(),
        ));
    }
    let query = ListingQuery::parse(req.query_string())?;
    let limit = query
        .integer("limit", 1, MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    let before = query.integer("before", 1, i64::MAX)?;
    // A token of one organization lists its own; the operator all, or
    // those `tenant=` names.
    let organizations = state.organizations(&KIND, &query.pairs, &tenancy)?;
    let reader = organizations.tenant.as_deref();
    let tenants = organizations.organizations();
    if req.method() == Method::HEAD {
        return Ok(head_only(ok(OutputFormat::Json, "rejected.json")));
    }
    let rows =
        db_sessions::rejected(&state.pool, before, limit + 1, tenants.as_deref(), reader).await?;
    let total = db_sessions::rejected_count(&state.pool, tenants.as_deref(), reader).await?;
    let policy = identity_policy(scope, reader, &state);
    let mut writer = IdentityWriter::new(&policy);
    let more = rows.len() as i64 > limit;
    let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next = match (more, rows.last()) {
        (true, Some(last)) => Value::String(format!(
            "{}{REJECTED_PATH}?limit={limit}&before={}{}",
            base_url(&req, state.public_url.as_deref()),
            last.id,
            // `tenant=` names are checked: no escaping needed.
            organizations
                .tenants
                .iter()
                .map(|t| format!("&tenant={t}"))
                .collect::<String>()
        )),
        _ => Value::Null,
    };
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "receivedAt": r.received_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "reason": r.reason,
                "tenant": r.tenant,
                "record": shown_record(r.record, &mut writer),
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "count": total, "next": next, "rejected": items })))
}

// ------------------------------------------------------------------ reads --

/// The start and end of a range given by two parameters (see [`parse_instant`]).
type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn range_params(query: &ListingQuery, start: &str, end: &str) -> Result<Range, ApiError> {
    let at = |name: &str, end: bool| {
        query
            .single(name)?
            .map(|t| parse_instant(name, t, end))
            .transpose()
    };
    Ok((at(start, false)?, at(end, true)?))
}

/// A time given as a date (`YYYY-MM-DD`: midnight UTC, or as an `end` the
/// next midnight) or a time in the ISO 8601 forms of seed 000's API
/// (`2024-01-01 00:01:00`, UTC unless it says otherwise,
/// `2024-01-01 00:01:00+00:00`, RFC 3339 with `T`).
fn parse_instant(name: &str, text: &str, end: bool) -> Result<DateTime<Utc>, ApiError> {
    parse_instant_in(name, text, end, None)
}

/// [`parse_instant`] in the reader's zone: a date is the first instant of
/// that local day, a time without offset a local time (one the clocks
/// skipped or showed twice is refused).
fn parse_instant_in(
    name: &str,
    text: &str,
    end: bool,
    zone: Option<&Zone>,
) -> Result<DateTime<Utc>, ApiError> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Ok(at.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(at) = chrono::NaiveDateTime::parse_from_str(text, format) {
            let Some(zone) = zone else {
                return Ok(at.and_utc());
            };
            return match zone.resolve(at) {
                Some(crate::core::zone::Local::One(t)) => Ok(t),
                Some(crate::core::zone::Local::Gap) => Err(ApiError::InvalidRequest(format!(
                    "The parameter `{name}` names a local time that does not exist in {}: \
                     the clocks moved forward over it.",
                    zone.name()
                ))),
                Some(crate::core::zone::Local::Fold(..)) => Err(ApiError::InvalidRequest(format!(
                    "The parameter `{name}` names a local time {} showed twice: \
                         write it with its offset.",
                    zone.name()
                ))),
                None => Err(ApiError::InvalidRequest(format!(
                    "The parameter `{name}` is out of range."
                ))),
            };
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| if end { d.succ_opt() } else { Some(d) })
        .and_then(|d| match zone {
            Some(zone) => zone.start_of_day(d),
            None => d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        })
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "The parameter `{name}` must be a date (`2024-01-01`) or a time \
                 (`2024-01-01 00:01:00`, `2024-01-01 00:01:00+00:00`, RFC 3339)."
            ))
        })
}

/// The kind's filters among the query's pairs, leaving out `skip`
/// (parameters that are not filters here).
fn filters(query: &ListingQuery, reader: &Reader, skip: &[&str]) -> Result<Selection, ApiError> {
    let pairs: Vec<(String, String)> = query
        .pairs
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .cloned()
        .collect();
    let selection = KIND.parse_filters(&pairs, reader.scope.has(Grant::Identities))?;
    reader.restrict(selection)
}

/// A reader of sessions: its grants, whose sessions it reads, and the
/// service's pseudonymiser (an organization's pseudonyms are its own).
struct Reader {
    scope: Scope,
    tenancy: Tenancy,
    pseudonymiser: Pseudonymiser,
    /// See `AppOptions::tenants_by_row_security_only` (tests only).
    without_tenant_term: bool,
}

impl Reader {
    fn of(req: &HttpRequest, state: &AppState) -> Result<Reader, ApiError> {
        let (scope, tenancy) = require_for_kind(req, &KIND, Grant::Read)?;
        Ok(Reader {
            scope,
            tenancy,
            pseudonymiser: state.pseudonymiser.clone(),
            without_tenant_term: state.options.tenants_by_row_security_only,
        })
    }

    /// `selection` narrowed to what this reader may see.
    fn restrict(&self, mut selection: Selection) -> Result<Selection, ApiError> {
        selection.restrict(&self.tenancy, &self.pseudonymiser)?;
        selection.without_tenant_term = self.without_tenant_term;
        Ok(selection)
    }
}

/// Lets the identity directory catch up with rows FreeRADIUS wrote before a
/// lookup by pseudonym.
async fn catch_up<'a>(
    req: &HttpRequest,
    state: &'a AppState,
    selection: &Selection,
) -> Result<&'a Pool, ApiError> {
    if selection.has_pseudonyms() {
        crate::http::listing::lookup_ready(req, state, &KIND).await?;
    }
    Ok(state.read_pool().await)
}

/// Streams a listing of sessions into `response` (headers only for HEAD).
async fn stream(
    req: &HttpRequest,
    state: &AppState,
    scope: Scope,
    (pool, listing): (&Pool, &Listing),
    head: JsonHead<'_>,
    resource: &'static str,
    (response, format): (actix_web::HttpResponseBuilder, OutputFormat),
) -> Result<HttpResponse, ApiError> {
    if req.method() == Method::HEAD {
        return Ok(head_only(response));
    }
    let identities = identity_policy(scope, listing.selection.tenant.as_deref(), state);
    let output = Output {
        format,
        head,
        identities: &identities,
        guard: state.options.csv_formula_guard,
        zone: None,
    };
    let tally = stream_tally(req, state, resource, format.as_str());
    let stream = records::open(pool, &KIND, listing, output, tally).await?;
    Ok(streamed(req, state, response, stream))
}

/// The positions (start, radAcctId) of a page's rows `offset` and
/// `offset + 1`, in the listing's direction (a start that is NULL, which
/// FreeRADIUS never writes, has no position).
async fn positions_at(
    pool: &Pool,
    listing: &Listing,
    offset: i64,
) -> Result<Vec<Option<Seek>>, ApiError> {
    let probe = Listing {
        page: Some(Page { offset, limit: 2 }),
        ..listing.clone()
    };
    let rows = records::select_page(pool, &KIND, &probe, "acctstarttime, radacctid").await?;
    rows.iter()
        .map(|row| {
            let at: Option<DateTime<Utc>> = row.try_get(0)?;
            let id: i64 = row.try_get(1)?;
            Ok(at.map(|at| Seek { at, id }))
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| ApiError::from(db::DbError::from(e)))
}

/// The list's URL with another cursor (every other parameter kept).
fn cursor_link(base: &str, path: &str, raw_query: &str, cursor: Option<&str>) -> String {
    paging::link(base, path, raw_query, ("cursor", cursor), Place::Last)
}

/// `GET /api/v1/sessions`: newest first by `radAcctId` (stable while
/// sessions are inserted and updated), `start_date`/`end_date` (sessions
/// overlapping the range), the session filters, `limit`, `cursor`.
async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let reader = Reader::of(&req, &state)?;
    let scope = reader.scope;
    let query = ListingQuery::parse(req.query_string())?;
    let format = negotiate_format(&req, query.format.as_deref())?;
    let limit = query
        .integer("limit", 1, MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    let after = cursor(query.single("cursor")?, paging::decode_id)?;
    let (lower, upper) = range_params(&query, "start_date", "end_date")?;
    if let (Some(l), Some(u)) = (lower, upper) {
        if l >= u {
            return Err(ApiError::InvalidRequest(
                "`start_date` must be before `end_date`.".into(),
            ));
        }
    }
    let condition = match query.single("session_status")? {
        None | Some("all") => None,
        Some("active") => Some("acctstoptime IS NULL"),
        Some("inactive") => Some("acctstoptime IS NOT NULL"),
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "The parameter `session_status` must be all, active or inactive.".into(),
            ))
        }
    };
    let selection = filters(
        &query,
        &reader,
        &[
            "limit",
            "cursor",
            "start_date",
            "end_date",
            "format",
            "sort",
            "session_status",
        ],
    )?;
    let pool = catch_up(&req, &state, &selection).await?;
    let listing = Listing {
        direction: Direction::Descending,
        lower: lower.map(Bound::at_or_after),
        upper: upper.map(Bound::before),
        selection,
        page: Some(Page { offset: 0, limit }),
        keyset: Some(Keyset { after }),
        condition,
        seek: None,
    };
    // The page's ids (one more tells whether a next page exists), and the
    // ids just before it (for the previous page's cursor).
    let ids: Vec<i64> = ids_of(pool, &listing, limit + 1).await?;
    let next = (ids.len() as i64 > limit).then(|| ids[limit as usize - 1]);
    let previous = match (after, ids.first()) {
        (None, _) => None,
        (Some(after), first) => {
            let above = Listing {
                direction: Direction::Ascending,
                keyset: Some(Keyset {
                    after: Some(first.map_or(after - 1, |f| *f)),
                }),
                ..listing.clone()
            };
            let newer = ids_of(pool, &above, limit).await?;
            match newer.len() as i64 {
                0 => None,
                n if n < limit => Some(None),
                _ => Some(newer.last().map(|id| paging::encode_id(id + 1))),
            }
        }
    };
    let count = records::count(pool, &KIND, &listing).await?;
    let base = base_url(&req, state.public_url.as_deref());
    let path = "/api/v1/sessions";
    let next = next.map(|id| {
        cursor_link(
            &base,
            path,
            req.query_string(),
            Some(&paging::encode_id(id)),
        )
    });
    let previous =
        previous.map(|cursor| cursor_link(&base, path, req.query_string(), cursor.as_deref()));
    let mut response = ok(format, "sessions.csv");
    page_links(&mut response, previous.as_deref(), next.as_deref());
    response.insert_header(("X-Total-Count", count.to_string()));
    let head = JsonHead::Results {
        count,
        next: next.as_deref(),
        previous: previous.as_deref(),
    };
    stream(
        &req,
        &state,
        scope,
        (pool, &listing),
        head,
        "sessions_list",
        (response, format),
    )
    .await
}

async fn ids_of(pool: &Pool, listing: &Listing, limit: i64) -> Result<Vec<i64>, ApiError> {
    let rows = records::select(pool, &KIND, listing, KIND.id_column, limit).await?;
    rows.iter()
        .map(|r| r.try_get::<_, i64>(0))
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::from(db::DbError::from(e)))
}

/// `GET /api/v1/sessions/online`: open sessions not stale, newest first by
/// start, a page at a time (`limit`, 100 by default and without maximum:
/// the page is streamed; `cursor` from the `next` or `previous` link, a
/// position in that order, so a page neither skips nor repeats a session
/// while others start and stop).
async fn online(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let reader = Reader::of(&req, &state)?;
    let scope = reader.scope;
    let query = ListingQuery::parse(req.query_string())?;
    let format = negotiate_format(&req, query.format.as_deref())?;
    let limit = query
        .integer("limit", 1, i64::MAX)?
        .unwrap_or(DEFAULT_LIMIT);
    let seek = cursor(query.single("cursor")?, paging::decode_position)?;
    let selection = filters(&query, &reader, &["limit", "cursor", "format", "sort"])?;
    let pool = catch_up(&req, &state, &selection).await?;
    let listing = Listing {
        direction: Direction::Descending,
        lower: None,
        upper: None,
        selection,
        page: Some(Page { offset: 0, limit }),
        keyset: None,
        condition: Some(ONLINE_SQL),
        seek,
    };
    // The page's last session, when another follows it.
    let next = match positions_at(pool, &listing, limit - 1).await?[..] {
        [last, _] => last,
        _ => None,
    };
    // The page before: the `limit` sessions from the cursor's up, the
    // first page when there are no more.
    let previous = match seek {
        None => None,
        Some(seek) => {
            let newer = Listing {
                direction: Direction::Ascending,
                seek: Some(Seek {
                    at: seek.at,
                    id: seek.id.saturating_sub(1),
                }),
                ..listing.clone()
            };
            Some(match positions_at(pool, &newer, limit - 1).await?[..] {
                [Some(top), _] => Some(paging::encode_position(Seek {
                    at: top.at,
                    id: top.id.saturating_add(1),
                })),
                _ => None,
            })
        }
    };
    let base = base_url(&req, state.public_url.as_deref());
    let path = "/api/v1/sessions/online";
    let next = next.map(|at| {
        cursor_link(
            &base,
            path,
            req.query_string(),
            Some(&paging::encode_position(at)),
        )
    });
    let previous =
        previous.map(|cursor| cursor_link(&base, path, req.query_string(), cursor.as_deref()));
    let now = Utc::now().format("%Y-%m-%dT%H-%M-%SZ");
    let mut response = ok(format, &format!("sessions-online-{now}.csv"));
    page_links(&mut response, previous.as_deref(), next.as_deref());
    let head = JsonHead::Paged {
        previous: previous.as_deref(),
        next: next.as_deref(),
        total: None,
    };
    stream(
        &req,
        &state,
        scope,
        (pool, &listing),
        head,
        "sessions_online",
        (response, format),
    )
    .await
}

/// `GET /api/v1/sessions/{radAcctId}`: one session (a JSON object, one CSV
/// row or one NDJSON line).
async fn one(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let reader = Reader::of(&req, &state)?;
    let scope = reader.scope;
    let query = ListingQuery::parse(req.query_string())?;
    let format = negotiate_format(&req, query.format.as_deref())?;
    let id = req
        .match_info()
        .get("radAcctId")
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::InvalidRequest("`radAcctId` must be a positive integer.".into())
        })?;
    // Another organization's session is a 404, exactly as a missing one.
    let selection =
        reader.restrict(KIND.parse_filters(&[("radAcctId".into(), id.to_string())], false)?)?;
    let listing = Listing {
        direction: Direction::Ascending,
        lower: None,
        upper: None,
        selection,
        page: None,
        keyset: None,
        condition: None,
        seek: None,
    };
    let pool = state.read_pool().await;
    if !records::exists(pool, &KIND, &listing).await? {
        return Err(ApiError::Missing(format!("No session has radAcctId {id}.")));
    }
    let mut response = ok(format, &format!("session-{id}.csv"));
    if req.method() == Method::HEAD {
        return Ok(head_only(response));
    }
    let identities = identity_policy(scope, listing.selection.tenant.as_deref(), &state);
    // Encoded as NDJSON (one line), which is the JSON object itself.
    let output = Output {
        format: if format == OutputFormat::Json {
            OutputFormat::Ndjson
        } else {
            format
        },
        head: JsonHead::Paged {
            previous: None,
            next: None,
            total: None,
        },
        identities: &identities,
        guard: state.options.csv_formula_guard,
        zone: None,
    };
    let tally = stream_tally(&req, &state, "session", format.as_str());
    let mut rows = records::open(pool, &KIND, &listing, output, tally).await?;
    let mut body = BytesMut::new();
    while let Some(chunk) = rows.next().await {
        match chunk {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(e) => return Err(ApiError::Internal(Box::new(e))),
        }
    }
    if format == OutputFormat::Json && body.ends_with(b"\n") {
        body.truncate(body.len() - 1);
    }
    Ok(response.body(body.freeze()))
}

/// `period`: `1d`, `7d`, `30d`, … (1 to 3660 days).
fn parse_period(text: &str) -> Result<Duration, ApiError> {
    text.strip_suffix('d')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| (1..=3660).contains(n))
        .map(Duration::days)
        .ok_or_else(|| {
            ApiError::InvalidRequest(
                "The parameter `period` must be a number of days from 1 to 3660 followed by \
                 `d` (e.g. `7d`)."
                    .into(),
            )
        })
}

/// `GET /api/v1/users/{user}/sessions` and `/api/v1/devices/{device}/sessions`:
/// newest first, over `period` (default `30d`) or `from`/`to`.
async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: &'static str,
) -> Result<HttpResponse, ApiError> {
    let reader = Reader::of(&req, &state)?;
    let scope = reader.scope;
    let query = ListingQuery::parse(req.query_string())?;
    let format = negotiate_format(&req, query.format.as_deref())?;
    let id = req.match_info().get(who).unwrap_or_default().to_owned();
    let period = query.single("period")?;
    let (from, to) = range_params(&query, "from", "to")?;
    if period.is_some() && (from.is_some() || to.is_some()) {
        return Err(ApiError::InvalidRequest(
            "Give either `period` or `from`/`to`, not both.".into(),
        ));
    }
    let (lower, upper) = match (from, to) {
        (None, None) => {
            let span = parse_period(period.unwrap_or("30d"))?;
            (Some(Utc::now() - span), None)
        }
        (from, to) => (from, to),
    };
    // Another organization's user or device is unknown here, exactly as
    // one never seen.
    let who_selection = reader.restrict(KIND.parse_filters(
        &[(who.to_owned(), id.clone())],
        scope.has(Grant::Identities),
    )?)?;
    let mut selection = filters(
        &query,
        &reader,
        &["period", "from", "to", "format", "sort", who],
    )?;
    selection
        .filters
        .extend(who_selection.filters.iter().cloned());
    selection.filters.sort_by_key(|(index, _)| *index);
    let pool = catch_up(&req, &state, &who_selection).await?;
    let known = Listing {
        direction: Direction::Descending,
        lower: None,
        upper: None,
        selection: who_selection,
        page: None,
        keyset: None,
        condition: None,
        seek: None,
    };
    if !records::exists(pool, &KIND, &known).await? {
        return Err(ApiError::Missing(format!(
            "No session of this {who} is known."
        )));
    }
    let listing = Listing {
        lower: lower.map(Bound::at_or_after),
        upper: upper.map(Bound::before),
        selection,
        ..known
    };
    let response = ok(format, &format!("{who}-sessions.csv"));
    let head = JsonHead::Paged {
        previous: None,
        next: None,
        total: None,
    };
    let resource = if who == "user" {
        "user_sessions"
    } else {
        "device_sessions"
    };
    stream(
        &req,
        &state,
        scope,
        (pool, &listing),
        head,
        resource,
        (response, format),
    )
    .await
}

/// The calendar entry colours, by status.
fn colour(status: &str) -> &'static str {
    match status {
        "open" => "#2e7d32",
        "stale" => "#f9a825",
        _ => "#607d8b",
    }
}

/// `GET /api/v1/devices/sessions/calendar?start=…&end=…`: one entry per
/// session with a device in the range (at most 92 days, 10,000 entries), in
/// the shape calendar widgets with resources take (FullCalendar: `id`,
/// `resourceId`, `start`, `end`, `title`, `color`, plus `tooltip` and
/// `status`). Open sessions end now; stale ones at their last update.
async fn calendar(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let reader = Reader::of(&req, &state)?;
    let scope = reader.scope;
    let query = ListingQuery::parse(req.query_string())?;
    let format = negotiate_format(&req, query.format.as_deref())?;
    if format != OutputFormat::Json {
        return Err(ApiError::NotAcceptable(
            "The calendar is served as application/json only.".into(),
        ));
    }
    let zone = crate::http::listing::zone_of(&query)?;
    let start = query
        .single("start")?
        .ok_or_else(|| ApiError::InvalidRequest("The parameter `start` is required.".into()))
        .and_then(|t| parse_instant_in("start", t, false, zone.as_ref()))?;
    let end = query
        .single("end")?
        .ok_or_else(|| ApiError::InvalidRequest("The parameter `end` is required.".into()))
        .and_then(|t| {
            // `end` is exclusive, as calendar widgets send it: a date means
            // its own midnight.
            parse_instant_in("end", t, false, zone.as_ref())
        })?;
    if end <= start || end - start > Duration::days(MAX_CALENDAR_DAYS) {
        return Err(ApiError::InvalidRequest(format!(
            "`end` must be after `start`, at most {MAX_CALENDAR_DAYS} days later."
        )));
    }
    let selection = filters(
        &query,
        &reader,
        &["start", "end", "format", "timeZone", "tz"],
    )?;
    let pool = catch_up(&req, &state, &selection).await?;
    let listing = Listing {
        direction: Direction::Ascending,
        lower: Some(Bound::at_or_after(start)),
        upper: Some(Bound::before(end)),
        selection,
        page: None,
        keyset: None,
        condition: Some("nullif(callingstationid, '') IS NOT NULL"),
        seek: None,
    };
    if req.method() == Method::HEAD {
        return Ok(head_only(ok(format, "calendar.json")));
    }
    let columns = format!(
        "radacctid, callingstationid, nullif(username, ''), host(nasipaddress), \
         nullif(calledstationid, ''), acctstarttime, \
         coalesce(acctstoptime, CASE WHEN ({status}) = 'stale' \
             THEN coalesce(acctupdatetime, acctstarttime) ELSE now() END), \
         {status}, nullif(acctterminatecause, ''), \
         coalesce(acctinputoctets, 0) + coalesce(acctoutputoctets, 0)",
        status = crate::kinds::session::STATUS_SQL
    );
    let rows = records::select(pool, &KIND, &listing, &columns, MAX_CALENDAR_ENTRIES + 1).await?;
    if rows.len() as i64 > MAX_CALENDAR_ENTRIES {
        return Err(ApiError::InvalidRequest(format!(
            "More than {MAX_CALENDAR_ENTRIES} sessions in this range: narrow it or filter."
        )));
    }
    let policy: IdentityPolicy =
        identity_policy(scope, listing.selection.tenant.as_deref(), &state);
    let mut writer = IdentityWriter::new(&policy);
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        let get = |e| ApiError::from(db::DbError::from(e));
        let id: i64 = row.try_get(0).map_err(get)?;
        let device: &str = row.try_get(1).map_err(get)?;
        let user: Option<&str> = row.try_get(2).map_err(get)?;
        let nas: String = row.try_get(3).map_err(get)?;
        let called: Option<String> = row.try_get(4).map_err(get)?;
        let from: Option<DateTime<Utc>> = row.try_get(5).map_err(get)?;
        let until: Option<DateTime<Utc>> = row.try_get(6).map_err(get)?;
        let status: String = row.try_get(7).map_err(get)?;
        let cause: Option<String> = row.try_get(8).map_err(get)?;
        let octets: i64 = row.try_get(9).map_err(get)?;
        let device = writer.show(IdentityType::Mac, device).as_str().to_owned();
        let user = user.map(|u| writer.show(IdentityType::RadiusUser, u).as_str().to_owned());
        let time = |t: Option<DateTime<Utc>>| {
            t.map(|t| match &zone {
                Some(zone) => zone.rfc3339(t),
                None => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
        };
        let title = match &called {
            Some(called) => format!("{nas} {called}"),
            None => nas.clone(),
        };
        let mut tooltip = format!("{status} session via NAS {nas}");
        if let Some(cause) = &cause {
            tooltip.push_str(&format!(", ended: {cause}"));
        }
        tooltip.push_str(&format!(", {octets} octets"));
        entries.push(json!({
            "id": id.to_string(),
            "resourceId": device,
            "start": time(from),
            "end": time(until),
            "title": title,
            "color": colour(&status),
            "tooltip": tooltip,
            "status": status,
            "userName": user,
        }));
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::VARY, "Accept"))
        .json(entries))
}

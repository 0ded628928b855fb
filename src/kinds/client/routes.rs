//! Wi-Fi client endpoints beyond the windows:
//!
//! - `GET /api/v1/clients/{client}/events`: one client's history, newest
//!   first, offset-paged in the shape of the Wi-Fi controller API it comes
//!   from (`previousLink`, `nextLink`, `totalCount`, `clientEvents`);
//! - `GET /api/v1/statistics/client-events/summary/{period}[/{datetime}]`:
//!   what a Wi-Fi administrator asks first about a window.

use actix_web::{http::Method, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};

use crate::http::{
    auth::require_for_kind,
    error::ApiError,
    listing::{base_url, head_only, identity_policy, negotiate_format, ok, streamed, ListingQuery},
    paging::page_links,
    resource::{get_or_head, get_resource},
    telemetry::stream_tally,
    AppState,
};
use crate::{
    core::{
        encode::JsonHead,
        kind::{Bound, Listing, Page},
        paging::{self, Place},
        scope::Grant,
        window::Direction,
    },
    db::records::{self, Output},
    kinds::client::{HISTORY_PATH, KIND},
};

/// The most records one history page may hold.
pub const MAX_LIMIT: i64 = 1000;
/// The page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 100;
/// The largest accepted `offset`.
pub const MAX_OFFSET: i64 = 10_000_000;
/// `fromtime`/`totime` bounds: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
const MIN_MILLIS: i64 = -62_135_596_800_000;
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// Registers the client routes. The summary routes come before the windows
/// of client events, whose `{period}/{datetime}` would otherwise take them.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_resource(HISTORY_PATH, get_or_head().to(history)));
    super::summary::configure(cfg);
}

/// The seed API's parameters, each at most once (`ssid` repeatable).
struct HistoryQuery {
    offset: i64,
    limit: i64,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    total: bool,
    /// The filters, as the kind's filter parameters.
    filters: Vec<(String, String)>,
}

fn parse_history_query(query: &ListingQuery) -> Result<HistoryQuery, ApiError> {
    let single = |name: &str| query.single(name);
    let integer = |name: &str, min: i64, max: i64, default: i64| -> Result<i64, ApiError> {
        Ok(query.integer(name, min, max)?.unwrap_or(default))
    };
    let millis = |name: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        single(name)?
            .map(|text| {
                text.parse::<i64>()
                    .ok()
                    .filter(|ms| (MIN_MILLIS..=MAX_MILLIS).contains(ms))
                    .and_then(DateTime::from_timestamp_millis)
                    .ok_or_else(|| {
                        ApiError::InvalidRequest(format!(
                            "The parameter `{name}` must be a time in milliseconds since \
                             1970-01-01T00:00:00Z, within the years 0001 to 9999."
                        ))
                    })
            })
            .transpose()
    };
    let total = match single("totalcountrequired")? {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "The parameter `totalcountrequired` must be true or false.".into(),
            ))
        }
    };
    let mut filters = Vec::new();
    for (param, filter) in [
        ("clienteventtype", "eventType"),
        ("failureoreventtypecode", "code"),
        ("eventcategory", "category"),
        ("protocol", "protocol"),
    ] {
        if let Some(value) = single(param)? {
            filters.push((filter.to_owned(), value.to_owned()));
        }
    }
    for (_, ssid) in query.pairs.iter().filter(|(k, _)| k == "ssid") {
        filters.push(("ssid".to_owned(), ssid.clone()));
    }
    Ok(HistoryQuery {
        offset: integer("offset", 0, MAX_OFFSET, 0)?,
        limit: integer("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)?,
        from: millis("fromtime")?,
        to: millis("totime")?,
        total,
        filters,
    })
}

/// The history's own URL with another `offset` (every other parameter kept,
/// in request order).
fn page_link(base: &str, client: &str, raw_query: &str, offset: i64) -> String {
    let path = HISTORY_PATH.replace(
        "{client}",
        &percent_encoding::utf8_percent_encode(client, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    );
    paging::link(
        base,
        &path,
        raw_query,
        ("offset", Some(&offset.to_string())),
        Place::First,
    )
}

/// `GET /api/v1/clients/{client}/events`.
async fn history(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (scope, tenancy) = require_for_kind(&req, &KIND, Grant::Read)?;
    let client = req
        .match_info()
        .get("client")
        .unwrap_or_default()
        .to_owned();
    let query = ListingQuery::parse(req.query_string())?;
    let history = parse_history_query(&query)?;
    let format = negotiate_format(&req, query.format.as_deref())?;

    // Another organization's client is unknown here, exactly as one never
    // seen.
    let mut who = KIND.parse_filters(
        &[("client".to_owned(), client.clone())],
        scope.has(Grant::Identities),
    )?;
    state.restrict(&mut who, &tenancy)?;
    let mut pairs = vec![("client".to_owned(), client.clone())];
    pairs.extend(history.filters.iter().cloned());
    let mut selection = KIND.parse_filters(&pairs, scope.has(Grant::Identities))?;
    state.restrict(&mut selection, &tenancy)?;
    let listing = Listing {
        direction: Direction::Descending,
        lower: history.from.map(|at| Bound {
            at,
            inclusive: true,
        }),
        upper: history.to.map(|at| Bound {
            at,
            inclusive: true,
        }),
        selection,
        page: Some(Page {
            offset: history.offset,
            limit: history.limit,
        }),
        keyset: None,
        condition: None,
        seek: None,
    };
    let known = Listing {
        lower: None,
        upper: None,
        selection: who,
        page: None,
        ..listing.clone()
    };
    let pool = state.read_pool().await;
    if !records::exists(pool, &KIND, &known).await? {
        return Err(ApiError::NotFound);
    }
    let total = if history.total {
        Some(records::count(pool, &KIND, &listing).await?)
    } else {
        None
    };

    let base = base_url(&req, state.public_url.as_deref());
    let previous = (history.offset > 0).then(|| {
        page_link(
            &base,
            &client,
            req.query_string(),
            (history.offset - history.limit).max(0),
        )
    });
    let next_offset = history.offset + history.limit;
    let next = match total {
        Some(total) if next_offset >= total => None,
        _ => Some(page_link(&base, &client, req.query_string(), next_offset)),
    };
    let mut response = ok(format, "client-events-history.csv");
    page_links(&mut response, previous.as_deref(), next.as_deref());
    if let Some(total) = total {
        response.insert_header(("X-Total-Count", total.to_string()));
    }
    if req.method() == Method::HEAD {
        return Ok(head_only(response));
    }
    let identities = identity_policy(scope, listing.selection.tenant.as_deref(), &state);
    let output = Output {
        format,
        head: JsonHead::Paged {
            previous: previous.as_deref(),
            next: next.as_deref(),
            total,
        },
        identities: &identities,
        guard: state.options.csv_formula_guard,
        zone: None,
    };
    let tally = stream_tally(&req, &state, "client_history", format.as_str());
    let stream = records::open(pool, &KIND, &listing, output, tally).await?;
    Ok(streamed(&req, &state, response, stream))
}

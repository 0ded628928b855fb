//! The accounting reports:
//!
//! - `GET /api/v1/accounting/report[/{yyyy-MM}]`: monthly unique users per
//!   authentication method type and in total (default: the previous month);
//! - `GET /api/v1/accounting/verify/daily-users/{yyyy-MM}`: unique users per
//!   day and method type;
//! - `GET /api/v1/accounting/verify/events/{yyyy-MM-dd}`: the day's events,
//!   streamed like the event-details API.
//!
//! The first two read only the usage rollups (see [`super::store`]).

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;

use super::{
    report::{accounting_report_file, daily_users_file, day_events_file, ReportDay, ReportMonth},
    store,
};
use crate::http::{
    auth::require_for_kind,
    error::ApiError,
    listing::{base_url, identity_policy, negotiate_format, ok},
    paging::link_header,
    AppState,
};
use crate::{
    core::{
        encode::JsonHead,
        kind::{Listing, Selection},
        negotiate::OutputFormat,
        scope::Grant,
        window::{Direction, Period, Window},
    },
    db::{self, records::Output},
};

pub use crate::http::options::ReportOptions;

/// Registers the report routes (one resource per template, so that logs and
/// metrics name the template that matched).
pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::http::resource::{get_or_head, get_resource};
    for path in [
        "/api/v1/accounting/report",
        "/api/v1/accounting/report/{month}",
    ] {
        cfg.service(get_resource(path, get_or_head().to(accounting_report)));
    }
    cfg.service(get_resource(
        "/api/v1/accounting/verify/daily-users/{month}",
        get_or_head().to(daily_users),
    ))
    .service(get_resource(
        "/api/v1/accounting/verify/events/{day}",
        get_or_head().to(day_events),
    ));
}

/// The query parameters the reports understand; others are ignored.
#[derive(Debug, Deserialize)]
struct ReportQuery {
    format: Option<String>,
    tz: Option<String>,
}

/// Chooses the representation from `format=` or `Accept`; `tz` is refused
/// (the rollups and their figures are by UTC day).
fn representation(req: &HttpRequest) -> Result<OutputFormat, ApiError> {
    let query = web::Query::<ReportQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::InvalidRequest(format!("Malformed query string: {e}.")))?;
    crate::http::listing::refuse_zone(query.tz.as_deref())?;
    negotiate_format(req, query.format.as_deref())
}

/// The caller's grants and the organizations a report of theirs counts:
/// its own for a caller of one (row security binds its read too), those
/// `tenant=` names for the operator, else every one.
struct Organizations {
    scope: crate::core::scope::Scope,
    selection: Selection,
    /// The organizations whose figures are summed (`None`: every one):
    /// the caller's own (unless a test leaves it to row security alone),
    /// or those `tenant=` names.
    tenants: Option<Vec<String>>,
}

impl Organizations {
    fn of(req: &HttpRequest, state: &AppState) -> Result<Organizations, ApiError> {
        let (scope, tenancy) = require_for_kind(req, &super::KIND, Grant::Read)?;
        let query = crate::http::listing::ListingQuery::parse(req.query_string())?;
        let selection = state.organizations(&super::KIND, &query.pairs, &tenancy)?;
        let tenants = selection.organizations();
        Ok(Organizations {
            scope,
            selection,
            tenants,
        })
    }

    /// Whose figures a report counts: the caller's organization's, those
    /// `tenant=` names, else every one's (`None`).
    fn counted(&self) -> store::Counted<'_> {
        store::Counted {
            tenants: self.tenants.as_deref(),
            reader: self.selection.tenant.as_deref(),
        }
    }
}

fn month_param(req: &HttpRequest) -> Result<Option<ReportMonth>, ApiError> {
    req.match_info()
        .get("month")
        .map(ReportMonth::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

/// `GET /api/v1/accounting/report[/{yyyy-MM}]`.
async fn accounting_report(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let organizations = Organizations::of(&req, &state)?;
    let month = match month_param(&req)? {
        Some(month) => month,
        None => ReportMonth::previous(Utc::now()).ok_or_else(|| {
            ApiError::InvalidRequest("There is no previous month to report on.".into())
        })?,
    };
    let format = representation(&req)?;
    let report = store::accounting_report(
        &state.pool,
        month,
        organizations.counted(),
        &state.pseudonymiser.rollup_keys(),
        &state.options.metrics,
    )
    .await?;
    let prefix = &state.options.reports.filename_prefix;
    Ok(ok(format, &accounting_report_file(prefix, month))
        .body(report.encode(format, state.options.csv_formula_guard)))
}

/// `GET /api/v1/accounting/verify/daily-users/{yyyy-MM}`.
async fn daily_users(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let organizations = Organizations::of(&req, &state)?;
    let month = month_param(&req)?.ok_or(ApiError::NotFound)?;
    let format = representation(&req)?;
    let report = store::daily_users(
        &state.pool,
        month,
        organizations.counted(),
        &state.pseudonymiser.rollup_keys(),
        &state.options.metrics,
    )
    .await?;
    let prefix = &state.options.reports.filename_prefix;
    Ok(ok(format, &daily_users_file(prefix, month))
        .body(report.encode(format, state.options.csv_formula_guard)))
}

/// `GET /api/v1/accounting/verify/events/{yyyy-MM-dd}`: the day's events,
/// oldest first, streamed exactly like `/api/v1/statistics/events/day/{date}`
/// (same representations and links, which point at that canonical window).
async fn day_events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Organizations {
        scope, selection, ..
    } = Organizations::of(&req, &state)?;
    let day = ReportDay::parse(req.match_info().get("day").unwrap_or_default())
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let window = Window::parse(Period::Day, &day.to_string(), Direction::Ascending)
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let format = representation(&req)?;
    // The canonical window's links, with the organizations asked for.
    let links = window
        .links_under(
            &base_url(&req, state.public_url.as_deref()),
            super::KIND.path,
            &super::KIND.link_query(None, &selection),
        )
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let tally =
        crate::http::telemetry::stream_tally(&req, &state, "verify_events", format.as_str());
    let identities = identity_policy(scope, selection.tenant.as_deref(), &state);
    let output = Output {
        format,
        head: JsonHead::Links(&links),
        identities: &identities,
        guard: state.options.csv_formula_guard,
        zone: None,
    };
    let listing = Listing::window(&window, selection);
    let pool = state.window_pool().await;
    let stream = db::records::open(pool, &super::KIND, &listing, output, tally).await?;
    let prefix = &state.options.reports.filename_prefix;
    let mut response = ok(format, &day_events_file(prefix, day));
    response.insert_header((header::LINK, link_header(&links)));
    Ok(crate::http::listing::streamed(
        &req, &state, response, stream,
    ))
}

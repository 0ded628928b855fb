//! The accounting reports:
//!
//! - `GET /api/v1/accounting/report[/{yyyy-MM}]`: monthly unique users per
//!   authentication method type and in total (default: the previous month);
//! - `GET /api/v1/accounting/verify/daily-users/{yyyy-MM}`: unique users per
//!   day and method type;
//! - `GET /api/v1/accounting/verify/events/{yyyy-MM-dd}`: the day's events,
//!   streamed like the event-details API.
//!
//! The first two read only the usage rollups (see [`crate::db::reports`]).

use actix_web::{
    http::header::{self, HeaderValue},
    web, HttpRequest, HttpResponse, HttpResponseBuilder,
};
use chrono::Utc;
use serde::Deserialize;

use super::{
    auth::require_token,
    error::ApiError,
    events::{base_url, link_header, negotiate_format},
    AppState,
};
use crate::{
    core::{
        negotiate::OutputFormat,
        report::{FilenamePrefix, ReportDay, ReportMonth},
        window::{Direction, Period, Window},
    },
    db,
};

/// Settings of the report endpoints.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Prefix of the CSV download file names
    /// (`ACCTSTREAM_REPORT_FILENAME_PREFIX`).
    pub filename_prefix: FilenamePrefix,
}

/// Registers the report routes (one resource per template, so that logs and
/// metrics name the template that matched).
pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::startup::get_resource;
    for path in [
        "/api/v1/accounting/report",
        "/api/v1/accounting/report/{month}",
    ] {
        cfg.service(get_resource(path, web::get().to(accounting_report)));
    }
    cfg.service(get_resource(
        "/api/v1/accounting/verify/daily-users/{month}",
        web::get().to(daily_users),
    ))
    .service(get_resource(
        "/api/v1/accounting/verify/events/{day}",
        web::get().to(day_events),
    ));
}

/// The query parameters the reports understand; others are ignored.
#[derive(Debug, Deserialize)]
struct ReportQuery {
    format: Option<String>,
}

/// Chooses the representation from `format=` or `Accept`.
fn representation(req: &HttpRequest) -> Result<OutputFormat, ApiError> {
    let query = web::Query::<ReportQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::InvalidRequest(format!("Malformed query string: {e}.")))?;
    negotiate_format(req, query.format.as_deref())
}

fn month_param(req: &HttpRequest) -> Result<Option<ReportMonth>, ApiError> {
    req.match_info()
        .get("month")
        .map(ReportMonth::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

fn db_error(e: db::reports::ReportError) -> ApiError {
    if e.is_unavailable() {
        ApiError::Unavailable(Box::new(e))
    } else {
        ApiError::Internal(Box::new(e))
    }
}

/// A 200 with the negotiated type, `Vary: Accept`, and for CSV an
/// attachment named `file_name`.
fn ok(format: OutputFormat, file_name: &str) -> HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response
        .content_type(format.content_type())
        .insert_header((header::VARY, "Accept"));
    if format == OutputFormat::Csv {
        // The prefix is restricted to [A-Za-z0-9._-]: the value is valid.
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
            response.insert_header((header::CONTENT_DISPOSITION, value));
        }
    }
    response
}

/// `GET /api/v1/accounting/report[/{yyyy-MM}]`.
async fn accounting_report(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_token(&req, &state.tokens)?;
    let month = match month_param(&req)? {
        Some(month) => month,
        None => ReportMonth::previous(Utc::now()).ok_or_else(|| {
            ApiError::InvalidRequest("There is no previous month to report on.".into())
        })?,
    };
    let format = representation(&req)?;
    let report = db::reports::accounting_report(&state.pool, month)
        .await
        .map_err(db_error)?;
    let prefix = &state.options.reports.filename_prefix;
    Ok(ok(format, &prefix.accounting_report(month)).body(report.encode(format)))
}

/// `GET /api/v1/accounting/verify/daily-users/{yyyy-MM}`.
async fn daily_users(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_token(&req, &state.tokens)?;
    let month = month_param(&req)?.ok_or(ApiError::NotFound)?;
    let format = representation(&req)?;
    let report = db::reports::daily_users(&state.pool, month)
        .await
        .map_err(db_error)?;
    let prefix = &state.options.reports.filename_prefix;
    Ok(ok(format, &prefix.daily_users(month)).body(report.encode(format)))
}

/// `GET /api/v1/accounting/verify/events/{yyyy-MM-dd}`: the day's events,
/// oldest first, streamed exactly like `/api/v1/statistics/events/day/{date}`
/// (same representations and links, which point at that canonical window).
async fn day_events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_token(&req, &state.tokens)?;
    let day = ReportDay::parse(req.match_info().get("day").unwrap_or_default())
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let window = Window::parse(Period::Day, &day.to_string(), Direction::Ascending)
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let format = representation(&req)?;
    let links = window
        .links(&base_url(&req, state.public_url.as_deref()))
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let tally = super::telemetry::stream_tally(&req, &state, "verify_events", format.as_str());
    let stream = db::events::open(
        &state.pool,
        &window,
        format,
        &links,
        &state.pseudonymiser,
        tally,
    )
    .await?;
    let prefix = &state.options.reports.filename_prefix;
    Ok(ok(format, &prefix.day_events(day))
        .insert_header((header::LINK, link_header(&links)))
        .streaming(stream))
}

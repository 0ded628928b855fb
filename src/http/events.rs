//! `GET /api/v1/statistics/events/{period}[/{datetime}]`: one window of
//! authentication events, streamed as JSON or CSV.

use actix_web::{
    http::header::{self, HeaderValue},
    web, HttpRequest, HttpResponse,
};
use chrono::Utc;
use serde::Deserialize;

use super::{auth::require_token, error::ApiError, telemetry::stream_tally, AppState};
use crate::{
    core::{
        negotiate::{negotiate, NegotiationError, OutputFormat},
        window::{Direction, NavigationLinks, Period, Window},
    },
    db::events,
};

/// Registers the event-details routes (one resource per template, so that
/// logs and metrics name the template that matched).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in [
        "/api/v1/statistics/events/{period}",
        "/api/v1/statistics/events/{period}/{datetime}",
    ] {
        cfg.service(super::startup::get_resource(path, web::get().to(events)));
    }
}

/// The query parameters this endpoint understands; others are ignored.
#[derive(Debug, Deserialize)]
struct EventsQuery {
    sort: Option<String>,
    format: Option<String>,
}

/// The handler: authenticate, resolve the window, negotiate, open the query,
/// then stream. Everything that can fail happens before the first byte.
pub async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_token(&req, &state.tokens)?;
    let period: Period = req
        .match_info()
        .get("period")
        .unwrap_or_default()
        .parse()
        .map_err(|e: crate::core::window::InvalidPeriod| ApiError::InvalidRequest(e.to_string()))?;
    let query: EventsQuery = serde_urlencoded_query(req.query_string())?;
    let direction = Direction::from_sort(query.sort.as_deref());
    let window = match req.match_info().get("datetime") {
        Some(datetime) => Window::parse(period, datetime, direction),
        None => Window::latest(period, direction, Utc::now()),
    }
    .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let format = negotiate_format(&req, query.format.as_deref())?;
    let links = window
        .links(&base_url(&req, state.public_url.as_deref()))
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;

    let tally = stream_tally(&req, &state, "events", format.as_str());
    let stream = events::open(
        &state.pool,
        &window,
        format,
        &links,
        &state.pseudonymiser,
        tally,
    )
    .await?;

    let mut response = HttpResponse::Ok();
    response
        .content_type(format.content_type())
        .insert_header((header::VARY, "Accept"))
        .insert_header((header::LINK, link_header(&links)));
    if format == OutputFormat::Csv {
        response.insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.csv\"", window.file_stem()),
        ));
    }
    Ok(response.streaming(stream))
}

/// Parses the query string; a malformed one (e.g. a repeated parameter or a
/// broken percent-escape) is a 400.
fn serde_urlencoded_query(raw: &str) -> Result<EventsQuery, ApiError> {
    web::Query::<EventsQuery>::from_query(raw)
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::InvalidRequest(format!("Malformed query string: {e}.")))
}

/// Chooses the representation from `format=` or the `Accept` headers.
pub fn negotiate_format(req: &HttpRequest, format: Option<&str>) -> Result<OutputFormat, ApiError> {
    let mut accept = Vec::new();
    for value in req.headers().get_all(header::ACCEPT) {
        // A header with bytes outside visible ASCII cannot name our types.
        accept.push(value.to_str().unwrap_or("invalid/invalid"));
    }
    negotiate(format, &accept).map_err(|e| match e {
        NegotiationError::InvalidFormatParam => ApiError::InvalidRequest(e.to_string()),
        NegotiationError::NotAcceptable => ApiError::NotAcceptable(e.to_string()),
    })
}

/// The base of every link: `ACCTSTREAM_PUBLIC_URL` when set, else `http://`
/// and the request's `Host` (when it is a plausible host[:port]), else the
/// address the server listens on.
pub fn base_url(req: &HttpRequest, public_url: Option<&str>) -> String {
    if let Some(url) = public_url {
        return url.to_owned();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_plausible_host(h))
        .map(str::to_owned)
        .unwrap_or_else(|| req.app_config().host().to_owned());
    format!("http://{host}")
}

fn is_plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// The RFC 8288 `Link` header with the three navigation links.
pub fn link_header(links: &NavigationLinks) -> HeaderValue {
    let value = format!(
        "<{}>; rel=\"self\", <{}>; rel=\"prev\", <{}>; rel=\"next\"",
        links.self_link, links.prev, links.next
    );
    // Links are built from a checked host or the configured URL plus our own
    // path, all visible ASCII; fall back to nothing rather than panic.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

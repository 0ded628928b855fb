//! `GET /api/v1/statistics/client-events/summary/{period}[/{datetime}]`:
//! the Wi-Fi client-event summary of one window (counts by event type, top
//! failure reasons, success rate per SSID and per AP), as JSON, CSV or NDJSON.

use actix_web::{http::header, web, HttpRequest, HttpResponse};

use super::KIND;
use crate::core::kind::{Listing, TENANT_PARAM};
use crate::core::scope::Grant;
use crate::http::{
    auth::require_for_kind,
    error::ApiError,
    listing::{base_url, negotiate_format, ok, window_of},
    paging::link_header,
    resource::{get_or_head, get_resource},
    AppState,
};

/// The path of the summaries (followed by `/{period}[/{datetime}]`).
pub const SUMMARY_PATH: &str = "/api/v1/statistics/client-events/summary";

/// Registers the summary routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in [
        format!("{SUMMARY_PATH}/{{period}}"),
        format!("{SUMMARY_PATH}/{{period}}/{{datetime}}"),
    ] {
        cfg.service(get_resource(&path, get_or_head().to(summary)));
    }
}

async fn summary(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (_, tenancy) = require_for_kind(&req, &KIND, Grant::Read)?;
    let (window, query) = window_of(&req, state.public_url.as_deref(), SUMMARY_PATH)?;
    let format = negotiate_format(&req, query.format.as_deref())?;
    // The summary takes no filter but the organizations (`tenant=`).
    let tenants: Vec<(String, String)> = query
        .pairs
        .iter()
        .filter(|(k, _)| k == TENANT_PARAM)
        .cloned()
        .collect();
    let mut selection = KIND.parse_filters(&tenants, false)?;
    state.restrict(&mut selection, &tenancy)?;
    let link_query = KIND.link_query(query.format.as_ref().map(|_| format.as_str()), &selection);
    let links = window
        .links_under(
            &base_url(&req, state.public_url.as_deref()),
            SUMMARY_PATH,
            &link_query,
        )
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let listing = Listing::window(&window, selection);
    let header = link_header(&links);
    let summary = super::store::client_summary(state.read_pool().await, &listing, links).await?;
    Ok(ok(
        format,
        &format!("{}.csv", window.file_stem_for("client-events-summary")),
    )
    .insert_header((header::LINK, header))
    .body(summary.encode(format, state.options.csv_formula_guard)))
}

//! `GET /dashboard/` (issue 26): one page of charts over the public API,
//! served by the service itself with everything it loads (the page, its
//! script and style, and the vendored uPlot under `static/dashboard/`, see
//! its `VENDORED`), compiled into the binary. Nothing is fetched from
//! another origin, and the page's security policy says so.

use actix_web::{
    http::header::{self, CacheControl, CacheDirective},
    web, HttpRequest, HttpResponse,
};

use super::{
    error::ApiError,
    resource::{get_or_head, get_resource},
};

/// The dashboard's security policy: everything from this origin only.
pub const DASHBOARD_CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One file of the dashboard.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../static/dashboard/", $name)),
        }
    };
}

/// Every file under `/dashboard/`, by name (the page itself at `/dashboard/`).
const ASSETS: &[Asset] = &[
    asset!("dashboard.js", "text/javascript; charset=utf-8"),
    asset!("dashboard.css", "text/css; charset=utf-8"),
    asset!("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    asset!("uPlot.min.css", "text/css; charset=utf-8"),
    asset!("uPlot.LICENSE", "text/plain; charset=utf-8"),
    asset!("VENDORED", "text/plain; charset=utf-8"),
];

/// The page.
const INDEX_HTML: &[u8] = include_bytes!("../../static/dashboard/index.html");

/// Registers `/dashboard`, `/dashboard/` and its files.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_resource("/dashboard", get_or_head().to(slash)))
        .service(get_resource("/dashboard/", get_or_head().to(index)))
        .service(get_resource("/dashboard/{asset}", get_or_head().to(asset)));
}

/// The page's relative links need the trailing slash.
async fn slash() -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, "/dashboard/"))
        .finish()
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header((header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(INDEX_HTML)
}

async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("asset").unwrap_or_default();
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or(ApiError::NotFound)?;
    // Our own files change with the service; uPlot only with its version.
    let cache = if asset.name.starts_with("dashboard.") {
        CacheControl(vec![CacheDirective::NoCache])
    } else {
        CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(7 * 24 * 3600),
        ])
    };
    Ok(HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header(cache)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(asset.body))
}

/// Names of the files served under `/dashboard/{asset}` (for the tests).
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

/// The page (for the tests).
pub fn index_html() -> &'static [u8] {
    INDEX_HTML
}

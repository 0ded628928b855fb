//! `GET /dashboard/` (issue 26): one page of charts over the public API,
//! served by the service itself with everything it loads (the page, its
//! script and style, and the vendored uPlot under `static/dashboard/`, see
//! its `VENDORED`), compiled into the binary. Nothing is fetched from
//! another origin, and the page's security policy says so.

use actix_web::{http::header, web, HttpRequest, HttpResponse};

use super::{
    assets::{embedded, no_cache, serve, Asset},
    error::ApiError,
    resource::{get_or_head, get_resource},
};

/// The dashboard's security policy: everything from this origin only.
pub const DASHBOARD_CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Every file under `/dashboard/`, by name (the page itself at `/dashboard/`).
const ASSETS: &[Asset] = &[
    embedded!(
        "dashboard",
        "dashboard.js",
        "text/javascript; charset=utf-8"
    ),
    embedded!("dashboard", "dashboard.css", "text/css; charset=utf-8"),
    embedded!(
        "dashboard",
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8"
    ),
    embedded!("dashboard", "uPlot.min.css", "text/css; charset=utf-8"),
    embedded!("dashboard", "uPlot.LICENSE", "text/plain; charset=utf-8"),
    embedded!("dashboard", "VENDORED", "text/plain; charset=utf-8"),
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
        .insert_header(no_cache())
        .insert_header((header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(INDEX_HTML)
}

/// Our own files change with the service; uPlot's only with its version.
async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, ASSETS, |name| name.starts_with("dashboard."))
}

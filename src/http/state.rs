//! What every handler shares: the application state and the helper that
//! registers a read-only resource. Handlers import this module, never
//! `startup` (which only wires the routes).

use actix_web::{guard, web, HttpResponse, Route};

use super::error::ApiError;
use crate::{config::ApiTokens, core::pseudonym::Pseudonymiser};

/// What every handler needs.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The connection pools (one per HTTP worker; `state.pool` derefs to
    /// the calling worker's).
    pub pool: crate::db::pool::Pools,
    /// Keyed pseudonymisation of identities.
    pub pseudonymiser: Pseudonymiser,
    /// Bearer tokens allowed to use the API.
    pub tokens: ApiTokens,
    /// Base URL for links, when configured (no trailing slash).
    pub public_url: Option<String>,
    /// Everything else, with defaults (add new settings here).
    pub options: AppOptions,
}

/// Settings of the HTTP layer beyond the essentials. `Default` gives what
/// `serve` uses when nothing is configured, so tests set only what they test.
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// Levels of the gzip and zstd compression of streamed bodies.
    pub compression: crate::core::compress::Levels,
    /// What this process knows to be in the identity directory (RADIUS
    /// ingest skips writing it again).
    pub directory: std::sync::Arc<crate::db::directory::Recorded>,
    /// The metrics every worker records into and `/metrics` shows.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// `/metrics` protection and the shutdown grace period.
    pub ops: super::ops::OpsOptions,
    /// The report endpoints' settings.
    pub reports: super::reports::ReportOptions,
    /// The ingest endpoint's settings (body size limit).
    pub ingest: super::IngestOptions,
    /// What CSV bodies do with formula-like text (`ACCTSTREAM_CSV_FORMULA_GUARD`).
    pub csv_formula_guard: crate::core::encode::FormulaGuard,
    /// Origins browsers may call the API from (`ACCTSTREAM_CORS_ORIGINS`,
    /// checked by `config::parse_cors_origins`); empty: no CORS.
    pub cors_origins: Vec<String>,
    /// OAuth2 access tokens, when an issuer is configured.
    pub oauth: Option<std::sync::Arc<super::jwks::OAuth>>,
    /// Per-client request-rate and stream limits (off by default).
    pub limits: std::sync::Arc<crate::core::limits::Limits>,
    /// Where audited requests leave their entries (`None`: not audited).
    pub audit: Option<crate::db::audit::AuditSink>,
}

/// A route answering GET and HEAD (a HEAD gets the GET's status and headers
/// and no body).
pub fn get_or_head() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The methods of a read-only resource.
pub const GET_ALLOW: &str = "GET, HEAD, OPTIONS";
/// The methods of an ingest resource.
pub const POST_ALLOW: &str = "POST, OPTIONS";

/// A resource at `path` answering with `handler` (made with
/// [`get_or_head`]), `OPTIONS` with 204 and `Allow`, and 405
/// `method_not_allowed` (with `Allow`) to any other method.
pub fn get_resource(path: &str, handler: Route) -> actix_web::Resource {
    web::resource(path)
        .route(handler)
        .route(
            web::route()
                .guard(guard::Options())
                .to(|| options(GET_ALLOW)),
        )
        .default_service(web::to(|| not_allowed(GET_ALLOW)))
}

/// The answer to `OPTIONS` (without CORS preflight headers): the methods.
pub async fn options(allow: &'static str) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((actix_web::http::header::ALLOW, allow))
        .finish()
}

/// The answer for a known path with an unsupported method.
pub async fn not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow })
}

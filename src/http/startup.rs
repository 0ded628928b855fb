//! Building and starting the HTTP server. `main` and the tests share
//! [`run`] and [`routes`], so tests exercise exactly what production serves.

use std::net::TcpListener;

use actix_web::{dev::Server, middleware, web, App, HttpResponse, HttpServer};
use deadpool_postgres::Pool;

use super::{error::ApiError, events};
use crate::{config::ApiTokens, core::pseudonym::Pseudonymiser};

/// What every handler needs.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The connection pool.
    pub pool: Pool,
    /// Keyed pseudonymisation of user IDs.
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
    /// The metrics every worker records into and `/metrics` shows.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// `/metrics` protection and the shutdown grace period.
    pub ops: super::ops::OpsOptions,
    /// The report endpoints' settings.
    pub reports: super::reports::ReportOptions,
    /// The ingest endpoint's settings (body size limit).
    pub ingest: super::IngestOptions,
}

/// Registers every route of the API; each endpoint module adds its own.
pub fn routes(cfg: &mut web::ServiceConfig) {
    events::configure(cfg);
    super::ingest::configure(cfg);
    super::docs::configure(cfg);
    super::ops::configure(cfg);
    super::reports::configure(cfg);
}

/// A resource at `path` answering GET with `handler`, and 405 `method_not_allowed`
/// (with `Allow: GET`) to any other method.
pub fn get_resource(path: &str, handler: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(handler)
        .default_service(web::to(get_only))
}

/// The answer for a known path with an unsupported method.
async fn get_only() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "GET" })
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// Starts serving on `listener` (bind port 0 in tests). The returned server
/// runs until it is awaited to completion or stopped through its handle;
/// a graceful stop lets in-flight responses finish for up to
/// `options.ops.shutdown_grace`. Signals are the caller's business (see
/// [`super::ops::stop_on_signals`]), so tests never install handlers.
///
/// Responses are compressed when the client asks (`Accept-Encoding`), and
/// every request is logged and counted once its body is done.
pub fn run(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    super::docs::init()?;
    let grace = state.options.ops.shutdown_grace;
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::Compress::default())
            .wrap(middleware::from_fn(super::telemetry::middleware))
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(grace.as_secs())
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

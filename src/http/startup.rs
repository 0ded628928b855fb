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
pub struct AppOptions {}

/// Registers every route of the API; each endpoint module adds its own.
pub fn routes(cfg: &mut web::ServiceConfig) {
    events::configure(cfg);
}

/// The answer for a known path with an unsupported method.
pub async fn get_only() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "GET" })
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// Starts serving on `listener` (bind port 0 in tests). The returned server
/// runs until it is awaited to completion; it stops on SIGINT/SIGTERM,
/// letting in-flight responses finish for up to 30 seconds.
pub fn run(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::Logger::new(r#"%a "%r" %s %b %Dms"#))
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .listen(listener)?
    .run();
    Ok(server)
}

//! Building and starting the HTTP server. `main` and the tests share
//! [`run`] and [`routes`], so tests exercise exactly what production serves.

use std::net::TcpListener;

use actix_web::{dev::Server, middleware, web, App, HttpResponse, HttpServer};

use super::{error::ApiError, listing, AppState};

/// Registers every route of the API; each endpoint module adds its own.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // Before the windows: `client-events/summary/{period}` would otherwise
    // match `client-events/{period}/{datetime}`.
    super::clients::configure(cfg);
    listing::configure(cfg);
    super::ingest::configure(cfg);
    super::docs::configure(cfg);
    super::ops::configure(cfg);
    super::reports::configure(cfg);
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
            .wrap(middleware::from_fn(super::error::json_error_bodies))
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

//! Building and starting the HTTP server. `main` and the tests share
//! [`run`] and [`routes`], so tests exercise exactly what production serves.

use std::net::TcpListener;

use actix_web::{dev::Server, middleware, web, App, HttpResponse, HttpServer};

use super::{error::ApiError, listing, AppState};
use crate::registry::Registry;

/// Registers every route of the API: each kind's own routes, then the
/// windows and ingest route of every kind, then documentation and
/// operations.
pub fn routes(cfg: &mut web::ServiceConfig, kinds: Registry) {
    // Before the windows: `client-events/summary/{period}` would otherwise
    // match `client-events/{period}/{datetime}`.
    for entry in kinds.entries() {
        if let Some(routes) = entry.routes {
            routes(cfg);
        }
    }
    // Before the windows too: `changes` and `counts` are not a `{period}`.
    super::changes::configure(cfg, kinds);
    super::counts::configure(cfg, kinds);
    listing::configure(cfg, kinds);
    super::ingest::configure(cfg, kinds);
    super::docs::configure(cfg);
    super::dashboard::configure(cfg);
    super::ops::configure(cfg);
}

/// CORS for browsers on `origins` (checked by `config::parse_cors_origins`;
/// `*` allows any): preflight requests are answered, the API's request
/// headers allowed, and `Link`, `Content-Disposition` and `X-Request-Id`
/// exposed to scripts.
fn cors(origins: &[String]) -> actix_cors::Cors {
    use actix_web::http::header;
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "HEAD", "POST", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::ACCEPT,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            super::telemetry::X_REQUEST_ID.clone(),
        ])
        .expose_headers([
            header::LINK,
            header::CONTENT_DISPOSITION,
            super::telemetry::X_REQUEST_ID.clone(),
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
        ])
        .max_age(3600);
    for origin in origins {
        cors = if origin == "*" {
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(origin)
        };
    }
    cors
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// Middleware before the compression layer: when the client accepts several
/// codings, it gets the fastest of them (`core::negotiate::fastest_coding`):
/// the compression layer otherwise takes the client's first, and a
/// download's speed is the compressor's. On the way back it removes the
/// `Content-Encoding: identity` with which a handler kept the compression
/// layer off a body (`listing::streamed`): `identity` is no content coding
/// to name in a response (RFC 9110, 12.5.3).
async fn fastest_coding(
    mut req: actix_web::dev::ServiceRequest,
    next: middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let header = actix_web::http::header::ACCEPT_ENCODING;
    let mut offered = String::new();
    for value in req.headers().get_all(&header) {
        if let Ok(text) = value.to_str() {
            if !offered.is_empty() {
                offered.push(',');
            }
            offered.push_str(text);
        }
    }
    if let Some(coding) = crate::core::negotiate::fastest_coding(&offered) {
        // A refusal of uncompressed bodies stays with the coding.
        let value = if crate::core::negotiate::identity_refused(&offered) {
            actix_web::http::header::HeaderValue::from_str(&format!("{coding}, identity;q=0"))
        } else {
            Ok(actix_web::http::header::HeaderValue::from_static(coding))
        };
        if let Ok(value) = value {
            req.headers_mut().insert(header, value);
        }
    }
    let mut response = next.call(req).await?;
    let content_encoding = actix_web::http::header::CONTENT_ENCODING;
    if response
        .headers()
        .get(&content_encoding)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        response.headers_mut().remove(&content_encoding);
    }
    Ok(response)
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
    let origins = state.options.cors_origins.clone();
    // One HTTP worker per connection pool (see `db::pool::Pools`).
    let workers = state.pool.len();
    let kinds = state.kinds;
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::Compress::default())
            .wrap(middleware::from_fn(super::auth::middleware))
            .wrap(middleware::from_fn(fastest_coding))
            .wrap(middleware::Condition::new(
                !origins.is_empty(),
                cors(&origins),
            ))
            .wrap(middleware::from_fn(super::error::json_error_bodies))
            .wrap(middleware::from_fn(super::telemetry::middleware))
            .configure(|cfg| routes(cfg, kinds))
            .default_service(web::to(not_found))
    })
    // No Nagle: the last small segment of a streamed response must not wait
    // for the client's delayed ACK (40 ms per small window otherwise); the
    // encoder already writes in ~32 KiB chunks.
    .on_connect(|connection, _| {
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .workers(workers)
    .shutdown_timeout(grace.as_secs())
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

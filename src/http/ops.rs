//! Operations endpoints: `GET /healthz` (the process answers), `GET /readyz`
//! (the database answers and is migrated) and `GET /metrics` (Prometheus),
//! plus graceful shutdown on SIGTERM/SIGINT.
//!
//! None of them needs an API token; `/metrics` needs its own token when
//! `ACCTSTREAM_METRICS_TOKEN` is set.

use std::time::Duration;

use actix_web::{
    dev::ServerHandle,
    http::header::{self, CacheControl, CacheDirective},
    web, HttpRequest, HttpResponse,
};
use serde::Serialize;

pub use super::options::{MetricsToken, OpsOptions, DEFAULT_SHUTDOWN_GRACE};
use super::{
    error::ApiError,
    resource::{get_or_head, get_resource},
    AppState,
};
use crate::{db, metrics::PoolSample};

/// How long `/readyz` may take before it answers 503.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Registers `/healthz`, `/readyz` and `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, handler) in [
        ("/healthz", get_or_head().to(healthz)),
        ("/readyz", get_or_head().to(readyz)),
        ("/metrics", get_or_head().to(metrics)),
    ] {
        cfg.service(get_resource(path, handler));
    }
}

/// The body of a healthy `/healthz` or `/readyz`.
#[derive(Debug, Serialize)]
struct Status {
    status: &'static str,
}

fn ok() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(Status { status: "ok" })
}

/// The pool's use, in the `/readyz` body.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PoolUse {
    size: usize,
    available: usize,
    max_size: usize,
    waiting: usize,
}

/// The background catch-up of the identity directory, in the `/readyz`
/// body: `idle` (none runs), `catchingUp` (its first pass since start-up:
/// lookups by pseudonym of rows others wrote may be incomplete, and say
/// so) or `caughtUp`, and the rows it has read.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DirectoryUse {
    state: &'static str,
    rows_read: u64,
}

impl DirectoryUse {
    fn of(progress: &db::directory::Progress) -> DirectoryUse {
        use db::directory::CatchUpState;
        DirectoryUse {
            state: match progress.state() {
                CatchUpState::Idle => "idle",
                CatchUpState::CatchingUp => "catchingUp",
                CatchUpState::CaughtUp => "caughtUp",
            },
            rows_read: progress.rows(),
        }
    }
}

/// `{"status":"ok","pool":{…},"directory":{…}}`.
fn ready(pool: PoolUse, directory: DirectoryUse) -> HttpResponse {
    #[derive(serde::Serialize)]
    struct Ready {
        status: &'static str,
        pool: PoolUse,
        directory: DirectoryUse,
    }
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(Ready {
            status: "ok",
            pool,
            directory,
        })
}

/// The process is alive and serving; the database is not consulted.
async fn healthz() -> HttpResponse {
    ok()
}

/// Why the service is not ready.
#[derive(Debug, thiserror::Error)]
enum NotReady {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("the readiness query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("the database schema is not migrated to the version this build needs")]
    NotMigrated,
    #[error("the database did not answer within {READY_TIMEOUT:?}")]
    Timeout,
}

/// Ready when the database answers and every migration is applied. A busy
/// pool is not a reason to be taken out of rotation: when every connection
/// is in use (each one answered when it was checked out), readiness says
/// so without waiting for one. The body reports the pool's use either way.
/// A connection to a server that went away is not reused (the pool checks
/// `is_closed` when recycling), so readiness recovers when the database does.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // This worker's pool: the one a request here would wait for.
    let status = state.pool.current().status();
    let pool = PoolUse {
        size: status.size,
        available: status.available,
        max_size: status.max_size,
        waiting: status.waiting,
    };
    let directory = DirectoryUse::of(&state.options.directory_progress);
    if status.available == 0 && status.size >= status.max_size {
        return Ok(ready(pool, directory));
    }
    let check = async {
        let client = state.pool.get().await?;
        match db::migrate::is_current(&client).await? {
            true => Ok(()),
            false => Err(NotReady::NotMigrated),
        }
    };
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(ready(pool, directory)),
        Ok(Err(e)) => Err(ApiError::Unavailable(Box::new(e))),
        Err(_) => Err(ApiError::Unavailable(Box::new(NotReady::Timeout))),
    }
}

/// The Prometheus exposition, with the pool sampled now.
async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &state.options.ops.metrics_token {
        let presented = bearer(&req)?;
        if !token.allows(presented) {
            return Err(ApiError::InvalidToken);
        }
    }
    let status = state.pool.status();
    let metrics = &state.options.metrics;
    metrics.sample_pool(PoolSample {
        max_size: status.max_size,
        size: status.size,
        available: status.available,
        waiting: status.waiting,
    });
    if let Some(audit) = &state.options.audit {
        metrics.sample_audit(audit.buffered());
    }
    if let Some(replicas) = &state.replicas {
        metrics.sample_servers(&replicas.samples());
    }
    let body = metrics
        .encode()
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .body(body))
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?
        .to_str()
        .map_err(|_| ApiError::InvalidToken)?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(ApiError::MissingToken),
    }
}

/// Stops the server gracefully on the first SIGTERM or SIGINT (no new
/// connections; in-flight responses get the grace period), and at once on
/// a second one. Call it from within a Tokio runtime, once per process.
/// `stopping` is cancelled first: open event streams end at once.
pub fn stop_on_signals(server: ServerHandle, stopping: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "cannot listen for stop signals");
            return;
        }
    };
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = first,
            "stopping: no new connections; in-flight responses may finish (a second signal stops at once)"
        );
        stopping.cancel();
        let graceful = server.stop(true);
        tokio::select! {
            () = graceful => {}
            _ = term.recv() => {
                tracing::warn!("second stop signal: closing every connection now");
                server.stop(false).await;
            }
            _ = int.recv() => {
                tracing::warn!("second stop signal: closing every connection now");
                server.stop(false).await;
            }
        }
    });
}

/// Asks the server listening on `bind` for `/healthz` (the `healthcheck`
/// subcommand, for container health checks). An unspecified address such
/// as `0.0.0.0:8080` means this host's loopback. `Ok` only for a 200.
pub fn healthcheck(bind: &str, timeout: Duration) -> std::io::Result<()> {
    use std::{
        io::{Error, Read, Write},
        net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream, ToSocketAddrs},
    };
    let mut address = bind
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| Error::other(format!("{bind} names no address")))?;
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let mut socket = TcpStream::connect_timeout(&address, timeout)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    write!(
        socket,
        "GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = socket.read(&mut head[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let status_line = String::from_utf8_lossy(&head[..len]);
    match status_line.split(' ').nth(1) {
        Some("200") => Ok(()),
        Some(status) => Err(Error::other(format!("/healthz answered {status}"))),
        None => Err(Error::other("/healthz gave no HTTP answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_token_matches_exactly() {
        let token = MetricsToken::new("s3cret");
        assert!(token.allows("s3cret"));
        assert!(!token.allows("s3cre"));
        assert!(!token.allows(""));
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}

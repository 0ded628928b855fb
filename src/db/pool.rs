//! The connection pool.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// How long a request waits for a free connection before it is answered 503.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening a new connection may take before it counts as unreachable.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a pool of at most `max_size` connections. Connections are opened
/// lazily, so this succeeds even while the database is down.
pub fn build(config: tokio_postgres::Config, max_size: usize) -> Result<Pool, PoolBuildError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size.max(1))
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(CREATE_TIMEOUT))
        .recycle_timeout(Some(CREATE_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| PoolBuildError(e.to_string()))
}

/// The pool could not be built (a configuration error, not a database one).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the connection pool: {0}")]
pub struct PoolBuildError(String);

//! The connection pool.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

/// How long a request waits for a free connection before it is answered 503.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening a new connection may take before it counts as unreachable.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a pool of at most `max_size` connections. Connections are opened
/// lazily, so this succeeds even while the database is down.
pub fn build(
    config: tokio_postgres::Config,
    tls: super::tls::Tls,
    max_size: usize,
) -> Result<Pool, PoolBuildError> {
    let manager = Manager::from_config(
        config,
        tls,
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

/// The planner settings of the request pools' sessions. A request reads
/// rows in the order of an index (windows, histories, pages) and streams
/// them as they come, so a plan that reads everything before its first row
/// (a sort of a sequential or bitmap scan), parallel workers (one request,
/// one backend) and JIT compilation (hundreds of milliseconds before the
/// first row of a large estimate) only delay it; PostgreSQL's costs choose
/// them for windows that hold a large part of a table. A query no index
/// serves still runs: a sequential scan is only costed last. The jobs'
/// pool keeps the server's settings.
pub const REQUEST_PLANNER: &str =
    "-c jit=off -c max_parallel_workers_per_gather=0 -c enable_seqscan=off -c enable_bitmapscan=off";

/// `config` with [`REQUEST_PLANNER`] added to its session options.
pub fn for_requests(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    let existing = config.get_options().unwrap_or_default().to_owned();
    let options = if existing.is_empty() {
        REQUEST_PLANNER.to_owned()
    } else {
        format!("{existing} {REQUEST_PLANNER}")
    };
    config.options(&options);
    config
}

/// The pool could not be built (a configuration error, not a database one).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the connection pool: {0}")]
pub struct PoolBuildError(String);

/// The request handlers' connection pools: one per HTTP worker thread.
///
/// tokio-postgres drives each connection from a task on the runtime that
/// opened it, and every actix-web worker is a runtime of its own. A stream
/// served on one worker from a connection opened on another hands every
/// batch of rows across threads (futex wake-ups, context switches: measured
/// at a third of the wall time of a large download). Each worker thread
/// therefore takes its connections from a pool of its own, so a connection
/// is opened, driven and read on one thread. The worker threads are mapped
/// to the pools round-robin, the first time each asks; `Deref` gives the
/// calling thread's pool.
#[derive(Clone)]
pub struct Pools {
    pools: std::sync::Arc<Vec<Pool>>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools")
            .field("pools", &self.pools.len())
            .finish()
    }
}

impl From<Pool> for Pools {
    /// One pool for every thread (tests, tools).
    fn from(pool: Pool) -> Pools {
        Pools {
            pools: std::sync::Arc::new(vec![pool]),
        }
    }
}

impl Pools {
    /// `workers` pools of `each` connections (at least 1).
    pub fn per_worker(
        config: tokio_postgres::Config,
        tls: super::tls::Tls,
        each: usize,
        workers: usize,
    ) -> Result<Pools, PoolBuildError> {
        let workers = workers.max(1);
        let pools = (0..workers)
            .map(|_| build(config.clone(), tls.clone(), each))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pools {
            pools: std::sync::Arc::new(pools),
        })
    }

    /// How many pools (the HTTP workers to run).
    pub fn len(&self) -> usize {
        self.pools.len()
    }

    /// Always false: there is at least one pool.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// The calling thread's pool.
    pub fn current(&self) -> &Pool {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
        }
        let slot = SLOT.with(|slot| match slot.get() {
            Some(i) => i,
            None => {
                let i = NEXT.fetch_add(1, Ordering::Relaxed);
                slot.set(Some(i));
                i
            }
        });
        &self.pools[slot % self.pools.len()]
    }

    /// The state of all pools together.
    pub fn status(&self) -> deadpool_postgres::Status {
        let mut total = deadpool_postgres::Status {
            max_size: 0,
            size: 0,
            available: 0,
            waiting: 0,
        };
        for pool in self.pools.iter() {
            let status = pool.status();
            total.max_size += status.max_size;
            total.size += status.size;
            total.available += status.available;
            total.waiting += status.waiting;
        }
        total
    }
}

impl std::ops::Deref for Pools {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        self.current()
    }
}

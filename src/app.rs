//! The application: every setting parsed once into [`Settings`], and
//! [`Application::build`], which assembles the connection pools, the HTTP
//! server on a caller-supplied listener and the background jobs (the audit
//! writer, retention, the kinds' upkeep such as the usage rollups), and stops them in one order.
//! `serve`, `demo` and the integration tests all start the service through
//! it; stop signals are the caller's business (`http::ops::stop_on_signals`),
//! so test servers never take over the test process's signals.
//!
//! # Connections
//!
//! `ACCTSTREAM_POOL_SIZE` is the most connections the service opens to the
//! database: [`JOBS_CONNECTIONS`] for the background jobs when any runs, and
//! the rest split evenly between the HTTP workers' pools (one per worker; a
//! connection is driven on the runtime that opened it).

use std::{net::TcpListener, time::Duration};

use actix_web::dev::{Server, ServerHandle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{self, ApiTokens, ConfigError},
    core::pseudonym::Pseudonymiser,
    db::{self, retention::RetentionOptions},
    http::{self, AppOptions, AppState},
    registry::Registry,
};

/// Connections the background jobs share (the audit writer, retention and
/// the rollups take turns; none holds one while waiting for another).
pub const JOBS_CONNECTIONS: usize = 2;

/// Everything `serve` (and `demo`) runs with, parsed and checked: a value
/// here is valid, so building the application cannot fail on a setting
/// (but the pool size, which depends on the cores).
#[derive(Clone)]
pub struct Settings {
    /// The kinds served.
    pub kinds: Registry,
    /// Where the data lives.
    pub database: tokio_postgres::Config,
    /// How connections to it are secured.
    pub tls: db::tls::Tls,
    /// The most database connections (`ACCTSTREAM_POOL_SIZE`).
    pub pool_size: usize,
    /// HTTP workers (one pool each); `None`: one per core.
    pub workers: Option<usize>,
    /// Keyed pseudonymisation of identities.
    pub pseudonymiser: Pseudonymiser,
    /// The static bearer tokens.
    pub tokens: ApiTokens,
    /// Base URL for links (`ACCTSTREAM_PUBLIC_URL`).
    pub public_url: Option<String>,
    /// When an open session counts as stale (`ACCTSTREAM_SESSION_STALE_AFTER`).
    pub session_stale_after: Option<u64>,
    /// The HTTP layer's settings (its `audit` sink is made by `build`
    /// when `audit` is set).
    pub http: AppOptions,
    /// Whether reads and writes are recorded in the access audit trail.
    pub audit: bool,
    /// Retention: the days and the job's rhythm (its kinds and keys are
    /// filled in by `build`); both policies disabled: no job.
    pub retention: RetentionOptions,
    /// Time between two runs of the upkeep job (the usage rollups);
    /// `None`: no job (reports still catch up before answering).
    pub rollup_interval: Option<Duration>,
    /// Read-only servers for reads (`ACCTSTREAM_READ_DATABASE_URL`).
    pub read_database: Option<ReadDatabase>,
    /// Time partitions (`ACCTSTREAM_PARTITIONS`): the job makes them ahead
    /// on the partitioned tables; `None`: no job.
    pub partitions: Option<crate::core::partition::Interval>,
}

/// Streaming replicas that serve reads (issue 25).
#[derive(Clone)]
pub struct ReadDatabase {
    /// Their hosts (one or several) and connection settings.
    pub config: tokio_postgres::Config,
    /// How connections to them are secured.
    pub tls: db::tls::Tls,
    /// Replicas lagging more are skipped (`ACCTSTREAM_MAX_REPLICA_LAG`).
    pub max_lag: Duration,
}

impl std::fmt::Debug for ReadDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadDatabase")
            .field("hosts", &self.config.get_hosts())
            .field("max_lag", &self.max_lag)
            .finish_non_exhaustive()
    }
}

/// The application could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting does not fit (`ACCTSTREAM_POOL_SIZE` too small).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A pool could not be built.
    #[error(transparent)]
    Pool(#[from] db::pool::PoolBuildError),
    /// The HTTP server could not start.
    #[error("starting the HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// The running service: the HTTP server and its background jobs.
pub struct Application {
    server: Server,
    address: std::net::SocketAddr,
    pools: db::pool::Pools,
    jobs: Vec<JoinHandle<()>>,
    audit_writer: Option<JoinHandle<()>>,
    stop_jobs: CancellationToken,
    stopping: CancellationToken,
}

/// How `pool_size` connections are shared between at most `workers` HTTP
/// workers and the jobs: `(workers, connections per worker pool,
/// connections of the jobs)`. Fewer workers run when there are fewer
/// connections than workers (each worker needs one).
pub fn connection_budget(
    pool_size: usize,
    workers: usize,
    jobs: bool,
) -> Result<(usize, usize, usize), ConfigError> {
    let jobs = if jobs { JOBS_CONNECTIONS } else { 0 };
    if pool_size <= jobs {
        return Err(ConfigError::PoolTooSmall {
            size: pool_size,
            least: jobs + 1,
        });
    }
    let workers = workers.clamp(1, pool_size - jobs);
    Ok((workers, (pool_size - jobs) / workers, jobs))
}

impl Application {
    /// Assembles the service on `listener` (bind port 0 in tests) and
    /// starts it: the server accepts at once, the jobs run in the
    /// background. Nothing is awaited: call [`Application::run_until_stopped`].
    pub fn build(settings: Settings, listener: TcpListener) -> Result<Application, BuildError> {
        let workers = settings.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        });
        let retention_runs = !(settings.retention.policy.is_disabled()
            && settings.retention.audit_policy.is_disabled());
        let any_job = settings.audit || retention_runs || settings.rollup_interval.is_some();
        let (workers, each, jobs) = connection_budget(settings.pool_size, workers, any_job)?;
        // The time zone database is read once, before any request names a zone.
        crate::core::zone::Zone::warm_up();
        let database = db::pool::for_requests(config::with_stale_after(
            settings.database.clone(),
            settings.session_stale_after,
        ));
        let pools = db::pool::Pools::per_worker(database, settings.tls.clone(), each, workers)?;
        // The jobs have a pool of their own: a connection's driver task
        // lives on the runtime that opened it, and request streams run on
        // the HTTP workers' runtimes; connections the jobs opened would make
        // every streamed row cross threads.
        let jobs_pool = (jobs > 0)
            .then(|| db::pool::build(settings.database.clone(), settings.tls.clone(), jobs))
            .transpose()?;
        let stop_jobs = CancellationToken::new();
        let mut options = settings.http;
        let mut audit_writer = None;
        let mut handles = Vec::new();
        if let Some(jobs_pool) = &jobs_pool {
            if settings.audit {
                let (sink, entries) = db::audit::AuditSink::channel(db::audit::CHANNEL_CAPACITY);
                options.audit = Some(sink.counting_in(options.metrics.clone()));
                audit_writer = Some(tokio::spawn(db::audit::run_writer(
                    jobs_pool.clone(),
                    entries,
                )));
            }
            if retention_runs {
                handles.push(tokio::spawn(db::retention::run_job(
                    jobs_pool.clone(),
                    RetentionOptions {
                        pseudonymiser: Some(settings.pseudonymiser.clone()),
                        kinds: settings.kinds.kinds(),
                        upkeep: settings.kinds.upkeeps(),
                        metrics: options.metrics.clone(),
                        ..settings.retention
                    },
                    stop_jobs.clone(),
                )));
            }
            // Ends at once when no kind is written by others.
            handles.push(tokio::spawn(db::directory::run_job(
                jobs_pool.clone(),
                settings.kinds.kinds(),
                settings.pseudonymiser.clone(),
                options.directory_progress.clone(),
                stop_jobs.clone(),
            )));
            if let Some(interval) = settings.rollup_interval {
                handles.push(tokio::spawn(db::upkeep::run_job(
                    jobs_pool.clone(),
                    interval,
                    stop_jobs.clone(),
                    // The kinds' own, then the change feed's summary of
                    // every kind (what conditional windows read).
                    settings
                        .kinds
                        .upkeeps()
                        .into_iter()
                        .chain([db::changes::Summary::of(settings.kinds.kinds()) as _])
                        .collect(),
                    settings.pseudonymiser.clone(),
                    options.metrics.clone(),
                )));
            }
        }
        if let (Some(jobs_pool), Some(interval)) = (&jobs_pool, settings.partitions) {
            handles.push(tokio::spawn(db::partition::run_job(
                jobs_pool.clone(),
                settings.kinds.kinds(),
                interval,
                (settings.retention.policy, settings.retention.audit_policy),
                options.metrics.clone(),
                stop_jobs.clone(),
            )));
        }
        // A deployment with organizations reads windows by organization:
        // their indexes are built (concurrently) when missing.
        let has_tenants = http::state::has_tenants(&settings.tokens, options.oauth.as_deref());
        if let (Some(jobs_pool), true) = (&jobs_pool, has_tenants) {
            handles.push(tokio::spawn(db::migrate::build_tenant_indexes(
                jobs_pool.clone(),
                settings.kinds.kinds(),
                stop_jobs.clone(),
            )));
        }
        // Each replica gets a pool per worker as large as the primary's.
        let replicas = match &settings.read_database {
            Some(read) => {
                let replicas = std::sync::Arc::new(db::replicas::Replicas::build(
                    &config::with_stale_after(read.config.clone(), settings.session_stale_after),
                    &read.tls,
                    each,
                    workers,
                    read.max_lag,
                )?);
                tracing::info!(replicas = ?replicas.names(), max_lag = ?read.max_lag, "reads from replicas");
                handles.push(tokio::spawn(replicas.clone().monitor(stop_jobs.clone())));
                Some(replicas)
            }
            None => None,
        };
        let address = listener.local_addr()?;
        let stopping = options.shutdown.clone();
        let state = AppState {
            replicas,
            kinds: settings.kinds,
            pool: pools.clone(),
            pseudonymiser: settings.pseudonymiser,
            tokens: settings.tokens,
            public_url: settings.public_url,
            options,
        };
        let server = http::run(listener, state)?;
        tracing::info!(connections = settings.pool_size, workers, %address, "listening");
        Ok(Application {
            server,
            address,
            pools,
            jobs: handles,
            audit_writer,
            stop_jobs,
            stopping,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Cancelled to tell open event streams the service is stopping
    /// (before stopping the server through [`Application::handle`]).
    pub fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// The handle that stops the server (gracefully or not).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The request pools (tests query through them).
    pub fn pools(&self) -> &db::pool::Pools {
        &self.pools
    }

    /// Serves until the server is stopped, then stops the rest in order:
    /// the audit writer stores what the last responses left (the server's
    /// state, and so every audit sink, is gone), then retention and the
    /// rollups stop between two steps.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Some(writer) = self.audit_writer {
            if tokio::time::timeout(Duration::from_secs(30), writer)
                .await
                .is_err()
            {
                tracing::warn!("the audit writer did not finish within 30 s");
            }
        }
        self.stop_jobs.cancel();
        for job in self.jobs {
            let _ = job.await;
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 27, item 3: the jobs draw from the same budget, and the
    /// workers' pools share the rest; a budget too small is refused.
    #[test]
    fn the_pool_size_bounds_every_connection() {
        assert_eq!(connection_budget(16, 2, true).unwrap(), (2, 7, 2));
        assert_eq!(connection_budget(16, 2, false).unwrap(), (2, 8, 0));
        assert_eq!(connection_budget(17, 2, true).unwrap(), (2, 7, 2));
        assert_eq!(connection_budget(4, 2, true).unwrap(), (2, 1, 2));
        // More cores than connections: fewer workers, one connection each.
        assert_eq!(connection_budget(16, 32, true).unwrap(), (14, 1, 2));
        assert_eq!(connection_budget(3, 2, true).unwrap(), (1, 1, 2));
        for (size, workers) in [(16, 2), (17, 2), (5, 3), (64, 8), (16, 64), (3, 8)] {
            let (workers, each, jobs) = connection_budget(size, workers, true).unwrap();
            assert!(workers >= 1 && each >= 1);
            assert!(workers * each + jobs <= size);
        }
        let error = connection_budget(2, 2, true).unwrap_err();
        assert!(
            error.to_string().contains("ACCTSTREAM_POOL_SIZE"),
            "{error}"
        );
    }
}

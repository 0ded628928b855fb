//! Reads from streaming replicas (issue 25): `ACCTSTREAM_READ_DATABASE_URL`
//! names one or several read-only servers. A monitor measures each one's
//! replay lag every second; a read goes to a usable replica (reachable, in
//! recovery or not, lag within `ACCTSTREAM_MAX_REPLICA_LAG`), the least
//! busy first, and to the primary when there is none or when the primary
//! has fewer connections in use than any of them. A replica that fails
//! to give a connection is set aside at once and the read goes on to the
//! next server within the same request.
//!
//! A window must hold every record committed before the change-feed cursor
//! it hands out (a poller following `next` and the feed must miss nothing),
//! so a window read goes to a replica only once that replica has replayed
//! the primary's WAL up to a position read after the cursor
//! ([`Replicas::pool_for_window`]).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use deadpool_postgres::Pool;

use super::pool::{PoolBuildError, Pools};

/// How often the monitor measures each replica.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);
/// How long a read waits for a replica's connection before it goes on.
pub const CONNECT_WAIT: Duration = Duration::from_secs(1);
/// The default of `ACCTSTREAM_MAX_REPLICA_LAG`.
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(30);

/// The lag measured on a replica: 0 when it is not in recovery, or has
/// replayed all it received while streaming; else the age of the last
/// transaction it replayed (or, with nothing replayed yet, unknown: null).
const LAG_SQL: &str = "SELECT CASE \
       WHEN NOT pg_is_in_recovery() THEN 0::float8 \
       WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() \
            AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 0::float8 \
       ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END";

/// Whether a replica has replayed the primary's WAL up to `$1` (a primary
/// answers true: it has everything).
const CAUGHT_UP_SQL: &str = "SELECT NOT pg_is_in_recovery() \
       OR coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)";

/// One read-only server.
pub struct Replica {
    /// `host:port`, as metrics and logs name it (never credentials).
    name: String,
    /// Request connections, one pool per HTTP worker like the primary's.
    pools: Pools,
    /// The monitor's own connection.
    monitor: Pool,
    usable: AtomicBool,
    /// The last lag measured, in milliseconds (`u64::MAX`: unknown).
    lag_ms: AtomicU64,
    served: AtomicU64,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("name", &self.name).finish()
    }
}

/// The read-only servers, and how many reads the primary served instead.
#[derive(Debug)]
pub struct Replicas {
    replicas: Vec<Arc<Replica>>,
    max_lag: Duration,
    next: AtomicUsize,
    primary_served: AtomicU64,
}

impl Replicas {
    /// One replica per host of `config` (libpq's `host=a,b port=1,2`, or
    /// `postgresql://a:1,b:2/db`), each with `workers` pools of `each`
    /// connections (request settings added by the caller) and one
    /// connection for the monitor.
    pub fn build(
        config: &tokio_postgres::Config,
        tls: &super::tls::Tls,
        each: usize,
        workers: usize,
        max_lag: Duration,
    ) -> Result<Replicas, PoolBuildError> {
        let hosts = config.get_hosts();
        let ports = config.get_ports();
        let mut replicas = Vec::with_capacity(hosts.len());
        for (index, host) in hosts.iter().enumerate() {
            let port = port_of(ports, index);
            let name = match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
            };
            // Only this host: the config's own list would be tried in turn.
            let one = only_host(config, index);
            let pools = Pools::per_worker(
                super::pool::for_requests(one.clone()),
                tls.clone(),
                each,
                workers,
            )?;
            let monitor = super::pool::build(one, tls.clone(), 1)?;
            replicas.push(Arc::new(Replica {
                name,
                pools,
                monitor,
                usable: AtomicBool::new(false),
                lag_ms: AtomicU64::new(u64::MAX),
                served: AtomicU64::new(0),
            }));
        }
        Ok(Replicas {
            replicas,
            max_lag,
            next: AtomicUsize::new(0),
            primary_served: AtomicU64::new(0),
        })
    }

    /// The replicas' names.
    pub fn names(&self) -> Vec<&str> {
        self.replicas.iter().map(|r| r.name.as_str()).collect()
    }

    /// Measures every replica now (the monitor does so every second).
    pub async fn measure(&self) {
        for replica in &self.replicas {
            let lag = measure(replica).await;
            let usable = matches!(lag, Ok(Some(lag)) if lag <= self.max_lag.as_secs_f64());
            let was = replica.usable.swap(usable, Ordering::Relaxed);
            replica.lag_ms.store(
                match lag {
                    Ok(Some(lag)) => (lag.max(0.0) * 1000.0) as u64,
                    _ => u64::MAX,
                },
                Ordering::Relaxed,
            );
            if was != usable {
                match &lag {
                    Ok(lag) => tracing::info!(
                        replica = %replica.name,
                        usable,
                        lag_seconds = ?lag,
                        "replica"
                    ),
                    Err(error) => {
                        tracing::warn!(replica = %replica.name, %error, "replica unreachable")
                    }
                }
            }
        }
    }

    /// Measures every replica every [`MONITOR_INTERVAL`] until `stop`.
    pub async fn monitor(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            self.measure().await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(MONITOR_INTERVAL) => {}
            }
        }
    }

    /// The usable replicas, least busy first (ties: the one whose turn it
    /// is first), each with its connections in use.
    fn least_busy(&self) -> Vec<(&Arc<Replica>, usize)> {
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut usable: Vec<_> = (0..count)
            .map(|i| &self.replicas[(start + i) % count])
            .filter(|r| r.usable.load(Ordering::Relaxed))
            .map(|r| (r, in_use(&r.pools)))
            .collect();
        usable.sort_by_key(|(_, busy)| *busy);
        usable
    }

    /// The calling worker's pool of the least busy usable replica whose
    /// connection `accept`s (a replica that gives none is set aside until
    /// the monitor sees it well again), else the primary's. The primary
    /// takes the read when every such replica has more connections in use
    /// than it has: two concurrent downloads with one replica go one to
    /// each server.
    async fn choose<'a, F, Fut>(&'a self, primary: &'a Pools, accept: F) -> &'a Pool
    where
        F: Fn(deadpool_postgres::Object) -> Fut,
        Fut: std::future::Future<Output = Result<bool, String>>,
    {
        let primary_busy = in_use(primary);
        for (replica, busy) in self.least_busy() {
            if busy > primary_busy {
                break;
            }
            let pool = replica.pools.current();
            let checked = match tokio::time::timeout(CONNECT_WAIT, pool.get()).await {
                Ok(Ok(client)) => accept(client).await,
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no connection within {CONNECT_WAIT:?}")),
            };
            match checked {
                Ok(true) => {
                    replica.served.fetch_add(1, Ordering::Relaxed);
                    return pool;
                }
                Ok(false) => {}
                Err(error) => {
                    replica.usable.store(false, Ordering::Relaxed);
                    tracing::warn!(replica = %replica.name, %error, "replica set aside; reading elsewhere");
                }
            }
        }
        self.primary_served.fetch_add(1, Ordering::Relaxed);
        primary.current()
    }

    /// Where a read that may lag by up to `ACCTSTREAM_MAX_REPLICA_LAG` goes.
    pub async fn pool<'a>(&'a self, primary: &'a Pools) -> &'a Pool {
        self.choose(primary, |_client| async { Ok(true) }).await
    }

    /// Where a window's read goes: a replica that has replayed the
    /// primary's WAL up to its insert position now (which covers every
    /// transaction visible there, even one committed asynchronously and
    /// not yet written) (read after the window's
    /// change-feed cursor), else the primary.
    pub async fn pool_for_window<'a>(&'a self, primary: &'a Pools) -> &'a Pool {
        if !self
            .replicas
            .iter()
            .any(|r| r.usable.load(Ordering::Relaxed))
        {
            self.primary_served.fetch_add(1, Ordering::Relaxed);
            return primary.current();
        }
        let position = match primary_position(primary.current()).await {
            Ok(position) => position,
            Err(error) => {
                tracing::warn!(%error, "the primary's WAL position; reading from the primary");
                self.primary_served.fetch_add(1, Ordering::Relaxed);
                return primary.current();
            }
        };
        self.choose(primary, |client| {
            let position = position.clone();
            async move {
                client
                    .query_one(CAUGHT_UP_SQL, &[&position])
                    .await
                    .map(|row| row.get::<_, bool>(0))
                    .map_err(|e| e.to_string())
            }
        })
        .await
    }

    /// Every server as `/metrics` shows it.
    pub fn samples(&self) -> Vec<crate::metrics::ServerSample> {
        let mut samples = vec![crate::metrics::ServerSample {
            server: "primary".into(),
            lag_seconds: None,
            usable: true,
            reads: self.primary_served.load(Ordering::Relaxed),
        }];
        samples.extend(self.replicas.iter().map(|r| {
            let lag = r.lag_ms.load(Ordering::Relaxed);
            crate::metrics::ServerSample {
                server: r.name.clone(),
                lag_seconds: (lag != u64::MAX).then(|| lag as f64 / 1000.0),
                usable: r.usable.load(Ordering::Relaxed),
                reads: r.served.load(Ordering::Relaxed),
            }
        }));
        samples
    }
}

/// The port of the host at `index`: one port for all, or one each.
fn port_of(ports: &[u16], index: usize) -> u16 {
    match ports {
        [] => 5432,
        [one] => *one,
        many => many.get(index).copied().unwrap_or(5432),
    }
}

/// Connections checked out of `pools` (every worker's) now.
fn in_use(pools: &Pools) -> usize {
    let status = pools.status();
    status.size.saturating_sub(status.available)
}

/// `config` with only the host at `index` (and its port) left.
fn only_host(config: &tokio_postgres::Config, index: usize) -> tokio_postgres::Config {
    let mut one = tokio_postgres::Config::new();
    let host = &config.get_hosts()[index];
    match host {
        tokio_postgres::config::Host::Tcp(name) => {
            one.host(name);
        }
        tokio_postgres::config::Host::Unix(path) => {
            one.host_path(path);
        }
    }
    one.port(port_of(config.get_ports(), index));
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    one.ssl_mode(config.get_ssl_mode());
    if let Some(timeout) = config.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    one
}

async fn measure(replica: &Replica) -> Result<Option<f64>, String> {
    let attempt = async {
        let client = replica.monitor.get().await.map_err(|e| e.to_string())?;
        let row = client
            .query_one(LAG_SQL, &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get::<_, Option<f64>>(0))
    };
    tokio::time::timeout(CONNECT_WAIT * 2, attempt)
        .await
        .map_err(|_| "no answer within 2 s".to_owned())?
}

async fn primary_position(pool: &Pool) -> Result<String, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

//! The service's Prometheus metrics, kept in one [`Metrics`] value that every
//! HTTP worker shares through an `Arc`.
//!
//! This module knows neither actix-web nor PostgreSQL: the HTTP layer records
//! requests, the database layer records streams through a [`StreamTally`],
//! and the `/metrics` handler samples the pool and calls [`Metrics::encode`].
//! The exposition is the OpenMetrics text format of the `prometheus-client`
//! crate, which Prometheus scrapes natively.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `acctstream_http_requests_total` | `method`, `route`, `status` | requests answered, by route template (never the raw path) |
//! | `acctstream_http_request_duration_seconds` | `method`, `route` | time from the request to the last byte of the response |
//! | `acctstream_rows_streamed_total` | `resource`, `format` | rows encoded into streamed responses |
//! | `acctstream_streams_in_progress` | `resource` | streamed responses currently open |
//! | `acctstream_streams_aborted_total` | `resource`, `reason` | streams cut short: `client_disconnect` or `database_error` |
//! | `acctstream_db_pool_size` | | connections open in the pool (sampled at scrape) |
//! | `acctstream_db_pool_in_use` | | connections checked out (sampled at scrape) |
//! | `acctstream_db_pool_waiting` | | requests waiting for a connection (sampled at scrape) |
//! | `acctstream_db_pool_max_size` | | the pool's limit |
//! | `acctstream_ingest_events_total` | `outcome` | ingested events: `accepted` or `rejected` |
//! | `acctstream_ingest_requests_total` | `path` | ingest requests stored, by write path: `copy` (straight COPY) or `merge` (replayed through the deduplicating insert) |
//! | `acctstream_audit_entries_dropped_total` | | audit entries dropped because the buffer was full (the database down for longer than it holds) |
//! | `acctstream_audit_entries_buffered` | | audit entries waiting for the writer (sampled at scrape) |
//! | `acctstream_reads_total` | `server` | reads (windows, histories, counts, sessions) served by `primary` or a replica's `host:port` (with `ACCTSTREAM_READ_DATABASE_URL`; sampled at scrape) |
//! | `acctstream_replica_lag_seconds` | `server` | a replica's replay lag as last measured (absent while unknown) |
//! | `acctstream_replica_usable` | `server` | 1 when reads may go to the replica (reachable, lag within `ACCTSTREAM_MAX_REPLICA_LAG`) |
//! | `acctstream_default_partition_rows` | `kind` | rows in the default partition of a partitioned kind's table (times no partition covers: far ahead, or older than retention keeps), as last counted by the partitions job |
//! | `acctstream_upkeep_set_aside_total` | `upkeep` | rows a kind's upkeep could not take and set aside (`usage rollups`: events dated outside the years 0001 to 9999 or before the first key; see `usage_rollup_set_aside`) |

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use prometheus_client::{
    encoding::{text, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// Labels of the request duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    method: &'static str,
    route: String,
}

/// Labels of the rows counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabels {
    resource: &'static str,
    format: &'static str,
}

/// Labels of the streams gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
}

/// Labels of the aborted-streams counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AbortLabels {
    resource: &'static str,
    reason: &'static str,
}

/// Labels of the ingest counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Labels of the ingest request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

fn duration_histogram() -> Histogram {
    // 1 ms to about 65 s, doubling.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// A snapshot of the connection pool, taken when metrics are scraped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolSample {
    /// The pool's limit.
    pub max_size: usize,
    /// Connections open.
    pub size: usize,
    /// Open connections not checked out.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

/// Every metric of the service, registered once in its own registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    rows: Family<RowLabels, Counter>,
    streams: Family<ResourceLabels, Gauge>,
    aborted: Family<AbortLabels, Counter>,
    pool_size: Gauge,
    pool_in_use: Gauge,
    pool_waiting: Gauge,
    pool_max_size: Gauge,
    ingest: Family<OutcomeLabels, Counter>,
    ingest_paths: Family<PathLabels, Counter>,
    radius: Family<OutcomeLabels, Counter>,
    set_aside: Family<UpkeepLabels, Counter>,
    audit_dropped: Counter,
    audit_buffered: Gauge,
    reads: Family<ServerLabels, Counter>,
    replica_lag: Family<ServerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    replica_usable: Family<ServerLabels, Gauge>,
    default_partition_rows: Family<KindLabels, Gauge>,
}

/// Labels of the metrics of one kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Labels of the read-server metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

/// One server that serves reads, as `/metrics` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSample {
    /// `primary`, or a replica's `host:port`.
    pub server: String,
    /// A replica's lag as last measured (`None`: the primary, or unknown).
    pub lag_seconds: Option<f64>,
    /// Whether reads may go to it now.
    pub usable: bool,
    /// Reads it served since the start.
    pub reads: u64,
}

/// Labels of the set-aside counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpkeepLabels {
    upkeep: &'static str,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("acctstream");
        let metrics = Metrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            rows: Family::default(),
            streams: Family::default(),
            aborted: Family::default(),
            pool_size: Gauge::default(),
            pool_in_use: Gauge::default(),
            pool_waiting: Gauge::default(),
            pool_max_size: Gauge::default(),
            ingest: Family::default(),
            ingest_paths: Family::default(),
            radius: Family::default(),
            set_aside: Family::default(),
            audit_dropped: Counter::default(),
            audit_buffered: Gauge::default(),
            reads: Family::default(),
            replica_lag: Family::default(),
            replica_usable: Family::default(),
            default_partition_rows: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from receiving a request to sending the last byte of its response",
            metrics.durations.clone(),
        );
        registry.register(
            "rows_streamed",
            "Rows encoded into streamed responses, by resource and format",
            metrics.rows.clone(),
        );
        registry.register(
            "streams_in_progress",
            "Streamed responses currently open",
            metrics.streams.clone(),
        );
        registry.register(
            "streams_aborted",
            "Streamed responses cut short, by reason (client_disconnect, database_error)",
            metrics.aborted.clone(),
        );
        registry.register(
            "db_pool_size",
            "Database connections open in the pool",
            metrics.pool_size.clone(),
        );
        registry.register(
            "db_pool_in_use",
            "Database connections checked out of the pool",
            metrics.pool_in_use.clone(),
        );
        registry.register(
            "db_pool_waiting",
            "Requests waiting for a database connection",
            metrics.pool_waiting.clone(),
        );
        registry.register(
            "db_pool_max_size",
            "Largest number of database connections the pool opens",
            metrics.pool_max_size.clone(),
        );
        registry.register(
            "ingest_events",
            "Ingested events, by outcome (accepted, rejected)",
            metrics.ingest.clone(),
        );
        registry.register(
            "ingest_requests",
            "Ingest requests stored, by write path (copy: straight COPY; merge: replayed through the deduplicating insert)",
            metrics.ingest_paths.clone(),
        );
        registry.register(
            "radius_requests",
            "RADIUS accounting requests, by outcome (applied; quarantined: kept in \
             radius_rejected and acknowledged; refused: a batch answered 400)",
            metrics.radius.clone(),
        );
        registry.register(
            "upkeep_set_aside",
            "Rows a kind's upkeep could not take and set aside, by upkeep (usage rollups: \
             events dated outside the years 0001 to 9999 or before the first key)",
            metrics.set_aside.clone(),
        );
        registry.register(
            "audit_entries_dropped",
            "Audit entries dropped because the buffer was full",
            metrics.audit_dropped.clone(),
        );
        registry.register(
            "audit_entries_buffered",
            "Audit entries waiting for the writer (sampled at scrape)",
            metrics.audit_buffered.clone(),
        );
        registry.register(
            "reads",
            "Reads served, by server (primary, or a replica's host:port)",
            metrics.reads.clone(),
        );
        registry.register(
            "replica_lag_seconds",
            "A replica's replay lag as last measured",
            metrics.replica_lag.clone(),
        );
        registry.register(
            "replica_usable",
            "1 when reads may go to the replica",
            metrics.replica_usable.clone(),
        );
        registry.register(
            "default_partition_rows",
            "Rows in the default partition of a partitioned kind's table (times no \
             partition covers), as last counted",
            metrics.default_partition_rows.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Records how many rows the default partition of `kind`'s table holds.
    pub fn default_partition_rows(&self, kind: &'static str, rows: i64) {
        self.default_partition_rows
            .get_or_create(&KindLabels { kind })
            .set(rows);
    }

    /// Samples the servers that serve reads (with replicas only).
    pub fn sample_servers(&self, servers: &[ServerSample]) {
        for sample in servers {
            let labels = ServerLabels {
                server: sample.server.clone(),
            };
            let reads = self.reads.get_or_create(&labels);
            reads.inc_by(sample.reads.saturating_sub(reads.get()));
            if sample.server == "primary" {
                continue;
            }
            self.replica_usable
                .get_or_create(&labels)
                .set(i64::from(sample.usable));
            match sample.lag_seconds {
                Some(lag) => {
                    self.replica_lag.get_or_create(&labels).set(lag);
                }
                None => {
                    self.replica_lag.remove(&labels);
                }
            }
        }
    }

    /// Counts audit entries dropped.
    pub fn audit_dropped(&self, entries: u64) {
        self.audit_dropped.inc_by(entries);
    }

    /// Records the audit entries waiting; called just before encoding.
    pub fn sample_audit(&self, buffered: usize) {
        self.audit_buffered
            .set(i64::try_from(buffered).unwrap_or(i64::MAX));
    }

    /// Counts rows the upkeep `upkeep` set aside.
    pub fn upkeep_set_aside(&self, upkeep: &'static str, rows: u64) {
        if rows > 0 {
            self.set_aside
                .get_or_create(&UpkeepLabels { upkeep })
                .inc_by(rows);
        }
    }

    /// Counts RADIUS accounting requests by outcome: `applied`,
    /// `quarantined` or `refused`.
    pub fn radius_requests(&self, outcome: &'static str, requests: u64) {
        self.radius
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(requests);
    }

    /// Counts one answered request. `route` is the route template (e.g.
    /// `/api/v1/statistics/events/{period}`), never the raw path.
    pub fn record_request(&self, method: &str, route: &str, status: u16, duration: Duration) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.to_owned(),
                status,
            })
            .inc();
        self.durations
            .get_or_create(&DurationLabels {
                method,
                route: route.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Counts events stored by an ingest request.
    pub fn ingest_accepted(&self, events: u64) {
        self.ingest
            .get_or_create(&OutcomeLabels {
                outcome: "accepted",
            })
            .inc_by(events);
    }

    /// Counts events refused by an ingest request (invalid, or the request
    /// failed as a whole).
    pub fn ingest_rejected(&self, events: u64) {
        self.ingest
            .get_or_create(&OutcomeLabels {
                outcome: "rejected",
            })
            .inc_by(events);
    }

    /// Counts one stored ingest request by the path that wrote it: `copy` or
    /// `merge`.
    pub fn ingest_request(&self, path: &'static str) {
        self.ingest_paths.get_or_create(&PathLabels { path }).inc();
    }

    /// Records the pool's state; called just before encoding.
    pub fn sample_pool(&self, pool: PoolSample) {
        let gauge = |g: &Gauge, v: usize| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.pool_size, pool.size);
        gauge(&self.pool_in_use, pool.size.saturating_sub(pool.available));
        gauge(&self.pool_waiting, pool.waiting);
        gauge(&self.pool_max_size, pool.max_size);
    }

    /// The whole exposition in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Starts counting one streamed response of `resource` (e.g. `events`)
    /// in `format` (`json` or `csv`).
    pub fn stream(self: &Arc<Self>, resource: &'static str, format: &'static str) -> StreamTally {
        self.streams
            .get_or_create(&ResourceLabels { resource })
            .inc();
        StreamTally {
            metrics: Some(Arc::clone(self)),
            resource,
            format,
            rows: RowsHandle::new(),
        }
    }
}

/// Methods are a closed set of labels: anything unusual counts as `other`.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The figures of one streamed response. The stream reports its rows as it
/// goes ([`StreamTally::set_rows`]) and how it ended; dropping the tally
/// adds the rows to the counters and closes the in-progress gauge.
///
/// [`StreamTally::rows_handle`] gives the HTTP layer a live view of the row
/// count for its request log line.
#[derive(Debug)]
pub struct StreamTally {
    metrics: Option<Arc<Metrics>>,
    resource: &'static str,
    format: &'static str,
    rows: RowsHandle,
}

impl StreamTally {
    /// A tally that records nothing (for callers without metrics).
    pub fn detached() -> StreamTally {
        StreamTally {
            metrics: None,
            resource: "",
            format: "",
            rows: RowsHandle::new(),
        }
    }

    /// Shares the row count with `rows` (e.g. the request's log line).
    pub fn with_rows_handle(mut self, rows: RowsHandle) -> StreamTally {
        rows.set(self.rows.get());
        rows.0.attached.store(true, Ordering::Relaxed);
        self.rows = rows;
        self
    }

    /// The live row count.
    pub fn rows_handle(&self) -> RowsHandle {
        self.rows.clone()
    }

    /// Rows encoded so far (cheap; call it once per chunk, not per row).
    pub fn set_rows(&self, rows: u64) {
        self.rows.set(rows);
    }

    /// The stream ended early because the client went away.
    pub fn aborted_by_client(&self) {
        self.aborted("client_disconnect");
    }

    /// The stream ended early because the database failed.
    pub fn aborted_by_database(&self) {
        self.aborted("database_error");
    }

    fn aborted(&self, reason: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .aborted
                .get_or_create(&AbortLabels {
                    resource: self.resource,
                    reason,
                })
                .inc();
        }
    }
}

impl Drop for StreamTally {
    fn drop(&mut self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let rows = self.rows.get();
        metrics
            .rows
            .get_or_create(&RowLabels {
                resource: self.resource,
                format: self.format,
            })
            .inc_by(rows);
        metrics
            .streams
            .get_or_create(&ResourceLabels {
                resource: self.resource,
            })
            .dec();
    }
}

/// A shared row counter: the stream writes it, the request log reads it.
#[derive(Clone, Debug, Default)]
pub struct RowsHandle(Arc<RowsInner>);

#[derive(Debug, Default)]
struct RowsInner {
    rows: AtomicU64,
    /// Whether a stream reports into this counter.
    attached: AtomicBool,
}

impl RowsHandle {
    /// A fresh counter at zero, not yet attached to a stream.
    pub fn new() -> RowsHandle {
        RowsHandle::default()
    }

    /// The rows counted so far.
    pub fn get(&self) -> u64 {
        self.0.rows.load(Ordering::Relaxed)
    }

    /// The rows counted so far, or `None` when no stream reported here.
    pub fn get_if_set(&self) -> Option<u64> {
        self.0.attached.load(Ordering::Relaxed).then(|| self.get())
    }

    fn set(&self, rows: u64) {
        self.0.rows.store(rows, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn requests_are_counted_by_template() {
        let metrics = Metrics::new();
        metrics.record_request("GET", "/a/{x}", 200, Duration::from_millis(3));
        metrics.record_request("GET", "/a/{x}", 200, Duration::from_millis(5));
        metrics.record_request("BREW", "/a/{x}", 405, Duration::from_millis(1));
        let text = metrics.encode().unwrap();
        assert_eq!(
            line_value(
                &text,
                r#"acctstream_http_requests_total{method="GET",route="/a/{x}",status="200"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            line_value(
                &text,
                r#"acctstream_http_requests_total{method="other",route="/a/{x}",status="405"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            line_value(
                &text,
                r#"acctstream_http_request_duration_seconds_count{method="GET",route="/a/{x}"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_stream_counts_rows_and_its_end() {
        let metrics = Arc::new(Metrics::new());
        let tally = metrics.stream("events", "csv");
        let rows = RowsHandle::new();
        let tally = tally.with_rows_handle(rows.clone());
        tally.set_rows(41);
        tally.set_rows(42);
        let during = metrics.encode().unwrap();
        assert_eq!(
            line_value(
                &during,
                r#"acctstream_streams_in_progress{resource="events"}"#
            ),
            Some(1.0)
        );
        tally.aborted_by_client();
        drop(tally);
        assert_eq!(rows.get(), 42);
        let after = metrics.encode().unwrap();
        assert_eq!(
            line_value(
                &after,
                r#"acctstream_rows_streamed_total{resource="events",format="csv"}"#
            ),
            Some(42.0),
            "{after}"
        );
        assert_eq!(
            line_value(
                &after,
                r#"acctstream_streams_in_progress{resource="events"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            line_value(
                &after,
                r#"acctstream_streams_aborted_total{resource="events",reason="client_disconnect"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn pool_and_ingest_figures() {
        let metrics = Metrics::new();
        metrics.sample_pool(PoolSample {
            max_size: 16,
            size: 5,
            available: 2,
            waiting: 1,
        });
        metrics.ingest_accepted(10);
        metrics.ingest_rejected(3);
        metrics.ingest_request("copy");
        metrics.ingest_request("copy");
        metrics.ingest_request("merge");
        let text = metrics.encode().unwrap();
        assert_eq!(
            line_value(&text, r#"acctstream_ingest_requests_total{path="copy"}"#),
            Some(2.0)
        );
        assert_eq!(
            line_value(&text, r#"acctstream_ingest_requests_total{path="merge"}"#),
            Some(1.0)
        );
        assert_eq!(line_value(&text, "acctstream_db_pool_size "), Some(5.0));
        assert_eq!(line_value(&text, "acctstream_db_pool_in_use "), Some(3.0));
        assert_eq!(line_value(&text, "acctstream_db_pool_waiting "), Some(1.0));
        assert_eq!(
            line_value(
                &text,
                r#"acctstream_ingest_events_total{outcome="accepted"}"#
            ),
            Some(10.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"acctstream_ingest_events_total{outcome="rejected"}"#
            ),
            Some(3.0)
        );
    }
}

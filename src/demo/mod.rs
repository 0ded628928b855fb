//! Realistic demo data for every kind: a bulk seed, a top-up to now and a
//! live trickle of new records. Each kind has its generator in its own
//! folder (`kinds::<kind>::demo`), behind the [`Demo`] trait of its registry
//! entry; the daily rhythm, the bulk writer, the trickle, the option type
//! and the errors are shared here.
//!
//! Everything is deterministic for a given random seed (with the `rand` version we lock).

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::Rng;

pub mod issuer;

use futures_util::future::BoxFuture;

/// What a kind's demo data is made for: where, how much, with which key.
pub struct Fill<'a> {
    /// The database (migrated).
    pub pool: &'a deadpool_postgres::Pool,
    /// How much and over what span: `events` is the size of the demo's
    /// world in authentication events; each kind scales its own count from it
    /// ([`Demo::rows`]).
    pub options: &'a SeedOptions,
    /// The key the service pseudonymises with (the identity directory);
    /// `seed` may run without one, for the kinds that need none.
    pub pseudonymiser: Option<&'a crate::core::pseudonym::Pseudonymiser>,
}

/// Rows a demo writes: how many.
pub type Written<'a> = BoxFuture<'a, Result<u64, DemoError>>;
/// A running trickle: ends when its stop future resolves, or fails.
pub type Trickle = BoxFuture<'static, Result<(), DemoError>>;

/// How a kind makes demo data (its registry entry's `demo`); [`fill`]
/// decides between seeding and topping up.
pub trait Demo: Sync {
    /// How many rows [`Demo::seed`] writes for a demo world of
    /// `options.events` authentication events.
    fn rows(&self, options: &SeedOptions) -> u64;

    /// Writes `rows` records over the whole span of `fill.options` into the
    /// kind's empty table; returns the rows written.
    fn seed<'a>(&'a self, fill: &'a Fill<'a>, rows: u64) -> Written<'a>;

    /// Writes the gap between the newest record and `fill.options.end` (at
    /// most `days`); returns the rows written. By default nothing: the kind
    /// is seeded once.
    fn top_up<'a>(&'a self, _fill: &'a Fill<'a>) -> Written<'a> {
        Box::pin(async { Ok(0) })
    }

    /// Writes a few new records every second until `stop` resolves.
    fn trickle(
        &self,
        pool: deadpool_postgres::Pool,
        pseudonymiser: crate::core::pseudonym::Pseudonymiser,
        stop: BoxFuture<'static, ()>,
    ) -> Trickle;
}

use crate::core::ingest::{IngestSchema, Record};
use crate::db::ingest::CopyWriter;

/// A kind's demo generator: draws one record at a time.
pub(crate) trait Source {
    /// The kind's ingest schema (the columns written).
    const SCHEMA: &'static IngestSchema;
    /// The random stream the times are drawn from.
    fn rng(&mut self) -> &mut StdRng;
    /// Draws the record at `at`.
    fn record(&mut self, at: DateTime<Utc>) -> Record<'_>;
}

impl<'a> Fill<'a> {
    /// The key, or an error saying that this kind's demo data needs it.
    pub fn key(&self) -> Result<&'a crate::core::pseudonym::Pseudonymiser, DemoError> {
        self.pseudonymiser.ok_or_else(|| {
            DemoError::InvalidOptions(
                "this kind's demo data records pseudonyms: set ACCTSTREAM_PSEUDONYM_KEY".to_owned(),
            )
        })
    }

    /// A connection of the pool.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, DemoError> {
        Ok(self.pool.get().await.map_err(crate::db::DbError::from)?)
    }
}

/// How `count` records spread over the span of `opts` (the `days` before
/// `end`): the span's buckets by the daily rhythm (with noise from `rng`)
/// and each bucket's share of the records.
pub(crate) fn spread(
    opts: &SeedOptions,
    count: u64,
    rng: &mut StdRng,
) -> Result<(Vec<Bucket>, Vec<u64>), DemoError> {
    let end_us = opts.end.timestamp_micros();
    let start_us = end_us
        .checked_sub(i64::from(opts.days) * MICROS_PER_DAY)
        .ok_or(DemoError::TimeOutOfRange(end_us))?;
    let buckets = plan(start_us, end_us, Some(rng));
    let counts = apportion(count, &buckets);
    Ok((buckets, counts))
}

/// Fills `kind`'s table up to `fill.options.end` with `demo`: the whole
/// span when the table is empty, else the gap since its newest record.
/// Returns the rows written.
pub async fn fill(
    kind: &crate::core::kind::Kind,
    demo: &dyn Demo,
    fill: &Fill<'_>,
) -> Result<u64, DemoError> {
    let empty = {
        let client = fill.client().await?;
        client
            .query_opt(&format!("SELECT 1 FROM {} LIMIT 1", kind.table), &[])
            .await
            .map_err(db_err("looking for demo data"))?
            .is_none()
    };
    if empty {
        demo.seed(fill, demo.rows(fill.options)).await
    } else {
        demo.top_up(fill).await
    }
}

/// The demo's organizations (issue 28): each person or device belongs to
/// one, by a hash of its identity, and every session to the one its NAS's
/// network is mapped to ([`SESSION_RULES`]).
pub const ORGANIZATIONS: [&str; 3] = ["acme", "globex", "initech"];

/// The rules mapping the demo NAS's networks to [`ORGANIZATIONS`]
/// (`acctstream_session_tenant` rows: position, network, organization).
pub const SESSION_RULES: [(i32, &str, &str); 3] = [
    (10, "10.0.1.0/24", "acme"),
    (20, "10.0.2.0/24", "globex"),
    (30, "10.0.3.0/24", "initech"),
];

/// The organization of a demo record: by an FNV-1a hash of its first
/// identity (stable across runs and kinds, so one person's events and
/// client events are in one organization).
fn organization(record: &crate::core::ingest::Record<'_>) -> &'static str {
    use crate::core::ingest::{FieldType, Value};
    let identity = record
        .schema
        .fields
        .iter()
        .zip(record.values.iter())
        .find_map(|(field, value)| match (field.ty, value) {
            (FieldType::Identity(_), Value::Text(text)) => Some(*text),
            _ => None,
        })
        .unwrap_or_default();
    let hash = identity.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    ORGANIZATIONS[(hash % ORGANIZATIONS.len() as u64) as usize]
}

/// Writes `counts[i]` records of `source` into `buckets[i]`, in time order,
/// one COPY (committed on its own) per ~50k rows; `progress(done, total)`
/// every 100,000 rows and at the end. Returns the rows inserted.
pub(crate) async fn copy_buckets<S: Source>(
    source: &mut S,
    client: &tokio_postgres::Client,
    buckets: &[Bucket],
    counts: &[u64],
    progress: &mut impl FnMut(u64, u64),
) -> Result<u64, DemoError> {
    let total: u64 = counts.iter().sum();
    let mut done = 0u64;
    let mut inserted = 0u64;
    let mut times: Vec<i64> = Vec::new();
    let mut index = 0;
    while index < buckets.len() {
        let mut writer = CopyWriter::start_by_organization(client, S::SCHEMA, organization)
            .await
            .map_err(db_err("starting the demo data COPY"))?;
        let mut chunk_rows = 0u64;
        while index < buckets.len() && chunk_rows < COPY_CHUNK_ROWS {
            let bucket = buckets[index];
            let count = counts[index];
            index += 1;
            times.clear();
            let len = bucket.end_us - bucket.start_us;
            for _ in 0..count {
                times.push(bucket.start_us + source.rng().gen_range(0..len));
            }
            times.sort_unstable();
            for &t in &times {
                let at = DateTime::from_timestamp_micros(t).ok_or(DemoError::TimeOutOfRange(t))?;
                writer
                    .write(&source.record(at))
                    .await
                    .map_err(db_err("writing COPY data"))?;
                done += 1;
                if done.is_multiple_of(PROGRESS_EVERY) {
                    progress(done, total);
                }
            }
            chunk_rows += count;
        }
        inserted += writer
            .finish()
            .await
            .map_err(db_err("finishing the demo data COPY"))?;
    }
    if !done.is_multiple_of(PROGRESS_EVERY) {
        progress(done, total);
    }
    Ok(inserted)
}

/// The number of events [`SeedOptions::default`] inserts.
pub const DEFAULT_EVENTS: u64 = 1_200_000;
/// The number of days [`SeedOptions::default`] spreads events over.
pub const DEFAULT_DAYS: u32 = 30;
/// The number of distinct users [`SeedOptions::default`] draws from.
pub const DEFAULT_USERS: u32 = 20_000;
/// The random seed [`SeedOptions::default`] uses.
pub const DEFAULT_RNG_SEED: u64 = 42;

/// Relative event rate per UTC hour of a weekday.
pub(crate) const HOUR_WEIGHTS: [f64; 24] = [
    0.15, 0.10, 0.08, 0.08, 0.10, 0.25, 0.60, 1.60, 4.00, 6.00, 6.50, 6.00, 4.50, 5.50, 6.00, 5.50,
    4.50, 3.00, 1.80, 1.20, 0.90, 0.70, 0.50, 0.30,
];
/// Weekend traffic relative to weekdays.
pub(crate) const WEEKEND_FACTOR: f64 = 0.25;

pub(crate) const MICROS_PER_SECOND: i64 = 1_000_000;
pub(crate) const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;
pub(crate) const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// Rows per COPY statement (roughly a day of default demo data).
pub(crate) const COPY_CHUNK_ROWS: u64 = 50_000;
/// How often `progress` is called.
pub(crate) const PROGRESS_EVERY: u64 = 100_000;

/// Trickle events per second at the quietest and the busiest hour.
pub(crate) const TRICKLE_MIN_RATE: f64 = 2.0;
pub(crate) const TRICKLE_MAX_RATE: f64 = 30.0;
/// The trickle gives up after this many failed seconds in a row.
pub(crate) const TRICKLE_MAX_FAILURES: u32 = 60;

/// Everything that can go wrong while generating demo data.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The options cannot produce data.
    #[error("invalid demo data options: {0}")]
    InvalidOptions(String),
    /// The database rejected a statement.
    #[error("demo data: {action} failed: {detail} (has the database been migrated?)")]
    Database {
        /// What we were doing.
        action: &'static str,
        /// The database's explanation.
        detail: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Storing demo sessions failed.
    #[error("demo data: writing sessions failed: {0}")]
    Store(#[from] crate::db::DbError),
    /// A timestamp fell outside what chrono can represent.
    #[error("demo data: timestamp {0} µs after 1970 is out of range; choose a different end time")]
    TimeOutOfRange(i64),
    /// The trickle failed too many times in a row.
    #[error("demo trickle stopped after {failures} failed attempts in a row; last error: {last}")]
    TrickleFailed {
        /// How many attempts failed in a row.
        failures: u32,
        /// The last error, as text.
        last: String,
    },
}

pub(crate) fn db_err(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DemoError {
    move |source| DemoError::Database {
        action,
        detail: describe(&source),
        source,
    }
}

/// Spells out a tokio-postgres error, whose own Display is often just "db error".
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// What [`seed`] generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedOptions {
    /// How many events to insert.
    pub events: u64,
    /// How many days before `end` the events span.
    pub days: u32,
    /// The exclusive end of the span; every event is earlier.
    pub end: DateTime<Utc>,
    /// How many distinct users generate events.
    pub users: u32,
    /// The random seed: equal options give equal data.
    pub rng_seed: u64,
}

impl Default for SeedOptions {
    /// Returns 1.2 million events over the 30 days before now from 20,000 users, seed 42.
    fn default() -> Self {
        SeedOptions {
            events: DEFAULT_EVENTS,
            days: DEFAULT_DAYS,
            end: Utc::now(),
            users: DEFAULT_USERS,
            rng_seed: DEFAULT_RNG_SEED,
        }
    }
}

/// A stretch of time inside one UTC hour and its expected share of the traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) start_us: i64,
    pub(crate) end_us: i64,
    pub(crate) weight: f64,
}

/// Returns the relative event rate at `t_us` (µs since the epoch), per hour.
pub(crate) fn rate_weight(t_us: i64) -> f64 {
    let day = t_us.div_euclid(MICROS_PER_DAY);
    let hour = t_us.rem_euclid(MICROS_PER_DAY) / MICROS_PER_HOUR;
    // 1970-01-01 was a Thursday: with Monday = 0 it is day 3.
    let weekday = (day + 3).rem_euclid(7);
    let hour_weight = HOUR_WEIGHTS[usize::try_from(hour).unwrap_or(0) % 24];
    if weekday >= 5 {
        hour_weight * WEEKEND_FACTOR
    } else {
        hour_weight
    }
}

/// Splits `[start_us, end_us)` at hour boundaries; with `noise`, each UTC day gets a random
/// ±15 % factor so days differ.
pub(crate) fn plan(start_us: i64, end_us: i64, mut noise: Option<&mut StdRng>) -> Vec<Bucket> {
    let mut buckets = Vec::new();
    let mut t = start_us;
    let mut day = i64::MIN;
    let mut day_factor = 1.0;
    while t < end_us {
        let next = (t.div_euclid(MICROS_PER_HOUR) + 1) * MICROS_PER_HOUR;
        let bucket_end = next.min(end_us);
        if let Some(rng) = noise.as_deref_mut() {
            let this_day = t.div_euclid(MICROS_PER_DAY);
            if this_day != day {
                day = this_day;
                day_factor = rng.gen_range(0.85..1.15);
            }
        }
        let share = (bucket_end - t) as f64 / MICROS_PER_HOUR as f64;
        buckets.push(Bucket {
            start_us: t,
            end_us: bucket_end,
            weight: rate_weight(t) * day_factor * share,
        });
        t = bucket_end;
    }
    buckets
}

/// Distributes `total` events over the buckets in proportion to their weights, exactly.
pub(crate) fn apportion(total: u64, buckets: &[Bucket]) -> Vec<u64> {
    let sum: f64 = buckets.iter().map(|b| b.weight).sum();
    if sum <= 0.0 || buckets.is_empty() {
        return vec![0; buckets.len()];
    }
    let mut counts = Vec::with_capacity(buckets.len());
    let mut cumulative = 0.0;
    let mut assigned = 0u64;
    for (i, bucket) in buckets.iter().enumerate() {
        cumulative += bucket.weight;
        let target = if i + 1 == buckets.len() {
            total
        } else {
            ((total as f64) * cumulative / sum)
                .round()
                .min(total as f64) as u64
        };
        let target = target.max(assigned);
        counts.push(target - assigned);
        assigned = target;
    }
    counts
}

/// How far back from its end a top-up writes at least the trickle's rate.
pub(crate) const RECENT_US: i64 = 5 * 60 * MICROS_PER_SECOND;

/// The buckets of a top-up (`buckets`, ending at the moment the demo
/// serves) and their `counts`, with the last [`RECENT_US`] holding at least
/// what the trickle that follows writes in that time (`share` of its rate,
/// at least one record a second). The seeded history averages under one
/// record a second while the trickle writes 2–30; topped up at the
/// history's rate, a quiet hour's last minutes had seconds without records
/// right before the trickle's first (a Wi-Fi kind: five records for a
/// 90-second gap at 02:00 UTC). The bucket the stretch begins in is split
/// there (its records shared by length), so records stay in time order.
pub(crate) fn floor_recent(
    buckets: &[Bucket],
    counts: &[u64],
    share: f64,
) -> (Vec<Bucket>, Vec<u64>) {
    let Some(end) = buckets.last().map(|b| b.end_us) else {
        return (Vec::new(), Vec::new());
    };
    let recent = end - RECENT_US;
    let floor = |b: &Bucket| {
        let seconds = (b.end_us - b.start_us) as f64 / MICROS_PER_SECOND as f64;
        (seconds * (trickle_rate(b.start_us) * share).max(1.0)).ceil() as u64
    };
    let (mut floored, mut floored_counts) = (Vec::new(), Vec::new());
    for (bucket, &count) in buckets.iter().zip(counts) {
        if bucket.end_us <= recent {
            floored.push(*bucket);
            floored_counts.push(count);
            continue;
        }
        let mut tail = *bucket;
        let mut tail_count = count;
        if bucket.start_us < recent {
            let share_before =
                (recent - bucket.start_us) as f64 / (bucket.end_us - bucket.start_us) as f64;
            let before = ((count as f64) * share_before).round() as u64;
            floored.push(Bucket {
                end_us: recent,
                weight: bucket.weight * share_before,
                ..*bucket
            });
            floored_counts.push(before);
            tail = Bucket {
                start_us: recent,
                weight: bucket.weight * (1.0 - share_before),
                ..*bucket
            };
            tail_count = count - before;
        }
        floored_counts.push(tail_count.max(floor(&tail)));
        floored.push(tail);
    }
    (floored, floored_counts)
}

/// Cumulative Zipf weights for `n` ranks, normalised to end at 1.
pub(crate) fn zipf_cumulative(n: usize, skew: f64) -> Vec<f64> {
    let mut cumulative = Vec::with_capacity(n);
    let mut sum = 0.0;
    for rank in 1..=n {
        sum += (rank as f64).powf(-skew);
        cumulative.push(sum);
    }
    for c in &mut cumulative {
        *c /= sum;
    }
    cumulative
}

/// Draws an index from a cumulative distribution ending at 1.
pub(crate) fn sample(cumulative: &[f64], rng: &mut StdRng) -> usize {
    let u: f64 = rng.gen();
    cumulative
        .partition_point(|&c| c <= u)
        .min(cumulative.len().saturating_sub(1))
}

/// Returns the trickle's events per second at `t_us`: 2 at the quietest hour, 30 at the busiest.
pub(crate) fn trickle_rate(t_us: i64) -> f64 {
    let peak = HOUR_WEIGHTS.iter().copied().fold(0.0, f64::max);
    TRICKLE_MIN_RATE + (TRICKLE_MAX_RATE - TRICKLE_MIN_RATE) * rate_weight(t_us) / peak
}

/// The rhythm of a trickle: a round every `period` until its shutdown
/// future resolves; failed rounds are logged, and `max_failures` in a row
/// end it with [`DemoError::TrickleFailed`].
pub(crate) struct Rounds<'a, F: std::future::Future<Output = ()>> {
    shutdown: std::pin::Pin<&'a mut F>,
    interval: tokio::time::Interval,
    failures: u32,
    max_failures: u32,
    table: &'static str,
    stopped: bool,
}

impl<'a, F: std::future::Future<Output = ()>> Rounds<'a, F> {
    /// Rounds of the trickle writing `table` (named in its log lines).
    pub(crate) fn new(
        period: std::time::Duration,
        max_failures: u32,
        table: &'static str,
        shutdown: std::pin::Pin<&'a mut F>,
    ) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Rounds {
            shutdown,
            interval,
            failures: 0,
            max_failures,
            table,
            stopped: false,
        }
    }

    /// Waits for the next round: false once shut down.
    pub(crate) async fn next(&mut self) -> bool {
        if self.stopped {
            return false;
        }
        tokio::select! {
            biased;
            () = self.shutdown.as_mut() => self.stopped = true,
            _ = self.interval.tick() => {}
        }
        !self.stopped
    }

    /// Runs one round's `work`, unless shut down first (`None`).
    pub(crate) async fn run<T>(&mut self, work: impl std::future::Future<Output = T>) -> Option<T> {
        if self.stopped {
            return None;
        }
        let outcome = tokio::select! {
            biased;
            () = self.shutdown.as_mut() => None,
            outcome = work => Some(outcome),
        };
        self.stopped = outcome.is_none();
        outcome
    }

    /// Counts a round's outcome (its error as text for the log).
    pub(crate) fn record(&mut self, outcome: Result<(), String>) -> Result<(), DemoError> {
        match outcome {
            Ok(()) => self.failures = 0,
            Err(last) => {
                self.failures += 1;
                let failures = self.failures;
                tracing::warn!(table = self.table, error = %last, failures, "demo trickle could not write records");
                if failures >= self.max_failures {
                    return Err(DemoError::TrickleFailed { failures, last });
                }
            }
        }
        Ok(())
    }
}

/// Keeps inserting records of `generator` every second until `shutdown`
/// resolves, stamped within the last second, `share` times the
/// authentication-event rate (which follows the daily rhythm, 2–30 per
/// second), at least one. A failed second is logged and retried; after 60
/// failures in a row the trickle gives up with [`DemoError::TrickleFailed`].
pub(crate) async fn trickle_records<S: Source>(
    pool: deadpool_postgres::Pool,
    mut generator: S,
    share: f64,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DemoError> {
    let shutdown = std::pin::pin!(shutdown);
    let mut rounds = Rounds::new(
        std::time::Duration::from_secs(1),
        TRICKLE_MAX_FAILURES,
        S::SCHEMA.table,
        shutdown,
    );
    while rounds.next().await {
        let now_us = Utc::now().timestamp_micros();
        let rate = trickle_rate(now_us) * share * generator.rng().gen_range(0.6..1.4);
        let count = (rate.round() as usize).max(1);
        let mut times: Vec<i64> = (0..count)
            .map(|_| now_us - generator.rng().gen_range(0..MICROS_PER_SECOND))
            .collect();
        times.sort_unstable();
        let Some(outcome) = rounds
            .run(insert_second(&pool, &mut generator, &times))
            .await
        else {
            break;
        };
        rounds.record(outcome)?;
    }
    Ok(())
}

/// Inserts one second of trickle records; errors come back as text for the log.
pub(crate) async fn insert_second<S: Source>(
    pool: &deadpool_postgres::Pool,
    generator: &mut S,
    times: &[i64],
) -> Result<(), String> {
    let client = pool
        .get()
        .await
        .map_err(|e| format!("cannot get a connection: {e}"))?;
    let mut writer = CopyWriter::start_by_organization(&client, S::SCHEMA, organization)
        .await
        .map_err(|e| describe(&e))?;
    for &t in times {
        let at =
            DateTime::from_timestamp_micros(t).ok_or_else(|| format!("time {t} out of range"))?;
        writer
            .write(&generator.record(at))
            .await
            .map_err(|e| describe(&e))?;
    }
    writer.finish().await.map_err(|e| describe(&e))?;
    Ok(())
}

/// A private cluster for the demo generators' tests, a fresh migrated
/// database per test.
#[cfg(test)]
pub(crate) mod test_db {
    use crate::db::embedded::{test_cluster_dir, EmbeddedOptions, EmbeddedPostgres};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;

    /// One cluster for all demo tests; its postmaster dies with the test process.
    fn cluster() -> &'static EmbeddedPostgres {
        static CLUSTER: OnceLock<Result<EmbeddedPostgres, String>> = OnceLock::new();
        let started = CLUSTER.get_or_init(|| {
            let data_dir = test_cluster_dir().map_err(|e| e.to_string())?;
            EmbeddedPostgres::start(EmbeddedOptions {
                data_dir,
                durable: false,
                ..Default::default()
            })
            .map_err(|e| e.to_string())
        });
        match started {
            Ok(pg) => pg,
            Err(e) => panic!("cannot start the test cluster: {e}"),
        }
    }

    /// Creates a fresh migrated database and returns its connection settings.
    pub(crate) async fn fresh_database() -> tokio_postgres::Config {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pg = tokio::task::spawn_blocking(cluster).await.expect("cluster");
        let name = format!("demo_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let admin = connect(&pg.pg_config("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let config = pg.pg_config(&name);
        crate::db::migrate::run(&mut connect(&config).await, &crate::kinds::REGISTRY.kinds())
            .await
            .expect("migrate");
        config
    }

    pub(crate) async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A top-up's last minutes hold at least the trickle's rate, in time
    /// order; what is older keeps its history's rate.
    #[test]
    fn a_top_up_ends_at_the_trickles_rate() {
        // A weekday's quietest hour: the trickle writes 2.3 a second.
        let quiet: i64 = "2026-12-08T02:30:00Z"
            .parse::<DateTime<Utc>>()
            .expect("time")
            .timestamp_micros();
        let gap = plan(quiet - 90 * MICROS_PER_SECOND, quiet, None);
        let counts = apportion(5, &gap);
        let (buckets, floored) = floor_recent(&gap, &counts, 0.25);
        assert_eq!(buckets.len(), 1);
        assert_eq!(floored, vec![90], "one a second, at least");
        let (_, floored) = floor_recent(&gap, &counts, 1.0);
        let rate = trickle_rate(quiet);
        assert!(rate > 2.0 && rate < 2.5, "{rate}");
        assert_eq!(
            floored,
            vec![(90.0 * rate).ceil() as u64],
            "the trickle's rate"
        );
        // Two hours: only the last five minutes change, split where they begin.
        let gap = plan(quiet - 2 * MICROS_PER_HOUR, quiet, None);
        let counts = apportion(1_000, &gap);
        let (buckets, floored) = floor_recent(&gap, &counts, 0.25);
        assert!(buckets.windows(2).all(|w| w[0].end_us == w[1].start_us));
        assert_eq!(
            buckets.first().map(|b| b.start_us),
            gap.first().map(|b| b.start_us)
        );
        assert_eq!(buckets.last().map(|b| b.end_us), Some(quiet));
        let recent: Vec<(Bucket, u64)> = buckets
            .iter()
            .copied()
            .zip(floored.iter().copied())
            .filter(|(b, _)| b.start_us >= quiet - RECENT_US)
            .collect();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].0.start_us, quiet - RECENT_US);
        assert_eq!(recent[0].1, 300);
        // Before them, the history's rate: the five minutes had a few of
        // the 1,000 (a quiet hour's sixth of an hour), now 300.
        let before: u64 = floored[..floored.len() - 1].iter().sum();
        assert!(before < 1_000 && 1_000 - before < 50, "{before}");
        assert_eq!(floor_recent(&[], &[], 1.0), (Vec::new(), Vec::new()));
    }

    /// Every trickle's rhythm: failures in a row end it, a success resets
    /// the count, and shutdown stops both the wait and the work.
    #[tokio::test]
    async fn rounds_count_failures_in_a_row_and_stop_on_shutdown() {
        let never = std::pin::pin!(std::future::pending::<()>());
        let mut rounds = Rounds::new(std::time::Duration::from_millis(1), 3, "t", never);
        assert!(rounds.next().await);
        assert!(rounds.record(Err("a".into())).is_ok());
        assert!(rounds.record(Err("b".into())).is_ok());
        assert!(rounds.record(Ok(())).is_ok());
        assert!(rounds.record(Err("c".into())).is_ok());
        assert!(rounds.record(Err("d".into())).is_ok());
        match rounds.record(Err("e".into())) {
            Err(DemoError::TrickleFailed { failures, last }) => {
                assert_eq!((failures, last.as_str()), (3, "e"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rounds.run(async { 7 }).await, Some(7));

        let stopped = std::pin::pin!(std::future::ready(()));
        let mut rounds = Rounds::new(std::time::Duration::from_millis(1), 3, "t", stopped);
        assert_eq!(rounds.run(std::future::pending::<u8>()).await, None);
        // Once stopped, the shutdown future is not polled again.
        assert!(!rounds.next().await);
        assert_eq!(rounds.run(async { 1 }).await, None);
    }
}

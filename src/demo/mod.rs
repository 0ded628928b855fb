//! Realistic demo data for every kind: a bulk seed, a top-up to now and a
//! live trickle of new records. Each kind has its generator module
//! ([`auth`]: authentication events, [`client`]: Wi-Fi client events); the
//! daily rhythm, the option type and the errors are shared here.
//!
//! Everything is deterministic for a given random seed (with the `rand` version we lock).

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::Rng;

pub mod auth;
pub mod client;

pub use auth::{backfill, seed, trickle};

/// The number of events [`SeedOptions::default`] inserts.
pub const DEFAULT_EVENTS: u64 = 1_200_000;
/// The number of days [`SeedOptions::default`] spreads events over.
pub const DEFAULT_DAYS: u32 = 30;
/// The number of distinct users [`SeedOptions::default`] draws from.
pub const DEFAULT_USERS: u32 = 20_000;
/// The random seed [`SeedOptions::default`] uses.
pub const DEFAULT_RNG_SEED: u64 = 42;

/// Relative event rate per UTC hour of a weekday.
const HOUR_WEIGHTS: [f64; 24] = [
    0.15, 0.10, 0.08, 0.08, 0.10, 0.25, 0.60, 1.60, 4.00, 6.00, 6.50, 6.00, 4.50, 5.50, 6.00, 5.50,
    4.50, 3.00, 1.80, 1.20, 0.90, 0.70, 0.50, 0.30,
];
/// Weekend traffic relative to weekdays.
const WEEKEND_FACTOR: f64 = 0.25;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// Rows per COPY statement (roughly a day of default demo data).
const COPY_CHUNK_ROWS: u64 = 50_000;
/// How often `progress` is called.
const PROGRESS_EVERY: u64 = 100_000;

/// Trickle events per second at the quietest and the busiest hour.
const TRICKLE_MIN_RATE: f64 = 2.0;
const TRICKLE_MAX_RATE: f64 = 30.0;
/// The trickle gives up after this many failed seconds in a row.
const TRICKLE_MAX_FAILURES: u32 = 60;

/// Everything that can go wrong while generating demo data.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The options cannot produce data.
    #[error("invalid demo data options: {0}")]
    InvalidOptions(String),
    /// The database rejected a statement.
    #[error("demo data: {action} failed: {detail} (has the auth_event table been migrated?)")]
    Database {
        /// What we were doing.
        action: &'static str,
        /// The database's explanation.
        detail: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },
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

fn db_err(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DemoError {
    move |source| DemoError::Database {
        action,
        detail: describe(&source),
        source,
    }
}

/// Spells out a tokio-postgres error, whose own Display is often just "db error".
fn describe(error: &tokio_postgres::Error) -> String {
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
#[derive(Debug, Clone, Copy)]
struct Bucket {
    start_us: i64,
    end_us: i64,
    weight: f64,
}

/// Returns the relative event rate at `t_us` (µs since the epoch), per hour.
fn rate_weight(t_us: i64) -> f64 {
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
fn plan(start_us: i64, end_us: i64, mut noise: Option<&mut StdRng>) -> Vec<Bucket> {
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
fn apportion(total: u64, buckets: &[Bucket]) -> Vec<u64> {
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

/// Cumulative Zipf weights for `n` ranks, normalised to end at 1.
fn zipf_cumulative(n: usize, skew: f64) -> Vec<f64> {
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
fn sample(cumulative: &[f64], rng: &mut StdRng) -> usize {
    let u: f64 = rng.gen();
    cumulative
        .partition_point(|&c| c <= u)
        .min(cumulative.len().saturating_sub(1))
}

/// Returns the trickle's events per second at `t_us`: 2 at the quietest hour, 30 at the busiest.
fn trickle_rate(t_us: i64) -> f64 {
    let peak = HOUR_WEIGHTS.iter().copied().fold(0.0, f64::max);
    TRICKLE_MIN_RATE + (TRICKLE_MAX_RATE - TRICKLE_MIN_RATE) * rate_weight(t_us) / peak
}

//! Demo authentication events: a bulk seed, a backfill up to now and a live trickle.
//!
//! Events follow a daily rhythm (quiet nights, busy office hours, calm weekends; hours are
//! UTC), a skewed mix of ten authentication methods, about fifty applications and a user
//! population with a few heavy users. User ids mix LDAP-style DNs and e-mail addresses,
//! including a few awkward ones (commas, double quotes, non-ASCII) that exercise encoders.
//! Everything is deterministic for a given random seed (with the `rand` version we lock).

use crate::demo::*;
use std::future::Future;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::core::ingest::{IngestSchema, Record, Value, MAX_FIELDS};
use crate::kinds::auth::INGEST;

/// The authentication methods as (type, name, relative weight); weights sum to 100.
const METHODS: [(&str, &str, u32); 10] = [
    ("PASSWORD", "password.1", 40),
    ("OAUTH2", "oauth2.1", 18),
    ("SAML", "saml.1", 12),
    ("UNREGISTERED.SMTP", "smtp.1", 8),
    ("TOTP", "totp.1", 7),
    ("SMS", "sms.1", 5),
    ("SPNEGO", "kerberos.1", 4),
    ("FIDO2", "webauthn.1", 3),
    ("X509", "certificate.1", 2),
    ("RADIUS", "radius.1", 1),
];

/// The number of applications events come from.
const APPLICATIONS: usize = 50;
/// The Zipf exponent of application popularity.
const APPLICATION_SKEW: f64 = 1.1;
/// The Zipf exponent of user activity: a few heavy users, a long tail.
const USER_SKEW: f64 = 0.9;

/// User ids that trip up naive CSV, JSON or DN handling, placed at these activity ranks.
const TRICKY_USERS: [(usize, &str); 5] = [
    (3, "CN=Müller\\, Jörg,OU=Users,DC=test"),
    (9, "CN=Anna \"Annie\" Ström,OU=Users,DC=test"),
    (20, "\"o'neil, pat\"@example.com"),
    (45, "CN=Łukasz Żółć,OU=Users,DC=test"),
    (120, "CN=山田 太郎,OU=Users,DC=test"),
];

const FIRST_NAMES: [&str; 16] = [
    "Jane", "John", "Aino", "Mikko", "Maria", "Ahmed", "Li", "Sofia", "Pekka", "Emma", "Oskari",
    "Fatima", "Lars", "Noora", "Carlos", "Yuki",
];
const LAST_NAMES: [&str; 16] = [
    "Doe",
    "Smith",
    "Virtanen",
    "Korhonen",
    "Nieminen",
    "Garcia",
    "Chen",
    "Khan",
    "Laine",
    "Heikkinen",
    "Johansson",
    "Rossi",
    "Novak",
    "Tanaka",
    "Silva",
    "Brown",
];

/// The user population, applications and method mix, plus the random stream drawing from them.
struct Generator {
    rng: StdRng,
    method_table: [u8; 1024],
    applications: Vec<String>,
    application_cumulative: Vec<f64>,
    users: Vec<String>,
    user_cumulative: Vec<f64>,
}

impl Generator {
    /// Builds the population from `population_seed` and draws events from `event_seed`.
    fn new(population_seed: u64, users: u32, event_seed: u64) -> Generator {
        let mut population_rng = StdRng::seed_from_u64(population_seed);
        let user_count = usize::try_from(users).unwrap_or(usize::MAX).max(1);

        // Rank r is the r-th most active user; shuffle numbers so rank and number differ.
        let mut numbers: Vec<usize> = (1..=user_count).collect();
        for i in (1..numbers.len()).rev() {
            let j = population_rng.gen_range(0..=i);
            numbers.swap(i, j);
        }
        let mut user_ids: Vec<String> = numbers
            .iter()
            .map(|&n| {
                if n % 5 < 3 {
                    let first = FIRST_NAMES[n % FIRST_NAMES.len()];
                    let last = LAST_NAMES[(n / FIRST_NAMES.len()) % LAST_NAMES.len()];
                    format!("CN={first} {last} {n},OU=Users,DC=test")
                } else {
                    format!("user{n}@example.com")
                }
            })
            .collect();
        for (rank, id) in TRICKY_USERS {
            if let Some(slot) = user_ids.get_mut(rank) {
                *slot = id.to_owned();
            }
        }

        let applications = (1..=APPLICATIONS)
            .map(|n| format!("CN=Appl-{n},CN=Server,OU=System,CN=Ubilogin,DC=test"))
            .collect();

        let total: u32 = METHODS.iter().map(|m| m.2).sum();
        let mut method_table = [0u8; 1024];
        for (slot, entry) in method_table.iter_mut().enumerate() {
            let point = (slot as f64 + 0.5) / 1024.0 * f64::from(total);
            let mut cumulative = 0.0;
            for (i, method) in METHODS.iter().enumerate() {
                cumulative += f64::from(method.2);
                if point < cumulative {
                    *entry = i as u8;
                    break;
                }
            }
        }

        Generator {
            rng: StdRng::seed_from_u64(event_seed),
            method_table,
            applications,
            application_cumulative: zipf_cumulative(APPLICATIONS, APPLICATION_SKEW),
            users: user_ids,
            user_cumulative: zipf_cumulative(user_count, USER_SKEW),
        }
    }

    /// Draws (method, application, user) indices for one event.
    fn pick(&mut self) -> (usize, usize, usize) {
        let method = usize::from(self.method_table[(self.rng.next_u32() >> 22) as usize]);
        let application = sample(&self.application_cumulative, &mut self.rng);
        let user = sample(&self.user_cumulative, &mut self.rng);
        (method, application, user)
    }
}

impl Source for Generator {
    const SCHEMA: &'static IngestSchema = &INGEST;

    fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    fn record(&mut self, at: DateTime<Utc>) -> Record<'_> {
        let (method, application, user) = self.pick();
        let (method_type, method_name, _) = METHODS[method];
        let mut values = [Value::Null; MAX_FIELDS];
        values[..5].copy_from_slice(&[
            Value::Time(at),
            Value::Text(method_type),
            Value::Text(method_name),
            Value::Text(&self.applications[application]),
            Value::Text(&self.users[user]),
        ]);
        Record {
            schema: &INGEST,
            values,
            tenant: None,
        }
    }
}

/// Inserts `opts.events` events spread over the `opts.days` days before `opts.end`, in time
/// order, with binary COPY; returns the number of rows inserted.
///
/// `progress(done, total)` is called every 100,000 rows and once at the end. Each COPY (about
/// 50,000 rows) commits on its own, so an interrupted seed leaves the rows copied so far.
pub async fn seed(
    client: &tokio_postgres::Client,
    opts: &SeedOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, DemoError> {
    if opts.days == 0 {
        return Err(DemoError::InvalidOptions(
            "days must be at least 1".to_owned(),
        ));
    }
    if opts.users == 0 {
        return Err(DemoError::InvalidOptions(
            "users must be at least 1".to_owned(),
        ));
    }
    if opts.events == 0 {
        return Ok(0);
    }
    let mut generator = Generator::new(opts.rng_seed, opts.users, event_seed(opts.rng_seed));
    let (buckets, counts) = spread(opts, opts.events, &mut generator.rng)?;
    copy_buckets(&mut generator, client, &buckets, &counts, &mut progress).await
}

/// The user population of `rng_seed` (the raw user ids, most active
/// first) and its cumulative activity weights: other kinds' demo data use
/// the same people, so pseudonyms join across kinds.
pub(crate) fn population(rng_seed: u64, users: u32) -> (Vec<String>, Vec<f64>) {
    let generator = Generator::new(rng_seed, users, 0);
    (generator.users, generator.user_cumulative)
}

/// Derives the event stream's seed from the population seed.
fn event_seed(rng_seed: u64) -> u64 {
    rng_seed ^ 0x9e37_79b9_7f4a_7c15
}

/// Fills the gap between the newest stored event and `now` (at most the last `max_days` days)
/// at the rate of the day before the newest event, its last minutes at least at the trickle's
/// ([`floor_recent`]); returns the number of rows inserted.
///
/// An empty table gets nothing (use [`seed`] for that); every new event is after the newest
/// stored one and before `now`. Events come from the default user population.
pub async fn backfill(
    client: &tokio_postgres::Client,
    now: DateTime<Utc>,
    max_days: u32,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, DemoError> {
    let row = client
        .query_one("SELECT max(occurred_at) FROM auth_event", &[])
        .await
        .map_err(db_err("finding the newest event"))?;
    let newest: Option<DateTime<Utc>> =
        row.try_get(0).map_err(db_err("reading the newest event"))?;
    let Some(newest) = newest else {
        return Ok(0);
    };
    let now_us = now.timestamp_micros();
    let newest_us = newest.timestamp_micros();
    let start_us = (newest_us + 1).max(now_us.saturating_sub(i64::from(max_days) * MICROS_PER_DAY));
    if start_us >= now_us {
        return Ok(0);
    }

    // Measure the recent rate: events in the day up to the newest one, per unit of weight.
    let reference_start_us = newest_us - MICROS_PER_DAY;
    let reference_start = DateTime::from_timestamp_micros(reference_start_us)
        .ok_or(DemoError::TimeOutOfRange(reference_start_us))?;
    let row = client
        .query_one(
            "SELECT count(*) FROM auth_event WHERE occurred_at > $1 AND occurred_at <= $2",
            &[&reference_start, &newest],
        )
        .await
        .map_err(db_err("measuring the recent event rate"))?;
    let recent: i64 = row
        .try_get(0)
        .map_err(db_err("reading the recent event rate"))?;
    let reference_weight: f64 = plan(reference_start_us, newest_us + 1, None)
        .iter()
        .map(|b| b.weight)
        .sum();
    if reference_weight <= 0.0 {
        return Ok(0);
    }
    let density = recent as f64 / reference_weight;

    let mut generator = Generator::new(DEFAULT_RNG_SEED, DEFAULT_USERS, event_seed(now_us as u64));
    let buckets = plan(start_us, now_us, Some(&mut generator.rng));
    let gap_weight: f64 = buckets.iter().map(|b| b.weight).sum();
    let total = (density * gap_weight).round() as u64;
    let (buckets, counts) = floor_recent(&buckets, &apportion(total, &buckets), TRICKLE_SHARE);
    copy_buckets(&mut generator, client, &buckets, &counts, &mut progress).await
}

/// The share of the trickle's rate (2–30 a second) these events are
/// written at, by the trickle and at the end of a top-up.
const TRICKLE_SHARE: f64 = 1.0;

/// Keeps inserting a few events every second, stamped with the current time, until `shutdown`
/// resolves; the rate follows the daily rhythm (2–30 per second).
///
/// A failed second is logged and retried; after 60 failures in a row the trickle gives up with
/// [`DemoError::TrickleFailed`].
pub async fn trickle(
    pool: deadpool_postgres::Pool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DemoError> {
    let start_us = Utc::now().timestamp_micros();
    let generator = Generator::new(
        DEFAULT_RNG_SEED,
        DEFAULT_USERS,
        event_seed(start_us as u64).rotate_left(17),
    );
    trickle_records(pool, generator, TRICKLE_SHARE, shutdown).await
}

/// The demo of authentication events (the registry entry's `demo`).
pub struct AuthDemo;

/// The seed's progress on the console.
fn progress(done: u64, total: u64) {
    eprint!("\r  authentication events: {done} / {total}");
}

impl Demo for AuthDemo {
    fn rows(&self, options: &SeedOptions) -> u64 {
        options.events
    }

    fn seed<'a>(&'a self, fill: &'a Fill<'a>, rows: u64) -> Written<'a> {
        Box::pin(async move {
            let client = fill.client().await?;
            let options = SeedOptions {
                events: rows,
                ..fill.options.clone()
            };
            seed(&client, &options, progress).await
        })
    }

    fn top_up<'a>(&'a self, fill: &'a Fill<'a>) -> Written<'a> {
        Box::pin(async move {
            let client = fill.client().await?;
            backfill(&client, fill.options.end, fill.options.days, progress).await
        })
    }

    fn trickle(
        &self,
        pool: deadpool_postgres::Pool,
        _pseudonymiser: crate::core::pseudonym::Pseudonymiser,
        stop: futures_util::future::BoxFuture<'static, ()>,
    ) -> Trickle {
        Box::pin(trickle(pool, stop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::test_db::{connect, fresh_database};
    use std::time::Duration;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid timestamp")
            .with_timezone(&Utc)
    }

    #[test]
    fn apportion_is_exact_and_follows_the_rhythm() {
        let start = at("2024-03-04T00:00:00Z").timestamp_micros(); // a Monday
        let buckets = plan(start, start + 7 * MICROS_PER_DAY, None);
        assert_eq!(buckets.len(), 7 * 24);
        let counts = apportion(100_000, &buckets);
        assert_eq!(counts.iter().sum::<u64>(), 100_000);
        let monday_10 = counts[10];
        let monday_03 = counts[3];
        let saturday_10 = counts[5 * 24 + 10];
        assert!(monday_10 > 20 * monday_03, "{monday_10} vs {monday_03}");
        assert!(monday_10 > 3 * saturday_10, "{monday_10} vs {saturday_10}");
    }

    #[test]
    fn generator_is_deterministic_and_skewed() {
        let mut a = Generator::new(7, 1_000, 8);
        let mut b = Generator::new(7, 1_000, 8);
        let mut method_counts = [0u32; METHODS.len()];
        let mut user_counts = vec![0u32; 1_000];
        for _ in 0..50_000 {
            let picked = a.pick();
            assert_eq!(picked, b.pick());
            method_counts[picked.0] += 1;
            user_counts[picked.2] += 1;
        }
        assert!(method_counts.iter().all(|&c| c > 0), "{method_counts:?}");
        assert!(method_counts[0] > method_counts[1] * 2, "{method_counts:?}");
        assert!(
            user_counts[0] > 20 * user_counts[999],
            "{:?}",
            &user_counts[..5]
        );
        assert_eq!(a.users[3], TRICKY_USERS[0].1);
    }

    #[tokio::test]
    async fn seed_inserts_ordered_realistic_events() {
        let config = fresh_database().await;
        let client = connect(&config).await;
        let end = at("2024-05-02T12:34:56.789Z");
        let opts = SeedOptions {
            events: 20_000,
            days: 2,
            end,
            users: 500,
            rng_seed: 1,
        };
        let mut calls = Vec::new();
        let inserted = seed(&client, &opts, |done, total| calls.push((done, total)))
            .await
            .expect("seed");
        assert_eq!(inserted, 20_000);
        assert_eq!(calls.last(), Some(&(20_000, 20_000)));

        let row = client
            .query_one(
                "SELECT count(*), min(occurred_at), max(occurred_at), \
                        count(DISTINCT auth_method_type), count(DISTINCT auth_request_origin) \
                 FROM auth_event",
                &[],
            )
            .await
            .expect("stats");
        assert_eq!(row.get::<_, i64>(0), 20_000);
        let min: DateTime<Utc> = row.get(1);
        let max: DateTime<Utc> = row.get(2);
        assert!(min >= end - chrono::Duration::days(2), "{min}");
        assert!(max < end, "{max}");
        assert!(row.get::<_, i64>(3) >= 10);
        assert!(row.get::<_, i64>(4) >= 30);

        let unordered: i64 = client
            .query_one(
                "SELECT count(*) FROM (SELECT occurred_at < lag(occurred_at) OVER (ORDER BY id) \
                 AS back FROM auth_event) s WHERE back",
                &[],
            )
            .await
            .expect("order")
            .get(0);
        assert_eq!(unordered, 0, "ids are not in time order");

        let mix = client
            .query(
                "SELECT auth_method_type, count(*) FROM auth_event GROUP BY 1 ORDER BY 2 DESC",
                &[],
            )
            .await
            .expect("mix");
        assert_eq!(mix[0].get::<_, &str>(0), "PASSWORD");
        let top: i64 = mix[0].get(1);
        let bottom: i64 = mix[mix.len() - 1].get(1);
        assert!(top > 10 * bottom, "{top} vs {bottom}");

        let tricky: i64 = client
            .query_one(
                "SELECT count(*) FROM auth_event WHERE user_id LIKE '%\\,%' OR user_id LIKE '%\"%'",
                &[],
            )
            .await
            .expect("tricky")
            .get(0);
        assert!(tricky > 0);
        let emails: i64 = client
            .query_one(
                "SELECT count(*) FROM auth_event WHERE user_id LIKE '%@example.com'",
                &[],
            )
            .await
            .expect("emails")
            .get(0);
        assert!(emails > 1_000 && emails < 19_000, "{emails}");

        // Same options, same data.
        let again = connect(&fresh_database().await).await;
        seed(&again, &opts, |_, _| {}).await.expect("seed again");
        let digest = "SELECT md5(string_agg(occurred_at::text || auth_method_name || \
                      auth_request_origin || user_id, '|' ORDER BY id)) FROM auth_event";
        let a: String = client.query_one(digest, &[]).await.expect("digest").get(0);
        let b: String = again.query_one(digest, &[]).await.expect("digest").get(0);
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn backfill_fills_the_gap_up_to_now_only() {
        let config = fresh_database().await;
        let client = connect(&config).await;
        let now = Utc::now();
        assert_eq!(
            backfill(&client, now, 30, |_, _| {}).await.expect("empty"),
            0
        );

        let end = now - chrono::Duration::hours(36);
        let opts = SeedOptions {
            events: 10_000,
            days: 2,
            end,
            users: 300,
            rng_seed: 3,
        };
        seed(&client, &opts, |_, _| {}).await.expect("seed");
        let seeded_newest: DateTime<Utc> = client
            .query_one("SELECT max(occurred_at) FROM auth_event", &[])
            .await
            .expect("newest")
            .get(0);
        assert!(seeded_newest < end);
        let inserted = backfill(&client, now, 30, |_, _| {})
            .await
            .expect("backfill");
        assert!(inserted > 1_000, "{inserted}");
        let row = client
            .query_one(
                "SELECT count(*), min(occurred_at), max(occurred_at) FROM auth_event \
                 WHERE occurred_at > $1",
                &[&seeded_newest],
            )
            .await
            .expect("gap");
        assert_eq!(row.get::<_, i64>(0) as u64, inserted);
        let max: DateTime<Utc> = row.get(2);
        assert!(max < now, "{max} >= {now}");
        assert!(max > now - chrono::Duration::hours(2), "{max}");
        // Only the seconds between the newest event and `now` are left to fill.
        let again = backfill(&client, now, 30, |_, _| {}).await.expect("again");
        assert!(again < 20, "{again}");
        let max: DateTime<Utc> = client
            .query_one("SELECT max(occurred_at) FROM auth_event", &[])
            .await
            .expect("max")
            .get(0);
        assert!(max < now, "{max} >= {now}");
        // A newest event at `now` leaves nothing to fill.
        assert_eq!(
            backfill(&client, max, 30, |_, _| {}).await.expect("none"),
            0
        );
    }

    #[tokio::test]
    async fn trickle_inserts_and_stops() {
        let config = fresh_database().await;
        let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
            config.clone(),
            tokio_postgres::NoTls,
        ))
        .max_size(1)
        .build()
        .expect("pool");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(trickle(pool, async move {
            let _ = stopped.await;
        }));
        let client = connect(&config).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(2_500);
        let mut count = 0i64;
        while count == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            count = client
                .query_one("SELECT count(*) FROM auth_event", &[])
                .await
                .expect("count")
                .get(0);
        }
        assert!(count > 0, "nothing inserted within 2.5 s");
        let _ = stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("trickle stops on shutdown")
            .expect("trickle task");
        assert!(result.is_ok(), "{result:?}");
        let max: DateTime<Utc> = client
            .query_one("SELECT max(occurred_at) FROM auth_event", &[])
            .await
            .expect("max")
            .get(0);
        assert!(max <= Utc::now());
    }
}

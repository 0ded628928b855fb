//! Retention: deleting raw events older than the policy's cutoff, in small
//! batches, and the background job that does it periodically.
//!
//! Each batch is one short `DELETE` of at most [`RetentionOptions::batch_rows`]
//! rows, picked oldest first through the `(occurred_at, id)` index and
//! continuing after the last deleted key (so no batch rescans the dead rows
//! of the previous ones), in its own transaction, with a pause between
//! batches. Inserts never wait for it (they touch other rows) and readers are
//! never blocked (MVCC). The usage rollups are not touched: there is no
//! delete trigger, so reports keep their figures.
//!
//! A raw event is never deleted before it is rolled up: a pass first brings
//! the rollups up to date ([`crate::db::rollup::catch_up`], waiting mode),
//! and every batch (and the dry run's count) also skips the ids of any queue
//! row still visible, since a transaction may commit between the catch-up
//! and a batch. Such events are deleted by a later pass.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use super::rollup;
use super::DbError;
use crate::core::retention::RetentionPolicy;

/// Default days of raw events kept.
pub const DEFAULT_DAYS: u32 = 180;
/// Default time between two runs of the background job.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// Default delay before the background job's first run.
pub const DEFAULT_FIRST_RUN_DELAY: Duration = Duration::from_secs(10);
/// Default rows per `DELETE`.
pub const DEFAULT_BATCH_ROWS: i64 = 5_000;
/// Default pause between two batches.
pub const DEFAULT_BATCH_PAUSE: Duration = Duration::from_millis(50);

/// Excludes events not yet rolled up (covered by a queued range).
macro_rules! rolled_up {
    () => {
        "NOT EXISTS (SELECT 1 FROM usage_rollup_queue q WHERE auth_event.id BETWEEN q.lo AND q.hi)"
    };
}

/// The first batch: the oldest rolled-up rows before the cutoff.
const FIRST_BATCH_SQL: &str = concat!(
    "\
    WITH batch AS ( \
        SELECT id, occurred_at FROM auth_event WHERE occurred_at < $1 AND ",
    rolled_up!(),
    " \
        ORDER BY occurred_at, id LIMIT $2 \
    ), gone AS ( \
        DELETE FROM auth_event e USING batch b WHERE e.id = b.id RETURNING e.id \
    ) \
    SELECT (SELECT count(*) FROM gone), occurred_at, id FROM batch \
    ORDER BY occurred_at DESC, id DESC LIMIT 1"
);

/// The following batches: the oldest rolled-up rows after the last key of
/// the previous batch.
const NEXT_BATCH_SQL: &str = concat!(
    "\
    WITH batch AS ( \
        SELECT id, occurred_at FROM auth_event \
        WHERE occurred_at < $1 AND (occurred_at, id) > ($3, $4) AND ",
    rolled_up!(),
    " \
        ORDER BY occurred_at, id LIMIT $2 \
    ), gone AS ( \
        DELETE FROM auth_event e USING batch b WHERE e.id = b.id RETURNING e.id \
    ) \
    SELECT (SELECT count(*) FROM gone), occurred_at, id FROM batch \
    ORDER BY occurred_at DESC, id DESC LIMIT 1"
);

const PREVIEW_SQL: &str = concat!(
    "SELECT count(*), min(occurred_at), max(occurred_at) FROM auth_event WHERE occurred_at < $1 AND ",
    rolled_up!()
);

/// How retention runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionOptions {
    /// Which events are old enough to delete.
    pub policy: RetentionPolicy,
    /// Time between two runs of the background job.
    pub interval: Duration,
    /// Delay before the background job's first run.
    pub first_run_delay: Duration,
    /// Rows per `DELETE` statement.
    pub batch_rows: i64,
    /// Pause between two batches.
    pub batch_pause: Duration,
    /// The usage-rollup keys (events are rolled up before they are deleted).
    pub rollup_keys: crate::core::pseudonym::RollupKeys,
}

impl Default for RetentionOptions {
    /// 180 days, hourly, first run 10 s after start, 5,000 rows per batch,
    /// 50 ms between batches.
    fn default() -> Self {
        RetentionOptions {
            policy: RetentionPolicy::new(DEFAULT_DAYS),
            interval: DEFAULT_INTERVAL,
            first_run_delay: DEFAULT_FIRST_RUN_DELAY,
            batch_rows: DEFAULT_BATCH_ROWS,
            batch_pause: DEFAULT_BATCH_PAUSE,
            rollup_keys: Default::default(),
        }
    }
}

/// What a dry run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgePreview {
    /// Events before the cutoff.
    pub events: i64,
    /// The oldest of them.
    pub oldest: Option<DateTime<Utc>>,
    /// The newest of them.
    pub newest: Option<DateTime<Utc>>,
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeOutcome {
    /// Events deleted.
    pub deleted: u64,
    /// Network access sessions deleted: closed ones whose stop is before the
    /// cutoff (an open session is never deleted).
    pub sessions_deleted: u64,
    /// `DELETE` statements run.
    pub batches: u64,
    /// Wall time of the pass, pauses included.
    pub elapsed: Duration,
    /// True when the pass stopped because of shutdown before it was done.
    pub interrupted: bool,
}

/// Counts the events before `cutoff` that [`purge`] would delete, deleting
/// nothing: like a pass, it brings the rollups up to date first and counts
/// only events rolled up.
pub async fn preview(
    pool: &Pool,
    cutoff: DateTime<Utc>,
    keys: &crate::core::pseudonym::RollupKeys,
) -> Result<PurgePreview, DbError> {
    rollup::catch_up_pool(pool, rollup::Mode::Complete, keys).await?;
    let client = pool.get().await?;
    let row = client.query_one(PREVIEW_SQL, &[&cutoff]).await?;
    Ok(PurgePreview {
        events: row.try_get(0)?,
        oldest: row.try_get(1)?,
        newest: row.try_get(2)?,
    })
}

/// Deletes every event before `cutoff`, batch by batch, checking out a
/// connection per batch (none is held during the pauses), after bringing the
/// rollups up to date. Stops early, between batches, once `cancel` is
/// cancelled.
pub async fn purge(
    pool: &Pool,
    cutoff: DateTime<Utc>,
    options: &RetentionOptions,
    cancel: &CancellationToken,
) -> Result<PurgeOutcome, DbError> {
    let started = Instant::now();
    rollup::catch_up_pool(pool, rollup::Mode::Complete, &options.rollup_keys).await?;
    let mut outcome = purge_rolled_up(pool, cutoff, options, cancel).await?;
    if !outcome.interrupted {
        let (deleted, interrupted) = super::sessions::purge(
            pool,
            cutoff,
            options.batch_rows.max(1),
            options.batch_pause,
            cancel,
        )
        .await?;
        outcome.sessions_deleted = deleted;
        outcome.interrupted = interrupted;
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// Deletes the events before `cutoff` that are already rolled up (not
/// covered by a queued range), in batches like [`purge`], without catching
/// up first.
pub async fn purge_rolled_up(
    pool: &Pool,
    cutoff: DateTime<Utc>,
    options: &RetentionOptions,
    cancel: &CancellationToken,
) -> Result<PurgeOutcome, DbError> {
    let started = Instant::now();
    let limit = options.batch_rows.max(1);
    let mut outcome = PurgeOutcome {
        deleted: 0,
        sessions_deleted: 0,
        batches: 0,
        elapsed: Duration::ZERO,
        interrupted: false,
    };
    let mut last: Option<(DateTime<Utc>, i64)> = None;
    loop {
        if cancel.is_cancelled() {
            outcome.interrupted = true;
            break;
        }
        let row = {
            let client = pool.get().await?;
            match last {
                None => {
                    let statement = client.prepare_cached(FIRST_BATCH_SQL).await?;
                    client.query_opt(&statement, &[&cutoff, &limit]).await
                }
                Some((at, id)) => {
                    let statement = client.prepare_cached(NEXT_BATCH_SQL).await?;
                    client
                        .query_opt(&statement, &[&cutoff, &limit, &at, &id])
                        .await
                }
            }?
        };
        outcome.batches += 1;
        // No row: nothing left before the cutoff (after the last key).
        let Some(row) = row else { break };
        let deleted: i64 = row.try_get(0)?;
        outcome.deleted += u64::try_from(deleted).unwrap_or(0);
        last = Some((row.try_get(1)?, row.try_get(2)?));
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(options.batch_pause) => {}
        }
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// One pass of the background job at `now`, logged.
pub async fn run_once(
    pool: &Pool,
    options: &RetentionOptions,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Result<Option<PurgeOutcome>, DbError> {
    let Some(cutoff) = options.policy.cutoff(now) else {
        return Ok(None);
    };
    let result = purge(pool, cutoff, options, cancel).await;
    match &result {
        Ok(outcome) => tracing::info!(
            cutoff = %cutoff.to_rfc3339(),
            retention_days = options.policy.days(),
            deleted = outcome.deleted,
            sessions_deleted = outcome.sessions_deleted,
            batches = outcome.batches,
            elapsed_ms = outcome.elapsed.as_millis() as u64,
            interrupted = outcome.interrupted,
            "retention pass: deleted {} raw events and {} sessions stopped before {}",
            outcome.deleted,
            outcome.sessions_deleted,
            cutoff.to_rfc3339(),
        ),
        Err(error) => tracing::warn!(
            cutoff = %cutoff.to_rfc3339(),
            error = %error,
            "retention pass failed; retrying at the next interval"
        ),
    }
    result.map(Some)
}

/// The background job: a pass `first_run_delay` after start, then every
/// `interval`, until `cancel` is cancelled. Does nothing when retention is
/// disabled. A failed pass is logged and retried at the next interval.
pub async fn run_job(pool: Pool, options: RetentionOptions, cancel: CancellationToken) {
    if options.policy.is_disabled() {
        tracing::info!("retention disabled (ACCTSTREAM_RETENTION_DAYS=0): raw events are kept");
        return;
    }
    tracing::info!(
        retention_days = options.policy.days(),
        interval_s = options.interval.as_secs(),
        "retention job started"
    );
    let mut delay = options.first_run_delay;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
        // Errors are logged by run_once.
        let _ = run_once(&pool, &options, Utc::now(), &cancel).await;
        delay = options.interval;
    }
    tracing::info!("retention job stopped");
}

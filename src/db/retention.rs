//! Retention: deleting the rows older than the policy's cutoff from every
//! table that holds raw identities, in small batches, and the background
//! job that does it periodically.
//!
//! What goes is declared by the kinds ([`Kind::retention`]); this module
//! names none of them. A pass runs, in order:
//! 1. every kind's upkeep (the usage rollups) is brought up to date
//!    ([`upkeep::settle_all`]), since a kind may keep rows not yet taken in;
//! 2. every rule of every kind, oldest rows first;
//! 3. the identities of rows kept past the cutoff (open sessions, sessions
//!    that began before it) are recorded in the identity directory again, as
//!    seen at their last write ([`directory::refresh_kept`]);
//! 4. the identity directory's own rule ([`directory::RETENTION`]): entries
//!    whose value no record newer than the cutoff carried.
//!
//! Each batch is one short `DELETE` of at most [`RetentionOptions::batch_rows`]
//! rows, picked oldest first through the rule's (time, id) order and
//! continuing after the last deleted key (so no batch rescans the dead rows
//! of the previous ones), in its own transaction, with a pause between
//! batches. Inserts never wait for it (they touch other rows) and readers are
//! never blocked (MVCC). Derived data is not touched: there is no delete
//! trigger, so the usage reports keep their figures.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use super::{changes, directory, upkeep, DbError};
use crate::core::{
    kind::Kind,
    pseudonym::Pseudonymiser,
    retention::{Days, RetentionPolicy, Rule},
};

/// Default days of raw records kept.
pub const DEFAULT_DAYS: u32 = 180;
/// Default time between two runs of the background job.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// Default delay before the background job's first run.
pub const DEFAULT_FIRST_RUN_DELAY: Duration = Duration::from_secs(10);
/// Default rows per `DELETE`.
pub const DEFAULT_BATCH_ROWS: i64 = 5_000;
/// Default pause between two batches.
pub const DEFAULT_BATCH_PAUSE: Duration = Duration::from_millis(50);
/// Default of `ACCTSTREAM_AUDIT_RETENTION_DAYS`.
pub const DEFAULT_AUDIT_DAYS: u32 = 400;

/// How retention runs.
#[derive(Debug, Clone)]
pub struct RetentionOptions {
    /// Which records are old enough to delete (`ACCTSTREAM_RETENTION_DAYS`).
    pub policy: RetentionPolicy,
    /// Which audit entries are old enough to delete
    /// (`ACCTSTREAM_AUDIT_RETENTION_DAYS`).
    pub audit_policy: RetentionPolicy,
    /// Time between two runs of the background job.
    pub interval: Duration,
    /// Delay before the background job's first run.
    pub first_run_delay: Duration,
    /// Rows per `DELETE` statement.
    pub batch_rows: i64,
    /// Pause between two batches.
    pub batch_pause: Duration,
    /// The pseudonymisation key, to bring the kinds' upkeep up to date
    /// before deleting and to record again the identities of rows kept past
    /// the cutoff (without it their directory entries may go before them:
    /// a lookup by pseudonym then misses those rows; rows not yet taken in
    /// by an upkeep are kept by their kind's rule anyway).
    pub pseudonymiser: Option<Pseudonymiser>,
    /// The kinds whose rules run (the registry's).
    pub kinds: Vec<&'static Kind>,
    /// The kinds' upkeep, brought up to date before a pass (the registry's).
    pub upkeep: Vec<&'static dyn upkeep::Upkeep>,
    /// Where the upkeep's set-aside rows are counted.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Default for RetentionOptions {
    /// 180 days of records and 400 of audit entries, hourly, first run 10 s
    /// after start, 5,000 rows per batch, 50 ms between batches; no kinds.
    fn default() -> Self {
        RetentionOptions {
            policy: RetentionPolicy::new(DEFAULT_DAYS),
            audit_policy: RetentionPolicy::new(DEFAULT_AUDIT_DAYS),
            interval: DEFAULT_INTERVAL,
            first_run_delay: DEFAULT_FIRST_RUN_DELAY,
            batch_rows: DEFAULT_BATCH_ROWS,
            batch_pause: DEFAULT_BATCH_PAUSE,
            pseudonymiser: None,
            kinds: Vec::new(),
            upkeep: Vec::new(),
            metrics: std::sync::Arc::default(),
        }
    }
}

impl RetentionOptions {
    /// Every rule a pass runs, in order: the kinds', then the directory's.
    pub fn rules(&self) -> impl Iterator<Item = &'static Rule> + '_ {
        self.kinds
            .iter()
            .flat_map(|kind| kind.retention.iter())
            .chain(std::iter::once(&directory::RETENTION))
    }
}

/// The cutoff of each kind of days: rows before it go. `None`: that
/// retention is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// For records and what holds their identities.
    pub records: Option<DateTime<Utc>>,
    /// For the audit trail.
    pub audit: Option<DateTime<Utc>>,
}

impl Cutoffs {
    /// The cutoffs of `options`' policies at `now`.
    pub fn at(options: &RetentionOptions, now: DateTime<Utc>) -> Cutoffs {
        Cutoffs {
            records: options.policy.cutoff(now),
            audit: options.audit_policy.cutoff(now),
        }
    }

    /// The cutoff of `days`.
    pub fn of(&self, days: Days) -> Option<DateTime<Utc>> {
        match days {
            Days::Records => self.records,
            Days::Audit => self.audit,
        }
    }

    /// True when nothing is to be deleted.
    pub fn is_none(&self) -> bool {
        self.records.is_none() && self.audit.is_none()
    }
}

/// A single instant is the cutoff of records; the audit trail is left alone.
impl From<DateTime<Utc>> for Cutoffs {
    fn from(records: DateTime<Utc>) -> Cutoffs {
        Cutoffs {
            records: Some(records),
            audit: None,
        }
    }
}

/// What a dry run found for one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// The rule's name.
    pub name: &'static str,
    /// Its table.
    pub table: &'static str,
    /// Its cutoff.
    pub cutoff: DateTime<Utc>,
    /// Rows before the cutoff that a pass would delete (for the directory,
    /// at most that many: a pass first records again the values of rows it
    /// keeps).
    pub rows: i64,
    /// The oldest of them.
    pub oldest: Option<DateTime<Utc>>,
    /// The newest of them.
    pub newest: Option<DateTime<Utc>>,
    /// The partitions of its table a pass would drop whole (their rows are
    /// among `rows`).
    pub partitions: Vec<String>,
}

/// What a pass did to one rule's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// The rule's name.
    pub name: &'static str,
    /// Its table.
    pub table: &'static str,
    /// Its cutoff.
    pub cutoff: DateTime<Utc>,
    /// Rows deleted.
    pub deleted: u64,
    /// `DELETE` statements run.
    pub batches: u64,
}

/// What a retention pass did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PurgeOutcome {
    /// Each rule that ran (rules whose retention is disabled do not), in order.
    pub tables: Vec<Purged>,
    /// Wall time of the pass, pauses included.
    pub elapsed: Duration,
    /// True when the pass stopped because of shutdown before it was done.
    pub interrupted: bool,
    /// The partitions dropped whole, each with its rule's name.
    pub dropped: Vec<(&'static str, String)>,
}

impl PurgeOutcome {
    /// Rows the rule `name` deleted (0 when it did not run).
    pub fn deleted(&self, name: &str) -> u64 {
        self.tables
            .iter()
            .filter(|t| t.name == name)
            .map(|t| t.deleted)
            .sum()
    }

    /// `DELETE` statements the rule `name` ran.
    pub fn batches(&self, name: &str) -> u64 {
        self.tables
            .iter()
            .filter(|t| t.name == name)
            .map(|t| t.batches)
            .sum()
    }
}

/// Counts, for every rule, the rows before its cutoff that [`purge`] would
/// delete, deleting nothing: like a pass, it brings the rollups up to date
/// first, and counts only rows no `keep` condition holds.
pub async fn preview(
    pool: &Pool,
    cutoffs: impl Into<Cutoffs>,
    options: &RetentionOptions,
) -> Result<Vec<Preview>, DbError> {
    let cutoffs = cutoffs.into();
    settle(pool, options).await?;
    let client = pool.get().await?;
    let mut previews = Vec::new();
    for rule in options.rules() {
        let Some(cutoff) = cutoffs.of(rule.days) else {
            continue;
        };
        let row = client.query_one(&rule.preview_sql(), &[&cutoff]).await?;
        previews.push(Preview {
            name: rule.name,
            table: rule.table,
            cutoff,
            rows: row.try_get(0)?,
            oldest: row.try_get(1)?,
            newest: row.try_get(2)?,
            partitions: droppable(&**client, rule, cutoff).await?,
        });
    }
    Ok(previews)
}

/// One retention pass (see the module documentation): deletes, rule by
/// rule, every row before its cutoff, batch by batch, checking out a
/// connection per batch (none is held during the pauses). Stops early,
/// between batches, once `cancel` is cancelled.
pub async fn purge(
    pool: &Pool,
    cutoffs: impl Into<Cutoffs>,
    options: &RetentionOptions,
    cancel: &CancellationToken,
) -> Result<PurgeOutcome, DbError> {
    let cutoffs = cutoffs.into();
    let started = Instant::now();
    settle(pool, options).await?;
    let mut outcome = PurgeOutcome::default();
    for rule in options.rules() {
        let Some(cutoff) = cutoffs.of(rule.days) else {
            continue;
        };
        // Before the directory's rule: the identities of rows the kinds
        // keep past the cutoff are seen again, so their entries stay.
        if rule.table == directory::RETENTION.table {
            if let Some(pseudonymiser) = &options.pseudonymiser {
                let client = pool.get().await?;
                for kind in &options.kinds {
                    directory::refresh_kept(&**client, pseudonymiser, kind, cutoff).await?;
                }
            }
        }
        // Listed on a connection given back before the drops (each takes
        // its own: the pool of `acctstream purge` has one).
        let partitions = {
            let client = pool.get().await?;
            droppable(&**client, rule, cutoff).await?
        };
        for partition in partitions {
            if cancel.is_cancelled() {
                break;
            }
            if drop_partition(pool, rule, &partition, cutoff, options).await? {
                outcome.dropped.push((rule.name, partition));
            }
        }
        let (purged, interrupted) = purge_rule(pool, rule, cutoff, options, cancel).await?;
        outcome.tables.push(purged);
        if interrupted {
            outcome.interrupted = true;
            break;
        }
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// The partitions of `rule`'s table a pass drops whole: those whose range
/// ends by the cutoff, with rows, all of which the rule deletes
/// ([`Rule::partitions_sql`], [`Rule::droppable_sql`]).
async fn droppable(
    client: &impl tokio_postgres::GenericClient,
    rule: &Rule,
    cutoff: DateTime<Utc>,
) -> Result<Vec<String>, DbError> {
    let mut partitions = Vec::new();
    for row in client.query(&rule.partitions_sql(), &[&cutoff]).await? {
        let partition: String = row.try_get(0)?;
        let whole: bool = client
            .query_one(&rule.droppable_sql(&partition), &[&cutoff])
            .await?
            .try_get(0)?;
        if whole {
            partitions.push(partition);
        }
    }
    Ok(partitions)
}

/// How long detaching a partition waits for the table's lock before the
/// pass leaves the partition to its batches (and the next pass).
const DETACH_LOCK_TIMEOUT: &str = "5s";

/// Drops `partition` of `rule`'s table whole, instead of deleting its rows
/// in batches (PostgreSQL's way to remove old data: no row deletes, no WAL
/// for them, no vacuum after). Detached `CONCURRENTLY` (PostgreSQL 14 on)
/// unless the table has a default partition, which `CONCURRENTLY` refuses;
/// then in the dropping transaction, waiting at most
/// [`DETACH_LOCK_TIMEOUT`] for the table. Once detached, nothing can reach
/// the partition: it is checked again (a row may have come since
/// [`droppable`] looked: it is attached again, or the detach rolled back),
/// then, in one transaction, what its rows' deletion triggers would have
/// done is done ([`changes::forget_partition`]) and it is dropped. False
/// when it stays: its rows are then left to the batches.
async fn drop_partition(
    pool: &Pool,
    rule: &Rule,
    partition: &str,
    cutoff: DateTime<Utc>,
    options: &RetentionOptions,
) -> Result<bool, DbError> {
    let mut client = pool.get().await?;
    let table = rule.table;
    let kind = options.kinds.iter().find(|kind| kind.table == table);
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int >= 140000 AND NOT EXISTS ( \
             SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass($1) \
             AND partdefid <> 0), pg_get_expr(c.relpartbound, c.oid), \
             coalesce((SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = c.oid), false) \
             FROM pg_class c WHERE c.oid = to_regclass($2)",
            &[&table, &partition],
        )
        .await?;
    let (concurrently, bound, pending): (bool, String, bool) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if concurrently {
        // An interrupted detach leaves the partition pending: finished.
        let how = if pending { "FINALIZE" } else { "CONCURRENTLY" };
        client
            .batch_execute(&format!(
                "ALTER TABLE {table} DETACH PARTITION {partition} {how}"
            ))
            .await?;
    }
    let tx = client.transaction().await?;
    if !concurrently {
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{DETACH_LOCK_TIMEOUT}'"))
            .await?;
        let detached = tx
            .batch_execute(&format!("ALTER TABLE {table} DETACH PARTITION {partition}"))
            .await;
        match detached {
            Ok(()) => {}
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                tracing::warn!(
                    partition,
                    table,
                    "retention could not lock the table to drop a partition: its rows go in batches"
                );
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let whole: bool = tx
        .query_one(&rule.droppable_sql(partition), &[&cutoff])
        .await?
        .try_get(0)?;
    if !whole {
        if concurrently {
            tx.batch_execute(&format!(
                "ALTER TABLE {table} ATTACH PARTITION {partition} {bound}"
            ))
            .await?;
            tx.commit().await?;
        }
        tracing::warn!(
            partition,
            table,
            "rows retention keeps came into a partition it was dropping: kept, its rows go in batches"
        );
        return Ok(false);
    }
    if let Some(kind) = kind {
        changes::forget_partition(&*tx, kind, partition).await?;
    }
    tx.batch_execute(&format!("DROP TABLE {partition}")).await?;
    tx.commit().await?;
    tracing::info!(
        partition,
        table,
        rule = rule.name,
        "retention dropped a partition whole"
    );
    Ok(true)
}

/// Brings the kinds' upkeep up to date (when the key is known).
async fn settle(pool: &Pool, options: &RetentionOptions) -> Result<(), DbError> {
    if let Some(key) = &options.pseudonymiser {
        upkeep::settle_all(pool, &options.upkeep, key, &options.metrics).await?;
    }
    Ok(())
}

/// Deletes the rows of `rule` before `cutoff`, in batches, without
/// bringing the upkeep up to date first; returns what it did and whether `cancel`
/// stopped it early.
pub async fn purge_rule(
    pool: &Pool,
    rule: &'static Rule,
    cutoff: DateTime<Utc>,
    options: &RetentionOptions,
    cancel: &CancellationToken,
) -> Result<(Purged, bool), DbError> {
    let limit = options.batch_rows.max(1);
    let mut purged = Purged {
        name: rule.name,
        table: rule.table,
        cutoff,
        deleted: 0,
        batches: 0,
    };
    let (first, next) = (rule.batch_sql(false), rule.batch_sql(true));
    let mut last: Option<(DateTime<Utc>, IdText)> = None;
    loop {
        if cancel.is_cancelled() {
            return Ok((purged, true));
        }
        let row = {
            let client = pool.get().await?;
            match &last {
                None => {
                    let statement = client.prepare_cached(&first).await?;
                    client.query_opt(&statement, &[&cutoff, &limit]).await
                }
                Some((at, id)) => {
                    let statement = client.prepare_cached(&next).await?;
                    // The id's type is the table's: sent as text, cast back
                    // by the statement's inferred parameter type.
                    client
                        .query_opt(&statement, &[&cutoff, &limit, at, id])
                        .await
                }
            }?
        };
        purged.batches += 1;
        // No row: nothing left before the cutoff (after the last key).
        let Some(row) = row else { break };
        let deleted: i64 = row.try_get(0)?;
        purged.deleted += u64::try_from(deleted).unwrap_or(0);
        last = Some((row.try_get(1)?, row.try_get(2)?));
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(options.batch_pause) => {}
        }
    }
    Ok((purged, false))
}

/// A key of any type (`bigint`, `text`) carried as its text form between
/// two batches: read with the column's own type, sent back as it.
#[derive(Debug)]
struct IdText(String);

impl<'a> tokio_postgres::types::FromSql<'a> for IdText {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::Type;
        Ok(IdText(match *ty {
            Type::INT8 => i64::from_sql(ty, raw)?.to_string(),
            Type::INT4 => i32::from_sql(ty, raw)?.to_string(),
            _ => String::from_sql(ty, raw)?,
        }))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        use tokio_postgres::types::Type;
        matches!(*ty, Type::INT8 | Type::INT4 | Type::TEXT | Type::VARCHAR)
    }
}

impl tokio_postgres::types::ToSql for IdText {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::Type;
        match *ty {
            Type::INT8 => self.0.parse::<i64>()?.to_sql(ty, out),
            Type::INT4 => self.0.parse::<i32>()?.to_sql(ty, out),
            _ => self.0.as_str().to_sql(ty, out),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <IdText as tokio_postgres::types::FromSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

/// One pass of the background job at `now`, logged.
pub async fn run_once(
    pool: &Pool,
    options: &RetentionOptions,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Result<Option<PurgeOutcome>, DbError> {
    let cutoffs = Cutoffs::at(options, now);
    if cutoffs.is_none() {
        return Ok(None);
    }
    let result = purge(pool, cutoffs, options, cancel).await;
    match &result {
        Ok(outcome) => {
            for table in &outcome.tables {
                tracing::info!(
                    rule = table.name,
                    table = table.table,
                    cutoff = %table.cutoff.to_rfc3339(),
                    deleted = table.deleted,
                    batches = table.batches,
                    "retention: deleted {} rows of {} from before {}",
                    table.deleted,
                    table.name,
                    table.cutoff.to_rfc3339(),
                );
            }
            tracing::info!(
                retention_days = options.policy.days(),
                audit_retention_days = options.audit_policy.days(),
                elapsed_ms = outcome.elapsed.as_millis() as u64,
                interrupted = outcome.interrupted,
                "retention pass done"
            );
        }
        Err(error) => tracing::warn!(
            error = %error,
            "retention pass failed; retrying at the next interval"
        ),
    }
    result.map(Some)
}

/// The background job: a pass `first_run_delay` after start, then every
/// `interval`, until `cancel` is cancelled. Does nothing when both
/// retentions are disabled. A failed pass is logged and retried at the next
/// interval.
pub async fn run_job(pool: Pool, options: RetentionOptions, cancel: CancellationToken) {
    if options.policy.is_disabled() && options.audit_policy.is_disabled() {
        tracing::info!(
            "retention disabled (ACCTSTREAM_RETENTION_DAYS=0, ACCTSTREAM_AUDIT_RETENTION_DAYS=0): everything is kept"
        );
        return;
    }
    tracing::info!(
        retention_days = options.policy.days(),
        audit_retention_days = options.audit_policy.days(),
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

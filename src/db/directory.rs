//! The identity directory: which raw identity a pseudonym stands for, so
//! that a listing can be narrowed to one user or device by its pseudonym
//! while the database never holds the pseudonymisation key.
//!
//! Whoever writes identities (ingest, the demo) records the pseudonym of
//! every identity value it stores, in the same transaction, with the UTC day
//! of the record that carried it (`last_seen`, kept at the newest such day):
//! retention deletes an entry once that day is before the cutoff, as it
//! deletes the records themselves ([`RETENTION`]). A lookup is one
//! primary-key probe. Pseudonyms depend on the key: every value is recorded
//! under each key of the schedule (`ACCTSTREAM_PSEUDONYM_KEYS`), so a
//! pseudonym of any month finds it; after a key is replaced (not added),
//! values written before are found only once they are written again.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use tokio_util::sync::CancellationToken;

use crate::core::{
    identity::{pseudonym_of, IdentityType},
    kind::{ColumnType, Kind},
    pseudonym::Pseudonymiser,
    retention::Rule,
};

/// Retention of the directory: an entry goes once the newest record that
/// carried its value is before the cutoff. Rows that retention keeps past
/// the cutoff (open sessions) have their values recorded again first
/// (`db::retention`), so their entries stay.
pub const RETENTION: Rule = Rule::new(
    "identity_directory",
    "identity_directory",
    "last_seen",
    "pseudonym",
);

/// The raw identity behind `pseudonym`, if it was ever recorded.
pub async fn resolve(
    client: &impl GenericClient,
    pseudonym: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT raw FROM identity_directory WHERE pseudonym = $1",
            &[&pseudonym],
        )
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// The longest a lookup by pseudonym waits for the directory to catch up;
/// past it the lookup goes on and says it may be incomplete.
pub const LOOKUP_WAIT: Duration = Duration::from_secs(1);
/// Time between two rounds of the background catch-up.
pub const JOB_INTERVAL: Duration = Duration::from_secs(1);
/// The background catch-up logs its progress every this many rows.
const LOG_EVERY_ROWS: u64 = 500_000;

/// Where the background catch-up of rows written by others stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpState {
    /// No background catch-up runs (lookups catch up themselves).
    Idle,
    /// Its first pass since start-up is running: rows written before the
    /// service started may not be found by pseudonym yet.
    CatchingUp,
    /// Its first pass is done; it follows new rows.
    CaughtUp,
}

/// The background catch-up's state and the rows it recorded, shared with
/// the requests and `/readyz`.
#[derive(Debug, Default)]
pub struct Progress {
    state: AtomicU8,
    rows: AtomicU64,
}

impl Progress {
    /// Where it stands.
    pub fn state(&self) -> CatchUpState {
        match self.state.load(Ordering::Relaxed) {
            1 => CatchUpState::CatchingUp,
            2 => CatchUpState::CaughtUp,
            _ => CatchUpState::Idle,
        }
    }

    /// Rows read since start-up.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Sets the state.
    pub fn set(&self, state: CatchUpState) {
        let value = match state {
            CatchUpState::Idle => 0,
            CatchUpState::CatchingUp => 1,
            CatchUpState::CaughtUp => 2,
        };
        self.state.store(value, Ordering::Relaxed);
    }
}

/// Before a lookup by pseudonym in `kind`: whether the directory holds the
/// identities of every row written so far. A kind only acctstream writes
/// always does. While the background catch-up's first pass runs, the
/// answer is no at once; otherwise the rows written since its last round
/// are caught up here, for at most `wait` (then: no, and the rest is left
/// to the job or the next lookup).
pub async fn ready_for_lookup(
    pool: &deadpool_postgres::Pool,
    pseudonymiser: &Pseudonymiser,
    kind: &Kind,
    progress: &Progress,
    wait: Duration,
) -> Result<bool, crate::db::DbError> {
    if !kind.foreign_writes {
        return Ok(true);
    }
    if progress.state() == CatchUpState::CatchingUp {
        return Ok(false);
    }
    match tokio::time::timeout(wait, catch_up(pool, pseudonymiser, kind)).await {
        Ok(done) => done.map(|()| true),
        Err(_) => Ok(false),
    }
}

/// The background catch-up: every kind of `kinds` others write is caught
/// up from start-up (the first pass over a large FreeRADIUS table takes
/// minutes; its progress is logged and shown by `/readyz`), then followed
/// every [`JOB_INTERVAL`], until `cancel`.
pub async fn run_job(
    pool: deadpool_postgres::Pool,
    kinds: Vec<&'static Kind>,
    pseudonymiser: Pseudonymiser,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) {
    let kinds: Vec<&Kind> = kinds.into_iter().filter(|k| k.foreign_writes).collect();
    if kinds.is_empty() {
        return;
    }
    progress.set(CatchUpState::CatchingUp);
    let round = |first: bool| {
        let (pool, pseudonymiser, progress, kinds) = (&pool, &pseudonymiser, &progress, &kinds);
        async move {
            let mut client = pool.get().await?;
            for kind in kinds {
                let mut logged = progress.rows() / LOG_EVERY_ROWS;
                let mut on_batch = |rows: u64| {
                    let total = progress.rows.fetch_add(rows, Ordering::Relaxed) + rows;
                    if first && total / LOG_EVERY_ROWS > logged {
                        logged = total / LOG_EVERY_ROWS;
                        tracing::info!(
                            table = kind.table,
                            rows = total,
                            "identity directory catch-up: {total} rows read"
                        );
                    }
                };
                catch_up_in_batches(
                    &mut client,
                    pseudonymiser,
                    kind,
                    CATCH_UP_BATCH,
                    &mut on_batch,
                )
                .await?;
            }
            Ok::<(), crate::db::DbError>(())
        }
    };
    let started = std::time::Instant::now();
    let mut first = true;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            outcome = round(first) => match outcome {
                Ok(()) if first => {
                    first = false;
                    progress.set(CatchUpState::CaughtUp);
                    tracing::info!(
                        rows = progress.rows(),
                        elapsed_s = started.elapsed().as_secs(),
                        "identity directory caught up with rows written by others"
                    );
                }
                Ok(()) => {}
                Err(error) => tracing::warn!(%error, "identity directory catch-up failed; retrying"),
            },
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(JOB_INTERVAL) => {}
        }
    }
}

/// Lets the directory catch up with rows of `kind` written by others than
/// acctstream (see [`crate::core::kind::Kind::foreign_writes`]).
pub async fn catch_up(
    pool: &deadpool_postgres::Pool,
    pseudonymiser: &Pseudonymiser,
    kind: &Kind,
) -> Result<(), crate::db::DbError> {
    if kind.foreign_writes {
        let mut client = pool.get().await?;
        catch_up_kind(&mut client, pseudonymiser, kind).await?;
    }
    Ok(())
}

/// Rows read per round of a catch-up.
const CATCH_UP_BATCH: i64 = 10_000;

/// The identity columns of `kind`: their SQL and type.
fn identity_columns(kind: &Kind) -> impl Iterator<Item = (&'static str, IdentityType)> + '_ {
    kind.columns.iter().filter_map(|c| match c.ty {
        ColumnType::Identity(ty) => Some((c.sql, ty)),
        _ => None,
    })
}

/// The SQL of the time a row of `kind` was last written: its time, or for
/// a span its stop, else now (an open session is seen while it lasts).
fn seen_sql(kind: &Kind) -> String {
    match kind.time {
        crate::core::kind::TimeModel::Instant { column } => column.to_owned(),
        crate::core::kind::TimeModel::Interval { stop, .. } => format!("coalesce({stop}, now())"),
    }
}

/// Adds the identities of `rows` (selected as the time seen, then the
/// identity columns of `kind` in order) to `entries`.
fn add_rows(
    entries: &mut Entries,
    pseudonymiser: &Pseudonymiser,
    kind: &Kind,
    rows: &[tokio_postgres::Row],
    first: usize,
) -> Result<(), tokio_postgres::Error> {
    for row in rows {
        let seen: DateTime<Utc> = row.try_get(first)?;
        for (i, (_, ty)) in identity_columns(kind).enumerate() {
            if let Some(value) = row.try_get::<_, Option<&str>>(first + 1 + i)? {
                entries.add(pseudonymiser, ty, value, seen);
            }
        }
    }
    Ok(())
}

fn identity_select(kind: &Kind) -> String {
    let mut select = seen_sql(kind);
    for (sql, _) in identity_columns(kind) {
        select.push_str(", ");
        select.push_str(sql);
    }
    select
}

/// Records in the identity directory the identities of `kind`'s rows
/// written since the last catch-up (by FreeRADIUS's `rlm_sql` or anyone
/// else), found by the kind's identity columns, so they can be found by
/// pseudonym. The position is kept per table in
/// `acctstream_directory_cursor`. Returns how many rows were read.
///
/// The rows past the position are read newest first, in batches of their
/// own transaction: a value's first row is then (about) its newest, so the
/// older rows that repeat it write nothing (`last_seen` only moves
/// forward), where oldest first would rewrite its entry on every later day.
/// The position moves once the whole range is recorded; a catch-up that is
/// interrupted is done again (recording is idempotent). Concurrent
/// catch-ups take turns batch by batch (the position's row lock); one that
/// finds its range done by another stops.
pub async fn catch_up_kind(
    client: &mut deadpool_postgres::Object,
    pseudonymiser: &Pseudonymiser,
    kind: &Kind,
) -> Result<u64, crate::db::DbError> {
    catch_up_in_batches(client, pseudonymiser, kind, CATCH_UP_BATCH, &mut |_| {}).await
}

/// [`catch_up_kind`], `batch` rows per transaction, telling `on_batch` the
/// rows of each.
pub async fn catch_up_in_batches(
    client: &mut deadpool_postgres::Object,
    pseudonymiser: &Pseudonymiser,
    kind: &Kind,
    batch: i64,
    on_batch: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, crate::db::DbError> {
    let (id, table) = (kind.id_column, kind.table);
    client
        .execute(
            "INSERT INTO acctstream_directory_cursor (source) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&table],
        )
        .await?;
    let newest: Option<i64> = client
        .query_one(&format!("SELECT max({id}) FROM {table}"), &[])
        .await?
        .try_get(0)?;
    let Some(newest) = newest else {
        return Ok(0);
    };
    let select = format!(
        "SELECT {id}, {columns} FROM {table} WHERE {id} > $1 AND {id} <= $2 \
         ORDER BY {id} DESC LIMIT $3",
        columns = identity_select(kind),
    );
    let mut upper = newest;
    let mut total = 0;
    loop {
        let tx = client.transaction().await?;
        let position: i64 = tx
            .query_one(
                "SELECT position FROM acctstream_directory_cursor WHERE source = $1 FOR UPDATE",
                &[&table],
            )
            .await?
            .try_get(0)?;
        // Nothing left between the position and the rows recorded so far
        // (a full last batch, or another catch-up got there): done.
        let rows = if position < upper {
            tx.query(&select, &[&position, &upper, &batch]).await?
        } else {
            Vec::new()
        };
        let mut entries = Entries::default();
        add_rows(&mut entries, pseudonymiser, kind, &rows, 1)?;
        entries.record(&*tx).await?;
        let done = (rows.len() as i64) < batch;
        if done {
            tx.execute(
                "UPDATE acctstream_directory_cursor SET position = greatest(position, $2) \
                 WHERE source = $1",
                &[&table, &newest],
            )
            .await?;
        }
        tx.commit().await?;
        total += rows.len() as u64;
        on_batch(rows.len() as u64);
        match rows.last() {
            Some(oldest) if !done => upper = oldest.try_get::<_, i64>(0)? - 1,
            _ => return Ok(total),
        }
    }
}

/// Records again, as seen at their last write (now, while open), the
/// identities of `kind`'s rows that began before `cutoff` and that
/// retention keeps (a span still open, or stopped after the cutoff), so
/// their directory entries outlive the cutoff with them. Instants need
/// nothing: their entries were recorded with their own time. Returns the
/// rows read.
pub async fn refresh_kept(
    client: &impl GenericClient,
    pseudonymiser: &Pseudonymiser,
    kind: &Kind,
    cutoff: DateTime<Utc>,
) -> Result<u64, tokio_postgres::Error> {
    let crate::core::kind::TimeModel::Interval { start, stop } = kind.time else {
        return Ok(0);
    };
    if identity_columns(kind).next().is_none() {
        return Ok(0);
    }
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM {} WHERE {start} < $1 AND ({stop} IS NULL OR {stop} >= $1)",
                identity_select(kind),
                kind.table
            ),
            &[&cutoff],
        )
        .await?;
    let mut entries = Entries::default();
    add_rows(&mut entries, pseudonymiser, kind, &rows, 0)?;
    entries.record(client).await?;
    Ok(rows.len() as u64)
}

/// The UTC day of `at`, as the number of days since 1970-01-01: what
/// `last_seen` keeps (the start of that day).
fn day_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(86_400)
}

/// The start of day `day` (clamped to the times PostgreSQL takes).
fn day_start(day: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(day.saturating_mul(86_400), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// One value to record: its pseudonyms and the newest day it was seen.
#[derive(Debug)]
struct Entry {
    pseudonyms: Vec<String>,
    day: i64,
}

/// Distinct identity values to record, with their pseudonyms (one per key
/// of a key schedule, so a pseudonym of any month finds its value) and the
/// day of the newest record that carried each.
#[derive(Debug, Default)]
pub struct Entries {
    entries: HashMap<String, Entry>,
}

impl Entries {
    /// Remembers `raw` (normalised for its type), carried by a record of
    /// time `seen`.
    pub fn add(
        &mut self,
        pseudonymiser: &Pseudonymiser,
        ty: IdentityType,
        raw: &str,
        seen: DateTime<Utc>,
    ) {
        let normalised = ty.normalise(raw);
        let day = day_of(seen);
        if let Some(entry) = self.entries.get_mut(normalised.as_ref()) {
            entry.day = entry.day.max(day);
            return;
        }
        let pseudonyms = if pseudonymiser.key_count() == 1 {
            vec![pseudonym_of(pseudonymiser, ty, raw)]
        } else {
            pseudonymiser
                .each()
                .map(|key| pseudonym_of(&key, ty, raw))
                .collect()
        };
        self.entries
            .insert(normalised.into_owned(), Entry { pseudonyms, day });
    }

    /// How many distinct values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records those `recorded` does not know to be there already (existing
    /// entries are kept); after the transaction commits, tell `recorded`
    /// with [`Recorded::remember`].
    pub async fn record_new(
        &self,
        client: &impl GenericClient,
        recorded: &Recorded,
    ) -> Result<(), tokio_postgres::Error> {
        let new = Entries {
            entries: self
                .entries
                .iter()
                .filter(|(_, entry)| !recorded.knows(&entry.pseudonyms, entry.day))
                .map(|(raw, entry)| {
                    (
                        raw.clone(),
                        Entry {
                            pseudonyms: entry.pseudonyms.clone(),
                            day: entry.day,
                        },
                    )
                })
                .collect(),
        };
        new.record(client).await
    }

    /// Records them: a new value is inserted, a known one gets the newer
    /// day (a value seen again the same day writes nothing).
    pub async fn record(&self, client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let mut raws = Vec::new();
        let mut pseudonyms = Vec::new();
        let mut days = Vec::new();
        for (raw, entry) in &self.entries {
            for pseudonym in &entry.pseudonyms {
                raws.push(raw.as_str());
                pseudonyms.push(pseudonym.as_str());
                days.push(day_start(entry.day));
            }
        }
        client
            .execute(
                // Entries already as new are skipped by a read-only probe:
                // `ON CONFLICT DO UPDATE … WHERE` false would still lock
                // (write) the row.
                "INSERT INTO identity_directory AS d (pseudonym, raw, last_seen) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS n (p, r, s) \
                 WHERE NOT EXISTS (SELECT 1 FROM identity_directory k \
                                   WHERE k.pseudonym = n.p AND k.last_seen >= n.s) \
                 ORDER BY 1 ON CONFLICT (pseudonym) DO UPDATE SET last_seen = excluded.last_seen \
                 WHERE d.last_seen < excluded.last_seen",
                &[&pseudonyms, &raws, &days],
            )
            .await?;
        Ok(())
    }
}

/// Most pseudonyms a [`Recorded`] remembers before it starts afresh.
const RECORDED_MAX: usize = 1 << 16;

/// Pseudonyms this process saw committed to one database's directory, with
/// the day they were recorded as seen, so a batch does not write again what
/// the batches before it wrote: a session repeats its identities in every
/// interim update. Retention deletes only entries last seen before its
/// cutoff, long before any day a batch still writes, so what is remembered
/// stays true. Bounded (cleared when full, about 3 MB); one per database
/// (`AppOptions::directory`).
#[derive(Debug, Default)]
pub struct Recorded {
    /// The first 128 bits of each pseudonym (an HMAC output, so distinct
    /// values do not meet there), and its day.
    seen: std::sync::Mutex<std::collections::HashMap<u128, i64, foldhash::fast::RandomState>>,
}

impl Recorded {
    fn key(pseudonym: &str) -> Option<u128> {
        pseudonym
            .get(..32)
            .and_then(|hex| u128::from_str_radix(hex, 16).ok())
    }

    /// True when every one of `pseudonyms` is known to be recorded as seen
    /// on `day` or later.
    fn knows(&self, pseudonyms: &[String], day: i64) -> bool {
        let Ok(seen) = self.seen.lock() else {
            return false;
        };
        pseudonyms.iter().all(|p| {
            Self::key(p)
                .and_then(|k| seen.get(&k))
                .is_some_and(|&known| known >= day)
        })
    }

    /// Remembers `entries`, whose transaction has committed.
    pub fn remember(&self, entries: &Entries) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.len() + entries.entries.len() > RECORDED_MAX {
            seen.clear();
        }
        for entry in entries.entries.values() {
            for key in entry.pseudonyms.iter().filter_map(|p| Self::key(p)) {
                let day = seen.entry(key).or_insert(entry.day);
                *day = (*day).max(entry.day);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn only_committed_entries_of_the_same_day_or_later_are_skipped() {
        let p = Pseudonymiser::new(b"key").unwrap();
        let recorded = Recorded::default();
        let mut first = Entries::default();
        let monday = at("2026-03-02T23:59:59Z");
        first.add(&p, IdentityType::User, "alice", monday);
        first.add(&p, IdentityType::Mac, "AA-BB-CC-DD-EE-FF", monday);
        let alice = vec![pseudonym_of(&p, IdentityType::User, "alice")];
        let day = day_of(monday);
        assert!(!recorded.knows(&alice, day));
        recorded.remember(&first);
        assert!(recorded.knows(&alice, day));
        assert!(recorded.knows(&alice, day - 1));
        // Seen on a later day: written again, so last_seen moves on.
        assert!(!recorded.knows(&alice, day_of(at("2026-03-03T00:00:00Z"))));
        assert!(recorded.knows(
            &[pseudonym_of(&p, IdentityType::Mac, "aa:bb:cc:dd:ee:ff")],
            day
        ));
        // Every pseudonym of a value must be known (a key schedule has several).
        assert!(!recorded.knows(
            &[
                alice[0].clone(),
                pseudonym_of(&p, IdentityType::User, "bob")
            ],
            day
        ));
        assert!(!recorded.knows(&["not a pseudonym".to_owned()], day));
    }

    #[test]
    fn an_entry_keeps_the_newest_day_it_was_seen() {
        let p = Pseudonymiser::new(b"key").unwrap();
        let mut entries = Entries::default();
        entries.add(
            &p,
            IdentityType::Mac,
            "aa-bb-cc-dd-ee-ff",
            at("2026-03-05T10:00:00Z"),
        );
        entries.add(
            &p,
            IdentityType::Mac,
            "AA:BB:CC:DD:EE:FF",
            at("2026-03-01T10:00:00Z"),
        );
        assert_eq!(entries.len(), 1);
        let entry = &entries.entries["aa:bb:cc:dd:ee:ff"];
        assert_eq!(day_start(entry.day), at("2026-03-05T00:00:00Z"));
        assert_eq!(
            day_start(day_of(at("1969-12-31T23:00:00Z"))),
            at("1969-12-31T00:00:00Z")
        );
    }

    #[test]
    fn it_starts_afresh_when_full() {
        let p = Pseudonymiser::new(b"key").unwrap();
        let recorded = Recorded::default();
        let mut entries = Entries::default();
        let now = at("2026-03-05T10:00:00Z");
        for i in 0..RECORDED_MAX {
            entries.add(&p, IdentityType::User, &format!("user-{i}"), now);
        }
        recorded.remember(&entries);
        let mut one = Entries::default();
        one.add(&p, IdentityType::User, "last", now);
        recorded.remember(&one);
        let day = day_of(now);
        assert!(recorded.knows(&[pseudonym_of(&p, IdentityType::User, "last")], day));
        assert!(!recorded.knows(&[pseudonym_of(&p, IdentityType::User, "user-0")], day));
    }
}

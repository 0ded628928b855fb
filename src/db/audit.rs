//! Writing the access audit trail: requests hand their entry to an
//! [`AuditSink`] (a bounded channel: never a wait on the request's path),
//! and one writer task stores them in batches (what arrives within 200 ms
//! of a first entry, up to 1,000) with a single `INSERT … SELECT FROM
//! unnest(…)`. When every sink is dropped (the server has stopped), the
//! writer stores what is left and ends.
//!
//! A database outage loses nothing while the buffer holds: the writer keeps
//! the batch in hand and tries it again (0.2 s, doubling, at most every
//! 5 s) until the database takes it, and the entries that arrive meanwhile
//! wait in the channel, in order ([`CHANNEL_CAPACITY`] entries: a minute
//! of 1,000 audited requests a second). Beyond that bound new entries are
//! dropped, counted (`acctstream_audit_entries_dropped_total`) and logged;
//! with `ACCTSTREAM_AUDIT_REQUIRED=true` a request first reserves its
//! entry's place ([`AuditSink::reserve`]) and is refused (503) when there
//! is none, so nothing is served unaudited.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::mpsc;

use crate::{core::audit::AuditEntry, metrics::Metrics};

/// Entries a sink holds before new ones are dropped (and counted).
pub const CHANNEL_CAPACITY: usize = 65_536;
/// Most entries per `INSERT`.
const BATCH: usize = 1_000;
/// How long the writer gathers entries after the first of a batch: one
/// `INSERT` per request would cost the database more than the request.
const GATHER: Duration = Duration::from_millis(200);
/// The first pause before a failed batch is tried again, and the longest.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// Where requests leave their audit entries.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEntry>,
    dropped: Arc<AtomicU64>,
    metrics: Option<Arc<Metrics>>,
}

/// A place in the buffer, reserved before a request is served.
pub type Reserved = mpsc::OwnedPermit<AuditEntry>;

impl AuditSink {
    /// A sink and the receiver its writer reads.
    pub fn channel(capacity: usize) -> (AuditSink, mpsc::Receiver<AuditEntry>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            AuditSink {
                tx,
                dropped: Arc::default(),
                metrics: None,
            },
            rx,
        )
    }

    /// The same sink, counting what it drops in `metrics`.
    pub fn counting_in(self, metrics: Arc<Metrics>) -> AuditSink {
        AuditSink {
            metrics: Some(metrics),
            ..self
        }
    }

    /// Reserves the place of one entry, without waiting: `None` when the
    /// buffer is full.
    pub fn reserve(&self) -> Option<Reserved> {
        self.tx.clone().try_reserve_owned().ok()
    }

    /// Entries waiting for the writer.
    pub fn buffered(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Hands `entry` to the writer without waiting, in its reserved place
    /// when it has one; when the buffer is full, the entry is dropped,
    /// counted and logged.
    pub fn record(&self, entry: AuditEntry, reserved: Option<Reserved>) {
        if let Some(place) = reserved {
            place.send(entry);
            return;
        }
        if self.tx.try_send(entry).is_err() {
            if let Some(metrics) = &self.metrics {
                metrics.audit_dropped(1);
            }
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::error!(dropped, "audit entries dropped: the audit writer cannot keep up with requests or the database is down");
            }
        }
    }

    /// Entries dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Stores entries from `rx` in batches until every sink is dropped.
pub async fn run_writer(pool: Pool, mut rx: mpsc::Receiver<AuditEntry>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(GATHER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
        }
        store(&pool, &batch).await;
        batch.clear();
    }
}

/// Stores `batch`, trying again (with growing pauses) until the database
/// takes it: entries are never given up while the writer runs.
async fn store(pool: &Pool, batch: &[AuditEntry]) {
    let mut attempt = 0u32;
    let mut pause = FIRST_RETRY;
    loop {
        attempt += 1;
        match insert(pool, batch).await {
            Ok(()) if attempt > 1 => {
                tracing::info!(
                    attempt,
                    entries = batch.len(),
                    "audit entries stored after the database came back"
                );
                return;
            }
            Ok(()) => return,
            Err(error) => {
                // Logged at the first failure and then about every minute.
                if attempt == 1 || attempt.is_multiple_of(12) {
                    tracing::warn!(%error, attempt, entries = batch.len(), "storing audit entries failed; they wait in memory and are tried again");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LAST_RETRY);
            }
        }
    }
}

/// One `INSERT` of `entries`.
pub async fn insert(pool: &Pool, entries: &[AuditEntry]) -> Result<(), crate::db::DbError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "INSERT INTO access_audit (at, client, scopes, method, route, parameters, \
             representation, status, rows_sent, bytes_sent, completed, duration_ms, request_id, \
             tenant) \
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::int[], $9::bigint[], $10::bigint[], \
             $11::bool[], $12::float8[], $13::text[], $14::text[])",
        )
        .await?;
    let at: Vec<DateTime<Utc>> = entries.iter().map(|e| e.at).collect();
    let text = |f: fn(&AuditEntry) -> &str| entries.iter().map(f).collect::<Vec<&str>>();
    let representation: Vec<Option<&str>> = entries
        .iter()
        .map(|e| e.representation.as_deref())
        .collect();
    let status: Vec<i32> = entries.iter().map(|e| i32::from(e.status)).collect();
    let rows: Vec<Option<i64>> = entries
        .iter()
        .map(|e| e.rows.map(|r| i64::try_from(r).unwrap_or(i64::MAX)))
        .collect();
    let bytes: Vec<i64> = entries
        .iter()
        .map(|e| i64::try_from(e.bytes).unwrap_or(i64::MAX))
        .collect();
    let completed: Vec<bool> = entries.iter().map(|e| e.completed).collect();
    let duration: Vec<f64> = entries.iter().map(|e| e.duration_ms).collect();
    client
        .execute(
            &statement,
            &[
                &at,
                &text(|e| &e.client),
                &text(|e| &e.scopes),
                &text(|e| &e.method),
                &text(|e| &e.route),
                &text(|e| &e.parameters),
                &representation,
                &status,
                &rows,
                &bytes,
                &completed,
                &duration,
                &text(|e| &e.request_id),
                &text(|e| &e.tenant),
            ],
        )
        .await?;
    Ok(())
}

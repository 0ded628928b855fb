//! Writing the access audit trail: requests hand their entry to an
//! [`AuditSink`] (a bounded channel: never a wait on the request's path),
//! and one writer task stores them in batches (what arrives within 200 ms
//! of a first entry, up to 1,000) with a single `INSERT … SELECT FROM
//! unnest(…)`. When every sink is dropped (the server has stopped), the
//! writer stores what is left and ends.

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

use crate::core::audit::AuditEntry;

/// Entries a sink holds before new ones are dropped (and counted).
pub const CHANNEL_CAPACITY: usize = 65_536;
/// Most entries per `INSERT`.
const BATCH: usize = 1_000;
/// How long the writer gathers entries after the first of a batch: one
/// `INSERT` per request would cost the database more than the request.
const GATHER: Duration = Duration::from_millis(200);
/// Attempts to store one batch before it is given up (logged).
const ATTEMPTS: u32 = 5;

/// Where requests leave their audit entries.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEntry>,
    dropped: Arc<AtomicU64>,
}

impl AuditSink {
    /// A sink and the receiver its writer reads.
    pub fn channel(capacity: usize) -> (AuditSink, mpsc::Receiver<AuditEntry>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            AuditSink {
                tx,
                dropped: Arc::default(),
            },
            rx,
        )
    }

    /// Hands `entry` to the writer without waiting; when the writer is this
    /// far behind, the entry is dropped, counted and logged.
    pub fn record(&self, entry: AuditEntry) {
        if self.tx.try_send(entry).is_err() {
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
        let mut attempt = 0;
        loop {
            attempt += 1;
            match insert(&pool, &batch).await {
                Ok(()) => break,
                Err(error) if attempt < ATTEMPTS => {
                    tracing::warn!(%error, attempt, entries = batch.len(), "storing audit entries failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(error) => {
                    tracing::error!(%error, entries = batch.len(), "audit entries lost: the database refused them {ATTEMPTS} times");
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// One `INSERT` of `entries`.
pub async fn insert(pool: &Pool, entries: &[AuditEntry]) -> Result<(), crate::db::DbError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "INSERT INTO access_audit (at, client, scopes, method, route, parameters, \
             representation, status, rows_sent, bytes_sent, completed, duration_ms, request_id) \
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::int[], $9::bigint[], $10::bigint[], \
             $11::bool[], $12::float8[], $13::text[])",
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
            ],
        )
        .await?;
    Ok(())
}

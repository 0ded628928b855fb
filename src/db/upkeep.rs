//! Upkeep: data a kind derives from its rows and keeps up to date beside
//! them, off the insert path (the usage rollups of authentication events).
//! A kind brings its [`Upkeep`] through its registry entry; this module runs
//! every one of them and names none:
//! - [`prepare_all`] once after the migrations, with the key;
//! - [`settle_all`] before a retention pass deletes rows, and after the demo
//!   or `seed` filled a kind, so what depends on the derived data (a report,
//!   a kept row) sees every committed row;
//! - [`run_job`], the background job, every `ACCTSTREAM_ROLLUP_INTERVAL_MS`.

use std::{fmt, time::Duration};

use deadpool_postgres::Pool;
use futures_util::future::BoxFuture;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::DbError;
use crate::{core::pseudonym::Pseudonymiser, metrics::Metrics};

/// Default time between two runs of the background job.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1_000);
/// A run that covered at least this many rows is logged at info level.
const LARGE_RUN_ROWS: u64 = 100_000;

/// What a catch-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caught {
    /// Rows covered (an upper bound on the rows taken in).
    pub rows: u64,
    /// Rows it could not take and set aside (logged by the upkeep, counted
    /// in `/metrics`): no single row may stop it.
    pub set_aside: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Derived data a kind keeps up to date. A failed run loses nothing: what
/// it did not finish is taken up by the next one.
pub trait Upkeep: Sync + fmt::Debug {
    /// Its name in logs (`usage rollups`).
    fn name(&self) -> &'static str;

    /// Once after the migrations, with the key (e.g. converting data kept
    /// under an older scheme). True when it changed something.
    fn prepare<'a>(
        &'a self,
        _client: &'a Client,
        _key: &'a Pseudonymiser,
    ) -> BoxFuture<'a, Result<bool, DbError>> {
        Box::pin(async { Ok(false) })
    }

    /// Brings it up to date with every row committed before the call,
    /// waiting for what another runner holds.
    fn settle<'a>(
        &'a self,
        client: &'a mut Client,
        key: &'a Pseudonymiser,
    ) -> BoxFuture<'a, Result<Caught, DbError>>;

    /// One run of the background job: like `settle`, but skipping what
    /// another runner holds, never waiting.
    fn run<'a>(
        &'a self,
        client: &'a mut Client,
        key: &'a Pseudonymiser,
    ) -> BoxFuture<'a, Result<Caught, DbError>>;
}

/// [`Upkeep::prepare`] of each, in order; logs what changed.
pub async fn prepare_all(
    client: &Client,
    upkeeps: &[&'static dyn Upkeep],
    key: &Pseudonymiser,
) -> Result<(), DbError> {
    for upkeep in upkeeps {
        if upkeep.prepare(client, key).await? {
            tracing::info!(upkeep = upkeep.name(), "prepared");
        }
    }
    Ok(())
}

/// [`Upkeep::settle`] of each, in order, on one connection of `pool`; what
/// they set aside is counted in `metrics`.
pub async fn settle_all(
    pool: &Pool,
    upkeeps: &[&'static dyn Upkeep],
    key: &Pseudonymiser,
    metrics: &Metrics,
) -> Result<Vec<(&'static str, Caught)>, DbError> {
    if upkeeps.is_empty() {
        return Ok(Vec::new());
    }
    let mut client = pool.get().await?;
    let mut done = Vec::with_capacity(upkeeps.len());
    for upkeep in upkeeps {
        let caught = upkeep.settle(&mut client, key).await?;
        metrics.upkeep_set_aside(upkeep.name(), caught.set_aside);
        done.push((upkeep.name(), caught));
    }
    Ok(done)
}

/// One run of every upkeep, logged (debug; info when large; a failure is a
/// warning and the next run retries); what they set aside is counted in
/// `metrics`.
pub async fn run_once(
    pool: &Pool,
    upkeeps: &[&'static dyn Upkeep],
    key: &Pseudonymiser,
    metrics: &Metrics,
) {
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(error = %error, "upkeep: no connection; retrying at the next interval");
            return;
        }
    };
    for upkeep in upkeeps {
        let outcome = upkeep.run(&mut client, key).await;
        if let Ok(done) = &outcome {
            metrics.upkeep_set_aside(upkeep.name(), done.set_aside);
        }
        match outcome {
            Ok(done) if done.rows >= LARGE_RUN_ROWS => tracing::info!(
                upkeep = upkeep.name(),
                rows = done.rows,
                elapsed_ms = done.elapsed.as_millis() as u64,
                "{}: {} rows taken in",
                upkeep.name(),
                done.rows
            ),
            Ok(done) => tracing::debug!(
                upkeep = upkeep.name(),
                rows = done.rows,
                elapsed_ms = done.elapsed.as_millis() as u64,
                "upkeep run"
            ),
            Err(error) => tracing::warn!(
                upkeep = upkeep.name(),
                error = %error,
                "{} failed; retrying at the next interval",
                upkeep.name()
            ),
        }
    }
}

/// The background job: every upkeep every `interval` until `cancel` is
/// cancelled. Cancelling abandons a run in progress: its current step rolls
/// back and is taken up at the next start.
pub async fn run_job(
    pool: Pool,
    interval: Duration,
    cancel: CancellationToken,
    upkeeps: Vec<&'static dyn Upkeep>,
    key: Pseudonymiser,
    metrics: std::sync::Arc<Metrics>,
) {
    if upkeeps.is_empty() {
        return;
    }
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        ?upkeeps,
        "upkeep job started"
    );
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = run_once(&pool, &upkeeps, &key, &metrics) => {}
        }
    }
    tracing::info!("upkeep job stopped");
}

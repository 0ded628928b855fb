//! The rollup catch-up: bringing the usage rollups up to date with the
//! committed events, off the insert path.
//!
//! Every insert into `auth_event` queues the id range it may have used in
//! `usage_rollup_queue`, in the same transaction (see
//! `sql/0004_rollup_queue.sql`). [`catch_up`] takes queued rows in queue
//! order, locked `FOR UPDATE`, and in one transaction per step rolls up one
//! contiguous id range of at most [`MAX_IDS_PER_STEP`] ids
//! (`usage_rollup_range`, a primary-key range scan) and deletes or shortens
//! the queue rows it covered (planned by [`plan::plan_step`]).
//!
//! Two modes:
//! - [`Mode::Complete`] (reports, retention, `seed`): waits for rows another
//!   runner holds, so when it returns every event committed before it
//!   started is in the rollups;
//! - [`Mode::SkipLocked`] (the background job): skips rows another runner
//!   holds, never waiting.
//!
//! The kind's registry entry hands [`ROLLUPS`] to the shared upkeep
//! machinery (`db::upkeep`), which runs it before retention, after the demo
//! and in the background.

pub mod plan;

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_postgres::Client;

use crate::{
    core::pseudonym::{Pseudonymiser, RollupKeys},
    db::{
        upkeep::{Caught, Upkeep},
        DbError,
    },
};
use plan::{plan_step, QueuedRange};

/// Most event ids rolled up in one transaction: bounds its duration, locks
/// and memory (a bigger queued range is split over several).
pub const MAX_IDS_PER_STEP: u64 = 200_000;
/// Queue rows looked at per step.
const ROWS_PER_STEP: i64 = 1_000;

const PENDING_SQL: &str = "SELECT max(id) FROM usage_rollup_queue";
const TAKE_SQL: &str = "SELECT id, lo, hi FROM usage_rollup_queue WHERE id <= $1 \
                        ORDER BY id LIMIT $2 FOR UPDATE";
const TAKE_SKIP_LOCKED_SQL: &str = "SELECT id, lo, hi FROM usage_rollup_queue WHERE id <= $1 \
                                    ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED";
const ROLLUP_SQL: &str = "SELECT usage_rollup_range($1, $2, $3, $4, $5)";
const DELETE_SQL: &str = "DELETE FROM usage_rollup_queue WHERE id = ANY($1)";
const SHORTEN_SQL: &str = "UPDATE usage_rollup_queue SET lo = $2 WHERE id = ANY($1)";

/// Whether a catch-up waits for queue rows another runner holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Wait: on return, every event committed before the call is rolled up.
    Complete,
    /// Skip rows another runner holds (the background job).
    SkipLocked,
}

/// What a catch-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CatchUp {
    /// Transactions (steps) that rolled something up.
    pub steps: u64,
    /// Queue rows finished (deleted).
    pub ranges: u64,
    /// Event ids covered (an upper bound on the events rolled up).
    pub ids: u64,
    /// Events set aside: the rollups cannot take them (a time outside the
    /// years 0001 to 9999, no key in force for their month); they are in
    /// `usage_rollup_set_aside` with the reason.
    pub set_aside: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Rolls up every queued range visible when called, on `client`. Returns at
/// once (one index lookup) when the queue is empty.
pub async fn catch_up(
    client: &mut Client,
    mode: Mode,
    keys: &RollupKeys,
) -> Result<CatchUp, tokio_postgres::Error> {
    let started = Instant::now();
    let mut done = CatchUp::default();
    // Rows queued later are not ours to wait for: this bound makes a run
    // finish under a steady stream of inserts.
    let Some(last) = client
        .query_one(PENDING_SQL, &[])
        .await?
        .try_get::<_, Option<i64>>(0)?
    else {
        return Ok(done);
    };
    let take = match mode {
        Mode::Complete => TAKE_SQL,
        Mode::SkipLocked => TAKE_SKIP_LOCKED_SQL,
    };
    loop {
        let tx = client.transaction().await?;
        let rows = tx
            .query(take, &[&last, &ROWS_PER_STEP])
            .await?
            .iter()
            .map(|row| {
                Ok(QueuedRange {
                    id: row.try_get(0)?,
                    lo: row.try_get(1)?,
                    hi: row.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        let Some(plan) = plan_step(&rows, MAX_IDS_PER_STEP) else {
            tx.commit().await?;
            break;
        };
        let set_aside: i32 = tx
            .query_one(
                ROLLUP_SQL,
                &[&plan.lo, &plan.hi, &keys.from, &keys.ipads, &keys.opads],
            )
            .await?
            .try_get(0)?;
        if !plan.delete.is_empty() {
            tx.execute(DELETE_SQL, &[&plan.delete]).await?;
        }
        if !plan.shorten.is_empty() {
            tx.execute(SHORTEN_SQL, &[&plan.shorten, &(plan.hi + 1)])
                .await?;
        }
        tx.commit().await?;
        if set_aside > 0 {
            // Once per event: a set-aside event is not taken again.
            tracing::warn!(
                events = set_aside,
                lo = plan.lo,
                hi = plan.hi,
                "usage rollups: {set_aside} events set aside (time outside the years 0001 to 9999, \
                 or no key in force for their month); see usage_rollup_set_aside"
            );
        }
        done.set_aside += u64::from(set_aside.unsigned_abs());
        done.steps += 1;
        done.ranges += plan.delete.len() as u64;
        done.ids += plan.ids();
    }
    done.elapsed = started.elapsed();
    Ok(done)
}

/// The usage rollups, as the registry's upkeep of authentication events.
#[derive(Debug)]
pub struct UsageRollups;

/// The one instance, for the registry entry.
pub static ROLLUPS: UsageRollups = UsageRollups;

impl Upkeep for UsageRollups {
    fn name(&self) -> &'static str {
        "usage rollups"
    }

    fn prepare<'a>(
        &'a self,
        client: &'a Client,
        key: &'a Pseudonymiser,
    ) -> BoxFuture<'a, Result<bool, DbError>> {
        Box::pin(async move { Ok(key_existing(client, &key.rollup_keys()).await?) })
    }

    fn settle<'a>(
        &'a self,
        client: &'a mut Client,
        key: &'a Pseudonymiser,
    ) -> BoxFuture<'a, Result<Caught, DbError>> {
        Box::pin(async move {
            Ok(caught(
                catch_up(client, Mode::Complete, &key.rollup_keys()).await?,
            ))
        })
    }

    fn run<'a>(
        &'a self,
        client: &'a mut Client,
        key: &'a Pseudonymiser,
    ) -> BoxFuture<'a, Result<Caught, DbError>> {
        Box::pin(async move {
            Ok(caught(
                catch_up(client, Mode::SkipLocked, &key.rollup_keys()).await?,
            ))
        })
    }
}

fn caught(done: CatchUp) -> Caught {
    Caught {
        rows: done.ids,
        set_aside: done.set_aside,
        elapsed: done.elapsed,
    }
}

/// Converts the rollups' unkeyed digests (before migration 0009) to keyed
/// ones under `keys`, once; true when this call converted them. Every
/// figure stays the same (the mapping is one to one).
pub async fn key_existing(
    client: &Client,
    keys: &RollupKeys,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT usage_rollup_key_existing($1, $2, $3)",
            &[&keys.from, &keys.ipads, &keys.opads],
        )
        .await?;
    row.try_get(0)
}

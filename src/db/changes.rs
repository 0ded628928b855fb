//! The change feed's storage and reads (issue 23), for any kind: where a
//! kind's positions live (see [`crate::core::kind::feed`]), made from its
//! description, and the two statements of a page (its head, then its
//! records as a stream), sent in one round trip.
//!
//! - A table acctstream owns gets a column `change_xid xid8` whose default
//!   is the writing transaction's id (`pg_current_xact_id()`), rows already
//!   there read `1` (before every transaction), an index on
//!   `(change_xid, id)`, a row trigger giving an updated row its updater's
//!   id, and a statement trigger recording deletions
//!   (`acctstream_change_forget`, `sql/0012_change_feed.sql`).
//! - A table another program writes is never altered: a side table
//!   `acctstream_change_<table> (change_id, change_xid)` holds the position
//!   of each row, kept by three statement triggers (insert, update, delete)
//!   on the table. Installed without asking on a table acctstream created
//!   (migration 0007 records it), on one that was there before only by
//!   `acctstream migrate --track-changes`.

use deadpool_postgres::{Object, Pool};
use tokio_postgres::{Client, GenericClient};

use futures_util::future::BoxFuture;

use super::{
    records::{self, filter_params, Output, Param, RecordStream, Xid8},
    tenant::{Planning, Reader},
    upkeep::{Caught, Upkeep},
    DbError,
};
use crate::{
    core::{
        kind::{
            feed::{self, FeedPage, Horizon, Position},
            Kind,
        },
        pseudonym::Pseudonymiser,
    },
    metrics::StreamTally,
};

/// Advisory lock serialising [`ensure`] between instances ("acctchg").
const ENSURE_LOCK: i64 = 0x0061_6363_7463_6867;

/// Whether `kind`'s feed can be read: its positions are kept.
pub async fn tracked(
    client: &impl GenericClient,
    kind: &Kind,
) -> Result<bool, tokio_postgres::Error> {
    let row = if kind.foreign_writes {
        client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger \
                 WHERE tgrelid = to_regclass($1) AND tgname = 'acctstream_change_insert')",
                &[&kind.table],
            )
            .await?
    } else {
        client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) \
                 AND attname = 'change_xid' AND NOT attisdropped)",
                &[&kind.table],
            )
            .await?
    };
    row.try_get(0)
}

/// Makes what `kind`'s feed needs, when it is missing; on a table another
/// program writes that acctstream did not create, only with
/// `track_foreign`. Returns whether the feed can be read. Then build
/// [`index`].
pub async fn ensure(
    client: &mut Client,
    kind: &Kind,
    track_foreign: bool,
) -> Result<bool, tokio_postgres::Error> {
    let (xid, id) = feed::position_columns(kind);
    let table = kind.table;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ENSURE_LOCK])
        .await?;
    let done = tracked(&tx, kind).await?;
    match feed::side_table(kind) {
        None => {
            if !done {
                tx.batch_execute(&format!(
                    "ALTER TABLE {table} ADD COLUMN {xid} xid8 NOT NULL DEFAULT '1';
                     ALTER TABLE {table} ALTER COLUMN {xid} SET DEFAULT pg_current_xact_id();
                     CREATE OR REPLACE FUNCTION acctstream_change_gone_{table}() RETURNS trigger
                     LANGUAGE plpgsql AS $$
                     BEGIN
                         PERFORM acctstream_change_forget('{name}', {xid}, {id})
                         FROM (SELECT {xid}, {id} FROM gone ORDER BY {xid} DESC, {id} DESC LIMIT 1) AS last;
                         RETURN NULL;
                     END
                     $$;
                     CREATE TRIGGER acctstream_change_update BEFORE UPDATE ON {table}
                         FOR EACH ROW EXECUTE FUNCTION acctstream_change_restamp();
                     CREATE TRIGGER acctstream_change_delete AFTER DELETE ON {table}
                         REFERENCING OLD TABLE AS gone
                         FOR EACH STATEMENT EXECUTE FUNCTION acctstream_change_gone_{table}();",
                    name = kind.name,
                ))
                .await?;
            }
        }
        Some(side) => {
            let key = kind.id_column;
            tx.batch_execute(&format!(
                "SET LOCAL client_min_messages = warning;
                 CREATE TABLE IF NOT EXISTS {side} ({id} bigint PRIMARY KEY, {xid} xid8 NOT NULL);
                 CREATE INDEX IF NOT EXISTS {side}_idx ON {side} ({xid}, {id});
                 GRANT SELECT ON {side} TO {role};",
                role = super::tenant::ROLE,
            ))
            .await?;
            let created: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM acctstream_created_table WHERE name = $1)",
                    &[&table],
                )
                .await?
                .try_get(0)?;
            if !done && (created || track_foreign) {
                tx.batch_execute(&format!(
                    "LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE;
                     INSERT INTO {side} ({id}, {xid}) SELECT {key}, '1' FROM {table}
                         ON CONFLICT DO NOTHING;
                     CREATE OR REPLACE FUNCTION acctstream_change_stamp_{table}() RETURNS trigger
                     LANGUAGE plpgsql AS $$
                     BEGIN
                         INSERT INTO {side} ({id}, {xid}) SELECT {key}, pg_current_xact_id() FROM fresh
                         ON CONFLICT ({id}) DO UPDATE SET {xid} = excluded.{xid};
                         RETURN NULL;
                     END
                     $$;
                     CREATE OR REPLACE FUNCTION acctstream_change_gone_{table}() RETURNS trigger
                     LANGUAGE plpgsql AS $$
                     DECLARE
                         last_xid xid8;
                         last_id bigint;
                     BEGIN
                         WITH taken AS (DELETE FROM {side} USING gone WHERE {side}.{id} = gone.{key}
                                        RETURNING {side}.{xid}, {side}.{id})
                         SELECT {xid}, {id} INTO last_xid, last_id FROM taken
                         ORDER BY {xid} DESC, {id} DESC LIMIT 1;
                         IF FOUND THEN
                             PERFORM acctstream_change_forget('{name}', last_xid, last_id);
                         END IF;
                         RETURN NULL;
                     END
                     $$;
                     CREATE TRIGGER acctstream_change_insert AFTER INSERT ON {table}
                         REFERENCING NEW TABLE AS fresh
                         FOR EACH STATEMENT EXECUTE FUNCTION acctstream_change_stamp_{table}();
                     CREATE TRIGGER acctstream_change_update AFTER UPDATE ON {table}
                         REFERENCING NEW TABLE AS fresh
                         FOR EACH STATEMENT EXECUTE FUNCTION acctstream_change_stamp_{table}();
                     CREATE TRIGGER acctstream_change_delete AFTER DELETE ON {table}
                         REFERENCING OLD TABLE AS gone
                         FOR EACH STATEMENT EXECUTE FUNCTION acctstream_change_gone_{table}();",
                    name = kind.name,
                ))
                .await?;
            }
        }
    }
    let now_tracked = tracked(&tx, kind).await?;
    tx.commit().await?;
    Ok(now_tracked)
}

/// The index on the positions of a table acctstream owns (`(name,
/// definition)`), built CONCURRENTLY after [`ensure`] so that a large
/// table keeps taking writes meanwhile; `None` for a side table (made
/// with its index).
pub fn index(kind: &Kind) -> Option<(String, String)> {
    let (xid, id) = feed::position_columns(kind);
    let table = kind.table;
    feed::side_table(kind).is_none().then(|| {
        (
            format!("{table}_change_idx"),
            // Filled at its right edge only (positions grow): full pages,
            // and no deduplication pass (every key is unique).
            format!("{table} ({xid}, {id}) WITH (fillfactor = 100, deduplicate_items = off)"),
        )
    })
}

/// Which kinds' feeds can be read, learnt once each: a feed found not
/// tracked is looked at again on the next request (an operator may have
/// run `migrate --track-changes` meanwhile).
#[derive(Debug, Default)]
pub struct Tracking {
    /// The kinds whose feeds were found installed (it stays so).
    tracked: std::sync::Mutex<Vec<&'static str>>,
}

impl Tracking {
    /// Whether `kind`'s feed can be read.
    pub async fn check(&self, pool: &Pool, kind: &'static Kind) -> Result<bool, DbError> {
        let known = |tracked: &Vec<&str>| tracked.contains(&kind.name);
        if known(&self.tracked.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(true);
        }
        let client = pool.get().await?;
        let yes = tracked(&**client, kind).await?;
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        if yes && !known(&tracked) {
            tracked.push(kind.name);
        }
        Ok(yes)
    }
}

/// Before retention drops `partition` (of `kind`'s table) whole: what its
/// rows' deletion triggers would have done, which a dropped partition does
/// not fire. The greatest position among its rows becomes the feed's
/// deletion horizon (a cursor before it may have missed rows: 410), and for
/// a table another program writes, the rows' positions leave the side
/// table. Nothing when the kind's feed is not tracked.
pub async fn forget_partition(
    client: &impl GenericClient,
    kind: &Kind,
    partition: &str,
) -> Result<(), DbError> {
    if !tracked(client, kind).await? {
        return Ok(());
    }
    let (xid, id) = feed::position_columns(kind);
    let sql = match feed::side_table(kind) {
        None => format!(
            "SELECT acctstream_change_forget($1, x, i) FROM (SELECT {xid} AS x, {id} AS i \
             FROM {partition} ORDER BY 1 DESC, 2 DESC LIMIT 1) AS last"
        ),
        Some(side) => format!(
            "WITH taken AS (DELETE FROM {side} USING {partition} AS p \
             WHERE {side}.{id} = p.{key} RETURNING {side}.{xid} AS x, {side}.{id} AS i) \
             SELECT acctstream_change_forget($1, x, i) FROM (SELECT x, i FROM taken \
             ORDER BY x DESC, i DESC LIMIT 1) AS last",
            key = kind.id_column
        ),
    };
    client.execute(&sql, &[&kind.name]).await?;
    Ok(())
}

/// What a page's first statement learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The oldest transaction still running: the end of the feed now.
    pub horizon: u64,
    /// What deletions left behind.
    pub deletions: Horizon,
    /// The position of the page's last row, if it has any.
    pub last: Option<Position>,
}

impl Head {
    /// The end of the feed now.
    pub fn end(&self) -> Position {
        Position::end_at(self.horizon)
    }
}

/// A page of a feed under way: its connection, its head, and its rows
/// coming ([`open`] streams them).
pub struct Begun {
    /// The connection, in the page's transaction.
    pub reader: Reader,
    /// What the page's first statement learnt.
    pub head: Head,
    /// The rows' statement (its column types).
    statement: tokio_postgres::Statement,
    /// The rows.
    rows: tokio_postgres::RowStream,
}

/// A page of `kind`'s feed begun: a connection (bound to the organization
/// the page's selection reads), the page's [`head`], and its rows
/// ([`FeedPage::rows_sql`]: after `after` when `rows`, else none), all
/// three in one round trip. Both statements are prepared once per
/// connection and run by their generic plans ([`Planning::Generic`]):
/// index lookups and scans over every partition of the kind's table, which
/// planning at every page made cost more than the head's execution.
pub async fn begin(
    pool: &Pool,
    kind: &'static Kind,
    page: &FeedPage,
    after: Position,
    limit: i64,
    rows: bool,
) -> Result<Begun, DbError> {
    let owned = page.clone();
    let (reader, (head, (statement, rows))) = super::tenant::checkout_with(
        pool,
        page.selection.tenant.as_deref(),
        Planning::Generic,
        move |client| {
            Box::pin(async move {
                let (head_statement, rows_statement) = futures_util::future::try_join(
                    client.prepare_cached(&owned.head_sql(kind)),
                    client.prepare_cached(&owned.rows_sql(kind)),
                )
                .await?;
                let filters = filter_params(client, kind, &owned.selection).await?;
                let head_params: Vec<Param> = [
                    Param::Text(Some(kind.name.to_owned())),
                    Param::Xid(Xid8(after.xid)),
                    Param::Integer(after.id),
                    Param::Integer(limit),
                ]
                .into_iter()
                .chain(filters.iter().cloned())
                .collect();
                // Without rows: after every position there is.
                let from = if rows { after } else { Position::END };
                let rows_params: Vec<Param> = [Param::Xid(Xid8(from.xid)), Param::Integer(from.id)]
                    .into_iter()
                    .chain(filters)
                    .collect();
                let (row, rows) = futures_util::future::join(
                    client.query_one(
                        &head_statement,
                        &head_params.iter().map(Param::as_sql).collect::<Vec<_>>(),
                    ),
                    client.query_raw(&rows_statement, rows_params.iter().map(Param::as_sql)),
                )
                .await;
                Ok((read_head(&row?)?, (rows_statement, rows?)))
            })
        },
    )
    .await?;
    Ok(Begun {
        reader,
        head,
        statement,
        rows,
    })
}

/// A page's head out of its statement's row ([`FeedPage::head_sql`]).
fn read_head(row: &tokio_postgres::Row) -> Result<Head, DbError> {
    let horizon: Xid8 = row.try_get(0)?;
    let epoch: Option<i64> = row.try_get(1)?;
    let deleted_xid: Option<Xid8> = row.try_get(2)?;
    let deleted_id: Option<i64> = row.try_get(3)?;
    let last_xid: Option<Xid8> = row.try_get(4)?;
    let last_id: Option<i64> = row.try_get(5)?;
    let position = |xid: Option<Xid8>, id: Option<i64>| {
        xid.zip(id).map(|(xid, id)| Position { xid: xid.0, id })
    };
    Ok(Head {
        horizon: horizon.0,
        deletions: Horizon {
            epoch: epoch.unwrap_or(0),
            deleted: position(deleted_xid, deleted_id),
        },
        last: position(last_xid, last_id),
    })
}

/// Streams the page's rows, in feed order, each with its position as a
/// cursor of `epoch`. `shown` is the kind with the position column
/// ([`feed::with_position`]).
pub fn open(
    begun: Begun,
    kind: &'static Kind,
    shown: &'static Kind,
    epoch: i64,
    output: Output<'_>,
    tally: StreamTally,
) -> RecordStream {
    let prefix = format!("{}.{epoch}.", kind.name);
    records::stream_rows(
        begun.reader,
        shown,
        &begun.statement,
        begun.rows,
        output,
        tally,
        Some(prefix),
    )
}

/// Rows one summary step takes at most.
const SUMMARY_BATCH: i64 = 100_000;

/// The summary of every kind's feed (see `sql/0012_change_feed.sql`),
/// kept by the background job as an [`Upkeep`]: each run takes every
/// tracked kind's new changes, a batch at a time, into the stamps
/// conditional windows read.
#[derive(Debug)]
pub struct Summary {
    kinds: Vec<&'static Kind>,
}

impl Summary {
    /// The summary of these kinds' feeds, for the program's life.
    pub fn of(kinds: Vec<&'static Kind>) -> &'static Summary {
        Box::leak(Box::new(Summary { kinds }))
    }

    /// Takes `kind`'s changes in: batches until none is left (or, with
    /// `skip_locked`, nothing when another runner holds the kind).
    async fn catch_up(client: &mut Client, kind: &Kind, skip_locked: bool) -> Result<u64, DbError> {
        if !tracked(&*client, kind).await? {
            return Ok(0);
        }
        client
            .execute(
                "INSERT INTO acctstream_change_summarised (kind, xid, id) VALUES ($1, '0', 0) \
                 ON CONFLICT (kind) DO NOTHING",
                &[&kind.name],
            )
            .await?;
        let sql = feed::summary_sql(kind);
        let lock = if skip_locked {
            "SELECT 1 FROM acctstream_change_summarised WHERE kind = $1 FOR UPDATE SKIP LOCKED"
        } else {
            "SELECT 1 FROM acctstream_change_summarised WHERE kind = $1 FOR UPDATE"
        };
        let mut rows = 0;
        loop {
            let tx = client.transaction().await?;
            if tx.query_opt(lock, &[&kind.name]).await?.is_none() {
                return Ok(rows);
            }
            let statement = tx.prepare(&sql).await?;
            let taken: i64 = tx
                .query_one(&statement, &[&kind.name, &SUMMARY_BATCH])
                .await?
                .try_get(0)?;
            tx.commit().await?;
            rows += u64::try_from(taken).unwrap_or(0);
            if taken < SUMMARY_BATCH {
                return Ok(rows);
            }
        }
    }

    async fn all(&self, client: &mut Client, skip_locked: bool) -> Result<Caught, DbError> {
        let started = std::time::Instant::now();
        let mut rows = 0;
        for kind in &self.kinds {
            rows += Summary::catch_up(client, kind, skip_locked).await?;
        }
        Ok(Caught {
            rows,
            set_aside: 0,
            elapsed: started.elapsed(),
        })
    }
}

impl Upkeep for Summary {
    fn name(&self) -> &'static str {
        "change summary"
    }

    fn settle<'a>(
        &'a self,
        client: &'a mut Client,
        _key: &'a Pseudonymiser,
    ) -> BoxFuture<'a, Result<Caught, DbError>> {
        Box::pin(self.all(client, false))
    }

    fn run<'a>(
        &'a self,
        client: &'a mut Client,
        _key: &'a Pseudonymiser,
    ) -> BoxFuture<'a, Result<Caught, DbError>> {
        Box::pin(self.all(client, true))
    }
}

/// What a window's tag is made of ([`feed::window_state_sql`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowState {
    /// The end of the feed now.
    pub end: Position,
    /// The kind's epoch (deletions).
    pub epoch: i64,
    /// The greatest summary stamp covering the window.
    pub stamp: Option<Position>,
    /// The greatest change not yet summarised that may touch it.
    pub pending: Option<Position>,
    /// Whether it may hold a span still open.
    pub live: bool,
    /// The database's snapshot, when the summary is too far behind for
    /// the pending changes to be read.
    pub behind: Option<String>,
    /// The version of how records map to organizations, for a kind that
    /// derives them ([`Kind::tenant_version`]).
    pub tenancy: Option<i64>,
}

/// The state of the window from `lower` to `upper` (both inclusive) of
/// `kind`, in one statement: of `tenant`'s records only when given.
pub async fn window_state(
    client: &Object,
    kind: &Kind,
    lower: chrono::DateTime<chrono::Utc>,
    upper: chrono::DateTime<chrono::Utc>,
    tenant: Option<&str>,
) -> Result<WindowState, DbError> {
    use tokio_postgres::types::Type;
    // Typed: a kind of spans does not read the lower bound.
    let statement = client
        .prepare_typed_cached(
            &feed::window_state_sql(kind),
            &[Type::TEXT, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ, Type::TEXT],
        )
        .await?;
    let row = client
        .query_one(&statement, &[&kind.name, &lower, &upper, &tenant])
        .await?;
    let horizon: Xid8 = row.try_get(0)?;
    let epoch: Option<i64> = row.try_get(1)?;
    let position = |x: usize, i: usize| -> Result<Option<Position>, DbError> {
        let xid: Option<Xid8> = row.try_get(x)?;
        let id: Option<i64> = row.try_get(i)?;
        Ok(xid.zip(id).map(|(xid, id)| Position { xid: xid.0, id }))
    };
    Ok(WindowState {
        end: Position::end_at(horizon.0),
        epoch: epoch.unwrap_or(0),
        stamp: position(2, 3)?,
        pending: position(4, 5)?,
        live: row.try_get(6)?,
        tenancy: row.try_get(7)?,
        behind: row.try_get(8)?,
    })
}

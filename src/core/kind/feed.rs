//! The change feed of a kind (issue 23): its records in the order their
//! versions were committed, read page after page from a cursor.
//!
//! Every row version has a *position*: the top-level transaction id that
//! wrote it (`xid8`, never wrapping) and the row's id. A page only holds
//! rows whose transaction id is below the *horizon*, the oldest transaction
//! still running when the page was read (`pg_snapshot_xmin`): every
//! transaction that commits later has an id at or above it, so no row ever
//! appears behind a position already handed out, however commits
//! interleave.
//!
//! Where the position lives is the kind's business: a table acctstream
//! owns carries it in a column `change_xid` (the id is the kind's id
//! column); a table another program writes (`Kind::foreign_writes`:
//! FreeRADIUS's `radacct`) is never altered, and a side table
//! `acctstream_change_<table>` keyed by the row's id holds it instead,
//! kept by triggers (see `db::changes`).

use std::fmt::Write as _;

use std::sync::Mutex;

use super::{Column, ColumnType, Kind, Selection, TimeModel};

/// A row version's place in the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The writing transaction's id (`xid8`).
    pub xid: u64,
    /// The row's id.
    pub id: i64,
}

impl Position {
    /// Before every row: where a feed read from its start begins.
    pub const START: Position = Position { xid: 0, id: 0 };

    /// After every row there is (the greatest `xid8` and `int8`).
    pub const END: Position = Position {
        xid: u64::MAX,
        id: i64::MAX,
    };

    /// The end of the feed at `horizon`: after every row whose transaction
    /// id is below it, before every row of a later transaction (ids are
    /// positive: [`Kind::id_column`] is generated from 1 up).
    pub fn end_at(horizon: u64) -> Position {
        Position {
            xid: horizon,
            id: 0,
        }
    }
}

/// What a client holds between two pages: a position, and the *epoch* of
/// the kind's feed when it was handed out (how many times rows of the kind
/// had been deleted). `<kind>.<epoch>.<xid>.<id>` in URLs (opaque to
/// clients).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Deletions of the kind's rows before the cursor was handed out.
    pub epoch: i64,
    /// Rows at or before it were handed out.
    pub position: Position,
}

/// A cursor that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor of any feed.
    #[error("The parameter `after` is not a cursor this service gave out: use a `next` link, or `after=latest`.")]
    Malformed,
    /// A cursor of another kind's feed.
    #[error("The parameter `after` is a cursor of the `{0}` feed, not of this one.")]
    OtherKind(String),
}

impl Cursor {
    /// The text form, for `kind`.
    pub fn encode(&self, kind: &Kind) -> String {
        format!(
            "{}.{}.{}.{}",
            kind.name, self.epoch, self.position.xid, self.position.id
        )
    }

    /// Reads a cursor of `kind`'s feed ([`Cursor::encode`]).
    pub fn decode(kind: &Kind, text: &str) -> Result<Cursor, CursorError> {
        let mut parts = text.rsplitn(4, '.');
        let (Some(id), Some(xid), Some(epoch), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CursorError::Malformed);
        };
        let number = |text: &str| text.bytes().all(|b| b.is_ascii_digit() || b == b'-');
        if ![id, xid, epoch].iter().all(|part| number(part)) {
            return Err(CursorError::Malformed);
        }
        let cursor = Cursor {
            epoch: epoch.parse().map_err(|_| CursorError::Malformed)?,
            position: Position {
                xid: xid.parse().map_err(|_| CursorError::Malformed)?,
                id: id.parse().map_err(|_| CursorError::Malformed)?,
            },
        };
        if cursor.epoch < 0 {
            return Err(CursorError::Malformed);
        }
        if name != kind.name {
            let known = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_');
            return Err(if known {
                CursorError::OtherKind(name.to_owned())
            } else {
                CursorError::Malformed
            });
        }
        Ok(cursor)
    }
}

/// What the kind's deletions left behind: the feed's epoch, and the
/// greatest position of a deleted row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Horizon {
    /// How many statements deleted rows of the kind.
    pub epoch: i64,
    /// The greatest position of a deleted row (or [`Position::START`]).
    pub deleted: Option<Position>,
}

/// Whether `cursor` may have missed rows deleted since it was handed out:
/// a deletion came after it (a later epoch) and removed a row beyond it.
/// The client then starts again from the first retained record (410).
pub fn overtaken(cursor: &Cursor, horizon: &Horizon) -> bool {
    cursor.epoch < horizon.epoch && horizon.deleted.is_some_and(|d| cursor.position < d)
}

/// Whether `cursor` can have been handed out by a feed whose end is now at
/// `end` with this horizon: not beyond either.
pub fn plausible(cursor: &Cursor, horizon: &Horizon, end: Position) -> bool {
    cursor.epoch <= horizon.epoch && cursor.position <= end
}

/// A strong entity tag of these parts: 128 bits of their SHA-256, in hex.
pub fn tag(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The path of `kind`'s feed: `<kind path>/changes`.
pub fn path(kind: &Kind) -> String {
    format!("{}/changes", kind.path)
}

/// The column the feed adds to a kind's records: the record's position,
/// as a cursor (a client may resume after any record).
pub const POSITION: Column = Column::new("position", "Position", ColumnType::Text, "position");

/// `kind` as its feed shows it: its columns, then [`POSITION`]. Made once
/// per kind and kept for the program's life.
pub fn with_position(kind: &'static Kind) -> &'static Kind {
    static MADE: Mutex<Vec<(usize, &'static Kind)>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let key = kind as *const Kind as usize;
    if let Some((_, shown)) = made.iter().find(|(k, _)| *k == key) {
        return shown;
    }
    let mut columns = kind.columns.to_vec();
    columns.push(POSITION);
    let shown: &'static Kind = Box::leak(Box::new(Kind {
        columns: Vec::leak(columns),
        ingest: None,
        ..*kind
    }));
    made.push((key, shown));
    shown
}

/// The columns holding a kind's positions, and what its feed reads.
pub fn position_columns(kind: &Kind) -> (&'static str, &'static str) {
    if kind.foreign_writes {
        ("change_xid", "change_id")
    } else {
        ("change_xid", kind.id_column)
    }
}

/// The side table of a kind whose table another program writes.
pub fn side_table(kind: &Kind) -> Option<String> {
    kind.foreign_writes
        .then(|| format!("acctstream_change_{}", kind.table))
}

/// The rows of the feed: the kind's table, joined with its side table
/// when it has one.
fn source(kind: &Kind) -> String {
    match side_table(kind) {
        None => kind.table.to_owned(),
        Some(side) => format!(
            "{table} JOIN {side} ON {side}.change_id = {table}.{id}",
            table = kind.table,
            id = kind.id_column
        ),
    }
}

/// Where the greatest position below the summary's place is read from:
/// `$1` the kind's name (an init plan each, once per statement).
const SUMMARISED: &str =
    "(coalesce((SELECT xid FROM acctstream_change_summarised WHERE kind = $1), '0'::xid8), \
     coalesce((SELECT id FROM acctstream_change_summarised WHERE kind = $1), 0))";

/// The statement taking the summary of `kind`'s feed one batch further:
/// at most `$2` rows below the horizon after where it stood (`$1` the
/// kind's name; its row in `acctstream_change_summarised` exists and is
/// locked by the caller). The batch's last position stamps every UTC hour
/// of its records' times (instants: `acctstream_change_hour`), or the
/// first hour of its spans' starts (spans: `acctstream_change_since`,
/// dropping the later stamps it overrides). Returns the rows taken.
pub fn summary_sql(kind: &Kind) -> String {
    let (xid, id) = position_columns(kind);
    let at = kind.time.order_column();
    // Stamps are per organization (issue 28): a window read for one
    // organization is tagged by its own changes only.
    let stamp = match kind.time {
        TimeModel::Instant { .. } => "stamped AS (INSERT INTO acctstream_change_hour (kind, hour, tenant, xid, id) \
             SELECT $1, hours.hour, hours.tenant, last.xid, last.id FROM (SELECT DISTINCT \
             date_trunc('hour', at, 'UTC') AS hour, tenant FROM batch WHERE at IS NOT NULL) AS hours, last \
             ON CONFLICT (kind, hour, tenant) DO UPDATE SET xid = excluded.xid, id = excluded.id RETURNING 1)"
            .to_owned(),
        TimeModel::Interval { .. } => "first AS (SELECT tenant, min(date_trunc('hour', at, 'UTC')) AS hour \
             FROM batch GROUP BY tenant), \
             stamped AS (INSERT INTO acctstream_change_since (kind, hour, tenant, xid, id) \
             SELECT $1, first.hour, first.tenant, last.xid, last.id FROM first, last WHERE first.hour IS NOT NULL \
             ON CONFLICT (kind, hour, tenant) DO UPDATE SET xid = excluded.xid, id = excluded.id RETURNING 1), \
             pruned AS (DELETE FROM acctstream_change_since AS d USING first \
             WHERE d.kind = $1 AND d.tenant = first.tenant AND d.hour > first.hour RETURNING 1)"
            .to_owned(),
    };
    format!(
        "WITH batch AS MATERIALIZED (SELECT {xid} AS xid, {id} AS id, {at} AS at, \
         {tenant} AS tenant FROM {source} \
         WHERE {xid} < pg_snapshot_xmin(pg_current_snapshot()) AND ({xid}, {id}) > {SUMMARISED} \
         ORDER BY {xid}, {id} LIMIT $2), \
         last AS (SELECT xid, id FROM batch ORDER BY xid DESC, id DESC LIMIT 1), \
         {stamp}, \
         moved AS (UPDATE acctstream_change_summarised AS s SET xid = last.xid, id = last.id \
         FROM last WHERE s.kind = $1 RETURNING 1) \
         SELECT count(*) FROM batch",
        source = source(kind),
        tenant = kind.tenant_sql(),
    )
}

/// The most changes past the summary a window's tag reads. With more (the
/// summary catching up with a bulk load), the tag is the database's
/// snapshot instead: it changes with every commit, so a conditional window
/// is answered 200 until the summary has caught up, never a wrong 304.
pub const PENDING_READ: u32 = 50_000;

/// What a window's tag is made of, read in one statement (`$1` the kind's
/// name, `$2` and `$3` the window's bounds, both taken as inclusive, `$4`
/// the organization it is read for, NULL for every one): the
/// horizon, the kind's epoch, the greatest summary stamp covering the
/// window, the greatest position of a change the summary has not reached
/// that may touch it, (spans) whether a span still open starts before its
/// end (its records then change with time: durations, status), and the
/// snapshot when more than [`PENDING_READ`] changes are past the summary.
pub fn window_state_sql(kind: &Kind) -> String {
    let (xid, id) = position_columns(kind);
    let at = kind.time.order_column();
    let (stamps, pending, live) = match kind.time {
        TimeModel::Instant { .. } => (
            "SELECT xid, id FROM acctstream_change_hour WHERE kind = $1 \
             AND hour >= date_trunc('hour', $2::timestamptz, 'UTC') AND hour <= $3::timestamptz \
             AND ($4::text IS NULL OR tenant = $4::text)"
                .to_owned(),
            "at >= $2::timestamptz AND at <= $3::timestamptz",
            "false".to_owned(),
        ),
        TimeModel::Interval { start, stop } => (
            "SELECT xid, id FROM acctstream_change_since WHERE kind = $1 AND hour <= $3::timestamptz \
             AND ($4::text IS NULL OR tenant = $4::text)"
                .to_owned(),
            "at <= $3::timestamptz",
            format!(
                "EXISTS (SELECT 1 FROM {table} WHERE {stop} IS NULL AND {start} <= $3::timestamptz \
                 AND ($4::text IS NULL OR {tenant} = $4::text))",
                table = kind.table,
                tenant = kind.tenant_sql(),
            ),
        ),
    };
    format!(
        "SELECT pg_snapshot_xmin(pg_current_snapshot()), \
         (SELECT epoch FROM acctstream_change_horizon WHERE kind = $1), \
         stamp.xid, stamp.id, pending.xid, pending.id, {live}, {version}::int8, \
         CASE WHEN (SELECT count(*) FROM (SELECT 1 FROM {source} \
         WHERE ({xid}, {id}) > {SUMMARISED} LIMIT {PENDING_READ}) AS c) >= {PENDING_READ} \
         THEN pg_current_snapshot()::text END \
         FROM (SELECT 1) AS one \
         LEFT JOIN LATERAL ({stamps} ORDER BY xid DESC, id DESC LIMIT 1) AS stamp ON true \
         LEFT JOIN LATERAL (SELECT xid, id FROM (SELECT {xid} AS xid, {id} AS id, {at} AS at, \
         {tenant} AS tenant FROM {source} WHERE ({xid}, {id}) > {SUMMARISED} \
         ORDER BY {xid} DESC, {id} DESC LIMIT {PENDING_READ} OFFSET 0) AS p \
         WHERE {pending} AND ($4::text IS NULL OR tenant = $4::text) \
         ORDER BY xid DESC, id DESC LIMIT 1) AS pending ON true",
        source = source(kind),
        tenant = kind.tenant_sql(),
        version = kind.tenant_version.unwrap_or("NULL"),
    )
}

/// One page of a feed: the rows after `after` up to `upto`, with the
/// request's filters.
#[derive(Clone, Debug)]
pub struct FeedPage {
    /// The filters.
    pub selection: Selection,
}

impl FeedPage {
    /// The query telling, in one statement, the horizon (`$1` the kind's
    /// name), the kind's deletions, and the position of the last row of the
    /// page after `($2, $3)` of at most `$4` rows below the horizon (NULL
    /// when there is none; a page may hold fewer than `$4` rows while more
    /// follow). The filters take `$5` on.
    pub fn head_sql(&self, kind: &Kind) -> String {
        let (xid, id) = position_columns(kind);
        let mut n = 5;
        let filters = kind.filter_terms(&self.selection, &mut n);
        let source = source(kind);
        let mut predicate = format!("{xid} < now.horizon AND ({xid}, {id}) > ($2::xid8, $3::int8)");
        for term in filters {
            let _ = write!(predicate, " AND {term}");
        }
        // The page's last row. Unfiltered, when the first row after the
        // cursor begins a run of `$4` ids of one transaction (a bulk
        // insert), the run's end, found by one lookup: the page then holds
        // at most `$4` rows (ids are unique), at least the first; when the
        // rest of that transaction spans fewer ids than `$4` but at least a
        // quarter of them, its last row (one lookup too: the page ends
        // with the transaction, so the next one starts at one). Else the
        // `$4`th row after the cursor (an index reads up to it, without a
        // sort), or when there are fewer, the last one below the horizon
        // (read backwards from it). The first branch that finds a row ends
        // the search.
        let (first, probe) = if self.selection.is_unfiltered() {
            (
                format!(
                    "LEFT JOIN LATERAL (SELECT {xid} AS xid, {id} AS id FROM {source} \
                     WHERE {predicate} ORDER BY {xid}, {id} LIMIT 1) AS first ON true "
                ),
                format!(
                    "(SELECT {xid}, {id} FROM {source} WHERE {xid} = first.xid \
                     AND {id} = first.id + $4::int8 - 1) \
                     UNION ALL (SELECT xid, id FROM (SELECT {xid} AS xid, {id} AS id FROM {source} \
                     WHERE {xid} = first.xid ORDER BY {xid} DESC, {id} DESC LIMIT 1) AS tail \
                     WHERE tail.id - first.id < $4::int8 AND tail.id - first.id >= $4::int8 / 4) \
                     UNION ALL "
                ),
            )
        } else {
            (String::new(), String::new())
        };
        format!(
            "WITH now AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) \
             SELECT now.horizon, h.epoch, h.upto_xid, h.upto_id, last.{xid}, last.{id}, \
             set_config('{UPTO_XID}', coalesce(last.{xid}::text, ''), true), \
             set_config('{UPTO_ID}', coalesce(last.{id}::text, ''), true) FROM now \
             LEFT JOIN acctstream_change_horizon h ON h.kind = $1::text \
             {first}LEFT JOIN LATERAL ({probe}(SELECT {xid}, {id} FROM {source} WHERE {predicate} \
             ORDER BY {xid}, {id} OFFSET $4::int8 - 1 LIMIT 1) \
             UNION ALL (SELECT {xid}, {id} FROM {source} WHERE {predicate} \
             ORDER BY {xid} DESC, {id} DESC LIMIT 1) LIMIT 1) AS last ON true",
        )
    }

    /// The query of the page's records, in feed order, each followed by its
    /// position's two parts (`xid8`, `int8`: the stream writes them as a
    /// cursor, see `db::records::stream_rows`): the rows after `($1, $2)` up to
    /// the page's last position, which the head ([`FeedPage::head_sql`],
    /// the statement before it in the same transaction) leaves in the
    /// settings [`UPTO_XID`] and [`UPTO_ID`] (read once each, by init
    /// plans; none when the page is empty). So the query does not wait for
    /// the head's answer: both go in one round trip, and, prepared once per
    /// connection, it is planned once too. The filters take `$3` on.
    ///
    /// An upper bound written as a row comparison does not stop an index
    /// scan within its first column's value (it read the rest of a bulk
    /// insert's rows), so each of two forms gives the index an exact stop,
    /// and only the one that fits runs (the other's one-time filter is
    /// false): when both ends are of one transaction (a page inside a bulk
    /// insert), its id range; across several, the last one's id (the scan
    /// stops after the last transaction, reading at most the rest of its
    /// rows).
    pub fn rows_sql(&self, kind: &Kind) -> String {
        let (xid, id) = position_columns(kind);
        let mut columns = String::new();
        for column in kind.columns {
            columns.push_str(column.sql);
            columns.push_str(", ");
        }
        let upto_xid = format!("(SELECT nullif(current_setting('{UPTO_XID}', true), '')::xid8)");
        let upto_id = format!("(SELECT nullif(current_setting('{UPTO_ID}', true), '')::int8)");
        let filters = || {
            let mut n = 3;
            let mut text = String::new();
            for term in kind.filter_terms(&self.selection, &mut n) {
                let _ = write!(text, " AND {term}");
            }
            text
        };
        let source = source(kind);
        format!(
            "(SELECT {columns}{xid}, {id} FROM {source} \
             WHERE {xid} = $1::xid8 AND {id} > $2::int8 AND {id} <= {upto_id} \
             AND {upto_xid} = $1::xid8{one} ORDER BY {xid}, {id}) \
             UNION ALL \
             (SELECT {columns}{xid}, {id} FROM {source} \
             WHERE ({xid}, {id}) > ($1::xid8, $2::int8) AND {xid} <= {upto_xid} \
             AND ({xid}, {id}) <= ({upto_xid}, {upto_id}) \
             AND {upto_xid} <> $1::xid8{several} ORDER BY {xid}, {id})",
            one = filters(),
            several = filters(),
        )
    }
}

/// The setting a page's head leaves the transaction id of the page's last
/// position in, for its rows ([`FeedPage::rows_sql`]).
pub const UPTO_XID: &str = "acctstream.feed_upto_xid";
/// The setting a page's head leaves the id of the page's last position in.
pub const UPTO_ID: &str = "acctstream.feed_upto_id";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kind::{Column, ColumnType};
    use crate::core::kind::{Filter, FilterType};

    static COLUMNS: [Column; 1] = [Column::new("at", "At", ColumnType::Timestamp, "at")];
    static FILTERS: [Filter; 1] = [Filter {
        param: "name",
        column: "name",
        ty: FilterType::Text,
    }];
    static THINGS: Kind = Kind {
        name: "things",
        table: "thing",
        time: TimeModel::Instant { column: "at" },
        columns: &COLUMNS,
        filters: &FILTERS,
        ..Kind::BASE
    };
    static FOREIGN: Kind = Kind {
        name: "foreign-things",
        table: "foreign",
        id_column: "fid",
        foreign_writes: true,
        time: TimeModel::Instant { column: "at" },
        columns: &COLUMNS,
        filters: &FILTERS,
        ..Kind::BASE
    };

    #[test]
    fn cursors_round_trip_and_name_their_kind() {
        let cursor = Cursor {
            epoch: 3,
            position: Position { xid: 812, id: 77 },
        };
        assert_eq!(cursor.encode(&FOREIGN), "foreign-things.3.812.77");
        assert_eq!(
            Cursor::decode(&FOREIGN, "foreign-things.3.812.77"),
            Ok(cursor)
        );
        let end = Cursor {
            epoch: 0,
            position: Position::end_at(9),
        };
        assert_eq!(Cursor::decode(&THINGS, &end.encode(&THINGS)), Ok(end));
        assert_eq!(
            Cursor::decode(&THINGS, "foreign-things.3.812.77"),
            Err(CursorError::OtherKind("foreign-things".into()))
        );
        for bad in [
            "",
            "things",
            "things.1.2",
            "things.x.2.3",
            "things.-1.2.3",
            "things.1.-2.3",
            "things.1.2.3.4",
            "things.1.2.99999999999999999999",
            "Th!ngs.1.2.3",
        ] {
            assert_eq!(
                Cursor::decode(&THINGS, bad),
                Err(CursorError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_cursor_is_overtaken_only_by_a_later_deletion_beyond_it() {
        let at = |epoch, xid| Cursor {
            epoch,
            position: Position { xid, id: 1 },
        };
        let horizon = Horizon {
            epoch: 2,
            deleted: Some(Position { xid: 50, id: 9 }),
        };
        assert!(overtaken(&at(1, 40), &horizon));
        // Handed out after the deletion, or beyond what it removed.
        assert!(!overtaken(&at(2, 40), &horizon));
        assert!(!overtaken(&at(1, 60), &horizon));
        assert!(!overtaken(&at(0, 40), &Horizon::default()));
        let end = Position::end_at(100);
        assert!(plausible(&at(2, 99), &horizon, end));
        assert!(!plausible(&at(3, 40), &horizon, end));
        assert!(!plausible(&at(2, 100), &horizon, end));
        assert!(plausible(
            &Cursor {
                epoch: 2,
                position: end
            },
            &horizon,
            end
        ));
    }

    #[test]
    fn pages_read_by_position_below_the_horizon() {
        let sel = THINGS
            .parse_filters(&[("name".into(), "x".into())], false)
            .unwrap();
        let page = FeedPage { selection: sel };
        let upto_xid =
            "(SELECT nullif(current_setting('acctstream.feed_upto_xid', true), '')::xid8)";
        let upto_id = "(SELECT nullif(current_setting('acctstream.feed_upto_id', true), '')::int8)";
        assert_eq!(
            page.rows_sql(&THINGS),
            format!(
                "(SELECT at, change_xid, id FROM thing \
                 WHERE change_xid = $1::xid8 AND id > $2::int8 AND id <= {upto_id} \
                 AND {upto_xid} = $1::xid8 AND name = $3::text ORDER BY change_xid, id) \
                 UNION ALL \
                 (SELECT at, change_xid, id FROM thing \
                 WHERE (change_xid, id) > ($1::xid8, $2::int8) AND change_xid <= {upto_xid} \
                 AND (change_xid, id) <= ({upto_xid}, {upto_id}) \
                 AND {upto_xid} <> $1::xid8 AND name = $3::text ORDER BY change_xid, id)"
            )
        );
        // The head leaves the page's last position for the rows.
        assert!(page.head_sql(&THINGS).contains(
            "set_config('acctstream.feed_upto_xid', coalesce(last.change_xid::text, ''), true)"
        ));
        // Unfiltered, a run of one transaction's ids is looked up first.
        let unfiltered = FeedPage {
            selection: Selection::default(),
        }
        .head_sql(&THINGS);
        assert!(
            unfiltered.contains(
                "LATERAL ((SELECT change_xid, id FROM thing WHERE change_xid = first.xid \
             AND id = first.id + $4::int8 - 1) UNION ALL (SELECT"
            ),
            "{unfiltered}"
        );
        assert!(!page.head_sql(&THINGS).contains("first.xid"));
        let head = page.head_sql(&FOREIGN);
        assert!(head.contains(
            "FROM foreign JOIN acctstream_change_foreign ON acctstream_change_foreign.change_id = foreign.fid \
             WHERE change_xid < now.horizon AND (change_xid, change_id) > ($2::xid8, $3::int8) \
             AND name = $5::text ORDER BY change_xid, change_id OFFSET $4::int8 - 1 LIMIT 1"
        ), "{head}");
    }
}

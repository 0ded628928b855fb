//! What one listing of a kind reads: a time range, filters, an order and a
//! page, and the SQL it builds.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{FilterType, Kind, Selection, TimeModel};
use crate::core::window::Direction;

/// One end of a time range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The instant.
    pub at: DateTime<Utc>,
    /// Whether records exactly at `at` are in.
    pub inclusive: bool,
}

impl Bound {
    /// Records at or after `at` (a range's start).
    pub fn at_or_after(at: DateTime<Utc>) -> Bound {
        Bound {
            at,
            inclusive: true,
        }
    }

    /// Records before `at` (a half-open range's end).
    pub fn before(at: DateTime<Utc>) -> Bound {
        Bound {
            at,
            inclusive: false,
        }
    }
}

/// Paging by offset, for lists that are not windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Records skipped.
    pub offset: i64,
    /// Records at most.
    pub limit: i64,
}

/// What one listing of a kind selects: a time range (a window, or open
/// ends), filters, an order, and optionally a page. The SQL it builds takes
/// its parameters in this order: the lower bound, the upper bound (each only
/// when present), one per filter (an array, or a scalar when the filter has
/// one value), the keyset id, the seek time and id (each only when
/// present), then offset and limit.
#[derive(Clone, Debug)]
pub struct Listing {
    /// Oldest first or newest first.
    pub direction: Direction,
    /// Records at or after (or after) this instant.
    pub lower: Option<Bound>,
    /// Records at or before (or before) this instant.
    pub upper: Option<Bound>,
    /// The filters.
    pub selection: Selection,
    /// The page, for offset paging.
    pub page: Option<Page>,
    /// Keyset paging: order by the id column alone (stable while rows are
    /// updated) and start after this id, when set.
    pub keyset: Option<Keyset>,
    /// A fixed SQL condition of the calling code (never built from input),
    /// e.g. "open sessions" in a form an index can serve.
    pub condition: Option<&'static str>,
    /// Keyset paging in the usual order (time, then id): only records after
    /// this position, in the listing's direction.
    pub seek: Option<Seek>,
}

/// A position in a listing's usual order: its time column (the start, for
/// intervals), then its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seek {
    /// The time.
    pub at: DateTime<Utc>,
    /// The id.
    pub id: i64,
}

/// Keyset paging by the id column, in the listing's direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keyset {
    /// Only records after this id (in the listing's direction).
    pub after: Option<i64>,
}

impl Listing {
    /// The listing of one window.
    pub fn window(window: &crate::core::window::Window, selection: Selection) -> Listing {
        let (lower, upper) = window.bounds();
        let ascending = window.direction() == Direction::Ascending;
        Listing {
            direction: window.direction(),
            lower: Some(Bound {
                at: lower,
                inclusive: ascending,
            }),
            upper: Some(Bound {
                at: upper,
                inclusive: !ascending,
            }),
            selection,
            page: None,
            keyset: None,
            condition: None,
            seek: None,
        }
    }

    /// Whether the listing reads a span kind from a lower bound: its SQL
    /// then takes one more parameter after the bounds, the *start bound*
    /// ([`Listing::start_bound`]), and reads the table in three parts an
    /// index serves each (see [`Listing::source`]).
    pub fn splits_spans(&self, kind: &Kind) -> bool {
        matches!(kind.time, TimeModel::Interval { .. }) && self.lower.is_some()
    }

    /// The start bound of a split listing: its lower bound less `longest`
    /// (the length of a span past which few are longer, from
    /// [`long_span_sql`]), never after the lower bound. Any start bound at
    /// or before the lower bound selects the same records: `longest` only
    /// decides how much of the table each part reads.
    pub fn start_bound(&self, longest: chrono::Duration) -> Option<DateTime<Utc>> {
        let lower = self.lower?.at;
        let longest = longest.max(chrono::Duration::zero());
        Some(
            lower
                .checked_sub_signed(longest)
                .filter(|bound| *bound >= earliest_bound())
                .unwrap_or_else(|| earliest_bound().min(lower)),
        )
    }

    /// ` WHERE …` (or nothing) with its parameter numbers, and the number of
    /// the next parameter.
    pub fn predicate(&self, kind: &Kind) -> (String, usize) {
        let (first, last) = match kind.time {
            TimeModel::Instant { column } => (column, column),
            TimeModel::Interval { start, stop } => (stop, start),
        };
        let mut terms = Vec::new();
        let mut n = 1;
        // A span is [start, stop) against a range closed at its start
        // (ascending windows, [a, b)), and (start, stop] against one
        // closed at its end (descending windows, (a, b]), so that a span
        // touching a bound lies in one range only; a span of no length
        // lies in the range that holds its instant. An open span has no
        // stop.
        if let Some(lower) = self.lower {
            let op = if lower.inclusive { ">=" } else { ">" };
            terms.push(match kind.time {
                TimeModel::Instant { .. } => format!("{first} {op} ${n}"),
                TimeModel::Interval { .. } if lower.inclusive => {
                    format!("({first} IS NULL OR {first} > ${n} OR {last} >= ${n})")
                }
                TimeModel::Interval { .. } => format!("({first} IS NULL OR {first} > ${n})"),
            });
            n += 1;
        }
        if let Some(upper) = self.upper {
            let op = if upper.inclusive { "<=" } else { "<" };
            terms.push(match kind.time {
                TimeModel::Interval { .. } if upper.inclusive => {
                    format!("{last} <= ${n} AND ({last} < ${n} OR {first} = {last})")
                }
                _ => format!("{last} {op} ${n}"),
            });
            n += 1;
        }
        if self.splits_spans(kind) {
            n += 1; // the start bound, read in the FROM clause
        }
        terms.extend(kind.filter_terms(&self.selection, &mut n));
        if let Some(condition) = self.condition {
            terms.push(format!("({condition})"));
        }
        if let Some(Keyset { after: Some(_) }) = self.keyset {
            let op = match self.direction {
                Direction::Ascending => ">",
                Direction::Descending => "<",
            };
            terms.push(format!("{} {op} ${n}", kind.id_column));
            n += 1;
        }
        if self.seek.is_some() {
            let op = match self.direction {
                Direction::Ascending => ">",
                Direction::Descending => "<",
            };
            terms.push(format!(
                "({last}, {}) {op} (${n}, ${})",
                kind.id_column,
                n + 1
            ));
            n += 2;
        }
        let mut sql = String::new();
        if !terms.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&terms.join(" AND "));
        }
        (sql, n)
    }

    /// The query of the records, in order, paged when a page is set.
    pub fn sql(&self, kind: &Kind) -> String {
        let mut columns = String::new();
        for (i, column) in kind.columns.iter().enumerate() {
            if i > 0 {
                columns.push_str(", ");
            }
            columns.push_str(column.sql);
        }
        self.select_sql(kind, &columns)
    }

    /// The query of other columns than the records' over the same rows, in
    /// the same order.
    pub fn select_sql(&self, kind: &Kind, columns: &str) -> String {
        let time = kind.time.order_column();
        let order = match self.direction {
            Direction::Ascending => "",
            Direction::Descending => " DESC",
        };
        let mut sql = format!("SELECT {columns}");
        let (predicate, n) = self.predicate(kind);
        let order_by = if self.keyset.is_some() {
            format!(" ORDER BY {}{order}", kind.id_column)
        } else {
            format!(" ORDER BY {time}{order}, {}{order}", kind.id_column)
        };
        let source = self.source(kind, &order_by);
        let _ = write!(sql, " FROM {source}{predicate}{order_by}");
        if self.page.is_some() {
            let _ = write!(sql, " OFFSET ${n} LIMIT ${}", n + 1);
        }
        sql
    }

    /// The query counting every record of the listing (ignoring the page).
    pub fn count_sql(&self, kind: &Kind) -> String {
        let (predicate, _) = self.predicate(kind);
        format!("SELECT count(*) FROM {}{predicate}", self.source(kind, ""))
    }

    /// The query telling whether the listing has any record (ignoring the page).
    pub fn exists_sql(&self, kind: &Kind) -> String {
        let (predicate, _) = self.predicate(kind);
        format!(
            "SELECT EXISTS (SELECT 1 FROM {}{predicate})",
            self.source(kind, "")
        )
    }

    /// What the listing reads: the kind's table, or for a split listing of
    /// spans (issue 27, item 7) the table in three disjoint parts under its
    /// name, each ordered by `order_by` (so that PostgreSQL merges them in
    /// order, streaming):
    ///
    /// 1. spans that started at or after the start bound `$b` (the index on
    ///    the start reads only from there, not from the table's first row);
    /// 2. open spans that started before it (the partial index of open
    ///    spans);
    /// 3. closed spans that started before it and are longer than from
    ///    there to the lower bound `$1` (the index on the length: the few
    ///    longest).
    ///
    /// A span the window's lower bound takes (open, stopped after the
    /// bound, or started at or after it) is in exactly one part, whatever
    /// `$b` is as long as it is not after `$1`: a closed one that started
    /// before `$b` and stopped after `$1` is longer than `$1 - $b`. The
    /// predicate still applies to all of them.
    fn source(&self, kind: &Kind, order_by: &str) -> String {
        let TimeModel::Interval { start, stop } = kind.time else {
            return kind.table.to_owned();
        };
        if !self.splits_spans(kind) {
            return kind.table.to_owned();
        }
        let table = kind.table;
        let b = 1 + 1 + usize::from(self.upper.is_some());
        format!(
            "((SELECT * FROM {table} WHERE {start} >= ${b}{order_by}) \
             UNION ALL (SELECT * FROM {table} WHERE {stop} IS NULL AND {start} < ${b}{order_by}) \
             UNION ALL (SELECT * FROM {table} WHERE {stop} - {start} > $1::timestamptz - ${b}::timestamptz \
             AND {start} < ${b}{order_by})) AS {table}"
        )
    }
}

impl Kind {
    /// The conditions of `selection`'s filters, numbering their parameters
    /// from `n` on (one each: an array, or a scalar when the filter has one
    /// value), then of its organizations (those asked for, an array; the
    /// caller's own, a scalar); `n` ends at the next parameter.
    pub fn filter_terms(&self, selection: &Selection, n: &mut usize) -> Vec<String> {
        let mut terms = Vec::new();
        for (index, values) in &selection.filters {
            let filter = &self.filters[*index];
            let ty = match filter.ty {
                FilterType::Integer => "int8",
                FilterType::Text | FilterType::OneOf(_) | FilterType::Identity(_) => "text",
            };
            // Identity filters always take an array: one value may be
            // stored in several forms (IdentityType::stored_forms).
            let array = values.len() > 1 || matches!(filter.ty, FilterType::Identity(_));
            terms.push(if !array {
                format!("{} = ${n}::{ty}", filter.column)
            } else {
                format!("{} = ANY(${n}::{ty}[])", filter.column)
            });
            *n += 1;
        }
        if let Some(column) = self.tenant {
            if !selection.tenants.is_empty() {
                terms.push(format!("{column} = ANY(${n}::text[])"));
                *n += 1;
            }
            if selection.tenant.is_some() && !selection.without_tenant_term {
                terms.push(format!("{column} = ${n}::text"));
                *n += 1;
            }
        }
        terms
    }
}

/// The earliest start bound: PostgreSQL's `timestamptz` reaches 4713 BC;
/// this is well inside it.
fn earliest_bound() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(-4000, 1, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map_or(DateTime::<Utc>::MIN_UTC, |t| t.and_utc())
}

/// How many of the longest closed spans a split listing may read by their
/// length rather than by their start.
pub const LONG_SPANS: u32 = 100;

/// The query of the length, in microseconds, past which at most
/// [`LONG_SPANS`] closed spans of `kind` are longer (0 when it has no more
/// than that): an index on `stop - start` answers it reading that many
/// entries. `None` for a kind of instants.
pub fn long_span_sql(kind: &Kind) -> Option<String> {
    let TimeModel::Interval { start, stop } = kind.time else {
        return None;
    };
    Some(format!(
        "SELECT coalesce((SELECT (extract(epoch FROM {stop} - {start}) * 1000000)::int8 \
         FROM {table} WHERE {stop} - {start} IS NOT NULL ORDER BY {stop} - {start} DESC \
         OFFSET {LONG_SPANS} LIMIT 1), 0)",
        table = kind.table
    ))
}

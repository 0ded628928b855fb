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
        for (index, values) in &self.selection.filters {
            let filter = &kind.filters[*index];
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
            n += 1;
        }
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
        if self.keyset.is_some() {
            let _ = write!(
                sql,
                " FROM {}{predicate} ORDER BY {}{order}",
                kind.table, kind.id_column
            );
        } else {
            let _ = write!(
                sql,
                " FROM {}{predicate} ORDER BY {time}{order}, {}{order}",
                kind.table, kind.id_column
            );
        }
        if self.page.is_some() {
            let _ = write!(sql, " OFFSET ${n} LIMIT ${}", n + 1);
        }
        sql
    }

    /// The query counting every record of the listing (ignoring the page).
    pub fn count_sql(&self, kind: &Kind) -> String {
        let (predicate, _) = self.predicate(kind);
        format!("SELECT count(*) FROM {}{predicate}", kind.table)
    }

    /// The query telling whether the listing has any record (ignoring the page).
    pub fn exists_sql(&self, kind: &Kind) -> String {
        let (predicate, _) = self.predicate(kind);
        format!("SELECT EXISTS (SELECT 1 FROM {}{predicate})", kind.table)
    }
}

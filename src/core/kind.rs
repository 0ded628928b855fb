//! The description of a kind of accounting record: everything the shared
//! pipeline (windows, negotiation, links, encoders, the streaming query,
//! filters, metrics) needs to know about it. A kind is a `static` [`Kind`];
//! nothing else in the pipeline names a kind.
//!
//! Kinds live in [`crate::kinds`]; this module holds only the vocabulary and
//! the pure logic over it (filter parsing, the canonical query string of
//! links, the SQL text of a window query).

use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use chrono::{DateTime, Utc};

use crate::core::identity::{is_pseudonym, IdentityType};
use crate::core::window::Direction;

/// The type of a column's values, which decides how they are decoded from a
/// row, written in JSON and CSV, and whether the CSV formula guard applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// `timestamptz`, written as `YYYY-MM-DDTHH:MM:SS[.ffffff]` (UTC).
    Timestamp,
    /// `text`, written as a JSON string; guarded against spreadsheet formulas in CSV.
    Text,
    /// An integer (selected as `bigint`), written as a JSON number.
    Integer,
    /// A float (selected as `float8`), written as a JSON number.
    Float,
    /// A boolean.
    Boolean,
    /// A personal identifier (selected as `text`): a pseudonym unless the
    /// request may see identities.
    Identity(IdentityType),
}

impl ColumnType {
    /// The OpenAPI type of the column's JSON values.
    pub fn openapi_type(self) -> &'static str {
        match self {
            ColumnType::Timestamp | ColumnType::Text | ColumnType::Identity(_) => "string",
            ColumnType::Integer => "integer",
            ColumnType::Float => "number",
            ColumnType::Boolean => "boolean",
        }
    }
}

/// One output column of a kind.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// The key in JSON and NDJSON objects.
    pub json: &'static str,
    /// The CSV header.
    pub csv: &'static str,
    /// The type of its values.
    pub ty: ColumnType,
    /// The SQL expression that selects it (cast to the type's SQL type).
    pub sql: &'static str,
    /// Whether it may be null (written `null` in JSON, empty in CSV).
    pub nullable: bool,
}

impl Column {
    /// A non-null column.
    pub const fn new(
        json: &'static str,
        csv: &'static str,
        ty: ColumnType,
        sql: &'static str,
    ) -> Column {
        Column {
            json,
            csv,
            ty,
            sql,
            nullable: false,
        }
    }

    /// The record's time, `timestamp` in JSON and `Timestamp` in CSV, as
    /// every kind names it.
    pub const fn timestamp(sql: &'static str) -> Column {
        Column::new("timestamp", "Timestamp", ColumnType::Timestamp, sql)
    }

    /// The same column, nullable.
    pub const fn nullable(self) -> Column {
        Column {
            nullable: true,
            ..self
        }
    }
}

/// How a record lies in time, which decides what a window selects.
#[derive(Clone, Copy, Debug)]
pub enum TimeModel {
    /// A point in time (an event): the window holds records whose time lies in it.
    Instant {
        /// The `timestamptz` column.
        column: &'static str,
    },
    /// A span (a session): the window holds records that overlap it (started
    /// before its end, and not stopped before its start), ordered by start.
    Interval {
        /// The start (`timestamptz`).
        start: &'static str,
        /// The stop (`timestamptz`, NULL while open).
        stop: &'static str,
    },
}

impl TimeModel {
    /// The column records are ordered by.
    pub fn order_column(self) -> &'static str {
        match self {
            TimeModel::Instant { column } => column,
            TimeModel::Interval { start, .. } => start,
        }
    }
}

/// The type of a filter's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterType {
    /// Exact text.
    Text,
    /// An integer.
    Integer,
    /// One of these strings, exactly.
    OneOf(&'static [&'static str]),
    /// An identity: a pseudonym, or (for a token with the `identities`
    /// scope) a raw value in any notation of its type.
    Identity(IdentityType),
}

/// One query parameter that narrows a listing: `param=value`, repeatable
/// (several values match any of them), exact.
#[derive(Clone, Copy, Debug)]
pub struct Filter {
    /// The query parameter.
    pub param: &'static str,
    /// The column it compares.
    pub column: &'static str,
    /// The type of its values.
    pub ty: FilterType,
}

/// A kind of accounting record.
#[derive(Debug)]
pub struct Kind {
    /// The name in metrics, logs and the route of its windows, e.g. `events`.
    pub name: &'static str,
    /// The path of its windows (followed by `/{period}[/{datetime}]`).
    pub path: &'static str,
    /// The JSON member holding the records.
    pub envelope: &'static str,
    /// The stem of CSV file names, e.g. `client-events`.
    pub file_name: &'static str,
    /// The name of its record schema in `openapi.yaml` (checked by a test
    /// against `columns`).
    pub schema: &'static str,
    /// The table.
    pub table: &'static str,
    /// The unique, increasing tie-breaker of the order.
    pub id_column: &'static str,
    /// How records lie in time.
    pub time: TimeModel,
    /// The output columns, in order.
    pub columns: &'static [Column],
    /// The filters of its listings.
    pub filters: &'static [Filter],
    /// Where and how producers push records, when they can.
    pub ingest: Option<IngestRoute>,
    /// Others than acctstream write the table (FreeRADIUS's `rlm_sql`): the
    /// identity directory catches up with new rows before a lookup by
    /// pseudonym.
    pub foreign_writes: bool,
    /// The grant its windows need (`Read`; the audit trail `Audit`).
    pub grant: crate::core::scope::Grant,
    /// Indexes acctstream needs on the table beyond those its migration
    /// makes (`(name, definition)`), created `CONCURRENTLY IF NOT EXISTS`
    /// at start-up: for a table another program owns.
    pub indexes: &'static [(&'static str, &'static str)],
    /// What retention deletes: the kind's table, and any other table of the
    /// kind that holds raw identities. A kind that holds raw identities
    /// must have rules (a test checks it).
    pub retention: &'static [crate::core::retention::Rule],
    /// Route prefixes beyond `path` whose requests read this kind: the
    /// audit trail keeps their parameters by this kind's filters (a path
    /// parameter `user`, `device` or `client` is the filter of that name).
    pub audit_routes: &'static [&'static str],
}

impl Kind {
    /// Every optional part left out: no filters, no ingest, no foreign
    /// writes, read with `Read`, no retention, no other routes. A kind
    /// names what it has and takes the rest from here
    /// (`Kind { name: …, ..Kind::BASE }`), so a new field edits no kind.
    pub const BASE: Kind = Kind {
        name: "",
        path: "",
        envelope: "",
        file_name: "",
        schema: "",
        table: "",
        id_column: "id",
        time: TimeModel::Instant { column: "" },
        columns: &[],
        filters: &[],
        ingest: None,
        foreign_writes: false,
        grant: crate::core::scope::Grant::Read,
        indexes: &[],
        retention: &[],
        audit_routes: &[],
    };

    /// True when some output column is a personal identifier.
    pub fn holds_identities(&self) -> bool {
        self.columns
            .iter()
            .any(|c| matches!(c.ty, ColumnType::Identity(_)))
    }
}

/// The ingest endpoint of a kind.
#[derive(Debug)]
pub struct IngestRoute {
    /// `POST` path.
    pub path: &'static str,
    /// The records' fields and table.
    pub schema: &'static crate::core::ingest::IngestSchema,
    /// The name of the record schema in `openapi.yaml` (checked by a test
    /// against `schema`).
    pub openapi: &'static str,
}

/// The most values one filter parameter may have.
pub const MAX_FILTER_VALUES: usize = 100;

/// A filter value as the request gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterValue {
    /// Text (also an identity value given raw).
    Text(String),
    /// An integer.
    Integer(i64),
    /// An identity given as its pseudonym; the database layer resolves it.
    Pseudonym(String),
}

/// The filters of one request, in the kind's filter order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// `(index into Kind::filters, values)`, only filters that were given.
    pub filters: Vec<(usize, Vec<FilterValue>)>,
}

impl Selection {
    /// True when some value is a pseudonym (resolved through the identity
    /// directory).
    pub fn has_pseudonyms(&self) -> bool {
        self.filters.iter().any(|(_, values)| {
            values
                .iter()
                .any(|v| matches!(v, FilterValue::Pseudonym(_)))
        })
    }
}

/// A filter parameter that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The value does not fit the filter's type.
    #[error("Invalid value for filter `{param}`: {expected}.")]
    Invalid {
        /// The parameter.
        param: &'static str,
        /// What is accepted.
        expected: &'static str,
    },
    /// Not one of the listed values.
    #[error("Invalid value for filter `{param}`: one of {}.", allowed.join(", "))]
    NotOneOf {
        /// The parameter.
        param: &'static str,
        /// What is accepted.
        allowed: &'static [&'static str],
    },
    /// Too many values.
    #[error("Too many values for filter `{param}` (at most {MAX_FILTER_VALUES}).")]
    TooMany {
        /// The parameter.
        param: &'static str,
    },
    /// A raw identity given by a token without the `identities` scope.
    #[error("Filter `{param}` takes a pseudonym (64 lowercase hex digits); raw values need a token with the identities scope.")]
    RawIdentity {
        /// The parameter.
        param: &'static str,
    },
}

impl FilterError {
    /// True when the request was well-formed but the token may not make it (403).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, FilterError::RawIdentity { .. })
    }
}

/// Characters percent-encoded in link query values.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

impl Kind {
    /// The index of the output column holding each record's time (its
    /// start for intervals), which picks the pseudonymisation key of a
    /// schedule.
    pub fn time_column(&self) -> Option<usize> {
        let time = self.time.order_column();
        self.columns
            .iter()
            .position(|c| c.ty == ColumnType::Timestamp && c.sql == time)
    }

    /// Picks this kind's filters out of the query pairs (other parameters
    /// are left to the caller). `reveal` says whether raw identity values are
    /// allowed (the `identities` scope).
    pub fn parse_filters(
        &self,
        pairs: &[(String, String)],
        reveal: bool,
    ) -> Result<Selection, FilterError> {
        let mut selection = Selection::default();
        for (index, filter) in self.filters.iter().enumerate() {
            let mut values = Vec::new();
            for (_, value) in pairs.iter().filter(|(k, _)| k == filter.param) {
                if values.len() == MAX_FILTER_VALUES {
                    return Err(FilterError::TooMany {
                        param: filter.param,
                    });
                }
                values.push(parse_value(filter, value, reveal)?);
            }
            if !values.is_empty() {
                selection.filters.push((index, values));
            }
        }
        Ok(selection)
    }

    /// The query string that reproduces `selection` (without `sort`), in the
    /// kind's filter order, values in request order, percent-encoded; with
    /// `format=` first when the request chose one by parameter.
    pub fn link_query(&self, format: Option<&str>, selection: &Selection) -> String {
        let mut query = String::new();
        let mut add = |key: &str, value: &str| {
            if !query.is_empty() {
                query.push('&');
            }
            let _ = write!(query, "{key}={}", utf8_percent_encode(value, QUERY_VALUE));
        };
        if let Some(format) = format {
            add("format", format);
        }
        for (index, values) in &selection.filters {
            let param = self.filters[*index].param;
            for value in values {
                match value {
                    FilterValue::Text(text) | FilterValue::Pseudonym(text) => add(param, text),
                    FilterValue::Integer(n) => add(param, &n.to_string()),
                }
            }
        }
        query
    }

    /// The column with this JSON name.
    pub fn column(&self, json: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.json == json)
    }
}

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

fn parse_value(filter: &Filter, value: &str, reveal: bool) -> Result<FilterValue, FilterError> {
    let invalid = |expected| FilterError::Invalid {
        param: filter.param,
        expected,
    };
    match filter.ty {
        FilterType::Text => {
            if value.is_empty() || value.chars().count() > 1000 || value.contains('\0') {
                Err(invalid(
                    "a non-empty text of at most 1000 characters, without NUL",
                ))
            } else {
                Ok(FilterValue::Text(value.to_owned()))
            }
        }
        FilterType::OneOf(allowed) => {
            if allowed.contains(&value) {
                Ok(FilterValue::Text(value.to_owned()))
            } else {
                Err(FilterError::NotOneOf {
                    param: filter.param,
                    allowed,
                })
            }
        }
        FilterType::Integer => value
            .parse::<i64>()
            .map(FilterValue::Integer)
            .map_err(|_| invalid("an integer")),
        FilterType::Identity(ty) => {
            if is_pseudonym(value) {
                Ok(FilterValue::Pseudonym(value.to_owned()))
            } else if value.is_empty() || value.len() > 1000 || value.contains('\0') {
                Err(invalid("a pseudonym (64 lowercase hex digits)"))
            } else if reveal {
                Ok(FilterValue::Text(ty.normalise(value).into_owned()))
            } else {
                Err(FilterError::RawIdentity {
                    param: filter.param,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static COLUMNS: [Column; 3] = [
        Column::new("timestamp", "Timestamp", ColumnType::Timestamp, "at"),
        Column::new("name", "Name", ColumnType::Text, "name"),
        Column::new(
            "client",
            "Client",
            ColumnType::Identity(IdentityType::Mac),
            "mac",
        )
        .nullable(),
    ];
    static FILTERS: [Filter; 3] = [
        Filter {
            param: "name",
            column: "name",
            ty: FilterType::Text,
        },
        Filter {
            param: "code",
            column: "code",
            ty: FilterType::Integer,
        },
        Filter {
            param: "client",
            column: "mac",
            ty: FilterType::Identity(IdentityType::Mac),
        },
    ];
    static KIND: Kind = Kind {
        name: "things",
        path: "/api/v1/statistics/things",
        envelope: "things",
        file_name: "things",
        schema: "Thing",
        table: "thing",
        time: TimeModel::Instant { column: "at" },
        columns: &COLUMNS,
        filters: &FILTERS,
        ..Kind::BASE
    };

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_parse_in_kind_order_and_reproduce_in_links() {
        let sel = KIND
            .parse_filters(
                &pairs(&[
                    ("code", "7"),
                    ("name", "a b&c"),
                    ("sort", "-"),
                    ("name", "é"),
                ]),
                false,
            )
            .unwrap();
        assert_eq!(
            sel.filters,
            vec![
                (
                    0,
                    vec![
                        FilterValue::Text("a b&c".into()),
                        FilterValue::Text("é".into())
                    ]
                ),
                (1, vec![FilterValue::Integer(7)]),
            ]
        );
        assert_eq!(
            KIND.link_query(Some("csv"), &sel),
            "format=csv&name=a%20b%26c&name=%C3%A9&code=7"
        );
        assert_eq!(KIND.link_query(None, &Selection::default()), "");
    }

    #[test]
    fn invalid_filters_name_the_parameter() {
        let err = KIND
            .parse_filters(&pairs(&[("code", "x")]), false)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value for filter `code`: an integer."
        );
        let err = KIND
            .parse_filters(&pairs(&[("name", "")]), false)
            .unwrap_err();
        assert!(err.to_string().contains("`name`"));
        let many: Vec<(&str, &str)> = (0..=MAX_FILTER_VALUES).map(|_| ("name", "a")).collect();
        assert_eq!(
            KIND.parse_filters(&pairs(&many), false).unwrap_err(),
            FilterError::TooMany { param: "name" }
        );
    }

    #[test]
    fn identity_filters_take_pseudonyms_or_raw_with_the_scope() {
        let pseudonym = "a".repeat(64);
        let sel = KIND
            .parse_filters(&pairs(&[("client", &pseudonym)]), false)
            .unwrap();
        assert_eq!(sel.filters[0].1, vec![FilterValue::Pseudonym(pseudonym)]);
        let err = KIND
            .parse_filters(&pairs(&[("client", "68:05:71:A4:EF:0E")]), false)
            .unwrap_err();
        assert!(err.is_forbidden());
        // The error never quotes the raw value.
        assert!(!err.to_string().contains("68:05"));
        let sel = KIND
            .parse_filters(&pairs(&[("client", "68:05:71:A4:EF:0E")]), true)
            .unwrap();
        assert_eq!(
            sel.filters[0].1,
            vec![FilterValue::Text("68:05:71:a4:ef:0e".into())]
        );
    }

    /// Issue 27: windows are half-open for spans too, in both directions: a
    /// session that only touches a bound lies in one window, one of no
    /// length in the window of its instant.
    #[test]
    fn spans_overlap_half_open_windows() {
        use crate::core::window::{Period, Window};
        static SPANS: Kind = Kind {
            name: "spans",
            table: "span",
            time: TimeModel::Interval {
                start: "b",
                stop: "e",
            },
            ..Kind::BASE
        };
        let asc = Window::parse(Period::Day, "2021-04-10", Direction::Ascending).unwrap();
        assert_eq!(
            Listing::window(&asc, Selection::default())
                .predicate(&SPANS)
                .0,
            " WHERE (e IS NULL OR e > $1 OR b >= $1) AND b < $2"
        );
        let desc = Window::parse(Period::Day, "2021-04-10", Direction::Descending).unwrap();
        assert_eq!(
            Listing::window(&desc, Selection::default())
                .predicate(&SPANS)
                .0,
            " WHERE (e IS NULL OR e > $1) AND b <= $2 AND (b < $2 OR e = b)"
        );
    }

    #[test]
    fn listing_sql_orders_filters_and_pages() {
        use crate::core::window::{Period, Window};
        let sel = KIND
            .parse_filters(
                &pairs(&[("code", "1"), ("code", "2"), ("name", "x")]),
                false,
            )
            .unwrap();
        let asc = Window::parse(Period::Day, "2021-04-10", Direction::Ascending).unwrap();
        assert_eq!(
            Listing::window(&asc, sel.clone()).sql(&KIND),
            "SELECT at, name, mac FROM thing WHERE at >= $1 AND at < $2 \
             AND name = $3::text AND code = ANY($4::int8[]) ORDER BY at, id"
        );
        let desc = Window::parse(Period::Day, "2021-04-10", Direction::Descending).unwrap();
        assert_eq!(
            Listing::window(&desc, Selection::default()).sql(&KIND),
            "SELECT at, name, mac FROM thing WHERE at > $1 AND at <= $2 ORDER BY at DESC, id DESC"
        );
        let history = Listing {
            direction: Direction::Descending,
            lower: None,
            upper: Some(Bound {
                at: desc.anchor(),
                inclusive: true,
            }),
            selection: sel,
            page: Some(Page {
                offset: 0,
                limit: 10,
            }),
            keyset: None,
            condition: None,
            seek: None,
        };
        assert_eq!(
            history.sql(&KIND),
            "SELECT at, name, mac FROM thing WHERE at <= $1 AND name = $2::text \
             AND code = ANY($3::int8[]) ORDER BY at DESC, id DESC OFFSET $4 LIMIT $5"
        );
        assert_eq!(
            history.count_sql(&KIND),
            "SELECT count(*) FROM thing WHERE at <= $1 AND name = $2::text AND code = ANY($3::int8[])"
        );
        let all = Listing {
            upper: None,
            selection: Selection::default(),
            page: None,
            ..history
        };
        assert_eq!(all.count_sql(&KIND), "SELECT count(*) FROM thing");
        // Seeking after a position in the usual order, both ways.
        let seek = Some(Seek {
            at: desc.anchor(),
            id: 7,
        });
        let older = Listing {
            seek,
            condition: Some("open"),
            ..all.clone()
        };
        assert_eq!(
            older.sql(&KIND),
            "SELECT at, name, mac FROM thing WHERE (open) AND (at, id) < ($1, $2) \
             ORDER BY at DESC, id DESC"
        );
        let newer = Listing {
            direction: Direction::Ascending,
            page: Some(Page {
                offset: 0,
                limit: 2,
            }),
            ..older
        };
        assert_eq!(
            newer.sql(&KIND),
            "SELECT at, name, mac FROM thing WHERE (open) AND (at, id) > ($1, $2) \
             ORDER BY at, id OFFSET $3 LIMIT $4"
        );
    }
}

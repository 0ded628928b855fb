//! The description of a kind of accounting record: everything the shared
//! pipeline (windows, negotiation, links, encoders, the streaming query,
//! filters, metrics) needs to know about it. A kind is a `static` [`Kind`];
//! nothing else in the pipeline names a kind.
//!
//! Kinds live in [`crate::kinds`]; this module holds only the vocabulary and
//! the pure logic over it (filter parsing, the canonical query string of
//! links, the SQL text of a window query).

pub mod feed;
mod filter;
mod listing;

pub use filter::{
    FilterError, FilterValue, Selection, MAX_FILTER_VALUES, QUERY_VALUE, TENANT_PARAM,
};
pub use listing::{long_span_sql, Bound, Keyset, Listing, Page, Seek, LONG_SPANS};

use crate::core::identity::IdentityType;
use crate::core::ingest::{FieldType, IngestField, SqlType};

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
    /// How producers send it, when the kind is ingested and this column is
    /// one of its fields (under the same name; required unless nullable).
    pub ingest: Option<Ingest>,
}

/// How an ingested column is stored and checked: its table column (the
/// column's SQL expression without its cast), the column's SQL type and
/// what the field accepts.
#[derive(Clone, Copy, Debug)]
pub struct Ingest {
    /// The table column.
    pub column: &'static str,
    /// Its SQL type.
    pub sql: SqlType,
    /// What the field accepts.
    pub ty: FieldType,
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
            ingest: None,
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

    /// The same column, ingested as its type says: text as text, an
    /// identity as that identity, a timestamp as an RFC 3339 time. Another
    /// type does not compile: say how with [`Column::ingest`].
    pub const fn ingested(self) -> Column {
        let (sql, ty) = match self.ty {
            ColumnType::Text => (SqlType::Text, FieldType::Text),
            ColumnType::Identity(identity) => (SqlType::Text, FieldType::Identity(identity)),
            ColumnType::Timestamp => (SqlType::Timestamptz, FieldType::Timestamp),
            ColumnType::Integer | ColumnType::Float | ColumnType::Boolean => {
                panic!("Column::ingested: say the SQL type and rule with Column::ingest")
            }
        };
        self.ingest(sql, ty)
    }

    /// The same column, ingested into a table column of type `sql` by the
    /// rule `ty`.
    pub const fn ingest(self, sql: SqlType, ty: FieldType) -> Column {
        Column {
            ingest: Some(Ingest {
                column: bare_column(self.sql),
                sql,
                ty,
            }),
            ..self
        }
    }

    /// Its ingest field, if it is ingested.
    pub const fn ingest_field(&self) -> Option<IngestField> {
        match self.ingest {
            None => None,
            Some(ingest) => {
                let field = IngestField::of(self.json, ingest.column, ingest.sql, ingest.ty);
                Some(if self.nullable {
                    field.optional()
                } else {
                    field
                })
            }
        }
    }
}

/// The ingest fields of `columns` that are ingested, in their order, then
/// `extra` (the producer's `eventId`, which no column shows): an ingest
/// schema's fields, in one place with the columns. `N` must be their
/// number, or the program does not compile.
pub const fn ingest_fields<const N: usize>(
    columns: &[Column],
    extra: &[IngestField],
) -> [IngestField; N] {
    let mut fields = [IngestField::text("", ""); N];
    let mut n = 0;
    let mut i = 0;
    while i < columns.len() {
        if let Some(field) = columns[i].ingest_field() {
            assert!(n < N, "ingest_fields: more ingested columns than N");
            fields[n] = field;
            n += 1;
        }
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        assert!(n < N, "ingest_fields: more fields than N");
        fields[n] = extra[j];
        n += 1;
        j += 1;
    }
    assert!(n == N, "ingest_fields: fewer fields than N");
    fields
}

/// The table column of a column's SQL expression: the expression itself
/// when it is a bare name, the part before `::` when it is a cast of one;
/// anything else does not compile.
const fn bare_column(sql: &'static str) -> &'static str {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i] != b':' {
        let b = bytes[i];
        assert!(
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_',
            "an ingested column's SQL must be a column name, or one cast with ::"
        );
        i += 1;
    }
    assert!(
        i > 0,
        "an ingested column's SQL must start with a column name"
    );
    let (name, _) = bytes.split_at(i);
    match std::str::from_utf8(name) {
        Ok(name) => name,
        Err(_) => panic!("unreachable: an ASCII prefix is UTF-8"),
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
    /// The unique, increasing tie-breaker of the order (positive: generated
    /// from 1 up).
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
    /// The SQL of a record's organization (issue 28), when the kind keeps
    /// organizations apart: a caller of one organization then reads its
    /// records only, and every caller may narrow to some by `tenant=`. A
    /// kind without it refuses callers of one organization (403).
    pub tenant: Option<&'static str>,
    /// For a kind whose organization is derived (not stored), the SQL of a
    /// value that changes whenever the derivation does (sessions: the
    /// version of the rules): a window's tag for one organization includes
    /// it. A kind with a derived organization and none gives such a caller
    /// no tag.
    pub tenant_version: Option<&'static str>,
    /// The table is kept as range partitions by its time (issue 25;
    /// `crate::core::partition`): made so on a new database, converted by
    /// `acctstream migrate --partition`, retention drops whole partitions.
    /// Only a kind whose records lie at instants, in a table acctstream
    /// owns.
    pub partitioned: bool,
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
        tenant: None,
        tenant_version: None,
        partitioned: false,
    };

    /// The column the kind's table is partitioned by, when its entry says
    /// it is partitioned ([`Kind::partitioned`]): its time.
    pub fn partition_column(&self) -> Option<&'static str> {
        match self.time {
            TimeModel::Instant { column } if self.partitioned => Some(column),
            _ => None,
        }
    }

    /// The column a record's organization is stored in, when the kind
    /// stores it (rather than deriving it, as sessions do from rules that
    /// may change: then only the expression is known).
    pub fn tenant_column(&self) -> Option<&'static str> {
        self.tenant
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    }

    /// Whether a window of this kind can be tagged for a caller of one
    /// organization: its organization is stored, or derived by rules whose
    /// version the tag includes.
    pub fn tags_per_tenant(&self) -> bool {
        self.tenant_column().is_some() || self.tenant_version.is_some()
    }

    /// The SQL of a record's organization: `'default'` for a kind that
    /// keeps none.
    pub fn tenant_sql(&self) -> &'static str {
        self.tenant.unwrap_or("'default'::text")
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    static INGESTED: [Column; 4] = [
        Column::timestamp("at").ingested(),
        Column::new("count", "Count", ColumnType::Integer, "count::int8")
            .ingest(SqlType::Int4, FieldType::Integer { min: 0, max: 9 }),
        Column::new("shown", "Shown", ColumnType::Text, "lower(shown)"),
        Column::new(
            "who",
            "Who",
            ColumnType::Identity(IdentityType::User),
            "who",
        )
        .nullable()
        .ingested(),
    ];

    /// Issue 22: a kind's ingest fields come from its columns (name,
    /// table column without the cast, required unless nullable), in their
    /// order, then the extra fields.
    #[test]
    fn ingest_fields_come_from_the_columns() {
        static FIELDS: [IngestField; 4] =
            ingest_fields(&INGESTED, &[IngestField::event_id("event_id")]);
        let summary: Vec<_> = FIELDS
            .iter()
            .map(|f| (f.name, f.column, f.sql, f.required))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("timestamp", "at", SqlType::Timestamptz, true),
                ("count", "count", SqlType::Int4, true),
                ("who", "who", SqlType::Text, false),
                ("eventId", "event_id", SqlType::Text, false),
            ]
        );
        assert!(matches!(FIELDS[0].ty, FieldType::Timestamp));
        assert!(matches!(
            FIELDS[2].ty,
            FieldType::Identity(IdentityType::User)
        ));
        assert!(INGESTED[2].ingest_field().is_none());
    }

    #[test]
    #[should_panic(expected = "fewer fields than N")]
    fn ingest_fields_must_be_counted() {
        let _: [IngestField; 5] = ingest_fields(&INGESTED, &[]);
    }

    #[test]
    #[should_panic(expected = "a column name")]
    fn only_a_column_or_its_cast_is_ingested() {
        let _ = Column::new("x", "X", ColumnType::Text, "lower(x)").ingested();
    }

    #[test]
    #[should_panic(expected = "Column::ingest")]
    fn an_integer_column_says_how_it_is_ingested() {
        let _ = Column::new("n", "N", ColumnType::Integer, "n").ingested();
    }
    use crate::core::window::Direction;

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

    /// Issue 27, item 7: a listing of spans from a lower bound reads three
    /// disjoint parts an index serves each, ordered alike, so PostgreSQL
    /// merges them streaming; its start bound is the lower bound less the
    /// length past which few spans are longer, never after it.
    #[test]
    fn spans_from_a_lower_bound_read_three_ordered_parts() {
        use crate::core::window::{Period, Window};
        static SPANS: Kind = Kind {
            name: "spans",
            table: "span",
            time: TimeModel::Interval {
                start: "b",
                stop: "e",
            },
            columns: &[Column::new("b", "B", ColumnType::Timestamp, "b")],
            filters: &[Filter {
                param: "nas",
                column: "nas",
                ty: FilterType::Text,
            }],
            ..Kind::BASE
        };
        let sel = SPANS.parse_filters(&pairs(&[("nas", "x")]), false).unwrap();
        let asc = Window::parse(Period::Day, "2021-04-10", Direction::Ascending).unwrap();
        let listing = Listing::window(&asc, sel);
        assert!(listing.splits_spans(&SPANS));
        assert_eq!(
            listing.sql(&SPANS),
            "SELECT b FROM (\
             (SELECT * FROM span WHERE b >= $3 ORDER BY b, id) \
             UNION ALL (SELECT * FROM span WHERE e IS NULL AND b < $3 ORDER BY b, id) \
             UNION ALL (SELECT * FROM span WHERE e - b > $1::timestamptz - $3::timestamptz \
             AND b < $3 ORDER BY b, id)) AS span \
             WHERE (e IS NULL OR e > $1 OR b >= $1) AND b < $2 AND nas = $4::text ORDER BY b, id"
        );
        assert_eq!(
            listing.count_sql(&SPANS),
            "SELECT count(*) FROM (\
             (SELECT * FROM span WHERE b >= $3) \
             UNION ALL (SELECT * FROM span WHERE e IS NULL AND b < $3) \
             UNION ALL (SELECT * FROM span WHERE e - b > $1::timestamptz - $3::timestamptz \
             AND b < $3)) AS span \
             WHERE (e IS NULL OR e > $1 OR b >= $1) AND b < $2 AND nas = $4::text"
        );
        let lower = asc.bounds().0;
        assert_eq!(
            listing.start_bound(chrono::Duration::hours(4)),
            Some(lower - chrono::Duration::hours(4))
        );
        // Never after the lower bound, never before PostgreSQL's range.
        assert_eq!(
            listing.start_bound(chrono::Duration::hours(-4)),
            Some(lower)
        );
        let bound = listing.start_bound(chrono::Duration::MAX).unwrap();
        assert!(bound < lower && chrono::Datelike::year(&bound) == -4000);
        // No lower bound (a history up to a time), or instants: the table.
        let history = Listing {
            lower: None,
            ..listing.clone()
        };
        assert!(!history.splits_spans(&SPANS));
        assert!(history.sql(&SPANS).starts_with("SELECT b FROM span WHERE"));
        assert!(!listing.splits_spans(&KIND));
        assert_eq!(listing::long_span_sql(&KIND), None);
        assert_eq!(
            listing::long_span_sql(&SPANS).as_deref(),
            Some(
                "SELECT coalesce((SELECT (extract(epoch FROM e - b) * 1000000)::int8 \
                 FROM span WHERE e - b IS NOT NULL ORDER BY e - b DESC OFFSET 100 LIMIT 1), 0)"
            )
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

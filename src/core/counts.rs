//! Counts over one window of any kind (issue 26): how many records, per
//! value of one column (`by`), per time bucket (`every`), with sums of
//! integer columns (`sum`), for the `top` values. What a chart needs,
//! without downloading the window: written once, on the kind's description,
//! for every kind in the registry.
//!
//! `GET <kind path>/counts/{period}[/{datetime}]?by=…&every=…&sum=…&top=…`
//! plus the kind's own filters and `tz`.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};

use crate::core::encode::{format_timestamp, write_csv_field, write_csv_text, FormulaGuard};
use crate::core::kind::{Column, ColumnType, Kind, Listing, TimeModel};
use crate::core::negotiate::OutputFormat;
use crate::core::window::NavigationLinks;
use crate::core::zone::Zone;

/// The most values of `by` one answer holds.
pub const MAX_TOP: i64 = 1000;
/// The values of `by` an answer holds without `top`.
pub const DEFAULT_TOP: i64 = 10;
/// The most time buckets one answer holds (a month by hour is 744).
pub const MAX_BUCKETS: i64 = 1500;
/// The query parameters of counts (beside the kind's filters, `sort`,
/// `format` and `tz`).
pub const PARAMETERS: [&str; 4] = ["by", "every", "sum", "top"];

/// A time bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    /// A minute.
    Minute,
    /// An hour.
    Hour,
    /// A (local) day.
    Day,
}

impl Every {
    /// Its name, in the query string and in SQL's `date_trunc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Every::Minute => "minute",
            Every::Hour => "hour",
            Every::Day => "day",
        }
    }

    /// Its length in seconds (a day's, ignoring clock changes).
    fn seconds(self) -> i64 {
        match self {
            Every::Minute => 60,
            Every::Hour => 3600,
            Every::Day => 86_400,
        }
    }
}

/// What one counts request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    /// The column counted by (an index into the kind's columns).
    pub by: Option<usize>,
    /// The time bucket.
    pub every: Option<Every>,
    /// The integer columns summed (indexes into the kind's columns).
    pub sums: Vec<usize>,
    /// How many values of `by` (the first: by the total of the sums, else
    /// by count).
    pub top: i64,
}

/// Why a counts request is refused (a 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CountsError {
    /// `by` names no column that can be counted by.
    #[error("The parameter `by` must name one column of these records to count by: {0}.")]
    By(String),
    /// `sum` names no integer column.
    #[error("The parameter `sum` must name an integer column of these records: {0}.")]
    Sum(String),
    /// `every` is no bucket.
    #[error("The parameter `every` must be minute, hour or day.")]
    Every,
    /// Too many buckets.
    #[error("The window holds {0} buckets of that length; ask for at most {MAX_BUCKETS} (a longer `every`, or a shorter period).")]
    Buckets(i64),
    /// `top` is out of range.
    #[error("The parameter `top` must be an integer from 1 to {MAX_TOP}.")]
    Top,
    /// A parameter that may appear once appeared twice.
    #[error("The parameter `{0}` may appear only once.")]
    Repeated(&'static str),
}

/// Whether records can be counted by `column`.
fn groupable(column: &Column) -> bool {
    matches!(
        column.ty,
        ColumnType::Text | ColumnType::Identity(_) | ColumnType::Integer | ColumnType::Boolean
    )
}

impl Counts {
    /// Reads `by`, `every`, `sum` and `top` from the query's pairs, for a
    /// window `span` long.
    pub fn parse(
        kind: &Kind,
        pairs: &[(String, String)],
        span: chrono::Duration,
    ) -> Result<Counts, CountsError> {
        let single = |name: &'static str| -> Result<Option<&str>, CountsError> {
            let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
            let first = values.next().map(String::as_str);
            if values.next().is_some() {
                return Err(CountsError::Repeated(name));
            }
            Ok(first)
        };
        let names = |accept: fn(&Column) -> bool| {
            kind.columns
                .iter()
                .filter(|c| accept(c))
                .map(|c| c.json)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let by = single("by")?
            .map(|name| {
                kind.columns
                    .iter()
                    .position(|c| c.json == name && groupable(c))
                    .ok_or_else(|| CountsError::By(names(groupable)))
            })
            .transpose()?;
        let every = single("every")?
            .map(|name| match name {
                "minute" => Ok(Every::Minute),
                "hour" => Ok(Every::Hour),
                "day" => Ok(Every::Day),
                _ => Err(CountsError::Every),
            })
            .transpose()?;
        if let Some(every) = every {
            let buckets = (span.num_seconds() + every.seconds() - 1) / every.seconds();
            if buckets > MAX_BUCKETS {
                return Err(CountsError::Buckets(buckets));
            }
        }
        let integer = |c: &Column| c.ty == ColumnType::Integer;
        let mut sums = Vec::new();
        for (_, name) in pairs.iter().filter(|(k, _)| k == "sum") {
            let index = kind
                .columns
                .iter()
                .position(|c| c.json == name && integer(c))
                .ok_or_else(|| CountsError::Sum(names(integer)))?;
            if !sums.contains(&index) {
                sums.push(index);
            }
        }
        let top = single("top")?
            .map(|text| {
                text.parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_TOP).contains(n))
                    .ok_or(CountsError::Top)
            })
            .transpose()?
            .unwrap_or(DEFAULT_TOP);
        Ok(Counts {
            by,
            every,
            sums,
            top,
        })
    }

    /// The counts' own part of a link's query string (before the kind's
    /// filters), in a fixed order.
    pub fn link_query(&self, kind: &Kind) -> String {
        let mut parts = Vec::new();
        if let Some(by) = self.by {
            parts.push(format!("by={}", kind.columns[by].json));
        }
        if let Some(every) = self.every {
            parts.push(format!("every={}", every.as_str()));
        }
        for sum in &self.sums {
            parts.push(format!("sum={}", kind.columns[*sum].json));
        }
        if self.by.is_some() {
            parts.push(format!("top={}", self.top));
        }
        parts.join("&")
    }

    /// The query of the counts over `listing`'s records (a window): the
    /// listing's parameters, then the zone's name (`UTC` without one) with
    /// `every`, then `top` with `by`. Its rows: the bucket (`timestamptz`,
    /// NULL without `every`), the value counted by as text (NULL without
    /// `by`, or when the record has none), the count, then each sum
    /// (`int8`, NULL when every value summed was NULL). Buckets in time
    /// order; within one, values by their rank over the whole window (by
    /// the total of the sums, else by count; then by value).
    pub fn sql(&self, kind: &Kind, listing: &Listing) -> String {
        let (_, mut n) = listing.predicate(kind);
        let time = match kind.time {
            TimeModel::Instant { column } => column.to_owned(),
            // A span counts in the bucket it starts in, or the window's
            // first when it started before it.
            TimeModel::Interval { start, .. } if listing.lower.is_some() => {
                format!("greatest({start}, $1)")
            }
            TimeModel::Interval { start, .. } => start.to_owned(),
        };
        let key = self.by.map_or("NULL::text".to_owned(), |by| {
            format!("({})::text", kind.columns[by].sql)
        });
        let mut inner = format!("{key} AS k, {time} AS t");
        for (i, sum) in self.sums.iter().enumerate() {
            inner.push_str(&format!(", ({})::int8 AS s{i}", kind.columns[*sum].sql));
        }
        let records = listing.select_sql(kind, &inner);
        let bucket = match self.every {
            Some(every) => {
                let bucket = format!("date_trunc('{}', t, ${n}::text)", every.as_str());
                n += 1;
                bucket
            }
            None => "NULL::timestamptz".to_owned(),
        };
        let sums = |of: &str| -> String {
            (0..self.sums.len())
                .map(|i| format!(", sum({of}s{i})::int8 AS s{i}"))
                .collect()
        };
        let picked: String = (0..self.sums.len()).map(|i| format!(", g.s{i}")).collect();
        let grouped = format!(
            "SELECT {bucket} AS b, k, count(*)::int8 AS n{} FROM r GROUP BY 1, 2",
            sums("")
        );
        if self.by.is_none() {
            return format!(
                "WITH r AS ({records}), g AS ({grouped}) \
                 SELECT g.b, g.k, g.n{picked} FROM g ORDER BY g.b"
            );
        }
        // By count, or by the total of the sums (a session's traffic is
        // its input and output octets).
        let rank = if self.sums.is_empty() {
            "sum(n)".to_owned()
        } else {
            (0..self.sums.len())
                .map(|i| format!("coalesce(sum(s{i}), 0)"))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        format!(
            "WITH r AS ({records}), g AS ({grouped}), \
             top AS (SELECT k, row_number() OVER (ORDER BY {rank} DESC, k NULLS LAST) AS place \
             FROM g GROUP BY k ORDER BY place LIMIT ${n}) \
             SELECT g.b, g.k, g.n{picked} FROM g JOIN top ON g.k IS NOT DISTINCT FROM top.k \
             ORDER BY g.b, top.place"
        )
    }

    /// Whether [`Counts::sql`] takes the zone's name, and `top`, after the
    /// listing's parameters.
    pub fn extra_parameters(&self) -> (bool, bool) {
        (self.every.is_some(), self.by.is_some())
    }
}

/// One row of counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountRow {
    /// The bucket's start, with `every`.
    pub time: Option<DateTime<Utc>>,
    /// The value counted by, as shown to the reader (a pseudonym for an
    /// identity without the `identities` scope), with `by`.
    pub key: Option<String>,
    /// How many records.
    pub count: i64,
    /// The sums, in the order asked.
    pub sums: Vec<Option<i64>>,
}

/// The JSON body, its members in this order.
#[derive(serde::Serialize)]
struct JsonBody<'a> {
    links: JsonLinks<'a>,
    start: String,
    end: String,
    counts: Vec<JsonRow>,
}

#[derive(serde::Serialize)]
struct JsonLinks<'a> {
    #[serde(rename = "self")]
    this: &'a str,
    prev: &'a str,
    next: &'a str,
}

/// One count in JSON and NDJSON: `time` with `every`, `key` with `by`,
/// `sums` with `sum` (by column, in the order asked).
#[derive(serde::Serialize)]
struct JsonRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<serde_json::Value>,
    count: i64,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_object")]
    sums: Option<Vec<(&'static str, Option<i64>)>>,
}

/// Pairs as a JSON object, in their order.
fn as_object<S: serde::Serializer>(
    pairs: &Option<Vec<(&'static str, Option<i64>)>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let pairs = pairs.as_deref().unwrap_or_default();
    let mut map = serializer.serialize_map(Some(pairs.len()))?;
    for (name, value) in pairs {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

/// The counts of one window, ready to encode.
#[derive(Debug)]
pub struct CountsBody<'a> {
    /// The kind.
    pub kind: &'a Kind,
    /// What was asked.
    pub counts: &'a Counts,
    /// The window's links.
    pub links: &'a NavigationLinks,
    /// The window's bounds.
    pub start: DateTime<Utc>,
    /// Its end (exclusive).
    pub end: DateTime<Utc>,
    /// The reader's zone (times then in local time with their offset).
    pub zone: Option<&'a Zone>,
    /// The rows.
    pub rows: &'a [CountRow],
}

impl CountsBody<'_> {
    fn time(&self, t: DateTime<Utc>) -> String {
        match self.zone {
            None => format_timestamp(t),
            Some(zone) => {
                let offset = zone.offset_at(t);
                let sign = if offset < 0 { '-' } else { '+' };
                let offset = offset.abs();
                format!(
                    "{}{sign}{:02}:{:02}",
                    zone.local(t).format("%Y-%m-%dT%H:%M:%S"),
                    offset / 3600,
                    offset % 3600 / 60
                )
            }
        }
    }

    /// The value of a key in JSON: a number or boolean for such columns.
    fn key_json(&self, key: &Option<String>) -> serde_json::Value {
        let Some(key) = key else {
            return serde_json::Value::Null;
        };
        let column = self.counts.by.map(|by| self.kind.columns[by].ty);
        match column {
            Some(ColumnType::Integer) => key
                .parse::<i64>()
                .map_or_else(|_| key.clone().into(), Into::into),
            Some(ColumnType::Boolean) => (key == "true").into(),
            _ => key.clone().into(),
        }
    }

    fn row_json(&self, row: &CountRow) -> JsonRow {
        JsonRow {
            time: row.time.map(|t| self.time(t)),
            key: self.counts.by.map(|_| self.key_json(&row.key)),
            count: row.count,
            sums: (!self.counts.sums.is_empty()).then(|| {
                self.counts
                    .sums
                    .iter()
                    .zip(&row.sums)
                    .map(|(i, v)| (self.kind.columns[*i].json, *v))
                    .collect()
            }),
        }
    }

    /// The CSV header.
    pub fn csv_header(&self) -> Vec<&'static str> {
        let mut header = Vec::new();
        if self.counts.every.is_some() {
            header.push("Time");
        }
        if let Some(by) = self.counts.by {
            header.push(self.kind.columns[by].csv);
        }
        header.push("Count");
        header.extend(self.counts.sums.iter().map(|i| self.kind.columns[*i].csv));
        header
    }

    /// The body in `format`: JSON `{"links", "start", "end", "counts": […]}`,
    /// CSV (a header, then one row per count) or NDJSON (one count per
    /// line).
    pub fn encode(&self, format: OutputFormat, guard: FormulaGuard) -> Bytes {
        match format {
            OutputFormat::Json => {
                let body = JsonBody {
                    links: JsonLinks {
                        this: &self.links.self_link,
                        prev: &self.links.prev,
                        next: &self.links.next,
                    },
                    start: self.time(self.start),
                    end: self.time(self.end),
                    counts: self.rows.iter().map(|r| self.row_json(r)).collect(),
                };
                serde_json::to_vec(&body)
                    .map(Bytes::from)
                    .unwrap_or_default()
            }
            OutputFormat::Ndjson => {
                let mut buf = Vec::new();
                for row in self.rows {
                    let _ = serde_json::to_writer(&mut buf, &self.row_json(row));
                    buf.push(b'\n');
                }
                Bytes::from(buf)
            }
            OutputFormat::Csv => {
                let mut buf = BytesMut::new();
                buf.put_slice(self.csv_header().join(",").as_bytes());
                buf.put_slice(b"\r\n");
                for row in self.rows {
                    let mut first = true;
                    let mut separate = |buf: &mut BytesMut| {
                        if !first {
                            buf.put_u8(b',');
                        }
                        first = false;
                    };
                    if self.counts.every.is_some() {
                        separate(&mut buf);
                        let time = row.time.map(|t| self.time(t)).unwrap_or_default();
                        write_csv_field(&mut buf, time.as_bytes());
                    }
                    if self.counts.by.is_some() {
                        separate(&mut buf);
                        let key = row.key.as_deref().unwrap_or_default();
                        write_csv_text(&mut buf, key.as_bytes(), guard == FormulaGuard::Quote);
                    }
                    separate(&mut buf);
                    write_csv_field(&mut buf, row.count.to_string().as_bytes());
                    for sum in &row.sums {
                        separate(&mut buf);
                        let text = sum.map(|s| s.to_string()).unwrap_or_default();
                        write_csv_field(&mut buf, text.as_bytes());
                    }
                    buf.put_slice(b"\r\n");
                }
                buf.freeze()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::identity::IdentityType;
    use crate::core::kind::Selection;
    use crate::core::window::{Direction, Period, Window};

    static COLUMNS: [Column; 4] = [
        Column::timestamp("at"),
        Column::new("method", "Method", ColumnType::Text, "method"),
        Column::new(
            "user",
            "User",
            ColumnType::Identity(IdentityType::User),
            "who",
        ),
        Column::new("bytes", "Bytes", ColumnType::Integer, "bytes::int8"),
    ];
    static KIND: Kind = Kind {
        name: "things",
        path: "/things",
        envelope: "things",
        file_name: "things",
        schema: "Thing",
        table: "thing",
        time: TimeModel::Instant { column: "at" },
        columns: &COLUMNS,
        ..Kind::BASE
    };

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn day() -> chrono::Duration {
        chrono::Duration::days(1)
    }

    #[test]
    fn parses_what_to_count() {
        let counts = Counts::parse(
            &KIND,
            &pairs(&[
                ("by", "user"),
                ("every", "hour"),
                ("sum", "bytes"),
                ("top", "5"),
            ]),
            day(),
        )
        .unwrap();
        assert_eq!(
            counts,
            Counts {
                by: Some(2),
                every: Some(Every::Hour),
                sums: vec![3],
                top: 5
            }
        );
        assert_eq!(
            counts.link_query(&KIND),
            "by=user&every=hour&sum=bytes&top=5"
        );
        let plain = Counts::parse(&KIND, &[], day()).unwrap();
        assert_eq!(plain.top, DEFAULT_TOP);
        assert_eq!(plain.link_query(&KIND), "");
    }

    #[test]
    fn refuses_what_cannot_be_counted() {
        let refuse = |list: &[(&str, &str)], span| Counts::parse(&KIND, &pairs(list), span);
        assert_eq!(
            refuse(&[("by", "at")], day()),
            Err(CountsError::By("method, user, bytes".into()))
        );
        assert_eq!(
            refuse(&[("sum", "method")], day()),
            Err(CountsError::Sum("bytes".into()))
        );
        assert_eq!(refuse(&[("every", "week")], day()), Err(CountsError::Every));
        assert_eq!(refuse(&[("top", "0")], day()), Err(CountsError::Top));
        assert_eq!(refuse(&[("top", "1001")], day()), Err(CountsError::Top));
        assert_eq!(
            refuse(&[("by", "user"), ("by", "method")], day()),
            Err(CountsError::Repeated("by"))
        );
        // A week by minute is 10,080 buckets; by hour 168.
        let week = chrono::Duration::days(7);
        assert_eq!(
            refuse(&[("every", "minute")], week),
            Err(CountsError::Buckets(10_080))
        );
        assert!(refuse(&[("every", "hour")], week).is_ok());
    }

    #[test]
    fn the_sql_counts_over_the_window_then_keeps_the_top_values() {
        let window = Window::parse(Period::Day, "2026-12-05", Direction::Ascending).unwrap();
        let listing = Listing::window(&window, Selection::default());
        let counts = Counts::parse(
            &KIND,
            &pairs(&[("by", "method"), ("every", "hour"), ("sum", "bytes")]),
            day(),
        )
        .unwrap();
        let sql = counts.sql(&KIND, &listing);
        assert!(sql.starts_with("WITH r AS (SELECT (method)::text AS k, at AS t, (bytes::int8)::int8 AS s0 FROM thing WHERE at >= $1 AND at < $2"), "{sql}");
        assert!(sql.contains("date_trunc('hour', t, $3::text)"), "{sql}");
        assert!(sql.contains("LIMIT $4"), "{sql}");
        assert!(sql.contains("ORDER BY coalesce(sum(s0), 0) DESC"), "{sql}");
        assert_eq!(counts.extra_parameters(), (true, true));
        let total = Counts::parse(&KIND, &[], day()).unwrap();
        assert_eq!(total.extra_parameters(), (false, false));
        let total = total.sql(&KIND, &listing);
        assert!(total.contains("GROUP BY 1, 2"), "{total}");
        assert!(!total.contains("$3"), "{total}");
    }

    #[test]
    fn encodes_json_csv_and_ndjson() {
        let window = Window::parse(Period::Day, "2026-12-05", Direction::Ascending).unwrap();
        let links = window.links("http://h").unwrap();
        let counts = Counts::parse(
            &KIND,
            &pairs(&[("by", "method"), ("every", "hour"), ("sum", "bytes")]),
            day(),
        )
        .unwrap();
        let (start, end) = window.bounds();
        let rows = [CountRow {
            time: Some(start),
            key: Some("=cmd".into()),
            count: 3,
            sums: vec![Some(42)],
        }];
        let body = CountsBody {
            kind: &KIND,
            counts: &counts,
            links: &links,
            start,
            end,
            zone: None,
            rows: &rows,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&body.encode(OutputFormat::Json, FormulaGuard::Quote)).unwrap();
        assert_eq!(
            json["counts"][0],
            serde_json::json!({"time": "2026-12-05T00:00:00", "key": "=cmd", "count": 3, "sums": {"bytes": 42}})
        );
        assert_eq!(json["start"], "2026-12-05T00:00:00");
        assert_eq!(json["end"], "2026-12-06T00:00:00");
        assert!(json["links"]["next"]
            .as_str()
            .unwrap()
            .ends_with("2026-12-06"));
        let csv = body.encode(OutputFormat::Csv, FormulaGuard::Quote);
        assert_eq!(
            std::str::from_utf8(&csv).unwrap(),
            "Time,Method,Count,Bytes\r\n2026-12-05T00:00:00,'=cmd,3,42\r\n"
        );
        let ndjson = body.encode(OutputFormat::Ndjson, FormulaGuard::Quote);
        assert_eq!(ndjson.iter().filter(|b| **b == b'\n').count(), 1);
    }
}

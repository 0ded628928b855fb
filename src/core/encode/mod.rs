//! Streaming encoders that turn records of any kind into chunks of a JSON,
//! CSV or NDJSON body, driven by the kind's column list.
//!
//! The encoder appends to an internal buffer; the streaming layer calls
//! [`RecordEncoder::take`] whenever [`RecordEncoder::buffered`] reaches
//! [`CHUNK_TARGET`] and once more after [`RecordEncoder::finish`]. A row is
//! written as [`RecordEncoder::begin_row`], one [`RecordEncoder::value`] per
//! column in the kind's order, [`RecordEncoder::end_row`]: no allocation per
//! row.
//!
//! - JSON: `{"links":{"self":…,"prev":…,"next":…},"<envelope>":[{…},…]}`; a
//!   null value (a field that does not apply to the record) is left out of
//!   its object.
//! - CSV: a header row of the columns' CSV names, then one RFC 4180 row per
//!   record (CRLF, fields quoted only when needed). Text cells that a
//!   spreadsheet would run as a formula are neutralised ([`FormulaGuard`]).
//! - NDJSON: one JSON object per record and line, no envelope.

mod escape;
mod timestamp;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};

use crate::core::identity::Shown;
use crate::core::kind::{ColumnType, Kind};
use crate::core::negotiate::OutputFormat;
use crate::core::window::NavigationLinks;

pub use escape::{write_csv_field, write_csv_text, write_json_str, FormulaGuard};
use timestamp::SecondCache;
pub use timestamp::{format_timestamp, write_timestamp, UnixMicros};

/// The buffer size at which the streaming layer should take a chunk.
pub const CHUNK_TARGET: usize = 32 * 1024;

/// The capacity reserved for each chunk: the target plus room for the row that crosses it.
const CHUNK_CAPACITY: usize = CHUNK_TARGET + 8 * 1024;

/// One value of a record, borrowed from the row it came from.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    /// SQL NULL: left out of JSON objects, an empty CSV cell.
    Null,
    /// Text.
    Text(&'a str),
    /// An integer.
    Integer(i64),
    /// A float (non-finite values are written as null: left out, or an empty cell).
    Float(f64),
    /// A boolean.
    Boolean(bool),
    /// A point in time.
    Timestamp(DateTime<Utc>),
    /// A point in time as PostgreSQL stores it: cheaper to write than a
    /// [`Value::Timestamp`], whose calendar date is worked out on creation.
    Micros(UnixMicros),
    /// A personal identifier, as an identity writer showed it.
    Identity(Shown<'a>),
}

/// Encodes one listing of records incrementally.
///
/// The output is always well-formed up to the last completed row.
pub struct RecordEncoder {
    format: OutputFormat,
    buf: BytesMut,
    guard: FormulaGuard,
    /// The JSON key of each column with its trailing `:`.
    keys: Vec<Box<[u8]>>,
    /// A field of the current JSON row has been written (the next needs a comma).
    row_has_field: bool,
    /// The last timestamp's whole second, formatted: consecutive rows mostly
    /// share it, so the calendar is worked out once per second, not per row.
    seconds: SecondCache,
    /// The CSV formula guard applies to each column.
    guarded: Vec<bool>,
    /// Rows begun so far.
    rows: u64,
    /// The next column of the current row.
    column: usize,
    closed: bool,
}

impl std::fmt::Debug for RecordEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordEncoder")
            .field("format", &self.format)
            .field("buffered", &self.buffered())
            .field("closed", &self.closed)
            .finish()
    }
}

/// What a JSON body says before its records.
#[derive(Clone, Copy, Debug)]
pub enum JsonHead<'a> {
    /// A window: `"links":{"self":…,"prev":…,"next":…}`.
    Links(&'a NavigationLinks),
    /// A page of a change feed: `"links":{"self":…,"next":…}`.
    Feed {
        /// The page itself.
        self_link: &'a str,
        /// The page after it (the same page when it is empty).
        next: &'a str,
    },
    /// An offset-paged list: `"previousLink":…,"nextLink":…` (each a URL or
    /// null) and, when counted, `"totalCount":…`.
    Paged {
        /// The previous page, if any.
        previous: Option<&'a str>,
        /// The next page, if any.
        next: Option<&'a str>,
        /// Every record of the list, when asked for.
        total: Option<i64>,
    },
    /// A cursor-paged list in the shape of Django REST framework's
    /// pagination: `"count":…,"next":…,"previous":…` and the records under
    /// `"results"` (instead of the kind's envelope).
    Results {
        /// Every record of the list.
        count: i64,
        /// The next page, if any.
        next: Option<&'a str>,
        /// The previous page, if any.
        previous: Option<&'a str>,
    },
}

impl RecordEncoder {
    /// Creates an encoder for `kind` and writes the body's prefix: JSON the
    /// head and the envelope's opening, CSV the header row, NDJSON nothing.
    pub fn new(kind: &Kind, format: OutputFormat, head: JsonHead<'_>, guard: FormulaGuard) -> Self {
        let mut buf = BytesMut::with_capacity(CHUNK_CAPACITY);
        match format {
            OutputFormat::Json => {
                match head {
                    JsonHead::Links(links) => {
                        buf.put_slice(br#"{"links":{"self":"#);
                        write_json_str(&mut buf, &links.self_link);
                        buf.put_slice(br#","prev":"#);
                        write_json_str(&mut buf, &links.prev);
                        buf.put_slice(br#","next":"#);
                        write_json_str(&mut buf, &links.next);
                        buf.put_slice(b"},");
                        if let Some(span) = &links.span {
                            buf.put_slice(br#""window":{"start":"#);
                            write_json_str(&mut buf, &span.start);
                            buf.put_slice(br#","end":"#);
                            write_json_str(&mut buf, &span.end);
                            buf.put_slice(b"},");
                        }
                    }
                    JsonHead::Feed { self_link, next } => {
                        buf.put_slice(br#"{"links":{"self":"#);
                        write_json_str(&mut buf, self_link);
                        buf.put_slice(br#","next":"#);
                        write_json_str(&mut buf, next);
                        buf.put_slice(b"},");
                    }
                    JsonHead::Paged {
                        previous,
                        next,
                        total,
                    } => {
                        for (key, link) in
                            [("{\"previousLink\":", previous), (",\"nextLink\":", next)]
                        {
                            buf.put_slice(key.as_bytes());
                            match link {
                                Some(url) => write_json_str(&mut buf, url),
                                None => buf.put_slice(b"null"),
                            }
                        }
                        if let Some(total) = total {
                            buf.put_slice(b",\"totalCount\":");
                            buf.put_slice(itoa::Buffer::new().format(total).as_bytes());
                        }
                        buf.put_u8(b',');
                    }
                    JsonHead::Results {
                        count,
                        next,
                        previous,
                    } => {
                        buf.put_slice(b"{\"count\":");
                        buf.put_slice(itoa::Buffer::new().format(count).as_bytes());
                        for (key, link) in [(",\"next\":", next), (",\"previous\":", previous)] {
                            buf.put_slice(key.as_bytes());
                            match link {
                                Some(url) => write_json_str(&mut buf, url),
                                None => buf.put_slice(b"null"),
                            }
                        }
                        buf.put_u8(b',');
                    }
                }
                let envelope = match head {
                    JsonHead::Results { .. } => "results",
                    _ => kind.envelope,
                };
                write_json_str(&mut buf, envelope);
                buf.put_slice(b":[");
            }
            OutputFormat::Csv => {
                for (i, column) in kind.columns.iter().enumerate() {
                    if i > 0 {
                        buf.put_u8(b',');
                    }
                    write_csv_field(&mut buf, column.csv.as_bytes());
                }
                buf.put_slice(b"\r\n");
            }
            OutputFormat::Ndjson => {}
        }
        let keys = kind
            .columns
            .iter()
            .map(|column| {
                let mut key = BytesMut::new();
                write_json_str(&mut key, column.json);
                key.put_u8(b':');
                key.to_vec().into_boxed_slice()
            })
            .collect();
        let guarded = kind
            .columns
            .iter()
            .map(|c| matches!(c.ty, ColumnType::Text | ColumnType::Identity(_)))
            .collect();
        RecordEncoder {
            format,
            buf,
            guard,
            keys,
            row_has_field: false,
            seconds: SecondCache::default(),
            guarded,
            rows: 0,
            column: 0,
            closed: false,
        }
    }

    /// Writes times from now on in `zone`'s local time followed by its
    /// offset then (`2026-10-25T03:30:00+02:00`); `None` keeps UTC without
    /// a suffix.
    pub fn in_zone(mut self, zone: Option<crate::core::zone::Zone>) -> Self {
        self.seconds.set_zone(zone);
        self
    }

    /// Returns the format this encoder writes.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Starts a record. Records begun after [`finish`](Self::finish) or
    /// [`fail`](Self::fail) are ignored, value by value.
    pub fn begin_row(&mut self) {
        self.column = 0;
        if self.closed {
            return;
        }
        if self.format == OutputFormat::Json && self.rows > 0 {
            self.buf.put_u8(b',');
        }
        if self.format != OutputFormat::Csv {
            self.buf.put_u8(b'{');
            self.row_has_field = false;
        }
        self.rows += 1;
    }

    /// Writes the value of the next column.
    pub fn value(&mut self, value: Value<'_>) {
        let column = self.column;
        self.column += 1;
        if self.closed || column >= self.keys.len() {
            return;
        }
        let buf = &mut self.buf;
        if self.format == OutputFormat::Csv {
            if column > 0 {
                buf.put_u8(b',');
            }
            let guard = self.guard == FormulaGuard::Quote && self.guarded[column];
            match value {
                Value::Null => {}
                Value::Text(text) => write_csv_text(buf, text.as_bytes(), guard),
                Value::Identity(shown) if shown.is_pseudonym() => buf.put_slice(shown.as_bytes()),
                Value::Identity(shown) => write_csv_text(buf, shown.as_bytes(), guard),
                Value::Integer(n) => buf.put_slice(itoa::Buffer::new().format(n).as_bytes()),
                Value::Float(x) if x.is_finite() => {
                    buf.put_slice(ryu::Buffer::new().format_finite(x).as_bytes())
                }
                Value::Float(_) => {}
                Value::Boolean(b) => buf.put_slice(if b { b"true" } else { b"false" }),
                Value::Timestamp(t) => self.seconds.write(buf, t),
                Value::Micros(t) => self.seconds.write_micros(buf, t),
            }
            return;
        }
        // A null (a field that does not apply to this record) is left out.
        if matches!(value, Value::Null) || matches!(value, Value::Float(x) if !x.is_finite()) {
            return;
        }
        if std::mem::replace(&mut self.row_has_field, true) {
            buf.put_u8(b',');
        }
        buf.put_slice(&self.keys[column]);
        match value {
            Value::Null => {}
            Value::Text(text) => write_json_str(buf, text),
            Value::Identity(shown) if shown.is_pseudonym() => {
                buf.put_u8(b'"');
                buf.put_slice(shown.as_bytes());
                buf.put_u8(b'"');
            }
            Value::Identity(shown) => write_json_str(buf, shown.as_str()),
            Value::Integer(n) => buf.put_slice(itoa::Buffer::new().format(n).as_bytes()),
            Value::Float(x) => buf.put_slice(ryu::Buffer::new().format_finite(x).as_bytes()),
            Value::Boolean(b) => buf.put_slice(if b { b"true" } else { b"false" }),
            Value::Timestamp(t) => {
                buf.put_u8(b'"');
                self.seconds.write(buf, t);
                buf.put_u8(b'"');
            }
            Value::Micros(t) => {
                buf.put_u8(b'"');
                self.seconds.write_micros(buf, t);
                buf.put_u8(b'"');
            }
        }
    }

    /// Ends the record.
    pub fn end_row(&mut self) {
        if self.closed {
            return;
        }
        match self.format {
            OutputFormat::Csv => self.buf.put_slice(b"\r\n"),
            OutputFormat::Json => self.buf.put_u8(b'}'),
            OutputFormat::Ndjson => self.buf.put_slice(b"}\n"),
        }
    }

    /// Returns the number of bytes encoded but not yet taken.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Splits off everything buffered so far as one chunk (which may be empty).
    pub fn take(&mut self) -> Bytes {
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK_CAPACITY);
        chunk
    }

    /// Writes the end of the body: `]}` for JSON, nothing for CSV and NDJSON.
    pub fn finish(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.format == OutputFormat::Json {
            self.buf.put_slice(b"]}");
        }
    }

    /// Records a failure that happened after the first byte was sent.
    ///
    /// JSON: closes the array and appends
    /// `,"error":{"error":"server_error","error_description":<description>}}` so that the
    /// body stays valid JSON; NDJSON: a last line
    /// `{"error":"server_error","error_description":<description>}`; both return `true`.
    /// CSV cannot express the failure, so nothing is written and `false` is returned: the
    /// caller must abort the transfer so that the client sees a truncated body. Also
    /// returns `false` if the body was already finished.
    pub fn fail(&mut self, description: &str) -> bool {
        if self.closed {
            return false;
        }
        self.closed = true;
        let buf = &mut self.buf;
        match self.format {
            OutputFormat::Json => {
                buf.put_slice(br#"],"error":{"error":"server_error","error_description":"#);
                write_json_str(buf, description);
                buf.put_slice(b"}}");
                true
            }
            OutputFormat::Ndjson => {
                buf.put_slice(br#"{"error":"server_error","error_description":"#);
                write_json_str(buf, description);
                buf.put_slice(b"}\n");
                true
            }
            OutputFormat::Csv => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::identity::{IdentityPolicy, IdentityType, IdentityWriter};
    use crate::core::kind::{Column, TimeModel};
    use crate::core::pseudonym::Pseudonymiser;
    use chrono::NaiveDate;
    use serde_json::{json, Value as Json};

    static COLUMNS: [Column; 6] = [
        Column::new("timestamp", "Timestamp", ColumnType::Timestamp, "at"),
        Column::new("name", "Name, Full", ColumnType::Text, "name"),
        Column::new("count", "Count", ColumnType::Integer, "n").nullable(),
        Column::new("ratio", "Ratio", ColumnType::Float, "r").nullable(),
        Column::new("ok", "OK", ColumnType::Boolean, "ok"),
        Column::new(
            "userId",
            "Pseudonymised User ID",
            ColumnType::Identity(IdentityType::User),
            "u",
        ),
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
        ..Kind::BASE
    };

    fn links() -> NavigationLinks {
        NavigationLinks {
            self_link: "http://h/x/day/2021-04-10".into(),
            prev: "http://h/x/day/2021-04-09".into(),
            next: "http://h/x/day/2021-04-11".into(),
            span: None,
        }
    }

    fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_nano_opt(h, mi, s, nanos)
            .unwrap()
            .and_utc()
    }

    struct Row {
        at: DateTime<Utc>,
        name: String,
        count: Option<i64>,
        ratio: Option<f64>,
        ok: bool,
        user: String,
    }

    fn rows(names: &[&str]) -> Vec<Row> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| Row {
                at: ts(
                    2021,
                    4,
                    10,
                    0,
                    (i / 60 % 60) as u32,
                    (i % 60) as u32,
                    (i % 1000) as u32 * 1_000_000,
                ),
                name: name.to_string(),
                count: (i % 3 != 0).then_some(i as i64 - 5),
                ratio: (i % 2 == 0).then_some(i as f64 / 4.0),
                ok: i % 2 == 1,
                user: format!("user-{i}"),
            })
            .collect()
    }

    fn policy() -> IdentityPolicy {
        IdentityPolicy::Pseudonymise(Pseudonymiser::new(b"k").unwrap())
    }

    fn encode_with(
        format: OutputFormat,
        rows: &[Row],
        take_every_row: bool,
        guard: FormulaGuard,
        policy: &IdentityPolicy,
    ) -> Vec<u8> {
        let mut enc = RecordEncoder::new(&KIND, format, JsonHead::Links(&links()), guard);
        let mut ids = IdentityWriter::new(policy);
        let mut body = Vec::new();
        for r in rows {
            enc.begin_row();
            enc.value(Value::Timestamp(r.at));
            enc.value(Value::Text(&r.name));
            enc.value(r.count.map_or(Value::Null, Value::Integer));
            enc.value(r.ratio.map_or(Value::Null, Value::Float));
            enc.value(Value::Boolean(r.ok));
            enc.value(Value::Identity(ids.show(IdentityType::User, &r.user)));
            enc.end_row();
            if take_every_row {
                body.extend_from_slice(&enc.take());
                assert_eq!(enc.buffered(), 0);
            }
        }
        enc.finish();
        body.extend_from_slice(&enc.take());
        body
    }

    fn encode(format: OutputFormat, rows: &[Row], take_every_row: bool) -> Vec<u8> {
        encode_with(format, rows, take_every_row, FormulaGuard::Off, &policy())
    }

    fn expected_objects(rows: &[Row]) -> Vec<Json> {
        let p = Pseudonymiser::new(b"k").unwrap();
        rows.iter()
            .map(|r| {
                let mut object = json!({
                    "timestamp": format_timestamp(r.at),
                    "name": r.name,
                    "count": r.count,
                    "ratio": r.ratio,
                    "ok": r.ok,
                    "userId": p.pseudonymise(&r.user).as_str(),
                });
                // Nulls are left out.
                object.as_object_mut().unwrap().retain(|_, v| !v.is_null());
                object
            })
            .collect()
    }

    const TRICKY: &[&str] = &[
        "a,b",
        "say \"hi\"",
        "cr\rhere",
        "lf\nhere",
        "crlf\r\nhere",
        "tab\there",
        "Müller, Jörg 東京",
        "emoji 🦀🎉",
        "ctrl\u{1}x",
        "back\\slash",
        "",
        "\"",
        ",",
        "\u{7f}\u{2028}",
        " leading and trailing ",
        "=1+1",
        "'",
    ];

    #[test]
    fn json_round_trips_with_links_and_envelope() {
        for names in [&["a", "b", "c"][..], TRICKY] {
            let rs = rows(names);
            for take_every_row in [false, true] {
                let body = encode(OutputFormat::Json, &rs, take_every_row);
                let v: Json = serde_json::from_slice(&body).unwrap();
                assert_eq!(
                    v,
                    json!({
                        "links": {"self": "http://h/x/day/2021-04-10", "prev": "http://h/x/day/2021-04-09", "next": "http://h/x/day/2021-04-11"},
                        "things": expected_objects(&rs),
                    })
                );
            }
        }
        let body = encode(OutputFormat::Json, &[], false);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"links":{"self":"http://h/x/day/2021-04-10","prev":"http://h/x/day/2021-04-09","next":"http://h/x/day/2021-04-11"},"things":[]}"#
        );
        // Key order and layout of one object.
        let body = encode(OutputFormat::Json, &rows(&["a"]), false);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(
            text.contains(r#""things":[{"timestamp":"2021-04-10T00:00:00","name":"a","ratio":0.0,"ok":false,"userId":""#),
            "{text}"
        );
        let body = encode(OutputFormat::Json, &rows(TRICKY), false);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains("Müller, Jörg 東京") && text.contains(r"ctrl\u0001x"));
    }

    #[test]
    fn paged_head() {
        let mut enc = RecordEncoder::new(
            &KIND,
            OutputFormat::Json,
            JsonHead::Paged {
                previous: None,
                next: Some("http://h/x?offset=2"),
                total: Some(7),
            },
            FormulaGuard::Quote,
        );
        enc.finish();
        assert_eq!(
            &enc.take()[..],
            br#"{"previousLink":null,"nextLink":"http://h/x?offset=2","totalCount":7,"things":[]}"#
        );
    }

    #[test]
    fn ndjson_is_one_object_per_line() {
        let rs = rows(TRICKY);
        let body = encode(OutputFormat::Ndjson, &rs, true);
        let text = std::str::from_utf8(&body).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), rs.len());
        let parsed: Vec<Json> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed, expected_objects(&rs));
        assert!(encode(OutputFormat::Ndjson, &[], false).is_empty());
    }

    fn parse_csv(body: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(body);
        let header = reader.headers().unwrap().iter().map(String::from).collect();
        let records = reader
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        (header, records)
    }

    #[test]
    fn csv_round_trips() {
        let empty = encode(OutputFormat::Csv, &[], false);
        assert_eq!(
            empty,
            b"Timestamp,\"Name, Full\",Count,Ratio,OK,Pseudonymised User ID\r\n".to_vec()
        );
        let p = Pseudonymiser::new(b"k").unwrap();
        for names in [&["a", "b", "c"][..], TRICKY] {
            let rs = rows(names);
            for take_every_row in [false, true] {
                let body = encode(OutputFormat::Csv, &rs, take_every_row);
                let (header, records) = parse_csv(&body);
                assert_eq!(header[1], "Name, Full");
                let expected: Vec<Vec<String>> = rs
                    .iter()
                    .map(|r| {
                        vec![
                            format_timestamp(r.at),
                            r.name.clone(),
                            r.count.map(|n| n.to_string()).unwrap_or_default(),
                            r.ratio.map(|x| format!("{x:?}")).unwrap_or_default(),
                            r.ok.to_string(),
                            p.pseudonymise(&r.user).as_str().to_owned(),
                        ]
                    })
                    .collect();
                assert_eq!(records, expected);
            }
        }
        let body = encode(OutputFormat::Csv, &rows(&["a,b", "x"]), false);
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(text.matches("\r\n").count(), 3);
        assert_eq!(text.matches('\n').count(), 3);
        assert!(text.contains(",\"a,b\","), "{text}");
    }

    #[test]
    fn csv_formula_guard() {
        let cases: &[(&str, &str)] = &[
            ("=1+1", "'=1+1"),
            ("+SUM(A1)", "'+SUM(A1)"),
            ("-2+3", "'-2+3"),
            ("@cmd", "'@cmd"),
            ("\t=1", "'\t=1"),
            ("\r=1", "\"'\r=1\""),
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"",
            ),
            ("say \"hi\", ok", "\"say \"\"hi\"\", ok\""),
            ("a=b", "a=b"),
            ("", ""),
        ];
        for (value, guarded) in cases {
            let rs = rows(&[value]);
            for (guard, expected) in [(FormulaGuard::Quote, *guarded), (FormulaGuard::Off, "")] {
                let body = encode_with(OutputFormat::Csv, &rs, false, guard, &policy());
                let text = String::from_utf8(body).unwrap();
                let row = text.split_once("\r\n").unwrap().1;
                let cell = &row["2021-04-10T00:00:00,".len()..];
                if guard == FormulaGuard::Quote {
                    assert!(
                        cell.starts_with(&format!("{expected},")),
                        "{value:?}: {cell:?}"
                    );
                } else {
                    let (_, records) = parse_csv(text.as_bytes());
                    assert_eq!(records[0][1], *value);
                }
            }
            // JSON is never guarded.
            let body = encode_with(
                OutputFormat::Json,
                &rs,
                false,
                FormulaGuard::Quote,
                &policy(),
            );
            let v: Json = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["things"][0]["name"], *value);
        }
        // Numbers and pseudonyms are never touched (a negative count stays a number).
        let body = encode_with(
            OutputFormat::Csv,
            &rows(&["a", "b"]),
            false,
            FormulaGuard::Quote,
            &policy(),
        );
        assert!(String::from_utf8(body).unwrap().contains(",-4,"));
        // Raw identities are text a device chose: guarded.
        let mut rs = rows(&["a"]);
        rs[0].user = "=cmd".into();
        let body = encode_with(
            OutputFormat::Csv,
            &rs,
            false,
            FormulaGuard::Quote,
            &IdentityPolicy::Reveal,
        );
        assert!(String::from_utf8(body).unwrap().ends_with(",'=cmd\r\n"));
    }

    #[test]
    fn fail_keeps_json_and_ndjson_valid_and_asks_csv_to_abort() {
        let rs = rows(&["a", "b"]);
        let mut enc = RecordEncoder::new(
            &KIND,
            OutputFormat::Json,
            JsonHead::Links(&links()),
            FormulaGuard::Quote,
        );
        let mut body = enc.take().to_vec();
        enc.begin_row();
        enc.value(Value::Timestamp(rs[0].at));
        enc.value(Value::Text("x"));
        enc.value(Value::Null);
        enc.value(Value::Null);
        enc.value(Value::Boolean(true));
        enc.value(Value::Null);
        enc.end_row();
        assert!(enc.fail("database \"connection\" lost\n"));
        enc.finish();
        assert!(!enc.fail("again"));
        enc.begin_row();
        enc.value(Value::Text("ignored"));
        enc.end_row();
        body.extend_from_slice(&enc.take());
        let v: Json = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["error"], "server_error");
        assert_eq!(
            v["error"]["error_description"],
            "database \"connection\" lost\n"
        );
        assert_eq!(v["things"].as_array().unwrap().len(), 1);

        let mut enc = RecordEncoder::new(
            &KIND,
            OutputFormat::Ndjson,
            JsonHead::Links(&links()),
            FormulaGuard::Quote,
        );
        assert!(enc.fail("boom"));
        let body = enc.take();
        let v: Json = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"error": "server_error", "error_description": "boom"})
        );
        assert!(body.ends_with(b"\n"));

        let mut enc = RecordEncoder::new(
            &KIND,
            OutputFormat::Csv,
            JsonHead::Links(&links()),
            FormulaGuard::Quote,
        );
        let before = enc.buffered();
        assert!(!enc.fail("boom"));
        assert_eq!(enc.buffered(), before);
    }

    #[test]
    fn take_drains_and_chunks_concatenate() {
        let names: Vec<&str> = (0..2000).map(|_| "ldap, \"main\"").collect();
        let rs = rows(&names);
        for format in [OutputFormat::Json, OutputFormat::Csv, OutputFormat::Ndjson] {
            let mut enc = RecordEncoder::new(
                &KIND,
                format,
                JsonHead::Links(&links()),
                FormulaGuard::Quote,
            );
            let mut ids = IdentityWriter::new(&policy());
            assert_eq!(enc.format(), format);
            let mut chunks = Vec::new();
            for r in &rs {
                enc.begin_row();
                enc.value(Value::Timestamp(r.at));
                enc.value(Value::Text(&r.name));
                enc.value(r.count.map_or(Value::Null, Value::Integer));
                enc.value(r.ratio.map_or(Value::Null, Value::Float));
                enc.value(Value::Boolean(r.ok));
                enc.value(Value::Identity(ids.show(IdentityType::User, &r.user)));
                enc.end_row();
                if enc.buffered() >= CHUNK_TARGET {
                    let chunk = enc.take();
                    assert!(chunk.len() >= CHUNK_TARGET);
                    chunks.push(chunk);
                }
            }
            assert!(chunks.len() > 3, "{format:?}");
            enc.finish();
            chunks.push(enc.take());
            assert!(enc.take().is_empty());
            assert_eq!(chunks.concat(), encode(format, &rs, false), "{format:?}");
        }
    }
}

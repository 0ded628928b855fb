//! Streaming encoders that turn events into chunks of a JSON or CSV body.
//!
//! The encoder appends to an internal buffer; the streaming layer calls
//! [`EventEncoder::take`] whenever [`EventEncoder::buffered`] reaches
//! [`CHUNK_TARGET`] and once more after [`EventEncoder::finish`].

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::core::negotiate::OutputFormat;
use crate::core::pseudonym::Pseudonym;
use crate::core::window::NavigationLinks;

/// The buffer size at which the streaming layer should take a chunk.
pub const CHUNK_TARGET: usize = 32 * 1024;

/// The capacity reserved for each chunk: the target plus room for the row that crosses it.
const CHUNK_CAPACITY: usize = CHUNK_TARGET + 8 * 1024;

/// The staging buffer of the `csv` writer; records are flushed out of it after every row.
const CSV_STAGING_CAPACITY: usize = 4 * 1024;

/// The header row of the CSV body (written without quotes, followed by CRLF).
pub const CSV_HEADER: &str = "Timestamp,Authentication Method Type,Authentication Method Name,Authentication Request Origin,Pseudonymised User ID";

/// One authentication event, borrowed from the database row it came from.
#[derive(Clone, Copy, Debug)]
pub struct EventRecord<'a> {
    /// When the authentication happened.
    pub occurred_at: DateTime<Utc>,
    /// The type of authentication method, e.g. `password`.
    pub auth_method_type: &'a str,
    /// The name of the authentication method.
    pub auth_method_name: &'a str,
    /// Where the authentication request came from.
    pub auth_request_origin: &'a str,
    /// The pseudonymised user; raw user ids cannot reach an encoder.
    pub user: &'a Pseudonym,
}

/// An `io::Write` that appends to a `BytesMut` and never fails.
struct BytesWriter(BytesMut);

impl io::Write for BytesWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Sink {
    Json { buf: BytesWriter, first: bool },
    Csv(Box<CsvSink>),
}

/// The `csv` writer owns the buffer; `take` swaps in a fresh writer to get it back.
struct CsvSink {
    writer: csv::Writer<BytesWriter>,
    builder: csv::WriterBuilder,
}

/// Encodes a window's events incrementally into JSON or CSV.
///
/// The output is always well-formed up to the last completed call: JSON bodies are
/// `{"links":{...},"events":[...]}` and CSV bodies are a header row followed by one
/// CRLF-terminated RFC 4180 row per event.
pub struct EventEncoder {
    sink: Sink,
    closed: bool,
}

impl std::fmt::Debug for EventEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventEncoder")
            .field("format", &self.format())
            .field("buffered", &self.buffered())
            .field("closed", &self.closed)
            .finish()
    }
}

impl EventEncoder {
    /// Creates an encoder and writes the body's prefix.
    ///
    /// JSON: `{"links":{"self":"…","prev":"…","next":"…"},"events":[`; CSV: the header row and CRLF.
    pub fn new(format: OutputFormat, links: &NavigationLinks) -> Self {
        let mut buf = BytesWriter(BytesMut::with_capacity(CHUNK_CAPACITY));
        let sink = match format {
            OutputFormat::Json => {
                buf.0.put_slice(br#"{"links":{"self":"#);
                write_json_str(&mut buf, &links.self_link);
                buf.0.put_slice(br#","prev":"#);
                write_json_str(&mut buf, &links.prev);
                buf.0.put_slice(br#","next":"#);
                write_json_str(&mut buf, &links.next);
                buf.0.put_slice(br#"},"events":["#);
                Sink::Json { buf, first: true }
            }
            OutputFormat::Csv => {
                buf.0.put_slice(CSV_HEADER.as_bytes());
                buf.0.put_slice(b"\r\n");
                let mut builder = csv::WriterBuilder::new();
                builder
                    .terminator(csv::Terminator::CRLF)
                    .quote_style(csv::QuoteStyle::Necessary)
                    .has_headers(false)
                    .buffer_capacity(CSV_STAGING_CAPACITY);
                let writer = builder.from_writer(buf);
                Sink::Csv(Box::new(CsvSink { writer, builder }))
            }
        };
        EventEncoder {
            sink,
            closed: false,
        }
    }

    /// Returns the format this encoder writes.
    pub fn format(&self) -> OutputFormat {
        match self.sink {
            Sink::Json { .. } => OutputFormat::Json,
            Sink::Csv(_) => OutputFormat::Csv,
        }
    }

    /// Appends one event. Events pushed after [`finish`](Self::finish) or [`fail`](Self::fail) are ignored.
    ///
    /// JSON objects have the keys `timestamp`, `authMethodType`, `authMethodName`,
    /// `authRequestOrigin` and `userId`, in that order.
    pub fn push(&mut self, event: &EventRecord<'_>) {
        if self.closed {
            return;
        }
        match &mut self.sink {
            Sink::Json { buf, first } => {
                if !*first {
                    buf.0.put_u8(b',');
                }
                *first = false;
                buf.0.put_slice(br#"{"timestamp":""#);
                write_timestamp(&mut buf.0, event.occurred_at);
                buf.0.put_slice(br#"","authMethodType":"#);
                write_json_str(buf, event.auth_method_type);
                buf.0.put_slice(br#","authMethodName":"#);
                write_json_str(buf, event.auth_method_name);
                buf.0.put_slice(br#","authRequestOrigin":"#);
                write_json_str(buf, event.auth_request_origin);
                buf.0.put_slice(br#","userId":""#);
                buf.0.put_slice(event.user.as_bytes());
                buf.0.put_slice(br#""}"#);
            }
            Sink::Csv(csv) => {
                let (ts, len) = encode_timestamp(event.occurred_at);
                let record: [&[u8]; 5] = [
                    &ts[..len],
                    event.auth_method_type.as_bytes(),
                    event.auth_method_name.as_bytes(),
                    event.auth_request_origin.as_bytes(),
                    event.user.as_bytes(),
                ];
                // Writing into memory cannot fail and every record has five fields, so
                // neither call can return an error. Flushing moves the row out of the
                // writer's staging buffer so that `buffered` is exact.
                let _ = csv.writer.write_record(record);
                let _ = csv.writer.flush();
            }
        }
    }

    /// Returns the number of bytes encoded but not yet taken.
    pub fn buffered(&self) -> usize {
        match &self.sink {
            Sink::Json { buf, .. } => buf.0.len(),
            Sink::Csv(csv) => csv.writer.get_ref().0.len(),
        }
    }

    /// Splits off everything buffered so far as one chunk (which may be empty).
    pub fn take(&mut self) -> Bytes {
        match &mut self.sink {
            Sink::Json { buf, .. } => {
                let chunk = buf.0.split().freeze();
                buf.0.reserve(CHUNK_CAPACITY);
                chunk
            }
            Sink::Csv(csv) => {
                let fresh = csv
                    .builder
                    .from_writer(BytesWriter(BytesMut::with_capacity(CHUNK_CAPACITY)));
                let old = std::mem::replace(&mut csv.writer, fresh);
                match old.into_inner() {
                    Ok(BytesWriter(buf)) => buf.freeze(),
                    // Unreachable: flushing into memory cannot fail. Keep the old writer
                    // (and its bytes) rather than losing them.
                    Err(err) => {
                        csv.writer = err.into_inner();
                        Bytes::new()
                    }
                }
            }
        }
    }

    /// Writes the end of the body: `]}` for JSON, nothing for CSV.
    pub fn finish(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Sink::Json { buf, .. } = &mut self.sink {
            buf.0.put_slice(b"]}");
        }
    }

    /// Records a failure that happened after the first byte was sent.
    ///
    /// JSON: closes the events array and appends
    /// `,"error":{"error":"server_error","error_description":<description>}}` so that the body
    /// stays valid JSON, and returns `true`. CSV cannot express the failure, so nothing is
    /// written and `false` is returned: the caller must abort the transfer so that the client
    /// sees a truncated body. Also returns `false` if the body was already finished.
    pub fn fail(&mut self, description: &str) -> bool {
        if self.closed {
            return false;
        }
        self.closed = true;
        match &mut self.sink {
            Sink::Json { buf, .. } => {
                buf.0
                    .put_slice(br#"],"error":{"error":"server_error","error_description":"#);
                write_json_str(buf, description);
                buf.0.put_slice(b"}}");
                true
            }
            Sink::Csv(_) => false,
        }
    }
}

/// Writes `s` as a quoted, escaped JSON string.
fn write_json_str(buf: &mut BytesWriter, s: &str) {
    // Serialising a string into a `BytesWriter` (which never fails) cannot fail.
    let _ = serde_json::to_writer(buf, s);
}

/// The longest timestamp: `+262143-12-31T23:59:60.999999` (29 bytes).
const TIMESTAMP_MAX: usize = 32;

/// Writes `value` as decimal digits, zero-padded to `width`, into `out` at `*at`.
fn put_digits(out: &mut [u8; TIMESTAMP_MAX], at: &mut usize, mut value: u32, width: usize) {
    let mut tmp = [b'0'; 10];
    let mut n = 0;
    while value > 0 || n < width {
        tmp[n] = b'0' + (value % 10) as u8;
        value /= 10;
        n += 1;
    }
    for &digit in tmp[..n].iter().rev() {
        out[*at] = digit;
        *at += 1;
    }
}

/// Formats `ts` into a stack buffer and returns it with its length.
fn encode_timestamp(ts: DateTime<Utc>) -> ([u8; TIMESTAMP_MAX], usize) {
    let mut out = [0u8; TIMESTAMP_MAX];
    let mut at = 0;
    let date = ts.date_naive();
    let time = ts.time();
    let year = date.year();
    if year > 9999 {
        out[at] = b'+';
        at += 1;
    } else if year < 0 {
        out[at] = b'-';
        at += 1;
    }
    put_digits(&mut out, &mut at, year.unsigned_abs(), 4);
    out[at] = b'-';
    at += 1;
    put_digits(&mut out, &mut at, date.month(), 2);
    out[at] = b'-';
    at += 1;
    put_digits(&mut out, &mut at, date.day(), 2);
    out[at] = b'T';
    at += 1;
    put_digits(&mut out, &mut at, time.hour(), 2);
    out[at] = b':';
    at += 1;
    put_digits(&mut out, &mut at, time.minute(), 2);
    out[at] = b':';
    at += 1;
    // chrono represents a leap second as nanoseconds >= 1e9 within second 59.
    let nanos = time.nanosecond();
    let leap = u32::from(nanos >= 1_000_000_000);
    put_digits(&mut out, &mut at, time.second() + leap, 2);
    let mut micros = (nanos % 1_000_000_000) / 1_000;
    if micros != 0 {
        let mut width = 6;
        while micros % 10 == 0 {
            micros /= 10;
            width -= 1;
        }
        out[at] = b'.';
        at += 1;
        put_digits(&mut out, &mut at, micros, width);
    }
    (out, at)
}

/// Writes `ts` as `YYYY-MM-DDTHH:MM:SS[.ffffff]` (UTC, no zone suffix).
///
/// The fraction appears only when non-zero, is truncated to microseconds and has its
/// trailing zeros removed. Years outside 0000..=9999 get a sign, as in ISO 8601.
pub fn write_timestamp(out: &mut impl BufMut, ts: DateTime<Utc>) {
    let (bytes, len) = encode_timestamp(ts);
    out.put_slice(&bytes[..len]);
}

/// Returns `ts` formatted as by [`write_timestamp`].
pub fn format_timestamp(ts: DateTime<Utc>) -> String {
    let (bytes, len) = encode_timestamp(ts);
    bytes[..len].iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pseudonym::Pseudonymiser;
    use chrono::{NaiveDate, TimeZone};
    use serde_json::{json, Value};

    fn links() -> NavigationLinks {
        NavigationLinks {
            self_link: "http://h/api/v1/statistics/events/day/2021-04-10".into(),
            prev: "http://h/api/v1/statistics/events/day/2021-04-09".into(),
            next: "http://h/api/v1/statistics/events/day/2021-04-11".into(),
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
        kind: String,
        name: String,
        origin: String,
        user: Pseudonym,
    }

    fn rows(values: &[(&str, &str, &str)]) -> Vec<Row> {
        let p = Pseudonymiser::new(b"k").unwrap();
        values
            .iter()
            .enumerate()
            .map(|(i, (kind, name, origin))| Row {
                at: ts(
                    2021,
                    4,
                    10,
                    0,
                    (i / 60 % 60) as u32,
                    (i % 60) as u32,
                    (i % 1000) as u32 * 1_000_000,
                ),
                kind: kind.to_string(),
                name: name.to_string(),
                origin: origin.to_string(),
                user: p.pseudonymise(&format!("user-{i}")),
            })
            .collect()
    }

    fn encode(format: OutputFormat, rows: &[Row], take_every_row: bool) -> Vec<u8> {
        let mut enc = EventEncoder::new(format, &links());
        let mut body = Vec::new();
        for r in rows {
            enc.push(&EventRecord {
                occurred_at: r.at,
                auth_method_type: &r.kind,
                auth_method_name: &r.name,
                auth_request_origin: &r.origin,
                user: &r.user,
            });
            if take_every_row {
                body.extend_from_slice(&enc.take());
                assert_eq!(enc.buffered(), 0);
            }
        }
        enc.finish();
        body.extend_from_slice(&enc.take());
        body
    }

    fn links_json() -> Value {
        json!({
            "self": "http://h/api/v1/statistics/events/day/2021-04-10",
            "prev": "http://h/api/v1/statistics/events/day/2021-04-09",
            "next": "http://h/api/v1/statistics/events/day/2021-04-11",
        })
    }

    fn expected_json_events(rows: &[Row]) -> Value {
        Value::Array(
            rows.iter()
                .map(|r| {
                    json!({
                        "timestamp": format_timestamp(r.at),
                        "authMethodType": r.kind,
                        "authMethodName": r.name,
                        "authRequestOrigin": r.origin,
                        "userId": r.user.as_str(),
                    })
                })
                .collect(),
        )
    }

    const TRICKY: &[(&str, &str, &str)] = &[
        ("password", "a,b", "say \"hi\""),
        ("cr\rhere", "lf\nhere", "crlf\r\nhere"),
        ("tab\there", "Müller, Jörg 東京", "emoji 🦀🎉"),
        ("ctrl\u{1}x", "back\\slash", ""),
        ("\"", ",", "\u{7f}\u{2028}"),
        (" leading and trailing ", "=1+1", "'"),
    ];

    #[test]
    fn empty_json_window() {
        for take_every_row in [false, true] {
            let body = encode(OutputFormat::Json, &[], take_every_row);
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v, json!({ "links": links_json(), "events": [] }));
        }
        let body = encode(OutputFormat::Json, &[], false);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"links":{"self":"http://h/api/v1/statistics/events/day/2021-04-10","prev":"http://h/api/v1/statistics/events/day/2021-04-09","next":"http://h/api/v1/statistics/events/day/2021-04-11"},"events":[]}"#
        );
    }

    #[test]
    fn json_rows_round_trip() {
        let three = rows(&[
            ("password", "ldap", "web"),
            ("otp", "totp", "vpn"),
            ("saml", "idp", "sso"),
        ]);
        let tricky = rows(TRICKY);
        for rows in [&three, &tricky] {
            for take_every_row in [false, true] {
                let body = encode(OutputFormat::Json, rows, take_every_row);
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(
                    v,
                    json!({ "links": links_json(), "events": expected_json_events(rows) })
                );
            }
        }
        // Key order and layout of one object.
        let body = encode(OutputFormat::Json, &three[..1], false);
        let text = std::str::from_utf8(&body).unwrap();
        let expected = format!(
            r#""events":[{{"timestamp":"2021-04-10T00:00:00","authMethodType":"password","authMethodName":"ldap","authRequestOrigin":"web","userId":"{}"}}]}}"#,
            three[0].user.as_str()
        );
        assert!(text.ends_with(&expected), "{text}");
        // Non-ASCII passes through unescaped; control characters are escaped.
        let body = encode(OutputFormat::Json, &tricky, false);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains("Müller, Jörg 東京") && text.contains("🦀"));
        assert!(
            text.contains(r"ctrl\u0001x")
                && text.contains(r"cr\rhere")
                && text.contains(r"tab\there")
        );
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
    fn csv_header_only_when_empty() {
        for take_every_row in [false, true] {
            let body = encode(OutputFormat::Csv, &[], take_every_row);
            assert_eq!(body, format!("{CSV_HEADER}\r\n").into_bytes());
            let (header, records) = parse_csv(&body);
            assert_eq!(header.len(), 5);
            assert_eq!(header[0], "Timestamp");
            assert_eq!(header[4], "Pseudonymised User ID");
            assert!(records.is_empty());
        }
    }

    #[test]
    fn csv_rows_round_trip() {
        let three = rows(&[
            ("password", "ldap", "web"),
            ("otp", "totp", "vpn"),
            ("saml", "idp", "sso"),
        ]);
        let tricky = rows(TRICKY);
        for rows in [&three, &tricky] {
            for take_every_row in [false, true] {
                let body = encode(OutputFormat::Csv, rows, take_every_row);
                let (header, records) = parse_csv(&body);
                assert_eq!(header.join(","), CSV_HEADER);
                let expected: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            format_timestamp(r.at),
                            r.kind.clone(),
                            r.name.clone(),
                            r.origin.clone(),
                            r.user.as_str().to_string(),
                        ]
                    })
                    .collect();
                assert_eq!(records, expected);
            }
        }
        let body = encode(OutputFormat::Csv, &three, false);
        let text = std::str::from_utf8(&body).unwrap();
        // Every line ends with CRLF, and there are no bare LFs.
        assert!(text.ends_with("\r\n"));
        assert_eq!(text.matches("\r\n").count(), 4);
        assert_eq!(text.matches('\n').count(), 4);
        assert!(text.starts_with(&format!(
            "{CSV_HEADER}\r\n2021-04-10T00:00:00,password,ldap,web,"
        )));
        // Quoting: only fields that need it, with quotes doubled.
        let body = encode(OutputFormat::Csv, &tricky[..1], false);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains(r#",password,"a,b","say ""hi""","#), "{text}");
    }

    #[test]
    fn fail_keeps_json_valid() {
        let rs = rows(&[("password", "ldap", "web"), ("otp", "totp", "vpn")]);
        let mut enc = EventEncoder::new(OutputFormat::Json, &links());
        let mut body = enc.take().to_vec();
        for r in &rs {
            enc.push(&EventRecord {
                occurred_at: r.at,
                auth_method_type: &r.kind,
                auth_method_name: &r.name,
                auth_request_origin: &r.origin,
                user: &r.user,
            });
        }
        assert!(enc.fail("database \"connection\" lost\n"));
        // Later calls change nothing.
        enc.finish();
        assert!(!enc.fail("again"));
        enc.push(&EventRecord {
            occurred_at: rs[0].at,
            auth_method_type: "x",
            auth_method_name: "x",
            auth_request_origin: "x",
            user: &rs[0].user,
        });
        body.extend_from_slice(&enc.take());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["error"], "server_error");
        assert_eq!(
            v["error"]["error_description"],
            "database \"connection\" lost\n"
        );
        assert_eq!(v["events"], expected_json_events(&rs));
        assert_eq!(v["links"], links_json());
    }

    #[test]
    fn fail_on_csv_asks_for_abort() {
        let mut enc = EventEncoder::new(OutputFormat::Csv, &links());
        let before = enc.buffered();
        assert!(!enc.fail("boom"));
        assert_eq!(enc.buffered(), before);
        enc.finish();
        assert_eq!(enc.take(), Bytes::from(format!("{CSV_HEADER}\r\n")));
    }

    #[test]
    fn take_drains_and_chunks_concatenate() {
        let many: Vec<(&str, &str, &str)> = (0..2000)
            .map(|_| ("password", "ldap, \"main\"", "web"))
            .collect();
        let rs = rows(&many);
        for format in [OutputFormat::Json, OutputFormat::Csv] {
            let mut enc = EventEncoder::new(format, &links());
            assert_eq!(enc.format(), format);
            assert!(enc.buffered() > 0);
            let mut chunks = Vec::new();
            for r in &rs {
                enc.push(&EventRecord {
                    occurred_at: r.at,
                    auth_method_type: &r.kind,
                    auth_method_name: &r.name,
                    auth_request_origin: &r.origin,
                    user: &r.user,
                });
                if enc.buffered() >= CHUNK_TARGET {
                    let chunk = enc.take();
                    assert!(chunk.len() >= CHUNK_TARGET);
                    assert_eq!(enc.buffered(), 0);
                    chunks.push(chunk);
                }
            }
            assert!(chunks.len() > 3, "{format:?}");
            enc.finish();
            chunks.push(enc.take());
            assert!(enc.take().is_empty());
            let body: Vec<u8> = chunks.concat();
            assert_eq!(body, encode(format, &rs, false), "{format:?}");
        }
    }

    #[test]
    fn timestamps() {
        let cases = [
            (ts(2021, 4, 10, 0, 0, 0, 0), "2021-04-10T00:00:00"),
            (
                ts(2021, 4, 10, 0, 0, 20, 123_000_000),
                "2021-04-10T00:00:20.123",
            ),
            (
                ts(2021, 4, 10, 0, 0, 20, 1_000),
                "2021-04-10T00:00:20.000001",
            ),
            (
                ts(2021, 4, 10, 0, 0, 20, 123_450_000),
                "2021-04-10T00:00:20.12345",
            ),
            (
                ts(2021, 4, 10, 0, 0, 20, 100_000_000),
                "2021-04-10T00:00:20.1",
            ),
            (
                ts(2024, 2, 29, 23, 59, 59, 999_999_000),
                "2024-02-29T23:59:59.999999",
            ),
            // Sub-microsecond nanoseconds are truncated, not rounded.
            (
                ts(2024, 2, 29, 23, 59, 59, 999_999_999),
                "2024-02-29T23:59:59.999999",
            ),
            (ts(2021, 4, 10, 0, 0, 20, 999), "2021-04-10T00:00:20"),
            (
                ts(2021, 4, 10, 0, 0, 20, 1_999),
                "2021-04-10T00:00:20.000001",
            ),
            (ts(1, 1, 1, 0, 0, 0, 0), "0001-01-01T00:00:00"),
            (ts(9999, 12, 31, 23, 59, 59, 0), "9999-12-31T23:59:59"),
            (ts(12345, 1, 2, 3, 4, 5, 0), "+12345-01-02T03:04:05"),
            (ts(-44, 3, 15, 12, 0, 0, 0), "-0044-03-15T12:00:00"),
            // A chrono leap second.
            (
                ts(2016, 12, 31, 23, 59, 59, 1_500_000_000),
                "2016-12-31T23:59:60.5",
            ),
        ];
        for (t, expected) in cases {
            assert_eq!(format_timestamp(t), expected);
            let mut buf = BytesMut::new();
            write_timestamp(&mut buf, t);
            assert_eq!(&buf[..], expected.as_bytes());
        }
        let t = Utc.with_ymd_and_hms(2021, 4, 10, 0, 0, 20).unwrap();
        assert_eq!(format_timestamp(t), "2021-04-10T00:00:20");
        let extremes = [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC];
        for t in extremes {
            assert!(format_timestamp(t).len() <= TIMESTAMP_MAX);
        }
    }

    proptest::proptest! {
        #[test]
        fn timestamps_match_chrono(secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let t = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
            let micros = nanos / 1_000 * 1_000;
            let reference = DateTime::<Utc>::from_timestamp(secs, micros).unwrap();
            let mut s = reference.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
            while s.ends_with('0') && s.contains('.') { s.pop(); }
            if s.ends_with('.') { s.pop(); }
            proptest::prop_assert_eq!(format_timestamp(t), s);
        }

        #[test]
        fn arbitrary_strings_round_trip(fields in proptest::collection::vec(("\\PC*|[,\"\r\n\t ]*", "\\PC*", ".*"), 0..8)) {
            let values: Vec<(&str, &str, &str)> = fields.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
            let rs = rows(&values);
            let v: Value = serde_json::from_slice(&encode(OutputFormat::Json, &rs, false)).unwrap();
            proptest::prop_assert_eq!(&v["events"], &expected_json_events(&rs));
            let (_, records) = parse_csv(&encode(OutputFormat::Csv, &rs, true));
            proptest::prop_assert_eq!(records.len(), rs.len());
            for (rec, r) in records.iter().zip(&rs) {
                proptest::prop_assert_eq!(&rec[1], &r.kind);
                proptest::prop_assert_eq!(&rec[2], &r.name);
                proptest::prop_assert_eq!(&rec[3], &r.origin);
            }
        }
    }
}

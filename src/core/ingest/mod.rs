//! Parsing ingest bodies (`POST /api/v1/events`) into validated events,
//! incrementally: the body is fed in chunks as they arrive and every complete
//! record is handed to a callback at once, so memory does not grow with the
//! body. Framework-free; the HTTP layer picks the [`IngestFormat`] and the
//! database layer writes what the callback receives.
//!
//! Three formats:
//! - [`IngestFormat::Ndjson`]: one JSON object per line (`\n` or `\r\n`);
//!   blank lines are skipped. Records are located by their 1-based physical
//!   line number (blank lines count).
//! - [`IngestFormat::JsonArray`]: one JSON array of objects, split element by
//!   element ([`json::ArrayParser`]). Records are located by their 1-based
//!   index in the array.
//! - [`IngestFormat::Csv`]: RFC 4180 with a header row naming the columns.
//!   Records are located by their 1-based data row (the header is row 0; a
//!   quoted field spanning several lines is still one row).
//!
//! Every record is checked the same way ([`Event`]): the required strings are
//! present and non-empty, at most [`MAX_TEXT_CHARS`] characters, without NUL;
//! `eventId` at most [`MAX_EVENT_ID_CHARS`]; `timestamp` is RFC 3339 with at
//! most microsecond precision. Unknown fields are rejected, so a misspelt
//! optional field (`eventID`) cannot silently turn retries into duplicates.
//!
//! Error messages name the record, the field and the rule, never a value: a
//! raw user ID must not come back in a response or reach a log line.

mod csv;
mod json;
mod repeats;

use std::{borrow::Cow, fmt};

use chrono::{DateTime, Timelike, Utc};

pub use self::json::ArrayParser;
pub use self::repeats::SeenIds;

/// Longest accepted value of the required string fields, in characters.
pub const MAX_TEXT_CHARS: usize = 1_000;
/// Longest accepted `eventId`, in characters.
pub const MAX_EVENT_ID_CHARS: usize = 200;
/// Largest accepted single record (an NDJSON line, a JSON array element or a
/// CSV row), in bytes, so that one endless record cannot exhaust memory.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Most fractional-second digits accepted in `timestamp` (microseconds, the
/// precision PostgreSQL stores).
pub const MAX_FRACTION_DIGITS: usize = 6;

/// The body formats `POST /api/v1/events` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestFormat {
    /// `application/x-ndjson`: one JSON object per line.
    Ndjson,
    /// `application/json`: a JSON array of objects.
    JsonArray,
    /// `text/csv`: RFC 4180 with a header row.
    Csv,
}

impl IngestFormat {
    /// The media types accepted, for error messages.
    pub const SUPPORTED: &'static str = "application/x-ndjson, application/json or text/csv";

    /// The format named by a `Content-Type` value; parameters such as
    /// `charset` are ignored and the media type is case-insensitive.
    pub fn from_content_type(value: &str) -> Option<IngestFormat> {
        let essence = value.split(';').next().unwrap_or_default().trim();
        [
            ("application/x-ndjson", IngestFormat::Ndjson),
            ("application/json", IngestFormat::JsonArray),
            ("text/csv", IngestFormat::Csv),
        ]
        .into_iter()
        .find(|(name, _)| essence.eq_ignore_ascii_case(name))
        .map(|(_, format)| format)
    }

    /// The canonical media type.
    pub fn media_type(self) -> &'static str {
        match self {
            IngestFormat::Ndjson => "application/x-ndjson",
            IngestFormat::JsonArray => "application/json",
            IngestFormat::Csv => "text/csv",
        }
    }
}

/// The fields of an ingested event, named as in JSON and in the CSV header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `timestamp`.
    Timestamp,
    /// `authMethodType`.
    AuthMethodType,
    /// `authMethodName`.
    AuthMethodName,
    /// `authRequestOrigin`.
    AuthRequestOrigin,
    /// `userId` (the raw identifier).
    UserId,
    /// `eventId` (optional).
    EventId,
}

/// The number of fields.
const FIELD_COUNT: usize = 6;

impl Field {
    /// Every field, in the order of [`Field::index`].
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::Timestamp,
        Field::AuthMethodType,
        Field::AuthMethodName,
        Field::AuthRequestOrigin,
        Field::UserId,
        Field::EventId,
    ];

    /// The name in JSON bodies and CSV headers.
    pub fn name(self) -> &'static str {
        match self {
            Field::Timestamp => "timestamp",
            Field::AuthMethodType => "authMethodType",
            Field::AuthMethodName => "authMethodName",
            Field::AuthRequestOrigin => "authRequestOrigin",
            Field::UserId => "userId",
            Field::EventId => "eventId",
        }
    }

    /// The field with this exact (case-sensitive) name.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }

    fn is_required(self) -> bool {
        self != Field::EventId
    }
}

/// The names of all fields, for error messages.
fn field_list() -> String {
    Field::ALL.map(Field::name).join(", ")
}

/// One validated event, borrowing its strings from the body it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// When the authentication happened.
    pub occurred_at: DateTime<Utc>,
    /// The type of authentication method, e.g. `PASSWORD`.
    pub auth_method_type: &'a str,
    /// The name of the authentication method.
    pub auth_method_name: &'a str,
    /// Where the authentication request came from.
    pub auth_request_origin: &'a str,
    /// The raw user identifier. Stored, never logged or echoed.
    pub user_id: &'a str,
    /// The client's unique ID of this event, when it sent one.
    pub event_id: Option<&'a str>,
}

/// Where in the body a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// The body as a whole (e.g. an empty body, or not a JSON array).
    Body,
    /// An NDJSON line, 1-based.
    Line(u64),
    /// A JSON array element, 1-based.
    Element(u64),
    /// The CSV header row.
    Header,
    /// A CSV data row, 1-based (the header is not counted).
    Row(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Body => f.write_str("the body"),
            Location::Line(n) => write!(f, "line {n}"),
            Location::Element(n) => write!(f, "array element {n}"),
            Location::Header => f.write_str("the CSV header row"),
            Location::Row(n) => write!(f, "CSV row {n}"),
        }
    }
}

/// A record (or the body) is invalid; nothing of the request may be stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {}{reason}", field.map(|f| format!("field `{}` ", f.name())).unwrap_or_default())]
pub struct RecordError {
    /// Which record.
    pub location: Location,
    /// Which field, when the problem is in one.
    pub field: Option<Field>,
    /// What is wrong, as a sentence fragment that never quotes a value.
    pub reason: Cow<'static, str>,
}

/// A problem found before its location is known.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Problem {
    field: Option<Field>,
    reason: Cow<'static, str>,
}

impl Problem {
    fn field(field: Field, reason: impl Into<Cow<'static, str>>) -> Problem {
        Problem {
            field: Some(field),
            reason: reason.into(),
        }
    }

    fn record(reason: impl Into<Cow<'static, str>>) -> Problem {
        Problem {
            field: None,
            reason: reason.into(),
        }
    }

    fn at(self, location: Location) -> RecordError {
        RecordError {
            location,
            field: self.field,
            reason: self.reason,
        }
    }
}

/// The raw field values of one record, by [`Field::index`].
type RawFields<'a> = [Option<Cow<'a, str>>; FIELD_COUNT];

/// Checks one record's raw fields and borrows them into an [`Event`].
fn validate<'a>(fields: &'a RawFields<'_>) -> Result<Event<'a>, Problem> {
    let text = |field: Field| -> Result<&'a str, Problem> {
        let value = fields[field.index()]
            .as_deref()
            .ok_or_else(|| Problem::field(field, "is missing"))?;
        check_text(field, value, MAX_TEXT_CHARS)
    };
    let timestamp = text(Field::Timestamp)?;
    let occurred_at =
        parse_timestamp(timestamp).map_err(|reason| Problem::field(Field::Timestamp, reason))?;
    let event_id = match fields[Field::EventId.index()].as_deref() {
        None => None,
        Some(id) => Some(check_text(Field::EventId, id, MAX_EVENT_ID_CHARS)?),
    };
    Ok(Event {
        occurred_at,
        auth_method_type: text(Field::AuthMethodType)?,
        auth_method_name: text(Field::AuthMethodName)?,
        auth_request_origin: text(Field::AuthRequestOrigin)?,
        user_id: text(Field::UserId)?,
        event_id,
    })
}

fn check_text(field: Field, value: &str, max_chars: usize) -> Result<&str, Problem> {
    if value.is_empty() {
        return Err(Problem::field(field, "must not be empty"));
    }
    // Characters never outnumber bytes: count only when the bytes could be too many.
    if value.len() > max_chars && value.chars().count() > max_chars {
        return Err(Problem::field(
            field,
            format!("is longer than {max_chars} characters"),
        ));
    }
    if value.as_bytes().contains(&0) {
        return Err(Problem::field(field, "must not contain NUL characters"));
    }
    Ok(value)
}

/// The longest timestamp text worth parsing
/// (`YYYY-MM-DDTHH:MM:SS.ffffff+HH:MM` is 32 bytes).
const MAX_TIMESTAMP_BYTES: usize = 40;

/// Parses an RFC 3339 timestamp (`T`, `t` or a space between date and time;
/// `Z` or a `±HH:MM` offset) or the same without an offset, which means UTC.
/// Fractional seconds may have at most [`MAX_FRACTION_DIGITS`] digits: more
/// would be silently truncated by the database, so they are rejected. Leap
/// seconds (`:60`) are rejected too.
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, &'static str> {
    const NOT_RFC3339: &str =
        "is not an RFC 3339 timestamp such as 2021-04-10T00:00:20.123Z (an offset may be omitted for UTC)";
    let bytes = text.as_bytes();
    if bytes.len() < 19 || bytes.len() > MAX_TIMESTAMP_BYTES {
        return Err(NOT_RFC3339);
    }
    let mut end = 19;
    if bytes.get(end) == Some(&b'.') {
        let digits = bytes[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(NOT_RFC3339);
        }
        if digits > MAX_FRACTION_DIGITS {
            return Err(
                "has more than 6 fractional digits (microseconds are the finest precision stored)",
            );
        }
        end += 1 + digits;
    }
    let parsed = if end == bytes.len() {
        // No offset: UTC. Append `Z` in a stack buffer rather than allocate.
        let mut buffer = [0u8; MAX_TIMESTAMP_BYTES + 1];
        buffer[..end].copy_from_slice(bytes);
        buffer[end] = b'Z';
        let with_zone = std::str::from_utf8(&buffer[..=end]).map_err(|_| NOT_RFC3339)?;
        DateTime::parse_from_rfc3339(with_zone)
    } else {
        DateTime::parse_from_rfc3339(text)
    }
    .map_err(|_| NOT_RFC3339)?;
    if parsed.nanosecond() >= 1_000_000_000 {
        return Err("is a leap second (:60), which cannot be stored");
    }
    Ok(parsed.with_timezone(&Utc))
}

/// An incremental parser of one request body in one [`IngestFormat`].
///
/// Feed it the body's chunks in order with [`IngestParser::feed`], then call
/// [`IngestParser::finish`]. Each valid event goes to `sink` together with its
/// 1-based sequence number in the body, as soon as its record is complete;
/// the first invalid record stops parsing with a [`RecordError`].
#[derive(Debug)]
pub struct IngestParser {
    inner: Inner,
    received: u64,
    /// The first bytes of the body, held until it is known whether they are
    /// a UTF-8 byte order mark (which is skipped); `None` once known.
    prefix: Option<Vec<u8>>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug)]
enum Inner {
    Ndjson(json::NdjsonParser),
    Array(json::ArrayParser),
    Csv(Box<csv::CsvParser>),
}

impl IngestParser {
    /// A parser for a body in `format`.
    pub fn new(format: IngestFormat) -> IngestParser {
        let inner = match format {
            IngestFormat::Ndjson => Inner::Ndjson(json::NdjsonParser::default()),
            IngestFormat::JsonArray => Inner::Array(json::ArrayParser::default()),
            IngestFormat::Csv => Inner::Csv(Box::default()),
        };
        IngestParser {
            inner,
            received: 0,
            prefix: Some(Vec::new()),
        }
    }

    /// Parses the next chunk of the body.
    pub fn feed<F>(&mut self, chunk: &[u8], sink: F) -> Result<(), RecordError>
    where
        F: FnMut(u64, &Event<'_>),
    {
        let Some(prefix) = &mut self.prefix else {
            return self.feed_inner(chunk, sink);
        };
        prefix.extend_from_slice(chunk);
        if prefix.len() < BOM.len() && BOM.starts_with(prefix) {
            return Ok(());
        }
        self.feed_prefix(sink)
    }

    /// Feeds the held first bytes, less a byte order mark.
    fn feed_prefix<F>(&mut self, sink: F) -> Result<(), RecordError>
    where
        F: FnMut(u64, &Event<'_>),
    {
        let prefix = self.prefix.take().unwrap_or_default();
        self.feed_inner(prefix.strip_prefix(BOM).unwrap_or(&prefix), sink)
    }

    fn feed_inner<F>(&mut self, chunk: &[u8], mut sink: F) -> Result<(), RecordError>
    where
        F: FnMut(u64, &Event<'_>),
    {
        let received = &mut self.received;
        let mut counted = |event: &Event<'_>| {
            *received += 1;
            sink(*received, event);
        };
        match &mut self.inner {
            Inner::Ndjson(p) => p.feed(chunk, &mut counted),
            Inner::Array(p) => p.feed(chunk, &mut counted),
            Inner::Csv(p) => p.feed(chunk, &mut counted),
        }
    }

    /// Ends the body: parses a last record without a line end and checks that
    /// the body is complete (a JSON array is closed, a CSV body has a header).
    pub fn finish<F>(&mut self, mut sink: F) -> Result<(), RecordError>
    where
        F: FnMut(u64, &Event<'_>),
    {
        if self.prefix.is_some() {
            self.feed_prefix(&mut sink)?;
        }
        let received = &mut self.received;
        let mut counted = |event: &Event<'_>| {
            *received += 1;
            sink(*received, event);
        };
        match &mut self.inner {
            Inner::Ndjson(p) => p.finish(&mut counted),
            Inner::Array(p) => p.finish(&mut counted),
            Inner::Csv(p) => p.finish(&mut counted),
        }
    }

    /// The number of valid events handed to the sink so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

/// Parses a whole body at once (for tests and small inputs): the events in
/// order, or the first error.
pub fn parse_all(format: IngestFormat, body: &[u8]) -> Result<Vec<OwnedEvent>, RecordError> {
    let mut events = Vec::new();
    let mut parser = IngestParser::new(format);
    let mut push = |_: u64, e: &Event<'_>| events.push(OwnedEvent::from(e));
    parser.feed(body, &mut push)?;
    parser.finish(&mut push)?;
    Ok(events)
}

/// An [`Event`] that owns its strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEvent {
    /// When the authentication happened.
    pub occurred_at: DateTime<Utc>,
    /// The type of authentication method.
    pub auth_method_type: String,
    /// The name of the authentication method.
    pub auth_method_name: String,
    /// Where the authentication request came from.
    pub auth_request_origin: String,
    /// The raw user identifier.
    pub user_id: String,
    /// The client's unique ID of this event.
    pub event_id: Option<String>,
}

impl From<&Event<'_>> for OwnedEvent {
    fn from(e: &Event<'_>) -> OwnedEvent {
        OwnedEvent {
            occurred_at: e.occurred_at,
            auth_method_type: e.auth_method_type.to_owned(),
            auth_method_name: e.auth_method_name.to_owned(),
            auth_request_origin: e.auth_request_origin.to_owned(),
            user_id: e.user_id.to_owned(),
            event_id: e.event_id.map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        use IngestFormat::*;
        for (value, format) in [
            ("application/x-ndjson", Some(Ndjson)),
            ("Application/X-NDJSON; charset=utf-8", Some(Ndjson)),
            ("application/json", Some(JsonArray)),
            (" application/json ;charset=UTF-8", Some(JsonArray)),
            ("text/csv; header=present", Some(Csv)),
            ("TEXT/CSV", Some(Csv)),
            ("text/plain", None),
            ("application/jsonx", None),
            ("", None),
        ] {
            assert_eq!(IngestFormat::from_content_type(value), format, "{value}");
        }
    }

    #[test]
    fn timestamps() {
        let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            parse_timestamp("2021-04-10T00:00:20.123Z"),
            Ok(utc("2021-04-10T00:00:20.123Z"))
        );
        assert_eq!(
            parse_timestamp("2021-04-10T00:00:20.123456"),
            Ok(utc("2021-04-10T00:00:20.123456Z"))
        );
        assert_eq!(
            parse_timestamp("2021-04-10T02:00:20+02:00"),
            Ok(utc("2021-04-10T00:00:20Z"))
        );
        assert_eq!(
            parse_timestamp("2021-04-10 00:00:20"),
            Ok(utc("2021-04-10T00:00:20Z"))
        );
        assert_eq!(
            parse_timestamp("2021-04-09t23:00:20.5-01:00"),
            Ok(utc("2021-04-10T00:00:20.5Z"))
        );
        for bad in [
            "",
            "2021-04-10",
            "2021-04-10T00:00",
            "2021-04-10T00:00:20.1234567Z",
            "2021-04-10T00:00:20.1234567",
            "2021-04-10T00:00:20.",
            "2021-02-30T00:00:20Z",
            "2021-04-10T24:00:00Z",
            "2021-04-10T00:00:20+25:00",
            "2021-04-10T00:00:20 Z",
            "2021-04-10T00:00:20Zjunk",
            "2016-12-31T23:59:60Z",
            "10/04/2021 00:00:20",
            "2021-04-10T00:00:20.000000000000000000000000000000Z",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_timestamp("2021-04-10T00:00:20.1234567Z")
            .unwrap_err()
            .contains("6 fractional digits"));
    }

    fn fields(values: [Option<&str>; FIELD_COUNT]) -> RawFields<'_> {
        values.map(|v| v.map(Cow::Borrowed))
    }

    const GOOD: [Option<&str>; FIELD_COUNT] = [
        Some("2021-04-10T00:00:20Z"),
        Some("PASSWORD"),
        Some("password.1"),
        Some("CN=Appl-1"),
        Some("alice@example.com"),
        None,
    ];

    #[test]
    fn validation_names_the_field() {
        let raw = fields(GOOD);
        let event = validate(&raw).unwrap();
        assert_eq!(event.user_id, "alice@example.com");
        assert_eq!(event.event_id, None);

        let mut missing = GOOD;
        missing[Field::UserId.index()] = None;
        let problem = validate(&fields(missing)).unwrap_err();
        assert_eq!(problem, Problem::field(Field::UserId, "is missing"));

        let mut empty = GOOD;
        empty[Field::AuthMethodName.index()] = Some("");
        assert_eq!(
            validate(&fields(empty)).unwrap_err().field,
            Some(Field::AuthMethodName)
        );

        let long = "é".repeat(MAX_TEXT_CHARS + 1);
        let ok_long = "é".repeat(MAX_TEXT_CHARS);
        let mut too_long = GOOD;
        too_long[Field::AuthRequestOrigin.index()] = Some(&long);
        assert!(validate(&fields(too_long))
            .unwrap_err()
            .reason
            .contains("longer than 1000"));
        too_long[Field::AuthRequestOrigin.index()] = Some(&ok_long);
        assert!(validate(&fields(too_long)).is_ok());

        let id = "x".repeat(MAX_EVENT_ID_CHARS + 1);
        let mut long_id = GOOD;
        long_id[Field::EventId.index()] = Some(&id);
        assert_eq!(
            validate(&fields(long_id)).unwrap_err().field,
            Some(Field::EventId)
        );

        let mut nul = GOOD;
        nul[Field::UserId.index()] = Some("a\0b");
        assert!(validate(&fields(nul)).unwrap_err().reason.contains("NUL"));

        let mut bad_time = GOOD;
        bad_time[Field::Timestamp.index()] = Some("yesterday");
        assert_eq!(
            validate(&fields(bad_time)).unwrap_err().field,
            Some(Field::Timestamp)
        );
    }

    #[test]
    fn error_messages_name_record_and_field() {
        let error = Problem::field(Field::UserId, "is missing").at(Location::Line(3));
        assert_eq!(error.to_string(), "line 3: field `userId` is missing");
        let error = Problem::record("is not a JSON object").at(Location::Element(2));
        assert_eq!(error.to_string(), "array element 2: is not a JSON object");
        assert_eq!(Location::Row(4).to_string(), "CSV row 4");
    }

    #[test]
    fn values_never_appear_in_errors() {
        let secret = "secret-user@example.com";
        let bodies: [(IngestFormat, String); 6] = [
            (IngestFormat::Ndjson, format!(r#"{{"userId": 5, "x": "{secret}"}}"#)),
            (IngestFormat::Ndjson, format!(r#"{{"userId": ["{secret}"]}}"#)),
            (IngestFormat::Ndjson, format!(r#""{secret}""#)),
            (
                IngestFormat::Ndjson,
                format!(
                    r#"{{"timestamp":"{secret}","authMethodType":"a","authMethodName":"b","authRequestOrigin":"c","userId":"{secret}"}}"#
                ),
            ),
            (IngestFormat::JsonArray, format!(r#"[12345, "{secret}"]"#)),
            (
                IngestFormat::Csv,
                format!("timestamp,authMethodType,authMethodName,authRequestOrigin,userId\nx,a,b,c,{secret}\n"),
            ),
        ];
        for (format, body) in bodies {
            let error = parse_all(format, body.as_bytes()).unwrap_err().to_string();
            assert!(!error.contains(secret), "{error}");
            assert!(!error.contains("12345"), "{error}");
        }
    }
}

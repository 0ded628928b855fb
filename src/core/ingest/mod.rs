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
//! What a record holds is the kind's [`IngestSchema`] (its fields, each with
//! a [`FieldType`]); every record of every kind is checked the same way
//! ([`Record`]): required fields present, strings non-empty, at most their
//! length, without NUL; timestamps RFC 3339 with at most microsecond
//! precision; integers in range. Unknown fields are rejected, so a misspelt
//! optional field (`eventID`) cannot silently turn retries into duplicates.
//!
//! Error messages name the record, the field and the rule, never a value: a
//! raw user ID must not come back in a response or reach a log line.

mod csv;
mod json;
mod repeats;

use std::{borrow::Cow, fmt};

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::core::identity::IdentityType;

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

/// The SQL type of a column written by ingest (binary COPY needs the exact width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlType {
    /// `text`.
    Text,
    /// `timestamptz`.
    Timestamptz,
    /// `integer` (4 bytes).
    Int4,
    /// `bigint` (8 bytes).
    Int8,
}

impl SqlType {
    /// The type's name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            SqlType::Text => "text",
            SqlType::Timestamptz => "timestamptz",
            SqlType::Int4 => "integer",
            SqlType::Int8 => "bigint",
        }
    }
}

/// What a field accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A non-empty string without NUL, at most `max_chars` characters.
    Text,
    /// A personal identifier (a string, like `Text`), normalised for its
    /// type (MAC notation, IP text) before it is stored.
    Identity(IdentityType),
    /// One of these strings, exactly.
    OneOf(&'static [&'static str]),
    /// An RFC 3339 timestamp (see [`parse_timestamp`]).
    Timestamp,
    /// An RFC 3339 timestamp, or an integer of microseconds since
    /// 1970-01-01T00:00:00Z (a JSON number, or decimal digits).
    TimestampOrMicros,
    /// An integer within `min..=max` (a JSON number, or decimal digits).
    Integer {
        /// The smallest accepted value.
        min: i64,
        /// The largest accepted value.
        max: i64,
    },
}

/// One field of an ingested record: its name in JSON and CSV headers, the
/// column it is stored in, and its rule.
#[derive(Clone, Copy, Debug)]
pub struct IngestField {
    /// The name in JSON objects and CSV headers.
    pub name: &'static str,
    /// The column it is stored in.
    pub column: &'static str,
    /// The column's SQL type.
    pub sql: SqlType,
    /// What it accepts.
    pub ty: FieldType,
    /// Whether every record must have it (else absent or `null` means none).
    pub required: bool,
    /// Longest accepted string, in characters.
    pub max_chars: usize,
}

impl IngestField {
    /// A required text field of at most [`MAX_TEXT_CHARS`] characters.
    pub const fn text(name: &'static str, column: &'static str) -> IngestField {
        IngestField {
            name,
            column,
            sql: SqlType::Text,
            ty: FieldType::Text,
            required: true,
            max_chars: MAX_TEXT_CHARS,
        }
    }

    /// A field of another type.
    pub const fn of(
        name: &'static str,
        column: &'static str,
        sql: SqlType,
        ty: FieldType,
    ) -> IngestField {
        IngestField {
            ty,
            sql,
            ..IngestField::text(name, column)
        }
    }

    /// The producer's optional `eventId` (retries of a stored one are
    /// skipped), at most [`MAX_EVENT_ID_CHARS`] characters, as every kind
    /// names it.
    pub const fn event_id(column: &'static str) -> IngestField {
        IngestField::text(EVENT_ID, column)
            .optional()
            .max_chars(MAX_EVENT_ID_CHARS)
    }

    /// The same field, optional.
    pub const fn optional(self) -> IngestField {
        IngestField {
            required: false,
            ..self
        }
    }

    /// The same field, at most `max_chars` characters long.
    pub const fn max_chars(self, max_chars: usize) -> IngestField {
        IngestField { max_chars, ..self }
    }
}

/// How one kind is ingested: its table and fields (in COPY column order).
/// The time field (the one of type [`FieldType::Timestamp`] or
/// [`FieldType::TimestampOrMicros`]) and the client's `eventId` field are
/// found by [`IngestSchema::new`] when the program is compiled: a schema
/// without exactly one of each does not compile.
#[derive(Debug)]
pub struct IngestSchema {
    /// The table.
    pub table: &'static str,
    /// The fields, at most [`MAX_FIELDS`].
    pub fields: &'static [IngestField],
    /// Record the pseudonyms of identity fields in the identity directory
    /// (so listings can be narrowed by them).
    pub record_identities: bool,
    /// The column holding each record's organization (issue 28): written
    /// by ingest for a token of an organization other than the default one
    /// (the column's default); `eventId`s are then unique per organization.
    pub tenant: Option<&'static str>,
    time: usize,
    event_id: usize,
}

impl IngestSchema {
    /// The schema of `fields` stored in `table`, not recording identities.
    ///
    /// # Panics
    /// At compile time (in a `static`), unless exactly one field is a
    /// timestamp and one is called `eventId`, and there are at most
    /// [`MAX_FIELDS`].
    pub const fn new(table: &'static str, fields: &'static [IngestField]) -> IngestSchema {
        assert!(fields.len() <= MAX_FIELDS, "too many ingest fields");
        let (mut time, mut event_id) = (None, None);
        let mut i = 0;
        while i < fields.len() {
            if matches!(
                fields[i].ty,
                FieldType::Timestamp | FieldType::TimestampOrMicros
            ) {
                assert!(time.is_none(), "two timestamp fields");
                time = Some(i);
            }
            if same(fields[i].name, EVENT_ID) {
                assert!(event_id.is_none(), "two eventId fields");
                event_id = Some(i);
            }
            i += 1;
        }
        let (Some(time), Some(event_id)) = (time, event_id) else {
            panic!("an ingest schema needs a timestamp field and an eventId field");
        };
        IngestSchema {
            table,
            fields,
            record_identities: false,
            tenant: None,
            time,
            event_id,
        }
    }

    /// The same schema, its records' organization in `column`.
    pub const fn with_tenant(self, column: &'static str) -> IngestSchema {
        IngestSchema {
            tenant: Some(column),
            ..self
        }
    }

    /// The same schema, recording the pseudonyms of its identity fields in
    /// the identity directory.
    pub const fn recording_identities(self) -> IngestSchema {
        IngestSchema {
            record_identities: true,
            ..self
        }
    }

    /// The index of the time field (records are replayed in its order).
    pub fn time(&self) -> usize {
        self.time
    }

    /// The index of the optional `eventId` field.
    pub fn event_id(&self) -> usize {
        self.event_id
    }

    /// The index of the field called exactly `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The names of all fields, for error messages.
    pub fn field_list(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The field a record of a schema with organizations may name its
/// organization in (it is not stored: the writer's organization is).
pub const TENANT_FIELD: &str = "tenant";

/// The name of the client's unique id of a record, in every kind.
const EVENT_ID: &str = "eventId";

/// Whether `a` and `b` are the same string (`==` is not `const`).
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The most fields a kind's record may have.
pub const MAX_FIELDS: usize = 40;

/// A field's value as the body gave it, before validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Raw<'a> {
    /// A string (borrowed from the body when it had no escapes).
    Str(Cow<'a, str>),
    /// A JSON integer.
    Int(i64),
}

/// One validated value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// Absent (an optional field).
    Null,
    /// A string (text, identity or one of a list).
    Text(&'a str),
    /// An integer.
    Integer(i64),
    /// A point in time.
    Time(DateTime<Utc>),
}

/// One validated record, borrowing its strings from the body it was read from.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The kind's schema.
    pub schema: &'static IngestSchema,
    /// The values, in the schema's field order (then `Null`).
    pub values: [Value<'a>; MAX_FIELDS],
    /// The organization the record names (its field `tenant`, for a schema
    /// with organizations), when it names one: it must be the writer's.
    pub tenant: Option<&'a str>,
}

impl<'a> Record<'a> {
    /// The record's time.
    pub fn time(&self) -> DateTime<Utc> {
        match self.values[self.schema.time()] {
            Value::Time(t) => t,
            _ => DateTime::<Utc>::MIN_UTC,
        }
    }

    /// The client's unique ID of the record, when it sent one.
    pub fn event_id(&self) -> Option<&'a str> {
        match self.values[self.schema.event_id()] {
            Value::Text(id) => Some(id),
            _ => None,
        }
    }

    /// The value of the field called `name` (`Null` when there is none).
    pub fn get(&self, name: &str) -> Value<'a> {
        self.schema
            .index(name)
            .map_or(Value::Null, |i| self.values[i])
    }

    /// The text of the field called `name`, if it has one.
    pub fn text(&self, name: &str) -> Option<&'a str> {
        match self.get(name) {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }
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
    /// A record of the body, 1-based, whatever its format.
    Record(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Body => f.write_str("the body"),
            Location::Line(n) => write!(f, "line {n}"),
            Location::Element(n) => write!(f, "array element {n}"),
            Location::Header => f.write_str("the CSV header row"),
            Location::Row(n) => write!(f, "CSV row {n}"),
            Location::Record(n) => write!(f, "record {n}"),
        }
    }
}

/// A record (or the body) is invalid; nothing of the request may be stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {}{reason}", field.map(|f| format!("field `{f}` ")).unwrap_or_default())]
pub struct RecordError {
    /// Which record.
    pub location: Location,
    /// Which field, when the problem is in one.
    pub field: Option<&'static str>,
    /// What is wrong, as a sentence fragment that never quotes a value.
    pub reason: Cow<'static, str>,
    /// The record names another organization than the writer's (a 403,
    /// not a 400: the request is not malformed, the token may not).
    pub other_tenant: bool,
}

/// A problem found before its location is known.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Problem {
    field: Option<&'static str>,
    reason: Cow<'static, str>,
}

impl Problem {
    fn field(field: &IngestField, reason: impl Into<Cow<'static, str>>) -> Problem {
        Problem {
            field: Some(field.name),
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
            other_tenant: false,
        }
    }
}

/// The raw field values of one record, by field index (`None`: absent or null).
type RawFields<'a> = [Option<Raw<'a>>; MAX_FIELDS];

fn no_fields<'a>() -> RawFields<'a> {
    std::array::from_fn(|_| None)
}

/// Microseconds since 1970 of 0001-01-01T00:00:00Z and of 9999-12-31T23:59:59.999999Z.
const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Checks one record's raw fields and borrows them into a [`Record`].
fn validate<'a>(
    schema: &'static IngestSchema,
    fields: &'a RawFields<'_>,
) -> Result<Record<'a>, Problem> {
    let mut values = [Value::Null; MAX_FIELDS];
    for (i, field) in schema.fields.iter().enumerate() {
        let Some(raw) = &fields[i] else {
            if field.required {
                return Err(Problem::field(field, "is missing"));
            }
            continue;
        };
        values[i] = check(field, raw)?;
    }
    Ok(Record {
        schema,
        values,
        tenant: None,
    })
}

fn check<'a>(field: &IngestField, raw: &'a Raw<'_>) -> Result<Value<'a>, Problem> {
    let integer = |text: &str| -> Option<i64> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        (!digits.is_empty() && digits.len() <= 19 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (field.ty, raw) {
        (FieldType::Identity(IdentityType::Mac), Raw::Str(text)) => {
            let text = check_text(field, text)?;
            match crate::core::identity::parse_mac(text) {
                Some(_) => Ok(Value::Text(text)),
                None => Err(Problem::field(
                    field,
                    "is not a MAC address (six hex pairs separated by : or -, or 12 hex digits)",
                )),
            }
        }
        (FieldType::Identity(IdentityType::Ip), Raw::Str(text)) => {
            let text = check_text(field, text)?;
            match text.parse::<std::net::IpAddr>() {
                Ok(_) => Ok(Value::Text(text)),
                Err(_) => Err(Problem::field(field, "is not an IPv4 or IPv6 address")),
            }
        }
        (FieldType::Text | FieldType::Identity(_), Raw::Str(text)) => {
            Ok(Value::Text(check_text(field, text)?))
        }
        (FieldType::OneOf(allowed), Raw::Str(text)) => {
            if allowed.contains(&text.as_ref()) {
                Ok(Value::Text(text))
            } else {
                Err(Problem::field(
                    field,
                    format!("must be one of {}", allowed.join(", ")),
                ))
            }
        }
        (FieldType::Timestamp | FieldType::TimestampOrMicros, Raw::Str(text)) => {
            if field.ty == FieldType::TimestampOrMicros {
                if let Some(micros) = integer(text) {
                    return micros_to_time(field, micros);
                }
            }
            parse_timestamp(text)
                .map(Value::Time)
                .map_err(|reason| Problem::field(field, reason))
        }
        (FieldType::TimestampOrMicros, Raw::Int(micros)) => micros_to_time(field, *micros),
        (FieldType::Integer { min, max }, raw) => {
            let value = match raw {
                Raw::Int(n) => Some(*n),
                Raw::Str(text) => integer(text),
            };
            match value {
                Some(n) if (min..=max).contains(&n) => Ok(Value::Integer(n)),
                Some(_) => Err(Problem::field(
                    field,
                    format!("must be an integer from {min} to {max}"),
                )),
                None => Err(Problem::field(field, "must be an integer")),
            }
        }
        (_, Raw::Int(_)) => Err(Problem::field(field, "must be a string, not a number")),
    }
}

fn micros_to_time<'a>(field: &IngestField, micros: i64) -> Result<Value<'a>, Problem> {
    if !(MIN_MICROS..=MAX_MICROS).contains(&micros) {
        return Err(Problem::field(
            field,
            "is outside the years 0001 to 9999 (microseconds since 1970-01-01T00:00:00Z)",
        ));
    }
    DateTime::from_timestamp_micros(micros)
        .map(Value::Time)
        .ok_or_else(|| Problem::field(field, "is not a valid time"))
}

fn check_text<'a>(field: &IngestField, value: &'a str) -> Result<&'a str, Problem> {
    let max_chars = field.max_chars;
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
    let utc = parsed.with_timezone(&Utc);
    // Windows, reports and the rollups serve the years 0001 to 9999 (UTC):
    // a time outside them could be stored but never served.
    if !(1..=9999).contains(&utc.year()) {
        return Err("is outside the years 0001 to 9999 (UTC), which windows and reports serve");
    }
    Ok(utc)
}

/// An incremental parser of one request body in one [`IngestFormat`].
///
/// Feed it the body's chunks in order with [`IngestParser::feed`], then call
/// [`IngestParser::finish`]. Each valid event goes to `sink` together with its
/// 1-based sequence number in the body, as soon as its record is complete;
/// the first invalid record stops parsing with a [`RecordError`].
#[derive(Debug)]
pub struct IngestParser {
    schema: &'static IngestSchema,
    /// The organization the records are written to: a record whose
    /// `tenant` names another stops the parse ([`RecordError::other_tenant`]).
    tenant: String,
    /// The first record (its number) that named another organization.
    other_tenant: Option<u64>,
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
    /// A parser for a body of `schema`'s records in `format`.
    pub fn new(schema: &'static IngestSchema, format: IngestFormat) -> IngestParser {
        let inner = match format {
            IngestFormat::Ndjson => Inner::Ndjson(json::NdjsonParser::default()),
            IngestFormat::JsonArray => Inner::Array(json::ArrayParser::default()),
            IngestFormat::Csv => Inner::Csv(Box::default()),
        };
        IngestParser {
            schema,
            tenant: crate::core::tenant::DEFAULT_TENANT.to_owned(),
            other_tenant: None,
            inner,
            received: 0,
            prefix: Some(Vec::new()),
        }
    }

    /// The same parser for records written to organization `tenant` (the
    /// writing token's; the default organization's otherwise).
    pub fn writing_to(mut self, tenant: &str) -> IngestParser {
        tenant.clone_into(&mut self.tenant);
        self
    }

    /// Parses the next chunk of the body.
    pub fn feed<F>(&mut self, chunk: &[u8], sink: F) -> Result<(), RecordError>
    where
        F: FnMut(u64, &Record<'_>),
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
        F: FnMut(u64, &Record<'_>),
    {
        let prefix = self.prefix.take().unwrap_or_default();
        self.feed_inner(prefix.strip_prefix(BOM).unwrap_or(&prefix), sink)
    }

    fn feed_inner<F>(&mut self, chunk: &[u8], mut sink: F) -> Result<(), RecordError>
    where
        F: FnMut(u64, &Record<'_>),
    {
        let mut counted = counting(
            &mut self.received,
            &self.tenant,
            &mut self.other_tenant,
            &mut sink,
        );
        let schema = self.schema;
        let parsed = match &mut self.inner {
            Inner::Ndjson(p) => p.feed(schema, chunk, &mut counted),
            Inner::Array(p) => p.feed(schema, chunk, &mut counted),
            Inner::Csv(p) => p.feed(schema, chunk, &mut counted),
        };
        drop(counted);
        self.refuse_other_tenant(parsed)
    }

    /// `parsed`, unless a record named another organization: then the
    /// error of that record (nothing of the request may be stored).
    fn refuse_other_tenant(&self, parsed: Result<(), RecordError>) -> Result<(), RecordError> {
        let Some(number) = self.other_tenant else {
            return parsed;
        };
        Err(RecordError {
            location: Location::Record(number),
            field: Some(TENANT_FIELD),
            reason: "names another organization than the token's".into(),
            other_tenant: true,
        })
    }

    /// Ends the body: parses a last record without a line end and checks that
    /// the body is complete (a JSON array is closed, a CSV body has a header).
    pub fn finish<F>(&mut self, mut sink: F) -> Result<(), RecordError>
    where
        F: FnMut(u64, &Record<'_>),
    {
        if self.prefix.is_some() {
            self.feed_prefix(&mut sink)?;
        }
        let mut counted = counting(
            &mut self.received,
            &self.tenant,
            &mut self.other_tenant,
            &mut sink,
        );
        let schema = self.schema;
        let parsed = match &mut self.inner {
            Inner::Ndjson(p) => p.finish(schema, &mut counted),
            Inner::Array(p) => p.finish(schema, &mut counted),
            Inner::Csv(p) => p.finish(schema, &mut counted),
        };
        drop(counted);
        self.refuse_other_tenant(parsed)
    }

    /// The schema of the records parsed.
    pub fn schema(&self) -> &'static IngestSchema {
        self.schema
    }

    /// The number of valid events handed to the sink so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

/// The sink the format parsers feed: numbers each record and hands it on
/// to `sink`, unless it (or one before it) names another organization
/// than `tenant`; `other` keeps the first such record's number.
fn counting<'s, F>(
    received: &'s mut u64,
    tenant: &'s str,
    other: &'s mut Option<u64>,
    sink: &'s mut F,
) -> impl FnMut(&Record<'_>) + 's
where
    F: FnMut(u64, &Record<'_>),
{
    move |event: &Record<'_>| {
        *received += 1;
        if other.is_none() && event.tenant.is_some_and(|named| named != tenant) {
            *other = Some(*received);
        }
        if other.is_none() {
            sink(*received, event);
        }
    }
}

/// Parses a whole body at once (for tests and small inputs): the records
/// in order, or the first error.
pub fn parse_all(
    schema: &'static IngestSchema,
    format: IngestFormat,
    body: &[u8],
) -> Result<Vec<OwnedRecord>, RecordError> {
    let mut records = Vec::new();
    let mut parser = IngestParser::new(schema, format);
    let mut push = |_: u64, r: &Record<'_>| records.push(OwnedRecord::from(r));
    parser.feed(body, &mut push)?;
    parser.finish(&mut push)?;
    Ok(records)
}

/// A [`Record`]'s values that owns its strings, by field name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRecord {
    /// `(field name, value)` of every field present.
    pub values: Vec<(&'static str, OwnedValue)>,
}

/// An owned [`Value`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedValue {
    /// A string.
    Text(String),
    /// An integer.
    Integer(i64),
    /// A point in time.
    Time(DateTime<Utc>),
}

impl OwnedRecord {
    /// The text of the field called `name`.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.values.iter().find_map(|(n, v)| match v {
            OwnedValue::Text(t) if *n == name => Some(t.as_str()),
            _ => None,
        })
    }

    /// The value of the field called `name`.
    pub fn get(&self, name: &str) -> Option<&OwnedValue> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl From<&Record<'_>> for OwnedRecord {
    fn from(r: &Record<'_>) -> OwnedRecord {
        let values = r
            .schema
            .fields
            .iter()
            .zip(r.values.iter())
            .filter_map(|(f, v)| {
                let value = match *v {
                    Value::Null => return None,
                    Value::Text(t) => OwnedValue::Text(t.to_owned()),
                    Value::Integer(n) => OwnedValue::Integer(n),
                    Value::Time(t) => OwnedValue::Time(t),
                };
                Some((f.name, value))
            })
            .collect();
        OwnedRecord { values }
    }
}

#[cfg(test)]
mod tests {
    const A: &crate::core::ingest::IngestSchema = &crate::kinds::auth::INGEST;
    use super::*;

    static FIELDS: [IngestField; 3] = [
        IngestField::event_id("id"),
        IngestField::text("name", "name"),
        IngestField::of("at", "at", SqlType::Timestamptz, FieldType::Timestamp),
    ];

    #[test]
    fn a_schema_finds_its_time_and_event_id_fields_by_type_and_name() {
        static S: IngestSchema = IngestSchema::new("thing", &FIELDS);
        assert_eq!((S.time(), S.event_id()), (2, 0));
        static T: IngestSchema = IngestSchema::new("thing", &FIELDS).with_tenant("tenant");
        assert_eq!(T.tenant, Some("tenant"));
        assert!(!S.record_identities);
        assert!(
            IngestSchema::new("thing", &FIELDS)
                .recording_identities()
                .record_identities
        );
    }

    #[test]
    #[should_panic(expected = "needs a timestamp field and an eventId field")]
    fn a_schema_without_an_event_id_is_refused() {
        IngestSchema::new("thing", &FIELDS[1..]);
    }

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
        // Issue 27, item 1: only the years 0001 to 9999, in UTC.
        for outside in [
            "0000-01-01T00:00:00Z",
            "0000-12-31T23:59:59.999999Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:30:00-01:00",
        ] {
            assert!(
                parse_timestamp(outside)
                    .unwrap_err()
                    .contains("outside the years 0001 to 9999"),
                "{outside:?}"
            );
        }
        assert!(parse_timestamp("0001-01-01T00:00:00Z").is_ok());
        assert!(parse_timestamp("9999-12-31T23:59:59.999999Z").is_ok());
        assert!(parse_timestamp("0001-01-01T01:00:00+01:00").is_ok());
    }

    fn fields(values: [Option<&str>; 6]) -> RawFields<'_> {
        let mut fields = no_fields();
        for (slot, value) in fields.iter_mut().zip(values) {
            *slot = value.map(|v| Raw::Str(Cow::Borrowed(v)));
        }
        fields
    }

    const GOOD: [Option<&str>; 6] = [
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
        let event = validate(A, &raw).unwrap();
        assert_eq!(event.text("userId"), Some("alice@example.com"));
        assert_eq!(event.event_id(), None);

        let mut missing = GOOD;
        missing[4] = None;
        let problem = validate(A, &fields(missing)).unwrap_err();
        assert_eq!(problem, Problem::field(&A.fields[4], "is missing"));

        let mut empty = GOOD;
        empty[2] = Some("");
        assert_eq!(
            validate(A, &fields(empty)).unwrap_err().field,
            Some("authMethodName")
        );

        let long = "é".repeat(MAX_TEXT_CHARS + 1);
        let ok_long = "é".repeat(MAX_TEXT_CHARS);
        let mut too_long = GOOD;
        too_long[3] = Some(&long);
        assert!(validate(A, &fields(too_long))
            .unwrap_err()
            .reason
            .contains("longer than 1000"));
        too_long[3] = Some(&ok_long);
        assert!(validate(A, &fields(too_long)).is_ok());

        let id = "x".repeat(MAX_EVENT_ID_CHARS + 1);
        let mut long_id = GOOD;
        long_id[5] = Some(&id);
        assert_eq!(
            validate(A, &fields(long_id)).unwrap_err().field,
            Some("eventId")
        );

        let mut nul = GOOD;
        nul[4] = Some("a\0b");
        assert!(validate(A, &fields(nul))
            .unwrap_err()
            .reason
            .contains("NUL"));

        let mut bad_time = GOOD;
        bad_time[0] = Some("yesterday");
        assert_eq!(
            validate(A, &fields(bad_time)).unwrap_err().field,
            Some("timestamp")
        );
    }

    #[test]
    fn error_messages_name_record_and_field() {
        let error = Problem::field(&A.fields[4], "is missing").at(Location::Line(3));
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
            let error = parse_all(A, format, body.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(!error.contains(secret), "{error}");
            assert!(!error.contains("12345"), "{error}");
        }
    }

    #[test]
    fn a_record_may_name_the_writer_s_organization_and_no_other() {
        fn parse(format: IngestFormat, body: &str) -> Result<Vec<Option<String>>, RecordError> {
            let mut named = Vec::new();
            let mut parser = IngestParser::new(A, format).writing_to("acme");
            let mut sink = |_: u64, r: &Record<'_>| named.push(r.tenant.map(str::to_owned));
            parser.feed(body.as_bytes(), &mut sink)?;
            parser.finish(&mut sink)?;
            Ok(named)
        }
        let line = |tenant: &str| {
            format!(
                r#"{{"timestamp":"2021-04-10T00:00:01Z","authMethodType":"PASSWORD","authMethodName":"p","authRequestOrigin":"o","userId":"u"{tenant}}}"#
            )
        };
        let own = format!("{}\n{}\n", line(""), line(r#","tenant":"acme""#));
        assert_eq!(
            parse(IngestFormat::Ndjson, &own).unwrap(),
            [None, Some("acme".to_owned())]
        );
        let other = format!(
            "{}\n{}\n",
            line(r#","tenant":"acme""#),
            line(r#","tenant":"globex""#)
        );
        let error = parse(IngestFormat::Ndjson, &other).unwrap_err();
        assert!(error.other_tenant, "{error}");
        assert_eq!(error.location, Location::Record(2));
        assert!(!error.to_string().contains("globex"), "{error}");
        let error = parse(IngestFormat::Ndjson, &line(r#","tenant":7"#)).unwrap_err();
        assert!(
            !error.other_tenant && error.reason.contains("not a string"),
            "{error}"
        );

        let csv = "userId,timestamp,authMethodType,authMethodName,authRequestOrigin,tenant\r\n\
                   u,2021-04-10T00:00:01Z,PASSWORD,p,o,acme\r\n\
                   u,2021-04-10T00:00:02Z,PASSWORD,p,o,\r\n";
        assert_eq!(
            parse(IngestFormat::Csv, csv).unwrap(),
            [Some("acme".to_owned()), None]
        );
        let error = parse(IngestFormat::Csv, &csv.replace(",acme", ",globex")).unwrap_err();
        assert!(error.other_tenant, "{error}");
        // Without organizations (the default one), `acme` is another.
        let mut parser = IngestParser::new(A, IngestFormat::Ndjson);
        let error = parser
            .feed(
                format!("{}\n", line(r#","tenant":"acme""#)).as_bytes(),
                |_, _| {},
            )
            .unwrap_err();
        assert!(error.other_tenant);
    }
}

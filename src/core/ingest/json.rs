//! JSON records: one event object, NDJSON lines, and the element splitter of
//! a JSON array.
//!
//! An event object is read with a hand-written serde visitor rather than a
//! derived `Deserialize`, for two reasons: strings without escapes are
//! borrowed from the body instead of allocated, and a wrongly typed value is
//! reported by field name without quoting it (serde's own "invalid type"
//! messages quote the value, which could be a raw user ID). serde_json then
//! only reports syntax errors, which never quote values.

use std::{borrow::Cow, fmt};

use serde::{
    de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
    Deserialize, Deserializer,
};

use super::{
    no_fields, validate, FieldType, IngestSchema, Location, Problem, Raw, RawFields, Record,
    RecordError, MAX_FIELDS, MAX_RECORD_BYTES,
};

const TOO_LARGE: &str = "is larger than 1 MiB";

/// Reads one record object of `schema` from `bytes` (surrounding whitespace allowed).
fn parse_record<'a>(
    schema: &'static IngestSchema,
    bytes: &'a [u8],
) -> Result<(RawFields<'a>, Option<Cow<'a, str>>), Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let record = RecordSeed(schema)
        .deserialize(&mut deserializer)
        .and_then(|record| deserializer.end().map(|()| record))
        .map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Syntax | Category::Eof => {
                    let text = e.to_string();
                    let code = text.rsplit_once(" at line ").map_or(&*text, |(c, _)| c);
                    Problem::record(format!("is not valid JSON: {code}"))
                }
                // Our visitors report every content problem themselves; anything
                // else is described without serde's text, which may quote values.
                Category::Data | Category::Io => Problem::record("is not a valid event object"),
            }
        })?;
    match record.problem {
        Some(problem) => Err(problem),
        None => Ok((record.fields, record.tenant)),
    }
}

/// One JSON record: its fields, or the first content problem found.
struct JsonRecord<'a> {
    fields: RawFields<'a>,
    /// The organization it names ([`super::TENANT_FIELD`]).
    tenant: Option<Cow<'a, str>>,
    problem: Option<Problem>,
}

impl Default for JsonRecord<'_> {
    fn default() -> Self {
        JsonRecord {
            fields: no_fields(),
            tenant: None,
            problem: None,
        }
    }
}

/// Reads a [`JsonRecord`] of one schema.
struct RecordSeed(&'static IngestSchema);

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = JsonRecord<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(RecordVisitor(self.0))
    }
}

fn not_an_object<'a>(what: &str) -> JsonRecord<'a> {
    JsonRecord {
        problem: Some(Problem::record(format!("is {what}, not an event object"))),
        ..JsonRecord::default()
    }
}

struct RecordVisitor(&'static IngestSchema);

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = JsonRecord<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let schema = self.0;
        let mut record = JsonRecord::default();
        let mut seen = [false; MAX_FIELDS];
        while let Some(key) = map.next_key_seed(KeySeed(schema))? {
            let index = match key {
                Ok(index) => index,
                Err(name) if name == super::TENANT_FIELD && schema.tenant.is_some() => {
                    match map.next_value::<JsonText<'de>>()? {
                        JsonText::Str(text) if record.tenant.is_none() => {
                            record.tenant = Some(text)
                        }
                        JsonText::Str(_) => {
                            record.problem.get_or_insert_with(|| {
                                Problem::record("has the field `tenant` more than once")
                            });
                        }
                        _ => {
                            record.problem.get_or_insert_with(|| {
                                Problem::record("has a field `tenant` that is not a string")
                            });
                        }
                    }
                    continue;
                }
                Err(name) => {
                    map.next_value::<IgnoredAny>()?;
                    record.problem.get_or_insert_with(|| {
                        Problem::record(format!(
                            "has an unknown field `{name}` (the fields are {})",
                            schema.field_list()
                        ))
                    });
                    continue;
                }
            };
            let field = &schema.fields[index];
            let value: JsonText<'de> = map.next_value()?;
            if record.problem.is_some() {
                continue;
            }
            if std::mem::replace(&mut seen[index], true) {
                record.problem = Some(Problem::field(field, "appears more than once"));
                continue;
            }
            match value {
                JsonText::Str(text) => record.fields[index] = Some(Raw::Str(text)),
                JsonText::Int(n) => match field.ty {
                    FieldType::Integer { .. } | FieldType::TimestampOrMicros => {
                        record.fields[index] = Some(Raw::Int(n))
                    }
                    _ => {
                        record.problem =
                            Some(Problem::field(field, "must be a string, not a number"))
                    }
                },
                JsonText::Null if !field.required => {}
                JsonText::Null => {
                    record.problem = Some(Problem::field(field, "must be a string, not null"))
                }
                JsonText::Other(what) => {
                    let expected = match field.ty {
                        FieldType::Integer { .. } => "an integer",
                        FieldType::TimestampOrMicros => "a string or an integer",
                        _ => "a string",
                    };
                    record.problem = Some(Problem::field(
                        field,
                        format!("must be {expected}, not {what}"),
                    ))
                }
            }
        }
        if record.problem.is_none() {
            if let Some(field) = schema
                .fields
                .iter()
                .enumerate()
                .find(|(i, f)| f.required && !seen[*i])
                .map(|(_, f)| f)
            {
                record.problem = Some(Problem::field(field, "is missing"));
            }
        }
        Ok(record)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(not_an_object("an array"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(not_an_object("a string"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(not_an_object("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(not_an_object("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(not_an_object("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(not_an_object("a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(not_an_object("null"))
    }
}

/// Reads an object key: the index of a known field, or the (shortened)
/// unknown name.
struct KeySeed(&'static IngestSchema);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Result<usize, String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct KeyVisitor(&'static IngestSchema);
        impl Visitor<'_> for KeyVisitor {
            type Value = Result<usize, String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
                Ok(self.0.index(name).ok_or_else(|| {
                    let mut short: String = name.chars().take(40).collect();
                    if short.len() < name.len() {
                        short.push('…');
                    }
                    short
                }))
            }
        }
        deserializer.deserialize_str(KeyVisitor(self.0))
    }
}

/// A field value: a string (borrowed when it has no escapes), an integer,
/// null, or something else, named but never quoted.
enum JsonText<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Null,
    Other(&'static str),
}

impl<'de> Deserialize<'de> for JsonText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = JsonText<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonText::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonText::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonText::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonText::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonText::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(JsonText::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(
            JsonText::Other("a fractional or out-of-range number"),
            JsonText::Int,
        ))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a number"))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a fractional or out-of-range number"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonText::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(JsonText::Other("an object"))
    }
}

/// Parses and validates one record, then hands it to `sink`.
fn emit_record(
    schema: &'static IngestSchema,
    bytes: &[u8],
    location: Location,
    sink: &mut impl FnMut(&Record<'_>),
) -> Result<(), RecordError> {
    let (raw, tenant) = parse_record(schema, bytes).map_err(|p| p.at(location))?;
    let mut event = validate(schema, &raw).map_err(|p| p.at(location))?;
    event.tenant = tenant.as_deref();
    sink(&event);
    Ok(())
}

/// The position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: u8) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// NDJSON: complete lines are parsed straight from the chunk; only a line
/// that crosses a chunk boundary is copied.
#[derive(Debug, Default)]
pub(super) struct NdjsonParser {
    /// Lines seen so far (the number of the last complete line).
    line: u64,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
}

impl NdjsonParser {
    pub(super) fn feed(
        &mut self,
        schema: &'static IngestSchema,
        chunk: &[u8],
        sink: &mut impl FnMut(&Record<'_>),
    ) -> Result<(), RecordError> {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            let Some(end) = find(rest, b'\n') else {
                return self.keep(rest);
            };
            self.keep(&rest[..end])?;
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.partial);
            let result = self.line(schema, &line, sink);
            self.partial = line;
            self.partial.clear();
            result?;
        }
        while let Some(end) = find(rest, b'\n') {
            self.line(schema, &rest[..end], sink)?;
            rest = &rest[end + 1..];
        }
        self.keep(rest)
    }

    pub(super) fn finish(
        &mut self,
        schema: &'static IngestSchema,
        sink: &mut impl FnMut(&Record<'_>),
    ) -> Result<(), RecordError> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.partial);
        self.line(schema, &line, sink)
    }

    fn keep(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        if self.partial.len() + bytes.len() > MAX_RECORD_BYTES {
            return Err(Problem::record(TOO_LARGE).at(Location::Line(self.line + 1)));
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    fn line(
        &mut self,
        schema: &'static IngestSchema,
        bytes: &[u8],
        sink: &mut impl FnMut(&Record<'_>),
    ) -> Result<(), RecordError> {
        self.line += 1;
        let location = Location::Line(self.line);
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(Problem::record(TOO_LARGE).at(location));
        }
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        emit_record(schema, bytes, location, sink)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ArrayState {
    /// Before the opening `[`.
    #[default]
    Start,
    /// After `[`: an element or `]`.
    BeforeFirst,
    /// After `,`: an element.
    BeforeNext,
    /// Inside an element.
    InElement,
    /// After an element: `,` or `]`.
    AfterElement,
    /// After the closing `]`: only whitespace.
    End,
}

/// Splits a JSON array, fed in chunks, into the bytes of its elements.
///
/// A small state machine over bytes: it finds where each element begins and
/// ends by tracking strings (with their escapes) and the nesting depth of
/// objects and arrays, and leaves checking what is inside an element to
/// serde_json. An element that lies within one chunk is handed out without
/// copying; one that crosses chunks is assembled in a buffer that is reused.
#[derive(Debug, Default)]
pub struct ArrayParser {
    state: ArrayState,
    /// Elements begun so far (the 1-based index of the current one).
    index: u64,
    depth: u32,
    in_string: bool,
    escape: bool,
    /// The current element is a bare value (number, literal): it ends at
    /// `,`, `]` or whitespace.
    scalar: bool,
    /// The current element's bytes from earlier chunks.
    carry: Vec<u8>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl ArrayParser {
    /// Feeds the next chunk; `element(index, bytes)` is called for every
    /// element completed in it (index 1-based). Errors stop the split.
    pub fn split<F>(&mut self, chunk: &[u8], mut element: F) -> Result<(), RecordError>
    where
        F: FnMut(u64, &[u8]) -> Result<(), RecordError>,
    {
        let mut i = 0;
        // Where the current element starts in this chunk (0 when it began earlier).
        let mut start = 0;
        while i < chunk.len() {
            match self.state {
                ArrayState::Start => match chunk[i] {
                    b if is_space(b) => i += 1,
                    b'[' => {
                        self.state = ArrayState::BeforeFirst;
                        i += 1;
                    }
                    _ => {
                        return Err(Problem::record(
                            "is not a JSON array of event objects (it must start with '[')",
                        )
                        .at(Location::Body))
                    }
                },
                ArrayState::BeforeFirst | ArrayState::BeforeNext => match chunk[i] {
                    b if is_space(b) => i += 1,
                    b']' if self.state == ArrayState::BeforeFirst => {
                        self.state = ArrayState::End;
                        i += 1;
                    }
                    b']' => {
                        return Err(Problem::record("is followed by a comma but no element")
                            .at(Location::Element(self.index)))
                    }
                    b => {
                        self.index += 1;
                        self.state = ArrayState::InElement;
                        self.depth = 0;
                        self.in_string = false;
                        self.escape = false;
                        self.scalar = !matches!(b, b'{' | b'[' | b'"');
                        start = i;
                        // `i` stays: the element scan reads this byte.
                    }
                },
                ArrayState::InElement => {
                    if self.scalar {
                        match chunk[i..]
                            .iter()
                            .position(|&b| b == b',' || b == b']' || is_space(b))
                        {
                            Some(n) => {
                                let end = i + n;
                                self.emit(&chunk[start..end], &mut element)?;
                                i = end;
                            }
                            None => i = chunk.len(),
                        }
                    } else if self.in_string {
                        if self.escape {
                            self.escape = false;
                            i += 1;
                            continue;
                        }
                        match chunk[i..].iter().position(|&b| b == b'"' || b == b'\\') {
                            Some(n) if chunk[i + n] == b'\\' => {
                                self.escape = true;
                                i += n + 1;
                            }
                            Some(n) => {
                                self.in_string = false;
                                i += n + 1;
                                if self.depth == 0 {
                                    self.emit(&chunk[start..i], &mut element)?;
                                }
                            }
                            None => i = chunk.len(),
                        }
                    } else {
                        match chunk[i..]
                            .iter()
                            .position(|&b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'))
                        {
                            Some(n) => {
                                let at = i + n;
                                i = at + 1;
                                match chunk[at] {
                                    b'"' => self.in_string = true,
                                    b'{' | b'[' => self.depth += 1,
                                    _ => {
                                        self.depth = self.depth.saturating_sub(1);
                                        if self.depth == 0 {
                                            self.emit(&chunk[start..i], &mut element)?;
                                        }
                                    }
                                }
                            }
                            None => i = chunk.len(),
                        }
                    }
                }
                ArrayState::AfterElement => match chunk[i] {
                    b if is_space(b) => i += 1,
                    b',' => {
                        self.state = ArrayState::BeforeNext;
                        i += 1;
                    }
                    b']' => {
                        self.state = ArrayState::End;
                        i += 1;
                    }
                    _ => {
                        return Err(Problem::record("is not followed by ',' or ']'")
                            .at(Location::Element(self.index)))
                    }
                },
                ArrayState::End => match chunk[i] {
                    b if is_space(b) => i += 1,
                    _ => {
                        return Err(
                            Problem::record("has data after the closing ']' of the array")
                                .at(Location::Body),
                        )
                    }
                },
            }
        }
        if self.state == ArrayState::InElement {
            let rest = &chunk[start.min(chunk.len())..];
            if self.carry.len() + rest.len() > MAX_RECORD_BYTES {
                return Err(Problem::record(TOO_LARGE).at(Location::Element(self.index)));
            }
            self.carry.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Ends the body: the array must be closed.
    pub fn end(&self) -> Result<(), RecordError> {
        match self.state {
            ArrayState::End => Ok(()),
            ArrayState::Start => Err(Problem::record(
                "is empty; send a JSON array of event objects ([] for none)",
            )
            .at(Location::Body)),
            _ => {
                Err(Problem::record("ends before the array is closed with ']'").at(Location::Body))
            }
        }
    }

    /// Hands out the element that ends with `tail` and moves past it.
    fn emit<F>(&mut self, tail: &[u8], element: &mut F) -> Result<(), RecordError>
    where
        F: FnMut(u64, &[u8]) -> Result<(), RecordError>,
    {
        self.state = ArrayState::AfterElement;
        if self.carry.len() + tail.len() > MAX_RECORD_BYTES {
            return Err(Problem::record(TOO_LARGE).at(Location::Element(self.index)));
        }
        if self.carry.is_empty() {
            return element(self.index, tail);
        }
        self.carry.extend_from_slice(tail);
        let result = element(self.index, &self.carry);
        self.carry.clear();
        result
    }

    pub(super) fn feed(
        &mut self,
        schema: &'static IngestSchema,
        chunk: &[u8],
        sink: &mut impl FnMut(&Record<'_>),
    ) -> Result<(), RecordError> {
        self.split(chunk, |index, bytes| {
            emit_record(schema, bytes, Location::Element(index), sink)
        })
    }

    pub(super) fn finish(
        &mut self,
        _schema: &'static IngestSchema,
        _sink: &mut impl FnMut(&Record<'_>),
    ) -> Result<(), RecordError> {
        self.end()
    }
}

#[cfg(test)]
mod tests {
    const A: &crate::core::ingest::IngestSchema = &crate::kinds::auth::INGEST;
    use super::super::{parse_all, IngestFormat, IngestParser};
    use super::*;

    /// Splits `body` fed in pieces of `size` bytes.
    fn split_in(body: &[u8], size: usize) -> Result<Vec<(u64, String)>, RecordError> {
        let mut parser = ArrayParser::default();
        let mut out = Vec::new();
        for piece in body.chunks(size.max(1)) {
            parser.split(piece, |i, bytes| {
                out.push((i, String::from_utf8(bytes.to_vec()).unwrap()));
                Ok(())
            })?;
        }
        parser.end()?;
        Ok(out)
    }

    #[test]
    fn splitter_finds_elements_whatever_the_chunking() {
        let body = br#" [ {"a":"x]y,z\"}{"} , {"b":[1,{"c":"]"}]},"s\\",12 ,true,
            {"e":"\\\"]"} ] "#;
        let expected = vec![
            (1, r#"{"a":"x]y,z\"}{"}"#.to_owned()),
            (2, r#"{"b":[1,{"c":"]"}]}"#.to_owned()),
            (3, r#""s\\""#.to_owned()),
            (4, "12".to_owned()),
            (5, "true".to_owned()),
            (6, r#"{"e":"\\\"]"}"#.to_owned()),
        ];
        for size in [1, 2, 3, 7, 64, body.len()] {
            assert_eq!(split_in(body, size).unwrap(), expected, "chunk size {size}");
        }
    }

    #[test]
    fn splitter_rejects_broken_arrays() {
        assert_eq!(split_in(b"[]", 1).unwrap(), vec![]);
        assert_eq!(split_in(b" \n[ ] \n", 1).unwrap(), vec![]);
        let location = |body: &[u8]| split_in(body, 3).unwrap_err().location;
        assert_eq!(location(b""), Location::Body);
        assert_eq!(location(b"  "), Location::Body);
        assert_eq!(location(b"{\"a\":1}"), Location::Body);
        assert_eq!(location(b"[{}"), Location::Body);
        assert_eq!(location(b"[{},"), Location::Body);
        assert_eq!(location(b"[{},]"), Location::Element(1));
        assert_eq!(location(b"[{} {}]"), Location::Element(1));
        assert_eq!(location(b"[{}] x"), Location::Body);
        assert_eq!(location(b"[\"abc"), Location::Body);
    }

    fn line(ts: &str, user: &str, extra: &str) -> String {
        format!(
            r#"{{"timestamp":"{ts}","authMethodType":"PASSWORD","authMethodName":"password.1","authRequestOrigin":"CN=A,DC=test","userId":"{user}"{extra}}}"#
        )
    }

    #[test]
    fn ndjson_lines_are_numbered_with_blank_lines() {
        let body = format!(
            "{}\r\n\n   \n{}\n{}",
            line("2021-04-10T00:00:01Z", "u1", r#","eventId":"e1""#),
            line("2021-04-10T00:00:02Z", "u\\u00e92", ""),
            line("2021-04-10T00:00:03", "u3", r#","eventId":null"#),
        );
        for size in [1, 5, 100, body.len()] {
            let mut parser = IngestParser::new(A, IngestFormat::Ndjson);
            let mut events = Vec::new();
            for piece in body.as_bytes().chunks(size) {
                parser
                    .feed(piece, |seq, e| {
                        events.push((
                            seq,
                            e.text("userId").unwrap().to_owned(),
                            e.event_id().map(str::to_owned),
                        ))
                    })
                    .unwrap();
            }
            parser
                .finish(|seq, e| {
                    events.push((
                        seq,
                        e.text("userId").unwrap().to_owned(),
                        e.event_id().map(str::to_owned),
                    ))
                })
                .unwrap();
            assert_eq!(
                events,
                vec![
                    (1, "u1".to_owned(), Some("e1".to_owned())),
                    (2, "ué2".to_owned(), None),
                    (3, "u3".to_owned(), None),
                ]
            );
            assert_eq!(parser.received(), 3);
        }
        let bad = format!(
            "{}\n\n{}\n",
            line("2021-04-10T00:00:01Z", "u1", ""),
            line("2021-04-10T00:00:01Z", "u1", r#","eventId":"""#),
        );
        let error = parse_all(A, IngestFormat::Ndjson, bad.as_bytes()).unwrap_err();
        assert_eq!(error.location, Location::Line(3));
        assert_eq!(error.field, Some("eventId"));
        assert_eq!(parse_all(A, IngestFormat::Ndjson, b"").unwrap(), vec![]);
        assert_eq!(
            parse_all(A, IngestFormat::Ndjson, b"\n \r\n").unwrap(),
            vec![]
        );
    }

    #[test]
    fn json_content_problems_name_the_field() {
        let cases: [(&str, Option<&str>, &str); 9] = [
            (r#"{"timestamp":1}"#, Some("timestamp"), "not a number"),
            (r#"{"userId":{"a":"b"}}"#, Some("userId"), "not an object"),
            (r#"{"userId":null}"#, Some("userId"), "not null"),
            (
                r#"{"userId":"a","userId":"a"}"#,
                Some("userId"),
                "more than once",
            ),
            (r#"{"userID":"a"}"#, None, "unknown field `userID`"),
            (
                r#"{"timestamp":"2021-04-10T00:00:00Z"}"#,
                Some("authMethodType"),
                "is missing",
            ),
            (r#"[1]"#, None, "an array, not an event object"),
            (r#"{"a" 1}"#, None, "not valid JSON"),
            (r#"{} {}"#, None, "not valid JSON"),
        ];
        for (body, field, reason) in cases {
            let error = parse_all(A, IngestFormat::Ndjson, body.as_bytes()).unwrap_err();
            assert_eq!(error.location, Location::Line(1), "{body}");
            assert_eq!(error.field, field, "{body}");
            assert!(error.reason.contains(reason), "{body}: {error}");
        }
    }

    #[test]
    fn json_array_of_events() {
        let body = format!(
            "\u{feff}[{},\n{}]",
            line("2021-04-10T00:00:01Z", "a,]\\\"b", ""),
            line("2021-04-10T00:00:02Z", "c", r#","eventId":"x""#)
        );
        let events = parse_all(A, IngestFormat::JsonArray, body.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].text("userId").unwrap(), "a,]\"b");
        assert_eq!(events[1].text("eventId"), Some("x"));
        let bad = format!(
            "[{},{},{}]",
            line("2021-04-10T00:00:01Z", "a", ""),
            line("2021-04-10T00:00:01Z", "a", ""),
            line("2021-04-10T00:00:01.1234567Z", "a", ""),
        );
        let error = parse_all(A, IngestFormat::JsonArray, bad.as_bytes()).unwrap_err();
        assert_eq!(error.location, Location::Element(3));
        assert_eq!(error.field, Some("timestamp"));
        let error = parse_all(A, IngestFormat::JsonArray, b"[1]").unwrap_err();
        assert_eq!(error.location, Location::Element(1));
    }

    proptest::proptest! {
        /// Any array of objects holding arbitrary strings, split at any
        /// chunk size, compact or pretty-printed, gives back exactly its
        /// elements.
        #[test]
        fn splitter_round_trips(
            values in proptest::collection::vec(
                proptest::collection::vec(r#"[\[\]{},:"\\ aé\n\t\u{0}]{0,12}"#, 0..4),
                0..8,
            ),
            size in 1usize..40,
            pretty in proptest::bool::ANY,
        ) {
            let elements: Vec<serde_json::Value> = values
                .iter()
                .map(|strings| serde_json::json!({ "s": strings, "n": strings.len() }))
                .collect();
            let body = if pretty {
                serde_json::to_string_pretty(&elements).unwrap()
            } else {
                serde_json::to_string(&elements).unwrap()
            };
            let split = split_in(body.as_bytes(), size).unwrap();
            proptest::prop_assert_eq!(split.len(), elements.len());
            for (position, ((index, text), element)) in split.iter().zip(&elements).enumerate() {
                let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
                proptest::prop_assert_eq!(&parsed, element);
                proptest::prop_assert_eq!(*index, position as u64 + 1);
            }
        }
    }

    #[test]
    fn oversized_records_are_rejected() {
        let big = format!("{{\"userId\":\"{}\"}}", "x".repeat(MAX_RECORD_BYTES));
        let error = parse_all(A, IngestFormat::Ndjson, big.as_bytes()).unwrap_err();
        assert!(error.reason.contains("1 MiB"), "{error}");
        let array = format!("[{big}]");
        let mut parser = ArrayParser::default();
        let error = array
            .as_bytes()
            .chunks(4096)
            .try_for_each(|c| parser.split(c, |_, _| Ok(())))
            .unwrap_err();
        assert_eq!(error.location, Location::Element(1));
    }
}

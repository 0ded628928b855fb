//! CSV records: RFC 4180 (quoted fields may hold commas, quotes and line
//! breaks; lines end in CRLF or LF; a UTF-8 byte order mark is skipped),
//! parsed incrementally by `csv-core`. The first record is the header row,
//! naming the columns with the JSON field names, in any order.
//!
//! An empty `eventId` cell means the event has no ID (CSV cannot tell an
//! empty string from a missing value).

use std::borrow::Cow;

use csv_core::{ReadRecordResult, Reader};

use super::{
    no_fields, validate, IngestSchema, Location, Problem, Raw, RawFields, Record, RecordError,
    MAX_RECORD_BYTES,
};

/// The column of [`super::TENANT_FIELD`] among a header's fields.
const TENANT_COLUMN: usize = usize::MAX;

/// More columns than this is not a header of ours.
const MAX_COLUMNS: usize = 64;

#[derive(Debug)]
pub(super) struct CsvParser {
    reader: Reader,
    /// The current record's unescaped field bytes.
    out: Vec<u8>,
    out_len: usize,
    /// The end offsets of the current record's fields within `out`.
    ends: Vec<usize>,
    ends_len: usize,
    /// The field of each column, once the header has been read.
    columns: Option<Vec<usize>>,
    /// Data rows read so far.
    row: u64,
}

impl Default for CsvParser {
    fn default() -> Self {
        CsvParser {
            reader: Reader::new(),
            out: vec![0; 4096],
            out_len: 0,
            ends: vec![0; 16],
            ends_len: 0,
            columns: None,
            row: 0,
        }
    }
}

impl CsvParser {
    fn location(&self) -> Location {
        match self.columns {
            None => Location::Header,
            Some(_) => Location::Row(self.row + 1),
        }
    }

    pub(super) fn feed(
        &mut self,
        schema: &'static IngestSchema,
        chunk: &[u8],
        sink: &mut impl FnMut(&Record<'_>),
    ) -> Result<(), RecordError> {
        self.run(schema, chunk, sink).map(|_| ())
    }

    pub(super) fn finish(
        &mut self,
        schema: &'static IngestSchema,
        sink: &mut impl FnMut(&Record<'_>),
    ) -> Result<(), RecordError> {
        // An empty input tells csv-core the data has ended: it then hands
        // out a last record without a line end, and reports the end.
        for _ in 0..3 {
            if self.run(schema, &[], sink)? {
                break;
            }
        }
        if self.columns.is_none() {
            return Err(Problem::record(
                "is empty; a CSV body starts with a header row naming the columns",
            )
            .at(Location::Body));
        }
        Ok(())
    }

    /// Reads records from `input` until it is used up; true at the end of data.
    fn run(
        &mut self,
        schema: &'static IngestSchema,
        mut input: &[u8],
        sink: &mut impl FnMut(&Record<'_>),
    ) -> Result<bool, RecordError> {
        loop {
            let (result, read, written, ended) = self.reader.read_record(
                input,
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            input = &input[read..];
            self.out_len += written;
            self.ends_len += ended;
            match result {
                ReadRecordResult::InputEmpty => return Ok(false),
                ReadRecordResult::End => return Ok(true),
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_RECORD_BYTES {
                        return Err(Problem::record("is larger than 1 MiB").at(self.location()));
                    }
                    let grown = self.out.len() * 2;
                    self.out.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() >= MAX_COLUMNS {
                        return Err(
                            Problem::record(format!("has more than {MAX_COLUMNS} fields"))
                                .at(self.location()),
                        );
                    }
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    let result = self.record(schema, sink);
                    self.out_len = 0;
                    self.ends_len = 0;
                    result?;
                }
            }
        }
    }

    /// The `index`th field of the current record.
    fn cell(&self, index: usize) -> &[u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.out[start..self.ends[index]]
    }

    fn record(
        &mut self,
        schema: &'static IngestSchema,
        sink: &mut impl FnMut(&Record<'_>),
    ) -> Result<(), RecordError> {
        if self.columns.is_none() {
            let columns = self.header(schema).map_err(|p| p.at(Location::Header))?;
            self.columns = Some(columns);
            return Ok(());
        }
        self.row += 1;
        let location = Location::Row(self.row);
        let columns = self.columns.as_deref().unwrap_or_default();
        if self.ends_len != columns.len() {
            return Err(Problem::record(format!(
                "has {} fields but the header names {} columns",
                self.ends_len,
                columns.len()
            ))
            .at(location));
        }
        let mut fields: RawFields<'_> = no_fields();
        let mut tenant = None;
        for (index, &field) in columns.iter().enumerate() {
            if field == TENANT_COLUMN {
                let text = std::str::from_utf8(self.cell(index)).map_err(|_| {
                    Problem::record("has a `tenant` that is not valid UTF-8").at(location)
                })?;
                tenant = (!text.is_empty()).then_some(text);
                continue;
            }
            let spec = &schema.fields[field];
            let text = std::str::from_utf8(self.cell(index))
                .map_err(|_| Problem::field(spec, "is not valid UTF-8").at(location))?;
            // CSV cannot tell an empty string from a missing value: an empty
            // cell of an optional field means none.
            if !spec.required && text.is_empty() {
                continue;
            }
            fields[field] = Some(Raw::Str(Cow::Borrowed(text)));
        }
        let mut event = validate(schema, &fields).map_err(|p| p.at(location))?;
        event.tenant = tenant;
        sink(&event);
        Ok(())
    }

    fn header(&self, schema: &'static IngestSchema) -> Result<Vec<usize>, Problem> {
        let mut columns = Vec::with_capacity(self.ends_len);
        for index in 0..self.ends_len {
            let name = std::str::from_utf8(self.cell(index)).unwrap_or("");
            if name == super::TENANT_FIELD && schema.tenant.is_some() {
                if columns.contains(&TENANT_COLUMN) {
                    return Err(Problem::record("names the column `tenant` more than once"));
                }
                columns.push(TENANT_COLUMN);
                continue;
            }
            let field = schema.index(name).ok_or_else(|| {
                let optional: Vec<&str> = schema
                    .fields
                    .iter()
                    .filter(|f| !f.required)
                    .map(|f| f.name)
                    .collect();
                Problem::record(format!(
                    "column {} is not a field name (the columns are {}; optional: {})",
                    index + 1,
                    schema.field_list(),
                    optional.join(", ")
                ))
            })?;
            if columns.contains(&field) {
                return Err(Problem::field(
                    &schema.fields[field],
                    "names more than one column",
                ));
            }
            columns.push(field);
        }
        if let Some((_, missing)) = schema
            .fields
            .iter()
            .enumerate()
            .find(|(i, f)| f.required && !columns.contains(i))
        {
            return Err(Problem::field(missing, "has no column"));
        }
        Ok(columns)
    }
}

#[cfg(test)]
mod tests {
    const A: &crate::core::ingest::IngestSchema = &crate::kinds::auth::INGEST;
    use super::super::{parse_all, IngestFormat, IngestParser};
    use super::*;

    const HEADER: &str = "userId,timestamp,authMethodType,authMethodName,authRequestOrigin,eventId";

    #[test]
    fn rfc4180_records_in_any_chunking() {
        let body = format!(
            "\u{feff}{HEADER}\r\n\
             u1,2021-04-10T00:00:01Z,PASSWORD,password.1,\"CN=Appl-1,CN=Server\",e1\r\n\
             \"Zoë \"\"Z\"\"\",2021-04-10T00:00:02.5,OTP,otp,\"line one\nline two\",\r\n\
             u3,2021-04-10T01:00:03+01:00,PASSWORD,password.1,x,e3"
        );
        for size in [1, 2, 5, 64, body.len()] {
            let mut parser = IngestParser::new(A, IngestFormat::Csv);
            let mut events = Vec::new();
            let mut push = |seq: u64, e: &Record<'_>| {
                events.push((seq, super::super::OwnedRecord::from(e)));
            };
            for piece in body.as_bytes().chunks(size) {
                parser.feed(piece, &mut push).unwrap();
            }
            parser.finish(&mut push).unwrap();
            assert_eq!(events.len(), 3, "chunk size {size}");
            assert_eq!(
                events[0].1.text("authRequestOrigin").unwrap(),
                "CN=Appl-1,CN=Server"
            );
            assert_eq!(events[0].1.text("eventId"), Some("e1"));
            assert_eq!(events[1].1.text("userId").unwrap(), "Zoë \"Z\"");
            assert_eq!(
                events[1].1.text("authRequestOrigin").unwrap(),
                "line one\nline two"
            );
            assert_eq!(events[1].1.text("eventId"), None);
            assert_eq!(
                events[2].1.get("timestamp"),
                Some(&super::super::OwnedValue::Time(
                    "2021-04-10T00:00:03Z"
                        .parse::<chrono::DateTime<chrono::Utc>>()
                        .unwrap()
                ))
            );
            assert_eq!(events[2].0, 3);
        }
    }

    #[test]
    fn header_is_validated() {
        let error = |body: &str| parse_all(A, IngestFormat::Csv, body.as_bytes()).unwrap_err();
        assert_eq!(error("").location, Location::Body);
        let missing = error("timestamp,authMethodType,authMethodName,authRequestOrigin\n");
        assert_eq!(missing.location, Location::Header);
        assert_eq!(missing.field, Some("userId"));
        let extra = error(&format!("{HEADER},color\n"));
        assert_eq!(extra.location, Location::Header);
        assert!(extra.reason.contains("column 7"), "{extra}");
        let twice = error(&format!("{HEADER},userId\n"));
        assert_eq!(twice.field, Some("userId"));
        assert_eq!(
            error("Timestamp,authMethodType,authMethodName,authRequestOrigin,userId\n").location,
            Location::Header
        );
        // A header alone is a valid body with no events.
        assert_eq!(
            parse_all(A, IngestFormat::Csv, HEADER.as_bytes()).unwrap(),
            vec![]
        );
    }

    #[test]
    fn rows_are_numbered_from_one_after_the_header() {
        let body =
            format!("{HEADER}\nu1,2021-04-10T00:00:01Z,A,a,o,\n\nu2,2021-04-10T00:00:01Z,A,a,o\n");
        let error = parse_all(A, IngestFormat::Csv, body.as_bytes()).unwrap_err();
        assert_eq!(error.location, Location::Row(2));
        assert!(error.reason.contains("5 fields"), "{error}");
        let body = format!("{HEADER}\nu1,2021-04-10T00:00:01Z,A,a,o,\nu2,2021-04-10,A,a,o,\n");
        let error = parse_all(A, IngestFormat::Csv, body.as_bytes()).unwrap_err();
        assert_eq!(error.location, Location::Row(2));
        assert_eq!(error.field, Some("timestamp"));
        let body = format!("{HEADER}\nu1,2021-04-10T00:00:01Z,,a,o,\n");
        let error = parse_all(A, IngestFormat::Csv, body.as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "CSV row 1: field `authMethodType` must not be empty"
        );
        let mut latin1 = format!("{HEADER}\nu").into_bytes();
        latin1.extend_from_slice(b"\xe9,2021-04-10T00:00:01Z,A,a,o,\n");
        let error = parse_all(A, IngestFormat::Csv, &latin1).unwrap_err();
        assert_eq!(error.field, Some("userId"));
    }
}

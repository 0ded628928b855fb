//! Escaping of JSON strings and CSV fields, and the spreadsheet formula guard.

use bytes::{BufMut, BytesMut};

/// What CSV bodies do with text cells that start like a spreadsheet formula
/// (`=`, `+`, `-`, `@`, a tab or a carriage return): OWASP's "CSV injection".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FormulaGuard {
    /// Prefix such cells with `'`, so spreadsheets show them as text (the default).
    #[default]
    Quote,
    /// Write every value exactly (for programs that must round-trip).
    Off,
}

impl std::str::FromStr for FormulaGuard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "quote" => Ok(FormulaGuard::Quote),
            "off" => Ok(FormulaGuard::Off),
            _ => Err("expected `quote` or `off`".to_owned()),
        }
    }
}

/// True for a value a spreadsheet would evaluate as a formula.
#[inline]
fn looks_like_formula(value: &[u8]) -> bool {
    matches!(
        value.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

/// Writes `s` as a quoted, escaped JSON string (non-ASCII as it is).
#[inline]
pub fn write_json_str(buf: &mut BytesMut, s: &str) {
    if !any_byte(s.as_bytes(), |b| b < 0x20 || b == b'"' || b == b'\\') {
        buf.reserve(s.len() + 2);
        buf.put_u8(b'"');
        buf.put_slice(s.as_bytes());
        buf.put_u8(b'"');
        return;
    }
    // Serialising a string into memory cannot fail.
    let _ = serde_json::to_writer((&mut *buf).writer(), s);
}

/// Whether any byte of `bytes` is one `wanted` picks. Every byte is tested,
/// without an early exit, so the compiler checks 16 or 32 at a time: text
/// cells are short, and most need no escaping.
#[inline(always)]
fn any_byte(bytes: &[u8], wanted: impl Fn(u8) -> bool) -> bool {
    bytes.iter().fold(false, |found, &b| found | wanted(b))
}

/// Writes one CSV field, quoted (with quotes doubled) only when it holds a
/// comma, a quote or a line break: what the `csv` crate's
/// `QuoteStyle::Necessary` writes (a property test checks they agree).
#[inline]
pub fn write_csv_field(buf: &mut BytesMut, value: &[u8]) {
    if !any_byte(value, |b| {
        b == b',' || b == b'"' || b == b'\n' || b == b'\r'
    }) {
        buf.put_slice(value);
        return;
    }
    buf.reserve(value.len() + 8);
    buf.put_u8(b'"');
    let mut rest = value;
    while let Some(at) = memchr::memchr(b'"', rest) {
        buf.put_slice(&rest[..=at]);
        buf.put_u8(b'"');
        rest = &rest[at + 1..];
    }
    buf.put_slice(rest);
    buf.put_u8(b'"');
}

/// Writes a text cell, with a leading `'` when `guard` is on and the value
/// would run as a spreadsheet formula.
#[inline]
pub fn write_csv_text(buf: &mut BytesMut, value: &[u8], guard: bool) {
    if guard && looks_like_formula(value) {
        let mut guarded = Vec::with_capacity(value.len() + 1);
        guarded.push(b'\'');
        guarded.extend_from_slice(value);
        write_csv_field(buf, &guarded);
    } else {
        write_csv_field(buf, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn csv_fields_match_the_csv_crate(value in "\\PC*|[,\"\r\n\t =+-]*") {
            let mut ours = BytesMut::new();
            write_csv_field(&mut ours, value.as_bytes());
            let mut writer = csv::WriterBuilder::new()
                .quote_style(csv::QuoteStyle::Necessary)
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::new());
            writer.write_record([value.as_str(), "x"]).unwrap();
            let theirs = writer.into_inner().unwrap();
            let mut expected = ours.to_vec();
            expected.extend_from_slice(b",x\r\n");
            proptest::prop_assert_eq!(expected, theirs);
        }

        #[test]
        fn json_strings_match_serde(value in "\\PC*|[\"\\\\\u{0}-\u{1f}]*") {
            let mut ours = BytesMut::new();
            write_json_str(&mut ours, &value);
            proptest::prop_assert_eq!(ours.to_vec(), serde_json::to_vec(&value).unwrap());
        }
    }
}

//! Content negotiation between JSON, CSV and NDJSON (RFC 9110 §12.5.1).
//!
//! The `format` query parameter, when present, overrides the `Accept` header.
//! Otherwise each supported media type gets the quality of the most specific
//! media range that matches it; the highest quality wins, ties go to the type
//! whose matching range comes first, and a complete tie goes to JSON, then
//! CSV, then NDJSON (so `*/*` and `application/*` mean JSON).

/// The representation of a statistics response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// `application/json`: a links object followed by an array of events.
    Json,
    /// `text/csv`: a header row followed by one row per event (RFC 4180).
    Csv,
    /// `application/x-ndjson`: one JSON object per line, no envelope.
    Ndjson,
}

impl OutputFormat {
    /// Returns the `Content-Type` header value for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Json => "application/json",
            OutputFormat::Csv => "text/csv; charset=utf-8",
            OutputFormat::Ndjson => "application/x-ndjson",
        }
    }

    /// Returns the short name of the format, as accepted by the `format` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Csv => "csv",
            OutputFormat::Ndjson => "ndjson",
        }
    }

    /// Returns the media type without parameters, split into type and subtype.
    fn media_type(self) -> (&'static str, &'static str) {
        match self {
            OutputFormat::Json => ("application", "json"),
            OutputFormat::Csv => ("text", "csv"),
            OutputFormat::Ndjson => ("application", "x-ndjson"),
        }
    }
}

/// The media types this service can produce, in order of preference on a tie.
pub const SUPPORTED_MEDIA_TYPES: &[&str] =
    &["application/json", "text/csv", "application/x-ndjson"];

/// The reasons negotiation can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// The `format` query parameter is present but is neither `csv` nor `json`.
    #[error("Valid values for format: csv, json, ndjson.")]
    InvalidFormatParam,
    /// The `Accept` header excludes every supported media type.
    #[error(
        "None of the requested media types is available. Supported media types: application/json, text/csv, application/x-ndjson."
    )]
    NotAcceptable,
}

/// Chooses the output format.
///
/// `format_param` is the `format` query parameter if present; `accept` holds the values of all
/// `Accept` headers in order (an empty slice means there was no header).
pub fn negotiate(
    format_param: Option<&str>,
    accept: &[&str],
) -> Result<OutputFormat, NegotiationError> {
    if let Some(format) = format_param {
        return if format.eq_ignore_ascii_case("json") {
            Ok(OutputFormat::Json)
        } else if format.eq_ignore_ascii_case("csv") {
            Ok(OutputFormat::Csv)
        } else if format.eq_ignore_ascii_case("ndjson") {
            Ok(OutputFormat::Ndjson)
        } else {
            Err(NegotiationError::InvalidFormatParam)
        };
    }

    let mut any_element = false;
    let mut ranges: Vec<MediaRange<'_>> = Vec::new();
    for element in accept.iter().flat_map(|value| split_list(value)) {
        let element = trim_ows(element);
        if element.is_empty() {
            continue;
        }
        any_element = true;
        if let Some(range) = parse_media_range(element) {
            ranges.push(range);
        }
    }
    if !any_element {
        // No Accept header, or only empty values: the client accepts anything.
        return Ok(OutputFormat::Json);
    }

    let mut best: Option<(OutputFormat, u16, usize)> = None;
    // Json is considered first so that it wins a complete tie.
    for format in [OutputFormat::Json, OutputFormat::Csv, OutputFormat::Ndjson] {
        let Some((index, q)) = quality(&ranges, format) else {
            continue;
        };
        if q == 0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, best_q, best_index)) => q > best_q || (q == best_q && index < best_index),
        };
        if better {
            best = Some((format, q, index));
        }
    }
    best.map(|(format, _, _)| format)
        .ok_or(NegotiationError::NotAcceptable)
}

/// One parsed media range with its weight in thousandths (0..=1000).
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: u16,
}

/// Returns the position and quality of the most specific range matching `format`, if any.
/// Among equally specific ranges the first one counts.
fn quality(ranges: &[MediaRange<'_>], format: OutputFormat) -> Option<(usize, u16)> {
    let (kind, subtype) = format.media_type();
    let mut best: Option<(u8, usize, u16)> = None;
    for (index, range) in ranges.iter().enumerate() {
        let specificity = if range.kind == "*" {
            0
        } else if !range.kind.eq_ignore_ascii_case(kind) {
            continue;
        } else if range.subtype == "*" {
            1
        } else if range.subtype.eq_ignore_ascii_case(subtype) {
            2
        } else {
            continue;
        };
        let more_specific = match best {
            None => true,
            Some((s, _, _)) => specificity > s,
        };
        if more_specific {
            best = Some((specificity, index, range.q));
        }
    }
    best.map(|(_, index, q)| (index, q))
}

/// Splits a header value on commas that are not inside quoted strings.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, b) in s.bytes().enumerate() {
            if escaped {
                escaped = false;
            } else if in_quotes && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = !in_quotes;
            } else if b == b',' && !in_quotes {
                rest = Some(&s[i + 1..]);
                return Some(&s[..i]);
            }
        }
        rest = None;
        Some(s)
    })
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Checks RFC 9110 `quoted-string` (including the quotes).
fn is_quoted_string(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return false;
    };
    let mut escaped = false;
    for b in inner.bytes() {
        let text = b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
        if escaped {
            if !text {
                return false;
            }
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' || !text {
            return false;
        }
    }
    !escaped
}

/// Parses `type "/" subtype *( OWS ";" OWS [ parameter ] )`; `None` if the syntax is invalid.
fn parse_media_range(element: &str) -> Option<MediaRange<'_>> {
    let mut parts = element.split(';');
    let media = trim_ows(parts.next()?);
    let (kind, subtype) = media.split_once('/')?;
    if !is_token(kind) || !is_token(subtype) || (kind == "*" && subtype != "*") {
        return None;
    }
    let mut q = None;
    for param in parts {
        let param = trim_ows(param);
        if param.is_empty() {
            continue;
        }
        let (name, value) = param.split_once('=')?;
        if !is_token(name) || !(is_token(value) || is_quoted_string(value)) {
            return None;
        }
        if q.is_none() && name.eq_ignore_ascii_case("q") {
            q = Some(parse_qvalue(value)?);
        }
    }
    Some(MediaRange {
        kind,
        subtype,
        q: q.unwrap_or(1000),
    })
}

/// Parses RFC 9110 `qvalue` into thousandths.
fn parse_qvalue(value: &str) -> Option<u16> {
    let (int, frac) = match value.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (value, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use NegotiationError::*;
    use OutputFormat::*;

    #[test]
    fn negotiation_table() {
        type Case<'a> = (
            Option<&'a str>,
            &'a [&'a str],
            Result<OutputFormat, NegotiationError>,
        );
        let cases: &[Case<'_>] = &[
            (None, &[], Ok(Json)),
            (None, &[""], Ok(Json)),
            (None, &["  ", "\t"], Ok(Json)),
            (None, &["*/*"], Ok(Json)),
            (None, &["text/csv"], Ok(Csv)),
            (None, &["application/x-ndjson"], Ok(Ndjson)),
            (
                None,
                &["application/x-ndjson, application/json"],
                Ok(Ndjson),
            ),
            (
                None,
                &["application/json;q=0.5, application/x-ndjson"],
                Ok(Ndjson),
            ),
            (None, &["application/*, text/csv;q=0.5"], Ok(Json)),
            (Some("ndjson"), &["text/csv"], Ok(Ndjson)),
            (None, &["text/csv, application/json"], Ok(Csv)),
            (None, &["application/json, text/csv"], Ok(Json)),
            (None, &["application/json;q=0.5, text/csv"], Ok(Csv)),
            (None, &["text/*"], Ok(Csv)),
            (None, &["application/*"], Ok(Json)),
            (None, &["TEXT/CSV"], Ok(Csv)),
            (None, &["text/csv;charset=utf-8"], Ok(Csv)),
            (None, &["text/csv;q=0"], Err(NotAcceptable)),
            (None, &["*/*, text/csv;q=0"], Ok(Json)),
            (None, &["text/html"], Err(NotAcceptable)),
            (
                None,
                &["application/xml, text/html;q=0.9"],
                Err(NotAcceptable),
            ),
            (None, &["garbage"], Err(NotAcceptable)),
            (None, &["text/html, */*;q=0.1"], Ok(Json)),
            (None, &["text/csv;q=0.2, */*;q=0.1"], Ok(Csv)),
            (None, &["application/json;q=0, text/*"], Ok(Csv)),
            (Some("csv"), &["application/json"], Ok(Csv)),
            (Some("CSV"), &[], Ok(Csv)),
            (Some("Json"), &["text/csv"], Ok(Json)),
            (Some("xml"), &[], Err(InvalidFormatParam)),
            (Some(""), &["text/csv"], Err(InvalidFormatParam)),
            (Some(" csv"), &[], Err(InvalidFormatParam)),
            // Further syntax and precedence cases.
            (None, &["text/", "/json"], Err(NotAcceptable)),
            (None, &["garbage, text/csv"], Ok(Csv)),
            (None, &["*/csv"], Err(NotAcceptable)),
            (None, &["text/csv;q=2"], Err(NotAcceptable)),
            (None, &["text/csv;q=0.5, application/json;q=1.5"], Ok(Csv)),
            (
                None,
                &["text/csv;q=0.0001, application/json;q=0.1"],
                Ok(Json),
            ),
            (None, &["text/csv;Q=0.8, application/json;q=0.7"], Ok(Csv)),
            (None, &["application/json;q=0.5, text/csv;q=1.000"], Ok(Csv)),
            (None, &["application/json;q=1.001, text/csv;q=0.1"], Ok(Csv)),
            (None, &["text/csv;q=0.5, application/json;q=0.5"], Ok(Csv)),
            (
                None,
                &["text/csv ; q=0.5 , application/json ;q=0.4"],
                Ok(Csv),
            ),
            (None, &["text/csv;q= 0.5, application/json;q=0.1"], Ok(Json)),
            (
                None,
                &["text/csv;q=\"0.5\", application/json;q=0.1"],
                Ok(Json),
            ),
            (None, &["application/json;q=0.1", "text/csv;q=0.2"], Ok(Csv)),
            (None, &["text/csv", "application/json"], Ok(Csv)),
            (None, &["", "text/csv"], Ok(Csv)),
            (
                None,
                &["text/*;q=0.3, text/csv;q=0.9, application/*;q=0.5"],
                Ok(Csv),
            ),
            (
                None,
                &["text/*;q=0.9, text/csv;q=0.1, application/*;q=0.5"],
                Ok(Json),
            ),
            (None, &["*/*;q=0.9, application/json;q=0"], Ok(Csv)),
            (
                None,
                &["text/csv;foo=\"a,b\";q=0.9, application/json;q=0.5"],
                Ok(Csv),
            ),
            (None, &["text/csv;foo, application/json;q=0.5"], Ok(Json)),
            (None, &["text/csv;, application/json;q=0.5"], Ok(Csv)),
            (None, &[","], Ok(Json)),
            (None, &[", ,"], Ok(Json)),
            (
                None,
                &["text/csv;q=0.5;q=0.1, application/json;q=0.3"],
                Ok(Csv),
            ),
        ];
        for (format, accept, expected) in cases {
            assert_eq!(
                negotiate(*format, accept),
                *expected,
                "format={format:?} accept={accept:?}"
            );
        }
    }

    #[test]
    fn formats_and_messages() {
        assert_eq!(Json.content_type(), "application/json");
        assert_eq!(Csv.content_type(), "text/csv; charset=utf-8");
        assert_eq!(Json.as_str(), "json");
        assert_eq!(Csv.as_str(), "csv");
        assert_eq!(Ndjson.content_type(), "application/x-ndjson");
        assert_eq!(Ndjson.as_str(), "ndjson");
        assert_eq!(
            SUPPORTED_MEDIA_TYPES,
            &["application/json", "text/csv", "application/x-ndjson"]
        );
        assert_eq!(
            InvalidFormatParam.to_string(),
            "Valid values for format: csv, json, ndjson."
        );
        assert_eq!(
            NotAcceptable.to_string(),
            "None of the requested media types is available. Supported media types: application/json, text/csv, application/x-ndjson."
        );
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0."), Some(0));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.123"), Some(123));
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        for bad in [
            "", ".5", "1.5", "0.1234", "2", "-0", "+1", "0.a", "00.5", "1.0001",
        ] {
            assert_eq!(parse_qvalue(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(headers in prop::collection::vec("\\PC{0,40}", 0..3), format in prop::option::of("\\PC{0,6}")) {
            let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            let _ = negotiate(format.as_deref(), &refs);
        }
    }
}

/// The content codings the service compresses with, fastest first (as
/// measured by `bench/stream.sh`: zstd, then gzip and deflate on zlib-rs,
/// then brotli, which streamed records skip: see
/// `core::compress::STREAMED_UNCOMPRESSED`).
pub const CODINGS_FASTEST_FIRST: [&str; 4] = ["zstd", "gzip", "deflate", "br"];

/// The fastest coding of [`CODINGS_FASTEST_FIRST`] that an `Accept-Encoding`
/// value accepts (named with a non-zero quality; `x-gzip` counts as gzip),
/// or `None` when it names none of them (then the compression layer's own
/// negotiation applies: identity, `*`, or a 406).
pub fn fastest_coding(accept_encoding: &str) -> Option<&'static str> {
    let accepted: Vec<&str> = codings(accept_encoding)
        .filter_map(|(name, refused)| (!refused).then_some(name))
        .collect();
    CODINGS_FASTEST_FIRST.into_iter().find(|coding| {
        accepted.iter().any(|name| {
            name.eq_ignore_ascii_case(coding)
                || (*coding == "gzip" && name.eq_ignore_ascii_case("x-gzip"))
        })
    })
}

/// The codings an `Accept-Encoding` value names, each with whether it is
/// refused (a quality of zero).
fn codings(accept_encoding: &str) -> impl Iterator<Item = (&str, bool)> {
    accept_encoding.split(',').map(|item| {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.get(..2).is_some_and(|q| q.eq_ignore_ascii_case("q="))
                && p[2..].trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
        });
        (name, refused)
    })
}

/// Whether an `Accept-Encoding` value refuses an uncompressed body:
/// `identity;q=0`, or `*;q=0` without `identity` named with a non-zero
/// quality (RFC 9110, 12.5.3).
pub fn identity_refused(accept_encoding: &str) -> bool {
    let mut identity = None;
    let mut star = None;
    for (name, refused) in codings(accept_encoding) {
        if name.eq_ignore_ascii_case("identity") {
            identity = Some(!refused);
        } else if name == "*" {
            star = Some(!refused);
        }
    }
    match identity {
        Some(accepted) => !accepted,
        None => star == Some(false),
    }
}

#[cfg(test)]
mod coding_tests {
    use super::{fastest_coding, identity_refused};

    #[test]
    fn identity_is_refused_only_explicitly() {
        for refused in ["br, identity;q=0", "br, *;q=0", "br;q=1, IDENTITY; Q=0.000"] {
            assert!(identity_refused(refused), "{refused}");
        }
        for accepted in [
            "",
            "br",
            "br, *",
            "*;q=0, identity",
            "identity;q=0.5, *;q=0",
        ] {
            assert!(!identity_refused(accepted), "{accepted}");
        }
    }

    #[test]
    fn the_fastest_accepted_coding_wins() {
        assert_eq!(fastest_coding("gzip, deflate, br, zstd"), Some("zstd"));
        assert_eq!(fastest_coding("deflate, gzip, br"), Some("gzip"));
        assert_eq!(fastest_coding("br;q=1.0, gzip;q=0.5"), Some("gzip"));
        assert_eq!(fastest_coding("zstd;q=0, gzip;q=0.1"), Some("gzip"));
        assert_eq!(fastest_coding("ZSTD;Q=0.000, br"), Some("br"));
        assert_eq!(fastest_coding("x-gzip"), Some("gzip"));
        assert_eq!(fastest_coding("identity"), None);
        assert_eq!(fastest_coding("*"), None);
        assert_eq!(fastest_coding(""), None);
    }
}

//! Paging, one way for every list: the opaque cursors a page hands out for
//! its neighbours, and the neighbours' URLs (the request's own query with one
//! parameter replaced). The `Link` headers that carry them are written by
//! `http::paging`.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Datelike};

use crate::core::kind::Seek;

/// A keyset cursor: the page holds the rows whose id is below `after`
/// (`v1:<id>`, base64url).
pub fn encode_id(after: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{after}"))
}

/// The id of a cursor [`encode_id`] wrote; `None` for anything else.
pub fn decode_id(text: &str) -> Option<i64> {
    let text = decoded(text)?;
    text.strip_prefix("v1:")?.parse().ok()
}

/// A position cursor: a (time, id) place in a list's order
/// (`o1:<unix micros>:<id>`, base64url).
pub fn encode_position(at: Seek) -> String {
    URL_SAFE_NO_PAD.encode(format!("o1:{}:{}", at.at.timestamp_micros(), at.id))
}

/// The position of a cursor [`encode_position`] wrote, within PostgreSQL's
/// range of `timestamptz` (years 4713 BC to 294276); `None` for anything else.
pub fn decode_position(text: &str) -> Option<Seek> {
    let text = decoded(text)?;
    let (micros, id) = text.strip_prefix("o1:")?.split_once(':')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    (-4712..=294_275).contains(&at.year()).then_some(())?;
    Some(Seek {
        at,
        id: id.parse().ok()?,
    })
}

fn decoded(text: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()
}

/// Where [`link`] puts the replaced parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Before every other parameter.
    First,
    /// After every other parameter.
    Last,
}

/// `base` + `path` with the request's query `raw_query` (every parameter
/// kept as given, in order) and `name` set to `value` (left out when
/// `None`).
pub fn link(
    base: &str,
    path: &str,
    raw_query: &str,
    (name, value): (&str, Option<&str>),
    place: Place,
) -> String {
    let mut kept: Vec<String> = raw_query
        .split('&')
        .filter(|part| {
            !part.is_empty() && part.split_once('=').map_or(*part, |(key, _)| key).ne(name)
        })
        .map(str::to_owned)
        .collect();
    if let Some(value) = value {
        let pair = format!("{name}={value}");
        match place {
            Place::First => kept.insert(0, pair),
            Place::Last => kept.push(pair),
        }
    }
    if kept.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_we_did_not_write() {
        assert_eq!(decode_id(&encode_id(42)), Some(42));
        assert_eq!(decode_id(&encode_id(-1)), Some(-1));
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let seek = Seek { at, id: 7 };
        let back = decode_position(&encode_position(seek)).unwrap();
        assert_eq!((back.at, back.id), (at, 7));
        for junk in ["", "x", "djE6", "!!!", &encode_position(seek)] {
            assert_eq!(decode_id(junk), None, "{junk}");
        }
        assert!(decode_position(&encode_id(3)).is_none());
        assert!(decode_position(&URL_SAFE_NO_PAD.encode("o1:9223372036854775807:1")).is_none());
    }

    #[test]
    fn links_replace_one_parameter_and_keep_the_rest_in_order() {
        let q = "limit=5&cursor=abc&cursorx=1&format=csv";
        assert_eq!(
            link("http://h", "/p", q, ("cursor", Some("new")), Place::Last),
            "http://h/p?limit=5&cursorx=1&format=csv&cursor=new"
        );
        assert_eq!(
            link("http://h", "/p", q, ("cursor", None), Place::Last),
            "http://h/p?limit=5&cursorx=1&format=csv"
        );
        assert_eq!(
            link(
                "http://h",
                "/p",
                "offset=3&a=b",
                ("offset", Some("9")),
                Place::First
            ),
            "http://h/p?offset=9&a=b"
        );
        assert_eq!(
            link("http://h", "/p", "cursor=1", ("cursor", None), Place::Last),
            "http://h/p"
        );
    }
}

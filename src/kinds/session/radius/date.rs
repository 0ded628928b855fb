//! FreeRADIUS's date text, as `rlm_rest` sends `Event-Timestamp`:
//! `Nov 26 2026 01:16:08 UTC` (`%b %e %Y %H:%M:%S %Z`), in the server's own
//! time zone. Numeric offsets (`+0100`, `-05:00`) and unambiguous zone
//! abbreviations are read; an ambiguous one (`CST`: US Central, China or
//! Cuba; `IST`, `BST`, `AST`, …) or an unknown one cannot be, and the caller
//! falls back to the time received. FreeRADIUS should run with `TZ=UTC`.
//! RFC 3339 text is accepted too.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

/// Why a date could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateError {
    /// The date and time are fine, the zone is ambiguous or unknown.
    UnknownZone,
    /// Not a date in any accepted form.
    Malformed,
}

/// Abbreviations that name one offset only (seconds east of UTC).
const ZONES: &[(&str, i32)] = &[
    ("UTC", 0),
    ("UT", 0),
    ("GMT", 0),
    ("Z", 0),
    ("WET", 0),
    ("WEST", 3600),
    ("CET", 3600),
    ("CEST", 7200),
    ("MET", 3600),
    ("MEST", 7200),
    ("EET", 7200),
    ("EEST", 10800),
    ("MSK", 10800),
    ("SAST", 7200),
    ("PKT", 18000),
    ("WIB", 25200),
    ("HKT", 28800),
    ("SGT", 28800),
    ("AWST", 28800),
    ("JST", 32400),
    ("KST", 32400),
    ("ACST", 34200),
    ("ACDT", 37800),
    ("AEST", 36000),
    ("AEDT", 39600),
    ("NZST", 43200),
    ("NZDT", 46800),
    ("HST", -36000),
    ("AKST", -32400),
    ("AKDT", -28800),
    ("PST", -28800),
    ("PDT", -25200),
    ("MST", -25200),
    ("MDT", -21600),
    ("EST", -18000),
    ("EDT", -14400),
    ("NST", -12600),
    ("NDT", -9000),
];

/// Reads a FreeRADIUS date (or RFC 3339).
pub fn parse(text: &str) -> Result<DateTime<Utc>, DateError> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let parts: Vec<&str> = text.split_whitespace().collect();
    let (local, zone) = match parts.as_slice() {
        [month, day, year, time, zone] => (format!("{month} {day} {year} {time}"), Some(*zone)),
        [month, day, year, time] => (format!("{month} {day} {year} {time}"), None),
        _ => return Err(DateError::Malformed),
    };
    let naive = NaiveDateTime::parse_from_str(&local, "%b %d %Y %H:%M:%S")
        .map_err(|_| DateError::Malformed)?;
    let offset = match zone {
        // No zone: FreeRADIUS's local time, which should be UTC.
        None => return Err(DateError::UnknownZone),
        Some(zone) => offset_of(zone)?,
    };
    let offset = FixedOffset::east_opt(offset).ok_or(DateError::Malformed)?;
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|at| at.with_timezone(&Utc))
        .ok_or(DateError::Malformed)
}

/// Seconds east of UTC for `+0100`, `-05:00`, `+01` or an unambiguous name.
fn offset_of(zone: &str) -> Result<i32, DateError> {
    if let Some(rest) = zone
        .strip_prefix('+')
        .map(|r| (1, r))
        .or_else(|| zone.strip_prefix('-').map(|r| (-1, r)))
    {
        let (sign, digits) = rest;
        let digits: String = digits.chars().filter(|c| *c != ':').collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DateError::Malformed);
        }
        let (h, m) = match digits.len() {
            2 => (digits.parse::<i32>().unwrap_or(99), 0),
            4 => (
                digits[..2].parse::<i32>().unwrap_or(99),
                digits[2..].parse::<i32>().unwrap_or(99),
            ),
            _ => return Err(DateError::Malformed),
        };
        if h > 14 || m > 59 {
            return Err(DateError::Malformed);
        }
        return Ok(sign * (h * 3600 + m * 60));
    }
    if !zone.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(DateError::Malformed);
    }
    ZONES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(zone))
        .map(|(_, offset)| *offset)
        .ok_or(DateError::UnknownZone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn reads_freeradius_dates_in_known_zones() {
        assert_eq!(
            parse("Nov 26 2026 01:16:08 UTC"),
            Ok(at("2026-11-26T01:16:08Z"))
        );
        assert_eq!(
            parse("Nov  6 2026 01:16:08 GMT"),
            Ok(at("2026-11-06T01:16:08Z"))
        );
        assert_eq!(
            parse("Jul 01 2026 12:00:00 CEST"),
            Ok(at("2026-07-01T10:00:00Z"))
        );
        assert_eq!(
            parse("Nov 25 2026 17:40:00 -0600"),
            Ok(at("2026-11-25T23:40:00Z"))
        );
        assert_eq!(
            parse("Nov 25 2026 17:40:00 +05:30"),
            Ok(at("2026-11-25T12:10:00Z"))
        );
        assert_eq!(
            parse("2026-11-26T01:16:08Z"),
            Ok(at("2026-11-26T01:16:08Z"))
        );
    }

    #[test]
    fn ambiguous_or_unknown_zones_are_not_guessed() {
        assert_eq!(
            parse("Nov 25 2026 17:40:00 CST"),
            Err(DateError::UnknownZone)
        );
        assert_eq!(
            parse("Nov 25 2026 17:40:00 IST"),
            Err(DateError::UnknownZone)
        );
        assert_eq!(
            parse("Nov 25 2026 17:40:00 XYZT"),
            Err(DateError::UnknownZone)
        );
        assert_eq!(parse("Nov 25 2026 17:40:00"), Err(DateError::UnknownZone));
        assert_eq!(parse("yesterday"), Err(DateError::Malformed));
        assert_eq!(parse("Nov 32 2026 17:40:00 UTC"), Err(DateError::Malformed));
        assert_eq!(parse("Nov 25 2026 17:40:00 +99"), Err(DateError::Malformed));
    }
}

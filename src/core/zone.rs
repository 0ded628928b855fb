//! The reader's time zone (`tz=`): an IANA zone from jiff's time zone
//! database (the system's `/usr/share/zoneinfo`, or the copy bundled into
//! the binary where the system has none), and what windows and encoders ask
//! of it: the first instant of a local day, the offset at an instant, and
//! the instants a local time names (none in a gap, two in a fold).
//!
//! jiff rather than chrono-tz: it resolves gaps and folds explicitly
//! (`AmbiguousOffset`), finds the first instant of a day that has no
//! midnight (`Zoned::start_of_day`) and walks transitions, so no offset
//! arithmetic is written here.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// A time zone by its IANA name.
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

/// `tz` names no zone of the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "The parameter `tz` must be an IANA time zone name, such as Europe/Helsinki, \
     America/Santiago or UTC."
)]
pub struct UnknownZone;

/// What a local time without offset names in a zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// One instant.
    One(DateTime<Utc>),
    /// None: the clocks skipped it (a spring-forward gap).
    Gap,
    /// Two: the clocks showed it twice (a fall-back fold), earlier first.
    Fold(DateTime<Utc>, DateTime<Utc>),
}

/// The longest zone name accepted (the database's longest is 32 bytes).
const MAX_NAME: usize = 64;

impl Zone {
    /// The zone named `name` (case-insensitive, as the database's lookups
    /// are); its name in links is the database's spelling.
    pub fn parse(name: &str) -> Result<Zone, UnknownZone> {
        let plausible = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
        if !plausible {
            return Err(UnknownZone);
        }
        let tz = jiff::tz::db().get(name).map_err(|_| UnknownZone)?;
        let name = tz.iana_name().unwrap_or(name).to_owned();
        Ok(Zone { name, tz })
    }

    /// Loads the database (the system's directory is listed on first use),
    /// so that the first request naming a zone does not wait for it.
    pub fn warm_up() {
        let _ = jiff::tz::db().get("UTC");
    }

    /// The IANA name, as links write it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offset from UTC at `t`, in seconds.
    pub fn offset_at(&self, t: DateTime<Utc>) -> i32 {
        self.offset_at_second(t.timestamp())
    }

    /// The offset from UTC at Unix second `second`, in seconds (0 outside
    /// the range jiff can hold).
    pub fn offset_at_second(&self, second: i64) -> i32 {
        jiff::Timestamp::from_second(second).map_or(0, |ts| self.tz.to_offset(ts).seconds())
    }

    /// The Unix seconds `[from, until)` around `second` in which the offset
    /// is the one at `second` (as far as the database's transitions say;
    /// `None` for an end without one), and that offset.
    pub fn offset_span(&self, second: i64) -> (Option<i64>, Option<i64>, i32) {
        let Ok(ts) = jiff::Timestamp::from_second(second) else {
            return (Some(second), second.checked_add(1), 0);
        };
        let offset = self.tz.to_offset(ts).seconds();
        // Transitions fall on whole seconds: the one at or before `second`
        // is the first before `second + 1`.
        let from = jiff::Timestamp::from_second(second.saturating_add(1))
            .ok()
            .and_then(|after| self.tz.preceding(after).next())
            .map(|t| t.timestamp().as_second());
        let until = self
            .tz
            .following(ts)
            .next()
            .map(|t| t.timestamp().as_second())
            .filter(|until| *until > second);
        (from, until, offset)
    }

    /// The local date and time at `t`.
    pub fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.naive_utc() + chrono::Duration::seconds(i64::from(self.offset_at(t)))
    }

    /// The first instant of local day `date` (its midnight, or the end of
    /// the gap when the clocks skipped midnight); `None` out of range.
    pub fn start_of_day(&self, date: NaiveDate) -> Option<DateTime<Utc>> {
        use chrono::Datelike;
        let year = i16::try_from(date.year()).ok()?;
        let month = i8::try_from(date.month()).ok()?;
        let day = i8::try_from(date.day()).ok()?;
        let civil = jiff::civil::Date::new(year, month, day).ok()?;
        let start = civil.to_zoned(self.tz.clone()).ok()?.start_of_day().ok()?;
        DateTime::from_timestamp_micros(start.timestamp().as_microsecond())
    }

    /// The instants local time `local` names.
    pub fn resolve(&self, local: NaiveDateTime) -> Option<Local> {
        use chrono::{Datelike, Timelike};
        let civil = jiff::civil::DateTime::new(
            i16::try_from(local.year()).ok()?,
            i8::try_from(local.month()).ok()?,
            i8::try_from(local.day()).ok()?,
            i8::try_from(local.hour()).ok()?,
            i8::try_from(local.minute()).ok()?,
            i8::try_from(local.second()).ok()?,
            0,
        )
        .ok()?;
        let instant = |offset: jiff::tz::Offset| {
            let utc = local - chrono::Duration::seconds(i64::from(offset.seconds()));
            utc.and_utc()
        };
        Some(match self.tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => Local::One(instant(offset)),
            AmbiguousOffset::Gap { .. } => Local::Gap,
            AmbiguousOffset::Fold { before, after } => Local::Fold(instant(before), instant(after)),
        })
    }
}

impl Zone {
    /// `t` as RFC 3339 in this zone's local time, to the second, with its
    /// offset then (`2026-10-25T03:30:00+02:00`).
    pub fn rfc3339(&self, t: DateTime<Utc>) -> String {
        format!(
            "{}{}",
            self.local(t).format("%Y-%m-%dT%H:%M:%S"),
            format_offset(self.offset_at(t))
        )
    }
}

/// `±HH:MM` of an offset in seconds (seconds of historical offsets are
/// dropped: RFC 3339 has none).
pub fn format_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn names_are_checked_and_spelled_as_the_database_does() {
        assert_eq!(
            Zone::parse("europe/helsinki").unwrap().name(),
            "Europe/Helsinki"
        );
        assert_eq!(Zone::parse("UTC").unwrap().name(), "UTC");
        for bad in [
            "",
            "Mars/Olympus",
            "Europe/Helsinki\n",
            "../etc/passwd",
            &"A".repeat(65),
        ] {
            assert_eq!(Zone::parse(bad), Err(UnknownZone), "{bad:?}");
        }
    }

    #[test]
    fn days_start_at_their_first_instant() {
        let helsinki = Zone::parse("Europe/Helsinki").unwrap();
        assert_eq!(
            helsinki.start_of_day(date("2026-03-29")),
            Some(at("2026-03-28T22:00:00Z"))
        );
        assert_eq!(
            helsinki.start_of_day(date("2026-03-30")),
            Some(at("2026-03-29T21:00:00Z"))
        );
        // Santiago skips midnight on 2026-09-06: the day starts at 01:00-03:00.
        let santiago = Zone::parse("America/Santiago").unwrap();
        assert_eq!(
            santiago.start_of_day(date("2026-09-06")),
            Some(at("2026-09-06T04:00:00Z"))
        );
    }

    #[test]
    fn local_times_resolve_to_one_none_or_two_instants() {
        let helsinki = Zone::parse("Europe/Helsinki").unwrap();
        let local = |s: &str| s.parse::<NaiveDateTime>().unwrap();
        assert_eq!(
            helsinki.resolve(local("2026-10-25T02:00:00")),
            Some(Local::One(at("2026-10-24T23:00:00Z")))
        );
        assert_eq!(
            helsinki.resolve(local("2026-10-25T03:00:00")),
            Some(Local::Fold(
                at("2026-10-25T00:00:00Z"),
                at("2026-10-25T01:00:00Z")
            ))
        );
        assert_eq!(
            helsinki.resolve(local("2026-03-29T03:30:00")),
            Some(Local::Gap)
        );
        assert_eq!(helsinki.offset_at(at("2026-10-25T00:30:00Z")), 3 * 3600);
        assert_eq!(helsinki.offset_at(at("2026-10-25T01:30:00Z")), 2 * 3600);
        assert_eq!(format_offset(3 * 3600), "+03:00");
        assert_eq!(format_offset(-(3 * 3600 + 30 * 60)), "-03:30");
    }

    #[test]
    fn offset_spans_end_at_transitions() {
        let helsinki = Zone::parse("Europe/Helsinki").unwrap();
        let second = at("2026-07-01T00:00:00Z").timestamp();
        let (from, until, offset) = helsinki.offset_span(second);
        assert_eq!(offset, 3 * 3600);
        assert_eq!(from, Some(at("2026-03-29T01:00:00Z").timestamp()));
        assert_eq!(until, Some(at("2026-10-25T01:00:00Z").timestamp()));
        // At a transition itself: the new offset, from that second on.
        let (from, _, offset) = helsinki.offset_span(at("2026-10-25T01:00:00Z").timestamp());
        assert_eq!(offset, 2 * 3600);
        assert_eq!(from, Some(at("2026-10-25T01:00:00Z").timestamp()));
        let utc = Zone::parse("UTC").unwrap();
        assert_eq!(utc.offset_span(second), (None, None, 0));
    }
}

//! Timestamps written as `YYYY-MM-DDTHH:MM:SS[.ffffff]`, without allocation,
//! with the formatted second of the previous row reused.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, Timelike, Utc};

/// The longest timestamp: `+262143-12-31T23:59:60.999999` (29 bytes).
const TIMESTAMP_MAX: usize = 32;

/// Writes `value` as decimal digits, zero-padded to `width`, into `out` at `*at`.
#[inline]
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
#[inline]
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
    put_fraction(&mut out, &mut at, nanos % 1_000_000_000);
    (out, at)
}

/// Writes `.` and the microseconds of `nanos` (truncated, trailing zeros
/// trimmed) at `*at`, or nothing when they are zero.
#[inline]
fn put_fraction(out: &mut [u8; TIMESTAMP_MAX], at: &mut usize, nanos: u32) {
    let mut micros = nanos / 1_000;
    if micros == 0 {
        return;
    }
    let mut width = 6;
    while micros.is_multiple_of(10) {
        micros /= 10;
        width -= 1;
    }
    out[*at] = b'.';
    *at += 1;
    put_digits(out, at, micros, width);
}

/// A point in time as microseconds since the Unix epoch, always within
/// the range of [`DateTime<Utc>`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixMicros(i64);

impl UnixMicros {
    /// `micros` since the Unix epoch, if [`DateTime<Utc>`] can hold it.
    pub fn new(micros: i64) -> Option<UnixMicros> {
        (DateTime::<Utc>::MIN_UTC.timestamp_micros()..=DateTime::<Utc>::MAX_UTC.timestamp_micros())
            .contains(&micros)
            .then_some(UnixMicros(micros))
    }

    /// The same point as a [`DateTime<Utc>`].
    pub fn to_datetime(self) -> DateTime<Utc> {
        // In range by construction.
        DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }
}

/// [`write_timestamp`] with the formatted whole second of the last call
/// remembered: rows in time order share it, and only the fraction is new.
#[derive(Debug, Default)]
pub(super) struct SecondCache {
    /// The Unix second formatted in `text[..len]`, if any.
    second: Option<i64>,
    text: [u8; TIMESTAMP_MAX],
    len: usize,
    /// The reader's zone: times are written in its local time, followed by
    /// its offset then.
    zone: Option<Offsets>,
}

/// A zone's offset over the span of seconds around the last one asked,
/// between two of its transitions: rows in time order mostly fall in it.
#[derive(Debug)]
struct Offsets {
    zone: crate::core::zone::Zone,
    /// `[from, until)` in Unix seconds (an end `None` is open), and the
    /// offset in it; empty until first asked.
    from: Option<i64>,
    until: Option<i64>,
    offset: i32,
    known: bool,
    /// `±HH:MM` of `offset`.
    suffix: [u8; 6],
}

impl Offsets {
    /// The offset at `second`, from the span when it holds `second`.
    #[inline]
    fn at(&mut self, second: i64) -> i32 {
        let inside = self.known
            && self.from.is_none_or(|from| from <= second)
            && self.until.is_none_or(|until| second < until);
        if !inside {
            let (from, until, offset) = self.zone.offset_span(second);
            self.from = from;
            self.until = until;
            self.offset = offset;
            self.known = true;
            let text = crate::core::zone::format_offset(offset);
            self.suffix.copy_from_slice(&text.as_bytes()[..6]);
        }
        self.offset
    }
}

impl SecondCache {
    /// Times from now on in `zone`'s local time with its offset (UTC
    /// without a suffix, as always, for `None`).
    pub(super) fn set_zone(&mut self, zone: Option<crate::core::zone::Zone>) {
        self.zone = zone.map(|zone| Offsets {
            zone,
            from: None,
            until: None,
            offset: 0,
            known: false,
            suffix: *b"+00:00",
        });
        self.second = None;
    }

    #[inline]
    pub(super) fn write(&mut self, out: &mut BytesMut, ts: DateTime<Utc>) {
        let nanos = ts.timestamp_subsec_nanos();
        // A leap second (nanos >= 1e9) takes the full path.
        if nanos >= 1_000_000_000 && self.zone.is_none() {
            write_timestamp(out, ts);
            return;
        }
        self.write_second(out, ts.timestamp(), nanos % 1_000_000_000);
    }

    #[inline]
    pub(super) fn write_micros(&mut self, out: &mut BytesMut, t: UnixMicros) {
        // Below 1e9: a count of microseconds has no leap second.
        let nanos = (t.0.rem_euclid(1_000_000) * 1000) as u32;
        self.write_second(out, t.0.div_euclid(1_000_000), nanos);
    }

    /// Writes Unix second `second` (of a point `DateTime<Utc>` can hold)
    /// and the fraction `nanos`.
    #[inline]
    fn write_second(&mut self, out: &mut BytesMut, second: i64, nanos: u32) {
        if self.second != Some(second) {
            let local = match &mut self.zone {
                None => second,
                Some(zone) => second.saturating_add(i64::from(zone.at(second))),
            };
            let whole = DateTime::from_timestamp(local, 0)
                .or_else(|| DateTime::from_timestamp(second, 0))
                .unwrap_or_default();
            let (text, len) = encode_timestamp(whole);
            self.text = text;
            self.len = len;
            self.second = Some(second);
        }
        out.put_slice(&self.text[..self.len]);
        let mut fraction = [0u8; TIMESTAMP_MAX];
        let mut at = 0;
        put_fraction(&mut fraction, &mut at, nanos);
        out.put_slice(&fraction[..at]);
        if let Some(zone) = &self.zone {
            out.put_slice(&zone.suffix);
        }
    }
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
    use chrono::{NaiveDate, TimeZone};

    fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_nano_opt(h, mi, s, nanos)
            .unwrap()
            .and_utc()
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
        fn the_second_cache_writes_what_format_timestamp_does(
            start in -62_135_596_800i64..253_402_300_000,
            steps in proptest::collection::vec((0i64..3, 0u32..1_000_000_000), 1..40),
        ) {
            let mut cache = SecondCache::default();
            let mut secs = start;
            for (step, nanos) in steps {
                secs += step;
                let t = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
                let mut out = BytesMut::new();
                cache.write(&mut out, t);
                proptest::prop_assert_eq!(std::str::from_utf8(&out).unwrap(), format_timestamp(t));
            }
        }

        #[test]
        fn micros_write_what_format_timestamp_does(
            start in -62_135_596_800_000_000i64..253_402_300_000_000_000,
            steps in proptest::collection::vec(0i64..3_000_000, 1..40),
        ) {
            let mut cache = SecondCache::default();
            let mut micros = start;
            for step in steps {
                micros += step;
                let t = UnixMicros::new(micros).unwrap();
                let mut out = BytesMut::new();
                cache.write_micros(&mut out, t);
                proptest::prop_assert_eq!(
                    std::str::from_utf8(&out).unwrap(),
                    format_timestamp(t.to_datetime())
                );
            }
        }

        #[test]
        fn unix_micros_hold_only_what_a_datetime_can(micros in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(
                UnixMicros::new(micros).map(UnixMicros::to_datetime),
                DateTime::from_timestamp_micros(micros)
            );
        }
    }

    /// Issue 24: in a zone, times are local with the offset of their
    /// instant, across a transition and back (descending streams), and the
    /// cache of a second never carries an offset over a transition.
    #[test]
    fn zoned_times_carry_the_offset_of_their_instant() {
        let mut cache = SecondCache::default();
        cache.set_zone(Some(
            crate::core::zone::Zone::parse("Europe/Helsinki").unwrap(),
        ));
        let mut out = BytesMut::new();
        let times = [
            ts(2026, 10, 25, 0, 59, 59, 500_000_000),
            ts(2026, 10, 25, 1, 0, 0, 0),
            ts(2026, 10, 25, 1, 30, 0, 0),
            ts(2026, 10, 25, 0, 30, 0, 250_000_000),
            ts(2026, 3, 29, 0, 59, 59, 0),
            ts(2026, 3, 29, 1, 0, 0, 0),
        ];
        for t in times {
            cache.write_micros(&mut out, UnixMicros::new(t.timestamp_micros()).unwrap());
            out.put_u8(b' ');
        }
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "2026-10-25T03:59:59.5+03:00 2026-10-25T03:00:00+02:00 2026-10-25T03:30:00+02:00 \
             2026-10-25T03:30:00.25+03:00 2026-03-29T02:59:59+02:00 2026-03-29T04:00:00+03:00 "
        );
        // Back to UTC: no suffix, as without a zone.
        cache.set_zone(None);
        let mut out = BytesMut::new();
        cache.write(&mut out, times[1]);
        assert_eq!(&out[..], b"2026-10-25T01:00:00");
    }
}

//! Time partitions of a kind's table (issue 25): which ranges exist, what
//! they are called, and which ones the service makes ahead.
//!
//! A kind whose entry says so ([`crate::core::kind::Kind::partitioned`])
//! keeps its table as range partitions by its time column, each one
//! [`Interval`] long (a UTC month, or a UTC day), plus a default partition
//! that catches a record for a time no partition covers. The service makes
//! the partitions from the current one to [`Interval::ahead`] intervals
//! later, at start and every hour; a partition for an earlier interval is
//! made when the default partition holds records of it that retention
//! keeps (its records are moved there). The database layer
//! (`db::partition`) runs what this module computes.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};

/// How long one partition's range is (`ACCTSTREAM_PARTITIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// A UTC calendar month (the default).
    Monthly,
    /// A UTC day.
    Daily,
}

impl Interval {
    /// Parses the setting's value: `monthly` or `daily`; `None` for `none`
    /// (kinds' tables stay unpartitioned); an error for anything else.
    pub fn parse(text: &str) -> Result<Option<Interval>, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "monthly" | "month" => Ok(Some(Interval::Monthly)),
            "daily" | "day" => Ok(Some(Interval::Daily)),
            "none" | "off" => Ok(None),
            other => Err(format!(
                "`{other}` is not a partition interval: use monthly, daily or none"
            )),
        }
    }

    /// The setting's name of the interval.
    pub fn name(self) -> &'static str {
        match self {
            Interval::Monthly => "monthly",
            Interval::Daily => "daily",
        }
    }

    /// How many intervals after the current one have their partitions made
    /// ahead: three months, or fourteen days.
    pub fn ahead(self) -> u32 {
        match self {
            Interval::Monthly => 3,
            Interval::Daily => 14,
        }
    }

    /// The start of the interval holding `at`.
    pub fn start_of(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let day = at.date_naive();
        let first = match self {
            Interval::Monthly => day.with_day(1).unwrap_or(day),
            Interval::Daily => day,
        };
        midnight(first)
    }

    /// The start of the interval after the one starting at `start` (`None`
    /// past the last representable time).
    pub fn next(self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Interval::Monthly => start.checked_add_months(Months::new(1)),
            Interval::Daily => start.checked_add_signed(TimeDelta::days(1)),
        }
    }

    /// The partitions the service keeps made at `now`: the current
    /// interval's and [`Interval::ahead`] more, as `[from, to)` ranges.
    pub fn ahead_of(self, now: DateTime<Utc>) -> Vec<Range> {
        let mut ranges = Vec::new();
        let mut from = self.start_of(now);
        for _ in 0..=self.ahead() {
            let Some(to) = self.next(from) else { break };
            ranges.push(Range { from, to });
            from = to;
        }
        ranges
    }

    /// The range of the interval holding `at`.
    pub fn range_of(self, at: DateTime<Utc>) -> Option<Range> {
        let from = self.start_of(at);
        Some(Range {
            from,
            to: self.next(from)?,
        })
    }

    /// The upper bound of the partition an existing table becomes when it
    /// is converted at `now` holding records up to `latest`: the start of
    /// the second interval after the later of the two, so that records
    /// written while the conversion runs (the current interval, and the
    /// next one should it begin meanwhile) still fall below it.
    pub fn conversion_bound(
        self,
        now: DateTime<Utc>,
        latest: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let at = latest.map_or(now, |latest| latest.max(now));
        let next = self.next(self.start_of(at))?;
        self.next(next)
    }
}

/// A partition's range: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Its first instant.
    pub from: DateTime<Utc>,
    /// The first instant after it.
    pub to: DateTime<Utc>,
}

impl Range {
    /// The partition's name: the table's, `_p`, and the range's start
    /// (`auth_event_p2026_12`, or `auth_event_p2026_12_07` for a day).
    pub fn name(self, table: &str, interval: Interval) -> String {
        match interval {
            Interval::Monthly => format!("{table}_p{}", self.from.format("%Y_%m")),
            Interval::Daily => format!("{table}_p{}", self.from.format("%Y_%m_%d")),
        }
    }

    /// The bound of `CREATE TABLE … PARTITION OF` and `ATTACH PARTITION`.
    pub fn bound_sql(self) -> String {
        format!(
            "FOR VALUES FROM ('{}') TO ('{}')",
            self.from.to_rfc3339(),
            self.to.to_rfc3339()
        )
    }
}

/// The name of a table's default partition.
pub fn default_name(table: &str) -> String {
    format!("{table}_default")
}

/// The name an existing table takes when it becomes the first partition
/// of its converted self: every record before `bound`.
pub fn before_name(table: &str, bound: DateTime<Utc>) -> String {
    format!("{table}_before_{}", bound.format("%Y_%m_%d"))
}

/// The name of the check constraint that proves an existing table's rows
/// lie below `bound` (so that attaching it needs no scan under lock).
pub fn bound_constraint(table: &str) -> String {
    format!("{table}_partition_bound")
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn the_setting_names_an_interval_or_none() {
        assert_eq!(Interval::parse("monthly"), Ok(Some(Interval::Monthly)));
        assert_eq!(Interval::parse(" Daily "), Ok(Some(Interval::Daily)));
        assert_eq!(Interval::parse("none"), Ok(None));
        let error = Interval::parse("weekly").unwrap_err();
        assert!(error.contains("weekly") && error.contains("monthly, daily or none"));
    }

    #[test]
    fn months_are_made_from_the_current_one_three_ahead() {
        let ranges = Interval::Monthly.ahead_of(at(2026, 11, 30, 23));
        assert_eq!(ranges.len(), 4);
        assert_eq!(ranges[0].from, at(2026, 11, 1, 0));
        assert_eq!(ranges[0].to, at(2026, 12, 1, 0));
        assert_eq!(ranges[3].from, at(2027, 2, 1, 0));
        assert_eq!(ranges[3].to, at(2027, 3, 1, 0));
        assert_eq!(
            ranges[1].name("auth_event", Interval::Monthly),
            "auth_event_p2026_12"
        );
        assert_eq!(
            ranges[1].bound_sql(),
            "FOR VALUES FROM ('2026-12-01T00:00:00+00:00') TO ('2027-01-01T00:00:00+00:00')"
        );
    }

    #[test]
    fn days_are_made_fourteen_ahead_and_named_by_the_day() {
        let ranges = Interval::Daily.ahead_of(at(2026, 12, 31, 5));
        assert_eq!(ranges.len(), 15);
        assert_eq!(ranges[0].from, at(2026, 12, 31, 0));
        assert_eq!(ranges[1].from, at(2027, 1, 1, 0));
        assert_eq!(ranges[14].to, at(2027, 1, 15, 0));
        assert_eq!(
            ranges[1].name("client_event", Interval::Daily),
            "client_event_p2027_01_01"
        );
    }

    #[test]
    fn a_converted_table_covers_two_intervals_past_its_latest_record_or_now() {
        let now = at(2026, 12, 7, 17);
        assert_eq!(
            Interval::Monthly.conversion_bound(now, None),
            Some(at(2027, 2, 1, 0))
        );
        assert_eq!(
            Interval::Monthly.conversion_bound(now, Some(at(2027, 5, 3, 0))),
            Some(at(2027, 7, 1, 0))
        );
        assert_eq!(
            Interval::Daily.conversion_bound(now, Some(at(2020, 1, 1, 0))),
            Some(at(2026, 12, 9, 0))
        );
        assert_eq!(
            before_name("auth_event", at(2027, 2, 1, 0)),
            "auth_event_before_2027_02_01"
        );
    }

    #[test]
    fn the_range_of_a_time_is_its_interval() {
        let range = Interval::Monthly.range_of(at(1999, 2, 14, 3)).unwrap();
        assert_eq!(
            (range.from, range.to),
            (at(1999, 2, 1, 0), at(1999, 3, 1, 0))
        );
    }
}

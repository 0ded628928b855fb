//! The retention policy: which raw events are old enough to delete.
//!
//! Raw events are kept for `days` whole UTC days before today: the cutoff is
//! midnight (UTC) at the start of the day `days` days before `now`, and every
//! event before it is deleted. Aligning the cutoff to midnight means a day is
//! either kept whole or deleted whole, never half. The usage rollups are not
//! touched, so reports outlive the raw events.

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};

/// How long raw events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    days: u32,
}

impl RetentionPolicy {
    /// Keeps `days` whole UTC days before today; `0` disables retention.
    pub fn new(days: u32) -> RetentionPolicy {
        RetentionPolicy { days }
    }

    /// The number of days kept (`0`: retention disabled).
    pub fn days(self) -> u32 {
        self.days
    }

    /// True when retention deletes nothing, ever.
    pub fn is_disabled(self) -> bool {
        self.days == 0
    }

    /// Events with `occurred_at` before the returned instant are to be
    /// deleted. `None` when retention is disabled or the cutoff would lie
    /// before the earliest representable time (nothing can be that old).
    pub fn cutoff(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_disabled() {
            return None;
        }
        let midnight = now.date_naive().and_time(NaiveTime::MIN).and_utc();
        midnight.checked_sub_signed(TimeDelta::try_days(i64::from(self.days))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cutoff_is_midnight_days_ago() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 15, 37, 42).unwrap();
        assert_eq!(
            RetentionPolicy::new(180).cutoff(now),
            Some(Utc.with_ymd_and_hms(2026, 5, 26, 0, 0, 0).unwrap())
        );
        assert_eq!(
            RetentionPolicy::new(1).cutoff(now),
            Some(Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap())
        );
        let midnight = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(
            RetentionPolicy::new(1).cutoff(midnight),
            Some(Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap())
        );
    }

    #[test]
    fn zero_disables_and_huge_values_do_not_panic() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 15, 0, 0).unwrap();
        assert!(RetentionPolicy::new(0).is_disabled());
        assert_eq!(RetentionPolicy::new(0).cutoff(now), None);
        assert_eq!(RetentionPolicy::new(u32::MAX).cutoff(now), None);
        assert_eq!(RetentionPolicy::new(180).days(), 180);
        assert!(!RetentionPolicy::new(180).is_disabled());
    }
}

//! Retention: which rows are old enough to delete.
//!
//! A [`RetentionPolicy`] keeps `days` whole UTC days before today: the
//! cutoff is midnight (UTC) at the start of the day `days` days before
//! `now`, and every row before it is deleted. Aligning the cutoff to
//! midnight means a day is either kept whole or deleted whole, never half.
//! The usage rollups are not touched, so reports outlive the raw events.
//!
//! A [`Rule`] says which rows of one table a pass deletes: those whose time
//! column lies before the cutoff of its [`Days`], except the rows its `keep`
//! condition holds (open sessions, events not yet rolled up). Every kind
//! declares its rules (`Kind::retention`); the database layer runs them, in
//! batches, from SQL this module writes.

use std::fmt::Write as _;

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

/// Which setting's days a rule's cutoff comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Days {
    /// `ACCTSTREAM_RETENTION_DAYS`: accounting records and everything that
    /// holds their identities.
    Records,
    /// `ACCTSTREAM_AUDIT_RETENTION_DAYS`: the access audit trail.
    Audit,
}

/// Which rows of one table a retention pass deletes.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Its name in logs and `purge` output (the kind's name, or the table's
    /// purpose), e.g. `client_events`.
    pub name: &'static str,
    /// The table.
    pub table: &'static str,
    /// The `timestamptz` column compared with the cutoff; a row whose value
    /// is NULL is never deleted (an open session's stop).
    pub time: &'static str,
    /// A unique column, the tie-breaker of the deletion order.
    pub id: &'static str,
    /// Whose days.
    pub days: Days,
    /// An SQL condition on the table's row (never built from input) of rows
    /// kept whatever their age.
    pub keep: Option<&'static str>,
    /// An SQL condition that holds when a whole partition (`{partition}`
    /// in it) may hold a row `keep` holds, cheaper than asking each row
    /// (which reads the whole partition): it may hold when no such row is
    /// there (the partition then goes in batches), never the other way.
    pub keep_partition: Option<&'static str>,
}

impl Rule {
    /// The rule deleting `table`'s rows whose `time` is before the cutoff
    /// of [`Days::Records`], `id` breaking ties.
    pub const fn new(
        name: &'static str,
        table: &'static str,
        time: &'static str,
        id: &'static str,
    ) -> Rule {
        Rule {
            name,
            table,
            time,
            id,
            days: Days::Records,
            keep: None,
            keep_partition: None,
        }
    }

    /// The same rule, keeping the rows `condition` holds.
    pub const fn keeping(self, condition: &'static str) -> Rule {
        Rule {
            keep: Some(condition),
            ..self
        }
    }

    /// The same rule, asking `condition` (`{partition}`: the partition's
    /// name) instead of every row's `keep` whether a partition may hold a
    /// kept row ([`Rule::keep_partition`]).
    pub const fn keeping_partition(self, condition: &'static str) -> Rule {
        Rule {
            keep_partition: Some(condition),
            ..self
        }
    }

    /// The same rule, with the cutoff of `days`.
    pub const fn by(self, days: Days) -> Rule {
        Rule { days, ..self }
    }

    fn condition(&self, after: bool) -> String {
        let (table, time, id) = (self.table, self.time, self.id);
        let mut sql = format!("{table}.{time} < $1");
        if after {
            // The lower bound lets an index on the time column start there.
            let _ = write!(
                sql,
                " AND {table}.{time} >= $3 AND ({table}.{time}, {table}.{id}) > ($3, $4)"
            );
        }
        if let Some(keep) = self.keep {
            let _ = write!(sql, " AND NOT ({keep})");
        }
        sql
    }

    /// One batch: deletes the oldest `$2` rows before the cutoff `$1`
    /// (after the key `($3, $4)` of the previous batch when `after`), and
    /// returns how many it deleted with the last key (no row when none was
    /// left).
    pub fn batch_sql(&self, after: bool) -> String {
        let (table, time, id) = (self.table, self.time, self.id);
        format!(
            "WITH batch AS (SELECT {id} AS id, {time} AS at FROM {table} WHERE {} \
             ORDER BY {time}, {id} LIMIT $2), \
             gone AS (DELETE FROM {table} USING batch WHERE {table}.{id} = batch.id RETURNING 1) \
             SELECT (SELECT count(*) FROM gone), at, id FROM batch ORDER BY at DESC, id DESC LIMIT 1",
            self.condition(after)
        )
    }

    /// The leaf partitions of the rule's table whose range ends at or
    /// before the cutoff `$1`, by their bound: `(name, upper bound)`. A
    /// partition keyed on something other than a time, the default
    /// partition, and one whose range is open-ended are never among them;
    /// an unpartitioned table has none.
    pub fn partitions_sql(&self) -> String {
        format!(
            "SELECT name FROM (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, \
             substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([0-9][^'']*)''\\)') AS upper \
             FROM pg_partition_tree(to_regclass('{table}')) AS t \
             JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE t.isleaf AND t.level > 0) AS p \
             WHERE upper IS NOT NULL AND upper::timestamptz <= $1 ORDER BY upper::timestamptz",
            table = self.table
        )
    }

    /// Whether a pass may drop `partition` (a leaf partition of the rule's
    /// table, named as [`Rule::partitions_sql`] gives it) whole: it has rows,
    /// and every one of them is before the cutoff `$1` and kept by no
    /// `keep` condition. Each question is a separate `EXISTS`, so that an
    /// index of the time column answers the first two.
    pub fn droppable_sql(&self, partition: &str) -> String {
        let (table, time) = (self.table, self.time);
        let from = format!("FROM {partition} AS {table}");
        let mut sql = format!(
            "SELECT EXISTS (SELECT 1 {from}) \
             AND NOT EXISTS (SELECT 1 {from} WHERE {table}.{time} >= $1) \
             AND NOT EXISTS (SELECT 1 {from} WHERE {table}.{time} IS NULL)"
        );
        match (self.keep_partition, self.keep) {
            (Some(whole), _) => {
                let _ = write!(
                    sql,
                    " AND NOT ({})",
                    whole.replace("{partition}", partition)
                );
            }
            (None, Some(keep)) => {
                let _ = write!(sql, " AND NOT EXISTS (SELECT 1 {from} WHERE {keep})");
            }
            (None, None) => {}
        }
        sql
    }

    /// What a pass would delete: how many rows, the oldest and newest time.
    pub fn preview_sql(&self) -> String {
        format!(
            "SELECT count(*), min({time}), max({time}) FROM {table} WHERE {}",
            self.condition(false),
            time = self.time,
            table = self.table
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rules_write_batches_that_continue_after_the_last_key() {
        let rule = Rule::new("sessions", "radacct", "acctstoptime", "radacctid");
        assert_eq!(
            rule.batch_sql(false),
            "WITH batch AS (SELECT radacctid AS id, acctstoptime AS at FROM radacct \
             WHERE radacct.acctstoptime < $1 ORDER BY acctstoptime, radacctid LIMIT $2), \
             gone AS (DELETE FROM radacct USING batch WHERE radacct.radacctid = batch.id RETURNING 1) \
             SELECT (SELECT count(*) FROM gone), at, id FROM batch ORDER BY at DESC, id DESC LIMIT 1"
        );
        let kept = Rule::new("events", "auth_event", "occurred_at", "id").keeping("queued(id)");
        assert!(kept.batch_sql(true).contains(
            "WHERE auth_event.occurred_at < $1 AND auth_event.occurred_at >= $3 \
             AND (auth_event.occurred_at, auth_event.id) > ($3, $4) AND NOT (queued(id))"
        ));
        assert_eq!(
            kept.preview_sql(),
            "SELECT count(*), min(occurred_at), max(occurred_at) FROM auth_event \
             WHERE auth_event.occurred_at < $1 AND NOT (queued(id))"
        );
        assert_eq!(kept.days, Days::Records);
        assert_eq!(kept.by(Days::Audit).days, Days::Audit);
    }

    #[test]
    fn partitions_go_whole_only_when_every_row_may() {
        let rule = Rule::new("events", "auth_event", "occurred_at", "id").keeping("queued(id)");
        assert!(rule
            .partitions_sql()
            .contains("pg_partition_tree(to_regclass('auth_event'))"));
        assert_eq!(
            rule.droppable_sql("public.auth_event_2026_01"),
            "SELECT EXISTS (SELECT 1 FROM public.auth_event_2026_01 AS auth_event) \
             AND NOT EXISTS (SELECT 1 FROM public.auth_event_2026_01 AS auth_event \
             WHERE auth_event.occurred_at >= $1) \
             AND NOT EXISTS (SELECT 1 FROM public.auth_event_2026_01 AS auth_event \
             WHERE auth_event.occurred_at IS NULL) \
             AND NOT EXISTS (SELECT 1 FROM public.auth_event_2026_01 AS auth_event WHERE queued(id))"
        );
        // A rule that says how to ask a whole partition asks it so.
        let whole = rule.keeping_partition("queued_between((SELECT min(id) FROM {partition}))");
        assert!(whole.droppable_sql("public.auth_event_2026_01").ends_with(
            "WHERE auth_event.occurred_at IS NULL) \
             AND NOT (queued_between((SELECT min(id) FROM public.auth_event_2026_01)))"
        ));
    }

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

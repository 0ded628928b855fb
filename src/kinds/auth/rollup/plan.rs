//! Planning one step of the rollup catch-up: which contiguous range of event
//! ids to roll up in one transaction, and what becomes of the queued ranges
//! that step covers.
//!
//! Inserts queue id ranges (`usage_rollup_queue`, see
//! `sql/0004_rollup_queue.sql`); ranges of concurrent statements may overlap
//! or touch. A step takes the queued rows it has locked, merges the ranges
//! that overlap or touch the lowest one into one interval, caps it at a
//! budget of ids, and rolls up exactly `lo..=hi` of that interval. Rows
//! wholly inside are deleted; a row reaching past the cap keeps its rest.

/// One queued range: the queue row's id and its inclusive id bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedRange {
    /// The queue row's id.
    pub id: i64,
    /// First event id covered.
    pub lo: i64,
    /// Last event id covered.
    pub hi: i64,
}

/// What one catch-up step does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepPlan {
    /// First event id to roll up.
    pub lo: i64,
    /// Last event id to roll up (inclusive).
    pub hi: i64,
    /// Queue rows wholly covered: deleted by the step.
    pub delete: Vec<i64>,
    /// Queue rows covered in part: their `lo` becomes `hi + 1`.
    pub shorten: Vec<i64>,
}

impl StepPlan {
    /// Number of event ids the step covers.
    pub fn ids(&self) -> u64 {
        u64::try_from(self.hi - self.lo + 1).unwrap_or(0)
    }
}

/// Plans a step over `rows` rolling up at most `budget` ids (at least one).
/// Returns `None` when there are no rows.
pub fn plan_step(rows: &[QueuedRange], budget: u64) -> Option<StepPlan> {
    let mut sorted: Vec<QueuedRange> = rows.iter().copied().filter(|r| r.lo <= r.hi).collect();
    sorted.sort_by_key(|r| (r.lo, r.hi));
    let first = sorted.first()?;
    let lo = first.lo;
    let mut merged_hi = first.hi;
    for r in &sorted[1..] {
        if r.lo > merged_hi.saturating_add(1) {
            break;
        }
        merged_hi = merged_hi.max(r.hi);
    }
    let budget = i64::try_from(budget.max(1)).unwrap_or(i64::MAX);
    let hi = merged_hi.min(lo.saturating_add(budget - 1));
    let mut plan = StepPlan {
        lo,
        hi,
        ..StepPlan::default()
    };
    for r in &sorted {
        if r.lo > hi {
            continue;
        }
        if r.hi <= hi {
            plan.delete.push(r.id);
        } else {
            plan.shorten.push(r.id);
        }
    }
    plan.delete.sort_unstable();
    plan.shorten.sort_unstable();
    // Rows with lo > hi (never queued by the trigger) are dropped, too.
    plan.delete
        .extend(rows.iter().filter(|r| r.lo > r.hi).map(|r| r.id));
    Some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(id: i64, lo: i64, hi: i64) -> QueuedRange {
        QueuedRange { id, lo, hi }
    }

    #[test]
    fn nothing_queued_nothing_to_do() {
        assert_eq!(plan_step(&[], 100), None);
    }

    #[test]
    fn touching_and_overlapping_ranges_merge() {
        let plan = plan_step(&[q(1, 1, 10), q(2, 11, 20), q(3, 5, 25)], 1000).unwrap();
        assert_eq!((plan.lo, plan.hi), (1, 25));
        assert_eq!(plan.delete, [1, 2, 3]);
        assert!(plan.shorten.is_empty());
        assert_eq!(plan.ids(), 25);
    }

    #[test]
    fn a_gap_ends_the_step() {
        // A rolled-back or still running transaction left 21..=29 unqueued.
        let plan = plan_step(&[q(2, 30, 40), q(1, 1, 20)], 1000).unwrap();
        assert_eq!((plan.lo, plan.hi), (1, 20));
        assert_eq!(plan.delete, [1]);
        assert!(plan.shorten.is_empty());
    }

    #[test]
    fn the_budget_splits_a_big_range() {
        let plan = plan_step(&[q(7, 101, 1_000), q(8, 150, 160), q(9, 1_001, 1_100)], 300).unwrap();
        assert_eq!((plan.lo, plan.hi), (101, 400));
        assert_eq!(plan.delete, [8]);
        assert_eq!(plan.shorten, [7]);
    }

    #[test]
    fn a_queue_later_than_its_ids_is_fine() {
        // Queue order (commit order) differs from id order.
        let plan = plan_step(&[q(1, 50, 60), q(2, 10, 49)], 1000).unwrap();
        assert_eq!((plan.lo, plan.hi), (10, 60));
        assert_eq!(plan.delete, [1, 2]);
    }

    proptest! {
        /// Repeated steps (applying deletes and shortenings) cover every
        /// queued id, never exceed the budget, and end with an empty queue.
        #[test]
        fn steps_cover_every_queued_id(
            ranges in prop::collection::vec((0i64..500, 0i64..60), 0..30),
            budget in 1u64..120,
        ) {
            let mut queue: Vec<QueuedRange> = ranges
                .iter()
                .enumerate()
                .map(|(i, &(lo, len))| q(i as i64, lo, lo + len))
                .collect();
            let wanted: std::collections::BTreeSet<i64> =
                queue.iter().flat_map(|r| r.lo..=r.hi).collect();
            let mut covered = std::collections::BTreeSet::new();
            let mut steps = 0;
            while let Some(plan) = plan_step(&queue, budget) {
                steps += 1;
                prop_assert!(steps < 10_000);
                prop_assert!(plan.ids() <= budget);
                covered.extend(plan.lo..=plan.hi);
                queue.retain(|r| !plan.delete.contains(&r.id));
                for r in &mut queue {
                    if plan.shorten.contains(&r.id) {
                        prop_assert!(r.lo <= plan.hi && r.hi > plan.hi);
                        r.lo = plan.hi + 1;
                    } else {
                        // Untouched rows are wholly outside the step.
                        prop_assert!(r.lo > plan.hi || r.hi < plan.lo);
                    }
                }
            }
            prop_assert!(wanted.is_subset(&covered));
        }
    }
}

//! Spotting an `eventId` that repeats within one ingest request, in bounded
//! memory.
//!
//! The fast ingest path copies events straight into `auth_event`, which only
//! works when no `eventId` occurs twice in the request (the unique constraint
//! would refuse the second one, and the first occurrence must win instead).
//! [`SeenIds`] remembers every ID of the request as a 64-bit keyed hash
//! rather than the string: 8 bytes per ID in the table (about 19 MB at the
//! peak for a million IDs) whatever the ID's length, and never a client value
//! held longer than its record.
//!
//! Two different IDs with the same hash (a chance of about n²/2⁶⁵ for n IDs:
//! 3·10⁻⁸ for a million) only make [`SeenIds::insert`] report a repeat that is
//! not one; the caller then takes the exact (slower) path, so a collision
//! costs time, never correctness. A repeat is never missed. That is why 64
//! bits are enough, and they take half the memory of 128.

use std::{
    collections::{hash_map::RandomState, HashSet},
    hash::{BuildHasher, BuildHasherDefault, Hasher},
};

/// The event IDs seen so far in one request (see the module documentation).
#[derive(Debug, Default)]
pub struct SeenIds {
    /// A keyed SipHash function; the key is random, so a client cannot
    /// choose IDs that collide.
    keys: RandomState,
    seen: HashSet<u64, BuildHasherDefault<PassHasher>>,
}

impl SeenIds {
    /// An empty set.
    pub fn new() -> SeenIds {
        SeenIds::default()
    }

    /// Records `id`. False when it was seen before in this request (or, with
    /// negligible probability, an ID with the same 64-bit hash was).
    pub fn insert(&mut self, id: &str) -> bool {
        self.seen.insert(self.keys.hash_one(id))
    }

    /// The number of distinct IDs recorded.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// No ID recorded yet.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The hash table's own hasher: the keys are already uniformly distributed
/// keyed hashes, so they are used as they are rather than hashed again.
#[derive(Debug, Default)]
struct PassHasher(u64);

impl Hasher for PassHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64` keys; this keeps any other input
        // well-defined.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_spotted() {
        let mut seen = SeenIds::new();
        assert!(seen.is_empty());
        assert!(seen.insert("a"));
        assert!(seen.insert("b"));
        assert!(seen.insert("ab"));
        assert!(!seen.insert("a"));
        assert!(!seen.insert("ab"));
        assert!(seen.insert("A"));
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn many_distinct_ids_are_all_new() {
        let mut seen = SeenIds::new();
        for i in 0..200_000 {
            assert!(seen.insert(&format!("bench-{i:09}")), "{i}");
        }
        assert_eq!(seen.len(), 200_000);
        assert!(!seen.insert("bench-000123456"));
    }
}

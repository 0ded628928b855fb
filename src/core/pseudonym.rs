//! Keyed pseudonymisation of user identifiers.
//!
//! A pseudonym is the lowercase hex encoding of HMAC-SHA256(key, raw user id).
//! Only [`Pseudonym`] values can be handed to the encoders, so a raw user id
//! cannot end up in a response body by accident.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt};
use aes::{Aes256, Block};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The error returned when the pseudonymisation key is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pseudonymisation key is empty")]
pub struct EmptyKey;

/// One key of a schedule: in force from the first day of its month (UTC).
#[derive(Clone)]
struct Key {
    /// The month it takes effect (`None`: the first key, since always).
    from: Option<NaiveDate>,
    /// `from` as Unix seconds (`i64::MIN` for the first key).
    from_secs: i64,
    mac: HmacSha256,
    /// HMAC's padded keys of the usage-rollup key derived from this key.
    rollup_ipad: [u8; 64],
    rollup_opad: [u8; 64],
    /// An organization's permutation of the pseudonyms of this key
    /// ([`Pseudonymiser::in_tenant`]).
    seal: Option<Aes256>,
}

impl Key {
    fn new(from: Option<NaiveDate>, key: &[u8]) -> Result<Key, EmptyKey> {
        if key.is_empty() {
            return Err(EmptyKey);
        }
        // HMAC accepts keys of any length, so this cannot fail for a non-empty key.
        let mac = HmacSha256::new_from_slice(key).map_err(|_| EmptyKey)?;
        let mut derive = mac.clone();
        derive.update(ROLLUP_KEY_LABEL);
        let rollup_key = derive.finalize().into_bytes();
        let (mut rollup_ipad, mut rollup_opad) = ([0x36u8; 64], [0x5cu8; 64]);
        for (i, byte) in rollup_key.iter().enumerate() {
            rollup_ipad[i] ^= byte;
            rollup_opad[i] ^= byte;
        }
        let from_secs = from
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(i64::MIN, |t| t.and_utc().timestamp());
        Ok(Key {
            from,
            from_secs,
            mac,
            rollup_ipad,
            rollup_opad,
            seal: None,
        })
    }

    /// This key for `tenant`'s pseudonyms: AES-256 under a key derived
    /// from it (HMAC of a label and the organization's name).
    fn sealed(&self, tenant: &str) -> Key {
        let mut derive = self.mac.clone();
        derive.update(TENANT_KEY_LABEL);
        derive.update(tenant.as_bytes());
        let key = derive.finalize().into_bytes();
        Key {
            seal: Some(Aes256::new(&key)),
            ..self.clone()
        }
    }

    /// The pseudonym of `data` under this key.
    fn pseudonym(&self, data: &[u8]) -> Pseudonym {
        let mut mac = self.mac.clone();
        mac.update(data);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&mac.finalize().into_bytes());
        if let Some(seal) = &self.seal {
            for half in digest.chunks_exact_mut(16) {
                let mut block = Block::default();
                block.copy_from_slice(half);
                seal.encrypt_block(&mut block);
                half.copy_from_slice(&block);
            }
        }
        hex(&digest)
    }
}

/// What an organization's pseudonym key is derived with (HMAC under the
/// pseudonym key, then the organization's name).
const TENANT_KEY_LABEL: &[u8] = b"acctstream tenant pseudonym key v1\0";

/// What the usage-rollup key is derived with (HMAC under the pseudonym key).
const ROLLUP_KEY_LABEL: &[u8] = b"acctstream usage-rollup user key v1";

/// Computes pseudonyms with a secret key, or a schedule of keys by month.
///
/// Each keyed HMAC state is computed once and cloned for every pseudonym, so
/// the keys themselves are not kept. `Debug` never prints key material.
#[derive(Clone)]
pub struct Pseudonymiser {
    /// Ascending by `from`; the first has none.
    keys: Arc<[Key]>,
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymiser")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// A key schedule that cannot be used. The texts never contain a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A key is empty.
    #[error("entry {0} has an empty key")]
    EmptyKey(usize),
    /// No entry without a month (the key in force before every dated one).
    #[error("one entry must have no month: the key in force before the first dated one")]
    NoFirstKey,
    /// Several entries without a month.
    #[error("entries {0} and {1} both have no month; only the oldest key may")]
    TwoFirstKeys(usize, usize),
    /// Two entries for one month.
    #[error("entries {0} and {1} take effect in the same month")]
    SameMonth(usize, usize),
}

impl Pseudonymiser {
    /// Creates a pseudonymiser keyed with `key`, which must not be empty.
    pub fn new(key: &[u8]) -> Result<Self, EmptyKey> {
        Ok(Pseudonymiser {
            keys: Arc::from([Key::new(None, key)?]),
        })
    }

    /// Parses a schedule, `ACCTSTREAM_PSEUDONYM_KEYS`: comma-separated
    /// entries `YYYY-MM:<key>` (in force from that month, UTC) and exactly
    /// one `<key>` without a month (in force before every dated one), in
    /// any order; e.g. `2027-01:<key B>,<key A>`.
    pub fn schedule(text: &str) -> Result<Self, ScheduleError> {
        let mut keys: Vec<(usize, Key)> = Vec::new();
        for (index, entry) in text.split(',').enumerate() {
            let position = index + 1;
            let entry = entry.trim();
            let month = entry.get(..8).filter(|p| p.ends_with(':')).and_then(|p| {
                NaiveDate::parse_from_str(&format!("{}-01", &p[..7]), "%Y-%m-%d").ok()
            });
            let (from, key) = match month {
                Some(month) => (Some(month), &entry[8..]),
                None => (None, entry),
            };
            let key =
                Key::new(from, key.as_bytes()).map_err(|_| ScheduleError::EmptyKey(position))?;
            if let Some((other, _)) = keys.iter().find(|(_, k)| k.from == from) {
                return Err(match from {
                    None => ScheduleError::TwoFirstKeys(*other, position),
                    Some(_) => ScheduleError::SameMonth(*other, position),
                });
            }
            keys.push((position, key));
        }
        keys.sort_by_key(|(_, k)| k.from_secs);
        if keys.first().is_none_or(|(_, k)| k.from.is_some()) {
            return Err(ScheduleError::NoFirstKey);
        }
        Ok(Pseudonymiser {
            keys: keys.into_iter().map(|(_, k)| k).collect(),
        })
    }

    /// How many keys the schedule has.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The index of the key in force at `at`.
    pub fn index_at(&self, at: DateTime<Utc>) -> usize {
        if self.keys.len() == 1 {
            return 0;
        }
        let secs = at.timestamp();
        self.keys
            .iter()
            .rposition(|k| k.from_secs <= secs)
            .unwrap_or(0)
    }

    /// The pseudonymiser of key `index` alone (the last key beyond the end).
    pub fn only(&self, index: usize) -> Pseudonymiser {
        match self.keys.get(index).or(self.keys.last()) {
            Some(key) if self.keys.len() > 1 => Pseudonymiser {
                keys: Arc::from([key.clone()]),
            },
            _ => self.clone(),
        }
    }

    /// Each key alone, oldest first.
    pub fn each(&self) -> impl Iterator<Item = Pseudonymiser> + '_ {
        (0..self.keys.len()).map(|i| self.only(i))
    }

    /// The pseudonym of `raw_user_id` under the key in force now: the
    /// lowercase hex HMAC-SHA256 of its UTF-8 bytes.
    pub fn pseudonymise(&self, raw_user_id: &str) -> Pseudonym {
        match &*self.keys {
            [only] => only.pseudonym(raw_user_id.as_bytes()),
            _ => self.pseudonymise_at(raw_user_id, Utc::now()),
        }
    }

    /// The pseudonym of `raw_user_id` under the key in force at `at`.
    pub fn pseudonymise_at(&self, raw_user_id: &str, at: DateTime<Utc>) -> Pseudonym {
        let key = &self.keys[self.index_at(at).min(self.keys.len() - 1)];
        key.pseudonym(raw_user_id.as_bytes())
    }

    /// The pseudonymiser of organization `tenant`'s pseudonyms (issue 28):
    /// each pseudonym of this one, permuted by AES-256 (its two halves)
    /// under a key derived from the pseudonym key and the organization. So
    /// one person's pseudonyms in two organizations are unrelated (they
    /// cannot join their data on them), equal within one across kinds, and
    /// [`Pseudonymiser::unseal`] finds the pseudonym they stand for. The
    /// default organization's are this one's.
    pub fn in_tenant(&self, tenant: &str) -> Pseudonymiser {
        if tenant == crate::core::tenant::DEFAULT_TENANT {
            return self.clone();
        }
        Pseudonymiser {
            keys: self.keys.iter().map(|k| k.sealed(tenant)).collect(),
        }
    }

    /// The pseudonyms (of the unpermuted pseudonymiser) an organization's
    /// pseudonym `shown` may stand for: one per key of the schedule, the
    /// month of the record being unknown (the others stand for nothing).
    /// `shown` itself for a pseudonymiser that permutes nothing; none for
    /// a text that is no pseudonym.
    pub fn unseal(&self, shown: &str) -> Vec<String> {
        let mut digest = [0u8; 32];
        if shown.len() != 64 || hex_decode(shown, &mut digest).is_none() {
            return Vec::new();
        }
        let mut found: Vec<String> = Vec::new();
        for key in self.keys.iter() {
            let Some(seal) = &key.seal else {
                return vec![shown.to_owned()];
            };
            let mut open = digest;
            for half in open.chunks_exact_mut(16) {
                let mut block = Block::default();
                block.copy_from_slice(half);
                seal.decrypt_block(&mut block);
                half.copy_from_slice(&block);
            }
            let text = hex(&open).as_str().to_owned();
            if !found.contains(&text) {
                found.push(text);
            }
        }
        found
    }

    /// The usage-rollup keys, as `usage_rollup_range` takes them: the first
    /// day each is in force (the first key: 0001-01-01), and HMAC's inner
    /// and outer padded keys.
    pub fn rollup_keys(&self) -> RollupKeys {
        let first = NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or_default();
        RollupKeys {
            from: self.keys.iter().map(|k| k.from.unwrap_or(first)).collect(),
            ipads: self.keys.iter().map(|k| k.rollup_ipad.to_vec()).collect(),
            opads: self.keys.iter().map(|k| k.rollup_opad.to_vec()).collect(),
        }
    }
}

/// The usage-rollup keys of a schedule (key material: `Debug` shows none).
/// The default has no key: rolling up with it fails.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RollupKeys {
    /// The first day each key is in force.
    pub from: Vec<NaiveDate>,
    /// HMAC's inner padded keys.
    pub ipads: Vec<Vec<u8>>,
    /// HMAC's outer padded keys.
    pub opads: Vec<Vec<u8>>,
}

impl fmt::Debug for RollupKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollupKeys")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// 64 lowercase hex digits of `digest`.
fn hex(digest: &[u8; 32]) -> Pseudonym {
    let mut out = [0u8; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
        let hex = HEX_PAIRS[usize::from(*byte)];
        pair.copy_from_slice(&hex);
    }
    Pseudonym(out)
}

/// The bytes of lowercase hex `text` into `out` (`None` unless it is
/// exactly twice as long, of lowercase hex digits).
fn hex_decode(text: &str, out: &mut [u8]) -> Option<()> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if text.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

/// Lowercase hex digit pairs for every byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    table
};

/// A pseudonymised user id: 64 lowercase hex ASCII characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pseudonym([u8; 64]);

impl Pseudonym {
    /// Returns the pseudonym as a string slice.
    pub fn as_str(&self) -> &str {
        // The bytes are always ASCII hex digits, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Returns the pseudonym's ASCII bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pseudonym").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default number of entries a [`PseudonymCache`] holds before it is
/// cleared: at most about 7 MB per stream, reached only by a window with
/// that many distinct values (a week of a 20,000-user campus needs 20,000;
/// with 16,384 the memo was cleared over and over, and 7 % of rows paid for
/// an HMAC).
pub const DEFAULT_CACHE_ENTRIES: usize = 65_536;

/// A bounded memo used by one stream: heavy users repeat, so most rows skip the HMAC.
///
/// When the memo reaches its entry limit it is cleared, so memory stays
/// bounded: 128 bytes per entry for values of up to 63 bytes (user ids,
/// e-mail addresses and most directory names, MACs, IP addresses), which are
/// kept inline, so a lookup touches two cache lines of one slot and no
/// second allocation; longer values are boxed in a table of their own.
pub struct PseudonymCache {
    pseudonymiser: Pseudonymiser,
    /// foldhash rather than SipHash: about 3× faster on short keys, with a
    /// per-process random seed (the keys come from stored data).
    state: foldhash::fast::RandomState,
    short: hashbrown::HashTable<Short>,
    long: hashbrown::HashTable<Long>,
    max_entries: usize,
    /// The answer when memoisation is off.
    last: Pseudonym,
}

/// Longest raw value kept inside the table's slot.
const INLINE_KEY: usize = 63;

/// How many classes of values [`PseudonymCache::get_with`] keeps apart.
pub const CLASSES: u8 = 4;

/// A raw value of up to [`INLINE_KEY`] bytes and its class: the length (low
/// six bits) and the class (high two), then the bytes, zero-padded to 64
/// bytes, as words (compared without a call to `memcmp`).
#[derive(Clone, Copy)]
struct ShortKey([u64; 8]);

impl ShortKey {
    /// `class` is below [`CLASSES`].
    fn new(class: u8, raw: &[u8]) -> Option<ShortKey> {
        let len = u8::try_from(raw.len())
            .ok()
            .filter(|_| raw.len() <= INLINE_KEY)?;
        let mut bytes = [0; INLINE_KEY + 1];
        bytes[0] = len | class << 6;
        bytes[1..=raw.len()].copy_from_slice(raw);
        let mut words = [0; 8];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut eight = [0; 8];
            eight.copy_from_slice(chunk);
            *word = u64::from_ne_bytes(eight);
        }
        Some(ShortKey(words))
    }

    fn matches(&self, other: &ShortKey) -> bool {
        self.0
            .iter()
            .zip(&other.0)
            .fold(0, |differ, (a, b)| differ | (a ^ b))
            == 0
    }
}

/// One memoised pseudonym and the short raw value it stands for: two
/// cache lines.
#[repr(align(64))]
struct Short {
    raw: ShortKey,
    pseudonym: Pseudonym,
}

/// Emptied tables of finished caches, kept for the next ones: a stream's
/// first rows then neither grow a table step by step nor fault its pages
/// in (a feed's pages are many short streams). A table is cleared before
/// it is kept, so no value outlives its stream. At most [`SPARES`] tables,
/// each of at most [`SPARE_CAPACITY`] entries (2 MiB).
static SPARE: std::sync::Mutex<Vec<hashbrown::HashTable<Short>>> =
    std::sync::Mutex::new(Vec::new());
/// How many emptied tables [`SPARE`] keeps.
const SPARES: usize = 4;
/// The largest table [`SPARE`] keeps.
const SPARE_CAPACITY: usize = 16_384;

/// A kept empty table, or a new one.
fn spare_table() -> hashbrown::HashTable<Short> {
    SPARE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .unwrap_or_default()
}

impl Drop for PseudonymCache {
    fn drop(&mut self) {
        let mut short = std::mem::take(&mut self.short);
        if short.capacity() == 0 || short.capacity() > SPARE_CAPACITY {
            return;
        }
        short.clear();
        let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < SPARES {
            spare.push(short);
        }
    }
}

/// One memoised pseudonym and the long raw value (and its class) it stands for.
struct Long {
    class: u8,
    raw: Box<[u8]>,
    pseudonym: Pseudonym,
}

impl fmt::Debug for PseudonymCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PseudonymCache")
            .field("entries", &self.len())
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl PseudonymCache {
    /// Creates a cache holding at most [`DEFAULT_CACHE_ENTRIES`] entries.
    pub fn new(pseudonymiser: Pseudonymiser) -> Self {
        Self::with_capacity_limit(pseudonymiser, DEFAULT_CACHE_ENTRIES)
    }

    /// Creates a cache holding at most `max_entries` entries (0 disables memoisation).
    pub fn with_capacity_limit(pseudonymiser: Pseudonymiser, max_entries: usize) -> Self {
        PseudonymCache {
            pseudonymiser,
            state: foldhash::fast::RandomState::default(),
            short: if max_entries > 0 {
                spare_table()
            } else {
                hashbrown::HashTable::new()
            },
            long: hashbrown::HashTable::new(),
            max_entries,
            last: Pseudonym([b'0'; 64]),
        }
    }

    /// Returns the pseudonym of `raw_user_id`, computing and remembering it on a miss.
    pub fn get(&mut self, raw_user_id: &str) -> &Pseudonym {
        self.get_with(0, raw_user_id, |p| p.pseudonymise(raw_user_id))
    }

    /// Returns the memoised pseudonym for `raw_user_id` of class `class`
    /// (below [`CLASSES`]), computing it with `compute` on a miss (e.g.
    /// after normalising the value). Values are memoised by class and raw
    /// text: the same text normalised two ways (a RADIUS user name that is
    /// a MAC address in another notation) is two entries.
    pub fn get_with(
        &mut self,
        class: u8,
        raw_user_id: &str,
        compute: impl FnOnce(&Pseudonymiser) -> Pseudonym,
    ) -> &Pseudonym {
        if self.max_entries == 0 {
            self.last = compute(&self.pseudonymiser);
            return &self.last;
        }
        let raw = raw_user_id.as_bytes();
        let class = class % CLASSES;
        let full = self.len() >= self.max_entries;
        let state = &self.state;
        let pseudonymiser = &self.pseudonymiser;
        if let Some(wanted) = ShortKey::new(class, raw) {
            let hash = state.hash_one(wanted.0);
            if full && self.short.find(hash, |m| m.raw.matches(&wanted)).is_none() {
                self.short.clear();
                self.long.clear();
            }
            &self
                .short
                .entry(
                    hash,
                    |m| m.raw.matches(&wanted),
                    |m| state.hash_one(m.raw.0),
                )
                .or_insert_with(|| Short {
                    raw: wanted,
                    pseudonym: compute(pseudonymiser),
                })
                .into_mut()
                .pseudonym
        } else {
            let hash = state.hash_one((class, raw));
            let matches = |m: &Long| m.class == class && *m.raw == *raw;
            if full && self.long.find(hash, matches).is_none() {
                self.short.clear();
                self.long.clear();
            }
            &self
                .long
                .entry(hash, matches, |m| state.hash_one((m.class, &*m.raw)))
                .or_insert_with(|| Long {
                    class,
                    raw: raw.into(),
                    pseudonym: compute(pseudonymiser),
                })
                .into_mut()
                .pseudonym
        }
    }

    /// Returns the number of memoised entries.
    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    /// Returns `true` when nothing is memoised.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the lowercase hex HMAC-SHA256 of `data` under `key` (any length, including empty).
    ///
    /// The primitive behind [`Pseudonymiser::pseudonymise`] for any key (RFC 4231's test
    /// vectors include empty keys, which a `Pseudonymiser` refuses); test-only.
    fn hmac_hex(key: &[u8], data: &[u8]) -> Pseudonym {
        match HmacSha256::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(data);
                let mut digest = [0u8; 32];
                digest.copy_from_slice(&mac.finalize().into_bytes());
                hex(&digest)
            }
            // Unreachable: HMAC accepts keys of any length (long keys are hashed first).
            Err(_) => Pseudonym([b'0'; 64]),
        }
    }

    #[test]
    fn an_organization_has_its_own_pseudonyms_and_they_unseal() {
        let schedule = Pseudonymiser::schedule("k-first,2026-06:k-june").unwrap();
        let (acme, globex) = (schedule.in_tenant("acme"), schedule.in_tenant("globex"));
        let may = DateTime::parse_from_rfc3339("2026-05-10T00:00:00Z")
            .unwrap()
            .to_utc();
        let july = DateTime::parse_from_rfc3339("2026-07-10T00:00:00Z")
            .unwrap()
            .to_utc();
        for at in [may, july] {
            let plain = schedule.pseudonymise_at("jane", at);
            let (a, g) = (
                acme.pseudonymise_at("jane", at),
                globex.pseudonymise_at("jane", at),
            );
            // Unrelated across organizations and to the plain one; the
            // default organization's are the plain ones.
            assert!(a != plain && g != plain && a != g);
            assert_eq!(
                schedule.in_tenant("default").pseudonymise_at("jane", at),
                plain
            );
            // Equal within one organization, and deterministic.
            assert_eq!(schedule.in_tenant("acme").pseudonymise_at("jane", at), a);
            // Unsealed: one candidate per key, the plain pseudonym among them.
            let candidates = acme.unseal(a.as_str());
            assert_eq!(candidates.len(), 2);
            assert!(candidates.contains(&plain.as_str().to_owned()));
            assert!(!globex
                .unseal(a.as_str())
                .contains(&plain.as_str().to_owned()));
        }
        // Without a permutation a pseudonym stands for itself; a text that
        // is none stands for nothing.
        let p = schedule.pseudonymise("x");
        assert_eq!(schedule.unseal(p.as_str()), [p.as_str()]);
        assert!(acme.unseal("not hex").is_empty());
        assert!(acme.unseal(&"A".repeat(64)).is_empty());
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc4231_vectors() {
        // (key, data, HMAC-SHA-256), from RFC 4231 section 4.
        let cases: Vec<(Vec<u8>, Vec<u8>, &str)> = vec![
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in &cases {
            assert_eq!(hmac_hex(key, data).as_str(), *expected);
            let p = Pseudonymiser::new(key).unwrap();
            if let Ok(s) = std::str::from_utf8(data) {
                assert_eq!(p.pseudonymise(s).as_str(), *expected);
            }
        }
        // Test case 5: output truncated to 128 bits.
        assert_eq!(
            &hmac_hex(&[0x0c; 20], b"Test With Truncation").as_str()[..32],
            "a3b6167473100ee06e0c796c2955552b"
        );
    }

    #[test]
    fn lowercase_hex_and_bytes() {
        let p = Pseudonymiser::new(b"secret")
            .unwrap()
            .pseudonymise("alice@example.org");
        assert_eq!(p.as_str().len(), 64);
        assert!(p
            .as_bytes()
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert_eq!(p.as_bytes(), p.as_str().as_bytes());
        assert_eq!(p.to_string(), p.as_str());
        // Different ids and different keys give different pseudonyms.
        assert_ne!(
            p,
            Pseudonymiser::new(b"secret")
                .unwrap()
                .pseudonymise("bob@example.org")
        );
        assert_ne!(
            p,
            Pseudonymiser::new(b"secret2")
                .unwrap()
                .pseudonymise("alice@example.org")
        );
        // Non-ASCII ids are hashed as UTF-8.
        let k = Pseudonymiser::new(b"k").unwrap();
        assert_eq!(
            k.pseudonymise("Jörg 東京"),
            hmac_hex(b"k", "Jörg 東京".as_bytes())
        );
        assert_eq!(k.pseudonymise(""), hmac_hex(b"k", b""));
    }

    #[test]
    fn hex_table() {
        assert_eq!(HEX_PAIRS[0x00], *b"00");
        assert_eq!(HEX_PAIRS[0x0f], *b"0f");
        assert_eq!(HEX_PAIRS[0xa5], *b"a5");
        assert_eq!(HEX_PAIRS[0xff], *b"ff");
    }

    #[test]
    fn empty_key_is_rejected() {
        assert_eq!(Pseudonymiser::new(b"").unwrap_err(), EmptyKey);
        assert_eq!(EmptyKey.to_string(), "the pseudonymisation key is empty");
    }

    #[test]
    fn debug_hides_the_key() {
        let p = Pseudonymiser::new(b"super-secret-key").unwrap();
        let debug = format!("{p:?}");
        assert_eq!(debug, "Pseudonymiser { keys: 1, .. }");
        let cache = PseudonymCache::new(p);
        let debug = format!("{cache:?}");
        assert!(!debug.contains("super-secret-key"));
        assert!(debug.starts_with("PseudonymCache {"));
    }

    #[test]
    fn cache_matches_direct_computation() {
        let p = Pseudonymiser::new(b"key").unwrap();
        let mut cache = PseudonymCache::new(p.clone());
        for round in 0..3 {
            for i in 0..100 {
                let id = format!("user-{i}");
                assert_eq!(*cache.get(&id), p.pseudonymise(&id), "round {round}");
            }
        }
        assert_eq!(cache.len(), 100);
    }

    #[test]
    fn short_and_long_keys_are_told_apart() {
        let p = Pseudonymiser::new(b"key").unwrap();
        let mut cache = PseudonymCache::new(p.clone());
        // Lengths on both sides of the inline limit, each a prefix of the next,
        // and values that differ only in a zero byte or past the limit.
        let long = "x".repeat(2 * INLINE_KEY);
        let mut ids: Vec<String> = (0..=long.len()).map(|n| long[..n].to_owned()).collect();
        ids.push(format!("{}\0", &long[..3]));
        ids.push(format!("{}y", &long[..INLINE_KEY + 5]));
        for round in 0..2 {
            for id in &ids {
                assert_eq!(*cache.get(id), p.pseudonymise(id), "{round} {id:?}");
            }
        }
        assert_eq!(cache.len(), ids.len());
    }

    #[test]
    fn classes_are_memoised_apart() {
        let p = Pseudonymiser::new(b"key").unwrap();
        let mut cache = PseudonymCache::new(p.clone());
        let long = "L".repeat(2 * INLINE_KEY);
        for raw in ["AA-BB-CC-DD-EE-FF", long.as_str()] {
            let plain = p.pseudonymise(raw);
            let lower = p.pseudonymise(&raw.to_lowercase());
            for _ in 0..2 {
                assert_eq!(*cache.get_with(0, raw, |p| p.pseudonymise(raw)), plain);
                let got = *cache.get_with(2, raw, |p| p.pseudonymise(&raw.to_lowercase()));
                assert_eq!(got, lower, "{raw}");
            }
        }
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn cache_stays_bounded() {
        let p = Pseudonymiser::new(b"key").unwrap();
        let mut cache = PseudonymCache::with_capacity_limit(p.clone(), 10);
        for i in 0..1000 {
            let id = format!("user-{i}");
            assert_eq!(*cache.get(&id), p.pseudonymise(&id));
            assert!(cache.len() <= 10);
        }
        assert!(!cache.is_empty());
        let mut none = PseudonymCache::with_capacity_limit(p.clone(), 0);
        assert_eq!(*none.get("x"), p.pseudonymise("x"));
        assert_eq!(*none.get("x"), p.pseudonymise("x"));
        assert!(none.is_empty());
    }

    #[test]
    fn a_schedule_uses_each_key_in_its_months() {
        let schedule = Pseudonymiser::schedule("2027-01:key-b, key-a ,2027-06:key-c").unwrap();
        let (a, b, c) = (
            Pseudonymiser::new(b"key-a").unwrap(),
            Pseudonymiser::new(b"key-b").unwrap(),
            Pseudonymiser::new(b"key-c").unwrap(),
        );
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        for (time, expected) in [
            ("2026-12-31T23:59:59Z", &a),
            ("2027-01-01T00:00:00Z", &b),
            ("2027-05-31T12:00:00Z", &b),
            ("2027-06-01T00:00:00Z", &c),
        ] {
            assert_eq!(
                schedule.pseudonymise_at("jane", at(time)),
                expected.pseudonymise("jane"),
                "{time}"
            );
        }
        assert_eq!(schedule.key_count(), 3);
        assert_eq!(schedule.only(1).pseudonymise("x"), b.pseudonymise("x"));
        assert_eq!(schedule.each().count(), 3);
        let keys = schedule.rollup_keys();
        assert_eq!(keys.from.len(), 3);
        assert_eq!(keys.from[1].to_string(), "2027-01-01");
        assert!(!format!("{keys:?}{schedule:?}").contains("key-"));
        // A single key is the same as Pseudonymiser::new.
        assert_eq!(
            Pseudonymiser::schedule("key-a").unwrap().pseudonymise("j"),
            a.pseudonymise("j")
        );
    }

    #[test]
    fn a_cache_starts_empty_even_on_a_kept_table() {
        let p = Pseudonymiser::new(b"spare-key").unwrap();
        let mut first = PseudonymCache::new(p.clone());
        for i in 0..3000 {
            first.get(&format!("user{i}"));
        }
        assert_eq!(first.len(), 3000);
        drop(first);
        // The next caches may reuse the emptied table: none holds a value
        // of the one dropped, and each computes its pseudonyms afresh.
        for _ in 0..SPARES + 1 {
            let mut next = PseudonymCache::new(p.clone());
            assert!(next.is_empty());
            assert_eq!(next.get("user7"), &p.pseudonymise("user7"));
            assert_eq!(next.len(), 1);
        }
        let kept = SPARE.lock().unwrap_or_else(|e| e.into_inner());
        assert!(kept.len() <= SPARES);
        assert!(kept
            .iter()
            .all(|t| t.is_empty() && t.capacity() <= SPARE_CAPACITY));
    }

    #[test]
    fn bad_schedules_say_which_entry_without_the_key() {
        for (text, error) in [
            ("2027-01:b", ScheduleError::NoFirstKey),
            ("a,b", ScheduleError::TwoFirstKeys(1, 2)),
            ("a,2027-01:b,2027-01:c", ScheduleError::SameMonth(2, 3)),
            ("a,2027-01:", ScheduleError::EmptyKey(2)),
        ] {
            assert_eq!(Pseudonymiser::schedule(text).unwrap_err(), error, "{text}");
        }
        // Something that is not a month is part of the key.
        assert_eq!(Pseudonymiser::schedule("2027-13:x").unwrap().key_count(), 1);
    }
}

//! Keyed pseudonymisation of user identifiers.
//!
//! A pseudonym is the lowercase hex encoding of HMAC-SHA256(key, raw user id).
//! Only [`Pseudonym`] values can be handed to the encoders, so a raw user id
//! cannot end up in a response body by accident.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The error returned when the pseudonymisation key is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pseudonymisation key is empty")]
pub struct EmptyKey;

/// Computes pseudonyms with a fixed secret key.
///
/// The keyed HMAC state is computed once and cloned for every pseudonym, so the key
/// itself is not kept. `Debug` never prints key material.
#[derive(Clone)]
pub struct Pseudonymiser {
    mac: HmacSha256,
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymiser").finish_non_exhaustive()
    }
}

impl Pseudonymiser {
    /// Creates a pseudonymiser keyed with `key`, which must not be empty.
    pub fn new(key: &[u8]) -> Result<Self, EmptyKey> {
        if key.is_empty() {
            return Err(EmptyKey);
        }
        // HMAC accepts keys of any length, so this cannot fail for a non-empty key.
        let mac = HmacSha256::new_from_slice(key).map_err(|_| EmptyKey)?;
        Ok(Pseudonymiser { mac })
    }

    /// Returns the pseudonym of `raw_user_id`: the lowercase hex HMAC-SHA256 of its UTF-8 bytes.
    pub fn pseudonymise(&self, raw_user_id: &str) -> Pseudonym {
        finish(self.mac.clone(), raw_user_id.as_bytes())
    }
}

fn finish(mut mac: HmacSha256, data: &[u8]) -> Pseudonym {
    mac.update(data);
    let digest = mac.finalize().into_bytes();
    let mut out = [0u8; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
        let hex = HEX_PAIRS[usize::from(*byte)];
        pair.copy_from_slice(&hex);
    }
    Pseudonym(out)
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

/// The default number of entries a [`PseudonymCache`] holds before it is cleared.
pub const DEFAULT_CACHE_ENTRIES: usize = 16_384;

/// A bounded memo used by one stream: heavy users repeat, so most rows skip the HMAC.
///
/// When the memo reaches its entry limit it is cleared, so memory stays bounded
/// (roughly 150 bytes per entry for short ids).
pub struct PseudonymCache {
    pseudonymiser: Pseudonymiser,
    /// foldhash rather than SipHash: about 3× faster on short keys, with a
    /// per-process random seed (the keys come from stored data).
    memo: HashMap<Box<str>, Pseudonym, foldhash::fast::RandomState>,
    max_entries: usize,
    last: Pseudonym,
}

impl fmt::Debug for PseudonymCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PseudonymCache")
            .field("entries", &self.memo.len())
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
            memo: HashMap::default(),
            max_entries,
            last: Pseudonym([b'0'; 64]),
        }
    }

    /// Returns the pseudonym of `raw_user_id`, computing and remembering it on a miss.
    pub fn get(&mut self, raw_user_id: &str) -> &Pseudonym {
        self.get_with(raw_user_id, |p| p.pseudonymise(raw_user_id))
    }

    /// Returns the memoised pseudonym for `raw_user_id`, computing it with
    /// `compute` on a miss (e.g. after normalising the value).
    pub fn get_with(
        &mut self,
        raw_user_id: &str,
        compute: impl FnOnce(&Pseudonymiser) -> Pseudonym,
    ) -> &Pseudonym {
        if let Some(found) = self.memo.get(raw_user_id) {
            self.last = *found;
        } else {
            let computed = compute(&self.pseudonymiser);
            if self.max_entries > 0 {
                if self.memo.len() >= self.max_entries {
                    self.memo.clear();
                }
                self.memo.insert(raw_user_id.into(), computed);
            }
            self.last = computed;
        }
        &self.last
    }

    /// Returns the number of memoised entries.
    pub fn len(&self) -> usize {
        self.memo.len()
    }

    /// Returns `true` when nothing is memoised.
    pub fn is_empty(&self) -> bool {
        self.memo.is_empty()
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
            Ok(mac) => finish(mac, data),
            // Unreachable: HMAC accepts keys of any length (long keys are hashed first).
            Err(_) => Pseudonym([b'0'; 64]),
        }
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
        assert_eq!(debug, "Pseudonymiser { .. }");
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
}

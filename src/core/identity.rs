//! Personal identifiers (user ids, MAC addresses, client IP addresses) and
//! the one way they may leave the service: as a keyed pseudonym, or raw for a
//! token with the `identities` scope.
//!
//! Every identity column of every kind goes through an [`IdentityWriter`],
//! which normalises the value for its [`IdentityType`] (so one device has one
//! pseudonym whichever notation its source used) and then pseudonymises it
//! with the configured key, or shows it raw when the request may see
//! identities. The encoders accept identity values only as [`Shown`], which
//! only an `IdentityWriter` makes.

use std::{borrow::Cow, fmt, net::IpAddr};

use crate::core::pseudonym::{Pseudonym, PseudonymCache, Pseudonymiser};

/// What kind of personal identifier a column holds; decides its normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentityType {
    /// A user identifier (e-mail address, DN, RADIUS `User-Name`): taken as it is.
    User,
    /// A MAC address: normalised to lowercase, colon-separated
    /// (`68:05:71:a4:ef:0e`) when it is one in any common notation, else taken
    /// as it is.
    Mac,
    /// An IP address: normalised to its canonical text (RFC 5952 for IPv6)
    /// when it parses, else taken as it is.
    Ip,
    /// A RADIUS `User-Name` as FreeRADIUS's `rlm_sql` stores it: characters
    /// outside its safe list escaped as `=XX` (`josé+o'neil@x` is stored
    /// `josé=2Bo=27neil@x`). Normalised to the real string, so a person has
    /// one pseudonym in every kind and on every path ([`rlm_sql_unescape`]).
    RadiusUser,
}

impl IdentityType {
    /// The value in its one documented notation (see the variants).
    pub fn normalise(self, raw: &str) -> Cow<'_, str> {
        match self {
            IdentityType::User => Cow::Borrowed(raw),
            IdentityType::RadiusUser => rlm_sql_unescape(raw),
            IdentityType::Mac if is_canonical_mac(raw) => Cow::Borrowed(raw),
            IdentityType::Mac => match parse_mac(raw) {
                Some(bytes) => {
                    let text = format_mac(bytes);
                    if text == raw {
                        Cow::Borrowed(raw)
                    } else {
                        Cow::Owned(text)
                    }
                }
                None => Cow::Borrowed(raw),
            },
            IdentityType::Ip => match raw.parse::<IpAddr>() {
                Ok(ip) => {
                    let text = ip.to_string();
                    if text == raw {
                        Cow::Borrowed(raw)
                    } else {
                        Cow::Owned(text)
                    }
                }
                Err(_) => Cow::Borrowed(raw),
            },
        }
    }
}

impl IdentityType {
    /// Its class in a [`PseudonymCache`]: values normalised differently are
    /// memoised apart.
    fn class(self) -> u8 {
        match self {
            IdentityType::User => 0,
            IdentityType::Mac => 1,
            IdentityType::Ip => 2,
            IdentityType::RadiusUser => 3,
        }
    }

    /// Every text under which a normalised value may be stored in a column
    /// of this type, for lookups by raw value: a RADIUS user name also in
    /// `rlm_sql`'s escaped form.
    pub fn stored_forms(self, normalised: &str) -> Vec<String> {
        let mut forms = vec![normalised.to_owned()];
        if self == IdentityType::RadiusUser {
            let escaped = rlm_sql_escape(normalised);
            if escaped != normalised {
                forms.push(escaped);
            }
        }
        forms
    }
}

/// The characters FreeRADIUS's `rlm_sql` stores as they are (its default
/// `safe_characters`); every other single-byte character is written `=XX`,
/// multi-byte UTF-8 characters pass unchanged.
const RLM_SQL_SAFE: &[u8] =
    b"@abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_: /";

/// `text` as `rlm_sql` stores it (see [`RLM_SQL_SAFE`]).
pub fn rlm_sql_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() && !RLM_SQL_SAFE.contains(&(c as u8)) {
            out.push_str(&format!("={:02X}", c as u8));
        } else {
            out.push(c);
        }
    }
    out
}

/// Undoes `rlm_sql`'s escaping: every `=XX` (two uppercase hex digits of an
/// ASCII character outside the safe list, as `rlm_sql` writes them) becomes
/// that character. Text without such a sequence is returned as it is.
pub fn rlm_sql_unescape(text: &str) -> Cow<'_, str> {
    fn escaped_at(bytes: &[u8], i: usize) -> Option<u8> {
        let hex = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        };
        if bytes.get(i) != Some(&b'=') {
            return None;
        }
        let value = hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?;
        (value < 0x80 && !RLM_SQL_SAFE.contains(&value)).then_some(value)
    }
    let bytes = text.as_bytes();
    if !(0..bytes.len()).any(|i| escaped_at(bytes, i).is_some()) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match escaped_at(bytes, i) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    // Only ASCII bytes replaced ASCII sequences: still UTF-8.
    Cow::Owned(String::from_utf8(out).unwrap_or_else(|_| text.to_owned()))
}

/// Parses a MAC address written as six hex pairs separated by `:` or `-`,
/// as three groups of four separated by `.` (Cisco), or as twelve bare hex
/// digits; any case.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let digits: Vec<u8> = match text.len() {
        12 => text.bytes().collect(),
        17 => {
            let sep = text.as_bytes()[2];
            if sep != b':' && sep != b'-' {
                return None;
            }
            let mut out = Vec::with_capacity(12);
            for (i, b) in text.bytes().enumerate() {
                if i % 3 == 2 {
                    if b != sep {
                        return None;
                    }
                } else {
                    out.push(b);
                }
            }
            out
        }
        14 => {
            let mut out = Vec::with_capacity(12);
            for (i, b) in text.bytes().enumerate() {
                if i % 5 == 4 {
                    if b != b'.' {
                        return None;
                    }
                } else {
                    out.push(b);
                }
            }
            out
        }
        _ => return None,
    };
    if digits.len() != 12 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        mac[i] = (hi * 16 + lo) as u8;
    }
    Some(mac)
}

/// True for a MAC address already in the documented notation.
fn is_canonical_mac(text: &str) -> bool {
    text.len() == 17
        && text.bytes().enumerate().all(|(i, b)| {
            if i % 3 == 2 {
                b == b':'
            } else {
                matches!(b, b'0'..=b'9' | b'a'..=b'f')
            }
        })
}

/// `68:05:71:a4:ef:0e`.
pub fn format_mac(mac: [u8; 6]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(17);
    for (i, byte) in mac.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// An identity as it may be written: a pseudonym, or the raw value for a
/// request with the `identities` scope. Only an [`IdentityWriter`] makes one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Shown<'a>(ShownText<'a>);

#[derive(Clone, Copy, PartialEq, Eq)]
enum ShownText<'a> {
    /// 64 hex digits: never needs CSV quoting, guarding or JSON escapes.
    Pseudonym(&'a Pseudonym),
    Raw(&'a str),
}

impl<'a> Shown<'a> {
    /// The text to write.
    pub fn as_str(&self) -> &'a str {
        match self.0 {
            ShownText::Pseudonym(p) => p.as_str(),
            ShownText::Raw(text) => text,
        }
    }

    /// The text's bytes (for a pseudonym, without a UTF-8 check).
    pub fn as_bytes(&self) -> &'a [u8] {
        match self.0 {
            ShownText::Pseudonym(p) => p.as_bytes(),
            ShownText::Raw(text) => text.as_bytes(),
        }
    }

    /// True when the text is a pseudonym rather than a raw value.
    pub fn is_pseudonym(&self) -> bool {
        matches!(self.0, ShownText::Pseudonym(_))
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ShownText::Pseudonym(p) => f.debug_tuple("Shown").field(&p.as_str()).finish(),
            ShownText::Raw(_) => f.write_str("Shown(<raw identity>)"),
        }
    }
}

/// Whether a request sees pseudonyms (every token) or raw identities (a token
/// with the `identities` scope).
#[derive(Clone, Debug)]
pub enum IdentityPolicy {
    /// Keyed pseudonyms (HMAC-SHA256, lowercase hex) of the normalised value.
    Pseudonymise(Pseudonymiser),
    /// The normalised raw value.
    Reveal,
}

/// Writes one stream's identity values under an [`IdentityPolicy`], with a
/// bounded memo of pseudonyms (most windows repeat few distinct identities).
#[derive(Debug)]
pub struct IdentityWriter {
    cache: Option<PseudonymCache>,
    /// With a key schedule: the schedule, the key of the current record,
    /// and a cache per key (the current one is `cache`).
    schedule: Option<(Pseudonymiser, usize, Vec<Option<PseudonymCache>>)>,
    scratch: String,
}

impl IdentityWriter {
    /// A writer for one stream.
    pub fn new(policy: &IdentityPolicy) -> IdentityWriter {
        let (cache, schedule) = match policy {
            IdentityPolicy::Pseudonymise(p) if p.key_count() > 1 => {
                let current = p.index_at(chrono::Utc::now());
                let mut caches: Vec<Option<PseudonymCache>> =
                    (0..p.key_count()).map(|_| None).collect();
                let cache = caches
                    .get_mut(current)
                    .and_then(Option::take)
                    .unwrap_or_else(|| PseudonymCache::new(p.only(current)));
                (Some(cache), Some((p.clone(), current, caches)))
            }
            IdentityPolicy::Pseudonymise(p) => (Some(PseudonymCache::new(p.clone())), None),
            IdentityPolicy::Reveal => (None, None),
        };
        IdentityWriter {
            cache,
            schedule,
            scratch: String::new(),
        }
    }

    /// True when the pseudonyms depend on the record's time (a key
    /// schedule): call [`IdentityWriter::at`] before each record's values.
    pub fn needs_time(&self) -> bool {
        self.schedule.is_some()
    }

    /// The record whose identities follow is from `at`: its pseudonyms are
    /// made with the key in force in its month.
    pub fn at(&mut self, at: chrono::DateTime<chrono::Utc>) {
        let Some((schedule, current, caches)) = &mut self.schedule else {
            return;
        };
        let wanted = schedule.index_at(at);
        if wanted == *current {
            return;
        }
        let next = caches
            .get_mut(wanted)
            .and_then(Option::take)
            .unwrap_or_else(|| PseudonymCache::new(schedule.only(wanted)));
        let previous = self.cache.replace(next);
        if let Some(slot) = caches.get_mut(*current) {
            *slot = previous;
        }
        *current = wanted;
    }

    /// The value of an identity column of type `ty`, ready to encode.
    pub fn show(&mut self, ty: IdentityType, raw: &str) -> Shown<'_> {
        match &mut self.cache {
            // Memoised by the raw text: normalising happens on a miss only.
            Some(cache) => {
                Shown(ShownText::Pseudonym(cache.get_with(ty.class(), raw, |p| {
                    p.pseudonymise(&ty.normalise(raw))
                })))
            }
            None => {
                self.scratch.clear();
                self.scratch.push_str(&ty.normalise(raw));
                Shown(ShownText::Raw(&self.scratch))
            }
        }
    }
}

/// The pseudonym of an identity value (normalised first), as every response
/// writes it: for lookups by pseudonym.
pub fn pseudonym_of(pseudonymiser: &Pseudonymiser, ty: IdentityType, raw: &str) -> String {
    pseudonymiser
        .pseudonymise(&ty.normalise(raw))
        .as_str()
        .to_owned()
}

/// True when `text` has the form of a pseudonym (64 lowercase hex digits).
pub fn is_pseudonym(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlm_sql_escaping_round_trips_and_joins_pseudonyms() {
        assert_eq!(rlm_sql_escape("josé+o'neil@x"), "josé=2Bo=27neil@x");
        assert_eq!(rlm_sql_unescape("josé=2Bo=27neil@x"), "josé+o'neil@x");
        assert!(matches!(
            rlm_sql_unescape("alice@example.org"),
            Cow::Borrowed(_)
        ));
        // `=` itself is escaped by rlm_sql, so a stored `=` always starts an escape;
        // sequences rlm_sql never writes stay as they are.
        assert_eq!(rlm_sql_escape("a=b"), "a=3Db");
        assert_eq!(rlm_sql_unescape("a=3Db"), "a=b");
        assert_eq!(rlm_sql_unescape("a=41b=zz=2"), "a=41b=zz=2");
        assert_eq!(
            IdentityType::RadiusUser.stored_forms("josé+o'neil@x"),
            vec!["josé+o'neil@x".to_owned(), "josé=2Bo=27neil@x".to_owned()]
        );
        assert_eq!(IdentityType::RadiusUser.stored_forms("bob"), vec!["bob"]);
        let p = Pseudonymiser::new(b"k").unwrap();
        assert_eq!(
            pseudonym_of(&p, IdentityType::RadiusUser, "josé=2Bo=27neil@x"),
            pseudonym_of(&p, IdentityType::User, "josé+o'neil@x")
        );
    }

    #[test]
    fn mac_notations_normalise_to_one() {
        for text in [
            "68:05:71:A4:EF:0E",
            "68-05-71-a4-ef-0e",
            "680571a4ef0e",
            "680571A4EF0E",
            "6805.71a4.ef0e",
            "68:05:71:a4:ef:0e",
        ] {
            assert_eq!(
                IdentityType::Mac.normalise(text),
                "68:05:71:a4:ef:0e",
                "{text}"
            );
        }
        for not_mac in [
            "68:05:71:A4:EF",
            "68:05-71:a4:ef:0e",
            "zz0571a4ef0e",
            "bob",
            "",
        ] {
            assert_eq!(IdentityType::Mac.normalise(not_mac), not_mac);
            assert!(parse_mac(not_mac).is_none());
        }
    }

    #[test]
    fn ips_normalise_to_canonical_text() {
        assert_eq!(IdentityType::Ip.normalise("10.0.0.1"), "10.0.0.1");
        assert_eq!(
            IdentityType::Ip.normalise("2001:0db8:0000:0000:0000:0000:0000:0001"),
            "2001:db8::1"
        );
        assert_eq!(IdentityType::Ip.normalise("not-an-ip"), "not-an-ip");
        assert_eq!(IdentityType::User.normalise("Bob@X"), "Bob@X");
    }

    #[test]
    fn one_device_one_pseudonym() {
        let p = Pseudonymiser::new(b"k").unwrap();
        let mut writer = IdentityWriter::new(&IdentityPolicy::Pseudonymise(p.clone()));
        let a = writer
            .show(IdentityType::Mac, "68:05:71:A4:EF:0E")
            .as_str()
            .to_owned();
        let b = writer
            .show(IdentityType::Mac, "680571a4ef0e")
            .as_str()
            .to_owned();
        assert_eq!(a, b);
        assert!(is_pseudonym(&a));
        assert_eq!(a, pseudonym_of(&p, IdentityType::Mac, "68-05-71-a4-ef-0e"));
        // The same raw value gives the same pseudonym as a user id would.
        assert_eq!(
            pseudonym_of(&p, IdentityType::User, "68:05:71:a4:ef:0e"),
            a,
            "pseudonyms join across kinds"
        );
        assert!(writer.show(IdentityType::User, "bob").is_pseudonym());
    }

    #[test]
    fn one_text_of_two_types_is_two_identities() {
        // MAC authentication: the RADIUS user name is the device's MAC, in
        // the notation the switch sends. The session's user and device
        // columns hold the same text, normalised differently.
        let p = Pseudonymiser::new(b"k").unwrap();
        let mut writer = IdentityWriter::new(&IdentityPolicy::Pseudonymise(p.clone()));
        let raw = "68-05-71-A4-EF-0E";
        for _ in 0..2 {
            let user = writer
                .show(IdentityType::RadiusUser, raw)
                .as_str()
                .to_owned();
            assert_eq!(user, pseudonym_of(&p, IdentityType::RadiusUser, raw));
            let device = writer.show(IdentityType::Mac, raw).as_str().to_owned();
            assert_eq!(
                device,
                pseudonym_of(&p, IdentityType::Mac, "68:05:71:a4:ef:0e")
            );
            assert_ne!(user, device);
        }
    }

    #[test]
    fn reveal_shows_the_normalised_value() {
        let mut writer = IdentityWriter::new(&IdentityPolicy::Reveal);
        let shown = writer.show(IdentityType::Mac, "680571A4EF0E");
        assert_eq!(shown.as_str(), "68:05:71:a4:ef:0e");
        assert!(!shown.is_pseudonym());
        assert_eq!(format!("{shown:?}"), "Shown(<raw identity>)");
    }
}

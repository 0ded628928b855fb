//! The identity directory: which raw identity a pseudonym stands for, so
//! that a listing can be narrowed to one user or device by its pseudonym
//! while the database never holds the pseudonymisation key.
//!
//! Whoever writes identities (ingest, the demo) records the pseudonym of
//! every identity value it stores, in the same transaction. A lookup is one
//! primary-key probe. Pseudonyms depend on the key: every value is recorded
//! under each key of the schedule (`ACCTSTREAM_PSEUDONYM_KEYS`), so a
//! pseudonym of any month finds it; after a key is replaced (not added),
//! values written before are found only once they are written again.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use crate::core::{
    identity::{pseudonym_of, IdentityType},
    pseudonym::Pseudonymiser,
};

/// The raw identity behind `pseudonym`, if it was ever recorded.
pub async fn resolve(
    client: &impl GenericClient,
    pseudonym: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT raw FROM identity_directory WHERE pseudonym = $1",
            &[&pseudonym],
        )
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// Lets the directory catch up with rows of `kind` written by others than
/// acctstream (see [`crate::core::kind::Kind::foreign_writes`]).
pub async fn catch_up(
    pool: &deadpool_postgres::Pool,
    pseudonymiser: &Pseudonymiser,
    kind: &crate::core::kind::Kind,
) -> Result<(), crate::db::DbError> {
    if kind.foreign_writes {
        let mut client = pool.get().await?;
        crate::db::sessions::catch_up_directory(&mut client, pseudonymiser).await?;
    }
    Ok(())
}

/// Distinct identity values to record, with their pseudonyms (one per key
/// of a key schedule, so a pseudonym of any month finds its value).
#[derive(Debug, Default)]
pub struct Entries {
    entries: HashMap<String, Vec<String>>,
}

impl Entries {
    /// Remembers `raw` (normalised for its type).
    pub fn add(&mut self, pseudonymiser: &Pseudonymiser, ty: IdentityType, raw: &str) {
        let normalised = ty.normalise(raw);
        if !self.entries.contains_key(normalised.as_ref()) {
            let pseudonyms = if pseudonymiser.key_count() == 1 {
                vec![pseudonym_of(pseudonymiser, ty, raw)]
            } else {
                pseudonymiser
                    .each()
                    .map(|key| pseudonym_of(&key, ty, raw))
                    .collect()
            };
            self.entries.insert(normalised.into_owned(), pseudonyms);
        }
    }

    /// How many distinct values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records those `recorded` does not know to be there already (existing
    /// entries are kept); after the transaction commits, tell `recorded`
    /// with [`Recorded::remember`].
    pub async fn record_new(
        &self,
        client: &impl GenericClient,
        recorded: &Recorded,
    ) -> Result<(), tokio_postgres::Error> {
        let new = Entries {
            entries: self
                .entries
                .iter()
                .filter(|(_, pseudonyms)| !recorded.knows(pseudonyms))
                .map(|(raw, pseudonyms)| (raw.clone(), pseudonyms.clone()))
                .collect(),
        };
        new.record(client).await
    }

    /// Records them (existing entries are kept).
    pub async fn record(&self, client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let (raws, pseudonyms): (Vec<&str>, Vec<&str>) = self
            .entries
            .iter()
            .flat_map(|(raw, ps)| ps.iter().map(move |p| (raw.as_str(), p.as_str())))
            .unzip();
        client
            .execute(
                "INSERT INTO identity_directory (pseudonym, raw) \
                 SELECT * FROM unnest($1::text[], $2::text[]) \
                 ORDER BY 1 ON CONFLICT (pseudonym) DO NOTHING",
                &[&pseudonyms, &raws],
            )
            .await?;
        Ok(())
    }
}

/// Most pseudonyms a [`Recorded`] remembers before it starts afresh.
const RECORDED_MAX: usize = 1 << 16;

/// Pseudonyms this process saw committed to one database's directory, so a
/// batch does not write again what the batches before it wrote: a session
/// repeats its identities in every interim update. Nothing ever deletes
/// from the directory, so what is remembered stays true. Bounded (cleared
/// when full, about 2 MB); one per database (`AppOptions::directory`).
#[derive(Debug, Default)]
pub struct Recorded {
    /// The first 128 bits of each pseudonym (an HMAC output, so distinct
    /// values do not meet there).
    seen: std::sync::Mutex<std::collections::HashSet<u128, foldhash::fast::RandomState>>,
}

impl Recorded {
    fn key(pseudonym: &str) -> Option<u128> {
        pseudonym
            .get(..32)
            .and_then(|hex| u128::from_str_radix(hex, 16).ok())
    }

    /// True when every one of `pseudonyms` is known to be recorded.
    fn knows(&self, pseudonyms: &[String]) -> bool {
        let Ok(seen) = self.seen.lock() else {
            return false;
        };
        pseudonyms
            .iter()
            .all(|p| Self::key(p).is_some_and(|k| seen.contains(&k)))
    }

    /// Remembers `entries`, whose transaction has committed.
    pub fn remember(&self, entries: &Entries) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.len() + entries.entries.len() > RECORDED_MAX {
            seen.clear();
        }
        for pseudonyms in entries.entries.values() {
            seen.extend(pseudonyms.iter().filter_map(|p| Self::key(p)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_committed_entries_are_skipped() {
        let p = Pseudonymiser::new(b"key").unwrap();
        let recorded = Recorded::default();
        let mut first = Entries::default();
        first.add(&p, IdentityType::User, "alice");
        first.add(&p, IdentityType::Mac, "AA-BB-CC-DD-EE-FF");
        let alice = vec![pseudonym_of(&p, IdentityType::User, "alice")];
        assert!(!recorded.knows(&alice));
        recorded.remember(&first);
        assert!(recorded.knows(&alice));
        assert!(recorded.knows(&[pseudonym_of(&p, IdentityType::Mac, "aa:bb:cc:dd:ee:ff")]));
        // Every pseudonym of a value must be known (a key schedule has several).
        assert!(!recorded.knows(&[
            alice[0].clone(),
            pseudonym_of(&p, IdentityType::User, "bob")
        ]));
        assert!(!recorded.knows(&["not a pseudonym".to_owned()]));
    }

    #[test]
    fn it_starts_afresh_when_full() {
        let p = Pseudonymiser::new(b"key").unwrap();
        let recorded = Recorded::default();
        let mut entries = Entries::default();
        for i in 0..RECORDED_MAX {
            entries.add(&p, IdentityType::User, &format!("user-{i}"));
        }
        recorded.remember(&entries);
        let mut one = Entries::default();
        one.add(&p, IdentityType::User, "last");
        recorded.remember(&one);
        assert!(recorded.knows(&[pseudonym_of(&p, IdentityType::User, "last")]));
        assert!(!recorded.knows(&[pseudonym_of(&p, IdentityType::User, "user-0")]));
    }
}

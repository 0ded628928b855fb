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

//! Network access sessions in FreeRADIUS's `radacct`: applying RADIUS
//! accounting requests, the quarantine of requests that could not be used,
//! the indexes acctstream adds, and the identity directory's catch-up with
//! rows FreeRADIUS wrote directly.
//!
//! A batch is applied in one transaction, step by step
//! ([`crate::kinds::session::radius::Step`]): session rows are first inserted
//! (`ON CONFLICT DO NOTHING`), and those whose key existed are then merged
//! into the stored row by the rules of [`crate::kinds::session::radius`]'s merge,
//! written once more in SQL ([`UPDATE`]): start the earliest, update and
//! stop the latest, counters and session time never backwards, a stop never
//! cleared, other attributes those of the latest event. NAS reboots close
//! the NAS's open sessions. A deadlock with a concurrent batch (rows locked
//! in another order) is retried.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};
use tokio_postgres::error::SqlState;

use crate::{
    core::{identity::IdentityType, pseudonym::Pseudonymiser},
    db::{
        directory::{Entries, Recorded},
        DbError,
    },
    kinds::session::radius::{NasReboot, SessionRow, StatusType, Step},
};

const COLUMNS: &str = "acctuniqueid, acctsessionid, username, realm, nasipaddress, nasportid, \
     nasporttype, acctstarttime, acctupdatetime, acctstoptime, acctinterval, acctsessiontime, \
     acctauthentic, connectinfo_start, connectinfo_stop, acctinputoctets, acctoutputoctets, \
     calledstationid, callingstationid, acctterminatecause, servicetype, framedprotocol, \
     framedipaddress, framedipv6address, framedipv6prefix, framedinterfaceid, \
     delegatedipv6prefix, class";

const UNNEST: &str = "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::inet[], \
     $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], \
     $11::int8[], $12::int8[], $13::text[], $14::text[], $15::text[], $16::int8[], $17::int8[], \
     $18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::inet[], $24::inet[], \
     $25::text[]::inet[], $26::text[], $27::text[]::inet[], $28::text[], $29::bool[], $30::bool[])";

/// New sessions; the keys that existed come back for [`UPDATE`].
///
/// On FreeRADIUS's table, `acctuniqueid` is unique and the conflict says
/// a key exists. On a `radacct` an operator partitioned by time (see
/// `docs/scaling.md`), a unique constraint must include the partition key,
/// so nothing stops a second row of one `acctuniqueid` with another start
/// time: a key is new only when no row has it, and [`LOCK_KEYS`] (taken
/// first, in its own statement, so that this one's snapshot sees what the
/// batch waited for) keeps two batches from both finding it new.
fn insert_sql(partitioned: bool) -> String {
    if partitioned {
        format!(
            "INSERT INTO radacct ({COLUMNS}) \
             SELECT {COLUMNS} FROM {UNNEST} AS u({COLUMNS}, interim, stop_without_time) \
             WHERE NOT EXISTS (SELECT 1 FROM radacct r WHERE r.acctuniqueid = u.acctuniqueid) \
             ON CONFLICT DO NOTHING RETURNING acctuniqueid"
        )
    } else {
        format!(
            "INSERT INTO radacct ({COLUMNS}) \
             SELECT {COLUMNS} FROM {UNNEST} AS u({COLUMNS}, interim, stop_without_time) \
             ON CONFLICT (acctuniqueid) DO NOTHING RETURNING acctuniqueid"
        )
    }
}

/// Whether `radacct` is a partitioned table.
const PARTITIONED: &str =
    "SELECT coalesce((SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('radacct')), false)";

/// Transaction-level advisory locks on a batch's keys (`$1`), in one
/// order (a hash's), so that concurrent batches wait for each other
/// instead of both inserting a key (see [`insert_sql`]). The first key
/// names acctstream's session keys (`'acct'`).
const LOCK_KEYS: &str = "SELECT pg_advisory_xact_lock(1633903476, h) \
     FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) AS k ORDER BY h) AS keys";

/// The columns whose value is the latest event's that carried one.
const LATEST: [&str; 18] = [
    "username",
    "realm",
    "nasportid",
    "nasporttype",
    "acctauthentic",
    "connectinfo_start",
    "connectinfo_stop",
    "calledstationid",
    "callingstationid",
    "acctterminatecause",
    "servicetype",
    "framedprotocol",
    "framedipaddress",
    "framedipv6address",
    "framedipv6prefix",
    "framedinterfaceid",
    "delegatedipv6prefix",
    "class",
];

/// Merges requests into stored rows (the rules of the module's head).
fn update_sql() -> String {
    let mut sets = vec![
        "acctstarttime = least(r.acctstarttime, u.acctstarttime)".to_owned(),
        "acctupdatetime = greatest(r.acctupdatetime, u.acctupdatetime)".to_owned(),
        "acctstoptime = greatest(r.acctstoptime, u.acctstoptime)".to_owned(),
        "acctinterval = CASE WHEN u.acctinterval IS NOT NULL THEN u.acctinterval \
             WHEN u.interim AND r.acctstoptime IS NULL AND u.acctupdatetime > r.acctupdatetime \
             THEN extract(epoch FROM u.acctupdatetime - r.acctupdatetime)::int8 \
             ELSE r.acctinterval END"
            .to_owned(),
        "acctsessiontime = greatest(r.acctsessiontime, u.acctsessiontime, \
             CASE WHEN u.stop_without_time AND r.acctstoptime IS NULL \
             THEN extract(epoch FROM u.acctstoptime - least(r.acctstarttime, u.acctstarttime))::int8 END)"
            .to_owned(),
        "acctinputoctets = greatest(r.acctinputoctets, u.acctinputoctets)".to_owned(),
        "acctoutputoctets = greatest(r.acctoutputoctets, u.acctoutputoctets)".to_owned(),
    ];
    for column in LATEST {
        // rlm_sql writes '' for a missing attribute: that is no value.
        let stored = if column.contains("ipv6prefix") || column.starts_with("framedip") {
            format!("r.{column}")
        } else {
            format!("nullif(r.{column}, '')")
        };
        sets.push(format!(
            "{column} = CASE WHEN u.acctupdatetime >= r.acctupdatetime OR r.acctupdatetime IS NULL \
             THEN coalesce(u.{column}, {stored}) ELSE coalesce({stored}, u.{column}) END"
        ));
    }
    format!(
        "UPDATE radacct AS r SET {} FROM {UNNEST} AS u({COLUMNS}, interim, stop_without_time) \
         WHERE r.acctuniqueid = u.acctuniqueid",
        sets.join(", ")
    )
}

/// Closes a NAS's open sessions (Accounting-On/Off), as FreeRADIUS does.
const REBOOT: &str = "UPDATE radacct SET acctstoptime = $2, \
     acctupdatetime = greatest(acctupdatetime, $2), \
     acctsessiontime = greatest(acctsessiontime, extract(epoch FROM $2 - acctstarttime)::int8), \
     acctterminatecause = $3 \
     WHERE acctstoptime IS NULL AND nasipaddress = $1 AND acctstarttime <= $2 \
     AND ($4::text IS NULL OR acctstream_session_tenant(nasipaddress, realm) = $4)";

/// The organization of each `(NAS address, realm)` by the rules (issue 28).
const ORGANIZATIONS: &str = "SELECT n, acctstream_session_tenant(n, r) \
     FROM unnest($1::inet[], $2::text[]) AS u(n, r)";

/// The columns of a set of rows, as the arrays of [`UNNEST`].
#[derive(Default)]
struct Arrays {
    text: [Vec<Option<String>>; 16],
    nas: Vec<IpAddr>,
    times: [Vec<Option<DateTime<Utc>>>; 3],
    ints: [Vec<Option<i64>>; 4],
    ips: [Vec<Option<IpAddr>>; 2],
    prefixes: [Vec<Option<String>>; 2],
    flags: [Vec<bool>; 2],
}

impl Arrays {
    fn push(&mut self, r: &SessionRow) {
        let texts = [
            Some(r.unique_id.clone()),
            Some(r.session_id.clone()),
            r.user.clone(),
            r.realm.clone(),
            r.nas_port_id.clone(),
            r.nas_port_type.clone(),
            r.authentic.clone(),
            r.connect_info_start.clone(),
            r.connect_info_stop.clone(),
            r.called.clone(),
            r.calling.clone(),
            r.terminate_cause.clone(),
            r.service_type.clone(),
            r.framed_protocol.clone(),
            r.framed_interface_id.clone(),
            r.class.clone(),
        ];
        for (column, value) in self.text.iter_mut().zip(texts) {
            column.push(value);
        }
        self.nas.push(r.nas);
        for (column, value) in self
            .times
            .iter_mut()
            .zip([Some(r.start), Some(r.update), r.stop])
        {
            column.push(value);
        }
        for (column, value) in self.ints.iter_mut().zip([
            r.interval,
            r.session_time,
            Some(r.input_octets),
            Some(r.output_octets),
        ]) {
            column.push(value);
        }
        for (column, value) in self.ips.iter_mut().zip([r.framed_ip, r.framed_ipv6]) {
            column.push(value);
        }
        for (column, value) in self.prefixes.iter_mut().zip([
            r.framed_ipv6_prefix.clone(),
            r.delegated_ipv6_prefix.clone(),
        ]) {
            column.push(value);
        }
        self.flags[0].push(r.status == StatusType::InterimUpdate);
        self.flags[1].push(r.stop_without_time);
    }

    /// The 30 parameters, in [`UNNEST`]'s order.
    fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        let t = &self.text;
        vec![
            &t[0],
            &t[1],
            &t[2],
            &t[3],
            &self.nas,
            &t[4],
            &t[5],
            &self.times[0],
            &self.times[1],
            &self.times[2],
            &self.ints[0],
            &self.ints[1],
            &t[6],
            &t[7],
            &t[8],
            &self.ints[2],
            &self.ints[3],
            &t[9],
            &t[10],
            &t[11],
            &t[12],
            &t[13],
            &self.ips[0],
            &self.ips[1],
            &self.prefixes[0],
            &t[14],
            &self.prefixes[1],
            &t[15],
            &self.flags[0],
            &self.flags[1],
        ]
    }
}

/// What applying a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Sessions created.
    pub created: u64,
    /// Stored sessions merged with a request.
    pub updated: u64,
    /// Sessions closed by Accounting-On/Off.
    pub closed: u64,
}

/// Why a token of one organization may not write a batch (issue 28):
/// nothing of it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misplaced {
    /// A session whose NAS address and realm map to another organization.
    Other(std::net::IpAddr),
    /// A session whose NAS address and realm map to no organization.
    Unmapped(std::net::IpAddr),
}

impl std::fmt::Display for Misplaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misplaced::Other(nas) => write!(
                f,
                "the NAS {nas} (with this realm) belongs to another organization"
            ),
            Misplaced::Unmapped(nas) => write!(
                f,
                "the NAS {nas} (with this realm) maps to no organization: \
                 add a rule to acctstream_session_tenant"
            ),
        }
    }
}

/// Applies a batch's steps in one transaction, recording the identities of
/// its rows in the identity directory. With a `writer` (a token of one
/// organization), every session must map to it, and a NAS's reboot closes
/// its sessions only; otherwise nothing is stored and the answer says why.
pub async fn apply(
    pool: &Pool,
    pseudonymiser: &Pseudonymiser,
    recorded: &Recorded,
    steps: &[Step],
    writer: Option<&str>,
) -> Result<Result<Applied, Misplaced>, DbError> {
    let mut client = pool.get().await?;
    let mut attempt = 0;
    loop {
        match apply_once(&mut client, pseudonymiser, recorded, steps, writer).await {
            Err(DbError::Query(e))
                if attempt < 3
                    && matches!(
                        e.code(),
                        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
                            || *c == SqlState::T_R_SERIALIZATION_FAILURE
                    ) =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn apply_once(
    client: &mut Object,
    pseudonymiser: &Pseudonymiser,
    recorded: &Recorded,
    steps: &[Step],
    writer: Option<&str>,
) -> Result<Result<Applied, Misplaced>, DbError> {
    let tx = client.transaction().await?;
    if let Some(writer) = writer {
        let (mut nas, mut realms) = (Vec::new(), Vec::new());
        for step in steps {
            if let Step::Sessions(rows) = step {
                for row in rows {
                    nas.push(row.nas);
                    realms.push(row.realm.as_deref());
                }
            }
        }
        let statement = tx.prepare_cached(ORGANIZATIONS).await?;
        for row in tx.query(&statement, &[&nas, &realms]).await? {
            let (at, organization): (std::net::IpAddr, String) = (row.try_get(0)?, row.try_get(1)?);
            if organization == writer {
                continue;
            }
            return Ok(Err(
                if organization == crate::core::tenant::DEFAULT_TENANT {
                    Misplaced::Unmapped(at)
                } else {
                    Misplaced::Other(at)
                },
            ));
        }
    }
    let partitioned: bool = tx.query_one(PARTITIONED, &[]).await?.try_get(0)?;
    let insert = tx.prepare_cached(&insert_sql(partitioned)).await?;
    let update = tx.prepare_cached(&update_sql()).await?;
    let reboot = tx.prepare_cached(REBOOT).await?;
    let mut applied = Applied::default();
    let mut entries = Entries::default();
    for step in steps {
        match step {
            Step::Sessions(rows) => {
                // New rows are numbered in start order (radAcctId then
                // follows time); a deadlock with a batch inserting the same
                // new keys in another order is retried.
                let mut by_start: Vec<&SessionRow> = rows.iter().collect();
                by_start.sort_by(|a, b| (a.start, &a.unique_id).cmp(&(b.start, &b.unique_id)));
                let mut all = Arrays::default();
                for row in by_start {
                    all.push(row);
                    record_identities(&mut entries, pseudonymiser, row);
                }
                if partitioned {
                    let keys: Vec<&str> = rows.iter().map(|r| r.unique_id.as_str()).collect();
                    tx.execute(LOCK_KEYS, &[&keys]).await?;
                }
                let inserted: std::collections::HashSet<String> = tx
                    .query(&insert, &all.params())
                    .await?
                    .iter()
                    .map(|r| r.try_get::<_, String>(0))
                    .collect::<Result<_, _>>()?;
                applied.created += inserted.len() as u64;
                let mut existing = Arrays::default();
                let mut any = false;
                for row in rows.iter().filter(|r| !inserted.contains(&r.unique_id)) {
                    existing.push(row);
                    any = true;
                }
                if any {
                    applied.updated += tx.execute(&update, &existing.params()).await?;
                }
            }
            Step::Reboot(NasReboot { nas, at, cause }) => {
                applied.closed += tx.execute(&reboot, &[nas, at, cause, &writer]).await?;
            }
        }
    }
    entries.record_new(&*tx, recorded).await?;
    tx.commit().await?;
    recorded.remember(&entries);
    Ok(Ok(applied))
}

fn record_identities(entries: &mut Entries, pseudonymiser: &Pseudonymiser, row: &SessionRow) {
    // Seen when it was last heard of; while open, retention records its
    // identities again (`db::directory::refresh_kept`).
    let seen = row.stop.unwrap_or(row.update);
    if let Some(user) = &row.user {
        entries.add(pseudonymiser, IdentityType::RadiusUser, user, seen);
    }
    if let Some(calling) = &row.calling {
        entries.add(pseudonymiser, IdentityType::Mac, calling, seen);
    }
    for ip in [row.framed_ip, row.framed_ipv6].into_iter().flatten() {
        entries.add(pseudonymiser, IdentityType::Ip, &ip.to_string(), seen);
    }
}

/// Keeps a request acctstream could not use, with the reason and the
/// organization of the token that sent it.
pub async fn quarantine(
    pool: &Pool,
    reason: &str,
    record: &serde_json::Value,
    tenant: &str,
) -> Result<i64, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "INSERT INTO radius_rejected (reason, record, tenant) VALUES ($1, $2, $3) RETURNING id",
            &[&reason, &record.to_string(), &tenant],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// One quarantined request.
#[derive(Debug)]
pub struct Rejected {
    /// Its number.
    pub id: i64,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Why it was not used.
    pub reason: String,
    /// The organization of the token that sent it.
    pub tenant: String,
    /// The request as posted.
    pub record: serde_json::Value,
}

/// The newest quarantined requests of the organizations `tenants` names
/// (every one's when `None`), newest first, before `before` (an id); read
/// as a caller of organization `reader` when it has one (row security).
pub async fn rejected(
    pool: &Pool,
    before: Option<i64>,
    limit: i64,
    tenants: Option<&[String]>,
    reader: Option<&str>,
) -> Result<Vec<Rejected>, DbError> {
    let client = crate::db::tenant::checkout(pool, reader).await?;
    let rows = client
        .query(
            "SELECT id, received_at, reason, record, tenant FROM radius_rejected \
             WHERE id < coalesce($1, 9223372036854775807) \
             AND ($3::text[] IS NULL OR tenant = ANY($3)) ORDER BY id DESC LIMIT $2",
            &[&before, &limit, &tenants],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let text: String = row.try_get(3)?;
            Ok(Rejected {
                id: row.try_get(0)?,
                received_at: row.try_get(1)?,
                reason: row.try_get(2)?,
                tenant: row.try_get(4)?,
                // Written by serde_json, so it reads back; anything else
                // is shown as an empty object rather than failing the list.
                record: serde_json::from_str(&text)
                    .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new())),
            })
        })
        .collect()
}

/// How many requests of the organizations `tenants` names (every one's
/// when `None`) are in quarantine.
pub async fn rejected_count(
    pool: &Pool,
    tenants: Option<&[String]>,
    reader: Option<&str>,
) -> Result<i64, DbError> {
    let client = crate::db::tenant::checkout(pool, reader).await?;
    Ok(client
        .query_one(
            "SELECT count(*) FROM radius_rejected WHERE $1::text[] IS NULL OR tenant = ANY($1)",
            &[&tenants],
        )
        .await?
        .try_get(0)?)
}

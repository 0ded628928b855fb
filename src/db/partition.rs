//! Time partitions of the kinds' tables (issue 25): converting a table into
//! range partitions without stopping reads or writes, making partitions
//! ahead, and the default partition that catches what none covers.
//!
//! **Converting** ([`convert`]) one table `T` of a kind whose entry is
//! [`Kind::partitioned`], by its time column `C`:
//! 1. (only when `T` has rows; each step lets reads and writes go on)
//!    a check constraint `C IS NOT NULL AND C < bound` is added `NOT VALID`
//!    and then validated (`bound`: [`Interval::conversion_bound`]), and for
//!    each unique constraint of `T` (its primary key, the `eventId` key) a
//!    unique index of the same columns and `C` is built `CONCURRENTLY`:
//!    PostgreSQL requires every unique constraint of a partitioned table to
//!    include the partition key.
//! 2. In one short transaction holding `T`'s lock (taken with a lock
//!    timeout, retried): `T` is renamed to `T_before_<bound>`, its unique
//!    constraints are swapped for the indexes of step 1, its identity
//!    sequence handed over; a partitioned `T` is made with the same
//!    columns, defaults and checks, the same constraints (with `C`), indexes,
//!    triggers, row security policies, grants and comment; the old table is
//!    attached as the partition of every time before `bound` (the
//!    validated check spares the scan), and the default partition and the
//!    partitions from `bound` on are made.
//!
//! A new database converts its still empty tables at its first migration,
//! all in the transaction of step 2. A table that has rows is converted by
//! `acctstream migrate --partition` only.
//!
//! **Ahead** ([`prepare`], at start and every hour): the partitions of the
//! current interval and [`Interval::ahead`] more, those back to retention's
//! cutoff (at most [`MAX_BEHIND`]; history loaded within what retention
//! keeps finds them), the default partition, and for any interval from the
//! cutoff to the last partition made ahead whose records the default
//! partition holds, a partition they are moved into. A partition is made
//! as a table of its own and attached, which locks neither reads nor
//! writes of the partitioned table (only the default partition, briefly),
//! except while records move into it: then the table is locked for the
//! move, since a read planned before the attach would not scan the new
//! partition and, run after the move, would miss them.
//! What the default partition still holds (times far ahead, or older than
//! retention keeps) is counted in `/metrics`
//! (`acctstream_default_partition_rows`) and logged.

use chrono::{DateTime, Datelike, Utc};

use tokio_postgres::{error::SqlState, Client, GenericClient};

use crate::core::{
    kind::Kind,
    partition::{before_name, bound_constraint, default_name, Interval, Range},
    retention::{Days, RetentionPolicy},
};

/// How a kind's table is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// There is no such table.
    Missing,
    /// One table; `empty` when it has no row.
    Plain {
        /// Whether it has no row at all.
        empty: bool,
    },
    /// Range partitions.
    Partitioned,
}

/// The layout of `table`.
pub async fn layout(
    client: &impl GenericClient,
    table: &str,
) -> Result<Layout, tokio_postgres::Error> {
    Ok(match relkind(client, table).await?.as_deref() {
        None => Layout::Missing,
        Some("p") => Layout::Partitioned,
        Some(_) => {
            let empty: bool = client
                .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"), &[])
                .await?
                .try_get(0)?;
            Layout::Plain { empty }
        }
    })
}

/// Advisory lock (with the table's hash) held while a table is converted.
pub const CONVERT_LOCK: i32 = 0x6163_7470;

/// How long the conversion's transaction waits for the table's lock
/// before it tries again (reads and writes queue behind a waiting lock).
const LOCK_TIMEOUT: &str = "2s";

/// How many times the conversion's transaction is tried.
const ATTEMPTS: u32 = 30;

/// Whether `error` is a record refused by the check that a table being
/// converted ([`convert`]) holds nothing past its bound: a write that
/// waits for the conversion ([`wait_for_conversion`]) and is tried again.
pub fn is_conversion_bound(error: &tokio_postgres::Error, table: &str) -> bool {
    error.code() == Some(&SqlState::CHECK_VIOLATION)
        && error
            .as_db_error()
            .and_then(|db| db.constraint())
            .is_some_and(|name| name == bound_constraint(table))
}

/// Waits until no conversion of `table` runs.
pub async fn wait_for_conversion(
    client: &impl GenericClient,
    table: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "SELECT pg_advisory_lock_shared($1, hashtext($2))",
            &[&CONVERT_LOCK, &table],
        )
        .await?;
    client
        .execute(
            "SELECT pg_advisory_unlock_shared($1, hashtext($2))",
            &[&CONVERT_LOCK, &table],
        )
        .await?;
    Ok(())
}

/// What [`convert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Converted {
    /// The table was partitioned already.
    Already,
    /// There is no such table.
    Missing,
    /// Converted now (its progress said where the old rows are).
    Now,
    /// `only_empty` was asked and the table has rows: left as it is.
    HasRows,
}

/// Converts `kind`'s table into range partitions by its time (see the
/// module documentation). With `only_empty`, a table that has rows is left
/// as it is ([`Converted::HasRows`]). `progress` is told each step.
pub async fn convert(
    client: &mut Client,
    kind: &Kind,
    interval: Interval,
    only_empty: bool,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<Converted, tokio_postgres::Error> {
    let Some(column) = kind.partition_column() else {
        return Ok(Converted::Already);
    };
    let table = kind.table;
    client
        .execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            &[&CONVERT_LOCK, &table],
        )
        .await?;
    let result = convert_locked(client, kind, column, interval, only_empty, progress).await;
    let unlocked = client
        .execute(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[&CONVERT_LOCK, &table],
        )
        .await;
    let converted = result?;
    unlocked?;
    Ok(converted)
}

async fn convert_locked(
    client: &mut Client,
    kind: &Kind,
    column: &str,
    interval: Interval,
    only_empty: bool,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<Converted, tokio_postgres::Error> {
    let table = kind.table;
    let (empty, bound) = loop {
        let state = layout(&*client, table).await?;
        let empty = match state {
            Layout::Missing => return Ok(Converted::Missing),
            Layout::Partitioned => return Ok(Converted::Already),
            Layout::Plain { empty: false } if only_empty => return Ok(Converted::HasRows),
            Layout::Plain { empty } => empty,
        };
        let latest: Option<DateTime<Utc>> = client
            .query_one(&format!("SELECT max({column}) FROM {table}"), &[])
            .await?
            .try_get(0)?;
        let now: DateTime<Utc> = client.query_one("SELECT now()", &[]).await?.try_get(0)?;
        let bound = interval
            .conversion_bound(now, latest)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if empty {
            break (true, bound);
        }
        progress(format!(
            "{table}: checking that every row is before {bound} (reads and writes go on)"
        ));
        if bound_check(client, table, column, bound).await? {
            break (false, bound);
        }
        progress(format!(
            "{table}: a row at or after {bound} came meanwhile: again with a later bound"
        ));
    };
    let keys = unique_keys(&*client, table, column).await?;
    if !empty {
        for key in &keys {
            progress(format!(
                "{table}: building the unique index {} ({}) concurrently",
                key.index, key.columns
            ));
            build_key_index(&*client, table, key).await?;
        }
    }
    let before = before_name(table, bound);
    let mut attempt = 0;
    loop {
        attempt += 1;
        progress(format!(
            "{table}: taking the table's lock to swap it for its partitioned self (attempt {attempt})"
        ));
        match swap(client, kind, column, interval, bound, &before, &keys, empty).await {
            Ok(true) => break,
            Ok(false) => return Ok(Converted::HasRows),
            Err(error)
                if attempt < ATTEMPTS && error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error),
        }
    }
    if !empty {
        // The partition's bound proves what the check did: dropped when its
        // lock comes at once (else it stays, harmless).
        let _ = client
            .batch_execute(&format!(
                "SET lock_timeout = '1s'; \
                 ALTER TABLE {before} DROP CONSTRAINT IF EXISTS {}; \
                 RESET lock_timeout",
                bound_constraint(table)
            ))
            .await;
        let _ = client.batch_execute("RESET lock_timeout").await;
    }
    progress(if empty {
        format!("{table}: partitioned (it was empty)")
    } else {
        format!("{table}: partitioned; every row before {bound} is in {before}")
    });
    Ok(Converted::Now)
}

/// Adds and validates the check that every row of `table` is before
/// `bound`. False when a row is not (one came meanwhile): the check is
/// gone again.
async fn bound_check(
    client: &Client,
    table: &str,
    column: &str,
    bound: DateTime<Utc>,
) -> Result<bool, tokio_postgres::Error> {
    let name = bound_constraint(table);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let added = client
            .batch_execute(&format!(
                "SET lock_timeout = '{LOCK_TIMEOUT}'; \
                 ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}; \
                 ALTER TABLE {table} ADD CONSTRAINT {name} \
                     CHECK ({column} IS NOT NULL AND {column} < '{}') NOT VALID",
                bound.to_rfc3339()
            ))
            .await;
        client.batch_execute("RESET lock_timeout").await?;
        match added {
            Ok(()) => break,
            Err(error)
                if attempt < ATTEMPTS && error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error),
        }
    }
    match client
        .batch_execute(&format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}"))
        .await
    {
        Ok(()) => Ok(true),
        Err(error) if error.code() == Some(&SqlState::CHECK_VIOLATION) => {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"
                ))
                .await?;
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// A unique constraint of the table being converted.
#[derive(Debug, Clone)]
struct UniqueKey {
    /// The constraint's name (the partitioned table's takes it over).
    name: String,
    /// `PRIMARY KEY` or `UNIQUE`.
    how: &'static str,
    /// Its columns, then the partition key when they lack it.
    columns: String,
    /// The unique index of those columns built ahead.
    index: String,
}

/// The primary key and unique constraints of `table`, each with the
/// columns the partitioned table's one has.
async fn unique_keys(
    client: &impl GenericClient,
    table: &str,
    column: &str,
) -> Result<Vec<UniqueKey>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.conname::text, c.contype::text, \
                    array_agg(a.attname::text ORDER BY k.n) \
             FROM pg_constraint c \
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
             WHERE c.conrelid = to_regclass($1) AND c.contype IN ('p', 'u') \
             GROUP BY c.oid, c.conname, c.contype ORDER BY c.conname",
            &[&table],
        )
        .await?;
    let mut keys = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let name: String = row.try_get(0)?;
        let contype: String = row.try_get(1)?;
        let mut columns: Vec<String> = row.try_get(2)?;
        if !columns.iter().any(|c| c == column) {
            columns.push(column.to_owned());
        }
        keys.push(UniqueKey {
            index: format!("{table}_partition_key_{n}"),
            name,
            how: if contype == "p" {
                "PRIMARY KEY"
            } else {
                "UNIQUE"
            },
            columns: columns.join(", "),
        });
    }
    Ok(keys)
}

/// Builds `key`'s index on `table` without blocking writes (again, when an
/// interrupted build left it invalid).
async fn build_key_index(
    client: &impl GenericClient,
    table: &str,
    key: &UniqueKey,
) -> Result<(), tokio_postgres::Error> {
    let valid: Option<bool> = client
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)",
            &[&key.index],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    match valid {
        Some(true) => return Ok(()),
        Some(false) => {
            client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {}", key.index))
                .await?;
        }
        None => {}
    }
    client
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} ({})",
            key.index, key.columns
        ))
        .await
}

/// The transaction that makes `kind`'s table partitioned. False when
/// `empty` was expected and a row came meanwhile.
#[allow(clippy::too_many_arguments)]
async fn swap(
    client: &mut Client,
    kind: &Kind,
    column: &str,
    interval: Interval,
    bound: DateTime<Utc>,
    before: &str,
    keys: &[UniqueKey],
    empty: bool,
) -> Result<bool, tokio_postgres::Error> {
    let table = kind.table;
    let now: DateTime<Utc> = client.query_one("SELECT now()", &[]).await?.try_get(0)?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; \
         SET LOCAL client_min_messages = warning; \
         LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
    ))
    .await?;
    if relkind(&tx, table).await?.as_deref() == Some("p") {
        return Ok(true);
    }
    if empty
        && tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
            .await?
            .try_get::<_, bool>(0)?
    {
        return Ok(false);
    }
    // What the table has, read while it still has its name.
    let identities = tx
        .query(
            "SELECT a.attname::text, a.attidentity::text, q.seq::text, \
                    s.seqincrement, s.seqcache, \
                    coalesce(pg_sequence_last_value(q.seq) + s.seqincrement, s.seqstart) \
             FROM pg_attribute a \
             CROSS JOIN LATERAL (SELECT pg_get_serial_sequence($1, a.attname)::regclass AS seq) AS q \
             JOIN pg_sequence s ON s.seqrelid = q.seq \
             WHERE a.attrelid = to_regclass($1) AND a.attidentity <> '' AND NOT a.attisdropped",
            &[&table],
        )
        .await?;
    let indexes = tx
        .query(
            "SELECT c.relname::text, pg_get_indexdef(i.indexrelid), i.indisvalid \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = to_regclass($1) \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
             AND c.relname NOT LIKE $2 ORDER BY c.relname",
            &[&table, &format!("{table}\\_partition\\_key\\_%")],
        )
        .await?;
    let triggers = tx
        .query(
            "SELECT tgname::text, pg_get_triggerdef(oid) FROM pg_trigger \
             WHERE tgrelid = to_regclass($1) AND NOT tgisinternal ORDER BY tgname",
            &[&table],
        )
        .await?;
    let policies = tx
        .query(
            "SELECT p.polname::text, \
                    format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.polname, '{}', \
                        CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, \
                        CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' \
                             WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END, \
                        (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' \
                                ELSE quote_ident(pg_get_userbyid(r)) END, ', ') \
                         FROM unnest(p.polroles) AS r), \
                        ' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')', \
                        ' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')'), \
                    d.description \
             FROM pg_policy p \
             LEFT JOIN pg_description d ON d.objoid = p.oid AND d.classoid = 'pg_policy'::regclass \
             WHERE p.polrelid = to_regclass($1) ORDER BY p.polname",
            &[&table],
        )
        .await?;
    let security = tx
        .query_one(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, obj_description(c.oid, 'pg_class'), \
                    (SELECT string_agg(format('GRANT %s ON %s TO %s%s', a.privilege_type, '{}', \
                                CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                                     ELSE quote_ident(pg_get_userbyid(a.grantee)) END, \
                                CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), '; ') \
                     FROM aclexplode(c.relacl) AS a WHERE a.grantee <> c.relowner) \
             FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&table],
        )
        .await?;
    let mut sql = Vec::new();
    sql.push(format!("ALTER TABLE {table} RENAME TO {before}"));
    for key in keys {
        sql.push(format!("ALTER TABLE {before} DROP CONSTRAINT {}", key.name));
        if empty {
            continue;
        }
        sql.push(format!(
            "ALTER TABLE {before} ADD CONSTRAINT {before}_{} {} USING INDEX {}",
            key.index.rsplit('_').next().unwrap_or("0"),
            key.how,
            key.index
        ));
    }
    for (n, index) in indexes.iter().enumerate() {
        let name: String = index.try_get(0)?;
        let valid: bool = index.try_get(2)?;
        if valid {
            sql.push(format!("ALTER INDEX {name} RENAME TO {before}_index_{n}"));
        } else {
            sql.push(format!("DROP INDEX {name}"));
        }
    }
    for trigger in &triggers {
        let name: String = trigger.try_get(0)?;
        sql.push(format!("DROP TRIGGER {name} ON {before}"));
    }
    let mut identity_sql = Vec::new();
    for identity in &identities {
        let (name, how, sequence): (String, String, String) = (
            identity.try_get(0)?,
            identity.try_get(1)?,
            identity.try_get(2)?,
        );
        let (increment, cache, next): (i64, i64, i64) = (
            identity.try_get(3)?,
            identity.try_get(4)?,
            identity.try_get(5)?,
        );
        let sequence = sequence.rsplit('.').next().unwrap_or(&sequence).to_owned();
        sql.push(format!(
            "ALTER TABLE {before} ALTER COLUMN {name} DROP IDENTITY"
        ));
        identity_sql.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {name} ADD GENERATED {} AS IDENTITY \
             (SEQUENCE NAME {sequence} START WITH {} INCREMENT BY {increment} CACHE {cache})",
            if how == "a" { "ALWAYS" } else { "BY DEFAULT" },
            next
        ));
    }
    sql.push(format!(
        "CREATE TABLE {table} (LIKE {before} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
         INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED) PARTITION BY RANGE ({column})"
    ));
    sql.push(format!(
        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
        bound_constraint(table)
    ));
    sql.extend(identity_sql);
    for key in keys {
        sql.push(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {} ({})",
            key.name, key.how, key.columns
        ));
    }
    for index in &indexes {
        if index.try_get::<_, bool>(2)? {
            sql.push(index.try_get(1)?);
        }
    }
    for trigger in &triggers {
        sql.push(trigger.try_get(1)?);
    }
    let (rls, force, comment, grants): (bool, bool, Option<String>, Option<String>) = (
        security.try_get(0)?,
        security.try_get(1)?,
        security.try_get(2)?,
        security.try_get(3)?,
    );
    if rls {
        sql.push(format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"));
    }
    if force {
        sql.push(format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"));
    }
    for policy in &policies {
        let (name, create, description): (String, String, Option<String>) =
            (policy.try_get(0)?, policy.try_get(1)?, policy.try_get(2)?);
        sql.push(create.replacen("ON {}", &format!("ON {table}"), 1));
        if let Some(description) = description {
            sql.push(format!(
                "COMMENT ON POLICY {name} ON {table} IS {}",
                quote_literal(&description)
            ));
        }
    }
    if let Some(grants) = grants {
        sql.push(grants.replace(" ON {} TO ", &format!(" ON {table} TO ")));
    }
    if let Some(comment) = comment {
        sql.push(format!(
            "COMMENT ON TABLE {table} IS {}",
            quote_literal(&comment)
        ));
    }
    // An empty table has nothing to keep: it goes, and the partitions
    // start with the current interval.
    let first = if empty {
        sql.push(format!("DROP TABLE {before}"));
        interval.start_of(now)
    } else {
        sql.push(format!(
            "ALTER TABLE {table} ATTACH PARTITION {before} FOR VALUES FROM (MINVALUE) TO ('{}')",
            bound.to_rfc3339()
        ));
        bound
    };
    sql.push(format!(
        "CREATE TABLE {} PARTITION OF {table} DEFAULT",
        default_name(table)
    ));
    for range in interval.ahead_of(now) {
        if range.from >= first {
            sql.push(format!(
                "CREATE TABLE {} PARTITION OF {table} {}",
                range.name(table, interval),
                range.bound_sql()
            ));
        }
    }
    tx.batch_execute(&sql.join(";\n")).await?;
    tx.commit().await?;
    Ok(true)
}

/// The `relkind` of the table or index `name` (`None`: there is none).
pub(crate) async fn relkind(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    client
        .query_opt(
            "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)",
            &[&name],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()
}

/// `text` as an SQL string literal.
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A leaf partition of a table, by its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its name.
    pub name: String,
    /// Its range's start (`None`: from the earliest time).
    pub from: Option<DateTime<Utc>>,
    /// The first instant after its range (`None`: to the latest time).
    pub to: Option<DateTime<Utc>>,
    /// Whether it is the default partition.
    pub default: bool,
}

impl Partition {
    /// Whether its range overlaps `range` (the default partition's never
    /// does).
    fn overlaps(&self, range: Range) -> bool {
        !self.default
            && self.from.is_none_or(|from| from < range.to)
            && self.to.is_none_or(|to| range.from < to)
    }
}

/// The leaf partitions of `table`, in their order (the default last).
pub async fn partitions(
    client: &impl GenericClient,
    table: &str,
) -> Result<Vec<Partition>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text, b.bound = 'DEFAULT', \
                    (regexp_match(b.bound, 'FROM \\(''([^'']*)''\\)'))[1]::timestamptz, \
                    (regexp_match(b.bound, 'TO \\(''([^'']*)''\\)'))[1]::timestamptz \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS bound) AS b \
             WHERE i.inhparent = to_regclass($1) \
             ORDER BY b.bound = 'DEFAULT', 3 NULLS FIRST",
            &[&table],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Partition {
                name: row.try_get(0)?,
                default: row.try_get(1)?,
                from: row.try_get(2)?,
                to: row.try_get(3)?,
            })
        })
        .collect()
}

/// The most intervals before the current one [`prepare`] makes ahead of
/// their records (a year of days; rows older still wait in the default
/// partition until retention takes them, or their partition is made).
pub const MAX_BEHIND: usize = 366;

/// What [`prepare`] did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prepared {
    /// Partitions made now.
    pub made: Vec<String>,
    /// Rows moved out of the default partition into them.
    pub moved: u64,
    /// Rows the default partition holds afterwards.
    pub default_rows: i64,
}

/// Makes what `kind`'s partitioned table needs at `now` (see the module
/// documentation): the default partition, the partitions ahead, those
/// from `keep_from` (retention's cutoff; at most [`MAX_BEHIND`]) to the
/// current one, and a partition for each interval from `keep_from`
/// (`None`: every one) to the last made ahead whose rows the default
/// partition holds (moved there). Nothing for a table that is not
/// partitioned.
pub async fn prepare(
    client: &mut Client,
    kind: &Kind,
    interval: Interval,
    now: DateTime<Utc>,
    keep_from: Option<DateTime<Utc>>,
) -> Result<Prepared, tokio_postgres::Error> {
    let mut prepared = Prepared::default();
    let Some(column) = kind.partition_column() else {
        return Ok(prepared);
    };
    let table = kind.table;
    if relkind(&*client, table).await?.as_deref() != Some("p") {
        return Ok(prepared);
    }
    let default = default_name(table);
    let existing = partitions(&*client, table).await?;
    if !existing.iter().any(|p| p.default) {
        client
            .batch_execute(&format!(
                "SET lock_timeout = '{LOCK_TIMEOUT}'; \
                 CREATE TABLE IF NOT EXISTS {default} PARTITION OF {table} DEFAULT; \
                 RESET lock_timeout"
            ))
            .await?;
        prepared.made.push(default.clone());
    }
    let ahead = interval.ahead_of(now);
    let end = ahead.last().map_or(now, |r| r.to);
    // The intervals whose rows wait in the default partition.
    let unit = match interval {
        Interval::Monthly => "month",
        Interval::Daily => "day",
    };
    let waiting: Vec<DateTime<Utc>> = client
        .query(
            &format!(
                "SELECT DISTINCT date_trunc('{unit}', {column}, 'UTC') FROM {default} \
                 WHERE {column} < $1 AND ($2::timestamptz IS NULL OR {column} >= $2) \
                 AND {column} >= '0001-01-01T00:00:00Z'"
            ),
            &[&end, &keep_from],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut wanted: Vec<Range> = ahead;
    // Behind: from retention's cutoff (at most MAX_BEHIND intervals), so
    // that history loaded within what retention keeps finds its partitions.
    if let (Some(keep_from), Some(first)) = (keep_from, wanted.first().copied()) {
        let mut from = interval.start_of(keep_from);
        let mut behind = Vec::new();
        while from < first.from {
            let Some(to) = interval.next(from) else { break };
            behind.push(Range { from, to });
            from = to;
        }
        let skip = behind.len().saturating_sub(MAX_BEHIND);
        wanted.extend(behind.into_iter().skip(skip));
    }
    for at in waiting {
        // Partitions are named by the year's four digits.
        if let Some(range) = interval.range_of(at).filter(|r| r.to.year() <= 9999) {
            if !wanted.contains(&range) {
                wanted.push(range);
            }
        }
    }
    wanted.sort_by_key(|r| r.from);
    for range in wanted {
        let existing = partitions(&*client, table).await?;
        if existing.iter().any(|p| p.overlaps(range)) {
            continue;
        }
        let name = range.name(table, interval);
        if let Some(moved) = make_partition(client, table, column, &default, &name, range).await? {
            prepared.moved += moved;
            prepared.made.push(name);
        }
    }
    prepared.default_rows = client
        .query_one(&format!("SELECT count(*) FROM {default}"), &[])
        .await?
        .try_get(0)?;
    Ok(prepared)
}

/// Makes the partition `name` of `range`, moving into it the rows of that
/// range the default partition holds (their ids and feed positions kept;
/// the table is locked while they move).
/// Returns how many were moved; `None` when another instance made a
/// partition of that range meanwhile (instances take turns, and wait for
/// a conversion of the table).
async fn make_partition(
    client: &mut Client,
    table: &str,
    column: &str,
    default: &str,
    name: &str,
    range: Range,
) -> Result<Option<u64>, tokio_postgres::Error> {
    let (from, to) = (range.from.to_rfc3339(), range.to.to_rfc3339());
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&CONVERT_LOCK, &table],
    )
    .await?;
    if partitions(&tx, table)
        .await?
        .iter()
        .any(|p| p.overlaps(range))
    {
        return Ok(None);
    }
    // Rows that move must never be missed by a read planned before the
    // attach (it would not scan the new partition) and run after the
    // move (the rows gone from the default one): with rows to move, the
    // whole table is locked for the move; without, only the default
    // partition, and a row of the range that came meanwhile leaves the
    // partition to the next pass.
    let in_range = format!(
        "SELECT EXISTS (SELECT 1 FROM {default} WHERE {column} >= '{from}' AND {column} < '{to}')"
    );
    let waiting: bool = tx.query_one(&in_range, &[]).await?.try_get(0)?;
    let lock = if waiting { table } else { default };
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; SET LOCAL client_min_messages = warning; \
         LOCK TABLE {lock} IN ACCESS EXCLUSIVE MODE"
    ))
    .await?;
    if !waiting && tx.query_one(&in_range, &[]).await?.try_get::<_, bool>(0)? {
        return Ok(None);
    }
    let columns: String = tx
        .query_one(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&table],
        )
        .await?
        .try_get(0)?;
    tx.batch_execute(&format!(
        "CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING STORAGE INCLUDING GENERATED); \
         ALTER TABLE {name} ADD CONSTRAINT {name}_range \
             CHECK ({column} IS NOT NULL AND {column} >= '{from}' AND {column} < '{to}')"
    ))
    .await?;
    let moved = tx
        .execute(
            &format!(
                "WITH moved AS (DELETE FROM {default} WHERE {column} >= '{from}' AND {column} < '{to}' \
                                RETURNING {columns}) \
                 INSERT INTO {name} ({columns}) SELECT {columns} FROM moved"
            ),
            &[],
        )
        .await?;
    tx.batch_execute(&format!(
        "ALTER TABLE {table} ATTACH PARTITION {name} {}; \
         ALTER TABLE {name} DROP CONSTRAINT {name}_range",
        range.bound_sql()
    ))
    .await?;
    tx.commit().await?;
    Ok(Some(moved))
}

/// How often the service's job makes partitions ahead.
pub const JOB_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The service's job (see the module documentation): at start and every
/// [`JOB_INTERVAL`], [`prepare`] for every partitioned kind, with
/// retention's cutoff of the kind's own table (`policies`: the days of
/// records, then of the audit trail); what the default partition holds is
/// put in `metrics` and, when it is not empty, logged.
pub async fn run_job(
    pool: deadpool_postgres::Pool,
    kinds: Vec<&'static Kind>,
    interval: Interval,
    policies: (RetentionPolicy, RetentionPolicy),
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        for kind in kinds.iter().filter(|k| k.partition_column().is_some()) {
            let now = Utc::now();
            let policy = match kind.retention.iter().find(|r| r.table == kind.table) {
                Some(rule) if rule.days == Days::Audit => policies.1,
                Some(_) => policies.0,
                None => RetentionPolicy::new(0),
            };
            let pass = async {
                let mut client = pool.get().await.map_err(|e| e.to_string())?;
                prepare(&mut client, kind, interval, now, policy.cutoff(now))
                    .await
                    .map_err(|e| super::error::message(&e))
            };
            let prepared = tokio::select! {
                () = stop.cancelled() => return,
                prepared = pass => prepared,
            };
            match prepared {
                Ok(prepared) => {
                    if !prepared.made.is_empty() {
                        tracing::info!(
                            kind = kind.name,
                            made = ?prepared.made,
                            moved = prepared.moved,
                            "partitions made"
                        );
                    }
                    if prepared.default_rows > 0 {
                        tracing::warn!(
                            kind = kind.name,
                            table = default_name(kind.table),
                            rows = prepared.default_rows,
                            "the default partition holds rows whose time no partition covers \
                             (far ahead, or older than retention keeps): they are served, and \
                             moved into a partition once one is made for their time"
                        );
                    }
                    metrics.default_partition_rows(kind.name, prepared.default_rows);
                }
                Err(error) => {
                    tracing::warn!(kind = kind.name, %error, "partitions not made now: tried again within the hour");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(JOB_INTERVAL) => {}
        }
    }
}

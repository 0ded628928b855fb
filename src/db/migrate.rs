//! Migrations: the ordered plain SQL files in `sql/`, each applied exactly once.
//!
//! Applied migrations are recorded in `acctstream_migration`. The whole run
//! holds a transaction-level advisory lock, so two instances starting at
//! once apply each file once: the second waits, then finds nothing to do.

use tokio_postgres::{Client, GenericClient};

use super::partition::{quote_literal, relkind};
use crate::core::{kind::Kind, partition::Interval};

/// One migration: its version (the file's numeric prefix), name and SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Numeric prefix of the file name; migrations run in this order.
    pub version: i32,
    /// File name, for the record and the logs.
    pub name: &'static str,
    /// The SQL text.
    pub sql: &'static str,
}

/// Every migration, in order. A unit test checks this list against `sql/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_auth_event.sql",
        sql: include_str!("../../sql/0001_auth_event.sql"),
    },
    Migration {
        version: 2,
        name: "0002_event_id.sql",
        sql: include_str!("../../sql/0002_event_id.sql"),
    },
    Migration {
        version: 3,
        name: "0003_usage_rollups.sql",
        sql: include_str!("../../sql/0003_usage_rollups.sql"),
    },
    Migration {
        version: 4,
        name: "0004_rollup_queue.sql",
        sql: include_str!("../../sql/0004_rollup_queue.sql"),
    },
    Migration {
        version: 5,
        name: "0005_identity_directory.sql",
        sql: include_str!("../../sql/0005_identity_directory.sql"),
    },
    Migration {
        version: 6,
        name: "0006_client_event.sql",
        sql: include_str!("../../sql/0006_client_event.sql"),
    },
    Migration {
        version: 7,
        name: "0007_radacct.sql",
        sql: include_str!("../../sql/0007_radacct.sql"),
    },
    Migration {
        version: 8,
        name: "0008_access_audit.sql",
        sql: include_str!("../../sql/0008_access_audit.sql"),
    },
    Migration {
        version: 9,
        name: "0009_keyed_rollups.sql",
        sql: include_str!("../../sql/0009_keyed_rollups.sql"),
    },
    Migration {
        version: 10,
        name: "0010_retention_everywhere.sql",
        sql: include_str!("../../sql/0010_retention_everywhere.sql"),
    },
    Migration {
        version: 11,
        name: "0011_rollup_set_aside.sql",
        sql: include_str!("../../sql/0011_rollup_set_aside.sql"),
    },
    Migration {
        version: 12,
        name: "0012_change_feed.sql",
        sql: include_str!("../../sql/0012_change_feed.sql"),
    },
    Migration {
        version: 13,
        name: "0013_tenants.sql",
        sql: include_str!("../../sql/0013_tenants.sql"),
    },
    Migration {
        version: 14,
        name: "0014_session_tenants.sql",
        sql: include_str!("../../sql/0014_session_tenants.sql"),
    },
    Migration {
        version: 15,
        name: "0015_row_security.sql",
        sql: include_str!("../../sql/0015_row_security.sql"),
    },
    Migration {
        version: 16,
        name: "0016_tenant_rollups.sql",
        sql: include_str!("../../sql/0016_tenant_rollups.sql"),
    },
    Migration {
        version: 17,
        name: "0017_tenant_quarantine.sql",
        sql: include_str!("../../sql/0017_tenant_quarantine.sql"),
    },
    Migration {
        version: 18,
        name: "0018_change_summary_tenants.sql",
        sql: include_str!("../../sql/0018_change_summary_tenants.sql"),
    },
    Migration {
        version: 19,
        name: "0019_session_tenant_version.sql",
        sql: include_str!("../../sql/0019_session_tenant_version.sql"),
    },
];

/// Arbitrary constant naming our advisory lock ("acctstrm" in ASCII).
const LOCK_KEY: i64 = 0x6163_6374_7374_726d;

/// A migration failed; nothing of that migration was applied.
#[derive(Debug, thiserror::Error)]
#[error("migration {name} failed: {source}")]
pub struct MigrateError {
    /// The migration (or "bookkeeping").
    pub name: &'static str,
    /// The database's answer.
    #[source]
    pub source: tokio_postgres::Error,
}

/// [`run_with`] monthly partitions, the default of `ACCTSTREAM_PARTITIONS`.
pub async fn run(
    client: &mut Client,
    kinds: &[&'static Kind],
) -> Result<Vec<&'static str>, MigrateError> {
    run_with(client, kinds, Some(Interval::Monthly)).await
}

/// Applies every migration not yet recorded, each in its own transaction,
/// then creates the indexes `kinds` declare ([`Kind::indexes`]) that are
/// missing, the change feeds and row security; with `partitions`, makes
/// the still empty table of every partitioned kind ([`Kind::partitioned`])
/// range partitions of that interval, and the partitions ahead of each
/// partitioned one ([`super::partition`]). Returns the names of the
/// migrations applied now.
pub async fn run_with(
    client: &mut Client,
    kinds: &[&'static Kind],
    partitions: Option<Interval>,
) -> Result<Vec<&'static str>, MigrateError> {
    let done = run_to(client, i32::MAX).await?;
    // Outside any transaction: built CONCURRENTLY, never blocking the
    // writes of another program to a table it owns (FreeRADIUS's radacct).
    for kind in kinds {
        ensure_indexes(&*client, kind.indexes)
            .await
            .map_err(|source| MigrateError {
                name: "indexes",
                source,
            })?;
    }
    track_changes(client, kinds, false).await?;
    for kind in kinds {
        row_security(client, kind)
            .await
            .map_err(|source| MigrateError {
                name: "row security (the service's login must own every kind's table, \
                       radacct included; see docs/tenants.md)",
                source,
            })?;
    }
    if let Some(interval) = partitions {
        for kind in kinds.iter().filter(|k| k.partition_column().is_some()) {
            let error = |source| MigrateError {
                name: "partitions",
                source,
            };
            let converted = super::partition::convert(client, kind, interval, true, &mut |step| {
                tracing::debug!(kind = kind.name, step, "partitions");
            })
            .await
            .map_err(error)?;
            if converted == super::partition::Converted::HasRows {
                tracing::info!(
                    kind = kind.name,
                    table = kind.table,
                    "the table has rows and is not partitioned: `acctstream migrate --partition` converts it"
                );
            }
            // Partitions ahead: a failure (say, the default partition's lock
            // not had within its timeout) is the hourly job's to retry.
            let now = chrono::Utc::now();
            if let Err(error) =
                super::partition::prepare(client, kind, interval, now, Some(interval.start_of(now)))
                    .await
            {
                tracing::warn!(kind = kind.name, %error, "partitions ahead not made at start: the job tries again");
            }
        }
    }
    Ok(done)
}

/// Advisory lock serialising [`row_security`] between instances ("acctrls").
const ROW_SECURITY_LOCK: i64 = 0x0061_6363_7472_6c73;

/// Makes the second layer of organizations on `kind`'s table, from its
/// entry (issue 28; [`super::tenant`]): the organizations' role may read
/// it, row security is on, every role sees every row
/// ([`super::tenant::EVERYONE`]) except the organizations' role, which
/// sees the rows of its setting's organization only. Nothing for a kind
/// without organizations. Done again only when the policy differs from
/// the one made last (kept as its comment): a start takes no lock on a
/// table that has it.
pub async fn row_security(client: &mut Client, kind: &Kind) -> Result<(), tokio_postgres::Error> {
    use super::tenant::{policy_sql, EVERYONE, ONE_ORGANIZATION, ROLE};
    let Some(tenant) = kind.tenant else {
        return Ok(());
    };
    let table = kind.table;
    let policy = policy_sql(table, tenant);
    let current = "SELECT c.relrowsecurity AND d.description IS NOT DISTINCT FROM $2                    FROM pg_class c                    LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname = $3                    LEFT JOIN pg_description d                      ON d.objoid = p.oid AND d.classoid = 'pg_policy'::regclass                    WHERE c.oid = to_regclass($1)";
    let made = |row: Option<tokio_postgres::Row>| -> Result<bool, tokio_postgres::Error> {
        Ok(match row {
            Some(row) => row.try_get::<_, Option<bool>>(0)?.unwrap_or(false),
            None => true, // no such table: nothing to protect (yet)
        })
    };
    if made(
        client
            .query_opt(current, &[&table, &policy, &ONE_ORGANIZATION])
            .await?,
    )? {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ROW_SECURITY_LOCK])
        .await?;
    if made(
        tx.query_opt(current, &[&table, &policy, &ONE_ORGANIZATION])
            .await?,
    )? {
        return tx.commit().await;
    }
    tx.batch_execute(&format!(
        "SET LOCAL client_min_messages = warning;
         GRANT SELECT ON {table} TO {ROLE};
         ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
         DROP POLICY IF EXISTS {EVERYONE} ON {table};
         CREATE POLICY {EVERYONE} ON {table} AS PERMISSIVE FOR ALL TO PUBLIC
             USING (true) WITH CHECK (true);
         DROP POLICY IF EXISTS {ONE_ORGANIZATION} ON {table};
         {policy};
         COMMENT ON POLICY {ONE_ORGANIZATION} ON {table} IS {comment};",
        comment = quote_literal(&policy),
    ))
    .await?;
    tx.commit().await
}

/// The index a kind that stores its organization in a column of its own
/// table needs once the deployment has organizations (issue 28): it leads
/// with the organization, then the kind's order, so that a window of a
/// small organization among large ones reads only its own rows. `None`
/// for a kind without one, or whose organization is derived (`radacct`).
pub fn tenant_index(kind: &Kind) -> Option<(String, String)> {
    let column = kind.tenant_column()?;
    let time = kind.time.order_column();
    Some((
        format!("{}_{column}_{time}", kind.table),
        format!("{} ({column}, {time}, {})", kind.table, kind.id_column),
    ))
}

/// Builds the [`tenant_index`] of every kind that has one and lacks it
/// (`CONCURRENTLY`: writes go on). Run by the service at start when the
/// deployment has organizations; a single-organization deployment never
/// pays for these indexes.
pub async fn ensure_tenant_indexes(
    client: &impl GenericClient,
    kinds: &[&'static Kind],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let indexes: Vec<(String, String)> = kinds.iter().filter_map(|k| tenant_index(k)).collect();
    ensure_indexes(client, &indexes).await
}

/// The service's job building the [`tenant_index`]es (once the deployment
/// has organizations): tried again after a failure (5 s, doubling, at
/// most every 5 minutes) until they exist or the service stops.
pub async fn build_tenant_indexes(
    pool: deadpool_postgres::Pool,
    kinds: Vec<&'static Kind>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut pause = std::time::Duration::from_secs(5);
    loop {
        let build = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            ensure_tenant_indexes(&**client, &kinds)
                .await
                .map_err(|e| super::error::message(&e))
        };
        let built = tokio::select! {
            () = stop.cancelled() => return,
            built = build => built,
        };
        match built {
            Ok(built) => {
                if !built.is_empty() {
                    tracing::info!(?built, "indexes by organization built");
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_s = pause.as_secs(), "indexes by organization not built yet");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(300));
    }
}

/// Makes what each kind's change feed needs where it is missing
/// ([`super::changes::ensure`]); on tables of other programs acctstream did
/// not create only with `foreign` (`acctstream migrate --track-changes`).
/// Returns the kinds whose feed can be read.
pub async fn track_changes(
    client: &mut Client,
    kinds: &[&'static Kind],
    foreign: bool,
) -> Result<Vec<&'static str>, MigrateError> {
    let mut tracked = Vec::new();
    for kind in kinds {
        let yes = super::changes::ensure(client, kind, foreign)
            .await
            .map_err(|source| MigrateError {
                name: "change feed",
                source,
            })?;
        if let Some(index) = super::changes::index(kind) {
            ensure_indexes(&*client, &[index])
                .await
                .map_err(|source| MigrateError {
                    name: "change feed",
                    source,
                })?;
        }
        if yes {
            tracked.push(kind.name);
        }
    }
    Ok(tracked)
}

/// Like [`run`], but only the migrations up to `version` (tests of a
/// migration's effect on data written before it).
pub async fn run_to(client: &mut Client, version: i32) -> Result<Vec<&'static str>, MigrateError> {
    let bookkeeping = |source| MigrateError {
        name: "bookkeeping",
        source,
    };
    let tx = client.transaction().await.map_err(bookkeeping)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(bookkeeping)?;
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TABLE IF NOT EXISTS acctstream_migration (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(bookkeeping)?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM acctstream_migration", &[])
        .await
        .map_err(bookkeeping)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut done = Vec::new();
    for migration in MIGRATIONS
        .iter()
        .filter(|m| !applied.contains(&m.version) && m.version <= version)
    {
        let fail = |source| MigrateError {
            name: migration.name,
            source,
        };
        tx.batch_execute(migration.sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO acctstream_migration (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(fail)?;
        done.push(migration.name);
    }
    tx.commit().await.map_err(bookkeeping)?;
    Ok(done)
}

/// Session advisory lock serialising [`ensure_indexes`] between instances
/// ("acctidx" in ASCII).
const INDEX_LOCK: i64 = 0x0061_6363_7469_6478;

/// Creates the `indexes` (`(name, definition)`) that are missing (replacing any left invalid by
/// an interrupted build). Each runs outside a transaction, without blocking
/// FreeRADIUS's writes. Instances starting together take turns: two
/// concurrent `CREATE INDEX CONCURRENTLY` on one table wait for each other's
/// transactions, so the lock is polled with short statements rather than
/// waited for in one.
pub async fn ensure_indexes<S: AsRef<str>>(
    client: &impl GenericClient,
    indexes: &[(S, S)],
) -> Result<Vec<String>, tokio_postgres::Error> {
    if missing_indexes(client, indexes).await?.is_empty() {
        return Ok(Vec::new());
    }
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&INDEX_LOCK])
            .await?
            .try_get(0)?;
        if locked {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let result = create_missing(client, indexes).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&INDEX_LOCK])
        .await;
    let created = result?;
    unlocked?;
    Ok(created)
}

/// The `indexes` that do not exist, with whether an invalid one is in the way.
async fn missing_indexes<'a, S: AsRef<str>>(
    client: &impl GenericClient,
    indexes: &'a [(S, S)],
) -> Result<Vec<(&'a str, &'a str, bool)>, tokio_postgres::Error> {
    let mut missing = Vec::new();
    for (name, definition) in indexes {
        let (name, definition) = (name.as_ref(), definition.as_ref());
        let state = client
            .query_opt(
                "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid \
                 WHERE c.relname = $1 AND pg_table_is_visible(c.oid)",
                &[&name],
            )
            .await?;
        match state.map(|row| row.try_get::<_, bool>(0)).transpose()? {
            Some(true) => {}
            Some(false) => missing.push((name, definition, true)),
            None => missing.push((name, definition, false)),
        }
    }
    Ok(missing)
}

async fn create_missing<S: AsRef<str>>(
    client: &impl GenericClient,
    indexes: &[(S, S)],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut created = Vec::new();
    for (name, definition, invalid) in missing_indexes(client, indexes).await? {
        let (table, columns) = definition.split_once(' ').unwrap_or((definition, ""));
        if relkind(client, table).await?.as_deref() == Some("p") {
            partitioned_index(client, name, table, columns).await?;
            created.push(name.to_owned());
            continue;
        }
        if invalid {
            client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                .await?;
        }
        client
            .batch_execute(&format!(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}"
            ))
            .await?;
        created.push(name.to_owned());
    }
    Ok(created)
}

/// The index `name` on the partitioned table `table` (`columns`: the rest
/// of its definition), built the way PostgreSQL offers without blocking
/// writes (`CREATE INDEX CONCURRENTLY` refuses a partitioned table): the
/// parent's index `ON ONLY` the table (invalid until every partition has
/// its own), then each partition's `CONCURRENTLY` (a partitioned partition
/// in turn the same way), attached to it. A partition that already has an
/// index attached to it is left as it is; a partition's index an earlier
/// build left invalid is built again. Run again after an interruption, it
/// finishes what is missing.
async fn partitioned_index(
    client: &impl GenericClient,
    name: &str,
    table: &str,
    columns: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS {name} ON ONLY {table} {columns}"
        ))
        .await?;
    let partitions = client
        .query(
            "SELECT c.oid::int8, quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
             c.relkind::text, EXISTS (SELECT 1 FROM pg_inherits a JOIN pg_index x \
                 ON x.indexrelid = a.inhrelid \
                 WHERE a.inhparent = to_regclass($2) AND x.indrelid = c.oid) \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE i.inhparent = to_regclass($1) ORDER BY c.oid",
            &[&table, &name],
        )
        .await?;
    for partition in partitions {
        let (oid, partition, kind, attached): (i64, String, String, bool) = (
            partition.try_get(0)?,
            partition.try_get(1)?,
            partition.try_get(2)?,
            partition.try_get(3)?,
        );
        if attached {
            continue;
        }
        // Named after the parent's and the partition's oid: unique, and
        // short enough for an identifier.
        let own = format!("{name}_{oid}");
        if kind == "p" {
            Box::pin(partitioned_index(client, &own, &partition, columns)).await?;
        } else {
            let valid: Option<bool> = client
                .query_opt(
                    "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                    &[&own],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            if valid == Some(false) {
                client
                    .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {own}"))
                    .await?;
            }
            client
                .batch_execute(&format!(
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS {own} ON {partition} {columns}"
                ))
                .await?;
        }
        client
            .batch_execute(&format!("ALTER INDEX {name} ATTACH PARTITION {own}"))
            .await?;
    }
    Ok(())
}

/// True when every known migration is recorded as applied.
pub async fn is_current(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM acctstream_migration",
            &[],
        )
        .await?;
    let latest: i32 = row.get(0);
    Ok(MIGRATIONS.last().is_none_or(|m| latest >= m.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_matches_sql_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(
            files, listed,
            "src/db/migrate.rs MIGRATIONS must list every file in sql/"
        );
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }
}

//! Organizations, the second layer (issue 28): PostgreSQL's row-level
//! security.
//!
//! The first layer is the query builder: a caller of one organization gets
//! its organization as a term of every query (`Selection::tenant`). The
//! second holds even when that term is missing. Every kind's table has a
//! restrictive policy for the role [`ROLE`] ([`policy_sql`], made from the
//! kind's entry by [`crate::db::migrate::run`]): a row is visible to that
//! role only when the kind's organization expression equals the setting
//! [`SETTING`]. A read for one organization runs in a read-only
//! transaction that switches to [`ROLE`] and sets [`SETTING`] for that
//! transaction only ([`checkout`]); every other reader (the `tenants`
//! grant, a deployment without organizations, ingest, the jobs) runs as the
//! service's own login, which a permissive policy lets see every row as
//! before. The role is switched to with `SET ROLE` because the login may be
//! a superuser or the table's owner, whom row security does not bind.

use std::ops::{Deref, DerefMut};

use deadpool_postgres::{Object, Pool};
use futures_util::future::{join, BoxFuture};
use tokio_postgres::NoTls;

use super::DbError;
use crate::core::tenant::is_tenant_name;

/// The role reads of one organization run as (no login, no `BYPASSRLS`).
pub const ROLE: &str = "acctstream_organization";
/// The per-transaction setting naming the organization such a read sees.
pub const SETTING: &str = "acctstream.tenant";
/// The name of the permissive policy every kind's table has (every role
/// sees every row, as without row security).
pub const EVERYONE: &str = "acctstream_everyone";
/// The name of the restrictive policy binding [`ROLE`].
pub const ONE_ORGANIZATION: &str = "acctstream_one_organization";

/// The statements of [`checkout`] after `BEGIN`: [`ROLE`] and [`SETTING`]
/// for the current transaction only. `tenant` is a valid organization name
/// (checked again here: it becomes a literal; `None` otherwise).
pub fn restrict_sql(tenant: &str) -> Option<String> {
    is_tenant_name(tenant).then(|| {
        // The name's characters ([A-Za-z0-9._-]) need no quoting.
        format!("SET LOCAL ROLE {ROLE}; SET LOCAL {SETTING} = '{tenant}'")
    })
}

/// [`restrict_sql`], or the error of a name that is no organization's (a
/// bug: names are checked where tokens are read).
pub fn restrict(tenant: &str) -> Result<String, DbError> {
    restrict_sql(tenant)
        .ok_or_else(|| DbError::Restrict(format!("{tenant:?} is not an organization's name")))
}

/// The restrictive policy of a table whose rows' organization is the SQL
/// expression `tenant` (a kind's [`crate::core::kind::Kind::tenant`]):
/// the setting is read once per statement (an init plan), so that the
/// condition costs one comparison a row and can use an index.
pub fn policy_sql(table: &str, tenant: &str) -> String {
    format!(
        "CREATE POLICY {ONE_ORGANIZATION} ON {table} AS RESTRICTIVE FOR SELECT TO {ROLE} \
         USING ({tenant} = (SELECT current_setting('{SETTING}')))"
    )
}

/// A connection checked out for reads: for one organization inside a
/// read-only transaction bound to it (ended when this is dropped), else a
/// plain connection of the pool.
pub struct Reader {
    client: Option<Object>,
    /// A transaction is open (ended by `ROLLBACK` on drop: it wrote nothing).
    open: bool,
}

/// Checks out a connection from `pool` for the reads of `tenant`'s caller
/// (`None`: every organization's, as the service's own login).
pub async fn checkout(pool: &Pool, tenant: Option<&str>) -> Result<Reader, DbError> {
    checkout_reading(pool, tenant, Planning::Estimated).await
}

/// How the reads of a checked-out connection are planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planning {
    /// As the planner estimates best.
    Estimated,
    /// In their query's order without sorting (`enable_sort = off`). A
    /// window's rows then stream from its index at once and in constant
    /// memory, where the planner would otherwise rather sort a table it
    /// reads a good part of (a month's partition, or a large table): a
    /// sort reads everything before the first row and spills to disk. Only
    /// for reads whose order an index gives.
    InOrder,
    /// Prepared statements by their generic plan, made once per connection
    /// (`plan_cache_mode = force_generic_plan`), from indexes
    /// (`enable_seqscan = off`): for statements of index lookups only, over
    /// a partitioned table, whose custom plan (remade at every execution:
    /// every partition planned, in each of its subqueries) costs ten times
    /// their execution (a change feed page's head: 1.2 ms against 0.1 ms).
    /// Without sequential scans, a generic plan made while a partition was
    /// empty stays right as it fills.
    Generic,
}

impl Planning {
    /// The settings, for the current transaction.
    fn settings(self) -> Option<&'static str> {
        match self {
            Planning::Estimated => None,
            Planning::InOrder => Some("SET LOCAL enable_sort = off"),
            Planning::Generic => Some(
                "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off",
            ),
        }
    }
}

/// The statements beginning a reader's transaction: the organization's
/// restriction and `planning`'s settings; `None` when there are none (a
/// plain connection of the pool).
fn begin_sql(tenant: Option<&str>, planning: Planning) -> Result<Option<String>, DbError> {
    let settings: Vec<String> = tenant
        .map(restrict)
        .transpose()?
        .into_iter()
        .chain(planning.settings().map(str::to_owned))
        .collect();
    Ok((!settings.is_empty()).then(|| format!("BEGIN READ ONLY; {}", settings.join("; "))))
}

/// [`checkout`], with `planning` for the reads that follow (in a read-only
/// transaction that ends as the reader's does).
pub async fn checkout_reading(
    pool: &Pool,
    tenant: Option<&str>,
    planning: Planning,
) -> Result<Reader, DbError> {
    fn nothing(_: &Object) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(async { Ok(()) })
    }
    Ok(checkout_with(pool, tenant, planning, nothing).await?.0)
}

/// [`checkout_reading`], and the reader's first read, `first`, sent in the
/// same round trip as the statements beginning its transaction. Requests
/// go out in the order they are first polled, and the join polls the
/// beginning first: `first` runs inside the transaction, bound to
/// `tenant`'s rows, or fails when the beginning did (whose error is then
/// the answer, `first`'s result unread).
pub async fn checkout_with<T, F>(
    pool: &Pool,
    tenant: Option<&str>,
    planning: Planning,
    first: F,
) -> Result<(Reader, T), DbError>
where
    F: for<'c> FnOnce(&'c Object) -> BoxFuture<'c, Result<T, DbError>>,
{
    let begin = begin_sql(tenant, planning)?;
    // Should the beginning or the read fail, the drop ends the transaction.
    let reader = Reader {
        client: Some(pool.get().await?),
        open: begin.is_some(),
    };
    let value = match begin {
        None => first(&reader).await?,
        Some(begin) => {
            let (begun, value) = join(reader.batch_execute(&begin), first(&reader)).await;
            begun?;
            value?
        }
    };
    Ok((reader, value))
}

impl Reader {
    /// Drops the connection instead of giving it back to the pool (its
    /// state is unknown: a query could not be cancelled).
    pub fn discard(mut self) {
        self.open = false;
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

impl Deref for Reader {
    type Target = Object;

    fn deref(&self) -> &Object {
        // Present until the drop or `discard` (both take `self`).
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Reader {
    fn deref_mut(&mut self) -> &mut Object {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if !self.open {
            return; // back to the pool as it came
        }
        // The transaction ends before the connection goes back: the next
        // request must not inherit the role or the organization.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(Object::take(client));
            return;
        };
        runtime.spawn(async move {
            if client.batch_execute("ROLLBACK").await.is_err() {
                drop(Object::take(client));
            }
        });
    }
}

/// Asks the backend of `reader` to stop its running query; then, once it
/// is idle, gives the connection back (or drops it when it cannot tell).
pub async fn cancel(reader: Reader) {
    if let Err(error) = reader.cancel_token().cancel_query(NoTls).await {
        tracing::warn!(%error, "cannot cancel the query; discarding its connection");
        reader.discard();
        return;
    }
    // Replies come in order: this answers after the cancelled query has
    // ended. Should the cancel request land on this query instead, ask
    // once more.
    for _ in 0..2 {
        if reader.simple_query("").await.is_ok() {
            return; // idle and healthy: back to the pool (after ROLLBACK)
        }
        if reader.is_closed() {
            break;
        }
    }
    reader.discard();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restriction_names_the_organization_and_refuses_other_text() {
        assert_eq!(
            restrict_sql("acme").as_deref(),
            Some("SET LOCAL ROLE acctstream_organization; SET LOCAL acctstream.tenant = 'acme'")
        );
        for bad in ["a'b", "", "a;b", "a b"] {
            assert_eq!(restrict_sql(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_policy_reads_the_setting_once() {
        let sql = policy_sql("auth_event", "tenant");
        assert!(sql.contains("AS RESTRICTIVE FOR SELECT TO acctstream_organization"));
        assert!(sql.ends_with("USING (tenant = (SELECT current_setting('acctstream.tenant')))"));
    }
}

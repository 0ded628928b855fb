//! The report queries. They read only the usage rollups (see
//! `sql/0003_usage_rollups.sql`), never `auth_event`: a report costs the same
//! however many events the month had, and keeps working after retention has
//! deleted the month's raw events.
//!
//! Before reading, each report brings the rollups up to date
//! ([`super::rollup::catch_up`], waiting mode), so it counts every event
//! committed before the request. The background job keeps the backlog small,
//! so this is normally one index lookup on an empty queue.

use deadpool_postgres::Pool;

use crate::core::pseudonym::RollupKeys;

use super::report::{AccountingReport, DailyUsers, DailyUsersReport, MethodUsers, ReportMonth};
use super::rollup;
use crate::{db::DbError, metrics::Metrics};

/// The per-method rows and the total in one statement, so both come from
/// the same snapshot. The total's row has a NULL method type. The figures
/// are kept per organization (issue 28): those of the organizations `$2`
/// names, every one's when it is NULL, are summed (a person who uses two
/// organizations is a user of each).
const ACCOUNTING_SQL: &str = "\
    SELECT auth_method_type, sum(user_count)::int8 FROM usage_monthly_count \
    WHERE month = $1 AND ($2::text[] IS NULL OR tenant = ANY($2)) GROUP BY 1 \
    UNION ALL \
    SELECT NULL, sum(user_count)::int8 FROM usage_monthly_total \
    WHERE month = $1 AND ($2::text[] IS NULL OR tenant = ANY($2)) HAVING count(*) > 0";

const DAILY_USERS_SQL: &str = "\
    SELECT day, auth_method_type, sum(user_count)::int8 FROM usage_daily_count \
    WHERE day >= $1 AND day < $2 AND ($3::text[] IS NULL OR tenant = ANY($3)) \
    GROUP BY 1, 2 ORDER BY 1, 2";

/// Brings the rollups up to date (waiting), counting what they set aside.
async fn caught_up(
    client: &mut tokio_postgres::Client,
    keys: &RollupKeys,
    metrics: &Metrics,
) -> Result<(), DbError> {
    use crate::db::upkeep::Upkeep as _;
    let done = rollup::catch_up(client, rollup::Mode::Complete, keys).await?;
    metrics.upkeep_set_aside(rollup::ROLLUPS.name(), done.set_aside);
    Ok(())
}

/// Whose figures a report counts (issue 28).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counted<'a> {
    /// The organizations whose figures are summed (`None`: every one).
    pub tenants: Option<&'a [String]>,
    /// The organization the caller is bound to, if any: the read runs
    /// under row security for it.
    pub reader: Option<&'a str>,
}

/// The rows of one report statement (`$1`, `$2`: `dates`; then the
/// organizations counted), once the rollups are up to date.
async fn figures(
    pool: &Pool,
    counted: Counted<'_>,
    keys: &RollupKeys,
    metrics: &Metrics,
    sql: &str,
    dates: &[chrono::NaiveDate],
) -> Result<Vec<tokio_postgres::Row>, DbError> {
    {
        let mut jobs = pool.get().await?;
        caught_up(&mut jobs, keys, metrics).await?;
    }
    let client = crate::db::tenant::checkout(pool, counted.reader).await?;
    let statement = client.prepare_cached(sql).await?;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        dates.iter().map(|d| d as _).collect();
    params.push(&counted.tenants);
    Ok(client.query(&statement, &params).await?)
}

/// Monthly unique users per method type and across methods, of the
/// organizations `counted` names.
pub async fn accounting_report(
    pool: &Pool,
    month: ReportMonth,
    counted: Counted<'_>,
    keys: &RollupKeys,
    metrics: &Metrics,
) -> Result<AccountingReport, DbError> {
    let rows = figures(
        pool,
        counted,
        keys,
        metrics,
        ACCOUNTING_SQL,
        &[month.first_day()],
    )
    .await?;
    let mut methods = Vec::with_capacity(rows.len());
    let mut total = 0;
    for row in rows {
        let method: Option<String> = row.try_get(0)?;
        let user_count: i64 = row.try_get(1)?;
        match method {
            Some(auth_method_type) => methods.push(MethodUsers {
                auth_method_type,
                user_count,
            }),
            None => total = user_count,
        }
    }
    Ok(AccountingReport::new(month, methods, total))
}

/// Distinct users per day and method type over one month, of the
/// organizations `counted` names.
pub async fn daily_users(
    pool: &Pool,
    month: ReportMonth,
    counted: Counted<'_>,
    keys: &RollupKeys,
    metrics: &Metrics,
) -> Result<DailyUsersReport, DbError> {
    let dates = [month.first_day(), month.end_day()];
    let rows = figures(pool, counted, keys, metrics, DAILY_USERS_SQL, &dates).await?;
    let rows = rows
        .iter()
        .map(|row| {
            Ok(DailyUsers {
                date: row.try_get(0)?,
                auth_method_type: row.try_get(1)?,
                user_count: row.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    Ok(DailyUsersReport::new(month, rows))
}

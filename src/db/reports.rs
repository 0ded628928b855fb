//! The report queries. They read only the usage rollups (see
//! `sql/0003_usage_rollups.sql`), never `auth_event`: a report costs the same
//! however many events the month had, and keeps working after retention has
//! deleted the month's raw events.
//!
//! Before reading, each report brings the rollups up to date
//! ([`crate::db::rollup::catch_up`], waiting mode), so it counts every event
//! committed before the request. The background job keeps the backlog small,
//! so this is normally one index lookup on an empty queue.

use deadpool_postgres::{Pool, PoolError};

use super::rollup;
use crate::core::report::{
    AccountingReport, DailyUsers, DailyUsersReport, MethodUsers, ReportMonth,
};

/// The per-method rows and the total in one statement, so both come from
/// the same snapshot. The total's row has a NULL method type.
const ACCOUNTING_SQL: &str = "\
    SELECT auth_method_type, user_count FROM usage_monthly_count WHERE month = $1 \
    UNION ALL \
    SELECT NULL, user_count FROM usage_monthly_total WHERE month = $1";

const DAILY_USERS_SQL: &str = "\
    SELECT day, auth_method_type, user_count FROM usage_daily_count \
    WHERE day >= $1 AND day < $2";

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No connection could be had: the pool is exhausted or the database is
    /// unreachable.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] PoolError),
    /// The query failed.
    #[error("report query failed: {0}")]
    Query(#[source] tokio_postgres::Error),
}

impl ReportError {
    /// True when the database cannot be reached right now (answer 503).
    pub fn is_unavailable(&self) -> bool {
        match self {
            ReportError::Unavailable(_) => true,
            ReportError::Query(e) => e.is_closed(),
        }
    }
}

/// Monthly unique users per method type and across methods.
pub async fn accounting_report(
    pool: &Pool,
    month: ReportMonth,
) -> Result<AccountingReport, ReportError> {
    let mut client = pool.get().await.map_err(ReportError::Unavailable)?;
    rollup::catch_up(&mut client, rollup::Mode::Complete)
        .await
        .map_err(ReportError::Query)?;
    let statement = client
        .prepare_cached(ACCOUNTING_SQL)
        .await
        .map_err(ReportError::Query)?;
    let rows = client
        .query(&statement, &[&month.first_day()])
        .await
        .map_err(ReportError::Query)?;
    let mut methods = Vec::with_capacity(rows.len());
    let mut total = 0;
    for row in rows {
        let method: Option<String> = row.try_get(0).map_err(ReportError::Query)?;
        let user_count: i64 = row.try_get(1).map_err(ReportError::Query)?;
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

/// Distinct users per day and method type over one month.
pub async fn daily_users(pool: &Pool, month: ReportMonth) -> Result<DailyUsersReport, ReportError> {
    let mut client = pool.get().await.map_err(ReportError::Unavailable)?;
    rollup::catch_up(&mut client, rollup::Mode::Complete)
        .await
        .map_err(ReportError::Query)?;
    let statement = client
        .prepare_cached(DAILY_USERS_SQL)
        .await
        .map_err(ReportError::Query)?;
    let rows = client
        .query(&statement, &[&month.first_day(), &month.end_day()])
        .await
        .map_err(ReportError::Query)?;
    let rows = rows
        .iter()
        .map(|row| {
            Ok(DailyUsers {
                date: row.try_get(0)?,
                auth_method_type: row.try_get(1)?,
                user_count: row.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(ReportError::Query)?;
    Ok(DailyUsersReport::new(month, rows))
}

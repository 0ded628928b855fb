//! The Wi-Fi client-event summary of one window (see
//! [`crate::core::summary`]): four aggregates over the window's rows, read
//! in one snapshot so that they agree with each other.

use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;

use crate::db::DbError;
use crate::{
    core::{
        kind::Listing,
        summary::{Attempts, ClientSummary, FailureCount, TypeCount},
        window::NavigationLinks,
    },
    kinds::client::{EVENT_TYPES, KIND},
};

/// Reads the summary of `listing` (a window of client events, without filters).
pub async fn client_summary(
    pool: &Pool,
    listing: &Listing,
    links: NavigationLinks,
) -> Result<ClientSummary, DbError> {
    let mut client = pool.get().await?;
    let (predicate, _) = listing.predicate(&KIND);
    let bounds: Vec<_> = listing
        .lower
        .iter()
        .chain(listing.upper.iter())
        .map(|b| b.at)
        .collect();
    // Then the organizations (the summary has no other filter).
    let filters = crate::db::records::filter_params(&client, &KIND, &listing.selection).await?;
    let params: Vec<&(dyn ToSql + Sync)> = bounds
        .iter()
        .map(|b| b as &(dyn ToSql + Sync))
        .chain(filters.iter().map(|p| p.as_sql()))
        .collect();
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    if let Some(tenant) = listing.selection.tenant.as_deref() {
        // The second layer of organizations (row security), as every read
        // of one organization has it (crate::db::tenant).
        tx.batch_execute(&crate::db::tenant::restrict(tenant)?)
            .await?;
    }
    let table = KIND.table;
    let types = tx
        .query(
            &format!("SELECT event_type, count(*) FROM {table}{predicate} GROUP BY event_type"),
            &params,
        )
        .await?;
    let failures = tx
        .query(
            &format!(
                "SELECT failure_code::int8, failure, sub_failure_code::int8, sub_failure, count(*) \
                 FROM {table}{predicate} AND event_type = 'Failure' \
                 GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC, 3 LIMIT {}",
                crate::core::summary::TOP_FAILURES
            ),
            &params,
        )
        .await?;
    let attempts = |column: &str| {
        format!(
            "SELECT {column}, count(*) FILTER (WHERE event_type = 'Success'), \
             count(*) FILTER (WHERE event_type = 'Failure') \
             FROM {table}{predicate} AND event_type IN ('Success', 'Failure') GROUP BY 1"
        )
    };
    let ssids = tx.query(&attempts("ssid"), &params).await?;
    let aps = tx.query(&attempts("ap_name"), &params).await?;
    tx.commit().await?;

    let mut event_types = Vec::new();
    for name in EVENT_TYPES {
        let mut count = 0;
        for row in &types {
            if row.try_get::<_, &str>(0)? == name {
                count = row.try_get(1)?;
            }
        }
        event_types.push(TypeCount {
            event_type: name.to_owned(),
            count,
        });
    }
    let mut top_failures = Vec::new();
    for row in failures {
        top_failures.push(FailureCount {
            failure_code: row.try_get(0)?,
            failure: row.try_get(1)?,
            sub_failure_code: row.try_get(2)?,
            sub_failure: row.try_get(3)?,
            count: row.try_get(4)?,
        });
    }
    let list = |rows: Vec<tokio_postgres::Row>| -> Result<Vec<Attempts>, DbError> {
        rows.iter()
            .map(|r| Ok(Attempts::new(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    };
    let mut summary = ClientSummary {
        window: links.span.clone(),
        links,
        event_types,
        top_failures,
        ssids: list(ssids)?,
        aps: list(aps)?,
    };
    summary.sort();
    Ok(summary)
}

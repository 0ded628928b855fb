//! The access audit trail: one row per request of an authenticated client,
//! written off the hot path, complete and aborted streams told apart,
//! identity parameters only as pseudonyms, readable with the audit scope.

use std::time::Duration;

use acctstream::{
    core::identity::{pseudonym_of, IdentityType},
    db::audit::{run_writer, AuditSink},
};
use serde_json::Value;

use crate::helpers::{spawn_app_with, AppOptions, TestApp, AUDIT_TOKEN, IDENTITIES_TOKEN, TOKEN};

async fn audited_app() -> TestApp {
    let (sink, entries) = AuditSink::channel(1024);
    let mut options = AppOptions::default();
    options.http.audit = Some(sink);
    let app = spawn_app_with(options).await;
    actix_web::rt::spawn(run_writer(app.pool.clone(), entries));
    app
}

/// The audit rows once `n` exist (the writer is asynchronous).
async fn rows(app: &TestApp, n: usize) -> Vec<tokio_postgres::Row> {
    for _ in 0..100 {
        let rows = app
            .db
            .query(
                "SELECT client, scopes, method, route, parameters, representation, status, \
                 rows_sent, bytes_sent, completed, request_id FROM access_audit ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        if rows.len() >= n {
            return rows;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} audit rows after 5 s");
}

fn label_of(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    format!(
        "token-{}",
        digest[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[actix_web::test]
async fn complete_and_aborted_streams_are_recorded() {
    let app = audited_app().await;
    app.insert_many("2026-01-01T00:00:00Z", 300_000).await;

    let mut response = app
        .get("/api/v1/statistics/events/day/2026-01-01?format=csv&authMethodType=PASSWORD")
        .insert_header(("X-Request-Id", "audit-complete-1"))
        .no_decompress()
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.body().limit(1 << 30).await.unwrap();

    // A client that goes away after the first chunk.
    let mut aborted = app
        .get("/api/v1/statistics/events/day/2026-01-01?format=ndjson")
        .send()
        .await
        .unwrap();
    use futures_util::StreamExt;
    let first = aborted.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(aborted);

    let rows = rows(&app, 2).await;
    let complete = &rows[0];
    assert_eq!(complete.get::<_, String>("client"), label_of(TOKEN));
    assert_eq!(complete.get::<_, String>("scopes"), "read");
    assert_eq!(complete.get::<_, String>("method"), "GET");
    assert_eq!(
        complete.get::<_, String>("route"),
        "/api/v1/statistics/events/{period}/{datetime}"
    );
    assert_eq!(
        complete.get::<_, String>("parameters"),
        "period=day&datetime=2026-01-01&format=csv&authMethodType=PASSWORD"
    );
    assert_eq!(
        complete
            .get::<_, Option<String>>("representation")
            .as_deref(),
        Some("csv")
    );
    assert_eq!(complete.get::<_, i32>("status"), 200);
    assert_eq!(complete.get::<_, Option<i64>>("rows_sent"), Some(300_000));
    assert_eq!(complete.get::<_, i64>("bytes_sent"), body.len() as i64);
    assert!(complete.get::<_, bool>("completed"));
    assert_eq!(complete.get::<_, String>("request_id"), "audit-complete-1");

    let cut = &rows[1];
    assert!(
        !cut.get::<_, bool>("completed"),
        "an aborted stream is not complete"
    );
    assert!(cut.get::<_, i64>("bytes_sent") < body.len() as i64);
    assert_eq!(
        cut.get::<_, Option<String>>("representation").as_deref(),
        Some("ndjson")
    );
}

#[actix_web::test]
async fn identities_are_audited_only_as_pseudonyms_and_the_trail_needs_the_audit_scope() {
    let app = audited_app().await;
    let response = app
        .get_as(
            IDENTITIES_TOKEN,
            "/api/v1/statistics/sessions/day/2026-11-20?user=jane%40example.com&nas=10.0.0.1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .get_as(
            IDENTITIES_TOKEN,
            "/api/v1/users/jane%40example.com/sessions",
        )
        .send()
        .await
        .unwrap();
    // No session of hers yet: 404, audited all the same.
    assert_eq!(response.status(), 404);
    // A parameter the route does not know is kept as a pseudonym too.
    let response = app
        .get_as(
            IDENTITIES_TOKEN,
            "/api/v1/statistics/events/hour?userId=bob%40example.com",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "unknown parameters are ignored");
    // A request without a valid token is not attributed to anyone.
    let response = app
        .get_as("nobody", "/api/v1/statistics/events/hour")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let mut rows = rows(&app, 3).await;
    assert_eq!(rows.len(), 3);
    // A row is written when its response ends: a stream's may come after
    // the next request's, so the rows are told apart by route.
    let route = |row: &tokio_postgres::Row| row.get::<_, String>("route");
    rows.sort_by_key(|row| {
        let route = route(row);
        (route.contains("events"), !route.contains("statistics"))
    });
    assert!(
        route(&rows[0]).contains("statistics/sessions"),
        "{}",
        route(&rows[0])
    );
    assert!(route(&rows[1]).contains("users"), "{}", route(&rows[1]));
    assert!(route(&rows[2]).contains("events"), "{}", route(&rows[2]));
    let bob = pseudonym_of(&app.pseudonymiser, IdentityType::User, "bob@example.com");
    assert_eq!(
        rows[2].get::<_, String>("parameters"),
        format!("period=hour&userId={bob}")
    );
    let pseudonym = pseudonym_of(
        &app.pseudonymiser,
        IdentityType::RadiusUser,
        "jane@example.com",
    );
    for row in &rows[..2] {
        let parameters: String = row.get("parameters");
        assert!(!parameters.contains("jane"), "{parameters}");
        assert!(
            parameters.contains(&format!("user={pseudonym}")),
            "{parameters}"
        );
        assert_eq!(row.get::<_, String>("scopes"), "read+identities");
    }
    assert!(rows[0]
        .get::<_, String>("parameters")
        .contains("nas=10.0.0.1"));

    // Reading the trail: the audit scope only.
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let path = format!("/api/v1/audit/day/{day}");
    let mut response = app.get(&path).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope");
    assert!(response
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    let mut response = app
        .get_as(AUDIT_TOKEN, &format!("{path}?format=json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let raw = response.body().await.unwrap();
    let body: Value = serde_json::from_slice(&raw)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&raw)));
    let entries = body["entries"].as_array().unwrap();
    assert!(entries.len() >= 2, "{body}");
    assert_eq!(
        entries[0]["route"],
        "/api/v1/statistics/sessions/{period}/{datetime}"
    );
    assert_eq!(entries[0]["client"], label_of(IDENTITIES_TOKEN));
    assert!(!body.to_string().contains("jane"));
    // And that read is audited in turn, under the token's name.
    let rows = rows_with_client(&app, "auditor").await;
    assert_eq!(rows, 1);
}

async fn rows_with_client(app: &TestApp, client: &str) -> i64 {
    for _ in 0..100 {
        let n: i64 = app
            .db
            .query_one(
                "SELECT count(*) FROM access_audit WHERE client = $1",
                &[&client],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return n;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    0
}

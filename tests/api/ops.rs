//! Operations endpoints: health, readiness that follows the database, and
//! metrics that move with the traffic.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use acctstream::{
    db::{
        self,
        embedded::{test_cluster_dir, EmbeddedOptions, EmbeddedPostgres},
    },
    http::{
        self,
        ops::{MetricsToken, OpsOptions},
    },
};
use actix_web::http::header;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::helpers::{
    body_of, connect, eventually, fresh_database_unmigrated, read_bytes, spawn_app, spawn_app_on,
    spawn_app_with, AppOptions, TestApp, TOKEN,
};

/// `GET path` without a token; returns the status and the body.
async fn get_plain(app: &TestApp, path: &str) -> (u16, Vec<u8>) {
    let mut response = app
        .client()
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, body_of(&mut response).await)
}

#[actix_web::test]
async fn healthz_answers_without_a_token_or_database() {
    // The pool points at a server that does not exist.
    let mut nowhere = tokio_postgres::Config::new();
    nowhere
        .host_path("/nonexistent-acctstream-socket-dir")
        .user("x")
        .dbname("x");
    let app = spawn_app_with(AppOptions {
        app_database: Some(nowhere),
        ..AppOptions::default()
    })
    .await;
    let (status, body) = get_plain(&app, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        serde_json::json!({"status": "ok"})
    );
    let (status, body) = get_plain(&app, "/readyz").await;
    assert_eq!(status, 503);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[actix_web::test]
async fn readyz_needs_the_migrations() {
    let (name, config) = fresh_database_unmigrated().await;
    let app = spawn_app_on(name, config.clone(), AppOptions::default()).await;
    let (status, body) = get_plain(&app, "/readyz").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));

    let mut client = connect(&config).await;
    db::migrate::run(&mut client, &acctstream::kinds::REGISTRY.kinds())
        .await
        .unwrap();
    let (status, body) = get_plain(&app, "/readyz").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["pool"]["maxSize"], 4);
}

fn start_cluster(dir: std::path::PathBuf) -> EmbeddedPostgres {
    EmbeddedPostgres::start(EmbeddedOptions {
        data_dir: dir,
        durable: false,
        ..Default::default()
    })
    .expect("start a private PostgreSQL")
}

/// A migrated cluster of the test's own (the shared one must not be
/// stopped): its directory, the running server and its `postgres` database.
async fn own_cluster() -> (std::path::PathBuf, EmbeddedPostgres, tokio_postgres::Config) {
    let dir = test_cluster_dir().unwrap();
    let pg = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || start_cluster(dir))
            .await
            .unwrap()
    };
    let config = pg.pg_config("postgres");
    let mut client = connect(&config).await;
    db::migrate::run(&mut client, &acctstream::kinds::REGISTRY.kinds())
        .await
        .unwrap();
    (dir, pg, config)
}

#[actix_web::test]
async fn readyz_follows_the_database_down_and_up_again_without_a_restart() {
    let (dir, pg, config) = own_cluster().await;
    let app = spawn_app_on("postgres".into(), config.clone(), AppOptions::default()).await;
    let (status, _) = get_plain(&app, "/readyz").await;
    assert_eq!(status, 200);
    // A pooled connection now exists; it must not be trusted once the server is gone.
    assert!(app.pool.status().size >= 1);

    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let (status, body) = get_plain(&app, "/readyz").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "readiness took {:?} to answer",
        started.elapsed()
    );
    let (status, _) = get_plain(&app, "/healthz").await;
    assert_eq!(status, 200, "liveness does not depend on the database");

    let pg = tokio::task::spawn_blocking(move || start_cluster(dir))
        .await
        .unwrap();
    eventually("readiness recovers", || async {
        get_plain(&app, "/readyz").await.0 == 200
    })
    .await;
    drop(app);
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .unwrap();
}

/// The samples of an OpenMetrics exposition: `name{labels}` → value.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// The app's `/metrics`, checked for its type and end, as samples.
pub async fn metrics(app: &TestApp) -> BTreeMap<String, f64> {
    let mut response = app
        .client()
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers().get(header::CONTENT_TYPE).unwrap();
    assert!(content_type
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = String::from_utf8(body_of(&mut response).await).unwrap();
    assert!(text.ends_with("# EOF\n"));
    parse_metrics(&text)
}

fn value(metrics: &BTreeMap<String, f64>, sample: &str) -> f64 {
    metrics.get(sample).copied().unwrap_or(0.0)
}

const DAY: &str = "/api/v1/statistics/events/day/2021-04-24";
const WINDOW_ROUTE: &str = "/api/v1/statistics/events/{period}/{datetime}";

#[actix_web::test]
async fn metrics_follow_requests_rows_and_streams() {
    let app = spawn_app().await;
    app.insert_many("2021-04-24T00:00:00Z", 1500).await;

    for accept in ["application/json", "text/csv"] {
        let mut response = app
            .get(DAY)
            .insert_header(("Accept", accept))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        body_of(&mut response).await;
    }
    assert_eq!(get_plain(&app, "/healthz").await.0, 200);
    assert_eq!(get_plain(&app, "/no/such/thing").await.0, 404);
    let unauthorized = app
        .client()
        .get(format!("{}{DAY}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let m = metrics(&app).await;
    let requests = |route: &str, status: u16| {
        value(
            &m,
            &format!(
                r#"acctstream_http_requests_total{{method="GET",route="{route}",status="{status}"}}"#
            ),
        )
    };
    assert_eq!(requests(WINDOW_ROUTE, 200), 2.0, "{m:#?}");
    assert_eq!(requests(WINDOW_ROUTE, 401), 1.0);
    assert_eq!(requests("/healthz", 200), 1.0);
    assert_eq!(requests("unmatched", 404), 1.0);
    assert!(
        !m.keys()
            .any(|k| k.contains("2021-04-24") || k.contains("/no/such")),
        "a raw path became a label"
    );
    assert_eq!(
        value(
            &m,
            &format!(
                r#"acctstream_http_request_duration_seconds_count{{method="GET",route="{WINDOW_ROUTE}"}}"#
            )
        ),
        3.0
    );
    for format in ["json", "csv"] {
        assert_eq!(
            value(
                &m,
                &format!(
                    r#"acctstream_rows_streamed_total{{resource="events",format="{format}"}}"#
                )
            ),
            1500.0,
            "{format}"
        );
    }
    assert_eq!(
        value(&m, r#"acctstream_streams_in_progress{resource="events"}"#),
        0.0
    );
    assert_eq!(value(&m, "acctstream_db_pool_max_size"), 4.0);
    assert!(value(&m, "acctstream_db_pool_size") >= 1.0);
    assert_eq!(value(&m, "acctstream_db_pool_waiting"), 0.0);
}

const BIG_HOUR: &str = "/api/v1/statistics/events/hour/2021-04-10T00";

#[actix_web::test]
async fn metrics_count_streams_cut_short_by_the_client_or_the_database() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", 300_000).await;
    let sample = |reason: &str| {
        format!(r#"acctstream_streams_aborted_total{{resource="events",reason="{reason}"}}"#)
    };
    let in_progress = r#"acctstream_streams_in_progress{resource="events"}"#;

    // The client goes away mid-stream.
    let mut socket = app.open_raw(BIG_HOUR, &[("Connection", "close")]).await;
    read_bytes(&mut socket, 64 * 1024).await;
    let during = metrics(&app).await;
    assert_eq!(value(&during, in_progress), 1.0);
    assert_eq!(value(&during, "acctstream_db_pool_in_use"), 1.0);
    drop(socket);
    eventually("the disconnect is counted", || async {
        let m = metrics(&app).await;
        value(&m, &sample("client_disconnect")) == 1.0 && value(&m, in_progress) == 0.0
    })
    .await;
    let m = metrics(&app).await;
    let rows = value(
        &m,
        r#"acctstream_rows_streamed_total{resource="events",format="json"}"#,
    );
    assert!(rows > 0.0 && rows < 300_000.0, "rows {rows}");
    assert_eq!(value(&m, &sample("database_error")), 0.0);

    // The database fails mid-stream.
    let mut socket = app.open_raw(BIG_HOUR, &[("Connection", "close")]).await;
    read_bytes(&mut socket, 64 * 1024).await;
    app.terminate_event_query().await;
    let mut rest = Vec::new();
    socket.read_to_end(&mut rest).await.unwrap();
    eventually("the database failure is counted", || async {
        let m = metrics(&app).await;
        value(&m, &sample("database_error")) == 1.0 && value(&m, in_progress) == 0.0
    })
    .await;
    assert_eq!(
        value(&metrics(&app).await, &sample("client_disconnect")),
        1.0
    );
}

#[actix_web::test]
async fn metrics_token_protects_metrics_when_set() {
    let app = spawn_app_with(AppOptions {
        http: http::AppOptions {
            ops: OpsOptions {
                metrics_token: Some(MetricsToken::new("metrics-secret")),
                ..OpsOptions::default()
            },
            ..http::AppOptions::default()
        },
        ..AppOptions::default()
    })
    .await;
    let url = format!("{}/metrics", app.address);
    let client = app.client();

    let mut missing = client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert!(missing.headers().contains_key(header::WWW_AUTHENTICATE));
    let body: Value = serde_json::from_slice(&body_of(&mut missing).await).unwrap();
    assert_eq!(body["error"], "invalid_token");

    let api_token = client
        .get(&url)
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        api_token.status(),
        401,
        "an API token is not the metrics token"
    );

    let mut ok = client
        .get(&url)
        .insert_header(("Authorization", "Bearer metrics-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let text = String::from_utf8(body_of(&mut ok).await).unwrap();
    assert!(text.contains("acctstream_http_requests_total"), "{text}");
}

/// Issue 11, item 1: a database restart (fast shutdown: pooled connections
/// get 57P01 `admin_shutdown`) answers 503 with `Retry-After` on every
/// route kind (stream, ingest, report) while it lasts, never a 500, and the
/// next requests succeed without restarting the service.
#[actix_web::test]
async fn a_database_restart_is_503_then_recovers_on_every_route() {
    let (dir, pg, config) = own_cluster().await;
    let app = spawn_app_on("postgres".into(), config.clone(), AppOptions::default()).await;
    let ingest_body = r#"{"timestamp":"2021-04-10T00:00:00Z","authMethodType":"A","authMethodName":"a","authRequestOrigin":"o","userId":"u"}"#;
    // Every route kind, with a connection each from the pool.
    let statuses = || async {
        let stream = app.get("/api/v1/statistics/events/day/2021-04-10");
        let report = app.get("/api/v1/accounting/report/2021-04");
        let ingest = app
            .client()
            .post(format!("{}/api/v1/events", app.address))
            .insert_header((
                "Authorization",
                format!("Bearer {}", crate::helpers::WRITE_TOKEN),
            ))
            .insert_header(("Content-Type", "application/x-ndjson"))
            .send_body(ingest_body);
        let (stream, report, ingest) = tokio::join!(stream.send(), report.send(), ingest);
        let mut out = Vec::new();
        for (route, response) in [("stream", stream), ("report", report), ("ingest", ingest)] {
            let mut response =
                response.unwrap_or_else(|e| panic!("{route}: no answer at all: {e}"));
            let status = response.status().as_u16();
            let body = crate::helpers::body_of(&mut response).await;
            if status == 503 {
                assert!(response.headers().get("retry-after").is_some(), "{route}");
                let body: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(body["error"], "temporarily_unavailable", "{route}");
            }
            out.push((route, status));
        }
        out
    };
    for (route, status) in statuses().await {
        assert_eq!(status, 200, "{route} before the restart");
    }
    assert!(app.pool.status().size >= 2);

    // Down: every route answers 503 promptly.
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .unwrap();
    for (route, status) in statuses().await {
        assert_eq!(status, 503, "{route} while the database is down");
    }
    // Up again: the pooled connections are dead (57P01 or closed); requests
    // answer 200 or 503, never anything else, and soon 200 everywhere.
    let pg = tokio::task::spawn_blocking(move || start_cluster(dir))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let round = statuses().await;
        for (route, status) in &round {
            assert!(
                *status == 200 || *status == 503,
                "{route} answered {status} after the restart"
            );
        }
        if round.iter().all(|(_, status)| *status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {round:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(app);
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .unwrap();
}

/// Issue 27, item 3: `ACCTSTREAM_POOL_SIZE` bounds every connection the
/// service opens, the background jobs' included: under downloads, ingest
/// and the jobs' work at once, PostgreSQL never sees more of the app's
/// connections than the setting.
#[actix_web::test]
async fn connections_never_exceed_the_pool_size() {
    const POOL_SIZE: usize = 6;
    let app = spawn_app_with(AppOptions {
        pool_size: POOL_SIZE,
        workers: 2,
        jobs: true,
        ..AppOptions::default()
    })
    .await;
    app.insert_many("2021-04-10T00:00:00Z", 100_000).await;
    // Old events for retention to delete while the rest runs.
    app.insert_many("2020-01-01T00:00:00Z", 20_000).await;
    let own: i32 = app
        .db
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let db_name = app.db_name.clone();
        let db = connect(&crate::helpers::database_config(&app.db_name)).await;
        actix_web::rt::spawn(async move {
            let mut most = 0i64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let n: i64 = db
                    .query_one(
                        // Connections, not the server's own workers
                        // (autovacuum visits busy tables of the database).
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                         AND backend_type = 'client backend' \
                         AND pid <> pg_backend_pid() AND pid <> $2",
                        &[&db_name, &own],
                    )
                    .await
                    .unwrap()
                    .get(0);
                most = most.max(n);
                actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    // Ten downloads at once, twice, while the jobs roll up and delete.
    for _ in 0..2 {
        let downloads = (0..10).map(|_| async {
            let mut response = app
                .get("/api/v1/statistics/events/day/2021-04-10")
                .insert_header(("Accept", "text/csv"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let _ = crate::helpers::body_of(&mut response).await;
            status
        });
        let statuses = futures_util::future::join_all(downloads).await;
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 503),
            "{statuses:?}"
        );
    }
    crate::helpers::eventually("retention deleted the old events", || async {
        app.db
            .query_one(
                "SELECT count(*) FROM auth_event WHERE occurred_at < '2021-01-01'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
    })
    .await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let most = sampler.await.unwrap();
    assert!(most >= 3, "the load used several connections: {most}");
    assert!(
        most <= POOL_SIZE as i64,
        "{most} connections, ACCTSTREAM_POOL_SIZE is {POOL_SIZE}"
    );
}

/// Issue 27, item 2: audit entries survive a database restart. Entries of
/// requests answered just before the restart and during the outage wait in
/// memory while the writer tries again, and are all stored, in order, once
/// the database is back (the outage here outlasts the old five attempts).
#[actix_web::test]
async fn audit_entries_survive_a_database_restart() {
    let (dir, pg, config) = own_cluster().await;
    let (sink, entries) = db::audit::AuditSink::channel(1024);
    let mut options = AppOptions::default();
    options.http.audit = Some(sink);
    let app = spawn_app_on("postgres".into(), config.clone(), options).await;
    actix_web::rt::spawn(db::audit::run_writer(app.pool.clone(), entries));
    for _ in 0..5 {
        let response = app
            .get("/api/v1/statistics/events/day/2021-04-10")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Down at once: the writer is still gathering the first batch.
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .unwrap();
    for _ in 0..10 {
        let response = app
            .get("/api/v1/statistics/events/day/2021-04-11")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let pg = tokio::task::spawn_blocking(move || start_cluster(dir))
        .await
        .unwrap();
    let db = connect(&config).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = db
            .query(
                "SELECT route, status, parameters FROM access_audit ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        if rows.len() >= 15 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seen: Vec<(i32, String)> = rows.iter().map(|r| (r.get(1), r.get(2))).collect();
    assert_eq!(seen.len(), 15, "{seen:?}");
    // In the order they were answered.
    assert!(seen[..5]
        .iter()
        .all(|(s, p)| *s == 200 && p.contains("2021-04-10")));
    assert!(seen[5..]
        .iter()
        .all(|(s, p)| *s == 503 && p.contains("2021-04-11")));
    drop(app);
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .unwrap();
}

/// Issue 27, item 2: with `ACCTSTREAM_AUDIT_REQUIRED`, a request whose entry
/// the buffer cannot take is refused (503) instead of served unaudited;
/// without it, it is served and the dropped entry is counted.
#[actix_web::test]
async fn a_full_audit_buffer_refuses_reads_only_when_the_trail_is_required() {
    const PATH: &str = "/api/v1/statistics/events/day/2021-04-10";
    for required in [true, false] {
        // A buffer of one entry, and no writer: it is full after a request.
        let (sink, _entries) = db::audit::AuditSink::channel(1);
        let mut options = AppOptions::default();
        options.http.audit = Some(sink.counting_in(options.http.metrics.clone()));
        options.http.audit_required = required;
        let app = spawn_app_with(options).await;
        let response = app.get(PATH).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let mut response = app.get(PATH).send().await.unwrap();
        let (_, metrics) = get_plain(&app, "/metrics").await;
        let metrics = String::from_utf8(metrics).unwrap();
        assert!(
            metrics.contains("acctstream_audit_entries_buffered 1"),
            "{metrics}"
        );
        if required {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "temporarily_unavailable");
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("audit trail"),
                "{body}"
            );
            assert!(
                metrics.contains("acctstream_audit_entries_dropped_total 0"),
                "{metrics}"
            );
        } else {
            assert_eq!(response.status(), 200);
            body_of(&mut response).await;
            let (_, metrics) = get_plain(&app, "/metrics").await;
            let metrics = String::from_utf8(metrics).unwrap();
            assert!(
                metrics.contains("acctstream_audit_entries_dropped_total 1"),
                "{metrics}"
            );
        }
    }
}

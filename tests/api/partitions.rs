//! Time partitions of the kinds' own tables (issue 25): a new database's
//! tables are range partitions by month made ahead, a record no partition
//! covers lands in the default partition and is served, the job moves
//! what retention keeps into partitions it makes, retention drops whole
//! partitions and trims the edge one, and `migrate --partition` converts a
//! populated database while ingest and reads go on.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use acctstream::{
    core::{kind::Kind, partition::Interval},
    db::{self, retention::RetentionOptions},
};
use awc::http::header;
use chrono::{DateTime, Datelike, Months, TimeDelta, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    body_of, connect, database_config, database_url, eventually, fresh_database,
    fresh_database_unmigrated, pseudonymiser, spawn_app, spawn_app_on, AppOptions, TestApp,
    WRITE_TOKEN,
};

const INGEST: &str = "/api/v1/events";
const BIN: &str = env!("CARGO_BIN_EXE_acctstream");
const AUTH: &Kind = &acctstream::kinds::auth::KIND;

/// One NDJSON event with an `eventId`.
fn object(at: DateTime<Utc>, user: &str, id: &str) -> String {
    serde_json::json!({
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "authMethodType": "PASSWORD",
        "authMethodName": "password.1",
        "authRequestOrigin": "CN=Appl-1,DC=test",
        "userId": user,
        "eventId": id,
    })
    .to_string()
}

/// `POST /api/v1/events` as NDJSON: the status and the answer.
async fn ingest(app: &TestApp, body: String) -> (u16, Value) {
    let mut response = app
        .client()
        .post(format!("{}{INGEST}", app.address))
        .insert_header((header::AUTHORIZATION, format!("Bearer {WRITE_TOKEN}")))
        .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
        .send_body(body)
        .await
        .expect("POST");
    let body = body_of(&mut response).await;
    (
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// The partition holding the event with `event_id`.
async fn partition_of(db: &tokio_postgres::Client, event_id: &str) -> String {
    db.query_one(
        "SELECT tableoid::regclass::text FROM auth_event WHERE event_id = $1",
        &[&event_id],
    )
    .await
    .expect("the event is stored")
    .get(0)
}

fn month_start(at: DateTime<Utc>) -> DateTime<Utc> {
    Interval::Monthly.start_of(at)
}

fn months_back(n: u32) -> DateTime<Utc> {
    month_start(Utc::now()) - Months::new(n)
}

#[actix_web::test]
async fn a_new_database_keeps_each_instant_kind_in_monthly_partitions_made_ahead() {
    let app = spawn_app().await;
    let now = Utc::now();
    for table in ["auth_event", "client_event", "access_audit"] {
        let partitions = db::partition::partitions(&app.db, table).await.unwrap();
        assert!(
            partitions
                .iter()
                .any(|p| p.default && p.name == format!("{table}_default")),
            "{table}: {partitions:?}"
        );
        for range in Interval::Monthly.ahead_of(now) {
            let name = range.name(table, Interval::Monthly);
            let partition = partitions.iter().find(|p| p.name == name);
            assert_eq!(
                partition.map(|p| (p.from, p.to)),
                Some((Some(range.from), Some(range.to))),
                "{table}: {name} in {partitions:?}"
            );
        }
    }
    // radacct stays as FreeRADIUS ships it.
    let radacct: String = app
        .db
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = 'radacct'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(radacct, "r");

    // A record of this month goes to its partition; one far ahead and one
    // far back to the default partition. All three are served.
    let far_ahead = "2090-01-15T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let far_back = "1999-02-14T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let body = [
        object(now, "alice", "now"),
        object(far_ahead, "bob", "ahead"),
        object(far_back, "carol", "back"),
    ]
    .join("\n");
    let (status, answer) = ingest(&app, body.clone()).await;
    assert_eq!(
        (status, answer["inserted"].as_u64()),
        (200, Some(3)),
        "{answer}"
    );
    let this_month = Interval::Monthly
        .range_of(now)
        .unwrap()
        .name("auth_event", Interval::Monthly);
    assert_eq!(partition_of(&app.db, "now").await, this_month);
    assert_eq!(partition_of(&app.db, "ahead").await, "auth_event_default");
    assert_eq!(partition_of(&app.db, "back").await, "auth_event_default");
    for (month, user) in [("2090-01", "bob"), ("1999-02", "carol")] {
        let window = app
            .get_json(&format!("/api/v1/statistics/events/month/{month}"))
            .await;
        let events = window["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{window}");
        assert_eq!(events[0]["userId"], app.pseudonym(user));
    }
    // The same request again: every eventId is stored, in whichever
    // partition.
    let (status, answer) = ingest(&app, body).await;
    assert_eq!(
        (
            status,
            answer["inserted"].as_u64(),
            answer["duplicates"].as_u64()
        ),
        (200, Some(0), Some(3)),
        "{answer}"
    );
    let count: i64 = app
        .db
        .query_one("SELECT count(*) FROM auth_event", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3);
}

#[actix_web::test]
async fn the_job_moves_what_retention_keeps_out_of_the_default_partition_and_reports_the_rest() {
    let (name, config) = fresh_database().await;
    let db = connect(&config).await;
    // Two months back (kept by 180 days of retention, no partition made
    // ahead covers it) and far ahead: both in the default partition.
    let back = months_back(2) + TimeDelta::days(3);
    let ahead = "2090-06-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
    for (at, id) in [(back, "back"), (ahead, "ahead")] {
        db.execute(
            "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id, event_id) VALUES ($1, 'PASSWORD', 'p', 'o', 'u', $2)",
            &[&at, &id],
        )
        .await
        .unwrap();
        assert_eq!(partition_of(&db, id).await, "auth_event_default");
    }
    let app = spawn_app_on(
        name,
        config,
        AppOptions {
            jobs: true,
            ..AppOptions::default()
        },
    )
    .await;
    let expected = format!("auth_event_p{}_{:02}", back.year(), back.month());
    eventually(
        "the job moves the kept event into a partition of its month",
        || async { partition_of(&app.db, "back").await == expected },
    )
    .await;
    eventually(
        "/metrics counts what the default partition holds",
        || async {
            crate::ops::metrics(&app)
                .await
                .get("acctstream_default_partition_rows{kind=\"events\"}")
                .copied()
                == Some(1.0)
        },
    )
    .await;
    assert_eq!(partition_of(&app.db, "ahead").await, "auth_event_default");
    // Moved with its id: the window of its day still has it, once.
    let day = back.format("%Y-%m-%d");
    let window = app
        .get_json(&format!("/api/v1/statistics/events/day/{day}"))
        .await;
    assert_eq!(window["events"].as_array().unwrap().len(), 1, "{window}");
}

#[actix_web::test]
async fn retention_drops_whole_partitions_and_trims_the_one_at_the_cutoff() {
    let app = spawn_app().await;
    let (m3, m2, m1) = (months_back(3), months_back(2), months_back(1));
    // Ten events in each of the three months, the middle one's spread over
    // its days 1-5 and 21-25.
    let mut body = Vec::new();
    for (month, days) in [
        (m3, [0, 1, 2, 3, 4]),
        (m2, [0, 1, 2, 3, 4]),
        (m1, [0, 1, 2, 3, 4]),
    ] {
        for (n, day) in days.iter().enumerate() {
            let early = month + TimeDelta::days(*day);
            let late = month + TimeDelta::days(20 + day);
            body.push(object(
                early,
                &format!("u{n}"),
                &format!("{}-e{n}", month.month()),
            ));
            body.push(object(
                late,
                &format!("u{n}"),
                &format!("{}-l{n}", month.month()),
            ));
        }
    }
    let (status, answer) = ingest(&app, body.join("\n")).await;
    assert_eq!(
        (status, answer["inserted"].as_u64()),
        (200, Some(30)),
        "{answer}"
    );
    // They wait in the default partition until partitions of their months
    // are made (with every one kept: retention disabled).
    let mut client = app.pool.get().await.unwrap();
    let prepared = db::partition::prepare(&mut client, AUTH, Interval::Monthly, Utc::now(), None)
        .await
        .unwrap();
    drop(client);
    assert_eq!(
        (prepared.moved, prepared.default_rows),
        (30, 0),
        "{prepared:?}"
    );
    let name = |at: DateTime<Utc>| format!("auth_event_p{}_{:02}", at.year(), at.month());
    for month in [m3, m2, m1] {
        assert!(prepared.made.contains(&name(month)), "{prepared:?}");
    }
    let cutoff = m2 + TimeDelta::days(10);
    // Not rolled up yet (a pass without the key cannot bring the rollups
    // up to date): retention keeps every event, and no partition goes.
    let unsettled = RetentionOptions {
        kinds: acctstream::kinds::REGISTRY.kinds(),
        batch_pause: std::time::Duration::ZERO,
        ..RetentionOptions::default()
    };
    let outcome = db::retention::purge(&app.pool, cutoff, &unsettled, &CancellationToken::new())
        .await
        .unwrap();
    assert!(outcome.dropped.is_empty(), "{:?}", outcome.dropped);
    assert_eq!(outcome.deleted("events"), 0);
    let report_path = format!("/api/v1/accounting/report/{}", m3.format("%Y-%m"));
    let report = app.get_json(&report_path).await;

    let options = RetentionOptions {
        upkeep: acctstream::kinds::REGISTRY.upkeeps(),
        pseudonymiser: Some(pseudonymiser()),
        kinds: acctstream::kinds::REGISTRY.kinds(),
        batch_pause: std::time::Duration::ZERO,
        ..RetentionOptions::default()
    };
    let preview = db::retention::preview(&app.pool, cutoff, &options)
        .await
        .unwrap();
    let events = preview.iter().find(|p| p.name == "events").unwrap();
    assert_eq!(events.partitions, [format!("public.{}", name(m3))]);
    let outcome = db::retention::purge(&app.pool, cutoff, &options, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        outcome.dropped,
        [("events", format!("public.{}", name(m3)))]
    );
    assert_eq!(
        outcome.deleted("events"),
        5,
        "the five early events of the month at the cutoff"
    );
    let left: Vec<String> = app
        .db
        .query(
            "SELECT event_id FROM auth_event ORDER BY occurred_at, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut expected: Vec<String> = (0..5).map(|n| format!("{}-l{n}", m2.month())).collect();
    expected.extend((0..5).map(|n| format!("{}-e{n}", m1.month())));
    expected.extend((0..5).map(|n| format!("{}-l{n}", m1.month())));
    expected[5..].sort_by_key(|id| id.contains("-l"));
    assert_eq!(left, expected);
    let gone: Option<String> = app
        .db
        .query_one("SELECT to_regclass($1)::text", &[&name(m3)])
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, None, "the partition is dropped");
    // The report of the dropped month keeps its figures.
    assert_eq!(app.get_json(&report_path).await, report);
    // The change feed knows rows went: a cursor from before is 410.
    let stale = app
        .get("/api/v1/statistics/events/changes?after=events.0.1.1")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 410);
}

/// Figures of a database's seeded records that must not change when it is
/// converted: per table, the rows, the distinct ids and a checksum of ids
/// and times.
async fn figures(db: &tokio_postgres::Client) -> Vec<(String, i64, i64, i64)> {
    let mut figures = Vec::new();
    for table in ["auth_event", "client_event"] {
        let row = db
            .query_one(
                &format!(
                    "SELECT count(*), count(DISTINCT id), \
                            coalesce(sum(hashtext(id::text || occurred_at::text)), 0)::int8 \
                     FROM {table} WHERE event_id IS NULL OR event_id LIKE 'old-%'"
                ),
                &[],
            )
            .await
            .unwrap();
        figures.push((table.to_owned(), row.get(0), row.get(1), row.get(2)));
    }
    figures
}

#[actix_web::test]
async fn migrate_partition_converts_a_populated_database_while_ingest_and_reads_go_on() {
    // A database made without partitions, as one from before them.
    let (name, config) = fresh_database_unmigrated().await;
    let mut db = connect(&config).await;
    let kinds = acctstream::kinds::REGISTRY.kinds();
    db::migrate::run_with(&mut db, &kinds, None).await.unwrap();
    let relkind = |table: &'static str| {
        let db = &db;
        async move {
            db.query_one(
                "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)",
                &[&table],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
        }
    };
    assert_eq!(relkind("auth_event").await, "r");
    // Within the 180 days the app's retention keeps: from four months back.
    let base = months_back(4);
    db.execute(
        "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id, event_id) \
         SELECT $1::timestamptz + i * interval '2 minutes', 'PASSWORD', 'p', 'o', \
                'user' || (i % 300), 'old-' || i \
         FROM generate_series(1, 60000) AS i",
        &[&base],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO client_event (occurred_at, event_type, client_mac, ssid, ap_name) \
         SELECT $1::timestamptz + i * interval '20 minutes', 'Success', \
                '02:00:00:00:' || lpad(to_hex(i % 256), 2, '0') || ':01', 'corp', 'ap-1' \
         FROM generate_series(1, 5000) AS i",
        &[&base],
    )
    .await
    .unwrap();
    db.batch_execute("ANALYZE").await.unwrap();
    let app = spawn_app_on(
        name.clone(),
        config.clone(),
        AppOptions {
            jobs: true,
            ..AppOptions::default()
        },
    )
    .await;
    let before = figures(&app.db).await;
    let report_path = format!("/api/v1/accounting/report/{}", base.format("%Y-%m"));
    let report = app.get_json(&report_path).await;
    let window_path = format!(
        "/api/v1/statistics/events/day/{}",
        (base + TimeDelta::days(10)).format("%Y-%m-%d")
    );
    let window = app.get_json(&window_path).await;
    assert!(!window["events"].as_array().unwrap().is_empty());

    // Ingest and reads go on while the binary converts the tables.
    let stop = Arc::new(AtomicBool::new(false));
    let ingested = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, ingested) = (stop.clone(), ingested.clone());
        let (address, client) = (app.address.clone(), app.client());
        actix_web::rt::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body: Vec<String> = (0..50)
                    .map(|i| object(Utc::now(), &format!("w{i}"), &format!("live-{n}-{i}")))
                    .collect();
                let mut response = client
                    .post(format!("{address}{INGEST}"))
                    .insert_header((header::AUTHORIZATION, format!("Bearer {WRITE_TOKEN}")))
                    .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
                    .send_body(body.join("\n"))
                    .await
                    .expect("POST");
                let answer = body_of(&mut response).await;
                if response.status() == 200 {
                    ingested.fetch_add(50, Ordering::Relaxed);
                } else {
                    failures.push((
                        response.status(),
                        String::from_utf8_lossy(&answer).into_owned(),
                    ));
                }
            }
            failures
        })
    };
    let reader = {
        let stop = stop.clone();
        let expected = window.clone();
        let window_path = window_path.clone();
        let (address, client) = (app.address.clone(), app.client());
        actix_web::rt::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut response = client
                    .get(format!("{address}{window_path}"))
                    .insert_header((
                        header::AUTHORIZATION,
                        format!("Bearer {}", crate::helpers::TOKEN),
                    ))
                    .send()
                    .await
                    .expect("GET");
                let body = body_of(&mut response).await;
                let got = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
                statuses.push((response.status().as_u16(), got == expected));
            }
            statuses
        })
    };
    let url = database_url(&name);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["migrate", "--partition"])
            .env("DATABASE_URL", url)
            .env_remove("ACCTSTREAM_PARTITIONS")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let failures = writer.await.unwrap();
    let reads = reader.await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for table in ["auth_event", "client_event"] {
        assert!(
            stdout.contains(&format!("{table}: checking that every row is before")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("{table}: partitioned; every row before")),
            "{stdout}"
        );
    }
    // The audit trail too (converted by the migration when still empty).
    for table in ["auth_event", "client_event", "access_audit"] {
        assert_eq!(relkind(table).await, "p", "{table}");
    }
    assert!(
        failures.is_empty(),
        "ingest failed during the conversion: {failures:?}"
    );
    assert!(ingested.load(Ordering::Relaxed) > 0);
    assert!(!reads.is_empty());
    assert!(
        reads.iter().all(|(status, _)| *status == 200),
        "reads failed during the conversion: {reads:?}"
    );
    assert!(
        reads.iter().all(|(_, same)| *same),
        "every read got the whole window"
    );

    // Every record and every figure is kept.
    assert_eq!(figures(&app.db).await, before);
    let live: i64 = app
        .db
        .query_one(
            "SELECT count(*) FROM auth_event WHERE event_id LIKE 'live-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(live as u64, ingested.load(Ordering::Relaxed));
    assert_eq!(app.get_json(&report_path).await, report);
    assert_eq!(app.get_json(&window_path).await, window);
    // The old table is the partition of everything before the bound; new
    // months have theirs; ingest goes on after, retries are duplicates.
    let partitions = db::partition::partitions(&app.db, "auth_event")
        .await
        .unwrap();
    assert!(partitions[0].name.starts_with("auth_event_before_") && partitions[0].from.is_none());
    assert!(partitions.iter().any(|p| p.default));
    let (status, answer) = ingest(&app, object(Utc::now(), "x", "after")).await;
    assert_eq!(
        (status, answer["inserted"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let old = base + TimeDelta::minutes(2);
    let (status, answer) = ingest(&app, object(old, "user1", "old-1")).await;
    assert_eq!(
        (status, answer["duplicates"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    // The rollups still follow inserts (their triggers moved to the
    // partitioned table): the new event is in this month's report.
    let month = Utc::now().format("%Y-%m");
    let report = app
        .get_json(&format!("/api/v1/accounting/report/{month}"))
        .await;
    assert!(report.to_string().contains("PASSWORD"), "{report}");
    // Converting again does nothing.
    let url = database_url(&name);
    let again = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["migrate", "--partition"])
            .env("DATABASE_URL", url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("auth_event: partitioned already"));
}

#[actix_web::test]
async fn a_record_past_the_bound_of_a_running_conversion_waits_for_it_and_is_stored() {
    let (name, config) = fresh_database_unmigrated().await;
    let mut db = connect(&config).await;
    let kinds = acctstream::kinds::REGISTRY.kinds();
    db::migrate::run_with(&mut db, &kinds, None).await.unwrap();
    let app = spawn_app_on(name, config.clone(), AppOptions::default()).await;
    // What `migrate --partition` holds while it validates the bound: its
    // lock, and the check (enforced on new rows from its start).
    let lock: i32 = db::partition::CONVERT_LOCK;
    db.execute(
        "SELECT pg_advisory_lock($1, hashtext('auth_event'))",
        &[&lock],
    )
    .await
    .unwrap();
    db.batch_execute(
        "ALTER TABLE auth_event ADD CONSTRAINT auth_event_partition_bound \
         CHECK (occurred_at IS NOT NULL AND occurred_at < '2027-03-01') NOT VALID",
    )
    .await
    .unwrap();
    let far = "2090-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let (address, client) = (app.address.clone(), app.client());
    let post = actix_web::rt::spawn(async move {
        let mut response = client
            .post(format!("{address}{INGEST}"))
            .insert_header((header::AUTHORIZATION, format!("Bearer {WRITE_TOKEN}")))
            .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
            .send_body(object(far, "zed", "far"))
            .await
            .expect("POST");
        let body = body_of(&mut response).await;
        (
            response.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(!post.is_finished(), "the write waits for the conversion");
    db.batch_execute("ALTER TABLE auth_event DROP CONSTRAINT auth_event_partition_bound")
        .await
        .unwrap();
    db.execute(
        "SELECT pg_advisory_unlock($1, hashtext('auth_event'))",
        &[&lock],
    )
    .await
    .unwrap();
    let (status, body) = post.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"inserted\":1"), "{body}");
    assert_eq!(partition_of(&app.db, "far").await, "auth_event");
}

#[actix_web::test]
async fn reads_while_records_move_out_of_the_default_partition_see_each_exactly_once() {
    let app = spawn_app().await;
    // Two months back: no partition made ahead covers it.
    let month = months_back(2);
    app.db
        .execute(
            "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id) \
             SELECT $1::timestamptz + i * interval '1 minute', 'PASSWORD', 'p', 'o', 'u' || i \
             FROM generate_series(0, 19999) AS i",
            &[&month],
        )
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (_, config) = (app.db_name.clone(), database_config(&app.db_name));
    let reader = {
        let stop = stop.clone();
        actix_web::rt::spawn(async move {
            let db = connect(&config).await;
            let mut counts = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let count: i64 = db
                    .query_one(
                        "SELECT count(*) FROM auth_event WHERE occurred_at >= $1",
                        &[&month],
                    )
                    .await
                    .unwrap()
                    .get(0);
                counts.push(count);
            }
            counts
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut client = app.pool.get().await.unwrap();
    let prepared = db::partition::prepare(&mut client, AUTH, Interval::Monthly, Utc::now(), None)
        .await
        .unwrap();
    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let counts = reader.await.unwrap();
    assert_eq!(prepared.moved, 20_000, "{prepared:?}");
    assert!(counts.len() > 2);
    assert!(counts.iter().all(|&n| n == 20_000), "{counts:?}");
}

#[actix_web::test]
async fn daily_partitions_are_made_by_the_day() {
    let (_, config) = fresh_database_unmigrated().await;
    let mut db = connect(&config).await;
    let kinds = acctstream::kinds::REGISTRY.kinds();
    let before = Utc::now();
    db::migrate::run_with(&mut db, &kinds, Some(Interval::Daily))
        .await
        .unwrap();
    let after = Utc::now();
    let partitions = db::partition::partitions(&db, "client_event")
        .await
        .unwrap();
    let days: Vec<&str> = partitions
        .iter()
        .filter(|p| !p.default)
        .map(|p| p.name.as_str())
        .collect();
    let expected = |now| -> Vec<String> {
        Interval::Daily
            .ahead_of(now)
            .iter()
            .map(|r| r.name("client_event", Interval::Daily))
            .collect()
    };
    // (Midnight may pass while it runs.)
    assert!(
        days == expected(before) || days == expected(after),
        "{days:?}"
    );
    assert_eq!(days.len(), 15);
    assert!(partitions.iter().any(|p| p.default));
    // A second run changes nothing.
    let again = db::migrate::run_with(&mut db, &kinds, Some(Interval::Daily))
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(
        db::partition::partitions(&db, "client_event")
            .await
            .unwrap()
            .len(),
        partitions.len()
    );
}

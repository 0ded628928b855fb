//! The accounting reports, their rollups and retention: figures against an
//! independent count over `auth_event`, ordering, representations, the
//! default month, late events, reports surviving a purge, strict dates, and
//! counters that stay exact under concurrent inserts.

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use acctstream::{
    core::{filename::FilenamePrefix, retention::RetentionPolicy},
    db::{self, retention::RetentionOptions},
    http::{self, options::ReportOptions},
    kinds::auth::rollup,
};
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    body_of, connect, database_url, event, fresh_database_unmigrated, pseudonymiser, rollup_keys,
    spawn_app, spawn_app_with, AppOptions, NewEvent, TestApp,
};

const REPORT: &str = "/api/v1/accounting/report";
const DAILY: &str = "/api/v1/accounting/verify/daily-users";
const DAY_EVENTS: &str = "/api/v1/accounting/verify/events";

fn ev(ts: &str, method: &str, user: &str) -> NewEvent {
    NewEvent {
        auth_method_type: method.into(),
        auth_method_name: format!("{}.1", method.to_lowercase()),
        ..event(ts, user)
    }
}

/// A response header as text ("" when absent).
fn header<'a>(headers: &'a awc::http::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().expect("visible ASCII"))
        .unwrap_or_default()
}

async fn get(app: &TestApp, path: &str) -> (u16, Vec<u8>, awc::http::header::HeaderMap) {
    let mut response = app.get(path).send().await.expect("request");
    let body = body_of(&mut response).await;
    (response.status().as_u16(), body, response.headers().clone())
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let (status, body, _) = get(app, path).await;
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "GET {path}: bad JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })
}

async fn get_csv(app: &TestApp, path: &str) -> String {
    let (status, body, headers) = get(app, path).await;
    assert_eq!(status, 200, "GET {path}");
    assert_eq!(header(&headers, "content-type"), "text/csv; charset=utf-8");
    String::from_utf8(body).expect("UTF-8 CSV")
}

/// Per-method distinct users of `[from, to)`, counted from the raw events.
async fn independent_month(app: &TestApp, from: &str, to: &str) -> (BTreeMap<String, i64>, i64) {
    let from: DateTime<Utc> = from.parse().unwrap();
    let to: DateTime<Utc> = to.parse().unwrap();
    let rows = app
        .db
        .query(
            "SELECT auth_method_type, count(DISTINCT user_id) FROM auth_event \
             WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY 1",
            &[&from, &to],
        )
        .await
        .unwrap();
    let per_method = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let total: i64 = app
        .db
        .query_one(
            "SELECT count(DISTINCT user_id) FROM auth_event WHERE occurred_at >= $1 AND occurred_at < $2",
            &[&from, &to],
        )
        .await
        .unwrap()
        .get(0);
    (per_method, total)
}

fn report_rows(json: &Value) -> Vec<(String, i64)> {
    json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["authMethodType"].as_str().unwrap().to_owned(),
                r["userCount"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// March 2021: alice uses PASSWORD and OAUTH2 (so Total < sum), boundaries
/// on both sides, and an event whose local date is March but UTC is February.
fn march_events() -> Vec<NewEvent> {
    vec![
        ev("2021-02-28T23:59:59.999999Z", "SAML", "before"),
        ev("2021-03-01T00:30:00+02:00", "SAML", "local-march"),
        ev("2021-03-01T00:00:00Z", "PASSWORD", "alice"),
        ev("2021-03-02T10:00:00Z", "PASSWORD", "alice"),
        ev("2021-03-05T10:00:00Z", "PASSWORD", "bob"),
        ev("2021-03-05T11:00:00Z", "PASSWORD", "carol"),
        ev("2021-03-06T09:00:00Z", "OAUTH2", "alice"),
        ev("2021-03-06T09:00:00Z", "OAUTH2", "dave"),
        ev("2021-03-07T09:00:00Z", "SAML", "erin"),
        ev("2021-03-31T23:59:59.999999Z", "SAML", "frank"),
        ev("2021-03-20T08:00:00Z", "TOTP", "bob"),
        ev("2021-04-01T00:00:00Z", "TOTP", "after"),
    ]
}

#[actix_web::test]
async fn accounting_report_matches_an_independent_count() {
    let app = spawn_app().await;
    app.insert(&march_events()).await;
    let json = get_json(&app, &format!("{REPORT}/2021-03")).await;
    assert_eq!(json["month"], "2021-03");
    let rows = report_rows(&json);
    // Most used first, ties by name.
    assert_eq!(
        rows,
        [
            ("PASSWORD".to_owned(), 3),
            ("OAUTH2".to_owned(), 2),
            ("SAML".to_owned(), 2),
            ("TOTP".to_owned(), 1),
        ]
    );
    let (independent, total) =
        independent_month(&app, "2021-03-01T00:00:00Z", "2021-04-01T00:00:00Z").await;
    assert_eq!(
        rows.iter().cloned().collect::<BTreeMap<_, _>>(),
        independent
    );
    assert_eq!(json["total"], total);
    assert_eq!(total, 6, "alice, bob, carol, dave, erin, frank");
    let sum: i64 = rows.iter().map(|r| r.1).sum();
    assert_ne!(sum, total, "Total is distinct users, not the sum");
    // The neighbours got their own figures.
    let feb = get_json(&app, &format!("{REPORT}/2021-02")).await;
    assert_eq!(report_rows(&feb), [("SAML".to_owned(), 2)]);
    assert_eq!(feb["total"], 2);
    let apr = get_json(&app, &format!("{REPORT}/2021-04")).await;
    assert_eq!(apr["total"], 1);
}

#[actix_web::test]
async fn accounting_report_csv_shape_headers_and_file_name() {
    let app = spawn_app().await;
    app.insert(&march_events()).await;
    let expected = "Month,Authentication Method,User Count\r\n\
                    2021-03,PASSWORD,3\r\n\
                    2021-03,OAUTH2,2\r\n\
                    2021-03,SAML,2\r\n\
                    2021-03,TOTP,1\r\n\
                    2021-03,Total,6\r\n";
    let (status, body, headers) = get(&app, &format!("{REPORT}/2021-03?format=csv")).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(body).unwrap(), expected);
    assert_eq!(header(&headers, "content-type"), "text/csv; charset=utf-8");
    assert_eq!(
        header(&headers, "content-disposition"),
        "attachment; filename=\"accounting-report-2021-03.csv\""
    );
    assert_eq!(header(&headers, "vary"), "Accept");
    // By Accept, too.
    let mut response = app
        .get(&format!("{REPORT}/2021-03"))
        .insert_header(("Accept", "text/csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(body_of(&mut response).await, expected.as_bytes());
    // JSON has no attachment.
    let (_, _, headers) = get(&app, &format!("{REPORT}/2021-03")).await;
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert!(headers.get("content-disposition").is_none());
}

#[actix_web::test]
async fn file_names_carry_the_configured_prefix() {
    let app = spawn_app_with(AppOptions {
        http: http::AppOptions {
            reports: ReportOptions {
                filename_prefix: FilenamePrefix::parse("MyCompany-B2B-").unwrap(),
            },
            ..http::AppOptions::default()
        },
        ..AppOptions::default()
    })
    .await;
    app.insert(&march_events()).await;
    for (path, name) in [
        (
            format!("{REPORT}/2021-03?format=csv"),
            "MyCompany-B2B-accounting-report-2021-03.csv",
        ),
        (
            format!("{DAILY}/2021-03?format=csv"),
            "MyCompany-B2B-daily-users-2021-03.csv",
        ),
        (
            format!("{DAY_EVENTS}/2021-03-05?format=csv"),
            "MyCompany-B2B-events-day-2021-03-05.csv",
        ),
    ] {
        let (status, _, headers) = get(&app, &path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&headers, "content-disposition"),
            format!("attachment; filename=\"{name}\"").as_str()
        );
    }
}

#[actix_web::test]
async fn a_month_without_data_is_empty_not_an_error() {
    let app = spawn_app().await;
    let json = get_json(&app, &format!("{REPORT}/2019-01")).await;
    assert_eq!(json, json!({"month": "2019-01", "rows": [], "total": 0}));
    assert_eq!(
        get_csv(&app, &format!("{REPORT}/2019-01?format=csv")).await,
        "Month,Authentication Method,User Count\r\n2019-01,Total,0\r\n"
    );
    let daily = get_json(&app, &format!("{DAILY}/2019-01")).await;
    assert_eq!(daily, json!({"month": "2019-01", "rows": []}));
}

#[actix_web::test]
async fn default_month_is_the_previous_calendar_month() {
    let app = spawn_app().await;
    let now = Utc::now();
    let this_month = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap();
    let previous = this_month - Months::new(1);
    let at = |d: NaiveDate, h: u32| d.and_hms_opt(h, 0, 0).unwrap().and_utc().to_rfc3339();
    app.insert(&[
        ev(&at(previous, 1), "PASSWORD", "u1"),
        ev(&at(previous + chrono::Days::new(1), 1), "OAUTH2", "u1"),
        ev(&at(previous + chrono::Days::new(2), 1), "OAUTH2", "u2"),
        // This month's and the month before's do not count.
        ev(&at(this_month, 0), "PASSWORD", "u3"),
        ev(&at(previous - chrono::Days::new(1), 23), "SAML", "u4"),
    ])
    .await;
    let json = get_json(&app, REPORT).await;
    assert_eq!(json["month"], previous.format("%Y-%m").to_string());
    assert_eq!(
        report_rows(&json),
        [("OAUTH2".to_owned(), 2), ("PASSWORD".to_owned(), 1)]
    );
    assert_eq!(json["total"], 2);
    let (status, _, headers) = get(&app, &format!("{REPORT}?format=csv")).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-disposition"),
        format!(
            "attachment; filename=\"accounting-report-{}.csv\"",
            previous.format("%Y-%m")
        )
        .as_str()
    );
}

/// Per (day, method) distinct users of March 2021 from the raw events.
async fn independent_daily(app: &TestApp) -> Vec<(String, String, i64)> {
    app.db
        .query(
            "SELECT to_char((occurred_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD'), auth_method_type, \
             count(DISTINCT user_id) FROM auth_event \
             WHERE occurred_at >= '2021-03-01T00:00:00Z' AND occurred_at < '2021-04-01T00:00:00Z' \
             GROUP BY 1, 2 ORDER BY 1, 3 DESC, auth_method_type COLLATE \"C\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn daily_rows(json: &Value) -> Vec<(String, String, i64)> {
    json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["date"].as_str().unwrap().to_owned(),
                r["authMethodType"].as_str().unwrap().to_owned(),
                r["userCount"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn daily_users_by_date_then_count_then_name() {
    let app = spawn_app().await;
    let mut events = march_events();
    events.extend([
        ev("2021-03-05T12:00:00Z", "SAML", "zed"),
        ev("2021-03-05T13:00:00Z", "OAUTH2", "zed"),
        ev("2021-03-05T14:00:00Z", "PASSWORD", "bob"),
    ]);
    app.insert(&events).await;
    let json = get_json(&app, &format!("{DAILY}/2021-03")).await;
    assert_eq!(json["month"], "2021-03");
    let rows = daily_rows(&json);
    assert_eq!(rows, independent_daily(&app).await);
    let day5: Vec<_> = rows.iter().filter(|r| r.0 == "2021-03-05").collect();
    assert_eq!(
        day5,
        [
            &("2021-03-05".to_owned(), "PASSWORD".to_owned(), 2),
            &("2021-03-05".to_owned(), "OAUTH2".to_owned(), 1),
            &("2021-03-05".to_owned(), "SAML".to_owned(), 1),
        ]
    );
    let csv = get_csv(&app, &format!("{DAILY}/2021-03?format=csv")).await;
    let mut expected = String::from("Date,Authentication Method,User Count\r\n");
    for (date, method, count) in &rows {
        expected.push_str(&format!("{date},{method},{count}\r\n"));
    }
    assert_eq!(csv, expected);
    assert!(csv.starts_with(
        "Date,Authentication Method,User Count\r\n2021-03-01,PASSWORD,1\r\n2021-03-02,PASSWORD,1\r\n"
    ));
}

#[actix_web::test]
async fn late_events_update_their_day_and_month() {
    let app = spawn_app().await;
    app.insert(&march_events()).await;
    let before_daily = daily_rows(&get_json(&app, &format!("{DAILY}/2021-03")).await);
    assert!(!before_daily.iter().any(|r| r.0 == "2021-03-03"));
    // Arrive "later" for days long past: a new user, a known user on a new
    // day and with a new method, and a known (day, method, user) again.
    app.insert(&[
        ev("2021-03-03T08:00:00Z", "PASSWORD", "grace"),
        ev("2021-03-03T09:00:00Z", "PASSWORD", "alice"),
        ev("2021-03-03T10:00:00Z", "FIDO2", "alice"),
        ev("2021-03-05T10:30:00Z", "PASSWORD", "bob"),
    ])
    .await;
    let daily = daily_rows(&get_json(&app, &format!("{DAILY}/2021-03")).await);
    assert_eq!(daily, independent_daily(&app).await);
    let day3: Vec<_> = daily.iter().filter(|r| r.0 == "2021-03-03").collect();
    assert_eq!(
        day3,
        [
            &("2021-03-03".to_owned(), "PASSWORD".to_owned(), 2),
            &("2021-03-03".to_owned(), "FIDO2".to_owned(), 1),
        ]
    );
    let month = get_json(&app, &format!("{REPORT}/2021-03")).await;
    let (independent, total) =
        independent_month(&app, "2021-03-01T00:00:00Z", "2021-04-01T00:00:00Z").await;
    assert_eq!(
        report_rows(&month).into_iter().collect::<BTreeMap<_, _>>(),
        independent
    );
    assert_eq!(month["total"], total);
    assert_eq!(total, 7, "grace is new, alice is not");
    assert_eq!(report_rows(&month)[0], ("PASSWORD".to_owned(), 4));
}

fn acctstream() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_acctstream"));
    for var in [
        "DATABASE_URL",
        "ACCTSTREAM_PSEUDONYM_KEY",
        "ACCTSTREAM_PSEUDONYM_KEY_FILE",
        "ACCTSTREAM_API_TOKENS",
        "ACCTSTREAM_DATA_DIR",
        "ACCTSTREAM_RETENTION_DAYS",
        "ACCTSTREAM_RETENTION_INTERVAL_SECONDS",
        "ACCTSTREAM_REPORT_FILENAME_PREFIX",
    ] {
        command.env_remove(var);
    }
    // Rolling up before a purge needs the key.
    command.env("ACCTSTREAM_PSEUDONYM_KEY", crate::helpers::KEY);
    command.env("RUST_LOG", "warn");
    command
}

pub(crate) async fn purge(app: &TestApp, args: &[&str]) -> String {
    let url = database_url(&app.db_name);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        acctstream()
            .arg("purge")
            .args(&args)
            .env("DATABASE_URL", url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "purge failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn event_count(app: &TestApp) -> i64 {
    app.db
        .query_one("SELECT count(*) FROM auth_event", &[])
        .await
        .unwrap()
        .get(0)
}

#[actix_web::test]
async fn reports_survive_retention() {
    let app = spawn_app().await;
    app.insert(&march_events()).await;
    let stored = event_count(&app).await;
    let report = get(&app, &format!("{REPORT}/2021-03?format=csv")).await.1;
    let report_json = get_json(&app, &format!("{REPORT}/2021-03")).await;
    let daily = get_json(&app, &format!("{DAILY}/2021-03")).await;
    let day = get_json(&app, &format!("{DAY_EVENTS}/2021-03-05")).await;
    assert_eq!(day["events"].as_array().unwrap().len(), 2);

    // A dry run deletes nothing and says what it would do.
    let dry = purge(&app, &["--dry-run"]).await;
    assert!(dry.contains("cutoff"), "{dry}");
    assert!(
        dry.contains(&format!(
            "dry run: events (auth_event): {stored} rows would be deleted, \
             from 2021-02-28T22:30:00Z to 2021-04-01T00:00:00Z"
        )),
        "{dry}"
    );
    assert_eq!(event_count(&app).await, stored);

    // All these events are far older than 180 days.
    let done = purge(&app, &[]).await;
    assert!(
        done.contains(&format!("deleted {stored} rows of events (auth_event)")),
        "{done}"
    );
    assert_eq!(event_count(&app).await, 0);

    assert_eq!(
        get(&app, &format!("{REPORT}/2021-03?format=csv")).await.1,
        report
    );
    assert_eq!(
        get_json(&app, &format!("{REPORT}/2021-03")).await,
        report_json
    );
    assert_eq!(get_json(&app, &format!("{DAILY}/2021-03")).await, daily);
    let day = get_json(&app, &format!("{DAY_EVENTS}/2021-03-05")).await;
    assert_eq!(day["events"], json!([]));
    let details = get_json(&app, "/api/v1/statistics/events/day/2021-03-05").await;
    assert_eq!(details["events"], json!([]));
    // And once more: nothing left.
    let again = purge(&app, &["--dry-run"]).await;
    assert!(
        again.contains("dry run: events (auth_event): nothing would be deleted"),
        "{again}"
    );
}

#[actix_web::test]
async fn purge_with_retention_disabled_deletes_nothing() {
    let app = spawn_app().await;
    app.insert(&march_events()).await;
    let stored = event_count(&app).await;
    let url = database_url(&app.db_name);
    let output = tokio::task::spawn_blocking(move || {
        acctstream()
            .args(["purge"])
            .env("DATABASE_URL", url)
            .env("ACCTSTREAM_RETENTION_DAYS", "0")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("retention of records is disabled (ACCTSTREAM_RETENTION_DAYS=0)"),
        "{stdout}"
    );
    assert!(stdout.contains("deleted 0 rows of audit"), "{stdout}");
    assert_eq!(event_count(&app).await, stored);
}

#[actix_web::test]
async fn purge_deletes_in_batches_only_before_the_cutoff() {
    let app = spawn_app().await;
    // Ten old events sharing one timestamp (the batches continue by id),
    // and three recent ones.
    let old: Vec<NewEvent> = (0..10)
        .map(|i| ev("2021-03-05T10:00:00Z", "PASSWORD", &format!("old{i}")))
        .collect();
    app.insert(&old).await;
    app.insert_many("2021-03-06T00:00:00Z", 7).await;
    let recent = Utc::now().to_rfc3339();
    app.insert(&[
        ev(&recent, "PASSWORD", "new1"),
        ev(&recent, "SAML", "new2"),
        ev(&recent, "SAML", "new1"),
    ])
    .await;
    let options = RetentionOptions {
        policy: RetentionPolicy::new(1),
        batch_rows: 3,
        batch_pause: Duration::from_millis(1),
        pseudonymiser: Some(pseudonymiser()),
        upkeep: acctstream::kinds::REGISTRY.upkeeps(),
        kinds: acctstream::kinds::REGISTRY.kinds(),
        ..RetentionOptions::default()
    };
    let cutoff = options.policy.cutoff(Utc::now()).unwrap();
    let preview = db::retention::preview(&app.pool, cutoff, &options)
        .await
        .unwrap();
    let events = preview.iter().find(|p| p.name == "events").unwrap();
    assert_eq!(events.rows, 17);
    let outcome = db::retention::purge(&app.pool, cutoff, &options, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.deleted("events"), 17);
    assert_eq!(
        outcome.batches("events"),
        7,
        "6 batches of at most 3, then an empty one"
    );
    assert!(!outcome.interrupted);
    assert_eq!(event_count(&app).await, 3);
    // A cancelled pass stops before its first batch.
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let outcome = db::retention::purge(&app.pool, Utc::now(), &options, &cancelled)
        .await
        .unwrap();
    assert!(outcome.interrupted);
    assert_eq!(outcome.deleted("events"), 0);
    assert_eq!(event_count(&app).await, 3);
}

#[actix_web::test]
async fn background_job_purges_and_stops_on_shutdown() {
    let app = spawn_app().await;
    app.insert(&march_events()).await;
    let recent = Utc::now().to_rfc3339();
    app.insert(&[ev(&recent, "PASSWORD", "new")]).await;
    let stop = CancellationToken::new();
    let job = tokio::spawn(db::retention::run_job(
        app.pool.clone(),
        RetentionOptions {
            policy: RetentionPolicy::new(1),
            first_run_delay: Duration::from_millis(10),
            interval: Duration::from_secs(3600),
            pseudonymiser: Some(pseudonymiser()),
            upkeep: acctstream::kinds::REGISTRY.upkeeps(),
            kinds: acctstream::kinds::REGISTRY.kinds(),
            ..RetentionOptions::default()
        },
        stop.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while event_count(&app).await > 1 {
        assert!(Instant::now() < deadline, "the job did not purge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(event_count(&app).await, 1, "the recent event stays");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), job)
        .await
        .expect("the job stops on shutdown")
        .unwrap();
}

#[actix_web::test]
async fn verify_events_streams_exactly_the_utc_day() {
    let app = spawn_app().await;
    app.insert(&[
        ev("2021-03-09T23:59:59.999999Z", "PASSWORD", "before"),
        ev("2021-03-10T00:00:00Z", "PASSWORD", "first"),
        ev("2021-03-10T12:00:00+02:00", "OAUTH2", "middle"),
        ev("2021-03-10T23:59:59.999999Z", "SAML", "last"),
        ev("2021-03-11T00:00:00Z", "PASSWORD", "after"),
    ])
    .await;
    let json = get_json(&app, &format!("{DAY_EVENTS}/2021-03-10")).await;
    let events = json["events"].as_array().unwrap();
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["timestamp"].as_str().unwrap(),
                e["userId"].as_str().unwrap(),
            )
        })
        .collect();
    let (first, middle, last) = (
        app.pseudonym("first"),
        app.pseudonym("middle"),
        app.pseudonym("last"),
    );
    assert_eq!(
        got,
        [
            ("2021-03-10T00:00:00", first.as_str()),
            ("2021-03-10T10:00:00", middle.as_str()),
            ("2021-03-10T23:59:59.999999", last.as_str()),
        ]
    );
    // The same as the event-details day window, links included.
    let details = get_json(&app, "/api/v1/statistics/events/day/2021-03-10").await;
    assert_eq!(json, details);
    assert!(json["links"]["self"]
        .as_str()
        .unwrap()
        .ends_with("/api/v1/statistics/events/day/2021-03-10"));
    let (status, body, headers) = get(&app, &format!("{DAY_EVENTS}/2021-03-10?format=csv")).await;
    assert_eq!(status, 200);
    let csv = String::from_utf8(body).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("Timestamp,Authentication Method Type,"));
    assert_eq!(
        header(&headers, "content-disposition"),
        "attachment; filename=\"events-day-2021-03-10.csv\""
    );
    assert!(header(&headers, "link").contains("rel=\"next\""));
}

#[actix_web::test]
async fn malformed_or_impossible_dates_are_400() {
    let app = spawn_app().await;
    for (path, form) in [
        (format!("{REPORT}/2021-13"), "YYYY-MM"),
        (format!("{REPORT}/2021-3"), "YYYY-MM"),
        (format!("{REPORT}/2021-03-01"), "YYYY-MM"),
        (format!("{REPORT}/0000-01"), "YYYY-MM"),
        (format!("{DAILY}/2021-13"), "YYYY-MM"),
        (format!("{DAILY}/2021-3"), "YYYY-MM"),
        (format!("{DAILY}/March"), "YYYY-MM"),
        (format!("{DAY_EVENTS}/2021-02-30"), "YYYY-MM-DD"),
        (format!("{DAY_EVENTS}/2021-13-01"), "YYYY-MM-DD"),
        (format!("{DAY_EVENTS}/2021-3-01"), "YYYY-MM-DD"),
        (format!("{DAY_EVENTS}/2021-03"), "YYYY-MM-DD"),
    ] {
        let (status, body, headers) = get(&app, &path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(header(&headers, "content-type"), "application/json");
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"], "invalid_request", "{path}");
        let description = error["error_description"].as_str().unwrap();
        assert!(description.contains(form), "{path}: {description}");
    }
    // A bad format value is a 400 too, and nothing acceptable a 406.
    let (status, _, _) = get(&app, &format!("{REPORT}/2021-03?format=xml")).await;
    assert_eq!(status, 400);
    let response = app
        .get(&format!("{DAILY}/2021-03"))
        .insert_header(("Accept", "text/html"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 406);
}

#[actix_web::test]
async fn reports_need_a_token_and_only_get() {
    let app = spawn_app().await;
    for path in [
        REPORT.to_owned(),
        format!("{REPORT}/2021-03"),
        format!("{DAILY}/2021-03"),
        format!("{DAY_EVENTS}/2021-03-01"),
        // Authentication comes before validation.
        format!("{REPORT}/2021-13"),
    ] {
        let mut response = app
            .client()
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(response.headers().contains_key("www-authenticate"));
        let error: Value = serde_json::from_slice(&body_of(&mut response).await).unwrap();
        assert_eq!(error["error"], "invalid_token");
        let response = app
            .client()
            .get(format!("{}{path}", app.address))
            .insert_header(("Authorization", "Bearer wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let response = app
            .client()
            .post(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{path}");
        assert_eq!(header(response.headers(), "allow"), "GET, HEAD, OPTIONS");
    }
}

/// Every rollup counter against `count(DISTINCT …)` over the raw events, and
/// every counter against the size of its set.
/// The rollups equal an independent count of the events they serve (those
/// of the years 0001 to 9999; any other is set aside).
async fn assert_rollups_exact(db: &tokio_postgres::Client) {
    let mismatches: i64 = db
        .query_one(
            "WITH served AS ( \
                 SELECT * FROM auth_event WHERE occurred_at >= '0001-01-01 00:00:00+00' \
                 AND occurred_at < '10000-01-01 00:00:00+00'), \
             daily AS ( \
                 SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, auth_method_type, \
                        count(DISTINCT user_id) AS n FROM served GROUP BY 1, 2), \
             monthly AS ( \
                 SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS month, \
                        auth_method_type, count(DISTINCT user_id) AS n FROM served GROUP BY 1, 2), \
             total AS ( \
                 SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS month, \
                        count(DISTINCT user_id) AS n FROM served GROUP BY 1) \
             SELECT \
               (SELECT count(*) FROM daily d FULL JOIN usage_daily_count c \
                  ON c.day = d.day AND c.auth_method_type = d.auth_method_type \
                  WHERE c.user_count IS DISTINCT FROM d.n) \
             + (SELECT count(*) FROM monthly m FULL JOIN usage_monthly_count c \
                  ON c.month = m.month AND c.auth_method_type = m.auth_method_type \
                  WHERE c.user_count IS DISTINCT FROM m.n) \
             + (SELECT count(*) FROM total t FULL JOIN usage_monthly_total c \
                  ON c.month = t.month WHERE c.user_count IS DISTINCT FROM t.n) \
             + (SELECT count(*) FROM (SELECT day, auth_method_type, count(*) AS n \
                  FROM usage_daily_user GROUP BY 1, 2) s FULL JOIN usage_daily_count c \
                  USING (day, auth_method_type) WHERE c.user_count IS DISTINCT FROM s.n) \
             + (SELECT count(*) FROM (SELECT month, count(*) AS n FROM usage_monthly_any \
                  GROUP BY 1) s FULL JOIN usage_monthly_total c USING (month) \
                  WHERE c.user_count IS DISTINCT FROM s.n)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(mismatches, 0, "rollups differ from the raw events");
}

#[actix_web::test]
async fn concurrent_inserts_keep_counters_exact() {
    let app = spawn_app().await;
    let config: tokio_postgres::Config = database_url(&app.db_name).parse().unwrap();
    let mut tasks = Vec::new();
    for worker in 0..6u32 {
        // One connection per worker, all inserting at once.
        let client = connect(&config).await;
        tasks.push(tokio::spawn(async move {
            for round in 0..15u32 {
                // Overlapping users, days (across a month boundary) and
                // methods; half the workers insert in reverse order.
                let mut times = Vec::new();
                let mut methods = Vec::new();
                let mut users = Vec::new();
                for i in 0..60u32 {
                    let day = (i + round + worker) % 5; // Feb 26 .. Mar 2
                    let t = NaiveDate::from_ymd_opt(2021, 2, 26).unwrap()
                        + chrono::Days::new(u64::from(day));
                    times.push(
                        t.and_hms_opt((i * 7 + worker) % 24, i % 60, 0)
                            .unwrap()
                            .and_utc(),
                    );
                    methods.push(["PASSWORD", "OAUTH2", "SAML"][((i + round) % 3) as usize]);
                    users.push(format!("user{}", (i * 13 + round * 7 + worker) % 40));
                }
                if worker % 2 == 1 {
                    times.reverse();
                    methods.reverse();
                    users.reverse();
                }
                client
                    .execute(
                        "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
                         auth_request_origin, user_id) \
                         SELECT t, m, 'x', 'CN=Appl-1', u \
                         FROM unnest($1::timestamptz[], $2::text[], $3::text[]) AS r(t, m, u)",
                        &[&times, &methods, &users],
                    )
                    .await
                    .expect("no deadlock, no unique violation");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(event_count(&app).await, 6 * 15 * 60);
    caught_up(&app).await;
    assert_rollups_exact(&app.db).await;
}

/// Brings the rollups up to date, as a report or a retention pass does.
async fn caught_up(app: &TestApp) -> rollup::CatchUp {
    let mut client = app.pool.get().await.unwrap();
    rollup::catch_up(&mut client, rollup::Mode::Complete, &rollup_keys())
        .await
        .expect("catch-up")
}

async fn queued(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM usage_rollup_queue", &[])
        .await
        .unwrap()
        .get(0)
}

/// With the rollups off the insert path, a second insert of the same (day,
/// method, user) no longer waits for the first transaction; the key is still
/// counted once whether the first commits or aborts.
#[actix_web::test]
async fn inserts_of_one_key_do_not_wait_and_count_once_whether_the_first_commits_or_aborts() {
    let app = spawn_app().await;
    let insert = "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
                  auth_request_origin, user_id) \
                  VALUES ('2021-03-05T10:00:00Z', 'PASSWORD', 'p', 'a', $1)";
    for commit in [true, false] {
        let user = if commit { "committed" } else { "aborted" };
        let mut first = app.pool.get().await.unwrap();
        let tx = first.transaction().await.unwrap();
        tx.execute(insert, &[&user]).await.unwrap();
        let pool = app.pool.clone();
        let second = tokio::spawn(async move {
            let client = pool.get().await.unwrap();
            client.execute(insert, &[&user]).await.unwrap();
        });
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second insert does not wait for the first")
            .unwrap();
        // A catch-up while the first is open counts the second's event.
        caught_up(&app).await;
        assert_rollups_exact(&app.db).await;
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        caught_up(&app).await;
        assert_rollups_exact(&app.db).await;
    }
    let json = get_json(&app, &format!("{REPORT}/2021-03")).await;
    assert_eq!(json["total"], 2);
    assert_eq!(queued(&app.db).await, 0);
}

/// The ids of transaction A are below B's, but A commits after B and after a
/// catch-up has run: A's own queue row makes the next catch-up count it.
#[actix_web::test]
async fn a_transaction_committing_after_a_later_one_is_still_counted() {
    let app = spawn_app().await;
    let insert = "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
                  auth_request_origin, user_id) \
                  SELECT '2021-03-05T10:00:00Z', 'PASSWORD', 'p', 'a', $1 || i \
                  FROM generate_series(1, 3) AS i";
    let mut a = app.pool.get().await.unwrap();
    let tx_a = a.transaction().await.unwrap();
    tx_a.execute(insert, &[&"a"]).await.unwrap();
    let mut b = app.pool.get().await.unwrap();
    let tx_b = b.transaction().await.unwrap();
    tx_b.execute(insert, &[&"b"]).await.unwrap();
    tx_b.commit().await.unwrap();
    let first = caught_up(&app).await;
    assert_eq!(first.ranges, 1, "only B's queue row is visible");
    assert_eq!(queued(&app.db).await, 0);
    let json = get_json(&app, &format!("{REPORT}/2021-03")).await;
    assert_eq!(json["total"], 3);
    tx_a.commit().await.unwrap();
    assert_eq!(queued(&app.db).await, 1, "A's row commits with its events");
    // The report catches up by itself.
    let json = get_json(&app, &format!("{REPORT}/2021-03")).await;
    assert_eq!(json["total"], 6);
    assert_eq!(queued(&app.db).await, 0);
    assert_rollups_exact(&app.db).await;
}

#[actix_web::test]
async fn rolled_back_and_empty_inserts_queue_nothing() {
    let app = spawn_app().await;
    app.insert(&march_events()).await;
    caught_up(&app).await;
    let before = get_json(&app, &format!("{REPORT}/2021-03")).await;
    let mut client = app.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
         auth_request_origin, user_id) \
         VALUES ('2021-03-05T10:00:00Z', 'NEWMETHOD', 'p', 'a', 'ghost')",
        &[],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    // A statement inserting no rows, in a session that has used the
    // sequence and in one that has not.
    let empty = "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
                 auth_request_origin, user_id) \
                 SELECT occurred_at, auth_method_type, auth_method_name, auth_request_origin, \
                 user_id FROM auth_event WHERE false";
    client.execute(empty, &[]).await.unwrap();
    let (_, config) = (app.db_name.clone(), database_url(&app.db_name));
    let fresh = connect(&config.parse().unwrap()).await;
    fresh.execute(empty, &[]).await.unwrap();
    assert_eq!(queued(&app.db).await, 0);
    assert_eq!(caught_up(&app).await.steps, 0);
    assert_eq!(get_json(&app, &format!("{REPORT}/2021-03")).await, before);
    assert_rollups_exact(&app.db).await;
}

/// Several connections inserting overlapping users and days in explicit
/// transactions, some rolled back, while the background job and reports
/// catch up concurrently: the figures equal an independent count.
#[actix_web::test]
async fn concurrent_transactions_with_rollbacks_and_catch_ups_stay_exact() {
    let app = spawn_app().await;
    let config: tokio_postgres::Config = database_url(&app.db_name).parse().unwrap();
    let stop = CancellationToken::new();
    let job = tokio::spawn(db::upkeep::run_job(
        app.pool.clone(),
        Duration::from_millis(5),
        stop.clone(),
        vec![&rollup::ROLLUPS],
        pseudonymiser(),
        Default::default(),
    ));
    let mut tasks = Vec::new();
    for worker in 0..5u32 {
        let mut client = connect(&config).await;
        tasks.push(tokio::spawn(async move {
            for round in 0..12u32 {
                let tx = client.transaction().await.unwrap();
                for part in 0..2u32 {
                    tx.execute(
                        "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
                         auth_request_origin, user_id) \
                         SELECT timestamptz '2021-02-27T00:00:00Z' \
                                + ((i * 7 + $1::bigint) % 96) * interval '1 hour', \
                                (ARRAY['PASSWORD','OAUTH2','SAML'])[1 + (i + $2::bigint) % 3], 'x', 'y', \
                                'user' || ((i * 13 + $2 * 7 + $1) % 40) \
                         FROM generate_series(1, 40) AS i",
                        &[&i64::from(worker), &i64::from(round * 2 + part)],
                    )
                    .await
                    .expect("no deadlock");
                }
                if (round + worker) % 4 == 0 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
            }
        }));
    }
    // Reports (each catching up, waiting) while the inserts run.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let pool = app.pool.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    acctstream::kinds::auth::store::accounting_report(
                        &pool,
                        acctstream::kinds::auth::report::ReportMonth::parse("2021-03").unwrap(),
                        Default::default(),
                        &rollup_keys(),
                        &Default::default(),
                    )
                    .await
                    .expect("report during inserts");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    for task in tasks.into_iter().chain(readers) {
        task.await.unwrap();
    }
    stop.cancel();
    job.await.unwrap();
    let committed = (0..5u32)
        .flat_map(|w| (0..12u32).map(move |r| (w, r)))
        .filter(|(w, r)| (r + w) % 4 != 0)
        .count() as i64;
    assert_eq!(event_count(&app).await, committed * 80);
    for month in ["2021-02", "2021-03"] {
        let (from, to) = match month {
            "2021-02" => ("2021-02-01T00:00:00Z", "2021-03-01T00:00:00Z"),
            _ => ("2021-03-01T00:00:00Z", "2021-04-01T00:00:00Z"),
        };
        let json = get_json(&app, &format!("{REPORT}/{month}")).await;
        let (independent, total) = independent_month(&app, from, to).await;
        assert_eq!(
            report_rows(&json).into_iter().collect::<BTreeMap<_, _>>(),
            independent
        );
        assert_eq!(json["total"], total);
    }
    assert_eq!(queued(&app.db).await, 0);
    assert_rollups_exact(&app.db).await;
}

#[actix_web::test]
async fn retention_never_deletes_events_not_rolled_up() {
    let app = spawn_app().await;
    let options = RetentionOptions {
        policy: RetentionPolicy::new(1),
        batch_rows: 4,
        batch_pause: Duration::from_millis(1),
        pseudonymiser: Some(pseudonymiser()),
        upkeep: acctstream::kinds::REGISTRY.upkeeps(),
        kinds: acctstream::kinds::REGISTRY.kinds(),
        ..RetentionOptions::default()
    };
    let cutoff = options.policy.cutoff(Utc::now()).unwrap();
    // Rolled up: deletable.
    app.insert(&[ev("2021-03-01T10:00:00Z", "PASSWORD", "rolled")])
        .await;
    caught_up(&app).await;
    // Not rolled up yet (queued only).
    app.insert(&march_events()).await;
    assert!(queued(&app.db).await > 0);
    let (outcome, _) = db::retention::purge_rule(
        &app.pool,
        &acctstream::kinds::auth::KIND.retention[0],
        cutoff,
        &options,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.deleted, 1);
    let stored = event_count(&app).await;
    assert_eq!(stored, march_events().len() as i64);
    let (independent, total) =
        independent_month(&app, "2021-03-01T00:00:00Z", "2021-04-01T00:00:00Z").await;
    // A full pass catches up first, then deletes everything old.
    let outcome = db::retention::purge(&app.pool, cutoff, &options, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.deleted("events"), stored as u64);
    assert_eq!(event_count(&app).await, 0);
    let json = get_json(&app, &format!("{REPORT}/2021-03")).await;
    let rows: BTreeMap<_, _> = report_rows(&json).into_iter().collect();
    // "rolled" (PASSWORD, March) is counted too.
    let mut expected = independent;
    *expected.entry("PASSWORD".to_owned()).or_default() += 1;
    assert_eq!(rows, expected);
    assert_eq!(json["total"], total + 1);
}

#[actix_web::test]
async fn the_background_job_drains_the_queue_by_itself() {
    let app = spawn_app().await;
    app.insert(&march_events()).await;
    app.insert_many("2021-03-06T00:00:00Z", 5_000).await;
    assert!(queued(&app.db).await > 0);
    let stop = CancellationToken::new();
    let job = tokio::spawn(db::upkeep::run_job(
        app.pool.clone(),
        Duration::from_millis(100),
        stop.clone(),
        vec![&rollup::ROLLUPS],
        pseudonymiser(),
        Default::default(),
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while queued(&app.db).await > 0 {
        assert!(Instant::now() < deadline, "the job did not drain the queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Exact without any report having caught up.
    assert_rollups_exact(&app.db).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), job)
        .await
        .expect("the job stops on shutdown")
        .unwrap();
}

#[actix_web::test]
async fn a_large_range_is_rolled_up_in_bounded_steps() {
    let app = spawn_app().await;
    let n = rollup::MAX_IDS_PER_STEP as i64 + 1_000;
    app.insert_many("2021-03-06T00:00:00Z", n).await;
    assert_eq!(queued(&app.db).await, 1);
    let done = caught_up(&app).await;
    assert_eq!(done.steps, 2, "{done:?}");
    assert_eq!(done.ranges, 1);
    assert_eq!(done.ids, n as u64);
    assert_eq!(queued(&app.db).await, 0);
    assert_rollups_exact(&app.db).await;
}

/// A database that ran 0003 (the insert trigger) migrates to the queue with
/// its rollups current and an empty queue.
#[actix_web::test]
async fn migrating_from_the_insert_trigger_keeps_rollups_exact() {
    let (_, config) = fresh_database_unmigrated().await;
    let mut client = connect(&config).await;
    client
        .batch_execute(
            "CREATE TABLE acctstream_migration (version integer PRIMARY KEY, name text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for m in db::migrate::MIGRATIONS.iter().filter(|m| m.version <= 3) {
        client.batch_execute(m.sql).await.unwrap();
        client
            .execute(
                "INSERT INTO acctstream_migration (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await
            .unwrap();
    }
    let insert = "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
                  auth_request_origin, user_id) \
                  SELECT timestamptz '2021-02-27T00:00:00Z' + i * interval '37 minutes', \
                         (ARRAY['PASSWORD','OAUTH2','SAML'])[1 + i % 3], 'x', 'y', 'user' || (i % 23) \
                  FROM generate_series(0, 499) AS i";
    client.batch_execute(insert).await.unwrap();
    assert_rollups_exact(&client).await;
    let applied = db::migrate::run(&mut client, &acctstream::kinds::REGISTRY.kinds())
        .await
        .unwrap();
    rollup::key_existing(&client, &rollup_keys()).await.unwrap();
    assert_eq!(applied[0], "0004_rollup_queue.sql");
    assert_eq!(queued(&client).await, 0);
    assert_rollups_exact(&client).await;
    client.batch_execute(insert).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id) VALUES ('2021-03-02T00:00:00Z', 'FIDO2', 'x', 'y', 'new')",
        )
        .await
        .unwrap();
    assert_eq!(queued(&client).await, 2);
    rollup::catch_up(&mut client, rollup::Mode::Complete, &rollup_keys())
        .await
        .unwrap();
    assert_eq!(queued(&client).await, 0);
    assert_rollups_exact(&client).await;
}

#[actix_web::test]
async fn migration_backfills_existing_events() {
    let (_, config) = fresh_database_unmigrated().await;
    let mut client = connect(&config).await;
    // Apply everything before the rollups by hand, as an older release would.
    client
        .batch_execute(
            "CREATE TABLE acctstream_migration (version integer PRIMARY KEY, name text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for m in db::migrate::MIGRATIONS
        .iter()
        .filter(|m| m.name < "0003_usage_rollups.sql")
    {
        client.batch_execute(m.sql).await.unwrap();
        client
            .execute(
                "INSERT INTO acctstream_migration (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id) \
             SELECT timestamptz '2021-02-27T00:00:00Z' + i * interval '37 minutes', \
                    (ARRAY['PASSWORD','OAUTH2','SAML'])[1 + i % 3], 'x', 'y', 'user' || (i % 23) \
             FROM generate_series(0, 999) AS i",
        )
        .await
        .unwrap();
    let applied = db::migrate::run(&mut client, &acctstream::kinds::REGISTRY.kinds())
        .await
        .unwrap();
    rollup::key_existing(&client, &rollup_keys()).await.unwrap();
    assert!(applied.contains(&"0003_usage_rollups.sql"), "{applied:?}");
    assert!(applied.contains(&"0004_rollup_queue.sql"), "{applied:?}");
    assert_rollups_exact(&client).await;
    let days: i64 = client
        .query_one("SELECT count(DISTINCT day) FROM usage_daily_count", &[])
        .await
        .unwrap()
        .get(0);
    assert!(days > 20, "{days}");
    // And the queue and the catch-up take over from there.
    client
        .batch_execute(
            "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id) \
             VALUES ('2021-03-01T12:00:00Z', 'FIDO2', 'x', 'y', 'user1'), \
                    ('2021-03-01T12:00:00Z', 'PASSWORD', 'x', 'y', 'newcomer')",
        )
        .await
        .unwrap();
    rollup::catch_up(&mut client, rollup::Mode::Complete, &rollup_keys())
        .await
        .unwrap();
    assert_rollups_exact(&client).await;
}

#[actix_web::test]
async fn retention_never_changes_rollups() {
    let app = spawn_app().await;
    app.insert(&march_events()).await;
    caught_up(&app).await;
    let snapshot = "SELECT md5(string_agg(day::text || auth_method_type || user_count, ',' \
                    ORDER BY day, auth_method_type)) FROM usage_daily_count";
    let before: String = app.db.query_one(snapshot, &[]).await.unwrap().get(0);
    app.db
        .batch_execute("DELETE FROM auth_event")
        .await
        .unwrap();
    let after: String = app.db.query_one(snapshot, &[]).await.unwrap().get(0);
    assert_eq!(before, after);
}

#[test]
fn purge_is_documented_in_help() {
    let output = acctstream().arg("--help").output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("purge"), "{text}");
    let output = acctstream().args(["purge", "--help"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for word in [
        "--dry-run",
        "ACCTSTREAM_RETENTION_DAYS",
        "--retention-days",
        "[default: 180]",
    ] {
        assert!(text.contains(word), "purge --help lacks {word}:\n{text}");
    }
    let output = acctstream().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    for word in [
        "ACCTSTREAM_REPORT_FILENAME_PREFIX",
        "ACCTSTREAM_RETENTION_INTERVAL_SECONDS",
    ] {
        assert!(text.contains(word), "serve --help lacks {word}:\n{text}");
    }
}

#[actix_web::test]
async fn serve_refuses_a_bad_file_name_prefix() {
    let app = spawn_app().await;
    let url = database_url(&app.db_name);
    let output = tokio::task::spawn_blocking(move || {
        acctstream()
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("ACCTSTREAM_PSEUDONYM_KEY", "k")
            .env("ACCTSTREAM_API_TOKENS", "t")
            .env("ACCTSTREAM_BIND", "127.0.0.1:0")
            .env("ACCTSTREAM_REPORT_FILENAME_PREFIX", "a/b")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ACCTSTREAM_REPORT_FILENAME_PREFIX"),
        "{stderr}"
    );
}

/// Issue 10: the rollups keep users as keyed digests. Converting the
/// unkeyed digests of an existing database changes no figure, rolling the
/// same events up again after it adds nothing (the keyed digest of an event
/// is the converted one, month by month under a key schedule), and no
/// stored digest is md5(user_id) any more.
#[actix_web::test]
async fn keyed_rollups_keep_every_figure() {
    let (_, config) = fresh_database_unmigrated().await;
    let mut client = connect(&config).await;
    db::migrate::run_to(&mut client, 8).await.unwrap();
    client
        .execute(
            "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id) \
             SELECT timestamptz '2026-01-20T00:00:00Z' + i * interval '17 minutes', \
                    CASE WHEN i % 3 = 0 THEN 'SAML' ELSE 'PASSWORD' END, 'm', 'CN=App', \
                    'user' || (i % 97) || '@example.com' \
             FROM generate_series(0, 2999) AS i",
            &[],
        )
        .await
        .unwrap();
    // Rolled up the old way (unkeyed md5), as before migration 0009.
    client
        .execute("SELECT usage_rollup_range(0, 1000000)", &[])
        .await
        .unwrap();
    let figures = "SELECT (SELECT string_agg(day || auth_method_type || user_count, ',' ORDER BY 1) \
                          FROM usage_daily_count) || '|' || \
                   (SELECT string_agg(month || auth_method_type || user_count, ',' ORDER BY 1) \
                          FROM usage_monthly_count) || '|' || \
                   (SELECT string_agg(month || ':' || user_count, ',' ORDER BY 1) FROM usage_monthly_total)";
    let before: String = client.query_one(figures, &[]).await.unwrap().get(0);
    assert!(before.contains("2026-02-01:97"), "{before}");

    db::migrate::run(&mut client, &acctstream::kinds::REGISTRY.kinds())
        .await
        .unwrap();
    let keys = acctstream::core::pseudonym::Pseudonymiser::schedule("2026-02:key-b,key-a")
        .unwrap()
        .rollup_keys();
    // Nothing is added under a key before the stored digests are keyed.
    let refused = rollup::catch_up(&mut client, rollup::Mode::Complete, &keys).await;
    assert!(refused.is_err(), "rolled up over unkeyed digests");
    assert!(rollup::key_existing(&client, &keys).await.unwrap());
    assert!(!rollup::key_existing(&client, &keys).await.unwrap(), "once");
    let after: String = client.query_one(figures, &[]).await.unwrap().get(0);
    assert_eq!(after, before);

    // The queued ranges (every event) rolled up again, now keyed: nothing new.
    let rolled = rollup::catch_up(&mut client, rollup::Mode::Complete, &keys)
        .await
        .unwrap();
    assert!(rolled.ids > 0);
    let again: String = client.query_one(figures, &[]).await.unwrap().get(0);
    assert_eq!(again, before);

    let recomputable: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM usage_daily_user WHERE user_key IN \
                     (SELECT md5(user_id)::uuid FROM auth_event)) + \
                    (SELECT count(*) FROM usage_monthly_any WHERE user_key IN \
                     (SELECT md5(user_id)::uuid FROM auth_event))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recomputable, 0);
    // One user, two months: a different digest in each (two keys).
    let digests: i64 = client
        .query_one(
            "SELECT count(DISTINCT user_key) FROM usage_monthly_any",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let months: i64 = client
        .query_one("SELECT count(DISTINCT month) FROM usage_monthly_any", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(months, 2);
    assert_eq!(digests, 2 * 97);

    // The SQL digest is HMAC-SHA256 (RFC 2104) truncated to 16 bytes.
    use hmac::{KeyInit, Mac};
    let key = [7u8; 32];
    let (mut ipad, mut opad) = (vec![0x36u8; 64], vec![0x5cu8; 64]);
    for (i, byte) in key.iter().enumerate() {
        ipad[i] ^= byte;
        opad[i] ^= byte;
    }
    let digest = b"0123456789abcdef".to_vec();
    let sql: String = client
        .query_one(
            "SELECT acctstream_keyed_user($1, $2, $3)::text",
            &[&digest, &ipad, &opad],
        )
        .await
        .unwrap()
        .get(0);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&digest);
    let expected: String = mac.finalize().into_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sql.replace('-', ""), expected);
}

/// Events dated where no report can count them, as SQL can still write
/// them (ingest refuses them): year 0 and past 9999.
const UNSERVABLE: &str = "INSERT INTO auth_event (occurred_at, auth_method_type, \
    auth_method_name, auth_request_origin, user_id) VALUES \
    ('0001-06-01 00:00:00+00 BC', 'PASSWORD', 'x', 'y', 'ghost'), \
    ('10000-01-01 00:00:00+00', 'SAML', 'x', 'y', 'ghost2')";

/// Issue 27, item 1: one event the rollups cannot take used to make every
/// report a 500 for good. Now it is set aside with its reason (no identity
/// kept), counted in `/metrics` once, and the reports stay exact.
#[actix_web::test]
async fn an_event_the_rollups_cannot_take_is_set_aside_and_reports_keep_working() {
    let app = spawn_app().await;
    app.insert(&march_events()).await;
    app.db.batch_execute(UNSERVABLE).await.unwrap();
    for _ in 0..2 {
        let json = get_json(&app, &format!("{REPORT}/2021-03")).await;
        assert_eq!(json["total"], 6, "{json}");
        let (status, _, _) = get(&app, &format!("{DAILY}/2021-03")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(queued(&app.db).await, 0);
    assert_rollups_exact(&app.db).await;
    let aside: Vec<(String, String)> = app
        .db
        .query(
            "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY BC'), reason \
             FROM usage_rollup_set_aside ORDER BY occurred_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(aside.len(), 2, "{aside:?}");
    assert_eq!(aside[0].0, "0001 BC");
    assert!(aside[0].1.contains("0001 to 9999"), "{aside:?}");
    assert_eq!(aside[1].0, "10000 AD");
    let columns: Vec<String> = app
        .db
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_name = 'usage_rollup_set_aside'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!columns.iter().any(|c| c.contains("user")), "{columns:?}");
    // Counted once, though two reports caught up after it.
    let mut response = app
        .client()
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    let metrics = String::from_utf8(body_of(&mut response).await).unwrap();
    assert!(
        metrics.contains("acctstream_upkeep_set_aside_total{upkeep=\"usage rollups\"} 2"),
        "{metrics}"
    );
}

/// Issue 27, item 1: a database whose rollups are already stuck on such an
/// event (every catch-up fails) is repaired by migrating: the first
/// catch-up after 0011 sets it aside and the reports come back.
#[actix_web::test]
async fn migrating_repairs_rollups_stuck_on_an_unservable_event() {
    let (_, config) = fresh_database_unmigrated().await;
    let mut client = connect(&config).await;
    client
        .batch_execute(
            "CREATE TABLE acctstream_migration (version integer PRIMARY KEY, name text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for m in db::migrate::MIGRATIONS.iter().filter(|m| m.version <= 10) {
        client.batch_execute(m.sql).await.unwrap();
        client
            .execute(
                "INSERT INTO acctstream_migration (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await
            .unwrap();
    }
    client.batch_execute(UNSERVABLE).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id) VALUES ('2021-03-02T00:00:00Z', 'FIDO2', 'x', 'y', 'u')",
        )
        .await
        .unwrap();
    // Stuck, as before this fix: the old rollup step fails on the event.
    let stuck = client
        .query_one(
            "SELECT usage_rollup_range(1, 3, $1, $2, $3)",
            &[
                &rollup_keys().from,
                &rollup_keys().ipads,
                &rollup_keys().opads,
            ],
        )
        .await;
    assert!(stuck.is_err());
    let applied = db::migrate::run(&mut client, &acctstream::kinds::REGISTRY.kinds())
        .await
        .unwrap();
    assert_eq!(applied[0], "0011_rollup_set_aside.sql");
    let done = rollup::catch_up(&mut client, rollup::Mode::Complete, &rollup_keys())
        .await
        .unwrap();
    assert_eq!(done.set_aside, 2);
    assert_eq!(queued(&client).await, 0);
    assert_rollups_exact(&client).await;
    let march: i64 = client
        .query_one(
            "SELECT user_count FROM usage_monthly_total WHERE month = '2021-03-01'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(march, 1);
}

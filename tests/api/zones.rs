//! Issue 24: windows in the reader's time zone (`tz=`), on every kind.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::helpers::{body_of, client_event, event, spawn_app, TestApp};

const EVENTS: &str = "/api/v1/statistics/events";

/// `GET path`: status, headers we look at, body.
async fn fetch(app: &TestApp, path: &str, accept: &str) -> (u16, String, String, String) {
    let mut response = app
        .get(path)
        .insert_header(("Accept", accept))
        .send()
        .await
        .expect("request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (link, disposition) = (header("link"), header("content-disposition"));
    let status = response.status().as_u16();
    let body = String::from_utf8(body_of(&mut response).await.to_vec()).unwrap();
    (status, link, disposition, body)
}

async fn json(app: &TestApp, path: &str) -> Value {
    let (status, _, _, body) = fetch(app, path, "application/json").await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// One event every 30 minutes from `from` for `hours` hours, each named by
/// its instant (the user id).
async fn half_hourly(app: &TestApp, from: &str, hours: i64) {
    let start: DateTime<Utc> = from.parse().unwrap();
    let events: Vec<_> = (0..hours * 2)
        .map(|i| {
            let at = start + Duration::minutes(30 * i);
            event(&at.to_rfc3339(), &format!("u{i}"))
        })
        .collect();
    app.insert(&events).await;
}

fn users(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["userId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn seconds(body: &Value) -> i64 {
    let at = |k: &str| DateTime::parse_from_rfc3339(body["window"][k].as_str().unwrap()).unwrap();
    (at("end") - at("start")).num_seconds()
}

#[actix_web::test]
async fn local_days_last_23_or_25_hours_and_hold_their_records() {
    let app = spawn_app().await;
    half_hourly(&app, "2026-03-28T12:00:00Z", 48).await;
    half_hourly(&app, "2026-10-24T12:00:00Z", 48).await;
    half_hourly(&app, "2026-06-09T12:00:00Z", 48).await;
    for (day, length) in [
        ("2026-03-29", 82_800),
        ("2026-10-25", 90_000),
        ("2026-06-10", 86_400),
    ] {
        let body = json(&app, &format!("{EVENTS}/day/{day}?tz=Europe/Helsinki")).await;
        assert_eq!(seconds(&body), length, "{day}");
        // One event per half hour of the local day.
        assert_eq!(users(&body).len() as i64, length / 1800, "{day}");
        let first = body["events"][0]["timestamp"].as_str().unwrap();
        assert!(first.starts_with(&format!("{day}T00:00:00+0")), "{first}");
    }
    let spring = json(&app, &format!("{EVENTS}/day/2026-03-29?tz=Europe/Helsinki")).await;
    assert_eq!(spring["window"]["start"], "2026-03-29T00:00:00+02:00");
    assert_eq!(spring["window"]["end"], "2026-03-30T00:00:00+03:00");
    assert_eq!(
        spring["links"]["next"],
        format!("{}{EVENTS}/day/2026-03-30?tz=Europe/Helsinki", app.address)
    );
    // A day without midnight starts at its first instant.
    let santiago = json(
        &app,
        &format!("{EVENTS}/day/2026-09-06?tz=America/Santiago"),
    )
    .await;
    assert_eq!(santiago["window"]["start"], "2026-09-06T01:00:00-03:00");
    assert_eq!(seconds(&santiago), 82_800);
}

#[actix_web::test]
async fn walking_hours_over_a_fall_back_night_meets_each_record_once() {
    let app = spawn_app().await;
    half_hourly(&app, "2026-10-24T20:00:00Z", 8).await;
    let mut path = format!("{EVENTS}/hour/2026-10-25T00:00+03:00?tz=Europe/Helsinki");
    let mut seen = Vec::new();
    let mut hours = Vec::new();
    for _ in 0..5 {
        let body = json(&app, &path).await;
        hours.push(body["window"]["start"].as_str().unwrap().to_owned());
        seen.extend(users(&body));
        let next = body["links"]["next"].as_str().unwrap();
        path = next.strip_prefix(&app.address).unwrap().to_owned();
    }
    assert_eq!(
        hours,
        [
            "2026-10-25T00:00:00+03:00",
            "2026-10-25T01:00:00+03:00",
            "2026-10-25T02:00:00+03:00",
            "2026-10-25T03:00:00+03:00",
            "2026-10-25T03:00:00+02:00",
        ]
    );
    // 21:00Z to 02:00Z: ten events, each once, in order.
    let want: Vec<String> = (2..12).map(|i| app.pseudonym(&format!("u{i}"))).collect();
    assert_eq!(seen, want);
}

#[actix_web::test]
async fn gaps_folds_wrong_offsets_and_unknown_zones_are_400s() {
    let app = spawn_app().await;
    let error = |path: String| {
        let app = &app;
        async move {
            let (status, _, _, body) = fetch(app, &path, "application/json").await;
            assert_eq!(status, 400, "{path}: {body}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"], "invalid_request");
            body["error_description"].as_str().unwrap().to_owned()
        }
    };
    let gap = error(format!("{EVENTS}/hour/2026-03-29T03?tz=Europe/Helsinki")).await;
    assert!(gap.contains("does not exist"), "{gap}");
    let fold = error(format!("{EVENTS}/hour/2026-10-25T03?tz=Europe/Helsinki")).await;
    for link in [
        "/hour/2026-10-25T03:00+03:00?tz=Europe/Helsinki",
        "/hour/2026-10-25T03:00+02:00?tz=Europe/Helsinki",
    ] {
        assert!(
            fold.contains(&format!("{}{EVENTS}{link}", app.address)),
            "{fold}"
        );
    }
    let offset = error(format!(
        "{EVENTS}/hour/2026-10-25T05:00+05:00?tz=Europe/Helsinki"
    ))
    .await;
    assert!(offset.contains("offset"), "{offset}");
    for zone in [
        "Mars/Olympus",
        "Europe%2F..%2F..%2Fetc",
        "",
        "Europe/Helsinki%00",
    ] {
        let unknown = error(format!("{EVENTS}/day/2026-03-29?tz={zone}")).await;
        assert!(unknown.contains("`tz`"), "{unknown}");
    }
    let twice = error(format!("{EVENTS}/day/2026-03-29?tz=UTC&tz=UTC")).await;
    assert!(twice.contains("`tz`"), "{twice}");
    // Reports are by UTC day: `tz` is refused, saying why.
    for path in [
        "/api/v1/accounting/report/2026-03?tz=Europe/Helsinki",
        "/api/v1/accounting/verify/daily-users/2026-03?tz=Europe/Helsinki",
    ] {
        let refused = error(path.to_owned()).await;
        assert!(refused.contains("UTC day"), "{refused}");
    }
}

#[actix_web::test]
async fn csv_ndjson_links_and_file_names_keep_the_zone_and_no_tz_is_unchanged() {
    let app = spawn_app().await;
    app.insert(&[event("2026-10-25T01:30:00.25Z", "alice")])
        .await;
    let path = format!("{EVENTS}/day/2026-10-25?tz=Europe/Helsinki");
    let (status, link, disposition, csv) = fetch(&app, &path, "text/csv").await;
    assert_eq!(status, 200);
    assert!(csv.contains("2026-10-25T03:30:00.25+02:00"), "{csv}");
    assert!(
        link.contains("/day/2026-10-26?tz=Europe/Helsinki>; rel=\"next\""),
        "{link}"
    );
    assert!(
        disposition.contains("events-day-2026-10-25-Europe_Helsinki.csv"),
        "{disposition}"
    );
    let (_, _, _, ndjson) = fetch(&app, &path, "application/x-ndjson").await;
    assert!(
        ndjson.contains("\"2026-10-25T03:30:00.25+02:00\""),
        "{ndjson}"
    );
    // Without `tz`: UTC windows, times without offset, no `window` member,
    // links and file names as before.
    let utc_path = format!("{EVENTS}/day/2026-10-25");
    let (_, link, disposition, body) = fetch(&app, &utc_path, "application/json").await;
    let pseudonym = app.pseudonym("alice");
    assert_eq!(
        body,
        format!(
            "{{\"links\":{{\"self\":\"{a}{EVENTS}/day/2026-10-25\",\"prev\":\"{a}{EVENTS}/day/2026-10-24\",\
             \"next\":\"{a}{EVENTS}/day/2026-10-26\"}},\"events\":[{{\"timestamp\":\"2026-10-25T01:30:00.25\",\
             \"authMethodType\":\"PASSWORD\",\"authMethodName\":\"password.1\",\
             \"authRequestOrigin\":\"CN=Appl-1,CN=Server,OU=System,CN=Ubilogin,DC=test\",\
             \"userId\":\"{pseudonym}\"}}]}}",
            a = app.address
        )
    );
    assert!(!link.contains("tz="), "{link}");
    assert_eq!(disposition, "");
    let (_, _, disposition, csv) = fetch(&app, &utc_path, "text/csv").await;
    assert!(
        disposition.contains("\"events-day-2026-10-25.csv\""),
        "{disposition}"
    );
    assert!(
        csv.contains(",2026-10-25T01:30:00.25,") || csv.contains("\n2026-10-25T01:30:00.25,"),
        "{csv}"
    );
    // The other kinds take it too: client events, their summary, sessions,
    // the audit trail.
    app.insert_client_events(&[client_event(
        "2026-10-25T01:30:00Z",
        "aa:bb:cc:dd:ee:ff",
        "Corp",
        "ap-1",
    )])
    .await;
    let clients = json(
        &app,
        "/api/v1/statistics/client-events/day/2026-10-25?tz=Europe/Helsinki",
    )
    .await;
    assert_eq!(seconds(&clients), 90_000);
    let summary = json(
        &app,
        "/api/v1/statistics/client-events/summary/day/2026-10-25?tz=Europe/Helsinki",
    )
    .await;
    assert_eq!(summary["window"]["start"], "2026-10-25T00:00:00+03:00");
    let sessions = json(
        &app,
        "/api/v1/statistics/sessions/day/2026-03-29?tz=Asia/Tokyo",
    )
    .await;
    assert_eq!(sessions["window"]["start"], "2026-03-29T00:00:00+09:00");
}

/// A year of local days holds every record of the same span of instants
/// exactly once; the audit trail's windows take the zone too.
#[actix_web::test]
async fn a_year_of_local_days_conserves_the_records() {
    let app = spawn_app().await;
    let start: DateTime<Utc> = "2025-12-31T00:00:00Z".parse().unwrap();
    let events: Vec<_> = (0..1_500)
        .map(|i| {
            let at = start + Duration::seconds(i * 21_317);
            event(&at.to_rfc3339(), &format!("u{i}"))
        })
        .collect();
    app.insert(&events).await;
    let mut path = format!("{EVENTS}/day/2026-01-01?tz=America/Santiago");
    let mut total = 0;
    let mut first = None;
    let mut last = String::new();
    for _ in 0..365 {
        let body = json(&app, &path).await;
        total += body["events"].as_array().unwrap().len();
        first.get_or_insert_with(|| body["window"]["start"].as_str().unwrap().to_owned());
        last = body["window"]["end"].as_str().unwrap().to_owned();
        path = body["links"]["next"]
            .as_str()
            .unwrap()
            .strip_prefix(&app.address)
            .unwrap()
            .to_owned();
    }
    let (from, until) = (
        DateTime::parse_from_rfc3339(&first.unwrap())
            .unwrap()
            .with_timezone(&Utc),
        DateTime::parse_from_rfc3339(&last)
            .unwrap()
            .with_timezone(&Utc),
    );
    let want = events
        .iter()
        .filter(|e| e.occurred_at >= from && e.occurred_at < until)
        .count();
    assert!(want > 1_000, "{want}");
    assert_eq!(total, want);
    let audit = app
        .get_as(
            crate::helpers::AUDIT_TOKEN,
            "/api/v1/audit/day/2026-03-29?tz=Europe/Helsinki",
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(audit, 200);
}

//! The event-details endpoint: windows, order, links, representations.

use acctstream::core::window::{Direction, Period, Window};
use chrono::Utc;
use serde_json::Value;

use crate::helpers::{body_of, event, spawn_app, spawn_app_with, AppOptions, NewEvent};

const EVENTS: &str = "/api/v1/statistics/events";

fn timestamps(json: &Value) -> Vec<String> {
    json["events"]
        .as_array()
        .expect("events array")
        .iter()
        .map(|e| e["timestamp"].as_str().expect("timestamp").to_owned())
        .collect()
}

#[actix_web::test]
async fn ascending_window_includes_lower_bound_and_excludes_upper() {
    let app = spawn_app().await;
    app.insert(&[
        event("2021-04-10T00:59:59.999999Z", "before"),
        event("2021-04-10T01:00:00Z", "on-lower"),
        event("2021-04-10T01:30:00.5Z", "middle"),
        event("2021-04-10T01:59:59.999999Z", "last"),
        event("2021-04-10T02:00:00Z", "on-upper"),
    ])
    .await;
    let json = app.get_json(&format!("{EVENTS}/hour/2021-04-10T01")).await;
    assert_eq!(
        timestamps(&json),
        [
            "2021-04-10T01:00:00",
            "2021-04-10T01:30:00.5",
            "2021-04-10T01:59:59.999999"
        ]
    );
}

#[actix_web::test]
async fn descending_window_excludes_lower_bound_and_includes_upper() {
    let app = spawn_app().await;
    app.insert(&[
        event("2021-04-10T00:00:00Z", "on-lower"),
        event("2021-04-10T00:00:00.000001Z", "first"),
        event("2021-04-10T00:30:00Z", "middle"),
        event("2021-04-10T01:00:00Z", "on-upper"),
        event("2021-04-10T01:00:00.000001Z", "after"),
    ])
    .await;
    let json = app
        .get_json(&format!("{EVENTS}/hour/2021-04-10T01?sort=-"))
        .await;
    assert_eq!(
        timestamps(&json),
        [
            "2021-04-10T01:00:00",
            "2021-04-10T00:30:00",
            "2021-04-10T00:00:00.000001"
        ]
    );
}

#[actix_web::test]
async fn equal_timestamps_follow_insertion_order_and_reverse_when_descending() {
    let app = spawn_app().await;
    let mut events = Vec::new();
    for user in ["u1", "u2", "u3"] {
        events.push(event("2021-04-10T00:00:30Z", user));
    }
    app.insert(&events).await;
    let users = |json: &Value| -> Vec<String> {
        json["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["userId"].as_str().unwrap().to_owned())
            .collect()
    };
    let asc = app
        .get_json(&format!("{EVENTS}/minute/2021-04-10T00:00"))
        .await;
    assert_eq!(
        users(&asc),
        [
            app.pseudonym("u1"),
            app.pseudonym("u2"),
            app.pseudonym("u3")
        ]
    );
    let desc = app
        .get_json(&format!("{EVENTS}/minute/2021-04-10T00:01?sort=-"))
        .await;
    assert_eq!(
        users(&desc),
        [
            app.pseudonym("u3"),
            app.pseudonym("u2"),
            app.pseudonym("u1")
        ]
    );
}

#[actix_web::test]
async fn month_and_week_windows_cover_their_calendar_span() {
    let app = spawn_app().await;
    app.insert(&[
        event("2024-01-31T23:59:59Z", "jan"),
        event("2024-02-01T00:00:00Z", "feb-first"),
        event("2024-02-29T23:59:59.9Z", "leap-day"),
        event("2024-03-01T00:00:00Z", "march"),
    ])
    .await;
    let feb = app.get_json(&format!("{EVENTS}/MONTH/2024-02")).await;
    assert_eq!(
        timestamps(&feb),
        ["2024-02-01T00:00:00", "2024-02-29T23:59:59.9"]
    );
    let week = app.get_json(&format!("{EVENTS}/week/2024-02-24")).await;
    // 7 days from Saturday 24 February: through the leap day into March.
    assert_eq!(
        timestamps(&week),
        ["2024-02-29T23:59:59.9", "2024-03-01T00:00:00"]
    );
    assert_eq!(
        week["links"]["next"].as_str().unwrap(),
        format!("{}{EVENTS}/week/2024-03-02", app.address)
    );
}

#[actix_web::test]
async fn json_carries_every_field_and_pseudonymises_the_user() {
    let app = spawn_app().await;
    let tricky = NewEvent {
        occurred_at: "2021-04-10T00:00:20.123Z".parse().unwrap(),
        auth_method_type: "UNREGISTERED.SMTP".into(),
        auth_method_name: "smtp \"quoted\", with comma\nand newline\r\n".into(),
        auth_request_origin: "CN=Appl-2,CN=Server,OU=System,CN=Ubilogin,DC=test".into(),
        user_id: "CN=Müller\\, Jörg,OU=Users,DC=test 東京 🚀".into(),
    };
    app.insert(std::slice::from_ref(&tricky)).await;
    let mut response = app
        .get(&format!("{EVENTS}/minute/2021-04-10T00:00"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(response.headers().get("vary").unwrap(), "Accept");
    let body = body_of(&mut response).await;
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("Müller"), "raw user id leaked: {text}");
    let json: Value = serde_json::from_str(&text).unwrap();
    let e = &json["events"][0];
    assert_eq!(e["timestamp"], "2021-04-10T00:00:20.123");
    assert_eq!(e["authMethodType"], "UNREGISTERED.SMTP");
    assert_eq!(e["authMethodName"], tricky.auth_method_name.as_str());
    assert_eq!(e["authRequestOrigin"], tricky.auth_request_origin.as_str());
    let user = e["userId"].as_str().unwrap();
    assert_eq!(user, app.pseudonym(&tricky.user_id));
    assert_eq!(user.len(), 64);
    assert!(user
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(json["events"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn csv_parses_back_to_the_same_values() {
    let app = spawn_app().await;
    let rows = [
        (
            "2021-04-10T00:00:00Z",
            "CN=Appl-1,CN=Server,OU=System,CN=Ubilogin,DC=test",
            "a",
        ),
        (
            "2021-04-10T00:00:01.5Z",
            "origin with \"quotes\", commas\r\nand CRLF",
            "b",
        ),
        ("2021-04-10T00:00:02Z", "ünïcødé 東京", "c"),
    ];
    let events: Vec<NewEvent> = rows
        .iter()
        .map(|(ts, origin, user)| NewEvent {
            auth_request_origin: (*origin).into(),
            ..event(ts, user)
        })
        .collect();
    app.insert(&events).await;
    let mut response = app
        .get(&format!("{EVENTS}/minute/2021-04-10T00:00"))
        .insert_header(("Accept", "text/csv, application/json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        response.headers().get("content-disposition").unwrap(),
        "attachment; filename=\"events-minute-2021-04-10T00:00.csv\""
    );
    let body = body_of(&mut response).await;
    assert!(body.starts_with(
        b"Timestamp,Authentication Method Type,Authentication Method Name,Authentication Request Origin,Pseudonymised User ID\r\n"
    ));
    assert!(body.ends_with(b"\r\n"));
    let mut reader = csv::Reader::from_reader(body.as_slice());
    let parsed: Vec<csv::StringRecord> =
        reader.records().map(|r| r.expect("a CSV record")).collect();
    assert_eq!(parsed.len(), 3);
    let expected_ts = [
        "2021-04-10T00:00:00",
        "2021-04-10T00:00:01.5",
        "2021-04-10T00:00:02",
    ];
    for ((record, (_, origin, user)), ts) in parsed.iter().zip(rows).zip(expected_ts) {
        assert_eq!(&record[0], ts);
        assert_eq!(&record[1], "PASSWORD");
        assert_eq!(&record[2], "password.1");
        assert_eq!(&record[3], origin);
        assert_eq!(record[4], app.pseudonym(user));
    }
}

#[actix_web::test]
async fn empty_window_is_an_empty_list_or_a_header_row() {
    let app = spawn_app().await;
    let json = app.get_json(&format!("{EVENTS}/day/2020-01-01")).await;
    assert_eq!(json["events"], Value::Array(vec![]));
    assert_eq!(
        json["links"]["self"],
        format!("{}{EVENTS}/day/2020-01-01", app.address)
    );
    let mut response = app
        .get(&format!("{EVENTS}/day/2020-01-01?format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = body_of(&mut response).await;
    assert_eq!(
        body,
        b"Timestamp,Authentication Method Type,Authentication Method Name,Authentication Request Origin,Pseudonymised User ID\r\n"
    );
}

#[actix_web::test]
async fn links_and_link_header_navigate_in_response_order() {
    let app = spawn_app().await;
    let mut response = app
        .get(&format!("{EVENTS}/Hour/2021-01-01T00:00?sort=-"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let base = format!("{}{EVENTS}", app.address);
    let link = response
        .headers()
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body = body_of(&mut response).await;
    let json: Value = serde_json::from_slice(&body).unwrap();
    let links = &json["links"];
    assert_eq!(links["self"], format!("{base}/hour/2021-01-01T00?sort=-"));
    assert_eq!(links["next"], format!("{base}/hour/2020-12-31T23?sort=-"));
    assert_eq!(links["prev"], format!("{base}/hour/2021-01-01T01?sort=-"));
    // Then where to follow the feed after it (issue 23).
    let (navigation, changes) = link
        .split_once(", <")
        .and_then(|(a, rest)| {
            let (b, rest) = rest.split_once(", <")?;
            let (c, rest) = rest.split_once(", <")?;
            Some((format!("{a}, <{b}, <{c}"), rest.to_owned()))
        })
        .unwrap();
    assert!(
        changes.starts_with(&format!(
            "{}/api/v1/statistics/events/changes?after=events.",
            app.address
        )) && changes.ends_with("; rel=\"changes\""),
        "{changes}"
    );
    assert_eq!(
        navigation,
        format!(
            "<{base}/hour/2021-01-01T00?sort=->; rel=\"self\", <{base}/hour/2021-01-01T01?sort=->; rel=\"prev\", \
             <{base}/hour/2020-12-31T23?sort=->; rel=\"next\""
        )
    );

    let mut csv = app
        .get(&format!("{EVENTS}/month/2021-12"))
        .insert_header(("Accept", "text/csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let link = csv
        .headers()
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        link.contains(&format!("<{base}/month/2022-01>; rel=\"next\"")),
        "{link}"
    );
    assert!(
        link.contains(&format!("<{base}/month/2021-11>; rel=\"prev\"")),
        "{link}"
    );
    body_of(&mut csv).await;
}

#[actix_web::test]
async fn following_next_walks_time_without_gaps_or_overlaps() {
    let app = spawn_app().await;
    // One event per 6 hours across a month end and a leap day.
    let mut events = Vec::new();
    let mut t: chrono::DateTime<Utc> = "2024-02-27T00:00:00Z".parse().unwrap();
    let end: chrono::DateTime<Utc> = "2024-03-03T00:00:00Z".parse().unwrap();
    while t < end {
        events.push(event(&t.to_rfc3339(), "walker"));
        t += chrono::Duration::hours(6);
    }
    app.insert(&events).await;
    let mut url = format!("{}{EVENTS}/day/2024-02-27", app.address);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let path = url.strip_prefix(&app.address).unwrap().to_owned();
        let json = app.get_json(&path).await;
        seen.extend(timestamps(&json));
        url = json["links"]["next"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen.len(), events.len());
    assert_eq!(seen.first().unwrap(), "2024-02-27T00:00:00");
    assert_eq!(seen.last().unwrap(), "2024-03-02T18:00:00");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

#[actix_web::test]
async fn default_window_is_the_latest_complete_one() {
    let app = spawn_app().await;
    // Retry when the minute turns over between computing and requesting.
    for _ in 0..3 {
        let expected = Window::latest(Period::Minute, Direction::Descending, Utc::now()).unwrap();
        let (lower, upper) = expected.bounds();
        app.db
            .batch_execute("DELETE FROM auth_event")
            .await
            .unwrap();
        app.insert(&[
            event(
                &(lower + chrono::Duration::milliseconds(1)).to_rfc3339(),
                "oldest",
            ),
            event(&upper.to_rfc3339(), "newest"),
            event(
                &(upper + chrono::Duration::milliseconds(1)).to_rfc3339(),
                "current-minute",
            ),
        ])
        .await;
        let json = app.get_json(&format!("{EVENTS}/minute?sort=-")).await;
        if Window::latest(Period::Minute, Direction::Descending, Utc::now()).unwrap() != expected {
            continue;
        }
        let users: Vec<&str> = json["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["userId"].as_str().unwrap())
            .collect();
        assert_eq!(users, [app.pseudonym("newest"), app.pseudonym("oldest")]);
        assert_eq!(
            json["links"]["self"],
            format!("{}{}", app.address, expected.path())
        );
        let asc = app.get_json(&format!("{EVENTS}/day")).await;
        let day = Window::latest(Period::Day, Direction::Ascending, Utc::now()).unwrap();
        assert_eq!(
            asc["links"]["self"],
            format!("{}{}", app.address, day.path())
        );
        return;
    }
    panic!("the minute kept turning over");
}

#[actix_web::test]
async fn public_url_is_used_for_links() {
    let app = spawn_app_with(AppOptions {
        public_url: Some("https://acct.example.com".into()),
        ..AppOptions::default()
    })
    .await;
    let json = app.get_json(&format!("{EVENTS}/day/2021-04-24")).await;
    assert_eq!(
        json["links"]["self"],
        "https://acct.example.com/api/v1/statistics/events/day/2021-04-24"
    );
    assert_eq!(
        json["links"]["prev"],
        "https://acct.example.com/api/v1/statistics/events/day/2021-04-23"
    );
}

#[actix_web::test]
async fn finer_datetime_on_the_boundary_is_canonicalised() {
    let app = spawn_app().await;
    let json = app
        .get_json(&format!("{EVENTS}/hour/2021-04-24T13:00"))
        .await;
    assert_eq!(
        json["links"]["self"],
        format!("{}{EVENTS}/hour/2021-04-24T13", app.address)
    );
}

#[actix_web::test]
async fn accept_negotiation_over_http() {
    let app = spawn_app().await;
    for (accept, expected) in [
        (None, "application/json"),
        (Some("*/*"), "application/json"),
        (Some("text/csv"), "text/csv; charset=utf-8"),
        (Some("text/*"), "text/csv; charset=utf-8"),
        (
            Some("application/json;q=0.4, text/csv;q=0.6"),
            "text/csv; charset=utf-8",
        ),
        (Some("application/json, text/csv"), "application/json"),
    ] {
        let mut request = app.get(&format!("{EVENTS}/minute/2021-04-10T00:00"));
        if let Some(accept) = accept {
            request = request.insert_header(("Accept", accept));
        }
        let mut response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{accept:?}");
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            expected,
            "{accept:?}"
        );
        body_of(&mut response).await;
    }
    // format= overrides Accept.
    let mut response = app
        .get(&format!("{EVENTS}/minute/2021-04-10T00:00?format=csv"))
        .insert_header(("Accept", "application/json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/csv; charset=utf-8"
    );
    body_of(&mut response).await;
}

#[actix_web::test]
async fn concurrent_migrations_apply_each_file_once() {
    let (_, config) = crate::helpers::fresh_database_unmigrated().await;
    let mut a = crate::helpers::connect(&config).await;
    let mut b = crate::helpers::connect(&config).await;
    let kinds = acctstream::kinds::REGISTRY.kinds();
    let (ra, rb) = tokio::join!(
        acctstream::db::migrate::run(&mut a, &kinds),
        acctstream::db::migrate::run(&mut b, &kinds)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.len() + rb.len(),
        acctstream::db::migrate::MIGRATIONS.len(),
        "{ra:?} {rb:?}"
    );
    let recorded: i64 = a
        .query_one("SELECT count(*) FROM acctstream_migration", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded as usize, acctstream::db::migrate::MIGRATIONS.len());
    assert!(acctstream::db::migrate::is_current(&a).await.unwrap());
}

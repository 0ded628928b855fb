//! What fault drills and a new user's first hour found (issue 11): the
//! items fixed so far, each with a test that failed before.

use serde_json::Value;

use crate::helpers::{body_of, event, spawn_app, spawn_app_with, AppOptions, TestApp, WRITE_TOKEN};

async fn answer(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, awc::http::header::HeaderMap, Vec<u8>) {
    let mut request = app.get(path);
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request.send().await.expect("request");
    let body = body_of(&mut response).await;
    (response.status().as_u16(), response.headers().clone(), body)
}

/// Item 4: `Accept-Encoding: identity;q=0` (nothing the compression layer
/// can send) is a 406 with an `ErrorResponse` body, not plain text.
#[actix_web::test]
async fn errors_from_the_compression_layer_are_error_responses() {
    let app = spawn_app().await;
    for accept_encoding in [
        "identity;q=0",
        "identity;q=0, *;q=0",
        "compress, identity;q=0",
    ] {
        let (status, headers, body) = answer(
            &app,
            "/api/v1/statistics/events/day/2021-04-10",
            &[("Accept-Encoding", accept_encoding)],
        )
        .await;
        assert_eq!(status, 406, "{accept_encoding}");
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
        let body: Value = serde_json::from_slice(&body).expect("an ErrorResponse");
        assert_eq!(body["error"], "not_acceptable");
        assert!(body["error_description"].as_str().unwrap().contains("gzip"));
        assert!(headers.get("x-request-id").is_some());
    }
}

/// Item 5: a descending window's CSV is named after the interval served.
#[actix_web::test]
async fn descending_downloads_are_named_after_the_interval_served() {
    let app = spawn_app().await;
    for (path, name) in [
        (
            "/api/v1/statistics/events/day/2021-04-24?sort=-&format=csv",
            "events-day-after-2021-04-23-through-2021-04-24.csv",
        ),
        (
            "/api/v1/statistics/events/day/2021-04-24?format=csv",
            "events-day-2021-04-24.csv",
        ),
        (
            "/api/v1/statistics/client-events/hour/2021-04-24T13?sort=desc&format=csv",
            "client-events-hour-after-2021-04-24T12-through-2021-04-24T13.csv",
        ),
    ] {
        let (status, headers, _) = answer(&app, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            headers.get("content-disposition").unwrap(),
            format!("attachment; filename=\"{name}\"").as_str(),
            "{path}"
        );
    }
}

/// Item 6: `sort=desc` and `sort=-timestamp` sort descending too; links
/// write `sort=-`.
#[actix_web::test]
async fn desc_and_minus_timestamp_sort_descending() {
    let app = spawn_app().await;
    app.insert(&[
        event("2021-04-10T00:00:01Z", "a"),
        event("2021-04-10T00:00:02Z", "b"),
    ])
    .await;
    for sort in ["-", "desc", "DESC", "-timestamp"] {
        let (status, _, body) = answer(
            &app,
            &format!(
                "/api/v1/statistics/events/minute/2021-04-10T00:01?sort={}",
                sort.replace('-', "%2D")
            ),
            &[],
        )
        .await;
        assert_eq!(status, 200);
        let json: Value = serde_json::from_slice(&body).unwrap();
        let times: Vec<&str> = json["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap())
            .collect();
        assert_eq!(
            times,
            ["2021-04-10T00:00:02", "2021-04-10T00:00:01"],
            "sort={sort}"
        );
        assert!(json["links"]["next"]
            .as_str()
            .unwrap()
            .ends_with("/minute/2021-04-10T00:00?sort=-"));
    }
    // Anything else is ascending, as the contract says.
    let (_, _, body) = answer(
        &app,
        "/api/v1/statistics/events/day/2021-04-10?sort=asc",
        &[],
    )
    .await;
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["events"][0]["timestamp"], "2021-04-10T00:00:01");
}

/// Item 9: the supported range is the same in code and docs, tested at both
/// ends: a window and both its neighbours must lie in the years 0001-9999.
#[actix_web::test]
async fn the_year_range_holds_at_both_ends() {
    let app = spawn_app().await;
    for (path, status) in [
        ("month/0001-01", 400),
        ("month/0001-02", 200),
        ("month/9999-11", 200),
        ("month/9999-12", 400),
        ("day/0001-01-01", 400),
        ("day/0001-01-02", 200),
        ("day/9999-12-30", 200),
        ("day/9999-12-31", 400),
        ("minute/9999-12-31T23:58", 200),
        ("minute/9999-12-31T23:59", 400),
    ] {
        let (got, _, body) = answer(&app, &format!("/api/v1/statistics/events/{path}"), &[]).await;
        assert_eq!(got, status, "{path}: {}", String::from_utf8_lossy(&body));
        if status == 400 {
            let body: Value = serde_json::from_slice(&body).unwrap();
            let description = body["error_description"].as_str().unwrap();
            assert!(
                description.contains("0001 to 9999") && description.contains("neighbours"),
                "{description}"
            );
        }
    }
}

/// Item 10: client errors say in plain words what was wrong; a table of bad
/// inputs and their messages.
#[actix_web::test]
async fn client_errors_read_as_plain_words() {
    let app = spawn_app().await;
    for (path, needle) in [
        (
            "/api/v1/statistics/events/day/2021-04-10?sort=-&sort=-",
            "The parameter `sort` may appear only once.",
        ),
        (
            "/api/v1/statistics/events/day/2021-04-10?format=csv&format=json",
            "The parameter `format` may appear only once.",
        ),
        (
            "/api/v1/statistics/events/day/2021-04-10?format=xml",
            "Valid values for format: csv, json, ndjson.",
        ),
        (
            "/api/v1/statistics/events/decade",
            "Valid values for the time period",
        ),
        (
            "/api/v1/statistics/events/day/2021-04",
            "expected YYYY-MM-DD",
        ),
    ] {
        let (status, _, body) = answer(&app, path, &[]).await;
        assert_eq!(status, 400, "{path}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(needle), "{path}: {description}");
        assert!(
            !description.contains("Custom {") && !description.contains("Some("),
            "{description}"
        );
    }
    // A truncated gzip body.
    let mut encoder = crate::ingest::gzip_stored(
        br#"{"timestamp":"2021-04-10T00:00:00Z","authMethodType":"A","authMethodName":"a","authRequestOrigin":"o","userId":"u"}"#,
    );
    encoder.truncate(encoder.len() / 2);
    let mut response = app
        .client()
        .post(format!("{}/api/v1/events", app.address))
        .insert_header(("Authorization", format!("Bearer {WRITE_TOKEN}")))
        .insert_header(("Content-Type", "application/x-ndjson"))
        .insert_header(("Content-Encoding", "gzip"))
        .send_body(encoder)
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = serde_json::from_slice(&body_of(&mut response).await).unwrap();
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with("The request body could not be read: it ended early, or is not valid data of its Content-Encoding"),
        "{description}"
    );
    assert!(
        !description.contains("Custom") && !description.contains("UnexpectedEof"),
        "{description}"
    );
}

/// Item 3: a busy pool is not "not ready": with every connection streaming,
/// `/readyz` still answers 200 at once and reports the pool's use.
#[actix_web::test]
async fn readyz_stays_ready_while_the_pool_is_busy() {
    let app = spawn_app_with(AppOptions {
        pool_size: 2,
        ..AppOptions::default()
    })
    .await;
    app.insert_many("2021-04-10T00:00:00Z", 200_000).await;
    // Two downloads that stall (nobody reads them) hold both connections.
    let mut sockets = Vec::new();
    for _ in 0..2 {
        sockets.push(
            app.open_raw(
                "/api/v1/statistics/events/day/2021-04-10",
                &[("Accept", "text/csv")],
            )
            .await,
        );
    }
    crate::helpers::eventually("both connections in use", || async {
        app.pool.status().available == 0 && app.pool.status().size == 2
    })
    .await;
    let started = std::time::Instant::now();
    let mut response = app
        .client()
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let body: Value = serde_json::from_slice(&body_of(&mut response).await).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["pool"]["available"], 0);
    assert_eq!(body["pool"]["maxSize"], 2);
    drop(sockets);
}

/// Item 12: browsers on configured origins may call the API (preflight
/// answered, `Link`, `Content-Disposition` and `X-Request-Id` exposed);
/// other origins may not; `OPTIONS` always answers with `Allow`.
#[actix_web::test]
async fn cors_for_configured_origins_and_options_with_allow() {
    let origin = "https://dash.example.com";
    let app = spawn_app_with(AppOptions {
        http: acctstream::http::AppOptions {
            cors_origins: vec![origin.to_owned()],
            ..Default::default()
        },
        ..AppOptions::default()
    })
    .await;
    let path = format!("{}/api/v1/statistics/events/day/2021-04-10", app.address);
    let preflight = |from: &'static str| {
        app.client()
            .request(awc::http::Method::OPTIONS, &path)
            .insert_header(("Origin", from))
            .insert_header(("Access-Control-Request-Method", "GET"))
            .insert_header(("Access-Control-Request-Headers", "authorization, accept"))
            .send()
    };
    let response = preflight(origin).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        origin
    );
    let methods = response
        .headers()
        .get("access-control-allow-methods")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(methods.contains("GET"), "{methods}");
    let mut response = preflight("https://evil.example").await.unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_eq!(response.status(), 400);
    let body: Value = serde_json::from_slice(&body_of(&mut response).await).unwrap();
    assert_eq!(body["error"], "invalid_request");

    let (status, headers, _) = answer(
        &app,
        "/api/v1/statistics/events/day/2021-04-10?format=csv",
        &[("Origin", origin)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("access-control-allow-origin").unwrap(), origin);
    let exposed = headers
        .get("access-control-expose-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["link", "content-disposition", "x-request-id"] {
        assert!(exposed.contains(name), "{exposed}");
    }

    // Without origins configured: no CORS headers, and OPTIONS lists the methods.
    let plain = spawn_app().await;
    let (_, headers, _) = answer(
        &plain,
        "/api/v1/statistics/events/day/2021-04-10",
        &[("Origin", origin)],
    )
    .await;
    assert!(headers.get("access-control-allow-origin").is_none());
    for (path, allow) in [
        (
            "/api/v1/statistics/events/day/2021-04-10",
            "GET, HEAD, OPTIONS",
        ),
        ("/healthz", "GET, HEAD, OPTIONS"),
        ("/api/v1/events", "POST, OPTIONS"),
    ] {
        let response = plain
            .client()
            .request(
                awc::http::Method::OPTIONS,
                format!("{}{path}", plain.address),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{path}");
        assert_eq!(response.headers().get("allow").unwrap(), allow, "{path}");
    }
}

/// Item 14: the latest week is the last complete ISO 8601 week, Monday
/// 00:00 UTC to Monday, and its links step a week at a time.
#[actix_web::test]
async fn the_latest_week_is_the_last_iso_week() {
    use chrono::{Datelike, Duration, Utc};
    let app = spawn_app().await;
    let today = Utc::now().date_naive();
    let this_monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let last_monday = this_monday - Duration::days(7);
    let (status, _, body) = answer(&app, "/api/v1/statistics/events/week", &[]).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        json["links"]["self"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/week/{last_monday}")),
        "{}",
        json["links"]
    );
    assert!(json["links"]["next"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/week/{this_monday}")));
    assert_eq!(last_monday.weekday(), chrono::Weekday::Mon);
}

//! The shared pipeline across kinds: Wi-Fi client event windows, filters
//! and links that keep them, NDJSON, HEAD, the `identities` scope, and the
//! CSV formula guard on every CSV-producing route.

use acctstream::core::encode::FormulaGuard;
use serde_json::Value;

use crate::helpers::{
    body_of, client_event, event, spawn_app, spawn_app_with, AppOptions, ClientEvent, TestApp,
    IDENTITIES_TOKEN, TOKEN,
};

const CLIENT_EVENTS: &str = "/api/v1/statistics/client-events";

async fn status_and_error(app: &TestApp, token: &str, path: &str) -> (u16, String) {
    let mut response = app.get_as(token, path).send().await.expect("request");
    let body: Value = serde_json::from_slice(&body_of(&mut response).await).expect("JSON");
    (
        response.status().as_u16(),
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

fn failure(at: &str, mac: &str, ap: &str, code: i32, reason: &str) -> ClientEvent {
    ClientEvent {
        event_type: "Failure".into(),
        failure_code: Some(code),
        failure: Some(reason.into()),
        ..client_event(at, mac, "Corp", ap)
    }
}

/// A small day of client events: two clients, three APs, both SSIDs.
async fn seed_day(app: &TestApp) {
    app.insert_client_events(&[
        client_event(
            "2021-04-09T23:59:59.999999Z",
            "68:05:71:a4:ef:0e",
            "Corp",
            "AP-1",
        ),
        client_event("2021-04-10T00:00:00Z", "68:05:71:A4:EF:0E", "Corp", "AP-1"),
        failure(
            "2021-04-10T08:00:00.25Z",
            "68-05-71-a4-ef-0e",
            "AP-2",
            7,
            "Incorrect PSK",
        ),
        failure(
            "2021-04-10T09:00:00Z",
            "a4:83:e7:00:00:01",
            "AP-2",
            4,
            "DHCP Failure",
        ),
        ClientEvent {
            event_type: "Intermediate".into(),
            category: Some(4),
            ip: Some("10.0.0.7".into()),
            ..client_event("2021-04-10T10:00:00Z", "a483e7000001", "Guest", "AP-3")
        },
        client_event(
            "2021-04-10T23:59:59.999999Z",
            "a4:83:e7:00:00:01",
            "Guest",
            "AP-3",
        ),
        client_event("2021-04-11T00:00:00Z", "a4:83:e7:00:00:01", "Guest", "AP-3"),
    ])
    .await;
}

fn timestamps(json: &Value) -> Vec<&str> {
    json["clientEvents"]
        .as_array()
        .expect("clientEvents")
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect()
}

#[actix_web::test]
async fn client_event_windows_follow_the_window_rules_in_both_orders() {
    let app = spawn_app().await;
    seed_day(&app).await;
    let json = app
        .get_json(&format!("{CLIENT_EVENTS}/day/2021-04-10"))
        .await;
    assert_eq!(
        timestamps(&json),
        [
            "2021-04-10T00:00:00",
            "2021-04-10T08:00:00.25",
            "2021-04-10T09:00:00",
            "2021-04-10T10:00:00",
            "2021-04-10T23:59:59.999999"
        ]
    );
    assert_eq!(
        json["links"]["next"],
        format!("{}{CLIENT_EVENTS}/day/2021-04-11", app.address)
    );
    // Descending: (2021-04-10, 2021-04-11], newest first.
    let json = app
        .get_json(&format!("{CLIENT_EVENTS}/day/2021-04-11?sort=-"))
        .await;
    assert_eq!(
        timestamps(&json),
        [
            "2021-04-11T00:00:00",
            "2021-04-10T23:59:59.999999",
            "2021-04-10T10:00:00",
            "2021-04-10T09:00:00",
            "2021-04-10T08:00:00.25"
        ]
    );
    // Fields of other event types are null; one device is one pseudonym
    // whichever notation stored it.
    let json = app
        .get_json(&format!("{CLIENT_EVENTS}/day/2021-04-10"))
        .await;
    let events = json["clientEvents"].as_array().unwrap();
    let device = app.pseudonym("68:05:71:a4:ef:0e");
    assert_eq!(events[0]["macAddress"], device);
    assert_eq!(events[1]["macAddress"], device);
    assert_eq!(events[0]["failureCode"], Value::Null);
    assert_eq!(events[1]["failureCode"], 7);
    assert_eq!(events[1]["failure"], "Incorrect PSK");
    assert_eq!(events[3]["ip"], app.pseudonym("10.0.0.7"));
    assert_eq!(events[3]["categoryCode"], 4);
}

#[actix_web::test]
async fn filters_narrow_and_links_keep_them_with_format_and_sort() {
    let app = spawn_app().await;
    seed_day(&app).await;
    let path = format!(
        "{CLIENT_EVENTS}/day/2021-04-10?eventType=Failure&apName=AP-2&failureCode=7&failureCode=4&format=json"
    );
    let json = app.get_json(&path).await;
    assert_eq!(
        timestamps(&json),
        ["2021-04-10T08:00:00.25", "2021-04-10T09:00:00"]
    );
    assert_eq!(
        json["links"]["next"],
        format!(
            "{}{CLIENT_EVENTS}/day/2021-04-11?format=json&eventType=Failure&apName=AP-2&failureCode=7&failureCode=4",
            app.address
        )
    );
    let json = app
        .get_json(&format!(
            "{CLIENT_EVENTS}/day/2021-04-10?ssid=Guest&category=4"
        ))
        .await;
    assert_eq!(timestamps(&json), ["2021-04-10T10:00:00"]);

    // By client pseudonym (resolved through the identity directory).
    let device = app.pseudonym("a4:83:e7:00:00:01");
    let path = format!("{CLIENT_EVENTS}/day/2021-04-11?sort=-&client={device}&format=csv");
    let (headers, body) = app.get_ok_as(TOKEN, &path).await;
    let csv = String::from_utf8(body).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
    let link = headers.get("link").unwrap().to_str().unwrap();
    assert!(
        link.contains(&format!(
            "{CLIENT_EVENTS}/day/2021-04-10?sort=-&format=csv&client={device}>; rel=\"next\""
        )),
        "{link}"
    );
    // An unknown pseudonym matches nothing.
    let json = app
        .get_json(&format!(
            "{CLIENT_EVENTS}/day/2021-04-10?client={}",
            "0".repeat(64)
        ))
        .await;
    assert_eq!(timestamps(&json), Vec::<&str>::new());

    // Authentication events filter by method and keep the filter in links.
    app.insert(&[
        event("2021-04-10T01:00:00Z", "alice"),
        acctstream_event("2021-04-10T02:00:00Z", "OTP"),
    ])
    .await;
    let json = app
        .get_json("/api/v1/statistics/events/day/2021-04-10?authMethodType=OTP")
        .await;
    assert_eq!(json["events"].as_array().unwrap().len(), 1);
    assert_eq!(json["events"][0]["authMethodType"], "OTP");
    assert!(json["links"]["prev"]
        .as_str()
        .unwrap()
        .ends_with("/events/day/2021-04-09?authMethodType=OTP"));
}

/// Filter values reach PostgreSQL as bind parameters (stored in session
/// settings for the streaming COPY): quotes, backslashes and the characters
/// of array literals match exactly, alone and among several values.
#[actix_web::test]
async fn filter_values_with_quotes_and_array_syntax_match_exactly() {
    let app = spawn_app().await;
    let methods = [
        "O'T\\P",
        "a,b",
        "{x}",
        "\"q\"",
        "NULL",
        "é ü",
        "x'); DROP TABLE auth_event; --",
    ];
    let events: Vec<_> = methods
        .iter()
        .enumerate()
        .map(|(i, m)| acctstream_event(&format!("2021-04-10T0{i}:00:00Z"), m))
        .collect();
    app.insert(&events).await;
    app.insert(&[acctstream_event("2021-04-10T09:00:00Z", "OTP")])
        .await;
    let encode = |m: &str| {
        percent_encoding::utf8_percent_encode(m, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    for method in methods {
        let path = format!(
            "/api/v1/statistics/events/day/2021-04-10?authMethodType={}",
            encode(method)
        );
        let json = app.get_json(&path).await;
        let found: Vec<&str> = json["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["authMethodType"].as_str().unwrap())
            .collect();
        assert_eq!(found, [method], "{path}");
    }
    let all: Vec<String> = methods
        .iter()
        .map(|m| format!("authMethodType={}", encode(m)))
        .collect();
    let path = format!("/api/v1/statistics/events/day/2021-04-10?{}", all.join("&"));
    let json = app.get_json(&path).await;
    assert_eq!(json["events"].as_array().unwrap().len(), methods.len());
    // Nothing was dropped, and OTP was not among them.
    let json = app
        .get_json("/api/v1/statistics/events/day/2021-04-10")
        .await;
    assert_eq!(json["events"].as_array().unwrap().len(), methods.len() + 1);
    // The extremes of a number filter (written into the COPY statement).
    for code in [i64::MIN, i64::MAX] {
        let path = format!("{CLIENT_EVENTS}/day/2021-04-10?failureCode={code}&format=json");
        let json = app.get_json(&path).await;
        assert_eq!(json["clientEvents"].as_array().unwrap().len(), 0, "{path}");
    }
}

fn acctstream_event(at: &str, method: &str) -> crate::helpers::NewEvent {
    crate::helpers::NewEvent {
        auth_method_type: method.into(),
        ..event(at, "bob")
    }
}

#[actix_web::test]
async fn bad_filters_and_parameters_are_clear_client_errors() {
    let app = spawn_app().await;
    for (path, status, code, needle) in [
        (
            "?failureCode=seven",
            400,
            "invalid_request",
            "`failureCode`",
        ),
        ("?ssid=", 400, "invalid_request", "`ssid`"),
        (
            "?client=not-a-pseudonym",
            403,
            "insufficient_scope",
            "identities",
        ),
        (
            "?client=68:05:71:A4:EF:0E",
            403,
            "insufficient_scope",
            "identities",
        ),
        ("?sort=-&sort=-", 400, "invalid_request", "`sort`"),
        ("?format=xml", 400, "invalid_request", "ndjson"),
        (
            "?format=csv&format=json",
            400,
            "invalid_request",
            "`format`",
        ),
    ] {
        let full = format!("{CLIENT_EVENTS}/day/2021-04-10{path}");
        let mut response = app.get(&full).send().await.unwrap();
        let body: Value = serde_json::from_slice(&body_of(&mut response).await).unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}: {body}");
        assert_eq!(body["error"], code, "{path}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(needle), "{path}: {description}");
        assert!(!description.contains("68:05"), "{path}: echoes the MAC");
    }
}

#[actix_web::test]
async fn ndjson_is_a_third_representation_for_every_kind() {
    let app = spawn_app().await;
    seed_day(&app).await;
    app.insert(&[
        event("2021-04-10T01:00:00Z", "alice"),
        event("2021-04-10T01:00:01Z", "bob"),
    ])
    .await;
    for (path, rows) in [
        ("/api/v1/statistics/events/day/2021-04-10", 2),
        ("/api/v1/statistics/client-events/day/2021-04-10", 5),
    ] {
        for (query, accept) in [("", "application/x-ndjson"), ("?format=ndjson", "text/csv")] {
            let mut response = app
                .get(&format!("{path}{query}"))
                .insert_header(("Accept", accept))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers().get("content-type").unwrap(),
                "application/x-ndjson"
            );
            assert!(response.headers().get("link").is_some());
            let body = String::from_utf8(body_of(&mut response).await).unwrap();
            let lines: Vec<Value> = body
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
                .collect();
            assert_eq!(lines.len(), rows, "{path}{query}");
            assert!(lines
                .iter()
                .all(|l| l.get("timestamp").is_some() && l.get("links").is_none()));
            assert!(body.ends_with('\n'));
        }
    }
    // */* and application/* still mean JSON.
    for accept in ["*/*", "application/*"] {
        let response = app
            .get("/api/v1/statistics/events/day/2021-04-10")
            .insert_header(("Accept", accept))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "application/json"
        );
    }
}

#[actix_web::test]
async fn head_answers_every_get_route_with_its_status_and_headers() {
    let app = spawn_app().await;
    seed_day(&app).await;
    for (path, status, content_type) in [
        (
            "/api/v1/statistics/events/day/2021-04-10",
            200,
            "application/json",
        ),
        (
            "/api/v1/statistics/client-events/day/2021-04-10?format=csv",
            200,
            "text/csv; charset=utf-8",
        ),
        (
            "/api/v1/statistics/client-events/decade",
            400,
            "application/json",
        ),
        ("/api/v1/accounting/report/2021-04", 200, "application/json"),
        (
            "/api/v1/accounting/verify/events/2021-04-10",
            200,
            "application/json",
        ),
        ("/healthz", 200, "application/json"),
        ("/openapi.yaml", 200, "application/yaml"),
    ] {
        let mut response = app
            .client()
            .head(format!("{}{path}", app.address))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "HEAD {path}");
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            content_type,
            "HEAD {path}"
        );
        assert!(response.headers().get("x-request-id").is_some());
        assert!(
            body_of(&mut response).await.is_empty(),
            "HEAD {path} has a body"
        );
    }
    let response = app
        .client()
        .head(format!(
            "{}/api/v1/statistics/client-events/day/2021-04-10?format=csv",
            app.address
        ))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("content-disposition").unwrap(),
        "attachment; filename=\"client-events-day-2021-04-10.csv\""
    );
    assert!(response.headers().get("link").is_some());
    // HEAD without a token is the GET's 401.
    let response = app
        .client()
        .head(format!(
            "{}/api/v1/statistics/events/day/2021-04-10",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// Every raw identity of the test data, in every notation it was stored or
/// given in.
const RAW_IDENTITIES: [&str; 6] = [
    "68:05:71",
    "68-05-71",
    "a4:83:e7",
    "a483e7",
    "10.0.0.7",
    "alice@example.com",
];

#[actix_web::test]
async fn raw_identities_need_the_identities_scope() {
    let app = spawn_app().await;
    seed_day(&app).await;
    app.insert(&[event("2021-04-10T01:00:00Z", "alice@example.com")])
        .await;
    let paths = [
        "/api/v1/statistics/events/day/2021-04-10",
        "/api/v1/statistics/client-events/day/2021-04-10",
        "/api/v1/accounting/verify/events/2021-04-10",
    ];
    for path in paths {
        for format in ["json", "csv", "ndjson"] {
            let (_, body) = app
                .get_ok_as(TOKEN, &format!("{path}?format={format}"))
                .await;
            let text = String::from_utf8(body).unwrap().to_lowercase();
            for raw in RAW_IDENTITIES {
                assert!(!text.contains(raw), "{path} {format} shows {raw}");
            }
        }
    }
    // With the scope: raw values, MACs in the one documented notation.
    let (_, body) = app
        .get_ok_as(IDENTITIES_TOKEN, &format!("{CLIENT_EVENTS}/day/2021-04-10"))
        .await;
    let json: Value = serde_json::from_slice(&body).unwrap();
    let events = json["clientEvents"].as_array().unwrap();
    assert_eq!(events[0]["macAddress"], "68:05:71:a4:ef:0e");
    assert_eq!(events[1]["macAddress"], "68:05:71:a4:ef:0e");
    assert_eq!(events[3]["ip"], "10.0.0.7");
    let (_, body) = app
        .get_ok_as(IDENTITIES_TOKEN, "/api/v1/statistics/events/day/2021-04-10")
        .await;
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["events"][0]["userId"], "alice@example.com");
    // ... and raw filters in any notation.
    let (_, body) = app
        .get_ok_as(
            IDENTITIES_TOKEN,
            &format!("{CLIENT_EVENTS}/day/2021-04-10?client=6805.71A4.EF0E"),
        )
        .await;
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        timestamps(&json),
        ["2021-04-10T00:00:00", "2021-04-10T08:00:00.25"]
    );
    // The token without the scope still gets a 403 for the same filter.
    let (status, code) = status_and_error(
        &app,
        TOKEN,
        &format!("{CLIENT_EVENTS}/day/2021-04-10?client=6805.71A4.EF0E"),
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "insufficient_scope"));
}

/// The values of the formula-guard table, and how each is written in CSV
/// with the guard on.
const FORMULAS: [(&str, &str); 10] = [
    ("=1+1", "'=1+1"),
    ("+SUM(A1)", "'+SUM(A1)"),
    ("-2+3", "'-2+3"),
    ("@cmd", "'@cmd"),
    ("\t=1", "'\t=1"),
    ("\r=1", "\"'\r=1\""),
    (
        "=HYPERLINK(\"http://x\",\"y\")",
        "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"",
    ),
    ("a \"b\", c", "\"a \"\"b\"\", c\""),
    ("a=b", "a=b"),
    ("x", "x"),
];

/// The exact CSV cell of `value` when written exactly (guard off).
fn exact_cell(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[actix_web::test]
async fn csv_formula_guard_on_every_csv_route_and_never_in_json() {
    for guard in [FormulaGuard::Quote, FormulaGuard::Off] {
        let app = spawn_app_with(AppOptions {
            http: acctstream::http::AppOptions {
                csv_formula_guard: guard,
                ..Default::default()
            },
            ..AppOptions::default()
        })
        .await;
        for (i, (value, _)) in FORMULAS.iter().enumerate() {
            let at = format!("2021-04-10T01:00:{i:02}Z");
            app.insert(&[crate::helpers::NewEvent {
                auth_method_type: value.to_string(),
                ..event(&at, "u")
            }])
            .await;
            // The SSID and (for the summary) the AP name carry the value.
            app.insert_client_events(&[client_event(&at, "68:05:71:a4:ef:0e", value, value)])
                .await;
        }
        let cell = |i: usize| match guard {
            FormulaGuard::Quote => FORMULAS[i].1.to_owned(),
            FormulaGuard::Off => exact_cell(FORMULAS[i].0),
        };
        // Streamed windows: the method type is column 2 of events; the SSID column 5 of client events.
        for (path, prefix_cols) in [
            ("/api/v1/statistics/events/day/2021-04-10?format=csv", 1),
            ("/api/v1/accounting/verify/events/2021-04-10?format=csv", 1),
            (
                "/api/v1/statistics/client-events/day/2021-04-10?format=csv",
                4,
            ),
        ] {
            let (_, body) = app.get_ok_as(TOKEN, path).await;
            let text = String::from_utf8(body).unwrap();
            let rows: Vec<&str> = text
                .split("\r\n")
                .skip(1)
                .filter(|r| !r.is_empty())
                .collect();
            // A row may contain a quoted CR: split on CRLF only and compare cells by prefix.
            assert_eq!(rows.len(), FORMULAS.len(), "{path}: {text:?}");
            for (i, row) in rows.iter().enumerate() {
                let mut rest = *row;
                for _ in 0..prefix_cols {
                    rest = &rest[rest.find(',').unwrap() + 1..];
                }
                assert!(
                    rest.starts_with(&format!("{},", cell(i))),
                    "{guard:?} {path} row {i}: {rest:?}"
                );
            }
        }
        // JSON carries the exact values.
        let json = app
            .get_json("/api/v1/statistics/events/day/2021-04-10")
            .await;
        for (i, (value, _)) in FORMULAS.iter().enumerate() {
            assert_eq!(json["events"][i]["authMethodType"], *value);
        }
        // One client's history: newest first, the SSID is column 5.
        let device = app.pseudonym("68:05:71:a4:ef:0e");
        let (_, body) = app
            .get_ok_as(TOKEN, &format!("{HISTORY}/{device}/events?format=csv"))
            .await;
        let text = String::from_utf8(body).unwrap();
        let rows: Vec<&str> = text
            .split("\r\n")
            .skip(1)
            .filter(|r| !r.is_empty())
            .collect();
        assert_eq!(rows.len(), FORMULAS.len(), "{text:?}");
        for (n, row) in rows.iter().enumerate() {
            let i = FORMULAS.len() - 1 - n;
            let mut rest = *row;
            for _ in 0..4 {
                rest = &rest[rest.find(',').unwrap() + 1..];
            }
            assert!(
                rest.starts_with(&format!("{},", cell(i))),
                "{guard:?} history row {n}: {rest:?}"
            );
        }
        // The summary: the SSID and AP rows name them (each one success).
        let (_, body) = app
            .get_ok_as(
                TOKEN,
                "/api/v1/statistics/client-events/summary/day/2021-04-10?format=csv",
            )
            .await;
        let text = String::from_utf8(body).unwrap();
        for (i, (value, _)) in FORMULAS.iter().enumerate() {
            for section in ["ssid", "ap"] {
                assert!(
                    text.contains(&format!("\r\n{section},{},,1,1,0,1\r\n", cell(i))),
                    "{guard:?} summary: no {section} row for {value:?} in {text:?}"
                );
            }
        }
        // Reports: the method type column.
        for path in [
            "/api/v1/accounting/report/2021-04?format=csv",
            "/api/v1/accounting/verify/daily-users/2021-04?format=csv",
        ] {
            let (_, body) = app.get_ok_as(TOKEN, path).await;
            let text = String::from_utf8(body).unwrap();
            for (i, (value, _)) in FORMULAS.iter().enumerate() {
                assert!(
                    text.contains(&format!(",{},1\r\n", cell(i))),
                    "{guard:?} {path}: no row for {value:?} in {text:?}"
                );
            }
        }
    }
}

const HISTORY: &str = "/api/v1/clients";

#[actix_web::test]
async fn one_clients_history_pages_newest_first_like_the_seed_api() {
    let app = spawn_app().await;
    seed_day(&app).await;
    let device = app.pseudonym("68:05:71:a4:ef:0e");
    let other = app.pseudonym("a4:83:e7:00:00:01");

    let json = app
        .get_json_as(TOKEN, &format!("{HISTORY}/{device}/events"))
        .await;
    assert_eq!(
        timestamps(&json),
        [
            "2021-04-10T08:00:00.25",
            "2021-04-10T00:00:00",
            "2021-04-09T23:59:59.999999"
        ]
    );
    assert_eq!(json["previousLink"], Value::Null);
    assert!(json.get("totalCount").is_none());

    // Pages of two with the total; links keep every other parameter.
    let first = format!("{HISTORY}/{other}/events?limit=2&totalcountrequired=true");
    let json = app.get_json_as(TOKEN, &first).await;
    assert_eq!(json["totalCount"], 4);
    assert_eq!(
        timestamps(&json),
        ["2021-04-11T00:00:00", "2021-04-10T23:59:59.999999"]
    );
    let next = json["nextLink"].as_str().unwrap();
    assert_eq!(
        next,
        format!(
            "{}{HISTORY}/{other}/events?offset=2&limit=2&totalcountrequired=true",
            app.address
        )
    );
    let json = app.get_json_as(TOKEN, &next[app.address.len()..]).await;
    assert_eq!(
        timestamps(&json),
        ["2021-04-10T10:00:00", "2021-04-10T09:00:00"]
    );
    assert_eq!(json["nextLink"], Value::Null);
    assert_eq!(
        json["previousLink"],
        format!(
            "{}{HISTORY}/{other}/events?offset=0&limit=2&totalcountrequired=true",
            app.address
        )
    );

    // Filters and the time range (epoch milliseconds, both ends inclusive).
    for (query, expected) in [
        ("clienteventtype=Failure", vec!["2021-04-10T09:00:00"]),
        ("failureoreventtypecode=4", vec!["2021-04-10T09:00:00"]),
        ("eventcategory=4&ssid=Guest", vec!["2021-04-10T10:00:00"]),
        (
            "ssid=Corp&ssid=Guest&clienteventtype=Success",
            vec!["2021-04-11T00:00:00", "2021-04-10T23:59:59.999999"],
        ),
        // 2021-04-10T09:00:00Z .. 2021-04-10T10:00:00Z
        (
            "fromtime=1618045200000&totime=1618048800000",
            vec!["2021-04-10T10:00:00", "2021-04-10T09:00:00"],
        ),
    ] {
        let json = app
            .get_json_as(TOKEN, &format!("{HISTORY}/{other}/events?{query}"))
            .await;
        assert_eq!(timestamps(&json), expected, "{query}");
    }

    // CSV and NDJSON hold the same page.
    let (headers, body) = app
        .get_ok_as(
            TOKEN,
            &format!("{HISTORY}/{other}/events?limit=1&format=csv"),
        )
        .await;
    assert_eq!(String::from_utf8(body).unwrap().lines().count(), 2);
    assert!(headers
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("rel=\"next\""));
}

#[actix_web::test]
async fn history_identifies_clients_by_pseudonym_or_by_mac_with_the_scope() {
    let app = spawn_app().await;
    seed_day(&app).await;
    let device = app.pseudonym("68:05:71:a4:ef:0e");
    for notation in [
        "68:05:71:A4:EF:0E",
        "68-05-71-a4-ef-0e",
        "680571a4ef0e",
        "6805.71a4.ef0e",
    ] {
        let json = app
            .get_json_as(IDENTITIES_TOKEN, &format!("{HISTORY}/{notation}/events"))
            .await;
        assert_eq!(
            json["clientEvents"].as_array().unwrap().len(),
            3,
            "{notation}"
        );
        assert_eq!(json["clientEvents"][0]["macAddress"], "68:05:71:a4:ef:0e");
        let (status, code) =
            status_and_error(&app, TOKEN, &format!("{HISTORY}/{notation}/events")).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "insufficient_scope"),
            "{notation}"
        );
    }
    let json = app
        .get_json_as(IDENTITIES_TOKEN, &format!("{HISTORY}/{device}/events"))
        .await;
    assert_eq!(json["clientEvents"].as_array().unwrap().len(), 3);
    for (path, status, code) in [
        (
            format!("{HISTORY}/{}/events", "0".repeat(64)),
            404,
            "not_found",
        ),
        (
            format!("{HISTORY}/{device}/events?limit=0"),
            400,
            "invalid_request",
        ),
        (
            format!("{HISTORY}/{device}/events?limit=1001"),
            400,
            "invalid_request",
        ),
        (
            format!("{HISTORY}/{device}/events?offset=-1"),
            400,
            "invalid_request",
        ),
        (
            format!("{HISTORY}/{device}/events?fromtime=soon"),
            400,
            "invalid_request",
        ),
        (
            format!("{HISTORY}/{device}/events?totime=99999999999999999"),
            400,
            "invalid_request",
        ),
        (
            format!("{HISTORY}/{device}/events?totalcountrequired=3"),
            400,
            "invalid_request",
        ),
        (
            format!("{HISTORY}/{device}/events?clienteventtype=Success&clienteventtype=Failure"),
            400,
            "invalid_request",
        ),
        (
            format!("{HISTORY}/{device}/events?failureoreventtypecode=x"),
            400,
            "invalid_request",
        ),
    ] {
        let (got, got_code) = status_and_error(&app, TOKEN, &path).await;
        assert_eq!((got, got_code.as_str()), (status, code), "{path}");
    }
    let (status, _) = status_and_error(
        &app,
        IDENTITIES_TOKEN,
        &format!("{HISTORY}/00:00:00:00:00:00/events"),
    )
    .await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn summary_counts_agree_with_sql() {
    let app = spawn_app().await;
    seed_day(&app).await;
    app.insert_client_events(&[
        failure(
            "2021-04-10T11:00:00Z",
            "a4:83:e7:00:00:02",
            "AP-2",
            7,
            "Incorrect PSK",
        ),
        client_event("2021-04-10T12:00:00Z", "a4:83:e7:00:00:02", "Corp", "AP-2"),
    ])
    .await;
    let json = app
        .get_json("/api/v1/statistics/client-events/summary/day/2021-04-10")
        .await;
    let sql_count = |predicate: &'static str| {
        let db = &app.db;
        async move {
            let row = db
                .query_one(
                    &format!(
                        "SELECT count(*) FROM client_event WHERE occurred_at >= '2021-04-10' \
                         AND occurred_at < '2021-04-11' AND {predicate}"
                    ),
                    &[],
                )
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };
    assert_eq!(json["eventTypes"][0]["eventType"], "Success");
    assert_eq!(
        json["eventTypes"][0]["count"],
        sql_count("event_type = 'Success'").await
    );
    assert_eq!(
        json["eventTypes"][1]["count"],
        sql_count("event_type = 'Failure'").await
    );
    assert_eq!(
        json["eventTypes"][2]["count"],
        sql_count("event_type = 'Intermediate'").await
    );
    assert_eq!(json["topFailures"][0]["failureCode"], 7);
    assert_eq!(
        json["topFailures"][0]["count"],
        sql_count("failure_code = 7").await
    );
    assert_eq!(json["topFailures"][1]["failureCode"], 4);
    // AP-2: one success, three failures: first, rate 0.25.
    assert_eq!(json["aps"][0]["name"], "AP-2");
    assert_eq!(
        json["aps"][0]["successes"],
        sql_count("ap_name = 'AP-2' AND event_type = 'Success'").await
    );
    assert_eq!(
        json["aps"][0]["failures"],
        sql_count("ap_name = 'AP-2' AND event_type = 'Failure'").await
    );
    assert_eq!(json["aps"][0]["successRate"], 0.25);
    assert_eq!(json["ssids"][0]["name"], "Corp");
    assert_eq!(
        json["links"]["next"],
        format!(
            "{}/api/v1/statistics/client-events/summary/day/2021-04-11",
            app.address
        )
    );
    let (headers, body) = app
        .get_ok_as(
            TOKEN,
            "/api/v1/statistics/client-events/summary/day/2021-04-10?format=csv",
        )
        .await;
    let csv = String::from_utf8(body).unwrap();
    assert!(csv.starts_with(
        "Section,Name,Code,Count,Successes,Failures,Success Rate\r\neventType,Success,,"
    ));
    assert!(csv.contains("\r\nap,AP-2,,4,1,3,0.25\r\n"), "{csv}");
    assert_eq!(
        headers.get("content-disposition").unwrap(),
        "attachment; filename=\"client-events-summary-day-2021-04-10.csv\""
    );
    // An empty window: every type with 0, empty lists.
    let json = app
        .get_json("/api/v1/statistics/client-events/summary/month/2020-01")
        .await;
    assert_eq!(json["eventTypes"][1]["count"], 0);
    assert_eq!(json["aps"], serde_json::json!([]));
}

/// Posts `body` to the client-event ingest path with the write token.
async fn post_client_events(app: &TestApp, content_type: &str, body: &str) -> (u16, Value) {
    let mut response = app
        .client()
        .post(format!("{}/api/v1/client-events", app.address))
        .insert_header((
            "Authorization",
            format!("Bearer {}", crate::helpers::WRITE_TOKEN),
        ))
        .insert_header(("Content-Type", content_type))
        .send_body(body.to_owned())
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let json = serde_json::from_slice(&body_of(&mut response).await).expect("JSON answer");
    (status, json)
}

const SEED_SAMPLE: &str = r#"{"timestamp":1505109958917419,"macAddress":"68:05:71:A4:EF:0E","eventType":"Success","protocol":"BG","ssid":"varsha","bssid":"00:11:74:8c:94:c0","channel":11,"associatedAPName":"Mojo_8C:94:DF","associationTimestamp":1505109957000,"authenticationTimestamp":1505109957000,"networkTimestamp":1505109958000,"dhcpLatency":4,"aaaLatency":0,"dnsLatency":74,"eventId":"ce-1"}
{"timestamp":"2017-09-11T06:02:00.172449Z","macAddress":"68-05-71-a4-ef-0e","eventType":"Failure","bssid":"00:11:74:8c:94:c0","ssid":"varsha","failureCode":7,"failure":"Incorrect PSK","subFailureCode":14,"subFailure":"Wrong passphrase.","eventId":"ce-2"}
{"timestamp":1505109958843842,"macAddress":"680571a4ef0e","eventType":"Intermediate","categoryCode":4,"typeCode":23,"subTypeCode":0,"category":"Client Steering","vlan":null,"ip":"10.9.1.17","rssi":-61}
"#;

#[actix_web::test]
async fn client_events_are_ingested_through_the_shared_path() {
    let app = spawn_app().await;
    let (status, json) = post_client_events(&app, "application/x-ndjson", SEED_SAMPLE).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json,
        serde_json::json!({"received": 3, "inserted": 3, "duplicates": 0})
    );
    // A retry is safe: the two events with an eventId are duplicates.
    let (_, json) = post_client_events(&app, "application/x-ndjson", SEED_SAMPLE).await;
    assert_eq!(
        json,
        serde_json::json!({"received": 3, "inserted": 1, "duplicates": 2})
    );

    // Stored as sent, MACs in one notation, times from microseconds or RFC 3339.
    let (_, body) = app
        .get_ok_as(
            IDENTITIES_TOKEN,
            "/api/v1/statistics/client-events/hour/2017-09-11T06?format=ndjson",
        )
        .await;
    let rows: Vec<Value> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["timestamp"], "2017-09-11T06:02:00.172449");
    assert_eq!(rows[0]["failureCode"], 7);
    assert_eq!(rows[1]["timestamp"], "2017-09-11T06:05:58.843842");
    assert_eq!(rows[1]["ip"], "10.9.1.17");
    assert_eq!(rows[1]["rssi"], -61);
    assert_eq!(rows[3]["timestamp"], "2017-09-11T06:05:58.917419");
    assert_eq!(rows[3]["dnsLatency"], 74);
    assert_eq!(rows[3]["associationTimestamp"], 1_505_109_957_000_i64);
    for row in &rows {
        assert_eq!(row["macAddress"], "68:05:71:a4:ef:0e");
    }
    // The pseudonyms were recorded: the history finds the device by them.
    let device = app.pseudonym("68:05:71:a4:ef:0e");
    let json = app
        .get_json_as(
            TOKEN,
            &format!("{HISTORY}/{device}/events?totalcountrequired=true"),
        )
        .await;
    assert_eq!(json["totalCount"], 4);
    let ip = app.pseudonym("10.9.1.17");
    let resolved: i64 = app
        .db
        .query_one(
            "SELECT count(*) FROM identity_directory WHERE pseudonym = ANY($1)",
            &[&vec![device, ip]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(resolved, 2);

    // JSON arrays and CSV too.
    let (status, json) = post_client_events(
        &app,
        "application/json",
        r#"[{"timestamp":"2021-04-10T00:00:00Z","macAddress":"a4:83:e7:00:00:09","eventType":"Success"}]"#,
    )
    .await;
    assert_eq!((status, json["inserted"].as_i64()), (200, Some(1)));
    let csv = "eventType,timestamp,macAddress,channel,failureCode,ssid,eventId\r\n\
               Failure,2021-04-10T00:00:01Z,a4:83:e7:00:00:09,36,4,\"Corp, 2nd\",\r\n\
               Success,1618012802000000,a4:83:e7:00:00:09,,,,ce-9\r\n";
    let (status, json) = post_client_events(&app, "text/csv", csv).await;
    assert_eq!(
        (status, json["inserted"].as_i64()),
        (200, Some(2)),
        "{json}"
    );
    let json = app
        .get_json("/api/v1/statistics/client-events/minute/2021-04-10T00:00")
        .await;
    let events = json["clientEvents"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[1]["ssid"], "Corp, 2nd");
    assert_eq!(events[1]["channel"], 36);
    assert_eq!(events[2]["timestamp"], "2021-04-10T00:00:02");
    assert_eq!(events[2]["channel"], Value::Null);
    assert_eq!(events[2]["eventId"], "ce-9");
}

#[actix_web::test]
async fn bad_client_events_name_record_and_field_and_store_nothing() {
    let app = spawn_app().await;
    let good = r#"{"timestamp":"2021-04-10T00:00:00Z","macAddress":"a4:83:e7:00:00:09","eventType":"Success"}"#;
    for (bad, field, needle) in [
        (
            r#"{"timestamp":"2021-04-10T00:00:00Z","macAddress":"not-a-mac","eventType":"Success"}"#,
            "macAddress",
            "MAC address",
        ),
        (
            r#"{"timestamp":"2021-04-10T00:00:00Z","macAddress":"a4:83:e7:00:00:09","eventType":"Maybe"}"#,
            "eventType",
            "one of Success, Failure, Intermediate",
        ),
        (
            r#"{"timestamp":"2021-04-10T00:00:00Z","macAddress":"a4:83:e7:00:00:09","eventType":"Success","channel":"eleven"}"#,
            "channel",
            "integer",
        ),
        (
            r#"{"timestamp":"2021-04-10T00:00:00Z","macAddress":"a4:83:e7:00:00:09","eventType":"Success","channel":4294967296}"#,
            "channel",
            "from -2147483648 to 2147483647",
        ),
        (
            r#"{"timestamp":"2021-04-10T00:00:00Z","macAddress":"a4:83:e7:00:00:09","eventType":"Success","channel":1.5}"#,
            "channel",
            "an integer, not a fractional",
        ),
        (
            r#"{"timestamp":99999999999999999999,"macAddress":"a4:83:e7:00:00:09","eventType":"Success"}"#,
            "timestamp",
            "out-of-range number",
        ),
        (
            r#"{"timestamp":-99999999999999999,"macAddress":"a4:83:e7:00:00:09","eventType":"Success"}"#,
            "timestamp",
            "years 0001 to 9999",
        ),
        (
            r#"{"timestamp":"2021-04-10T00:00:00Z","macAddress":"a4:83:e7:00:00:09","eventType":"Success","ip":"10.0.0.300"}"#,
            "ip",
            "IP",
        ),
        (
            r#"{"timestamp":"2021-04-10T00:00:00Z","eventType":"Success"}"#,
            "macAddress",
            "is missing",
        ),
        (
            r#"{"timestamp":"2021-04-10T00:00:00Z","macAddress":"a4:83:e7:00:00:09","eventType":"Success","ssid":""}"#,
            "ssid",
            "must not be empty",
        ),
    ] {
        let body = format!("{good}\n{bad}\n");
        let (status, json) = post_client_events(&app, "application/x-ndjson", &body).await;
        assert_eq!(status, 400, "{bad}: {json}");
        let description = json["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(&format!("Line 2: field `{field}` "))
                && description.contains(needle),
            "{bad}: {description}"
        );
        assert!(
            description.ends_with("Nothing was stored."),
            "{description}"
        );
        assert!(!description.contains("not-a-mac") && !description.contains("10.0.0.300"));
    }
    let stored: i64 = app
        .db
        .query_one("SELECT count(*) FROM client_event", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    // A read token may not ingest.
    let response = app
        .client()
        .post(format!("{}/api/v1/client-events", app.address))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .insert_header(("Content-Type", "application/x-ndjson"))
        .send_body(good)
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

/// Issue 10: with a key schedule, each record is pseudonymised with the key
/// in force in its own month, so a device keeps one pseudonym within a
/// month; a pseudonym of either month finds it.
#[actix_web::test]
async fn pseudonyms_follow_the_key_of_each_records_month() {
    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        key_schedule: Some("2027-02:key-b,key-a".into()),
        ..Default::default()
    })
    .await;
    let mac = "68:05:71:a4:ef:0e";
    app.insert_client_events(&[
        crate::helpers::client_event("2027-01-31T23:58:00Z", mac, "s", "ap"),
        crate::helpers::client_event("2027-01-31T23:59:00Z", mac, "s", "ap"),
        crate::helpers::client_event("2027-02-01T00:00:00Z", mac, "s", "ap"),
    ])
    .await;
    let key = |k: &[u8]| acctstream::core::pseudonym::Pseudonymiser::new(k).unwrap();
    let (a, b) = (
        acctstream::core::identity::pseudonym_of(
            &key(b"key-a"),
            acctstream::core::identity::IdentityType::Mac,
            mac,
        ),
        acctstream::core::identity::pseudonym_of(
            &key(b"key-b"),
            acctstream::core::identity::IdentityType::Mac,
            mac,
        ),
    );
    let (_, body) = app
        .get_ok_as(
            TOKEN,
            &format!("{CLIENT_EVENTS}/week/2027-01-28?format=json"),
        )
        .await;
    let json: Value = serde_json::from_slice(&body).unwrap();
    let shown: Vec<&str> = json["clientEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["macAddress"].as_str().unwrap())
        .collect();
    assert_eq!(shown, [a.as_str(), a.as_str(), b.as_str()]);
    for pseudonym in [&a, &b] {
        let (_, body) = app
            .get_ok_as(
                TOKEN,
                &format!("{CLIENT_EVENTS}/week/2027-01-28?client={pseudonym}"),
            )
            .await;
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["clientEvents"].as_array().unwrap().len(), 3);
    }
}

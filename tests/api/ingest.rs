//! `POST /api/v1/events`: every body format, atomicity, safe retries, the
//! error answers, concurrency and a large streamed body.

use std::time::Duration;

use acctstream::http::{
    error::ErrorResponse, AppOptions as HttpOptions, IngestOptions, IngestResponse,
};
use awc::http::{header, StatusCode};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::helpers::{
    body_of, event, spawn_app, spawn_app_with, AppOptions, TestApp, TOKEN, WRITE_TOKEN,
};

const INGEST: &str = "/api/v1/events";
const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";
const CSV: &str = "text/csv";

/// A response's status, headers and body.
struct Answer {
    status: StatusCode,
    headers: awc::http::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn summary(&self) -> IngestResponse {
        assert_eq!(
            self.status,
            200,
            "expected 200, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        serde_json::from_slice(&self.body).expect("an IngestResponse")
    }

    fn error(&self, status: u16) -> ErrorResponse {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        serde_json::from_slice(&self.body).expect("an ErrorResponse")
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

async fn post_as(
    app: &TestApp,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Answer {
    let mut request = app.client().post(format!("{}{INGEST}", app.address));
    if let Some(token) = token {
        request = request.insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
    }
    if let Some(content_type) = content_type {
        request = request.insert_header((header::CONTENT_TYPE, content_type));
    }
    let mut response = request.send_body(body.into()).await.expect("POST");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: body_of(&mut response).await,
    }
}

async fn post(app: &TestApp, content_type: &str, body: impl Into<Bytes>) -> Answer {
    post_as(app, Some(WRITE_TOKEN), Some(content_type), body).await
}

/// One NDJSON/JSON event object.
fn object(ts: &str, user: &str, event_id: Option<&str>) -> String {
    let mut value = serde_json::json!({
        "timestamp": ts,
        "authMethodType": "PASSWORD",
        "authMethodName": "password.1",
        "authRequestOrigin": "CN=Appl-1,CN=Server,OU=System,DC=test",
        "userId": user,
    });
    if let Some(id) = event_id {
        value["eventId"] = id.into();
    }
    value.to_string()
}

/// A stored event: (occurred_at, type, name, origin, user, event_id), in id order.
type Row = (
    DateTime<Utc>,
    String,
    String,
    String,
    String,
    Option<String>,
);

async fn stored(app: &TestApp) -> Vec<Row> {
    app.db
        .query(
            "SELECT occurred_at, auth_method_type, auth_method_name, auth_request_origin, \
             user_id, event_id FROM auth_event ORDER BY id",
            &[],
        )
        .await
        .expect("read auth_event")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

async fn count(app: &TestApp) -> i64 {
    app.db
        .query_one("SELECT count(*) FROM auth_event", &[])
        .await
        .expect("count")
        .get(0)
}

fn at(ts: &str) -> DateTime<Utc> {
    ts.parse().expect("a timestamp")
}

async fn day_events(app: &TestApp, day: &str) -> Vec<Value> {
    let mut response = app
        .get(&format!("/api/v1/statistics/events/day/{day}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    let json: Value = serde_json::from_slice(&body_of(&mut response).await).expect("JSON");
    json["events"].as_array().expect("events").clone()
}

#[actix_web::test]
async fn ndjson_events_are_stored_and_readable_at_once() {
    let app = spawn_app().await;
    let body = format!(
        "{}\r\n\n{}\n{}",
        object(
            "2021-04-10T00:00:01.123456Z",
            "alice@example.com",
            Some("e-1")
        ),
        object("2021-04-10T02:00:02+02:00", "Zoë Ünïcode", None),
        object("2021-04-10T00:00:03", "carol@example.com", Some("e-3")),
    );
    let summary = post(&app, NDJSON, body).await.summary();
    assert_eq!(
        summary,
        IngestResponse {
            received: 3,
            inserted: 3,
            duplicates: 0
        }
    );
    let rows = stored(&app).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].0, at("2021-04-10T00:00:01.123456Z"));
    assert_eq!(rows[0].4, "alice@example.com");
    assert_eq!(rows[0].5.as_deref(), Some("e-1"));
    assert_eq!(rows[1].0, at("2021-04-10T00:00:02Z"));
    assert_eq!(rows[1].4, "Zoë Ünïcode");
    assert_eq!(rows[1].5, None);
    assert_eq!(rows[2].0, at("2021-04-10T00:00:03Z"));
    assert_eq!(rows[2].3, "CN=Appl-1,CN=Server,OU=System,DC=test");

    // The event-details API shows them right after the 200, pseudonymised.
    let events = day_events(&app, "2021-04-10").await;
    let users: Vec<&str> = events
        .iter()
        .map(|e| e["userId"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        [
            app.pseudonym("alice@example.com"),
            app.pseudonym("Zoë Ünïcode"),
            app.pseudonym("carol@example.com")
        ]
    );
    assert_eq!(events[0]["timestamp"], "2021-04-10T00:00:01.123456");

    // A rejected request counts the events read before the bad one, plus it.
    let bad = format!("{}\n{{}}\n", object("2021-04-10T00:00:04Z", "d", None));
    post(&app, NDJSON, bad).await.error(400);
    let mut metrics = app
        .client()
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("GET /metrics");
    let metrics = String::from_utf8(body_of(&mut metrics).await).expect("UTF-8");
    for line in [
        r#"acctstream_ingest_events_total{outcome="accepted"} 3"#,
        r#"acctstream_ingest_events_total{outcome="rejected"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in {metrics}"
        );
    }
}

#[actix_web::test]
async fn json_array_events_are_stored() {
    let app = spawn_app().await;
    let body = format!(
        "[\n {},\n {} ]",
        object("2021-04-10T00:00:01Z", "a,]\"b", Some("x-1")),
        object("2021-04-10T00:00:02Z", "c", Some("x-2")),
    );
    let summary = post(&app, "Application/JSON; charset=utf-8", body)
        .await
        .summary();
    assert_eq!((summary.received, summary.inserted), (2, 2));
    let rows = stored(&app).await;
    assert_eq!(rows[0].4, "a,]\"b");
    assert_eq!(rows[1].5.as_deref(), Some("x-2"));
    // An empty array stores nothing and is fine.
    assert_eq!(post(&app, JSON, "[]").await.summary().received, 0);
}

#[actix_web::test]
async fn csv_events_are_stored() {
    let app = spawn_app().await;
    let body =
        "\u{feff}eventId,userId,timestamp,authMethodType,authMethodName,authRequestOrigin\r\n\
                c-1,alice,2021-04-10T00:00:01Z,PASSWORD,password.1,\"CN=Appl-1,CN=Server\"\r\n\
                ,\"Zoë \"\"the\"\" user\",2021-04-10T00:00:02.5,OTP,otp.1,\"two\r\nlines\"\r\n";
    let summary = post(&app, "text/csv; header=present", body).await.summary();
    assert_eq!((summary.received, summary.inserted), (2, 2));
    let rows = stored(&app).await;
    assert_eq!(
        rows,
        vec![
            (
                at("2021-04-10T00:00:01Z"),
                "PASSWORD".to_owned(),
                "password.1".to_owned(),
                "CN=Appl-1,CN=Server".to_owned(),
                "alice".to_owned(),
                Some("c-1".to_owned())
            ),
            (
                at("2021-04-10T00:00:02.5Z"),
                "OTP".to_owned(),
                "otp.1".to_owned(),
                "two\r\nlines".to_owned(),
                "Zoë \"the\" user".to_owned(),
                None
            ),
        ]
    );
}

#[actix_web::test]
async fn a_bad_record_in_the_middle_stores_nothing() {
    let app = spawn_app().await;
    app.insert(&[event("2021-04-09T12:00:00Z", "existing")])
        .await;
    let good = |n: u32| object(&format!("2021-04-10T00:00:0{n}Z"), "u", None);
    let bad_time = object("2021-04-10T00:00:01.1234567Z", "u", None);
    let cases = [
        (
            NDJSON,
            format!("{}\n{}\n{}\n", good(1), bad_time, good(3)),
            ["Line 2", "`timestamp`"],
        ),
        (
            JSON,
            format!(
                "[{},{},{}]",
                good(1),
                good(2),
                object("2021-04-10T00:00:03Z", "", None)
            ),
            ["Array element 3", "`userId`"],
        ),
        (
            CSV,
            "timestamp,authMethodType,authMethodName,authRequestOrigin,userId\n\
             2021-04-10T00:00:01Z,A,a,o,u\n\
             2021-04-10T00:00:02Z,,a,o,u\n\
             2021-04-10T00:00:03Z,A,a,o,u\n"
                .to_owned(),
            ["CSV row 2", "`authMethodType`"],
        ),
        (
            NDJSON,
            format!("{}\n{{\"timestamp\": 5}}\n", good(1)),
            ["Line 2", "must be a string"],
        ),
        (
            NDJSON,
            format!(
                "{}\n{}\n",
                good(1),
                good(2).replace("\"userId\"", "\"userID\"")
            ),
            ["Line 2", "unknown field `userID`"],
        ),
        (
            NDJSON,
            format!("{}\n{{not json\n", good(1)),
            ["Line 2", "not valid JSON"],
        ),
        // Issue 27, item 1: a time windows and reports cannot serve.
        (
            NDJSON,
            format!(
                "{}\n{}\n",
                good(1),
                object("0000-01-01T00:00:00Z", "u", None)
            ),
            ["Line 2", "`timestamp` is outside the years 0001 to 9999"],
        ),
        (
            JSON,
            format!(
                "[{},{}]",
                object("0001-01-01T00:30:00+01:00", "u", None),
                good(2)
            ),
            [
                "Array element 1",
                "`timestamp` is outside the years 0001 to 9999",
            ],
        ),
    ];
    for (content_type, body, expected) in cases {
        let error = post(&app, content_type, body).await.error(400);
        assert_eq!(error.error, "invalid_request");
        for text in expected {
            assert!(
                error.error_description.contains(text),
                "{}",
                error.error_description
            );
        }
        assert!(error.error_description.contains("Nothing was stored"));
        assert_eq!(count(&app).await, 1, "{content_type}: the database changed");
    }
}

#[actix_web::test]
async fn retries_are_skipped_by_event_id() {
    let app = spawn_app().await;
    let body = (0..50)
        .map(|i| {
            object(
                &format!("2021-04-10T00:00:{i:02}Z"),
                &format!("u{i}"),
                Some(&format!("r-{i}")),
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let first = post(&app, NDJSON, body.clone()).await.summary();
    assert_eq!(
        (first.received, first.inserted, first.duplicates),
        (50, 50, 0)
    );
    let retry = post(&app, NDJSON, body).await.summary();
    assert_eq!(
        (retry.received, retry.inserted, retry.duplicates),
        (50, 0, 50)
    );
    assert_eq!(count(&app).await, 50);
    // Events without an ID are never deduplicated.
    let anonymous = object("2021-04-10T00:00:00Z", "u", None);
    let twice = format!("{anonymous}\n{anonymous}\n");
    assert_eq!(
        post(&app, NDJSON, twice.clone()).await.summary().inserted,
        2
    );
    assert_eq!(post(&app, NDJSON, twice).await.summary().inserted, 2);
    assert_eq!(count(&app).await, 54);
}

#[actix_web::test]
async fn repeated_event_ids_in_one_request_keep_the_first() {
    let app = spawn_app().await;
    let body = format!(
        "[{},{},{},{}]",
        object("2021-04-10T00:00:05Z", "first", Some("same")),
        object("2021-04-10T00:00:01Z", "second", Some("same")),
        object("2021-04-10T00:00:02Z", "other", Some("other")),
        object("2021-04-10T00:00:03Z", "third", Some("same")),
    );
    let summary = post(&app, JSON, body).await.summary();
    assert_eq!(
        (summary.received, summary.inserted, summary.duplicates),
        (4, 2, 2)
    );
    let rows = stored(&app).await;
    // Inserted in time order; "same" is the first occurrence's content.
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].4.as_str(), rows[0].5.as_deref()),
        ("other", Some("other"))
    );
    assert_eq!(
        (rows[1].4.as_str(), rows[1].0),
        ("first", at("2021-04-10T00:00:05Z"))
    );

    // A body in time order takes the path without the window function.
    let body = format!(
        "{}\n{}\n{}\n",
        object("2021-04-10T01:00:00Z", "first", Some("ordered")),
        object("2021-04-10T01:00:00Z", "second", Some("ordered")),
        object("2021-04-10T01:00:01Z", "third", Some("ordered")),
    );
    let summary = post(&app, NDJSON, body).await.summary();
    assert_eq!(
        (summary.received, summary.inserted, summary.duplicates),
        (3, 1, 2)
    );
    let rows = stored(&app).await;
    assert_eq!(
        (rows[2].4.as_str(), rows[2].5.as_deref()),
        ("first", Some("ordered"))
    );
}

#[actix_web::test]
async fn authentication_and_scope() {
    let app = spawn_app().await;
    let body = object("2021-04-10T00:00:01Z", "u", None);

    let missing = post_as(&app, None, Some(NDJSON), body.clone()).await;
    assert_eq!(missing.error(401).error, "invalid_token");
    assert!(missing
        .header(header::WWW_AUTHENTICATE)
        .starts_with("Bearer"));

    let unknown = post_as(&app, Some("nope"), Some(NDJSON), body.clone()).await;
    assert_eq!(unknown.error(401).error, "invalid_token");

    let read_only = post_as(&app, Some(TOKEN), Some(NDJSON), body.clone()).await;
    assert_eq!(read_only.error(403).error, "insufficient_scope");
    assert!(read_only
        .header(header::WWW_AUTHENTICATE)
        .contains(r#"error="insufficient_scope""#));
    assert_eq!(count(&app).await, 0);

    // The write token can also read.
    let mut response = app
        .client()
        .get(format!(
            "{}/api/v1/statistics/events/day/2021-04-10",
            app.address
        ))
        .insert_header((header::AUTHORIZATION, format!("Bearer {WRITE_TOKEN}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    let _ = body_of(&mut response).await;
}

#[actix_web::test]
async fn unsupported_media_types_and_methods() {
    let app = spawn_app().await;
    let body = object("2021-04-10T00:00:01Z", "u", None);
    for content_type in [Some("text/plain"), Some("application/xml"), None] {
        let answer = post_as(&app, Some(WRITE_TOKEN), content_type, body.clone()).await;
        let error = answer.error(415);
        assert_eq!(error.error, "unsupported_media_type");
        for listed in [NDJSON, JSON, CSV] {
            assert!(
                error.error_description.contains(listed),
                "{}",
                error.error_description
            );
        }
    }
    let mut response = app
        .client()
        .get(format!("{}{INGEST}", app.address))
        .insert_header((header::AUTHORIZATION, format!("Bearer {WRITE_TOKEN}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers().get(header::ALLOW).unwrap(),
        "POST, OPTIONS"
    );
    let error: ErrorResponse = serde_json::from_slice(&body_of(&mut response).await).unwrap();
    assert_eq!(error.error, "method_not_allowed");
    assert_eq!(count(&app).await, 0);
}

#[actix_web::test]
async fn empty_bodies() {
    let app = spawn_app().await;
    let empty = post(&app, NDJSON, "").await.summary();
    assert_eq!(
        (empty.received, empty.inserted, empty.duplicates),
        (0, 0, 0)
    );
    assert!(post(&app, JSON, "")
        .await
        .error(400)
        .error_description
        .contains("empty"));
    assert!(post(&app, CSV, "")
        .await
        .error(400)
        .error_description
        .contains("header"));
    let header_only = "timestamp,authMethodType,authMethodName,authRequestOrigin,userId\r\n";
    assert_eq!(post(&app, CSV, header_only).await.summary().received, 0);
}

fn small_limit_app() -> AppOptions {
    AppOptions {
        http: HttpOptions {
            ingest: IngestOptions {
                max_body_bytes: 1_000,
            },
            ..HttpOptions::default()
        },
        ..AppOptions::default()
    }
}

#[actix_web::test]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_app_with(small_limit_app()).await;
    let lines: Vec<String> = (0..30)
        .map(|i| object(&format!("2021-04-10T00:00:{i:02}Z"), "u", None))
        .collect();
    let body = lines.join("\n");
    assert!(body.len() > 1_000);

    // Declared by Content-Length: refused before reading.
    let declared = post(&app, NDJSON, body.clone()).await;
    let error = declared.error(413);
    assert_eq!(error.error, "payload_too_large");
    assert!(
        error.error_description.contains("1000 bytes"),
        "{}",
        error.error_description
    );

    // Chunked, without a length: counted while streaming.
    let chunks: Vec<Result<Bytes, std::io::Error>> = lines
        .iter()
        .map(|l| Ok(Bytes::from(format!("{l}\n"))))
        .collect();
    let mut response = app
        .client()
        .post(format!("{}{INGEST}", app.address))
        .insert_header((header::AUTHORIZATION, format!("Bearer {WRITE_TOKEN}")))
        .insert_header((header::CONTENT_TYPE, NDJSON))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .expect("POST");
    assert_eq!(response.status(), 413);
    let error: ErrorResponse = serde_json::from_slice(&body_of(&mut response).await).unwrap();
    assert_eq!(error.error, "payload_too_large");
    assert_eq!(count(&app).await, 0);

    // At the limit is fine.
    let fits = lines[..4].join("\n");
    assert!(fits.len() <= 1_000);
    assert_eq!(post(&app, NDJSON, fits).await.summary().inserted, 4);
}

/// The events of batch `k`: IDs `50k .. 50k+100`, so neighbouring batches
/// overlap by half. An ID always has the same content.
fn overlapping_batch(k: u64) -> String {
    (k * 50..k * 50 + 100)
        .map(|id| {
            let ts = DateTime::from_timestamp(1_618_012_800 + id as i64, 0).unwrap();
            object(
                &ts.to_rfc3339(),
                &format!("user{}", id % 97),
                Some(&format!("ev-{id}")),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[actix_web::test]
async fn concurrent_clients_store_every_event_exactly_once() {
    const CLIENTS: u64 = 8;
    const BATCHES: u64 = 10;
    let app = spawn_app_with(AppOptions {
        pool_size: 8,
        ..AppOptions::default()
    })
    .await;
    let clients = (0..CLIENTS).map(|c| {
        let app = &app;
        async move {
            let mut inserted = 0;
            let mut received = 0;
            for b in 0..BATCHES {
                // Interleave so that clients race on the same IDs.
                let body = overlapping_batch(b * CLIENTS + c);
                let mut attempts = 0;
                loop {
                    let answer = post(app, NDJSON, body.clone()).await;
                    if answer.status == 503 && attempts < 20 {
                        attempts += 1;
                        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    let summary = answer.summary();
                    inserted += summary.inserted;
                    received += summary.received;
                    break;
                }
            }
            (received, inserted)
        }
    });
    let results = futures_util::future::join_all(clients).await;
    let received: u64 = results.iter().map(|r| r.0).sum();
    let inserted: u64 = results.iter().map(|r| r.1).sum();
    let distinct = (CLIENTS * BATCHES - 1) * 50 + 100;
    assert_eq!(received, CLIENTS * BATCHES * 100);
    assert_eq!(inserted, distinct);
    let row = app
        .db
        .query_one(
            "SELECT count(*), count(DISTINCT event_id) FROM auth_event",
            &[],
        )
        .await
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
        .expect("count");
    assert_eq!(row, (distinct as i64, distinct as i64));
}

#[actix_web::test]
async fn a_large_body_is_streamed() {
    const EVENTS: usize = 200_000;
    const PER_CHUNK: usize = 1_000;
    let app = spawn_app().await;
    let chunks = (0..EVENTS / PER_CHUNK).map(|c| {
        let mut chunk = String::with_capacity(PER_CHUNK * 200);
        for i in c * PER_CHUNK..(c + 1) * PER_CHUNK {
            let ts = DateTime::from_timestamp_micros(1_618_012_800_000_000 + i as i64 * 1_000)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ");
            chunk.push_str(&format!(
                r#"{{"timestamp":"{ts}","authMethodType":"PASSWORD","authMethodName":"password.1","authRequestOrigin":"CN=Appl-{},DC=test","userId":"user{}@example.com","eventId":"big-{i}"}}"#,
                i % 50,
                i % 997
            ));
            chunk.push('\n');
        }
        Ok::<_, std::io::Error>(Bytes::from(chunk))
    });
    let mut response = app
        .client()
        .post(format!("{}{INGEST}", app.address))
        .timeout(Duration::from_secs(300))
        .insert_header((header::AUTHORIZATION, format!("Bearer {WRITE_TOKEN}")))
        .insert_header((header::CONTENT_TYPE, NDJSON))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    let summary: IngestResponse = serde_json::from_slice(&body_of(&mut response).await).unwrap();
    assert_eq!(summary.received, EVENTS as u64);
    assert_eq!(summary.inserted, EVENTS as u64);
    let row = app
        .db
        .query_one(
            "SELECT count(*), count(DISTINCT event_id), min(occurred_at), max(occurred_at) FROM auth_event",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), EVENTS as i64);
    assert_eq!(row.get::<_, i64>(1), EVENTS as i64);
    assert_eq!(row.get::<_, DateTime<Utc>>(2), at("2021-04-10T00:00:00Z"));
    assert_eq!(
        row.get::<_, DateTime<Utc>>(3),
        at("2021-04-10T00:00:00Z") + chrono::Duration::milliseconds(EVENTS as i64 - 1)
    );
}

/// `data` as a gzip member of stored (uncompressed) deflate blocks, which
/// every gzip decoder reads; enough to test decoding without a compressor.
pub(crate) fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let crc = data.iter().fold(!0u32, |mut crc, &byte| {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
        crc
    }) ^ !0u32;
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    if blocks.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[actix_web::test]
async fn compressed_bodies_are_decoded() {
    let app = spawn_app().await;
    let body = format!(
        "{}\n{}\n",
        object("2021-04-10T00:00:01Z", "gz-1", Some("gz-1")),
        object("2021-04-10T00:00:02Z", "gz-2", Some("gz-2")),
    );
    let send = |encoding: &'static str| {
        app.client()
            .post(format!("{}{INGEST}", app.address))
            .insert_header((header::AUTHORIZATION, format!("Bearer {WRITE_TOKEN}")))
            .insert_header((header::CONTENT_TYPE, NDJSON))
            .insert_header((header::CONTENT_ENCODING, encoding))
            .send_body(gzip_stored(body.as_bytes()))
    };
    let mut response = send("gzip").await.expect("POST");
    assert_eq!(response.status(), 200);
    let summary: IngestResponse =
        serde_json::from_slice(&body_of(&mut response).await).expect("JSON");
    assert_eq!(summary.inserted, 2);
    let users: Vec<String> = stored(&app).await.into_iter().map(|r| r.4).collect();
    assert_eq!(users, ["gz-1", "gz-2"]);

    // A retry is replayed from the spooled (decoded) body.
    let mut response = send("gzip").await.expect("POST");
    assert_eq!(response.status(), 200);
    let retry: IngestResponse =
        serde_json::from_slice(&body_of(&mut response).await).expect("JSON");
    assert_eq!((retry.inserted, retry.duplicates), (0, 2));

    let mut response = send("compress").await.expect("POST");
    assert_eq!(response.status(), 415);
    let error: ErrorResponse = serde_json::from_slice(&body_of(&mut response).await).unwrap();
    assert!(error.error_description.contains("Content-Encoding"));
    assert_eq!(count(&app).await, 2);
}

/// How many stored ingest requests took `path` (`copy` or `merge`), from
/// `/metrics`.
async fn requests_by_path(app: &TestApp, path: &str) -> u64 {
    let mut response = app
        .client()
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("GET /metrics");
    let text = String::from_utf8(body_of(&mut response).await).expect("UTF-8");
    let prefix = format!(r#"acctstream_ingest_requests_total{{path="{path}"}} "#);
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map_or(0, |value| value.trim().parse().expect("a counter value"))
}

/// NDJSON events `i` in `ids`, one second apart from 2021-04-10T00:00:00Z
/// on, with IDs `{prefix}{i}` and users `{user}{i}`.
fn batch(prefix: &str, user: &str, ids: std::ops::Range<u32>) -> String {
    ids.map(|i| {
        let ts = DateTime::from_timestamp(1_618_012_800 + i64::from(i), 0).unwrap();
        object(
            &ts.to_rfc3339(),
            &format!("{user}{i}"),
            Some(&format!("{prefix}{i}")),
        )
    })
    .collect::<Vec<_>>()
    .join("\n")
}

#[actix_web::test]
async fn a_fresh_batch_is_copied_and_its_retry_merged() {
    let app = spawn_app().await;
    let body = batch("p-", "u", 0..40);
    let first = post(&app, NDJSON, body.clone()).await.summary();
    assert_eq!(
        (first.received, first.inserted, first.duplicates),
        (40, 40, 0)
    );
    assert_eq!(requests_by_path(&app, "copy").await, 1);
    assert_eq!(requests_by_path(&app, "merge").await, 0);
    // The fast path inserts in body order.
    let rows = stored(&app).await;
    assert_eq!(rows.len(), 40);
    assert!(rows
        .iter()
        .enumerate()
        .all(|(i, r)| r.5.as_deref() == Some(format!("p-{i}").as_str())));

    // The retry fails on the unique key, rolls back and is replayed exactly.
    let retry = post(&app, NDJSON, body).await.summary();
    assert_eq!(
        (retry.received, retry.inserted, retry.duplicates),
        (40, 0, 40)
    );
    assert_eq!(requests_by_path(&app, "copy").await, 1);
    assert_eq!(requests_by_path(&app, "merge").await, 1);
    assert_eq!(stored(&app).await, rows);

    // Events without an ID never conflict: always the fast path.
    let anonymous = object("2021-04-10T00:00:00Z", "anon", None);
    let twice = format!("{anonymous}\n{anonymous}\n");
    assert_eq!(post(&app, NDJSON, twice).await.summary().inserted, 2);
    assert_eq!(requests_by_path(&app, "copy").await, 2);
}

#[actix_web::test]
async fn a_batch_mixing_new_and_stored_ids_gets_exact_counts() {
    let app = spawn_app().await;
    let stored_first = post(&app, NDJSON, batch("m-", "old", 0..10))
        .await
        .summary();
    assert_eq!(stored_first.inserted, 10);

    // IDs 5..20 as CSV (5..10 stored already at the same times, with other
    // content: a producer's retry), plus two events without an ID.
    let mut csv =
        String::from("timestamp,authMethodType,authMethodName,authRequestOrigin,userId,eventId\n");
    for i in 5..20 {
        csv.push_str(&format!(
            "2021-04-10T00:00:{i:02}Z,OTP,otp.1,o,new{i},m-{i}\n"
        ));
    }
    csv.push_str("2021-04-11T00:01:00Z,OTP,otp.1,o,nobody,\n");
    csv.push_str("2021-04-11T00:01:01Z,OTP,otp.1,o,nobody,\n");
    let mixed = post(&app, CSV, csv).await.summary();
    assert_eq!(
        (mixed.received, mixed.inserted, mixed.duplicates),
        (17, 12, 5)
    );
    assert_eq!(requests_by_path(&app, "merge").await, 1);

    let rows = stored(&app).await;
    assert_eq!(rows.len(), 22);
    let user_of = |id: &str| {
        rows.iter()
            .find(|r| r.5.as_deref() == Some(id))
            .map(|r| r.4.clone())
    };
    // The stored events keep their content; the new ones are in.
    assert_eq!(user_of("m-5").as_deref(), Some("old5"));
    assert_eq!(user_of("m-9").as_deref(), Some("old9"));
    assert_eq!(user_of("m-10").as_deref(), Some("new10"));
    assert_eq!(user_of("m-19").as_deref(), Some("new19"));
    assert_eq!(rows.iter().filter(|r| r.4 == "nobody").count(), 2);

    // The table is partitioned by time, and its key is the organization,
    // the eventId and the time (docs/ingest.md): a stored eventId sent
    // again with another time is another event.
    let later = object("2021-04-12T00:00:00Z", "later", Some("m-5"));
    let summary = post(&app, NDJSON, later).await.summary();
    assert_eq!((summary.inserted, summary.duplicates), (1, 0));
    let again = object("2021-04-12T00:00:00Z", "again", Some("m-5"));
    let summary = post(&app, NDJSON, again).await.summary();
    assert_eq!((summary.inserted, summary.duplicates), (0, 1));
}

#[actix_web::test]
async fn a_late_repeat_in_a_large_body_falls_back_and_keeps_the_first() {
    let app = spawn_app().await;
    // Over 256 KiB of events go to the COPY before the repeat is seen.
    let mut body = batch("big-", "u", 0..4_000);
    assert!(body.len() > 600_000);
    body.push('\n');
    body.push_str(&object("2021-04-10T00:00:00Z", "late", Some("big-7")));
    let summary = post(&app, NDJSON, body).await.summary();
    assert_eq!(
        (summary.received, summary.inserted, summary.duplicates),
        (4_001, 4_000, 1)
    );
    assert_eq!(requests_by_path(&app, "copy").await, 0);
    assert_eq!(requests_by_path(&app, "merge").await, 1);
    let row = app
        .db
        .query_one(
            "SELECT count(*), count(DISTINCT event_id), \
             (SELECT user_id FROM auth_event WHERE event_id = 'big-7') FROM auth_event",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 4_000);
    assert_eq!(row.get::<_, i64>(1), 4_000);
    assert_eq!(row.get::<_, String>(2), "u7");
}

#[actix_web::test]
async fn a_bad_record_late_in_a_large_body_stores_nothing() {
    let app = spawn_app().await;
    app.insert(&[event("2021-04-09T12:00:00Z", "existing")])
        .await;
    let good = batch("late-", "u", 0..3_000);
    let bad = object("2021-04-10T00:00:01Z", "", None);
    // On the fast path (COPY data already sent), after an in-request repeat
    // (found by the replay), and after an already stored ID.
    let repeat = object("2021-04-10T00:00:00Z", "r", Some("late-1"));
    for (body, line) in [
        (format!("{good}\n{bad}\n"), "Line 3001"),
        (format!("{good}\n{repeat}\n{bad}\n"), "Line 3002"),
    ] {
        let error = post(&app, NDJSON, body).await.error(400);
        assert!(
            error.error_description.contains(line) && error.error_description.contains("`userId`"),
            "{}",
            error.error_description
        );
        assert_eq!(count(&app).await, 1);
    }
    assert_eq!(
        post(&app, NDJSON, good.clone()).await.summary().inserted,
        3_000
    );
    let error = post(&app, NDJSON, format!("{good}\n{bad}\n"))
        .await
        .error(400);
    assert!(error.error_description.contains("Line 3001"));
    assert_eq!(count(&app).await, 3_001);
    assert_eq!(requests_by_path(&app, "copy").await, 1);
    assert_eq!(requests_by_path(&app, "merge").await, 0);
}

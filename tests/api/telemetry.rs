//! Request ids, the request log (and what never gets into it), and
//! compressed responses.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use actix_web::http::header;
use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{body_of, event, spawn_app, IDENTITIES_TOKEN, KEY, TOKEN, WRITE_TOKEN};

const DAY: &str = "/api/v1/statistics/events/day/2021-04-24";

#[actix_web::test]
async fn request_ids_are_echoed_or_generated_on_every_response() {
    let app = spawn_app().await;
    let client = app.client();

    // The client's own id comes back, on success and on errors alike.
    for (path, token, status) in [
        (DAY, Some(TOKEN), 200),
        (DAY, None, 401),
        ("/nowhere", None, 404),
        ("/healthz", None, 200),
    ] {
        let mut request = client
            .get(format!("{}{path}", app.address))
            .insert_header(("X-Request-Id", "client-id-42"));
        if let Some(token) = token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers().get("x-request-id").unwrap(),
            "client-id-42",
            "{path}"
        );
    }

    // Without one, or with an unusable one, a fresh id is generated.
    let mut seen = Vec::new();
    for client_id in [None, Some("x".repeat(129)), Some("has space".to_owned())] {
        let mut request = app.get(DAY);
        if let Some(id) = &client_id {
            request = request.insert_header(("X-Request-Id", id.as_str()));
        }
        let response = request.send().await.unwrap();
        let id = response
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        seen.push(id);
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "generated ids are unique");
}

/// Everything any test in this binary logs from now on (all threads).
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer({
                let sink = Arc::clone(&buffer);
                move || BufferWriter(Arc::clone(&sink))
            })
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global tracing subscriber in the test binary");
        buffer
    })
}

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs_now() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

#[actix_web::test]
async fn request_log_lines_carry_the_facts_but_never_a_user_id_or_a_token() {
    captured_logs();
    let app = spawn_app().await;
    let raw_users = [
        "raw-user-LOGCHECK-alice@example.test",
        "raw-user-LOGCHECK-bob@example.test",
        "raw-user-LOGCHECK-carol@example.test",
    ];
    app.insert(&[
        event("2021-04-24T10:00:00Z", raw_users[0]),
        event("2021-04-24T11:00:00Z", raw_users[1]),
        event("2021-04-24T12:00:00Z", raw_users[2]),
    ])
    .await;
    let wrong_token = "wrong-token-LOGCHECK-s3cr3t";

    // Streams in both formats, with distinctive request ids.
    for (id, accept) in [
        ("logcheck-json-1", "application/json"),
        ("logcheck-csv-1", "text/csv"),
    ] {
        let mut response = app
            .get(&format!("{DAY}?user={}", raw_users[0]))
            .insert_header(("Accept", accept))
            .insert_header(("X-Request-Id", id))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        body_of(&mut response).await;
    }
    // A wrong token, and a raw user id where a datetime belongs.
    let response = app
        .client()
        .get(format!("{}{DAY}", app.address))
        .insert_header(("Authorization", format!("Bearer {wrong_token}")))
        .insert_header(("X-Request-Id", "logcheck-401"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = app
        .get(&format!("/api/v1/statistics/events/day/{}", raw_users[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Ingest with raw user ids in the body: a valid and an invalid record.
    for body in [
        format!(
            r#"{{"timestamp":"2021-04-24T13:00:00Z","authMethodType":"PASSWORD","authMethodName":"password.1","authRequestOrigin":"app","userId":"{}"}}"#,
            raw_users[2]
        ),
        format!(r#"{{"timestamp":"nope","userId":"{}"}}"#, raw_users[0]),
    ] {
        let response = app
            .client()
            .post(format!("{}/api/v1/events", app.address))
            .insert_header(("Authorization", format!("Bearer {WRITE_TOKEN}")))
            .insert_header(("Content-Type", "application/x-ndjson"))
            .insert_header(("X-Request-Id", "logcheck-ingest"))
            .send_body(body + "\n")
            .await
            .unwrap();
        assert!(response.headers().contains_key("x-request-id"));
    }

    // Wi-Fi client events: raw MACs and IPs in ingest bodies (valid and
    // invalid), in paths and filters, with and without the identities scope.
    let mac = "de:ad:be:ef:42:42";
    let ip = "198.51.100.77";
    for body in [
        format!(
            r#"{{"timestamp":"2021-04-24T14:00:00Z","macAddress":"{mac}","eventType":"Failure","ip":"{ip}","ssid":"LOGCHECK-ssid"}}"#
        ),
        format!(
            r#"{{"timestamp":"2021-04-24T14:00:00Z","macAddress":"DE-AD-BE-EF-42-42","eventType":"Nope","ip":"{ip}"}}"#
        ),
    ] {
        let response = app
            .client()
            .post(format!("{}/api/v1/client-events", app.address))
            .insert_header(("Authorization", format!("Bearer {WRITE_TOKEN}")))
            .insert_header(("Content-Type", "application/x-ndjson"))
            .send_body(body + "\n")
            .await
            .unwrap();
        assert!(response.status() == 200 || response.status() == 400);
    }
    for (token, path) in [
        (TOKEN, format!("/api/v1/clients/{mac}/events")),
        (
            IDENTITIES_TOKEN,
            "/api/v1/clients/deadbeef4242/events".to_owned(),
        ),
        (
            IDENTITIES_TOKEN,
            "/api/v1/clients/00:00:00:00:00:01/events".to_owned(),
        ),
        (
            TOKEN,
            format!("/api/v1/statistics/client-events/day/2021-04-24?client={mac}"),
        ),
        (
            IDENTITIES_TOKEN,
            format!("/api/v1/statistics/client-events/day/2021-04-24?client={ip}&format=csv"),
        ),
    ] {
        let mut response = app.get_as(token, &path).send().await.unwrap();
        body_of(&mut response).await;
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = logs_now();
        if logs.contains("request_id=logcheck-401") && logs.contains("request_id=logcheck-csv-1") {
            break logs;
        }
        assert!(Instant::now() < deadline, "no request lines in:\n{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let line = |id: &str| {
        logs.lines()
            .find(|l| l.contains(&format!("request_id={id}")) && l.contains(" request "))
            .unwrap_or_else(|| panic!("no request line for {id}:\n{logs}"))
            .to_owned()
    };
    let json = line("logcheck-json-1");
    for fact in [
        "method=GET",
        "route=/api/v1/statistics/events/{period}/{datetime}",
        "status=200",
        "rows=3",
        "complete=true",
        "duration_ms=",
        "bytes=",
    ] {
        assert!(json.contains(fact), "{fact} missing from {json}");
    }
    assert!(line("logcheck-csv-1").contains("rows=3"));
    let unauthorized = line("logcheck-401");
    assert!(unauthorized.contains("status=401"), "{unauthorized}");
    assert!(
        !unauthorized.contains("rows="),
        "no stream, no rows: {unauthorized}"
    );

    for secret in raw_users
        .iter()
        .copied()
        .chain([
            TOKEN,
            WRITE_TOKEN,
            IDENTITIES_TOKEN,
            wrong_token,
            KEY,
            "LOGCHECK",
        ])
        .chain([mac, "DE-AD-BE-EF", "deadbeef4242", ip])
    {
        assert!(
            !logs.contains(secret),
            "{secret:?} appears in the logs:\n{}",
            logs.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[actix_web::test]
async fn responses_are_compressed_when_asked_and_decode_to_the_same_body() {
    let app = spawn_app().await;
    app.insert_many("2021-04-24T00:00:00Z", 2000).await;

    for accept in ["application/json", "text/csv"] {
        let mut plain = app
            .get(DAY)
            .insert_header(("Accept", accept))
            .insert_header(("Accept-Encoding", "identity"))
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status(), 200);
        assert!(!plain.headers().contains_key(header::CONTENT_ENCODING));
        let reference = body_of(&mut plain).await;
        assert!(reference.len() > 100_000, "{accept}: {}", reference.len());

        // br is too slow to stream with (`STREAMED_UNCOMPRESSED`): a client
        // offering only br gets the rows uncompressed, unless it refuses
        // that; then the compression layer's br.
        let mut unbrotlied = app
            .get(DAY)
            .insert_header(("Accept", accept))
            .insert_header(("Accept-Encoding", "br"))
            .no_decompress()
            .send()
            .await
            .unwrap();
        assert_eq!(unbrotlied.status(), 200);
        assert!(!unbrotlied.headers().contains_key(header::CONTENT_ENCODING));
        let vary: Vec<&str> = unbrotlied
            .headers()
            .get_all(header::VARY)
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            vary.iter().any(|v| v.contains("Accept-Encoding")),
            "{vary:?}"
        );
        assert!(
            body_of(&mut unbrotlied).await == reference,
            "{accept}: br offered"
        );
        let mut brotli_only = app
            .get(DAY)
            .insert_header(("Accept", accept))
            .insert_header(("Accept-Encoding", "br, identity;q=0"))
            .send()
            .await
            .unwrap();
        assert_eq!(brotli_only.status(), 200);
        assert_eq!(
            brotli_only.headers().get(header::CONTENT_ENCODING).unwrap(),
            "br"
        );
        assert!(
            body_of(&mut brotli_only).await == reference,
            "{accept}: br required"
        );

        for encoding in ["gzip", "zstd"] {
            let mut compressed = app
                .get(DAY)
                .insert_header(("Accept", accept))
                .insert_header(("Accept-Encoding", encoding))
                .send()
                .await
                .unwrap();
            assert_eq!(compressed.status(), 200);
            assert_eq!(
                compressed.headers().get(header::CONTENT_ENCODING).unwrap(),
                encoding,
                "{accept}"
            );
            assert_eq!(
                compressed.headers().get(header::TRANSFER_ENCODING).unwrap(),
                "chunked"
            );
            // awc decodes on the fly.
            let decoded = body_of(&mut compressed).await;
            assert!(decoded == reference, "{accept} via {encoding} differs");
        }
    }
    // The decoded JSON is the right document.
    let mut response = app
        .get(DAY)
        .insert_header(("Accept-Encoding", "gzip"))
        .send()
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&body_of(&mut response).await).unwrap();
    assert_eq!(json["events"].as_array().unwrap().len(), 2000);
}

#[actix_web::test]
async fn a_big_compressed_stream_starts_at_once_and_arrives_in_pieces() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", 300_000).await;
    let started = Instant::now();
    let mut response = app
        .get("/api/v1/statistics/events/hour/2021-04-10T00")
        .insert_header(("Accept", "text/csv"))
        .insert_header(("Accept-Encoding", "gzip"))
        .no_decompress()
        .send()
        .await
        .unwrap();
    let headers_after = started.elapsed();
    assert_eq!(
        response.headers().get(header::CONTENT_ENCODING).unwrap(),
        "gzip"
    );
    let mut first_chunk_after = None;
    let mut chunks = 0;
    let mut bytes = 0;
    while let Some(chunk) = response.next().await {
        let chunk = chunk.unwrap();
        first_chunk_after.get_or_insert_with(|| started.elapsed());
        chunks += 1;
        bytes += chunk.len();
    }
    let total = started.elapsed();
    let first = first_chunk_after.unwrap();
    eprintln!(
        "gzip CSV of 300000 rows: headers {headers_after:?}, first chunk {first:?}, \
         {chunks} chunks, {bytes} compressed bytes, all in {total:?}"
    );
    assert!(chunks > 10, "the compressed body came in {chunks} chunks");
    assert!(
        first < total / 4,
        "first chunk after {first:?} of {total:?}: the body was buffered"
    );
}
#[actix_web::test]
async fn compressed_streams_keep_the_mid_stream_failure_rules() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", 300_000).await;
    let big = "/api/v1/statistics/events/hour/2021-04-10T00";

    // CSV, gzip: cut off without the last chunk, never a clean end.
    let mut socket = app
        .open_raw(big, &[("Accept", "text/csv"), ("Accept-Encoding", "gzip")])
        .await;
    let mut received = crate::helpers::read_bytes(&mut socket, 64 * 1024).await;
    let head = String::from_utf8_lossy(&received[..1024]).to_ascii_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    app.terminate_event_query().await;
    socket.read_to_end(&mut received).await.unwrap();
    assert!(
        !received.ends_with(b"\r\n0\r\n\r\n"),
        "the compressed CSV body ended cleanly after a database failure"
    );

    // JSON, gzip: still a complete document that reports the failure.
    let mut response = app
        .get(big)
        .insert_header(("Accept-Encoding", "gzip"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get(header::CONTENT_ENCODING).unwrap(),
        "gzip"
    );
    let mut body = Vec::new();
    let first = response.next().await.unwrap().unwrap();
    body.extend_from_slice(&first);
    app.terminate_event_query().await;
    while let Some(chunk) = response.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    let json: Value = serde_json::from_slice(&body).expect("valid JSON to the end");
    assert_eq!(json["error"]["error"], "server_error", "{}", json["error"]);
    assert!(json["events"].as_array().unwrap().len() < 300_000);
}

#[actix_web::test]
async fn radius_dates_in_an_unreadable_zone_are_logged_once_per_nas_and_no_identity_is() {
    captured_logs();
    let app = spawn_app().await;
    let post = |body: String| {
        app.client()
            .post(format!("{}/api/v1/accounting/radius", app.address))
            .insert_header(("Authorization", format!("Bearer {WRITE_TOKEN}")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body)
    };
    for (nas, session) in [
        ("10.77.0.1", "Z1"),
        ("10.77.0.1", "Z2"),
        ("10.77.0.2", "Z3"),
    ] {
        let body = serde_json::json!({
            "Acct-Status-Type": {"type": "integer", "value": ["Start"]},
            "Acct-Session-Id": {"type": "string", "value": [session]},
            "User-Name": {"type": "string", "value": ["raw-user-RADIUSLOG@example.test"]},
            "NAS-IP-Address": {"type": "ipaddr", "value": [nas]},
            "Event-Timestamp": {"type": "date", "value": ["Nov 25 2026 17:40:00 CST"]},
        });
        let response = post(body.to_string()).await.unwrap();
        assert_eq!(response.status(), 204);
    }
    // A request that cannot be used is quarantined: its reason is logged,
    // its identities are not.
    let response = post(
        serde_json::json!({"Acct-Status-Type": "Start", "User-Name": "raw-user-RADIUSLOG@example.test"})
            .to_string(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.headers().contains_key("acctstream-quarantined"));
    let logs = logs_now();
    let warnings = |nas: &str| {
        logs.lines()
            .filter(|l| l.contains("ambiguous or unknown time zone") && l.contains(nas))
            .count()
    };
    assert_eq!(warnings("10.77.0.1"), 1, "{logs}");
    assert_eq!(warnings("10.77.0.2"), 1, "{logs}");
    assert!(logs.contains("RADIUS request quarantined"));
    assert!(
        !logs.contains("raw-user-RADIUSLOG"),
        "a raw user name reached the log"
    );
}

#[actix_web::test]
async fn the_fastest_coding_the_client_accepts_is_used() {
    let app = spawn_app().await;
    app.insert(&[event("2021-04-24T10:00:00Z", "alice")]).await;
    for (offered, expected) in [
        ("gzip, deflate, br, zstd", Some("zstd")),
        ("deflate, gzip, br", Some("gzip")),
        ("br", None),
        ("zstd;q=0, br, gzip;q=0.5", Some("gzip")),
        ("identity", None),
    ] {
        let mut response = app
            .get(DAY)
            .insert_header(("Accept-Encoding", offered))
            .no_decompress()
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{offered}");
        let coding = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(coding.as_deref(), expected, "{offered}");
        body_of(&mut response).await;
    }
    // Responses that are not streamed records keep br.
    let response = app
        .get("/openapi.yaml")
        .insert_header(("Accept-Encoding", "br"))
        .no_decompress()
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get(header::CONTENT_ENCODING).unwrap(),
        "br"
    );
}

//! Streaming behaviour: failures after the first byte, client disconnects.

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::helpers::{body_of, eventually, read_bytes, spawn_app};

const ROWS: i64 = 300_000;
/// 300,000 events one millisecond apart fill five minutes of 2021-04-10.
const BIG_WINDOW: &str = "/api/v1/statistics/events/hour/2021-04-10T00";

#[actix_web::test]
async fn json_stays_valid_and_reports_a_database_failure_in_band() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", ROWS).await;
    let mut response = app.get(BIG_WINDOW).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response
        .next()
        .await
        .expect("a first chunk")
        .expect("chunk")
        .to_vec();
    app.terminate_event_query().await;
    while let Some(chunk) = response.next().await {
        body.extend_from_slice(&chunk.expect("JSON ends cleanly, in band"));
    }
    let json: Value = serde_json::from_slice(&body).expect("the body is still valid JSON");
    assert_eq!(json["error"]["error"], "server_error");
    assert!(json["error"]["error_description"].as_str().unwrap().len() > 10);
    let events = json["events"].as_array().unwrap().len() as i64;
    assert!(
        events < ROWS,
        "the failure cut the list short ({events} events)"
    );

    // The app recovers: the broken connection was discarded.
    let mut again = app
        .get("/api/v1/statistics/events/minute/2021-04-10T00:00")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let json: Value = serde_json::from_slice(&body_of(&mut again).await).unwrap();
    assert_eq!(json["events"].as_array().unwrap().len(), 60_000);
}

#[actix_web::test]
async fn csv_is_truncated_when_the_database_fails() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", ROWS).await;
    let mut socket = app.open_raw(BIG_WINDOW, &[("Accept", "text/csv")]).await;
    let mut received = read_bytes(&mut socket, 64 * 1024).await;
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(contains(&received, b"transfer-encoding: chunked\r\n"));
    app.terminate_event_query().await;
    socket
        .read_to_end(&mut received)
        .await
        .expect("read until the server closes");
    // A clean end of a chunked body is the zero-length last chunk.
    assert!(
        !received.ends_with(b"\r\n0\r\n\r\n"),
        "the CSV body ended cleanly after a database failure"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[actix_web::test]
async fn client_disconnect_cancels_the_query_and_frees_the_connection() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", ROWS).await;
    let socket = {
        let mut socket = app.open_raw(BIG_WINDOW, &[("Accept", "text/csv")]).await;
        let head = read_bytes(&mut socket, 64 * 1024).await;
        assert!(head.starts_with(b"HTTP/1.1 200 OK"));
        socket
    };
    // The server is now blocked on the client: the query is still running.
    assert_eq!(app.running_event_queries().await, 1);
    drop(socket);

    eventually("the cancelled query is gone", || async {
        app.running_event_queries().await == 0
    })
    .await;
    eventually("every connection is back in the pool", || async {
        let status = app.pool.status();
        status.available == status.size
    })
    .await;
    // And the pooled connection still works.
    let mut again = app
        .get("/api/v1/statistics/events/minute/2021-04-10T00:01")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let json: Value = serde_json::from_slice(&body_of(&mut again).await).unwrap();
    assert_eq!(json["events"].as_array().unwrap().len(), 60_000);
}

/// Issue 11, item 2: a slow reader that leaves (a graceful close, nothing
/// left unread, so a FIN rather than a reset) frees its database backend
/// within a second: the query is cancelled and the connection is back in
/// the pool (measured with `pg_stat_activity`).
#[actix_web::test]
async fn a_slow_reader_that_leaves_frees_its_backend_within_a_second() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", ROWS).await;
    for encoding in ["identity", "gzip"] {
        let mut socket = app
            .open_raw(
                BIG_WINDOW,
                &[("Accept", "text/csv"), ("Accept-Encoding", encoding)],
            )
            .await;
        // Read slowly for a while: the server blocks on us, the query waits.
        let mut buffer = vec![0u8; 4096];
        for _ in 0..20 {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0);
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(app.running_event_queries().await, 1, "{encoding}");
        // Then drain what has arrived and leave.
        let mut big = vec![0u8; 1 << 20];
        while let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(20), socket.read(&mut big)).await
        {
            if n == 0 {
                break;
            }
        }
        let left = std::time::Instant::now();
        drop(socket);
        eventually("the query is cancelled", || async {
            app.running_event_queries().await == 0
        })
        .await;
        eventually("the connection is back in the pool", || async {
            let status = app.pool.status();
            status.available == status.size
        })
        .await;
        let took = left.elapsed();
        assert!(
            took < std::time::Duration::from_secs(1),
            "{encoding}: the backend was busy {took:?} after the client left"
        );
    }
}

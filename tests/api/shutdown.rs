//! Graceful shutdown of the binary: SIGTERM stops new connections while an
//! in-flight stream runs to its end; logs are JSON lines when asked.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::helpers::{database_url, spawn_app, KEY, TOKEN};

const ROWS: i64 = 200_000;

/// Reads one HTTP/1.1 response with a chunked body; returns the head and
/// the de-chunked body. Panics on a body that is cut off.
fn read_chunked(reader: &mut impl BufRead) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "no response head");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        assert!(
            reader.read_line(&mut size).unwrap() > 0,
            "the body was cut off after {} bytes",
            body.len()
        );
        let size = usize::from_str_radix(size.trim_end(), 16).unwrap();
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).unwrap();
        assert_eq!(&chunk[size..], b"\r\n");
        if size == 0 {
            return (head, body);
        }
        body.extend_from_slice(&chunk[..size]);
        // A slow client: the server must wait for us.
        if body.len() % (1024 * 1024) < size {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[actix_web::test]
async fn sigterm_lets_the_inflight_stream_finish_and_refuses_new_connections() {
    let app = spawn_app().await;
    app.insert_many("2021-04-24T00:00:00Z", ROWS).await;
    let url = database_url(&app.db_name);

    let mut child = Command::new(env!("CARGO_BIN_EXE_acctstream"))
        .arg("serve")
        .env_remove("ACCTSTREAM_PSEUDONYM_KEY_FILE")
        .env_remove("ACCTSTREAM_PUBLIC_URL")
        .env_remove("ACCTSTREAM_METRICS_TOKEN")
        .env("DATABASE_URL", &url)
        .env("ACCTSTREAM_BIND", "127.0.0.1:0")
        .env("ACCTSTREAM_PSEUDONYM_KEY", KEY)
        .env("ACCTSTREAM_API_TOKENS", TOKEN)
        .env("ACCTSTREAM_SHUTDOWN_GRACE_SECONDS", "60")
        .env("ACCTSTREAM_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        assert!(Instant::now() < deadline, "serve did not start listening");
        let line = lines.next().expect("serve exited early").unwrap();
        let record: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if record["message"] == "listening" {
            break record["address"].as_str().unwrap().to_owned();
        }
    };
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let outcome = tokio::task::spawn_blocking(move || {
        let mut socket = TcpStream::connect(&address).unwrap();
        write!(
            socket,
            "GET /api/v1/statistics/events/day/2021-04-24 HTTP/1.1\r\nHost: {address}\r\n\
             Authorization: Bearer {TOKEN}\r\nX-Request-Id: shutdown-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::with_capacity(16 * 1024, socket);
        // Wait for the head: the stream is now in flight.
        assert!(!reader.fill_buf().unwrap().is_empty());
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);

        // New connections are refused once the listener is closed.
        let refused_by = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(&address) {
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                    break;
                }
                Ok(_) => {
                    assert!(Instant::now() < refused_by, "still accepting connections");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let (head, body) = read_chunked(&mut reader);
        (child, head, body)
    })
    .await
    .unwrap();
    let (mut child, head, body) = outcome;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let json: Value = serde_json::from_slice(&body).expect("complete JSON to the end");
    assert!(
        json.get("error").is_none(),
        "the stream failed: {}",
        json["error"]
    );
    assert_eq!(json["events"].as_array().unwrap().len(), ROWS as usize);

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "serve exited with {status:?}");

    // The request's JSON log line, written when the stream ended.
    let logs = drain.join().unwrap();
    let records: Vec<Value> = logs
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let request = records
        .iter()
        .find(|r| r["message"] == "request" && r["request_id"] == "shutdown-stream")
        .unwrap_or_else(|| panic!("no request line in {logs:#?}"));
    assert_eq!(request["status"], 200);
    assert_eq!(request["rows"], ROWS);
    assert_eq!(request["complete"], true);
    assert_eq!(
        request["route"],
        "/api/v1/statistics/events/{period}/{datetime}"
    );
    assert!(request["bytes"].as_u64().unwrap() >= body.len() as u64);
    assert!(records.iter().any(|r| r["signal"] == "SIGTERM"));
    let all = logs.join("\n");
    for secret in [TOKEN, KEY, "@example.com"] {
        assert!(!all.contains(secret), "{secret} in the logs");
    }
}

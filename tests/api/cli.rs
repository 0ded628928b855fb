//! The binary itself: configuration refusals, `--help`, and `serve` with an
//! embedded PostgreSQL from start to SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_acctstream");

fn acctstream() -> Command {
    let mut command = Command::new(BIN);
    for var in [
        "DATABASE_URL",
        "ACCTSTREAM_PSEUDONYM_KEY",
        "ACCTSTREAM_PSEUDONYM_KEY_FILE",
        "ACCTSTREAM_API_TOKENS",
        "ACCTSTREAM_DATA_DIR",
        "ACCTSTREAM_BIND",
        "ACCTSTREAM_PUBLIC_URL",
    ] {
        command.env_remove(var);
    }
    command
}

#[test]
fn help_lists_every_subcommand() {
    let output = acctstream().arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for word in [
        "serve",
        "migrate",
        "demo",
        "seed",
        "--data-dir",
        "DATABASE_URL",
    ] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
}

#[test]
fn serve_refuses_to_start_without_a_key_or_tokens() {
    let output = acctstream().arg("serve").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("ACCTSTREAM_PSEUDONYM_KEY"), "{stderr}");

    let output = acctstream()
        .arg("serve")
        .env("ACCTSTREAM_PSEUDONYM_KEY", "k")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("ACCTSTREAM_API_TOKENS"), "{stderr}");
}

/// A replica setting that cannot work stops `serve` at start, naming it.
#[actix_web::test]
async fn serve_refuses_replica_settings_it_cannot_use() {
    let (name, _) = crate::helpers::fresh_database().await;
    let url = crate::helpers::database_url(&name);
    for (variable, value, says) in [
        (
            "ACCTSTREAM_MAX_REPLICA_LAG",
            "fast",
            "ACCTSTREAM_MAX_REPLICA_LAG",
        ),
        (
            "ACCTSTREAM_MAX_REPLICA_LAG",
            "25h",
            "ACCTSTREAM_MAX_REPLICA_LAG",
        ),
        (
            "ACCTSTREAM_READ_DATABASE_URL",
            "postgresql:///acct",
            "names no host",
        ),
        (
            "ACCTSTREAM_READ_DATABASE_URL",
            "postgresql://r1/acct?sslmode=sometimes",
            "ACCTSTREAM_READ_DATABASE_URL",
        ),
    ] {
        let output = acctstream()
            .arg("serve")
            .env("DATABASE_URL", &url)
            .env("ACCTSTREAM_PSEUDONYM_KEY", "k")
            .env("ACCTSTREAM_API_TOKENS", "cli-token")
            .env("ACCTSTREAM_BIND", "127.0.0.1:0")
            .env(variable, value)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{variable}={value} started");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(says), "{variable}={value}: {stderr}");
    }
}

#[test]
fn serve_with_embedded_postgres_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::Builder::new()
        .prefix("acctstream-cli-")
        .tempdir_in("/tmp")
        .unwrap();
    let (mut child, address, drain) = spawn_serve(dir.path());

    let response = http_get(
        &address,
        "/api/v1/statistics/events/day/2021-04-24",
        "cli-token",
    );
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains(r#""events":[]"#), "{response}");

    let postmaster_pid = dir.path().join("pgdata/postmaster.pid");
    assert!(
        postmaster_pid.exists(),
        "the embedded cluster runs under the data dir"
    );
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_with_timeout(&mut child, Duration::from_secs(60));
    assert!(status.success(), "serve exited with {status:?}");
    assert!(
        !postmaster_pid.exists(),
        "the embedded PostgreSQL was not stopped cleanly"
    );
    let log = drain.join().unwrap().join("\n");
    assert!(log.contains("embedded PostgreSQL stopped"), "{log}");
}

/// Starts `acctstream serve` on an embedded cluster in `data_dir` (port 0),
/// waits until it listens, and returns it with its address and a thread
/// draining its log (so it never blocks on a full pipe).
fn spawn_serve(
    data_dir: &std::path::Path,
) -> (
    std::process::Child,
    String,
    std::thread::JoinHandle<Vec<String>>,
) {
    let mut child = acctstream()
        .arg("serve")
        .env("ACCTSTREAM_DATA_DIR", data_dir)
        .env("ACCTSTREAM_BIND", "127.0.0.1:0")
        .env("ACCTSTREAM_PSEUDONYM_KEY", "cli-key")
        .env("ACCTSTREAM_API_TOKENS", "cli-token")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (address, drain) = wait_listening(&mut child, Duration::from_secs(60));
    (child, address, drain)
}

/// Reads `child`'s log until it says it listens: its address, and a thread
/// draining the rest (so it never blocks on a full pipe).
fn wait_listening(
    child: &mut std::process::Child,
    within: Duration,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + within;
    let address = loop {
        assert!(
            Instant::now() < deadline,
            "the server did not start listening"
        );
        let line = lines.next().expect("the server exited early").unwrap();
        if let Some(rest) = line
            .split("address=")
            .nth(1)
            .filter(|_| line.contains("listening"))
        {
            break rest.trim().to_owned();
        }
    };
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    (address, drain)
}

fn http_get(address: &str, path: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    response
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 11, item 13: in a root shell under a directory PostgreSQL's user
/// cannot enter (a clone under /root, mode 700), the embedded cluster is kept
/// in `/var/tmp/acctstream-<hash>` instead, and the log says where. As
/// another user, PostgreSQL runs as that user and the data directory serves.
#[test]
fn an_unreachable_data_dir_keeps_the_cluster_elsewhere() {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::temp_dir().join(format!("acctstream-private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let canonical = std::fs::canonicalize(&data).unwrap();
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let name: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let fallback = std::path::Path::new("/var/tmp").join(format!("acctstream-{name}"));
    let _ = std::fs::remove_dir_all(&fallback);

    let output = acctstream()
        .arg("migrate")
        .env("ACCTSTREAM_DATA_DIR", &data)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let root = unsafe { libc::geteuid() } == 0;
    let result = std::panic::catch_unwind(|| {
        assert!(output.status.success(), "{stderr}");
        if root {
            assert!(
                stderr.contains("cannot enter the data directory")
                    && stderr.contains(&fallback.display().to_string()),
                "{stderr}"
            );
            assert!(fallback.join("pgdata/PG_VERSION").is_file());
        } else {
            assert!(data.join("pgdata/PG_VERSION").is_file(), "{stderr}");
        }
    });
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_dir_all(&fallback);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Issue 11, item 11: admin commands beside a running server find and use
/// the embedded cluster it runs, rather than failing on its lock.
#[test]
fn admin_commands_use_the_cluster_of_a_running_server() {
    let dir = tempfile::Builder::new()
        .prefix("acctstream-cli-")
        .tempdir_in("/tmp")
        .unwrap();
    let (mut child, _address, drain) = spawn_serve(dir.path());

    let run = |args: &[&str]| {
        acctstream()
            .args(args)
            .env("ACCTSTREAM_DATA_DIR", dir.path())
            // The server's key: purge rolls events up with it first.
            .env("ACCTSTREAM_PSEUDONYM_KEY", "cli-key")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let migrate = run(&["migrate"]);
    let purge = run(&["purge", "--dry-run"]);
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_with_timeout(&mut child, Duration::from_secs(60));
    drain.join().unwrap();
    assert!(status.success());
    for (name, output) in [("migrate", migrate), ("purge --dry-run", purge)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains("using the embedded PostgreSQL that another acctstream process runs"),
            "{name}: {stderr}"
        );
    }
}

/// Issue 22: `seed` takes counts per kind by the registry's names, writes
/// each kind's rows, brings the upkeep (the usage rollups) up to date, and
/// refuses an unknown kind or a kind that needs the key it lacks.
#[test]
fn seed_writes_the_kinds_it_is_given_by_name() {
    let dir = tempfile::Builder::new()
        .prefix("acctstream-cli-")
        .tempdir_in("/tmp")
        .unwrap();
    let seed = |args: &[&str], key: bool| {
        let mut command = acctstream();
        command
            .arg("seed")
            .args(args)
            .env("ACCTSTREAM_DATA_DIR", dir.path())
            .env("NO_COLOR", "1");
        if key {
            command.env("ACCTSTREAM_PSEUDONYM_KEY", "cli-key");
        }
        command.output().unwrap()
    };
    let unknown = seed(&["--rows", "gadgets=5"], true);
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success(), "{stderr}");
    assert!(
        stderr.contains("\"gadgets=5\"") && stderr.contains("events, client_events, sessions"),
        "{stderr}"
    );
    let malformed = seed(&["--rows", "events=many"], true);
    assert!(!malformed.status.success());
    let keyless = seed(&["--rows", "sessions=10", "--days", "1"], false);
    let stderr = String::from_utf8_lossy(&keyless.stderr);
    assert!(!keyless.status.success(), "{stderr}");
    assert!(stderr.contains("ACCTSTREAM_PSEUDONYM_KEY"), "{stderr}");

    let output = seed(
        &[
            "--rows",
            "client_events=600",
            "--rows",
            "events=3000",
            "--rows",
            "sessions=40",
            "--days",
            "2",
        ],
        true,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for line in [
        "events: 3000 rows inserted",
        "client_events: 600 rows inserted",
        "sessions: 40 rows inserted",
        "usage rollups brought up to date",
    ] {
        assert!(stderr.contains(line), "{line:?} missing:\n{stderr}");
    }
    // In registry order, whatever the order of the flags.
    let at = |text: &str| stderr.find(text).unwrap();
    assert!(at("events: 3000") < at("client_events: 600"), "{stderr}");

    // The rows are there to be served: yesterday's client events (a whole
    // day inside the two seeded).
    let (mut child, address, drain) = spawn_serve(dir.path());
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d");
    let response = http_get(
        &address,
        &format!("/api/v1/statistics/client-events/day/{yesterday}?format=ndjson"),
        "cli-token",
    );
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    wait_with_timeout(&mut child, Duration::from_secs(60));
    drain.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("\"eventType\""), "{response}");
}

/// Issue 10: `demo` runs a local OAuth2 issuer, and `acctstream token`
/// mints access tokens the demo accepts, scoped as asked.
#[test]
fn demo_accepts_tokens_from_its_local_issuer() {
    let dir = tempfile::Builder::new()
        .prefix("acctstream-issuer-")
        .tempdir_in("/tmp")
        .unwrap();
    let missing = acctstream()
        .args(["token", "--scope", "read"])
        .env("ACCTSTREAM_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("acctstream demo"), "{stderr}");

    let mut child = acctstream()
        .args(["demo", "--events", "2000"])
        .env("ACCTSTREAM_DATA_DIR", dir.path())
        .env("ACCTSTREAM_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (address, drain) = wait_listening(&mut child, Duration::from_secs(120));
    let mint = |scope: &str| {
        let output = acctstream()
            .args(["token", "--scope", scope])
            .env("ACCTSTREAM_DATA_DIR", dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let read = mint("read");
    assert_eq!(read.split('.').count(), 3, "{read}");
    let response = http_get(&address, "/api/v1/statistics/events/hour", &read);
    // Issue 28: the demo's three organizations. Each one's token counts
    // exactly what the operator counts narrowed to it, and together what
    // the operator counts, for every kind (sessions by their NAS's network).
    let secret = |name: &str| {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let operator = secret("api-token");
    let last_month = (chrono::Utc::now() - chrono::Duration::days(28)).format("%Y-%m");
    let count = |token: &str, kind: &str, query: &str| -> u64 {
        let response = http_get(
            &address,
            &format!("/api/v1/statistics/{kind}/counts/month/{last_month}{query}"),
            token,
        );
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let at = response.find("\"count\":").expect("a count") + 8;
        response[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    for kind in ["events", "client-events", "sessions"] {
        let total = count(&operator, kind, "");
        let mut sum = 0;
        for organization in ["acme", "globex", "initech"] {
            let own = count(&secret(&format!("api-token-{organization}")), kind, "");
            assert_eq!(
                own,
                count(&operator, kind, &format!("?tenant={organization}"))
            );
            assert!(own > 0, "{kind}: {organization} has none of {total}");
            sum += own;
        }
        assert_eq!(sum, total, "{kind}");
    }
    let audit_only = mint("audit");
    let refused = http_get(&address, "/api/v1/statistics/events/hour", &audit_only);
    let bad = acctstream()
        .args(["token", "--scope", "read+admin"])
        .env("ACCTSTREAM_DATA_DIR", dir.path())
        .output()
        .unwrap();
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_with_timeout(&mut child, Duration::from_secs(60));
    let log = drain.join().unwrap().join("\n");
    assert!(status.success(), "{log}");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused.contains(r#"scope="read""#), "{refused}");
    assert!(!bad.status.success());
    assert!(!log.contains(&read), "a token reached the log");
}

//! Issue 25: reads from a real streaming replica. The test starts its own
//! primary, copies it with `pg_basebackup -R` and starts the copy as a hot
//! standby: windows, histories and counts are read there (seen in the
//! replica's `pg_stat_activity` and in `/metrics`), writes never go there,
//! a replica that lags too much is skipped, and a stopped one sends reads
//! to the primary within the same request.

use std::{net::TcpListener, process::Command, time::Duration};

use acctstream::db::embedded::{
    find_binaries, test_cluster_dir, EmbeddedOptions, EmbeddedPostgres, SUPERUSER,
};
use chrono::Utc;

use crate::helpers::{
    body_of, connect, event, eventually, spawn_app_on, AppOptions, TestApp, TOKEN, WRITE_TOKEN,
};

const DB: &str = "acct";
const READER: &str = "acctstream-read";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A primary with the migrated database `acct`, and its streaming replica.
async fn primary_and_replica() -> (EmbeddedPostgres, EmbeddedPostgres) {
    let primary = EmbeddedPostgres::start(EmbeddedOptions {
        data_dir: test_cluster_dir().unwrap(),
        durable: false,
        tcp_port: Some(free_port()),
        settings: vec![],
    })
    .expect("start the primary");
    let admin = connect(&primary.pg_config("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .await
        .unwrap();
    let mut db = connect(&primary.pg_config(DB)).await;
    acctstream::db::migrate::run(&mut db, &acctstream::kinds::REGISTRY.kinds())
        .await
        .unwrap();

    // pg_basebackup -R, as the user PostgreSQL runs as, into a directory
    // that user owns.
    let replica_dir = test_cluster_dir().unwrap();
    let pgdata = replica_dir.join("pgdata");
    // Beside the server binaries (of the same version), links resolved.
    let initdb = find_binaries()
        .expect("the PostgreSQL server binaries (apt-get install postgresql)")
        .initdb;
    let basebackup = std::fs::canonicalize(&initdb)
        .unwrap_or(initdb)
        .with_file_name("pg_basebackup");
    assert!(
        basebackup.exists(),
        "{} is missing: apt-get install postgresql",
        basebackup.display()
    );
    let args = [
        "-D".to_owned(),
        pgdata.display().to_string(),
        "-R".into(),
        // A fast checkpoint: a spread one takes minutes.
        "-c".into(),
        "fast".into(),
        "-X".into(),
        "stream".into(),
        "-h".into(),
        primary.socket_dir().display().to_string(),
        "-p".into(),
        primary.port().to_string(),
        "-U".into(),
        SUPERUSER.into(),
    ];
    let status = if unsafe { libc::geteuid() } == 0 {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&basebackup)
            .args(&args)
            .status()
    } else {
        Command::new(&basebackup).args(&args).status()
    }
    .expect("run pg_basebackup");
    assert!(status.success(), "pg_basebackup -R failed");
    let replica = EmbeddedPostgres::start(EmbeddedOptions {
        data_dir: replica_dir,
        durable: false,
        tcp_port: Some(free_port()),
        settings: vec![("hot_standby".into(), "on".into())],
    })
    .expect("start the replica");
    (primary, replica)
}

async fn app_reading_from(
    primary: &EmbeddedPostgres,
    replica: &EmbeddedPostgres,
    max_lag: Duration,
) -> TestApp {
    let mut read = replica.pg_config(DB);
    read.application_name(READER);
    let options = AppOptions {
        read_database: Some(acctstream::app::ReadDatabase {
            config: read,
            tls: acctstream::db::tls::default_connector(),
            max_lag,
        }),
        ..AppOptions::default()
    };
    spawn_app_on(DB.into(), primary.pg_config(DB), options).await
}

/// The `/metrics` value of `name` with `server`, if shown.
async fn metric(app: &TestApp, name: &str, server: &str) -> Option<f64> {
    crate::ops::metrics(app)
        .await
        .get(&format!("{name}{{server=\"{server}\"}}"))
        .copied()
}

/// Rows of the day window of `day` in NDJSON.
async fn window_rows(app: &TestApp, day: &str) -> usize {
    let mut response = app
        .get_as(TOKEN, &format!("/api/v1/statistics/events/day/{day}"))
        .insert_header(("Accept", "application/x-ndjson"))
        .send()
        .await
        .unwrap();
    let body = body_of(&mut response).await;
    assert_eq!(response.status(), 200, "{}", String::from_utf8_lossy(&body));
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

#[actix_web::test]
async fn reads_go_to_a_streaming_replica_and_writes_never_do() {
    let (primary, replica) = primary_and_replica().await;
    let app = app_reading_from(&primary, &replica, Duration::from_secs(30)).await;
    let server = format!("{}:{}", replica.socket_dir().display(), replica.port());
    eventually("the replica to be usable", || async {
        metric(&app, "acctstream_replica_usable", &server).await == Some(1.0)
    })
    .await;
    assert_eq!(
        metric(&app, "acctstream_replica_lag_seconds", &server).await,
        Some(0.0)
    );

    let day = (Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    app.insert(&[
        event(&format!("{day}T08:00:00Z"), "alice"),
        event(&format!("{day}T09:00:00Z"), "bob"),
    ])
    .await;
    // At once: the window goes to the replica only once it has replayed
    // what the primary had when the window was asked for.
    assert_eq!(window_rows(&app, &day).await, 2);
    let standby = connect(&replica.pg_config(DB)).await;
    eventually("a window read on the replica", || async {
        window_rows(&app, &day).await == 2
            && metric(&app, "acctstream_reads_total", &server)
                .await
                .is_some_and(|n| n >= 1.0)
    })
    .await;
    // Our connections are in the replica's pg_stat_activity, and the
    // replica's own statistics count scans of the events' partitions (a
    // window's last statement is the end of its read-only transaction, so
    // the activity's query no longer names the table).
    let connected = standby
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&READER],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert!(connected >= 1, "no connection of ours on the replica");
    eventually("the replica counts scans of the events' table", || async {
        standby
            .query_one(
                "SELECT coalesce(sum(coalesce(idx_scan, 0) + coalesce(seq_scan, 0)), 0)::int8 \
                 FROM pg_stat_user_tables WHERE relname LIKE 'auth_event%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            >= 1
    })
    .await;
    let counts = app
        .get_as(
            TOKEN,
            &format!("/api/v1/statistics/events/counts/day/{day}?by=authMethodType"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(counts.status(), 200);

    // Writes go to the primary: an ingest is stored (the replica would
    // refuse it), and no statement of ours on the replica ever wrote.
    let mut response = app
        .client()
        .post(format!("{}/api/v1/events", app.address))
        .insert_header(("Authorization", format!("Bearer {WRITE_TOKEN}")))
        .insert_header(("Content-Type", "application/x-ndjson"))
        .send_body(format!(
            "{{\"timestamp\":\"{day}T10:00:00Z\",\"authMethodType\":\"PASSWORD\",\"authMethodName\":\"password.1\",\"authRequestOrigin\":\"CN=Mail\",\"userId\":\"carol\",\"eventId\":\"r-1\"}}\n"
        ))
        .await
        .unwrap();
    let body = body_of(&mut response).await;
    assert!(
        response.status().is_success(),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(window_rows(&app, &day).await, 3);
    let writes = standby
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND (query ILIKE '%insert%' OR query ILIKE '%copy%' OR query ILIKE '%update%' \
                  OR query ILIKE '%delete%')",
            &[&READER],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(writes, 0);

    // Stopped: the very next read is answered, from the primary.
    let before = metric(&app, "acctstream_reads_total", "primary")
        .await
        .unwrap_or(0.0);
    drop(standby);
    replica.stop().unwrap();
    assert_eq!(window_rows(&app, &day).await, 3);
    let after = metric(&app, "acctstream_reads_total", "primary")
        .await
        .unwrap_or(0.0);
    assert!(after > before, "{before} → {after}");
    assert_eq!(
        metric(&app, "acctstream_replica_usable", &server).await,
        Some(0.0)
    );
    drop(app);
    primary.stop().unwrap();
}

/// With one replica, two downloads at once go one to each server (the
/// least busy takes the next read), and each streams its whole window.
#[actix_web::test]
async fn two_concurrent_downloads_split_between_the_replica_and_the_primary() {
    use futures_util::StreamExt;
    let (primary, replica) = primary_and_replica().await;
    let app = app_reading_from(&primary, &replica, Duration::from_secs(30)).await;
    let server = format!("{}:{}", replica.socket_dir().display(), replica.port());
    let day = (Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    app.db
        .execute(
            "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id) \
             SELECT $1::date + i * interval '100 ms', 'PASSWORD', 'password.1', 'CN=Mail', \
             'user' || (i % 1000) FROM generate_series(1, 200000) i",
            &[&chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").unwrap()],
        )
        .await
        .unwrap();
    // A window goes to a replica that has replayed the primary's WAL up to
    // the moment of the read, and that the monitor found usable since (it
    // may have measured it while it replayed the load, and set it aside):
    // let the load's aftermath (autovacuum of the fresh rows writes WAL for
    // a while) be over and replayed first, then wait for the monitor.
    app.db
        .batch_execute("VACUUM (ANALYZE) auth_event")
        .await
        .unwrap();
    let standby = connect(&replica.pg_config(DB)).await;
    eventually("the replica to replay the primary's WAL", || async {
        let now: String = app
            .db
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        standby
            .query_one(
                "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                &[&now],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
    tokio::time::sleep(acctstream::db::replicas::MONITOR_INTERVAL * 2).await;
    eventually("the replica to be usable", || async {
        metric(&app, "acctstream_replica_usable", &server).await == Some(1.0)
    })
    .await;
    let reads = async |server: &str| {
        metric(&app, "acctstream_reads_total", server)
            .await
            .unwrap_or(0.0)
    };
    let (on_replica, on_primary) = (reads(&server).await, reads("primary").await);
    let open = async || {
        let mut response = app
            .get_as(TOKEN, &format!("/api/v1/statistics/events/day/{day}"))
            .insert_header(("Accept", "text/csv"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // The first bytes only: the rest waits (backpressure), and the
        // download holds its connection.
        let first = response.next().await.unwrap().unwrap();
        assert!(!first.is_empty());
        (response, first.iter().filter(|b| **b == b'\n').count())
    };
    let first = open().await;
    let second = open().await;
    assert_eq!(reads(&server).await - on_replica, 1.0, "one on the replica");
    assert_eq!(
        reads("primary").await - on_primary,
        1.0,
        "one on the primary"
    );
    for (mut download, mut lines) in [first, second] {
        while let Some(chunk) = download.next().await {
            lines += chunk.unwrap().iter().filter(|b| **b == b'\n').count();
        }
        assert_eq!(lines, 1 + 200_000, "the header and every row");
    }
    drop(app);
    replica.stop().unwrap();
    primary.stop().unwrap();
}

#[actix_web::test]
async fn a_replica_lagging_more_than_the_bound_is_skipped() {
    let (primary, replica) = primary_and_replica().await;
    let app = app_reading_from(&primary, &replica, Duration::from_secs(1)).await;
    let server = format!("{}:{}", replica.socket_dir().display(), replica.port());
    eventually("the replica to be usable", || async {
        metric(&app, "acctstream_replica_usable", &server).await == Some(1.0)
    })
    .await;
    let standby = connect(&replica.pg_config(DB)).await;
    let day = (Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    app.insert(&[event(&format!("{day}T08:00:00Z"), "alice")])
        .await;
    eventually("the replica to replay it", || async {
        standby
            .query_one("SELECT count(*) FROM auth_event", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;
    // Replay paused: the replica falls behind, and is set aside.
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    app.insert(&[event(&format!("{day}T09:00:00Z"), "bob")])
        .await;
    eventually("the lag to exceed 1 s", || async {
        metric(&app, "acctstream_replica_usable", &server).await == Some(0.0)
    })
    .await;
    assert!(metric(&app, "acctstream_replica_lag_seconds", &server)
        .await
        .is_some_and(|lag| lag > 1.0));
    let before = metric(&app, "acctstream_reads_total", &server)
        .await
        .unwrap_or(0.0);
    assert_eq!(window_rows(&app, &day).await, 2, "read from the primary");
    let mut history = app
        .get_as(TOKEN, "/api/v1/sessions?limit=5")
        .send()
        .await
        .unwrap();
    assert_eq!(history.status(), 200);
    body_of(&mut history).await;
    assert_eq!(
        metric(&app, "acctstream_reads_total", &server)
            .await
            .unwrap_or(0.0),
        before,
        "nothing read from the lagging replica"
    );
    // Resumed: it catches up and serves again.
    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    eventually("the replica to be usable again", || async {
        metric(&app, "acctstream_replica_usable", &server).await == Some(1.0)
    })
    .await;
    drop(standby);
    drop(app);
    replica.stop().unwrap();
    primary.stop().unwrap();
}

//! Retention reaches every table that holds raw identities (issue 22): old
//! rows of every kind, the identity directory and the RADIUS quarantine go;
//! what retention keeps (open sessions, sessions stopped after the cutoff,
//! recent rows) stays findable by pseudonym.

use acctstream::{
    core::{identity::IdentityType, retention::RetentionPolicy},
    db::{
        self,
        retention::{Cutoffs, RetentionOptions},
    },
    kinds,
};
use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use crate::helpers::{client_event, event, spawn_app, TestApp};

/// Raw identities only old rows carry: none may survive a pass anywhere.
const OLD: [&str; 6] = [
    "old-user@example.com",
    "0a:0b:0c:0d:0e:01",
    "198.51.100.7",
    "old-radius-user",
    "0a:0b:0c:0d:0e:02",
    "quarantined-user",
];

/// Raw identities of rows retention keeps.
const KEPT: [&str; 5] = [
    "new-user@example.com",
    "0a:0b:0c:0d:0e:03",
    "long-radius-user",
    "open-radius-user",
    "recently-rejected-user",
];

fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - Duration::days(days)
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339()
}

async fn session(app: &TestApp, id: &str, user: &str, mac: &str, start: i64, stop: Option<i64>) {
    app.db
        .execute(
            "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
             acctstarttime, acctupdatetime, acctstoptime, callingstationid) \
             VALUES ($1, $1, $2, '192.0.2.1', $3, $3, $4, $5)",
            &[&id, &user, &days_ago(start), &stop.map(days_ago), &mac],
        )
        .await
        .expect("insert a session");
}

/// Every row of every table in the test database, as text.
async fn every_table(app: &TestApp) -> Vec<(String, String)> {
    let tables: Vec<String> = app
        .db
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() > 10, "{tables:?}");
    let mut rows = Vec::new();
    for table in tables {
        for row in app
            .db
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .unwrap()
        {
            rows.push((table.clone(), row.get(0)));
        }
    }
    rows
}

#[actix_web::test]
async fn a_pass_leaves_no_raw_identity_older_than_the_cutoff_in_any_table() {
    let app = spawn_app().await;
    // Authentication events: one old, one new.
    let mut old_event = event(&iso(days_ago(400)), OLD[0]);
    old_event.auth_request_origin = "CN=Old".into();
    app.insert(&[old_event, event(&iso(days_ago(1)), KEPT[0])])
        .await;
    // Wi-Fi client events (recorded in the directory with their times).
    let mut old_client = client_event(&iso(days_ago(300)), OLD[1], "ssid", "ap");
    old_client.ip = Some(OLD[2].into());
    app.insert_client_events(&[
        old_client,
        client_event(&iso(days_ago(2)), KEPT[1], "ssid", "ap"),
    ])
    .await;
    // Sessions written as FreeRADIUS writes them (the directory catches up):
    // stopped before the cutoff, begun before it and stopped after, open.
    session(&app, "old", OLD[3], OLD[4], 400, Some(399)).await;
    session(&app, "long", KEPT[2], "0a:0b:0c:0d:0e:04", 400, Some(1)).await;
    session(&app, "open", KEPT[3], "0a:0b:0c:0d:0e:05", 400, None).await;
    {
        let mut client = app.pool.get().await.unwrap();
        db::directory::catch_up_kind(&mut client, &app.pseudonymiser, &kinds::session::KIND)
            .await
            .unwrap();
    }
    // The RADIUS quarantine and the audit trail.
    for (days, user) in [(200, OLD[5]), (3, KEPT[4])] {
        app.db
            .execute(
                "INSERT INTO radius_rejected (received_at, reason, record) VALUES ($1, 'test', $2)",
                &[&days_ago(days), &format!(r#"{{"User-Name":"{user}"}}"#)],
            )
            .await
            .unwrap();
    }
    for (days, client) in [(500, "old-auditor"), (10, "new-auditor")] {
        app.db
            .execute(
                "INSERT INTO access_audit (at, client, scopes, method, route, parameters, status, \
                 bytes_sent, completed, duration_ms, request_id) \
                 VALUES ($1, $2, 'read', 'GET', '/api/v1/x', '', 200, 0, true, 1, 'r')",
                &[&days_ago(days), &client],
            )
            .await
            .unwrap();
    }
    // A directory entry of a value no record carries any more.
    let mut orphan = db::directory::Entries::default();
    orphan.add(
        &app.pseudonymiser,
        IdentityType::User,
        "orphan",
        days_ago(365),
    );
    orphan.record(&app.db).await.unwrap();

    let before = every_table(&app).await;
    for raw in OLD.iter().chain(KEPT.iter()) {
        assert!(
            before.iter().any(|(_, row)| row.contains(raw)),
            "{raw} is stored before the pass"
        );
    }

    let options = RetentionOptions {
        policy: RetentionPolicy::new(180),
        audit_policy: RetentionPolicy::new(400),
        upkeep: acctstream::kinds::REGISTRY.upkeeps(),
        pseudonymiser: Some(app.pseudonymiser.clone()),
        kinds: kinds::REGISTRY.kinds(),
        ..RetentionOptions::default()
    };
    let cutoffs = Cutoffs::at(&options, Utc::now());
    let preview = db::retention::preview(&app.pool, cutoffs, &options)
        .await
        .unwrap();
    let would = |name: &str| preview.iter().find(|p| p.name == name).map(|p| p.rows);
    assert_eq!(would("events"), Some(1));
    assert_eq!(would("client_events"), Some(1));
    assert_eq!(would("sessions"), Some(1));
    assert_eq!(would("radius_quarantine"), Some(1));
    assert_eq!(would("audit"), Some(1));
    assert!(would("identity_directory").unwrap() >= 4, "{preview:?}");
    // A dry run deletes nothing (it only rolls events up, as a pass does).
    let held = |rows: Vec<(String, String)>| -> Vec<(String, String)> {
        rows.into_iter()
            .filter(|(table, _)| !table.starts_with("usage_"))
            .collect()
    };
    assert_eq!(held(every_table(&app).await), held(before));

    let outcome = db::retention::purge(&app.pool, cutoffs, &options, &CancellationToken::new())
        .await
        .unwrap();
    assert!(!outcome.interrupted);
    for name in [
        "events",
        "client_events",
        "sessions",
        "radius_quarantine",
        "audit",
    ] {
        assert_eq!(outcome.deleted(name), 1, "{name}: {outcome:?}");
    }
    // Old MAC and IP of the client, the old session's user and MAC, the orphan.
    assert_eq!(outcome.deleted("identity_directory"), 5, "{outcome:?}");

    let after = every_table(&app).await;
    for raw in OLD.iter().chain(["orphan", "old-auditor"].iter()) {
        let found: Vec<_> = after.iter().filter(|(_, row)| row.contains(raw)).collect();
        assert!(found.is_empty(), "{raw} outlived retention: {found:?}");
    }
    for raw in KEPT.iter().chain(["new-auditor"].iter()) {
        assert!(
            after.iter().any(|(_, row)| row.contains(raw)),
            "{raw} was kept"
        );
    }
    // The kept sessions' users are still found by pseudonym, their entries
    // seen again by the pass (the open one today).
    for user in [KEPT[2], KEPT[3]] {
        let pseudonym = acctstream::core::identity::pseudonym_of(
            &app.pseudonymiser,
            IdentityType::RadiusUser,
            user,
        );
        let mut response = app
            .get(&format!("/api/v1/users/{pseudonym}/sessions"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{user}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["sessions"].as_array().map(Vec::len),
            Some(1),
            "{user}: {body}"
        );
    }
}

/// `purge --dry-run` reports per kind and table; `purge` deletes client
/// events too (they were never deleted before issue 22).
#[actix_web::test]
async fn purge_reports_every_kind() {
    let app = spawn_app().await;
    app.insert_client_events(&[client_event("2021-03-01T10:00:00Z", OLD[1], "ssid", "ap")])
        .await;
    let dry = crate::reports::purge(&app, &["--dry-run"]).await;
    for line in [
        "dry run: events (auth_event): nothing would be deleted",
        "dry run: client_events (client_event): 1 rows would be deleted, from 2021-03-01T10:00:00Z to 2021-03-01T10:00:00Z",
        "dry run: sessions (radacct): nothing would be deleted",
        "dry run: radius_quarantine (radius_rejected): nothing would be deleted",
        "dry run: audit (access_audit): nothing would be deleted",
        "dry run: identity_directory (identity_directory): 1 rows would be deleted",
        "dry run: nothing was deleted",
    ] {
        assert!(dry.contains(line), "{line}\n{dry}");
    }
    let done = crate::reports::purge(&app, &[]).await;
    assert!(
        done.contains("deleted 1 rows of client_events (client_event) from before"),
        "{done}"
    );
    let left: i64 = app
        .db
        .query_one("SELECT count(*) FROM client_event", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// A database of 0009 migrates to 0010 with every existing directory entry
/// dated by the newest row that holds its value (an open session's: today),
/// and entries no row holds dated -infinity (the next pass deletes them);
/// the catch-up position of `radacct` is kept.
#[actix_web::test]
async fn migrating_dates_existing_directory_entries_by_their_rows() {
    use crate::helpers::{connect, fresh_database_unmigrated};
    let (_, config) = fresh_database_unmigrated().await;
    let mut client = connect(&config).await;
    db::migrate::run_to(&mut client, 9).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO client_event (occurred_at, client_mac, event_type, client_ip) VALUES \
               ('2026-01-05T10:00:00Z', '0a:0b:0c:0d:0e:01', 'Success', '198.51.100.7'), \
               ('2026-02-05T10:00:00Z', '0a:0b:0c:0d:0e:01', 'Success', NULL); \
             INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
               acctstarttime, acctstoptime, callingstationid) VALUES \
               ('a', 'a', 'closed-user', '192.0.2.1', '2026-01-01', '2026-01-03T05:00:00Z', 'AA-BB-CC-DD-EE-01'), \
               ('b', 'b', 'open-user', '192.0.2.1', '2026-01-01', NULL, NULL); \
             UPDATE radacct_directory_cursor SET radacctid = 2; \
             INSERT INTO identity_directory (pseudonym, raw) VALUES \
               (repeat('1', 64), '0a:0b:0c:0d:0e:01'), (repeat('2', 64), '198.51.100.7'), \
               (repeat('3', 64), 'closed-user'), (repeat('4', 64), 'aa:bb:cc:dd:ee:01'), \
               (repeat('5', 64), 'open-user'), (repeat('6', 64), 'gone-user');",
        )
        .await
        .unwrap();
    let applied = db::migrate::run(&mut client, &acctstream::kinds::REGISTRY.kinds())
        .await
        .unwrap();
    assert_eq!(applied[0], "0010_retention_everywhere.sql");
    let seen = |raw: &'static str| {
        let client = &client;
        async move {
            let at: DateTime<Utc> = client
                .query_one(
                    "SELECT last_seen FROM identity_directory WHERE raw = $1",
                    &[&raw],
                )
                .await
                .unwrap()
                .get(0);
            at
        }
    };
    let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
    assert_eq!(seen("0a:0b:0c:0d:0e:01").await, at("2026-02-05T10:00:00Z"));
    assert_eq!(seen("198.51.100.7").await, at("2026-01-05T10:00:00Z"));
    assert_eq!(seen("closed-user").await, at("2026-01-03T05:00:00Z"));
    assert_eq!(seen("aa:bb:cc:dd:ee:01").await, at("2026-01-03T05:00:00Z"));
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(seen("open-user").await, today);
    let gone: String = client
        .query_one(
            "SELECT last_seen::text FROM identity_directory WHERE raw = 'gone-user'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, "-infinity");
    let position: i64 = client
        .query_one(
            "SELECT position FROM acctstream_directory_cursor WHERE source = 'radacct'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(position, 2);
}

/// The directory's catch-up with rows others write reads them newest
/// first over several batches: each value ends with its newest day, the
/// position moves to the newest row, and the next catch-up reads only
/// what came after.
#[actix_web::test]
async fn the_directory_catches_up_newest_first() {
    let app = spawn_app().await;
    session(&app, "s1", "carol", "0a:0b:0c:0d:0e:10", 10, Some(9)).await;
    session(&app, "s2", "dave", "0a:0b:0c:0d:0e:11", 8, Some(7)).await;
    session(&app, "s3", "carol", "0a:0b:0c:0d:0e:10", 5, Some(4)).await;
    session(&app, "s4", "carol", "0a:0b:0c:0d:0e:12", 3, Some(2)).await;
    session(&app, "s5", "erin", "0a:0b:0c:0d:0e:13", 1, Some(1)).await;
    let mut client = app.pool.get().await.unwrap();
    let kind = &kinds::session::KIND;
    let read =
        db::directory::catch_up_in_batches(&mut client, &app.pseudonymiser, kind, 2, &mut |_| {})
            .await
            .unwrap();
    assert_eq!(read, 5);
    let seen = |raw: &'static str| {
        let db = &app.db;
        async move {
            db.query_one(
                "SELECT last_seen FROM identity_directory WHERE raw = $1",
                &[&raw],
            )
            .await
            .unwrap()
            .get::<_, DateTime<Utc>>(0)
        }
    };
    let day = |days: i64| {
        days_ago(days)
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
    };
    assert_eq!(seen("carol").await, day(2));
    assert_eq!(seen("dave").await, day(7));
    assert_eq!(seen("0a:0b:0c:0d:0e:10").await, day(4));
    let position: i64 = app
        .db
        .query_one(
            "SELECT position FROM acctstream_directory_cursor WHERE source = 'radacct'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let newest: i64 = app
        .db
        .query_one("SELECT max(radacctid) FROM radacct", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(position, newest);
    // Only what came after is read next time; an open session is seen now.
    session(&app, "s6", "carol", "0a:0b:0c:0d:0e:10", 0, None).await;
    let read =
        db::directory::catch_up_in_batches(&mut client, &app.pseudonymiser, kind, 2, &mut |_| {})
            .await
            .unwrap();
    assert_eq!(read, 1);
    assert_eq!(seen("carol").await, day(0));
    assert_eq!(
        db::directory::catch_up_kind(&mut client, &app.pseudonymiser, kind)
            .await
            .unwrap(),
        0
    );
    // Rows that fill their batches exactly: the position still moves on
    // (it once stayed, so every lookup caught up again from the start).
    session(&app, "s7", "frank", "0a:0b:0c:0d:0e:14", 0, None).await;
    session(&app, "s8", "gina", "0a:0b:0c:0d:0e:15", 0, None).await;
    let read =
        db::directory::catch_up_in_batches(&mut client, &app.pseudonymiser, kind, 2, &mut |_| {})
            .await
            .unwrap();
    assert_eq!(read, 2);
    assert_eq!(
        db::directory::catch_up_in_batches(&mut client, &app.pseudonymiser, kind, 2, &mut |_| {})
            .await
            .unwrap(),
        0,
        "the position moved past a full last batch"
    );
}

//! The change feed (issue 23): every kind's records in commit order, a page
//! at a time from a cursor; out-of-order commits, late records, session
//! updates, restarts, retention and other kinds' cursors.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::helpers::{
    body_of, connect, database_config, event, spawn_app, TestApp, AUDIT_TOKEN, TOKEN, WRITE_TOKEN,
};

const EVENTS: &str = "/api/v1/statistics/events/changes";

/// One page: status, `Link` header, body.
struct Page {
    status: u16,
    link: String,
    body: Value,
}

impl Page {
    fn records(&self, envelope: &str) -> &Vec<Value> {
        self.body[envelope]
            .as_array()
            .unwrap_or_else(|| panic!("no `{envelope}` array in {}", self.body))
    }

    fn next(&self) -> String {
        self.body["links"]["next"]
            .as_str()
            .unwrap_or_else(|| panic!("no next link in {}", self.body))
            .to_owned()
    }
}

/// `GET url` (a path, or a link the service gave) with `token`.
async fn get(app: &TestApp, token: &str, url: &str) -> Page {
    let path = url.strip_prefix(&app.address).unwrap_or(url);
    let mut response = app
        .get_as(token, path)
        .insert_header(("Accept", "application/json"))
        .send()
        .await
        .expect("request");
    let link = response
        .headers()
        .get("link")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let status = response.status().as_u16();
    let body = body_of(&mut response).await;
    let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{url}: {status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    Page { status, link, body }
}

/// Waits until every transaction that committed before the call is below
/// the feed's horizon: tests share one cluster, whose transactions all
/// hold the horizon back while they run.
pub async fn settled(app: &TestApp) {
    let mine: String = app
        .db
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .expect("a transaction id")
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let passed: bool = app
            .db
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::text::xid8",
                &[&mine],
            )
            .await
            .expect("the horizon")
            .get(0);
        if passed {
            return;
        }
        assert!(Instant::now() < deadline, "the horizon never passed {mine}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Follows `next` from `url` until an empty page; returns every record's
/// position and the last `next`.
async fn drain(app: &TestApp, url: &str, envelope: &str) -> (Vec<String>, String) {
    settled(app).await;
    let mut url = url.to_owned();
    let mut positions = Vec::new();
    loop {
        let page = get(app, TOKEN, &url).await;
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        let records = page.records(envelope);
        for record in records {
            positions.push(record["position"].as_str().expect("position").to_owned());
        }
        let next = page.next();
        if records.is_empty() {
            assert_eq!(
                next,
                page.body["links"]["self"].as_str().unwrap_or_default()
            );
            return (positions, next);
        }
        url = next;
    }
}

/// The records of the feed at `url` (followed until an empty page), once
/// at least `n` arrived.
pub async fn records_after(app: &TestApp, url: &str, envelope: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut url = url.to_owned();
    let mut records = Vec::new();
    loop {
        let page = get(app, TOKEN, &url).await;
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        let got = page.records(envelope).clone();
        url = page.next();
        if got.is_empty() {
            if records.len() >= n {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} records came",
                records.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        records.extend(got);
    }
}

#[actix_web::test]
async fn the_feed_hands_out_every_record_once_page_by_page() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", 2500).await;
    settled(&app).await;

    let first = get(&app, TOKEN, EVENTS).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.records("events").len(), 1000, "the default page");
    assert!(first.link.contains("rel=\"self\"") && first.link.contains("rel=\"next\""));
    assert!(first.link.contains(&first.next()), "{}", first.link);
    let record = &first.records("events")[0];
    assert_eq!(record["timestamp"], "2021-04-10T00:00:00");
    assert!(record["userId"].as_str().is_some_and(|u| u.len() == 64));

    let (positions, end) = drain(&app, EVENTS, "events").await;
    assert_eq!(positions.len(), 2500);
    assert_eq!(positions.iter().collect::<HashSet<_>>().len(), 2500);

    // A record's position is a cursor: resume after any record.
    let (rest, _) = drain(
        &app,
        &format!("{EVENTS}?after={}&limit=700", positions[2099]),
        "events",
    )
    .await;
    assert_eq!(rest, positions[2100..]);

    // New records follow the last `next`, and nothing else.
    app.insert_many("2021-04-09T00:00:00Z", 3).await;
    let (new, _) = drain(&app, &end, "events").await;
    assert_eq!(new.len(), 3);

    // `after=latest`: an empty page whose `next` is the end of the feed.
    let latest = get(&app, TOKEN, &format!("{EVENTS}?after=latest")).await;
    assert_eq!(latest.status, 200);
    assert!(latest.records("events").is_empty());
    assert!(latest.next().contains("after=events."), "{}", latest.next());
    app.insert(&[event("2020-01-01T00:00:00Z", "late@example.com")])
        .await;
    let (after_latest, _) = drain(&app, &latest.next(), "events").await;
    assert_eq!(after_latest.len(), 1);
}

#[actix_web::test]
async fn the_feed_speaks_csv_and_ndjson_with_positions() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", 5).await;
    settled(&app).await;
    let mut csv = app
        .get(&format!("{EVENTS}?limit=3"))
        .insert_header(("Accept", "text/csv"))
        .send()
        .await
        .expect("request");
    assert_eq!(csv.status().as_u16(), 200);
    let text = String::from_utf8(body_of(&mut csv).await).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].ends_with(",Position"), "{}", lines[0]);
    assert!(lines[3].contains(",events.0."), "{}", lines[3]);
    let next = csv.headers().get("link").expect("link");
    assert!(next.to_str().unwrap_or_default().contains("rel=\"next\""));

    let mut ndjson = app
        .get(&format!("{EVENTS}?limit=3&format=ndjson"))
        .send()
        .await
        .expect("request");
    let text = String::from_utf8(body_of(&mut ndjson).await).expect("utf-8");
    let last: Value = serde_json::from_str(text.lines().last().expect("a line")).expect("json");
    assert!(lines[3].ends_with(last["position"].as_str().expect("position")));
}

#[actix_web::test]
async fn cursors_the_feed_did_not_hand_out_are_refused() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", 2).await;
    settled(&app).await;
    let page = get(&app, TOKEN, EVENTS).await;
    let position = page.records("events")[0]["position"]
        .as_str()
        .expect("position")
        .to_owned();
    // Another kind's cursor, garbage, a position beyond the end, an epoch
    // still to come, a limit out of range.
    let other = position.replacen("events", "client-events", 1);
    for (query, says) in [
        (format!("after={other}"), "`events` feed"),
        ("after=nonsense".into(), "not a cursor"),
        ("after=events.0.99999999999.1".into(), "not a cursor"),
        ("after=events.7.1.1".into(), "not a cursor"),
        ("limit=0".into(), "`limit`"),
        ("limit=10001".into(), "`limit`"),
    ] {
        let page = get(&app, TOKEN, &format!("{EVENTS}?{query}")).await;
        assert_eq!(page.status, 400, "{query}: {}", page.body);
        assert_eq!(page.body["error"], "invalid_request");
        let text = page.body["error_description"].as_str().unwrap_or_default();
        assert!(
            text.contains(says) || (says == "`events` feed" && text.contains("client-events")),
            "{query}: {text}"
        );
    }
    let client_events = get(
        &app,
        TOKEN,
        &format!("/api/v1/statistics/client-events/changes?after={position}"),
    )
    .await;
    assert_eq!(client_events.status, 400, "{}", client_events.body);
    assert!(client_events.body["error_description"]
        .as_str()
        .unwrap_or_default()
        .contains("`events` feed"));
    // The audit trail's feed needs the audit scope, like its windows.
    let audit = get(&app, TOKEN, "/api/v1/audit/changes").await;
    assert_eq!(audit.status, 403);
    let audit = get(&app, AUDIT_TOKEN, "/api/v1/audit/changes").await;
    assert_eq!(audit.status, 200, "{}", audit.body);
}

/// The issue's test: one transaction inserts a record and stays open 3 s
/// while others commit 10,000 records; a client polling the feed every
/// 200 ms ends with exactly 10,001 distinct records, and sees the held one
/// only after its commit.
#[actix_web::test]
async fn out_of_order_commits_are_neither_missed_nor_repeated() {
    let app = spawn_app().await;
    let held = connect(&database_config(&app.db_name)).await;
    held.batch_execute(
        "BEGIN; INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
         auth_request_origin, user_id) VALUES ('2021-04-10T12:00:00Z', 'PASSWORD', 'held', \
         'CN=Held', 'held@example.com')",
    )
    .await
    .expect("hold a transaction with one record");
    let committing = Arc::new(AtomicBool::new(false));

    let writer = async {
        for batch in 0..100 {
            app.insert_many(&format!("2021-04-11T{:02}:00:00Z", batch % 24), 100)
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        committing.store(true, Ordering::SeqCst);
        held.batch_execute("COMMIT")
            .await
            .expect("commit the held record");
    };
    let poller = async {
        let mut seen = Vec::new();
        let mut held_seen = false;
        let mut url = format!("{EVENTS}?limit=10000");
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 10_001 && Instant::now() < deadline {
            let page = get(&app, TOKEN, &url).await;
            assert_eq!(page.status, 200, "{}", page.body);
            for record in page.records("events") {
                if record["authMethodName"] == "held" {
                    assert!(
                        committing.load(Ordering::SeqCst),
                        "the held record was handed out before its commit"
                    );
                    held_seen = true;
                }
                seen.push(record["position"].as_str().expect("position").to_owned());
            }
            url = page.next();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (seen, held_seen)
    };
    let ((), (seen, held_seen)) = tokio::join!(writer, poller);
    assert!(held_seen, "the held record never appeared");
    assert_eq!(seen.len(), 10_001);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 10_001);
    // Nothing more comes.
    settled(&app).await;
    let page = get(&app, TOKEN, &format!("{EVENTS}?after={}", seen[10_000])).await;
    assert!(page.records("events").is_empty());
}

/// Posts RADIUS accounting requests through acctstream's ingest.
async fn post_radius(app: &TestApp, packets: Value) {
    let mut response = app
        .client()
        .post(format!("{}/api/v1/accounting/radius", app.address))
        .insert_header(("Authorization", format!("Bearer {WRITE_TOKEN}")))
        .insert_header(("Content-Type", "application/json"))
        .send_body(packets.to_string())
        .await
        .expect("post");
    let status = response.status().as_u16();
    assert!(
        status == 200 || status == 204,
        "{status}: {}",
        String::from_utf8_lossy(&body_of(&mut response).await)
    );
}

/// The issue's sessions test: a Start, then an Interim-Update and a Stop
/// posted later, and the same written by SQL as FreeRADIUS's
/// `queries.conf` does: each version appears in the feed, with the
/// session's state.
#[actix_web::test]
async fn every_version_of_a_session_is_a_change() {
    const SESSIONS: &str = "/api/v1/statistics/sessions/changes";
    let app = spawn_app().await;
    let mut next = get(&app, TOKEN, &format!("{SESSIONS}?after=latest"))
        .await
        .next();
    let packet = |status: &str, at: i64, extra: Value| {
        let mut packet = json!({
            "Acct-Status-Type": status, "Acct-Session-Id": "F-1", "User-Name": "erin",
            "NAS-IP-Address": "10.9.0.1", "Event-Timestamp": 1_795_132_800 + at,
        });
        if let (Some(map), Some(more)) = (packet.as_object_mut(), extra.as_object()) {
            map.extend(more.clone());
        }
        packet
    };
    let mut versions = Vec::new();
    let steps = [
        json!([packet("Start", 0, json!({}))]),
        json!([packet(
            "Interim-Update",
            300,
            json!({"Acct-Session-Time": 300, "Acct-Input-Octets": 1000})
        )]),
        json!([packet(
            "Stop",
            600,
            json!({"Acct-Session-Time": 600, "Acct-Input-Octets": 2000})
        )]),
    ];
    for step in steps {
        post_radius(&app, step).await;
        let records = records_after(&app, &next, "sessions", 1).await;
        assert_eq!(records.len(), 1, "{records:?}");
        next = records[0]["position"]
            .as_str()
            .expect("position")
            .to_owned();
        next = format!("{SESSIONS}?after={next}");
        versions.push(records[0].clone());
    }
    // Open (stale by now: its times are in the past).
    assert_ne!(versions[0]["status"], "closed");
    assert!(versions[0]["acctStopTime"].is_null());
    assert_eq!(versions[1]["acctInputOctets"], 1000);
    assert_eq!(versions[2]["status"], "closed");
    assert_eq!(versions[2]["acctInputOctets"], 2000);
    assert_eq!(versions[0]["radAcctId"], versions[2]["radAcctId"]);
    assert_eq!(versions[0]["userName"], app.pseudonym("erin"));

    // FreeRADIUS's rlm_sql writing radacct itself (queries.conf's start,
    // interim-update and stop statements, shortened to the columns that
    // change).
    for sql in [
        "INSERT INTO radacct (AcctSessionId, AcctUniqueId, UserName, Realm, NASIPAddress, \
         NASPortId, NASPortType, AcctStartTime, AcctUpdateTime, AcctStopTime, AcctSessionTime, \
         AcctAuthentic, ConnectInfo_start, AcctInputOctets, AcctOutputOctets, CalledStationId, \
         CallingStationId, ServiceType, FramedProtocol, FramedIPAddress) VALUES ('Q-1', 'q1', \
         'frank', NULLIF('', ''), '10.9.0.2', NULLIF('7', ''), 'Ethernet', TO_TIMESTAMP(1795132800), \
         TO_TIMESTAMP(1795132800), NULL, 0, 'RADIUS', '', 0, 0, '', '00:0A:95:9D:68:16', '', '', \
         NULLIF('', '')::inet)",
        "UPDATE radacct SET FramedIPAddress = NULLIF('', '')::inet, \
         AcctSessionTime = 300, AcctInterval = 300, AcctUpdateTime = TO_TIMESTAMP(1795133100), \
         AcctInputOctets = 5000, AcctOutputOctets = 100 WHERE AcctUniqueId = 'q1' \
         AND AcctStopTime IS NULL",
        "UPDATE radacct SET AcctStopTime = TO_TIMESTAMP(1795133400), \
         AcctUpdateTime = TO_TIMESTAMP(1795133400), AcctSessionTime = 600, \
         AcctInputOctets = 9000, AcctTerminateCause = 'User-Request' \
         WHERE AcctUniqueId = 'q1' AND AcctStopTime IS NULL",
    ] {
        app.db.batch_execute(sql).await.expect("rlm_sql's statement");
        let records = records_after(&app, &next, "sessions", 1).await;
        assert_eq!(records.len(), 1, "{records:?}");
        next = format!(
            "{SESSIONS}?after={}",
            records[0]["position"].as_str().expect("position")
        );
        versions.push(records[0].clone());
    }
    assert_eq!(versions[3]["acctSessionId"], "Q-1");
    assert_ne!(versions[3]["status"], "closed");
    assert_eq!(versions[4]["acctInputOctets"], 5000);
    assert_eq!(versions[5]["status"], "closed");
    assert_eq!(versions[5]["acctInputOctets"], 9000);
    // Read from the start, each session once, in its present state.
    let all = records_after(&app, SESSIONS, "sessions", 2).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|s| s["status"] == "closed"));

    // Their day's window: closed sessions only, so its tag holds until one
    // of them changes (summarised or not).
    let day = "/api/v1/statistics/sessions/day/2026-11-20";
    summarise(&app).await;
    let (status, tag) = conditional(&app, day, None).await;
    assert_eq!(status, 200);
    assert_eq!(conditional(&app, day, Some(&tag)).await.0, 304);
    app.db
        .batch_execute("UPDATE radacct SET acctoutputoctets = 7 WHERE acctuniqueid = 'q1'")
        .await
        .expect("update");
    let (status, changed) = conditional(&app, day, Some(&tag)).await;
    assert_eq!(status, 200);
    summarise(&app).await;
    let (_, summarised) = conditional(&app, day, None).await;
    assert_ne!(summarised, tag);
    assert_eq!(conditional(&app, day, Some(&summarised)).await.0, 304);
    let _ = changed;
    // A day before both sessions is not touched by them.
    let before = "/api/v1/statistics/sessions/day/2026-11-18";
    let (_, quiet) = conditional(&app, before, None).await;
    app.db
        .batch_execute("UPDATE radacct SET acctoutputoctets = 8 WHERE acctuniqueid = 'q1'")
        .await
        .expect("update");
    summarise(&app).await;
    assert_eq!(conditional(&app, before, Some(&quiet)).await.0, 304);
}

/// Late records: after a window was read, records with times inside it are
/// stored; the window's `changes` link returns exactly those.
#[actix_web::test]
async fn a_windows_changes_link_returns_what_came_after_it() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T10:00:00Z", 50).await;
    settled(&app).await;
    let mut window = app
        .get("/api/v1/statistics/events/hour/2021-04-10T10?authMethodName=password.1")
        .send()
        .await
        .expect("window");
    assert_eq!(window.status().as_u16(), 200);
    let link = window
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let _ = body_of(&mut window).await;
    let changes = link
        .split(", ")
        .find_map(|part| part.strip_suffix("; rel=\"changes\""))
        .and_then(|url| url.strip_prefix('<')?.strip_suffix('>'))
        .unwrap_or_else(|| panic!("no changes link in {link}"))
        .to_owned();
    assert!(changes.contains("authMethodName=password.1"), "{changes}");
    // Late: one inside the window, one elsewhere, one filtered out.
    let mut late = event("2021-04-10T10:30:00Z", "late@example.com");
    late.auth_method_name = "password.1".into();
    let mut other = event("2021-04-10T10:31:00Z", "other@example.com");
    other.auth_method_name = "sms.1".into();
    app.insert(&[
        late,
        event("2021-04-11T10:30:00Z", "elsewhere@example.com"),
        other,
    ])
    .await;
    let records = records_after(&app, &changes, "events", 2).await;
    let times: Vec<&str> = records
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(times, ["2021-04-10T10:30:00", "2021-04-11T10:30:00"]);
}

/// A cursor outlives the service: a new instance on the same database
/// (and key) continues from it.
#[actix_web::test]
async fn a_cursor_survives_a_restart() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T00:00:00Z", 10).await;
    let first = records_after(&app, &format!("{EVENTS}?limit=4"), "events", 10).await;
    let cursor = first[3]["position"].as_str().expect("position").to_owned();
    let name = app.db_name.clone();
    drop(app);
    let again = crate::helpers::spawn_app_on(
        name.clone(),
        database_config(&name),
        crate::helpers::AppOptions::default(),
    )
    .await;
    let rest = records_after(&again, &format!("{EVENTS}?after={cursor}"), "events", 6).await;
    assert_eq!(rest, first[4..]);
}

/// The window's tag and status for `If-None-Match: tag` (or none).
async fn conditional(app: &TestApp, path: &str, tag: Option<&str>) -> (u16, String) {
    let mut request = app.get(path).insert_header(("Accept", "application/json"));
    if let Some(tag) = tag {
        request = request.insert_header(("If-None-Match", tag));
    }
    let mut response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = body_of(&mut response).await;
    assert!(
        status < 500,
        "{path}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    if status == 304 {
        assert!(body.is_empty(), "a 304 has no body");
    }
    (status, etag)
}

/// Brings the change summary up to date (what the background job does).
async fn summarise(app: &TestApp) {
    use acctstream::db::upkeep::Upkeep;
    settled(app).await;
    let mut client = app.pool.get().await.expect("a connection");
    acctstream::db::changes::Summary::of(acctstream::kinds::REGISTRY.kinds())
        .settle(&mut client, &app.pseudonymiser)
        .await
        .expect("summarise");
}

/// Conditional windows: a window's tag changes when a record in it is
/// added (before and after the summary took it in) or deleted, and only
/// then; the same tag answers 304 without a body.
#[actix_web::test]
async fn a_windows_etag_changes_with_its_records_and_only_then() {
    let app = spawn_app().await;
    app.insert_many("2021-04-10T10:00:00Z", 100).await;
    app.insert_many("2021-04-12T10:00:00Z", 100).await;
    let day = "/api/v1/statistics/events/day/2021-04-10";
    let other = "/api/v1/statistics/events/day/2021-04-12";
    let month = "/api/v1/statistics/events/month/2021-04";
    let (status, tag) = conditional(&app, day, None).await;
    assert_eq!(status, 200);
    assert!(tag.starts_with('"') && tag.len() == 34, "{tag}");
    assert_eq!(conditional(&app, day, Some(&tag)).await, (304, tag.clone()));
    assert_eq!(conditional(&app, day, Some("W/\"x\", *")).await.0, 304);
    // Another representation has another tag.
    let csv = format!("{day}?format=csv");
    assert_ne!(conditional(&app, &csv, None).await.1, tag);
    let (_, other_tag) = conditional(&app, other, None).await;
    let (_, month_tag) = conditional(&app, month, None).await;

    // Summarised, the tags change once (what made them moved), then hold.
    summarise(&app).await;
    let _ = (other_tag, month_tag);
    let (_, tag) = conditional(&app, day, None).await;
    let (_, other_tag) = conditional(&app, other, None).await;
    let (_, month_tag) = conditional(&app, month, None).await;
    assert_eq!(conditional(&app, day, Some(&tag)).await.0, 304);
    assert_eq!(conditional(&app, other, Some(&other_tag)).await.0, 304);

    // A late record in the day: its tag and the month's change, the
    // other day's does not; before the summary takes it in and after.
    app.insert(&[event("2021-04-10T23:59:59Z", "late@example.com")])
        .await;
    let (status, late) = conditional(&app, day, Some(&tag)).await;
    assert_eq!(status, 200);
    assert_ne!(late, tag);
    assert_eq!(conditional(&app, month, Some(&month_tag)).await.0, 200);
    assert_eq!(conditional(&app, other, Some(&other_tag)).await.0, 304);
    summarise(&app).await;
    let (status, summarised) = conditional(&app, day, Some(&late)).await;
    assert!(status == 200 || status == 304);
    assert_ne!(summarised, tag);
    assert_eq!(conditional(&app, day, Some(&summarised)).await.0, 304);
    assert_eq!(conditional(&app, other, Some(&other_tag)).await.0, 304);

    // A deletion changes them.
    app.db
        .batch_execute("DELETE FROM auth_event WHERE occurred_at < '2021-04-10T10:00:01Z'")
        .await
        .expect("delete");
    assert_eq!(conditional(&app, day, Some(&summarised)).await.0, 200);
}

/// Reads an event stream until `done` holds for what came so far (or
/// fails after 30 s); returns it.
async fn read_events<S>(body: &mut S, text: &mut String, done: impl Fn(&str) -> bool)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    use futures_util::StreamExt;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(text) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, body.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Some(Err(e))) => panic!("the event stream failed: {e}; so far: {text}"),
            Ok(None) => panic!("the event stream ended; so far: {text}"),
            Err(_) => panic!("timed out; so far: {text}"),
        }
    }
}

/// The `(id, data)` of every message event in `text`.
pub(crate) fn messages(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let id = block.lines().find_map(|l| l.strip_prefix("id: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((
                id.to_owned(),
                serde_json::from_str(data).expect("JSON data"),
            ))
        })
        .collect()
}

/// Server-sent events: records pushed as they commit, each with its cursor
/// as id; a reconnection with `Last-Event-ID` continues after it; the
/// stream holds one of the client's stream slots, ends cleanly when the
/// service stops, and is audited with the rows it sent.
#[actix_web::test]
async fn server_sent_events_push_each_commit_and_resume_after_the_last_id() {
    let stopping = tokio_util::sync::CancellationToken::new();
    let (sink, entries) = acctstream::db::audit::AuditSink::channel(1024);
    let mut options = crate::helpers::AppOptions::default();
    options.http.shutdown = stopping.clone();
    options.http.audit = Some(sink);
    options.http.limits = Arc::new(acctstream::core::limits::Limits {
        rate: None,
        rate_per_tenant: None,
        streams: Some(acctstream::core::limits::StreamLimiter::new(1)),
    });
    let app = crate::helpers::spawn_app_with(options).await;
    actix_web::rt::spawn(acctstream::db::audit::run_writer(app.pool.clone(), entries));
    app.insert_many("2021-04-10T00:00:00Z", 3).await;
    settled(&app).await;

    let mut stream = app
        .get(EVENTS)
        .insert_header(("Accept", "text/event-stream"))
        .send()
        .await
        .expect("open the event stream");
    assert_eq!(stream.status().as_u16(), 200);
    assert_eq!(
        stream.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut text = String::new();
    read_events(&mut stream, &mut text, |t| messages(t).len() >= 3).await;
    // Committed while the stream is open: pushed within a second or so.
    let committed = Instant::now();
    app.insert(&[event("2021-04-10T01:00:00Z", "pushed@example.com")])
        .await;
    read_events(&mut stream, &mut text, |t| messages(t).len() >= 4).await;
    assert!(committed.elapsed() < Duration::from_secs(5));
    let events = messages(&text);
    assert_eq!(events[3].1["userId"], app.pseudonym("pushed@example.com"));
    assert_eq!(events[3].1["position"], events[3].0.as_str());
    // The stream holds the client's one slot.
    let refused = app.get(EVENTS).send().await.expect("request");
    assert_eq!(refused.status().as_u16(), 429);
    drop(stream);

    // A reconnection after the second event gets the third and the fourth.
    let mut again = loop {
        let response = app
            .get(EVENTS)
            .insert_header(("Accept", "text/event-stream"))
            .insert_header(("Last-Event-ID", events[1].0.as_str()))
            .send()
            .await
            .expect("reconnect");
        if response.status().as_u16() != 429 {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut resumed = String::new();
    read_events(&mut again, &mut resumed, |t| messages(t).len() >= 2).await;
    let ids: Vec<String> = messages(&resumed).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, [events[2].0.clone(), events[3].0.clone()]);
    // A bad id is a 400 before any event.
    let bad = app
        .get(EVENTS)
        .insert_header(("Accept", "text/event-stream"))
        .insert_header(("Last-Event-ID", "client-events.0.1.1"))
        .send()
        .await
        .expect("request");
    assert!(matches!(bad.status().as_u16(), 400 | 429));

    // The service stops: the stream ends cleanly (no error, no cut).
    stopping.cancel();
    use futures_util::StreamExt;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = again.next().await {
            chunk.expect("a clean end");
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end at shutdown");
    drop(again);

    // Audited, with the rows each stream sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<i64> = app
            .db
            .query(
                "SELECT coalesce(rows_sent, -1) FROM access_audit \
                 WHERE route = '/api/v1/statistics/events/changes' AND status = 200 ORDER BY id",
                &[],
            )
            .await
            .expect("audit rows")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if rows.len() >= 2 {
            assert_eq!(rows[..2], [4, 2]);
            break;
        }
        assert!(Instant::now() < deadline, "not audited: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A quiet stream gets a comment every 15 seconds.
#[actix_web::test]
async fn a_quiet_event_stream_gets_heartbeats() {
    let app = spawn_app().await;
    let mut stream = app
        .get(&format!("{EVENTS}?after=latest"))
        .insert_header(("Accept", "text/event-stream"))
        .send()
        .await
        .expect("open the event stream");
    let started = Instant::now();
    let mut text = String::new();
    read_events(&mut stream, &mut text, |t| t.contains(": heartbeat")).await;
    assert!(started.elapsed() >= Duration::from_secs(14), "{text}");
    assert!(messages(&text).is_empty());
}

/// The README's poller, exactly as printed, against the service: it hands
/// over every record committed after it started, once, and resumes from
/// its kept cursor after a restart.
#[actix_web::test]
async fn the_readmes_poller_works_as_printed() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let code = readme
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a python block in the README");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = dir.path().join("poller.py");
    std::fs::write(&script, code).expect("write the poller");
    let state = dir.path().join("events.cursor");
    let app = spawn_app().await;
    let run = || {
        std::process::Command::new("python3")
            .arg(&script)
            .env("B", &app.address)
            .env("T", TOKEN)
            .env("STATE", &state)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 (apt-get install python3): {e}"))
    };
    let read_lines = |child: &mut std::process::Child, n: usize| {
        use std::io::BufRead;
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut lines = Vec::new();
        while lines.len() < n {
            match receiver.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => lines.push(line),
                Err(e) => panic!("the poller printed {} of {n} records: {e}", lines.len()),
            }
        }
        (lines, receiver)
    };

    let mut first = run();
    // It starts at the end of the feed: wait for its cursor, then write.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !state.exists() {
        assert!(Instant::now() < deadline, "the poller kept no cursor");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.insert_many("2021-04-10T00:00:00Z", 1500).await;
    let (lines, _) = read_lines(&mut first, 1500);
    let positions: Vec<String> = lines
        .iter()
        .map(|l| {
            let record: Value = serde_json::from_str(l).expect("a JSON record per line");
            record["position"].as_str().expect("position").to_owned()
        })
        .collect();
    assert_eq!(positions.iter().collect::<HashSet<_>>().len(), 1500);
    // Stopped once it kept the cursor after the last record (stopped
    // before, it would hand the page over again: at least once).
    let last = format!("after={}", positions[1499]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&state)
        .unwrap_or_default()
        .contains(&last)
    {
        assert!(Instant::now() < deadline, "the poller never kept {last}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = first.kill();
    let _ = first.wait();

    // Restarted, it continues from its cursor: only what came since.
    app.insert(&[event("2021-04-11T00:00:00Z", "after-restart@example.com")])
        .await;
    let mut second = run();
    let (lines, receiver) = read_lines(&mut second, 1);
    let record: Value = serde_json::from_str(&lines[0]).expect("JSON");
    assert_eq!(record["userId"], app.pseudonym("after-restart@example.com"));
    assert!(receiver.recv_timeout(Duration::from_millis(1500)).is_err());
    let _ = second.kill();
    let _ = second.wait();
}

/// With more changes past the summary than a tag reads (a bulk load the
/// summary is catching up with), a window's tag follows every commit:
/// never a 304 for a changed window; once summarised, 304s again.
#[actix_web::test]
async fn a_summary_far_behind_never_gives_a_wrong_304() {
    let app = spawn_app().await;
    let day = "/api/v1/statistics/events/day/2021-04-10";
    app.insert_many("2021-04-12T00:00:00Z", 60_000).await;
    let (_, before) = conditional(&app, day, None).await;
    app.insert(&[event("2021-04-10T12:00:00Z", "bulk@example.com")])
        .await;
    let (status, after) = conditional(&app, day, Some(&before)).await;
    assert_eq!(status, 200);
    assert_ne!(after, before);
    summarise(&app).await;
    let (_, settled_tag) = conditional(&app, day, None).await;
    assert_eq!(conditional(&app, day, Some(&settled_tag)).await.0, 304);
}

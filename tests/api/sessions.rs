//! Network access sessions: RADIUS accounting ingest with FreeRADIUS's
//! semantics made safe (a table of packet sequences, in order, shuffled and
//! replayed), reads (windows that overlap, filters, the keyset list, one
//! session, online, user and device histories, the calendar), pseudonyms
//! shared with the other kinds, the quarantine, and a `radacct` that
//! FreeRADIUS created and wrote first.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::{json, Value};

use crate::helpers::{
    body_of, event, fresh_database_unmigrated, spawn_app, spawn_app_on, AppOptions, TestApp,
    IDENTITIES_TOKEN, TOKEN, WRITE_TOKEN,
};

const RADIUS: &str = "/api/v1/accounting/radius";
/// 2026-11-20T00:00:00Z.
const T0: i64 = 1_795_132_800;

impl TestApp {
    /// Posts a body to the RADIUS ingest; returns status and body.
    async fn post_radius(&self, content_type: &str, body: String) -> (u16, Vec<u8>) {
        let mut response = self
            .client()
            .post(format!("{}{RADIUS}", self.address))
            .insert_header(("Authorization", format!("Bearer {WRITE_TOKEN}")))
            .insert_header(("Content-Type", content_type))
            .send_body(body)
            .await
            .expect("post");
        let body = body_of(&mut response).await;
        (response.status().as_u16(), body)
    }

    async fn post_batch(&self, packets: &[Value]) -> Value {
        let (status, body) = self
            .post_radius(
                "application/json",
                Value::Array(packets.to_vec()).to_string(),
            )
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("JSON")
    }

    /// The status of `GET path` with the read token (body read and dropped).
    async fn status_of(&self, path: &str) -> u16 {
        let mut response = self.get(path).send().await.expect("request");
        let _ = body_of(&mut response).await;
        response.status().as_u16()
    }

    /// Every stored session, in a comparable form (no radacctid, ordered by key).
    async fn session_rows(&self) -> Vec<Value> {
        let rows = self
            .db
            .query(
                "SELECT (to_jsonb(r) - 'radacctid' - 'acctinterval')::text FROM radacct r ORDER BY acctuniqueid",
                &[],
            )
            .await
            .expect("read radacct");
        rows.iter()
            .map(|r| serde_json::from_str(r.get(0)).expect("JSON row"))
            .collect()
    }
}

/// One accounting request for session `sid` of `user` on NAS 10.0.0.1.
fn packet(status: &str, sid: &str, user: &str, at: i64, extra: Value) -> Value {
    let mut v = json!({
        "Acct-Status-Type": status,
        "Acct-Session-Id": sid,
        "User-Name": user,
        "NAS-IP-Address": "10.0.0.1",
        "NAS-Port": 1,
        "NAS-Port-Type": "Wireless-802.11",
        "Calling-Station-Id": "68-05-71-A4-EF-0E",
        "Called-Station-Id": "00-11-22-33-44-55:Corp",
        "Framed-IP-Address": "192.0.2.10",
        "Event-Timestamp": T0 + at,
    });
    if let (Some(map), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        map.extend(more.clone());
    }
    v
}

fn interim(sid: &str, at: i64, time: i64, input: i64) -> Value {
    packet(
        "Interim-Update",
        sid,
        "alice",
        at,
        json!({"Acct-Session-Time": time, "Acct-Input-Octets": input, "Acct-Output-Octets": input / 2}),
    )
}

fn stop(sid: &str, at: i64, time: i64, input: Option<i64>) -> Value {
    let mut extra = json!({"Acct-Session-Time": time, "Acct-Terminate-Cause": "User-Request"});
    if let Some(input) = input {
        extra["Acct-Input-Octets"] = json!(input);
    }
    packet("Stop", sid, "alice", at, extra)
}

/// A deterministic shuffle.
fn shuffled(packets: &[Value], seed: u64) -> Vec<Value> {
    let mut out = packets.to_vec();
    let mut state = seed;
    for i in (1..out.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.swap(i, (state >> 33) as usize % (i + 1));
    }
    out
}

/// The ingest rules, each a packet sequence and what the row must be.
#[actix_web::test]
async fn packet_sequences_give_the_same_rows_in_any_order_and_replayed() {
    sequences_hold(&spawn_app().await).await;
}

/// Each packet sequence gives its row, in any order, replayed, one request
/// per post or in one batch.
async fn sequences_hold(app: &TestApp) {
    let sequences: Vec<(&str, Vec<Value>, Value)> = vec![
        (
            "start, interims, stop",
            vec![
                packet("Start", "A", "alice", 0, json!({})),
                interim("A", 300, 300, 1000),
                interim("A", 600, 600, 2000),
                stop("A", 900, 900, Some(3000)),
            ],
            json!({"acctstoptime": "2026-11-20T00:15:00+00:00", "acctsessiontime": 900,
                   "acctinputoctets": 3000, "acctterminatecause": "User-Request",
                   "acctstarttime": "2026-11-20T00:00:00+00:00"}),
        ),
        (
            "lost start: interim creates at event − session time",
            vec![interim("B", 600, 600, 10)],
            json!({"acctstarttime": "2026-11-20T00:00:00+00:00", "acctstoptime": null,
                   "acctsessiontime": 600, "acctinputoctets": 10}),
        ),
        (
            "a stop without octets and a late interim keep the larger counters; no reopening",
            vec![
                packet("Start", "C", "alice", 0, json!({})),
                interim("C", 300, 300, 5000),
                stop("C", 400, 400, None),
                interim("C", 350, 350, 4000),
            ],
            json!({"acctstoptime": "2026-11-20T00:06:40+00:00", "acctsessiontime": 400,
                   "acctinputoctets": 5000, "acctupdatetime": "2026-11-20T00:06:40+00:00"}),
        ),
        (
            "lost start: the stop creates the closed session",
            vec![stop("D", 100, 100, Some(7))],
            json!({"acctstarttime": "2026-11-20T00:00:00+00:00",
                   "acctstoptime": "2026-11-20T00:01:40+00:00", "acctinputoctets": 7}),
        ),
        (
            "gigawords fold into 64-bit counters",
            vec![packet(
                "Interim-Update",
                "E",
                "alice",
                60,
                json!({"Acct-Session-Time": 60, "Acct-Input-Octets": 5, "Acct-Input-Gigawords": 3,
                       "Acct-Output-Gigawords": 1, "Acct-Output-Octets": 0}),
            )],
            json!({"acctinputoctets": 3i64 * (1i64 << 32) + 5, "acctoutputoctets": 1i64 << 32}),
        ),
    ];
    for (name, packets, expected) in &sequences {
        app.db
            .batch_execute("TRUNCATE radacct")
            .await
            .expect("truncate");
        app.post_batch(packets).await;
        let reference = app.session_rows().await;
        assert_eq!(reference.len(), 1, "{name}");
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&reference[0][key], value, "{name}: {key}");
        }
        // Replayed twice, and shuffled, one request per post or in one batch.
        app.post_batch(packets).await;
        app.post_batch(packets).await;
        assert_eq!(app.session_rows().await, reference, "{name}: replayed");
        for seed in [1, 2, 3] {
            app.db
                .batch_execute("TRUNCATE radacct")
                .await
                .expect("truncate");
            let order = shuffled(packets, seed);
            for p in &order {
                let (status, body) = app.post_radius("application/json", p.to_string()).await;
                assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
            }
            assert_eq!(app.session_rows().await, reference, "{name}: order {seed}");
            app.db
                .batch_execute("TRUNCATE radacct")
                .await
                .expect("truncate");
            app.post_batch(&order).await;
            assert_eq!(app.session_rows().await, reference, "{name}: batch {seed}");
        }
    }
}

#[actix_web::test]
async fn accounting_on_closes_every_open_session_of_that_nas() {
    let app = spawn_app().await;
    let other_nas = json!({"NAS-IP-Address": "10.0.0.2"});
    app.post_batch(&[
        packet("Start", "A", "alice", 0, json!({})),
        packet("Start", "B", "bob", 10, json!({})),
        packet("Start", "C", "carol", 10, other_nas),
        stop("A", 50, 50, None),
    ])
    .await;
    let answer = app
        .post_batch(&[
            json!({"Acct-Status-Type": "Accounting-On", "NAS-IP-Address": "10.0.0.1",
                              "Event-Timestamp": T0 + 100}),
        ])
        .await;
    assert_eq!(answer["closedByNasReboot"], 1);
    let rows = app
        .db
        .query(
            "SELECT acctsessionid, acctterminatecause, acctstoptime IS NULL, acctsessiontime \
             FROM radacct ORDER BY acctsessionid",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, Option<String>, bool, Option<i64>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("A".into(), Some("User-Request".into()), false, Some(50)),
            ("B".into(), Some("NAS-Reboot".into()), false, Some(90)),
            ("C".into(), None, true, Some(0)),
        ]
    );
}

#[actix_web::test]
async fn invalid_batches_store_nothing_and_single_posts_are_quarantined() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_radius(
            "application/json",
            json!([packet("Start", "A", "alice", 0, json!({})),
                   {"Acct-Status-Type": "Start", "User-Name": "secret-user"}])
            .to_string(),
        )
        .await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_slice(&body).unwrap();
    let text = error["error_description"].as_str().unwrap();
    assert!(
        text.contains("Record 2") && text.contains("Acct-Session-Id"),
        "{text}"
    );
    assert!(!text.contains("secret-user"));
    assert!(app.session_rows().await.is_empty());

    // rlm_rest posts one object: a request acctstream cannot use is kept
    // and acknowledged, so the NAS stops retransmitting.
    let bad = json!({"Acct-Status-Type": {"type": "integer", "value": ["Start"]},
                     "User-Name": {"type": "string", "value": ["secret-user"]},
                     "NAS-IP-Address": {"type": "ipaddr", "value": ["not-an-ip"]},
                     "Acct-Session-Id": {"type": "string", "value": ["S"]}});
    let (status, _) = app.post_radius("application/json", bad.to_string()).await;
    assert_eq!(status, 204);
    let quarantined = app
        .get_json_as(WRITE_TOKEN, "/api/v1/accounting/radius/rejected")
        .await;
    assert_eq!(quarantined["count"], 1);
    let item = &quarantined["rejected"][0];
    assert!(item["reason"].as_str().unwrap().contains("NAS-IP-Address"));
    // Identities are pseudonymised for a token without the identities scope.
    let shown = item["record"]["User-Name"]["value"][0].as_str().unwrap();
    assert_eq!(shown, app.pseudonym("secret-user"));
    let mut response = app
        .get_as(TOKEN, "/api/v1/accounting/radius/rejected")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let _ = body_of(&mut response).await;
    let metrics = {
        let mut r = app.get("/metrics").send().await.unwrap();
        String::from_utf8(body_of(&mut r).await).unwrap()
    };
    assert!(
        metrics.contains("acctstream_radius_requests_total{outcome=\"quarantined\"} 1"),
        "{metrics}"
    );
    let (status, _) = app.post_radius("text/plain", "{}".into()).await;
    assert_eq!(status, 415);
}

/// Three sessions around the day 2026-11-20: one across its start, one
/// inside, one still open.
async fn seed_sessions(app: &TestApp) {
    app.post_batch(&[
        packet("Start", "before", "alice", -3600, json!({})),
        stop("before", 600, 4200, Some(100)),
        packet(
            "Start",
            "inside",
            "bob",
            7200,
            json!({"Calling-Station-Id": "aa:bb:cc:dd:ee:ff",
                                                       "NAS-IP-Address": "10.0.0.2"}),
        ),
        packet(
            "Stop",
            "inside",
            "bob",
            9000,
            json!({"Acct-Session-Time": 1800,
               "Calling-Station-Id": "aa:bb:cc:dd:ee:ff", "NAS-IP-Address": "10.0.0.2",
               "Acct-Terminate-Cause": "Idle-Timeout"}),
        ),
        packet("Start", "open", "alice", 80_000, json!({})),
    ])
    .await;
}

#[actix_web::test]
async fn windows_hold_the_sessions_that_overlap_them() {
    let app = spawn_app().await;
    seed_sessions(&app).await;
    let ids = |body: &Value| -> Vec<String> {
        body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["acctSessionId"].as_str().unwrap().to_owned())
            .collect()
    };
    let day = app
        .get_json_as(TOKEN, "/api/v1/statistics/sessions/day/2026-11-20")
        .await;
    assert_eq!(ids(&day), vec!["before", "inside", "open"]);
    // The day before holds only the session that started then.
    let before = app
        .get_json_as(TOKEN, "/api/v1/statistics/sessions/day/2026-11-19")
        .await;
    assert_eq!(ids(&before), vec!["before"]);
    // An hour window at the second bound: the session stopped exactly at 02:30.
    let hour = app
        .get_json_as(TOKEN, "/api/v1/statistics/sessions/hour/2026-11-20T02")
        .await;
    assert_eq!(ids(&hour), vec!["inside"]);
    let after = app
        .get_json_as(TOKEN, "/api/v1/statistics/sessions/hour/2026-11-20T03")
        .await;
    assert!(ids(&after).is_empty());
    let session = &day["sessions"][1];
    assert_eq!(session["status"], "closed");
    assert_eq!(session["durationSeconds"], 1800);
    assert_eq!(session["acctTerminateCause"], "Idle-Timeout");
    assert_eq!(session["userName"], app.pseudonym("bob"));
    assert_eq!(
        session["callingStationId"],
        app.pseudonym("aa:bb:cc:dd:ee:ff")
    );
    assert_eq!(session["framedIpAddress"], app.pseudonym("192.0.2.10"));
    assert_eq!(session["nasIpAddress"], "10.0.0.2");
    // Filters, each narrowing to what it names.
    for (query, expected) in [
        ("status=closed", vec!["before", "inside"]),
        ("status=stale", vec!["open"]),
        ("nas=10.0.0.2", vec!["inside"]),
        ("terminateCause=Idle-Timeout", vec!["inside"]),
        (
            "nasPortType=Wireless-802.11",
            vec!["before", "inside", "open"],
        ),
        (
            "calledStationId=00-11-22-33-44-55:Corp",
            vec!["before", "inside", "open"],
        ),
        ("realm=nowhere", vec![]),
    ] {
        let body = app
            .get_json_as(
                TOKEN,
                &format!("/api/v1/statistics/sessions/day/2026-11-20?{query}"),
            )
            .await;
        assert_eq!(ids(&body), expected, "{query}");
    }
    let alice = app.pseudonym("alice");
    let body = app
        .get_json_as(
            TOKEN,
            &format!("/api/v1/statistics/sessions/day/2026-11-20?user={alice}"),
        )
        .await;
    assert_eq!(ids(&body), vec!["before", "open"]);
    let device = app.pseudonym("68:05:71:a4:ef:0e");
    let body = app
        .get_json_as(
            TOKEN,
            &format!("/api/v1/statistics/sessions/day/2026-11-20?device={device}"),
        )
        .await;
    assert_eq!(ids(&body), vec!["before", "open"]);
    // Raw identities need the scope, and then are shown raw.
    let mut r = app
        .get_as(
            TOKEN,
            "/api/v1/statistics/sessions/day/2026-11-20?user=alice",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let _ = body_of(&mut r).await;
    let body = app
        .get_json_as(
            IDENTITIES_TOKEN,
            "/api/v1/statistics/sessions/day/2026-11-20?user=alice",
        )
        .await;
    assert_eq!(body["sessions"][0]["userName"], "alice");
    assert_eq!(body["sessions"][0]["callingStationId"], "68:05:71:a4:ef:0e");
    // CSV streams the same rows.
    let mut r = app
        .get("/api/v1/statistics/sessions/day/2026-11-20")
        .insert_header(("Accept", "text/csv"))
        .send()
        .await
        .unwrap();
    let csv = String::from_utf8(body_of(&mut r).await).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("RadAcctId,Acct-Session-Id,"));
    assert!(!csv.contains("alice"));
}

#[actix_web::test]
async fn one_session_online_and_histories() {
    let app = spawn_app().await;
    seed_sessions(&app).await;
    // A fresh open session: online now.
    let now = chrono::Utc::now().timestamp();
    app.post_batch(&[packet("Start", "live", "carol", now - T0 - 60, json!({}))])
        .await;
    let online = app.get_json_as(TOKEN, "/api/v1/sessions/online").await;
    let online = online["sessions"].as_array().unwrap();
    assert_eq!(online.len(), 1, "{online:?}");
    assert_eq!(online[0]["acctSessionId"], "live");
    assert_eq!(online[0]["status"], "open");
    let id = online[0]["radAcctId"].as_i64().unwrap();
    let one = app
        .get_json_as(TOKEN, &format!("/api/v1/sessions/{id}"))
        .await;
    assert_eq!(one["acctSessionId"], "live");
    assert!(one.get("sessions").is_none());
    let mut r = app.get("/api/v1/sessions/999999").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let error: Value = serde_json::from_slice(&body_of(&mut r).await).unwrap();
    assert_eq!(error["error"], "not_found");
    assert_eq!(app.status_of("/api/v1/sessions/abc").await, 400);

    // The stale session (open, not heard of for days) reads as stale with
    // its last update as the inferred stop.
    let stale = app
        .get_json_as(
            TOKEN,
            "/api/v1/statistics/sessions/day/2026-11-20?status=stale",
        )
        .await;
    assert_eq!(stale["sessions"][0]["inferredStop"], "2026-11-20T22:13:20");
    assert_eq!(stale["sessions"][0]["durationSeconds"], 0);

    let alice = app.pseudonym("alice");
    let session_ids = |history: &Value| -> Vec<String> {
        history["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["acctSessionId"].as_str().unwrap().to_owned())
            .collect()
    };
    let history = app
        .get_json_as(
            TOKEN,
            &format!("/api/v1/users/{alice}/sessions?from=2026-11-01&to=2026-11-30"),
        )
        .await;
    let ids = session_ids(&history);
    assert_eq!(ids, vec!["open", "before"], "newest first");
    // Bounds in any year PostgreSQL holds (year 0 is 1 BC, year 10000 needs
    // five digits): the same history.
    let history = app
        .get_json_as(
            TOKEN,
            &format!("/api/v1/users/{alice}/sessions?from=0000-06-01&to=%2B10000-01-01"),
        )
        .await;
    let all = session_ids(&history);
    assert!(all.starts_with(&ids), "{all:?}");
    let device = app.pseudonym("aa:bb:cc:dd:ee:ff");
    let history = app
        .get_json_as(
            TOKEN,
            &format!("/api/v1/devices/{device}/sessions?period=3660d"),
        )
        .await;
    assert_eq!(history["sessions"][0]["acctSessionId"], "inside");
    let unknown = "0".repeat(64);
    assert_eq!(
        app.status_of(&format!("/api/v1/users/{unknown}/sessions"))
            .await,
        404
    );
    assert_eq!(
        app.status_of(&format!("/api/v1/users/{alice}/sessions?period=week"))
            .await,
        400
    );

    let calendar = app
        .get_json_as(
            TOKEN,
            "/api/v1/devices/sessions/calendar?start=2026-11-20&end=2026-11-21",
        )
        .await;
    let entries = calendar.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1]["resourceId"], device);
    assert_eq!(entries[1]["start"], "2026-11-20T02:00:00Z");
    assert_eq!(entries[1]["end"], "2026-11-20T02:30:00Z");
    assert!(entries[1]["color"].as_str().unwrap().starts_with('#'));
    assert_eq!(
        app.status_of("/api/v1/devices/sessions/calendar?start=2026-01-01&end=2026-12-01")
            .await,
        400
    );
}

#[actix_web::test]
async fn the_keyset_list_stays_correct_while_sessions_change() {
    let app = spawn_app().await;
    let packets: Vec<Value> = (0..25)
        .map(|i| packet("Start", &format!("s{i:02}"), "alice", i * 60, json!({})))
        .collect();
    app.post_batch(&packets).await;
    let first = app.get_json_as(TOKEN, "/api/v1/sessions?limit=10").await;
    assert_eq!(first["count"], 25);
    assert!(first["previous"].is_null());
    let names = |page: &Value| -> Vec<String> {
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["acctSessionId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&first)[0], "s24");
    // New sessions and updates of listed ones arrive between pages.
    app.post_batch(&[
        packet("Start", "new", "alice", 9999, json!({})),
        stop("s20", 99_999, 10, Some(5)),
    ])
    .await;
    let next = first["next"].as_str().unwrap();
    let path = &next[next.find("/api/").unwrap()..];
    let second = app.get_json_as(TOKEN, path).await;
    assert_eq!(names(&second)[0], "s14", "no session skipped or repeated");
    let third_link = second["next"].as_str().unwrap();
    let third = app
        .get_json_as(TOKEN, &third_link[third_link.find("/api/").unwrap()..])
        .await;
    assert_eq!(names(&third), vec!["s04", "s03", "s02", "s01", "s00"]);
    assert!(third["next"].is_null());
    let previous = third["previous"].as_str().unwrap();
    let back = app
        .get_json_as(TOKEN, &previous[previous.find("/api/").unwrap()..])
        .await;
    assert_eq!(names(&back), names(&second));
    assert_eq!(app.status_of("/api/v1/sessions?cursor=bogus").await, 400);
}

#[actix_web::test]
async fn online_pages_newest_first_and_stays_correct_while_sessions_change() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp() - T0;
    // 25 open sessions started a minute apart, two of them in the same
    // second (the order then falls back to radAcctId).
    let mut packets: Vec<Value> = (0..24)
        .map(|i| {
            packet(
                "Start",
                &format!("o{i:02}"),
                "alice",
                now - 1500 + i * 60,
                json!({}),
            )
        })
        .collect();
    packets.push(packet(
        "Start",
        "o23b",
        "bob",
        now - 1500 + 23 * 60,
        json!({}),
    ));
    app.post_batch(&packets).await;
    let names = |page: &Value| -> Vec<String> {
        page["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["acctSessionId"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = |link: &Value| {
        let link = link.as_str().unwrap();
        link[link.find("/api/").unwrap()..].to_owned()
    };
    // A page of 100 by default: every session, no link.
    let all = app.get_json_as(TOKEN, "/api/v1/sessions/online").await;
    assert_eq!(names(&all).len(), 25);
    assert!(all["nextLink"].is_null() && all["previousLink"].is_null());
    let first = app
        .get_json_as(TOKEN, "/api/v1/sessions/online?limit=10")
        .await;
    assert!(first["previousLink"].is_null());
    assert_eq!(names(&first)[..3], names(&all)[..3]);
    assert_eq!(names(&first), names(&all)[..10]);
    // Sessions start and stop between pages: none skipped or repeated.
    app.post_batch(&[
        packet("Start", "late", "alice", now - 5, json!({})),
        stop("o20", now, 60, Some(5)),
        stop("o12", now, 60, Some(5)),
    ])
    .await;
    let second = app.get_json_as(TOKEN, &path(&first["nextLink"])).await;
    let expected: Vec<String> = names(&all)[10..21]
        .iter()
        .filter(|n| *n != "o12")
        .cloned()
        .collect();
    assert_eq!(names(&second), expected);
    let third = app.get_json_as(TOKEN, &path(&second["nextLink"])).await;
    assert_eq!(names(&third), vec!["o03", "o02", "o01", "o00"]);
    assert!(third["nextLink"].is_null());
    // Back: the ten sessions just newer than the third page.
    let back = app.get_json_as(TOKEN, &path(&third["previousLink"])).await;
    assert_eq!(names(&back), names(&second));
    // CSV pages carry their links in `Link`.
    let mut csv = app
        .get("/api/v1/sessions/online?limit=2&format=csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let link = csv
        .headers()
        .get("Link")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        link.contains("rel=\"next\"") && link.contains("cursor="),
        "{link}"
    );
    let body = String::from_utf8(body_of(&mut csv).await).unwrap();
    assert_eq!(body.lines().count(), 3, "{body}");
    // A /sessions cursor, and positions before PostgreSQL's first year.
    let far = URL_SAFE_NO_PAD.encode(format!("o1:{}:1", -7_000_000_000_000_000_000_i64));
    for bad in [
        "cursor=bogus",
        "cursor=djE6MTA",
        "limit=0",
        "limit=x",
        &format!("cursor={far}"),
    ] {
        assert_eq!(
            app.status_of(&format!("/api/v1/sessions/online?{bad}"))
                .await,
            400,
            "{bad}"
        );
    }
}

#[actix_web::test]
async fn a_person_has_one_pseudonym_in_authentication_events_and_sessions() {
    let app = spawn_app().await;
    app.insert(&[event("2026-11-20T00:00:00Z", "josé+o'neil@x")])
        .await;
    // As rlm_rest posts a non-ASCII name: one \u00XX per byte.
    app.post_batch(&[packet(
        "Start",
        "A",
        "jos\u{00C3}\u{00A9}+o'neil@x",
        0,
        json!({}),
    )])
    .await;
    // As rlm_sql stores it.
    app.db
        .batch_execute(
            "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, acctstarttime) \
             VALUES ('B', 'b', 'josé=2Bo=27neil@x', '10.0.0.3', '2026-11-20T01:00:00Z')",
        )
        .await
        .unwrap();
    let events = app
        .get_json_as(TOKEN, "/api/v1/statistics/events/day/2026-11-20")
        .await;
    let pseudonym = events["events"][0]["userId"].as_str().unwrap().to_owned();
    let sessions = app
        .get_json_as(
            TOKEN,
            &format!("/api/v1/users/{pseudonym}/sessions?period=3660d"),
        )
        .await;
    let sessions = sessions["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    for s in sessions {
        assert_eq!(s["userName"], pseudonym);
    }
    let raw = app
        .get_json_as(
            IDENTITIES_TOKEN,
            "/api/v1/statistics/sessions/day/2026-11-20?user=jos%C3%A9%2Bo%27neil%40x",
        )
        .await;
    let names: Vec<&str> = raw["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["josé+o'neil@x", "josé+o'neil@x"]);
}

/// FreeRADIUS 3.2's own schema.sql, as a FreeRADIUS installation creates it.
const FREERADIUS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS radacct (
	RadAcctId bigserial PRIMARY KEY, AcctSessionId text NOT NULL, AcctUniqueId text NOT NULL UNIQUE,
	UserName text, Realm text, NASIPAddress inet NOT NULL, NASPortId text, NASPortType text,
	AcctStartTime timestamp with time zone, AcctUpdateTime timestamp with time zone,
	AcctStopTime timestamp with time zone, AcctInterval bigint, AcctSessionTime bigint,
	AcctAuthentic text, ConnectInfo_start text, ConnectInfo_stop text, AcctInputOctets bigint,
	AcctOutputOctets bigint, CalledStationId text, CallingStationId text, AcctTerminateCause text,
	ServiceType text, FramedProtocol text, FramedIPAddress inet, FramedIPv6Address inet,
	FramedIPv6Prefix inet, FramedInterfaceId text, DelegatedIPv6Prefix inet, Class text);
CREATE INDEX radacct_active_session_idx ON radacct (AcctUniqueId) WHERE AcctStopTime IS NULL;
CREATE INDEX radacct_bulk_close ON radacct (NASIPAddress, AcctStartTime) WHERE AcctStopTime IS NULL;
CREATE INDEX radacct_start_user_idx ON radacct (AcctStartTime, UserName);
CREATE INDEX radacct_calss_idx ON radacct (Class);";

/// A Start as FreeRADIUS's queries.conf inserts it (empty strings for
/// missing attributes).
const FREERADIUS_START: &str =
    "INSERT INTO radacct (AcctSessionId, AcctUniqueId, UserName, Realm, \
    NASIPAddress, NASPortId, NASPortType, AcctStartTime, AcctUpdateTime, AcctStopTime, \
    AcctSessionTime, AcctAuthentic, ConnectInfo_start, ConnectInfo_Stop, AcctInputOctets, \
    AcctOutputOctets, CalledStationId, CallingStationId, AcctTerminateCause, ServiceType, \
    FramedProtocol, FramedIpAddress) VALUES ('S1', 'u1', 'dave', NULLIF('', ''), '10.1.1.1', \
    NULLIF('7', ''), 'Ethernet', TO_TIMESTAMP(1795132800), TO_TIMESTAMP(1795132800), NULL, 0, \
    'RADIUS', '', NULL, 0, 0, '', '00:0A:95:9D:68:16', NULL, '', '', NULLIF('', '')::inet)";

#[actix_web::test]
async fn an_existing_freeradius_table_is_read_as_it_is() {
    let (name, config) = fresh_database_unmigrated().await;
    let db = crate::helpers::connect(&config).await;
    db.batch_execute(FREERADIUS_SCHEMA).await.unwrap();
    db.batch_execute(FREERADIUS_START).await.unwrap();
    let columns_before: Vec<String> = db
        .query(
            "SELECT column_name || ' ' || data_type FROM information_schema.columns \
             WHERE table_name = 'radacct' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut client = crate::helpers::connect(&config).await;
    acctstream::db::migrate::run(&mut client, &acctstream::kinds::REGISTRY.kinds())
        .await
        .expect("migrate");
    let app = spawn_app_on(name, config, AppOptions::default()).await;
    let columns_after: Vec<String> = db
        .query(
            "SELECT column_name || ' ' || data_type FROM information_schema.columns \
             WHERE table_name = 'radacct' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns_before, columns_after, "radacct is never altered");
    let indexes: Vec<String> = db
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'radacct' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (index, _) in acctstream::kinds::session::KIND.indexes {
        assert!(indexes.iter().any(|i| i == index), "{index} in {indexes:?}");
    }
    // A row FreeRADIUS wrote is found by its device's pseudonym (the
    // directory catches up), with empty strings read as absent.
    let device = app.pseudonym("00:0a:95:9d:68:16");
    let history = app
        .get_json_as(
            TOKEN,
            &format!("/api/v1/devices/{device}/sessions?period=3660d"),
        )
        .await;
    let session = &history["sessions"][0];
    assert_eq!(session["acctSessionId"], "S1");
    assert_eq!(session["userName"], app.pseudonym("dave"));
    assert!(
        session.get("calledStationId").is_none(),
        "'' reads as absent"
    );
    assert!(session.get("connectInfoStart").is_none());
    assert_eq!(session["nasPortId"], "7");
    // And acctstream's ingest merges into it.
    app.post_batch(&[
        json!({"Acct-Status-Type": "Stop", "Acct-Unique-Session-Id": "u1",
                             "Acct-Session-Id": "S1", "User-Name": "dave",
                             "NAS-IP-Address": "10.1.1.1", "Acct-Session-Time": 60,
                             "Event-Timestamp": T0 + 60}),
    ])
    .await;
    let one = app
        .get_json_as(
            TOKEN,
            &format!("/api/v1/devices/{device}/sessions?period=3660d"),
        )
        .await;
    assert_eq!(one["sessions"][0]["status"], "closed");
    assert_eq!(one["sessions"][0]["durationSeconds"], 60);

    // The change feed needs a trigger on radacct: on a table acctstream
    // did not create, only once an operator asks (`migrate
    // --track-changes`); then it holds the rows already there, and what
    // FreeRADIUS writes next, and the table's columns are still its own.
    let feed = "/api/v1/statistics/sessions/changes";
    let refused = app.get(feed).send().await.unwrap();
    assert_eq!(refused.status(), 409);
    let window = app
        .get("/api/v1/statistics/sessions/day/2026-11-20")
        .send()
        .await
        .unwrap();
    let link = window
        .headers()
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!link.contains("rel=\"changes\""), "{link}");
    let tracked = acctstream::db::migrate::track_changes(
        &mut client,
        &acctstream::kinds::REGISTRY.kinds(),
        true,
    )
    .await
    .unwrap();
    assert!(tracked.contains(&"sessions"), "{tracked:?}");
    let columns_tracked: Vec<String> = db
        .query(
            "SELECT column_name || ' ' || data_type FROM information_schema.columns \
             WHERE table_name = 'radacct' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns_before, columns_tracked, "radacct is never altered");
    db.batch_execute(&FREERADIUS_START.replace("'S1', 'u1'", "'S2', 'u2'"))
        .await
        .unwrap();
    let records = crate::changes::records_after(&app, feed, "sessions", 2).await;
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["acctSessionId"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["S1", "S2"]);
}

/// FreeRADIUS's `radacct` partitioned by month of `AcctStartTime`, as
/// docs/scaling.md shows an operator: every unique constraint includes the
/// partition key, and a default partition catches any other time.
pub(crate) const PARTITIONED_RADACCT: &str = "CREATE TABLE radacct (
	RadAcctId bigserial, AcctSessionId text NOT NULL, AcctUniqueId text NOT NULL,
	UserName text, Realm text, NASIPAddress inet NOT NULL, NASPortId text, NASPortType text,
	AcctStartTime timestamp with time zone NOT NULL, AcctUpdateTime timestamp with time zone,
	AcctStopTime timestamp with time zone, AcctInterval bigint, AcctSessionTime bigint,
	AcctAuthentic text, ConnectInfo_start text, ConnectInfo_stop text, AcctInputOctets bigint,
	AcctOutputOctets bigint, CalledStationId text, CallingStationId text, AcctTerminateCause text,
	ServiceType text, FramedProtocol text, FramedIPAddress inet, FramedIPv6Address inet,
	FramedIPv6Prefix inet, FramedInterfaceId text, DelegatedIPv6Prefix inet, Class text,
	PRIMARY KEY (RadAcctId, AcctStartTime), UNIQUE (AcctUniqueId, AcctStartTime)
) PARTITION BY RANGE (AcctStartTime);
CREATE TABLE radacct_2026_10 PARTITION OF radacct FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE radacct_2026_11 PARTITION OF radacct FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TABLE radacct_default PARTITION OF radacct DEFAULT;
CREATE INDEX radacct_active_session_idx ON radacct (AcctUniqueId) WHERE AcctStopTime IS NULL;
CREATE INDEX radacct_bulk_close ON radacct (NASIPAddress, AcctStartTime) WHERE AcctStopTime IS NULL;
CREATE INDEX radacct_start_user_idx ON radacct (AcctStartTime, UserName);
CREATE INDEX radacct_calss_idx ON radacct (Class);";

#[actix_web::test]
async fn a_radacct_partitioned_by_time_works_as_freeradiuss_own() {
    let (name, config) = fresh_database_unmigrated().await;
    let db = crate::helpers::connect(&config).await;
    db.batch_execute(PARTITIONED_RADACCT).await.unwrap();
    let mut client = crate::helpers::connect(&config).await;
    acctstream::db::migrate::run(&mut client, &acctstream::kinds::REGISTRY.kinds())
        .await
        .expect("migrate");
    let app = spawn_app_on(name, config, AppOptions::default()).await;

    // acctstream's indexes exist on the parent and are valid: built on
    // each partition and attached.
    for (index, _) in acctstream::kinds::session::KIND.indexes {
        let row = db
            .query_one(
                "SELECT i.indisvalid, c.relkind::text, (SELECT count(*) FROM pg_inherits \
                 WHERE inhparent = c.oid) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid \
                 WHERE c.relname = $1",
                &[index],
            )
            .await
            .unwrap_or_else(|e| panic!("{index}: {e}"));
        let (valid, kind, parts): (bool, String, i64) = (row.get(0), row.get(1), row.get(2));
        assert!(valid, "{index} is valid");
        assert_eq!(kind, "I", "{index} is a partitioned index");
        assert_eq!(parts, 3, "{index} has one index per partition");
    }

    // Every ingest rule holds as on FreeRADIUS's own table: one row per
    // session whatever the order, replays change nothing.
    sequences_hold(&app).await;

    // A session whose start moves back into the month before (a stop
    // after an interim says it began earlier) moves partition, and stays
    // one row; replayed, still one.
    app.db.batch_execute("TRUNCATE radacct").await.unwrap();
    let november = T0 - 19 * 86_400;
    let moving = [
        interim("M", november - T0 + 300, 60, 10),
        stop("M", november - T0 + 600, 900, Some(20)),
    ];
    for _ in 0..2 {
        app.post_batch(&moving[..1]).await;
        app.post_batch(&moving[1..]).await;
    }
    let rows = app
        .db
        .query(
            "SELECT tableoid::regclass::text, acctstarttime, acctinputoctets FROM radacct",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one row for the session");
    assert_eq!(rows[0].get::<_, String>(0), "radacct_2026_10");
    assert_eq!(rows[0].get::<_, i64>(2), 20);
    // Concurrent batches starting the same new sessions still make one row
    // each (the advisory locks on their keys).
    let starts: Vec<Value> = (0..20)
        .map(|i| packet("Start", &format!("C{i}"), "carol", 3600 + i, json!({})))
        .collect();
    let mut posts = Vec::new();
    for _ in 0..4 {
        posts.push(app.post_batch(&starts));
    }
    futures_util::future::join_all(posts).await;
    let counted: i64 = app
        .db
        .query_one(
            "SELECT count(*) FROM radacct WHERE acctsessionid LIKE 'C%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counted, 20);

    // Reads: a window, one session by id, online (a session of now lands
    // in the default partition) and the change feed once tracked.
    let now = chrono::Utc::now().timestamp();
    app.post_batch(&[packet("Start", "live", "dave", now - T0 - 60, json!({}))])
        .await;
    let day = app
        .get_json_as(TOKEN, "/api/v1/statistics/sessions/day/2026-10-31")
        .await;
    let sessions = day["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{day}");
    assert_eq!(sessions[0]["acctSessionId"], "M");
    let online = app.get_json_as(TOKEN, "/api/v1/sessions/online").await;
    assert_eq!(online["sessions"][0]["acctSessionId"], "live");
    let id = online["sessions"][0]["radAcctId"].as_i64().unwrap();
    let one = app
        .get_json_as(TOKEN, &format!("/api/v1/sessions/{id}"))
        .await;
    assert_eq!(one["acctSessionId"], "live");
    let place: String = app
        .db
        .query_one(
            "SELECT tableoid::regclass::text FROM radacct WHERE acctsessionid = 'live'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(place, "radacct_default");
    let tracked = acctstream::db::migrate::track_changes(
        &mut client,
        &acctstream::kinds::REGISTRY.kinds(),
        true,
    )
    .await
    .expect("track changes on a partitioned radacct");
    assert!(tracked.contains(&"sessions"), "{tracked:?}");
    app.post_batch(&[stop("M", november - T0 + 700, 1000, Some(30))])
        .await;
    let feed = "/api/v1/statistics/sessions/changes";
    // The rows there (M, 20 starts, live), each in its last state.
    let records = crate::changes::records_after(&app, feed, "sessions", 22).await;
    let last = records
        .iter()
        .rev()
        .find(|r| r["acctSessionId"] == "M")
        .expect("M in the feed");
    assert_eq!(last["acctInputOctets"], 30, "{last}");
}

/// The stored sessions' ids, in order.
async fn session_ids(app: &TestApp) -> Vec<String> {
    app.db
        .query(
            "SELECT acctsessionid FROM radacct ORDER BY acctsessionid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Retention on a `radacct` partitioned by month: a partition whose every
/// session stopped before the cutoff goes whole (said by a dry run first),
/// one holding an open session or one stopped later is trimmed in batches,
/// the change feed learns of the drop, and without a default partition the
/// detach is `CONCURRENTLY`.
#[actix_web::test]
async fn retention_drops_whole_partitions_and_trims_the_rest() {
    use acctstream::db::retention::{self, Cutoffs, RetentionOptions};
    let (name, config) = fresh_database_unmigrated().await;
    let db = crate::helpers::connect(&config).await;
    db.batch_execute(PARTITIONED_RADACCT).await.unwrap();
    db.batch_execute(
        "CREATE TABLE radacct_2026_09 PARTITION OF radacct \
         FOR VALUES FROM ('2026-09-01') TO ('2026-10-01')",
    )
    .await
    .unwrap();
    let mut client = crate::helpers::connect(&config).await;
    let kinds = acctstream::kinds::REGISTRY.kinds();
    acctstream::db::migrate::run(&mut client, &kinds)
        .await
        .expect("migrate");
    acctstream::db::migrate::track_changes(&mut client, &kinds, true)
        .await
        .expect("track changes");
    let app = spawn_app_on(name, config.clone(), AppOptions::default()).await;
    let at = |time: &str| {
        chrono::DateTime::parse_from_rfc3339(time)
            .expect("time")
            .timestamp()
            - T0
    };
    let closed = |sid: &str, start: &str, stop_at: &str| {
        let (start, stop_at) = (at(start), at(stop_at));
        vec![
            packet("Start", sid, "alice", start, json!({})),
            stop(sid, stop_at, stop_at - start, Some(1)),
        ]
    };
    let mut packets = Vec::new();
    packets.extend(closed(
        "S9a",
        "2026-09-10T10:00:00Z",
        "2026-09-10T11:00:00Z",
    ));
    packets.extend(closed(
        "S9b",
        "2026-09-20T10:00:00Z",
        "2026-09-21T10:00:00Z",
    ));
    packets.extend(closed(
        "S10a",
        "2026-10-05T10:00:00Z",
        "2026-10-05T11:00:00Z",
    ));
    packets.extend(closed(
        "S10late",
        "2026-10-30T10:00:00Z",
        "2026-11-05T10:00:00Z",
    ));
    packets.push(packet(
        "Start",
        "S10open",
        "alice",
        at("2026-10-20T10:00:00Z"),
        json!({}),
    ));
    packets.extend(closed(
        "S11",
        "2026-11-02T10:00:00Z",
        "2026-11-03T10:00:00Z",
    ));
    app.post_batch(&packets).await;
    assert_eq!(session_ids(&app).await.len(), 6);
    let options = RetentionOptions {
        upkeep: acctstream::kinds::REGISTRY.upkeeps(),
        pseudonymiser: Some(app.pseudonymiser.clone()),
        kinds: kinds.clone(),
        batch_pause: std::time::Duration::ZERO,
        ..RetentionOptions::default()
    };
    let november = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);

    let preview = retention::preview(&app.pool, Cutoffs::from(november), &options)
        .await
        .unwrap();
    let sessions_preview = preview.iter().find(|p| p.name == "sessions").unwrap();
    assert_eq!(sessions_preview.rows, 3, "{sessions_preview:?}");
    assert_eq!(sessions_preview.partitions, ["public.radacct_2026_09"]);
    assert_eq!(session_ids(&app).await.len(), 6, "a dry run drops nothing");

    // On a pool of one connection, as `acctstream purge` has: the drops
    // must not wait for a connection the pass holds.
    let one =
        acctstream::db::pool::build(config.clone(), acctstream::db::tls::default_connector(), 1)
            .unwrap();
    let purge = |cutoff| {
        let (pool, options) = (one.clone(), &options);
        async move {
            retention::purge(
                &pool,
                Cutoffs::from(cutoff),
                options,
                &tokio_util::sync::CancellationToken::new(),
            )
            .await
            .unwrap()
        }
    };
    let outcome = purge(november).await;
    assert_eq!(
        outcome.dropped,
        [("sessions", "public.radacct_2026_09".to_owned())]
    );
    assert_eq!(outcome.deleted("sessions"), 1, "S10a, in a batch");
    assert_eq!(session_ids(&app).await, ["S10late", "S10open", "S11"]);
    let gone: Option<String> = db
        .query_one("SELECT to_regclass('radacct_2026_09')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, None, "the partition is dropped");
    // The feed: the dropped sessions' positions left the side table, and
    // the deletion horizon moved past them (a cursor before them is 410).
    let (epoch, side): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT (SELECT epoch FROM acctstream_change_horizon WHERE kind = 'sessions'), \
                 (SELECT count(*) FROM acctstream_change_radacct)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(epoch >= 1);
    assert_eq!(side, 3);
    let stale = app
        .get("/api/v1/statistics/sessions/changes?after=sessions.0.1.1")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 410);

    // Without a default partition, the detach is CONCURRENTLY: November
    // goes with a cutoff of December (S10open keeps October).
    db.batch_execute("DROP TABLE radacct_default")
        .await
        .unwrap();
    let december = november + chrono::Duration::days(30);
    let outcome = purge(december).await;
    assert_eq!(
        outcome.dropped,
        [("sessions", "public.radacct_2026_11".to_owned())]
    );
    assert_eq!(session_ids(&app).await, ["S10open"]);
}

#[actix_web::test]
async fn the_sql_mac_notation_matches_the_services() {
    let app = spawn_app().await;
    for raw in [
        "68-05-71-A4-EF-0E",
        "68:05:71:a4:ef:0e",
        "680571A4EF0E",
        "6805.71a4.ef0e",
        "68:05-71:a4:ef:0e",
        "not a mac",
        "192.0.2.1",
    ] {
        let sql: String = app
            .db
            .query_one("SELECT acctstream_mac($1)", &[&raw])
            .await
            .unwrap()
            .get(0);
        let rust = acctstream::core::identity::IdentityType::Mac.normalise(raw);
        assert_eq!(sql, rust, "{raw}");
    }
}

#[actix_web::test]
async fn stale_means_unheard_for_three_intervals_or_the_configured_time() {
    let now = chrono::Utc::now().timestamp() - T0;
    let packets = [
        // Heard of two minutes ago, no interval known: open by default.
        packet("Start", "quiet", "alice", now - 120, json!({})),
        // Interim interval 30 s, unheard for two minutes: stale.
        packet(
            "Start",
            "lost",
            "bob",
            now - 120,
            json!({"Acct-Interim-Interval": 30}),
        ),
    ];
    let (default, online) = statuses(spawn_app().await, &packets).await;
    assert_eq!(
        default,
        vec![
            ("lost".into(), "stale".into()),
            ("quiet".into(), "open".into())
        ]
    );
    assert_eq!(online, 1);
    // ACCTSTREAM_SESSION_STALE_AFTER=60 applies to every session.
    let (name, config) = crate::helpers::fresh_database().await;
    let app_database = acctstream::config::with_stale_after(config.clone(), Some(60));
    let app = spawn_app_on(
        name,
        config,
        AppOptions {
            app_database: Some(app_database),
            ..AppOptions::default()
        },
    )
    .await;
    let (configured, online) = statuses(app, &packets).await;
    assert_eq!(
        configured,
        vec![
            ("lost".into(), "stale".into()),
            ("quiet".into(), "stale".into())
        ]
    );
    assert_eq!(online, 0);
}

/// Each session's status in the list, and how many are online.
async fn statuses(app: TestApp, packets: &[Value]) -> (Vec<(String, String)>, usize) {
    app.post_batch(packets).await;
    let list = app.get_json_as(TOKEN, "/api/v1/sessions").await;
    let mut got: Vec<(String, String)> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["acctSessionId"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let online = app.get_json_as(TOKEN, "/api/v1/sessions/online").await;
    (got, online["sessions"].as_array().unwrap().len())
}

#[actix_web::test]
async fn retention_keeps_open_sessions_and_recent_stops() {
    let app = spawn_app().await;
    // Started a year before the cutoff: one stopped before it, one stopped
    // after it, one still open.
    app.post_batch(&[
        packet("Start", "old", "alice", -400 * 86_400, json!({})),
        stop("old", -399 * 86_400, 86_400, None),
        packet("Start", "long", "bob", -400 * 86_400, json!({})),
        packet(
            "Stop",
            "long",
            "bob",
            -86_400,
            json!({"Acct-Session-Time": 399 * 86_400}),
        ),
        packet("Start", "open", "carol", -400 * 86_400, json!({})),
    ])
    .await;
    let cutoff: chrono::DateTime<chrono::Utc> =
        chrono::DateTime::from_timestamp(T0 - 180 * 86_400, 0).unwrap();
    let outcome = acctstream::db::retention::purge(
        &app.pool,
        cutoff,
        &acctstream::db::retention::RetentionOptions {
            kinds: acctstream::kinds::REGISTRY.kinds(),
            ..Default::default()
        },
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("purge");
    assert_eq!(outcome.deleted("sessions"), 1);
    let left: Vec<String> = app
        .db
        .query("SELECT acctsessionid FROM radacct ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec!["long", "open"]);
}

#[actix_web::test]
async fn the_list_takes_the_seed_apis_date_forms_and_session_status() {
    let app = spawn_app().await;
    seed_sessions(&app).await;
    let names = |page: Value| -> Vec<String> {
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["acctSessionId"].as_str().unwrap().to_owned())
            .collect()
    };
    for (query, expected) in [
        ("session_status=active", vec!["open"]),
        ("session_status=inactive", vec!["inside", "before"]),
        ("session_status=all", vec!["open", "inside", "before"]),
        (
            "start_date=2026-11-20%2002:00:00&end_date=2026-11-20%2002:10:00%2B00:00",
            vec!["inside"],
        ),
        ("start_date=2026-11-20T02:40:00Z", vec!["open"]),
        ("end_date=2026-11-19", vec!["before"]),
    ] {
        let page = app
            .get_json_as(TOKEN, &format!("/api/v1/sessions?{query}"))
            .await;
        assert_eq!(names(page), expected, "{query}");
    }
    for bad in [
        "session_status=gone",
        "start_date=yesterday",
        "start_date=2026-11-21&end_date=2026-11-20",
    ] {
        assert_eq!(
            app.status_of(&format!("/api/v1/sessions?{bad}")).await,
            400,
            "{bad}"
        );
    }
}

/// Issue 27, item 4: windows are half-open for sessions too, at both
/// bounds and in both directions, so a poller walking windows meets every
/// session touching a bound once: a session stopped exactly at midnight is
/// in the day before only (ascending), one started exactly at midnight in
/// the day after only (descending), one of no length in the window of its
/// instant.
#[actix_web::test]
async fn a_session_touching_a_window_bound_is_in_one_window_only() {
    let app = spawn_app().await;
    for (id, start, stop) in [
        (
            "ends-at-midnight",
            "2026-11-19T22:00:00Z",
            Some("2026-11-20T00:00:00Z"),
        ),
        (
            "no-length",
            "2026-11-20T00:00:00Z",
            Some("2026-11-20T00:00:00Z"),
        ),
        (
            "starts-at-midnight",
            "2026-11-20T00:00:00Z",
            Some("2026-11-20T01:00:00Z"),
        ),
        ("open-from-midnight", "2026-11-21T00:00:00Z", None),
    ] {
        let at = |t: &str| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        app.db
            .execute(
                "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
                 acctstarttime, acctupdatetime, acctstoptime, acctinterval) \
                 VALUES ($1, $1, 'u', '192.0.2.1', $2, $2, $3, 600)",
                &[&id, &at(start), &stop.map(at)],
            )
            .await
            .unwrap();
    }
    let ids = |body: &Value| -> Vec<String> {
        body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["acctSessionId"].as_str().unwrap().to_owned())
            .collect()
    };
    let window = |path: String| {
        let app = &app;
        async move { ids(&app.get_json_as(TOKEN, &path).await) }
    };
    let day = |d: &str, sort: &str| format!("/api/v1/statistics/sessions/day/{d}{sort}");
    // Ascending, [D, D+1).
    assert_eq!(
        window(day("2026-11-19", "")).await,
        vec!["ends-at-midnight"]
    );
    assert_eq!(
        window(day("2026-11-20", "")).await,
        vec!["no-length", "starts-at-midnight"]
    );
    assert_eq!(
        window(day("2026-11-21", "")).await,
        vec!["open-from-midnight"]
    );
    // Descending, (D-1, D].
    assert_eq!(
        window(day("2026-11-20", "?sort=-")).await,
        vec!["no-length", "ends-at-midnight"]
    );
    assert_eq!(
        window(day("2026-11-21", "?sort=-")).await,
        vec!["starts-at-midnight"]
    );
    assert_eq!(
        window(day("2026-11-22", "?sort=-")).await,
        vec!["open-from-midnight"]
    );
    // Walking hours over the night in either direction meets each once.
    let mut ascending = Vec::new();
    let mut descending = Vec::new();
    for hour in 0..6 {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-19T21:00:00Z").unwrap()
            + chrono::Duration::hours(hour);
        let name = at.format("%Y-%m-%dT%H").to_string();
        ascending.extend(window(format!("/api/v1/statistics/sessions/hour/{name}")).await);
        let end = (at + chrono::Duration::hours(1))
            .format("%Y-%m-%dT%H")
            .to_string();
        descending.extend(window(format!("/api/v1/statistics/sessions/hour/{end}?sort=-")).await);
    }
    ascending.sort();
    descending.sort();
    // ends-at-midnight spans 22:00-24:00: two hours; the others one each.
    assert_eq!(
        ascending,
        vec![
            "ends-at-midnight",
            "ends-at-midnight",
            "no-length",
            "starts-at-midnight"
        ]
    );
    assert_eq!(ascending, descending);
}

/// Sessions FreeRADIUS wrote by SQL, one per user `u0`…`u{n-1}`.
const FOREIGN_ROWS: &str = "INSERT INTO radacct (acctsessionid, acctuniqueid, username, \
    nasipaddress, acctstarttime, acctstoptime) \
    SELECT 'S' || i, 'u' || i, 'u' || (i % 50), '10.0.0.1', \
           timestamptz '2026-11-20T01:00:00Z' + i * interval '1 second', \
           timestamptz '2026-11-20T02:00:00Z' + i * interval '1 second' \
    FROM generate_series(1, 500) AS i";

/// Issue 27, item 6: while the identity directory's first catch-up after
/// start-up runs, a lookup by pseudonym answers at once with what it has
/// and says it may be incomplete, and `/readyz` says where it stands; no
/// request runs the catch-up itself then.
#[actix_web::test]
async fn a_lookup_during_the_first_catch_up_says_it_may_be_incomplete() {
    let progress = std::sync::Arc::new(acctstream::db::directory::Progress::default());
    let mut options = AppOptions::default();
    options.http.directory_progress = progress.clone();
    let app = crate::helpers::spawn_app_with(options).await;
    app.db.batch_execute(FOREIGN_ROWS).await.unwrap();
    progress.set(acctstream::db::directory::CatchUpState::CatchingUp);
    let pseudonym = acctstream::core::identity::pseudonym_of(
        &app.pseudonymiser,
        acctstream::core::identity::IdentityType::RadiusUser,
        "u7",
    );
    let path = format!("/api/v1/statistics/sessions/day/2026-11-20?user={pseudonym}");
    let started = std::time::Instant::now();
    let mut response = app.get(&path).send().await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("x-lookup-incomplete").unwrap(),
        "identity directory catching up"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sessions"].as_array().unwrap().len(), 0, "{body}");
    let readyz: Value = app
        .client()
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(readyz["directory"]["state"], "catchingUp", "{readyz}");

    // Caught up: the lookup catches up the rest itself and is complete.
    progress.set(acctstream::db::directory::CatchUpState::CaughtUp);
    let mut response = app.get(&path).send().await.unwrap();
    assert!(response.headers().get("x-lookup-incomplete").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sessions"].as_array().unwrap().len(), 10, "{body}");
}

/// Issue 27, item 6: `serve` catches the directory up in the background
/// from start-up and follows new rows, so lookups find what FreeRADIUS
/// wrote without running the catch-up themselves.
#[actix_web::test]
async fn the_directory_follows_rows_others_write_in_the_background() {
    let app = crate::helpers::spawn_app_with(AppOptions {
        jobs: true,
        ..AppOptions::default()
    })
    .await;
    app.db.batch_execute(FOREIGN_ROWS).await.unwrap();
    let pseudonym = acctstream::core::identity::pseudonym_of(
        &app.pseudonymiser,
        acctstream::core::identity::IdentityType::RadiusUser,
        "u7",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let found = app
            .db
            .query_opt(
                "SELECT 1 FROM identity_directory WHERE pseudonym = $1",
                &[&pseudonym.as_str()],
            )
            .await
            .unwrap()
            .is_some();
        if found {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not caught up in the background"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let readyz: Value = app
        .client()
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(readyz["directory"]["state"], "caughtUp", "{readyz}");
    assert!(
        readyz["directory"]["rowsRead"].as_u64().unwrap() >= 500,
        "{readyz}"
    );
    let mut response = app
        .get(&format!(
            "/api/v1/statistics/sessions/day/2026-11-20?user={pseudonym}"
        ))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("x-lookup-incomplete").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sessions"].as_array().unwrap().len(), 10, "{body}");
}

/// Issue 27, item 7: a window of sessions reads the table from a bound on
/// the start (the window's start less the length past which only the 100
/// longest closed sessions are longer), the open sessions that started
/// before it, and those longest sessions: it holds exactly the sessions
/// the overlap condition alone selects, in order, in both directions,
/// with long sessions, old open ones and sessions touching the bounds.
#[actix_web::test]
async fn windows_from_a_start_bound_hold_what_the_overlap_condition_selects() {
    let app = spawn_app().await;
    // 2,000 sessions over three days of up to 5.5 hours, 150 of 1 to 6
    // days (more than the 100 read by their length), open ones started up
    // to 60 days before, and some touching midnights.
    app.db
        .batch_execute(
            "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
                 acctstarttime, acctupdatetime, acctstoptime, acctinterval) \
             SELECT 'short' || i, 'short' || i, 'u' || (i % 40), '192.0.2.1', s, s, \
                    s + (i * 7919 % 20000) * interval '1 second', 600 \
             FROM generate_series(1, 2000) AS i, \
                  LATERAL (SELECT timestamptz '2026-11-18' + i * interval '130 seconds' AS s) AS x; \
             INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
                 acctstarttime, acctupdatetime, acctstoptime, acctinterval) \
             SELECT 'long' || i, 'long' || i, 'v' || i, '192.0.2.2', s, s, \
                    s + (1 + i % 5) * interval '1 day' + i * interval '1 minute', 600 \
             FROM generate_series(1, 150) AS i, \
                  LATERAL (SELECT timestamptz '2026-11-12' + i * interval '1 hour' AS s) AS x; \
             INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
                 acctstarttime, acctupdatetime, acctinterval) \
             SELECT 'open' || i, 'open' || i, 'w' || i, '192.0.2.3', s, s, 600 \
             FROM generate_series(1, 30) AS i, \
                  LATERAL (SELECT timestamptz '2026-11-21' - i * interval '2 days' AS s) AS x; \
             INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
                 acctstarttime, acctupdatetime, acctstoptime, acctinterval) VALUES \
             ('touch-a', 'touch-a', 'x', '192.0.2.4', '2026-11-10', '2026-11-10', '2026-11-19', 600), \
             ('touch-b', 'touch-b', 'x', '192.0.2.4', '2026-11-19', '2026-11-19', '2026-11-19', 600), \
             ('touch-c', 'touch-c', 'x', '192.0.2.4', '2026-11-19', '2026-11-19', '2026-11-20', 600); \
             ANALYZE radacct",
        )
        .await
        .unwrap();
    let mut checked = 0;
    let day = |d: &str| (format!("day/{d}"), format!("{d}T00:00:00Z"), 86_400);
    let hour = |h: &str| (format!("hour/{h}"), format!("{h}:00:00Z"), 3_600);
    for (window, start, seconds) in [
        day("2026-11-13"),
        day("2026-11-18"),
        day("2026-11-19"),
        day("2026-11-20"),
        day("2026-11-21"),
        hour("2026-11-19T00"),
        hour("2026-11-19T13"),
        hour("2026-11-20T23"),
        (
            "week/2026-11-16".to_owned(),
            "2026-11-16T00:00:00Z".to_owned(),
            7 * 86_400,
        ),
    ] {
        let named: chrono::DateTime<chrono::Utc> = start.parse().unwrap();
        let length = chrono::Duration::seconds(seconds);
        for descending in [false, true] {
            let path = format!(
                "/api/v1/statistics/sessions/{window}{}",
                if descending { "?sort=-" } else { "" }
            );
            // Ascending: [named, named + length); descending: the window
            // ending at its named instant, (named - length, named].
            let (lower, upper) = if descending {
                (named - length, named)
            } else {
                (named, named + length)
            };
            let body = app.get_json_as(TOKEN, &path).await;
            {
                let got: Vec<i64> = body["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["radAcctId"].as_i64().unwrap())
                    .collect();
                let (condition, order) = if descending {
                    (
                        "(acctstoptime IS NULL OR acctstoptime > $1::timestamptz) \
                         AND acctstarttime <= $2::timestamptz \
                         AND (acctstarttime < $2::timestamptz OR acctstoptime = acctstarttime)",
                        "DESC",
                    )
                } else {
                    (
                        "(acctstoptime IS NULL OR acctstoptime > $1::timestamptz \
                         OR acctstarttime >= $1::timestamptz) AND acctstarttime < $2::timestamptz",
                        "",
                    )
                };
                let want: Vec<i64> = app
                    .db
                    .query(
                        &format!(
                            "SELECT radacctid FROM radacct WHERE {condition} \
                             ORDER BY acctstarttime {order}, radacctid {order}"
                        ),
                        &[&lower, &upper],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                assert!(!want.is_empty(), "{path}: the data should reach it");
                assert_eq!(got, want, "{path}");
                checked += want.len();
            }
        }
    }
    // Long sessions past the 100 read by length, and old open ones, were
    // among them.
    assert!(checked > 2000, "{checked}");

    // On the app's connections (db::pool::REQUEST_PLANNER), the week is
    // read as the three parts merged in order, each from an index, nothing
    // sorted but the few longest sessions: the first row comes at once.
    use acctstream::core::kind::{Listing, Selection};
    use acctstream::core::window::{Direction, Period, Window};
    for direction in [Direction::Ascending, Direction::Descending] {
        let week = Window::parse(Period::Week, "2026-11-16", direction).unwrap();
        let listing = Listing::window(&week, Selection::default());
        let (lower, upper) = week.bounds();
        let bound = listing
            .start_bound(chrono::Duration::hours(6))
            .expect("a lower bound");
        let client = app.pool.get().await.unwrap();
        let plan: Vec<String> = client
            .query(
                &format!("EXPLAIN {}", listing.sql(&acctstream::kinds::session::KIND)),
                &[&lower, &upper, &bound],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = plan.join("\n");
        let top = plan.lines().next().unwrap_or_default();
        assert!(!top.contains("Sort") && !top.contains("Gather"), "{plan}");
        assert!(plan.contains("Merge Append"), "{plan}");
        for slow in ["Seq Scan", "Bitmap", "Gather"] {
            assert!(!plan.contains(slow), "{plan}");
        }
    }
}

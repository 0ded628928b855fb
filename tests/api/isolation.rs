//! Organizations kept apart on every route of every kind (issue 28): two
//! organizations' records interleaved in the same windows, and a token of
//! one reads every route without a byte of the other's (records, counts,
//! figures, links, errors), once with both layers and once with row
//! security alone (the query builder's condition left out).

use acctstream::core::identity::{pseudonym_of, IdentityType};
use serde_json::{json, Value};

use crate::helpers::{body_of, spawn_app_with, AppOptions, TestApp};

const TOKENS: &str = "acme-w=acme-write:read+write@acme,acme=acme-read:read@acme,\
globex-w=globex-write:read+write@globex,globex=globex-read:read@globex,\
operator=op-read:read+tenants,acme-audit=acme-audit:read+audit@acme,\
globex-audit=globex-audit:read+audit@globex,op-audit=op-audit:read+audit+tenants";

/// Yesterday (UTC): recent enough that retention keeps it.
fn day() -> String {
    (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string()
}

/// The month of [`day`].
fn month() -> String {
    day()[..7].to_owned()
}
/// Every record of globex carries this in a field shown as it is stored.
const MARK: &str = "globex";

async fn get(app: &TestApp, token: &str, path: &str, accept: &str) -> (u16, String) {
    let mut response = app
        .get_as(token, path)
        .insert_header(("Accept", accept))
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    let body = body_of(&mut response).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn json(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let (status, body) = get(app, token, path, "application/json").await;
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, value)
}

async fn post(app: &TestApp, token: &str, path: &str, content_type: &str, body: String) -> u16 {
    app.client()
        .post(format!("{}{path}", app.address))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("Content-Type", content_type))
        .send_body(body)
        .await
        .expect("POST")
        .status()
        .as_u16()
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// A RADIUS request of `org` (its NAS network: 10.1/16 acme, 10.2/16 globex).
fn radius(org: &str, status: &str, sid: &str, user: &str, second: i64) -> Value {
    let nas = if org == "acme" {
        "10.1.0.1"
    } else {
        "10.2.0.1"
    };
    let t0 = chrono::DateTime::parse_from_rfc3339(&format!("{}T10:00:00Z", day()))
        .unwrap()
        .timestamp();
    json!({
        "Acct-Status-Type": status, "Acct-Session-Id": sid, "User-Name": user,
        "NAS-IP-Address": nas, "NAS-Port": 1, "NAS-Port-Type": "Wireless-802.11",
        "Calling-Station-Id": if org == "acme" { "02:00:00:00:00:0a" } else { "02:00:00:00:00:0b" },
        "Framed-IP-Address": "192.0.2.10", "Event-Timestamp": t0 + second,
    })
}

/// Sessions of NASes in 10.1/16 are acme's, in 10.2/16 globex's.
async fn map_nases(app: &TestApp) {
    app.db
        .batch_execute(
            "INSERT INTO acctstream_session_tenant (position, nas, realm, tenant) VALUES \
             (10, '10.1.0.0/16', NULL, 'acme'), (20, '10.2.0.0/16', NULL, 'globex')",
        )
        .await
        .unwrap();
}

/// The records of both organizations, of every kind, interleaved in time.
async fn load(app: &TestApp) {
    let day = day();
    map_nases(app).await;
    let event = |second: u32, user: &str, origin: &str, id: &str| {
        json!({"timestamp": format!("{day}T10:00:{second:02}Z"), "authMethodType": "PASSWORD",
               "authMethodName": "password.1", "authRequestOrigin": origin,
               "userId": user, "eventId": id})
    };
    let client = |second: u32, mac: &str, ssid: &str| {
        json!({"timestamp": format!("{day}T10:00:{second:02}Z"), "macAddress": mac,
               "eventType": "Failure", "failureCode": 5, "failure": "Auth timeout",
               "ssid": ssid})
    };
    for (token, lines) in [
        (
            "acme-write",
            vec![
                event(1, "ann@acme", "CN=AcmeApp", "e1"),
                event(3, "ada@acme", "CN=AcmeApp", "e2"),
                event(5, "ann@acme", "CN=AcmeApp", "e3"),
            ],
        ),
        (
            "globex-write",
            vec![
                event(2, "gus@globex", "CN=GlobexApp", "e1"),
                event(4, "gil@globex", "CN=GlobexApp", "e2"),
            ],
        ),
    ] {
        let status = post(
            app,
            token,
            "/api/v1/events",
            "application/x-ndjson",
            ndjson(&lines),
        )
        .await;
        assert_eq!(status, 200, "{token}");
    }
    for (token, lines) in [
        (
            "acme-write",
            vec![client(1, "02:00:00:00:00:0a", "acme-wifi")],
        ),
        (
            "globex-write",
            vec![
                client(2, "02:00:00:00:00:0b", "globex-wifi"),
                client(3, "02:00:00:00:00:0b", "globex-wifi"),
            ],
        ),
    ] {
        let status = post(
            app,
            token,
            "/api/v1/client-events",
            "application/x-ndjson",
            ndjson(&lines),
        )
        .await;
        assert_eq!(status, 200, "{token}");
    }
    // Sessions, written by each organization's token (its NAS maps to it).
    for (token, org, packets) in [
        (
            "acme-write",
            "acme",
            vec![
                radius("acme", "Start", "acme-s1", "ann", 0),
                radius("acme", "Start", "acme-s2", "ada", 20),
            ],
        ),
        (
            "globex-write",
            "globex",
            vec![radius("globex", "Start", "globex-s1", "gus", 10)],
        ),
    ] {
        let status = post(
            app,
            token,
            "/api/v1/accounting/radius",
            "application/json",
            Value::Array(packets).to_string(),
        )
        .await;
        assert_eq!(status, 200, "{org}");
    }
    app.db
        .batch_execute("UPDATE radacct SET acctupdatetime = now() WHERE acctstoptime IS NULL")
        .await
        .unwrap();
    // One quarantined request of each (a NAS address that is none).
    for (token, sid) in [("acme-write", "acme-q"), ("globex-write", "globex-q")] {
        let bad = json!({"Acct-Status-Type": "Start", "Acct-Session-Id": sid,
                         "User-Name": "someone", "NAS-IP-Address": "not-an-ip"});
        let status = post(
            app,
            token,
            "/api/v1/accounting/radius",
            "application/json",
            bad.to_string(),
        )
        .await;
        assert_eq!(status, 204, "{token}");
    }
    crate::changes::settled(app).await;
}

fn acme(app: &TestApp, ty: IdentityType, raw: &str) -> String {
    pseudonym_of(&app.pseudonymiser.in_tenant("acme"), ty, raw)
}

fn globex(app: &TestApp, ty: IdentityType, raw: &str) -> String {
    pseudonym_of(&app.pseudonymiser.in_tenant("globex"), ty, raw)
}

async fn session_id(app: &TestApp, sid: &str) -> i64 {
    app.db
        .query_one(
            "SELECT radacctid FROM radacct WHERE acctsessionid = $1",
            &[&sid],
        )
        .await
        .unwrap()
        .get(0)
}

/// Every route a token of acme reads: with what its answer must hold of
/// acme's own (`None`: no record is listed there), and its status.
async fn matrix(app: &TestApp) -> Vec<(&'static str, String, u16, Option<&'static str>)> {
    let day = day();
    let month = month();
    let mac = acme(app, IdentityType::Mac, "02:00:00:00:00:0a");
    let user = acme(app, IdentityType::RadiusUser, "ann");
    let their_mac = globex(app, IdentityType::Mac, "02:00:00:00:00:0b");
    let their_user = globex(app, IdentityType::RadiusUser, "gus");
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let (ours, theirs) = (
        session_id(app, "acme-s1").await,
        session_id(app, "globex-s1").await,
    );
    let r = "acme-read";
    vec![
        // Authentication events.
        (
            r,
            format!("/api/v1/statistics/events/day/{day}"),
            200,
            Some("CN=AcmeApp"),
        ),
        (
            r,
            format!("/api/v1/statistics/events/counts/day/{day}"),
            200,
            None,
        ),
        (
            r,
            "/api/v1/statistics/events/changes".into(),
            200,
            Some("CN=AcmeApp"),
        ),
        (
            r,
            format!("/api/v1/accounting/verify/events/{day}"),
            200,
            Some("CN=AcmeApp"),
        ),
        (r, format!("/api/v1/accounting/report/{month}"), 200, None),
        (
            r,
            format!("/api/v1/accounting/verify/daily-users/{month}"),
            200,
            None,
        ),
        // Wi-Fi client events.
        (
            r,
            format!("/api/v1/statistics/client-events/day/{day}"),
            200,
            Some("acme-wifi"),
        ),
        (
            r,
            format!("/api/v1/statistics/client-events/counts/day/{day}"),
            200,
            None,
        ),
        (
            r,
            "/api/v1/statistics/client-events/changes".into(),
            200,
            Some("acme-wifi"),
        ),
        (
            r,
            format!("/api/v1/statistics/client-events/summary/day/{day}"),
            200,
            None,
        ),
        (
            r,
            format!("/api/v1/clients/{mac}/events?from={day}"),
            200,
            Some("acme-wifi"),
        ),
        (
            r,
            format!("/api/v1/clients/{their_mac}/events?from={day}"),
            404,
            None,
        ),
        // RADIUS sessions.
        (
            r,
            format!("/api/v1/statistics/sessions/day/{day}"),
            200,
            Some("acme-s1"),
        ),
        (
            r,
            format!("/api/v1/statistics/sessions/counts/day/{day}"),
            200,
            None,
        ),
        (
            r,
            "/api/v1/statistics/sessions/changes".into(),
            200,
            Some("acme-s1"),
        ),
        (r, "/api/v1/sessions".into(), 200, Some("acme-s1")),
        (r, "/api/v1/sessions/online".into(), 200, Some("acme-s1")),
        (r, format!("/api/v1/sessions/{ours}"), 200, Some("acme-s1")),
        (r, format!("/api/v1/sessions/{theirs}"), 404, None),
        (
            r,
            format!("/api/v1/users/{user}/sessions?from={day}"),
            200,
            Some("acme-s1"),
        ),
        (
            r,
            format!("/api/v1/users/{their_user}/sessions?from={day}"),
            404,
            None,
        ),
        (
            r,
            format!("/api/v1/devices/{mac}/sessions?from={day}"),
            200,
            Some("acme-s1"),
        ),
        (
            r,
            format!("/api/v1/devices/{their_mac}/sessions?from={day}"),
            404,
            None,
        ),
        (
            r,
            format!("/api/v1/devices/sessions/calendar?start={day}&end={today}"),
            200,
            None,
        ),
        (
            "acme-write",
            "/api/v1/accounting/radius/rejected".into(),
            200,
            Some("acme-q"),
        ),
        // The audit trail (of today: the reads above).
        (
            "acme-audit",
            format!("/api/v1/audit/day/{today}"),
            200,
            Some("acme"),
        ),
        (
            "acme-audit",
            format!("/api/v1/audit/counts/day/{today}"),
            200,
            None,
        ),
        (
            "acme-audit",
            "/api/v1/audit/changes".into(),
            200,
            Some("acme"),
        ),
    ]
}

/// Reads every route of [`matrix`] as acme, in JSON and (where it streams
/// records) CSV: nothing of globex, acme's own where records are listed,
/// and the figures acme's alone.
async fn acme_sees_its_own_only(app: &TestApp) {
    let day = day();
    // The audit trail holds the reads of both organizations.
    for token in ["acme-read", "globex-read", "globex-audit"] {
        let (status, _) = get(
            app,
            token,
            &format!("/api/v1/statistics/events/day/{day}"),
            "application/json",
        )
        .await;
        assert_eq!(status, 200);
    }
    crate::helpers::eventually("globex's reads are audited", || async {
        let today = chrono::Utc::now().format("%Y-%m-%d");
        let (_, body) = get(
            app,
            "op-audit",
            &format!("/api/v1/audit/day/{today}?tenant=globex"),
            "application/json",
        )
        .await;
        body.contains("globex-audit")
    })
    .await;
    for (token, path, status, own) in matrix(app).await {
        for accept in ["application/json", "text/csv"] {
            let (got, body) = get(app, token, &path, accept).await;
            if got == 406 && accept == "text/csv" {
                continue; // a route without a CSV representation
            }
            assert_eq!(got, status, "{token} {path} ({accept}): {body}");
            assert!(
                !body.to_lowercase().contains(MARK),
                "{token} {path} ({accept}) shows globex's: {body}"
            );
            if let Some(own) = own {
                assert!(body.contains(own), "{token} {path} ({accept}): {body}");
            }
        }
    }
    // Counts and figures are acme's alone.
    let counts =
        |path: String| async move { json(app, "acme-read", &path).await.1["counts"].clone() };
    assert_eq!(
        counts(format!("/api/v1/statistics/events/counts/day/{day}")).await,
        json!([{"count": 3}])
    );
    assert_eq!(
        counts(format!("/api/v1/statistics/client-events/counts/day/{day}")).await,
        json!([{"count": 1}])
    );
    assert_eq!(
        counts(format!("/api/v1/statistics/sessions/counts/day/{day}")).await,
        json!([{"count": 2}])
    );
    let (_, listed) = json(app, "acme-read", "/api/v1/sessions").await;
    assert_eq!(listed["count"], 2, "{listed}");
    let (_, quarantine) = json(app, "acme-write", "/api/v1/accounting/radius/rejected").await;
    assert_eq!(quarantine["count"], 1, "{quarantine}");
    let (_, summary) = json(
        app,
        "acme-read",
        &format!("/api/v1/statistics/client-events/summary/day/{day}"),
    )
    .await;
    assert!(summary.to_string().contains("\"count\":1"), "{summary}");
    assert!(!summary.to_string().contains("\"count\":2"), "{summary}");
    // Server-sent events of each kind's feed: acme's records, no other.
    for (path, own) in [
        ("/api/v1/statistics/events/changes", 3),
        ("/api/v1/statistics/client-events/changes", 1),
        ("/api/v1/statistics/sessions/changes", 2),
    ] {
        let text = pushed(app, "acme-read", path).await;
        assert_eq!(crate::changes::messages(&text).len(), own, "{path}: {text}");
        assert!(!text.to_lowercase().contains(MARK), "{path}: {text}");
    }
    // /metrics names no organization.
    let mut response = app.get("/metrics").send().await.unwrap();
    let metrics = String::from_utf8_lossy(&body_of(&mut response).await).into_owned();
    assert!(metrics.contains("acctstream_"), "{metrics}");
    assert!(
        !metrics.contains("acme") && !metrics.contains(MARK),
        "{metrics}"
    );
}

/// What the server-sent events of `path` push to `token` within two
/// seconds (the feed's backlog comes at once).
async fn pushed(app: &TestApp, token: &str, path: &str) -> String {
    use futures_util::StreamExt;
    let mut stream = app
        .get_as(token, path)
        .insert_header(("Accept", "text/event-stream"))
        .send()
        .await
        .expect("open the event stream");
    assert_eq!(stream.status(), 200, "{path}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut text = String::new();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

/// The monthly report's total and its daily figures, as `token` reads them.
async fn figures(app: &TestApp, token: &str, narrow: &str) -> (i64, i64) {
    let month = month();
    let (status, report) = json(
        app,
        token,
        &format!("/api/v1/accounting/report/{month}{narrow}"),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let total = report["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("no total in {report}"));
    let (_, daily) = json(
        app,
        token,
        &format!("/api/v1/accounting/verify/daily-users/{month}{narrow}"),
    )
    .await;
    let users: i64 = daily["rows"]
        .as_array()
        .map(|days| days.iter().filter_map(|d| d["userCount"].as_i64()).sum())
        .unwrap_or_else(|| panic!("no rows in {daily}"));
    (total, users)
}

#[actix_web::test]
async fn a_token_of_one_organization_sees_nothing_of_another_on_any_route() {
    let day = day();
    let month = month();
    let app = spawn_app_with(AppOptions {
        more_tokens: TOKENS,
        jobs: true,
        ..AppOptions::default()
    })
    .await;
    load(&app).await;
    acme_sees_its_own_only(&app).await;

    // Pseudonyms: one device is the same pseudonym across acme's kinds
    // (client events and sessions), and unrelated to globex's.
    let (_, clients) = json(
        &app,
        "acme-read",
        &format!("/api/v1/statistics/client-events/day/{day}"),
    )
    .await;
    let (_, sessions) = json(
        &app,
        "acme-read",
        &format!("/api/v1/statistics/sessions/day/{day}"),
    )
    .await;
    let mac = acme(&app, IdentityType::Mac, "02:00:00:00:00:0a");
    assert_eq!(clients["clientEvents"][0]["macAddress"], mac.as_str());
    assert_eq!(
        sessions["sessions"][0]["callingStationId"],
        mac.as_str(),
        "{sessions}"
    );
    assert_ne!(mac, globex(&app, IdentityType::Mac, "02:00:00:00:00:0a"));

    // Report figures per organization sum to the operator's.
    let (acme_total, acme_daily) = figures(&app, "acme-read", "").await;
    let (globex_total, globex_daily) = figures(&app, "globex-read", "").await;
    let (all_total, all_daily) = figures(&app, "op-read", "").await;
    assert_eq!((acme_total, acme_daily), (2, 2));
    assert_eq!((globex_total, globex_daily), (2, 2));
    assert_eq!(
        (all_total, all_daily),
        (acme_total + globex_total, acme_daily + globex_daily)
    );
    assert_eq!(figures(&app, "op-read", "?tenant=globex").await, (2, 2));
    // The operator's day of events narrowed to one organization keeps it in
    // its links.
    let (_, body) = json(
        &app,
        "op-read",
        &format!("/api/v1/accounting/verify/events/{day}?tenant=globex"),
    )
    .await;
    assert_eq!(body["events"].as_array().map(Vec::len), Some(2), "{body}");
    assert!(
        body["links"]["next"]
            .as_str()
            .unwrap_or_default()
            .ends_with("?tenant=globex"),
        "{body}"
    );
    let (status, body) = json(
        &app,
        "acme-read",
        &format!("/api/v1/accounting/report/{month}?tenant=globex"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
}

#[actix_web::test]
async fn row_security_alone_keeps_organizations_apart() {
    let day = day();
    let mut options = AppOptions {
        more_tokens: TOKENS,
        jobs: true,
        ..AppOptions::default()
    };
    options.http.tenants_by_row_security_only = true;
    let app = spawn_app_with(options).await;
    load(&app).await;
    acme_sees_its_own_only(&app).await;
    assert_eq!(figures(&app, "acme-read", "").await, (2, 2));
    // The first layer is indeed gone: without row security, the same
    // read shows globex's records.
    app.db
        .batch_execute(
            "ALTER TABLE auth_event DISABLE ROW LEVEL SECURITY; \
             ALTER TABLE client_event DISABLE ROW LEVEL SECURITY; \
             ALTER TABLE radacct DISABLE ROW LEVEL SECURITY; \
             ALTER TABLE usage_monthly_total DISABLE ROW LEVEL SECURITY",
        )
        .await
        .unwrap();
    for path in [
        format!("/api/v1/statistics/events/day/{day}"),
        format!("/api/v1/statistics/client-events/day/{day}"),
        format!("/api/v1/statistics/sessions/day/{day}"),
    ] {
        let (status, body) = get(&app, "acme-read", &path, "text/csv").await;
        assert_eq!(status, 200);
        assert!(body.to_lowercase().contains(MARK), "{path}: {body}");
    }
    let (total, _) = figures(&app, "acme-read", "").await;
    assert_eq!(total, 4, "the report sums every organization's");
}

#[actix_web::test]
async fn a_token_of_one_organization_cannot_write_another_s_sessions() {
    let app = spawn_app_with(AppOptions {
        more_tokens: TOKENS,
        jobs: true,
        ..AppOptions::default()
    })
    .await;
    map_nases(&app).await;
    let count = || async {
        app.db
            .query_one("SELECT count(*) FROM radacct", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    // A batch with one session of globex: 403, nothing stored.
    let batch = json!([
        radius("acme", "Start", "a1", "ann", 0),
        radius("globex", "Start", "g1", "gus", 1)
    ]);
    let mut response = app
        .client()
        .post(format!("{}/api/v1/accounting/radius", app.address))
        .insert_header(("Authorization", "Bearer acme-write"))
        .insert_header(("Content-Type", "application/json"))
        .send_body(batch.to_string())
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body = String::from_utf8_lossy(&body_of(&mut response).await).into_owned();
    assert!(body.contains("another organization"), "{body}");
    assert!(!body.contains(MARK), "{body}");
    assert_eq!(count().await, 0);
    // One request of globex's NAS from acme's token: the same.
    let status = post(
        &app,
        "acme-write",
        "/api/v1/accounting/radius",
        "application/json",
        radius("globex", "Start", "g1", "gus", 1).to_string(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(count().await, 0);
    // A NAS no rule maps: a single request is quarantined with the
    // reason (the NAS resends it otherwise), a batch refused.
    let mut unmapped = radius("acme", "Start", "u1", "uma", 2);
    unmapped["NAS-IP-Address"] = json!("10.9.0.1");
    let status = post(
        &app,
        "acme-write",
        "/api/v1/accounting/radius",
        "application/json",
        unmapped.to_string(),
    )
    .await;
    assert_eq!(status, 204);
    let (_, quarantine) = json(&app, "acme-write", "/api/v1/accounting/radius/rejected").await;
    assert!(
        quarantine["rejected"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("maps to no organization"),
        "{quarantine}"
    );
    assert_eq!(quarantine["rejected"][0]["tenant"], "acme");
    let send = |token: &'static str, body: Value| {
        let app = &app;
        async move {
            post(
                app,
                token,
                "/api/v1/accounting/radius",
                "application/json",
                body.to_string(),
            )
            .await
        }
    };
    assert_eq!(send("acme-write", json!([unmapped])).await, 400);
    assert_eq!(count().await, 0);
    // Its own NAS: stored.
    let own = json!([radius("acme", "Start", "a1", "ann", 0)]);
    assert_eq!(send("acme-write", own).await, 200);
    let theirs = json!([radius("globex", "Start", "g1", "gus", 1)]);
    assert_eq!(send("globex-write", theirs).await, 200);
    assert_eq!(count().await, 2);
    // One NAS serving both (globex's by realm): acme's Accounting-On closes
    // acme's sessions of that NAS only.
    app.db
        .batch_execute(
            "INSERT INTO acctstream_session_tenant (position, nas, realm, tenant) VALUES \
             (5, '10.1.0.0/16', 'globex.example', 'globex')",
        )
        .await
        .unwrap();
    let mut guest = radius("acme", "Start", "g2", "gil", 2);
    guest["Realm"] = json!("globex.example");
    assert_eq!(send("globex-write", json!([guest])).await, 200);
    let reboot = json!([{"Acct-Status-Type": "Accounting-On", "NAS-IP-Address": "10.1.0.1",
                         "Event-Timestamp": radius("acme", "Start", "x", "x", 30)["Event-Timestamp"]}]);
    assert_eq!(send("acme-write", reboot).await, 200);
    let open: Vec<String> = app
        .db
        .query(
            "SELECT acctsessionid FROM radacct WHERE acctstoptime IS NULL ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        open,
        ["g1", "g2"],
        "acme's a1 closed, globex's g2 on the same NAS open"
    );
    // The operator's quarantine list holds every organization's; globex's
    // token sees none of acme's.
    let (_, theirs) = json(&app, "globex-write", "/api/v1/accounting/radius/rejected").await;
    assert_eq!(theirs["count"], 0, "{theirs}");
}

#[actix_web::test]
async fn a_record_naming_another_organization_is_a_403_and_stores_nothing() {
    let app = spawn_app_with(AppOptions {
        more_tokens: TOKENS,
        ..AppOptions::default()
    })
    .await;
    let day = day();
    let event = |id: &str, tenant: Option<&str>| {
        let mut e = json!({"timestamp": format!("{day}T10:00:00Z"), "authMethodType": "PASSWORD",
                           "authMethodName": "password.1", "authRequestOrigin": "CN=App",
                           "userId": "ann", "eventId": id});
        if let Some(tenant) = tenant {
            e["tenant"] = json!(tenant);
        }
        e
    };
    let stored = || async {
        app.db
            .query_one("SELECT count(*) FROM auth_event", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    // Its own organization, named or not, is stored; one record naming
    // another refuses the whole request.
    let lines = [event("e1", Some("acme")), event("e2", Some("globex"))];
    let mut response = app
        .client()
        .post(format!("{}/api/v1/events", app.address))
        .insert_header(("Authorization", "Bearer acme-write"))
        .insert_header(("Content-Type", "application/x-ndjson"))
        .send_body(ndjson(&lines))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = serde_json::from_slice(&body_of(&mut response).await).unwrap();
    assert_eq!(body["error"], "insufficient_scope", "{body}");
    let text = body["error_description"].as_str().unwrap_or_default();
    assert!(text.contains("Record 2") && !text.contains(MARK), "{body}");
    assert_eq!(stored().await, 0);
    let csv = format!(
        "userId,timestamp,authMethodType,authMethodName,authRequestOrigin,eventId,tenant\r\n\
         ann,{day}T10:00:00Z,PASSWORD,p,o,c1,acme\r\n\
         gus,{day}T10:00:01Z,PASSWORD,p,o,c2,globex\r\n"
    );
    let status = post(
        &app,
        "acme-write",
        "/api/v1/client-events",
        "text/csv",
        csv.clone(),
    )
    .await;
    assert_eq!(status, 400, "not client events");
    let status = post(&app, "acme-write", "/api/v1/events", "text/csv", csv).await;
    assert_eq!(status, 403);
    assert_eq!(stored().await, 0);
    let status = post(
        &app,
        "acme-write",
        "/api/v1/events",
        "application/x-ndjson",
        ndjson(&[event("e1", Some("acme")), event("e2", None)]),
    )
    .await;
    assert_eq!(status, 200);
    let tenants: Vec<String> = app
        .db
        .query("SELECT tenant FROM auth_event ORDER BY event_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tenants, ["acme", "acme"]);
    // A token of every organization writes to the default one: a record
    // naming another is refused as well.
    let status = post(
        &app,
        crate::helpers::WRITE_TOKEN,
        "/api/v1/events",
        "application/x-ndjson",
        ndjson(&[event("e9", Some("acme"))]),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(stored().await, 2);
}

/// A read of one organization runs in a transaction bound to it: however
/// it ends (in full, or the client gone mid-stream), the connection goes
/// back to the pool without the role or the organization, so the next
/// request on it (here the only one: a pool of one) reads as its own caller.
#[actix_web::test]
async fn a_connection_leaves_an_organization_s_read_unbound() {
    use futures_util::StreamExt;
    let app = spawn_app_with(AppOptions {
        more_tokens: TOKENS,
        pool_size: 1,
        ..AppOptions::default()
    })
    .await;
    let day = day();
    app.db
        .execute(
            "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id, tenant) \
             SELECT $1::date + i * interval '1 millisecond', 'PASSWORD', 'p', 'CN=App', \
                    'user' || i, CASE WHEN i % 2 = 0 THEN 'acme' ELSE 'globex' END \
             FROM generate_series(1, 60000) AS i",
            &[&chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").unwrap()],
        )
        .await
        .unwrap();
    let window = format!("/api/v1/statistics/events/day/{day}");
    let rows = |text: &str| text.lines().count() - 1;
    // Read in full by acme, then by the operator: every organization's.
    let (status, body) = get(&app, "acme-read", &window, "text/csv").await;
    assert_eq!((status, rows(&body)), (200, 30_000));
    let (status, body) = get(&app, "op-read", &window, "text/csv").await;
    assert_eq!((status, rows(&body)), (200, 60_000));
    // Acme goes away after the first chunk (its query is cancelled).
    let mut response = app
        .get_as("acme-read", &window)
        .insert_header(("Accept", "text/csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(response);
    for token in ["op-read", "globex-read"] {
        let (status, body) = get(&app, token, &window, "text/csv").await;
        let expected = if token == "op-read" { 60_000 } else { 30_000 };
        assert_eq!((status, rows(&body)), (200, expected), "{token}");
    }
    // And nothing of the transaction is left open on the connection (its
    // ROLLBACK follows the response by a moment).
    crate::helpers::eventually("no transaction is left open", || async {
        let open: i64 = app
            .db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        open == 0
    })
    .await;
}

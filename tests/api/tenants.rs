//! Organizations (issue 28): a token that names one reads and writes that
//! organization's records only, on every route of the kinds that keep
//! organizations apart; the `tenants` grant reads them all and narrows by
//! `tenant=` (every route: tests/api/isolation.rs).

use acctstream::core::identity::{pseudonym_of, IdentityType};
use serde_json::{json, Value};

use crate::helpers::{body_of, eventually, spawn_app_with, AppOptions, TestApp, TOKEN};

const TOKENS: &str = "acme-w=acme-write:read+write@acme,acme=acme-read:read@acme,\
globex-w=globex-write:read+write@globex,globex=globex-read:read@globex,\
operator=op-read:read+tenants,acme-audit=acme-audit:read+audit@acme,\
op-audit=op-audit:read+audit+tenants";

const DAY: &str = "2026-03-02";

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Option<String>, Value) {
    let mut response = app
        .get_as(token, path)
        .insert_header(("Accept", "application/json"))
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = body_of(&mut response).await;
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body)));
    (status, etag, value)
}

async fn post(app: &TestApp, token: &str, path: &str, lines: &[Value]) -> (u16, Value) {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let mut response = app
        .client()
        .post(format!("{}{path}", app.address))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("Content-Type", "application/x-ndjson"))
        .send_body(body)
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let body = body_of(&mut response).await;
    (
        status,
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}")),
    )
}

fn auth_event(second: u32, user: &str, id: &str) -> Value {
    json!({"timestamp": format!("{DAY}T10:00:{second:02}Z"), "authMethodType": "PASSWORD",
           "authMethodName": "password.1", "authRequestOrigin": "CN=App",
           "userId": user, "eventId": id})
}

fn client_event(second: u32, mac: &str) -> Value {
    json!({"timestamp": format!("{DAY}T10:00:{second:02}Z"), "macAddress": mac,
           "eventType": "Success", "ssid": "corp"})
}

/// The pseudonym organization `tenant` sees for `raw`.
fn in_tenant(app: &TestApp, tenant: &str, ty: IdentityType, raw: &str) -> String {
    pseudonym_of(&app.pseudonymiser.in_tenant(tenant), ty, raw)
}

fn users(body: &Value, envelope: &str, field: &str) -> Vec<String> {
    body[envelope]
        .as_array()
        .unwrap_or_else(|| panic!("no {envelope} in {body}"))
        .iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[actix_web::test]
async fn a_token_of_one_organization_reads_and_writes_its_own_records_only() {
    let app = spawn_app_with(AppOptions {
        more_tokens: TOKENS,
        ..AppOptions::default()
    })
    .await;
    const EVENTS: &str = "/api/v1/statistics/events";
    const CLIENTS: &str = "/api/v1/statistics/client-events";
    const POST_EVENTS: &str = "/api/v1/events";
    const POST_CLIENTS: &str = "/api/v1/client-events";

    // Interleaved in time, and the same event ids in both: each
    // organization's are its own (not duplicates of the other's).
    let acme = [
        auth_event(1, "ann@acme", "e1"),
        auth_event(3, "ada@acme", "e2"),
        auth_event(5, "al@acme", "e3"),
    ];
    let globex = [
        auth_event(2, "gus@globex", "e1"),
        auth_event(4, "gil@globex", "e2"),
    ];
    let (status, stored) = post(&app, "acme-write", POST_EVENTS, &acme).await;
    assert_eq!(
        (status, stored["inserted"].clone()),
        (200, json!(3)),
        "{stored}"
    );
    let (status, stored) = post(&app, "globex-write", POST_EVENTS, &globex).await;
    assert_eq!(
        (
            status,
            stored["inserted"].clone(),
            stored["duplicates"].clone()
        ),
        (200, json!(2), json!(0)),
        "{stored}"
    );
    // Sent again: duplicates within the organization.
    let (_, again) = post(&app, "globex-write", POST_EVENTS, &globex[..1]).await;
    assert_eq!(again["duplicates"], 1, "{again}");
    for (token, mac) in [
        ("acme-write", "02:00:00:00:00:0a"),
        ("globex-write", "02:00:00:00:00:0b"),
    ] {
        let (status, stored) = post(&app, token, POST_CLIENTS, &[client_event(1, mac)]).await;
        assert_eq!(status, 200, "{stored}");
    }
    let stored: Vec<(String, i64)> = app
        .db
        .query(
            "SELECT tenant, count(*) FROM auth_event GROUP BY tenant ORDER BY tenant",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(stored, [("acme".into(), 3), ("globex".into(), 2)]);

    // Each organization sees its own pseudonyms; the operator the service's.
    let acme_users: Vec<String> = ["ann@acme", "ada@acme", "al@acme"]
        .map(|u| in_tenant(&app, "acme", IdentityType::User, u))
        .to_vec();
    let globex_users: Vec<String> = ["gus@globex", "gil@globex"]
        .map(|u| in_tenant(&app, "globex", IdentityType::User, u))
        .to_vec();
    let globex_plain: Vec<String> = ["gus@globex", "gil@globex"]
        .map(|u| app.pseudonym(u))
        .to_vec();

    // Windows: each organization its own, in order, with a tag of its
    // own records' changes: another organization's writes into the same
    // window leave it as it is (a 304), its own change it.
    let window = format!("{EVENTS}/day/{DAY}");
    let (status, etag, body) = get(&app, "acme-read", &window).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(users(&body, "events", "userId"), acme_users);
    let acme_tag = etag.expect("a tag of acme's changes");
    let conditional = |token: &'static str, tag: String| {
        let app = &app;
        let window = window.clone();
        async move {
            app.get_as(token, &window)
                .insert_header(("Accept", "application/json"))
                .insert_header(("If-None-Match", tag))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(conditional("acme-read", acme_tag.clone()).await, 304);
    let (status, _) = post(
        &app,
        "globex-write",
        POST_EVENTS,
        &[auth_event(6, "gwen@globex", "e6")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        conditional("acme-read", acme_tag.clone()).await,
        304,
        "globex's write leaves acme's tag"
    );
    let (_, op_tag, _) = get(&app, "op-read", &window).await;
    let (status, _) = post(
        &app,
        "acme-write",
        POST_EVENTS,
        &[auth_event(7, "ann@acme", "e7")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        conditional("acme-read", acme_tag).await,
        200,
        "acme's own write changes it"
    );
    assert_eq!(conditional("op-read", op_tag.unwrap()).await, 200);
    app.db
        .batch_execute("DELETE FROM auth_event WHERE event_id IN ('e6', 'e7')")
        .await
        .unwrap();
    let text = body.to_string();
    assert!(globex_users.iter().all(|g| !text.contains(g.as_str())));
    let (_, _, body) = get(&app, "globex-read", &window).await;
    assert_eq!(users(&body, "events", "userId"), globex_users);
    // Narrowing to its own organization is allowed; another one is a 403,
    // a name that is none a 400.
    let (status, _, body) = get(&app, "acme-read", &format!("{window}?tenant=acme")).await;
    assert_eq!(
        (status, users(&body, "events", "userId")),
        (200, acme_users.clone())
    );
    let (status, _, body) = get(&app, "acme-read", &format!("{window}?tenant=globex")).await;
    assert_eq!(
        (status, body["error"].clone()),
        (403, json!("insufficient_scope")),
        "{body}"
    );
    assert!(!body.to_string().contains("gus"), "{body}");
    let (status, _, body) = get(&app, "acme-read", &format!("{window}?tenant=a%2Fb")).await;
    assert_eq!(status, 400, "{body}");

    // The operator (`tenants`) reads both, and narrows to one or several.
    let (status, etag, body) = get(&app, "op-read", &window).await;
    assert_eq!(status, 200);
    assert_eq!(users(&body, "events", "userId").len(), 5);
    assert!(etag.is_some(), "the operator's windows keep their ETag");
    let (_, _, body) = get(&app, "op-read", &format!("{window}?tenant=globex")).await;
    assert_eq!(users(&body, "events", "userId"), globex_plain);
    assert!(body["links"]["self"]
        .as_str()
        .unwrap()
        .ends_with("?tenant=globex"));
    let (_, _, body) = get(
        &app,
        "op-read",
        &format!("{window}?tenant=globex&tenant=acme"),
    )
    .await;
    assert_eq!(users(&body, "events", "userId").len(), 5);
    // A token that names no organization reads the default one's: none here.
    let (status, _, body) = get(&app, TOKEN, &window).await;
    assert_eq!((status, users(&body, "events", "userId")), (200, vec![]));

    // The change feed (once every transaction that began before now has
    // ended: the feed hands out nothing a running one may still precede),
    // and the counts of a window.
    crate::changes::settled(&app).await;
    let (status, _, body) = get(&app, "acme-read", &format!("{EVENTS}/changes")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(users(&body, "events", "userId"), acme_users);
    let (_, _, body) = get(&app, "globex-read", &format!("{EVENTS}/changes?limit=1")).await;
    assert_eq!(users(&body, "events", "userId"), globex_users[..1]);
    let next = body["links"]["next"].as_str().unwrap().to_owned();
    let next = next.trim_start_matches(&app.address);
    let (_, _, body) = get(&app, "globex-read", next).await;
    assert_eq!(users(&body, "events", "userId"), globex_users[1..]);
    let (_, _, body) = get(&app, "acme-read", &format!("{EVENTS}/counts/day/{DAY}")).await;
    assert_eq!(body["counts"], json!([{"count": 3}]), "{body}");
    let (_, _, body) = get(&app, "globex-read", &format!("{CLIENTS}/day/{DAY}")).await;
    assert_eq!(
        users(&body, "clientEvents", "macAddress"),
        [in_tenant(
            &app,
            "globex",
            IdentityType::Mac,
            "02:00:00:00:00:0b"
        )]
    );

    // The reports count the organization's own users (see
    // tests/api/isolation.rs for the figures); the operator's all.
    let (status, _, _) = get(&app, "acme-read", "/api/v1/accounting/report/2026-03").await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&app, "op-read", "/api/v1/accounting/report/2026-03").await;
    assert_eq!(status, 200);
    // The Wi-Fi summary counts the organization's events only.
    let (status, _, body) = get(
        &app,
        "acme-read",
        &format!("/api/v1/statistics/client-events/summary/day/{DAY}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("\"count\":1"), "{body}");
    let (_, _, body) = get(
        &app,
        "op-read",
        &format!("/api/v1/statistics/client-events/summary/day/{DAY}"),
    )
    .await;
    assert!(body.to_string().contains("\"count\":2"), "{body}");
    // A client of another organization has no history here (404, as one
    // never seen).
    let (status, _, _) = get(
        &app,
        "acme-read",
        "/api/v1/clients/02:00:00:00:00:0b/events",
    )
    .await;
    assert!(status == 403 || status == 404, "{status}");
    let globex_mac = in_tenant(&app, "globex", IdentityType::Mac, "02:00:00:00:00:0b");
    let (status, _, body) = get(
        &app,
        "acme-read",
        &format!("/api/v1/clients/{globex_mac}/events"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = get(
        &app,
        "globex-read",
        &format!("/api/v1/clients/{globex_mac}/events"),
    )
    .await;
    assert_eq!(status, 200);

    // One device in two organizations: two unrelated pseudonyms, neither
    // the service's own; each finds the device by its own only.
    for token in ["acme-write", "globex-write"] {
        let mut shared = client_event(9, "02:00:00:00:00:0c");
        shared["timestamp"] = json!("2026-03-03T10:00:09Z");
        let (status, stored) = post(&app, token, POST_CLIENTS, &[shared]).await;
        assert_eq!(status, 200, "{stored}");
    }
    let (a, g) = (
        in_tenant(&app, "acme", IdentityType::Mac, "02:00:00:00:00:0c"),
        in_tenant(&app, "globex", IdentityType::Mac, "02:00:00:00:00:0c"),
    );
    let plain = pseudonym_of(&app.pseudonymiser, IdentityType::Mac, "02:00:00:00:00:0c");
    assert!(a != g && a != plain && g != plain);
    let day2 = format!("{CLIENTS}/day/2026-03-03");
    let (_, _, body) = get(&app, "acme-read", &day2).await;
    assert_eq!(users(&body, "clientEvents", "macAddress"), [a.as_str()]);
    let (_, _, body) = get(&app, "globex-read", &day2).await;
    assert_eq!(users(&body, "clientEvents", "macAddress"), [g.as_str()]);
    let (_, _, body) = get(&app, "acme-read", &format!("{day2}?client={a}")).await;
    assert_eq!(
        users(&body, "clientEvents", "macAddress"),
        [a.as_str()],
        "{body}"
    );
    assert!(body["links"]["self"].as_str().unwrap().contains(&a));
    let (_, _, body) = get(&app, "acme-read", &format!("{day2}?client={g}")).await;
    assert_eq!(
        users(&body, "clientEvents", "macAddress"),
        Vec::<String>::new()
    );
    let (_, _, body) = get(&app, "acme-read", &format!("{day2}?client={plain}")).await;
    assert_eq!(
        users(&body, "clientEvents", "macAddress"),
        Vec::<String>::new()
    );
    let (status, _, _) = get(&app, "acme-read", &format!("/api/v1/clients/{a}/events")).await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&app, "acme-read", &format!("/api/v1/clients/{g}/events")).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn sessions_belong_to_the_organization_their_nas_or_realm_maps_to() {
    let app = spawn_app_with(AppOptions {
        more_tokens: TOKENS,
        ..AppOptions::default()
    })
    .await;
    // Rules first (FreeRADIUS's rows are never altered: the organization
    // is derived from them), then sessions written as FreeRADIUS does.
    app.db
        .batch_execute(
            "INSERT INTO acctstream_session_tenant (position, nas, realm, tenant) VALUES \
                 (10, '10.1.0.0/16', NULL, 'acme'), (20, NULL, 'globex.example', 'globex'); \
             INSERT INTO radacct (acctsessionid, acctuniqueid, username, realm, nasipaddress, \
                 acctstarttime, acctupdatetime, acctstoptime) VALUES \
                 ('a', 'ua', 'ann', '', '10.1.2.3', '2026-03-02T10:00:00Z', '2026-03-02T10:00:00Z', NULL), \
                 ('g', 'ug', 'gus', 'globex.example', '10.9.9.9', '2026-03-02T10:01:00Z', '2026-03-02T10:01:00Z', NULL), \
                 ('d', 'ud', 'dan', '', '10.9.9.9', '2026-03-02T10:02:00Z', '2026-03-02T10:02:00Z', '2026-03-02T11:00:00Z'), \
                 ('b', 'ub', 'bea', 'globex.example', '10.1.7.7', '2026-03-02T10:03:00Z', '2026-03-02T10:03:00Z', NULL)",
        )
        .await
        .unwrap();
    let id = |unique: &'static str| {
        let db = &app.db;
        async move {
            db.query_one(
                "SELECT radacctid FROM radacct WHERE acctuniqueid = $1",
                &[&unique],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    let user = |name: &str| app.pseudonym(name);
    let acme = |name: &str| in_tenant(&app, "acme", IdentityType::User, name);
    let globex = |name: &str| in_tenant(&app, "globex", IdentityType::User, name);
    let names = |body: &Value| users(body, "sessions", "userName");
    let window = format!("/api/v1/statistics/sessions/day/{DAY}");
    // The first rule that matches wins: `bea` is on acme's NAS, whatever
    // her realm.
    let (status, etag, body) = get(&app, "acme-read", &window).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), [acme("ann"), acme("bea")]);
    assert!(etag.is_some(), "a tag of acme's sessions and of the rules");
    let (_, _, body) = get(&app, "globex-read", &window).await;
    assert_eq!(names(&body), [globex("gus")]);
    let (_, _, body) = get(&app, TOKEN, &window).await;
    assert_eq!(
        names(&body),
        [user("dan")],
        "unmapped: the default organization"
    );
    let (_, _, body) = get(&app, "op-read", &window).await;
    assert_eq!(names(&body).len(), 4);
    let (_, _, body) = get(&app, "op-read", &format!("{window}?tenant=globex")).await;
    assert_eq!(names(&body), [user("gus")]);

    // One session by id: another organization's is a 404, as a missing one.
    let (status, _, _) = get(
        &app,
        "acme-read",
        &format!("/api/v1/sessions/{}", id("ua").await),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, missing) = get(&app, "acme-read", "/api/v1/sessions/999999").await;
    assert_eq!(status, 404);
    let gus = id("ug").await;
    let (status, _, other) = get(&app, "acme-read", &format!("/api/v1/sessions/{gus}")).await;
    assert_eq!(status, 404);
    assert_eq!(other["error"], missing["error"]);
    assert_eq!(
        other["error_description"],
        format!("No session has radAcctId {gus}."),
        "the same answer as a missing session"
    );
    // Who is online (updated lately); a user's history; the list.
    app.db
        .batch_execute("UPDATE radacct SET acctupdatetime = now() WHERE acctstoptime IS NULL")
        .await
        .unwrap();
    let (_, _, body) = get(&app, "acme-read", "/api/v1/sessions/online").await;
    assert_eq!(names(&body), [acme("bea"), acme("ann")]);
    let (status, _, _) = get(
        &app,
        "acme-read",
        &format!(
            "/api/v1/users/{}/sessions?from=2026-03-01T00:00:00Z",
            globex("gus")
        ),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, body) = get(
        &app,
        "globex-read",
        &format!(
            "/api/v1/users/{}/sessions?from=2026-03-01T00:00:00Z",
            globex("gus")
        ),
    )
    .await;
    assert_eq!((status, names(&body)), (200, vec![globex("gus")]));
    let (_, _, body) = get(&app, "globex-read", "/api/v1/sessions").await;
    assert_eq!(users(&body, "results", "userName"), [globex("gus")]);
    assert_eq!(body["count"], 1, "{body}");
    let (_, _, body) = get(
        &app,
        "acme-read",
        &format!("/api/v1/statistics/sessions/counts/day/{DAY}"),
    )
    .await;
    assert_eq!(body["counts"], json!([{"count": 2}]), "{body}");

    // The rules change: what they map moves at once, for every read, and
    // so do the windows' tags (no record changed, the rules' version did).
    // Sessions closed first: a window holding an open one has a tag of the
    // present second.
    app.db
        .batch_execute(
            "UPDATE radacct SET acctstoptime = '2026-03-02T12:00:00Z' WHERE acctstoptime IS NULL",
        )
        .await
        .unwrap();
    let (_, globex_tag, _) = get(&app, "globex-read", &window).await;
    let globex_tag = globex_tag.expect("a tag");
    let unchanged = app
        .get_as("globex-read", &window)
        .insert_header(("If-None-Match", globex_tag.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), 304);
    app.db
        .batch_execute("DELETE FROM acctstream_session_tenant WHERE position = 20")
        .await
        .unwrap();
    let moved = app
        .get_as("globex-read", &window)
        .insert_header(("If-None-Match", globex_tag))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200, "the rules moved globex's session");
    let (_, _, body) = get(&app, "globex-read", &window).await;
    assert_eq!(names(&body), Vec::<String>::new());
    let (_, _, body) = get(&app, TOKEN, &window).await;
    assert_eq!(names(&body), [user("gus"), user("dan")]);
}

#[actix_web::test]
async fn the_audit_trail_of_an_organization_holds_its_own_accesses() {
    let app = spawn_app_with(AppOptions {
        more_tokens: TOKENS,
        jobs: true,
        ..AppOptions::default()
    })
    .await;
    // A deployment with organizations gets its indexes by organization
    // (built by the service's jobs, concurrently).
    eventually("the indexes by organization are built", || async {
        let built: i64 = app
            .db
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE indexname IN \
                 ('auth_event_tenant_occurred_at', 'client_event_tenant_occurred_at', \
                  'access_audit_tenant_at')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        built == 3
    })
    .await;
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for token in ["acme-read", "globex-read", "op-read"] {
        let (status, _, _) =
            get(&app, token, &format!("/api/v1/statistics/events/day/{day}")).await;
        assert_eq!(status, 200);
    }
    let trail = format!("/api/v1/audit/day/{day}");
    eventually("the three reads are audited", || async {
        let (_, _, body) = get(&app, "op-audit", &trail).await;
        body["entries"].as_array().map_or(0, Vec::len) >= 3
    })
    .await;
    let clients = |body: &Value| -> Vec<String> { users(body, "entries", "client") };
    let (status, _, body) = get(&app, "acme-audit", &trail).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(clients(&body), ["acme"], "{body}");
    let (_, _, body) = get(&app, "op-audit", &format!("{trail}?tenant=globex")).await;
    assert_eq!(clients(&body), ["globex"], "{body}");
    // The operator's trail holds every organization's accesses, the
    // audit readers' own included (written a moment after their response).
    eventually("the operator sees every access", || async {
        let (_, _, body) = get(&app, "op-audit", &trail).await;
        let all = clients(&body);
        ["acme", "globex", "operator", "acme-audit"]
            .iter()
            .all(|client| all.iter().any(|c| c == client))
    })
    .await;
    let (_, _, body) = get(&app, "acme-audit", &trail).await;
    let own = clients(&body);
    assert!(
        own.iter().all(|c| c == "acme" || c == "acme-audit") && own.len() >= 2,
        "{own:?}"
    );
}

#[actix_web::test]
async fn an_organization_has_its_own_request_limit_across_its_clients() {
    use acctstream::core::limits::{Limits, Rate, RateLimiter};
    let mut options = AppOptions {
        more_tokens: TOKENS,
        ..AppOptions::default()
    };
    options.http.limits = std::sync::Arc::new(Limits {
        rate: Some(RateLimiter::new(Rate::parse("100/min").unwrap())),
        rate_per_tenant: Some(RateLimiter::new(Rate::parse("3/min").unwrap())),
        streams: None,
    });
    let app = spawn_app_with(options).await;
    let window = format!("/api/v1/statistics/events/day/{DAY}");
    // Two clients of acme share its three requests.
    for token in ["acme-read", "acme-write", "acme-read"] {
        let (status, _, body) = get(&app, token, &window).await;
        assert_eq!(status, 200, "{body}");
    }
    let response = app.get_as("acme-write", &window).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers().get("ratelimit-remaining").unwrap(), "0");
    assert_eq!(response.headers().get("ratelimit-limit").unwrap(), "3");
    let (status, _, body) = get(&app, "acme-read", &window).await;
    assert_eq!(status, 429);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("organization"),
        "{body}"
    );
    // Another organization is not held back.
    let (status, _, body) = get(&app, "globex-read", &window).await;
    assert_eq!(status, 200, "{body}");
}

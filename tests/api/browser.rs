//! Issue 26: the dashboard and Swagger UI in a real browser (Debian's
//! Chromium, driven by playwright-core through tests/browser/drive.mjs),
//! against a test database with known records. The driver only reports
//! what the page shows; the checks are here, against the API's own answers
//! for the same windows. Screenshots land in `target/browser/`.

use std::collections::BTreeMap;
use std::process::Command;

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::helpers::{
    body_of, client_event, event, spawn_app, spawn_app_with, AppOptions, TestApp, AUDIT_TOKEN,
    IDENTITIES_TOKEN, TOKEN,
};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The driver's directory, with its `node_modules` installed (`npm ci`
/// there, once, when they are missing: playwright-core as pinned in its
/// `package-lock.json`; it downloads no browser).
fn driver_dir() -> std::path::PathBuf {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "the browser tests need Debian's Chromium at {CHROMIUM}: apt-get install chromium"
    );
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if !*installed
        && !dir
            .join("node_modules/playwright-core/package.json")
            .exists()
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("the browser tests need Node.js and npm: apt-get install nodejs npm");
        assert!(status.success(), "npm ci in tests/browser failed");
    }
    *installed = true;
    dir
}

/// Runs the driver with `input`; its report.
fn drive(input: Value) -> Value {
    let dir = driver_dir();
    let output = Command::new("node")
        .arg(dir.join("drive.mjs"))
        .current_dir(&dir)
        .env("ACCTSTREAM_BROWSER", input.to_string())
        .output()
        .expect("the browser tests need Node.js: apt-get install nodejs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the driver failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the driver's report is not JSON ({e}): {stdout}"));
    assert!(
        report.get("error").is_none(),
        "the driver failed: {}",
        report["error"]
    );
    report
}

fn screenshots() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/browser")
        .display()
        .to_string()
}

/// A chart's rows as key → value.
fn rows(chart: &Value) -> BTreeMap<String, f64> {
    chart["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match (r["key"].as_str(), r["value"].as_f64()) {
            (Some(key), Some(value)) => (key.to_owned(), value),
            _ => panic!("{}: a row without a key or value: {r}", chart["id"]),
        })
        .collect()
}

fn chart<'a>(view: &'a Value, id: &str) -> &'a Value {
    view["charts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no chart {id} in view {}", view["name"]))
}

/// Counts of the API as key → count (or the total of the sums).
fn api_counts(body: &Value) -> BTreeMap<String, f64> {
    body["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let value = match c.get("sums") {
                Some(sums) => sums
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|v| v.as_f64().unwrap_or(0.0))
                    .sum(),
                None => c["count"].as_f64().unwrap(),
            };
            (c["key"].as_str().unwrap_or_default().to_owned(), value)
        })
        .collect()
}

/// The view finished loading, and every chart in it has data.
fn assert_shown(run: &Value, view: &Value) {
    assert_eq!(
        view["ready"], "true",
        "{} {}: {}",
        run["label"], view["name"], view["status"]
    );
    for chart in view["charts"].as_array().unwrap() {
        assert!(
            !chart["rows"].as_array().unwrap().is_empty(),
            "{} {}: no data",
            run["label"],
            chart["id"]
        );
    }
}

/// Known records on `day`: three users' authentications, Wi-Fi successes
/// and failures, a closed session and one still open.
async fn seed(app: &TestApp, day: &str) {
    let mut events = Vec::new();
    for (hour, user, method, origin) in [
        ("08", "alice@example.com", "PASSWORD", "CN=Mail"),
        ("09", "alice@example.com", "PASSWORD", "CN=Mail"),
        ("10", "alice@example.com", "PASSWORD", "CN=Wiki"),
        ("10", "bob@example.com", "OTP", "CN=Mail"),
        ("14", "bob@example.com", "OTP", "CN=Mail"),
        ("20", "carol@example.com", "SAML", "CN=Payroll"),
    ] {
        let mut e = event(&format!("{day}T{hour}:15:00Z"), user);
        e.auth_method_type = method.into();
        e.auth_request_origin = origin.into();
        events.push(e);
    }
    app.insert(&events).await;
    let mut wifi = Vec::new();
    for minute in ["10", "11", "12"] {
        wifi.push(client_event(
            &format!("{day}T09:{minute}:00Z"),
            "aa:bb:cc:dd:ee:01",
            "Corp",
            "ap-1",
        ));
    }
    for minute in ["20", "21"] {
        let mut failure = client_event(
            &format!("{day}T09:{minute}:00Z"),
            "aa:bb:cc:dd:ee:02",
            "Corp",
            "ap-2",
        );
        failure.event_type = "Failure".into();
        failure.failure_code = Some(7);
        failure.failure = Some("Incorrect PSK".into());
        wifi.push(failure);
    }
    app.insert_client_events(&wifi).await;
    app.db
        .batch_execute(&format!(
            "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
             acctstarttime, acctstoptime, acctsessiontime, acctinputoctets, acctoutputoctets, \
             callingstationid, acctterminatecause) VALUES \
             ('s1', 'u1', 'alice', '10.0.0.1', '{day}T10:00:00Z', '{day}T11:00:00Z', 3600, \
              1000, 5000, 'AA-BB-CC-DD-EE-01', 'User-Request'); \
             INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
             acctstarttime, acctupdatetime, acctinterval, acctinputoctets, acctoutputoctets, \
             callingstationid) VALUES \
             ('s2', 'u2', 'bob', '10.0.0.2', '{day}T23:00:00Z', now() - interval '1 minute', 300, \
              300, 700, 'AA-BB-CC-DD-EE-02');"
        ))
        .await
        .unwrap();
}

/// The dashboard shows every chart with data, its numbers are the API's for
/// the same window, it loads nothing from elsewhere and logs no error, the
/// token stays out of the URL, raw identities appear only for a token with
/// `identities`, and its CSV link downloads what the chart shows.
#[actix_web::test]
async fn the_dashboard_shows_the_apis_numbers_in_a_real_browser() {
    let app = spawn_app().await;
    let day = (Utc::now() - Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    seed(&app, &day).await;
    let views: Vec<Value> = ["auth", "wifi", "sessions"]
        .iter()
        .map(|view| json!({"name": view, "hash": format!("view={view}&period=day&datetime={day}")}))
        .collect();
    let report = drive(json!({
        "base": app.address,
        "screenshots": screenshots(),
        "views": views,
        "dashboards": [
            {"label": "pseudonyms", "token": TOKEN, "download": true},
            {"label": "identities", "token": IDENTITIES_TOKEN},
        ],
    }));
    let runs = report["dashboards"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["consoleErrors"], json!([]), "{}", run["label"]);
        assert_eq!(run["foreignRequests"], json!([]), "{}", run["label"]);
        assert!(run["requests"].as_u64().unwrap() > 5);
        for view in run["views"].as_array().unwrap() {
            assert_shown(run, view);
            let html = view["html"].as_str().unwrap();
            let url = view["url"].as_str().unwrap();
            for token in [TOKEN, IDENTITIES_TOKEN] {
                assert!(
                    !html.contains(token) && !url.contains(token),
                    "the token is in the page"
                );
            }
        }
    }
    let pseudonymous = &runs[0]["views"];
    let auth = &pseudonymous[0];
    let wifi = &pseudonymous[1];
    let sessions = &pseudonymous[2];

    // Authentication: per method (the chart's totals), the month's report,
    // the top applications.
    let by_method = app
        .get_json_as(
            TOKEN,
            &format!("/api/v1/statistics/events/counts/day/{day}?by=authMethodType"),
        )
        .await;
    let per_hour = chart(auth, "auth-per-hour");
    assert_eq!(rows(per_hour), api_counts(&by_method));
    assert_eq!(
        rows(per_hour),
        BTreeMap::from([
            ("OTP".into(), 2.0),
            ("PASSWORD".into(), 3.0),
            ("SAML".into(), 1.0)
        ])
    );
    assert!(per_hour["canvas"].as_u64().unwrap() > 0, "no chart drawn");
    let month = &day[..7];
    let report = app
        .get_json_as(TOKEN, &format!("/api/v1/accounting/report/{month}"))
        .await;
    let expected: BTreeMap<String, f64> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["authMethodType"].as_str().unwrap().to_owned(),
                r["userCount"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows(chart(auth, "auth-unique-users")), expected);
    assert_eq!(expected.len(), 3);
    assert_eq!(
        rows(chart(auth, "auth-top-applications")),
        BTreeMap::from([
            ("CN=Mail".into(), 4.0),
            ("CN=Payroll".into(), 1.0),
            ("CN=Wiki".into(), 1.0)
        ])
    );

    // Wi-Fi: the summary's success rates and failures, failures over time.
    let summary = app
        .get_json_as(
            TOKEN,
            &format!("/api/v1/statistics/client-events/summary/day/{day}"),
        )
        .await;
    let ssids: BTreeMap<String, f64> = summary["ssids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["successRate"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows(chart(wifi, "wifi-ssids")), ssids);
    assert_eq!(ssids["Corp"], 0.6);
    assert_eq!(
        rows(chart(wifi, "wifi-failure-reasons")),
        BTreeMap::from([("Incorrect PSK".into(), 2.0)])
    );
    assert_eq!(
        rows(chart(wifi, "wifi-failures")),
        BTreeMap::from([("failures".into(), 2.0)])
    );

    // Sessions: traffic per user as pseudonyms, online now.
    let top_users = app
        .get_json_as(
            TOKEN,
            &format!(
                "/api/v1/statistics/sessions/counts/day/{day}?by=userName\
             &sum=acctInputOctets&sum=acctOutputOctets"
            ),
        )
        .await;
    let users = rows(chart(sessions, "sessions-top-users"));
    assert_eq!(users, api_counts(&top_users));
    assert_eq!(
        users,
        BTreeMap::from([
            (
                app.pseudonymiser.pseudonymise("alice").as_str().to_owned(),
                6000.0
            ),
            (
                app.pseudonymiser.pseudonymise("bob").as_str().to_owned(),
                1000.0
            ),
        ])
    );
    assert_eq!(chart(sessions, "sessions-online")["big"], 1);
    assert_eq!(
        rows(chart(sessions, "sessions-per-nas")),
        BTreeMap::from([("10.0.0.1".into(), 1.0), ("10.0.0.2".into(), 1.0)])
    );

    // No raw identity without `identities`; with it, they are shown.
    let raw = [
        "alice@example.com",
        "bob@example.com",
        ">alice<",
        "aa:bb:cc:dd:ee:01",
        "AA-BB-CC-DD-EE-01",
        "aa-bb-cc-dd-ee-01",
    ];
    for view in pseudonymous.as_array().unwrap() {
        let html = view["html"].as_str().unwrap().to_lowercase();
        for value in raw {
            assert!(
                !html.contains(&value.to_lowercase()),
                "{value} in {}",
                view["name"]
            );
        }
    }
    let revealed = &runs[1]["views"][2];
    assert_eq!(
        rows(chart(revealed, "sessions-top-users"))
            .keys()
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );

    // The CSV link downloads the first chart's counts.
    let download = &runs[0]["download"];
    assert_eq!(
        download["name"],
        format!("events-counts-day-{day}.csv"),
        "{download}"
    );
    let csv = std::fs::read_to_string(download["path"].as_str().unwrap()).unwrap();
    assert!(
        csv.starts_with("Time,Authentication Method Type,Count\r\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
}

/// The demo's OAuth2 issuer, served on 127.0.0.1, and an app whose
/// dashboard signs in there (issue 26).
pub async fn app_signing_in_at_the_demo_issuer() -> (TestApp, String, tempfile::TempDir) {
    use acctstream::demo::issuer;
    let dir = tempfile::tempdir().unwrap();
    let key = issuer::Issuer::load_or_create(dir.path()).unwrap();
    let (url, server) = issuer::serve(&key, dir.path()).unwrap();
    actix_web::rt::spawn(server);
    let mut options = AppOptions::default();
    options.http.oauth = Some(crate::oauth::signing_in_at(
        url.clone(),
        issuer::DASHBOARD_CLIENT,
    ));
    (spawn_app_with(options).await, url, dir)
}

/// "Sign in" goes to the OAuth2 issuer (the demo's: authorization code
/// flow with PKCE) and back: the views show data with the token it gave,
/// the code and state leave the address, the page talks to no origin but
/// its own and the issuer's, and the grants chosen at the issuer decide
/// whether raw identities are shown.
#[actix_web::test]
async fn the_dashboard_signs_in_at_the_oauth2_issuer() {
    let (app, issuer, _dir) = app_signing_in_at_the_demo_issuer().await;
    let day = (Utc::now() - Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    seed(&app, &day).await;
    let mut page = app
        .client()
        .get(format!("{}/dashboard/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.headers().get("content-security-policy").unwrap(),
        &format!(
            "{}; connect-src 'self' {issuer}",
            acctstream::http::dashboard::DASHBOARD_CSP
        )
    );
    body_of(&mut page).await;
    let views: Vec<Value> = ["auth", "sessions"]
        .iter()
        .map(|view| json!({"name": view, "hash": format!("view={view}&period=day&datetime={day}")}))
        .collect();
    let report = drive(json!({
        "base": app.address,
        "screenshots": screenshots(),
        "views": views,
        "dashboards": [
            {"label": "oauth-read", "signIn": {"subject": "helpdesk-1", "grants": []}},
            {"label": "oauth-identities", "signIn": {"subject": "auditor-1", "grants": ["identities"]}},
        ],
    }));
    let runs = report["dashboards"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        let label = &run["label"];
        assert_eq!(run["consoleErrors"], json!([]), "{label}");
        let consent = &run["consent"];
        let consent_url = consent["url"].as_str().unwrap();
        assert!(
            consent_url.starts_with(&format!("{issuer}/authorize?")),
            "{consent_url}"
        );
        for part in [
            "response_type=code",
            "client_id=acctstream-dashboard",
            "code_challenge_method=S256",
            "scope=read",
        ] {
            assert!(consent_url.contains(part), "{part} in {consent_url}");
        }
        assert_eq!(consent["checked"], json!(["read"]), "the scope asked for");
        let foreign: Vec<&str> = run["foreignRequests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(
            foreign.iter().all(|r| r.starts_with(&issuer)),
            "{label}: {foreign:?}"
        );
        assert!(
            foreign.contains(&format!("{issuer}/token").as_str()),
            "{foreign:?}"
        );
        for view in run["views"].as_array().unwrap() {
            assert_shown(run, view);
            let url = view["url"].as_str().unwrap();
            assert!(!url.contains("code=") && !url.contains("state="), "{url}");
            let session: Value = serde_json::from_str(view["session"].as_str().unwrap()).unwrap();
            assert!(session.get("acctstream.signIn").is_none(), "{session}");
            let token = session["acctstream.token"].as_str().unwrap();
            assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        }
    }
    // Read only: pseudonyms. With `identities` chosen at the issuer: names.
    let users = |run: &Value| {
        rows(chart(&run["views"][1], "sessions-top-users"))
            .into_keys()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        users(&runs[0]),
        [
            app.pseudonymiser.pseudonymise("alice").as_str(),
            app.pseudonymiser.pseudonymise("bob").as_str()
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    );
    for view in runs[0]["views"].as_array().unwrap() {
        let html = view["html"].as_str().unwrap();
        assert!(!html.contains("alice@example.com") && !html.contains(">alice<"));
    }
    assert_eq!(users(&runs[1]), ["alice", "bob"]);
}

/// Swagger UI works offline: it loads with no request elsewhere and no
/// error, authorizes with a bearer token, and "Try it out" on one window
/// operation of each kind shows a 200 within 2 s.
#[actix_web::test]
async fn swagger_ui_tries_one_operation_of_each_kind_quickly() {
    let app = spawn_app().await;
    // Records in the minute the first try reads.
    let minute = (Utc::now() - Duration::minutes(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    app.insert(&[event(&format!("{minute}:30Z"), "u")]).await;
    let report = drive(json!({
        "base": app.address,
        "screenshots": screenshots(),
        "swaggerToken": AUDIT_TOKEN,
        "swaggerOperations": [
            {"tag": "statistics", "operationId": "getEvents"},
            {"tag": "client-events", "operationId": "getClientEvents"},
            {"tag": "sessions", "operationId": "getSessions"},
            {"tag": "audit", "operationId": "getAuditEntries"},
        ],
    }));
    let swagger = &report["swagger"];
    assert_eq!(swagger["consoleErrors"], json!([]));
    assert_eq!(swagger["foreignRequests"], json!([]));
    let operations = swagger["operations"].as_array().unwrap();
    assert_eq!(operations.len(), 4);
    for op in operations {
        assert_eq!(op["status"], "200", "{op}");
        assert!(op["elapsedMs"].as_u64().unwrap() < 2000, "{op}");
        assert!(
            op["url"].as_str().unwrap_or_default().contains("/minute/"),
            "{op}"
        );
    }
}

/// The page and everything it loads weigh at most 150 KB gzipped, and each
/// is served with the security policy or type it needs.
#[actix_web::test]
async fn the_dashboard_is_small_and_self_contained() {
    use std::io::Write as _;
    let app = spawn_app().await;
    let mut total = 0;
    let mut gzipped = |bytes: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        total += encoder.finish().unwrap().len();
    };
    let mut page = app
        .client()
        .get(format!("{}/dashboard/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers().get("content-security-policy").unwrap(),
        acctstream::http::dashboard::DASHBOARD_CSP
    );
    assert!(acctstream::http::dashboard::DASHBOARD_CSP.starts_with("default-src 'self';"));
    let html = body_of(&mut page).await;
    gzipped(&html);
    let html = String::from_utf8(html).unwrap();
    for name in [
        "dashboard.js",
        "dashboard.css",
        "uPlot.iife.min.js",
        "uPlot.min.css",
    ] {
        assert!(
            html.contains(&format!("/dashboard/{name}")),
            "{name} is not loaded"
        );
        let mut response = app
            .client()
            .get(format!("{}/dashboard/{name}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        gzipped(&body_of(&mut response).await);
    }
    assert!(total <= 150 * 1024, "{total} bytes gzipped");
    assert!(!html.contains("http://") && !html.contains("https://"));
    let redirect = awc::Client::builder()
        .disable_redirects()
        .finish()
        .get(format!("{}/dashboard", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 301);
    let missing = app
        .client()
        .get(format!("{}/dashboard/nothing.js", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

//! Issue 26: `…/counts/{period}[/{datetime}]`, the counts over one window of
//! any kind: by a column, per time bucket, with sums, the top values;
//! identities as pseudonyms; the window's filters, zone and links; and a
//! clear 400 for what cannot be counted.

use serde_json::{json, Value};

use crate::helpers::{
    body_of, client_event, event, spawn_app, TestApp, AUDIT_TOKEN, IDENTITIES_TOKEN, TOKEN,
};

const DAY: &str = "2026-11-10";

async fn seed(app: &TestApp) {
    let mut events = Vec::new();
    for (at, user, method) in [
        ("08:10", "alice", "PASSWORD"),
        ("08:40", "alice", "PASSWORD"),
        ("09:05", "bob", "OTP"),
        ("09:06", "carol", "PASSWORD"),
        ("23:59", "dave", "SAML"),
    ] {
        let mut e = event(&format!("{DAY}T{at}:00Z"), user);
        e.auth_method_type = method.into();
        events.push(e);
    }
    // The next day: outside the window.
    events.push(event("2026-11-11T00:00:00Z", "erin"));
    app.insert(&events).await;
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value, String) {
    let mut response = app.get_as(token, path).send().await.unwrap();
    let status = response.status().as_u16();
    let text = String::from_utf8(body_of(&mut response).await).unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

#[actix_web::test]
async fn counts_by_a_column_per_bucket_with_the_top_values() {
    let app = spawn_app().await;
    seed(&app).await;
    let base = format!("/api/v1/statistics/events/counts/day/{DAY}");

    // In all.
    let (status, all, _) = get(&app, TOKEN, &base).await;
    assert_eq!(status, 200);
    assert_eq!(all["counts"], json!([{"count": 5}]));
    assert_eq!(all["start"], format!("{DAY}T00:00:00"));
    assert_eq!(all["end"], "2026-11-11T00:00:00");
    assert!(all["links"]["next"]
        .as_str()
        .unwrap()
        .ends_with("/events/counts/day/2026-11-11"));

    // By method, most first, then by value.
    let (_, by, _) = get(&app, TOKEN, &format!("{base}?by=authMethodType")).await;
    assert_eq!(
        by["counts"],
        json!([
            {"key": "PASSWORD", "count": 3},
            {"key": "OTP", "count": 1},
            {"key": "SAML", "count": 1},
        ])
    );
    assert!(by["links"]["self"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/counts/day/{DAY}?by=authMethodType&top=10")));

    // The top two, per hour: buckets in order, within each the rank.
    let (_, hourly, _) = get(
        &app,
        TOKEN,
        &format!("{base}?by=authMethodType&every=hour&top=2"),
    )
    .await;
    assert_eq!(
        hourly["counts"],
        json!([
            {"time": format!("{DAY}T08:00:00"), "key": "PASSWORD", "count": 2},
            {"time": format!("{DAY}T09:00:00"), "key": "PASSWORD", "count": 1},
            {"time": format!("{DAY}T09:00:00"), "key": "OTP", "count": 1},
        ])
    );

    // With a filter of the kind.
    let (_, filtered, _) = get(
        &app,
        TOKEN,
        &format!("{base}?every=hour&authMethodType=PASSWORD"),
    )
    .await;
    assert_eq!(
        filtered["counts"],
        json!([
            {"time": format!("{DAY}T08:00:00"), "count": 2},
            {"time": format!("{DAY}T09:00:00"), "count": 1},
        ])
    );

    // Local buckets: Helsinki's 10:00 is 08:00 UTC; the day is local.
    let (_, local, _) = get(
        &app,
        TOKEN,
        &format!("{base}?every=hour&tz=Europe/Helsinki"),
    )
    .await;
    assert_eq!(local["start"], format!("{DAY}T00:00:00+02:00"));
    assert_eq!(
        local["counts"][0],
        json!({"time": format!("{DAY}T10:00:00+02:00"), "count": 2})
    );
    // 23:59 UTC is the next local day: not in this one; 00:00 UTC of the
    // 11th (erin) is 02:00 local, also not.
    let total: i64 = local["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 4);

    // CSV: the columns' own headers.
    let mut response = app
        .get(&format!("{base}?by=authMethodType&every=hour&top=1"))
        .insert_header(("Accept", "text/csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let disposition = response
        .headers()
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.contains(&format!("events-counts-day-{DAY}.csv")),
        "{disposition}"
    );
    let csv = String::from_utf8(body_of(&mut response).await).unwrap();
    assert_eq!(
        csv,
        format!(
            "Time,Authentication Method Type,Count\r\n{DAY}T08:00:00,PASSWORD,2\r\n{DAY}T09:00:00,PASSWORD,1\r\n"
        )
    );

    // The latest complete window answers too (empty here).
    let (status, latest, _) = get(
        &app,
        TOKEN,
        "/api/v1/statistics/events/counts/hour?by=authMethodType",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(latest["counts"], json!([]));
}

#[actix_web::test]
async fn identities_are_counted_as_pseudonyms_unless_the_token_may_see_them() {
    let app = spawn_app().await;
    seed(&app).await;
    let path = format!("/api/v1/statistics/events/counts/day/{DAY}?by=userId&top=1");
    let (_, pseudonymous, text) = get(&app, TOKEN, &path).await;
    assert_eq!(
        pseudonymous["counts"],
        json!([{"key": app.pseudonym("alice"), "count": 2}])
    );
    assert!(!text.contains("alice"), "{text}");
    let (_, revealed, _) = get(&app, IDENTITIES_TOKEN, &path).await;
    assert_eq!(revealed["counts"], json!([{"key": "alice", "count": 2}]));

    // Filtering by a pseudonym, as in the windows.
    let (_, one, _) = get(
        &app,
        TOKEN,
        &format!(
            "/api/v1/statistics/client-events/counts/day/{DAY}?client={}",
            acctstream::core::identity::pseudonym_of(
                &app.pseudonymiser,
                acctstream::core::identity::IdentityType::Mac,
                "aa:bb:cc:dd:ee:01"
            )
        ),
    )
    .await;
    // No records: no rows.
    assert_eq!(one["counts"], json!([]));
    app.insert_client_events(&[
        client_event(
            &format!("{DAY}T10:00:00Z"),
            "aa:bb:cc:dd:ee:01",
            "Corp",
            "ap-1",
        ),
        client_event(
            &format!("{DAY}T10:01:00Z"),
            "aa:bb:cc:dd:ee:02",
            "Corp",
            "ap-1",
        ),
    ])
    .await;
    let (_, by_client, text) = get(
        &app,
        TOKEN,
        &format!("/api/v1/statistics/client-events/counts/day/{DAY}?by=macAddress"),
    )
    .await;
    assert_eq!(by_client["counts"].as_array().unwrap().len(), 2);
    assert!(!text.contains("aa:bb:cc"), "{text}");
}

#[actix_web::test]
async fn sessions_are_summed_and_count_from_the_window_start() {
    let app = spawn_app().await;
    app.db
        .batch_execute(&format!(
            "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
             acctstarttime, acctstoptime, acctinputoctets, acctoutputoctets) VALUES \
             ('a', 'a', 'alice', '10.0.0.1', '2026-11-09T22:00:00Z', '{DAY}T01:30:00Z', 10, 20), \
             ('b', 'b', 'alice', '10.0.0.1', '{DAY}T05:00:00Z', '{DAY}T06:00:00Z', 1, 2), \
             ('c', 'c', 'bob', '10.0.0.2', '{DAY}T05:30:00Z', '{DAY}T06:00:00Z', 100, NULL), \
             ('d', 'd', 'carol', '10.0.0.2', '2026-11-12T05:30:00Z', NULL, 5, 5);"
        ))
        .await
        .unwrap();
    let base = format!("/api/v1/statistics/sessions/counts/day/{DAY}");
    let (status, traffic, _) = get(
        &app,
        TOKEN,
        &format!("{base}?by=nasIpAddress&sum=acctInputOctets&sum=acctOutputOctets"),
    )
    .await;
    assert_eq!(status, 200);
    // Ranked by the total of the sums: 10.0.0.2 has 100, 10.0.0.1 33.
    assert_eq!(
        traffic["counts"],
        json!([
            {"key": "10.0.0.2", "count": 1, "sums": {"acctInputOctets": 100, "acctOutputOctets": null}},
            {"key": "10.0.0.1", "count": 2, "sums": {"acctInputOctets": 11, "acctOutputOctets": 22}},
        ])
    );
    // The session that started the day before counts in the first hour.
    let (_, hourly, _) = get(&app, TOKEN, &format!("{base}?every=hour")).await;
    assert_eq!(
        hourly["counts"],
        json!([
            {"time": format!("{DAY}T00:00:00"), "count": 1},
            {"time": format!("{DAY}T05:00:00"), "count": 2},
        ])
    );
}

#[actix_web::test]
async fn what_cannot_be_counted_is_a_clear_400() {
    let app = spawn_app().await;
    let base = format!("/api/v1/statistics/events/counts/day/{DAY}");
    for (query, words) in [
        ("by=timestamp", "`by`"),
        ("by=nothing", "authMethodType"),
        ("sum=authMethodType", "`sum`"),
        ("every=week", "`every`"),
        ("top=0", "`top`"),
        ("top=x", "`top`"),
        ("by=userId&by=authMethodType", "only once"),
    ] {
        let (status, body, text) = get(&app, TOKEN, &format!("{base}?{query}")).await;
        assert_eq!(status, 400, "{query}: {text}");
        assert_eq!(body["error"], "invalid_request", "{query}");
        assert!(
            body["error_description"].as_str().unwrap().contains(words),
            "{query}: {text}"
        );
    }
    // A month by minute is too many buckets.
    let (status, body, _) = get(
        &app,
        TOKEN,
        "/api/v1/statistics/events/counts/month/2026-11?every=minute",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("43200 buckets"));
    // The window's own rules.
    let (status, _, _) = get(
        &app,
        TOKEN,
        "/api/v1/statistics/events/counts/day/2026-13-01",
    )
    .await;
    assert_eq!(status, 400);
    // The audit trail's counts need the audit scope, as its windows.
    let (status, _, _) = get(
        &app,
        TOKEN,
        &format!("/api/v1/audit/counts/day/{DAY}?by=client"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = get(
        &app,
        AUDIT_TOKEN,
        &format!("/api/v1/audit/counts/day/{DAY}?by=client"),
    )
    .await;
    assert_eq!(status, 200);
    // No token: 401.
    let response = app
        .client()
        .get(format!("{}{base}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

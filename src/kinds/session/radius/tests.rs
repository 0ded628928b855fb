use chrono::TimeZone;
use serde_json::{json, Value};

use super::*;

/// `value` posted alone and read as the ingest endpoint reads it.
fn parse_value(value: &Value, received: DateTime<Utc>) -> Result<(Request, Notes), Rejection> {
    let text = value.to_string();
    match parse_body(text.as_bytes(), false) {
        Ok(Body::Single(object)) => parse_request(&object, received),
        other => panic!("not one object: {other:?}"),
    }
}

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

fn session(value: Value) -> SessionRow {
    match parse_value(&value, received()).unwrap().0 {
        Request::Session(row) => *row,
        other => panic!("not a session request: {other:?}"),
    }
}

fn rest(ty: &str, value: Value) -> Value {
    json!({ "type": ty, "value": [value] })
}

#[test]
fn rlm_rest_form_and_plain_values_read_the_same() {
    let plain = session(json!({
        "Acct-Status-Type": "Interim-Update",
        "User-Name": "bob",
        "Acct-Session-Id": "S1",
        "NAS-IP-Address": "10.0.0.1",
        "NAS-Port": 7,
        "Acct-Session-Time": 600,
        "Acct-Input-Octets": 5,
        "Acct-Input-Gigawords": 2,
        "Acct-Output-Octets": "9",
        "NAS-Port-Type": 19,
        "Service-Type": "framed-user",
        "Event-Timestamp": 1_795_000_000,
        "X-Vendor-Thing": "ignored",
    }));
    let rlm_rest = session(json!({
        "Acct-Status-Type": rest("integer", json!("Interim-Update")),
        "User-Name": rest("string", json!("bob")),
        "Acct-Session-Id": rest("string", json!("S1")),
        "NAS-IP-Address": rest("ipaddr", json!("10.0.0.1")),
        "NAS-Port": rest("integer", json!(7)),
        "Acct-Session-Time": rest("integer", json!(600)),
        "Acct-Input-Octets": rest("integer", json!(5)),
        "acct-input-gigawords": rest("integer", json!(2)),
        "Acct-Output-Octets": rest("integer", json!(9)),
        "NAS-Port-Type": rest("integer", json!("Wireless-802.11")),
        "Service-Type": rest("integer", json!(2)),
        "Event-Timestamp": rest("date", json!(1_795_000_000)),
    }));
    assert_eq!(plain, rlm_rest);
    assert_eq!(plain.input_octets, (2 << 32) + 5);
    assert_eq!(plain.output_octets, 9);
    assert_eq!(plain.nas_port_type.as_deref(), Some("Wireless-802.11"));
    assert_eq!(plain.service_type.as_deref(), Some("Framed-User"));
    assert_eq!(plain.nas_port_id.as_deref(), Some("7"));
    // FreeRADIUS's default acct_unique policy.
    assert_eq!(plain.unique_id, "81a394100a277b444e4be46136b1d39d");
    // An interim update's start is its event time less the session time.
    assert_eq!(plain.start, plain.update - Duration::seconds(600));
}

#[test]
fn times_come_from_event_timestamp_or_the_arrival_less_the_delay() {
    let base =
        json!({"Acct-Status-Type": "Start", "Acct-Session-Id": "S", "NAS-IP-Address": "10.0.0.1"});
    let with = |extra: Value| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    assert_eq!(session(base.clone()).start, received());
    assert_eq!(
        session(with(json!({"Acct-Delay-Time": 30}))).start,
        received() - Duration::seconds(30)
    );
    let dated = session(with(json!({
        "Event-Timestamp": rest("date", json!("Nov 26 2026 01:16:08 UTC")),
        "Acct-Delay-Time": 30,
    })));
    assert_eq!(
        dated.start,
        Utc.with_ymd_and_hms(2026, 11, 26, 1, 16, 8).unwrap()
    );
    let (request, notes) = parse_value(
        &with(json!({"Event-Timestamp": "Nov 25 2026 17:40:00 CST"})),
        received(),
    )
    .unwrap();
    assert_eq!(notes.zone_fallback.as_deref(), Some("10.0.0.1"));
    let Request::Session(row) = request else {
        panic!()
    };
    assert_eq!(row.start, received());
    let err = parse_value(&with(json!({"Event-Timestamp": "soon"})), received()).unwrap_err();
    assert_eq!(err.attribute, "Event-Timestamp");
    // Issue 27, item 1: a time outside the years 0001 to 9999 is refused.
    let err = parse_value(
        &with(json!({"Event-Timestamp": "Jan  1 0000 00:00:00 UTC"})),
        received(),
    )
    .unwrap_err();
    assert_eq!(err.attribute, "Event-Timestamp");
    assert!(
        err.to_string().contains("outside the years 0001 to 9999"),
        "{err}"
    );
}

#[test]
fn byte_escaped_utf8_is_read_back() {
    assert_eq!(utf8_from_byte_escapes("jos\u{00C3}\u{00A9}"), "josé");
    assert_eq!(utf8_from_byte_escapes("josé"), "josé");
    assert_eq!(utf8_from_byte_escapes("caf\u{00E9}"), "café");
    let row = session(json!({
        "Acct-Status-Type": "Start", "Acct-Session-Id": "S", "NAS-IP-Address": "10.0.0.1",
        "User-Name": rest("string", json!("jos\u{00C3}\u{00A9}")),
    }));
    assert_eq!(row.user.as_deref(), Some("josé"));
}

#[test]
fn bad_requests_name_the_attribute_never_the_value() {
    let cases = [
        (json!({}), "Acct-Status-Type"),
        (json!({"Acct-Status-Type": "Reboot"}), "Acct-Status-Type"),
        (json!({"Acct-Status-Type": 15}), "Acct-Status-Type"),
        (
            json!({"Acct-Status-Type": "Start", "NAS-IP-Address": "10.0.0.1"}),
            "Acct-Session-Id",
        ),
        (
            json!({"Acct-Status-Type": "Start", "Acct-Session-Id": "S", "NAS-IP-Address": "secret-host"}),
            "NAS-IP-Address",
        ),
        (
            json!({"Acct-Status-Type": "Stop", "Acct-Session-Id": "S", "Acct-Input-Octets": -1}),
            "Acct-Input-Octets",
        ),
        (
            json!({"Acct-Status-Type": "Stop", "Acct-Session-Id": "S", "User-Name": "a\u{0}b"}),
            "User-Name",
        ),
        (
            json!({"Acct-Status-Type": "Accounting-On"}),
            "NAS-IP-Address",
        ),
        (
            json!({"Acct-Status-Type": "Start", "Acct-Session-Id": {"type": "string"}}),
            "Acct-Session-Id",
        ),
    ];
    for (value, attribute) in cases {
        let err = parse_value(&value, received()).unwrap_err();
        assert_eq!(err.attribute, attribute, "{value}");
        assert!(!err.to_string().contains("secret-host"));
    }
}

#[test]
fn accounting_on_closes_the_nas_with_nas_reboot() {
    let (request, _) = parse_value(
        &json!({"Acct-Status-Type": rest("integer", json!("Accounting-On")), "NAS-IP-Address": "10.0.0.9"}),
        received(),
    )
    .unwrap();
    assert_eq!(
        request,
        Request::NasReboot(NasReboot {
            nas: "10.0.0.9".parse().unwrap(),
            at: received(),
            cause: "NAS-Reboot".into()
        })
    );
}

fn packet(status: &str, at: i64, session_time: Option<i64>, octets: Option<i64>) -> Request {
    let mut v = json!({
        "Acct-Status-Type": status, "Acct-Session-Id": "S", "NAS-IP-Address": "10.0.0.1",
        "User-Name": "bob", "Event-Timestamp": 1_795_000_000 + at,
    });
    let map = v.as_object_mut().unwrap();
    if let Some(t) = session_time {
        map.insert("Acct-Session-Time".into(), json!(t));
    }
    if let Some(o) = octets {
        map.insert("Acct-Input-Octets".into(), json!(o));
    }
    if status == "Stop" {
        map.insert("Acct-Terminate-Cause".into(), json!(1));
    }
    parse_value(&v, received()).unwrap().0
}

#[test]
fn a_batch_merges_to_the_same_row_in_any_order() {
    let packets = [
        packet("Start", 0, None, None),
        packet("Interim-Update", 300, Some(300), Some(1000)),
        packet("Interim-Update", 600, Some(600), Some(2000)),
        packet("Stop", 900, Some(900), None),
        packet("Interim-Update", 1200, Some(1200), Some(500)),
    ];
    let rows = |order: &[usize]| {
        let steps = merge_requests(order.iter().map(|&i| packets[i].clone()));
        let [Step::Sessions(rows)] = steps.as_slice() else {
            panic!("{steps:?}")
        };
        let mut row = rows[0].clone();
        // The interval alone depends on arrival order, as in FreeRADIUS.
        row.interval = None;
        row.status = StatusType::Start;
        row
    };
    let expected = rows(&[0, 1, 2, 3, 4]);
    for order in [[4, 3, 2, 1, 0], [3, 0, 4, 2, 1], [2, 4, 0, 1, 3]] {
        assert_eq!(rows(&order), expected);
    }
    let start = Utc.timestamp_opt(1_795_000_000, 0).unwrap();
    assert_eq!(expected.start, start);
    // The late interim moves the update time but does not reopen the session.
    assert_eq!(expected.stop, Some(start + Duration::seconds(900)));
    assert_eq!(expected.update, start + Duration::seconds(1200));
    assert_eq!(expected.session_time, Some(1200));
    assert_eq!(expected.input_octets, 2000);
    assert_eq!(expected.terminate_cause.as_deref(), Some("User-Request"));
}

#[test]
fn nas_reboots_split_a_batch_in_order() {
    let on = parse_value(
        &json!({"Acct-Status-Type": "Accounting-On", "NAS-IP-Address": "10.0.0.1"}),
        received(),
    )
    .unwrap()
    .0;
    let steps = merge_requests(vec![
        packet("Start", 0, None, None),
        on,
        packet("Stop", 10, Some(10), None),
    ]);
    assert_eq!(steps.len(), 3);
    assert!(matches!(steps[1], Step::Reboot(_)));
}

#[test]
fn bodies_are_one_object_an_array_or_ndjson() {
    assert!(matches!(
        parse_body(br#"{"a":1}"#, false),
        Ok(Body::Single(_))
    ));
    let Ok(Body::Batch(b)) = parse_body(br#"[{"a":1},{"b":2}]"#, false) else {
        panic!()
    };
    assert_eq!(b.len(), 2);
    let Ok(Body::Batch(b)) = parse_body(b"{\"a\":1}\n\n{\"b\":2}\r\n", true) else {
        panic!()
    };
    assert_eq!(b.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(
        parse_body(b"[1]", false).unwrap_err(),
        BodyError::NotObject { record: 1 }
    );
    assert_eq!(parse_body(b"[]", false).unwrap_err(), BodyError::Empty);
    assert!(matches!(
        parse_body(b"{\"a\":1}\n{", true),
        Err(BodyError::Syntax { record: 2, .. })
    ));
}

#[test]
fn an_exact_attribute_name_wins_over_other_spellings() {
    let user = |text: &str| {
        let (request, _) = parse_body(text.as_bytes(), false)
            .ok()
            .and_then(|body| match body {
                Body::Single(object) => parse_request(&object, received()).ok(),
                Body::Batch(_) => None,
            })
            .unwrap();
        match request {
            Request::Session(row) => row.user,
            Request::NasReboot(_) => None,
        }
    };
    let base = r#""Acct-Status-Type":"Start","Acct-Session-Id":"S","NAS-IP-Address":"10.0.0.1""#;
    assert_eq!(
        user(&format!(
            r#"{{{base},"user-name":"a","User-Name":"b","USER-NAME":"c"}}"#
        ))
        .as_deref(),
        Some("b")
    );
    // No exact spelling: the one that sorts first, as in a sorted map.
    assert_eq!(
        user(&format!(r#"{{{base},"user-name":"a","USER-NAME":"c"}}"#)).as_deref(),
        Some("c")
    );
    // A repeated name: its last value, as JSON object readers keep it.
    assert_eq!(
        user(&format!(r#"{{{base},"User-Name":"a","User-Name":"b"}}"#)).as_deref(),
        Some("b")
    );
    // Unknown attributes of any shape, even numbers no f64 holds, are ignored.
    assert_eq!(
        user(&format!(
            r#"{{{base},"X-Big":1e400,"X-Obj":{{"a":[1]}},"User-Name":"d"}}"#
        ))
        .as_deref(),
        Some("d")
    );
}

//! The Wi-Fi client-event summary of one window: counts by event type, the
//! most frequent failure reasons, and the connection success rate per SSID
//! and per AP (successes / (successes + failures); intermediate events are
//! not attempts). Pure: the database layer fills it, this module orders and
//! encodes it as JSON, CSV or NDJSON.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::core::encode::{write_csv_field, write_csv_text, FormulaGuard};
use crate::core::negotiate::OutputFormat;
use crate::core::window::NavigationLinks;

/// How many failure reasons the summary lists.
pub const TOP_FAILURES: usize = 10;

/// Events of one type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeCount {
    /// `Success`, `Failure` or `Intermediate`.
    pub event_type: String,
    /// Events of that type in the window.
    pub count: i64,
}

/// One failure reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureCount {
    /// The failure category code.
    pub failure_code: Option<i64>,
    /// The failure category.
    pub failure: Option<String>,
    /// The specific failure code.
    pub sub_failure_code: Option<i64>,
    /// The specific failure.
    pub sub_failure: Option<String>,
    /// Failures with this reason.
    pub count: i64,
}

/// Connection attempts at one SSID or AP.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempts {
    /// The SSID or AP name (`null` when the controller sent none).
    pub name: Option<String>,
    /// Successful connections.
    pub successes: i64,
    /// Failed connections.
    pub failures: i64,
    /// `successes / (successes + failures)`, rounded to 4 decimals; `null`
    /// without attempts.
    pub success_rate: Option<f64>,
}

impl Attempts {
    /// Attempts with their success rate.
    pub fn new(name: Option<String>, successes: i64, failures: i64) -> Attempts {
        let attempts = successes + failures;
        let success_rate = (attempts > 0)
            .then(|| (successes as f64 / attempts as f64 * 10_000.0).round() / 10_000.0);
        Attempts {
            name,
            successes,
            failures,
            success_rate,
        }
    }
}

/// The summary of one window.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSummary {
    /// The window's links (`self`, `prev`, `next`), as for its events.
    pub links: NavigationLinks,
    /// The window's start and end in the reader's zone, when `tz` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::core::window::WindowSpan>,
    /// Events per type, every type listed (0 when none).
    pub event_types: Vec<TypeCount>,
    /// The most frequent failure reasons, most frequent first (at most
    /// [`TOP_FAILURES`]).
    pub top_failures: Vec<FailureCount>,
    /// Per SSID, most attempts first.
    pub ssids: Vec<Attempts>,
    /// Per AP, most failures first, then lowest success rate, then name.
    pub aps: Vec<Attempts>,
}

impl Serialize for NavigationLinks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut links = serializer.serialize_struct("NavigationLinks", 3)?;
        links.serialize_field("self", &self.self_link)?;
        links.serialize_field("prev", &self.prev)?;
        links.serialize_field("next", &self.next)?;
        links.end()
    }
}

/// The CSV header of the summary.
pub const CSV_HEADER: [&str; 7] = [
    "Section",
    "Name",
    "Code",
    "Count",
    "Successes",
    "Failures",
    "Success Rate",
];

impl ClientSummary {
    /// Puts the lists in their documented order.
    pub fn sort(&mut self) {
        self.top_failures.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.sub_failure_code.cmp(&b.sub_failure_code))
        });
        self.top_failures.truncate(TOP_FAILURES);
        self.ssids.sort_by(|a, b| {
            (b.successes + b.failures)
                .cmp(&(a.successes + a.failures))
                .then_with(|| a.name.cmp(&b.name))
        });
        self.aps.sort_by(|a, b| {
            b.failures
                .cmp(&a.failures)
                .then_with(|| {
                    // Without attempts there is no rate: last.
                    a.success_rate
                        .unwrap_or(f64::INFINITY)
                        .total_cmp(&b.success_rate.unwrap_or(f64::INFINITY))
                })
                .then_with(|| a.name.cmp(&b.name))
        });
    }

    /// The rows of the CSV and NDJSON forms: section, name, code, count,
    /// successes, failures, success rate.
    fn rows(&self) -> Vec<[Option<String>; 7]> {
        let n = |v: i64| Some(v.to_string());
        let mut rows = Vec::new();
        for t in &self.event_types {
            rows.push([
                Some("eventType".into()),
                Some(t.event_type.clone()),
                None,
                n(t.count),
                None,
                None,
                None,
            ]);
        }
        for f in &self.top_failures {
            let name = match (&f.failure, &f.sub_failure) {
                (Some(a), Some(b)) => Some(format!("{a}: {b}")),
                (a, b) => a.clone().or_else(|| b.clone()),
            };
            let code = match (f.failure_code, f.sub_failure_code) {
                (Some(a), Some(b)) => Some(format!("{a}.{b}")),
                (a, b) => a.or(b).map(|c| c.to_string()),
            };
            rows.push([
                Some("failure".into()),
                name,
                code,
                n(f.count),
                None,
                None,
                None,
            ]);
        }
        for (section, list) in [("ssid", &self.ssids), ("ap", &self.aps)] {
            for a in list {
                rows.push([
                    Some(section.into()),
                    a.name.clone(),
                    None,
                    n(a.successes + a.failures),
                    n(a.successes),
                    n(a.failures),
                    a.success_rate.map(|r| r.to_string()),
                ]);
            }
        }
        rows
    }

    /// The body in `format`. CSV: the header [`CSV_HEADER`] and one row per
    /// entry (sections `eventType`, `failure`, `ssid`, `ap`); names are text
    /// and guarded against spreadsheet formulas. NDJSON: one object per row.
    pub fn encode(&self, format: OutputFormat, guard: FormulaGuard) -> Bytes {
        match format {
            OutputFormat::Json => serde_json::to_vec(self)
                .map(Bytes::from)
                .unwrap_or_default(),
            OutputFormat::Csv => {
                let mut buf = BytesMut::new();
                buf.put_slice(CSV_HEADER.join(",").as_bytes());
                buf.put_slice(b"\r\n");
                for row in self.rows() {
                    for (i, cell) in row.iter().enumerate() {
                        if i > 0 {
                            buf.put_u8(b',');
                        }
                        let cell = cell.as_deref().unwrap_or_default().as_bytes();
                        if i == 1 {
                            write_csv_text(&mut buf, cell, guard == FormulaGuard::Quote);
                        } else {
                            write_csv_field(&mut buf, cell);
                        }
                    }
                    buf.put_slice(b"\r\n");
                }
                buf.freeze()
            }
            OutputFormat::Ndjson => {
                let mut buf = Vec::new();
                for row in self.rows() {
                    let number = |i: usize| row[i].as_deref().and_then(|v| v.parse::<f64>().ok());
                    let line = serde_json::json!({
                        "section": row[0],
                        "name": row[1],
                        "code": row[2],
                        "count": number(3),
                        "successes": number(4),
                        "failures": number(5),
                        "successRate": number(6),
                    });
                    let _ = serde_json::to_writer(&mut buf, &line);
                    buf.push(b'\n');
                }
                Bytes::from(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> ClientSummary {
        let mut s = ClientSummary {
            links: NavigationLinks {
                self_link: "s".into(),
                prev: "p".into(),
                next: "n".into(),
                span: None,
            },
            window: None,
            event_types: vec![
                TypeCount {
                    event_type: "Success".into(),
                    count: 8,
                },
                TypeCount {
                    event_type: "Failure".into(),
                    count: 3,
                },
                TypeCount {
                    event_type: "Intermediate".into(),
                    count: 0,
                },
            ],
            top_failures: vec![
                FailureCount {
                    failure_code: Some(4),
                    failure: Some("DHCP Failure".into()),
                    sub_failure_code: Some(8),
                    sub_failure: Some("No offer".into()),
                    count: 1,
                },
                FailureCount {
                    failure_code: Some(7),
                    failure: Some("Incorrect PSK".into()),
                    sub_failure_code: Some(14),
                    sub_failure: Some("=wrong".into()),
                    count: 2,
                },
            ],
            ssids: vec![
                Attempts::new(Some("Guest".into()), 1, 0),
                Attempts::new(Some("Corp".into()), 7, 3),
            ],
            aps: vec![
                Attempts::new(Some("AP-1".into()), 5, 0),
                Attempts::new(Some("AP-2".into()), 1, 2),
                Attempts::new(Some("AP-3".into()), 2, 1),
                Attempts::new(None, 0, 0),
            ],
        };
        s.sort();
        s
    }

    #[test]
    fn orders_and_rates() {
        let s = summary();
        assert_eq!(s.top_failures[0].count, 2);
        assert_eq!(s.ssids[0].name.as_deref(), Some("Corp"));
        assert_eq!(s.ssids[0].success_rate, Some(0.7));
        let aps: Vec<_> = s.aps.iter().map(|a| a.name.as_deref()).collect();
        assert_eq!(aps, [Some("AP-2"), Some("AP-3"), Some("AP-1"), None]);
        assert_eq!(s.aps[3].success_rate, None);
        assert_eq!(Attempts::new(None, 2, 1).success_rate, Some(0.6667));
    }

    #[test]
    fn encodes_json_csv_and_ndjson() {
        let s = summary();
        let json: serde_json::Value =
            serde_json::from_slice(&s.encode(OutputFormat::Json, FormulaGuard::Quote)).unwrap();
        assert_eq!(json["links"]["self"], "s");
        assert_eq!(
            json["eventTypes"][1],
            serde_json::json!({"eventType": "Failure", "count": 3})
        );
        assert_eq!(json["topFailures"][0]["subFailure"], "=wrong");
        assert_eq!(json["aps"][0]["successRate"], 0.3333);
        let csv =
            String::from_utf8(s.encode(OutputFormat::Csv, FormulaGuard::Quote).to_vec()).unwrap();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "Section,Name,Code,Count,Successes,Failures,Success Rate"
        );
        assert_eq!(lines[1], "eventType,Success,,8,,,");
        assert_eq!(lines[4], "failure,Incorrect PSK: =wrong,7.14,2,,,");
        assert_eq!(lines[6], "ssid,Corp,,10,7,3,0.7");
        let guarded = summary();
        let mut guarded = guarded;
        guarded.top_failures[0].failure = None;
        let csv = String::from_utf8(
            guarded
                .encode(OutputFormat::Csv, FormulaGuard::Quote)
                .to_vec(),
        )
        .unwrap();
        assert!(csv.contains("failure,'=wrong,7.14,2"), "{csv}");
        let ndjson = s.encode(OutputFormat::Ndjson, FormulaGuard::Quote);
        let first: serde_json::Value =
            serde_json::from_slice(ndjson.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["section"], "eventType");
        assert_eq!(first["count"], 8.0);
    }
}

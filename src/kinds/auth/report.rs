//! The accounting reports: their months and days, their rows in report order,
//! the CSV and JSON encodings and the download file names.
//!
//! Reports are small (one row per method type, or per day and method type),
//! so each is encoded whole into one body rather than streamed.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use serde::Serialize;

use crate::core::encode::{write_csv_field, write_csv_text, write_json_str, FormulaGuard};
use crate::core::filename::FilenamePrefix;
use crate::core::negotiate::OutputFormat;

/// The label of the last row of the accounting report.
pub const TOTAL_LABEL: &str = "Total";
/// The header row of the accounting report's CSV body.
pub const ACCOUNTING_CSV_HEADER: [&str; 3] = ["Month", "Authentication Method", "User Count"];
/// The header row of the daily-users report's CSV body.
pub const DAILY_USERS_CSV_HEADER: [&str; 3] = ["Date", "Authentication Method", "User Count"];

/// A malformed or impossible report date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReportDateError {
    /// Not a `YYYY-MM` month of years 0001 to 9999.
    #[error("Invalid month: expected YYYY-MM (e.g. 2021-03), a UTC calendar month of years 0001 to 9999.")]
    InvalidMonth,
    /// Not a `YYYY-MM-DD` date of years 0001 to 9999.
    #[error("Invalid date: expected YYYY-MM-DD (e.g. 2021-03-01), a UTC calendar day of years 0001 to 9999.")]
    InvalidDay,
}

/// A calendar month (UTC) of years 0001 to 9999, written `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReportMonth {
    first: NaiveDate,
}

impl ReportMonth {
    /// Parses exactly `YYYY-MM` (two-digit month 01 to 12, four-digit year
    /// 0001 to 9999); nothing else is accepted, not even a day on the first.
    pub fn parse(text: &str) -> Result<ReportMonth, ReportDateError> {
        let invalid = ReportDateError::InvalidMonth;
        let s = text.as_bytes();
        if s.len() != 7 || s[4] != b'-' {
            return Err(invalid);
        }
        let year = digits(&s[0..4]).ok_or(invalid)?;
        let month = digits(&s[5..7]).ok_or(invalid)?;
        ReportMonth::from_ym(year, month).ok_or(invalid)
    }

    fn from_ym(year: u32, month: u32) -> Option<ReportMonth> {
        if !(1..=9999).contains(&year) {
            return None;
        }
        let first = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, 1)?;
        Some(ReportMonth { first })
    }

    /// The calendar month before the one `now` is in (UTC).
    pub fn previous(now: DateTime<Utc>) -> Option<ReportMonth> {
        let date = now.date_naive();
        let (year, month) = match date.month() {
            1 => (date.year().checked_sub(1)?, 12),
            m => (date.year(), m - 1),
        };
        ReportMonth::from_ym(u32::try_from(year).ok()?, month)
    }

    /// The month's first day.
    pub fn first_day(self) -> NaiveDate {
        self.first
    }

    /// The first day of the following month (the exclusive end).
    pub fn end_day(self) -> NaiveDate {
        // Year 9999 ends before chrono's limit (year 262143), so this cannot fail.
        self.first
            .checked_add_months(Months::new(1))
            .unwrap_or(NaiveDate::MAX)
    }
}

impl fmt::Display for ReportMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.first.year(), self.first.month())
    }
}

/// A calendar day (UTC) of years 0001 to 9999, written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReportDay {
    date: NaiveDate,
}

impl ReportDay {
    /// Parses exactly `YYYY-MM-DD`, rejecting impossible dates such as
    /// `2021-02-30`.
    pub fn parse(text: &str) -> Result<ReportDay, ReportDateError> {
        let invalid = ReportDateError::InvalidDay;
        let s = text.as_bytes();
        if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
            return Err(invalid);
        }
        let year = digits(&s[0..4]).ok_or(invalid)?;
        let month = digits(&s[5..7]).ok_or(invalid)?;
        let day = digits(&s[8..10]).ok_or(invalid)?;
        if !(1..=9999).contains(&year) {
            return Err(invalid);
        }
        let year = i32::try_from(year).map_err(|_| invalid)?;
        let date = NaiveDate::from_ymd_opt(year, month, day).ok_or(invalid)?;
        Ok(ReportDay { date })
    }

    /// The date.
    pub fn date(self) -> NaiveDate {
        self.date
    }
}

impl fmt::Display for ReportDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_date(f, self.date)
    }
}

fn write_date(f: &mut impl fmt::Write, date: NaiveDate) -> fmt::Result {
    write!(
        f,
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month(),
        date.day()
    )
}

fn date_string(date: NaiveDate) -> String {
    let mut out = String::with_capacity(10);
    // Writing into a String cannot fail.
    let _ = write_date(&mut out, date);
    out
}

/// Parses ASCII digits only (no sign, no whitespace).
fn digits(field: &[u8]) -> Option<u32> {
    field.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// `<prefix>accounting-report-<yyyy-MM>.csv`.
pub fn accounting_report_file(prefix: &FilenamePrefix, month: ReportMonth) -> String {
    prefix.name(format_args!("accounting-report-{month}.csv"))
}

/// `<prefix>daily-users-<yyyy-MM>.csv`.
pub fn daily_users_file(prefix: &FilenamePrefix, month: ReportMonth) -> String {
    prefix.name(format_args!("daily-users-{month}.csv"))
}

/// `<prefix>events-day-<yyyy-MM-dd>.csv`.
pub fn day_events_file(prefix: &FilenamePrefix, day: ReportDay) -> String {
    prefix.name(format_args!("events-day-{day}.csv"))
}

/// Distinct users of one authentication method type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodUsers {
    /// The authentication method type, e.g. `PASSWORD`.
    pub auth_method_type: String,
    /// How many distinct users used it.
    pub user_count: i64,
}

/// Monthly unique users per authentication method type, most used first
/// (ties by name), and the distinct users across all methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountingReport {
    #[serde(serialize_with = "serialize_display")]
    month: ReportMonth,
    rows: Vec<MethodUsers>,
    total: i64,
}

impl AccountingReport {
    /// Builds the report, putting `rows` in report order: user count
    /// descending, then method type ascending (byte-wise).
    pub fn new(month: ReportMonth, mut rows: Vec<MethodUsers>, total: i64) -> AccountingReport {
        rows.sort_by(|a, b| {
            b.user_count
                .cmp(&a.user_count)
                .then_with(|| a.auth_method_type.cmp(&b.auth_method_type))
        });
        AccountingReport { month, rows, total }
    }

    /// The month.
    pub fn month(&self) -> ReportMonth {
        self.month
    }

    /// The rows in report order.
    pub fn rows(&self) -> &[MethodUsers] {
        &self.rows
    }

    /// Distinct users across all methods (not the sum of the rows).
    pub fn total(&self) -> i64 {
        self.total
    }

    /// The body: JSON `{"month":"2021-03","rows":[{"authMethodType":…,"userCount":…}],"total":…}`,
    /// or CSV (CRLF) `Month,Authentication Method,User Count`, one row per
    /// method and a last row `<month>,Total,<total>`.
    pub fn encode(&self, format: OutputFormat, guard: FormulaGuard) -> Bytes {
        match format {
            OutputFormat::Json => json(self),
            OutputFormat::Csv | OutputFormat::Ndjson => {
                let month = self.month.to_string();
                let mut rows: Vec<[String; 3]> = self
                    .rows
                    .iter()
                    .map(|r| {
                        [
                            month.clone(),
                            r.auth_method_type.clone(),
                            r.user_count.to_string(),
                        ]
                    })
                    .collect();
                rows.push([month, TOTAL_LABEL.to_owned(), self.total.to_string()]);
                if format == OutputFormat::Csv {
                    csv(ACCOUNTING_CSV_HEADER, &rows, guard)
                } else {
                    ndjson(["month", "authMethodType", "userCount"], &rows)
                }
            }
        }
    }
}

/// Distinct users of one method type on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyUsers {
    /// The UTC day.
    #[serde(serialize_with = "serialize_date")]
    pub date: NaiveDate,
    /// The authentication method type.
    pub auth_method_type: String,
    /// How many distinct users used it that day.
    pub user_count: i64,
}

/// Distinct users per day and method type over one month, by date, then
/// user count descending, then method type. Days and methods without events
/// have no row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyUsersReport {
    #[serde(serialize_with = "serialize_display")]
    month: ReportMonth,
    rows: Vec<DailyUsers>,
}

impl DailyUsersReport {
    /// Builds the report, putting `rows` in report order.
    pub fn new(month: ReportMonth, mut rows: Vec<DailyUsers>) -> DailyUsersReport {
        rows.sort_by(|a, b| {
            a.date
                .cmp(&b.date)
                .then_with(|| b.user_count.cmp(&a.user_count))
                .then_with(|| a.auth_method_type.cmp(&b.auth_method_type))
        });
        DailyUsersReport { month, rows }
    }

    /// The month.
    pub fn month(&self) -> ReportMonth {
        self.month
    }

    /// The rows in report order.
    pub fn rows(&self) -> &[DailyUsers] {
        &self.rows
    }

    /// The body: JSON `{"month":"2021-03","rows":[{"date":"2021-03-01","authMethodType":…,"userCount":…}]}`,
    /// or CSV (CRLF) `Date,Authentication Method,User Count`.
    pub fn encode(&self, format: OutputFormat, guard: FormulaGuard) -> Bytes {
        match format {
            OutputFormat::Json => json(self),
            OutputFormat::Csv | OutputFormat::Ndjson => {
                let rows: Vec<[String; 3]> = self
                    .rows
                    .iter()
                    .map(|r| {
                        [
                            date_string(r.date),
                            r.auth_method_type.clone(),
                            r.user_count.to_string(),
                        ]
                    })
                    .collect();
                if format == OutputFormat::Csv {
                    csv(DAILY_USERS_CSV_HEADER, &rows, guard)
                } else {
                    ndjson(["date", "authMethodType", "userCount"], &rows)
                }
            }
        }
    }
}

fn serialize_display<S: serde::Serializer>(
    value: &impl fmt::Display,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn serialize_date<S: serde::Serializer>(
    date: &NaiveDate,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&date_string(*date))
}

fn json(value: &impl Serialize) -> Bytes {
    // Strings, integers and arrays of them always serialise.
    serde_json::to_vec(value)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// RFC 4180 with CRLF line ends; fields are quoted only when needed. The
/// middle column (the method type) is text from ingest: guarded against
/// spreadsheet formulas like every CSV text cell.
fn csv(header: [&str; 3], rows: &[[String; 3]], guard: FormulaGuard) -> Bytes {
    let mut buf = BytesMut::new();
    let guard = guard == FormulaGuard::Quote;
    for (i, name) in header.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        write_csv_field(&mut buf, name.as_bytes());
    }
    buf.put_slice(b"\r\n");
    for [first, text, count] in rows {
        write_csv_field(&mut buf, first.as_bytes());
        buf.put_u8(b',');
        write_csv_text(&mut buf, text.as_bytes(), guard);
        buf.put_u8(b',');
        write_csv_field(&mut buf, count.as_bytes());
        buf.put_slice(b"\r\n");
    }
    buf.freeze()
}

/// One JSON object per row and line; `names` are the keys, the last value
/// is a number.
fn ndjson(names: [&str; 3], rows: &[[String; 3]]) -> Bytes {
    let mut buf = BytesMut::new();
    for [first, text, count] in rows {
        buf.put_u8(b'{');
        write_json_str(&mut buf, names[0]);
        buf.put_u8(b':');
        write_json_str(&mut buf, first);
        buf.put_u8(b',');
        write_json_str(&mut buf, names[1]);
        buf.put_u8(b':');
        write_json_str(&mut buf, text);
        buf.put_u8(b',');
        write_json_str(&mut buf, names[2]);
        buf.put_u8(b':');
        buf.put_slice(count.as_bytes());
        buf.put_slice(b"}\n");
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn month(s: &str) -> ReportMonth {
        ReportMonth::parse(s).unwrap()
    }

    fn users(t: &str, n: i64) -> MethodUsers {
        MethodUsers {
            auth_method_type: t.into(),
            user_count: n,
        }
    }

    fn daily(d: &str, t: &str, n: i64) -> DailyUsers {
        DailyUsers {
            date: ReportDay::parse(d).unwrap().date(),
            auth_method_type: t.into(),
            user_count: n,
        }
    }

    #[test]
    fn months_parse_strictly() {
        assert_eq!(month("2021-03").to_string(), "2021-03");
        assert_eq!(
            month("2021-03").first_day(),
            NaiveDate::from_ymd_opt(2021, 3, 1).unwrap()
        );
        assert_eq!(
            month("2021-12").end_day(),
            NaiveDate::from_ymd_opt(2022, 1, 1).unwrap()
        );
        assert_eq!(month("0001-01").to_string(), "0001-01");
        assert_eq!(
            month("9999-12").end_day(),
            NaiveDate::from_ymd_opt(10000, 1, 1).unwrap()
        );
        for bad in [
            "2021-13",
            "2021-00",
            "2021-3",
            "21-03",
            "2021-03-01",
            "2021/03",
            "0000-01",
            "2021-03 ",
            " 2021-03",
            "+021-03",
            "2021-+3",
            "２０２１-03",
            "",
            "2021-03Z",
            "10000-01",
        ] {
            assert_eq!(
                ReportMonth::parse(bad),
                Err(ReportDateError::InvalidMonth),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn days_parse_strictly() {
        let day = ReportDay::parse("2024-02-29").unwrap();
        assert_eq!(day.to_string(), "2024-02-29");
        assert_eq!(day.date(), NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
        for bad in [
            "2021-02-30",
            "2023-02-29",
            "2021-04-31",
            "2021-13-01",
            "2021-00-10",
            "2021-01-00",
            "2021-1-01",
            "2021-01-1",
            "2021-01",
            "2021-01-01T00",
            "0000-01-01",
            "2021_01_01",
            "2021-01-01 ",
            "-021-01-01",
        ] {
            assert_eq!(
                ReportDay::parse(bad),
                Err(ReportDateError::InvalidDay),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn previous_month_is_the_last_complete_calendar_month() {
        let at = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
        assert_eq!(
            ReportMonth::previous(at(2026, 11, 22, 15)),
            Some(month("2026-10"))
        );
        assert_eq!(
            ReportMonth::previous(at(2026, 1, 1, 0)),
            Some(month("2025-12"))
        );
        assert_eq!(
            ReportMonth::previous(at(2026, 3, 31, 23)),
            Some(month("2026-02"))
        );
        assert_eq!(ReportMonth::previous(at(1, 1, 15, 0)), None);
    }

    #[test]
    fn error_messages_name_the_expected_form() {
        assert!(ReportDateError::InvalidMonth
            .to_string()
            .contains("YYYY-MM (e.g. 2021-03)"));
        assert!(ReportDateError::InvalidDay
            .to_string()
            .contains("YYYY-MM-DD (e.g. 2021-03-01)"));
    }

    #[test]
    fn the_download_files_are_named_after_the_prefix() {
        let none = FilenamePrefix::default();
        assert_eq!(
            accounting_report_file(&none, month("2021-03")),
            "accounting-report-2021-03.csv"
        );
        let p = FilenamePrefix::parse("MyCompany-B2B_v1.").unwrap();
        assert_eq!(
            accounting_report_file(&p, month("2021-03")),
            "MyCompany-B2B_v1.accounting-report-2021-03.csv"
        );
        assert_eq!(
            daily_users_file(&p, month("2021-03")),
            "MyCompany-B2B_v1.daily-users-2021-03.csv"
        );
        assert_eq!(
            day_events_file(&p, ReportDay::parse("2021-03-04").unwrap()),
            "MyCompany-B2B_v1.events-day-2021-03-04.csv"
        );
    }

    #[test]
    fn accounting_report_orders_rows_and_ends_with_total() {
        let report = AccountingReport::new(
            month("2021-03"),
            vec![
                users("SAML", 5),
                users("PASSWORD", 123),
                users("OAUTH2", 5),
                users("A,B \"x\"", 1),
            ],
            130,
        );
        let order: Vec<&str> = report
            .rows()
            .iter()
            .map(|r| r.auth_method_type.as_str())
            .collect();
        assert_eq!(order, ["PASSWORD", "OAUTH2", "SAML", "A,B \"x\""]);
        assert_eq!(report.total(), 130);
        assert_eq!(report.month(), month("2021-03"));
        assert_eq!(
            report.encode(OutputFormat::Csv, FormulaGuard::Quote),
            "Month,Authentication Method,User Count\r\n\
             2021-03,PASSWORD,123\r\n\
             2021-03,OAUTH2,5\r\n\
             2021-03,SAML,5\r\n\
             2021-03,\"A,B \"\"x\"\"\",1\r\n\
             2021-03,Total,130\r\n"
        );
        assert_eq!(
            report.encode(OutputFormat::Json, FormulaGuard::Quote),
            r#"{"month":"2021-03","rows":[{"authMethodType":"PASSWORD","userCount":123},{"authMethodType":"OAUTH2","userCount":5},{"authMethodType":"SAML","userCount":5},{"authMethodType":"A,B \"x\"","userCount":1}],"total":130}"#
        );
    }

    #[test]
    fn empty_accounting_report() {
        let report = AccountingReport::new(month("2021-02"), vec![], 0);
        assert_eq!(
            report.encode(OutputFormat::Csv, FormulaGuard::Quote),
            "Month,Authentication Method,User Count\r\n2021-02,Total,0\r\n"
        );
        assert_eq!(
            report.encode(OutputFormat::Json, FormulaGuard::Quote),
            r#"{"month":"2021-02","rows":[],"total":0}"#
        );
    }

    #[test]
    fn daily_users_report_orders_by_date_then_count_then_name() {
        let report = DailyUsersReport::new(
            month("2021-03"),
            vec![
                daily("2021-03-02", "SAML", 3),
                daily("2021-03-01", "OAUTH2", 2),
                daily("2021-03-02", "PASSWORD", 9),
                daily("2021-03-01", "PASSWORD", 12),
                daily("2021-03-01", "FIDO2", 2),
            ],
        );
        assert_eq!(report.month(), month("2021-03"));
        assert_eq!(report.rows().len(), 5);
        assert_eq!(
            report.encode(OutputFormat::Csv, FormulaGuard::Quote),
            "Date,Authentication Method,User Count\r\n\
             2021-03-01,PASSWORD,12\r\n\
             2021-03-01,FIDO2,2\r\n\
             2021-03-01,OAUTH2,2\r\n\
             2021-03-02,PASSWORD,9\r\n\
             2021-03-02,SAML,3\r\n"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&report.encode(OutputFormat::Json, FormulaGuard::Quote))
                .unwrap();
        assert_eq!(json["month"], "2021-03");
        assert_eq!(
            json["rows"][0],
            serde_json::json!({"date":"2021-03-01","authMethodType":"PASSWORD","userCount":12})
        );
        assert_eq!(json["rows"].as_array().unwrap().len(), 5);
        let empty = DailyUsersReport::new(month("2021-04"), vec![]);
        assert_eq!(
            empty.encode(OutputFormat::Csv, FormulaGuard::Quote),
            "Date,Authentication Method,User Count\r\n"
        );
        assert_eq!(
            empty.encode(OutputFormat::Json, FormulaGuard::Quote),
            r#"{"month":"2021-04","rows":[]}"#
        );
    }
}

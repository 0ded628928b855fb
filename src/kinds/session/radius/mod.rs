//! RADIUS accounting requests, as FreeRADIUS's `rlm_rest` posts them or as
//! plain JSON objects keyed by attribute names, turned into what they do to
//! a session row of `radacct`. Framework-free: the HTTP layer reads the body,
//! the database layer applies the [`SessionRow`]s and NAS reboots.
//!
//! - Values are plain (`"User-Name":"bob"`) or in `rlm_rest`'s form
//!   (`{"type":"string","value":["bob"]}`); attribute names are matched
//!   without regard to case; unknown attributes are ignored (NAS vendors
//!   send many).
//! - Enumerated attributes take their dictionary names or numbers
//!   ([`enums`]); dates take epoch seconds or FreeRADIUS's date text
//!   ([`date`]).
//! - `rlm_rest` writes each byte of a non-ASCII string as its own `\u00XX`
//!   escape; such strings are read back as the UTF-8 they were.
//!
//! Error messages name the attribute and the rule, never a value.

pub mod date;
pub mod enums;
mod json;
mod merge;

use std::{borrow::Cow, fmt::Write as _, net::IpAddr};

use chrono::{DateTime, Duration, Utc};
use md5::{Digest, Md5};
use serde_json::value::RawValue;

pub use self::json::Object;
use self::json::{leaf, rest_value, Item, Leaf, Top};
pub use self::merge::{merge_requests, Step};

/// Longest accepted text value, in characters: a RADIUS attribute holds
/// at most 253 octets, and this keeps every indexed `radacct` column well
/// within PostgreSQL's index row limit.
pub const MAX_TEXT_CHARS: usize = 253;

/// What an accounting request reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusType {
    /// A session began.
    Start,
    /// A session goes on (also `Alive`).
    InterimUpdate,
    /// A session ended.
    Stop,
    /// The NAS (re)started: every session it had is over.
    AccountingOn,
    /// The NAS is shutting down: every session it had is over.
    AccountingOff,
}

/// A request that could not be used: which attribute, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("attribute `{attribute}`: {reason}")]
pub struct Rejection {
    /// The attribute at fault.
    pub attribute: &'static str,
    /// What is wrong (never the value).
    pub reason: Cow<'static, str>,
}

fn reject(attribute: &'static str, reason: impl Into<Cow<'static, str>>) -> Rejection {
    Rejection {
        attribute,
        reason: reason.into(),
    }
}

/// One Start, Interim-Update or Stop, as the columns of `radacct` it sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// `acctuniqueid`: the session key.
    pub unique_id: String,
    /// `acctsessionid`.
    pub session_id: String,
    /// `username` (the real UTF-8 string).
    pub user: Option<String>,
    /// `realm`.
    pub realm: Option<String>,
    /// `nasipaddress` (`0.0.0.0` when the request names none, as FreeRADIUS).
    pub nas: IpAddr,
    /// `nasportid`: `NAS-Port-Id`, else `NAS-Port`.
    pub nas_port_id: Option<String>,
    /// `nasporttype`.
    pub nas_port_type: Option<String>,
    /// `acctstarttime`.
    pub start: DateTime<Utc>,
    /// `acctupdatetime`: the latest event heard.
    pub update: DateTime<Utc>,
    /// `acctstoptime`.
    pub stop: Option<DateTime<Utc>>,
    /// `acctinterval`: `Acct-Interim-Interval` when sent, else the gap
    /// between consecutive interim updates (filled in by the merge).
    pub interval: Option<i64>,
    /// `acctsessiontime`.
    pub session_time: Option<i64>,
    /// `acctauthentic`.
    pub authentic: Option<String>,
    /// `connectinfo_start`.
    pub connect_info_start: Option<String>,
    /// `connectinfo_stop`.
    pub connect_info_stop: Option<String>,
    /// `acctinputoctets` (gigawords folded in).
    pub input_octets: i64,
    /// `acctoutputoctets` (gigawords folded in).
    pub output_octets: i64,
    /// `calledstationid`.
    pub called: Option<String>,
    /// `callingstationid`.
    pub calling: Option<String>,
    /// `acctterminatecause`.
    pub terminate_cause: Option<String>,
    /// `servicetype`.
    pub service_type: Option<String>,
    /// `framedprotocol`.
    pub framed_protocol: Option<String>,
    /// `framedipaddress`.
    pub framed_ip: Option<IpAddr>,
    /// `framedipv6address`.
    pub framed_ipv6: Option<IpAddr>,
    /// `framedipv6prefix` (`addr/len`).
    pub framed_ipv6_prefix: Option<String>,
    /// `framedinterfaceid`.
    pub framed_interface_id: Option<String>,
    /// `delegatedipv6prefix` (`addr/len`).
    pub delegated_ipv6_prefix: Option<String>,
    /// `class`.
    pub class: Option<String>,
    /// What the request was (an interim update may set `interval`).
    pub status: StatusType,
    /// A Stop without `Acct-Session-Time`: the session time is its length.
    pub stop_without_time: bool,
}

/// Accounting-On or Accounting-Off: close every open session of the NAS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NasReboot {
    /// The NAS.
    pub nas: IpAddr,
    /// When.
    pub at: DateTime<Utc>,
    /// `Acct-Terminate-Cause` when sent, else `NAS-Reboot`.
    pub cause: String,
}

/// One usable accounting request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Start, Interim-Update or Stop.
    Session(Box<SessionRow>),
    /// Accounting-On or -Off.
    NasReboot(NasReboot),
}

/// What parsing noticed beside the request itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// `Event-Timestamp` named a time zone that is ambiguous or unknown:
    /// the time received was used instead. Holds the NAS, for a log line.
    pub zone_fallback: Option<String>,
}

/// The attributes [`parse_request`] reads (each name as RADIUS
/// dictionaries spell it).
const KNOWN: [&str; 32] = [
    "Acct-Status-Type",
    "NAS-IPv6-Address",
    "NAS-IP-Address",
    "Acct-Delay-Time",
    "Event-Timestamp",
    "Acct-Terminate-Cause",
    "Acct-Session-Id",
    "User-Name",
    "NAS-Port",
    "NAS-Port-Id",
    "Acct-Unique-Session-Id",
    "NAS-Identifier",
    "Acct-Input-Octets",
    "Acct-Input-Gigawords",
    "Acct-Output-Octets",
    "Acct-Output-Gigawords",
    "Acct-Session-Time",
    "Connect-Info",
    "Realm",
    "NAS-Port-Type",
    "Acct-Interim-Interval",
    "Acct-Authentic",
    "Called-Station-Id",
    "Calling-Station-Id",
    "Service-Type",
    "Framed-Protocol",
    "Framed-IP-Address",
    "Framed-IPv6-Address",
    "Framed-IPv6-Prefix",
    "Framed-Interface-Id",
    "Delegated-IPv6-Prefix",
    "Class",
];

/// The attributes of one request that [`KNOWN`] names, found in one pass
/// over the request and matched without regard to case: the exact
/// spelling first (what NAS and FreeRADIUS send; a repeated name's last
/// value), else the other spelling that sorts first.
struct Attributes<'a> {
    values: [Option<&'a RawValue>; KNOWN.len()],
}

impl<'a> Attributes<'a> {
    fn new(object: &'a Object<'_>) -> Self {
        let mut values = [None; KNOWN.len()];
        let mut exact = [false; KNOWN.len()];
        let mut other_spelling: [Option<&str>; KNOWN.len()] = [None; KNOWN.len()];
        for (name, raw) in object.iter() {
            let Some(i) = KNOWN
                .iter()
                .position(|known| known.len() == name.len() && known.eq_ignore_ascii_case(name))
            else {
                continue;
            };
            if name == KNOWN[i] {
                values[i] = Some(raw);
                exact[i] = true;
            } else if !exact[i] && other_spelling[i].is_none_or(|seen| name <= seen) {
                values[i] = Some(raw);
                other_spelling[i] = Some(name);
            }
        }
        Attributes { values }
    }

    fn get(&self, name: &str) -> Option<&'a RawValue> {
        let i = KNOWN.iter().position(|known| *known == name);
        debug_assert!(i.is_some(), "{name} is read but not in KNOWN");
        self.values[i?]
    }

    /// The first value of `name`, plain or in `rlm_rest`'s form.
    fn scalar(&self, name: &'static str) -> Result<Option<Scalar<'a>>, Rejection> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let value = match leaf(raw) {
            Leaf::Object => match rest_value(raw) {
                Some(value) => match leaf(value) {
                    Leaf::Object => Leaf::Other,
                    value => value,
                },
                None => {
                    return Err(reject(
                        name,
                        "an object must be rlm_rest's {\"type\":…,\"value\":[…]}",
                    ))
                }
            },
            value => value,
        };
        match value {
            Leaf::Null => Ok(None),
            Leaf::Text(Cow::Borrowed(s)) => Ok(Some(Scalar::Text(utf8_from_byte_escapes(s)))),
            Leaf::Text(Cow::Owned(s)) => Ok(Some(Scalar::Text(Cow::Owned(
                utf8_from_byte_escapes(&s).into_owned(),
            )))),
            Leaf::Integer(n) => Ok(Some(Scalar::Integer(n))),
            Leaf::OtherNumber => Err(reject(name, "must be an integer")),
            Leaf::Other | Leaf::Object => Err(reject(name, "must be a string or a number")),
        }
    }

    fn text(&self, name: &'static str) -> Result<Option<String>, Rejection> {
        let text = match self.scalar(name)? {
            None => return Ok(None),
            Some(Scalar::Text(t)) => t.into_owned(),
            Some(Scalar::Integer(n)) => n.to_string(),
        };
        if text.contains('\0') {
            return Err(reject(name, "must not contain NUL"));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(reject(name, "longer than 253 characters"));
        }
        Ok((!text.is_empty()).then_some(text))
    }

    fn integer(&self, name: &'static str) -> Result<Option<i64>, Rejection> {
        let n = match self.scalar(name)? {
            None => return Ok(None),
            Some(Scalar::Integer(n)) => n,
            Some(Scalar::Text(t)) if t.is_empty() => return Ok(None),
            Some(Scalar::Text(t)) => t
                .trim()
                .parse::<i64>()
                .map_err(|_| reject(name, "must be an integer"))?,
        };
        if !(0..=u32::MAX as i64).contains(&n) {
            return Err(reject(name, "must be an integer from 0 to 4294967295"));
        }
        Ok(Some(n))
    }

    fn named(&self, name: &'static str, table: &enums::Table) -> Result<Option<String>, Rejection> {
        match self.scalar(name)? {
            None => Ok(None),
            Some(Scalar::Integer(n)) => Ok(Some(table.name_of(n))),
            Some(Scalar::Text(t)) if t.is_empty() => Ok(None),
            Some(Scalar::Text(t)) => match table.canonical(&t) {
                Some(name) => Ok(Some(name)),
                None if t.len() <= MAX_TEXT_CHARS && !t.contains('\0') => Ok(Some(t.into_owned())),
                None => Err(reject(name, "not a value name")),
            },
        }
    }

    fn ip(&self, name: &'static str) -> Result<Option<IpAddr>, Rejection> {
        self.text(name)?
            .map(|t| {
                t.parse::<IpAddr>()
                    .map_err(|_| reject(name, "must be an IP address"))
            })
            .transpose()
    }

    fn prefix(&self, name: &'static str) -> Result<Option<String>, Rejection> {
        self.text(name)?
            .map(|t| {
                let (addr, len) = t.split_once('/').unwrap_or((&t, "128"));
                match (addr.parse::<std::net::Ipv6Addr>(), len.parse::<u8>()) {
                    (Ok(addr), Ok(len)) if len <= 128 => Ok(format!("{addr}/{len}")),
                    _ => Err(reject(name, "must be an IPv6 prefix (address/length)")),
                }
            })
            .transpose()
    }
}

/// One attribute value.
enum Scalar<'a> {
    Text(Cow<'a, str>),
    Integer(i64),
}

/// `rlm_rest` escapes each byte of a non-ASCII string as its own `\u00XX`,
/// which a JSON parser reads as one Latin-1 character per byte: when every
/// character of `text` is below U+0100, some are not ASCII, and their bytes
/// are valid UTF-8, this returns that UTF-8 (`jos\u00C3\u00A9` → `josé`).
pub fn utf8_from_byte_escapes(text: &str) -> Cow<'_, str> {
    if text.is_ascii() || text.chars().any(|c| c as u32 > 0xFF) {
        return Cow::Borrowed(text);
    }
    let bytes: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
    match String::from_utf8(bytes) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(_) => Cow::Borrowed(text),
    }
}

/// FreeRADIUS's default `Acct-Unique-Session-Id` (policy `acct_unique`,
/// without a Class of its own): the MD5, in lowercase hex, of
/// `User-Name,Acct-Session-Id,NAS-IPv6-Address or NAS-IP-Address,NAS-Identifier,NAS-Port-Id,NAS-Port`.
pub fn default_unique_id(parts: [&str; 6]) -> String {
    let digest = Md5::digest(parts.join(",").as_bytes());
    let mut out = String::with_capacity(32);
    for byte in digest.iter() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Reads one accounting request received at `received`.
pub fn parse_request(
    object: &Object<'_>,
    received: DateTime<Utc>,
) -> Result<(Request, Notes), Rejection> {
    let attrs = Attributes::new(object);
    let status = match attrs.scalar("Acct-Status-Type")? {
        None => return Err(reject("Acct-Status-Type", "is required")),
        Some(Scalar::Integer(n)) => enums::status_type(&n.to_string()),
        Some(Scalar::Text(t)) => enums::status_type(&t),
    }
    .ok_or_else(|| {
        reject(
            "Acct-Status-Type",
            "must be Start, Interim-Update (Alive), Stop, Accounting-On or Accounting-Off",
        )
    })?;

    let nas_ipv6 = attrs.ip("NAS-IPv6-Address")?;
    let nas_ipv4 = attrs.ip("NAS-IP-Address")?;
    let nas = nas_ipv6.or(nas_ipv4);
    let mut notes = Notes::default();
    let delay = attrs.integer("Acct-Delay-Time")?.unwrap_or(0);
    let event = match attrs.scalar("Event-Timestamp")? {
        None => received - Duration::seconds(delay),
        Some(Scalar::Integer(epoch)) => epoch_time(epoch)?,
        Some(Scalar::Text(text)) => match date::parse(&text) {
            Ok(at) => at,
            Err(date::DateError::UnknownZone) => {
                notes.zone_fallback = Some(nas.map(|n| n.to_string()).unwrap_or_default());
                received - Duration::seconds(delay)
            }
            Err(date::DateError::Malformed) => {
                return Err(reject(
                    "Event-Timestamp",
                    "must be epoch seconds or a date as FreeRADIUS writes it \
                     (`Nov 26 2026 01:16:08 UTC`)",
                ))
            }
        },
    };

    // Windows serve the years 0001 to 9999 (UTC), whatever the delay said.
    if !(1..=9999).contains(&chrono::Datelike::year(&event)) {
        return Err(reject(
            "Event-Timestamp",
            "is outside the years 0001 to 9999 (UTC), which windows serve",
        ));
    }

    if matches!(status, StatusType::AccountingOn | StatusType::AccountingOff) {
        let nas =
            nas.ok_or_else(|| reject("NAS-IP-Address", "is required for Accounting-On/Off"))?;
        let cause = attrs
            .named("Acct-Terminate-Cause", &enums::TERMINATE_CAUSE)?
            .unwrap_or_else(|| "NAS-Reboot".to_owned());
        return Ok((
            Request::NasReboot(NasReboot {
                nas,
                at: event,
                cause,
            }),
            notes,
        ));
    }

    let session_id = attrs
        .text("Acct-Session-Id")?
        .ok_or_else(|| reject("Acct-Session-Id", "is required"))?;
    let user = attrs.text("User-Name")?;
    let nas_port = attrs.integer("NAS-Port")?;
    let nas_port_id = attrs.text("NAS-Port-Id")?;
    let unique_id = match attrs.text("Acct-Unique-Session-Id")? {
        Some(id) => id,
        None => {
            let nas_text = nas.map(|n| n.to_string()).unwrap_or_default();
            let port = nas_port.map(|n| n.to_string()).unwrap_or_default();
            default_unique_id([
                user.as_deref().unwrap_or(""),
                &session_id,
                &nas_text,
                attrs.text("NAS-Identifier")?.as_deref().unwrap_or(""),
                nas_port_id.as_deref().unwrap_or(""),
                &port,
            ])
        }
    };
    let octets = |low: &'static str, high: &'static str| -> Result<i64, Rejection> {
        Ok((attrs.integer(high)?.unwrap_or(0) << 32) + attrs.integer(low)?.unwrap_or(0))
    };
    let session_time = attrs.integer("Acct-Session-Time")?;
    let start = match status {
        StatusType::Start => event,
        _ => event - Duration::seconds(session_time.unwrap_or(0)),
    };
    let connect_info = attrs.text("Connect-Info")?;
    let row = SessionRow {
        unique_id,
        session_id,
        user,
        realm: attrs.text("Realm")?,
        nas: nas.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        nas_port_id: nas_port_id.or(nas_port.map(|n| n.to_string())),
        nas_port_type: attrs.named("NAS-Port-Type", &enums::NAS_PORT_TYPE)?,
        start,
        update: event,
        stop: (status == StatusType::Stop).then_some(event),
        interval: attrs.integer("Acct-Interim-Interval")?,
        session_time: match status {
            StatusType::Start => Some(session_time.unwrap_or(0)),
            _ => session_time,
        },
        authentic: attrs.named("Acct-Authentic", &enums::ACCT_AUTHENTIC)?,
        connect_info_start: if status == StatusType::Stop {
            None
        } else {
            connect_info.clone()
        },
        connect_info_stop: if status == StatusType::Stop {
            connect_info
        } else {
            None
        },
        input_octets: octets("Acct-Input-Octets", "Acct-Input-Gigawords")?,
        output_octets: octets("Acct-Output-Octets", "Acct-Output-Gigawords")?,
        called: attrs.text("Called-Station-Id")?,
        calling: attrs.text("Calling-Station-Id")?,
        terminate_cause: if status == StatusType::Stop {
            attrs.named("Acct-Terminate-Cause", &enums::TERMINATE_CAUSE)?
        } else {
            None
        },
        service_type: attrs.named("Service-Type", &enums::SERVICE_TYPE)?,
        framed_protocol: attrs.named("Framed-Protocol", &enums::FRAMED_PROTOCOL)?,
        framed_ip: attrs.ip("Framed-IP-Address")?,
        framed_ipv6: attrs.ip("Framed-IPv6-Address")?,
        framed_ipv6_prefix: attrs.prefix("Framed-IPv6-Prefix")?,
        framed_interface_id: attrs.text("Framed-Interface-Id")?,
        delegated_ipv6_prefix: attrs.prefix("Delegated-IPv6-Prefix")?,
        class: attrs.text("Class")?,
        status,
        stop_without_time: status == StatusType::Stop && session_time.is_none(),
    };
    Ok((Request::Session(Box::new(row)), notes))
}

fn epoch_time(epoch: i64) -> Result<DateTime<Utc>, Rejection> {
    DateTime::from_timestamp(epoch, 0)
        .filter(|_| (0..=253_402_300_799).contains(&epoch))
        .ok_or_else(|| reject("Event-Timestamp", "epoch seconds out of range"))
}

/// The records of a POST body, borrowed from it.
#[derive(Debug)]
pub enum Body<'a> {
    /// One bare JSON object: one request as `rlm_rest` posts it.
    Single(Object<'a>),
    /// An array, or NDJSON lines: a batch (`(position, object)`; position
    /// 1-based, the array index or the physical line).
    Batch(Vec<(usize, Object<'a>)>),
}

/// Why a body could not be read at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON.
    #[error("record {record}: not a JSON object ({detail})")]
    Syntax {
        /// The record (1-based).
        record: usize,
        /// serde_json's description (positions, never values).
        detail: String,
    },
    /// Valid JSON, but neither an object nor an array of objects.
    #[error("record {record}: must be a JSON object of RADIUS attributes")]
    NotObject {
        /// The record (1-based).
        record: usize,
    },
    /// Nothing to read.
    #[error("the body holds no accounting request")]
    Empty,
}

fn syntax(record: usize, e: &serde_json::Error) -> BodyError {
    BodyError::Syntax {
        record,
        detail: format!(
            "{:?} at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
    }
}

/// Reads a body: NDJSON when `ndjson`, else one JSON object or an array of them.
pub fn parse_body(body: &[u8], ndjson: bool) -> Result<Body<'_>, BodyError> {
    if ndjson {
        let mut out = Vec::new();
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Top<'_>>(line).map_err(|e| syntax(i + 1, &e))? {
                Top(Item::Object(object)) => out.push((i + 1, object)),
                _ => return Err(BodyError::NotObject { record: i + 1 }),
            }
        }
        if out.is_empty() {
            return Err(BodyError::Empty);
        }
        return Ok(Body::Batch(out));
    }
    match serde_json::from_slice::<Top<'_>>(body).map_err(|e| syntax(1, &e))? {
        Top(Item::Object(object)) => Ok(Body::Single(object)),
        Top(Item::Array(items)) if items.is_empty() => Err(BodyError::Empty),
        Top(Item::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Item::Object(object) => Ok((i + 1, object)),
                _ => Err(BodyError::NotObject { record: i + 1 }),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Body::Batch),
        Top(Item::Other) => Err(BodyError::NotObject { record: 1 }),
    }
}

#[cfg(test)]
mod tests;

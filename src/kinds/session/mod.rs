//! Network access sessions: RADIUS accounting, on FreeRADIUS's own `radacct`
//! table (who was on the network, from which device, through which NAS, for
//! how long, moving how much data). Fields are named in camelCase after the
//! `radacct` columns; CSV headers are the RADIUS attributes behind them.
//!
//! Rows may have been written by FreeRADIUS's `rlm_sql` directly, so every
//! text column reads an empty string as absent, and `userName` undoes
//! `rlm_sql`'s escaping ([`IdentityType::RadiusUser`]). Three fields are
//! derived at read time, never stored: `status`, `durationSeconds` and
//! `inferredStop` (see [`STATUS_SQL`]).

pub mod demo;
pub mod radius;
pub mod routes;
pub mod store;

use crate::core::{
    identity::IdentityType,
    kind::{Column, ColumnType, Filter, FilterType, Kind, TimeModel},
    retention::Rule,
};

use ColumnType::{Integer, Text, Timestamp};

/// `open`, `closed` or `stale` (open, but not heard of for longer than the
/// stale threshold: `acctstream_session_stale` in `sql/0007_radacct.sql`).
pub const STATUS_SQL: &str = "CASE WHEN acctstoptime IS NOT NULL THEN 'closed' \
     WHEN acctstream_session_stale(acctstoptime, coalesce(acctupdatetime, acctstarttime), acctinterval) \
     THEN 'stale' ELSE 'open' END";

/// The statuses.
pub const STATUSES: [&str; 3] = ["open", "closed", "stale"];

const fn text(json: &'static str, csv: &'static str, sql: &'static str) -> Column {
    Column::new(json, csv, Text, sql).nullable()
}

static COLUMNS: [Column; 32] = [
    Column::new("radAcctId", "RadAcctId", Integer, "radacctid"),
    Column::new("acctSessionId", "Acct-Session-Id", Text, "acctsessionid"),
    Column::new("acctUniqueId", "Acct-Unique-Session-Id", Text, "acctuniqueid"),
    Column::new(
        "userName",
        "Pseudonymised User-Name",
        ColumnType::Identity(IdentityType::RadiusUser),
        "nullif(username, '')",
    )
    .nullable(),
    text("realm", "Realm", "nullif(realm, '')"),
    Column::new("nasIpAddress", "NAS-IP-Address", Text, "host(nasipaddress)"),
    text("nasPortId", "NAS-Port-Id", "nullif(nasportid, '')"),
    text("nasPortType", "NAS-Port-Type", "nullif(nasporttype, '')"),
    Column::new("acctStartTime", "Acct-Start-Time", Timestamp, "acctstarttime").nullable(),
    Column::new(
        "acctUpdateTime",
        "Acct-Update-Time",
        Timestamp,
        "acctupdatetime",
    )
    .nullable(),
    Column::new("acctStopTime", "Acct-Stop-Time", Timestamp, "acctstoptime").nullable(),
    Column::new("acctInterval", "Acct-Interval", Integer, "acctinterval").nullable(),
    Column::new(
        "acctSessionTime",
        "Acct-Session-Time",
        Integer,
        "acctsessiontime",
    )
    .nullable(),
    text("acctAuthentic", "Acct-Authentic", "nullif(acctauthentic, '')"),
    text(
        "connectInfoStart",
        "Connect-Info (Start)",
        "nullif(connectinfo_start, '')",
    ),
    text(
        "connectInfoStop",
        "Connect-Info (Stop)",
        "nullif(connectinfo_stop, '')",
    ),
    Column::new(
        "acctInputOctets",
        "Acct-Input-Octets",
        Integer,
        "acctinputoctets",
    )
    .nullable(),
    Column::new(
        "acctOutputOctets",
        "Acct-Output-Octets",
        Integer,
        "acctoutputoctets",
    )
    .nullable(),
    text(
        "calledStationId",
        "Called-Station-Id",
        "nullif(calledstationid, '')",
    ),
    Column::new(
        "callingStationId",
        "Pseudonymised Calling-Station-Id",
        ColumnType::Identity(IdentityType::Mac),
        "nullif(callingstationid, '')",
    )
    .nullable(),
    text(
        "acctTerminateCause",
        "Acct-Terminate-Cause",
        "nullif(acctterminatecause, '')",
    ),
    text("serviceType", "Service-Type", "nullif(servicetype, '')"),
    text("framedProtocol", "Framed-Protocol", "nullif(framedprotocol, '')"),
    Column::new(
        "framedIpAddress",
        "Pseudonymised Framed-IP-Address",
        ColumnType::Identity(IdentityType::Ip),
        "host(framedipaddress)",
    )
    .nullable(),
    Column::new(
        "framedIpv6Address",
        "Pseudonymised Framed-IPv6-Address",
        ColumnType::Identity(IdentityType::Ip),
        "host(framedipv6address)",
    )
    .nullable(),
    Column::new(
        "framedIpv6Prefix",
        "Pseudonymised Framed-IPv6-Prefix",
        ColumnType::Identity(IdentityType::Ip),
        "framedipv6prefix::text",
    )
    .nullable(),
    text(
        "framedInterfaceId",
        "Framed-Interface-Id",
        "nullif(framedinterfaceid, '')",
    ),
    Column::new(
        "delegatedIpv6Prefix",
        "Pseudonymised Delegated-IPv6-Prefix",
        ColumnType::Identity(IdentityType::Ip),
        "delegatedipv6prefix::text",
    )
    .nullable(),
    text("class", "Class", "nullif(class, '')"),
    Column::new("status", "Status", Text, STATUS_SQL),
    Column::new(
        "durationSeconds",
        "Duration (s)",
        Integer,
        "CASE WHEN acctstoptime IS NOT NULL \
             THEN coalesce(acctsessiontime, \
                 greatest(0, extract(epoch FROM acctstoptime - acctstarttime))::int8) \
         ELSE greatest(coalesce(acctsessiontime, 0), extract(epoch FROM \
             CASE WHEN acctstream_session_stale(acctstoptime, coalesce(acctupdatetime, acctstarttime), acctinterval) \
             THEN coalesce(acctupdatetime, acctstarttime) ELSE now() END - acctstarttime)::int8) END",
    )
    .nullable(),
    Column::new(
        "inferredStop",
        "Inferred Stop",
        Timestamp,
        "CASE WHEN acctstream_session_stale(acctstoptime, coalesce(acctupdatetime, acctstarttime), acctinterval) \
         THEN coalesce(acctupdatetime, acctstarttime) END",
    )
    .nullable(),
];

/// The filters of every session listing.
static FILTERS: [Filter; 9] = [
    Filter {
        param: "radAcctId",
        column: "radacctid",
        ty: FilterType::Integer,
    },
    Filter {
        param: "status",
        column: STATUS_SQL,
        ty: FilterType::OneOf(&STATUSES),
    },
    Filter {
        param: "user",
        column: "username",
        ty: FilterType::Identity(IdentityType::RadiusUser),
    },
    Filter {
        param: "device",
        column: "acctstream_mac(callingstationid)",
        ty: FilterType::Identity(IdentityType::Mac),
    },
    Filter {
        param: "nas",
        column: "host(nasipaddress)",
        ty: FilterType::Text,
    },
    Filter {
        param: "calledStationId",
        column: "calledstationid",
        ty: FilterType::Text,
    },
    Filter {
        param: "realm",
        column: "realm",
        ty: FilterType::Text,
    },
    Filter {
        param: "terminateCause",
        column: "acctterminatecause",
        ty: FilterType::Text,
    },
    Filter {
        param: "nasPortType",
        column: "nasporttype",
        ty: FilterType::Text,
    },
];

/// Network access sessions (`radacct`).
pub static KIND: Kind = Kind {
    name: "sessions",
    path: "/api/v1/statistics/sessions",
    envelope: "sessions",
    file_name: "sessions",
    schema: "Session",
    table: "radacct",
    id_column: "radacctid",
    time: TimeModel::Interval {
        start: "acctstarttime",
        stop: "acctstoptime",
    },
    columns: &COLUMNS,
    filters: &FILTERS,
    foreign_writes: true,
    indexes: &INDEXES,
    retention: &RETENTION,
    audit_routes: &["/api/v1/sessions", "/api/v1/users/", "/api/v1/devices/"],
    // radacct is never altered: the organization is derived from the row by
    // the rules of acctstream_session_tenant (sql/0014), inlined.
    tenant: Some("acctstream_session_tenant(nasipaddress, realm)"),
    // Edits of the rules move sessions: windows' tags include their version.
    tenant_version: Some("(SELECT version FROM acctstream_session_tenant_version)"),
    ..Kind::BASE
};

/// The indexes acctstream needs beyond FreeRADIUS's, created
/// `CONCURRENTLY IF NOT EXISTS` at start-up (never altering the table):
/// `(name, definition)`.
static INDEXES: [(&str, &str); 6] = [
    (
        "radacct_acctstream_user_idx",
        "radacct (username, acctstarttime)",
    ),
    (
        "radacct_acctstream_device_idx",
        "radacct (acctstream_mac(callingstationid), acctstarttime)",
    ),
    (
        "radacct_acctstream_stop_idx",
        "radacct (acctstoptime, acctstarttime)",
    ),
    (
        "radacct_acctstream_online_idx",
        "radacct (acctstarttime, radacctid) WHERE acctstoptime IS NULL",
    ),
    (
        "radacct_acctstream_start_idx",
        "radacct (acctstarttime, radacctid)",
    ),
    (
        "radacct_acctstream_length_idx",
        "radacct ((acctstoptime - acctstarttime))",
    ),
];

/// The registry entry: RADIUS ingest, the quarantine, one session, online,
/// histories and the calendar are this kind's own routes.
pub static ENTRY: crate::registry::Entry = crate::registry::Entry {
    routes: Some(routes::configure),
    demo: Some(&demo::SessionDemo),
    ..crate::registry::Entry::of(&KIND)
};

/// Closed sessions whose stop is before the cutoff go (an open session's
/// stop is NULL: never deleted), and so do quarantined RADIUS requests
/// received before it (they hold the raw attributes).
static RETENTION: [Rule; 2] = [
    Rule::new("sessions", "radacct", "acctstoptime", "radacctid"),
    Rule::new("radius_quarantine", "radius_rejected", "received_at", "id"),
];

/// Open sessions not stale, in a form the partial index
/// `radacct_acctstream_online_idx` serves.
pub const ONLINE_SQL: &str = "acctstoptime IS NULL AND NOT \
     acctstream_session_stale(acctstoptime, coalesce(acctupdatetime, acctstarttime), acctinterval)";

/// Where RADIUS accounting requests are posted.
pub const INGEST_PATH: &str = "/api/v1/accounting/radius";
/// Where records that could not be used are read back.
pub const REJECTED_PATH: &str = "/api/v1/accounting/radius/rejected";

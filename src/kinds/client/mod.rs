//! Wi-Fi client connectivity events: which clients connected to which AP and
//! SSID, or failed to, and why (`Success`, `Failure` and `Intermediate`
//! events, with the field names of the Wi-Fi controller API they come from).

pub mod demo;
pub mod routes;
pub mod store;
pub mod summary;

use crate::core::{
    identity::IdentityType,
    ingest::{FieldType, IngestField, IngestSchema, SqlType},
    kind::{ingest_fields, Column, ColumnType, Filter, FilterType, IngestRoute, Kind, TimeModel},
    retention::Rule,
};

use ColumnType::{Integer, Text};

/// The table: this kind's migration creates it.
const TABLE: &str = "client_event";

static COLUMNS: [Column; 28] = [
    Column::timestamp("occurred_at").ingest(SqlType::Timestamptz, FieldType::TimestampOrMicros),
    Column::new(
        "macAddress",
        "Pseudonymised Client MAC",
        ColumnType::Identity(IdentityType::Mac),
        "client_mac",
    )
    .ingested(),
    Column::new("eventType", "Event Type", Text, "event_type")
        .ingest(SqlType::Text, FieldType::OneOf(&EVENT_TYPES)),
    Column::new("protocol", "Protocol", Text, "protocol")
        .nullable()
        .ingested(),
    Column::new("ssid", "SSID", Text, "ssid")
        .nullable()
        .ingested(),
    Column::new("bssid", "BSSID", Text, "bssid")
        .nullable()
        .ingested(),
    Column::new("channel", "Channel", Integer, "channel::int8")
        .nullable()
        .ingest(SqlType::Int4, INT4),
    Column::new("associatedAPName", "AP Name", Text, "ap_name")
        .nullable()
        .ingested(),
    Column::new(
        "categoryCode",
        "Category Code",
        Integer,
        "category_code::int8",
    )
    .nullable()
    .ingest(SqlType::Int4, INT4),
    Column::new("typeCode", "Type Code", Integer, "type_code::int8")
        .nullable()
        .ingest(SqlType::Int4, INT4),
    Column::new(
        "subTypeCode",
        "Sub-Type Code",
        Integer,
        "sub_type_code::int8",
    )
    .nullable()
    .ingest(SqlType::Int4, INT4),
    Column::new("category", "Category", Text, "category")
        .nullable()
        .ingested(),
    Column::new(
        "eventDescription",
        "Event Description",
        Text,
        "event_description",
    )
    .nullable()
    .ingested(),
    Column::new(
        "subEventDescription",
        "Sub-Event Description",
        Text,
        "sub_event_description",
    )
    .nullable()
    .ingested(),
    Column::new("vlan", "VLAN", Integer, "vlan::int8")
        .nullable()
        .ingest(SqlType::Int4, INT4),
    Column::new(
        "ip",
        "Pseudonymised Client IP",
        ColumnType::Identity(IdentityType::Ip),
        "client_ip",
    )
    .nullable()
    .ingested(),
    Column::new("rssi", "RSSI", Integer, "rssi::int8")
        .nullable()
        .ingest(SqlType::Int4, INT4),
    Column::new(
        "associationTimestamp",
        "Association Timestamp",
        Integer,
        "association_ts",
    )
    .nullable()
    .ingest(SqlType::Int8, INT8),
    Column::new(
        "authenticationTimestamp",
        "Authentication Timestamp",
        Integer,
        "authentication_ts",
    )
    .nullable()
    .ingest(SqlType::Int8, INT8),
    Column::new(
        "networkTimestamp",
        "Network Timestamp",
        Integer,
        "network_ts",
    )
    .nullable()
    .ingest(SqlType::Int8, INT8),
    Column::new("failureCode", "Failure Code", Integer, "failure_code::int8")
        .nullable()
        .ingest(SqlType::Int4, INT4),
    Column::new("failure", "Failure", Text, "failure")
        .nullable()
        .ingested(),
    Column::new(
        "subFailureCode",
        "Sub-Failure Code",
        Integer,
        "sub_failure_code::int8",
    )
    .nullable()
    .ingest(SqlType::Int4, INT4),
    Column::new("subFailure", "Sub-Failure", Text, "sub_failure")
        .nullable()
        .ingested(),
    Column::new("dhcpLatency", "DHCP Latency", Integer, "dhcp_latency::int8")
        .nullable()
        .ingest(SqlType::Int4, INT4),
    Column::new("aaaLatency", "AAA Latency", Integer, "aaa_latency::int8")
        .nullable()
        .ingest(SqlType::Int4, INT4),
    Column::new("dnsLatency", "DNS Latency", Integer, "dns_latency::int8")
        .nullable()
        .ingest(SqlType::Int4, INT4),
    // Shown, and ingested as the producer's `eventId` (below).
    Column::new("eventId", "Event ID", Text, "event_id").nullable(),
];

static FILTERS: [Filter; 9] = [
    Filter {
        param: "eventType",
        column: "event_type",
        ty: FilterType::OneOf(&EVENT_TYPES),
    },
    Filter {
        param: "ssid",
        column: "ssid",
        ty: FilterType::Text,
    },
    Filter {
        param: "bssid",
        column: "bssid",
        ty: FilterType::Text,
    },
    Filter {
        param: "apName",
        column: "ap_name",
        ty: FilterType::Text,
    },
    Filter {
        param: "protocol",
        column: "protocol",
        ty: FilterType::Text,
    },
    Filter {
        param: "failureCode",
        column: "failure_code",
        ty: FilterType::Integer,
    },
    Filter {
        param: "category",
        column: "category_code",
        ty: FilterType::Integer,
    },
    Filter {
        param: "code",
        column: "coalesce(failure_code, type_code)",
        ty: FilterType::Integer,
    },
    Filter {
        param: "client",
        column: "client_mac",
        ty: FilterType::Identity(IdentityType::Mac),
    },
];

const INT4: FieldType = FieldType::Integer {
    min: i32::MIN as i64,
    max: i32::MAX as i64,
};
const INT8: FieldType = FieldType::Integer {
    min: i64::MIN,
    max: i64::MAX,
};

/// Every column in order (their ingest rules are on them), then the
/// producer's `eventId`.
static INGEST_FIELDS: [IngestField; 28] =
    ingest_fields(&COLUMNS, &[IngestField::event_id("event_id")]);

/// How client events are ingested (`POST /api/v1/client-events`), in the
/// field names of the controller API (`timestamp` RFC 3339 or epoch
/// microseconds). Client MAC and IP pseudonyms go into the identity
/// directory, so listings can be narrowed by them.
pub static INGEST: IngestSchema = IngestSchema::new(TABLE, &INGEST_FIELDS)
    .with_tenant("tenant")
    .recording_identities();

/// Wi-Fi client connectivity events (`client_event`).
pub static KIND: Kind = Kind {
    name: "client_events",
    path: "/api/v1/statistics/client-events",
    envelope: "clientEvents",
    file_name: "client-events",
    schema: "ClientEvent",
    table: TABLE,
    time: TimeModel::Instant {
        column: "occurred_at",
    },
    columns: &COLUMNS,
    filters: &FILTERS,
    ingest: Some(IngestRoute {
        path: "/api/v1/client-events",
        schema: &INGEST,
        openapi: "IngestClientEvent",
    }),
    retention: &RETENTION,
    audit_routes: &[HISTORY_PREFIX],
    tenant: Some("tenant"),
    partitioned: true,
    ..Kind::BASE
};

/// The registry entry: a client's history and the Wi-Fi summary are this
/// kind's own routes.
pub static ENTRY: crate::registry::Entry = crate::registry::Entry {
    routes: Some(routes::configure),
    demo: Some(&demo::ClientDemo),
    ..crate::registry::Entry::of(&KIND)
};

/// Client events older than the cutoff go (they hold raw MAC and IP
/// addresses).
static RETENTION: [Rule; 1] = [Rule::new(
    "client_events",
    "client_event",
    "occurred_at",
    "id",
)];

/// Where a client's history lives (`HISTORY_PATH` below it).
const HISTORY_PREFIX: &str = "/api/v1/clients/";

/// The path of one client's history (`{client}`: pseudonym, or MAC for the
/// `identities` scope).
pub const HISTORY_PATH: &str = "/api/v1/clients/{client}/events";

/// The event types.
pub const EVENT_TYPES: [&str; 3] = ["Success", "Failure", "Intermediate"];

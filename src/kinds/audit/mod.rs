//! The access audit trail: who read or stored what, when, how, and whether
//! the stream completed (`sql/0008_access_audit.sql`). Its windows are for
//! tokens with the `audit` scope only; rows are written by `db::audit`.

use crate::core::{
    kind::{Column, ColumnType, Filter, FilterType, Kind, TimeModel},
    retention::{Days, Rule},
    scope::Grant,
};

static COLUMNS: [Column; 14] = [
    Column::new("id", "Id", ColumnType::Integer, "id"),
    Column::timestamp("at"),
    Column::new("client", "Client", ColumnType::Text, "client"),
    Column::new("scopes", "Scopes", ColumnType::Text, "scopes"),
    Column::new("method", "Method", ColumnType::Text, "method"),
    Column::new("route", "Route", ColumnType::Text, "route"),
    Column::new("parameters", "Parameters", ColumnType::Text, "parameters"),
    Column::new(
        "representation",
        "Representation",
        ColumnType::Text,
        "representation",
    )
    .nullable(),
    Column::new("status", "Status", ColumnType::Integer, "status::int8"),
    Column::new("rows", "Rows", ColumnType::Integer, "rows_sent").nullable(),
    Column::new("bytes", "Bytes", ColumnType::Integer, "bytes_sent"),
    Column::new("completed", "Completed", ColumnType::Boolean, "completed"),
    Column::new(
        "durationMs",
        "Duration (ms)",
        ColumnType::Float,
        "duration_ms",
    ),
    Column::new("requestId", "Request Id", ColumnType::Text, "request_id"),
];

static FILTERS: [Filter; 3] = [
    Filter {
        param: "client",
        column: "client",
        ty: FilterType::Text,
    },
    Filter {
        param: "route",
        column: "route",
        ty: FilterType::Text,
    },
    Filter {
        param: "status",
        column: "status",
        ty: FilterType::Integer,
    },
];

/// Access audit entries (`access_audit`).
pub static KIND: Kind = Kind {
    name: "audit",
    path: "/api/v1/audit",
    envelope: "entries",
    file_name: "audit",
    schema: "AuditEntry",
    table: "access_audit",
    time: TimeModel::Instant { column: "at" },
    columns: &COLUMNS,
    filters: &FILTERS,
    grant: Grant::Audit,
    retention: &RETENTION,
    tenant: Some("tenant"),
    partitioned: true,
    ..Kind::BASE
};

/// The registry entry: windows only (rows are written by `db::audit`).
pub static ENTRY: crate::registry::Entry = crate::registry::Entry::of(&KIND);

/// Entries older than `ACCTSTREAM_AUDIT_RETENTION_DAYS` go.
static RETENTION: [Rule; 1] = [Rule::new("audit", "access_audit", "at", "id").by(Days::Audit)];

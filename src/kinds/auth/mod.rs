//! Authentication events: who authenticated how, when, to which application.

pub mod demo;
pub mod report;
pub mod rollup;
pub mod routes;
pub mod store;

use crate::core::{
    identity::IdentityType,
    ingest::{IngestField, IngestSchema},
    kind::{ingest_fields, Column, ColumnType, Filter, FilterType, IngestRoute, Kind, TimeModel},
    retention::Rule,
};

/// The table: this kind's migration creates it.
const TABLE: &str = "auth_event";

static COLUMNS: [Column; 5] = [
    Column::timestamp("occurred_at").ingested(),
    Column::new(
        "authMethodType",
        "Authentication Method Type",
        ColumnType::Text,
        "auth_method_type",
    )
    .ingested(),
    Column::new(
        "authMethodName",
        "Authentication Method Name",
        ColumnType::Text,
        "auth_method_name",
    )
    .ingested(),
    Column::new(
        "authRequestOrigin",
        "Authentication Request Origin",
        ColumnType::Text,
        "auth_request_origin",
    )
    .ingested(),
    Column::new(
        "userId",
        "Pseudonymised User ID",
        ColumnType::Identity(IdentityType::User),
        "user_id",
    )
    .ingested(),
];

static FILTERS: [Filter; 3] = [
    Filter {
        param: "authMethodType",
        column: "auth_method_type",
        ty: FilterType::Text,
    },
    Filter {
        param: "authMethodName",
        column: "auth_method_name",
        ty: FilterType::Text,
    },
    Filter {
        param: "authRequestOrigin",
        column: "auth_request_origin",
        ty: FilterType::Text,
    },
];

/// Every column, then the producer's `eventId`.
static INGEST_FIELDS: [IngestField; 6] =
    ingest_fields(&COLUMNS, &[IngestField::event_id("event_id")]);

/// How authentication events are ingested (`POST /api/v1/events`). User ids
/// are not recorded in the identity directory: no listing filters by user,
/// and a large import would hold every distinct one in memory.
pub static INGEST: IngestSchema = IngestSchema::new(TABLE, &INGEST_FIELDS).with_tenant("tenant");

/// Authentication events (`auth_event`).
pub static KIND: Kind = Kind {
    name: "events",
    path: "/api/v1/statistics/events",
    envelope: "events",
    file_name: "events",
    schema: "EventDetails",
    table: TABLE,
    time: TimeModel::Instant {
        column: "occurred_at",
    },
    columns: &COLUMNS,
    filters: &FILTERS,
    ingest: Some(IngestRoute {
        path: "/api/v1/events",
        schema: &INGEST,
        openapi: "IngestEvent",
    }),
    retention: &RETENTION,
    tenant: Some("tenant"),
    partitioned: true,
    ..Kind::BASE
};

/// The registry entry: the accounting reports are this kind's own routes,
/// and the usage rollups they read its upkeep.
pub static ENTRY: crate::registry::Entry = crate::registry::Entry {
    kind: &KIND,
    routes: Some(routes::configure),
    demo: Some(&demo::AuthDemo),
    upkeep: Some(&rollup::ROLLUPS),
};

/// Events older than the cutoff go, except those not yet rolled up into
/// the usage reports (covered by a queued range): a later pass takes them.
/// A whole partition is kept when a queued range meets the span of its
/// ids (two lookups in its key, instead of reading every row).
static RETENTION: [Rule; 1] = [Rule::new("events", "auth_event", "occurred_at", "id")
    .keeping("EXISTS (SELECT 1 FROM usage_rollup_queue q WHERE auth_event.id BETWEEN q.lo AND q.hi)")
    .keeping_partition(
        "EXISTS (SELECT 1 FROM usage_rollup_queue q \
         WHERE q.lo <= (SELECT max(id) FROM {partition}) AND q.hi >= (SELECT min(id) FROM {partition}))",
    )];

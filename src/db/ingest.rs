//! Writing an ingest body into `auth_event`: parse while streaming, in one
//! transaction, so a request is stored whole or not at all.
//!
//! Two paths, the first of which is tried for every request:
//!
//! **`copy`, the fast path** (one transaction). The body is parsed as it
//! arrives and its events are encoded as binary COPY tuples straight into
//! `COPY auth_event … FROM STDIN (FORMAT binary)`, in pieces of about
//! [`SEND_AT`] bytes, so parsing overlaps PostgreSQL's work and memory stays
//! bounded. Events go in body order (the events API orders by
//! `(occurred_at, id)` anyway). At the same time the (decoded) body bytes are
//! spooled to an anonymous temporary file ([`tempfile::tempfile`]: unlinked at
//! creation, visible to no other process, removed by the OS when closed), and
//! every `eventId` is remembered as a 64-bit keyed hash ([`SeenIds`]). The fast
//! path is abandoned, and its transaction rolled back, when
//! - an `eventId` repeats within the request (the first occurrence must win,
//!   which a plain COPY cannot do), or
//! - the COPY hits the unique constraint on `event_id` (SQLSTATE 23505): the
//!   ID is stored already, or a concurrent request stored it first (COPY
//!   waits for that request's transaction, then fails).
//!
//! **`merge`, the exact path** (a second transaction on the same connection),
//! fed the spooled body:
//! 1. `COPY pg_temp.acctstream_ingest FROM STDIN (FORMAT binary)` into this
//!    session's staging table (created once per connection,
//!    `ON COMMIT DELETE ROWS`).
//! 2. One `INSERT INTO auth_event … SELECT … ORDER BY occurred_at, seq
//!    ON CONFLICT DO NOTHING`: events whose `event_id` is already
//!    stored are skipped; when the body repeats an `event_id`, only its first
//!    occurrence is inserted. (Rows are inserted in time order, so the first
//!    occurrence wins by itself when the body is in time order, the usual
//!    case; otherwise a window function picks it, at the cost of one more
//!    sort. Without any `event_id` nothing can conflict.)
//! 3. Commit; the answer gives the exact `inserted` and `duplicates`.
//!
//! A retry of a stored batch thus costs one failed fast attempt plus the
//! merge. Validation is the same parser on both paths, so an invalid record
//! gets the same 400 whichever path finds it.
//!
//! Any error before a commit (an invalid record, a body that is too large or
//! broken off, a database failure) drops the transaction, which rolls it
//! back: nothing of the request is stored.

use std::{io, time::Instant};

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use deadpool_postgres::{Object as Client, Pool, PoolError};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_postgres::error::SqlState;
use tokio_util::io::ReaderStream;

use crate::core::{
    ingest::{
        FieldType, IngestFormat, IngestParser, IngestSchema, Record, RecordError, SeenIds, SqlType,
        Value,
    },
    pseudonym::Pseudonymiser,
    tenant::{is_tenant_name, DEFAULT_TENANT},
};
use crate::db::directory::Entries;

/// The COPY buffer is sent to PostgreSQL whenever it holds this much.
pub const SEND_AT: usize = 256 * 1024;

/// The statements of one kind's ingest, built once from its schema.
#[derive(Debug)]
struct Statements {
    /// Prepares the merge transaction: `work_mem` is the memory PostgreSQL
    /// may use to sort one request's records before inserting them (the
    /// default 4 MB would spill a large request to disk), and the session's
    /// staging table (`ON COMMIT DELETE ROWS`).
    prepare: String,
    /// The fast path: records straight into the table, in body order.
    direct_copy: String,
    /// Records into the staging table (with their sequence numbers).
    staging_copy: String,
    /// The insert when the body had no event IDs: nothing can conflict.
    insert: String,
    /// Some records had IDs and the body was in time order: rows go in
    /// body order, so the first occurrence of a repeated ID is the one
    /// inserted, and IDs already stored are skipped.
    insert_in_order: String,
    /// Some records had IDs and the body was not in time order: the first
    /// occurrence of each ID in the body is picked explicitly.
    insert_dedup: String,
    /// The organization the records are written into, when it is not the
    /// default one (the column's default): a last column of the direct
    /// COPY, a constant of the inserts from the staging table.
    tenant: Option<String>,
}

impl Statements {
    fn new(schema: &IngestSchema, tenant: &str) -> Statements {
        let table = schema.table;
        let staging = format!("acctstream_ingest_{table}");
        let columns = copy_columns(schema, false);
        let definitions: Vec<String> = schema
            .fields
            .iter()
            .map(|f| format!("{} {}", f.column, f.sql.name()))
            .collect();
        let time = schema.fields[schema.time()].column;
        let id = schema.fields[schema.event_id()].column;
        // The records' organization: a checked name (letters, digits, `.`,
        // `_`, `-`), so it may be written into the inserts as a literal.
        let tenant = (tenant != DEFAULT_TENANT && is_tenant_name(tenant))
            .then_some(tenant)
            .filter(|_| schema.tenant.is_some());
        let into = copy_columns(schema, tenant.is_some());
        let from = match tenant {
            Some(tenant) => format!("{columns}, '{tenant}'"),
            None => columns.clone(),
        };
        Statements {
            tenant: tenant.map(str::to_owned),
            prepare: format!(
                "SET LOCAL client_min_messages = warning; \
                 SET LOCAL work_mem = '64MB'; \
                 CREATE TEMP TABLE IF NOT EXISTS {staging} (seq bigint NOT NULL, {}) \
                 ON COMMIT DELETE ROWS",
                definitions.join(", ")
            ),
            direct_copy: direct_copy(schema, tenant.is_some()),
            staging_copy: format!("COPY {staging} (seq, {columns}) FROM STDIN (FORMAT binary)"),
            insert: format!(
                "INSERT INTO {table} ({into}) SELECT {from} FROM {staging} ORDER BY {time}, seq"
            ),
            insert_in_order: format!(
                "INSERT INTO {table} ({into}) SELECT {from} FROM {staging} \
                 ORDER BY {time}, seq ON CONFLICT DO NOTHING"
            ),
            insert_dedup: format!(
                "INSERT INTO {table} ({into}) SELECT {from} FROM ( \
                     SELECT *, row_number() OVER (PARTITION BY {id} ORDER BY seq) AS nth \
                     FROM {staging} \
                 ) AS staged \
                 WHERE {id} IS NULL OR nth = 1 \
                 ORDER BY {time}, seq \
                 ON CONFLICT DO NOTHING"
            ),
        }
    }
}

/// The columns a direct COPY of `schema` writes: its fields', then, with
/// `tenant`, the organization's column.
fn copy_columns(schema: &IngestSchema, tenant: bool) -> String {
    let mut columns: Vec<&str> = schema.fields.iter().map(|f| f.column).collect();
    columns.extend(schema.tenant.filter(|_| tenant));
    columns.join(", ")
}

/// The direct COPY of `schema` into its table ([`copy_columns`]).
fn direct_copy(schema: &IngestSchema, tenant: bool) -> String {
    format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        schema.table,
        copy_columns(schema, tenant)
    )
}

/// The spool file is written through a buffer of this size (the body
/// arrives in much smaller pieces).
const SPOOL_BUFFER: usize = 1024 * 1024;
/// The spool file is read back in pieces of this size.
const SPOOL_READ: usize = 256 * 1024;

/// The binary COPY signature, flags and header extension length.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// PostgreSQL's epoch (2000-01-01T00:00:00Z) in Unix microseconds.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Which way a request's events were written (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestPath {
    /// Binary COPY straight into `auth_event`: no `eventId` was stored
    /// already or repeated in the request.
    Copy,
    /// The spooled body replayed through the staging table and
    /// `INSERT … ON CONFLICT DO NOTHING`.
    Merge,
}

impl IngestPath {
    /// The name used in metrics and logs: `copy` or `merge`.
    pub fn label(self) -> &'static str {
        match self {
            IngestPath::Copy => "copy",
            IngestPath::Merge => "merge",
        }
    }
}

/// What a successful ingest did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestSummary {
    /// Valid events in the body.
    pub received: u64,
    /// Events inserted; the rest had an `eventId` already stored (or repeated
    /// earlier in the body).
    pub inserted: u64,
    /// The path that wrote them.
    pub path: IngestPath,
}

impl IngestSummary {
    /// Events skipped as duplicates.
    pub fn duplicates(&self) -> u64 {
        self.received - self.inserted
    }
}

/// Why nothing was stored. `E` is the error of the body stream.
#[derive(Debug, thiserror::Error)]
pub enum IngestError<E> {
    /// A record is invalid (the client's fault: 400).
    #[error("invalid record: {0}")]
    Invalid(#[source] RecordError),
    /// The body stream failed (too large, or broken off).
    #[error("cannot read the request body: {0}")]
    Body(#[source] E),
    /// No connection could be had.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] PoolError),
    /// The transaction lost a race with a concurrent one (deadlock or
    /// serialization failure); retrying the request is safe.
    #[error("concurrent ingest conflict: {0}")]
    Conflict(#[source] tokio_postgres::Error),
    /// The connection to the database broke.
    #[error("database connection lost: {0}")]
    Disconnected(#[source] tokio_postgres::Error),
    /// Any other database failure.
    #[error("database error while ingesting: {0}")]
    Database(#[source] tokio_postgres::Error),
    /// The body could not be spooled to, or read back from, its temporary
    /// file.
    #[error("cannot spool the request body to a temporary file: {0}")]
    Spool(#[source] io::Error),
}

impl<E> From<tokio_postgres::Error> for IngestError<E> {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.code() {
            Some(code)
                if *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE =>
            {
                IngestError::Conflict(error)
            }
            // The one rule for "the database is not there right now" (a
            // restart's 57P01 included): 503, retry.
            _ if super::is_unavailable(&error) => IngestError::Disconnected(error),
            _ => IngestError::Database(error),
        }
    }
}

/// Encodes records as binary COPY tuples: of the staging table (with a
/// sequence number first) or of the kind's table (without).
struct CopyEncoder {
    schema: &'static IngestSchema,
    buffer: BytesMut,
    /// Tuples start with the record's sequence number (the staging table).
    with_seq: bool,
    /// Some record had an `eventId`.
    with_ids: bool,
    /// The times so far never decreased.
    in_time_order: bool,
    last: Option<DateTime<Utc>>,
    /// The `eventId`s so far (staging only): an `eventId` that repeats
    /// must keep its first occurrence whatever the times, which on a
    /// partitioned table (whose key includes the time) only the
    /// deduplicating insert does.
    seen: Option<SeenIds>,
    /// Some `eventId` repeated.
    repeated: bool,
    /// The organization written after the fields of every tuple (a direct
    /// COPY of a token's records that are not the default organization's).
    tenant: Option<String>,
}

impl CopyEncoder {
    /// An encoder for the staging table.
    fn staging(schema: &'static IngestSchema) -> CopyEncoder {
        CopyEncoder::new(schema, true)
    }

    /// An encoder for the kind's table.
    fn direct(schema: &'static IngestSchema) -> CopyEncoder {
        CopyEncoder::new(schema, false)
    }

    fn new(schema: &'static IngestSchema, with_seq: bool) -> CopyEncoder {
        let mut buffer = BytesMut::with_capacity(SEND_AT + 16 * 1024);
        buffer.put_slice(COPY_HEADER);
        CopyEncoder {
            schema,
            buffer,
            with_seq,
            with_ids: false,
            in_time_order: true,
            last: None,
            seen: with_seq.then(SeenIds::new),
            repeated: false,
            tenant: None,
        }
    }

    /// The same encoder, writing `tenant` after the fields of every tuple.
    fn in_tenant(self, tenant: Option<&str>) -> CopyEncoder {
        CopyEncoder {
            tenant: tenant.map(str::to_owned),
            ..self
        }
    }

    fn push(&mut self, seq: u64, record: &Record<'_>) {
        let tenant = self.tenant.take();
        self.push_with(seq, record, tenant.as_deref());
        self.tenant = tenant;
    }

    /// [`CopyEncoder::push`], with one more text column after the fields
    /// (a demo record's organization).
    fn push_with(&mut self, seq: u64, record: &Record<'_>, extra: Option<&str>) {
        let time = record.time();
        if self.last.is_some_and(|last| time < last) {
            self.in_time_order = false;
        }
        self.last = Some(time);
        if let Some(id) = record.event_id() {
            self.with_ids = true;
            if let Some(seen) = &mut self.seen {
                self.repeated |= !seen.insert(id);
            }
        }
        let buffer = &mut self.buffer;
        let fields = self.schema.fields;
        // A schema has at most MAX_FIELDS (40) fields.
        let count = i16::try_from(fields.len() + usize::from(extra.is_some())).unwrap_or(i16::MAX);
        if self.with_seq {
            buffer.put_i16(count + 1);
            buffer.put_i32(8);
            // Sequence numbers count records of a body at most MAX_BODY bytes long.
            buffer.put_i64(i64::try_from(seq).unwrap_or(i64::MAX));
        } else {
            buffer.put_i16(count);
        }
        for (field, value) in fields.iter().zip(record.values.iter()) {
            match (*value, field.sql) {
                (Value::Null, _) => buffer.put_i32(-1),
                (Value::Text(text), _) => match field.ty {
                    FieldType::Identity(ty) => put_text(buffer, &ty.normalise(text)),
                    _ => put_text(buffer, text),
                },
                (Value::Time(t), _) => {
                    buffer.put_i32(8);
                    // Times are within the years 0001-9999: no overflow.
                    buffer.put_i64(t.timestamp_micros() - PG_EPOCH_UNIX_MICROS);
                }
                (Value::Integer(n), SqlType::Int4) => {
                    buffer.put_i32(4);
                    // Validation keeps Int4 fields within i32.
                    buffer.put_i32(i32::try_from(n).unwrap_or_default());
                }
                (Value::Integer(n), _) => {
                    buffer.put_i32(8);
                    buffer.put_i64(n);
                }
            }
        }
        if let Some(extra) = extra {
            put_text(buffer, extra);
        }
    }

    fn take(&mut self) -> Bytes {
        self.buffer.split().freeze()
    }

    /// Appends the end-of-data marker.
    fn end(&mut self) {
        self.buffer.put_i16(-1);
    }

    /// The insert statement for what was encoded.
    fn insert_sql<'s>(&self, statements: &'s Statements) -> &'s str {
        match (self.with_ids, self.in_time_order && !self.repeated) {
            (false, _) => &statements.insert,
            (true, true) => &statements.insert_in_order,
            (true, false) => &statements.insert_dedup,
        }
    }
}

/// Writes records of one kind straight into its table with binary COPY, in
/// pieces of about [`SEND_AT`] bytes: the encoding of ingest's fast path, for
/// bulk writers (the demo) that have no body to parse.
pub struct CopyWriter {
    sink: std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>,
    encoder: CopyEncoder,
    /// Each record's organization, when the writer gives it.
    organization: Option<fn(&Record<'_>) -> &'static str>,
}

impl CopyWriter {
    /// Starts `COPY <table> (<columns>) FROM STDIN (FORMAT binary)`.
    pub async fn start(
        client: &tokio_postgres::Client,
        schema: &'static IngestSchema,
    ) -> Result<CopyWriter, tokio_postgres::Error> {
        let sink = client
            .copy_in::<_, Bytes>(&direct_copy(schema, false))
            .await?;
        Ok(CopyWriter {
            sink: Box::pin(sink),
            encoder: CopyEncoder::direct(schema),
            organization: None,
        })
    }

    /// [`CopyWriter::start`], each record into the organization
    /// `organization` names for it, when the schema keeps organizations
    /// (else as `start`).
    pub async fn start_by_organization(
        client: &tokio_postgres::Client,
        schema: &'static IngestSchema,
        organization: fn(&Record<'_>) -> &'static str,
    ) -> Result<CopyWriter, tokio_postgres::Error> {
        if schema.tenant.is_none() {
            return CopyWriter::start(client, schema).await;
        }
        let sink = client
            .copy_in::<_, Bytes>(&direct_copy(schema, true))
            .await?;
        Ok(CopyWriter {
            sink: Box::pin(sink),
            encoder: CopyEncoder::direct(schema),
            organization: Some(organization),
        })
    }

    /// Adds one record (of the writer's schema).
    pub async fn write(&mut self, record: &Record<'_>) -> Result<(), tokio_postgres::Error> {
        let organization = self.organization.map(|of| of(record));
        self.encoder.push_with(0, record, organization);
        if self.encoder.buffer.len() >= SEND_AT {
            self.sink.send(self.encoder.take()).await?;
        }
        Ok(())
    }

    /// Ends the COPY; returns the number of rows written.
    pub async fn finish(mut self) -> Result<u64, tokio_postgres::Error> {
        self.encoder.end();
        self.sink.send(self.encoder.take()).await?;
        self.sink.as_mut().finish().await
    }
}

/// The identity values of a request, for the identity directory (only for
/// kinds that record them).
struct Identities<'p> {
    pseudonymiser: &'p Pseudonymiser,
    entries: Entries,
}

impl Identities<'_> {
    fn add(&mut self, record: &Record<'_>) {
        // The time field is required: a record always has it.
        let Value::Time(seen) = record.values[record.schema.time()] else {
            return;
        };
        for (field, value) in record.schema.fields.iter().zip(record.values.iter()) {
            if let (FieldType::Identity(ty), Value::Text(raw)) = (field.ty, value) {
                self.entries.add(self.pseudonymiser, ty, raw, seen);
            }
        }
    }
}

/// A text field: its length, then its UTF-8 bytes. Validated fields are at
/// most a few thousand bytes long.
fn put_text(buffer: &mut BytesMut, text: &str) {
    buffer.put_i32(i32::try_from(text.len()).unwrap_or(i32::MAX));
    buffer.put_slice(text.as_bytes());
}

/// Nothing was stored: why, and how many valid events had been read.
#[derive(Debug, thiserror::Error)]
#[error("{error} (after {received} valid events)")]
pub struct IngestFailure<E> {
    /// The cause.
    #[source]
    pub error: IngestError<E>,
    /// Valid events read before the failure (all of them discarded).
    pub received: u64,
}

/// Reads `body` to its end, parsing it as `format`, and stores its events in
/// one transaction (see the module documentation). The body stream is
/// borrowed so the caller can drain what is left of it after an error.
pub async fn ingest<S, E>(
    pool: &Pool,
    schema: &'static IngestSchema,
    pseudonymiser: &Pseudonymiser,
    format: IngestFormat,
    tenant: &str,
    body: &mut S,
) -> Result<IngestSummary, IngestFailure<E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let statements = Statements::new(schema, tenant);
    let identities = || {
        schema.record_identities.then(|| Identities {
            pseudonymiser,
            entries: Entries::default(),
        })
    };
    let failed = |error| IngestFailure { error, received: 0 };
    let started = Instant::now();
    let mut client = pool
        .get()
        .await
        .map_err(|e| failed(IngestError::Unavailable(e)))?;
    let mut spool = Spool::create()
        .await
        .map_err(|e| failed(IngestError::Spool(e)))?;

    let mut parser = IngestParser::new(schema, format).writing_to(tenant);
    let direct = copy_directly(
        &mut client,
        &statements,
        &mut parser,
        identities(),
        &mut spool,
        body,
    );
    let fallback = match direct.await {
        Ok(Direct::Stored(summary)) => {
            tracing::debug!(
                path = "copy",
                received = summary.received,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "ingest transaction committed"
            );
            return Ok(summary);
        }
        Ok(Direct::Fallback(reason)) => reason,
        Err(error) => {
            return Err(IngestFailure {
                error,
                received: parser.received(),
            })
        }
    };
    if fallback == Fallback::Converting {
        super::partition::wait_for_conversion(&**client, schema.table)
            .await
            .map_err(|e| IngestFailure {
                error: e.into(),
                received: parser.received(),
            })?;
    }
    tracing::debug!(
        reason = fallback.describe(),
        copy_ms = started.elapsed().as_millis() as u64,
        "ingest falls back to the merge path"
    );

    // Replay the spooled body through the exact path.
    let mut parser = IngestParser::new(schema, format).writing_to(tenant);
    let replay = match spool.replay().await {
        Ok(replay) => replay,
        Err(e) => return Err(failed(IngestError::Spool(e))),
    };
    let mut replay = replay.map(|chunk| chunk.map_err(IngestError::Spool));
    merge(
        &mut client,
        &statements,
        &mut parser,
        identities(),
        &mut replay,
    )
    .await
    .map_err(|error| IngestFailure {
        error,
        received: parser.received(),
    })
}

/// Why the fast path gave way to the merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fallback {
    /// An `eventId` occurred twice in the request.
    RepeatedInRequest,
    /// An `eventId` was stored already (or by a concurrent request).
    AlreadyStored,
    /// A record lies past the bound of a table being converted into time
    /// partitions (`migrate --partition`): replayed once it is done.
    Converting,
}

impl Fallback {
    fn describe(self) -> &'static str {
        match self {
            Fallback::RepeatedInRequest => "an eventId repeats within the request",
            Fallback::AlreadyStored => "an eventId is stored already",
            Fallback::Converting => "a record lies past the bound of the table's conversion",
        }
    }
}

/// How the fast path ended without an error.
enum Direct {
    /// Committed.
    Stored(IngestSummary),
    /// Rolled back; the body is spooled in full for the merge.
    Fallback(Fallback),
}

/// The fast path: the whole body parsed, spooled and copied straight into
/// `auth_event` in one transaction, committed unless an `eventId` repeats in
/// the request or is stored already.
async fn copy_directly<S, E>(
    client: &mut Client,
    statements: &Statements,
    parser: &mut IngestParser,
    mut identities: Option<Identities<'_>>,
    spool: &mut Spool,
    body: &mut S,
) -> Result<Direct, IngestError<E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let schema = parser.schema();
    let tx = client.transaction().await?;
    let copied = {
        let sink = tx.copy_in::<_, Bytes>(&statements.direct_copy).await?;
        let mut sink = std::pin::pin!(sink);
        let mut batch = DirectBatch::new(schema, statements.tenant.as_deref(), identities.as_mut());
        loop {
            let Some(chunk) = body.next().await else {
                parser
                    .finish(|_, event| batch.push(event))
                    .map_err(IngestError::Invalid)?;
                break;
            };
            let chunk = chunk.map_err(IngestError::Body)?;
            spool.write(&chunk).await.map_err(IngestError::Spool)?;
            parser
                .feed(&chunk, |_, event| batch.push(event))
                .map_err(IngestError::Invalid)?;
            if batch.repeated {
                break;
            }
            if batch.encoder.buffer.len() >= SEND_AT {
                sink.send(batch.encoder.take()).await?;
            }
        }
        if batch.repeated {
            // Dropping the sink aborts the COPY (CopyFail).
            None
        } else {
            batch.encoder.end();
            sink.send(batch.encoder.take()).await?;
            Some(sink.as_mut().finish().await)
        }
    };
    let fallback = match copied {
        None => Fallback::RepeatedInRequest,
        Some(Ok(copied)) => {
            debug_assert_eq!(copied, parser.received());
            if let Some(identities) = &identities {
                identities.entries.record(&*tx).await?;
            }
            return match tx.commit().await {
                Ok(()) => Ok(Direct::Stored(IngestSummary {
                    received: parser.received(),
                    inserted: parser.received(),
                    path: IngestPath::Copy,
                })),
                // Only a deferred constraint could fail here; the rollback
                // has happened, and the body is spooled in full.
                Err(e) if is_event_id_conflict(&e) => Ok(Direct::Fallback(Fallback::AlreadyStored)),
                Err(e) => Err(e.into()),
            };
        }
        Some(Err(e)) if is_event_id_conflict(&e) => Fallback::AlreadyStored,
        Some(Err(e)) if super::partition::is_conversion_bound(&e, schema.table) => {
            Fallback::Converting
        }
        Some(Err(e)) => return Err(e.into()),
    };
    // Release the rows (and their unique keys) at once, then read the rest
    // of the body into the spool for the replay.
    tx.rollback().await?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(IngestError::Body)?;
        spool.write(&chunk).await.map_err(IngestError::Spool)?;
    }
    Ok(Direct::Fallback(fallback))
}

/// The fast path's COPY buffer, and the check that no `eventId` repeats.
struct DirectBatch<'i, 'p> {
    encoder: CopyEncoder,
    seen: SeenIds,
    /// An `eventId` repeated: nothing more is encoded.
    repeated: bool,
    identities: Option<&'i mut Identities<'p>>,
}

impl<'i, 'p> DirectBatch<'i, 'p> {
    fn new(
        schema: &'static IngestSchema,
        tenant: Option<&str>,
        identities: Option<&'i mut Identities<'p>>,
    ) -> DirectBatch<'i, 'p> {
        DirectBatch {
            encoder: CopyEncoder::direct(schema).in_tenant(tenant),
            seen: SeenIds::new(),
            repeated: false,
            identities,
        }
    }

    fn push(&mut self, record: &Record<'_>) {
        if self.repeated {
            return;
        }
        if record.event_id().is_some_and(|id| !self.seen.insert(id)) {
            self.repeated = true;
            return;
        }
        if let Some(identities) = self.identities.as_deref_mut() {
            identities.add(record);
        }
        self.encoder.push(0, record);
    }
}

/// The COPY met an `eventId` that is stored already (or was stored by a
/// transaction that committed while this one waited): a unique violation,
/// since the `eventId` key is the table's only unique constraint a record
/// can break (the id is generated). On a partitioned table the violated
/// constraint is its partition's, named after the partition.
fn is_event_id_conflict(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The exact path: staging COPY, then one deduplicating insert.
async fn merge<S, E>(
    client: &mut Client,
    statements: &Statements,
    parser: &mut IngestParser,
    mut identities: Option<Identities<'_>>,
    body: &mut S,
) -> Result<IngestSummary, IngestError<E>>
where
    S: Stream<Item = Result<Bytes, IngestError<E>>> + Unpin,
{
    let started = Instant::now();
    let tx = client.transaction().await?;
    tx.batch_execute(&statements.prepare).await?;
    let sink = tx.copy_in::<_, Bytes>(&statements.staging_copy).await?;
    let mut sink = std::pin::pin!(sink);

    let mut encoder = CopyEncoder::staging(parser.schema());
    let stage = |encoder: &mut CopyEncoder,
                 identities: &mut Option<Identities<'_>>,
                 seq: u64,
                 record: &Record<'_>| {
        if let Some(identities) = identities.as_mut() {
            identities.add(record);
        }
        encoder.push(seq, record);
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        parser
            .feed(&chunk, |seq, r| {
                stage(&mut encoder, &mut identities, seq, r)
            })
            .map_err(IngestError::Invalid)?;
        if encoder.buffer.len() >= SEND_AT {
            sink.send(encoder.take()).await?;
        }
    }
    parser
        .finish(|seq, r| stage(&mut encoder, &mut identities, seq, r))
        .map_err(IngestError::Invalid)?;
    encoder.end();
    sink.send(encoder.take()).await?;
    let staged = sink.as_mut().finish().await?;
    let received = parser.received();
    debug_assert_eq!(staged, received);
    let staging = started.elapsed();

    let inserted = if received == 0 {
        0
    } else {
        tx.execute(encoder.insert_sql(statements), &[]).await?
    };
    if let Some(identities) = &identities {
        identities.entries.record(&*tx).await?;
    }
    let inserting = started.elapsed() - staging;
    tx.commit().await?;
    tracing::debug!(
        path = "merge",
        received,
        inserted,
        staging_ms = staging.as_millis() as u64,
        inserting_ms = inserting.as_millis() as u64,
        committing_ms = (started.elapsed() - staging - inserting).as_millis() as u64,
        "ingest transaction committed"
    );
    Ok(IngestSummary {
        received,
        inserted,
        path: IngestPath::Merge,
    })
}

/// The request body's bytes (after any `Content-Encoding` is decoded), kept
/// for a replay through the merge path in an anonymous temporary file:
/// unlinked at creation (never visible in the file system), private to this
/// process, and removed by the OS when the handle is dropped. Written through
/// a buffer by tokio's file I/O (blocking writes on tokio's blocking pool), so
/// memory stays bounded whatever the body's size.
struct Spool {
    file: BufWriter<tokio::fs::File>,
}

impl Spool {
    async fn create() -> io::Result<Spool> {
        let file = tokio::task::spawn_blocking(tempfile::tempfile)
            .await
            .map_err(io::Error::other)??;
        Ok(Spool {
            file: BufWriter::with_capacity(SPOOL_BUFFER, tokio::fs::File::from_std(file)),
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.write_all(chunk).await
    }

    /// The spooled bytes, from the start.
    async fn replay(mut self) -> io::Result<ReaderStream<tokio::fs::File>> {
        self.file.flush().await?;
        let mut file = self.file.into_inner();
        file.seek(io::SeekFrom::Start(0)).await?;
        Ok(ReaderStream::with_capacity(file, SPOOL_READ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ingest::MAX_FIELDS;

    const A: &IngestSchema = &crate::kinds::auth::INGEST;

    fn record(at: &str, id: Option<&'static str>, user: &'static str) -> Record<'static> {
        let mut values = [Value::Null; MAX_FIELDS];
        values[0] = Value::Time(at.parse().unwrap());
        values[1] = Value::Text("T");
        values[2] = Value::Text("n");
        values[3] = Value::Text("o");
        values[4] = Value::Text(user);
        values[5] = id.map_or(Value::Null, Value::Text);
        Record {
            schema: A,
            values,
            tenant: None,
        }
    }

    #[test]
    fn copy_tuples_have_the_binary_layout() {
        let mut encoder = CopyEncoder::staging(A);
        encoder.push(3, &record("2000-01-01T00:00:01Z", None, "ü"));
        let bytes = encoder.take();
        let (header, tuple) = bytes.split_at(COPY_HEADER.len());
        assert_eq!(header.len(), 19);
        let mut expected = vec![0, 7, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 8];
        expected.extend_from_slice(&1_000_000i64.to_be_bytes());
        for text in [&b"T"[..], b"n", b"o", "ü".as_bytes()] {
            expected.extend_from_slice(&(text.len() as i32).to_be_bytes());
            expected.extend_from_slice(text);
        }
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(tuple, &expected[..]);
        assert!(!encoder.with_ids);
        let statements = Statements::new(A, DEFAULT_TENANT);
        assert_eq!(encoder.insert_sql(&statements), statements.insert);
        assert_eq!(
            statements.direct_copy,
            "COPY auth_event (occurred_at, auth_method_type, auth_method_name, \
             auth_request_origin, user_id, event_id) FROM STDIN (FORMAT binary)"
        );
    }

    #[test]
    fn a_token_of_an_organization_writes_it_after_the_fields() {
        let statements = Statements::new(A, "acme");
        assert!(
            statements
                .direct_copy
                .ends_with("user_id, event_id, tenant) FROM STDIN (FORMAT binary)"),
            "{}",
            statements.direct_copy
        );
        assert!(statements.insert.contains("(occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id, event_id, tenant) SELECT occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id, event_id, 'acme' FROM"), "{}", statements.insert);
        assert!(statements.insert_dedup.contains(", 'acme' FROM ("));
        let mut batch = DirectBatch::new(A, statements.tenant.as_deref(), None);
        batch.push(&record("2000-01-01T00:00:01Z", None, "u"));
        let tuple = batch.encoder.take();
        let tuple = &tuple[COPY_HEADER.len()..];
        assert_eq!(&tuple[..2], &[0, 7], "six fields and the organization");
        assert!(tuple.ends_with(&[0, 0, 0, 4, b'a', b'c', b'm', b'e']));
        // The default organization, or a name that is none, is the column's
        // default: nothing is written.
        for tenant in [DEFAULT_TENANT, "a b", "x'y"] {
            let statements = Statements::new(A, tenant);
            assert!(statements.tenant.is_none());
            assert!(!statements.direct_copy.contains("tenant"));
        }
    }

    #[test]
    fn direct_tuples_have_no_sequence_number() {
        let at = "2000-01-01T00:00:01Z";
        let mut batch = DirectBatch::new(A, None, None);
        batch.push(&record(at, Some("a"), "u"));
        batch.push(&record(at, None, "u"));
        batch.push(&record(at, None, "u"));
        assert!(!batch.repeated);
        let mut expected = COPY_HEADER.to_vec();
        for id in [Some(&b"a"[..]), None, None] {
            expected.extend_from_slice(&[0, 6, 0, 0, 0, 8]);
            expected.extend_from_slice(&1_000_000i64.to_be_bytes());
            for text in [&b"T"[..], b"n", b"o", b"u"] {
                expected.extend_from_slice(&(text.len() as i32).to_be_bytes());
                expected.extend_from_slice(text);
            }
            match id {
                Some(id) => {
                    expected.extend_from_slice(&(id.len() as i32).to_be_bytes());
                    expected.extend_from_slice(id);
                }
                None => expected.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        assert_eq!(&batch.encoder.buffer[..], &expected[..]);

        // A repeated ID stops the batch: nothing more is encoded.
        let before = batch.encoder.buffer.len();
        batch.push(&record(at, Some("a"), "u"));
        assert!(batch.repeated);
        batch.push(&record(at, Some("b"), "u"));
        assert_eq!(batch.encoder.buffer.len(), before);
        batch.encoder.end();
        assert_eq!(&batch.encoder.take()[before..], &[0xff, 0xff]);
    }

    #[test]
    fn the_insert_fits_the_body() {
        let statements = Statements::new(A, DEFAULT_TENANT);
        let mut encoder = CopyEncoder::staging(A);
        encoder.push(1, &record("2021-04-10T00:00:01Z", None, "u"));
        encoder.push(2, &record("2021-04-10T00:00:01Z", Some("a"), "u"));
        encoder.push(3, &record("2021-04-10T00:00:02Z", None, "u"));
        assert_eq!(encoder.insert_sql(&statements), statements.insert_in_order);
        encoder.push(4, &record("2021-04-10T00:00:00Z", None, "u"));
        assert_eq!(encoder.insert_sql(&statements), statements.insert_dedup);
        // In time order, but an eventId repeats: its first occurrence is
        // picked explicitly (the key of a partitioned table has the time).
        let mut encoder = CopyEncoder::staging(A);
        encoder.push(1, &record("2021-04-10T00:00:01Z", Some("a"), "u"));
        encoder.push(2, &record("2021-04-10T00:00:02Z", Some("a"), "u"));
        assert_eq!(encoder.insert_sql(&statements), statements.insert_dedup);
    }

    #[test]
    fn integers_and_identities_take_their_column_types() {
        let client = &crate::kinds::client::INGEST;
        let records = crate::core::ingest::parse_all(
            client,
            IngestFormat::Ndjson,
            br#"{"timestamp":946684801000000,"macAddress":"68-05-71-A4-EF-0E","eventType":"Failure","channel":11,"associationTimestamp":5,"failureCode":7}"#,
        )
        .unwrap();
        assert_eq!(records.len(), 1);
        let mut parser = IngestParser::new(client, IngestFormat::Ndjson);
        let mut encoder = CopyEncoder::direct(client);
        parser
            .feed(
                br#"{"timestamp":946684801000000,"macAddress":"68-05-71-A4-EF-0E","eventType":"Failure","channel":11,"associationTimestamp":5}"#,
                |_, r| encoder.push(0, r),
            )
            .unwrap();
        parser.finish(|_, r| encoder.push(0, r)).unwrap();
        let bytes = encoder.take();
        let tuple = &bytes[COPY_HEADER.len()..];
        assert_eq!(&tuple[..2], &28i16.to_be_bytes());
        // timestamp, then the MAC in its one notation, then the event type.
        let mut expected = vec![0, 0, 0, 8];
        expected.extend_from_slice(&1_000_000i64.to_be_bytes());
        expected.extend_from_slice(&17i32.to_be_bytes());
        expected.extend_from_slice(b"68:05:71:a4:ef:0e");
        expected.extend_from_slice(&7i32.to_be_bytes());
        expected.extend_from_slice(b"Failure");
        assert_eq!(&tuple[2..2 + expected.len()], &expected[..]);
        // protocol, ssid, bssid null; channel an int4.
        let rest = &tuple[2 + expected.len()..];
        assert_eq!(&rest[..12], &[0xff; 12]);
        assert_eq!(&rest[12..20], &[0, 0, 0, 4, 0, 0, 0, 11]);
    }
}

//! Writing an ingest body into `auth_event`: parse while streaming, in one
//! transaction, so a request is stored whole or not at all.
//!
//! 1. Check out a connection and begin a transaction; make sure this
//!    session's staging table `pg_temp.acctstream_ingest` exists (it is
//!    created once per connection, `ON COMMIT DELETE ROWS`).
//! 2. `COPY acctstream_ingest FROM STDIN (FORMAT binary)`: every chunk of the
//!    body is parsed as it arrives and its events are encoded straight into
//!    the COPY buffer, which goes to PostgreSQL in pieces of about
//!    [`SEND_AT`] bytes. Memory stays bounded whatever the body's size.
//! 3. One `INSERT INTO auth_event … SELECT … ORDER BY occurred_at, seq
//!    ON CONFLICT (event_id) DO NOTHING`: a single statement, so statement
//!    triggers see the request as one batch; events whose `event_id` is
//!    already stored are skipped; when the body repeats an `event_id`, only
//!    its first occurrence is inserted. (Rows are inserted in time order, so
//!    the first occurrence wins by itself when the body is in time order, the
//!    usual case; otherwise a window function picks it, at the cost of one
//!    more sort. Without any `event_id` nothing can conflict.)
//! 4. Commit.
//!
//! Any error before the commit (an invalid record, a body that is too large
//! or broken off, a database failure) drops the transaction, which rolls it
//! back: nothing of the request is stored.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, PoolError};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio_postgres::error::SqlState;

use crate::core::ingest::{Event, IngestFormat, IngestParser, RecordError};

/// The COPY buffer is sent to PostgreSQL whenever it holds this much.
pub const SEND_AT: usize = 256 * 1024;

/// Prepares the transaction. `work_mem` is the memory PostgreSQL may use to
/// sort one request's events before inserting them (the default 4 MB would
/// spill a large request to disk).
const PREPARE_SQL: &str = "SET LOCAL client_min_messages = warning; \
     SET LOCAL work_mem = '64MB'; \
     CREATE TEMP TABLE IF NOT EXISTS acctstream_ingest ( \
         seq                 bigint      NOT NULL, \
         occurred_at         timestamptz NOT NULL, \
         auth_method_type    text        NOT NULL, \
         auth_method_name    text        NOT NULL, \
         auth_request_origin text        NOT NULL, \
         user_id             text        NOT NULL, \
         event_id            text \
     ) ON COMMIT DELETE ROWS";

const COPY_SQL: &str = "COPY acctstream_ingest (seq, occurred_at, auth_method_type, \
     auth_method_name, auth_request_origin, user_id, event_id) FROM STDIN (FORMAT binary)";

/// The insert when the body had no event IDs: nothing can conflict.
const INSERT_SQL: &str = "INSERT INTO auth_event (occurred_at, auth_method_type, \
     auth_method_name, auth_request_origin, user_id, event_id) \
     SELECT occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id, event_id \
     FROM acctstream_ingest ORDER BY occurred_at, seq";

/// The insert when some events had IDs and the body was in time order:
/// rows go in body order, so the first occurrence of a repeated ID is the
/// one inserted, and IDs already stored are skipped.
const INSERT_IN_ORDER_SQL: &str = "INSERT INTO auth_event (occurred_at, auth_method_type, \
     auth_method_name, auth_request_origin, user_id, event_id) \
     SELECT occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id, event_id \
     FROM acctstream_ingest ORDER BY occurred_at, seq \
     ON CONFLICT (event_id) DO NOTHING";

/// The insert when some events had IDs and the body was not in time order:
/// the first occurrence of each ID in the body is picked explicitly, and IDs
/// already stored are skipped.
const INSERT_DEDUP_SQL: &str = "INSERT INTO auth_event (occurred_at, auth_method_type, \
     auth_method_name, auth_request_origin, user_id, event_id) \
     SELECT occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id, event_id \
     FROM ( \
         SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY seq) AS nth \
         FROM acctstream_ingest \
     ) AS staged \
     WHERE event_id IS NULL OR nth = 1 \
     ORDER BY occurred_at, seq \
     ON CONFLICT (event_id) DO NOTHING";

/// The binary COPY signature, flags and header extension length.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Columns per COPY tuple.
const COPY_COLUMNS: i16 = 7;
/// PostgreSQL's epoch (2000-01-01T00:00:00Z) in Unix microseconds.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// What a successful ingest did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestSummary {
    /// Valid events in the body.
    pub received: u64,
    /// Events inserted; the rest had an `eventId` already stored (or repeated
    /// earlier in the body).
    pub inserted: u64,
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
            _ if error.is_closed() => IngestError::Disconnected(error),
            _ => IngestError::Database(error),
        }
    }
}

/// Encodes events as binary COPY tuples of `acctstream_ingest`.
struct CopyEncoder {
    buffer: BytesMut,
    /// Some event had an `eventId`.
    with_ids: bool,
    /// The timestamps so far never decreased.
    in_time_order: bool,
    last: Option<DateTime<Utc>>,
}

impl CopyEncoder {
    fn new() -> CopyEncoder {
        let mut buffer = BytesMut::with_capacity(SEND_AT + 16 * 1024);
        buffer.put_slice(COPY_HEADER);
        CopyEncoder {
            buffer,
            with_ids: false,
            in_time_order: true,
            last: None,
        }
    }

    fn push(&mut self, seq: u64, event: &Event<'_>) {
        if self.last.is_some_and(|last| event.occurred_at < last) {
            self.in_time_order = false;
        }
        self.last = Some(event.occurred_at);
        let buffer = &mut self.buffer;
        buffer.put_i16(COPY_COLUMNS);
        buffer.put_i32(8);
        // Sequence numbers count records of a body at most MAX_BODY bytes long.
        buffer.put_i64(i64::try_from(seq).unwrap_or(i64::MAX));
        buffer.put_i32(8);
        // Timestamps come from RFC 3339 text (years 0000-9999): no overflow.
        buffer.put_i64(event.occurred_at.timestamp_micros() - PG_EPOCH_UNIX_MICROS);
        for text in [
            event.auth_method_type,
            event.auth_method_name,
            event.auth_request_origin,
            event.user_id,
        ] {
            put_text(buffer, text);
        }
        match event.event_id {
            Some(id) => {
                self.with_ids = true;
                put_text(buffer, id);
            }
            None => buffer.put_i32(-1),
        }
    }

    fn take(&mut self) -> Bytes {
        self.buffer.split().freeze()
    }

    /// The insert statement for what was encoded.
    fn insert_sql(&self) -> &'static str {
        match (self.with_ids, self.in_time_order) {
            (false, _) => INSERT_SQL,
            (true, true) => INSERT_IN_ORDER_SQL,
            (true, false) => INSERT_DEDUP_SQL,
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
    format: IngestFormat,
    body: &mut S,
) -> Result<IngestSummary, IngestFailure<E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut parser = IngestParser::new(format);
    store(pool, &mut parser, body)
        .await
        .map_err(|error| IngestFailure {
            error,
            received: parser.received(),
        })
}

async fn store<S, E>(
    pool: &Pool,
    parser: &mut IngestParser,
    body: &mut S,
) -> Result<IngestSummary, IngestError<E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let started = std::time::Instant::now();
    let mut client = pool.get().await.map_err(IngestError::Unavailable)?;
    let tx = client.transaction().await?;
    tx.batch_execute(PREPARE_SQL).await?;
    let sink = tx.copy_in::<_, Bytes>(COPY_SQL).await?;
    let mut sink = std::pin::pin!(sink);

    let mut encoder = CopyEncoder::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(IngestError::Body)?;
        parser
            .feed(&chunk, |seq, event| encoder.push(seq, event))
            .map_err(IngestError::Invalid)?;
        if encoder.buffer.len() >= SEND_AT {
            sink.send(encoder.take()).await?;
        }
    }
    parser
        .finish(|seq, event| encoder.push(seq, event))
        .map_err(IngestError::Invalid)?;
    encoder.buffer.put_i16(-1);
    sink.send(encoder.take()).await?;
    let staged = sink.as_mut().finish().await?;
    let received = parser.received();
    debug_assert_eq!(staged, received);
    let staging = started.elapsed();

    let inserted = if received == 0 {
        0
    } else {
        tx.execute(encoder.insert_sql(), &[]).await?
    };
    let inserting = started.elapsed() - staging;
    tx.commit().await?;
    tracing::debug!(
        received,
        inserted,
        staging_ms = staging.as_millis() as u64,
        inserting_ms = inserting.as_millis() as u64,
        committing_ms = (started.elapsed() - staging - inserting).as_millis() as u64,
        "ingest transaction committed"
    );
    Ok(IngestSummary { received, inserted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_tuples_have_the_binary_layout() {
        let mut encoder = CopyEncoder::new();
        let at = "2000-01-01T00:00:01Z".parse().unwrap();
        encoder.push(
            3,
            &Event {
                occurred_at: at,
                auth_method_type: "T",
                auth_method_name: "n",
                auth_request_origin: "o",
                user_id: "ü",
                event_id: None,
            },
        );
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
        assert_eq!(encoder.insert_sql(), INSERT_SQL);
    }

    #[test]
    fn the_insert_fits_the_body() {
        let event = |at: &str, id: Option<&'static str>| Event {
            occurred_at: at.parse().unwrap(),
            auth_method_type: "T",
            auth_method_name: "n",
            auth_request_origin: "o",
            user_id: "u",
            event_id: id,
        };
        let mut encoder = CopyEncoder::new();
        encoder.push(1, &event("2021-04-10T00:00:01Z", None));
        encoder.push(2, &event("2021-04-10T00:00:01Z", Some("a")));
        encoder.push(3, &event("2021-04-10T00:00:02Z", None));
        assert_eq!(encoder.insert_sql(), INSERT_IN_ORDER_SQL);
        encoder.push(4, &event("2021-04-10T00:00:00Z", None));
        assert_eq!(encoder.insert_sql(), INSERT_DEDUP_SQL);
    }
}

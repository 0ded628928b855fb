//! The event query and the stream that turns its rows into encoded chunks.
//!
//! [`open`] does everything that can fail before the first byte: it checks
//! out a connection and starts the query. The returned [`EventStream`] then
//! pulls rows from PostgreSQL only when the HTTP layer asks for the next
//! chunk, so a slow client slows the database down instead of filling memory:
//! tokio-postgres hands rows over a bounded channel, and once it is full it
//! stops reading the socket, and the backend blocks on its send buffer.
//!
//! Raw user IDs exist here only between decoding a row and pseudonymising
//! it; the encoder receives a [`Pseudonym`](crate::core::pseudonym::Pseudonym).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool, PoolError};
use futures_util::Stream;
use tokio_postgres::{types::ToSql, NoTls, Row, RowStream};

use crate::{
    core::{
        encode::{EventEncoder, EventRecord, CHUNK_TARGET},
        negotiate::OutputFormat,
        pseudonym::{PseudonymCache, Pseudonymiser},
        window::{Direction, NavigationLinks, Window},
    },
    metrics::StreamTally,
};

const SELECT_ASC: &str = "SELECT occurred_at, auth_method_type, auth_method_name, \
     auth_request_origin, user_id FROM auth_event \
     WHERE occurred_at >= $1 AND occurred_at < $2 ORDER BY occurred_at, id";
const SELECT_DESC: &str = "SELECT occurred_at, auth_method_type, auth_method_name, \
     auth_request_origin, user_id FROM auth_event \
     WHERE occurred_at > $1 AND occurred_at <= $2 ORDER BY occurred_at DESC, id DESC";

/// When rows stop arriving for a moment, a partial chunk at least this large
/// goes out at once; a smaller one waits up to [`FLUSH_DELAY`] for company.
const FLUSH_EARLY: usize = 16 * 1024;
/// Longest time a partial chunk waits while the database is quiet.
const FLUSH_DELAY: Duration = Duration::from_millis(20);

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No connection could be had: the pool is exhausted or the database is
    /// unreachable. The caller should answer 503.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] PoolError),
    /// The query could not be started.
    #[error("cannot start the event query: {0}")]
    Query(#[source] tokio_postgres::Error),
}

impl OpenError {
    /// True when the failure means the database cannot be reached right now
    /// (rather than a bug or a broken query).
    pub fn is_unavailable(&self) -> bool {
        match self {
            OpenError::Unavailable(_) => true,
            OpenError::Query(e) => e.is_closed(),
        }
    }
}

/// The database failed after streaming had started.
#[derive(Debug, thiserror::Error)]
#[error("event stream aborted by a database error: {0}")]
pub struct StreamError(#[source] tokio_postgres::Error);

/// Checks out a connection and starts the window's query. Nothing is sent
/// to the client until this has succeeded. `tally` receives the stream's
/// figures (rows, how it ended); see [`crate::metrics::Metrics::stream`].
pub async fn open(
    pool: &Pool,
    window: &Window,
    format: OutputFormat,
    links: &NavigationLinks,
    pseudonymiser: &Pseudonymiser,
    tally: StreamTally,
) -> Result<EventStream, OpenError> {
    let client = pool.get().await.map_err(OpenError::Unavailable)?;
    let sql = match window.direction() {
        Direction::Ascending => SELECT_ASC,
        Direction::Descending => SELECT_DESC,
    };
    let statement = client.prepare_cached(sql).await.map_err(OpenError::Query)?;
    let (lower, upper) = window.bounds();
    let params: [&(dyn ToSql + Sync); 2] = [&lower, &upper];
    let rows = client
        .query_raw(&statement, params)
        .await
        .map_err(OpenError::Query)?;
    Ok(EventStream {
        rows: Box::pin(rows),
        client: Some(client),
        encoder: EventEncoder::new(format, links),
        users: PseudonymCache::new(pseudonymiser.clone()),
        flush_timer: None,
        rows_sent: 0,
        state: State::Streaming,
        error: None,
        tally,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Rows may still come.
    Streaming,
    /// The JSON body was closed in-band after an error; send what is buffered.
    Closing,
    /// A CSV body must be aborted after the buffered bytes went out.
    Aborting,
    /// Nothing more to send.
    Done,
}

/// A stream of encoded chunks (tens of KiB each) of one window's events.
///
/// Dropping it before the end (the client went away) cancels the query and
/// returns the connection to the pool only once it is idle again.
pub struct EventStream {
    rows: Pin<Box<RowStream>>,
    client: Option<Object>,
    encoder: EventEncoder,
    users: PseudonymCache,
    flush_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    rows_sent: u64,
    state: State,
    /// The database error that aborts a CSV body, held until the rows
    /// buffered before it are out.
    error: Option<tokio_postgres::Error>,
    /// Metrics and the request log's row count.
    tally: StreamTally,
}

impl EventStream {
    /// Rows encoded so far.
    pub fn rows(&self) -> u64 {
        self.rows_sent
    }

    fn push(&mut self, row: &Row) -> Result<(), tokio_postgres::Error> {
        let occurred_at: DateTime<Utc> = row.try_get(0)?;
        let auth_method_type: &str = row.try_get(1)?;
        let auth_method_name: &str = row.try_get(2)?;
        let auth_request_origin: &str = row.try_get(3)?;
        let user = self.users.get(row.try_get::<_, &str>(4)?);
        self.encoder.push(&EventRecord {
            occurred_at,
            auth_method_type,
            auth_method_name,
            auth_request_origin,
            user,
        });
        self.rows_sent += 1;
        Ok(())
    }

    fn chunk(&mut self) -> Poll<Option<Result<Bytes, StreamError>>> {
        self.flush_timer = None;
        self.tally.set_rows(self.rows_sent);
        Poll::Ready(Some(Ok(self.encoder.take())))
    }

    fn fail(&mut self, error: tokio_postgres::Error) {
        tracing::error!(
            error = %error,
            rows = self.rows_sent,
            "database error while streaming events"
        );
        self.tally.aborted_by_database();
        // The connection may be broken; do not hand it back to the pool.
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
        self.state = if self
            .encoder
            .fail("The database failed while streaming the events; the list is incomplete.")
        {
            State::Closing
        } else {
            self.error = Some(error);
            State::Aborting
        };
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, StreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Closing => {
                    this.state = State::Done;
                    return this.chunk();
                }
                State::Aborting => {
                    if this.encoder.buffered() > 0 {
                        return this.chunk();
                    }
                    this.state = State::Done;
                    if let Some(error) = this.error.take() {
                        return Poll::Ready(Some(Err(StreamError(error))));
                    }
                    return Poll::Ready(None);
                }
                State::Streaming => {}
            }
            match this.rows.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(row))) => {
                    if let Err(error) = this.push(&row) {
                        this.fail(error);
                        continue;
                    }
                    if this.encoder.buffered() >= CHUNK_TARGET {
                        return this.chunk();
                    }
                }
                Poll::Ready(Some(Err(error))) => this.fail(error),
                Poll::Ready(None) => {
                    this.encoder.finish();
                    this.state = State::Done;
                    // The query is complete: the connection goes back now.
                    this.client = None;
                    return this.chunk();
                }
                Poll::Pending => {
                    let buffered = this.encoder.buffered();
                    if buffered >= FLUSH_EARLY || (buffered > 0 && this.rows_sent == 0) {
                        // A big partial chunk, or the prefix before any row:
                        // send it now (the prefix gives a fast first byte).
                        return this.chunk();
                    }
                    if buffered > 0 {
                        let timer = this
                            .flush_timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(FLUSH_DELAY)));
                        if timer.as_mut().poll(cx).is_ready() {
                            return this.chunk();
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.tally.set_rows(self.rows_sent);
        let Some(client) = self.client.take() else {
            return;
        };
        self.tally.aborted_by_client();
        // Unfinished: the client went away mid-stream. Cancel the query so the
        // backend stops, and give the connection back only when it is idle.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(Object::take(client));
            return;
        };
        tracing::info!(
            rows = self.rows_sent,
            "client went away; cancelling the query"
        );
        let token = client.cancel_token();
        runtime.spawn(async move {
            if let Err(error) = token.cancel_query(NoTls).await {
                tracing::warn!(%error, "cannot cancel the query; discarding its connection");
                drop(Object::take(client));
                return;
            }
            // Replies come in order: this answers after the cancelled query
            // has ended. Should the cancel request land on this query instead,
            // ask once more.
            for _ in 0..2 {
                if client.simple_query("").await.is_ok() {
                    return; // idle and healthy: back to the pool
                }
                if client.is_closed() {
                    break;
                }
            }
            drop(Object::take(client));
        });
    }
}

//! `POST /api/v1/events`: producers push events. The body is parsed while it
//! streams into the database (see [`crate::db::ingest`]: a direct COPY when
//! no `eventId` is stored already or repeated, otherwise a replay of the
//! spooled body through a deduplicating insert); a request is stored whole or
//! not at all, and events whose `eventId` is already stored are skipped, so
//! retrying a request is safe. Each stored request's path is logged and
//! counted (`acctstream_ingest_requests_total{path}`).

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    dev::Decompress,
    error::PayloadError,
    http::header::{self, ContentEncoding, HeaderMap},
    web, HttpRequest, HttpResponse,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::{auth::require_write, error::ApiError, AppState};
use crate::{
    core::ingest::{IngestFormat, IngestSchema},
    db::ingest::{self as db_ingest, IngestError},
};

/// The default of `ACCTSTREAM_MAX_BODY_BYTES`: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Settings of the ingest endpoint.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Largest accepted request body, in bytes (after any `Content-Encoding`
    /// is decoded); larger bodies are answered 413 and nothing is stored.
    pub max_body_bytes: u64,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The body of a successful ingest.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IngestResponse {
    /// Events in the request.
    pub received: u64,
    /// Events stored now.
    pub inserted: u64,
    /// Events skipped because their `eventId` was already stored (or
    /// appeared earlier in the same request).
    pub duplicates: u64,
}

/// Registers the ingest route of every kind that has one
/// (`POST /api/v1/events`, `POST /api/v1/client-events`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for kind in crate::kinds::ALL {
        let Some(route) = &kind.ingest else {
            continue;
        };
        let schema = route.schema;
        cfg.service(
            web::resource(route.path)
                .route(web::post().to(
                    move |req: HttpRequest, payload: web::Payload, state: web::Data<AppState>| {
                        ingest(schema, req, payload, state)
                    },
                ))
                .default_service(web::to(post_only)),
        );
    }
}

async fn post_only() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "POST" })
}

/// The handler: authenticate, choose the parser by `Content-Type`, refuse a
/// declared length over the limit, then stream the body into the database.
async fn ingest(
    schema: &'static IngestSchema,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_write(&req, &state.tokens)?;
    let format = body_format(req.headers())?;
    let encoding = body_encoding(req.headers())?;
    let limit = state.options.ingest.max_body_bytes;
    if declared_length(req.headers()).is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    let started = Instant::now();
    let mut body = LimitedBody {
        payload: Decompress::new(payload, encoding),
        limit,
        seen: 0,
        ended: false,
    };
    let metrics = &state.options.metrics;
    let stored = db_ingest::ingest(&state.pool, schema, &state.pseudonymiser, format, &mut body);
    match stored.await {
        Ok(summary) => {
            metrics.ingest_accepted(summary.received);
            metrics.ingest_request(summary.path.label());
            tracing::info!(
                table = schema.table,
                format = format.media_type(),
                path = summary.path.label(),
                received = summary.received,
                inserted = summary.inserted,
                duplicates = summary.duplicates(),
                bytes = body.seen,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "events ingested"
            );
            Ok(HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(IngestResponse {
                    received: summary.received,
                    inserted: summary.inserted,
                    duplicates: summary.duplicates(),
                }))
        }
        Err(failure) => {
            let invalid = matches!(failure.error, IngestError::Invalid(_));
            metrics.ingest_rejected(failure.received + u64::from(invalid));
            let answer = api_error(failure.error, limit);
            if invalid {
                // The transaction is rolled back and its connection is back
                // in the pool. Read the rest of the body (at most the limit)
                // so that the client, still sending, gets to read the answer
                // instead of a reset connection.
                while let Some(Ok(_)) = body.next().await {}
            }
            Err(answer)
        }
    }
}

/// The parser for the request's `Content-Type`; anything else is a 415.
fn body_format(headers: &HeaderMap) -> Result<IngestFormat, ApiError> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(IngestFormat::from_content_type)
        .ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!(
                "Send the events as {} (Content-Type header).",
                IngestFormat::SUPPORTED
            ))
        })
}

/// How the body is compressed: none, or one of the codings actix decodes.
fn body_encoding(headers: &HeaderMap) -> Result<ContentEncoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(ContentEncoding::Identity);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::UnsupportedMediaType(
                "Unsupported Content-Encoding: send the body uncompressed or with one of \
                 gzip, deflate, br or zstd."
                    .to_owned(),
            )
        })
}

/// The `Content-Length`, when the request has a readable one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "The request body is larger than the limit of {limit} bytes; nothing was stored. \
         Split the events into smaller requests."
    ))
}

fn api_error(error: IngestError<BodyError>, limit: u64) -> ApiError {
    match error {
        IngestError::Invalid(record) => {
            let text = record.to_string();
            let mut chars = text.chars();
            let capitalised: String = chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default();
            ApiError::InvalidRequest(format!("{capitalised}. Nothing was stored."))
        }
        IngestError::Body(BodyError::TooLarge) => too_large(limit),
        IngestError::Body(BodyError::Read(e)) => ApiError::InvalidRequest(format!(
            "The request body could not be read ({e}); nothing was stored."
        )),
        IngestError::Unavailable(e) => ApiError::Unavailable(Box::new(e)),
        IngestError::Conflict(e) | IngestError::Disconnected(e) => {
            ApiError::Unavailable(Box::new(e))
        }
        IngestError::Database(e) => ApiError::Internal(Box::new(e)),
        IngestError::Spool(e) => ApiError::Internal(Box::new(e)),
    }
}

/// Why the body stream stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More bytes than the limit arrived.
    #[error("the body is larger than the limit")]
    TooLarge,
    /// The body could not be read (the client broke off, or a
    /// `Content-Encoding` was corrupt).
    #[error("{0}")]
    Read(PayloadError),
}

/// The request body, decoded and counted as it streams: more than `limit`
/// decoded bytes end it with [`BodyError::TooLarge`], whatever
/// `Content-Length` said (so a small compressed body cannot expand without
/// bound).
struct LimitedBody {
    payload: Decompress<web::Payload>,
    limit: u64,
    seen: u64,
    ended: bool,
}

impl Stream for LimitedBody {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let item = match this.payload.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        Poll::Ready(match item {
            None => {
                this.ended = true;
                None
            }
            Some(Err(e)) => {
                this.ended = true;
                Some(Err(BodyError::Read(e)))
            }
            Some(Ok(chunk)) => {
                this.seen += chunk.len() as u64;
                if this.seen > this.limit {
                    this.ended = true;
                    Some(Err(BodyError::TooLarge))
                } else {
                    Some(Ok(chunk))
                }
            }
        })
    }
}

//! `POST /api/v1/events`, `POST /api/v1/client-events` (every kind with an
//! ingest schema): producers push records. The body is parsed while it
//! streams into the database (see [`crate::db::ingest`]: a direct COPY when
//! no `eventId` is stored already or repeated, otherwise a replay of the
//! spooled body through a deduplicating insert); a request is stored whole or
//! not at all, and events whose `eventId` is already stored are skipped, so
//! retrying a request is safe. Each stored request's path is logged and
//! counted (`acctstream_ingest_requests_total{path}`).

use std::time::Instant;

use actix_web::{
    http::header::{self, HeaderMap},
    web, HttpRequest, HttpResponse,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{
    auth::require_in_tenant,
    body::{too_large, BodyError, LimitedBody},
    error::ApiError,
    resource::{not_allowed, options, POST_ALLOW},
    AppState,
};
use crate::{
    core::{
        ingest::{IngestFormat, IngestSchema},
        scope::Grant,
    },
    db::ingest::{self as db_ingest, IngestError},
};

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
pub fn configure(cfg: &mut web::ServiceConfig, kinds: crate::registry::Registry) {
    for kind in kinds.kinds() {
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
                .route(
                    web::route()
                        .guard(actix_web::guard::Options())
                        .to(|| options(POST_ALLOW)),
                )
                .default_service(web::to(|| not_allowed(POST_ALLOW))),
        );
    }
}

/// The handler: authenticate, choose the parser by `Content-Type`, refuse a
/// declared length over the limit, then stream the body into the database.
async fn ingest(
    schema: &'static IngestSchema,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (_, tenancy) = require_in_tenant(&req, Grant::Write)?;
    if tenancy.only().is_some() && schema.tenant.is_none() {
        return Err(super::auth::not_per_tenant());
    }
    let format = body_format(req.headers())?;
    let limit = state.options.ingest.max_body_bytes;
    let mut body = LimitedBody::new(&req, payload, limit)?;
    let started = Instant::now();
    let metrics = &state.options.metrics;
    let stored = db_ingest::ingest(
        &state.pool,
        schema,
        &state.pseudonymiser,
        format,
        tenancy.writes_to(),
        &mut body,
    );
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
                bytes = body.seen(),
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

/// `text` with its first letter upper-case.
pub(crate) fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
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

fn api_error(error: IngestError<BodyError>, limit: u64) -> ApiError {
    match error {
        IngestError::Invalid(record) if record.other_tenant => ApiError::Forbidden(format!(
            "{}: this token writes its own organization's records only (leave out `tenant`, or \
             name its own). Nothing was stored.",
            capitalise(&record.to_string())
        )),
        IngestError::Invalid(record) => ApiError::InvalidRequest(format!(
            "{}. Nothing was stored.",
            capitalise(&record.to_string())
        )),
        IngestError::Body(BodyError::TooLarge) => too_large(limit),
        IngestError::Body(BodyError::Read(e)) => ApiError::InvalidRequest(format!(
            "The request body could not be read: {}; nothing was stored.",
            super::body::describe(&e)
        )),
        IngestError::Unavailable(e) => ApiError::Unavailable(Box::new(e)),
        IngestError::Conflict(e) | IngestError::Disconnected(e) => {
            ApiError::Unavailable(Box::new(e))
        }
        IngestError::Database(e) => ApiError::Internal(Box::new(e)),
        IngestError::Spool(e) => ApiError::Internal(Box::new(e)),
    }
}

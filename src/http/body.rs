//! A request body that is decoded (`Content-Encoding`) and counted as it
//! streams, refused past a byte limit: what every streaming upload (ingest
//! of any kind) reads. Constructed after authentication, so a client without
//! a valid token learns nothing about limits.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use actix_web::{
    dev::Decompress,
    error::PayloadError,
    http::header::{self, ContentEncoding, HeaderMap},
    web, HttpRequest,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::error::ApiError;

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

/// The 413 answer for a body over `limit` bytes.
pub fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "The request body is larger than the limit of {limit} bytes; nothing was stored. \
         Split the events into smaller requests."
    ))
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
pub struct LimitedBody {
    payload: Decompress<web::Payload>,
    limit: u64,
    seen: u64,
    ended: bool,
}

impl LimitedBody {
    /// The body of `req`: a 415 for a `Content-Encoding` actix cannot decode,
    /// a 413 when `Content-Length` already says it is over `limit`.
    pub fn new(
        req: &HttpRequest,
        payload: web::Payload,
        limit: u64,
    ) -> Result<LimitedBody, ApiError> {
        let encoding = body_encoding(req.headers())?;
        if declared_length(req.headers()).is_some_and(|length| length > limit) {
            return Err(too_large(limit));
        }
        Ok(LimitedBody {
            payload: Decompress::new(payload, encoding),
            limit,
            seen: 0,
            ended: false,
        })
    }

    /// Decoded bytes read so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
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

/// What went wrong reading a body, in plain words (never the decoder's
/// internals).
pub fn describe(error: &PayloadError) -> &'static str {
    match error {
        PayloadError::Incomplete(_) => {
            "it ended early, or is not valid data of its Content-Encoding (a truncated \
             or corrupt compressed body)"
        }
        PayloadError::EncodingCorrupted => "it is not valid data of its Content-Encoding",
        PayloadError::Overflow => "it is larger than the server accepts",
        PayloadError::UnknownLength => "its length is unknown",
        PayloadError::Io(_) => {
            "the connection failed, or it is not valid data of its Content-Encoding"
        }
        _ => "the connection failed while it was sent",
    }
}

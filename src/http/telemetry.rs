//! The request middleware: a request id, one log line per request, and the
//! request metrics.
//!
//! Every response carries `X-Request-Id`: the client's own when it sent a
//! usable one (1 to 128 visible ASCII characters), else a generated one (16
//! random bytes in hex). The log line and the metrics are written when the
//! response body has been sent in full or dropped (the client went away),
//! so a streamed response is logged with its real duration, byte count and
//! rows. Only the route template is logged, never the raw path, the query
//! string or a header: a user ID or a token cannot reach a log line from here.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    body::{BodySize, BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    web, HttpMessage, HttpRequest,
};
use bytes::Bytes;
use rand::RngCore;
use tracing::Instrument;

use super::AppState;
use crate::metrics::{Metrics, RowsHandle, StreamTally};

/// The request id header, accepted from the client and echoed back.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id we keep.
const MAX_REQUEST_ID: usize = 128;

/// Route label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

/// What the middleware leaves in the request's extensions for handlers.
#[derive(Clone, Debug)]
struct RequestContext {
    rows: RowsHandle,
}

/// The header of a response whose lookup by pseudonym may miss records the
/// identity directory has not caught up with yet.
pub static X_LOOKUP_INCOMPLETE: HeaderName = HeaderName::from_static("x-lookup-incomplete");

/// Left in a request's extensions by a handler whose lookup may be
/// incomplete; the middleware turns it into [`X_LOOKUP_INCOMPLETE`].
#[derive(Clone, Copy, Debug)]
struct LookupIncomplete;

/// Marks `req`'s response as a lookup that may be incomplete.
pub fn mark_lookup_incomplete(req: &HttpRequest) {
    req.extensions_mut().insert(LookupIncomplete);
}

/// The client's request id when it is 1 to 128 visible ASCII characters,
/// else a fresh random one.
pub fn request_id(client: Option<&HeaderValue>) -> String {
    match client.map(HeaderValue::as_bytes) {
        Some(id) if is_valid_request_id(id) => String::from_utf8_lossy(id).into_owned(),
        _ => generate_request_id(),
    }
}

fn is_valid_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

fn generate_request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the metrics of one streamed response whose rows also go into
/// the request's log line. `resource` names what is streamed (`events`,
/// `verify_events`), `format` how (`json`, `csv`).
pub fn stream_tally(
    req: &HttpRequest,
    state: &AppState,
    resource: &'static str,
    format: &'static str,
) -> StreamTally {
    let tally = state.options.metrics.stream(resource, format);
    match req.extensions().get::<RequestContext>() {
        Some(context) => tally.with_rows_handle(context.rows.clone()),
        None => tally,
    }
}

/// The middleware function (wrap it with `actix_web::middleware::from_fn`).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<LoggedBody>, actix_web::Error> {
    let started = Instant::now();
    let arrived = chrono::Utc::now();
    let id = request_id(req.headers().get(&X_REQUEST_ID));
    let rows = RowsHandle::new();
    req.extensions_mut()
        .insert(RequestContext { rows: rows.clone() });
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|state| Arc::clone(&state.options.metrics));
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!("request", request_id = %id);

    // With the audit trail required, a request that could not be audited
    // is not served.
    let (mut response, reserved) = match super::audit::reserve(&req) {
        Err(refused) => (req.error_response(refused).map_into_boxed_body(), None),
        // Handler errors arrive as responses; an `Err` here comes from a
        // middleware and is turned into a response by actix-web itself.
        Ok(reserved) => match next.call(req).instrument(span.clone()).await {
            Ok(response) => (response.map_into_boxed_body(), reserved),
            Err(error) => {
                tracing::warn!(%error, request_id = %id, "request failed in a middleware");
                return Err(error);
            }
        },
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    let incomplete = response
        .request()
        .extensions()
        .get::<LookupIncomplete>()
        .is_some();
    if incomplete {
        response.headers_mut().insert(
            X_LOOKUP_INCOMPLETE.clone(),
            HeaderValue::from_static("identity directory catching up"),
        );
    }
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED.to_owned());
    let status = response.status().as_u16();
    let audit = super::audit::pending(&response, &route, &id, arrived, reserved);
    let log = RequestLog {
        audit,
        metrics,
        method,
        route,
        status,
        request_id: id,
        rows,
        started,
    };
    Ok(response.map_body(move |_, body| LoggedBody {
        inner: body,
        bytes: 0,
        finished: false,
        span,
        log: Some(log),
    }))
}

/// What the log line and the metrics need once the body is done.
struct RequestLog {
    audit: Option<super::audit::Pending>,
    metrics: Option<Arc<Metrics>>,
    method: String,
    route: String,
    status: u16,
    request_id: String,
    rows: RowsHandle,
    started: Instant,
}

impl RequestLog {
    fn emit(self, bytes: u64, complete: bool) {
        let duration = self.started.elapsed();
        if let Some(audit) = self.audit {
            audit.finish(
                self.rows.get_if_set(),
                bytes,
                complete,
                duration.as_secs_f64() * 1000.0,
            );
        }
        if let Some(metrics) = &self.metrics {
            metrics.record_request(&self.method, &self.route, self.status, duration);
        }
        tracing::info!(
            method = %self.method,
            route = %self.route,
            status = self.status,
            rows = self.rows.get_if_set(),
            bytes,
            duration_ms = (duration.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
            complete,
            request_id = %self.request_id,
            "request"
        );
    }
}

/// A response body that counts the bytes it hands out and writes the
/// request's log line when it ends or is dropped.
pub struct LoggedBody {
    inner: BoxBody,
    bytes: u64,
    finished: bool,
    span: tracing::Span,
    log: Option<RequestLog>,
}

impl LoggedBody {
    fn finish(&mut self, complete: bool) {
        self.finished = true;
        if let Some(log) = self.log.take() {
            log.emit(self.bytes, complete);
        }
    }
}

impl MessageBody for LoggedBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        let polled = {
            let _entered = this.span.enter();
            Pin::new(&mut this.inner).poll_next(cx)
        };
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                this.bytes += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.finish(false);
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if self.log.is_none() {
            return;
        }
        // A body that is empty by declaration (a redirect, a HEAD request)
        // is complete without ever being polled.
        let complete = matches!(self.inner.size(), BodySize::None | BodySize::Sized(0));
        // Drop the inner body first, inside the request's span, so that a
        // stream's own last words (and its final row count) come first.
        {
            let _entered = self.span.enter();
            drop(std::mem::replace(&mut self.inner, BoxBody::new(())));
        }
        self.finish(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_checked() {
        let ok = HeaderValue::from_static("abc-123_XYZ.~!");
        assert_eq!(request_id(Some(&ok)), "abc-123_XYZ.~!");
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        let with_space = HeaderValue::from_static("a b");
        let empty = HeaderValue::from_static("");
        for bad in [long, with_space, empty] {
            let id = request_id(Some(&bad));
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(request_id(None), request_id(None));
        let max = HeaderValue::from_str(&"b".repeat(128)).unwrap();
        assert_eq!(request_id(Some(&max)).len(), 128);
    }
}

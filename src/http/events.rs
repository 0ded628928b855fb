//! Server-sent events on a kind's change feed (issue 23):
//! `Accept: text/event-stream` on `<kind path>/changes` keeps the response
//! open and pushes each committed record as an event (`id:` the cursor
//! after it, `data:` its JSON object), from `Last-Event-ID` (a reconnecting
//! browser sends it), else `after`, else the feed's start. A comment every
//! [`HEARTBEAT`] keeps proxies from closing a quiet stream; the stream ends
//! cleanly when the service stops. It holds one of its client's stream
//! slots, and is audited like any read, when it ends.
//!
//! The feed is read a page at a time (the same two statements as
//! `changes`), each page only while the client takes the events: a slow
//! client holds nothing but its cursor.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{error::ApiError, AppState};
use crate::{
    core::{
        encode::{FormulaGuard, JsonHead},
        identity::IdentityPolicy,
        kind::{
            feed::{self, Cursor, FeedPage},
            Kind,
        },
        negotiate::OutputFormat,
    },
    db::{changes, records::Output},
    metrics::StreamTally,
};

/// Time between two comments on a quiet stream.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Time between two looks at a feed that had nothing new.
const POLL: Duration = Duration::from_millis(200);
/// Records read per page.
const PAGE: i64 = 1000;

/// Whether the request asks for server-sent events (`Accept` names
/// `text/event-stream`, and no `format` overrides it).
pub fn wanted(req: &HttpRequest, format: Option<&str>) -> bool {
    format.is_none()
        && req
            .headers()
            .get_all(header::ACCEPT)
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// Where a stream starts: `Last-Event-ID` when the client sent one (a
/// reconnection), else `after`; `None` for the feed's start.
pub fn resume_from(kind: &Kind, req: &HttpRequest) -> Result<Option<Cursor>, ApiError> {
    match req.headers().get("last-event-id") {
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().unwrap_or_default().trim();
            Cursor::decode(kind, text).map(Some).map_err(|_| {
                ApiError::InvalidRequest(
                    "The header `Last-Event-ID` is not an event id of this feed.".into(),
                )
            })
        }
    }
}

/// What a stream needs between two pages.
struct Feed {
    kind: &'static Kind,
    state: web::Data<AppState>,
    page: FeedPage,
    identities: IdentityPolicy,
    guard: FormulaGuard,
    zone: Option<crate::core::zone::Zone>,
    /// After the last event sent.
    cursor: Cursor,
    /// Events read and not yet sent.
    ready: VecDeque<Bytes>,
    /// When something was last sent.
    sent: Instant,
    /// The service is stopping.
    stop: tokio_util::sync::CancellationToken,
    /// The request's figures (rows sent).
    tally: StreamTally,
    rows: u64,
    /// The feed's first page, for the event that says a cursor was overtaken.
    first: String,
    done: bool,
}

/// The response: `text/event-stream`, never compressed, never cached.
#[allow(clippy::too_many_arguments)]
pub fn respond(
    kind: &'static Kind,
    state: web::Data<AppState>,
    page: FeedPage,
    identities: IdentityPolicy,
    zone: Option<crate::core::zone::Zone>,
    cursor: Cursor,
    tally: StreamTally,
    first: String,
) -> HttpResponse {
    let feed = Feed {
        kind,
        guard: state.options.csv_formula_guard,
        stop: state.options.shutdown.clone(),
        state,
        page,
        identities,
        zone,
        cursor,
        // A first comment: the client knows at once that it is connected.
        ready: VecDeque::from([Bytes::from_static(b": connected\n\n")]),
        sent: Instant::now(),
        tally,
        rows: 0,
        first,
        done: false,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let next = feed.next().await?;
        Some((next, feed))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Kept away from the compression layer: events go out as they come.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream.boxed_local())
}

impl Feed {
    /// The next bytes to send; `None` at the end.
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.sent = Instant::now();
                return Some(Ok(event));
            }
            if self.done || self.stop.is_cancelled() {
                return None;
            }
            match self.read_page().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => {
                    // Said as an event, then the stream ends: the client
                    // reconnects with its last event id.
                    tracing::warn!(feed = self.kind.name, %error, "event stream failed");
                    self.tally.aborted_by_database();
                    self.done = true;
                    self.ready.push_back(event(
                        "error",
                        None,
                        &serde_json::json!({
                            "error": "temporarily_unavailable",
                            "error_description": "The feed cannot be read right now; reconnect with the last event id."
                        })
                        .to_string(),
                    ));
                    continue;
                }
            }
            if self.sent.elapsed() >= HEARTBEAT {
                self.ready.push_back(Bytes::from_static(b": heartbeat\n\n"));
                continue;
            }
            tokio::select! {
                () = self.stop.cancelled() => return None,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Reads the page after the cursor into events; whether it had any.
    async fn read_page(&mut self) -> Result<bool, String> {
        let begun = changes::begin(
            &self.state.pool,
            self.kind,
            &self.page,
            self.cursor.position,
            PAGE,
            true,
        )
        .await
        .map_err(|e| e.to_string())?;
        let head = begun.head;
        if feed::overtaken(&self.cursor, &head.deletions) {
            self.done = true;
            self.ready.push_back(event(
                "error",
                None,
                &serde_json::json!({
                    "error": "gone",
                    "error_description": "Records after the last event were deleted by retention before they were sent: start again from the first retained record.",
                    "first": self.first,
                })
                .to_string(),
            ));
            return Ok(true);
        }
        let Some(last) = head.last else {
            self.cursor.epoch = head.deletions.epoch;
            return Ok(false);
        };
        let epoch = head.deletions.epoch;
        let output = Output {
            format: OutputFormat::Ndjson,
            head: JsonHead::Links(&NO_LINKS),
            identities: &self.identities,
            guard: self.guard,
            zone: self.zone.as_ref(),
        };
        let mut stream = changes::open(
            begun,
            self.kind,
            feed::with_position(self.kind),
            epoch,
            output,
            StreamTally::detached(),
        );
        let mut text = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => text.extend_from_slice(&chunk),
                Err(error) => return Err(error.to_string()),
            }
        }
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line = String::from_utf8_lossy(line);
            self.ready
                .push_back(event("message", position_of(&line), &line));
            self.rows += 1;
        }
        self.tally.set_rows(self.rows);
        self.cursor = Cursor {
            epoch,
            position: last,
        };
        Ok(true)
    }
}

/// Links no NDJSON body writes.
static NO_LINKS: crate::core::window::NavigationLinks = crate::core::window::NavigationLinks {
    self_link: String::new(),
    prev: String::new(),
    next: String::new(),
    span: None,
};

/// The `position` of a record's JSON object (the last member, written by
/// the feed's query: a cursor, plain ASCII).
fn position_of(line: &str) -> Option<&str> {
    let at = line.rfind("\"position\":\"")? + "\"position\":\"".len();
    line[at..].split('"').next()
}

/// One event: `event:` unless it is a message, `id:` when given, then the
/// data (one line: JSON has no raw newlines).
fn event(name: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 64);
    if name != "message" {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_position_as_id() {
        let line = r#"{"timestamp":"2021-04-10T00:00:00","position":"events.0.812.3"}"#;
        assert_eq!(position_of(line), Some("events.0.812.3"));
        assert_eq!(
            event("message", position_of(line), line),
            Bytes::from(format!("id: events.0.812.3\ndata: {line}\n\n"))
        );
        assert_eq!(
            event("error", None, "{}"),
            Bytes::from_static(b"event: error\ndata: {}\n\n")
        );
    }
}

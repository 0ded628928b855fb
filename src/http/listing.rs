//! `GET /api/v1/statistics/<kind>/{period}[/{datetime}]` for every kind in
//! the registry: one window of records, streamed as JSON, CSV or
//! NDJSON, and the helpers every listing shares (query parameters,
//! negotiation, links, the `Link` header, the response head).

use actix_web::{
    http::{
        header::{self, HeaderValue},
        Method,
    },
    web, HttpRequest, HttpResponse, HttpResponseBuilder,
};
use chrono::Utc;

use super::{
    auth::require_for_kind,
    error::ApiError,
    paging::link_header,
    resource::{get_or_head, get_resource},
    telemetry::stream_tally,
    AppState,
};
use crate::{
    core::{
        encode::JsonHead,
        identity::IdentityPolicy,
        kind::{FilterError, Kind, Listing},
        negotiate::{negotiate, NegotiationError, OutputFormat},
        scope::{Grant, Scope},
        window::{Direction, Period, Window, WindowError},
        zone::Zone,
    },
    db::records::{self, Output},
    registry::Registry,
};

/// Registers the window routes of every kind (one resource per template,
/// so that logs and metrics name the template that matched).
pub fn configure(cfg: &mut web::ServiceConfig, kinds: Registry) {
    for kind in kinds.kinds() {
        for path in [
            format!("{}/{{period}}", kind.path),
            format!("{}/{{period}}/{{datetime}}", kind.path),
        ] {
            cfg.service(get_resource(
                &path,
                get_or_head().to(move |req: HttpRequest, state: web::Data<AppState>| {
                    window(kind, req, state)
                }),
            ));
        }
    }
}

/// The query string of a listing, split into pairs; `sort` and `format` at
/// most once each.
#[derive(Debug)]
pub struct ListingQuery {
    /// Every pair, in order (filters are picked out by the kind).
    pub pairs: Vec<(String, String)>,
    /// `sort`.
    pub sort: Option<String>,
    /// `format`.
    pub format: Option<String>,
}

impl ListingQuery {
    /// Parses the query string; a malformed one (a broken percent-escape) or
    /// a repeated `sort` or `format` is a 400.
    pub fn parse(raw: &str) -> Result<ListingQuery, ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(raw)
            .map(web::Query::into_inner)
            .map_err(|_| {
                ApiError::InvalidRequest(
                    "The query string is malformed: write name=value pairs joined by &, \
                     with %XX escapes for reserved characters."
                        .into(),
                )
            })?;
        let single = |name: &str| -> Result<Option<String>, ApiError> {
            let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
            let first = values.next().cloned();
            if values.next().is_some() {
                return Err(ApiError::InvalidRequest(format!(
                    "The parameter `{name}` may appear only once."
                )));
            }
            Ok(first)
        };
        Ok(ListingQuery {
            sort: single("sort")?,
            format: single("format")?,
            pairs,
        })
    }
}

/// Who sees what: pseudonyms, or raw identities for the `identities` scope.
impl ListingQuery {
    /// The value of a parameter that may appear at most once.
    pub fn single(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.pairs.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(ApiError::InvalidRequest(format!(
                "The parameter `{name}` may appear only once."
            )));
        }
        Ok(first)
    }

    /// The value of an integer parameter from `min` to `max`, at most once.
    pub fn integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        self.single(name)?
            .map(|text| {
                text.parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::InvalidRequest(format!(
                            "The parameter `{name}` must be an integer from {min} to {max}."
                        ))
                    })
            })
            .transpose()
    }
}

/// How identities are shown to a caller of `scope` reading `tenant`'s
/// records only (`Selection::tenant`): raw with `identities`, else as
/// that organization's pseudonyms (the default organization's, and a
/// caller of every organization's, are the service's own).
pub fn identity_policy(scope: Scope, tenant: Option<&str>, state: &AppState) -> IdentityPolicy {
    if scope.has(Grant::Identities) {
        IdentityPolicy::Reveal
    } else {
        IdentityPolicy::Pseudonymise(match tenant {
            Some(tenant) => state.pseudonymiser.in_tenant(tenant),
            None => state.pseudonymiser.clone(),
        })
    }
}

impl From<FilterError> for ApiError {
    fn from(error: FilterError) -> ApiError {
        if error.is_forbidden() {
            ApiError::Forbidden(error.to_string())
        } else {
            ApiError::InvalidRequest(error.to_string())
        }
    }
}

/// One window of `kind`: authenticate, resolve the window, filters and
/// representation, open the query, then stream. Everything that can fail
/// happens before the first byte. A HEAD request stops before the database.
async fn window(
    kind: &'static Kind,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (scope, tenancy) = require_for_kind(&req, kind, kind.grant)?;
    let (window, query) = window_of(&req, state.public_url.as_deref(), kind.path)?;
    let format = negotiate_format(&req, query.format.as_deref())?;
    let mut selection = kind.parse_filters(&query.pairs, scope.has(Grant::Identities))?;
    state.restrict(&mut selection, &tenancy)?;
    let link_query = kind.link_query(query.format.as_ref().map(|_| format.as_str()), &selection);
    let links = window
        .links_under(
            &base_url(&req, state.public_url.as_deref()),
            kind.path,
            &link_query,
        )
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let mut response = ok(
        format,
        &format!("{}.csv", window.file_stem_for(kind.file_name)),
    );
    let mut link = link_header(&links);
    // A caller of one organization gets the tag of its own records'
    // changes (and, for a kind that derives the organization, of the
    // derivation's version); a kind that cannot say gives it none.
    let tagged = match tenancy.only() {
        None => Some(None),
        Some(own) => kind.tags_per_tenant().then_some(Some(own)),
    };
    let feed = feed_state(&state, kind, &window, tagged.flatten()).await?;
    if let Some((changes, made_of)) = &feed {
        let mut url = format!(
            "{}{}?after={changes}",
            base_url(&req, state.public_url.as_deref()),
            crate::core::kind::feed::path(kind),
        );
        if !link_query.is_empty() {
            url.push('&');
            url.push_str(&link_query);
        }
        link = header::HeaderValue::from_str(&format!(
            "{}, <{url}>; rel=\"changes\"",
            link.to_str().unwrap_or_default()
        ))
        .unwrap_or(link);
        // One tag per representation: the window, its filters and format
        // (all in the self link), who sees identities, the coding; for a
        // caller of one organization, of its own records' changes.
        let etag = tagged.is_some().then(|| {
            format!(
                "\"{}\"",
                crate::core::kind::feed::tag(&[
                    links.self_link.as_bytes(),
                    format.as_str().as_bytes(),
                    if scope.has(Grant::Identities) {
                        b"identities"
                    } else {
                        b"pseudonyms"
                    },
                    accepted_coding(&req).unwrap_or("identity").as_bytes(),
                    made_of.as_bytes(),
                ])
            )
        });
        if let Some(etag) = etag {
            if none_match(&req, &etag) {
                let mut not_modified = HttpResponse::NotModified();
                not_modified
                    .insert_header((header::ETAG, etag))
                    .insert_header((header::LINK, link))
                    .insert_header((header::VARY, "Accept, Accept-Encoding"));
                return Ok(not_modified.finish());
            }
            response.insert_header((header::ETAG, etag));
        }
    }
    response.insert_header((header::LINK, link));
    if req.method() == Method::HEAD {
        return Ok(head_only(response));
    }

    let identities = identity_policy(scope, selection.tenant.as_deref(), &state);
    let tally = stream_tally(&req, &state, kind.name, format.as_str());
    let output = Output {
        format,
        head: JsonHead::Links(&links),
        identities: &identities,
        guard: state.options.csv_formula_guard,
        zone: window.zone(),
    };
    if selection.has_pseudonyms() {
        lookup_ready(&req, &state, kind).await?;
    }
    let listing = Listing::window(&window, selection);
    // After the feed's cursor and the lookup: a replica that has all they saw.
    let pool = state.window_pool().await;
    let stream = records::open(pool, kind, &listing, output, tally).await?;
    Ok(streamed(&req, &state, response, stream))
}

/// What the window says of the kind's change feed (issue 23): the cursor
/// of the feed's end now, where a poller that read this window follows
/// the feed (read before the window's query, so every record committed
/// after the window's snapshot comes after it), and what the window's
/// `ETag` is made of (the summary's stamps covering it, changes not yet
/// summarised, the kind's deletions, and for windows that may hold a span
/// still open, the present second). `None` when the kind's feed is not
/// installed.
async fn feed_state(
    state: &AppState,
    kind: &'static Kind,
    window: &Window,
    tenant: Option<&str>,
) -> Result<Option<(String, String)>, ApiError> {
    if !state.options.changes.check(&state.pool, kind).await? {
        return Ok(None);
    }
    let client = state.pool.get().await.map_err(crate::db::DbError::from)?;
    let (lower, upper) = window.bounds();
    let now = crate::db::changes::window_state(&client, kind, lower, upper, tenant).await?;
    let cursor = crate::core::kind::feed::Cursor {
        epoch: now.epoch,
        position: now.end,
    };
    let show = |p: Option<crate::core::kind::feed::Position>| {
        p.map_or_else(|| "-".to_owned(), |p| format!("{}.{}", p.xid, p.id))
    };
    let mut made_of = format!("{}:{}:{}", now.epoch, show(now.stamp), show(now.pending));
    if now.live {
        made_of.push_str(&format!(":{}", Utc::now().timestamp()));
    }
    // How records map to organizations changes what a window holds for an
    // organization (or under `tenant=`): part of every tag of such a kind.
    if let Some(version) = now.tenancy {
        made_of.push_str(&format!(":t{version}"));
    }
    if let Some(snapshot) = &now.behind {
        made_of.push(':');
        made_of.push_str(snapshot);
    }
    Ok(Some((cursor.encode(kind), made_of)))
}

/// The request's `Accept-Encoding` headers, joined.
fn offered_codings(req: &HttpRequest) -> String {
    let mut offered = String::new();
    for value in req.headers().get_all(header::ACCEPT_ENCODING) {
        if let Ok(text) = value.to_str() {
            offered.push_str(text);
            offered.push(',');
        }
    }
    offered
}

/// The content coding [`streamed`] chooses for the response.
fn accepted_coding(req: &HttpRequest) -> Option<&'static str> {
    crate::core::negotiate::fastest_coding(&offered_codings(req))
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110
/// 13.1.2), or is `*`.
fn none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Before a lookup by pseudonym in `kind`: lets the identity directory
/// catch up with rows others wrote (at most a second); when it may still
/// miss some, the response says so (`X-Lookup-Incomplete`).
pub async fn lookup_ready(
    req: &HttpRequest,
    state: &AppState,
    kind: &Kind,
) -> Result<(), ApiError> {
    let complete = crate::db::directory::ready_for_lookup(
        &state.pool,
        &state.pseudonymiser,
        kind,
        &state.options.directory_progress,
        crate::db::directory::LOOKUP_WAIT,
    )
    .await?;
    if !complete {
        super::telemetry::mark_lookup_incomplete(req);
    }
    Ok(())
}

/// The window a `…/{period}[/{datetime}][?sort=…][&tz=…]` request names
/// (the latest complete one without a datetime), and its query parameters.
/// `path` is the resource's (before `/{period}`), for the links of an
/// ambiguous local time's error.
pub fn window_of(
    req: &HttpRequest,
    public_url: Option<&str>,
    path: &str,
) -> Result<(Window, ListingQuery), ApiError> {
    let period: Period = req
        .match_info()
        .get("period")
        .unwrap_or_default()
        .parse()
        .map_err(|e: crate::core::window::InvalidPeriod| ApiError::InvalidRequest(e.to_string()))?;
    let query = ListingQuery::parse(req.query_string())?;
    let zone = zone_of(&query)?;
    let direction = Direction::from_sort(query.sort.as_deref());
    let window = match req.match_info().get("datetime") {
        Some(datetime) => Window::parse_in(period, datetime, direction, zone.as_ref()),
        None => Window::latest_in(period, direction, Utc::now(), zone.as_ref()),
    }
    .map_err(|error| match error {
        WindowError::Ambiguous { earlier, later } => {
            // Both windows the local time may mean, as links.
            let base = base_url(req, public_url);
            let link = |t| {
                Window::at(period, direction, t, zone.as_ref())
                    .and_then(|w| w.links_under(&base, path, ""))
                    .map(|links| links.self_link)
                    .unwrap_or_default()
            };
            ApiError::InvalidRequest(format!(
                "{error} It is either {} or {}.",
                link(earlier),
                link(later)
            ))
        }
        error => ApiError::InvalidRequest(error.to_string()),
    })?;
    Ok((window, query))
}

/// The reader's zone, `tz` (at most once); `None` without it.
pub fn zone_of(query: &ListingQuery) -> Result<Option<Zone>, ApiError> {
    query
        .single("tz")?
        .map(|name| Zone::parse(name).map_err(|e| ApiError::InvalidRequest(e.to_string())))
        .transpose()
}

/// Refuses `tz` (`given`) where figures are by UTC day (the usage rollups).
pub fn refuse_zone(given: Option<&str>) -> Result<(), ApiError> {
    if given.is_some() {
        return Err(ApiError::InvalidRequest(
            "The parameter `tz` is not accepted here: the usage rollups count users \
             per UTC day, so these figures exist for UTC days and months only. \
             Read the authentication events with `tz` for local days."
                .into(),
        ));
    }
    Ok(())
}

/// The answer to a HEAD of a streamed resource: the GET's status and
/// headers (chunked, like the GET), no body, and no query started.
/// The response with a streamed body of records: compressed here, on the
/// worker that encodes the rows and at the configured level, when the
/// client's fastest acceptable coding (`core::negotiate::fastest_coding`)
/// is gzip or zstd; uncompressed when it is br
/// (`core::compress::STREAMED_UNCOMPRESSED`) unless the client refuses an
/// uncompressed body; any other coding is left to the compression layer.
pub fn streamed(
    req: &HttpRequest,
    state: &AppState,
    mut response: HttpResponseBuilder,
    stream: crate::db::records::RecordStream,
) -> HttpResponse {
    let offered = offered_codings(req);
    let name = crate::core::negotiate::fastest_coding(&offered);
    if name.is_some_and(|name| crate::core::compress::STREAMED_UNCOMPRESSED.contains(&name))
        && !crate::core::negotiate::identity_refused(&offered)
    {
        // `identity` keeps the compression layer off this body; the
        // `fastest_coding` middleware takes the header away again.
        response
            .insert_header((header::CONTENT_ENCODING, "identity"))
            .append_header((header::VARY, "Accept-Encoding"));
        return response.streaming(stream);
    }
    let coding = name.and_then(crate::core::compress::Coding::from_name);
    let compressor = coding.and_then(|coding| {
        crate::core::compress::Compressor::new(coding, state.options.compression)
            .ok()
            .map(|c| (coding, c))
    });
    match compressor {
        None => response.streaming(stream),
        Some((coding, compressor)) => {
            response
                .insert_header((header::CONTENT_ENCODING, coding.name()))
                .append_header((header::VARY, "Accept-Encoding"));
            response.streaming(Compressed::new(stream, compressor))
        }
    }
}

/// Chunks a [`Compressed`] body may have at its compressor at once: enough
/// that encoding and compressing overlap, few enough that memory stays small.
const COMPRESS_AHEAD: usize = 8;

/// What the compressor thread of one body is asked to do.
enum Job {
    Chunk(bytes::Bytes),
    Finish,
}

/// A record stream, compressed chunk by chunk on a thread of the blocking
/// pool while the worker encodes the next chunk: on two cores, compressing
/// in line with encoding left one of them idle. Backpressure is unchanged:
/// at most [`COMPRESS_AHEAD`] chunks are out, so a slow client still slows
/// the database down. Dropping the body ends the thread.
struct Compressed {
    inner: crate::db::records::RecordStream,
    jobs: Option<tokio::sync::mpsc::Sender<Job>>,
    results: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    /// Chunks (and the finish) sent and not yet answered.
    in_flight: usize,
    /// The record stream failed: sent once the compressed bytes before it are out.
    error: Option<crate::db::records::StreamError>,
    /// The compressed stream's end arrived.
    finished: bool,
}

impl Compressed {
    fn new(
        inner: crate::db::records::RecordStream,
        mut compressor: crate::core::compress::Compressor,
    ) -> Compressed {
        let (jobs, mut job_queue) = tokio::sync::mpsc::channel::<Job>(COMPRESS_AHEAD);
        let (answers, results) = tokio::sync::mpsc::channel(COMPRESS_AHEAD);
        tokio::task::spawn_blocking(move || {
            while let Some(job) = job_queue.blocking_recv() {
                let out = match job {
                    Job::Chunk(chunk) => compressor.push(&chunk),
                    Job::Finish => {
                        let _ = answers.blocking_send(compressor.finish());
                        return;
                    }
                };
                if answers.blocking_send(out).is_err() {
                    return; // the body was dropped
                }
            }
        });
        Compressed {
            inner,
            jobs: Some(jobs),
            results,
            in_flight: 0,
            error: None,
            finished: false,
        }
    }
}

impl futures_util::Stream for Compressed {
    type Item = Result<bytes::Bytes, Box<dyn std::error::Error>>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            // Compressed bytes first: they are what the client waits for.
            match this.results.poll_recv(cx) {
                Poll::Ready(Some(Ok(out))) => {
                    this.in_flight -= 1;
                    if this.jobs.is_none() && this.in_flight == 0 && this.error.is_none() {
                        this.finished = true; // that was the finish
                    }
                    if out.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(out)));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(None) => {
                    // The thread ended without finishing the stream.
                    this.finished = true;
                    return Poll::Ready(Some(Err("the compressor stopped".into())));
                }
                Poll::Pending => {}
            }
            if this.in_flight > 0 && (this.jobs.is_none() || this.in_flight >= COMPRESS_AHEAD) {
                return Poll::Pending; // woken by the next answer
            }
            if let Some(error) = this.error.take() {
                // Everything before the failure is out: abort the body.
                this.finished = true;
                return Poll::Ready(Some(Err(Box::new(error))));
            }
            let Some(jobs) = this.jobs.as_ref() else {
                return Poll::Ready(None);
            };
            let job = match std::pin::Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => Job::Chunk(chunk),
                Poll::Ready(Some(Err(e))) => {
                    this.jobs = None;
                    this.error = Some(e);
                    continue;
                }
                Poll::Ready(None) => Job::Finish,
            };
            let finish = matches!(job, Job::Finish);
            // Room by construction: fewer than COMPRESS_AHEAD are in flight.
            if jobs.try_send(job).is_err() {
                this.finished = true;
                return Poll::Ready(Some(Err("the compressor stopped".into())));
            }
            this.in_flight += 1;
            if finish {
                this.jobs = None;
            }
        }
    }
}

pub fn head_only(mut response: HttpResponseBuilder) -> HttpResponse {
    response.streaming(futures_util::stream::empty::<
        Result<bytes::Bytes, std::convert::Infallible>,
    >())
}

/// A 200 with the negotiated type, `Vary: Accept`, and for CSV an
/// attachment named `file_name` (made of `[A-Za-z0-9._:-]`).
pub fn ok(format: OutputFormat, file_name: &str) -> HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response
        .content_type(format.content_type())
        .insert_header((header::VARY, "Accept"));
    if format == OutputFormat::Csv {
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
            response.insert_header((header::CONTENT_DISPOSITION, value));
        }
    }
    response
}

/// Chooses the representation from `format=` or the `Accept` headers.
pub fn negotiate_format(req: &HttpRequest, format: Option<&str>) -> Result<OutputFormat, ApiError> {
    let mut accept = Vec::new();
    for value in req.headers().get_all(header::ACCEPT) {
        // A header with bytes outside visible ASCII cannot name our types.
        accept.push(value.to_str().unwrap_or("invalid/invalid"));
    }
    negotiate(format, &accept).map_err(|e| match e {
        NegotiationError::InvalidFormatParam => ApiError::InvalidRequest(e.to_string()),
        NegotiationError::NotAcceptable => ApiError::NotAcceptable(e.to_string()),
    })
}

/// The base of every link: `ACCTSTREAM_PUBLIC_URL` when set, else `http://`
/// and the request's `Host` (when it is a plausible host[:port]), else the
/// address the server listens on.
pub fn base_url(req: &HttpRequest, public_url: Option<&str>) -> String {
    if let Some(url) = public_url {
        return url.to_owned();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_plausible_host(h))
        .map(str::to_owned)
        .unwrap_or_else(|| req.app_config().host().to_owned());
    format!("http://{host}")
}

fn is_plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

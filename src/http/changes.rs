//! `GET <kind path>/changes` for every kind in the registry (issue 23): the
//! kind's records in the order their versions were committed, a page at a
//! time from a cursor, as JSON, CSV or NDJSON (see
//! [`crate::core::kind::feed`]).

use actix_web::{
    http::{header, Method},
    web, HttpRequest, HttpResponse,
};

use super::{
    auth::require_for_kind,
    error::ApiError,
    listing::{
        base_url, head_only, identity_policy, lookup_ready, negotiate_format, ok, streamed,
        ListingQuery,
    },
    resource::{get_or_head, get_resource},
    telemetry::stream_tally,
    AppState,
};
use crate::{
    core::{
        encode::JsonHead,
        kind::{
            feed::{self, Cursor, FeedPage, Position},
            Kind,
        },
        paging::{link, Place},
        scope::Grant,
    },
    db::{changes, records::Output},
    registry::Registry,
};

/// Records per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: i64 = 1000;
/// The most records a page may hold.
pub const MAX_LIMIT: i64 = 10_000;

/// Registers the feed of every kind (before the windows: `changes` is not
/// a `{period}`).
pub fn configure(cfg: &mut web::ServiceConfig, kinds: Registry) {
    for kind in kinds.kinds() {
        cfg.service(get_resource(
            &feed::path(kind),
            get_or_head()
                .to(move |req: HttpRequest, state: web::Data<AppState>| page(kind, req, state)),
        ));
    }
}

/// Where a request starts reading.
enum After {
    /// The oldest retained record.
    Start,
    /// The end of the feed now (an empty page).
    Latest,
    /// After a cursor.
    Cursor(Cursor),
}

/// One page of `kind`'s feed.
async fn page(
    kind: &'static Kind,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (scope, tenancy) = require_for_kind(&req, kind, kind.grant)?;
    let query = ListingQuery::parse(req.query_string())?;
    let events = super::events::wanted(&req, query.format.as_deref());
    // An event stream's records are NDJSON lines, each an event's data.
    let format = if events {
        crate::core::negotiate::OutputFormat::Ndjson
    } else {
        negotiate_format(&req, query.format.as_deref())?
    };
    let limit = query
        .integer("limit", 1, MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    let after = match (
        events
            .then(|| super::events::resume_from(kind, &req))
            .transpose()?
            .flatten(),
        query.single("after")?,
    ) {
        (Some(cursor), _) => After::Cursor(cursor),
        (None, None) => After::Start,
        (None, Some("latest")) => After::Latest,
        (None, Some(text)) => After::Cursor(
            Cursor::decode(kind, text).map_err(|e| ApiError::InvalidRequest(e.to_string()))?,
        ),
    };
    let mut selection = kind.parse_filters(&query.pairs, scope.has(Grant::Identities))?;
    state.restrict(&mut selection, &tenancy)?;
    let zone = super::listing::zone_of(&query)?;
    if !state.options.changes.check(&state.pool, kind).await? {
        return Err(not_tracked(kind));
    }
    if selection.has_pseudonyms() {
        lookup_ready(&req, &state, kind).await?;
    }

    let base = base_url(&req, state.public_url.as_deref());
    let path = feed::path(kind);
    let self_link = match req.query_string() {
        "" => format!("{base}{path}"),
        query => format!("{base}{path}?{query}"),
    };
    let page = FeedPage { selection };
    let from = match &after {
        After::Cursor(cursor) => cursor.position,
        _ => Position::START,
    };
    // Rows are read (in the head's round trip) only for a page that shows them.
    let rows = !events && req.method() != Method::HEAD && !matches!(after, After::Latest);
    let begun = changes::begin(&state.pool, kind, &page, from, limit, rows).await?;
    let head = begun.head;
    let epoch = head.deletions.epoch;
    // The feed from its oldest retained record: where to start again.
    let first = link(
        &base,
        &path,
        req.query_string(),
        ("after", None),
        Place::First,
    );
    if let After::Cursor(cursor) = &after {
        if !feed::plausible(cursor, &head.deletions, head.end()) {
            return Err(ApiError::InvalidRequest(
                feed::CursorError::Malformed.to_string(),
            ));
        }
        if feed::overtaken(cursor, &head.deletions) {
            return Err(ApiError::Gone {
                description: format!(
                    "Records after this cursor were deleted by retention before they were \
                     read: start again from the first retained record, {first}"
                ),
                first,
            });
        }
    }
    if events {
        let start = match &after {
            After::Start => Cursor {
                epoch,
                position: Position::START,
            },
            After::Latest => Cursor {
                epoch,
                position: head.end(),
            },
            After::Cursor(cursor) => *cursor,
        };
        if req.method() == Method::HEAD {
            return Ok(head_only(
                HttpResponse::Ok().content_type("text/event-stream").take(),
            ));
        }
        let tally = stream_tally(&req, &state, kind.name, "event-stream");
        let identities = identity_policy(scope, page.selection.tenant.as_deref(), &state);
        return Ok(super::events::respond(
            kind,
            state.clone(),
            page,
            identities,
            zone,
            start,
            tally,
            first,
        ));
    }
    // Where the next page starts: after this page's last record; for an
    // empty page the same place (renewed in the present epoch), or the
    // end of the feed for `after=latest`.
    let next_position = match (&after, head.last) {
        (After::Latest, _) => Some(head.end()),
        (_, Some(last)) => Some(last),
        (After::Cursor(cursor), None) => Some(cursor.position),
        (After::Start, None) => None,
    };
    let next = match next_position {
        Some(position) => {
            let cursor = Cursor { epoch, position };
            link(
                &base,
                &path,
                req.query_string(),
                ("after", Some(&cursor.encode(kind))),
                Place::First,
            )
        }
        None => self_link.clone(),
    };

    let mut response = ok(format, &format!("{}-changes.csv", kind.file_name));
    if let Ok(value) = header::HeaderValue::from_str(&format!(
        "<{self_link}>; rel=\"self\", <{next}>; rel=\"next\""
    )) {
        response.insert_header((header::LINK, value));
    }
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if req.method() == Method::HEAD {
        return Ok(head_only(response));
    }
    let identities = identity_policy(scope, page.selection.tenant.as_deref(), &state);
    let tally = stream_tally(&req, &state, kind.name, format.as_str());
    let output = Output {
        format,
        head: JsonHead::Feed {
            self_link: &self_link,
            next: &next,
        },
        identities: &identities,
        guard: state.options.csv_formula_guard,
        zone: zone.as_ref(),
    };
    let stream = changes::open(begun, kind, feed::with_position(kind), epoch, output, tally);
    Ok(streamed(&req, &state, response, stream))
}

/// The answer for a kind whose positions are not kept (a table of another
/// program acctstream did not create, before an operator opted in).
pub fn not_tracked(kind: &Kind) -> ApiError {
    ApiError::Conflict(format!(
        "The change feed of {} is not installed on this database: its table `{}` belongs \
         to another program, and acctstream adds a trigger to it only when an operator \
         runs `acctstream migrate --track-changes`.",
        kind.name, kind.table
    ))
}

//! `GET <kind path>/counts/{period}[/{datetime}]` for every kind in the
//! registry (issue 26): counts over one window, by a column, by time
//! bucket, with sums (see [`crate::core::counts`]), as JSON, CSV or
//! NDJSON. What the dashboard's charts read; any client may.

use actix_web::{
    http::{header, Method},
    web, HttpRequest, HttpResponse,
};

use super::{
    auth::require_for_kind,
    error::ApiError,
    listing::{base_url, head_only, lookup_ready, negotiate_format, ok, window_of},
    paging::link_header,
    resource::{get_or_head, get_resource},
    AppState,
};
use crate::{
    core::{
        counts::{Counts, CountsBody, CountsError},
        identity::IdentityWriter,
        kind::{ColumnType, Kind, Listing},
        scope::Grant,
    },
    registry::Registry,
};

/// The path of a kind's counts (followed by `/{period}[/{datetime}]`).
pub fn path(kind: &Kind) -> String {
    format!("{}/counts", kind.path)
}

/// Registers the counts of every kind (before the windows: `counts` is not
/// a `{period}`).
pub fn configure(cfg: &mut web::ServiceConfig, kinds: Registry) {
    for kind in kinds.kinds() {
        for template in ["{period}", "{period}/{datetime}"] {
            cfg.service(get_resource(
                &format!("{}/{template}", path(kind)),
                get_or_head().to(move |req: HttpRequest, state: web::Data<AppState>| {
                    counts(kind, req, state)
                }),
            ));
        }
    }
}

impl From<CountsError> for ApiError {
    fn from(error: CountsError) -> ApiError {
        ApiError::InvalidRequest(error.to_string())
    }
}

async fn counts(
    kind: &'static Kind,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (scope, tenancy) = require_for_kind(&req, kind, kind.grant)?;
    let base = path(kind);
    let (window, query) = window_of(&req, state.public_url.as_deref(), &base)?;
    let format = negotiate_format(&req, query.format.as_deref())?;
    let (start, end) = window.bounds();
    let counts = Counts::parse(kind, &query.pairs, end - start)?;
    let mut selection = kind.parse_filters(&query.pairs, scope.has(Grant::Identities))?;
    state.restrict(&mut selection, &tenancy)?;
    let mut link_query = counts.link_query(kind);
    let filters = kind.link_query(query.format.as_ref().map(|_| format.as_str()), &selection);
    if !filters.is_empty() {
        if !link_query.is_empty() {
            link_query.push('&');
        }
        link_query.push_str(&filters);
    }
    let links = window
        .links_under(
            &base_url(&req, state.public_url.as_deref()),
            &base,
            &link_query,
        )
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let mut response = ok(
        format,
        &format!(
            "{}.csv",
            window.file_stem_for(&format!("{}-counts", kind.file_name))
        ),
    );
    response.insert_header((header::LINK, link_header(&links)));
    if req.method() == Method::HEAD {
        return Ok(head_only(response));
    }
    if selection.has_pseudonyms() {
        lookup_ready(&req, &state, kind).await?;
    }
    let listing = Listing::window(&window, selection);
    let zone = window.zone().map_or("UTC", |zone| zone.name()).to_owned();
    let mut rows =
        crate::db::records::counts(state.read_pool().await, kind, &listing, &counts, &zone).await?;
    // The values counted by are shown as the reader may see them: an
    // identity as its pseudonym (with the key of the window's start)
    // unless the token holds `identities`.
    if let Some(ColumnType::Identity(ty)) = counts.by.map(|by| kind.columns[by].ty) {
        let policy =
            super::listing::identity_policy(scope, listing.selection.tenant.as_deref(), &state);
        let mut writer = IdentityWriter::new(&policy);
        writer.at(start);
        for row in &mut rows {
            if let Some(raw) = &row.key {
                row.key = Some(writer.show(ty, raw).as_str().to_owned());
            }
        }
    }
    let body = CountsBody {
        kind,
        counts: &counts,
        links: &links,
        start,
        end,
        zone: window.zone(),
        rows: &rows,
    };
    Ok(response.body(body.encode(format, state.options.csv_formula_guard)))
}

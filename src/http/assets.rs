//! Files compiled into the binary and served as they are: Swagger UI's
//! (`docs.rs`) and the dashboard's (`dashboard.rs`).

use actix_web::{
    http::header::{self, CacheControl, CacheDirective},
    HttpRequest, HttpResponse,
};

use super::error::ApiError;

/// How long browsers may cache a vendored file.
const MAX_AGE: u32 = 7 * 24 * 3600;

/// One embedded file.
pub struct Asset {
    /// Its name in the URL (`…/{asset}`).
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// An [`Asset`] from `static/<dir>/<name>`.
macro_rules! embedded {
    ($dir:literal, $name:literal, $type:literal) => {
        $crate::http::assets::Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../static/", $dir, "/", $name)),
        }
    };
}
pub(crate) use embedded;

/// `Cache-Control: no-cache`: files that change with the service.
pub fn no_cache() -> CacheControl {
    CacheControl(vec![CacheDirective::NoCache])
}

/// The file of `assets` the request's `{asset}` names (404 for any other),
/// cached for a week unless `fresh` says it changes with the service.
pub fn serve(
    req: &HttpRequest,
    assets: &[Asset],
    fresh: fn(&str) -> bool,
) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("asset").unwrap_or_default();
    let asset = assets
        .iter()
        .find(|a| a.name == name)
        .ok_or(ApiError::NotFound)?;
    let cache = if fresh(asset.name) {
        no_cache()
    } else {
        CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(MAX_AGE),
        ])
    };
    Ok(HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header(cache)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(asset.body))
}

//! The `Link` headers of pages and windows, and reading a cursor parameter
//! (the cursors themselves are `core::paging`'s).

use actix_web::{
    http::header::{self, HeaderValue},
    HttpResponseBuilder,
};

use super::error::ApiError;
use crate::core::window::NavigationLinks;

/// The parameter `cursor` (its value, if given) decoded by `decode` (a
/// cursor of `core::paging`); a 400 when it is not a cursor this service
/// wrote.
pub fn cursor<T>(
    value: Option<&str>,
    decode: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|text| {
            decode(text).ok_or_else(|| {
                ApiError::InvalidRequest(
                    "The parameter `cursor` is not a cursor this service gave out.".into(),
                )
            })
        })
        .transpose()
}

/// `Link: <…>; rel="prev", <…>; rel="next"` for the pages that exist.
pub fn page_links(response: &mut HttpResponseBuilder, previous: Option<&str>, next: Option<&str>) {
    let links: Vec<String> = [("prev", previous), ("next", next)]
        .into_iter()
        .filter_map(|(rel, url)| url.map(|u| format!("<{u}>; rel=\"{rel}\"")))
        .collect();
    if !links.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&links.join(", ")) {
            response.insert_header((header::LINK, value));
        }
    }
}

/// The RFC 8288 `Link` header with the three navigation links.
pub fn link_header(links: &NavigationLinks) -> HeaderValue {
    let value = format!(
        "<{}>; rel=\"self\", <{}>; rel=\"prev\", <{}>; rel=\"next\"",
        links.self_link, links.prev, links.next
    );
    // Links are built from a checked host or the configured URL plus our own
    // path and percent-encoded query, all visible ASCII; fall back to nothing
    // rather than panic.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

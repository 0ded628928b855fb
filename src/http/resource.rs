//! Registering a resource: the routes of a read-only (GET/HEAD) or ingest
//! (POST) resource, with `OPTIONS` and 405 answered alike everywhere.

use actix_web::{guard, web, HttpResponse, Route};

use super::error::ApiError;

/// A route answering GET and HEAD (a HEAD gets the GET's status and headers
/// and no body).
pub fn get_or_head() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The methods of a read-only resource.
pub const GET_ALLOW: &str = "GET, HEAD, OPTIONS";
/// The methods of an ingest resource.
pub const POST_ALLOW: &str = "POST, OPTIONS";

/// A resource at `path` answering with `handler` (made with
/// [`get_or_head`]), `OPTIONS` with 204 and `Allow`, and 405
/// `method_not_allowed` (with `Allow`) to any other method.
pub fn get_resource(path: &str, handler: Route) -> actix_web::Resource {
    web::resource(path)
        .route(handler)
        .route(
            web::route()
                .guard(guard::Options())
                .to(|| options(GET_ALLOW)),
        )
        .default_service(web::to(|| not_allowed(GET_ALLOW)))
}

/// The answer to `OPTIONS` (without CORS preflight headers): the methods.
pub async fn options(allow: &'static str) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((actix_web::http::header::ALLOW, allow))
        .finish()
}

/// The answer for a known path with an unsupported method.
pub async fn not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow })
}

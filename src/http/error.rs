//! The one error type of the HTTP layer. Every status code an endpoint can
//! answer with before streaming starts is decided here, and every such
//! answer is an `ErrorResponse` JSON body:
//! `{"error": "<code>", "error_description": "<text for a human>"}`.
//!
//! 500s are opaque to the client and logged with their cause; an exhausted
//! pool or an unreachable database is a 503, not a 500.

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{header, StatusCode},
    middleware::Next,
    HttpResponse, ResponseError,
};
use serde::Serialize;

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorResponse {
    /// A machine-readable code (OAuth 2.0 style): `invalid_request`,
    /// `invalid_token`, `insufficient_scope`, `not_found`,
    /// `gone`, `conflict`, `method_not_allowed`, `not_acceptable`, `unsupported_media_type`,
    /// `payload_too_large`, `server_error` or `temporarily_unavailable`.
    pub error: String,
    /// A sentence for a human.
    pub error_description: String,
}

/// Everything that can go wrong before the first byte of a response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the text says how.
    #[error("{0}")]
    InvalidRequest(String),
    /// No bearer token was presented.
    #[error("A bearer token is required: send 'Authorization: Bearer <token>'.")]
    MissingToken,
    /// The bearer token is not one we know.
    #[error("The bearer token is not valid.")]
    InvalidToken,
    /// The bearer token is valid but may not do this (e.g. a read-only
    /// token used to ingest).
    #[error("This bearer token may only read; ingesting events needs a token with the read+write scope.")]
    InsufficientScope,
    /// The bearer token is valid but lacks a scope the request needs; the
    /// text names it.
    #[error("{0}")]
    Forbidden(String),
    /// An OAuth2 access token was refused; the text says why (never the
    /// token).
    #[error("The bearer token is not valid: {0}.")]
    RejectedToken(String),
    /// The token lacks the named scope.
    #[error("This token lacks the scope this request needs: {0}.")]
    ScopeNeeded(String),
    /// The OAuth2 issuer's keys cannot be had right now.
    #[error("The token issuer's signing keys cannot be fetched right now; try again shortly.")]
    KeysUnavailable,
    /// The OAuth2 issuer's sign-in endpoints cannot be discovered right now
    /// (the dashboard's sign-in, issue 26).
    #[error(
        "The token issuer cannot be reached right now; use an API token, or try again shortly."
    )]
    IssuerUnavailable,
    /// The client is over one of its limits.
    #[error("{what}")]
    TooManyRequests {
        /// Seconds to wait (`Retry-After`).
        retry_after: u64,
        /// Which limit, for a human.
        what: String,
    },
    /// No such resource.
    #[error("No resource at this path. See /openapi.yaml for the API.")]
    NotFound,
    /// No such record; the text says which.
    #[error("{0}")]
    Missing(String),
    /// A feed cursor older than what retention kept; `first` is where to
    /// start again.
    #[error("{description}")]
    Gone {
        /// For a human.
        description: String,
        /// The feed's first page.
        first: String,
    },
    /// The resource exists but cannot be served in the database's present
    /// state; the text says what an operator does about it.
    #[error("{0}")]
    Conflict(String),
    /// The resource exists but not with this method.
    #[error("This resource supports only {allow}.")]
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: &'static str,
    },
    /// No representation the client accepts.
    #[error("{0}")]
    NotAcceptable(String),
    /// The request body's `Content-Type` is not one this resource reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The database cannot be reached or has no free connection.
    #[error("The database is temporarily unavailable; try again shortly.")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// `ACCTSTREAM_AUDIT_REQUIRED` is on and the audit trail's buffer is
    /// full: the request is refused rather than served unaudited.
    #[error("The access audit trail cannot record this request right now; try again shortly.")]
    AuditUnavailable,
    /// A bug or an unexpected database failure. Logged, never shown.
    #[error("An internal error occurred.")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// The OAuth-style code sent in `error`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::MissingToken | ApiError::InvalidToken | ApiError::RejectedToken(_) => {
                "invalid_token"
            }
            ApiError::InsufficientScope | ApiError::Forbidden(_) | ApiError::ScopeNeeded(_) => {
                "insufficient_scope"
            }
            ApiError::KeysUnavailable | ApiError::IssuerUnavailable => "temporarily_unavailable",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::NotFound | ApiError::Missing(_) => "not_found",
            ApiError::Gone { .. } => "gone",
            ApiError::Conflict(_) => "conflict",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::NotAcceptable(_) => "not_acceptable",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unavailable(_) | ApiError::AuditUnavailable => "temporarily_unavailable",
            ApiError::Internal(_) => "server_error",
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    /// A database failure before the first byte: 503 when the database is
    /// out of reach or the pool is exhausted, else an opaque 500.
    fn from(error: crate::db::DbError) -> ApiError {
        if error.is_unavailable() {
            ApiError::Unavailable(Box::new(error))
        } else {
            ApiError::Internal(Box::new(error))
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::MissingToken | ApiError::InvalidToken | ApiError::RejectedToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::InsufficientScope | ApiError::Forbidden(_) | ApiError::ScopeNeeded(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::KeysUnavailable | ApiError::IssuerUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound | ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) | ApiError::AuditUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, source = ?std::error::Error::source(&**cause), "internal error")
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable")
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        match self {
            ApiError::MissingToken => {
                response.insert_header((header::WWW_AUTHENTICATE, r#"Bearer realm="acctstream""#));
            }
            ApiError::InvalidToken => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    r#"Bearer realm="acctstream", error="invalid_token", error_description="The bearer token is not valid.""#,
                ));
            }
            ApiError::InsufficientScope => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    r#"Bearer realm="acctstream", error="insufficient_scope", error_description="Ingesting events needs a token with the read+write scope.""#,
                ));
            }
            ApiError::Forbidden(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    r#"Bearer realm="acctstream", error="insufficient_scope", error_description="Raw identities need a token with the identities scope.""#,
                ));
            }
            ApiError::RejectedToken(why) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        r#"Bearer realm="acctstream", error="invalid_token", error_description="{}""#,
                        quotable(why)
                    ),
                ));
            }
            ApiError::ScopeNeeded(scope) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        r#"Bearer realm="acctstream", error="insufficient_scope", scope="{}", error_description="This request needs the scope {}.""#,
                        quotable(scope),
                        quotable(scope)
                    ),
                ));
            }
            ApiError::KeysUnavailable | ApiError::IssuerUnavailable => {
                response.insert_header((header::RETRY_AFTER, "10"));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, *allow));
            }
            ApiError::Gone { first, .. } => {
                if let Ok(value) =
                    header::HeaderValue::from_str(&format!("<{first}>; rel=\"first\""))
                {
                    response.insert_header((header::LINK, value));
                }
            }
            ApiError::Unavailable(_) | ApiError::AuditUnavailable => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            _ => {}
        }
        response.json(ErrorResponse {
            error: self.code().to_owned(),
            error_description: self.to_string(),
        })
    }
}

/// `text` as it may stand between the quotes of a header parameter.
fn quotable(text: &str) -> String {
    text.chars()
        .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
        .collect()
}

/// Middleware: an error answered by another layer than our handlers (the
/// compression middleware's 406 for an `Accept-Encoding` it cannot meet,
/// actix-web's own payload and routing errors) gets the same
/// `ErrorResponse` JSON body as ours, with its status and headers kept.
/// Responses that already are JSON pass untouched.
pub async fn json_error_bodies(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(req).await?;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return Ok(response.map_into_boxed_body());
    }
    let (request, old) = response.into_parts();
    let mut fixed = HttpResponse::build(status);
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_ENCODING
        {
            fixed.append_header((name.clone(), value.clone()));
        }
    }
    fixed.insert_header((header::CACHE_CONTROL, "no-store"));
    let (error, error_description) = describe_status(status);
    let body = fixed.json(ErrorResponse {
        error: error.to_owned(),
        error_description: error_description.to_owned(),
    });
    Ok(ServiceResponse::new(request, body))
}

/// The `ErrorResponse` of a status some other layer answered with.
fn describe_status(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::NOT_ACCEPTABLE => (
            "not_acceptable",
            "None of the content codings the request accepts is available: responses are sent as identity, gzip, br or zstd (Accept-Encoding).",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The request body or its headers are larger than the service accepts.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "The request body's Content-Type or Content-Encoding is not supported.",
        ),
        StatusCode::NOT_FOUND => (
            "not_found",
            "No resource at this path. See /openapi.yaml for the API.",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This resource does not support this method.",
        ),
        StatusCode::UNAUTHORIZED => ("invalid_token", "A valid bearer token is required."),
        StatusCode::FORBIDDEN => ("insufficient_scope", "The bearer token may not do this."),
        StatusCode::SERVICE_UNAVAILABLE => (
            "temporarily_unavailable",
            "The service is temporarily unavailable; try again shortly.",
        ),
        s if s.is_server_error() => ("server_error", "An internal error occurred."),
        _ => (
            "invalid_request",
            "The request is malformed (its headers, path or body could not be read).",
        ),
    }
}

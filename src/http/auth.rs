//! The bearer-token check.

use actix_web::{http::header, HttpRequest};

use super::error::ApiError;
use crate::config::{ApiTokens, Scope};

/// Accepts the request when its `Authorization: Bearer <token>` names a
/// configured token (scheme case-insensitive, RFC 6750). Any scope may read.
pub fn require_token(req: &HttpRequest, tokens: &ApiTokens) -> Result<(), ApiError> {
    authenticate(req, tokens).map(|_| ())
}

/// Like [`require_token`], and says what the token may see.
pub fn require_read(req: &HttpRequest, tokens: &ApiTokens) -> Result<Scope, ApiError> {
    authenticate(req, tokens)
}

/// Accepts the request when its bearer token is configured with the
/// `read+write` scope. A valid read-only token is a 403 `insufficient_scope`;
/// a missing or unknown token is the same 401 as for reading.
pub fn require_write(req: &HttpRequest, tokens: &ApiTokens) -> Result<(), ApiError> {
    if authenticate(req, tokens)?.can_write() {
        Ok(())
    } else {
        Err(ApiError::InsufficientScope)
    }
}

/// The scope of the request's bearer token.
fn authenticate(req: &HttpRequest, tokens: &ApiTokens) -> Result<Scope, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::MissingToken);
    };
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingToken);
    }
    tokens.scope_of(token.trim()).ok_or(ApiError::InvalidToken)
}

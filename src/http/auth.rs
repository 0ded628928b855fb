//! The bearer-token check.

use actix_web::{http::header, HttpRequest};

use super::error::ApiError;
use crate::config::ApiTokens;

/// Accepts the request when its `Authorization: Bearer <token>` names a
/// configured token (scheme case-insensitive, RFC 6750).
pub fn require_token(req: &HttpRequest, tokens: &ApiTokens) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::MissingToken);
    };
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingToken);
    }
    if tokens.allows(token.trim()) {
        Ok(())
    } else {
        Err(ApiError::InvalidToken)
    }
}

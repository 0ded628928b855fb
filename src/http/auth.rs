//! Who is calling, and what they may do: the bearer-token middleware
//! (static tokens and OAuth2 access tokens), the per-client limits, and the
//! checks handlers make.
//!
//! The middleware runs for every `/api/` request: it authenticates the
//! bearer token once (a JWT's key may have to be fetched, so this is async)
//! and leaves the outcome in the request's extensions; handlers then ask
//! [`require_in_tenant`] (or [`require_for_kind`]) with the grant they
//! need, synchronously. An authenticated
//! client is counted against its rate limit and its open streams; the
//! permit of a stream is held by the response body until it is sent or
//! dropped.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    body::{BodySize, BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{self, HeaderMap, HeaderName, HeaderValue},
    middleware::Next,
    web, HttpMessage, HttpRequest, ResponseError,
};
use bytes::Bytes;

use super::{
    error::ApiError,
    jwks::{OAuth, TokenError},
    AppState,
};
use crate::core::{
    jwt::Rejection,
    limits::{Decision, StreamPermit},
    scope::{Grant, Scope},
    tenant::Tenancy,
};

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The static token's label, or the access token's client.
    pub client: String,
    /// What it may do.
    pub scope: Scope,
    /// For an OAuth2 access token: the verifier, whose scope names a 403
    /// gives.
    pub oauth: Option<Arc<OAuth>>,
    /// The organization its token names (`token:read@acme`, or the
    /// access token's tenant claim).
    pub tenant: Option<String>,
}

impl Principal {
    /// The key its limits are counted under (static and OAuth2 clients
    /// never share one).
    fn limit_key(&self) -> String {
        match self.oauth {
            Some(_) => format!("oauth:{}", self.client),
            None => format!("static:{}", self.client),
        }
    }

    /// The organization its requests count against and its accesses are
    /// audited under: its token's, in a deployment with tenants
    /// (`has_tenants`), else the default one.
    pub fn organization(&self, has_tenants: bool) -> &str {
        match &self.tenant {
            Some(tenant) if has_tenants => tenant,
            _ => crate::core::tenant::DEFAULT_TENANT,
        }
    }

    /// The 403 for a request that needs `grant`.
    fn lacks(&self, grant: Grant) -> ApiError {
        match (&self.oauth, grant) {
            (None, Grant::Write) => ApiError::InsufficientScope,
            (None, _) => ApiError::ScopeNeeded(format!("read+{grant}")),
            (Some(oauth), _) => {
                ApiError::ScopeNeeded(oauth.policy().scopes.scope_for(grant).to_owned())
            }
        }
    }
}

/// What authentication found, left in the request's extensions.
#[derive(Clone, Debug)]
pub enum Authenticated {
    /// A known caller.
    Yes(Principal),
    /// No bearer token.
    Missing,
    /// A token that is neither a configured static token nor a JWT we check.
    Unknown,
    /// An access token we refused, and why.
    Rejected(Rejection),
    /// The issuer's keys cannot be had.
    KeysUnavailable,
}

impl Authenticated {
    fn principal(&self) -> Result<&Principal, ApiError> {
        match self {
            Authenticated::Yes(principal) => Ok(principal),
            Authenticated::Missing => Err(ApiError::MissingToken),
            Authenticated::Unknown => Err(ApiError::InvalidToken),
            Authenticated::Rejected(why) => Err(ApiError::RejectedToken(why.to_string())),
            Authenticated::KeysUnavailable => Err(ApiError::KeysUnavailable),
        }
    }
}

/// The caller of `req`, when authenticated.
pub fn principal(req: &HttpRequest) -> Option<Principal> {
    match req.extensions().get::<Authenticated>() {
        Some(Authenticated::Yes(principal)) => Some(principal.clone()),
        _ => None,
    }
}

/// The 403 of a route that does not keep organizations apart (a kind
/// without them), to a caller of one organization.
pub fn not_per_tenant() -> ApiError {
    ApiError::Forbidden(
        "This route does not keep organizations apart yet: it needs a token with the tenants \
         grant (an organization's own records are served by the windows, change feeds and \
         ingest of the kinds that keep organizations apart: see docs/tenants.md)."
            .to_owned(),
    )
}

/// [`require_in_tenant`] for the routes of `kind`: a caller of one
/// organization is refused (403) when the kind does not keep
/// organizations apart.
pub fn require_for_kind(
    req: &HttpRequest,
    kind: &crate::core::kind::Kind,
    grant: Grant,
) -> Result<(Scope, Tenancy), ApiError> {
    let (scope, tenancy) = require_in_tenant(req, grant)?;
    if tenancy.only().is_some() && kind.tenant.is_none() {
        return Err(not_per_tenant());
    }
    Ok((scope, tenancy))
}

/// Accepts a caller holding `grant`, and says what else it may do (see
/// raw identities, …) and whose records it reads and writes (issue 28). A
/// missing or unknown token is a 401; a valid one without the grant a 403
/// naming the scope it lacks.
pub fn require_in_tenant(req: &HttpRequest, grant: Grant) -> Result<(Scope, Tenancy), ApiError> {
    let outcome = outcome(req);
    let principal = outcome.principal()?;
    if !principal.scope.has(grant) {
        return Err(principal.lacks(grant));
    }
    let multi = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.has_tenants());
    Ok((
        principal.scope,
        Tenancy::of(
            multi,
            principal.scope.has(Grant::Tenants),
            principal.tenant.as_deref(),
        ),
    ))
}

/// The middleware's finding, or a static-token check when it did not run.
fn outcome(req: &HttpRequest) -> Authenticated {
    if let Some(found) = req.extensions().get::<Authenticated>() {
        return found.clone();
    }
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => static_token(req.headers(), state),
        None => Authenticated::Missing,
    }
}

/// The bearer token of `headers`: `Err` with the outcome when there is none
/// or it is not a bearer token.
fn bearer(headers: &HeaderMap) -> Result<&str, Authenticated> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(Authenticated::Missing)?;
    let value = value.to_str().map_err(|_| Authenticated::Unknown)?;
    let (scheme, token) = value.split_once(' ').ok_or(Authenticated::Unknown)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Authenticated::Missing);
    }
    Ok(token.trim())
}

fn static_token(headers: &HeaderMap, state: &AppState) -> Authenticated {
    let token = match bearer(headers) {
        Ok(token) => token,
        Err(outcome) => return outcome,
    };
    match state.tokens.lookup(token) {
        Some((scope, label, tenant)) => Authenticated::Yes(Principal {
            client: label.to_owned(),
            scope,
            oauth: None,
            tenant: tenant.map(str::to_owned),
        }),
        None => Authenticated::Unknown,
    }
}

/// Static tokens first (constant time), then, when OAuth2 is configured
/// and the token has a JWT's shape, the access token.
async fn authenticate(headers: &HeaderMap, state: &AppState) -> Authenticated {
    let found = static_token(headers, state);
    let Authenticated::Unknown = found else {
        return found;
    };
    let (Some(oauth), Ok(token)) = (&state.options.oauth, bearer(headers)) else {
        return found;
    };
    if token.split('.').count() != 3 {
        return found;
    }
    match oauth.verify(token).await {
        Ok(verified) => Authenticated::Yes(Principal {
            client: verified.client,
            scope: verified.scope,
            oauth: Some(Arc::clone(oauth)),
            tenant: verified.tenant,
        }),
        Err(TokenError::Rejected(why)) => Authenticated::Rejected(why),
        Err(TokenError::KeysUnavailable) => Authenticated::KeysUnavailable,
    }
}

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn rate_headers(headers: &mut HeaderMap, decision: &Decision) {
    for (name, value) in [
        (&RATELIMIT_LIMIT, u64::from(decision.limit)),
        (&RATELIMIT_REMAINING, u64::from(decision.remaining)),
        (&RATELIMIT_RESET, decision.reset_seconds),
    ] {
        headers.insert(name.clone(), HeaderValue::from(value));
    }
}

/// The middleware function (wrap it with `actix_web::middleware::from_fn`).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let Some(state) = state.filter(|_| req.path().starts_with("/api/")) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let outcome = authenticate(req.headers(), &state).await;
    let key = match &outcome {
        Authenticated::Yes(principal) => Some(principal.limit_key()),
        _ => None,
    };
    // The organization every request of the caller counts against.
    let tenant = match &outcome {
        Authenticated::Yes(principal) => principal.organization(state.has_tenants()).to_owned(),
        _ => String::new(),
    };
    req.extensions_mut().insert(outcome);
    let Some(key) = key else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let limits = &state.options.limits;
    let now = Instant::now();
    let refuse = |req: ServiceRequest, error: ApiError, decision: Option<&Decision>| {
        let mut response = error.error_response();
        if let Some(decision) = decision {
            rate_headers(response.headers_mut(), decision);
        }
        Ok(req.into_response(response))
    };
    let too_many = |decision: &Decision, who: &str| ApiError::TooManyRequests {
        retry_after: decision.reset_seconds,
        what: format!(
            "This {who} has made its {} requests of this window; try again in {} s.",
            decision.limit, decision.reset_seconds
        ),
    };
    let client = limits.rate.as_ref().map(|rate| rate.check(&key, now));
    if let Some(refused) = client.filter(|d| !d.allowed) {
        return refuse(req, too_many(&refused, "client"), Some(&refused));
    }
    // Then its organization's, counted only for requests its own limit let
    // through; the headers tell the nearer of the two limits.
    let organization = limits
        .rate_per_tenant
        .as_ref()
        .map(|rate| rate.check(&tenant, now));
    if let Some(refused) = organization.filter(|d| !d.allowed) {
        return refuse(
            req,
            too_many(&refused, "client's organization"),
            Some(&refused),
        );
    }
    let decision = match (client, organization) {
        (Some(client), Some(org)) if org.remaining < client.remaining => Some(org),
        (None, org) => org,
        (client, _) => client,
    };
    let permit = match &limits.streams {
        None => None,
        Some(streams) => match streams.acquire(&key) {
            Some(permit) => Some(permit),
            None => {
                return refuse(
                    req,
                    ApiError::TooManyRequests {
                        retry_after: 1,
                        what: format!(
                        "This client already has {} responses streaming; wait for one to finish.",
                        streams.max()
                    ),
                    },
                    decision.as_ref(),
                )
            }
        },
    };
    let mut response = next.call(req).await?;
    if let Some(decision) = &decision {
        rate_headers(response.headers_mut(), decision);
    }
    Ok(response
        .map_body(|_, body| PermitBody {
            inner: body.boxed(),
            _permit: permit,
        })
        .map_into_boxed_body())
}

/// A response body holding its client's stream slot until it is done.
struct PermitBody {
    inner: BoxBody,
    _permit: Option<StreamPermit>,
}

impl MessageBody for PermitBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

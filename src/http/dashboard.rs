//! `GET /dashboard/` (issue 26): one page of charts over the public API,
//! served by the service itself with everything it loads (the page, its
//! script and style, and the vendored uPlot under `static/dashboard/`, see
//! its `VENDORED`), compiled into the binary. Nothing is fetched from
//! another origin, and the page's security policy says so; the one
//! exception is the OAuth2 issuer's token endpoint, when the dashboard can
//! sign in there (`ACCTSTREAM_OAUTH_CLIENT_ID`): the page exchanges its
//! authorization code for a token with it, and the policy names it.

use actix_web::{http::header, web, HttpRequest, HttpResponse};

use super::{
    assets::{embedded, no_cache, serve, Asset},
    error::ApiError,
    resource::{get_or_head, get_resource},
    state::AppState,
};

/// The dashboard's security policy: everything from this origin only.
pub const DASHBOARD_CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The policy when the page signs in at an issuer: [`DASHBOARD_CSP`], and
/// the issuer's token endpoint reachable by `fetch`.
fn policy_with_token_endpoint(origin: &str) -> String {
    format!("{DASHBOARD_CSP}; connect-src 'self' {origin}")
}

/// Every file under `/dashboard/`, by name (the page itself at `/dashboard/`).
const ASSETS: &[Asset] = &[
    embedded!(
        "dashboard",
        "dashboard.js",
        "text/javascript; charset=utf-8"
    ),
    embedded!("dashboard", "dashboard.css", "text/css; charset=utf-8"),
    embedded!(
        "dashboard",
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8"
    ),
    embedded!("dashboard", "uPlot.min.css", "text/css; charset=utf-8"),
    embedded!("dashboard", "uPlot.LICENSE", "text/plain; charset=utf-8"),
    embedded!("dashboard", "VENDORED", "text/plain; charset=utf-8"),
];

/// The page.
const INDEX_HTML: &[u8] = include_bytes!("../../static/dashboard/index.html");

/// Registers `/dashboard`, `/dashboard/` and its files.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_resource("/dashboard", get_or_head().to(slash)))
        .service(get_resource("/dashboard/", get_or_head().to(index)))
        .service(get_resource(
            "/dashboard/sign-in.json",
            get_or_head().to(sign_in),
        ))
        .service(get_resource("/dashboard/{asset}", get_or_head().to(asset)));
}

/// The page's relative links need the trailing slash.
async fn slash() -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, "/dashboard/"))
        .finish()
}

async fn index(state: web::Data<AppState>) -> HttpResponse {
    // The page waits at most a second for the issuer's configuration
    // (fetched once, then cached); without it the page still takes a token.
    let details = tokio::time::timeout(super::jwks::REQUEST_WAIT, sign_in_details(&state)).await;
    let policy = match details.ok().flatten() {
        Some(Ok(details)) => details.token_origin().map_or_else(
            || DASHBOARD_CSP.to_owned(),
            |o| policy_with_token_endpoint(&o),
        ),
        _ => DASHBOARD_CSP.to_owned(),
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(no_cache())
        .insert_header((header::CONTENT_SECURITY_POLICY, policy))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(INDEX_HTML)
}

async fn sign_in_details(
    state: &AppState,
) -> Option<Result<std::sync::Arc<super::jwks::SignInDetails>, String>> {
    state.options.oauth.as_ref()?.sign_in().await
}

/// `GET /dashboard/sign-in.json`: `{"signIn": null}` when the dashboard
/// has no client at an issuer, else what it needs to sign in there; 503
/// when the issuer's configuration cannot be had (the page then still takes
/// an API token).
async fn sign_in(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let details = match sign_in_details(&state).await {
        None => None,
        Some(Ok(details)) => Some(details),
        Some(Err(why)) => {
            tracing::warn!(error = %why, "the dashboard's sign-in: the issuer's OpenID configuration");
            return Err(ApiError::IssuerUnavailable);
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header(no_cache())
        .json(serde_json::json!({ "signIn": details.as_deref() })))
}

/// Our own files change with the service; uPlot's only with its version.
async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, ASSETS, |name| name.starts_with("dashboard."))
}

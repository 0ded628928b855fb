//! The demo's tiny OAuth2 issuer: an Ed25519 key kept in the data
//! directory, its OpenID configuration and JWKS served on 127.0.0.1, the
//! authorization code flow with PKCE for the dashboard's sign-in (a consent
//! page that lets anyone at the keyboard pick a name and grants, and a
//! token endpoint), and `acctstream token`, which mints access tokens with
//! that key, so the OAuth2 path works with no SSO at hand.

use std::{
    collections::HashMap,
    io::Write as _,
    net::TcpListener,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{http::header, web, App, HttpResponse, HttpServer};
use base64::Engine as _;
use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey, Header};
use sha2::Digest as _;

/// The audience of the demo's tokens.
pub const AUDIENCE: &str = "acctstream";
/// The dashboard's client id at the demo issuer (a public client: PKCE, no
/// secret).
pub const DASHBOARD_CLIENT: &str = "acctstream-dashboard";
/// How long an authorization code may wait for its exchange.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// Lifetime of the access tokens the token endpoint hands out.
const ACCESS_TOKEN_SECONDS: u64 = 3600;
/// The key id of the demo's key.
const KID: &str = "acctstream-demo-1";
/// File of the PKCS#8 key, in the data directory.
const KEY_FILE: &str = "oauth-issuer.pk8";
/// File holding the URL of the running demo's issuer.
const URL_FILE: &str = "oauth-issuer.url";

/// A problem with the demo issuer.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key is not usable.
    #[error("the demo issuer's key: {0}")]
    Key(String),
    /// The scope text names something that is not a grant.
    #[error("--scope: {0:?} is not one of read, write, identities, audit")]
    Scope(String),
    /// Serving the issuer failed.
    #[error("starting the demo issuer: {0}")]
    Serve(std::io::Error),
}

fn file_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IssuerError {
    let path = path.to_owned();
    move |source| IssuerError::File { what, path, source }
}

/// The issuer's key.
#[derive(Clone)]
pub struct Issuer {
    key: EncodingKey,
    jwks: String,
}

impl Issuer {
    /// Reads the key kept in `data_dir`, creating one the first time.
    pub fn load_or_create(data_dir: &Path) -> Result<Issuer, IssuerError> {
        let path = data_dir.join(KEY_FILE);
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            _ => {
                let document = crate::core::jwt::ed25519_pkcs8().map_err(IssuerError::Key)?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(file_error("cannot write", &path))?;
                file.write_all(&document)
                    .map_err(file_error("cannot write", &path))?;
                document
            }
        };
        let key = EncodingKey::from_ed_der(&pkcs8);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)
            .map_err(|e| IssuerError::Key(e.to_string()))?;
        jwk.common.key_id = Some(KID.to_owned());
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        Ok(Issuer { key, jwks })
    }

    /// The public key set, as the issuer serves it.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// A signed access token.
    pub fn mint(
        &self,
        issuer: &str,
        scopes: &[&str],
        client: &str,
        ttl_seconds: u64,
    ) -> Result<String, IssuerError> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(ttl_seconds).unwrap_or(3600);
        let claims = serde_json::json!({
            "iss": issuer,
            "aud": AUDIENCE,
            "sub": client,
            "client_id": client,
            "scope": scopes.join(" "),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(KID.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| IssuerError::Key(e.to_string()))
    }
}

/// Serves the issuer on 127.0.0.1 (any free port): its URL, and the server
/// to await or stop. The URL is kept in the data directory for
/// `acctstream token`.
pub fn serve(
    issuer: &Issuer,
    data_dir: &Path,
) -> Result<(String, actix_web::dev::Server), IssuerError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(IssuerError::Serve)?;
    let port = listener.local_addr().map_err(IssuerError::Serve)?.port();
    let url = format!("http://127.0.0.1:{port}");
    let discovery = serde_json::json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks.json"),
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": crate::core::scope::Grant::ALL.map(|g| g.name()),
        "id_token_signing_alg_values_supported": ["EdDSA"],
    })
    .to_string();
    let flow = web::Data::new(Flow {
        issuer: issuer.clone(),
        url: url.clone(),
        codes: Arc::new(Mutex::new(HashMap::new())),
    });
    let jwks = issuer.jwks().to_owned();
    let server = HttpServer::new(move || {
        let discovery = discovery.clone();
        let jwks = jwks.clone();
        App::new()
            .app_data(flow.clone())
            .route(
                "/.well-known/openid-configuration",
                web::get().to(move || json(discovery.clone())),
            )
            .route("/jwks.json", web::get().to(move || json(jwks.clone())))
            .route("/authorize", web::get().to(consent))
            .route("/authorize", web::post().to(decide))
            .route("/token", web::post().to(token))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(IssuerError::Serve)?
    .run();
    let path = data_dir.join(URL_FILE);
    std::fs::write(&path, format!("{url}\n")).map_err(file_error("cannot write", &path))?;
    Ok((url, server))
}

async fn json(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(body)
}

/// The authorization code flow's state: the key, the issuer's URL, and the
/// codes handed out and not yet exchanged.
struct Flow {
    issuer: Issuer,
    url: String,
    codes: Arc<Mutex<HashMap<String, Pending>>>,
}

/// A code handed out, waiting for its exchange.
struct Pending {
    redirect_uri: String,
    challenge: String,
    scopes: Vec<&'static str>,
    subject: String,
    issued: Instant,
}

/// An authorization request (RFC 6749 §4.1.1 with RFC 7636's challenge),
/// and on the consent form's submission the choices made there.
#[derive(Debug, Default, serde::Deserialize)]
struct AuthorizationRequest {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    #[serde(default)]
    scope: String,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    // The consent form's fields.
    subject: Option<String>,
    decision: Option<String>,
    read: Option<String>,
    write: Option<String>,
    identities: Option<String>,
    audit: Option<String>,
    tenants: Option<String>,
}

/// What an acceptable authorization request asks for.
struct Checked<'a> {
    redirect_uri: &'a str,
    /// `scheme://authority` of the redirect URI.
    redirect_origin: String,
    state: &'a str,
    challenge: &'a str,
}

/// Checks an authorization request; the error says what is wrong with it.
/// Only the dashboard is a client, and it must come back to a
/// `…/dashboard/` page (any host: the demo's issuer listens on 127.0.0.1
/// only, and the service's address is up to its operator).
fn check(request: &AuthorizationRequest) -> Result<Checked<'_>, String> {
    if request.client_id.as_deref() != Some(DASHBOARD_CLIENT) {
        return Err(format!("client_id must be {DASHBOARD_CLIENT}"));
    }
    let redirect_uri = request.redirect_uri.as_deref().unwrap_or_default();
    let uri: actix_web::http::Uri = redirect_uri
        .parse()
        .map_err(|_| "redirect_uri is not a URL".to_owned())?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err("redirect_uri must be an absolute URL".into());
    };
    if !matches!(scheme, "http" | "https")
        || uri.query().is_some()
        || redirect_uri.contains('#')
        || !uri.path().ends_with("/dashboard/")
    {
        return Err("redirect_uri must be an http(s) URL of a …/dashboard/ page".into());
    }
    if request.response_type.as_deref() != Some("code") {
        return Err("response_type must be code".into());
    }
    if request.code_challenge_method.as_deref() != Some("S256") {
        return Err("code_challenge_method must be S256".into());
    }
    let challenge = request.code_challenge.as_deref().unwrap_or_default();
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("code_challenge must be a base64url SHA-256 (43 characters)".into());
    }
    let state = request.state.as_deref().unwrap_or_default();
    if state.is_empty() || state.len() > 256 {
        return Err("state is required (at most 256 characters)".into());
    }
    Ok(Checked {
        redirect_uri,
        redirect_origin: format!("{scheme}://{authority}"),
        state,
        challenge,
    })
}

/// A request the issuer cannot send back to its client.
fn bad_request(reason: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain; charset=utf-8")
        .body(format!("invalid authorization request: {reason}\n"))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /authorize`: the consent page. Anyone at the keyboard may sign in
/// under any name with any grants: this is the demo.
async fn consent(request: web::Query<AuthorizationRequest>) -> HttpResponse {
    let checked = match check(&request) {
        Ok(checked) => checked,
        Err(reason) => return bad_request(&reason),
    };
    let requested: Vec<&str> = request.scope.split(' ').collect();
    let hidden = |name: &str, value: &str| {
        format!(
            r#"<input type="hidden" name="{name}" value="{}">"#,
            escape(value)
        )
    };
    let grants: String = crate::core::scope::Grant::ALL
        .iter()
        .map(|grant| {
            let name = grant.name();
            let checked = if requested.contains(&name) { " checked" } else { "" };
            format!(r#"<label><input type="checkbox" name="{name}" value="on"{checked}> {name}</label><br>"#)
        })
        .collect();
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: acctstream demo issuer</title></head>
<body>
<h1>acctstream demo issuer</h1>
<p>The dashboard at {origin} asks for an access token. This issuer belongs to <code>acctstream demo</code>: it signs in anyone, under the name and with the grants chosen here.</p>
<form method="post" action="/authorize">
{fields}
<p><label>Name <input name="subject" value="demo-operator" maxlength="64" required></label></p>
<fieldset><legend>Grants</legend>{grants}</fieldset>
<p><button type="submit" name="decision" value="allow" id="allow">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button></p>
</form>
</body></html>
"#,
        origin = escape(&checked.redirect_origin),
        fields = [
            hidden("response_type", "code"),
            hidden("client_id", DASHBOARD_CLIENT),
            hidden("redirect_uri", checked.redirect_uri),
            hidden("state", checked.state),
            hidden("code_challenge", checked.challenge),
            hidden("code_challenge_method", "S256"),
        ]
        .concat(),
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'none'; form-action 'self' {}; base-uri 'none'; frame-ancestors 'none'",
                checked.redirect_origin
            ),
        ))
        .body(page)
}

/// The redirect back to the client, with `params` added.
fn back(redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let query: Vec<String> = params
        .iter()
        .map(|(name, value)| {
            format!(
                "{name}={}",
                percent_encoding::utf8_percent_encode(value, crate::core::kind::QUERY_VALUE)
            )
        })
        .collect();
    HttpResponse::SeeOther()
        .insert_header((
            header::LOCATION,
            format!("{redirect_uri}?{}", query.join("&")),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Random bytes as base64url, for codes.
fn random_code() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636's S256: base64url(SHA-256(verifier)).
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// `POST /authorize`: the consent form's answer; back to the client with a
/// code, or with `error=access_denied`.
async fn decide(flow: web::Data<Flow>, form: web::Form<AuthorizationRequest>) -> HttpResponse {
    let checked = match check(&form) {
        Ok(checked) => checked,
        Err(reason) => return bad_request(&reason),
    };
    let state = checked.state;
    if form.decision.as_deref() != Some("allow") {
        return back(
            checked.redirect_uri,
            &[("error", "access_denied"), ("state", state)],
        );
    }
    let subject = form.subject.as_deref().unwrap_or_default().trim();
    if subject.is_empty() || subject.chars().count() > 64 {
        return bad_request("the name must have 1 to 64 characters");
    }
    let chosen = [
        &form.read,
        &form.write,
        &form.identities,
        &form.audit,
        &form.tenants,
    ];
    let scopes: Vec<&'static str> = crate::core::scope::Grant::ALL
        .iter()
        .zip(chosen)
        .filter(|(_, on)| on.is_some())
        .map(|(grant, _)| grant.name())
        .collect();
    if scopes.is_empty() {
        return back(
            checked.redirect_uri,
            &[
                ("error", "invalid_scope"),
                ("error_description", "no grant was chosen"),
                ("state", state),
            ],
        );
    }
    let code = random_code();
    {
        let mut codes = flow.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|_, pending| pending.issued.elapsed() < CODE_LIFETIME);
        codes.insert(
            code.clone(),
            Pending {
                redirect_uri: checked.redirect_uri.to_owned(),
                challenge: checked.challenge.to_owned(),
                scopes,
                subject: subject.to_owned(),
                issued: Instant::now(),
            },
        );
    }
    back(checked.redirect_uri, &[("code", &code), ("state", state)])
}

/// A token request (RFC 6749 §4.1.3 with RFC 7636's verifier).
#[derive(Debug, serde::Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<String>,
}

/// A token endpoint's answer: JSON that a page of another origin may read.
fn token_answer(status: actix_web::http::StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(body)
}

fn token_error(error: &str, description: &str) -> HttpResponse {
    token_answer(
        actix_web::http::StatusCode::BAD_REQUEST,
        serde_json::json!({ "error": error, "error_description": description }),
    )
}

/// `POST /token`: a code (once, within [`CODE_LIFETIME`]) and its verifier
/// for an access token.
async fn token(flow: web::Data<Flow>, form: web::Form<TokenRequest>) -> HttpResponse {
    if form.grant_type.as_deref() != Some("authorization_code") {
        return token_error(
            "unsupported_grant_type",
            "grant_type must be authorization_code",
        );
    }
    if form.client_id.as_deref() != Some(DASHBOARD_CLIENT) {
        return token_error("invalid_client", "unknown client_id");
    }
    let pending = {
        let mut codes = flow.codes.lock().unwrap_or_else(|e| e.into_inner());
        form.code.as_deref().and_then(|code| codes.remove(code))
    };
    let Some(pending) = pending.filter(|p| p.issued.elapsed() < CODE_LIFETIME) else {
        return token_error("invalid_grant", "unknown, used or expired code");
    };
    if form.redirect_uri.as_deref() != Some(pending.redirect_uri.as_str()) {
        return token_error(
            "invalid_grant",
            "redirect_uri differs from the authorization request's",
        );
    }
    let verifier = form.code_verifier.as_deref().unwrap_or_default();
    if !(43..=128).contains(&verifier.len()) || s256(verifier) != pending.challenge {
        return token_error(
            "invalid_grant",
            "code_verifier does not match the code_challenge",
        );
    }
    match flow.issuer.mint(
        &flow.url,
        &pending.scopes,
        &pending.subject,
        ACCESS_TOKEN_SECONDS,
    ) {
        Ok(token) => token_answer(
            actix_web::http::StatusCode::OK,
            serde_json::json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": ACCESS_TOKEN_SECONDS,
                "scope": pending.scopes.join(" "),
            }),
        ),
        Err(e) => {
            tracing::error!(error = %e, "the demo issuer could not sign a token");
            token_answer(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "error": "server_error" }),
            )
        }
    }
}

/// `acctstream token`: a token of the issuer that the demo running in
/// `data_dir` serves.
pub fn mint(
    data_dir: &Path,
    scope: &str,
    client: &str,
    ttl_seconds: u64,
) -> Result<String, IssuerError> {
    let url_path = data_dir.join(URL_FILE);
    let url = std::fs::read_to_string(&url_path).map_err(file_error(
        "no demo issuer (is `acctstream demo` running?): cannot read",
        &url_path,
    ))?;
    let scopes = parse_scopes(scope)?;
    Issuer::load_or_create(data_dir)?.mint(url.trim(), &scopes, client, ttl_seconds)
}

/// `read+write`, `read write` or `read,write`: each a grant name.
pub fn parse_scopes(text: &str) -> Result<Vec<&str>, IssuerError> {
    let scopes: Vec<&str> = text
        .split(['+', ' ', ','])
        .filter(|s| !s.is_empty())
        .collect();
    for scope in &scopes {
        if !crate::core::scope::Grant::ALL
            .iter()
            .any(|g| g.name() == *scope)
        {
            return Err(IssuerError::Scope((*scope).to_owned()));
        }
    }
    if scopes.is_empty() {
        return Err(IssuerError::Scope(text.to_owned()));
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scope::Grant;

    #[test]
    fn minted_tokens_verify_against_the_served_keys() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = Issuer::load_or_create(dir.path()).unwrap();
        let again = Issuer::load_or_create(dir.path()).unwrap();
        assert_eq!(issuer.jwks(), again.jwks(), "the key is kept");
        let token = issuer
            .mint("http://i", &["read", "audit"], "me", 60)
            .unwrap();
        let set = crate::http::jwks::parse_set(issuer.jwks().as_bytes()).unwrap();
        let (alg, kid) = crate::core::jwt::header(&token).unwrap();
        let key = crate::core::jwt::find_key(&set, alg, kid.as_deref()).unwrap();
        let policy = crate::core::jwt::Policy {
            issuer: "http://i".into(),
            audience: AUDIENCE.into(),
            scopes: Default::default(),
            leeway: 0,
            tenant_claim: None,
        };
        let verified = crate::core::jwt::verify(&token, key, &policy).unwrap();
        assert_eq!(verified.client, "me");
        assert!(verified.scope.has(Grant::Read) && verified.scope.has(Grant::Audit));
        assert!(!verified.scope.has(Grant::Write));
        assert!(parse_scopes("read+admin").is_err());
        assert_eq!(parse_scopes("read write").unwrap(), ["read", "write"]);
    }
}

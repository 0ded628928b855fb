//! The demo's tiny OAuth2 issuer: an Ed25519 key kept in the data
//! directory, its OpenID configuration and JWKS served on 127.0.0.1, and
//! `acctstream token`, which mints access tokens with that key, so the
//! OAuth2 path works with no SSO at hand.

use std::{
    io::Write as _,
    net::TcpListener,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use actix_web::{web, App, HttpResponse, HttpServer};
use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey, Header};

/// The audience of the demo's tokens.
pub const AUDIENCE: &str = "acctstream";
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
        "id_token_signing_alg_values_supported": ["EdDSA"],
    })
    .to_string();
    let jwks = issuer.jwks().to_owned();
    let server = HttpServer::new(move || {
        let discovery = discovery.clone();
        let jwks = jwks.clone();
        App::new()
            .route(
                "/.well-known/openid-configuration",
                web::get().to(move || json(discovery.clone())),
            )
            .route("/jwks.json", web::get().to(move || json(jwks.clone())))
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
        .body(body)
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
        };
        let verified = crate::core::jwt::verify(&token, key, &policy).unwrap();
        assert_eq!(verified.client, "me");
        assert!(verified.scope.has(Grant::Read) && verified.scope.has(Grant::Audit));
        assert!(!verified.scope.has(Grant::Write));
        assert!(parse_scopes("read+admin").is_err());
        assert_eq!(parse_scopes("read write").unwrap(), ["read", "write"]);
    }
}

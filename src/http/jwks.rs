//! The issuer's signing keys: fetched once, cached, refreshed when their
//! cache lifetime ends and when a token names an unknown `kid` (at most
//! once a minute, so garbage `kid`s cannot make us hammer the SSO). While
//! the SSO is unreachable the cached keys keep working; a token whose key
//! we do not have gets 401, and with no keys at all the answer is a 503.
//!
//! No request waits on the SSO for more than [`REQUEST_WAIT`]: a fetch runs
//! as a task of its own (one at a time; every request that needs it joins
//! it), which may take up to [`FETCH_TIMEOUT`] and stores what it gets even
//! when the requests that started it have long been answered. Keys past
//! their lifetime keep being used while their refresh runs.

use std::{path::PathBuf, sync::Arc, time::Duration};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use jsonwebtoken::jwk::JwkSet;
use tokio::time::Instant;

use crate::core::jwt::{self, Policy, Rejection, Verified};

/// How long one fetch (discovery or key set) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a request waits for a fetch; then it is answered from the
/// keys we have (401 for an unknown key, 503 with none) and the fetch goes
/// on in the background.
pub const REQUEST_WAIT: Duration = Duration::from_secs(1);
/// The least time between two refreshes forced by unknown `kid`s.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(60);
/// The least time between two attempts after a failed fetch.
const RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// Cache lifetime when the key set's response does not give one, and the
/// bounds of a given one.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
const MIN_LIFETIME: Duration = Duration::from_secs(60);
const MAX_LIFETIME: Duration = Duration::from_secs(86_400);
/// Largest discovery document or key set we read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Where the keys are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `jwks_uri` of `<issuer>/.well-known/openid-configuration`.
    Discover,
    /// A JWKS URL (`ACCTSTREAM_OAUTH_JWKS_URL`).
    Url(String),
    /// A JWKS file (`ACCTSTREAM_OAUTH_JWKS_FILE`), read again on refresh.
    File(PathBuf),
}

/// Why a token was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// The token itself is wrong (401).
    Rejected(Rejection),
    /// We have no keys and cannot fetch them (503).
    KeysUnavailable,
}

/// A fetch in progress, which every request that needs it joins: the set
/// it stored, or `None` when it failed.
type Fetching = Shared<BoxFuture<'static, Option<Arc<JwkSet>>>>;

#[derive(Default)]
struct Cache {
    set: Option<Arc<JwkSet>>,
    jwks_url: Option<String>,
    fresh_until: Option<Instant>,
    last_failure: Option<Instant>,
    last_forced: Option<Instant>,
    fetching: Option<Fetching>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("keys", &self.set.as_ref().map(|s| s.keys.len()))
            .field("fresh_until", &self.fresh_until)
            .field("fetching", &self.fetching.is_some())
            .finish_non_exhaustive()
    }
}

/// The OAuth2 verifier: the policy and the issuer's cached keys, and the
/// dashboard's sign-in at that issuer when it has a client there.
#[derive(Debug)]
pub struct OAuth {
    policy: Policy,
    source: KeySource,
    cache: std::sync::Mutex<Cache>,
    sign_in: Option<SignIn>,
    endpoints: std::sync::Mutex<Endpoints>,
}

/// The dashboard's client at the issuer (issue 26): a public client that
/// signs in with the authorization code flow and PKCE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignIn {
    /// Its `client_id`.
    pub client_id: String,
    /// The scope it asks for.
    pub scope: String,
}

/// Everything the dashboard needs to sign in, as `GET
/// /dashboard/sign-in.json` gives it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInDetails {
    /// The issuer.
    pub issuer: String,
    /// The dashboard's `client_id`.
    pub client_id: String,
    /// The scope to ask for.
    pub scope: String,
    /// Where the browser goes to sign in.
    pub authorization_endpoint: String,
    /// Where the page exchanges its code.
    pub token_endpoint: String,
}

impl SignInDetails {
    /// `scheme://authority` of the token endpoint, which the dashboard's
    /// security policy must let the page reach.
    pub fn token_origin(&self) -> Option<String> {
        origin(&self.token_endpoint)
    }
}

/// `scheme://authority` of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let uri: actix_web::http::Uri = url.parse().ok()?;
    let scheme = uri
        .scheme_str()
        .filter(|s| matches!(*s, "http" | "https"))?;
    Some(format!("{scheme}://{}", uri.authority()?))
}

/// The sign-in endpoints, once discovered, or when discovery last failed.
#[derive(Debug, Default)]
struct Endpoints {
    details: Option<Arc<SignInDetails>>,
    failed: Option<(Instant, String)>,
}

/// How long a failed discovery of the sign-in endpoints is not retried.
const SIGN_IN_RETRY: Duration = Duration::from_secs(30);

impl OAuth {
    /// A verifier for `policy` whose keys come from `source` (nothing is
    /// fetched until the first token, or [`OAuth::prefetch`]).
    pub fn new(policy: Policy, source: KeySource) -> OAuth {
        OAuth {
            policy,
            source,
            cache: std::sync::Mutex::new(Cache::default()),
            sign_in: None,
            endpoints: std::sync::Mutex::new(Endpoints::default()),
        }
    }

    /// Offers the dashboard's sign-in with `client` at this issuer.
    pub fn with_sign_in(mut self, client: SignIn) -> OAuth {
        self.sign_in = Some(client);
        self
    }

    /// The dashboard's client at the issuer, if it has one.
    pub fn sign_in_client(&self) -> Option<&SignIn> {
        self.sign_in.as_ref()
    }

    /// The dashboard's sign-in: `None` without a client at the issuer;
    /// otherwise its endpoints, from the issuer's OpenID configuration
    /// (fetched once; after a failure, not again for [`SIGN_IN_RETRY`]).
    pub async fn sign_in(&self) -> Option<Result<Arc<SignInDetails>, String>> {
        let client = self.sign_in.as_ref()?;
        {
            let endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(details) = &endpoints.details {
                return Some(Ok(details.clone()));
            }
            if let Some((at, why)) = &endpoints.failed {
                if at.elapsed() < SIGN_IN_RETRY {
                    return Some(Err(why.clone()));
                }
            }
        }
        let discovered = discover_sign_in(&self.policy.issuer).await.map(
            |(authorization_endpoint, token_endpoint)| {
                Arc::new(SignInDetails {
                    issuer: self.policy.issuer.clone(),
                    client_id: client.client_id.clone(),
                    scope: client.scope.clone(),
                    authorization_endpoint,
                    token_endpoint,
                })
            },
        );
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        match &discovered {
            Ok(details) => endpoints.details = Some(details.clone()),
            Err(why) => endpoints.failed = Some((Instant::now(), why.clone())),
        }
        Some(discovered)
    }

    /// The policy tokens are checked against.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Fetches the keys now; the error says why they could not be had.
    pub async fn prefetch(&self) -> Result<usize, String> {
        let set = self.fetch().await?;
        let count = set.0.keys.len();
        self.store(set);
        Ok(count)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Verifies `token`: header, key (refreshing the set when needed, never
    /// waiting more than [`REQUEST_WAIT`]), then signature and claims.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Result<Verified, TokenError> {
        let (algorithm, kid) = jwt::header(token).map_err(TokenError::Rejected)?;
        let set = self.current_set().await?;
        let key = match jwt::find_key(&set, algorithm, kid.as_deref()) {
            Some(key) => key.clone(),
            None => {
                let refreshed = self.refresh_for_unknown_kid().await;
                refreshed
                    .as_deref()
                    .and_then(|set| jwt::find_key(set, algorithm, kid.as_deref()))
                    .cloned()
                    .ok_or(TokenError::Rejected(Rejection::UnknownKey))?
            }
        };
        jwt::verify(token, &key, &self.policy).map_err(TokenError::Rejected)
    }

    /// The cached set. Past its lifetime it is still used while a refresh
    /// runs in the background; without a set, a request waits at most
    /// [`REQUEST_WAIT`] for one (then: keys unavailable).
    async fn current_set(self: &Arc<Self>) -> Result<Arc<JwkSet>, TokenError> {
        let fetching = {
            let cache = self.lock();
            let now = Instant::now();
            let fresh = cache.fresh_until.is_some_and(|t| now < t);
            let backing_off = cache
                .last_failure
                .is_some_and(|t| now.duration_since(t) < RETRY_INTERVAL);
            match (&cache.set, fresh || backing_off) {
                (Some(set), true) => return Ok(Arc::clone(set)),
                (None, true) => return Err(TokenError::KeysUnavailable),
                (Some(set), false) => {
                    let set = Arc::clone(set);
                    drop(cache);
                    // Refreshed in the background; this request goes on.
                    drop(self.fetching());
                    return Ok(set);
                }
                (None, false) => {
                    drop(cache);
                    self.fetching()
                }
            }
        };
        wait(fetching).await.ok_or(TokenError::KeysUnavailable)
    }

    /// A refresh forced by an unknown `kid`, unless one ran in the last
    /// minute; `None` when none ran, it failed, or it did not answer within
    /// [`REQUEST_WAIT`] (it then goes on in the background).
    async fn refresh_for_unknown_kid(self: &Arc<Self>) -> Option<Arc<JwkSet>> {
        {
            let mut cache = self.lock();
            let now = Instant::now();
            if cache
                .last_forced
                .is_some_and(|t| now.duration_since(t) < UNKNOWN_KID_INTERVAL)
            {
                return None;
            }
            cache.last_forced = Some(now);
        }
        wait(self.fetching()).await
    }

    /// The fetch in progress, or a new one, run as a task of its own on
    /// this thread (the HTTP client is not `Send`), so that it finishes and
    /// stores its keys whoever still waits for it.
    fn fetching(self: &Arc<Self>) -> Fetching {
        let mut cache = self.lock();
        if let Some(fetching) = &cache.fetching {
            return fetching.clone();
        }
        let this = Arc::clone(self);
        let task = tokio::task::spawn_local(async move {
            let outcome = match this.fetch().await {
                Ok(set) => Some(this.store(set)),
                Err(reason) => {
                    tracing::warn!(%reason, "cannot fetch the OAuth2 issuer's keys; cached keys stay in use");
                    this.lock().last_failure = Some(Instant::now());
                    None
                }
            };
            this.lock().fetching = None;
            outcome
        });
        let fetching = async move { task.await.ok().flatten() }.boxed().shared();
        cache.fetching = Some(fetching.clone());
        fetching
    }

    fn store(&self, (set, lifetime): (JwkSet, Duration)) -> Arc<JwkSet> {
        let set = Arc::new(set);
        let mut cache = self.lock();
        cache.set = Some(Arc::clone(&set));
        cache.fresh_until = Some(Instant::now() + lifetime);
        cache.last_failure = None;
        set
    }

    /// Reads the key set from its source, with its cache lifetime.
    async fn fetch(&self) -> Result<(JwkSet, Duration), String> {
        match &self.source {
            KeySource::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let set = parse_set(&bytes)?;
                Ok((set, DEFAULT_LIFETIME))
            }
            KeySource::Url(url) => {
                let (bytes, lifetime) = get(url).await?;
                Ok((parse_set(&bytes)?, lifetime))
            }
            KeySource::Discover => {
                let cached = self.lock().jwks_url.clone();
                let url = match cached {
                    Some(url) => url,
                    None => {
                        let url = discover(&self.policy.issuer).await?;
                        self.lock().jwks_url = Some(url.clone());
                        url
                    }
                };
                let (bytes, lifetime) = get(&url).await?;
                Ok((parse_set(&bytes)?, lifetime))
            }
        }
    }
}

/// `fetching`'s keys, if it ends within [`REQUEST_WAIT`].
async fn wait(fetching: Fetching) -> Option<Arc<JwkSet>> {
    tokio::time::timeout(REQUEST_WAIT, fetching)
        .await
        .ok()
        .flatten()
}

/// A key set document; keys of types or curves we cannot use are dropped,
/// not fatal (issuers publish encryption keys beside signing keys).
pub fn parse_set(bytes: &[u8]) -> Result<JwkSet, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let keys = raw
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k).ok())
        .filter(|k| {
            use jsonwebtoken::jwk::AlgorithmParameters as P;
            matches!(
                k.algorithm,
                P::RSA(_) | P::EllipticCurve(_) | P::OctetKeyPair(_)
            )
        })
        .collect();
    Ok(JwkSet { keys })
}

/// `issuer`'s OpenID configuration, read as `T` (the fields a caller
/// needs; `what` names them in the error).
async fn openid_configuration<T: serde::de::DeserializeOwned>(
    issuer: &str,
    what: &str,
) -> Result<T, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let (bytes, _) = get(&url).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("{url} is not an OpenID configuration with {what}: {e}"))
}

/// The `jwks_uri` of `issuer`'s OpenID configuration.
async fn discover(issuer: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        jwks_uri: String,
    }
    let discovery: Discovery = openid_configuration(issuer, "a jwks_uri").await?;
    Ok(discovery.jwks_uri)
}

/// The `authorization_endpoint` and `token_endpoint` of `issuer`'s OpenID
/// configuration, both http(s) URLs.
async fn discover_sign_in(issuer: &str) -> Result<(String, String), String> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        authorization_endpoint: String,
        token_endpoint: String,
    }
    let discovery: Discovery =
        openid_configuration(issuer, "an authorization_endpoint and a token_endpoint").await?;
    for endpoint in [&discovery.authorization_endpoint, &discovery.token_endpoint] {
        if origin(endpoint).is_none() {
            return Err(format!("{issuer}: {endpoint:?} is not an http(s) URL"));
        }
    }
    Ok((discovery.authorization_endpoint, discovery.token_endpoint))
}

/// GETs `url` (http or https, system-independent Mozilla roots) within
/// [`FETCH_TIMEOUT`]: its body and cache lifetime (`max-age`, bounded).
async fn get(url: &str) -> Result<(bytes::Bytes, Duration), String> {
    let tls = crate::db::tls::web_client_config().map_err(|e| format!("TLS: {e}"))?;
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .timeout(FETCH_TIMEOUT)
        .finish();
    let attempt = async {
        let mut response = client
            .get(url)
            .insert_header(("Accept", "application/json"))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: status {}", response.status()));
        }
        let lifetime = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .map_or(DEFAULT_LIFETIME, |age| {
                age.clamp(MIN_LIFETIME, MAX_LIFETIME)
            });
        let body = response
            .body()
            .limit(MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok((body, lifetime))
    };
    tokio::time::timeout(FETCH_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("GET {url}: no answer within {FETCH_TIMEOUT:?}"))?
}

/// `max-age` of a `Cache-Control` value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|d| {
        let (name, seconds) = d.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=x"), None);
    }

    #[test]
    fn unusable_keys_are_dropped() {
        let set = parse_set(
            br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"},{"kty":"weird"}]}"#,
        )
        .unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(parse_set(b"[]").is_err());
    }
}

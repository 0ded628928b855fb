//! The issuer's signing keys: fetched once, cached, refreshed when their
//! cache lifetime ends and when a token names an unknown `kid` (at most
//! once a minute, so garbage `kid`s cannot make us hammer the SSO). While
//! the SSO is unreachable the cached keys keep working; a token whose key
//! we do not have gets 401, and with no keys at all the answer is a 503
//! (after at most [`FETCH_TIMEOUT`]), never a hang.

use std::{path::PathBuf, sync::Arc, time::Duration};

use jsonwebtoken::jwk::JwkSet;
use tokio::time::Instant;

use crate::core::jwt::{self, Policy, Rejection, Verified};

/// How long one fetch (discovery or key set) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
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

#[derive(Debug, Default)]
struct Cache {
    set: Option<Arc<JwkSet>>,
    jwks_url: Option<String>,
    fresh_until: Option<Instant>,
    last_failure: Option<Instant>,
    last_forced: Option<Instant>,
}

/// The OAuth2 verifier: the policy and the issuer's cached keys.
#[derive(Debug)]
pub struct OAuth {
    policy: Policy,
    source: KeySource,
    cache: std::sync::Mutex<Cache>,
    /// One fetch at a time; others wait for it and use its result.
    fetching: tokio::sync::Mutex<()>,
}

impl OAuth {
    /// A verifier for `policy` whose keys come from `source` (nothing is
    /// fetched until the first token, or [`OAuth::prefetch`]).
    pub fn new(policy: Policy, source: KeySource) -> OAuth {
        OAuth {
            policy,
            source,
            cache: std::sync::Mutex::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
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

    /// Verifies `token`: header, key (refreshing the set when needed), then
    /// signature and claims.
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
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

    /// The cached set, refreshed first when its lifetime is over (a failed
    /// refresh keeps the old set; without one, keys are unavailable).
    async fn current_set(&self) -> Result<Arc<JwkSet>, TokenError> {
        let now = Instant::now();
        {
            let cache = self.lock();
            let fresh = cache.fresh_until.is_some_and(|t| now < t);
            let backing_off = cache
                .last_failure
                .is_some_and(|t| now.duration_since(t) < RETRY_INTERVAL);
            if let Some(set) = &cache.set {
                if fresh || backing_off {
                    return Ok(Arc::clone(set));
                }
            } else if backing_off {
                return Err(TokenError::KeysUnavailable);
            }
        }
        let _turn = self.fetching.lock().await;
        // Another request may have refreshed while this one waited.
        {
            let cache = self.lock();
            if let (Some(set), Some(until)) = (&cache.set, cache.fresh_until) {
                if Instant::now() < until {
                    return Ok(Arc::clone(set));
                }
            }
        }
        match self.fetch().await {
            Ok(set) => Ok(self.store(set)),
            Err(reason) => {
                tracing::warn!(%reason, "cannot fetch the OAuth2 issuer's keys; cached keys stay in use");
                let mut cache = self.lock();
                cache.last_failure = Some(Instant::now());
                cache.set.clone().ok_or(TokenError::KeysUnavailable)
            }
        }
    }

    /// A refresh forced by an unknown `kid`, unless one ran in the last
    /// minute; `None` when none ran or it failed.
    async fn refresh_for_unknown_kid(&self) -> Option<Arc<JwkSet>> {
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
        let _turn = self.fetching.lock().await;
        match self.fetch().await {
            Ok(set) => Some(self.store(set)),
            Err(reason) => {
                tracing::warn!(%reason, "cannot refresh the OAuth2 issuer's keys for an unknown kid");
                self.lock().last_failure = Some(Instant::now());
                None
            }
        }
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

/// The `jwks_uri` of `issuer`'s OpenID configuration.
async fn discover(issuer: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        jwks_uri: String,
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let (bytes, _) = get(&url).await?;
    let discovery: Discovery = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{url} is not an OpenID configuration with a jwks_uri: {e}"))?;
    Ok(discovery.jwks_uri)
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

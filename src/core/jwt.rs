//! OAuth2 access tokens: which JWTs acctstream accepts, and what they may
//! do. Pure: the key set is handed in (`http::jwks` fetches and caches it),
//! and the signature and claim checks are `jsonwebtoken`'s.
//!
//! A token is accepted when its header names an allowed asymmetric
//! algorithm (RS256, PS256, ES256, EdDSA; never `none` or HMAC), its
//! signature verifies with the key its `kid` names (or the only key of the
//! set that fits its algorithm when it names none), `iss` and `aud` match,
//! `exp` (required) and `nbf` hold within the leeway, and its `scope`
//! (space-separated) or `scp` (array) claim maps to acctstream's grants.

use base64::Engine;
use jsonwebtoken::{
    errors::ErrorKind,
    jwk::{Jwk, JwkSet},
    Algorithm, DecodingKey, Validation,
};
use serde::Deserialize;

use crate::core::scope::{Grant, Scope};

/// The algorithms a token may be signed with.
pub const ALLOWED_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// The default leeway on `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// Which token scopes give which grant (`ACCTSTREAM_OAUTH_SCOPES`, e.g.
/// `read:accounting.read,write:accounting.write`). A grant that is not
/// mapped is given by the scope of its own name (`read`, `write`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeMap {
    entries: Vec<(Grant, String)>,
}

impl Default for ScopeMap {
    fn default() -> Self {
        ScopeMap {
            entries: Grant::ALL
                .iter()
                .map(|g| (*g, g.name().to_owned()))
                .collect(),
        }
    }
}

impl ScopeMap {
    /// Parses comma-separated `grant:token-scope` pairs; a grant may be
    /// listed several times (any of its scopes gives it).
    pub fn parse(text: &str) -> Result<ScopeMap, String> {
        let mut entries: Vec<(Grant, String)> = Vec::new();
        for (index, entry) in text.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let bad = || {
                format!(
                    "entry {} must be `<grant>:<scope>` with grant read, write, identities or audit and a scope without spaces",
                    index + 1
                )
            };
            let (grant, scope) = entry.split_once(':').ok_or_else(bad)?;
            let grant = Grant::ALL
                .into_iter()
                .find(|g| g.name() == grant)
                .ok_or_else(bad)?;
            if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c == '"') {
                return Err(bad());
            }
            entries.push((grant, scope.to_owned()));
        }
        for grant in Grant::ALL {
            if !entries.iter().any(|(g, _)| *g == grant) {
                entries.push((grant, grant.name().to_owned()));
            }
        }
        Ok(ScopeMap { entries })
    }

    /// The grants that the token scopes `held` give.
    pub fn grants<'a>(&self, held: impl IntoIterator<Item = &'a str>) -> Scope {
        let mut scope = Scope::NONE;
        for held in held {
            for (grant, name) in &self.entries {
                if name == held {
                    scope = scope.with(*grant);
                }
            }
        }
        scope
    }

    /// The token scope that gives `grant` (the first one configured), as a
    /// 403 names it.
    pub fn scope_for(&self, grant: Grant) -> &str {
        self.entries
            .iter()
            .find(|(g, _)| *g == grant)
            .map_or(grant.name(), |(_, name)| name.as_str())
    }
}

/// What a token must hold to be accepted.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The expected `iss`.
    pub issuer: String,
    /// The expected `aud` (one of the token's audiences).
    pub audience: String,
    /// Token scopes to grants.
    pub scopes: ScopeMap,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway: u64,
    /// The claim naming the token's organization
    /// (`ACCTSTREAM_OAUTH_TENANT_CLAIM`, e.g. `org_id`): when set, a token
    /// without it (and without the `tenants` grant) is refused.
    pub tenant_claim: Option<String>,
}

/// Why a token was refused. The texts go into the 401's
/// `error_description`: they say what was wrong, never the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not three base64url parts with a JSON header and claims.
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    /// The header names an algorithm we refuse.
    #[error("the token is signed with {0}; accepted algorithms are RS256, PS256, ES256 and EdDSA")]
    Algorithm(String),
    /// No key of the issuer's set has this `kid` (or fits its algorithm).
    #[error("the token is signed with a key the issuer does not publish (unknown kid)")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `exp` is past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token was issued by another issuer than the configured one")]
    WrongIssuer,
    /// `aud` does not name us.
    #[error("the token's audience is not this service")]
    WrongAudience,
    /// A required claim is missing.
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
    /// The organization claim is missing, or is not a name of one.
    #[error("the token names no organization (its tenant claim is missing, or not 1 to 64 of a-z, A-Z, 0-9, `.`, `_` and `-`)")]
    NoTenant,
}

/// An accepted token: who it was issued to and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// `client_id`, else `azp`, else `sub`.
    pub client: String,
    /// The grants of its scopes.
    pub scope: Scope,
    /// Its organization, when the policy has a tenant claim and the token
    /// holds it.
    pub tenant: Option<String>,
}

/// The parts of a JWT header we look at before verifying.
#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// The claims we read (the registered ones are checked by `jsonwebtoken`).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    scope: Option<String>,
    scp: Option<Scp>,
    /// The others (the organization claim is configured).
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scp {
    List(Vec<String>),
    Text(String),
}

/// A new Ed25519 private key as a PKCS#8 v1 document (the form
/// `jsonwebtoken` reads: a 16-byte header and the 32-byte seed).
pub fn ed25519_pkcs8() -> Result<Vec<u8>, String> {
    use ring::rand::SecureRandom as _;
    const HEADER: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|e| e.to_string())?;
    let mut document = HEADER.to_vec();
    document.extend_from_slice(&seed);
    Ok(document)
}

/// The token's algorithm and `kid`, from its header; a refused algorithm
/// (`none`, HMAC) is a rejection here, before any key is looked up.
pub fn header(token: &str) -> Result<(Algorithm, Option<String>), Rejection> {
    let first = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .map_err(|_| Rejection::Malformed)?;
    let header: Header = serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)?;
    let algorithm = ALLOWED_ALGORITHMS
        .into_iter()
        .find(|a| format!("{a:?}") == header.alg)
        .ok_or_else(|| Rejection::Algorithm(printable(&header.alg)))?;
    if token.split('.').count() != 3 {
        return Err(Rejection::Malformed);
    }
    Ok((algorithm, header.kid))
}

/// At most 16 printable ASCII characters of an attacker-chosen text.
fn printable(text: &str) -> String {
    let kept: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(16)
        .collect();
    if kept.is_empty() {
        "an unnamed algorithm".to_owned()
    } else {
        kept
    }
}

/// The key of `set` that verifies a token with this `kid` and algorithm:
/// the key with that `kid`, or without a `kid` the only key whose type
/// fits the algorithm. A key that declares another algorithm does not fit.
pub fn find_key<'a>(set: &'a JwkSet, algorithm: Algorithm, kid: Option<&str>) -> Option<&'a Jwk> {
    let fits = |jwk: &&Jwk| {
        let declared = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
        declared.is_none_or(|d| d == format!("{algorithm:?}")) && key_type_fits(jwk, algorithm)
    };
    match kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .find(fits),
        None => {
            let mut candidates = set.keys.iter().filter(fits);
            let only = candidates.next()?;
            candidates.next().is_none().then_some(only)
        }
    }
}

fn key_type_fits(jwk: &Jwk, algorithm: Algorithm) -> bool {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    matches!(
        (&jwk.algorithm, algorithm),
        (P::RSA(_), Algorithm::RS256 | Algorithm::PS256)
            | (P::EllipticCurve(_), Algorithm::ES256)
            | (P::OctetKeyPair(_), Algorithm::EdDSA)
    )
}

/// Verifies `token` with `key` against `policy` at the system clock.
pub fn verify(token: &str, key: &Jwk, policy: &Policy) -> Result<Verified, Rejection> {
    let (algorithm, _) = header(token)?;
    let decoding = DecodingKey::from_jwk(key).map_err(|_| Rejection::UnknownKey)?;
    let mut validation = Validation::new(algorithm);
    validation.leeway = policy.leeway;
    validation.validate_nbf = true;
    validation.set_issuer(&[&policy.issuer]);
    validation.set_audience(&[&policy.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data =
        jsonwebtoken::decode::<Claims>(token, &decoding, &validation).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => Rejection::Expired,
                ErrorKind::ImmatureSignature => Rejection::NotYetValid,
                ErrorKind::InvalidAudience => Rejection::WrongAudience,
                ErrorKind::InvalidIssuer => Rejection::WrongIssuer,
                ErrorKind::InvalidSignature => Rejection::BadSignature,
                ErrorKind::MissingRequiredClaim(claim) => {
                    Rejection::MissingClaim(match claim.as_str() {
                        "exp" => "exp",
                        "iss" => "iss",
                        _ => "aud",
                    })
                }
                ErrorKind::InvalidAlgorithm => Rejection::UnknownKey,
                _ => Rejection::Malformed,
            }
        })?;
    let claims = data.claims;
    let client = claims
        .client_id
        .or(claims.azp)
        .or(claims.sub)
        .filter(|c| !c.is_empty())
        .ok_or(Rejection::MissingClaim("sub"))?;
    let mut held: Vec<String> = claims
        .scope
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    match claims.scp {
        Some(Scp::List(list)) => held.extend(list),
        Some(Scp::Text(text)) => held.extend(text.split_whitespace().map(str::to_owned)),
        None => {}
    }
    let scope = policy.scopes.grants(held.iter().map(String::as_str));
    let tenant = match &policy.tenant_claim {
        None => None,
        Some(claim) => {
            let named = match claims.rest.get(claim) {
                Some(serde_json::Value::String(text)) => Some(text.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            match named {
                Some(tenant) if crate::core::tenant::is_tenant_name(&tenant) => Some(tenant),
                _ if scope.has(Grant::Tenants) => None,
                _ => return Err(Rejection::NoTenant),
            }
        }
    };
    Ok(Verified {
        client: client_label(&client),
        scope,
        tenant,
    })
}

/// A client id as logs, limits and the audit trail show it: at most 128
/// characters, control characters dropped.
fn client_label(client: &str) -> String {
    client
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header as JwtHeader};
    use serde_json::json;

    fn ed25519() -> (EncodingKey, Jwk) {
        let pkcs8 = ed25519_pkcs8().unwrap();
        let encoding = EncodingKey::from_ed_der(&pkcs8);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).unwrap();
        jwk.common.key_id = Some("k1".into());
        (encoding, jwk)
    }

    fn policy() -> Policy {
        Policy {
            issuer: "https://sso.example".into(),
            audience: "acctstream".into(),
            scopes: ScopeMap::parse("read:acct.read,write:acct.write").unwrap(),
            leeway: 5,
            tenant_claim: None,
        }
    }

    #[test]
    fn the_tenant_claim_names_the_organization() {
        let (key, jwk) = ed25519();
        let p = Policy {
            tenant_claim: Some("org_id".into()),
            ..policy()
        };
        let with = |org: serde_json::Value, scope: &str| {
            let mut c = good_claims();
            c["org_id"] = org;
            c["scope"] = json!(scope);
            token(&key, c)
        };
        let acme = verify(&with(json!("acme"), "acct.read"), &jwk, &p).unwrap();
        assert_eq!(acme.tenant.as_deref(), Some("acme"));
        let numbered = verify(&with(json!(42), "acct.read"), &jwk, &p).unwrap();
        assert_eq!(numbered.tenant.as_deref(), Some("42"));
        // Without the claim, or with one that names nothing: refused,
        // unless the token reads every organization.
        for bad in [json!(null), json!(""), json!("a b"), json!(["acme"])] {
            assert_eq!(
                verify(&with(bad.clone(), "acct.read"), &jwk, &p),
                Err(Rejection::NoTenant),
                "{bad}"
            );
        }
        let operator = verify(&with(json!(null), "acct.read tenants"), &jwk, &p).unwrap();
        assert!(operator.scope.has(Grant::Tenants) && operator.tenant.is_none());
        // Without a configured claim, the claim is not read.
        let plain = verify(&with(json!("acme"), "acct.read"), &jwk, &policy()).unwrap();
        assert_eq!(plain.tenant, None);
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn token(key: &EncodingKey, claims: serde_json::Value) -> String {
        let mut header = JwtHeader::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        encode(&header, &claims, key).unwrap()
    }

    fn good_claims() -> serde_json::Value {
        json!({"iss": "https://sso.example", "aud": "acctstream", "exp": now() + 60,
               "sub": "svc-1", "scope": "acct.read other"})
    }

    #[test]
    fn a_good_token_is_verified_with_its_grants() {
        let (key, jwk) = ed25519();
        let verified = verify(&token(&key, good_claims()), &jwk, &policy()).unwrap();
        assert_eq!(verified.client, "svc-1");
        assert!(verified.scope.has(Grant::Read) && !verified.scope.has(Grant::Write));
        let mut claims = good_claims();
        claims["scp"] = json!(["acct.write"]);
        claims["client_id"] = json!("app-7");
        let verified = verify(&token(&key, claims), &jwk, &policy()).unwrap();
        assert_eq!(verified.client, "app-7");
        assert!(verified.scope.has(Grant::Write));
    }

    #[test]
    fn every_rejection_reason() {
        let (key, jwk) = ed25519();
        let (_, other) = ed25519();
        let p = policy();
        let with = |field: &str, value: serde_json::Value| {
            let mut c = good_claims();
            c[field] = value;
            token(&key, c)
        };
        assert_eq!(
            verify(&with("exp", json!(now() - 60)), &jwk, &p),
            Err(Rejection::Expired)
        );
        assert_eq!(
            verify(&with("nbf", json!(now() + 60)), &jwk, &p),
            Err(Rejection::NotYetValid)
        );
        assert_eq!(
            verify(&with("aud", json!("other")), &jwk, &p),
            Err(Rejection::WrongAudience)
        );
        assert_eq!(
            verify(&with("iss", json!("https://evil")), &jwk, &p),
            Err(Rejection::WrongIssuer)
        );
        assert_eq!(
            verify(&token(&key, good_claims()), &other, &p),
            Err(Rejection::BadSignature)
        );
        let mut no_exp = good_claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            verify(&token(&key, no_exp), &jwk, &p),
            Err(Rejection::MissingClaim("exp"))
        );
        // Within the leeway, an expired token still passes.
        assert!(verify(&with("exp", json!(now() - 2)), &jwk, &p).is_ok());
        assert_eq!(verify("not.a.jwt", &jwk, &p), Err(Rejection::Malformed));
    }

    #[test]
    fn none_and_hmac_are_refused_before_any_key() {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let body = b64(good_claims());
        let none = format!("{}.{body}.", b64(json!({"alg": "none"})));
        assert_eq!(header(&none), Err(Rejection::Algorithm("none".into())));
        let hs = encode(
            &JwtHeader::new(Algorithm::HS256),
            &good_claims(),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(header(&hs), Err(Rejection::Algorithm("HS256".into())));
        assert!(Rejection::Algorithm("HS256".into())
            .to_string()
            .contains("HS256"));
    }

    #[test]
    fn keys_are_found_by_kid_or_by_being_the_only_fit() {
        let (_, mut a) = ed25519();
        let (_, mut b) = ed25519();
        b.common.key_id = Some("k2".into());
        let set = JwkSet {
            keys: vec![a.clone(), b.clone()],
        };
        assert_eq!(find_key(&set, Algorithm::EdDSA, Some("k2")), Some(&b));
        assert_eq!(find_key(&set, Algorithm::EdDSA, Some("k3")), None);
        assert_eq!(find_key(&set, Algorithm::ES256, Some("k1")), None);
        assert_eq!(
            find_key(&set, Algorithm::EdDSA, None),
            None,
            "two candidates"
        );
        a.common.key_id = None;
        let one = JwkSet {
            keys: vec![a.clone()],
        };
        assert_eq!(find_key(&one, Algorithm::EdDSA, None), Some(&a));
    }

    #[test]
    fn scope_map_parses_and_defaults() {
        let map = ScopeMap::parse("read:a.r, read:b.r,identities:a.i").unwrap();
        assert!(map.grants(["b.r"]).has(Grant::Read));
        assert!(map.grants(["a.i"]).has(Grant::Identities));
        assert!(
            map.grants(["write"]).has(Grant::Write),
            "unmapped grants keep their own name"
        );
        assert_eq!(map.scope_for(Grant::Read), "a.r");
        assert_eq!(ScopeMap::default().scope_for(Grant::Audit), "audit");
        for bad in ["read", "admin:x", "read:", "read:a b"] {
            assert!(ScopeMap::parse(bad).is_err(), "{bad}");
        }
    }
}

//! OAuth2 access tokens against a real JWKS server on 127.0.0.1, and the
//! per-client limits.

use std::{
    net::TcpListener,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use acctstream::{
    core::{
        jwt::{Policy, ScopeMap},
        limits::{Limits, Rate, RateLimiter, StreamLimiter},
    },
    http::{
        error::ErrorResponse,
        jwks::{KeySource, OAuth},
    },
};
use actix_web::{web, App, HttpResponse, HttpServer};
use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::{spawn_app_with, AppOptions, TestApp, TOKEN};

const ISSUER: &str = "https://sso.test";
const AUDIENCE: &str = "acctstream-api";

/// A key of the test issuer.
struct Key {
    encoding: EncodingKey,
    jwk: Jwk,
    alg: Algorithm,
}

fn ed25519(kid: &str) -> Key {
    let pkcs8 = acctstream::core::jwt::ed25519_pkcs8().unwrap();
    let encoding = EncodingKey::from_ed_der(&pkcs8);
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some(kid.into());
    Key {
        encoding,
        jwk,
        alg: Algorithm::EdDSA,
    }
}

fn es256(kid: &str) -> Key {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    Key {
        encoding,
        jwk,
        alg: Algorithm::ES256,
    }
}

/// An RSA key for RS256 or PS256 (a fixed test key: ring cannot make RSA
/// keys; `tests/api/fixtures/test-rsa-key.pem`, made with `openssl genpkey`).
fn rsa(kid: &str, alg: Algorithm) -> Key {
    let pem = include_bytes!("fixtures/test-rsa-key.pem");
    let encoding = EncodingKey::from_rsa_pem(pem).unwrap();
    let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    Key { encoding, jwk, alg }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(scope: &str) -> serde_json::Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "svc-analytics", "exp": now() + 300, "scope": scope})
}

fn sign(key: &Key, claims: &serde_json::Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = key.jwk.common.key_id.clone();
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// A JWKS server whose key set the test changes, counting its fetches.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    hits: Arc<AtomicUsize>,
    /// Milliseconds every answer is held back (0: none).
    delay_ms: Arc<AtomicUsize>,
    server: actix_web::dev::ServerHandle,
}

async fn jwks_server(keys: Vec<Jwk>) -> Jwks {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    let keys = Arc::new(Mutex::new(keys));
    let hits = Arc::new(AtomicUsize::new(0));
    let delay_ms = Arc::new(AtomicUsize::new(0));
    let (k, h, d) = (keys.clone(), hits.clone(), delay_ms.clone());
    let server = HttpServer::new(move || {
        let (k, h, d) = (k.clone(), h.clone(), d.clone());
        App::new().route(
            "/keys",
            web::get().to(move || {
                h.fetch_add(1, Ordering::SeqCst);
                let body = json!({"keys": *k.lock().unwrap()}).to_string();
                let delay = Duration::from_millis(d.load(Ordering::SeqCst) as u64);
                async move {
                    actix_web::rt::time::sleep(delay).await;
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .insert_header(("Cache-Control", "max-age=3600"))
                        .body(body)
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Jwks {
        url,
        keys,
        hits,
        delay_ms,
        server: handle,
    }
}

fn oauth(url: &str, scopes: &str) -> Arc<OAuth> {
    Arc::new(OAuth::new(
        Policy {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            scopes: ScopeMap::parse(scopes).unwrap(),
            leeway: 5,
            tenant_claim: None,
        },
        KeySource::Url(url.into()),
    ))
}

async fn app_with(oauth: Arc<OAuth>, limits: Limits) -> TestApp {
    let mut options = AppOptions::default();
    options.http.oauth = Some(oauth);
    options.http.limits = Arc::new(limits);
    spawn_app_with(options).await
}

const PATH: &str = "/api/v1/statistics/events/hour/2026-01-01T00";

/// The status of a GET of `PATH` with `token`.
async fn status_of(app: &TestApp, token: &str) -> awc::http::StatusCode {
    app.get_as(token, PATH).send().await.unwrap().status()
}

async fn status_and_challenge(app: &TestApp, token: &str) -> (u16, String, ErrorResponse) {
    let mut response = app.get_as(token, PATH).send().await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: ErrorResponse = response.json().await.unwrap_or(ErrorResponse {
        error: String::new(),
        error_description: String::new(),
    });
    (response.status().as_u16(), challenge, body)
}

#[actix_web::test]
async fn access_tokens_are_verified_and_every_rejection_says_why() {
    let key = ed25519("k1");
    let ec = es256("ec1");
    let jwks = jwks_server(vec![key.jwk.clone(), ec.jwk.clone()]).await;
    let app = app_with(
        oauth(
            &jwks.url,
            "read:accounting.read,identities:accounting.identities",
        ),
        Limits::default(),
    )
    .await;

    let good = sign(&key, &claims("accounting.read"));
    let response = app.get_as(&good, PATH).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .get_as(&sign(&ec, &claims("accounting.read")), PATH)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "ES256");
    // Static tokens keep working beside OAuth2.
    assert_eq!(app.get(PATH).send().await.unwrap().status(), 200);

    let with = |field: &str, value: serde_json::Value| {
        let mut c = claims("accounting.read");
        c[field] = value;
        sign(&key, &c)
    };
    let other = ed25519("k1");
    let unknown = ed25519("k9");
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("accounting.read"),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let cases = [
        (with("exp", json!(now() - 120)), "expired"),
        (with("nbf", json!(now() + 120)), "not valid yet"),
        (with("aud", json!("someone-else")), "audience"),
        (with("iss", json!("https://evil.test")), "issuer"),
        (sign(&other, &claims("accounting.read")), "signature"),
        (sign(&unknown, &claims("accounting.read")), "unknown kid"),
        (hs, "HS256"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_owned(), "none"),
    ];
    for (token, reason) in cases {
        let (status, challenge, body) = status_and_challenge(&app, &token).await;
        assert_eq!(status, 401, "{reason}");
        assert_eq!(body.error, "invalid_token", "{reason}");
        assert!(
            body.error_description.contains(reason),
            "{reason}: {}",
            body.error_description
        );
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
        assert!(challenge.contains(reason), "{reason}: {challenge}");
        let signature = token.rsplit('.').next().unwrap_or_default();
        if !signature.is_empty() {
            assert!(!challenge.contains(signature) && !body.error_description.contains(signature));
        }
    }

    // A token without the needed scope: 403 naming it.
    let (status, challenge, body) =
        status_and_challenge(&app, &sign(&key, &claims("profile"))).await;
    assert_eq!((status, body.error.as_str()), (403, "insufficient_scope"));
    assert!(
        challenge.contains(r#"scope="accounting.read""#),
        "{challenge}"
    );
    // Identities need their scope too; with it, raw values come out.
    let response = app
        .get_as(
            &good,
            "/api/v1/statistics/sessions/day/2026-11-20?user=jane",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let both = sign(&key, &claims("accounting.read accounting.identities"));
    let response = app
        .get_as(
            &both,
            "/api/v1/statistics/sessions/day/2026-11-20?user=jane",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    jwks.server.stop(false).await;
}

#[actix_web::test]
async fn rsa_keys_and_a_jwks_file() {
    let rs = rsa("rs", Algorithm::RS256);
    let ps = rsa("ps", Algorithm::PS256);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(
        &file,
        json!({"keys": [rs.jwk.clone(), ps.jwk.clone()]}).to_string(),
    )
    .unwrap();
    let oauth = Arc::new(OAuth::new(
        Policy {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            scopes: ScopeMap::default(),
            leeway: 5,
            tenant_claim: None,
        },
        KeySource::File(file),
    ));
    let app = app_with(oauth, Limits::default()).await;
    assert_eq!(
        status_of(&app, &sign(&rs, &claims("read"))).await,
        200,
        "RS256"
    );
    assert_eq!(
        status_of(&app, &sign(&ps, &claims("read"))).await,
        200,
        "PS256"
    );
    // A PS256 key does not verify an RS256 signature made with the same
    // RSA key: the JWK names its algorithm.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ps".into());
    let mixed = jsonwebtoken::encode(&header, &claims("read"), &rs.encoding).unwrap();
    let (status, _, body) = status_and_challenge(&app, &mixed).await;
    assert_eq!(status, 401, "{}", body.error_description);
}

#[actix_web::test]
async fn rotated_keys_are_fetched_once_and_garbage_kids_do_not_hammer_the_sso() {
    let old = ed25519("old");
    let jwks = jwks_server(vec![old.jwk.clone()]).await;
    let app = app_with(oauth(&jwks.url, ""), Limits::default()).await;
    assert_eq!(status_of(&app, &sign(&old, &claims("read"))).await, 200);
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 1);
    for _ in 0..3 {
        app.get_as(&sign(&old, &claims("read")), PATH)
            .send()
            .await
            .unwrap();
    }
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 1, "cached");

    // The issuer rotates: a token with the new kid makes us refetch once.
    let new = ed25519("new");
    jwks.keys.lock().unwrap().push(new.jwk.clone());
    assert_eq!(status_of(&app, &sign(&new, &claims("read"))).await, 200);
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 2);

    // Garbage kids within the minute: 401, and no more fetches.
    for i in 0..5 {
        let garbage = ed25519(&format!("garbage-{i}"));
        let (status, _, _) = status_and_challenge(&app, &sign(&garbage, &claims("read"))).await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        jwks.hits.load(Ordering::SeqCst),
        2,
        "at most one forced refresh a minute"
    );
    jwks.server.stop(false).await;
}

#[actix_web::test]
async fn while_the_sso_is_unreachable_cached_keys_work_and_new_kids_get_401_quickly() {
    let key = ed25519("k1");
    let jwks = jwks_server(vec![key.jwk.clone()]).await;
    let app = app_with(oauth(&jwks.url, ""), Limits::default()).await;
    assert_eq!(status_of(&app, &sign(&key, &claims("read"))).await, 200);
    jwks.server.stop(false).await;

    assert_eq!(status_of(&app, &sign(&key, &claims("read"))).await, 200);
    let started = Instant::now();
    let (status, _, body) =
        status_and_challenge(&app, &sign(&ed25519("k2"), &claims("read"))).await;
    assert_eq!(status, 401, "{}", body.error_description);
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");

    // No keys ever fetched: 503 with Retry-After, never a 500 or a hang.
    let nowhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/keys", nowhere.local_addr().unwrap());
    drop(nowhere);
    let app = app_with(oauth(&dead, ""), Limits::default()).await;
    let started = Instant::now();
    let response = app
        .get_as(&sign(&key, &claims("read")), PATH)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Issue 27, item 5: while the SSO accepts connections but does not answer,
/// no request waits on it more than a second: an unknown key is a 401, no
/// keys at all a 503; the fetch finishes in the background and its keys are
/// used from then on.
#[actix_web::test]
async fn a_slow_sso_never_holds_a_request_more_than_a_second() {
    let key = ed25519("k1");
    let jwks = jwks_server(vec![key.jwk.clone()]).await;
    let app = app_with(oauth(&jwks.url, ""), Limits::default()).await;
    assert_eq!(status_of(&app, &sign(&key, &claims("read"))).await, 200);

    // The issuer rotates, and now answers after 3 s.
    let rotated = ed25519("k2");
    jwks.keys.lock().unwrap().push(rotated.jwk.clone());
    jwks.delay_ms.store(3_000, Ordering::SeqCst);
    let started = Instant::now();
    let (status, _, body) = status_and_challenge(&app, &sign(&rotated, &claims("read"))).await;
    let waited = started.elapsed();
    assert_eq!(status, 401, "{}", body.error_description);
    assert!(waited < Duration::from_millis(1_500), "{waited:?}");
    assert!(
        waited >= Duration::from_millis(900),
        "it did wait for the SSO: {waited:?}"
    );
    // Known keys are not held up meanwhile.
    let started = Instant::now();
    assert_eq!(status_of(&app, &sign(&key, &claims("read"))).await, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    // The slow answer arrives in the background: the new key then works.
    actix_web::rt::time::sleep(Duration::from_millis(2_500)).await;
    let started = Instant::now();
    assert_eq!(status_of(&app, &sign(&rotated, &claims("read"))).await, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 2);

    // No keys yet and an SSO that accepts but never answers: 503 in ~1 s.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/keys", silent.local_addr().unwrap());
    let app = app_with(oauth(&url, ""), Limits::default()).await;
    for _ in 0..2 {
        let started = Instant::now();
        let response = app
            .get_as(&sign(&key, &claims("read")), PATH)
            .send()
            .await
            .unwrap();
        let waited = started.elapsed();
        assert_eq!(response.status(), 503);
        assert!(waited < Duration::from_millis(1_500), "{waited:?}");
    }
    drop(silent);
    jwks.server.stop(false).await;
}

#[actix_web::test]
async fn rate_limits_answer_429_with_headers_per_client() {
    let key = ed25519("k1");
    let jwks = jwks_server(vec![key.jwk.clone()]).await;
    let limits = Limits {
        rate: Some(RateLimiter::new(Rate::parse("3/min").unwrap())),
        rate_per_tenant: None,
        streams: None,
    };
    let app = app_with(oauth(&jwks.url, ""), limits).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = app.get(PATH).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers().get("ratelimit-limit").unwrap(), "3");
        let reset: u64 = response
            .headers()
            .get("ratelimit-reset")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&reset));
        remaining.push(
            response
                .headers()
                .get("ratelimit-remaining")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let mut refused = app.get(PATH).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(refused.headers().get("ratelimit-remaining").unwrap(), "0");
    let body: ErrorResponse = refused.json().await.unwrap();
    assert_eq!(body.error, "too_many_requests");
    // Another client (an access token) is not affected.
    let response = app
        .get_as(&sign(&key, &claims("read")), PATH)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("ratelimit-remaining").unwrap(), "2");
    // Documentation and health are not limited.
    for path in ["/healthz", "/openapi.yaml"] {
        let response = app.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(!response.headers().contains_key("ratelimit-limit"));
    }
    jwks.server.stop(false).await;
}

#[actix_web::test]
async fn a_client_at_its_stream_limit_gets_429_and_others_stream_on() {
    let mut options = AppOptions::default();
    options.http.limits = Arc::new(Limits {
        rate: None,
        rate_per_tenant: None,
        streams: Some(StreamLimiter::new(1)),
    });
    let app = spawn_app_with(options).await;
    app.insert_many("2026-01-01T00:00:00Z", 200_000).await;
    // A slow reader holds its stream open.
    let mut slow = app
        .get("/api/v1/statistics/events/day/2026-01-01?format=csv")
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 200);
    let refused = app.get(PATH).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers().get("retry-after").unwrap(), "1");
    // Another client is not held up by it.
    let started = Instant::now();
    let other = app
        .get_as(crate::helpers::WRITE_TOKEN, PATH)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Once the stream is read to its end, the client may stream again.
    let body = slow.body().limit(1 << 30).await.unwrap();
    assert!(body.len() > 1_000_000);
    let mut again = 0;
    for _ in 0..50 {
        again = app.get(PATH).send().await.unwrap().status().as_u16();
        if again == 200 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(again, 200);
    let _ = TOKEN;
}

/// A verifier of `issuer`'s tokens (keys discovered) whose dashboard
/// signs in there as `client`, asking for `read`.
pub fn signing_in_at(issuer: String, client: &str) -> Arc<OAuth> {
    Arc::new(
        OAuth::new(
            Policy {
                issuer,
                audience: acctstream::demo::issuer::AUDIENCE.into(),
                scopes: ScopeMap::default(),
                leeway: 5,
                tenant_claim: None,
            },
            KeySource::Discover,
        )
        .with_sign_in(acctstream::http::jwks::SignIn {
            client_id: client.into(),
            scope: "read".into(),
        }),
    )
}

/// The dashboard's sign-in (issue 26) against the demo's issuer, by
/// protocol: `sign-in.json` names the endpoints; the authorization request
/// is checked before any redirect (client, redirect URI, PKCE S256); the
/// consent page's answer comes back with a code or `access_denied`; a code
/// is exchanged once, only with its verifier and redirect URI, for a token
/// with the grants chosen, which the API accepts.
#[actix_web::test]
async fn the_demo_issuer_signs_the_dashboard_in_with_pkce() {
    use acctstream::demo::issuer::{s256, DASHBOARD_CLIENT};
    let (app, issuer, _dir) = crate::browser::app_signing_in_at_the_demo_issuer().await;
    let mut response = app
        .client()
        .get(format!("{}/dashboard/sign-in.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let details: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        details,
        json!({"signIn": {
            "issuer": issuer,
            "clientId": DASHBOARD_CLIENT,
            "scope": "read",
            "authorizationEndpoint": format!("{issuer}/authorize"),
            "tokenEndpoint": format!("{issuer}/token"),
        }})
    );

    let client = awc::Client::builder().disable_redirects().finish();
    let redirect = format!("{}/dashboard/", app.address);
    let verifier = "a-verifier-of-forty-three-characters-or-more-0123456789";
    let challenge = s256(verifier);
    let request = |redirect: &str, method: &str| {
        vec![
            ("response_type", "code".to_owned()),
            ("client_id", DASHBOARD_CLIENT.to_owned()),
            ("redirect_uri", redirect.to_owned()),
            ("scope", "read".to_owned()),
            ("state", "s-1".to_owned()),
            ("code_challenge", challenge.clone()),
            ("code_challenge_method", method.to_owned()),
        ]
    };
    // Refused on the issuer's own page, never sent elsewhere.
    for (query, why) in [
        (request("https://evil.test/steal", "S256"), "redirect_uri"),
        (request(&format!("{redirect}?x=1"), "S256"), "redirect_uri"),
        (request(&redirect, "plain"), "code_challenge_method"),
    ] {
        let mut response = client
            .get(format!("{issuer}/authorize"))
            .query(&query)
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{why}");
        let body = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
        assert!(body.contains(why), "{body}");
    }
    let mut page = client
        .get(format!("{issuer}/authorize"))
        .query(&request(&redirect, "S256"))
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers().get("content-security-policy").unwrap();
    assert!(
        csp.to_str()
            .unwrap()
            .contains(&format!("form-action 'self' {}", app.address)),
        "{csp:?}"
    );
    let html = String::from_utf8(page.body().await.unwrap().to_vec()).unwrap();
    assert!(html.contains(r#"name="read" value="on" checked"#), "{html}");
    assert!(!html.contains(r#"name="identities" value="on" checked"#));

    // The consent form's answers.
    let decide = |decision: &'static str, grants: &[&'static str]| {
        let mut form = request(&redirect, "S256");
        form.push(("subject", "ops-1".to_owned()));
        form.push(("decision", decision.to_owned()));
        for grant in grants {
            form.push((grant, "on".to_owned()));
        }
        let client = client.clone();
        let issuer = issuer.clone();
        async move {
            let response = client
                .post(format!("{issuer}/authorize"))
                .send_form(&form)
                .await
                .unwrap();
            assert_eq!(response.status(), 303);
            response
                .headers()
                .get("location")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(
        decide("deny", &["read"]).await,
        format!("{redirect}?error=access_denied&state=s-1")
    );
    let code_of = |location: String| {
        let prefix = format!("{redirect}?code=");
        let rest = location
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{location}"));
        let (code, state) = rest.split_once("&state=").unwrap();
        assert_eq!(state, "s-1");
        code.to_owned()
    };
    let exchange = |code: String, verifier: &'static str, redirect: String| {
        let client = client.clone();
        let issuer = issuer.clone();
        async move {
            let mut response = client
                .post(format!("{issuer}/token"))
                .send_form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &redirect),
                    ("client_id", DASHBOARD_CLIENT),
                    ("code_verifier", verifier),
                ])
                .await
                .unwrap();
            assert_eq!(
                response
                    .headers()
                    .get("access-control-allow-origin")
                    .unwrap(),
                "*"
            );
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    };
    // A wrong verifier, or another redirect URI, spends the code for nothing.
    let code = code_of(decide("allow", &["read", "identities"]).await);
    let (status, body) = exchange(
        code,
        "another-verifier-of-forty-three-characters-0123456789",
        redirect.clone(),
    )
    .await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
    let code = code_of(decide("allow", &["read", "identities"]).await);
    let (status, body) = exchange(code, verifier, format!("{}/elsewhere/", app.address)).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
    // The right verifier: a token, once.
    let code = code_of(decide("allow", &["read", "identities"]).await);
    let (status, body) = exchange(code.clone(), verifier, redirect.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read identities");
    let (status, again) = exchange(code, verifier, redirect.clone()).await;
    assert_eq!((status, &again["error"]), (400, &json!("invalid_grant")));
    let token = body["access_token"].as_str().unwrap();
    let response = app
        .get_as(token, "/api/v1/statistics/events/hour/2026-01-01T00")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Without a client at an issuer the dashboard says there is no sign-in;
/// with an issuer that cannot be reached, `sign-in.json` is a 503 the page
/// shows, and the page itself is served with its usual policy.
#[actix_web::test]
async fn the_dashboards_sign_in_without_an_issuer_at_hand() {
    let app = crate::helpers::spawn_app().await;
    let mut response = app
        .client()
        .get(format!("{}/dashboard/sign-in.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, json!({"signIn": null}));

    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = app_with(signing_in_at(issuer, "dashboard"), Limits::default()).await;
    let mut response = app
        .client()
        .get(format!("{}/dashboard/sign-in.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers().get("retry-after").unwrap(), "10");
    let error: ErrorResponse = response.json().await.unwrap();
    assert_eq!(error.error, "temporarily_unavailable");
    let page = app
        .client()
        .get(format!("{}/dashboard/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers().get("content-security-policy").unwrap(),
        acctstream::http::dashboard::DASHBOARD_CSP
    );

    // An issuer that accepts and never answers holds the page a second at
    // most.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", silent.local_addr().unwrap());
    let app = app_with(signing_in_at(issuer, "dashboard"), Limits::default()).await;
    let started = Instant::now();
    let page = app
        .client()
        .get(format!("{}/dashboard/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

//! The embedded verifier against a local JWKS server that counts requests.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use signet::clock::{Clock, ManualClock, UnixTime};
use signet::keys::jwk::b64;
use signet::keys::{Algorithm, SigningKey};
use signet::verifier::{Verifier, VerifyError};

use crate::common::jwks_server::{JwksServer, key, mint};
use crate::common::server::{SIGNER, TestServer};

pub(crate) const T0: UnixTime = UnixTime(1_795_910_400);
pub(crate) const ISS: &str = "https://auth.example.com";

pub(crate) type Claims = Map<String, Value>;

pub(crate) fn header(k: &SigningKey, typ: &str) -> Value {
    json!({"alg": k.alg().as_str(), "kid": k.kid(), "typ": typ})
}

pub(crate) fn claims(now: UnixTime) -> Value {
    json!({"iss": ISS, "sub": "u", "aud": "api", "iat": now.0, "nbf": now.0, "exp": now.0 + 600})
}

pub(crate) fn verifier(url: &str, clock: &ManualClock) -> Verifier {
    Verifier::builder(url)
        .issuer(ISS)
        .audience("api")
        .typ("at+jwt")
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn tokens_from_signet_verify_through_its_jwks() {
    let s = TestServer::start(
        "[purposes.access_token]\nalgorithms = [\"ES256\", \"EdDSA\"]\n",
        T0,
    )
    .await;
    let v = Verifier::builder(format!("{}/.well-known/jwks.json", s.public))
        .issuer(s.public.as_str())
        .purpose("access_token")
        .clock(Arc::new(s.clock.clone()))
        .build()
        .unwrap();
    assert!(
        v.jwks_url()
            .ends_with("/.well-known/jwks/access_token.json"),
        "{}",
        v.jwks_url()
    );
    for alg in ["ES256", "EdDSA"] {
        let r = s
            .post(
                "/v1/tokens",
                Some(SIGNER),
                json!({"purpose": "access_token", "alg": alg, "claims": {"sub": "u"}}),
            )
            .await;
        let signed: Value = r.json().await.unwrap();
        let ok = v
            .verify::<Claims>(signed["token"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(ok.claims["sub"], "u");
        assert_eq!(ok.alg.as_str(), alg);
        assert_eq!(Some(ok.kid.as_str()), signed["kid"].as_str());
    }
    let magic: Value = s
        .post("/v1/tokens", Some(SIGNER), json!({"purpose": "magic_link"}))
        .await
        .json()
        .await
        .unwrap();
    let err = v
        .verify::<Claims>(magic["token"].as_str().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, VerifyError::UnknownKid(_)), "{err:?}");
    assert_eq!(v.stats().fetches, 1, "the second token hit the cache");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_kid_is_fetched_once_however_many_callers_ask() {
    let (old, new) = (key(Algorithm::EdDSA), key(Algorithm::EdDSA));
    let server = JwksServer::start(&[&old]).await;
    let clock = ManualClock::new(T0);
    let v = verifier(&server.url, &clock);
    v.verify::<Claims>(&mint(&old, &header(&old, "at+jwt"), &claims(T0)))
        .await
        .unwrap();
    assert_eq!(server.requests(), 1);

    // Rotation: the JWKS now has the new key, and a token signed with it arrives.
    server.set_keys(&[&old, &new]);
    *server.shared.delay.lock().unwrap() = Duration::from_millis(100);
    clock.advance(Duration::from_secs(31)); // past the cooldown of the first fetch
    let token = mint(&new, &header(&new, "at+jwt"), &claims(clock.now()));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (v, t) = (v.clone(), token.clone());
            tokio::spawn(async move { v.verify::<Claims>(&t).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().kid, new.kid());
    }
    assert_eq!(server.requests(), 2, "one shared refetch");
}

#[tokio::test]
async fn unknown_kids_inside_one_cooldown_cost_at_most_one_request() {
    let k = key(Algorithm::ES256);
    let server = JwksServer::start(&[&k]).await;
    let clock = ManualClock::new(T0);
    let v = verifier(&server.url, &clock);
    for i in 0..1000u32 {
        let mut h = header(&k, "at+jwt");
        h["kid"] = json!(b64(&ring::digest::digest(
            &ring::digest::SHA256,
            &i.to_be_bytes()
        )
        .as_ref()[..16]));
        let err = v
            .verify::<Claims>(&mint(&k, &h, &claims(T0)))
            .await
            .unwrap_err();
        assert!(matches!(err, VerifyError::UnknownKid(_)), "{err:?}");
    }
    // The first verification fetched the set once; no unknown kid added a request.
    assert_eq!(server.requests(), 1);
    // After the cooldown, an unknown kid may trigger one more.
    clock.advance(Duration::from_secs(30));
    let mut h = header(&k, "at+jwt");
    h["kid"] = json!("another-unknown-kid");
    assert!(
        v.verify::<Claims>(&mint(&k, &h, &claims(clock.now())))
            .await
            .is_err()
    );
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_down_jwks_endpoint_is_survived_until_the_stale_limit() {
    let k = key(Algorithm::EdDSA);
    let mut server = JwksServer::start(&[&k]).await;
    let clock = ManualClock::new(T0);
    let v = verifier(&server.url, &clock);
    let token_at = |t: UnixTime| mint(&k, &header(&k, "at+jwt"), &claims(t));
    v.verify::<Claims>(&token_at(T0)).await.unwrap();

    // Conditional GET: past max-age (300 s), the stale key answers at once and
    // a background revalidation gets 304 and keeps the keys.
    clock.advance(Duration::from_secs(301));
    v.verify::<Claims>(&token_at(clock.now())).await.unwrap();
    let not_modified = || {
        server
            .shared
            .not_modified
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    wait_for(|| not_modified() == 1).await;
    assert_eq!(server.requests(), 2);

    server.stop().await;
    // Fresh until +601 s, then stale for up to an hour: still verifying.
    for step in [200, 400, 1800, 3400] {
        clock.set(UnixTime(T0.0 + 301 + step));
        v.verify::<Claims>(&token_at(clock.now()))
            .await
            .unwrap_or_else(|e| panic!("at +{step}s: {e}"));
    }
    wait_for(|| v.stats().failures >= 1).await;
    assert!(v.stats().stale_uses >= 1);
    clock.set(UnixTime(T0.0 + 301 + 300 + 3600));
    let err = v
        .verify::<Claims>(&token_at(clock.now()))
        .await
        .unwrap_err();
    assert!(matches!(err, VerifyError::JwksUnavailable(_)), "{err:?}");
}

/// Waits (bounded) for a background revalidation to land.
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the background refresh did not complete");
}

#[test]
fn plain_http_is_refused_except_to_loopback() {
    let b = |url: &str| Verifier::builder(url).purpose("access_token");
    let err = b("http://auth.example.com/.well-known/jwks.json")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("use https"), "{err}");
    assert!(b("ftp://127.0.0.1/jwks").build().is_err());
    assert!(
        b("http://127.0.0.1:9/.well-known/jwks.json")
            .build()
            .is_ok()
    );
    assert!(
        b("http://auth.example.com/jwks")
            .allow_http()
            .build()
            .is_ok()
    );
    assert!(b("https://auth.example.com/jwks").build().is_ok());
}

#[test]
fn a_verifier_without_a_purpose_is_refused_unless_it_says_any_typ() {
    let err = Verifier::builder("https://auth.example.com/.well-known/jwks.json")
        .issuer("https://auth.example.com")
        .build()
        .unwrap_err();
    assert!(
        matches!(err, signet::verifier::BuildError::NoPurpose),
        "{err}"
    );
    assert!(err.to_string().contains(".purpose("), "{err}");
    assert!(
        Verifier::builder("https://auth.example.com/jwks")
            .typ("custom+jwt")
            .build()
            .is_ok()
    );
    assert!(
        Verifier::builder("https://auth.example.com/jwks")
            .any_typ()
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn the_axum_extractor_answers_401_with_a_bearer_challenge() {
    use axum::Router;
    use axum::routing::get;
    use signet::verifier::Verified;

    let k = key(Algorithm::EdDSA);
    let server = JwksServer::start(&[&k]).await;
    let clock = ManualClock::new(T0);
    let v = verifier(&server.url, &clock);
    let app = Router::new()
        .route(
            "/me",
            get(|who: Verified<Claims>| async move {
                who.claims["sub"].as_str().unwrap_or("").to_owned()
            }),
        )
        .with_state(v);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/me", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = crate::common::server::client();

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let expired = mint(
        &k,
        &header(&k, "at+jwt"),
        &json!({"iss": ISS, "aud": "api", "exp": T0.0 - 100}),
    );
    let r = http.get(&url).bearer_auth(&expired).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\", error_description=\"token expired\""
    );
    let r = http
        .get(&url)
        .bearer_auth(mint(&k, &header(&k, "at+jwt"), &claims(T0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "u");
    // An unknown kid: a fixed phrase, nothing of the kid, URL or cause.
    let stranger = key(Algorithm::EdDSA);
    let r = http
        .get(&url)
        .bearer_auth(mint(&stranger, &header(&stranger, "at+jwt"), &claims(T0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\", error_description=\"unknown signing key\""
    );
}

#[tokio::test]
async fn the_axum_extractor_answers_503_when_the_keys_cannot_be_fetched() {
    use axum::Router;
    use axum::routing::get;
    use signet::verifier::Verified;

    // Nothing listens there: the key set can never be fetched.
    let clock = ManualClock::new(T0);
    let v = verifier("http://127.0.0.1:9/.well-known/jwks.json", &clock);
    let app = Router::new()
        .route("/me", get(|_: Verified<Claims>| async { "never" }))
        .with_state(v);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/me", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let k = key(Algorithm::EdDSA);
    let r = crate::common::server::client()
        .get(&url)
        .bearer_auth(mint(&k, &header(&k, "at+jwt"), &claims(T0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a good token must not be thrown away");
    assert!(r.headers().get("www-authenticate").is_none());
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_verifier_refuses_tokens_naming_an_audience_it_does_not_expect() {
    let k = key(Algorithm::EdDSA);
    let server = JwksServer::start(&[&k]).await;
    let clock = ManualClock::new(T0);
    let no_audience = Verifier::builder(&server.url)
        .issuer(ISS)
        .typ("at+jwt")
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let with_aud = mint(&k, &header(&k, "at+jwt"), &claims(T0));
    let err = no_audience.verify::<Claims>(&with_aud).await.unwrap_err();
    assert!(matches!(err, VerifyError::UnexpectedAudience), "{err:?}");
    let without = mint(
        &k,
        &header(&k, "at+jwt"),
        &json!({"iss": ISS, "exp": T0.0 + 600}),
    );
    assert!(no_audience.verify::<Claims>(&without).await.is_ok());
    // Configured: a missing aud is refused too.
    let err = verifier(&server.url, &clock)
        .verify::<Claims>(&without)
        .await
        .unwrap_err();
    assert!(matches!(err, VerifyError::MissingClaim("aud")), "{err:?}");
}

#[tokio::test]
async fn jwks_fetches_refuse_redirects_errors_and_oversized_bodies() {
    use axum::Router;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;

    let k = key(Algorithm::EdDSA);
    let good = JwksServer::start(&[&k]).await;
    let good_url = good.url.clone();
    let huge = json!({"keys": [], "padding": "x".repeat(signet::verifier::DEFAULT_MAX_BODY + 1)})
        .to_string();
    let app = Router::new()
        .route(
            "/redirect",
            get(move || {
                let to = good_url.clone();
                async move { (StatusCode::FOUND, [(header::LOCATION, to)]).into_response() }
            }),
        )
        .route(
            "/error",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/huge",
            get(move || {
                let body = huge.clone();
                async move { body }
            }),
        )
        .route("/garbage", get(|| async { "not json" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let clock = ManualClock::new(T0);
    let token = mint(&k, &header(&k, "at+jwt"), &claims(T0));
    for path in ["/redirect", "/error", "/huge", "/garbage"] {
        let v = verifier(&format!("{base}{path}"), &clock);
        let err = v.verify::<Claims>(&token).await.unwrap_err();
        assert!(
            matches!(err, VerifyError::JwksUnavailable(_)),
            "{path}: {err:?}"
        );
        assert_eq!(v.stats().failures, 1, "{path}");
    }
    assert_eq!(good.requests(), 0, "the redirect was not followed");
}

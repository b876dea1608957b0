//! The admin API: bearer tokens, signing requests, revocation, logs.

use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};

use crate::common::server::{ADMIN, SIGNER, ServeProcess, TestServer, client};
use crate::common::{Home, MASTER};
use crate::server::{CONFIG, T0, json_of, kids};

#[tokio::test]
async fn admin_routes_need_the_right_bearer_token() {
    let s = TestServer::start(CONFIG, T0).await;
    for (token, path, status) in [
        (None, "/v1/tokens", 401),
        (Some("wrong-token-0123456789abcdef"), "/v1/tokens", 401),
        (Some(SIGNER), "/v1/tokens", 200),
        (Some(SIGNER), "/v1/keys/access_token/rotate", 403),
        (Some(ADMIN), "/v1/keys/access_token/rotate", 409),
    ] {
        let body = if path == "/v1/tokens" {
            json!({"purpose": "access_token"})
        } else {
            json!({})
        };
        let r = s.post(path, token, body).await;
        assert_eq!(r.status(), status, "{token:?} {path}");
        if status >= 400 {
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            json_of(r, path).await;
        }
    }
    let r = s
        .http
        .get(format!("{}/v1/keys", s.admin))
        .bearer_auth(SIGNER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    s.stop().await;
}

#[tokio::test]
async fn signing_requests_are_validated_and_name_the_field() {
    let s = TestServer::start(CONFIG, T0).await;
    let cases = [
        (
            json!({"purpose": "access_token", "claims": {"exp": 1}}),
            422,
            "\"exp\"",
        ),
        (
            json!({"purpose": "access_token", "claims": {"jti": "x"}}),
            422,
            "\"jti\"",
        ),
        (json!({"purpose": "nope"}), 422, "unknown purpose"),
        (
            json!({"purpose": "access_token", "alg": "HS256"}),
            422,
            "alg",
        ),
        (
            json!({"purpose": "access_token", "alg": "RS256"}),
            422,
            "not configured",
        ),
        (
            json!({"purpose": "access_token", "ttl": "1h"}),
            422,
            "token_ttl",
        ),
        (
            json!({"purpose": "access_token", "ttl": "later"}),
            422,
            "ttl",
        ),
        (
            json!({"purpose": "access_token", "exp": 5}),
            422,
            "unknown field `exp`",
        ),
        (json!({"claims": {}}), 422, "missing field `purpose`"),
        (
            json!({"purpose": "access_token", "claims": {"blob": "x".repeat(70_000)}}),
            413,
            "",
        ),
    ];
    for (body, status, needle) in cases {
        let r = s.post("/v1/tokens", Some(SIGNER), body.clone()).await;
        assert_eq!(r.status(), status, "{body:.80}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p = json_of(r, "problem").await;
        assert!(p["detail"].as_str().unwrap().contains(needle), "{p}");
    }
    s.stop().await;
}

#[tokio::test]
async fn issued_tokens_verify_with_the_jsonwebtoken_crate_against_the_public_jwks() {
    let s = TestServer::start(
        "[purposes.access_token]\nalgorithms = [\"RS256\", \"PS256\", \"ES256\", \"EdDSA\"]\n",
        T0,
    )
    .await;
    crate::common::jwt_provider::install();
    let jwks: jsonwebtoken::jwk::JwkSet = s
        .get("/.well-known/jwks/access_token.json")
        .await
        .json()
        .await
        .unwrap();
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        let r = s.post("/v1/tokens", Some(SIGNER), json!({"purpose": "access_token", "alg": alg, "ttl": 120, "claims": {"sub": "u", "aud": "api"}})).await;
        assert_eq!(r.status(), 200);
        let signed = json_of(r, "sign").await;
        let token = signed["token"].as_str().unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.kid.as_deref(), signed["kid"].as_str());
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&["api"]);
        validation.set_issuer(&[s.public.as_str()]);
        // The server's clock is T0; check time claims against it, not the wall clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data =
            jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
                .unwrap();
        let c = &data.claims;
        // Issued a leeway (60 s) in the past, without nbf: see the clock-skew interop test.
        assert_eq!(c["iat"], T0.0 - 60);
        assert!(c.get("nbf").is_none(), "{c}");
        assert_eq!(c["exp"], T0.0 + 120);
        assert_eq!(signed["expires_at"], T0.0 + 120);
        assert!(c["jti"].as_str().unwrap().len() >= 22);
    }
    let metrics = s.get_admin("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("signet_tokens_signed_total{purpose=\"access_token\",alg=\"PS256\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("signet_keys{purpose=\"access_token\",state=\"pending\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("signet_next_rotation_seconds{purpose=\"access_token\"} 172800"),
        "{metrics}"
    );
    s.stop().await;
}

#[test]
fn tokens_never_reach_the_log() {
    let home = Home::new(CONFIG);
    let tokens =
        "ops:admin:very-secret-admin-0123456789,issuer:signer:very-secret-signer-0123456789";
    let serve = ServeProcess::start(&home, &[("SIGNET_ADMIN_TOKENS", tokens)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let issued = rt.block_on(async {
        let http = client();
        let url = format!("http://{}/v1/tokens", serve.admin);
        let body = json!({"purpose": "access_token", "claims": {"sub": "u"}}).to_string();
        let mut issued = String::new();
        for t in [
            "very-secret-signer-0123456789",
            "very-secret-wrong-0123456789",
        ] {
            let r = http
                .post(&url)
                .bearer_auth(t)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                issued = r.json::<Value>().await.unwrap()["token"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            }
        }
        let r = http
            .post(format!(
                "http://{}/v1/keys/access_token/rotate",
                serve.admin
            ))
            .bearer_auth("very-secret-signer-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        issued
    });
    assert!(!issued.is_empty());
    let log = serve.stop().join("\n");
    assert!(
        log.contains("admin authentication failed"),
        "the wrong token's attempt is logged (without the token)"
    );
    assert!(
        log.contains("\"request\""),
        "debug request logs are on: {log}"
    );
    for secret in ["very-secret", &issued, MASTER] {
        assert!(!log.contains(secret), "{secret} appeared in the log");
    }
}

#[tokio::test]
async fn revoking_over_http_unpublishes_the_key_at_once() {
    let s = TestServer::start(CONFIG, T0).await;
    let signed = json_of(s.sign(json!({"purpose": "access_token"})).await, "sign").await;
    let kid = signed["kid"].as_str().unwrap().to_owned();
    let url = format!("/v1/keys/{kid}/revoke");
    assert_eq!(s.post(&url, Some(SIGNER), json!({})).await.status(), 403);
    let r = s.post(&url, Some(ADMIN), json!({})).await;
    assert_eq!(r.status(), 200);
    let keys = json_of(r, "revoke").await;
    let revoked = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap();
    assert_eq!(revoked["state"], "revoked");
    let jwks = json_of(s.get("/.well-known/jwks.json").await, "jwks").await;
    assert!(
        !kids(&jwks).contains(&kid),
        "a revoked key is never published"
    );
    let r = s.verify("access_token", &signed["token"]).await;
    assert_eq!(r.status(), 401);
    let again = json_of(s.sign(json!({"purpose": "access_token"})).await, "sign").await;
    assert_ne!(again["kid"], kid.as_str(), "the pending key took over");
    assert_eq!(
        s.post(&url, Some(ADMIN), json!({})).await.status(),
        409,
        "revoking twice is refused"
    );
    assert_eq!(
        s.post("/v1/keys/no-such-kid/revoke", Some(ADMIN), json!({}))
            .await
            .status(),
        404
    );
    s.stop().await;
}

#[tokio::test]
async fn a_token_too_large_for_verifiers_is_refused_at_sign_time() {
    let s = TestServer::start(CONFIG, T0).await;
    let big = "x".repeat(7_000);
    let r = s
        .sign(json!({"purpose": "access_token", "claims": {"blob": big}}))
        .await;
    assert_eq!(r.status(), 422);
    let p = json_of(r, "sign").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("8192 bytes") && detail.contains("would be 9"),
        "{detail}"
    );
    // Just under the cap signs, and verifies.
    let r = s
        .sign(json!({"purpose": "access_token", "claims": {"blob": "x".repeat(5_500)}}))
        .await;
    assert_eq!(r.status(), 200);
    let signed = json_of(r, "sign").await;
    assert_eq!(
        s.verify("access_token", &signed["token"]).await.status(),
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn forced_rotations_stop_at_the_cap_with_the_reason() {
    let s = TestServer::start("[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n", T0).await;
    let rotate = || {
        s.post(
            "/v1/keys/access_token/rotate",
            Some(ADMIN),
            json!({"force": true}),
        )
    };
    for _ in 0..signet::keys::MAX_RETIRING {
        assert_eq!(rotate().await.status(), 200);
    }
    let r = rotate().await;
    assert_eq!(r.status(), 409);
    let p = json_of(r, "rotate").await;
    assert_eq!(p["type"], "urn:signet:problem:refused");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("8 retiring EdDSA key(s)")
            && detail.contains("most a manual rotation may leave is 8")
            && detail.contains("oldest expires at 2026-11-29T"),
        "{detail}"
    );
    let jwks = json_of(s.get("/.well-known/jwks/access_token.json").await, "jwks").await;
    assert_eq!(
        kids(&jwks).len(),
        8 + 2,
        "8 retiring, the active and the pending key"
    );
    // Revocation stays possible at the cap: it removes keys.
    let active = json_of(s.sign(json!({"purpose": "access_token"})).await, "sign").await;
    let url = format!("/v1/keys/{}/revoke", active["kid"].as_str().unwrap());
    assert_eq!(s.post(&url, Some(ADMIN), json!({})).await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn metrics_are_on_the_admin_listener_only() {
    let s = TestServer::start(CONFIG, T0).await;
    assert_eq!(s.get("/metrics").await.status(), 404, "public port");
    let r = s.get_admin("/metrics").await;
    assert_eq!(r.status(), 200, "scrapers need no token");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("signet_tokens_signed_total")
    );
    s.stop().await;
}

#[tokio::test]
async fn failed_authentications_are_counted_and_slowed_per_address() {
    use signet::http::auth::{FAILURE_WINDOW, MAX_FAILURES};
    let s = TestServer::start(CONFIG, T0).await;
    let body = json!({"purpose": "access_token"});
    for _ in 0..MAX_FAILURES {
        let r = s
            .post("/v1/tokens", Some("guess-0123456789abcdef"), body.clone())
            .await;
        assert_eq!(r.status(), 401);
    }
    // Used up: refused before the token is even looked at, the right one included.
    for token in ["guess-0123456789abcdef", SIGNER] {
        let r = s.post("/v1/tokens", Some(token), body.clone()).await;
        assert_eq!(r.status(), 429);
        assert_eq!(
            r.headers()["retry-after"],
            FAILURE_WINDOW.to_string().as_str()
        );
        let p = json_of(r, "limited").await;
        assert_eq!(p["type"], "urn:signet:problem:too-many-requests");
    }
    let metrics = s.get_admin("/metrics").await.text().await.unwrap();
    assert_eq!(
        crate::failure::metric(&metrics, "signet_admin_auth_failures_total"),
        u64::from(MAX_FAILURES)
    );
    s.clock
        .advance(std::time::Duration::from_secs(FAILURE_WINDOW));
    assert_eq!(s.sign(body).await.status(), 200, "the window passed");
    s.stop().await;
}

#[tokio::test]
async fn a_typ_claim_and_integers_beyond_64_bits_are_refused_and_big_ones_kept() {
    let s = TestServer::start(CONFIG, T0).await;
    let r = s
        .sign(json!({"purpose": "access_token", "claims": {"typ": "at+jwt"}}))
        .await;
    assert_eq!(r.status(), 422);
    let p = json_of(r, "typ").await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("claim \"typ\" is set by signet"),
        "{p}"
    );

    // 2^53 + 1 and 2^64 - 1 are signed exactly, as written.
    let body = r#"{"purpose":"access_token","claims":{"a":9007199254740993,"b":18446744073709551615,"c":-9007199254740993}}"#;
    let r = s
        .http
        .post(format!("{}/v1/tokens", s.admin))
        .bearer_auth(SIGNER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = json_of(r, "sign").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let payload = token.split('.').nth(1).unwrap();
    let text = String::from_utf8(signet::keys::jwk::b64_decode(payload).unwrap()).unwrap();
    for exact in [
        "9007199254740993",
        "18446744073709551615",
        "-9007199254740993",
    ] {
        assert!(text.contains(exact), "{exact} changed: {text}");
    }
    // 2^64 + 1 cannot be kept exactly: refused, naming the claim.
    let r = s
        .http
        .post(format!("{}/v1/tokens", s.admin))
        .bearer_auth(SIGNER)
        .header("content-type", "application/json")
        .body(r#"{"purpose":"access_token","claims":{"id":{"n":[18446744073709551617]}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let p = json_of(r, "huge").await;
    assert!(
        p["detail"].as_str().unwrap().contains("claim \"id\""),
        "{p}"
    );
    s.stop().await;
}

#[tokio::test]
async fn every_error_is_problem_json_even_the_frameworks() {
    let s = TestServer::start(CONFIG, T0).await;
    let problem = |r: reqwest::Response, status: u16| async move {
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        r.json::<Value>().await.unwrap()
    };
    // 404 on both listeners.
    problem(s.get("/nope").await, 404).await;
    problem(s.get_admin("/nope").await, 404).await;
    // 405: a method the route lacks; the allowed ones are named.
    let r = s
        .http
        .post(format!("{}/.well-known/jwks.json", s.public))
        .send()
        .await
        .unwrap();
    let p = problem(r, 405).await;
    assert!(
        p["detail"].as_str().unwrap().contains("method not allowed"),
        "{p}"
    );
    // 415: a body that is not JSON.
    let r = s
        .http
        .post(format!("{}/v1/tokens", s.admin))
        .bearer_auth(SIGNER)
        .header("content-type", "text/plain")
        .body("purpose=access_token")
        .send()
        .await
        .unwrap();
    let p = problem(r, 415).await;
    assert!(
        p["detail"].as_str().unwrap().contains("application/json"),
        "{p}"
    );
    let r = s
        .http
        .post(format!("{}/v1/keys/access_token/rotate", s.admin))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body("force")
        .send()
        .await
        .unwrap();
    problem(r, 415).await;
    s.stop().await;
}

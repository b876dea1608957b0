//! `signet serve`: public and admin HTTP, against a real server on port 0.

use std::time::Duration;

use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};
use signet::clock::UnixTime;

use crate::common::server::{ADMIN, SIGNER, ServeProcess, TestServer, client};
use crate::common::{Home, MASTER};

/// 2026-11-29T00:00:00Z; the next monthly boundary is 2026-12-01.
const T0: UnixTime = UnixTime(1_795_910_400);
const DEC1: UnixTime = UnixTime(1_796_083_200);
const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"ES256\", \"EdDSA\"]\n[purposes.refresh_token]\nenabled = false\n[purposes.reset_password_link]\nenabled = false\n";

/// Fails if any object anywhere in `v` has a private JWK member.
fn assert_no_private(v: &Value, what: &str) {
    match v {
        Value::Object(map) => {
            for k in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(!map.contains_key(k), "{what}: private member {k:?} in {v}");
            }
            map.values().for_each(|x| assert_no_private(x, what));
        }
        Value::Array(items) => items.iter().for_each(|x| assert_no_private(x, what)),
        _ => {}
    }
}

async fn json_of(r: reqwest::Response, what: &str) -> Value {
    let v: Value = r.json().await.unwrap();
    assert_no_private(&v, what);
    v
}

/// `GET /v1/keys` with the admin token.
async fn admin_keys(s: &TestServer) -> Value {
    let r = s
        .http
        .get(format!("{}/v1/keys", s.admin))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    json_of(r, "keys").await
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn jwks_lists_active_and_pending_keys_with_public_members_only() {
    let s = TestServer::start(CONFIG, T0).await;
    let r = s.get("/.well-known/jwks/access_token.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    assert_eq!(r.headers()["content-type"], "application/json");
    let jwks = json_of(r, "jwks").await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4, "active + pending for ES256 and EdDSA");
    for k in keys {
        assert_eq!(k["use"], "sig");
        let expected: &[&str] = match k["alg"].as_str().unwrap() {
            "ES256" => &["alg", "crv", "kid", "kty", "use", "x", "y"],
            "EdDSA" => &["alg", "crv", "kid", "kty", "use", "x"],
            other => panic!("unexpected alg {other}"),
        };
        let mut members: Vec<_> = k.as_object().unwrap().keys().cloned().collect();
        members.sort();
        assert_eq!(members, expected);
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.clone()).unwrap();
        signet::crypto_provider::install();
        assert_eq!(
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            k["kid"].as_str().unwrap(),
            "kid is the RFC 7638 thumbprint"
        );
    }
    let all = json_of(s.get("/.well-known/jwks.json").await, "jwks").await;
    assert_eq!(kids(&all).len(), 6, "plus magic_link's two keys");
    let r = s.get("/.well-known/jwks/nope.json").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let doc = json_of(
        s.get("/.well-known/openid-configuration").await,
        "discovery",
    )
    .await;
    assert_eq!(doc["issuer"], s.public.as_str());
    assert_eq!(
        doc["jwks_uri"],
        format!("{}/.well-known/jwks.json", s.public)
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
    assert_eq!(s.get("/healthz").await.status(), 200);
    assert_eq!(s.get("/readyz").await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn etag_answers_304_and_changes_after_rotation() {
    let s = TestServer::start(CONFIG, T0).await;
    let url = format!("{}/.well-known/jwks/access_token.json", s.public);
    let r = s.http.get(&url).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong ETag: {etag}"
    );
    let before = kids(&r.json().await.unwrap());
    let r = s
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.bytes().await.unwrap().is_empty());
    let head = s.http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"], etag.as_str());

    s.clock.advance(Duration::from_secs(600));
    let r = s
        .post("/v1/keys/access_token/rotate", Some(ADMIN), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    json_of(r, "rotate").await;
    let r = s
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the keyring changed");
    assert_ne!(r.headers()["etag"], etag.as_str());
    let after = kids(&r.json().await.unwrap());
    let new: Vec<_> = after.iter().filter(|k| !before.contains(k)).collect();
    assert_eq!(new.len(), 2, "a new pending key per algorithm: {after:?}");
    s.stop().await;
}

#[tokio::test]
async fn crossing_a_boundary_switches_keys_and_old_tokens_still_verify() {
    let s = TestServer::start(CONFIG, T0).await;
    let sign = || {
        s.post(
            "/v1/tokens",
            Some(SIGNER),
            json!({"purpose": "access_token", "claims": {"sub": "u"}}),
        )
    };
    let before = json_of(sign().await, "sign").await;
    let keys = admin_keys(&s).await;
    let pending: Vec<String> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| {
            k["purpose"] == "access_token" && k["alg"] == "ES256" && k["state"] == "pending"
        })
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pending.len(), 1);

    // Move to one minute before the boundary, sign, then across it.
    s.clock.set(UnixTime(DEC1.0 - 60));
    let late = json_of(sign().await, "sign").await;
    assert_eq!(late["kid"], before["kid"]);
    s.clock.set(DEC1);
    let after = json_of(sign().await, "sign").await;
    assert_eq!(
        after["kid"].as_str().unwrap(),
        pending[0],
        "the former pending key signs"
    );
    let jwks = json_of(s.get("/.well-known/jwks/access_token.json").await, "jwks").await;
    assert!(
        kids(&jwks).contains(&before["kid"].as_str().unwrap().to_owned()),
        "the old key stays published"
    );
    let keys = admin_keys(&s).await;
    let old = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == before["kid"])
        .unwrap();
    assert_eq!(old["state"], "retiring");

    // The token signed a minute before the boundary still verifies.
    let r = s
        .post(
            "/v1/verify",
            Some(SIGNER),
            json!({"purpose": "access_token", "token": late["token"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v = json_of(r, "verify").await;
    assert_eq!(v["kid"], before["kid"]);
    assert_eq!(v["claims"]["sub"], "u");
    // After it expires, it does not.
    s.clock.set(UnixTime(DEC1.0 + 600));
    let r = s
        .post(
            "/v1/verify",
            Some(SIGNER),
            json!({"purpose": "access_token", "token": late["token"]}),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    let p = json_of(r, "verify").await;
    assert_eq!(p["type"], "urn:signet:problem:invalid-token");
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    s.stop().await;
}

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
    signet::crypto_provider::install();
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
        assert_eq!(c["iat"], T0.0);
        assert_eq!(c["nbf"], T0.0);
        assert_eq!(c["exp"], T0.0 + 120);
        assert_eq!(signed["expires_at"], T0.0 + 120);
        assert!(c["jti"].as_str().unwrap().len() >= 22);
    }
    let metrics = s.get("/metrics").await.text().await.unwrap();
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
        log.contains("\"request\""),
        "debug request logs are on: {log}"
    );
    for secret in ["very-secret", &issued, MASTER] {
        assert!(!log.contains(secret), "{secret} appeared in the log");
    }
}

#[test]
fn servers_and_the_cli_on_one_keys_directory_converge() {
    // Home::new appends to the [store] table.
    let home = Home::new("poll_interval = \"1s\"\n");
    let a = ServeProcess::start(&home, &[]);
    let b = ServeProcess::start(&home, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let jwks = |addr: std::net::SocketAddr| async move {
        client()
            .get(format!("http://{addr}/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let converge = |before: Option<String>| {
        rt.block_on(async {
            // Bounded: the poll interval is 1s; allow 15s on a loaded machine.
            for _ in 0..150 {
                let (x, y) = (jwks(a.public).await, jwks(b.public).await);
                if x == y && before.as_ref() != Some(&x) {
                    return x;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the two servers did not converge");
        })
    };
    let first = converge(None);
    home.ok(&["keys", "rotate", "--force"]);
    let second = converge(Some(first.clone()));
    assert_ne!(first, second);
    a.stop();
    b.stop();
}

#[tokio::test]
async fn revoking_over_http_unpublishes_the_key_at_once() {
    let s = TestServer::start(CONFIG, T0).await;
    let signed = json_of(
        s.post(
            "/v1/tokens",
            Some(SIGNER),
            json!({"purpose": "access_token"}),
        )
        .await,
        "sign",
    )
    .await;
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
    let r = s
        .post(
            "/v1/verify",
            Some(SIGNER),
            json!({"purpose": "access_token", "token": signed["token"]}),
        )
        .await;
    assert_eq!(r.status(), 401);
    let again = json_of(
        s.post(
            "/v1/tokens",
            Some(SIGNER),
            json!({"purpose": "access_token"}),
        )
        .await,
        "sign",
    )
    .await;
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

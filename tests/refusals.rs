//! Every refusal names its reason, the same in `/v1/verify` (`reason`), in
//! `signet token verify` and in the verifier's error; a route asked of the
//! wrong listener, or an unknown purpose, points at the fix; a token signed
//! under another issuer says where the server's issuer came from.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use signet::clock::{Clock, SystemClock};
use signet::service::LegacySecret;
use signet::verifier::{Verifier, VerifyError};
use zeroize::Zeroizing;

use crate::common::server::{ADMIN, SIGNER, ServeProcess, TOKENS, TestServer, client};
use crate::common::{Home, code};
use crate::server::T0;

const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\ntoken_ttl = \"10m\"\n[purposes.refresh_token]\nalgorithms = [\"EdDSA\"]\n[purposes.magic_link]\nalgorithms = [\"EdDSA\"]\n";

async fn sign(s: &TestServer, purpose: &str) -> (String, String) {
    let r = s.sign(json!({"purpose": purpose})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["kid"].as_str().unwrap().to_owned(),
    )
}

/// `/v1/verify` as `purpose`: the status, the problem's `reason` and its detail.
async fn refusal(s: &TestServer, purpose: &str, token: &str) -> (u16, String, String) {
    let r = s.verify(purpose, &json!(token)).await;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["reason"].as_str().unwrap_or("-").to_owned(),
        body["detail"].as_str().unwrap_or("").to_owned(),
    )
}

/// `signet token verify` against the store: exit code and stderr.
fn cli_refusal(s: &TestServer, purpose: &str, token: &str) -> (i32, String) {
    code(
        &s.home
            .run(&["token", "verify", "--purpose", purpose, token]),
    )
}

fn verifier(s: &TestServer) -> Verifier {
    Verifier::builder(format!("{}/.well-known/jwks.json", s.public))
        .issuer(s.public.as_str())
        .purpose("access_token")
        .clock(Arc::new(s.clock.clone()))
        .build()
        .unwrap()
}

/// `token` with its header replaced by `header` (the signature kept).
fn with_header(token: &str, header: &Value) -> String {
    let rest = token.split_once('.').unwrap().1;
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

/// An HS256 token without kid, as an application signed it with `secret`.
fn hs256(secret: &str, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[tokio::test]
async fn each_refusal_names_its_reason_in_the_api_the_cli_and_the_verifier() {
    // The CLI reads the real clock: the server's starts there.
    let s = TestServer::start(CONFIG, SystemClock.now()).await;
    let v = verifier(&s);

    // Bad signature: the last byte of the signature changed.
    let (good, kid) = sign(&s, "access_token").await;
    let mut bad = good.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'Q' } else { 'A' });
    assert_eq!(refusal(&s, "access_token", &bad).await.1, "bad_signature");
    assert!(matches!(
        v.verify::<Value>(&bad).await,
        Err(VerifyError::BadSignature)
    ));

    // Unknown kid.
    let unknown = with_header(
        &good,
        &json!({"alg": "EdDSA", "kid": "AAAAAAAAAAAAAAAAAAAAAA", "typ": "at+jwt"}),
    );
    let (status, reason, detail) = refusal(&s, "access_token", &unknown).await;
    assert_eq!((status, reason.as_str()), (401, "unknown_kid"), "{detail}");
    let (exit, err) = cli_refusal(&s, "access_token", &unknown);
    assert_eq!(exit, 1, "{err}");
    assert!(err.contains("(unknown_kid)"), "{err}");

    // Wrong purpose: a refresh token offered as an access token names both.
    let (refresh, refresh_kid) = sign(&s, "refresh_token").await;
    let (status, reason, detail) = refusal(&s, "access_token", &refresh).await;
    assert_eq!((status, reason.as_str()), (401, "wrong_purpose"));
    assert!(
        detail.contains(&refresh_kid) && detail.contains("refresh_token"),
        "{detail}"
    );
    // A verifier of access tokens given the refresh tokens' key set: the
    // key is found, the type (typ) is not its purpose's.
    let crossed = Verifier::builder(format!("{}/.well-known/jwks/refresh_token.json", s.public))
        .issuer(s.public.as_str())
        .purpose("access_token")
        .clock(Arc::new(s.clock.clone()))
        .build()
        .unwrap();
    let e = crossed.verify::<Value>(&refresh).await.unwrap_err();
    assert_eq!(e.reason(), "wrong_purpose", "{e}");
    let (_, err) = cli_refusal(&s, "access_token", &refresh);
    assert!(err.contains("(wrong_purpose)"), "{err}");

    // Consumed: a magic link used twice.
    let (link, _) = sign(&s, "magic_link").await;
    let consume = json!({"purpose": "magic_link", "token": link});
    let r = s
        .post("/v1/tokens/consume", Some(SIGNER), consume.clone())
        .await;
    assert_eq!(r.status(), 200);
    let r = s.post("/v1/tokens/consume", Some(SIGNER), consume).await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "consumed", "{body}");
    assert_eq!(refusal(&s, "magic_link", &link).await.1, "consumed");

    // Revoked token.
    let (revoked, _) = sign(&s, "access_token").await;
    let r = s
        .post(
            "/v1/tokens/revoke",
            Some(SIGNER),
            json!({"purpose": "access_token", "token": revoked}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        refusal(&s, "access_token", &revoked).await.1,
        "revoked_token"
    );
    let (_, err) = cli_refusal(&s, "access_token", &revoked);
    assert!(err.contains("(revoked_token)"), "{err}");

    // Expired: past token_ttl plus leeway (the key still published).
    s.clock.advance(Duration::from_secs(600 + 60));
    let (status, reason, _) = refusal(&s, "access_token", &good).await;
    assert_eq!((status, reason.as_str()), (401, "expired"));
    assert!(matches!(
        v.verify::<Value>(&good).await,
        Err(VerifyError::Expired)
    ));

    // Revoked key: a token it signed is refused as such, not as unknown.
    let (fresh, fresh_kid) = sign(&s, "access_token").await;
    assert_eq!(fresh_kid, kid);
    let r = s
        .post(&format!("/v1/keys/{kid}/revoke"), Some(ADMIN), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let (status, reason, detail) = refusal(&s, "access_token", &fresh).await;
    assert_eq!((status, reason.as_str()), (401, "revoked_key"), "{detail}");
    assert!(detail.contains(&kid), "{detail}");
    s.clock.advance(Duration::from_secs(16));
    let e = v.verify::<Value>(&fresh).await.unwrap_err();
    assert_eq!(e.reason(), "revoked_key", "{e}");
    s.stop().await;
}

#[tokio::test]
async fn a_token_of_a_revoked_legacy_secret_is_refused_as_a_revoked_key_and_nbf_is_named() {
    let s = TestServer::start(CONFIG, SystemClock.now()).await;
    let secret = "current-secret-from-dotenv-0123456789";
    s.service
        .import_legacy(
            "access_token",
            &[LegacySecret {
                label: "ACCESS_TOKEN_SECRET".into(),
                secret: Zeroizing::new(secret.as_bytes().to_vec()),
            }],
            None,
            None,
        )
        .unwrap();
    let now = s.clock.now().0;
    let token = hs256(secret, &json!({"sub": "u1", "exp": now + 300}));
    assert_eq!(s.verify("access_token", &json!(token)).await.status(), 200);
    let later = hs256(
        secret,
        &json!({"sub": "u1", "exp": now + 300, "nbf": now + 200}),
    );
    assert_eq!(refusal(&s, "access_token", &later).await.1, "not_yet_valid");
    let other = hs256(
        "another-secret-0123456789abcdef",
        &json!({"exp": now + 300}),
    );
    assert_eq!(refusal(&s, "access_token", &other).await.1, "bad_signature");

    s.service.revoke("ACCESS_TOKEN_SECRET").unwrap();
    let (status, reason, detail) = refusal(&s, "access_token", &token).await;
    assert_eq!((status, reason.as_str()), (401, "revoked_key"), "{detail}");
    assert!(detail.contains("ACCESS_TOKEN_SECRET"), "{detail}");
    // Another secret's token is still a bad signature, not a revocation.
    assert_eq!(refusal(&s, "access_token", &other).await.1, "bad_signature");
    let (_, err) = cli_refusal(&s, "access_token", &token);
    assert!(err.contains("(revoked_key)"), "{err}");
    s.stop().await;
}

#[tokio::test]
async fn a_route_of_the_other_listener_and_an_unknown_purpose_point_at_the_fix() {
    let s = TestServer::start(CONFIG, T0).await;
    for path in ["/v1/keys", "/metrics"] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.unwrap();
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("admin listener (server.admin_addr"),
            "{path}: {detail}"
        );
    }
    let r = s.get_admin("/.well-known/jwks.json").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("public listener (server.public_addr"),
        "{detail}"
    );
    // A route neither serves stays a plain 404.
    let body: Value = s.get("/nothing").await.json().await.unwrap();
    assert_eq!(body["detail"], "no such route");

    let known = "access_token, magic_link, refresh_token";
    let r = s.verify("acess_token", &json!("x.y.z")).await;
    assert_eq!(r.status(), 422);
    let detail = r.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("\"acess_token\"") && detail.contains(known),
        "{detail}"
    );
    let r = s.sign(json!({"purpose": "acess_token"})).await;
    let detail = r.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains(known), "{detail}");
    let r = s.get("/.well-known/jwks/acess_token.json").await;
    assert_eq!(r.status(), 404);
    let detail = r.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains(known), "{detail}");
    let (exit, err) = code(&s.home.run(&["token", "sign", "--purpose", "acess_token"]));
    assert_eq!(exit, 2, "{err}");
    assert!(err.contains(known), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_token_refused_for_its_issuer_names_both_issuers_and_where_the_server_took_its_own() {
    // No issuer set: `serve --public-addr 127.0.0.1:0` follows its own port,
    // the CLI follows server.public_addr (the default, 127.0.0.1:8080).
    let home = Home::new("[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n");
    let serve = ServeProcess::start(&home, &[("SIGNET_ADMIN_TOKENS", TOKENS)]);
    let token = home.ok(&["token", "sign", "--purpose", "access_token"]);
    let token = token.trim();
    let r = client()
        .post(format!("http://{}/v1/verify", serve.admin))
        .bearer_auth(SIGNER)
        .json(&json!({"purpose": "access_token", "token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert_eq!(body["reason"], "wrong_issuer");
    let served = format!("http://{}", serve.public);
    assert!(
        detail.contains("\"http://127.0.0.1:8080\"")
            && detail.contains(&served)
            && detail.contains("--public-addr")
            && detail.contains("SIGNET_ISSUER"),
        "{detail}"
    );
    let log = serve.stop();
    assert!(
        log.iter()
            .any(|l| l.contains("issuer is not set, so it follows this server's public address")),
        "no warning at start"
    );
}

//! `signet serve`: public and admin HTTP, against a real server on port 0.

use std::time::Duration;

use serde_json::{Value, json};
use signet::clock::UnixTime;

use crate::common::Home;
use crate::common::server::{ADMIN, SIGNER, ServeProcess, TestServer, client};

/// 2026-11-29T00:00:00Z; the next monthly boundary is 2026-12-01.
pub(crate) const T0: UnixTime = UnixTime(1_795_910_400);
pub(crate) const DEC1: UnixTime = UnixTime(1_796_083_200);
pub(crate) const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"ES256\", \"EdDSA\"]\n[purposes.refresh_token]\nenabled = false\n[purposes.reset_password_link]\nenabled = false\n";

/// Fails if any object anywhere in `v` has a private JWK member.
pub(crate) fn assert_no_private(v: &Value, what: &str) {
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

pub(crate) async fn json_of(r: reqwest::Response, what: &str) -> Value {
    let v: Value = r.json().await.unwrap();
    assert_no_private(&v, what);
    v
}

/// `GET /v1/keys` with the admin token.
pub(crate) async fn admin_keys(s: &TestServer) -> Value {
    let r = s
        .http
        .get(format!("{}/v1/keys", s.admin))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    json_of(r, "keys").await
}

pub(crate) fn kids(jwks: &Value) -> Vec<String> {
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
        crate::common::jwt_provider::install();
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
    // Discovery names the JWKS of the purposes third parties verify: access tokens only.
    assert_eq!(
        doc["jwks_uri"],
        format!("{}/.well-known/jwks/third-party.json", s.public)
    );
    let third = json_of(s.get("/.well-known/jwks/third-party.json").await, "jwks").await;
    let access = json_of(s.get("/.well-known/jwks/access_token.json").await, "jwks").await;
    assert_eq!(kids(&third), kids(&access));
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
    let r = s.verify("access_token", &late["token"]).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r, "verify").await;
    assert_eq!(v["kid"], before["kid"]);
    assert_eq!(v["claims"]["sub"], "u");
    // After it expires, it does not.
    s.clock.set(UnixTime(DEC1.0 + 600));
    let r = s.verify("access_token", &late["token"]).await;
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
async fn the_routers_are_values_tests_drive_without_a_socket() {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let s = TestServer::start(CONFIG, T0).await;
    let state = signet::http::AppState::new(
        s.service.clone(),
        signet::http::AdminTokens::parse(crate::common::server::TOKENS).unwrap(),
    );
    let public = signet::http::public_router(state.clone());
    let r = public
        .clone()
        .oneshot(
            Request::get("/.well-known/jwks/magic_link.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(kids(&body).len(), 2);
    let r = public
        .oneshot(Request::get("/v1/keys").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the admin API is not on the public router");
    let admin = signet::http::admin_router(state);
    let r = admin
        .oneshot(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the JWKS is not on the admin router");
    s.stop().await;
}

/// A supervisor may send SIGTERM the moment signet says it is listening:
/// the handler is in place by then, so that is a graceful shutdown, not the
/// default action that kills the process (seen as a flaky exit by signal 15).
#[test]
fn a_sigterm_as_soon_as_it_says_listening_is_a_graceful_shutdown() {
    let home = crate::common::Home::new("");
    for _ in 0..5 {
        let serve = crate::common::server::ServeProcess::start(&home, &[]);
        let log = serve.stop().join("\n");
        assert!(log.contains("shutting down"), "{log}");
    }
}

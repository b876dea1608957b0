//! Attacks by someone who can write the keys directory but does not hold the
//! master key: forged keys, cleared revocations, rollbacks, vanished files.

use serde_json::{Value, json};
use signet::clock::UnixTime;
use signet::keys::token::{encode_header, sign_compact};
use signet::keys::{Algorithm, SigningKey, generate};

use crate::common::server::{ADMIN, TestServer};
use crate::common::{Home, code};
use crate::failure::metric;
use crate::server::{T0, json_of, kids};

const ED: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n";

fn keyring_path(s: &TestServer) -> std::path::PathBuf {
    s.home.keys().join("access_token.json")
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write_json(path: &std::path::Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

async fn active_kid(s: &TestServer) -> String {
    let signed = json_of(s.sign(json!({"purpose": "access_token"})).await, "sign").await;
    signed["kid"].as_str().unwrap().to_owned()
}

async fn revoke(s: &TestServer, kid: &str) -> u16 {
    s.post(&format!("/v1/keys/{kid}/revoke"), Some(ADMIN), json!({}))
        .await
        .status()
        .as_u16()
}

async fn ready_reason(s: &TestServer) -> Value {
    let r = s.get("/readyz").await;
    assert_eq!(r.status(), 503);
    r.json::<Value>().await.unwrap()["problems"][0].clone()
}

#[tokio::test]
async fn a_public_key_added_by_hand_is_never_published_nor_trusted() {
    let s = TestServer::start(ED, T0).await;
    // The attacker's own key, added as a retiring access_token key.
    let mine = SigningKey::from_pkcs8(Algorithm::EdDSA, &generate(Algorithm::EdDSA, 2048).unwrap())
        .unwrap();
    let path = keyring_path(&s);
    let mut doc = read_json(&path);
    doc["keys"].as_array_mut().unwrap().push(json!({
        "kid": mine.kid(), "alg": "EdDSA", "jwk": mine.public_jwk(),
        "published_at": T0.0 - 100, "activates_at": T0.0 - 100,
        "retires_at": T0.0 - 50, "expires_at": T0.0 + 86_400,
    }));
    write_json(&path, &doc);
    let before = std::fs::read(&path).unwrap();
    let claims = json!({"iss": s.public, "sub": "admin", "iat": T0.0, "exp": T0.0 + 600});
    let forged = sign_compact(
        |m| mine.sign(m),
        &encode_header(Algorithm::EdDSA, mine.kid(), "at+jwt"),
        claims.to_string().as_bytes(),
    )
    .unwrap();
    s.service.tick().unwrap_err();

    let jwks = json_of(s.get("/.well-known/jwks.json").await, "jwks").await;
    assert!(
        !kids(&jwks).contains(&mine.kid().to_owned()),
        "forged key published"
    );
    assert_eq!(s.verify("access_token", &json!(forged)).await.status(), 401);
    let problem = ready_reason(&s).await;
    assert_eq!(problem["purpose"], "access_token");
    assert_eq!(problem["reason"], "the keyring fails authentication");
    // signet never rewrites the altered file.
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // The real binary, against the store: an error naming the keyring.
    let (status, err) =
        code(
            &s.home
                .run(&["token", "verify", "--purpose", "access_token", &forged]),
        );
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("altered outside signet"), "{err}");
    s.stop().await;
}

#[tokio::test]
async fn a_cleared_revocation_is_refused() {
    let s = TestServer::start(ED, T0).await;
    let kid = active_kid(&s).await;
    assert_eq!(revoke(&s, &kid).await, 200);
    let path = keyring_path(&s);
    let mut doc = read_json(&path);
    for key in doc["keys"].as_array_mut().unwrap() {
        if key["kid"] == kid.as_str() {
            key["revoked_at"] = Value::Null;
        }
    }
    write_json(&path, &doc);
    s.clock.advance(std::time::Duration::from_secs(1));
    s.service.refresh();
    let jwks = json_of(s.get("/.well-known/jwks.json").await, "jwks").await;
    assert!(
        !kids(&jwks).contains(&kid),
        "the revoked key is published again"
    );
    assert_ne!(active_kid(&s).await, kid);
    assert_eq!(
        ready_reason(&s).await["reason"],
        "the keyring fails authentication"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_running_server_refuses_a_rolled_back_keyring() {
    let s = TestServer::start(ED, T0).await;
    let path = keyring_path(&s);
    let backup = std::fs::read(&path).unwrap();
    let kid = active_kid(&s).await;
    assert_eq!(revoke(&s, &kid).await, 200);
    // Put back the authentic copy from before the revocation.
    std::fs::write(&path, &backup).unwrap();
    s.clock.advance(std::time::Duration::from_secs(1));
    s.service.refresh();
    let jwks = json_of(s.get("/.well-known/jwks.json").await, "jwks").await;
    assert!(
        !kids(&jwks).contains(&kid),
        "the revoked key is published again"
    );
    assert_ne!(active_kid(&s).await, kid, "the revoked key signs again");
    assert_eq!(
        ready_reason(&s).await["reason"],
        "the store's keyring is older than the one served"
    );
    let metrics = s.get_admin("/metrics").await.text().await.unwrap();
    assert!(
        metric(
            &metrics,
            "signet_store_errors_total{purpose=\"access_token\"}"
        ) >= 1
    );
    s.stop().await;
}

#[tokio::test]
async fn a_keyring_moved_aside_is_replaced_by_the_new_one() {
    let s = TestServer::start(ED, T0).await;
    let old = active_kid(&s).await;
    let path = keyring_path(&s);
    std::fs::rename(&path, s.home.keys().join("access_token.json.bak")).unwrap();
    // The periodic check starts a new keyring (generation 1, like the old one).
    s.clock.advance(std::time::Duration::from_secs(1));
    s.service.tick().unwrap();
    let new = active_kid(&s).await;
    assert_ne!(new, old, "still signing with a key that is in no file");
    let stored = read_json(&path);
    assert_eq!(stored["generation"], 1);
    assert!(
        stored["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == new.as_str())
    );
    assert_eq!(revoke(&s, &new).await, 200);
    let jwks = json_of(s.get("/.well-known/jwks.json").await, "jwks").await;
    assert!(!kids(&jwks).contains(&old));
    s.stop().await;
}

#[test]
fn keyrings_from_an_earlier_signet_are_used_only_once_authenticated() {
    let home = Home::new(ED);
    home.ok(&["token", "sign", "--purpose", "access_token"]);
    let path = home.keys().join("access_token.json");
    // What an earlier signet wrote: no identity, no authentication.
    let mut doc = read_json(&path);
    let map = doc.as_object_mut().unwrap();
    map.remove("id");
    map.remove("mac");
    write_json(&path, &doc);

    let (status, err) = code(&home.run(&["keys", "list"]));
    assert_eq!(status, 2);
    assert!(err.contains("signet keys authenticate"), "{err}");
    let out = home.ok(&["keys", "authenticate"]);
    assert!(out.contains("authenticated: access_token"), "{out}");
    home.ok(&["keys", "list"]);
    let token = home.ok(&["token", "sign", "--purpose", "access_token"]);
    home.ok(&["token", "verify", "--purpose", "access_token", token.trim()]);
    assert!(
        home.ok(&["keys", "authenticate"])
            .contains("already authenticated"),
        "authenticating twice changes nothing"
    );

    // An authenticated keyring altered afterwards is never re-authenticated.
    let mut doc = read_json(&path);
    doc["keys"][0]["expires_at"] = json!(UnixTime(4_000_000_000).0);
    write_json(&path, &doc);
    let (status, err) = code(&home.run(&["keys", "authenticate"]));
    assert_eq!(status, 2);
    assert!(err.contains("altered outside signet"), "{err}");
}

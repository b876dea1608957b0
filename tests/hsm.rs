//! Private keys inside a PKCS#11 token, against the real SoftHSM2 module:
//! `signet serve` runs as a child process with a throwaway token
//! (`common::hsm`), and the token is inspected with python-pkcs11, not with
//! signet. They are `#[ignore]`d unless asked for (`cargo test --
//! --include-ignored`, as the README's test command does); asked for
//! without SoftHSM2 installed, they fail naming tests/setup.sh.

use std::time::Duration;

use serde_json::{Value, json};
use signet::keys::{Algorithm, PublicJwk};
use signet::verifier::Verifier;

use crate::backends::ring_accepts;
use crate::common::hsm::{PIN, SoftHsm};
use crate::common::server::{ADMIN, SIGNER, ServeProcess, TOKENS, client};
use crate::common::{Home, code};
use crate::interop;

const ALGS: [&str; 4] = ["EdDSA", "RS256", "PS256", "ES256"];

/// `hsm`'s token for every purpose but magic_link, which stays in software.
fn config(hsm: &SoftHsm, algorithms: &str) -> String {
    format!(
        "{}[purposes.access_token]\nalgorithms = {algorithms}\n[purposes.magic_link]\nsigner = \"software\"\n[purposes.refresh_token]\nenabled = false\n[purposes.reset_password_link]\nenabled = false\n",
        hsm.signer_config()
    )
}

/// A new token labelled `label`, a home whose access_token keys (of
/// `algorithms`) are made in it, and `signet serve` on them.
fn running(label: &str, algorithms: &str) -> (SoftHsm, Home, ServeProcess) {
    let hsm = SoftHsm::new(label);
    let home = Home::new(&config(&hsm, algorithms));
    let serve = start(&hsm, &home);
    (hsm, home, serve)
}

/// A `signet` command on `home` that reaches `hsm`'s token.
fn signet_cmd(home: &Home, hsm: &SoftHsm, args: &[&str]) -> std::process::Command {
    let mut cmd = home.cmd(args);
    for (k, v) in hsm.env() {
        cmd.env(k, v);
    }
    cmd
}

fn start(hsm: &SoftHsm, home: &Home) -> ServeProcess {
    let mut env = hsm.env();
    env.push(("SIGNET_ADMIN_TOKENS", TOKENS.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServeProcess::start(home, &env)
}

async fn sign(
    http: &reqwest::Client,
    serve: &ServeProcess,
    purpose: &str,
    alg: &str,
) -> reqwest::Response {
    http.post(format!("http://{}/v1/tokens", serve.admin))
        .bearer_auth(SIGNER)
        .json(&json!({"purpose": purpose, "alg": alg, "claims": {"sub": "user-1", "aud": "api"}}))
        .send()
        .await
        .unwrap()
}

async fn signed(http: &reqwest::Client, serve: &ServeProcess, alg: &str) -> String {
    let r = sign(http, serve, "access_token", alg).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "signing {alg}: {body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn admin(
    http: &reqwest::Client,
    serve: &ServeProcess,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = http
        .post(format!("http://{}{path}", serve.admin))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn keys(http: &reqwest::Client, serve: &ServeProcess) -> Vec<Value> {
    let r = http
        .get(format!("http://{}/v1/keys", serve.admin))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap().as_array().unwrap().clone()
}

async fn metrics(http: &reqwest::Client, serve: &ServeProcess) -> String {
    let r = http
        .get(format!("http://{}/metrics", serve.admin))
        .send()
        .await
        .unwrap();
    r.text().await.unwrap()
}

/// The labels signet's token objects must have: one per key whose private
/// half the store says is in the token.
fn expected_labels(keys: &[Value], token: &str) -> Vec<String> {
    let mut labels: Vec<String> = keys
        .iter()
        .filter(|k| k["private"] == format!("token {token}"))
        .map(|k| {
            format!(
                "signet:{}:{}",
                k["purpose"].as_str().unwrap(),
                k["kid"].as_str().unwrap()
            )
        })
        .collect();
    labels.sort();
    labels
}

fn header_kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value =
        serde_json::from_slice(&signet::keys::jwk::b64_decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// Verifies `token` with ring directly, with signet's verifier and with jose.
async fn verified_everywhere(
    http: &reqwest::Client,
    serve: &ServeProcess,
    verifier: &Verifier,
    alg: &str,
    token: &str,
) {
    let url = format!("http://{}/.well-known/jwks/access_token.json", serve.public);
    let jwks: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let kid = header_kid(token);
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("{alg}: kid {kid} is not published"));
    let jwk: PublicJwk = serde_json::from_value(jwk.clone()).unwrap();
    let alg_: Algorithm = alg.parse().unwrap();
    assert!(
        ring_accepts(alg_, &jwk.members().unwrap(), token),
        "ring refused the token's {alg} signature"
    );
    let claims = verifier.verify::<Value>(token).await;
    assert!(
        claims.is_ok(),
        "signet's verifier refused {alg}: {claims:?}"
    );
    let jose = interop::clients()
        .into_iter()
        .find(|c| c.name == "jose")
        .unwrap();
    let out = interop::run(&jose, &["--jwks", &url], "access_token", token);
    assert!(out.is_ok(), "jose refused {alg}: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SoftHSM2 and the interop clients (jose, PyJWT, jwcrypto): run tests/setup.sh, then cargo test -- --include-ignored"]
async fn every_algorithm_signs_in_the_token_and_verifies_with_ring_signet_and_jose_across_a_rotation()
 {
    let hsm = SoftHsm::new("signet-algs");
    let home = Home::new(&config(
        &hsm,
        "[\"EdDSA\", \"RS256\", \"PS256\", \"ES256\"]",
    ));
    let serve = start(&hsm, &home);
    let http = client();
    let verifier = Verifier::builder(format!(
        "http://{}/.well-known/jwks/access_token.json",
        serve.public
    ))
    .issuer(format!("http://{}", serve.public))
    .audience("api")
    .purpose("access_token")
    .build()
    .unwrap();

    // Every key of access_token is in the token, magic_link's in the store;
    // the token holds exactly the keys the store says it does, none readable.
    let before = keys(&http, &serve).await;
    for k in &before {
        let expected = if k["purpose"] == "access_token" {
            "token signet-algs"
        } else {
            "store"
        };
        assert_eq!(k["private"], expected, "{k}");
    }
    assert_eq!(hsm.labels(), expected_labels(&before, "signet-algs"));
    assert_eq!(
        hsm.labels().len(),
        8,
        "an active and a pending key per algorithm"
    );
    for key in hsm.private_keys() {
        assert_eq!(key["sensitive"], true, "{key}");
        assert_eq!(key["extractable"], false, "{key}");
        assert_eq!(key["secret"], "refused: AttributeSensitive", "{key}");
    }

    let mut signed_before = Vec::new();
    for alg in ALGS {
        let token = signed(&http, &serve, alg).await;
        verified_everywhere(&http, &serve, &verifier, alg, &token).await;
        signed_before.push(header_kid(&token));
    }

    // A rotation: the keys that signed retire, and their objects leave the
    // token (rule 7) while their tokens still verify; the pending keys sign.
    let (status, body) = admin(
        &http,
        &serve,
        "/v1/keys/access_token/rotate",
        json!({"force": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let after = keys(&http, &serve).await;
    let labels = hsm.labels();
    assert_eq!(labels, expected_labels(&after, "signet-algs"));
    for kid in &signed_before {
        assert!(
            !labels.iter().any(|l| l.ends_with(kid.as_str())),
            "the retired key {kid} is still in the token"
        );
        let record = after.iter().find(|k| k["kid"] == kid.as_str()).unwrap();
        assert_eq!(record["state"], "retiring");
        assert_eq!(record["private"], Value::Null);
    }
    for alg in ALGS {
        let token = signed(&http, &serve, alg).await;
        assert!(
            !signed_before.contains(&header_kid(&token)),
            "{alg} signed with a retired key"
        );
        verified_everywhere(&http, &serve, &verifier, alg, &token).await;
    }

    // `config check` logs in to the token, and shows no PIN.
    let mut cmd = signet_cmd(&home, &hsm, &["config", "check"]);
    let out = cmd.output().unwrap();
    let check = String::from_utf8_lossy(&out.stdout);
    assert!(
        check.contains("# PKCS#11 token: found, logged in"),
        "{check}"
    );
    assert!(!check.contains(PIN), "{check}");

    // `keys list` says where each private half is.
    let mut cmd = signet_cmd(&home, &hsm, &["keys", "list"]);
    let out = cmd.output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listed.contains("token signet-algs")
            && listed.contains("store")
            && listed.contains("destroyed"),
        "{listed}"
    );

    let log = serve.stop().join("\n");
    assert!(!log.contains(PIN), "the PIN is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SoftHSM2: run tests/setup.sh, then cargo test -- --include-ignored"]
async fn a_revoked_key_leaves_the_token_at_once_and_a_deleted_object_is_reported_for_its_purpose() {
    let (hsm, home, serve) = running("signet-revoke", "[\"EdDSA\"]");
    let http = client();
    let token = signed(&http, &serve, "EdDSA").await;
    let active = header_kid(&token);
    assert_eq!(hsm.labels().len(), 2);

    let (status, body) = admin(
        &http,
        &serve,
        &format!("/v1/keys/{active}/revoke"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let labels = hsm.labels();
    assert!(
        !labels.iter().any(|l| l.ends_with(active.as_str())),
        "the revoked key is still in the token: {labels:?}"
    );
    assert_eq!(
        labels,
        expected_labels(&keys(&http, &serve).await, "signet-revoke")
    );

    // The key that signs now loses its object behind signet's back.
    let token = signed(&http, &serve, "EdDSA").await;
    let current = header_kid(&token);
    let object = hsm
        .private_keys()
        .into_iter()
        .find(|k| k["label"].as_str().unwrap().ends_with(current.as_str()))
        .unwrap();
    hsm.delete(object["id"].as_str().unwrap());
    let r = sign(&http, &serve, "access_token", "EdDSA").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("the private key of {current}"))
            && detail.contains("is not in the token"),
        "{detail}"
    );
    // magic_link, in software, signs on.
    assert_eq!(
        sign(&http, &serve, "magic_link", "EdDSA").await.status(),
        200
    );
    serve.stop();

    // A fresh process reports it for its purpose, and only for it.
    let mut cmd = signet_cmd(&home, &hsm, &["keys", "list"]);
    let (exit, stderr) = code(&cmd.output().unwrap());
    assert_eq!(exit, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("access_token: the private key of {current}")),
        "{stderr}"
    );
    assert!(!stderr.contains("magic_link"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SoftHSM2: run tests/setup.sh, then cargo test -- --include-ignored"]
async fn a_token_that_disappears_stops_signing_only_and_signing_resumes_when_it_is_back() {
    let (hsm, _home, serve) = running("signet-gone", "[\"ES256\"]");
    let http = client();
    signed(&http, &serve, "ES256").await;

    let place = hsm.remove();
    let r = sign(&http, &serve, "access_token", "ES256").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("PKCS#11 token"),
        "{body}"
    );
    let jwks = http
        .get(format!("http://{}/.well-known/jwks.json", serve.public))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200, "the JWKS is served without the token");
    let ready = http
        .get(format!("http://{}/readyz", serve.public))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(ready.to_string().contains("PKCS#11 token"), "{ready}");
    // A software purpose is not affected.
    assert_eq!(
        sign(&http, &serve, "magic_link", "EdDSA").await.status(),
        200
    );

    hsm.restore(&place);
    // The module is initialised again at most once a second: within a few
    // tries the same process signs again, with no restart.
    let mut status = 0;
    for _ in 0..100 {
        status = sign(&http, &serve, "access_token", "ES256")
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status, 200,
        "signing did not resume after the token came back"
    );
    let ready: Value = http
        .get(format!("http://{}/readyz", serve.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let metrics = metrics(&http, &serve).await;
    let errors = metrics
        .lines()
        .find(|l| l.starts_with("signet_pkcs11_errors_total "))
        .unwrap_or_else(|| panic!("no signet_pkcs11_errors_total in {metrics}"));
    assert_ne!(
        errors, "signet_pkcs11_errors_total 0",
        "the failures were not counted"
    );
    serve.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SoftHSM2: run tests/setup.sh, then cargo test -- --include-ignored"]
async fn a_wrong_pin_is_reported_at_start_and_by_signing_and_never_logged() {
    let hsm = SoftHsm::new("signet-pin");
    // Keys made with the right PIN first.
    let home = Home::new(&config(&hsm, "[\"EdDSA\"]"));
    start(&hsm, &home).stop();

    let wrong = "99999999";
    let mut env = hsm.env();
    env.retain(|(k, _)| *k != "SIGNET_PKCS11_PIN");
    env.push(("SIGNET_PKCS11_PIN", wrong.to_owned()));
    env.push(("SIGNET_ADMIN_TOKENS", TOKENS.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let serve = ServeProcess::start(&home, &env);
    let http = client();
    for _ in 0..3 {
        let r = sign(&http, &serve, "access_token", "EdDSA").await;
        assert_eq!(r.status(), 503);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("refused SIGNET_PKCS11_PIN"),
            "{body}"
        );
    }
    let log = serve.stop().join("\n");
    assert!(
        log.contains("refused SIGNET_PKCS11_PIN"),
        "not reported at start"
    );
    // `config check` says so too.
    let mut cmd = home.cmd(&["config", "check"]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let check = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    assert!(
        check.contains("# PKCS#11 token: cannot be used")
            && check.contains("refused SIGNET_PKCS11_PIN"),
        "{check}"
    );
    assert!(!check.contains(wrong), "{check}");
    assert!(
        !log.contains(wrong) && !log.contains(PIN),
        "a PIN is in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SoftHSM2: run tests/setup.sh, then cargo test -- --include-ignored"]
async fn a_key_revoked_while_the_token_is_away_leaves_the_jwks_at_once_and_its_object_at_the_next_start()
 {
    let (hsm, home, serve) = running("signet-away", "[\"EdDSA\"]");
    let http = client();
    let compromised = header_kid(&signed(&http, &serve, "EdDSA").await);

    // The token is away: no successor can be made, and the revocation is
    // not held back for it.
    let place = hsm.remove();
    let (status, body) = admin(
        &http,
        &serve,
        &format!("/v1/keys/{compromised}/revoke"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let jwks: Value = http
        .get(format!(
            "http://{}/.well-known/jwks/access_token.json",
            serve.public
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !jwks.to_string().contains(&compromised),
        "the revoked key is still published: {jwks}"
    );
    serve.stop();
    hsm.restore(&place);
    assert!(
        hsm.labels()
            .iter()
            .any(|l| l.ends_with(compromised.as_str())),
        "the object was destroyed although the token was away: the test shows nothing"
    );

    // The next start finishes the destruction, and makes the successor.
    let serve = start(&hsm, &home);
    let labels = hsm.labels();
    assert!(
        !labels.iter().any(|l| l.ends_with(compromised.as_str())),
        "the revoked key's object is still in the token: {labels:?}"
    );
    let now = signed(&http, &serve, "EdDSA").await;
    assert_ne!(header_kid(&now), compromised);
    assert_eq!(
        labels,
        expected_labels(&keys(&http, &serve).await, "signet-away")
    );
    serve.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SoftHSM2: run tests/setup.sh, then cargo test -- --include-ignored"]
async fn concurrent_signatures_wait_for_one_of_the_configured_sessions() {
    let hsm = SoftHsm::new("signet-pool");
    // Eight signatures may run at once, on two sessions.
    let home = Home::new(&format!(
        "[server]\nsigning_concurrency = 8\n{}",
        config(&hsm, "[\"RS256\"]")
    ));
    let mut env = hsm.env();
    env.push(("SIGNET_ADMIN_TOKENS", TOKENS.to_owned()));
    env.push(("SIGNET_PKCS11_SESSIONS", "2".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let serve = std::sync::Arc::new(ServeProcess::start(&home, &env));
    let http = client();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (http, serve) = (http.clone(), serve.clone());
            tokio::spawn(async move { sign(&http, &serve, "access_token", "RS256").await.status() })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            200,
            "a signature failed instead of waiting for a session"
        );
    }
    let metrics = metrics(&http, &serve).await;
    let open: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("signet_pkcs11_sessions "))
        .unwrap_or_else(|| panic!("no signet_pkcs11_sessions in {metrics}"))
        .parse()
        .unwrap();
    assert!(
        (1..=2).contains(&open),
        "{open} sessions open, at most 2 configured"
    );
}

/// Two replicas on one PostgreSQL database and one token start together and
/// both wait for the access_token keyring's lock, which the test holds: each
/// has made its keys in the token before asking for the lock. Once it is
/// released one commits its keys; the other finds nothing left to do and
/// destroys the keys it made, so the token ends up holding exactly the keys
/// the keyring names.
#[test]
#[ignore = "needs PostgreSQL and SoftHSM2: run tests/setup.sh, then cargo test -- --include-ignored"]
fn keys_made_for_a_change_another_replica_made_first_are_destroyed_in_the_token() {
    let hsm = SoftHsm::new("signet-premade");
    let url = crate::common::pg::database();
    let text = config(&hsm, "[\"EdDSA\"]");
    let mut env = hsm.env();
    env.push(("SIGNET_ADMIN_TOKENS", TOKENS.to_owned()));
    env.push(("SIGNET_STORE_KIND", "postgres".to_owned()));
    env.push(("SIGNET_DATABASE_URL", url.clone()));
    env.push(("SIGNET_ISSUER", "https://auth.example.test".to_owned()));

    let mut holder = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    // The schema first (a replica creates it at connect), then the lock.
    signet::storage::PostgresStore::connect(&url, "test").unwrap();
    holder
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('signet keyring access_token', 0))",
        )
        .unwrap();
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let (home, env) = (Home::new(&text), env.clone());
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                (ServeProcess::start(&home, &env), home)
            })
        })
        .collect();
    let mut watcher = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let waiting = tokio::time::Instant::now();
    while crate::common::pg::waiting_for_keyring_lock(&mut watcher, "access_token") < 2 {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "both replicas should wait for the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Each made the active key and its successor before the lock.
    assert_eq!(
        hsm.private_keys().len(),
        4,
        "both replicas make their keys before they wait"
    );

    holder.batch_execute("COMMIT").unwrap();
    let started: Vec<_> = replicas.into_iter().map(|r| r.join().unwrap()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    let keys = rt.block_on(keys(&http, &started[0].0));
    assert_eq!(
        keys.iter()
            .filter(|k| k["purpose"] == "access_token")
            .count(),
        2,
        "one active key and one successor: {keys:?}"
    );
    assert_eq!(hsm.labels(), expected_labels(&keys, &hsm.label));
    let discarded = started
        .iter()
        .flat_map(|(s, _)| s.log.lock().unwrap().clone())
        .filter(|l| {
            l.contains("no longer needed it is discarded") && l.contains("\"access_token\"")
        })
        .count();
    assert_eq!(discarded, 2, "the replica that lost discards both its keys");
}

#[test]
#[ignore = "needs SoftHSM2: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_shell_without_softhsm2_conf_is_told_to_set_it() {
    let hsm = SoftHsm::new("signet-conf");
    let home = Home::new(&config(&hsm, "[\"EdDSA\"]"));
    // SIGNET_PKCS11_PIN set, SOFTHSM2_CONF forgotten (a second shell).
    let out = home
        .cmd(&["config", "check"])
        .env("SIGNET_PKCS11_PIN", PIN)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no token \"signet-conf\""), "{text}");
    assert!(text.contains("SOFTHSM2_CONF"), "{text}");
}

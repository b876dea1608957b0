//! Three `signet serve` processes on one PostgreSQL database.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::server::{ADMIN, SIGNER, ServeProcess, TOKENS, client};
use crate::common::{Home, pg};
use crate::server::kids;

const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n";

#[test]
fn three_replicas_share_keys_and_a_revocation_reaches_every_jwks_at_once() {
    let Some(url) = pg::database() else { return };
    // Each replica has its own directory: they share the database only.
    let homes: Vec<Home> = (0..3).map(|_| Home::new(CONFIG)).collect();
    let env = [
        ("SIGNET_STORE_KIND", "postgres"),
        ("SIGNET_DATABASE_URL", url.as_str()),
        ("SIGNET_ADMIN_TOKENS", TOKENS),
        // Every replica names the same issuer (required with a shared store).
        ("SIGNET_ISSUER", "https://auth.example.test"),
        // Polling every 30 s: what reaches the others within the test comes
        // through NOTIFY.
        ("SIGNET_STORE_POLL_INTERVAL", "30s"),
    ];
    let replicas: Vec<ServeProcess> = homes.iter().map(|h| ServeProcess::start(h, &env)).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let for_jose = rt.block_on(async {
        let http = client();
        let admin = |i: usize, path: &str| format!("http://{}{path}", replicas[i].admin);
        // POST /v1/tokens at replica `i`.
        let sign = |i: usize, body: Value| {
            let (http, url) = (http.clone(), admin(i, "/v1/tokens"));
            async move {
                let r = http.post(url).bearer_auth(SIGNER).json(&body).send().await;
                r.unwrap().json::<Value>().await.unwrap()
            }
        };
        let jwks = |i: usize| {
            let http = http.clone();
            let url = format!(
                "http://{}/.well-known/jwks/access_token.json",
                replicas[i].public
            );
            async move {
                http.get(url)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        // Started together, they bootstrapped one keyring: the same JWKS.
        let first = jwks(0).await;
        assert_eq!(kids(&first).len(), 2);
        for i in 1..3 {
            assert_eq!(kids(&jwks(i).await), kids(&first));
        }
        // A token signed by any replica verifies at every other.
        for signer in 0..3 {
            let signed = sign(
                signer,
                json!({"purpose": "access_token", "claims": {"sub": "u"}}),
            )
            .await;
            for verifier in 0..3 {
                let r = http
                    .post(admin(verifier, "/v1/verify"))
                    .bearer_auth(SIGNER)
                    .json(&json!({"purpose": "access_token", "token": signed["token"]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    200,
                    "signed at {signer}, verified at {verifier}"
                );
            }
        }
        // A revocation at one replica leaves every JWKS within a second.
        let active = sign(0, json!({"purpose": "access_token"})).await;
        let kid = active["kid"].as_str().unwrap().to_owned();
        let started = tokio::time::Instant::now();
        let r = http
            .post(admin(1, &format!("/v1/keys/{kid}/revoke")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for i in 0..3 {
            let gone = tokio::time::timeout(Duration::from_secs(1), async {
                while kids(&jwks(i).await).contains(&kid) {
                    tokio::task::yield_now().await;
                }
            })
            .await;
            assert!(
                gone.is_ok(),
                "replica {i} still publishes the revoked key after 1 s"
            );
        }
        eprintln!(
            "replicas: a revocation reached all three JWKS in {} ms",
            started.elapsed().as_millis()
        );
        // A token from the first replica, for third-party verifiers at the others.
        let signed = sign(
            0,
            json!({"purpose": "access_token", "claims": {"sub": "u", "aud": "api"}}),
        )
        .await;
        signed["token"].as_str().unwrap().to_owned()
    });
    // jose, PyJWT and jwcrypto accept it from every replica's JWKS.
    for client in crate::interop::clients() {
        for r in &replicas {
            let jwks = format!("http://{}/.well-known/jwks/access_token.json", r.public);
            let source = [
                "--jwks",
                jwks.as_str(),
                "--typ",
                "at+jwt",
                "--issuer",
                "https://auth.example.test",
            ];
            crate::interop::run(&client, &source, "access_token", &for_jose)
                .unwrap_or_else(|e| panic!("{} refused at {}: {e}", client.name, r.public));
        }
    }
    for r in replicas {
        r.stop();
    }
}

#[test]
fn an_installation_moves_its_keyrings_to_the_database_as_they_are() {
    use signet::clock::{Clock, ManualClock, SystemClock};
    use signet::service::SignRequest;
    use signet::storage::{KeyStore, PostgresStore};
    let Some(url) = pg::database() else { return };
    let home = Home::new(CONFIG);
    let token = home.ok(&["token", "sign", "--purpose", "access_token"]);
    let header = token.split('.').next().unwrap();
    let header: Value =
        serde_json::from_slice(&signet::keys::jwk::b64_decode(header).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    let keys = home.keys().display().to_string();
    let copy = |force: bool| {
        let mut args = vec!["store", "copy", "--from", keys.as_str(), "--to", "database"];
        if force {
            args.push("--force");
        }
        home.cmd(&args)
            .env("SIGNET_DATABASE_URL", &url)
            .output()
            .unwrap()
    };
    let out = copy(false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("copied access_token"));

    // A replica on the database signs with the key the file store had active.
    let store = PostgresStore::connect(&url, "check").unwrap();
    assert_eq!(store.load("access_token").unwrap().unwrap().generation, 1);
    let clock = ManualClock::new(SystemClock.now());
    let svc = crate::service::service(&home, std::sync::Arc::new(store), &clock);
    let signed = svc
        .sign(SignRequest {
            purpose: "access_token".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(signed.kid, kid);

    // Never over keyrings already there, unless told to.
    let out = copy(false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already holds") && err.contains("--force"),
        "{err}"
    );
    assert!(copy(true).status.success());
    let store = PostgresStore::connect(&url, "check").unwrap();
    assert_eq!(store.load("access_token").unwrap().unwrap().generation, 2);
}

//! Real third-party verifiers (jose in Node, PyJWT and jwcrypto in Python)
//! against a running signet, across all algorithms and a rotation.
//!
//! `tests/setup.sh` installs them (`.ci/run` calls it); the tests are
//! `#[ignore]`d unless asked for, and asked for without a client they fail
//! naming that command: they never pass without running. Each refusal is checked for the library's own reason, so a crash
//! or a network error cannot pass as one.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use signet::clock::{Clock, SystemClock, UnixTime};

use crate::common::server::{SIGNER, TestServer};

const CONFIG: &str =
    "[purposes.access_token]\nalgorithms = [\"EdDSA\", \"RS256\", \"PS256\", \"ES256\"]\n";

/// One third-party verifier.
pub(crate) struct Client {
    pub(crate) name: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The third-party clients; a missing one fails the test with the install command.
pub(crate) fn clients() -> Vec<Client> {
    let dir = interop_dir();
    let mut out = Vec::new();
    let missing = |what: &str| {
        panic!(
            "interop: {what} is not installed; run tests/setup.sh (needs node >= 20 and python3 >= 3.9)"
        )
    };
    if dir.join("node/node_modules/jose/package.json").exists() {
        out.push(Client {
            name: "jose",
            program: "node".into(),
            args: vec![dir.join("node/verify.mjs").display().to_string()],
        });
    } else {
        missing("jose (node_modules)");
    }
    let python = dir.join("python/.venv/bin/python");
    if python.exists() {
        for lib in ["pyjwt", "jwcrypto"] {
            let script = dir.join("python/verify.py").display().to_string();
            out.push(Client {
                name: lib,
                program: python.clone(),
                args: vec![script, "--lib".into(), lib.into()],
            });
        }
    } else {
        missing("the Python venv with PyJWT and jwcrypto");
    }
    out
}

/// What each library says when it refuses for `why`: its own error name,
/// so that a crash or a network error cannot pass for a refusal.
fn refusal(client: &str, why: &str) -> &'static str {
    match (client, why) {
        ("jose", "unknown key") => "ERR_JWKS_NO_MATCHING_KEY",
        ("jose", "expired") => "ERR_JWT_EXPIRED",
        ("jose", "signature") => "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
        ("pyjwt", "unknown key") => "PyJWKClientError: Unable to find a signing key",
        ("pyjwt", "expired") => "ExpiredSignatureError",
        ("pyjwt", "signature") => "InvalidSignatureError",
        // The verify script checks typ itself before PyJWT runs (PyJWT does not).
        ("pyjwt", "typ") => "ValueError: typ",
        ("jwcrypto", "expired") => "JWTExpired",
        // jwcrypto tries the key set and reports a missing key when no key
        // both matches and verifies: for an unknown kid and a bad signature alike.
        ("jwcrypto", "unknown key" | "signature" | "typ") => "JWTMissingKey",
        ("jose", "typ") => "ERR_JWKS_NO_MATCHING_KEY",
        _ => panic!("no expected refusal for {client}/{why}"),
    }
}

/// Runs `client` on `token` expecting a refusal for `why`.
fn refused(client: &Client, source: &[&str], token: &str, why: &str) {
    match run(client, source, "access_token", token) {
        Ok(_) => panic!("{} accepted a token it must refuse ({why})", client.name),
        Err(err) => {
            let expected = refusal(client.name, why);
            assert!(
                err.contains(expected),
                "{} refused ({why}) for another reason: {err}",
                client.name
            );
        }
    }
}

/// Runs `client` on `token`; Ok(claims) or Err(stderr).
pub(crate) fn run(
    client: &Client,
    source: &[&str],
    purpose: &str,
    token: &str,
) -> Result<Value, String> {
    let out = Command::new(&client.program)
        .args(&client.args)
        .args(source)
        .args(["--purpose", purpose, "--audience", "api", token])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", client.name));
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: bad output: {e}", client.name)))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn sign(s: &TestServer, purpose: &str, alg: Option<&str>) -> String {
    let mut body = json!({"purpose": purpose, "claims": {"sub": "user-1", "aud": "api"}});
    if let Some(a) = alg {
        body["alg"] = json!(a);
    }
    let r = s.post("/v1/tokens", Some(SIGNER), body).await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop clients (jose, PyJWT, jwcrypto): run tests/setup.sh, then cargo test -- --include-ignored"]
async fn third_party_clients_accept_every_algorithm_across_a_rotation_and_refuse_bad_tokens() {
    let clients = clients();
    // Third-party libraries check exp against the wall clock: run the server
    // two hours in the past first, to mint a token that is expired now.
    let real = SystemClock.now();
    let s = TestServer::start(CONFIG, UnixTime(real.0 - 7200)).await;
    let expired = sign(&s, "access_token", Some("EdDSA")).await;
    s.clock.set(real);

    let jwks = format!("{}/.well-known/jwks/access_token.json", s.public);
    let discovery = format!("{}/.well-known/openid-configuration", s.public);
    let typ_iss = [
        "--typ".to_owned(),
        "at+jwt".to_owned(),
        "--issuer".to_owned(),
        s.public.clone(),
    ];
    let by_jwks: Vec<&str> = ["--jwks", jwks.as_str()]
        .into_iter()
        .chain(typ_iss.iter().map(String::as_str))
        .collect();
    let by_discovery = ["--discovery", discovery.as_str()];

    let mut before = Vec::new();
    for alg in ["EdDSA", "RS256", "PS256", "ES256"] {
        before.push((alg, sign(&s, "access_token", Some(alg)).await));
    }
    let rotated = s
        .post(
            "/v1/keys/access_token/rotate",
            Some(crate::common::server::ADMIN),
            json!({}),
        )
        .await;
    assert_eq!(
        rotated.status(),
        200,
        "the pending keys are two hours old: no force needed"
    );
    let mut after = Vec::new();
    for alg in ["EdDSA", "RS256", "PS256", "ES256"] {
        after.push((alg, sign(&s, "access_token", Some(alg)).await));
    }
    let magic = sign(&s, "magic_link", None).await;
    let mut flipped = after[0].1.clone().into_bytes();
    let at = flipped.len() - 10;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();

    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (before, after, by_jwks) = (
                before.clone(),
                after.clone(),
                by_jwks.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            );
            let by_discovery: Vec<String> = by_discovery.iter().map(|s| s.to_string()).collect();
            let (magic, expired, flipped) = (magic.clone(), expired.clone(), flipped.clone());
            tokio::task::spawn_blocking(move || {
                let jw: Vec<&str> = by_jwks.iter().map(String::as_str).collect();
                let disc: Vec<&str> = by_discovery.iter().map(String::as_str).collect();
                for (when, tokens) in [("before rotation", &before), ("after rotation", &after)] {
                    for (alg, token) in tokens {
                        // jose starts from the discovery document; the Python clients from the JWKS URL.
                        let source = if client.name == "jose" { &disc } else { &jw };
                        let claims =
                            run(&client, source, "access_token", token).unwrap_or_else(|e| {
                                panic!("{} refused a {alg} token {when}: {e}", client.name)
                            });
                        assert_eq!(claims["sub"], "user-1", "{}", client.name);
                    }
                }
                // The Python clients also start from discovery once.
                run(&client, &disc, "access_token", &after[1].1)
                    .unwrap_or_else(|e| panic!("{} via discovery: {e}", client.name));
                refused(&client, &jw, &magic, "typ");
                refused(&client, &jw, &expired, "expired");
                refused(&client, &jw, &flipped, "signature");
                client.name
            })
        })
        .collect();
    for t in tasks {
        let name = t.await.unwrap();
        eprintln!("interop: {name} ok");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop clients (jose, PyJWT, jwcrypto): run tests/setup.sh, then cargo test -- --include-ignored"]
async fn a_verifier_whose_clock_is_two_seconds_behind_accepts_a_fresh_token() {
    let clients = clients();
    // signet's clock runs 2 s ahead of the wall clock the clients read; each
    // client runs with its default tolerance (0 s for jose and PyJWT).
    let ahead = UnixTime(SystemClock.now().0 + 2);
    let s = TestServer::start(CONFIG, ahead).await;
    let discovery = format!("{}/.well-known/openid-configuration", s.public);
    let mut tokens = Vec::new();
    for alg in ["EdDSA", "ES256"] {
        tokens.push((alg, sign(&s, "access_token", Some(alg)).await));
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (tokens, discovery) = (tokens.clone(), discovery.clone());
            tokio::task::spawn_blocking(move || {
                for (alg, token) in &tokens {
                    run(&client, &["--discovery", &discovery], "access_token", token)
                        .unwrap_or_else(|e| {
                            panic!("{} refused a fresh {alg} token 2 s early: {e}", client.name)
                        });
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop clients (jose, PyJWT, jwcrypto): run tests/setup.sh, then cargo test -- --include-ignored"]
async fn generic_oidc_verifiers_accept_access_tokens_and_refuse_every_other_purpose() {
    let clients = clients();
    let s = TestServer::start(CONFIG, SystemClock.now()).await;
    let oidc = format!("{}/.well-known/openid-configuration", s.public);
    let access = sign(&s, "access_token", Some("ES256")).await;
    let mut others = Vec::new();
    for purpose in ["refresh_token", "magic_link", "reset_password_link"] {
        others.push((purpose, sign(&s, purpose, None).await));
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (oidc, access, others) = (oidc.clone(), access.clone(), others.clone());
            tokio::task::spawn_blocking(move || {
                // Issuer and algorithms checked, typ not: what a generic client does.
                run(&client, &["--oidc", &oidc], "access_token", &access)
                    .unwrap_or_else(|e| panic!("{} refused an access token: {e}", client.name));
                for (_, token) in &others {
                    refused(&client, &["--oidc", &oidc], token, "unknown key");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    s.stop().await;
}

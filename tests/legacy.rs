//! Moving from HMAC secrets: tokens an application signed with the secrets
//! in its `.env` (made here by jose and PyJWT, not by signet) verify through
//! signet for as long as they can be valid, and nowhere else; the secrets
//! never sign, are never published and never shown.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use signet::clock::{Clock, SystemClock};
use signet::service::LegacySecret;
use signet::verifier::Verifier;
use zeroize::Zeroizing;

use crate::common::server::{ADMIN, SIGNER, ServeProcess, TOKENS, TestServer};
use crate::common::{Home, code};
use crate::interop;

const CURRENT: &str = "current-secret-from-dotenv-0123456789";
const PREVIOUS: &str = "previous-secret-from-dotenv-9876543210";

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// A token signed with `secret` by jose (Node) or PyJWT, as the
/// application did: HS256 (or `alg`), no kid.
fn legacy_token(lib: &str, secret: &str, claims: &Value, alg: &str) -> String {
    let dir = interop_dir();
    let out = match lib {
        "jose" => Command::new("node")
            .arg(dir.join("node/sign_hs.mjs"))
            .args([secret, &claims.to_string(), alg])
            .output(),
        "pyjwt" => Command::new(dir.join("python/.venv/bin/python"))
            .arg(dir.join("python/sign_hs.py"))
            .args([secret, &claims.to_string(), alg])
            .output(),
        _ => unreachable!(),
    }
    .unwrap_or_else(|e| panic!("cannot run {lib}: {e}; run tests/setup.sh"));
    assert!(
        out.status.success(),
        "{lib}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn secrets(pairs: &[(&str, &str)]) -> Vec<LegacySecret> {
    pairs
        .iter()
        .map(|(label, value)| LegacySecret {
            label: (*label).to_owned(),
            secret: Zeroizing::new(value.as_bytes().to_vec()),
        })
        .collect()
}

async fn verify(s: &TestServer, purpose: &str, token: &str) -> (u16, Value) {
    let r = s.verify(purpose, &json!(token)).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n";

/// A server started now, with `CURRENT` imported for access_token as
/// ACCESS_TOKEN_SECRET_1.
async fn with_current_secret() -> (TestServer, signet::clock::UnixTime) {
    let now = SystemClock.now();
    let s = TestServer::start(CONFIG, now).await;
    s.service
        .import_legacy(
            "access_token",
            &secrets(&[("ACCESS_TOKEN_SECRET_1", CURRENT)]),
            None,
            None,
        )
        .unwrap();
    (s, now)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop clients (jose, PyJWT, jwcrypto): run tests/setup.sh, then cargo test -- --include-ignored"]
async fn tokens_signed_with_the_old_secrets_verify_until_they_can_no_longer_be_valid() {
    let now = SystemClock.now();
    let s = TestServer::start(CONFIG, now).await;
    let imported = s
        .service
        .import_legacy(
            "access_token",
            &secrets(&[
                ("ACCESS_TOKEN_SECRET_1", CURRENT),
                ("ACCESS_TOKEN_SECRET_0", PREVIOUS),
            ]),
            None,
            None,
        )
        .unwrap();
    // The window is the purpose's token_ttl (10m) plus leeway (60s).
    assert_eq!(imported.len(), 2);
    assert_eq!(
        imported[0].expires_at,
        now.plus(Duration::from_secs(660)).to_string()
    );

    let exp = now.0 + 600;
    for lib in ["jose", "pyjwt"] {
        for (secret, label) in [
            (CURRENT, "ACCESS_TOKEN_SECRET_1"),
            (PREVIOUS, "ACCESS_TOKEN_SECRET_0"),
        ] {
            for alg in ["HS256", "HS384", "HS512"] {
                let token = legacy_token(lib, secret, &json!({"sub": "user-1", "exp": exp}), alg);
                let (status, body) = verify(&s, "access_token", &token).await;
                assert_eq!(status, 200, "{lib} {alg} {label}: {body}");
                assert_eq!(body["legacy_key"], label, "{body}");
                assert_eq!(body["claims"]["sub"], "user-1");
                assert!(!body.to_string().contains(secret));
            }
        }
    }
    // Another secret, an expired token, a tampered one: refused, with the reason.
    let other = legacy_token(
        "jose",
        "not-one-of-ours",
        &json!({"sub": "u", "exp": exp}),
        "HS256",
    );
    let (status, body) = verify(&s, "access_token", &other).await;
    assert_eq!(
        (status, body["detail"].as_str().unwrap()),
        (401, "bad signature")
    );
    let expired = legacy_token(
        "pyjwt",
        CURRENT,
        &json!({"sub": "u", "exp": now.0 - 120}),
        "HS256",
    );
    let (status, body) = verify(&s, "access_token", &expired).await;
    assert_eq!(
        (status, body["detail"].as_str().unwrap()),
        (401, "token expired")
    );
    let token = legacy_token("jose", CURRENT, &json!({"sub": "u", "exp": exp}), "HS256");
    let (head, _) = token.rsplit_once('.').unwrap();
    let (status, _) = verify(&s, "access_token", &format!("{head}.AAAA")).await;
    assert_eq!(status, 401);

    // The same secret does not make a token of another purpose.
    let (status, body) = verify(&s, "refresh_token", &token).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("disallowed algorithm"),
        "{body}"
    );

    // Counted by purpose and secret, for the team to watch fall to zero.
    let metrics = s.get_admin("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("signet_legacy_verifications_total{purpose=\"access_token\",secret=\"ACCESS_TOKEN_SECRET_1\"} 6"),
        "{metrics}"
    );

    // Past token_ttl + leeway from the import, nothing they signed can be
    // valid: the secrets verify nothing and are dropped from the keyring.
    s.clock.advance(Duration::from_secs(661));
    let late = legacy_token(
        "jose",
        CURRENT,
        &json!({"sub": "u", "exp": now.0 + 100_000}),
        "HS256",
    );
    let (status, _) = verify(&s, "access_token", &late).await;
    assert_eq!(status, 401);
    s.service.tick().unwrap();
    assert!(s.service.legacy_of(None).is_empty());
    let ring = std::fs::read_to_string(s.home.keys().join("access_token.json")).unwrap();
    assert!(
        !ring.contains("legacy"),
        "the secrets are still in the keyring: {ring}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop clients (jose, PyJWT, jwcrypto): run tests/setup.sh, then cargo test -- --include-ignored"]
async fn legacy_secrets_never_sign_are_never_published_and_jwks_verifiers_refuse_their_tokens() {
    let (s, now) = with_current_secret().await;
    let token = legacy_token(
        "jose",
        CURRENT,
        &json!({"sub": "user-1", "aud": "api", "iss": s.public, "exp": now.0 + 600}),
        "HS256",
    );
    assert_eq!(verify(&s, "access_token", &token).await.0, 200);

    // Signing picks the asymmetric key, and HMAC cannot be asked for.
    let signed: Value = s
        .sign(json!({"purpose": "access_token"}))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        signed["token"]
            .as_str()
            .unwrap()
            .starts_with("eyJhbGciOiJFZERTQSI"),
        "{signed}"
    );
    let r = s
        .sign(json!({"purpose": "access_token", "alg": "HS256"}))
        .await;
    assert_eq!(r.status(), 422);

    // Not in any JWKS or discovery document, by label or by value.
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/jwks/access_token.json",
        "/.well-known/openid-configuration",
        "/.well-known/signet/revocations.json",
    ] {
        let body = s.get(path).await.text().await.unwrap();
        assert!(
            !body.contains("ACCESS_TOKEN_SECRET")
                && !body.contains(CURRENT)
                && !body.contains("oct"),
            "{path}: {body}"
        );
    }
    let keys = s
        .http
        .get(format!("{}/v1/keys", s.admin))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!keys.contains(CURRENT), "{keys}");

    // The verifiers that work from the JWKS refuse the token outright.
    let verifier = Verifier::builder(format!("{}/.well-known/jwks/access_token.json", s.public))
        .issuer(s.public.clone())
        .audience("api")
        .purpose("access_token")
        .build()
        .unwrap();
    let refused = verifier.verify::<Value>(&token).await;
    assert!(
        matches!(refused, Err(signet::keys::token::VerifyError::DisallowedAlg(ref a)) if a == "HS256"),
        "{refused:?}"
    );
    let jose = interop::clients()
        .into_iter()
        .find(|c| c.name == "jose")
        .unwrap();
    let url = format!("{}/.well-known/jwks/access_token.json", s.public);
    let out = interop::run(&jose, &["--jwks", &url], "access_token", &token);
    assert!(
        out.is_err_and(|e| e.contains("ERR_JOSE_ALG_NOT_ALLOWED")),
        "jose accepted or failed otherwise"
    );

    // Revoked: its tokens are refused at once.
    s.service.revoke("ACCESS_TOKEN_SECRET_1").unwrap();
    let (status, _) = verify(&s, "access_token", &token).await;
    assert_eq!(status, 401);
    assert_eq!(s.service.legacy_of(None)[0].state, "revoked");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop clients (jose, PyJWT, jwcrypto): run tests/setup.sh, then cargo test -- --include-ignored"]
async fn a_legacy_magic_link_is_used_once_and_an_issuer_given_at_import_is_checked() {
    let now = SystemClock.now();
    let s = TestServer::start(CONFIG, now).await;
    s.service
        .import_legacy(
            "magic_link",
            &secrets(&[("MAGIC_LINK_SECRET", CURRENT)]),
            Some(Duration::from_secs(3600)),
            Some("https://app.example".into()),
        )
        .unwrap();
    // A window shorter than token_ttl + leeway is refused.
    let e = s
        .service
        .import_legacy(
            "refresh_token",
            &secrets(&[("R", CURRENT)]),
            Some(Duration::from_secs(60)),
            None,
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("shorter than refresh_token's token_ttl plus leeway"),
        "{e}"
    );

    let link = legacy_token(
        "pyjwt",
        CURRENT,
        &json!({"email": "a@example.com", "iss": "https://app.example", "exp": now.0 + 600}),
        "HS256",
    );
    let consume = |token: String| {
        let s = &s;
        async move {
            s.post(
                "/v1/tokens/consume",
                Some(SIGNER),
                json!({"purpose": "magic_link", "token": token}),
            )
            .await
        }
    };
    let first = consume(link.clone()).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["legacy_key"], "MAGIC_LINK_SECRET");
    let second = consume(link.clone()).await;
    assert_eq!(second.status(), 409, "a legacy magic link was used twice");
    // Without the issuer its tokens carried, refused.
    let no_iss = legacy_token(
        "jose",
        CURRENT,
        &json!({"email": "a@example.com", "exp": now.0 + 600}),
        "HS256",
    );
    let (status, body) = verify(&s, "magic_link", &no_iss).await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("iss"), "{body}");
    s.stop().await;
}

/// `POST /v1/verify` of an access token at `admin`, from a synchronous test.
fn verify_over_http(admin: std::net::SocketAddr, token: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        crate::common::server::client()
            .post(format!("http://{admin}/v1/verify"))
            .bearer_auth(SIGNER)
            .json(&json!({"purpose": "access_token", "token": token}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

fn cli_home() -> Home {
    Home::new("[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n")
}

#[test]
#[ignore = "needs the interop clients (jose, PyJWT, jwcrypto): run tests/setup.sh, then cargo test -- --include-ignored"]
fn import_hmac_reads_a_dotenv_file_or_the_environment_and_never_shows_a_secret() {
    let home = cli_home();
    let dotenv = home.dir.path().join(".env");
    std::fs::write(
        &dotenv,
        format!(
            "# the application's secrets\nexport ACCESS_TOKEN_SECRET_1=\"{CURRENT}\"\nACCESS_TOKEN_SECRET_0='{PREVIOUS}' # last month's\nSHORT=abc\n"
        ),
    )
    .unwrap();
    let env_file = dotenv.display().to_string();
    let out = home.run(&[
        "keys",
        "import-hmac",
        "--purpose",
        "access_token",
        "--secret-env",
        "ACCESS_TOKEN_SECRET_1",
        "--secret-env",
        "ACCESS_TOKEN_SECRET_0",
        "--env-file",
        &env_file,
    ]);
    let (exit, stderr) = code(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(exit, 0, "{stderr}");
    assert!(
        stdout.contains("ACCESS_TOKEN_SECRET_1") && stdout.contains("verify-only"),
        "{stdout}"
    );

    // Listed with their expiry, in keys list, its JSON and config check;
    // the secrets nowhere, on disk only sealed.
    let list = home.ok(&["keys", "list"]);
    assert!(list.contains("ACCESS_TOKEN_SECRET_0"), "{list}");
    let json = home.ok(&["keys", "list", "--json"]);
    let listed: Value = serde_json::from_str(&json).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["legacy"] == "ACCESS_TOKEN_SECRET_1" && k["expires_at"].is_string()),
        "{json}"
    );
    let check = home.ok(&["config", "check"]);
    assert!(
        check.contains("access_token ACCESS_TOKEN_SECRET_1: verify-only until"),
        "{check}"
    );
    let ring = std::fs::read_to_string(home.keys().join("access_token.json")).unwrap();
    for text in [
        stdout.as_ref(),
        stderr.as_str(),
        &list,
        &json,
        &check,
        &ring,
    ] {
        assert!(
            !text.contains(CURRENT) && !text.contains(PREVIOUS),
            "a secret is shown: {text}"
        );
    }

    // The issuer's CLI verifies such a token against the store, and a
    // running server does over HTTP; neither logs the secret.
    let exp = SystemClock.now().0 + 600;
    let token = legacy_token(
        "pyjwt",
        PREVIOUS,
        &json!({"sub": "user-1", "exp": exp}),
        "HS256",
    );
    let claims = home.ok(&["token", "verify", "--purpose", "access_token", &token]);
    assert!(claims.contains("user-1"), "{claims}");
    let serve = ServeProcess::start(&home, &[("SIGNET_ADMIN_TOKENS", TOKENS)]);
    let verified = verify_over_http(serve.admin, &token);
    assert_eq!(
        verified["legacy_key"], "ACCESS_TOKEN_SECRET_0",
        "{verified}"
    );
    let log = serve.stop().join("\n");
    assert!(
        !log.contains(CURRENT) && !log.contains(PREVIOUS),
        "a secret is in the server's log"
    );

    // Imported again: refused, naming the label.
    let (exit, stderr) = code(&home.run(&[
        "keys",
        "import-hmac",
        "--purpose",
        "access_token",
        "--secret-env",
        "ACCESS_TOKEN_SECRET_1",
        "--env-file",
        &env_file,
    ]));
    assert_eq!(exit, 1, "{stderr}");
    assert!(
        stderr.contains("already has a legacy secret labelled ACCESS_TOKEN_SECRET_1"),
        "{stderr}"
    );

    // Missing variables name themselves and where they were looked for.
    let (exit, stderr) = code(&home.run(&[
        "keys",
        "import-hmac",
        "--purpose",
        "access_token",
        "--secret-env",
        "REFRESH_TOKEN_SECRET_1",
        "--env-file",
        &env_file,
    ]));
    assert_eq!(exit, 2);
    assert!(
        stderr.contains("REFRESH_TOKEN_SECRET_1 is not set in") && stderr.contains(".env"),
        "{stderr}"
    );
    let mut cmd = home.cmd(&[
        "keys",
        "import-hmac",
        "--purpose",
        "refresh_token",
        "--secret-env",
        "FROM_ENV",
    ]);
    let (exit, stderr) = code(&cmd.output().unwrap());
    assert_eq!(exit, 2);
    assert!(
        stderr.contains("FROM_ENV is not set in the environment"),
        "{stderr}"
    );
    cmd.env("FROM_ENV", CURRENT);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A line the loader cannot read: its number, never its text.
    std::fs::write(&dotenv, format!("A=1\nB='{CURRENT}\n")).unwrap();
    let (exit, stderr) = code(&home.run(&[
        "keys",
        "import-hmac",
        "--purpose",
        "access_token",
        "--secret-env",
        "B",
        "--env-file",
        &env_file,
    ]));
    assert_eq!(exit, 2);
    assert!(
        stderr.contains("line 2") && !stderr.contains(CURRENT),
        "{stderr}"
    );

    // A short secret is imported (it is what signed the tokens), with a warning.
    std::fs::write(&dotenv, "SHORT=abc\n").unwrap();
    let (exit, stderr) = code(&home.run(&[
        "keys",
        "import-hmac",
        "--purpose",
        "magic_link",
        "--secret-env",
        "SHORT",
        "--env-file",
        &env_file,
    ]));
    assert_eq!(exit, 0, "{stderr}");
    assert!(stderr.contains("SHORT is 3 bytes long"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop clients (jose, PyJWT, jwcrypto): run tests/setup.sh, then cargo test -- --include-ignored"]
async fn the_readme_guard_accepts_new_and_legacy_tokens_and_refuses_the_rest() {
    let (s, now) = with_current_secret().await;
    let guard = |token: &str| {
        let out = Command::new("node")
            .arg(interop_dir().join("node/guard_check.mjs"))
            .args([&s.public, &s.admin, SIGNER, token])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "guard: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let signed: Value = s
        .sign(json!({"purpose": "access_token", "claims": {"sub": "new-user", "aud": "api"}}))
        .await
        .json()
        .await
        .unwrap();
    let new = guard(signed["token"].as_str().unwrap());
    assert_eq!(
        (new["allowed"].clone(), new["user"]["sub"].clone()),
        (json!(true), json!("new-user")),
        "{new}"
    );
    let legacy = legacy_token(
        "jose",
        CURRENT,
        &json!({"sub": "old-user", "exp": now.0 + 600}),
        "HS256",
    );
    let old = guard(&legacy);
    assert_eq!(
        (old["allowed"].clone(), old["user"]["sub"].clone()),
        (json!(true), json!("old-user")),
        "{old}"
    );
    let forged = legacy_token(
        "jose",
        "guessed",
        &json!({"sub": "admin", "exp": now.0 + 600}),
        "HS256",
    );
    let refused = guard(&forged);
    assert_eq!(refused["allowed"], false, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("bad signature"),
        "{refused}"
    );
    // Once the secrets are gone, legacy tokens are refused like any other.
    s.service.revoke("ACCESS_TOKEN_SECRET_1").unwrap();
    assert_eq!(guard(&legacy)["allowed"], false);
    s.stop().await;
}

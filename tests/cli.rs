//! The command line, end to end: sign, verify, rotate, revoke, exit codes.

use std::sync::Arc;
use std::time::Duration;

use signet::clock::{Clock, ManualClock, SystemClock};
use signet::config::{Config, Sources};
use signet::service::SignRequest;

use crate::common::{Home, code};

const ED: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n";

fn sign(home: &Home, purpose: &str) -> String {
    home.ok(&[
        "token",
        "sign",
        "--purpose",
        purpose,
        "--claims",
        r#"{"sub":"user-1","aud":"api"}"#,
    ])
    .trim()
    .to_owned()
}

#[test]
fn a_signed_token_verifies_and_survives_rotation_until_it_expires() {
    let home = Home::new(ED);
    let token = sign(&home, "access_token");
    let claims: serde_json::Value =
        serde_json::from_str(&home.ok(&["token", "verify", "--purpose", "access_token", &token]))
            .unwrap();
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["iss"], "http://127.0.0.1:8080");
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(
        exp - claims["iat"].as_u64().unwrap(),
        600 + 60,
        "the purpose's token_ttl, from an iat backdated by the leeway"
    );

    // A manual rotation right after bootstrap is refused (the pending key is too young) ...
    let (status, err) = code(&home.run(&["keys", "rotate", "access_token"]));
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    // ... and forced, it happens; the old token keeps verifying.
    home.ok(&["keys", "rotate", "access_token", "--force"]);
    home.ok(&["keys", "rotate", "access_token", "--force"]);
    home.ok(&["token", "verify", "--purpose", "access_token", &token]);
    let newer = sign(&home, "access_token");
    assert_ne!(kid_of(&newer), kid_of(&token));
    home.ok(&["token", "verify", "--purpose", "access_token", &newer]);
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&signet::keys::jwk::b64_decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[test]
fn bad_tokens_exit_1_with_the_reason() {
    let home = Home::new(ED);
    // An expired token: the keyring is bootstrapped and the token signed
    // through the library with a clock 20 minutes back.
    let expired = sign_in_the_past(&home, Duration::from_secs(20 * 60));
    let token = sign(&home, "access_token");
    let magic = sign(&home, "magic_link");

    // One signature character changed to another base64url character: the
    // token is well-formed, only the signature is wrong.
    let mut bytes = token.clone().into_bytes();
    let i = bytes.len() - 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).unwrap();
    let (status, err) =
        code(&home.run(&["token", "verify", "--purpose", "access_token", &flipped]));
    assert_eq!(status, 1);
    assert!(err.contains("bad signature"), "{err}");

    // A token of another purpose.
    let (status, err) = code(&home.run(&["token", "verify", "--purpose", "access_token", &magic]));
    assert_eq!(status, 1);
    assert!(
        err.contains("(wrong_purpose)") && err.contains("verify it as magic_link"),
        "{err}"
    );

    let (status, err) =
        code(&home.run(&["token", "verify", "--purpose", "access_token", &expired]));
    assert_eq!(status, 1);
    assert!(err.contains("expired"), "{err}");

    // Garbage and an unknown purpose.
    assert_eq!(
        code(&home.run(&["token", "verify", "--purpose", "access_token", "not.a.jwt"])).0,
        1
    );
    assert_eq!(
        code(&home.run(&["token", "verify", "--purpose", "nope", &token])).0,
        2
    );
}

fn sign_in_the_past(home: &Home, ago: Duration) -> String {
    let real = SystemClock.now();
    let clock = ManualClock::new(signet::clock::UnixTime(real.0 - ago.as_secs()));
    let env = |k: &str| (k == "SIGNET_MASTER_KEYS").then(|| home.master.clone());
    let config = Config::load(
        &Sources {
            file: Some(&home.config()),
            env: &env,
        },
        clock.now(),
    )
    .unwrap();
    let service = signet::cli::open(config, &env, Arc::new(clock)).unwrap();
    service.tick().unwrap();
    service
        .sign(SignRequest {
            purpose: "access_token".into(),
            ..Default::default()
        })
        .unwrap()
        .token
}

#[test]
fn signing_requests_are_checked() {
    let home = Home::new(ED);
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--claims", r#"{"exp": 1}"#],
            2,
            "\"exp\" is set by signet",
        ),
        (
            &["--claims", r#"{"iss": "me"}"#],
            2,
            "\"iss\" is set by signet",
        ),
        (&["--ttl", "11m"], 2, "exceeds the token_ttl"),
        (&["--ttl", "soon"], 2, "--ttl"),
        (&["--claims", "[1]"], 2, "JSON object"),
        (&["--alg", "HS256"], 2, "unsupported algorithm"),
        (&["--alg", "ES256"], 2, "not configured"),
    ];
    for (extra, want, needle) in cases {
        let mut args = vec!["token", "sign", "--purpose", "access_token"];
        args.extend_from_slice(extra);
        let (status, err) = code(&home.run(&args));
        assert_eq!(status, *want, "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    let (status, err) = code(&home.run(&["token", "sign", "--purpose", "nope"]));
    assert_eq!(
        (status, err.contains("unknown purpose")),
        (2, true),
        "{err}"
    );
    assert_eq!(
        code(&home.run(&["keys", "frobnicate"])).0,
        2,
        "clap usage errors exit 2"
    );
}

#[test]
fn revoking_the_active_key_promotes_the_pending_one() {
    let home = Home::new(ED);
    let token = sign(&home, "access_token");
    let kid = kid_of(&token);
    home.ok(&["keys", "revoke", &kid]);
    let (status, err) = code(&home.run(&["token", "verify", "--purpose", "access_token", &token]));
    assert_eq!((status, err.contains("(revoked_key)")), (1, true), "{err}");
    let list: serde_json::Value =
        serde_json::from_str(&home.ok(&["keys", "list", "--json"])).unwrap();
    let states: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["purpose"] == "access_token")
        .map(|k| {
            (
                k["kid"].as_str().unwrap().into(),
                k["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        states.contains(&(kid.clone(), "revoked".into())),
        "{states:?}"
    );
    assert_eq!(states.iter().filter(|(_, s)| s == "active").count(), 1);
    assert_eq!(states.iter().filter(|(_, s)| s == "pending").count(), 1);
    let newer = sign(&home, "access_token");
    assert_ne!(kid_of(&newer), kid);
    let (status, _) = code(&home.run(&["keys", "revoke", &kid]));
    assert_eq!(status, 1, "revoking twice is refused");
    assert_eq!(code(&home.run(&["keys", "revoke", "no-such-kid"])).0, 1);
}

#[test]
fn config_check_prints_the_effective_config_without_secrets() {
    let home = Home::new("[jwks]\nmax_age = \"2m\"\n");
    let out = home.ok(&["config", "check"]);
    assert!(out.contains("max_age = \"2m\""), "{out}");
    assert!(out.contains("SIGNET_MASTER_KEYS (set, redacted)"), "{out}");
    assert!(!out.contains(&home.master), "the master key leaked");
    let home = Home::new("[jwks]\nmax_age = \"forever\"\n");
    let (status, err) = code(&home.run(&["config", "check"]));
    assert_eq!(status, 2);
    assert!(err.contains("jwks.max_age"), "{err}");
}

#[test]
fn read_only_commands_create_nothing_and_say_where_they_looked() {
    let (status, out, err) = elsewhere(&["keys", "list"]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("no keys yet"), "{out}");
    let (status, _, err) = elsewhere(&["token", "verify", "--purpose", "access_token", "a.b.c"]);
    assert_eq!(status, 2);
    assert!(err.contains("the store at keys holds no keyring"), "{err}");
    let (status, out, err) = elsewhere(&["config", "check"]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("[purposes.access_token]"), "{out}");
}

#[test]
fn exit_codes_mean_one_thing_each() {
    let home = Home::new(ED);
    sign(&home, "access_token");
    // Requests signet will not sign are usage errors: 2.
    for args in [
        &[
            "token",
            "sign",
            "--purpose",
            "access_token",
            "--claims",
            "{\"iss\": \"me\"}",
        ][..],
        &["token", "sign", "--purpose", "access_token", "--ttl", "1d"],
    ] {
        let (status, err) = code(&home.run(args));
        assert_eq!(status, 2, "{args:?}: {err}");
    }
    // An unknown kid is a refusal: 1, "no such key"; kids are base64url and
    // may start with '-', which is not a flag there.
    for kid in ["not-a-kid", "-4S-LrgDtir6jsNdBgfndU6oB99rOyvoruOD6ljmBFQ"] {
        let (status, err) = code(&home.run(&["keys", "revoke", kid]));
        assert_eq!(status, 1, "{err}");
        assert!(err.contains("no such key"), "{err}");
    }
}

/// `signet` run from an empty directory, with no configuration at all.
fn elsewhere(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(names.is_empty(), "a read-only command created {names:?}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn token_verify_with_a_jwks_url_works_from_anywhere_as_a_service_would() {
    use crate::common::server::{SIGNER, ServeProcess, TOKENS, client};
    let home = Home::new(ED);
    let serve = ServeProcess::start(&home, &[("SIGNET_ADMIN_TOKENS", TOKENS)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sign = |purpose: &str| {
        rt.block_on(async {
            let r = client()
                .post(format!("http://{}/v1/tokens", serve.admin))
                .bearer_auth(SIGNER)
                .json(&serde_json::json!({"purpose": purpose, "claims": {"sub": "user-1", "aud": "api"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    };
    let (token, magic) = (sign("access_token"), sign("magic_link"));
    let url = format!("http://{}/.well-known/jwks.json", serve.public);
    let verify = |extra: &[&str], token: &str| {
        let mut args = vec![
            "token",
            "verify",
            "--purpose",
            "access_token",
            "--jwks-url",
            &url,
        ];
        args.extend_from_slice(extra);
        args.push(token);
        elsewhere(&args)
    };

    // The issuer comes from the server's discovery document.
    let (status, out, err) = verify(&["--audience", "api"], &token);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("\"sub\": \"user-1\""), "{out}");
    // A token that names an audience needs --audience.
    let (status, _, err) = verify(&[], &token);
    assert_eq!(status, 1);
    assert!(err.contains("audience"), "{err}");
    // A disagreeing issuer is named, both ways round.
    let (status, _, err) = verify(
        &["--audience", "api", "--issuer", "https://other.example"],
        &token,
    );
    assert_eq!(status, 1);
    let theirs = format!("http://{}", serve.public);
    assert!(
        err.contains("\"https://other.example\" is expected") && err.contains(&theirs),
        "{err}"
    );
    // Another purpose's token: the error says so.
    let (status, _, err) = verify(&["--audience", "api"], &magic);
    assert_eq!(status, 1);
    assert!(err.contains("not a key of access_token"), "{err}");
    // An unreachable JWKS URL is a dependency failure: exit 3.
    let (status, _, err) = elsewhere(&[
        "token",
        "verify",
        "--purpose",
        "access_token",
        "--jwks-url",
        "http://127.0.0.1:9/.well-known/jwks.json",
        "--issuer",
        &theirs,
        &token,
    ]);
    assert_eq!(status, 3, "{err}");
    // Plain http elsewhere is refused, naming the flag.
    let (status, _, err) = elsewhere(&[
        "token",
        "verify",
        "--purpose",
        "access_token",
        "--jwks-url",
        "http://evil.example/jwks",
        "--issuer",
        &theirs,
        &token,
    ]);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("--allow-http"), "{err}");
    serve.stop();
}

#[test]
fn rotating_every_purpose_is_refused_whole_when_one_pending_key_is_too_young() {
    let home = Home::new(ED);
    // Keys made an hour ago: every pending key is old enough...
    sign_in_the_past(&home, Duration::from_secs(3600));
    // ...until access_token is force-rotated and gets a brand-new pending key.
    home.ok(&["keys", "rotate", "access_token", "--force"]);
    let before = home.ok(&["keys", "list", "--json"]);
    let (status, err) = code(&home.run(&["keys", "rotate"]));
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("pending access_token key"), "{err}");
    assert_eq!(
        home.ok(&["keys", "list", "--json"]),
        before,
        "no purpose was rotated"
    );
    home.ok(&["keys", "rotate", "refresh_token"]);
    assert_ne!(home.ok(&["keys", "list", "--json"]), before);
}

#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    let home = Home::new(ED);
    sign(&home, "access_token");
    for args in [
        &["keys", "list"][..],
        &["keys", "list", "--json"],
        &["config", "check"],
    ] {
        let mut child = home
            .cmd(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader closes its end before signet writes, as `| head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let (status, stderr) = code(&out);
        assert_eq!(status, 0, "signet {args:?} on a closed pipe: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

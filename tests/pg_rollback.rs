//! A database writer cannot bring back a revoked key: the attack of
//! putting a keyring row back to an earlier authentic document and deleting
//! the history that would expose it, tried with the serving role's rights
//! and with the tables' owner's, against a running and a restarted replica.

use std::sync::Arc;

use signet::clock::{Clock, ManualClock, SystemClock};
use signet::service::{KeyService, ProblemKind, SignRequest};
use signet::storage::PostgresStore;

use crate::common::{Home, pg};
use crate::service::service;

fn sign(svc: &KeyService) -> Result<String, signet::service::SignError> {
    svc.sign(SignRequest {
        purpose: "access_token".into(),
        ..Default::default()
    })
    .map(|s| s.kid)
}

/// Two roles on the database of `url`: an owner, which owns the database
/// (and so may create in its public schema), and a serving role, which owns
/// nothing. Returns their URLs.
fn roles(url: &str) -> (String, String) {
    let db = url.rsplit("dbname=").next().unwrap().to_owned();
    let (owner, serving) = (format!("owner_{db}"), format!("serve_{db}"));
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN; CREATE ROLE {serving} LOGIN; ALTER DATABASE {db} OWNER TO {owner}"
        ))
        .unwrap();
    let as_role = |role: &str| url.replace("user=postgres", &format!("user={role}"));
    (as_role(&owner), as_role(&serving))
}

fn refused(client: &mut postgres::Client, sql: &str, reason: &str) {
    let err = client
        .batch_execute(sql)
        .expect_err(&format!("{sql} was allowed"));
    let text = format!("{err:?}");
    assert!(text.contains(reason), "{sql}: {text}");
}

/// The newest-generation refusal a replica reports for access_token.
fn store_problem(svc: &KeyService) -> String {
    let problems = svc.problems();
    let p = problems
        .iter()
        .find(|p| p.kind == ProblemKind::Store && p.purpose == "access_token")
        .unwrap_or_else(|| panic!("no store problem: {problems:?}"));
    assert!(p.blocking, "{p:?}");
    p.detail.clone()
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_rolled_back_keyring_never_brings_a_revoked_key_back() {
    let url = pg::database();
    let (owner_url, serving_url) = roles(&url);
    let serving = serving_url
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("user="))
        .unwrap()
        .to_owned();
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("state.json");
    let home = Home::new(&format!(
        "state_file = {:?}\n[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n",
        state_file.display().to_string()
    ));

    // The owner makes the schema and grants the serving role its rights.
    let out = home
        .cmd(&["store", "migrate", "--grant", &serving])
        .env("SIGNET_DATABASE_URL", &owner_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "store migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("may serve"));

    // A replica serves as the serving role: bootstraps, then a key is revoked.
    let clock = ManualClock::new(SystemClock.now());
    let replica = |name: &str| {
        service(
            &home,
            Arc::new(PostgresStore::connect(&serving_url, name).unwrap()),
            &clock,
        )
    };
    let svc = replica("running");
    svc.tick().unwrap();
    let revoked = sign(&svc).unwrap();
    svc.revoke(&revoked).unwrap();
    assert_ne!(sign(&svc).unwrap(), revoked);

    // With the serving role's own credentials the row can be put back to
    // generation 1 (where the revoked key signs), but the history cannot be
    // rewritten, nor its trigger switched off.
    let mut writer = postgres::Client::connect(&serving_url, postgres::NoTls).unwrap();
    writer
        .batch_execute(
            "UPDATE signet_keyrings SET (generation, document) = (SELECT generation, document FROM signet_keyring_history WHERE purpose = 'access_token' AND generation = 1) WHERE purpose = 'access_token'",
        )
        .unwrap();
    refused(
        &mut writer,
        "DELETE FROM signet_keyring_history WHERE generation > 1",
        "permission denied",
    );
    refused(
        &mut writer,
        "UPDATE signet_keyring_history SET generation = 99",
        "permission denied",
    );
    refused(
        &mut writer,
        "TRUNCATE signet_keyring_history",
        "permission denied",
    );
    refused(
        &mut writer,
        "ALTER TABLE signet_keyring_history DISABLE TRIGGER ALL",
        "must be owner",
    );
    refused(
        &mut writer,
        "DROP TRIGGER signet_history_append_only ON signet_keyring_history",
        "must be owner",
    );
    refused(
        &mut writer,
        "DROP TABLE signet_keyring_history",
        "must be owner",
    );

    // The running replica keeps what it served; a restarted one refuses
    // the row from the history.
    clock.advance(std::time::Duration::from_secs(1));
    svc.refresh();
    assert_ne!(sign(&svc).unwrap(), revoked);
    assert!(
        svc.rotate(Some("access_token"), true).is_err(),
        "a change never builds on the rolled-back row"
    );
    let restarted = replica("restarted");
    assert!(
        store_problem(&restarted).contains("generation 2 was committed"),
        "{}",
        store_problem(&restarted)
    );
    assert!(sign(&restarted).is_err());
    drop(restarted);

    // Even the owner, who may switch the trigger off and delete the
    // history, does not get past a replica that served generation 2: in
    // memory while it runs, from store.state_file after a restart.
    let mut owner = postgres::Client::connect(&owner_url, postgres::NoTls).unwrap();
    // With the trigger on, not even the owner rewrites it by accident.
    for sql in [
        "DELETE FROM signet_keyring_history WHERE generation > 1",
        "UPDATE signet_keyring_history SET committed_by = 'x'",
        "TRUNCATE signet_keyring_history",
    ] {
        refused(&mut owner, sql, "append-only");
    }
    owner
        .batch_execute(
            "ALTER TABLE signet_keyring_history DISABLE TRIGGER signet_history_append_only; DELETE FROM signet_keyring_history WHERE generation > 1; ALTER TABLE signet_keyring_history ENABLE TRIGGER signet_history_append_only",
        )
        .unwrap();
    clock.advance(std::time::Duration::from_secs(1));
    svc.refresh();
    assert_ne!(sign(&svc).unwrap(), revoked);
    assert!(
        store_problem(&svc).contains("older than generation 2 this replica served"),
        "{}",
        store_problem(&svc)
    );
    drop(svc);
    let restarted = replica("restarted");
    assert!(
        store_problem(&restarted).contains("older than generation 2 this replica served"),
        "{}",
        store_problem(&restarted)
    );
    assert!(
        sign(&restarted).is_err(),
        "the revoked key signs again after a restart"
    );
    let jwks = restarted.snapshot();
    let published = jwks
        .purpose("access_token")
        .map(|v| v.keyring.keys.iter().any(|k| k.kid == revoked));
    assert_ne!(
        published,
        Some(true),
        "the restarted replica holds the rolled-back keyring"
    );

    // What the README states a writer with the owner's rights can still
    // do: a replica that never served generation 2, and keeps no state
    // file, cannot tell the rolled-back row from the newest.
    let newcomer_home = Home::new("[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n");
    let newcomer = service(
        &newcomer_home,
        Arc::new(PostgresStore::connect(&serving_url, "newcomer").unwrap()),
        &clock,
    );
    assert_eq!(sign(&newcomer).unwrap(), revoked);
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_state_file_altered_by_hand_is_refused_at_start() {
    let url = pg::database();
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("state.json");
    let home = Home::new(&format!(
        "state_file = {:?}\n[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n",
        state_file.display().to_string()
    ));
    let clock = ManualClock::new(SystemClock.now());
    let svc = service(
        &home,
        Arc::new(PostgresStore::connect(&url, "r").unwrap()),
        &clock,
    );
    svc.tick().unwrap();
    drop(svc);
    let text = std::fs::read_to_string(&state_file).unwrap();
    assert!(text.contains("\"generation\": 1"), "{text}");
    std::fs::write(
        &state_file,
        text.replace("\"generation\": 1", "\"generation\": 0"),
    )
    .unwrap();
    let out = home
        .cmd(&[
            "serve",
            "--public-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .env("SIGNET_STORE_KIND", "postgres")
        .env("SIGNET_DATABASE_URL", &url)
        .env("SIGNET_ISSUER", "https://auth.example.test")
        .env("SIGNET_ADMIN_TOKENS", crate::common::server::TOKENS)
        .output()
        .unwrap();
    let (code, stderr) = crate::common::code(&out);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("state.json") && stderr.contains("fails authentication"),
        "{stderr}"
    );
    // Other commands never read or write it.
    let listed = home
        .cmd(&["keys", "list"])
        .env("SIGNET_STORE_KIND", "postgres")
        .env("SIGNET_DATABASE_URL", &url)
        .env("SIGNET_ISSUER", "https://auth.example.test")
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        crate::common::code(&listed).1
    );
}

fn signed(svc: &KeyService, purpose: &str) -> (String, String, u64) {
    let t = svc
        .sign(SignRequest {
            purpose: purpose.into(),
            ..Default::default()
        })
        .unwrap();
    let claims = svc.verify(purpose, &t.token).unwrap().claims;
    (
        t.token,
        claims["jti"].as_str().unwrap().to_owned(),
        claims["exp"].as_u64().unwrap(),
    )
}

fn ignored(svc: &KeyService, purpose: &str, reason: &str) -> i64 {
    svc.ignored_entries()
        .get_or_create(&vec![
            ("purpose", purpose.to_owned()),
            ("reason", reason.to_owned()),
        ])
        .get()
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn token_entries_written_without_the_master_key_are_ignored_and_deleted_ones_stay_refused() {
    use signet::keys::token::VerifyError;
    let url = pg::database();
    let home = Home::new(
        "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n[purposes.magic_link]\nalgorithms = [\"EdDSA\"]\n",
    );
    let clock = ManualClock::new(SystemClock.now());
    let svc = service(
        &home,
        Arc::new(PostgresStore::connect(&url, "r").unwrap()),
        &clock,
    );
    svc.tick().unwrap();
    let mut writer = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let master_id = {
        // A real entry's tag names the master key's id: the forger copies it.
        let (token, _, _) = signed(&svc, "access_token");
        svc.revoke_token("access_token", Some(&token), None)
            .unwrap();
        let tag: String = writer
            .query_one("SELECT tag FROM signet_tokens WHERE list = 'revoked'", &[])
            .unwrap()
            .get(0);
        tag.split(':').next().unwrap().to_owned()
    };

    // Rows inserted by hand: no tag, and a made-up tag under the real
    // master key's id. Neither revokes the token it names.
    let (victim, jti, exp) = signed(&svc, "access_token");
    let (victim2, jti2, exp2) = signed(&svc, "access_token");
    for (jti, exp, tag) in [
        (&jti, exp, String::new()),
        (
            &jti2,
            exp2,
            format!("{master_id}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
    ] {
        writer
            .execute(
                "INSERT INTO signet_tokens (list, purpose, jti, exp, tag) VALUES ('revoked', 'access_token', $1, $2, $3)",
                &[jti, &(exp as i64), &tag],
            )
            .unwrap();
    }
    clock.advance(std::time::Duration::from_secs(1));
    svc.refresh();
    assert!(
        svc.verify("access_token", &victim).is_ok(),
        "a forged revocation took effect"
    );
    assert!(
        svc.verify("access_token", &victim2).is_ok(),
        "a forged revocation took effect"
    );
    assert!(!svc.snapshot().revoked_jtis.contains(&jti));
    assert_eq!(ignored(&svc, "access_token", "unauthenticated"), 2);

    // A real revocation, then its row deleted by hand: the replica that
    // saw it keeps refusing the token until it expires.
    let (revoked, _, _) = signed(&svc, "access_token");
    svc.revoke_token("access_token", Some(&revoked), None)
        .unwrap();
    assert!(matches!(
        svc.verify("access_token", &revoked),
        Err(VerifyError::RevokedToken(_))
    ));
    writer
        .batch_execute("DELETE FROM signet_tokens WHERE list = 'revoked' AND tag LIKE '%:%' AND tag NOT LIKE '%:AAAA%'")
        .unwrap();
    clock.advance(std::time::Duration::from_secs(1));
    svc.refresh();
    assert!(matches!(
        svc.verify("access_token", &revoked),
        Err(VerifyError::RevokedToken(_))
    ));
    assert_eq!(ignored(&svc, "access_token", "deleted"), 2);
    // What the README states a writer can still do: a replica started after
    // the deletion never saw the revocation.
    let fresh = service(
        &home,
        Arc::new(PostgresStore::connect(&url, "fresh").unwrap()),
        &clock,
    );
    assert!(fresh.verify("access_token", &revoked).is_ok());

    // A consumed entry inserted by hand refuses its single-use token (the
    // safe direction): it is never taken as unconsumed.
    let (link, link_jti, link_exp) = signed(&svc, "magic_link");
    writer
        .execute(
            "INSERT INTO signet_tokens (list, purpose, jti, exp, tag) VALUES ('consumed', 'magic_link', $1, $2, '')",
            &[&link_jti, &(link_exp as i64)],
        )
        .unwrap();
    assert!(matches!(
        svc.consume("magic_link", &link),
        Err(signet::service::TokenError::Invalid(
            VerifyError::AlreadyUsed
        ))
    ));
}

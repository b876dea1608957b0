//! Tests of master keys, sealing and keyring authentication.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::*;
use crate::keys::{Algorithm, generate};

const ONE: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const TWO: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

fn reason(e: StoreError) -> String {
    match e {
        StoreError::Decrypt { reason, .. } => reason,
        other => panic!("expected a decryption failure, got {other}"),
    }
}

#[test]
fn a_sealed_key_opens_only_for_its_own_purpose_and_kid() {
    let keys = MasterKeys::parse(ONE).unwrap();
    let pkcs8 = generate(Algorithm::EdDSA, 2048).unwrap();
    let sealed = keys.seal("access_token", "kid-a", &pkcs8).unwrap();
    let opened = keys.open("access_token", "kid-a", &sealed).unwrap();
    assert_eq!(opened.expose_der(), pkcs8.expose_der());
    for (purpose, kid) in [("refresh_token", "kid-a"), ("access_token", "kid-b")] {
        let err = reason(keys.open(purpose, kid, &sealed).unwrap_err());
        assert!(err.contains("moved from another key"), "{err}");
    }
    // A nonce of the wrong length, or ciphertext that is not base64url.
    let mut bad = sealed.clone();
    bad.nonce = b64(&[0u8; 5]);
    assert!(reason(keys.open("access_token", "kid-a", &bad).unwrap_err()).contains("nonce"));
    let mut bad = sealed;
    bad.ciphertext = "not base64!".into();
    assert!(reason(keys.open("access_token", "kid-a", &bad).unwrap_err()).contains("ciphertext"));
}

#[test]
fn older_master_keys_only_open_and_an_unknown_one_is_named() {
    let pkcs8 = generate(Algorithm::ES256, 2048).unwrap();
    let old = MasterKeys::parse(ONE).unwrap();
    let sealed = old.seal("magic_link", "k", &pkcs8).unwrap();
    let both = MasterKeys::parse(&format!("{TWO}, {ONE}")).unwrap();
    assert_ne!(both.current_id(), old.current_id(), "the first key seals");
    assert_eq!(
        both.open("magic_link", "k", &sealed).unwrap().expose_der(),
        pkcs8.expose_der()
    );
    assert_eq!(
        both.seal("magic_link", "k", &pkcs8).unwrap().master,
        both.current_id()
    );
    let new_only = MasterKeys::parse(TWO).unwrap();
    let err = reason(new_only.open("magic_link", "k", &sealed).unwrap_err());
    assert!(
        err.contains(&sealed.master) && err.contains("SIGNET_MASTER_KEYS"),
        "{err}"
    );
}

#[test]
fn malformed_master_keys_name_the_entry_and_the_fix() {
    let short = STANDARD.encode([1u8; 16]);
    let cases = [
        (
            "not base64!".to_owned(),
            "entry 1 of SIGNET_MASTER_KEYS is not base64",
        ),
        (
            format!("{ONE},{short}"),
            "entry 2 of SIGNET_MASTER_KEYS is 16 bytes",
        ),
        (String::new(), "entry 1 of SIGNET_MASTER_KEYS is 0 bytes"),
        (
            format!("{ONE},"),
            "entry 2 of SIGNET_MASTER_KEYS is 0 bytes",
        ),
    ];
    for (text, needle) in cases {
        let err = MasterKeys::parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("openssl rand -base64 32"),
            "{text:?}: {err}"
        );
    }
}

#[test]
fn keyrings_without_their_master_key_are_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("access_token.json"), b"{}").unwrap();
    let err = MasterKeys::load(None, dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("master.key is missing") && err.contains("SIGNET_MASTER_KEYS"),
        "{err}"
    );
    assert!(!dir.path().join(MASTER_KEY_FILE).exists());
    // An unusable master.key is reported with the file, never replaced.
    std::fs::write(dir.path().join(MASTER_KEY_FILE), b"garbage").unwrap();
    let err = MasterKeys::load(None, dir.path()).unwrap_err().to_string();
    assert!(err.contains("restore it from a backup"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join(MASTER_KEY_FILE)).unwrap(),
        b"garbage"
    );
}

#[test]
fn a_development_master_key_is_created_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (first, source) = MasterKeys::load(None, dir.path()).unwrap();
    assert!(matches!(source, MasterSource::Created(_)));
    let path = dir.path().join(MASTER_KEY_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (again, source) = MasterKeys::load(None, dir.path()).unwrap();
    assert!(matches!(source, MasterSource::File(_)));
    assert_eq!(first.current_id(), again.current_id());
}

#[test]
fn keyrings_are_authenticated_under_every_master_key_and_any_change_is_caught() {
    let both = MasterKeys::parse(&format!("{TWO},{ONE}")).unwrap();
    let mut ring = Keyring::new("access_token");
    ring.generation = 3;
    ring.id = "id".into();
    both.authenticate(&mut ring).unwrap();
    assert_eq!(ring.mac.len(), 2, "one tag per configured master key");
    both.check(&ring).unwrap();
    // A process that holds only the old key can still check it.
    MasterKeys::parse(ONE).unwrap().check(&ring).unwrap();
    // Any change to what the tag covers is caught.
    for alter in [
        |r: &mut Keyring| r.generation = 2,
        |r: &mut Keyring| r.purpose = "magic_link".into(),
        |r: &mut Keyring| r.id = "other".into(),
    ] {
        let mut altered = ring.clone();
        alter(&mut altered);
        let err = both.check(&altered).unwrap_err().to_string();
        assert!(err.contains("altered outside signet"), "{err}");
    }
    // No tag at all: refused, naming the command that adds one.
    let mut bare = ring.clone();
    bare.mac.clear();
    let err = both.check(&bare).unwrap_err().to_string();
    assert!(err.contains("signet keys authenticate"), "{err}");
}

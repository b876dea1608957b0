//! Token parsing and verification against a fixed key set: the keys of
//! tests/fixtures/backend-aws-lc-rs (all four algorithms), whose tokens
//! seed the corpus. Properties:
//! - nothing panics;
//! - a token that parses has the first two segments as signing input, and
//!   is never an HMAC token (those take the legacy path or are refused);
//! - a token that verifies has the signing input and signature of one of
//!   the fixture's tokens: anything else would be a forgery;
//! - the legacy parser accepts only HS256/384/512 without kid, and never
//!   verifies with a secret that did not make the token.
#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use signet::clock::UnixTime;
use signet::keys::legacy::{OpenLegacyKey, is_legacy, parse_legacy};
use signet::keys::token::{Audience, Expectations, parse};
use signet::keys::VerifyingKey;

const KEYRING: &[u8] = include_bytes!("../../tests/fixtures/backend-aws-lc-rs/keys/access_token.json");
const CREATED_AT: &str = include_str!("../../tests/fixtures/backend-aws-lc-rs/created_at");
const TOKENS: &str = include_str!("../../tests/fixtures/backend-aws-lc-rs/tokens.json");

/// The fixture's tokens, as (signing input, signature bytes).
static SIGNED: LazyLock<Vec<(String, Vec<u8>)>> = LazyLock::new(|| {
    let tokens: HashMap<String, String> = serde_json::from_str(TOKENS).expect("tokens.json");
    tokens
        .values()
        .map(|t| {
            let (head, sig) = t.rsplit_once('.').expect("three parts");
            (head.to_owned(), signet::keys::jwk::b64_decode(sig).expect("b64"))
        })
        .collect()
});

static KEYS: LazyLock<HashMap<String, VerifyingKey>> = LazyLock::new(|| {
    let ring = signet::fuzzing::keyring_document(KEYRING, "access_token").expect("the fixture keyring");
    ring.keys
        .iter()
        .map(|k| (k.kid.clone(), VerifyingKey::new(k.alg, &k.jwk.members().expect("members"))))
        .collect()
});

static LEGACY: LazyLock<Vec<OpenLegacyKey>> = LazyLock::new(|| {
    vec![OpenLegacyKey {
        id: "FUZZ_SECRET".into(),
        issuer: None,
        expires_at: UnixTime(u64::MAX),
        secret: b"fuzz-secret".to_vec().into(),
    }]
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let now = UnixTime(CREATED_AT.trim().parse::<u64>().unwrap_or(0) + 1);
    let expect = Expectations {
        typ: Some("at+jwt"),
        issuer: Some("https://auth.example.test"),
        audience: Audience::Unchecked,
        leeway: Duration::from_secs(60),
        now,
    };
    if let Ok(parsed) = parse(token) {
        let input = parsed.signing_input();
        assert!(token.starts_with(input) && token.as_bytes().get(input.len()) == Some(&b'.'));
        assert_eq!(input.matches('.').count(), 1);
        assert!(!is_legacy(token), "an HMAC token passed the normal parser");
        if let Some(key) = KEYS.get(&parsed.kid) {
            let input = input.to_owned();
            if parsed.verify(key, &expect).is_ok() {
                let (_, sig) = token.rsplit_once('.').expect("three parts");
                let sig = signet::keys::jwk::b64_decode(sig).expect("verified, so base64url");
                assert!(
                    SIGNED.iter().any(|(i, s)| *i == input && *s == sig),
                    "a token that signet never signed verified: {token}"
                );
            }
        }
    }
    if is_legacy(token) {
        if let Ok(legacy) = parse_legacy(token) {
            let _ = legacy.verify(LEGACY.iter(), Duration::from_secs(60), now);
        }
    } else {
        assert!(parse_legacy(token).is_err(), "parse_legacy accepted a token is_legacy refused");
    }
});

//! Property tests of the parsers that see untrusted bytes (proptest, on
//! stable; a bounded number of cases so they fit in CI). The same parsers
//! are fuzzed, for longer, by `fuzz/run.sh`; the lifecycle's properties are
//! checked by the random walks (proptest) of `src/keys/lifecycle_walk_tests.rs`.

use std::sync::LazyLock;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use signet::clock::UnixTime;
use signet::config::ConfigError;
use signet::keys::token::{Audience, Expectations, encode_header, parse, sign_compact};
use signet::keys::{Algorithm, SigningKey, VerifyingKey, generate};
use signet::storage::StoreError;
use signet::storage::seal::MasterKeys;

const NOW: UnixTime = UnixTime(1_795_910_400);
const ALGS: [Algorithm; 4] = [
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
];

/// One key per algorithm, made once (RSA generation is slow).
static KEYS: LazyLock<Vec<SigningKey>> = LazyLock::new(|| {
    ALGS.iter()
        .map(|&alg| SigningKey::from_pkcs8(alg, &generate(alg, 2048).unwrap()).unwrap())
        .collect()
});

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    }
}

fn claim_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::from),
        proptest::collection::vec("[a-z]{1,8}", 0..4).prop_map(Value::from),
    ]
}

fn claims() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map("[a-z_]{1,10}", claim_value(), 0..8).prop_map(|m| {
        let mut claims: Map<String, Value> = m.into_iter().collect();
        for reserved in ["exp", "nbf", "iat", "iss", "aud"] {
            claims.remove(reserved);
        }
        claims.insert("exp".into(), Value::from(NOW.0 + 600));
        claims
    })
}

fn expect() -> Expectations<'static> {
    Expectations {
        typ: Some("at+jwt"),
        issuer: None,
        audience: Audience::Unchecked,
        leeway: Duration::from_secs(60),
        now: NOW,
    }
}

proptest! {
    #![proptest_config(config())]

    /// A token signet signs parses with its signing input as its first two
    /// segments, verifies to exactly its claims, and stops verifying when
    /// any one byte of it changes.
    #[test]
    fn a_signed_token_verifies_to_its_claims_and_no_changed_byte_verifies(
        which in 0..ALGS.len(),
        claims in claims(),
        at in any::<prop::sample::Index>(),
        to in any::<u8>(),
    ) {
        let key = &KEYS[which];
        let header = encode_header(key.alg(), key.kid(), "at+jwt");
        let body = serde_json::to_vec(&claims).unwrap();
        let token = sign_compact(|m| key.sign(m), &header, &body).unwrap();
        let verifying = VerifyingKey::new(key.alg(), &key.public_jwk().members().unwrap());

        let parsed = parse(&token).unwrap();
        prop_assert_eq!(parsed.signing_input(), token.rsplit_once('.').unwrap().0);
        prop_assert_eq!(parsed.verify(&verifying, &expect()).unwrap(), claims);

        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != to);
        bytes[i] = to;
        if let Ok(changed) = String::from_utf8(bytes) {
            let verified = parse(&changed).and_then(|p| p.verify(&verifying, &expect()));
            prop_assert!(verified.is_err(), "a token changed at byte {} verified", i);
        }
    }

    /// Whatever a JWKS holds, the verifier's parser does not panic, keeps at
    /// most the limit, and keeps only entries of the four algorithms with a
    /// kid and no private member; signet's own keys among noise are all kept.
    #[test]
    fn a_jwks_keeps_signets_keys_and_only_well_formed_public_ones(
        noise in proptest::collection::vec(jwk_like(), 0..6),
    ) {
        let mut entries: Vec<Value> = KEYS
            .iter()
            .map(|k| serde_json::to_value(k.public_jwk()).unwrap())
            .collect();
        let ours = entries.len();
        entries.extend(noise);
        let body = serde_json::to_vec(&json!({"keys": entries})).unwrap();
        let kept = signet::fuzzing::jwks(&body, 16).unwrap();
        for key in &kept {
            prop_assert!(!key.kid.is_empty() && key.kid.len() <= 128);
            let from: Vec<&Value> = entries
                .iter()
                .filter(|e| e["kid"] == key.kid.as_str() && e["alg"] == key.alg.as_str())
                .collect();
            prop_assert!(!from.is_empty());
            prop_assert!(from.iter().any(|e| e.get("d").is_none() && e.get("k").is_none()));
        }
        // Noise never takes a kid of signet's (it has its own kids), so
        // signet's keys are all kept.
        for k in KEYS.iter() {
            prop_assert!(kept.iter().any(|c| c.kid == k.kid()), "{} was dropped", k.kid());
        }
        prop_assert!(kept.len() >= ours);
    }

    /// A keyring document with any bytes changed is refused as `Corrupt`, or
    /// still parses; one that parses but differs from what was written never
    /// authenticates under the master key.
    #[test]
    fn a_changed_keyring_document_is_corrupt_or_fails_authentication(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = FIXTURE.to_vec();
        for (at, to) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *to;
        }
        prop_assume!(bytes != FIXTURE);
        match signet::fuzzing::keyring_document(&bytes, "access_token") {
            Err(StoreError::Corrupt { .. }) => {}
            Err(other) => prop_assert!(false, "refused as {other:?}, not Corrupt"),
            Ok(ring) => {
                let original = signet::fuzzing::keyring_document(FIXTURE, "access_token").unwrap();
                if ring != original {
                    prop_assert!(MASTER.check(&ring).is_err(), "an altered keyring authenticated");
                }
            }
        }
    }

    /// A configuration with arbitrary values in its fields loads, or is
    /// refused naming a field it has; a loaded one renders and loads again
    /// to the same rendering.
    #[test]
    fn a_configuration_loads_or_names_the_field_and_renders_to_itself(
        max_age in duration_text(),
        ttl in duration_text(),
        poll in duration_text(),
        alg in prop_oneof![
            Just("EdDSA".to_owned()),
            Just("RS256".to_owned()),
            Just("HS256".to_owned()),
            Just("none".to_owned()),
            "[A-Za-z0-9]{0,6}",
        ],
        rsa_bits in prop_oneof![Just(2048u32), Just(3072), Just(1024), any::<u32>()],
        single_use in any::<bool>(),
        disabled in any::<bool>(),
    ) {
        let text = format!(
            "[jwks]\nmax_age = {max_age:?}\n[store]\npoll_interval = {poll:?}\n[purposes.access_token]\nalgorithms = [{alg:?}]\ntoken_ttl = {ttl:?}\nrsa_bits = {rsa_bits}\nsingle_use = {single_use}\n[purposes.magic_link]\nenabled = {}\n",
            !disabled
        );
        match signet::fuzzing::config(&text, NOW) {
            Ok(c) => {
                let rendered = c.to_toml();
                let again = signet::fuzzing::config(&rendered, NOW).unwrap();
                prop_assert_eq!(again.to_toml(), rendered);
            }
            Err(ConfigError::Invalid { field, .. }) => {
                let named = ["jwks.max_age", "store.poll_interval", "purposes.access_token"];
                prop_assert!(named.iter().any(|n| field.starts_with(n)), "refused naming {field}");
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
    }
}

const FIXTURE: &[u8] = include_bytes!("fixtures/backend-aws-lc-rs/keys/access_token.json");

static MASTER: LazyLock<MasterKeys> =
    LazyLock::new(|| MasterKeys::parse(crate::common::MASTER).unwrap());

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u64..100_000).prop_map(|n| format!("{n}s")),
        (1u64..1_000).prop_map(|n| format!("{n}m")),
        (0u64..40).prop_map(|n| format!("{n}d")),
        "[0-9a-z ]{0,8}",
    ]
}

/// Something like a JWKS entry: signet's member names with arbitrary values,
/// and kids unlike signet's (43 characters).
fn jwk_like() -> impl Strategy<Value = Value> {
    let text = || "[A-Za-z0-9_-]{0,48}".prop_map(|s: String| s);
    (
        prop_oneof![
            Just("OKP".to_owned()),
            Just("EC".to_owned()),
            Just("RSA".to_owned()),
            Just("oct".to_owned()),
            text(),
        ],
        prop::sample::select(vec!["EdDSA", "ES256", "RS256", "HS256", "none"]),
        "[a-z0-9]{1,20}",
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        any::<bool>(),
    )
        .prop_map(|(kty, alg, kid, x, n, d, with_use)| {
            let mut e = json!({"kty": kty, "alg": alg, "kid": kid});
            if with_use {
                e["use"] = json!("sig");
            }
            for (name, v) in [("x", x), ("n", n), ("d", d)] {
                if let Some(v) = v {
                    e[name] = json!(v);
                }
            }
            e["e"] = json!("AQAB");
            e["crv"] = json!(if kty == "EC" { "P-256" } else { "Ed25519" });
            e
        })
}

//! The two crypto backends (aws-lc-rs and ring) are interchangeable: a keys
//! directory written by either one's signet, and the tokens it signed, work
//! in this build, whichever backend it has. The fixtures were written by
//! each backend's binary (`tests/fixtures/make-backend-keys.sh`).

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use signet::clock::{ManualClock, UnixTime};
use signet::keys::{Algorithm, PublicMembers};
use signet::service::SignRequest;
use signet::storage::FileStore;

use crate::common::Home;
use crate::service::service;

const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\", \"RS256\", \"PS256\", \"ES256\"]\n[purposes.refresh_token]\nenabled = false\n[purposes.magic_link]\nenabled = false\n[purposes.reset_password_link]\nenabled = false\n";

/// Checks a signature with ring directly (not through signet): an
/// implementation independent of the aws-lc-rs build.
pub(crate) fn ring_accepts(alg: Algorithm, key: &PublicMembers, token: &str) -> bool {
    use ring::signature as sig;
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = signet::keys::jwk::b64_decode(signature).unwrap();
    let input = input.as_bytes();
    match (alg, key) {
        (Algorithm::EdDSA, PublicMembers::Okp { x }) => {
            sig::UnparsedPublicKey::new(&sig::ED25519, x)
                .verify(input, &signature)
                .is_ok()
        }
        (Algorithm::ES256, PublicMembers::Ec { x, y }) => {
            let point = [&[4u8][..], x, y].concat();
            sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                .verify(input, &signature)
                .is_ok()
        }
        (Algorithm::RS256 | Algorithm::PS256, PublicMembers::Rsa { n, e }) => {
            let params = if alg == Algorithm::RS256 {
                &sig::RSA_PKCS1_2048_8192_SHA256
            } else {
                &sig::RSA_PSS_2048_8192_SHA256
            };
            sig::RsaPublicKeyComponents { n, e }
                .verify(params, input, &signature)
                .is_ok()
        }
        _ => false,
    }
}

fn check_fixture(backend: &str) {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/backend-{backend}"));
    let home = Home::new(CONFIG);
    // The issuer the fixture's tokens carry, at the top of the file.
    let config = std::fs::read_to_string(home.config()).unwrap();
    std::fs::write(
        home.config(),
        format!("issuer = \"https://auth.example.test\"\n{config}"),
    )
    .unwrap();
    std::fs::create_dir_all(home.keys()).unwrap();
    std::fs::copy(
        fixture.join("keys/access_token.json"),
        home.keys().join("access_token.json"),
    )
    .unwrap();
    let created: u64 = std::fs::read_to_string(fixture.join("created_at"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let tokens: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("tokens.json")).unwrap())
            .unwrap();
    // The moment the fixture was written, plus a second: its keys are active.
    let clock = ManualClock::new(UnixTime(created + 1));
    let svc = service(
        &home,
        Arc::new(FileStore::open(home.keys()).unwrap()),
        &clock,
    );
    assert!(svc.problems().is_empty(), "{backend}: {:?}", svc.problems());
    for alg in [
        Algorithm::EdDSA,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
    ] {
        // Its tokens verify here.
        let theirs = tokens[alg.as_str()].as_str().unwrap();
        let verified = svc
            .verify("access_token", theirs)
            .unwrap_or_else(|e| panic!("{alg} token of {backend} refused here: {e}"));
        assert_eq!(verified.claims["sub"], "fixture");
        // Its private keys sign here, and ring accepts the result.
        let ours = svc
            .sign(SignRequest {
                purpose: "access_token".into(),
                alg: Some(alg),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{alg} key of {backend} cannot sign here: {e}"));
        svc.verify("access_token", &ours.token).unwrap();
        let snap = svc.snapshot();
        let key = snap
            .purpose("access_token")
            .unwrap()
            .keyring
            .get(&ours.kid)
            .unwrap();
        assert!(
            ring_accepts(alg, &key.jwk.members().unwrap(), &ours.token),
            "ring refuses the {alg} signature made here with a key of {backend}"
        );
    }
}

#[test]
fn keys_and_tokens_of_the_aws_lc_rs_backend_work_in_this_build() {
    eprintln!("this build: {}", signet::crypto::BACKEND);
    check_fixture("aws-lc-rs");
}

#[test]
fn keys_and_tokens_of_the_ring_backend_work_in_this_build() {
    check_fixture("ring");
}

/// Keys this build generates open in ring directly, and ring's signatures
/// with them verify here: the PKCS#8 encodings agree.
#[test]
fn keys_generated_here_are_standard_pkcs8_that_ring_reads() {
    use ring::signature::{self as sig, KeyPair as _};
    let rng = ring::rand::SystemRandom::new();
    for alg in [Algorithm::EdDSA, Algorithm::RS256, Algorithm::ES256] {
        let pkcs8 = signet::keys::generate(alg, 2048).unwrap();
        let ours = signet::keys::SigningKey::from_pkcs8(alg, &pkcs8).unwrap();
        let der = pkcs8.expose_der();
        let message = b"header.claims";
        let (signature, public): (Vec<u8>, Vec<u8>) = match alg {
            Algorithm::EdDSA => {
                let kp = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).unwrap();
                (
                    kp.sign(message).as_ref().to_vec(),
                    kp.public_key().as_ref().to_vec(),
                )
            }
            Algorithm::ES256 => {
                let kp =
                    sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                        .unwrap();
                (
                    kp.sign(&rng, message).unwrap().as_ref().to_vec(),
                    kp.public_key().as_ref().to_vec(),
                )
            }
            _ => {
                let kp = sig::RsaKeyPair::from_pkcs8(der).unwrap();
                let mut out = vec![0; kp.public().modulus_len()];
                kp.sign(&sig::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .unwrap();
                (out, kp.public_key().as_ref().to_vec())
            }
        };
        assert!(!public.is_empty());
        let members = ours.public_jwk().members().unwrap();
        assert!(
            signet::keys::verify_signature(alg, &members, message, &signature),
            "{alg}: ring's signature with a key generated here does not verify here"
        );
    }
}

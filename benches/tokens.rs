//! Signing and verification throughput: signet's paths against raw ring on
//! the same keys and inputs, in the same run.
//!
//! `cargo bench --bench tokens`. The README reports the numbers.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // a benchmark, not API

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/common/jwt_provider.rs"]
mod jwt_provider;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use serde_json::{Map, json};
use signet::clock::{Clock, SystemClock};
use signet::config::{Config, Sources};
use signet::keys::Algorithm;
use signet::service::{KeyService, SignRequest};
use signet::storage::FileStore;
use signet::storage::seal::MasterKeys;

const MASTER: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn service(dir: &std::path::Path) -> KeyService {
    let config = dir.join("signet.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = {:?}\n[purposes.access_token]\nalgorithms = [\"EdDSA\", \"ES256\", \"RS256\"]\n",
            dir.join("keys").display().to_string()
        ),
    )
    .unwrap();
    let env = |_: &str| None;
    let config = Config::load(
        &Sources {
            file: Some(&config),
            env: &env,
        },
        SystemClock.now(),
    )
    .unwrap();
    let store = Arc::new(FileStore::open(dir.join("keys")).unwrap());
    let s = KeyService::open(
        Arc::new(config),
        store,
        MasterKeys::parse(MASTER).unwrap(),
        Arc::new(SystemClock),
    )
    .unwrap();
    s.tick().unwrap();
    s
}

fn claims() -> Map<String, serde_json::Value> {
    json!({"sub": "user-1234567890", "aud": "orders", "scope": "orders:read orders:write"})
        .as_object()
        .unwrap()
        .clone()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let rng = SystemRandom::new();

    for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
        let req = || SignRequest {
            purpose: "access_token".into(),
            claims: claims(),
            ttl: None,
            alg: Some(alg),
        };
        let token = svc.sign(req()).unwrap().token;
        let input = token.rsplit_once('.').unwrap().0;
        let mut group = c.benchmark_group(alg.as_str());

        // Raw ring on an independent key of the same kind and the same input length.
        match alg {
            Algorithm::EdDSA => {
                let kp = sig::Ed25519KeyPair::from_pkcs8(
                    sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref(),
                )
                .unwrap();
                let s = kp.sign(input.as_bytes());
                let public = kp.public_key().as_ref().to_vec();
                group.bench_function("ring sign", |b| {
                    b.iter(|| kp.sign(black_box(input.as_bytes())))
                });
                group.bench_function("ring verify", |b| {
                    b.iter(|| {
                        sig::UnparsedPublicKey::new(&sig::ED25519, &public)
                            .verify(black_box(input.as_bytes()), s.as_ref())
                            .unwrap()
                    })
                });
            }
            Algorithm::ES256 => {
                let doc =
                    sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .unwrap();
                let kp = sig::EcdsaKeyPair::from_pkcs8(
                    &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    doc.as_ref(),
                    &rng,
                )
                .unwrap();
                let s = kp.sign(&rng, input.as_bytes()).unwrap();
                let public = kp.public_key().as_ref().to_vec();
                group.bench_function("ring sign", |b| {
                    b.iter(|| kp.sign(&rng, black_box(input.as_bytes())).unwrap())
                });
                group.bench_function("ring verify", |b| {
                    b.iter(|| {
                        sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &public)
                            .verify(black_box(input.as_bytes()), s.as_ref())
                            .unwrap()
                    })
                });
            }
            _ => {
                let pkcs8 = signet::keys::generate(alg, 2048).unwrap();
                let kp = sig::RsaKeyPair::from_pkcs8(pkcs8.expose_der()).unwrap();
                let mut s = vec![0; kp.public().modulus_len()];
                kp.sign(&sig::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut s)
                    .unwrap();
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public());
                group.bench_function("ring sign", |b| {
                    b.iter(|| {
                        let mut out = vec![0; kp.public().modulus_len()];
                        kp.sign(
                            &sig::RSA_PKCS1_SHA256,
                            &rng,
                            black_box(input.as_bytes()),
                            &mut out,
                        )
                        .unwrap();
                        out
                    })
                });
                group.bench_function("ring verify", |b| {
                    b.iter(|| {
                        sig::RsaPublicKeyComponents { n: &c.n, e: &c.e }
                            .verify(
                                &sig::RSA_PKCS1_2048_8192_SHA256,
                                black_box(input.as_bytes()),
                                &s,
                            )
                            .unwrap()
                    })
                });
            }
        }
        group.bench_function("signet sign", |b| {
            b.iter(|| svc.sign(black_box(req())).unwrap())
        });
        group.bench_function("signet verify", |b| {
            b.iter(|| svc.verify("access_token", black_box(&token)).unwrap())
        });
        group.finish();
    }

    // jsonwebtoken::encode builds a signer from DER on every call.
    jwt_provider::install();
    let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let enc = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    let body = json!({"sub": "user-1234567890", "aud": "orders", "exp": 2_000_000_000u64});
    c.bench_function("EdDSA/jsonwebtoken encode", |b| {
        b.iter(|| jsonwebtoken::encode(&header, black_box(&body), &enc).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);

//! Signing and verification throughput: signet's paths against the crypto
//! floor (aws-lc-rs and ring directly) on the same inputs, in the same run.
//! `benches/peers.sh` runs this, then jose, PyJWT and jwcrypto on the tokens
//! and JWKS this writes, and prints the table the README shows.
//!
//! `cargo bench --bench peers` runs it alone. With `SIGNET_PEERS_INPUT` set,
//! it writes the peers' input (signet's JWKS, a token per algorithm) there.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // a benchmark, not API

use std::hint::black_box;
use std::sync::Arc;

use criterion::{
    BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use serde_json::{Map, Value, json};
use signet::clock::{Clock, SystemClock};
use signet::config::{Config, Sources};
use signet::http::AppState;
use signet::http::auth::AdminTokens;
use signet::keys::{Algorithm, generate};
use signet::server::{Listeners, run};
use signet::service::{KeyService, SignRequest};
use signet::storage::FileStore;
use signet::storage::seal::MasterKeys;
use signet::verifier::Verifier;

const MASTER: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const ISSUER: &str = "https://auth.example.test";
const AUDIENCE: &str = "orders";
const ALGS: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::RS256, Algorithm::ES256];

fn claims() -> Map<String, Value> {
    json!({"sub": "user-1234567890", "aud": AUDIENCE, "scope": "orders:read orders:write"})
        .as_object()
        .unwrap()
        .clone()
}

fn service(dir: &std::path::Path) -> KeyService {
    let config = dir.join("signet.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = {ISSUER:?}\n[store]\npath = {:?}\n[purposes.access_token]\nalgorithms = [\"EdDSA\", \"RS256\", \"ES256\"]\ntoken_ttl = \"1h\"\n[purposes.magic_link]\nalgorithms = [\"EdDSA\"]\n",
            dir.join("keys").display().to_string()
        ),
    )
    .unwrap();
    let env = |_: &str| None;
    let sources = Sources {
        file: Some(&config),
        env: &env,
    };
    let config = Config::load(&sources, SystemClock.now()).unwrap();
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

/// What a floor's verification measures: a signature and the public key.
struct Signed {
    signature: Vec<u8>,
    /// Ed25519: the key; P-256: the uncompressed point; RSA: unused.
    public: Vec<u8>,
    /// RSA: (n, e).
    rsa: Option<(Vec<u8>, Vec<u8>)>,
}

/// Raw signing with one backend on the same input as signet's: the floor
/// signet's figures are a fraction of. `$ecdsa` parses a P-256 PKCS#8 key
/// (ring also takes a random source there). Returns a signature and the
/// public key, for the verification floor.
macro_rules! sign_floor {
    ($group:expr, $name:literal, $b:ident, $alg:expr, $input:expr, $ecdsa:expr) => {{
        use $b::signature::{self as sig, KeyPair as _};
        let rng = $b::rand::SystemRandom::new();
        let pkcs8 = generate($alg, 2048).unwrap();
        let der = pkcs8.expose_der();
        let input: &[u8] = $input;
        let id = concat!($name, " sign");
        match $alg {
            Algorithm::EdDSA => {
                let kp = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).unwrap();
                $group.bench_function(id, |b| b.iter(|| kp.sign(black_box(input))));
                Signed {
                    signature: kp.sign(input).as_ref().to_vec(),
                    public: kp.public_key().as_ref().to_vec(),
                    rsa: None,
                }
            }
            Algorithm::ES256 => {
                let kp: sig::EcdsaKeyPair = $ecdsa(der, &rng);
                $group.bench_function(id, |b| b.iter(|| kp.sign(&rng, black_box(input)).unwrap()));
                Signed {
                    signature: kp.sign(&rng, input).unwrap().as_ref().to_vec(),
                    public: kp.public_key().as_ref().to_vec(),
                    rsa: None,
                }
            }
            _ => {
                let kp = sig::RsaKeyPair::from_pkcs8(der).unwrap();
                let len = kp.public_key().modulus_len();
                $group.bench_function(id, |b| {
                    b.iter(|| {
                        let mut out = vec![0; len];
                        kp.sign(&sig::RSA_PKCS1_SHA256, &rng, black_box(input), &mut out)
                            .unwrap();
                        out
                    })
                });
                let mut signature = vec![0; len];
                kp.sign(&sig::RSA_PKCS1_SHA256, &rng, input, &mut signature)
                    .unwrap();
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
                Signed {
                    signature,
                    public: Vec::new(),
                    rsa: Some((c.n, c.e)),
                }
            }
        }
    }};
}

fn floors(group: &mut BenchmarkGroup<'_, WallTime>, alg: Algorithm, input: &[u8]) {
    // aws-lc-rs at its fastest: the public key parsed once.
    #[cfg(feature = "aws-lc-rs")]
    {
        use aws_lc_rs::signature as sig;
        let signed = sign_floor!(
            group,
            "aws-lc-rs",
            aws_lc_rs,
            alg,
            input,
            |der: &[u8], _| {
                sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der).unwrap()
            }
        );
        let key = match (&signed.rsa, alg) {
            (Some((n, e)), _) => sig::RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256)
                .unwrap(),
            (None, Algorithm::EdDSA) => {
                sig::ParsedPublicKey::new(&sig::ED25519, &signed.public).unwrap()
            }
            (None, _) => {
                sig::ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &signed.public).unwrap()
            }
        };
        group.bench_function("aws-lc-rs verify", |b| {
            b.iter(|| key.verify_sig(black_box(input), &signed.signature).unwrap())
        });
    }
    // ring parses the public key on every verification: it has no other way.
    use ring::signature as sig;
    let signed = sign_floor!(group, "ring", ring, alg, input, |der: &[u8], rng| {
        sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der, rng).unwrap()
    });
    group.bench_function("ring verify", |b| {
        b.iter(|| match (&signed.rsa, alg) {
            (Some((n, e)), _) => sig::RsaPublicKeyComponents { n, e }
                .verify(
                    &sig::RSA_PKCS1_2048_8192_SHA256,
                    black_box(input),
                    &signed.signature,
                )
                .unwrap(),
            (None, Algorithm::EdDSA) => sig::UnparsedPublicKey::new(&sig::ED25519, &signed.public)
                .verify(black_box(input), &signed.signature)
                .unwrap(),
            (None, _) => sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &signed.public)
                .verify(black_box(input), &signed.signature)
                .unwrap(),
        })
    });
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let svc = Arc::new(service(dir.path()));
    // signet's own server on port 0, for the embedded verifier's JWKS.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let jwks_url = rt.block_on(async {
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks/access_token.json",
            public.local_addr().unwrap()
        );
        let tokens = AdminTokens::parse("bench:admin:bench-token-0123456789abcdef").unwrap();
        let state = AppState::new(svc.clone(), tokens);
        tokio::spawn(run(
            Listeners { public, admin },
            state,
            std::future::pending(),
        ));
        url
    });
    let verifier = Verifier::builder(jwks_url.clone())
        .allow_http()
        .purpose("access_token")
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();

    let mut tokens = Map::new();
    for alg in ALGS {
        let req = || SignRequest {
            purpose: "access_token".into(),
            claims: claims(),
            ttl: None,
            alg: Some(alg),
        };
        let token = svc.sign(req()).unwrap().token;
        let input = token.rsplit_once('.').unwrap().0.as_bytes().to_vec();
        let mut group = c.benchmark_group(alg.as_str());
        floors(&mut group, alg, &input);
        // The request is the caller's (built outside the measurement); its
        // checks, the claims, the JSON, base64 and the signature are signet's.
        group.bench_function("signet sign", |b| {
            b.iter_batched(req, |r| svc.sign(r).unwrap(), BatchSize::SmallInput)
        });
        group.bench_function("signet verify", |b| {
            b.iter(|| svc.verify("access_token", black_box(&token)).unwrap())
        });
        rt.block_on(verifier.verify::<Value>(&token)).unwrap();
        group.bench_function("signet verifier", |b| {
            b.iter(|| {
                rt.block_on(verifier.verify::<Value>(black_box(&token)))
                    .unwrap()
            })
        });
        group.finish();
        tokens.insert(alg.as_str().into(), token.into());
    }

    // Consuming a single-use token on the file store (in a temporary
    // directory on this machine's disk): verify, then record its jti with
    // an O_EXCL create and a directory fsync. Signing the link is setup.
    let link = || {
        svc.sign(SignRequest {
            purpose: "magic_link".into(),
            claims: Map::new(),
            ttl: None,
            alg: None,
        })
        .unwrap()
        .token
    };
    c.benchmark_group("consume")
        .bench_function("signet file store", |b| {
            b.iter_batched(
                link,
                |t| svc.consume("magic_link", &t).unwrap(),
                BatchSize::SmallInput,
            )
        });

    if let Ok(path) = std::env::var("SIGNET_PEERS_INPUT") {
        let snap = svc.snapshot();
        let jwks: Value =
            serde_json::from_slice(&snap.purpose("access_token").unwrap().jwks.body).unwrap();
        let input = json!({
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "claims": claims(),
            "jwks": jwks,
            "tokens": tokens,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&input).unwrap()).unwrap();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);

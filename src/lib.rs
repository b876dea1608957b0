//! signet: a JWKS key server and the verifier that services embed.
//!
//! # Verifying signet tokens in a Rust service
//!
//! The crate is not published: depend on it by git or path, with only the
//! verifier (no server code is compiled):
//!
//! ```toml
//! signet = { git = "https://example.com/your/signet.git", default-features = false, features = ["verifier", "axum"] }
//! # or, next to a checkout: signet = { path = "../signet", default-features = false, features = ["verifier", "axum"] }
//! ```
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use signet::verifier::{Verified, Verifier};
//!
//! #[derive(serde::Deserialize)]
//! struct Claims {
//!     sub: String,
//! }
//!
//! let verifier = Verifier::builder("https://auth.example.com/.well-known/jwks.json")
//!     .issuer("https://auth.example.com")
//!     .audience("orders") // the token's aud must name this service
//!     .purpose("access_token") // required: only access tokens verify here
//!     .build()?;
//! # let token = "";
//! let verified = verifier.verify::<Claims>(token).await?;
//! println!("{} via key {}", verified.claims.sub, verified.kid);
//!
//! // In an axum handler (the router's state is the Verifier, or has one
//! // through FromRef): 401 with a Bearer challenge, or 503 while the keys
//! // cannot be fetched.
//! async fn orders(token: Verified<Claims>) -> String {
//!     token.claims.sub
//! }
//! # Ok(()) }
//! ```
//!
//! Features: `verifier` (the JWKS client), `axum` (with `verifier`: the
//! `Verified<C>` extractor), `server` (the key server and the `signet`
//! binary; on by default with the other two). [`verifier`] documents the
//! caching and the checks.
//!
//! # Architecture
//!
//! Dependencies point inward: `cli`, `http` and `scheduler` use `service`;
//! `service` uses `keys` and `storage`; `keys` is pure.
//!
//! - [`clock`]: the one reader of the system clock; [`clock::UnixTime`] and test clocks.
//! - [`keys`]: the pure core. Algorithms, key generation and signing (on [`crypto`]), public
//!   JWKs and RFC 7638 kids, the lifecycle (`state_at`, `due`, rotate, revoke; the
//!   rules are numbered in `docs/lifecycle.md`),
//!   strict JWT parsing and verification. No IO, no async, no clock reads.
//! - `config` (feature `server`): defaults < `signet.toml` < `SIGNET_*` < flags, checked against the lifecycle rules.
//! - `storage` (feature `server`): the [`storage::KeyStore`] trait; two stores, one document
//!   format: `storage/file/` (a keys directory) and `storage/postgres/` (replicas: one
//!   connection per role, the append-only history), over what both share at `storage/`: the
//!   keyring document, the token-list types, durable directories, the compare-and-swap check,
//!   and sealing with the master keys.
//! - `service` (feature `server`): keyrings plus store plus clock: ticks, rotation (keys made
//!   before the lock), signing, verification; one snapshot of per-purpose views, each loaded
//!   and failing on its own, never older than one served (rule 16).
//! - `http` (feature `server`): the public and admin routers, bearer auth, problem+json errors.
//! - `metrics` (feature `server`): Prometheus counters held by handle, gauges computed at scrape.
//! - `scheduler` (feature `server`): cron jobs per purpose and the periodic check; both only apply what `keys` says is due.
//! - `server` (feature `server`): `run(listeners, state, shutdown)`: both listeners plus the scheduler.
//! - `verifier` (feature `verifier`): the JWKS client services embed; with `axum`, the `Verified<C>` extractor.
//! - `pkcs11` (feature `pkcs11`, on by default): private keys generated and used inside a
//!   PKCS#11 token; the snapshot's signer is then a handle on the token's key.
//! - `crypto`: the crypto backend chosen at build time (aws-lc-rs or ring); nothing else names either.
//! - `cli` (feature `server`): the `signet` command line; `main.rs` only calls it.

pub mod clock;
pub mod crypto;
pub mod keys;

#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
#[cfg(feature = "server")]
pub mod scheduler;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod storage;
#[cfg(feature = "verifier")]
pub mod verifier;

//! The verifier Rust services embed: a cached JWKS client and strict JWT checks.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use signet::verifier::Verifier;
//! #[derive(serde::Deserialize)]
//! struct Claims { sub: String }
//!
//! let verifier = Verifier::builder("https://auth.example.com/.well-known/jwks.json")
//!     .issuer("https://auth.example.com")
//!     .audience("orders-api")
//!     .purpose("access_token")
//!     .build()?;
//! # let token = "";
//! let verified = verifier.verify::<Claims>(token).await?;
//! println!("{} via key {}", verified.claims.sub, verified.kid);
//! # Ok(()) }
//! ```
//!
//! Keys are fetched once and kept for the JWKS's `Cache-Control: max-age`
//! (clamped); an unknown kid triggers one refetch shared by all concurrent
//! callers, at most once per cooldown; past `max-age` a known kid answers at
//! once while the set is revalidated in the background; if the endpoint
//! fails, the last good key set keeps verifying up to a stale limit. Time comes from a
//! [`Clock`], so tests move it instead of sleeping.

mod builder;
#[cfg(feature = "axum")]
mod extract;
pub(crate) mod jwks;
mod revocations;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use crate::keys::token::VerifyError;
pub use builder::{DEFAULT_MAX_BODY, DEFAULT_MAX_KEYS, tls_config};
#[cfg(feature = "axum")]
pub use extract::Unauthorized;
pub use revocations::REVOCATIONS_PATH;

use crate::clock::{Clock, UnixTime};
use crate::keys::Algorithm;
use crate::keys::token::{Audience, Expectations, parse};
use jwks::{Fetched, Key, Limits, fetch};

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified<C> {
    /// Its claims.
    pub claims: C,
    /// The key that signed it.
    pub kid: String,
    /// Its algorithm.
    pub alg: Algorithm,
}

/// A verifier configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The JWKS URL is malformed or not https.
    #[error("JWKS URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A cache bound is inconsistent.
    #[error("{0}")]
    Limits(String),
    /// Neither a purpose nor a `typ` was given: every purpose's tokens would verify.
    #[error(
        "no purpose: call .purpose(\"access_token\") (or .typ(..) for a custom typ), so that a refresh token or a magic link is not accepted where an access token is expected; .any_typ() accepts every purpose, if that is really meant"
    )]
    NoPurpose,
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// Configures a [`Verifier`].
#[derive(Debug, Clone)]
pub struct VerifierBuilder {
    url: String,
    issuer: Option<String>,
    audience: Option<String>,
    purpose: Option<String>,
    typ: Option<String>,
    leeway: Duration,
    min_ttl: Duration,
    max_ttl: Duration,
    default_ttl: Duration,
    cooldown: Duration,
    stale_limit: Duration,
    timeout: Duration,
    max_body: usize,
    max_keys: usize,
    any_typ: bool,
    allow_http: bool,
    clock: Arc<dyn Clock>,
    revocations: Revocations,
}

/// Which revocation document a verifier follows.
#[derive(Debug, Clone)]
enum Revocations {
    /// signet's path on the JWKS URL's origin.
    Derived,
    /// This URL.
    Url(String),
    /// None.
    Off,
}

/// Counters of a verifier's JWKS traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// JWKS requests sent.
    pub fetches: u64,
    /// Requests that failed (network, status, body).
    pub failures: u64,
    /// Verifications that used a key set past its freshness.
    pub stale_uses: u64,
}

#[derive(Debug, Default)]
struct Counters {
    fetches: AtomicU64,
    failures: AtomicU64,
    stale_uses: AtomicU64,
}

/// The cached key set, swapped whole.
#[derive(Debug, Default)]
struct KeySet {
    keys: HashMap<String, Arc<Key>>,
    etag: Option<String>,
    loaded: bool,
    fresh_until: UnixTime,
    stale_until: UnixTime,
}

#[derive(Debug)]
struct Inner {
    cfg: VerifierBuilder,
    http: reqwest::Client,
    limits: Limits,
    set: ArcSwap<KeySet>,
    /// Seconds of the last fetch attempt, plus one (0: never).
    last_attempt: AtomicU64,
    refresh: tokio::sync::Mutex<()>,
    unknown: moka::future::Cache<String, ()>,
    counters: Counters,
    /// The revocation document's URL; `None`: not checked.
    revocations_url: Option<String>,
    revoked: ArcSwap<revocations::Revoked>,
    /// Seconds of the last failed revocation fetch, plus one (0: none since the last success).
    revoked_attempt: AtomicU64,
    revoked_refresh: tokio::sync::Mutex<()>,
}

/// Verifies signet tokens against a JWKS URL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Verifier(Arc<Inner>);

impl Verifier {
    /// The JWKS URL in use (per purpose, when a purpose was set).
    pub fn jwks_url(&self) -> &str {
        &self.0.cfg.url
    }

    /// Counters of JWKS traffic.
    pub fn stats(&self) -> Stats {
        let c = &self.0.counters;
        Stats {
            fetches: c.fetches.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            stale_uses: c.stale_uses.load(Ordering::Relaxed),
        }
    }

    /// Verifies `token` and deserialises its claims into `C`.
    pub async fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<Verified<C>, VerifyError> {
        let parsed = parse(token)?;
        let key = self.key(&parsed.kid).await?;
        let cfg = &self.0.cfg;
        let (kid, alg) = (parsed.kid.clone(), key.alg);
        let expect = Expectations {
            // `None` only with `any_typ()`, which asked for it by name.
            typ: cfg.typ.as_deref(),
            issuer: cfg.issuer.as_deref(),
            audience: cfg
                .audience
                .as_deref()
                .map_or(Audience::None, Audience::Required),
            leeway: cfg.leeway,
            now: cfg.clock.now(),
        };
        let claims = parsed.verify(&key.key, &expect)?;
        let jti = claims.get("jti").and_then(Value::as_str);
        self.check_revoked(&kid, jti).await?;
        let claims = serde_json::from_value(Value::Object(claims))
            .map_err(|e| VerifyError::Malformed(format!("claims: {e}")))?;
        Ok(Verified { claims, kid, alg })
    }

    async fn key(&self, kid: &str) -> Result<Arc<Key>, VerifyError> {
        let now = self.0.cfg.clock.now();
        let seen = self.0.set.load_full();
        if seen.loaded && now < seen.stale_until {
            if let Some(k) = seen.keys.get(kid) {
                if now >= seen.fresh_until {
                    // Stale but usable: answer now and revalidate in the
                    // background, so a slow or hanging endpoint never stalls
                    // requests whose key is known.
                    self.0.counters.stale_uses.fetch_add(1, Ordering::Relaxed);
                    if !self.cooling(now) {
                        let (v, seen) = (self.clone(), seen.clone());
                        tokio::spawn(async move { v.refresh(&seen, now).await });
                    }
                }
                return Ok(k.clone());
            }
            if now < seen.fresh_until && self.0.unknown.contains_key(kid) {
                return Err(VerifyError::UnknownKid(kid.to_owned()));
            }
        }
        self.refresh(&seen, now).await;
        self.lookup_cached(kid, now).await
    }

    fn cooling(&self, now: UnixTime) -> bool {
        match self.0.last_attempt.load(Ordering::Acquire) {
            0 => false,
            t => now < UnixTime(t - 1).plus(self.0.cfg.cooldown),
        }
    }

    /// One fetch shared by every caller that saw the same key set, at most
    /// once per cooldown. A caller that arrives while a fetch is in flight
    /// waits for it; otherwise, inside the cooldown, it returns at once.
    async fn refresh(&self, seen: &Arc<KeySet>, now: UnixTime) {
        let _single = self.0.refresh.lock().await;
        if !Arc::ptr_eq(&self.0.set.load(), seen) || self.cooling(now) {
            return; // another caller refreshed (or tried) while this one waited
        }
        self.0.last_attempt.store(now.0 + 1, Ordering::Release);
        let inner = &self.0;
        inner.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let cfg = &inner.cfg;
        let ttl = |max_age: Option<std::time::Duration>| {
            max_age
                .unwrap_or(cfg.default_ttl)
                .clamp(cfg.min_ttl, cfg.max_ttl)
        };
        match fetch(&inner.http, &cfg.url, seen.etag.as_deref(), &inner.limits).await {
            Ok(Fetched::Keys {
                keys,
                etag,
                max_age,
            }) => {
                let fresh_until = now.plus(ttl(max_age));
                let keys = keys.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
                inner.set.store(Arc::new(KeySet {
                    keys,
                    etag,
                    loaded: true,
                    fresh_until,
                    stale_until: fresh_until.plus(cfg.stale_limit),
                }));
                inner.unknown.invalidate_all();
            }
            Ok(Fetched::NotModified { max_age }) => {
                let fresh_until = now.plus(ttl(max_age));
                let keys = seen.keys.clone();
                inner.set.store(Arc::new(KeySet {
                    keys,
                    etag: seen.etag.clone(),
                    loaded: true,
                    fresh_until,
                    stale_until: fresh_until.plus(cfg.stale_limit),
                }));
            }
            Err(e) => {
                inner.counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the cached keys");
            }
        }
    }

    async fn lookup_cached(&self, kid: &str, now: UnixTime) -> Result<Arc<Key>, VerifyError> {
        let set = self.0.set.load();
        if !set.loaded {
            return Err(VerifyError::JwksUnavailable(format!(
                "no key set fetched yet from {}",
                self.0.cfg.url
            )));
        }
        if now >= set.stale_until {
            return Err(VerifyError::JwksUnavailable(format!(
                "the cached key set is past its stale limit and {} cannot be fetched",
                self.0.cfg.url
            )));
        }
        if now >= set.fresh_until {
            self.0.counters.stale_uses.fetch_add(1, Ordering::Relaxed);
        }
        match set.keys.get(kid) {
            Some(k) => Ok(k.clone()),
            None => {
                self.0.unknown.insert(kid.to_owned(), ()).await;
                Err(VerifyError::UnknownKid(kid.to_owned()))
            }
        }
    }
}

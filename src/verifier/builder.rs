//! [`VerifierBuilder`]: defaults, URL checks, and the HTTP client.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls_platform_verifier::BuilderVerifierExt;

use super::jwks::Limits;
use super::{BuildError, Counters, Inner, KeySet, Revocations, Verifier, VerifierBuilder};
use crate::clock::{Clock, SystemClock};

/// The most keys a JWKS may hold by default. A signet purpose publishes at
/// most, per algorithm, an active and a pending key and 8 keys retired on
/// schedule plus 8 retired by hand (`docs/lifecycle.md` rules 4 and 9): 18,
/// so 72 with all four algorithms, 288 for the four built-in purposes in the
/// all-purposes JWKS. 512 leaves room for a few more purposes.
pub const DEFAULT_MAX_KEYS: usize = 512;
/// The largest JWKS body accepted by default: 512 keys of at most about
/// 800 bytes each (an RSA-4096 JWK) fit in 512 KiB.
pub const DEFAULT_MAX_BODY: usize = 512 * 1024;

/// The verifier's own TLS configuration, on ring, trusting the system's
/// roots. Nothing process-wide is installed, so an application that uses
/// another rustls provider is unaffected.
pub fn tls_config() -> Result<rustls::ClientConfig, String> {
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(crate::crypto::tls_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_platform_verifier())
            .map_err(|e| e.to_string())?
            .with_no_client_auth(),
    )
}

impl Verifier {
    /// Starts configuring a verifier for the JWKS at `jwks_url`.
    pub fn builder(jwks_url: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            url: jwks_url.into(),
            issuer: None,
            audience: None,
            purpose: None,
            typ: None,
            leeway: Duration::from_secs(60),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            default_ttl: Duration::from_secs(300),
            cooldown: Duration::from_secs(30),
            stale_limit: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            max_body: DEFAULT_MAX_BODY,
            max_keys: DEFAULT_MAX_KEYS,
            any_typ: false,
            allow_http: false,
            clock: Arc::new(SystemClock),
            revocations: Revocations::Derived,
        }
    }
}

impl VerifierBuilder {
    /// Required `iss`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }
    /// Required member of `aud` (then `aud` is required).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }
    /// The token purpose: sets the expected `typ` and, when the URL is the
    /// all-purposes `/.well-known/jwks.json`, the purpose's own JWKS URL.
    pub fn purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = Some(purpose.into());
        self
    }
    /// Overrides the expected `typ` (a purpose configured with its own `typ`).
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }
    /// Accepts tokens of every purpose (any `typ`). Without a purpose, a
    /// leaked magic link or a refresh token verifies where an access token
    /// is expected: use only where every purpose is really meant.
    pub fn any_typ(mut self) -> Self {
        self.any_typ = true;
        self
    }
    /// The most keys a JWKS may hold (default [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }
    /// The largest JWKS body, in bytes (default [`DEFAULT_MAX_BODY`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
    /// Clock skew tolerated on `exp` and `nbf` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
    /// Bounds for the JWKS `max-age` (default 60 s to 1 h).
    pub fn cache_ttl(mut self, min: Duration, max: Duration) -> Self {
        (self.min_ttl, self.max_ttl) = (min, max);
        self
    }
    /// Cache lifetime when the JWKS sends no `max-age` (default 300 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }
    /// Minimum time between two JWKS requests (default 30 s).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }
    /// How long past its freshness a key set keeps verifying while the
    /// endpoint fails (default 1 h).
    pub fn stale_limit(mut self, limit: Duration) -> Self {
        self.stale_limit = limit;
        self
    }
    /// Request timeout (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Permits plain http to a non-loopback host (never do this in production).
    pub fn allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }
    /// The revocation document's URL (default: signet's path on the JWKS
    /// URL's origin, `/.well-known/signet/revocations.json`).
    pub fn revocations_url(mut self, url: impl Into<String>) -> Self {
        self.revocations = Revocations::Url(url.into());
        self
    }
    /// Checks no revocation document: a revoked key is refused only once it
    /// leaves the cached JWKS, and revoked tokens are accepted. For a JWKS
    /// that is not signet's; never for signet's own.
    pub fn without_revocations(mut self) -> Self {
        self.revocations = Revocations::Off;
        self
    }
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the configuration and builds the verifier. Fetches nothing yet.
    pub fn build(mut self) -> Result<Verifier, BuildError> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| BuildError::Url {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback || self.allow_http => {}
            other => {
                return Err(BuildError::Url {
                    url: self.url.clone(),
                    reason: format!(
                        "scheme {other}: use https (plain http only to a loopback host, or with allow_http(); `signet token verify` has --allow-http)"
                    ),
                });
            }
        }
        let revocations_url = match &self.revocations {
            Revocations::Derived => Some(super::revocations::derive_url(&url)),
            Revocations::Url(u) => Some(u.clone()),
            Revocations::Off => None,
        };
        if self.min_ttl > self.max_ttl {
            return Err(BuildError::Limits(
                "cache_ttl: min is greater than max".into(),
            ));
        }
        if let Some(p) = &self.purpose {
            if self.typ.is_none() {
                self.typ = Some(crate::keys::default_typ(p));
            }
            if let Some(base) = self.url.strip_suffix("/.well-known/jwks.json") {
                self.url = format!("{base}/.well-known/jwks/{p}.json");
            }
        }
        if self.typ.is_none() && !self.any_typ {
            return Err(BuildError::NoPurpose);
        }
        let tls = tls_config().map_err(|e| BuildError::Client(format!("TLS: {e}")))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError::Client(e.to_string()))?;
        let unknown = moka::future::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(self.cooldown.max(Duration::from_secs(1)))
            .build();
        let limits = Limits {
            max_body: self.max_body,
            max_keys: self.max_keys,
        };
        Ok(Verifier(Arc::new(Inner {
            cfg: self,
            http,
            limits,
            set: ArcSwap::from_pointee(KeySet::default()),
            last_attempt: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(()),
            unknown,
            counters: Counters::default(),
            revocations_url,
            revoked: ArcSwap::from_pointee(Default::default()),
            revoked_attempt: AtomicU64::new(0),
            revoked_refresh: tokio::sync::Mutex::new(()),
        })))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn building_a_verifier_installs_no_process_wide_tls_provider() {
        // Nothing in the library's unit tests installs one.
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
        let _v = Verifier::builder("https://auth.example.com/.well-known/jwks.json")
            .purpose("access_token")
            .build()
            .unwrap();
        assert!(
            rustls::crypto::CryptoProvider::get_default().is_none(),
            "build() installed a provider for the whole process"
        );
    }
}

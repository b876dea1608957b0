//! [`VerifierBuilder`]: defaults, URL checks, and the HTTP client.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::jwks::Limits;
use super::{BuildError, Counters, Inner, KeySet, Verifier, VerifierBuilder};
use crate::clock::{Clock, SystemClock};

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
            max_body: 64 * 1024,
            max_keys: 100,
            allow_http: false,
            clock: Arc::new(SystemClock),
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
                        "scheme {other}: use https (plain http only to a loopback host, or with allow_http())"
                    ),
                });
            }
        }
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
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
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
        })))
    }
}

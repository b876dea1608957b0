//! Prometheus metrics.
//!
//! Every counter a request touches is created at start-up and held by handle,
//! so the hot paths increment an atomic and take no lock. Gauges that describe
//! the keyrings are computed when `/metrics` is scraped.

use std::collections::HashMap;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::keys::{Algorithm, KeyState};
use crate::service::{IgnoredEntries, Snapshot, StoreErrors};

type Labels = Vec<(&'static str, String)>;

/// The routes whose requests are counted, as axum matches them.
pub const ROUTES: [&str; 16] = [
    "/.well-known/jwks.json",
    "/.well-known/jwks/third-party.json",
    "/.well-known/jwks/{purpose}",
    "/.well-known/openid-configuration",
    "/.well-known/signet/revocations.json",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/v1/tokens",
    "/v1/verify",
    "/v1/keys",
    "/v1/keys/{purpose}/rotate",
    "/v1/keys/{kid}/revoke",
    "/v1/tokens/revoke",
    "/v1/tokens/consume",
];
const CODES: [&str; 5] = ["2xx", "304", "4xx", "5xx", "other"];
const STATES: [KeyState; 5] = [
    KeyState::Pending,
    KeyState::Active,
    KeyState::Retiring,
    KeyState::Expired,
    KeyState::Revoked,
];

/// What happened to a token, for [`Metrics::token_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEvent {
    /// Revoked through the API.
    Revoked = 0,
    /// A single-use token consumed.
    Consumed = 1,
    /// A consumed token presented again, and refused.
    ReplayRefused = 2,
}

/// signet's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: HashMap<&'static str, [Counter; 5]>,
    unmatched: [Counter; 5],
    signed: HashMap<String, HashMap<Algorithm, Counter>>,
    verified: HashMap<String, [Counter; 2]>,
    rotations: HashMap<String, [Counter; 2]>,
    /// Per purpose: tokens revoked, consumed, replays refused.
    token_events: HashMap<String, [Counter; 3]>,
    auth_failures: Counter,
    keys: Family<Labels, Gauge>,
    next_rotation: Family<Labels, Gauge>,
    legacy: Family<Labels, Counter>,
    #[cfg(feature = "pkcs11")]
    token: Option<(std::sync::Arc<crate::pkcs11::Token>, Gauge)>,
}

fn counters<const N: usize>(
    family: &Family<Labels, Counter>,
    base: &Labels,
    key: &'static str,
    values: [&str; N],
) -> [Counter; N] {
    values.map(|v| {
        let mut labels = base.clone();
        labels.push((key, v.to_owned()));
        family.get_or_create_owned(&labels)
    })
}

impl Metrics {
    /// Registers every metric and pre-creates the counters of `config`'s
    /// purposes; `store_errors` is the service's own count of store failures.
    pub fn new(config: &Config, store_errors: StoreErrors, ignored: IgnoredEntries) -> Metrics {
        let mut registry = Registry::with_prefix("signet");
        let requests_f = Family::<Labels, Counter>::default();
        let signed_f = Family::<Labels, Counter>::default();
        let verified_f = Family::<Labels, Counter>::default();
        let rotations_f = Family::<Labels, Counter>::default();
        let keys = Family::<Labels, Gauge>::default();
        let next_rotation = Family::<Labels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status class",
            requests_f.clone(),
        );
        registry.register(
            "tokens_signed",
            "Tokens signed by purpose and algorithm",
            signed_f.clone(),
        );
        registry.register(
            "verifications",
            "Token verifications by purpose and result",
            verified_f.clone(),
        );
        registry.register(
            "rotations",
            "Keyring changes (rotations, revocations, scheduled ticks) by purpose and outcome",
            rotations_f.clone(),
        );
        registry.register("keys", "Keys by purpose and state", keys.clone());
        let token_events_f = Family::<Labels, Counter>::default();
        registry.register(
            "token_events",
            "Tokens revoked, single-use tokens consumed, and replays of consumed tokens refused, by purpose",
            token_events_f.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "admin_auth_failures",
            "Admin API requests with a missing or unknown bearer token",
            auth_failures.clone(),
        );
        registry.register(
            "store_errors",
            "Failures to load, change or decrypt a purpose's keyring",
            store_errors,
        );
        registry.register(
            "token_entries_ignored",
            "Revoked-token entries not taken as the store holds them, by purpose and reason: unauthenticated (written without the master key: ignored), deleted (gone before their tokens expired: still refused)",
            ignored,
        );
        let legacy = Family::<Labels, Counter>::default();
        registry.register(
            "legacy_verifications",
            "Tokens verified with an imported legacy HMAC secret, by purpose and secret label: watch it fall to zero before deleting the secrets",
            legacy.clone(),
        );
        registry.register(
            "next_rotation_seconds",
            "Seconds until each purpose's pending key starts signing",
            next_rotation.clone(),
        );

        let requests = ROUTES
            .iter()
            .map(|r| {
                (
                    *r,
                    counters(
                        &requests_f,
                        &vec![("route", (*r).to_owned())],
                        "code",
                        CODES,
                    ),
                )
            })
            .collect();
        let unmatched = counters(
            &requests_f,
            &vec![("route", "unmatched".to_owned())],
            "code",
            CODES,
        );
        let mut signed = HashMap::new();
        let mut verified = HashMap::new();
        let mut rotations = HashMap::new();
        let mut token_events = HashMap::new();
        for (name, p) in &config.purposes {
            let base = vec![("purpose", name.clone())];
            let by_alg = p
                .algorithms
                .iter()
                .map(|a| {
                    let mut l = base.clone();
                    l.push(("alg", a.as_str().to_owned()));
                    (*a, signed_f.get_or_create_owned(&l))
                })
                .collect();
            signed.insert(name.clone(), by_alg);
            verified.insert(
                name.clone(),
                counters(&verified_f, &base, "result", ["valid", "invalid"]),
            );
            rotations.insert(
                name.clone(),
                counters(&rotations_f, &base, "outcome", ["ok", "error"]),
            );
            token_events.insert(
                name.clone(),
                counters(
                    &token_events_f,
                    &base,
                    "event",
                    ["revoked", "consumed", "replay_refused"],
                ),
            );
        }
        Metrics {
            registry,
            requests,
            unmatched,
            signed,
            verified,
            rotations,
            token_events,
            auth_failures,
            keys,
            next_rotation,
            legacy,
            #[cfg(feature = "pkcs11")]
            token: None,
        }
    }

    /// Counts a request by its matched route and status.
    pub fn request(&self, route: Option<&str>, status: u16) {
        let code = match status {
            304 => 1,
            200..=299 => 0,
            400..=499 => 2,
            500..=599 => 3,
            _ => 4,
        };
        let set = route
            .and_then(|r| self.requests.get(r))
            .unwrap_or(&self.unmatched);
        set[code].inc();
    }

    /// Counts a signed token.
    pub fn signed(&self, purpose: &str, alg: Algorithm) {
        if let Some(c) = self.signed.get(purpose).and_then(|m| m.get(&alg)) {
            c.inc();
        }
    }

    /// Counts a verification.
    pub fn verified(&self, purpose: &str, valid: bool) {
        if let Some(c) = self.verified.get(purpose) {
            c[usize::from(!valid)].inc();
        }
    }

    /// Counts a token event of `purpose`: 0 revoked, 1 consumed, 2 replay refused.
    pub fn token_event(&self, purpose: &str, event: TokenEvent) {
        if let Some(c) = self.token_events.get(purpose) {
            c[event as usize].inc();
        }
    }

    /// Counts a token verified with a legacy HMAC secret (labels are the
    /// few imported: the family's lock is taken only on this path).
    pub fn legacy_verified(&self, purpose: &str, label: &str) {
        self.legacy
            .get_or_create(&vec![
                ("purpose", purpose.to_owned()),
                ("secret", label.to_owned()),
            ])
            .inc();
    }

    /// Counts a failed admin authentication.
    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// Counts a keyring change attempt.
    pub fn rotation(&self, purpose: &str, ok: bool) {
        if let Some(c) = self.rotations.get(purpose) {
            c[usize::from(!ok)].inc();
        }
    }

    /// Registers the PKCS#11 token's failure count and open sessions.
    #[cfg(feature = "pkcs11")]
    pub fn with_token(mut self, token: &std::sync::Arc<crate::pkcs11::Token>) -> Metrics {
        self.registry.register(
            "pkcs11_errors",
            "Failed operations on the PKCS#11 token (signing, generation, destruction, login)",
            token.errors().clone(),
        );
        let sessions = Gauge::default();
        self.registry.register(
            "pkcs11_sessions",
            "Logged-in sessions open on the PKCS#11 token",
            sessions.clone(),
        );
        self.token = Some((std::sync::Arc::clone(token), sessions));
        self
    }

    /// Renders the text exposition format, with keyring gauges as of `now`.
    pub fn render(&self, snapshot: &Snapshot, now: crate::clock::UnixTime) -> String {
        for (purpose, keys) in &snapshot.purposes {
            for state in STATES {
                let n = keys
                    .keyring
                    .keys
                    .iter()
                    .filter(|k| k.state_at(now) == state)
                    .count();
                self.keys
                    .get_or_create(&vec![
                        ("purpose", purpose.clone()),
                        ("state", state.as_str().to_owned()),
                    ])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            let next = keys
                .keyring
                .keys
                .iter()
                .filter(|k| k.state_at(now) == KeyState::Pending)
                .map(|k| k.activates_at.0.saturating_sub(now.0))
                .min();
            if let Some(secs) = next {
                self.next_rotation
                    .get_or_create(&vec![("purpose", purpose.clone())])
                    .set(i64::try_from(secs).unwrap_or(i64::MAX));
            }
        }
        #[cfg(feature = "pkcs11")]
        if let Some((token, gauge)) = &self.token {
            gauge.set(i64::try_from(token.sessions_open()).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

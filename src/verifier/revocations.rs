//! The revocation document (`/.well-known/signet/revocations.json`): keys and
//! tokens revoked before their expiry. The verifier revalidates it at its
//! own, short `max-age` and refuses a listed kid or jti even while the key is
//! cached; if it cannot be fetched, the last copy serves for the stale limit,
//! then every token is refused (fail closed).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Deserialize;

use super::Verifier;
use super::jwks::{Got, get};
use crate::clock::UnixTime;
use crate::keys::token::VerifyError;

/// Where signet publishes the revocation document, on the issuer's origin.
pub const REVOCATIONS_PATH: &str = "/.well-known/signet/revocations.json";

/// `max-age` bounds for the document: it is meant to be short.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(300);
/// When the document sends no `max-age`.
const DEFAULT_TTL: Duration = Duration::from_secs(15);

/// The cached document.
#[derive(Debug, Default, Clone)]
pub(crate) struct Revoked {
    kids: HashSet<String>,
    jtis: HashSet<String>,
    etag: Option<String>,
    loaded: bool,
    fresh_until: UnixTime,
    stale_until: UnixTime,
    /// Why the last fetch failed, if it did.
    error: Option<String>,
}

#[derive(Deserialize)]
struct Doc {
    revoked_keys: Vec<Entry>,
    revoked_tokens: Vec<Entry>,
}

/// A listed key (`kid`) or token (`jti`); the other members are for people.
#[derive(Deserialize)]
struct Entry {
    #[serde(alias = "kid", alias = "jti")]
    id: String,
}

/// The revocation URL on the origin of `jwks_url`.
pub(crate) fn derive_url(jwks_url: &reqwest::Url) -> String {
    format!(
        "{}{REVOCATIONS_PATH}",
        jwks_url.origin().ascii_serialization()
    )
}

impl Verifier {
    /// Refuses a token whose `kid` or `jti` the revocation document lists.
    pub(super) async fn check_revoked(
        &self,
        kid: &str,
        jti: Option<&str>,
    ) -> Result<(), VerifyError> {
        let Some(url) = self.0.revocations_url.as_deref() else {
            return Ok(());
        };
        let now = self.0.cfg.clock.now();
        let mut seen = self.0.revoked.load_full();
        if !(seen.loaded && now < seen.fresh_until) {
            // Revalidated before answering (unlike the JWKS, which answers
            // stale and revalidates behind): a revocation is refused within
            // the document's max-age. One caller fetches; the others wait
            // for it. A failed fetch falls back to the last copy at once,
            // and is not retried inside the cooldown.
            if !self.revocations_cooling(now) {
                self.refresh_revoked(url, &seen, now).await;
            }
            seen = self.0.revoked.load_full();
            if !(seen.loaded && now < seen.stale_until) {
                return Err(VerifyError::RevocationsUnavailable(format!(
                    "{url}: {}",
                    seen.error
                        .as_deref()
                        .unwrap_or("no copy fetched yet, or the last is past its stale limit")
                )));
            }
        }
        if seen.kids.contains(kid) {
            return Err(VerifyError::RevokedKey(kid.to_owned()));
        }
        if let Some(jti) = jti
            && seen.jtis.contains(jti)
        {
            return Err(VerifyError::RevokedToken(jti.to_owned()));
        }
        Ok(())
    }

    /// Whether a fetch failed less than the cooldown (at most 15 s) ago.
    fn revocations_cooling(&self, now: UnixTime) -> bool {
        match self.0.revoked_attempt.load(Ordering::Acquire) {
            0 => false,
            t => now < UnixTime(t - 1).plus(self.0.cfg.cooldown.min(DEFAULT_TTL)),
        }
    }

    /// One fetch at a time; a caller that waited finds it done.
    async fn refresh_revoked(&self, url: &str, seen: &Arc<Revoked>, now: UnixTime) {
        let _single = self.0.revoked_refresh.lock().await;
        if !Arc::ptr_eq(&self.0.revoked.load(), seen) {
            return;
        }
        let inner = &self.0;
        let ttl =
            |max_age: Option<Duration>| max_age.unwrap_or(DEFAULT_TTL).clamp(MIN_TTL, MAX_TTL);
        let next = match get(&inner.http, url, seen.etag.as_deref(), &inner.limits).await {
            Ok(Got::Body {
                body,
                etag,
                max_age,
            }) => match serde_json::from_slice::<Doc>(&body) {
                Ok(doc) => {
                    let fresh_until = now.plus(ttl(max_age));
                    Revoked {
                        kids: doc.revoked_keys.into_iter().map(|e| e.id).collect(),
                        jtis: doc.revoked_tokens.into_iter().map(|e| e.id).collect(),
                        etag,
                        loaded: true,
                        fresh_until,
                        stale_until: fresh_until.plus(inner.cfg.stale_limit),
                        error: None,
                    }
                }
                Err(e) => failed(seen, format!("not a revocation document: {e}")),
            },
            Ok(Got::NotModified { max_age }) => {
                let fresh_until = now.plus(ttl(max_age));
                Revoked {
                    loaded: true,
                    fresh_until,
                    stale_until: fresh_until.plus(inner.cfg.stale_limit),
                    error: None,
                    ..Revoked::clone(seen)
                }
            }
            Err(e) => failed(seen, e),
        };
        // Only a failure cools: a short max-age is honoured.
        let failed_at = if next.error.is_some() { now.0 + 1 } else { 0 };
        inner.revoked_attempt.store(failed_at, Ordering::Release);
        if let Some(e) = &next.error {
            inner.counters.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "revocation document refresh failed; keeping the last copy until its stale limit");
        }
        inner.revoked.store(Arc::new(next));
    }
}

/// The last copy, as it was, with the reason this fetch failed.
fn failed(seen: &Revoked, error: String) -> Revoked {
    Revoked {
        error: Some(error),
        ..seen.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn the_document_is_found_on_the_jwks_origin() {
        for (jwks, expected) in [
            (
                "https://auth.example.com/.well-known/jwks/access_token.json",
                "https://auth.example.com/.well-known/signet/revocations.json",
            ),
            (
                "http://127.0.0.1:8080/.well-known/jwks.json",
                "http://127.0.0.1:8080/.well-known/signet/revocations.json",
            ),
            (
                "https://auth.example.com:8443/tenant/jwks?x=1",
                "https://auth.example.com:8443/.well-known/signet/revocations.json",
            ),
        ] {
            assert_eq!(derive_url(&reqwest::Url::parse(jwks).unwrap()), expected);
        }
    }

    #[test]
    fn a_document_that_is_not_signets_is_refused() {
        for body in [
            &b"{}"[..],
            br#"{"revoked_keys": [{"kid": 1}], "revoked_tokens": []}"#,
            b"[]",
            b"not json",
        ] {
            assert!(serde_json::from_slice::<Doc>(body).is_err(), "{body:?}");
        }
        let doc: Doc = serde_json::from_slice(
            br#"{"revoked_keys": [{"kid": "k", "purpose": "p", "revoked_at": 1}], "revoked_tokens": [{"jti": "j", "purpose": "p", "exp": 2}]}"#,
        )
        .unwrap();
        assert_eq!(doc.revoked_keys[0].id, "k");
        assert_eq!(doc.revoked_tokens[0].id, "j");
    }
}

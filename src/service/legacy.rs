//! Legacy HMAC secrets (moving from `.env` secrets): import, listing and
//! verification of the tokens they signed. `docs/lifecycle.md` rule 15.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::token::Verified;
use super::{KeyService, ServiceError, Snapshot};
use crate::clock::UnixTime;
use crate::keys::jwk::b64;
use crate::keys::legacy::{LegacyKey, OpenLegacyKey, parse_legacy};
use crate::keys::token::VerifyError;
use crate::storage::StoreError;
use crate::storage::seal::MasterKeys;

/// The sealing label of a legacy secret: its variable name, apart from kids.
pub(crate) fn seal_id(label: &str) -> String {
    format!("legacy:{label}")
}

/// A legacy secret's metadata, as `keys list` shows it (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct LegacyInfo {
    /// Its label (the variable it was read from).
    pub legacy: String,
    /// Purpose.
    pub purpose: String,
    /// `HMAC`: verify only, never published.
    pub alg: &'static str,
    /// `verify-only`, `revoked` or `expired`.
    pub state: &'static str,
    /// When it was imported.
    pub imported_at: String,
    /// When it stops verifying and is dropped.
    pub expires_at: String,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// The `iss` its tokens must carry, if any.
    pub issuer: Option<String>,
}

/// A legacy secret as read for import: its label and its bytes.
pub struct LegacySecret {
    /// The variable it came from.
    pub label: String,
    /// Its value's bytes (as the application's HMAC used them), zeroized on drop.
    pub secret: Zeroizing<Vec<u8>>,
}

impl KeyService {
    /// Imports legacy HMAC secrets into `purpose`, verify only, for `window`
    /// (at least, and by default, the purpose's `token_ttl` plus `leeway`:
    /// the longest a token they signed can still be valid). `issuer`, if
    /// given, is the `iss` their tokens must carry.
    pub fn import_legacy(
        &self,
        purpose: &str,
        secrets: &[LegacySecret],
        window: Option<Duration>,
        issuer: Option<String>,
    ) -> Result<Vec<LegacyInfo>, ServiceError> {
        let policy = self.policy(purpose)?;
        let minimum = policy.token_ttl + policy.leeway;
        let window = window.unwrap_or(minimum);
        if window < minimum {
            return Err(ServiceError::LegacyWindow {
                purpose: purpose.to_owned(),
                window: window.as_secs(),
                minimum: minimum.as_secs(),
            });
        }
        let now = self.now();
        let keys = secrets
            .iter()
            .map(|s| {
                Ok(LegacyKey {
                    id: s.label.clone(),
                    imported_at: now,
                    expires_at: now.plus(window),
                    revoked_at: None,
                    issuer: issuer.clone(),
                    secret: Some(
                        self.master
                            .seal_bytes(purpose, &seal_id(&s.label), &s.secret)?,
                    ),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.change_one(purpose, |ring, now, policy| {
            ring.import_legacy(&keys, now, policy)
        })?;
        self.refresh();
        Ok(self.legacy_of(Some(purpose)))
    }

    /// The legacy secrets of every purpose (of one, if given), as of now.
    pub fn legacy_of(&self, purpose: Option<&str>) -> Vec<LegacyInfo> {
        let now = self.now();
        let snap = self.snapshot();
        snap.purposes
            .values()
            .filter(|p| purpose.is_none_or(|want| p.keyring.purpose == want))
            .flat_map(|p| p.keyring.legacy.iter().map(move |l| (p, l)))
            .map(|(p, l)| LegacyInfo {
                legacy: l.id.clone(),
                purpose: p.keyring.purpose.clone(),
                alg: "HMAC",
                state: l.state_at(now),
                imported_at: l.imported_at.to_string(),
                expires_at: l.expires_at.to_string(),
                revoked_at: l.revoked_at.map(|t| t.to_string()),
                issuer: l.issuer.clone(),
            })
            .collect()
    }

    /// Verifies a legacy token (HS256/384/512, no `kid`) against the
    /// purpose's live legacy secrets, in import order. A single-use purpose
    /// identifies a legacy token without a `jti` by the SHA-256 of its
    /// signature, given as its `jti`, so that it can be consumed once.
    pub(super) fn verify_legacy(
        &self,
        snap: &Snapshot,
        purpose: &str,
        single_use: bool,
        token: &str,
    ) -> Result<Verified, VerifyError> {
        let now = self.now();
        let keys = snap
            .purposes
            .get(purpose)
            .map_or(&[][..], |p| &p.legacy[..]);
        let parsed = parse_legacy(token)?;
        let signature_hash = single_use.then(|| {
            let sig = token.rsplit('.').next().unwrap_or("");
            b64(
                crate::crypto::digest::digest(&crate::crypto::digest::SHA256, sig.as_bytes())
                    .as_ref(),
            )
        });
        let (id, mut claims) = parsed.verify(keys, self.config().leeway, now)?;
        if let Some(hash) = signature_hash
            && !claims.contains_key("jti")
        {
            claims.insert("jti".into(), Value::from(hash));
        }
        self.check_token_lists(snap, single_use, purpose, &claims)?;
        Ok(Verified {
            claims,
            kid: String::new(),
            legacy_key: Some(id.to_owned()),
        })
    }
}

/// Opens the legacy secrets of a keyring still within their window for the
/// snapshot (a revoked one too: its tokens are then refused as revoked);
/// one that cannot be opened is logged and left out.
pub(crate) fn open_legacy(
    master: &MasterKeys,
    purpose: &str,
    keys: &[LegacyKey],
    now: UnixTime,
) -> Vec<OpenLegacyKey> {
    keys.iter()
        .filter(|k| now < k.expires_at)
        .filter_map(|k| {
            let sealed = k.secret.as_ref()?;
            match master.open_bytes(purpose, &seal_id(&k.id), sealed) {
                Ok(secret) => Some(OpenLegacyKey {
                    id: k.id.clone(),
                    issuer: k.issuer.clone(),
                    expires_at: k.expires_at,
                    revoked: k.revoked_at.is_some(),
                    secret,
                }),
                Err(e) => {
                    tracing::error!(purpose, legacy = k.id, error = %e, "a legacy HMAC secret cannot be opened; its tokens are refused");
                    None
                }
            }
        })
        .collect()
}

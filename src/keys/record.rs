//! One key's lifecycle record and its state as a pure function of time.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Algorithm;
use super::jwk::PublicJwk;
use crate::clock::UnixTime;

/// A private key encrypted at rest (AEAD); opaque to the lifecycle core.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    /// Which master key sealed it (a short fingerprint, not the key).
    pub master: String,
    /// base64url AEAD nonce.
    pub nonce: String,
    /// base64url ciphertext with its tag.
    pub ciphertext: String,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedKey(master={}, <sealed>)", self.master)
    }
}

/// The authentication of a whole keyring document (a MAC under a key derived
/// from the master key); opaque to the lifecycle core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringMac {
    /// Which master key it was derived from (a short fingerprint, not the key).
    pub master: String,
    /// base64url tag.
    pub tag: String,
}

/// Where a key is in its life at a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not yet signing ("next").
    Pending,
    /// Signs now ("current").
    Active,
    /// No longer signs; published until every token it signed has expired ("previous").
    Retiring,
    /// Past retirement: unpublished, private half destroyed.
    Expired,
    /// Withdrawn by an operator; never published again.
    Revoked,
}

impl KeyState {
    /// Whether keys in this state appear in the JWKS.
    pub fn is_published(self) -> bool {
        matches!(
            self,
            KeyState::Pending | KeyState::Active | KeyState::Retiring
        )
    }

    /// Lower-case name, as in `keys list`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Expired => "expired",
            KeyState::Revoked => "revoked",
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key of a keyring: its public half, its sealed private half (until
/// destroyed) and the timestamps its state is computed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// RFC 7638 thumbprint of `jwk`.
    pub kid: String,
    /// The algorithm the key signs with.
    pub alg: Algorithm,
    /// The public JWK, exactly as published.
    pub jwk: PublicJwk,
    /// When it was stored and first published.
    pub published_at: UnixTime,
    /// When it starts (started) signing.
    pub activates_at: UnixTime,
    /// When it stops signing; unset while no successor is scheduled.
    #[serde(default)]
    pub retires_at: Option<UnixTime>,
    /// When it leaves the JWKS; set with `retires_at`.
    #[serde(default)]
    pub expires_at: Option<UnixTime>,
    /// When an operator revoked it.
    #[serde(default)]
    pub revoked_at: Option<UnixTime>,
    /// The encrypted private key; `None` once destroyed.
    #[serde(default)]
    pub private: Option<SealedKey>,
}

impl KeyRecord {
    /// The key's state at `now`. Pure: the same record and instant always give
    /// the same answer, on every replica.
    pub fn state_at(&self, now: UnixTime) -> KeyState {
        if self.revoked_at.is_some_and(|r| r <= now) {
            return KeyState::Revoked;
        }
        if now < self.activates_at {
            return KeyState::Pending;
        }
        match self.retires_at {
            Some(retires) if now >= retires => {
                if now < self.expires_at.unwrap_or(retires) {
                    KeyState::Retiring
                } else {
                    KeyState::Expired
                }
            }
            _ => KeyState::Active,
        }
    }

    /// Whether the key is in the JWKS at `now`.
    pub fn is_published_at(&self, now: UnixTime) -> bool {
        self.published_at <= now && self.state_at(now).is_published()
    }
}

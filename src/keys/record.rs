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

/// A private key that lives inside a PKCS#11 token: the store records where
/// it is, never the key (the token generated it and will not export it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenObject {
    /// The label of the token that holds it.
    pub token: String,
    /// The object's `CKA_ID`, hex.
    pub object_id: String,
}

/// Where a key's private half lives.
///
/// Serialised without a tag: a sealed key is the document's original form
/// (`master`, `nonce`, `ciphertext`), a token object has `token` and
/// `object_id`, so keyrings written before tokens existed read unchanged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PrivateHalf {
    /// Encrypted under the master key, in the store.
    Sealed(SealedKey),
    /// Inside a PKCS#11 token.
    Token(TokenObject),
}

impl fmt::Debug for PrivateHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivateHalf::Sealed(s) => s.fmt(f),
            PrivateHalf::Token(t) => t.fmt(f),
        }
    }
}

impl PrivateHalf {
    /// The sealed key, if the private half is in the store.
    pub fn sealed(&self) -> Option<&SealedKey> {
        match self {
            PrivateHalf::Sealed(s) => Some(s),
            PrivateHalf::Token(_) => None,
        }
    }

    /// The token object, if the private half is in a token.
    pub fn token(&self) -> Option<&TokenObject> {
        match self {
            PrivateHalf::Token(t) => Some(t),
            PrivateHalf::Sealed(_) => None,
        }
    }

    /// Where it lives, for `keys list`: `store`, or `token <label>`.
    pub fn location(&self) -> String {
        match self {
            PrivateHalf::Sealed(_) => "store".to_owned(),
            PrivateHalf::Token(t) => format!("token {}", t.token),
        }
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

/// One key of a keyring: its public half, its private half (sealed in the
/// store or held by a token, until destroyed) and the timestamps its state is computed from.
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
    /// The private key, sealed or in a token; `None` once destroyed.
    #[serde(default)]
    pub private: Option<PrivateHalf>,
}

impl KeyRecord {
    /// The sealed private key, if it is in the store and not destroyed.
    pub fn sealed(&self) -> Option<&SealedKey> {
        self.private.as_ref().and_then(PrivateHalf::sealed)
    }

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

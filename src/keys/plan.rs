//! The vocabulary of keyring changes: steps, plans, and refusals.

use super::legacy::LegacyKey;
use super::record::PrivateHalf;
use super::{Algorithm, PublicJwk};
use crate::clock::UnixTime;

/// One change to a keyring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Generate a key for `alg`, published now, signing from `activates_at`.
    Create {
        /// Its algorithm.
        alg: Algorithm,
        /// When it starts signing.
        activates_at: UnixTime,
        /// When it stops, if a successor is already known (bootstrap).
        retires_at: Option<UnixTime>,
    },
    /// A pending key signs from `at` (earlier than scheduled).
    Promote {
        /// The key.
        kid: String,
        /// From when.
        at: UnixTime,
    },
    /// A key stops signing at `at` and stays published for the retention.
    Retire {
        /// The key.
        kid: String,
        /// When it stops signing.
        at: UnixTime,
    },
    /// Keep a key published until `until` (never earlier than it already is):
    /// the retention under the policy in force grew.
    Extend {
        /// The key.
        kid: String,
        /// Its new `expires_at`.
        until: UnixTime,
    },
    /// An operator withdrew the key at `at`.
    Revoke {
        /// The key.
        kid: String,
        /// When.
        at: UnixTime,
    },
    /// Destroy the private half of a key that can no longer sign.
    DestroyPrivate {
        /// The key.
        kid: String,
    },
    /// Drop a key that is no longer published.
    Remove {
        /// The key.
        kid: String,
    },
    /// Add an imported legacy HMAC secret (verify only).
    ImportLegacy(LegacyKey),
    /// An operator withdrew a legacy secret: it verifies nothing from `at`,
    /// and its sealed secret is dropped.
    RevokeLegacy {
        /// Its label.
        id: String,
        /// When.
        at: UnixTime,
    },
    /// Drop a legacy secret whose tokens have all expired.
    DropLegacy {
        /// Its label.
        id: String,
    },
}

/// What must happen to a keyring, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Whether nothing needs doing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// A freshly generated key: sealed by the caller, or made in a token.
#[derive(Clone, Debug)]
pub struct NewKey {
    /// Its public JWK (with kid).
    pub jwk: PublicJwk,
    /// Its private half.
    pub private: PrivateHalf,
}

/// An operation the lifecycle rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No key with this kid in the keyring.
    #[error("no key {kid} in the {purpose} keyring: `signet keys list` shows the kids")]
    UnknownKid {
        /// The kid asked for.
        kid: String,
        /// The keyring searched.
        purpose: String,
    },
    /// The key was already revoked.
    #[error("key {0} is already revoked")]
    AlreadyRevoked(String),
    /// A legacy secret with this label is already imported.
    #[error(
        "{purpose} already has a legacy secret labelled {id}: revoke it first (`signet keys revoke {id}`), or import under another variable name"
    )]
    LegacyExists {
        /// The keyring.
        purpose: String,
        /// The label.
        id: String,
    },
    /// The pending key is younger than the lead (verifiers' cache lifetime
    /// plus the store's poll interval).
    #[error(
        "the pending {purpose} key {kid} was published {age}s ago, less than jwks.max_age + store.poll_interval ({lead}s): verifiers may not have it yet. Wait until {ready}, or force it (`--force`; over HTTP, `{{\"force\": true}}`)"
    )]
    PendingTooYoung {
        /// The keyring.
        purpose: String,
        /// The pending key.
        kid: String,
        /// Its age in seconds.
        age: u64,
        /// jwks.max_age + store.poll_interval, in seconds.
        lead: u64,
        /// When rotation becomes safe.
        ready: UnixTime,
    },
    /// Another manual rotation would publish more retiring keys than the cap.
    #[error(
        "{purpose} already has {retiring} retiring {alg} key(s), the most a manual rotation may leave is {cap}: each stays published until its tokens expire, and a larger JWKS is refused by verifiers. The oldest expires at {oldest_expires}; rotate after that, or revoke a retiring key if it is compromised"
    )]
    TooManyRetiring {
        /// The keyring.
        purpose: String,
        /// The algorithm at the cap.
        alg: Algorithm,
        /// Retiring keys of that algorithm now.
        retiring: usize,
        /// The cap.
        cap: usize,
        /// When the oldest retiring key leaves the JWKS.
        oldest_expires: UnixTime,
    },
}

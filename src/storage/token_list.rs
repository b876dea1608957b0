//! Token ids a store keeps beside the keyrings: revoked tokens (published in
//! the revocation document) and consumed single-use tokens. Each entry is
//! kept until the token's `exp` plus the leeway, then pruned. Both stores
//! keep these lists; this file holds what they share.

use crate::clock::UnixTime;

/// Which list of token ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenList {
    /// Revoked before their expiry: published, so verifiers refuse them.
    Revoked,
    /// Single-use tokens already used: refused by consume and verify.
    Consumed,
}

impl TokenList {
    /// The list's name in paths and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenList::Revoked => "revoked",
            TokenList::Consumed => "consumed",
        }
    }
}

/// One token id in a list.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenEntry {
    /// The token's purpose.
    pub purpose: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp` (or, for a revocation by `jti` alone, the latest `exp` a
    /// token of the purpose issued until then can have).
    pub exp: UnixTime,
    /// The entry's authentication under the master keys, as the service
    /// made it (`master:tag`, comma-separated; empty: none). A store keeps
    /// it with the entry and never checks it: it holds no master key.
    pub tag: String,
}

/// Whether `jti` can be stored: what signet issues (base64url), at most 64
/// characters. Anything else is refused before any store sees it.
pub fn valid_jti(jti: &str) -> bool {
    !jti.is_empty()
        && jti.len() <= 64
        && jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

//! Token revocation and single-use tokens: what the store's token lists
//! ([`TokenList`]) hold, and the checks verification makes against them.

use serde_json::{Map, Value};

use super::token::Verified;
use super::{KeyService, Snapshot};
use crate::clock::UnixTime;
use crate::config::UnknownPurpose;
use crate::keys::token::VerifyError;
use crate::storage::{StoreError, TokenEntry, TokenList, valid_jti};

/// Why a token could not be revoked or consumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The purpose is not configured.
    #[error(transparent)]
    UnknownPurpose(#[from] UnknownPurpose),
    /// Consume was called for a purpose whose tokens are not single-use.
    #[error(
        "{0:?} is not a single-use purpose: set purposes.{0}.single_use = true to consume its tokens"
    )]
    NotSingleUse(String),
    /// The token does not verify (or was already used: `AlreadyUsed`).
    #[error(transparent)]
    Invalid(#[from] VerifyError),
    /// The `jti` given is not one signet issues.
    #[error("jti {0:?} is not one signet issues (base64url, 1 to 64 characters)")]
    BadJti(String),
    /// Neither a token nor a jti was given, or both were.
    #[error("give either the token or its jti")]
    TokenOrJti,
    /// The store failed; nothing was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `jti` and `exp` of verified claims (signet puts both in every token).
fn jti_exp(claims: &Map<String, Value>) -> Result<(String, UnixTime), VerifyError> {
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if valid_jti(j) => j.clone(),
        Some(_) => return Err(VerifyError::InvalidClaim("jti")),
        None => return Err(VerifyError::MissingClaim("jti")),
    };
    let exp = claims
        .get("exp")
        .and_then(Value::as_f64)
        .ok_or(VerifyError::MissingClaim("exp"))?;
    // Verification already checked it is a number not in the past.
    Ok((jti, UnixTime(exp.max(0.0) as u64)))
}

/// The tag domain of token-list entries (see `MasterKeys::tag_all`).
const ENTRY_DOMAIN: &str = "token entry";

/// What an entry's tag covers: the list and every field that identifies it.
fn entry_input(list: TokenList, entry: &TokenEntry) -> Vec<u8> {
    format!(
        "{}\0{}\0{}\0{}",
        list.as_str(),
        entry.purpose,
        entry.jti,
        entry.exp.0
    )
    .into_bytes()
}

impl KeyService {
    /// `entry` with its tag under every master key.
    fn tagged(&self, list: TokenList, mut entry: TokenEntry) -> Result<TokenEntry, StoreError> {
        let tags = self
            .master
            .tag_all(ENTRY_DOMAIN, &entry_input(list, &entry))?;
        entry.tag = tags
            .iter()
            .map(|t| format!("{}:{}", t.master, t.tag))
            .collect::<Vec<_>>()
            .join(",");
        Ok(entry)
    }

    /// Whether `entry`'s tag verifies under a configured master key: it was
    /// written by a signet holding one, not by hand.
    pub(super) fn authentic(&self, list: TokenList, entry: &TokenEntry) -> bool {
        let tags: Vec<crate::keys::KeyringMac> = entry
            .tag
            .split(',')
            .filter_map(|t| t.split_once(':'))
            .map(|(master, tag)| crate::keys::KeyringMac {
                master: master.to_owned(),
                tag: tag.to_owned(),
            })
            .collect();
        self.master
            .verify_any(ENTRY_DOMAIN, &entry_input(list, entry), &tags)
            .is_ok()
    }

    /// The checks verification makes beyond the signature and the claims: a
    /// revoked `jti` is refused; so is a consumed token of a single-use
    /// purpose (which reads the store: failing that, the token is refused as
    /// `RevocationsUnavailable`, never accepted unchecked).
    pub(super) fn check_token_lists(
        &self,
        snap: &Snapshot,
        single_use: bool,
        purpose: &str,
        claims: &Map<String, Value>,
    ) -> Result<(), VerifyError> {
        if let Some(Value::String(jti)) = claims.get("jti")
            && snap.revoked_jtis.contains(jti)
        {
            return Err(VerifyError::RevokedToken(jti.clone()));
        }
        if single_use {
            let (jti, exp) = jti_exp(claims)?;
            let entry = TokenEntry {
                purpose: purpose.to_owned(),
                jti,
                exp,
                tag: String::new(),
            };
            // Any record refuses the token, authenticated or not: an entry
            // written without the master key can only refuse a token, the
            // safe direction (README, "What a database writer can do").
            match self.store.token_recorded(TokenList::Consumed, &entry) {
                Ok(true) => return Err(VerifyError::AlreadyUsed),
                Ok(false) => {}
                Err(e) => return Err(VerifyError::RevocationsUnavailable(e.to_string())),
            }
        }
        Ok(())
    }

    /// Verifies a token of a single-use purpose and records its `jti`, in
    /// one atomic step of the store: of two concurrent consumes of one token
    /// exactly one succeeds; the other, and every later one, gets
    /// [`VerifyError::AlreadyUsed`]. The record is kept until the token's
    /// `exp` plus the leeway (`docs/lifecycle.md` rule 13).
    pub fn consume(&self, purpose: &str, token: &str) -> Result<Verified, TokenError> {
        let single_use = self.config().purpose(purpose)?.single_use;
        if !single_use {
            return Err(TokenError::NotSingleUse(purpose.to_owned()));
        }
        let verified = self.verify(purpose, token)?;
        let (jti, exp) = jti_exp(&verified.claims)?;
        let entry = self.tagged(
            TokenList::Consumed,
            TokenEntry {
                purpose: purpose.to_owned(),
                jti,
                exp,
                tag: String::new(),
            },
        )?;
        if !self.store.record_token(TokenList::Consumed, &entry)? {
            tracing::warn!(
                purpose,
                jti = entry.jti,
                "replay of a consumed single-use token refused"
            );
            return Err(VerifyError::AlreadyUsed.into());
        }
        tracing::info!(purpose, jti = entry.jti, "single-use token consumed");
        Ok(verified)
    }

    /// Revokes one token of `purpose`, given whole (it must verify: its
    /// `exp` bounds how long it is listed) or by its `jti` alone (listed for
    /// the purpose's `token_ttl`, the longest any of its tokens issued until
    /// now can live). Published in the revocation document at the next
    /// refresh (done here) until its `exp` plus the leeway.
    pub fn revoke_token(
        &self,
        purpose: &str,
        token: Option<&str>,
        jti: Option<&str>,
    ) -> Result<TokenEntry, TokenError> {
        let config = self.config();
        let p = config.purpose(purpose)?;
        let (jti, exp) = match (token, jti) {
            (Some(token), None) => jti_exp(&self.verify(purpose, token)?.claims)?,
            (None, Some(jti)) if valid_jti(jti) => (jti.to_owned(), self.now().plus(p.token_ttl)),
            (None, Some(jti)) => return Err(TokenError::BadJti(jti.to_owned())),
            _ => return Err(TokenError::TokenOrJti),
        };
        let entry = self.tagged(
            TokenList::Revoked,
            TokenEntry {
                purpose: purpose.to_owned(),
                jti,
                exp,
                tag: String::new(),
            },
        )?;
        if self.store.record_token(TokenList::Revoked, &entry)? {
            tracing::info!(purpose, jti = entry.jti, exp = entry.exp.0, "token revoked");
        }
        self.refresh();
        Ok(entry)
    }

    /// Drops the token ids no token can need any more: `exp` plus the
    /// leeway has passed. Returns how many. Runs at most once a minute (an
    /// expired id left a little longer harms nothing); the periodic check
    /// calls it.
    pub fn prune_tokens(&self) -> Result<usize, StoreError> {
        use std::sync::atomic::Ordering;
        let now = self.now();
        let last = self.last_prune.load(Ordering::Relaxed);
        if last != 0 && now.0 < last.saturating_add(60) {
            return Ok(0);
        }
        self.last_prune.store(now.0, Ordering::Relaxed);
        // The same minute's maintenance: token objects whose destruction failed.
        #[cfg(feature = "pkcs11")]
        self.sweep_token();
        let before = UnixTime(now.0.saturating_sub(self.config().leeway.as_secs()));
        let dropped = self.store.prune_tokens(before)?;
        if dropped > 0 {
            tracing::debug!(dropped, "expired token ids pruned");
            self.refresh();
        }
        Ok(dropped)
    }
}

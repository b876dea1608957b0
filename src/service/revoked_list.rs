//! The revoked-token list as a refresh reads it: only when the store's
//! version of it moved, keeping only entries signet wrote, and keeping
//! revocations deleted by hand until their tokens expire.

use std::sync::Arc;

use super::{KeyService, Snapshot};
use crate::storage::{TokenEntry, TokenList};

impl KeyService {
    /// The revoked-token list, numbered by read, if it changed since
    /// `current`'s. A store that can tell whether the list changed (a
    /// version) is asked that first, so an idle poll lists nothing.
    pub(super) fn revoked_tokens(&self, current: &Snapshot) -> Option<(u64, Arc<Vec<TokenEntry>>)> {
        use std::sync::atomic::Ordering;
        let version = match self.store.tokens_version(TokenList::Revoked) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the revoked tokens' version; keeping the last list");
                return None;
            }
        };
        let mut listed = self
            .revoked_version
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if version.is_some() && *listed == version {
            return None;
        }
        let read = 1 + self.token_reads.fetch_add(1, Ordering::SeqCst);
        match self.store.tokens(TokenList::Revoked) {
            Ok(list) => {
                *listed = version;
                let list = self.vetted(list, &current.revoked_tokens);
                (*list != **current.revoked_tokens).then(|| (read, Arc::new(list)))
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot list revoked tokens; keeping the last list");
                None
            }
        }
    }

    /// The revoked tokens of `listed` that signet wrote (their tag
    /// verifies), and those of `served` that the store no longer lists
    /// although they have not expired (deleted by hand: a revocation is not
    /// undone by removing its row). Both kinds are counted by purpose in
    /// `signet_token_entries_ignored` and logged when their number changes.
    fn vetted(&self, listed: Vec<TokenEntry>, served: &[TokenEntry]) -> Vec<TokenEntry> {
        let until = self.now().0.saturating_sub(self.config.leeway.as_secs());
        let (mut kept, forged): (Vec<_>, Vec<_>) = listed
            .into_iter()
            .partition(|e| self.authentic(TokenList::Revoked, e));
        let present: std::collections::HashSet<(&str, &str)> = kept
            .iter()
            .map(|e| (e.purpose.as_str(), e.jti.as_str()))
            .collect();
        let deleted: Vec<TokenEntry> = served
            .iter()
            .filter(|e| e.exp.0 > until && !present.contains(&(e.purpose.as_str(), e.jti.as_str())))
            .cloned()
            .collect();
        let mut counts: std::collections::BTreeMap<(String, &'static str), i64> = self
            .config
            .purposes
            .keys()
            .flat_map(|p| {
                [
                    ((p.clone(), "unauthenticated"), 0),
                    ((p.clone(), "deleted"), 0),
                ]
            })
            .collect();
        for (entries, reason) in [(&forged, "unauthenticated"), (&deleted, "deleted")] {
            for e in entries {
                *counts.entry((e.purpose.clone(), reason)).or_default() += 1;
            }
        }
        for ((purpose, reason), n) in counts {
            let gauge = self
                .ignored_entries
                .get_or_create(&vec![
                    ("purpose", purpose.clone()),
                    ("reason", reason.to_owned()),
                ])
                .clone();
            if gauge.set(n) != n && n > 0 {
                match reason {
                    "unauthenticated" => tracing::warn!(
                        purpose,
                        entries = n,
                        "revoked-token entries in the store fail authentication (written without the master key): ignored"
                    ),
                    _ => tracing::warn!(
                        purpose,
                        entries = n,
                        "revoked-token entries left the store before their tokens expired (deleted by hand?): still refused here"
                    ),
                }
            }
        }
        kept.extend(deleted);
        kept.sort();
        kept
    }
}

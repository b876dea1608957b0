//! Master-key maintenance of stored keyrings: re-sealing under the newest
//! master key, and authenticating keyrings written by an earlier signet.

use super::{KeyService, ServiceError};
use crate::keys::PrivateHalf;

impl KeyService {
    /// Re-seals every private key under the newest master key. Returns how
    /// many keys were re-encrypted.
    pub fn reencrypt(&self) -> Result<usize, ServiceError> {
        let mut count = 0;
        for purpose in self.config.purposes.keys() {
            let txn = self.store.lock(&[purpose])?;
            let Some(stored) = txn.current(purpose) else {
                continue;
            };
            self.master.check(stored)?;
            let mut ring = stored.clone();
            let mut changed = 0;
            for key in &mut ring.keys {
                if let Some(sealed) = key
                    .sealed()
                    .filter(|s| s.master != self.master.current_id())
                {
                    let pkcs8 = self.master.open(purpose, &key.kid, sealed)?;
                    let sealed = self.master.seal(purpose, &key.kid, &pkcs8)?;
                    key.private = Some(PrivateHalf::Sealed(sealed));
                    changed += 1;
                }
            }
            for legacy in &mut ring.legacy {
                if let Some(sealed) = legacy
                    .secret
                    .as_ref()
                    .filter(|s| s.master != self.master.current_id())
                {
                    let id = super::legacy::seal_id(&legacy.id);
                    let secret = self.master.open_bytes(purpose, &id, sealed)?;
                    legacy.secret = Some(self.master.seal_bytes(purpose, &id, &secret)?);
                    changed += 1;
                }
            }
            // Re-authenticated under the newest key too, even with nothing to re-seal.
            if changed > 0 || !self.master.authenticated_by_all(stored) {
                self.prepare_commit(&mut ring, txn.next_generation(purpose))?;
                txn.commit(vec![ring])?;
                count += changed;
            }
        }
        self.refresh();
        Ok(count)
    }

    /// Authenticates keyrings written by an earlier signet (they carry no
    /// authentication and every process refuses them until then), after
    /// checking each holds only keys this process can open or that no longer
    /// sign. Returns the purposes authenticated. A keyring whose
    /// authentication exists but fails is never re-authenticated.
    pub fn authenticate(&self) -> Result<Vec<String>, ServiceError> {
        let mut done = Vec::new();
        for purpose in self.config.purposes.keys() {
            let txn = self.store.lock(&[purpose])?;
            let Some(stored) = txn.current(purpose) else {
                continue;
            };
            if !stored.mac.is_empty() {
                self.master.check(stored)?;
                continue;
            }
            for key in &stored.keys {
                if let Some(sealed) = key.sealed() {
                    self.master.open(purpose, &key.kid, sealed)?;
                }
            }
            let mut ring = stored.clone();
            self.prepare_commit(&mut ring, txn.next_generation(purpose))?;
            txn.commit(vec![ring])?;
            tracing::warn!(
                purpose,
                "authenticated a keyring written by an earlier signet"
            );
            done.push(purpose.clone());
        }
        self.refresh();
        Ok(done)
    }
}

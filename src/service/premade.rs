//! Keys made before a change takes the store's lock.
//!
//! An RSA-4096 key takes seconds, an HSM key longer, and the lock holds up
//! every other writer of the purpose (on PostgreSQL, a database transaction
//! too). A change therefore plans once on the keyrings as last stored,
//! without the lock, and makes the keys that plan creates; under the lock it
//! plans again and takes its keys from these. A key the second plan does not
//! use (another replica made the change first) is discarded: a sealed one
//! dropped, one in a PKCS#11 token destroyed there.

use super::{KeyService, ServiceError};
use crate::clock::UnixTime;
use crate::config::SignerKind;
use crate::crypto::rand::{SecureRandom, SystemRandom};
use crate::keys::jwk::b64;
use crate::keys::{
    Algorithm, KeyError, Keyring, NewKey, Plan, Policy, PrivateHalf, Refusal, SigningKey, Step,
    generate,
};

/// Keys made ahead of a change, by purpose.
#[derive(Default)]
pub(super) struct Premade {
    keys: Vec<(String, NewKey)>,
}

impl Premade {
    /// A key of `purpose` and `alg` made ahead, if one is left.
    pub(super) fn take(&mut self, purpose: &str, alg: Algorithm) -> Option<NewKey> {
        let i = self
            .keys
            .iter()
            .position(|(p, k)| p == purpose && k.jwk.alg == alg.as_str())?;
        Some(self.keys.swap_remove(i).1)
    }
}

/// `plan` without its `Create` steps when the change makes no keys.
pub(super) fn keep_creates(mut plan: Plan, make_keys: bool) -> Plan {
    if !make_keys {
        plan.steps.retain(|s| !matches!(s, Step::Create { .. }));
    }
    plan
}

impl KeyService {
    /// Makes the keys that `op`, after what is due, would create in
    /// `purposes` as their keyrings are stored now. A purpose whose keyring
    /// cannot be read, or whose plan is refused, gets the keys planned so
    /// far: the change under the lock reports the cause. A key that cannot
    /// be made ends the premaking; the change under the lock tries again and
    /// reports it.
    pub(super) fn premake(
        &self,
        purposes: &[&str],
        policies: &[Policy],
        op: &impl Fn(&Keyring, UnixTime, &Policy) -> Result<Plan, Refusal>,
        now: UnixTime,
    ) -> Premade {
        let mut premade = Premade::default();
        for (&purpose, policy) in purposes.iter().zip(policies) {
            let Ok(stored) = self.store.load(purpose) else {
                continue;
            };
            let mut ring = stored.unwrap_or_else(|| Keyring::new(purpose));
            let rsa_bits = self.rsa_bits(purpose);
            let mut make = |alg: Algorithm| {
                let key = self.make_key(purpose, alg, rsa_bits)?;
                premade.keys.push((purpose.to_owned(), key.clone()));
                Ok::<_, ServiceError>(key)
            };
            if ring
                .apply(&ring.due(now, policy), now, policy, &mut make)
                .is_err()
            {
                break;
            }
            if let Ok(asked) = op(&ring, now, policy)
                && ring.apply(&asked, now, policy, &mut make).is_err()
            {
                break;
            }
        }
        premade
    }

    /// Discards the keys a change did not use; destroys those in a token.
    pub(super) fn discard(&self, premade: Premade) {
        for (purpose, key) in premade.keys {
            tracing::info!(
                purpose,
                kid = key.jwk.kid,
                "a key made for a change that no longer needed it is discarded"
            );
            if let Some(object) = key.private.token() {
                self.destroy_object(&purpose, &key.jwk.kid, object);
            }
        }
    }

    /// The RSA modulus size configured for `purpose`.
    pub(super) fn rsa_bits(&self, purpose: &str) -> u32 {
        self.config
            .purposes
            .get(purpose)
            .map_or(2048, |p| p.rsa_bits)
    }

    /// A new key of `purpose`: sealed under the master key, or made in the
    /// PKCS#11 token when the purpose's signer is one.
    pub(super) fn make_key(
        &self,
        purpose: &str,
        alg: Algorithm,
        rsa_bits: u32,
    ) -> Result<NewKey, ServiceError> {
        let in_token = self
            .config
            .purposes
            .get(purpose)
            .is_some_and(|p| p.signer == SignerKind::Pkcs11);
        if in_token {
            return self.make_token_key(purpose, alg, rsa_bits);
        }
        let pkcs8 = generate(alg, rsa_bits)?;
        let key = SigningKey::from_pkcs8(alg, &pkcs8)?;
        let sealed = self.master.seal(purpose, key.kid(), &pkcs8)?;
        tracing::info!(purpose, kid = key.kid(), %alg, "key created");
        Ok(NewKey {
            jwk: key.public_jwk().clone(),
            private: PrivateHalf::Sealed(sealed),
        })
    }
}

/// 128 random bits, base64url.
pub(super) fn random_id() -> Result<String, KeyError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Random)?;
    Ok(b64(&bytes))
}

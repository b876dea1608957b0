//! Private keys in the PKCS#11 token, seen from keyring changes: making a
//! purpose's new keys there, and destroying the objects the keyrings no
//! longer name (`docs/lifecycle.md` rule 14).

use super::{KeyService, ServiceError};
use crate::keys::{Algorithm, Keyring, NewKey, PrivateHalf, TokenObject};

impl KeyService {
    /// Destroys a key's private object in the token, logging the outcome.
    #[cfg(feature = "pkcs11")]
    pub(super) fn destroy_object(&self, purpose: &str, kid: &str, object: &TokenObject) {
        let Some(token) = &self.token else {
            tracing::error!(
                purpose,
                kid,
                token = object.token,
                "a destroyed key's private object is in a token that is not configured: destroy it there by hand"
            );
            return;
        };
        match token.destroy(object) {
            Ok(true) => tracing::info!(
                purpose,
                kid,
                object = object.object_id,
                "private key object destroyed in the token"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(purpose, kid, object = object.object_id, error = %e, "cannot destroy a private key object in the token; retried at the next sweep")
            }
        }
    }

    #[cfg(not(feature = "pkcs11"))]
    pub(super) fn destroy_object(&self, purpose: &str, kid: &str, object: &TokenObject) {
        tracing::error!(
            purpose,
            kid,
            token = object.token,
            "a destroyed key's private object is in a PKCS#11 token and this build has no PKCS#11: destroy it there by hand"
        );
    }

    /// Destroys the token objects of keys whose private half the keyrings no
    /// longer hold (a destruction that failed when the key retired or was
    /// revoked). Objects whose kid is in no keyring are left alone: a key
    /// being made by another replica is one until its commit lands. Returns
    /// how many were destroyed.
    #[cfg(feature = "pkcs11")]
    pub fn sweep_token(&self) -> usize {
        let Some(token) = &self.token else {
            return 0;
        };
        let snap = self.snapshot();
        let mut destroyed = 0;
        for (purpose, view) in &snap.purposes {
            let Ok(objects) = token.objects_of(purpose) else {
                return destroyed;
            };
            for (kid, object) in objects {
                let held = view.keyring.get(&kid).map(|k| {
                    k.private
                        .as_ref()
                        .and_then(PrivateHalf::token)
                        .is_some_and(|o| o.object_id == object.object_id)
                });
                if held == Some(false) && token.destroy(&object).unwrap_or(false) {
                    tracing::info!(
                        purpose,
                        kid,
                        object = object.object_id,
                        "private key object destroyed in the token (sweep)"
                    );
                    destroyed += 1;
                }
            }
        }
        destroyed
    }

    #[cfg(feature = "pkcs11")]
    pub(super) fn make_token_key(
        &self,
        purpose: &str,
        alg: Algorithm,
        rsa_bits: u32,
    ) -> Result<NewKey, ServiceError> {
        let token = self.token.as_ref().ok_or_else(|| {
            ServiceError::Token(crate::pkcs11::TokenError::NoToken {
                token: "(none)".into(),
                module: "(none)".into(),
            })
        })?;
        let (jwk, object) = token.generate(purpose, alg, rsa_bits)?;
        tracing::info!(purpose, kid = jwk.kid, %alg, token = object.token, object = object.object_id, "key created in the token");
        Ok(NewKey {
            jwk,
            private: PrivateHalf::Token(object),
        })
    }

    #[cfg(not(feature = "pkcs11"))]
    pub(super) fn make_token_key(
        &self,
        _: &str,
        _: Algorithm,
        _: u32,
    ) -> Result<NewKey, ServiceError> {
        unreachable!("the configuration refuses signer = \"pkcs11\" in a build without PKCS#11")
    }
}

/// Whether `ring` still names `object` as the private half of `kid`.
pub(super) fn holds(ring: &Keyring, kid: &str, object: &TokenObject) -> bool {
    ring.get(kid)
        .and_then(|k| k.private.as_ref())
        .and_then(PrivateHalf::token)
        == Some(object)
}

/// The token objects that `before` names and `after` no longer does: keys
/// whose private half was destroyed (retired, revoked) or dropped.
pub(super) fn dropped_objects(
    before: &Keyring,
    after: &Keyring,
) -> Vec<(String, String, TokenObject)> {
    before
        .keys
        .iter()
        .filter_map(|k| Some((k, k.private.as_ref()?.token()?)))
        .filter(|(k, object)| !holds(after, &k.kid, object))
        .map(|(k, object)| (before.purpose.clone(), k.kid.clone(), object.clone()))
        .collect()
}

//! What the snapshot signs with: a key pair parsed from the store's sealed
//! private key, or a handle on a key inside the PKCS#11 token. An enum, not a
//! trait object: the software path is the same direct call it always was.

use std::fmt;
#[cfg(feature = "pkcs11")]
use std::sync::Arc;

use crate::keys::{Algorithm, KeyError, KeyRecord, PrivateHalf, SigningKey};
#[cfg(feature = "pkcs11")]
use crate::pkcs11::{Token, TokenError, TokenKey};
use crate::storage::StoreError;
use crate::storage::seal::MasterKeys;

/// The token configured in `[signer]`, where the build has PKCS#11.
#[cfg(feature = "pkcs11")]
pub type TokenRef = Arc<Token>;
/// No token can be configured in a build without PKCS#11.
#[cfg(not(feature = "pkcs11"))]
pub type TokenRef = std::convert::Infallible;

/// A key that can sign now.
pub enum KeySigner {
    /// Parsed from the sealed private key in the store.
    Software(SigningKey),
    /// Inside the PKCS#11 token.
    #[cfg(feature = "pkcs11")]
    Token(TokenKey),
}

impl fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySigner::Software(k) => k.fmt(f),
            #[cfg(feature = "pkcs11")]
            KeySigner::Token(k) => k.fmt(f),
        }
    }
}

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignFailure {
    /// The software signature failed (only on an RNG failure).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The token failed or refused.
    #[cfg(feature = "pkcs11")]
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl KeySigner {
    /// The key's id.
    pub fn kid(&self) -> &str {
        match self {
            KeySigner::Software(k) => k.kid(),
            #[cfg(feature = "pkcs11")]
            KeySigner::Token(k) => k.kid(),
        }
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> Algorithm {
        match self {
            KeySigner::Software(k) => k.alg(),
            #[cfg(feature = "pkcs11")]
            KeySigner::Token(k) => k.alg(),
        }
    }

    /// Whether a signature is a call into the token (blocking, possibly on
    /// a network round trip): then it runs off the async workers.
    pub fn in_token(&self) -> bool {
        !matches!(self, KeySigner::Software(_))
    }

    /// Signs a JWS signing input.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignFailure> {
        match self {
            KeySigner::Software(k) => Ok(k.sign(message)?),
            #[cfg(feature = "pkcs11")]
            KeySigner::Token(k) => Ok(k.sign(message)?),
        }
    }
}

/// Makes the signer of a stored key: decrypts and parses a sealed key
/// (checking it is the key its kid names), or finds a token key's object.
/// A token that cannot be asked right now does not fail the key: signing
/// reports the token's error and recovers with it.
pub(crate) fn open_key(
    master: &MasterKeys,
    token: Option<&TokenRef>,
    purpose: &str,
    key: &KeyRecord,
) -> Result<KeySigner, String> {
    let decrypt = |reason: String| {
        StoreError::Decrypt {
            purpose: purpose.to_owned(),
            kid: key.kid.clone(),
            reason,
        }
        .to_string()
    };
    match &key.private {
        None => Err(decrypt(
            "its private half was destroyed, so it can never sign; rotate the purpose".into(),
        )),
        Some(PrivateHalf::Sealed(sealed)) => {
            let pkcs8 = master
                .open(purpose, &key.kid, sealed)
                .map_err(|e| e.to_string())?;
            let parsed =
                SigningKey::from_pkcs8(key.alg, &pkcs8).map_err(|e| decrypt(e.to_string()))?;
            if parsed.kid() != key.kid {
                return Err(decrypt(
                    "the private key does not belong to this kid".into(),
                ));
            }
            Ok(KeySigner::Software(parsed))
        }
        Some(PrivateHalf::Token(object)) => {
            let Some(token) = token else {
                return Err(format!(
                    "the private key of {} is in the PKCS#11 token {:?}, and [signer] is not \"pkcs11\": configure that token to sign with it, or rotate {purpose}",
                    key.kid, object.token
                ));
            };
            open_token_key(token, purpose, key, object)
        }
    }
}

#[cfg(feature = "pkcs11")]
fn open_token_key(
    token: &TokenRef,
    purpose: &str,
    key: &KeyRecord,
    object: &crate::keys::TokenObject,
) -> Result<KeySigner, String> {
    if object.token != token.label() {
        return Err(format!(
            "the private key of {} is in the PKCS#11 token {:?}, and signet is configured with {:?}: configure that token, or rotate {purpose}",
            key.kid,
            object.token,
            token.label()
        ));
    }
    let signer = TokenKey::new(Arc::clone(token), key.alg, key.jwk.clone(), object)
        .map_err(|e| e.to_string())?;
    match signer.is_present() {
        Ok(true) => {}
        Ok(false) => {
            return Err(TokenError::Missing {
                kid: key.kid.clone(),
                object_id: object.object_id.clone(),
                token: object.token.clone(),
            }
            .to_string());
        }
        Err(e) => {
            tracing::warn!(purpose, kid = key.kid, error = %e, "cannot check that a key's private object is in the token; signing will say what fails");
        }
    }
    Ok(KeySigner::Token(signer))
}

#[cfg(not(feature = "pkcs11"))]
fn open_token_key(
    token: &TokenRef,
    _: &str,
    _: &KeyRecord,
    _: &crate::keys::TokenObject,
) -> Result<KeySigner, String> {
    match *token {}
}

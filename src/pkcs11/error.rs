//! What can go wrong with the token, and what a failed PKCS#11 call means
//! for the session it was made in.

use cryptoki::error::{Error as CkError, RvError};

/// Why the token could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The module could not be loaded or initialised.
    #[error(
        "cannot load the PKCS#11 module {module}: {reason}; check signer.module (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
    )]
    Module {
        /// The library path.
        module: String,
        /// The loader's or the module's reason.
        reason: String,
    },
    /// No slot holds the configured token.
    #[error(
        "no token {token} in the PKCS#11 module {module}: is it present and initialised (`softhsm2-util --show-slots`, `pkcs11-tool --list-slots`)? SoftHSM2 looks for its tokens where SOFTHSM2_CONF says: set it in this shell as when the token was made"
    )]
    NoToken {
        /// The token as configured.
        token: String,
        /// The library path.
        module: String,
    },
    /// The token refused the PIN; it is not offered again.
    #[error(
        "the token {token} refused SIGNET_PKCS11_PIN ({reason}); signet will not offer it again, since a token locks its PIN after repeated failures: set the right PIN and restart"
    )]
    Pin {
        /// The token as configured.
        token: String,
        /// The token's answer.
        reason: String,
    },
    /// A PKCS#11 call failed.
    #[error("the token {token} failed: {call}")]
    Call {
        /// The token as configured.
        token: String,
        /// The function and its return value, e.g. `C_Sign: DeviceRemoved`.
        call: String,
    },
    /// The key's private object is not in the token.
    #[error(
        "the private key of {kid} (object {object_id}) is not in the token {token}: it was deleted, or this replica reaches another token. Restore the token from its backup, or revoke the key (`signet keys revoke {kid}`) so the purpose rotates to a new one"
    )]
    Missing {
        /// The key.
        kid: String,
        /// Its `CKA_ID`, hex.
        object_id: String,
        /// The token as configured.
        token: String,
    },
    /// The token's answer cannot be used (a public key or signature of the
    /// wrong shape, or a key that is extractable after all).
    #[error("the token {token} returned something signet cannot use: {reason}")]
    Unusable {
        /// The token as configured.
        token: String,
        /// What was wrong.
        reason: String,
    },
}

/// How a failed call leaves the session it was made in.
pub(super) enum Fault {
    /// The session (and every other one: the token or module went away) is
    /// unusable; open new ones.
    Sessions,
    /// The call failed on its own; the session is fine.
    Call,
}

pub(super) fn fault_of(e: &CkError) -> Fault {
    match e {
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::SessionCount
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SlotIdInvalid
            | RvError::UserNotLoggedIn
            | RvError::CryptokiNotInitialized
            | RvError::GeneralError,
            _,
        ) => Fault::Sessions,
        _ => Fault::Call,
    }
}

/// `C_Sign: DeviceRemoved`: the function and the return value, never data.
pub(super) fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("C_{function:?}: {rv:?}"),
        other => other.to_string(),
    }
}

/// A failure inside a pooled operation.
pub(crate) enum OpError {
    /// A PKCS#11 call failed (classified by [`fault_of`]).
    Pkcs11(CkError),
    /// Something signet refuses (a missing object, an unusable answer).
    Token(TokenError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> OpError {
        OpError::Pkcs11(e)
    }
}

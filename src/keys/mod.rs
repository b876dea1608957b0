//! The pure core: algorithms, key material, JWKs and the key lifecycle.
//!
//! No IO, no async, no clock reads: every function that depends on time takes
//! `now` as a parameter.

mod algorithm;
pub mod jwk;
mod material;
pub mod token;

// The lifecycle: only the server keeps keyrings (a verifier-only build
// compiles none of it, nor the cron schedules).
#[cfg(feature = "server")]
mod keyring;
#[cfg(feature = "server")]
pub mod legacy;
#[cfg(feature = "server")]
mod plan;
#[cfg(feature = "server")]
mod policy;
#[cfg(feature = "server")]
mod record;
#[cfg(feature = "server")]
mod schedule;

#[cfg(feature = "server")]
#[cfg(test)]
mod lifecycle_change_tests;
#[cfg(feature = "server")]
#[cfg(test)]
mod lifecycle_tests;
#[cfg(feature = "server")]
#[cfg(test)]
mod lifecycle_walk_tests;

pub use algorithm::{Algorithm, KeyFamily, UnknownAlgorithm};
pub use jwk::{PublicJwk, PublicMembers, thumbprint};
#[cfg(feature = "server")]
pub use keyring::Keyring;
pub use material::{
    KeyError, Pkcs8, RSA_BITS, SigningKey, VerifyingKey, generate, verify_signature,
};
#[cfg(feature = "server")]
pub use plan::{NewKey, Plan, Refusal, Step};
#[cfg(feature = "server")]
pub use policy::{MAX_RETIRING, Policy};
#[cfg(feature = "server")]
pub use record::{KeyRecord, KeyState, KeyringMac, PrivateHalf, SealedKey, TokenObject};
#[cfg(feature = "server")]
pub use schedule::{Schedule, ScheduleError};

/// The JWT `typ` signet gives a purpose unless configured otherwise:
/// `at+jwt` for access tokens (RFC 9068), else the purpose with `-` for `_`
/// (`refresh+jwt`, `magic-link+jwt`, `reset-password+jwt` for the built-ins).
pub fn default_typ(purpose: &str) -> String {
    match purpose {
        "access_token" => "at+jwt".to_owned(),
        "refresh_token" => "refresh+jwt".to_owned(),
        "reset_password_link" => "reset-password+jwt".to_owned(),
        other => format!("{}+jwt", other.replace('_', "-")),
    }
}

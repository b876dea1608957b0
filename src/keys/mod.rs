//! The pure core: algorithms, key material, JWKs and the key lifecycle.
//!
//! No IO, no async, no clock reads: every function that depends on time takes
//! `now` as a parameter.

mod algorithm;
pub mod jwk;
mod keyring;
mod material;
mod plan;
mod policy;
mod record;
mod schedule;
pub mod token;

#[cfg(test)]
mod lifecycle_change_tests;
#[cfg(test)]
mod lifecycle_tests;

pub use algorithm::{Algorithm, KeyFamily, UnknownAlgorithm};
pub use jwk::{PublicJwk, PublicMembers, thumbprint};
pub use keyring::Keyring;
pub use material::{KeyError, Pkcs8, RSA_BITS, SigningKey, generate, verify_signature};
pub use plan::{NewKey, Plan, Refusal, Step};
pub use policy::{MAX_RETIRING, Policy};
pub use record::{KeyRecord, KeyState, KeyringMac, SealedKey};
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

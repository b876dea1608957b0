//! The pure core: algorithms, key material, JWKs and the key lifecycle.
//!
//! No IO, no async, no clock reads: every function that depends on time takes
//! `now` as a parameter.

mod algorithm;
pub mod jwk;
mod keyring;
mod material;
mod record;
mod schedule;
pub mod token;

#[cfg(test)]
mod lifecycle_tests;

pub use algorithm::{Algorithm, KeyFamily, UnknownAlgorithm};
pub use jwk::{PublicJwk, PublicMembers, thumbprint};
pub use keyring::{Keyring, NewKey, Plan, Policy, Refusal, Step};
pub use material::{KeyError, Pkcs8, RSA_BITS, SigningKey, generate, verify_signature};
pub use record::{KeyRecord, KeyState, SealedKey};
pub use schedule::{Schedule, ScheduleError};

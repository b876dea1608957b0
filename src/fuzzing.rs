//! The parsers that see untrusted bytes, as signet runs them, for the fuzz
//! targets (`fuzz/`) and the property tests (`tests/properties.rs`). Not
//! part of signet's API: hidden from the documentation, and free to change.

use crate::config::{Config, ConfigError};
use crate::keys::{Algorithm, Keyring};
use crate::storage::StoreError;

/// What the verifier keeps of an accepted JWKS entry.
#[derive(Debug)]
pub struct AcceptedKey {
    /// Its kid.
    pub kid: String,
    /// Its algorithm.
    pub alg: Algorithm,
}

/// The verifier's parsing and vetting of a JWKS body (`max_keys` entries at
/// most): the keys it would verify with, or why it refuses the document.
#[cfg(feature = "verifier")]
pub fn jwks(body: &[u8], max_keys: usize) -> Result<Vec<AcceptedKey>, String> {
    let keys = crate::verifier::jwks::parse_set(body, max_keys)?;
    Ok(keys
        .into_iter()
        .map(|(kid, key)| AcceptedKey { kid, alg: key.alg })
        .collect())
}

/// A store's reading of a keyring document for `purpose`, with its
/// integrity checks (not its authentication, which needs the master key).
pub fn keyring_document(bytes: &[u8], purpose: &str) -> Result<Keyring, StoreError> {
    crate::storage::document::decode(bytes, "(fuzz)", purpose)
}

/// The document a store writes for `keyring`.
pub fn keyring_bytes(keyring: &Keyring) -> Result<Vec<u8>, StoreError> {
    crate::storage::document::encode(keyring, "(fuzz)")
}

/// The configuration file's text, read and checked as at start, with no
/// environment variables.
pub fn config(text: &str, now: crate::clock::UnixTime) -> Result<Config, ConfigError> {
    Config::parse(text, &|_| None, now)
}

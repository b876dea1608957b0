//! The keyring document every store keeps: the keyring as JSON with a format
//! number, checked the same way whichever store it comes from.

use serde::{Deserialize, Serialize};

use super::{StoreError, check_keyring};
use crate::keys::Keyring;

/// The document format this signet reads and writes.
pub(crate) const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Document {
    format: u32,
    #[serde(flatten)]
    keyring: Keyring,
}

/// The bytes a store keeps for `keyring`.
pub(crate) fn encode(keyring: &Keyring, location: &str) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec_pretty(&Document {
        format: FORMAT,
        keyring: keyring.clone(),
    })
    .map_err(|e| StoreError::Corrupt {
        location: location.to_owned(),
        reason: format!("cannot be encoded: {e}"),
    })
}

/// The keyring of `purpose` in `bytes` read from `location`, after the
/// integrity checks; a `Corrupt` error naming the location otherwise.
pub(crate) fn decode(bytes: &[u8], location: &str, purpose: &str) -> Result<Keyring, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        location: location.to_owned(),
        reason,
    };
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_eof() {
            "is truncated"
        } else {
            "is not a valid keyring"
        };
        corrupt(format!(
            "{what} (line {}, column {}: {e})",
            e.line(),
            e.column()
        ))
    })?;
    if doc.format != FORMAT {
        return Err(corrupt(format!(
            "has format {}, this signet reads format {FORMAT}",
            doc.format
        )));
    }
    check_keyring(&doc.keyring, purpose).map_err(corrupt)?;
    Ok(doc.keyring)
}

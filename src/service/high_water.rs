//! This replica's high-water marks: the newest generation of each keyring
//! it has served (`docs/lifecycle.md` rule 16).
//!
//! A keyring older than one a replica served, of the same identity, is a
//! store put back to an earlier copy: that copy may still hold a key
//! revoked since, so it is refused, by the refresh and by every change. The
//! marks live in memory, and, with `store.state_file`, in a small file
//! authenticated under the master key, so that a restarted replica keeps
//! them too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::keys::{Keyring, KeyringMac};
use crate::storage::StoreError;
use crate::storage::durable::write_atomic;
use crate::storage::seal::MasterKeys;
use crate::storage::small_file::{SmallFileError, read_small};

/// The tag domain of the state file (see `MasterKeys::tag_all`).
const DOMAIN: &str = "replica state";

/// The newest generation served of one keyring identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    id: String,
    generation: u64,
}

/// The state file's document.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    marks: BTreeMap<String, Mark>,
    mac: Vec<KeyringMac>,
}

/// The marks, by purpose.
#[derive(Debug)]
pub(super) struct HighWater {
    path: Option<PathBuf>,
    marks: Mutex<BTreeMap<String, Mark>>,
}

impl HighWater {
    /// The marks of `path` (none if it does not exist yet), or in memory
    /// only. A file that cannot be read or fails authentication is refused:
    /// the replica would otherwise forget what it guards.
    pub(super) fn open(path: Option<&Path>, master: &MasterKeys) -> Result<HighWater, StoreError> {
        let marks = match path {
            None => BTreeMap::new(),
            Some(path) => read(path, master)?,
        };
        Ok(HighWater {
            path: path.map(Path::to_owned),
            marks: Mutex::new(marks),
        })
    }

    /// The newest generation served of `ring`'s identity, if `ring` is older.
    pub(super) fn newer_than(&self, ring: &Keyring) -> Option<u64> {
        let marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        marks
            .get(&ring.purpose)
            .filter(|m| m.id == ring.id && m.generation > ring.generation)
            .map(|m| m.generation)
    }

    /// Records that `rings` are served; writes the file if a mark moved. A
    /// file that cannot be written is logged: the marks in memory still hold.
    pub(super) fn raise<'a>(&self, master: &MasterKeys, rings: impl Iterator<Item = &'a Keyring>) {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let mut moved = false;
        for ring in rings.filter(|r| !r.id.is_empty()) {
            let mark = Mark {
                id: ring.id.clone(),
                generation: ring.generation,
            };
            let old = marks.get(&ring.purpose);
            // Another identity is another keyring (moved aside, started
            // again): its marks start over.
            if old.is_none_or(|m| m.id != mark.id || m.generation < mark.generation) {
                marks.insert(ring.purpose.clone(), mark);
                moved = true;
            }
        }
        if let (true, Some(path)) = (moved, &self.path)
            && let Err(e) = write(path, master, &marks)
        {
            tracing::warn!(error = %e, "cannot record the keyring generations served in store.state_file; a restart of this replica would forget them");
        }
    }
}

fn read(path: &Path, master: &MasterKeys) -> Result<BTreeMap<String, Mark>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        location: format!("store.state_file {}", path.display()),
        reason: format!(
            "{reason}; it records the newest keyring generations this replica served: restore it, or delete it to start without them (the store's own history still guards)"
        ),
    };
    let bytes = match read_small(path, 64 * 1024) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(BTreeMap::new()),
        Err(SmallFileError::Refused(reason)) => return Err(corrupt(reason)),
        Err(SmallFileError::Io(source)) => {
            return Err(StoreError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            });
        }
    };
    let state: StateFile = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(format!("is not a state file ({e})")))?;
    let data = serde_json::to_vec(&state.marks)
        .map_err(|e| corrupt(format!("cannot be encoded ({e})")))?;
    master
        .verify_any(DOMAIN, &data, &state.mac)
        .map_err(|e| corrupt(format!("fails authentication: {e}")))?;
    Ok(state.marks)
}

fn write(
    path: &Path,
    master: &MasterKeys,
    marks: &BTreeMap<String, Mark>,
) -> Result<(), StoreError> {
    let encode =
        |e: serde_json::Error| StoreError::MasterKey(format!("cannot encode the state: {e}"));
    let data = serde_json::to_vec(marks).map_err(encode)?;
    let state = StateFile {
        marks: marks.clone(),
        mac: master.tag_all(DOMAIN, &data)?,
    };
    write_atomic(path, &serde_json::to_vec_pretty(&state).map_err(encode)?)
}

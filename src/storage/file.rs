//! The file store: one `<purpose>.json` per keyring in a 0700 directory.
//!
//! Every write goes to a temporary file that is fsynced, renamed over the old
//! keyring, and followed by an fsync of the directory, so a crash at any
//! instant leaves the old keyring or the new one. A lock file serialises
//! writers across processes. A file that fails to parse or to pass its
//! integrity checks is reported and never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{KeyStore, KeyringTxn, StoreError, check_keyring};
use crate::keys::Keyring;

const FORMAT: u32 = 1;
const LOCK_FILE: &str = ".lock";

/// Keyrings as files in a directory.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    #[serde(flatten)]
    keyring: Keyring,
}

pub(super) fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StoreError::Io {
            action: "use as the keys directory",
            path: dir.to_owned(),
            source: std::io::Error::new(
                ErrorKind::AlreadyExists,
                "it exists and is not a directory",
            ),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Io {
                action: "create the keys directory",
                path: dir.to_owned(),
                source,
            }),
        Err(source) => Err(StoreError::Io {
            action: "read the keys directory",
            path: dir.to_owned(),
            source,
        }),
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            action: "fsync",
            path: dir.to_owned(),
            source,
        })
}

impl FileStore {
    /// Opens (creating, mode 0700) the keys directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let dir = dir.into();
        ensure_dir(&dir)?;
        // A checkout creates keys/ with the umask's mode: tighten it, as the
        // private keys will live there.
        if fs::metadata(&dir).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            match fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "set the keys directory to mode 0700")
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "the keys directory is open to other users and cannot be changed; run chmod 700 on it")
                }
            }
        }
        Ok(FileStore { dir })
    }

    /// The keys directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, purpose: &str) -> PathBuf {
        self.dir.join(format!("{purpose}.json"))
    }

    fn read(&self, purpose: &str) -> Result<Option<Keyring>, StoreError> {
        let path = self.path(purpose);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            location: path.display().to_string(),
            reason,
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| {
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
        if disk.format != FORMAT {
            return Err(corrupt(format!(
                "has format {}, this signet reads format {FORMAT}",
                disk.format
            )));
        }
        check_keyring(&disk.keyring, purpose).map_err(corrupt)?;
        Ok(Some(disk.keyring))
    }

    fn write(&self, keyring: &Keyring) -> Result<(), StoreError> {
        fn io<'p>(
            action: &'static str,
            p: &'p Path,
        ) -> impl FnOnce(std::io::Error) -> StoreError + 'p {
            move |source| StoreError::Io {
                action,
                path: p.to_owned(),
                source,
            }
        }
        let path = self.path(&keyring.purpose);
        let tmp = self.dir.join(format!(
            ".{}.json.tmp-{}",
            keyring.purpose,
            std::process::id()
        ));
        let body = serde_json::to_vec_pretty(&OnDisk {
            format: FORMAT,
            keyring: keyring.clone(),
        })
        .map_err(|e| StoreError::Corrupt {
            location: path.display().to_string(),
            reason: format!("cannot be encoded: {e}"),
        })?;
        // A leftover from a writer killed mid-write is only ever a temporary file.
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(&body).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
        sync_dir(&self.dir)
    }
}

impl KeyStore for FileStore {
    fn describe(&self) -> String {
        format!("file store at {}", self.dir.display())
    }

    fn load(&self, purpose: &str) -> Result<Option<Keyring>, StoreError> {
        self.read(purpose)
    }

    fn lock(&self, purpose: &str) -> Result<Box<dyn KeyringTxn + '_>, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::Io {
                action: "open the lock file",
                path: path.clone(),
                source,
            })?;
        lock.lock().map_err(|source| StoreError::Io {
            action: "lock",
            path,
            source,
        })?;
        let current = self.read(purpose)?;
        Ok(Box::new(FileTxn {
            store: self,
            current,
            _lock: lock,
        }))
    }
}

struct FileTxn<'a> {
    store: &'a FileStore,
    current: Option<Keyring>,
    /// Held until the transaction ends; closing the file releases the lock.
    _lock: File,
}

impl KeyringTxn for FileTxn<'_> {
    fn current(&self) -> Option<&Keyring> {
        self.current.as_ref()
    }

    fn commit(self: Box<Self>, mut keyring: Keyring) -> Result<u64, StoreError> {
        keyring.generation = self.current.as_ref().map_or(0, |k| k.generation) + 1;
        self.store.write(&keyring)?;
        Ok(keyring.generation)
    }
}

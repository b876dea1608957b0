//! The file store: one `<purpose>.json` per keyring in a 0700 directory.
//!
//! Every write goes to a temporary file that is fsynced, renamed over the old
//! keyring, and followed by an fsync of the directory, so a crash at any
//! instant leaves the old keyring or the new one. A lock file serialises
//! writers across processes. A file that fails to parse or to pass its
//! integrity checks is reported and never overwritten. A writer killed before
//! its rename leaves only a temporary file, which the next writer (or the
//! next process to open the store) deletes under the lock: it may hold the
//! sealed private halves of keys destroyed since.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

mod tokens;

use crate::keys::Keyring;
use crate::storage::document::{decode, encode};
use crate::storage::durable::{ensure_dir, sync_dir};
use crate::storage::small_file::{SmallFileError, read_small};
use crate::storage::{KeyStore, KeyringTxn, StoreError, TokenEntry, TokenList, check_successor};

const LOCK_FILE: &str = ".lock";
/// A keyring is a few kilobytes (tens with RSA-4096 keys); anything larger
/// is not one of signet's.
const MAX_KEYRING_BYTES: u64 = 1024 * 1024;
/// Temporary files are `.<purpose>.json.tmp-<pid>`.
const TMP_MARK: &str = ".json.tmp-";

/// Keyrings as files in a directory.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    crash: AtomicU8,
}

/// A step of a keyring write at which a test makes the writer stop as if it
/// had been killed there: nothing after it happens, nothing is cleaned up.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CrashPoint {
    /// The temporary file exists, empty.
    Created = 1,
    /// Half the keyring is in the temporary file.
    HalfWritten,
    /// The temporary file is complete and fsynced, not yet renamed.
    Written,
    /// Renamed into place; the directory is not yet fsynced.
    Renamed,
}

impl CrashPoint {
    /// Every point, in the order a write passes them.
    pub const ALL: [CrashPoint; 4] = [
        CrashPoint::Created,
        CrashPoint::HalfWritten,
        CrashPoint::Written,
        CrashPoint::Renamed,
    ];
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
        let store = FileStore {
            dir,
            crash: AtomicU8::new(0),
        };
        if store.has_leftovers()? {
            drop(store.take_lock()?);
        }
        Ok(store)
    }

    /// Opens an existing keys directory to read it: nothing is created,
    /// tightened or cleaned. `None` if the directory holds no keyring.
    pub fn open_read_only(dir: impl Into<PathBuf>) -> Result<Option<FileStore>, StoreError> {
        let dir = dir.into();
        let has_keyrings = match fs::read_dir(&dir) {
            Ok(entries) => entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('.') && name.ends_with(".json")
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(source) => {
                return Err(StoreError::Io {
                    action: "read the keys directory",
                    path: dir,
                    source,
                });
            }
        };
        Ok(has_keyrings.then(|| FileStore {
            dir,
            crash: AtomicU8::new(0),
        }))
    }

    /// Makes the next writes stop at `point` as if the writer were killed
    /// there. Fault injection for tests; never set in production.
    #[doc(hidden)]
    pub fn crash_at(&self, point: Option<CrashPoint>) {
        self.crash
            .store(point.map_or(0, |p| p as u8), Ordering::SeqCst);
    }

    fn crashes_at(&self, point: CrashPoint, path: &Path) -> Result<(), StoreError> {
        if self.crash.load(Ordering::SeqCst) == point as u8 {
            return Err(StoreError::Io {
                action: "finish writing (injected crash)",
                path: path.to_owned(),
                source: std::io::Error::other(format!("stopped at {point:?}")),
            });
        }
        Ok(())
    }

    fn leftovers(&self) -> Result<Vec<PathBuf>, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| StoreError::Io {
            action: "list",
            path: self.dir.clone(),
            source,
        })?;
        Ok(entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with('.') && name.contains(TMP_MARK)
            })
            .map(|e| e.path())
            .collect())
    }

    fn has_leftovers(&self) -> Result<bool, StoreError> {
        Ok(!self.leftovers()?.is_empty())
    }

    /// Takes the store's write lock and deletes what killed writers left.
    fn take_lock(&self) -> Result<File, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        // Neither a symbolic link nor a FIFO planted at the lock's path is
        // followed or waited on: the open fails instead.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
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
        // Under the lock no write is in progress: every temporary file is a
        // leftover of a writer that died before its rename.
        let leftovers = self.leftovers()?;
        for tmp in &leftovers {
            fs::remove_file(tmp).map_err(|source| StoreError::Io {
                action: "delete the leftover temporary file",
                path: tmp.clone(),
                source,
            })?;
            tracing::warn!(file = %tmp.display(), "deleted a keyring write left unfinished by a killed process");
        }
        if !leftovers.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(lock)
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
        let corrupt = |reason: String| StoreError::Corrupt {
            location: path.display().to_string(),
            reason,
        };
        let bytes = match read_small(&path, MAX_KEYRING_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(SmallFileError::Refused(reason)) => return Err(corrupt(reason)),
            Err(SmallFileError::Io(source)) => {
                return Err(StoreError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        decode(&bytes, &path.display().to_string(), purpose).map(Some)
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
            ".{}{TMP_MARK}{}",
            keyring.purpose,
            std::process::id()
        ));
        let body = encode(keyring, &path.display().to_string())?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        self.crashes_at(CrashPoint::Created, &tmp)?;
        let (first, rest) = body.split_at(body.len() / 2);
        f.write_all(first).map_err(io("write", &tmp))?;
        self.crashes_at(CrashPoint::HalfWritten, &tmp)?;
        f.write_all(rest).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        self.crashes_at(CrashPoint::Written, &tmp)?;
        fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
        self.crashes_at(CrashPoint::Renamed, &path)?;
        sync_dir(&self.dir)
    }
}

impl KeyStore for FileStore {
    fn describe(&self) -> String {
        format!("file store at {}", self.dir.display())
    }

    fn record_token(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
        tokens::record(&self.dir, list, entry)
    }

    fn token_recorded(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
        tokens::recorded(&self.dir, list, entry)
    }

    fn tokens_version(&self, list: TokenList) -> Result<Option<String>, StoreError> {
        tokens::version(&self.dir, list).map(Some)
    }

    fn tokens(&self, list: TokenList) -> Result<Vec<TokenEntry>, StoreError> {
        tokens::entries(&self.dir, list)
    }

    fn prune_tokens(&self, before: crate::clock::UnixTime) -> Result<usize, StoreError> {
        tokens::prune(&self.dir, before)
    }

    fn load(&self, purpose: &str) -> Result<Option<Keyring>, StoreError> {
        self.read(purpose)
    }

    fn lock(&self, purposes: &[&str]) -> Result<Box<dyn KeyringTxn + '_>, StoreError> {
        // One lock file for the directory: every writer, of any purpose,
        // takes it, so a set of purposes is locked at once without ordering.
        let lock = self.take_lock()?;
        let mut current = Vec::with_capacity(purposes.len());
        for purpose in purposes {
            current.push(((*purpose).to_owned(), self.read(purpose)?));
        }
        Ok(Box::new(FileTxn {
            store: self,
            current,
            _lock: lock,
        }))
    }
}

struct FileTxn<'a> {
    store: &'a FileStore,
    /// Each locked purpose with its keyring as of the lock.
    current: Vec<(String, Option<Keyring>)>,
    /// Held until the transaction ends; closing the file releases the lock.
    _lock: File,
}

impl KeyringTxn for FileTxn<'_> {
    fn current(&self, purpose: &str) -> Option<&Keyring> {
        self.current
            .iter()
            .find(|(p, _)| p == purpose)
            .and_then(|(_, k)| k.as_ref())
    }

    fn commit(self: Box<Self>, keyrings: Vec<Keyring>) -> Result<Vec<u64>, StoreError> {
        let mut generations = Vec::with_capacity(keyrings.len());
        for keyring in keyrings {
            let Some((_, current)) = self.current.iter().find(|(p, _)| *p == keyring.purpose)
            else {
                return Err(StoreError::Corrupt {
                    location: self.store.path(&keyring.purpose).display().to_string(),
                    reason: "was not locked by this write (a bug in signet)".into(),
                });
            };
            let expected = current.as_ref().map_or(0, |k| k.generation) + 1;
            let location = self.store.path(&keyring.purpose).display().to_string();
            check_successor(&keyring, expected, &location)?;
            self.store.write(&keyring)?;
            generations.push(keyring.generation);
        }
        Ok(generations)
    }
}

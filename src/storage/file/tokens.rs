//! The file store's token lists: one empty file per entry,
//! `tokens/<list>/<purpose>/<exp>-<jti>`. The name holds everything, so
//! creating it (`O_CREAT | O_EXCL`, then an fsync of the directory) is the
//! atomic, durable record, shared by every process on the directory, and
//! pruning never opens a file. The file holds the entry's tag, written and
//! fsynced before the directory is.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::clock::UnixTime;
use crate::storage::durable::sync_dir;
use crate::storage::small_file::read_small;
use crate::storage::{StoreError, TokenEntry, TokenList, valid_jti};

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// `dir/tokens/<list>`.
fn list_dir(dir: &Path, list: TokenList) -> PathBuf {
    dir.join("tokens").join(list.as_str())
}

/// `dir/tokens/<list>/<purpose>/<exp>-<jti>`: the entry's file.
fn entry_path(dir: &Path, list: TokenList, entry: &TokenEntry) -> PathBuf {
    list_dir(dir, list)
        .join(&entry.purpose)
        .join(format!("{}-{}", entry.exp.0, entry.jti))
}

/// Records an entry; `Ok(false)` if it was already there.
pub(super) fn record(dir: &Path, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
    let purpose_dir = list_dir(dir, list).join(&entry.purpose);
    if !purpose_dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&purpose_dir)
            .map_err(io("create", &purpose_dir))?;
        // The new directories themselves must survive a crash.
        for d in [dir, &dir.join("tokens"), &list_dir(dir, list)] {
            sync_dir(d)?;
        }
    }
    let path = entry_path(dir, list, entry);
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(entry.tag.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io("record a token in", &path))?;
            sync_dir(&purpose_dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io("record a token in", &path)(e)),
    }
}

/// Whether the entry is recorded.
pub(super) fn recorded(
    dir: &Path,
    list: TokenList,
    entry: &TokenEntry,
) -> Result<bool, StoreError> {
    let path = entry_path(dir, list, entry);
    match fs::symlink_metadata(&path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("look up a token in", &path)(e)),
    }
}

/// Every entry of `list`, with the path of each, sorted.
fn scan(dir: &Path, list: TokenList) -> Result<Vec<(TokenEntry, PathBuf)>, StoreError> {
    let root = list_dir(dir, list);
    let purposes = match fs::read_dir(&root) {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", &root)(e)),
    };
    let mut out = Vec::new();
    for p in purposes {
        let p = p.map_err(io("read", &root))?;
        let purpose = p.file_name().to_string_lossy().into_owned();
        let pdir = p.path();
        for f in fs::read_dir(&pdir).map_err(io("read", &pdir))? {
            let f = f.map_err(io("read", &pdir))?;
            let name = f.file_name().to_string_lossy().into_owned();
            // Anything else in there is not signet's: left alone.
            let Some((exp, jti)) = name.split_once('-') else {
                continue;
            };
            let (Ok(exp), true) = (exp.parse::<u64>(), valid_jti(jti)) else {
                continue;
            };
            // A tag is a few dozen bytes; a larger file is not signet's
            // and is read as untagged (ignored where a tag is required).
            let tag = match read_small(&f.path(), 4096) {
                Ok(Some(bytes)) => String::from_utf8(bytes).unwrap_or_default(),
                _ => String::new(),
            };
            let entry = TokenEntry {
                purpose: purpose.clone(),
                jti: jti.to_owned(),
                exp: UnixTime(exp),
                tag,
            };
            out.push((entry, f.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// A value that changes when an entry of `list` is recorded or removed:
/// the modification times of its directories (creating or removing a file
/// updates its directory's).
pub(super) fn version(dir: &Path, list: TokenList) -> Result<String, StoreError> {
    let root = list_dir(dir, list);
    let stamp = |p: &Path| -> Result<String, StoreError> {
        match fs::metadata(p) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                Ok(format!("{}.{}", m.mtime(), m.mtime_nsec()))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok("-".into()),
            Err(e) => Err(io("read", p)(e)),
        }
    };
    let mut version = stamp(&root)?;
    if let Ok(purposes) = fs::read_dir(&root) {
        let mut dirs: Vec<PathBuf> = purposes.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for d in dirs {
            version.push(',');
            version.push_str(&stamp(&d)?);
        }
    }
    Ok(version)
}

/// Every entry of `list`, sorted.
pub(super) fn entries(dir: &Path, list: TokenList) -> Result<Vec<TokenEntry>, StoreError> {
    Ok(scan(dir, list)?.into_iter().map(|(e, _)| e).collect())
}

/// Drops the entries of both lists whose `exp` is before `before`. Returns
/// how many.
pub(super) fn prune(dir: &Path, before: UnixTime) -> Result<usize, StoreError> {
    let mut dropped = 0;
    for list in [TokenList::Revoked, TokenList::Consumed] {
        let mut touched = Vec::new();
        for (entry, path) in scan(dir, list)? {
            if entry.exp < before {
                match fs::remove_file(&path) {
                    Ok(()) => dropped += 1,
                    // Another process pruned it first.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io("prune", &path)(e)),
                }
                if let Some(parent) = path.parent()
                    && !touched.iter().any(|t: &PathBuf| t == parent)
                {
                    touched.push(parent.to_owned());
                }
            }
        }
        for d in touched {
            sync_dir(&d)?;
        }
    }
    Ok(dropped)
}

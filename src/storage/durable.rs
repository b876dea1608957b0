//! Directories that survive a crash: created with mode 0700, and fsynced
//! after an entry in them is created, renamed or removed (a rename is
//! durable only once its directory is).

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::StoreError;

/// Makes sure `dir` is a directory, creating it (and its parents) with mode
/// 0700 if it is missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
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

/// Fsyncs a directory, so what was created, renamed or removed in it
/// survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            action: "fsync",
            path: dir.to_owned(),
            source,
        })
}

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

/// Replaces `path` with `bytes`, mode 0600, so that a crash at any instant
/// leaves the old file or the new one: a temporary file beside it is
/// written and fsynced, renamed over it, and the directory fsynced.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |action: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| StoreError::Io {
            action,
            path: p,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    sync_dir(dir)
}

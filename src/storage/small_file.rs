//! Reading the store's small files (keyrings, the development master key)
//! without trusting what sits at their path: a symbolic link is not
//! followed, a FIFO or device never blocks the reader (who may hold the
//! store's lock), and a file larger than its limit is refused unread.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug)]
pub(crate) enum SmallFileError {
    /// The path holds something that is not a plain file of sane size.
    Refused(String),
    /// The OS failed the read.
    Io(std::io::Error),
}

/// Opens `path` for reading without following a symbolic link and without
/// blocking on a FIFO, and checks it is a regular file.
pub(crate) fn open_regular(path: &Path) -> Result<Option<File>, SmallFileError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(SmallFileError::Refused(
                "is a symbolic link; signet reads only regular files".into(),
            ));
        }
        Err(e) => return Err(SmallFileError::Io(e)),
    };
    let meta = file.metadata().map_err(SmallFileError::Io)?;
    if !meta.file_type().is_file() {
        return Err(SmallFileError::Refused(
            "is not a regular file (a FIFO, device or directory?)".into(),
        ));
    }
    Ok(Some(file))
}

/// The whole content of the regular file at `path`, at most `max` bytes;
/// `None` if there is no file.
pub(crate) fn read_small(path: &Path, max: u64) -> Result<Option<Vec<u8>>, SmallFileError> {
    let Some(file) = open_regular(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(SmallFileError::Io)?;
    if bytes.len() as u64 > max {
        return Err(SmallFileError::Refused(format!(
            "is larger than {max} bytes, more than signet ever writes there"
        )));
    }
    Ok(Some(bytes))
}

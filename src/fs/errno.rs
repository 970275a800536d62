//! The one place an error becomes the errno a program sees.
//!
//! - A name the origin does not have (404, 410, a name that cannot be a URL,
//!   offline and not cached) is ENOENT; a refusal (401, 403) is EACCES.
//! - A blob inode whose body left the store is ESTALE: the kernel then looks
//!   the path up again and finds the file anew, where ENOENT would have made
//!   it vanish until its entry expired.
//! - A full cache disk is ENOSPC; every other failure of the origin, the
//!   download or the disk is EIO, logged with its cause.
//! - A control-file write is EINVAL only when the write itself is malformed.

use fuser::Errno;

use crate::cache::{CacheError, DownloadError};
use crate::control::commands::CommandError;

/// What a reader sees for a cache error.
pub fn errno(error: &CacheError) -> Errno {
    match error {
        CacheError::NotFound | CacheError::Name(_) | CacheError::Offline { .. } => Errno::ENOENT,
        CacheError::Gone { .. } => Errno::ESTALE,
        CacheError::Forbidden { .. } => Errno::EACCES,
        CacheError::Abandoned { .. } => Errno::EINTR,
        error if error.is_disk_full() => {
            tracing::warn!("{error}");
            Errno::ENOSPC
        }
        // Logged once where the download failed, not again by each read.
        CacheError::Download(DownloadError::Failed { .. }) => {
            tracing::debug!("{error}");
            Errno::EIO
        }
        CacheError::Status { .. }
        | CacheError::SharedFailure { .. }
        | CacheError::Origin(_)
        | CacheError::Download(_)
        | CacheError::Part(_)
        | CacheError::Store(_)
        | CacheError::Panic { .. }
        | CacheError::Io(_) => {
            tracing::warn!("{error}");
            Errno::EIO
        }
    }
}

/// What the writer of a control file sees when the write fails.
pub fn of_command(error: &CommandError) -> Errno {
    match error {
        CommandError::Pattern(_) | CommandError::NotACommand(_) => Errno::EINVAL,
        CommandError::Cache(error) if error.is_disk_full() => Errno::ENOSPC,
        CommandError::Cache(_) => Errno::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::pattern::PatternError;
    use crate::store::{IndexError, StoreError};

    #[test]
    fn only_a_malformed_write_is_einval() {
        assert_eq!(
            of_command(&CommandError::Pattern(PatternError::Empty)),
            Errno::EINVAL
        );
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            of_command(&CommandError::Cache(CacheError::Io(full))),
            Errno::ENOSPC
        );
        let corrupt = IndexError::Corrupt {
            key: "k".into(),
            message: "bad".into(),
        };
        assert_eq!(
            of_command(&CommandError::Cache(CacheError::Store(StoreError::Index(
                corrupt
            )))),
            Errno::EIO
        );
    }

    #[test]
    fn a_vanished_body_is_estale_and_a_missing_file_enoent() {
        assert_eq!(errno(&CacheError::Gone { ino: 1 }), Errno::ESTALE);
        assert_eq!(errno(&CacheError::NotFound), Errno::ENOENT);
        let blob_full = StoreError::Blob(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(errno(&CacheError::Store(blob_full)), Errno::ENOSPC);
    }
}

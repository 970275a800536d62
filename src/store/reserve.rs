//! A few megabytes of disk kept back, so the cache can always free space.
//!
//! Freeing space takes an index write first (the entries go before their
//! files, so a crash never leaves an entry without its blob), and the index
//! cannot write to a disk that is 100% full: RocksDB stops all writes once
//! its log hits ENOSPC. The reserve file holds [`RESERVE_BYTES`] of real
//! blocks. When an eviction finds the disk (nearly) full, the reserve goes
//! first, so the eviction's index write has room; once the eviction freed
//! space, the reserve is taken back.

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

/// What the reserve holds back.
pub const RESERVE_BYTES: u64 = 8 << 20;

pub struct Reserve {
    path: PathBuf,
}

impl Reserve {
    /// The reserve file in `cache_dir`, made now if the disk has room.
    pub fn open(cache_dir: &std::path::Path) -> Reserve {
        let reserve = Reserve {
            path: cache_dir.join("reserve"),
        };
        reserve.restore();
        reserve
    }

    /// Gives the reserved space back to the disk. Returns whether it did.
    pub fn release(&self) -> bool {
        match fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::info!(
                    "the cache disk is full; releasing the {RESERVE_BYTES}-byte reserve"
                );
                true
            }
            Err(_) => false,
        }
    }

    /// Takes the reserve back if it is not held; best effort.
    pub fn restore(&self) {
        if self.is_held() {
            return;
        }
        if let Err(error) = self.allocate() {
            let _ = fs::remove_file(&self.path);
            tracing::debug!("cannot hold the disk reserve yet: {error}");
        }
    }

    pub fn is_held(&self) -> bool {
        fs::metadata(&self.path).is_ok_and(|m| m.len() == RESERVE_BYTES)
    }

    fn allocate(&self) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)?;
        let len = i64::try_from(RESERVE_BYTES).map_err(io::Error::other)?;
        nix::fcntl::posix_fallocate(&file, 0, len).map_err(io::Error::from)?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_held_released_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = Reserve::open(dir.path());
        assert!(reserve.is_held());
        assert!(reserve.release());
        assert!(!reserve.is_held());
        assert!(!reserve.release(), "released twice");
        reserve.restore();
        assert!(reserve.is_held());
    }
}

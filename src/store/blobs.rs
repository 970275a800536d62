//! Finished bodies as read-only files named by their blake3 hash, and the
//! temporary files they are streamed into.
//!
//! A body is written to `tmp/` while it downloads, hashed as the bytes arrive,
//! and renamed to `blobs/ab/cd/<hex>` once whole. A file under `blobs/` is
//! therefore always whole and matches its name (for a crash of the daemon;
//! power loss is covered by [`super::durability`]); `tmp/` is emptied at start.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory pair `blobs/` and `tmp/` of one cache dir.
#[derive(Debug)]
pub struct BlobDir {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl BlobDir {
    /// Creates both directories and removes any download a previous run left behind.
    pub fn open(cache_dir: &Path) -> io::Result<BlobDir> {
        let blobs = cache_dir.join("blobs");
        let tmp = cache_dir.join("tmp");
        fs::create_dir_all(&blobs)?;
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(BlobDir { blobs, tmp })
    }

    /// `blobs/ab/cd/abcd…`: two levels keep directories small with millions of blobs.
    pub fn path(&self, hash: &blake3::Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.blobs
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex.as_str())
    }

    /// Every file under `blobs/` (two directory levels deep).
    pub fn all_files(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        self.each_file(|path| {
            files.push(path);
            Ok::<_, io::Error>(ControlFlow::Continue(()))
        })?;
        Ok(files)
    }

    /// Calls `visit` with every file under `blobs/`, one shard directory at a
    /// time, until it says to stop or fails.
    pub fn each_file<E: From<io::Error>>(
        &self,
        mut visit: impl FnMut(PathBuf) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        for first in fs::read_dir(&self.blobs)? {
            let first = first?.path();
            if !first.is_dir() {
                if visit(first)?.is_break() {
                    return Ok(());
                }
                continue;
            }
            for second in fs::read_dir(&first)? {
                let second = second?.path();
                let entries = if second.is_dir() {
                    fs::read_dir(&second)?
                        .map(|entry| entry.map(|e| e.path()))
                        .collect::<io::Result<Vec<_>>>()?
                } else {
                    vec![second]
                };
                for path in entries {
                    if visit(path)?.is_break() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// A new, empty temporary file for one download.
    pub fn create_partial(&self) -> io::Result<PartialBlob> {
        let file = tempfile::Builder::new()
            .prefix("dl-")
            .tempfile_in(&self.tmp)?;
        let (file, path) = file.keep().map_err(|e| e.error)?;
        Ok(PartialBlob {
            file: Arc::new(file),
            path,
            hasher: blake3::Hasher::new(),
            len: 0,
            kept: false,
        })
    }

    /// Makes a finished download permanent under its hash: renamed into
    /// place, read-only for its owner. No fsync here: that is the syncer's
    /// job, off the read path. Returns the hash and whether the blob was
    /// already stored (then the download is simply dropped).
    pub fn persist(&self, mut partial: PartialBlob) -> io::Result<(blake3::Hash, bool)> {
        let hash = partial.hasher.finalize();
        let target = self.path(&hash);
        if target.exists() {
            return Ok((hash, true));
        }
        let parent = target.parent().unwrap_or(&self.blobs);
        fs::create_dir_all(parent)?;
        fs::set_permissions(&partial.path, fs::Permissions::from_mode(0o400))?;
        fs::rename(&partial.path, &target)?;
        partial.kept = true;
        Ok((hash, false))
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, hash: &blake3::Hash) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(self.path(hash))
            .or_else(|_| File::open(self.path(hash)))
    }

    /// Deletes a blob's file; a reader holding it open keeps its bytes.
    /// A missing file is not an error.
    pub fn remove(&self, hash: &blake3::Hash) -> io::Result<()> {
        match fs::remove_file(self.path(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A body being downloaded into `tmp/`: appended to by one writer, read at any
/// offset below `len()` by any number of readers through [`PartialBlob::file`].
/// How much of a partial blob [`PartialBlob::absorb`] reads at once.
const ABSORB_CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub struct PartialBlob {
    file: Arc<File>,
    path: PathBuf,
    hasher: blake3::Hasher,
    len: u64,
    kept: bool,
}

impl PartialBlob {
    /// Appends bytes at the end and feeds them to the hash.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.len)?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Takes the bytes already in the file from `len()` to `end` (written
    /// there by range requests) as the next ones: hashes them, moves the end.
    pub fn absorb(&mut self, end: u64) -> io::Result<()> {
        let mut buf = vec![0u8; ABSORB_CHUNK_BYTES.min((end.saturating_sub(self.len)) as usize)];
        while self.len < end {
            let n = (end - self.len).min(buf.len() as u64) as usize;
            self.file.read_exact_at(&mut buf[..n], self.len)?;
            self.hasher.update(&buf[..n]);
            self.len += n as u64;
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The blake3 of the bytes so far.
    pub fn hash(&self) -> blake3::Hash {
        self.hasher.finalize()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file being written; it stays readable after it is renamed into `blobs/`.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }
}

impl Drop for PartialBlob {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_blob_persists_under_its_hash_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(dir.path()).unwrap();
        let mut partial = blobs.create_partial().unwrap();
        partial.append(b"hello ").unwrap();
        partial.append(b"world").unwrap();
        let file = partial.file();
        let (hash, existed) = blobs.persist(partial).unwrap();
        assert!(!existed);
        assert_eq!(hash, blake3::hash(b"hello world"));
        assert_eq!(fs::read(blobs.path(&hash)).unwrap(), b"hello world");
        let mut buf = [0u8; 5];
        file.read_exact_at(&mut buf, 6).unwrap();
        assert_eq!(&buf, b"world");

        let mut again = blobs.create_partial().unwrap();
        again.append(b"hello world").unwrap();
        let (_, existed) = blobs.persist(again).unwrap();
        assert!(existed);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn abandoned_download_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(dir.path()).unwrap();
        let mut partial = blobs.create_partial().unwrap();
        partial.append(b"cut sh").unwrap();
        drop(partial);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}

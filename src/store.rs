//! The disk: content-addressed blob files ([`blobs`]) and the RocksDB index
//! ([`index`]), kept consistent by one commit protocol.
//!
//! Commit: stream into `tmp/`, hashing as bytes arrive; rename into
//! `blobs/`; then one RocksDB write batch points the URL at the blob. A crash
//! of the daemon before the batch leaves a blob no record names (harmless:
//! the next mount removes it); a crash never leaves a record whose blob is
//! missing. Power loss: fsyncs run in the background ([`durability`]), and
//! a store that was not closed cleanly re-checks the blobs committed after
//! the last recorded sync before it opens.
//!
//! ```text
//! CACHE_DIR/
//!   VERSION   on-disk format version
//!   lock      flock()ed by the live mount, holds its pid
//!   index/    RocksDB
//!   blobs/    finished bodies, blobs/ab/cd/<blake3 hex>
//!   tmp/      in-flight downloads, emptied at start
//! ```

pub mod blobs;
pub mod durability;
pub mod index;
mod reserve;
pub mod verify;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use blobs::{BlobDir, PartialBlob};
use durability::{Durability, Syncer};
pub use index::{
    BLOB_INO_BIT, BlobRecord, Index, IndexError, Linked, NewBody, Removed, Totals, UrlRecord,
};
use reserve::{RESERVE_BYTES, Reserve};

/// The on-disk format this build reads and writes. 2 added the index's
/// `lru` and `by_blob` families.
pub const FORMAT_VERSION: u32 = 2;
/// An older format this build upgrades in place when it opens it: the index
/// builds the families it lacks, then VERSION says the new format.
const UPGRADES_FROM: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cache dir {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "cache dir {path} is used by another fetchfs mount (pid {pid}); unmount it or pass --cache-dir"
    )]
    Busy { path: PathBuf, pid: String },
    #[error(
        "cache dir {path} has on-disk format {found}, this fetchfs uses {FORMAT_VERSION}; pass another --cache-dir or remove it"
    )]
    Version { path: PathBuf, found: String },
    #[error(
        "cache dir {path} belongs to uid {owner}, not to you (uid {me}); use a cache dir of your own"
    )]
    NotOwner { path: PathBuf, owner: u32, me: u32 },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("blob store: {0}")]
    Blob(#[from] io::Error),
}

/// The cache dir's file system, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total: u64,
    /// Free for this (unprivileged) user.
    pub free: u64,
}

/// One cache dir, opened by exactly one live mount.
pub struct Store {
    pub blobs: BlobDir,
    pub index: Arc<Index>,
    durability: Arc<Durability>,
    syncer: Option<Syncer>,
    reserve: Reserve,
    /// Serialises placing blobs with evicting them.
    placement: parking_lot::Mutex<()>,
    cache_dir: PathBuf,
    /// Holds the flock for as long as the store is open.
    _lock: File,
}

impl Store {
    pub fn open(cache_dir: &Path) -> Result<Store, StoreError> {
        let io_err = |source| StoreError::Io {
            path: cache_dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(cache_dir).map_err(io_err)?;
        restrict_to_owner(cache_dir)?;
        let lock = lock_cache_dir(cache_dir)?;
        let found = check_version(cache_dir)?;
        let blobs = BlobDir::open(cache_dir).map_err(io_err)?;
        let index = Arc::new(Index::open(&cache_dir.join("index"))?);
        if found != FORMAT_VERSION {
            write_version(cache_dir)?;
        }
        let clean = take_clean_mark(cache_dir).map_err(io_err)?;
        let synced = index.synced()?;
        let (durability, syncer) = Durability::start(Arc::clone(&index), synced).map_err(io_err)?;
        let store = Store {
            blobs,
            index,
            durability,
            syncer: Some(syncer),
            reserve: Reserve::open(cache_dir),
            placement: parking_lot::Mutex::new(()),
            cache_dir: cache_dir.to_path_buf(),
            _lock: lock,
        };
        if !clean {
            store.check_unsynced(synced)?;
        }
        Ok(store)
    }

    /// After an unclean end (a crash, a power loss): the blobs committed
    /// after the last recorded sync may have lost data. Each is re-hashed;
    /// a bad one is dropped with its entries, to be fetched again.
    fn check_unsynced(&self, synced: u64) -> Result<(), StoreError> {
        let suspects = self.index.blobs_after(synced)?;
        let mut bad = HashSet::new();
        for (hash, record) in &suspects {
            if self.check_blob(hash, record.size)?.is_some() {
                bad.insert(*hash);
            } else {
                // Whole, but not known to be on the platter: the syncer
                // makes it so, and the next stop can be clean again. (Left
                // out, a mount that commits nothing never got back to a
                // clean stop, and each later mount checked them again.)
                self.durability.committed(self.blobs.path(hash), record.seq);
            }
        }
        if !bad.is_empty() {
            tracing::warn!(
                "{} blob(s) committed before an unclean stop were damaged; they will be fetched again",
                bad.len()
            );
            self.index.drop_blobs(&bad)?;
            for hash in &bad {
                self.blobs.remove(hash)?;
            }
        }
        Ok(())
    }

    /// Waits until every commit so far survives a power loss.
    pub fn wait_durable(&self, hash: &blake3::Hash) -> Result<(), StoreError> {
        let Some(record) = self.index.blob(hash)? else {
            return Ok(());
        };
        self.durability
            .wait(record.seq)
            .map_err(|message| StoreError::Blob(io::Error::other(message)))
    }

    /// Deletes files under `blobs/` that no record names (left by a crash
    /// between placing a blob and indexing it), one at a time under the
    /// placement lock, so a commit in progress is never touched. Returns how
    /// many went. Stops early once `stop` is set (the mount is ending).
    pub fn remove_strays(&self, stop: &AtomicBool) -> Result<u64, StoreError> {
        let mut removed = 0;
        self.blobs.each_file(|path| {
            if stop.load(Ordering::Relaxed) {
                return Ok(ControlFlow::Break(()));
            }
            if self.remove_if_stray(&path)? {
                removed += 1;
            }
            Ok::<_, StoreError>(ControlFlow::Continue(()))
        })?;
        Ok(removed)
    }

    /// Deletes `path` if no index record names it; returns whether it did.
    fn remove_if_stray(&self, path: &Path) -> Result<bool, StoreError> {
        let hash = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| blake3::Hash::from_hex(name).ok());
        let _placing = self.placement.lock();
        let stray = match hash {
            Some(hash) => self.index.blob(&hash)?.is_none(),
            None => true,
        };
        if !stray {
            return Ok(false);
        }
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(true),
        }
    }

    /// Makes a finished download permanent and points `url` at it; deletes the
    /// body the URL pointed at before if nothing else does.
    /// `mtime` (seconds since the epoch) applies if the body is new to the store.
    pub fn commit(
        &self,
        partial: PartialBlob,
        url: &str,
        mtime: u64,
        meta: serde_json::Value,
    ) -> Result<(blake3::Hash, BlobRecord), StoreError> {
        let size = partial.len();
        // Placing the file and linking it are one step for eviction: it never
        // deletes a blob between "already stored" and the new link.
        let _placing = self.placement.lock();
        let (hash, existed) = self.blobs.persist(partial)?;
        let linked = self
            .index
            .link(url, NewBody { hash, size, mtime }, meta, unix_now_ms())?;
        if !existed {
            self.durability
                .committed(self.blobs.path(&hash), linked.blob.seq);
        }
        self.delete_orphan(linked.orphaned);
        Ok((hash, linked.blob))
    }

    /// Drops these URLs' records in one batch, and the bodies nothing points
    /// at any more. Returns how many records there were.
    pub fn remove_urls(&self, urls: &[String]) -> Result<u64, StoreError> {
        // Under the placement lock: a commit that found a body already stored
        // must link to it before a removal can delete it.
        let _placing = self.placement.lock();
        let released = self.release_reserve_if_full();
        let removed = self.index.remove_urls(urls)?;
        for orphan in removed.orphaned {
            self.delete_orphan(Some(orphan));
        }
        if released {
            self.reserve.restore();
        }
        Ok(removed.records)
    }

    /// Evicts least recently used bodies, and the entries pointing at them,
    /// until the store holds at most `target` bytes; `keep` (bodies with open
    /// readers) are never chosen. Returns how many bodies went.
    pub fn evict_to(&self, target: u64, keep: &HashSet<blake3::Hash>) -> Result<u64, StoreError> {
        let _placing = self.placement.lock();
        let released = self.release_reserve_if_full();
        let evicted = self.evict_lru(target, keep);
        if released {
            self.reserve.restore();
        }
        evicted
    }

    fn evict_lru(&self, target: u64, keep: &HashSet<blake3::Hash>) -> Result<u64, StoreError> {
        let stored = self.index.totals().cache_bytes;
        if stored <= target {
            return Ok(0);
        }
        // Opens noted but not written yet would look older than they are.
        self.index.flush_touches()?;
        let mut excess = stored - target;
        let mut victims = HashSet::new();
        // Reads the lru family only as far as the bodies it chooses.
        for item in self.index.least_recently_used() {
            if excess == 0 {
                break;
            }
            let (hash, record) = item?;
            if keep.contains(&hash) {
                continue;
            }
            excess = excess.saturating_sub(record.size);
            victims.insert(hash);
        }
        self.index.drop_blobs(&victims)?;
        for hash in &victims {
            if let Err(e) = self.blobs.remove(hash) {
                tracing::warn!(blob = %hash, "cannot delete evicted blob: {e}");
            }
        }
        Ok(victims.len() as u64)
    }

    /// The size of the cache dir's file system and the bytes still free in it.
    // The statvfs field types differ by platform; on some they are u64 already.
    #[allow(clippy::useless_conversion)]
    pub fn disk_space(&self) -> io::Result<DiskSpace> {
        let stats = nix::sys::statvfs::statvfs(&self.cache_dir).map_err(io::Error::from)?;
        let block = u64::from(stats.fragment_size());
        Ok(DiskSpace {
            total: u64::from(stats.blocks()).saturating_mul(block),
            free: u64::from(stats.blocks_available()).saturating_mul(block),
        })
    }

    /// Before a write that frees space: a disk with less than the reserve
    /// left gets the reserve back, so the index can write. Returns whether
    /// the reserve was released (to take it back after).
    fn release_reserve_if_full(&self) -> bool {
        let full = self
            .disk_space()
            .map_or(true, |space| space.free < RESERVE_BYTES);
        full && self.reserve.release()
    }

    fn delete_orphan(&self, orphaned: Option<(blake3::Hash, BlobRecord)>) {
        if let Some((hash, _)) = orphaned
            && let Err(e) = self.blobs.remove(&hash)
        {
            tracing::warn!(blob = %hash, "cannot delete unreferenced blob: {e}");
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(error) = self.index.flush_touches() {
            tracing::warn!("writing the last access times: {error}");
        }
        // The last round of fsyncs, then the mark that says none is missing.
        drop(self.syncer.take());
        if let Err(error) = self.index.flush_memtables() {
            tracing::warn!("writing the index's memtables at close: {error}");
        }
        let (synced, last) = (self.durability.synced(), self.index.last_seq());
        if synced < last {
            tracing::info!(
                "commits {}..={last} are not known to be durable: the next mount checks them",
                synced + 1
            );
        } else if let Err(error) = self
            .index
            .sync_log()
            .map_err(io::Error::other)
            .and_then(|()| write_no_follow(&self.cache_dir.join(CLEAN_MARK), b""))
        {
            tracing::warn!("marking the cache dir as closed cleanly: {error}");
        }
    }
}

/// Refuses a cache dir that belongs to another user (its files could be
/// planted), and makes ours the owner's alone (0700).
fn restrict_to_owner(cache_dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io_err = |source| StoreError::Io {
        path: cache_dir.to_path_buf(),
        source,
    };
    let meta = fs::symlink_metadata(cache_dir).map_err(io_err)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StoreError::NotOwner {
            path: cache_dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(cache_dir, fs::Permissions::from_mode(0o700)).map_err(io_err)?;
    }
    Ok(())
}

/// Present while the store is closed cleanly, with every commit durable.
const CLEAN_MARK: &str = "closed-cleanly";

/// Whether the store was closed cleanly last time; the mark goes, so a crash
/// from now on is noticed at the next open.
fn take_clean_mark(cache_dir: &Path) -> io::Result<bool> {
    match fs::remove_file(cache_dir.join(CLEAN_MARK)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Milliseconds since the epoch: open times must order a burst of reads.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock_cache_dir(cache_dir: &Path) -> Result<File, StoreError> {
    let path = cache_dir.join("lock");
    let io_err = |source| StoreError::Io {
        path: cache_dir.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| not_a_symlink(&path, source))
        .map_err(io_err)?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        return Err(StoreError::Busy {
            path: cache_dir.to_path_buf(),
            pid: pid.trim().to_string(),
        });
    }
    file.set_len(0).map_err(io_err)?;
    write!(file, "{}", std::process::id()).map_err(io_err)?;
    Ok(file)
}

/// The format the cache dir is in: this build's, or one it upgrades (a new
/// cache dir is this build's). Any other is refused.
fn check_version(cache_dir: &Path) -> Result<u32, StoreError> {
    let path = cache_dir.join("VERSION");
    match read_no_follow(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(found @ (FORMAT_VERSION | UPGRADES_FROM)) => Ok(found),
            _ => Err(StoreError::Version {
                path: cache_dir.to_path_buf(),
                found: text.trim().to_string(),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_version(cache_dir)?;
            Ok(FORMAT_VERSION)
        }
        Err(source) => Err(StoreError::Io {
            path: cache_dir.to_path_buf(),
            source: not_a_symlink(&path, source),
        }),
    }
}

fn write_version(cache_dir: &Path) -> Result<(), StoreError> {
    write_no_follow(
        &cache_dir.join("VERSION"),
        format!("{FORMAT_VERSION}\n").as_bytes(),
    )
    .map_err(|source| StoreError::Io {
        path: cache_dir.to_path_buf(),
        source,
    })
}

/// Reads a file of the cache dir, refusing a symlink in its place.
fn read_no_follow(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Writes a file of the cache dir, refusing to follow a symlink in its
/// place: a shared cache dir must not let another user aim fetchfs's writes
/// at a file of theirs (review finding 17).
pub(crate) fn write_no_follow(path: &Path, bytes: &[u8]) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| not_a_symlink(path, source))?
        .write_all(bytes)
}

/// ELOOP from O_NOFOLLOW, said plainly.
fn not_a_symlink(path: &Path, error: io::Error) -> io::Error {
    if error.raw_os_error() == Some(libc::ELOOP) {
        return io::Error::other(format!(
            "{} is a symbolic link; fetchfs does not follow links in its cache dir",
            path.display()
        ));
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn second_open_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _store = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
    }

    #[test]
    fn eviction_drops_the_least_recently_used_and_spares_kept_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut hashes = Vec::new();
        for (i, body) in [b"aaaa", b"bbbb", b"cccc"].iter().enumerate() {
            let (hash, _) = commit_body(&store, &format!("http://h/{i}"), *body);
            store.index.touch(&hash, 100 + i as u64).unwrap();
            hashes.push(hash);
        }
        let keep = HashSet::from([hashes[0]]);
        assert_eq!(store.evict_to(8, &keep).unwrap(), 1);
        assert!(
            store.blobs.path(&hashes[0]).exists(),
            "kept body was evicted"
        );
        assert!(
            !store.blobs.path(&hashes[1]).exists(),
            "the least recently used unkept body stays"
        );
        assert!(store.index.url("http://h/1").unwrap().is_none());
        assert_eq!(store.index.totals().cache_bytes, 8);
        assert_eq!(store.index.totals().entries, 2);
    }

    /// Eviction walks the lru family in access order, passes over kept
    /// bodies, and stops once it has chosen enough bytes.
    #[test]
    fn eviction_takes_the_least_recently_touched_bodies_in_order_and_skips_kept_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hashes = commit_bodies(&store, 6);
        // Access order, oldest first: 3, 0, 5, 1, 4, 2.
        for (body, at) in [(3, 10), (0, 20), (5, 30), (1, 40), (4, 50), (2, 60)] {
            store.index.touch(&hashes[body], at).unwrap();
        }
        let keep = HashSet::from([hashes[0]]);
        // 9 of 24 bytes to go: three 4-byte bodies, 0 spared.
        assert_eq!(store.evict_to(15, &keep).unwrap(), 3);
        for (body, evicted) in [
            (0, false),
            (1, true),
            (2, false),
            (3, true),
            (4, false),
            (5, true),
        ] {
            let url = format!("http://h/{body}");
            assert_eq!(
                store.index.url(&url).unwrap().is_none(),
                evicted,
                "body {body}"
            );
            assert_eq!(
                !store.blobs.path(&hashes[body]).exists(),
                evicted,
                "body {body}"
            );
        }
        assert_eq!(store.index.totals().cache_bytes, 12);
        assert_eq!(store.index.derived_mismatches().unwrap(), []);
    }

    /// Stores `body` as the body of `url`.
    fn commit_body(store: &Store, url: &str, body: &[u8]) -> (blake3::Hash, BlobRecord) {
        let mut partial = store.blobs.create_partial().unwrap();
        partial.append(body).unwrap();
        store
            .commit(partial, url, 0, serde_json::json!({}))
            .unwrap()
    }

    fn commit_bodies(store: &Store, count: u8) -> Vec<blake3::Hash> {
        (0..count)
            .map(|i| commit_body(store, &format!("http://h/{i}"), &[i; 4]).0)
            .collect()
    }

    /// Opens are noted in memory, not written: eviction writes them before
    /// it chooses.
    #[test]
    fn touches_are_visible_to_eviction_once_batched() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hashes = commit_bodies(&store, 3);
        // Stored in the order 0, 1, 2; opened since in the order 2, 0, 1.
        let now = unix_now_ms();
        // The syncer's next flush is a second away: eviction writes these.
        store.index.flush_touches().unwrap();
        for (body, later) in [(2, 1_000), (0, 2_000), (1, 3_000)] {
            store.index.touch(&hashes[body], now + later).unwrap();
        }
        assert_eq!(store.evict_to(8, &HashSet::new()).unwrap(), 1);
        assert!(store.index.url("http://h/2").unwrap().is_none());
        assert!(store.index.url("http://h/0").unwrap().is_some());
        let record = store.index.blob(&hashes[1]).unwrap().unwrap();
        assert_eq!(record.last_access_ms, now + 3_000);
    }

    /// Nothing else writes them meanwhile: the syncer does, about once a
    /// second.
    #[test]
    fn noted_touches_are_written_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hashes = commit_bodies(&store, 1);
        store.index.touch(&hashes[0], 7).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let accessed = || {
            store
                .index
                .blob(&hashes[0])
                .unwrap()
                .unwrap()
                .last_access_ms
        };
        while accessed() != 7 {
            assert!(
                std::time::Instant::now() < deadline,
                "the noted access was not written"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(store.index.derived_mismatches().unwrap(), []);
    }

    #[test]
    fn touches_noted_before_a_clean_close_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let hashes = {
            let store = Store::open(dir.path()).unwrap();
            let hashes = commit_bodies(&store, 1);
            // The syncer's next flush is a second away: closing writes this.
            store.index.flush_touches().unwrap();
            store.index.touch(&hashes[0], 7).unwrap();
            hashes
        };
        let store = Store::open(dir.path()).unwrap();
        let record = store.index.blob(&hashes[0]).unwrap().unwrap();
        assert_eq!(record.last_access_ms, 7);
        assert_eq!(store.index.derived_mismatches().unwrap(), []);
    }

    #[test]
    fn a_removal_racing_a_commit_of_the_same_body_never_deletes_a_linked_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let body = b"the same body under two URLs";
        let threads: Vec<_> = ["http://h/a", "http://h/b"]
            .into_iter()
            .map(|url| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for round in 0..2000 {
                        let (hash, _) = commit_body(&store, url, body);
                        // This URL holds a reference: nobody may delete the file now.
                        assert!(
                            store.blobs.path(&hash).exists(),
                            "round {round}: {url} points at a deleted blob"
                        );
                        store.remove_urls(&[url.to_string()]).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(store.index.totals(), Totals::default());
    }

    /// A clean close leaves the index no log to replay at the next open.
    #[test]
    fn a_clean_close_leaves_no_log_to_replay() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for i in 0..200 {
                commit_body(
                    &store,
                    &format!("http://h/{i}"),
                    format!("body {i}").as_bytes(),
                );
            }
        }
        let logged: u64 = fs::read_dir(dir.path().join("index"))
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
            .map(|entry| entry.metadata().unwrap().len())
            .sum();
        assert_eq!(logged, 0, "bytes of log left for the next open to replay");
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.index.totals().entries, 200);
    }

    /// Review finding 12, the power-loss level: blobs committed after the
    /// last recorded sync are re-checked after an unclean stop, and one whose
    /// data did not reach the disk is dropped (to be fetched again).
    #[test]
    fn after_an_unclean_stop_unsynced_blobs_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (synced_hash, synced_record) = {
            let store = Store::open(dir.path()).unwrap();
            let (hash, record) = commit_body(&store, "http://h/synced", b"made durable");
            store.wait_durable(&hash).unwrap();
            commit_body(
                &store,
                "http://h/late",
                b"committed just before the power went",
            );
            (hash, record)
        };
        {
            // The power went before the second commit was synced.
            let store = Store::open(dir.path()).unwrap();
            store.index.record_synced(synced_record.seq).unwrap();
        }
        fs::remove_file(dir.path().join(CLEAN_MARK)).unwrap();
        let late = blake3::hash(b"committed just before the power went");
        let path = dir.path().join("blobs").join(&late.to_hex()[0..2]);
        let path = path.join(&late.to_hex()[2..4]).join(late.to_hex().as_str());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"\0\0\0").unwrap();

        let store = Store::open(dir.path()).unwrap();
        assert!(
            store.index.url("http://h/late").unwrap().is_none(),
            "a torn blob kept"
        );
        assert!(!path.exists());
        assert!(store.index.url("http://h/synced").unwrap().is_some());
        assert!(store.blobs.path(&synced_hash).exists());
    }

    /// Whole blobs found after an unclean stop are made durable by the
    /// mount that checked them, so its stop is clean even if it commits
    /// nothing, and the mount after it checks nothing.
    #[test]
    fn blobs_checked_after_an_unclean_stop_are_synced_and_the_next_stop_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            commit_body(&store, "http://h/a", b"whole but never synced");
        }
        {
            // As if the stop had come before the syncer got to it.
            let store = Store::open(dir.path()).unwrap();
            store.index.record_synced(0).unwrap();
        }
        fs::remove_file(dir.path().join(CLEAN_MARK)).unwrap();

        drop(Store::open(dir.path()).unwrap());
        assert!(
            dir.path().join(CLEAN_MARK).exists(),
            "a mount that checked the blobs and committed nothing did not stop cleanly"
        );
        let store = Store::open(dir.path()).unwrap();
        assert!(store.index.url("http://h/a").unwrap().is_some());
    }

    /// Format 1 had no `lru` and `by_blob` families: it is upgraded in place
    /// and marked 2, so an older fetchfs refuses it with a clear message
    /// instead of a RocksDB error about families it does not know.
    #[test]
    fn format_1_is_upgraded_in_place_and_marked_2() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("VERSION"), "1\n").unwrap();
        drop(Store::open(dir.path()).expect("a format 1 cache dir opens"));
        let version = fs::read_to_string(dir.path().join("VERSION")).unwrap();
        assert_eq!(version.trim(), FORMAT_VERSION.to_string());
        assert_eq!(FORMAT_VERSION, 2);
    }

    #[test]
    fn wrong_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("VERSION"), "99\n").unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Version { .. })
        ));
    }

    #[test]
    fn commit_replaces_and_deletes_the_old_body() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let write = |bytes: &[u8]| {
            let mut partial = store.blobs.create_partial().unwrap();
            partial.append(bytes).unwrap();
            partial
        };
        let (old, _) = store
            .commit(write(b"v1"), "http://h/f", 0, serde_json::json!({}))
            .unwrap();
        let (new, record) = store
            .commit(write(b"v2"), "http://h/f", 0, serde_json::json!({}))
            .unwrap();
        assert_eq!(record.refs, 1);
        assert!(!store.blobs.path(&old).exists());
        assert!(store.blobs.path(&new).exists());
        assert_eq!(store.remove_urls(&["http://h/f".into()]).unwrap(), 1);
        assert!(!store.blobs.path(&new).exists());
    }
}

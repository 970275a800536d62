//! Eviction: bodies leave the store because the size cap says so, because the
//! disk is full, or because a user wrote to `.fetchfs/evict`.
//!
//! - The cap evicts the least recently opened bodies first, down to
//!   [`EVICTION_TARGET_PERCENT`] of the cap, so it runs once per few percent
//!   of new data rather than after every download.
//! - A body with an open handle is never chosen: [`OpenBodies`] counts the
//!   handles. A reader whose body is dropped anyway (an explicit `evict`)
//!   keeps reading it through its descriptor, and its attributes stay known.
//! - The order is crash-safe: the index forgets a body in one batch before
//!   its file is deleted, so a crash between the two leaves a stray file
//!   (`verify --repair` removes it), never a record without its blob.
//! - Bodies never fill the disk to the brim: a download checks the free space
//!   as it goes and evicts to keep [`headroom_bytes`] free, because the index
//!   (RocksDB) stops taking writes once its log hits a full disk. A download
//!   that runs out of disk anyway evicts bodies and tries once more.
//! - `evict` and `invalidate` reach the downloads under way too: an evicted
//!   one is not stored, an invalidated one is stored stale.

use serde_json::json;
use std::collections::{HashMap, HashSet};

use super::freshness::EntryMeta;
use super::{Cache, CacheError, StoredFile};
use crate::telemetry::EventKind;

/// Over the cap, eviction goes down to this share of it.
const EVICTION_TARGET_PERCENT: u64 = 95;
/// A download that finds the disk full frees at least this share of the
/// cache (and at least what it still needs) before trying again.
const DISK_FULL_EVICTION_PERCENT: u64 = 10;
/// Free space kept on the cache's disk: a twentieth of it, within these
/// bounds. The floor leaves the index room for its log and a memtable flush.
const MIN_HEADROOM_BYTES: u64 = 16 << 20;
const MAX_HEADROOM_BYTES: u64 = 256 << 20;

/// The free space bodies leave on a disk of `total` bytes.
fn headroom_bytes(total: u64) -> u64 {
    (total / 20).clamp(MIN_HEADROOM_BYTES, MAX_HEADROOM_BYTES)
}

/// Stored bodies with open handles, and their attributes.
#[derive(Default)]
pub struct OpenBodies {
    open: parking_lot::Mutex<HashMap<blake3::Hash, OpenBody>>,
}

struct OpenBody {
    handles: usize,
    stored: StoredFile,
}

impl OpenBodies {
    /// One more handle on `stored`: it is not evicted by the cap until released.
    pub fn register(&self, stored: StoredFile) {
        self.open
            .lock()
            .entry(stored.hash)
            .or_insert(OpenBody { handles: 0, stored })
            .handles += 1;
    }

    /// One handle on `hash` closed.
    pub fn release(&self, hash: &blake3::Hash) {
        let mut open = self.open.lock();
        if let Some(body) = open.get_mut(hash) {
            body.handles -= 1;
            if body.handles == 0 {
                open.remove(hash);
            }
        }
    }

    /// Bodies the cap must spare.
    pub fn kept(&self) -> HashSet<blake3::Hash> {
        self.open.lock().keys().copied().collect()
    }

    /// The attributes of an open body by its inode, even once the index forgot it.
    pub fn by_ino(&self, ino: u64) -> Option<StoredFile> {
        self.open
            .lock()
            .values()
            .find(|body| body.stored.ino == ino)
            .map(|body| body.stored)
    }
}

impl Cache {
    /// Evicts least recently opened bodies once the store is over its cap.
    pub(super) fn enforce_cap(&self) -> Result<(), CacheError> {
        let Some(cap) = self.max_cache_size else {
            return Ok(());
        };
        if self.store.index.totals().cache_bytes <= cap {
            return Ok(());
        }
        let target = cap / 100 * EVICTION_TARGET_PERCENT;
        self.evict_down_to(target, "max_cache_size")
    }

    /// Makes sure the cache's disk has room for `needed` more bytes plus its
    /// headroom, evicting least recently opened bodies if it has not. The
    /// headroom keeps the index able to write (RocksDB stops all writes once
    /// its log hits a full disk), so bodies never fill the disk to the brim.
    /// Returns the headroom.
    pub(super) fn ensure_room(&self, needed: u64) -> Result<u64, CacheError> {
        let space = self.store.disk_space()?;
        let headroom = headroom_bytes(space.total);
        let wanted = needed.saturating_add(headroom);
        if space.free < wanted {
            self.free_disk(wanted - space.free)?;
        }
        Ok(headroom)
    }

    /// The disk filled up anyway (another writer, or a burst of downloads):
    /// frees what is needed plus the headroom, and at least a tenth of the
    /// cache. Returns whether anything was freed.
    pub(super) fn make_room(&self, needed: u64) -> Result<bool, CacheError> {
        let space = self.store.disk_space()?;
        let stored = self.store.index.totals().cache_bytes;
        let share = stored / 100 * DISK_FULL_EVICTION_PERCENT;
        let wanted = needed.saturating_add(headroom_bytes(space.total));
        let before = self.store.index.totals().blobs;
        self.free_disk(wanted.max(share))?;
        Ok(self.store.index.totals().blobs < before)
    }

    /// Evicts least recently opened bodies worth at least `bytes`.
    fn free_disk(&self, bytes: u64) -> Result<(), CacheError> {
        let stored = self.store.index.totals().cache_bytes;
        tracing::info!("the cache disk is nearly full; evicting to free {bytes} bytes");
        self.evict_down_to(stored.saturating_sub(bytes), "disk_full")
    }

    fn evict_down_to(&self, target: u64, reason: &str) -> Result<(), CacheError> {
        let evicted = self.store.evict_to(target, &self.open.kept())?;
        if evicted > 0 {
            self.telemetry.counters.add_evictions(evicted);
            self.telemetry.events.emit(
                EventKind::Evict,
                json!({ "reason": reason, "bodies": evicted }),
            );
        }
        Ok(())
    }

    /// Drops these URLs' entries, and the bodies nothing else points at, in
    /// one index batch; their downloads under way are not stored. A reader
    /// with a body open keeps reading it.
    pub fn evict(&self, urls: &[String]) -> Result<(), CacheError> {
        for url in urls {
            if let Some(download) = self.flights.download(url) {
                download.discard();
            }
        }
        let removed = self.store.remove_urls(urls)?;
        for url in urls {
            self.forget_recent(url);
            self.telemetry.events.emit(
                EventKind::Evict,
                json!({ "url": url, "reason": "requested" }),
            );
        }
        self.telemetry.counters.add_evictions(removed);
        Ok(())
    }

    /// Marks these URLs' entries stale, in one index batch: the next lookup of
    /// each revalidates with the origin. A body still downloading is stored stale.
    pub fn invalidate(&self, urls: &[String]) -> Result<(), CacheError> {
        for url in urls {
            if let Some(download) = self.flights.download(url) {
                download.invalidate();
            }
        }
        let mut changes = Vec::new();
        for url in urls {
            let Some(record) = self.store.index.url(url)? else {
                continue;
            };
            if let Some(mut meta) = EntryMeta::from_json(&record.meta) {
                meta.invalidated = true;
                changes.push((url.clone(), meta.to_json()));
            }
        }
        self.store.index.update_metas(&changes)?;
        for url in urls {
            // A validation that finished just before must not answer for the next lookup.
            self.forget_recent(url);
            self.telemetry
                .events
                .emit(EventKind::Invalidate, json!({ "url": url }));
        }
        Ok(())
    }

    /// URLs with an entry, a download under way, or a remembered 404 whose
    /// URL starts with `prefix`, in order, each once. Reads the index range,
    /// never all of it unless `prefix` is empty.
    pub fn urls_below(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        let mut urls = self.store.index.url_keys_with_prefix(prefix)?;
        urls.extend(
            self.flights
                .downloads_below(prefix)
                .into_iter()
                .map(|download| download.url.clone()),
        );
        urls.extend(self.recent.missing_below(prefix));
        urls.sort_unstable();
        urls.dedup();
        Ok(urls)
    }

    /// Whether `url` has an entry, a download under way or a remembered 404.
    pub fn knows_url(&self, url: &str) -> Result<bool, CacheError> {
        Ok(self.flights.download(url).is_some()
            || self.recent.is_missing(url)
            || self.store.index.url(url)?.is_some())
    }

    fn forget_recent(&self, url: &str) {
        self.recent.forget(url);
        self.directory.forget_file(url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn body(byte: u8, ino: u64) -> StoredFile {
        StoredFile {
            ino,
            hash: blake3::hash(&[byte]),
            size: 1,
            links: 1,
            mtime: SystemTime::UNIX_EPOCH,
            ttl: Duration::ZERO,
            private: false,
        }
    }

    #[test]
    fn headroom_is_a_twentieth_of_the_disk_within_bounds() {
        assert_eq!(headroom_bytes(0), MIN_HEADROOM_BYTES);
        assert_eq!(headroom_bytes(1000 << 20), 50 << 20);
        assert_eq!(headroom_bytes(1 << 40), MAX_HEADROOM_BYTES);
    }

    #[test]
    fn a_body_is_kept_until_its_last_handle_closes() {
        let open = OpenBodies::default();
        let a = body(1, 10);
        open.register(a);
        open.register(a);
        open.release(&a.hash);
        assert!(open.kept().contains(&a.hash));
        open.release(&a.hash);
        assert!(open.kept().is_empty());
        open.release(&a.hash);
        assert!(open.kept().is_empty(), "an extra release is harmless");
    }

    #[test]
    fn an_open_body_keeps_its_attributes_by_inode() {
        let open = OpenBodies::default();
        let a = body(1, 10);
        open.register(a);
        assert_eq!(open.by_ino(10).map(|s| s.hash), Some(a.hash));
        assert!(open.by_ino(11).is_none());
        open.release(&a.hash);
        assert!(open.by_ino(10).is_none());
    }
}

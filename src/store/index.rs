//! The RocksDB index: which URL has which body, and what each body is.
//!
//! Column families:
//! - `urls`: URL string → [`UrlRecord`] (the blob it points at, plus the cache
//!   layer's metadata, opaque here).
//! - `blobs`: 32-byte blake3 hash → [`BlobRecord`] (size, inode number, how many
//!   URLs point at it, last access).
//! - `meta`: `ino/<u64 BE>` → hash, so a blob's inode number resolves after a
//!   remount and never names two blobs; and a few flags of the index itself.
//! - `lru`: access time ++ hash → empty, and `by_blob`: hash ++ URL → empty:
//!   the records again in the orders eviction reads ([`derived`]).
//!
//! Every change that touches more than one record is one write batch, so a
//! crash leaves either the old state or the new one. Access times are the
//! exception: opens are noted in memory and written in batches ([`touches`]).

mod derived;
mod touches;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, IteratorMode,
    Options, WriteBatch,
};
use serde::{Deserialize, Serialize};

pub use derived::DerivedMismatch;
use derived::{CF_BY_BLOB, CF_LRU};
use touches::PendingTouches;
pub use touches::TOUCH_FLUSH_INTERVAL;

const CF_URLS: &str = "urls";
const CF_BLOBS: &str = "blobs";
const CF_META: &str = "meta";
/// The `meta` key set once stored policies hold no credentials.
const SCRUBBED_KEY: &[u8] = b"credentials_scrubbed";
/// The `meta` key of the totals and the last blob sequence number
/// ([`Counted`]), written in every batch that changes them, so that opening
/// the index reads them instead of counting every record.
const TOTALS_KEY: &[u8] = b"totals";
/// The `meta` keys of state the floors above keep here, under this prefix.
const STATE_PREFIX: &[u8] = b"state/";
/// The `meta` key of the last commit made durable.
const SYNCED_KEY: &[u8] = b"synced_seq";
/// The size of each column family's memtable.
const WRITE_BUFFER_BYTES: usize = 4 << 20;
/// The column families the index uses (the default one stays empty).
const FAMILIES: [&str; 5] = [CF_URLS, CF_BLOBS, CF_META, CF_LRU, CF_BY_BLOB];
/// Blob inode numbers have the top bit set; the filesystem's own inodes never do.
pub const BLOB_INO_BIT: u64 = 1 << 63;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("index record for {key} is corrupt: {message}")]
    Corrupt { key: String, message: String },
}

/// What the index knows of one URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlRecord {
    #[serde(with = "hash_hex")]
    pub blob: blake3::Hash,
    pub size: u64,
    /// The cache layer's metadata (response headers, freshness); opaque to the store.
    pub meta: serde_json::Value,
}

/// What the index knows of one stored body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    pub ino: u64,
    /// How many URLs point at this body.
    pub refs: u64,
    /// Milliseconds since the epoch of the last open, for LRU eviction.
    pub last_access_ms: u64,
    /// The body's modification time (seconds since the epoch): the
    /// Last-Modified of the URL that first stored it. One inode, one mtime.
    pub mtime: u64,
    /// Its place in the order of commits, for power-loss durability.
    #[serde(default)]
    pub seq: u64,
}

/// A stored body a URL is about to point at.
#[derive(Debug, Clone, Copy)]
pub struct NewBody {
    pub hash: blake3::Hash,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
}

/// The outcome of pointing a URL at a body.
#[derive(Debug, Clone, Copy)]
pub struct Linked {
    pub blob: BlobRecord,
    /// The body the URL pointed at before, if nothing points at it any more.
    pub orphaned: Option<(blake3::Hash, BlobRecord)>,
}

/// What a removal dropped.
#[derive(Debug, Default)]
pub struct Removed {
    /// URL records removed.
    pub records: u64,
    /// Bodies nothing points at any more, for the caller to delete their files.
    pub orphaned: Vec<(blake3::Hash, BlobRecord)>,
}

/// Sizes of what is indexed, kept current by every write.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub entries: u64,
    pub blobs: u64,
    pub cache_bytes: u64,
    pub logical_bytes: u64,
}

/// What [`TOTALS_KEY`] holds.
#[derive(Serialize, Deserialize)]
struct Counted {
    totals: Totals,
    last_seq: u64,
}

pub struct Index {
    db: Arc<DB>,
    /// Serialises read-modify-write sequences on reference counts and totals.
    write_lock: parking_lot::Mutex<Totals>,
    /// The sequence number the next new blob gets.
    next_seq: std::sync::atomic::AtomicU64,
    /// Access times not written yet. Locked after `write_lock`, never before.
    touches: parking_lot::Mutex<PendingTouches>,
    /// Told the inodes of bodies whose link count changed, once written.
    links_changed: std::sync::OnceLock<LinksChanged>,
}

/// What [`Index::on_links_changed`] calls.
pub type LinksChanged = Box<dyn Fn(&[u64]) + Send + Sync>;

impl Index {
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let tables = table_options();
        let mut options = family_options(&tables);
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // RocksDB keeps every table file open by default; bound it, so the
        // index never competes with readers' open files for descriptors
        // (review finding 15). Tables are tens of MiB: 256 is far above what
        // a cache of millions of URLs holds.
        options.set_max_open_files(MAX_OPEN_TABLES);
        // The default family is unused, but opened with the same small memtable.
        let families = std::iter::once(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .chain(FAMILIES)
            .map(|name| ColumnFamilyDescriptor::new(name, family_options(&tables)));
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let index = Index {
            db: Arc::new(db),
            write_lock: parking_lot::Mutex::new(Totals::default()),
            next_seq: std::sync::atomic::AtomicU64::new(1),
            touches: parking_lot::Mutex::new(PendingTouches::default()),
            links_changed: std::sync::OnceLock::new(),
        };
        index.build_derived_if_missing()?;
        let (totals, last_seq) = match index.stored_totals()? {
            Some(Counted { totals, last_seq }) => (totals, last_seq),
            // Written before the totals were kept, or lost: count them once.
            None => {
                let (totals, last_seq) = index.count_totals()?;
                index.store_totals(&totals, last_seq)?;
                (totals, last_seq)
            }
        };
        *index.write_lock.lock() = totals;
        let next = last_seq.max(index.synced()?) + 1;
        index
            .next_seq
            .store(next, std::sync::atomic::Ordering::Relaxed);
        Ok(index)
    }

    pub fn totals(&self) -> Totals {
        *self.write_lock.lock()
    }

    pub fn url(&self, url: &str) -> Result<Option<UrlRecord>, IndexError> {
        self.get(CF_URLS, url.as_bytes())
    }

    pub fn blob(&self, hash: &blake3::Hash) -> Result<Option<BlobRecord>, IndexError> {
        self.get(CF_BLOBS, hash.as_bytes())
    }

    /// The blob that owns inode `ino`.
    pub fn blob_by_ino(&self, ino: u64) -> Result<Option<(blake3::Hash, BlobRecord)>, IndexError> {
        let Some(bytes) = self.db.get_cf(self.cf(CF_META), ino_key(ino))? else {
            return Ok(None);
        };
        let hash = hash_from_bytes(&bytes).ok_or_else(|| IndexError::Corrupt {
            key: format!("ino/{ino}"),
            message: "not a 32-byte hash".into(),
        })?;
        Ok(self.blob(&hash)?.map(|record| (hash, record)))
    }

    /// URLs whose string starts with `prefix`, in order. Reads keys only, and
    /// only the range below `prefix`.
    pub fn url_keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, IndexError> {
        let keys = self.keys_with_prefix(CF_URLS, prefix.as_bytes())?;
        Ok(keys
            .into_iter()
            .map(|key| String::from_utf8_lossy(&key).into_owned())
            .collect())
    }

    /// Keys of `family` that start with `prefix`, in order. Reads keys only,
    /// and only the range below `prefix`.
    fn keys_with_prefix(&self, family: &str, prefix: &[u8]) -> Result<Vec<Vec<u8>>, IndexError> {
        let mut found = Vec::new();
        let mut iter = self.db.raw_iterator_cf(self.cf(family));
        iter.seek(prefix);
        while let Some(key) = iter.key() {
            if !key.starts_with(prefix) {
                break;
            }
            found.push(key.to_vec());
            iter.next();
        }
        iter.status()?;
        Ok(found)
    }

    /// Every URL record, in order (for `verify`: it reads them all).
    pub fn url_records(&self) -> Result<Vec<(String, UrlRecord)>, IndexError> {
        let mut found = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_URLS), IteratorMode::Start) {
            let (key, value) = item?;
            let url = String::from_utf8_lossy(&key).into_owned();
            if let Ok(record) = decode(&url, &value) {
                found.push((url, record));
            }
        }
        Ok(found)
    }

    /// Whether any URL starts with `prefix`.
    pub fn has_url_with_prefix(&self, prefix: &str) -> Result<bool, IndexError> {
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_URLS));
        iter.seek(prefix.as_bytes());
        let found = iter
            .key()
            .is_some_and(|key| key.starts_with(prefix.as_bytes()));
        iter.status()?;
        Ok(found)
    }

    /// Has `tell` called with the inodes of the bodies whose reference count
    /// (their `st_nlink`) changed, after each write that changed them and
    /// outside the index's locks. Set once; later calls are ignored.
    pub fn on_links_changed(&self, tell: LinksChanged) {
        let _ = self.links_changed.set(tell);
    }

    fn tell_links_changed(&self, inos: &[u64]) {
        if let Some(tell) = self.links_changed.get()
            && !inos.is_empty()
        {
            tell(inos);
        }
    }

    /// Points `url` at the stored body `hash` of `size` bytes, in one batch:
    /// the URL record, the new body's reference count (and inode, if new), and
    /// the previous body's count. A body nothing points at any more is dropped
    /// from the index and returned, for the caller to delete its file.
    pub fn link(
        &self,
        url: &str,
        body: NewBody,
        meta: serde_json::Value,
        now_ms: u64,
    ) -> Result<Linked, IndexError> {
        let NewBody { hash, size, mtime } = body;
        let mut totals = self.write_lock.lock();
        // This link is a newer access than an open noted before it.
        self.touches.lock().forget(&hash);
        let mut batch = WriteBatch::default();
        let previous = self.url(url)?;
        let stored = self.blob(&hash)?;
        let mut blob = match stored {
            Some(record) => record,
            None => {
                let ino = self.free_ino(&hash)?;
                batch.put_cf(self.cf(CF_META), ino_key(ino), hash.as_bytes());
                totals.blobs += 1;
                totals.cache_bytes += size;
                BlobRecord {
                    size,
                    ino,
                    refs: 0,
                    last_access_ms: now_ms,
                    mtime,
                    seq: self
                        .next_seq
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                }
            }
        };
        blob.last_access_ms = now_ms;
        let mut orphaned = None;
        let mut changed = Vec::new();
        match &previous {
            Some(old) if old.blob == hash => {}
            Some(old) => {
                blob.refs += 1;
                changed.push(blob.ino);
                orphaned = self.unref(&mut batch, &mut totals, &old.blob, &mut changed)?;
            }
            None => {
                blob.refs += 1;
                changed.push(blob.ino);
                totals.entries += 1;
            }
        }
        if let Some(old) = &previous {
            totals.logical_bytes -= old.size.min(totals.logical_bytes);
        }
        totals.logical_bytes += size;
        let stored_access_ms = stored.map(|record| record.last_access_ms);
        self.put_blob(&mut batch, &hash, &blob, stored_access_ms);
        let record = UrlRecord {
            blob: hash,
            size,
            meta,
        };
        self.put_url(&mut batch, url, &record, previous.as_ref());
        let before = *totals;
        self.put_totals(&mut batch, &totals);
        self.write(batch, orphaned.is_some())
            .inspect_err(|_| *totals = before)?;
        drop(totals);
        self.tell_links_changed(&changed);
        Ok(Linked { blob, orphaned })
    }

    /// Replaces the cache metadata of an existing URL record (after a 304).
    pub fn update_meta(&self, url: &str, meta: serde_json::Value) -> Result<(), IndexError> {
        self.update_metas(&[(url.to_string(), meta)])
    }

    /// Replaces the cache metadata of these URLs' records, in one batch;
    /// URLs without a record are skipped.
    pub fn update_metas(&self, changes: &[(String, serde_json::Value)]) -> Result<(), IndexError> {
        if changes.is_empty() {
            return Ok(());
        }
        let _guard = self.write_lock.lock();
        let mut batch = WriteBatch::default();
        for (url, meta) in changes {
            if let Some(mut record) = self.url(url)? {
                record.meta = meta.clone();
                // The same blob: its `by_blob` key stands.
                batch.put_cf(self.cf(CF_URLS), url.as_bytes(), encode(&record));
            }
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// Drops these URLs' records in one batch; returns how many there were and
    /// the bodies nothing points at any more.
    pub fn remove_urls(&self, urls: &[String]) -> Result<Removed, IndexError> {
        let mut totals = self.write_lock.lock();
        let before = *totals;
        let mut batch = WriteBatch::default();
        let mut removed = Removed::default();
        // A body's count can drop several times in one batch: count from the
        // batch's view, not the database's.
        let mut counts: HashMap<blake3::Hash, BlobRecord> = HashMap::new();
        let mut seen = HashSet::new();
        for url in urls {
            if !seen.insert(url.as_str()) {
                continue;
            }
            let Some(old) = self.url(url)? else {
                continue;
            };
            self.delete_url(&mut batch, url.as_bytes(), &old.blob);
            removed.records += 1;
            totals.entries -= 1.min(totals.entries);
            totals.logical_bytes -= old.size.min(totals.logical_bytes);
            let record = match counts.get(&old.blob) {
                Some(record) => Some(*record),
                None => self.blob(&old.blob)?,
            };
            let Some(mut record) = record else {
                continue;
            };
            record.refs = record.refs.saturating_sub(1);
            counts.insert(old.blob, record);
        }
        let changed: Vec<u64> = counts.values().map(|record| record.ino).collect();
        for (hash, record) in counts {
            if record.refs > 0 {
                // Only the count changed: the lru key stays.
                self.put_blob(&mut batch, &hash, &record, Some(record.last_access_ms));
                continue;
            }
            self.delete_blob(&mut batch, &hash, &record);
            totals.blobs -= 1.min(totals.blobs);
            totals.cache_bytes -= record.size.min(totals.cache_bytes);
            removed.orphaned.push((hash, record));
        }
        if removed.records == 0 {
            return Ok(removed);
        }
        let deletes_blobs = !removed.orphaned.is_empty();
        self.put_totals(&mut batch, &totals);
        self.write(batch, deletes_blobs)
            .inspect_err(|_| *totals = before)?;
        drop(totals);
        self.tell_links_changed(&changed);
        Ok(removed)
    }

    /// Every blob record, by hash (for `verify` and the check after an
    /// unclean stop: they read them all).
    pub fn blob_records(&self) -> Result<Vec<(blake3::Hash, BlobRecord)>, IndexError> {
        let mut blobs = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_BLOBS), IteratorMode::Start) {
            let (key, value) = item?;
            let Some(hash) = hash_from_bytes(&key) else {
                continue;
            };
            if let Ok(record) = decode::<BlobRecord>(&hex(&key), &value) {
                blobs.push((hash, record));
            }
        }
        Ok(blobs)
    }

    /// Drops the given bodies and every URL that points at one of them, in
    /// one batch. The URLs of each body are one prefix scan of `by_blob`.
    pub fn drop_blobs(
        &self,
        victims: &std::collections::HashSet<blake3::Hash>,
    ) -> Result<(), IndexError> {
        if victims.is_empty() {
            return Ok(());
        }
        let mut totals = self.write_lock.lock();
        let before = *totals;
        let mut batch = WriteBatch::default();
        for hash in victims {
            for url in self.urls_of_blob(hash)? {
                match self.get::<UrlRecord>(CF_URLS, &url)? {
                    Some(record) if record.blob == *hash => {
                        self.delete_url(&mut batch, &url, hash);
                        totals.entries = totals.entries.saturating_sub(1);
                        totals.logical_bytes = totals.logical_bytes.saturating_sub(record.size);
                    }
                    // A key out of step with its record goes alone. An
                    // undecodable record reads as absent everywhere; it stays
                    // for `verify --repair` and must not stop eviction.
                    _ => batch.delete_cf(self.cf(CF_BY_BLOB), derived::by_blob_key(hash, &url)),
                }
            }
            if let Some(record) = self.blob(hash)? {
                self.delete_blob(&mut batch, hash, &record);
                totals.blobs = totals.blobs.saturating_sub(1);
                totals.cache_bytes = totals.cache_bytes.saturating_sub(record.size);
            }
        }
        self.put_totals(&mut batch, &totals);
        // The blob files go next: this batch must be on disk before them.
        self.write(batch, true).inspect_err(|_| *totals = before)?;
        Ok(())
    }

    /// Writes a batch; `durable` syncs the log first, for a batch that
    /// forgets blobs whose files are deleted right after: a power loss must
    /// never keep a record whose file is gone.
    fn write(&self, batch: WriteBatch, durable: bool) -> Result<(), rocksdb::Error> {
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(durable);
        self.db.write_opt(batch, &options)
    }

    /// Syncs the index's log: every write so far survives a power loss.
    /// A value a floor above keeps in the index under `name` (the fleet
    /// tier's place in its command stream, say).
    pub fn state(&self, name: &str) -> Result<Option<Vec<u8>>, IndexError> {
        Ok(self.db.get_cf(self.cf(CF_META), state_key(name))?)
    }

    /// Sets the value kept under `name`; it is durable with the next sync
    /// of the index's log, like every write.
    pub fn set_state(&self, name: &str, value: &[u8]) -> Result<(), IndexError> {
        Ok(self.db.put_cf(self.cf(CF_META), state_key(name), value)?)
    }

    pub fn sync_log(&self) -> Result<(), IndexError> {
        Ok(self.db.flush_wal(true)?)
    }

    /// Writes every family's memtable to a table, so the next open has no
    /// log to replay: a mount of a million URLs is ready at once.
    pub fn flush_memtables(&self) -> Result<(), IndexError> {
        for family in FAMILIES {
            self.db.flush_cf(self.cf(family))?;
        }
        Ok(())
    }

    /// Records that every commit up to `seq` survives a power loss.
    pub fn record_synced(&self, seq: u64) -> Result<(), IndexError> {
        Ok(self
            .db
            .put_cf(self.cf(CF_META), SYNCED_KEY, seq.to_be_bytes())?)
    }

    /// The sequence number of the last blob committed.
    pub fn last_seq(&self) -> u64 {
        self.next_seq
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(1)
    }

    /// Every commit up to this sequence number was made durable.
    pub fn synced(&self) -> Result<u64, IndexError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META), SYNCED_KEY)?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Removes the request headers named in `names` (lowercase) from every
    /// stored cache policy, once per cache dir, and compacts the old values
    /// away: caches written before credentials stopped being stored.
    /// Returns how many records changed.
    pub fn scrub_request_headers(&self, names: &[String]) -> Result<u64, IndexError> {
        if self.db.get_cf(self.cf(CF_META), SCRUBBED_KEY)?.is_some() {
            return Ok(0);
        }
        let mut changed = 0;
        let _guard = self.write_lock.lock();
        for item in self.db.iterator_cf(self.cf(CF_URLS), IteratorMode::Start) {
            let (key, value) = item?;
            let Ok(mut record) = decode::<UrlRecord>(&String::from_utf8_lossy(&key), &value) else {
                continue;
            };
            let Some(request) = record
                .meta
                .get_mut("policy")
                .and_then(|policy| policy.get_mut("req"))
                .and_then(|req| req.as_object_mut())
            else {
                continue;
            };
            let before = request.len();
            request.retain(|name, _| !names.iter().any(|n| n.eq_ignore_ascii_case(name)));
            if request.len() != before {
                // The same blob: its `by_blob` key stands.
                self.db.put_cf(self.cf(CF_URLS), &key, encode(&record))?;
                changed += 1;
            }
        }
        if changed > 0 {
            self.db
                .compact_range_cf(self.cf(CF_URLS), None::<&[u8]>, None::<&[u8]>);
        }
        self.db.put_cf(self.cf(CF_META), SCRUBBED_KEY, b"1")?;
        Ok(changed)
    }

    /// Blobs committed after sequence number `seq`.
    pub fn blobs_after(&self, seq: u64) -> Result<Vec<(blake3::Hash, BlobRecord)>, IndexError> {
        Ok(self
            .blob_records()?
            .into_iter()
            .filter(|(_, record)| record.seq > seq)
            .collect())
    }

    fn unref(
        &self,
        batch: &mut WriteBatch,
        totals: &mut Totals,
        hash: &blake3::Hash,
        changed: &mut Vec<u64>,
    ) -> Result<Option<(blake3::Hash, BlobRecord)>, IndexError> {
        let Some(mut record) = self.blob(hash)? else {
            return Ok(None);
        };
        changed.push(record.ino);
        record.refs = record.refs.saturating_sub(1);
        if record.refs > 0 {
            // Only the count changed: the lru key stays.
            self.put_blob(batch, hash, &record, Some(record.last_access_ms));
            return Ok(None);
        }
        self.delete_blob(batch, hash, &record);
        totals.blobs -= 1;
        totals.cache_bytes -= record.size.min(totals.cache_bytes);
        Ok(Some((*hash, record)))
    }

    /// The inode for a new blob: derived from its hash so it is the same on
    /// every machine, moved along on the (unlikely) collision.
    fn free_ino(&self, hash: &blake3::Hash) -> Result<u64, IndexError> {
        let bytes = hash.as_bytes();
        let mut candidate = u64::from_be_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ]);
        loop {
            candidate |= BLOB_INO_BIT;
            match self.db.get_cf(self.cf(CF_META), ino_key(candidate))? {
                Some(owner) if owner.as_slice() != hash.as_bytes() => {
                    candidate = candidate.wrapping_add(1)
                }
                _ => return Ok(candidate),
            }
        }
    }

    /// Adds the totals a batch leaves, with the last sequence number given
    /// out, to that batch. Call it holding the write lock.
    fn put_totals(&self, batch: &mut WriteBatch, totals: &Totals) {
        batch.put_cf(
            self.cf(CF_META),
            TOTALS_KEY,
            encode_totals(totals, self.last_seq()),
        );
    }

    fn stored_totals(&self) -> Result<Option<Counted>, IndexError> {
        self.get(CF_META, TOTALS_KEY)
    }

    fn store_totals(&self, totals: &Totals, last_seq: u64) -> Result<(), IndexError> {
        let meta = self.cf(CF_META);
        Ok(self
            .db
            .put_cf(meta, TOTALS_KEY, encode_totals(totals, last_seq))?)
    }

    /// The totals the records add up to, with the stored ones, when they
    /// differ (for `verify`; it reads every record).
    pub fn totals_mismatch(&self) -> Result<Option<(Totals, Totals)>, IndexError> {
        let (counted, _) = self.count_totals()?;
        let kept = self.totals();
        Ok((counted != kept).then_some((kept, counted)))
    }

    /// Sets the totals to what the records add up to (`verify --repair`).
    pub fn recount_totals(&self) -> Result<(), IndexError> {
        let mut totals = self.write_lock.lock();
        let (counted, last_seq) = self.count_totals()?;
        self.store_totals(&counted, last_seq.max(self.last_seq()))?;
        *totals = counted;
        Ok(())
    }

    /// The totals, and the highest blob sequence number, counted from every
    /// record.
    fn count_totals(&self) -> Result<(Totals, u64), IndexError> {
        let mut totals = Totals::default();
        let mut last_seq = 0;
        let mut undecodable = 0;
        for item in self.db.iterator_cf(self.cf(CF_URLS), IteratorMode::Start) {
            let (key, value) = item?;
            let Ok(record) = decode::<UrlRecord>(&String::from_utf8_lossy(&key), &value) else {
                undecodable += 1;
                continue;
            };
            totals.entries += 1;
            totals.logical_bytes += record.size;
        }
        for item in self.db.iterator_cf(self.cf(CF_BLOBS), IteratorMode::Start) {
            let (key, value) = item?;
            let Ok(record) = decode::<BlobRecord>(&hex(&key), &value) else {
                undecodable += 1;
                continue;
            };
            totals.blobs += 1;
            totals.cache_bytes += record.size;
            last_seq = last_seq.max(record.seq);
        }
        if undecodable > 0 {
            tracing::warn!(
                "{undecodable} index record(s) cannot be read; they count as absent \
                 until `fetchfs verify --repair` removes them"
            );
        }
        Ok((totals, last_seq))
    }

    /// A record, or `None` when there is none or it cannot be decoded: an
    /// undecodable record is logged and read as absent, so one damaged record
    /// costs a refetch, not the mount (`verify --repair` removes it).
    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        family: &str,
        key: &[u8],
    ) -> Result<Option<T>, IndexError> {
        match self.db.get_pinned_cf(self.cf(family), key)? {
            Some(bytes) => match decode(&String::from_utf8_lossy(key), &bytes) {
                Ok(record) => Ok(Some(record)),
                Err(error) => {
                    tracing::warn!("{error}; reading it as absent");
                    Ok(None)
                }
            },
            None => Ok(None),
        }
    }

    /// Records of `family` that cannot be decoded, by key (for `verify`).
    pub fn undecodable(&self) -> Result<Vec<(&'static str, Vec<u8>)>, IndexError> {
        let mut bad = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_URLS), IteratorMode::Start) {
            let (key, value) = item?;
            if serde_json::from_slice::<UrlRecord>(&value).is_err() {
                bad.push((CF_URLS, key.to_vec()));
            }
        }
        for item in self.db.iterator_cf(self.cf(CF_BLOBS), IteratorMode::Start) {
            let (key, value) = item?;
            if serde_json::from_slice::<BlobRecord>(&value).is_err() || key.len() != 32 {
                bad.push((CF_BLOBS, key.to_vec()));
            }
        }
        Ok(bad)
    }

    /// Deletes records `verify` found undecodable. Their derived keys, if
    /// any, are left stale: `verify` reports those too, and its repair
    /// rebuilds the derived families.
    pub fn delete_records(&self, records: &[(&'static str, Vec<u8>)]) -> Result<(), IndexError> {
        let _guard = self.write_lock.lock();
        let mut batch = WriteBatch::default();
        for (family, key) in records {
            batch.delete_cf(self.cf(family), key);
        }
        self.write(batch, true)?;
        Ok(())
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every family is created at open, so they are always there.
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }
}

/// Table files the index keeps open at most.
const MAX_OPEN_TABLES: i32 = 256;
/// The one block cache every family reads through.
const BLOCK_CACHE_BYTES: usize = 16 << 20;

/// Records are a few hundred bytes, so small memtables flush often enough.
/// Small ones matter on a full disk too: after its log hits ENOSPC, RocksDB
/// takes writes again only once a memtable's worth of space is free.
fn family_options(tables: &BlockBasedOptions) -> Options {
    let mut options = Options::default();
    options.set_write_buffer_size(WRITE_BUFFER_BYTES);
    options.set_block_based_table_factory(tables);
    options
}

/// How every family reads its tables. By default RocksDB gives each family a
/// 32 MiB block cache of its own and keeps each table's index and filter
/// outside any cache, so its memory grows with the number of URLs. Here one
/// cache of [`BLOCK_CACHE_BYTES`] holds them all (the page cache keeps the
/// rest of the tables close), and a Bloom filter answers most lookups of a URL
/// that is not stored without reading a data block.
///
/// Index and filter are partitioned into blocks of [`METADATA_BLOCK_BYTES`]
/// under a small top level kept in the cache: with whole ones, a lookup in
/// a table of a million URLs whose index and filter the data blocks had
/// pushed out of the cache read and checksummed a megabyte or two of them
/// again (at 1,000,000 URLs, 65% of the daemon's time in a `stat` of each,
/// 264 us a lookup); with partitions it reads a few KiB.
fn table_options() -> BlockBasedOptions {
    let mut tables = BlockBasedOptions::default();
    tables.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
    tables.set_cache_index_and_filter_blocks(true);
    tables.set_cache_index_and_filter_blocks_with_high_priority(true);
    tables.set_pin_l0_filter_and_index_blocks_in_cache(true);
    tables.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    tables.set_partition_filters(true);
    tables.set_metadata_block_size(METADATA_BLOCK_BYTES);
    tables.set_pin_top_level_index_and_filter(true);
    tables.set_bloom_filter(10.0, false);
    tables
}

/// The size of one partition of a table's index or filter.
const METADATA_BLOCK_BYTES: usize = 4096;

/// What [`TOTALS_KEY`] holds, encoded.
fn encode_totals(totals: &Totals, last_seq: u64) -> Vec<u8> {
    encode(&Counted {
        totals: *totals,
        last_seq,
    })
}

fn state_key(name: &str) -> Vec<u8> {
    [STATE_PREFIX, name.as_bytes()].concat()
}

fn ino_key(ino: u64) -> Vec<u8> {
    let mut key = b"ino/".to_vec();
    key.extend_from_slice(&ino.to_be_bytes());
    key
}

fn hash_from_bytes(bytes: &[u8]) -> Option<blake3::Hash> {
    <[u8; 32]>::try_from(bytes)
        .ok()
        .map(blake3::Hash::from_bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain structs of numbers, strings and JSON values cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, IndexError> {
    serde_json::from_slice(bytes).map_err(|e| IndexError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

mod hash_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &blake3::Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(hash.to_hex().as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<blake3::Hash, D::Error> {
        let text = String::deserialize(d)?;
        blake3::Hash::from_hex(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> serde_json::Value {
        serde_json::json!({})
    }

    #[test]
    fn state_kept_for_other_floors_survives_a_reopen_beside_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let body = NewBody {
            hash: blake3::hash(b"b"),
            size: 1,
            mtime: 0,
        };
        {
            let index = Index::open(dir.path()).unwrap();
            assert_eq!(index.state("fleet/cursor").unwrap(), None);
            index.set_state("fleet/cursor", b"1-0").unwrap();
            index.set_state("fleet/cursor", b"2-0").unwrap();
            index.link("http://h/a", body, meta(), 1).unwrap();
        }
        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.state("fleet/cursor").unwrap().unwrap(), b"2-0");
        assert_eq!(index.totals().entries, 1, "state is not a record");
        assert!(index.undecodable().unwrap().is_empty());
    }

    /// RocksDB gives each column family a block cache of its own (32 MiB)
    /// and keeps table indexes outside it, so the index's memory grew with
    /// the number of URLs: 158 MiB of daemon RSS after 200,000 prefetches.
    /// One bounded cache holds every family's blocks, indexes and filters.
    #[test]
    fn every_family_reads_through_one_bounded_block_cache() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let padding = "h".repeat(300);
        for i in 0..20_000u32 {
            let body = NewBody {
                hash: blake3::hash(&i.to_be_bytes()),
                size: 1,
                mtime: 0,
            };
            let meta = serde_json::json!({ "headers": padding });
            index.link(&format!("http://h/{i}"), body, meta, 1).unwrap();
        }
        for family in [CF_URLS, CF_BLOBS, CF_META, CF_LRU, CF_BY_BLOB] {
            index.db.flush_cf(index.cf(family)).unwrap();
        }
        for i in 0..20_000u32 {
            assert!(index.url(&format!("http://h/{i}")).unwrap().is_some());
            assert!(
                index
                    .url(&format!("http://h/missing/{i}"))
                    .unwrap()
                    .is_none()
            );
            let hash = blake3::hash(&i.to_be_bytes());
            assert!(index.blob(&hash).unwrap().is_some());
        }
        let property = |family: &str, name: &str| {
            index
                .db
                .property_int_value_cf(index.cf(family), name)
                .unwrap()
                .unwrap()
        };
        let usage = property(CF_URLS, "rocksdb.block-cache-usage");
        for family in [CF_URLS, CF_BLOBS, CF_META, CF_LRU, CF_BY_BLOB] {
            assert_eq!(
                property(family, "rocksdb.block-cache-capacity"),
                BLOCK_CACHE_BYTES as u64,
                "{family}"
            );
            assert_eq!(
                property(family, "rocksdb.block-cache-usage"),
                usage,
                "{family} reads through a cache of its own"
            );
            assert!(
                property(family, "rocksdb.estimate-table-readers-mem") < 64 * 1024,
                "{family} keeps its table indexes outside the cache"
            );
        }
        assert!(usage > 0 && usage <= BLOCK_CACHE_BYTES as u64, "{usage}");
    }

    #[test]
    fn link_counts_refs_and_orphans_old_body() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let a = blake3::hash(b"a");
        let b = blake3::hash(b"bb");
        let first = index
            .link(
                "http://h/1",
                NewBody {
                    hash: a,
                    size: 1,
                    mtime: 0,
                },
                meta(),
                10,
            )
            .unwrap();
        let second = index
            .link(
                "http://h/2",
                NewBody {
                    hash: a,
                    size: 1,
                    mtime: 0,
                },
                meta(),
                11,
            )
            .unwrap();
        assert_eq!(second.blob.refs, 2);
        assert_eq!(first.blob.ino, second.blob.ino);
        assert!(first.blob.ino & BLOB_INO_BIT != 0);
        assert_eq!(
            index.totals(),
            Totals {
                entries: 2,
                blobs: 1,
                cache_bytes: 1,
                logical_bytes: 2
            }
        );

        let moved = index
            .link(
                "http://h/1",
                NewBody {
                    hash: b,
                    size: 2,
                    mtime: 0,
                },
                meta(),
                12,
            )
            .unwrap();
        assert!(moved.orphaned.is_none());
        let moved = index
            .link(
                "http://h/2",
                NewBody {
                    hash: b,
                    size: 2,
                    mtime: 0,
                },
                meta(),
                13,
            )
            .unwrap();
        assert_eq!(moved.orphaned.map(|(h, _)| h), Some(a));
        assert_eq!(
            index.totals(),
            Totals {
                entries: 2,
                blobs: 1,
                cache_bytes: 2,
                logical_bytes: 4
            }
        );
        assert_eq!(
            index.blob_by_ino(moved.blob.ino).unwrap().map(|(h, _)| h),
            Some(b)
        );
        assert!(index.blob_by_ino(first.blob.ino).unwrap().is_none());
    }

    #[test]
    fn an_undecodable_record_is_read_as_absent_and_listed_for_repair() {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = Index::open(dir.path()).unwrap();
            index
                .link(
                    "http://h/good",
                    NewBody {
                        hash: blake3::hash(b"g"),
                        size: 1,
                        mtime: 0,
                    },
                    meta(),
                    1,
                )
                .unwrap();
            index
                .db
                .put_cf(index.cf(CF_URLS), b"http://h/bad", b"not json")
                .unwrap();
        }
        let index = Index::open(dir.path()).expect("one bad record stopped the index");
        assert_eq!(index.totals().entries, 1);
        assert!(index.url("http://h/bad").unwrap().is_none());
        assert!(index.url("http://h/good").unwrap().is_some());
        let bad = index.undecodable().unwrap();
        assert_eq!(bad.len(), 1);
        index.delete_records(&bad).unwrap();
        assert!(index.undecodable().unwrap().is_empty());
    }

    /// Review finding 18: one undecodable URL record made every eviction
    /// fail, the cap's and a full disk's among them.
    #[test]
    fn an_undecodable_record_does_not_stop_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let hash = blake3::hash(b"g");
        let body = NewBody {
            hash,
            size: 1,
            mtime: 0,
        };
        index.link("http://h/good", body, meta(), 1).unwrap();
        index
            .db
            .put_cf(index.cf(CF_URLS), b"http://h/bad", b"not json")
            .unwrap();
        index
            .drop_blobs(&std::collections::HashSet::from([hash]))
            .expect("one bad record stopped eviction");
        assert!(index.url("http://h/good").unwrap().is_none());
        assert!(index.blob(&hash).unwrap().is_none());
        assert_eq!(index.totals().entries, 0);
        assert_eq!(index.undecodable().unwrap().len(), 1, "left for repair");
        index
            .scrub_request_headers(&["authorization".into()])
            .expect("one bad record stopped the scrub");
    }

    #[test]
    fn stored_credentials_are_scrubbed_once() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let policy = serde_json::json!({ "policy": { "req": {
            "authorization": "Bearer secret",
            "x-api-key": "k",
            "accept-encoding": "identity",
        } } });
        index
            .link(
                "http://h/1",
                NewBody {
                    hash: blake3::hash(b"1"),
                    size: 1,
                    mtime: 0,
                },
                policy,
                1,
            )
            .unwrap();
        let names = ["authorization".to_string(), "x-api-key".to_string()];
        assert_eq!(index.scrub_request_headers(&names).unwrap(), 1);
        let meta = index.url("http://h/1").unwrap().unwrap().meta;
        let request = meta["policy"]["req"].as_object().unwrap();
        assert_eq!(request.keys().collect::<Vec<_>>(), ["accept-encoding"]);
        assert_eq!(index.scrub_request_headers(&names).unwrap(), 0, "runs once");
    }

    #[test]
    fn totals_survive_reopen_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let a = blake3::hash(b"a");
        {
            let index = Index::open(dir.path()).unwrap();
            index
                .link(
                    "http://h/d/1",
                    NewBody {
                        hash: a,
                        size: 1,
                        mtime: 0,
                    },
                    meta(),
                    1,
                )
                .unwrap();
            index
                .link(
                    "http://h/d/2",
                    NewBody {
                        hash: a,
                        size: 1,
                        mtime: 0,
                    },
                    meta(),
                    1,
                )
                .unwrap();
        }
        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.totals().entries, 2);
        assert_eq!(
            index.url_keys_with_prefix("http://h/d/").unwrap(),
            ["http://h/d/1", "http://h/d/2"]
        );
        assert!(index.has_url_with_prefix("http://h/d/").unwrap());
        assert!(!index.has_url_with_prefix("http://h/e/").unwrap());
        let first = index.remove_urls(&["http://h/d/1".into()]).unwrap();
        assert_eq!(first.records, 1);
        assert!(first.orphaned.is_empty());
        let second = index.remove_urls(&["http://h/d/2".into()]).unwrap();
        assert_eq!(
            second.orphaned.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
            [a]
        );
        assert_eq!(index.totals(), Totals::default());
    }

    fn body(content: &[u8]) -> NewBody {
        NewBody {
            hash: blake3::hash(content),
            size: content.len() as u64,
            mtime: 0,
        }
    }

    fn opened() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        (dir, index)
    }

    /// The bodies `least_recently_used` walks, in its order.
    fn lru_order(index: &Index) -> Vec<blake3::Hash> {
        index
            .least_recently_used()
            .map(|item| item.unwrap().0)
            .collect()
    }

    fn keys_of(index: &Index, family: &str) -> std::collections::BTreeSet<Vec<u8>> {
        index
            .db
            .iterator_cf(index.cf(family), IteratorMode::Start)
            .map(|item| item.unwrap().0.to_vec())
            .collect()
    }

    /// The invariant, checked the slow way: `lru` holds exactly one key per
    /// blob record, at its access time, and `by_blob` exactly one key per URL
    /// record, under its blob.
    fn assert_derived_in_step(index: &Index) {
        let lru: std::collections::BTreeSet<Vec<u8>> = index
            .blob_records()
            .unwrap()
            .iter()
            .map(|(hash, record)| derived::lru_key(record.last_access_ms, hash).to_vec())
            .collect();
        let by_blob: std::collections::BTreeSet<Vec<u8>> = index
            .url_records()
            .unwrap()
            .iter()
            .map(|(url, record)| derived::by_blob_key(&record.blob, url.as_bytes()))
            .collect();
        assert_eq!(keys_of(index, CF_LRU), lru, "lru");
        assert_eq!(keys_of(index, CF_BY_BLOB), by_blob, "by_blob");
        assert_eq!(index.derived_mismatches().unwrap(), []);
    }

    /// Makes `index` one written before the derived families existed (neither
    /// family, no mark saying they are built), and opens it again.
    fn reopen_without_derived_families(index: Index, path: &Path) -> Index {
        let mut db = Arc::into_inner(index.db).expect("the only handle on the database");
        db.delete_cf(db.cf_handle(CF_META).unwrap(), derived::BUILT_KEY)
            .unwrap();
        db.drop_cf(CF_LRU).unwrap();
        db.drop_cf(CF_BY_BLOB).unwrap();
        drop(db);
        Index::open(path).unwrap()
    }

    /// A mount reads the totals; counting every record took 7-12 s at a
    /// million URLs. Proof that they are read, not counted: a record deleted
    /// behind the index's back does not change them.
    #[test]
    fn totals_and_the_last_sequence_are_read_at_open_not_counted() {
        let (dir, index) = opened();
        for i in 0..10u32 {
            let new = body(&i.to_be_bytes());
            index
                .link(&format!("http://h/{i}"), new, meta(), 1)
                .unwrap();
        }
        index.remove_urls(&["http://h/0".into()]).unwrap();
        let victim = body(&1u32.to_be_bytes()).hash;
        index.drop_blobs(&HashSet::from([victim])).unwrap();
        let (totals, last_seq) = (index.totals(), index.last_seq());
        assert_eq!(totals.entries, 8);
        index
            .db
            .delete_cf(index.cf(CF_URLS), b"http://h/5")
            .unwrap();
        drop(index);

        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.totals(), totals);
        assert_eq!(index.last_seq(), last_seq);
        let next = index.link("http://h/new", body(b"new"), meta(), 2).unwrap();
        assert!(next.blob.seq > last_seq);
    }

    /// An index written before the totals were kept counts them once.
    #[test]
    fn an_index_without_stored_totals_counts_them_once() {
        let (dir, index) = opened();
        for i in 0..10u32 {
            let new = body(&(i % 4).to_be_bytes());
            index
                .link(&format!("http://h/{i}"), new, meta(), 1)
                .unwrap();
        }
        let (totals, last_seq) = (index.totals(), index.last_seq());
        index.db.delete_cf(index.cf(CF_META), TOTALS_KEY).unwrap();
        drop(index);

        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.totals(), totals);
        assert_eq!(index.last_seq(), last_seq);
        assert!(
            index
                .db
                .get_cf(index.cf(CF_META), TOTALS_KEY)
                .unwrap()
                .is_some(),
            "the counted totals are kept"
        );
    }

    #[test]
    fn link_relink_touch_and_remove_keep_lru_and_by_blob_in_step() {
        let (_dir, index) = opened();
        let (a, b) = (body(b"a"), body(b"bb"));
        index.link("http://h/1", a, meta(), 10).unwrap();
        index.link("http://h/2", a, meta(), 11).unwrap();
        assert_derived_in_step(&index);
        // The same URL stored again: the same body, a newer access.
        index.link("http://h/1", a, meta(), 12).unwrap();
        assert_derived_in_step(&index);
        // One URL moves to another body; the first keeps one reference.
        index.link("http://h/1", b, meta(), 13).unwrap();
        assert_derived_in_step(&index);
        assert_eq!(
            index.urls_of_blob(&a.hash).unwrap(),
            [b"http://h/2".to_vec()]
        );
        index.touch(&a.hash, 20).unwrap();
        index.touch(&a.hash, 20).unwrap();
        index.touch(&b.hash, 5).unwrap();
        index.flush_touches().unwrap();
        assert_derived_in_step(&index);
        assert_eq!(index.blob(&a.hash).unwrap().unwrap().last_access_ms, 20);
        // The last URL of `a` moves: `a` is orphaned.
        let moved = index.link("http://h/2", b, meta(), 21).unwrap();
        assert_eq!(moved.orphaned.map(|(hash, _)| hash), Some(a.hash));
        assert_derived_in_step(&index);
        index
            .remove_urls(&["http://h/1".into(), "http://h/1".into()])
            .unwrap();
        assert_derived_in_step(&index);
        index.remove_urls(&["http://h/2".into()]).unwrap();
        assert_derived_in_step(&index);
        assert!(keys_of(&index, CF_LRU).is_empty());
        assert!(keys_of(&index, CF_BY_BLOB).is_empty());
    }

    #[test]
    fn drop_blobs_removes_every_url_of_a_victim_and_no_other() {
        let (_dir, index) = opened();
        let (a, b, c) = (body(b"a"), body(b"bb"), body(b"ccc"));
        for url in ["http://h/a1", "http://h/a2", "http://h/z/a3"] {
            index.link(url, a, meta(), 1).unwrap();
        }
        index.link("http://h/b", b, meta(), 2).unwrap();
        index.link("http://h/c", c, meta(), 3).unwrap();
        // A URL that pointed at `a` once, and at `b` now.
        index.link("http://h/was-a", a, meta(), 4).unwrap();
        index.link("http://h/was-a", b, meta(), 5).unwrap();

        index.drop_blobs(&HashSet::from([a.hash, c.hash])).unwrap();
        for url in ["http://h/a1", "http://h/a2", "http://h/z/a3", "http://h/c"] {
            assert!(index.url(url).unwrap().is_none(), "{url} kept");
        }
        for url in ["http://h/b", "http://h/was-a"] {
            assert_eq!(index.url(url).unwrap().unwrap().blob, b.hash, "{url}");
        }
        assert!(index.blob(&a.hash).unwrap().is_none());
        assert!(index.blob(&c.hash).unwrap().is_none());
        assert_eq!(index.blob(&b.hash).unwrap().unwrap().refs, 2);
        assert_eq!(
            index.totals(),
            Totals {
                entries: 2,
                blobs: 1,
                cache_bytes: 2,
                logical_bytes: 4
            }
        );
        assert_derived_in_step(&index);
    }

    #[test]
    fn least_recently_used_walks_access_order_and_passes_over_stale_keys() {
        let (_dir, index) = opened();
        let bodies: Vec<NewBody> = [&b"a"[..], b"b", b"c", b"d"]
            .into_iter()
            .map(body)
            .collect();
        for (i, new) in bodies.iter().enumerate() {
            index
                .link(&format!("http://h/{i}"), *new, meta(), 100)
                .unwrap();
        }
        for (i, at) in [(2, 10), (0, 20), (3, 30), (1, 40)] {
            index.touch(&bodies[i].hash, at).unwrap();
        }
        index.flush_touches().unwrap();
        // Damage: a key at an old access time, and one for no body at all.
        let stale = [
            derived::lru_key(1, &bodies[1].hash),
            derived::lru_key(2, &blake3::hash(b"gone")),
        ];
        for key in stale {
            index.db.put_cf(index.cf(CF_LRU), key, []).unwrap();
        }
        assert_eq!(lru_order(&index), [2, 0, 3, 1].map(|i| bodies[i].hash));
    }

    #[test]
    fn opens_are_noted_in_memory_and_written_in_one_batch_by_a_flush() {
        let (_dir, index) = opened();
        let (a, b) = (body(b"a"), body(b"bb"));
        index.link("http://h/a", a, meta(), 10).unwrap();
        index.link("http://h/b", b, meta(), 11).unwrap();
        index.touch(&a.hash, 30).unwrap();
        index.touch(&a.hash, 40).unwrap();
        index.touch(&b.hash, 35).unwrap();
        // A body gone before the flush is passed over.
        let gone = body(b"gone");
        index.link("http://h/gone", gone, meta(), 12).unwrap();
        index.touch(&gone.hash, 36).unwrap();
        index.remove_urls(&["http://h/gone".into()]).unwrap();
        assert_eq!(index.blob(&a.hash).unwrap().unwrap().last_access_ms, 10);
        assert_derived_in_step(&index);

        index.flush_touches().unwrap();
        assert_eq!(index.blob(&a.hash).unwrap().unwrap().last_access_ms, 40);
        assert_eq!(index.blob(&b.hash).unwrap().unwrap().last_access_ms, 35);
        assert!(index.blob(&gone.hash).unwrap().is_none());
        assert_derived_in_step(&index);
        assert_eq!(lru_order(&index), [b.hash, a.hash]);
    }

    /// Storing a body is an access too, newer than an open noted before it.
    #[test]
    fn a_link_supersedes_an_open_noted_before_it() {
        let (_dir, index) = opened();
        let a = body(b"a");
        index.link("http://h/a", a, meta(), 10).unwrap();
        index.touch(&a.hash, 20).unwrap();
        index.link("http://h/a2", a, meta(), 30).unwrap();
        index.flush_touches().unwrap();
        assert_eq!(index.blob(&a.hash).unwrap().unwrap().last_access_ms, 30);
        assert_derived_in_step(&index);
    }

    /// An index written before `lru` and `by_blob` existed gets both at open,
    /// built from the records in several bounded batches.
    #[test]
    fn an_index_without_the_derived_families_is_upgraded_on_open() {
        let (dir, index) = opened();
        let shared = body(b"shared");
        let urls = derived::REBUILD_BATCH_KEYS * 2 + 10;
        for i in 0..urls {
            let new = if i % 2 == 0 {
                shared
            } else {
                body(&i.to_be_bytes())
            };
            index
                .link(&format!("http://h/{i}"), new, meta(), i as u64)
                .unwrap();
        }
        let totals = index.totals();
        let index = reopen_without_derived_families(index, dir.path());
        assert_eq!(index.totals(), totals);
        assert_derived_in_step(&index);
        assert_eq!(
            index.urls_of_blob(&shared.hash).unwrap().len(),
            urls.div_ceil(2)
        );
        assert!(
            index
                .db
                .get_cf(index.cf(CF_META), derived::BUILT_KEY)
                .unwrap()
                .is_some()
        );
        // The least recently used first, as it was before the upgrade.
        let first = index.least_recently_used().next().unwrap().unwrap();
        assert_eq!(first.0, body(&1usize.to_be_bytes()).hash);
    }

    /// A build cut short left the families half full and no mark: the next
    /// open builds them again, from empty.
    #[test]
    fn a_build_cut_short_is_done_again_at_the_next_open() {
        let (dir, index) = opened();
        let a = body(b"a");
        index.link("http://h/a", a, meta(), 7).unwrap();
        index
            .db
            .put_cf(index.cf(CF_LRU), derived::lru_key(3, &a.hash), [])
            .unwrap();
        index
            .db
            .delete_cf(
                index.cf(CF_BY_BLOB),
                derived::by_blob_key(&a.hash, b"http://h/a"),
            )
            .unwrap();
        index
            .db
            .delete_cf(index.cf(CF_META), derived::BUILT_KEY)
            .unwrap();
        drop(index);
        let index = Index::open(dir.path()).unwrap();
        assert_derived_in_step(&index);
    }

    /// One operation of [`random_operations_keep_the_derived_families_in_step`].
    #[derive(Debug, Clone)]
    enum Operation {
        Link { url: usize, body: usize, at: u64 },
        Remove { urls: Vec<usize> },
        Drop { bodies: Vec<usize> },
        Touch { body: usize, at: u64 },
        FlushTouches,
        Reopen,
        Upgrade,
    }

    const URLS: usize = 6;
    const BODIES: usize = 4;

    fn operation() -> impl proptest::strategy::Strategy<Value = Operation> {
        use proptest::collection::vec;
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..URLS, 0..BODIES, 0..50u64)
                .prop_map(|(url, body, at)| Operation::Link { url, body, at }),
            2 => vec(0..URLS, 0..3).prop_map(|urls| Operation::Remove { urls }),
            1 => vec(0..BODIES, 0..3).prop_map(|bodies| Operation::Drop { bodies }),
            2 => (0..BODIES, 0..50u64).prop_map(|(body, at)| Operation::Touch { body, at }),
            1 => Just(Operation::FlushTouches),
            1 => Just(Operation::Reopen),
            1 => Just(Operation::Upgrade),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 24,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x1e5_0bad),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Random links, relinks, removals, drops, touches and reopens,
        /// against a model of which URL points at which body.
        #[test]
        fn random_operations_keep_the_derived_families_in_step(
            operations in proptest::collection::vec(operation(), 1..30)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut index = Index::open(dir.path()).unwrap();
            let bodies: Vec<NewBody> = (0..BODIES).map(|i| body(&[b'x'; 8][..=i])).collect();
            let url = |i: usize| format!("http://h/{i}");
            let mut model: HashMap<usize, usize> = HashMap::new();
            for operation in operations {
                match operation {
                    Operation::Link { url: u, body: b, at } => {
                        index.link(&url(u), bodies[b], meta(), at).unwrap();
                        model.insert(u, b);
                    }
                    Operation::Remove { urls } => {
                        let names: Vec<String> = urls.iter().map(|&u| url(u)).collect();
                        index.remove_urls(&names).unwrap();
                        urls.iter().for_each(|u| { model.remove(u); });
                    }
                    Operation::Drop { bodies: victims } => {
                        let hashes = victims.iter().map(|&b| bodies[b].hash).collect();
                        index.drop_blobs(&hashes).unwrap();
                        model.retain(|_, b| !victims.contains(b));
                    }
                    Operation::Touch { body: b, at } => index.touch(&bodies[b].hash, at).unwrap(),
                    Operation::FlushTouches => index.flush_touches().unwrap(),
                    Operation::Reopen => {
                        drop(index);
                        index = Index::open(dir.path()).unwrap();
                    }
                    Operation::Upgrade => {
                        index = reopen_without_derived_families(index, dir.path());
                    }
                }
                for u in 0..URLS {
                    let stored = index.url(&url(u)).unwrap().map(|record| record.blob);
                    proptest::prop_assert_eq!(stored, model.get(&u).map(|&b| bodies[b].hash));
                }
                for (b, new) in bodies.iter().enumerate() {
                    let refs = model.values().filter(|&&m| m == b).count() as u64;
                    let record = index.blob(&new.hash).unwrap();
                    proptest::prop_assert_eq!(record.map(|r| r.refs), (refs > 0).then_some(refs));
                }
                proptest::prop_assert_eq!(index.totals().entries, model.len() as u64);
                assert_derived_in_step(&index);
            }
        }
    }
}

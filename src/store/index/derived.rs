//! The derived families, `lru` and `by_blob`: the records again, in the two
//! orders eviction reads, so that it never reads the whole index.
//!
//! - `lru`: `last_access_ms` (8 bytes, big-endian) ++ 32-byte blob hash →
//!   empty. One key per blob record, at its access time: walked from the
//!   start, it gives the least recently used bodies first, and eviction stops
//!   reading once it has chosen enough bytes.
//! - `by_blob`: 32-byte blob hash ++ URL → empty. One key per URL record,
//!   under the blob it points at: the URLs of a body are one prefix scan.
//!
//! Every write that creates or deletes a record, changes an access time or
//! points a URL at another blob goes through the helpers here
//! ([`Index::put_blob`], [`Index::delete_blob`], [`Index::put_url`],
//! [`Index::delete_url`]), which put the derived keys in the same write
//! batch, so a crash never leaves them disagreeing with the records. (Writes
//! of a URL's cache metadata alone keep its blob, and so its key.)
//!
//! An index written before they existed has neither: the first open builds
//! them, one scan of each record family in batches of at most
//! [`REBUILD_BATCH_KEYS`] keys, then sets [`BUILT_KEY`].
//! A build cut short leaves the key unset, so the next open builds again.
//! `verify` checks both against the records and `--repair` rebuilds them.
//!
//! Readers pass over a key that disagrees with its record: it can only come
//! from damage, which `verify` reports, and it must not stop eviction.

use std::fmt;

use rocksdb::{IteratorMode, WriteBatch};

use super::{
    BlobRecord, CF_BLOBS, CF_META, CF_URLS, Index, IndexError, UrlRecord, encode, hash_from_bytes,
    ino_key,
};

pub(super) const CF_LRU: &str = "lru";
pub(super) const CF_BY_BLOB: &str = "by_blob";
/// The `meta` key set once both derived families hold every record.
pub(super) const BUILT_KEY: &[u8] = b"derived_families_built";
/// Keys per write batch while the derived families are built: bounded, so
/// a build over millions of records never holds them all in memory.
pub(super) const REBUILD_BATCH_KEYS: usize = 10_000;

const HASH_BYTES: usize = 32;

/// A derived key that disagrees with the records, found by `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerivedMismatch {
    /// A record whose derived key is not there.
    Missing { family: &'static str, key: Vec<u8> },
    /// A derived key that no record matches.
    Stale { family: &'static str, key: Vec<u8> },
}

impl fmt::Display for DerivedMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (family, key, what) = match self {
            DerivedMismatch::Missing { family, key } => (family, key, "missing"),
            DerivedMismatch::Stale { family, key } => (family, key, "matches no record"),
        };
        write!(f, "{family} key {} {what}", describe_key(family, key))
    }
}

/// A derived key as a person reads it.
fn describe_key(family: &str, key: &[u8]) -> String {
    match family {
        CF_LRU => match split_lru_key(key) {
            Some((access_ms, hash)) => format!("(blob {hash}, last access {access_ms} ms)"),
            None => format!("{key:02x?}"),
        },
        _ => match split_by_blob_key(key) {
            Some((hash, url)) => format!("(blob {hash}, {})", String::from_utf8_lossy(url)),
            None => format!("{key:02x?}"),
        },
    }
}

pub(super) fn lru_key(last_access_ms: u64, hash: &blake3::Hash) -> [u8; 8 + HASH_BYTES] {
    let mut key = [0; 8 + HASH_BYTES];
    key[..8].copy_from_slice(&last_access_ms.to_be_bytes());
    key[8..].copy_from_slice(hash.as_bytes());
    key
}

fn split_lru_key(key: &[u8]) -> Option<(u64, blake3::Hash)> {
    let (access, hash) = key.split_at_checked(8)?;
    Some((
        u64::from_be_bytes(access.try_into().ok()?),
        hash_from_bytes(hash)?,
    ))
}

pub(super) fn by_blob_key(hash: &blake3::Hash, url: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(HASH_BYTES + url.len());
    key.extend_from_slice(hash.as_bytes());
    key.extend_from_slice(url);
    key
}

fn split_by_blob_key(key: &[u8]) -> Option<(blake3::Hash, &[u8])> {
    let (hash, url) = key.split_at_checked(HASH_BYTES)?;
    Some((hash_from_bytes(hash)?, url))
}

/// The key of derived `family` that one record (`key`, `value`) calls for:
/// a blob record's `lru` key, a URL record's `by_blob` key.
fn derived_key(family: &str, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    if family == CF_LRU {
        let record: BlobRecord = serde_json::from_slice(value).ok()?;
        return Some(lru_key(record.last_access_ms, &hash_from_bytes(key)?).to_vec());
    }
    let record: UrlRecord = serde_json::from_slice(value).ok()?;
    Some(by_blob_key(&record.blob, key))
}

impl Index {
    /// Puts `hash`'s blob record into `batch`, with its `lru` key.
    /// `old_access_ms` is the access time of the record it replaces, if any,
    /// whose `lru` key goes.
    pub(super) fn put_blob(
        &self,
        batch: &mut WriteBatch,
        hash: &blake3::Hash,
        record: &BlobRecord,
        old_access_ms: Option<u64>,
    ) {
        if let Some(old) = old_access_ms
            && old != record.last_access_ms
        {
            batch.delete_cf(self.cf(CF_LRU), lru_key(old, hash));
        }
        batch.put_cf(self.cf(CF_BLOBS), hash.as_bytes(), encode(record));
        batch.put_cf(self.cf(CF_LRU), lru_key(record.last_access_ms, hash), []);
    }

    /// Deletes `hash`'s blob record in `batch`, with its `lru` and inode keys.
    pub(super) fn delete_blob(
        &self,
        batch: &mut WriteBatch,
        hash: &blake3::Hash,
        record: &BlobRecord,
    ) {
        batch.delete_cf(self.cf(CF_BLOBS), hash.as_bytes());
        batch.delete_cf(self.cf(CF_LRU), lru_key(record.last_access_ms, hash));
        batch.delete_cf(self.cf(CF_META), ino_key(record.ino));
    }

    /// Puts `url`'s record into `batch`, with its `by_blob` key; `old` is the
    /// record it replaces, if any, whose key goes if it named another blob.
    pub(super) fn put_url(
        &self,
        batch: &mut WriteBatch,
        url: &str,
        record: &UrlRecord,
        old: Option<&UrlRecord>,
    ) {
        if let Some(old) = old
            && old.blob != record.blob
        {
            batch.delete_cf(self.cf(CF_BY_BLOB), by_blob_key(&old.blob, url.as_bytes()));
        }
        batch.put_cf(self.cf(CF_URLS), url.as_bytes(), encode(record));
        batch.put_cf(
            self.cf(CF_BY_BLOB),
            by_blob_key(&record.blob, url.as_bytes()),
            [],
        );
    }

    /// Deletes `url`'s record, which points at `blob`, in `batch`, with its
    /// `by_blob` key.
    pub(super) fn delete_url(&self, batch: &mut WriteBatch, url: &[u8], blob: &blake3::Hash) {
        batch.delete_cf(self.cf(CF_URLS), url);
        batch.delete_cf(self.cf(CF_BY_BLOB), by_blob_key(blob, url));
    }

    /// Stored bodies, least recently used first, read from `lru` as the
    /// caller goes: stopping early reads no further.
    pub fn least_recently_used(
        &self,
    ) -> impl Iterator<Item = Result<(blake3::Hash, BlobRecord), IndexError>> + '_ {
        self.db
            .iterator_cf(self.cf(CF_LRU), IteratorMode::Start)
            .filter_map(move |item| {
                let key = match item {
                    Ok((key, _)) => key,
                    Err(error) => return Some(Err(error.into())),
                };
                let (access_ms, hash) = split_lru_key(&key)?;
                match self.blob(&hash) {
                    Ok(Some(record)) if record.last_access_ms == access_ms => {
                        Some(Ok((hash, record)))
                    }
                    Ok(_) => None,
                    Err(error) => Some(Err(error)),
                }
            })
    }

    /// The URL keys `by_blob` lists under `hash`: one prefix scan.
    pub(super) fn urls_of_blob(&self, hash: &blake3::Hash) -> Result<Vec<Vec<u8>>, IndexError> {
        let mut keys = self.keys_with_prefix(CF_BY_BLOB, hash.as_bytes())?;
        for key in &mut keys {
            key.drain(..HASH_BYTES);
        }
        Ok(keys)
    }

    /// One URL whose body is `hash` (the first in byte order), if any.
    pub fn a_url_of_blob(&self, hash: &blake3::Hash) -> Result<Option<String>, IndexError> {
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_BY_BLOB));
        iter.seek(hash.as_bytes());
        let url = iter
            .key()
            .filter(|key| key.starts_with(hash.as_bytes()))
            .map(|key| String::from_utf8_lossy(&key[HASH_BYTES..]).into_owned());
        iter.status()?;
        Ok(url)
    }

    /// At open: builds the derived families if this index was written
    /// before them (or a build was cut short).
    pub(super) fn build_derived_if_missing(&self) -> Result<(), IndexError> {
        if self.db.get_cf(self.cf(CF_META), BUILT_KEY)?.is_some() {
            return Ok(());
        }
        tracing::info!("building the index's lru and by_blob families (once per cache dir)");
        self.rebuild_derived()
    }

    /// Empties both derived families and fills them again from the records,
    /// in bounded batches. The built mark goes first and comes back last.
    pub fn rebuild_derived(&self) -> Result<(), IndexError> {
        let _guard = self.write_lock.lock();
        self.db.delete_cf(self.cf(CF_META), BUILT_KEY)?;
        let mut batch = BoundedBatch::new(self);
        for family in [CF_LRU, CF_BY_BLOB] {
            for item in self.db.iterator_cf(self.cf(family), IteratorMode::Start) {
                batch.delete(family, &item?.0)?;
            }
            for key in self.keys_from_records(family) {
                batch.put(family, &key?)?;
            }
        }
        batch.finish()
    }

    /// Every derived key that disagrees with the records, both ways (for
    /// `verify`). Point lookups cost a block read each on a large index, so
    /// the keys the records call for are sorted in memory, one family at a
    /// time, and merged with a scan of the family.
    pub fn derived_mismatches(&self) -> Result<Vec<DerivedMismatch>, IndexError> {
        let mut found = Vec::new();
        for family in [CF_LRU, CF_BY_BLOB] {
            let mut expected = self
                .keys_from_records(family)
                .collect::<Result<Vec<_>, _>>()?;
            expected.sort_unstable();
            let mut expected = expected.into_iter().peekable();
            for item in self.db.iterator_cf(self.cf(family), IteratorMode::Start) {
                let (key, _) = item?;
                while let Some(key) = expected.next_if(|wanted| **wanted < *key) {
                    found.push(DerivedMismatch::Missing { family, key });
                }
                if expected.next_if(|wanted| **wanted == *key).is_none() {
                    let key = key.into_vec();
                    found.push(DerivedMismatch::Stale { family, key });
                }
            }
            found.extend(expected.map(|key| DerivedMismatch::Missing { family, key }));
        }
        Ok(found)
    }

    /// The keys of derived `family` that the records call for, read from
    /// the records: `lru` from `blobs`, `by_blob` from `urls`. A record that
    /// cannot be decoded calls for none.
    fn keys_from_records(
        &self,
        family: &'static str,
    ) -> impl Iterator<Item = Result<Vec<u8>, IndexError>> + '_ {
        let records = if family == CF_LRU { CF_BLOBS } else { CF_URLS };
        self.db
            .iterator_cf(self.cf(records), IteratorMode::Start)
            .filter_map(move |item| match item {
                Ok((key, value)) => derived_key(family, &key, &value).map(Ok),
                Err(error) => Some(Err(error.into())),
            })
    }
}

/// The batches of a rebuild: each written out once it holds
/// [`REBUILD_BATCH_KEYS`] keys.
struct BoundedBatch<'a> {
    index: &'a Index,
    batch: WriteBatch,
}

impl<'a> BoundedBatch<'a> {
    fn new(index: &'a Index) -> Self {
        BoundedBatch {
            index,
            batch: WriteBatch::default(),
        }
    }

    fn put(&mut self, family: &str, key: &[u8]) -> Result<(), IndexError> {
        self.batch.put_cf(self.index.cf(family), key, []);
        self.write_if_full()
    }

    fn delete(&mut self, family: &str, key: &[u8]) -> Result<(), IndexError> {
        self.batch.delete_cf(self.index.cf(family), key);
        self.write_if_full()
    }

    fn write_if_full(&mut self) -> Result<(), IndexError> {
        if self.batch.len() >= REBUILD_BATCH_KEYS {
            self.index.write(std::mem::take(&mut self.batch), false)?;
        }
        Ok(())
    }

    /// Writes the rest with the built mark, synced: the mark is never on
    /// disk without every key before it.
    fn finish(mut self) -> Result<(), IndexError> {
        self.batch.put_cf(self.index.cf(CF_META), BUILT_KEY, b"1");
        self.index.write(self.batch, true)?;
        Ok(())
    }
}

//! The core: what a path is, where its bytes come from, and when to ask the
//! origin again.
//!
//! `resolve` answers a lookup: a stored body that is still fresh comes from
//! the index alone; a stale one is revalidated with a conditional GET (a 304
//! keeps the blob, a 200 streams the new body, an origin failure serves the
//! stale body); an unknown URL is probed with a HEAD, so `stat` never
//! downloads a body. `open` joins the URL's download or starts one.
//!
//! Single flight: every origin exchange for one URL happens under that URL's
//! async lock, and downloads are registered before the lock is released, so
//! any number of concurrent readers cause one request. Directory knowledge
//! comes from redirects to `url/`, listings, and the URLs already cached below
//! a path, so a remount can walk to cached files without asking the origin.

mod download;
mod freshness;
mod location;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, StatusCode};
use serde_json::json;
use url::Url;

pub use download::{Download, DownloadError, Phase};
use freshness::unix_secs;
pub use freshness::{EntryMeta, TtlRules};
pub use location::Location;

use crate::config::{ListingMode, Origin};
use crate::control::events::{EventKind, Events};
use crate::control::stats::{Counters, Stats};
use crate::namespace::{self, NamespaceError};
use crate::origin::{BodyStream, Head, ListingEntry, OriginClient, OriginError};
use crate::store::{Store, StoreError};

/// How long a HEAD's answer for an uncached file is reused.
const PROBE_TTL: Duration = Duration::from_secs(5);
/// How long an origin's directory listing is reused.
const LISTING_TTL: Duration = Duration::from_secs(10);
/// Requests for one URL that arrive while its validation runs, or this soon
/// after it finished, share its answer: a burst of readers of a `no-cache`
/// or expired entry causes one conditional request, not one per reader.
const COLLAPSE_WINDOW: Duration = Duration::from_millis(200);
/// Over the cap, eviction goes down to this share of it, so it runs once per
/// few percent of new data rather than after every download.
const EVICTION_TARGET_PERCENT: u64 = 95;
/// Cached URLs scanned at most to list one directory.
const MAX_CACHED_SCAN: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("not found")]
    NotFound,
    #[error("{url}: the origin refused access ({status})")]
    Forbidden { url: String, status: StatusCode },
    #[error("{url}: origin answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: the origin failed moments ago ({reason})")]
    SharedFailure { url: String, reason: String },
    #[error("offline and not cached: {url}")]
    Offline { url: String },
    #[error(transparent)]
    Name(#[from] NamespaceError),
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cache I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl From<crate::store::IndexError> for CacheError {
    fn from(e: crate::store::IndexError) -> Self {
        CacheError::Store(e.into())
    }
}

/// A body in the blob store.
#[derive(Debug, Clone, Copy)]
pub struct StoredFile {
    pub ino: u64,
    pub hash: blake3::Hash,
    pub size: u64,
    /// Paths known to point at this body.
    pub links: u64,
    pub mtime: SystemTime,
    /// How long the path may keep pointing at it without asking again.
    pub ttl: Duration,
}

/// A file the origin has and the store does not (yet).
#[derive(Debug, Clone, Copy)]
pub struct RemoteFile {
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

/// What a path is.
#[derive(Debug, Clone, Copy)]
pub enum Resolved {
    Stored(StoredFile),
    Remote(RemoteFile),
    Directory,
}

/// Where a URL's entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Stored and fresh: served without asking the origin.
    Fresh,
    /// Stored, but the next lookup revalidates it.
    Stale,
    /// Its body is downloading now.
    Fetching,
    /// Not stored: the origin has it.
    Remote,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Fresh => "fresh",
            EntryState::Stale => "stale",
            EntryState::Fetching => "fetching",
            EntryState::Remote => "remote",
        }
    }
}

/// What the cache knows of one URL (the `user.fetchfs.*` extended attributes).
#[derive(Debug, Clone)]
pub struct Description {
    pub url: String,
    pub blake3: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub state: EntryState,
}

impl Description {
    /// The attribute names this description has values for, and the values.
    pub fn xattrs(&self) -> Vec<(&'static str, String)> {
        let optional = [
            ("user.fetchfs.blake3", &self.blake3),
            ("user.fetchfs.etag", &self.etag),
            ("user.fetchfs.last_modified", &self.last_modified),
        ];
        let mut attrs = vec![("user.fetchfs.url", self.url.clone())];
        attrs.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| Some((name, value.clone()?))),
        );
        attrs.push(("user.fetchfs.state", self.state.as_str().to_string()));
        attrs
    }
}

/// A stored body open for reading.
#[derive(Debug)]
pub struct OpenBlob {
    pub file: File,
    pub hash: blake3::Hash,
}

/// An open file's source of bytes.
pub enum Opened {
    Stored(OpenBlob),
    Streaming(Arc<Download>),
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub is_dir: bool,
}

/// When URLs were last validated with their origin, and how it went, for
/// request collapsing: readers that share a failed validation share its failure.
#[derive(Default)]
struct RecentValidations {
    at: HashMap<String, (Instant, Outcome)>,
}

/// How a validation ended: the origin answered, or the error it failed with.
#[derive(Debug, Clone)]
enum Outcome {
    Answered,
    Failed(String),
}

impl RecentValidations {
    fn record(&mut self, url: &str, outcome: Outcome) {
        // Entries older than the window serve nobody; drop them as the map grows.
        if self.at.len() >= 1024 {
            self.at.retain(|_, (at, _)| at.elapsed() < COLLAPSE_WINDOW);
        }
        self.at.insert(url.to_string(), (Instant::now(), outcome));
    }

    fn forget(&mut self, url: &str) {
        self.at.remove(url);
    }

    fn get(&self, url: &str) -> Option<&(Instant, Outcome)> {
        self.at.get(url)
    }
}

impl Outcome {
    fn of<T>(result: &Result<T, CacheError>) -> Outcome {
        match result {
            Ok(_) | Err(CacheError::NotFound) => Outcome::Answered,
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }
}

/// An origin's listing of one directory, as fetched at `at`.
struct Listing {
    at: Instant,
    entries: Arc<Vec<ListingEntry>>,
}

impl Listing {
    fn is_fresh(&self) -> bool {
        self.at.elapsed() < LISTING_TTL
    }
}

struct Probe {
    at: Instant,
    file: RemoteFile,
}

pub struct Cache {
    store: Arc<Store>,
    origin: OriginClient,
    counters: Arc<Counters>,
    offline: bool,
    max_cache_size: Option<u64>,
    events: Events,
    /// Stored bodies with open readers, and how many: never evicted.
    open_blobs: parking_lot::Mutex<HashMap<blake3::Hash, usize>>,
    url_locks: parking_lot::Mutex<HashMap<String, UrlLock>>,
    validations: parking_lot::Mutex<RecentValidations>,
    downloads: parking_lot::Mutex<HashMap<String, Arc<Download>>>,
    probes: parking_lot::Mutex<HashMap<String, Probe>>,
    negative: parking_lot::Mutex<HashMap<String, Instant>>,
    listings: parking_lot::Mutex<HashMap<String, Listing>>,
}

impl Cache {
    /// `max_cache_size` caps the bytes of stored bodies (least recently used go first).
    pub fn new(store: Store, offline: bool, max_cache_size: Option<u64>) -> Arc<Cache> {
        let counters = Arc::new(Counters::default());
        Arc::new(Cache {
            store: Arc::new(store),
            origin: OriginClient::new(offline, Arc::clone(&counters)),
            counters,
            offline,
            max_cache_size,
            events: Events::default(),
            open_blobs: Default::default(),
            url_locks: Default::default(),
            validations: Default::default(),
            downloads: Default::default(),
            probes: Default::default(),
            negative: Default::default(),
            listings: Default::default(),
        })
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn stats(&self) -> Stats {
        self.counters.snapshot(self.store.index.totals())
    }

    /// What the path at `loc` is now: revalidates a stale entry, probes an unknown one.
    pub async fn resolve(self: &Arc<Self>, loc: &Location) -> Result<Resolved, CacheError> {
        if loc.components.is_empty() {
            return Ok(Resolved::Directory);
        }
        let url = loc.file_url()?;
        if let Some(stale) = self.serve_while_revalidating(loc, &url)? {
            return Ok(stale);
        }
        let guard = self.lock_url(url.as_str()).await;
        if let Some(download) = self.download(url.as_str()) {
            return Ok(remote_of(&download));
        }
        if let Some(record) = self.store.index.url(url.as_str())? {
            let meta = EntryMeta::from_json(&record.meta);
            let remaining = meta
                .as_ref()
                .map(|m| m.remaining(SystemTime::now()))
                .unwrap_or_default();
            let shared = self.shared_validation(&guard);
            if let (Some(meta), Some(Outcome::Failed(reason))) = (&meta, &shared) {
                let error = CacheError::SharedFailure {
                    url: url.to_string(),
                    reason: reason.clone(),
                };
                return self.serve_stale(&url, &record.blob, meta, error);
            }
            let usable = !remaining.is_zero() || self.offline || shared.is_some();
            if meta.is_some() && usable {
                return self.stored_file(&record.blob, remaining);
            }
            let resolved = self.revalidate(loc, &url).await;
            self.validations
                .lock()
                .record(url.as_str(), Outcome::of(&resolved));
            return resolved;
        }
        if self.is_known_missing(url.as_str()) {
            return Err(CacheError::NotFound);
        }
        if self.has_cached_below(&loc.dir_url()?)? || self.listed_as_dir(loc) {
            return Ok(Resolved::Directory);
        }
        if let Some(file) = self.recent_probe(url.as_str()) {
            return Ok(Resolved::Remote(file));
        }
        if self.offline {
            return Err(CacheError::Offline {
                url: url.to_string(),
            });
        }
        self.probe(loc, &url).await
    }

    /// Opens a stored body by its inode (an open of a path the kernel already resolved).
    pub fn open_blob(&self, ino: u64) -> Result<OpenBlob, CacheError> {
        let stored = self.blob(ino)?;
        self.open_stored(stored.hash)
    }

    /// Opens a stored body for reading; it is not evicted until `close_blob`.
    fn open_stored(&self, hash: blake3::Hash) -> Result<OpenBlob, CacheError> {
        let file = self.store.blobs.open_blob(&hash)?;
        *self.open_blobs.lock().entry(hash).or_default() += 1;
        let _ = self.store.index.touch(&hash, crate::store::unix_now_ms());
        self.counters.add_hit();
        self.events
            .emit(EventKind::Hit, json!({ "blake3": hash.to_hex().as_str() }));
        Ok(OpenBlob { file, hash })
    }

    /// A reader of a stored body is done with it.
    pub fn close_blob(&self, hash: &blake3::Hash) {
        let mut open = self.open_blobs.lock();
        if let Some(count) = open.get_mut(hash) {
            *count -= 1;
            if *count == 0 {
                open.remove(hash);
            }
        }
    }

    /// Evicts least recently used bodies once the store is over its cap.
    fn enforce_cap(&self) -> Result<(), CacheError> {
        let Some(cap) = self.max_cache_size else {
            return Ok(());
        };
        if self.store.index.totals().cache_bytes <= cap {
            return Ok(());
        }
        let target = cap / 100 * EVICTION_TARGET_PERCENT;
        let keep: HashSet<blake3::Hash> = self.open_blobs.lock().keys().copied().collect();
        let evicted = self.store.evict_to(target, &keep)?;
        self.counters.add_evictions(evicted);
        self.events.emit(
            EventKind::Evict,
            json!({ "reason": "max_cache_size", "bodies": evicted }),
        );
        Ok(())
    }

    /// The attributes of a stored body by its inode.
    pub fn blob(&self, ino: u64) -> Result<StoredFile, CacheError> {
        let (hash, record) = self
            .store
            .index
            .blob_by_ino(ino)?
            .ok_or(CacheError::NotFound)?;
        Ok(StoredFile {
            ino,
            hash,
            size: record.size,
            links: record.refs,
            mtime: from_unix_secs(record.mtime),
            ttl: Duration::ZERO,
        })
    }

    /// Fetches the file at `loc` into the cache unless it is stored and fresh.
    pub async fn prefetch(self: &Arc<Self>, loc: &Location) {
        let result = match self.resolve(loc).await {
            Ok(Resolved::Remote(_)) => self.open(loc).await.map(|_| ()),
            Ok(_) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            let url = loc.file_url().map(|u| u.to_string()).unwrap_or_default();
            tracing::warn!("prefetch of {url}: {error}");
            self.events.emit(
                EventKind::Error,
                json!({ "url": url, "message": error.to_string(), "prefetch": true }),
            );
        }
    }

    /// Every cached URL, in order.
    pub fn cached_urls(&self) -> Result<Vec<String>, CacheError> {
        let records = self.store.index.urls_with_prefix("", usize::MAX)?;
        Ok(records.into_iter().map(|(url, _)| url).collect())
    }

    /// Marks a cached URL stale: its next lookup revalidates with the origin.
    pub fn invalidate(&self, url: &str) -> Result<(), CacheError> {
        let Some(record) = self.store.index.url(url)? else {
            return Ok(());
        };
        if let Some(mut meta) = EntryMeta::from_json(&record.meta) {
            meta.invalidated = true;
            self.store.index.update_meta(url, meta.to_json())?;
        }
        // A validation that finished just before must not answer for the next lookup.
        self.validations.lock().forget(url);
        self.events
            .emit(EventKind::Invalidate, json!({ "url": url }));
        Ok(())
    }

    /// Drops a cached URL, and its body if nothing else points at it. A
    /// reader with the body open keeps reading it.
    pub fn evict(&self, url: &str) -> Result<(), CacheError> {
        self.store.remove_url(url)?;
        self.counters.add_evictions(1);
        self.events.emit(
            EventKind::Evict,
            json!({ "url": url, "reason": "requested" }),
        );
        Ok(())
    }

    /// What the cache knows of the file at `loc`, for extended attributes; no network.
    pub fn describe(&self, loc: &Location) -> Result<Description, CacheError> {
        let url = loc.file_url()?;
        let record = self.store.index.url(url.as_str())?;
        let meta = record.as_ref().and_then(|r| EntryMeta::from_json(&r.meta));
        let state = if self.download(url.as_str()).is_some() {
            EntryState::Fetching
        } else {
            match &meta {
                Some(meta) if !meta.remaining(SystemTime::now()).is_zero() => EntryState::Fresh,
                Some(_) => EntryState::Stale,
                None => EntryState::Remote,
            }
        };
        Ok(Description {
            url: url.to_string(),
            blake3: record.map(|r| r.blob.to_hex().to_string()),
            etag: meta.as_ref().and_then(|m| m.etag.clone()),
            last_modified: meta.and_then(|m| m.last_modified),
            state,
        })
    }

    /// Opens the file at `loc` for reading: joins its download, starts one, or
    /// (if it was stored meanwhile) opens the blob.
    pub async fn open(self: &Arc<Self>, loc: &Location) -> Result<Opened, CacheError> {
        let url = loc.file_url()?;
        let _guard = self.lock_url(url.as_str()).await;
        if let Some(download) = self.download(url.as_str()) {
            self.counters.add_miss();
            return Ok(Opened::Streaming(download));
        }
        if let Some(record) = self.store.index.url(url.as_str())? {
            return Ok(Opened::Stored(self.open_stored(record.blob)?));
        }
        if self.offline {
            return Err(CacheError::Offline {
                url: url.to_string(),
            });
        }
        let body = self.origin.get(&loc.origin, &url, HeaderMap::new()).await?;
        let download = self.accept_body(loc, &url, body)?;
        self.counters.add_miss();
        Ok(Opened::Streaming(download))
    }

    /// The names in the directory at `loc`: the origin's listing merged with
    /// what is cached below it.
    pub async fn list(self: &Arc<Self>, loc: &Location) -> Result<Vec<DirEntry>, CacheError> {
        let dir_url = loc.dir_url()?;
        let mut names: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        let mut listing_error = None;
        if loc.origin.listing == ListingMode::Auto && !self.offline {
            match self.listing(&loc.origin, &dir_url).await {
                Ok(Some(entries)) => {
                    names.extend(entries.iter().map(|e| (e.name.clone(), e.is_dir)))
                }
                Ok(None) => {}
                Err(e) => listing_error = Some(e),
            }
        }
        for (url, _) in self
            .store
            .index
            .urls_with_prefix(dir_url.as_str(), MAX_CACHED_SCAN)?
        {
            let Some(relative) = Url::parse(&url)
                .ok()
                .and_then(|u| namespace::relative_components(&dir_url, &u))
            else {
                continue;
            };
            if let Some(first) = relative.first() {
                *names.entry(first.clone()).or_insert(false) |= relative.len() > 1;
            }
        }
        if let Some(error) = listing_error {
            if names.is_empty() {
                return Err(error);
            }
            tracing::warn!("listing {dir_url}: {error}; showing cached entries only");
        }
        Ok(names
            .into_iter()
            .map(|(name, is_dir)| DirEntry { name, is_dir })
            .collect())
    }

    async fn revalidate(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
    ) -> Result<Resolved, CacheError> {
        let record = self
            .store
            .index
            .url(url.as_str())?
            .ok_or(CacheError::NotFound)?;
        let Some(meta) = EntryMeta::from_json(&record.meta) else {
            // Unreadable metadata: treat like an unknown URL.
            return self.probe(loc, url).await;
        };
        let now = SystemTime::now();
        self.counters.add_revalidation();
        self.events
            .emit(EventKind::Revalidate, json!({ "url": url.as_str() }));
        let conditional = meta.conditional_headers(url, now);
        let mut body = match self.origin.get(&loc.origin, url, conditional).await {
            Ok(body) => body,
            Err(error) => return self.serve_stale(url, &record.blob, &meta, error.into()),
        };
        if body.head.status == StatusCode::NOT_MODIFIED {
            let status = body.head.status;
            let refreshed = meta.revalidated(
                url,
                &body.head.request_headers,
                status,
                &body.head.headers,
                &ttl_rules(&loc.origin),
                now,
            );
            if let Some(refreshed) = refreshed {
                self.counters.add_not_modified();
                self.store
                    .index
                    .update_meta(url.as_str(), refreshed.to_json())?;
                let remaining = refreshed.remaining(SystemTime::now());
                return self.stored_file(&record.blob, remaining);
            }
            // The 304 confirms another response than the stored one: fetch anew.
            body = match self.origin.get(&loc.origin, url, HeaderMap::new()).await {
                Ok(body) => body,
                Err(error) => return self.serve_stale(url, &record.blob, &meta, error.into()),
            };
        }
        let status = body.head.status;
        if status.is_server_error() {
            let error = CacheError::Status {
                url: url.to_string(),
                status,
            };
            return self.serve_stale(url, &record.blob, &meta, error);
        }
        if matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) {
            self.store.remove_url(url.as_str())?;
            self.remember_missing(url.as_str(), loc.origin.negative_ttl);
            return Err(CacheError::NotFound);
        }
        let download = self.accept_body(loc, url, body)?;
        Ok(remote_of(&download))
    }

    /// Stale-if-error: the origin failed, so the stored body is served as it is.
    fn serve_stale(
        &self,
        url: &Url,
        blob: &blake3::Hash,
        meta: &EntryMeta,
        error: CacheError,
    ) -> Result<Resolved, CacheError> {
        if !meta.may_serve_stale_on_error() {
            // must-revalidate: the reader gets the error, never the stale body.
            self.events.emit(
                EventKind::Error,
                json!({ "url": url.as_str(), "message": error.to_string() }),
            );
            return Err(error);
        }
        tracing::warn!("{url}: serving the stale copy, the origin failed: {error}");
        self.counters.add_stale_served();
        self.events.emit(
            EventKind::Error,
            json!({ "url": url.as_str(), "message": error.to_string(), "served": "stale" }),
        );
        self.stored_file(blob, Duration::ZERO)
    }

    /// The stored body, if it is stale but within its `stale-while-revalidate`
    /// window: it is served at once, without waiting for the URL's lock.
    fn serve_while_revalidating(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
    ) -> Result<Option<Resolved>, CacheError> {
        let Some(record) = self.store.index.url(url.as_str())? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let within_window = EntryMeta::from_json(&record.meta)
            .is_some_and(|m| m.remaining(now).is_zero() && m.may_serve_while_revalidating(now));
        if !within_window || self.offline {
            return Ok(None);
        }
        self.revalidate_in_background(loc.clone(), url.clone());
        self.stored_file(&record.blob, Duration::ZERO).map(Some)
    }

    /// stale-while-revalidate: the stale body is served now; one background
    /// task asks the origin (readers meanwhile share its answer).
    fn revalidate_in_background(self: &Arc<Self>, loc: Location, url: Url) {
        if self.download(url.as_str()).is_some() {
            // The new body is already on its way.
            return;
        }
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let guard = cache.lock_url(url.as_str()).await;
            if cache.shared_validation(&guard).is_some() {
                return;
            }
            let result = cache.revalidate(&loc, &url).await;
            if let Err(error) = &result {
                tracing::warn!("background revalidation of {url}: {error}");
            }
            cache
                .validations
                .lock()
                .record(url.as_str(), Outcome::of(&result));
        });
    }

    /// A HEAD for a URL the cache does not have: file, directory or nothing.
    async fn probe(self: &Arc<Self>, loc: &Location, url: &Url) -> Result<Resolved, CacheError> {
        let head = self.origin.head(&loc.origin, url).await?;
        if head.url.path().ends_with('/') && !url.path().ends_with('/') {
            return Ok(Resolved::Directory);
        }
        let status = head.status;
        if status.is_success() {
            return self.remote_file(loc, url, &head).await;
        }
        let missing = matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE);
        match loc.origin.listing {
            ListingMode::None if missing || status == StatusCode::FORBIDDEN => {
                return Ok(Resolved::Directory);
            }
            ListingMode::Auto if missing => {
                if let Ok(Some(_)) = self.listing(&loc.origin, &loc.dir_url()?).await {
                    return Ok(Resolved::Directory);
                }
            }
            _ => {}
        }
        match status {
            _ if missing => {
                self.remember_missing(url.as_str(), loc.origin.negative_ttl);
                Err(CacheError::NotFound)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(CacheError::Forbidden {
                url: url.to_string(),
                status,
            }),
            _ => Err(CacheError::Status {
                url: url.to_string(),
                status,
            }),
        }
    }

    /// A file the origin has. Its size must be true, so an origin that does not
    /// announce it gets its body fetched now.
    async fn remote_file(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
        head: &Head,
    ) -> Result<Resolved, CacheError> {
        let mtime = head
            .header_str(http::header::LAST_MODIFIED)
            .and_then(|text| httpdate::parse_http_date(text).ok());
        if let Some(size) = head.content_length() {
            let file = RemoteFile { size, mtime };
            self.probes.lock().insert(
                url.to_string(),
                Probe {
                    at: Instant::now(),
                    file,
                },
            );
            return Ok(Resolved::Remote(file));
        }
        let body = self.origin.get(&loc.origin, url, HeaderMap::new()).await?;
        let download = self.accept_body(loc, url, body)?;
        self.counters.add_miss();
        let size = download.wait_until_whole().await?;
        if let Some(record) = self.store.index.url(url.as_str())? {
            let meta = EntryMeta::from_json(&record.meta);
            if let Some(meta) = meta {
                let remaining = meta.remaining(SystemTime::now());
                return self.stored_file(&record.blob, remaining);
            }
        }
        Ok(Resolved::Remote(RemoteFile { size, mtime }))
    }

    /// Takes a GET's answer: a 200 becomes a download, anything else an error.
    fn accept_body(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
        body: BodyStream,
    ) -> Result<Arc<Download>, CacheError> {
        let status = body.head.status;
        if status == StatusCode::OK {
            return self.start_download(&loc.origin, url, body);
        }
        if matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) {
            self.remember_missing(url.as_str(), loc.origin.negative_ttl);
            return Err(CacheError::NotFound);
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(CacheError::Forbidden {
                url: url.to_string(),
                status,
            });
        }
        Err(CacheError::Status {
            url: url.to_string(),
            status,
        })
    }

    fn start_download(
        self: &Arc<Self>,
        origin: &Origin,
        url: &Url,
        body: BodyStream,
    ) -> Result<Arc<Download>, CacheError> {
        let head = &body.head;
        let meta = EntryMeta::from_response(
            url,
            &head.request_headers,
            head.status,
            &head.headers,
            &ttl_rules(origin),
            SystemTime::now(),
        );
        let partial = self.store.blobs.create_partial()?;
        let mtime = meta.last_modified.is_some().then(|| meta.mtime());
        let download = Arc::new(Download::new(
            url.to_string(),
            head.content_length(),
            mtime,
            partial.file(),
        ));
        self.downloads
            .lock()
            .insert(url.to_string(), Arc::clone(&download));
        self.counters.download_started();
        self.events.emit(
            EventKind::Fetch,
            json!({ "url": url.as_str(), "size": download.size }),
        );
        let cache = Arc::clone(self);
        let task_download = Arc::clone(&download);
        tokio::spawn(async move {
            let url = task_download.url.clone();
            match cache.fill(&task_download, body, partial, meta).await {
                Ok(()) => task_download.complete(),
                Err(error) => {
                    tracing::warn!("download of {url} failed: {error}");
                    cache.events.emit(
                        EventKind::Error,
                        json!({ "url": url, "message": error.to_string() }),
                    );
                    task_download.fail(error.to_string());
                }
            }
            let mut downloads = cache.downloads.lock();
            if downloads
                .get(&url)
                .is_some_and(|d| Arc::ptr_eq(d, &task_download))
            {
                downloads.remove(&url);
            }
            drop(downloads);
            cache.probes.lock().remove(&url);
            cache.counters.download_ended();
        });
        Ok(download)
    }

    /// Streams the body to disk, then commits it (unless it may not be stored).
    async fn fill(
        &self,
        download: &Download,
        mut body: BodyStream,
        mut partial: crate::store::PartialBlob,
        meta: EntryMeta,
    ) -> Result<(), CacheError> {
        while let Some(chunk) = body.next_chunk().await? {
            partial.append(&chunk)?;
            download.advance(partial.len());
        }
        if !meta.is_storable() {
            return Ok(());
        }
        let store = Arc::clone(&self.store);
        let url = download.url.clone();
        let mtime = unix_secs(meta.mtime());
        tokio::task::spawn_blocking(move || store.commit(partial, &url, mtime, meta.to_json()))
            .await
            .map_err(|e| CacheError::Io(std::io::Error::other(e)))??;
        if let Err(error) = self.enforce_cap() {
            tracing::warn!("evicting to stay under the cache size cap: {error}");
        }
        Ok(())
    }

    fn stored_file(&self, hash: &blake3::Hash, ttl: Duration) -> Result<Resolved, CacheError> {
        let record = self.store.index.blob(hash)?.ok_or(CacheError::NotFound)?;
        Ok(Resolved::Stored(StoredFile {
            ino: record.ino,
            hash: *hash,
            size: record.size,
            links: record.refs,
            mtime: from_unix_secs(record.mtime),
            ttl,
        }))
    }

    async fn listing(
        &self,
        origin: &Origin,
        dir_url: &Url,
    ) -> Result<Option<Arc<Vec<ListingEntry>>>, CacheError> {
        if let Some(listing) = self.listings.lock().get(dir_url.as_str())
            && listing.is_fresh()
        {
            return Ok(Some(Arc::clone(&listing.entries)));
        }
        let Some(entries) = self.origin.listing(origin, dir_url).await? else {
            return Ok(None);
        };
        let entries = Arc::new(entries);
        self.listings.lock().insert(
            dir_url.to_string(),
            Listing {
                at: Instant::now(),
                entries: Arc::clone(&entries),
            },
        );
        Ok(Some(entries))
    }

    /// Whether a recent listing of the parent shows this name as a directory.
    fn listed_as_dir(&self, loc: &Location) -> bool {
        let Some((parent, name)) = loc.parent_and_name() else {
            return true;
        };
        let Ok(parent_url) = parent.dir_url() else {
            return false;
        };
        self.listings
            .lock()
            .get(parent_url.as_str())
            .is_some_and(|listing| {
                listing.is_fresh() && listing.entries.iter().any(|e| e.is_dir && e.name == name)
            })
    }

    fn has_cached_below(&self, dir_url: &Url) -> Result<bool, CacheError> {
        Ok(!self
            .store
            .index
            .urls_with_prefix(dir_url.as_str(), 1)?
            .is_empty())
    }

    fn download(&self, url: &str) -> Option<Arc<Download>> {
        self.downloads.lock().get(url).cloned()
    }

    fn recent_probe(&self, url: &str) -> Option<RemoteFile> {
        let probes = self.probes.lock();
        probes
            .get(url)
            .filter(|p| p.at.elapsed() < PROBE_TTL)
            .map(|p| p.file)
    }

    fn remember_missing(&self, url: &str, ttl: Duration) {
        if !ttl.is_zero() {
            self.negative
                .lock()
                .insert(url.to_string(), Instant::now() + ttl);
        }
    }

    fn is_known_missing(&self, url: &str) -> bool {
        let mut negative = self.negative.lock();
        match negative.get(url) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                negative.remove(url);
                false
            }
            None => false,
        }
    }

    /// The outcome of a validation of the guarded URL that finished while
    /// this request waited, or just before it came: this request shares it.
    fn shared_validation(&self, guard: &UrlGuard<'_>) -> Option<Outcome> {
        let validations = self.validations.lock();
        let (at, outcome) = validations.get(&guard.url)?;
        (*at + COLLAPSE_WINDOW >= guard.asked_at).then(|| outcome.clone())
    }

    /// The URL's lock: every origin exchange for one URL happens under it.
    async fn lock_url(&self, url: &str) -> UrlGuard<'_> {
        let asked_at = Instant::now();
        let lock = Arc::clone(self.url_locks.lock().entry(url.to_string()).or_default());
        let guard = lock.lock_owned().await;
        UrlGuard {
            cache: self,
            url: url.to_string(),
            asked_at,
            guard: Some(guard),
        }
    }
}

/// The origin's configured freshness bounds.
fn ttl_rules(origin: &Origin) -> TtlRules {
    TtlRules {
        default_ttl: origin.default_ttl,
        min_ttl: origin.min_ttl,
        max_ttl: origin.max_ttl,
    }
}

fn from_unix_secs(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn remote_of(download: &Download) -> Resolved {
    let size = download.size.unwrap_or_else(|| download.progress().written);
    Resolved::Remote(RemoteFile {
        size,
        mtime: download.mtime,
    })
}

/// One URL's exchange lock: every origin exchange for the URL happens under it.
type UrlLock = Arc<tokio::sync::Mutex<()>>;

struct UrlGuard<'a> {
    cache: &'a Cache,
    url: String,
    /// When this request started waiting for the lock.
    asked_at: Instant,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for UrlGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.cache.url_locks.lock();
        // Only the map holds it now: nobody waits, so the entry can go.
        if locks
            .get(&self.url)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.url);
        }
    }
}

//! The core: what a path is, where its bytes come from, and when to ask the
//! origin again. Everything here is below the FUSE adapter and above the
//! network and the disk; nothing here knows the kernel.
//!
//! One room per concern:
//! - [`resolve`](self::resolve): lookups, freshness and revalidation;
//! - [`fetch`](self::fetch): opens, and the task that streams a body to disk;
//! - [`download`]: one body on its way, readable while it arrives;
//! - [`parts`]: range requests for the parts of a body read out of order;
//! - [`flight`]: single flight, one origin exchange and one download per URL;
//! - [`recent`]: the short-lived memory of 404s and validation outcomes;
//! - [`directory`]: names known without a body (HEADs, listings, the index);
//! - [`eviction`]: the size cap, a full disk, `evict`, `invalidate`, and the
//!   bodies kept because a handle has them open;
//! - [`prefetch`]: the per-origin queues behind `.fetchfs/prefetch`;
//! - [`freshness`]: what is remembered of a response and how long it is fresh.
//!
//! Blob inodes: a stored body's inode number comes from the index, is stable
//! across remounts and shared by every path with that body; [`is_blob_inode`]
//! tells them from the adapter's own numbers.

mod directory;
mod download;
mod entry;
mod eviction;
mod expiring;
mod fetch;
mod fleet;
mod flight;
mod freshness;
mod location;
mod parts;
mod prefetch;
mod recent;
mod resolve;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use url::Url;

pub use crate::store::Totals;
pub use download::{Access, Download, DownloadError, Phase, Reader};
pub use entry::{
    Description, DirEntry, EntryState, OpenBlob, Opened, RemoteFile, Resolved, StoredFile,
};
pub use freshness::{EntryMeta, TtlRules};
pub use location::Location;

use crate::config::{Origin, ProxyEnv};
use crate::namespace::NamespaceError;
use crate::origin::{OriginClient, OriginError};
use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("not found")]
    NotFound,
    /// The body behind a blob inode left the store (evicted): the kernel's
    /// entry for it is stale and must be looked up again.
    #[error("the body of inode {ino} is no longer stored")]
    Gone { ino: u64 },
    #[error("{url}: the origin refused access ({status})")]
    Forbidden { url: String, status: StatusCode },
    #[error("{url}: origin answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: the origin failed moments ago ({reason})")]
    SharedFailure { url: String, reason: String },
    #[error("offline and not cached: {url}")]
    Offline { url: String },
    #[error("{url}: stopped, no reader was left")]
    Abandoned { url: String },
    #[error("{url}: the daemon failed on it ({message}); see the log")]
    Panic { url: String, message: String },
    #[error(transparent)]
    Name(#[from] NamespaceError),
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Part(#[from] parts::PartError),
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

impl CacheError {
    /// Whether the error is the cache's disk being full.
    pub fn is_disk_full(&self) -> bool {
        fetch::is_disk_full(self)
    }

    /// Whether the error comes from the cache's own disk or index, not from
    /// an origin or a name.
    pub fn is_storage(&self) -> bool {
        matches!(self, CacheError::Store(_) | CacheError::Io(_))
    }
}

impl CacheError {
    /// What went wrong, without the URL the message starts with, for a
    /// line that names the URL already.
    pub fn cause(&self, url: &str) -> String {
        let text = self.to_string();
        match text
            .strip_prefix(url)
            .and_then(|rest| rest.strip_prefix(": "))
        {
            Some(cause) => cause.to_string(),
            None => text,
        }
    }
}

/// Whether `ino` is a stored body's inode number.
pub fn is_blob_inode(ino: u64) -> bool {
    ino & crate::store::BLOB_INO_BIT != 0
}

/// A download under way, as the `status` control file shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub url: String,
    /// Bytes on disk from the start without a gap.
    pub written: u64,
    /// The size the origin announced, if it did.
    pub size: Option<u64>,
    /// Open files reading it (0 for a prefetch).
    pub readers: usize,
}

pub struct Cache {
    store: Arc<Store>,
    origin: OriginClient,
    telemetry: Telemetry,
    offline: bool,
    /// Caps the bytes of stored bodies (least recently opened go first).
    max_cache_size: Option<u64>,
    flights: flight::Flights,
    recent: recent::Recent,
    directory: directory::Directory,
    open: eviction::OpenBodies,
    prefetcher: prefetch::Prefetcher,
    /// Whether users other than the mount's owner may read files (see
    /// [`Cache::set_other_users`]).
    other_users: std::sync::atomic::AtomicBool,
    /// The fleet tier, when the mount has one (see [`Cache::set_fleet`]).
    fleet: std::sync::OnceLock<Arc<crate::shared::Fleet>>,
}

impl Cache {
    /// `max_cache_size` caps the bytes of stored bodies (least recently
    /// used go first); `proxy_env` gives the proxies of origins without a
    /// `proxy` key.
    pub fn new(
        store: Store,
        offline: bool,
        max_cache_size: Option<u64>,
        proxy_env: ProxyEnv,
    ) -> Arc<Cache> {
        let telemetry = Telemetry::default();
        Arc::new(Cache {
            store: Arc::new(store),
            origin: OriginClient::new(offline, proxy_env, Arc::clone(&telemetry.counters)),
            telemetry,
            offline,
            max_cache_size,
            flights: Default::default(),
            recent: Default::default(),
            directory: Default::default(),
            open: Default::default(),
            prefetcher: Default::default(),
            other_users: Default::default(),
            fleet: Default::default(),
        })
    }

    /// Tells the cache that other users read through the mount
    /// (`--allow-other`). A file must then be known private or not before
    /// anyone opens it, which only the origin's answer tells: a listing's
    /// size no longer stands in for a HEAD at lookup, unless the origin
    /// shares what it serves privately anyway.
    pub fn set_other_users(&self, other_users: bool) {
        self.other_users
            .store(other_users, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a lookup may take a file's size from its parent's listing.
    fn trusts_listed_files(&self, origin: &Origin) -> bool {
        !origin.keeps_private() || !self.other_users.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits on the origin within what is left of the current read's budget
    /// for `url` (see [`recent`]).
    async fn within_budget<T, F>(
        &self,
        origin: &Origin,
        url: &Url,
        ask: impl FnOnce(tokio::time::Instant) -> F,
    ) -> Result<T, crate::origin::OriginError>
    where
        F: Future<Output = Result<T, crate::origin::OriginError>>,
    {
        let left = self.recent.budget_left(url.as_str(), origin.timeout);
        let started = tokio::time::Instant::now();
        let result = ask(started + left).await;
        self.recent.spend(url.as_str(), started.elapsed());
        result
    }

    /// A plain GET of `url` (no condition, no range), within the read's
    /// budget (see [`Cache::within_budget`]).
    async fn get_whole(
        &self,
        origin: &Origin,
        url: &Url,
    ) -> Result<crate::origin::BodyStream, crate::origin::OriginError> {
        self.within_budget(origin, url, |deadline| {
            self.origin
                .get(origin, url, http::HeaderMap::new(), deadline)
        })
        .await
    }

    /// Has `tell` called with the inodes of stored bodies whose link count
    /// changed (a URL linked to or dropped from them), once it is written.
    pub fn on_links_changed(&self, tell: impl Fn(&[u64]) + Send + Sync + 'static) {
        self.store.index.on_links_changed(Box::new(tell));
    }

    /// The counters and events every layer reports into.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The downloads under way, in URL order.
    pub fn in_flight(&self) -> Vec<InFlight> {
        self.flights
            .downloads_below("")
            .iter()
            .map(|download| InFlight {
                url: download.url.clone(),
                written: download.progress().written,
                size: download.size,
                readers: download.readers(),
            })
            .collect()
    }

    /// Sizes of what is stored now.
    pub fn totals(&self) -> Totals {
        self.store.index.totals()
    }

    /// Opens a stored body by its inode (an open of a path the kernel already
    /// resolved). [`CacheError::Gone`] when the body was evicted since.
    pub fn open_blob(&self, ino: u64) -> Result<OpenBlob, CacheError> {
        let Some((hash, record)) = self.store.index.blob_by_ino(ino)? else {
            return Err(CacheError::Gone { ino });
        };
        self.open_record(hash, record)?
            .ok_or(CacheError::Gone { ino })
    }

    /// Waits until the stored body `hash` survives a power loss (the
    /// background fsyncs got to it). Blocks.
    pub fn wait_durable(&self, hash: &blake3::Hash) -> Result<(), CacheError> {
        Ok(self.store.wait_durable(hash)?)
    }

    /// Waits until the body of the URL at `loc` is stored and survives a
    /// power loss; nothing to wait for when it is not stored. Blocks.
    pub fn wait_durable_url(&self, loc: &Location) -> Result<(), CacheError> {
        self.wait_durable_of(loc.file_url()?.as_str())
    }

    /// [`Cache::wait_durable_url`] for a URL string.
    pub fn wait_durable_of(&self, url: &str) -> Result<(), CacheError> {
        match self.store.index.url(url)? {
            Some(record) => self.wait_durable(&record.blob),
            None => Ok(()),
        }
    }

    /// Deletes, in the background, blob files no entry names (left by a
    /// crash between placing a blob and indexing it), until the returned
    /// handle is dropped.
    pub fn remove_strays_in_background(&self) -> StrayRemoval {
        let store = Arc::clone(&self.store);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("fetchfs-strays".into())
            .spawn(move || match store.remove_strays(&stopped) {
                Ok(0) => {}
                Ok(removed) => tracing::info!("removed {removed} stray blob file(s)"),
                Err(error) => tracing::warn!("removing stray blob files: {error}"),
            });
        let thread = spawned
            .inspect_err(|error| tracing::warn!("removing stray blob files: {error}"))
            .ok();
        StrayRemoval { stop, thread }
    }

    /// A reader of a stored body is done with it.
    pub fn close_blob(&self, blob: &OpenBlob) {
        self.open.release(&blob.stored.hash);
    }

    /// The attributes of a stored body by its inode: from the index, or, for a
    /// body evicted while open, as it was opened.
    pub fn blob(&self, ino: u64) -> Result<StoredFile, CacheError> {
        if let Some((hash, record)) = self.store.index.blob_by_ino(ino)? {
            return Ok(StoredFile {
                ino,
                hash,
                size: record.size,
                links: record.refs,
                mtime: from_unix_secs(record.mtime),
                ttl: Duration::ZERO,
                private: false,
            });
        }
        self.open.by_ino(ino).ok_or(CacheError::Gone { ino })
    }

    /// What the cache knows of the file at `loc`, for extended attributes; no network.
    pub fn describe(&self, loc: &Location) -> Result<Description, CacheError> {
        self.describe_url(loc.file_url()?.as_str())
    }

    /// [`Cache::describe`] of a stored body by its inode, through a URL the
    /// index has for it. [`CacheError::Gone`] when it is no longer stored.
    pub fn describe_blob(&self, ino: u64) -> Result<Description, CacheError> {
        let url = self
            .store
            .index
            .blob_by_ino(ino)?
            .map(|(hash, _)| self.store.index.a_url_of_blob(&hash))
            .transpose()?
            .flatten()
            .ok_or(CacheError::Gone { ino })?;
        self.describe_url(&url)
    }

    fn describe_url(&self, url: &str) -> Result<Description, CacheError> {
        failpoint_panic("describe", url);
        let record = self.store.index.url(url)?;
        let meta = record.as_ref().and_then(|r| EntryMeta::from_json(&r.meta));
        let state = if self.flights.download(url).is_some() {
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
}

/// Debug builds only: a URL containing the marker in
/// `$FETCHFS_FAILPOINT_PANIC` panics at `site`, standing in for a dependency
/// that panics on hostile input, so the tests can prove a panic is
/// contained. The value is `MARKER` (the lookup, in a task) or
/// `SITE=MARKER`, where `describe` is the extended attributes' read on a
/// FUSE dispatch thread.
fn failpoint_panic(site: &str, url: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Ok(value) = std::env::var("FETCHFS_FAILPOINT_PANIC") else {
        return;
    };
    let (wanted, marker) = value.split_once('=').unwrap_or(("lookup", &value));
    if wanted == site && !marker.is_empty() && url.contains(marker) {
        panic!("failpoint FETCHFS_FAILPOINT_PANIC reached at {site} for {url}");
    }
}

fn from_unix_secs(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// The background removal of stray blob files. Dropping it stops the scan and
/// waits for it, so that the store it holds can close cleanly: a scan still
/// running when the process ended left the cache dir without its clean mark,
/// and the next mount then re-checked every blob.
pub struct StrayRemoval {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StrayRemoval {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

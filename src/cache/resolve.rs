//! Lookup: what a path is now.
//!
//! A stored body that is still fresh comes from the index alone. A stale one
//! is revalidated with a conditional GET: a 304 keeps the blob, a 200 streams
//! the new body, an origin failure serves the stale body (stale-if-error)
//! unless the response forbids it. Within a `stale-while-revalidate` window
//! the stale body is served at once and one background task asks the origin.
//! An unknown URL is probed with a HEAD, so `stat` never downloads a body,
//! unless a recent listing of its directory gave its exact size.
//!
//! An entry can vanish while a lookup looks at it (the cap or an `evict`
//! removes it between two reads of the index). The lookup then goes on as for
//! a URL it never had: it asks the origin, and never answers ENOENT for a file
//! the origin serves.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use serde_json::json;
use url::Url;

use super::flight::FlightGuard;
use super::freshness::{EntryMeta, is_private_response, missing_ttl, ttl_rules};
use super::recent::Outcome;
use super::{Cache, CacheError, Download, Location, RemoteFile, Resolved, StoredFile};

use crate::config::ListingMode;
use crate::origin::{Head, OriginClient};
use crate::store::UrlRecord;
use crate::telemetry::EventKind;

/// Releases the fleet lease this host may hold for `url` when the
/// revalidation ends, unless a publication took it.
struct HeldLease<'a> {
    cache: &'a Cache,
    url: &'a Url,
}

impl Drop for HeldLease<'_> {
    fn drop(&mut self) {
        self.cache.drop_lease(self.url);
    }
}

impl Cache {
    /// What the path at `loc` is now: revalidates a stale entry, probes an
    /// unknown one. A file is marked private when the origin keeps private
    /// what it serves with its credentials or as `Cache-Control: private`.
    pub async fn resolve(self: &Arc<Self>, loc: &Location) -> Result<Resolved, CacheError> {
        let resolved = self.resolve_path(loc).await?;
        let keeps_private = loc.origin.keeps_private();
        let credentials = loc.origin.has_credentials();
        Ok(match resolved {
            Resolved::Stored(mut stored) => {
                stored.private = keeps_private && (credentials || self.is_marked_private(loc)?);
                Resolved::Stored(stored)
            }
            Resolved::Remote(mut file) => {
                // A file not stored yet knows from its HEAD or its download.
                file.private = keeps_private && (credentials || file.private);
                Resolved::Remote(file)
            }
            Resolved::Directory => Resolved::Directory,
        })
    }

    /// Whether the stored response of `loc` said `Cache-Control: private`.
    fn is_marked_private(&self, loc: &Location) -> Result<bool, CacheError> {
        let url = loc.file_url()?;
        Ok(self
            .store
            .index
            .url(url.as_str())?
            .and_then(|record| EntryMeta::from_json(&record.meta))
            .is_some_and(|meta| meta.private))
    }

    async fn resolve_path(self: &Arc<Self>, loc: &Location) -> Result<Resolved, CacheError> {
        if loc.components.is_empty() {
            return Ok(Resolved::Directory);
        }
        let url = loc.file_url()?;
        super::failpoint_panic("lookup", url.as_str());
        if let Some(stale) = self.serve_while_revalidating(loc, &url)? {
            return Ok(stale);
        }
        let guard = self.flights.lock(url.as_str()).await;
        if let Some(download) = self.flights.download(url.as_str()) {
            drop(guard);
            return self.resolve_download(&url, download.reader()).await;
        }
        if let Some(record) = self.store.index.url(url.as_str())?
            && let Some(resolved) = self.resolve_stored(loc, &url, &guard, record).await?
        {
            return Ok(resolved);
        }
        if self.recent.is_missing(url.as_str()) {
            return Err(CacheError::NotFound);
        }
        if self.has_cached_below(&loc.dir_url()?)? || self.listed_as_dir(loc) {
            return Ok(Resolved::Directory);
        }
        if let Some(file) = self.directory.recent_file(url.as_str()) {
            return Ok(Resolved::Remote(file));
        }
        if self.trusts_listed_files(&loc.origin)
            && let Some(file) = self.listed_file(loc)
        {
            return Ok(Resolved::Remote(file));
        }
        if self.offline {
            return Err(CacheError::Offline {
                url: url.to_string(),
            });
        }
        if let Some(file) = self.fleet_file(loc, &url).await {
            return Ok(Resolved::Remote(file));
        }
        self.probe(loc, &url).await
    }

    /// A URL the index has: served as stored while fresh, else revalidated.
    /// `None` when its body vanished meanwhile.
    async fn resolve_stored(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
        guard: &FlightGuard<'_>,
        record: UrlRecord,
    ) -> Result<Option<Resolved>, CacheError> {
        let meta = EntryMeta::from_json(&record.meta);
        let remaining = meta
            .as_ref()
            .map(|m| m.remaining(SystemTime::now()))
            .unwrap_or_default();
        let shared = self.recent.validation_since(url.as_str(), guard.asked_at);
        if let (Some(meta), Some(Outcome::Failed(reason))) = (&meta, &shared) {
            let error = CacheError::SharedFailure {
                url: url.to_string(),
                reason: reason.clone(),
            };
            return self.serve_stale(url, &record.blob, meta, error).map(Some);
        }
        let usable = !remaining.is_zero() || self.offline || shared.is_some();
        if meta.is_some() && usable {
            return self.stored_file(&record.blob, remaining);
        }
        let resolved = self.revalidate(loc, url).await;
        self.recent
            .record_validation(url.as_str(), Outcome::of(&resolved));
        resolved.map(Some)
    }

    async fn revalidate(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
    ) -> Result<Resolved, CacheError> {
        let Some(record) = self.store.index.url(url.as_str())? else {
            return self.probe(loc, url).await;
        };
        let Some(meta) = EntryMeta::from_json(&record.meta) else {
            // Unreadable metadata (an older or damaged record): the entry goes,
            // so the body is fetched anew rather than served old forever.
            tracing::warn!("{url}: its cache record is unreadable; fetching it again");
            self.store.remove_urls(&[url.to_string()])?;
            return self.probe(loc, url).await;
        };
        // Another host may have revalidated it, or be doing so: one
        // request for the fleet.
        let _lease = HeldLease { cache: self, url };
        if let Some(resolved) = self.refresh_from_fleet(loc, url, &record.blob).await? {
            return Ok(resolved);
        }
        let now = SystemTime::now();
        self.telemetry.counters.add_revalidation();
        self.telemetry
            .events
            .emit(EventKind::Revalidate, json!({ "url": url.as_str() }));
        let origin = &loc.origin;
        let sent = OriginClient::cacheable_request_headers(origin, url);
        let conditional = meta.conditional_headers(url, &sent, now);
        let asked = self
            .within_budget(origin, url, |deadline| {
                self.origin.get(origin, url, conditional, deadline)
            })
            .await;
        let mut body = match asked {
            Ok(body) => body,
            Err(error) => {
                return self.serve_stale(url, &record.blob, &meta, error.into());
            }
        };
        if body.head.status == StatusCode::NOT_MODIFIED {
            if let Some(refreshed) = meta.revalidated(url, &body.head, &ttl_rules(origin), now) {
                self.telemetry.counters.add_not_modified();
                self.store
                    .index
                    .update_meta(url.as_str(), refreshed.to_json())?;
                self.refresh_fleet(url, record.blob, &body.head);
                let remaining = refreshed.remaining(SystemTime::now());
                return match self.stored_file(&record.blob, remaining)? {
                    Some(resolved) => Ok(resolved),
                    // Evicted while the origin confirmed it: fetch it anew.
                    None => self.probe(loc, url).await,
                };
            }
            // The 304 confirms another response than the stored one: fetch anew.
            let asked = self.get_whole(origin, url).await;
            body = match asked {
                Ok(body) => body,
                Err(error) => {
                    return self.serve_stale(url, &record.blob, &meta, error.into());
                }
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
            self.store.remove_urls(&[url.to_string()])?;
        }
        let reader = self.accept_body(loc, url, body)?.reader();
        self.resolve_download(url, reader).await
    }

    /// Stale-if-error: the origin failed, so the stored body is served as it
    /// is, where the response allows it; else, or when the body was evicted
    /// meanwhile, the reader gets the error.
    fn serve_stale(
        &self,
        url: &Url,
        blob: &blake3::Hash,
        meta: &EntryMeta,
        error: CacheError,
    ) -> Result<Resolved, CacheError> {
        if !self.offline && !meta.may_serve_stale_on_error(SystemTime::now()) {
            // no-cache, must-revalidate, or past its stale-if-error window:
            // the reader gets the error, never the stale body.
            self.telemetry.events.emit(
                EventKind::Error,
                json!({ "url": url.as_str(), "message": error.to_string() }),
            );
            return Err(error);
        }
        let Some(stale) = self.stored_file(blob, Duration::ZERO)? else {
            return Err(error);
        };
        tracing::warn!("{url}: serving the stale copy, the origin failed: {error}");
        self.telemetry.counters.add_stale_served();
        self.telemetry.events.emit(
            EventKind::Error,
            json!({ "url": url.as_str(), "message": error.to_string(), "served": "stale" }),
        );
        Ok(stale)
    }

    /// The stored body, if it is stale but within its `stale-while-revalidate`
    /// window: it is served at once, without waiting for the URL's lock.
    fn serve_while_revalidating(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
    ) -> Result<Option<Resolved>, CacheError> {
        if self.offline {
            return Ok(None);
        }
        let Some(record) = self.store.index.url(url.as_str())? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let within_window = EntryMeta::from_json(&record.meta)
            .is_some_and(|m| m.remaining(now).is_zero() && m.may_serve_while_revalidating(now));
        if !within_window {
            return Ok(None);
        }
        let stale = self.stored_file(&record.blob, Duration::ZERO)?;
        if stale.is_some() {
            self.revalidate_in_background(loc.clone(), url.clone());
        }
        Ok(stale)
    }

    /// stale-while-revalidate: the stale body is served now; one background
    /// task asks the origin (readers meanwhile share its answer).
    fn revalidate_in_background(self: &Arc<Self>, loc: Location, url: Url) {
        if self.flights.download(url.as_str()).is_some() {
            // The new body is already on its way.
            return;
        }
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let guard = cache.flights.lock(url.as_str()).await;
            if cache
                .recent
                .validation_since(url.as_str(), guard.asked_at)
                .is_some()
            {
                return;
            }
            let result = cache.revalidate(&loc, &url).await;
            if let Err(error) = &result {
                tracing::warn!("background revalidation of {url}: {error}");
            }
            cache
                .recent
                .record_validation(url.as_str(), Outcome::of(&result));
            // A new body: nobody reads it yet (readers get the stale one
            // meanwhile), so this task keeps the download going until stored.
            if let Some(download) = cache.flights.download(url.as_str()) {
                let _ = download.reader().wait_until_whole().await;
            }
        });
    }

    /// A HEAD for a URL the cache does not have: file, directory or nothing.
    async fn probe(self: &Arc<Self>, loc: &Location, url: &Url) -> Result<Resolved, CacheError> {
        let origin = &loc.origin;
        let asked = self
            .within_budget(origin, url, |deadline| {
                self.origin.head(origin, url, deadline)
            })
            .await;
        let head = match asked {
            Ok(head) => head,
            // The origin is away, but a listing it gave earlier knows the name.
            Err(_) if self.listed_as_dir_before(loc) => return Ok(Resolved::Directory),
            Err(error) => return Err(error.into()),
        };
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
                let ttl = missing_ttl(url, &head, origin, SystemTime::now());
                self.recent.remember_missing(url.as_str(), ttl);
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
    /// announce it gets its body fetched now (through the fleet, when the
    /// mount has one: one GET for the fleet, as for an open).
    async fn remote_file(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
        head: &Head,
    ) -> Result<Resolved, CacheError> {
        if let Some(size) = head.content_length() {
            let file = remote_of_head(head, size);
            self.directory.remember_file(url.as_str(), file);
            return Ok(Resolved::Remote(file));
        }
        let reader = self.fetch_body(loc, url).await?.reader();
        self.telemetry.counters.add_miss();
        self.resolve_download(url, reader).await
    }

    /// A lookup's answer for a body on its way. `st_size` must be true, so a
    /// body whose size the origin did not announce is waited for whole: it
    /// is then stored (or, if it may not be, its length is known).
    pub(super) async fn resolve_download(
        self: &Arc<Self>,
        url: &Url,
        reader: super::Reader,
    ) -> Result<Resolved, CacheError> {
        if let Some(size) = reader.size {
            return Ok(remote_of(&reader, size));
        }
        let size = reader.wait_until_whole().await?;
        if let Some(record) = self.store.index.url(url.as_str())?
            && let Some(meta) = EntryMeta::from_json(&record.meta)
            && let Some(stored) =
                self.stored_file(&record.blob, meta.remaining(SystemTime::now()))?
        {
            return Ok(stored);
        }
        Ok(remote_of(&reader, size))
    }

    /// A stored body as a lookup answers it; `None` when its record is gone.
    pub(super) fn stored_file(
        &self,
        hash: &blake3::Hash,
        ttl: Duration,
    ) -> Result<Option<Resolved>, CacheError> {
        let Some(record) = self.store.index.blob(hash)? else {
            return Ok(None);
        };
        Ok(Some(Resolved::Stored(StoredFile {
            ino: record.ino,
            hash: *hash,
            size: record.size,
            links: record.refs,
            mtime: super::from_unix_secs(record.mtime),
            ttl,
            private: false,
        })))
    }
}

/// A file of `size` bytes, as the response `head` describes it.
pub(super) fn remote_of_head(head: &Head, size: u64) -> RemoteFile {
    RemoteFile {
        size,
        mtime: head
            .header_str(http::header::LAST_MODIFIED)
            .and_then(|text| httpdate::parse_http_date(text).ok()),
        download: None,
        private: is_private_response(&head.headers),
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

/// A file still downloading whose size is known, as a lookup answers it.
fn remote_of(download: &Download, size: u64) -> Resolved {
    Resolved::Remote(RemoteFile {
        size,
        mtime: download.mtime,
        download: Some(download.id),
        private: download.private,
    })
}

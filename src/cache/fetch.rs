//! Opening a path: join its download, open its stored body, or start a
//! download; and the task that streams a body to disk and commits it.
//!
//! The fill task owns the download's writer and its registration in
//! [`Flights`](super::flight::Flights): whatever way it ends (done, failed,
//! panicked), the URL is unregistered before readers learn the outcome, so a
//! reader that saw end-of-file and opens the path again finds the stored
//! blob, and a failed download is never joined again.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use serde_json::json;
use url::Url;

use super::download::{Announced, DownloadWriter, Fate, UNWANTED_GRACE};
use super::fleet::Publishing;
use super::freshness::{EntryMeta, missing_ttl, ttl_rules, unix_secs};
use super::parts::{PartAnswer, PartError, part_source};
use super::{Cache, CacheError, Download, Location, OpenBlob, Opened, Phase, StoredFile};
use crate::config::Origin;
use crate::origin::BodyStream;
use crate::store::{BlobRecord, PartialBlob};
use crate::telemetry::EventKind;

/// A body fetched in parts whose front got as far ahead of its readers as it
/// may keeps its connection this long, then closes it; a range request
/// takes up where it stopped when a reader comes near.
const FRONT_HOLD: Duration = Duration::from_secs(2);

impl Cache {
    /// Opens the file at `loc` for reading: joins its download, opens its
    /// stored body, or starts a download.
    pub async fn open(self: &Arc<Self>, loc: &Location) -> Result<Opened, CacheError> {
        let url = loc.file_url()?;
        let _guard = self.flights.lock(url.as_str()).await;
        if let Some(download) = self.flights.download(url.as_str())
            && download.progress().phase != Phase::Failed
        {
            self.telemetry.counters.add_miss();
            // Made under the URL's lock: the download cannot stop for want
            // of readers between "found" and "read".
            return Ok(Opened::Streaming(download.reader()));
        }
        if let Some(record) = self.store.index.url(url.as_str())?
            && let Some(blob) = self.open_stored(record.blob)?
        {
            return Ok(Opened::Stored(blob));
        }
        // Not stored, or evicted since the lookup: the origin has it.
        if self.offline {
            return Err(CacheError::Offline {
                url: url.to_string(),
            });
        }
        let reader = self.fetch_body(loc, &url).await?.reader();
        self.telemetry.counters.add_miss();
        if reader.size == Some(0) {
            // The kernel answers end-of-file for an empty file without a
            // read: the open is the last word, so it waits for the commit.
            reader.wait_until_whole().await?;
        }
        Ok(Opened::Streaming(reader))
    }

    /// The body of `url` on its way: from the fleet (stored there, or
    /// following the host that fetches it), else from the origin with a
    /// GET (leading the fleet's fetch when this host took the lease). Call
    /// it holding the URL's lock.
    pub(super) async fn fetch_body(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
    ) -> Result<Arc<Download>, CacheError> {
        if let Some(download) = self.before_fetch(loc, url).await? {
            return Ok(download);
        }
        let body = self
            .get_whole(&loc.origin, url)
            .await
            .map_err(CacheError::from)
            .and_then(|body| self.accept_body(loc, url, body));
        if body.is_err() {
            self.drop_lease(url);
        }
        body
    }

    /// Opens a stored body for reading; it is not evicted by the cap until
    /// `close_blob`. `None` when it was evicted meanwhile.
    pub(super) fn open_stored(&self, hash: blake3::Hash) -> Result<Option<OpenBlob>, CacheError> {
        let Some(record) = self.store.index.blob(&hash)? else {
            return Ok(None);
        };
        self.open_record(hash, record)
    }

    /// [`Cache::open_stored`] with the body's record just read from the index.
    pub(super) fn open_record(
        &self,
        hash: blake3::Hash,
        record: BlobRecord,
    ) -> Result<Option<OpenBlob>, CacheError> {
        let stored = StoredFile {
            ino: record.ino,
            hash,
            size: record.size,
            links: record.refs,
            mtime: super::from_unix_secs(record.mtime),
            ttl: std::time::Duration::ZERO,
            private: false,
        };
        // Registered before the file is opened: an eviction that starts now
        // spares it, and one that already chose it makes the open fail below.
        self.open.register(stored);
        let file = match self.store.blobs.open_blob(&hash) {
            Ok(file) => file,
            Err(error) => {
                self.open.release(&hash);
                if error.kind() != io::ErrorKind::NotFound {
                    return Err(error.into());
                }
                // Evicted meanwhile (the index forgets a blob before its file
                // goes), or removed behind the cache's back: then the index
                // forgets it now, and the next lookup fetches it again.
                if self.store.index.blob(&hash)?.is_some() {
                    tracing::warn!(
                        "blob {} is gone from the disk; its entries are dropped",
                        hash.to_hex()
                    );
                    self.store.index.drop_blobs(&HashSet::from([hash]))?;
                }
                return Ok(None);
            }
        };
        // Access times only order eviction: a failure to write them (a full
        // disk) must not fail the open, but it is worth a line in the log.
        if let Err(error) = self.store.index.touch(&hash, crate::store::unix_now_ms()) {
            tracing::warn!("recording an access to blob {}: {error}", hash.to_hex());
        }
        self.telemetry.counters.add_hit();
        self.telemetry
            .events
            .emit(EventKind::Hit, json!({ "blake3": hash.to_hex().as_str() }));
        Ok(Some(OpenBlob { file, stored }))
    }

    /// Takes a GET's answer: a 200 becomes a download, anything else an error.
    pub(super) fn accept_body(
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
            let ttl = missing_ttl(url, &body.head, &loc.origin, SystemTime::now());
            self.recent.remember_missing(url.as_str(), ttl);
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

    /// Registers a download of `url` and spawns the task that fills it.
    /// Call it holding the URL's lock.
    fn start_download(
        self: &Arc<Self>,
        origin: &Arc<Origin>,
        url: &Url,
        mut body: BodyStream,
    ) -> Result<Arc<Download>, CacheError> {
        if body.is_close_delimited()
            && let Some(announced) = self.directory.recent_file(url.as_str())
            && announced.download.is_none()
        {
            body.expect_at_least(announced.size);
        }
        let head = &body.head;
        let meta = EntryMeta::from_response(url, head, &ttl_rules(origin), SystemTime::now());
        let partial = self.store.blobs.create_partial()?;
        let mtime = meta.last_modified.is_some().then(|| meta.mtime());
        let announced = Announced {
            size: head.content_length(),
            mtime,
            private: meta.private,
            parts: part_source(origin, url, head),
        };
        let publication = self.publication(origin, url, head);
        let (download, writer) = Download::start(url.to_string(), announced, partial.file());
        let publishing =
            publication.map(|publication| self.start_publishing(publication, &download));
        self.flights.start(Arc::clone(&download));
        self.telemetry.counters.download_started();
        self.telemetry.events.emit(
            EventKind::Fetch,
            json!({ "url": url.as_str(), "size": download.size }),
        );
        let cache = Arc::clone(self);
        self.spawn_fill(writer, move |writer| {
            Box::pin(async move {
                cache
                    .fill(writer, Some(body), partial, meta, publishing, 0)
                    .await
            })
        });
        Ok(download)
    }

    /// Runs the task that fills a download registered in `flights`: when
    /// it ends, however it ends, the URL is unregistered, then the readers
    /// learn the outcome.
    pub(super) fn spawn_fill(
        self: &Arc<Self>,
        writer: DownloadWriter,
        fill: impl for<'w> FnOnce(&'w DownloadWriter) -> FillFuture<'w> + Send + 'static,
    ) {
        let registration = Registration {
            cache: Arc::clone(self),
            download: Arc::clone(writer.download()),
        };
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let result = fill(&writer).await;
            drop(registration);
            match result {
                Ok(()) => writer.complete(),
                Err(CacheError::Abandoned { url }) => {
                    tracing::info!("stopped downloading {url}: no reader was left");
                    writer.fail(format!("{url}: stopped, no reader was left"));
                }
                Err(error) => {
                    let url = &writer.download().url;
                    let cause = error.cause(url);
                    tracing::warn!("download of {url} failed: {cause}");
                    cache.telemetry.events.emit(
                        EventKind::Error,
                        json!({ "url": url, "message": error.to_string() }),
                    );
                    writer.fail(cause);
                }
            }
        });
    }

    /// Streams the body to disk, then commits it as its fate says, and
    /// evicts if the store went over its cap. A body fetched in parts waits
    /// for its readers ([`Download::fetch_limit`]), and after a while closes
    /// its connection and later asks for the rest with a range request; the
    /// parts on disk it reaches are read into the hash instead of fetched.
    /// Without a `body`, the rest comes in parts (none when it is all on
    /// disk). The first `skip` bytes of `body` are on disk already (an origin that
    /// sent the whole body where the rest was asked for): they are checked
    /// against what is there, never written again.
    pub(super) async fn fill(
        self: &Arc<Self>,
        writer: &DownloadWriter,
        mut body: Option<BodyStream>,
        mut partial: PartialBlob,
        meta: EntryMeta,
        publishing: Option<Publishing>,
        mut skip: u64,
    ) -> Result<(), CacheError> {
        let download = writer.download();
        let mut next_space_check = 0;
        let mut paused_at: Option<tokio::time::Instant> = None;
        loop {
            if body.is_none() {
                let reach = download.present_from(partial.len());
                if reach > partial.len() {
                    partial.absorb(reach)?;
                    writer.advance(partial.len());
                }
                if download.size == Some(partial.len()) {
                    break;
                }
            }
            if is_ahead_of_readers(download, partial.len()) {
                let hold = body
                    .is_some()
                    .then(|| *paused_at.get_or_insert_with(tokio::time::Instant::now) + FRONT_HOLD);
                if !self.wait_for_readers(download, partial.len(), hold).await? {
                    body = None;
                    paused_at = None;
                }
                continue;
            }
            if paused_at.take().is_some()
                && let Some(body) = &mut body
            {
                body.restart_pacing();
            }
            let stream = match &mut body {
                Some(stream) => stream,
                None => {
                    let (resumed, skipping) = self.resume(download, partial.len()).await?;
                    skip = skipping;
                    body.insert(resumed)
                }
            };
            let chunk = tokio::select! {
                chunk = stream.next_chunk() => chunk?,
                () = download.unwanted(UNWANTED_GRACE) => {
                    self.stop_unwanted(download).await?;
                    continue;
                }
            };
            let Some(mut chunk) = chunk else {
                break;
            };
            if skip > 0 {
                let skipped = skip.min(chunk.len() as u64);
                if !download.holds(partial.len() - skip, &chunk[..skipped as usize])? {
                    return Err(PartError::Changed {
                        url: download.url.clone(),
                    }
                    .into());
                }
                chunk = chunk.slice(skipped as usize..);
                skip -= skipped;
            }
            if download.progress().phase == Phase::Failed {
                return Err(download.failed().into());
            }
            if partial.len() >= next_space_check {
                let remaining = download.size.map_or(0, |s| s.saturating_sub(partial.len()));
                let headroom = self.ensure_room(remaining.max(chunk.len() as u64))?;
                next_space_check = partial.len() + headroom / 4;
            }
            self.append(&mut partial, &chunk, download.size)?;
            writer.advance(partial.len());
        }
        let stored = self.commit_download(download, partial, meta).await?;
        if let (Some((hash, size)), Some(publishing)) = (stored, publishing) {
            publishing.finish(hash, size);
        }
        Ok(())
    }

    /// Commits a whole body as its fate says, and evicts if the store went
    /// over its cap. Returns the stored body's hash and size, when it was
    /// stored fresh (what the fleet may be told of).
    pub(super) async fn commit_download(
        self: &Arc<Self>,
        download: &Arc<Download>,
        partial: PartialBlob,
        mut meta: EntryMeta,
    ) -> Result<Option<(blake3::Hash, u64)>, CacheError> {
        if !meta.is_storable() {
            return Ok(None);
        }
        let cache = Arc::clone(self);
        let download = Arc::clone(download);
        tokio::task::spawn_blocking(move || {
            let committed: Result<_, crate::store::StoreError> = download.commit_with(|fate| {
                match fate {
                    Fate::Discard => return Ok(None),
                    Fate::StoreStale => meta.invalidated = true,
                    Fate::Store => {}
                }
                let mtime = unix_secs(meta.mtime());
                let json = meta.to_json();
                let (hash, record) = cache.store.commit(partial, &download.url, mtime, json)?;
                // Invalidated while it downloaded: the fleet is not told a
                // body this host already doubts.
                Ok((fate == Fate::Store).then_some((hash, record.size)))
            });
            let stored = match committed {
                Ok(stored) => stored,
                Err(error) => {
                    if is_disk_full(&error) {
                        // The next download of it should find room.
                        let _ = cache.make_room(download.size.unwrap_or(0));
                    }
                    return Err(CacheError::from(error));
                }
            };
            if let Err(error) = cache.enforce_cap() {
                tracing::warn!("evicting to stay under the cache size cap: {error}");
            }
            Ok(stored)
        })
        .await
        .map_err(|e| CacheError::Io(io::Error::other(e)))?
    }

    /// Waits while the front is as far ahead of its readers as it may be.
    /// Returns false when `hold` passed first: the connection is to close.
    async fn wait_for_readers(
        &self,
        download: &Arc<Download>,
        written: u64,
        hold: Option<tokio::time::Instant>,
    ) -> Result<bool, CacheError> {
        let mut limit = download.limit_updates();
        let mut progress = download.progress_updates();
        let held = async {
            match hold {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(held);
        limit.borrow_and_update();
        progress.borrow_and_update();
        if !is_ahead_of_readers(download, written) {
            return Ok(true);
        }
        tokio::select! {
            _ = limit.changed() => Ok(true),
            _ = progress.changed() => match download.progress().phase {
                Phase::Failed => Err(download.failed().into()),
                _ => Ok(true),
            },
            () = &mut held => Ok(false),
            () = download.unwanted(UNWANTED_GRACE) => {
                self.stop_unwanted(download).await?;
                Ok(true)
            }
        }
    }

    /// The rest of a body from byte `start` on, after its connection
    /// closed; also how many bytes of the answer to skip (an origin that
    /// sends the whole body again).
    async fn resume(
        &self,
        download: &Download,
        start: u64,
    ) -> Result<(BodyStream, u64), CacheError> {
        let source = download
            .part_source()
            .ok_or_else(|| CacheError::Abandoned {
                url: download.url.clone(),
            })?;
        match self
            .request_part(source, download.size, start, None)
            .await?
        {
            PartAnswer::Part(body) => Ok((body, 0)),
            PartAnswer::Whole(body) => {
                download.stop_parts();
                Ok((body, start))
            }
        }
    }

    /// Stops a download nobody reads any more (`Abandoned`), unless a reader
    /// joined while the URL's lock was awaited: then it goes on.
    pub(super) async fn stop_unwanted(&self, download: &Arc<Download>) -> Result<(), CacheError> {
        let _guard = self.flights.lock(&download.url).await;
        if download.readers() > 0 {
            return Ok(());
        }
        self.flights.finish(download);
        Err(CacheError::Abandoned {
            url: download.url.clone(),
        })
    }

    /// Appends a chunk; a full disk evicts bodies and tries once more.
    pub(super) fn append(
        &self,
        partial: &mut PartialBlob,
        chunk: &[u8],
        size: Option<u64>,
    ) -> Result<(), CacheError> {
        match partial.append(chunk) {
            Err(error) if is_disk_full(&error) => {
                let needed = size.map_or(chunk.len() as u64, |size| {
                    size.saturating_sub(partial.len())
                });
                if !self.make_room(needed)? {
                    return Err(error.into());
                }
                Ok(partial.append(chunk)?)
            }
            other => Ok(other?),
        }
    }
}

/// Whether the front of a body fetched in parts is as far ahead of its
/// readers as it may go.
fn is_ahead_of_readers(download: &Download, written: u64) -> bool {
    download.fetched_in_parts()
        && download.size.is_some_and(|size| written < size)
        && written >= download.fetch_limit()
}

/// The work of a download's task, on its writer.
pub(super) type FillFuture<'w> =
    std::pin::Pin<Box<dyn Future<Output = Result<(), CacheError>> + Send + 'w>>;

/// Unregisters a download when its task ends, however it ends.
struct Registration {
    cache: Arc<Cache>,
    download: Arc<Download>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cache.flights.finish(&self.download);
        self.cache.directory.forget_file(&self.download.url);
        self.cache.telemetry.counters.download_ended();
    }
}

/// Whether an error means the cache's disk is full.
pub(super) fn is_disk_full(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<io::Error>()
            && (io.raw_os_error() == Some(libc::ENOSPC) || io.kind() == io::ErrorKind::StorageFull)
        {
            return true;
        }
        if error.to_string().contains("No space left on device") {
            return true;
        }
        source = error.source();
    }
    false
}

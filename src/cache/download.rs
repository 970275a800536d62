//! One body on its way from the origin to the blob store, readable while it
//! arrives.
//!
//! The writer ([`DownloadWriter`], owned by the task that fills the body)
//! appends chunks to a file in `tmp/` and publishes how many bytes are on disk
//! through a `watch` channel. Readers share the [`Download`]: a reader at
//! offset X waits only until X (plus the length it asked for, or the end of
//! the body) is on disk. A read that reaches the end of the body waits until
//! the body is verified and committed (renamed into place and indexed), so a
//! reader that saw end-of-file knows the file is stored, even if the daemon
//! is killed the next instant. A body cut short is an error for every reader
//! and is never stored.
//!
//! A writer dropped without an outcome (its task panicked or was cancelled)
//! fails the download, so no reader ever waits for bytes nobody will write.
//!
//! Readers hold a [`Reader`]: an open file, a prefetch, a lookup waiting for
//! a body's size. When the last one has been gone for a grace period, the
//! fill task stops the download ([`Download::unwanted`]): `head -c1` of a
//! 50 GB file, or a reader killed with Ctrl-C, does not fetch the rest.
//!
//! A large body the origin can send in parts (a length, a validator for
//! `If-Range`, ranges not refused) is fetched as its readers need it. Each
//! reader tells whether a read goes on where its last one ended
//! ([`Reader::access`]). The one GET from the start, the front, runs only so
//! far ahead of such sequential readers ([`Download::fetch_limit`]): as far
//! as they have read in a row, at least [`AHEAD_MIN_BYTES`], so a sequential
//! reader never waits on it, and a reader that reads a header and then seeks
//! does not fetch the rest. Reads out of order never move the front: one it
//! is not about to reach fetches a part of its own with a range request
//! (`cache::parts`) into the same sparse file, [`PART_MIN_BYTES`] for a
//! random read, doubling up to [`PART_MAX_BYTES`] while a reader goes on
//! where the last part ended. Which bytes are on disk is a set of [`Spans`].
//! The body is stored only when the front reaches its end: the bytes of a
//! part it passes are read back into the hash, so the whole body is hashed
//! once, in order.
//!
//! While the body arrives, a control command may change what its commit does
//! ([`Fate`]): `invalidate` stores it already stale, `evict` drops it. The
//! commit reads the fate under the same lock the commands take, so a command
//! is never lost between "checked" and "committed".

use std::fs::File;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use tokio::sync::watch;
use url::Url;

use crate::config::Origin;

mod spans;

pub use spans::Spans;

/// A download with no reader goes on this long, for the open that usually
/// follows a lookup, before it stops.
pub const UNWANTED_GRACE: Duration = Duration::from_secs(2);

/// A sequential read that starts within this of the front is the front's
/// to serve: a large `read(2)` has the kernel send a dozen 1 MiB reads at
/// once, the last of them well ahead of the first.
pub const NEAR_BYTES: u64 = 16 << 20;
/// How far from where a reader's last read ended its next may start and
/// still go on from it: the kernel sends its reads of one file from several
/// threads, a little out of order.
const SEQUENTIAL_SLACK_BYTES: u64 = 1 << 20;
/// The front runs at least this far ahead of its readers.
pub const AHEAD_MIN_BYTES: u64 = 2 << 20;
/// The part fetched for a random read, at least.
pub const PART_MIN_BYTES: u64 = 16 << 10;
/// The largest part; parts double up to it for a reader that goes on.
pub const PART_MAX_BYTES: u64 = 8 << 20;

/// Where a download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// The whole body is on disk (and committed, if it may be stored).
    Complete,
    /// The origin failed or the disk did; no reader gets more bytes.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes on disk from the start without a gap: the front.
    pub written: u64,
    pub phase: Phase,
    /// Counts the writes of parts beyond the front, to wake their readers.
    pub parts_written: u64,
}

/// What the commit of a finished body does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fate {
    /// Store it with the freshness its headers give.
    #[default]
    Store,
    /// Store it, stale: it was invalidated while it downloaded.
    StoreStale,
    /// Do not store it: it was evicted while it downloaded.
    Discard,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("download of {url} failed: {reason}")]
    Failed { url: String, reason: String },
    #[error("reading the download of {url}: {source}")]
    Io { url: String, source: std::io::Error },
}

/// The readers' side of a download.
#[derive(Debug)]
pub struct Download {
    /// Unique for the life of the process.
    pub id: u64,
    pub url: String,
    /// The size the origin announced, if it did.
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
    /// `Cache-Control: private`: only the mount's owner and root read it,
    /// while it downloads as after.
    pub private: bool,
    file: Arc<File>,
    progress: watch::Sender<Progress>,
    failure: parking_lot::Mutex<Option<String>>,
    fate: parking_lot::Mutex<Fate>,
    /// How many [`Reader`]s there are, and since when.
    readers: watch::Sender<(usize, Instant)>,
    /// How far the front may run ahead of its readers; `u64::MAX` for all
    /// of the body (a prefetch, a body that cannot come in parts).
    limit: watch::Sender<u64>,
    /// Set when the origin can send the body in parts.
    parts: Option<Parts>,
}

/// Where and how parts of a body are asked for.
#[derive(Debug, Clone)]
pub struct PartSource {
    pub origin: Arc<Origin>,
    pub url: Url,
    /// Sent as `If-Range`: the strong ETag, else the Last-Modified date.
    pub validator: HeaderValue,
}

#[derive(Debug)]
struct Parts {
    source: PartSource,
    state: parking_lot::Mutex<PartState>,
}

#[derive(Debug)]
struct PartState {
    /// Bytes on disk, the front included.
    present: Spans,
    /// Bytes asked for by part requests still running.
    fetching: Spans,
    /// False once the origin answered a range request with the whole body.
    enabled: bool,
}

/// One reader's interest in a download: while any exists, it goes on.
#[derive(Debug)]
pub struct Reader {
    download: Arc<Download>,
    run: parking_lot::Mutex<Run>,
}

/// Where a reader's reads in a row have got to.
#[derive(Debug, Default)]
struct Run {
    next: u64,
    /// Bytes read in a row up to `next`.
    length: u64,
}

/// What a read is to its reader.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    /// It goes on where the reader's last read ended.
    pub sequential: bool,
    /// Bytes the reader has read in a row, this read included.
    pub run: u64,
}

/// The writer's side: exactly one per download.
#[derive(Debug)]
pub struct DownloadWriter {
    download: Arc<Download>,
}

/// What a response's headers say of its body before it arrives.
#[derive(Debug, Clone, Default)]
pub struct Announced {
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
    pub private: bool,
    /// Set when the body may be fetched in parts (it has a size too).
    pub parts: Option<PartSource>,
}

impl Download {
    /// A download into `file`, and the one writer that fills it.
    pub fn start(
        url: String,
        announced: Announced,
        file: Arc<File>,
    ) -> (Arc<Download>, DownloadWriter) {
        let Announced {
            size,
            mtime,
            private,
            parts,
        } = announced;
        let parts = parts.filter(|_| size.is_some()).map(|source| Parts {
            source,
            state: parking_lot::Mutex::new(PartState {
                present: Spans::default(),
                fetching: Spans::default(),
                enabled: true,
            }),
        });
        let limit = if parts.is_some() {
            AHEAD_MIN_BYTES
        } else {
            u64::MAX
        };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let download = Arc::new(Download {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            url,
            size,
            mtime,
            private,
            file,
            progress: watch::channel(Progress {
                written: 0,
                phase: Phase::Running,
                parts_written: 0,
            })
            .0,
            failure: parking_lot::Mutex::new(None),
            fate: parking_lot::Mutex::new(Fate::Store),
            readers: watch::channel((0, Instant::now())).0,
            limit: watch::channel(limit).0,
            parts,
        });
        let writer = DownloadWriter {
            download: Arc::clone(&download),
        };
        (download, writer)
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Changes of [`Download::progress`].
    pub fn progress_updates(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Changes of [`Download::fetch_limit`].
    pub fn limit_updates(&self) -> watch::Receiver<u64> {
        self.limit.subscribe()
    }

    /// How far the front may run before it waits for its readers.
    pub fn fetch_limit(&self) -> u64 {
        *self.limit.borrow()
    }

    /// Where and how to ask for parts of the body.
    pub fn part_source(&self) -> Option<&PartSource> {
        self.parts.as_ref().map(|parts| &parts.source)
    }

    /// Whether the body is fetched in parts: the front waits for readers,
    /// reads far from it fetch their own parts.
    pub fn fetched_in_parts(&self) -> bool {
        self.parts
            .as_ref()
            .is_some_and(|parts| parts.state.lock().enabled)
    }

    /// Reads far from the front are served by parts.
    fn is_far(&self, offset: u64, written: u64) -> bool {
        offset > written.saturating_add(NEAR_BYTES)
    }

    /// Lets the front run up to `limit`.
    fn want(&self, limit: u64) {
        self.limit.send_if_modified(|current| {
            let more = limit > *current;
            *current = (*current).max(limit);
            more
        });
    }

    /// The whole body is wanted (a prefetch, a lookup of a body without a
    /// length, an origin that will not send parts).
    pub fn want_everything(&self) {
        self.want(u64::MAX);
    }

    /// Whether a read that must wait needs a part of its own: one the front
    /// is not to bring.
    pub fn needs_part(&self, access: Access, offset: u64, len: u32) -> bool {
        let end = offset.saturating_add(u64::from(len));
        self.fetched_in_parts()
            && self
                .front_limit_for(access, offset, end, self.progress().written)
                .is_none()
    }

    /// How far the front must run for a read it is to bring; `None` when a
    /// part should bring it. The front brings a sequential read near it (and
    /// runs on by as much as its reader has read in a row), a read near it
    /// that reaches the end of the body (which waits for the commit), and a
    /// read out of order where it is going anyway or that starts just past
    /// it (a reader whose pages another reader has read skips ahead).
    fn front_limit_for(&self, access: Access, offset: u64, end: u64, written: u64) -> Option<u64> {
        if self.is_far(offset, written) {
            return None;
        }
        if access.sequential {
            return Some(end.saturating_add(access.run.max(AHEAD_MIN_BYTES)));
        }
        if self.size.is_some_and(|size| end >= size) {
            return Some(u64::MAX);
        }
        let on_its_way =
            offset < self.fetch_limit() || offset <= written.saturating_add(SEQUENTIAL_SLACK_BYTES);
        on_its_way.then_some(end)
    }

    /// Reserves the part to fetch for a read: the first bytes of
    /// `[offset, offset + len)` neither on disk nor asked for, and after them
    /// as many as run without a gap before them, within the part limits.
    /// `None` when the read needs no new part.
    pub fn plan_part(&self, offset: u64, len: u32) -> Option<(u64, u64)> {
        let (parts, size) = (self.parts.as_ref()?, self.size?);
        let mut state = parts.state.lock();
        if !state.enabled {
            return None;
        }
        let stop = offset.saturating_add(u64::from(len)).min(size);
        let mut start = offset;
        loop {
            let next = state.present.reach(start).max(state.fetching.reach(start));
            if next == start {
                break;
            }
            start = next;
        }
        if start >= stop {
            return None;
        }
        let run = state
            .present
            .run_before(start)
            .max(state.fetching.run_before(start));
        let want = run.clamp(PART_MIN_BYTES, PART_MAX_BYTES).max(stop - start);
        let mut end = start.saturating_add(want).min(size);
        for next in [
            state.present.next_start_after(start),
            state.fetching.next_start_after(start),
        ]
        .into_iter()
        .flatten()
        {
            end = end.min(next);
        }
        state.fetching.insert(start, end);
        Some((start, end))
    }

    /// Bytes of a part are on disk at `offset`.
    pub fn write_part(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(bytes, offset)?;
        if let Some(parts) = &self.parts {
            let end = offset + bytes.len() as u64;
            parts.state.lock().present.insert(offset, end);
        }
        self.progress.send_modify(|p| p.parts_written += 1);
        Ok(())
    }

    /// A part request ended: its bytes not on disk may be asked for again.
    pub fn part_ended(&self, start: u64, end: u64) {
        if let Some(parts) = &self.parts {
            parts.state.lock().fetching.remove(start, end);
        }
        self.progress.send_modify(|p| p.parts_written += 1);
    }

    /// The origin answers range requests with the whole body: the front
    /// fetches all of it.
    pub fn stop_parts(&self) {
        if let Some(parts) = &self.parts {
            parts.state.lock().enabled = false;
        }
        self.want_everything();
        self.progress.send_modify(|p| p.parts_written += 1);
    }

    /// Where the bytes on disk from `at` on, without a gap, end.
    pub fn present_from(&self, at: u64) -> u64 {
        self.parts
            .as_ref()
            .map_or(at, |parts| parts.state.lock().present.reach(at))
    }

    /// The body will never be whole; every reader gets `reason`.
    pub fn fail(&self, reason: String) {
        if self.progress.borrow().phase != Phase::Running {
            return;
        }
        *self.failure.lock() = Some(reason);
        self.progress.send_modify(|p| p.phase = Phase::Failed);
    }

    /// A new reader of the body.
    pub fn reader(self: &Arc<Self>) -> Reader {
        self.readers
            .send_modify(|(n, since)| (*n, *since) = (*n + 1, Instant::now()));
        Reader {
            download: Arc::clone(self),
            run: parking_lot::Mutex::default(),
        }
    }

    pub fn readers(&self) -> usize {
        self.readers.borrow().0
    }

    /// Returns once the download has had no reader for `grace` on end. The
    /// time counts from when the last reader went, so the future can be
    /// dropped and made anew (in a `select!` loop) without restarting it.
    pub async fn unwanted(&self, grace: Duration) {
        let mut readers = self.readers.subscribe();
        loop {
            let (count, since) = *readers.borrow_and_update();
            if count == 0 {
                let deadline = tokio::time::Instant::from_std(since + grace);
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = readers.changed() => {}
                }
            } else if readers.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// `invalidate` while the body arrives: it is stored stale, unless evicted.
    pub fn invalidate(&self) {
        let mut fate = self.fate.lock();
        if *fate == Fate::Store {
            *fate = Fate::StoreStale;
        }
    }

    /// `evict` while the body arrives: readers still get it, the store does not.
    pub fn discard(&self) {
        *self.fate.lock() = Fate::Discard;
    }

    /// Runs the commit with the body's fate; commands wait until it is done.
    pub fn commit_with<T>(&self, commit: impl FnOnce(Fate) -> T) -> T {
        let fate = self.fate.lock();
        commit(*fate)
    }

    /// Bytes `[offset, offset + len)` of the body if they are on disk now;
    /// `None` when the read must wait. A read the front is to bring moves
    /// its limit on ([`Download::needs_part`] tells the others).
    pub fn try_read(
        &self,
        access: Access,
        offset: u64,
        len: u32,
    ) -> Option<Result<Vec<u8>, DownloadError>> {
        let end = offset.saturating_add(u64::from(len));
        let progress = self.progress();
        if let Some(limit) = self.front_limit_for(access, offset, end, progress.written) {
            self.want(limit);
        }
        self.readable(progress, offset, end)
            .then(|| self.read_now(progress, offset, len))
    }

    fn readable(&self, progress: Progress, offset: u64, end: u64) -> bool {
        match progress.phase {
            Phase::Complete | Phase::Failed => true,
            Phase::Running => {
                // A read that reaches the end of the body waits for the commit:
                // the kernel knows the size, so the reader takes the end of
                // this read for end-of-file, and end-of-file means stored.
                let in_front = progress.written >= end && self.size.is_none_or(|size| end < size);
                in_front || self.in_parts(progress.written, offset, end)
            }
        }
    }

    /// Whether parts on disk hold the read. The end of the body is served
    /// from a part only to a read far from the front (the tail of an archive
    /// read first); one that reads through to the end waits for the commit.
    fn in_parts(&self, written: u64, offset: u64, end: u64) -> bool {
        let (Some(parts), Some(size)) = (&self.parts, self.size) else {
            return false;
        };
        let stop = end.min(size);
        offset < stop
            && (end < size || self.is_far(offset, written))
            && parts.state.lock().present.covers(offset, stop)
    }

    /// Bytes `[offset, offset + len)` of the body, waiting until they are on
    /// disk, for a reader going through the body in order from its start.
    /// (Reads out of order, which may need parts: `Cache::read_body`.)
    pub async fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>, DownloadError> {
        let mut updates = self.progress.subscribe();
        let access = Access {
            sequential: true,
            run: 0,
        };
        loop {
            updates.borrow_and_update();
            if let Some(read) = self.try_read(access, offset, len) {
                return read;
            }
            if updates.changed().await.is_err() {
                return Err(self.failed());
            }
        }
    }

    /// Waits until the body is whole (and stored, where it may be); returns its length.
    pub async fn wait_until_whole(&self) -> Result<u64, DownloadError> {
        self.want_everything();
        let mut updates = self.progress.subscribe();
        loop {
            let progress = *updates.borrow_and_update();
            match progress.phase {
                Phase::Complete => return Ok(progress.written),
                Phase::Failed => return Err(self.failed()),
                Phase::Running if updates.changed().await.is_err() => return Err(self.failed()),
                Phase::Running => {}
            }
        }
    }

    fn read_now(
        &self,
        progress: Progress,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, DownloadError> {
        if progress.phase == Phase::Failed {
            return Err(self.failed());
        }
        let end = offset.saturating_add(u64::from(len));
        // Past the front only what `in_parts` found on disk, up to the end.
        let limit = match (progress.phase, self.size) {
            (Phase::Running, Some(size)) if progress.written < end => size,
            _ => progress.written,
        };
        let available = limit.saturating_sub(offset).min(u64::from(len));
        let mut buf = vec![0u8; available as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| DownloadError::Io {
                url: self.url.clone(),
                source,
            })?;
        Ok(buf)
    }

    /// Bytes `[offset, offset + len)` as on disk, for a range the front
    /// has passed (the fleet's publisher reads them back).
    pub fn read_written(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Whether the file holds `bytes` at `offset` (a range the front has
    /// passed): a response that sends them again must send the same.
    pub fn holds(&self, offset: u64, bytes: &[u8]) -> std::io::Result<bool> {
        Ok(self.read_written(offset, bytes.len())? == bytes)
    }

    pub fn failed(&self) -> DownloadError {
        DownloadError::Failed {
            url: self.url.clone(),
            reason: self
                .failure
                .lock()
                .clone()
                .unwrap_or_else(|| "abandoned".into()),
        }
    }
}

impl Reader {
    /// Notes a read by this reader: whether it goes on from the last one.
    pub fn access(&self, offset: u64, len: u32) -> Access {
        let end = offset.saturating_add(u64::from(len));
        let mut run = self.run.lock();
        let sequential = offset <= run.next.saturating_add(SEQUENTIAL_SLACK_BYTES)
            && end.saturating_add(SEQUENTIAL_SLACK_BYTES) >= run.next;
        if sequential {
            run.length += end.saturating_sub(run.next);
            run.next = run.next.max(end);
        } else {
            *run = Run {
                next: end,
                length: 0,
            };
        }
        Access {
            sequential,
            run: run.length,
        }
    }
}

impl Deref for Reader {
    type Target = Arc<Download>;

    fn deref(&self) -> &Arc<Download> {
        &self.download
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.download
            .readers
            .send_modify(|(n, since)| (*n, *since) = (n.saturating_sub(1), Instant::now()));
    }
}

impl DownloadWriter {
    pub fn download(&self) -> &Arc<Download> {
        &self.download
    }

    /// More bytes are on disk at the front.
    pub fn advance(&self, written: u64) {
        if let Some(parts) = &self.download.parts {
            parts.state.lock().present.insert(0, written);
        }
        self.download.progress.send_modify(|p| p.written = written);
    }

    /// The body is whole (and stored, where it may be).
    pub fn complete(self) {
        // Even over a failed part: the body is whole and every byte of it
        // came from one response or from parts the validator vouched for.
        self.download
            .progress
            .send_modify(|p| p.phase = Phase::Complete);
    }

    /// The body will never be whole.
    pub fn fail(self, reason: String) {
        self.download.fail(reason);
    }
}

impl Drop for DownloadWriter {
    fn drop(&mut self) {
        // Complete or failed already: nothing changes. Otherwise the task that
        // owned the writer ended without an outcome; readers must not wait on.
        self.download
            .fail("the download stopped without finishing".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SEQUENTIAL: Access = Access {
        sequential: true,
        run: 0,
    };

    fn download(size: Option<u64>) -> (Arc<Download>, DownloadWriter, Arc<File>) {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let (download, writer) = Download::start(
            "http://h/f".into(),
            Announced {
                size,
                ..Default::default()
            },
            Arc::clone(&file),
        );
        (download, writer, file)
    }

    #[tokio::test]
    async fn reader_waits_only_for_its_range() {
        let (dl, writer, file) = download(Some(8));
        let reader = tokio::spawn({
            let dl = Arc::clone(&dl);
            async move { dl.read(0, 4).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!reader.is_finished());
        file.write_all_at(b"abcd", 0).unwrap();
        writer.advance(4);
        assert_eq!(reader.await.unwrap(), b"abcd");
    }

    #[tokio::test]
    async fn eof_read_waits_for_completion_and_failure_is_an_error() {
        let (dl, writer, file) = download(Some(4));
        file.write_all_at(b"abcd", 0).unwrap();
        writer.advance(4);
        assert_eq!(dl.read(0, 2).await.unwrap(), b"ab");
        assert!(
            dl.try_read(SEQUENTIAL, 2, 10).is_none() && dl.try_read(SEQUENTIAL, 0, 4).is_none(),
            "a read reaching the end was served before the commit"
        );
        assert!(dl.try_read(SEQUENTIAL, 4, 10).is_none());
        writer.complete();
        assert_eq!(dl.read(2, 10).await.unwrap(), b"cd");
        assert_eq!(dl.read(4, 10).await.unwrap(), b"");

        let (dl, writer, _) = download(Some(10));
        let reader = tokio::spawn({
            let dl = Arc::clone(&dl);
            async move { dl.read(0, 10).await }
        });
        writer.fail("reset".into());
        let error = reader.await.unwrap().unwrap_err().to_string();
        assert!(error.contains("reset"), "{error}");
    }

    #[tokio::test]
    async fn every_waiting_reader_gets_the_failure() {
        let (dl, writer, file) = download(Some(1 << 20));
        file.write_all_at(b"ab", 0).unwrap();
        writer.advance(2);
        let readers: Vec<_> = (0..32)
            .map(|i| {
                let dl = Arc::clone(&dl);
                tokio::spawn(async move { dl.read(i * 100, 100).await })
            })
            .collect();
        let whole = tokio::spawn({
            let dl = Arc::clone(&dl);
            async move { dl.wait_until_whole().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.fail("origin reset".into());
        for reader in readers {
            assert!(reader.await.unwrap().is_err());
        }
        assert!(whole.await.unwrap().is_err());
        assert!(
            dl.read(0, 2).await.is_err(),
            "bytes of a failed body are not served"
        );
    }

    #[tokio::test]
    async fn a_writer_dropped_without_an_outcome_fails_its_readers() {
        let (dl, writer, _) = download(None);
        let reader = tokio::spawn({
            let dl = Arc::clone(&dl);
            async move { dl.read(0, 10).await }
        });
        let task = tokio::spawn(async move {
            let _writer = writer;
            panic!("the fill task dies");
        });
        assert!(task.await.is_err());
        let error = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the reader hangs")
            .unwrap()
            .unwrap_err();
        assert!(error.to_string().contains("without finishing"), "{error}");
    }

    #[tokio::test]
    async fn followers_that_join_late_see_every_byte() {
        let (dl, writer, file) = download(Some(6));
        file.write_all_at(b"abcdef", 0).unwrap();
        writer.advance(6);
        writer.complete();
        assert_eq!(dl.read(0, 100).await.unwrap(), b"abcdef");
        assert_eq!(dl.wait_until_whole().await.unwrap(), 6);
    }

    #[tokio::test]
    async fn a_download_is_unwanted_once_its_last_reader_has_been_gone_a_while() {
        let (dl, _writer, _) = download(None);
        let grace = Duration::from_millis(100);
        let first = dl.reader();
        let second = dl.reader();
        assert_eq!(dl.readers(), 2);
        let unwanted = tokio::spawn({
            let dl = Arc::clone(&dl);
            async move { dl.unwanted(grace).await }
        });
        drop(first);
        tokio::time::sleep(grace * 2).await;
        assert!(!unwanted.is_finished(), "unwanted with a reader left");
        drop(second);
        tokio::time::sleep(grace / 2).await;
        let comeback = dl.reader();
        tokio::time::sleep(grace * 2).await;
        assert!(
            !unwanted.is_finished(),
            "a reader came back within the grace period"
        );
        drop(comeback);
        tokio::time::timeout(grace * 20, unwanted)
            .await
            .expect("still wanted without readers")
            .unwrap();

        // A future made anew keeps counting from when the last reader went.
        let started = Instant::now();
        dl.unwanted(grace).await;
        assert!(started.elapsed() < grace, "the grace period restarted");
    }

    const MIB: u64 = 1 << 20;

    fn download_in_parts(size: u64) -> (Arc<Download>, DownloadWriter) {
        let url = Url::parse("http://downloads.example.org/f").unwrap();
        let origin = Origin::with_defaults("o".into(), url.clone());
        let (download, writer) = Download::start(
            url.to_string(),
            Announced {
                size: Some(size),
                parts: Some(PartSource {
                    origin: Arc::new(origin),
                    url,
                    validator: HeaderValue::from_static("\"v\""),
                }),
                ..Default::default()
            },
            Arc::new(tempfile::tempfile().unwrap()),
        );
        (download, writer)
    }

    #[test]
    fn a_read_that_goes_on_where_the_last_ended_is_sequential() {
        let (dl, _writer) = download_in_parts(100 * MIB);
        let reader = dl.reader();
        let first = reader.access(0, 4096);
        assert!(first.sequential && first.run == 4096);
        let next = reader.access(4096, 131072);
        assert!(next.sequential && next.run == 135168);
        // A little out of order, as the kernel's threads send them.
        assert!(reader.access(200_000, 4096).sequential);
        let jump = reader.access(50 * MIB, 4096);
        assert!(!jump.sequential && jump.run == 0);
        assert!(reader.access(50 * MIB + 4096, 4096).sequential);
        assert!(!reader.access(0, 4096).sequential);
    }

    #[test]
    fn only_sequential_readers_near_the_front_move_it() {
        let (dl, writer) = download_in_parts(100 * MIB);
        assert!(dl.fetched_in_parts());
        assert_eq!(dl.fetch_limit(), AHEAD_MIN_BYTES);
        let random = Access {
            sequential: false,
            run: 0,
        };
        assert!(dl.try_read(random, 60 * MIB, 4096).is_none());
        assert_eq!(
            dl.fetch_limit(),
            AHEAD_MIN_BYTES,
            "a random read moved the front"
        );
        assert!(dl.needs_part(random, 60 * MIB, 4096));
        let sequential = Access {
            sequential: true,
            run: 8 * MIB,
        };
        assert!(dl.try_read(sequential, 60 * MIB, 4096).is_none());
        assert_eq!(
            dl.fetch_limit(),
            AHEAD_MIN_BYTES,
            "a far reader moved the front"
        );
        assert!(dl.try_read(sequential, 8 * MIB - 4096, 4096).is_none());
        assert_eq!(
            dl.fetch_limit(),
            16 * MIB,
            "twice as far as the reader read in a row"
        );
        assert!(!dl.needs_part(sequential, 8 * MIB - 4096, 4096));
        // Out of order, but where the front goes anyway: no part for it.
        assert!(!dl.needs_part(random, 10 * MIB, 4096));
        assert!(dl.needs_part(random, 16 * MIB, 4096));
        // Nor just past the front: a reader skipping pages another read.
        writer.advance(16 * MIB);
        assert!(!dl.needs_part(random, 16 * MIB + 4096, 4096));
        assert!(dl.needs_part(random, 18 * MIB, 4096));
        dl.want_everything();
        assert_eq!(dl.fetch_limit(), u64::MAX);
    }

    #[test]
    fn parts_grow_for_a_reader_that_goes_on_and_never_overlap() {
        let (dl, writer) = download_in_parts(100 * MIB);
        let at = 50 * MIB;
        let first = dl.plan_part(at, 4096).unwrap();
        assert_eq!(first, (at, at + PART_MIN_BYTES));
        assert_eq!(dl.plan_part(at, 4096), None, "asked for already");
        dl.write_part(at, &vec![7; PART_MIN_BYTES as usize])
            .unwrap();
        dl.part_ended(first.0, first.1);
        let second = dl.plan_part(at + PART_MIN_BYTES, 4096).unwrap();
        assert_eq!(second, (first.1, first.1 + PART_MIN_BYTES));
        dl.write_part(second.0, &vec![7; PART_MIN_BYTES as usize])
            .unwrap();
        dl.part_ended(second.0, second.1);
        let third = dl.plan_part(second.1, 4096).unwrap();
        assert_eq!(third.1 - third.0, 2 * PART_MIN_BYTES, "parts double");
        // A part stops where bytes already on disk begin.
        let before = dl.plan_part(at - 8192, 4096).unwrap();
        assert_eq!(before, (at - 8192, at));
        // The front's bytes are on disk too: no part for them.
        writer.advance(MIB);
        assert_eq!(dl.plan_part(0, 4096), None);
        assert_eq!(dl.present_from(0), MIB);
    }

    #[test]
    fn the_end_comes_from_a_part_only_to_a_read_far_from_the_front() {
        let size = 64 * MIB;
        let (dl, writer) = download_in_parts(size);
        let tail = size - 65536;
        dl.write_part(tail, &vec![1; 65536]).unwrap();
        let random = Access {
            sequential: false,
            run: 0,
        };
        assert_eq!(
            dl.try_read(random, tail, 65536).unwrap().unwrap().len(),
            65536
        );
        assert_eq!(
            dl.try_read(random, tail, 4096).unwrap().unwrap(),
            vec![1; 4096]
        );
        // Once the front is near, the end waits for the commit.
        writer.advance(size - NEAR_BYTES);
        assert!(dl.try_read(random, tail, 65536).is_none());
        assert_eq!(dl.fetch_limit(), u64::MAX, "nothing would bring the end");
        assert!(
            dl.try_read(random, tail, 4096).is_some(),
            "short of the end"
        );
    }

    #[test]
    fn fate_is_what_the_last_command_said_and_evict_wins() {
        let (dl, _writer, _) = download(None);
        assert_eq!(dl.commit_with(|fate| fate), Fate::Store);
        dl.invalidate();
        assert_eq!(dl.commit_with(|fate| fate), Fate::StoreStale);
        dl.discard();
        dl.invalidate();
        assert_eq!(dl.commit_with(|fate| fate), Fate::Discard);
    }
}

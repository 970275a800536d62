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
//! While the body arrives, a control command may change what its commit does
//! ([`Fate`]): `invalidate` stores it already stale, `evict` drops it. The
//! commit reads the fate under the same lock the commands take, so a command
//! is never lost between "checked" and "committed".

use std::fs::File;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

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
    pub written: u64,
    pub phase: Phase,
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
    progress: watch::Receiver<Progress>,
    failure: parking_lot::Mutex<Option<String>>,
    fate: parking_lot::Mutex<Fate>,
    /// How many [`Reader`]s there are, and since when.
    readers: watch::Sender<(usize, Instant)>,
}

/// One reader's interest in a download: while any exists, it goes on.
#[derive(Debug)]
pub struct Reader {
    download: Arc<Download>,
}

/// The writer's side: exactly one per download.
#[derive(Debug)]
pub struct DownloadWriter {
    download: Arc<Download>,
    progress: watch::Sender<Progress>,
}

/// What a response's headers say of its body before it arrives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Announced {
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
    pub private: bool,
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
        } = announced;
        let (sender, receiver) = watch::channel(Progress {
            written: 0,
            phase: Phase::Running,
        });
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let download = Arc::new(Download {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            url,
            size,
            mtime,
            private,
            file,
            progress: receiver,
            failure: parking_lot::Mutex::new(None),
            fate: parking_lot::Mutex::new(Fate::Store),
            readers: watch::channel((0, Instant::now())).0,
        });
        let writer = DownloadWriter {
            download: Arc::clone(&download),
            progress: sender,
        };
        (download, writer)
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// A new reader of the body.
    pub fn reader(self: &Arc<Self>) -> Reader {
        self.readers
            .send_modify(|(n, since)| (*n, *since) = (*n + 1, Instant::now()));
        Reader {
            download: Arc::clone(self),
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

    /// Whether `read(offset, len)` would answer without waiting.
    pub fn is_readable(&self, offset: u64, len: u32) -> bool {
        self.readable(self.progress(), offset, len)
    }

    fn readable(&self, progress: Progress, offset: u64, len: u32) -> bool {
        match progress.phase {
            Phase::Complete | Phase::Failed => true,
            Phase::Running => {
                // A read that reaches the end of the body waits for the commit:
                // the kernel knows the size, so the reader takes the end of
                // this read for end-of-file, and end-of-file means stored.
                let end = offset.saturating_add(u64::from(len));
                progress.written >= end && self.size.is_none_or(|size| end < size)
            }
        }
    }

    /// Bytes `[offset, offset + len)` of the body, waiting until they are on disk.
    pub async fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>, DownloadError> {
        let mut updates = self.progress.clone();
        loop {
            let progress = *updates.borrow_and_update();
            if self.readable(progress, offset, len) {
                return self.read_now(progress, offset, len);
            }
            if updates.changed().await.is_err() {
                return Err(self.failed());
            }
        }
    }

    /// Waits until the body is whole (and stored, where it may be); returns its length.
    pub async fn wait_until_whole(&self) -> Result<u64, DownloadError> {
        let mut updates = self.progress.clone();
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

    /// Reads what is on disk now; the caller checked `is_readable`.
    pub fn read_available(&self, offset: u64, len: u32) -> Result<Vec<u8>, DownloadError> {
        self.read_now(self.progress(), offset, len)
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
        let available = progress.written.saturating_sub(offset).min(u64::from(len));
        let mut buf = vec![0u8; available as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| DownloadError::Io {
                url: self.url.clone(),
                source,
            })?;
        Ok(buf)
    }

    fn failed(&self) -> DownloadError {
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

    /// More bytes are on disk.
    pub fn advance(&self, written: u64) {
        self.progress.send_modify(|p| p.written = written);
    }

    /// The body is whole (and stored, where it may be).
    pub fn complete(self) {
        self.progress.send_modify(|p| p.phase = Phase::Complete);
    }

    /// The body will never be whole.
    pub fn fail(self, reason: String) {
        self.fail_with(reason);
    }

    fn fail_with(&self, reason: String) {
        if self.progress.borrow().phase != Phase::Running {
            return;
        }
        *self.download.failure.lock() = Some(reason);
        self.progress.send_modify(|p| p.phase = Phase::Failed);
    }
}

impl Drop for DownloadWriter {
    fn drop(&mut self) {
        // Complete or failed already: nothing changes. Otherwise the task that
        // owned the writer ended without an outcome; readers must not wait on.
        self.fail_with("the download stopped without finishing".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
            !dl.is_readable(2, 10) && !dl.is_readable(0, 4),
            "a read reaching the end was served before the commit"
        );
        assert!(!dl.is_readable(4, 10));
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

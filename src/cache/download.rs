//! One body on its way from the origin to the blob store, readable while it
//! arrives.
//!
//! The writer appends chunks to a file in `tmp/` and publishes how many bytes
//! are on disk through a `watch` channel. A reader at offset X waits only until
//! X (plus the length it asked for, or the end of the body) is on disk. A read
//! at or past the end waits until the body is verified and committed, so a
//! reader that saw end-of-file knows the file is stored. A body cut short is an
//! error for every reader and is never stored.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

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

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("download of {url} failed: {reason}")]
    Failed { url: String, reason: String },
    #[error("reading the download of {url}: {source}")]
    Io { url: String, source: std::io::Error },
}

#[derive(Debug)]
pub struct Download {
    pub url: String,
    /// The size the origin announced, if it did.
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
    file: Arc<File>,
    progress: watch::Sender<Progress>,
    failure: parking_lot::Mutex<Option<String>>,
}

impl Download {
    pub fn new(
        url: String,
        size: Option<u64>,
        mtime: Option<SystemTime>,
        file: Arc<File>,
    ) -> Download {
        let (progress, _) = watch::channel(Progress {
            written: 0,
            phase: Phase::Running,
        });
        Download {
            url,
            size,
            mtime,
            file,
            progress,
            failure: parking_lot::Mutex::new(None),
        }
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Writer side: more bytes are on disk.
    pub fn advance(&self, written: u64) {
        self.progress.send_modify(|p| p.written = written);
    }

    /// Writer side: the body is whole (and stored, where it may be).
    pub fn complete(&self) {
        self.progress.send_modify(|p| p.phase = Phase::Complete);
    }

    /// Writer side: the body will never be whole.
    pub fn fail(&self, reason: String) {
        *self.failure.lock() = Some(reason);
        self.progress.send_modify(|p| p.phase = Phase::Failed);
    }

    /// Whether `read(offset, len)` would answer without waiting.
    pub fn is_readable(&self, offset: u64, len: u32) -> bool {
        self.readable(self.progress(), offset, len)
    }

    fn readable(&self, progress: Progress, offset: u64, len: u32) -> bool {
        match progress.phase {
            Phase::Complete | Phase::Failed => true,
            Phase::Running => {
                let end = offset.saturating_add(u64::from(len));
                // A read that reaches past the announced end is served once the
                // last byte is here; a read starting at the end waits for the commit.
                let whole_tail = self
                    .size
                    .is_some_and(|size| progress.written >= size && offset < size);
                progress.written >= end || whole_tail
            }
        }
    }

    /// Bytes `[offset, offset + len)` of the body, waiting until they are on disk.
    pub async fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>, DownloadError> {
        let mut updates = self.progress.subscribe();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn download(size: Option<u64>) -> (Arc<Download>, Arc<File>) {
        let file = Arc::new(tempfile::tempfile().unwrap());
        (
            Arc::new(Download::new(
                "http://h/f".into(),
                size,
                None,
                Arc::clone(&file),
            )),
            file,
        )
    }

    #[tokio::test]
    async fn reader_waits_only_for_its_range() {
        let (dl, file) = download(Some(8));
        let reader = tokio::spawn({
            let dl = Arc::clone(&dl);
            async move { dl.read(0, 4).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!reader.is_finished());
        file.write_all_at(b"abcd", 0).unwrap();
        dl.advance(4);
        assert_eq!(reader.await.unwrap(), b"abcd");
    }

    #[tokio::test]
    async fn eof_read_waits_for_completion_and_failure_is_an_error() {
        let (dl, file) = download(Some(4));
        file.write_all_at(b"abcd", 0).unwrap();
        dl.advance(4);
        assert_eq!(dl.read(2, 10).await.unwrap(), b"cd");
        assert!(!dl.is_readable(4, 10));
        dl.complete();
        assert_eq!(dl.read(4, 10).await.unwrap(), b"");

        let (dl, _) = download(Some(10));
        let reader = tokio::spawn({
            let dl = Arc::clone(&dl);
            async move { dl.read(0, 10).await }
        });
        dl.fail("reset".into());
        assert!(reader.await.unwrap().is_err());
    }
}

//! Prefetch: paths queued through `.fetchfs/prefetch`, fetched a few at a
//! time per origin.
//!
//! Each origin has a queue of [`QUEUE_LEN`] paths and `prefetch_concurrency`
//! workers (4 by default) that take from it, so 10,000 lines written at once
//! open a handful of connections (reused by the HTTP client), not 10,000.
//! A full queue makes the writer wait: its `write(2)` returns once its paths
//! are queued, so a million lines take the time they take in bounded memory.
//! A prefetch that fails because the origin could not be reached is tried
//! again with backoff; one that fails for good counts in `prefetch_failed`
//! and is reported as an `error` event. `prefetch_queued`, `prefetch_done`
//! and `prefetch_failed` in `stats` show the progress.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::{Cache, CacheError, Location, Opened, Resolved};
use crate::origin::OriginError;
use crate::telemetry::EventKind;

/// Paths waiting per origin before a writer has to wait.
const QUEUE_LEN: usize = 10_000;
/// Tries of one prefetch whose origin could not be reached.
const ATTEMPTS: u32 = 4;
/// The pause before the second try; doubled for each further one.
const FIRST_RETRY: Duration = Duration::from_secs(1);

type Queue = mpsc::Sender<Location>;

#[derive(Default)]
pub struct Prefetcher {
    queues: parking_lot::Mutex<HashMap<String, Queue>>,
}

impl Cache {
    /// Queues `loc` to be fetched into the cache; waits while its origin's
    /// queue is full. Blocks: call it off the async runtime, in its context.
    pub fn queue_prefetch(self: &Arc<Self>, loc: Location) -> Result<(), CacheError> {
        let queue = self.prefetch_queue(&loc);
        self.telemetry.counters.prefetch_queued();
        if queue.blocking_send(loc).is_err() {
            self.telemetry.counters.prefetch_ended(false);
            return Err(CacheError::Io(std::io::Error::other(
                "the prefetch workers stopped",
            )));
        }
        Ok(())
    }

    /// The queue of `loc`'s origin, with its workers started on first use.
    fn prefetch_queue(self: &Arc<Self>, loc: &Location) -> Queue {
        let mut queues = self.prefetcher.queues.lock();
        if let Some(queue) = queues.get(&loc.origin.name) {
            return queue.clone();
        }
        let (queue, receiver) = mpsc::channel(QUEUE_LEN);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..loc.origin.prefetch_concurrency.max(1) {
            // Weak while it waits: the cache holds the queue, so a strong
            // reference here would keep the cache (and its store) open
            // until the runtime stops, which may cut its close short.
            let (cache, receiver) = (Arc::downgrade(self), Arc::clone(&receiver));
            tokio::spawn(async move {
                loop {
                    let next = receiver.lock().await.recv().await;
                    let (Some(loc), Some(cache)) = (next, cache.upgrade()) else {
                        return;
                    };
                    cache.prefetch_with_retries(&loc).await;
                }
            });
        }
        queues.insert(loc.origin.name.clone(), queue.clone());
        queue
    }

    async fn prefetch_with_retries(self: &Arc<Self>, loc: &Location) {
        let mut pause = FIRST_RETRY;
        let mut attempt = 1;
        let result = loop {
            match self.prefetch(loc).await {
                Err(error) if attempt < ATTEMPTS && is_unreachable(&error) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                result => break result,
            }
        };
        self.telemetry.counters.prefetch_ended(result.is_ok());
        if let Err(error) = result {
            let url = loc.file_url().map(|u| u.to_string()).unwrap_or_default();
            tracing::warn!("prefetch of {url}: {error}");
            self.telemetry.events.emit(
                EventKind::Error,
                json!({ "url": url, "message": error.to_string(), "prefetch": true }),
            );
        }
    }

    /// Fetches the file at `loc` into the cache unless it is stored and
    /// fresh; returns once it is stored. (Durable against a power loss soon
    /// after, with the next round of background fsyncs; `fetchfs prefetch`
    /// waits for that too, through `fsync(2)`.)
    pub async fn prefetch(self: &Arc<Self>, loc: &Location) -> Result<(), CacheError> {
        match self.resolve(loc).await? {
            Resolved::Remote(_) => match self.open(loc).await? {
                Opened::Streaming(reader) => {
                    reader.wait_until_whole().await?;
                }
                Opened::Stored(blob) => self.close_blob(&blob),
            },
            Resolved::Stored(_) | Resolved::Directory => {}
        }
        Ok(())
    }
}

/// Whether a prefetch failed because the origin could not be reached: worth
/// another try later.
fn is_unreachable(error: &CacheError) -> bool {
    matches!(
        error,
        CacheError::Origin(
            OriginError::Timeout { .. } | OriginError::Transport { .. } | OriginError::Down { .. }
        )
    )
}

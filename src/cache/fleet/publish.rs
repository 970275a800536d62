//! Publishing a body for the fleet while it downloads.
//!
//! A task beside the download reads each chunk back from the download's
//! file once the front has passed it, stores it in Redis and, on the host
//! that leads the URL's fetch, tells the fill stream, so hosts waiting for
//! the body read it one chunk behind this one (cut-through). Once the body
//! is committed, the manifest and the URL's record follow (and `done`).
//! A download that fails, or is not stored, ends in `abort`: the waiting
//! hosts then go to the origin themselves.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{oneshot, watch};
use url::Url;

use super::shareable_headers;
use crate::cache::download::Progress;
use crate::cache::freshness::is_shareable;
use crate::cache::{Cache, Download};
use crate::config::Origin;
use crate::origin::Head;
use crate::shared::schema::{CHUNK_SIZE, FillEntry, Record};
use crate::shared::{Fleet, FleetError, Lease};

/// What to publish of a response, and the lease under which to.
pub struct Publication {
    url: String,
    status: u16,
    headers: Vec<(String, String)>,
    /// When the response came (its age counts from then on every host).
    received: Instant,
    /// The lease this host took to fetch it, if it did.
    pub(super) lease: Option<Lease>,
    /// The chunks of the body already in Redis (a fetch taken over).
    known: Vec<blake3::Hash>,
}

impl Publication {
    /// Whether this host leads the fleet's fetch of it (holds the lease).
    pub fn leads(&self) -> bool {
        self.lease.is_some()
    }

    /// What the fleet may be told of the response `head` of `origin`:
    /// `None` when a shared cache may not store it (see [`is_shareable`]).
    pub fn of(origin: &Origin, url: &Url, head: &Head) -> Option<Publication> {
        if !is_shareable(url, head, origin) {
            return None;
        }
        Some(Publication {
            url: url.to_string(),
            status: head.status.as_u16(),
            headers: shareable_headers(head),
            received: Instant::now(),
            lease: None,
            known: Vec::new(),
        })
    }

    /// The rest of a response the fleet had part of (`known`, its first
    /// chunks), fetched by this host from the origin; under `lease` when
    /// this host took the fetch over from another.
    pub(super) fn resumed(
        head: &Record,
        received: Instant,
        lease: Option<Lease>,
        known: Vec<blake3::Hash>,
    ) -> Publication {
        Publication {
            url: head.url.clone(),
            status: head.status,
            headers: head.headers.clone(),
            received,
            lease,
            known,
        }
    }

    fn record(&self, b3: String, size: u64, recv_ms: u64) -> Record {
        Record {
            url: self.url.clone(),
            b3,
            size,
            status: self.status,
            headers: self.headers.clone(),
            recv_ms,
            m3: String::new(),
        }
    }
}

/// A body being published while it downloads: [`Publishing::finish`]
/// with its stored hash, or drop it (the download failed, or its body is
/// not stored) and the publication aborts.
pub struct Publishing {
    stored: Option<oneshot::Sender<(blake3::Hash, u64)>>,
}

impl Publishing {
    pub fn finish(mut self, hash: blake3::Hash, size: u64) {
        if let Some(stored) = self.stored.take() {
            let _ = stored.send((hash, size));
        }
    }
}

impl Cache {
    /// Publishes `download` for the fleet as it arrives.
    pub(in crate::cache) fn start_publishing(
        self: &Arc<Self>,
        publication: Publication,
        download: &Arc<Download>,
    ) -> Publishing {
        // A read-only host never writes: nothing to read back and hash.
        let Some(fleet) = self.fleet().filter(|fleet| fleet.publishes()) else {
            return Publishing { stored: None };
        };
        // Hosts wait for this body: it comes whole, at the origin's pace,
        // not at that of the readers here, and goes on if they all leave.
        let wanted = publication.leads().then(|| {
            download.want_everything();
            download.reader()
        });
        let (stored, finished) = oneshot::channel();
        let download = Arc::clone(download);
        tokio::spawn(async move {
            let _wanted = wanted;
            let url = publication.url.clone();
            let published = publish_while_downloading(&fleet, &publication, &download, finished);
            if let Err(error) = published.await {
                tracing::debug!("publishing {url} to the fleet tier: {error}");
                if let Some(lease) = &publication.lease {
                    let reason = error.to_string();
                    let _ = fleet
                        .add_fill(&url, lease, &[FillEntry::Abort { reason }])
                        .await;
                }
            }
            // Unless the publication took it, the lease goes with it.
        });
        Publishing {
            stored: Some(stored),
        }
    }
}

async fn publish_while_downloading(
    fleet: &Arc<Fleet>,
    publication: &Publication,
    download: &Arc<Download>,
    mut finished: oneshot::Receiver<(blake3::Hash, u64)>,
) -> Result<(), FleetError> {
    let lease = publication.lease.as_ref();
    let url = &publication.url;
    let mut chunks = publication.known.clone();
    if let Some(lease) = lease {
        let recv_ms = fleet
            .now_ms()
            .await?
            .saturating_sub(publication.received.elapsed().as_millis() as u64);
        let head = publication.record(String::new(), download.size.unwrap_or(0), recv_ms);
        let mut entries = vec![FillEntry::Head(head)];
        entries.extend(chunk_entries(&chunks, 0));
        fleet.add_fill(url, lease, &entries).await?;
    }
    let mut progress: watch::Receiver<Progress> = download.progress_updates();
    let stored = loop {
        let written = progress.borrow_and_update().written;
        publish_chunks(fleet, publication, download, &mut chunks, written, false).await?;
        tokio::select! {
            stored = &mut finished => break stored.ok(),
            changed = progress.changed() => if changed.is_err() {
                break None;
            },
        }
    };
    let Some((hash, size)) = stored else {
        return Err(FleetError::Stopped(
            "the download was not stored".to_string(),
        ));
    };
    publish_chunks(fleet, publication, download, &mut chunks, size, true).await?;
    let record = publication.record(hash.to_hex().to_string(), size, 0);
    fleet
        .publish(record, publication.received.elapsed(), &chunks, lease)
        .await
}

/// Stores the chunks of the body on disk up to `written` that are not in
/// Redis yet: the whole ones, and the last one too at the `end`.
async fn publish_chunks(
    fleet: &Arc<Fleet>,
    publication: &Publication,
    download: &Arc<Download>,
    chunks: &mut Vec<blake3::Hash>,
    written: u64,
    end: bool,
) -> Result<(), FleetError> {
    loop {
        let start = chunks.len() as u64 * CHUNK_SIZE as u64;
        let len = written.saturating_sub(start).min(CHUNK_SIZE as u64);
        if len == 0 || (len < CHUNK_SIZE as u64 && !end) {
            return Ok(());
        }
        if start + len > fleet.max_object_size() {
            return Err(FleetError::Stopped(format!(
                "the body is larger than the fleet's max_object_size ({} bytes)",
                fleet.max_object_size()
            )));
        }
        // Read back and hashed on the blocking pool: 4 MiB of disk reads
        // would hold up a runtime worker.
        let download = Arc::clone(download);
        let (hash, bytes) = tokio::task::spawn_blocking(move || {
            let bytes = download.read_written(start, len as usize)?;
            Ok::<_, std::io::Error>((blake3::hash(&bytes), bytes))
        })
        .await
        .map_err(std::io::Error::other)??;
        fleet.put_chunk(&hash, bytes).await?;
        if let Some(lease) = &publication.lease {
            let entries: Vec<_> = chunk_entries(&[hash], chunks.len()).collect();
            fleet.add_fill(&publication.url, lease, &entries).await?;
        }
        chunks.push(hash);
    }
}

/// The fill stream entries of `chunks`, the first of which is chunk `first`.
fn chunk_entries(chunks: &[blake3::Hash], first: usize) -> impl Iterator<Item = FillEntry> + '_ {
    chunks
        .iter()
        .enumerate()
        .map(move |(i, hash)| FillEntry::Chunk {
            index: (first + i) as u64,
            hash: hash.to_hex().to_string(),
        })
}

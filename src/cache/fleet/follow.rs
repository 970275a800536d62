//! Filling a body from the fleet while it arrives (cut-through): a body the
//! fleet has whole, chunk by chunk from its manifest, or one another host
//! is fetching, chunk by chunk as its fill stream announces them. Readers
//! here read it as they would a body from the origin, each byte as soon
//! as it is on disk; the end only once the whole body checks out against
//! its hash and is stored.
//!
//! Whatever stops the fleet's copy (Redis down, a chunk gone or damaged,
//! the host fetching it gone or stuck), the rest comes from the origin
//! with `Range` and `If-Range`, from the first byte this host lacks. A
//! host that finds the fetch it followed without a leader takes it over:
//! it fetches the rest and publishes it for the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;
use url::Url;

use super::{Publication, head_of};
use crate::cache::download::{Announced, DownloadWriter, UNWANTED_GRACE};
use crate::cache::freshness::EntryMeta;
use crate::cache::parts::{PartAnswer, PartError, part_source};
use crate::cache::{Cache, CacheError, Download, Location, Phase};
use crate::origin::BodyStream;
use crate::shared::lease::{LEASE_TTL, WAIT_POLL};
use crate::shared::schema::{FillEntry, Record};
use crate::shared::{Fleet, Lease, Turn};
use crate::store::PartialBlob;
use crate::telemetry::EventKind;

/// Where a body comes from in the fleet.
pub(in crate::cache) enum Source {
    /// A body the fleet has whole: its record and its chunks, and when
    /// its response came.
    Stored {
        record: Record,
        chunks: Vec<blake3::Hash>,
        received: Instant,
    },
    /// A fetch another host leads: its lease token, the response's head,
    /// and when the response came.
    Following {
        token: String,
        head: Record,
        received: Instant,
    },
}

impl Source {
    /// The response the body belongs to.
    fn head(&self) -> &Record {
        match self {
            Source::Stored { record, .. } => record,
            Source::Following { head, .. } => head,
        }
    }

    /// When that response came.
    fn received(&self) -> Instant {
        match self {
            Source::Stored { received, .. } | Source::Following { received, .. } => *received,
        }
    }
}

/// What a fill from the fleet needs: where from, for which URL, and the
/// entry it makes here.
struct FleetFill {
    fleet: Arc<Fleet>,
    loc: Location,
    url: Url,
    source: Source,
    meta: EntryMeta,
}

/// How the fleet's part of a fill ended.
enum Ending {
    /// Every byte came from the fleet; the body should hash to this.
    Whole(blake3::Hash),
    /// The rest comes from the origin, under the lease when this host took
    /// the fetch over.
    Origin { lease: Option<Lease>, why: String },
}

fn alone(why: impl std::fmt::Display) -> Ending {
    Ending::Origin {
        lease: None,
        why: why.to_string(),
    }
}

impl Cache {
    /// Starts filling `url` from the fleet: readers join the download as
    /// they would one from the origin. Call it holding the URL's lock.
    pub(in crate::cache) fn start_fleet_fill(
        self: &Arc<Self>,
        fleet: Arc<Fleet>,
        loc: &Location,
        url: &Url,
        source: Source,
        meta: EntryMeta,
    ) -> Result<Arc<Download>, CacheError> {
        let size = match &source {
            Source::Stored { record, .. } => Some(record.size),
            Source::Following { head, .. } => head_of(head, &loc.origin, url).content_length(),
        };
        self.ensure_room(size.unwrap_or(0))?;
        let partial = self.store.blobs.create_partial()?;
        let announced = Announced {
            size,
            mtime: meta.last_modified.is_some().then(|| meta.mtime()),
            private: false,
            parts: None,
        };
        let (download, writer) = Download::start(url.to_string(), announced, partial.file());
        self.flights.start(Arc::clone(&download));
        self.telemetry.counters.download_started();
        let fill = FleetFill {
            fleet,
            loc: loc.clone(),
            url: url.clone(),
            source,
            meta,
        };
        let cache = Arc::clone(self);
        self.spawn_fill(writer, move |writer| {
            Box::pin(async move { cache.fill_from_fleet(writer, partial, fill).await })
        });
        Ok(download)
    }

    async fn fill_from_fleet(
        self: &Arc<Self>,
        writer: &DownloadWriter,
        mut partial: PartialBlob,
        fill: FleetFill,
    ) -> Result<(), CacheError> {
        let FleetFill {
            fleet,
            loc,
            url,
            source,
            meta,
        } = fill;
        let (fleet, loc, url) = (&fleet, &loc, &url);
        let download = writer.download();
        let mut chunks = Vec::new();
        let ending = match &source {
            Source::Stored {
                record,
                chunks: all,
                ..
            } => {
                let mut queue = fleet.chunks(download.size);
                all.iter().for_each(|chunk| queue.push(*chunk));
                match self
                    .take_chunks(writer, &mut partial, &mut queue, &mut chunks)
                    .await?
                {
                    Some(stopped) => stopped,
                    None => match record.body_hash() {
                        Some(b3) => Ending::Whole(b3),
                        None => alone("the fleet's record is damaged"),
                    },
                }
            }
            Source::Following { token, head, .. } => {
                let stall = loc.origin.timeout + LEASE_TTL;
                let follow = Follow {
                    fleet,
                    url,
                    head,
                    stall,
                };
                follow
                    .run(self, writer, &mut partial, token.clone(), &mut chunks)
                    .await?
            }
        };
        match ending {
            Ending::Whole(b3) => {
                if partial.hash() != b3 {
                    // Chunks that each check out but do not make the body
                    // (the manifest's own hash was right): it goes from the
                    // fleet, and the next open asks the origin.
                    if let Source::Stored { record, .. } = &source {
                        fleet.forget_manifest(record).await;
                    }
                    return Err(CacheError::Io(std::io::Error::other(format!(
                        "{url}: the fleet's chunks do not make the body it names; \
                         open the file again"
                    ))));
                }
                self.commit_download(download, partial, meta).await?;
                self.telemetry.counters.add_shared_hit();
                self.telemetry.events.emit(
                    EventKind::SharedHit,
                    json!({ "url": url.as_str(), "size": download.size }),
                );
                Ok(())
            }
            Ending::Origin { lease, why } => {
                tracing::info!(
                    "{url}: {why}; the rest, from byte {}, comes from the origin",
                    partial.len()
                );
                // What comes from the origin is published, which also heals
                // the fleet's copy; under the lease when this host took the
                // fetch over.
                let head = source.head();
                let publication = Publication::resumed(head, source.received(), lease, chunks);
                let publishing = Some(self.start_publishing(publication, download));
                let rest = if download.size == Some(partial.len()) {
                    // Every byte is here; only the word that it is whole was missing.
                    None
                } else {
                    Some(
                        self.rest_from_origin(loc, url, head, download, partial.len())
                            .await?,
                    )
                };
                let (body, skip) = rest.map_or((None, 0), |(body, skip)| (Some(body), skip));
                self.fill(writer, body, partial, meta, publishing, skip)
                    .await
            }
        }
    }

    /// Appends the chunks `queue` gives, in order; `Some` when the fleet
    /// stopped giving them (the rest comes from the origin).
    async fn take_chunks(
        &self,
        writer: &DownloadWriter,
        partial: &mut PartialBlob,
        queue: &mut crate::shared::ChunkQueue,
        chunks: &mut Vec<blake3::Hash>,
    ) -> Result<Option<Ending>, CacheError> {
        let download = writer.download();
        loop {
            let (hash, bytes) = match queue.next().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Ok(None),
                Err(error) => return Ok(Some(alone(error))),
            };
            if download.progress().phase == Phase::Failed {
                return Err(download.failed().into());
            }
            let end = partial.len() + bytes.len() as u64;
            if download.size.is_some_and(|size| end > size) {
                return Ok(Some(alone("the fleet's chunks run past the body's end")));
            }
            // 4 MiB written and hashed: off the runtime's other tasks (the
            // lookups and small reads of this host go on meanwhile).
            blocking(|| self.append(partial, &bytes, download.size))?;
            writer.advance(partial.len());
            chunks.push(hash);
        }
    }

    /// The rest of the body of `head` from byte `start` on, from the
    /// origin: a range if it is still the same body (`If-Range`), else
    /// the whole body, of which the first `start` bytes are to be checked
    /// and skipped. A body changed meanwhile fails the download.
    async fn rest_from_origin(
        &self,
        loc: &Location,
        url: &Url,
        head: &Record,
        download: &Download,
        start: u64,
    ) -> Result<(BodyStream, u64), CacheError> {
        let origin = &loc.origin;
        if let Some(source) = part_source(origin, url, &head_of(head, origin, url)) {
            return match self
                .request_part(&source, download.size, start, None)
                .await?
            {
                PartAnswer::Part(body) => Ok((body, 0)),
                PartAnswer::Whole(body) => Ok((body, start)),
            };
        }
        let body = self.get_whole(origin, url).await?;
        if body.head.status != StatusCode::OK || body.head.content_length() != download.size {
            return Err(PartError::Changed {
                url: url.to_string(),
            }
            .into());
        }
        Ok((body, start))
    }
}

/// Following another host's fetch through its fill stream.
struct Follow<'a> {
    fleet: &'a Arc<Fleet>,
    url: &'a Url,
    /// The response being fetched: a new leader's must be the same.
    head: &'a Record,
    /// How long the fetch may make no progress before this host stops
    /// waiting for it.
    stall: Duration,
}

impl Follow<'_> {
    /// Reads the fill stream of the host leading with `token`, and each
    /// chunk it announces, until `done`, or until the fleet's copy stops.
    async fn run(
        &self,
        cache: &Cache,
        writer: &DownloadWriter,
        partial: &mut PartialBlob,
        mut token: String,
        chunks: &mut Vec<blake3::Hash>,
    ) -> Result<Ending, CacheError> {
        let (fleet, url) = (self.fleet, self.url.as_str());
        let download = writer.download();
        let mut after = String::new();
        let mut queue = fleet.chunks(download.size);
        let mut progressed = Instant::now();
        loop {
            let poll = match fleet.poll_fill(url, &token, &after).await {
                Ok(poll) => poll,
                Err(error) => return Ok(alone(error)),
            };
            let read_some = !poll.entries.is_empty();
            let mut ended = None;
            for (id, entry) in poll.entries {
                after = id;
                let Some(entry) = entry else { continue };
                let have = chunks.len() + queue.len();
                ended = self.take(entry, chunks, have, &mut queue);
                if ended.is_some() {
                    break;
                }
            }
            if !queue.is_empty() {
                progressed = Instant::now();
            }
            if let Some(stopped) = cache
                .take_chunks(writer, partial, &mut queue, chunks)
                .await?
            {
                return Ok(stopped);
            }
            if let Some(ended) = ended {
                return Ok(ended);
            }
            if read_some {
                continue;
            }
            match poll.leader {
                Some(leader) if leader == token => {
                    if progressed.elapsed() > self.stall {
                        cache.telemetry.counters.add_lease_bypass();
                        return Ok(alone(format!(
                            "the host fetching it made no progress for {:?}",
                            self.stall
                        )));
                    }
                    pause(cache, download).await?;
                }
                // Another host took the fetch over: its stream goes on.
                Some(leader) => {
                    token = leader;
                    after.clear();
                }
                None => match fleet.turn(url).await {
                    Turn::Lead(lease) => {
                        cache.telemetry.counters.add_lease_taken_over();
                        cache.telemetry.events.emit(
                            EventKind::Takeover,
                            json!({ "url": url, "from": partial.len() }),
                        );
                        return Ok(Ending::Origin {
                            lease: Some(lease),
                            why: "the host fetching it stopped; this host takes over".into(),
                        });
                    }
                    Turn::Follow => {}
                    Turn::Alone => return Ok(alone("the fleet tier cannot say who fetches it")),
                },
            }
        }
    }

    /// Takes one entry of the fill stream, this host having (or having
    /// asked for) `have` chunks; `Some` when the fleet's part ends.
    fn take(
        &self,
        entry: FillEntry,
        chunks: &[blake3::Hash],
        have: usize,
        queue: &mut crate::shared::ChunkQueue,
    ) -> Option<Ending> {
        match entry {
            FillEntry::Head(other) => (!same_response(self.head, &other))
                .then(|| alone("the fetch was started again for another response")),
            FillEntry::Chunk { index, hash } => {
                let Ok(hash) = blake3::Hash::from_hex(&hash) else {
                    return Some(alone("the fill stream is damaged"));
                };
                let index = usize::try_from(index).unwrap_or(usize::MAX);
                match chunks.get(index) {
                    // A new leader announces the chunks it had: the same.
                    Some(known) if *known == hash => None,
                    Some(_) => Some(alone("the body changed on its way")),
                    None if index < have => None,
                    None if index == have => {
                        queue.push(hash);
                        None
                    }
                    None => Some(alone("the fill stream skipped chunks")),
                }
            }
            FillEntry::Done { b3 } => Some(match blake3::Hash::from_hex(&b3) {
                Ok(b3) => Ending::Whole(b3),
                Err(_) => alone("the fill stream is damaged"),
            }),
            FillEntry::Abort { reason } => {
                Some(alone(format!("the host fetching it stopped ({reason})")))
            }
        }
    }
}

/// Waits a moment for the fill stream; a download nobody reads any more
/// stops ([`CacheError::Abandoned`]).
async fn pause(cache: &Cache, download: &Arc<Download>) -> Result<(), CacheError> {
    tokio::select! {
        () = tokio::time::sleep(WAIT_POLL) => Ok(()),
        () = download.unwanted(UNWANTED_GRACE) => cache.stop_unwanted(download).await,
    }
}

/// Runs `work`, which blocks, letting the runtime move this worker's
/// other tasks elsewhere meanwhile (on a multi-threaded runtime).
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Whether two heads describe one response: status, length and validators.
fn same_response(a: &Record, b: &Record) -> bool {
    a.status == b.status
        && ["content-length", "etag", "last-modified"]
            .iter()
            .all(|name| a.header(name) == b.header(name))
}

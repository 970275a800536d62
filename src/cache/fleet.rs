//! The cache's side of the fleet tier ([`crate::shared`]): a URL the local
//! store lacks is filled from the fleet when the fleet has it fresh, or
//! while another host fetches it, before the origin is asked
//! ([`follow`]); a body this host fetches from its origin is published for
//! the others while it arrives, when a shared cache may keep it
//! ([`publish`]).
//!
//! Both run under the URL's local flight lock or as its download, so one
//! host talks to the fleet once per URL however many readers it has. Any
//! failure of the fleet is a miss: the caller goes on to the origin.

mod follow;
mod publish;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::json;
use url::Url;

use super::freshness::{EntryMeta, ttl_rules};
use super::{Cache, CacheError, Download, Location, RemoteFile, Resolved};
use crate::config::{Origin, ShareMode};
use crate::origin::{Head, OriginClient};
use crate::shared::lease;
use crate::shared::schema::{FillEntry, Record, is_private_header};
use crate::shared::{Fleet, Found, Journal, Lease, Turn};
use crate::telemetry::EventKind;
use follow::Source;
pub use publish::{Publication, Publishing};

/// The longest a host waits for another that leads a URL's fetch; then it
/// fetches the URL itself.
const FOLLOW_LIMIT: Duration = Duration::from_secs(600);

impl Cache {
    /// Makes the cache use the fleet tier.
    pub fn set_fleet(&self, fleet: Arc<Fleet>) {
        let _ = self.fleet.set(fleet);
    }

    /// Where the fleet tier keeps its state across restarts: the index.
    pub fn fleet_journal(&self) -> Arc<dyn Journal> {
        Arc::new(IndexJournal(Arc::clone(&self.store.index)))
    }

    /// The fleet tier, when the mount has one.
    pub fn fleet(&self) -> Option<Arc<Fleet>> {
        self.fleet.get().cloned()
    }

    /// The fleet tier, when the mount has one and `origin` shares through it.
    fn fleet_of(&self, origin: &Origin) -> Option<Arc<Fleet>> {
        self.fleet().filter(|_| origin.share != ShareMode::Never)
    }

    /// The fleet could not help with `url`: takes its lease, to go to the
    /// origin holding it (`false`), unless another host holds it (`true`).
    /// `false` too when the fleet cannot say.
    async fn another_leads(&self, fleet: &Arc<Fleet>, url: &Url) -> bool {
        match fleet.turn(url.as_str()).await {
            Turn::Lead(lease) => {
                self.telemetry.counters.add_lease_led();
                fleet.hold(url.as_str(), lease);
                false
            }
            Turn::Alone => false,
            Turn::Follow => true,
        }
    }

    /// [`Cache::another_leads`], and if another host does, waits while it
    /// holds the lease (`true`: look in the fleet again), up to `give_up`
    /// (`false`: go to the origin).
    async fn wait_turn(
        &self,
        fleet: &Arc<Fleet>,
        url: &Url,
        give_up: tokio::time::Instant,
    ) -> bool {
        if !self.another_leads(fleet, url).await {
            return false;
        }
        self.telemetry.counters.add_lease_followed();
        fleet.wait_for_lease(url.as_str(), give_up).await
    }

    /// What to publish of a response to `url`, if this mount has a fleet
    /// tier that would take it. A lease held for it that will not be
    /// published goes at once, with word to the hosts waiting for it that
    /// they fetch it themselves.
    pub(super) fn publication(
        &self,
        origin: &Origin,
        url: &Url,
        head: &Head,
    ) -> Option<Publication> {
        let fleet = self.fleet.get()?;
        let lease = fleet.take_held(url.as_str());
        let too_big = head
            .content_length()
            .is_some_and(|size| size > fleet.max_object_size());
        match Publication::of(origin, url, head).filter(|_| fleet.publishes() && !too_big) {
            Some(mut publication) => {
                publication.lease = lease;
                Some(publication)
            }
            None => {
                if let Some(lease) = lease {
                    abort_lease(fleet, url, lease, "the response is not shared");
                }
                None
            }
        }
    }

    /// Before this host fetches `url` from its origin: fills it from the
    /// fleet if the fleet has it, or follows the host that is fetching it,
    /// or takes the lease to fetch it itself. Returns the fleet's download,
    /// or `None`: fetch it (holding the lease when this host won it; see
    /// [`Cache::drop_lease`]). Call it holding the URL's lock.
    pub(super) async fn before_fetch(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
    ) -> Result<Option<Arc<Download>>, CacheError> {
        let origin = &loc.origin;
        let Some(fleet) = self.fleet_of(origin) else {
            return Ok(None);
        };
        // How long a host that leads it may take to get its answer.
        let mut give_up = None;
        loop {
            let Some(standing) = fleet.standing(url.as_str()).await else {
                return Ok(None);
            };
            if let Some(found) = &standing.found
                && let Some(meta) = fresh_meta(found, origin, url)
                && let Some(download) = self.fill_from_record(&fleet, loc, url, found, meta).await?
            {
                return Ok(Some(download));
            }
            if let Some(token) = standing.leader {
                let Ok(poll) = fleet.poll_fill(url.as_str(), &token, "").await else {
                    return Ok(None);
                };
                match poll.entries.into_iter().find_map(|(_, entry)| entry) {
                    Some(FillEntry::Head(head)) => {
                        self.telemetry.counters.add_lease_followed();
                        let age = Duration::from_millis(poll.now_ms.saturating_sub(head.recv_ms));
                        let found = Found { record: head, age };
                        let meta = meta_of(&found, origin, url);
                        let source = Source::Following {
                            token,
                            head: found.record,
                            received: received_ago(age),
                        };
                        return self
                            .start_fleet_fill(fleet, loc, url, source, meta)
                            .map(Some);
                    }
                    // The response may not be shared: fetch it here.
                    Some(FillEntry::Abort { .. }) => return Ok(None),
                    // The leader waits for its origin's answer.
                    _ => {
                        let deadline = *give_up.get_or_insert_with(|| {
                            Instant::now() + origin.timeout + lease::LEASE_TTL
                        });
                        if Instant::now() > deadline {
                            self.telemetry.counters.add_lease_bypass();
                            return Ok(None);
                        }
                        tokio::time::sleep(lease::WAIT_POLL).await;
                        continue;
                    }
                }
            }
            if !self.another_leads(&fleet, url).await {
                return Ok(None);
            }
        }
    }

    /// What a lookup of `url` answers when the fleet has it fresh: the
    /// file as the fleet's record describes it, without a byte of it.
    pub(super) async fn fleet_file(&self, loc: &Location, url: &Url) -> Option<RemoteFile> {
        let fleet = self.fleet_of(&loc.origin)?;
        let found = fleet.lookup(url.as_str()).await?;
        if found.record.size > fleet.max_object_size() {
            return None;
        }
        fresh_meta(&found, &loc.origin, url)?;
        let head = head_of(&found.record, &loc.origin, url);
        let file = super::resolve::remote_of_head(&head, found.record.size);
        self.directory.remember_file(url.as_str(), file);
        Some(file)
    }

    /// Before this host revalidates its stored `url` (body `blob`): takes
    /// the fleet's record when it is fresh (another host revalidated it:
    /// no request), the same body refreshed, or a new body filled from the
    /// fleet; else leads the fleet's revalidation, or waits for the host
    /// that leads it and looks again. `Some` when the entry is fresh
    /// again; `None`: revalidate with the origin (holding the lease when
    /// this host won it).
    pub(super) async fn refresh_from_fleet(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
        blob: &blake3::Hash,
    ) -> Result<Option<Resolved>, CacheError> {
        let Some(fleet) = self.fleet_of(&loc.origin) else {
            return Ok(None);
        };
        let give_up = tokio::time::Instant::now() + FOLLOW_LIMIT;
        loop {
            if let Some(found) = fleet.lookup(url.as_str()).await
                && let Some(meta) = fresh_meta(&found, &loc.origin, url)
            {
                if found.record.body_hash() == Some(*blob) {
                    self.store.index.update_meta(url.as_str(), meta.to_json())?;
                    self.telemetry.counters.add_shared_hit();
                    self.telemetry.events.emit(
                        EventKind::SharedHit,
                        json!({ "url": url.as_str(), "refreshed": true }),
                    );
                    return self.stored_file(blob, meta.remaining(SystemTime::now()));
                }
                // The body changed, and another host has the new one.
                if let Some(download) = self
                    .fill_from_record(&fleet, loc, url, &found, meta)
                    .await?
                {
                    return self
                        .resolve_download(url, download.reader())
                        .await
                        .map(Some);
                }
            }
            if !self.wait_turn(&fleet, url, give_up).await {
                return Ok(None);
            }
        }
    }

    /// Starts filling `url` from the fleet's `found` record, fresh by
    /// `meta`; `None` when its body is too large to share or its chunks
    /// are not known. Call it holding the URL's lock.
    async fn fill_from_record(
        self: &Arc<Self>,
        fleet: &Arc<Fleet>,
        loc: &Location,
        url: &Url,
        found: &Found,
        meta: EntryMeta,
    ) -> Result<Option<Arc<Download>>, CacheError> {
        let record = &found.record;
        if record.size > fleet.max_object_size() {
            return Ok(None);
        }
        let Ok(chunks) = fleet.chunks_of(record).await else {
            return Ok(None);
        };
        let source = Source::Stored {
            record: found.record.clone(),
            chunks,
            received: received_ago(found.age),
        };
        self.start_fleet_fill(Arc::clone(fleet), loc, url, source, meta)
            .map(Some)
    }

    /// The origin answered 304 to this host's revalidation of `url` (body
    /// `blob`): the fleet's record of that body is refreshed for every
    /// host, in the background, and the lease released with it.
    pub(super) fn refresh_fleet(self: &Arc<Self>, url: &Url, blob: blake3::Hash, head: &Head) {
        let Some(fleet) = self.fleet.get().cloned() else {
            return;
        };
        let lease = fleet.take_held(url.as_str());
        let headers = shareable_headers(head);
        let url = url.to_string();
        tokio::spawn(async move {
            let Some(found) = fleet.lookup(&url).await else {
                return;
            };
            if found.record.body_hash() != Some(blob) {
                return;
            }
            if let Err(error) = fleet.refresh(&found, &headers, lease.as_ref()).await {
                tracing::debug!("refreshing the fleet's record of {url}: {error}");
            }
        });
    }

    /// The fetch this host led failed before its download started: the
    /// lease goes, and the hosts waiting for it fetch it themselves.
    pub(super) fn drop_lease(&self, url: &Url) {
        if let Some(fleet) = self.fleet.get()
            && let Some(lease) = fleet.take_held(url.as_str())
        {
            abort_lease(fleet, url, lease, "the origin's answer is not a body");
        }
    }

    /// Tells the fleet that this host applied `command` (`invalidate` or
    /// `evict`; `lines` as written, which every host of one config reads
    /// alike), in the background: the fleet's records of the matched `urls`
    /// go, and the other hosts apply the same lines.
    pub fn tell_fleet(&self, command: &'static str, lines: &[u8], urls: &[String]) {
        let Some(fleet) = self.fleet.get().cloned() else {
            return;
        };
        let (lines, urls) = (lines.to_vec(), urls.to_vec());
        tokio::spawn(async move {
            if let Err(error) = fleet.announce(command, &lines, &urls).await {
                tracing::warn!(
                    "telling the fleet about a .fetchfs/{command} write: {error}; \
                     it is sent when the fleet tier answers again"
                );
            }
        });
    }
}

/// The response headers a fleet record may carry: not `Set-Cookie` or the
/// like, and text only.
fn shareable_headers(head: &Head) -> Vec<(String, String)> {
    head.headers
        .iter()
        .filter(|(name, _)| !is_private_header(name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

/// The fleet's [`Journal`] in the cache's index.
struct IndexJournal(Arc<crate::store::Index>);

impl Journal for IndexJournal {
    fn load(&self, name: &str) -> Option<Vec<u8>> {
        self.0
            .state(&format!("fleet/{name}"))
            .inspect_err(|error| tracing::warn!("reading the fleet tier's {name}: {error}"))
            .ok()
            .flatten()
    }

    fn save(&self, name: &str, value: &[u8]) {
        if let Err(error) = self.0.set_state(&format!("fleet/{name}"), value) {
            tracing::warn!("keeping the fleet tier's {name}: {error}");
        }
    }
}

/// The instant that was `age` ago.
fn received_ago(age: Duration) -> Instant {
    let now = Instant::now();
    now.checked_sub(age).unwrap_or(now)
}

/// Tells the hosts waiting for `lease` that its fetch will not be
/// published, then releases it, in the background.
fn abort_lease(fleet: &Arc<Fleet>, url: &Url, lease: Lease, reason: &str) {
    let (fleet, url, reason) = (Arc::clone(fleet), url.to_string(), reason.to_string());
    tokio::spawn(async move {
        let _ = fleet
            .add_fill(&url, &lease, &[FillEntry::Abort { reason }])
            .await;
        drop(lease);
    });
}

/// The entry a fleet record makes on this host: its freshness by this
/// host's rules, and its age carried over (it was received `age` ago by
/// Redis's clock, whatever this host's clock says).
fn meta_of(found: &Found, origin: &Origin, url: &Url) -> EntryMeta {
    let head = head_of(&found.record, origin, url);
    let received = SystemTime::now()
        .checked_sub(found.age)
        .unwrap_or(UNIX_EPOCH);
    EntryMeta::from_response(url, &head, &ttl_rules(origin), received)
}

/// [`meta_of`], when the entry is fresh.
fn fresh_meta(found: &Found, origin: &Origin, url: &Url) -> Option<EntryMeta> {
    let meta = meta_of(found, origin, url);
    (meta.is_storable() && meta.remaining(SystemTime::now()) > Duration::ZERO).then_some(meta)
}

/// The response a fleet record describes, as if this host had received it:
/// with the request headers this host sends (a `Vary` is matched against
/// them).
fn head_of(record: &Record, origin: &Origin, url: &Url) -> Head {
    let headers: HeaderMap = record
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect();
    Head {
        url: url.clone(),
        status: StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK),
        headers,
        request_headers: OriginClient::cacheable_request_headers(origin, url),
        redirects: Vec::new(),
    }
}

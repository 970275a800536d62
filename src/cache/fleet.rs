//! The cache's side of the fleet tier ([`crate::shared`]): a URL the local
//! store lacks is filled from the fleet when the fleet has it fresh, before
//! the origin is asked; a body this host stored from its origin is
//! published for the others, when a shared cache may keep it.
//!
//! Both run under the URL's local flight lock or after its commit, so one
//! host talks to the fleet once per URL however many readers it has. Any
//! failure of the fleet is a miss: the caller goes on to the origin.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::json;
use url::Url;

use super::freshness::{EntryMeta, is_shareable, ttl_rules, unix_secs};
use super::{Cache, CacheError, Location, Resolved};
use crate::config::{Origin, ShareMode};
use crate::origin::{Head, OriginClient};
use crate::shared::schema::{Record, is_private_header};
use crate::shared::{Fleet, Found, Lease, Turn};
use crate::telemetry::EventKind;

/// The longest a host waits for another that leads a URL's fetch; then it
/// fetches the URL itself.
const FOLLOW_LIMIT: Duration = Duration::from_secs(600);

/// What to publish of a response once its body is stored.
pub struct Publication {
    url: String,
    status: u16,
    headers: Vec<(String, String)>,
    /// When the response came (its age counts from then on every host).
    received: Instant,
    /// The lease this host took to fetch it, if it did.
    lease: Option<Lease>,
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
        })
    }
}

impl Cache {
    /// Makes the cache use the fleet tier.
    pub fn set_fleet(&self, fleet: Arc<Fleet>) {
        let _ = self.fleet.set(fleet);
    }

    /// The fleet tier, when the mount has one.
    pub fn fleet(&self) -> Option<Arc<Fleet>> {
        self.fleet.get().cloned()
    }

    /// The fleet tier, when the mount has one and `origin` shares through it.
    fn fleet_of(&self, origin: &Origin) -> Option<Arc<Fleet>> {
        self.fleet().filter(|_| origin.share != ShareMode::Never)
    }

    /// The fleet could not help with `url`: takes its lease (`false`: go to
    /// the origin, holding it), or waits while another host holds it
    /// (`true`: look in the fleet again), or gives up waiting at `give_up`
    /// or when the fleet cannot say (`false`).
    async fn wait_turn(
        &self,
        fleet: &Arc<Fleet>,
        url: &Url,
        give_up: tokio::time::Instant,
    ) -> bool {
        match fleet.turn(url.as_str()).await {
            Turn::Lead(lease) => {
                self.telemetry.counters.add_lease_led();
                fleet.hold(url.as_str(), lease);
                false
            }
            Turn::Alone => false,
            Turn::Follow => {
                self.telemetry.counters.add_lease_followed();
                fleet.wait_for_lease(url.as_str(), give_up).await
            }
        }
    }

    /// What to publish of a response to `url`, if this mount has a fleet
    /// tier that would take it.
    pub(super) fn publication(
        &self,
        origin: &Origin,
        url: &Url,
        head: &Head,
    ) -> Option<Publication> {
        let fleet = self.fleet.get()?;
        // Taken out first: when the response will not be published, the
        // lease goes at once, and the hosts waiting for it fetch from the
        // origin themselves.
        let lease = fleet.take_held(url.as_str());
        if !fleet.publishes()
            || head
                .content_length()
                .is_some_and(|size| size > fleet.max_object_size())
        {
            return None;
        }
        Publication::of(origin, url, head).map(|publication| Publication {
            lease,
            ..publication
        })
    }

    /// Before this host fetches `url` from its origin: fills it from the
    /// fleet if it has it, waits while another host fetches it (then fills
    /// it from the fleet), or takes the lease to fetch it itself. Returns
    /// the stored body's hash, or `None`: fetch it (holding the lease when
    /// this host won it; see [`Cache::drop_lease`]).
    pub(super) async fn before_fetch(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
    ) -> Result<Option<blake3::Hash>, CacheError> {
        let Some(fleet) = self.fleet_of(&loc.origin) else {
            return Ok(None);
        };
        let give_up = tokio::time::Instant::now() + FOLLOW_LIMIT;
        loop {
            if let Some((hash, _)) = self.fill_from_fleet(loc, url).await? {
                return Ok(Some(hash));
            }
            if !self.wait_turn(&fleet, url, give_up).await {
                return Ok(None);
            }
        }
    }

    /// Before this host revalidates its stored `url` (body `blob`): takes
    /// the fleet's record when it names the same body and is fresh (another
    /// host revalidated it: no request), else leads the fleet's
    /// revalidation, or waits for the host that leads it and looks again.
    /// `Some` when the entry is fresh again; `None`: revalidate with the
    /// origin (holding the lease when this host won it).
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
                && found.record.body_hash() == Some(*blob)
                && let Some(meta) = fresh_meta(&found, &loc.origin, url)
            {
                self.store.index.update_meta(url.as_str(), meta.to_json())?;
                self.telemetry.counters.add_shared_hit();
                self.telemetry.events.emit(
                    EventKind::SharedHit,
                    json!({ "url": url.as_str(), "refreshed": true }),
                );
                return self.stored_file(blob, meta.remaining(SystemTime::now()));
            }
            if !self.wait_turn(&fleet, url, give_up).await {
                return Ok(None);
            }
        }
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
    /// lease goes, so a waiting host takes over at once.
    pub(super) fn drop_lease(&self, url: &Url) {
        if let Some(fleet) = self.fleet.get() {
            drop(fleet.take_held(url.as_str()));
        }
    }

    /// Publishes the body `hash` just stored for `publication`, in the
    /// background.
    pub(super) fn publish(
        self: &Arc<Self>,
        publication: Publication,
        hash: blake3::Hash,
        size: u64,
    ) {
        let Some(fleet) = self.fleet.get().cloned() else {
            return;
        };
        if size > fleet.max_object_size() {
            return;
        }
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let body = match cache.store.blobs.open_blob(&hash) {
                Ok(body) => body,
                // Evicted already: nothing to share.
                Err(_) => return,
            };
            let record = Record {
                url: publication.url,
                b3: hash.to_hex().to_string(),
                size,
                status: publication.status,
                headers: publication.headers,
                recv_ms: 0,
            };
            let url = record.url.clone();
            let received = publication.received.elapsed();
            let lease = publication.lease.as_ref();
            if let Err(error) = fleet.publish(record, received, body, lease).await {
                tracing::debug!("publishing {url} to the fleet tier: {error}");
            }
        });
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

    /// Fills the local store with `url`'s body from the fleet tier, when
    /// the fleet has a fresh response for it. Returns the stored body's
    /// hash and how long it stays fresh; `None` when the fleet cannot help (a miss, a stale record, a
    /// damaged or vanished chunk, Redis down): then the origin is asked.
    /// Call it holding the URL's lock.
    pub(super) async fn fill_from_fleet(
        self: &Arc<Self>,
        loc: &Location,
        url: &Url,
    ) -> Result<Option<(blake3::Hash, Duration)>, CacheError> {
        let origin = &loc.origin;
        let Some(fleet) = self.fleet_of(origin) else {
            return Ok(None);
        };
        let Some(found) = fleet.lookup(url.as_str()).await else {
            return Ok(None);
        };
        let record = &found.record;
        if record.size > fleet.max_object_size() {
            return Ok(None);
        }
        let Some(meta) = fresh_meta(&found, origin, url) else {
            // Stale in the fleet: this host revalidates it with the origin.
            return Ok(None);
        };
        self.ensure_room(record.size)?;
        let mut partial = self.store.blobs.create_partial()?;
        let filled = fleet
            .read_body(record, |bytes| {
                self.append(&mut partial, bytes, Some(record.size))
                    .map_err(std::io::Error::other)
            })
            .await;
        if let Err(error) = filled {
            tracing::warn!(
                "{url}: the fleet tier could not give the body ({error}); asking the origin"
            );
            return Ok(None);
        }
        if Some(partial.hash()) != record.body_hash() {
            // Chunks that each check out but do not make the body: the
            // manifest is wrong. The partial file goes with `partial`.
            tracing::warn!(
                "{url}: the fleet's chunks do not make the body it names; asking the origin"
            );
            fleet.forget_manifest(record).await;
            return Ok(None);
        }
        let cache = Arc::clone(self);
        let (url_text, mtime, json) = (url.to_string(), unix_secs(meta.mtime()), meta.to_json());
        // The commit and the cap read and write the index: the blocking
        // pool's work, as for a body from the origin.
        let hash = tokio::task::spawn_blocking(move || {
            let (hash, _) = cache.store.commit(partial, &url_text, mtime, json)?;
            if let Err(error) = cache.enforce_cap() {
                tracing::warn!("evicting to stay under the cache size cap: {error}");
            }
            Ok::<_, CacheError>(hash)
        })
        .await
        .map_err(|e| CacheError::Io(std::io::Error::other(e)))??;
        self.telemetry.counters.add_shared_hit();
        self.telemetry.events.emit(
            EventKind::SharedHit,
            json!({ "url": url.as_str(), "size": record.size }),
        );
        Ok(Some((hash, meta.remaining(SystemTime::now()))))
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

/// The entry a fleet record makes on this host, when it is fresh: its
/// freshness by this host's rules, and its age carried over (it was
/// received `age` ago by Redis's clock, whatever this host's clock says).
fn fresh_meta(found: &Found, origin: &Origin, url: &Url) -> Option<EntryMeta> {
    let head = head_of(&found.record, origin, url);
    let received = SystemTime::now()
        .checked_sub(found.age)
        .unwrap_or(UNIX_EPOCH);
    let meta = EntryMeta::from_response(url, &head, &ttl_rules(origin), received);
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

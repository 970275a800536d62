//! The fleet tier: bodies shared by every mount that names the same Redis
//! (`[shared]` in the config), so a fleet fetches each body from its origin
//! once. The design is FLEET.md's, on Redis alone: the host that fetches a
//! body publishes it chunk by chunk as it arrives (chunks, a fill stream,
//! then manifest and record), and the other hosts read it from Redis, as
//! it arrives or later, instead of asking the origin.
//!
//! Redis is never the truth, only a hint: a key that is missing is a miss,
//! every chunk and every body is checked against its blake3, and every
//! call has a deadline behind a circuit [`breaker`]. While Redis is down or
//! slow, a read costs what it costs on a mount without a fleet tier, and
//! mounting never waits for Redis (connections are made lazily).

mod breaker;
pub mod lease;
pub mod schema;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use crate::config::SharedConfig;
use crate::telemetry::{EventKind, Telemetry};
use breaker::{Breaker, Tripped};
pub use lease::{Lease, Turn};
use schema::{CHUNK_SIZE, FillEntry, Keys, Manifest, Record};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("the fleet tier is down (the breaker is open)")]
    Down,
    #[error("the fleet tier did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the fleet tier: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0} is damaged in the fleet tier; it was dropped")]
    Damaged(String),
    #[error("{0} is no longer in the fleet tier")]
    Missing(String),
    #[error("reading the body to publish: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Stopped(String),
}

/// What the fleet knows of a URL now.
#[derive(Debug, Clone)]
pub struct Standing {
    pub found: Option<Found>,
    /// The lease token of the host fetching it from its origin.
    pub leader: Option<String>,
}

/// What a read of a fill stream found.
#[derive(Debug)]
pub struct FillPoll {
    /// Who holds the URL's lease, read before the entries.
    pub leader: Option<String>,
    /// The entries, by stream id; `None` for one this version cannot read.
    pub entries: Vec<(String, Option<FillEntry>)>,
    /// Redis's clock.
    pub now_ms: u64,
}

/// Chunks to read in order, at most [`CHUNKS_ASKED`] on their way at once.
pub struct ChunkQueue {
    fleet: Arc<Fleet>,
    kind: Kind,
    waiting: std::collections::VecDeque<blake3::Hash>,
    asked: std::collections::VecDeque<(blake3::Hash, ChunkAnswer)>,
}

type ChunkAnswer = tokio::task::JoinHandle<Result<Vec<u8>, FleetError>>;

/// The largest body whose chunk comes on the control connection.
const SMALL_BODY: u64 = 64 * 1024;

/// Chunks asked for ahead of the one being checked and written.
const CHUNKS_ASKED: usize = 2;

impl ChunkQueue {
    pub fn push(&mut self, chunk: blake3::Hash) {
        self.waiting.push_back(chunk);
        self.ask();
    }

    /// Chunks pushed and not yet taken.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.asked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ask(&mut self) {
        while self.asked.len() < CHUNKS_ASKED
            && let Some(chunk) = self.waiting.pop_front()
        {
            let answer = self.fleet.get_chunk(self.kind, &chunk);
            self.asked.push_back((chunk, answer));
        }
    }

    /// The next chunk's bytes, checked against its hash; `None` when the
    /// queue is empty. A damaged chunk is dropped from Redis and, like a
    /// missing one, is an error: the caller goes to the origin.
    pub async fn next(&mut self) -> Result<Option<(blake3::Hash, Vec<u8>)>, FleetError> {
        let Some((chunk, answer)) = self.asked.pop_front() else {
            return Ok(None);
        };
        self.ask();
        let fleet = &self.fleet;
        let bytes = answer
            .await
            .map_err(|e| FleetError::Io(std::io::Error::other(e)))??;
        fleet
            .telemetry
            .counters
            .add_bytes_from_shared(bytes.len() as u64);
        Ok(Some((chunk, bytes)))
    }
}

/// A URL the fleet has, and how old its response is.
#[derive(Debug, Clone)]
pub struct Found {
    pub record: Record,
    /// Redis's clock now, minus the record's `recv_ms`.
    pub age: Duration,
}

pub struct Fleet {
    client: redis::Client,
    /// Small requests: records, manifests, the clock. Made anew after a
    /// connection failure, so a Redis that comes back is found.
    control: parking_lot::Mutex<Option<ConnectionManager>>,
    /// Chunks, on their own connection so a large one never holds up a
    /// lookup.
    bulk: parking_lot::Mutex<Option<ConnectionManager>>,
    keys: Keys,
    config: SharedConfig,
    breaker: parking_lot::Mutex<Breaker>,
    telemetry: Telemetry,
    /// This daemon among the fleet's, in the command stream.
    host: String,
    /// Leases this host holds for downloads about to start, by URL.
    held: parking_lot::Mutex<std::collections::HashMap<String, Lease>>,
    /// Commands applied here while the fleet did not answer, to send.
    pending: parking_lot::Mutex<Vec<Command>>,
    /// Where this host keeps what it must not forget across restarts.
    journal: Arc<dyn Journal>,
}

/// Where a host keeps, across restarts, its name in the fleet, its place
/// in the command stream and the commands it could not send yet (the
/// cache's index, in the daemon). A failure to save is logged and costs
/// what it costs after a restart: commands missed or not sent.
pub trait Journal: Send + Sync {
    fn load(&self, name: &str) -> Option<Vec<u8>>;
    fn save(&self, name: &str, value: &[u8]);
}

/// The journal's names, under the namespace (one stream per namespace).
const HOST_NAME: &str = "host";
const CURSOR_NAME: &str = "cursor";
const PENDING_NAME: &str = "pending";

/// An `invalidate` or `evict` this host applied, for the other hosts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Command {
    command: String,
    lines: Vec<u8>,
    /// The URLs it matched here, whose fleet records go.
    urls: Vec<String>,
}

impl Fleet {
    /// The fleet tier of `config`, keeping its state in `journal`.
    /// Connects lazily, on the first call: call it on the tokio runtime
    /// that will use it.
    pub fn new(
        config: SharedConfig,
        telemetry: Telemetry,
        journal: Arc<dyn Journal>,
    ) -> Result<Arc<Fleet>, FleetError> {
        let info = config.connection_info()?;
        let client = match &config.ca_pem {
            Some(ca) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            )?,
            None => redis::Client::open(info)?,
        };
        telemetry.counters.set_shared_up(true);
        let mut fleet = Fleet {
            client,
            control: Default::default(),
            bulk: Default::default(),
            keys: Keys::new(&config.namespace),
            config,
            breaker: Default::default(),
            telemetry,
            host: String::new(),
            held: Default::default(),
            pending: Default::default(),
            journal,
        };
        // One name for the life of the cache dir: a host that restarts
        // knows the commands it sent before.
        fleet.host = fleet.load(HOST_NAME).unwrap_or_else(|| {
            let host = host_id();
            fleet.save(HOST_NAME, &host);
            host
        });
        fleet.pending = parking_lot::Mutex::new(fleet.load(PENDING_NAME).unwrap_or_default());
        Ok(Arc::new(fleet))
    }

    /// What the journal keeps under `what` for this namespace; `None` when
    /// nothing, or nothing this version reads.
    fn load<T: serde::de::DeserializeOwned>(&self, what: &str) -> Option<T> {
        let saved = self.journal.load(&self.journal_name(what))?;
        serde_json::from_slice(&saved).ok()
    }

    /// Keeps `value` in the journal under `what` for this namespace.
    fn save(&self, what: &str, value: &impl serde::Serialize) {
        let saved = serde_json::to_vec(value).unwrap_or_default();
        self.journal.save(&self.journal_name(what), &saved);
    }

    fn journal_name(&self, what: &str) -> String {
        format!("{}/{what}", self.config.namespace)
    }

    /// The connection of a kind, made (lazily: it connects on its first
    /// request) when there is none.
    fn connection(&self, kind: Kind) -> redis::RedisResult<ConnectionManager> {
        let (slot, response_timeout) = match kind {
            Kind::Control => (&self.control, self.config.op_timeout),
            Kind::Bulk => (&self.bulk, self.config.chunk_timeout),
        };
        let mut slot = slot.lock();
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(response_timeout))
            // The breaker does the retrying, with its own backoff.
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_lazy_with_config(self.client.clone(), settings)?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets the connections: the next call makes new ones.
    fn disconnect(&self) {
        self.control.lock().take();
        self.bulk.lock().take();
    }

    /// The largest body the fleet shares.
    pub fn max_object_size(&self) -> u64 {
        self.config.max_object_size
    }

    /// Whether this host may publish (a read-only user never writes).
    pub fn publishes(&self) -> bool {
        !self.config.read_only
    }

    /// What the fleet knows of `url`; `None` for a miss, and for any
    /// failure (counted, logged by the breaker).
    pub async fn lookup(&self, url: &str) -> Option<Found> {
        self.standing(url).await?.found
    }

    /// The record of `url` read as `value` when Redis's clock said `now_ms`;
    /// an unreadable one is dropped.
    async fn found(&self, url: &str, value: &[u8], now_ms: u64) -> Option<Found> {
        let record: Record = match serde_json::from_slice(value) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!("the fleet's record of {url} is not valid ({error}); dropped");
                self.drop_key(self.keys.url(url)).await;
                return None;
            }
        };
        (record.url == url).then(|| Found {
            age: Duration::from_millis(now_ms.saturating_sub(record.recv_ms)),
            record,
        })
    }

    /// Whose turn it is to fetch `url` from its origin: this host's (it
    /// takes the lease), another's, or nobody knows (then fetch it).
    pub async fn turn(self: &Arc<Self>, url: &str) -> Turn {
        if !self.publishes() {
            return Turn::Alone;
        }
        Lease::take(self, self.keys.lease(url)).await
    }

    /// Keeps `lease` for the download of `url` about to start.
    pub fn hold(&self, url: &str, lease: Lease) {
        self.held.lock().insert(url.to_string(), lease);
    }

    /// The lease held for `url`, if any; dropping it releases it.
    pub fn take_held(&self, url: &str) -> Option<Lease> {
        self.held.lock().remove(url)
    }

    /// Waits while another host holds `url`'s lease (it is fetching it),
    /// until `give_up`. True when the lease is gone (published, released
    /// or expired): look again.
    pub async fn wait_for_lease(&self, url: &str, give_up: Instant) -> bool {
        let key = self.keys.lease(url);
        while Instant::now() < give_up {
            let asked = key.clone();
            let held = self
                .call(Kind::Control, |mut control| async move {
                    redis::cmd("EXISTS")
                        .arg(&asked)
                        .query_async::<bool>(&mut control)
                        .await
                })
                .await;
            match held {
                Ok(true) => tokio::time::sleep(lease::WAIT_POLL).await,
                // Gone, or the fleet cannot tell: look again.
                Ok(false) | Err(_) => return true,
            }
        }
        false
    }

    /// What the fleet knows of `url` now: its record, and which host is
    /// fetching it (its lease token). `None` when the fleet cannot say.
    pub async fn standing(&self, url: &str) -> Option<Standing> {
        let (key, lease) = (self.keys.url(url), self.keys.lease(url));
        let asked = self
            .call(Kind::Control, |mut control| async move {
                redis::pipe()
                    .get(&key)
                    .get(&lease)
                    .cmd("TIME")
                    .query_async::<(Option<Vec<u8>>, Option<String>, (u64, u64))>(&mut control)
                    .await
            })
            .await;
        let (value, leader, time) = asked.ok()?;
        let found = match value {
            Some(value) => self.found(url, &value, redis_ms(time)).await,
            None => None,
        };
        Some(Standing { found, leader })
    }

    /// The chunks of `record`'s body. A body of one chunk is that chunk:
    /// its hash is the body's, and no manifest is read. Otherwise they come
    /// from its manifest; a manifest that is not the one the record names,
    /// or does not add up, is dropped.
    pub async fn chunks_of(&self, record: &Record) -> Result<Vec<blake3::Hash>, FleetError> {
        let body = record
            .body_hash()
            .ok_or_else(|| FleetError::Damaged(self.keys.url(&record.url)))?;
        match record.size {
            0 => return Ok(Vec::new()),
            size if size <= CHUNK_SIZE as u64 => return Ok(vec![body]),
            _ => {}
        }
        let manifest_key = self.keys.object(&body);
        let key = manifest_key.clone();
        let stored: Option<Vec<u8>> = self
            .call(Kind::Control, |mut control| async move {
                redis::cmd("GET").arg(&key).query_async(&mut control).await
            })
            .await?;
        let stored = stored.ok_or(FleetError::Missing(manifest_key.clone()))?;
        let chunks = serde_json::from_slice::<Manifest>(&stored)
            .ok()
            .filter(|manifest| manifest.size == record.size && record.names_manifest(&stored))
            .and_then(|manifest| manifest.chunk_hashes());
        match chunks {
            Some(chunks) => Ok(chunks),
            None => {
                self.drop_key(manifest_key.clone()).await;
                Err(FleetError::Damaged(manifest_key))
            }
        }
    }

    /// A queue of the chunks of a body of `size` bytes (if known) to
    /// read, the next ones on their way while one is checked and written.
    /// A small body's come on the control connection: a 4 KiB file must
    /// not wait behind the 4 MiB chunks of a large one.
    pub fn chunks(self: &Arc<Self>, size: Option<u64>) -> ChunkQueue {
        let kind = match size {
            Some(size) if size <= SMALL_BODY => Kind::Control,
            _ => Kind::Bulk,
        };
        ChunkQueue {
            fleet: Arc::clone(self),
            kind,
            waiting: Default::default(),
            asked: Default::default(),
        }
    }

    /// Asks for one chunk on a connection of `kind`, on a task of its own,
    /// which also checks it against its hash (on the blocking pool: 4 MiB
    /// of hashing would hold up a runtime worker's lookups).
    fn get_chunk(self: &Arc<Self>, kind: Kind, chunk: &blake3::Hash) -> ChunkAnswer {
        let (fleet, key, chunk) = (Arc::clone(self), self.keys.chunk(chunk), *chunk);
        tokio::spawn(async move {
            let asked = key.clone();
            let bytes: Option<Vec<u8>> = fleet
                .call(kind, |mut connection| async move {
                    redis::cmd("GET")
                        .arg(&asked)
                        .query_async(&mut connection)
                        .await
                })
                .await?;
            let bytes = bytes.ok_or(FleetError::Missing(key.clone()))?;
            let (bytes, whole) = tokio::task::spawn_blocking(move || {
                let whole = blake3::hash(&bytes) == chunk;
                (bytes, whole)
            })
            .await
            .map_err(|e| FleetError::Io(std::io::Error::other(e)))?;
            if !whole {
                fleet.drop_key(key.clone()).await;
                return Err(FleetError::Damaged(key));
            }
            Ok(bytes)
        })
    }

    /// Stores one chunk of a body. Written even when the key exists: a
    /// chunk is put only from a body fetched from its origin, and the
    /// rewrite heals a chunk that was damaged in Redis.
    pub async fn put_chunk(&self, chunk: &blake3::Hash, bytes: Vec<u8>) -> Result<(), FleetError> {
        if !self.publishes() {
            return Ok(());
        }
        let key = self.keys.chunk(chunk);
        self.call(Kind::Bulk, |mut bulk| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(bytes)
                .query_async::<()>(&mut bulk)
                .await
        })
        .await
    }

    /// Reads the fill stream of the fetch of `url` led by `token`, from
    /// after entry `after` (from its start when empty), and who holds the
    /// lease now (read first: a leader gone with no `done` or `abort`
    /// after it died, or released the lease without one).
    pub async fn poll_fill(
        &self,
        url: &str,
        token: &str,
        after: &str,
    ) -> Result<FillPoll, FleetError> {
        let (lease, stream) = (self.keys.lease(url), self.keys.fill(url, token));
        let from = if after.is_empty() {
            "-".to_string()
        } else {
            format!("({after}")
        };
        let (leader, entries, time) = self
            .call(Kind::Control, |mut control| async move {
                redis::pipe()
                    .get(&lease)
                    .cmd("XRANGE")
                    .arg(&stream)
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(FILL_READ)
                    .cmd("TIME")
                    .query_async::<(Option<String>, Vec<StreamEntry>, (u64, u64))>(&mut control)
                    .await
            })
            .await?;
        let entries = entries
            .into_iter()
            .map(|(id, fields)| {
                let entry = fields
                    .iter()
                    .find(|(name, _)| name == "e")
                    .and_then(|(_, value)| FillEntry::decode(value));
                (id, entry)
            })
            .collect();
        Ok(FillPoll {
            leader,
            entries,
            now_ms: redis_ms(time),
        })
    }

    /// Adds `entries` to the fill stream of this host's fetch of `url`.
    pub async fn add_fill(
        &self,
        url: &str,
        lease: &Lease,
        entries: &[FillEntry],
    ) -> Result<(), FleetError> {
        let stream = self.keys.fill(url, &lease.token);
        let entries: Vec<Vec<u8>> = entries.iter().map(FillEntry::encode).collect();
        self.call(Kind::Control, |mut control| async move {
            let mut pipe = redis::pipe();
            for entry in &entries {
                pipe.cmd("XADD")
                    .arg(&stream)
                    .arg("*")
                    .arg("e")
                    .arg(entry)
                    .ignore();
            }
            pipe.cmd("PEXPIRE")
                .arg(&stream)
                .arg(FILL_KEPT.as_millis() as u64)
                .ignore();
            pipe.query_async::<()>(&mut control).await
        })
        .await
    }

    /// Redis's clock, ms since the epoch: the fleet's one clock.
    pub async fn now_ms(&self) -> Result<u64, FleetError> {
        let time = self
            .call(Kind::Control, |mut control| async move {
                redis::cmd("TIME").query_async(&mut control).await
            })
            .await?;
        Ok(redis_ms(time))
    }

    /// Publishes a body whose chunks are all in Redis: its manifest, then
    /// its URL's record (and, for the host that leads its fetch, `done` in
    /// the fill stream), so a reader never finds a record whose chunks are
    /// not all there. `received` is how long ago the response came.
    pub async fn publish(
        &self,
        mut record: Record,
        received: Duration,
        chunks: &[blake3::Hash],
        lease: Option<&Lease>,
    ) -> Result<(), FleetError> {
        if !self.publishes() {
            return Ok(());
        }
        let manifest = Manifest {
            size: record.size,
            chunk_size: CHUNK_SIZE as u64,
            chunks: chunks.iter().map(|c| c.to_hex().to_string()).collect(),
        };
        let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
        record.m3 = blake3::hash(&manifest).to_hex().to_string();
        self.publish_record(record, received, manifest, lease).await
    }

    /// Publishes a fresh record of a body the fleet has: the origin
    /// answered 304 to this host's revalidation, with `headers` on top of
    /// the stored ones. Every host then takes the body as fresh again
    /// without asking the origin.
    pub async fn refresh(
        &self,
        found: &Found,
        headers: &[(String, String)],
        lease: Option<&Lease>,
    ) -> Result<(), FleetError> {
        if !self.publishes() {
            return Ok(());
        }
        let mut record = found.record.clone();
        for (name, value) in headers {
            record
                .headers
                .retain(|(known, _)| !known.eq_ignore_ascii_case(name));
            record.headers.push((name.clone(), value.clone()));
        }
        self.publish_record(record, Duration::ZERO, Vec::new(), lease)
            .await
    }

    /// Writes the record (and the manifest, unless empty) through the
    /// lease-checking script, stamping it with Redis's clock less
    /// `received`; the lease's fill stream gets `done`.
    async fn publish_record(
        &self,
        mut record: Record,
        received: Duration,
        manifest: Vec<u8>,
        lease: Option<&Lease>,
    ) -> Result<(), FleetError> {
        let manifest_key = record
            .body_hash()
            .map(|hash| self.keys.object(&hash))
            .ok_or_else(|| FleetError::Damaged(record.b3.clone()))?;
        let url_key = self.keys.url(&record.url);
        record.recv_ms = self
            .now_ms()
            .await?
            .saturating_sub(received.as_millis() as u64);
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let lease_key = self.keys.lease(&record.url);
        let (token, stream, done) = match lease {
            Some(lease) => (
                lease.token.clone(),
                self.keys.fill(&record.url, &lease.token),
                FillEntry::Done {
                    b3: record.b3.clone(),
                }
                .encode(),
            ),
            None => (
                String::new(),
                self.keys.fill(&record.url, "none"),
                Vec::new(),
            ),
        };
        let published = self
            .call(Kind::Control, |mut control| async move {
                redis::Script::new(lease::PUBLISH)
                    .key(&url_key)
                    .key(&lease_key)
                    .key(&manifest_key)
                    .key(&stream)
                    .arg(value)
                    .arg(manifest)
                    .arg(token)
                    .arg(done)
                    .arg(FILL_KEPT.as_millis() as u64)
                    .invoke_async::<i64>(&mut control)
                    .await
            })
            .await?;
        if published == 0 {
            // Another host holds the lease now: its publication counts.
            tracing::debug!("{}: another host leads it; not published", record.url);
            return Ok(());
        }
        if let Some(lease) = lease {
            lease.published();
        }
        self.telemetry.counters.add_shared_publish();
        self.telemetry.events.emit(
            EventKind::Publish,
            serde_json::json!({ "url": record.url, "size": record.size }),
        );
        Ok(())
    }

    /// Tells the other hosts that this one applied `command` with `lines`,
    /// and drops the fleet's records of the `urls` it matched here, so no
    /// host refills them from the fleet.
    pub async fn announce(
        &self,
        command: &str,
        lines: &[u8],
        urls: &[String],
    ) -> Result<(), FleetError> {
        if !self.publishes() {
            return Ok(());
        }
        let sent = Command {
            command: command.to_string(),
            lines: lines.to_vec(),
            urls: urls.to_vec(),
        };
        match self.send_command(&sent).await {
            Ok(()) => Ok(()),
            Err(error) => {
                // Sent when the fleet answers again (see `flush_pending`).
                let mut pending = self.pending.lock();
                if pending.len() < PENDING_KEPT {
                    pending.push(sent);
                    self.save(PENDING_NAME, &*pending);
                }
                Err(error)
            }
        }
    }

    async fn send_command(&self, sent: &Command) -> Result<(), FleetError> {
        let stream = self.keys.commands();
        let records: Vec<String> = sent.urls.iter().map(|url| self.keys.url(url)).collect();
        let (host, command, lines) = (self.host.clone(), sent.command.clone(), sent.lines.clone());
        self.call(Kind::Control, |mut control| async move {
            let mut pipe = redis::pipe();
            if !records.is_empty() {
                pipe.cmd("DEL").arg(&records).ignore();
            }
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(COMMANDS_KEPT)
                .arg("*")
                .arg("by")
                .arg(&host)
                .arg("command")
                .arg(&command)
                .arg("lines")
                .arg(&lines)
                .ignore();
            pipe.query_async::<()>(&mut control).await
        })
        .await?;
        self.telemetry.counters.add_fleet_command_sent();
        Ok(())
    }

    /// Sends the commands this host applied while the fleet did not answer,
    /// in order; those that still fail stay pending.
    async fn flush_pending(&self) {
        let pending = std::mem::take(&mut *self.pending.lock());
        if pending.is_empty() {
            return;
        }
        let mut left = Vec::new();
        for (i, sent) in pending.iter().enumerate() {
            if self.send_command(sent).await.is_err() {
                left.extend(pending[i..].iter().cloned());
                break;
            }
        }
        let mut pending = self.pending.lock();
        left.append(&mut pending);
        *pending = left;
        self.save(PENDING_NAME, &*pending);
    }

    /// Follows the fleet's command stream for as long as the process lives,
    /// and hands each command another host applied to `apply`
    /// (`invalidate` or `evict`, and its lines). After a broken connection
    /// it reads on from the last command it saw (see [`Cursor`]), and
    /// first sends what this host applied meanwhile.
    pub fn follow_commands(
        self: &Arc<Self>,
        apply: impl Fn(&str, Vec<u8>) + Send + Sync + 'static,
    ) {
        let fleet = Arc::clone(self);
        tokio::spawn(async move {
            // Where this host stopped reading, before a restart too.
            let mut cursor: Cursor = fleet.load(CURSOR_NAME).unwrap_or_default();
            loop {
                match fleet.read_commands(&mut cursor, &apply).await {
                    Ok(()) => {}
                    Err(error) => {
                        tracing::debug!("reading the fleet's command stream: {error}");
                        tokio::time::sleep(FOLLOW_RETRY).await;
                    }
                }
            }
        });
    }

    /// Reads the command stream on a connection of its own (a blocking
    /// read must not hold up the others) until it fails.
    async fn read_commands(
        &self,
        cursor: &mut Cursor,
        apply: &impl Fn(&str, Vec<u8>),
    ) -> Result<(), FleetError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(FOLLOW_BLOCK + self.config.op_timeout));
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let stream = self.keys.commands();
        // Connected: what this host applied while the fleet was away goes
        // out first.
        self.flush_pending().await;
        let (added, length) = stream_counts(&mut connection, &stream).await;
        match &cursor.last {
            None => {
                // From the stream's end: what came before is history.
                let newest: Vec<StreamEntry> = redis::cmd("XREVRANGE")
                    .arg(&stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut connection)
                    .await?;
                cursor.last = Some(newest.first().map_or("0-0".into(), |(id, _)| id.clone()));
                cursor.added_before = added;
                self.save(CURSOR_NAME, cursor);
            }
            // Reconnected. The entries added since this host started that
            // it has not read are the newest ones; trimming drops the
            // oldest first, so if fewer entries are left than it has not
            // read, some it never read are gone.
            Some(_) if length < added.saturating_sub(cursor.added_before + cursor.read) => {
                tracing::warn!(
                    "commands from the fleet were lost while this host could not read them; \
                     every stored entry will be revalidated"
                );
                apply("invalidate", b"/**\n".to_vec());
                // What is left is read below; what was lost is made up for.
                cursor.read = added.saturating_sub(cursor.added_before + length);
                self.save(CURSOR_NAME, cursor);
            }
            Some(_) => {}
        }
        loop {
            // Each round (a second at most): the breaker may have let a
            // flush on connecting fail.
            if !self.pending.lock().is_empty() {
                self.flush_pending().await;
            }
            let from = cursor.last.clone().unwrap_or_else(|| "0-0".into());
            let read: Option<Vec<(String, Vec<StreamEntry>)>> = redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(FOLLOW_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&from)
                .query_async(&mut connection)
                .await?;
            for (_, entries) in read.unwrap_or_default() {
                for (id, fields) in entries {
                    cursor.last = Some(id);
                    cursor.read += 1;
                    let field = |name: &str| {
                        fields
                            .iter()
                            .find(|(key, _)| key == name)
                            .map(|(_, value)| value.clone())
                    };
                    let (Some(by), Some(command), Some(lines)) =
                        (field("by"), field("command"), field("lines"))
                    else {
                        continue;
                    };
                    if by == self.host.as_bytes() {
                        continue;
                    }
                    self.telemetry.counters.add_fleet_command_received();
                    apply(&String::from_utf8_lossy(&command), lines);
                }
                self.save(CURSOR_NAME, cursor);
            }
        }
    }

    /// Drops the manifest of `record`'s body: its chunks do not make it.
    pub async fn forget_manifest(&self, record: &Record) {
        if let Some(body) = record.body_hash() {
            self.drop_key(self.keys.object(&body)).await;
        }
    }

    /// Drops a damaged key; a failure to is no matter (it stays damaged
    /// and is dropped by the next reader).
    async fn drop_key(&self, key: String) {
        let _ = self
            .call(Kind::Control, |mut control| async move {
                redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<()>(&mut control)
                    .await
            })
            .await;
    }

    /// Runs one call to Redis on a connection of `kind`, within its
    /// deadline, through the breaker.
    async fn call<T, Call, Answer>(&self, kind: Kind, call: Call) -> Result<T, FleetError>
    where
        Call: FnOnce(ConnectionManager) -> Answer,
        Answer: Future<Output = redis::RedisResult<T>>,
    {
        if !self.breaker.lock().allow(Instant::now()) {
            return Err(FleetError::Down);
        }
        let deadline = match kind {
            Kind::Control => self.config.op_timeout,
            Kind::Bulk => self.config.chunk_timeout,
        };
        let result = match self.connection(kind) {
            Err(error) => Err(FleetError::Redis(error)),
            Ok(connection) => match tokio::time::timeout(deadline, call(connection)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(FleetError::Redis(error)),
                Err(_) => Err(FleetError::Timeout(deadline)),
            },
        };
        match &result {
            Ok(_) => {
                if self.breaker.lock().succeeded() {
                    self.went(true, "answers again");
                }
            }
            Err(error) => {
                self.telemetry.counters.add_shared_error();
                let fatal = matches!(error, FleetError::Redis(e) if e.is_connection_refusal() || e.is_io_error());
                if fatal {
                    self.disconnect();
                }
                let tripped = self.breaker.lock().failed(Instant::now(), fatal);
                if tripped == Tripped::Opened {
                    self.went(
                        false,
                        &format!("is down ({error}); reads go to the origins"),
                    );
                }
            }
        }
        result
    }

    /// Tells that the fleet tier went down or came back: one log line, one event.
    fn went(&self, up: bool, what: &str) {
        self.telemetry.counters.set_shared_up(up);
        if up {
            tracing::info!("the fleet tier {what}");
        } else {
            tracing::warn!("the fleet tier {what}");
        }
        self.telemetry.events.emit(
            if up {
                EventKind::SharedUp
            } else {
                EventKind::SharedDown
            },
            serde_json::json!({ "message": format!("the fleet tier {what}") }),
        );
    }
}

/// One entry of a Redis stream: its id and its fields.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// Entries of a fill stream read at once.
const FILL_READ: usize = 256;
/// How long a fill stream is kept after its last entry.
const FILL_KEPT: Duration = Duration::from_secs(600);

/// Commands applied while the fleet was away that are kept to send later.
const PENDING_KEPT: usize = 10_000;

/// Commands kept in the fleet's stream (trimmed approximately).
const COMMANDS_KEPT: u64 = 100_000;
/// How long one read of the command stream waits for a command.
const FOLLOW_BLOCK: Duration = Duration::from_secs(1);
/// After a failed read of the command stream, the wait before the next.
const FOLLOW_RETRY: Duration = Duration::from_secs(1);

/// Redis's `TIME` answer (seconds, microseconds) in ms since the epoch.
fn redis_ms((secs, micros): (u64, u64)) -> u64 {
    secs * 1000 + micros / 1000
}

/// Where a host stands in the command stream.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Cursor {
    /// The id of the last entry it read (or the stream's end when it started).
    last: Option<String>,
    /// The stream's `entries-added` when it started following.
    added_before: u64,
    /// Entries it has read (or given up on) since.
    read: u64,
}

/// The stream's `entries-added` (every entry ever added; Redis 7) and its
/// length now; zeros for a stream that does not exist or a server that
/// does not tell.
async fn stream_counts(
    connection: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> (u64, u64) {
    let info: redis::RedisResult<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async(connection)
        .await;
    let Ok(info) = info else {
        return (0, 0);
    };
    let field = |wanted: &[u8]| {
        info.chunks(2).find_map(|pair| match pair {
            [redis::Value::BulkString(name), redis::Value::Int(value)] if name == wanted => {
                u64::try_from(*value).ok()
            }
            _ => None,
        })
    };
    match (field(b"entries-added"), field(b"length")) {
        (Some(added), Some(length)) => (added, length),
        _ => (0, 0),
    }
}

/// A name in the fleet: host name, pid and a random part.
fn host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let random = blake3::hash(&nanos.to_le_bytes()).to_hex();
    format!("{}:{}:{}", name.trim(), std::process::id(), &random[..8])
}

/// The two kinds of connection: one never waits behind the other.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Control,
    Bulk,
}

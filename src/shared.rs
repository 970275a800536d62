//! The fleet tier: bodies shared by every mount that names the same Redis
//! (`[shared]` in the config), so a fleet fetches each body from its origin
//! once. The design is FLEET.md's; this is its first phase: a body stored
//! by one host is published (chunks, manifest, record) and another host's
//! lookup fills its local store from Redis instead of asking the origin.
//!
//! Redis is never the truth, only a hint: a key that is missing is a miss,
//! every chunk and every body is checked against its blake3, and every
//! call has a deadline behind a circuit [`breaker`]. While Redis is down or
//! slow, a read costs what it costs on a mount without a fleet tier, and
//! mounting never waits for Redis (connections are made lazily).

mod breaker;
mod lease;
pub mod schema;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use crate::config::SharedConfig;
use crate::telemetry::{EventKind, Telemetry};
use breaker::{Breaker, Tripped};
pub use lease::{Lease, Turn};
use schema::{CHUNK_SIZE, Keys, Manifest, Record};

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
}

/// An `invalidate` or `evict` this host applied, for the other hosts.
#[derive(Debug, Clone)]
struct Command {
    command: String,
    lines: Vec<u8>,
    /// The URLs it matched here, whose fleet records go.
    urls: Vec<String>,
}

impl Fleet {
    /// The fleet tier of `config`. Connects lazily, on the first call: call
    /// it on the tokio runtime that will use it.
    pub fn new(config: SharedConfig, telemetry: Telemetry) -> Result<Arc<Fleet>, FleetError> {
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
        Ok(Arc::new(Fleet {
            client,
            control: Default::default(),
            bulk: Default::default(),
            keys: Keys::new(&config.namespace),
            config,
            breaker: Default::default(),
            telemetry,
            host: host_id(),
            held: Default::default(),
            pending: Default::default(),
        }))
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
        let key = self.keys.url(url);
        let asked = self
            .call(Kind::Control, |mut control| async move {
                redis::pipe()
                    .get(&key)
                    .cmd("TIME")
                    .query_async::<(Option<Vec<u8>>, (u64, u64))>(&mut control)
                    .await
            })
            .await;
        let (value, (secs, micros)) = asked.ok()?;
        let record: Record = match serde_json::from_slice(&value?) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!("the fleet's record of {url} is not valid ({error}); dropped");
                self.drop_key(self.keys.url(url)).await;
                return None;
            }
        };
        if record.url != url {
            return None;
        }
        let now_ms = secs * 1000 + micros / 1000;
        Some(Found {
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

    /// Reads the body of `record` chunk by chunk into `sink`, checking each
    /// chunk against its hash and the length against the record's, with
    /// the next chunk on its way while one is checked and written. The body
    /// as a whole is the caller's to check (its store hashes what it
    /// writes). A damaged chunk is dropped from Redis and fails the read,
    /// as does a missing one: the caller then asks the origin.
    pub async fn read_body(
        self: &Arc<Self>,
        record: &Record,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, FleetError> {
        let body = record
            .body_hash()
            .ok_or_else(|| FleetError::Damaged(self.keys.url(&record.url)))?;
        let manifest_key = self.keys.object(&body);
        let key = manifest_key.clone();
        let manifest: Option<Vec<u8>> = self
            .call(Kind::Control, |mut control| async move {
                redis::cmd("GET").arg(&key).query_async(&mut control).await
            })
            .await?;
        let manifest: Manifest = manifest
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(FleetError::Missing(manifest_key.clone()))?;
        let chunks = match manifest.chunk_hashes() {
            Some(chunks) if manifest.size == record.size => chunks,
            _ => {
                self.drop_key(manifest_key.clone()).await;
                return Err(FleetError::Damaged(manifest_key));
            }
        };
        let mut read = 0;
        let mut next = chunks.first().map(|chunk| self.get_chunk(chunk));
        for (i, chunk) in chunks.iter().enumerate() {
            let Some(asked) = next.take() else { break };
            let answer = asked
                .await
                .map_err(|e| FleetError::Io(std::io::Error::other(e)))?;
            next = chunks.get(i + 1).map(|chunk| self.get_chunk(chunk));
            let key = self.keys.chunk(chunk);
            let bytes = answer?.ok_or(FleetError::Missing(key.clone()))?;
            if blake3::hash(&bytes) != *chunk {
                self.drop_key(key.clone()).await;
                return Err(FleetError::Damaged(key));
            }
            sink(&bytes)?;
            read += bytes.len() as u64;
            self.telemetry
                .counters
                .add_bytes_from_shared(bytes.len() as u64);
        }
        if read != record.size {
            self.drop_key(manifest_key.clone()).await;
            return Err(FleetError::Damaged(manifest_key));
        }
        Ok(read)
    }

    /// Asks for one chunk, on a task of its own so it comes while the
    /// previous one is checked and written.
    fn get_chunk(
        self: &Arc<Self>,
        chunk: &blake3::Hash,
    ) -> tokio::task::JoinHandle<Result<Option<Vec<u8>>, FleetError>> {
        let (fleet, key) = (Arc::clone(self), self.keys.chunk(chunk));
        tokio::spawn(async move {
            fleet
                .call(Kind::Bulk, |mut bulk| async move {
                    redis::cmd("GET").arg(&key).query_async(&mut bulk).await
                })
                .await
        })
    }

    /// Publishes a body this host stored: its chunks (those Redis lacks),
    /// then its manifest, then the URL's record, so a reader never finds a
    /// record whose chunks are not all there. `received` is how long ago
    /// the response came.
    pub async fn publish(
        &self,
        record: Record,
        received: Duration,
        mut body: std::fs::File,
        lease: Option<&Lease>,
    ) -> Result<(), FleetError> {
        if !self.publishes() {
            return Ok(());
        }
        let mut chunks = Vec::new();
        loop {
            // Read and hashed on the blocking pool: 4 MiB of disk reads
            // would hold up a runtime worker.
            let (file, value, hash) = tokio::task::spawn_blocking(move || {
                let mut buffer = vec![0u8; CHUNK_SIZE];
                let filled = fill_buffer(&mut body, &mut buffer)?;
                buffer.truncate(filled);
                let hash = blake3::hash(&buffer);
                Ok::<_, std::io::Error>((body, buffer, hash))
            })
            .await
            .map_err(std::io::Error::other)??;
            body = file;
            let filled = value.len();
            if filled == 0 {
                break;
            }
            let key = self.keys.chunk(&hash);
            // Written even when the key exists: a body is published only
            // after an origin fetch, and that rewrite heals a chunk that
            // was damaged in Redis.
            self.call(Kind::Bulk, |mut bulk| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .query_async::<()>(&mut bulk)
                    .await
            })
            .await?;
            chunks.push(hash.to_hex().to_string());
            if filled < CHUNK_SIZE {
                break;
            }
        }
        let manifest = Manifest {
            size: record.size,
            chunk_size: CHUNK_SIZE as u64,
            chunks,
        };
        let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
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
    /// `received`.
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
        let (secs, micros): (u64, u64) = self
            .call(Kind::Control, |mut control| async move {
                redis::cmd("TIME").query_async(&mut control).await
            })
            .await?;
        let now_ms = secs * 1000 + micros / 1000;
        record.recv_ms = now_ms.saturating_sub(received.as_millis() as u64);
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let lease_key = self.keys.lease(&record.url);
        let token = lease.map(|lease| lease.token.clone()).unwrap_or_default();
        let published = self
            .call(Kind::Control, |mut control| async move {
                redis::Script::new(lease::PUBLISH)
                    .key(&url_key)
                    .key(&lease_key)
                    .key(&manifest_key)
                    .arg(value)
                    .arg(manifest)
                    .arg(token)
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
        let mut left = Vec::new();
        for (i, sent) in pending.iter().enumerate() {
            if self.send_command(sent).await.is_err() {
                left.extend(pending[i..].iter().cloned());
                break;
            }
        }
        if !left.is_empty() {
            let mut pending = self.pending.lock();
            left.append(&mut pending);
            *pending = left;
        }
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
            let mut cursor = Cursor::default();
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

/// Commands applied while the fleet was away that are kept to send later.
const PENDING_KEPT: usize = 10_000;

/// Commands kept in the fleet's stream (trimmed approximately).
const COMMANDS_KEPT: u64 = 100_000;
/// How long one read of the command stream waits for a command.
const FOLLOW_BLOCK: Duration = Duration::from_secs(1);
/// After a failed read of the command stream, the wait before the next.
const FOLLOW_RETRY: Duration = Duration::from_secs(1);

/// Where a host stands in the command stream.
#[derive(Debug, Default)]
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

/// This daemon's name in the fleet: host name, pid and a random part.
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

/// Reads until `buffer` is full or the file ends; returns how much it read.
fn fill_buffer(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

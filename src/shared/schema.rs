//! What the fleet tier keeps in Redis, and how it is named (FLEET.md §5.2).
//!
//! - `NS:url:<blake3 of the URL>`: the [`Record`] of a URL, one JSON value
//!   written in one `SET`: the body's hash and size, the origin's status and
//!   response headers (never a request credential, never `Set-Cookie`), and
//!   when the response was received, in Redis time.
//! - `NS:obj:<blake3 of the body>`: its [`Manifest`], the hashes of its chunks
//!   in order; written only once every chunk is there.
//! - `NS:chunk:<blake3 of the chunk>`: up to [`CHUNK_SIZE`] bytes of a body.
//! - `NS:lease:<blake3 of the URL>`: the token of the host fetching it
//!   from its origin (see `lease.rs`).
//! - `NS:fill:<blake3 of the URL>:<token>`: the progress of that fetch, a
//!   stream of [`FillEntry`]s the hosts waiting for it read (cut-through):
//!   the response's head, each chunk as it is stored, then `done` or
//!   `abort`. A host that takes the fetch over starts a stream of its own.
//! - `NS:commands`: a stream of the `invalidate` and `evict` writes hosts
//!   applied (`by`, `command`, `lines`), which every host follows.
//!
//! Every key is a hint: a missing one is a miss, and every chunk and body
//! is checked against its hash, so Redis may evict anything (allkeys-lru).

use serde::{Deserialize, Serialize};

/// 4 MiB − 4 KiB: Redis moves values up to 4 MiB at full speed, and a value
/// of exactly 4 MiB takes 5 MiB of its memory (jemalloc size classes).
pub const CHUNK_SIZE: usize = 4 * 1024 * 1024 - 4096;

/// Key names under one namespace (`fetchfs:v1` by default).
#[derive(Debug, Clone)]
pub struct Keys {
    namespace: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Keys {
        Keys {
            namespace: namespace.to_string(),
        }
    }

    pub fn url(&self, url: &str) -> String {
        format!(
            "{}:url:{}",
            self.namespace,
            blake3::hash(url.as_bytes()).to_hex()
        )
    }

    pub fn object(&self, body: &blake3::Hash) -> String {
        format!("{}:obj:{}", self.namespace, body.to_hex())
    }

    pub fn chunk(&self, chunk: &blake3::Hash) -> String {
        format!("{}:chunk:{}", self.namespace, chunk.to_hex())
    }

    /// The lease of the host fetching `url` from its origin.
    pub fn lease(&self, url: &str) -> String {
        format!(
            "{}:lease:{}",
            self.namespace,
            blake3::hash(url.as_bytes()).to_hex()
        )
    }

    /// The progress of the fetch of `url` by the host whose lease token is
    /// `token`.
    pub fn fill(&self, url: &str, token: &str) -> String {
        format!(
            "{}:fill:{}:{token}",
            self.namespace,
            blake3::hash(url.as_bytes()).to_hex()
        )
    }

    /// The stream of `invalidate` and `evict` commands hosts applied.
    pub fn commands(&self) -> String {
        format!("{}:commands", self.namespace)
    }
}

/// What the fleet knows of a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub url: String,
    /// The body's blake3, hex.
    pub b3: String,
    pub size: u64,
    pub status: u16,
    /// The origin's response headers, as received (names lower case).
    pub headers: Vec<(String, String)>,
    /// When the response was received, in Redis time (ms since the epoch).
    pub recv_ms: u64,
    /// The blake3 of the body's manifest as stored, hex: a manifest damaged
    /// or mixed up is caught before a byte of it is served.
    #[serde(default)]
    pub m3: String,
}

/// What a fill stream tells of a fetch in progress, one entry at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillEntry {
    /// The origin's response (a [`Record`] without `b3` and `m3`; `size`
    /// is 0 when the origin did not announce one).
    Head(Record),
    /// Chunk `index` of the body is in Redis.
    Chunk { index: u64, hash: String },
    /// The body is whole, its record published.
    Done { b3: String },
    /// The fetch stopped, or its response may not be shared: the waiting
    /// hosts go to the origin themselves.
    Abort { reason: String },
}

/// The chunks of one body, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub size: u64,
    pub chunk_size: u64,
    /// Each chunk's blake3, hex.
    pub chunks: Vec<String>,
}

impl Record {
    pub fn body_hash(&self) -> Option<blake3::Hash> {
        blake3::Hash::from_hex(&self.b3).ok()
    }

    /// The value of the response header `name` (any case), if it has one.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether `manifest` (as stored) is the one this record names.
    pub fn names_manifest(&self, manifest: &[u8]) -> bool {
        blake3::Hash::from_hex(&self.m3).is_ok_and(|m3| m3 == blake3::hash(manifest))
    }
}

impl FillEntry {
    /// The entry as stored in its stream's one field.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// An entry read back; `None` for one this version does not know.
    pub fn decode(bytes: &[u8]) -> Option<FillEntry> {
        serde_json::from_slice(bytes).ok()
    }
}

impl Manifest {
    /// The chunk hashes, or `None` if one is not a hash or they cannot add
    /// up to `size`.
    pub fn chunk_hashes(&self) -> Option<Vec<blake3::Hash>> {
        let chunk_size = self.chunk_size.max(1);
        if self.chunks.len() as u64 != self.size.div_ceil(chunk_size) {
            return None;
        }
        self.chunks
            .iter()
            .map(|hex| blake3::Hash::from_hex(hex).ok())
            .collect()
    }
}

/// Response headers that are never shared: they belong to one client.
pub fn is_private_header(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "set-cookie" | "set-cookie2" | "authorization" | "proxy-authorization" | "cookie"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_urls_bodies_and_chunks_by_their_hashes() {
        let keys = Keys::new("fetchfs:v1");
        let url = keys.url("https://downloads.example.org/a");
        assert!(url.starts_with("fetchfs:v1:url:"), "{url}");
        assert_eq!(url.len(), "fetchfs:v1:url:".len() + 64);
        let body = blake3::hash(b"body");
        assert_eq!(
            keys.object(&body),
            format!("fetchfs:v1:obj:{}", body.to_hex())
        );
        assert_eq!(
            keys.chunk(&body),
            format!("fetchfs:v1:chunk:{}", body.to_hex())
        );
    }

    #[test]
    fn a_manifest_must_add_up() {
        let chunk = blake3::hash(b"c").to_hex().to_string();
        let manifest = Manifest {
            size: CHUNK_SIZE as u64 + 1,
            chunk_size: CHUNK_SIZE as u64,
            chunks: vec![chunk.clone(), chunk.clone()],
        };
        assert_eq!(manifest.chunk_hashes().unwrap().len(), 2);
        let short = Manifest {
            chunks: vec![chunk.clone()],
            ..manifest.clone()
        };
        assert!(short.chunk_hashes().is_none());
        let garbage = Manifest {
            chunks: vec![chunk, "not hex".into()],
            ..manifest
        };
        assert!(garbage.chunk_hashes().is_none());
    }

    #[test]
    fn cookies_and_credentials_are_never_shared() {
        assert!(is_private_header("Set-Cookie"));
        assert!(is_private_header("authorization"));
        assert!(!is_private_header("etag"));
    }
}

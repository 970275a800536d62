//! The `.fetchfs/` control folder: files a shell script reads to watch the
//! cache; and the same metrics over HTTP ([`exporter`]).

pub mod commands;
pub mod exporter;
pub mod pattern;
pub mod stats;
pub mod status;

use crate::cache::Cache;
use stats::Stats;
use status::Status;

/// The control folder's name at the mount root.
pub const CONTROL_DIR: &str = ".fetchfs";

/// The name of the daemon `pid`'s control socket in the abstract namespace
/// (see `fs/socket.rs`), which the `status` file shows with an `@`.
pub fn control_socket_name(pid: u32) -> String {
    format!("fetchfs/{pid}/control")
}

/// One file of the control folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFile {
    Stats,
    Metrics,
    /// What the mount is, and its downloads under way.
    Status,
    /// A stream: each read waits for the next events.
    Events,
    /// Written: matching entries become stale.
    Invalidate,
    /// Written: matching entries are dropped.
    Evict,
    /// Written: these paths are fetched in the background.
    Prefetch,
}

impl ControlFile {
    pub const ALL: [ControlFile; 7] = [
        ControlFile::Stats,
        ControlFile::Metrics,
        ControlFile::Status,
        ControlFile::Events,
        ControlFile::Invalidate,
        ControlFile::Evict,
        ControlFile::Prefetch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ControlFile::Stats => "stats",
            ControlFile::Metrics => "metrics",
            ControlFile::Status => "status",
            ControlFile::Events => "events",
            ControlFile::Invalidate => "invalidate",
            ControlFile::Evict => "evict",
            ControlFile::Prefetch => "prefetch",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<ControlFile> {
        ControlFile::ALL
            .into_iter()
            .find(|f| f.name().as_bytes() == name)
    }

    /// Whether the file takes writes (patterns) rather than reads.
    pub fn is_command(self) -> bool {
        matches!(
            self,
            ControlFile::Invalidate | ControlFile::Evict | ControlFile::Prefetch
        )
    }

    /// What a reader of this file gets now, from the cache and what the
    /// mount is; `None` for a stream or a command file.
    pub fn snapshot(self, cache: &Cache, mount: &Status) -> Option<Vec<u8>> {
        match self {
            ControlFile::Stats => Some(Stats::of(cache).to_json().into_bytes()),
            ControlFile::Metrics => Some(Stats::of(cache).to_prometheus().into_bytes()),
            ControlFile::Status => Some(mount.now(cache).to_json().into_bytes()),
            ControlFile::Events
            | ControlFile::Invalidate
            | ControlFile::Evict
            | ControlFile::Prefetch => None,
        }
    }
}

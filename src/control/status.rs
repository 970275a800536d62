//! The `status` file: what this mount is (its daemon, cache dir, origins,
//! log) and the downloads it has under way. `fetchfs status` lists every
//! mount with it; `fetchfs top` draws the downloads as progress bars.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::{Cache, InFlight};
use crate::config::Config;

/// The `status` file: one JSON object, field names are the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's process id.
    pub pid: u32,
    /// The daemon's version.
    pub version: String,
    pub mountpoint: PathBuf,
    pub cache_dir: PathBuf,
    /// Where the daemon logs: a file, `journal`, or `stderr`.
    pub log: String,
    pub origins: Vec<OriginStatus>,
    pub any_host: bool,
    pub offline: bool,
    pub allow_other: bool,
    /// Mounted `ro`: the command files cannot be written.
    #[serde(default)]
    pub read_only: bool,
    /// The abstract Unix socket that takes commands (`@NAME`).
    #[serde(default)]
    pub control_socket: String,
    /// The downloads under way, in URL order.
    pub downloads: Vec<DownloadStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginStatus {
    pub name: String,
    pub url: String,
}

/// A download under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadStatus {
    pub url: String,
    /// Bytes on disk from the start without a gap.
    pub bytes: u64,
    /// The size the origin announced; `null` when it did not.
    pub size: Option<u64>,
    /// Open files reading it (0 for a prefetch).
    pub readers: usize,
}

impl Status {
    /// What a mount is, with no download under way yet.
    pub fn of_mount(config: &Config, mountpoint: &Path, log: String) -> Status {
        Status {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            mountpoint: mountpoint.to_path_buf(),
            cache_dir: config.cache_dir.clone(),
            log,
            origins: config
                .origins
                .iter()
                .map(|origin| OriginStatus {
                    name: origin.name.clone(),
                    url: origin.url.to_string(),
                })
                .collect(),
            any_host: config.any_host,
            offline: config.offline,
            allow_other: config.allow_other,
            read_only: config.read_only,
            control_socket: format!("@{}", super::control_socket_name(std::process::id())),
            downloads: Vec::new(),
        }
    }

    /// This mount now: its downloads as the cache has them.
    pub fn now(&self, cache: &Cache) -> Status {
        Status {
            downloads: cache.in_flight().into_iter().map(Into::into).collect(),
            ..self.clone()
        }
    }

    /// `status` file content: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

impl From<InFlight> for DownloadStatus {
    fn from(download: InFlight) -> DownloadStatus {
        DownloadStatus {
            url: download.url,
            bytes: download.written,
            size: download.size,
            readers: download.readers,
        }
    }
}

impl DownloadStatus {
    /// How much of the body is on disk, 0..=1; `None` when the size is unknown.
    pub fn fraction(&self) -> Option<f64> {
        match self.size {
            Some(0) => Some(1.0),
            Some(size) => Some((self.bytes as f64 / size as f64).min(1.0)),
            None => None,
        }
    }
}

/// A mount at /mnt/artifacts with one origin and no download, for tests.
#[cfg(test)]
pub fn example() -> Status {
    Status {
        pid: 42,
        version: "0.1.0".into(),
        mountpoint: "/mnt/artifacts".into(),
        cache_dir: "/var/cache/fetchfs".into(),
        log: "journal".into(),
        origins: vec![OriginStatus {
            name: "rel".into(),
            url: "https://downloads.example.org/".into(),
        }],
        any_host: false,
        offline: false,
        allow_other: false,
        read_only: false,
        control_socket: "@fetchfs/42/control".into(),
        downloads: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_back_from_its_json() {
        let status = Status {
            downloads: vec![DownloadStatus {
                url: "https://downloads.example.org/a".into(),
                bytes: 5,
                size: Some(20),
                readers: 1,
            }],
            ..example()
        };
        let back: Status = serde_json::from_str(&status.to_json()).unwrap();
        assert_eq!(back, status);
        assert_eq!(back.downloads[0].fraction(), Some(0.25));
        let unknown = DownloadStatus {
            size: None,
            ..back.downloads[0].clone()
        };
        assert_eq!(unknown.fraction(), None);
    }
}

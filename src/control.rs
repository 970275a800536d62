//! The `.fetchfs/` control folder: files a shell script reads to watch the cache.

pub mod stats;

/// The control folder's name at the mount root.
pub const CONTROL_DIR: &str = ".fetchfs";

/// One file of the control folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFile {
    Stats,
    Metrics,
}

impl ControlFile {
    pub const ALL: [ControlFile; 2] = [ControlFile::Stats, ControlFile::Metrics];

    pub fn name(self) -> &'static str {
        match self {
            ControlFile::Stats => "stats",
            ControlFile::Metrics => "metrics",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<ControlFile> {
        ControlFile::ALL
            .into_iter()
            .find(|f| f.name().as_bytes() == name)
    }

    /// What a reader of this file gets now.
    pub fn render(self, stats: &stats::Stats) -> Vec<u8> {
        match self {
            ControlFile::Stats => stats.to_json().into_bytes(),
            ControlFile::Metrics => stats.to_prometheus().into_bytes(),
        }
    }
}

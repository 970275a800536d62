//! What the cache answers about a path: a stored body, a file the origin has,
//! a directory; where an entry stands; and what is open.

use std::fs::File;
use std::time::{Duration, SystemTime};

use super::download::Reader;

/// A body in the blob store.
#[derive(Debug, Clone, Copy)]
pub struct StoredFile {
    pub ino: u64,
    pub hash: blake3::Hash,
    pub size: u64,
    /// Paths known to point at this body.
    pub links: u64,
    pub mtime: SystemTime,
    /// How long the path may keep pointing at it without asking again.
    pub ttl: Duration,
    /// Served privately (see [`Origin::keeps_private`]): only the mount's
    /// owner and root may read it.
    ///
    /// [`Origin::keeps_private`]: crate::config::Origin::keeps_private
    pub private: bool,
}

/// A file the origin has and the store does not (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteFile {
    pub size: u64,
    pub mtime: Option<SystemTime>,
    /// The download of this body under way, if any ([`Download::id`]): one
    /// body version, one inode, so two versions never share a page cache.
    ///
    /// [`Download::id`]: super::Download::id
    pub download: Option<u64>,
    /// Fetched with the origin's credentials: only the mount's owner and
    /// root may read it.
    pub private: bool,
}

/// What a path is.
#[derive(Debug, Clone, Copy)]
pub enum Resolved {
    Stored(StoredFile),
    Remote(RemoteFile),
    Directory,
}

/// Where a URL's entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Stored and fresh: served without asking the origin.
    Fresh,
    /// Stored, but the next lookup revalidates it.
    Stale,
    /// Its body is downloading now.
    Fetching,
    /// Not stored: the origin has it.
    Remote,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Fresh => "fresh",
            EntryState::Stale => "stale",
            EntryState::Fetching => "fetching",
            EntryState::Remote => "remote",
        }
    }
}

/// What the cache knows of one URL (the `user.fetchfs.*` extended attributes).
#[derive(Debug, Clone)]
pub struct Description {
    pub url: String,
    pub blake3: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub state: EntryState,
}

impl Description {
    /// The attribute names this description has values for, and the values.
    pub fn xattrs(&self) -> Vec<(&'static str, String)> {
        let optional = [
            ("user.fetchfs.blake3", &self.blake3),
            ("user.fetchfs.etag", &self.etag),
            ("user.fetchfs.last_modified", &self.last_modified),
        ];
        let mut attrs = vec![("user.fetchfs.url", self.url.clone())];
        attrs.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| Some((name, value.clone()?))),
        );
        attrs.push(("user.fetchfs.state", self.state.as_str().to_string()));
        attrs
    }
}

/// A stored body open for reading. It is not evicted while open, and its
/// attributes stay known even if its index record goes (an `evict`).
#[derive(Debug)]
pub struct OpenBlob {
    pub file: File,
    pub stored: StoredFile,
}

/// An open file's source of bytes.
pub enum Opened {
    Stored(OpenBlob),
    /// A body still downloading; the reader keeps the download going.
    Streaming(Reader),
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub is_dir: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_list_only_what_is_known_and_always_url_and_state() {
        let description = Description {
            url: "http://h/f".into(),
            blake3: None,
            etag: Some("\"v1\"".into()),
            last_modified: None,
            state: EntryState::Stale,
        };
        let names: Vec<&str> = description.xattrs().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "user.fetchfs.url",
                "user.fetchfs.etag",
                "user.fetchfs.state"
            ]
        );
        assert_eq!(description.xattrs()[2].1, "stale");
    }
}

//! What the cache knows of names that have no stored body: files the origin
//! answered a HEAD for, directories its listings show, and directories that
//! hold cached URLs.
//!
//! A HEAD's answer is reused for [`PROBE_TTL`] and a listing for
//! [`LISTING_TTL`], both in bounded memory. Directories also come from the
//! index: a name with cached URLs below it is a directory, so a remount (or an
//! `--offline` mount) can walk to every cached file without a listing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use url::Url;

use super::expiring::ExpiringMap;
use super::{Cache, CacheError, DirEntry, Location, RemoteFile};
use crate::config::{ListingMode, Origin};
use crate::namespace;
use crate::origin::ListingEntry;
use crate::telemetry::EventKind;

/// How long a HEAD's answer for an uncached file is reused.
const PROBE_TTL: Duration = Duration::from_secs(5);
/// How long an origin's directory listing is reused.
const LISTING_TTL: Duration = Duration::from_secs(10);
/// How long a listing is kept to stand in while the origin fails.
const LISTING_KEPT: Duration = Duration::from_secs(3600);
/// Files remembered from HEADs at most.
const PROBES_KEPT: usize = 16_384;
/// Listings remembered at most.
const LISTINGS_KEPT: usize = 256;

pub struct Directory {
    probes: parking_lot::Mutex<ExpiringMap<RemoteFile>>,
    /// Listings by directory URL, with when they were fetched.
    listings: parking_lot::Mutex<ExpiringMap<(Instant, Arc<Vec<ListingEntry>>)>>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory {
            probes: parking_lot::Mutex::new(ExpiringMap::new(PROBES_KEPT)),
            listings: parking_lot::Mutex::new(ExpiringMap::new(LISTINGS_KEPT)),
        }
    }
}

impl Directory {
    /// A HEAD said `url` is this file.
    pub fn remember_file(&self, url: &str, file: RemoteFile) {
        self.probes.lock().insert(url, file, PROBE_TTL);
    }

    /// The file a recent HEAD of `url` described.
    pub fn recent_file(&self, url: &str) -> Option<RemoteFile> {
        self.probes.lock().get(url).map(|(_, file)| file)
    }

    pub fn forget_file(&self, url: &str) {
        self.probes.lock().remove(url);
    }

    fn remember_listing(&self, dir_url: &str, entries: Arc<Vec<ListingEntry>>) {
        self.listings
            .lock()
            .insert(dir_url, (Instant::now(), entries), LISTING_KEPT);
    }

    /// The listing of `dir_url` if it is at most `age` old.
    fn listing_within(&self, dir_url: &str, age: Duration) -> Option<Arc<Vec<ListingEntry>>> {
        let (_, (fetched_at, entries)) = self.listings.lock().get(dir_url)?;
        (fetched_at.elapsed() < age).then_some(entries)
    }

    /// Whether a listing of `parent_url` at most `age` old shows `name` as a directory.
    fn lists_as_dir(&self, parent_url: &str, name: &[u8], age: Duration) -> bool {
        self.listing_within(parent_url, age)
            .is_some_and(|entries| entries.iter().any(|e| e.is_dir && e.name == name))
    }
}

impl Cache {
    /// The names in the directory at `loc`: the origin's listing merged with
    /// what is cached below it.
    pub async fn list(self: &Arc<Self>, loc: &Location) -> Result<Vec<DirEntry>, CacheError> {
        let dir_url = loc.dir_url()?;
        let mut names: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        let mut listing_error = None;
        if loc.origin.listing == ListingMode::Auto && !self.offline {
            match self.listing(&loc.origin, &dir_url).await {
                Ok(Some(entries)) => {
                    names.extend(entries.iter().map(|e| (e.name.clone(), e.is_dir)))
                }
                Ok(None) => {}
                Err(e) => listing_error = Some(e),
            }
        }
        let cached = {
            let store = Arc::clone(&self.store);
            let prefix = dir_url.to_string();
            tokio::task::spawn_blocking(move || store.index.url_keys_with_prefix(&prefix))
                .await
                .map_err(|e| CacheError::Io(std::io::Error::other(e)))??
        };
        for url in cached {
            let Some(relative) = Url::parse(&url)
                .ok()
                .and_then(|u| namespace::relative_components(&dir_url, &u))
            else {
                continue;
            };
            if let Some(first) = relative.first() {
                *names.entry(first.clone()).or_insert(false) |= relative.len() > 1;
            }
        }
        if let Some(error) = listing_error {
            self.telemetry.events.emit(
                EventKind::Error,
                json!({ "url": dir_url.as_str(), "message": error.to_string(), "listing": true }),
            );
            // With nothing cached below, the reader gets the error (EIO, and
            // a log line where it becomes an errno), never an empty directory.
            if names.is_empty() {
                return Err(error);
            }
            tracing::warn!("listing {dir_url}: {error}; showing cached entries only");
        }
        Ok(names
            .into_iter()
            .map(|(name, is_dir)| DirEntry { name, is_dir })
            .collect())
    }

    /// The origin's listing of `dir_url`, reused while recent.
    pub(super) async fn listing(
        &self,
        origin: &Origin,
        dir_url: &Url,
    ) -> Result<Option<Arc<Vec<ListingEntry>>>, CacheError> {
        if let Some(entries) = self.directory.listing_within(dir_url.as_str(), LISTING_TTL) {
            return Ok(Some(entries));
        }
        let asked = self
            .within_budget(origin, dir_url, |deadline| {
                self.origin.listing(origin, dir_url, deadline)
            })
            .await;
        let entries = match asked {
            Ok(Some(entries)) => entries,
            Ok(None) => return Ok(None),
            Err(error) => {
                // A listing the origin gave earlier stands in while it fails.
                if let Some(entries) = self
                    .directory
                    .listing_within(dir_url.as_str(), LISTING_KEPT)
                {
                    tracing::warn!("listing {dir_url}: {error}; showing the last listing");
                    return Ok(Some(entries));
                }
                return Err(error.into());
            }
        };
        let entries = Arc::new(entries);
        self.directory
            .remember_listing(dir_url.as_str(), Arc::clone(&entries));
        Ok(Some(entries))
    }

    /// Whether a recent listing of the parent shows this name as a directory.
    pub(super) fn listed_as_dir(&self, loc: &Location) -> bool {
        self.listed_as_dir_within(loc, LISTING_TTL)
    }

    /// Whether any listing of the parent kept since shows this name as a
    /// directory: asked when the origin fails.
    pub(super) fn listed_as_dir_before(&self, loc: &Location) -> bool {
        self.listed_as_dir_within(loc, LISTING_KEPT)
    }

    fn listed_as_dir_within(&self, loc: &Location, age: Duration) -> bool {
        let Some((parent, name)) = loc.parent_and_name() else {
            return true;
        };
        parent
            .dir_url()
            .is_ok_and(|parent_url| self.directory.lists_as_dir(parent_url.as_str(), name, age))
    }

    /// Whether any cached URL lies below `dir_url`.
    pub(super) fn has_cached_below(&self, dir_url: &Url) -> Result<bool, CacheError> {
        Ok(self.store.index.has_url_with_prefix(dir_url.as_str())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, is_dir: bool) -> ListingEntry {
        ListingEntry {
            name: name.as_bytes().to_vec(),
            is_dir,
            size: None,
        }
    }

    #[test]
    fn a_listing_shows_its_directories_only() {
        let directory = Directory::default();
        directory.remember_listing(
            "http://h/d/",
            Arc::new(vec![entry("sub", true), entry("file", false)]),
        );
        assert!(directory.lists_as_dir("http://h/d/", b"sub", LISTING_TTL));
        assert!(!directory.lists_as_dir("http://h/d/", b"file", LISTING_TTL));
        assert!(!directory.lists_as_dir("http://h/d/", b"other", LISTING_TTL));
        assert!(!directory.lists_as_dir("http://h/e/", b"sub", LISTING_TTL));
        assert!(
            !directory.lists_as_dir("http://h/d/", b"sub", Duration::ZERO),
            "a listing older than asked for is not used"
        );
    }

    #[test]
    fn a_probed_file_is_remembered_until_forgotten() {
        let directory = Directory::default();
        let file = RemoteFile {
            size: 42,
            mtime: None,
            download: None,
            private: false,
        };
        directory.remember_file("http://h/f", file);
        assert_eq!(
            directory.recent_file("http://h/f").map(|f| f.size),
            Some(42)
        );
        directory.forget_file("http://h/f");
        assert!(directory.recent_file("http://h/f").is_none());
    }
}

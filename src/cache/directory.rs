//! What the cache knows of names that have no stored body: files the origin
//! answered a HEAD for, directories its listings show, and directories that
//! hold cached URLs.
//!
//! A HEAD's answer is reused for [`PROBE_TTL`] and a listing for
//! [`LISTING_TTL`], both in bounded memory. Directories also come from the
//! index: a name with cached URLs below it is a directory, so a remount (or an
//! `--offline` mount) can walk to every cached file without a listing.
//!
//! A listing can hold a million entries, so a remembered one keeps, beside
//! its entries, their order by name (4 bytes an entry): a lookup asks what
//! the parent's listing shows under a name, and must not walk the listing
//! to know. A file the listing gives an exact size for (nginx's JSON) is
//! answered from it, with no HEAD, while the listing is recent; the open's
//! GET corrects a size the listing got wrong, as it corrects a HEAD's.
//! Listings are bounded by the entries they hold together
//! ([`LISTED_ENTRIES_KEPT`]) as well as by their number; the oldest go first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
/// Entries of all remembered listings together at most: about 160 MiB, two
/// listings of a million entries. A listing larger than that alone is not
/// remembered; it is asked of the origin again at each opendir.
const LISTED_ENTRIES_KEPT: usize = 2_000_000;

pub struct Directory {
    probes: parking_lot::Mutex<ExpiringMap<RemoteFile>>,
    listings: parking_lot::Mutex<Listings>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory {
            probes: parking_lot::Mutex::new(ExpiringMap::new(PROBES_KEPT)),
            listings: parking_lot::Mutex::new(Listings::new(LISTINGS_KEPT, LISTED_ENTRIES_KEPT)),
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
        // The set is built, and the listings pushed out are freed, outside
        // the lock: for a million entries either takes milliseconds.
        let listing = RememberedListing::new(Instant::now(), entries);
        let dropped = self.listings.lock().insert(dir_url, listing);
        drop(dropped);
    }

    /// The listing of `dir_url` if it is at most `age` old.
    fn listing_within(&self, dir_url: &str, age: Duration) -> Option<Arc<Vec<ListingEntry>>> {
        let listings = self.listings.lock();
        let listing = listings.get(dir_url)?;
        (listing.fetched_at.elapsed() < age).then(|| Arc::clone(&listing.entries))
    }

    /// Whether a listing of `parent_url` at most `age` old shows `name` as a directory.
    fn lists_as_dir(&self, parent_url: &str, name: &[u8], age: Duration) -> bool {
        self.listed(parent_url, name, age, |entry| entry.is_dir)
            .unwrap_or(false)
    }

    /// The file a listing of `parent_url` at most `age` old shows as `name`,
    /// when it states its exact size.
    fn listed_file(&self, parent_url: &str, name: &[u8], age: Duration) -> Option<RemoteFile> {
        self.listed(parent_url, name, age, |entry| {
            let size = entry.size.filter(|_| !entry.is_dir)?;
            Some(RemoteFile {
                size,
                mtime: entry.mtime,
                download: None,
                private: false,
            })
        })
        .flatten()
    }

    /// `what` of the entry `name` in a listing of `parent_url` at most `age` old.
    fn listed<T>(
        &self,
        parent_url: &str,
        name: &[u8],
        age: Duration,
        what: impl FnOnce(&ListingEntry) -> T,
    ) -> Option<T> {
        let listings = self.listings.lock();
        let listing = listings.get(parent_url)?;
        if listing.fetched_at.elapsed() >= age {
            return None;
        }
        listing.entry(name).map(what)
    }
}

/// One origin listing as remembered.
struct RememberedListing {
    fetched_at: Instant,
    entries: Arc<Vec<ListingEntry>>,
    /// Indexes into `entries` in the order of their names (which are
    /// unique: the parser keeps a name's first entry only).
    by_name: Vec<u32>,
}

impl RememberedListing {
    fn new(fetched_at: Instant, entries: Arc<Vec<ListingEntry>>) -> RememberedListing {
        // Listings are capped far below u32::MAX entries (ListingLimits).
        let mut by_name: Vec<u32> = (0..entries.len() as u32).collect();
        by_name.sort_unstable_by(|&a, &b| entries[a as usize].name.cmp(&entries[b as usize].name));
        RememberedListing {
            fetched_at,
            entries,
            by_name,
        }
    }

    fn entry(&self, name: &[u8]) -> Option<&ListingEntry> {
        let found = self
            .by_name
            .binary_search_by(|&i| self.entries[i as usize].name.as_slice().cmp(name))
            .ok()?;
        Some(&self.entries[self.by_name[found] as usize])
    }
}

/// The remembered listings by directory URL, at most `max_listings` of them
/// holding at most `max_entries` entries together. Room is made by dropping
/// the listings past [`LISTING_KEPT`], then the oldest.
struct Listings {
    by_url: HashMap<String, RememberedListing>,
    /// The URLs by when their listing was fetched, oldest first (the URL
    /// breaks ties).
    oldest_first: BTreeSet<(Instant, String)>,
    /// The entries of all the listings in `by_url`.
    entries_kept: usize,
    max_listings: usize,
    max_entries: usize,
}

impl Listings {
    fn new(max_listings: usize, max_entries: usize) -> Listings {
        Listings {
            by_url: HashMap::new(),
            oldest_first: BTreeSet::new(),
            entries_kept: 0,
            max_listings: max_listings.max(1),
            max_entries,
        }
    }

    fn get(&self, dir_url: &str) -> Option<&RememberedListing> {
        self.by_url.get(dir_url)
    }

    /// Remembers `listing` as the one of `dir_url`, in place of any before.
    /// Returns the listings dropped, for the caller to free.
    fn insert(&mut self, dir_url: &str, listing: RememberedListing) -> Vec<RememberedListing> {
        let mut dropped: Vec<RememberedListing> = self.remove(dir_url).into_iter().collect();
        let added = listing.entries.len();
        if added > self.max_entries {
            return dropped;
        }
        while let Some((fetched_at, _)) = self.oldest_first.first()
            && listing.fetched_at.saturating_duration_since(*fetched_at) >= LISTING_KEPT
        {
            dropped.extend(self.remove_oldest());
        }
        while self.by_url.len() >= self.max_listings || self.entries_kept + added > self.max_entries
        {
            match self.remove_oldest() {
                Some(oldest) => dropped.push(oldest),
                None => break,
            }
        }
        self.entries_kept += added;
        self.oldest_first
            .insert((listing.fetched_at, dir_url.to_string()));
        self.by_url.insert(dir_url.to_string(), listing);
        dropped
    }

    fn remove(&mut self, dir_url: &str) -> Option<RememberedListing> {
        let listing = self.by_url.remove(dir_url)?;
        self.oldest_first
            .remove(&(listing.fetched_at, dir_url.to_string()));
        self.entries_kept -= listing.entries.len();
        Some(listing)
    }

    fn remove_oldest(&mut self) -> Option<RememberedListing> {
        let (_, dir_url) = self.oldest_first.first()?.clone();
        self.remove(&dir_url)
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
            match self.origin_listing(&loc.origin, &dir_url).await {
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
            self.report_listing_error(&dir_url, &error);
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

    /// The origin's listing of `dir_url` for a lookup: a name the origin's
    /// HEAD does not know is a directory if it lists. The lookup answers
    /// without the listing when it fails, so the failure is reported here,
    /// as [`Cache::list`] reports it: an error event and a log line.
    pub(super) async fn listing(
        &self,
        origin: &Origin,
        dir_url: &Url,
    ) -> Result<Option<Arc<Vec<ListingEntry>>>, CacheError> {
        let listing = self.origin_listing(origin, dir_url).await;
        if let Err(error) = &listing {
            self.report_listing_error(dir_url, error);
            tracing::warn!("listing {dir_url}: {error}; the lookup goes on without it");
        }
        listing
    }

    /// An error event for a listing the origin failed to give.
    fn report_listing_error(&self, dir_url: &Url, error: &CacheError) {
        self.telemetry.events.emit(
            EventKind::Error,
            json!({ "url": dir_url.as_str(), "message": error.to_string(), "listing": true }),
        );
    }

    /// The origin's listing of `dir_url`, reused while recent; a failure is
    /// the caller's to report.
    async fn origin_listing(
        &self,
        origin: &Origin,
        dir_url: &Url,
    ) -> Result<Option<Arc<Vec<ListingEntry>>>, CacheError> {
        if let Some(entries) = self.directory.listing_within(dir_url.as_str(), LISTING_TTL) {
            return Ok(Some(entries));
        }
        // One listing request at a time per directory: those who waited find
        // the listing it brought (review finding 13).
        let _flight = self.flights.lock(dir_url.as_str()).await;
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

    /// The file a recent listing of the parent shows under this name with
    /// its exact size: a lookup needs no HEAD for it.
    pub(super) fn listed_file(&self, loc: &Location) -> Option<RemoteFile> {
        let (parent, name) = loc.parent_and_name()?;
        let parent_url = parent.dir_url().ok()?;
        self.directory
            .listed_file(parent_url.as_str(), name, LISTING_TTL)
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
    use std::time::SystemTime;

    fn entry(name: &str, is_dir: bool) -> ListingEntry {
        ListingEntry {
            name: name.as_bytes().to_vec(),
            is_dir,
            size: None,
            mtime: None,
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
    fn a_listing_answers_for_the_files_it_gives_exact_sizes_of() {
        let directory = Directory::default();
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let sized = |name: &str, size| ListingEntry {
            size: Some(size),
            mtime: Some(mtime),
            ..entry(name, false)
        };
        // Out of name order, as listings sorted by date are.
        let entries = vec![
            sized("z", 7),
            entry("unsized", false),
            sized("a", 0),
            entry("d", true),
        ];
        directory.remember_listing("http://h/d/", Arc::new(entries));

        let z = directory
            .listed_file("http://h/d/", b"z", LISTING_TTL)
            .unwrap();
        assert_eq!((z.size, z.mtime, z.download), (7, Some(mtime), None));
        assert_eq!(
            directory
                .listed_file("http://h/d/", b"a", LISTING_TTL)
                .map(|f| f.size),
            Some(0)
        );
        assert!(
            directory
                .listed_file("http://h/d/", b"unsized", LISTING_TTL)
                .is_none()
        );
        assert!(
            directory
                .listed_file("http://h/d/", b"d", LISTING_TTL)
                .is_none()
        );
        assert!(
            directory
                .listed_file("http://h/d/", b"missing", LISTING_TTL)
                .is_none()
        );
        assert!(
            directory
                .listed_file("http://h/d/", b"z", Duration::ZERO)
                .is_none(),
            "a listing older than asked for is not used"
        );
    }

    #[test]
    fn a_new_listing_of_a_directory_replaces_the_old_one() {
        let directory = Directory::default();
        directory.remember_listing("http://h/d/", Arc::new(vec![entry("sub", true)]));
        directory.remember_listing(
            "http://h/d/",
            Arc::new(vec![entry("sub", false), entry("new", true)]),
        );
        assert!(!directory.lists_as_dir("http://h/d/", b"sub", LISTING_TTL));
        assert!(directory.lists_as_dir("http://h/d/", b"new", LISTING_TTL));
        assert_eq!(directory.listings.lock().entries_kept, 2);
    }

    #[test]
    fn lookups_in_a_big_listing_do_not_walk_it() {
        // Walking the listing for each lookup would compare names 4e9 times
        // here: minutes, where the set answers at once.
        const ENTRIES: usize = 200_000;
        const LOOKUPS: usize = 20_000;
        let entries = (0..ENTRIES)
            .map(|i| entry(&format!("n{i}"), i % 100 == 0))
            .collect();
        let directory = Directory::default();
        directory.remember_listing("http://h/big/", Arc::new(entries));
        let listed_dirs = (0..LOOKUPS)
            .filter(|i| {
                let name = format!("n{}", i * (ENTRIES / LOOKUPS));
                directory.lists_as_dir("http://h/big/", name.as_bytes(), LISTING_TTL)
            })
            .count();
        // Every 10th name is looked up, and every 100th is a directory.
        assert_eq!(listed_dirs, LOOKUPS / 10);
        assert!(!directory.lists_as_dir("http://h/big/", b"n200000", LISTING_TTL));
    }

    fn listing(fetched_at: Instant, entries: usize) -> RememberedListing {
        let entries = (0..entries).map(|i| entry(&format!("e{i}"), false));
        RememberedListing::new(fetched_at, Arc::new(entries.collect()))
    }

    fn urls(listings: &Listings) -> Vec<&str> {
        let mut urls: Vec<&str> = listings.by_url.keys().map(String::as_str).collect();
        urls.sort_unstable();
        urls
    }

    #[test]
    fn the_oldest_listings_go_first_when_the_entries_are_over_the_bound() {
        let mut listings = Listings::new(LISTINGS_KEPT, 8);
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        assert!(listings.insert("a", listing(t0, 3)).is_empty());
        assert!(listings.insert("b", listing(t0 + second, 3)).is_empty());
        let dropped = listings.insert("c", listing(t0 + 2 * second, 3));
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].fetched_at, t0, "the oldest went");
        assert_eq!(urls(&listings), ["b", "c"]);
        assert_eq!(listings.entries_kept, 6);

        assert_eq!(listings.insert("d", listing(t0 + 3 * second, 8)).len(), 2);
        assert_eq!(urls(&listings), ["d"]);
        assert_eq!(listings.entries_kept, 8);
    }

    #[test]
    fn a_listing_larger_than_the_bound_alone_is_not_remembered() {
        let mut listings = Listings::new(LISTINGS_KEPT, 8);
        let t0 = Instant::now();
        listings.insert("a", listing(t0, 3));
        listings.insert("b", listing(t0, 3));
        let dropped = listings.insert("b", listing(t0, 9));
        assert_eq!(dropped.len(), 1, "the listing it replaces is outdated");
        assert_eq!(urls(&listings), ["a"]);
        assert_eq!(listings.entries_kept, 3);
    }

    #[test]
    fn the_number_of_listings_is_bounded_too() {
        let mut listings = Listings::new(2, usize::MAX);
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        listings.insert("a", listing(t0, 1));
        listings.insert("b", listing(t0 + second, 1));
        listings.insert("c", listing(t0 + 2 * second, 1));
        assert_eq!(urls(&listings), ["b", "c"]);
        listings.insert("b", listing(t0 + 3 * second, 1));
        assert_eq!(
            urls(&listings),
            ["b", "c"],
            "a replaced listing needs no room"
        );
    }

    #[test]
    fn listings_past_their_keep_time_go_before_newer_ones() {
        let mut listings = Listings::new(LISTINGS_KEPT, 8);
        let t0 = Instant::now();
        listings.insert("a", listing(t0, 1));
        listings.insert("b", listing(t0 + LISTING_KEPT / 2, 1));
        listings.insert("c", listing(t0 + LISTING_KEPT, 1));
        assert_eq!(urls(&listings), ["b", "c"]);
        assert_eq!(listings.entries_kept, 2);
    }

    #[test]
    fn the_entries_remembered_stay_within_the_bound() {
        let directory = Directory::default();
        // One set of entries remembered under five URLs: four are over the bound.
        let quarter = Arc::new(
            (0..=LISTED_ENTRIES_KEPT / 4)
                .map(|i| entry(&format!("e{i}"), false))
                .collect::<Vec<_>>(),
        );
        for dir in ["a", "b", "c", "d", "e"] {
            directory.remember_listing(&format!("http://h/{dir}/"), Arc::clone(&quarter));
            assert!(directory.listings.lock().entries_kept <= LISTED_ENTRIES_KEPT);
        }
        let remembered =
            |dir: &str| directory.listing_within(&format!("http://h/{dir}/"), LISTING_TTL);
        assert!(remembered("a").is_none() && remembered("b").is_none());
        assert!(
            remembered("c").is_some() && remembered("d").is_some() && remembered("e").is_some()
        );
        assert_eq!(directory.listings.lock().entries_kept, 3 * quarter.len());
    }

    #[tokio::test]
    async fn a_listing_a_lookup_cannot_get_is_an_error_event() {
        // Offline, every request fails before it leaves.
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(
            crate::store::Store::open(cache_dir.path()).unwrap(),
            true,
            None,
            Default::default(),
        );
        let base = Url::parse("http://h/base/").unwrap();
        let origin = Origin::with_defaults("o".to_string(), base.clone());
        let dir_url = base.join("sub/").unwrap();

        assert!(cache.listing(&origin, &dir_url).await.is_err());

        let events = cache.telemetry().events.read_at(0, 1 << 16).await;
        let error = String::from_utf8_lossy(&events)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|event| event["event"] == "error" && event["listing"] == true)
            .expect("an error event for the listing");
        assert_eq!(error["url"], dir_url.as_str());
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("offline")),
            "{error}"
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

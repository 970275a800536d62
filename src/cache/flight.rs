//! Single flight: one origin exchange at a time per URL, and one download.
//!
//! Every origin exchange for a URL (a HEAD, a conditional GET, the GET that
//! starts a download) happens under that URL's async lock. A download is
//! registered here before the lock is released, so whoever takes the lock
//! next finds it and joins it instead of asking the origin again: any number
//! of concurrent readers cause one request. Lock entries go away with their
//! last user, so the map holds only URLs being worked on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use super::download::Download;

/// One URL's exchange lock.
type UrlLock = Arc<tokio::sync::Mutex<()>>;

#[derive(Default)]
pub struct Flights {
    locks: parking_lot::Mutex<HashMap<String, UrlLock>>,
    /// Downloads under way, by URL; ordered so commands can take a prefix.
    downloads: parking_lot::Mutex<BTreeMap<String, Arc<Download>>>,
}

/// Holds one URL's lock; dropping it lets the next request for the URL go.
pub struct FlightGuard<'a> {
    flights: &'a Flights,
    url: String,
    /// When this request started waiting for the lock.
    pub asked_at: Instant,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Flights {
    /// Waits for the URL's lock.
    pub async fn lock(&self, url: &str) -> FlightGuard<'_> {
        let asked_at = Instant::now();
        let lock = Arc::clone(self.locks.lock().entry(url.to_string()).or_default());
        let guard = lock.lock_owned().await;
        FlightGuard {
            flights: self,
            url: url.to_string(),
            asked_at,
            guard: Some(guard),
        }
    }

    /// The download of `url` under way, if any.
    pub fn download(&self, url: &str) -> Option<Arc<Download>> {
        self.downloads.lock().get(url).cloned()
    }

    /// Registers a download; call it holding the URL's lock.
    pub fn start(&self, download: Arc<Download>) {
        self.downloads.lock().insert(download.url.clone(), download);
    }

    /// The download ended: later requests no longer join it. A newer
    /// download of the same URL stays registered.
    pub fn finish(&self, download: &Arc<Download>) {
        let mut downloads = self.downloads.lock();
        if downloads
            .get(&download.url)
            .is_some_and(|current| Arc::ptr_eq(current, download))
        {
            downloads.remove(&download.url);
        }
    }

    /// Downloads under way whose URL starts with `prefix`, in URL order.
    pub fn downloads_below(&self, prefix: &str) -> Vec<Arc<Download>> {
        self.downloads
            .lock()
            .range(prefix.to_string()..)
            .take_while(|(url, _)| url.starts_with(prefix))
            .map(|(_, download)| Arc::clone(download))
            .collect()
    }

    #[cfg(test)]
    fn locked_urls(&self) -> usize {
        self.locks.lock().len()
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.flights.locks.lock();
        // Only the map holds it now: nobody waits, so the entry can go.
        if locks
            .get(&self.url)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.url);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn download(url: &str) -> Arc<Download> {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let (download, writer) = Download::start(url.into(), Default::default(), file);
        std::mem::forget(writer);
        download
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_exchange_at_a_time_per_url_and_no_lock_left_behind() {
        let flights = Arc::new(Flights::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (flights, inside, most) =
                    (Arc::clone(&flights), Arc::clone(&inside), Arc::clone(&most));
                tokio::spawn(async move {
                    for _ in 0..20 {
                        let _guard = flights.lock("http://h/a").await;
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "two exchanges overlapped");
        assert_eq!(flights.locked_urls(), 0, "a lock entry leaked");
    }

    #[tokio::test]
    async fn other_urls_do_not_wait() {
        let flights = Flights::default();
        let _slow = flights.lock("http://h/slow").await;
        let other = tokio::time::timeout(Duration::from_secs(1), flights.lock("http://h/b")).await;
        assert!(other.is_ok(), "a lock on one URL held up another");
    }

    #[tokio::test]
    async fn a_registered_download_is_found_until_it_finishes() {
        let flights = Flights::default();
        let first = download("http://h/a");
        flights.start(Arc::clone(&first));
        assert!(Arc::ptr_eq(
            &flights.download("http://h/a").unwrap(),
            &first
        ));

        // A newer download of the same URL replaced it: finishing the old one
        // must not unregister the new one.
        let second = download("http://h/a");
        flights.start(Arc::clone(&second));
        flights.finish(&first);
        assert!(Arc::ptr_eq(
            &flights.download("http://h/a").unwrap(),
            &second
        ));
        flights.finish(&second);
        assert!(flights.download("http://h/a").is_none());
    }

    #[test]
    fn downloads_below_a_prefix() {
        let flights = Flights::default();
        for url in [
            "http://h/a/1",
            "http://h/a/2",
            "http://h/ab",
            "http://h/b/1",
        ] {
            flights.start(download(url));
        }
        let urls: Vec<String> = flights
            .downloads_below("http://h/a/")
            .iter()
            .map(|d| d.url.clone())
            .collect();
        assert_eq!(urls, ["http://h/a/1", "http://h/a/2"]);
        assert_eq!(flights.downloads_below("").len(), 4);
    }
}

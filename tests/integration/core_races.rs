//! The cache core under concurrency, driven through its API (no FUSE), with
//! many tasks and many repetitions against a real HTTP origin: evict while
//! reading, evict while a lookup of the same path is in flight, invalidate
//! and evict while fetching, lookup right after evict, an eviction racing a
//! commit of the same body, a full disk, and single flight with its failures.
//!
//! Each test ends by reopening the cache dir and proving it consistent with
//! `verify`: no record without its blob, whatever the interleaving.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fetchfs::cache::{Cache, CacheError, EntryState, Location, Opened, Resolved};
use fetchfs::config::Origin as OriginSettings;
use fetchfs::store::Store;
use tempfile::TempDir;
use url::Url;

use crate::common::*;

/// A cache core on its own runtime and cache dir, serving one origin base.
struct Core {
    runtime: tokio::runtime::Runtime,
    cache: Arc<Cache>,
    root: Location,
    cache_dir: PathBuf,
    _dir: Option<TempDir>,
}

impl Core {
    fn new(origin: &Origin, max_cache_size: Option<u64>) -> Core {
        let dir = tempfile::tempdir().unwrap();
        let mut core = Core::in_dir(origin, dir.path(), max_cache_size);
        core._dir = Some(dir);
        core
    }

    fn in_dir(origin: &Origin, cache_dir: &Path, max_cache_size: Option<u64>) -> Core {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let store = Store::open(cache_dir).unwrap();
        // No proxy: the variables of the machine running the tests are not read.
        let cache = Cache::new(store, false, max_cache_size, Default::default());
        let settings =
            OriginSettings::with_defaults("o".into(), Url::parse(&origin.url("/base")).unwrap());
        Core {
            runtime,
            cache,
            root: Location::root(Arc::new(settings)),
            cache_dir: cache_dir.to_path_buf(),
            _dir: None,
        }
    }

    fn loc(&self, name: &str) -> Location {
        self.root.child(name.as_bytes()).unwrap()
    }

    fn url(&self, name: &str) -> String {
        self.loc(name).file_url().unwrap().to_string()
    }

    /// Looks `name` up and reads it whole, as the kernel and a reader would.
    fn read(&self, name: &str) -> Result<Vec<u8>, CacheError> {
        let (cache, loc) = (Arc::clone(&self.cache), self.loc(name));
        self.runtime.block_on(async move {
            cache.resolve(&loc).await?;
            read_all(&cache, &loc).await
        })
    }

    /// Stops every task, closes the store, and checks the cache dir.
    fn verify_consistent(self) {
        let Core {
            runtime,
            cache,
            cache_dir,
            _dir,
            ..
        } = self;
        runtime.shutdown_timeout(Duration::from_secs(5));
        assert_eq!(Arc::strong_count(&cache), 1, "a task still holds the cache");
        drop(cache);
        let store = Store::open(&cache_dir).unwrap();
        let report = store.verify(false).unwrap();
        assert!(
            report.bad_blobs.is_empty() && report.dangling_urls.is_empty(),
            "the cache dir is inconsistent: {report:?}"
        );
    }
}

/// Opens `loc` and reads it to the end, as a reader through the mount would.
async fn read_all(cache: &Arc<Cache>, loc: &Location) -> Result<Vec<u8>, CacheError> {
    match cache.open(loc).await? {
        Opened::Stored(blob) => {
            let mut bytes = vec![0u8; blob.stored.size as usize];
            let read = blob.file.read_exact_at(&mut bytes, 0);
            cache.close_blob(&blob);
            read?;
            Ok(bytes)
        }
        Opened::Streaming(download) => {
            let mut bytes = Vec::new();
            loop {
                let chunk = download.read(bytes.len() as u64, 1 << 20).await?;
                if chunk.is_empty() {
                    return Ok(bytes);
                }
                bytes.extend_from_slice(&chunk);
            }
        }
    }
}

fn serve(origin: &Origin, count: usize, len: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let body = random_bytes(len, 7_000 + i as u64);
            origin.route(&format!("/base/f{i}"), Route::fresh(body.clone()));
            body
        })
        .collect()
}

#[test]
fn evict_while_reading_never_loses_or_changes_a_byte() {
    let origin = Origin::start();
    let bodies = Arc::new(serve(&origin, 4, 256 * 1024));
    let core = Core::new(&origin, None);
    let stop = Arc::new(AtomicBool::new(false));
    core.runtime.block_on(async {
        let evictor = {
            let (cache, stop) = (Arc::clone(&core.cache), Arc::clone(&stop));
            let urls: Vec<String> = (0..4).map(|i| core.url(&format!("f{i}"))).collect();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    for url in &urls {
                        cache.evict(std::slice::from_ref(url)).unwrap();
                        tokio::time::sleep(Duration::from_micros(300)).await;
                    }
                }
            })
        };
        let readers: Vec<_> = (0..8)
            .map(|r| {
                let (cache, bodies) = (Arc::clone(&core.cache), Arc::clone(&bodies));
                let locs: Vec<Location> = (0..4).map(|i| core.loc(&format!("f{i}"))).collect();
                tokio::spawn(async move {
                    for round in 0..40 {
                        let i = (r + round) % 4;
                        let bytes = read_all(&cache, &locs[i]).await.unwrap_or_else(|e| {
                            panic!("reader {r}, round {round}, f{i}: {e}");
                        });
                        assert!(bytes == bodies[i], "reader {r} got wrong bytes of f{i}");
                    }
                })
            })
            .collect();
        for reader in readers {
            reader.await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        evictor.await.unwrap();
    });
    core.verify_consistent();
}

#[test]
fn a_lookup_racing_an_evict_never_answers_enoent_for_a_served_file() {
    let origin = Origin::start();
    serve(&origin, 2, 4096);
    let core = Core::new(&origin, None);
    for i in 0..2 {
        core.read(&format!("f{i}")).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    core.runtime.block_on(async {
        let evictor = {
            let (cache, stop) = (Arc::clone(&core.cache), Arc::clone(&stop));
            let (locs, urls): (Vec<Location>, Vec<String>) = (0..2)
                .map(|i| (core.loc(&format!("f{i}")), core.url(&format!("f{i}"))))
                .unzip();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    for (loc, url) in locs.iter().zip(&urls) {
                        cache.evict(std::slice::from_ref(url)).unwrap();
                        // Store it again, so lookups keep finding records to lose.
                        read_all(&cache, loc).await.unwrap();
                    }
                }
            })
        };
        let lookups: Vec<_> = (0..8)
            .map(|t| {
                let cache = Arc::clone(&core.cache);
                let locs: Vec<Location> = (0..2).map(|i| core.loc(&format!("f{i}"))).collect();
                tokio::spawn(async move {
                    for round in 0..300 {
                        let loc = &locs[(t + round) % 2];
                        match cache.resolve(loc).await {
                            Ok(Resolved::Stored(_) | Resolved::Remote(_)) => {}
                            other => panic!("lookup {t}, round {round}: {other:?}"),
                        }
                    }
                })
            })
            .collect();
        for lookup in lookups {
            lookup.await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        evictor.await.unwrap();
    });
    core.verify_consistent();
}

#[test]
fn lookup_open_and_getattr_right_after_evict() {
    let origin = Origin::start();
    let bodies = serve(&origin, 1, 64 * 1024);
    let core = Core::new(&origin, None);
    core.read("f0").unwrap();
    let cache = Arc::clone(&core.cache);
    let loc = core.loc("f0");
    core.runtime.block_on(async {
        let Ok(Resolved::Stored(stored)) = cache.resolve(&loc).await else {
            panic!("a fresh stored body resolves as stored");
        };
        let held = cache.open_blob(stored.ino).unwrap();
        cache.evict(&[core.url("f0")]).unwrap();

        // The kernel still has the blob inode: a new open must make it look
        // the path up again (ESTALE), not make the file vanish (ENOENT).
        assert!(matches!(
            cache.open_blob(stored.ino),
            Err(CacheError::Gone { .. })
        ));
        // The handle opened before the evict keeps its attributes and bytes.
        let attrs = cache
            .blob(stored.ino)
            .expect("getattr of an open, evicted body");
        assert_eq!(attrs.size, bodies[0].len() as u64);
        let mut bytes = vec![0u8; bodies[0].len()];
        held.file.read_exact_at(&mut bytes, 0).unwrap();
        assert!(bytes == bodies[0]);
        cache.close_blob(&held);
        assert!(matches!(
            cache.blob(stored.ino),
            Err(CacheError::Gone { .. })
        ));

        // The path itself is found again, and read whole from the origin.
        assert!(matches!(cache.resolve(&loc).await, Ok(Resolved::Remote(_))));
        assert!(read_all(&cache, &loc).await.unwrap() == bodies[0]);
    });
    assert_eq!(origin.gets("/base/f0"), 2);
    drop(cache);
    core.verify_consistent();
}

/// A cache core whose origin sends `/base/slow`, a 256 KiB body, at 1 MiB/s.
fn slow_body(seed: u64) -> (Origin, Vec<u8>, Core) {
    let origin = Origin::start();
    let body = random_bytes(256 * 1024, seed);
    let route = Route::fresh(body.clone()).throttle(1024 * 1024);
    origin.route("/base/slow", route);
    let core = Core::new(&origin, None);
    (origin, body, core)
}

#[test]
fn invalidate_while_fetching_stores_the_body_stale() {
    let (_origin, _, core) = slow_body(31);
    let (cache, loc, url) = (Arc::clone(&core.cache), core.loc("slow"), core.url("slow"));
    core.runtime.block_on(async {
        for round in 0..3 {
            let Opened::Streaming(download) = cache.open(&loc).await.unwrap() else {
                panic!("round {round}: the body is not stored yet");
            };
            tokio::time::sleep(Duration::from_millis(40 * (round + 1))).await;
            cache.invalidate(std::slice::from_ref(&url)).unwrap();
            download.wait_until_whole().await.unwrap();
            let description = cache.describe(&loc).unwrap();
            assert!(description.blake3.is_some(), "round {round}: not stored");
            assert_eq!(
                description.state,
                EntryState::Stale,
                "round {round}: a body fetched before an invalidate was stored fresh"
            );
            cache.evict(std::slice::from_ref(&url)).unwrap();
        }
    });
    drop(cache);
    core.verify_consistent();
}

#[test]
fn evict_while_fetching_does_not_store_the_body() {
    let (_origin, body, core) = slow_body(32);
    let (cache, loc, url) = (Arc::clone(&core.cache), core.loc("slow"), core.url("slow"));
    core.runtime.block_on(async {
        let Opened::Streaming(download) = cache.open(&loc).await.unwrap() else {
            panic!("the body is not stored yet");
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        cache.evict(std::slice::from_ref(&url)).unwrap();
        // The reader that had it open still gets every byte.
        let mut bytes = Vec::new();
        loop {
            let chunk = download.read(bytes.len() as u64, 1 << 20).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        assert!(bytes == body);
        assert!(
            cache.describe(&loc).unwrap().blake3.is_none(),
            "a body evicted while it downloaded was stored"
        );
    });
    drop(cache);
    core.verify_consistent();
}

#[test]
fn evicting_a_url_while_others_commit_the_same_body() {
    let origin = Origin::start();
    let body = random_bytes(4096, 33);
    let names: Vec<String> = (0..9).map(|i| format!("same{i}")).collect();
    for name in &names {
        origin.route(&format!("/base/{name}"), Route::ok(body.clone()));
    }
    let core = Core::new(&origin, None);
    let cache = Arc::clone(&core.cache);
    let blob_path = {
        let hex = blake3::hash(&body).to_hex().to_string();
        core.cache_dir
            .join("blobs")
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(&hex)
    };
    core.runtime.block_on(async {
        let tasks: Vec<_> = names
            .iter()
            .map(|name| {
                let (cache, loc, url) = (Arc::clone(&cache), core.loc(name), core.url(name));
                let body = body.clone();
                tokio::spawn(async move {
                    for round in 0..40 {
                        // Each task stores its URL, pointing at the one shared
                        // body, and drops it again: a body whose last URL goes
                        // while another URL's commit links to it must stay.
                        let bytes = read_all(&cache, &loc).await.unwrap();
                        assert!(bytes == body, "round {round}");
                        cache.evict(std::slice::from_ref(&url)).unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        for name in &names {
            read_all(&cache, &core.loc(name)).await.unwrap();
        }
        assert!(
            blob_path.exists(),
            "URLs point at a body whose file was deleted"
        );
    });
    drop(cache);
    core.verify_consistent();
}

#[test]
fn single_flight_one_get_for_many_readers_and_a_failure_reaches_all() {
    let origin = Origin::start();
    let body = random_bytes(2 * 1024 * 1024, 34);
    origin.route(
        "/base/big",
        Route::fresh(body.clone()).throttle(8 * 1024 * 1024),
    );
    origin.route(
        "/base/cut",
        Route::fresh(body.clone())
            .throttle(8 * 1024 * 1024)
            .reset_after(512 * 1024),
    );
    let core = Core::new(&origin, None);
    let cache = Arc::clone(&core.cache);
    let (big, cut) = (core.loc("big"), core.loc("cut"));
    core.runtime.block_on(async {
        let readers: Vec<_> = (0..64)
            .map(|_| {
                let (cache, loc) = (Arc::clone(&cache), big.clone());
                tokio::spawn(async move { read_all(&cache, &loc).await })
            })
            .collect();
        for reader in readers {
            assert!(reader.await.unwrap().unwrap() == body);
        }
        let readers: Vec<_> = (0..64)
            .map(|_| {
                let (cache, loc) = (Arc::clone(&cache), cut.clone());
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_secs(20), read_all(&cache, &loc)).await
                })
            })
            .collect();
        for reader in readers {
            let result = reader
                .await
                .unwrap()
                .expect("a reader of a failed body hangs");
            assert!(result.is_err(), "a reader of a cut body got success");
        }
    });
    assert_eq!(
        origin.gets("/base/big"),
        1,
        "{}",
        origin.describe_requests()
    );
    assert!(
        origin.gets("/base/cut") <= 2,
        "{}",
        origin.describe_requests()
    );
    drop(cache);
    core.verify_consistent();
}

#[test]
fn a_full_disk_evicts_to_make_room_and_no_read_is_wrong() {
    const BODY_BYTES: usize = 3 * 1024 * 1024;
    let origin = Origin::start();
    let bodies = serve(&origin, 32, BODY_BYTES);
    let disk = SmallDisk::mount(64);
    // The cap is far above the disk: only the full disk can make room.
    let core = Core::in_dir(&origin, disk.path(), Some(1 << 40));
    for round in 0..2 {
        for (i, body) in bodies.iter().enumerate() {
            let bytes = core
                .read(&format!("f{i}"))
                .unwrap_or_else(|e| panic!("round {round}, f{i} on a full disk: {e}"));
            assert!(bytes == *body, "round {round}: wrong bytes for f{i}");
        }
    }
    let stats = core.cache.totals();
    assert!(stats.cache_bytes <= 64 * 1024 * 1024, "{stats:?}");
    core.verify_consistent();
    drop(disk);
}

#[test]
fn the_cap_evicts_least_recently_opened_bodies_and_spares_open_ones() {
    const BODY_BYTES: usize = 256 * 1024;
    let origin = Origin::start();
    let bodies = serve(&origin, 6, BODY_BYTES);
    let core = Core::new(&origin, Some(4 * BODY_BYTES as u64));
    let cache = Arc::clone(&core.cache);
    let locs: Vec<Location> = (0..6).map(|i| core.loc(&format!("f{i}"))).collect();
    core.runtime.block_on(async {
        // Opens are ordered by millisecond timestamps: keep them apart.
        let pause = || tokio::time::sleep(Duration::from_millis(5));
        for loc in &locs[..3] {
            read_all(&cache, loc).await.unwrap();
            pause().await;
        }
        // f0 is held open; f1 is the least recently opened of the others.
        let Opened::Stored(held) = cache.open(&locs[0]).await.unwrap() else {
            panic!("f0 is stored");
        };
        pause().await;
        read_all(&cache, &locs[2]).await.unwrap();
        for loc in &locs[3..] {
            pause().await;
            read_all(&cache, loc).await.unwrap();
        }
        let stored = |i: usize| cache.describe(&locs[i]).unwrap().blake3.is_some();
        assert!(stored(0), "a body with an open handle was evicted");
        assert!(!stored(1), "the least recently opened body stayed");
        assert!(stored(5), "the newest body was evicted");
        let mut bytes = vec![0u8; BODY_BYTES];
        held.file.read_exact_at(&mut bytes, 0).unwrap();
        assert!(bytes == bodies[0]);
        cache.close_blob(&held);
    });
    assert!(core.cache.totals().cache_bytes <= 4 * BODY_BYTES as u64);
    drop(cache);
    core.verify_consistent();
}

/// Review finding 16: a record whose cache metadata no longer reads (a
/// dependency's format drifted, a damaged index) was served old forever,
/// with a HEAD on every lookup. Its body is now fetched anew.
#[test]
fn an_unreadable_record_is_fetched_anew() {
    let origin = Origin::start();
    let old = random_bytes(10_000, 40);
    origin.route("/base/f", Route::fresh(old.clone()));
    let dir = tempfile::tempdir().unwrap();
    let core = Core::in_dir(&origin, dir.path(), None);
    assert!(core.read("f").unwrap() == old);
    let url = core.url("f");
    core.verify_consistent();

    let store = Store::open(dir.path()).unwrap();
    store
        .index
        .update_meta(
            &url,
            serde_json::json!({ "policy": "from another version" }),
        )
        .unwrap();
    drop(store);

    let new = random_bytes(10_000, 41);
    origin.route("/base/f", Route::fresh(new.clone()));
    let core = Core::in_dir(&origin, dir.path(), None);
    assert!(core.read("f").unwrap() == new, "the old body was served");
    let gets = origin.gets("/base/f");
    assert!(core.read("f").unwrap() == new);
    assert_eq!(origin.gets("/base/f"), gets, "the new body was not stored");
    core.verify_consistent();
}

//! Soak: 32 readers over 2,000 URLs whose bodies change, with invalidations,
//! evictions and the size cap all running, for `FETCHFS_SOAK_SECS` seconds
//! (60 in CI; the full proof is `FETCHFS_SOAK_SECS=600 cargo test --test
//! integration soak::`). Every read must succeed with a body the origin
//! served for that path: 0 wrong bytes, 0 ENOENT, 0 errors. The daemon's RSS
//! and open descriptors are sampled each second and must stay flat once
//! warm.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

const URLS: usize = 2000;
const READERS: usize = 32;

#[derive(Default)]
struct Served {
    versions: Versions,
}

impl Served {
    fn publish(&self, origin: &Origin, url: usize, version: u64) {
        let body = random_bytes(4096 + (url % 16) * 4096, (url as u64) << 24 | version);
        let cache_control = match url % 4 {
            0 => "no-cache",
            1 => "max-age=1",
            _ => "max-age=60",
        };
        self.versions.record(url, &body);
        origin.route(
            &format!("/base/d{}/f{url}", url % 20),
            Route::ok(body)
                .header("Cache-Control", cache_control)
                .header("ETag", &format!("\"{url}-{version}\"")),
        );
    }

    fn is_a_version_of(&self, url: usize, bytes: &[u8]) -> bool {
        self.versions.is_a_version_of(url, bytes)
    }
}

/// (RSS in KiB, open descriptors) of `pid`.
fn footprint(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count());
    (rss, fds)
}

fn write_control(mount: &Mount, file: &str, text: &str) {
    if let Err(error) = mount.control(file, text) {
        panic!("{file} {text:?}: {error}");
    }
}

#[test]
fn readers_invalidations_and_evictions_for_a_while_lose_nothing() {
    let seconds: u64 = std::env::var("FETCHFS_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let origin = Arc::new(Origin::start());
    let served = Arc::new(Served::default());
    for url in 0..URLS {
        served.publish(&origin, url, 0);
    }
    let mount = Arc::new(
        Mount::builder()
            .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
            .arg("--max-cache-size")
            .arg("48MiB")
            .watchdog(Duration::from_secs(seconds + 300))
            .mount(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, wrong, enoent, errors) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut workers = Vec::new();
    for r in 0..READERS {
        let (served, mount, stop) = (Arc::clone(&served), Arc::clone(&mount), Arc::clone(&stop));
        let (reads, wrong, enoent, errors) = (
            Arc::clone(&reads),
            Arc::clone(&wrong),
            Arc::clone(&enoent),
            Arc::clone(&errors),
        );
        workers.push(std::thread::spawn(move || {
            let mut state = r as u64 * 7919 + 1;
            while !stop.load(Ordering::Relaxed) {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                let url = (state >> 33) as usize % URLS;
                match std::fs::read(mount.path(&format!("o/d{}/f{url}", url % 20))) {
                    Ok(bytes) => {
                        reads.fetch_add(1, Ordering::Relaxed);
                        if !served.is_a_version_of(url, &bytes) {
                            eprintln!("f{url}: wrong bytes ({} bytes)", bytes.len());
                            wrong.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                        eprintln!("f{url}: ENOENT");
                        enoent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        eprintln!("f{url}: {error}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // The origin changes bodies; the cache is told to forget and drop.
    {
        let (origin, served, stop) = (Arc::clone(&origin), Arc::clone(&served), Arc::clone(&stop));
        workers.push(std::thread::spawn(move || {
            let mut version = 1;
            while !stop.load(Ordering::Relaxed) {
                for url in (version as usize * 37..).step_by(101).take(10) {
                    served.publish(&origin, url % URLS, version);
                }
                version += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    {
        let (mount, stop) = (Arc::clone(&mount), Arc::clone(&stop));
        workers.push(std::thread::spawn(move || {
            let mut tick = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                tick += 1;
                if tick % 2 == 0 {
                    write_control(
                        &mount,
                        "invalidate",
                        &format!("/o/d{}/\n/o/**/f{tick}*\n", tick % 20),
                    );
                }
                if tick % 3 == 0 {
                    write_control(&mount, "evict", &format!("/o/d{}/\n", (tick * 7) % 20));
                }
            }
        }));
    }

    let started = Instant::now();
    let first = footprint(mount.pid());
    let mut warm = first;
    let mut peak = first;
    // RSS at each tenth of the run, to show where it levels off.
    let mut profile = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let now = footprint(mount.pid());
        peak = (peak.0.max(now.0), peak.1.max(now.1));
        if started.elapsed() < Duration::from_secs(seconds / 5 + 1) {
            warm = now;
        }
        if started.elapsed() >= Duration::from_secs(seconds) * (profile.len() as u32 + 1) / 10 {
            profile.push(now.0 / 1024);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let end = footprint(mount.pid());
    let (reads, wrong, enoent, errors) = (
        reads.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed),
        enoent.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    eprintln!(
        "soak {seconds} s: {reads} reads, {wrong} wrong, {enoent} ENOENT, {errors} other errors; \
         RSS start/warm/peak/end {}/{}/{}/{} MiB (each tenth: {profile:?}), fds {}/{}/{}/{}; {}",
        first.0 / 1024,
        warm.0 / 1024,
        peak.0 / 1024,
        end.0 / 1024,
        first.1,
        warm.1,
        peak.1,
        end.1,
        mount.stats()
    );
    assert_eq!((wrong, enoent, errors), (0, 0, 0), "after {reads} reads");
    assert!(reads > 0);
    assert!(
        end.0 <= warm.0 * 3 / 2 + 32 * 1024,
        "RSS grew from {} MiB when warm to {} MiB",
        warm.0 / 1024,
        end.0 / 1024
    );
    assert!(
        end.1 <= warm.1 + 64,
        "fds grew from {} to {}",
        warm.1,
        end.1
    );
}

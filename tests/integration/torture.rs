//! kill -9 torture: the daemon is killed at random moments while readers
//! read files of mixed sizes (0 B to 32 MiB, some from a throttled origin)
//! and the origin changes bodies between kills. After each kill the cache
//! dir holds no entry without its blob, and a remount serves only bytes the
//! origin really served for that path. Each round also reads one file to
//! end-of-file and kills at once: that body must be there after the kill.
//!
//! CI runs `FETCHFS_TORTURE_KILLS` rounds (default 20); the full proof is
//! `FETCHFS_TORTURE_KILLS=200 cargo test --test integration torture::`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;

const SIZES: [usize; 8] = [0, 1, 4096, 65_536, 1 << 20, 3 << 20, 8 << 20, 32 << 20];
const FILES: usize = 24;

/// The files, and every body each one has been served with (by SHA-256).
#[derive(Default)]
struct Served {
    versions: Versions,
}

impl Served {
    fn publish(&self, origin: &Origin, file: usize, version: u64) {
        let size = SIZES[file % SIZES.len()];
        let body = random_bytes(size, (file as u64) << 20 | version);
        let mut route = Route::ok(body.clone())
            .header("ETag", &format!("\"{file}-{version}\""))
            .header(
                "Cache-Control",
                if file % 3 == 0 {
                    "max-age=0"
                } else {
                    "max-age=3600"
                },
            );
        if file % 4 == 1 {
            route = route.throttle(16 << 20);
        }
        self.versions.record(file, &body);
        origin.route(&format!("/base/f{file}"), route);
    }

    fn is_a_version_of(&self, file: usize, bytes: &[u8]) -> bool {
        self.versions.is_a_version_of(file, bytes)
    }
}

fn kills() -> usize {
    std::env::var("FETCHFS_TORTURE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A tiny deterministic generator, so a failing round can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

fn mount_on(origin: &Origin, cache_dir: &std::path::Path, offline: bool) -> Mount {
    let mut builder = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .cache_dir(cache_dir)
        .watchdog(Duration::from_secs(600));
    if offline {
        builder = builder.arg("--offline");
    }
    builder.mount()
}

/// `fetchfs verify` output lines that would mean lost or wrong data (stray
/// files a kill leaves are harmless: the next mount removes them).
fn damage(cache_dir: &std::path::Path) -> Vec<String> {
    let output = run_fetchfs(
        &["verify", "--cache-dir", cache_dir.to_str().unwrap()],
        Duration::from_secs(120),
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("bad blob") || l.starts_with("entry without a blob"))
        .map(str::to_string)
        .collect()
}

#[test]
fn kill_9_at_random_moments_loses_and_corrupts_nothing() {
    let origin = Origin::start();
    let served = Arc::new(Served::default());
    for file in 0..FILES {
        served.publish(&origin, file, 0);
    }
    let cache_dir = tempfile::tempdir().unwrap();
    let mut dice = Dice(0x5eed);
    let wrong = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let rounds = kills();
    for round in 0..rounds {
        // New bodies for a few files, so versions mix across kills.
        for _ in 0..3 {
            let file = dice.roll(FILES as u64) as usize;
            served.publish(&origin, file, round as u64 + 1);
        }
        let mut mount = mount_on(&origin, cache_dir.path(), false);
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|r| {
                let (served, wrong, reads, stop) = (
                    Arc::clone(&served),
                    Arc::clone(&wrong),
                    Arc::clone(&reads),
                    Arc::clone(&stop),
                );
                let root = mount.mountpoint().to_path_buf();
                let mut dice = Dice((round * 16 + r) as u64);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let file = dice.roll(FILES as u64) as usize;
                        // A read the kill cuts fails; a read that succeeds
                        // must be a body the origin served for that path.
                        if let Ok(bytes) = std::fs::read(root.join(format!("o/f{file}"))) {
                            reads.fetch_add(1, Ordering::Relaxed);
                            if !served.is_a_version_of(file, &bytes) {
                                eprintln!(
                                    "round {round}: f{file} read wrong ({} bytes)",
                                    bytes.len()
                                );
                                wrong.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50 + dice.roll(600)));
        // One body read to end-of-file, then the kill at once.
        let last = dice.roll(FILES as u64) as usize;
        let last_read = std::fs::read(mount.path(&format!("o/f{last}")));
        mount.stop_with(libc::SIGKILL);
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.join().unwrap();
        }
        drop(mount);
        let found = damage(cache_dir.path());
        assert!(found.is_empty(), "round {round}: the kill left {found:?}");
        if let Ok(bytes) = last_read {
            assert!(
                served.is_a_version_of(last, &bytes),
                "round {round}: f{last} read wrong"
            );
            let offline = mount_on(&origin, cache_dir.path(), true);
            let after = std::fs::read(offline.path(&format!("o/f{last}")))
                .unwrap_or_else(|e| panic!("round {round}: f{last}, read whole, lost: {e}"));
            assert!(
                served.is_a_version_of(last, &after),
                "round {round}: f{last} stored wrong"
            );
        }
    }

    // Every entry left is a body the origin served for its path.
    let offline = mount_on(&origin, cache_dir.path(), true);
    for file in 0..FILES {
        if let Ok(bytes) = std::fs::read(offline.path(&format!("o/f{file}"))) {
            assert!(served.is_a_version_of(file, &bytes), "f{file} stored wrong");
        }
    }
    drop(offline);
    let output = run_fetchfs(
        &["verify", "--cache-dir", cache_dir.path().to_str().unwrap()],
        Duration::from_secs(120),
    );
    assert!(
        output.status.success(),
        "verify after {rounds} kills and a remount: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let wrong = wrong.load(Ordering::Relaxed);
    eprintln!(
        "torture: {rounds} kills survived, {} reads checked, {wrong} wrong",
        reads.load(Ordering::Relaxed)
    );
    assert_eq!(wrong, 0, "wrong bytes were read");
}

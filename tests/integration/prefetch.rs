//! `.fetchfs/prefetch` at scale: thousands of lines are fetched a few at a
//! time per origin, over a few reused connections, in bounded memory, and
//! every one completes.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::*;

/// Writes `lines` to `.fetchfs/prefetch` 128 KiB at a time, as `cat` would.
fn prefetch_lines(mount: &Mount, lines: impl Iterator<Item = String>) {
    let mut control = std::fs::OpenOptions::new()
        .write(true)
        .open(mount.path(".fetchfs/prefetch"))
        .unwrap();
    let mut batch = String::new();
    for line in lines {
        if batch.len() + line.len() + 1 > 128 * 1024 {
            control.write_all(batch.as_bytes()).expect("prefetch write");
            batch.clear();
        }
        batch.push_str(&line);
        batch.push('\n');
    }
    if !batch.is_empty() {
        control.write_all(batch.as_bytes()).expect("prefetch write");
    }
}

/// The daemon's peak resident memory, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn check_prefetch_of(files: usize) {
    let origin = Origin::start();
    for i in 0..files {
        origin.route(
            &format!("/base/p/f{i}"),
            Route::fresh(random_bytes(64, i as u64)),
        );
    }
    // About 1.3 ms a line on a 2-core machine, in a debug build: allow 5.
    let budget = Duration::from_secs(600).max(Duration::from_millis(files as u64 * 5));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .watchdog(budget + Duration::from_secs(300))
        .mount();
    let started = Instant::now();
    prefetch_lines(&mount, (0..files).map(|i| format!("/o/p/f{i}")));
    let ended = eventually(budget, || {
        let stats = mount.stats();
        stats["prefetch_done"].as_u64().unwrap_or(0)
            + stats["prefetch_failed"].as_u64().unwrap_or(0)
            >= files as u64
    });
    let stats = mount.stats();
    assert!(ended, "prefetches still running: {stats}");
    assert_eq!(stats["prefetch_failed"], 0, "{stats}");
    assert_eq!(stats["blobs"].as_u64(), Some(files as u64), "{stats}");
    let connections = origin.most_connections();
    assert!(
        connections <= 8,
        "{files} prefetches opened {connections} connections at once"
    );
    let rss = peak_rss_kib(mount.pid());
    eprintln!(
        "prefetch of {files} lines: {:?}, at most {connections} connections, peak RSS {} MiB",
        started.elapsed(),
        rss / 1024
    );
    assert!(rss < 256 * 1024, "peak RSS {} MiB", rss / 1024);
}

/// 10,000 lines in CI; the full proof is one command:
/// `FETCHFS_PREFETCH_LINES=1000000 cargo test --test integration prefetch::`.
#[test]
fn prefetch_lines_all_complete_over_a_few_connections() {
    let lines = std::env::var("FETCHFS_PREFETCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    check_prefetch_of(lines);
}

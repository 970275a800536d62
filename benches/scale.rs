//! Many URLs on one mount: what a stored URL costs on disk and in memory,
//! how long a mount takes to be ready, and what `stat` costs, as N grows.
//!
//!     cargo bench --bench scale                        # N = 10,000 and 100,000
//!     SCALE_N="100000 1000000" cargo bench --bench scale   # the full run
//!
//! For each N: the tests' in-process origin serves N tiny bodies (64 B, all
//! different, 1,000 per directory, fresh for an hour); they are fetched into
//! an empty cache through `.fetchfs/prefetch`; the cache is unmounted and
//! mounted again; then every path is `stat`ed once (each a lookup through
//! the daemon, which reads the index) and once more (the kernel's answer).
//! Prints, per N: the prefetch rate, the mount's time to ready, `stat`
//! latencies (p50, p99, max) of the first pass, the daemon's RSS after it,
//! and the cache dir's disk use per URL. The targets at 1,000,000:
//! ready under 1 s, `stat` p99 under 1 ms, RSS under 150 MiB, at most
//! 1.5 KB on disk per tiny URL.

#[path = "common/mod.rs"]
mod harness;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::mount::{Mount, OriginConfig};
use harness::origin::{Origin, Route};

const BODY_BYTES: usize = 64;
const PER_DIR: usize = 1000;
/// Lines written to `prefetch` per write: the queue holds 10,000.
const PREFETCH_BATCH: usize = 5000;

fn main() {
    let sizes: Vec<usize> = std::env::var("SCALE_N")
        .unwrap_or_else(|_| "10000 100000".into())
        .split_whitespace()
        .map(|n| n.parse().expect("SCALE_N: numbers separated by spaces"))
        .collect();
    println!(
        "{:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9} {:>10}",
        "N",
        "prefetch/s",
        "ready ms",
        "p50 us",
        "p99 us",
        "max us",
        "2nd pass s",
        "RSS MiB",
        "disk B/URL"
    );
    for n in sizes {
        let row = run(n);
        println!(
            "{:>9} {:>10.0} {:>9.0} {:>9.1} {:>9.1} {:>9.0} {:>11.2} {:>9.1} {:>10.0}",
            n,
            row.prefetch_rate,
            row.ready.as_secs_f64() * 1e3,
            row.p50_us,
            row.p99_us,
            row.max_us,
            row.second_pass.as_secs_f64(),
            row.rss_kib as f64 / 1024.0,
            row.disk_bytes as f64 / n as f64,
        );
        eprintln!(
            "N = {n}: first stat pass {:.2} s; RSS before the pass {:.1} MiB",
            row.first_pass.as_secs_f64(),
            row.rss_before_kib as f64 / 1024.0
        );
    }
}

struct Row {
    prefetch_rate: f64,
    ready: Duration,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    first_pass: Duration,
    second_pass: Duration,
    rss_before_kib: u64,
    rss_kib: u64,
    disk_bytes: u64,
}

fn relative(i: usize) -> String {
    format!("d{:04}/f{:03}", i / PER_DIR, i % PER_DIR)
}

fn run(n: usize) -> Row {
    let origin = Origin::start();
    for i in 0..n {
        let mut body = format!("{i:>16}").into_bytes();
        body.resize(BODY_BYTES, b'.');
        origin.route(&format!("/base/{}", relative(i)), Route::fresh(body));
    }
    let cache = tempfile::Builder::new()
        .prefix("fetchfs-scale-")
        .tempdir_in(std::env::var("SCALE_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .expect("cache dir");
    let config = || {
        Mount::builder()
            .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
            .cache_dir(cache.path())
            .watchdog(Duration::from_secs(6 * 3600))
    };

    let mut mount = config().mount();
    let started = Instant::now();
    for batch in (0..n).collect::<Vec<_>>().chunks(PREFETCH_BATCH) {
        let lines: String = batch
            .iter()
            .map(|&i| format!("/o/{}\n", relative(i)))
            .collect();
        let mut control = std::fs::OpenOptions::new()
            .write(true)
            .open(mount.path(".fetchfs/prefetch"))
            .expect("open prefetch");
        control.write_all(lines.as_bytes()).expect("write prefetch");
    }
    while mount.stat("prefetch_queued") > 0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let prefetch_rate = n as f64 / started.elapsed().as_secs_f64();
    let done = mount.stat("prefetch_done");
    assert_eq!(
        done,
        n as u64,
        "prefetches that ended well: {}",
        mount.stats()
    );
    mount.unmount();
    let disk_bytes = disk_use(cache.path());

    let started = Instant::now();
    let mount = config().mount();
    let ready = started.elapsed();
    let paths: Vec<PathBuf> = (0..n)
        .map(|i| mount.path(&format!("o/{}", relative(i))))
        .collect();
    let rss_before_kib = rss_kib(mount.pid());
    let (mut latencies, first_pass) = stat_all(&paths);
    let rss_kib = rss_kib(mount.pid());
    let (_, second_pass) = stat_all(&paths);
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    if std::env::var_os("SCALE_KEEP").is_some() {
        eprintln!("N = {n}: cache kept at {}", cache.keep().display());
    }
    Row {
        prefetch_rate,
        ready,
        p50_us: at(0.5),
        p99_us: at(0.99),
        max_us: at(1.0),
        first_pass,
        second_pass,
        rss_before_kib,
        rss_kib,
        disk_bytes,
    }
}

/// Stats every path once; each one's time in nanoseconds, and the total.
fn stat_all(paths: &[PathBuf]) -> (Vec<u64>, Duration) {
    let started = Instant::now();
    let latencies = paths
        .iter()
        .map(|path| {
            let one = Instant::now();
            let meta = std::fs::metadata(path).expect("stat of a stored path");
            assert_eq!(meta.len(), BODY_BYTES as u64);
            one.elapsed().as_nanos() as u64
        })
        .collect();
    (latencies, started.elapsed())
}

/// Resident memory of a process, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Bytes the cache dir takes on disk (allocated blocks, as `du` counts).
fn disk_use(dir: &Path) -> u64 {
    let output = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(dir)
        .output()
        .expect("du");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .and_then(|bytes| bytes.parse().ok())
        .expect("du's answer")
}

//! Bounded time, measured: how long a reader waits on an origin that
//! misbehaves, with the default settings (timeout 10 s, min_rate 16 KiB/s).
//!
//!     cargo bench --profile dev --bench bounded_time
//!
//! (`--profile dev` reuses the test build; these are waits, not CPU work.)
//! Prints one line per figure: an uncached read against a hung origin and
//! against a 1 byte/s trickle, the Ctrl-C and SIGKILL latency of a stuck
//! reader, a stale lookup during an outage (first and later), and cached
//! reads (p50/p99) while 16 fetches hang, against the same reads idle.

#[path = "common/mod.rs"]
mod harness;

use std::process::Child;
use std::time::{Duration, Instant};

use harness::check::{random_bytes, read, spawn_cat, timed};
use harness::mount::{Mount, OriginConfig};
use harness::origin::{Origin, Route};

const HUNG: Duration = Duration::from_secs(600);

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn mount(origin: &Origin) -> Mount {
    Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .watchdog(Duration::from_secs(900))
        .mount()
}

fn uncached_reads() {
    let cases = [
        ("hung", Route::ok(vec![0; 1000]).header_delay(HUNG)),
        ("silent", Route::ok(vec![0; 1 << 20]).stall_after(0, HUNG)),
        ("trickle", Route::ok(vec![0; 1 << 20]).throttle(1)),
    ];
    // One origin and mount each: an origin found down fails the next at once.
    for (name, route) in cases {
        let origin = Origin::start();
        origin.route("/base/f", route);
        let mount = mount(&origin);
        let (result, took) = timed(|| std::fs::read(mount.path("o/f")));
        let outcome = match result {
            Ok(_) => "read".to_string(),
            Err(e) => e.to_string(),
        };
        println!("uncached read, {name:<8} origin: {took:>8.2?}  ({outcome})");
    }
}

fn signal_latency() {
    let origin = Origin::start();
    origin.route("/base/hung", Route::ok(vec![0; 1000]).header_delay(HUNG));
    let mount = mount(&origin);
    for (name, signal) in [("SIGINT", libc::SIGINT), ("SIGKILL", libc::SIGKILL)] {
        let mut samples = Vec::new();
        for _ in 0..10 {
            let mut reader = spawn_cat(&mount.path("o/hung"));
            std::thread::sleep(Duration::from_millis(300));
            let started = Instant::now();
            // SAFETY: signals a child this program started.
            unsafe { libc::kill(reader.id() as i32, signal) };
            reader.wait().expect("wait for cat");
            samples.push(started.elapsed());
        }
        let p50 = percentile(&mut samples, 0.5);
        let max = percentile(&mut samples, 1.0);
        println!("{name} to a stuck reader: p50 {p50:>8.2?}  max {max:>8.2?}  (10 runs)");
    }
}

fn outage() {
    let origin = Origin::start();
    let stale = |i: u64| {
        Route::ok(random_bytes(4096, i))
            .header("Cache-Control", "max-age=0")
            .header("ETag", &format!("\"{i}\""))
    };
    for i in 0..5 {
        origin.route(&format!("/base/s{i}"), stale(i));
    }
    let mount = mount(&origin);
    for i in 0..5 {
        read(&mount.path(&format!("o/s{i}")));
    }
    mount.wait_idle(Duration::from_secs(10));
    for i in 0..5 {
        origin.route(
            &format!("/base/s{i}"),
            Route::ok(vec![0; 10]).header_delay(HUNG),
        );
    }
    for i in 0..5 {
        let (_, took) = timed(|| read(&mount.path(&format!("o/s{i}"))));
        let which = if i == 0 { "first" } else { "later" };
        println!("stale lookup + read during an outage ({which}): {took:>8.2?}");
    }
}

/// Rounds of idle and busy sampling, interleaved, so that the machine's own
/// ups and downs (other jobs, a noisy neighbour) fall on both sides alike.
const ROUNDS: usize = 10;
/// Reads of the cached file per phase of a round.
const READS_PER_PHASE: usize = 1000;

fn cached_reads_while_fetches_hang() {
    let origin = Origin::start();
    origin.route("/base/cached", Route::fresh(random_bytes(4096, 99)));
    for i in 0..16 {
        origin.route(
            &format!("/base/hung{i}"),
            Route::ok(vec![0; 10]).header_delay(HUNG),
        );
    }
    // A timeout longer than the whole measurement: the hung origin must stay
    // a hung origin, not become one known to be down that fails at once.
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).timeout("300s"))
        .watchdog(Duration::from_secs(900))
        .mount();
    read(&mount.path("o/cached"));
    mount.wait_idle(Duration::from_secs(10));
    let sample = |into: &mut Vec<Duration>| {
        for _ in 0..READS_PER_PHASE {
            into.push(timed(|| read(&mount.path("o/cached"))).1);
        }
    };
    let (mut idle, mut busy) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        sample(&mut idle);
        let stuck: Vec<Child> = (0..16)
            .map(|i| spawn_cat(&mount.path(&format!("o/hung{i}"))))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        sample(&mut busy);
        for mut reader in stuck {
            let _ = reader.kill();
            let _ = reader.wait();
        }
        // The fetches stop a while after their last reader: idle again.
        mount.wait_idle(Duration::from_secs(10));
    }
    let (idle_p50, idle_p99) = (percentile(&mut idle, 0.5), percentile(&mut idle, 0.99));
    let (busy_p50, busy_p99) = (percentile(&mut busy, 0.5), percentile(&mut busy, 0.99));
    let reads = ROUNDS * READS_PER_PHASE;
    println!(
        "cached 4 KiB read, idle ({reads} reads):            p50 {idle_p50:>8.2?}  p99 {idle_p99:>8.2?}"
    );
    println!(
        "cached 4 KiB read, 16 fetches hung ({reads} reads): p50 {busy_p50:>8.2?}  p99 {busy_p99:>8.2?}"
    );
    println!(
        "ratio hung/idle: p50 {:.2}x  p99 {:.2}x",
        busy_p50.as_secs_f64() / idle_p50.as_secs_f64(),
        busy_p99.as_secs_f64() / idle_p99.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing here takes arguments.
    uncached_reads();
    signal_latency();
    outage();
    cached_reads_while_fetches_hang();
}

//! Every wait ends in bounded time: one deadline for all the requests a read
//! needs, a minimum body rate, Ctrl-C and SIGKILL through to a reader stuck
//! on the origin, an origin that is down remembered with backoff, and a
//! panic below a handler contained. The origins here misbehave on purpose.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::*;

/// How much later than its bound a wait may end on a busy test machine.
const SLACK: Duration = Duration::from_millis(1500);
const HUNG: Duration = Duration::from_secs(120);

fn mount_with(origin: &Origin, settings: impl Fn(OriginConfig) -> OriginConfig) -> Mount {
    Mount::builder()
        .origin(settings(OriginConfig::new("o", origin.url("/base"))))
        .mount()
}

/// Waits for `child` to exit, at most `limit`; returns how long it took.
fn exits_within(child: &mut Child, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait().expect("wait for cat").is_some() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn an_uncached_read_of_a_hung_origin_fails_within_one_timeout() {
    let origin = Origin::start();
    origin.route("/base/f", Route::ok(vec![1; 1000]).header_delay(HUNG));
    let mount = mount_with(&origin, |o| o.timeout("3s"));
    let (result, took) = timed(|| std::fs::read(mount.path("o/f")));
    assert_errno(result, libc::EIO, "read of a hung origin");
    // The lookup's HEAD and the open's GET share one 3 s budget.
    assert!(
        took < Duration::from_secs(3) + SLACK,
        "a hung origin held the reader {took:?}"
    );
    assert!(
        took >= Duration::from_secs(3) - SLACK,
        "failed before the timeout: {took:?}"
    );
}

#[test]
fn headers_then_no_body_fails_within_the_rate_window_and_stores_nothing() {
    let origin = Origin::start();
    let body = random_bytes(64 * 1024, 801);
    origin.route("/base/f", Route::fresh(body.clone()).stall_after(0, HUNG));
    let mount = mount_with(&origin, |o| o.timeout("3s"));
    let (result, took) = timed(|| std::fs::read(mount.path("o/f")));
    assert_errno(result, libc::EIO, "read of a body that never comes");
    assert!(
        took < Duration::from_secs(10) + SLACK,
        "a silent body held the reader {took:?}"
    );
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(mount.stat("blobs"), 0, "{}", mount.stats());
    origin.route("/base/f", Route::fresh(body.clone()));
    std::thread::sleep(Duration::from_millis(1100));
    assert_same_bytes(
        &read(&mount.path("o/f")),
        &body,
        "read once the origin recovered",
    );
}

#[test]
fn a_trickle_below_min_rate_fails_instead_of_holding_readers_for_days() {
    let origin = Origin::start();
    let body = random_bytes(1024 * 1024, 802);
    origin.route("/base/f", Route::fresh(body.clone()).throttle(1));
    let mount = mount_with(&origin, |o| o.timeout("3s").min_rate("16KiB/s"));
    let (result, took) = timed(|| std::fs::read(mount.path("o/f")));
    assert_errno(result, libc::EIO, "read of a 1 byte/s trickle");
    assert!(
        took < Duration::from_secs(10) + SLACK,
        "a 1 byte/s body held the reader {took:?}"
    );
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(
        mount.stat("blobs"),
        0,
        "a partial body was stored: {}",
        mount.stats()
    );
}

/// A body without a length is fetched at lookup to know its size: a
/// trickle there fails `stat` within the rate window too (review finding 7).
#[test]
fn a_trickle_without_length_fails_stat_within_the_rate_window() {
    let origin = Origin::start();
    let body = random_bytes(1024 * 1024, 804);
    origin.route("/base/f", Route::fresh(body).chunked().throttle(1));
    let mount = mount_with(&origin, |o| o.timeout("3s").min_rate("16KiB/s"));
    let (result, took) = timed(|| std::fs::metadata(mount.path("o/f")));
    assert_errno(result, libc::EIO, "stat of a 1 byte/s body without length");
    assert!(
        took < Duration::from_secs(10) + SLACK,
        "a 1 byte/s body held stat {took:?}"
    );
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(mount.stat("blobs"), 0, "{}", mount.stats());
}

#[test]
fn a_slow_body_above_min_rate_is_read_whole() {
    let origin = Origin::start();
    let body = random_bytes(256 * 1024, 803);
    origin.route("/base/f", Route::fresh(body.clone()).throttle(64 * 1024));
    let mount = mount_with(&origin, |o| o.timeout("3s").min_rate("16KiB/s"));
    assert_same_bytes(&read(&mount.path("o/f")), &body, "a 64 KiB/s body");
}

fn stuck_reader_returns_on(signal: i32) {
    let origin = Origin::start();
    origin.route("/base/f", Route::ok(vec![1; 1000]).header_delay(HUNG));
    let mount = mount_with(&origin, |o| o.timeout("60s"));
    let mut reader = spawn_cat(&mount.path("o/f"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        reader.try_wait().unwrap().is_none(),
        "cat ended before the signal"
    );
    // SAFETY: sends a signal to a child process this test started and owns.
    unsafe { libc::kill(reader.id() as i32, signal) };
    let took = exits_within(&mut reader, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("cat ignored signal {signal} for 10 s"));
    assert!(
        took < Duration::from_secs(1),
        "signal {signal} reached the reader after {took:?}"
    );
    // The mount goes on serving.
    origin.route("/base/g", Route::fresh(b"still here\n".to_vec()));
    assert_eq!(read(&mount.path("o/g")), b"still here\n");
}

/// `cat .fetchfs/events` waits at the end of the stream for the next event,
/// as `tail -f` would: Ctrl-C ends it at once (review findings 7 and 29).
#[test]
fn ctrl_c_reaches_a_reader_waiting_for_events_within_a_second() {
    let origin = Origin::start();
    let mount = mount_with(&origin, |o| o);
    let mut reader = spawn_cat(&mount.path(".fetchfs/events"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        reader.try_wait().unwrap().is_none(),
        "cat of events ended before the signal"
    );
    // SAFETY: sends a signal to a child process this test started and owns.
    unsafe { libc::kill(reader.id() as i32, libc::SIGINT) };
    let took = exits_within(&mut reader, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("cat of events ignored SIGINT for 10 s"));
    assert!(
        took < Duration::from_secs(1),
        "SIGINT reached the events reader after {took:?}"
    );
    assert!(
        mount.stats()["uptime_s"].is_u64(),
        "the mount goes on serving"
    );
}

#[test]
fn ctrl_c_reaches_a_reader_stuck_on_the_origin_within_a_second() {
    stuck_reader_returns_on(libc::SIGINT);
}

#[test]
fn sigterm_reaches_a_reader_stuck_on_the_origin_within_a_second() {
    stuck_reader_returns_on(libc::SIGTERM);
}

#[test]
fn sigkill_reaches_a_reader_stuck_on_the_origin_within_a_second() {
    stuck_reader_returns_on(libc::SIGKILL);
}

#[test]
fn an_interrupted_reader_leaves_the_download_to_the_others_and_the_last_stops_it() {
    const BODY_BYTES: usize = 4 * 1024 * 1024;
    let origin = Origin::start();
    let body = random_bytes(BODY_BYTES, 804);
    origin.route(
        "/base/shared",
        Route::fresh(body.clone()).throttle(1024 * 1024),
    );
    origin.route(
        "/base/alone",
        Route::fresh(body.clone()).throttle(64 * 1024),
    );
    let mount = mount_with(&origin, |o| o.timeout("10s"));

    // Two readers; one is interrupted mid-body, the other reads every byte.
    let mut quitter = spawn_cat(&mount.path("o/shared"));
    let keeper = {
        let path = mount.path("o/shared");
        std::thread::spawn(move || std::fs::read(path))
    };
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: signals a child this test started.
    unsafe { libc::kill(quitter.id() as i32, libc::SIGINT) };
    // How fast is for the latency tests above; here only that it ends.
    assert!(exits_within(&mut quitter, Duration::from_secs(5)).is_some());
    let kept = keeper.join().unwrap().expect("the remaining reader");
    assert_same_bytes(&kept, &body, "the reader that stayed");
    assert_eq!(
        origin.gets("/base/shared"),
        1,
        "{}",
        origin.describe_requests()
    );

    // The only reader goes: the download stops soon after, unstored.
    let mut only = spawn_cat(&mount.path("o/alone"));
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: signals a child this test started.
    unsafe { libc::kill(only.id() as i32, libc::SIGKILL) };
    assert!(exits_within(&mut only, Duration::from_secs(5)).is_some());
    let stopped = eventually(Duration::from_secs(8), || {
        origin
            .requests_to("/base/alone")
            .iter()
            .any(|r| r.body_bytes_sent > 0 && r.body_sent_at.is_none())
    });
    assert!(
        stopped,
        "the download went on with no reader left: {}",
        origin.describe_requests()
    );
    assert!(
        std::fs::read(mount.path(".fetchfs/stats")).is_ok(),
        "the mount stopped serving"
    );
}

#[test]
fn an_origin_that_is_down_fails_at_once_until_it_is_back() {
    let origin = Origin::start();
    let stale = |seed| {
        Route::ok(random_bytes(10_000, seed))
            .header("Cache-Control", "max-age=0")
            .header("ETag", &format!("\"{seed}\""))
    };
    for (name, seed) in [("a", 810), ("b", 811), ("c", 812)] {
        origin.route(&format!("/base/{name}"), stale(seed));
    }
    let mount = mount_with(&origin, |o| o.timeout("2s"));
    let stored: Vec<Vec<u8>> = ["a", "b", "c"]
        .iter()
        .map(|name| read(&mount.path(&format!("o/{name}"))))
        .collect();
    mount.wait_idle(Duration::from_secs(10));

    // The origin hangs: the first stale read waits out the timeout, then
    // gets the stale body; the next ones get theirs at once.
    for name in ["a", "b", "c", "x"] {
        origin.route(
            &format!("/base/{name}"),
            Route::ok(vec![0; 10]).header_delay(HUNG),
        );
    }
    let (first, took_first) = timed(|| read(&mount.path("o/a")));
    assert_same_bytes(&first, &stored[0], "stale body during the outage");
    assert!(
        took_first < Duration::from_secs(2) + SLACK,
        "{took_first:?}"
    );
    let (second, took_second) = timed(|| read(&mount.path("o/b")));
    assert_same_bytes(&second, &stored[1], "stale body during the outage");
    assert!(
        took_second < Duration::from_millis(500),
        "a known outage cost another wait: {took_second:?}"
    );
    let (missing, took_missing) = timed(|| std::fs::read(mount.path("o/x")));
    assert_errno(missing, libc::EIO, "an uncached file during the outage");
    assert!(
        took_missing < Duration::from_millis(500),
        "{took_missing:?}"
    );

    // Back up: after the backoff window one request finds out, and reads
    // revalidate again.
    origin.route("/base/c", stale(812));
    std::thread::sleep(Duration::from_secs(3));
    let before = origin.requests_to("/base/c").len();
    let back = eventually(Duration::from_secs(10), || {
        read(&mount.path("o/c")) == stored[2] && origin.requests_to("/base/c").len() > before
    });
    assert!(
        back,
        "the origin was never asked again: {}",
        origin.describe_requests()
    );
}

#[test]
fn cached_reads_are_not_held_up_by_readers_stuck_on_a_hung_origin() {
    let origin = Origin::start();
    let body = random_bytes(4096, 820);
    origin.route("/base/cached", Route::fresh(body.clone()));
    for i in 0..16 {
        origin.route(
            &format!("/base/hung{i}"),
            Route::ok(vec![0; 10]).header_delay(HUNG),
        );
    }
    let mount = mount_with(&origin, |o| o.timeout("30s"));
    assert_same_bytes(&read(&mount.path("o/cached")), &body, "first read");
    mount.wait_idle(Duration::from_secs(10));
    let stuck: Vec<Child> = (0..16)
        .map(|i| spawn_cat(&mount.path(&format!("o/hung{i}"))))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut slowest = Duration::ZERO;
    for _ in 0..200 {
        let (bytes, took) = timed(|| read(&mount.path("o/cached")));
        assert!(bytes == body);
        let _ = std::fs::metadata(mount.path("o/cached")).unwrap();
        slowest = slowest.max(took);
    }
    for mut reader in stuck {
        let _ = reader.kill();
        let _ = reader.wait();
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a cached read waited {slowest:?} behind readers of a hung origin"
    );
}

#[test]
fn a_panic_below_a_handler_is_eio_and_the_mount_keeps_serving() {
    let origin = Origin::start();
    origin.route("/base/boom-here", Route::fresh(b"never read\n".to_vec()));
    origin.route("/base/fine", Route::fresh(b"fine\n".to_vec()));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .env("FETCHFS_FAILPOINT_PANIC", "boom-here")
        .mount();
    for _ in 0..8 {
        assert_errno(
            std::fs::read(mount.path("o/boom-here")),
            libc::EIO,
            "the panicking lookup",
        );
    }
    assert_eq!(
        read(&mount.path("o/fine")),
        b"fine\n",
        "the mount stopped serving"
    );
    let tail = mount.events_tail();
    assert!(
        tail.contains("boom-here") && tail.contains("panic"),
        "the events do not name the URL: {tail}"
    );
    assert!(
        mount.stderr().contains("boom-here"),
        "the log does not name the URL"
    );
}

/// The same for a handler that answers on a FUSE dispatch thread: the
/// extended attributes' read panics, the caller gets EIO, and the thread
/// goes on serving.
#[test]
fn a_panic_on_a_dispatch_thread_is_eio_and_the_mount_keeps_serving() {
    let origin = Origin::start();
    origin.route("/base/boom-xattr", Route::fresh(b"body\n".to_vec()));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .env("FETCHFS_FAILPOINT_PANIC", "describe=boom-xattr")
        .mount();
    let path = mount.path("o/boom-xattr");
    // More than there are dispatch threads: none of them was lost.
    for _ in 0..32 {
        assert_errno(
            getxattr(&path, "user.fetchfs.url"),
            libc::EIO,
            "the panicking getxattr",
        );
        assert_eq!(read(&path), b"body\n", "the mount stopped serving");
    }
    assert!(
        mount.stderr().contains("boom-xattr"),
        "the log does not name the URL"
    );
}

/// Review finding 6, for directories: during an outage, `ls` of a directory
/// whose listing has to be asked again waits out one timeout, then gets the
/// listing kept from before; the next directories get theirs at once.
#[test]
fn listings_during_an_outage_cost_one_timeout_then_come_at_once() {
    let origin = Origin::start();
    let files: std::collections::BTreeMap<String, Vec<u8>> = (1..=3)
        .map(|i| (format!("d{i}/f{i}"), random_bytes(100, 830 + i)))
        .collect();
    origin.serve_tree("/base", &files, Listing::Html);
    let mount = mount_with(&origin, |o| o.timeout("2s"));
    let names = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(mount.path(dir))
            .unwrap_or_else(|e| panic!("ls {dir}: {e}"))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    for i in 1..=3 {
        assert_eq!(names(&format!("o/d{i}")), [format!("f{i}")]);
    }
    // Past the time a listing is reused without asking (10 s).
    std::thread::sleep(Duration::from_millis(10_500));
    for i in 1..=3 {
        for path in [format!("/base/d{i}/"), format!("/base/d{i}")] {
            origin.route(&path, Route::ok(vec![0; 10]).header_delay(HUNG));
        }
    }

    let (first, took_first) = timed(|| names("o/d1"));
    assert_eq!(first, ["f1"], "the kept listing during the outage");
    assert!(
        took_first < Duration::from_secs(2) + SLACK,
        "{took_first:?}"
    );
    for i in 2..=3 {
        let (listed, took) = timed(|| names(&format!("o/d{i}")));
        assert_eq!(listed, [format!("f{i}")]);
        assert!(
            took < Duration::from_millis(500),
            "a known outage cost another wait for d{i}: {took:?}"
        );
    }
}

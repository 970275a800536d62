//! Readers and downloads overlap: concurrent readers of one cold URL share a
//! single GET, a reader gets the first bytes while the rest is still on the
//! wire, and a slow URL does not hold up readers of another.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

const READERS: usize = 32;

#[test]
fn concurrent_cold_readers_share_one_get() {
    let body = Arc::new(random_bytes(4 << 20, 51));
    let origin = Origin::start();
    // About 1.4 s on the wire: every reader arrives while the GET is running.
    origin.route(
        "/base/hot.bin",
        Route::fresh(body.to_vec()).throttle(3 << 20),
    );
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .watchdog(Duration::from_secs(90))
        .mount();
    let path = mount.path("o/hot.bin");
    for (i, data) in read_concurrently(&path, READERS).iter().enumerate() {
        assert_same_bytes(data, &body, &format!("reader {i}"));
    }
    assert_eq!(
        origin.gets("/base/hot.bin"),
        1,
        "{READERS} concurrent readers of one cold URL:\n{}",
        origin.describe_requests()
    );
}

#[test]
fn first_bytes_arrive_before_the_download_finishes() {
    const FIRST_BYTES: usize = 64 * 1024;
    const STALL: Duration = Duration::from_secs(2);
    let body = random_bytes(1 << 20, 52);
    let origin = Origin::start();
    origin.route(
        "/base/slow.bin",
        Route::fresh(body.clone()).stall_after(FIRST_BYTES, STALL),
    );
    let mount = Mount::single("o", origin.url("/base"));
    let started = Instant::now();

    let mut file = std::fs::File::open(mount.path("o/slow.bin")).expect("open");
    let mut head = vec![0u8; 4096];
    file.read_exact(&mut head).expect("read the first 4 KiB");
    let waited = started.elapsed();
    let body_done_when_first_bytes_arrived = origin.bodies_sent("/base/slow.bin");

    assert_eq!(&head[..], &body[..4096], "first 4 KiB");
    assert_eq!(
        body_done_when_first_bytes_arrived, 0,
        "the first bytes were only served after the origin had sent the whole body"
    );
    assert!(
        waited < STALL - Duration::from_millis(500),
        "the first 4 KiB took {waited:?}; the origin sent 64 KiB at once, then stalled {STALL:?}"
    );
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).expect("read the rest");
    head.extend_from_slice(&rest);
    assert_same_bytes(&head, &body, "whole body after the stall");
}

/// Reads `quick` (a mount path) while the origin holds back its answer
/// for `o/slow` for 3 s; origins `o` and `p` both point at `/base`.
fn check_quick_read_while_slow_pending(quick: &str) {
    let origin = Origin::start();
    origin.route(
        "/base/slow",
        Route::fresh(b"slow".to_vec()).header_delay(Duration::from_secs(3)),
    );
    origin.route("/base/quick", Route::fresh(b"quick".to_vec()));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).timeout("10s"))
        .origin(OriginConfig::new("p", origin.url("/base")).timeout("10s"))
        .mount();
    let slow_path = mount.path("o/slow");
    let slow_reader = std::thread::spawn(move || std::fs::read(slow_path));
    assert!(
        eventually(Duration::from_secs(2), || origin
            .requests_to("/base/slow")
            .len()
            == 1),
        "the slow request never reached the origin"
    );

    let started = Instant::now();
    let got = read(&mount.path(quick));
    let took = started.elapsed();

    assert_eq!(got, b"quick");
    assert!(
        took < Duration::from_millis(1500),
        "reading {quick} took {took:?} while the origin request for o/slow was pending"
    );
    assert_eq!(slow_reader.join().unwrap().expect("slow read"), b"slow");
}

#[test]
fn a_slow_url_does_not_hold_up_another_in_its_directory() {
    check_quick_read_while_slow_pending("o/quick");
}

#[test]
fn a_slow_url_does_not_hold_up_another_origin() {
    check_quick_read_while_slow_pending("p/quick");
}

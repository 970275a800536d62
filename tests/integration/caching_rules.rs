//! HTTP caching rules beyond plain freshness: must-revalidate,
//! stale-while-revalidate, the configured min/max TTLs, and credentials that
//! never follow a redirect to another host.

use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn must_revalidate_is_never_served_stale() {
    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(b"v1".to_vec())
            .header("Cache-Control", "max-age=0, must-revalidate")
            .header("ETag", "\"v1\""),
    );
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/f")), b"v1");
    mount.wait_idle(Duration::from_secs(10));

    origin.route("/base/f", Route::status(503));

    assert_errno(
        std::fs::read(mount.path("o/f")),
        libc::EIO,
        "must-revalidate entry, origin failing",
    );
    assert_eq!(mount.stat("stale_served"), 0, "{}", mount.stats());
}

#[test]
fn stale_while_revalidate_serves_at_once_and_refreshes_behind() {
    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(b"v1".to_vec())
            .header("Cache-Control", "max-age=1, stale-while-revalidate=30")
            .header("ETag", "\"v1\""),
    );
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/f")), b"v1");
    mount.wait_idle(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    origin.route(
        "/base/f",
        Route::ok(b"v2".to_vec())
            .header("Cache-Control", "max-age=60")
            .header("ETag", "\"v2\"")
            .header_delay(Duration::from_secs(2)),
    );

    let started = Instant::now();
    let stale = read(&mount.path("o/f"));
    let took = started.elapsed();

    assert_eq!(stale, b"v1", "the stale body within its window");
    assert!(
        took < Duration::from_millis(1500),
        "the read waited {took:?} for the origin"
    );
    assert!(
        eventually(Duration::from_secs(10), || read(&mount.path("o/f"))
            == b"v2"),
        "the background revalidation never brought v2"
    );
}

#[test]
fn min_ttl_keeps_a_short_lived_response_fresh() {
    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(b"v1".to_vec()).header("Cache-Control", "max-age=1"),
    );
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).min_ttl("1h"))
        .mount();
    assert_eq!(read(&mount.path("o/f")), b"v1");
    mount.wait_idle(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    let before = origin.total();

    assert_eq!(read(&mount.path("o/f")), b"v1");
    assert_eq!(
        origin.total(),
        before,
        "min_ttl = 1h, yet the origin was asked after 1.5 s"
    );
}

#[test]
fn max_ttl_caps_a_long_lived_response() {
    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(b"v1".to_vec()).header("Cache-Control", "max-age=3600"),
    );
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).max_ttl("1s"))
        .mount();
    assert_eq!(read(&mount.path("o/f")), b"v1");
    mount.wait_idle(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(2100));
    origin.route(
        "/base/f",
        Route::ok(b"v2".to_vec()).header("Cache-Control", "max-age=3600"),
    );

    assert_eq!(
        read(&mount.path("o/f")),
        b"v2",
        "max_ttl = 1s, yet the 2 s old copy was served"
    );
}

#[test]
fn credentials_are_not_sent_to_another_host() {
    let first = Origin::start();
    let second = Origin::start();
    second.route("/elsewhere/f", Route::fresh(b"moved".to_vec()));
    first.route("/base/f", Route::redirect(302, &second.url("/elsewhere/f")));
    first.route("/base/g", Route::fresh(b"here".to_vec()));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", first.url("/base")).header("Authorization", "Bearer secret"))
        .mount();

    assert_eq!(read(&mount.path("o/g")), b"here");
    assert_eq!(read(&mount.path("o/f")), b"moved");

    let at_first = first.requests_to("/base/g");
    assert!(
        at_first
            .iter()
            .all(|r| r.header("Authorization") == Some("Bearer secret")),
        "the origin's own host did not get its credentials"
    );
    let at_second = second.requests_to("/elsewhere/f");
    assert!(!at_second.is_empty(), "the redirect was not followed");
    assert!(
        at_second
            .iter()
            .all(|r| r.header("Authorization").is_none()),
        "credentials leaked to another host: {}",
        second.describe_requests()
    );
}

#[test]
fn stale_body_is_served_when_the_origin_is_gone() {
    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(b"kept".to_vec())
            .header("Cache-Control", "max-age=1")
            .header("ETag", "\"v1\""),
    );
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).timeout("2s"))
        .mount();
    assert_eq!(read(&mount.path("o/f")), b"kept");
    mount.wait_idle(Duration::from_secs(10));
    drop(origin);
    std::thread::sleep(Duration::from_millis(1500));

    let started = Instant::now();
    assert_eq!(
        read(&mount.path("o/f")),
        b"kept",
        "stale body with the origin gone"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(mount.stat("stale_served") >= 1, "{}", mount.stats());
}

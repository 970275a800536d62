//! The cache outlives the daemon: after an unmount and a mount on the same
//! cache dir, a fresh cached file is served with no origin request at all,
//! under the same inode number.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::common::*;

#[test]
fn fresh_files_survive_a_remount_without_origin_requests() {
    let max_age_body = random_bytes(700_000, 31);
    let default_ttl_body = random_bytes(300_000, 32);
    let origin = Origin::start();
    // Fresh by its own Cache-Control.
    origin.route("/base/max-age.bin", Route::fresh(max_age_body.clone()));
    // No freshness information at all: fresh only by the origin's default_ttl.
    origin.route("/base/no-headers.bin", Route::ok(default_ttl_body.clone()));
    let cache = tempfile::tempdir().unwrap();
    let config = OriginConfig::new("o", origin.url("/base")).default_ttl("1h");

    let mut first = Mount::builder()
        .origin(config.clone())
        .cache_dir(cache.path())
        .mount();
    assert_same_bytes(
        &read(&first.path("o/max-age.bin")),
        &max_age_body,
        "first mount",
    );
    assert_same_bytes(
        &read(&first.path("o/no-headers.bin")),
        &default_ttl_body,
        "first mount",
    );
    first.wait_idle(Duration::from_secs(10));
    let ino_before = std::fs::metadata(first.path("o/max-age.bin"))
        .unwrap()
        .ino();
    let status = first.unmount();
    assert!(status.success(), "fetchfs exited with {status} on SIGTERM");
    drop(first);
    let requests_before = origin.total();

    let second = Mount::builder()
        .origin(config)
        .cache_dir(cache.path())
        .mount();
    let meta = std::fs::metadata(second.path("o/max-age.bin")).expect("stat after remount");
    assert_same_bytes(
        &read(&second.path("o/max-age.bin")),
        &max_age_body,
        "after remount",
    );
    assert_same_bytes(
        &read(&second.path("o/no-headers.bin")),
        &default_ttl_body,
        "after remount",
    );

    assert_eq!(
        origin.total(),
        requests_before,
        "reading fresh cached files after a remount asked the origin:\n{}",
        origin.describe_requests()
    );
    assert_eq!(meta.len(), max_age_body.len() as u64);
    assert_eq!(meta.ino(), ino_before, "st_ino changed across the remount");
}

#[test]
fn a_fresh_mount_with_an_empty_cache_fetches() {
    // The converse: the zero-request result above comes from the cache dir,
    // not from some state outside it.
    let body = random_bytes(50_000, 33);
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(body.clone()));
    let mut first = Mount::single("o", origin.url("/base"));
    assert_same_bytes(&read(&first.path("o/f")), &body, "first mount");
    first.unmount();
    drop(first);
    let gets_before = origin.gets("/base/f");

    let second = Mount::single("o", origin.url("/base"));
    assert_same_bytes(
        &read(&second.path("o/f")),
        &body,
        "second mount, new cache dir",
    );

    assert!(
        origin.gets("/base/f") > gets_before,
        "a new cache dir must fetch again"
    );
}

#[test]
fn offline_mount_serves_the_cache_and_never_asks_the_origin() {
    let body = random_bytes(80_000, 34);
    let origin = Origin::start();
    // Stale at once: online, every open would revalidate.
    origin.route(
        "/base/cached.bin",
        Route::ok(body.clone())
            .header("Cache-Control", "no-cache")
            .header("ETag", "\"c\""),
    );
    origin.route(
        "/base/uncached.bin",
        Route::fresh(b"never fetched".to_vec()),
    );
    let cache = tempfile::tempdir().unwrap();
    let config = OriginConfig::new("o", origin.url("/base"));
    let mut first = Mount::builder()
        .origin(config.clone())
        .cache_dir(cache.path())
        .mount();
    assert_same_bytes(&read(&first.path("o/cached.bin")), &body, "online read");
    first.wait_idle(Duration::from_secs(10));
    assert!(first.unmount().success());
    drop(first);
    let requests_before = origin.total();

    let offline = Mount::builder()
        .origin(config)
        .cache_dir(cache.path())
        .arg("--offline")
        .mount();
    let cached = std::fs::read(offline.path("o/cached.bin"));
    let uncached = std::fs::read(offline.path("o/uncached.bin"));

    let cached = cached.unwrap_or_else(|e| panic!("offline read of a cached file: {e}"));
    assert_same_bytes(&cached, &body, "offline read of a cached file");
    assert!(
        uncached.is_err(),
        "offline read of an uncached file succeeded"
    );
    assert_eq!(
        origin.total(),
        requests_before,
        "an --offline mount asked the origin:\n{}",
        origin.describe_requests()
    );
}

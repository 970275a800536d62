//! Errors as a reader sees them: 404 and 410 are ENOENT; a body cut short (a
//! reset, fewer bytes than Content-Length, chunked without its last chunk) is
//! EIO and is never stored, so a re-read after the origin recovers gets the
//! right bytes; an origin that does not answer is EIO after the timeout.

use std::time::{Duration, Instant};

use crate::common::*;

const BODY_BYTES: usize = 1 << 20;
const CUT_AT: usize = 256 * 1024;

#[test]
fn not_found_is_enoent() {
    let origin = Origin::start();
    let mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/missing.bin");

    assert_errno(std::fs::metadata(&path), libc::ENOENT, "stat of a 404");
    assert_errno(std::fs::File::open(&path), libc::ENOENT, "open of a 404");
    assert!(origin.total() >= 1, "the origin was never asked");
}

#[test]
fn gone_is_enoent() {
    let origin = Origin::start();
    origin.route("/base/old.bin", Route::status(410));
    let mount = Mount::single("o", origin.url("/base"));

    assert_errno(
        std::fs::File::open(mount.path("o/old.bin")),
        libc::ENOENT,
        "open of a 410",
    );
}

/// Serves `broken`, expects EIO, then serves the whole body and expects it.
fn check_cut_is_eio_and_not_stored(broken: Route, body: &[u8], what: &str) {
    let origin = Origin::start();
    origin.route("/base/f.bin", broken);
    let mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/f.bin");

    let result = std::fs::read(&path);

    match result {
        Ok(data) => panic!(
            "{what}: read succeeded with {} of {} bytes",
            data.len(),
            body.len()
        ),
        Err(e) => assert_eq!(
            errno(&e),
            libc::EIO,
            "{what}: read failed with {e}, expected EIO"
        ),
    }
    let gets_before_fix = origin.gets("/base/f.bin");
    origin.route("/base/f.bin", Route::fresh(body.to_vec()));
    let reread = std::fs::read(&path);
    let reread =
        reread.unwrap_or_else(|e| panic!("{what}: re-read after the origin recovered: {e}"));
    assert_same_bytes(
        &reread,
        body,
        &format!("{what}: re-read after the origin recovered"),
    );
    assert!(
        origin.gets("/base/f.bin") > gets_before_fix,
        "{what}: the re-read did not fetch again"
    );
}

#[test]
fn reset_mid_body_is_eio_and_not_stored() {
    let body = random_bytes(BODY_BYTES, 81);
    check_cut_is_eio_and_not_stored(
        Route::fresh(body.clone()).reset_after(CUT_AT),
        &body,
        "connection reset mid-body",
    );
}

#[test]
fn short_body_is_eio_and_not_stored() {
    let body = random_bytes(BODY_BYTES, 82);
    check_cut_is_eio_and_not_stored(
        Route::fresh(body.clone()).short_body(CUT_AT),
        &body,
        "body shorter than Content-Length",
    );
}

#[test]
fn chunked_without_last_chunk_is_eio_and_not_stored() {
    let body = random_bytes(BODY_BYTES, 83);
    check_cut_is_eio_and_not_stored(
        Route::fresh(body.clone()).chunked_unterminated(),
        &body,
        "chunked body without its last chunk",
    );
}

#[test]
fn short_body_is_not_stored_across_a_remount() {
    let body = random_bytes(BODY_BYTES, 84);
    let origin = Origin::start();
    origin.route("/base/f.bin", Route::fresh(body.clone()).short_body(CUT_AT));
    let cache = tempfile::tempdir().unwrap();
    let config = OriginConfig::new("o", origin.url("/base"));
    let mut first = Mount::builder()
        .origin(config.clone())
        .cache_dir(cache.path())
        .mount();
    assert_errno(
        std::fs::read(first.path("o/f.bin")),
        libc::EIO,
        "read of a short body",
    );
    assert!(first.unmount().success());
    drop(first);
    origin.route("/base/f.bin", Route::fresh(body.clone()));

    let second = Mount::builder()
        .origin(config)
        .cache_dir(cache.path())
        .mount();
    let got = read(&second.path("o/f.bin"));

    assert_same_bytes(&got, &body, "after a remount, a body that was cut short");
}

#[test]
fn unresponsive_origin_is_eio_after_the_timeout() {
    let origin = Origin::start();
    origin.route(
        "/base/hang.bin",
        Route::fresh(b"too late".to_vec()).header_delay(Duration::from_secs(30)),
    );
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).timeout("1s"))
        .mount();
    let started = Instant::now();

    let result = std::fs::read(mount.path("o/hang.bin"));

    let took = started.elapsed();
    assert_errno(result, libc::EIO, "read from an origin that never answers");
    assert!(
        took < Duration::from_secs(10),
        "EIO took {took:?} with timeout = 1s"
    );
}

#[test]
fn server_error_with_nothing_cached_is_eio() {
    let origin = Origin::start();
    origin.route("/base/broken.bin", Route::status(503));
    let mount = Mount::single("o", origin.url("/base"));

    assert_errno(
        std::fs::read(mount.path("o/broken.bin")),
        libc::EIO,
        "read of a cold 503",
    );
}

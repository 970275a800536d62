//! HTTP caching rules at work: entries without freshness are revalidated with
//! their validators and a 304 costs no body; a changed body is seen; a failing
//! origin gets the stale body served; concurrent readers of a stale entry
//! share one conditional request; 404s are cached for `negative_ttl`.

use std::time::Duration;

use crate::common::*;

fn no_cache(body: &[u8], etag: &str) -> Route {
    Route::ok(body.to_vec())
        .header("Cache-Control", "no-cache")
        .header("ETag", etag)
}

#[test]
fn no_cache_entry_is_revalidated_with_its_etag() {
    let body = random_bytes(200_000, 91);
    let origin = Origin::start();
    origin.route("/base/f", no_cache(&body, "\"v1\""));
    let mount = Mount::single("o", origin.url("/base"));
    assert_same_bytes(&read(&mount.path("o/f")), &body, "first read");
    mount.wait_idle(Duration::from_secs(10));
    let before = origin.requests_to("/base/f").len();
    let bytes_before = mount.stat("bytes_from_origin");

    assert_same_bytes(&read(&mount.path("o/f")), &body, "second read");

    let requests = origin.requests_to("/base/f");
    let conditional: Vec<_> = requests[before..]
        .iter()
        .filter(|r| r.header("If-None-Match") == Some("\"v1\""))
        .collect();
    assert!(
        !conditional.is_empty(),
        "re-reading a no-cache entry sent no If-None-Match request:\n{}",
        origin.describe_requests()
    );
    assert_eq!(
        mount.stat("bytes_from_origin"),
        bytes_before,
        "a 304 fetched body bytes"
    );
    assert!(mount.stat("not_modified") >= 1, "{}", mount.stats());
    assert!(mount.stat("revalidations") >= 1, "{}", mount.stats());
}

#[test]
fn changed_body_is_seen_after_revalidation() {
    let v1 = random_bytes(100_000, 92);
    let v2 = random_bytes(120_000, 93);
    let origin = Origin::start();
    origin.route("/base/f", no_cache(&v1, "\"v1\""));
    let mount = Mount::single("o", origin.url("/base"));
    assert_same_bytes(&read(&mount.path("o/f")), &v1, "first version");
    mount.wait_idle(Duration::from_secs(10));

    origin.route("/base/f", no_cache(&v2, "\"v2\""));
    let got = read(&mount.path("o/f"));

    assert_same_bytes(&got, &v2, "after the origin changed the body");
    assert_eq!(
        std::fs::metadata(mount.path("o/f")).unwrap().len(),
        v2.len() as u64,
        "st_size after the change"
    );
}

#[test]
fn stale_body_is_served_when_the_origin_fails() {
    let body = random_bytes(100_000, 94);
    let origin = Origin::start();
    // Stale at once, but (unlike no-cache) allowed to stand in for a failing origin.
    let stale_at_once = Route::ok(body.clone())
        .header("Cache-Control", "max-age=0")
        .header("ETag", "\"v1\"");
    origin.route("/base/f", stale_at_once);
    let mount = Mount::single("o", origin.url("/base"));
    assert_same_bytes(&read(&mount.path("o/f")), &body, "first read");
    mount.wait_idle(Duration::from_secs(10));

    origin.route("/base/f", Route::status(503));
    let got = std::fs::read(mount.path("o/f"));

    let got = got.unwrap_or_else(|e| panic!("read with the origin answering 503: {e}"));
    assert_same_bytes(&got, &body, "stale body while the origin fails");
    assert!(mount.stat("stale_served") >= 1, "{}", mount.stats());
}

/// Reads `o/f` from 32 threads at once, the entry being stale, and expects
/// one origin request for all of them.
fn check_stale_readers_share_one_request(route: Route, body: &[u8], wait_until_stale: Duration) {
    const READERS: usize = 32;
    let origin = Origin::start();
    origin.route("/base/f", route);
    let mount = Mount::single("o", origin.url("/base"));
    assert_same_bytes(&read(&mount.path("o/f")), body, "first read");
    mount.wait_idle(Duration::from_secs(10));
    std::thread::sleep(wait_until_stale);
    let before = origin.requests_to("/base/f").len();
    let path = mount.path("o/f");
    for (i, data) in read_concurrently(&path, READERS).iter().enumerate() {
        assert_same_bytes(data, body, &format!("reader {i}"));
    }

    let after = origin.requests_to("/base/f").len();
    assert_eq!(
        after - before,
        1,
        "{READERS} concurrent readers of a stale entry:\n{}",
        origin.describe_requests()
    );
}

#[test]
fn concurrent_readers_of_a_no_cache_entry_share_one_revalidation() {
    let body = random_bytes(100_000, 95);
    // Slow answers keep every reader waiting on the same revalidation.
    let route = no_cache(&body, "\"v1\"").header_delay(Duration::from_millis(300));
    check_stale_readers_share_one_request(route, &body, Duration::ZERO);
}

#[test]
fn concurrent_readers_of_an_expired_entry_share_one_revalidation() {
    let body = random_bytes(100_000, 96);
    let route = Route::ok(body.clone())
        .header("Cache-Control", "max-age=1")
        .header("ETag", "\"v1\"")
        .header_delay(Duration::from_millis(300));
    check_stale_readers_share_one_request(route, &body, Duration::from_millis(1500));
}

#[test]
fn not_found_is_cached_for_negative_ttl() {
    let origin = Origin::start();
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).negative_ttl("30s"))
        .mount();
    let path = mount.path("o/missing");
    assert_errno(std::fs::metadata(&path), libc::ENOENT, "first stat");
    let requests = origin.total();
    assert!(requests >= 1);

    assert_errno(std::fs::metadata(&path), libc::ENOENT, "second stat");
    assert_errno(std::fs::File::open(&path), libc::ENOENT, "open");

    assert_eq!(
        origin.total(),
        requests,
        "a 404 within negative_ttl asked the origin again:\n{}",
        origin.describe_requests()
    );
}

#[test]
fn no_store_body_is_fetched_each_time() {
    let v1 = b"first".to_vec();
    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(v1.clone()).header("Cache-Control", "no-store"),
    );
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/f")), v1);
    mount.wait_idle(Duration::from_secs(10));

    origin.route(
        "/base/f",
        Route::ok(b"second".to_vec()).header("Cache-Control", "no-store"),
    );

    assert_eq!(
        read(&mount.path("o/f")),
        b"second",
        "a no-store body was reused"
    );
}

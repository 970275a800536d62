//! RFC 9111 in its corners, each against an origin that sends exactly the
//! headers in question: case-insensitive directives, temporary redirects,
//! 404s with and without freshness, responses that may never be served
//! stale, stale-if-error and stale-while-revalidate windows of exactly N
//! seconds, `Vary`, and numbers too large for their type.

use std::time::{Duration, Instant};

use crate::common::*;

fn mount(origin: &Origin) -> Mount {
    Mount::single("o", origin.url("/base"))
}

/// Reads `o/f` twice; returns how many requests the second read made.
fn requests_of_second_read(origin: &Origin, mount: &Mount, body: &[u8]) -> usize {
    assert_same_bytes(&read(&mount.path("o/f")), body, "first read");
    mount.wait_idle(Duration::from_secs(10));
    let before = origin.requests_to("/base/f").len();
    assert_same_bytes(&read(&mount.path("o/f")), body, "second read");
    origin.requests_to("/base/f").len() - before
}

#[test]
fn directive_names_are_case_insensitive() {
    let body = random_bytes(10_000, 901);
    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(body.clone()).header("Cache-Control", "Max-Age=60"),
    );
    let m = mount(&origin);
    assert_eq!(
        requests_of_second_read(&origin, &m, &body),
        0,
        "Max-Age=60 was not fresh"
    );
    drop(m);

    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(body.clone())
            .header("Cache-Control", "No-CaChE")
            .header("ETag", "\"v1\"")
            .header("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
    );
    let m = mount(&origin);
    assert!(
        requests_of_second_read(&origin, &m, &body) >= 1,
        "No-CaChE was served without asking"
    );
    let last = origin.requests_to("/base/f").pop().unwrap();
    assert_eq!(
        last.header("If-None-Match"),
        Some("\"v1\""),
        "{}",
        origin.describe_requests()
    );
    drop(m);

    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(body.clone()).header("Cache-Control", "NO-STORE, max-age=60"),
    );
    let m = mount(&origin);
    assert_same_bytes(&read(&m.path("o/f")), &body, "read");
    m.wait_idle(Duration::from_secs(10));
    assert_eq!(
        m.stat("blobs"),
        0,
        "a NO-STORE body was stored: {}",
        m.stats()
    );
}

#[test]
fn a_temporary_redirect_is_reused_only_with_explicit_freshness() {
    let body = random_bytes(10_000, 902);
    let origin = Origin::start();
    origin.route("/base/target", Route::fresh(body.clone()));
    origin.route("/base/r302", Route::redirect(302, "/base/target"));
    origin.route("/base/r307", Route::redirect(307, "/base/target"));
    origin.route(
        "/base/r302fresh",
        Route::redirect(302, "/base/target").header("Cache-Control", "max-age=60"),
    );
    let m = mount(&origin);
    for name in ["r302", "r307", "r302fresh"] {
        assert_same_bytes(&read(&m.path(&format!("o/{name}"))), &body, name);
    }
    m.wait_idle(Duration::from_secs(10));
    for (name, asks) in [("r302", true), ("r307", true), ("r302fresh", false)] {
        let path = format!("/base/{name}");
        let before = origin.requests_to(&path).len();
        assert_same_bytes(&read(&m.path(&format!("o/{name}"))), &body, name);
        let asked = origin.requests_to(&path).len() > before;
        assert_eq!(asked, asks, "{name}: {}", origin.describe_requests());
    }
}

#[test]
fn a_404_with_explicit_freshness_is_believed_for_exactly_that_long() {
    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::not_found().header("Cache-Control", "max-age=2"),
    );
    let m = mount(&origin);
    assert_errno(std::fs::read(m.path("o/f")), libc::ENOENT, "404");
    origin.route("/base/f", Route::fresh(b"published\n".to_vec()));
    assert_errno(
        std::fs::read(m.path("o/f")),
        libc::ENOENT,
        "404 while fresh",
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        read(&m.path("o/f")),
        b"published\n",
        "a stale 404 was believed"
    );
}

#[test]
fn a_404_without_freshness_is_remembered_for_five_seconds_at_most() {
    let origin = Origin::start();
    origin.route("/base/f", Route::not_found());
    let m = mount(&origin);
    assert_errno(std::fs::read(m.path("o/f")), libc::ENOENT, "404");
    origin.route("/base/f", Route::fresh(b"published\n".to_vec()));
    let started = Instant::now();
    let found = eventually(Duration::from_secs(8), || {
        std::fs::read(m.path("o/f")).is_ok_and(|bytes| bytes == b"published\n")
    });
    assert!(
        found,
        "still ENOENT 8 s after the origin started serving the file"
    );
    assert!(
        started.elapsed() < Duration::from_millis(5500),
        "the 404 was remembered for {:?}",
        started.elapsed()
    );
}

#[test]
fn no_cache_must_revalidate_and_proxy_revalidate_are_never_served_stale() {
    let body = random_bytes(10_000, 903);
    let origin = Origin::start();
    let names = ["no-cache", "must-revalidate", "proxy-revalidate"];
    for name in names {
        let cache_control = match name {
            "no-cache" => "no-cache, stale-if-error=3600".to_string(),
            other => format!("max-age=0, {other}, stale-if-error=3600"),
        };
        origin.route(
            &format!("/base/{name}"),
            Route::ok(body.clone())
                .header("Cache-Control", &cache_control)
                .header("ETag", "\"v1\""),
        );
    }
    let cache_dir = tempfile::tempdir().unwrap();
    let m = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .cache_dir(cache_dir.path())
        .mount();
    for name in names {
        assert_same_bytes(&read(&m.path(&format!("o/{name}"))), &body, name);
    }
    m.wait_idle(Duration::from_secs(10));
    for name in names {
        origin.route(&format!("/base/{name}"), Route::status(503));
        assert_errno(std::fs::read(m.path(&format!("o/{name}"))), libc::EIO, name);
    }
    drop(m);

    // An --offline mount serves them, as its documentation says.
    let offline = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .cache_dir(cache_dir.path())
        .arg("--offline")
        .mount();
    for name in names {
        assert_same_bytes(&read(&offline.path(&format!("o/{name}"))), &body, name);
    }
}

#[test]
fn stale_if_error_is_honoured_for_exactly_its_seconds() {
    let body = random_bytes(10_000, 904);
    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(body.clone())
            .header("Cache-Control", "max-age=0, stale-if-error=3")
            .header("ETag", "\"v1\""),
    );
    let m = mount(&origin);
    assert_same_bytes(&read(&m.path("o/f")), &body, "first read");
    m.wait_idle(Duration::from_secs(10));
    origin.route("/base/f", Route::status(503));
    assert_same_bytes(&read(&m.path("o/f")), &body, "within stale-if-error");
    std::thread::sleep(Duration::from_millis(4000));
    assert_errno(
        std::fs::read(m.path("o/f")),
        libc::EIO,
        "past stale-if-error",
    );
}

#[test]
fn stale_while_revalidate_is_honoured_for_exactly_its_seconds() {
    let body = random_bytes(10_000, 905);
    let origin = Origin::start();
    let slow = Duration::from_millis(1500);
    origin.route(
        "/base/f",
        Route::ok(body.clone())
            .header("Cache-Control", "max-age=1, stale-while-revalidate=3")
            .header("ETag", "\"v1\"")
            .header_delay(slow),
    );
    let m = mount(&origin);
    assert_same_bytes(&read(&m.path("o/f")), &body, "first read");
    m.wait_idle(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    assert_same_bytes(&read(&m.path("o/f")), &body, "within the window");
    assert!(
        started.elapsed() < slow,
        "a read within the window waited for the origin"
    );
    m.wait_idle(Duration::from_secs(10));
    // The background revalidation refreshed it: max-age=1 again, then the
    // window of 3 s. Past both, a read waits for the origin.
    std::thread::sleep(Duration::from_millis(4500));
    let started = Instant::now();
    assert_same_bytes(&read(&m.path("o/f")), &body, "past the window");
    assert!(
        started.elapsed() >= slow,
        "a read past the window did not wait"
    );
}

#[test]
fn a_vary_accept_encoding_response_revalidates_with_a_304() {
    let body = random_bytes(1024 * 1024, 906);
    let origin = Origin::start();
    origin.route(
        "/base/f",
        Route::ok(body.clone())
            .header("Cache-Control", "no-cache")
            .header("ETag", "\"v1\"")
            .header("Vary", "Accept-Encoding"),
    );
    let m = mount(&origin);
    assert_same_bytes(&read(&m.path("o/f")), &body, "first read");
    m.wait_idle(Duration::from_secs(10));
    let bytes_before = m.stat("bytes_from_origin");
    assert_same_bytes(&read(&m.path("o/f")), &body, "second read");
    let last = origin.requests_to("/base/f").pop().unwrap();
    assert_eq!(
        last.header("If-None-Match"),
        Some("\"v1\""),
        "{}",
        origin.describe_requests()
    );
    assert_eq!(last.header("Accept-Encoding"), Some("identity"));
    assert_eq!(
        m.stat("bytes_from_origin"),
        bytes_before,
        "the body was downloaded again"
    );
    assert!(m.stat("not_modified") >= 1, "{}", m.stats());
}

#[test]
fn numbers_too_large_for_their_type_are_very_large() {
    let body = random_bytes(10_000, 907);
    for (name, value, fresh) in [
        ("Cache-Control", "max-age=99999999999999999999", true),
        ("Expires", "Sat, 01 Jan 99999 00:00:00 GMT", true),
        ("Age", "18446744073709551615", false),
    ] {
        let origin = Origin::start();
        let mut route = Route::ok(body.clone())
            .header(name, value)
            .header("ETag", "\"v1\"");
        if name == "Age" {
            route = route.header("Cache-Control", "max-age=3600");
        }
        origin.route("/base/f", route);
        let m = mount(&origin);
        let asked = requests_of_second_read(&origin, &m, &body);
        assert_eq!(
            asked == 0,
            fresh,
            "{name}: {value}: {}",
            origin.describe_requests()
        );
        assert!(
            std::fs::read(m.path(".fetchfs/stats")).is_ok(),
            "{name}: the mount died"
        );
    }
}

//! The body that is read decides a file's size. A HEAD that disagrees with
//! the GET, a body whose length is unknown until its end, and a body that
//! changes between versions never yield a short or wrong file with success.

use std::io::Read;
use std::time::Duration;

use crate::common::*;

fn mount(origin: &Origin) -> Mount {
    Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .mount()
}

#[test]
fn a_head_shorter_than_the_body_does_not_truncate_it() {
    let origin = Origin::start();
    let body = random_bytes(3000, 601);
    origin.route("/base/f", Route::fresh(body.clone()).head_says_length(100));
    let m = mount(&origin);
    assert_eq!(
        std::fs::metadata(m.path("o/f")).unwrap().len(),
        100,
        "the HEAD's size"
    );
    assert_same_bytes(
        &read(&m.path("o/f")),
        &body,
        "read of a body longer than its HEAD",
    );
    m.wait_idle(Duration::from_secs(10));
    assert_eq!(std::fs::metadata(m.path("o/f")).unwrap().len(), 3000);
}

#[test]
fn a_head_longer_than_the_body_does_not_pad_it() {
    let origin = Origin::start();
    let body = random_bytes(100, 602);
    origin.route("/base/f", Route::fresh(body.clone()).head_says_length(3000));
    let m = mount(&origin);
    assert_eq!(
        std::fs::metadata(m.path("o/f")).unwrap().len(),
        3000,
        "the HEAD's size"
    );
    assert_same_bytes(
        &read(&m.path("o/f")),
        &body,
        "read of a body shorter than its HEAD",
    );
}

#[test]
fn a_body_without_length_behind_a_head_with_one_is_read_whole() {
    let origin = Origin::start();
    let body = random_bytes(300_000, 603);
    let route = Route::fresh(body.clone()).chunked().head_says_length(100);
    origin.route("/base/f", route);
    let m = mount(&origin);
    assert_same_bytes(
        &read(&m.path("o/f")),
        &body,
        "chunked body behind a short HEAD",
    );
}

#[test]
fn a_body_without_length_has_its_true_size_at_lookup() {
    let origin = Origin::start();
    let body = random_bytes(500_000, 604);
    origin.route(
        "/base/f",
        Route::fresh(body.clone())
            .chunked()
            .throttle(2 * 1024 * 1024),
    );
    let m = mount(&origin);
    // A reader already streaming it must not make a later stat see the
    // bytes received so far as the size.
    let mut first = std::fs::File::open(m.path("o/f")).unwrap();
    let mut head = vec![0u8; 1000];
    first.read_exact(&mut head).unwrap();
    assert_eq!(std::fs::metadata(m.path("o/f")).unwrap().len(), 500_000);
    assert_same_bytes(&read(&m.path("o/f")), &body, "second reader");
}

#[test]
fn readers_of_two_versions_of_a_body_each_get_their_own() {
    let origin = Origin::start();
    let v1 = random_bytes(2 * 1024 * 1024, 605);
    let v2 = random_bytes(2 * 1024 * 1024, 606);
    let unstored = |body: &Vec<u8>, etag: &str| {
        Route::ok(body.clone())
            .header("Cache-Control", "no-store")
            .header("ETag", etag)
    };
    origin.route("/base/f", unstored(&v1, "\"v1\""));
    let m = mount(&origin);
    // The first reader is half-way through v1 when the origin moves to v2
    // and a second reader reads the whole file.
    let mut first = std::fs::File::open(m.path("o/f")).unwrap();
    let mut first_bytes = vec![0u8; v1.len() / 2];
    first.read_exact(&mut first_bytes).unwrap();
    m.wait_idle(Duration::from_secs(10));
    origin.route("/base/f", unstored(&v2, "\"v2\""));
    let second = std::fs::read(m.path("o/f")).expect("second version");
    first.read_to_end(&mut first_bytes).unwrap();
    assert_same_bytes(&second, &v2, "the reader of the new version");
    assert_same_bytes(&first_bytes, &v1, "the reader of the old version");
}

/// Review finding 2, its warm path: a stored `no-cache` body whose
/// revalidation brings a new body without Content-Length. `stat` and every
/// read must see the new body's true size, not the old one nor the bytes
/// received so far.
#[test]
fn a_revalidation_to_a_body_without_length_has_its_true_size() {
    let origin = Origin::start();
    let version = |body: &Vec<u8>, etag: &str| {
        Route::ok(body.clone())
            .header("Cache-Control", "no-cache")
            .header("ETag", etag)
    };
    let small = random_bytes(1000, 607);
    let large = random_bytes(700_000, 608);
    origin.route("/base/f", version(&small, "\"v1\""));
    let m = mount(&origin);
    assert_same_bytes(&read(&m.path("o/f")), &small, "v1");
    m.wait_idle(Duration::from_secs(10));
    // Past the 200 ms in which requests share a validation's outcome.
    let past_collapsing = || std::thread::sleep(Duration::from_millis(300));
    past_collapsing();

    origin.route(
        "/base/f",
        version(&large, "\"v2\"")
            .chunked()
            .throttle(2 * 1024 * 1024),
    );
    assert_eq!(
        std::fs::metadata(m.path("o/f")).unwrap().len(),
        large.len() as u64,
        "st_size after the revalidation"
    );
    assert_same_bytes(&read(&m.path("o/f")), &large, "v2, larger");
    m.wait_idle(Duration::from_secs(10));
    past_collapsing();

    // And back to a smaller body: no stale size pads or cuts it.
    origin.route("/base/f", version(&small, "\"v3\"").chunked());
    assert_same_bytes(&read(&m.path("o/f")), &small, "v3, smaller");
    assert_eq!(
        std::fs::metadata(m.path("o/f")).unwrap().len(),
        small.len() as u64
    );
}

//! Reading files through the mount: cold reads are byte-exact whatever the
//! size, `cp` and `sha256sum` work (`clients` runs more programs), and a
//! cached fresh file is served without asking the origin again.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Serves `body` fresh at `/base/NAME`, mounts origin `o` and checks a cold
/// read of `MNT/o/NAME` by SHA-256.
fn check_cold_read(name: &str, body: Vec<u8>) {
    let origin = Origin::start();
    origin.route(&format!("/base/{name}"), Route::fresh(body.clone()));
    let mount = Mount::single("o", origin.url("/base"));
    let path = mount.path(&format!("o/{name}"));

    let got = read(&path);

    assert_eq!(got.len(), body.len(), "length of {name}");
    assert_eq!(sha256_hex(&got), sha256_hex(&body), "sha256 of {name}");
    assert_eq!(
        std::fs::metadata(&path).expect("stat after read").len(),
        body.len() as u64,
        "st_size of {name} after reading it"
    );
}

#[test]
fn cold_read_of_empty_body() {
    check_cold_read("empty", Vec::new());
}

#[test]
fn cold_read_of_one_byte() {
    check_cold_read("one", vec![0x5a]);
}

#[test]
fn cold_read_of_one_mib() {
    check_cold_read("mib.bin", random_bytes(1 << 20, 11));
}

#[test]
fn cold_read_of_200_mib() {
    let body = random_bytes(200 << 20, 12);
    let expected = sha256sum_bytes(&body);
    let origin = Origin::start();
    origin.route("/base/big.bin", Route::fresh(body));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .watchdog(Duration::from_secs(170))
        .mount();

    let got = sha256sum_file(&mount.path("o/big.bin"));

    assert_eq!(got, expected, "sha256 of a 200 MiB body read cold");
    assert_eq!(
        std::fs::metadata(mount.path("o/big.bin")).unwrap().len(),
        200 << 20
    );
}

#[test]
fn cp_copies_the_exact_body() {
    let body = random_bytes(3 << 20, 13);
    let origin = Origin::start();
    origin.route("/base/pkg-1.0.bin", Route::fresh(body.clone()));
    let mount = Mount::single("o", origin.url("/base"));
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("copy.bin");

    let status = Command::new("cp")
        .arg(mount.path("o/pkg-1.0.bin"))
        .arg(&dest)
        .status()
        .expect("run cp");

    assert!(status.success(), "cp failed: {status}");
    assert_same_bytes(&read(&dest), &body, "cp'd file");
}

#[test]
fn second_read_makes_no_origin_request() {
    let body = random_bytes(512 * 1024, 14);
    let origin = Origin::start();
    origin.route("/base/f.bin", Route::fresh(body.clone()));
    let mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/f.bin");

    assert_same_bytes(&read(&path), &body, "first read");
    mount.wait_idle(Duration::from_secs(10));
    let requests_after_first = origin.total();
    let after_first = mount.stats();
    assert_same_bytes(&read(&path), &body, "second read");
    let after_second = mount.stats();

    assert_eq!(
        origin.total(),
        requests_after_first,
        "the second read of a fresh cached file asked the origin:\n{}",
        origin.describe_requests()
    );
    let field = |stats: &serde_json::Value, name: &str| {
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("stats.{name} missing or not an integer: {stats}"))
    };
    assert!(
        field(&after_first, "misses") >= 1,
        "first read is a miss: {after_first}"
    );
    assert_eq!(
        field(&after_first, "bytes_from_origin"),
        body.len() as u64,
        "bytes_from_origin after one cold read: {after_first}"
    );
    assert_eq!(
        field(&after_second, "misses"),
        field(&after_first, "misses"),
        "the second read counted a miss: {after_first} -> {after_second}"
    );
    assert!(
        field(&after_second, "hits") > field(&after_first, "hits"),
        "the second read did not count a hit: {after_first} -> {after_second}"
    );
    assert_eq!(
        field(&after_second, "bytes_from_origin"),
        field(&after_first, "bytes_from_origin"),
        "the second read fetched bytes: {after_first} -> {after_second}"
    );
}

#[test]
fn chunked_body_has_true_size_and_bytes() {
    let body = random_bytes(300_001, 15);
    let origin = Origin::start();
    origin.route("/base/stream", Route::fresh(body.clone()).chunked());
    let mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/stream");

    let size = std::fs::metadata(&path).expect("stat").len();

    assert_eq!(
        size,
        body.len() as u64,
        "st_size of a chunked body before reading it"
    );
    assert_same_bytes(&read(&path), &body, "chunked body");
}

#[test]
fn body_is_stored_as_served_without_decoding() {
    let plain = random_bytes(64 * 1024, 16)
        .iter()
        .map(|b| b'a' + b % 4)
        .collect::<Vec<u8>>();
    let scratch = tempfile::tempdir().unwrap();
    let plain_path = scratch.path().join("data.txt");
    std::fs::write(&plain_path, &plain).unwrap();
    let status = Command::new("gzip")
        .arg("-k")
        .arg(&plain_path)
        .status()
        .expect("gzip");
    assert!(status.success());
    let gzipped = read(&scratch.path().join("data.txt.gz"));
    let origin = Origin::start();
    origin.route(
        "/base/data.txt.gz",
        Route::fresh(gzipped.clone()).header("Content-Encoding", "gzip"),
    );
    let mount = Mount::single("o", origin.url("/base"));

    let got = read(&mount.path("o/data.txt.gz"));

    assert_same_bytes(&got, &gzipped, "a Content-Encoding: gzip body");
    for request in origin.requests_to("/base/data.txt.gz") {
        if let Some(accept) = request.header("Accept-Encoding") {
            assert!(
                accept.trim().eq_ignore_ascii_case("identity"),
                "{} asked for Accept-Encoding: {accept}",
                request.method
            );
        }
    }
}

#[test]
fn configured_request_headers_are_sent() {
    let origin = Origin::start();
    origin.route("/base/private.bin", Route::fresh(b"private".to_vec()));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).header("Authorization", "Bearer t0ken"))
        .mount();

    assert_eq!(read(&mount.path("o/private.bin")), b"private");

    let requests = origin.requests_to("/base/private.bin");
    assert!(!requests.is_empty());
    for request in requests {
        assert_eq!(
            request.header("Authorization"),
            Some("Bearer t0ken"),
            "{} {} without the configured header",
            request.method,
            request.target
        );
    }
}

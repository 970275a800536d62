//! Paths map to URLs and nowhere else: names are percent-encoded as single
//! path segments, `.` and `..` never leave the origin's base path whatever
//! their encoding, and other hosts are unreachable without `--any-host`.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::common::origin::route_key;
use crate::common::*;

const SECRET: &[u8] = b"top secret bytes outside the base path\n";

/// Origin `o` (listing auto) and `n` (listing none), both at `/base`, on a
/// server that also serves `/secret` and `/basesecret`.
fn traversal_setup() -> (Origin, Mount) {
    let origin = Origin::start();
    origin.route("/secret", Route::fresh(SECRET.to_vec()));
    origin.route("/basesecret", Route::fresh(SECRET.to_vec()));
    origin.route("/base/inside", Route::fresh(b"inside".to_vec()));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .origin(OriginConfig::new("n", origin.url("/base")).listing("none"))
        .mount();
    (origin, mount)
}

/// Fails if any request the origin saw resolves outside `/base/`.
fn assert_no_request_left_base(origin: &Origin) {
    for request in origin.requests() {
        let resolved = route_key(&request.target);
        assert!(
            resolved == "/base" || resolved.starts_with("/base/"),
            "{} {} resolves to {resolved}, outside the origin's base path /base",
            request.method,
            request.target
        );
    }
}

/// Reads, stats and lists `path`, failing if any of them yields the secret.
fn probe(path: &Path) {
    if let Ok(data) = std::fs::read(path) {
        assert_ne!(data, SECRET, "{} returned the secret", path.display());
    }
    let _ = std::fs::metadata(path);
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if let Ok(data) = std::fs::read(entry.path()) {
                assert_ne!(
                    data,
                    SECRET,
                    "{} returned the secret",
                    entry.path().display()
                );
            }
        }
    }
}

#[test]
fn encoded_dot_dot_names_stay_inside_the_base() {
    let (origin, mount) = traversal_setup();
    let names = [
        "..%2fsecret",
        "..%2Fsecret",
        "%2e%2e%2fsecret",
        "%2E%2E%2Fsecret",
        "..%2f..%2fsecret",
        "..%252fsecret",
        "..\\secret",
        "..%5csecret",
        "%2e%2e",
        "%2e%2e/secret",
        "%2E%2E/secret",
        ".%2e/secret",
        "%2e./secret",
        "%2e/..%2fsecret",
        "x/..%2f..%2fsecret",
        "x/%2e%2e/%2e%2e/secret",
        "%2e%2e/%2e%2e/%2e%2e/secret",
    ];
    for root in ["o", "n"] {
        for name in names {
            probe(&mount.path(&format!("{root}/{name}")));
        }
    }

    assert_no_request_left_base(&origin);
    assert_eq!(
        read(&mount.path("o/inside")),
        b"inside",
        "control: the base itself works"
    );
}

#[test]
fn dot_dot_through_openat_stays_inside_the_mount() {
    let (origin, mount) = traversal_setup();
    let origin_dir = std::fs::File::open(mount.path("o")).expect("open MNT/o");
    let dirfd = std::os::fd::AsRawFd::as_raw_fd(&origin_dir);

    for name in [
        "..",
        "../secret",
        "../..",
        "./../secret",
        "../o/../secret",
        "../n/../../secret",
    ] {
        let cname = std::ffi::CString::new(name).unwrap();
        // SAFETY: dirfd is open for the whole loop and cname is NUL-terminated.
        let fd = unsafe { libc::openat(dirfd, cname.as_ptr(), libc::O_RDONLY) };
        if fd < 0 {
            continue;
        }
        // SAFETY: openat just returned this descriptor and nothing else owns it.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut data = Vec::new();
        if file.read_to_end(&mut data).is_ok() {
            assert_ne!(data, SECRET, "openat(MNT/o, {name:?}) returned the secret");
        }
    }
    let above = std::fs::canonicalize(mount.path("o/..")).unwrap();
    assert_eq!(above, mount.mountpoint(), "MNT/o/.. is the mount root");
    probe(&mount.path("o/../secret"));
    probe(&mount.path("n/../secret"));

    assert_no_request_left_base(&origin);
}

#[test]
fn reserved_characters_are_encoded_as_one_segment() {
    let origin = Origin::start();
    let names = [
        "a b.txt",
        "q?x=1",
        "hash#frag",
        "pct%41",
        "plus+semi;colon:eq=",
        "amp&quote'\"",
        "unicode-ü-雪",
        "dots...",
        ".hidden",
    ];
    for (i, name) in names.iter().enumerate() {
        origin.route(
            &format!("/base/{name}"),
            Route::fresh(format!("body {i}").into_bytes()),
        );
    }
    // Decoys a mis-encoding daemon would reach instead.
    origin.route("/base/q", Route::fresh(b"decoy q".to_vec()));
    origin.route("/base/hash", Route::fresh(b"decoy hash".to_vec()));
    origin.route("/base/pctA", Route::fresh(b"decoy pct".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));

    for (i, name) in names.iter().enumerate() {
        let path = mount.path(&format!("o/{name}"));
        let got = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "read MNT/o/{name}: {e}; requests so far:\n{}",
                origin.describe_requests()
            )
        });
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("body {i}"),
            "MNT/o/{name} reached the wrong URL"
        );
    }
    for request in origin.requests() {
        assert!(
            !request.target.contains('?') && !request.target.contains('#'),
            "request-target {} carries a query or fragment",
            request.target
        );
    }
}

#[test]
fn other_hosts_are_unreachable_without_any_host() {
    let origin = Origin::start();
    origin.route("/secret", Route::fresh(SECRET.to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    let authority = format!("127.0.0.1:{}", origin.port());

    for scheme in ["http", "https"] {
        let path = mount.path(&format!("{scheme}/{authority}/secret"));
        assert_errno(
            std::fs::read(&path),
            libc::ENOENT,
            &format!("read {}", path.display()),
        );
    }

    assert_eq!(
        origin.total(),
        0,
        "requests made:\n{}",
        origin.describe_requests()
    );
}

#[test]
fn any_host_reaches_a_url_by_host_and_path() {
    let origin = Origin::start();
    origin.route("/any.txt", Route::fresh(b"anywhere".to_vec()));
    let mount = Mount::builder().arg("--any-host").mount();
    let authority = format!("127.0.0.1:{}", origin.port());

    let got = read(&mount.path(&format!("http/{authority}/any.txt")));

    assert_eq!(got, b"anywhere");
    assert_eq!(origin.gets("/any.txt"), 1);
}

#[test]
fn root_lists_the_configured_origins() {
    let origin = Origin::start();
    let mount = Mount::builder()
        .origin(OriginConfig::new("alpha", origin.url("/a")))
        .origin(OriginConfig::new("beta", origin.url("/b")).listing("none"))
        .mount();

    let mut names: Vec<String> = std::fs::read_dir(mount.mountpoint())
        .expect("read_dir MNT")
        .map(|e| e.expect("entry").file_name().as_bytes().to_vec())
        .map(|n| String::from_utf8(n).unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();

    assert_eq!(names, ["alpha", "beta"]);
    assert!(std::fs::metadata(mount.path("alpha")).unwrap().is_dir());
}

//! Extended attributes: `user.fetchfs.*` describe where a file comes from and
//! where its entry stands, without touching the origin.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

fn listxattr(path: &Path) -> Vec<String> {
    let cpath = c_path(path);
    let mut buf = vec![0u8; 4096];
    // SAFETY: the path is NUL-terminated and buf is valid for buf.len() bytes.
    let n = unsafe { libc::listxattr(cpath.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(n as usize);
    buf.split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect()
}

#[test]
fn xattrs_describe_a_cached_file() {
    let origin = Origin::start();
    origin.route(
        "/base/f.txt",
        Route::fresh(b"hello".to_vec())
            .header("Last-Modified", "Tue, 25 Nov 2025 00:57:00 GMT")
            .header("ETag", "\"v1\""),
    );
    let mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/f.txt");
    assert_eq!(read(&path), b"hello");
    mount.wait_idle(Duration::from_secs(10));
    let before = origin.total();

    let text =
        |name: &str| String::from_utf8_lossy(&getxattr(&path, name).expect(name)).into_owned();
    assert_eq!(text("user.fetchfs.url"), origin.url("/base/f.txt"));
    assert_eq!(text("user.fetchfs.state"), "fresh");
    // blake3("hello")
    assert_eq!(
        text("user.fetchfs.blake3"),
        "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
    );
    assert_eq!(text("user.fetchfs.etag"), "\"v1\"");
    assert_eq!(
        text("user.fetchfs.last_modified"),
        "Tue, 25 Nov 2025 00:57:00 GMT"
    );
    let names = listxattr(&path);
    for name in [
        "user.fetchfs.url",
        "user.fetchfs.blake3",
        "user.fetchfs.etag",
        "user.fetchfs.last_modified",
        "user.fetchfs.state",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "listxattr lacks {name}: {names:?}"
        );
    }
    assert_errno(
        getxattr(&path, "user.fetchfs.nope"),
        libc::ENODATA,
        "unknown attribute",
    );
    assert_eq!(
        origin.total(),
        before,
        "reading attributes asked the origin"
    );
}

#[test]
fn xattrs_of_an_uncached_file_have_no_hash() {
    let origin = Origin::start();
    origin.route("/base/g", Route::fresh(b"not read".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/g");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 8);

    let state = getxattr(&path, "user.fetchfs.state").expect("state");
    assert_eq!(String::from_utf8_lossy(&state), "remote");
    assert_errno(
        getxattr(&path, "user.fetchfs.blake3"),
        libc::ENODATA,
        "blake3 of an uncached file",
    );
    assert_eq!(origin.gets("/base/g"), 0, "attributes downloaded the body");
}

//! The control folder and extended attributes: `invalidate` makes the next
//! lookup revalidate, `evict` drops entries, a malformed pattern is EINVAL and
//! changes nothing.

use std::io::Write;
use std::time::Duration;

use crate::common::*;

#[test]
fn invalidate_makes_the_next_read_revalidate() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"v1".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/f")), b"v1");
    mount.wait_idle(Duration::from_secs(10));
    let before = origin.requests_to("/base/f").len();

    mount
        .control("invalidate", "/o/f\n")
        .expect("write .fetchfs/invalidate");
    origin.route("/base/f", Route::fresh(b"v2 changed".to_vec()));
    let got = read(&mount.path("o/f"));

    assert!(
        origin.requests_to("/base/f").len() > before,
        "no request after invalidating a fresh entry"
    );
    assert_eq!(got, b"v2 changed");
}

#[test]
fn evict_drops_the_cached_body() {
    let body = random_bytes(100_000, 101);
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(body.clone()));
    let mount = Mount::single("o", origin.url("/base"));
    assert_same_bytes(&read(&mount.path("o/f")), &body, "first read");
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(mount.stat("blobs"), 1);
    let gets_before = origin.gets("/base/f");

    mount
        .control("evict", "/o/*\n")
        .expect("write .fetchfs/evict");

    assert!(
        eventually(Duration::from_secs(3), || mount.stat("blobs") == 0),
        "blob still stored after evict: {}",
        mount.stats()
    );
    assert_same_bytes(&read(&mount.path("o/f")), &body, "read after evict");
    assert!(
        origin.gets("/base/f") > gets_before,
        "no GET after evicting"
    );
}

#[test]
fn malformed_pattern_is_einval_and_changes_nothing() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"v1".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/f")), b"v1");
    mount.wait_idle(Duration::from_secs(10));
    let before = origin.total();

    // A valid line and a bad glob in one write: all or nothing.
    let result = mount.control("evict", "/o/f\n/o/[unclosed\n");

    assert_errno(result, libc::EINVAL, "evict with a malformed glob");
    assert_eq!(read(&mount.path("o/f")), b"v1");
    assert_eq!(
        origin.total(),
        before,
        "the valid line of a rejected write was applied"
    );
    assert_eq!(mount.stat("entries"), 1);
}

/// Reads `o/f`, changes its body at the origin, writes `pattern` to
/// `invalidate`, and checks the next read shows the new body.
fn check_invalidate_by(pattern: impl Fn(&Origin) -> String) {
    let origin = Origin::start();
    origin.route("/base/dir", Route::redirect(301, "/base/dir/"));
    origin.route("/base/dir/f.whl", Route::fresh(b"v1".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/dir/f.whl")), b"v1");
    mount.wait_idle(Duration::from_secs(10));
    origin.route("/base/dir/f.whl", Route::fresh(b"v2".to_vec()));
    assert_eq!(
        read(&mount.path("o/dir/f.whl")),
        b"v1",
        "fresh entry served from cache"
    );

    mount
        .control("invalidate", &format!("{}\n", pattern(&origin)))
        .expect("invalidate");

    assert_eq!(read(&mount.path("o/dir/f.whl")), b"v2");
}

#[test]
fn invalidate_by_url() {
    check_invalidate_by(|origin| origin.url("/base/dir/f.whl"));
}

#[test]
fn invalidate_by_glob() {
    check_invalidate_by(|_| "/o/**/*.whl".to_string());
}

#[test]
fn invalidate_by_directory() {
    check_invalidate_by(|_| "/o/dir/".to_string());
}

#[test]
fn every_malformed_write_is_einval() {
    let origin = Origin::start();
    let mount = Mount::single("o", origin.url("/base"));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "unknown origin URL",
            b"http://elsewhere.invalid/x\n".to_vec(),
        ),
        ("relative path", b"o/f\n".to_vec()),
        ("dot-dot", b"/o/../f\n".to_vec()),
        ("not UTF-8", b"/o/\xff\xfe\n".to_vec()),
        (
            "over 8 KiB",
            format!("/o/{}\n", "a".repeat(9000)).into_bytes(),
        ),
        ("only comments", b"# nothing\n\n".to_vec()),
    ];
    for (what, input) in cases {
        for file in ["invalidate", "evict", "prefetch"] {
            let mut control = std::fs::OpenOptions::new()
                .write(true)
                .open(mount.path(&format!(".fetchfs/{file}")))
                .expect("open control file");
            assert_errno(
                control.write_all(&input),
                libc::EINVAL,
                &format!("{file}: {what}"),
            );
        }
    }
    assert_eq!(origin.total(), 0, "a rejected write reached the origin");
}

#[test]
fn prefetch_fetches_in_the_background() {
    let body = random_bytes(300_000, 102);
    let origin = Origin::start();
    origin.route("/base/a/big.bin", Route::fresh(body.clone()));
    origin.route("/base/b.txt", Route::fresh(b"b".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));

    let url = origin.url("/base/b.txt");
    mount
        .control("prefetch", &format!("/o/a/big.bin\n{url}\n"))
        .expect("prefetch");

    assert!(
        eventually(Duration::from_secs(10), || mount.stat("entries") == 2),
        "prefetch stored nothing: {}",
        mount.stats()
    );
    let gets = origin.gets("/base/a/big.bin");
    assert_eq!(
        gets,
        1,
        "prefetch of one file: {}",
        origin.describe_requests()
    );
    assert_same_bytes(&read(&mount.path("o/a/big.bin")), &body, "prefetched body");
    assert_eq!(
        origin.gets("/base/a/big.bin"),
        1,
        "a prefetched body was fetched again"
    );
}

#[test]
fn cli_wrappers_invalidate_evict_and_prefetch() {
    let body = random_bytes(200_000, 103);
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"v1".to_vec()));
    origin.route("/base/big.bin", Route::fresh(body.clone()));
    let mount = Mount::single("o", origin.url("/base"));
    let mnt = mount.mountpoint().to_str().expect("UTF-8 mountpoint");
    let fetchfs = |args: &[&str]| run_fetchfs(args, Duration::from_secs(30));
    assert_eq!(read(&mount.path("o/f")), b"v1");
    mount.wait_idle(Duration::from_secs(10));
    origin.route("/base/f", Route::fresh(b"v2".to_vec()));

    let out = fetchfs(&["invalidate", mnt, "/o/f"]);
    assert!(
        out.status.success(),
        "invalidate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&mount.path("o/f")), b"v2");

    let out = fetchfs(&["evict", mnt, "/o/f", "/o/["]);
    assert!(!out.status.success(), "a malformed pattern was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rejected") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(
        mount.stat("entries"),
        1,
        "a rejected evict changed something"
    );

    let out = fetchfs(&["prefetch", mnt, "o/big.bin"]);
    assert!(
        out.status.success(),
        "prefetch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fetched"),
        "no plain progress line"
    );
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(mount.stat("entries"), 2);
    let gets = origin.gets("/base/big.bin");
    assert_same_bytes(&read(&mount.path("o/big.bin")), &body, "prefetched body");
    assert_eq!(
        origin.gets("/base/big.bin"),
        gets,
        "prefetched body fetched again"
    );
}

#[test]
fn invalidate_right_after_a_revalidation_still_asks_again() {
    let origin = Origin::start();
    let version = |body: &str, etag: &str| {
        Route::ok(body.as_bytes().to_vec())
            .header("Cache-Control", "no-cache")
            .header("ETag", etag)
    };
    origin.route("/base/f", version("v1", "\"v1\""));
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/f")), b"v1");
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(read(&mount.path("o/f")), b"v1", "revalidated: 304");

    // Within the collapsing window of that revalidation.
    origin.route("/base/f", version("v2", "\"v2\""));
    mount.control("invalidate", "/o/f\n").expect("invalidate");

    assert_eq!(read(&mount.path("o/f")), b"v2");
}

/// On a disk 100% full, `evict` still frees space (the index writes into
/// the cache's reserve). A write that fails because the cache cannot store
/// its change is not the writer's fault: ENOSPC (or EIO), never EINVAL, and
/// the events say why.
#[test]
fn a_command_on_a_full_disk_is_enospc_not_einval_and_says_why() {
    let origin = Origin::start();
    let disk = SmallDisk::mount(64);
    let body = |i: u64| random_bytes(4096, 700 + i);
    for i in 0..200 {
        origin.route(&format!("/base/d/f{i}"), Route::fresh(body(i)));
    }
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .cache_dir(&disk.path().join("cache"))
        .mount();
    for i in 0..200 {
        read(&mount.path(&format!("o/d/f{i}")));
    }
    mount.wait_idle(Duration::from_secs(10));
    let filler = disk.fill();

    // Each write rewrites 200 records; the index's log soon needs room the
    // disk no longer has.
    let error = (0..500)
        .find_map(|_| mount.control("invalidate", "/o/d/\n").err())
        .expect("500 invalidations on a full disk all succeeded");
    assert_ne!(
        error.raw_os_error(),
        Some(libc::EINVAL),
        "a storage failure answered EINVAL"
    );
    assert!(
        matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EIO)),
        "{error}"
    );
    let tail = mount.events_tail();
    assert!(
        tail.contains("\"control\":\"invalidate\"") && tail.contains("No space left"),
        "the events do not say what failed: {tail}"
    );

    // The index stopped writing, and the disk is still 100% full: `evict`
    // still frees space, through the reserve the cache keeps.
    let bytes_before = mount.stat("cache_bytes");
    let evicted = eventually(Duration::from_secs(20), || {
        mount.control("evict", "/o/d/f1*\n").is_ok()
    });
    assert!(evicted, "evict never worked on the full disk");
    assert!(
        mount.stat("cache_bytes") < bytes_before,
        "evict freed nothing: {}",
        mount.stats()
    );

    // With room again, the rest applies: nothing was lost or wedged.
    std::fs::remove_file(filler).unwrap();
    let applied = eventually(Duration::from_secs(20), || {
        mount.control("evict", "/o/d/\n").is_ok()
    });
    assert!(applied, "the index never recovered from the full disk");
    assert_eq!(mount.stat("entries"), 0, "{}", mount.stats());
    for i in [0, 150, 199] {
        assert_eq!(read(&mount.path(&format!("o/d/f{i}"))), body(i));
    }
    drop(mount);
    drop(disk);
}

/// Review finding 23: stdio writers flush mid-line; the first half of a line
/// must not apply as a pattern of its own (`/o/d/` would evict the folder).
#[test]
fn a_line_cut_across_writes_applies_whole_and_a_last_line_at_close() {
    let origin = Origin::start();
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(1000, 900 + i)).collect();
    for (name, body) in ["x", "y", "z"].iter().zip(&bodies) {
        origin.route(&format!("/base/d/{name}"), Route::fresh(body.clone()));
    }
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .mount();
    for name in ["x", "y", "z"] {
        read(&mount.path(&format!("o/d/{name}")));
    }
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(mount.stat("entries"), 3);
    let mut control = std::fs::OpenOptions::new()
        .write(true)
        .open(mount.path(".fetchfs/evict"))
        .unwrap();
    control.write_all(b"/o/d/").unwrap();
    assert_eq!(mount.stat("entries"), 3, "half a line was applied");
    control.write_all(b"x\n/o/d/y").unwrap();
    assert_eq!(mount.stat("entries"), 2, "{}", mount.stats());
    drop(control);
    assert_eq!(
        mount.stat("entries"),
        1,
        "the last line, without a newline, did not apply at close: {}",
        mount.stats()
    );
}

/// Review finding 22: "I just published it and invalidated, and it is still
/// ENOENT": `invalidate` clears a remembered 404.
#[test]
fn invalidate_clears_a_remembered_404() {
    let origin = Origin::start();
    origin.route("/base/new.bin", Route::not_found());
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).negative_ttl("60s"))
        .mount();
    assert_errno(std::fs::read(mount.path("o/new.bin")), libc::ENOENT, "404");
    origin.route("/base/new.bin", Route::fresh(b"published\n".to_vec()));
    assert_errno(
        std::fs::read(mount.path("o/new.bin")),
        libc::ENOENT,
        "remembered 404",
    );
    mount
        .control("invalidate", "/o/new.bin\n")
        .expect("invalidate");
    assert_eq!(read(&mount.path("o/new.bin")), b"published\n");
}

/// The 8 KiB limit is per line: a pattern file of any length written in one
/// go (`cat list > .fetchfs/evict`) applies every line.
#[test]
fn a_long_pattern_file_written_at_once_applies_every_line() {
    let origin = Origin::start();
    for i in 0..300 {
        origin.route(&format!("/base/d/f{i}"), Route::fresh(vec![b'x'; 100]));
    }
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .mount();
    for i in 0..300 {
        read(&mount.path(&format!("o/d/f{i}")));
    }
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(mount.stat("entries"), 300);

    // 300 files named many times over: about 170 KB in one write(2).
    let list: String = (0..10_000)
        .map(|i| format!("/o/d/f{}\n", i % 300))
        .collect();
    assert!(list.len() > 64 * 1024);
    std::fs::write(mount.path(".fetchfs/evict"), &list).expect("a long pattern file");
    assert_eq!(mount.stat("entries"), 0, "{}", mount.stats());

    // A single line over the limit is still refused, and changes nothing.
    read(&mount.path("o/d/f1"));
    mount.wait_idle(Duration::from_secs(10));
    let long = format!("/o/d/f1\n/o/{}\n", "a".repeat(9000));
    assert_errno(
        mount.control("evict", &long),
        libc::EINVAL,
        "a 9,000-byte line",
    );
    assert_eq!(mount.stat("entries"), 1);
}

/// A name that is not UTF-8 (`%FF` in its URL) is flushed from the kernel
/// like any other when a pattern matches it (review finding 24).
#[test]
fn invalidate_reaches_a_name_that_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    // The test origin keys routes by the lossy decoding of the request path.
    const ROUTE: &str = "/base/d/\u{FFFD}.bin";
    let origin = Origin::start();
    origin.route(ROUTE, Route::fresh(b"v1".to_vec()));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .mount();
    let path = mount
        .path("o/d")
        .join(std::ffi::OsStr::from_bytes(b"\xff.bin"));
    assert_eq!(read(&path), b"v1");
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(read(&path), b"v1", "served from the cache");

    origin.route(ROUTE, Route::fresh(b"v2".to_vec()));
    mount.control("invalidate", "/o/d/*.bin\n").unwrap();
    assert_eq!(read(&path), b"v2", "the kernel kept the old entry");

    origin.route(ROUTE, Route::fresh(b"v3".to_vec()));
    mount
        .control("evict", &format!("{}\n", origin.url("/base/d/%FF.bin")))
        .unwrap();
    assert_eq!(read(&path), b"v3", "the kernel kept the evicted entry");
}

/// Review finding 25: `access(W_OK)` on a command file answered EROFS, so
/// `test -w .fetchfs/evict` in a script said it could not be written.
#[test]
fn the_command_files_are_writable_to_access_and_files_are_not() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"body".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    read(&mount.path("o/f"));
    let writable = |rel: &str| {
        let path = c_path(&mount.path(rel));
        check_libc(unsafe { libc::access(path.as_ptr(), libc::W_OK) })
    };
    for file in ["invalidate", "evict", "prefetch"] {
        writable(&format!(".fetchfs/{file}"))
            .unwrap_or_else(|e| panic!("access(W_OK) on .fetchfs/{file}: {e}"));
    }
    assert_errno(writable(".fetchfs/stats"), libc::EROFS, "stats");
    assert_errno(writable("o/f"), libc::EROFS, "a file of the origin");
}

/// `fetchfs prefetch mnt mnt/o/f` from the mountpoint's parent: a relative
/// mountpoint and a path through the mount from the current directory.
#[test]
fn prefetch_takes_paths_relative_to_the_current_directory() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"relative".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    let parent = mount.mountpoint().parent().unwrap();
    let name = mount.mountpoint().file_name().unwrap().to_str().unwrap();
    let out = run_with_timeout(
        std::process::Command::new(mount::FETCHFS_BIN)
            .current_dir(parent)
            .args(["prefetch", name, &format!("{name}/o/f")]),
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "prefetch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(mount.stat("entries"), 1);
}

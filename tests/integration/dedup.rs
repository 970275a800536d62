//! Content addressing as users see it: once stored, every path whose body is
//! identical shows the same inode, `st_nlink` counts those paths, and the
//! inode number survives a remount; a link made or dropped without a lookup
//! (prefetch, evict) reaches `st_nlink` at once.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::common::*;

const BODY_BYTES: usize = 256 * 1024;

fn ino_nlink(path: &Path) -> (u64, u64) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (meta.ino(), meta.nlink())
}

/// Serves `a` and `b` with one body and `c` with another.
fn serve_twins(origin: &Origin) -> (Vec<u8>, Vec<u8>) {
    let twin = random_bytes(BODY_BYTES, 41);
    let other = random_bytes(BODY_BYTES, 42);
    origin.route("/base/a.bin", Route::fresh(twin.clone()));
    origin.route("/base/b.bin", Route::fresh(twin.clone()));
    origin.route("/base/c.bin", Route::fresh(other.clone()));
    (twin, other)
}

fn read_twins(mount: &Mount, twin: &[u8], other: &[u8]) {
    assert_same_bytes(&read(&mount.path("o/a.bin")), twin, "a.bin");
    assert_same_bytes(&read(&mount.path("o/b.bin")), twin, "b.bin");
    assert_same_bytes(&read(&mount.path("o/c.bin")), other, "c.bin");
    mount.wait_idle(Duration::from_secs(10));
}

/// Polls until a and b show one inode: storing may finish just after the
/// last byte is read.
fn wait_for_shared_inode(mount: &Mount) -> ((u64, u64), (u64, u64)) {
    let (a, b) = (mount.path("o/a.bin"), mount.path("o/b.bin"));
    eventually(Duration::from_secs(3), || {
        ino_nlink(&a).0 == ino_nlink(&b).0
    });
    (ino_nlink(&a), ino_nlink(&b))
}

#[test]
fn identical_bodies_share_one_inode() {
    let origin = Origin::start();
    let (twin, other) = serve_twins(&origin);
    let mount = Mount::single("o", origin.url("/base"));
    read_twins(&mount, &twin, &other);

    let ((a_ino, a_nlink), (b_ino, b_nlink)) = wait_for_shared_inode(&mount);
    let (c_ino, c_nlink) = ino_nlink(&mount.path("o/c.bin"));

    assert_eq!(
        a_ino, b_ino,
        "a.bin and b.bin have identical bodies but different st_ino"
    );
    assert_eq!(a_nlink, 2, "st_nlink of a body known under two paths");
    assert_eq!(b_nlink, 2, "st_nlink of a body known under two paths");
    assert_ne!(
        c_ino, a_ino,
        "c.bin has a different body but the same st_ino"
    );
    assert_eq!(c_nlink, 1, "st_nlink of a body known under one path");
}

#[test]
fn shared_inode_is_stable_across_remount() {
    let origin = Origin::start();
    let (twin, other) = serve_twins(&origin);
    let cache = tempfile::tempdir().unwrap();
    let mut first = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .cache_dir(cache.path())
        .mount();
    read_twins(&first, &twin, &other);
    let ((a_ino, _), _) = wait_for_shared_inode(&first);
    let (c_ino, _) = ino_nlink(&first.path("o/c.bin"));
    assert!(first.unmount().success());
    drop(first);
    let requests_before = origin.total();

    let second = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .cache_dir(cache.path())
        .mount();
    let (a2, b2, c2) = (
        ino_nlink(&second.path("o/a.bin")),
        ino_nlink(&second.path("o/b.bin")),
        ino_nlink(&second.path("o/c.bin")),
    );

    assert_eq!(a2.0, a_ino, "st_ino of a.bin changed across the remount");
    assert_eq!(b2.0, a_ino, "st_ino of b.bin changed across the remount");
    assert_eq!(c2.0, c_ino, "st_ino of c.bin changed across the remount");
    assert_eq!(a2.1, 2, "st_nlink after remount");
    assert_eq!(
        origin.total(),
        requests_before,
        "stat of fresh cached files after remount asked the origin:\n{}",
        origin.describe_requests()
    );
}

#[test]
fn dedup_shows_in_stats() {
    let origin = Origin::start();
    let (twin, other) = serve_twins(&origin);
    let mount = Mount::single("o", origin.url("/base"));
    read_twins(&mount, &twin, &other);
    wait_for_shared_inode(&mount);

    let stats = mount.stats();

    assert_eq!(
        stats["entries"].as_u64(),
        Some(3),
        "three URLs cached: {stats}"
    );
    assert_eq!(
        stats["blobs"].as_u64(),
        Some(2),
        "two distinct bodies stored: {stats}"
    );
    assert_eq!(
        stats["logical_bytes"].as_u64(),
        Some(3 * BODY_BYTES as u64),
        "logical_bytes counts each URL's body: {stats}"
    );
    assert_eq!(
        stats["dedup_saved_bytes"].as_u64(),
        Some(BODY_BYTES as u64),
        "dedup_saved_bytes is the one duplicate body: {stats}"
    );
}

/// The kernel keeps a stored body's attributes for long (its content never
/// changes), so a link count that changes without a lookup through the
/// mount (a prefetch, an evict) must reach `stat` at once all the same.
#[test]
fn st_nlink_follows_links_made_and_dropped_behind_the_kernel() {
    let origin = Origin::start();
    let (twin, _) = serve_twins(&origin);
    let mount = Mount::single("o", origin.url("/base"));
    let a = mount.path("o/a.bin");
    // Twice: the second lookup answers with the blob inode and its attributes.
    for _ in 0..2 {
        assert_same_bytes(&read(&a), &twin, "a.bin");
        mount.wait_idle(Duration::from_secs(10));
    }
    assert_eq!(ino_nlink(&a).1, 1, "one path known");

    mount.control("prefetch", "/o/b.bin\n").expect("prefetch b");
    assert!(
        eventually(Duration::from_secs(10), || mount.stat("prefetch_done") == 1),
        "{}",
        mount.stats()
    );
    assert_eq!(ino_nlink(&a).1, 2, "st_nlink after b was prefetched");

    mount.control("evict", "/o/b.bin\n").expect("evict b");
    assert_eq!(ino_nlink(&a).1, 1, "st_nlink after b was evicted");
}

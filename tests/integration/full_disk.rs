//! The cache dir on a small tmpfs, filled to the last byte on purpose: what
//! is stored stays whole, a body that cannot fit fails its readers cleanly
//! (EIO or ENOSPC, never a short or wrong file), `evict` still frees space,
//! the daemon keeps serving, and `fetchfs verify` is clean afterwards.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

const MIB: usize = 1024 * 1024;

fn serve(origin: &Origin, count: usize, bytes: usize, seed: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let body = random_bytes(bytes, seed + i as u64);
            origin.route(&format!("/base/f{i}"), Route::fresh(body.clone()));
            body
        })
        .collect()
}

fn mount_on_disk(origin: &Origin, cache_dir: &Path, cap: Option<&str>) -> Mount {
    let mut builder = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .cache_dir(cache_dir);
    if let Some(cap) = cap {
        builder = builder.arg("--max-cache-size").arg(cap);
    }
    builder.mount()
}

/// A read on a full disk: the right bytes, or a clean failure.
fn read_or_clean_failure(path: &Path, expected: &[u8], what: &str) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => {
            assert_same_bytes(&bytes, expected, what);
            true
        }
        Err(error) => {
            assert!(
                matches!(errno(&error), libc::EIO | libc::ENOSPC),
                "{what}: {error} ({})",
                errno_name(errno(&error))
            );
            false
        }
    }
}

fn assert_verify_clean(cache_dir: &Path) {
    let output = run_fetchfs(
        &["verify", "--cache-dir", cache_dir.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "verify after the full disk: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Issue 9, defect 4a: a 64 MiB disk, a 40 MiB cap, the disk 100% full, then
/// `/o/` written to `evict`: a file that read correctly before answered
/// ENOENT at once, without asking the origin. Every such file must read
/// again, byte for byte.
#[test]
fn a_file_read_before_a_full_disk_and_an_evict_is_never_enoent() {
    let origin = Origin::start();
    let bodies = serve(&origin, 16, 3 * MIB, 900);
    let disk = SmallDisk::mount(64);
    let cache_dir = disk.path().join("cache");
    let mut mount = mount_on_disk(&origin, &cache_dir, Some("40MiB"));
    let path = |i: usize| mount.path(&format!("o/f{i}"));

    for (i, body) in bodies.iter().enumerate() {
        assert_same_bytes(
            &read(&path(i)),
            body,
            &format!("f{i} before the disk filled"),
        );
    }
    mount.wait_idle(Duration::from_secs(10));
    let filler = disk.fill();

    // Whatever the cap evicted must come back through a disk with no room:
    // right bytes or a clean failure, never ENOENT or a short file.
    for (i, body) in bodies.iter().enumerate() {
        read_or_clean_failure(&path(i), body, &format!("f{i} on the full disk"));
    }
    mount
        .control("evict", "/o/\n")
        .unwrap_or_else(|e| panic!("evict /o/ on the 100% full disk: {e}"));
    for (i, body) in bodies.iter().enumerate() {
        let meta = std::fs::metadata(path(i))
            .unwrap_or_else(|e| panic!("stat f{i} after the evict on a full disk: {e}"));
        assert_eq!(meta.len(), body.len() as u64, "st_size of f{i}");
        // The evict freed the room of every body; one at a time, they fit.
        let bytes = std::fs::read(path(i))
            .unwrap_or_else(|e| panic!("f{i} after the evict on a full disk: {e}"));
        assert_same_bytes(&bytes, body, &format!("f{i} after the evict"));
    }
    std::fs::remove_file(filler).unwrap();
    mount.unmount();
    assert_verify_clean(&cache_dir);
}

/// A body larger than all the room the disk has left fails its reader with
/// EIO or ENOSPC; bodies stored before stay whole; the daemon keeps serving
/// and stores the body once there is room again.
#[test]
fn a_body_that_cannot_fit_fails_cleanly_and_the_daemon_keeps_serving() {
    let origin = Origin::start();
    let small = serve(&origin, 4, MIB, 950);
    let big = random_bytes(16 * MIB, 960);
    origin.route("/base/big", Route::fresh(big.clone()));
    // 48 MiB, of which the cache's reserve and index take about 18.
    let disk = SmallDisk::mount(48);
    let cache_dir = disk.path().join("cache");
    let mut mount = mount_on_disk(&origin, &cache_dir, None);

    for (i, body) in small.iter().enumerate() {
        assert_same_bytes(&read(&mount.path(&format!("o/f{i}"))), body, "small read");
    }
    mount.wait_idle(Duration::from_secs(10));
    let filler = disk.fill();

    for attempt in 0..3 {
        let (result, took) = timed(|| std::fs::read(mount.path("o/big")));
        let error = result.expect_err("16 MiB read whole from a full disk");
        assert!(
            matches!(errno(&error), libc::EIO | libc::ENOSPC),
            "attempt {attempt}: {error}"
        );
        assert!(took < Duration::from_secs(20), "the failure took {took:?}");
    }
    // Bodies the full disk did not need to evict are whole; those it evicted
    // come back, since the failed download gave its room back.
    for (i, body) in small.iter().enumerate() {
        let path = mount.path(&format!("o/f{i}"));
        read_or_clean_failure(&path, body, &format!("f{i} after the failed download"));
    }
    let stats = mount.stats();
    assert!(
        stats["entries"].is_u64(),
        "the daemon stopped answering: {stats}"
    );
    mount
        .control("evict", "/o/f0\n")
        .expect("evict on the full disk");

    std::fs::remove_file(filler).unwrap();
    assert_same_bytes(&read(&mount.path("o/big")), &big, "big once there is room");
    for (i, body) in small.iter().enumerate() {
        assert_same_bytes(
            &read(&mount.path(&format!("o/f{i}"))),
            body,
            "small at the end",
        );
    }
    mount.unmount();
    assert_verify_clean(&cache_dir);
}

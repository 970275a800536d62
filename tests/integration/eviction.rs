//! The size cap: with `--max-cache-size`, least recently used bodies are
//! evicted to stay under it, and a body with an open handle is never deleted
//! under its reader.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use crate::common::*;

const BODY_BYTES: usize = 512 * 1024;

fn serve_bodies(origin: &Origin, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let body = random_bytes(BODY_BYTES, 200 + i as u64);
            origin.route(&format!("/base/f{i}.bin"), Route::fresh(body.clone()));
            body
        })
        .collect()
}

fn capped_mount(origin: &Origin) -> Mount {
    Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .arg("--max-cache-size")
        .arg("1MiB")
        .mount()
}

#[test]
fn cache_stays_under_max_cache_size() {
    let origin = Origin::start();
    let bodies = serve_bodies(&origin, 4);
    let mount = capped_mount(&origin);

    for (i, body) in bodies.iter().enumerate() {
        assert_same_bytes(&read(&mount.path(&format!("o/f{i}.bin"))), body, "read");
        mount.wait_idle(Duration::from_secs(10));
    }

    let settled = eventually(Duration::from_secs(5), || {
        mount.stat("cache_bytes") <= 1 << 20
    });
    let stats = mount.stats();
    assert!(settled, "cache_bytes above the 1 MiB cap: {stats}");
    assert!(
        mount.stat("evictions") >= 2,
        "4 x 512 KiB under a 1 MiB cap: {stats}"
    );
    let gets_before = origin.gets("/base/f0.bin");
    assert_same_bytes(
        &read(&mount.path("o/f0.bin")),
        &bodies[0],
        "evicted body re-read",
    );
    assert!(
        origin.gets("/base/f0.bin") > gets_before,
        "the least recently used body was not the one evicted"
    );
}

#[test]
fn open_body_is_not_deleted_under_its_reader() {
    let origin = Origin::start();
    let bodies = serve_bodies(&origin, 4);
    let mount = capped_mount(&origin);
    let mut held = std::fs::File::open(mount.path("o/f0.bin")).expect("open f0");
    let mut first_half = vec![0u8; BODY_BYTES / 2];
    held.read_exact(&mut first_half).expect("read f0");
    mount.wait_idle(Duration::from_secs(10));

    for (i, body) in bodies.iter().enumerate().skip(1) {
        assert_same_bytes(&read(&mount.path(&format!("o/f{i}.bin"))), body, "read");
        mount.wait_idle(Duration::from_secs(10));
    }
    assert!(
        eventually(Duration::from_secs(5), || mount.stat("evictions") >= 1),
        "nothing was evicted, so the held body was never at risk: {}",
        mount.stats()
    );
    let mut whole = Vec::new();
    held.seek(SeekFrom::Start(0)).unwrap();
    let result = held.read_to_end(&mut whole);

    result.unwrap_or_else(|e| panic!("reading the held file after the cap was exceeded: {e}"));
    assert_same_bytes(&whole, &bodies[0], "held file after evictions");
}

/// Review finding 1: a fresh body's entry lives in the kernel for its whole
/// freshness; once the cap evicts the body, the next open and stat must find
/// the file again (fetched anew), never answer ENOENT.
#[test]
fn a_body_evicted_by_the_cap_is_found_again_through_a_cached_entry() {
    let origin = Origin::start();
    let bodies: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let body = random_bytes(700 * 1024, 300 + i);
            origin.route(&format!("/base/f{i}.bin"), Route::fresh(body.clone()));
            body
        })
        .collect();
    let mount = capped_mount(&origin);
    let a = mount.path("o/f0.bin");
    // The second lookup answers with the blob inode and a long entry timeout.
    for _ in 0..2 {
        assert_same_bytes(&read(&a), &bodies[0], "read a");
        mount.wait_idle(Duration::from_secs(10));
    }
    assert_same_bytes(&read(&mount.path("o/f1.bin")), &bodies[1], "read b");
    mount.wait_idle(Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(5), || mount.stat("evictions") >= 1),
        "1.4 MiB under a 1 MiB cap evicted nothing: {}",
        mount.stats()
    );
    // The eviction made the kernel forget the blob's attributes, so stat
    // asks the daemon.
    let meta = std::fs::metadata(&a).unwrap_or_else(|e| panic!("stat after eviction: {e}"));
    assert_eq!(meta.len(), bodies[0].len() as u64);
    assert_same_bytes(&read(&a), &bodies[0], "read after eviction");
}

/// Review finding 3: an open file whose body is evicted under it keeps its
/// size for `fstat` and `SEEK_END`, and reads to its end.
#[test]
fn an_open_file_evicted_under_its_reader_keeps_its_size_and_bytes() {
    let origin = Origin::start();
    let bodies = serve_bodies(&origin, 1);
    let mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/f0.bin");
    assert_same_bytes(&read(&path), &bodies[0], "first read");
    mount.wait_idle(Duration::from_secs(10));

    let mut held = std::fs::File::open(&path).unwrap();
    let mut first_half = vec![0u8; BODY_BYTES / 2];
    held.read_exact(&mut first_half).unwrap();
    mount.control("evict", "/o/f0.bin\n").expect("evict");
    assert_eq!(mount.stat("entries"), 0, "{}", mount.stats());
    // The change made the kernel forget the attributes, so fstat asks the
    // daemon.

    let size = held.metadata().expect("fstat after the evict").len();
    assert_eq!(size, BODY_BYTES as u64);
    let end = held
        .seek(SeekFrom::End(0))
        .expect("SEEK_END after the evict");
    assert_eq!(end, BODY_BYTES as u64);
    held.seek(SeekFrom::Start(0)).unwrap();
    let mut whole = Vec::new();
    held.read_to_end(&mut whole)
        .unwrap_or_else(|e| panic!("reading to EOF after the evict: {e}"));
    assert_same_bytes(&whole, &bodies[0], "held file after the evict");
}

/// Review finding 3, its other way: a new version of the file is stored while
/// the old one is open, so nothing points at the old body any more and its
/// record and file go. The open file still reads the old version whole and
/// keeps its size; a new open reads the new version.
#[test]
fn an_open_file_whose_body_a_new_version_replaces_keeps_its_bytes() {
    let origin = Origin::start();
    let old = random_bytes(BODY_BYTES, 31);
    let new = random_bytes(BODY_BYTES / 3, 32);
    origin.route("/base/f", Route::fresh(old.clone()));
    let mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/f");
    assert_same_bytes(&read(&path), &old, "first read");
    mount.wait_idle(Duration::from_secs(10));

    let mut held = std::fs::File::open(&path).unwrap();
    let mut first_half = vec![0u8; BODY_BYTES / 2];
    held.read_exact(&mut first_half).unwrap();
    origin.route("/base/f", Route::fresh(new.clone()));
    mount.control("invalidate", "/o/f\n").expect("invalidate");
    assert_same_bytes(&read(&path), &new, "a new open after the change");
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(
        mount.stat("blobs"),
        1,
        "the old body is gone: {}",
        mount.stats()
    );
    // The change made the kernel forget the attributes, so fstat asks the
    // daemon.

    let size = held.metadata().expect("fstat of the old version").len();
    assert_eq!(size, BODY_BYTES as u64);
    let mut rest = Vec::new();
    held.read_to_end(&mut rest)
        .unwrap_or_else(|e| panic!("reading the old version to EOF: {e}"));
    first_half.extend_from_slice(&rest);
    assert_same_bytes(&first_half, &old, "the held old version");
}

//! Kernel passthrough: a stored body is read by the kernel from its blob
//! file, not by the daemon, and reads exactly as it would through the
//! daemon: `read`, `pread` at any offset, `mmap`, several opens at once, a
//! file evicted while open. `--no-passthrough` (and a kernel or a user that
//! cannot) reads the same bytes through the daemon.
//!
//! The tests run as root on a kernel with FUSE passthrough (6.9 or later);
//! elsewhere the daemon falls back, and the first test says so.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use crate::common::*;

/// A mount of origin `o` whose `/base/f` is `body`, read once so it is stored.
fn mount_with_stored(body: &[u8], extra_args: &[&str]) -> (Origin, Mount) {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(body.to_vec()));
    let mut builder = Mount::builder().origin(OriginConfig::new("o", origin.url("/base")));
    for arg in extra_args {
        builder = builder.arg(arg);
    }
    let mount = builder.mount();
    assert_eq!(read(&mount.path("o/f")), body, "cold read");
    mount.wait_idle(std::time::Duration::from_secs(10));
    (origin, mount)
}

#[test]
fn a_stored_body_is_read_by_the_kernel_not_the_daemon() {
    let body = random_bytes(3 << 20, 71);
    let (_origin, mount) = mount_with_stored(&body, &[]);
    let served_before = mount.stat("bytes_served");

    let got = read(&mount.path("o/f"));

    assert_eq!(sha256_hex(&got), sha256_hex(&body), "cached read");
    assert!(
        mount.stat("passthrough_opens") >= 1,
        "the stored body was not opened through the kernel: {}",
        mount.stats()
    );
    assert_eq!(
        mount.stat("bytes_served"),
        served_before,
        "the daemon served bytes of a file the kernel reads itself"
    );
}

#[test]
fn preads_at_any_offset_and_mmap_read_the_stored_body() {
    let body = random_bytes((1 << 20) + 12_345, 72);
    let (_origin, mount) = mount_with_stored(&body, &[]);
    let file = File::open(mount.path("o/f")).unwrap();

    for offset in [0usize, 1, 4095, 4096, 65_537, body.len() - 7] {
        let mut buf = vec![0u8; 10_000];
        let n = file.read_at(&mut buf, offset as u64).unwrap();
        let end = (offset + 10_000).min(body.len());
        assert_eq!(&buf[..n], &body[offset..end], "pread at {offset}");
    }
    let mut past_end = [0u8; 16];
    assert_eq!(file.read_at(&mut past_end, body.len() as u64).unwrap(), 0);

    let mapped = map_whole(&file, body.len());
    assert!(mapped == body.as_slice(), "mmap of the stored body differs");
}

#[test]
fn many_opens_of_one_body_share_it_and_outlive_each_other() {
    let body = random_bytes(256 << 10, 73);
    let (_origin, mount) = mount_with_stored(&body, &[]);
    let path = mount.path("o/f");

    let first = File::open(&path).unwrap();
    let others: Vec<File> = (0..8).map(|_| File::open(&path).unwrap()).collect();
    drop(first);
    for (i, file) in others.iter().enumerate() {
        let mut buf = vec![0u8; body.len()];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert!(buf == body, "open {i} after the first was closed");
    }
    drop(others);
    // Every handle closed: a new open registers the blob again.
    assert_eq!(read(&path), body, "read after all opens closed");
}

#[test]
fn a_body_evicted_while_open_still_reads_whole() {
    let body = random_bytes(512 << 10, 74);
    let (_origin, mount) = mount_with_stored(&body, &[]);
    let file = File::open(mount.path("o/f")).unwrap();

    mount.control("evict", "/o/f\n").unwrap();
    assert_eq!(mount.stat("entries"), 0, "the evict did not happen");

    let mut buf = vec![0u8; body.len()];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert!(
        buf == body,
        "an open file changed when its body was evicted"
    );
}

#[test]
fn no_passthrough_reads_the_same_bytes_through_the_daemon() {
    let body = random_bytes(2 << 20, 75);
    let (_origin, mount) = mount_with_stored(&body, &["--no-passthrough"]);
    let served_before = mount.stat("bytes_served");

    let file = File::open(mount.path("o/f")).unwrap();
    let mapped = map_whole(&file, body.len());
    let got = read(&mount.path("o/f"));

    assert!(mapped == body.as_slice(), "mmap through the daemon differs");
    assert_eq!(
        sha256_hex(&got),
        sha256_hex(&body),
        "read through the daemon"
    );
    assert_eq!(mount.stat("passthrough_opens"), 0, "{}", mount.stats());
    assert!(
        mount.stat("bytes_served") > served_before,
        "the daemon served nothing: {}",
        mount.stats()
    );
}

/// The first `len` bytes of `file`, through a shared read-only mapping.
fn map_whole(file: &File, len: usize) -> Vec<u8> {
    // SAFETY: a fresh read-only private mapping of an open file, copied out
    // and unmapped before returning; nothing else aliases it.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            addr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let copy = std::slice::from_raw_parts(addr as *const u8, len).to_vec();
        libc::munmap(addr, len);
        copy
    }
}

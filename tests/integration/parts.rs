//! Bodies read out of order: reads far from what has arrived fetch their
//! own parts with range requests, so a random reader of a large uncached
//! file fetches a few times what it reads, not the whole body; a body that
//! changes on the origin meanwhile is never spliced; a sequential reader
//! still costs one GET, and a body read whole is stored once.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::common::*;

const MIB: usize = 1 << 20;

/// `count` page-aligned offsets spread over `len` bytes, the same every run.
fn scattered_offsets(len: usize, count: usize, seed: u64) -> Vec<u64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % (len as u64 / 4096)) * 4096
        })
        .collect()
}

fn read_at(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads `len` bytes at each offset and checks them against `body`.
fn assert_reads(file: &File, body: &[u8], offsets: impl IntoIterator<Item = u64>, len: usize) {
    for offset in offsets {
        let at = offset as usize;
        let got = read_at(file, offset, len).unwrap();
        assert!(got == body[at..at + len], "bytes at {offset}");
    }
}

/// An origin serving `route` at `path`, mounted as `o`.
fn mount_serving(path: &str, route: Route) -> (Origin, Mount) {
    let origin = Origin::start();
    origin.route(path, route);
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/")).listing("none"))
        .mount();
    (origin, mount)
}

fn ranged_mount(path: &str, body: &[u8]) -> (Origin, Mount) {
    mount_serving(path, Route::fresh(body.to_vec()).ranges())
}

#[test]
fn random_reads_of_an_uncached_file_fetch_a_few_times_what_they_read() {
    let body = random_bytes(128 * MIB, 31);
    let (origin, mount) = ranged_mount("/big.bin", &body);
    let file = File::open(mount.path("o/big.bin")).unwrap();

    let offsets = scattered_offsets(body.len(), 1000, 7);
    assert_reads(&file, &body, offsets.iter().copied(), 4096);
    drop(file);

    let read = offsets.len() as u64 * 4096;
    let sent = origin.body_bytes_sent("/big.bin");
    eprintln!(
        "1000 random 4 KiB reads: {} KiB read, {} KiB from the origin in {} requests",
        read >> 10,
        sent >> 10,
        origin.gets("/big.bin")
    );
    assert!(
        sent <= 8 * read,
        "{sent} bytes from the origin for {read} bytes read:\n{}",
        origin.describe_requests()
    );
    let gets = origin.requests_to("/big.bin");
    for request in gets.iter().filter(|r| r.method == "GET").skip(1) {
        assert!(
            request.header("If-Range").is_some(),
            "a range request without If-Range: {:?}",
            request.headers
        );
    }
}

#[test]
fn a_body_read_in_parts_and_then_whole_is_right_and_stored() {
    let body = random_bytes(24 * MIB, 32);
    let (origin, mount) = ranged_mount("/f.bin", &body);
    let path = mount.path("o/f.bin");
    let file = File::open(&path).unwrap();
    assert_reads(&file, &body, scattered_offsets(body.len(), 50, 3), 8192);
    // A reader that reads on where it is: its parts grow.
    let run = (0..64).map(|step| (12 * MIB + step * 64 * 1024) as u64);
    assert_reads(&file, &body, run, 64 * 1024);

    let whole = std::fs::read(&path).unwrap();
    assert!(whole == body, "the whole body read after its parts");
    drop(file);

    mount.wait_idle(Duration::from_secs(10));
    let gets = origin.gets("/f.bin");
    let again = std::fs::read(&path).unwrap();
    assert!(again == body);
    assert_eq!(
        origin.gets("/f.bin"),
        gets,
        "the body read whole was not stored:\n{}",
        origin.describe_requests()
    );
    assert_eq!(mount.stat("cache_bytes"), body.len() as u64);
    assert!(
        origin.body_bytes_sent("/f.bin") <= 2 * body.len() as u64,
        "{} bytes from the origin for a body of {}",
        origin.body_bytes_sent("/f.bin"),
        body.len()
    );
}

#[test]
fn the_end_of_an_archive_read_first_comes_without_the_rest() {
    let body = random_bytes(64 * MIB, 33);
    let (origin, mount) = ranged_mount("/a.zip", &body);
    let file = File::open(mount.path("o/a.zip")).unwrap();
    let tail = body.len() - 65536;
    assert!(read_at(&file, tail as u64, 65536).unwrap() == body[tail..]);
    let sent = origin.body_bytes_sent("/a.zip");
    assert!(
        sent < 16 * MIB as u64,
        "{sent} bytes fetched to read the last 64 KiB"
    );
}

#[test]
fn a_body_that_changes_while_read_in_parts_is_never_spliced() {
    let old = random_bytes(32 * MIB, 34);
    let new = random_bytes(32 * MIB, 35);
    let (origin, mount) = ranged_mount("/c.bin", &old);
    let path = mount.path("o/c.bin");
    let file = File::open(&path).unwrap();
    let first = 20 * MIB;
    assert!(read_at(&file, first as u64, 4096).unwrap() == old[first..first + 4096]);

    origin.route("/c.bin", Route::fresh(new.clone()).ranges());
    let second = 28 * MIB;
    match read_at(&file, second as u64, 4096) {
        Err(error) => assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}"),
        Ok(bytes) => panic!(
            "a read after the body changed answered {} bytes of {}",
            bytes.len(),
            if bytes == new[second..second + 4096] {
                "the new body"
            } else {
                "something"
            }
        ),
    }
    drop(file);

    // The next open fetches the new body, whole and alone.
    let served = eventually(Duration::from_secs(10), || {
        std::fs::read(&path).is_ok_and(|got| got == new)
    });
    assert!(served, "the new body is never served");
}

#[test]
fn an_origin_that_ignores_ranges_still_serves_random_reads() {
    let body = random_bytes(32 * MIB, 36);
    let (origin, mount) = mount_serving("/n.bin", Route::fresh(body.clone()));
    let file = File::open(mount.path("o/n.bin")).unwrap();
    assert_reads(&file, &body, scattered_offsets(body.len(), 100, 5), 4096);
    drop(file);
    mount.wait_idle(Duration::from_secs(10));
    assert!(
        origin.gets("/n.bin") <= 3,
        "{} GETs:\n{}",
        origin.gets("/n.bin"),
        origin.describe_requests()
    );
}

#[test]
fn sequential_readers_share_one_get_and_wait_for_nothing() {
    let body = random_bytes(48 * MIB, 37);
    let (origin, mount) = ranged_mount("/s.bin", &body);
    let path = mount.path("o/s.bin");
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || std::fs::read(path).unwrap())
        })
        .collect();
    for reader in readers {
        assert!(reader.join().unwrap() == body);
    }
    assert_eq!(origin.gets("/s.bin"), 1, "{}", origin.describe_requests());
}

#[test]
fn a_reader_that_stops_for_a_while_goes_on_where_it_stopped() {
    let body = random_bytes(24 * MIB, 38);
    let (origin, mount) = ranged_mount("/p.bin", &body);
    let path = mount.path("o/p.bin");
    let file = File::open(&path).unwrap();
    assert!(read_at(&file, 0, 65536).unwrap() == body[..65536]);
    // Longer than the front keeps its connection without a reader near.
    std::thread::sleep(Duration::from_secs(3));
    let whole = std::fs::read(&path).unwrap();
    assert!(whole == body);
    drop(file);
    let requests: Vec<_> = origin
        .requests_to("/p.bin")
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(requests.len(), 2, "{}", origin.describe_requests());
    let resumed_at: u64 = requests[1]
        .header("Range")
        .and_then(|range| range.strip_prefix("bytes="))
        .and_then(|range| range.strip_suffix('-'))
        .and_then(|start| start.parse().ok())
        .expect("the second request asks for the rest");
    assert!(
        resumed_at >= 65536 && resumed_at <= requests[0].body_bytes_sent,
        "the second request takes up where the first stopped, not at {resumed_at}"
    );
    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(mount.stat("cache_bytes"), body.len() as u64);
}

//! Metadata without downloads: `stat` and `ls -l` of uncached files show the
//! true size and fetch no body.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const FILES: usize = 100;

fn size_of(i: usize) -> usize {
    i * 1031 + 1
}

/// No GET for any of `paths`, and the daemon counts no body bytes beyond
/// what the origin sent for other paths (the listings).
fn no_body_fetched(origin: &Origin, mount: &Mount, paths: &[String]) {
    let gets: Vec<String> = paths
        .iter()
        .filter(|p| origin.gets(p) > 0)
        .cloned()
        .collect();
    assert!(
        gets.is_empty(),
        "stat of uncached files sent GET for {} of {} paths, e.g. {:?}",
        gets.len(),
        paths.len(),
        gets.iter().take(5).collect::<Vec<_>>()
    );
    let listing_bytes: u64 = origin
        .requests()
        .iter()
        .filter(|r| !paths.contains(&r.path))
        .map(|r| r.body_bytes_sent)
        .sum();
    let stats = mount.stats();
    let from_origin = stats["bytes_from_origin"]
        .as_u64()
        .unwrap_or_else(|| panic!("stats.bytes_from_origin: {stats}"));
    assert!(
        from_origin <= listing_bytes,
        "stat alone fetched {from_origin} body bytes; listings account for {listing_bytes}: {stats}"
    );
}

#[test]
fn stat_of_100_uncached_files_downloads_no_body() {
    let origin = Origin::start();
    let mut paths = Vec::new();
    for i in 0..FILES {
        let path = format!("/base/f{i:03}.bin");
        origin.route(&path, Route::fresh(random_bytes(size_of(i), i as u64)));
        paths.push(path);
    }
    let mount = Mount::single("o", origin.url("/base"));

    for i in 0..FILES {
        let meta = std::fs::metadata(mount.path(&format!("o/f{i:03}.bin")))
            .unwrap_or_else(|e| panic!("stat f{i:03}.bin: {e}"));
        assert!(meta.is_file(), "f{i:03}.bin is not a regular file");
        assert_eq!(meta.len(), size_of(i) as u64, "st_size of f{i:03}.bin");
    }

    no_body_fetched(&origin, &mount, &paths);
}

#[test]
fn ls_l_of_a_listed_directory_downloads_no_body() {
    let origin = Origin::start();
    let mut files = BTreeMap::new();
    for i in 0..FILES {
        files.insert(
            format!("dir/f{i:03}.bin"),
            random_bytes(size_of(i), 1000 + i as u64),
        );
    }
    origin.serve_tree("/base", &files, Listing::Html);
    let paths: Vec<String> = files.keys().map(|rel| format!("/base/{rel}")).collect();
    let mount = Mount::single("o", origin.url("/base"));

    let output = run_with_timeout(
        Command::new("ls").arg("-ln").arg(mount.path("o/dir")),
        Duration::from_secs(60),
    );

    assert!(
        output.status.success(),
        "ls -ln failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut listed = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.starts_with("total")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 9, "unexpected ls line: {line}");
        assert!(fields[0].starts_with('-'), "not a regular file: {line}");
        let size: u64 = fields[4]
            .parse()
            .unwrap_or_else(|_| panic!("size in {line}"));
        listed.insert(fields[8..].join(" "), size);
    }
    let expected: BTreeMap<String, u64> = (0..FILES)
        .map(|i| (format!("f{i:03}.bin"), size_of(i) as u64))
        .collect();
    assert_eq!(listed, expected, "names and sizes shown by ls -l");
    no_body_fetched(&origin, &mount, &paths);
}

/// Review finding 13: the inode table held every name ever looked up. It
/// now holds what the kernel holds: once the kernel forgets inodes (here,
/// dropping its caches), the daemon does too.
#[test]
fn inodes_the_kernel_forgets_are_forgotten() {
    const NAMES: usize = 2000;
    let origin = Origin::start();
    for i in 0..NAMES {
        origin.route(&format!("/base/d/f{i}"), Route::fresh(vec![7; 16]));
    }
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .mount();
    for i in 0..NAMES {
        std::fs::metadata(mount.path(&format!("o/d/f{i}"))).unwrap();
    }
    let remembered = mount.stat("inodes");
    assert!(remembered >= NAMES as u64, "{}", mount.stats());
    let forgotten = eventually(Duration::from_secs(20), || {
        std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop caches (as root)");
        mount.stat("inodes") < 100
    });
    assert!(forgotten, "the daemon still remembers {}", mount.stats());
}

//! Directories: a name is a directory when the origin redirects `d` to `d/`
//! or lists `d/` (nginx HTML or JSON autoindex); a recursive walk of the mount
//! matches the origin's tree; `readdir` adds what is cached to what is
//! listed; with `listing = "none"` explicit deep paths work with no listing.
//! A listing far bigger than 16 MiB lists whole, and one that cannot be read
//! is EIO with an error event and a log line, never an empty directory. A
//! JSON listing's exact sizes and dates answer `ls -l` with no HEAD; the
//! GET of a read corrects a size the listing got wrong.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

fn sample_tree() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (i, rel) in [
        "README.txt",
        "empty.dat",
        "sub/b.bin",
        "sub/deeper/c.txt",
        "sub/deeper/deepest/d.txt",
        "sub/deeper/deepest/e f.txt",
        "other/g.tar",
        "other/nested/h.json",
    ]
    .iter()
    .enumerate()
    {
        let len = if rel.starts_with("empty") {
            0
        } else {
            10 + i * 1000
        };
        files.insert(rel.to_string(), random_bytes(len, 70 + i as u64));
    }
    files
}

/// Every directory implied by the file paths, relative, without the root.
fn dirs_of(files: &BTreeMap<String, Vec<u8>>) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for rel in files.keys() {
        let mut dir = Path::new(rel).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_string_lossy().into_owned());
            dir = d.parent();
        }
    }
    dirs
}

fn check_walk_matches(listing: Listing) {
    let files = sample_tree();
    let origin = Origin::start();
    origin.serve_tree("/base", &files, listing);
    let mount = Mount::single("o", origin.url("/base"));

    let (got_dirs, got_files) = read_tree(&mount.path("o"));

    assert_eq!(
        got_dirs,
        dirs_of(&files),
        "directories from the {listing:?} listing"
    );
    assert_same_files(&got_files, &files, &format!("the {listing:?} listing"));
}

#[test]
fn html_listing_walks_like_the_origin_tree() {
    check_walk_matches(Listing::Html);
}

#[test]
fn json_listing_walks_like_the_origin_tree() {
    check_walk_matches(Listing::Json);
}

#[test]
fn directory_is_known_by_its_listing_without_a_redirect() {
    let files = sample_tree();
    let origin = Origin::start();
    origin.serve_tree("/base", &files, Listing::Html);
    // An origin that answers `sub` with 404 but lists `sub/`.
    origin.route("/base/sub", Route::not_found());
    let mount = Mount::single("o", origin.url("/base"));

    let meta = std::fs::metadata(mount.path("o/sub")).expect("stat o/sub");

    assert!(meta.is_dir(), "o/sub is not a directory");
    assert_eq!(read(&mount.path("o/sub/b.bin")), files["sub/b.bin"]);
}

#[test]
fn readdir_merges_cached_entries_with_the_listing() {
    let mut files = BTreeMap::new();
    files.insert("listed.txt".to_string(), b"listed".to_vec());
    let origin = Origin::start();
    origin.serve_tree("/base", &files, Listing::Html);
    // Served but absent from the listing, as on many mirrors.
    origin.route("/base/unlisted.txt", Route::fresh(b"unlisted".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/unlisted.txt")), b"unlisted");
    mount.wait_idle(Duration::from_secs(10));

    let names: BTreeSet<String> = std::fs::read_dir(mount.path("o"))
        .expect("read_dir o")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();

    assert_eq!(
        names,
        BTreeSet::from(["listed.txt".to_string(), "unlisted.txt".to_string()]),
        "readdir is the listing plus what is cached"
    );
}

#[test]
fn listing_none_serves_explicit_deep_paths() {
    let body = random_bytes(20_000, 79);
    let origin = Origin::start();
    // Only the file exists: no listings, no redirects, every directory 404s.
    origin.route(
        "/base/releases/v1.2/linux/x86_64/tool.tar",
        Route::fresh(body.clone()),
    );
    let mount = Mount::builder()
        .origin(OriginConfig::new("n", origin.url("/base")).listing("none"))
        .mount();

    let got = read(&mount.path("n/releases/v1.2/linux/x86_64/tool.tar"));

    assert_same_bytes(&got, &body, "deep path under listing = none");
    for dir in [
        "n/releases",
        "n/releases/v1.2",
        "n/releases/v1.2/linux/x86_64",
    ] {
        assert!(
            std::fs::metadata(mount.path(dir))
                .map(|m| m.is_dir())
                .unwrap_or(false),
            "{dir} is not a (virtual) directory"
        );
    }
    assert!(
        std::fs::metadata(mount.path("n/releases/v1.2/linux/x86_64/tool.tar"))
            .unwrap()
            .is_file()
    );
}

#[test]
fn listing_auto_without_listing_is_enoent() {
    // The converse of listing = none: under "auto", a name that is neither a
    // file nor a listed or redirected directory does not exist.
    let origin = Origin::start();
    origin.route("/base/releases/v1/tool", Route::fresh(b"tool".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));

    assert_errno(
        std::fs::metadata(mount.path("o/releases")),
        libc::ENOENT,
        "stat o/releases",
    );
}

/// nginx's `autoindex` page of the files `names` in `/base/`, padded as
/// nginx pads it: about 120 bytes an entry.
fn nginx_autoindex(names: &[String]) -> Vec<u8> {
    let mut page = String::from(
        "<html>\r\n<head><title>Index of /base/</title></head>\r\n<body>\r\n\
         <h1>Index of /base/</h1><hr><pre><a href=\"../\">../</a>\r\n",
    );
    for (i, name) in names.iter().enumerate() {
        page.push_str(&format!(
            "<a href=\"{name}\">{name}</a>{:pad$} 01-Jan-2024 00:00 {:>19}\r\n",
            "",
            i * 7,
            pad = 50usize.saturating_sub(name.len()),
        ));
    }
    page.push_str("</pre><hr></body>\r\n</html>\r\n");
    page.into_bytes()
}

#[test]
fn a_listing_of_200_000_entries_lists_every_name() {
    const ENTRIES: usize = 200_000;
    let names: Vec<String> = (0..ENTRIES)
        .map(|i| format!("artifact-{i:06}.tar.gz"))
        .collect();
    let page = nginx_autoindex(&names);
    assert!(
        page.len() > 20 * 1024 * 1024,
        "the page ({} bytes) is not past the old 16 MiB cut",
        page.len()
    );
    let origin = Origin::start();
    origin.route(
        "/base/",
        Route::ok(page).header("Content-Type", "text/html"),
    );
    let mount = Mount::single("o", origin.url("/base"));
    let started = Instant::now();

    let listed: Vec<String> = std::fs::read_dir(mount.path("o"))
        .expect("read_dir o")
        .map(|entry| {
            let entry = entry.expect("read_dir entry");
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect();

    eprintln!("read_dir of {ENTRIES} entries: {:?}", started.elapsed());
    assert_eq!(listed.len(), ENTRIES, "names listed");
    let listed: HashSet<String> = listed.into_iter().collect();
    assert_eq!(listed.len(), ENTRIES, "distinct names listed");
    let missing: Vec<&String> = names.iter().filter(|n| !listed.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "{} names missing, first {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(origin.gets("/base/"), 1, "one GET of the listing");
}

#[test]
fn a_listing_that_cannot_be_read_is_eio_an_error_event_and_a_log_line() {
    // One JSON entry past the parser's cap on an entry (64 KiB): a guard
    // against a hostile origin, tried here because it is cheap to reach.
    let padding = "p".repeat(100_000);
    let body = format!(r#"[{{"name":"a","type":"file","size":1,"padding":"{padding}"}}]"#);
    let origin = Origin::start();
    origin.route(
        "/base/",
        Route::ok(body.into_bytes()).header("Content-Type", "application/json"),
    );
    let mount = Mount::single("o", origin.url("/base"));

    assert_errno(std::fs::read_dir(mount.path("o")), libc::EIO, "read_dir o");

    let tail = mount.events_tail();
    let error = tail
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "error" && event["listing"] == true)
        .unwrap_or_else(|| panic!("no error event for the listing: {tail}"));
    assert_eq!(error["url"], origin.url("/base/").as_str());
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("over 65536 bytes"), "{error}");
    let log = mount.stderr();
    assert!(
        log.lines()
            .any(|line| line.contains(&origin.url("/base/")) && line.contains("over 65536 bytes")),
        "the log does not say why: {log}"
    );
}

/// Review finding 13: concurrent cold `ls` of one directory ask the origin
/// for its listing once, not once each.
#[test]
fn concurrent_cold_listings_of_a_directory_ask_the_origin_once() {
    const READERS: usize = 16;
    let origin = Origin::start();
    let names: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
    origin.route("/base/d", Route::redirect(301, "/base/d/"));
    origin.route(
        "/base/d/",
        Route::ok(nginx_autoindex(&names))
            .header("Content-Type", "text/html")
            .header_delay(Duration::from_millis(300)),
    );
    let mount = Mount::single("o", origin.url("/base"));
    assert!(std::fs::metadata(mount.path("o/d")).unwrap().is_dir());
    let before = origin.gets("/base/d/");

    let dir = mount.path("o/d");
    let listed: Vec<usize> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS)
            .map(|_| scope.spawn(|| std::fs::read_dir(&dir).unwrap().count()))
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(listed.iter().all(|&n| n == names.len()), "{listed:?}");
    assert_eq!(
        origin.gets("/base/d/") - before,
        1,
        "{READERS} readers: {}",
        origin.describe_requests()
    );
}

/// Twenty files of sizes the JSON listing states exactly.
fn sized_tree() -> BTreeMap<String, Vec<u8>> {
    (0..20u64)
        .map(|i| {
            let body = random_bytes(1_000 + 37 * i as usize, 300 + i);
            (format!("f{i:02}.bin"), body)
        })
        .collect()
}

#[test]
fn ls_l_of_a_json_listing_sends_no_head_and_each_read_one_get() {
    let files = sized_tree();
    let origin = Origin::start();
    origin.serve_tree("/base", &files, Listing::Json);
    let mount = Mount::single("o", origin.url("/base"));
    let listed_mtime = httpdate::parse_http_date("Tue, 25 Nov 2025 00:57:00 GMT").unwrap();

    for entry in std::fs::read_dir(mount.path("o")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let meta = std::fs::metadata(entry.path()).unwrap();
        assert_eq!(meta.len(), files[&name].len() as u64, "st_size of {name}");
        assert_eq!(meta.modified().unwrap(), listed_mtime, "st_mtime of {name}");
    }
    let heads = || {
        origin
            .requests()
            .iter()
            .filter(|r| r.method == "HEAD")
            .count()
    };
    assert_eq!(heads(), 0, "ls -l sent HEADs: {:?}", origin.requests());

    for (name, body) in &files {
        assert_same_bytes(&read(&mount.path(&format!("o/{name}"))), body, name);
        assert_eq!(
            origin.count("GET", &format!("/base/{name}")),
            1,
            "GETs of {name}"
        );
    }
    assert_eq!(heads(), 0, "reading listed files sent HEADs");
}

#[test]
fn a_listing_that_misstates_a_size_does_not_change_what_is_read() {
    let body = random_bytes(10_000, 320);
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(body.clone()));
    let listing =
        r#"[{ "name":"f", "type":"file", "mtime":"Tue, 25 Nov 2025 00:57:00 GMT", "size":5 }]"#;
    origin.route(
        "/base/",
        Route::ok(listing.as_bytes().to_vec()).header("Content-Type", "application/json"),
    );
    let mount = Mount::single("o", origin.url("/base"));
    let names: Vec<_> = std::fs::read_dir(mount.path("o")).unwrap().collect();
    assert_eq!(names.len(), 1);
    assert_eq!(
        std::fs::metadata(mount.path("o/f")).unwrap().len(),
        5,
        "the listing's size"
    );

    let got = read(&mount.path("o/f"));

    assert_same_bytes(&got, &body, "o/f");
    assert_eq!(std::fs::metadata(mount.path("o/f")).unwrap().len(), 10_000);
}

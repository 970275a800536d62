//! Directories: a name is a directory when the origin redirects `d` to `d/`
//! or lists `d/` (nginx HTML or JSON autoindex); a recursive walk of the mount
//! matches the origin's tree; `readdir` adds what is cached to what is
//! listed; with `listing = "none"` explicit deep paths work with no listing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

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

/// `ls -R`: (directories, files with contents) under `root`, relative paths.
fn walk(root: &Path) -> (BTreeSet<String>, BTreeMap<String, Vec<u8>>) {
    let mut dirs = BTreeSet::new();
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for entry in entries {
            let entry =
                entry.unwrap_or_else(|e| panic!("read_dir entry in {}: {e}", dir.display()));
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let file_type = entry
                .file_type()
                .unwrap_or_else(|e| panic!("file type of {rel}: {e}"));
            if file_type.is_dir() {
                assert!(dirs.insert(rel.clone()), "{rel} listed twice");
                pending.push(path);
            } else {
                assert!(
                    file_type.is_file(),
                    "{rel} is neither a file nor a directory"
                );
                assert!(!files.contains_key(&rel), "{rel} listed twice");
                files.insert(rel, read(&path));
            }
        }
    }
    (dirs, files)
}

fn check_walk_matches(listing: Listing) {
    let files = sample_tree();
    let origin = Origin::start();
    origin.serve_tree("/base", &files, listing);
    let mount = Mount::single("o", origin.url("/base"));

    let (got_dirs, got_files) = walk(&mount.path("o"));

    assert_eq!(
        got_dirs,
        dirs_of(&files),
        "directories from the {listing:?} listing"
    );
    assert_eq!(
        got_files.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>(),
        "files from the {listing:?} listing"
    );
    for (rel, data) in &files {
        assert_same_bytes(&got_files[rel], data, rel);
    }
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

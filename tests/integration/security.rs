//! Security at rest and between users: credentials never reach the disk,
//! the cache dir is its owner's alone, and under `--allow-other` another user
//! reads neither the control folder (it names every URL) nor what an origin
//! served privately.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const SECRET: &str = "Bearer s3cr3t-t0ken-never-on-disk";

/// Every file below `dir`.
fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// `cat PATH` as the unprivileged user `nobody`: whether it could read it.
fn nobody_can_read(path: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "nobody", "--", "cat"])
        .arg(path)
        .output()
        .expect("runuser")
        .status
        .success()
}

#[test]
fn credentials_never_reach_the_disk_and_the_cache_is_the_owners_alone() {
    let origin = Origin::start();
    let body = random_bytes(10_000, 801);
    origin.route(
        "/base/f",
        Route::ok(body.clone())
            .header("Cache-Control", "max-age=0")
            .header("ETag", "\"v1\"")
            .header("Vary", "Authorization, Accept-Encoding"),
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let mut mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).header("Authorization", SECRET))
        .cache_dir(cache_dir.path())
        .mount();
    assert_same_bytes(&read(&mount.path("o/f")), &body, "first read");
    mount.wait_idle(Duration::from_secs(10));
    assert_same_bytes(&read(&mount.path("o/f")), &body, "revalidated read");
    assert_eq!(
        origin
            .requests_to("/base/f")
            .last()
            .unwrap()
            .header("Authorization"),
        Some(SECRET),
        "the origin must still get its credentials"
    );
    mount.unmount();

    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(cache_dir.path()), 0o700, "cache dir");
    for file in files_below(cache_dir.path()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the credentials are stored in {}",
            file.display()
        );
        assert_eq!(
            mode(&file) & 0o077,
            0,
            "{} is readable by others: {:o}",
            file.display(),
            mode(&file)
        );
    }
}

#[test]
fn other_users_read_neither_the_control_folder_nor_private_bodies() {
    let origin = Origin::start();
    let public = random_bytes(1000, 802);
    origin.route("/base/public", Route::fresh(public.clone()));
    origin.route(
        "/base/mine",
        Route::fresh(random_bytes(1000, 803)).header("Cache-Control", "private, max-age=3600"),
    );
    // Private from the first byte: another user may be the first to ask, or
    // the body may never be stored at all.
    origin.route(
        "/base/first",
        Route::fresh(random_bytes(1000, 805)).header("Cache-Control", "private, max-age=3600"),
    );
    origin.route(
        "/base/never-stored",
        Route::fresh(random_bytes(1000, 806)).header("Cache-Control", "private, no-store"),
    );
    origin.route(
        "/base/unsized",
        Route::fresh(random_bytes(1000, 807))
            .chunked()
            .header("Cache-Control", "private, no-store"),
    );
    let creds = Origin::start();
    creds.route("/base/token-gated", Route::fresh(random_bytes(1000, 804)));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .origin(OriginConfig::new("c", creds.url("/base")).header("Authorization", SECRET))
        .arg("--allow-other")
        .mount();
    mount.let_other_users_in();
    for path in ["o/first", "o/unsized"] {
        assert!(
            !nobody_can_read(&mount.path(path)),
            "another user read {path} before the owner did"
        );
    }
    for path in ["o/public", "o/mine", "c/token-gated"] {
        read(&mount.path(path));
    }
    mount.wait_idle(Duration::from_secs(10));

    assert!(nobody_can_read(&mount.path("o/public")), "a public body");
    assert!(
        nobody_can_get_xattr(&mount.path("o/public")),
        "the xattrs of a public body"
    );
    for path in [
        ".fetchfs/stats",
        ".fetchfs/metrics",
        "o/mine",
        "o/first",
        "o/never-stored",
        "o/unsized",
        "c/token-gated",
    ] {
        assert!(
            !nobody_can_read(&mount.path(path)),
            "another user read {path}"
        );
        assert!(
            !nobody_can_get_xattr(&mount.path(path)),
            "another user read the xattrs of {path}"
        );
        assert!(
            std::fs::read(mount.path(path)).is_ok(),
            "the owner cannot read {path}"
        );
    }
    // `events` names URLs too; reading it waits at its end, so only open it.
    let events = mount.path(".fetchfs/events");
    assert!(nobody_can_open(&mount.path("o/public")), "the check itself");
    assert!(!nobody_can_open(&events), "another user opened the events");
    std::fs::File::open(&events).expect("the owner cannot open the events");
    // Its mode says so too, after the kernel's attributes expire.
    std::thread::sleep(Duration::from_millis(1500));
    let mode = std::fs::metadata(mount.path("o/mine"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o400, "a private body's mode: {mode:o}");
}

/// Whether `nobody` may open `path` for reading (reading nothing).
fn nobody_can_open(path: &Path) -> bool {
    let input = format!("if={}", path.display());
    Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            "dd",
            &input,
            "of=/dev/null",
            "count=0",
        ])
        .output()
        .expect("runuser dd")
        .status
        .success()
}

/// `getfattr -n user.fetchfs.url PATH` as `nobody`: whether it worked.
fn nobody_can_get_xattr(path: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "nobody", "--", "getfattr", "-n", "user.fetchfs.url"])
        .arg(path)
        .output()
        .expect("runuser getfattr (install the attr package)")
        .status
        .success()
}

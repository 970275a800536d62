//! `fetchfs verify`: a corrupted or missing blob is found, `--repair` drops
//! it, and the next read fetches the body again, correct.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

fn verify(cache_dir: &Path, repair: bool) -> std::process::Output {
    let dir = cache_dir.to_str().expect("UTF-8 cache dir");
    let mut args = vec!["verify", "--cache-dir", dir];
    if repair {
        args.push("--repair");
    }
    run_fetchfs(&args, Duration::from_secs(60))
}

fn blob_path(cache_dir: &Path, body: &[u8]) -> std::path::PathBuf {
    let hex = blake3::hash(body).to_hex().to_string();
    cache_dir
        .join("blobs")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex)
}

#[test]
fn verify_finds_a_corrupted_blob_and_repair_makes_the_next_read_refetch() {
    let good = random_bytes(50_000, 301);
    let bad = random_bytes(60_000, 302);
    let origin = Origin::start();
    origin.route("/base/good", Route::fresh(good.clone()));
    origin.route("/base/bad", Route::fresh(bad.clone()));
    let cache = tempfile::tempdir().unwrap();
    let mut mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .cache_dir(cache.path())
        .mount();
    assert_same_bytes(&read(&mount.path("o/good")), &good, "good");
    assert_same_bytes(&read(&mount.path("o/bad")), &bad, "bad");
    mount.wait_idle(Duration::from_secs(10));

    let busy = verify(cache.path(), false);
    assert!(!busy.status.success(), "verify ran on a mounted cache dir");
    assert!(String::from_utf8_lossy(&busy.stderr).contains("another fetchfs mount"));
    assert!(mount.unmount().success());

    let clean = verify(cache.path(), false);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );

    let path = blob_path(cache.path(), &bad);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut flipped = bad.clone();
    flipped[1000] ^= 0xff;
    std::fs::write(&path, &flipped).unwrap();

    let found = verify(cache.path(), false);
    assert!(!found.status.success(), "a corrupted blob passed verify");
    let stdout = String::from_utf8_lossy(&found.stdout);
    assert!(
        stdout.contains(&format!("bad blob {}", blake3::hash(&bad).to_hex())),
        "{stdout}"
    );

    let repaired = verify(cache.path(), true);
    assert!(
        repaired.status.success(),
        "{}",
        String::from_utf8_lossy(&repaired.stderr)
    );
    assert!(
        verify(cache.path(), false).status.success(),
        "still broken after --repair"
    );

    let gets_before = origin.gets("/base/bad");
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .cache_dir(cache.path())
        .mount();
    assert_same_bytes(&read(&mount.path("o/bad")), &bad, "after repair");
    assert!(
        origin.gets("/base/bad") > gets_before,
        "the dropped body was not fetched again"
    );
    assert_eq!(
        origin.gets("/base/good"),
        1,
        "the good body was fetched again"
    );
}

/// Review finding 10's tail: a blob file removed behind the cache's back
/// (by hand, by a tool cleaning the disk) is fetched again on the next read,
/// not ESTALE until `verify --repair`.
#[test]
fn a_blob_file_removed_by_hand_is_fetched_again() {
    let origin = Origin::start();
    let body = random_bytes(20_000, 880);
    origin.route("/base/f", Route::fresh(body.clone()));
    let mount = Mount::single("o", origin.url("/base"));
    assert_same_bytes(&read(&mount.path("o/f")), &body, "first read");
    mount.wait_idle(Duration::from_secs(10));
    let hash = blake3::hash(&body).to_hex().to_string();
    let blob = mount
        .cache_dir()
        .join("blobs")
        .join(&hash[..2])
        .join(&hash[2..4])
        .join(&hash);
    std::fs::remove_file(&blob).expect("the blob file is where the layout says");
    // Past the kernel's attribute timeout of the old file.
    std::thread::sleep(Duration::from_millis(1500));

    let again = std::fs::read(mount.path("o/f"))
        .unwrap_or_else(|e| panic!("read after the blob file was removed: {e}"));
    assert_same_bytes(&again, &body, "read after the blob file was removed");
    assert!(blob.exists(), "the blob file was not put back");
}

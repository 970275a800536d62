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

//! Nothing lost to a crash of the daemon: a reader that saw end-of-file
//! knows the body is stored, even if the daemon is killed the next instant;
//! a remount after a crash serves it without the origin and leaves the cache
//! dir clean for `fetchfs verify`.

use std::time::Duration;

use crate::common::*;

fn mount_on(origin: &Origin, cache_dir: &std::path::Path, offline: bool) -> Mount {
    let mut builder = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .cache_dir(cache_dir);
    if offline {
        builder = builder.arg("--offline");
    }
    builder.mount()
}

#[test]
fn end_of_file_means_stored_even_when_the_daemon_is_killed_at_once() {
    let origin = Origin::start();
    let sizes = [0, 1, 4096, 100_000, 1 << 20, 3 << 20];
    let bodies: Vec<Vec<u8>> = (0..24)
        .map(|i| {
            let body = random_bytes(sizes[i % sizes.len()], 500 + i as u64);
            origin.route(&format!("/base/f{i}"), Route::fresh(body.clone()));
            body
        })
        .collect();
    let cache_dir = tempfile::tempdir().unwrap();
    for (i, body) in bodies.iter().enumerate() {
        let mut mount = mount_on(&origin, cache_dir.path(), false);
        let path = mount.path(&format!("o/f{i}"));
        assert_same_bytes(&read(&path), body, &format!("f{i}"));
        let state = getxattr(&path, "user.fetchfs.state").expect("state xattr");
        assert_eq!(
            state, b"fresh",
            "f{i}: end-of-file before the body was stored"
        );
        mount.stop_with(libc::SIGKILL);
    }
    let offline = mount_on(&origin, cache_dir.path(), true);
    for (i, body) in bodies.iter().enumerate() {
        let path = offline.path(&format!("o/f{i}"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("f{i} lost to a kill right after end-of-file: {e}"));
        assert_same_bytes(&bytes, body, &format!("f{i} after the kill"));
    }
    drop(offline);
    let output = run_fetchfs(
        &["verify", "--cache-dir", cache_dir.path().to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "verify after the kills: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn a_remount_after_a_crash_removes_stray_blobs() {
    let origin = Origin::start();
    let body = random_bytes(50_000, 520);
    origin.route("/base/f", Route::fresh(body.clone()));
    let cache_dir = tempfile::tempdir().unwrap();
    let mut mount = mount_on(&origin, cache_dir.path(), false);
    assert_same_bytes(&read(&mount.path("o/f")), &body, "read");
    mount.stop_with(libc::SIGKILL);
    // A blob no entry names, as a crash between placing and indexing leaves.
    let stray = cache_dir.path().join("blobs/ab/cd");
    std::fs::create_dir_all(&stray).unwrap();
    let stray = stray.join(blake3::hash(b"stray").to_hex().as_str());
    std::fs::write(&stray, b"stray").unwrap();
    let mount = mount_on(&origin, cache_dir.path(), false);
    assert!(
        eventually(Duration::from_secs(10), || !stray.exists()),
        "the stray blob is still there"
    );
    assert_same_bytes(&read(&mount.path("o/f")), &body, "read after the remount");
    drop(mount);
    let output = run_fetchfs(
        &["verify", "--cache-dir", cache_dir.path().to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn fsync_waits_until_the_body_survives_a_power_loss() {
    let origin = Origin::start();
    let body = random_bytes(200_000, 521);
    origin.route("/base/f", Route::fresh(body.clone()));
    let cache_dir = tempfile::tempdir().unwrap();
    let mount = mount_on(&origin, cache_dir.path(), false);
    let file = std::fs::File::open(mount.path("o/f")).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes).unwrap();
    assert_same_bytes(&bytes, &body, "read");
    file.sync_all().expect("fsync of a file on the mount");
    // The fsync answered once the syncer recorded the blob durable.
    let (_, took) = timed(|| file.sync_all().unwrap());
    assert!(
        took < Duration::from_secs(1),
        "a second fsync waited {took:?}"
    );
}

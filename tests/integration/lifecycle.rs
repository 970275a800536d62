//! Starting and stopping: SIGTERM, SIGINT and `umount` each end the daemon
//! with exit status 0 and leave an ordinary empty directory; mistakes a user
//! can make end with a clear message and a non-zero status, never a panic.

use std::time::{Duration, Instant};

use crate::common::mount::{self, DetachedMount, MountHelper, pids_serving};
use crate::common::*;

const QUICK_EXIT: Duration = Duration::from_secs(5);

fn assert_clean_unmount(mount: &Mount, how: &str) {
    let mountpoint = mount.mountpoint();
    assert!(
        !is_fuse_mounted(mountpoint),
        "{} is still mounted after {how}",
        mountpoint.display()
    );
    let entries: Vec<_> = std::fs::read_dir(mountpoint)
        .unwrap_or_else(|e| panic!("read_dir of the mountpoint after {how}: {e}"))
        .collect();
    assert!(
        entries.is_empty(),
        "mountpoint not empty after {how}: {entries:?}"
    );
}

fn stop_and_check(signal: i32, how: &str) {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"warm".to_vec()));
    let mut mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/f")), b"warm");
    let started = Instant::now();

    let status = mount.stop_with(signal);

    let took = started.elapsed();
    assert!(
        status.success(),
        "fetchfs exited with {status} on {how}; stderr:\n{}",
        mount.stderr()
    );
    assert!(took < QUICK_EXIT, "fetchfs took {took:?} to exit on {how}");
    assert_clean_unmount(&mount, how);
    // The store was closed before the process ended, quietly.
    assert!(
        mount.cache_dir().join("closed-cleanly").exists(),
        "the cache was not closed cleanly on {how}; stderr:\n{}",
        mount.stderr()
    );
    assert!(
        !mount.stderr().contains("did not end in time"),
        "a warning at an ordinary stop on {how}:\n{}",
        mount.stderr()
    );
}

/// A stop right after a burst of commits still closes the store (its last
/// round of fsyncs takes a while) before the process ends.
#[test]
fn a_stop_right_after_many_commits_closes_the_cache_cleanly() {
    let origin = Origin::start();
    let lines: String = (0..3000)
        .map(|i| {
            origin.route(&format!("/base/d/f{i}"), Route::fresh(vec![b'x'; 100 + i]));
            format!("/o/d/f{i}\n")
        })
        .collect();
    let mut mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .mount();
    mount.control("prefetch", &lines).unwrap();
    while mount.stat("prefetch_queued") > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        mount.stop_with(libc::SIGTERM).success(),
        "{}",
        mount.stderr()
    );
    assert!(
        mount.cache_dir().join("closed-cleanly").exists(),
        "the cache was not closed cleanly; stderr:\n{}",
        mount.stderr()
    );
}

/// `mount`, `df -t` and `findmnt` tell a fetchfs mount from other FUSE
/// mounts by its type.
#[test]
fn the_mount_shows_as_fuse_fetchfs() {
    let origin = Origin::start();
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(
        mount::mount_fstype(mount.mountpoint()).as_deref(),
        Some("fuse.fetchfs"),
        "/proc/mounts:\n{}",
        std::fs::read_to_string("/proc/mounts").unwrap_or_default()
    );
}

#[test]
fn sigterm_unmounts_cleanly() {
    stop_and_check(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_unmounts_cleanly() {
    stop_and_check(libc::SIGINT, "SIGINT");
}

#[test]
fn umount_ends_the_daemon() {
    let origin = Origin::start();
    let mut mount = Mount::single("o", origin.url("/base"));
    let started = Instant::now();

    let status = mount.external_umount();

    assert!(
        status.success(),
        "fetchfs exited with {status} after umount; stderr:\n{}",
        mount.stderr()
    );
    assert!(started.elapsed() < QUICK_EXIT);
    assert_clean_unmount(&mount, "umount");
}

#[test]
fn sigterm_while_a_download_is_running_still_exits() {
    let origin = Origin::start();
    origin.route(
        "/base/slow.bin",
        Route::fresh(random_bytes(1 << 20, 61)).stall_after(64 * 1024, Duration::from_secs(30)),
    );
    let mut mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/slow.bin");
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 20];
        file.read_exact(&mut buf)
    });
    assert!(
        eventually(Duration::from_secs(5), || origin.gets("/base/slow.bin")
            == 1),
        "the download never started"
    );
    let started = Instant::now();

    mount.signal(libc::SIGTERM);
    let status = mount.wait_exit(Duration::from_secs(10));

    let status = status.unwrap_or_else(|| {
        panic!(
            "fetchfs still running 10 s after SIGTERM during a download; stderr:\n{}",
            mount.stderr()
        )
    });
    assert!(
        started.elapsed() < QUICK_EXIT,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        status.success() || status.code().is_some(),
        "killed by a signal: {status}"
    );
    assert!(
        reader.join().unwrap().is_err(),
        "the reader of an unfinished download got the full body"
    );
    assert!(!is_fuse_mounted(mount.mountpoint()), "still mounted");
}

#[test]
fn missing_mountpoint_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let missing = cache.path().join("no/such/dir");
    let output = run_fetchfs(
        &[
            "mount",
            missing.to_str().unwrap(),
            "--cache-dir",
            cache.path().join("cache").to_str().unwrap(),
            "--origin",
            "o=http://127.0.0.1:9/base",
        ],
        Duration::from_secs(15),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(
        !output.status.success(),
        "mount on a missing directory succeeded"
    );
    assert!(
        !stderr.contains("panicked"),
        "panic instead of an error message:\n{stderr}"
    );
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.contains("no/such/dir"),
        "the last stderr line does not name the missing mountpoint:\n{stderr}"
    );
}

#[test]
fn cache_dir_of_a_live_mount_is_refused() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"still here".to_vec()));
    let first = Mount::single("o", origin.url("/base"));
    let second_mountpoint = tempfile::tempdir().unwrap();

    let mut second = std::process::Command::new(mount::FETCHFS_BIN)
        .arg("mount")
        .arg(second_mountpoint.path())
        .arg("--cache-dir")
        .arg(first.cache_dir())
        .arg("--origin")
        .arg(format!("o={}", origin.url("/base")))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn a second fetchfs");
    let exited = eventually(Duration::from_secs(10), || {
        is_fuse_mounted(second_mountpoint.path()) || matches!(second.try_wait(), Ok(Some(_)))
    });
    if !exited || is_fuse_mounted(second_mountpoint.path()) {
        let _ = second.kill();
        let _ = second.wait();
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(second_mountpoint.path())
            .status();
        panic!(
            "a second mount on a live mount's cache dir did not fail (mounted or still running after 10 s)"
        );
    }
    let output = second.wait_with_output().expect("second fetchfs output");
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(
        !output.status.success(),
        "second mount on the same cache dir exited 0"
    );
    assert!(
        !stderr.contains("panicked"),
        "panic instead of an error message:\n{stderr}"
    );
    assert!(!stderr.trim().is_empty(), "no error message");
    assert_eq!(
        read(&first.path("o/f")),
        b"still here",
        "the first mount broke"
    );
}

#[test]
fn unknown_flag_is_a_clear_error() {
    let output = run_fetchfs(
        &["mount", "/tmp", "--no-such-flag"],
        Duration::from_secs(15),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

/// The pids of `fetchfs mount` processes serving `mountpoint`.
/// `umount` of a mount whose daemon detached; its daemon must then end.
fn umount_detached(mountpoint: &std::path::Path) {
    let status = std::process::Command::new("umount")
        .arg(mountpoint)
        .status()
        .unwrap();
    assert!(status.success(), "umount of the detached mount failed");
    assert!(
        eventually(Duration::from_secs(10), || pids_serving(mountpoint)
            .is_empty()),
        "the detached daemon is still running 10 s after umount"
    );
}

#[test]
fn daemon_flag_returns_once_mounted() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"detached".to_vec()));
    let scratch = tempfile::tempdir().unwrap();
    let mountpoint = scratch.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let cache = scratch.path().join("cache");
    let _cleanup = DetachedMount(mountpoint.clone());

    let output = run_fetchfs(
        &[
            "mount",
            mountpoint.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--origin",
            &format!("o={}", origin.url("/base")),
            "--daemon",
        ],
        Duration::from_secs(10),
    );

    assert!(
        output.status.success(),
        "fetchfs mount --daemon exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        is_fuse_mounted(&mountpoint),
        "not mounted when `mount --daemon` returned"
    );
    assert_eq!(read(&mountpoint.join("o/f")), b"detached");
    assert!(
        !pids_serving(&mountpoint).is_empty(),
        "no daemon process left serving the mount"
    );
    umount_detached(&mountpoint);
}

/// An fstab line mounts fetchfs: mount(8) finds `/sbin/mount.fetchfs`,
/// which mounts with the line's options and returns once the mount is
/// ready; `umount` ends the daemon.
#[test]
fn an_fstab_line_mounts_through_the_mount_helper() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"from fstab".to_vec()));
    let scratch = tempfile::tempdir().unwrap();
    let (mountpoint, fstab) = mount::fstab_line(
        scratch.path(),
        "mnt",
        "o",
        &origin.url("/base"),
        "allow_other,x-systemd.automount,_netdev,defaults",
    );
    let _helper = MountHelper::install();
    let _cleanup = DetachedMount(mountpoint.clone());

    let output = run_with_timeout(
        std::process::Command::new("mount")
            .arg("--fstab")
            .arg(&fstab)
            .arg(&mountpoint),
        Duration::from_secs(20),
    );
    assert!(
        output.status.success(),
        "mount of the fstab line failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        mount::mount_fstype(&mountpoint).as_deref(),
        Some("fuse.fetchfs")
    );
    let options = mount_options(&mountpoint).unwrap();
    assert!(options.starts_with("ro,"), "a read-only mount: {options}");
    assert_eq!(read(&mountpoint.join("o/f")), b"from fstab");
    // Steered through the control socket, as its command files are read-only.
    let evicted = run_fetchfs(
        &["evict", mountpoint.to_str().unwrap(), "/o/f"],
        Duration::from_secs(30),
    );
    assert!(
        evicted.status.success(),
        "{}",
        String::from_utf8_lossy(&evicted.stderr)
    );
    assert_eq!(read(&mountpoint.join("o/f")), b"from fstab");
    assert_eq!(origin.gets("/base/f"), 2, "evicted, so fetched again");
    umount_detached(&mountpoint);

    // A line with an option fetchfs does not know fails with mount(8)'s
    // code for a wrong invocation, and says which option.
    let output = run_with_timeout(
        std::process::Command::new("/sbin/mount.fetchfs")
            .arg("fetchfs")
            .arg(&mountpoint)
            .args(["-o", "colour=blue"]),
        Duration::from_secs(10),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("colour=blue"));
    assert!(!is_fuse_mounted(&mountpoint));
}

/// A second mount on a directory that is already a mount point would hide
/// the first; it is refused, and the message says what is mounted there.
#[test]
fn mounting_on_a_mount_point_is_refused_with_what_is_there() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"first".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    let cache = tempfile::tempdir().unwrap();
    let output = run_fetchfs(
        &[
            "mount",
            mount.mountpoint().to_str().unwrap(),
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--origin",
            &format!("o={}", origin.url("/base")),
        ],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already a mount point") && stderr.contains("fuse.fetchfs"),
        "{stderr}"
    );
    assert_eq!(
        read(&mount.path("o/f")),
        b"first",
        "the first mount is hidden"
    );
}

/// Review finding 17: a cache dir's `lock`, `VERSION` and log are never
/// followed through a symlink another user planted, and a cache dir that
/// belongs to another user is refused with a clear message.
#[test]
fn a_planted_symlink_or_a_foreign_cache_dir_is_refused() {
    let origin = Origin::start();
    let scratch = tempfile::tempdir().unwrap();
    let victim = scratch.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let mountpoint = scratch.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let url = format!("o={}", origin.url("/base"));
    // The log is written only with --daemon.
    for planted in ["lock", "VERSION", "fetchfs.log"] {
        let cache_dir = scratch.path().join(format!("cache-{planted}"));
        std::fs::create_dir(&cache_dir).unwrap();
        std::os::unix::fs::symlink(&victim, cache_dir.join(planted)).unwrap();
        let mut args = vec![
            "mount",
            mountpoint.to_str().unwrap(),
            "--origin",
            &url,
            "--cache-dir",
            cache_dir.to_str().unwrap(),
        ];
        if planted == "fetchfs.log" {
            args.push("--daemon");
        }
        let output = run_fetchfs(&args, Duration::from_secs(20));
        if is_fuse_mounted(&mountpoint) {
            let _ = std::process::Command::new("umount")
                .arg(&mountpoint)
                .status();
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{planted}: mounted through a symlink"
        );
        assert!(stderr.contains("symbolic link"), "{planted}: {stderr}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{planted}");
        assert!(!is_fuse_mounted(&mountpoint));
    }
    let foreign = scratch.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    let output = run_fetchfs(
        &["verify", "--cache-dir", foreign.to_str().unwrap()],
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("belongs to uid 65534"), "{stderr}");
}

/// Review finding 15: the daemon raises its open files limit to the hard one.
#[test]
fn the_open_files_limit_is_raised() {
    let origin = Origin::start();
    let mount = Mount::single("o", origin.url("/base"));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", mount.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft and hard differ: {line}");
}

/// Review finding 15: each open stored file holds a descriptor in the
/// daemon. 1,500 held open at once, past the usual soft limit of 1,024,
/// all read whole.
#[test]
fn many_files_held_open_at_once_all_read_whole() {
    const FILES: usize = 1500;
    let origin = Origin::start();
    let bodies: Vec<Vec<u8>> = (0..FILES)
        .map(|i| {
            let body = random_bytes(64, 900_000 + i as u64);
            origin.route(&format!("/base/f{i}"), Route::fresh(body.clone()));
            body
        })
        .collect();
    // The daemon starts with the usual soft limit of 1,024 (and must raise
    // it itself); this process, which holds the files too, then raises its own.
    let set_soft_limit = |soft: Option<libc::rlim_t>| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        check_libc(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }).unwrap();
        limit.rlim_cur = soft.unwrap_or(limit.rlim_max).min(limit.rlim_max);
        check_libc(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }).unwrap();
    };
    set_soft_limit(Some(1024));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .mount();
    set_soft_limit(None);
    let mut held = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let path = mount.path(&format!("o/f{i}"));
        assert_same_bytes(&read(&path), body, "first read");
        held.push(std::fs::File::open(&path).unwrap_or_else(|e| panic!("open f{i}: {e}")));
    }
    for (i, (file, body)) in held.iter_mut().zip(&bodies).enumerate() {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(file, &mut bytes)
            .unwrap_or_else(|e| panic!("f{i} with {FILES} files open: {e}"));
        assert_same_bytes(&bytes, body, &format!("f{i} held open"));
    }
}

/// Review finding 28: with --daemon, stderr is /dev/null; a panic below a
/// handler still lands in the log, with the URL.
#[test]
fn a_daemons_panics_land_in_its_log() {
    let origin = Origin::start();
    origin.route("/base/boom-daemon", Route::fresh(b"x".to_vec()));
    let scratch = tempfile::tempdir().unwrap();
    let mountpoint = scratch.path().join("mnt");
    let cache_dir = scratch.path().join("cache");
    std::fs::create_dir(&mountpoint).unwrap();
    let output = run_with_timeout(
        std::process::Command::new(mount::FETCHFS_BIN)
            .args(["mount", "--daemon", "--origin"])
            .arg(format!("o={}", origin.url("/base")))
            .arg("--cache-dir")
            .arg(&cache_dir)
            .arg(&mountpoint)
            .env("FETCHFS_FAILPOINT_PANIC", "boom-daemon"),
        Duration::from_secs(30),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result = std::fs::read(mountpoint.join("o/boom-daemon"));
    let log_path = cache_dir.join("fetchfs.log");
    let logged = eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&log_path)
            .is_ok_and(|log| log.contains("boom-daemon") && log.contains("panic"))
    });
    let _ = std::process::Command::new("umount")
        .arg(&mountpoint)
        .status();
    assert_errno(result, libc::EIO, "the panicking lookup");
    assert!(logged, "the log has no trace of the panic");
}

/// A mount looks for stray blob files in the background, which takes a while
/// in a big cache dir. Stopping meanwhile still closes the cache cleanly:
/// the scan stops, and the next mount does not re-hash anything (it found
/// the mark missing and re-checked every blob committed since the last sync,
/// a scan of the whole index: a second at 230,000 URLs).
#[test]
fn stopping_during_the_stray_scan_still_closes_the_cache_cleanly() {
    let origin = Origin::start();
    let cache = tempfile::tempdir().unwrap();
    // 65,536 shard directories, each with a stray file: seconds of scanning.
    for first in 0..256 {
        for second in 0..256 {
            let shard = cache.path().join(format!("blobs/{first:02x}/{second:02x}"));
            std::fs::create_dir_all(&shard).unwrap();
            std::fs::write(shard.join("stray"), b"x").unwrap();
        }
    }
    let mut mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .cache_dir(cache.path())
        .mount();
    assert!(mount.unmount().success(), "{}", mount.stderr());
    assert!(
        cache.path().join("closed-cleanly").exists(),
        "the cache was not closed cleanly; log:\n{}",
        std::fs::read_to_string(cache.path().join("fetchfs.log")).unwrap_or_default()
    );
}

//! The mount is read-only: every operation that would change it fails with
//! EROFS, and nothing but GET and HEAD ever reaches the origin.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common::*;

/// Origin `o` with a cached file `f.txt`, an uncached file `g.txt` and a
/// directory `sub/` (HTML listing).
fn setup() -> (Origin, Mount) {
    let origin = Origin::start();
    let mut files = BTreeMap::new();
    files.insert("f.txt".to_string(), b"original f\n".to_vec());
    files.insert("g.txt".to_string(), b"original g\n".to_vec());
    files.insert("sub/h.txt".to_string(), b"original h\n".to_vec());
    origin.serve_tree("/base", &files, Listing::Html);
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/f.txt")), b"original f\n");
    (origin, mount)
}

/// The file is unchanged and the origin saw only reads.
fn assert_untouched(origin: &Origin, mount: &Mount) {
    assert_eq!(
        read(&mount.path("o/f.txt")),
        b"original f\n",
        "f.txt changed"
    );
    for request in origin.requests() {
        assert!(
            request.method == "GET" || request.method == "HEAD",
            "the origin received {} {}",
            request.method,
            request.target
        );
    }
}

#[test]
fn write_to_an_existing_file_is_erofs() {
    let (origin, mount) = setup();
    for name in ["o/f.txt", "o/g.txt"] {
        let path = mount.path(name);
        assert_errno(
            std::fs::OpenOptions::new().write(true).open(&path),
            libc::EROFS,
            &format!("open {name} O_WRONLY"),
        );
        assert_errno(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path),
            libc::EROFS,
            &format!("open {name} O_RDWR"),
        );
        assert_errno(
            std::fs::OpenOptions::new().append(true).open(&path),
            libc::EROFS,
            &format!("open {name} O_APPEND"),
        );
    }
    assert_untouched(&origin, &mount);
}

#[test]
fn create_is_erofs() {
    let (origin, mount) = setup();
    assert_errno(
        std::fs::File::create(mount.path("o/new.txt")),
        libc::EROFS,
        "create o/new.txt",
    );
    assert_errno(
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(mount.path("o/sub/new.txt")),
        libc::EROFS,
        "create o/sub/new.txt O_EXCL",
    );
    assert_errno(
        std::fs::File::create(mount.path("new-at-root")),
        libc::EROFS,
        "create at the root",
    );
    // SAFETY: the path is a valid NUL-terminated string for the call's duration.
    let mknod = unsafe {
        libc::mknod(
            c_path(&mount.path("o/fifo")).as_ptr(),
            libc::S_IFIFO | 0o644,
            0,
        )
    };
    assert_errno(check_libc(mknod), libc::EROFS, "mkfifo o/fifo");
    assert_untouched(&origin, &mount);
}

#[test]
fn truncate_is_erofs() {
    let (origin, mount) = setup();
    for name in ["o/f.txt", "o/g.txt"] {
        // SAFETY: the path is a valid NUL-terminated string for the call's duration.
        let ret = unsafe { libc::truncate(c_path(&mount.path(name)).as_ptr(), 0) };
        assert_errno(check_libc(ret), libc::EROFS, &format!("truncate {name}"));
    }
    assert_errno(
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(mount.path("o/f.txt")),
        libc::EROFS,
        "open o/f.txt O_TRUNC",
    );
    assert_untouched(&origin, &mount);
}

#[test]
fn mkdir_is_erofs() {
    let (origin, mount) = setup();
    assert_errno(
        std::fs::create_dir(mount.path("o/newdir")),
        libc::EROFS,
        "mkdir o/newdir",
    );
    assert_errno(
        std::fs::create_dir(mount.path("o/sub/newdir")),
        libc::EROFS,
        "mkdir o/sub/newdir",
    );
    assert_errno(
        std::fs::create_dir(mount.path("neworigin")),
        libc::EROFS,
        "mkdir at the root",
    );
    assert_untouched(&origin, &mount);
}

#[test]
fn unlink_is_erofs() {
    let (origin, mount) = setup();
    assert_errno(
        std::fs::remove_file(mount.path("o/f.txt")),
        libc::EROFS,
        "unlink o/f.txt",
    );
    assert_errno(
        std::fs::remove_file(mount.path("o/g.txt")),
        libc::EROFS,
        "unlink o/g.txt",
    );
    assert_untouched(&origin, &mount);
    assert!(mount.path("o/f.txt").exists(), "f.txt vanished");
}

#[test]
fn rmdir_is_erofs() {
    let (origin, mount) = setup();
    assert_errno(
        std::fs::remove_dir(mount.path("o/sub")),
        libc::EROFS,
        "rmdir o/sub",
    );
    assert_errno(std::fs::remove_dir(mount.path("o")), libc::EROFS, "rmdir o");
    assert_untouched(&origin, &mount);
    assert!(mount.path("o/sub").is_dir(), "o/sub vanished");
}

#[test]
fn rename_is_erofs() {
    let (origin, mount) = setup();
    assert_errno(
        std::fs::rename(mount.path("o/f.txt"), mount.path("o/renamed.txt")),
        libc::EROFS,
        "rename o/f.txt o/renamed.txt",
    );
    assert_errno(
        std::fs::rename(mount.path("o/f.txt"), mount.path("o/g.txt")),
        libc::EROFS,
        "rename o/f.txt over o/g.txt",
    );
    assert_errno(
        std::fs::rename(mount.path("o/sub"), mount.path("o/sub2")),
        libc::EROFS,
        "rename o/sub o/sub2",
    );
    assert_untouched(&origin, &mount);
}

#[test]
fn chmod_is_erofs() {
    let (origin, mount) = setup();
    for name in ["o/f.txt", "o/g.txt", "o/sub"] {
        assert_errno(
            std::fs::set_permissions(mount.path(name), std::fs::Permissions::from_mode(0o777)),
            libc::EROFS,
            &format!("chmod {name}"),
        );
    }
    assert_untouched(&origin, &mount);
}

#[test]
fn links_and_timestamps_are_erofs() {
    let (origin, mount) = setup();
    assert_errno(
        std::os::unix::fs::symlink("f.txt", mount.path("o/link")),
        libc::EROFS,
        "symlink o/link",
    );
    assert_errno(
        std::fs::hard_link(mount.path("o/f.txt"), mount.path("o/hard")),
        libc::EROFS,
        "link o/f.txt o/hard",
    );
    let file = std::fs::File::open(mount.path("o/f.txt")).unwrap();
    assert_errno(
        file.set_modified(std::time::SystemTime::UNIX_EPOCH),
        libc::EROFS,
        "futimens o/f.txt",
    );
    assert_untouched(&origin, &mount);
}

/// `--read-only` mounts `ro`, as /proc/mounts shows: the kernel then
/// refuses writes to the command files too, and `fetchfs invalidate` and
/// `fetchfs evict` steer the mount through its control socket, with the
/// same answers a write to the files would get.
#[test]
fn a_read_only_mount_is_steered_through_its_control_socket() {
    let (origin, mount) = read_only_mount(b"first");
    let options = mount_options(mount.mountpoint()).expect("mounted");
    assert!(
        options.split(',').next() == Some("ro"),
        "options in /proc/mounts: {options}"
    );
    let status = mount.status();
    assert_eq!(status["read_only"], true);
    assert_eq!(read(&mount.path("o/f.txt")), b"first");
    let refused = mount
        .control("evict", "/o/f.txt\n")
        .expect_err("a write on a ro mount");
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS));

    origin.set_body("/base/f.txt", b"second".to_vec());
    let mnt = mount.mountpoint().to_str().unwrap();
    let evicted = run_fetchfs(&["evict", mnt, "/o/f.txt"], Duration::from_secs(30));
    assert!(
        evicted.status.success(),
        "{}",
        String::from_utf8_lossy(&evicted.stderr)
    );
    assert_eq!(
        read(&mount.path("o/f.txt")),
        b"second",
        "evicted, fetched anew"
    );
    assert_eq!(origin.gets("/base/f.txt"), 2);

    let rejected = run_fetchfs(&["invalidate", mnt, "/o/[oops"], Duration::from_secs(30));
    assert_eq!(rejected.status.code(), Some(1));
    let said = String::from_utf8_lossy(&rejected.stderr);
    assert!(said.contains("rejected the patterns"), "{said}");
    assert!(
        said.contains("line 1"),
        "the reason is in the message: {said}"
    );
}

/// The control socket answers only the mount's owner and root, as the
/// command files do.
#[test]
fn the_control_socket_refuses_other_users() {
    let (_origin, mount) = read_only_mount(b"mine");
    let status = mount.status();
    let name = status["control_socket"]
        .as_str()
        .unwrap()
        .trim_start_matches('@');
    let talk = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\0" + sys.argv[1])
s.sendall(b"evict\n/o/f.txt\n")
s.shutdown(socket.SHUT_WR)
print(s.makefile().read().strip())
"#;
    let as_nobody = run_with_timeout(
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            // Debian's python3: a pyenv shim under /root is not theirs to run.
            .args(["/usr/bin/python3", "-c", talk, name]),
        Duration::from_secs(30),
    );
    let answer = String::from_utf8_lossy(&as_nobody.stdout);
    assert!(
        answer.starts_with("error EACCES only the mount's owner"),
        "{answer}{}",
        String::from_utf8_lossy(&as_nobody.stderr)
    );
    let as_root = run_with_timeout(
        std::process::Command::new("python3").args(["-c", talk, name]),
        Duration::from_secs(30),
    );
    assert_eq!(String::from_utf8_lossy(&as_root.stdout).trim(), "ok");
}

/// Origin `o` serving `f.txt`, mounted `--read-only`.
fn read_only_mount(body: &[u8]) -> (Origin, Mount) {
    let origin = Origin::start();
    origin.route("/base/f.txt", Route::fresh(body.to_vec()));
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .arg("--read-only")
        .mount();
    (origin, mount)
}

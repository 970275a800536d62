//! Logs a person can use: one clear line per error, naming the URL once and
//! the cause; nothing for ordinary things; plain text where nobody reads
//! colours; the journal for a daemon systemd started; and the last error of
//! a path on the path itself, as `user.fetchfs.error`.

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::common::mount;
use crate::common::*;

#[test]
fn a_failed_read_is_one_line_naming_the_url_once_and_the_path_keeps_it() {
    const SIZE: usize = 256 * 1024;
    let origin = Origin::start();
    origin.route(
        "/base/cut.bin",
        Route::fresh(random_bytes(SIZE, 3)).short_body(SIZE / 2),
    );
    origin.route("/base/ok.txt", Route::fresh(b"fine".to_vec()));
    let mut mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/cut.bin");

    let error = std::fs::read(&path).expect_err("a body cut short must not read whole");
    assert_eq!(error.raw_os_error(), Some(libc::EIO));
    let attribute = getxattr(&path, "user.fetchfs.error").expect("user.fetchfs.error");
    let attribute = String::from_utf8(attribute).unwrap();
    let url = origin.url("/base/cut.bin");
    assert!(
        attribute.contains(&url) && attribute.contains("cut short"),
        "user.fetchfs.error: {attribute}"
    );
    // A file that never failed has none.
    assert_eq!(read(&mount.path("o/ok.txt")), b"fine");
    assert!(getxattr(&mount.path("o/ok.txt"), "user.fetchfs.error").is_err());

    mount.external_umount();
    let log = mount.stderr();
    let lines: Vec<&str> = log.lines().filter(|line| line.contains(&url)).collect();
    assert_eq!(lines.len(), 1, "one line for the failure:\n{log}");
    assert_eq!(
        lines[0].matches(&url).count(),
        1,
        "the URL once: {}",
        lines[0]
    );
    assert!(lines[0].contains("cut short"), "{}", lines[0]);
    assert!(
        !log.contains('\x1b'),
        "colour codes in a log that is a file:\n{log}"
    );
}

#[test]
fn ordinary_things_leave_the_log_quiet() {
    let origin = Origin::start();
    origin.route("/base/f.txt", Route::fresh(b"quiet".to_vec()));
    let mut mount = Mount::single("o", origin.url("/base"));
    let path = mount.path("o/f.txt");
    // Python asks every file it opens whether it is a terminal (TCGETS).
    let output = run_with_timeout(
        std::process::Command::new("python3")
            .arg("-c")
            .arg("import sys; print(open(sys.argv[1]).read())")
            .arg(&path),
        Duration::from_secs(30),
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "quiet");
    {
        use std::io::{Seek, SeekFrom};
        let mut file = std::fs::File::open(&path).unwrap();
        // SAFETY: isatty only queries the descriptor.
        assert_eq!(
            unsafe { libc::isatty(std::os::fd::AsRawFd::as_raw_fd(&file)) },
            0
        );
        assert_eq!(file.seek(SeekFrom::End(0)).unwrap(), 5);
    }

    mount.external_umount();
    let log = mount.stderr();
    for line in log.lines() {
        assert!(
            !line.contains("WARN") && !line.contains("ERROR"),
            "a warning where nothing went wrong: {line}\n{log}"
        );
    }
}

/// A daemon systemd started (a mount unit runs the helper, which detaches)
/// logs to the journal: it writes journald's native protocol to
/// /run/systemd/journal/socket. Where no journald runs, the test listens
/// there itself.
#[test]
fn a_detached_daemon_under_systemd_logs_to_the_journal() {
    let socket_path = std::path::Path::new("/run/systemd/journal/socket");
    if socket_path.exists() {
        // A real journald: what it got is read back with journalctl.
        return journal_of_a_real_journald();
    }
    std::fs::create_dir_all(socket_path.parent().unwrap()).unwrap();
    let journal = UnixDatagram::bind(socket_path).unwrap();
    let _remove = RemoveOnDrop(socket_path.to_path_buf());
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let origin = Origin::start();
    origin.route("/base/gone", Route::status(503));
    let scratch = tempfile::tempdir().unwrap();
    let mountpoint = scratch.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let cache = scratch.path().join("cache");
    let _cleanup = mount::DetachedMount(mountpoint.clone());
    let output = run_with_timeout(
        std::process::Command::new(mount::FETCHFS_BIN)
            .args(["mount", mountpoint.to_str().unwrap(), "--daemon"])
            .args(["--cache-dir", cache.to_str().unwrap()])
            .args(["--origin", &format!("o={}", origin.url("/base"))])
            .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef"),
        Duration::from_secs(20),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = std::fs::read_to_string(mountpoint.join(".fetchfs/status")).unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["log"], "journal");
    let error = std::fs::read(mountpoint.join("o/gone")).expect_err("a 503 is EIO");
    assert_eq!(error.raw_os_error(), Some(libc::EIO));

    let url = origin.url("/base/gone");
    let mut received: Vec<HashMap<String, String>> = Vec::new();
    let names_url =
        |entry: &HashMap<String, String>| entry.get("MESSAGE").is_some_and(|m| m.contains(&url));
    let found = eventually(Duration::from_secs(10), || {
        let mut datagram = vec![0u8; 65536];
        while let Ok(n) = journal.recv(&mut datagram) {
            received.push(journal_fields(&datagram[..n]));
        }
        received.iter().any(names_url)
    });
    umount_and_wait(&mountpoint);
    assert!(found, "no journal entry names {url}: {received:#?}");
    let entry = received.iter().find(|entry| names_url(entry)).unwrap();
    assert_eq!(entry["SYSLOG_IDENTIFIER"], "fetchfs", "{entry:?}");
    assert_eq!(entry["PRIORITY"], "4", "a warning: {entry:?}");
    assert!(entry["MESSAGE"].contains("503"), "{entry:?}");
    assert!(
        !cache.join("fetchfs.log").exists(),
        "the log went to a file as well"
    );
}

/// The fields of one datagram of journald's native protocol: `KEY=value`
/// lines, or `KEY`, a little-endian u64 length, the value and a newline.
fn journal_fields(mut datagram: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while let Some(end) = datagram.iter().position(|b| *b == b'\n') {
        let line = &datagram[..end];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            datagram = &datagram[end + 1..];
        } else {
            let rest = &datagram[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(
                String::from_utf8_lossy(line).into_owned(),
                String::from_utf8_lossy(&rest[8..8 + len]).into_owned(),
            );
            datagram = &rest[8 + len + 1..];
        }
    }
    fields
}

fn journal_of_a_real_journald() {
    let origin = Origin::start();
    origin.route("/base/gone", Route::status(503));
    let scratch = tempfile::tempdir().unwrap();
    let mountpoint = scratch.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let _cleanup = mount::DetachedMount(mountpoint.clone());
    let output = run_with_timeout(
        std::process::Command::new(mount::FETCHFS_BIN)
            .args(["mount", mountpoint.to_str().unwrap(), "--daemon"])
            .args([
                "--cache-dir",
                scratch.path().join("cache").to_str().unwrap(),
            ])
            .args(["--origin", &format!("o={}", origin.url("/base"))])
            .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef"),
        Duration::from_secs(20),
    );
    assert!(output.status.success());
    let status = std::fs::read_to_string(mountpoint.join(".fetchfs/status")).unwrap();
    let pid = serde_json::from_str::<serde_json::Value>(&status).unwrap()["pid"].clone();
    assert!(std::fs::read(mountpoint.join("o/gone")).is_err());
    let url = origin.url("/base/gone");
    let found = eventually(Duration::from_secs(10), || {
        let output = std::process::Command::new("journalctl")
            .args(["-o", "cat", &format!("_PID={pid}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).contains(&url)
    });
    umount_and_wait(&mountpoint);
    assert!(found, "journalctl shows no line naming {url}");
}

fn umount_and_wait(mountpoint: &std::path::Path) {
    let output = run_fetchfs(
        &["umount", mountpoint.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

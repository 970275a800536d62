//! The commands people reach for around a mount: `fetchfs status` lists the
//! mounts, `fetchfs umount` ends one and waits for its daemon, `fetchfs top`
//! shows one live. Each takes relative paths and says clearly why it cannot.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::mount::FETCHFS_BIN;
use crate::common::*;

const COMMAND_WAIT: Duration = Duration::from_secs(30);

/// `fetchfs ARGS...` run from `dir`.
fn fetchfs_in(dir: &Path, args: &[&str]) -> Output {
    run_with_timeout(
        Command::new(FETCHFS_BIN).current_dir(dir).args(args),
        COMMAND_WAIT,
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The mountpoint's parent, and its name there, for commands given a
/// relative path.
fn parent_and_name(mountpoint: &Path) -> (&Path, &str) {
    (
        mountpoint.parent().unwrap(),
        mountpoint.file_name().unwrap().to_str().unwrap(),
    )
}

#[test]
fn status_lists_every_mount_with_its_daemon_cache_and_origins() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"status".to_vec()));
    let first = Mount::single("o", origin.url("/base"));
    let second = Mount::single("p", origin.url("/base"));
    assert_eq!(read(&first.path("o/f")), b"status");

    let output = run_fetchfs(&["status"], COMMAND_WAIT);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(table.starts_with("MOUNTPOINT"), "{table}");
    for (mount, name) in [(&first, "o"), (&second, "p")] {
        let line = table
            .lines()
            .find(|line| line.starts_with(&format!("{} ", mount.mountpoint().display())))
            .unwrap_or_else(|| panic!("{} not listed:\n{table}", mount.mountpoint().display()));
        assert!(line.contains(&format!(" {} ", mount.pid())), "{line}");
        assert!(
            line.contains(&mount.cache_dir().display().to_string()),
            "{line}"
        );
        assert!(
            line.ends_with(&format!("{name}={}", origin.url("/base"))),
            "{line}"
        );
    }

    // One mount, by a relative path, as JSON.
    let (parent, name) = parent_and_name(first.mountpoint());
    let output = fetchfs_in(parent, &["status", "--json", name]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let status = &listed[0]["status"];
    assert_eq!(status["pid"], first.pid());
    assert_eq!(status["mountpoint"], first.mountpoint().to_str().unwrap());
    assert_eq!(status["cache_dir"], first.cache_dir().to_str().unwrap());
    assert_eq!(status["origins"][0]["name"], "o");
    assert_eq!(listed[0]["stats"]["misses"], 1);

    let output = run_fetchfs(&["status", "/proc"], COMMAND_WAIT);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("/proc is not a fetchfs mount"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn umount_by_a_relative_path_returns_once_the_daemon_has_exited() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"bye".to_vec()));
    let mut mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/f")), b"bye");

    let (parent, name) = parent_and_name(mount.mountpoint());
    let output = fetchfs_in(parent, &["umount", name]);

    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!is_fuse_mounted(mount.mountpoint()));
    let exit = mount.wait_exit(Duration::ZERO);
    assert!(
        exit.is_some_and(|status| status.success()),
        "the daemon had not exited (cleanly) when umount returned: {exit:?}\n{}",
        mount.stderr()
    );
    assert!(
        mount.cache_dir().join("closed-cleanly").exists(),
        "the cache was not closed when umount returned"
    );
}

#[test]
fn umount_says_why_it_cannot() {
    let scratch = tempfile::tempdir().unwrap();
    let output = run_fetchfs(&["umount", scratch.path().to_str().unwrap()], COMMAND_WAIT);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("is not mounted"),
        "{}",
        text(&output.stderr)
    );

    let output = run_fetchfs(&["umount", "/proc"], COMMAND_WAIT);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("/proc is not a fetchfs mount (it is proc"),
        "{}",
        text(&output.stderr)
    );

    // A process working inside the mount keeps it busy: nothing is
    // unmounted, and the message says how to find the process.
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"busy".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    let mut squatter = Command::new("sleep")
        .arg("60")
        .current_dir(mount.mountpoint())
        .spawn()
        .unwrap();
    let output = run_fetchfs(
        &["umount", mount.mountpoint().to_str().unwrap()],
        COMMAND_WAIT,
    );
    let _ = squatter.kill();
    let _ = squatter.wait();
    assert_eq!(output.status.code(), Some(1));
    let said = text(&output.stderr);
    assert!(said.contains("is busy"), "{said}");
    assert!(said.contains("fuser -vm"), "{said}");
    assert!(is_fuse_mounted(mount.mountpoint()));
    assert_eq!(read(&mount.path("o/f")), b"busy");
}

#[test]
fn top_shows_the_downloads_in_flight_with_their_progress() {
    const SIZE: usize = 1536 * 1024;
    let body = random_bytes(SIZE, 7);
    let origin = Origin::start();
    origin.route(
        "/base/slow.bin",
        Route::fresh(body.clone()).throttle(512 * 1024),
    );
    let mount = Mount::single("o", origin.url("/base"));
    let reader = std::thread::spawn({
        let path = mount.path("o/slow.bin");
        move || std::fs::read(path)
    });
    assert!(
        eventually(Duration::from_secs(10), || mount.stat("in_flight") == 1),
        "the download never started"
    );

    let output = run_fetchfs(
        &[
            "top",
            mount.mountpoint().to_str().unwrap(),
            "-n",
            "2",
            "--interval",
            "0.3",
        ],
        COMMAND_WAIT,
    );

    assert!(output.status.success(), "{}", text(&output.stderr));
    let frames = text(&output.stdout);
    assert_eq!(frames.matches("fetchfs top ").count(), 2, "{frames}");
    assert!(frames.contains("downloads in flight 1"), "{frames}");
    let row = frames
        .lines()
        .rfind(|line| line.ends_with(&origin.url("/base/slow.bin")))
        .unwrap_or_else(|| panic!("no row for the download:\n{frames}"));
    assert!(row.starts_with('['), "{row}");
    assert!(row.contains("%"), "{row}");
    assert!(row.contains("1.5 MiB"), "the size is shown: {row}");
    assert_eq!(reader.join().unwrap().unwrap(), body);
}

/// On a terminal, `top` redraws until `q`, or Ctrl-C (a key in raw mode),
/// and leaves with status 0.
#[test]
fn top_on_a_terminal_quits_on_q_and_on_ctrl_c() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"top".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    for key in ["q", "\x03"] {
        let output = run_with_timeout(
            Command::new("python3")
                .arg("-c")
                .arg(DRIVE_A_TERMINAL)
                .args([FETCHFS_BIN, "top", mount.mountpoint().to_str().unwrap()])
                .env("KEY", key),
            COMMAND_WAIT,
        );
        let said = text(&output.stdout);
        assert!(
            output.status.success(),
            "key {key:?}: {said}{}",
            text(&output.stderr)
        );
        assert!(said.contains("exited 0"), "key {key:?}: {said}");
    }
}

/// Runs ARGV on a pseudo-terminal, waits for the first frame, types $KEY,
/// and prints how the program ended (exit 2 if it did not within 3 s).
const DRIVE_A_TERMINAL: &str = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen = b""
deadline = time.time() + 10
while b"q quits" not in seen and time.time() < deadline:
    if select.select([fd], [], [], 0.2)[0]:
        try:
            seen += os.read(fd, 65536)
        except OSError:
            break
if b"q quits" not in seen:
    print("no frame:", seen)
    os.kill(pid, 9)
    sys.exit(2)
os.write(fd, os.environ["KEY"].encode())
deadline = time.time() + 3
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("exited", os.waitstatus_to_exitcode(status))
        sys.exit(0)
    if select.select([fd], [], [], 0.05)[0]:
        try:
            os.read(fd, 65536)
        except OSError:
            pass
os.kill(pid, 9)
print("still running 3 s after the key")
sys.exit(2)
"#;

/// The completion scripts load in real shells and complete commands: bash
/// and fish are asked for the completions of `fetchfs st`; zsh registers
/// the completion function for `fetchfs`.
#[test]
fn completions_work_in_bash_zsh_and_fish() {
    let bash = format!(
        "source <({FETCHFS_BIN} completions bash) && COMP_WORDS=(fetchfs st) COMP_CWORD=1 \
         && _fetchfs fetchfs st fetchfs && echo \"${{COMPREPLY[@]}}\""
    );
    let fish = format!("{FETCHFS_BIN} completions fish | source; complete -C 'fetchfs st'");
    let scratch = tempfile::tempdir().unwrap();
    let zsh = format!(
        "{FETCHFS_BIN} completions zsh > {dir}/_fetchfs && fpath=({dir} $fpath) \
         && autoload -U compinit && compinit -u -d {dir}/zcompdump && print $_comps[fetchfs]",
        dir = scratch.path().display()
    );
    for (shell, script, expected) in [
        ("bash", bash.as_str(), "status stats"),
        ("fish", fish.as_str(), "status\tList the fetchfs mounts"),
        ("zsh", zsh.as_str(), "_fetchfs"),
    ] {
        let output = run_with_timeout(Command::new(shell).arg("-c").arg(script), COMMAND_WAIT);
        let said = text(&output.stdout);
        assert!(
            output.status.success() && said.contains(expected),
            "{shell}: {said}{}",
            text(&output.stderr)
        );
    }
}

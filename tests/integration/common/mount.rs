//! Runs the real `fetchfs mount` binary on a fresh mountpoint and takes it down
//! again whatever happens to the test: `Drop` sends SIGTERM, waits, and falls
//! back to `umount -l` and SIGKILL, so a panicking test never leaves a mount or
//! a daemon behind. A watchdog kills the daemon if a test outlives its budget,
//! which turns a hung FUSE request into ENOTCONN in the test instead of a hung
//! `cargo test`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const FETCHFS_BIN: &str = env!("CARGO_BIN_EXE_fetchfs");
const MOUNT_READY_TIMEOUT: Duration = Duration::from_secs(15);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_WATCHDOG: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The variables that send fetchfs's requests through a proxy: the
/// daemon's environment has none of them unless a test sets one, so the
/// proxy of the machine running the tests never stands between fetchfs and
/// a test's origin.
const PROXY_VARIABLES: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// One `[origins.NAME]` table of the config file.
#[derive(Clone, Debug)]
pub struct OriginConfig {
    name: String,
    url: String,
    settings: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl OriginConfig {
    pub fn new(name: &str, url: impl Into<String>) -> OriginConfig {
        OriginConfig {
            name: name.into(),
            url: url.into(),
            settings: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn default_ttl(self, ttl: &str) -> OriginConfig {
        self.setting("default_ttl", ttl)
    }

    pub fn min_ttl(self, ttl: &str) -> OriginConfig {
        self.setting("min_ttl", ttl)
    }

    pub fn max_ttl(self, ttl: &str) -> OriginConfig {
        self.setting("max_ttl", ttl)
    }

    pub fn negative_ttl(self, ttl: &str) -> OriginConfig {
        self.setting("negative_ttl", ttl)
    }

    /// `"auto"` or `"none"`.
    pub fn listing(self, mode: &str) -> OriginConfig {
        self.setting("listing", mode)
    }

    pub fn timeout(self, timeout: &str) -> OriginConfig {
        self.setting("timeout", timeout)
    }

    /// `"16KiB/s"`, or `"0"` for no minimum.
    pub fn min_rate(self, rate: &str) -> OriginConfig {
        self.setting("min_rate", rate)
    }

    /// `"http://host:port"`, or `""` for no proxy.
    pub fn proxy(self, url: &str) -> OriginConfig {
        self.setting("proxy", url)
    }

    pub fn header(mut self, name: &str, value: &str) -> OriginConfig {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn setting(mut self, key: &str, value: &str) -> OriginConfig {
        self.settings.push((key.into(), value.into()));
        self
    }

    fn to_toml(&self) -> String {
        let mut out = format!(
            "[origins.{}]\nurl = {}\n",
            toml_string(&self.name),
            toml_string(&self.url)
        );
        for (key, value) in &self.settings {
            out.push_str(&format!("{key} = {}\n", toml_string(value)));
        }
        if !self.headers.is_empty() {
            out.push_str(&format!("[origins.{}.headers]\n", toml_string(&self.name)));
            for (name, value) in &self.headers {
                out.push_str(&format!("{} = {}\n", toml_string(name), toml_string(value)));
            }
        }
        out
    }
}

fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub struct MountBuilder {
    origins: Vec<OriginConfig>,
    cache_dir: Option<PathBuf>,
    args: Vec<String>,
    top_level: Vec<(String, String)>,
    env: Vec<(String, String)>,
    watchdog: Duration,
}

impl MountBuilder {
    /// An environment variable for the daemon.
    pub fn env(mut self, name: &str, value: &str) -> MountBuilder {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn origin(mut self, origin: OriginConfig) -> MountBuilder {
        self.origins.push(origin);
        self
    }

    /// Uses `dir` as the cache instead of a fresh temporary one (remount tests).
    pub fn cache_dir(mut self, dir: &Path) -> MountBuilder {
        self.cache_dir = Some(dir.to_path_buf());
        self
    }

    /// An extra command-line argument for `fetchfs mount`.
    pub fn arg(mut self, arg: &str) -> MountBuilder {
        self.args.push(arg.into());
        self
    }

    /// A top-level config key, value written as TOML verbatim (`any_host`, `true`).
    pub fn config(mut self, key: &str, raw_value: &str) -> MountBuilder {
        self.top_level.push((key.into(), raw_value.into()));
        self
    }

    /// How long the test may run before the daemon is killed.
    pub fn watchdog(mut self, limit: Duration) -> MountBuilder {
        self.watchdog = limit;
        self
    }

    /// Mounts, and waits until the mount is ready.
    pub fn mount(self) -> Mount {
        let mut mount = self.spawn();
        mount.wait_ready();
        mount
    }

    /// Runs a mount that must fail before mounting; its stderr. Panics (and
    /// cleans up) if it mounts, or still runs after 15 s.
    pub fn mount_fails(self) -> String {
        let mut mount = self.spawn();
        let deadline = Instant::now() + MOUNT_READY_TIMEOUT;
        loop {
            if let Some(status) = mount.wait_exit(Duration::ZERO) {
                assert!(
                    !status.success(),
                    "fetchfs exited with {status}, expected a failure; stderr:\n{}",
                    mount.stderr()
                );
                return mount.stderr();
            }
            if is_fuse_mounted(&mount.mountpoint) || Instant::now() > deadline {
                panic!(
                    "fetchfs mounted (or still runs) where it should have failed\nconfig:\n{}\nstderr:\n{}",
                    mount.config,
                    mount.stderr()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn spawn(self) -> Mount {
        let scratch = tempfile::Builder::new()
            .prefix("fetchfs-test-")
            .tempdir()
            .expect("scratch dir");
        let mountpoint = scratch.path().join("mnt");
        std::fs::create_dir(&mountpoint).expect("create mountpoint");
        let xdg_cache = scratch.path().join("xdg-cache");
        std::fs::create_dir(&xdg_cache).expect("create xdg cache");
        let (cache_dir, owned_cache) = match self.cache_dir {
            Some(dir) => (dir, None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("fetchfs-cache-")
                    .tempdir()
                    .expect("cache dir");
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let config_path = scratch.path().join("fetchfs.toml");
        let mut config = String::new();
        for (key, value) in &self.top_level {
            config.push_str(&format!("{key} = {value}\n"));
        }
        for origin in &self.origins {
            config.push_str(&origin.to_toml());
        }
        std::fs::write(&config_path, &config).expect("write config");
        let stdout_path = scratch.path().join("stdout.log");
        let stderr_path = scratch.path().join("stderr.log");

        let child = with_a_test_environment(&mut Command::new(FETCHFS_BIN))
            .arg("mount")
            .arg(&mountpoint)
            .arg("--config")
            .arg(&config_path)
            .arg("--cache-dir")
            .arg(&cache_dir)
            .args(&self.args)
            .env("XDG_CACHE_HOME", &xdg_cache)
            .env("RUST_BACKTRACE", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("stdout log"))
            .stderr(File::create(&stderr_path).expect("stderr log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {FETCHFS_BIN}: {e}"));
        let pid = child.id();
        let watchdog = Watchdog::start(pid, mountpoint.clone(), self.watchdog);
        Mount {
            child: Some(child),
            exit_status: None,
            pid,
            mountpoint,
            cache_dir,
            config,
            stderr_path,
            watchdog: Some(watchdog),
            _owned_cache: owned_cache,
            _scratch: scratch,
        }
    }
}

/// The environment every fetchfs a test starts gets: no proxy variable
/// (see [`PROXY_VARIABLES`]), and none of systemd's, so that a daemon logs
/// to its cache dir even when the tests run under systemd.
fn with_a_test_environment(command: &mut Command) -> &mut Command {
    for name in PROXY_VARIABLES
        .iter()
        .chain(&["INVOCATION_ID", "JOURNAL_STREAM"])
    {
        command.env_remove(name);
    }
    command
}

struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    fn start(pid: u32, mountpoint: PathBuf, limit: Duration) -> Watchdog {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(limit) {
                eprintln!(
                    "WATCHDOG: test still running after {limit:?}; killing fetchfs (pid {pid}) \
                     and detaching {}; blocked file operations now fail with ENOTCONN",
                    mountpoint.display()
                );
                send_signal(pid, libc::SIGKILL);
                lazy_unmount(&mountpoint);
            }
        });
        Watchdog { stop, thread }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// A running `fetchfs mount`.
pub struct Mount {
    child: Option<Child>,
    exit_status: Option<ExitStatus>,
    pid: u32,
    mountpoint: PathBuf,
    cache_dir: PathBuf,
    config: String,
    stderr_path: PathBuf,
    watchdog: Option<Watchdog>,
    _owned_cache: Option<TempDir>,
    // Dropped last: holds the mountpoint, the config and the logs.
    _scratch: TempDir,
}

impl Mount {
    pub fn builder() -> MountBuilder {
        MountBuilder {
            origins: Vec::new(),
            cache_dir: None,
            args: Vec::new(),
            top_level: Vec::new(),
            env: Vec::new(),
            watchdog: DEFAULT_WATCHDOG,
        }
    }

    /// A mount with one origin and default settings.
    pub fn single(name: &str, url: impl Into<String>) -> Mount {
        Mount::builder()
            .origin(OriginConfig::new(name, url))
            .mount()
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Lets other users reach the mountpoint, whose parent, the harness's
    /// scratch dir, was made under the umask, which may keep them out. What
    /// they may do there is still up to `--allow-other` and the daemon.
    pub fn let_other_users_in(&self) {
        use std::os::unix::fs::PermissionsExt;
        let scratch = self._scratch.path();
        std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod 755 {}: {e}", scratch.display()));
    }

    /// `MNT/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel.trim_start_matches('/'))
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn config_text(&self) -> &str {
        &self.config
    }

    /// What the daemon has written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `MNT/.fetchfs/stats`, parsed.
    pub fn stats(&self) -> serde_json::Value {
        let path = self.path(".fetchfs/stats");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stats is not JSON ({e}): {text:?}"))
    }

    /// `MNT/.fetchfs/status`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let path = self.path(".fetchfs/status");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status is not JSON ({e}): {text:?}"))
    }

    /// The last 16 KiB of `MNT/.fetchfs/events`, as text. The file is a log
    /// that waits at its end, so it is read at an offset, not to the end.
    pub fn events_tail(&self) -> String {
        use std::os::unix::fs::FileExt;
        let path = self.path(".fetchfs/events");
        let end = std::fs::metadata(&path).unwrap().len();
        let events = std::fs::File::open(&path).unwrap();
        const TAIL: usize = 16 * 1024;
        let mut tail = vec![0u8; TAIL];
        let n = events
            .read_at(&mut tail, end.saturating_sub(TAIL as u64))
            .unwrap();
        String::from_utf8_lossy(&tail[..n]).into_owned()
    }

    /// Writes `text` to the control file `MNT/.fetchfs/<file>` in one write
    /// and closes it, so every line applies.
    pub fn control(&self, file: &str, text: &str) -> std::io::Result<()> {
        use std::io::Write;
        let mut control = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(&format!(".fetchfs/{file}")))?;
        control.write_all(text.as_bytes())?;
        control.flush()
    }

    /// One integer field of the stats.
    pub fn stat(&self, field: &str) -> u64 {
        let stats = self.stats();
        stats[field]
            .as_u64()
            .unwrap_or_else(|| panic!("stats field {field} is not an unsigned integer: {stats}"))
    }

    /// Waits until no download is in flight (stats `in_flight == 0`), so a
    /// body just read is committed before the test looks at inodes or
    /// unmounts. Best effort: if the stats cannot be read, it waits a little
    /// and returns, leaving stats failures to the stats tests.
    pub fn wait_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let in_flight = std::fs::read_to_string(self.path(".fetchfs/stats"))
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|stats| stats["in_flight"].as_u64());
            match in_flight {
                Some(0) => return,
                None => {
                    std::thread::sleep(Duration::from_millis(300));
                    return;
                }
                Some(_) if Instant::now() > deadline => {
                    panic!(
                        "in_flight still non-zero after {timeout:?}: {}",
                        self.stats()
                    )
                }
                Some(_) => std::thread::sleep(POLL_INTERVAL),
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        send_signal(self.pid, signal);
    }

    /// Polls for the daemon's exit for up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit_status.is_some() {
            return self.exit_status;
        }
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.exit_status = Some(status);
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                _ => return None,
            }
        }
    }

    /// Sends `signal` and waits for the daemon to exit; panics (and cleans
    /// up) if it is still running after 10 s. The mountpoint directory stays
    /// until the `Mount` is dropped, so the test can inspect it.
    pub fn stop_with(&mut self, signal: i32) -> ExitStatus {
        self.signal(signal);
        match self.wait_exit(EXIT_TIMEOUT) {
            Some(status) => status,
            None => panic!(
                "fetchfs did not exit within {EXIT_TIMEOUT:?} of signal {signal}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// SIGTERM and wait: the ordinary way down.
    pub fn unmount(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// `umount MNT` from outside, then waits for the daemon to exit.
    pub fn external_umount(&mut self) -> ExitStatus {
        let output = Command::new("umount")
            .arg(&self.mountpoint)
            .output()
            .expect("run umount");
        assert!(
            output.status.success(),
            "umount {} failed: {}",
            self.mountpoint.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        match self.wait_exit(EXIT_TIMEOUT) {
            Some(status) => status,
            None => panic!(
                "fetchfs did not exit within {EXIT_TIMEOUT:?} of umount; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + MOUNT_READY_TIMEOUT;
        loop {
            if is_fuse_mounted(&self.mountpoint) {
                return;
            }
            if let Some(status) = self.wait_exit(Duration::ZERO) {
                panic!(
                    "fetchfs exited with {status} before mounting {}\nconfig:\n{}\nstderr:\n{}",
                    self.mountpoint.display(),
                    self.config,
                    self.stderr()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not mounted after {MOUNT_READY_TIMEOUT:?}\nconfig:\n{}\nstderr:\n{}",
                    self.mountpoint.display(),
                    self.config,
                    self.stderr()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.stop();
        }
        if self.exit_status.is_none() && self.child.is_some() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(EXIT_TIMEOUT).is_none() {
                eprintln!(
                    "fetchfs (pid {}) ignored SIGTERM for {EXIT_TIMEOUT:?}; killing it",
                    self.pid
                );
                lazy_unmount(&self.mountpoint);
                if let Some(child) = self.child.as_mut() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        if is_fuse_mounted(&self.mountpoint) {
            lazy_unmount(&self.mountpoint);
        }
        if std::thread::panicking() {
            let stderr = self.stderr();
            let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
            eprintln!(
                "--- fetchfs stderr (last {} lines) ---\n{}\n--- end ---",
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only
    // yields ESRCH, which is ignored.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

fn lazy_unmount(mountpoint: &Path) {
    let _ = Command::new("umount")
        .arg("-l")
        .arg(mountpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Unescapes the octal escapes (`\040` for space) of /proc/mounts fields.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(code) = u8::from_str_radix(digits, 8) {
                out.push(code);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fstype `mountpoint` is mounted with, per /proc/mounts (last mount wins).
pub fn mount_fstype(mountpoint: &Path) -> Option<String> {
    mount_entry(mountpoint).map(|(fstype, _)| fstype)
}

/// The options `mountpoint` is mounted with (`ro,nosuid,...`).
pub fn mount_options(mountpoint: &Path) -> Option<String> {
    mount_entry(mountpoint).map(|(_, options)| options)
}

/// The fstype and options of the last mount on `mountpoint` in /proc/mounts.
fn mount_entry(mountpoint: &Path) -> Option<(String, String)> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let wanted = mountpoint.to_string_lossy();
    mounts.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let _source = fields.next()?;
        let target = unescape_mount_field(fields.next()?);
        let fstype = fields.next()?.to_string();
        let options = fields.next()?.to_string();
        (target == wanted).then_some((fstype, options))
    })
}

pub fn is_fuse_mounted(mountpoint: &Path) -> bool {
    mount_fstype(mountpoint).is_some_and(|fstype| fstype == "fuse" || fstype.starts_with("fuse."))
}

/// Runs `fetchfs ARGS...` in the tests' environment, killing it after `timeout`.
pub fn run_fetchfs(args: &[&str], timeout: Duration) -> std::process::Output {
    run_with_timeout(
        with_a_test_environment(&mut Command::new(FETCHFS_BIN)).args(args),
        timeout,
    )
}

/// Runs a command to completion with captured output; kills it after `timeout`.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> std::process::Output {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let out_path = scratch.path().join("out");
    let err_path = scratch.path().join("err");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("wait for child") {
            Some(status) => break status,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{command:?} still running after {timeout:?}; stderr:\n{}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            None => std::thread::sleep(POLL_INTERVAL),
        }
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

/// The processes whose command line is `... mount ... MOUNTPOINT ...`.
pub fn pids_serving(mountpoint: &std::path::Path) -> Vec<u32> {
    let wanted = mountpoint.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.contains(&&b"mount"[..]) && args.contains(&wanted) && pid != std::process::id() {
            pids.push(pid);
        }
    }
    pids
}

/// Detaches a `--daemon` mount and kills its daemon if the test fails midway.
pub struct DetachedMount(pub std::path::PathBuf);

impl Drop for DetachedMount {
    fn drop(&mut self) {
        if is_fuse_mounted(&self.0) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
        for pid in pids_serving(&self.0) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Puts the binary at `/sbin/mount.fetchfs` for one test, and puts back
/// whatever was there.
pub struct MountHelper {
    path: std::path::PathBuf,
    saved: Option<std::path::PathBuf>,
}

impl MountHelper {
    pub fn install() -> MountHelper {
        let path = std::path::PathBuf::from("/sbin/mount.fetchfs");
        let saved = path.symlink_metadata().is_ok().then(|| {
            let saved = path.with_extension(format!("fetchfs-test-{}", std::process::id()));
            std::fs::rename(&path, &saved).unwrap();
            saved
        });
        std::os::unix::fs::symlink(FETCHFS_BIN, &path).unwrap();
        MountHelper { path, saved }
    }
}

impl Drop for MountHelper {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(saved) = &self.saved {
            let _ = std::fs::rename(saved, &self.path);
        }
    }
}

/// An fstab line in `scratch` for a fetchfs mount on `scratch/MOUNT_NAME`:
/// a config file naming origin `origin` at `url`, the cache in
/// `scratch/cache`, then `options` (`allow_other,_netdev`). Returns the
/// mountpoint (made) and the fstab file.
pub fn fstab_line(
    scratch: &Path,
    mount_name: &str,
    origin: &str,
    url: &str,
    options: &str,
) -> (PathBuf, PathBuf) {
    let mountpoint = scratch.join(mount_name);
    std::fs::create_dir(&mountpoint).unwrap();
    let config = scratch.join("artifacts.toml");
    std::fs::write(&config, format!("[origins.{origin}]\nurl = \"{url}\"\n")).unwrap();
    let fstab = scratch.join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "fetchfs {} fetchfs config={},cache_dir={},{options} 0 0\n",
            mountpoint.display(),
            config.display(),
            scratch.join("cache").display()
        ),
    )
    .unwrap();
    (mountpoint, fstab)
}

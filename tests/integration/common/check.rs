//! Bodies, hashes, polling, errno assertions and free ports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Deterministic pseudo-random bytes (splitmix64): incompressible, and two
/// seeds never produce equal bodies.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Streams `path` through SHA-256 in 1 MiB reads.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `ls -R`, with every file read: (directories, files with contents) under
/// `root`, as paths relative to it. Panics on anything that is neither a
/// file nor a directory, and on a name listed twice.
pub fn read_tree(root: &Path) -> (BTreeSet<String>, BTreeMap<String, Vec<u8>>) {
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

/// Asserts that `got` and `expected` (relative path -> bytes, as from
/// [`read_tree`]) name the same files with the same bytes; `what` says where.
#[track_caller]
pub fn assert_same_files(
    got: &BTreeMap<String, Vec<u8>>,
    expected: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "files of {what}"
    );
    for (rel, bytes) in expected {
        assert_same_bytes(&got[rel], bytes, &format!("{what}: {rel}"));
    }
}

/// Reads a whole file, panicking with the path and error.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Asserts `data` equals `expected` without dumping megabytes on failure.
#[track_caller]
pub fn assert_same_bytes(data: &[u8], expected: &[u8], what: &str) {
    if data != expected {
        let first_diff = data
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(data.len().min(expected.len()));
        panic!(
            "{what}: got {} bytes (sha256 {}), expected {} bytes (sha256 {}); first difference at offset {first_diff}",
            data.len(),
            sha256_hex(data),
            expected.len(),
            sha256_hex(expected)
        );
    }
}

pub fn errno(error: &std::io::Error) -> i32 {
    error.raw_os_error().unwrap_or(-1)
}

pub fn errno_name(code: i32) -> String {
    let name = match code {
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EROFS => "EROFS",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTCONN => "ENOTCONN",
        libc::EINVAL => "EINVAL",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EBADF => "EBADF",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EXDEV => "EXDEV",
        _ => "",
    };
    format!("{name}({code})")
}

/// Asserts that `result` failed with `expected` errno.
#[track_caller]
pub fn assert_errno<T>(result: std::io::Result<T>, expected: i32, what: &str) {
    match result {
        Ok(_) => panic!("{what}: succeeded, expected {}", errno_name(expected)),
        Err(e) => assert_eq!(
            errno(&e),
            expected,
            "{what}: failed with {} ({e}), expected {}",
            errno_name(errno(&e)),
            errno_name(expected)
        ),
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port on 127.0.0.1 that nothing listens on at this instant.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A path as a C string, for the libc calls std has no wrapper for.
pub fn c_path(path: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path without NUL")
}

/// `libc` return value to io::Result.
pub fn check_libc(ret: libc::c_int) -> std::io::Result<libc::c_int> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// SHA-256 of a file by the `sha256sum` tool: a real program reading through
/// the mount, and much faster than hashing in an unoptimised test build.
pub fn sha256sum_file(path: &Path) -> String {
    let output = super::mount::run_with_timeout(
        std::process::Command::new("sha256sum").arg(path),
        Duration::from_secs(120),
    );
    assert!(
        output.status.success(),
        "sha256sum {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// SHA-256 of in-memory bytes by `sha256sum` reading them from a pipe.
pub fn sha256sum_bytes(data: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sha256sum");
    let mut stdin = child.stdin.take().expect("sha256sum stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output().expect("sha256sum output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to sha256sum");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Reads `path` whole from `readers` threads released at the same instant;
/// each reader's bytes, or panics naming the reader that failed.
pub fn read_concurrently(path: &Path, readers: usize) -> Vec<Vec<u8>> {
    let start = std::sync::Arc::new(std::sync::Barrier::new(readers));
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let (path, start) = (path.to_path_buf(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                std::fs::read(&path)
            })
        })
        .collect();
    threads
        .into_iter()
        .enumerate()
        .map(|(i, thread)| {
            thread
                .join()
                .expect("reader thread")
                .unwrap_or_else(|e| panic!("reader {i}: {e}"))
        })
        .collect()
}

/// Runs `f` and says how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

/// `cat PATH > /dev/null`, as a user would run it, to be signalled.
pub fn spawn_cat(path: &Path) -> std::process::Child {
    std::process::Command::new("cat")
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cat")
}

/// One extended attribute of `path`.
pub fn getxattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let cpath = c_path(path);
    let cname = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and buf is valid for buf.len() bytes.
    let n = unsafe {
        libc::getxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Every body the origin has served for each file, by SHA-256: what a read
/// of a file whose body changes may rightly return.
#[derive(Default)]
pub struct Versions {
    served: std::sync::Mutex<std::collections::HashMap<usize, std::collections::HashSet<String>>>,
}

impl Versions {
    /// Call before the origin starts serving `body`, so that a reader who
    /// gets it at once does not count it as wrong.
    pub fn record(&self, file: usize, body: &[u8]) {
        let mut served = self.served.lock().unwrap();
        served.entry(file).or_default().insert(sha256_hex(body));
    }

    pub fn is_a_version_of(&self, file: usize, bytes: &[u8]) -> bool {
        let served = self.served.lock().unwrap();
        served
            .get(&file)
            .is_some_and(|set| set.contains(&sha256_hex(bytes)))
    }
}

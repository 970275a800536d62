//! The machine's mount table, which of its mounts are fetchfs, and reading
//! a mount's control files from the command line.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::de::DeserializeOwned;

use crate::control::{CONTROL_DIR, ControlFile};

/// How long a command waits for a mount's daemon to answer a read of a
/// control file before it says the daemon does not answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// One line of `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub target: PathBuf,
    pub fstype: String,
    pub options: String,
}

impl MountEntry {
    /// Mounted by fetchfs: `fuse.fetchfs`, or plain `fuse` from a source
    /// named `fetchfs` (a kernel or fusermount that drops the subtype).
    pub fn is_fetchfs(&self) -> bool {
        self.fstype == "fuse.fetchfs" || (self.fstype == "fuse" && self.source == "fetchfs")
    }
}

/// The mounts of this process's namespace, in mount order.
pub fn current() -> Vec<MountEntry> {
    parse(&std::fs::read_to_string("/proc/self/mounts").unwrap_or_default())
}

/// The mounts of a `/proc/mounts` text (fields separated by spaces, with
/// spaces in them written `\040`).
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (source, target, fstype, options) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            Some(MountEntry {
                source: String::from_utf8_lossy(&unescape_octal(source)).into_owned(),
                target: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_octal(target))),
                fstype: fstype.to_string(),
                options: options.to_string(),
            })
        })
        .collect()
}

/// What is mounted at `path`: the last mount there, the one on top.
pub fn at<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts.iter().rev().find(|entry| entry.target == path)
}

/// `path` made absolute without asking the file system under it, whose
/// daemon may be gone: the parent is resolved, the last name kept.
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
    if let Ok(resolved) = absolute.canonicalize() {
        return Ok(resolved);
    }
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => Ok(parent
            .canonicalize()
            .with_context(|| format!("{}", parent.display()))?
            .join(name)),
        _ => Ok(absolute),
    }
}

/// Reads and parses one control file of the mount at `mountpoint`, giving
/// up after [`ANSWER_WAIT`] if its daemon does not answer.
pub fn read_control<T: DeserializeOwned>(
    mountpoint: &Path,
    file: ControlFile,
) -> anyhow::Result<T> {
    let path = mountpoint.join(CONTROL_DIR).join(file.name());
    let text = within(ANSWER_WAIT, {
        let path = path.clone();
        move || std::fs::read_to_string(path)
    })
    .ok_or_else(|| {
        anyhow!(
            "the daemon of {} did not answer within {} s",
            mountpoint.display(),
            ANSWER_WAIT.as_secs()
        )
    })?
    .with_context(|| {
        format!(
            "{} is not a fetchfs mount (cannot read {})",
            mountpoint.display(),
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

/// Runs `work` on a thread of its own; `None` if it has not ended within
/// `wait` (a read stuck on a daemon that does not answer: the thread ends
/// with the process).
fn within<T: Send + 'static>(
    wait: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    result.recv_timeout(wait).ok()
}

/// `\NNN` octal escapes of a `/proc/mounts` field, decoded.
fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_point_is_found_in_proc_mounts_spaces_and_all() {
        let mounts = parse(
            "proc /proc proc rw 0 0\n\
             fetchfs /mnt/my\\040artifacts fuse.fetchfs ro,nosuid 0 0\n\
             tmpfs /mnt/over tmpfs rw 0 0\n\
             fetchfs /mnt/over fuse rw 0 0\n",
        );
        let artifacts = at(&mounts, Path::new("/mnt/my artifacts")).unwrap();
        assert_eq!(artifacts.fstype, "fuse.fetchfs");
        assert_eq!(artifacts.options, "ro,nosuid");
        assert!(artifacts.is_fetchfs());
        assert_eq!(at(&mounts, Path::new("/mnt/my")), None);
        assert!(!at(&mounts, Path::new("/proc")).unwrap().is_fetchfs());
        assert!(
            at(&mounts, Path::new("/mnt/over")).unwrap().is_fetchfs(),
            "the mount on top is the one that counts"
        );
        assert_eq!(unescape_octal("a\\011b\\\\c\\9"), b"a\tb\\\\c\\9");
    }

    #[test]
    fn relative_paths_are_made_absolute() {
        let here = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(absolute(Path::new(".")).unwrap(), here);
        assert_eq!(
            absolute(Path::new("no-such-name")).unwrap(),
            here.join("no-such-name")
        );
    }
}

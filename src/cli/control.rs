//! `fetchfs invalidate|evict|prefetch MOUNTPOINT ...`: shell-friendly wrappers
//! around the control files.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};

use super::mounts::read_control;
use crate::control::status::Status;
use crate::control::{CONTROL_DIR, ControlFile};

/// Writes all patterns to one command file in one write, so they apply
/// together or not at all. On a read-only mount, whose command files the
/// kernel will not let anyone write, they go through the control socket.
pub fn write_patterns(
    mountpoint: &Path,
    file: ControlFile,
    patterns: &[String],
) -> anyhow::Result<()> {
    let path = mountpoint.join(CONTROL_DIR).join(file.name());
    let text: String = patterns.iter().map(|p| format!("{p}\n")).collect();
    let written = OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut control| control.write_all(text.as_bytes()));
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => send(mountpoint, file, &text),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => bail!(
            "{} rejected the patterns (a malformed line, an unknown origin, or over 8 KiB); \
             nothing was changed; the reason is in the daemon's log and in {}/events",
            path.display(),
            mountpoint.join(CONTROL_DIR).display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "{} is not a fetchfs mount (cannot open {})",
            mountpoint.display(),
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

/// Sends one command through the mount's control socket (see
/// `fs/socket.rs`) and waits for its answer.
fn send(mountpoint: &Path, file: ControlFile, lines: &str) -> anyhow::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};

    let status: Status = read_control(mountpoint, ControlFile::Status)?;
    let name = status
        .control_socket
        .strip_prefix('@')
        .with_context(|| format!("{} names no control socket", mountpoint.display()))?;
    let talk = || -> io::Result<String> {
        let mut stream = UnixStream::connect_addr(&SocketAddr::from_abstract_name(name)?)?;
        stream.write_all(format!("{}\n{lines}", file.name()).as_bytes())?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    let answer =
        talk().with_context(|| format!("talking to the daemon of {}", mountpoint.display()))?;
    match answer.trim_end().split_once(' ') {
        None if answer.trim_end() == "ok" => Ok(()),
        Some(("error", reason)) => {
            let (errno, message) = reason.split_once(' ').unwrap_or(("EIO", reason));
            if errno == "EINVAL" {
                bail!(
                    "{} rejected the patterns: {message}; nothing was changed",
                    mountpoint.display()
                )
            }
            bail!("{}: {message}", mountpoint.display())
        }
        _ => bail!(
            "{}: the daemon gave an answer this fetchfs does not know: {answer:?}",
            mountpoint.display()
        ),
    }
}

/// Reads each path through the mount now, so its body is fetched and
/// stored; shows bytes, rate and files on a terminal, one line per file otherwise.
pub fn prefetch(mountpoint: &Path, paths: &[PathBuf]) -> anyhow::Result<()> {
    let files: Vec<PathBuf> = paths.iter().map(|p| mount_path(mountpoint, p)).collect();
    let total: u64 = files
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    let bar = progress_bar(total, files.len());
    let started = Instant::now();
    let mut failed = 0;
    for (done, file) in files.iter().enumerate() {
        let result = read_through(file, |bytes| {
            if let Some(bar) = &bar {
                bar.inc(bytes);
            }
        });
        match (&bar, result) {
            (Some(bar), Ok(_)) => bar.set_message(format!("{}/{} files", done + 1, files.len())),
            (None, Ok(bytes)) => println!(
                "fetched {} ({})",
                file.display(),
                bytesize::ByteSize::b(bytes).display().iec()
            ),
            (_, Err(error)) => {
                failed += 1;
                eprintln!("fetchfs: {}: {error}", file.display());
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "prefetched {} of {} files in {}",
        files.len() - failed,
        files.len(),
        humantime::format_duration(std::time::Duration::from_millis(elapsed.as_millis() as u64))
    );
    if failed > 0 {
        bail!("{failed} of {} files could not be fetched", files.len());
    }
    Ok(())
}

/// The file a PATH argument names: a path through the mount, from the
/// current directory or absolute (`mnt/o/x`, `/mnt/o/x`), or a path inside
/// the mount (`o/x`, `/o/x`). The mountpoint may be relative too.
fn mount_path(mountpoint: &Path, path: &Path) -> PathBuf {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mountpoint = absolute(mountpoint);
    let through_mount = absolute(path);
    if through_mount.starts_with(&mountpoint) {
        return through_mount;
    }
    mountpoint.join(path.strip_prefix("/").unwrap_or(path))
}

/// Reads a file to its end (so it is stored), then fsyncs it: on fetchfs,
/// that waits until the stored body also survives a power loss.
fn read_through(path: &Path, mut progress: impl FnMut(u64)) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            file.sync_all()?;
            return Ok(total);
        }
        total += n as u64;
        progress(n as u64);
    }
}

fn progress_bar(total: u64, files: usize) -> Option<indicatif::ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(format!("0/{files} files"));
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_through_the_mount_or_inside_it_name_the_same_file() {
        let cwd = std::env::current_dir().unwrap();
        let file = cwd.join("mnt/o/x");
        for (mountpoint, path) in [
            ("mnt", "mnt/o/x"),
            ("mnt", "o/x"),
            ("mnt", "/o/x"),
            ("./mnt", "mnt/o/x"),
        ] {
            assert_eq!(
                mount_path(Path::new(mountpoint), Path::new(path)),
                file,
                "{mountpoint} {path}"
            );
        }
        let file = cwd.join("mnt/o/x");
        assert_eq!(mount_path(&cwd.join("mnt"), &file), file);
        assert_eq!(
            mount_path(Path::new("/m"), Path::new("/o/x")),
            Path::new("/m/o/x")
        );
        assert_eq!(
            mount_path(Path::new("/m"), Path::new("/m/o/x")),
            Path::new("/m/o/x")
        );
    }
}

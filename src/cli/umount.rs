//! `fetchfs umount MOUNTPOINT`: unmounts a fetchfs mount and waits until
//! its daemon has closed the cache and exited, so the cache dir is free
//! for the next mount when the command returns.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;

use super::mounts::{self, read_control};
use crate::control::ControlFile;
use crate::control::status::Status;

/// How long the daemon may take to exit once unmounted: it finishes the
/// commits under way and closes the index (up to a minute after a burst).
const EXIT_WAIT: Duration = Duration::from_secs(90);
/// After this long, say what is being waited for.
const SAY_WAITING_AFTER: Duration = Duration::from_secs(1);

pub fn run(mountpoint: &Path) -> anyhow::Result<()> {
    let target = mounts::absolute(mountpoint)?;
    let Some(entry) = mounts::at(&mounts::current(), &target).cloned() else {
        bail!("{} is not mounted", target.display());
    };
    if !entry.is_fetchfs() {
        bail!(
            "{} is not a fetchfs mount (it is {} from {})",
            target.display(),
            entry.fstype,
            entry.source
        );
    }
    // Asked before the unmount: afterwards the daemon is no longer reachable.
    let pid = read_control::<Status>(&target, ControlFile::Status)
        .ok()
        .map(|status| status.pid);
    unmount(&target)?;
    match pid {
        Some(pid) => wait_for_exit(pid, &target),
        None => {
            eprintln!(
                "fetchfs: unmounted {}; its daemon did not answer, so this did not wait for it to exit",
                target.display()
            );
            Ok(())
        }
    }
}

fn unmount(target: &Path) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        return match nix::mount::umount2(target, nix::mount::MntFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EBUSY) => bail!(busy(target)),
            Err(error) => Err(error).with_context(|| format!("unmounting {}", target.display())),
        };
    }
    // Other users unmount through the setuid helper, which checks that the
    // mount is theirs.
    let output = Command::new("fusermount3")
        .arg("-u")
        .arg(target)
        .output()
        .context("running fusermount3 -u (is fuse3 installed?)")?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    if said.contains("busy") {
        bail!(busy(target));
    }
    bail!("unmounting {}: {}", target.display(), said.trim());
}

fn busy(target: &Path) -> String {
    format!(
        "{} is busy: a process has a file open there or works in it \
         (`fuser -vm {}` lists them); nothing was unmounted",
        target.display(),
        target.display()
    )
}

/// Waits until process `pid` has ended (or is a zombie its parent has not
/// reaped yet).
fn wait_for_exit(pid: u32, target: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut said = false;
    while is_running(pid) {
        if started.elapsed() > EXIT_WAIT {
            bail!(
                "unmounted {}, but its daemon (pid {pid}) has not exited after {} s",
                target.display(),
                EXIT_WAIT.as_secs()
            );
        }
        if !said && started.elapsed() > SAY_WAITING_AFTER {
            eprintln!("fetchfs: waiting for the daemon (pid {pid}) to close the cache");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_a_reaped_one_does_not() {
        assert!(is_running(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_running(pid));
    }
}

//! Man pages and shell completions, generated from the same clap
//! definitions that parse the command line, so they cannot drift from it.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::{Arg, ArgAction, CommandFactory};
use clap_complete::Shell;

use super::Cli;

/// Prints the completion script for `shell` on stdout. Rendered first:
/// the generator panics on a write error, such as a closed pipe.
pub fn completions(shell: Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "fetchfs", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}

/// Writes `fetchfs.1`, one `fetchfs-COMMAND.1` per command, and
/// `mount.fetchfs.8` into `dir`.
pub fn manpages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages to {}", dir.display()))?;
    let mut page = Vec::new();
    clap_mangen::Man::new(helper_command())
        .section("8")
        .render(&mut page)?;
    let path = dir.join("mount.fetchfs.8");
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The mount helper's synopsis, for its man page: mount(8) parses its
/// arguments, not clap (see `helper.rs`).
fn helper_command() -> clap::Command {
    clap::Command::new("mount.fetchfs")
        .about("Mount fetchfs from /etc/fstab (the mount(8) helper)")
        .long_about(
            "mount(8) runs mount.fetchfs for an fstab line of type fetchfs, such as\n\n\
             fetchfs /mnt/artifacts fetchfs config=/etc/fetchfs/artifacts.toml,allow_other,x-systemd.automount 0 0\n\n\
             It runs `fetchfs mount MOUNTPOINT --daemon` with the line's options and returns once \
             the mount is ready; the daemon stays until the mount is unmounted. The mount is \
             read-only (`ro` in /proc/mounts): the command files in .fetchfs/ cannot be \
             written, and `fetchfs invalidate` and `fetchfs evict` steer it through its control \
             socket. The option writable_control mounts it read-write instead.",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(
            Arg::new("source")
                .value_name("SOURCE")
                .required(true)
                .help("Names nothing; write `fetchfs`"),
        )
        .arg(
            Arg::new("mountpoint")
                .value_name("MOUNTPOINT")
                .required(true)
                .help("An empty directory"),
        )
        .arg(
            Arg::new("options")
                .short('o')
                .value_name("OPTIONS")
                .help("Comma-separated mount options")
                .long_help(
                    "Comma-separated mount options: config=FILE, cache_dir=DIR, \
                     max_cache_size=SIZE, metrics_addr=ADDR:PORT, allow_other, any_host, \
                     offline, no_passthrough, as the fetchfs mount flags of the same names; \
                     writable_control keeps the command files writable (no `ro`). \
                     Options that mount(8) and systemd handle (defaults, auto, noauto, nofail, \
                     _netdev, x-*, comment=) and the mount flags (ro, rw, nodev, nosuid, \
                     noatime, ...) are passed over; any other option is an error.",
                ),
        )
        .arg(
            Arg::new("sloppy")
                .short('s')
                .action(ArgAction::SetTrue)
                .help("Pass over unknown options instead of failing"),
        )
        .arg(
            Arg::new("fake")
                .short('f')
                .action(ArgAction::SetTrue)
                .help("Do everything but mount (does nothing)"),
        )
        .after_long_help("See fetchfs(1), fetchfs-mount(1), fstab(5), mount(8).")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_gets_a_page_and_the_helper_one_too() {
        let dir = tempfile::tempdir().unwrap();
        manpages(dir.path()).unwrap();
        for name in [
            "fetchfs.1",
            "fetchfs-mount.1",
            "fetchfs-umount.1",
            "fetchfs-status.1",
            "fetchfs-top.1",
            "fetchfs-stats.1",
            "fetchfs-invalidate.1",
            "fetchfs-evict.1",
            "fetchfs-prefetch.1",
            "fetchfs-verify.1",
            "fetchfs-completions.1",
            "mount.fetchfs.8",
        ] {
            let page = std::fs::read_to_string(dir.path().join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(page.starts_with(".ie"), "{name} is not roff: {page:.80}");
        }
        let mount = std::fs::read_to_string(dir.path().join("fetchfs-mount.1")).unwrap();
        assert!(mount.contains("cache\\-dir"), "{mount}");
    }

    #[test]
    fn completions_name_every_command_in_each_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "fetchfs", &mut script);
            let script = String::from_utf8(script).unwrap();
            for command in ["mount", "umount", "status", "top", "prefetch", "cache-dir"] {
                assert!(script.contains(command), "{shell}: no {command}");
            }
        }
    }
}

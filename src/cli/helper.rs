//! `mount.fetchfs`: the binary under the name mount(8) looks for, so that
//! an fstab line mounts fetchfs:
//!
//! ```text
//! fetchfs  /mnt/artifacts  fetchfs  config=/etc/fetchfs/artifacts.toml,allow_other,x-systemd.automount  0 0
//! ```
//!
//! mount(8) runs `mount.fetchfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]`
//! and waits for it, so the helper becomes `fetchfs mount MOUNTPOINT ...
//! --daemon`: it returns once the mount is ready, the daemon stays. The
//! source names nothing (write `fetchfs`); the options name what the
//! command line would: `config=`, `cache_dir=`, `max_cache_size=`,
//! `metrics_addr=`, `allow_other`, `any_host`, `offline`, `no_passthrough`. The mount is
//! read-only (`ro` in /proc/mounts; commands come through the control
//! socket) unless `writable_control` keeps the command files writable. The options
//! mount(8) and systemd handle themselves (`defaults`, `auto`, `nofail`,
//! `_netdev`, `x-*`, ...) are passed over, and so are the mount flags fetchfs
//! sets on its own (`nodev`, `nosuid`, `noatime`, `ro`, `rw`). Any other
//! option is an error, unless `-s` (sloppy) says to pass it over too.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// Whether the binary was started as a mount(8) helper.
pub fn invoked_as_helper(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("mount.fetchfs"))
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HelperError {
    #[error("usage: mount.fetchfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]")]
    Usage,
    #[error(
        "unknown mount option \"{0}\" (known: config=, cache_dir=, max_cache_size=, metrics_addr=, allow_other, any_host, offline, no_passthrough, writable_control)"
    )]
    UnknownOption(String),
    #[error("mount option \"{0}\" needs a value")]
    MissingValue(String),
}

/// What to do: the `fetchfs` command line to run, or nothing (`-f`).
#[derive(Debug, PartialEq)]
pub enum HelperRun {
    Mount(Vec<OsString>),
    Fake,
}

/// Options that mount(8), systemd or the kernel flags take care of.
const PASSED_OVER: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "nofail",
    "_netdev",
    "ro",
    "rw",
    "nodev",
    "dev",
    "nosuid",
    "suid",
    "noexec",
    "exec",
    "noatime",
    "atime",
    "relatime",
    "nodiratime",
    "sync",
    "async",
];

/// The `fetchfs` command line for a helper's arguments (`args[0]` is the
/// helper's own name).
pub fn translate(args: &[OsString]) -> Result<HelperRun, HelperError> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let (mut sloppy, mut fake) = (false, false);
    // mount(8) passes `rw` for every line that does not say `ro`, so it
    // cannot ask for the command files to stay writable: that takes
    // `writable_control`.
    let mut read_only = true;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-o" => options.push(rest.next().ok_or(HelperError::Usage)?.clone()),
            // Namespaces and the type are mount(8)'s business.
            "-N" | "-t" => {
                rest.next().ok_or(HelperError::Usage)?;
            }
            flags if flags.starts_with('-') && flags.len() > 1 => {
                for flag in flags[1..].chars() {
                    match flag {
                        's' => sloppy = true,
                        'f' => fake = true,
                        'n' | 'v' | 'r' | 'w' => {}
                        _ => return Err(HelperError::Usage),
                    }
                }
            }
            _ => positional.push(arg.clone()),
        }
    }
    let [_source, mountpoint] = positional.as_slice() else {
        return Err(HelperError::Usage);
    };
    let mut command: Vec<OsString> = vec!["fetchfs".into(), "mount".into(), mountpoint.clone()];
    for list in &options {
        for option in list.to_string_lossy().split(',').filter(|o| !o.is_empty()) {
            let (name, value) = match option.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (option, None),
            };
            let with_value = |flag: &str| -> Result<[OsString; 2], HelperError> {
                let value = value.ok_or_else(|| HelperError::MissingValue(name.into()))?;
                Ok([flag.into(), value.into()])
            };
            match name.replace('-', "_").as_str() {
                "config" => command.extend(with_value("--config")?),
                "cache_dir" => command.extend(with_value("--cache-dir")?),
                "max_cache_size" => command.extend(with_value("--max-cache-size")?),
                "metrics_addr" => command.extend(with_value("--metrics-addr")?),
                "allow_other" => command.push("--allow-other".into()),
                "any_host" => command.push("--any-host".into()),
                "offline" => command.push("--offline".into()),
                "no_passthrough" => command.push("--no-passthrough".into()),
                "writable_control" => read_only = false,
                known if PASSED_OVER.contains(&known) || name.starts_with("x-") => {}
                "comment" => {}
                _ if sloppy => {}
                _ => return Err(HelperError::UnknownOption(option.into())),
            }
        }
    }
    if fake {
        return Ok(HelperRun::Fake);
    }
    if read_only {
        command.push("--read-only".into());
    }
    command.push("--daemon".into());
    Ok(HelperRun::Mount(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<HelperRun, HelperError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        translate(&args)
    }

    fn mount(args: &[&str]) -> Vec<String> {
        match run(args).unwrap() {
            HelperRun::Mount(command) => command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            HelperRun::Fake => panic!("fake"),
        }
    }

    #[test]
    fn only_the_helpers_own_name_makes_a_helper() {
        assert!(invoked_as_helper(OsStr::new("/sbin/mount.fetchfs")));
        assert!(invoked_as_helper(OsStr::new("mount.fetchfs")));
        assert!(!invoked_as_helper(OsStr::new("/usr/bin/fetchfs")));
    }

    #[test]
    fn an_fstab_line_becomes_a_daemon_mount() {
        let options =
            "config=/etc/fetchfs/a.toml,allow_other,x-systemd.automount,_netdev,defaults,ro";
        assert_eq!(
            mount(&["mount.fetchfs", "fetchfs", "/mnt/a", "-o", options]),
            [
                "fetchfs",
                "mount",
                "/mnt/a",
                "--config",
                "/etc/fetchfs/a.toml",
                "--allow-other",
                "--read-only",
                "--daemon"
            ]
        );
        assert_eq!(
            mount(&[
                "mount.fetchfs",
                "fetchfs",
                "/mnt/a",
                "-n",
                "-o",
                "cache-dir=/var/cache/f,max_cache_size=10G,metrics-addr=127.0.0.1:9184,offline,no_passthrough,any_host"
            ]),
            [
                "fetchfs",
                "mount",
                "/mnt/a",
                "--cache-dir",
                "/var/cache/f",
                "--max-cache-size",
                "10G",
                "--metrics-addr",
                "127.0.0.1:9184",
                "--offline",
                "--no-passthrough",
                "--any-host",
                "--read-only",
                "--daemon"
            ]
        );
        assert_eq!(
            mount(&["mount.fetchfs", "fetchfs", "/mnt/a"]),
            ["fetchfs", "mount", "/mnt/a", "--read-only", "--daemon"]
        );
        assert_eq!(
            mount(&[
                "mount.fetchfs",
                "fetchfs",
                "/mnt/a",
                "-o",
                "rw,writable_control"
            ]),
            ["fetchfs", "mount", "/mnt/a", "--daemon"]
        );
    }

    #[test]
    fn bad_lines_are_refused_clearly_and_sloppy_passes_over_unknown_options() {
        assert_eq!(run(&["mount.fetchfs", "/mnt/a"]), Err(HelperError::Usage));
        assert_eq!(
            run(&["mount.fetchfs", "fetchfs", "/mnt/a", "-o"]),
            Err(HelperError::Usage)
        );
        assert_eq!(
            run(&["mount.fetchfs", "fetchfs", "/mnt/a", "-o", "colour=blue"]),
            Err(HelperError::UnknownOption("colour=blue".into()))
        );
        assert_eq!(
            run(&["mount.fetchfs", "fetchfs", "/mnt/a", "-o", "config"]),
            Err(HelperError::MissingValue("config".into()))
        );
        assert_eq!(
            mount(&[
                "mount.fetchfs",
                "fetchfs",
                "/mnt/a",
                "-s",
                "-o",
                "colour=blue"
            ]),
            ["fetchfs", "mount", "/mnt/a", "--read-only", "--daemon"]
        );
        assert_eq!(
            run(&[
                "mount.fetchfs",
                "fetchfs",
                "/mnt/a",
                "-f",
                "-o",
                "allow_other"
            ]),
            Ok(HelperRun::Fake)
        );
    }
}

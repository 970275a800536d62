//! The binary's edge: parse the command line, run one command, turn errors
//! into one clear line and an exit code.

mod control;
mod docs;
mod helper;
mod mount;
mod mounts;
mod stats;
mod status;
mod top;
mod umount;
mod verify;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::control::ControlFile;

#[derive(Debug, Parser)]
#[command(
    name = "fetchfs",
    version,
    about = "Mount URLs as files, backed by a persistent content-addressed cache",
    long_about = "Mount URLs as files, backed by a persistent content-addressed cache.\n\n\
        MOUNTPOINT/NAME/a/b is the origin NAME's URL/a/b. The first read of a path fetches \
        the body into the cache; later reads come from local disk, revalidated with the \
        origin as RFC 9111 says. MOUNTPOINT/.fetchfs/ holds stats, metrics, status, events \
        and the invalidate, evict and prefetch command files.",
    after_long_help = "Files: /etc/fetchfs/*.toml (configs), /var/cache/fetchfs (cache dirs of \
        the system units), ~/.cache/fetchfs (the default cache dir). \
        Documentation: /usr/share/doc/fetchfs/ (README.md, CONFIGURATION.md, CONTROL.md, \
        SEMANTICS.md). See also mount.fetchfs(8), fusermount3(1)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mount origins at MOUNTPOINT; stays in the foreground until unmounted, Ctrl-C or SIGTERM.
    Mount(MountArgs),
    /// Unmount a fetchfs mount and wait until its daemon has exited.
    #[command(alias = "unmount")]
    Umount {
        /// A mounted fetchfs.
        mountpoint: PathBuf,
    },
    /// List the fetchfs mounts on this machine: mountpoint, pid, cache dir, size, hit rate, origins.
    Status {
        /// Only these mounts [default: all fetchfs mounts].
        mountpoints: Vec<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the mount's cache figures as a table.
    Stats {
        /// A mounted fetchfs.
        mountpoint: PathBuf,
    },
    /// A live view of a mount: hits, misses, throughput and the downloads in flight; q quits.
    Top {
        /// A mounted fetchfs.
        mountpoint: PathBuf,
        /// Seconds between frames.
        #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
        interval: f64,
        /// Stop after N frames (where stdout is not a terminal, frames follow one another).
        #[arg(short = 'n', long, value_name = "N")]
        frames: Option<u64>,
    },
    /// Make matching entries stale: their next lookup revalidates with the origin.
    Invalidate {
        mountpoint: PathBuf,
        /// Mount paths (/origin/a/b), URLs of configured origins, or globs (*, ?, [..], **).
        #[arg(required = true)]
        patterns: Vec<String>,
    },
    /// Drop matching entries, and bodies nothing else points at.
    Evict {
        mountpoint: PathBuf,
        /// Mount paths (/origin/a/b), URLs of configured origins, or globs (*, ?, [..], **).
        #[arg(required = true)]
        patterns: Vec<String>,
    },
    /// Re-hash every blob and check the index against the disk (the cache dir must not be mounted).
    Verify {
        /// The cache dir [default: $XDG_CACHE_HOME/fetchfs or ~/.cache/fetchfs].
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Drop broken blobs and their entries, and delete stray files.
        #[arg(long)]
        repair: bool,
    },
    /// Fetch these files into the cache now, with a progress bar.
    Prefetch {
        mountpoint: PathBuf,
        /// Files through the mount (mnt/o/x, /mnt/o/x) or inside it (o/x, /o/x).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print a shell completion script: `fetchfs completions bash > /etc/bash_completion.d/fetchfs`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (fetchfs.1, fetchfs-COMMAND.1, mount.fetchfs.8) into DIR.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// An empty directory to mount on.
    pub mountpoint: PathBuf,
    /// Where blobs and the index live [default: $XDG_CACHE_HOME/fetchfs or ~/.cache/fetchfs].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// An origin: MOUNTPOINT/NAME/p is URL/p. May be given several times.
    #[arg(long = "origin", value_name = "NAME=URL")]
    pub origins: Vec<String>,
    /// A TOML config file; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve MOUNTPOINT/https/<host>/... and MOUNTPOINT/http/... for any host.
    #[arg(long)]
    pub any_host: bool,
    /// Evict least recently used bodies beyond this size (e.g. "20 GiB").
    #[arg(long, value_name = "SIZE")]
    pub max_cache_size: Option<String>,
    /// Never contact origins; serve only what is cached.
    #[arg(long)]
    pub offline: bool,
    /// Let other users access the mount.
    #[arg(long)]
    pub allow_other: bool,
    /// Read stored bodies through the daemon, not by kernel passthrough.
    #[arg(long)]
    pub no_passthrough: bool,
    /// Mount read-only (`ro` in /proc/mounts): the control folder's command
    /// files cannot be written; `fetchfs invalidate|evict` use the control socket.
    #[arg(long)]
    pub read_only: bool,
    /// Serve GET /metrics (the .fetchfs/metrics text) over HTTP for Prometheus, e.g. 127.0.0.1:9184.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_addr: Option<String>,
    /// Detach once the mount is ready.
    #[arg(long)]
    pub daemon: bool,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// `--interval` as a duration: at least 0.1 s, and a garbage value (NaN,
/// infinite) is the default second.
fn interval_of(seconds: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(seconds.max(0.1))
        .unwrap_or(std::time::Duration::from_secs(1))
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match args.first() {
        Some(argv0) if helper::invoked_as_helper(argv0) => match helper::translate(&args) {
            Ok(helper::HelperRun::Mount(command)) => Cli::parse_from(command),
            Ok(helper::HelperRun::Fake) => return 0,
            Err(error) => {
                eprintln!("mount.fetchfs: {error}");
                // mount(8)'s code for a wrong invocation.
                return 1;
            }
        },
        _ => Cli::parse_from(args),
    };
    let result = match cli.command {
        Command::Mount(args) => mount::run(args),
        Command::Umount { mountpoint } => umount::run(&mountpoint),
        Command::Status { mountpoints, json } => status::run(&mountpoints, json),
        Command::Stats { mountpoint } => stats::run(&mountpoint),
        Command::Top {
            mountpoint,
            interval,
            frames,
        } => top::run(&mountpoint, interval_of(interval), frames),
        Command::Invalidate {
            mountpoint,
            patterns,
        } => control::write_patterns(&mountpoint, ControlFile::Invalidate, &patterns),
        Command::Evict {
            mountpoint,
            patterns,
        } => control::write_patterns(&mountpoint, ControlFile::Evict, &patterns),
        Command::Prefetch { mountpoint, paths } => control::prefetch(&mountpoint, &paths),
        Command::Completions { shell } => docs::completions(shell),
        Command::Manpages { dir } => docs::manpages(&dir),
        Command::Verify { cache_dir, repair } => {
            let cache_dir = cache_dir.unwrap_or_else(crate::config::default_cache_dir);
            verify::run(&cache_dir, repair)
        }
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("fetchfs: {error:#}");
            1
        }
    }
}

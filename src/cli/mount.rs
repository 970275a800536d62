//! `fetchfs mount`: open the cache, mount, serve until told to stop, unmount.
//!
//! Stopping: Ctrl-C and SIGTERM unmount. If a process still holds a file open
//! the unmount is busy, so the mount is detached and its FUSE connection
//! aborted: the mountpoint is an ordinary directory again either way, never
//! "Transport endpoint is not connected". An external `umount` ends the
//! session and the process exits cleanly too.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};
use fuser::{MountOption, SessionACL};

use super::MountArgs;
use super::mounts::{self, MountEntry};
use crate::cache::Cache;
use crate::config::{Config, OriginProxy, Overrides};
use crate::control::exporter;
use crate::control::status::Status;
use crate::fs::FetchFs;
use crate::origin::Proxies;
use crate::store::Store;

/// FUSE dispatch threads; replies that wait on the network are answered from tokio tasks.
const DISPATCH_THREADS: usize = 4;
/// The kernel's read-ahead for the mount: bigger reads, fewer round trips.
const READ_AHEAD_KB: u32 = 1024;
/// glibc malloc arenas the daemon's threads share (see `limit_malloc_arenas`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;
/// How long a busy unmount may take before the connection is aborted.
const UNMOUNT_GRACE: Duration = Duration::from_secs(2);
/// How long the session may take to end once its connection is aborted.
const SESSION_END_WAIT: Duration = Duration::from_secs(1);
/// How long the store may take to close (its last fsyncs) once the
/// session ended.
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(60);
/// Where the FUSE control file system lists connections.
const FUSECTL: &str = "/sys/fs/fuse/connections";

enum Event {
    Signal,
    SessionEnded,
}

pub fn run(args: MountArgs) -> anyhow::Result<()> {
    limit_malloc_arenas();
    raise_open_files_limit();
    // The cache dir, its files and the log are the mount owner's alone: they
    // hold what the origins served, some of it private.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let mountpoint = check_mountpoint(&args.mountpoint)?;
    let config = Config::load(&Overrides {
        config_file: args.config.clone(),
        cache_dir: args.cache_dir.clone(),
        origins: args.origins.clone(),
        any_host: args.any_host,
        max_cache_size: args.max_cache_size.clone(),
        offline: args.offline,
        allow_other: args.allow_other,
        no_passthrough: args.no_passthrough,
        read_only: args.read_only,
        metrics_addr: args.metrics_addr.clone(),
    })?;
    if args.daemon {
        return daemonize(|ready| {
            let log = LogTarget::detached(&config.cache_dir)?;
            let status = Status::of_mount(&config, &mountpoint, log.describe());
            init_logging(&args, log);
            serve(&config, status, Some(ready))
        });
    }
    init_logging(&args, LogTarget::Stderr);
    serve(
        &config,
        Status::of_mount(&config, &mountpoint, LogTarget::Stderr.describe()),
        None,
    )
}

/// Every open file, download and socket holds a descriptor (and the index
/// up to 256 tables): the soft limit (often 1024) goes up to the hard one.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!("raising the open files limit: {error}");
    }
}

/// glibc gives every thread that allocates under contention an arena of its
/// own (up to 8 per core) and seldom hands their free pages back. The
/// daemon's threads (FUSE dispatch, tokio workers, the blocking pool) all
/// allocate, so its RSS kept growing with the work done while its heap did
/// not: 187 MiB after 240,000 prefetches, 110 MiB with two arenas. Set
/// before any thread starts; other allocators ignore it.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the C allocator; it is called
    // before the process starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// Panics go to the log, which is where a daemon's stderr is not: the
/// handlers contain them, and this says where they came from.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::capture();
        tracing::error!("{info}\n{backtrace}");
    }));
}

fn check_mountpoint(path: &Path) -> anyhow::Result<PathBuf> {
    let meta = fs::metadata(path).with_context(|| format!("mountpoint {}", path.display()))?;
    if !meta.is_dir() {
        bail!("mountpoint {} is not a directory", path.display());
    }
    let path = path.canonicalize()?;
    if let Some(MountEntry { source, fstype, .. }) = mounts::at(&mounts::current(), &path) {
        // A second mount would hide the first, and each unmount would then
        // take the wrong one.
        bail!(
            "{} is already a mount point ({fstype} from {source}); unmount it first \
             (fetchfs mounts end with `umount {}`)",
            path.display(),
            path.display()
        );
    }
    Ok(path)
}

/// Mounts and serves until a signal or an external unmount. `ready` is told
/// once the mount answers requests (daemon mode).
fn serve(config: &Config, status: Status, ready: Option<OwnedFd>) -> anyhow::Result<()> {
    log_panics();
    // First: a port in use fails the mount before anything is opened.
    let metrics_listener = config.metrics_addr.map(exporter::bind).transpose()?;
    let mountpoint = status.mountpoint.clone();
    let store = Store::open(&config.cache_dir)?;
    let secrets = credential_header_names(config);
    match store.index.scrub_request_headers(&secrets) {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed stored credentials from {n} cache record(s)"),
        Err(error) => tracing::warn!("removing stored credentials: {error}"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fetchfs-io")
        .build()
        .context("starting the I/O runtime")?;
    let cache = Cache::new(
        store,
        config.offline,
        config.max_cache_size,
        config.proxy_env.clone(),
    );
    cache.set_other_users(config.allow_other);
    if let Some(shared) = &config.shared {
        // Lazy: the mount never waits for Redis.
        let _runtime = runtime.enter();
        let journal = cache.fleet_journal();
        let fleet = crate::shared::Fleet::new(shared.clone(), cache.telemetry().clone(), journal)
            .with_context(|| format!("the fleet tier {}", shared.url))?;
        cache.set_fleet(fleet);
    }
    if let Some(listener) = metrics_listener {
        runtime.spawn(exporter::serve(listener, Arc::downgrade(&cache)));
    }
    let strays = cache.remove_strays_in_background();
    let control_socket = crate::fs::socket::bind().context("binding the control socket")?;
    let fleet = cache.fleet();
    let fs = FetchFs::new(config, status, cache, runtime.handle().clone());
    let control_socket = crate::fs::socket::serve(
        control_socket,
        fs.command_runner(),
        nix::unistd::getuid().as_raw(),
    )
    .context("starting the control socket")?;
    if let Some(fleet) = fleet {
        // Through the socket's hold, which lets go of the cache at the end.
        let commands = control_socket.clone();
        let _runtime = runtime.enter();
        fleet.follow_commands(move |command, lines| {
            let file = crate::control::ControlFile::from_name(command.as_bytes());
            match (file, commands.runner()) {
                (Some(file), Some(runner)) if file.is_command() => {
                    runner.apply_from_fleet(file, lines);
                }
                _ => tracing::debug!("not applying the fleet's command {command:?}"),
            }
        });
    }
    let notifier_slot = fs.notifier_slot();

    let mut options = fuser::Config::default();
    options.mount_options = vec![
        MountOption::FSName("fetchfs".into()),
        MountOption::Subtype("fetchfs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    if config.read_only {
        // `ro` in /proc/mounts; the kernel refuses every write, the command
        // files' too: commands then come through the control socket.
        options.mount_options.push(MountOption::RO);
    }
    if nix::unistd::geteuid().is_root() {
        // As root fuser calls mount(2) itself and makes Subtype only the
        // source's name; the kernel's `subtype=` option is what shows the
        // type as `fuse.fetchfs` in /proc/mounts (`findmnt -t`, `df -t`).
        // fusermount3, for other users, turns Subtype into it alone.
        options
            .mount_options
            .push(MountOption::CUSTOM("subtype=fetchfs".into()));
    }
    if config.allow_other {
        options.acl = SessionACL::All;
    }
    options.n_threads = Some(DISPATCH_THREADS);
    options.clone_fd = true;
    let mut session = fuser::Session::new(fs, &mountpoint, &options)
        .with_context(|| format!("mounting on {}", mountpoint.display()))?;
    let (events, next_event) = mpsc::channel();
    let signal_events = events.clone();
    ctrlc::set_handler(move || {
        let _ = signal_events.send(Event::Signal);
    })
    .context("installing the signal handler")?;
    let _ = notifier_slot.set(session.notifier());
    let mut unmounter = session.unmount_callable();
    let session_thread = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            let result = session.run();
            let _ = events.send(Event::SessionEnded);
            result
        })?;
    // Only now: a stat of the mountpoint is answered by the session just started.
    let device = fs::metadata(&mountpoint).map(|m| m.dev()).unwrap_or(0);
    raise_read_ahead(device);
    tracing::info!(
        "mounted {} (cache {})",
        mountpoint.display(),
        config.cache_dir.display()
    );
    log_proxies(config);
    if let Some(addr) = config.metrics_addr {
        tracing::info!("serving http://{addr}{}", exporter::METRICS_PATH);
    }
    if let Some(ready) = ready {
        let _ = File::from(ready).write_all(b"ok\n");
    }

    let mut session_ended = true;
    if let Ok(Event::Signal) = next_event.recv() {
        tracing::info!("unmounting {}", mountpoint.display());
        if let Err(error) = unmounter.unmount() {
            tracing::warn!(
                "unmount of {} failed ({error}); detaching it",
                mountpoint.display()
            );
            detach(&mountpoint, device);
        }
        session_ended = matches!(
            next_event.recv_timeout(UNMOUNT_GRACE),
            Ok(Event::SessionEnded)
        );
        if !session_ended {
            abort_connection(device);
            // The aborted connection ends the session; its threads own the
            // cache, so wait for them before the index is closed.
            session_ended = matches!(
                next_event.recv_timeout(SESSION_END_WAIT),
                Ok(Event::SessionEnded)
            );
        }
    }
    // The socket holds the cache too; it must let go for the store to close.
    control_socket.close();
    // The session thread tells that the session ended, then drops the
    // filesystem, and with it the store, whose last round of fsyncs after a
    // burst of commits takes a while: the process must not end under it.
    let closing_since = std::time::Instant::now();
    while session_ended
        && !session_thread.is_finished()
        && closing_since.elapsed() < STORE_CLOSE_WAIT
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    if session_thread.is_finished() {
        if let Ok(Err(error)) = session_thread.join() {
            tracing::warn!("FUSE session ended with: {error}");
        }
    } else {
        tracing::warn!("the FUSE session did not end in time; exiting anyway");
    }
    // Before the tasks that hold the store go: the last holder closes it
    // cleanly.
    drop(strays);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Says where each origin's requests go, when a proxy is in play anywhere.
fn log_proxies(config: &Config) {
    let uses_proxy = config.proxy_env.is_set()
        || config
            .origins
            .iter()
            .any(|o| o.proxy != OriginProxy::Environment);
    if !uses_proxy {
        return;
    }
    for origin in &config.origins {
        let proxies = Proxies::of(origin, &config.proxy_env);
        tracing::info!("origin {:?}: {}", origin.name, proxies.describe());
    }
    if config.any_host {
        let proxies = Proxies::from_env(&config.proxy_env);
        tracing::info!("--any-host hosts: {}", proxies.describe());
    }
}

/// The request headers that carry credentials: the standard ones, and every
/// header an origin is configured to send.
fn credential_header_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = ["authorization", "proxy-authorization", "cookie"]
        .into_iter()
        .map(String::from)
        .collect();
    for origin in &config.origins {
        names.extend(
            origin
                .headers
                .iter()
                .map(|(name, _)| name.to_ascii_lowercase()),
        );
    }
    names
}

/// Lazy unmount: the mountpoint is free at once, open files keep working until closed.
fn detach(mountpoint: &Path, device: u64) {
    if let Err(error) = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH) {
        tracing::warn!("detaching {}: {error}", mountpoint.display());
        abort_connection(device);
    }
}

/// Ends the FUSE connection so nothing waits on this process any more.
/// Ends the FUSE connection so nothing waits on this process any more. The
/// control file system (fusectl) is mounted first where it is missing, as it
/// is in many containers; without it the connection ends when the process
/// exits.
fn abort_connection(device: u64) {
    let path = format!("{FUSECTL}/{}/abort", nix::sys::stat::minor(device));
    if fs::write(&path, "1").is_ok() {
        return;
    }
    let mounted = nix::mount::mount(
        Some("fusectl"),
        FUSECTL,
        Some("fusectl"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    match mounted
        .map_err(std::io::Error::from)
        .and_then(|()| fs::write(&path, "1"))
    {
        Ok(()) => tracing::debug!("mounted {FUSECTL} to abort the connection"),
        Err(error) => tracing::debug!("{path}: {error}"),
    }
}

fn raise_read_ahead(device: u64) {
    let (major, minor) = (nix::sys::stat::major(device), nix::sys::stat::minor(device));
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    if let Err(error) = fs::write(&path, READ_AHEAD_KB.to_string()) {
        tracing::debug!("cannot raise read-ahead ({path}): {error}");
    }
}

/// Forks; the child serves and the parent exits once the child reports the
/// mount ready (or prints the child's error and fails).
fn daemonize(serve: impl FnOnce(OwnedFd) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let (read_end, write_end) = nix::unistd::pipe().context("creating the readiness pipe")?;
    // SAFETY: no other thread exists yet (nothing has been spawned before this
    // point), so the child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(write_end);
            // One line: "ok", or the child's error. The child keeps the pipe
            // open while it serves, so wait for the line, not for the end.
            let mut answer = String::new();
            let _ = BufReader::new(File::from(read_end)).read_line(&mut answer);
            match answer.as_str() {
                "ok\n" => Ok(()),
                "" => bail!("the daemon exited before the mount was ready"),
                message => bail!("{}", message.trim_end()),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(read_end);
            let _ = nix::unistd::setsid();
            let error_pipe = write_end.try_clone().ok();
            let result = serve(write_end);
            if let (Err(error), Some(pipe)) = (&result, error_pipe) {
                let _ = File::from(pipe).write_all(format!("{error:#}\n").as_bytes());
            }
            // SAFETY: see main.rs: no atexit handlers or C++ static destructors.
            unsafe { libc::_exit(if result.is_ok() { 0 } else { 1 }) }
        }
    }
}

/// Where the log goes.
enum LogTarget {
    /// In the foreground: stderr (which systemd puts in the journal).
    Stderr,
    /// Detached, under systemd: the journal, directly.
    Journal(tracing_journald::Layer),
    /// Detached elsewhere: `CACHE_DIR/fetchfs.log`.
    File(File, PathBuf),
}

impl LogTarget {
    /// The log of a daemon that detached: the journal when systemd started
    /// it (a mount unit or a service, which set `INVOCATION_ID` or
    /// `JOURNAL_STREAM`) and journald listens, else `CACHE_DIR/fetchfs.log`.
    /// Stdio goes to /dev/null.
    fn detached(cache_dir: &Path) -> anyhow::Result<LogTarget> {
        let under_systemd = ["INVOCATION_ID", "JOURNAL_STREAM"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        let target = match under_systemd.then(tracing_journald::layer) {
            Some(Ok(journal)) => {
                LogTarget::Journal(journal.with_syslog_identifier("fetchfs".into()))
            }
            _ => {
                fs::create_dir_all(cache_dir)
                    .with_context(|| format!("cache dir {}", cache_dir.display()))?;
                let path = cache_dir.join("fetchfs.log");
                let file = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .with_context(|| format!("opening the log {}", path.display()))?;
                LogTarget::File(file, path)
            }
        };
        let null = File::options().read(true).write(true).open("/dev/null")?;
        for target in [0, 1, 2] {
            // SAFETY: dup2 onto the standard descriptors of this freshly forked,
            // single-threaded child; both descriptors are valid.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), target) };
        }
        Ok(target)
    }

    /// For the `status` control file.
    fn describe(&self) -> String {
        match self {
            LogTarget::Stderr => "stderr".into(),
            LogTarget::Journal(_) => "journal".into(),
            LogTarget::File(_, path) => path.display().to_string(),
        }
    }
}

fn init_logging(args: &MountArgs, target: LogTarget) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let default = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "fetchfs=debug,info",
        (false, _) => "fetchfs=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match target {
        LogTarget::Stderr => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogTarget::Journal(journal) => registry.with(journal).try_init(),
        LogTarget::File(file, _) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(file)),
            )
            .try_init(),
    };
}

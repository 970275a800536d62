//! Writes to the command files (`invalidate`, `evict`, `prefetch`), applied
//! one way whether they come through the mount or the control socket.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, OnceLock};

use fuser::{Errno, INodeNo};

use super::errno;
use super::nodes::NodeTable;
use crate::cache::Cache;
use crate::control::ControlFile;
use crate::control::commands::{CommandError, Origins};
use crate::namespace::MountPath;
use crate::telemetry::EventKind;

/// Where a command comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// This mount's command files or control socket.
    Here,
    /// Another host, through the fleet tier's command stream.
    Fleet,
}

/// Why a command was not applied: the errno a writer of the command file
/// gets, and the reason.
#[derive(Debug)]
pub struct CommandFailed {
    pub errno: Errno,
    pub message: String,
}

/// Everything applying a command needs; cheap to clone.
#[derive(Clone)]
pub struct CommandRunner {
    pub(super) origins: Arc<Origins>,
    pub(super) cache: Arc<Cache>,
    /// Set once the session exists; the kernel forgets changed entries through it.
    pub(super) notifier: Arc<OnceLock<fuser::Notifier>>,
    pub(super) nodes: Arc<NodeTable>,
    pub(super) runtime: tokio::runtime::Handle,
}

impl CommandRunner {
    /// Parses and applies whole lines written to a command file, on the
    /// blocking pool (patterns read the index: never on a dispatch thread),
    /// then tells `done`: after the kernel forgot the changed entries, so
    /// a lookup right after the write sees the change.
    pub fn apply(
        &self,
        file: ControlFile,
        lines: Vec<u8>,
        done: impl FnOnce(Result<(), CommandFailed>) + Send + 'static,
    ) {
        self.apply_from(Source::Here, file, lines, done);
    }

    /// Applies a command another host of the fleet applied (see
    /// [`Cache::tell_fleet`]): here only, not told again.
    pub fn apply_from_fleet(&self, file: ControlFile, lines: Vec<u8>) {
        self.apply_from(Source::Fleet, file, lines, |_| {});
    }

    fn apply_from(
        &self,
        source: Source,
        file: ControlFile,
        lines: Vec<u8>,
        done: impl FnOnce(Result<(), CommandFailed>) + Send + 'static,
    ) {
        let runner = self.clone();
        self.runtime.spawn_blocking(move || {
            let from_fleet = source == Source::Fleet;
            match runner
                .origins
                .apply(file, &lines, &runner.cache, from_fleet)
            {
                Ok(applied) => {
                    if source == Source::Here
                        && matches!(file, ControlFile::Invalidate | ControlFile::Evict)
                    {
                        runner
                            .cache
                            .tell_fleet(file.name(), &applied.fleet_lines, &applied.urls);
                    }
                    for loc in applied.prefetch {
                        // Waits while the origin's queue is full.
                        if let Err(error) = runner.cache.queue_prefetch(loc) {
                            tracing::warn!("queueing a prefetch: {error}");
                        }
                    }
                    forget_entries(runner.notifier.get(), &runner.nodes, &applied.changed_paths);
                    done(Ok(()));
                }
                Err(error) => {
                    report_error(&runner.cache, file, &error);
                    done(Err(CommandFailed {
                        errno: errno::of_command(&error),
                        message: error.to_string(),
                    }));
                }
            }
        });
    }
}

/// A refused or failed command: one line in the log, one `error` event.
pub fn report_error(cache: &Cache, file: ControlFile, error: &CommandError) {
    if error.is_bad_input() {
        tracing::warn!(".fetchfs/{}: {error}", file.name());
    } else {
        tracing::error!(".fetchfs/{}: {error}", file.name());
    }
    cache.telemetry().events.emit(
        EventKind::Error,
        serde_json::json!({ "control": file.name(), "message": error.to_string() }),
    );
}

/// Makes the kernel forget the entries of these mount paths, so their next
/// lookup comes to the daemon. Never call it from a request handler or under
/// a lock handlers take: the kernel may need a dispatch thread to finish it.
fn forget_entries(notifier: Option<&fuser::Notifier>, nodes: &NodeTable, paths: &[MountPath]) {
    let Some(notifier) = notifier else {
        return;
    };
    for (parent, name) in paths.iter().filter_map(|path| nodes.entry_of(path)) {
        if let Err(error) = notifier.inval_entry(INodeNo(parent), OsStr::from_bytes(&name)) {
            tracing::debug!(
                "forgetting entry {:?}: {error}",
                String::from_utf8_lossy(&name)
            );
        }
    }
}

//! Power-loss durability, in the background, with group commit.
//!
//! A commit makes a body visible and survives a crash of the daemon at once:
//! the blob is renamed into place and the index entry written, and the
//! kernel keeps both whatever happens to the process. Surviving a power loss
//! needs fsyncs (the blob's data, its shard directory, the index's log), and
//! they are slow, so they happen here, off the read path: the syncer thread
//! takes every commit that came in the last few milliseconds, fsyncs them
//! together, syncs the index log once, and records how far it got
//! ([`Durability::synced`]). `prefetch` and `fsync(2)` wait for it.
//!
//! After a power loss the index may name blobs whose data never reached the
//! disk; those are the ones committed after the last recorded sync, and the
//! store checks them when it next opens uncleanly (see `Store::open`).
//!
//! Being the store's one background thread, the syncer also writes the
//! access times that opens noted in memory, about once a second (see
//! `index/touches.rs`): it wakes at least that often for them.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::index::{Index, TOUCH_FLUSH_INTERVAL};

/// How long the syncer gathers commits before one round of fsyncs.
const GROUP_WINDOW: Duration = Duration::from_millis(20);

/// The state of power-loss durability, shared with the syncer thread.
pub struct Durability {
    state: Mutex<State>,
    /// Wakes the syncer when work arrives, and waiters when a round ends.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Blob files committed since the last round, with their sequence numbers.
    pending: Vec<(PathBuf, u64)>,
    /// Every commit up to this sequence number is on disk.
    synced: u64,
    /// The last round's error, if it failed (it is retried with the next).
    error: Option<String>,
    /// Rounds ended so far, to tell a waiter a round failed since it came.
    rounds: u64,
    stopping: bool,
}

impl Durability {
    /// Starts the syncer thread for `index`, whose last recorded sync was `synced`.
    pub fn start(index: Arc<Index>, synced: u64) -> io::Result<(Arc<Durability>, Syncer)> {
        let durability = Arc::new(Durability {
            state: Mutex::new(State {
                synced,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("fetchfs-sync".into())
            .spawn({
                let durability = Arc::clone(&durability);
                move || durability.run(&index)
            })?;
        let syncer = Syncer {
            durability: Arc::clone(&durability),
            thread: Some(thread),
        };
        Ok((durability, syncer))
    }

    /// A blob was committed as `seq`: make it durable soon.
    pub fn committed(&self, blob: PathBuf, seq: u64) {
        self.state.lock().pending.push((blob, seq));
        self.changed.notify_all();
    }

    /// Every commit up to this sequence number survives a power loss.
    pub fn synced(&self) -> u64 {
        self.state.lock().synced
    }

    /// Waits until commit `seq` survives a power loss; the error of a round
    /// that failed meanwhile, like fsync(2) on a failing disk. (The syncer
    /// goes on retrying; a later wait may succeed.)
    pub fn wait(&self, seq: u64) -> Result<(), String> {
        let mut state = self.state.lock();
        let came_at = state.rounds;
        while state.synced < seq {
            if let Some(error) = &state.error
                && state.rounds > came_at
            {
                return Err(error.clone());
            }
            if state.stopping {
                return Err("the store is closing".into());
            }
            self.changed.wait(&mut state);
        }
        Ok(())
    }

    fn run(&self, index: &Index) {
        loop {
            if let Err(error) = index.flush_touches_if_due() {
                tracing::debug!("writing access times: {error}");
            }
            let batch = {
                let mut state = self.state.lock();
                if state.pending.is_empty() && !state.stopping {
                    self.changed.wait_for(&mut state, TOUCH_FLUSH_INTERVAL);
                }
                if state.pending.is_empty() {
                    if state.stopping {
                        return;
                    }
                    continue;
                }
                if !state.stopping {
                    // Let a burst of commits join this round.
                    self.changed.wait_for(&mut state, GROUP_WINDOW);
                }
                std::mem::take(&mut state.pending)
            };
            let result = sync_round(index, &batch);
            let mut state = self.state.lock();
            state.rounds += 1;
            match result {
                Ok(()) => {
                    let last = batch.iter().map(|(_, seq)| *seq).max().unwrap_or(0);
                    state.synced = state.synced.max(last);
                    state.error = None;
                    // Recorded in the index; its own log is synced next round.
                    if let Err(error) = index.record_synced(state.synced) {
                        tracing::debug!("recording the synced commit: {error}");
                    }
                }
                Err(error) if state.stopping => {
                    // The last round, on the way out: what it could not
                    // sync is checked at the next open (it is unclean).
                    tracing::warn!("making commits durable before stopping: {error}");
                    state.error = Some(error.to_string());
                    self.changed.notify_all();
                    return;
                }
                Err(error) => {
                    tracing::warn!("making commits durable: {error}; trying again");
                    state.error = Some(error.to_string());
                    state.pending.extend(batch);
                }
            }
            self.changed.notify_all();
            if state.error.is_some() {
                drop(state);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// The directories whose entries lead to the blob at `path`
/// (`blobs/ab/cd/<hash>`): `cd`, `ab` and `blobs` itself, since a new shard
/// is a new entry in its parent and only an fsync of that parent keeps it.
fn directories_holding(path: &Path) -> impl Iterator<Item = &Path> {
    path.ancestors().skip(1).take(3)
}

/// One round: every blob's data, every directory leading to it, then the
/// index log.
fn sync_round(index: &Index, batch: &[(PathBuf, u64)]) -> io::Result<()> {
    let mut directories = BTreeSet::new();
    for (path, _) in batch {
        match File::open(path) {
            Ok(file) => file.sync_all()?,
            // Evicted since: nothing to make durable.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        }
        directories.extend(directories_holding(path).map(Path::to_path_buf));
    }
    for directory in directories {
        File::open(&directory)?.sync_all()?;
    }
    index.sync_log().map_err(io::Error::other)
}

/// Owns the syncer thread: dropping it finishes the pending round and stops it.
pub struct Syncer {
    durability: Arc<Durability>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.durability.state.lock().stopping = true;
        self.durability.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding 12: a new shard directory is an entry in `blobs/`,
    /// which was never fsynced, so a power loss could lose a whole shard.
    #[test]
    fn a_round_syncs_every_directory_down_from_blobs() {
        let blob = Path::new("/cache/blobs/ab/cd/abcd0123");
        let directories: Vec<&Path> = directories_holding(blob).collect();
        assert_eq!(
            directories,
            [
                Path::new("/cache/blobs/ab/cd"),
                Path::new("/cache/blobs/ab"),
                Path::new("/cache/blobs"),
            ]
        );
    }

    fn started() -> (tempfile::TempDir, Arc<Durability>, Syncer) {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(Index::open(&dir.path().join("index")).unwrap());
        let (durability, syncer) = Durability::start(index, 0).unwrap();
        (dir, durability, syncer)
    }

    #[test]
    fn a_wait_returns_once_its_commit_is_synced() {
        let (dir, durability, _syncer) = started();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"body").unwrap();
        durability.committed(blob, 1);
        assert_eq!(durability.wait(1), Ok(()));
        assert!(durability.synced() >= 1);
    }

    #[test]
    fn a_wait_gets_the_error_of_a_failed_round_instead_of_waiting_for_ever() {
        let (dir, durability, _syncer) = started();
        // A path below a regular file cannot be opened (ENOTDIR), every round.
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        durability.committed(file.join("blob"), 1);
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiter = Arc::clone(&durability);
        std::thread::spawn(move || sender.send(waiter.wait(1)));
        let result = receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("the wait never returned");
        assert!(result.is_err(), "{result:?}");
    }
}

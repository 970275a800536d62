//! Kernel passthrough for stored bodies (Linux 6.9 and later).
//!
//! A stored body never changes, so once it is open the daemon has nothing to
//! add to its reads: the kernel can read the blob file itself, page cache,
//! read-ahead and `mmap` included, as if it were a local file. An open of a
//! blob inode registers the blob file as the inode's backing file and answers
//! `FOPEN_PASSTHROUGH`; reads and `mmap` then never reach the daemon.
//!
//! The kernel wants every open file of an inode to use the same backing file,
//! and refuses to mix passthrough and cached opens of one inode. So one
//! backing id is kept per blob inode while any of its files is open, and
//! shared by all of them. The first failure to register a backing file (no
//! `CAP_SYS_ADMIN`, a cache dir stacked deeper than the kernel allows, an old
//! kernel) turns passthrough off for the rest of the mount, with one warning:
//! inodes already open through it stay so, every new one is read through the
//! daemon, and no inode is ever open both ways.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fuser::{BackingId, ReplyOpen};
use parking_lot::Mutex;

#[derive(Default)]
pub struct Passthrough {
    /// Whether new inodes are opened through the kernel.
    enabled: AtomicBool,
    /// Open blob inodes that have a backing file, and the file handles using it.
    backing: Mutex<HashMap<u64, Backing>>,
    /// The inode of each file handle opened through passthrough.
    handles: Mutex<HashMap<u64, u64>>,
}

struct Backing {
    id: Arc<BackingId>,
    handles: usize,
}

impl Passthrough {
    /// How deep the kernel must allow stacking for the blob files in
    /// `cache_dir` to back a passthrough file: 1 on a plain filesystem, 2 on
    /// an overlayfs (a container's root). Over 1, nothing can be stacked on
    /// the mount itself, so 2 only where it is needed.
    pub fn stack_depth(cache_dir: &Path) -> u32 {
        match nix::sys::statfs::statfs(cache_dir) {
            Ok(fs) if fs.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC => 2,
            _ => 1,
        }
    }

    /// The kernel agreed to passthrough at init.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The backing file for file handle `fh` of blob inode `ino`, whose blob
    /// is open as `file`: the inode's current one, or `file` registered now.
    /// `None`: read this handle through the daemon.
    pub fn open(
        &self,
        fh: u64,
        ino: u64,
        file: &File,
        reply: &ReplyOpen,
    ) -> Option<Arc<BackingId>> {
        let mut backing = self.backing.lock();
        let id = match backing.get_mut(&ino) {
            Some(existing) => {
                existing.handles += 1;
                Arc::clone(&existing.id)
            }
            None if self.is_enabled() => match reply.open_backing(file) {
                Ok(id) => {
                    let id = Arc::new(id);
                    let entry = Backing {
                        id: Arc::clone(&id),
                        handles: 1,
                    };
                    backing.insert(ino, entry);
                    id
                }
                Err(error) => {
                    if self.enabled.swap(false, Ordering::Relaxed) {
                        tracing::warn!(
                            "kernel passthrough is off for this mount, stored files are \
                             read through the daemon: registering a backing file: {error}"
                        );
                    }
                    return None;
                }
            },
            None => return None,
        };
        self.handles.lock().insert(fh, ino);
        Some(id)
    }

    /// File handle `fh` was released; the last one of an inode lets its
    /// backing file go.
    pub fn release(&self, fh: u64) {
        let Some(ino) = self.handles.lock().remove(&fh) else {
            return;
        };
        let mut backing = self.backing.lock();
        if let Some(entry) = backing.get_mut(&ino) {
            entry.handles -= 1;
            if entry.handles == 0 {
                backing.remove(&ino);
            }
        }
    }
}

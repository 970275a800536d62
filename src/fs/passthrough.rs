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
//!
//! So an inode's open files are either all passthrough (its backing id is in
//! the table) or none: a release of an inode in the table is one of the
//! files counted there, and nothing else needs to remember which file handle
//! went which way.

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
    /// Open blob inodes that have a backing file, and how many open files
    /// use it.
    backing: Mutex<HashMap<u64, Backing>>,
}

struct Backing {
    id: Arc<BackingId>,
    open_files: usize,
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

    /// The backing file for a new open file of blob inode `ino`, whose blob
    /// is open as `file`: the inode's current one, or `file` registered now.
    /// `None`: read this file through the daemon.
    pub fn open(&self, ino: u64, file: &File, reply: &ReplyOpen) -> Option<Arc<BackingId>> {
        let mut backing = self.backing.lock();
        match backing.get_mut(&ino) {
            Some(existing) => {
                existing.open_files += 1;
                Some(Arc::clone(&existing.id))
            }
            None if self.enabled.load(Ordering::Relaxed) => match reply.open_backing(file) {
                Ok(id) => {
                    let id = Arc::new(id);
                    let entry = Backing {
                        id: Arc::clone(&id),
                        open_files: 1,
                    };
                    backing.insert(ino, entry);
                    Some(id)
                }
                Err(error) => {
                    if self.enabled.swap(false, Ordering::Relaxed) {
                        tracing::warn!(
                            "kernel passthrough is off for this mount, stored files are \
                             read through the daemon: registering a backing file: {error}"
                        );
                    }
                    None
                }
            },
            None => None,
        }
    }

    /// An open file of inode `ino` was released; the last one of an inode
    /// read through the kernel lets its backing file go.
    pub fn release(&self, ino: u64) {
        let mut backing = self.backing.lock();
        if let Some(entry) = backing.get_mut(&ino) {
            entry.open_files -= 1;
            if entry.open_files == 0 {
                backing.remove(&ino);
            }
        }
    }
}

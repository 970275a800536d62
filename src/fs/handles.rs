//! Open files and directories, by file handle number.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::{DirEntry, OpenBlob, Reader};
use crate::control::ControlFile;

#[derive(Clone)]
pub enum Handle {
    /// A stored body: reads go straight to its blob file.
    Stored(Arc<OpenBlob>),
    /// A body still downloading: reads wait for their bytes.
    Streaming(Arc<Reader>),
    /// A control file's content, rendered at open.
    Control(Arc<Vec<u8>>),
    /// A command file open for writing patterns.
    Command(ControlFile),
    /// The `events` log: reads wait at its end.
    Events,
    /// A directory's entries with their inodes, listed at open.
    Dir(Arc<Vec<(u64, DirEntry)>>),
}

#[derive(Default)]
pub struct HandleTable {
    handles: parking_lot::Mutex<HashMap<u64, Handle>>,
    next: AtomicU64,
}

impl HandleTable {
    pub fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.handles.lock().insert(fh, handle);
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Handle> {
        self.handles.lock().get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Handle> {
        self.handles.lock().remove(&fh)
    }
}

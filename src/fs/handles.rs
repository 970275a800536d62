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
    Command(Arc<CommandWriter>),
    /// The `events` log: reads wait at its end.
    Events,
    /// A directory's entries with their inodes, listed at open.
    Dir(Arc<Vec<(u64, DirEntry)>>),
}

/// A command file open for writing: lines are applied once whole.
///
/// Writers that go through stdio (`sed`, `awk`, `xargs printf`) flush at
/// 4 KiB, in the middle of a line; applying the first half of
/// `/debian/dists/bookworm/Release` cut after `dists/` would evict all of
/// `dists/`. So each write applies only its complete lines, and the rest
/// waits for the next write or the close.
pub struct CommandWriter {
    pub file: ControlFile,
    pending: parking_lot::Mutex<Vec<u8>>,
}

/// A line longer than a control file accepts: its length so far.
#[derive(Debug)]
pub struct LineTooLong(pub usize);

impl CommandWriter {
    pub fn new(file: ControlFile) -> CommandWriter {
        CommandWriter {
            file,
            pending: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// Takes a write: returns the complete lines to apply now (up to its last
    /// newline, with the unfinished line of earlier writes before them),
    /// keeping the rest for later. An unfinished line longer than `limit` is
    /// refused and dropped: it can only fail when whole, and it is not
    /// kept growing meanwhile.
    pub fn take_lines(&self, data: &[u8], limit: usize) -> Result<Vec<u8>, LineTooLong> {
        let mut pending = self.pending.lock();
        pending.extend_from_slice(data);
        let whole = pending
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |last_newline| last_newline + 1);
        let rest = pending.split_off(whole);
        if rest.len() > limit {
            pending.clear();
            return Err(LineTooLong(rest.len()));
        }
        Ok(std::mem::replace(&mut *pending, rest))
    }

    /// At close: the last line, if it had no newline.
    pub fn take_rest(&self) -> Vec<u8> {
        std::mem::take(&mut *self.pending.lock())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_lines_are_applied_and_the_rest_waits() {
        let writer = CommandWriter::new(ControlFile::Evict);
        assert_eq!(writer.take_lines(b"/debian/dists/", 8192).unwrap(), b"");
        assert_eq!(
            writer.take_lines(b"bookworm/Release\n/o/a", 8192).unwrap(),
            b"/debian/dists/bookworm/Release\n"
        );
        assert_eq!(
            writer.take_lines(b"/b\n/o/c\n", 8192).unwrap(),
            b"/o/a/b\n/o/c\n"
        );
        assert_eq!(writer.take_lines(b"/o/last", 8192).unwrap(), b"");
        assert_eq!(writer.take_rest(), b"/o/last");
        assert!(writer.take_rest().is_empty());
    }

    #[test]
    fn a_line_longer_than_the_limit_is_refused() {
        let writer = CommandWriter::new(ControlFile::Evict);
        assert!(writer.take_lines(&[b'a'; 5000], 8192).is_ok());
        assert!(writer.take_lines(&[b'a'; 5000], 8192).is_err());
        assert!(writer.take_rest().is_empty(), "the refused line is dropped");
    }

    #[test]
    fn writes_of_any_size_with_short_lines_are_taken() {
        let writer = CommandWriter::new(ControlFile::Prefetch);
        let lines = "/o/some/file\n".repeat(10_000);
        let (head, tail) = lines.as_bytes().split_at(70_001);
        assert_eq!(
            writer.take_lines(head, 8192).unwrap().len(),
            70_001 / 13 * 13
        );
        let rest = writer.take_lines(tail, 8192).unwrap();
        assert!(rest.ends_with(b"/o/some/file\n"));
        assert!(writer.take_rest().is_empty());
    }
}

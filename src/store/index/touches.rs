//! Access times, batched: opening a stored body writes nothing to the index.
//!
//! [`Index::touch`] notes the time in a map in memory; [`Index::flush_touches`]
//! writes every noted time in one batch (each blob record with its `lru` key
//! moved). The map is flushed before eviction chooses its victims, by the
//! first touch a second or more after the last flush, by a touch that finds
//! [`MAX_PENDING_TOUCHES`] bodies noted, and when the store closes cleanly.
//!
//! The flush runs on the path of a touch rather than on a thread of its
//! own: the only background thread, durability's syncer, sleeps until a
//! commit comes, and waking it every second for access times would tie two
//! unrelated jobs together.
//!
//! A crash loses the times noted since the last flush. That is accepted:
//! access times only order eviction, so the cost is that a body opened in
//! the last second before a crash may be evicted a little early.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rocksdb::WriteBatch;

use super::{Index, IndexError};

/// Bodies noted at most before a touch writes them out.
const MAX_PENDING_TOUCHES: usize = 65_536;
/// How long noted times wait at most for a touch to write them out.
const TOUCH_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The access times noted since the last flush.
pub(super) struct PendingTouches {
    times: HashMap<blake3::Hash, u64>,
    last_flush: Instant,
}

impl Default for PendingTouches {
    fn default() -> Self {
        PendingTouches {
            times: HashMap::new(),
            last_flush: Instant::now(),
        }
    }
}

impl PendingTouches {
    /// Notes an access; returns whether the noted times are due to be
    /// written, as of `now`.
    fn note(&mut self, hash: blake3::Hash, now_ms: u64, now: Instant) -> bool {
        self.times.insert(hash, now_ms);
        self.times.len() >= MAX_PENDING_TOUCHES
            || now.duration_since(self.last_flush) >= TOUCH_FLUSH_INTERVAL
    }

    /// Forgets a noted access that a newer write of the record supersedes.
    pub(super) fn forget(&mut self, hash: &blake3::Hash) {
        self.times.remove(hash);
    }

    fn take(&mut self) -> HashMap<blake3::Hash, u64> {
        self.last_flush = Instant::now();
        std::mem::take(&mut self.times)
    }
}

impl Index {
    /// Records that a body was opened, for LRU eviction. Usually only noted
    /// in memory; see the module's note for when it is written.
    pub fn touch(&self, hash: &blake3::Hash, now_ms: u64) -> Result<(), IndexError> {
        let due = self.touches.lock().note(*hash, now_ms, Instant::now());
        if due {
            self.flush_touches()?;
        }
        Ok(())
    }

    /// Writes every noted access time in one batch. Bodies gone since they
    /// were opened are passed over.
    pub fn flush_touches(&self) -> Result<(), IndexError> {
        // The write lock first, then the map: `link` takes them in this order.
        let _guard = self.write_lock.lock();
        let times = self.touches.lock().take();
        let mut batch = WriteBatch::default();
        for (hash, now_ms) in times {
            if let Some(mut record) = self.blob(&hash)?
                && record.last_access_ms != now_ms
            {
                let old_access_ms = record.last_access_ms;
                record.last_access_ms = now_ms;
                self.put_blob(&mut batch, &hash, &record, Some(old_access_ms));
            }
        }
        if !batch.is_empty() {
            self.write(batch, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noted_times_are_due_a_second_after_the_last_flush() {
        let mut touches = PendingTouches::default();
        let flushed = touches.last_flush;
        let hash = blake3::hash(b"a");
        assert!(!touches.note(hash, 1, flushed));
        assert!(!touches.note(hash, 2, flushed + TOUCH_FLUSH_INTERVAL / 2));
        assert!(touches.note(hash, 3, flushed + TOUCH_FLUSH_INTERVAL));
        assert_eq!(touches.take(), HashMap::from([(hash, 3)]));
        assert!(touches.times.is_empty());
    }

    #[test]
    fn noted_times_are_due_once_there_are_too_many() {
        let mut touches = PendingTouches::default();
        let now = touches.last_flush;
        for i in 0..MAX_PENDING_TOUCHES - 1 {
            assert!(!touches.note(blake3::hash(&i.to_be_bytes()), 1, now), "{i}");
        }
        // The same body again: still as many bodies.
        assert!(!touches.note(blake3::hash(&0usize.to_be_bytes()), 2, now));
        assert!(touches.note(blake3::hash(b"one more"), 1, now));
    }
}

//! Access times, batched: opening a stored body writes nothing to the index.
//!
//! [`Index::touch`] notes the time in a map in memory; [`Index::flush_touches`]
//! writes the noted times in batches (each blob record with its `lru` key
//! moved). They are written:
//! - by the store's background thread, durability's syncer, once
//!   [`TOUCH_FLUSH_INTERVAL`] has passed since the last flush (it wakes at
//!   least that often: [`Index::flush_touches_if_due`]);
//! - before eviction chooses its victims;
//! - by a touch that finds [`MAX_PENDING_TOUCHES`] bodies noted, so the map
//!   stays bounded while the syncer is busy with a slow round of fsyncs;
//! - when the store closes cleanly.
//!
//! Not by a touch once a second has passed: a flush costs a point lookup per
//! body (about 150 us each on an index of a million URLs, 2 busy cores),
//! and the open that happened to come then would wait for all of them.
//!
//! A flush holds the index's write lock for [`FLUSH_CHUNK_BODIES`] bodies at
//! a time, not for all of them: `totals()`, which `statfs` reads, waits on
//! that lock. A link in between can see its newer access time replaced by an
//! open noted just before it; access times are only an order, so that is
//! accepted.
//!
//! A crash loses the times noted since the last flush. That is accepted for
//! the same reason: the cost is that a body opened in the last second or two
//! before a crash may be evicted a little early.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rocksdb::WriteBatch;

use super::{Index, IndexError};

/// Bodies noted at most before a touch writes them out. It bounds the wait
/// of the open that finds the map full: a flush of 65,536 bodies took 8 s on
/// an index of a million URLs (2 busy cores).
const MAX_PENDING_TOUCHES: usize = 16_384;
/// How long noted times wait, about, for the syncer to write them out.
pub const TOUCH_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Bodies written per hold of the index's write lock: tens of milliseconds
/// at most.
const FLUSH_CHUNK_BODIES: usize = 256;

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
    /// Notes an access; returns whether the map is full.
    fn note(&mut self, hash: blake3::Hash, now_ms: u64) -> bool {
        self.times.insert(hash, now_ms);
        self.times.len() >= MAX_PENDING_TOUCHES
    }

    /// Whether times are noted and the last flush was `TOUCH_FLUSH_INTERVAL`
    /// or more before `now`.
    fn due(&self, now: Instant) -> bool {
        !self.times.is_empty() && now.duration_since(self.last_flush) >= TOUCH_FLUSH_INTERVAL
    }

    /// Forgets a noted access that a newer write of the record supersedes.
    pub(super) fn forget(&mut self, hash: &blake3::Hash) {
        self.times.remove(hash);
    }

    fn take(&mut self, now: Instant) -> Vec<(blake3::Hash, u64)> {
        self.last_flush = now;
        std::mem::take(&mut self.times).into_iter().collect()
    }
}

impl Index {
    /// Records that a body was opened, for LRU eviction. Only noted in
    /// memory, unless too many are; see the module's note.
    pub fn touch(&self, hash: &blake3::Hash, now_ms: u64) -> Result<(), IndexError> {
        let full = self.touches.lock().note(*hash, now_ms);
        if full {
            self.flush_touches()?;
        }
        Ok(())
    }

    /// Writes the noted access times if the last flush was a while ago.
    pub fn flush_touches_if_due(&self) -> Result<(), IndexError> {
        let due = self.touches.lock().due(Instant::now());
        if due {
            self.flush_touches()?;
        }
        Ok(())
    }

    /// Writes every noted access time, a chunk per batch. Bodies gone since
    /// they were opened are passed over.
    pub fn flush_touches(&self) -> Result<(), IndexError> {
        let times = self.touches.lock().take(Instant::now());
        for chunk in times.chunks(FLUSH_CHUNK_BODIES) {
            let _guard = self.write_lock.lock();
            let mut batch = WriteBatch::default();
            for (hash, now_ms) in chunk {
                if let Some(mut record) = self.blob(hash)?
                    && record.last_access_ms != *now_ms
                {
                    let old_access_ms = record.last_access_ms;
                    record.last_access_ms = *now_ms;
                    self.put_blob(&mut batch, hash, &record, Some(old_access_ms));
                }
            }
            if !batch.is_empty() {
                self.write(batch, false)?;
            }
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
        assert!(
            !touches.due(flushed + TOUCH_FLUSH_INTERVAL),
            "nothing noted"
        );
        let hash = blake3::hash(b"a");
        assert!(!touches.note(hash, 1));
        assert!(!touches.note(hash, 2));
        assert!(!touches.due(flushed + TOUCH_FLUSH_INTERVAL / 2));
        assert!(touches.due(flushed + TOUCH_FLUSH_INTERVAL));
        let later = flushed + TOUCH_FLUSH_INTERVAL;
        assert_eq!(touches.take(later), [(hash, 2)]);
        touches.note(hash, 3);
        assert!(
            !touches.due(later + TOUCH_FLUSH_INTERVAL / 2),
            "flushed at `later`"
        );
    }

    #[test]
    fn the_map_is_full_at_its_bound() {
        let mut touches = PendingTouches::default();
        for i in 0..MAX_PENDING_TOUCHES - 1 {
            assert!(!touches.note(blake3::hash(&i.to_be_bytes()), 1), "{i}");
        }
        // The same body again: still as many bodies.
        assert!(!touches.note(blake3::hash(&0usize.to_be_bytes()), 2));
        assert!(touches.note(blake3::hash(b"one more"), 1));
    }
}

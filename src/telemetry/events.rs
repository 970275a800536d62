//! The event log behind `.fetchfs/events`: what the cache does, as JSON
//! lines, while it happens.
//!
//! The file behaves like a log that only grows: every event is appended at
//! the end, `st_size` is the number of bytes ever written, and a read at
//! offset X returns the bytes from X on, waiting when X is the end. So `cat`
//! shows the retained history and then follows, and `tail -f` (which polls
//! the size and reads what was added) works as on any log file. The newest
//! [`RETAINED_BYTES`] stay in memory; a reader left behind gets one `lost`
//! line in place of what it missed, exactly as long, so its offsets still match.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::watch;

/// History kept for readers: whole lines, the newest first to stay.
const RETAINED_BYTES: usize = 1 << 20;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Fetch,
    Hit,
    Revalidate,
    Invalidate,
    Evict,
    Error,
    /// A body filled from the fleet tier.
    SharedHit,
    /// A body published to the fleet tier.
    Publish,
    SharedDown,
    SharedUp,
    /// A fetch another host led and stopped, taken over by this host.
    Takeover,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Fetch => "fetch",
            EventKind::Hit => "hit",
            EventKind::Revalidate => "revalidate",
            EventKind::Invalidate => "invalidate",
            EventKind::Evict => "evict",
            EventKind::Error => "error",
            EventKind::SharedHit => "shared_hit",
            EventKind::Publish => "publish",
            EventKind::SharedDown => "shared_down",
            EventKind::SharedUp => "shared_up",
            EventKind::Takeover => "takeover",
        }
    }
}

#[derive(Debug)]
pub struct Events {
    log: parking_lot::Mutex<EventLog>,
    /// The log's end offset, for readers waiting at the end.
    end: watch::Sender<u64>,
    /// The last error event of each URL, for `user.fetchfs.error`.
    last_errors: parking_lot::Mutex<LastErrors>,
}

/// How many URLs' last errors are kept (the oldest go first).
const LAST_ERRORS_KEPT: usize = 4096;

/// The last error of each of the URLs that failed most recently.
#[derive(Debug, Default)]
struct LastErrors {
    by_url: HashMap<String, String>,
    /// URLs in the order their last error came, oldest first.
    order: VecDeque<String>,
}

impl LastErrors {
    fn note(&mut self, url: &str, text: String) {
        if self.by_url.insert(url.to_string(), text).is_some() {
            self.order.retain(|known| known != url);
        }
        self.order.push_back(url.to_string());
        while self.order.len() > LAST_ERRORS_KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_url.remove(&oldest);
            }
        }
    }
}

/// The retained tail of the log: `bytes` start at offset `start`.
#[derive(Debug, Default)]
struct EventLog {
    start: u64,
    bytes: VecDeque<u8>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            log: parking_lot::Mutex::new(EventLog::default()),
            end: watch::channel(0).0,
            last_errors: Default::default(),
        }
    }
}

impl Events {
    /// Appends one event: `{"ts_ms": …, "event": kind, …fields}`. An
    /// error with a `url` and a `message` also becomes that URL's last error.
    pub fn emit(&self, kind: EventKind, fields: Value) {
        let now = SystemTime::now();
        let ts_ms = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if kind == EventKind::Error
            && let (Some(url), Some(message)) = (fields["url"].as_str(), fields["message"].as_str())
        {
            let when = humantime::format_rfc3339_seconds(now);
            self.last_errors
                .lock()
                .note(url, format!("{when} {message}"));
        }
        let mut line = json!({ "ts_ms": ts_ms, "event": kind.as_str() });
        if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        let end = self.log.lock().append(format!("{line}\n").as_bytes());
        self.end.send_replace(end);
    }

    /// The last error of `url` since the mount started, with its time
    /// (`2026-12-03T15:47:05Z http://…: cannot connect: …`).
    pub fn last_error(&self, url: &str) -> Option<String> {
        self.last_errors.lock().by_url.get(url).cloned()
    }

    /// The number of bytes ever written: the file's size.
    pub fn len(&self) -> u64 {
        *self.end.borrow()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `max` bytes from `offset` on, waiting for the next event when
    /// `offset` is at the end.
    pub async fn read_at(&self, offset: u64, max: usize) -> Vec<u8> {
        let mut end = self.end.subscribe();
        loop {
            if let Some(bytes) = self.log.lock().read(offset, max) {
                return bytes;
            }
            if end.changed().await.is_err() {
                return Vec::new();
            }
        }
    }
}

impl EventLog {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Appends a line, drops the oldest whole lines beyond the limit, returns the new end.
    fn append(&mut self, line: &[u8]) -> u64 {
        self.bytes.extend(line);
        if self.bytes.len() > RETAINED_BYTES {
            let excess = self.bytes.len() - RETAINED_BYTES;
            let cut = self
                .bytes
                .iter()
                .skip(excess)
                .position(|b| *b == b'\n')
                .map_or(self.bytes.len(), |p| excess + p + 1);
            self.bytes.drain(..cut);
            self.start += cut as u64;
        }
        self.end()
    }

    /// `None` when `offset` is at (or past) the end: nothing to read yet.
    fn read(&self, offset: u64, max: usize) -> Option<Vec<u8>> {
        if offset < self.start {
            let missed = (self.start - offset).min(max as u64) as usize;
            return Some(lost_line(missed));
        }
        if offset >= self.end() || max == 0 {
            return None;
        }
        let from = (offset - self.start) as usize;
        let to = (from + max).min(self.bytes.len());
        Some(self.bytes.range(from..to).copied().collect())
    }
}

/// Exactly `len` bytes standing for events a reader missed: a `lost` line
/// padded with spaces (or only spaces and a newline when too short for it).
fn lost_line(len: usize) -> Vec<u8> {
    let text = json!({ "event": "lost", "bytes": len }).to_string();
    let mut line = if text.len() < len {
        text.into_bytes()
    } else {
        Vec::new()
    };
    line.resize(len.saturating_sub(1), b' ');
    if len > 0 {
        line.push(b'\n');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_follow_the_log_and_wait_at_its_end() {
        let events = std::sync::Arc::new(Events::default());
        events.emit(EventKind::Hit, json!({ "url": "http://h/a" }));
        let first = events.read_at(0, 1 << 16).await;
        let line: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(line["event"], "hit");
        assert_eq!(events.len(), first.len() as u64);

        let waiting = tokio::spawn({
            let events = std::sync::Arc::clone(&events);
            let offset = events.len();
            async move { events.read_at(offset, 10).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "a read at the end returned before any event"
        );
        events.emit(EventKind::Fetch, json!({ "url": "http://h/b" }));
        assert_eq!(
            waiting.await.unwrap().len(),
            10,
            "a long line is split across reads"
        );
    }

    #[test]
    fn an_error_event_is_its_urls_last_error() {
        let events = Events::default();
        events.emit(EventKind::Hit, json!({ "url": "http://h/a" }));
        assert_eq!(events.last_error("http://h/a"), None);
        events.emit(
            EventKind::Error,
            json!({ "url": "http://h/a", "message": "http://h/a: body cut short" }),
        );
        events.emit(
            EventKind::Error,
            json!({ "url": "http://h/a", "message": "http://h/a: origin answered 503" }),
        );
        let last = events.last_error("http://h/a").unwrap();
        assert!(
            last.ends_with("Z http://h/a: origin answered 503"),
            "{last}"
        );

        let mut kept = LastErrors::default();
        for n in 0..LAST_ERRORS_KEPT + 10 {
            kept.note(&format!("http://h/{n}"), "e".into());
        }
        assert_eq!(kept.by_url.len(), LAST_ERRORS_KEPT);
        assert!(
            !kept.by_url.contains_key("http://h/0"),
            "the oldest go first"
        );
    }

    #[test]
    fn a_reader_left_behind_gets_a_lost_line_of_the_missed_length() {
        let mut log = EventLog::default();
        let line = format!("{}\n", "x".repeat(999));
        for _ in 0..(RETAINED_BYTES / 1000 + 10) {
            log.append(line.as_bytes());
        }
        assert!(
            log.start > 0 && log.start % 1000 == 0,
            "the log keeps whole lines"
        );
        let missed = log.read(0, 4096).unwrap();
        assert_eq!(missed.len(), 4096);
        assert!(missed.ends_with(b"\n"));
        let text = String::from_utf8(missed).unwrap();
        let lost: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(lost["event"], "lost");
        assert_eq!(lost_line(3), b"  \n");
        assert!(log.read(log.end(), 10).is_none());
    }
}

//! The `events` file: what the cache does, as JSON lines, while it happens.
//!
//! Every open of `.fetchfs/events` subscribes to a broadcast channel; a read
//! waits for the next event, so `cat` and `tail -f` follow the stream. A
//! reader that falls behind by more than the channel holds is told how many
//! events it lost instead of stalling the daemon.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Events kept for a slow reader before it starts losing them.
const BACKLOG: usize = 4096;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Fetch,
    Hit,
    Revalidate,
    Invalidate,
    Evict,
    Error,
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
        }
    }
}

#[derive(Debug)]
pub struct Events {
    sender: broadcast::Sender<String>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            sender: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Events {
    /// Publishes one event: `{"ts_ms": …, "event": kind, …fields}`. Free when nobody listens.
    pub fn emit(&self, kind: EventKind, fields: Value) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut line = json!({ "ts_ms": ts_ms, "event": kind.as_str() });
        if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        let _ = self.sender.send(format!("{line}\n"));
    }

    pub fn subscribe(&self) -> EventStream {
        EventStream {
            receiver: self.sender.subscribe(),
            pending: Vec::new(),
        }
    }
}

/// One reader's position in the stream.
#[derive(Debug)]
pub struct EventStream {
    receiver: broadcast::Receiver<String>,
    /// Bytes of an event that did not fit the last read.
    pending: Vec<u8>,
}

impl EventStream {
    /// Waits for at least one event, then returns as many whole lines as fit in `max` bytes
    /// (a line longer than `max` is split across reads).
    pub async fn next_chunk(&mut self, max: usize) -> Vec<u8> {
        while self.pending.is_empty() {
            self.pending = self.next_line().await.into_bytes();
        }
        while self.pending.len() < max {
            match self.receiver.try_recv() {
                Ok(line) => self.pending.extend_from_slice(line.as_bytes()),
                Err(broadcast::error::TryRecvError::Lagged(lost)) => {
                    self.pending.extend_from_slice(lost_line(lost).as_bytes())
                }
                Err(_) => break,
            }
        }
        let take = self.pending.len().min(max);
        self.pending.drain(..take).collect()
    }

    async fn next_line(&mut self) -> String {
        match self.receiver.recv().await {
            Ok(line) => line,
            Err(broadcast::error::RecvError::Lagged(lost)) => lost_line(lost),
            // The daemon is shutting down: nothing more will come.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

fn lost_line(count: u64) -> String {
    format!("{}\n", json!({ "event": "lost", "count": count }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_whole_lines_and_split_long_ones() {
        let events = Events::default();
        events.emit(EventKind::Hit, json!({ "url": "http://h/a" }));
        let mut stream = events.subscribe();
        events.emit(EventKind::Fetch, json!({ "url": "http://h/b" }));
        events.emit(EventKind::Evict, json!({ "url": "http://h/c" }));
        let chunk = String::from_utf8(stream.next_chunk(1 << 16).await).unwrap();
        let lines: Vec<Value> = chunk
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.len(),
            2,
            "an event before subscribing is not replayed"
        );
        assert_eq!(lines[0]["event"], "fetch");
        assert_eq!(lines[1]["url"], "http://h/c");

        events.emit(EventKind::Error, json!({ "message": "x".repeat(100) }));
        let first = stream.next_chunk(10).await;
        assert_eq!(first.len(), 10);
        let rest = stream.next_chunk(1 << 16).await;
        assert!(rest.ends_with(b"\n"));
    }
}

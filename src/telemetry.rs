//! What the daemon counts and tells, on the ground floor: every layer reports
//! here, nothing here knows any other part of fetchfs.
//!
//! [`Counters`] are atomics bumped on the hot path (hits, origin requests,
//! bytes); [`Events`] is the JSON-lines log behind `.fetchfs/events`. The
//! control folder renders both; the cache and the origin client feed them.

mod counters;
mod events;

pub use counters::{CounterValues, Counters};
pub use events::{EventKind, Events};

use std::sync::Arc;

/// The counters and the event log of one mount, shared by every layer.
#[derive(Debug, Default, Clone)]
pub struct Telemetry {
    pub counters: Arc<Counters>,
    pub events: Arc<Events>,
}

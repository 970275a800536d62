//! Event counters since the mount started: plain atomics, bumped on the hot
//! path and read all at once for `stats` and `metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Event counters since the mount started.
#[derive(Debug)]
pub struct Counters {
    started: Instant,
    hits: AtomicU64,
    misses: AtomicU64,
    revalidations: AtomicU64,
    not_modified: AtomicU64,
    origin_requests: AtomicU64,
    origin_errors: AtomicU64,
    stale_served: AtomicU64,
    bytes_from_origin: AtomicU64,
    bytes_served: AtomicU64,
    passthrough_opens: AtomicU64,
    evictions: AtomicU64,
    in_flight: AtomicU64,
    prefetch_queued: AtomicU64,
    prefetch_done: AtomicU64,
    prefetch_failed: AtomicU64,
    inodes: AtomicU64,
    shared_up: AtomicU64,
    shared_hits: AtomicU64,
    bytes_from_shared: AtomicU64,
    shared_publishes: AtomicU64,
    shared_errors: AtomicU64,
    fleet_commands_sent: AtomicU64,
    fleet_commands_received: AtomicU64,
    leases_led: AtomicU64,
    leases_followed: AtomicU64,
    leases_taken_over: AtomicU64,
    lease_bypasses: AtomicU64,
}

/// The counters' values at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    pub hits: u64,
    pub misses: u64,
    pub revalidations: u64,
    pub not_modified: u64,
    pub origin_requests: u64,
    pub origin_errors: u64,
    pub stale_served: u64,
    pub bytes_from_origin: u64,
    pub bytes_served: u64,
    /// Opens of stored bodies the kernel reads itself (their bytes are not
    /// in `bytes_served`).
    pub passthrough_opens: u64,
    pub evictions: u64,
    pub in_flight: u64,
    /// Prefetches waiting for their turn.
    pub prefetch_queued: u64,
    pub prefetch_done: u64,
    pub prefetch_failed: u64,
    /// Inodes the mount remembers for the kernel.
    pub inodes: u64,
    /// 1 while the fleet tier answers (0 without one).
    pub shared_up: u64,
    /// Bodies filled from the fleet tier instead of the origin.
    pub shared_hits: u64,
    pub bytes_from_shared: u64,
    /// Bodies this host published to the fleet tier.
    pub shared_publishes: u64,
    /// Calls to the fleet tier that failed or passed their deadline.
    pub shared_errors: u64,
    /// `invalidate` and `evict` writes told to the fleet, and heard from it.
    pub fleet_commands_sent: u64,
    pub fleet_commands_received: u64,
    /// Origin fetches this host led for the fleet, and waits for another
    /// host's.
    pub leases_led: u64,
    pub leases_followed: u64,
    pub leases_taken_over: u64,
    pub lease_bypasses: u64,
    pub uptime_s: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            started: Instant::now(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            revalidations: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            origin_requests: AtomicU64::new(0),
            origin_errors: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            bytes_from_origin: AtomicU64::new(0),
            bytes_served: AtomicU64::new(0),
            passthrough_opens: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            prefetch_queued: AtomicU64::new(0),
            prefetch_done: AtomicU64::new(0),
            prefetch_failed: AtomicU64::new(0),
            inodes: AtomicU64::new(0),
            shared_up: AtomicU64::new(0),
            shared_hits: AtomicU64::new(0),
            bytes_from_shared: AtomicU64::new(0),
            shared_publishes: AtomicU64::new(0),
            shared_errors: AtomicU64::new(0),
            fleet_commands_sent: AtomicU64::new(0),
            fleet_commands_received: AtomicU64::new(0),
            leases_led: AtomicU64::new(0),
            leases_followed: AtomicU64::new(0),
            leases_taken_over: AtomicU64::new(0),
            lease_bypasses: AtomicU64::new(0),
        }
    }
}

impl Counters {
    /// An open served from a stored body.
    pub fn add_hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }
    /// An open that needed the origin's body.
    pub fn add_miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    pub fn add_revalidation(&self) {
        self.revalidations.fetch_add(1, Relaxed);
    }
    pub fn add_not_modified(&self) {
        self.not_modified.fetch_add(1, Relaxed);
    }
    pub fn add_origin_request(&self) {
        self.origin_requests.fetch_add(1, Relaxed);
    }
    pub fn add_origin_error(&self) {
        self.origin_errors.fetch_add(1, Relaxed);
    }
    pub fn add_stale_served(&self) {
        self.stale_served.fetch_add(1, Relaxed);
    }
    pub fn add_bytes_from_origin(&self, bytes: u64) {
        self.bytes_from_origin.fetch_add(bytes, Relaxed);
    }
    pub fn add_bytes_served(&self, bytes: u64) {
        self.bytes_served.fetch_add(bytes, Relaxed);
    }
    pub fn add_passthrough_open(&self) {
        self.passthrough_opens.fetch_add(1, Relaxed);
    }
    pub fn add_evictions(&self, count: u64) {
        self.evictions.fetch_add(count, Relaxed);
    }
    pub fn download_started(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }
    pub fn download_ended(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }
    pub fn prefetch_queued(&self) {
        self.prefetch_queued.fetch_add(1, Relaxed);
    }
    pub fn set_inodes(&self, count: u64) {
        self.inodes.store(count, Relaxed);
    }
    pub fn set_shared_up(&self, up: bool) {
        self.shared_up.store(u64::from(up), Relaxed);
    }
    pub fn add_shared_hit(&self) {
        self.shared_hits.fetch_add(1, Relaxed);
    }
    pub fn add_bytes_from_shared(&self, bytes: u64) {
        self.bytes_from_shared.fetch_add(bytes, Relaxed);
    }
    pub fn add_shared_publish(&self) {
        self.shared_publishes.fetch_add(1, Relaxed);
    }
    pub fn add_shared_error(&self) {
        self.shared_errors.fetch_add(1, Relaxed);
    }
    pub fn add_fleet_command_sent(&self) {
        self.fleet_commands_sent.fetch_add(1, Relaxed);
    }
    pub fn add_fleet_command_received(&self) {
        self.fleet_commands_received.fetch_add(1, Relaxed);
    }
    pub fn add_lease_led(&self) {
        self.leases_led.fetch_add(1, Relaxed);
    }
    pub fn add_lease_followed(&self) {
        self.leases_followed.fetch_add(1, Relaxed);
    }
    pub fn add_lease_taken_over(&self) {
        self.leases_taken_over.fetch_add(1, Relaxed);
    }
    pub fn add_lease_bypass(&self) {
        self.lease_bypasses.fetch_add(1, Relaxed);
    }
    /// A queued prefetch ended, stored or failed for good.
    pub fn prefetch_ended(&self, stored: bool) {
        self.prefetch_queued.fetch_sub(1, Relaxed);
        let count = if stored {
            &self.prefetch_done
        } else {
            &self.prefetch_failed
        };
        count.fetch_add(1, Relaxed);
    }

    /// Every counter at this instant.
    pub fn values(&self) -> CounterValues {
        CounterValues {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            revalidations: self.revalidations.load(Relaxed),
            not_modified: self.not_modified.load(Relaxed),
            origin_requests: self.origin_requests.load(Relaxed),
            origin_errors: self.origin_errors.load(Relaxed),
            stale_served: self.stale_served.load(Relaxed),
            bytes_from_origin: self.bytes_from_origin.load(Relaxed),
            bytes_served: self.bytes_served.load(Relaxed),
            passthrough_opens: self.passthrough_opens.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            prefetch_queued: self.prefetch_queued.load(Relaxed),
            prefetch_done: self.prefetch_done.load(Relaxed),
            prefetch_failed: self.prefetch_failed.load(Relaxed),
            inodes: self.inodes.load(Relaxed),
            shared_up: self.shared_up.load(Relaxed),
            shared_hits: self.shared_hits.load(Relaxed),
            bytes_from_shared: self.bytes_from_shared.load(Relaxed),
            shared_publishes: self.shared_publishes.load(Relaxed),
            shared_errors: self.shared_errors.load(Relaxed),
            fleet_commands_sent: self.fleet_commands_sent.load(Relaxed),
            fleet_commands_received: self.fleet_commands_received.load(Relaxed),
            leases_led: self.leases_led.load(Relaxed),
            leases_followed: self.leases_followed.load(Relaxed),
            leases_taken_over: self.leases_taken_over.load(Relaxed),
            lease_bypasses: self.lease_bypasses.load(Relaxed),
            uptime_s: self.started.elapsed().as_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_what_was_counted() {
        let counters = Counters::default();
        counters.add_hit();
        counters.add_hit();
        counters.add_miss();
        counters.add_bytes_from_origin(10);
        counters.add_bytes_from_origin(5);
        counters.download_started();
        counters.download_started();
        counters.download_ended();
        let values = counters.values();
        assert_eq!(values.hits, 2);
        assert_eq!(values.misses, 1);
        assert_eq!(values.bytes_from_origin, 15);
        assert_eq!(values.in_flight, 1);
    }
}

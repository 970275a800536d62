//! The figures behind `.fetchfs/stats` and `fetchfs stats`.
//!
//! Counters are plain atomics bumped on the hot path; sizes of what is stored
//! come from the index's totals at snapshot time, so they are always true.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::store::Totals;

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
    evictions: AtomicU64,
    in_flight: AtomicU64,
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
            evictions: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
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
    pub fn add_evictions(&self, count: u64) {
        self.evictions.fetch_add(count, Relaxed);
    }
    pub fn download_started(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }
    pub fn download_ended(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// All figures at this instant.
    pub fn snapshot(&self, totals: Totals) -> Stats {
        let hits = self.hits.load(Relaxed);
        let misses = self.misses.load(Relaxed);
        let lookups = hits + misses;
        Stats {
            hits,
            misses,
            revalidations: self.revalidations.load(Relaxed),
            not_modified: self.not_modified.load(Relaxed),
            origin_requests: self.origin_requests.load(Relaxed),
            origin_errors: self.origin_errors.load(Relaxed),
            stale_served: self.stale_served.load(Relaxed),
            bytes_from_origin: self.bytes_from_origin.load(Relaxed),
            bytes_served: self.bytes_served.load(Relaxed),
            entries: totals.entries,
            blobs: totals.blobs,
            cache_bytes: totals.cache_bytes,
            logical_bytes: totals.logical_bytes,
            dedup_saved_bytes: totals.logical_bytes.saturating_sub(totals.cache_bytes),
            evictions: self.evictions.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            hit_rate: if lookups == 0 {
                0.0
            } else {
                hits as f64 / lookups as f64
            },
            uptime_s: self.started.elapsed().as_secs(),
        }
    }
}

/// The `stats` file: one JSON object, field names are the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub revalidations: u64,
    pub not_modified: u64,
    pub origin_requests: u64,
    pub origin_errors: u64,
    pub stale_served: u64,
    pub bytes_from_origin: u64,
    pub bytes_served: u64,
    pub entries: u64,
    pub blobs: u64,
    pub cache_bytes: u64,
    pub logical_bytes: u64,
    pub dedup_saved_bytes: u64,
    pub evictions: u64,
    pub in_flight: u64,
    pub hit_rate: f64,
    pub uptime_s: u64,
}

impl Stats {
    /// `stats` file content: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The same figures in Prometheus text format.
    pub fn to_prometheus(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut text = String::new();
        if let Some(fields) = value.as_object() {
            for (name, value) in fields {
                let kind = if COUNTER_FIELDS.contains(&name.as_str()) {
                    "counter"
                } else {
                    "gauge"
                };
                let metric = if kind == "counter" {
                    format!("fetchfs_{name}_total")
                } else {
                    format!("fetchfs_{name}")
                };
                text.push_str(&format!("# TYPE {metric} {kind}\n{metric} {value}\n"));
            }
        }
        text
    }

    /// `fetchfs stats`: an aligned table with sizes in human units.
    pub fn to_table(&self) -> String {
        let size =
            |bytes: u64| format!("{bytes} ({})", bytesize::ByteSize::b(bytes).display().iec());
        let rows: Vec<(&str, String)> = vec![
            ("hits", self.hits.to_string()),
            ("misses", self.misses.to_string()),
            ("hit_rate", format!("{:.1}%", self.hit_rate * 100.0)),
            ("revalidations", self.revalidations.to_string()),
            ("not_modified", self.not_modified.to_string()),
            ("origin_requests", self.origin_requests.to_string()),
            ("origin_errors", self.origin_errors.to_string()),
            ("stale_served", self.stale_served.to_string()),
            ("bytes_from_origin", size(self.bytes_from_origin)),
            ("bytes_served", size(self.bytes_served)),
            ("entries", self.entries.to_string()),
            ("blobs", self.blobs.to_string()),
            ("cache_bytes", size(self.cache_bytes)),
            ("logical_bytes", size(self.logical_bytes)),
            ("dedup_saved_bytes", size(self.dedup_saved_bytes)),
            ("evictions", self.evictions.to_string()),
            ("in_flight", self.in_flight.to_string()),
            (
                "uptime_s",
                humantime::format_duration(std::time::Duration::from_secs(self.uptime_s))
                    .to_string(),
            ),
        ];
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(name, value)| format!("{name:<width$}  {value}\n"))
            .collect()
    }
}

const COUNTER_FIELDS: &[&str] = &[
    "hits",
    "misses",
    "revalidations",
    "not_modified",
    "origin_requests",
    "origin_errors",
    "stale_served",
    "bytes_from_origin",
    "bytes_served",
    "evictions",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_derives_rate_and_savings() {
        let counters = Counters::default();
        counters.add_hit();
        counters.add_hit();
        counters.add_hit();
        counters.add_miss();
        let totals = Totals {
            entries: 2,
            blobs: 1,
            cache_bytes: 10,
            logical_bytes: 20,
        };
        let stats = counters.snapshot(totals);
        assert_eq!(stats.hit_rate, 0.75);
        assert_eq!(stats.dedup_saved_bytes, 10);
        let json: serde_json::Value = serde_json::from_str(&stats.to_json()).unwrap();
        assert_eq!(json["entries"], 2);
        assert!(stats.to_prometheus().contains("fetchfs_hits_total 3\n"));
        assert!(stats.to_table().contains("hit_rate"));
    }
}

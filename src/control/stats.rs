//! The figures behind `.fetchfs/stats`, `.fetchfs/metrics` and `fetchfs stats`.
//!
//! Counters come from the telemetry the cache and the origin client feed;
//! sizes of what is stored come from the index's totals at snapshot time, so
//! they are always true.

use serde::{Deserialize, Serialize};

use crate::cache::{Cache, Totals};
use crate::telemetry::CounterValues;

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
    /// Opens of stored bodies the kernel reads from the blob file itself.
    #[serde(default)]
    pub passthrough_opens: u64,
    pub entries: u64,
    pub blobs: u64,
    pub cache_bytes: u64,
    pub logical_bytes: u64,
    pub dedup_saved_bytes: u64,
    pub evictions: u64,
    pub in_flight: u64,
    /// Prefetches waiting for their turn, and those that ended.
    #[serde(default)]
    pub prefetch_queued: u64,
    #[serde(default)]
    pub prefetch_done: u64,
    #[serde(default)]
    pub prefetch_failed: u64,
    /// Inodes the mount remembers for the kernel (they go once it forgets them).
    #[serde(default)]
    pub inodes: u64,
    pub hit_rate: f64,
    pub uptime_s: u64,
}

impl Stats {
    /// The figures of a mount's cache at this instant.
    pub fn of(cache: &Cache) -> Stats {
        Stats::from_parts(cache.telemetry().counters.values(), cache.totals())
    }

    fn from_parts(counters: CounterValues, totals: Totals) -> Stats {
        let lookups = counters.hits + counters.misses;
        Stats {
            hits: counters.hits,
            misses: counters.misses,
            revalidations: counters.revalidations,
            not_modified: counters.not_modified,
            origin_requests: counters.origin_requests,
            origin_errors: counters.origin_errors,
            stale_served: counters.stale_served,
            bytes_from_origin: counters.bytes_from_origin,
            bytes_served: counters.bytes_served,
            passthrough_opens: counters.passthrough_opens,
            entries: totals.entries,
            blobs: totals.blobs,
            cache_bytes: totals.cache_bytes,
            logical_bytes: totals.logical_bytes,
            dedup_saved_bytes: totals.logical_bytes.saturating_sub(totals.cache_bytes),
            evictions: counters.evictions,
            in_flight: counters.in_flight,
            prefetch_queued: counters.prefetch_queued,
            prefetch_done: counters.prefetch_done,
            prefetch_failed: counters.prefetch_failed,
            inodes: counters.inodes,
            hit_rate: if lookups == 0 {
                0.0
            } else {
                counters.hits as f64 / lookups as f64
            },
            uptime_s: counters.uptime_s,
        }
    }

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
            ("passthrough_opens", self.passthrough_opens.to_string()),
            ("entries", self.entries.to_string()),
            ("blobs", self.blobs.to_string()),
            ("cache_bytes", size(self.cache_bytes)),
            ("logical_bytes", size(self.logical_bytes)),
            ("dedup_saved_bytes", size(self.dedup_saved_bytes)),
            ("evictions", self.evictions.to_string()),
            ("in_flight", self.in_flight.to_string()),
            ("prefetch_queued", self.prefetch_queued.to_string()),
            ("prefetch_done", self.prefetch_done.to_string()),
            ("prefetch_failed", self.prefetch_failed.to_string()),
            ("inodes", self.inodes.to_string()),
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
    "passthrough_opens",
    "evictions",
    "prefetch_done",
    "prefetch_failed",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_derives_rate_and_savings() {
        let counters = CounterValues {
            hits: 3,
            misses: 1,
            ..CounterValues::default()
        };
        let totals = Totals {
            entries: 2,
            blobs: 1,
            cache_bytes: 10,
            logical_bytes: 20,
        };
        let stats = Stats::from_parts(counters, totals);
        assert_eq!(stats.hit_rate, 0.75);
        assert_eq!(stats.dedup_saved_bytes, 10);
        let json: serde_json::Value = serde_json::from_str(&stats.to_json()).unwrap();
        assert_eq!(json["entries"], 2);
        assert!(stats.to_prometheus().contains("fetchfs_hits_total 3\n"));
        assert!(stats.to_table().contains("hit_rate"));
    }
}

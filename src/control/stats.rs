//! The figures behind `.fetchfs/stats`, `.fetchfs/metrics` (and
//! `--metrics-addr`) and `fetchfs stats`.
//!
//! Counters come from the telemetry the cache and the origin client feed;
//! sizes of what is stored come from the index's totals at snapshot time, so
//! they are always true.
//!
//! The JSON field names are a contract and never change. The Prometheus
//! names follow Prometheus's conventions instead, and `promtool check
//! metrics` passes them: counters end in `_total`, units are base units
//! written last (`_bytes`, `_seconds`), a fraction is a `_ratio`. So a few
//! differ from their field: [`METRICS`] pairs each field with its metric.

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
    /// The fleet tier (`[shared]`): 1 while it answers, bodies and bytes
    /// filled from it, bodies published to it, calls that failed.
    #[serde(default)]
    pub shared_up: u64,
    #[serde(default)]
    pub shared_hits: u64,
    #[serde(default)]
    pub bytes_from_shared: u64,
    #[serde(default)]
    pub shared_publishes: u64,
    #[serde(default)]
    pub shared_errors: u64,
    /// `invalidate` and `evict` writes told to the fleet, and heard from it.
    #[serde(default)]
    pub fleet_commands_sent: u64,
    #[serde(default)]
    pub fleet_commands_received: u64,
    /// Origin fetches this host led for the fleet, and waits for another
    /// host's.
    #[serde(default)]
    pub leases_led: u64,
    #[serde(default)]
    pub leases_followed: u64,
    /// Fetches another host led and stopped, which this host took over;
    /// and fetches this host stopped waiting for (no progress).
    #[serde(default)]
    pub leases_taken_over: u64,
    #[serde(default)]
    pub lease_bypasses: u64,
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
            shared_up: counters.shared_up,
            shared_hits: counters.shared_hits,
            bytes_from_shared: counters.bytes_from_shared,
            shared_publishes: counters.shared_publishes,
            shared_errors: counters.shared_errors,
            fleet_commands_sent: counters.fleet_commands_sent,
            fleet_commands_received: counters.fleet_commands_received,
            leases_led: counters.leases_led,
            leases_followed: counters.leases_followed,
            leases_taken_over: counters.leases_taken_over,
            lease_bypasses: counters.lease_bypasses,
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

    /// The same figures in Prometheus text format (version 0.0.4), each
    /// with its `# HELP` and `# TYPE` lines.
    pub fn to_prometheus(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut text = String::new();
        for metric in METRICS {
            let Some(value) = value.get(metric.field) else {
                continue;
            };
            let (name, kind) = match metric.kind {
                Kind::Counter => (format!("fetchfs_{}_total", metric.name), "counter"),
                Kind::Gauge => (format!("fetchfs_{}", metric.name), "gauge"),
            };
            text.push_str(&format!(
                "# HELP {name} {}\n# TYPE {name} {kind}\n{name} {value}\n",
                metric.help
            ));
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
            ("shared_up", self.shared_up.to_string()),
            ("shared_hits", self.shared_hits.to_string()),
            ("bytes_from_shared", size(self.bytes_from_shared)),
            ("shared_publishes", self.shared_publishes.to_string()),
            ("shared_errors", self.shared_errors.to_string()),
            ("fleet_commands_sent", self.fleet_commands_sent.to_string()),
            (
                "fleet_commands_received",
                self.fleet_commands_received.to_string(),
            ),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Only goes up while the mount lives; the name gets `_total`.
    Counter,
    Gauge,
}

/// One Prometheus metric: the stats field it shows, its name without the
/// `fetchfs_` prefix (and a counter's `_total`), and its help text.
struct Metric {
    field: &'static str,
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

const fn metric(field: &'static str, name: &'static str, kind: Kind, help: &'static str) -> Metric {
    Metric {
        field,
        name,
        kind,
        help,
    }
}

/// Every stats field, in the order of the stats file, as a metric.
const METRICS: &[Metric] = &[
    metric(
        "hits",
        "hits",
        Kind::Counter,
        "Opens served from a stored body.",
    ),
    metric(
        "misses",
        "misses",
        Kind::Counter,
        "Opens that needed the body from the origin.",
    ),
    metric(
        "revalidations",
        "revalidations",
        Kind::Counter,
        "Stored entries checked with their origin by a conditional request.",
    ),
    metric(
        "not_modified",
        "not_modified",
        Kind::Counter,
        "Revalidations answered 304 Not Modified; the stored body was kept.",
    ),
    metric(
        "origin_requests",
        "origin_requests",
        Kind::Counter,
        "HTTP requests sent to origins, redirect hops included.",
    ),
    metric(
        "origin_errors",
        "origin_errors",
        Kind::Counter,
        "Origin requests that got no usable answer: connect errors, timeouts, 5xx.",
    ),
    metric(
        "stale_served",
        "stale_served",
        Kind::Counter,
        "Stale bodies served because their origin failed (stale-if-error).",
    ),
    metric(
        "bytes_from_origin",
        "origin_bytes",
        Kind::Counter,
        "Body bytes received from origins.",
    ),
    metric(
        "bytes_served",
        "served_bytes",
        Kind::Counter,
        "Bytes the daemon returned to readers (passthrough reads not included).",
    ),
    metric(
        "passthrough_opens",
        "passthrough_opens",
        Kind::Counter,
        "Opens of stored bodies the kernel reads from the blob file itself.",
    ),
    metric("entries", "entries", Kind::Gauge, "URLs in the index."),
    metric("blobs", "blobs", Kind::Gauge, "Distinct bodies stored."),
    metric(
        "cache_bytes",
        "cache_bytes",
        Kind::Gauge,
        "Bytes the stored bodies take on disk.",
    ),
    metric(
        "logical_bytes",
        "logical_bytes",
        Kind::Gauge,
        "Bytes the entries would take without dedup.",
    ),
    metric(
        "dedup_saved_bytes",
        "dedup_saved_bytes",
        Kind::Gauge,
        "Bytes dedup saves: logical bytes minus cache bytes.",
    ),
    metric(
        "evictions",
        "evictions",
        Kind::Counter,
        "Bodies deleted by the size cap or a full disk, and entries dropped through evict.",
    ),
    metric(
        "in_flight",
        "in_flight",
        Kind::Gauge,
        "Downloads running now.",
    ),
    metric(
        "prefetch_queued",
        "prefetch_queued",
        Kind::Gauge,
        "Prefetches waiting for their turn or running.",
    ),
    metric(
        "prefetch_done",
        "prefetch_done",
        Kind::Counter,
        "Prefetches that ended without an error.",
    ),
    metric(
        "prefetch_failed",
        "prefetch_failed",
        Kind::Counter,
        "Prefetches that failed for good, after their retries.",
    ),
    metric(
        "inodes",
        "inodes",
        Kind::Gauge,
        "Inodes the daemon remembers because the kernel holds them.",
    ),
    metric(
        "shared_up",
        "shared_up",
        Kind::Gauge,
        "1 while the fleet tier answers; 0 while it is down or not configured.",
    ),
    metric(
        "shared_hits",
        "shared_hits",
        Kind::Counter,
        "Bodies filled from the fleet tier instead of the origin.",
    ),
    metric(
        "bytes_from_shared",
        "shared_bytes",
        Kind::Counter,
        "Body bytes received from the fleet tier.",
    ),
    metric(
        "shared_publishes",
        "shared_publishes",
        Kind::Counter,
        "Bodies this host published to the fleet tier.",
    ),
    metric(
        "shared_errors",
        "shared_errors",
        Kind::Counter,
        "Calls to the fleet tier that failed or passed their deadline.",
    ),
    metric(
        "fleet_commands_sent",
        "fleet_commands_sent",
        Kind::Counter,
        "invalidate and evict writes this host told the fleet.",
    ),
    metric(
        "fleet_commands_received",
        "fleet_commands_received",
        Kind::Counter,
        "invalidate and evict writes other hosts told the fleet, applied here.",
    ),
    metric(
        "leases_led",
        "leases_led",
        Kind::Counter,
        "Origin fetches this host led for the fleet, holding the URL's lease.",
    ),
    metric(
        "leases_followed",
        "leases_followed",
        Kind::Counter,
        "Times this host waited for another host's fetch of a URL.",
    ),
    metric(
        "leases_taken_over",
        "leases_taken_over",
        Kind::Counter,
        "Fetches another host led and stopped, taken over by this host.",
    ),
    metric(
        "lease_bypasses",
        "lease_bypasses",
        Kind::Counter,
        "Fetches by another host that made no progress, fetched here instead.",
    ),
    metric(
        "hit_rate",
        "hit_ratio",
        Kind::Gauge,
        "Hits over hits plus misses, from 0 to 1 (0 before the first open).",
    ),
    metric(
        "uptime_s",
        "uptime_seconds",
        Kind::Gauge,
        "Seconds since the mount started.",
    ),
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

    #[test]
    fn every_stats_field_is_one_metric() {
        let json = serde_json::to_value(Stats::from_parts(
            CounterValues::default(),
            Totals::default(),
        ))
        .unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut shown: Vec<&str> = METRICS.iter().map(|m| m.field).collect();
        shown.sort_unstable();
        assert_eq!(shown, fields, "stats fields and metrics differ");
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "two metrics share a name");
    }

    #[test]
    fn the_text_format_has_help_type_and_value_for_each_metric() {
        let stats = Stats::from_parts(
            CounterValues {
                hits: 3,
                misses: 1,
                bytes_from_origin: 6,
                uptime_s: 42,
                ..CounterValues::default()
            },
            Totals {
                entries: 1,
                blobs: 1,
                cache_bytes: 6,
                logical_bytes: 6,
            },
        );
        let text = stats.to_prometheus();
        assert!(text.starts_with(
            "# HELP fetchfs_hits_total Opens served from a stored body.\n\
             # TYPE fetchfs_hits_total counter\n\
             fetchfs_hits_total 3\n"
        ));
        for line in [
            "fetchfs_origin_bytes_total 6\n",
            "# TYPE fetchfs_cache_bytes gauge\nfetchfs_cache_bytes 6\n",
            "fetchfs_hit_ratio 0.75\n",
            "# TYPE fetchfs_uptime_seconds gauge\nfetchfs_uptime_seconds 42\n",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3 * METRICS.len());
        for triple in lines.chunks(3) {
            let name = triple[2].split(' ').next().unwrap();
            assert!(
                triple[0].starts_with(&format!("# HELP {name} ")),
                "{triple:?}"
            );
            assert!(
                triple[1].starts_with(&format!("# TYPE {name} ")),
                "{triple:?}"
            );
            assert!(
                name.starts_with("fetchfs_") && !name.contains("_s_") && !name.ends_with("_s"),
                "{name}"
            );
            let counter = triple[1].ends_with(" counter");
            assert_eq!(counter, name.ends_with("_total"), "{triple:?}");
        }
        assert!(text.ends_with('\n'));
    }
}

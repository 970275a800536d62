//! The statistics: `MNT/.fetchfs/stats` is one JSON object with every field
//! of the contract, and `fetchfs stats MNT` prints them.

use std::time::Duration;

use crate::common::*;

const INTEGER_FIELDS: [&str; 17] = [
    "hits",
    "misses",
    "revalidations",
    "not_modified",
    "origin_requests",
    "origin_errors",
    "stale_served",
    "bytes_from_origin",
    "bytes_served",
    "entries",
    "blobs",
    "cache_bytes",
    "logical_bytes",
    "dedup_saved_bytes",
    "evictions",
    "in_flight",
    "uptime_s",
];

#[test]
fn stats_file_has_every_field_with_its_type() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(random_bytes(10_000, 21)));
    let mount = Mount::single("o", origin.url("/base"));
    read(&mount.path("o/f"));
    mount.wait_idle(Duration::from_secs(10));
    read(&mount.path("o/f"));

    let stats = mount.stats();

    assert!(stats.is_object(), "stats is not an object: {stats}");
    for field in INTEGER_FIELDS {
        assert!(
            stats[field].is_u64(),
            "stats.{field} missing or not a non-negative integer: {stats}"
        );
    }
    let hit_rate = stats["hit_rate"]
        .as_f64()
        .unwrap_or_else(|| panic!("stats.hit_rate missing or not a number: {stats}"));
    assert!(
        (0.0..=1.0).contains(&hit_rate),
        "hit_rate {hit_rate} outside 0..1"
    );
    assert!(stats["origin_requests"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["bytes_served"].as_u64().unwrap() >= 10_000, "{stats}");
    assert_eq!(
        stats["entries"].as_u64(),
        Some(1),
        "one URL cached: {stats}"
    );
    assert_eq!(stats["blobs"].as_u64(), Some(1), "one body stored: {stats}");
}

#[test]
fn stats_command_prints_every_field() {
    let origin = Origin::start();
    let mount = Mount::single("o", origin.url("/base"));
    let mountpoint = mount.mountpoint().to_str().unwrap().to_string();

    let output = run_fetchfs(&["stats", &mountpoint], Duration::from_secs(20));

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fetchfs stats exited with {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for field in INTEGER_FIELDS.iter().chain(&["hit_rate"]) {
        assert!(
            stdout.contains(field),
            "`fetchfs stats` does not print {field}:\n{stdout}"
        );
    }
}

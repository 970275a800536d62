//! `fetchfs status`: every fetchfs mount on this machine, with its daemon,
//! cache dir, origins, size and hit rate.

use std::path::{Path, PathBuf};

use bytesize::ByteSize;
use serde::Serialize;

use super::mounts::{self, read_control};
use crate::control::ControlFile;
use crate::control::stats::Stats;
use crate::control::status::Status;

/// One mount as `fetchfs status` shows it. A mount whose daemon does not
/// answer (or whose control files this user may not read) has only its
/// mountpoint and the reason.
#[derive(Debug, Serialize)]
struct MountReport {
    mountpoint: PathBuf,
    status: Option<Status>,
    stats: Option<Stats>,
    error: Option<String>,
}

/// Lists the fetchfs mounts (only those at `only`, when given).
pub fn run(only: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let wanted: Vec<PathBuf> = only
        .iter()
        .map(|path| mounts::absolute(path))
        .collect::<anyhow::Result<_>>()?;
    let table = mounts::current();
    for path in &wanted {
        match mounts::at(&table, path) {
            Some(entry) if entry.is_fetchfs() => {}
            _ => anyhow::bail!("{} is not a fetchfs mount", path.display()),
        }
    }
    let reports: Vec<MountReport> = table
        .iter()
        .filter(|entry| entry.is_fetchfs())
        .filter(|entry| wanted.is_empty() || wanted.contains(&entry.target))
        .map(|entry| report(&entry.target))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else if reports.is_empty() {
        eprintln!("no fetchfs mount on this machine");
    } else {
        print!("{}", to_table(&reports));
    }
    Ok(())
}

fn report(mountpoint: &Path) -> MountReport {
    let read = read_control::<Status>(mountpoint, ControlFile::Status).and_then(|status| {
        let stats = read_control::<Stats>(mountpoint, ControlFile::Stats)?;
        Ok((status, stats))
    });
    match read {
        Ok((status, stats)) => MountReport {
            mountpoint: mountpoint.to_path_buf(),
            status: Some(status),
            stats: Some(stats),
            error: None,
        },
        Err(error) => MountReport {
            mountpoint: mountpoint.to_path_buf(),
            status: None,
            stats: None,
            error: Some(format!("{error:#}")),
        },
    }
}

/// Aligned columns, one mount a line; a mount that cannot be read says why.
fn to_table(reports: &[MountReport]) -> String {
    let header = [
        "MOUNTPOINT",
        "PID",
        "CACHE DIR",
        "SIZE",
        "HIT RATE",
        "ORIGINS",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|report| {
            let mountpoint = report.mountpoint.display().to_string();
            match (&report.status, &report.stats) {
                (Some(status), Some(stats)) => vec![
                    mountpoint,
                    status.pid.to_string(),
                    status.cache_dir.display().to_string(),
                    ByteSize::b(stats.cache_bytes).display().iec().to_string(),
                    format!("{:.1}%", stats.hit_rate * 100.0),
                    origins(status),
                ],
                _ => vec![
                    mountpoint,
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    report.error.clone().unwrap_or_default(),
                ],
            }
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    std::iter::once(header.map(String::from).to_vec())
        .chain(rows)
        .map(|row| {
            let last = row.len() - 1;
            let mut line: String = row[..last]
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}  "))
                .collect();
            line.push_str(&row[last]);
            line.push('\n');
            line
        })
        .collect()
}

/// `name=url` of each origin, and `any host` when the mount serves any.
fn origins(status: &Status) -> String {
    let mut names: Vec<String> = status
        .origins
        .iter()
        .map(|origin| format!("{}={}", origin.name, origin.url))
        .collect();
    if status.any_host {
        names.push("any host".into());
    }
    names.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_mounts_and_says_why_one_cannot_be_read() {
        let status = Status {
            any_host: true,
            ..crate::control::status::example()
        };
        let stats: Stats = serde_json::from_value(serde_json::json!({
            "hits": 3, "misses": 1, "revalidations": 0, "not_modified": 0,
            "origin_requests": 1, "origin_errors": 0, "stale_served": 0,
            "bytes_from_origin": 2048, "bytes_served": 4096, "entries": 1,
            "blobs": 1, "cache_bytes": 2048, "logical_bytes": 2048,
            "dedup_saved_bytes": 0, "evictions": 0, "in_flight": 0,
            "hit_rate": 0.75, "uptime_s": 5
        }))
        .unwrap();
        let reports = [
            MountReport {
                mountpoint: "/mnt/artifacts".into(),
                status: Some(status),
                stats: Some(stats),
                error: None,
            },
            MountReport {
                mountpoint: "/mnt/x".into(),
                status: None,
                stats: None,
                error: Some("the daemon of /mnt/x did not answer within 3 s".into()),
            },
        ];
        let table = to_table(&reports);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("MOUNTPOINT      PID  CACHE DIR"));
        assert!(lines[1].contains("/var/cache/fetchfs"), "{table}");
        assert!(lines[1].contains("2.0 KiB"), "{table}");
        assert!(lines[1].contains("75.0%"), "{table}");
        assert!(
            lines[1].ends_with("rel=https://downloads.example.org/ any host"),
            "{table}"
        );
        assert!(lines[2].ends_with("did not answer within 3 s"), "{table}");
        assert_eq!(
            lines[0].find("PID"),
            lines[1].find("42"),
            "columns line up: {table}"
        );
    }
}

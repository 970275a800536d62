//! `fetchfs top MOUNTPOINT`: a live view of one mount, redrawn every
//! second: hits and misses, bytes from the origin and to readers with their
//! rates, and each download under way with a progress bar. `q`, Esc or
//! Ctrl-C quits. Where stdout is not a terminal, each frame is printed
//! after the previous one, for logs and tests.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytesize::ByteSize;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};

use super::mounts::{self, read_control};
use crate::control::ControlFile;
use crate::control::stats::Stats;
use crate::control::status::{DownloadStatus, Status};

/// Width of a download's progress bar, in cells.
const BAR_CELLS: usize = 24;

/// The mount's figures at one instant.
struct Sample {
    at: Instant,
    stats: Stats,
    status: Status,
}

impl Sample {
    fn take(mountpoint: &Path) -> anyhow::Result<Sample> {
        Ok(Sample {
            status: read_control(mountpoint, ControlFile::Status)?,
            stats: read_control(mountpoint, ControlFile::Stats)?,
            at: Instant::now(),
        })
    }
}

/// Draws frames every `interval` until the user quits, or `frames` of
/// them when given.
pub fn run(mountpoint: &Path, interval: Duration, frames: Option<u64>) -> anyhow::Result<()> {
    let target = mounts::absolute(mountpoint)?;
    let interactive = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let screen = if interactive {
        Some(Screen::enter()?)
    } else {
        None
    };
    let mut previous: Option<Sample> = None;
    let mut drawn = 0;
    loop {
        let sample = Sample::take(&target)?;
        // Off a terminal, lines are not cut: a log keeps whole URLs.
        let width = match &screen {
            Some(_) => terminal::size().map_or(100, |(columns, _)| usize::from(columns)),
            None => usize::MAX,
        };
        let frame = render(&sample, previous.as_ref(), width);
        match &screen {
            Some(screen) => screen.draw(&frame)?,
            None => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{frame}")?;
                out.flush()?;
            }
        }
        previous = Some(sample);
        drawn += 1;
        if frames.is_some_and(|frames| drawn >= frames) {
            return Ok(());
        }
        if screen.is_some() {
            if quit_asked_within(interval)? {
                return Ok(());
            }
        } else {
            std::thread::sleep(interval);
        }
    }
}

/// The terminal in raw mode on the alternate screen, as long as it lives.
struct Screen;

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        terminal::enable_raw_mode().context("setting up the terminal")?;
        let screen = Screen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(screen)
    }

    fn draw(&self, frame: &str) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        queue!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        // Raw mode: a new line does not return the carriage by itself.
        for line in frame.lines() {
            write!(out, "{line}\r\n")?;
        }
        out.flush()?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Waits up to `wait` for a key; true when it asks to quit (raw mode turns
/// Ctrl-C into a key, not a signal).
fn quit_asked_within(wait: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !event::poll(left)? {
            return Ok(false);
        }
        if let Event::Key(key) = event::read()?
            && key.kind == KeyEventKind::Press
        {
            let quits = matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                || (key.code == KeyCode::Char('c')
                    && key.modifiers.contains(KeyModifiers::CONTROL));
            if quits {
                return Ok(true);
            }
        }
    }
}

/// One frame: the mount's figures, rates since `previous`, and the downloads.
fn render(now: &Sample, previous: Option<&Sample>, width: usize) -> String {
    let (stats, status) = (&now.stats, &now.status);
    let seconds = previous.map(|p| now.at.duration_since(p.at).as_secs_f64());
    let rate = |bytes: u64, before: Option<u64>| match (seconds, before) {
        (Some(seconds), Some(before)) if seconds > 0.0 => {
            per_second(bytes.saturating_sub(before) as f64 / seconds)
        }
        _ => "-".to_string(),
    };
    let uptime = humantime::format_duration(Duration::from_secs(stats.uptime_s));
    let mut frame = format!(
        "fetchfs top  {}  pid {}  up {uptime}   (q quits)\n",
        status.mountpoint.display(),
        status.pid
    );
    frame += &format!(
        "hits {}  misses {}  hit rate {:.1}%  revalidations {}  origin errors {}\n",
        stats.hits,
        stats.misses,
        stats.hit_rate * 100.0,
        stats.revalidations,
        stats.origin_errors
    );
    frame += &format!(
        "from origin {}  {}    served {}  {}\n",
        size(stats.bytes_from_origin),
        rate(
            stats.bytes_from_origin,
            previous.map(|p| p.stats.bytes_from_origin)
        ),
        size(stats.bytes_served),
        rate(stats.bytes_served, previous.map(|p| p.stats.bytes_served)),
    );
    frame += &format!(
        "stored {} in {} bodies, {} entries    downloads in flight {}\n\n",
        size(stats.cache_bytes),
        stats.blobs,
        stats.entries,
        status.downloads.len()
    );
    if status.downloads.is_empty() {
        frame += "no download in flight\n";
        return frame;
    }
    let before: HashMap<&str, u64> = previous
        .map(|p| {
            p.status
                .downloads
                .iter()
                .map(|d| (d.url.as_str(), d.bytes))
                .collect()
        })
        .unwrap_or_default();
    let head = format!(
        "{:<width$}  {:>4}  {:>10}  {:>10}  {:>11}  URL\n",
        "PROGRESS",
        "",
        "DONE",
        "SIZE",
        "RATE",
        width = BAR_CELLS + 2
    );
    frame += &head;
    for download in &status.downloads {
        let row = format!(
            "{}  {:>4}  {:>10}  {:>10}  {:>11}  ",
            bar(download),
            download
                .fraction()
                .map_or(String::new(), |f| format!("{:.0}%", f * 100.0)),
            size(download.bytes),
            download.size.map_or("?".to_string(), size),
            rate(download.bytes, before.get(download.url.as_str()).copied()),
        );
        let room = width.saturating_sub(row.chars().count()).max(1);
        frame += &format!("{row}{}\n", tail(&download.url, room));
    }
    frame
}

/// `[#######.........]`; a download of unknown size shows no fill.
fn bar(download: &DownloadStatus) -> String {
    let filled = download
        .fraction()
        .map_or(0, |f| (f * BAR_CELLS as f64).floor() as usize);
    let empty = if download.size.is_some() { '.' } else { '?' };
    format!(
        "[{}{}]",
        "#".repeat(filled),
        empty.to_string().repeat(BAR_CELLS - filled)
    )
}

fn size(bytes: u64) -> String {
    ByteSize::b(bytes).display().iec().to_string()
}

fn per_second(bytes: f64) -> String {
    format!("{}/s", size(bytes as u64))
}

/// The last `room` characters of `text`, marked with `…` when cut: a URL's
/// end names the file.
fn tail(text: &str, room: usize) -> String {
    let count = text.chars().count();
    if count <= room {
        return text.to_string();
    }
    let kept: String = text.chars().skip(count - room + 1).collect();
    format!("…{kept}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, served: u64, downloads: Vec<DownloadStatus>) -> Sample {
        let stats: Stats = serde_json::from_value(serde_json::json!({
            "hits": 9, "misses": 1, "revalidations": 0, "not_modified": 0,
            "origin_requests": 1, "origin_errors": 0, "stale_served": 0,
            "bytes_from_origin": served, "bytes_served": served, "entries": 1,
            "blobs": 1, "cache_bytes": 0, "logical_bytes": 0,
            "dedup_saved_bytes": 0, "evictions": 0, "in_flight": 1,
            "hit_rate": 0.9, "uptime_s": 65
        }))
        .unwrap();
        let status = Status {
            downloads,
            ..crate::control::status::example()
        };
        Sample { at, stats, status }
    }

    fn download(bytes: u64, size: Option<u64>) -> DownloadStatus {
        DownloadStatus {
            url: "https://downloads.example.org/v1.2/tool.tar.gz".into(),
            bytes,
            size,
            readers: 1,
        }
    }

    #[test]
    fn a_frame_shows_figures_rates_and_a_bar_per_download() {
        let start = Instant::now();
        let before = sample(start, 0, vec![download(0, Some(4 << 20))]);
        let now = sample(
            start + Duration::from_secs(2),
            2 << 20,
            vec![download(2 << 20, Some(4 << 20))],
        );
        let frame = render(&now, Some(&before), 120);
        assert!(frame.contains("pid 42"), "{frame}");
        assert!(frame.contains("hit rate 90.0%"), "{frame}");
        assert!(frame.contains("from origin 2.0 MiB  1.0 MiB/s"), "{frame}");
        let row = frame.lines().last().unwrap();
        assert!(
            row.starts_with(&format!("[{}{}]", "#".repeat(12), ".".repeat(12))),
            "{row}"
        );
        assert!(row.contains(" 50% "), "{row}");
        assert!(
            row.ends_with("https://downloads.example.org/v1.2/tool.tar.gz"),
            "{row}"
        );

        let first = render(&before, None, 120);
        assert!(
            first.contains("from origin 0 B  -"),
            "no rate without a previous frame: {first}"
        );
    }

    #[test]
    fn unknown_sizes_idle_mounts_and_narrow_terminals() {
        let now = sample(Instant::now(), 0, vec![download(1 << 20, None)]);
        let row_of = |width| {
            render(&now, None, width)
                .lines()
                .last()
                .unwrap()
                .to_string()
        };
        let row = row_of(200);
        assert!(
            row.starts_with(&format!("[{}]", "?".repeat(BAR_CELLS))),
            "{row}"
        );
        assert!(row.contains("        ?  "), "{row}");
        let narrow = row_of(100);
        assert!(narrow.ends_with("/v1.2/tool.tar.gz"), "{narrow}");
        assert!(narrow.contains('…'), "{narrow}");
        assert_eq!(narrow.chars().count(), 100, "{narrow}");
        let idle = render(&sample(Instant::now(), 0, Vec::new()), None, 80);
        assert!(idle.ends_with("no download in flight\n"), "{idle}");
    }
}

//! The `events` file: a reader follows what the cache does as JSON lines.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::*;

/// Follows `.fetchfs/events` on a thread, sending each parsed line.
fn follow_events(mount: &Mount) -> mpsc::Receiver<serde_json::Value> {
    let file = std::fs::File::open(mount.path(".fetchfs/events")).expect("open events");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { return };
            let event =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("event line {line:?}: {e}"));
            if lines.send(event).is_err() {
                return;
            }
        }
    });
    received
}

fn wait_for(events: &mpsc::Receiver<serde_json::Value>, kind: &str) -> serde_json::Value {
    loop {
        let event = events
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {kind} event within 10 s"));
        if event["event"] == kind {
            return event;
        }
    }
}

#[test]
fn events_show_a_fetch_then_a_hit() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"body".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    let events = follow_events(&mount);

    assert_eq!(read(&mount.path("o/f")), b"body");
    let fetch = wait_for(&events, "fetch");
    assert_eq!(fetch["url"], origin.url("/base/f").as_str());
    assert_eq!(fetch["size"], 4);
    assert!(fetch["ts_ms"].as_u64().is_some_and(|ts| ts > 0), "{fetch}");

    mount.wait_idle(Duration::from_secs(10));
    assert_eq!(read(&mount.path("o/f")), b"body");
    let hit = wait_for(&events, "hit");
    assert_eq!(hit["blake3"], blake3::hash(b"body").to_hex().as_str());
}

#[test]
fn a_failed_download_is_an_error_event() {
    let origin = Origin::start();
    origin.route("/base/cut", Route::ok(vec![7u8; 100_000]).reset_after(1000));
    let mount = Mount::single("o", origin.url("/base"));
    let events = follow_events(&mount);

    assert!(
        std::fs::read(mount.path("o/cut")).is_err(),
        "a cut body read whole"
    );
    let error = wait_for(&events, "error");
    assert_eq!(error["url"], origin.url("/base/cut").as_str());
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{error}"
    );
}

#[test]
fn tail_f_follows_the_events() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"body".to_vec()));
    let mount = Mount::single("o", origin.url("/base"));
    assert_eq!(read(&mount.path("o/f")), b"body");
    mount.wait_idle(Duration::from_secs(10));

    let mut tail = std::process::Command::new("tail")
        .args(["-n", "1", "-f"])
        .arg(mount.path(".fetchfs/events"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run tail");
    let stdout = tail.stdout.take().expect("tail's stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let last = received
        .recv_timeout(Duration::from_secs(10))
        .expect("tail printed the last event");
    assert!(last.contains("\"event\""), "{last}");

    origin.route("/base/g", Route::fresh(b"more".to_vec()));
    assert_eq!(read(&mount.path("o/g")), b"more");
    let followed = std::iter::from_fn(|| received.recv_timeout(Duration::from_secs(10)).ok())
        .find(|line| line.contains("\"fetch\"") && line.contains("/base/g"));
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(followed.is_some(), "tail -f never showed the fetch of g");
}

//! 2,000 small files, cold and cached, through the mount: what the commit
//! path costs per file.
//!
//!     cargo bench --profile dev --bench small_files
//!
//! One `cat` reads 2,000 files of 4 KiB one after another, as a build tool
//! would, from a fresh cache (cold: every file fetched, committed, and its
//! end-of-file read waiting for the commit), then again (cached). Prints
//! files per second for each; the origin is the tests' in-process origin on
//! 127.0.0.1, the same for every run, so compare runs, not absolute figures.

#[path = "common/mod.rs"]
mod harness;

use std::process::Command;
use std::time::Duration;

use harness::check::{random_bytes, timed};
use harness::mount::{Mount, OriginConfig};
use harness::origin::{Origin, Route};

const FILES: usize = 2000;
const FILE_BYTES: usize = 4096;

fn main() {
    let origin = Origin::start();
    for i in 0..FILES {
        let body = random_bytes(FILE_BYTES, i as u64);
        origin.route(&format!("/base/d/f{i:04}"), Route::fresh(body));
    }
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")).listing("none"))
        .watchdog(Duration::from_secs(600))
        .mount();
    let paths: Vec<_> = (0..FILES)
        .map(|i| mount.path(&format!("o/d/f{i:04}")))
        .collect();
    for pass in ["cold", "cached"] {
        let (status, took) = timed(|| Command::new("cat").args(&paths).output());
        let output = status.expect("cat");
        assert!(output.status.success(), "cat failed");
        assert_eq!(output.stdout.len(), FILES * FILE_BYTES);
        println!(
            "{pass:<7} {FILES} x 4 KiB: {:>8.0} files/s  ({took:.2?})",
            FILES as f64 / took.as_secs_f64()
        );
        mount.wait_idle(Duration::from_secs(30));
    }
}

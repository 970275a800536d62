//! `fetchfs stats MOUNTPOINT`: the stats file as a table.

use std::path::Path;

use super::mounts::read_control;
use crate::control::ControlFile;
use crate::control::stats::Stats;

pub fn run(mountpoint: &Path) -> anyhow::Result<()> {
    let stats: Stats = read_control(mountpoint, ControlFile::Stats)?;
    print!("{}", stats.to_table());
    Ok(())
}

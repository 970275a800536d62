//! `fetchfs stats MOUNTPOINT`: the stats file as a table.

use std::path::Path;

use anyhow::Context;

use crate::control::CONTROL_DIR;
use crate::control::stats::Stats;

pub fn run(mountpoint: &Path) -> anyhow::Result<()> {
    let path = mountpoint.join(CONTROL_DIR).join("stats");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a fetchfs mount (cannot read {})",
            mountpoint.display(),
            path.display()
        )
    })?;
    let stats: Stats = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a stats file", path.display()))?;
    print!("{}", stats.to_table());
    Ok(())
}

//! `fetchfs verify`: re-hash every blob of a cache dir that no mount is using.

use std::path::Path;

use anyhow::bail;

use crate::store::Store;
use crate::store::verify::Problem;

pub fn run(cache_dir: &Path, repair: bool) -> anyhow::Result<()> {
    let store = Store::open(cache_dir)?;
    let report = store.verify(repair)?;
    for (hash, problem) in &report.bad_blobs {
        let what = match problem {
            Problem::Missing => "missing".to_string(),
            Problem::WrongSize { expected, found } => {
                format!("{found} bytes, the index says {expected}")
            }
            Problem::WrongHash { found } => format!("content hashes to {found}"),
        };
        println!("bad blob {hash}: {what}");
    }
    for url in &report.dangling_urls {
        println!("entry without a blob: {url}");
    }
    for path in &report.stray_files {
        println!("file no entry names: {}", path.display());
    }
    for mismatch in &report.derived_mismatches {
        println!("index key out of step with the records: {mismatch}");
    }
    if let Some((kept, counted)) = &report.totals_mismatch {
        println!(
            "index totals out of step: kept {} entries, {} bodies, {} bytes; the records add up to {} entries, {} bodies, {} bytes",
            kept.entries,
            kept.blobs,
            kept.cache_bytes,
            counted.entries,
            counted.blobs,
            counted.cache_bytes
        );
    }
    for (family, key) in &report.undecodable {
        println!(
            "unreadable index record in {family}: {}",
            String::from_utf8_lossy(key)
        );
    }
    let size = bytesize::ByteSize::b(report.bytes_checked).display().iec();
    println!(
        "checked {} blobs ({size}) in {}",
        report.blobs_checked,
        cache_dir.display()
    );
    if repair && !report.derived_mismatches.is_empty() {
        println!("rebuilt the index's lru and by_blob families from its records");
    }
    match (report.is_clean(), repair) {
        (true, _) => println!("ok"),
        (false, true) => println!(
            "repaired: broken blobs and their entries dropped (the next read fetches them again), stray files deleted"
        ),
        (false, false) => {
            bail!("the cache dir has problems; run again with --repair to drop what is broken")
        }
    }
    Ok(())
}

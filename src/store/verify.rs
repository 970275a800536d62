//! `fetchfs verify`: re-hash every blob and check the index against the disk.
//!
//! The commit protocol promises that every index record names a blob that is
//! there and whole; this proves it after the fact (a disk error, a hand-edited
//! cache dir). With `repair`, bad blobs and the entries pointing at them are
//! dropped (the next read fetches them again), records naming no blob are
//! removed, and files no record names are deleted. The index's derived
//! families (`lru`, `by_blob`) are checked against the records too, and
//! rebuilt from them on repair, and so are the totals the index keeps
//! (entries, bodies, bytes): recounted on repair.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::{Store, StoreError};
use crate::store::index::{DerivedMismatch, Totals};

/// What is wrong with one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing,
    WrongSize { expected: u64, found: u64 },
    WrongHash { found: String },
}

#[derive(Debug, Default)]
pub struct Report {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub bad_blobs: Vec<(blake3::Hash, Problem)>,
    /// URL records whose blob has no record.
    pub dangling_urls: Vec<String>,
    /// Files under `blobs/` that no record names.
    pub stray_files: Vec<PathBuf>,
    /// Index records that cannot be decoded: (column family, key).
    pub undecodable: Vec<(&'static str, Vec<u8>)>,
    /// Keys of the derived families (`lru`, `by_blob`) out of step with the
    /// records.
    pub derived_mismatches: Vec<DerivedMismatch>,
    /// The totals the index keeps (entries, bodies, bytes), when they are not
    /// what its records add up to: (kept, counted).
    pub totals_mismatch: Option<(Totals, Totals)>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.bad_blobs.is_empty()
            && self.dangling_urls.is_empty()
            && self.stray_files.is_empty()
            && self.undecodable.is_empty()
            && self.derived_mismatches.is_empty()
            && self.totals_mismatch.is_none()
    }
}

impl Store {
    /// Checks every blob and record; with `repair`, removes what is broken.
    pub fn verify(&self, repair: bool) -> Result<Report, StoreError> {
        let mut report = Report::default();
        let blobs = self.index.blob_records()?;
        for (hash, record) in &blobs {
            report.blobs_checked += 1;
            report.bytes_checked += record.size;
            if let Some(problem) = self.check_blob(hash, record.size)? {
                report.bad_blobs.push((*hash, problem));
            }
        }
        for (url, record) in self.index.url_records()? {
            if self.index.blob(&record.blob)?.is_none() {
                report.dangling_urls.push(url);
            }
        }
        report.undecodable = self.index.undecodable()?;
        report.derived_mismatches = self.index.derived_mismatches()?;
        report.totals_mismatch = self.index.totals_mismatch()?;
        let known: std::collections::HashSet<String> =
            blobs.iter().map(|(h, _)| h.to_hex().to_string()).collect();
        report.stray_files = self
            .blobs
            .all_files()?
            .into_iter()
            .filter(|path| !is_known(path, &known))
            .collect();
        if repair {
            self.repair(&report)?;
        }
        Ok(report)
    }

    pub(super) fn check_blob(
        &self,
        hash: &blake3::Hash,
        size: u64,
    ) -> Result<Option<Problem>, StoreError> {
        let mut file = match self.blobs.open_blob(hash) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Problem::Missing)),
            Err(e) => return Err(e.into()),
        };
        let mut hasher = blake3::Hasher::new();
        let found = io::copy(&mut file, &mut hasher)?;
        if found != size {
            return Ok(Some(Problem::WrongSize {
                expected: size,
                found,
            }));
        }
        let actual = hasher.finalize();
        Ok((actual != *hash).then(|| Problem::WrongHash {
            found: actual.to_hex().to_string(),
        }))
    }

    fn repair(&self, report: &Report) -> Result<(), StoreError> {
        self.index.delete_records(&report.undecodable)?;
        // Before dropping bad blobs: `drop_blobs` finds their URLs in `by_blob`.
        if !report.derived_mismatches.is_empty() {
            self.index.rebuild_derived()?;
        }
        let bad: std::collections::HashSet<blake3::Hash> =
            report.bad_blobs.iter().map(|(h, _)| *h).collect();
        self.index.drop_blobs(&bad)?;
        for hash in &bad {
            self.blobs.remove(hash)?;
        }
        self.index.remove_urls(&report.dangling_urls)?;
        // Last: the repairs above keep the totals in step with what they change.
        if report.totals_mismatch.is_some() {
            self.index.recount_totals()?;
        }
        for path in &report.stray_files {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }
}

fn is_known(path: &std::path::Path, known: &std::collections::HashSet<String>) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|name| known.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(bodies: &[&[u8]]) -> (tempfile::TempDir, Store, Vec<blake3::Hash>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut hashes = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let mut partial = store.blobs.create_partial().unwrap();
            partial.append(body).unwrap();
            let url = format!("http://h/{i}");
            hashes.push(
                store
                    .commit(partial, &url, 0, serde_json::json!({}))
                    .unwrap()
                    .0,
            );
        }
        (dir, store, hashes)
    }

    #[test]
    fn a_clean_store_verifies() {
        let (_dir, store, _) = store_with(&[b"one", b"two"]);
        let report = store.verify(false).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.blobs_checked, 2);
    }

    #[test]
    fn corruption_is_found_and_repaired() {
        let (_dir, store, hashes) = store_with(&[b"good", b"flipped", b"gone"]);
        let flipped = store.blobs.path(&hashes[1]);
        let mut perms = fs::metadata(&flipped).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&flipped, perms).unwrap();
        fs::write(&flipped, b"flopped").unwrap();
        fs::remove_file(store.blobs.path(&hashes[2])).unwrap();
        let stray = store.blobs.path(&blake3::hash(b"stray"));
        fs::create_dir_all(stray.parent().unwrap()).unwrap();
        fs::write(&stray, b"stray").unwrap();

        let report = store.verify(false).unwrap();
        assert_eq!(report.bad_blobs.len(), 2, "{report:?}");
        assert!(report.bad_blobs.iter().any(|(_, p)| *p == Problem::Missing));
        assert!(
            report
                .bad_blobs
                .iter()
                .any(|(_, p)| matches!(p, Problem::WrongHash { .. }))
        );
        assert_eq!(report.stray_files, vec![stray.clone()]);

        store.verify(true).unwrap();
        let after = store.verify(false).unwrap();
        assert!(after.is_clean(), "{after:?}");
        assert!(
            store.index.url("http://h/0").unwrap().is_some(),
            "a good entry was dropped"
        );
        assert!(store.index.url("http://h/1").unwrap().is_none());
        assert!(!stray.exists());
        assert_eq!(store.index.totals().entries, 1);
    }

    /// Edits the index of a closed cache dir by hand, as damage would.
    fn edit_index(dir: &std::path::Path, edit: impl FnOnce(&rocksdb::DB)) {
        let families = ["urls", "blobs", "meta", "lru", "by_blob"];
        let options = rocksdb::Options::default();
        let db = rocksdb::DB::open_cf(&options, dir.join("index"), families).unwrap();
        edit(&db);
    }

    fn lru_key(access_ms: u64, hash: &blake3::Hash) -> Vec<u8> {
        [&access_ms.to_be_bytes()[..], hash.as_bytes()].concat()
    }

    fn by_blob_key(hash: &blake3::Hash, url: &str) -> Vec<u8> {
        [hash.as_bytes(), url.as_bytes()].concat()
    }

    /// The totals are kept, not counted at each mount: verify counts them
    /// and --repair sets them right.
    #[test]
    fn totals_out_of_step_with_the_records_are_reported_and_recounted() {
        let (dir, store, _) = store_with(&[b"one", b"two", b"three"]);
        let totals = store.index.totals();
        drop(store);
        edit_index(dir.path(), |db| {
            let urls = db.cf_handle("urls").unwrap();
            db.delete_cf(urls, "http://h/1").unwrap();
        });
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.index.totals(), totals, "kept, not counted");

        let report = store.verify(false).unwrap();
        assert!(!report.is_clean());
        let (kept, counted) = report.totals_mismatch.expect("a mismatch");
        assert_eq!(kept, totals);
        assert_eq!(counted.entries, totals.entries - 1);
        store.verify(true).unwrap();
        assert_eq!(store.index.totals().entries, totals.entries - 1);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.index.totals().entries, totals.entries - 1);
        let report = store.verify(false).unwrap();
        assert!(report.totals_mismatch.is_none());
    }

    #[test]
    fn out_of_step_lru_and_by_blob_keys_are_reported_and_rebuilt() {
        let (dir, store, hashes) = store_with(&[b"one", b"two", b"three"]);
        let accessed = store
            .index
            .blob(&hashes[0])
            .unwrap()
            .unwrap()
            .last_access_ms;
        drop(store);
        edit_index(dir.path(), |db| {
            let (lru, by_blob) = (
                db.cf_handle("lru").unwrap(),
                db.cf_handle("by_blob").unwrap(),
            );
            // Body 0 listed at another access time; URL 1 under body 2, not 1.
            db.delete_cf(lru, lru_key(accessed, &hashes[0])).unwrap();
            db.put_cf(lru, lru_key(accessed + 1, &hashes[0]), [])
                .unwrap();
            db.delete_cf(by_blob, by_blob_key(&hashes[1], "http://h/1"))
                .unwrap();
            db.put_cf(by_blob, by_blob_key(&hashes[2], "http://h/1"), [])
                .unwrap();
        });
        let store = Store::open(dir.path()).unwrap();

        let report = store.verify(false).unwrap();
        assert!(!report.is_clean());
        let expected = [
            DerivedMismatch::Missing {
                family: "lru",
                key: lru_key(accessed, &hashes[0]),
            },
            DerivedMismatch::Stale {
                family: "lru",
                key: lru_key(accessed + 1, &hashes[0]),
            },
            DerivedMismatch::Missing {
                family: "by_blob",
                key: by_blob_key(&hashes[1], "http://h/1"),
            },
            DerivedMismatch::Stale {
                family: "by_blob",
                key: by_blob_key(&hashes[2], "http://h/1"),
            },
        ];
        assert_eq!(
            report.derived_mismatches.len(),
            expected.len(),
            "{report:?}"
        );
        for mismatch in &expected {
            assert!(report.derived_mismatches.contains(mismatch), "{mismatch:?}");
        }
        let stale_url = expected[3].to_string();
        assert!(stale_url.contains("http://h/1"), "{stale_url}");

        store.verify(true).unwrap();
        let after = store.verify(false).unwrap();
        assert!(after.is_clean(), "{after:?}");
        assert_eq!(store.index.totals().entries, 3, "repair dropped an entry");
        // Dropping body 1 now finds its URL again.
        store
            .index
            .drop_blobs(&std::collections::HashSet::from([hashes[1]]))
            .unwrap();
        assert!(store.index.url("http://h/1").unwrap().is_none());
        assert!(store.index.url("http://h/2").unwrap().is_some());
    }

    /// `drop_blobs` finds a bad blob's URLs in `by_blob`, so a repair
    /// rebuilds it first: a URL missing there is dropped with its blob, not
    /// left pointing at nothing.
    #[test]
    fn repair_drops_a_bad_blob_with_a_url_by_blob_had_lost() {
        let (dir, store, hashes) = store_with(&[b"good", b"bad"]);
        drop(store);
        edit_index(dir.path(), |db| {
            let by_blob = db.cf_handle("by_blob").unwrap();
            db.delete_cf(by_blob, by_blob_key(&hashes[1], "http://h/1"))
                .unwrap();
        });
        let store = Store::open(dir.path()).unwrap();
        fs::remove_file(store.blobs.path(&hashes[1])).unwrap();

        store.verify(true).unwrap();
        let after = store.verify(false).unwrap();
        assert!(after.is_clean(), "{after:?}");
        assert!(store.index.url("http://h/1").unwrap().is_none());
        assert!(store.index.url("http://h/0").unwrap().is_some());
        assert_eq!(store.index.totals().entries, 1);
    }
}

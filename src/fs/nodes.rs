//! The inode table of the paths the kernel has looked up.
//!
//! Two kinds of inode numbers: a stored body's inode comes from the index (top
//! bit set, stable across remounts, shared by every path with that body); all
//! other nodes (directories, control files, files not stored yet) get a number
//! from this table, one per (parent, name), for the life of the mount.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::{Location, RemoteFile, is_blob_inode};
use crate::control::ControlFile;
use crate::namespace::MountPath;
use crate::telemetry::Counters;

pub const ROOT_INO: u64 = 1;
pub const CONTROL_DIR_INO: u64 = 2;
/// Control files take the numbers after the control folder.
const FIRST_CONTROL_INO: u64 = 3;
const FIRST_DYNAMIC_INO: u64 = 64;

#[derive(Debug, Clone)]
pub enum Node {
    Root,
    ControlDir,
    Control(ControlFile),
    /// `MNT/http` or `MNT/https` with `--any-host`: one directory per host below.
    Scheme(&'static str),
    Dir(Location),
    /// A file the origin has and the store does not yet.
    Remote {
        loc: Location,
        file: RemoteFile,
    },
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(
            self,
            Node::Root | Node::ControlDir | Node::Scheme(_) | Node::Dir(_)
        )
    }
}

/// Whether `new` is another body version than the file node `old` stands
/// for: both files, `old` bound to a download that `new` is not.
fn is_other_version(old: Option<&Node>, new: &Node) -> bool {
    match (old, new) {
        (Some(Node::Remote { file: old, .. }), Node::Remote { file: new, .. }) => {
            old.download.is_some() && old.download != new.download
        }
        _ => false,
    }
}

pub fn control_ino(file: ControlFile) -> u64 {
    let index = ControlFile::ALL
        .iter()
        .position(|f| *f == file)
        .unwrap_or(0);
    FIRST_CONTROL_INO + index as u64
}

#[derive(Debug)]
pub struct NodeTable {
    inner: parking_lot::Mutex<Inner>,
    /// Where the number of remembered inodes is shown (`stats`).
    counters: Option<Arc<Counters>>,
}

#[derive(Debug)]
struct Inner {
    nodes: HashMap<u64, Node>,
    /// The path a stored body's inode was last looked up through, for a
    /// body several paths share. The one path of any other body is in the
    /// index: a million stored files looked up cost no memory here.
    blob_paths: HashMap<u64, Location>,
    /// Stored bodies last looked up through a private path.
    private_blobs: std::collections::HashSet<u64>,
    by_name: HashMap<(u64, Vec<u8>), u64>,
    /// The (parent, name) each dynamic inode was made for.
    names: HashMap<u64, (u64, Vec<u8>)>,
    /// How many lookups the kernel holds on each inode it was told of: it
    /// gives them back with `forget`, and an inode at zero is dropped.
    lookups: HashMap<u64, u64>,
    /// How many of `lookups` are stored bodies' inodes.
    blob_inodes: usize,
    next: u64,
}

impl Inner {
    /// Inodes remembered beyond the fixed ones (root, control folder).
    fn remembered(&self) -> usize {
        let fixed = 2 + ControlFile::ALL.len();
        self.nodes.len().saturating_sub(fixed) + self.blob_inodes
    }

    /// The kernel answered with `ino` (a lookup) holds one more reference
    /// to it, until it forgets it.
    fn count_lookup(&mut self, ino: u64) {
        if ino >= FIRST_DYNAMIC_INO {
            let held = self.lookups.entry(ino).or_default();
            if *held == 0 && is_blob_inode(ino) {
                self.blob_inodes += 1;
            }
            *held += 1;
        }
    }

    fn drop_node(&mut self, ino: u64) {
        self.blob_paths.remove(&ino);
        self.private_blobs.remove(&ino);
        if self.nodes.remove(&ino).is_some()
            && let Some(key) = self.names.remove(&ino)
            && self.by_name.get(&key) == Some(&ino)
        {
            self.by_name.remove(&key);
        }
    }

    fn insert(&mut self, parent: u64, name: &[u8], node: Node) -> u64 {
        let key = (parent, name.to_vec());
        let current = self.by_name.get(&key).copied();
        let ino = match current {
            Some(ino) if !is_other_version(self.nodes.get(&ino), &node) => ino,
            _ => {
                let ino = self.next;
                self.next += 1;
                self.by_name.insert(key.clone(), ino);
                self.names.insert(ino, key);
                ino
            }
        };
        self.nodes.insert(ino, node);
        ino
    }
}

impl Default for NodeTable {
    fn default() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT_INO, Node::Root);
        nodes.insert(CONTROL_DIR_INO, Node::ControlDir);
        for file in ControlFile::ALL {
            nodes.insert(control_ino(file), Node::Control(file));
        }
        NodeTable {
            inner: parking_lot::Mutex::new(Inner {
                nodes,
                blob_paths: HashMap::new(),
                private_blobs: Default::default(),
                by_name: HashMap::new(),
                names: HashMap::new(),
                lookups: HashMap::new(),
                blob_inodes: 0,
                next: FIRST_DYNAMIC_INO,
            }),
            counters: None,
        }
    }
}

impl NodeTable {
    /// A table that shows its size in `counters`.
    pub fn with_counters(counters: Arc<Counters>) -> NodeTable {
        NodeTable {
            counters: Some(counters),
            ..NodeTable::default()
        }
    }

    /// The kernel gives back `count` lookups of `ino`; an inode it no longer
    /// holds is dropped, so the table holds what the kernel holds, not
    /// everything ever looked up.
    pub fn forget(&self, ino: u64, count: u64) {
        let mut inner = self.inner.lock();
        let Some(held) = inner.lookups.get_mut(&ino) else {
            return;
        };
        *held = held.saturating_sub(count);
        if *held > 0 {
            return;
        }
        inner.lookups.remove(&ino);
        if is_blob_inode(ino) {
            inner.blob_inodes -= 1;
        }
        inner.drop_node(ino);
        self.show_size(&inner);
    }

    /// Drops those of `inos` the kernel holds no lookup of: directories a
    /// listing named (`readdir` gives the kernel no reference) and nobody
    /// looked up while it was open.
    pub fn drop_unreferenced(&self, inos: impl IntoIterator<Item = u64>) {
        let mut inner = self.inner.lock();
        for ino in inos {
            if ino >= FIRST_DYNAMIC_INO && !inner.lookups.contains_key(&ino) {
                inner.drop_node(ino);
            }
        }
        self.show_size(&inner);
    }

    /// How many inodes the table remembers beyond its fixed ones.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().remembered()
    }

    fn show_size(&self, inner: &Inner) {
        if let Some(counters) = &self.counters {
            counters.set_inodes(inner.remembered() as u64);
        }
    }

    pub fn get(&self, ino: u64) -> Option<Node> {
        self.inner.lock().nodes.get(&ino).cloned()
    }

    /// A lookup is answered with the stored body `ino` at `loc`; `private`
    /// when that path serves it privately; `shared` when other paths have
    /// the same body. Counted in the same step, so a `forget` of earlier
    /// lookups cannot drop what this one answers.
    pub fn blob_looked_up(&self, ino: u64, loc: Location, private: bool, shared: bool) {
        let mut inner = self.inner.lock();
        inner.count_lookup(ino);
        if shared {
            inner.blob_paths.insert(ino, loc);
        } else {
            inner.blob_paths.remove(&ino);
        }
        if private {
            inner.private_blobs.insert(ino);
        } else {
            inner.private_blobs.remove(&ino);
        }
        self.show_size(&inner);
    }

    /// Whether the stored body `ino` was last looked up through a private path.
    pub fn is_private_blob(&self, ino: u64) -> bool {
        self.inner.lock().private_blobs.contains(&ino)
    }

    /// The path behind a file inode: a remote file's, or the last looked-up
    /// path of a body several paths share (`None` for a body with one path:
    /// the index has it).
    pub fn file_location(&self, ino: u64) -> Option<Location> {
        let inner = self.inner.lock();
        match inner.nodes.get(&ino) {
            Some(Node::Remote { loc, .. }) => Some(loc.clone()),
            _ => inner.blob_paths.get(&ino).cloned(),
        }
    }

    /// The (parent inode, name) of a mount path the kernel may have cached;
    /// `None` when a directory on the way was never looked up.
    pub fn entry_of(&self, path: &MountPath) -> Option<(u64, Vec<u8>)> {
        let inner = self.inner.lock();
        let (name, dirs) = path.0.split_last()?;
        let mut parent = ROOT_INO;
        for dir in dirs {
            parent = *inner.by_name.get(&(parent, dir.clone()))?;
        }
        Some((parent, name.clone()))
    }

    /// The inode of `name` in `parent`, now describing `node`.
    ///
    /// A file not stored yet keeps its inode while its body is the same
    /// download; a different download (a new version of the body) gets a new
    /// inode, so a reader of the old version and one of the new never share
    /// the kernel's page cache or size.
    pub fn insert(&self, parent: u64, name: &[u8], node: Node) -> u64 {
        let mut inner = self.inner.lock();
        let ino = inner.insert(parent, name, node);
        self.show_size(&inner);
        ino
    }

    /// [`NodeTable::insert`] for a lookup's answer, counted in the same step
    /// (see [`NodeTable::blob_looked_up`]).
    pub fn insert_looked_up(&self, parent: u64, name: &[u8], node: Node) -> u64 {
        let mut inner = self.inner.lock();
        let ino = inner.insert(parent, name, node);
        inner.count_lookup(ino);
        self.show_size(&inner);
        ino
    }

    /// The file inode `ino` is now reading `file` (its download began, or its
    /// size turned out to differ).
    pub fn update_remote(&self, ino: u64, file: RemoteFile) {
        if let Some(Node::Remote { file: current, .. }) = self.inner.lock().nodes.get_mut(&ino) {
            *current = file;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;
    use std::sync::Arc;

    fn dir(path: &str) -> Node {
        let origin = Origin::with_defaults(
            "o".into(),
            url::Url::parse("http://downloads.example.org/").unwrap(),
        );
        let mut loc = Location::root(Arc::new(origin));
        for name in path.split('/').filter(|n| !n.is_empty()) {
            loc = loc.child(name.as_bytes()).unwrap();
        }
        Node::Dir(loc)
    }

    #[test]
    fn one_inode_per_parent_and_name_for_the_life_of_the_mount() {
        let nodes = NodeTable::default();
        let a = nodes.insert(ROOT_INO, b"o", dir(""));
        let again = nodes.insert(ROOT_INO, b"o", dir(""));
        let other = nodes.insert(a, b"o", dir("o"));
        assert_eq!(a, again);
        assert_ne!(a, other);
        assert!(a >= FIRST_DYNAMIC_INO && other >= FIRST_DYNAMIC_INO);
        assert!(matches!(nodes.get(ROOT_INO), Some(Node::Root)));
        assert!(matches!(nodes.get(CONTROL_DIR_INO), Some(Node::ControlDir)));
    }

    #[test]
    fn a_path_walks_to_its_parent_and_name_only_through_looked_up_directories() {
        let nodes = NodeTable::default();
        let o = nodes.insert(ROOT_INO, b"o", dir(""));
        let d = nodes.insert(o, b"d", dir("d"));
        let path = |names: &[&[u8]]| MountPath(names.iter().map(|n| n.to_vec()).collect());
        assert_eq!(
            nodes.entry_of(&path(&[b"o", b"d", b"f.bin"])),
            Some((d, b"f.bin".to_vec()))
        );
        assert_eq!(
            nodes.entry_of(&path(&[b"o", b"d", b"\xff"])),
            Some((d, b"\xff".to_vec()))
        );
        assert_eq!(
            nodes.entry_of(&path(&[b"o"])),
            Some((ROOT_INO, b"o".to_vec()))
        );
        assert_eq!(nodes.entry_of(&path(&[b"o", b"never", b"f.bin"])), None);
        assert_eq!(nodes.entry_of(&path(&[])), None);
    }

    #[test]
    fn a_new_version_of_a_body_gets_a_new_inode() {
        let nodes = NodeTable::default();
        let Node::Dir(loc) = dir("f") else {
            unreachable!()
        };
        let remote = |download| Node::Remote {
            loc: loc.clone(),
            file: RemoteFile {
                size: 10,
                mtime: None,
                download,
                private: false,
            },
        };
        let probed = nodes.insert(ROOT_INO, b"f", remote(None));
        let first = nodes.insert(ROOT_INO, b"f", remote(Some(1)));
        assert_eq!(
            probed, first,
            "the download of the probed file keeps its inode"
        );
        assert_eq!(nodes.insert(ROOT_INO, b"f", remote(Some(1))), first);
        let second = nodes.insert(ROOT_INO, b"f", remote(Some(2)));
        assert_ne!(first, second, "two body versions share an inode");
        assert!(
            nodes.get(first).is_some(),
            "the old version's inode still answers"
        );
    }

    #[test]
    fn an_inode_the_kernel_forgot_is_dropped() {
        let nodes = NodeTable::default();
        let o = nodes.insert(ROOT_INO, b"o", dir(""));
        let d = nodes.insert_looked_up(o, b"d", dir("d"));
        assert_eq!(nodes.insert_looked_up(o, b"d", dir("d")), d);
        nodes.forget(d, 1);
        assert!(nodes.get(d).is_some(), "dropped with a lookup still held");
        nodes.forget(d, 1);
        assert!(nodes.get(d).is_none());
        let path = MountPath::new("o", &[b"d".to_vec(), b"f".to_vec()]);
        assert_eq!(nodes.entry_of(&path), None, "its name still leads to it");
        let again = nodes.insert(o, b"d", dir("d"));
        assert_ne!(again, d, "a forgotten inode number came back");
        nodes.forget(ROOT_INO, 1);
        assert!(
            matches!(nodes.get(ROOT_INO), Some(Node::Root)),
            "the root went"
        );
    }

    #[test]
    fn a_million_lookups_forgotten_leave_nothing() {
        let nodes = NodeTable::default();
        for i in 0..1_000_000u32 {
            let ino = nodes.insert_looked_up(ROOT_INO, &i.to_be_bytes(), dir("x"));
            nodes.forget(ino, 1);
        }
        assert_eq!(nodes.len(), 0);
    }

    /// The kernel forgets an inode while a new lookup of its name is being
    /// answered: the forget covers the old lookups only, so the inode the
    /// new answer names stays.
    #[test]
    fn only_a_body_with_several_paths_is_remembered_by_path() {
        let nodes = NodeTable::default();
        let Node::Dir(loc) = dir("a/f") else {
            unreachable!()
        };
        let ino = (1 << 63) | 7;
        assert!(is_blob_inode(ino));
        nodes.blob_looked_up(ino, loc.clone(), false, false);
        assert!(
            nodes.file_location(ino).is_none(),
            "the index has its one path"
        );
        assert_eq!(nodes.len(), 1);
        nodes.blob_looked_up(ino, loc, false, true);
        assert!(nodes.file_location(ino).is_some());
        nodes.forget(ino, 2);
        assert!(nodes.file_location(ino).is_none());
        assert_eq!(nodes.len(), 0);
    }

    #[test]
    fn a_forget_of_old_lookups_keeps_the_inode_a_new_lookup_answers() {
        let nodes = NodeTable::default();
        let d = nodes.insert_looked_up(ROOT_INO, b"d", dir("d"));
        assert_eq!(nodes.insert_looked_up(ROOT_INO, b"d", dir("d")), d);
        nodes.forget(d, 1);
        assert!(nodes.get(d).is_some());
    }

    #[test]
    fn directories_a_listing_named_are_dropped_unless_looked_up() {
        let nodes = NodeTable::default();
        let listed: Vec<u64> = (0..1000u32)
            .map(|i| nodes.insert(ROOT_INO, &i.to_be_bytes(), dir("x")))
            .collect();
        let kept = nodes.insert_looked_up(ROOT_INO, &7u32.to_be_bytes(), dir("x"));
        assert_eq!(kept, listed[7]);
        nodes.drop_unreferenced(listed.iter().copied().chain([ROOT_INO]));
        assert_eq!(nodes.len(), 1);
        assert!(nodes.get(kept).is_some() && nodes.get(ROOT_INO).is_some());
    }

    #[test]
    fn control_files_have_fixed_distinct_inodes() {
        let inos: std::collections::HashSet<u64> =
            ControlFile::ALL.iter().map(|f| control_ino(*f)).collect();
        assert_eq!(inos.len(), ControlFile::ALL.len());
        assert!(
            inos.iter()
                .all(|ino| *ino > CONTROL_DIR_INO && *ino < FIRST_DYNAMIC_INO)
        );
    }
}

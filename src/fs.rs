//! The fuser adapter: kernel requests in, cache calls out, errno at the edge.
//!
//! Thin on purpose: no HTTP and no RocksDB here. A request that may touch the
//! network (lookup of an origin path, open of a file not stored, listing a
//! directory, a read ahead of a download) hands its reply to a tokio task and
//! returns, so one slow origin never stalls the dispatch threads.
//!
//! Kernel caching: a stored body's inode never changes content, so it is
//! opened with `FOPEN_KEEP_CACHE`; the kernel keeps a path's entry for the
//! entry's remaining freshness, then looks it up again, and the lookup
//! revalidates. A file not stored yet has an entry timeout of zero, so the
//! first lookup after its download is committed answers with the blob inode.

mod commands;
mod errno;
mod handles;
mod interrupts;
mod nodes;
mod passthrough;
pub mod socket;

use std::any::Any;
use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request,
};

use crate::cache::{
    Cache, CacheError, DirEntry, Location, OpenBlob, Opened, RemoteFile, Resolved, StoredFile,
    is_blob_inode,
};
use crate::config::{Config, Origin};
use crate::control::commands::{CommandError, Origins};
use crate::control::pattern::{MAX_LINE_BYTES, PatternError};
use crate::control::status::Status;
use crate::control::{CONTROL_DIR, ControlFile};
use crate::namespace;
use crate::telemetry::EventKind;
pub use commands::CommandRunner;
use errno::errno;
use futures_util::FutureExt;
use handles::{CommandWriter, Handle, HandleTable, LineTooLong};
use interrupts::Interrupts;
use nodes::{CONTROL_DIR_INO, Node, NodeTable, ROOT_INO, control_ino};
use passthrough::Passthrough;

/// Entries and attributes that never change (root, control folder, origin roots).
const STATIC_TTL: Duration = Duration::from_secs(3600);
/// How long a directory stays a directory without asking again.
const DIR_TTL: Duration = Duration::from_secs(60);
/// A blob's content never changes; when its link count does, the kernel is
/// told to forget its attributes (see [`FetchFs::new`]).
const BLOB_ATTR_TTL: Duration = Duration::from_secs(3600);
/// Attributes of a file that is not stored yet (its size from a HEAD).
const REMOTE_ATTR_TTL: Duration = Duration::from_secs(1);
/// The longest a path's entry is trusted, however long its body stays fresh.
const MAX_ENTRY_TTL: Duration = Duration::from_secs(24 * 3600);
const BLOCK_SIZE: u32 = 4096;
/// Open flags of every file opened for reading: its `close(2)` has nothing
/// to report, so the kernel sends no `FLUSH` for it (one round trip less
/// per file). Only command files, whose last line applies at close, get one.
const READ_ONLY: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

pub struct FetchFs {
    cache: Arc<Cache>,
    runtime: tokio::runtime::Handle,
    nodes: Arc<NodeTable>,
    handles: Arc<HandleTable>,
    interrupts: Arc<Interrupts>,
    /// Stored bodies read by the kernel from their blob files.
    passthrough: Passthrough,
    /// Whether to ask the kernel for passthrough at init, and how deep the
    /// cache dir is stacked (see [`Passthrough::stack_depth`]).
    passthrough_depth: Option<u32>,
    origins: Arc<Origins>,
    /// Applies writes to the command files (and the control socket's).
    commands: CommandRunner,
    allow_other: bool,
    owner: (u32, u32),
    mounted_at: SystemTime,
    /// What the mount is, for the `status` control file.
    status: Status,
    /// Set once the session exists; kernel notifications go through it.
    notifier: Arc<OnceLock<fuser::Notifier>>,
}

impl FetchFs {
    /// `status` says what the mount is (see [`Status::of_mount`]).
    pub fn new(
        config: &Config,
        status: Status,
        cache: Arc<Cache>,
        runtime: tokio::runtime::Handle,
    ) -> FetchFs {
        let nodes = NodeTable::with_counters(Arc::clone(&cache.telemetry().counters));
        let notifier: Arc<OnceLock<fuser::Notifier>> = Arc::default();
        let links_notifier = Arc::clone(&notifier);
        cache.on_links_changed(move |inos| {
            if let Some(notifier) = links_notifier.get() {
                forget_attributes(notifier, inos);
            }
        });
        let nodes = Arc::new(nodes);
        let origins = Arc::new(Origins {
            configured: config.origins.iter().cloned().map(Arc::new).collect(),
            any_host: config.any_host,
        });
        let commands = CommandRunner {
            origins: Arc::clone(&origins),
            cache: Arc::clone(&cache),
            notifier: Arc::clone(&notifier),
            nodes: Arc::clone(&nodes),
            runtime: runtime.clone(),
        };
        FetchFs {
            cache,
            runtime,
            nodes,
            commands,
            handles: Arc::new(HandleTable::default()),
            interrupts: Arc::default(),
            passthrough: Passthrough::default(),
            passthrough_depth: config
                .passthrough
                .then(|| Passthrough::stack_depth(&config.cache_dir)),
            allow_other: config.allow_other,
            origins,
            owner: (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            ),
            mounted_at: SystemTime::now(),
            status,
            notifier,
        }
    }

    /// Where the mount's notifier goes once the session is created.
    pub fn notifier_slot(&self) -> Arc<OnceLock<fuser::Notifier>> {
        Arc::clone(&self.notifier)
    }

    /// Parses and applies whole lines written to a command file, on the
    /// blocking pool (patterns read the index: never on a dispatch thread),
    /// then tells `done`: after the kernel forgot the changed entries, so
    /// the writer's next read already sees the change.
    fn apply_command(
        &self,
        file: ControlFile,
        lines: Vec<u8>,
        done: impl FnOnce(Result<(), Errno>) + Send + 'static,
    ) {
        self.commands.apply(file, lines, |result| {
            done(result.map_err(|failed| failed.errno))
        });
    }

    fn report_command_error(&self, file: ControlFile, error: &CommandError) {
        commands::report_error(&self.cache, file, error);
    }

    /// The command files' writes, for the control socket.
    pub fn command_runner(&self) -> CommandRunner {
        self.commands.clone()
    }

    /// Whether user `uid` may open inode `ino`. Only matters with
    /// `--allow-other` (without it the kernel lets no other user in): the
    /// control folder's files (they steer the cache and name every URL) and
    /// private bodies are the mount owner's and root's alone.
    fn may_read(&self, uid: u32, ino: u64) -> bool {
        if !self.allow_other || uid == 0 || uid == self.owner.0 {
            return true;
        }
        if is_blob_inode(ino) {
            return !self.nodes.is_private_blob(ino);
        }
        match self.nodes.get(ino) {
            Some(Node::Control(_)) => false,
            Some(Node::Remote { file, .. }) => !file.private,
            _ => true,
        }
    }

    fn attrs(&self) -> Attrs {
        Attrs {
            owner: self.owner,
            mounted_at: self.mounted_at,
        }
    }

    /// The `user.fetchfs.*` attributes of a file inode; none for other inodes.
    fn xattrs(&self, ino: u64) -> Vec<(&'static str, String)> {
        let described = match self.nodes.file_location(ino) {
            Some(loc) => self.cache.describe(&loc),
            None if is_blob_inode(ino) => self.cache.describe_blob(ino),
            None => return Vec::new(),
        };
        match described {
            Ok(description) => {
                let mut attrs = description.xattrs();
                let events = &self.cache.telemetry().events;
                if let Some(error) = events.last_error(&description.url) {
                    attrs.push(("user.fetchfs.error", error));
                }
                attrs
            }
            Err(error) => {
                tracing::debug!("xattrs of inode {ino}: {error}");
                Vec::new()
            }
        }
    }

    /// A child of the root: an origin, the control folder, or an any-host
    /// scheme; `looked_up` when a lookup answers with it.
    fn root_child(&self, name: &[u8], looked_up: bool) -> Option<(u64, Node)> {
        let insert = |node: Node| {
            let ino = if looked_up {
                self.nodes.insert_looked_up(ROOT_INO, name, node.clone())
            } else {
                self.nodes.insert(ROOT_INO, name, node.clone())
            };
            (ino, node)
        };
        if name == CONTROL_DIR.as_bytes() {
            return Some((CONTROL_DIR_INO, Node::ControlDir));
        }
        if let Some(origin) = self
            .origins
            .configured
            .iter()
            .find(|o| o.name.as_bytes() == name)
        {
            return Some(insert(Node::Dir(Location::root(Arc::clone(origin)))));
        }
        let scheme = match name {
            b"http" if self.origins.any_host => "http",
            b"https" if self.origins.any_host => "https",
            _ => return None,
        };
        Some(insert(Node::Scheme(scheme)))
    }

    fn static_entry(&self, ino: u64, node: &Node, reply: ReplyEntry) {
        let attr = self.attrs().of_node(ino, node, &self.cache, &self.status);
        reply.entry_with_ttls(&attr_ttl(node), &STATIC_TTL, &attr, Generation(0));
    }

    fn lookup_in_dir(
        &self,
        unique: u64,
        parent: u64,
        loc: &Location,
        name: &[u8],
        reply: ReplyEntry,
    ) {
        let child = match loc.child(name) {
            Ok(child) => child,
            Err(_) => return reply.error(Errno::ENOENT),
        };
        let (cache, nodes, attrs) = (
            Arc::clone(&self.cache),
            Arc::clone(&self.nodes),
            self.attrs(),
        );
        let name = name.to_vec();
        let what = describe_location(&child);
        let work = async move {
            let resolved = cache.resolve(&child).await;
            (child, resolved)
        };
        self.spawn_request(
            unique,
            what,
            reply,
            work,
            move |reply, (child, resolved)| match resolved {
                Ok(Resolved::Stored(stored)) => {
                    nodes.blob_looked_up(stored.ino, child, stored.private, stored.links > 1);
                    let entry_ttl = stored.ttl.min(MAX_ENTRY_TTL);
                    reply.entry_with_ttls(
                        &BLOB_ATTR_TTL,
                        &entry_ttl,
                        &attrs.of_blob(&stored),
                        Generation(0),
                    );
                }
                Ok(Resolved::Remote(file)) => {
                    let remote = Node::Remote { loc: child, file };
                    let ino = nodes.insert_looked_up(parent, &name, remote);
                    let attr = attrs.of_remote(ino, &file);
                    reply.entry_with_ttls(&REMOTE_ATTR_TTL, &Duration::ZERO, &attr, Generation(0));
                }
                Ok(Resolved::Directory) => {
                    let ino = nodes.insert_looked_up(parent, &name, Node::Dir(child));
                    reply.entry(&DIR_TTL, &attrs.dir(ino), Generation(0));
                }
                Err(error) => reply.error(errno(&error)),
            },
        );
    }

    fn open_control(&self, file: ControlFile, reply: ReplyOpen) {
        let handle = match file.snapshot(&self.cache, &self.status) {
            Some(content) => Handle::Control(Arc::new(content)),
            None => Handle::Events,
        };
        let fh = self.handles.insert(handle);
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO | READ_ONLY);
    }

    /// Opens a file not stored at lookup. The body that is read decides its
    /// size: where the open finds another size than the lookup announced (a
    /// HEAD that disagrees with the GET, a body stored meanwhile), the node
    /// takes the true size and the kernel forgets the old one before the
    /// open is answered, so no reader takes the old size for end-of-file. A
    /// body whose size is unknown until its end is read with direct I/O, so
    /// the kernel asks the daemon where the file ends.
    fn open_remote(
        &self,
        unique: u64,
        ino: u64,
        loc: Location,
        known: RemoteFile,
        reply: ReplyOpen,
    ) {
        let (cache, handles, nodes) = (
            Arc::clone(&self.cache),
            Arc::clone(&self.handles),
            Arc::clone(&self.nodes),
        );
        let notifier = self.notifier.get().cloned();
        let what = describe_location(&loc);
        let work = async move {
            let opened = cache.open(&loc).await?;
            let (size, download) = match &opened {
                Opened::Stored(blob) => (Some(blob.stored.size), None),
                Opened::Streaming(reader) => (reader.size, Some(reader.id)),
            };
            let truth = RemoteFile {
                size: size.unwrap_or(known.size),
                download: download.or(known.download),
                ..known
            };
            if truth != known {
                nodes.update_remote(ino, truth);
            }
            if let (Some(notifier), Some(size)) = (notifier, size)
                && size != known.size
            {
                let forgotten =
                    tokio::task::spawn_blocking(move || notifier.inval_inode(INodeNo(ino), -1, 0));
                if let Ok(Err(error)) = forgotten.await {
                    tracing::debug!("forgetting the size of inode {ino}: {error}");
                }
            }
            Ok::<_, CacheError>((opened, size.is_none()))
        };
        self.spawn_request(
            unique,
            what,
            reply,
            work,
            move |reply, opened| match opened {
                Ok((Opened::Stored(blob), _)) => {
                    let fh = handles.insert(Handle::Stored(Arc::new(blob)));
                    reply.opened(FileHandle(fh), READ_ONLY);
                }
                Ok((Opened::Streaming(reader), size_unknown)) => {
                    let fh = handles.insert(Handle::Streaming(Arc::new(reader)));
                    let flags = if size_unknown {
                        FopenFlags::FOPEN_DIRECT_IO
                    } else {
                        FopenFlags::empty()
                    };
                    reply.opened(FileHandle(fh), flags | READ_ONLY);
                }
                Err(error) => reply.error(errno(&error)),
            },
        );
    }

    /// Opens blob inode `ino`: through the kernel where it can, else read by
    /// the daemon, the kernel keeping what it read in its page cache.
    fn open_stored(&self, ino: u64, blob: OpenBlob, reply: ReplyOpen) {
        let blob = Arc::new(blob);
        let fh = self.handles.insert(Handle::Stored(Arc::clone(&blob)));
        match self.passthrough.open(ino, &blob.file, &reply) {
            Some(backing) => {
                self.cache.telemetry().counters.add_passthrough_open();
                reply.opened_passthrough(FileHandle(fh), READ_ONLY, &backing);
            }
            None => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE | READ_ONLY),
        }
    }

    fn open_dir_listing(&self, unique: u64, ino: u64, loc: Location, reply: ReplyOpen) {
        let (cache, handles, nodes) = (
            Arc::clone(&self.cache),
            Arc::clone(&self.handles),
            Arc::clone(&self.nodes),
        );
        let what = describe_location(&loc);
        let work = async move {
            let listed = cache.list(&loc).await;
            (loc, listed)
        };
        self.spawn_request(
            unique,
            what,
            reply,
            work,
            move |reply, (loc, listed)| match listed {
                Ok(entries) => {
                    let with_inos = entries
                        .into_iter()
                        .filter_map(|entry| {
                            let child = loc.child(&entry.name).ok()?;
                            let node = if entry.is_dir {
                                Node::Dir(child)
                            } else {
                                return Some((0, entry));
                            };
                            Some((nodes.insert(ino, &entry.name, node), entry))
                        })
                        .collect();
                    let fh = handles.insert(Handle::Dir(Arc::new(with_inos)));
                    reply.opened(FileHandle(fh), FopenFlags::empty());
                }
                Err(error) => reply.error(errno(&error)),
            },
        );
    }

    /// Runs `work` for the request `unique` on the I/O runtime, then
    /// `answer`s with what it gives. An interrupt answers EINTR at once and
    /// drops the work. A panic in the work answers EIO, and the log and the
    /// events name `what` (the URL); the mount keeps serving.
    fn spawn_request<R, T, W>(
        &self,
        unique: u64,
        what: String,
        reply: R,
        work: W,
        answer: impl FnOnce(R, T) + Send + 'static,
    ) where
        R: ErrorReply + Send + 'static,
        T: Send + 'static,
        W: Future<Output = T> + Send + 'static,
    {
        let mut waiting = self.interrupts.register(unique);
        let cache = Arc::clone(&self.cache);
        self.runtime.spawn(async move {
            let outcome = tokio::select! {
                biased;
                () = waiting.interrupted() => Err(Errno::EINTR),
                done = AssertUnwindSafe(work).catch_unwind() => done.map_err(|panic| {
                    report_panic(&cache, &what, panic.as_ref());
                    Errno::EIO
                }),
            };
            drop(waiting);
            match outcome {
                Ok(value) => {
                    let answered = catch_unwind(AssertUnwindSafe(|| answer(reply, value)));
                    if let Err(panic) = answered {
                        report_panic(&cache, &what, panic.as_ref());
                    }
                }
                Err(errno) => reply.error(errno),
            }
        });
    }

    /// Runs a handler's body on the dispatch thread; a panic in it answers
    /// EIO (the reply is dropped) and is reported, and the thread lives on.
    fn contain(&self, what: impl FnOnce() -> String, body: impl FnOnce()) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(body)) {
            report_panic(&self.cache, &what(), panic.as_ref());
        }
    }

    /// The fixed entries of the root, the control folder and an any-host scheme folder.
    fn static_listing(&self, node: &Node) -> Vec<(u64, DirEntry)> {
        let dir = |name: &str, ino: u64| {
            (
                ino,
                DirEntry {
                    name: name.as_bytes().to_vec(),
                    is_dir: true,
                },
            )
        };
        match node {
            Node::Root => {
                let mut entries = vec![dir(CONTROL_DIR, CONTROL_DIR_INO)];
                for origin in &self.origins.configured {
                    if let Some((ino, _)) = self.root_child(origin.name.as_bytes(), false) {
                        entries.push(dir(&origin.name, ino));
                    }
                }
                if self.origins.any_host {
                    for scheme in ["http", "https"] {
                        if let Some((ino, _)) = self.root_child(scheme.as_bytes(), false) {
                            entries.push(dir(scheme, ino));
                        }
                    }
                }
                entries
            }
            Node::ControlDir => ControlFile::ALL
                .iter()
                .map(|f| {
                    (
                        control_ino(*f),
                        DirEntry {
                            name: f.name().as_bytes().to_vec(),
                            is_dir: false,
                        },
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Filesystem for FetchFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Without it the kernel serialises lookups in one directory, so one
        // slow origin request would hold up every other name beside it.
        if config
            .add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS)
            .is_err()
        {
            tracing::warn!("the kernel cannot run lookups in one directory in parallel");
        }
        if let Some(depth) = self.passthrough_depth {
            let agreed = config
                .add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH)
                .is_ok()
                && config.set_max_stack_depth(depth).is_ok();
            if agreed {
                self.passthrough.enable();
            } else {
                tracing::info!(
                    "the kernel has no passthrough: stored files are read through the daemon"
                );
            }
        }
        Ok(())
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.nodes.forget(ino.0, nlookup);
    }

    fn interrupt(&self, _req: &Request, unique: fuser::RequestId) -> Result<(), Errno> {
        self.interrupts.interrupt(unique.0);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.contain(
            || format!("lookup of {:?} in inode {}", name, parent.0),
            || {
                let name = name.as_bytes();
                match self.nodes.get(parent.0) {
                    Some(Node::Root) => match self.root_child(name, true) {
                        Some((ino, node)) => self.static_entry(ino, &node, reply),
                        None => reply.error(Errno::ENOENT),
                    },
                    Some(Node::ControlDir) => match ControlFile::from_name(name) {
                        Some(file) => {
                            self.static_entry(control_ino(file), &Node::Control(file), reply)
                        }
                        None => reply.error(Errno::ENOENT),
                    },
                    Some(Node::Scheme(scheme)) => match namespace::any_host_base(scheme, name) {
                        Ok(base) => {
                            let host = String::from_utf8_lossy(name);
                            let origin =
                                Arc::new(Origin::with_defaults(format!("{scheme}/{host}"), base));
                            let node = Node::Dir(Location::root(origin));
                            let ino = self.nodes.insert_looked_up(parent.0, name, node);
                            reply.entry(&DIR_TTL, &self.attrs().dir(ino), Generation(0));
                        }
                        Err(_) => reply.error(Errno::ENOENT),
                    },
                    Some(Node::Dir(loc)) => {
                        self.lookup_in_dir(req.unique().0, parent.0, &loc, name, reply)
                    }
                    Some(_) => reply.error(Errno::ENOTDIR),
                    None => reply.error(Errno::ENOENT),
                }
            },
        );
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.contain(
            || format!("getattr of inode {}", ino.0),
            || {
                let attrs = self.attrs();
                if is_blob_inode(ino.0) {
                    return match self.cache.blob(ino.0) {
                        Ok(mut stored) => {
                            // The index knows the body, the lookup knew its path.
                            stored.private |= self.nodes.is_private_blob(ino.0);
                            reply.attr(&BLOB_ATTR_TTL, &attrs.of_blob(&stored))
                        }
                        Err(error) => reply.error(errno(&error)),
                    };
                }
                match self.nodes.get(ino.0) {
                    Some(node) => {
                        let ttl = attr_ttl(&node);
                        reply.attr(
                            &ttl,
                            &attrs.of_node(ino.0, &node, &self.cache, &self.status),
                        );
                    }
                    None => reply.error(Errno::ENOENT),
                }
            },
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.contain(
            || format!("open of inode {}", ino.0),
            || {
                if !self.may_read(req.uid(), ino.0) {
                    return reply.error(Errno::EACCES);
                }
                if let Some(Node::Control(file)) = self.nodes.get(ino.0)
                    && file.is_command()
                {
                    let writer = Arc::new(CommandWriter::new(file));
                    let fh = self.handles.insert(Handle::Command(writer));
                    return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
                }
                if flags.acc_mode() != OpenAccMode::O_RDONLY {
                    return reply.error(Errno::EROFS);
                }
                if is_blob_inode(ino.0) {
                    return match self.cache.open_blob(ino.0) {
                        Ok(blob) => self.open_stored(ino.0, blob, reply),
                        Err(error) => reply.error(errno(&error)),
                    };
                }
                match self.nodes.get(ino.0) {
                    Some(Node::Control(file)) => self.open_control(file, reply),
                    Some(Node::Remote { loc, file }) => {
                        self.open_remote(req.unique().0, ino.0, loc, file, reply)
                    }
                    Some(_) => reply.error(Errno::EISDIR),
                    None => reply.error(Errno::ENOENT),
                }
            },
        );
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        self.contain(
            || format!("read of handle {}", fh.0),
            || {
                let counters_cache = Arc::clone(&self.cache);
                let served = move |bytes: &[u8], reply: ReplyData| {
                    counters_cache
                        .telemetry()
                        .counters
                        .add_bytes_served(bytes.len() as u64);
                    reply.data(bytes);
                };
                match self.handles.get(fh.0) {
                    Some(Handle::Stored(blob)) => {
                        let mut buf = vec![0u8; size as usize];
                        match read_full_at(&blob.file, &mut buf, offset) {
                            Ok(n) => served(&buf[..n], reply),
                            Err(e) => reply.error(Errno::from(e)),
                        }
                    }
                    Some(Handle::Streaming(download)) => {
                        let access = download.access(offset, size);
                        if let Some(read) = download.try_read(access, offset, size) {
                            return match read {
                                Ok(bytes) => served(&bytes, reply),
                                Err(error) => reply.error(errno(&CacheError::from(error))),
                            };
                        }
                        let what = download.url.clone();
                        let cache = Arc::clone(&self.cache);
                        let work =
                            async move { cache.read_body(&download, access, offset, size).await };
                        self.spawn_request(
                            req.unique().0,
                            what,
                            reply,
                            work,
                            move |reply, read| match read {
                                Ok(bytes) => served(&bytes, reply),
                                Err(error) => reply.error(errno(&CacheError::from(error))),
                            },
                        );
                    }
                    Some(Handle::Control(content)) => {
                        let start = (offset as usize).min(content.len());
                        let end = start.saturating_add(size as usize).min(content.len());
                        reply.data(&content[start..end]);
                    }
                    Some(Handle::Events) => {
                        let cache = Arc::clone(&self.cache);
                        let work = async move {
                            let events = &cache.telemetry().events;
                            events.read_at(offset, size as usize).await
                        };
                        self.spawn_request(
                            req.unique().0,
                            ".fetchfs/events".into(),
                            reply,
                            work,
                            |reply, bytes| reply.data(&bytes),
                        );
                    }
                    Some(Handle::Dir(_)) => reply.error(Errno::EISDIR),
                    Some(Handle::Command(_)) => reply.error(Errno::EBADF),
                    None => reply.error(Errno::EBADF),
                }
            },
        );
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.contain(
            || format!("release of handle {}", fh.0),
            || {
                match self.handles.remove(fh.0) {
                    Some(Handle::Stored(blob)) => {
                        self.passthrough.release(ino.0);
                        self.cache.close_blob(&blob);
                    }
                    // A last line no flush applied (the kernel flushes first).
                    Some(Handle::Command(writer)) => {
                        let rest = writer.take_rest();
                        if !rest.iter().all(u8::is_ascii_whitespace) {
                            self.apply_command(writer.file, rest, |_| {});
                        }
                    }
                    _ => {}
                }
                reply.ok();
            },
        );
    }

    /// `close(2)`: a command file's last line, written without a newline,
    /// applies now, and close reports whether it did.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        let Some(Handle::Command(writer)) = self.handles.get(fh.0) else {
            return reply.ok();
        };
        let rest = writer.take_rest();
        if rest.iter().all(u8::is_ascii_whitespace) {
            return reply.ok();
        }
        self.apply_command(writer.file, rest, move |result| match result {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        });
    }

    /// `fsync(2)` of a file: waits until its body is stored and survives a
    /// power loss (`fetchfs prefetch` does this after reading each file).
    fn fsync(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let (what, stored, streaming) = match self.handles.get(fh.0) {
            Some(Handle::Stored(blob)) => (blob.stored.hash.to_hex().to_string(), Some(blob), None),
            Some(Handle::Streaming(reader)) => (reader.url.clone(), None, Some(reader)),
            _ => return reply.ok(),
        };
        let cache = Arc::clone(&self.cache);
        let work = async move {
            if let Some(reader) = &streaming {
                reader.wait_until_whole().await?;
            }
            let durable = tokio::task::spawn_blocking(move || match (stored, streaming) {
                (Some(blob), _) => cache.wait_durable(&blob.stored.hash),
                (_, Some(reader)) => cache.wait_durable_of(&reader.url),
                (None, None) => Ok(()),
            });
            durable
                .await
                .unwrap_or_else(|e| Err(CacheError::Io(std::io::Error::other(e))))
        };
        self.spawn_request(
            req.unique().0,
            format!("fsync of {what}"),
            reply,
            work,
            |reply, done| match done {
                Ok(()) => reply.ok(),
                Err(error) => reply.error(errno(&error)),
            },
        );
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.contain(
            || format!("opendir of inode {}", ino.0),
            || match self.nodes.get(ino.0) {
                Some(Node::Dir(loc)) => self.open_dir_listing(req.unique().0, ino.0, loc, reply),
                Some(node) if node.is_dir() => {
                    let fh = self
                        .handles
                        .insert(Handle::Dir(Arc::new(self.static_listing(&node))));
                    reply.opened(FileHandle(fh), FopenFlags::empty());
                }
                Some(_) => reply.error(Errno::ENOTDIR),
                None => reply.error(Errno::ENOENT),
            },
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(Handle::Dir(entries)) = self.handles.get(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let dots = [(ino.0, b".".as_slice()), (ROOT_INO, b"..".as_slice())];
        let all = dots.iter().map(|(ino, name)| (*ino, *name, true)).chain(
            entries
                .iter()
                .map(|(ino, e)| (*ino, e.name.as_slice(), e.is_dir)),
        );
        for (index, (child_ino, name, is_dir)) in all.enumerate().skip(offset as usize) {
            let kind = if is_dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            // d_ino of a file not looked up yet is unknown; any non-zero number will do.
            let shown_ino = if child_ino == 0 {
                u64::MAX >> 1
            } else {
                child_ino
            };
            if reply.add(
                INodeNo(shown_ino),
                index as u64 + 1,
                kind,
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        if let Some(Handle::Dir(entries)) = self.handles.remove(fh.0) {
            let listed = entries.iter().map(|(ino, _)| *ino).filter(|ino| *ino != 0);
            self.nodes.drop_unreferenced(listed);
        }
        reply.ok();
    }

    fn getxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        size: u32,
        reply: fuser::ReplyXattr,
    ) {
        self.contain(
            || format!("getxattr of inode {}", ino.0),
            || {
                // They name the URL and the body's hash: as private as the body.
                if !self.may_read(req.uid(), ino.0) {
                    return reply.error(Errno::EACCES);
                }
                let attrs = self.xattrs(ino.0);
                match attrs
                    .iter()
                    .find(|(key, _)| key.as_bytes() == name.as_bytes())
                {
                    Some((_, value)) => reply_xattr(value.as_bytes(), size, reply),
                    None => reply.error(Errno::NO_XATTR),
                }
            },
        );
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        self.contain(
            || format!("listxattr of inode {}", ino.0),
            || {
                if !self.may_read(req.uid(), ino.0) {
                    return reply.error(Errno::EACCES);
                }
                let mut names = Vec::new();
                for (name, _) in self.xattrs(ino.0) {
                    names.extend_from_slice(name.as_bytes());
                    names.push(0);
                }
                reply_xattr(&names, size, reply);
            },
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    // Requests a read-only file system of plain files has nothing to do
    // with. Each gets the errno the kernel and the caller expect, quietly:
    // they are ordinary (Python asks every file it opens whether it is a
    // terminal), not worth a line in the log.

    /// No file here is a terminal or takes device requests.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// ENOSYS: the kernel then answers poll, lseek and copy_file_range
    /// itself and stops asking.
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: fuser::ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    /// There are no symbolic links.
    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        reply.error(Errno::EINVAL);
    }

    /// Directories hold nothing to write back.
    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.contain(
            || "statfs".to_string(),
            || {
                let stats = self.cache.totals();
                let blocks = stats.cache_bytes.div_ceil(u64::from(BLOCK_SIZE));
                reply.statfs(blocks, 0, 0, stats.entries, 0, BLOCK_SIZE, 255, BLOCK_SIZE);
            },
        );
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        if !self.may_read(req.uid(), ino.0) {
            return reply.error(Errno::EACCES);
        }
        let command =
            matches!(self.nodes.get(ino.0), Some(Node::Control(file)) if file.is_command());
        if mask.contains(fuser::AccessFlags::W_OK) && !command {
            return reply.error(Errno::EROFS);
        }
        reply.ok();
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        self.contain(
            || format!("write to handle {}", fh.0),
            || {
                let Some(Handle::Command(writer)) = self.handles.get(fh.0) else {
                    return reply.error(Errno::EROFS);
                };
                let written = u32::try_from(data.len()).unwrap_or(u32::MAX);
                let lines = match writer.take_lines(data, MAX_LINE_BYTES) {
                    Ok(lines) => lines,
                    Err(LineTooLong(bytes)) => {
                        let error =
                            CommandError::Pattern(PatternError::LineTooLong { line: 1, bytes });
                        self.report_command_error(writer.file, &error);
                        return reply.error(errno::of_command(&error));
                    }
                };
                if lines.is_empty() {
                    // Only part of a line so far: it applies once whole.
                    return reply.written(written);
                }
                self.apply_command(writer.file, lines, move |result| match result {
                    Ok(()) => reply.written(written),
                    Err(errno) => reply.error(errno),
                });
            },
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // `echo PATTERN > .fetchfs/invalidate` truncates first; a command file has nothing to lose.
        match self.nodes.get(ino.0) {
            Some(node @ Node::Control(file)) if file.is_command() => {
                reply.attr(
                    &STATIC_TTL,
                    &self
                        .attrs()
                        .of_node(ino.0, &node, &self.cache, &self.status),
                );
            }
            _ => reply.error(Errno::EROFS),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }
}

/// A reply that can carry an errno: what [`FetchFs::spawn_request`] answers
/// an interrupted or failed request with.
trait ErrorReply {
    fn error(self, errno: Errno);
}

macro_rules! error_reply {
    ($($reply:ty),*) => {$(
        impl ErrorReply for $reply {
            fn error(self, errno: Errno) {
                <$reply>::error(self, errno);
            }
        }
    )*};
}

error_reply!(ReplyEntry, ReplyOpen, ReplyData, ReplyEmpty);

/// A panic below a handler: the log and the events say where, and what.
fn report_panic(cache: &Cache, what: &str, panic: &(dyn Any + Send)) {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    tracing::error!("{what}: the request failed with EIO after a panic: {message}");
    cache.telemetry().events.emit(
        EventKind::Error,
        serde_json::json!({ "url": what, "message": format!("panic: {message}") }),
    );
}

/// The URL of a location, to name it in the log and the events.
fn describe_location(loc: &Location) -> String {
    loc.file_url()
        .map(|url| url.to_string())
        .unwrap_or_else(|_| format!("{}/{:?}", loc.base, loc.components))
}

/// Answers an xattr request: the size when asked for it, ERANGE when the buffer is short.
fn reply_xattr(value: &[u8], size: u32, reply: fuser::ReplyXattr) {
    if size == 0 {
        reply.size(u32::try_from(value.len()).unwrap_or(u32::MAX));
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// How long the kernel may keep a node's attributes: a control file's size
/// changes with every event or figure, so it is asked each time.
fn attr_ttl(node: &Node) -> Duration {
    match node {
        Node::Remote { .. } => REMOTE_ATTR_TTL,
        Node::Control(_) => Duration::ZERO,
        _ => STATIC_TTL,
    }
}

/// Makes the kernel forget what it holds of these inodes' attributes (their
/// link count changed), so the next `stat` asks. Inodes it does not hold
/// answer ENOENT, which is no error here.
fn forget_attributes(notifier: &fuser::Notifier, inos: &[u64]) {
    for &ino in inos {
        match notifier.inval_inode(INodeNo(ino), -1, 0) {
            Err(error) if error.raw_os_error() != Some(libc::ENOENT) => {
                tracing::debug!("forgetting the attributes of inode {ino}: {error}");
            }
            _ => {}
        }
    }
}

/// Builds attributes; owner and times are the mount's.
#[derive(Clone, Copy)]
struct Attrs {
    owner: (u32, u32),
    mounted_at: SystemTime,
}

impl Attrs {
    fn dir(&self, ino: u64) -> FileAttr {
        self.build(ino, 0, self.mounted_at, FileType::Directory, 0o555, 2)
    }

    fn file(&self, ino: u64, size: u64, mtime: SystemTime, links: u64) -> FileAttr {
        self.build(ino, size, mtime, FileType::RegularFile, 0o444, links)
    }

    /// A file only the owner reads: private under `--allow-other`.
    fn private_file(&self, ino: u64, size: u64, mtime: SystemTime, links: u64) -> FileAttr {
        self.build(ino, size, mtime, FileType::RegularFile, 0o400, links)
    }

    fn of_remote(&self, ino: u64, file: &RemoteFile) -> FileAttr {
        let mtime = file.mtime.unwrap_or(self.mounted_at);
        if file.private {
            return self.private_file(ino, file.size, mtime, 1);
        }
        self.file(ino, file.size, mtime, 1)
    }

    fn of_blob(&self, stored: &StoredFile) -> FileAttr {
        let links = stored.links.max(1);
        if stored.private {
            return self.private_file(stored.ino, stored.size, stored.mtime, links);
        }
        self.file(stored.ino, stored.size, stored.mtime, links)
    }

    /// `status` is what the mount is: the `status` file's size is its length.
    fn of_node(&self, ino: u64, node: &Node, cache: &Cache, status: &Status) -> FileAttr {
        match node {
            Node::Remote { file, .. } => self.of_remote(ino, file),
            Node::Control(file) if file.is_command() => {
                self.build(ino, 0, self.mounted_at, FileType::RegularFile, 0o644, 1)
            }
            Node::Control(ControlFile::Events) => {
                self.file(ino, cache.telemetry().events.len(), SystemTime::now(), 1)
            }
            Node::Control(file) => {
                let size = file
                    .snapshot(cache, status)
                    .map_or(0, |content| content.len() as u64);
                self.file(ino, size, SystemTime::now(), 1)
            }
            _ => self.dir(ino),
        }
    }

    fn build(
        &self,
        ino: u64,
        size: u64,
        mtime: SystemTime,
        kind: FileType,
        perm: u16,
        links: u64,
    ) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink: u32::try_from(links).unwrap_or(u32::MAX),
            uid: self.owner.0,
            gid: self.owner.1,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }
}

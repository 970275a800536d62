//! A scriptable HTTP/1.1 origin for the integration tests, written directly on
//! a tokio `TcpListener` so that every byte on the wire is under the test's
//! control: status, headers, delays, throttling, stalls, resets, short bodies
//! and unterminated chunked bodies are what a flaky real origin does, and the
//! daemon has to cope with them over a real socket.
//!
//! Routes are keyed the way nginx resolves a request: the request-target's path
//! is percent-decoded once and its dot segments are removed. So a daemon that
//! forwards `..%2fsecret` unencoded really does receive `/secret`, as it would
//! from a real server, and the traversal tests can see it.
//!
//! The server runs its own runtime on a background thread; tests stay plain
//! `#[test]` functions making blocking `std::fs` calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;
const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024 * 1024;
const WRITE_CHUNK_BYTES: usize = 256 * 1024;
const CHUNKED_PIECE_BYTES: usize = 16 * 1024;
/// How often a throttled body is topped up: small enough to look smooth.
const THROTTLE_TICKS_PER_SEC: u64 = 50;

/// Where a response body stops early, if it does.
#[derive(Clone, Debug, PartialEq)]
pub enum Cut {
    /// The whole body is sent.
    None,
    /// `after` bytes, then nothing for `pause`, then the rest.
    Stall { after: usize, pause: Duration },
    /// `after` bytes, then a TCP reset (SO_LINGER 0).
    Reset { after: usize },
    /// `after` bytes, then an orderly close (FIN). With Content-Length framing
    /// this is a short body; with chunked framing, a body without its last chunk.
    Close { after: usize },
}

/// What the origin answers for one path. Built with the constructors and
/// chained setters below; replace it at runtime with [`Origin::route`].
#[derive(Clone, Debug)]
pub struct Route {
    pub status: u16,
    pub body: Arc<Vec<u8>>,
    pub headers: Vec<(String, String)>,
    /// Sleep before the status line is sent.
    pub header_delay: Duration,
    /// Body pacing; `None` sends as fast as the socket takes it.
    pub rate_bytes_per_sec: Option<u64>,
    pub chunked: bool,
    pub cut: Cut,
    /// What a HEAD's Content-Length says, when it lies about the GET's body.
    pub head_length: Option<usize>,
    /// A GET is answered with exactly these bytes (status line, headers and
    /// all), then the connection closes: for responses no well-behaved
    /// server would send.
    pub raw_get: Option<Arc<Vec<u8>>>,
    /// The same for a HEAD.
    pub raw_head: Option<Arc<Vec<u8>>>,
    /// Answers a GET for one byte range with 206, as nginx does.
    pub ranges: bool,
}

impl Route {
    /// 200 with `body`, no freshness information.
    pub fn ok(body: impl Into<Arc<Vec<u8>>>) -> Route {
        Route {
            status: 200,
            body: body.into(),
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            header_delay: Duration::ZERO,
            rate_bytes_per_sec: None,
            chunked: false,
            cut: Cut::None,
            head_length: None,
            raw_get: None,
            raw_head: None,
            ranges: false,
        }
    }

    /// 200 with `body`, fresh for an hour, with a strong ETag.
    pub fn fresh(body: impl Into<Arc<Vec<u8>>>) -> Route {
        let body: Arc<Vec<u8>> = body.into();
        let etag = format!("\"{:016x}\"", fnv1a(&body));
        Route::ok(body)
            .header("Cache-Control", "max-age=3600")
            .header("ETag", &etag)
    }

    /// `status` with a short text body.
    pub fn status(status: u16) -> Route {
        let mut route = Route::ok(format!("{} {}\n", status, reason(status)).into_bytes());
        route.status = status;
        route.headers = vec![("Content-Type".into(), "text/plain".into())];
        route
    }

    pub fn not_found() -> Route {
        Route::status(404)
    }

    /// A redirect to `location` (absolute or relative, sent as given).
    pub fn redirect(status: u16, location: &str) -> Route {
        let body = format!(
            "<html>\r\n<head><title>{status} {r}</title></head>\r\n<body>\r\n<center><h1>{status} {r}</h1></center>\r\n</body>\r\n</html>\r\n",
            r = reason(status)
        );
        let mut route = Route::ok(body.into_bytes());
        route.status = status;
        route.headers = vec![
            ("Content-Type".into(), "text/html".into()),
            ("Location".into(), location.into()),
        ];
        route
    }

    /// Adds a header, or replaces one of the same name.
    pub fn header(mut self, name: &str, value: &str) -> Route {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Serves `Range: bytes=a-b` and `bytes=a-` with 206 and
    /// `Content-Range`, unless an `If-Range` names another ETag or date:
    /// then the whole body, with 200, as RFC 9110 says.
    pub fn ranges(mut self) -> Route {
        self.ranges = true;
        self.header("Accept-Ranges", "bytes")
    }

    pub fn header_delay(mut self, delay: Duration) -> Route {
        self.header_delay = delay;
        self
    }

    pub fn throttle(mut self, bytes_per_sec: u64) -> Route {
        self.rate_bytes_per_sec = Some(bytes_per_sec.max(1));
        self
    }

    /// A GET answers exactly `bytes` and closes the connection.
    pub fn raw_get(mut self, bytes: impl Into<Vec<u8>>) -> Route {
        self.raw_get = Some(Arc::new(bytes.into()));
        self
    }

    /// Every request (HEAD and GET) answers exactly `bytes` and closes.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Route {
        let raw = Some(Arc::new(bytes.into()));
        Route {
            raw_get: raw.clone(),
            raw_head: raw,
            ..Route::status(200)
        }
    }

    /// A HEAD answers `Content-Length: length` (and no Transfer-Encoding),
    /// whatever the GET sends.
    pub fn head_says_length(mut self, length: usize) -> Route {
        self.head_length = Some(length);
        self
    }

    pub fn chunked(mut self) -> Route {
        self.chunked = true;
        self
    }

    pub fn stall_after(mut self, after: usize, pause: Duration) -> Route {
        self.cut = Cut::Stall { after, pause };
        self
    }

    pub fn reset_after(mut self, after: usize) -> Route {
        self.cut = Cut::Reset { after };
        self
    }

    /// Sends `Content-Length: body.len()` but only `sent` bytes, then closes.
    pub fn short_body(mut self, sent: usize) -> Route {
        self.cut = Cut::Close { after: sent };
        self
    }

    /// Chunked framing, the whole body, then a close without the last chunk.
    pub fn chunked_unterminated(mut self) -> Route {
        self.chunked = true;
        self.cut = Cut::Close {
            after: self.body.len(),
        };
        self
    }

    fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request as the origin received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request-target exactly as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The route key: path decoded once, dot segments removed.
    pub path: String,
    pub received_at: Instant,
    /// Set once the whole response body has been written to the socket.
    pub body_sent_at: Option<Instant>,
    /// Body bytes written to the socket (0 for HEAD, 304 and so on).
    pub body_bytes_sent: u64,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// nginx autoindex flavours.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Listing {
    Html,
    Json,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    log: Mutex<Vec<Request>>,
    /// TCP connections open now, and the most ever open at once.
    connections: std::sync::atomic::AtomicUsize,
    most_connections: std::sync::atomic::AtomicUsize,
}

/// Counts one open connection while it lives.
struct OpenConnection(Arc<State>);

impl OpenConnection {
    fn new(state: &Arc<State>) -> OpenConnection {
        use std::sync::atomic::Ordering::SeqCst;
        let now = state.connections.fetch_add(1, SeqCst) + 1;
        state.most_connections.fetch_max(now, SeqCst);
        OpenConnection(Arc::clone(state))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Locks without caring about poisoning: a panicking test thread must not take
/// the origin down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Origin {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind origin");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(State::default());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("origin-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("origin runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = accept_loop(listener, thread_state) => {}
                        _ = shutdown_rx => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn origin thread");
        Origin {
            addr,
            state,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sets or replaces the route for `path`, a decoded path taken literally
    /// (`/base/a b?c` is one file name with a space and a question mark).
    pub fn route(&self, path: &str, route: Route) {
        lock(&self.state.routes).insert(path_key(path), route);
    }

    /// Replaces the body of an existing route, keeping everything else.
    pub fn set_body(&self, path: &str, body: impl Into<Arc<Vec<u8>>>) {
        let mut routes = lock(&self.state.routes);
        let route = routes
            .get_mut(&path_key(path))
            .unwrap_or_else(|| panic!("no route for {path}"));
        route.body = body.into();
    }

    pub fn remove(&self, path: &str) {
        lock(&self.state.routes).remove(&path_key(path));
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state.log).clone()
    }

    /// Requests whose route key is `path` (a decoded path, as for [`Origin::route`]).
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        let key = path_key(path);
        lock(&self.state.log)
            .iter()
            .filter(|r| r.path == key)
            .cloned()
            .collect()
    }

    /// The most TCP connections that were ever open at once.
    pub fn most_connections(&self) -> usize {
        self.state
            .most_connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn total(&self) -> usize {
        lock(&self.state.log).len()
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests_to(path)
            .iter()
            .filter(|r| r.method == method)
            .count()
    }

    pub fn gets(&self, path: &str) -> usize {
        self.count("GET", path)
    }

    pub fn heads(&self, path: &str) -> usize {
        self.count("HEAD", path)
    }

    /// GET responses for `path` whose body was written out completely.
    /// Body bytes sent for `path`, over every request.
    pub fn body_bytes_sent(&self, path: &str) -> u64 {
        self.requests_to(path)
            .iter()
            .map(|r| r.body_bytes_sent)
            .sum()
    }

    pub fn bodies_sent(&self, path: &str) -> usize {
        self.requests_to(path)
            .iter()
            .filter(|r| r.method == "GET" && r.body_sent_at.is_some())
            .count()
    }

    /// A readable dump of the log for assertion messages: one line per
    /// request, runs of identical lines collapsed into one with a count.
    pub fn describe_requests(&self) -> String {
        let log = lock(&self.state.log);
        let lines: Vec<String> = log
            .iter()
            .map(|r| {
                let conditional = if r.header("If-None-Match").is_some()
                    || r.header("If-Modified-Since").is_some()
                {
                    " (conditional)"
                } else {
                    ""
                };
                let range = r
                    .header("Range")
                    .map(|range| format!(" ({range}: {} bytes)", r.body_bytes_sent))
                    .unwrap_or_default();
                format!("{} {}{conditional}{range}", r.method, r.target)
            })
            .collect();
        let mut out = String::new();
        let mut i = 0;
        while i < lines.len() {
            let run = lines[i..].iter().take_while(|l| **l == lines[i]).count();
            if run > 1 {
                out.push_str(&format!("  {}  x{run}\n", lines[i]));
            } else {
                out.push_str(&format!("  {}\n", lines[i]));
            }
            i += run;
        }
        if out.is_empty() {
            out.push_str("  (none)\n");
        }
        out
    }

    /// Serves `files` (paths relative to `base`, e.g. `sub/a.txt`) as nginx
    /// would with `autoindex on`: each file fresh for an hour, each directory
    /// `d/` as a listing and `d` as a 301 to `d/`. `base` is `""` or `/x/y`.
    pub fn serve_tree(&self, base: &str, files: &BTreeMap<String, Vec<u8>>, listing: Listing) {
        self.serve_listed(base, &BTreeSet::new(), files, listing);
    }

    /// Serves the directory `root` of the local disk as [`Origin::serve_tree`]
    /// does, empty directories included (a bare git repository has some).
    pub fn serve_dir(&self, base: &str, root: &std::path::Path, listing: Listing) {
        let (dirs, files) = super::check::read_tree(root);
        self.serve_listed(base, &dirs, &files, listing);
        // As a web server would: a file's Last-Modified is the time its
        // listing shows, so its mtime on the mount is the same before and
        // after it is stored (rsync -a compares it).
        let base = base.trim_end_matches('/');
        for (rel, body) in &files {
            self.route(
                &format!("{base}/{rel}"),
                Route::fresh(body.clone()).header("Last-Modified", LISTING_MTIME_HTTP),
            );
        }
    }

    /// `files`, the directories they imply and `dirs`, which may be empty,
    /// all relative to `base`.
    fn serve_listed(
        &self,
        base: &str,
        dirs: &BTreeSet<String>,
        files: &BTreeMap<String, Vec<u8>>,
        listing: Listing,
    ) {
        let base = base.trim_end_matches('/');
        let mut index = DirIndex::new();
        for rel in std::iter::once("").chain(dirs.iter().map(String::as_str)) {
            add_dir(&mut index, rel);
        }
        for (rel, body) in files {
            let (parent, file_name) = rel.rsplit_once('/').unwrap_or(("", rel));
            let dir = add_dir(&mut index, parent);
            index
                .entry(dir)
                .or_default()
                .1
                .insert(file_name.to_string(), body.len());
            self.route(&format!("{base}/{rel}"), Route::fresh(body.clone()));
        }
        for (dir, (subdirs, dir_files)) in &index {
            let dir_path = if dir.is_empty() {
                base.to_string()
            } else {
                format!("{base}/{dir}")
            };
            let listing_path = format!("{dir_path}/");
            let body = match listing {
                Listing::Html => nginx_html_index(&listing_path, subdirs, dir_files),
                Listing::Json => nginx_json_index(subdirs, dir_files),
            };
            let content_type = match listing {
                Listing::Html => "text/html",
                Listing::Json => "application/json",
            };
            self.route(
                &listing_path,
                Route::ok(body.into_bytes()).header("Content-Type", content_type),
            );
            if !dir_path.is_empty() {
                self.route(
                    &dir_path,
                    Route::redirect(301, &self.url(&format!("{}/", encode_path(&dir_path)))),
                );
            }
        }
    }
}

/// Directory (relative, `""` for the base) -> (its subdirectories, its
/// files with their sizes).
type DirIndex = BTreeMap<String, (BTreeSet<String>, BTreeMap<String, usize>)>;

/// Registers the directory `rel` and its ancestors in `dirs`; returns its key.
fn add_dir(dirs: &mut DirIndex, rel: &str) -> String {
    let mut dir = String::new();
    dirs.entry(String::new()).or_default();
    for part in rel.split('/').filter(|part| !part.is_empty()) {
        let child = if dir.is_empty() {
            part.to_string()
        } else {
            format!("{dir}/{part}")
        };
        dirs.entry(dir).or_default().0.insert(part.to_string());
        dirs.entry(child.clone()).or_default();
        dir = child;
    }
    dir
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, state.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

struct ParsedHead {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl ParsedHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        let connection = self.header("Connection").unwrap_or("").to_ascii_lowercase();
        if self.version == "HTTP/1.0" {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        }
    }
}

async fn serve_connection(mut stream: TcpStream, state: Arc<State>) {
    let _open = OpenConnection::new(&state);
    let mut buffered = Vec::new();
    loop {
        let head = match read_head(&mut stream, &mut buffered).await {
            HeadRead::Head(head) => head,
            HeadRead::Eof => return,
            HeadRead::TooLarge => {
                let _ = write_simple(&mut stream, 431).await;
                return;
            }
        };
        let Some(request) = parse_head(&head) else {
            let _ = write_simple(&mut stream, 400).await;
            return;
        };
        if request.header("Transfer-Encoding").is_some() {
            let _ = write_simple(&mut stream, 411).await;
            return;
        }
        let body_len = match request
            .header("Content-Length")
            .map(|v| v.trim().parse::<usize>())
        {
            None => 0,
            Some(Ok(n)) if n <= MAX_REQUEST_BODY_BYTES => n,
            Some(_) => {
                let _ = write_simple(&mut stream, 400).await;
                return;
            }
        };
        if !discard_body(&mut stream, &mut buffered, body_len).await {
            return;
        }
        let keep_alive = request.keep_alive();
        let key = route_key(&request.target);
        let index = {
            let mut log = lock(&state.log);
            log.push(Request {
                method: request.method.clone(),
                target: request.target.clone(),
                headers: request.headers.clone(),
                path: key.clone(),
                received_at: Instant::now(),
                body_sent_at: None,
                body_bytes_sent: 0,
            });
            log.len() - 1
        };
        let route = lock(&state.routes)
            .get(&key)
            .cloned()
            .unwrap_or_else(Route::not_found);
        match respond(&mut stream, &state, index, &request, &route, keep_alive).await {
            After::KeepAlive if keep_alive => {}
            After::KeepAlive | After::Close => {
                let _ = stream.shutdown().await;
                return;
            }
            // Dropping a zero-linger socket without shutdown sends a bare RST.
            After::Abort => return,
        }
    }
}

enum HeadRead {
    Head(Vec<u8>),
    Eof,
    TooLarge,
}

async fn read_head(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> HeadRead {
    let mut scratch = [0u8; 8192];
    loop {
        if let Some(end) = find(buffered, b"\r\n\r\n") {
            let head: Vec<u8> = buffered.drain(..end + 4).collect();
            return HeadRead::Head(head);
        }
        if buffered.len() > MAX_REQUEST_HEAD_BYTES {
            return HeadRead::TooLarge;
        }
        match stream.read(&mut scratch).await {
            Ok(0) | Err(_) => return HeadRead::Eof,
            Ok(n) => buffered.extend_from_slice(&scratch[..n]),
        }
    }
}

async fn discard_body(stream: &mut TcpStream, buffered: &mut Vec<u8>, len: usize) -> bool {
    let from_buffer = len.min(buffered.len());
    buffered.drain(..from_buffer);
    let mut remaining = len - from_buffer;
    let mut scratch = [0u8; 8192];
    while remaining > 0 {
        let want = remaining.min(scratch.len());
        match stream.read(&mut scratch[..want]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => remaining -= n,
        }
    }
    true
}

fn parse_head(head: &[u8]) -> Option<ParsedHead> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let version = request_line.next()?.to_string();
    if request_line.next().is_some()
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || target.is_empty()
        || !version.starts_with("HTTP/1.")
    {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':')?;
        if name.is_empty() || name.contains(' ') {
            return None;
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Some(ParsedHead {
        method,
        target,
        version,
        headers,
    })
}

/// What becomes of the connection after a response.
enum After {
    KeepAlive,
    Close,
    Abort,
}

/// Writes the response.
async fn respond(
    stream: &mut TcpStream,
    state: &State,
    index: usize,
    request: &ParsedHead,
    route: &Route,
    keep_alive: bool,
) -> After {
    if !route.header_delay.is_zero() {
        tokio::time::sleep(route.header_delay).await;
    }
    let is_head = request.method == "HEAD";
    let raw = if is_head {
        &route.raw_head
    } else {
        &route.raw_get
    };
    if let Some(raw) = raw {
        let _ = stream.write_all(raw).await;
        let _ = stream.flush().await;
        return After::Close;
    }
    if request.method != "GET" && !is_head {
        return match write_simple(stream, 405).await {
            Ok(()) => After::KeepAlive,
            Err(_) => After::Close,
        };
    }
    let not_modified = route.status == 200 && is_not_modified(request, route);
    let mut status = if not_modified { 304 } else { route.status };
    let part = (!is_head && !not_modified && route.ranges && route.status == 200)
        .then(|| requested_range(request, route))
        .flatten();
    let sliced;
    let mut content_range = None;
    let route = match part {
        Some(Ok((first, last))) => {
            status = 206;
            content_range = Some(format!("bytes {first}-{last}/{}", route.body.len()));
            sliced = Route {
                body: Arc::new(route.body[first..=last].to_vec()),
                ..route.clone()
            };
            &sliced
        }
        Some(Err(())) => {
            status = 416;
            content_range = Some(format!("bytes */{}", route.body.len()));
            sliced = Route {
                body: Arc::new(Vec::new()),
                ..route.clone()
            };
            &sliced
        }
        None => route,
    };

    let mut head = format!("HTTP/1.1 {} {}\r\n", status, reason(status));
    head.push_str(&format!("Date: {}\r\n", http_date(SystemTime::now())));
    head.push_str("Server: fetchfs-test-origin\r\n");
    let sends_body = !not_modified && status != 204;
    if let (true, Some(length)) = (is_head, route.head_length) {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    } else if sends_body {
        if route.chunked {
            head.push_str("Transfer-Encoding: chunked\r\n");
        } else {
            head.push_str(&format!("Content-Length: {}\r\n", route.body.len()));
        }
    }
    for (name, value) in &route.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(content_range) = &content_range {
        head.push_str(&format!("Content-Range: {content_range}\r\n"));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n"
    } else {
        "Connection: close\r\n"
    });
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return After::Close;
    }
    if is_head || !sends_body {
        return match stream.flush().await {
            Ok(()) => After::KeepAlive,
            Err(_) => After::Close,
        };
    }

    let mut framing = Framing {
        chunked: route.chunked,
        rate: route.rate_bytes_per_sec,
        started: Instant::now(),
        sent: 0,
    };
    let (after, complete) = send_body(stream, route, &mut framing).await;
    if let Some(entry) = lock(&state.log).get_mut(index) {
        entry.body_bytes_sent = framing.sent;
        if complete {
            entry.body_sent_at = Some(Instant::now());
        }
    }
    after
}

/// The one byte range a GET asks for, inclusive, if the route serves it:
/// `Err` when it starts past the end. `None` means the whole body (no
/// `Range`, several ranges, or an `If-Range` that does not match).
fn requested_range(request: &ParsedHead, route: &Route) -> Option<Result<(usize, usize), ()>> {
    let spec = request.header("Range")?.trim().strip_prefix("bytes=")?;
    if let Some(validator) = request.header("If-Range") {
        let current = [
            route.header_value("ETag"),
            route.header_value("Last-Modified"),
        ];
        if !current.contains(&Some(validator.trim())) {
            return None;
        }
    }
    let (first, last) = spec.split_once('-')?;
    let len = route.body.len();
    let first: usize = first.trim().parse().ok()?;
    let last = match last.trim() {
        "" => len.checked_sub(1)?,
        last => last.parse::<usize>().ok()?.min(len.checked_sub(1)?),
    };
    if first >= len {
        return Some(Err(()));
    }
    (first <= last).then_some(Ok((first, last)))
}

/// Sends the body as the route's cut prescribes; returns what becomes of the
/// connection and whether the whole body went out.
async fn send_body(stream: &mut TcpStream, route: &Route, framing: &mut Framing) -> (After, bool) {
    let body = &route.body[..];
    let outcome = match route.cut {
        Cut::None => framing.send(stream, body).await,
        Cut::Stall { after, pause } => {
            let after = after.min(body.len());
            if framing.send(stream, &body[..after]).await.is_err() {
                return (After::Close, false);
            }
            tokio::time::sleep(pause).await;
            // The pause must not count against the throttle budget.
            framing.started += pause;
            framing.send(stream, &body[after..]).await
        }
        Cut::Reset { after } => {
            let after = after.min(body.len());
            let _ = framing.send(stream, &body[..after]).await;
            let _ = stream.flush().await;
            // Give the bytes a moment to leave before the reset discards them.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stream.set_zero_linger();
            return (After::Abort, false);
        }
        Cut::Close { after } => {
            let after = after.min(body.len());
            let _ = framing.send(stream, &body[..after]).await;
            let _ = stream.flush().await;
            return (After::Close, false);
        }
    };
    if outcome.is_err() || framing.finish(stream).await.is_err() {
        return (After::Close, false);
    }
    (After::KeepAlive, true)
}

struct Framing {
    chunked: bool,
    rate: Option<u64>,
    started: Instant,
    sent: u64,
}

impl Framing {
    async fn send(&mut self, stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
        let piece = match (self.rate, self.chunked) {
            (Some(rate), _) => {
                ((rate / THROTTLE_TICKS_PER_SEC).max(1) as usize).min(WRITE_CHUNK_BYTES)
            }
            (None, true) => CHUNKED_PIECE_BYTES,
            (None, false) => WRITE_CHUNK_BYTES,
        };
        for part in data.chunks(piece) {
            if self.chunked {
                stream
                    .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                    .await?;
                stream.write_all(part).await?;
                stream.write_all(b"\r\n").await?;
            } else {
                stream.write_all(part).await?;
            }
            self.sent += part.len() as u64;
            if let Some(rate) = self.rate {
                stream.flush().await?;
                let due = self.started + Duration::from_secs_f64(self.sent as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        stream.flush().await
    }

    async fn finish(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        if self.chunked {
            stream.write_all(b"0\r\n\r\n").await?;
        }
        stream.flush().await
    }
}

async fn write_simple(stream: &mut TcpStream, status: u16) -> std::io::Result<()> {
    let body = format!("{} {}\n", status, reason(status));
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        status,
        reason(status),
        body.len(),
        body
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}

fn is_not_modified(request: &ParsedHead, route: &Route) -> bool {
    if let Some(tags) = request.header("If-None-Match") {
        let Some(etag) = route.header_value("ETag") else {
            return false;
        };
        let weak_eq = |t: &str| t.trim().trim_start_matches("W/") == etag.trim_start_matches("W/");
        return tags.split(',').any(|t| t.trim() == "*" || weak_eq(t));
    }
    if let Some(since) = request.header("If-Modified-Since") {
        return route.header_value("Last-Modified") == Some(since.trim());
    }
    false
}

/// The route key of a request-target or a path: path component only (an
/// absolute-form target loses its scheme and authority), percent-decoded once,
/// dot segments removed (RFC 3986 5.2.4), as nginx maps a URI to a location.
pub fn route_key(target: &str) -> String {
    let mut path = target;
    if let Some(rest) = path
        .strip_prefix("http://")
        .or_else(|| path.strip_prefix("https://"))
    {
        path = rest.find('/').map_or("/", |i| &rest[i..]);
    }
    if let Some(end) = path.find(['?', '#']) {
        path = &path[..end];
    }
    let decoded = String::from_utf8_lossy(&percent_decode(path)).into_owned();
    let mut resolved = remove_dot_segments(&decoded);
    if !resolved.starts_with('/') {
        resolved.insert(0, '/');
    }
    resolved
}

/// The route key of a decoded path: dot segments removed, nothing else.
pub fn path_key(path: &str) -> String {
    let mut resolved = remove_dot_segments(path);
    if !resolved.starts_with('/') {
        resolved.insert(0, '/');
    }
    resolved
}

pub fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// RFC 3986 section 5.2.4.
pub fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_string();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_string();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_string();
        } else if input.starts_with("/./") {
            input = input[2..].to_string();
        } else if input == "/." {
            input = "/".to_string();
        } else if input.starts_with("/../") {
            input = input[3..].to_string();
            truncate_last_segment(&mut output);
        } else if input == "/.." {
            input = "/".to_string();
            truncate_last_segment(&mut output);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input = input[end..].to_string();
        }
    }
    output
}

fn truncate_last_segment(output: &mut String) {
    match output.rfind('/') {
        Some(i) => output.truncate(i),
        None => output.clear(),
    }
}

/// Percent-encodes every byte of a path except unreserved characters and `/`.
pub fn encode_path(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const LISTING_MTIME_HTML: &str = "25-Nov-2025 00:57";
const LISTING_MTIME_HTTP: &str = "Tue, 25 Nov 2025 00:57:00 GMT";

/// The body nginx's `autoindex on` (HTML, exact sizes) produces.
fn nginx_html_index(
    listing_path: &str,
    subdirs: &BTreeSet<String>,
    files: &BTreeMap<String, usize>,
) -> String {
    let title = html_escape(listing_path);
    let mut out = format!(
        "<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n<h1>Index of {title}</h1><hr><pre><a href=\"../\">../</a>\r\n"
    );
    let mut line = |href: String, text: String, size: String| {
        let shown = text.chars().count();
        let pad = " ".repeat(51usize.saturating_sub(shown).max(1));
        out.push_str(&format!(
            "<a href=\"{href}\">{}</a>{pad}{LISTING_MTIME_HTML} {size:>19}\r\n",
            html_escape(&text)
        ));
    };
    for dir in subdirs {
        line(
            format!("{}/", encode_path(dir)),
            format!("{dir}/"),
            "-".into(),
        );
    }
    for (file, size) in files {
        line(encode_path(file), file.clone(), size.to_string());
    }
    out.push_str("</pre><hr></body>\r\n</html>\r\n");
    out
}

/// The body nginx's `autoindex_format json` produces.
fn nginx_json_index(subdirs: &BTreeSet<String>, files: &BTreeMap<String, usize>) -> String {
    let mut entries = Vec::new();
    for dir in subdirs {
        entries.push(format!(
            "{{ \"name\":{}, \"type\":\"directory\", \"mtime\":\"{LISTING_MTIME_HTTP}\" }}",
            serde_json::to_string(dir).expect("json string")
        ));
    }
    for (file, size) in files {
        entries.push(format!(
            "{{ \"name\":{}, \"type\":\"file\", \"mtime\":\"{LISTING_MTIME_HTTP}\", \"size\":{size} }}",
            serde_json::to_string(file).expect("json string")
        ));
    }
    format!("[\n{}\n]\n", entries.join(",\n"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        411 => "Length Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// IMF-fixdate (RFC 9110 5.6.7).
pub fn http_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (hour, minute, second) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month_name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month_name} {year} {hour:02}:{minute:02}:{second:02} GMT")
}

//! A fault origin: responses no well-behaved server sends, on purpose. Each
//! case ends with the right bytes or with EIO, within the deadline; a body
//! that failed is never stored; and once the origin heals, the next read
//! gets the healed body.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use crate::common::*;

/// The origin timeout of every case, and the longest any read may take:
/// the timeout, or the minimum-rate window for a trickle, plus slack for a
/// busy machine.
const TIMEOUT: &str = "3s";
const DEADLINE: Duration = Duration::from_millis(11_500);
const HUNG: Duration = Duration::from_secs(120);

/// How a faulty response must end for the reader.
enum Ends {
    /// These bytes, read whole.
    With(Vec<u8>),
    /// EIO, and nothing stored.
    Eio,
}

fn fault_mount(origin_url: String) -> Mount {
    Mount::builder()
        .origin(
            OriginConfig::new("o", origin_url)
                .timeout(TIMEOUT)
                .min_rate("16KiB/s"),
        )
        .mount()
}

/// Serves `fault` at `o/f`, reads the file, checks how it ended and when,
/// then heals the origin and checks the healed body is read.
fn check(what: &str, fault: Route, ends: Ends) {
    let origin = Origin::start();
    origin.route("/base/f", fault);
    let mount = fault_mount(origin.url("/base"));
    let path = mount.path("o/f");

    let (result, took) = timed(|| std::fs::read(&path));
    assert!(took < DEADLINE, "{what}: the read took {took:?}");
    match (&ends, result) {
        (Ends::With(expected), Ok(data)) => assert_same_bytes(&data, expected, what),
        (Ends::With(_), Err(e)) => panic!("{what}: read failed: {e}"),
        (Ends::Eio, Ok(data)) => panic!("{what}: read succeeded with {} bytes", data.len()),
        (Ends::Eio, Err(e)) => assert_eq!(errno(&e), libc::EIO, "{what}: {e}"),
    }
    mount.wait_idle(Duration::from_secs(15));
    if let Ends::Eio = ends {
        let stats = mount.stats();
        assert_eq!(
            stats["blobs"], 0,
            "{what}: a failed body was stored: {stats}"
        );
    }

    let healed = random_bytes(40_000, 901);
    origin.route("/base/f", Route::fresh(healed.clone()));
    mount.control("invalidate", "/o/f\n").unwrap();
    // An origin that failed may be left alone for a moment (backoff); the
    // healed body must come back soon after, not some day.
    let mut last = None;
    let recovered = eventually(Duration::from_secs(15), || {
        let result = std::fs::read(&path);
        let ok = matches!(&result, Ok(data) if *data == healed);
        last = Some(result.map(|data| data.len()));
        ok
    });
    assert!(
        recovered,
        "{what}: after the origin healed the read still ends {last:?}"
    );
}

fn body() -> Vec<u8> {
    random_bytes(64 * 1024, 900)
}

/// A GET answered with `raw` (the HEAD answers from a well-formed route
/// for `head_body`).
fn raw_get(head_body: &[u8], raw: Vec<u8>) -> Route {
    Route::ok(head_body.to_vec()).raw_get(raw)
}

fn response(head: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = head.replace('\n', "\r\n").into_bytes();
    raw.extend_from_slice(body);
    raw
}

#[test]
fn reset_mid_body() {
    let body = body();
    check(
        "reset mid-body",
        Route::fresh(body).reset_after(10_000),
        Ends::Eio,
    );
}

#[test]
fn body_shorter_than_content_length() {
    let body = body();
    check(
        "short body",
        Route::fresh(body).short_body(10_000),
        Ends::Eio,
    );
}

/// HTTP frames the body by Content-Length: what follows is not the body.
#[test]
fn body_longer_than_content_length() {
    let body = body();
    let declared = &body[..1000];
    let raw = response("HTTP/1.1 200 OK\nContent-Length: 1000\n\n", &body);
    check(
        "body longer than Content-Length",
        raw_get(declared, raw),
        Ends::With(declared.to_vec()),
    );
}

/// Content-Length and Transfer-Encoding together are how responses are
/// split and smuggled; RFC 9112 §6.3 says to treat them as an error, and so
/// does fetchfs (like nginx), even when both agree.
#[test]
fn content_length_with_chunked() {
    let body = b"hello, chunked world".to_vec();
    let raw = response(
        "HTTP/1.1 200 OK\nContent-Length: 20\nTransfer-Encoding: chunked\n\n",
        b"14\r\nhello, chunked world\r\n0\r\n\r\n",
    );
    check(
        "Content-Length with chunked",
        raw_get(&body, raw),
        Ends::Eio,
    );
}

#[test]
fn chunk_size_overflow() {
    let body = body();
    let raw = response(
        "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n",
        b"FFFFFFFFFFFFFFFFFFFFFFFF\r\nabc",
    );
    check("chunk-size overflow", raw_get(&body, raw), Ends::Eio);
}

#[test]
fn chunk_size_not_hex() {
    let body = body();
    let raw = response(
        "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n",
        b"zz\r\nabc\r\n0\r\n\r\n",
    );
    check("chunk size not hex", raw_get(&body, raw), Ends::Eio);
}

#[test]
fn chunk_extensions_and_trailers_are_fine() {
    let raw = response(
        "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n",
        b"5;name=value\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n",
    );
    check(
        "chunk extensions and trailers",
        raw_get(b"hello", raw),
        Ends::With(b"hello".to_vec()),
    );
}

#[test]
fn garbage_status_line() {
    check(
        "garbage status line",
        Route::raw(b"HTTP/1.1 2xx what\r\n\r\n".to_vec()),
        Ends::Eio,
    );
}

#[test]
fn not_http_at_all() {
    check(
        "not HTTP",
        Route::raw(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()),
        Ends::Eio,
    );
}

#[test]
fn garbage_status_line_on_the_get_only() {
    let body = body();
    let raw = b"HTTP/1.1 2xx what\r\n\r\n".to_vec();
    check("garbage GET status line", raw_get(&body, raw), Ends::Eio);
}

#[test]
fn hang_after_headers() {
    let body = body();
    check(
        "hang after headers",
        Route::fresh(body).stall_after(0, HUNG),
        Ends::Eio,
    );
}

#[test]
fn hang_before_headers() {
    check(
        "hang before headers",
        Route::fresh(body()).header_delay(HUNG),
        Ends::Eio,
    );
}

#[test]
fn one_byte_a_second() {
    check(
        "1 byte/s trickle",
        Route::fresh(body()).throttle(1),
        Ends::Eio,
    );
}

/// A server that accepts connections and never reads a byte of them.
#[test]
fn accept_and_never_read() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut connections = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => connections.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        connections.len()
    });
    let mount = fault_mount(format!("http://127.0.0.1:{port}/base"));
    let (result, took) = timed(|| std::fs::read(mount.path("o/f")));
    assert_errno(result, libc::EIO, "a server that never reads");
    assert!(
        took < DEADLINE,
        "a server that never reads held the reader {took:?}"
    );
    let (result, took) = timed(|| std::fs::metadata(mount.path("o/g")));
    assert_errno(result, libc::EIO, "stat on a server that never reads");
    assert!(took < DEADLINE, "stat held {took:?}");
    assert_eq!(mount.stat("blobs"), 0);
    drop(mount);
    assert!(held.join().unwrap() >= 1, "fetchfs never connected");
}

/// A server that closes every connection at once, without a byte.
#[test]
fn close_without_a_response() {
    check("close at once", Route::raw(Vec::new()), Ends::Eio);
}

#[test]
fn header_of_100_kb() {
    let body = body();
    let padding = "a".repeat(100 * 1024);
    let route = Route::fresh(body.clone()).header("X-Padding", &padding);
    check("a 100 KB header", route, Ends::With(body));
}

#[test]
fn ten_thousand_cache_control_directives() {
    let body = body();
    let mut directives: Vec<String> = (0..10_000).map(|i| format!("x-{i}={i}")).collect();
    directives.push("max-age=60".to_string());
    let route = Route::ok(body.clone()).header("Cache-Control", &directives.join(", "));
    check("10,000 directives", route, Ends::With(body));
}

#[test]
fn a_thousand_header_lines() {
    let body = body();
    let mut route = Route::ok(body.clone());
    for i in 0..1000 {
        route = route.header(&format!("X-Line-{i}"), "v");
    }
    // More header lines than the HTTP client accepts: EIO, not a hang.
    check("1,000 header lines", route, Ends::Eio);
}

#[test]
fn content_length_that_overflows() {
    let body = body();
    let raw = response(
        "HTTP/1.1 200 OK\nContent-Length: 99999999999999999999999\n\n",
        &body,
    );
    check("Content-Length overflow", Route::raw(raw), Ends::Eio);
}

#[test]
fn negative_content_length() {
    let body = body();
    let raw = response("HTTP/1.1 200 OK\nContent-Length: -1\n\n", &body);
    check("negative Content-Length", Route::raw(raw), Ends::Eio);
}

#[test]
fn two_content_lengths_that_differ() {
    let body = body();
    let raw = response(
        "HTTP/1.1 200 OK\nContent-Length: 10\nContent-Length: 20\n\n",
        &body,
    );
    check("two Content-Lengths", raw_get(&body, raw), Ends::Eio);
}

/// Numbers too big for any clock are a very long time, not a panic.
#[test]
fn caching_numbers_that_overflow() {
    let body = body();
    let route = Route::ok(body.clone())
        .header("Cache-Control", "max-age=99999999999999999999999999")
        .header("Age", "99999999999999999999999")
        .header("Expires", "Fri, 31 Dec 99999 23:59:59 GMT")
        .header("Last-Modified", "Mon, 01 Jan 0000 00:00:00 GMT");
    check("overflowing cache numbers", route, Ends::With(body));
}

#[test]
fn head_and_get_disagree() {
    let body = body();
    check(
        "HEAD shorter than the GET",
        Route::fresh(body.clone()).head_says_length(100),
        Ends::With(body.clone()),
    );
    check(
        "HEAD longer than the GET",
        Route::fresh(body.clone()).head_says_length(body.len() * 3),
        Ends::With(body),
    );
}

/// A body without Content-Length, ended by closing the connection, shorter
/// than a HEAD said a moment before: cut short, not a smaller file.
#[test]
fn close_delimited_body_shorter_than_the_head() {
    let body = body();
    let raw = response("HTTP/1.1 200 OK\nConnection: close\n\n", &body[..1000]);
    check(
        "close-delimited body cut short",
        raw_get(&body, raw),
        Ends::Eio,
    );
}

#[test]
fn close_delimited_body_whole() {
    let body = body();
    let raw = response("HTTP/1.1 200 OK\nConnection: close\n\n", &body);
    check(
        "close-delimited body",
        raw_get(&body, raw),
        Ends::With(body),
    );
}

/// fetchfs asks for no encoding, so a gzip body is the origin's file as it
/// chose to send it: stored as served, like `curl` without `--compressed`.
#[test]
fn gzip_body_is_stored_as_served() {
    let plain = random_bytes(32 * 1024, 902);
    let mut gzip = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = gzip.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        std::io::Write::write_all(&mut stdin, &plain).unwrap();
    });
    let mut gzipped = Vec::new();
    gzip.stdout
        .take()
        .unwrap()
        .read_to_end(&mut gzipped)
        .unwrap();
    writer.join().unwrap();
    assert!(gzip.wait().unwrap().success());
    let route = Route::fresh(gzipped.clone()).header("Content-Encoding", "gzip");
    check("gzip body", route, Ends::With(gzipped));
}

#[test]
fn interim_responses_before_the_real_one() {
    let body = body();
    let raw = response(
        &format!(
            "HTTP/1.1 100 Continue\n\nHTTP/1.1 103 Early Hints\nLink: </x>\n\nHTTP/1.1 200 OK\nContent-Length: {}\n\n",
            body.len()
        ),
        &body,
    );
    check(
        "1xx before 200",
        raw_get(&body, raw),
        Ends::With(body.clone()),
    );
}

//! `--metrics-addr`: `GET /metrics` over HTTP shows what
//! `.fetchfs/metrics` shows, passes `promtool check metrics`, and follows
//! the cache; an address that cannot be bound fails the mount before it is
//! made; clients that hang on the port hold up no read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One HTTP exchange on a fresh connection: status, Content-Type, body.
fn try_http_get(addr: &str, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let bad = |what: &str| std::io::Error::other(format!("{what} in {response:?}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// `GET /metrics`, checked to be a 200 in Prometheus's text format.
fn scrape(addr: &str) -> String {
    let (status, content_type, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, PROMETHEUS_TEXT);
    body
}

/// The value of the sample `name`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// The text with every sample's value taken out: what must not change
/// between two renderings.
fn shape(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| match line.starts_with('#') {
            true => line.to_string(),
            false => line.split(' ').next().unwrap_or_default().to_string(),
        })
        .collect()
}

/// `promtool check metrics < text`: its exit status and everything it said.
fn promtool_check(text: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool (scripts/install-deps.sh test installs it)");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, said)
}

fn metrics_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A mount of an origin `o` serving `/base/f` (`body`), with
/// `--metrics-addr`; the origin, the mount and the metrics address.
fn mount_with_metrics(body: &[u8]) -> (Origin, Mount, String) {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(body.to_vec()));
    let addr = metrics_addr();
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .arg("--metrics-addr")
        .arg(&addr)
        .mount();
    (origin, mount, addr)
}

#[test]
fn metrics_over_http_follow_the_cache_match_the_control_file_and_pass_promtool() {
    let body = random_bytes(100_000, 81);
    let (_origin, mount, addr) = mount_with_metrics(&body);
    let before = scrape(&addr);

    assert_same_bytes(&read(&mount.path("o/f")), &body, "first read");
    mount.wait_idle(Duration::from_secs(10));
    assert_same_bytes(&read(&mount.path("o/f")), &body, "second read");
    let after = scrape(&addr);
    let control = String::from_utf8(read(&mount.path(".fetchfs/metrics"))).unwrap();

    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert!(moved("fetchfs_misses_total") >= 1.0, "{after}");
    assert!(moved("fetchfs_hits_total") >= 1.0, "{after}");
    assert!(moved("fetchfs_origin_bytes_total") >= 100_000.0, "{after}");
    assert!(moved("fetchfs_served_bytes_total") >= 100_000.0, "{after}");
    assert_eq!(sample(&after, "fetchfs_blobs"), 1.0);
    assert_eq!(
        shape(&after),
        shape(&control),
        "HTTP and .fetchfs/metrics differ"
    );
    let (status, said) = promtool_check(&after);
    assert!(
        status.success() && said.is_empty(),
        "promtool check metrics: {status}\n{said}\n{after}"
    );
    for path in ["/", "/metrics/x", "/stats"] {
        assert_eq!(http_get(&addr, path).0, 404, "{path}");
    }
}

#[test]
fn metrics_addr_in_the_config_file_serves_too() {
    let addr = metrics_addr();
    let _mount = Mount::builder()
        .origin(OriginConfig::new("o", "http://127.0.0.1:9/"))
        .config("metrics_addr", &format!("\"{addr}\""))
        .mount();
    let text = scrape(&addr);
    assert_eq!(sample(&text, "fetchfs_entries"), 0.0);
}

#[test]
fn an_address_that_cannot_be_bound_fails_the_mount_before_mounting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let stderr = Mount::builder()
        .origin(OriginConfig::new("o", "http://127.0.0.1:9/"))
        .arg("--metrics-addr")
        .arg(&addr)
        .mount_fails();
    assert!(
        stderr.contains(&addr) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let stderr = Mount::builder()
        .origin(OriginConfig::new("o", "http://127.0.0.1:9/"))
        .arg("--metrics-addr")
        .arg("localhost:9")
        .mount_fails();
    assert!(
        stderr.contains("\"localhost:9\"") && stderr.contains("IP:PORT"),
        "{stderr}"
    );
}

#[test]
fn clients_that_hang_on_the_metrics_port_hold_up_no_read() {
    let body = random_bytes(50_000, 82);
    let (_origin, mount, addr) = mount_with_metrics(&body);
    // More than the exporter serves at once, each half a request head.
    let hanging: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            stream
        })
        .collect();

    let (got, took) = timed(|| read(&mount.path("o/f")));
    assert_same_bytes(&got, &body, "read while clients hang");
    assert!(took < Duration::from_secs(5), "the read took {took:?}");
    let control = String::from_utf8(read(&mount.path(".fetchfs/metrics"))).unwrap();
    assert!(sample(&control, "fetchfs_misses_total") >= 1.0);
    drop(hanging);
    assert!(
        eventually(Duration::from_secs(5), || {
            try_http_get(&addr, "/metrics").is_ok_and(|(status, _, _)| status == 200)
        }),
        "/metrics does not answer once the hanging clients left"
    );
}

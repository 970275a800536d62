//! Proxies: the proxy environment variables and an origin's `proxy` key
//! send requests through a real proxy (tinyproxy), `no_proxy` and
//! `proxy = ""` go round it, and a proxy that is down fails reads at once
//! with a log line that names it.

use std::time::{Duration, Instant};

use crate::common::*;

/// Mounts an origin `o` serving `/base/f`, set up by `configure`, with
/// `env` for the daemon, and reads `o/f`, checking its bytes. How many of
/// the origin's requests for it came through `proxy`, and how many in all.
fn read_a_file(
    proxy: &TinyProxy,
    env: &[(&str, &str)],
    configure: impl FnOnce(OriginConfig) -> OriginConfig,
) -> (usize, usize) {
    let body = random_bytes(300_000, 71);
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(body.clone()));
    let mut builder =
        Mount::builder().origin(configure(OriginConfig::new("o", origin.url("/base"))));
    for (name, value) in env {
        builder = builder.env(name, value);
    }
    let mount = builder.mount();

    assert_same_bytes(&read(&mount.path("o/f")), &body, "o/f");

    through(proxy, &origin, "/base/f")
}

/// How many of the requests for `path` came through `proxy`, and how many
/// in all (at least one).
fn through(proxy: &TinyProxy, origin: &Origin, path: &str) -> (usize, usize) {
    let requests = origin.requests_to(path);
    assert!(
        !requests.is_empty(),
        "no request for {path} reached the origin"
    );
    let forwarded = requests.iter().filter(|r| proxy.forwarded(r)).count();
    (forwarded, requests.len())
}

#[test]
fn http_proxy_in_the_environment_carries_every_request() {
    let proxy = TinyProxy::start();
    let (forwarded, all) = read_a_file(&proxy, &[("HTTP_PROXY", &proxy.url())], |o| o);
    assert_eq!(forwarded, all, "proxy log:\n{}", proxy.log());
}

#[test]
fn no_proxy_naming_the_origin_host_goes_round_the_proxy() {
    let proxy = TinyProxy::start();
    let env = [
        ("http_proxy", proxy.url()),
        ("no_proxy", "example.org, 127.0.0.1".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (forwarded, _) = read_a_file(&proxy, &env, |o| o);
    assert_eq!(
        forwarded,
        0,
        "no_proxy names the host, yet:\n{}",
        proxy.log()
    );
}

#[test]
fn the_proxy_key_carries_the_origins_requests_without_the_environment() {
    let proxy = TinyProxy::start();
    let (forwarded, all) = read_a_file(&proxy, &[], |o| o.proxy(&proxy.url()));
    assert_eq!(forwarded, all, "proxy log:\n{}", proxy.log());
}

#[test]
fn an_empty_proxy_key_goes_round_the_environments_proxy() {
    let proxy = TinyProxy::start();
    let origin = Origin::start();
    let (direct_body, proxied_body) = (random_bytes(50_000, 72), random_bytes(50_000, 73));
    origin.route("/direct/f", Route::fresh(direct_body.clone()));
    origin.route("/proxied/f", Route::fresh(proxied_body.clone()));
    let mount = Mount::builder()
        .origin(OriginConfig::new("direct", origin.url("/direct")).proxy(""))
        .origin(OriginConfig::new("proxied", origin.url("/proxied")))
        .env("HTTP_PROXY", &proxy.url())
        .mount();

    assert_same_bytes(&read(&mount.path("direct/f")), &direct_body, "direct");
    assert_same_bytes(&read(&mount.path("proxied/f")), &proxied_body, "proxied");

    let (forwarded, all) = through(&proxy, &origin, "/direct/f");
    assert!(
        all > 0 && forwarded == 0,
        "proxy = \"\" went through the proxy"
    );
    let (forwarded, all) = through(&proxy, &origin, "/proxied/f");
    assert!(
        all > 0 && forwarded == all,
        "the origin without a proxy key did not follow HTTP_PROXY ({forwarded} of {all})"
    );
}

#[test]
fn a_proxy_that_is_down_fails_reads_at_once_and_says_so() {
    let origin = Origin::start();
    origin.route("/base/f", Route::fresh(b"never read".to_vec()));
    let down = format!("http://127.0.0.1:{}", free_port());
    let mount = Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .env("HTTP_PROXY", &down)
        .mount();

    let started = Instant::now();
    let result = std::fs::read(mount.path("o/f"));
    let waited = started.elapsed();

    assert_errno(result, libc::EIO, "read through a proxy that is down");
    assert!(waited < Duration::from_secs(5), "the read took {waited:?}");
    assert_eq!(origin.total(), 0, "a request went round the proxy");
    let named = format!("through the proxy {down} (set by HTTP_PROXY)");
    assert!(
        eventually(Duration::from_secs(5), || mount.stderr().contains(&named)),
        "no log line names {named}:\n{}",
        mount.stderr()
    );
}

#[test]
fn a_proxy_fetchfs_cannot_use_stops_the_mount_with_its_name() {
    let stderr = Mount::builder()
        .origin(OriginConfig::new("o", "http://127.0.0.1:9/").proxy("http://squid:3128/path"))
        .mount_fails();
    assert!(
        stderr.contains("origin \"o\"") && stderr.contains("proxy = \"http://squid:3128/path\""),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let stderr = Mount::builder()
        .origin(OriginConfig::new("o", "http://127.0.0.1:9/"))
        .env("HTTPS_PROXY", "socks5://127.0.0.1:1080")
        .mount_fails();
    assert!(
        stderr.contains("HTTPS_PROXY=\"socks5://127.0.0.1:1080\"")
            && stderr.contains("not supported"),
        "{stderr}"
    );
}

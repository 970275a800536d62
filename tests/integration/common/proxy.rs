//! A real HTTP proxy for the tests: Debian's tinyproxy, in the foreground on
//! 127.0.0.1, with its own config file and log in a temporary dir, stopped
//! (SIGTERM, then SIGKILL) when dropped, whatever happens to the test.
//!
//! What went through it is read on the origin's side: tinyproxy adds
//! `Via: 1.1 NAME (tinyproxy/…)` to each request it forwards, and each
//! proxy gets a NAME of its own, so a request either carries this proxy's
//! name or did not come through it.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::check::free_port;
use super::origin::Request;

const TINYPROXY_BIN: &str = "tinyproxy";
const START_TIMEOUT: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 5;

pub struct TinyProxy {
    child: Child,
    port: u16,
    via_name: String,
    log_path: PathBuf,
    _dir: TempDir,
}

impl TinyProxy {
    /// Starts tinyproxy on a free port and waits until it accepts
    /// connections. Another test may take the port in between: then it
    /// tries another.
    pub fn start() -> TinyProxy {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match TinyProxy::try_start() {
                Ok(proxy) => return proxy,
                Err(log) => last_log = log,
            }
        }
        panic!(
            "tinyproxy did not start in {START_ATTEMPTS} attempts (install it with \
             scripts/install-deps.sh test); its log:\n{last_log}"
        );
    }

    fn try_start() -> Result<TinyProxy, String> {
        let dir = tempfile::Builder::new()
            .prefix("fetchfs-tinyproxy-")
            .tempdir()
            .expect("tinyproxy dir");
        let port = free_port();
        let via_name = format!("fetchfs-test-proxy-{port}");
        let log_path = dir.path().join("tinyproxy.log");
        let config_path = dir.path().join("tinyproxy.conf");
        let config = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\nAllow 127.0.0.1\n\
             LogFile \"{}\"\nLogLevel Info\nViaProxyName \"{via_name}\"\n",
            log_path.display()
        );
        std::fs::write(&config_path, config).expect("write tinyproxy.conf");
        let child = Command::new(TINYPROXY_BIN)
            .arg("-d")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn {TINYPROXY_BIN}: {e} (install it with scripts/install-deps.sh test)")
            });
        let mut proxy = TinyProxy {
            child,
            port,
            via_name,
            log_path,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(proxy);
            }
            if let Ok(Some(_)) = proxy.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Dropping it stops it, if it still runs.
        Err(proxy.log())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether `request` reached the origin through this proxy.
    pub fn forwarded(&self, request: &Request) -> bool {
        request
            .header("Via")
            .is_some_and(|via| via.contains(&self.via_name))
    }

    /// What tinyproxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for TinyProxy {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions; the child is
        // not reaped yet, so its pid is still its own.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

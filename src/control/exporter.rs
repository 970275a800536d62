//! `--metrics-addr`: `GET /metrics` over HTTP, the text `.fetchfs/metrics`
//! shows, for Prometheus to scrape without reading the mount.
//!
//! The address is bound before the mount is made, so a port in use or an
//! address the machine does not have fails the mount with one line. Then
//! hyper's HTTP/1 server runs on the daemon's tokio runtime, never on a FUSE
//! dispatch thread, and nothing a client does can hold up the mount or the
//! downloads: each scrape is rendered on the blocking pool (the index's
//! totals take a lock a commit holds for a moment), at most
//! [`MAX_CONNECTIONS`] are served at once (more are closed at once), and a
//! client that does not send its request head within
//! [`HEADER_READ_TIMEOUT`] is dropped.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::cache::Cache;
use crate::control::stats::Stats;

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";
/// What Prometheus expects of its text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Connections served at once; a scraper needs one.
const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error(
        "metrics address {addr}: cannot listen there ({error}); choose a free port and an \
         address of this machine"
    )]
    Bind {
        addr: SocketAddr,
        // Not a `source`: the message says it already, once.
        error: std::io::Error,
    },
}

/// Listens on `addr`, to be served once the mount is up.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ExporterError> {
    let bind_error = |error| ExporterError::Bind { addr, error };
    let listener = TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(listener)
}

/// Serves `GET /metrics` on `listener` until the runtime stops. Must run
/// on a tokio runtime. It holds the cache weakly: the cache closes when the
/// mount ends, not when the runtime does, and a scrape after that gets 503.
pub async fn serve(listener: TcpListener, cache: Weak<Cache>) {
    let addr = listener.local_addr().ok();
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!("metrics address {addr:?}: {error}; /metrics is not served");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!("metrics address {addr:?}: accept: {error}");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Over the cap: closed, not queued.
            continue;
        };
        let cache = Weak::clone(&cache);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, Weak::clone(&cache)));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!("metrics address {addr:?}: {error}");
            }
            drop(slot);
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    cache: Weak<Cache>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != METRICS_PATH {
        return Ok(plain(StatusCode::NOT_FOUND, "not found; try /metrics\n"));
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let Some(cache) = cache.upgrade() else {
        return Ok(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the mount is ending\n",
        ));
    };
    let rendered = tokio::task::spawn_blocking(move || Stats::of(&cache).to_prometheus()).await;
    Ok(match rendered {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(CONTENT_TYPE),
            );
            response
        }
        Err(error) => {
            tracing::warn!("rendering /metrics: {error}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "see the log\n")
        }
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).unwrap_err().to_string();
        assert!(
            err.contains(&addr.to_string()) && err.contains("in use"),
            "{err}"
        );
    }
}

//! HTTP to the origins: metadata probes, streaming bodies, listings.
//!
//! Redirects are followed here, not by reqwest, for two reasons: a redirect
//! from `dir` to `dir/` is how a directory is recognised, and an origin's
//! configured headers (credentials) must never be sent to another host.
//!
//! Time is bounded twice over:
//! - Waiting for an answer (connect, and the response headers of every hop)
//!   ends at a deadline the caller gives: one budget for everything one read
//!   needs, not one per request.
//! - Once a body flows, it must keep up a minimum rate ([`pacing`]), or it
//!   fails instead of holding its readers for days.
//!
//! An origin that fails to connect or to answer in time is remembered as
//! down ([`health`]): within its backoff window requests fail at once, and
//! one request at a time finds out whether it is back.
//!
//! Requests go through a proxy as the origin's `proxy` key or the proxy
//! environment variables say ([`proxy`]).

mod health;
pub mod listing;
mod pacing;
mod proxy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::time::Instant;
use url::Url;

use crate::config::{Origin, ProxyEnv};
use crate::telemetry::Counters;
use health::{Health, Verdict};
pub use listing::ListingEntry;
use listing::{ListingError, ListingLimits, ListingParser};
use pacing::Pacing;
pub use proxy::Proxies;

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 10;
/// Entries one listing may have: a guard against an origin whose listing
/// never ends, not a size a real directory reaches. Reading a million
/// entries takes about 170 MiB of memory (the entries and the set of their
/// names), keeping them about 80 MiB.
const MAX_LISTING_ENTRIES: usize = 4_000_000;
/// Body bytes one listing may have, against the same origin: a million
/// entries are about 100 MiB of nginx HTML, 300 MiB of Apache's fancy table.
const MAX_LISTING_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects { url: String },
    #[error("{url}: body cut short after {received} {}{}", of_expected(.expected), because(.cause))]
    CutShort {
        url: String,
        received: u64,
        expected: Option<u64>,
        /// What ended the connection, when it did not close cleanly.
        cause: Option<String>,
    },
    #[error(
        "{url}: the body came at {rate} bytes/s, below the origin's min_rate of {min_rate} bytes/s"
    )]
    TooSlow {
        url: String,
        rate: u64,
        min_rate: u64,
    },
    #[error(
        "{url}: the origin is down (it failed {failures} time(s) in a row); next try in {retry_in:?}"
    )]
    Down {
        url: String,
        failures: u32,
        retry_in: Duration,
    },
    #[error("offline: {url} is not cached")]
    Offline { url: String },
    #[error(
        "{url}: {error}, more than fetchfs reads of one listing; the directory is refused \
         rather than shown in part (listing = \"none\" in the origin's config stops asking for it)"
    )]
    ListingTooLarge { url: String, error: ListingError },
}

/// "of N bytes" for a body cut short, or "bytes" when its size is unknown.
fn of_expected(expected: &Option<u64>) -> String {
    match expected {
        Some(expected) => format!("of {expected} bytes"),
        None => "bytes".to_string(),
    }
}

/// " (CAUSE)", or nothing.
fn because(cause: &Option<String>) -> String {
    cause
        .as_ref()
        .map(|cause| format!(" ({cause})"))
        .unwrap_or_default()
}

/// One redirect on the way to the answer.
#[derive(Debug, Clone)]
pub struct Hop {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// The status and headers of an origin's answer, after redirects.
#[derive(Debug)]
pub struct Head {
    /// The URL that answered, after redirects.
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The request as sent to that URL, without credentials (for cache
    /// policy, which is stored: credentials never reach the disk).
    pub request_headers: HeaderMap,
    /// The redirects followed to get here, in order.
    pub redirects: Vec<Hop>,
}

impl Head {
    /// The body size the origin announced, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn header_str(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// A response whose body is read chunk by chunk.
pub struct BodyStream {
    pub head: Head,
    response: reqwest::Response,
    pacing: Pacing,
    received: u64,
    /// Fewer bytes than this at the end are a cut, not the end.
    at_least: u64,
    counters: Arc<Counters>,
}

impl BodyStream {
    /// The next chunk, `None` at the end. A connection that closes early, a
    /// chunked body without its last chunk, fewer bytes than announced, or a
    /// body slower than the origin's `min_rate` are errors, never a short end.
    /// Cancel-safe: dropping the future loses no byte.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, OriginError> {
        let url = self.head.url.as_str();
        let chunk = loop {
            match tokio::time::timeout_at(self.pacing.next_check(), self.response.chunk()).await {
                Err(_) => self.pacing.check(url)?,
                Ok(Err(e)) => {
                    return Err(OriginError::CutShort {
                        url: url.to_string(),
                        received: self.received,
                        expected: self.head.content_length(),
                        cause: Some(error_chain(&e)),
                    });
                }
                Ok(Ok(chunk)) => break chunk,
            }
        };
        match chunk {
            Some(bytes) => {
                self.received += bytes.len() as u64;
                self.pacing.received(bytes.len() as u64);
                if Instant::now() >= self.pacing.next_check() {
                    self.pacing.check(url)?;
                }
                self.counters.add_bytes_from_origin(bytes.len() as u64);
                Ok(Some(bytes))
            }
            None => {
                let expected = self.head.content_length();
                if expected.is_some_and(|expected| expected != self.received)
                    || self.received < self.at_least
                {
                    return Err(OriginError::CutShort {
                        url: url.to_string(),
                        received: self.received,
                        expected: expected.or(Some(self.at_least)),
                        cause: None,
                    });
                }
                Ok(None)
            }
        }
    }

    /// The body was left unread for a while on purpose (its reader paused
    /// it): the rate it must keep counts from now.
    pub fn restart_pacing(&mut self) {
        self.pacing.restart();
    }

    /// Whether the body ends where the connection closes (HTTP/1 without
    /// Content-Length or chunked framing): there a connection cut short looks
    /// just like the end of the body.
    pub fn is_close_delimited(&self) -> bool {
        self.response.version() < http::Version::HTTP_2
            && !self.head.headers.contains_key(header::CONTENT_LENGTH)
            && !self.head.headers.contains_key(header::TRANSFER_ENCODING)
    }

    /// A body that ends before `length` bytes is cut short: for a
    /// close-delimited body, the length a HEAD announced a moment before is
    /// the only evidence of a cut. (More is a body that changed, and the
    /// body read decides.)
    pub fn expect_at_least(&mut self, length: u64) {
        self.at_least = length;
    }
}

/// Content-Length and Transfer-Encoding together: a sign of response
/// splitting or smuggling, not a body to store.
fn has_conflicting_framing(headers: &HeaderMap) -> bool {
    headers.contains_key(header::CONTENT_LENGTH) && headers.contains_key(header::TRANSFER_ENCODING)
}

/// HTTP clients for the configured origins (and any-host origins, made on first use).
pub struct OriginClient {
    clients: parking_lot::Mutex<HashMap<String, (reqwest::Client, Proxies)>>,
    health: Health,
    offline: bool,
    /// The proxies of origins without a `proxy` key of their own.
    proxy_env: ProxyEnv,
    counters: Arc<Counters>,
}

impl OriginClient {
    pub fn new(offline: bool, proxy_env: ProxyEnv, counters: Arc<Counters>) -> OriginClient {
        OriginClient {
            clients: parking_lot::Mutex::new(HashMap::new()),
            health: Health::default(),
            offline,
            proxy_env,
            counters,
        }
    }

    /// Status and headers of `url`, without its body: a HEAD, or a GET dropped
    /// after the headers when the origin refuses HEAD.
    pub async fn head(
        &self,
        origin: &Origin,
        url: &Url,
        deadline: Instant,
    ) -> Result<Head, OriginError> {
        let head = self
            .send(origin, Method::HEAD, url, HeaderMap::new(), deadline)
            .await?
            .0;
        if matches!(
            head.status,
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
        ) {
            return Ok(self
                .send(origin, Method::GET, url, HeaderMap::new(), deadline)
                .await?
                .0);
        }
        Ok(head)
    }

    /// A GET whose body the caller streams. `extra` carries conditional headers.
    pub async fn get(
        &self,
        origin: &Origin,
        url: &Url,
        extra: HeaderMap,
        deadline: Instant,
    ) -> Result<BodyStream, OriginError> {
        let (head, response) = self.send(origin, Method::GET, url, extra, deadline).await?;
        Ok(BodyStream {
            head,
            response,
            pacing: Pacing::new(origin.min_rate, origin.timeout),
            received: 0,
            at_least: 0,
            counters: Arc::clone(&self.counters),
        })
    }

    /// The entries of the listing served at `dir_url` (ending in '/'), or
    /// `None` when that URL does not serve a listing.
    ///
    /// The body is parsed as it arrives, so a listing of any length costs its
    /// entries, not its body. One past [`MAX_LISTING_ENTRIES`] or
    /// [`MAX_LISTING_BYTES`] is an error, never a listing cut short. A body
    /// whose start shows it is no listing is not read further.
    pub async fn listing(
        &self,
        origin: &Origin,
        dir_url: &Url,
        deadline: Instant,
    ) -> Result<Option<Vec<ListingEntry>>, OriginError> {
        let mut body = self
            .get(origin, dir_url, HeaderMap::new(), deadline)
            .await?;
        if !body.head.status.is_success() {
            return Ok(None);
        }
        let limits = ListingLimits {
            entries: MAX_LISTING_ENTRIES,
            bytes: MAX_LISTING_BYTES,
        };
        let mut parser = ListingParser::new(
            &body.head.url,
            body.head.header_str(header::CONTENT_TYPE),
            limits,
        );
        while let Some(chunk) = body.next_chunk().await? {
            if let Err(error) = parser.feed(&chunk) {
                return Err(OriginError::ListingTooLarge {
                    url: body.head.url.to_string(),
                    error,
                });
            }
            if parser.is_not_listing() {
                return Ok(None);
            }
        }
        Ok(parser.finish())
    }

    /// The headers every request to `url` carries, without credentials: what
    /// a stored response's `Vary` is matched against, and what is stored.
    pub fn cacheable_request_headers(origin: &Origin, url: &Url) -> HeaderMap {
        without_credentials(origin, Self::request_headers(origin, url))
    }

    /// The headers every request to `url` carries: identity encoding, and the
    /// origin's configured headers when `url` is on the origin's own host.
    fn request_headers(origin: &Origin, url: &Url) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let same_host = (url.scheme(), url.host_str(), url.port_or_known_default())
            == (
                origin.url.scheme(),
                origin.url.host_str(),
                origin.url.port_or_known_default(),
            );
        if same_host {
            for (name, value) in &origin.headers {
                if let (Ok(name), Ok(value)) = (
                    header::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.insert(name, value);
                }
            }
        }
        headers
    }

    async fn send(
        &self,
        origin: &Origin,
        method: Method,
        url: &Url,
        extra: HeaderMap,
        deadline: Instant,
    ) -> Result<(Head, reqwest::Response), OriginError> {
        if self.offline {
            return Err(OriginError::Offline {
                url: url.to_string(),
            });
        }
        let admission = self.health.admit(&origin.name, url)?;
        let (client, proxies) = self.client(origin)?;
        let mut current = url.clone();
        let mut redirects = Vec::new();
        for _ in 0..=MAX_REDIRECTS {
            let mut headers = extra.clone();
            headers.extend(Self::request_headers(origin, &current));
            let request = self.send_once_more_if_closed(&client, &method, &current, &headers);
            let response = match tokio::time::timeout_at(deadline, request).await {
                Err(_) => {
                    self.counters.add_origin_error();
                    admission.settle(Verdict::Unreachable);
                    return Err(OriginError::Timeout {
                        url: current.to_string(),
                        timeout: origin.timeout,
                    });
                }
                Ok(Err(e)) => {
                    self.counters.add_origin_error();
                    let verdict = if e.is_connect() {
                        Verdict::Unreachable
                    } else {
                        Verdict::Answered
                    };
                    admission.settle(verdict);
                    let message = match proxies.for_url(&current) {
                        Some(proxy) => format!("through {proxy}: {}", error_chain(&e)),
                        None => error_chain(&e),
                    };
                    return Err(OriginError::Transport {
                        url: current.to_string(),
                        message,
                    });
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            if status.is_server_error() {
                self.counters.add_origin_error();
            }
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let target = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|location| current.join(location).ok())
                    .filter(|target| matches!(target.scheme(), "http" | "https"));
                if let Some(target) = target {
                    if is_downgrade(&current, &target) {
                        self.counters.add_origin_error();
                        admission.settle(Verdict::Answered);
                        return Err(OriginError::Transport {
                            url: current.to_string(),
                            message: format!(
                                "refusing the redirect to {target}: it leaves https for plain http"
                            ),
                        });
                    }
                    redirects.push(Hop {
                        status,
                        headers: response.headers().clone(),
                    });
                    current = target;
                    continue;
                }
            }
            admission.settle(Verdict::Answered);
            if method != Method::HEAD && has_conflicting_framing(response.headers()) {
                self.counters.add_origin_error();
                return Err(OriginError::Transport {
                    url: current.to_string(),
                    message: "the response has both Content-Length and Transfer-Encoding, \
                              which RFC 9112 section 6.3 says to treat as an error"
                        .to_string(),
                });
            }
            let head = Head {
                url: current,
                status,
                headers: response.headers().clone(),
                request_headers: without_credentials(origin, headers),
                redirects,
            };
            return Ok((head, response));
        }
        self.counters.add_origin_error();
        admission.settle(Verdict::Answered);
        Err(OriginError::TooManyRedirects {
            url: url.to_string(),
        })
    }

    /// Sends one request, and sends it again, once, when the connection
    /// closed before any answer came. A server or proxy may close an idle
    /// connection at any time, and a request sent on it just then meets the
    /// close (tinyproxy closes every connection after one answer without
    /// saying so). Every request fetchfs sends is a GET or a HEAD, which RFC
    /// 9112 (section 9.3.1.1) lets a client send again on a new connection.
    async fn send_once_more_if_closed(
        &self,
        client: &reqwest::Client,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
    ) -> reqwest::Result<reqwest::Response> {
        let send = || {
            self.counters.add_origin_request();
            client
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .send()
        };
        match send().await {
            Err(error) if closed_before_answer(&error) => {
                tracing::debug!("{url}: the connection closed before an answer; sending again");
                send().await
            }
            result => result,
        }
    }

    fn client(&self, origin: &Origin) -> Result<(reqwest::Client, Proxies), OriginError> {
        let mut clients = self.clients.lock();
        if let Some(client) = clients.get(&origin.name) {
            return Ok(client.clone());
        }
        let proxies = Proxies::of(origin, &self.proxy_env);
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(origin.connect_timeout)
            .user_agent(concat!("fetchfs/", env!("CARGO_PKG_VERSION")));
        let client = proxies
            .apply(builder)
            .build()
            .map_err(|e| OriginError::Transport {
                url: origin.url.to_string(),
                message: error_chain(&e),
            })?;
        clients.insert(origin.name.clone(), (client.clone(), proxies.clone()));
        Ok((client, proxies))
    }
}

/// A redirect from https to plain http would hand the body to anyone on the
/// path and cache it under the https URL (review finding 27): refused.
fn is_downgrade(from: &Url, to: &Url) -> bool {
    from.scheme() == "https" && to.scheme() == "http"
}

/// `headers` without the origin's configured headers (they carry its
/// credentials) and the standard credential headers.
fn without_credentials(origin: &Origin, mut headers: HeaderMap) -> HeaderMap {
    for name in [
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
    ] {
        headers.remove(name);
    }
    for (name, _) in &origin.headers {
        if let Ok(name) = header::HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(name);
        }
    }
    headers
}

/// Whether the connection closed before the whole response head came.
fn closed_before_answer(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(error) = cause.downcast_ref::<hyper::Error>() {
            return error.is_incomplete_message();
        }
        source = cause.source();
    }
    false
}

/// What went wrong with a request, in one short line without the URL
/// (the error names it once): the step that failed and the root cause,
/// which is often three levels down ("cannot connect: Connection refused").
fn error_chain(error: &reqwest::Error) -> String {
    let step = if error.is_connect() {
        "cannot connect"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "reading the response"
    } else if error.is_builder() {
        "cannot build the request"
    } else {
        "the request failed"
    };
    // reqwest's own text repeats the URL; its causes do not.
    let mut root = std::error::Error::source(error);
    while let Some(cause) = root.and_then(|cause| cause.source()) {
        root = Some(cause);
    }
    match root {
        Some(root) => format!("{step}: {root}"),
        None => step.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_redirect_from_https_to_http_is_a_downgrade() {
        let url = |text: &str| Url::parse(text).unwrap();
        assert!(is_downgrade(&url("https://h/a"), &url("http://h/a")));
        assert!(!is_downgrade(&url("http://h/a"), &url("https://h/a")));
        assert!(!is_downgrade(&url("https://h/a"), &url("https://g/a")));
        assert!(!is_downgrade(&url("http://h/a"), &url("http://g/a")));
    }
}

//! What the cache remembers of a response, and how long it stays fresh.
//!
//! RFC 9111 freshness comes from `http-cache-semantics` (a private cache):
//! max-age, Expires, Age, heuristic freshness from Last-Modified, no-cache.
//! On top of it, an origin's `default_ttl` applies to responses that carry no
//! freshness information at all.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode, header};
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
use serde::{Deserialize, Serialize};
use url::Url;

/// The cache layer's part of an index record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryMeta {
    pub policy: CachePolicy,
    /// Fresh until this instant (seconds since the epoch) by the origin's
    /// `default_ttl`, when the response said nothing about freshness.
    pub default_fresh_until: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When the body was stored (seconds since the epoch).
    pub stored_at: u64,
    /// Marked stale through `.fetchfs/invalidate`, whatever the headers say.
    #[serde(default)]
    pub invalidated: bool,
}

impl EntryMeta {
    /// The metadata of a 200 response to a GET of `url`.
    pub fn from_response(
        url: &Url,
        request: &HeaderMap,
        status: StatusCode,
        response: &HeaderMap,
        default_ttl: Duration,
        now: SystemTime,
    ) -> EntryMeta {
        let policy = CachePolicy::new_options(
            &request_parts(url, request),
            &response_parts(status, response),
            now,
            CacheOptions {
                shared: false,
                ..CacheOptions::default()
            },
        );
        EntryMeta {
            default_fresh_until: default_fresh_until(response, default_ttl, now),
            etag: header_string(response, header::ETAG),
            last_modified: header_string(response, header::LAST_MODIFIED),
            stored_at: unix_secs(now),
            invalidated: false,
            policy,
        }
    }

    /// Whether the response may be written to disk (`no-store` may not).
    pub fn is_storable(&self) -> bool {
        self.policy.is_storable()
    }

    /// How much longer the entry is fresh; zero when it must be revalidated.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        if self.invalidated {
            return Duration::ZERO;
        }
        let by_headers = self.policy.time_to_live(now);
        if !by_headers.is_zero() {
            return by_headers;
        }
        self.default_fresh_until
            .map(|until| Duration::from_secs(until.saturating_sub(unix_secs(now))))
            .unwrap_or_default()
    }

    /// The headers that make a request conditional (If-None-Match, If-Modified-Since).
    pub fn conditional_headers(&self, url: &Url, now: SystemTime) -> HeaderMap {
        match self
            .policy
            .before_request(&request_parts(url, &HeaderMap::new()), now)
        {
            BeforeRequest::Stale { request, .. } => request.headers,
            BeforeRequest::Fresh(_) => HeaderMap::new(),
        }
    }

    /// Folds a revalidation response in: a 304 refreshes the stored headers
    /// and freshness. Returns `None` when the response carries a new body.
    pub fn revalidated(
        &self,
        url: &Url,
        request: &HeaderMap,
        status: StatusCode,
        response: &HeaderMap,
        default_ttl: Duration,
        now: SystemTime,
    ) -> Option<EntryMeta> {
        let mut response = response.clone();
        if status == StatusCode::NOT_MODIFIED
            && !response.contains_key(header::ETAG)
            && !response.contains_key(header::LAST_MODIFIED)
        {
            // A 304 without validators (python's http.server sends none) answers
            // our conditional request for the one response we store: it
            // confirms that response (RFC 9111 §4.3.4 selects the stored one).
            self.copy_validators(&mut response);
        }
        let after = self.policy.after_response(
            &request_parts(url, request),
            &response_parts(status, &response),
            now,
        );
        match after {
            AfterResponse::NotModified(policy, parts) => Some(EntryMeta {
                default_fresh_until: default_fresh_until(&parts.headers, default_ttl, now),
                etag: header_string(&parts.headers, header::ETAG).or_else(|| self.etag.clone()),
                last_modified: header_string(&parts.headers, header::LAST_MODIFIED)
                    .or_else(|| self.last_modified.clone()),
                stored_at: self.stored_at,
                invalidated: false,
                policy,
            }),
            AfterResponse::Modified(..) => None,
        }
    }

    fn copy_validators(&self, headers: &mut HeaderMap) {
        let stored = [
            (header::ETAG, &self.etag),
            (header::LAST_MODIFIED, &self.last_modified),
        ];
        for (name, value) in stored {
            if let Some(value) = value.as_deref().and_then(|v| v.parse().ok()) {
                headers.insert(name, value);
            }
        }
    }

    /// The file's mtime: Last-Modified, else when it was stored.
    pub fn mtime(&self) -> SystemTime {
        self.last_modified
            .as_deref()
            .and_then(|text| httpdate::parse_http_date(text).ok())
            .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(self.stored_at))
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    pub fn from_json(value: &serde_json::Value) -> Option<EntryMeta> {
        serde_json::from_value(value.clone()).ok()
    }
}

/// `default_ttl` applies only where the origin gave no freshness information
/// and did not forbid reuse without revalidation.
fn default_fresh_until(
    response: &HeaderMap,
    default_ttl: Duration,
    now: SystemTime,
) -> Option<u64> {
    if default_ttl.is_zero() {
        return None;
    }
    let cache_control = response
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    let says_something = ["max-age", "no-cache", "no-store", "must-revalidate"]
        .iter()
        .any(|directive| cache_control.contains(directive))
        || response.contains_key(header::EXPIRES)
        || response.contains_key(header::LAST_MODIFIED);
    (!says_something).then(|| unix_secs(now) + default_ttl.as_secs())
}

fn request_parts(url: &Url, headers: &HeaderMap) -> http::request::Parts {
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = http::Method::GET;
    parts.uri = url.as_str().parse().unwrap_or_default();
    parts.headers = headers.clone();
    parts
}

fn response_parts(status: StatusCode, headers: &HeaderMap) -> http::response::Parts {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.headers = headers.clone();
    parts
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn meta(response: &[(&'static str, &str)], default_ttl: Duration) -> EntryMeta {
        let url = Url::parse("http://h/f").unwrap();
        EntryMeta::from_response(
            &url,
            &HeaderMap::new(),
            StatusCode::OK,
            &headers(response),
            default_ttl,
            SystemTime::now(),
        )
    }

    #[test]
    fn max_age_is_fresh_and_default_ttl_does_not_override_it() {
        let entry = meta(
            &[("cache-control", "max-age=100")],
            Duration::from_secs(5000),
        );
        let remaining = entry.remaining(SystemTime::now());
        assert!(remaining > Duration::from_secs(90) && remaining <= Duration::from_secs(100));
    }

    #[test]
    fn no_information_uses_default_ttl() {
        assert_eq!(
            meta(&[], Duration::ZERO).remaining(SystemTime::now()),
            Duration::ZERO
        );
        let entry = meta(&[], Duration::from_secs(3600));
        assert!(entry.remaining(SystemTime::now()) > Duration::from_secs(3590));
        let no_cache = meta(&[("cache-control", "no-cache")], Duration::from_secs(3600));
        assert_eq!(no_cache.remaining(SystemTime::now()), Duration::ZERO);
    }

    #[test]
    fn a_304_without_validators_confirms_the_stored_response() {
        let url = Url::parse("http://h/f").unwrap();
        let entry = meta(
            &[
                ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
                ("cache-control", "max-age=0"),
            ],
            Duration::ZERO,
        );
        let conditional = entry.conditional_headers(&url, SystemTime::now());
        assert!(conditional.contains_key("if-modified-since"));
        let refreshed = entry.revalidated(
            &url,
            &conditional,
            StatusCode::NOT_MODIFIED,
            &headers(&[("cache-control", "max-age=60")]),
            Duration::ZERO,
            SystemTime::now(),
        );
        assert!(refreshed.unwrap().remaining(SystemTime::now()) > Duration::from_secs(50));
    }

    #[test]
    fn survives_json_round_trip() {
        let entry = meta(
            &[("cache-control", "max-age=100"), ("etag", "\"x\"")],
            Duration::ZERO,
        );
        let back = EntryMeta::from_json(&entry.to_json()).unwrap();
        assert_eq!(back.etag.as_deref(), Some("\"x\""));
        assert!(back.remaining(SystemTime::now()) > Duration::from_secs(90));
    }

    #[test]
    fn stale_entry_asks_conditionally_and_304_refreshes() {
        let url = Url::parse("http://h/f").unwrap();
        let entry = meta(
            &[("etag", "\"v1\""), ("cache-control", "max-age=0")],
            Duration::ZERO,
        );
        let conditional = entry.conditional_headers(&url, SystemTime::now());
        assert_eq!(conditional.get("if-none-match").unwrap(), "\"v1\"");
        let refreshed = entry
            .revalidated(
                &url,
                &conditional,
                StatusCode::NOT_MODIFIED,
                &headers(&[("etag", "\"v1\""), ("cache-control", "max-age=60")]),
                Duration::ZERO,
                SystemTime::now(),
            )
            .unwrap();
        assert!(refreshed.remaining(SystemTime::now()) > Duration::from_secs(50));
    }
}

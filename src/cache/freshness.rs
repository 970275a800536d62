//! What the cache remembers of a response, and how long it stays fresh.
//!
//! RFC 9111 freshness comes from `http-cache-semantics` (a private cache):
//! max-age, Expires, Age, heuristic freshness from Last-Modified, no-cache.
//! On top of it, an origin's `default_ttl` applies to responses that carry no
//! freshness information at all.

mod rules;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode, header};
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
use serde::{Deserialize, Serialize};
use url::Url;

use rules::Directives;
pub use rules::{FreshnessBounds, TtlRules, ttl_rules};

/// The cache layer's part of an index record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryMeta {
    pub policy: CachePolicy,
    /// The origin's configured bounds, as instants (seconds since the epoch).
    #[serde(flatten)]
    pub bounds: FreshnessBounds,
    /// `must-revalidate`: never served stale, not even when the origin fails.
    #[serde(default)]
    pub must_revalidate: bool,
    /// RFC 5861 `stale-while-revalidate`: until this instant (seconds since
    /// the epoch) a stale copy is served while a revalidation runs in the background.
    #[serde(default)]
    pub serve_stale_until: Option<u64>,
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
        rules: &TtlRules,
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
        EntryMeta::with_policy(policy, response, rules, now, unix_secs(now))
    }

    /// The metadata of a response whose headers are `headers`, judged by `policy`.
    fn with_policy(
        policy: CachePolicy,
        headers: &HeaderMap,
        rules: &TtlRules,
        now: SystemTime,
        stored_at: u64,
    ) -> EntryMeta {
        let directives = Directives::of(headers);
        EntryMeta {
            bounds: rules.bounds(&directives, headers, now),
            must_revalidate: directives.must_revalidate,
            serve_stale_until: directives.serve_stale_until(&policy, rules, now),
            etag: header_string(headers, header::ETAG),
            last_modified: header_string(headers, header::LAST_MODIFIED),
            stored_at,
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
        let now_s = unix_secs(now);
        let until = |instant: u64| Duration::from_secs(instant.saturating_sub(now_s));
        let mut remaining = self.policy.time_to_live(now);
        if remaining.is_zero() {
            remaining = self.bounds.default_until.map(until).unwrap_or_default();
        }
        if let Some(min_until) = self.bounds.min_until {
            remaining = remaining.max(until(min_until));
        }
        if let Some(max_until) = self.bounds.max_until {
            remaining = remaining.min(until(max_until));
        }
        remaining
    }

    /// Whether a stale copy may be served while the origin cannot be asked.
    pub fn may_serve_stale_on_error(&self) -> bool {
        !self.must_revalidate
    }

    /// Whether the stale entry is still within its `stale-while-revalidate`
    /// window: serve it now and revalidate in the background.
    pub fn may_serve_while_revalidating(&self, now: SystemTime) -> bool {
        !self.invalidated
            && self
                .serve_stale_until
                .is_some_and(|until| unix_secs(now) < until)
    }

    /// The headers that make a request conditional (If-None-Match, If-Modified-Since).
    pub fn conditional_headers(&self, url: &Url, now: SystemTime) -> HeaderMap {
        match self
            .policy
            .before_request(&request_parts(url, &HeaderMap::new()), now)
        {
            BeforeRequest::Stale { request, .. } => request.headers,
            // Fresh by its headers but invalidated: ask with the stored validators.
            BeforeRequest::Fresh(_) => {
                self.stored_validators([header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE])
            }
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
        rules: &TtlRules,
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
            response.extend(self.stored_validators([header::ETAG, header::LAST_MODIFIED]));
        }
        let after = self.policy.after_response(
            &request_parts(url, request),
            &response_parts(status, &response),
            now,
        );
        match after {
            AfterResponse::NotModified(policy, parts) => {
                let mut refreshed =
                    EntryMeta::with_policy(policy, &parts.headers, rules, now, self.stored_at);
                refreshed.etag = refreshed.etag.or_else(|| self.etag.clone());
                refreshed.last_modified = refreshed
                    .last_modified
                    .or_else(|| self.last_modified.clone());
                Some(refreshed)
            }
            AfterResponse::Modified(..) => None,
        }
    }

    /// The stored ETag and Last-Modified, under the two header names given
    /// (themselves, or the conditional headers that carry them).
    fn stored_validators(&self, [etag, last_modified]: [header::HeaderName; 2]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [(etag, &self.etag), (last_modified, &self.last_modified)] {
            if let Some(value) = value.as_deref().and_then(|v| v.parse().ok()) {
                headers.insert(name, value);
            }
        }
        headers
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

pub fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn rules(default_ttl: Duration) -> TtlRules {
        TtlRules {
            default_ttl,
            ..TtlRules::default()
        }
    }

    /// The metadata of a 200 to a GET of `http://h/f` with these headers.
    pub(crate) fn meta(response: &[(&'static str, &str)], default_ttl: Duration) -> EntryMeta {
        let url = Url::parse("http://h/f").unwrap();
        EntryMeta::from_response(
            &url,
            &HeaderMap::new(),
            StatusCode::OK,
            &headers(response),
            &rules(default_ttl),
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
            &TtlRules::default(),
            SystemTime::now(),
        );
        assert!(refreshed.unwrap().remaining(SystemTime::now()) > Duration::from_secs(50));
    }

    #[test]
    fn an_invalidated_fresh_entry_asks_with_its_validators() {
        let url = Url::parse("http://h/f").unwrap();
        let mut entry = meta(
            &[
                ("cache-control", "max-age=3600"),
                ("etag", "\"v1\""),
                ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ],
            Duration::ZERO,
        );
        entry.invalidated = true;
        let conditional = entry.conditional_headers(&url, SystemTime::now());
        assert_eq!(conditional.get("if-none-match").unwrap(), "\"v1\"");
        assert_eq!(
            conditional.get("if-modified-since").unwrap(),
            "Mon, 01 Jan 2024 00:00:00 GMT"
        );
    }

    #[test]
    fn an_invalid_expires_is_already_stale() {
        let entry = meta(&[("expires", "not a date")], Duration::from_secs(3600));
        assert_eq!(entry.remaining(SystemTime::now()), Duration::ZERO);
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
                &TtlRules::default(),
                SystemTime::now(),
            )
            .unwrap();
        assert!(refreshed.remaining(SystemTime::now()) > Duration::from_secs(50));
    }
}

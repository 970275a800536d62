//! What the cache remembers of a response, and how long it stays fresh.
//!
//! RFC 9111 freshness comes from `http-cache-semantics` (a private cache):
//! max-age, Expires, Age, heuristic freshness from Last-Modified, no-cache.
//! Headers are [normalised](normalize) first, so directive names are
//! case-insensitive and huge numbers read as very large. On top of the crate:
//! - an origin's `default_ttl`, `min_ttl` and `max_ttl` ([rules]);
//! - a redirect on the way caps freshness: a 302, 303 or 307 is reused only
//!   as long as its own explicit freshness allows (RFC 9110 §15.1: only some
//!   statuses may be fresh heuristically), a 301 or 308 without freshness
//!   information does not limit it;
//! - RFC 5861: `stale-while-revalidate=N` and `stale-if-error=N` open windows
//!   of exactly N seconds once the entry goes stale;
//! - `no-cache`, `must-revalidate` and `proxy-revalidate` responses are never
//!   served stale when the origin fails.

mod normalize;
mod rules;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode, header};
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::Origin;
use crate::origin::{Head, Hop};
use rules::Directives;
pub use rules::{FreshnessBounds, TtlRules, ttl_rules};

/// The cache layer's part of an index record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryMeta {
    pub policy: CachePolicy,
    /// The origin's configured bounds and a redirect's cap, as instants
    /// (seconds since the epoch).
    #[serde(flatten)]
    pub bounds: FreshnessBounds,
    /// `no-cache`, `must-revalidate` or `proxy-revalidate`: never served
    /// stale, not even when the origin fails.
    #[serde(default, alias = "must_revalidate")]
    pub never_stale: bool,
    /// RFC 5861 `stale-while-revalidate`: until this instant (seconds since
    /// the epoch) a stale copy is served while a revalidation runs in the background.
    #[serde(default)]
    pub serve_stale_until: Option<u64>,
    /// RFC 5861 `stale-if-error`: until this instant a stale copy may stand
    /// in for a failing origin. `None`: at any age (fetchfs's default).
    #[serde(default)]
    pub stale_if_error_until: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When the body was stored (seconds since the epoch).
    pub stored_at: u64,
    /// Marked stale through `.fetchfs/invalidate`, whatever the headers say.
    #[serde(default)]
    pub invalidated: bool,
    /// `Cache-Control: private`: meant for the user the mount serves.
    #[serde(default)]
    pub private: bool,
}

impl EntryMeta {
    /// The metadata of the 200 answer `head` to a GET of `url`.
    pub fn from_response(url: &Url, head: &Head, rules: &TtlRules, now: SystemTime) -> EntryMeta {
        let headers = normalize::response_headers(&head.headers);
        let policy = CachePolicy::new_options(
            &request_parts(url, &head.request_headers),
            &response_parts(head.status, &headers),
            now,
            private_cache(),
        );
        EntryMeta::with_policy(
            policy,
            &headers,
            &head.redirects,
            rules,
            now,
            unix_secs(now),
        )
    }

    /// The metadata of a response whose (normalised) headers are `headers`,
    /// reached through `redirects`, judged by `policy`.
    fn with_policy(
        policy: CachePolicy,
        headers: &HeaderMap,
        redirects: &[Hop],
        rules: &TtlRules,
        now: SystemTime,
        stored_at: u64,
    ) -> EntryMeta {
        let directives = Directives::of(headers);
        let mut bounds = rules.bounds(&directives, headers, now);
        bounds.redirect_until = redirect_fresh_until(redirects, now);
        let mut meta = EntryMeta {
            bounds,
            never_stale: directives.never_stale(),
            serve_stale_until: None,
            stale_if_error_until: None,
            etag: header_string(headers, header::ETAG),
            last_modified: header_string(headers, header::LAST_MODIFIED),
            stored_at,
            invalidated: false,
            private: directives.private,
            policy,
        };
        let fresh_until = unix_secs(now).saturating_add(meta.remaining(now).as_secs());
        meta.serve_stale_until = directives
            .stale_while_revalidate()
            .map(|window| fresh_until.saturating_add(window));
        meta.stale_if_error_until = directives
            .stale_if_error
            .map(|window| fresh_until.saturating_add(window));
        meta
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
        for cap in [self.bounds.max_until, self.bounds.redirect_until]
            .into_iter()
            .flatten()
        {
            remaining = remaining.min(until(cap));
        }
        remaining
    }

    /// Whether a stale copy may stand in for the origin, which just failed.
    pub fn may_serve_stale_on_error(&self, now: SystemTime) -> bool {
        !self.never_stale
            && self
                .stale_if_error_until
                .is_none_or(|until| unix_secs(now) < until)
    }

    /// Whether the stale entry is still within its `stale-while-revalidate`
    /// window: serve it now and revalidate in the background.
    pub fn may_serve_while_revalidating(&self, now: SystemTime) -> bool {
        !self.invalidated
            && self
                .serve_stale_until
                .is_some_and(|until| unix_secs(now) < until)
    }

    /// The headers that make a request conditional (If-None-Match,
    /// If-Modified-Since). `request` is what the request carries anyway: the
    /// stored response's `Vary` is matched against it.
    pub fn conditional_headers(
        &self,
        url: &Url,
        request: &HeaderMap,
        now: SystemTime,
    ) -> HeaderMap {
        match self
            .policy
            .before_request(&request_parts(url, request), now)
        {
            BeforeRequest::Stale { request, .. } => request.headers,
            // Fresh by its headers but invalidated: ask with the stored validators.
            BeforeRequest::Fresh(_) => {
                self.stored_validators([header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE])
            }
        }
    }

    /// Folds a revalidation answer to a GET of `url` in: a 304 refreshes the
    /// stored headers and freshness. Returns `None` when the answer carries a
    /// new body.
    pub fn revalidated(
        &self,
        url: &Url,
        head: &Head,
        rules: &TtlRules,
        now: SystemTime,
    ) -> Option<EntryMeta> {
        let mut response = normalize::response_headers(&head.headers);
        if head.status == StatusCode::NOT_MODIFIED
            && !response.contains_key(header::ETAG)
            && !response.contains_key(header::LAST_MODIFIED)
        {
            // A 304 without validators (python's http.server sends none) answers
            // our conditional request for the one response we store: it
            // confirms that response (RFC 9111 §4.3.4 selects the stored one).
            response.extend(self.stored_validators([header::ETAG, header::LAST_MODIFIED]));
        }
        let after = self.policy.after_response(
            &request_parts(url, &head.request_headers),
            &response_parts(head.status, &response),
            now,
        );
        match after {
            AfterResponse::NotModified(policy, parts) => {
                let headers = normalize::response_headers(&parts.headers);
                let mut refreshed = EntryMeta::with_policy(
                    policy,
                    &headers,
                    &head.redirects,
                    rules,
                    now,
                    self.stored_at,
                );
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

/// How long a 404 or 410 answer `head` to `url` may be believed: its own
/// explicit freshness when it has some, else the origin's `negative_ttl`;
/// zero when it may not be stored or must be validated at each use.
pub fn missing_ttl(url: &Url, head: &Head, origin: &Origin, now: SystemTime) -> Duration {
    let headers = normalize::response_headers(&head.headers);
    let policy = CachePolicy::new_options(
        &request_parts(url, &head.request_headers),
        &response_parts(head.status, &headers),
        now,
        private_cache(),
    );
    let directives = Directives::of(&headers);
    if !policy.is_storable() || directives.never_stale() {
        return Duration::ZERO;
    }
    let ttl = if directives.has_explicit_freshness(&headers) {
        policy.time_to_live(now)
    } else {
        origin.negative_ttl
    };
    ttl.min(origin.max_ttl.unwrap_or(Duration::MAX))
}

/// The latest instant a chain of redirects may be reused until, if any
/// redirect limits it: a 302, 303 or 307 by its explicit freshness (none:
/// now), a 301 or 308 only when it states some.
fn redirect_fresh_until(redirects: &[Hop], now: SystemTime) -> Option<u64> {
    redirects
        .iter()
        .filter_map(|hop| {
            let headers = normalize::response_headers(&hop.headers);
            let explicit = Directives::of(&headers).has_explicit_freshness(&headers);
            let permanent = matches!(
                hop.status,
                StatusCode::MOVED_PERMANENTLY | StatusCode::PERMANENT_REDIRECT
            );
            if !explicit {
                return (!permanent).then_some(unix_secs(now));
            }
            let policy = CachePolicy::new_options(
                &request_parts(
                    &Url::parse("http://redirect.invalid/").ok()?,
                    &HeaderMap::new(),
                ),
                &response_parts(hop.status, &headers),
                now,
                private_cache(),
            );
            Some(unix_secs(now).saturating_add(policy.time_to_live(now).as_secs()))
        })
        .min()
}

fn private_cache() -> CacheOptions {
    CacheOptions {
        shared: false,
        ..CacheOptions::default()
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
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    /// An answer to a request that carried `Accept-Encoding: identity`.
    pub(crate) fn head(status: u16, response: &[(&'static str, &str)]) -> Head {
        Head {
            url: Url::parse("http://h/f").unwrap(),
            status: StatusCode::from_u16(status).unwrap(),
            headers: headers(response),
            request_headers: headers(&[("accept-encoding", "identity")]),
            redirects: Vec::new(),
        }
    }

    pub(crate) fn url() -> Url {
        Url::parse("http://h/f").unwrap()
    }

    pub(crate) fn rules(default_ttl: Duration) -> TtlRules {
        TtlRules {
            default_ttl,
            ..TtlRules::default()
        }
    }

    /// The metadata of a 200 to a GET of `http://h/f` with these headers.
    pub(crate) fn meta(response: &[(&'static str, &str)], default_ttl: Duration) -> EntryMeta {
        EntryMeta::from_response(
            &url(),
            &head(200, response),
            &rules(default_ttl),
            SystemTime::now(),
        )
    }

    fn identity() -> HeaderMap {
        headers(&[("accept-encoding", "identity")])
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
        let entry = meta(
            &[
                ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
                ("cache-control", "max-age=0"),
            ],
            Duration::ZERO,
        );
        let conditional = entry.conditional_headers(&url(), &identity(), SystemTime::now());
        assert!(conditional.contains_key("if-modified-since"));
        let refreshed = entry.revalidated(
            &url(),
            &head(304, &[("cache-control", "max-age=60")]),
            &TtlRules::default(),
            SystemTime::now(),
        );
        assert!(refreshed.unwrap().remaining(SystemTime::now()) > Duration::from_secs(50));
    }

    #[test]
    fn an_invalidated_fresh_entry_asks_with_its_validators() {
        let mut entry = meta(
            &[
                ("cache-control", "max-age=3600"),
                ("etag", "\"v1\""),
                ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ],
            Duration::ZERO,
        );
        entry.invalidated = true;
        let conditional = entry.conditional_headers(&url(), &identity(), SystemTime::now());
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
    fn survives_json_round_trip_and_reads_the_old_field_name() {
        let entry = meta(
            &[("cache-control", "max-age=100"), ("etag", "\"x\"")],
            Duration::ZERO,
        );
        let back = EntryMeta::from_json(&entry.to_json()).unwrap();
        assert_eq!(back.etag.as_deref(), Some("\"x\""));
        assert!(back.remaining(SystemTime::now()) > Duration::from_secs(90));
        let mut old = meta(&[("cache-control", "max-age=0")], Duration::ZERO).to_json();
        let fields = old.as_object_mut().unwrap();
        fields.remove("never_stale");
        fields.insert("must_revalidate".into(), true.into());
        assert!(EntryMeta::from_json(&old).unwrap().never_stale);
    }

    #[test]
    fn stale_entry_asks_conditionally_and_304_refreshes() {
        let entry = meta(
            &[("etag", "\"v1\""), ("cache-control", "max-age=0")],
            Duration::ZERO,
        );
        let conditional = entry.conditional_headers(&url(), &identity(), SystemTime::now());
        assert_eq!(conditional.get("if-none-match").unwrap(), "\"v1\"");
        let refreshed = entry
            .revalidated(
                &url(),
                &head(304, &[("etag", "\"v1\""), ("cache-control", "max-age=60")]),
                &TtlRules::default(),
                SystemTime::now(),
            )
            .unwrap();
        assert!(refreshed.remaining(SystemTime::now()) > Duration::from_secs(50));
    }

    #[test]
    fn a_vary_response_revalidates_with_the_headers_it_varies_on() {
        let entry = meta(
            &[
                ("etag", "\"v1\""),
                ("cache-control", "no-cache"),
                ("vary", "Accept-Encoding"),
            ],
            Duration::ZERO,
        );
        let conditional = entry.conditional_headers(&url(), &identity(), SystemTime::now());
        assert_eq!(conditional.get("if-none-match").unwrap(), "\"v1\"");
        let refreshed = entry.revalidated(
            &url(),
            &head(304, &[("etag", "\"v1\""), ("vary", "Accept-Encoding")]),
            &TtlRules::default(),
            SystemTime::now(),
        );
        assert!(
            refreshed.is_some(),
            "a 304 for the same variant is a new body"
        );
    }

    #[test]
    fn directive_names_are_case_insensitive() {
        let now = SystemTime::now();
        assert!(
            meta(&[("cache-control", "Max-Age=60")], Duration::ZERO).remaining(now)
                > Duration::from_secs(50)
        );
        let no_cache = meta(
            &[
                ("cache-control", "No-CaChE"),
                ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ],
            Duration::ZERO,
        );
        assert_eq!(no_cache.remaining(now), Duration::ZERO);
        assert!(!meta(&[("cache-control", "NO-STORE, max-age=60")], Duration::ZERO).is_storable());
    }

    #[test]
    fn huge_numbers_are_very_large_not_a_panic() {
        let now = SystemTime::now();
        let year = Duration::from_secs(365 * 24 * 3600);
        assert!(
            meta(
                &[("cache-control", "max-age=99999999999999999999")],
                Duration::ZERO
            )
            .remaining(now)
                > year
        );
        let aged = meta(
            &[
                ("cache-control", "max-age=3600"),
                ("age", "18446744073709551615"),
            ],
            Duration::ZERO,
        );
        assert_eq!(
            aged.remaining(now),
            Duration::ZERO,
            "older than its max-age"
        );
        assert!(
            meta(
                &[("expires", "Sat, 01 Jan 99999 00:00:00 GMT")],
                Duration::ZERO
            )
            .remaining(now)
                > year
        );
        let swr = meta(
            &[(
                "cache-control",
                "max-age=0, stale-while-revalidate=18446744073709551615",
            )],
            Duration::ZERO,
        );
        assert!(swr.may_serve_while_revalidating(now + year));
    }

    fn redirected(status: u16, hop: &[(&'static str, &str)]) -> EntryMeta {
        let mut answer = head(200, &[("cache-control", "max-age=3600")]);
        answer.redirects.push(Hop {
            status: StatusCode::from_u16(status).unwrap(),
            headers: headers(hop),
        });
        EntryMeta::from_response(&url(), &answer, &TtlRules::default(), SystemTime::now())
    }

    #[test]
    fn a_temporary_redirect_is_reused_only_with_explicit_freshness() {
        let now = SystemTime::now();
        assert_eq!(redirected(302, &[]).remaining(now), Duration::ZERO);
        assert_eq!(
            redirected(307, &[("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")]).remaining(now),
            Duration::ZERO,
            "no heuristic freshness for a 307"
        );
        let capped = redirected(302, &[("cache-control", "max-age=60")]).remaining(now);
        assert!(capped > Duration::from_secs(50) && capped <= Duration::from_secs(60));
        assert!(
            redirected(301, &[]).remaining(now) > Duration::from_secs(3000),
            "a permanent redirect does not limit"
        );
    }

    #[test]
    fn stale_if_error_is_honoured_for_its_seconds_and_forbidden_by_no_cache() {
        let now = SystemTime::now();
        let window = meta(
            &[("cache-control", "max-age=0, stale-if-error=30")],
            Duration::ZERO,
        );
        assert!(window.may_serve_stale_on_error(now));
        assert!(!window.may_serve_stale_on_error(now + Duration::from_secs(31)));
        let default = meta(&[("cache-control", "max-age=0")], Duration::ZERO);
        assert!(default.may_serve_stale_on_error(now + Duration::from_secs(86_400)));
        for forbidding in [
            "no-cache",
            "max-age=0, must-revalidate",
            "max-age=0, proxy-revalidate",
        ] {
            let entry = meta(
                &[
                    ("cache-control", forbidding),
                    ("cache-control", "stale-if-error=60"),
                ],
                Duration::ZERO,
            );
            assert!(!entry.may_serve_stale_on_error(now), "{forbidding}");
        }
        let pragma = meta(&[("pragma", "no-cache")], Duration::from_secs(3600));
        assert!(!pragma.may_serve_stale_on_error(now));
        assert_eq!(
            pragma.remaining(now),
            Duration::ZERO,
            "default_ttl overrode Pragma: no-cache"
        );
    }

    #[test]
    fn a_404_is_believed_for_its_own_freshness_or_the_negative_ttl() {
        let mut origin = Origin::with_defaults("o".into(), url());
        origin.negative_ttl = Duration::from_secs(5);
        let now = SystemTime::now();
        let ttl = |response: &[(&'static str, &str)]| {
            missing_ttl(&url(), &head(404, response), &origin, now)
        };
        assert_eq!(ttl(&[]), Duration::from_secs(5));
        assert_eq!(
            ttl(&[("cache-control", "max-age=2")]),
            Duration::from_secs(2)
        );
        assert_eq!(ttl(&[("cache-control", "no-store")]), Duration::ZERO);
        assert_eq!(ttl(&[("cache-control", "no-cache")]), Duration::ZERO);
        assert_eq!(ttl(&[("cache-control", "max-age=0")]), Duration::ZERO);
    }
}

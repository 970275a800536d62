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
    ///
    /// A `stored_at` past what a `SystemTime` holds comes only from a damaged
    /// index record; it reads as the epoch rather than a panic.
    pub fn mtime(&self) -> SystemTime {
        self.last_modified
            .as_deref()
            .and_then(|text| httpdate::parse_http_date(text).ok())
            .or_else(|| UNIX_EPOCH.checked_add(Duration::from_secs(self.stored_at)))
            .unwrap_or(UNIX_EPOCH)
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

/// Whether the fleet tier may share a response: what a shared cache may
/// store by RFC 9111 (`share = "auto"`: no `private`, nothing answered to
/// credentials unless `public`, `s-maxage` or `must-revalidate` says so),
/// everything this host may store (`share = "fleet"`), or nothing.
pub fn is_shareable(url: &Url, head: &Head, origin: &Origin) -> bool {
    use crate::config::ShareMode;
    let options = match origin.share {
        ShareMode::Never => return false,
        ShareMode::Fleet => private_cache(),
        ShareMode::Auto => CacheOptions {
            shared: true,
            ..CacheOptions::default()
        },
    };
    let headers = normalize::response_headers(&head.headers);
    let mut request = request_parts(url, &head.request_headers);
    if origin.has_credentials() {
        // The head keeps no credential; the shared-cache rules must still
        // see that the request carried one.
        request.headers.insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_static("(configured)"),
        );
    }
    CachePolicy::new_options(
        &request,
        &response_parts(head.status, &headers),
        SystemTime::now(),
        options,
    )
    .is_storable()
}

fn private_cache() -> CacheOptions {
    CacheOptions {
        shared: false,
        ..CacheOptions::default()
    }
}

/// The request as the policy sees it. A header value that is not text (a
/// configured `User-Agent` with non-ASCII in it) is left out, as in
/// [`normalize::response_headers`]: the stored policy could not keep it, and
/// a `Vary` on it would answer otherwise after a remount.
fn request_parts(url: &Url, headers: &HeaderMap) -> http::request::Parts {
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = http::Method::GET;
    parts.uri = url.as_str().parse().unwrap_or_default();
    parts.headers = headers
        .iter()
        .filter(|(_, value)| value.to_str().is_ok())
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
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

/// Whether a response says `Cache-Control: private`: meant for the user the
/// mount serves, from its first byte on, stored or not.
pub fn is_private_response(headers: &HeaderMap) -> bool {
    Directives::of(&normalize::response_headers(headers)).private
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

#[cfg(test)]
mod properties {
    //! Random responses (status, headers, redirects, the request they
    //! answer), origin TTLs and clocks from 1970 to year 9000: what the cache
    //! makes of them never panics, survives the index's JSON, and keeps within
    //! the configured cap. `PROPTEST_CASES` sets the cases per property
    //! (proptest's default, 256, otherwise).

    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::normalize::properties::{cache_control, header_map, raw_value, response_header_map};
    use super::tests::url;
    use super::*;

    /// 9000-01-01T00:00:00Z.
    const YEAR_9000_SECS: u64 = 221_845_392_000;

    /// Any instant from 1970 to year 9000, often near the present.
    fn instant() -> impl Strategy<Value = SystemTime> {
        let secs = prop_oneof![
            1 => Just(0),
            1 => Just(YEAR_9000_SECS),
            4 => 0..=YEAR_9000_SECS,
            4 => 1_600_000_000..1_900_000_000u64,
        ];
        (secs, 0..1_000_000_000u32)
            .prop_map(|(secs, nanos)| UNIX_EPOCH + Duration::new(secs, nanos))
    }

    /// An instant after `stored`, often within the windows a response opens.
    fn later(stored: SystemTime) -> impl Strategy<Value = SystemTime> {
        prop_oneof![
            instant(),
            (0..1_000_000u64).prop_map(move |secs| stored + Duration::from_secs(secs)),
        ]
    }

    fn ttl() -> impl Strategy<Value = Duration> {
        prop_oneof![Just(0), 1..100_000u64, any::<u64>()].prop_map(Duration::from_secs)
    }

    fn ttl_rules() -> impl Strategy<Value = TtlRules> {
        (ttl(), ttl(), proptest::option::of(ttl())).prop_map(|(default_ttl, min_ttl, max_ttl)| {
            TtlRules {
                default_ttl,
                min_ttl,
                max_ttl,
            }
        })
    }

    fn status(usual: &'static [u16]) -> impl Strategy<Value = StatusCode> {
        prop_oneof![3 => select(usual), 1 => 100..=999u16]
            .prop_map(|code| StatusCode::from_u16(code).expect("100 to 999 is a status"))
    }

    fn redirects() -> impl Strategy<Value = Vec<(StatusCode, HeaderMap)>> {
        vec(
            (status(&[301, 302, 303, 307, 308]), response_header_map()),
            0..3,
        )
    }

    /// What a request carries: the encoding fetchfs asks for, request
    /// Cache-Control, and fields a stored `Vary` may name.
    fn request_header_map() -> impl Strategy<Value = HeaderMap> {
        let field = prop_oneof![
            select(&["identity", "gzip", "", "*"][..])
                .prop_map(|value| ("accept-encoding", value.as_bytes().to_vec())),
            cache_control().prop_map(|value| ("cache-control", value.into_bytes())),
            raw_value().prop_map(|value| ("user-agent", value)),
            raw_value().prop_map(|value| ("if-none-match", value)),
        ];
        vec(field, 0..4).prop_map(header_map)
    }

    /// An origin's answer, as a [`Head`] is made of (which is not `Clone`).
    #[derive(Debug, Clone)]
    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        request_headers: HeaderMap,
        redirects: Vec<(StatusCode, HeaderMap)>,
    }

    impl Answer {
        fn head(&self) -> Head {
            Head {
                url: url(),
                status: self.status,
                headers: self.headers.clone(),
                request_headers: self.request_headers.clone(),
                redirects: self
                    .redirects
                    .iter()
                    .map(|(status, headers)| Hop {
                        status: *status,
                        headers: headers.clone(),
                    })
                    .collect(),
            }
        }
    }

    /// A 200 (or any status) to a GET, stored at some instant, and an
    /// instant after it.
    fn stored_response() -> impl Strategy<Value = (Answer, TtlRules, SystemTime, SystemTime)> {
        (
            status(&[200, 203, 204, 206, 300, 301, 404, 410, 500]),
            response_header_map(),
            request_header_map(),
            redirects(),
            ttl_rules(),
            instant(),
        )
            .prop_flat_map(
                |(status, headers, request_headers, redirects, rules, stored)| {
                    let answer = Answer {
                        status,
                        headers,
                        request_headers,
                        redirects,
                    };
                    (Just(answer), Just(rules), Just(stored), later(stored))
                },
            )
    }

    /// Every question the cache asks of an entry, at `now`.
    fn ask_everything(entry: &EntryMeta, request: &HeaderMap, now: SystemTime) {
        entry.is_storable();
        entry.remaining(now);
        entry.may_serve_stale_on_error(now);
        entry.may_serve_while_revalidating(now);
        entry.conditional_headers(&url(), request, now);
        entry.mtime();
    }

    proptest! {
        #[test]
        fn entry_meta_answers_any_response(
            (answer, rules, stored, now) in stored_response(),
            request in request_header_map(),
            revalidation in (
                status(&[304, 200, 304, 412]),
                response_header_map(),
                request_header_map(),
            ),
        ) {
            let entry = EntryMeta::from_response(&url(), &answer.head(), &rules, stored);
            ask_everything(&entry, &request, stored);
            ask_everything(&entry, &request, now);
            // The cap is an instant: a clock set back before `stored` sees it further off.
            if let Some(max_ttl) = rules.max_ttl {
                prop_assert!(entry.remaining(stored) <= max_ttl);
                prop_assert!(now < stored || entry.remaining(now) <= max_ttl);
            }

            // Values that are not text were dropped before the rules read the
            // response (`normalize`), so the record reads back the same and
            // the entry read back answers every question alike.
            let json = entry.to_json();
            let back = EntryMeta::from_json(&json);
            prop_assert!(back.is_some(), "{} does not read back", json);
            let back = back.expect("checked above");
            prop_assert_eq!(back.to_json(), json);
            ask_everything(&back, &request, now);
            for at in [stored, now] {
                prop_assert_eq!(back.remaining(at), entry.remaining(at));
                prop_assert_eq!(
                    back.may_serve_stale_on_error(at),
                    entry.may_serve_stale_on_error(at)
                );
                prop_assert_eq!(
                    back.may_serve_while_revalidating(at),
                    entry.may_serve_while_revalidating(at)
                );
                prop_assert_eq!(
                    back.conditional_headers(&url(), &request, at),
                    entry.conditional_headers(&url(), &request, at)
                );
            }

            let mut invalidated = entry.clone();
            invalidated.invalidated = true;
            ask_everything(&invalidated, &request, now);
            prop_assert_eq!(invalidated.remaining(now), Duration::ZERO);
            prop_assert!(!invalidated.may_serve_while_revalidating(now));

            let (status, headers, request_headers) = revalidation;
            let answer = Answer { status, headers, request_headers, redirects: Vec::new() };
            if let Some(refreshed) = entry.revalidated(&url(), &answer.head(), &rules, now) {
                ask_everything(&refreshed, &request, now);
                prop_assert_eq!(refreshed.stored_at, entry.stored_at);
            }
        }

        #[test]
        fn missing_ttl_answers_any_response(
            status in status(&[404, 410]),
            headers in response_header_map(),
            request_headers in request_header_map(),
            negative_ttl in ttl(),
            max_ttl in proptest::option::of(ttl()),
            now in instant(),
        ) {
            let mut origin = Origin::with_defaults("o".into(), url());
            origin.negative_ttl = negative_ttl;
            origin.max_ttl = max_ttl;
            let answer = Answer { status, headers, request_headers, redirects: Vec::new() };
            let ttl = missing_ttl(&url(), &answer.head(), &origin, now);
            prop_assert!(ttl <= max_ttl.unwrap_or(Duration::MAX));
        }

        /// An index record whose fields hold anything JSON can: read back or
        /// refused, never a panic, and an entry read back answers.
        #[test]
        fn from_json_answers_any_stored_fields(
            (answer, rules, stored, now) in stored_response(),
            request in request_header_map(),
            changes in vec((select(STORED_FIELDS), json_value()), 0..4),
        ) {
            let entry = EntryMeta::from_response(&url(), &answer.head(), &rules, stored);
            let mut json = entry.to_json();
            let fields = json.as_object_mut().expect("an entry is a JSON object");
            for (field, value) in changes {
                match value {
                    Some(value) => fields.insert(field.to_owned(), value),
                    None => fields.remove(field),
                };
            }
            if let Some(entry) = EntryMeta::from_json(&json) {
                ask_everything(&entry, &request, now);
                entry.to_json();
            }
        }
    }

    /// Found by `from_json_answers_any_stored_fields`: `mtime` added
    /// `stored_at` to the epoch unchecked.
    #[test]
    fn a_damaged_stored_at_reads_as_the_epoch() {
        let mut json = super::tests::meta(&[], Duration::ZERO).to_json();
        json["stored_at"] = u64::MAX.into();
        let entry = EntryMeta::from_json(&json).expect("the record reads back");
        assert_eq!(entry.mtime(), UNIX_EPOCH);
    }

    /// The fields of an index record that fetchfs itself writes (the
    /// policy's are `http-cache-semantics`'s).
    const STORED_FIELDS: &[&str] = &[
        "default_fresh_until",
        "min_until",
        "max_until",
        "redirect_until",
        "never_stale",
        "must_revalidate",
        "serve_stale_until",
        "stale_if_error_until",
        "etag",
        "last_modified",
        "stored_at",
        "invalidated",
    ];

    /// A JSON value for a field, or `None` to remove it.
    fn json_value() -> impl Strategy<Value = Option<serde_json::Value>> {
        use serde_json::Value;
        proptest::option::weighted(
            0.9,
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                select(&[0, 1, u64::MAX, YEAR_9000_SECS, 253_402_300_800][..])
                    .prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                super::normalize::properties::http_date().prop_map(Value::from),
                "[ -~]{0,12}".prop_map(Value::from),
            ],
        )
    }
}

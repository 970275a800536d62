//! The origin's configured TTLs and the Cache-Control directives applied
//! here rather than by `http-cache-semantics`.
//!
//! `default_ttl` gives freshness to a response that carries no freshness
//! information at all; `min_ttl` lengthens and `max_ttl` caps what the headers
//! give, but `min_ttl` never overrides a demand to revalidate (`no-cache`,
//! `no-store`, `must-revalidate`). RFC 5861's `stale-while-revalidate` window
//! opens when the entry goes stale, `max_ttl` included.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, header};
use http_cache_semantics::CachePolicy;
use serde::{Deserialize, Serialize};

use super::unix_secs;
use crate::config::Origin;

/// An origin's freshness settings on top of what its headers say.
#[derive(Debug, Clone, Copy, Default)]
pub struct TtlRules {
    /// Freshness of a response with no freshness information at all.
    pub default_ttl: Duration,
    /// Every response is fresh at least this long, unless it demands revalidation.
    pub min_ttl: Duration,
    /// No response is fresh longer than this.
    pub max_ttl: Option<Duration>,
}

/// [`TtlRules`] turned into instants for one response (seconds since the epoch).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct FreshnessBounds {
    #[serde(rename = "default_fresh_until")]
    pub default_until: Option<u64>,
    #[serde(default)]
    pub min_until: Option<u64>,
    #[serde(default)]
    pub max_until: Option<u64>,
}

impl TtlRules {
    pub(super) fn bounds(
        &self,
        directives: &Directives,
        response: &HeaderMap,
        now: SystemTime,
    ) -> FreshnessBounds {
        let at = |ttl: Duration| unix_secs(now) + ttl.as_secs();
        // `default_ttl` applies only where the origin said nothing about
        // freshness; `min_ttl` never overrides a demand to revalidate.
        let says_nothing = !directives.max_age
            && !directives.demands_revalidation()
            && !response.contains_key(header::EXPIRES)
            && !response.contains_key(header::LAST_MODIFIED);
        FreshnessBounds {
            default_until: (says_nothing && !self.default_ttl.is_zero())
                .then(|| at(self.default_ttl)),
            min_until: (!directives.demands_revalidation() && !self.min_ttl.is_zero())
                .then(|| at(self.min_ttl)),
            max_until: self.max_ttl.map(at),
        }
    }
}

/// The Cache-Control directives applied here rather than by
/// `http-cache-semantics`: the ones it has no notion of (RFC 5861) and the
/// ones that decide whether configured TTLs may apply.
#[derive(Debug, Default)]
pub(super) struct Directives {
    max_age: bool,
    no_cache: bool,
    no_store: bool,
    pub(super) must_revalidate: bool,
    stale_while_revalidate: u64,
}

impl Directives {
    pub(super) fn of(headers: &HeaderMap) -> Directives {
        let mut directives = Directives::default();
        let values = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok());
        for directive in values.flat_map(|v| v.split(',')) {
            let (name, value) = match directive.split_once('=') {
                Some((name, value)) => (name, Some(value.trim().trim_matches('"'))),
                None => (directive, None),
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "max-age" => directives.max_age = true,
                "no-cache" => directives.no_cache = true,
                "no-store" => directives.no_store = true,
                "must-revalidate" => directives.must_revalidate = true,
                "stale-while-revalidate" => {
                    directives.stale_while_revalidate =
                        value.and_then(|v| v.parse().ok()).unwrap_or(0);
                }
                _ => {}
            }
        }
        directives
    }

    /// The end of the `stale-while-revalidate` window: freshness plus its seconds.
    /// The window starts when the entry goes stale (`max_ttl` included) and
    /// never opens for a response that demands validation before each use.
    pub(super) fn serve_stale_until(
        &self,
        policy: &CachePolicy,
        rules: &TtlRules,
        now: SystemTime,
    ) -> Option<u64> {
        if self.stale_while_revalidate == 0 || self.demands_revalidation() {
            return None;
        }
        let fresh_for = policy
            .time_to_live(now)
            .min(rules.max_ttl.unwrap_or(Duration::MAX));
        Some(unix_secs(now) + fresh_for.as_secs() + self.stale_while_revalidate)
    }

    fn demands_revalidation(&self) -> bool {
        self.no_cache || self.no_store || self.must_revalidate
    }
}

/// The origin's configured freshness bounds.
pub fn ttl_rules(origin: &Origin) -> TtlRules {
    TtlRules {
        default_ttl: origin.default_ttl,
        min_ttl: origin.min_ttl,
        max_ttl: origin.max_ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::super::EntryMeta;
    use super::super::tests::{headers, meta};
    use super::*;
    use http::StatusCode;
    use url::Url;

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
    fn min_and_max_ttl_bound_freshness_but_not_a_demand_to_revalidate() {
        let url = Url::parse("http://h/f").unwrap();
        let now = SystemTime::now();
        let bounded = TtlRules {
            min_ttl: Duration::from_secs(600),
            max_ttl: Some(Duration::from_secs(60)),
            ..TtlRules::default()
        };
        let short = EntryMeta::from_response(
            &url,
            &HeaderMap::new(),
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=5")]),
            &TtlRules {
                min_ttl: Duration::from_secs(600),
                ..TtlRules::default()
            },
            now,
        );
        assert!(
            short.remaining(now) > Duration::from_secs(590),
            "min_ttl lengthens"
        );
        let long = EntryMeta::from_response(
            &url,
            &HeaderMap::new(),
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=3600")]),
            &bounded,
            now,
        );
        assert!(
            long.remaining(now) <= Duration::from_secs(60),
            "max_ttl caps"
        );
        let no_cache = EntryMeta::from_response(
            &url,
            &HeaderMap::new(),
            StatusCode::OK,
            &headers(&[("cache-control", "no-cache")]),
            &bounded,
            now,
        );
        assert_eq!(
            no_cache.remaining(now),
            Duration::ZERO,
            "min_ttl overrode no-cache"
        );
    }

    #[test]
    fn must_revalidate_forbids_stale_and_swr_gives_a_window() {
        let strict = meta(
            &[("cache-control", "max-age=0, must-revalidate")],
            Duration::ZERO,
        );
        assert!(!strict.may_serve_stale_on_error());
        assert!(meta(&[("cache-control", "max-age=0")], Duration::ZERO).may_serve_stale_on_error());
        let swr = meta(
            &[("cache-control", "max-age=0, stale-while-revalidate=60")],
            Duration::ZERO,
        );
        assert!(swr.may_serve_while_revalidating(SystemTime::now()));
        let later = SystemTime::now() + Duration::from_secs(120);
        assert!(!swr.may_serve_while_revalidating(later));
        assert!(!strict.may_serve_while_revalidating(SystemTime::now()));
        let no_cache = meta(
            &[("cache-control", "no-cache, stale-while-revalidate=60")],
            Duration::ZERO,
        );
        assert!(
            !no_cache.may_serve_while_revalidating(SystemTime::now()),
            "no-cache must validate each use"
        );
    }

    #[test]
    fn s_maxage_is_for_shared_caches_only() {
        let entry = meta(
            &[("cache-control", "s-maxage=3600, max-age=0")],
            Duration::ZERO,
        );
        assert_eq!(entry.remaining(SystemTime::now()), Duration::ZERO);
    }
}

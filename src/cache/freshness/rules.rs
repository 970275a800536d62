//! The origin's configured TTLs and the Cache-Control directives applied
//! here rather than by `http-cache-semantics`.
//!
//! `default_ttl` gives freshness to a response that carries no freshness
//! information at all; `min_ttl` lengthens and `max_ttl` caps what the headers
//! give, but `min_ttl` never overrides a demand to revalidate (`no-cache`,
//! `no-store`, `must-revalidate`, or `Pragma: no-cache` without
//! Cache-Control). The directives are read from normalised headers
//! (lowercase names, clamped numbers).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, header};
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

/// [`TtlRules`] turned into instants for one response, and the cap a
/// redirect on the way puts on it (seconds since the epoch).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct FreshnessBounds {
    #[serde(rename = "default_fresh_until")]
    pub default_until: Option<u64>,
    #[serde(default)]
    pub min_until: Option<u64>,
    #[serde(default)]
    pub max_until: Option<u64>,
    /// A temporary redirect's own freshness ends here.
    #[serde(default)]
    pub redirect_until: Option<u64>,
}

impl TtlRules {
    pub(super) fn bounds(
        &self,
        directives: &Directives,
        response: &HeaderMap,
        now: SystemTime,
    ) -> FreshnessBounds {
        let at = |ttl: Duration| unix_secs(now).saturating_add(ttl.as_secs());
        // `default_ttl` applies only where the origin said nothing about
        // freshness; `min_ttl` never overrides a demand to revalidate.
        let says_nothing = !directives.has_explicit_freshness(response)
            && !directives.demands_revalidation()
            && !response.contains_key(header::LAST_MODIFIED);
        FreshnessBounds {
            default_until: (says_nothing && !self.default_ttl.is_zero())
                .then(|| at(self.default_ttl)),
            min_until: (!directives.demands_revalidation() && !self.min_ttl.is_zero())
                .then(|| at(self.min_ttl)),
            max_until: self.max_ttl.map(at),
            redirect_until: None,
        }
    }
}

/// The Cache-Control directives applied here rather than by
/// `http-cache-semantics`: the ones it has no notion of (RFC 5861), the ones
/// that decide whether configured TTLs may apply, and the ones that forbid
/// serving stale.
#[derive(Debug, Default)]
pub(super) struct Directives {
    max_age: bool,
    no_cache: bool,
    no_store: bool,
    must_revalidate: bool,
    proxy_revalidate: bool,
    /// `private`: meant for one user.
    pub(super) private: bool,
    stale_while_revalidate: u64,
    /// `stale-if-error=N`, if present.
    pub(super) stale_if_error: Option<u64>,
}

impl Directives {
    /// The directives of normalised response headers.
    pub(super) fn of(headers: &HeaderMap) -> Directives {
        let mut directives = Directives::default();
        let cache_control: Vec<&str> = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let seconds = |value: Option<&str>| value.and_then(|v| v.parse::<u64>().ok());
        for directive in cache_control.iter().flat_map(|v| v.split(',')) {
            let (name, value) = match directive.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            match name {
                "max-age" => directives.max_age = true,
                "no-cache" => directives.no_cache = true,
                "no-store" => directives.no_store = true,
                "must-revalidate" => directives.must_revalidate = true,
                "proxy-revalidate" => directives.proxy_revalidate = true,
                "private" => directives.private = true,
                "stale-while-revalidate" => {
                    directives.stale_while_revalidate = seconds(value).unwrap_or(0);
                }
                "stale-if-error" => directives.stale_if_error = seconds(value),
                _ => {}
            }
        }
        // Pragma speaks only where Cache-Control is silent (RFC 9111 §5.4).
        if cache_control.is_empty() {
            directives.no_cache |= headers
                .get_all(header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.split(',').any(|d| d.trim() == "no-cache"));
        }
        directives
    }

    /// Whether the response states its freshness (max-age or Expires).
    pub(super) fn has_explicit_freshness(&self, headers: &HeaderMap) -> bool {
        self.max_age || headers.contains_key(header::EXPIRES)
    }

    /// The `stale-while-revalidate` window's length, unless the response
    /// demands validation before each use.
    pub(super) fn stale_while_revalidate(&self) -> Option<u64> {
        (self.stale_while_revalidate > 0 && !self.demands_revalidation())
            .then_some(self.stale_while_revalidate)
    }

    /// Whether a stale copy must never stand in for the origin (RFC 9111
    /// §4.2.4, §5.2.2): `no-cache`, `must-revalidate`, `proxy-revalidate`.
    pub(super) fn never_stale(&self) -> bool {
        self.no_cache || self.must_revalidate || self.proxy_revalidate
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
    use super::super::tests::{head, meta, url};
    use super::*;

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
        let now = SystemTime::now();
        let bounded = TtlRules {
            min_ttl: Duration::from_secs(600),
            max_ttl: Some(Duration::from_secs(60)),
            ..TtlRules::default()
        };
        let with = |cache_control: &str, rules: &TtlRules| {
            EntryMeta::from_response(
                &url(),
                &head(200, &[("cache-control", cache_control)]),
                rules,
                now,
            )
        };
        let min_only = TtlRules {
            min_ttl: Duration::from_secs(600),
            ..TtlRules::default()
        };
        assert!(
            with("max-age=5", &min_only).remaining(now) > Duration::from_secs(590),
            "min_ttl lengthens"
        );
        assert!(
            with("max-age=3600", &bounded).remaining(now) <= Duration::from_secs(60),
            "max_ttl caps"
        );
        assert_eq!(
            with("no-cache", &bounded).remaining(now),
            Duration::ZERO,
            "min_ttl overrode no-cache"
        );
    }

    #[test]
    fn must_revalidate_forbids_stale_and_swr_gives_a_window_of_its_seconds() {
        let now = SystemTime::now();
        let strict = meta(
            &[("cache-control", "max-age=0, must-revalidate")],
            Duration::ZERO,
        );
        assert!(!strict.may_serve_stale_on_error(now));
        assert!(
            meta(&[("cache-control", "max-age=0")], Duration::ZERO).may_serve_stale_on_error(now)
        );
        let swr = meta(
            &[("cache-control", "max-age=0, stale-while-revalidate=60")],
            Duration::ZERO,
        );
        assert!(swr.may_serve_while_revalidating(now));
        assert!(swr.may_serve_while_revalidating(now + Duration::from_secs(59)));
        assert!(!swr.may_serve_while_revalidating(now + Duration::from_secs(61)));
        assert!(!strict.may_serve_while_revalidating(now));
        let no_cache = meta(
            &[("cache-control", "no-cache, stale-while-revalidate=60")],
            Duration::ZERO,
        );
        assert!(
            !no_cache.may_serve_while_revalidating(now),
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

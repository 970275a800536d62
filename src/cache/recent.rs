//! What happened to a URL moments ago, remembered briefly and in bounded
//! memory: the origin said 404 (negative caching), or a validation just
//! ended (request collapsing).
//!
//! Negative caching: a 404 or 410 is remembered for the origin's
//! `negative_ttl`, so a build that probes a missing file a thousand times asks
//! once.
//!
//! Request collapsing: requests for one URL that arrive while its validation
//! runs, or within [`COLLAPSE_WINDOW`] after it ended, share its outcome,
//! failures included. A burst of readers of a `no-cache` or expired entry thus
//! causes one conditional request, and a burst during an outage one failure.
//!
//! Wait budgets: one read of a path may need several requests (the lookup's
//! HEAD, the open's GET). They share one budget, the origin's `timeout`:
//! waits that start within [`BUDGET_SPAN`] of the first share what is left.

use std::time::{Duration, Instant};

use super::expiring::ExpiringMap;

/// Requests that asked this soon after a validation ended share its outcome.
pub const COLLAPSE_WINDOW: Duration = Duration::from_millis(200);
/// How many URLs each memory holds at most.
const CAPACITY: usize = 4096;
/// Requests for one URL this soon after the first wait count as one read.
pub const BUDGET_SPAN: Duration = Duration::from_secs(5);
/// How long a validation's outcome is kept for requests that waited on it.
/// Longer than any wait for the URL's lock, so every waiter finds it.
const OUTCOME_KEPT: Duration = Duration::from_secs(120);

/// How a validation ended: the origin answered, or the error it failed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    Failed(String),
}

#[derive(Debug)]
pub struct Recent {
    missing: parking_lot::Mutex<ExpiringMap<()>>,
    validations: parking_lot::Mutex<ExpiringMap<(Instant, Outcome)>>,
    /// How long each URL's current read has waited on the origin.
    waited: parking_lot::Mutex<ExpiringMap<Duration>>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            missing: parking_lot::Mutex::new(ExpiringMap::new(CAPACITY)),
            validations: parking_lot::Mutex::new(ExpiringMap::new(CAPACITY)),
            waited: parking_lot::Mutex::new(ExpiringMap::new(CAPACITY)),
        }
    }
}

impl Recent {
    /// The origin answered 404 or 410 for `url`: believe it for `ttl`.
    pub fn remember_missing(&self, url: &str, ttl: Duration) {
        self.missing.lock().insert(url, (), ttl);
    }

    pub fn is_missing(&self, url: &str) -> bool {
        self.missing.lock().get(url).is_some()
    }

    /// URLs believed missing whose string starts with `prefix`: what an
    /// `invalidate` can clear.
    pub fn missing_below(&self, prefix: &str) -> Vec<String> {
        self.missing.lock().keys_with_prefix(prefix)
    }

    /// A validation of `url` ended now, with `outcome`.
    pub fn record_validation(&self, url: &str, outcome: Outcome) {
        self.validations
            .lock()
            .insert(url, (Instant::now(), outcome), OUTCOME_KEPT);
    }

    /// The outcome of a validation of `url` that ended while a request that
    /// asked at `asked_at` waited, or just before it asked: that request shares it.
    pub fn validation_since(&self, url: &str, asked_at: Instant) -> Option<Outcome> {
        let (_, (ended_at, outcome)) = self.validations.lock().get(url)?;
        (ended_at + COLLAPSE_WINDOW >= asked_at).then_some(outcome)
    }

    /// What is left of the current read's `timeout` for `url`.
    pub fn budget_left(&self, url: &str, timeout: Duration) -> Duration {
        let waited = self.waited.lock().get(url).map(|(_, w)| w);
        timeout.saturating_sub(waited.unwrap_or_default())
    }

    /// The current read of `url` waited `waited` more. A read's budget lives
    /// for [`BUDGET_SPAN`] from its first wait.
    pub fn spend(&self, url: &str, waited: Duration) {
        let mut budgets = self.waited.lock();
        match budgets.get(url) {
            Some((deadline, before)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                budgets.insert(url, before + waited, left);
            }
            None => budgets.insert(url, waited, BUDGET_SPAN),
        }
    }

    /// Forgets everything about `url`: its next request asks the origin.
    pub fn forget(&self, url: &str) {
        self.missing.lock().remove(url);
        self.validations.lock().remove(url);
        self.waited.lock().remove(url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_404_is_remembered_for_its_ttl_only() {
        let recent = Recent::default();
        recent.remember_missing("http://h/a", Duration::from_millis(50));
        recent.remember_missing("http://h/b", Duration::ZERO);
        assert!(recent.is_missing("http://h/a"));
        assert!(
            !recent.is_missing("http://h/b"),
            "a zero ttl remembers nothing"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(!recent.is_missing("http://h/a"));
    }

    #[test]
    fn requests_that_waited_or_came_right_after_share_the_outcome() {
        let recent = Recent::default();
        let waited_since = Instant::now();
        recent.record_validation("http://h/a", Outcome::Failed("refused".into()));
        assert_eq!(
            recent.validation_since("http://h/a", waited_since),
            Some(Outcome::Failed("refused".into()))
        );
        assert_eq!(
            recent.validation_since("http://h/a", Instant::now()),
            Some(Outcome::Failed("refused".into())),
            "a request right after the validation shares it"
        );
        let later = Instant::now() + COLLAPSE_WINDOW + Duration::from_millis(1);
        assert_eq!(recent.validation_since("http://h/a", later), None);
        assert_eq!(
            recent.validation_since("http://h/other", waited_since),
            None
        );
    }

    #[test]
    fn forget_clears_both_memories() {
        let recent = Recent::default();
        recent.remember_missing("http://h/a", Duration::from_secs(60));
        recent.record_validation("http://h/a", Outcome::Answered);
        recent.forget("http://h/a");
        assert!(!recent.is_missing("http://h/a"));
        assert_eq!(recent.validation_since("http://h/a", Instant::now()), None);
    }

    #[test]
    fn the_waits_of_one_read_share_one_budget() {
        let recent = Recent::default();
        let timeout = Duration::from_secs(10);
        assert_eq!(recent.budget_left("http://h/a", timeout), timeout);
        recent.spend("http://h/a", Duration::from_secs(7));
        assert_eq!(
            recent.budget_left("http://h/a", timeout),
            Duration::from_secs(3)
        );
        recent.spend("http://h/a", Duration::from_secs(7));
        assert_eq!(recent.budget_left("http://h/a", timeout), Duration::ZERO);
        assert_eq!(recent.budget_left("http://h/b", timeout), timeout);
        recent.forget("http://h/a");
        assert_eq!(recent.budget_left("http://h/a", timeout), timeout);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_urls() {
        let recent = Recent::default();
        for i in 0..(3 * CAPACITY) {
            let url = format!("http://h/{i}");
            recent.remember_missing(&url, Duration::from_secs(60));
            recent.record_validation(&url, Outcome::Answered);
        }
        assert!(recent.missing.lock().len() <= CAPACITY);
        assert!(recent.validations.lock().len() <= CAPACITY);
    }
}

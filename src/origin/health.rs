//! Which origins are down, remembered with backoff.
//!
//! An origin that cannot be connected to, or does not answer before the
//! deadline, is down for a backoff window: 1 s, doubling with each failure in
//! a row up to 30 s. Within the window every request to it fails at once, so
//! an outage costs one timeout, not one per lookup. When the window has
//! passed, one request (the probe) goes through while the others keep
//! failing fast; any answer from the origin, even an error status, ends the
//! outage.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use super::OriginError;

/// The first backoff window; each failure in a row doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff window.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Health {
    origins: parking_lot::Mutex<HashMap<String, State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Failures in a row.
    failures: u32,
    /// Requests fail at once until then.
    down_until: Option<Instant>,
    /// A request is finding out whether the origin is back.
    probing: bool,
}

/// How a request went, as far as the origin's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The origin answered (any status).
    Answered,
    /// No connection, or no answer before the deadline.
    Unreachable,
}

/// A request let through; tell it how the request went. A request dropped
/// without a verdict (cancelled) leaves the health as it was.
#[must_use]
pub struct Admission<'a> {
    health: &'a Health,
    origin: String,
    probe: bool,
    settled: bool,
}

impl Health {
    /// Lets a request to `origin` through, or fails it at once while the
    /// origin is down.
    pub fn admit(&self, origin: &str, url: &Url) -> Result<Admission<'_>, OriginError> {
        self.admit_at(origin, url, Instant::now())
    }

    fn admit_at(
        &self,
        origin: &str,
        url: &Url,
        now: Instant,
    ) -> Result<Admission<'_>, OriginError> {
        let mut origins = self.origins.lock();
        let state = origins.entry(origin.to_string()).or_default();
        let probe = match state.down_until {
            None => false,
            Some(until) if now < until || state.probing => {
                return Err(OriginError::Down {
                    url: url.to_string(),
                    failures: state.failures,
                    retry_in: until.saturating_duration_since(now),
                });
            }
            Some(_) => {
                state.probing = true;
                true
            }
        };
        Ok(Admission {
            health: self,
            origin: origin.to_string(),
            probe,
            settled: false,
        })
    }

    fn settle_at(&self, origin: &str, probe: bool, verdict: Verdict, now: Instant) {
        let mut origins = self.origins.lock();
        let state = origins.entry(origin.to_string()).or_default();
        if probe {
            state.probing = false;
        }
        match verdict {
            Verdict::Answered => *state = State::default(),
            Verdict::Unreachable => {
                state.failures = state.failures.saturating_add(1);
                let doublings = state.failures.saturating_sub(1).min(16);
                let backoff = (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF);
                state.down_until = Some(now + backoff);
                if state.failures == 1 || probe {
                    tracing::warn!(
                        "origin {origin} is down; requests fail at once for {backoff:?}"
                    );
                }
            }
        }
    }
}

impl Admission<'_> {
    pub fn settle(mut self, verdict: Verdict) {
        self.settled = true;
        self.health
            .settle_at(&self.origin, self.probe, verdict, Instant::now());
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            // A cancelled probe found nothing out: let the next request probe.
            self.health
                .origins
                .lock()
                .entry(self.origin.clone())
                .or_default()
                .probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://downloads.example.org/f").unwrap()
    }

    fn down_for(health: &Health, now: Instant) -> Option<Duration> {
        match health.admit_at("o", &url(), now) {
            Err(OriginError::Down { retry_in, .. }) => Some(retry_in),
            Err(other) => panic!("{other}"),
            Ok(admission) => {
                drop(admission);
                None
            }
        }
    }

    #[test]
    fn a_failure_opens_a_window_that_doubles_up_to_thirty_seconds() {
        let health = Health::default();
        let mut now = Instant::now();
        let mut windows = Vec::new();
        for _ in 0..8 {
            let admission = health.admit_at("o", &url(), now).unwrap();
            let probe = admission.probe;
            std::mem::forget(admission);
            health.settle_at("o", probe, Verdict::Unreachable, now);
            let window = down_for(&health, now).expect("down after a failure");
            windows.push(window.as_secs());
            now += window;
        }
        assert_eq!(windows, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn one_probe_at_a_time_and_an_answer_ends_the_outage() {
        let health = Health::default();
        let now = Instant::now();
        health.settle_at("o", false, Verdict::Unreachable, now);
        let later = now + Duration::from_secs(2);
        let probe = health.admit_at("o", &url(), later).unwrap();
        assert!(probe.probe);
        assert!(
            matches!(
                health.admit_at("o", &url(), later),
                Err(OriginError::Down { .. })
            ),
            "a second request went through while the probe runs"
        );
        assert!(
            health.admit_at("other", &url(), later).is_ok(),
            "other origins are not down"
        );
        probe.settle(Verdict::Answered);
        assert_eq!(down_for(&health, later), None);
    }

    #[test]
    fn a_cancelled_probe_lets_the_next_request_probe() {
        let health = Health::default();
        let now = Instant::now();
        health.settle_at("o", false, Verdict::Unreachable, now);
        let later = now + Duration::from_secs(2);
        drop(health.admit_at("o", &url(), later).unwrap());
        let next = health.admit_at("o", &url(), later).unwrap();
        assert!(next.probe);
    }
}

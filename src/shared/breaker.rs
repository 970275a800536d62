//! The circuit breaker in front of the fleet tier: after failures it stops
//! asking Redis for a while, so that a read costs what it costs on a
//! local-only mount, and it tries again with backoff (1 s doubling to 30 s,
//! ±20% jitter). One call is let through to probe; its outcome closes or
//! reopens the breaker.

use std::time::Duration;

use tokio::time::Instant;

/// Consecutive failures that open the breaker (a connect failure opens it at once).
const FAILURES_TO_OPEN: u32 = 3;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    /// Calls fail at once until `retry_at`.
    Open,
    /// One call is out to probe.
    Probing,
}

#[derive(Debug)]
pub struct Breaker {
    state: State,
    failures: u32,
    retry_at: Instant,
    backoff: Duration,
}

/// What a failure did to the breaker.
#[derive(Debug, PartialEq, Eq)]
pub enum Tripped {
    /// Still closed (or still open).
    No,
    /// It just opened: say so once.
    Opened,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: State::Closed,
            failures: 0,
            retry_at: Instant::now(),
            backoff: FIRST_RETRY,
        }
    }
}

impl Breaker {
    #[cfg(test)]
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a call may go to Redis now. An open breaker past its retry
    /// time lets exactly one call through, as the probe.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Probing => false,
            State::Open if now >= self.retry_at => {
                self.state = State::Probing;
                true
            }
            State::Open => false,
        }
    }

    /// A call answered: the breaker closes. True when it was not closed.
    pub fn succeeded(&mut self) -> bool {
        let reopened = self.state != State::Closed;
        *self = Breaker {
            retry_at: self.retry_at,
            ..Breaker::default()
        };
        reopened
    }

    /// A call failed (an error or its deadline). `fatal` (no connection at
    /// all) opens the breaker at once.
    pub fn failed(&mut self, now: Instant, fatal: bool) -> Tripped {
        self.failures += 1;
        let open = match self.state {
            State::Probing => true,
            State::Closed => fatal || self.failures >= FAILURES_TO_OPEN,
            State::Open => return Tripped::No,
        };
        if !open {
            return Tripped::No;
        }
        let was_closed = self.state == State::Closed;
        self.state = State::Open;
        self.retry_at = now + jittered(self.backoff);
        self.backoff = (self.backoff * 2).min(LONGEST_RETRY);
        if was_closed {
            Tripped::Opened
        } else {
            Tripped::No
        }
    }
}

/// `delay` ± 20%, so that hosts do not probe in step.
fn jittered(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let factor = 0.8 + 0.4 * (f64::from(nanos % 1000) / 1000.0);
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_open_it_and_a_probe_closes_it() {
        let start = Instant::now();
        let mut breaker = Breaker::default();
        assert!(breaker.allow(start));
        assert_eq!(breaker.failed(start, false), Tripped::No);
        assert_eq!(breaker.failed(start, false), Tripped::No);
        assert_eq!(breaker.failed(start, false), Tripped::Opened);
        assert!(!breaker.allow(start), "open: calls fail at once");
        let later = start + Duration::from_millis(1300);
        assert!(breaker.allow(later), "past the retry time: one probe");
        assert!(!breaker.allow(later), "only one probe at a time");
        assert!(breaker.succeeded());
        assert_eq!(breaker.state(), State::Closed);
        assert!(breaker.allow(later));
    }

    #[test]
    fn a_failed_probe_reopens_with_a_longer_wait_up_to_thirty_seconds() {
        let mut now = Instant::now();
        let mut breaker = Breaker::default();
        assert_eq!(
            breaker.failed(now, true),
            Tripped::Opened,
            "no connection: at once"
        );
        let mut waits = Vec::new();
        for _ in 0..8 {
            let opened_at = now;
            while !breaker.allow(now) {
                now += Duration::from_millis(100);
            }
            waits.push(now - opened_at);
            assert_eq!(breaker.failed(now, false), Tripped::No);
        }
        assert!(waits[0] >= Duration::from_millis(800), "{waits:?}");
        assert!(waits[1] >= Duration::from_millis(1600), "{waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_millis(36_100)),
            "{waits:?}"
        );
        assert!(waits[7] >= Duration::from_secs(24), "{waits:?}");
    }
}

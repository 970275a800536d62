//! How fast a body must come once it flows.
//!
//! With a `min_rate`, the body is measured over windows of [`RATE_WINDOW`]:
//! a window that ends with fewer than `min_rate × 10 s` bytes fails the body,
//! so a trickle or a stall ends within one or two windows instead of holding
//! its readers for as long as the trickle lasts. Without one (`min_rate = 0`),
//! the only bound is the origin's `timeout` between two chunks.

use std::time::Duration;

use tokio::time::Instant;

use super::OriginError;

/// The window a body's rate is measured over.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Pacing {
    /// Bytes per second; 0 measures nothing.
    min_rate: u64,
    /// With no `min_rate`: the longest wait for one chunk.
    idle_timeout: Duration,
    window_start: Instant,
    window_bytes: u64,
}

impl Pacing {
    pub fn new(min_rate: u64, idle_timeout: Duration) -> Pacing {
        Pacing {
            min_rate,
            idle_timeout,
            window_start: Instant::now(),
            window_bytes: 0,
        }
    }

    /// When the wait for the next chunk must be looked at.
    pub fn next_check(&self) -> Instant {
        if self.min_rate == 0 {
            return Instant::now() + self.idle_timeout;
        }
        self.window_start + RATE_WINDOW
    }

    /// The body was not read for a while, on purpose: the rate counts anew.
    pub fn restart(&mut self) {
        self.window_start = Instant::now();
        self.window_bytes = 0;
    }

    /// Bytes arrived.
    pub fn received(&mut self, bytes: u64) {
        self.window_bytes = self.window_bytes.saturating_add(bytes);
    }

    /// The wait reached [`Pacing::next_check`]: the body failed, or a new
    /// window starts.
    pub fn check(&mut self, url: &str) -> Result<(), OriginError> {
        self.check_at(url, Instant::now())
    }

    fn check_at(&mut self, url: &str, now: Instant) -> Result<(), OriginError> {
        if self.min_rate == 0 {
            return Err(OriginError::Timeout {
                url: url.to_string(),
                timeout: self.idle_timeout,
            });
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < RATE_WINDOW {
            return Ok(());
        }
        let expected = self.min_rate.saturating_mul(elapsed.as_secs().max(1));
        if self.window_bytes < expected {
            return Err(OriginError::TooSlow {
                url: url.to_string(),
                rate: self.window_bytes / elapsed.as_secs().max(1),
                min_rate: self.min_rate,
            });
        }
        self.window_start = now;
        self.window_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_below_the_rate_fails_when_its_window_ends() {
        let start = Instant::now();
        let mut pacing = Pacing::new(1000, Duration::from_secs(10));
        pacing.window_start = start;
        pacing.received(9_999);
        assert!(pacing.check_at("u", start + Duration::from_secs(5)).is_ok());
        let error = pacing.check_at("u", start + RATE_WINDOW).unwrap_err();
        assert!(
            matches!(error, OriginError::TooSlow { rate: 999, .. }),
            "{error}"
        );
    }

    #[test]
    fn a_body_at_the_rate_opens_a_new_window() {
        let start = Instant::now();
        let mut pacing = Pacing::new(1000, Duration::from_secs(10));
        pacing.window_start = start;
        pacing.received(10_000);
        let end = start + RATE_WINDOW;
        pacing.check_at("u", end).unwrap();
        assert_eq!(pacing.next_check(), end + RATE_WINDOW);
        assert!(
            pacing.check_at("u", end + RATE_WINDOW).is_err(),
            "a stall fails the next window"
        );
    }

    #[test]
    fn without_a_rate_only_an_idle_wait_fails() {
        let mut pacing = Pacing::new(0, Duration::from_secs(3));
        assert!(pacing.next_check() <= Instant::now() + Duration::from_secs(3));
        assert!(matches!(
            pacing.check("u"),
            Err(OriginError::Timeout { .. })
        ));
    }
}

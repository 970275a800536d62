//! A set of byte ranges: which parts of a body fetched in pieces are on
//! disk, and which are on their way.

use std::collections::BTreeMap;

/// Disjoint half-open ranges `[start, end)`, kept merged: two ranges that
/// touch or overlap become one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Spans {
    end_by_start: BTreeMap<u64, u64>,
}

impl Spans {
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        if let Some((&before, &before_end)) = self.end_by_start.range(..=start).next_back()
            && before_end >= start
        {
            start = before;
            end = end.max(before_end);
        }
        let swallowed: Vec<u64> = self
            .end_by_start
            .range(start..=end)
            .map(|(&s, _)| s)
            .collect();
        for s in swallowed {
            if let Some(e) = self.end_by_start.remove(&s) {
                end = end.max(e);
            }
        }
        self.end_by_start.insert(start, end);
    }

    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let touched: Vec<(u64, u64)> = self
            .end_by_start
            .range(..end)
            .rev()
            .take_while(|&(_, &e)| e > start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touched {
            self.end_by_start.remove(&s);
            if s < start {
                self.end_by_start.insert(s, start);
            }
            if e > end {
                self.end_by_start.insert(end, e);
            }
        }
    }

    /// The range that holds `at`, or ends exactly there.
    fn around(&self, at: u64) -> Option<(u64, u64)> {
        self.end_by_start
            .range(..=at)
            .next_back()
            .filter(|&(_, &end)| end >= at)
            .map(|(&start, &end)| (start, end))
    }

    /// Whether every byte of `[start, end)` is in the set.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        start >= end || self.around(start).is_some_and(|(_, e)| e >= end)
    }

    /// Where the range holding `at` (or ending there) ends: `at` if none does.
    pub fn reach(&self, at: u64) -> u64 {
        self.around(at).map_or(at, |(_, end)| end)
    }

    /// How many bytes of the set run without a gap up to `at`.
    pub fn run_before(&self, at: u64) -> u64 {
        self.around(at).map_or(0, |(start, _)| at - start)
    }

    /// The start of the first range that begins after `at`.
    pub fn next_start_after(&self, at: u64) -> Option<u64> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.end_by_start
            .range((Excluded(at), Unbounded))
            .next()
            .map(|(&start, _)| start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(ranges: &[(u64, u64)]) -> Spans {
        let mut spans = Spans::default();
        for &(s, e) in ranges {
            spans.insert(s, e);
        }
        spans
    }

    fn ranges(spans: &Spans) -> Vec<(u64, u64)> {
        spans.end_by_start.iter().map(|(&s, &e)| (s, e)).collect()
    }

    #[test]
    fn ranges_that_touch_or_overlap_merge() {
        assert_eq!(ranges(&spans(&[(0, 10), (10, 20)])), [(0, 20)]);
        assert_eq!(ranges(&spans(&[(5, 10), (0, 6)])), [(0, 10)]);
        assert_eq!(
            ranges(&spans(&[(0, 2), (4, 6), (8, 10), (1, 9)])),
            [(0, 10)]
        );
        assert_eq!(ranges(&spans(&[(0, 2), (4, 6)])), [(0, 2), (4, 6)]);
        assert_eq!(ranges(&spans(&[(3, 3)])), []);
        assert_eq!(ranges(&spans(&[(0, 10), (2, 3)])), [(0, 10)]);
    }

    #[test]
    fn removal_splits_and_trims() {
        let mut s = spans(&[(0, 10), (20, 30)]);
        s.remove(5, 25);
        assert_eq!(ranges(&s), [(0, 5), (25, 30)]);
        s.remove(1, 2);
        assert_eq!(ranges(&s), [(0, 1), (2, 5), (25, 30)]);
        s.remove(0, 100);
        assert!(ranges(&s).is_empty());
        let mut s = spans(&[(0, 10)]);
        s.remove(10, 20);
        assert_eq!(ranges(&s), [(0, 10)]);
    }

    #[test]
    fn coverage_reach_and_runs() {
        let s = spans(&[(0, 10), (20, 30)]);
        assert!(s.covers(0, 10) && s.covers(22, 30) && s.covers(7, 7));
        assert!(!s.covers(5, 11) && !s.covers(10, 11) && !s.covers(15, 25));
        assert_eq!(s.reach(0), 10);
        assert_eq!(s.reach(10), 10);
        assert_eq!(s.reach(12), 12);
        assert_eq!(s.reach(25), 30);
        assert_eq!(s.run_before(10), 10);
        assert_eq!(s.run_before(25), 5);
        assert_eq!(s.run_before(15), 0);
        assert_eq!(s.next_start_after(10), Some(20));
        assert_eq!(s.next_start_after(20), None);
    }
}

//! A small map whose entries expire, bounded in size: the cache's short-lived
//! memories (a HEAD's answer, a listing, a 404, a validation's outcome) are
//! all of this shape.
//!
//! An entry is gone once its deadline passes: `get` never returns it, and
//! the next insert into a full map drops it. A map full of live entries drops
//! the one that would expire first, so a burst of new URLs cannot grow the
//! memory without bound; forgetting early only costs another origin request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct ExpiringMap<V> {
    entries: HashMap<String, (Instant, V)>,
    capacity: usize,
}

impl<V: Clone> ExpiringMap<V> {
    /// A map that holds at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> ExpiringMap<V> {
        ExpiringMap {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers `value` under `key` for `ttl` from now; a zero `ttl` forgets it.
    pub fn insert(&mut self, key: &str, value: V, ttl: Duration) {
        self.insert_at(key, value, ttl, Instant::now());
    }

    fn insert_at(&mut self, key: &str, value: V, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            self.entries.remove(key);
            return;
        }
        if !self.entries.contains_key(key) && self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        let deadline = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(86_400));
        self.entries.insert(key.to_string(), (deadline, value));
    }

    /// The live value under `key`, with its deadline.
    pub fn get(&mut self, key: &str) -> Option<(Instant, V)> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&mut self, key: &str, now: Instant) -> Option<(Instant, V)> {
        match self.entries.get(key) {
            Some((deadline, value)) if *deadline > now => Some((*deadline, value.clone())),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// The live keys that start with `prefix` (a scan: the map is small).
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let now = Instant::now();
        self.entries
            .iter()
            .filter(|(key, (deadline, _))| *deadline > now && key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect()
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops expired entries; if none had expired, the one expiring first.
    fn make_room(&mut self, now: Instant) {
        self.entries.retain(|_, (deadline, _)| *deadline > now);
        if self.entries.len() < self.capacity {
            return;
        }
        let soonest = self
            .entries
            .iter()
            .min_by_key(|(_, (deadline, _))| *deadline)
            .map(|(key, _)| key.clone());
        if let Some(key) = soonest {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn an_entry_lives_until_its_deadline() {
        let mut map = ExpiringMap::new(8);
        let now = Instant::now();
        map.insert_at("a", 1, SECOND, now);
        assert_eq!(map.get_at("a", now).map(|(_, v)| v), Some(1));
        assert_eq!(map.get_at("a", now + SECOND / 2).map(|(_, v)| v), Some(1));
        assert_eq!(map.get_at("a", now + SECOND), None);
        assert_eq!(map.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn a_zero_ttl_forgets_and_a_new_value_replaces() {
        let mut map = ExpiringMap::new(8);
        map.insert("a", 1, SECOND);
        map.insert("a", 2, SECOND);
        assert_eq!(map.get("a").map(|(_, v)| v), Some(2));
        map.insert("a", 3, Duration::ZERO);
        assert!(map.get("a").is_none());
    }

    #[test]
    fn a_full_map_drops_expired_entries_first() {
        let mut map = ExpiringMap::new(3);
        let now = Instant::now();
        map.insert_at("short", 0, SECOND, now);
        map.insert_at("long1", 1, 10 * SECOND, now);
        map.insert_at("long2", 2, 10 * SECOND, now);
        map.insert_at("new", 3, 10 * SECOND, now + 2 * SECOND);
        assert_eq!(map.len(), 3);
        let later = now + 2 * SECOND;
        for key in ["long1", "long2", "new"] {
            assert!(map.get_at(key, later).is_some(), "{key} was dropped");
        }
    }

    #[test]
    fn a_map_full_of_live_entries_drops_the_one_expiring_first() {
        let mut map = ExpiringMap::new(2);
        let now = Instant::now();
        map.insert_at("soon", 0, 5 * SECOND, now);
        map.insert_at("late", 1, 50 * SECOND, now);
        map.insert_at("new", 2, 20 * SECOND, now);
        assert!(map.get_at("soon", now).is_none());
        assert!(map.get_at("late", now).is_some());
        assert!(map.get_at("new", now).is_some());
    }

    #[test]
    fn keys_with_a_prefix_are_the_live_ones_below_it() {
        let mut map = ExpiringMap::new(8);
        let now = Instant::now();
        map.insert_at("http://h/a/1", (), SECOND, now);
        map.insert_at("http://h/a/2", (), Duration::from_nanos(1), now);
        map.insert_at("http://h/b/1", (), SECOND, now);
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(map.keys_with_prefix("http://h/a/"), ["http://h/a/1"]);
    }

    #[test]
    fn never_grows_past_its_capacity() {
        let mut map = ExpiringMap::new(100);
        for i in 0..10_000 {
            map.insert(&format!("http://h/{i}"), i, 60 * SECOND);
            assert!(map.len() <= 100);
        }
        assert!(map.get("http://h/9999").is_some(), "the newest entry stays");
    }
}

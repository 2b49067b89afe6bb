//! What the eviction thread removes: first items idle past `--vfs-cache-max-age`, then the
//! least recently used until the cache is within `--vfs-cache-max-size` and the disk has
//! `--vfs-cache-min-free-space`. An item that is dirty or being uploaded is never removed,
//! whatever the limits say: the cache then stays over them, and new writes are refused.

use std::time::{Duration, Instant};

/// A cache item as eviction sees it.
#[derive(Debug, Clone)]
pub struct Item<K> {
    pub key: K,
    /// Bytes it takes on disk.
    pub size: u64,
    pub last_use: Instant,
    /// Dirty or uploading: not to be removed.
    pub pinned: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_age: Option<Duration>,
    pub max_size: Option<u64>,
    pub min_free: u64,
}

/// The keys to remove, in order, given the disk's `free` bytes now.
pub fn plan<K: Clone>(items: &[Item<K>], now: Instant, limits: &Limits, free: u64) -> Vec<K> {
    let mut total: u64 = items.iter().map(|i| i.size).sum();
    let mut free = free;
    let mut candidates: Vec<&Item<K>> = items.iter().filter(|i| !i.pinned).collect();
    candidates.sort_by_key(|i| i.last_use);
    let mut out = Vec::new();
    let mut rest = Vec::new();
    for item in candidates {
        let idle = now.saturating_duration_since(item.last_use);
        if limits.max_age.is_some_and(|age| idle > age) {
            total -= item.size;
            free = free.saturating_add(item.size);
            out.push(item.key.clone());
        } else {
            rest.push(item);
        }
    }
    for item in rest {
        let over_size = limits.max_size.is_some_and(|max| total > max);
        if !over_size && free >= limits.min_free {
            break;
        }
        total -= item.size;
        free = free.saturating_add(item.size);
        out.push(item.key.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(
        key: &'static str,
        size: u64,
        age_s: u64,
        pinned: bool,
        now: Instant,
    ) -> Item<&'static str> {
        Item {
            key,
            size,
            last_use: now - Duration::from_secs(age_s),
            pinned,
        }
    }

    #[test]
    fn old_items_go_first_then_the_least_recently_used() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let items = [
            item("fresh", 100, 1, false, now),
            item("old", 10, 5000, false, now),
            item("older-dirty", 10, 9000, true, now),
            item("mid", 100, 50, false, now),
            item("recent", 100, 10, false, now),
        ];
        let limits = Limits {
            max_age: Some(Duration::from_secs(3600)),
            max_size: Some(200),
            min_free: 0,
        };
        // 320 bytes: "old" goes for its age (310 left), then LRU "mid" (210) and "recent"
        // (110); the dirty one stays though it is the oldest.
        assert_eq!(
            plan(&items, now, &limits, 1 << 30),
            vec!["old", "mid", "recent"]
        );
    }

    #[test]
    fn dirty_items_are_never_removed_even_over_every_limit() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let items = [
            item("a", 500, 9000, true, now),
            item("b", 500, 9000, true, now),
        ];
        let limits = Limits {
            max_age: Some(Duration::from_secs(1)),
            max_size: Some(1),
            min_free: u64::MAX,
        };
        assert!(plan(&items, now, &limits, 0).is_empty());
    }

    #[test]
    fn low_free_space_evicts_until_there_is_room() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let items = [
            item("a", 40, 30, false, now),
            item("b", 40, 20, false, now),
            item("c", 40, 10, false, now),
        ];
        let limits = Limits {
            max_age: None,
            max_size: None,
            min_free: 100,
        };
        assert_eq!(plan(&items, now, &limits, 30), vec!["a", "b"]);
        assert!(plan(&items, now, &limits, 100).is_empty());
    }
}

//! A small cache of rendered answers, keyed by request and valid for one tree head.
//!
//! A certificate's JSON, its status page and its product list change only when the log grows
//! (a new checkpoint, a new event or status); QR images never change. Reads far outnumber
//! appends (a port scans all day), so the HTTP layer keeps each rendered body until the tree
//! size moves on, and serves repeats without re-reading, re-proving or re-signing anything.

use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// A rendered answer.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Bytes,
}

/// Rendered answers by key, each tagged with the tree size it was rendered at.
pub struct BodyCache {
    map: Mutex<HashMap<String, (u64, Rendered)>>,
    max_entries: usize,
}

/// The generation of answers that never change (QR images).
pub const FOREVER: u64 = u64::MAX;

impl BodyCache {
    /// An empty cache holding at most `max_entries` answers.
    pub fn new(max_entries: usize) -> BodyCache {
        BodyCache {
            map: Mutex::new(HashMap::new()),
            max_entries,
        }
    }

    /// The answer cached under `key`, if it was rendered at tree size `generation` (or is
    /// valid forever).
    pub fn get(&self, key: &str, generation: u64) -> Option<Rendered> {
        let map = self.map.lock().ok()?;
        map.get(key)
            .filter(|(g, _)| *g == generation || *g == FOREVER)
            .map(|(_, r)| r.clone())
    }

    /// Keeps an answer. When full, the cache starts over: old heads' answers are useless
    /// anyway, and a bounded size matters more than a perfect hit rate.
    pub fn put(&self, key: String, generation: u64, rendered: Rendered) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= self.max_entries {
                map.clear();
            }
            map.insert(key, (generation, rendered));
        }
    }

    /// The number of answers held.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Rendered {
        Rendered {
            status: 200,
            content_type: "text/plain",
            body: Bytes::from(s.to_owned()),
        }
    }

    #[test]
    fn answers_are_valid_for_their_tree_size_only() {
        let c = BodyCache::new(10);
        c.put("a".into(), 5, r("x"));
        assert_eq!(c.get("a", 5).unwrap().body, "x");
        assert!(c.get("a", 6).is_none());
        c.put("q".into(), FOREVER, r("img"));
        assert_eq!(c.get("q", 123).unwrap().body, "img");
    }

    #[test]
    fn a_full_cache_starts_over() {
        let c = BodyCache::new(2);
        c.put("a".into(), 1, r("1"));
        c.put("b".into(), 1, r("2"));
        c.put("c".into(), 1, r("3"));
        assert_eq!(c.len(), 1);
        assert!(c.get("c", 1).is_some());
    }
}

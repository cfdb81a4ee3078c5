//! State records by key, packed into a few large buffers.
//!
//! An audit replays a whole log in memory: at 10^7 certificates that is 2·10^7 records of
//! about 30 + 70 bytes. A hash map of separately allocated keys and values spends more on
//! its buckets and allocations than on the records (≈ 210 bytes each, 4.2 GiB at 10^7);
//! packed, a record costs its own bytes, a 9-byte header and an 8-byte slot in the index.
//! The sequencer's batch overlay uses the same map: it is as fast for a few hundred records.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// The most a buffer grows to before the next one is started: a buffer that doubles copies
/// what it holds, and the copy must stay small beside the whole.
const CHUNK: usize = 64 << 20;

/// Flag: the record has a value (without it the key is deleted).
const VALUE: u8 = 1;
/// Flag: [`Records::take`] has taken the record.
const TAKEN: u8 = 2;
/// Bytes before the key: flags, key length (u32), value length (u32).
const HEADER: usize = 9;

/// State records by key, the newest write of each key winning; a write of `None` deletes
/// the key (and is kept, so that an overlay hides the base's record).
pub struct Records {
    /// The records, each `flags, key length, value length, key, value`, never split across
    /// two buffers. A rewritten key leaves its older record behind, unreferenced.
    chunks: Vec<Vec<u8>>,
    /// Where each key's newest record starts: buffer number << 32 | offset in it.
    index: hashbrown::HashTable<u64>,
    hasher: RandomState,
}

impl Default for Records {
    fn default() -> Self {
        Records::new()
    }
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("keys", &self.len())
            .finish()
    }
}

/// One record as stored: where it is, and its parts.
struct Found<'a> {
    flags: u8,
    key: &'a [u8],
    value: &'a [u8],
}

impl Records {
    /// An empty map.
    pub fn new() -> Records {
        Records {
            chunks: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: RandomState::new(),
        }
    }

    /// How many keys have a record (deleted ones included).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no key has a record.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn at(chunks: &[Vec<u8>], at: u64) -> Found<'_> {
        let chunk = &chunks[(at >> 32) as usize];
        let start = (at & 0xffff_ffff) as usize;
        let header = &chunk[start..start + HEADER];
        let key_len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let value_len = u32::from_le_bytes([header[5], header[6], header[7], header[8]]) as usize;
        let key_at = start + HEADER;
        Found {
            flags: header[0],
            key: &chunk[key_at..key_at + key_len],
            value: &chunk[key_at + key_len..key_at + key_len + value_len],
        }
    }

    /// Appends a record to the buffers and says where it starts.
    fn push(&mut self, key: &[u8], value: Option<&[u8]>) -> u64 {
        let value_bytes = value.unwrap_or_default();
        let need = HEADER + key.len() + value_bytes.len();
        // Buffers never grow past the capacity they were made with, so nothing is copied.
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.len() + need <= c.capacity());
        if !fits {
            // The first buffers small (a batch overlay holds a few KiB), then each twice the
            // last, up to `CHUNK`.
            let last = self.chunks.last().map_or(0, Vec::capacity);
            let capacity = (last * 2).clamp(4096, CHUNK).max(need);
            self.chunks.push(Vec::with_capacity(capacity));
        }
        let number = self.chunks.len() - 1;
        let chunk = &mut self.chunks[number];
        let start = chunk.len();
        chunk.push(if value.is_some() { VALUE } else { 0 });
        // Keys and values are state records, far below 4 GiB each.
        chunk.extend_from_slice(&(key.len() as u32).to_le_bytes());
        chunk.extend_from_slice(&(value_bytes.len() as u32).to_le_bytes());
        chunk.extend_from_slice(key);
        chunk.extend_from_slice(value_bytes);
        ((number as u64) << 32) | start as u64
    }

    /// Records `value` under `key` (`None`: the key is deleted), replacing any record of it.
    pub fn insert(&mut self, key: &[u8], value: Option<&[u8]>) {
        let hash = self.hasher.hash_one(key);
        let at = self.push(key, value);
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        match self.index.entry(
            hash,
            |&a| Records::at(chunks, a).key == key,
            |&a| hasher.hash_one(Records::at(chunks, a).key),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = at,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(at);
            }
        }
    }

    fn find(&self, key: &[u8]) -> Option<u64> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&a| Records::at(&self.chunks, a).key == key)
            .copied()
    }

    /// The record of `key`: `None` if it has none, `Some(None)` if it was deleted.
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let found = Records::at(&self.chunks, self.find(key)?);
        Some((found.flags & VALUE != 0).then_some(found.value))
    }

    /// Like [`Records::get`], and marks the record taken: [`Records::untaken`] then skips it.
    /// For comparing the map with another one record by record.
    pub fn take(&mut self, key: &[u8]) -> Option<Option<&[u8]>> {
        let at = self.find(key)?;
        let flags = &mut self.chunks[(at >> 32) as usize][(at & 0xffff_ffff) as usize];
        *flags |= TAKEN;
        let found = Records::at(&self.chunks, at);
        Some((found.flags & VALUE != 0).then_some(found.value))
    }

    /// Every key's record, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.index.iter().map(|&a| {
            let found = Records::at(&self.chunks, a);
            (found.key, (found.flags & VALUE != 0).then_some(found.value))
        })
    }

    /// The keys with a value that [`Records::take`] has not taken, in no particular order.
    pub fn untaken(&self) -> impl Iterator<Item = &[u8]> {
        self.index.iter().filter_map(|&a| {
            let found = Records::at(&self.chunks, a);
            (found.flags & (VALUE | TAKEN) == VALUE).then_some(found.key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn behaves_as_a_map_of_the_newest_writes() {
        let mut records = Records::new();
        let mut model: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        // Keys that collide in their first bytes, rewrites, deletions, empty keys and values,
        // and records large enough to start new buffers.
        for i in 0u32..20_000 {
            let key = format!("k{}", i % 7_000).into_bytes();
            let value = match i % 5 {
                0 => None,
                1 => Some(Vec::new()),
                2 => Some(vec![i as u8; 10_000]),
                _ => Some(i.to_be_bytes().to_vec()),
            };
            records.insert(&key, value.as_deref());
            model.insert(key, value);
        }
        records.insert(b"", Some(b"empty key"));
        model.insert(Vec::new(), Some(b"empty key".to_vec()));
        assert_eq!(records.len(), model.len());
        assert!(records.chunks.len() > 1, "the test must span buffers");
        for (k, v) in &model {
            assert_eq!(records.get(k), Some(v.as_deref()), "{k:?}");
        }
        assert_eq!(records.get(b"absent"), None);
        let mut listed: Vec<_> = records
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        let mut expected: Vec<_> = model.clone().into_iter().collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected);
    }

    #[test]
    fn untaken_lists_the_records_with_a_value_not_yet_taken() {
        let mut records = Records::new();
        records.insert(b"a", Some(b"1"));
        records.insert(b"b", Some(b"2"));
        records.insert(b"c", None);
        records.insert(b"d", Some(b"4"));
        assert_eq!(records.take(b"a"), Some(Some(&b"1"[..])));
        assert_eq!(records.take(b"c"), Some(None));
        assert_eq!(records.take(b"x"), None);
        // A record written again after it was taken is a new record, not taken.
        records.insert(b"d", Some(b"5"));
        records.take(b"b");
        records.insert(b"b", Some(b"6"));
        let mut left: Vec<_> = records.untaken().collect();
        left.sort();
        assert_eq!(left, vec![&b"b"[..], &b"d"[..]]);
        assert_eq!(records.get(b"a"), Some(Some(&b"1"[..])));
    }
}

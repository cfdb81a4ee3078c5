//! Buckets: many small state records packed under one storage key.
//!
//! sled keeps an in-memory page-table entry (and a recovery-snapshot entry) for each node of its
//! tree, and a leaf node holds at most 16 keys. With one key per state record (two per
//! certificate) a log of 10^6 certificates made about 180,000 sled nodes, ≈ 95 MiB of RAM, and a
//! log of 10^7 would not fit the memory target of issue 5. A bucket holds the records of one
//! contiguous key range, sorted, in a value of about [`MAX_BYTES`] at most: the store keeps one
//! key per bucket and finds a record's bucket as the one with the greatest start key not after
//! the record's key, so lookups and ordered prefix scans work as they did on plain keys.
//!
//! Encoding: records back to back, each `u16 key length, key, u32 value length, value`
//! (big-endian), keys strictly ascending. Pure: no I/O.

/// A bucket is split once its encoding outgrows this (a single larger record keeps a bucket of
/// its own): ≈ 8 certificate records or ≈ 15 unit records. Every state write rewrites its
/// bucket, so larger buckets cost disk (sled's log keeps the old copies until it cleans them),
/// smaller ones cost memory (more keys, more sled nodes). Measured at 10^6 entries
/// (BENCHMARKS.md): 4 KiB buckets took 4.9× the entry bytes on disk, 1 KiB 3.7×, 512 B 3.3×
/// with more resident memory after open (56 MiB instead of 45).
pub const MAX_BYTES: usize = 1024;

/// Bytes a record takes in the encoding besides its key and value.
const RECORD_OVERHEAD: usize = 6;

/// Why a stored bucket could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    /// The bytes are not a bucket encoding: the storage is damaged, or written by other code.
    #[error("state bucket is corrupt: {0}")]
    Corrupt(&'static str),
    /// A record too large for the encoding's length fields.
    #[error(
        "a state record with a {key}-byte key and a {value}-byte value cannot be stored \
         (at most 65,535 and 4,294,967,295 bytes)"
    )]
    TooLarge {
        /// Key length.
        key: usize,
        /// Value length.
        value: usize,
    },
}

/// Refuses a record the encoding cannot hold, before it is stored (a longer key would be
/// written with a wrapped length and damage its whole bucket).
pub fn check_record(key: &[u8], value: Option<&[u8]>) -> Result<(), BucketError> {
    let value_len = value.map_or(0, <[u8]>::len);
    if key.len() > usize::from(u16::MAX) || u32::try_from(value_len).is_err() {
        return Err(BucketError::TooLarge {
            key: key.len(),
            value: value_len,
        });
    }
    Ok(())
}

/// The records of one key range, sorted by key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Bucket {
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Iterates over an encoded bucket's records without copying them.
pub fn records(bytes: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), BucketError>> {
    let mut rest = bytes;
    let mut last: Option<&[u8]> = None;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let item = next_record(&mut rest).and_then(|(k, v)| {
            if last.is_some_and(|l| l >= k) {
                return Err(BucketError::Corrupt("keys out of order"));
            }
            last = Some(k);
            Ok((k, v))
        });
        if item.is_err() {
            rest = &[];
        }
        Some(item)
    })
}

fn next_record<'a>(rest: &mut &'a [u8]) -> Result<(&'a [u8], &'a [u8]), BucketError> {
    let truncated = BucketError::Corrupt("record is truncated");
    let (len, tail) = rest.split_first_chunk::<2>().ok_or(truncated.clone())?;
    let klen = u16::from_be_bytes(*len) as usize;
    let (key, tail) = tail.split_at_checked(klen).ok_or(truncated.clone())?;
    let (len, tail) = tail.split_first_chunk::<4>().ok_or(truncated.clone())?;
    let vlen = u32::from_be_bytes(*len) as usize;
    let (value, tail) = tail.split_at_checked(vlen).ok_or(truncated)?;
    *rest = tail;
    Ok((key, value))
}

/// The value of `key` in an encoded bucket, without decoding the rest.
pub fn find<'a>(bytes: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>, BucketError> {
    for r in records(bytes) {
        let (k, v) = r?;
        match k.cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Ok(Some(v)),
            std::cmp::Ordering::Greater => return Ok(None),
        }
    }
    Ok(None)
}

impl Bucket {
    /// Decodes a stored bucket, checking that its keys are in order.
    pub fn decode(bytes: &[u8]) -> Result<Bucket, BucketError> {
        let records = records(bytes)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()?;
        Ok(Bucket { records })
    }

    /// The encoding [`Bucket::decode`] reads.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        for (k, v) in &self.records {
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    /// The length of [`Bucket::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        self.records.iter().map(record_len).sum()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The smallest key it holds.
    pub fn first_key(&self) -> Option<&[u8]> {
        self.records.first().map(|(k, _)| k.as_slice())
    }

    /// Sets (`Some`) or deletes (`None`) one record. Keys longer than 65,535 bytes or values
    /// over 4 GiB cannot be encoded: the store refuses them first ([`check_record`]).
    pub fn set(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        match (
            self.records
                .binary_search_by(|(k, _)| k.as_slice().cmp(key)),
            value,
        ) {
            (Ok(i), Some(v)) => self.records[i].1 = v,
            (Ok(i), None) => {
                self.records.remove(i);
            }
            (Err(i), Some(v)) => self.records.insert(i, (key.to_vec(), v)),
            (Err(_), None) => {}
        }
    }

    /// Splits a bucket that outgrew [`MAX_BYTES`] into buckets of about half that, in key
    /// order (half full, so that the next records of a random key order find room). A bucket
    /// within the limit comes back whole.
    pub fn split(self) -> Vec<Bucket> {
        if self.encoded_len() <= MAX_BYTES {
            return vec![self];
        }
        let mut out = Vec::new();
        let mut remaining = self.encoded_len();
        let mut current = Bucket::default();
        let mut current_len = 0;
        for rec in self.records {
            let len = record_len(&rec);
            if !current.is_empty() && current_len + len > MAX_BYTES {
                out.push(std::mem::take(&mut current));
                current_len = 0;
            }
            current.records.push(rec);
            current_len += len;
            remaining -= len;
            if current_len >= MAX_BYTES / 2 && remaining > 0 {
                out.push(std::mem::take(&mut current));
                current_len = 0;
            }
        }
        if !current.is_empty() {
            // A small tail joins the previous bucket when both fit.
            match out.last_mut() {
                Some(prev) if prev.encoded_len() + current_len <= MAX_BYTES => {
                    prev.records.append(&mut current.records)
                }
                _ => out.push(current),
            }
        }
        out
    }
}

fn record_len((k, v): &(Vec<u8>, Vec<u8>)) -> usize {
    RECORD_OVERHEAD + k.len() + v.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(n: u32, value_len: usize) -> Bucket {
        let mut b = Bucket::default();
        // Inserted out of order: the bucket sorts.
        for i in (0..n).rev() {
            b.set(
                format!("k{i:06}").as_bytes(),
                Some(vec![i as u8; value_len]),
            );
        }
        b
    }

    #[test]
    fn round_trips_and_finds_every_key() {
        let b = bucket(50, 20);
        let bytes = b.encode();
        assert_eq!(bytes.len(), b.encoded_len());
        assert_eq!(Bucket::decode(&bytes).unwrap(), b);
        for i in 0..50u32 {
            let v = find(&bytes, format!("k{i:06}").as_bytes()).unwrap();
            assert_eq!(v, Some(vec![i as u8; 20].as_slice()));
        }
        assert_eq!(find(&bytes, b"k").unwrap(), None);
        assert_eq!(find(&bytes, b"k000010x").unwrap(), None);
        assert_eq!(find(&bytes, b"z").unwrap(), None);
    }

    #[test]
    fn set_replaces_and_deletes() {
        let mut b = bucket(3, 4);
        b.set(b"k000001", Some(b"new".to_vec()));
        b.set(b"k000000", None);
        b.set(b"absent", None);
        let bytes = b.encode();
        assert_eq!(find(&bytes, b"k000001").unwrap(), Some(b"new".as_slice()));
        assert_eq!(find(&bytes, b"k000000").unwrap(), None);
        assert_eq!(b.first_key(), Some(b"k000001".as_slice()));
    }

    #[test]
    fn split_keeps_order_and_sizes() {
        let b = bucket(400, 60);
        let total = b.encoded_len();
        let parts = b.clone().split();
        assert!(parts.len() > 1);
        let mut all = Vec::new();
        for p in &parts {
            assert!(p.encoded_len() <= MAX_BYTES, "{}", p.encoded_len());
            assert!(p.encoded_len() >= MAX_BYTES / 2 - 100);
            all.extend(p.records.iter().cloned());
        }
        assert_eq!(all, b.records);
        assert_eq!(parts.iter().map(Bucket::encoded_len).sum::<usize>(), total);
        // A bucket within the limit is not split; one huge record stands alone.
        assert_eq!(bucket(3, 10).split().len(), 1);
        let mut big = bucket(3, 10);
        big.set(b"k000001", Some(vec![0; 3 * MAX_BYTES]));
        let parts = big.split();
        assert!(
            parts
                .iter()
                .any(|p| p.records.len() == 1 && p.encoded_len() > MAX_BYTES)
        );
    }

    #[test]
    fn records_too_large_for_the_encoding_are_refused() {
        assert!(check_record(&[0; 65_535], Some(b"v")).is_ok());
        let err = check_record(&[0; 65_536], None).unwrap_err();
        assert!(err.to_string().contains("65536-byte key"), "{err}");
    }

    #[test]
    fn corrupt_encodings_are_refused() {
        let bytes = bucket(3, 4).encode();
        for cut in 1..bytes.len() {
            let r = Bucket::decode(&bytes[..cut]);
            // Every cut that does not fall on a record boundary is truncated.
            if r.is_ok() {
                assert!(records(&bytes[..cut]).all(|r| r.is_ok()));
            }
        }
        assert!(Bucket::decode(&bytes[..bytes.len() - 1]).is_err());
        // Keys out of order.
        let swapped = Bucket {
            records: vec![(b"b".to_vec(), vec![]), (b"a".to_vec(), vec![])],
        };
        assert_eq!(
            Bucket::decode(&swapped.encode()),
            Err(BucketError::Corrupt("keys out of order"))
        );
    }
}

//! The ledger's storage on sled: entries, Merkle nodes, state records and the latest checkpoint.
//!
//! Everything lives in one sled tree under one-byte key prefixes, so that a whole batch of
//! appends (entries, nodes, state records, tree size and the signed checkpoint) is one atomic
//! `apply_batch`, followed by a flush before anyone is told it is stored. Opening reads only
//! the metadata: the work is O(1) in the number of entries (the ledger then reads O(log n)
//! node hashes to rebuild the tree's right edge).
//!
//! Prefixes: `E` entry bytes by index, `N` node hashes by (level, index), `M` metadata; the
//! lowercase prefixes belong to [`crate::state`].

use crate::merkle::{Hash, HashReader, NodeId};
use crate::state::{PartyRecord, ReadError, StateRead};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error (I/O, corruption, lock held by another process).
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value does not have the expected form.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// A Merkle node the tree needs is missing.
    #[error("storage is missing Merkle node at level {level}, index {index}")]
    MissingNode {
        /// Node level.
        level: u8,
        /// Node index.
        index: u64,
    },
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> Self {
        ReadError(e.to_string())
    }
}

const META_SIZE: &[u8] = b"Msize";
const META_CHECKPOINT: &[u8] = b"Mcheckpoint";
const META_LOG_KEY: &[u8] = b"Mlog_key";

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'E';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn node_key(id: NodeId) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = b'N';
    k[1] = id.level;
    k[2..].copy_from_slice(&id.index.to_be_bytes());
    k
}

/// One atomic group of appends.
#[derive(Default)]
pub struct Commit {
    /// New entries, by index.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Merkle nodes that became complete.
    pub nodes: Vec<(NodeId, Hash)>,
    /// State writes (`None` deletes).
    pub state: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The tree size after the batch.
    pub size: u64,
    /// The signed checkpoint for that size.
    pub checkpoint: String,
}

/// Decoded party records, each with the stored bytes it was decoded from.
type PartyCache = HashMap<String, (sled::IVec, Arc<PartyRecord>)>;

/// The sled-backed store of one ledger.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    parties: Arc<Mutex<PartyCache>>,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            .open()?;
        Ok(Store {
            db,
            parties: Arc::default(),
        })
    }

    /// The log key (vkey) this store was created for, if it has been initialized.
    pub fn log_key(&self) -> Result<Option<String>, StoreError> {
        self.db
            .get(META_LOG_KEY)?
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| StoreError::Corrupt("log key is not UTF-8".into()))
            })
            .transpose()
    }

    /// Records the log key of a new store, durably.
    pub fn set_log_key(&self, vkey: &str) -> Result<(), StoreError> {
        self.db.insert(META_LOG_KEY, vkey.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// The number of entries committed.
    pub fn size(&self) -> Result<u64, StoreError> {
        match self.db.get(META_SIZE)? {
            None => Ok(0),
            Some(v) => {
                let b: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("tree size record".into()))?;
                Ok(u64::from_be_bytes(b))
            }
        }
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        self.db
            .get(META_CHECKPOINT)?
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| StoreError::Corrupt("checkpoint is not UTF-8".into()))
            })
            .transpose()
    }

    /// The exact bytes of entry `index`.
    pub fn entry(&self, index: u64) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.db.get(entry_key(index))?)
    }

    /// The stored hash of a complete subtree.
    pub fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        match self.db.get(node_key(id))? {
            None => Ok(None),
            Some(v) => Ok(Some(v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt(format!("node {}/{} is not 32 bytes", id.level, id.index))
            })?)),
        }
    }

    /// All records whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> + use<> {
        self.db
            .scan_prefix(prefix)
            .map(|r| r.map_err(StoreError::from))
    }

    /// Writes a batch atomically and flushes it to disk before returning; returns the time
    /// the flush took.
    pub fn commit(&self, c: Commit) -> Result<std::time::Duration, StoreError> {
        let mut b = sled::Batch::default();
        for (i, bytes) in c.entries {
            b.insert(&entry_key(i), bytes);
        }
        for (id, h) in c.nodes {
            b.insert(&node_key(id), &h);
        }
        for (k, v) in c.state {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        b.insert(META_SIZE, &c.size.to_be_bytes());
        b.insert(META_CHECKPOINT, c.checkpoint.as_bytes());
        self.db.apply_batch(b)?;
        let t = std::time::Instant::now();
        self.db.flush()?;
        Ok(t.elapsed())
    }

    /// Bytes on disk (sled's own estimate).
    pub fn disk_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Overwrites an entry's bytes with no check at all. For repair tooling and for tests that
    /// prove `audit` catches tampering; the ledger itself never calls it.
    pub fn raw_put_entry(&self, index: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.db.insert(entry_key(index), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// Deletes an entry with no check at all (see [`Store::raw_put_entry`]).
    pub fn raw_remove_entry(&self, index: u64) -> Result<(), StoreError> {
        self.db.remove(entry_key(index))?;
        self.db.flush()?;
        Ok(())
    }

    /// Flushes everything written so far.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

impl HashReader for Store {
    type Error = StoreError;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        ids.iter()
            .map(|&id| {
                self.node(id)?.ok_or(StoreError::MissingNode {
                    level: id.level,
                    index: id.index,
                })
            })
            .collect()
    }
}

impl StateRead for Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self
            .db
            .get(key)
            .map_err(StoreError::from)?
            .map(|v| v.to_vec()))
    }

    /// Party records are read on every submission: decode each stored version once.
    fn party_record(&self, name: &str) -> Result<Option<Arc<PartyRecord>>, ReadError> {
        let k = crate::state::key::party(name);
        let Some(raw) = self.db.get(&k).map_err(StoreError::from)? else {
            return Ok(None);
        };
        let mut cache = self
            .parties
            .lock()
            .map_err(|_| ReadError("party cache poisoned".into()))?;
        if let Some((_, rec)) = cache.get(name).filter(|(cached, _)| *cached == raw) {
            return Ok(Some(rec.clone()));
        }
        let rec = Arc::new(crate::state::decode_party(&k, &raw)?);
        cache.insert(name.to_owned(), (raw, rec.clone()));
        Ok(Some(rec))
    }
}

//! The ledger's storage on sled: entries, Merkle nodes, state records and the latest checkpoint.
//!
//! Everything lives in one sled tree under one-byte key prefixes, so that a whole batch of
//! appends (entries, nodes, state records, tree size and the signed checkpoint) is one atomic
//! `apply_batch`, followed by a flush before anyone is told it is stored. Opening reads only
//! the metadata: the store's own work is O(1) in the number of entries (the ledger then reads
//! O(log n) node hashes to rebuild the tree's right edge). sled's is not: it replays the log
//! written since its last recovery snapshot and loads a page table of one record per sled tree
//! node (BENCHMARKS.md, scale). sled 0.34 writes that snapshot only when it opens, so the store
//! reopens sled when it closes and, in a running ledger, every
//! [`crate::ledger::LedgerConfig::snapshot_every`] entries ([`Store::refresh_snapshot`]): the
//! replay stays bounded however long the ledger runs. The layout is chosen to keep the number
//! of sled nodes small: sled puts at most 16 keys in a node, so every layout below packs many
//! small things under one key.
//!
//! - **Entries** are stored by *run*: each group commit writes its entries, in runs of at most
//!   [`RUN_LEN`] entries and about [`RUN_BYTES`] bytes, as one value under `R` + the run's
//!   first index. Reading entry `i` is one ordered lookup (`get_lt`) of the run that holds it.
//!   A run is stored LZ4-compressed when that saves at least an eighth (format 3; a plain run
//!   is told apart by its first byte, so runs of both kinds are read side by side).
//! - **Merkle nodes below level [`NODE_CACHE_LEVEL`]** are stored by *block* of 64 leaves:
//!   `B` + block number holds the block's leaf hashes and every complete node above them up to
//!   level 5 (126 hashes when full), so the lower half of any proof is one small record.
//! - **Merkle nodes of level [`NODE_CACHE_LEVEL`] and above** are written, by level, in *tiles*
//!   of [`TILE_WIDTH`] consecutive hashes under `T` + level + tile number (the rightmost tile of
//!   a level is rewritten as it fills), read once and kept in memory.
//! - **State records** ([`crate::state`]'s keys) are packed in [`crate::bucket`]s of a key
//!   range each, under `S` + the range's first key.
//! - **Seal signatures** (derived data, [`crate::seal`]) of the certificate entries, as the
//!   receipts signed them, by node block: a *seal list* under the block's key followed by `s`.
//!   It is a record of its own, so that a node block stays 4 KiB and a proof alone pages in no
//!   more than it needs; and it sorts right after its block, so that sled usually keeps the
//!   two in one tree node (a node that splits between them is the exception), which a
//!   lookup's proof has paged in anyway: its seal is one more `get` in that node. The value is
//!   a 64-bit mask of the block's entries that have one, then the signatures in entry order.
//!   The sequencer hands them over with its next batch; the store holds a block's seals in
//!   memory until the log has moved a whole block past it, then writes them once (late ones
//!   are merged in later); a ledger that closes writes those it still holds, and one that
//!   opens after a stop without closing signs and writes those of its last batch and blocks
//!   that are not kept. A seal not found (a store from before) is signed again: Ed25519
//!   signatures are deterministic, so these are the same bytes. Earlier versions kept seals under `Q` by block of 256 entries (records of up to
//!   16 KiB, a page-in of their own for every lookup); those are deleted at the first open.
//! - **Metadata** under `M`: tree size, checkpoint, log key, layout format; for a mirror catching
//!   up, the checkpoint of the followed log its entries lead to ([`crate::mirror`]); for a
//!   mirror that stopped following, why, with the evidence ([`crate::mirroring`]).
//!
//! Stores written by earlier versions (format 1: one sled key per state record, lower Merkle
//! nodes inside the runs) are converted at their first open: their state records are packed
//! (a one-time pass, resumable if interrupted), and their lower nodes are read from the runs
//! where no block exists. Format 2 and 3 stores need no conversion: their first batch, the
//! first that may hold a compressed run (format 3) or a certificate record that says whether
//! the certificate has history (format 4, [`crate::state::Known`]), records the current format
//! with it, atomically, so that an older version refuses the store from then on instead of
//! misreading it, or of logging an event without marking its certificate's record. Records
//! written before keep no such mark: their lookups scan for history as before.

use crate::merkle::{self, Hash, HashReader, NodeId};
use crate::state::{PartyRecord, ReadError, StateRead, Write};
use crate::tiles::{self, Tile, TileKind};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error (I/O, corruption, lock held by another process).
    #[error("storage error: {}", sled_message(.0))]
    Sled(#[from] sled::Error),
    /// A stored value does not have the expected form.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// A state bucket cannot be read, or a record cannot be stored in one.
    #[error("{0}")]
    Bucket(#[from] crate::bucket::BucketError),
    /// The database could not be reopened after a snapshot refresh: nothing can be read or
    /// written until the process restarts.
    #[error("storage is closed: it could not be reopened (see the log); restart the ledger")]
    Closed,
    /// Another process holds the data directory: sled takes an exclusive lock on it.
    #[error(
        "the data directory {0} is in use by another process (a running reman-ledger serve, mirror or witness?): stop it first, or read that ledger over HTTP (e.g. audit --server URL)"
    )]
    InUse(String),
    /// A Merkle node the tree needs is missing.
    #[error("storage is missing Merkle node at level {level}, index {index}")]
    MissingNode {
        /// Node level.
        level: u8,
        /// Node index.
        index: u64,
    },
}

/// sled's error in words an operator can act on. sled passes the system's I/O errors on with
/// their debug form as text (`Os { code: 27, kind: FileTooLarge, message: "File too large" }`):
/// that is said as the system says it (`File too large (os error 27)`), with what to do when
/// the disk refused to grow a file.
fn sled_message(e: &sled::Error) -> String {
    use std::io::ErrorKind;
    let sled::Error::Io(io) = e else {
        return e.to_string();
    };
    let text = io.to_string();
    let field = |name: &str, end: char| {
        let start = text.find(name)? + name.len();
        text[start..].split(end).next()
    };
    let said = match (field("message: \"", '"'), field("code: ", ',')) {
        (Some(message), Some(code)) => format!("{message} (os error {code})"),
        _ => text.clone(),
    };
    match io.kind() {
        ErrorKind::FileTooLarge | ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            format!("I/O error: {said}: free disk space or raise the file-size limit, then restart")
        }
        _ => format!("I/O error: {said}"),
    }
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> Self {
        ReadError(e.to_string())
    }
}

const META_SIZE: &[u8] = b"Msize";
const META_CHECKPOINT: &[u8] = b"Mcheckpoint";
const META_LOG_KEY: &[u8] = b"Mlog_key";
/// A mirror catching up: the followed log's checkpoint its stored entries lead to (they are a
/// verified prefix of its tree), while `META_CHECKPOINT` stays the one they last reached.
const META_CATCHING_UP: &[u8] = b"Mcatching_up";
/// A mirror that stopped following: why, with the evidence (see [`crate::mirroring`]).
const META_MIRROR_STOPPED: &[u8] = b"Mmirror_stopped";
/// The layout format (absent in format 1).
const META_FORMAT: &[u8] = b"Mformat";
/// The layout this code writes: 4, format 3 whose certificate records may say whether the
/// certificate has history and what it supersedes ([`crate::state::Known`]). Format 3 is
/// format 2 with runs that may be compressed.
pub const FORMAT: u8 = 4;

/// Prefix of state buckets.
const BUCKET: u8 = b'S';
/// Prefix of Merkle node blocks.
const BLOCK: u8 = b'B';
/// Prefix of the seal records that earlier versions wrote by block of 256 entries: no longer
/// read (seals are kept in lists beside the node blocks), deleted at open.
const OLD_SEALS: u8 = b'Q';
/// Leaves per block: the nodes of levels below [`NODE_CACHE_LEVEL`] of one block are stored
/// together.
const BLOCK_LEAVES: u64 = 1 << NODE_CACHE_LEVEL;

/// The most entries one run value holds.
pub const RUN_LEN: usize = 16;

/// A run takes no further entry once its entries hold this many bytes. Together with
/// [`SEGMENT_SIZE`] it keeps every sled node well under sled's blob threshold (a quarter of a
/// segment): sled stores a larger node as a separate file and counts it in its cache as a few
/// bytes, so a cache full of such nodes grows without bound.
pub const RUN_BYTES: usize = 8 * 1024;

/// sled's segment size for new stores: 8 MiB, so nodes up to 2 MiB are kept inline (a leaf holds
/// at most 17 items: 17 runs of at most `RUN_BYTES` plus one maximal entry each fit). Stores
/// made with another segment size keep theirs (sled refuses to change it).
pub const SEGMENT_SIZE: usize = 8 * 1024 * 1024;

/// sled's cache. Small on purpose: sled holds up to 64 not yet accounted page reads in each of
/// its 256 cache shards on top of this, so the resident set is dominated by that, not by the
/// capacity; a larger capacity barely changes the hit rate of random lookups in a large log.
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Opens sled in `dir` with this store's settings. sled locks the directory; a process (or a
/// handle of this one) that has just closed it may hold the lock for a moment longer, so a
/// held lock is retried for up to two seconds before giving up.
fn open_sled(dir: &Path) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(dir)
        .segment_size(stored_segment_size(dir).unwrap_or(SEGMENT_SIZE))
        .cache_capacity(CACHE_BYTES)
        .mode(sled::Mode::HighThroughput);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        // sled panics on some damaged directories (a `conf` whose segment size is not the
        // one its data was written with): that is a damaged store, not a crash.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
            .map_err(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let why = why.lines().next().unwrap_or_default();
                StoreError::Corrupt(format!(
                    "sled failed while opening {} ({why}): its `conf` file or its data is damaged; restore the data directory from a backup",
                    dir.display()
                ))
            })?;
        match opened {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::InUse(dir.display().to_string()));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

/// A read guard on the open database (see [`Store::db`]).
struct Db<'a>(std::sync::RwLockReadGuard<'a, Option<sled::Db>>);

impl std::ops::Deref for Db<'_> {
    type Target = sled::Db;
    fn deref(&self) -> &sled::Db {
        match self.0.as_ref() {
            Some(db) => db,
            // `Store::db` hands out a guard only over an open database, and nobody can
            // replace it while the guard lives.
            None => unreachable!("a store guard over no database"),
        }
    }
}

/// The segment size recorded in an existing sled directory's `conf` file, if any.
fn stored_segment_size(dir: &Path) -> Option<usize> {
    let conf = std::fs::read(dir.join("conf")).ok()?;
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|l| l.strip_prefix("segment_size: "))
        .and_then(|v| v.trim().parse().ok())
}

/// Adds the records of one bucket whose key starts with `prefix` to `out`, skipping those
/// already there (met again when a concurrent commit split a bucket already read); true once
/// a key past every key with that prefix is met, so that no later bucket can hold more.
fn collect_prefixed(
    bucket: &[u8],
    prefix: &[u8],
    out: &mut Vec<StateRecord>,
) -> Result<bool, StoreError> {
    for r in crate::bucket::records(bucket) {
        let (rk, rv) = r?;
        if out.last().is_some_and(|(last, _)| rk <= last.as_slice()) {
            continue;
        }
        if rk.starts_with(prefix) {
            out.push((rk.to_vec(), rv.to_vec()));
        } else if rk > prefix {
            return Ok(true);
        }
    }
    Ok(false)
}

fn run_key(first: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'R';
    k[1..].copy_from_slice(&first.to_be_bytes());
    k
}

/// A run of consecutive entries and the Merkle nodes their leaves completed.
///
/// Layout: `u32 n_entries, u32 n_nodes`, then `n_entries` u32 end offsets of the entries in
/// the entry area, then `n_nodes` records `(u8 level, u64 index, 32-byte hash)` sorted by
/// (level, index), then the entry bytes back to back. All integers big-endian.
struct Run {
    bytes: RunBytes,
    n_entries: usize,
    n_nodes: usize,
}

const NODE_REC: usize = 41;

/// First byte of a run stored compressed. A plain run starts with its entry count as a
/// big-endian `u32`, at most [`RUN_LEN`], so with a zero byte: the two never meet.
const RUN_LZ4: u8 = 0xC4;

/// What follows a node block's key in the key of its seal list.
const SEALS: u8 = b's';

/// The largest plain run a compressed one may claim to expand to (a full run of maximal
/// entries, with room for the nodes format 1 kept in runs): what a damaged record can make a
/// reader allocate.
const MAX_RUN_PLAIN: usize =
    8 + RUN_LEN * (4 + crate::entry::MAX_ENTRY_BYTES) + NODE_REC * 4 * RUN_LEN;

/// A run's plain bytes: the stored value itself, or what a compressed one unpacked to (kept as
/// it came out of the decompressor: a lookup takes one entry of it, not worth a copy of all).
enum RunBytes {
    Stored(sled::IVec),
    Unpacked(Vec<u8>),
}

impl std::ops::Deref for RunBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            RunBytes::Stored(b) => b,
            RunBytes::Unpacked(b) => b,
        }
    }
}

impl Run {
    /// The run as stored: LZ4-compressed when that saves at least an eighth, else plain.
    ///
    /// Entries of one batch share most of their text (field names, an issuer's templates), so
    /// a run of them shrinks to a quarter or so; that is a quarter of the bytes sled copies each
    /// time it rewrites the node holding the run (every 10 updates and at every split), and of
    /// the disk it keeps. A lone entry seldom shrinks enough and stays plain.
    fn encode_stored(entries: &[Vec<u8>], nodes: &mut [(NodeId, Hash)]) -> Vec<u8> {
        let plain = Run::encode(entries, nodes);
        let packed = lz4_flex::block::compress(&plain);
        if 5 + packed.len() > plain.len() - plain.len() / 8 {
            return plain;
        }
        let mut out = Vec::with_capacity(5 + packed.len());
        out.push(RUN_LZ4);
        out.extend_from_slice(&(plain.len() as u32).to_be_bytes());
        out.extend_from_slice(&packed);
        out
    }

    /// The plain form of a stored run (see [`Run::encode_stored`]).
    fn unpack(bytes: sled::IVec) -> Result<RunBytes, StoreError> {
        if bytes.first() != Some(&RUN_LZ4) {
            return Ok(RunBytes::Stored(bytes));
        }
        let corrupt = |why: String| StoreError::Corrupt(format!("compressed run: {why}"));
        let len = bytes
            .get(1..5)
            .and_then(|b| b.try_into().ok())
            .map(|b| u32::from_be_bytes(b) as usize)
            .ok_or_else(|| corrupt("truncated header".into()))?;
        if len > MAX_RUN_PLAIN {
            return Err(corrupt(format!(
                "claims {len} bytes, more than a run can hold ({MAX_RUN_PLAIN})"
            )));
        }
        let plain =
            lz4_flex::block::decompress(&bytes[5..], len).map_err(|e| corrupt(e.to_string()))?;
        if plain.len() != len {
            return Err(corrupt(format!("{} bytes instead of {len}", plain.len())));
        }
        Ok(RunBytes::Unpacked(plain))
    }

    /// The plain form (see [`Run::encode_stored`] for the stored one).
    fn encode(entries: &[Vec<u8>], nodes: &mut [(NodeId, Hash)]) -> Vec<u8> {
        nodes.sort_by_key(|(id, _)| (id.level, id.index));
        let body: usize = entries.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(8 + 4 * entries.len() + NODE_REC * nodes.len() + body);
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(nodes.len() as u32).to_be_bytes());
        let mut end = 0u32;
        for e in entries {
            end += e.len() as u32;
            out.extend_from_slice(&end.to_be_bytes());
        }
        for (id, h) in nodes.iter() {
            out.push(id.level);
            out.extend_from_slice(&id.index.to_be_bytes());
            out.extend_from_slice(h);
        }
        for e in entries {
            out.extend_from_slice(e);
        }
        out
    }

    /// Reads a stored run, plain or compressed.
    fn decode(bytes: sled::IVec) -> Result<Run, StoreError> {
        let bytes = Run::unpack(bytes)?;
        let corrupt = || StoreError::Corrupt("run record is truncated".into());
        let word = |at: usize| -> Result<usize, StoreError> {
            let b: [u8; 4] = bytes
                .get(at..at + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(corrupt)?;
            Ok(u32::from_be_bytes(b) as usize)
        };
        let n_entries = word(0)?;
        let n_nodes = word(4)?;
        let last_end = if n_entries == 0 {
            0
        } else {
            word(8 + 4 * (n_entries - 1))?
        };
        let run = Run {
            n_entries,
            n_nodes,
            bytes,
        };
        if run.body_start() + last_end > run.bytes.len() {
            return Err(corrupt());
        }
        Ok(run)
    }

    fn body_start(&self) -> usize {
        8 + 4 * self.n_entries + NODE_REC * self.n_nodes
    }

    fn end(&self, i: usize) -> usize {
        let at = 8 + 4 * i;
        self.bytes
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map_or(0, |b| u32::from_be_bytes(b) as usize)
    }

    /// Where entry `i` lies in the plain bytes (`None` past the end or in a damaged run).
    fn entry_range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        if i >= self.n_entries {
            return None;
        }
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        let len = self.end(i).checked_sub(start)?;
        let at = self.body_start() + start;
        (at + len <= self.bytes.len()).then_some(at..at + len)
    }

    fn entry(&self, i: usize) -> Option<sled::IVec> {
        let r = self.entry_range(i)?;
        Some(match &self.bytes {
            RunBytes::Stored(b) => b.subslice(r.start, r.len()),
            RunBytes::Unpacked(b) => sled::IVec::from(&b[r]),
        })
    }

    fn entries(&self) -> Vec<Vec<u8>> {
        (0..self.n_entries)
            .filter_map(|i| self.entry_range(i).map(|r| self.bytes[r].to_vec()))
            .collect()
    }

    fn node_at(&self, j: usize) -> Option<(NodeId, Hash)> {
        let at = 8 + 4 * self.n_entries + NODE_REC * j;
        let rec = self.bytes.get(at..at + NODE_REC)?;
        let index = u64::from_be_bytes(rec[1..9].try_into().ok()?);
        let hash: Hash = rec[9..41].try_into().ok()?;
        Some((
            NodeId {
                level: rec[0],
                index,
            },
            hash,
        ))
    }

    fn nodes(&self) -> Vec<(NodeId, Hash)> {
        (0..self.n_nodes).filter_map(|j| self.node_at(j)).collect()
    }

    fn node(&self, id: NodeId) -> Option<Hash> {
        let (mut lo, mut hi) = (0, self.n_nodes);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (mid_id, h) = self.node_at(mid)?;
            match (mid_id.level, mid_id.index).cmp(&(id.level, id.index)) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(h),
            }
        }
        None
    }
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
    /// The log key (vkey) the ledger runs under: written with every batch, so a store that
    /// holds entries always names its key, and one that holds none does not.
    pub log_key: String,
    /// Seal signatures, by index, of entries of earlier batches (see the module doc).
    pub seals: Vec<(u64, [u8; 64])>,
    /// A mirror's commit: every seal held is written with it, the open block's too (a mirror
    /// cannot sign a lost seal again), and the catch-up target is recorded or cleared.
    pub mirror: bool,
    /// For a mirror whose entries end before the followed log's checkpoint: that checkpoint
    /// ([`Store::catching_up`]); `checkpoint` is then the last one whose tree is stored whole.
    pub catching_up: Option<String>,
    /// The state buckets the batch's rules read ([`BatchReader`]): the commit rewrites the
    /// same buckets and takes them from here instead of reading them again.
    pub buckets: BucketReads,
}

/// The state bucket that holds each record key read, as read (its first key and value; `None`
/// in an empty store). Valid while no other commit lands: the sequencer reads a batch's
/// buckets and commits that batch before it reads for the next one.
#[derive(Default)]
pub struct BucketReads(Mutex<HashMap<Vec<u8>, Option<StoredBucket>>>);

/// A state bucket as stored: its key (the prefix and its first record's key) and value.
type StoredBucket = (sled::IVec, sled::IVec);

/// The store as the sequencer reads it while building a batch: every bucket read is kept in
/// its [`BucketReads`] for the batch's commit.
pub struct BatchReader<'a> {
    store: &'a Store,
    reads: &'a BucketReads,
}

impl<'a> BatchReader<'a> {
    /// Reads `store`, keeping the buckets read in `reads`.
    pub fn new(store: &'a Store, reads: &'a BucketReads) -> Self {
        BatchReader { store, reads }
    }
}

impl StateRead for BatchReader<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        let bucket = self.store.bucket_of(key)?;
        let record = match &bucket {
            Some((_, bytes)) => crate::bucket::find(bytes, key)
                .map_err(StoreError::from)?
                .map(<[u8]>::to_vec),
            None => None,
        };
        lock(&self.reads.0).insert(key.to_vec(), bucket);
        Ok(record)
    }

    fn party_record(&self, name: &str) -> Result<Option<Arc<PartyRecord>>, ReadError> {
        self.store.party_record(name)
    }
}

/// Entries per seal list: those of one node block (one bit each in its mask).
pub const SEAL_BLOCK: u64 = BLOCK_LEAVES;

/// Seal signatures held until their seal list is written: (entry index, signature) by block.
type HeldSeals = std::collections::BTreeMap<u64, Vec<(u64, [u8; 64])>>;

/// Locks `m`, whatever a panicked holder left: for lists of derived data (seal signatures),
/// which stay usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes every key that `items` yields, in batches, then flushes: `items` is asked again
/// after each batch, so that it starts from what is left.
fn remove_all<I>(db: &sled::Db, items: impl Fn() -> I) -> Result<(), StoreError>
where
    I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
{
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in items().take(4096) {
            batch.remove(item?.0);
            n += 1;
        }
        if n == 0 {
            break;
        }
        db.apply_batch(batch)?;
    }
    db.flush()?;
    Ok(())
}

/// The key of a node block's seal list: the block's key, then [`SEALS`].
fn seals_key(block: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..9].copy_from_slice(&block_key(block));
    k[9] = SEALS;
    k
}

/// Decoded party records, each with the party generation (see [`Store::commit`]) it was read at.
type PartyCache = HashMap<String, (u64, Arc<PartyRecord>)>;

/// The lowest level of the Merkle nodes kept in memory once read or written. A node of level
/// 6 or more covers 64 leaves, so there are at most n/64 of them (2.5 MiB of hashes at 10^7
/// entries): an inclusion or consistency proof then reads from sled only the few low siblings
/// near its leaf (in the runs around it) instead of one run per tree level, which keeps proof
/// time flat as the log grows and keeps sled's cache for entries and state.
pub const NODE_CACHE_LEVEL: u8 = 6;

/// Hashes per tile of upper Merkle nodes (2 KiB when full).
pub const TILE_WIDTH: u64 = 64;

/// A block's number and value.
type BlockRecord = (u64, Vec<u8>);

/// A state record's key and value.
pub type StateRecord = (Vec<u8>, Vec<u8>);

/// An entry's bytes with where they are stored: the first index of its run and the number of
/// entries the run holds.
pub type Placed = (u64, u64, sled::IVec);

/// A tile's key and value.
type TileRecord = ([u8; 10], Vec<u8>);

fn tile_key(level: u8, tile: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = b'T';
    k[1] = level;
    k[2..].copy_from_slice(&tile.to_be_bytes());
    k
}

fn block_key(block: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = BLOCK;
    k[1..].copy_from_slice(&block.to_be_bytes());
    k
}

/// Bytes of a seal list's mask.
const MASK: usize = (SEAL_BLOCK / 8) as usize;

/// A seal list: a [`SEAL_BLOCK`]-bit mask of the block's entries that have a seal (bit `i`
/// for its entry `i`), then their signatures in entry order. `seals` are (offset,
/// signature), sorted; the first of an offset counts.
fn seal_list(seals: &[(u64, [u8; 64])]) -> Vec<u8> {
    let mut out = vec![0; MASK];
    for (offset, sig) in seals {
        let (byte, bit) = ((*offset / 8) as usize, 1u8 << (offset % 8));
        if *offset < SEAL_BLOCK && out[byte] & bit == 0 {
            out[byte] |= bit;
            out.extend_from_slice(sig);
        }
    }
    out
}

/// The mask of a seal list and its signatures, checked against each other.
fn seal_list_parts(bytes: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let corrupt = || StoreError::Corrupt(format!("seal list of {} bytes", bytes.len()));
    let (mask, sigs) = bytes.split_at_checked(MASK).ok_or_else(corrupt)?;
    let present: usize = mask.iter().map(|b| b.count_ones() as usize).sum();
    if sigs.len() != present * 64 {
        return Err(corrupt());
    }
    Ok((mask, sigs))
}

/// The signature of entry `offset` of a seal list, if present.
fn seal_list_get(bytes: &[u8], offset: u64) -> Result<Option<[u8; 64]>, StoreError> {
    let (mask, sigs) = seal_list_parts(bytes)?;
    let byte = (offset / 8) as usize;
    if offset >= SEAL_BLOCK || mask[byte] & (1 << (offset % 8)) == 0 {
        return Ok(None);
    }
    let before: usize = mask[..byte]
        .iter()
        .map(|b| b.count_ones() as usize)
        .sum::<usize>()
        + (mask[byte] & ((1u8 << (offset % 8)) - 1)).count_ones() as usize;
    Ok(sigs
        .get(before * 64..before * 64 + 64)
        .and_then(|s| s.try_into().ok()))
}

/// Every signature of a seal list, by offset.
fn seal_list_all(bytes: &[u8]) -> Result<Vec<(u64, [u8; 64])>, StoreError> {
    let (mask, sigs) = seal_list_parts(bytes)?;
    let offsets = (0..SEAL_BLOCK).filter(|o| mask[(o / 8) as usize] & (1 << (o % 8)) != 0);
    Ok(offsets
        .zip(sigs.chunks_exact(64))
        .filter_map(|(o, s)| s.try_into().ok().map(|s| (o, s)))
        .collect())
}

/// A lower node from its block record: a count of the block's leaves (u8), then the complete
/// nodes of each level 0..[`NODE_CACHE_LEVEL`], level by level, left to right.
fn block_node(bytes: &[u8], id: NodeId) -> Option<Hash> {
    let count = *bytes.first()? as usize;
    let level = usize::from(id.level);
    let within = (id.index % (BLOCK_LEAVES >> level)) as usize;
    if id.level >= NODE_CACHE_LEVEL || within >= count >> level {
        return None;
    }
    let at = (0..level).map(|l| count >> l).sum::<usize>() + within;
    bytes.get(1 + 32 * at..1 + 32 * (at + 1))?.try_into().ok()
}

/// The block and run a proof read last.
#[derive(Default)]
struct Near {
    block: Option<(u64, sled::IVec)>,
    run: Option<(u64, Run)>,
}

impl Near {
    /// A node from the run of its last leaf (format 1 stores).
    fn run_node(
        &mut self,
        store: &Store,
        id: NodeId,
        last_leaf: u64,
    ) -> Result<Option<Hash>, StoreError> {
        let holds = |(first, run): &(u64, Run)| {
            (*first..*first + run.n_entries as u64).contains(&last_leaf)
        };
        if !self.run.as_ref().is_some_and(holds) {
            self.run = store.run_of(last_leaf)?;
        }
        Ok(self.run.as_ref().and_then(|(_, run)| run.node(id)))
    }
}

/// The most node hashes kept in memory: 16 MiB of hashes, every node of level
/// [`NODE_CACHE_LEVEL`] and above of a log of up to 1.6·10^7 entries.
const NODE_CACHE_MAX: usize = 1 << 19;

/// Complete node hashes of level [`NODE_CACHE_LEVEL`] and above, one array per level indexed by
/// the node's position: a proof finds each of its upper nodes by indexing, under one read
/// lock, with no hashing. Complete nodes never change, so a hash is never stale.
///
/// A level's array grows to the highest node read or written; once the arrays would pass
/// [`NODE_CACHE_MAX`] hashes a level stops growing and its further nodes are read from their
/// tiles each time (the lower levels first, as the higher ones are smaller and are met first).
#[derive(Default)]
struct NodeCache(RwLock<Levels>);

#[derive(Default)]
struct Levels {
    /// Level [`NODE_CACHE_LEVEL`] + i at i.
    levels: Vec<Level>,
    /// Hashes held by all levels.
    total: usize,
}

#[derive(Default)]
struct Level {
    hashes: Vec<Hash>,
    /// Bit `i` set: `hashes[i]` is known.
    known: Vec<u64>,
}

impl Levels {
    fn get(&self, id: NodeId) -> Option<Hash> {
        let level = self
            .levels
            .get(usize::from(id.level.checked_sub(NODE_CACHE_LEVEL)?))?;
        let i = usize::try_from(id.index).ok()?;
        let word = *level.known.get(i / 64)?;
        (word >> (i % 64) & 1 == 1).then(|| level.hashes[i])
    }

    fn insert(&mut self, id: NodeId, h: Hash) {
        let (Some(l), Ok(i)) = (
            id.level.checked_sub(NODE_CACHE_LEVEL),
            usize::try_from(id.index),
        ) else {
            return;
        };
        let l = usize::from(l);
        if self.levels.len() <= l {
            self.levels.resize_with(l + 1, Level::default);
        }
        let level = &mut self.levels[l];
        if level.hashes.len() <= i {
            // Grow in steps of a tile at least, so that filling a level left to right does
            // not reallocate at every node.
            let len = (i + 1).next_multiple_of(TILE_WIDTH as usize);
            if self.total + (len - level.hashes.len()) > NODE_CACHE_MAX {
                return;
            }
            self.total += len - level.hashes.len();
            level.hashes.resize(len, [0; 32]);
            level.known.resize(len.div_ceil(64), 0);
        }
        level.hashes[i] = h;
        level.known[i / 64] |= 1 << (i % 64);
    }
}

impl NodeCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Levels> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, nodes: impl IntoIterator<Item = (NodeId, Hash)>) {
        let mut levels = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, h) in nodes {
            levels.insert(id, h);
        }
    }
}

/// The sled-backed store of one ledger.
#[derive(Clone)]
pub struct Store {
    /// The open sled database, shared by every clone. `None` only if reopening it failed
    /// (see [`Store::refresh_snapshot`]); replaced only under the write lock, so a read guard
    /// sees the same database throughout.
    db: Arc<RwLock<Option<sled::Db>>>,
    parties: Arc<Mutex<PartyCache>>,
    /// Bumped by every commit that writes a party record: a cached record read at the
    /// current generation is the stored one, without asking sled.
    party_generation: Arc<AtomicU64>,
    nodes: Arc<NodeCache>,
    /// The node block at the log's right edge as the last commit wrote it (block number and
    /// value): every proof against the latest tree size folds that block's partial subtree,
    /// and the next commit extends it, so each would otherwise read it from sled.
    edge: Arc<RwLock<Option<(u64, sled::IVec)>>>,
    /// Seal signatures handed over, by block, until the block is written (see the module doc).
    held_seals: Arc<Mutex<HeldSeals>>,
    /// sled lookups made for entries, nodes and state records, for benchmarks.
    reads: Arc<AtomicU64>,
    /// Held by every writer: state buckets are read, changed and written back. Its count of
    /// owners is also the count of live clones of this store.
    writer: Arc<Mutex<()>>,
    /// The sled directory.
    dir: Arc<std::path::PathBuf>,
}

impl Store {
    /// Opens (or creates) the store in `dir`. sled locks the directory; a process that has
    /// just closed it may hold the lock for a moment longer, so a held lock is retried for up
    /// to two seconds before giving up.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let store = Store {
            db: Arc::new(RwLock::new(Some(open_sled(dir)?))),
            parties: Arc::default(),
            party_generation: Arc::default(),
            nodes: Arc::default(),
            edge: Arc::default(),
            held_seals: Arc::default(),
            reads: Arc::default(),
            writer: Arc::default(),
            dir: Arc::new(dir.to_path_buf()),
        };
        store.upgrade()?;
        // Before the store is shared, so that no commit can race this read.
        let size = store.size()?;
        if size > 0 {
            let edge = store.block((size - 1) / BLOCK_LEAVES)?;
            *store
                .edge
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = edge;
        }
        Ok(store)
    }

    /// The open database, for the length of one operation. No caller may ask for it again
    /// while holding it: a refresh waiting for the write lock would hold the second request
    /// back behind the first, forever.
    fn db(&self) -> Result<Db<'_>, StoreError> {
        let guard = self
            .db
            .read()
            .map_err(|_| StoreError::Corrupt("a store handle panicked".into()))?;
        match guard.as_ref() {
            Some(_) => Ok(Db(guard)),
            None => Err(StoreError::Closed),
        }
    }

    /// Brings a store of an earlier layout to [`FORMAT`]: packs format 1's one-key-per-record
    /// state into buckets. Resumable: the buckets are rebuilt from the old keys until the new
    /// format is recorded, and the old keys are deleted after that (and at any later open that
    /// still finds some). Seal records of the `Q` layout, no longer read, are deleted too.
    fn upgrade(&self) -> Result<(), StoreError> {
        // Runs at open, before the store is shared: one guard throughout.
        let db = self.db()?;
        let old_state = || db.range::<&[u8], _>(&b"a"[..]..&b"{"[..]);
        let format = db.get(META_FORMAT)?.and_then(|v| v.first().copied());
        if let Some(newer) = format.filter(|f| *f > FORMAT) {
            return Err(StoreError::Corrupt(format!(
                "store layout format {newer} is newer than this version reads ({FORMAT}): \
                 run a newer reman-ledger"
            )));
        }
        if format.is_none()
            && db.get(META_SIZE)?.is_some()
            && old_state().next().is_none()
            && db.scan_prefix([BUCKET]).next().is_some()
        {
            // Format 1 keeps its state records under their own keys (the genesis entry makes
            // some), and a conversion records the format in the batch that writes its last
            // bucket: buckets without a format are not a store to convert, whose conversion
            // would drop them.
            return Err(StoreError::Corrupt(
                "the store's layout format record is missing, but it holds state buckets, which only format 2 and later write: not converting it (that would drop them); nothing was changed. Restore the data directory from a backup"
 .into(),
            ));
        }
        if format.is_none() && db.get(META_SIZE)?.is_some() {
            tracing::info!(
                "converting the store to layout format {FORMAT} (packing state records)"
            );
            let mut stale = sled::Batch::default();
            for item in db.scan_prefix([BUCKET]) {
                stale.remove(item?.0);
            }
            db.apply_batch(stale)?;
            let mut batch = sled::Batch::default();
            let mut in_batch = 0;
            let mut start: Vec<u8> = vec![BUCKET];
            let mut bucket = crate::bucket::Bucket::default();
            for item in old_state() {
                let (k, v) = item?;
                if bucket.encoded_len() >= crate::bucket::MAX_BYTES * 3 / 4 {
                    batch.insert(std::mem::take(&mut start), bucket.encode());
                    bucket = crate::bucket::Bucket::default();
                    start = [&[BUCKET], &k[..]].concat();
                    in_batch += 1;
                    if in_batch == 1024 {
                        db.apply_batch(std::mem::take(&mut batch))?;
                        in_batch = 0;
                    }
                }
                bucket.set(&k, Some(v.to_vec()));
            }
            batch.insert(start, bucket.encode());
            batch.insert(META_FORMAT, &[FORMAT]);
            db.apply_batch(batch)?;
            db.flush()?;
        }
        if old_state().next().is_some() {
            remove_all(&db, old_state)?;
        }
        let old_seals = || db.scan_prefix([OLD_SEALS]);
        if old_seals().next().is_some() {
            tracing::info!("removing seal records of an earlier layout (no longer read)");
            remove_all(&db, old_seals)?;
        }
        Ok(())
    }

    /// The log key (vkey) this store was created for, if it has been initialized.
    pub fn log_key(&self) -> Result<Option<String>, StoreError> {
        self.meta_text(META_LOG_KEY, "log key")
    }

    /// A metadata record that is text (`what` names it in the error).
    fn meta_text(&self, key: &[u8], what: &str) -> Result<Option<String>, StoreError> {
        self.db()?
            .get(key)?
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| StoreError::Corrupt(format!("{what} is not UTF-8")))
            })
            .transpose()
    }

    /// The number of entries committed.
    pub fn size(&self) -> Result<u64, StoreError> {
        match self.db()?.get(META_SIZE)? {
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
        self.meta_text(META_CHECKPOINT, "checkpoint")
    }

    /// A mirror catching up: the followed log's checkpoint its stored entries lead to (see
    /// [`Commit::catching_up`]).
    pub fn catching_up(&self) -> Result<Option<String>, StoreError> {
        self.meta_text(META_CATCHING_UP, "catch-up checkpoint")
    }

    /// Why a mirror stopped following, as recorded ([`Store::set_mirror_stopped`]).
    pub fn mirror_stopped(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db()?.get(META_MIRROR_STOPPED)?.map(|v| v.to_vec()))
    }

    /// Records (durably) why a mirror stopped following, or clears it (`None`).
    pub fn set_mirror_stopped(&self, record: Option<&[u8]>) -> Result<(), StoreError> {
        match record {
            Some(r) => self.db()?.insert(META_MIRROR_STOPPED, r)?,
            None => self.db()?.remove(META_MIRROR_STOPPED)?,
        };
        self.flush()
    }

    /// The run holding entry `index`, with the run's first index.
    fn run_of(&self, index: u64) -> Result<Option<(u64, Run)>, StoreError> {
        let Some(next) = index.checked_add(1) else {
            return Ok(None);
        };
        self.reads.fetch_add(1, Ordering::Relaxed);
        let Some((k, v)) = self.db()?.get_lt(run_key(next))? else {
            return Ok(None);
        };
        if k.len() != 9 || k[0] != b'R' {
            return Ok(None);
        }
        let first = u64::from_be_bytes(k[1..9].try_into().unwrap_or_default());
        Ok(Some((first, Run::decode(v)?)))
    }

    /// The first index of the run stored after the one that starts at `first`, if any.
    fn next_run_start(&self, first: u64) -> Result<Option<u64>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .db()?
            .get_gt(run_key(first))?
            .filter(|(k, _)| k.len() == 9 && k[0] == b'R')
            .map(|(k, _)| u64::from_be_bytes(k[1..9].try_into().unwrap_or_default())))
    }

    /// Entry `index` with where it is stored: the first index of its run and the number of
    /// entries the run holds. For audits, which check that runs follow each other without
    /// overlapping, so that every way of reading an entry gives the same bytes.
    pub fn entry_in_run(&self, index: u64) -> Result<Option<Placed>, StoreError> {
        Ok(self.run_of(index)?.and_then(|(first, run)| {
            let bytes = run.entry((index - first) as usize)?;
            Some((first, run.n_entries as u64, bytes))
        }))
    }

    /// The first thing the store keeps beyond a log of `size` entries, in words, if any: a run
    /// of entries past its last entry, a seal kept for an entry it does not hold, an upper
    /// Merkle node of a subtree it does not complete. The ledger writes none; each would be
    /// served, or kept over what the next appends write, as if it belonged to those entries.
    /// (Node blocks hold leaves past their count harmlessly: their count says where they end,
    /// and the next append rewrites them.)
    pub fn kept_beyond(&self, size: u64) -> Result<Option<String>, StoreError> {
        let last_run = match size.checked_sub(1) {
            Some(last) => self.run_of(last)?,
            None => None,
        };
        if let Some((first, run)) = &last_run {
            let end = first + run.n_entries as u64;
            if end > size {
                return Ok(Some(format!(
                    "the run of entries from {first} holds {} entries, up to {}, past the log's last entry {}",
                    run.n_entries,
                    end - 1,
                    size - 1
                )));
            }
        }
        let later = match &last_run {
            Some((first, _)) => self.next_run_start(*first)?,
            None => self
                .db()?
                .scan_prefix(b"R")
                .next()
                .transpose()?
                .map(|(k, _)| {
                    k.get(1..9)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_be_bytes)
                }),
        };
        if let Some(start) = later {
            return Ok(Some(format!(
                "a run of entries from {start} is stored past the log's {size} entries"
            )));
        }
        let block = size / SEAL_BLOCK;
        let from = seals_key(block);
        // Neither loop asks for the database again while it iterates (see `Store::db`).
        for item in self.db()?.range::<&[u8], _>(&from[..]..&[BLOCK + 1][..]) {
            let (k, v) = item?;
            if k.len() != 10 || k[9] != SEALS {
                continue;
            }
            let first = u64::from_be_bytes(k[1..9].try_into().unwrap_or_default()) * SEAL_BLOCK;
            if let Some((offset, _)) = seal_list_all(&v)?
                .into_iter()
                .find(|(o, _)| first + o >= size)
            {
                return Ok(Some(format!(
                    "a seal signature is kept for entry {}, past the log's {size} entries",
                    first + offset
                )));
            }
        }
        for item in self.db()?.scan_prefix(b"T") {
            let (k, v) = item?;
            if k.len() != 10 {
                continue;
            }
            let (level, tile) = (
                k[1],
                u64::from_be_bytes(k[2..10].try_into().unwrap_or_default()),
            );
            let end = tile * TILE_WIDTH + (v.len() / 32) as u64;
            let complete = if level < 64 { size >> level } else { 0 };
            if v.len() % 32 != 0 || end > complete {
                return Ok(Some(format!(
                    "the tile of Merkle nodes {}..{end} at level {level} holds nodes past the {complete} subtrees of that level the log completes",
                    tile * TILE_WIDTH
                )));
            }
        }
        Ok(None)
    }

    /// The exact bytes of entry `index`.
    pub fn entry(&self, index: u64) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self
            .run_of(index)?
            .and_then(|(first, run)| run.entry((index - first) as usize)))
    }

    /// The exact bytes of the entries of `range`, in order, each run read (and unpacked) once:
    /// an entry bundle's 256 entries are 16 runs or so, not 256 reads. Fails if one is missing.
    pub fn entries(&self, range: std::ops::Range<u64>) -> Result<Vec<sled::IVec>, StoreError> {
        let placed = self.entries_placed(range.clone())?;
        let found = range.start + placed.len() as u64;
        if found < range.end {
            return Err(StoreError::Corrupt(format!("entry {found} is missing")));
        }
        Ok(placed.into_iter().map(|(_, _, e)| e).collect())
    }

    /// The entries of `range` from its start, in order, each with where it is stored (as
    /// [`Store::entry_in_run`] gives it), each run read once; stops before the first one
    /// missing.
    pub fn entries_placed(&self, range: std::ops::Range<u64>) -> Result<Vec<Placed>, StoreError> {
        let mut out = Vec::with_capacity(range.end.saturating_sub(range.start) as usize);
        if range.is_empty() {
            return Ok(out);
        }
        let Some(first_run) = self.run_of(range.start)? else {
            return Ok(out);
        };
        // The runs that start inside the range, read at once (no second handle while the
        // iterator holds one: see `Store::db`).
        self.reads.fetch_add(1, Ordering::Relaxed);
        let later: Vec<(sled::IVec, sled::IVec)> = self
            .db()?
            .range(run_key(first_run.0 + 1)..run_key(range.end))
            .collect::<Result<_, _>>()?;
        let starts: Vec<(u64, sled::IVec)> = later
            .into_iter()
            .filter(|(k, _)| k.len() == 9)
            .map(|(k, v)| {
                (
                    u64::from_be_bytes(k[1..9].try_into().unwrap_or_default()),
                    v,
                )
            })
            .collect();
        // Each run is unpacked only when reached, one at a time.
        let mut current = Some(first_run);
        let mut next = range.start;
        let mut i = 0;
        while let Some((first, run)) = current.take() {
            // An entry is read from the run with the greatest start not after it, as
            // [`Store::entry`] reads it, even from a store whose runs overlap (the ledger never
            // writes such runs; `audit` reports them): a bundle serves the bytes a lookup does.
            let end = starts.get(i).map_or(range.end, |(start, _)| *start);
            if next < first {
                break;
            }
            let len = run.n_entries as u64;
            while let Some(e) = (next < end)
                .then(|| run.entry((next - first) as usize))
                .flatten()
            {
                out.push((first, len, e));
                next += 1;
            }
            if next < end {
                break;
            }
            if let Some((start, bytes)) = starts.get(i) {
                current = Some((*start, Run::decode(bytes.clone())?));
            }
            i += 1;
        }
        Ok(out)
    }

    /// A `tlog-tiles` resource of the tree of the first `size` entries ([`crate::tiles`],
    /// SPEC §8): a Merkle tile's hashes back to back, or an entry bundle; `None` when that
    /// tree does not have all of it. `size` must not exceed the stored tree's.
    pub fn tile(&self, tile: &Tile, size: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if !tile.is_in(size) {
            return Ok(None);
        }
        match (tile.kind, tile.entries()) {
            (TileKind::Entries, Some(range)) => {
                let entries = self.entries(range)?;
                let bundle = tiles::encode_bundle(&entries)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(Some(bundle))
            }
            _ => tiles::tile_bytes(tile, size, self).map_err(|e| match e {
                merkle::ReadError::Read(e) => e,
                merkle::ReadError::Merkle(e) => StoreError::Corrupt(e.to_string()),
            }),
        }
    }

    /// The stored hash of a complete subtree.
    pub fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        self.node_near(id, &mut Near::default())
    }

    /// [`Store::node`], reusing the block or run read last (`near`) when it holds the node: a
    /// proof's lower siblings all sit in one block.
    fn node_near(&self, id: NodeId, near: &mut Near) -> Result<Option<Hash>, StoreError> {
        let last_leaf = id
            .index
            .checked_add(1)
            .and_then(|n| n.checked_mul(1u64 << id.level.min(63)))
            .and_then(|n| n.checked_sub(1));
        let Some(last_leaf) = last_leaf.filter(|_| id.level < 64) else {
            return Ok(None);
        };
        if id.level >= NODE_CACHE_LEVEL {
            let cached = self.nodes.read().get(id);
            if let Some(h) = cached {
                return Ok(Some(h));
            }
            if let Some(h) = self.tile_node(id)? {
                return Ok(Some(h));
            }
        } else {
            let block = last_leaf / BLOCK_LEAVES;
            if near.block.as_ref().is_none_or(|(b, _)| *b != block) {
                near.block = self.block(block)?;
            }
            if let Some((_, bytes)) = &near.block {
                return Ok(block_node(bytes, id));
            }
        }
        // Format 1 stores keep lower nodes (and, before tiles, upper ones) in the runs.
        let h = near.run_node(self, id, last_leaf)?;
        if let Some(h) = h.filter(|_| id.level >= NODE_CACHE_LEVEL) {
            self.nodes.insert([(id, h)]);
        }
        Ok(h)
    }

    /// The block records a batch's new lower nodes go to: each touched block rewritten with
    /// its new nodes. A block begun by a format 1 store (its first nodes in the runs) takes
    /// those nodes from the runs.
    fn block_writes(&self, nodes: &[(NodeId, Hash)]) -> Result<Vec<BlockRecord>, StoreError> {
        let mut by_block: std::collections::BTreeMap<u64, HashMap<NodeId, Hash>> =
            std::collections::BTreeMap::new();
        for &(id, h) in nodes.iter().filter(|(id, _)| id.level < NODE_CACHE_LEVEL) {
            let block = (id.index << id.level) / BLOCK_LEAVES;
            by_block.entry(block).or_default().insert(id, h);
        }
        let mut out = Vec::with_capacity(by_block.len());
        for (block, mut new) in by_block {
            let first_new = new
                .keys()
                .filter(|id| id.level == 0)
                .map(|id| id.index)
                .min()
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("block {block}: nodes without their leaves"))
                })?;
            let start = block * BLOCK_LEAVES;
            let old_count = (first_new - start) as usize;
            let stored = self.block(block)?.map(|(_, v)| v);
            let mut near = Near::default();
            for level in 0..NODE_CACHE_LEVEL {
                for i in 0..(old_count >> level) as u64 {
                    let id = NodeId::new(level, (start >> level) + i);
                    let h = match &stored {
                        Some(bytes) => block_node(bytes, id),
                        None => near.run_node(self, id, ((id.index + 1) << level) - 1)?,
                    };
                    let h = h.ok_or(StoreError::MissingNode {
                        level,
                        index: id.index,
                    })?;
                    new.insert(id, h);
                }
            }
            let count = new.keys().filter(|id| id.level == 0).count();
            let mut value = Vec::with_capacity(1 + 32 * 2 * count);
            value.push(count as u8);
            for level in 0..NODE_CACHE_LEVEL {
                for i in 0..(count >> level) as u64 {
                    let index = (start >> level) + i;
                    let h = new
                        .get(&NodeId::new(level, index))
                        .ok_or(StoreError::MissingNode { level, index })?;
                    value.extend_from_slice(h);
                }
            }
            out.push((block, value));
        }
        Ok(out)
    }

    /// A node block as stored: the right edge's from memory, any other from sled.
    fn block(&self, block: u64) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        let edge = self
            .edge
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(kept) = edge.as_ref().filter(|(b, _)| *b == block) {
            return Ok(Some(kept.clone()));
        }
        drop(edge);
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.db()?.get(block_key(block))?.map(|v| (block, v)))
    }

    /// An upper node from its tile, keeping the whole tile in memory.
    fn tile_node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        let tile = id.index / TILE_WIDTH;
        self.reads.fetch_add(1, Ordering::Relaxed);
        let Some(v) = self.db()?.get(tile_key(id.level, tile))? else {
            return Ok(None);
        };
        let hashes: Vec<(NodeId, Hash)> = v
            .chunks_exact(32)
            .zip(tile * TILE_WIDTH..)
            .filter_map(|(h, index)| Some((NodeId::new(id.level, index), h.try_into().ok()?)))
            .collect();
        let found = hashes.iter().find(|(n, _)| *n == id).map(|&(_, h)| h);
        self.nodes.insert(hashes);
        Ok(found)
    }

    /// The tile records a batch's new upper nodes go to: each touched tile with the new
    /// hashes appended. Nodes complete left to right, so a new node extends its tile; a tile
    /// that does not end where the new nodes start (a store from before tiles) is left alone,
    /// and its nodes are read from the runs.
    fn tile_writes(&self, nodes: &[(NodeId, Hash)]) -> Result<Vec<TileRecord>, StoreError> {
        let mut by_tile: std::collections::BTreeMap<(u8, u64), Vec<(u64, Hash)>> =
            std::collections::BTreeMap::new();
        for (id, h) in nodes.iter().filter(|(id, _)| id.level >= NODE_CACHE_LEVEL) {
            by_tile
                .entry((id.level, id.index / TILE_WIDTH))
                .or_default()
                .push((id.index, *h));
        }
        let mut out = Vec::with_capacity(by_tile.len());
        for ((level, tile), mut new) in by_tile {
            new.sort_unstable_by_key(|(index, _)| *index);
            let key = tile_key(level, tile);
            let mut value = self.db()?.get(key)?.map_or_else(Vec::new, |v| v.to_vec());
            let mut next = tile * TILE_WIDTH + (value.len() / 32) as u64;
            match new.first() {
                // Nodes past the tree this tile was written for (damage, or tampering: the
                // ledger writes none) give way to the ones the entries complete.
                Some(&(first, _)) if first < next => {
                    tracing::warn!(
                        level,
                        tile,
                        "a tile of upper Merkle nodes held nodes past the tree: replaced"
                    );
                    value.truncate(((first - tile * TILE_WIDTH) * 32) as usize);
                    next = first;
                }
                Some(&(first, _)) if first > next => continue,
                _ => {}
            }
            for (index, h) in new {
                if index == next {
                    value.extend_from_slice(&h);
                    next += 1;
                }
            }
            out.push((key, value));
        }
        Ok(out)
    }

    /// All raw sled records whose key starts with `prefix`, in key order: the layout itself,
    /// for tests and tools (state records are read with [`Store::scan_state`]).
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> + use<> {
        // Read at once: an iterator left open would keep the database from being reopened.
        let items: Vec<_> = match self.db() {
            Ok(db) => db
                .scan_prefix(prefix)
                .map(|r| r.map_err(StoreError::from))
                .collect(),
            Err(e) => vec![Err(e)],
        };
        items.into_iter()
    }

    /// Writes a batch atomically and flushes it to disk before returning; returns the time
    /// the flush took.
    pub fn commit(&self, c: Commit) -> Result<std::time::Duration, StoreError> {
        let _writer = self
            .writer
            .lock()
            .map_err(|_| StoreError::Corrupt("a writer panicked".into()))?;
        let upper: Vec<(NodeId, Hash)> = c
            .nodes
            .iter()
            .filter(|(id, _)| id.level >= NODE_CACHE_LEVEL)
            .copied()
            .collect();
        let party_prefix = crate::state::key::party("");
        let parties_written = c.state.iter().any(|(k, _)| k.starts_with(&party_prefix));
        let mut b = sled::Batch::default();
        for (key, value) in self.tile_writes(&upper)? {
            b.insert(&key, value);
        }
        let mut edge = None;
        for (block, value) in self.block_writes(&c.nodes)? {
            let value = sled::IVec::from(value);
            b.insert(&block_key(block), value.clone());
            // Blocks come in order: the last one written is the right edge.
            edge = Some((block, value));
        }
        for (first, value) in split_runs(c.entries, Vec::new()) {
            b.insert(&run_key(first), value);
        }
        let held_until = (!c.mirror).then_some(c.size);
        self.seal_writes(self.seals_to_write(c.seals, held_until), &mut b)?;
        self.state_writes(c.state, &c.buckets, &mut b)?;
        b.insert(META_SIZE, &c.size.to_be_bytes());
        b.insert(META_CHECKPOINT, c.checkpoint.as_bytes());
        match (&c.catching_up, c.mirror) {
            (Some(target), _) => b.insert(META_CATCHING_UP, target.as_bytes()),
            (None, true) => b.remove(META_CATCHING_UP),
            (None, false) => {}
        }
        b.insert(META_LOG_KEY, c.log_key.as_bytes());
        b.insert(META_FORMAT, &[FORMAT]);
        self.db()?.apply_batch(b)?;
        if parties_written {
            self.party_generation.fetch_add(1, Ordering::SeqCst);
        }
        let t = std::time::Instant::now();
        self.db()?.flush()?;
        // Only once they are durable: a failed commit leaves nothing behind in memory either.
        self.nodes.insert(upper);
        if edge.is_some() {
            *self
                .edge
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = edge;
        }
        Ok(t.elapsed())
    }

    /// Writes seal signatures (by index) and every seal list held, and flushes them: what a
    /// ledger does when it closes, or opens after a stop without closing (otherwise it writes
    /// a list only once the log has moved past its block).
    pub fn write_seals(&self, seals: Vec<(u64, [u8; 64])>) -> Result<(), StoreError> {
        let _writer = self
            .writer
            .lock()
            .map_err(|_| StoreError::Corrupt("a writer panicked".into()))?;
        let blocks = self.seals_to_write(seals, None);
        if blocks.is_empty() {
            return Ok(());
        }
        let mut b = sled::Batch::default();
        self.seal_writes(blocks, &mut b)?;
        self.db()?.apply_batch(b)?;
        self.flush()
    }

    /// Holds seal signatures in memory until their seal list is written with a later batch.
    pub fn hold_seals(&self, seals: Vec<(u64, [u8; 64])>) {
        let mut held = lock(&self.held_seals);
        for (index, sig) in seals {
            held.entry(index / SEAL_BLOCK)
                .or_default()
                .push((index, sig));
        }
    }

    /// Holds `seals`, then takes out the seal lists to write: those of the blocks that end a
    /// whole block or more before `size` (all their seals are made by then, but for
    /// stragglers, merged when they come), or every one when `None`.
    fn seals_to_write(&self, seals: Vec<(u64, [u8; 64])>, size: Option<u64>) -> HeldSeals {
        self.hold_seals(seals);
        let mut held = lock(&self.held_seals);
        match size {
            Some(size) => {
                let open = (size / SEAL_BLOCK).saturating_sub(1);
                let still_open = held.split_off(&open);
                std::mem::replace(&mut *held, still_open)
            }
            None => std::mem::take(&mut *held),
        }
    }

    /// Adds seal lists to `b`, each merged with what is stored (a signature kept stays). A
    /// stored list that is damaged is replaced, with a warning: seals are derived data, and a
    /// bad one must not stop the log from taking writes (`audit` reports it until then).
    fn seal_writes(&self, blocks: HeldSeals, b: &mut sled::Batch) -> Result<(), StoreError> {
        for (block, seals) in blocks {
            let key = seals_key(block);
            let stored = self.db()?.get(key)?;
            let mut all = match stored.as_deref().map(seal_list_all).transpose() {
                Ok(kept) => kept.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(block, error = %e, "replacing a damaged seal list");
                    Vec::new()
                }
            };
            all.extend(seals.iter().map(|(i, sig)| (i % SEAL_BLOCK, *sig)));
            // Stable: a stored signature stays before a new one for the same entry.
            all.sort_by_key(|(o, _)| *o);
            b.insert(&key, seal_list(&all));
        }
        Ok(())
    }

    /// The kept seal signature of entry `index`, if any (see the module doc).
    pub fn seal_signature(&self, index: u64) -> Result<Option<[u8; 64]>, StoreError> {
        let block = index / SEAL_BLOCK;
        if let Some((_, sig)) = lock(&self.held_seals)
            .get(&block)
            .and_then(|seals| seals.iter().find(|(i, _)| *i == index))
        {
            return Ok(Some(*sig));
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        match self.db()?.get(seals_key(block))? {
            Some(list) => seal_list_get(&list, index % SEAL_BLOCK),
            None => Ok(None),
        }
    }

    /// The kept seal signatures of the entries of `range`, in order (`None` where none is
    /// kept: not a certificate, logged before seals were kept, or in a damaged list), each
    /// block's list read once.
    pub fn seal_signatures(
        &self,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<Option<[u8; 64]>>, StoreError> {
        let mut out = vec![None; range.end.saturating_sub(range.start) as usize];
        if out.is_empty() {
            return Ok(out);
        }
        for block in range.start / SEAL_BLOCK..=(range.end - 1) / SEAL_BLOCK {
            let held: Vec<(u64, [u8; 64])> = lock(&self.held_seals)
                .get(&block)
                .cloned()
                .unwrap_or_default();
            self.reads.fetch_add(1, Ordering::Relaxed);
            // A damaged list keeps nothing here: readers sign again or ask elsewhere (audit
            // names the damage), rather than every range over it failing.
            let stored = match self.db()?.get(seals_key(block))?.map(|l| seal_list_all(&l)) {
                Some(Ok(list)) => list
                    .into_iter()
                    .map(|(offset, sig)| (block * SEAL_BLOCK + offset, sig))
                    .collect(),
                Some(Err(e)) => {
                    tracing::warn!(block, error = %e, "a damaged seal list is read as empty");
                    Vec::new()
                }
                None => Vec::new(),
            };
            for (index, sig) in stored.into_iter().chain(held) {
                if range.contains(&index) {
                    out[(index - range.start) as usize].get_or_insert(sig);
                }
            }
        }
        Ok(out)
    }

    /// The bucket holding `key` (the one with the greatest start not after it): its storage
    /// key and value.
    fn bucket_of(&self, key: &[u8]) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        let mut probe = Vec::with_capacity(key.len() + 2);
        probe.push(BUCKET);
        probe.extend_from_slice(key);
        probe.push(0);
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .db()?
            .get_lt(probe)?
            .filter(|(k, _)| k.first() == Some(&BUCKET)))
    }

    /// One state record.
    fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((_, bytes)) = self.bucket_of(key)? else {
            return Ok(None);
        };
        Ok(crate::bucket::find(&bytes, key)?.map(<[u8]>::to_vec))
    }

    /// Every state record whose key starts with `prefix`, in key order, each once.
    ///
    /// The buckets are read one by one, not as one snapshot (sled's iterators are not), so a
    /// commit landing mid-scan can split a bucket already read: the records it moved to the new
    /// bucket after it are then met a second time, and skipped. (sled reads a node's keys as
    /// one copy and separates nodes by a shortened key, so the new bucket is seen when it
    /// falls in the next node.) Records only move to later buckets, so none present
    /// throughout the scan is missed.
    pub fn scan_state(&self, prefix: &[u8]) -> Result<Vec<StateRecord>, StoreError> {
        let Some((start, first)) = self.bucket_of(prefix)? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<StateRecord> = Vec::new();
        // Most prefixes (a certificate's history: usually nothing) end inside the bucket that
        // holds their start, already read: no iterator is needed then.
        if collect_prefixed(&first, prefix, &mut out)? {
            return Ok(out);
        }
        use std::ops::Bound;
        for item in self
            .db()?
            .range::<&[u8], _>((Bound::Excluded(&start[..]), Bound::Unbounded))
        {
            let (k, v) = item?;
            // Past the buckets, or past every bucket that can hold the prefix.
            if k.first() != Some(&BUCKET) || (k[1..] > *prefix && !k[1..].starts_with(prefix)) {
                break;
            }
            if collect_prefixed(&v, prefix, &mut out)? {
                break;
            }
        }
        Ok(out)
    }

    /// Calls `f` with every state record, in key order, as lookups find them, until it breaks
    /// (for audits, which compare them with a replay of the log). A record a lookup would not
    /// find, because its bucket's key range does not hold it, is reported as corruption, not
    /// visited: a bucket holds the keys from its own key to the next bucket's, sorted. sled's
    /// iterator reads on while the store may be closed or refreshed: for an offline audit.
    pub fn visit_state(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let buckets = self.db()?.scan_prefix([BUCKET]);
        let mut current: Option<(sled::IVec, sled::IVec)> = None;
        for next in buckets.map(Some).chain([None]) {
            let next = next.transpose()?;
            if let Some((start, bytes)) = current.take() {
                let end = next.as_ref().map(|(k, _)| &k[1..]);
                for r in crate::bucket::records(&bytes) {
                    let (k, v) = r?;
                    if k < &start[1..] || end.is_some_and(|end| k >= end) {
                        return Err(StoreError::Corrupt(format!(
                            "state record {} is stored outside its bucket's key range, where lookups do not find it",
                            String::from_utf8_lossy(k)
                        )));
                    }
                    if f(k, v).is_break() {
                        return Ok(());
                    }
                }
            }
            current = next;
        }
        Ok(())
    }

    /// Adds a batch's state writes to `b`: each touched bucket read, changed, split when it
    /// outgrew its size, and written back. The last write of a key wins.
    fn state_writes(
        &self,
        writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        read: &BucketReads,
        b: &mut sled::Batch,
    ) -> Result<(), StoreError> {
        use crate::bucket::Bucket;
        for (k, v) in &writes {
            crate::bucket::check_record(k, v.as_deref())?;
        }
        // Each written key with the bucket that holds it (as the batch's rules read it, or
        // read now), grouped by bucket: one rewrite per bucket.
        let read = lock(&read.0);
        let mut by_bucket: std::collections::BTreeMap<Vec<u8>, (Bucket, Vec<Write>)> =
            std::collections::BTreeMap::new();
        for (key, value) in writes {
            let bucket = match read.get(&key) {
                Some(bucket) => bucket.clone(),
                None => self.bucket_of(&key)?,
            };
            let (start, bytes) = match bucket {
                Some((start, bytes)) => (start.to_vec(), Some(bytes)),
                None => (vec![BUCKET], None),
            };
            match by_bucket.entry(start) {
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    e.get_mut().1.push((key, value))
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    let bucket = match bytes {
                        Some(bytes) => Bucket::decode(&bytes)?,
                        None => Bucket::default(),
                    };
                    e.insert((bucket, vec![(key, value)]));
                }
            }
        }
        for (start, (mut bucket, writes)) in by_bucket {
            for (k, v) in writes {
                bucket.set(&k, v);
            }
            for (i, part) in bucket.split().into_iter().enumerate() {
                match part.first_key() {
                    _ if i == 0 && part.is_empty() && start.len() > 1 => b.remove(start.clone()),
                    _ if i == 0 => b.insert(start.clone(), part.encode()),
                    Some(first) => b.insert([&[BUCKET], first].concat(), part.encode()),
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// How many sled lookups this store (and its clones) made for entries, Merkle nodes and
    /// state records so far: what a read costs, beside its time, in benchmarks.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Bytes on disk (sled's own estimate).
    pub fn disk_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.db()?.size_on_disk()?)
    }

    /// Overwrites an entry's bytes with no check at all. For repair tooling and for tests that
    /// prove `audit` catches tampering; the ledger itself never calls it.
    pub fn raw_put_entry(&self, index: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let missing = || StoreError::Corrupt(format!("no entry {index}"));
        let (first, run) = self.run_of(index)?.ok_or_else(missing)?;
        let mut entries = run.entries();
        let slot = entries
            .get_mut((index - first) as usize)
            .ok_or_else(missing)?;
        *slot = bytes.to_vec();
        self.db()?
            .insert(run_key(first), Run::encode(&entries, &mut run.nodes()))?;
        self.db()?.flush()?;
        Ok(())
    }

    /// Stores `value` as the state record under `key` (or deletes it), in the bucket where
    /// lookups find it, with no check at all (see [`Store::raw_put_entry`]).
    pub fn raw_put_state(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        let write = vec![(key.to_vec(), value.map(<[u8]>::to_vec))];
        self.state_writes(write, &BucketReads::default(), &mut b)?;
        self.db()?.apply_batch(b)?;
        self.db()?.flush()?;
        Ok(())
    }

    /// Keeps `signature` as the seal signature of entry `index` (or none), with no check at
    /// all (see [`Store::raw_put_entry`]).
    pub fn raw_put_seal(&self, index: u64, signature: Option<[u8; 64]>) -> Result<(), StoreError> {
        let key = seals_key(index / SEAL_BLOCK);
        let mut seals = match self.db()?.get(key)? {
            Some(stored) => seal_list_all(&stored)?,
            None => Vec::new(),
        };
        let offset = index % SEAL_BLOCK;
        seals.retain(|(o, _)| *o != offset);
        seals.extend(signature.map(|s| (offset, s)));
        seals.sort_by_key(|(o, _)| *o);
        self.db()?.insert(key, seal_list(&seals))?;
        self.db()?.flush()?;
        Ok(())
    }

    /// Deletes the entries from `index` on and their kept seals (stored or held), keeping
    /// everything else (tree size, checkpoint, nodes), with no check at all (see
    /// [`Store::raw_put_entry`]).
    pub fn raw_truncate_entries(&self, index: u64) -> Result<(), StoreError> {
        while let Some((first, run)) = self.run_of(u64::MAX - 1)? {
            let last = first + run.n_entries as u64;
            if last <= index {
                break;
            }
            if first >= index {
                self.db()?.remove(run_key(first))?;
            } else {
                let mut entries = run.entries();
                entries.truncate((index - first) as usize);
                self.db()?
                    .insert(run_key(first), Run::encode(&entries, &mut run.nodes()))?;
            }
        }
        // And their seals: entries appended there later must not meet them. Read at once: no
        // second handle is asked for while one is held (see `Store::db`).
        let from = seals_key(index / SEAL_BLOCK);
        let lists: Vec<(sled::IVec, sled::IVec)> = self
            .db()?
            .range(from..seals_key(u64::MAX))
            .filter(|item| {
                item.as_ref()
                    .map_or(true, |(key, _)| key.len() == from.len())
            })
            .collect::<Result<_, _>>()?;
        for (key, list) in lists {
            let start = u64::from_be_bytes(key[1..9].try_into().unwrap_or_default()) * SEAL_BLOCK;
            let kept: Vec<(u64, [u8; 64])> = seal_list_all(&list)?
                .into_iter()
                .filter(|(o, _)| start + o < index)
                .collect();
            if kept.is_empty() {
                self.db()?.remove(key)?;
            } else {
                self.db()?.insert(key, seal_list(&kept))?;
            }
        }
        lock(&self.held_seals).retain(|_, seals| {
            seals.retain(|(i, _)| *i < index);
            !seals.is_empty()
        });
        self.db()?.flush()?;
        Ok(())
    }

    /// Flushes and closes the store. When this is its last handle, it is opened once more
    /// and closed again: sled writes its recovery snapshot only when it opens, so without this
    /// the next open would replay everything written since the previous open (seconds after
    /// millions of appends, BENCHMARKS.md); with it, a restart after a clean shutdown reads the
    /// snapshot only. Returns how long that took.
    pub fn close(self) -> Result<std::time::Duration, StoreError> {
        self.db()?.flush()?;
        let last = Arc::strong_count(&self.writer) == 1;
        let dir = self.dir.clone();
        drop(self);
        let t = std::time::Instant::now();
        if last {
            tracing::info!("writing sled's recovery snapshot, so that the next open is quick");
            drop(Store::open(&dir)?);
            tracing::info!("recovery snapshot written in {:.1?}", t.elapsed());
        }
        Ok(t.elapsed())
    }

    /// Leaves sled a fresh recovery snapshot while the store stays in use, by closing and
    /// reopening it under the write lock: sled 0.34 writes its snapshot only when it opens,
    /// and after a crash it replays everything written since (≈ 1.5 µs per entry,
    /// BENCHMARKS.md), so a ledger that never restarted would replay its whole history. Reads
    /// and writes of every clone wait meanwhile, as long as that replay and an open take.
    /// Returns how long it took. If sled cannot be reopened, the store is closed for good
    /// ([`StoreError::Closed`]) and the error says why.
    pub fn refresh_snapshot(&self) -> Result<std::time::Duration, StoreError> {
        let _writer = self
            .writer
            .lock()
            .map_err(|_| StoreError::Corrupt("a writer panicked".into()))?;
        let mut db = self
            .db
            .write()
            .map_err(|_| StoreError::Corrupt("a store handle panicked".into()))?;
        let t = std::time::Instant::now();
        match db.as_ref() {
            Some(open) => open.flush()?,
            None => return Err(StoreError::Closed),
        };
        // The last handle: dropping it closes sled and releases the directory's lock.
        drop(db.take());
        match open_sled(&self.dir) {
            Ok(reopened) => *db = Some(reopened),
            // Its own lock, which sled's threads had not released yet: not another process's.
            Err(StoreError::InUse(_)) => {
                tracing::error!(
                    "sled could not be reopened: the lock on its directory was still held 2 s after it was closed; the store is closed"
                );
                return Err(StoreError::Closed);
            }
            Err(e) => {
                tracing::error!(error = %e, "sled could not be reopened; the store is closed");
                return Err(e);
            }
        }
        Ok(t.elapsed())
    }

    /// Flushes everything written so far.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db()?.flush()?;
        Ok(())
    }
}

/// Splits a batch into runs of at most [`RUN_LEN`] entries, each with the nodes its leaves
/// completed: (first index, the run as stored).
fn split_runs(entries: Vec<(u64, Vec<u8>)>, nodes: Vec<(NodeId, Hash)>) -> Vec<(u64, Vec<u8>)> {
    /// A run being filled: first index, entries, completed nodes.
    type Pending = (u64, Vec<Vec<u8>>, Vec<(NodeId, Hash)>);
    let mut runs: Vec<Pending> = Vec::new();
    let mut run_bytes = 0;
    for (i, bytes) in entries {
        match runs.last_mut() {
            Some((first, es, _))
                if *first + es.len() as u64 == i && es.len() < RUN_LEN && run_bytes < RUN_BYTES =>
            {
                run_bytes += bytes.len();
                es.push(bytes)
            }
            _ => {
                run_bytes = bytes.len();
                runs.push((i, vec![bytes], Vec::new()))
            }
        }
    }
    for (id, h) in nodes {
        let last_leaf = ((id.index + 1) << id.level) - 1;
        let pos = runs.partition_point(|(first, _, _)| *first <= last_leaf);
        if let Some((_, _, ns)) = pos.checked_sub(1).and_then(|p| runs.get_mut(p)) {
            ns.push((id, h));
        }
    }
    runs.into_iter()
        .map(|(first, es, mut ns)| (first, Run::encode_stored(&es, &mut ns)))
        .collect()
}

impl HashReader for Store {
    type Error = StoreError;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        let mut near = Near::default();
        let mut out = Vec::with_capacity(ids.len());
        // The upper nodes of a proof are usually all in memory: one read lock for them all,
        // let go before anything is read from sled (which inserts what it reads).
        let mut missing = Vec::new();
        {
            let cached = self.nodes.read();
            for (k, &id) in ids.iter().enumerate() {
                match cached.get(id) {
                    Some(h) => out.push(h),
                    None => {
                        out.push([0; 32]);
                        missing.push(k);
                    }
                }
            }
        }
        for k in missing {
            let id = ids[k];
            out[k] = self
                .node_near(id, &mut near)?
                .ok_or(StoreError::MissingNode {
                    level: id.level,
                    index: id.index,
                })?;
        }
        Ok(out)
    }
}

impl StateRead for Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self.state_get(key)?)
    }

    /// Party records are read twice for every submission and change rarely: each is read
    /// from sled and decoded once per party generation.
    fn party_record(&self, name: &str) -> Result<Option<Arc<PartyRecord>>, ReadError> {
        let poisoned = || ReadError("party cache poisoned".into());
        // Read before sled: a record read while a commit lands is kept under the old
        // generation, so the next read after the bump asks sled again.
        let generation = self.party_generation.load(Ordering::SeqCst);
        if let Some((_, rec)) = self
            .parties
            .lock()
            .map_err(|_| poisoned())?
            .get(name)
            .filter(|(g, _)| *g == generation)
        {
            return Ok(Some(rec.clone()));
        }
        let k = crate::state::key::party(name);
        let Some(raw) = self.state_get(&k)? else {
            return Ok(None);
        };
        let rec = Arc::new(crate::state::decode_party(&k, &raw)?);
        self.parties
            .lock()
            .map_err(|_| poisoned())?
            .insert(name.to_owned(), (generation, rec.clone()));
        Ok(Some(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(i: u64) -> [u8; 64] {
        [i as u8; 64]
    }

    #[test]
    fn sled_io_errors_are_said_as_the_system_says_them() {
        use std::io::{Error, ErrorKind};
        let efbig = r#"Os { code: 27, kind: FileTooLarge, message: "File too large" }"#;
        let e = StoreError::from(sled::Error::Io(Error::new(ErrorKind::FileTooLarge, efbig)));
        assert_eq!(
            e.to_string(),
            "storage error: I/O error: File too large (os error 27): free disk space or raise the file-size limit, then restart"
        );
        let eacces = r#"Os { code: 13, kind: PermissionDenied, message: "Permission denied" }"#;
        let e = StoreError::from(sled::Error::Io(Error::new(
            ErrorKind::PermissionDenied,
            eacces,
        )));
        assert_eq!(
            e.to_string(),
            "storage error: I/O error: Permission denied (os error 13)"
        );
        // Not in that form: kept as it is.
        let e = StoreError::from(sled::Error::Io(Error::other("could not acquire lock")));
        assert_eq!(
            e.to_string(),
            "storage error: I/O error: could not acquire lock"
        );
        let e = StoreError::from(sled::Error::Unsupported("a thing".into()));
        assert!(e.to_string().contains("a thing"), "{e}");
    }

    #[test]
    fn the_node_cache_finds_what_it_was_given_and_nothing_else() {
        let mut levels = Levels::default();
        let h = |n: u8| [n; 32];
        levels.insert(NodeId::new(NODE_CACHE_LEVEL, 5), h(1));
        levels.insert(NodeId::new(NODE_CACHE_LEVEL + 3, 0), h(2));
        // Below the cached levels: not kept.
        levels.insert(NodeId::new(NODE_CACHE_LEVEL - 1, 7), h(3));
        assert_eq!(levels.get(NodeId::new(NODE_CACHE_LEVEL, 5)), Some(h(1)));
        assert_eq!(levels.get(NodeId::new(NODE_CACHE_LEVEL + 3, 0)), Some(h(2)));
        for absent in [
            NodeId::new(NODE_CACHE_LEVEL, 4),
            NodeId::new(NODE_CACHE_LEVEL, 6),
            NodeId::new(NODE_CACHE_LEVEL, 1 << 40),
            NodeId::new(NODE_CACHE_LEVEL + 1, 5),
            NodeId::new(NODE_CACHE_LEVEL - 1, 7),
            NodeId::new(63, u64::MAX),
        ] {
            assert_eq!(levels.get(absent), None, "{absent:?}");
        }
    }

    #[test]
    fn the_node_cache_stops_growing_at_its_limit_and_keeps_what_it_has() {
        let mut levels = Levels::default();
        let top = NODE_CACHE_MAX as u64 - 1;
        levels.insert(NodeId::new(NODE_CACHE_LEVEL, top), [1; 32]);
        assert_eq!(levels.total, NODE_CACHE_MAX);
        // A node past the limit, on this level or another, is not kept.
        levels.insert(NodeId::new(NODE_CACHE_LEVEL, top + 1), [2; 32]);
        levels.insert(NodeId::new(NODE_CACHE_LEVEL + 1, 0), [3; 32]);
        assert_eq!(levels.total, NODE_CACHE_MAX);
        assert_eq!(
            levels.get(NodeId::new(NODE_CACHE_LEVEL, top)),
            Some([1; 32])
        );
        assert_eq!(levels.get(NodeId::new(NODE_CACHE_LEVEL, top + 1)), None);
        assert_eq!(levels.get(NodeId::new(NODE_CACHE_LEVEL + 1, 0)), None);
        // Within what the level already holds, nodes still get in.
        levels.insert(NodeId::new(NODE_CACHE_LEVEL, 0), [4; 32]);
        assert_eq!(levels.get(NodeId::new(NODE_CACHE_LEVEL, 0)), Some([4; 32]));
    }

    #[test]
    fn a_seal_list_finds_each_signature_by_entry_offset() {
        let seals = [
            (0, sig(10)),
            (5, sig(15)),
            (9, sig(19)),
            (40, sig(20)),
            (63, sig(25)),
        ];
        let list = seal_list(&seals);
        assert_eq!(list.len(), MASK + 5 * 64);
        assert_eq!(seal_list_all(&list).unwrap(), seals);
        for (offset, want) in [(0, Some(10)), (5, Some(15)), (9, Some(19)), (40, Some(20))]
            .into_iter()
            .chain([(63, Some(25)), (1, None), (8, None), (62, None), (64, None)])
        {
            let got = seal_list_get(&list, offset).unwrap();
            assert_eq!(got, want.map(sig), "offset {offset}");
        }
    }

    #[test]
    fn a_seal_list_sorts_right_after_its_node_block_and_before_the_next() {
        for block in [0, 1, 255, 256, u64::MAX - 1] {
            assert!(block_key(block)[..] < seals_key(block)[..]);
            assert!(seals_key(block)[..] < block_key(block + 1)[..]);
        }
    }

    #[test]
    fn a_seal_list_whose_length_disagrees_with_its_mask_is_corrupt() {
        let good = seal_list(&[(0, sig(0)), (9, sig(9))]);
        assert_eq!(good.len(), MASK + 2 * 64);
        for bad in [
            &good[..MASK - 1],
            &good[..good.len() - 1],
            &[good.clone(), vec![0; 64]].concat()[..],
        ] {
            let e = seal_list_get(bad, 0).unwrap_err().to_string();
            assert!(e.contains("storage is corrupt: seal list"), "{e}");
        }
    }

    fn entry_like(i: usize) -> Vec<u8> {
        format!(
            r#"{{"v":1,"index":{i},"integrated_time":"2026-11-29T03:30:14.547Z","envelope":{{"payloadType":"application/vnd.reman-ledger.certificate.v1+json","payload":"eyJwcm9kdWN0Ijp7Imd0aW4iOiIwOTUwNjAwOTAwMDAwOSJ9","signatures":[{{"keyid":"suzhou-reman.example+1234abcd"}}]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_run_of_similar_entries_is_stored_compressed_and_reads_back() {
        let entries: Vec<Vec<u8>> = (0..16).map(entry_like).collect();
        let stored = Run::encode_stored(&entries, &mut []);
        assert_eq!(stored[0], RUN_LZ4);
        assert!(stored.len() < Run::encode(&entries, &mut []).len() / 2);
        let run = Run::decode(stored.into()).unwrap();
        assert_eq!(run.entries(), entries);
    }

    #[test]
    fn a_run_that_does_not_shrink_by_an_eighth_stays_plain() {
        // Bytes with no repetition for LZ4 to find.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect();
        let stored = Run::encode_stored(std::slice::from_ref(&noise), &mut []);
        assert_eq!(stored[0], 0, "a plain run starts with its entry count");
        assert_eq!(stored, Run::encode(std::slice::from_ref(&noise), &mut []));
        assert_eq!(Run::decode(stored.into()).unwrap().entries(), vec![noise]);
    }

    #[test]
    fn entries_of_a_run_read_alike_from_plain_and_compressed_bytes() {
        let entries: Vec<Vec<u8>> = (0..16).map(entry_like).collect();
        let plain = Run::decode(Run::encode(&entries, &mut []).into()).unwrap();
        let packed = Run::decode(Run::encode_stored(&entries, &mut []).into()).unwrap();
        assert!(matches!(plain.bytes, RunBytes::Stored(_)));
        assert!(matches!(packed.bytes, RunBytes::Unpacked(_)));
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(plain.entry(i).as_deref(), Some(&e[..]));
            assert_eq!(packed.entry(i).as_deref(), Some(&e[..]));
        }
        assert_eq!(plain.entry(16), None);
        assert_eq!(packed.entry(16), None);
    }

    #[test]
    fn an_entry_whose_offsets_run_backwards_or_past_the_run_is_not_read() {
        let entries: Vec<Vec<u8>> = (0..3).map(entry_like).collect();
        let good = Run::encode(&entries, &mut []);
        // The second entry's end offset (after the two counts and the first end) set below the
        // first's end, then beyond the run; the last end stays right, so the run decodes.
        for bad_end in [1u32, u32::MAX / 2] {
            let mut bytes = good.clone();
            bytes[12..16].copy_from_slice(&bad_end.to_be_bytes());
            let run = Run::decode(bytes.into()).unwrap();
            assert_eq!(run.entry(0).as_deref(), Some(&entries[0][..]));
            assert_eq!(run.entry(1), None, "end {bad_end}");
            assert_eq!(run.entries().len(), 1 + usize::from(bad_end == 1));
        }
    }
}

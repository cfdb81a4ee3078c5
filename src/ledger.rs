//! The sequencer: admits signed submissions and appends them to the log in group commits.
//!
//! Admission runs in the submitter's own thread and does the cheap checks first (size, envelope
//! and payload parsing, the signer's registration and role), then the Ed25519 signature, so that
//! forged input costs little and verification uses every core. Admitted submissions queue for
//! one sequencer thread, which takes everything waiting as one batch: it applies the business
//! rules in order (each submission sees the earlier ones of its batch), builds the entries and
//! Merkle nodes, signs one checkpoint, then writes the whole batch atomically and flushes it
//! before answering anyone. Each answer carries what SPEC §6 says for `POST /api/v1/entries`;
//! a certificate's seal is signed for it in the submitter's thread, and the sequencer keeps
//! that signature with its next batch, so that lookups serve it without signing again.

use crate::certificate::CertificateId;
use crate::checkpoint::Checkpoint;
use crate::dsse::{DsseError, Envelope};
use crate::entry::{Entry, MAX_ENTRY_BYTES, format_time_ms};
use crate::keys::{PrivateKey, PublicKey};
use crate::merkle::{self, Hash, TreeBuilder};
use crate::payload::{self, Payload, PayloadError, PayloadType};
use crate::seal::{self, Seal};
use crate::state::{self, Accepted, Overlay, RefusalKind, RuleError};
use crate::store::{Commit, Store, StoreError, lock};
use serde::Serialize;
use sha2::Digest as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest submission body accepted: enough for a 32 KiB payload in base64 and its envelope.
pub const MAX_SUBMISSION_BYTES: usize = 64 * 1024;

/// The largest number of submissions sequenced in one group commit.
pub const DEFAULT_MAX_BATCH: usize = 4096;

/// The default [`LedgerConfig::snapshot_every`]: a crash then replays at most 10^6 entries'
/// writes (≈ 1.2–1.5 µs each, BENCHMARKS.md), and the pause of a refresh (an open that replays
/// them: 1.2–1.8 s measured from 10^6 to 3·10^6 entries) comes at most every 10^6 appends.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1_000_000;

/// The default [`LedgerConfig::linger`].
pub const DEFAULT_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// Why a ledger could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `init` on a directory that already holds a ledger.
    #[error("{0} already holds a ledger; open it instead of initializing it")]
    AlreadyInitialized(String),
    /// `open` on a directory that holds no ledger.
    #[error("{0} holds no ledger; run `reman-ledger init` first")]
    NotInitialized(String),
    /// The log key given is not the one the ledger was created with.
    #[error("this ledger belongs to log key {stored}, not {given}")]
    WrongLogKey {
        /// The stored log key.
        stored: String,
        /// The key given.
        given: String,
    },
    /// The stored tree or checkpoint does not match.
    #[error("ledger storage is inconsistent: {0}; run `reman-ledger audit` on it")]
    Inconsistent(String),
    /// The genesis entry was refused.
    #[error("genesis entry refused: {0}")]
    Genesis(#[from] Box<SubmitError>),
}

/// Why a submission was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The body is larger than [`MAX_SUBMISSION_BYTES`].
    #[error("submission of {0} bytes exceeds the limit of 65536 bytes")]
    TooLarge(usize),
    /// The envelope is malformed.
    #[error("malformed envelope: {0}")]
    Envelope(#[source] DsseError),
    /// The payload is malformed or invalid.
    #[error("{0}")]
    Payload(#[from] PayloadError),
    /// The signature does not verify under the signer's registered key.
    #[error("bad signature: {0}")]
    BadSignature(#[source] DsseError),
    /// The state refuses it (unknown signer, role, duplicate, revoked, ...).
    #[error("{0}")]
    Rule(#[from] RuleError),
    /// The resulting entry would exceed the entry size limit.
    #[error("the entry would be {0} bytes, over the limit of 65535 bytes")]
    EntryTooLarge(usize),
    /// Storage failed before the submission was acknowledged. Its batch may still have
    /// reached the disk: submitting it again once the ledger is back answers its entry.
    #[error(
        "not acknowledged, storage failed: {0}. It may have been logged all the same: submit it again once the ledger is back (a resubmission is answered with its entry)"
    )]
    Store(String),
    /// The ledger is shutting down.
    #[error("the ledger is shutting down; submit again later")]
    Closed,
    /// A storage failure stopped the ledger from accepting writes.
    #[error("the ledger stopped accepting writes after a storage failure; restart it")]
    Halted,
    /// This ledger is a read-only mirror of another one (SPEC §8).
    #[error("this is a read-only mirror: submit to the ledger it mirrors")]
    Mirror,
}

impl SubmitError {
    /// The class of the refusal, which gives the HTTP status of SPEC §6.
    pub fn kind(&self) -> RefusalKind {
        match self {
            SubmitError::TooLarge(_)
            | SubmitError::EntryTooLarge(_)
            | SubmitError::Envelope(DsseError::PayloadTooLarge(_))
            | SubmitError::Payload(PayloadError::TooLarge { .. }) => RefusalKind::TooLarge,
            SubmitError::Envelope(_) => RefusalKind::Malformed,
            SubmitError::Payload(e) if e.is_malformed() => RefusalKind::Malformed,
            SubmitError::Payload(_) => RefusalKind::Invalid,
            SubmitError::BadSignature(_) => RefusalKind::Unauthorized,
            SubmitError::Rule(e) => e.kind(),
            SubmitError::Mirror => RefusalKind::ReadOnly,
            SubmitError::Store(_) | SubmitError::Closed | SubmitError::Halted => {
                RefusalKind::Internal
            }
        }
    }
}

/// An inclusion proof against the checkpoint returned beside it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InclusionProof {
    /// The tree size of the checkpoint.
    pub tree_size: u64,
    /// The checkpoint's root hash.
    #[serde(with = "hex_hash")]
    pub root: Hash,
    /// The RFC 9162 proof path.
    #[serde(with = "hex_hashes")]
    pub proof: Vec<Hash>,
}

/// The ledger's answer to a submission (SPEC §6, `POST /api/v1/entries`).
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    /// True when this submission created the entry (201), false when it was already logged (200).
    #[serde(skip)]
    pub created: bool,
    /// What was submitted (for metrics; not part of the answer).
    #[serde(skip)]
    pub payload_type: PayloadType,
    /// The entry index.
    pub index: u64,
    /// The entry's leaf hash.
    #[serde(with = "hex_hash")]
    pub leaf_hash: Hash,
    /// When the log sequenced it.
    pub integrated_time: String,
    /// The certificate ID, for certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<CertificateId>,
    /// The seal (base64url), for certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
    /// The QR content, for certificates, when the ledger knows its base URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_url: Option<String>,
    /// For a certificate, its status now: `valid`, or, answering again a certificate logged
    /// before, `revoked` or `superseded` (its label would scan as such).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<state::CertStatus>,
    /// For a party registration, whether it is the registration in force now: answering
    /// again one logged before, `false` when a later registration replaced it (logging the
    /// same envelope again changes nothing; a new registration needs another payload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_force: Option<bool>,
    /// The signed checkpoint the proof is against.
    pub checkpoint: String,
    /// The inclusion proof of the entry in that checkpoint.
    pub inclusion_proof: InclusionProof,
}

/// A hash as lowercase hex in `buf`, without allocating (answers carry a few dozen hashes).
fn hex32<'a>(h: &[u8; 32], buf: &'a mut [u8; 64]) -> &'a str {
    // 32 bytes always fit 64 hex digits, which are ASCII.
    let _ = hex::encode_to_slice(h, buf);
    std::str::from_utf8(buf).unwrap_or_default()
}

/// Serde helpers: hashes as lowercase hex in JSON.
pub mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};
    /// Writes a hash as hex.
    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::hex32(h, &mut [0; 64]))
    }
    /// Reads a hash from hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut h = [0u8; 32];
        hex::decode_to_slice(&s, &mut h).map_err(serde::de::Error::custom)?;
        Ok(h)
    }
}

/// Serde helpers: lists of hashes as lowercase hex in JSON.
pub mod hex_hashes {
    use serde::Serializer;
    use serde::ser::SerializeSeq;
    /// Writes hashes as hex strings.
    pub fn serialize<S: Serializer>(hs: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(hs.len()))?;
        let mut buf = [0; 64];
        for h in hs {
            seq.serialize_element(super::hex32(h, &mut buf))?;
        }
        seq.end()
    }
}

/// The latest committed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed checkpoint text.
    pub checkpoint: Arc<str>,
}

/// Options of a running ledger.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Base URL of the QR links (`<base_url>/01/...`); no QR URL in answers when `None`.
    pub base_url: Option<String>,
    /// The largest group commit.
    pub max_batch: usize,
    /// How long the sequencer waits for more submissions before committing a batch, while
    /// other submissions are still being checked (signature verification in progress): under
    /// load one flush and one checkpoint signature then serve more entries; a lone submission
    /// never waits. Zero commits at once.
    pub linger: std::time::Duration,
    /// After how many entries appended since the store was opened (or last refreshed) the
    /// sequencer has sled write a fresh recovery snapshot ([`Store::refresh_snapshot`]), so
    /// that a crash replays at most about this many entries' writes at the next open. Writes
    /// and reads pause meanwhile, about as long as that open after a crash would take. Zero
    /// never refreshes.
    pub snapshot_every: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            base_url: None,
            max_batch: DEFAULT_MAX_BATCH,
            linger: DEFAULT_LINGER,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
        }
    }
}

/// What the operator's genesis registration says beyond its key.
#[derive(Debug, Clone, Default)]
pub struct OperatorDetails {
    /// Human-readable name.
    pub display_name: Option<String>,
    /// ISO 3166-1 alpha-2 country.
    pub country: Option<String>,
}

impl Default for SequencerStats {
    fn default() -> Self {
        SequencerStats {
            batch_size: crate::metrics::Histogram::new(crate::metrics::BATCH_BUCKETS, 1.0),
            refused: AtomicU64::new(0),
            build_ns: AtomicU64::new(0),
            sign_ns: AtomicU64::new(0),
            commit_ns: AtomicU64::new(0),
            flush_ns: AtomicU64::new(0),
            write_seconds: crate::metrics::Histogram::new(crate::metrics::LATENCY_BUCKETS, 1e9),
            flush_seconds: crate::metrics::Histogram::new(crate::metrics::LATENCY_BUCKETS, 1e9),
        }
    }
}

/// Counters of the sequencer since the ledger started, for metrics and benchmarks.
pub struct SequencerStats {
    /// Entries per group commit (its count is the number of commits, its sum the entries).
    pub batch_size: crate::metrics::Histogram,
    /// Submissions refused by the sequencer's rules.
    pub refused: AtomicU64,
    /// Nanoseconds spent applying rules and building entries and nodes.
    pub build_ns: AtomicU64,
    /// Nanoseconds spent signing seals and checkpoints.
    pub sign_ns: AtomicU64,
    /// Nanoseconds spent writing and flushing batches.
    pub commit_ns: AtomicU64,
    /// Of which flushing.
    pub flush_ns: AtomicU64,
    /// Each commit's storage write (in nanoseconds), flush excluded.
    pub write_seconds: crate::metrics::Histogram,
    /// Each commit's flush to disk (in nanoseconds).
    pub flush_seconds: crate::metrics::Histogram,
}

struct Inner {
    stats: SequencerStats,
    /// The log key's vkey, recorded with every batch (so with entry 0 too).
    log_vkey: String,
    store: Store,
    /// The log's private key; `None` in a mirror, which serves another ledger's log.
    signer: Option<PrivateKey>,
    /// The log's public key.
    log_public: PublicKey,
    config: LedgerConfig,
    head: RwLock<Head>,
    /// Set, with what failed, when a group commit failed: the in-memory tree may no longer
    /// match the store, so the ledger refuses writes until it is reopened.
    halted: std::sync::OnceLock<String>,
    /// Submissions whose checks are in progress (between the start of admission and the
    /// sequencer's queue): the sequencer lingers for them.
    admitting: std::sync::atomic::AtomicUsize,
    /// Set while the sequencer lingers: the last submission admitted wakes it.
    lingering: AtomicBool,
    /// The sequencer's thread, to wake it.
    sequencer: std::sync::OnceLock<std::thread::Thread>,
    /// Seal signatures the receipts made, for the sequencer to keep with its next batch
    /// (derived data: those lost are signed again when read).
    pending_seals: std::sync::Mutex<Vec<(u64, [u8; 64])>>,
    /// A mirror's follower (see [`crate::mirror`]); `None` for a ledger that signs.
    mirror: Option<crate::mirror::Follower>,
    /// When answers wait for witnesses ([`Ledger::gate_answers`]): the head they are made
    /// against; `None`: the latest head.
    served: RwLock<Option<Head>>,
}

impl Inner {
    /// A ledger's shared state: `keys` are the private key (`None` for a mirror) and the
    /// public key of the log.
    fn new(
        store: Store,
        (signer, log_public): (Option<PrivateKey>, PublicKey),
        mirror: Option<crate::mirror::Follower>,
        config: LedgerConfig,
        head: Head,
    ) -> Arc<Inner> {
        Arc::new(Inner {
            store,
            log_vkey: log_public.to_vkey(),
            signer,
            log_public,
            mirror,
            config,
            head: RwLock::new(head),
            halted: std::sync::OnceLock::new(),
            admitting: Default::default(),
            lingering: AtomicBool::new(false),
            sequencer: std::sync::OnceLock::new(),
            pending_seals: Default::default(),
            stats: SequencerStats::default(),
            served: RwLock::new(None),
        })
    }
}

/// Counts a submission as being admitted until dropped (after it is queued or refused); the
/// last one wakes a lingering sequencer.
struct Admitting<'a>(&'a Inner);

impl<'a> Admitting<'a> {
    fn new(inner: &'a Inner) -> Admitting<'a> {
        inner.admitting.fetch_add(1, Ordering::SeqCst);
        Admitting(inner)
    }
}

impl Drop for Admitting<'_> {
    fn drop(&mut self) {
        let inner = self.0;
        if inner.admitting.fetch_sub(1, Ordering::SeqCst) == 1
            && inner.lingering.load(Ordering::SeqCst)
            && let Some(t) = inner.sequencer.get()
        {
            t.unpark();
        }
    }
}

/// A parsed submission, shared by its submitter (for the receipt) and the sequencer.
struct Submitted {
    envelope: Envelope,
    payload: Payload,
    /// The certificate ID, for certificates (hashed once, at admission).
    certificate_id: Option<CertificateId>,
}

struct Job {
    sub: Arc<Submitted>,
    /// The envelope's canonical JSON, as it goes into the entry.
    canonical: String,
    digest: Hash,
    certificate_id: Option<CertificateId>,
    key: PublicKey,
    reply: tokio::sync::oneshot::Sender<Result<Sequenced, SubmitError>>,
}

enum Sequenced {
    New {
        index: u64,
        leaf: Hash,
        time_ms: u64,
        /// `time_ms` in the log's text form, formatted once per batch.
        time: Arc<str>,
        head: Head,
        nodes: Arc<BatchNodes>,
    },
    Existing(u64),
}

/// Every node an inclusion proof of a batch entry can need against the batch's checkpoint:
/// the tree's right edge before the batch and the nodes the batch completed. Receipts' proofs
/// come from here, in the submitters' threads, without reading the store. Sorted by node, so
/// that a lookup is a binary search (a batch's few hundred nodes need no hashing).
#[derive(Default)]
struct BatchNodes(Vec<(merkle::NodeId, Hash)>);

impl BatchNodes {
    fn new(mut nodes: Vec<(merkle::NodeId, Hash)>) -> BatchNodes {
        nodes.sort_unstable_by_key(|(id, _)| *id);
        BatchNodes(nodes)
    }
}

impl merkle::HashReader for BatchNodes {
    type Error = StoreError;
    fn read_hashes(&self, ids: &[merkle::NodeId]) -> Result<Vec<Hash>, StoreError> {
        ids.iter()
            .map(|id| {
                let found = self.0.binary_search_by_key(id, |(n, _)| *n).ok();
                found.map(|i| self.0[i].1).ok_or(StoreError::MissingNode {
                    level: id.level,
                    index: id.index,
                })
            })
            .collect()
    }
}

enum Admission {
    Existing(u64, Arc<Submitted>),
    Queued(
        Arc<Submitted>,
        tokio::sync::oneshot::Receiver<Result<Sequenced, SubmitError>>,
    ),
}

/// A running ledger: the store, the log key and the sequencer thread.
pub struct Ledger {
    inner: Arc<Inner>,
    tx: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Ledger {
    /// Creates a new ledger in `dir`: logs entry 0, the operator's self-registration signed
    /// with the operator key, together with the log key, in one atomic write. When entry 0 is
    /// refused (bad operator details) nothing is written and `init` can simply be run again.
    pub fn init(
        dir: &Path,
        log_key: PrivateKey,
        operator_key: &PrivateKey,
        operator: &OperatorDetails,
        config: LedgerConfig,
    ) -> Result<Ledger, LedgerError> {
        let store = Store::open(dir)?;
        if store.log_key()?.is_some() || store.size()? > 0 {
            return Err(LedgerError::AlreadyInitialized(dir.display().to_string()));
        }
        let ledger = Ledger::start(store, log_key, config)?;
        let mut party = serde_json::Map::new();
        party.insert("name".into(), operator_key.name().into());
        party.insert("role".into(), "operator".into());
        if let Some(d) = &operator.display_name {
            party.insert("display_name".into(), d.as_str().into());
        }
        if let Some(c) = &operator.country {
            party.insert("country".into(), c.as_str().into());
        }
        party.insert("key".into(), operator_key.public().to_vkey().into());
        party.insert("status".into(), "active".into());
        let bytes = serde_json::to_vec(&party).unwrap_or_default();
        let env = Envelope::sign(PayloadType::Party.media_type(), bytes, operator_key)
            .map_err(|e| LedgerError::Genesis(Box::new(SubmitError::Envelope(e))))?;
        ledger
            .submit(env.to_json().as_bytes())
            .map_err(|e| LedgerError::Genesis(Box::new(e)))?;
        Ok(ledger)
    }

    /// Opens an existing ledger. Reads O(log n) stored hashes, never the whole log.
    pub fn open(
        dir: &Path,
        log_key: PrivateKey,
        config: LedgerConfig,
    ) -> Result<Ledger, LedgerError> {
        let store = Store::open(dir)?;
        let Some(stored) = store.log_key()? else {
            return Err(LedgerError::NotInitialized(dir.display().to_string()));
        };
        // Only a ledger whose entry 0 (the operator) is logged may serve: an empty log would
        // let anyone register itself as its operator.
        if store.size()? == 0 {
            return Err(LedgerError::NotInitialized(dir.display().to_string()));
        }
        if stored != log_key.public().to_vkey() {
            return Err(LedgerError::WrongLogKey {
                stored,
                given: log_key.public().to_vkey(),
            });
        }
        let ledger = Ledger::start(store, log_key, config)?;
        // Derived data: a store whose seals cannot be read or written now still opens (audit
        // names a damaged seal list; lookups sign again).
        if let Err(e) = ledger.keep_lost_seals() {
            tracing::warn!(error = %e, "the seals a stop without closing lost are not kept");
        }
        Ok(ledger)
    }

    /// Signs and writes the seals not kept of the certificates a stop without closing (a
    /// crash, SIGKILL) may have left unwritten: a ledger holds in memory those of its last
    /// batch (up to `max_batch` entries) and of the blocks the log has not moved past, so
    /// lookups would sign them again every time, and an export would lack them.
    fn keep_lost_seals(&self) -> Result<(), LedgerError> {
        let store = &self.inner.store;
        let size = store.size()?;
        let block = crate::store::SEAL_BLOCK;
        let back = self.inner.config.max_batch as u64 + 2 * block;
        let start = size.saturating_sub(back) / block * block;
        let kept = store.seal_signatures(start..size)?;
        // A damaged list (read as empty above) is left for audit to name, not replaced here.
        let damaged: std::collections::BTreeSet<u64> = (start / block..size.div_ceil(block))
            .filter(|b| store.seal_signature(b * block).is_err())
            .collect();
        let mut lost = Vec::new();
        for (index, kept) in (start..size).zip(kept) {
            if kept.is_some() || damaged.contains(&(index / block)) {
                continue;
            }
            let Some(bytes) = store.entry(index)? else {
                continue;
            };
            let Some(id) = Entry::parse_stored(&bytes)
                .ok()
                .and_then(|e| e.certificate_id())
            else {
                continue;
            };
            if let Some(rec) = state::certificate(store, &id).map_err(|e| {
                LedgerError::Inconsistent(format!("certificate record of entry {index}: {e}"))
            })? && rec.index == index
            {
                lost.push((index, self.seal_of(&id, &rec)?.signature));
            }
        }
        if !lost.is_empty() {
            tracing::info!(
                seals = lost.len(),
                "keeping the seals a stop without closing lost"
            );
            store.write_seals(lost)?;
        }
        Ok(())
    }

    fn start(
        store: Store,
        log_key: PrivateKey,
        config: LedgerConfig,
    ) -> Result<Ledger, LedgerError> {
        let size = store.size()?;
        let tb = TreeBuilder::from_reader(size, &store)
            .map_err(|e| LedgerError::Inconsistent(format!("tree of size {size}: {e}")))?;
        let (checkpoint, last_leaf, last_time) = if size == 0 {
            let cp = Checkpoint {
                origin: log_key.name().to_owned(),
                size: 0,
                root: merkle::EMPTY_ROOT,
                extensions: vec![],
            };
            let text = cp
                .sign(&log_key)
                .map_err(|e| LedgerError::Inconsistent(e.to_string()))?;
            (text, [0u8; 32], 0)
        } else {
            let text = store
                .checkpoint()?
                .ok_or_else(|| LedgerError::Inconsistent("no checkpoint".into()))?;
            let cp = Checkpoint::open(&text, log_key.public())
                .map_err(|e| LedgerError::Inconsistent(format!("stored checkpoint: {e}")))?;
            if cp.size != size || cp.root != tb.root() {
                return Err(LedgerError::Inconsistent(format!(
                    "checkpoint (size {}) does not match the stored tree (size {size})",
                    cp.size
                )));
            }
            let last = store
                .entry(size - 1)?
                .ok_or_else(|| LedgerError::Inconsistent(format!("entry {} missing", size - 1)))?;
            let entry = Entry::parse(&last)
                .map_err(|e| LedgerError::Inconsistent(format!("entry {}: {e}", size - 1)))?;
            (text, merkle::leaf_hash(&last), entry.integrated_time_ms)
        };
        let head = Head {
            size,
            root: tb.root(),
            checkpoint: checkpoint.into(),
        };
        let log_public = log_key.public().clone();
        let inner = Inner::new(store, (Some(log_key), log_public), None, config, head);
        let (tx, rx) = mpsc::channel::<Job>();
        let seq = Sequencer {
            inner: inner.clone(),
            tb,
            last_leaf,
            last_time,
            since_snapshot: 0,
        };
        let worker = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || seq.run(rx))
            .map_err(|e| LedgerError::Inconsistent(format!("cannot start sequencer: {e}")))?;
        Ok(Ledger {
            inner,
            tx: Some(tx),
            worker: Some(worker),
        })
    }

    /// Opens (or creates, when `dir` is empty) a read-only mirror of the log whose key is
    /// `log_key` (SPEC §8): no sequencer and no private key; [`Ledger::follow`] appends what
    /// was fetched and verified. Its head is the last checkpoint of the followed log whose
    /// tree it stores whole; during a catch-up it stores more ([`Ledger::behind`]), which its
    /// answers leave out until a checkpoint covers them.
    pub fn open_mirror(
        dir: &Path,
        log_key: PublicKey,
        config: LedgerConfig,
    ) -> Result<Ledger, LedgerError> {
        let store = Store::open(dir)?;
        let vkey = log_key.to_vkey();
        if let Some(stored) = store.log_key()?
            && stored != vkey
        {
            return Err(LedgerError::WrongLogKey {
                stored,
                given: vkey,
            });
        }
        let (head, follower) = crate::mirror::Follower::open(&store, &log_key)?;
        let inner = Inner::new(store, (None, log_key), Some(follower), config, head);
        Ok(Ledger {
            inner,
            tx: None,
            worker: None,
        })
    }

    /// Why this ledger stopped accepting writes, if it did: a storage failure (a full disk, a
    /// failing device) halts the sequencer, or a mirror's following, until the ledger is
    /// reopened from what was made durable. (sled then fails reads too, each with its error;
    /// the head is still served.)
    pub fn halted(&self) -> Option<&str> {
        self.inner.halted.get().map(String::as_str)
    }

    /// Records that storage failed (see [`Ledger::halted`]); the first reason is kept.
    pub(crate) fn halt(&self, why: String) {
        let _ = self.inner.halted.set(why);
    }

    /// Whether this ledger is a read-only mirror ([`Ledger::open_mirror`]).
    pub fn is_mirror(&self) -> bool {
        self.inner.signer.is_none()
    }

    /// For a mirror catching up, (entries stored and verified, entries of the followed log's
    /// checkpoint they lead to): until they are equal it goes on serving the last checkpoint
    /// whose tree it stores whole (its head). `None` when the head is the newest checkpoint it
    /// holds (always for a ledger that signs).
    pub fn behind(&self) -> Option<(u64, u64)> {
        let m = self.inner.mirror.as_ref()?;
        let (stored, target) = m.sizes();
        (target > self.head().size).then_some((stored, target))
    }

    /// A mirror's follower.
    pub(crate) fn follower(&self) -> Option<&crate::mirror::Follower> {
        self.inner.mirror.as_ref()
    }

    /// The log key's vkey, as the store records it.
    pub(crate) fn log_vkey(&self) -> &str {
        &self.inner.log_vkey
    }

    /// Makes a mirror's newly committed tree the head.
    pub(crate) fn set_head(&self, head: Head) {
        match self.inner.head.write() {
            Ok(mut h) => *h = head,
            Err(p) => *p.into_inner() = head,
        }
    }

    /// The store underneath, for read paths and audit.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The log's public key.
    pub fn log_key(&self) -> &PublicKey {
        &self.inner.log_public
    }

    /// The sequencer's counters.
    pub fn stats(&self) -> &SequencerStats {
        &self.inner.stats
    }

    /// The base URL of QR links, if configured.
    pub fn base_url(&self) -> Option<&str> {
        self.inner.config.base_url.as_deref()
    }

    /// The log's origin (the log key's name).
    pub fn origin(&self) -> &str {
        self.inner.log_public.name()
    }

    /// The latest committed tree head.
    pub fn head(&self) -> Head {
        match self.inner.head.read() {
            Ok(h) => h.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The head that answers (lookups, proofs, `/checkpoint`, tiles) are made against: the
    /// latest, unless answers wait for witnesses ([`Ledger::gate_answers`]); then the newest
    /// head [`Ledger::serve_head`] was given. Receipts always carry the latest.
    pub fn served_head(&self) -> Head {
        let served = self
            .inner
            .served
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*served {
            Some(h) => h.clone(),
            None => self.head(),
        }
    }

    /// Entries durably logged that answers may say are "not yet" covered (503, ask again)
    /// rather than unknown: those of the latest head while answers wait for witnesses, those a
    /// mirror stores while it catches up. Otherwise answers are made against the latest head,
    /// and an entry it does not cover is still being committed: not logged yet.
    pub fn durable_size(&self) -> u64 {
        let gated = self
            .inner
            .served
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some();
        if self.is_mirror() {
            self.stored_size()
        } else if gated {
            self.head().size
        } else {
            0
        }
    }

    /// From now on answers are made against the heads given to [`Ledger::serve_head`] (whose
    /// checkpoints the witnesses have cosigned), starting with the latest head.
    pub fn gate_answers(&self) {
        let head = self.head();
        let mut served = self
            .inner
            .served
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        served.get_or_insert(head);
    }

    /// Answers are made against the latest head again.
    pub fn ungate_answers(&self) {
        *self
            .inner
            .served
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Makes `head` the one answers are made against, if answers are gated and it is newer
    /// than the one they are made against now: the served tree never shrinks (a verifier
    /// would take that for a rollback).
    pub fn serve_head(&self, head: Head) {
        let mut served = self
            .inner
            .served
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The same tree may come again with more cosignatures.
        if let Some(s) = &mut *served
            && (head.size > s.size || (head.size == s.size && head.root == s.root))
        {
            *s = head;
        }
    }

    /// Submits an envelope and waits until it is durably logged (blocking; not for async code).
    pub fn submit(&self, body: &[u8]) -> Result<Receipt, SubmitError> {
        match self.admit(body)? {
            Admission::Existing(index, sub) => {
                let head = self.head_covering_blocking(index)?;
                self.existing_receipt(index, &sub.envelope, &sub.payload, head)
            }
            Admission::Queued(sub, rx) => {
                let seq = rx.blocking_recv().map_err(|_| SubmitError::Closed)??;
                self.receipt(seq, &sub)
            }
        }
    }

    /// Submits an envelope and waits until it is durably logged (async).
    pub async fn submit_async(&self, body: &[u8]) -> Result<Receipt, SubmitError> {
        match self.admit(body)? {
            Admission::Existing(index, sub) => {
                let head = self.head_covering(index).await?;
                self.existing_receipt(index, &sub.envelope, &sub.payload, head)
            }
            Admission::Queued(sub, rx) => {
                let seq = rx.await.map_err(|_| SubmitError::Closed)??;
                self.receipt(seq, &sub)
            }
        }
    }

    /// The cheap checks, then the signature; queues the submission for the sequencer.
    fn admit(&self, body: &[u8]) -> Result<Admission, SubmitError> {
        if self.inner.signer.is_none() {
            return Err(SubmitError::Mirror);
        }
        if self.inner.halted.get().is_some() {
            return Err(SubmitError::Halted);
        }
        if body.len() > MAX_SUBMISSION_BYTES {
            return Err(SubmitError::TooLarge(body.len()));
        }
        let admitting = Admitting::new(&self.inner);
        let (envelope, canonical) =
            Envelope::parse_canonical(body).map_err(SubmitError::Envelope)?;
        let payload_type =
            PayloadType::from_media_type(&envelope.payload_type).ok_or_else(|| {
                SubmitError::Payload(PayloadError::UnknownType(envelope.payload_type.clone()))
            })?;
        let store = &self.inner.store;
        let digest: Hash = sha2::Sha256::digest(canonical.as_bytes()).into();
        let certificate_id = (payload_type == PayloadType::Certificate)
            .then(|| CertificateId::of_payload(&envelope.payload));
        let parse = || payload::parse(&envelope.payload_type, &envelope.payload);
        // Who signed, then the signature, then what was signed: a forged or unauthorised
        // envelope is refused as such (401, 403) whatever its payload says, and an unknown
        // signer costs neither a signature check nor a parse. The first entry of an empty log
        // carries its own key in its payload.
        let size = self.head().size;
        let keyid = &envelope.signature.keyid;
        let checked = (|| {
            if size == 0 {
                let payload = parse()?;
                let (key, _) = state::signer_key(store, size, keyid, &payload)?;
                envelope.verify(&key).map_err(SubmitError::BadSignature)?;
                return Ok((key, payload));
            }
            let (key, _) = state::signer_for_type(store, keyid, payload_type)?;
            envelope.verify(&key).map_err(SubmitError::BadSignature)?;
            let payload = parse()?;
            // The role table of events depends on the kind of event.
            if let Payload::Event(_) = payload {
                state::signer_key(store, size, keyid, &payload)?;
            }
            if let Payload::Party(p) = &payload
                && !p.key.is_canonical()
            {
                return Err(PayloadError::Party(crate::party::PartyError::Key(
                    crate::keys::KeyError::NonCanonicalKey,
                ))
                .into());
            }
            Ok::<_, SubmitError>((key, payload))
        })();
        // A new submission, the common case, passes these checks, and the sequencer looks for
        // an already logged copy in its batch's view: the store is searched here only when
        // they refuse, so that an envelope logged while its signer was in force is still
        // answered with its entry (200), whatever the signer's registration says now.
        let (key, payload) = match checked {
            Ok(checked) => checked,
            Err(refusal) => {
                return match state::logged_envelope(store, &digest, certificate_id.as_ref())
                    .map_err(RuleError::from)?
                {
                    Some(index) => Ok(Admission::Existing(
                        index,
                        Arc::new(Submitted {
                            payload: parse()?,
                            envelope,
                            certificate_id,
                        }),
                    )),
                    None => Err(refusal),
                };
            }
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sub = Arc::new(Submitted {
            envelope,
            payload,
            certificate_id,
        });
        let job = Job {
            sub: sub.clone(),
            canonical,
            digest,
            certificate_id,
            key,
            reply,
        };
        let tx = self.tx.as_ref().ok_or(SubmitError::Closed)?;
        tx.send(job).map_err(|_| SubmitError::Closed)?;
        // Queued: no longer waited for (and the sequencer woken if this was the last one).
        drop(admitting);
        Ok(Admission::Queued(sub, rx))
    }

    fn proof<R: merkle::HashReader>(
        &self,
        index: u64,
        head: &Head,
        nodes: &R,
    ) -> Result<InclusionProof, SubmitError>
    where
        R::Error: std::fmt::Display,
    {
        let proof = merkle::inclusion_proof(index, head.size, nodes)
            .map_err(|e| SubmitError::Store(e.to_string()))?;
        Ok(InclusionProof {
            tree_size: head.size,
            root: head.root,
            proof,
        })
    }

    fn qr_url(&self, payload: &Payload, seal: &Seal) -> Option<String> {
        let base = self.inner.config.base_url.as_deref()?;
        match payload {
            Payload::Certificate(c) => {
                Some(seal::qr_url(base, &c.product.gtin, &c.product.serial, seal))
            }
            _ => None,
        }
    }

    fn receipt(&self, seq: Sequenced, sub: &Submitted) -> Result<Receipt, SubmitError> {
        let (env, payload) = (&sub.envelope, &sub.payload);
        match seq {
            // Answered after its batch committed: the head covers it.
            Sequenced::Existing(index) => self.existing_receipt(index, env, payload, self.head()),
            Sequenced::New {
                index,
                leaf,
                time_ms,
                time,
                head,
                nodes,
            } => {
                // The seal is derived data: signed here, in the submitter's thread, on any
                // core, and handed to the sequencer, which keeps it with its next batch for
                // lookups.
                let signer = self.inner.signer.as_ref().ok_or(SubmitError::Mirror)?;
                let seal = match payload {
                    Payload::Certificate(c) => Some(Seal::sign(
                        signer,
                        self.origin(),
                        &c.product.gtin,
                        &c.product.serial,
                        index,
                        time_ms / 1000,
                        sub.certificate_id
                            .unwrap_or_else(|| CertificateId::of_payload(&env.payload))
                            .0,
                    )),
                    _ => None,
                };
                if let Some(s) = &seal {
                    lock(&self.inner.pending_seals).push((index, s.signature));
                }
                Ok(Receipt {
                    created: true,
                    payload_type: payload.payload_type(),
                    index,
                    leaf_hash: leaf,
                    integrated_time: time.to_string(),
                    certificate_id: seal.as_ref().map(|s| CertificateId(s.certificate_id)),
                    qr_url: seal.as_ref().and_then(|s| self.qr_url(payload, s)),
                    seal: seal.map(|s| s.to_base64url()),
                    status: matches!(payload, Payload::Certificate(_))
                        .then_some(state::CertStatus::Valid),
                    in_force: matches!(payload, Payload::Party(_)).then_some(true),
                    checkpoint: head.checkpoint.to_string(),
                    inclusion_proof: self.proof(index, &head, nodes.as_ref())?,
                })
            }
        }
    }

    /// How long an answer waits for the checkpoint that covers an already logged entry.
    const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

    /// The head if it covers `index` (an entry found by its envelope may be visible a moment
    /// before the checkpoint that covers it is durable: answer only once it is); an error
    /// once `deadline` has passed.
    fn head_if_covering(&self, index: u64, deadline: Instant) -> Result<Option<Head>, SubmitError> {
        let head = self.head();
        if head.size > index {
            Ok(Some(head))
        } else if Instant::now() >= deadline {
            Err(SubmitError::Store(format!(
                "entry {index} is not yet durable"
            )))
        } else {
            Ok(None)
        }
    }

    /// The head once it covers `index`, waiting in this thread.
    fn head_covering_blocking(&self, index: u64) -> Result<Head, SubmitError> {
        let deadline = Instant::now() + Self::DURABLE_WAIT;
        loop {
            if let Some(head) = self.head_if_covering(index, deadline)? {
                return Ok(head);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The head once it covers `index`, waiting without blocking an async worker.
    async fn head_covering(&self, index: u64) -> Result<Head, SubmitError> {
        let deadline = Instant::now() + Self::DURABLE_WAIT;
        loop {
            if let Some(head) = self.head_if_covering(index, deadline)? {
                return Ok(head);
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    fn existing_receipt(
        &self,
        index: u64,
        env: &Envelope,
        payload: &Payload,
        head: Head,
    ) -> Result<Receipt, SubmitError> {
        let store = &self.inner.store;
        let bytes = store
            .entry(index)
            .map_err(|e| SubmitError::Store(e.to_string()))?
            .ok_or_else(|| SubmitError::Store(format!("entry {index} missing")))?;
        let entry = Entry::parse(&bytes).map_err(|e| SubmitError::Store(e.to_string()))?;
        let store_error = |e: StoreError| SubmitError::Store(e.to_string());
        let (certificate_id, seal, status) = match payload {
            Payload::Certificate(_) => {
                let id = CertificateId::of_payload(&env.payload);
                let rec = state::certificate(store, &id).map_err(RuleError::from)?;
                let seal = rec
                    .as_ref()
                    .map(|r| self.seal_of(&id, r))
                    .transpose()
                    .map_err(store_error)?;
                (Some(id), seal, rec.map(|r| r.status))
            }
            _ => (None, None, None),
        };
        let in_force = match payload {
            Payload::Party(p) => Some(
                state::StateRead::party_record(store, &p.name)
                    .map_err(RuleError::from)?
                    .is_some_and(|r| r.index == index),
            ),
            _ => None,
        };
        Ok(Receipt {
            created: false,
            payload_type: payload.payload_type(),
            index,
            leaf_hash: merkle::leaf_hash(&bytes),
            integrated_time: entry.integrated_time(),
            certificate_id,
            qr_url: seal.as_ref().and_then(|s| self.qr_url(payload, s)),
            seal: seal.map(|s| s.to_base64url()),
            status,
            in_force,
            checkpoint: head.checkpoint.to_string(),
            inclusion_proof: self.proof(index, &head, &self.inner.store)?,
        })
    }

    /// The seal of a logged certificate. Seals are deterministic (Ed25519) functions of the
    /// log key and the certificate's record: derived data, whose signature the sequencer
    /// keeps with the entry (made again for entries logged before seals were kept).
    pub fn seal(&self, id: &CertificateId) -> Result<Option<Seal>, SubmitError> {
        let rec = state::certificate(&self.inner.store, id).map_err(RuleError::from)?;
        rec.map(|r| self.seal_of(id, &r))
            .transpose()
            .map_err(|e| SubmitError::Store(e.to_string()))
    }

    /// The seal of a certificate whose record the caller has already read: its kept
    /// signature, or signed now.
    pub fn seal_of(&self, id: &CertificateId, rec: &state::CertRecord) -> Result<Seal, StoreError> {
        let time = rec.integrated_time_ms / 1000;
        let kept = match self.inner.store.seal_signature(rec.index) {
            Ok(kept) => kept,
            // A damaged seal list (audit names it) is not misread: a ledger signs the seal
            // again, so lookups keep answering; a mirror, which cannot, fails below.
            Err(StoreError::Corrupt(why)) if self.inner.signer.is_some() => {
                warn_damaged_seals(rec.index, &why);
                None
            }
            Err(e) => return Err(e),
        };
        Ok(match (kept, &self.inner.signer) {
            (Some(signature), _) => Seal {
                key_id: self.inner.log_public.id(),
                index: rec.index,
                integrated_time: time,
                certificate_id: id.0,
                signature,
            },
            (None, None) => {
                return Err(StoreError::Corrupt(format!(
                    "no seal is kept for entry {}, and a mirror cannot sign one",
                    rec.index
                )));
            }
            (None, Some(signer)) => Seal::sign(
                signer,
                self.origin(),
                &rec.gtin,
                &rec.serial,
                rec.index,
                time,
                id.0,
            ),
        })
    }

    /// Stops the sequencer after it has committed everything queued, writes the seal
    /// signatures still held in memory, flushes and closes the store, leaving it quick to
    /// open again ([`Store::close`]).
    pub fn close(mut self) -> Result<(), StoreError> {
        self.stop();
        self.write_held_seals()?;
        let store = self.inner.store.clone();
        drop(self);
        store.close().map(|_| ())
    }

    /// Writes the seal signatures held in memory. Those of the last, unfinished blocks are
    /// kept only there (the sequencer writes a block's seal list once the log has moved past
    /// it): written at shutdown, a restarted ledger does not sign them again, and an export
    /// holds them.
    pub fn write_held_seals(&self) -> Result<(), StoreError> {
        if self.inner.signer.is_none() || self.inner.halted.get().is_some() {
            return Ok(());
        }
        let pending = std::mem::take(&mut *lock(&self.inner.pending_seals));
        self.inner.store.write_seals(pending)
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sequencer thread's own state: the tree's right edge and the chain's end.
struct Sequencer {
    inner: Arc<Inner>,
    tb: TreeBuilder,
    last_leaf: Hash,
    last_time: u64,
    /// Entries appended since the store was opened or its snapshot last refreshed.
    since_snapshot: u64,
}

/// How long the sequencer waits for a next batch to carry the seal signatures the receipts
/// made before it hands them to the store on their own (so that lookups find them).
const SEALS_IDLE: std::time::Duration = std::time::Duration::from_millis(50);

enum Outcome {
    New { index: u64, leaf: Hash },
    Existing(u64),
    Refused(SubmitError),
}

impl Sequencer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        let max = self.inner.config.max_batch;
        let linger = self.inner.config.linger;
        let _ = self.inner.sequencer.set(std::thread::current());
        loop {
            let first = match rx.recv_timeout(SEALS_IDLE) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    hold_pending_seals(&self.inner);
                    match rx.recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut jobs = vec![first];
            drain(&rx, &mut jobs, max);
            if !linger.is_zero() && jobs.len() < max {
                self.linger(linger);
                drain(&rx, &mut jobs, max);
            }
            self.batch(jobs);
        }
    }

    /// Waits (at most `linger`) until no submission is being admitted: those whose signatures
    /// are being checked now join this batch instead of each paying a commit of its own. One
    /// wake-up per batch, by the last of them; a lone submission does not wait.
    fn linger(&self, linger: std::time::Duration) {
        let inner = &self.inner;
        let deadline = Instant::now() + linger;
        // Set before reading the count: either this sees the count at zero or the last
        // submitter sees the flag and wakes this thread (an early unpark is kept for park).
        inner.lingering.store(true, Ordering::SeqCst);
        while inner.admitting.load(Ordering::SeqCst) > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
        inner.lingering.store(false, Ordering::SeqCst);
    }

    fn batch(&mut self, jobs: Vec<Job>) {
        // Submissions admitted before a commit failed may still be queued. After a failed
        // commit sled may hold its batch (written, not flushed) while this sequencer's tree
        // does not: a later batch would reuse its indices. Nothing more is written until the
        // ledger is reopened from what sled made durable.
        if self.inner.halted.get().is_some() {
            for j in jobs {
                let _ = j.reply.send(Err(SubmitError::Halted));
            }
            return;
        }
        let t0 = Instant::now();
        let stats = &self.inner.stats;
        let store = &self.inner.store;
        let reads = crate::store::BucketReads::default();
        let reader = crate::store::BatchReader::new(store, &reads);
        let mut overlay = Overlay::remembering(&reader);
        let mut tb = self.tb.clone();
        let mut nodes = tb.edge_nodes();
        let mut last_leaf = self.last_leaf;
        let time_ms = now_ms().max(self.last_time);
        let time: Arc<str> = format_time_ms(time_ms).into();
        let mut commit = Commit::default();
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in &jobs {
            outcomes.push(
                match self.sequence(
                    &mut overlay,
                    &mut tb,
                    &mut last_leaf,
                    (time_ms, &time),
                    job,
                    &mut commit,
                ) {
                    Ok(o) => o,
                    Err(e) => Outcome::Refused(e),
                },
            );
        }
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Refused(_)))
            .count();
        stats.refused.fetch_add(refused as u64, Ordering::Relaxed);
        let t1 = Instant::now();
        stats
            .build_ns
            .fetch_add((t1 - t0).as_nanos() as u64, Ordering::Relaxed);
        if commit.entries.is_empty() {
            let head = current_head(&self.inner);
            return reply_all(jobs, outcomes, &head, (time_ms, &time), &Arc::default());
        }
        nodes.extend(commit.nodes.iter().copied());
        let Some(key) = self.inner.signer.as_ref() else {
            return self.fail(jobs, "a mirror does not sequence");
        };
        let origin = key.name();
        let cp = Checkpoint {
            origin: origin.to_owned(),
            size: tb.size(),
            root: tb.root(),
            extensions: vec![],
        };
        let text = match cp.sign(key) {
            Ok(t) => t,
            Err(e) => return self.fail(jobs, &e.to_string()),
        };
        commit.size = tb.size();
        commit.checkpoint = text.clone();
        commit.log_key = self.inner.log_vkey.clone();
        commit.state.extend(overlay.to_writes());
        commit.buckets = reads;
        let appended = commit.entries.len() as u64;
        let t2 = Instant::now();
        stats
            .sign_ns
            .fetch_add((t2 - t1).as_nanos() as u64, Ordering::Relaxed);
        // With the seal signatures the receipts made since the last batch (see `crate::store`).
        commit.seals = std::mem::take(&mut *lock(&self.inner.pending_seals));
        let flush = match store.commit(commit) {
            Ok(flush) => flush.as_nanos() as u64,
            Err(e) => return self.fail(jobs, &e.to_string()),
        };
        let committed = t2.elapsed().as_nanos() as u64;
        stats.flush_ns.fetch_add(flush, Ordering::Relaxed);
        stats.commit_ns.fetch_add(committed, Ordering::Relaxed);
        stats.flush_seconds.observe(flush);
        stats.write_seconds.observe(committed.saturating_sub(flush));
        stats.batch_size.observe(appended);
        let head = Head {
            size: tb.size(),
            root: tb.root(),
            checkpoint: text.into(),
        };
        self.tb = tb;
        self.last_leaf = last_leaf;
        self.last_time = time_ms;
        self.since_snapshot += appended;
        match self.inner.head.write() {
            Ok(mut h) => *h = head.clone(),
            Err(p) => *p.into_inner() = head.clone(),
        }
        reply_all(
            jobs,
            outcomes,
            &head,
            (time_ms, &time),
            &Arc::new(BatchNodes::new(nodes)),
        );
        let every = self.inner.config.snapshot_every;
        if every > 0 && self.since_snapshot >= every {
            self.since_snapshot = 0;
            match store.refresh_snapshot() {
                Ok(took) => tracing::info!(
                    took_ms = took.as_millis() as u64,
                    "sled's recovery snapshot refreshed"
                ),
                Err(e) => {
                    let _ = self
                        .inner
                        .halted
                        .set(format!("refreshing sled's recovery snapshot failed: {e}"));
                    tracing::error!(error = %e, "refreshing sled's recovery snapshot failed; refusing writes");
                }
            }
        }
    }

    /// Applies one job to the batch being built.
    fn sequence(
        &self,
        overlay: &mut Overlay<'_, crate::store::BatchReader<'_>>,
        tb: &mut TreeBuilder,
        last_leaf: &mut Hash,
        (time_ms, time): (u64, &str),
        job: &Job,
        commit: &mut Commit,
    ) -> Result<Outcome, SubmitError> {
        if let Some(i) = state::logged_envelope(&*overlay, &job.digest, job.certificate_id.as_ref())
            .map_err(RuleError::from)?
        {
            return Ok(Outcome::Existing(i));
        }
        let index = tb.size();
        // The signer's registration may have changed since admission (rotation, suspension).
        let (key, role) = state::signer_key(
            &*overlay,
            index,
            &job.sub.envelope.signature.keyid,
            &job.sub.payload,
        )?;
        // A changed role or status that still allows this payload is fine; another key is not.
        if key != job.key {
            return Err(RuleError::NotCurrentKey {
                signer: job.sub.envelope.signature.keyid.clone(),
                name: key.name().to_owned(),
                current: key.reference(),
            }
            .into());
        }
        let bytes = Entry::encode_at(index, time, last_leaf, &job.canonical);
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(SubmitError::EntryTooLarge(bytes.len()));
        }
        let accepted = Accepted {
            signer: key.name(),
            role,
            payload: &job.sub.payload,
            certificate_id: job.certificate_id,
            digest: job.digest,
            time_ms,
            admission: true,
        };
        let writes = state::apply(&*overlay, &accepted, index)?;
        overlay.apply(writes);
        let leaf = merkle::leaf_hash(&bytes);
        commit.nodes.extend(tb.push(leaf));
        commit.entries.push((index, bytes));
        *last_leaf = leaf;
        Ok(Outcome::New { index, leaf })
    }

    fn fail(&mut self, jobs: Vec<Job>, why: &str) {
        let _ = self
            .inner
            .halted
            .set(format!("a group commit failed: {why}"));
        tracing::error!(
            error = why,
            "group commit failed; refusing writes until reopened"
        );
        for j in jobs {
            let _ = j.reply.send(Err(SubmitError::Store(why.to_owned())));
        }
    }
}

/// Moves what is queued into `jobs`, up to `max`.
fn drain(rx: &mpsc::Receiver<Job>, jobs: &mut Vec<Job>, max: usize) {
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
}

/// Hands the seal signatures the receipts made to the store, which holds them until their
/// block is written with a later batch.
fn hold_pending_seals(inner: &Inner) {
    let seals = std::mem::take(&mut *lock(&inner.pending_seals));
    inner.store.hold_seals(seals);
}

fn current_head(inner: &Inner) -> Head {
    match inner.head.read() {
        Ok(h) => h.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn reply_all(
    jobs: Vec<Job>,
    outcomes: Vec<Outcome>,
    head: &Head,
    (time_ms, time): (u64, &Arc<str>),
    nodes: &Arc<BatchNodes>,
) {
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        let answer = match outcome {
            Outcome::Refused(e) => Err(e),
            Outcome::Existing(i) => Ok(Sequenced::Existing(i)),
            Outcome::New { index, leaf, .. } => Ok(Sequenced::New {
                index,
                leaf,
                time_ms,
                time: time.clone(),
                head: head.clone(),
                nodes: nodes.clone(),
            }),
        };
        let _ = job.reply.send(answer);
    }
}

/// Warns that a kept seal list is damaged, at most every 10 s: every lookup of the entries it
/// covers meets it until the next write to the list replaces it.
fn warn_damaged_seals(index: u64, why: &str) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            index,
            error = why,
            "a kept seal list is damaged: its seals are signed again when read; run `reman-ledger audit --data` on the stopped ledger"
        );
    }
}

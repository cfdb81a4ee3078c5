//! Audit: re-verifies a whole log from its entries alone, trusting nothing else.
//!
//! The [`Auditor`] is fed the entries in order and checks, for each: the canonical entry form,
//! its index, the hash chain (`prev`), the leaf hash the tree recorded for it (when the source
//! has one), the payload rules, the signer's registration and role in force at that point of
//! the log, the envelope signature under the key in force, and the business rules (replayed
//! with the same [`crate::state`] functions the sequencer uses). At the end it checks the
//! Merkle root of the entries against the signed checkpoint. The first bad index is reported.
//!
//! The auditor is pure; [`audit_store`] feeds it from a local store, and a remote auditor can
//! feed it entries fetched over HTTP.

use crate::certificate::CertificateId;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::entry::Entry;
use crate::keys::PublicKey;
use crate::merkle::{self, Hash, NodeId, TreeBuilder};
use crate::payload::{self, Payload};
use crate::state::{self, Accepted, Empty, Overlay};
use crate::store::{Store, StoreError};
use rayon::prelude::*;
use std::collections::HashMap;

/// Entries checked in parallel at a time.
const CHUNK: usize = 1024;

/// What is wrong with an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// A problem with entry `index`: the first bad entry of the log.
    #[error("entry {index}: {problem}")]
    Entry {
        /// The first bad index.
        index: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// The log has fewer entries than its signed checkpoint covers.
    #[error("entry {index} is missing: the signed checkpoint covers {size} entries")]
    Missing {
        /// The first missing index.
        index: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// The signed checkpoint does not verify or does not parse.
    #[error("the log's checkpoint is not valid: {0}")]
    Checkpoint(String),
    /// The entries' Merkle root differs from the signed checkpoint's.
    #[error("the Merkle root of entries 0..{size} differs from the signed checkpoint's root")]
    RootMismatch {
        /// The tree size compared.
        size: u64,
    },
    /// The log could not be read.
    #[error("cannot read the log: {0}")]
    Read(String),
}

impl AuditError {
    /// The first bad index, when the failure is about an entry.
    pub fn index(&self) -> Option<u64> {
        match self {
            AuditError::Entry { index, .. } | AuditError::Missing { index, .. } => Some(*index),
            _ => None,
        }
    }
}

impl From<StoreError> for AuditError {
    fn from(e: StoreError) -> Self {
        AuditError::Read(e.to_string())
    }
}

/// The summary of a successful audit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// The verified tree size.
    pub tree_size: u64,
    /// The verified root.
    #[serde(with = "crate::ledger::hex_hash")]
    pub root: Hash,
    /// The log's origin.
    pub origin: String,
    /// Entries by payload type (party, certificate, revocation, event).
    pub by_type: std::collections::BTreeMap<String, u64>,
}

/// An entry after the parallel stage: parsed and hashed.
struct Parsed {
    index: u64,
    leaf: Hash,
    entry: Entry,
    payload: Payload,
}

fn bad(index: u64, problem: impl ToString) -> AuditError {
    AuditError::Entry {
        index,
        problem: problem.to_string(),
    }
}

/// Stateless checks of one entry: form, index, recorded leaf hash, payload rules.
fn parse_one(index: u64, bytes: &[u8], recorded: Option<Hash>) -> Result<Parsed, AuditError> {
    let leaf = merkle::leaf_hash(bytes);
    if recorded.is_some_and(|r| r != leaf) {
        return Err(bad(
            index,
            "its bytes differ from the leaf hash the tree recorded (the entry was changed)",
        ));
    }
    let entry = Entry::parse(bytes).map_err(|e| bad(index, e))?;
    if entry.index != index {
        return Err(bad(
            index,
            format!(
                "it says it is entry {} (entries moved or swapped)",
                entry.index
            ),
        ));
    }
    let payload = payload::parse(&entry.envelope.payload_type, &entry.envelope.payload)
        .map_err(|e| bad(index, format!("payload refused: {e}")))?;
    Ok(Parsed {
        index,
        leaf,
        entry,
        payload,
    })
}

/// Replays a log entry by entry. Memory grows with the state (parties, certificates), not
/// with the entries themselves.
pub struct Auditor {
    state: HashMap<Vec<u8>, Option<Vec<u8>>>,
    tree: TreeBuilder,
    prev: Hash,
    last_time: u64,
    by_type: std::collections::BTreeMap<String, u64>,
}

impl Default for Auditor {
    fn default() -> Self {
        Self::new()
    }
}

impl Auditor {
    /// A new audit from entry 0.
    pub fn new() -> Auditor {
        Auditor {
            state: HashMap::new(),
            tree: TreeBuilder::new(),
            prev: [0u8; 32],
            last_time: 0,
            by_type: Default::default(),
        }
    }

    /// Entries checked so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Checks the next entries, in order, with the leaf hashes their source recorded, if any.
    /// Parsing and signatures are checked in parallel; the first bad index is reported.
    pub fn push_chunk(&mut self, entries: &[(Vec<u8>, Option<Hash>)]) -> Result<(), AuditError> {
        let start = self.tree.size();
        let parsed: Vec<Result<Parsed, AuditError>> = entries
            .par_iter()
            .enumerate()
            .map(|(i, (bytes, rec))| parse_one(start + i as u64, bytes, *rec))
            .collect();
        // Sequential stage: chain, signer in force, business rules. Keys are collected for the
        // parallel signature check that follows.
        let mut keys: Vec<(usize, PublicKey)> = Vec::with_capacity(parsed.len());
        let mut first_err: Option<AuditError> = None;
        for (i, p) in parsed.iter().enumerate() {
            let p = match p {
                Ok(p) => p,
                Err(e) => {
                    first_err = Some(e.clone());
                    break;
                }
            };
            if let Err(e) = self.replay(p) {
                first_err = Some(e);
                break;
            }
            if let Ok(k) = self.key_for(p) {
                keys.push((i, k));
            }
        }
        let sig_err = keys
            .par_iter()
            .filter_map(|(i, k)| {
                let p = parsed.get(*i)?.as_ref().ok()?;
                p.entry
                    .envelope
                    .verify(k)
                    .err()
                    .map(|e| bad(p.index, format!("signature does not verify: {e}")))
            })
            .min_by_key(|e| e.index());
        match (first_err, sig_err) {
            (Some(a), Some(b)) => Err(if b.index() < a.index() { b } else { a }),
            (Some(a), None) | (None, Some(a)) => Err(a),
            (None, None) => Ok(()),
        }
    }

    fn key_for(&self, p: &Parsed) -> Result<PublicKey, AuditError> {
        // The key was recorded by `replay` in `pending_key`; recomputing from the state
        // after replay would see later registrations, so replay stores it.
        self.pending_keys_get(p.index)
            .ok_or_else(|| bad(p.index, "no key recorded"))
    }

    fn pending_keys_get(&self, index: u64) -> Option<PublicKey> {
        let raw = self.state.get(&pending_key(index))?.as_ref()?;
        PublicKey::parse(std::str::from_utf8(raw).ok()?).ok()
    }

    /// The stateful checks of one entry, then its effects on the state.
    fn replay(&mut self, p: &Parsed) -> Result<(), AuditError> {
        let index = p.index;
        if p.entry.prev != self.prev {
            return Err(bad(
                index,
                "its prev is not the leaf hash of the entry before it (the hash chain is broken)",
            ));
        }
        if p.entry.integrated_time_ms < self.last_time {
            return Err(bad(
                index,
                "its integrated_time is earlier than the entry before it",
            ));
        }
        let env = &p.entry.envelope;
        let view = Overlay::new(&Empty);
        let mut view = view;
        view.apply(std::mem::take(&mut self.state).into_iter().collect());
        let result = (|| {
            let certificate_id = matches!(p.payload, Payload::Certificate(_))
                .then(|| CertificateId::of_payload(&env.payload));
            if state::logged_envelope(&view, &env.digest(), certificate_id.as_ref())
                .map_err(|e| bad(index, e))?
                .is_some()
            {
                return Err(bad(index, "the same envelope is logged twice"));
            }
            let (key, role) = state::signer_key(&view, index, &env.signature.keyid, &p.payload)
                .map_err(|e| bad(index, e))?;
            let accepted = Accepted {
                signer: key.name(),
                role,
                payload: &p.payload,
                certificate_id,
                digest: env.digest(),
                time_ms: p.entry.integrated_time_ms,
            };
            let writes = state::apply(&view, &accepted, index).map_err(|e| bad(index, e))?;
            Ok((writes, key))
        })();
        match result {
            Ok((writes, key)) => {
                view.apply(writes);
                view.apply(vec![(pending_key(index), Some(key.to_vkey().into_bytes()))]);
                self.state = view.into_writes();
                self.prev = p.leaf;
                self.last_time = p.entry.integrated_time_ms;
                self.tree.push(p.leaf);
                *self
                    .by_type
                    .entry(payload_name(&p.payload).to_owned())
                    .or_default() += 1;
                Ok(())
            }
            Err(e) => {
                self.state = view.into_writes();
                Err(e)
            }
        }
    }

    /// Checks the entries against the log's signed checkpoint.
    pub fn finish(self, checkpoint: &str, log_key: &PublicKey) -> Result<AuditReport, AuditError> {
        let cp = Checkpoint::open(checkpoint, log_key)
            .map_err(|e: CheckpointError| AuditError::Checkpoint(e.to_string()))?;
        if self.tree.size() < cp.size {
            return Err(AuditError::Missing {
                index: self.tree.size(),
                size: cp.size,
            });
        }
        if self.tree.size() != cp.size || self.tree.root() != cp.root {
            return Err(AuditError::RootMismatch { size: cp.size });
        }
        Ok(AuditReport {
            entries: self.tree.size(),
            tree_size: cp.size,
            root: cp.root,
            origin: cp.origin,
            by_type: self.by_type,
        })
    }
}

/// Where the replay remembers the key each entry must verify under, until the parallel
/// signature check of its chunk.
fn pending_key(index: u64) -> Vec<u8> {
    [b"k".as_slice(), &index.to_be_bytes()].concat()
}

fn payload_name(p: &Payload) -> &'static str {
    match p {
        Payload::Party(_) => "party",
        Payload::Certificate(_) => "certificate",
        Payload::Revocation(_) => "revocation",
        Payload::Event(_) => "event",
    }
}

/// Audits a local store: every entry up to its signed checkpoint, against the given log key
/// (or, when `None`, the log key the store was created with).
pub fn audit_store(
    store: &Store,
    log_key: Option<&PublicKey>,
    mut progress: impl FnMut(u64, u64),
) -> Result<AuditReport, AuditError> {
    let stored_key = store
        .log_key()?
        .ok_or_else(|| AuditError::Read("the directory holds no ledger".into()))?;
    let stored_key = PublicKey::parse(&stored_key).map_err(|e| AuditError::Read(e.to_string()))?;
    let key = log_key.unwrap_or(&stored_key);
    let checkpoint = store
        .checkpoint()?
        .ok_or_else(|| AuditError::Checkpoint("no checkpoint stored".into()))?;
    let cp =
        Checkpoint::open(&checkpoint, key).map_err(|e| AuditError::Checkpoint(e.to_string()))?;
    let mut auditor = Auditor::new();
    let mut next = 0u64;
    while next < cp.size {
        let end = (next + CHUNK as u64).min(cp.size);
        let mut chunk = Vec::with_capacity((end - next) as usize);
        for i in next..end {
            let Some(bytes) = store.entry(i)? else {
                auditor.push_chunk(&chunk)?;
                return Err(AuditError::Missing {
                    index: i,
                    size: cp.size,
                });
            };
            let recorded = store.node(NodeId { level: 0, index: i })?;
            chunk.push((bytes.to_vec(), recorded));
        }
        auditor.push_chunk(&chunk)?;
        next = end;
        progress(next, cp.size);
    }
    auditor.finish(&checkpoint, key)
}

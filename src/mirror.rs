//! Mirror (SPEC §8): a second ledger instance that follows another one, verifies everything
//! it is given, and serves the same read API.
//!
//! A mirror holds no private key. It appends only entries that pass every check an audit
//! makes (canonical form, index, hash chain, payload rules, the signer in force and its role,
//! the envelope signature, the business rules: the same [`Auditor`] replay, over the state the
//! mirror has already verified), each certificate's seal signature under the log key (it
//! cannot sign one itself), and the Merkle root against the log's signed checkpoint. A step
//! that ends before the checkpoint's size is accepted only with a consistency proof from the
//! step's tree to the checkpoint's, so every prefix a mirror stores is one the log signed.
//! A refused step writes nothing.
//!
//! This module is the step ([`Ledger::follow`]); [`crate::mirroring`] fetches the steps from
//! the followed ledger over HTTP.

use crate::audit::{AuditError, Auditor};
use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::ledger::{Head, Ledger};
use crate::merkle::{self, Hash};
use crate::payload::{self, Payload};
use crate::store::{BatchReader, BucketReads, Commit, StoreError, lock};
use std::collections::BTreeMap;

/// Why a mirror refused what it was given. Nothing of a refused step is written.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The ledger was not opened as a mirror.
    #[error("this ledger is not a mirror")]
    NotAMirror,
    /// The checkpoint is not signed by the log key, or does not parse.
    #[error("the followed log's checkpoint is not valid: {0}")]
    Checkpoint(String),
    /// The followed log shows a smaller tree than one it signed before: it rolled back.
    #[error(
        "the followed log rolled back: it signed a tree of {had} entries before and now shows {now}"
    )]
    Rollback {
        /// The size of the checkpoint held.
        had: u64,
        /// The size now shown.
        now: u64,
    },
    /// Two checkpoints of the followed log are not consistent: it forked its history.
    #[error("the followed log forked: {0}")]
    Fork(String),
    /// More entries were given than the checkpoint covers.
    #[error("entries up to {end} were given, but the checkpoint covers only {size}")]
    BeyondCheckpoint {
        /// The tree size the entries would make.
        end: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// An entry fails a check an audit makes.
    #[error("{0}")]
    Entry(#[from] AuditError),
    /// A certificate entry's seal is missing or does not verify, or a seal names no
    /// certificate entry of the step.
    #[error("entry {index}: {problem}")]
    Seal {
        /// The entry.
        index: u64,
        /// What is wrong with its seal.
        problem: String,
    },
    /// The mirror's storage failed; nothing of the step was kept.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The followed ledger could not be read (network, HTTP status, malformed answer).
    #[error("cannot read the followed ledger: {0}")]
    Read(String),
}

impl MirrorError {
    /// Whether following may simply be tried again later (the followed ledger could not be
    /// read); every other error is evidence against the followed log or a local failure, and
    /// stops following.
    pub fn is_transient(&self) -> bool {
        matches!(self, MirrorError::Read(_))
    }
}

/// The next entries of the followed log, with what vouches for them.
#[derive(Debug, Clone, Default)]
pub struct FollowStep {
    /// The exact bytes of the entries from the mirror's size on, in order.
    pub entries: Vec<Vec<u8>>,
    /// The seal signature of each certificate entry among them, by index.
    pub seals: BTreeMap<u64, [u8; 64]>,
    /// The followed log's signed checkpoint, covering at least these entries.
    pub checkpoint: String,
    /// When the entries end before the checkpoint's size: the consistency proof from the
    /// tree they end to the checkpoint's tree.
    pub consistency: Vec<Hash>,
}

impl Ledger {
    /// Verifies `step` and appends its entries in one atomic, flushed commit, with their
    /// seals and the checkpoint; returns the new head. When the entries end at the
    /// checkpoint's size the head is that checkpoint's tree; otherwise the mirror is catching
    /// up ([`Ledger::behind`]) until a later step reaches it.
    pub fn follow(&self, step: FollowStep) -> Result<Head, MirrorError> {
        let follower = self.follower().ok_or(MirrorError::NotAMirror)?;
        let mut point = lock(follower);
        let log_key = self.log_key();
        let cp = Checkpoint::open(&step.checkpoint, log_key)
            .map_err(|e| MirrorError::Checkpoint(e.to_string()))?;
        let start = point.tree.size();
        let end = start + step.entries.len() as u64;
        if end > cp.size {
            return Err(MirrorError::BeyondCheckpoint { end, size: cp.size });
        }
        let store = self.store();
        let reads = BucketReads::default();
        let reader = BatchReader::new(store, &reads);
        let mut auditor = Auditor::resume(&reader, point.clone());
        let chunk: Vec<(Vec<u8>, Option<Hash>)> =
            step.entries.into_iter().map(|e| (e, None)).collect();
        auditor.push_chunk(&chunk)?;
        self.check_seals(start, &chunk, &step.seals)?;
        let next = auditor.point();
        let root = next.tree.root();
        if end == cp.size {
            if root != cp.root {
                return Err(MirrorError::Fork(format!(
                    "the Merkle root of its entries 0..{end} is not the root its checkpoint signs"
                )));
            }
        } else {
            merkle::verify_consistency(end, cp.size, &root, &cp.root, &step.consistency).map_err(
                |e| {
                    MirrorError::Fork(format!(
                        "its entries 0..{end} are not a prefix of the tree its checkpoint signs ({e})"
                    ))
                },
            )?;
        }
        let (overlay, nodes) = auditor.into_parts();
        let commit = Commit {
            entries: (start..).zip(chunk.into_iter().map(|(e, _)| e)).collect(),
            nodes,
            state: overlay.into_writes().into_iter().collect(),
            size: end,
            checkpoint: step.checkpoint.clone(),
            log_key: self.log_vkey().to_owned(),
            seals: step.seals.into_iter().collect(),
            all_seals: true,
            buckets: reads,
        };
        store.commit(commit)?;
        *point = next;
        let head = Head {
            size: end,
            root,
            checkpoint: step.checkpoint.into(),
        };
        self.set_mirror_head(head.clone(), cp.size);
        Ok(head)
    }

    /// Each certificate entry of `entries` (from index `start`) has a seal in `seals` that
    /// verifies for it; no seal names anything else.
    fn check_seals(
        &self,
        start: u64,
        entries: &[(Vec<u8>, Option<Hash>)],
        seals: &BTreeMap<u64, [u8; 64]>,
    ) -> Result<(), MirrorError> {
        let end = start + entries.len() as u64;
        if let Some((&index, _)) = seals.iter().find(|(i, _)| !(start..end).contains(*i)) {
            return Err(MirrorError::Seal {
                index,
                problem: "a seal was given for an entry this step does not append".into(),
            });
        }
        let given: Vec<Option<[u8; 64]>> = (start..end).map(|i| seals.get(&i).copied()).collect();
        for ((index, (bytes, _)), seal) in (start..).zip(entries).zip(&given) {
            // The auditor has checked that every entry parses.
            let is_certificate = Entry::parse_stored(bytes)
                .ok()
                .and_then(|e| payload::parse(&e.envelope.payload_type, &e.envelope.payload).ok())
                .is_some_and(|p| matches!(p, Payload::Certificate(_)));
            if is_certificate && seal.is_none() {
                return Err(MirrorError::Seal {
                    index,
                    problem: "no seal was given for this certificate".into(),
                });
            }
        }
        crate::audit::check_seals(start, entries, &given, self.log_key(), self.origin()).map_err(
            |e| match e {
                AuditError::Entry { index, problem } => MirrorError::Seal { index, problem },
                e => MirrorError::Entry(e),
            },
        )
    }
}

//! Mirror (SPEC §8): a second ledger instance that follows another one, verifies everything
//! it is given, and serves the same read API.
//!
//! A mirror holds no private key. A step of entries is taken only once (1) the followed log's
//! checkpoint verifies under the pinned log key and extends the checkpoint held before (same
//! root at the same size, or a consistency proof from it); (2) the entries are exactly the
//! ones that checkpoint signs (the tree they end is its tree, or a prefix of it by a
//! consistency proof); (3) every entry passes every check an audit makes (canonical form,
//! index, hash chain, payload rules, the signer in force and its role, the envelope
//! signature, the business rules: the same [`Auditor`] replay, over the state the mirror has
//! already verified); (4) each certificate's seal signature verifies under the log key (a
//! mirror cannot sign one). A refused step writes nothing.
//!
//! Which refusals are evidence against the followed log: only what the log signed can be. Two
//! signed checkpoints of one size with different roots are a fork, and signed entries that
//! fail an audit check break the log's rules; following stops on either
//! ([`MirrorError::is_transient`] is false). Everything else (a bad checkpoint signature, an
//! older checkpoint, a missing proof, bytes or seals that do not verify) may have been changed
//! on the way, so it is refused and tried again later.
//!
//! While it catches up the mirror stores more entries than its head, the last checkpoint
//! whose tree it stores whole; answers are made as of the head (see [`crate::query`]), so it
//! goes on serving. This module is the step ([`Ledger::follow`]); [`crate::mirroring`]
//! fetches the steps over HTTP.

use crate::audit::{AuditError, Auditor, ReplayPoint};
use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::keys::PublicKey;
use crate::ledger::{Head, Ledger, LedgerError};
use crate::merkle::{self, Hash, TreeBuilder};
use crate::payload::{self, Payload};
use crate::store::{BatchReader, BucketReads, Commit, Store, StoreError, lock};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Two signed checkpoints of the followed log, kept as evidence of what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The checkpoint the mirror held.
    pub held: String,
    /// The checkpoint the followed log presented.
    pub presented: String,
}

/// Why a mirror refused what it was given. Nothing of a refused step is written.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The ledger was not opened as a mirror.
    #[error("this ledger is not a mirror")]
    NotAMirror,
    /// The checkpoint is not signed by the log key, or does not parse.
    #[error("the followed log's checkpoint is not valid: {0}")]
    Checkpoint(String),
    /// The followed log presents a smaller tree than one it signed before.
    #[error(
        "the followed log presents a tree of {now} entries, older than the one of {had} it signed before (rolled back, or an old checkpoint replayed)"
    )]
    Rollback {
        /// The size of the checkpoint held.
        had: u64,
        /// The size presented.
        now: u64,
        /// Both checkpoints.
        evidence: Box<Evidence>,
    },
    /// Two signed checkpoints of one size with different roots: the log signed two histories.
    #[error("the followed log forked: it signed two different trees of {size} entries")]
    Fork {
        /// The tree size.
        size: u64,
        /// Both checkpoints.
        evidence: Box<Evidence>,
    },
    /// No valid consistency proof from the checkpoint held to the one presented.
    #[error(
        "the followed log's tree of {now} entries is not proven to extend the one of {had} it signed before: {problem}"
    )]
    NotProven {
        /// The size of the checkpoint held.
        had: u64,
        /// The size presented.
        now: u64,
        /// Why the proof failed.
        problem: String,
        /// Both checkpoints.
        evidence: Box<Evidence>,
    },
    /// More entries were given than the checkpoint covers.
    #[error("entries up to {end} were given, but the checkpoint covers only {size}")]
    BeyondCheckpoint {
        /// The tree size the entries would make.
        end: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// The entries are not the ones the checkpoint signs.
    #[error(
        "entries {start}..{end} as given are not the ones the log's checkpoint signs ({problem})"
    )]
    NotCovered {
        /// The first entry of the step.
        start: u64,
        /// The end of the step.
        end: u64,
        /// The failed check.
        problem: String,
    },
    /// A signed entry fails a check an audit makes: the followed log broke its rules.
    #[error("the followed log signed an entry that breaks its rules: {0}")]
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
    /// Whether following may go on and try again later: true unless the followed log signed
    /// something that proves it misbehaved (a fork, an entry against its rules) or the
    /// mirror's own storage failed.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            MirrorError::Fork { .. }
                | MirrorError::Entry(_)
                | MirrorError::Store(_)
                | MirrorError::NotAMirror
        )
    }

    /// The two checkpoints behind a rollback, a fork or a failed consistency proof.
    pub fn evidence(&self) -> Option<&Evidence> {
        match self {
            MirrorError::Rollback { evidence, .. }
            | MirrorError::Fork { evidence, .. }
            | MirrorError::NotProven { evidence, .. } => Some(evidence),
            _ => None,
        }
    }
}

/// The next entries of the followed log, with what vouches for them.
#[derive(Debug, Clone, Default)]
pub struct FollowStep {
    /// The exact bytes of the entries from the mirror's stored size on, in order.
    pub entries: Vec<Vec<u8>>,
    /// The seal signature of each certificate entry among them, by index.
    pub seals: BTreeMap<u64, [u8; 64]>,
    /// The followed log's signed checkpoint, covering at least these entries.
    pub checkpoint: String,
    /// When the checkpoint is larger than the one held ([`Ledger::held_checkpoint`]): the
    /// consistency proof from the held one to it.
    pub extends: Vec<Hash>,
    /// When the entries end before the checkpoint's size: the consistency proof from the
    /// tree they end to the checkpoint's tree.
    pub consistency: Vec<Hash>,
}

/// A mirror's follower state: where the next entries go, and the sizes [`Ledger::behind`]
/// reports without waiting for a step in progress.
pub struct Follower {
    /// The replay point after the stored entries, held while a step is verified and committed.
    point: Mutex<ReplayPoint>,
    /// Entries stored (and verified).
    stored: AtomicU64,
    /// The size of the newest checkpoint held.
    target: AtomicU64,
}

impl Follower {
    /// Reads a mirror's store: its head (the last checkpoint whose tree is stored whole; an
    /// empty checkpoint text when it has none yet) and its follower state.
    pub(crate) fn open(
        store: &Store,
        log_key: &PublicKey,
    ) -> Result<(Head, Follower), LedgerError> {
        let bad = |why: String| LedgerError::Inconsistent(why);
        let size = store.size()?;
        let tree = TreeBuilder::from_reader(size, store)
            .map_err(|e| bad(format!("tree of size {size}: {e}")))?;
        let head = match store.checkpoint()?.filter(|t| !t.is_empty()) {
            None => Head {
                size: 0,
                root: merkle::EMPTY_ROOT,
                checkpoint: "".into(),
            },
            Some(text) => {
                let cp = Checkpoint::open(&text, log_key)
                    .map_err(|e| bad(format!("stored checkpoint: {e}")))?;
                let root = if cp.size == size {
                    tree.root()
                } else if cp.size < size {
                    merkle::root(cp.size, store).map_err(|e| bad(e.to_string()))?
                } else {
                    merkle::EMPTY_ROOT
                };
                if cp.size > size || root != cp.root {
                    return Err(bad(format!(
                        "the stored checkpoint (size {}) is not the stored tree's (size {size})",
                        cp.size
                    )));
                }
                Head {
                    size: cp.size,
                    root,
                    checkpoint: text.into(),
                }
            }
        };
        let target = match store.catching_up()? {
            Some(text) => {
                let cp = Checkpoint::open(&text, log_key)
                    .map_err(|e| bad(format!("stored catch-up checkpoint: {e}")))?;
                if cp.size < size {
                    return Err(bad(
                        "the catch-up checkpoint is older than the stored tree".into()
                    ));
                }
                cp.size
            }
            None if size != head.size => {
                return Err(bad(format!(
                    "{size} entries are stored but the checkpoint covers {}",
                    head.size
                )));
            }
            None => size,
        };
        let (prev, last_time) = match size.checked_sub(1) {
            None => ([0u8; 32], 0),
            Some(last) => {
                let bytes = store
                    .entry(last)?
                    .ok_or_else(|| bad(format!("entry {last} missing")))?;
                let entry = Entry::parse(&bytes).map_err(|e| bad(format!("entry {last}: {e}")))?;
                (merkle::leaf_hash(&bytes), entry.integrated_time_ms)
            }
        };
        let follower = Follower {
            point: Mutex::new(ReplayPoint {
                tree,
                prev,
                last_time,
            }),
            stored: AtomicU64::new(size),
            target: AtomicU64::new(target),
        };
        Ok((head, follower))
    }

    /// (entries stored, size of the newest checkpoint held).
    pub(crate) fn sizes(&self) -> (u64, u64) {
        (
            self.stored.load(Ordering::SeqCst),
            self.target.load(Ordering::SeqCst),
        )
    }
}

impl Ledger {
    /// The newest checkpoint of the followed log a mirror holds: the one it is catching up
    /// to, else its head's; `None` before the first.
    pub fn held_checkpoint(&self) -> Result<Option<String>, MirrorError> {
        self.follower().ok_or(MirrorError::NotAMirror)?;
        Ok(match self.store().catching_up()? {
            Some(text) => Some(text),
            None => Some(self.head().checkpoint.to_string()).filter(|t| !t.is_empty()),
        })
    }

    /// Entries a mirror stores (its head's size, or more while it catches up).
    pub fn stored_size(&self) -> u64 {
        self.follower().map_or(self.head().size, |f| f.sizes().0)
    }

    /// Verifies `step` and appends its entries in one atomic, flushed commit, with their
    /// seals and the checkpoint; returns the head after it. When the entries reach the
    /// checkpoint's size its tree becomes the head; otherwise the head stays and the mirror
    /// is catching up ([`Ledger::behind`]) until a later step reaches it.
    pub fn follow(&self, step: FollowStep) -> Result<Head, MirrorError> {
        let follower = self.follower().ok_or(MirrorError::NotAMirror)?;
        let mut point = lock(&follower.point);
        let log_key = self.log_key();
        let cp = Checkpoint::open(&step.checkpoint, log_key)
            .map_err(|e| MirrorError::Checkpoint(e.to_string()))?;
        if let Some(held) = self.held_checkpoint()? {
            self.check_extends(&held, &cp, &step)?;
        }
        let start = point.tree.size();
        let end = start + step.entries.len() as u64;
        if end > cp.size {
            return Err(MirrorError::BeyondCheckpoint { end, size: cp.size });
        }
        // First that these are the bytes the log signed: only then is a failed check of
        // them the log's own doing.
        let mut tree = point.tree.clone();
        for e in &step.entries {
            tree.push(merkle::leaf_hash(e));
        }
        let root = tree.root();
        let covered = if end == cp.size {
            (root == cp.root)
                .then_some(())
                .ok_or_else(|| "their Merkle root is not the checkpoint's".to_owned())
        } else {
            merkle::verify_consistency(end, cp.size, &root, &cp.root, &step.consistency)
                .map_err(|e| format!("no valid consistency proof to the checkpoint: {e}"))
        };
        if let Err(problem) = covered {
            return Err(MirrorError::NotCovered {
                start,
                end,
                problem,
            });
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
        let (overlay, nodes) = auditor.into_parts();
        let reached = end == cp.size;
        let head = if reached {
            Head {
                size: end,
                root,
                checkpoint: step.checkpoint.as_str().into(),
            }
        } else {
            self.head()
        };
        let commit = Commit {
            entries: (start..).zip(chunk.into_iter().map(|(e, _)| e)).collect(),
            nodes,
            state: overlay.to_writes(),
            size: end,
            checkpoint: head.checkpoint.to_string(),
            log_key: self.log_vkey().to_owned(),
            seals: step.seals.into_iter().collect(),
            mirror: true,
            catching_up: (!reached).then_some(step.checkpoint),
            buckets: reads,
        };
        if let Err(e) = store.commit(commit) {
            // The mirror's own disk failed, not the followed log: the ledger is halted, so that
            // /healthz says so, and following stops until it is restarted.
            self.halt(format!("a mirror step could not be stored: {e}"));
            return Err(e.into());
        }
        *point = next;
        follower.stored.store(end, Ordering::SeqCst);
        follower.target.store(cp.size, Ordering::SeqCst);
        self.set_head(head.clone());
        Ok(head)
    }

    /// The checkpoint presented extends the one held: the same tree, or a larger one with a
    /// valid consistency proof (`step.extends`).
    fn check_extends(
        &self,
        held: &str,
        cp: &Checkpoint,
        step: &FollowStep,
    ) -> Result<(), MirrorError> {
        let had = Checkpoint::open(held, self.log_key())
            .map_err(|e| StoreError::Corrupt(format!("the checkpoint held: {e}")))?;
        let evidence = || {
            Box::new(Evidence {
                held: held.to_owned(),
                presented: step.checkpoint.clone(),
            })
        };
        if cp.size < had.size {
            return Err(MirrorError::Rollback {
                had: had.size,
                now: cp.size,
                evidence: evidence(),
            });
        }
        if cp.size == had.size {
            return match cp.root == had.root {
                true => Ok(()),
                false => Err(MirrorError::Fork {
                    size: cp.size,
                    evidence: evidence(),
                }),
            };
        }
        if had.size == 0 {
            return Ok(());
        }
        merkle::verify_consistency(had.size, cp.size, &had.root, &cp.root, &step.extends).map_err(
            |e| MirrorError::NotProven {
                had: had.size,
                now: cp.size,
                problem: e.to_string(),
                evidence: evidence(),
            },
        )
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

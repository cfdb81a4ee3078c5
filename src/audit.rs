//! Audit: re-verifies a whole log from its entries alone, trusting nothing else.
//!
//! The [`Auditor`] is fed the entries in order and checks, for each: the canonical entry form,
//! its index, the hash chain (`prev`), the leaf hash the tree recorded for it (when the source
//! has one), the payload rules, the signer's registration and role in force at that point of
//! the log, the envelope signature under the key in force, and the business rules (replayed
//! with the same [`crate::state`] functions the sequencer uses). At the end it checks the
//! Merkle root of the entries against the signed checkpoint. The first bad index is reported.
//! A local store's kept seal signatures, which lookups serve, are checked too ([`check_seals`]),
//! and what it derives from the entries: its state records, which lookups and the rules
//! answer from, against those the replay made, and its Merkle nodes, which proofs are made of,
//! against the entries' tree ([`audit_store`]);
//! so are, over HTTP, the seal, status and history a remote ledger serves for each certificate
//! ([`audit_remote`]).
//!
//! The auditor is pure; [`audit_store`] feeds it from a local store, and a remote auditor can
//! feed it entries fetched over HTTP.

use crate::certificate::CertificateId;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::entry::Entry;
use crate::keys::PublicKey;
use crate::merkle::{self, Hash, NodeId, TreeBuilder};
use crate::payload::{self, Payload};
use crate::state::{self, Accepted, CertStatus, Empty, Overlay, StateRead};
use crate::store::{Store, StoreError};
use rayon::prelude::*;

/// The empty base of the in-memory replay.
static EMPTY: Empty = Empty;

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
    /// The log verifies, but what a local store derives from it and keeps beside it (a state
    /// record that lookups, the resolver and the rules answer from, or a Merkle node that
    /// proofs are made of) is not what the log's entries make.
    #[error(
        "{record}: {problem}. The log's entries and checkpoint verify; this is what the store keeps beside them, which the ledger answers from (lookups, the rules, proofs) or builds on (appends): it was changed or damaged on disk; restore the data directory from a backup, or mirror the log into a new one"
    )]
    Derived {
        /// Which record, in words.
        record: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The log could not be read.
    #[error("cannot read the log: {0}")]
    Read(String),
    /// The log verifies on its own but is not an extension of the checkpoint remembered from
    /// an earlier audit or verification: it was rolled back or forked.
    #[error(
        "the log rewrote its history: {problem}\n--- remembered ---\n{remembered}--- presented ---\n{presented}"
    )]
    Rewritten {
        /// What is wrong.
        problem: String,
        /// The checkpoint remembered (signed text).
        remembered: String,
        /// The checkpoint the log presents now (signed text).
        presented: String,
    },
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

/// A successful audit of a remote log.
#[derive(Debug, Clone)]
pub struct RemoteAudit {
    /// The summary.
    pub report: AuditReport,
    /// The log key the checkpoint verified under.
    pub key: PublicKey,
    /// The signed checkpoint audited, as served.
    pub checkpoint: String,
    /// The root of the first entries asked for ([`audit_remote`]'s `prefix`).
    pub prefix_root: Option<Hash>,
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
    /// For a mirror's store caught mid-way: the entries it stores beyond its checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catching_up: Option<CatchingUp>,
    /// For a local store: the state records it keeps beside the log (what lookups and the
    /// rules answer from), each found to be what the replay of the log makes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_records: Option<u64>,
}

/// The entries a mirror stores beyond the last checkpoint whose tree it holds whole, while it
/// catches up to a newer one ([`crate::store::Store::catching_up`]). They are checked entry by
/// entry as the others are (chain, signatures, rules, seals); their tree is checked against a
/// signed checkpoint once the mirror holds it whole.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CatchingUp {
    /// Entries stored beyond the checkpoint, all checked.
    pub entries: u64,
    /// The size of the checkpoint the mirror catches up to (signed by the log key).
    pub target_size: u64,
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
///
/// An audit replays from entry 0 over an empty state ([`Auditor::new`]); a mirror replays the
/// entries it fetches over the state it has already verified and stored
/// ([`Auditor::resume`]), so both hold a log to exactly the same rules.
pub struct Auditor<'a, R: ?Sized = Empty> {
    state: Overlay<'a, R>,
    tree: TreeBuilder,
    prev: Hash,
    last_time: u64,
    by_type: std::collections::BTreeMap<String, u64>,
    /// The Merkle nodes completed so far, when kept ([`Auditor::resume`],
    /// [`Auditor::keeping_nodes`]).
    completed: Option<Vec<(NodeId, Hash)>>,
}

impl Default for Auditor<'static> {
    fn default() -> Self {
        Self::new()
    }
}

impl Auditor<'static> {
    /// A new audit from entry 0.
    pub fn new() -> Auditor<'static> {
        Auditor {
            state: Overlay::new(&EMPTY),
            tree: TreeBuilder::new(),
            prev: [0u8; 32],
            last_time: 0,
            by_type: Default::default(),
            completed: None,
        }
    }
}

/// Where a replay resumes: the tree so far, the leaf hash of its last entry and that entry's
/// integrated time (Unix ms).
#[derive(Clone)]
pub struct ReplayPoint {
    /// The tree of the entries already verified.
    pub tree: TreeBuilder,
    /// The leaf hash of the last of them (zeros when there is none).
    pub prev: Hash,
    /// Its integrated time, Unix milliseconds (0 when there is none).
    pub last_time: u64,
}

impl<'a, R: StateRead + ?Sized> Auditor<'a, R> {
    /// A replay that continues at `from` over `state`, the state of the entries before it,
    /// remembering what it reads (see [`Overlay::remembering`]) and keeping the Merkle nodes
    /// it completes, so that its result can be committed ([`Auditor::into_parts`]).
    pub fn resume(state: &'a R, from: ReplayPoint) -> Auditor<'a, R> {
        Auditor {
            state: Overlay::remembering(state),
            tree: from.tree,
            prev: from.prev,
            last_time: from.last_time,
            by_type: Default::default(),
            completed: Some(Vec::new()),
        }
    }

    /// Entries checked so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Where a replay of the entries after these would resume.
    pub fn point(&self) -> ReplayPoint {
        ReplayPoint {
            tree: self.tree.clone(),
            prev: self.prev,
            last_time: self.last_time,
        }
    }

    /// Keeps the Merkle nodes the entries complete, for [`Auditor::take_nodes`]: a store's
    /// stored nodes are compared with them.
    pub fn keeping_nodes(mut self) -> Self {
        self.completed.get_or_insert_with(Vec::new);
        self
    }

    /// The Merkle nodes completed since the last call, when kept, leaves included.
    pub fn take_nodes(&mut self) -> Vec<(NodeId, Hash)> {
        self.completed
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The state writes of the entries replayed and the Merkle nodes they completed.
    pub fn into_parts(self) -> (state::Overlay<'a, R>, Vec<(NodeId, Hash)>) {
        (self.state, self.completed.unwrap_or_default())
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
            match self.replay(p) {
                Ok(k) => keys.push((i, k)),
                Err(e) => {
                    first_err = Some(e);
                    break;
                }
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

    /// The stateful checks of one entry, then its effects on the state. Returns the key its
    /// signature must verify under: the signer's key in force at that point of the log.
    fn replay(&mut self, p: &Parsed) -> Result<PublicKey, AuditError> {
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
        let view = &self.state;
        let result = (|| {
            let certificate_id = matches!(p.payload, Payload::Certificate(_))
                .then(|| CertificateId::of_payload(&env.payload));
            if state::logged_envelope(view, &env.digest(), certificate_id.as_ref())
                .map_err(|e| bad(index, e))?
                .is_some()
            {
                return Err(bad(index, "the same envelope is logged twice"));
            }
            let (key, role) = state::signer_key(view, index, &env.signature.keyid, &p.payload)
                .map_err(|e| bad(index, e))?;
            let accepted = Accepted {
                signer: key.name(),
                role,
                payload: &p.payload,
                certificate_id,
                digest: env.digest(),
                time_ms: p.entry.integrated_time_ms,
                admission: false,
            };
            let writes = state::apply(view, &accepted, index).map_err(|e| bad(index, e))?;
            Ok((writes, key))
        })();
        let (writes, key) = result?;
        self.state.apply(writes);
        self.prev = p.leaf;
        self.last_time = p.entry.integrated_time_ms;
        let nodes = self.tree.push(p.leaf);
        if let Some(c) = &mut self.completed {
            c.extend(nodes);
        }
        *self
            .by_type
            .entry(payload_name(&p.payload).to_owned())
            .or_default() += 1;
        Ok(key)
    }

    /// Checks the entries against the log's signed checkpoint.
    pub fn finish(self, checkpoint: &str, log_key: &PublicKey) -> Result<AuditReport, AuditError> {
        self.check_root(checkpoint, log_key)
    }

    /// Checks the entries so far against the log's signed checkpoint, and goes on: a mirror's
    /// store holds entries beyond it, checked after.
    fn check_root(&self, checkpoint: &str, log_key: &PublicKey) -> Result<AuditReport, AuditError> {
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
            by_type: self.by_type.clone(),
            catching_up: None,
            state_records: None,
        })
    }
}

/// Checks the seal signatures a store kept for entries `start..` (derived data: lookups serve
/// them without signing again, see [`crate::store`]): each must be kept for a certificate
/// entry and verify under `log_key` for this origin, its certificate and its entry. Checked in
/// parallel; the first bad index is reported. Entries that do not parse are left to
/// [`Auditor::push_chunk`].
pub fn check_seals(
    start: u64,
    entries: &[(Vec<u8>, Option<Hash>)],
    seals: &[Option<[u8; 64]>],
    log_key: &PublicKey,
    origin: &str,
) -> Result<(), AuditError> {
    let first_bad = entries
        .par_iter()
        .zip(seals.par_iter())
        .enumerate()
        .filter_map(|(i, ((bytes, _), sig))| {
            let index = start + i as u64;
            let signature = (*sig)?;
            let facts = match SealFacts::of(index, bytes)? {
                Ok(f) => f,
                Err(kind) => {
                    return Some(bad(
                        index,
                        format!("a seal signature is kept for it, a {kind} entry"),
                    ));
                }
            };
            facts
                .verify(&facts.seal(log_key, signature), log_key, origin)
                .err()
                .map(|e| {
                    bad(
                        index,
                        format!("its kept seal signature is not valid ({e}): lookups serve a false seal for it"),
                    )
                })
        })
        .min_by_key(|e| e.index());
    first_bad.map_or(Ok(()), Err)
}

/// What the seal of a certificate entry must say (SPEC §5): its header and the unit it names.
struct SealFacts {
    index: u64,
    integrated_time: u64,
    certificate_id: CertificateId,
    gtin: String,
    serial: String,
}

impl SealFacts {
    /// The facts of entry `index`; `Err` names the kind of a non-certificate entry, `None`
    /// when the bytes do not parse (left to the [`Auditor`]).
    fn of(index: u64, bytes: &[u8]) -> Option<Result<SealFacts, &'static str>> {
        let entry = Entry::parse(bytes).ok()?;
        let payload = payload::parse(&entry.envelope.payload_type, &entry.envelope.payload).ok()?;
        let Payload::Certificate(c) = payload else {
            return Some(Err(payload_name(&payload)));
        };
        Some(Ok(SealFacts {
            index,
            integrated_time: entry.integrated_time_ms / 1000,
            certificate_id: CertificateId::of_payload(&entry.envelope.payload),
            gtin: c.product.gtin,
            serial: c.product.serial,
        }))
    }

    /// The entry's seal with `signature`.
    fn seal(&self, log_key: &PublicKey, signature: [u8; 64]) -> crate::seal::Seal {
        crate::seal::Seal {
            key_id: log_key.id(),
            index: self.index,
            integrated_time: self.integrated_time,
            certificate_id: self.certificate_id.0,
            signature,
        }
    }

    /// Checks that `seal` verifies for this entry's unit under `log_key`.
    fn verify(
        &self,
        seal: &crate::seal::Seal,
        log_key: &PublicKey,
        origin: &str,
    ) -> Result<(), crate::seal::SealError> {
        seal.verify(log_key, origin, &self.gtin, &self.serial)
    }
}

fn payload_name(p: &Payload) -> &'static str {
    match p {
        Payload::Party(_) => "party",
        Payload::Certificate(_) => "certificate",
        Payload::Revocation(_) => "revocation",
        Payload::Event(_) => "event",
    }
}

/// Audits a local store: every entry up to its signed checkpoint, and the seal signatures it
/// kept for them, against the given log key (or, when `None`, the log key the store was
/// created with). A mirror's store caught mid-way through a catch-up holds entries beyond its
/// checkpoint: they are checked too, entry by entry, and reported ([`CatchingUp`]). What the
/// store derives from its entries is compared with what they make, its Merkle nodes chunk by
/// chunk and, last, its state records with the replay's: the entries may all verify while a
/// record lookups answer from, or a node proofs are made of, was changed on disk
/// ([`AuditError::Derived`]).
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
    // A mirror catching up: the entries stored beyond the checkpoint, up to the newer one it
    // follows, which the log key must have signed.
    let target = match store.catching_up()? {
        Some(text) => {
            let target = Checkpoint::open(&text, key).map_err(|e| {
                AuditError::Checkpoint(format!("the checkpoint this mirror catches up to: {e}"))
            })?;
            let stored = store.size()?;
            if stored > target.size || stored < cp.size {
                return Err(AuditError::Checkpoint(format!(
                    "this mirror stores {stored} entries and catches up to a checkpoint of {} from one of {}: not a catch-up",
                    target.size, cp.size
                )));
            }
            Some((stored, target.size))
        }
        None => None,
    };
    let total = target.map_or(cp.size, |(stored, _)| stored);
    let mut auditor = Auditor::new().keeping_nodes();
    let mut reading = Reading::default();
    let mut audit = |auditor: &mut Auditor, reading: &mut Reading, from: u64, to: u64| {
        audit_stored(store, auditor, reading, from, to, key, &cp.origin, |done| {
            progress(done, total);
        })
    };
    audit(&mut auditor, &mut reading, 0, cp.size)?;
    let mut report = auditor.check_root(&checkpoint, key)?;
    if let Some((stored, target_size)) = target {
        audit(&mut auditor, &mut reading, cp.size, stored)?;
        report.catching_up = Some(CatchingUp {
            entries: stored - cp.size,
            target_size,
        });
    }
    // What the store derives from the log is judged once the log itself has held: a problem
    // of the log (a changed entry whose leaf hash was changed with it) is not a damaged node.
    if let Some(e) = reading.derived {
        return Err(e);
    }
    let derived = |record: &str, problem: String| AuditError::Derived {
        record: record.into(),
        problem,
    };
    let recorded = store.size().map_err(damaged("the store's tree size"))?;
    if recorded != total {
        return Err(derived(
            "the store's tree size",
            format!("it is {recorded}; its entries and checkpoint make {total}"),
        ));
    }
    let beyond = "what the store keeps beyond its log";
    if let Some(problem) = store.kept_beyond(total).map_err(damaged(beyond))? {
        return Err(derived(beyond, problem));
    }
    let (replayed, _) = auditor.into_parts();
    report.state_records = Some(check_state(store, replayed.into_records())?);
    Ok(report)
}

/// A store error about `record`, as the audit reports it: what was read but is not what this
/// ledger writes is damage or tampering (exit 1), not an unreadable store.
fn damaged(record: &'static str) -> impl Fn(StoreError) -> AuditError {
    move |e| match e {
        StoreError::Corrupt(_) | StoreError::Bucket(_) => AuditError::Derived {
            record: record.into(),
            problem: e.to_string(),
        },
        e => e.into(),
    }
}

/// Compares the Merkle nodes above the leaves that a store keeps (inclusion and consistency
/// proofs are made of them) with those the audited entries complete; the leaves themselves are
/// compared as the entries are read.
fn check_nodes(store: &Store, made: Vec<(NodeId, Hash)>) -> Result<(), AuditError> {
    for (id, hash) in made.into_iter().filter(|(id, _)| id.level > 0) {
        let problem = match store.node(id) {
            Ok(Some(stored)) if stored == hash => continue,
            Ok(Some(stored)) => format!(
                "the store holds {}, the entries hash to {}: proofs made from it do not verify",
                hex::encode(stored),
                hex::encode(hash)
            ),
            Ok(None) => "the store does not hold it: proofs that need it cannot be made".into(),
            Err(StoreError::Corrupt(why)) => format!("what is stored for it is corrupt: {why}"),
            Err(e) => return Err(e.into()),
        };
        let width = 1u64 << id.level;
        let first = id.index * width;
        return Err(AuditError::Derived {
            record: format!(
                "the Merkle node at level {}, index {} (entries {first}..{})",
                id.level,
                id.index,
                first + width
            ),
            problem,
        });
    }
    Ok(())
}

/// Compares the state records a store keeps with those the replay of its entries made: each
/// stored record must be one the replay made, saying the same ([`state::record_difference`]),
/// and each record the replay made must be stored. The first difference in key order is
/// reported (a record missing from the store after the stored records compared). Returns how
/// many records were compared.
fn check_state(store: &Store, mut replayed: crate::records::Records) -> Result<u64, AuditError> {
    let problem = |key: &[u8], problem: String| AuditError::Derived {
        record: state::record_name(key),
        problem,
    };
    let mut found: Option<AuditError> = None;
    let mut compared = 0;
    store
        .visit_state(|key, stored| {
            compared += 1;
            found = match replayed.take(key).flatten() {
                None => Some(problem(
                    key,
                    "the store holds it, but no entry of the log makes it".into(),
                )),
                Some(made) => match state::record_difference(key, stored, made) {
                    Ok(None) => None,
                    Ok(Some(diff)) => Some(problem(key, diff)),
                    Err(e) => Some(problem(key, e.to_string())),
                },
            };
            if found.is_some() {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .map_err(damaged("the store's state records"))?;
    if let Some(e) = found {
        return Err(e);
    }
    match replayed.untaken().min() {
        Some(key) => Err(problem(
            key,
            "the log makes it, but the store does not hold it where lookups look".into(),
        )),
        None => Ok(compared),
    }
}

/// What reading a store's entries has found so far, across the checkpoint's entries and a
/// mirror's catch-up beyond them.
#[derive(Default)]
struct Reading {
    /// The run of entries read last: its first index and its length.
    run: Option<(u64, u64)>,
    /// The first problem found in what the store derives from its entries (runs, leaf
    /// hashes, nodes), reported once the entries and checkpoint have held.
    derived: Option<AuditError>,
}

/// Feeds entries `from..to` of `store`, with their kept seals, to `auditor`.
#[allow(clippy::too_many_arguments)]
fn audit_stored(
    store: &Store,
    auditor: &mut Auditor,
    reading: &mut Reading,
    from: u64,
    to: u64,
    key: &PublicKey,
    origin: &str,
    mut progress: impl FnMut(u64),
) -> Result<(), AuditError> {
    let mut next = from;
    let mut seals = Vec::with_capacity(CHUNK);
    while next < to {
        let end = (next + CHUNK as u64).min(to);
        let mut chunk = Vec::with_capacity((end - next) as usize);
        // Each run read once; where that fails or stops, entries are read one by one, which
        // names the entry missing or damaged.
        let placed = store.entries_placed(next..end).unwrap_or_default();
        for i in next..end {
            let read = || -> Result<_, StoreError> {
                let recorded = store.node(NodeId { level: 0, index: i })?;
                let entry = match placed.get((i - next) as usize) {
                    Some(p) => Some(p.clone()),
                    None => store.entry_in_run(i)?,
                };
                Ok((entry, recorded, store.seal_signature(i)?))
            };
            let (bytes, recorded, seal) = match read() {
                Ok((Some((first, len, bytes)), recorded, seal)) => {
                    // Runs follow each other: every way of reading an entry (by index, or a
                    // run at a time for entry bundles) then gives the same bytes.
                    if let Some((before, before_len)) = reading.run.filter(|(f, _)| *f != first)
                        && before + before_len != first
                    {
                        reading.derived.get_or_insert(AuditError::Derived {
                            record: format!("the runs of entries from {before} and from {first}"),
                            problem: format!(
                                "they overlap: the first holds {before_len} entries, up to {}; the ledger never writes overlapping runs",
                                before + before_len - 1
                            ),
                        });
                    }
                    reading.run = Some((first, len));
                    if recorded.is_none() {
                        reading.derived.get_or_insert(AuditError::Derived {
                            record: format!("the leaf hash of entry {i}"),
                            problem:
                                "the store does not hold it: proofs that need it cannot be made"
                                    .into(),
                        });
                    }
                    (bytes, recorded, seal)
                }
                Ok((None, ..)) => {
                    auditor.push_chunk(&chunk)?;
                    return Err(AuditError::Missing { index: i, size: to });
                }
                // What is stored for the entry (its run, its node block, its seal list) was
                // read but is not what this ledger writes: damaged or tampered, not unreadable.
                Err(StoreError::Corrupt(why)) => {
                    auditor.push_chunk(&chunk)?;
                    return Err(bad(i, format!("what is stored for it is corrupt: {why}")));
                }
                Err(e) => return Err(e.into()),
            };
            chunk.push((bytes.to_vec(), recorded));
            seals.push(seal);
        }
        let entries = auditor.push_chunk(&chunk);
        let kept = check_seals(next, &chunk, &seals, key, origin);
        match (entries, kept) {
            (Err(a), Err(b)) => return Err(if b.index() < a.index() { b } else { a }),
            (Err(a), _) | (_, Err(a)) => return Err(a),
            _ => {}
        }
        match check_nodes(store, auditor.take_nodes()) {
            Err(e @ AuditError::Derived { .. }) => {
                reading.derived.get_or_insert(e);
            }
            other => other?,
        }
        seals.clear();
        next = end;
        progress(next);
    }
    Ok(())
}

/// Audits a remote ledger over its HTTP API (SPEC §6), trusting nothing it serves: the signed
/// checkpoint is verified under `log_key` (or, when `None`, under the key the server itself
/// names in `GET /api/v1/log`, which proves only that the log is consistent with itself: the
/// caller must say so) and returned with the report; every entry up to it is fetched, over `jobs` parallel connections, its
/// served index and leaf hash are checked against the bytes, the entries are replayed by an
/// [`Auditor`], and the view served for each certificate (one more request per certificate)
/// is checked: its seal as [`check_seals`] checks a store's, and, once the replay is whole,
/// its status, revocation, successor and events against what the replay established
/// ([`check_served_status`]: a server that hides a revocation from lookups is caught), and
/// what it shows of each event and revocation against that entry ([`check_shown_history`]: a
/// shipment shown as a customs release is caught). Returns the report and the log key used.
///
/// When the log does not verify, the first entry whose bytes are not those the signed
/// checkpoint covers is located with consistency proofs (about log2(size) requests), so a
/// changed entry is named even when only the tree, not a signature, covers what changed.
/// Unreachable servers and server failures (5xx) are [`AuditError::Read`].
///
/// With `prefix` (a tree size seen before), the root of the log's first `prefix` entries, as
/// the audited entries make it, is returned too (`None` if the log is smaller): whether the
/// log extends a checkpoint seen before is then told without asking it for a proof.
pub fn audit_remote(
    client: &crate::client::Client,
    log_key: Option<&PublicKey>,
    jobs: usize,
    prefix: Option<u64>,
    mut progress: impl FnMut(u64, u64),
) -> Result<RemoteAudit, AuditError> {
    let read = |e: crate::client::ClientError| AuditError::Read(e.to_string());
    let key = match log_key {
        Some(k) => k.clone(),
        None => {
            let info = client.log().map_err(read)?;
            PublicKey::parse(&info.log_key).map_err(|e| {
                AuditError::Checkpoint(format!("the server's log key is not a valid vkey: {e}"))
            })?
        }
    };
    let checkpoint = client.checkpoint().map_err(read)?;
    let cp =
        Checkpoint::open(&checkpoint, &key).map_err(|e| AuditError::Checkpoint(e.to_string()))?;
    let mut auditor = Auditor::new();
    let mut leaves: Vec<Hash> = Vec::new();
    // What the server serves of each certificate's status and history, compared with the
    // replay once it is whole.
    let mut served: Vec<ServedStatus> = Vec::new();
    // What a view must show of each event and revocation entry, and what the views showed.
    let mut logged: std::collections::HashMap<u64, Hash> = std::collections::HashMap::new();
    let mut shown: Vec<(u64, u64, Hash)> = Vec::new();
    let mut next = 0u64;
    let failed = |e: AuditError, leaves: &[Hash]| -> AuditError {
        let upto = e.index().unwrap_or(cp.size).min(leaves.len() as u64);
        match locate_changed(client, leaves, upto, &cp) {
            Some(index) => bad(
                index,
                "its bytes are not the ones the signed checkpoint covers (the entry was changed)",
            ),
            None => e,
        }
    };
    while next < cp.size {
        let end = (next + CHUNK as u64).min(cp.size);
        let (fetched, fetch_err) = fetch_range(client, next, end, jobs, cp.size);
        let mut chunk = Vec::with_capacity(fetched.len());
        let mut claim_err = None;
        for (i, e) in (next..).zip(fetched) {
            let leaf = merkle::leaf_hash(&e.leaf);
            if e.index != i {
                claim_err = Some(bad(
                    i,
                    format!("the server served entry {} for it", e.index),
                ));
                break;
            }
            if e.leaf_hash != leaf {
                claim_err = Some(bad(
                    i,
                    "the leaf_hash the server gives is not the hash of the bytes it serves",
                ));
                break;
            }
            leaves.push(leaf);
            chunk.push((e.leaf, None));
        }
        if let Err(e) = auditor.push_chunk(&chunk) {
            return Err(failed(e, &leaves));
        }
        if let Some(e) = claim_err.or(fetch_err) {
            return Err(match e {
                AuditError::Read(_) => e,
                e => failed(e, &leaves),
            });
        }
        logged.extend(
            (next..)
                .zip(&chunk)
                .filter_map(|(i, (bytes, _))| Some((i, logged_history_digest(bytes)?))),
        );
        served.extend(check_served_views(
            client, next, &chunk, &key, &cp.origin, cp.size, jobs, &mut shown,
        )?);
        next = end;
        progress(next, cp.size);
    }
    match auditor.check_root(&checkpoint, &key) {
        Ok(report) => {
            check_served_status(&auditor.state, &mut served, cp.size)?;
            check_shown_history(&shown, &logged)?;
            let prefix_root = prefix
                .and_then(|m| leaves.get(..usize::try_from(m).ok()?))
                .map(|l| {
                    let mut tree = TreeBuilder::new();
                    for leaf in l {
                        tree.push(*leaf);
                    }
                    tree.root()
                });
            Ok(RemoteAudit {
                report,
                key,
                checkpoint,
                prefix_root,
            })
        }
        Err(e) => Err(failed(e, &leaves)),
    }
}

/// Checks the view the server serves for each certificate entry of `entries` (the entries
/// from `start`), over `jobs` connections, and returns what each says of its certificate's
/// status and history ([`ServedStatus`]): later entries revoke and supersede certificates and
/// add events, so that is compared with the replay once it is whole ([`check_served_status`]).
/// The seal in `GET /api/v1/certificates/{id}` is what a lookup and the status page show, so
/// it must be this entry's (index, time, certificate) and verify under `log_key` for this
/// origin and the certificate's unit: the remote counterpart of [`check_seals`]. The first
/// bad index is reported; a server that cannot be asked is [`AuditError::Read`].
#[allow(clippy::too_many_arguments)]
fn check_served_views(
    client: &crate::client::Client,
    start: u64,
    entries: &[(Vec<u8>, Option<Hash>)],
    log_key: &PublicKey,
    origin: &str,
    size: u64,
    jobs: usize,
    shown: &mut Vec<(u64, u64, Hash)>,
) -> Result<Vec<ServedStatus>, AuditError> {
    let certificates: Vec<SealFacts> = (start..)
        .zip(entries)
        .filter_map(|(index, (bytes, _))| SealFacts::of(index, bytes)?.ok())
        .collect();
    let checked = in_parallel(
        0..certificates.len() as u64,
        jobs,
        |k| {
            let facts = &certificates[k as usize];
            let view = served_view(client, facts.index, &facts.certificate_id)?;
            let seal = served_seal(facts.index, &view)?;
            if seal != facts.seal(log_key, seal.signature) {
                return Err(bad(
                    facts.index,
                    "the seal the server serves for it is not its entry's (index, time, certificate or log key differ)",
                ));
            }
            facts.verify(&seal, log_key, origin).map_err(|e| {
                bad(
                    facts.index,
                    format!("the seal the server serves for it is not valid ({e})"),
                )
            })?;
            let status = ServedStatus::of_view(facts.certificate_id, &view, size)
                .map_err(|reason| malformed(facts.index, reason))?;
            let history = shown_history(&view, size);
            Ok((status, history))
        },
        |_| false,
    );
    let mut served = Vec::with_capacity(checked.len());
    let mut failures = Vec::new();
    for (k, r) in checked {
        match r {
            Ok((s, history)) => {
                served.push(s);
                let at = certificates[k as usize].index;
                shown.extend(history.into_iter().map(|(e, digest)| (at, e, digest)));
            }
            Err(e) => failures.push(e),
        }
    }
    // A server that cannot be asked stops the audit as unfinished, whatever else was found.
    failures.sort_by_key(|e| (!matches!(e, AuditError::Read(_)), e.index()));
    failures.into_iter().next().map_or(Ok(served), Err)
}

/// Checks that what the views showed of each event and revocation (`shown`: the certificate's
/// entry, the event's or revocation's entry, the digest of what was shown) is what that entry
/// says (`logged`, by entry). The certificate of the lowest entry shown otherwise is reported.
fn check_shown_history(
    shown: &[(u64, u64, Hash)],
    logged: &std::collections::HashMap<u64, Hash>,
) -> Result<(), AuditError> {
    match shown
        .iter()
        .filter(|(_, e, digest)| logged.get(e) != Some(digest))
        .min_by_key(|(at, e, _)| (*at, *e))
    {
        Some((at, e, _)) => Err(bad(
            *at,
            format!(
                "the server serves its certificate with entry {e} not as logged (its type, time, place, reference or signer differ from the entry's)"
            ),
        )),
        None => Ok(()),
    }
}

/// A malformed answer of the server about the certificate of entry `index`.
fn malformed(index: u64, reason: impl std::fmt::Display) -> AuditError {
    bad(
        index,
        format!("the server's answer for its certificate is malformed: {reason}"),
    )
}

/// The view the server serves for certificate `id`, logged at `index`.
fn served_view(
    client: &crate::client::Client,
    index: u64,
    id: &CertificateId,
) -> Result<serde_json::Value, AuditError> {
    use crate::client::ClientError;
    match client.certificate(&id.to_string()) {
        Ok(v) => Ok(v),
        Err(ClientError::Status { status, .. }) if (400..500).contains(&status) => Err(bad(
            index,
            format!("the server does not serve its certificate {id} (HTTP {status})"),
        )),
        Err(ClientError::BadAnswer { reason, .. }) => Err(malformed(index, reason)),
        Err(e) => Err(AuditError::Read(e.to_string())),
    }
}

/// The seal in the view served for the certificate logged at `index`.
fn served_seal(index: u64, view: &serde_json::Value) -> Result<crate::seal::Seal, AuditError> {
    let text = view
        .get("seal")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad(index, "the server serves its certificate without a seal"))?;
    crate::seal::Seal::from_base64url(text).map_err(|e| {
        bad(
            index,
            format!("the seal the server serves for it is malformed: {e}"),
        )
    })
}

/// What the server serves of a certificate's status and history (`GET
/// /api/v1/certificates/{id}`), kept from the chunk of the certificate's entry to the end of
/// the replay: 72 bytes, and 8 more for each event shown below the audited size.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServedStatus {
    /// The certificate.
    id: CertificateId,
    /// The status shown.
    status: CertStatus,
    /// The entry index of the revocation shown, if any.
    revocation: Option<u64>,
    /// The certificate shown as its successor (`superseded_by`), if any.
    successor: Option<CertificateId>,
    /// The entry indices of the events shown below the audited size, as served.
    events: Box<[u64]>,
}

impl ServedStatus {
    /// Reads the status, revocation, successor and events of a served view of certificate
    /// `id`; `Err` says what is malformed. Events at `size` (the audited tree size) and after
    /// are newer than the audit, and not kept.
    fn of_view(
        id: CertificateId,
        view: &serde_json::Value,
        size: u64,
    ) -> Result<ServedStatus, String> {
        use serde_json::Value;
        let status = match view.get("status") {
            Some(Value::String(s)) if s == "valid" => CertStatus::Valid,
            Some(Value::String(s)) if s == "revoked" => CertStatus::Revoked,
            Some(Value::String(s)) if s == "superseded" => CertStatus::Superseded,
            Some(other) => return Err(format!("unknown status {other}")),
            None => return Err("no status".into()),
        };
        let revocation = match view.get("revocation") {
            None | Some(Value::Null) => None,
            Some(r) => Some(
                r.get("index")
                    .and_then(Value::as_u64)
                    .ok_or("a revocation without an entry index")?,
            ),
        };
        let successor = match view.get("superseded_by") {
            None | Some(Value::Null) => None,
            Some(s) => Some(
                s.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("superseded_by {s} is not a certificate ID"))?,
            ),
        };
        let events = view
            .get("events")
            .and_then(Value::as_array)
            .ok_or("no events list")?
            .iter()
            .map(|e| {
                e.get("index")
                    .and_then(Value::as_u64)
                    .ok_or("an event without an entry index")
            })
            .filter(|i| !matches!(i, Ok(i) if *i >= size))
            .collect::<Result<Box<[u64]>, _>>()?;
        // SPEC §6 does not fix the order of a view's events: compared in the log's order.
        let mut events = events;
        events.sort_unstable();
        Ok(ServedStatus {
            id,
            status,
            revocation,
            successor,
            events,
        })
    }
}

/// What a view shows of its events and revocation below the audited `size`: each entry index
/// with the digest of what is shown of it besides the index ([`history_digest`]), to be
/// compared with what the entry says ([`logged_history_digest`]).
fn shown_history(view: &serde_json::Value, size: u64) -> Vec<(u64, Hash)> {
    let events = view.get("events").and_then(serde_json::Value::as_array);
    let revocation = view.get("revocation").filter(|r| !r.is_null());
    events
        .into_iter()
        .flatten()
        .chain(revocation)
        .filter_map(|item| {
            let mut item = item.as_object()?.clone();
            let index = item.remove("index")?.as_u64().filter(|i| *i < size)?;
            Some((index, history_digest(&serde_json::Value::Object(item))))
        })
        .collect()
}

/// A digest of what a certificate view shows of an event or revocation entry besides its
/// index (`integrated_time`, `signer`, and the payload under `event` or `revocation`, as
/// [`crate::query`] shows them), whatever the order of the JSON object keys.
fn history_digest(item: &serde_json::Value) -> Hash {
    use sha2::Digest;
    fn feed(v: &serde_json::Value, h: &mut sha2::Sha256) {
        match v {
            serde_json::Value::Object(m) => {
                let mut fields: Vec<_> = m.iter().collect();
                fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
                h.update(b"{");
                for (k, v) in fields {
                    h.update(serde_json::Value::from(k.as_str()).to_string());
                    h.update(b":");
                    feed(v, h);
                    h.update(b",");
                }
                h.update(b"}");
            }
            serde_json::Value::Array(a) => {
                h.update(b"[");
                for v in a {
                    feed(v, h);
                    h.update(b",");
                }
                h.update(b"]");
            }
            other => h.update(other.to_string()),
        }
    }
    let mut h = sha2::Sha256::new();
    feed(item, &mut h);
    h.finalize().into()
}

/// What a certificate view must show of entry `bytes` (an event or a revocation; `None` for
/// other entries): the digest [`history_digest`] makes of it.
fn logged_history_digest(bytes: &[u8]) -> Option<Hash> {
    let entry = Entry::parse(bytes).ok()?;
    let kind = match payload::parse(&entry.envelope.payload_type, &entry.envelope.payload).ok()? {
        Payload::Event(_) => "event",
        Payload::Revocation(_) => "revocation",
        _ => return None,
    };
    let payload: serde_json::Value = serde_json::from_slice(&entry.envelope.payload).ok()?;
    Some(history_digest(&serde_json::json!({
        "integrated_time": entry.integrated_time(),
        "signer": entry.envelope.signature.keyid.name,
        kind: payload,
    })))
}

/// What the replay of the audited entries established of a certificate's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replayed {
    /// The entry that revoked it.
    revoked_at: Option<u64>,
    /// The certificate that superseded it, and that certificate's entry.
    successor: Option<(CertificateId, u64)>,
}

/// What is false in the status, revocation and successor the server serves for a certificate,
/// against what the replay of the first `size` entries established, if anything. The
/// server answers against its latest tree, which may have grown since the checkpoint audited:
/// a revocation it shows at `size` or after, or a successor the audited entries do not log
/// (`logged_at` gives the entry of a certificate they log), is newer than the audit; the
/// status must then be the one those give (a revocation outranks a supersession, as
/// [`crate::query`] has it).
fn status_problem(
    served: &ServedStatus,
    replayed: Replayed,
    size: u64,
    logged_at: impl Fn(&CertificateId) -> Option<u64>,
) -> Option<String> {
    let shown = served.status.as_str();
    let serves = format!("the server serves certificate {}", served.id);
    match (replayed.revoked_at, served.revocation) {
        (Some(r), Some(x)) if x == r => {}
        (Some(r), _) if served.status != CertStatus::Revoked => {
            return Some(format!("{serves} as {shown}, but entry {r} revoked it"));
        }
        (Some(r), Some(x)) => {
            return Some(format!(
                "{serves} as revoked by entry {x}, but entry {r} revoked it"
            ));
        }
        (Some(r), None) => {
            return Some(format!(
                "{serves} as revoked without its revocation, entry {r}"
            ));
        }
        (None, Some(x)) if x < size => {
            return Some(format!(
                "{serves} as revoked by entry {x}, but entry {x} does not revoke it (none of the {size} entries audited does)"
            ));
        }
        (None, _) => {}
    }
    match (replayed.successor, served.successor) {
        (Some((c, _)), Some(d)) if c == d => {}
        (Some((c, s)), None) if served.status == CertStatus::Valid => {
            return Some(format!(
                "{serves} as valid, but entry {s} (certificate {c}) superseded it"
            ));
        }
        (Some((c, s)), None) => {
            return Some(format!(
                "{serves} as {shown} without its successor, but entry {s} (certificate {c}) superseded it"
            ));
        }
        (Some((c, s)), Some(d)) => {
            return Some(format!(
                "{serves} as superseded by {d}, but entry {s} (certificate {c}) superseded it"
            ));
        }
        (None, Some(d)) => {
            if let Some(at) = logged_at(&d) {
                return Some(format!(
                    "{serves} as superseded by {d}, but {d} (entry {at}) does not supersede it"
                ));
            }
        }
        (None, None) => {}
    }
    // The revocation and successor shown are the log's, or newer than the audit.
    let implied = match (served.revocation, served.successor) {
        (Some(_), _) => CertStatus::Revoked,
        (None, Some(_)) => CertStatus::Superseded,
        (None, None) => CertStatus::Valid,
    };
    if served.status == implied {
        return None;
    }
    let fact = match (served.revocation, replayed.successor, served.successor) {
        (Some(x), ..) if x >= size => format!("it shows a revocation at entry {x}"),
        (Some(x), ..) => format!("entry {x} revoked it"),
        (None, Some((c, s)), _) => format!("entry {s} (certificate {c}) superseded it"),
        (None, None, Some(d)) => format!("it shows {d} as its successor"),
        (None, None, None) => format!(
            "it shows no revocation nor successor, and none of the {size} entries audited revokes or supersedes it"
        ),
    };
    Some(format!("{serves} as {shown}, but {fact}"))
}

/// What is false in the events the server serves for a certificate below the audited size:
/// each must be an event of it in the replay (`is_event`), once, in log order. That none is
/// left out is checked from the replay's side ([`check_served_status`]).
fn served_events_problem(served: &ServedStatus, is_event: impl Fn(u64) -> bool) -> Option<String> {
    let serves = format!("the server serves certificate {}", served.id);
    let mut before: Option<u64> = None;
    for &e in &served.events {
        match before {
            Some(b) if b == e => {
                return Some(format!("{serves} with its event of entry {e} twice"));
            }
            _ => {}
        }
        if !is_event(e) {
            return Some(format!(
                "{serves} with entry {e} as its event, but entry {e} is not an event of it"
            ));
        }
        before = Some(e);
    }
    None
}

/// Compares what the server served of every certificate's status and history (`served`,
/// from [`check_served_views`]) with what the replay of the audited `size` entries established
/// (`replay`): its revocation, its successor, and its events, each of them once (in any order).
/// What the server shows from entry `size` on is newer than the audit and allowed. The
/// certificate of the lowest entry whose view is false is reported.
fn check_served_status(
    replay: &Overlay<'_, Empty>,
    served: &mut [ServedStatus],
    size: u64,
) -> Result<(), AuditError> {
    use state::key;
    let record = |id: &CertificateId| -> Result<state::CertRecord, AuditError> {
        state::certificate(replay, id)
            .map_err(|e| AuditError::Read(e.to_string()))?
            .ok_or_else(|| AuditError::Read(format!("certificate {id} is not in the replay")))
    };
    let logged_at = |id: &CertificateId| record(id).ok().map(|r| r.index);
    // The first problem: (certificate's entry, order within it, what is false). Only it is
    // kept, so that a server that lies about everything does not fill the memory.
    let mut first: Option<(u64, u64, String)> = None;
    let mut note = |index: u64, order: u64, problem: &dyn Fn() -> String| {
        if first
            .as_ref()
            .is_none_or(|(i, o, _)| (index, order) < (*i, *o))
        {
            first = Some((index, order, problem()));
        }
    };
    for s in served.iter() {
        let rec = record(&s.id)?;
        let successor = match rec.superseded_by {
            Some(c) => Some((c, record(&c)?.index)),
            None => None,
        };
        let replayed = Replayed {
            revoked_at: rec.revoked_at,
            successor,
        };
        let is_event = |e: u64| {
            replay
                .get(&key::history(&s.id, e))
                .is_ok_and(|v| v.as_deref() == Some(key::EVENT))
        };
        if let Some(p) = status_problem(s, replayed, size, logged_at)
            .or_else(|| served_events_problem(s, is_event))
        {
            note(rec.index, 0, &|| p.clone());
        }
    }
    // Every event of the replay must be among those served for its certificate (each list
    // sorted by `ServedStatus::of_view`, for the binary search below).
    served.sort_unstable_by_key(|s| s.id);
    for (k, v) in replay.writes() {
        let Some((id, e)) = key::parse_history(k).filter(|_| v == Some(key::EVENT)) else {
            continue;
        };
        let shown = served
            .binary_search_by_key(&id, |s| s.id)
            .is_ok_and(|at| served[at].events.binary_search(&e).is_ok());
        if !shown {
            let problem =
                || format!("the server serves certificate {id} without its event of entry {e}");
            note(record(&id)?.index, 1 + e, &problem);
        }
    }
    first.map_or(Ok(()), |(index, _, problem)| Err(bad(index, problem)))
}

/// Runs `work(i)` for every `i` of `range` on `jobs` threads (each a connection of its own),
/// handing the indices out in order; a thread stops after a result for which `stop` holds, so
/// that a failing server is not asked for everything. The results, in no particular order.
pub(crate) fn in_parallel<R: Send>(
    range: std::ops::Range<u64>,
    jobs: usize,
    work: impl Fn(u64) -> R + Sync,
    stop: impl Fn(&R) -> bool + Sync,
) -> Vec<(u64, R)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let next = AtomicU64::new(range.start);
    let workers = jobs.clamp(1, crate::issue::MAX_JOBS) as u64;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.min(range.end.saturating_sub(range.start)))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= range.end {
                            break;
                        }
                        let r = work(i);
                        let done = stop(&r);
                        out.push((i, r));
                        if done {
                            break;
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Fetches entries `start..end` over `jobs` connections: the entries in order up to the first
/// that could not be fetched, and why that one could not.
fn fetch_range(
    client: &crate::client::Client,
    start: u64,
    end: u64,
    jobs: usize,
    size: u64,
) -> (Vec<crate::client::RemoteEntry>, Option<AuditError>) {
    use crate::client::ClientError;
    let mut got = in_parallel(start..end, jobs, |i| client.entry(i), Result::is_err);
    got.sort_by_key(|(i, _)| *i);
    let mut entries = Vec::with_capacity(got.len());
    for (i, r) in got {
        // A worker that failed stops, so later indices may be absent: stop at any gap.
        if i != start + entries.len() as u64 {
            return (
                entries,
                Some(AuditError::Read(format!("entry {i} was not fetched"))),
            );
        }
        match r {
            Ok(e) => entries.push(e),
            Err(e) => {
                let err = match &e {
                    ClientError::Status { status, .. } if (400..500).contains(status) => {
                        AuditError::Missing { index: i, size }
                    }
                    ClientError::BadAnswer { reason, .. } => {
                        bad(i, format!("the server's answer is malformed: {reason}"))
                    }
                    _ => AuditError::Read(e.to_string()),
                };
                return (entries, Some(err));
            }
        }
    }
    (entries, None)
}

/// The first entry among `leaves[..upto]` whose bytes are not the ones the signed checkpoint
/// covers, found by binary search: the first `m` leaves are genuine exactly when their root
/// is consistent with the signed root (RFC 9162 consistency proof from `m` to the checkpoint's
/// size), and that holds for every `m` up to the first changed entry and for none after.
/// `None` when the first `upto` leaves are all genuine, or the proofs cannot be had.
fn locate_changed(
    client: &crate::client::Client,
    leaves: &[Hash],
    upto: u64,
    cp: &Checkpoint,
) -> Option<u64> {
    let leaves = leaves.get(..usize::try_from(upto).ok()?)?;
    let tree = crate::merkle::MemoryTree::from_leaves(leaves.iter().copied());
    // None when the proof cannot be fetched: then nothing is concluded.
    let genuine = |m: u64| -> Option<bool> {
        let root = merkle::root(m, &tree).ok()?;
        if m == cp.size {
            return Some(root == cp.root);
        }
        let proof = client.consistency_proof(m, cp.size).ok()?;
        Some(merkle::verify_consistency(m, cp.size, &root, &cp.root, &proof).is_ok())
    };
    if upto == 0 || genuine(upto)? {
        return None;
    }
    // Invariant: the first `lo` leaves are genuine, the first `hi` are not.
    let (mut lo, mut hi) = (0u64, upto);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if genuine(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CertStatus::{Revoked, Superseded, Valid};
    use serde_json::json;

    /// The audited tree size.
    const N: u64 = 100;

    fn id(b: u8) -> CertificateId {
        CertificateId([b; 16])
    }

    fn served(
        status: CertStatus,
        revocation: Option<u64>,
        successor: Option<CertificateId>,
        events: &[u64],
    ) -> ServedStatus {
        ServedStatus {
            id: id(1),
            status,
            revocation,
            successor,
            events: events.into(),
        }
    }

    const VALID: Replayed = Replayed {
        revoked_at: None,
        successor: None,
    };
    const REVOKED: Replayed = Replayed {
        revoked_at: Some(60),
        successor: None,
    };
    const SUPERSEDED: Replayed = Replayed {
        revoked_at: None,
        successor: Some((CertificateId([2; 16]), 40)),
    };
    /// Superseded, then revoked.
    const BOTH: Replayed = Replayed {
        revoked_at: Some(60),
        successor: Some((CertificateId([2; 16]), 40)),
    };

    /// Certificate 1's problem, in a replay that logs certificate 2 at entry 40 and not 3.
    fn problem(s: &ServedStatus, r: Replayed) -> Option<String> {
        status_problem(s, r, N, |c| (*c == id(2)).then_some(40))
    }

    fn says(s: &ServedStatus, r: Replayed, what: &str) {
        let p = problem(s, r).unwrap_or_else(|| panic!("{s:?} against {r:?} passes"));
        let id = id(1);
        assert_eq!(p, format!("the server serves certificate {id} {what}"));
    }

    #[test]
    fn the_served_status_revocation_and_successor_are_the_replayed_ones() {
        let two = id(2);
        assert_eq!(problem(&served(Valid, None, None, &[]), VALID), None);
        assert_eq!(
            problem(&served(Revoked, Some(60), None, &[]), REVOKED),
            None
        );
        let s = served(Superseded, None, Some(two), &[]);
        assert_eq!(problem(&s, SUPERSEDED), None);
        assert_eq!(
            problem(&served(Revoked, Some(60), Some(two), &[]), BOTH),
            None
        );
        // Hidden.
        let valid = served(Valid, None, None, &[]);
        says(&valid, REVOKED, "as valid, but entry 60 revoked it");
        says(&valid, BOTH, "as valid, but entry 60 revoked it");
        let s = served(Superseded, None, Some(two), &[]);
        says(&s, BOTH, "as superseded, but entry 60 revoked it");
        let what = format!("as valid, but entry 40 (certificate {two}) superseded it");
        says(&valid, SUPERSEDED, &what);
        // The status alone changed: told by what the log says.
        says(&served(Valid, None, Some(two), &[]), SUPERSEDED, &what);
        let s = served(Revoked, Some(60), None, &[]);
        let what = format!(
            "as revoked without its successor, but entry 40 (certificate {two}) superseded it"
        );
        says(&s, BOTH, &what);
        // Other ones than the log's.
        let s = served(Revoked, Some(61), None, &[]);
        says(
            &s,
            REVOKED,
            "as revoked by entry 61, but entry 60 revoked it",
        );
        let s = served(Revoked, None, None, &[]);
        says(&s, REVOKED, "as revoked without its revocation, entry 60");
        let s = served(Superseded, None, Some(id(3)), &[]);
        let what = format!(
            "as superseded by {}, but entry 40 (certificate {two}) superseded it",
            id(3)
        );
        says(&s, SUPERSEDED, &what);
        // Made up.
        let what = "as revoked by entry 60, but entry 60 does not revoke it (none of the 100 entries audited does)";
        says(&served(Revoked, Some(60), None, &[]), VALID, what);
        let s = served(Superseded, None, Some(two), &[]);
        let what = format!("as superseded by {two}, but {two} (entry 40) does not supersede it");
        says(&s, VALID, &what);
        let what = "as revoked, but it shows no revocation nor successor, and none of the 100 entries audited revokes or supersedes it";
        says(&served(Revoked, None, None, &[]), VALID, what);
        says(
            &served(Superseded, None, None, &[]),
            VALID,
            "as superseded, but it shows no revocation nor successor, and none of the 100 entries audited revokes or supersedes it",
        );
    }

    /// The server answers against its latest tree: what it shows from entry N on is newer
    /// than the audit.
    #[test]
    fn what_is_newer_than_the_audited_tree_is_no_lie() {
        let (two, three) = (id(2), id(3));
        assert_eq!(problem(&served(Revoked, Some(N), None, &[]), VALID), None);
        let s = served(Revoked, Some(N + 5), Some(two), &[]);
        assert_eq!(problem(&s, SUPERSEDED), None);
        // A successor the audited entries do not log is logged after them.
        assert_eq!(
            problem(&served(Superseded, None, Some(three), &[]), VALID),
            None
        );
        let s = served(Revoked, Some(N + 5), Some(three), &[]);
        assert_eq!(problem(&s, VALID), None);
        // The status must still be the one they give.
        let s = served(Valid, Some(N), None, &[]);
        says(
            &s,
            VALID,
            "as valid, but it shows a revocation at entry 100",
        );
        let s = served(Valid, None, Some(three), &[]);
        says(
            &s,
            VALID,
            &format!("as valid, but it shows {three} as its successor"),
        );
        // A certificate is revoked once: a newer revocation of a revoked one is false.
        let s = served(Revoked, Some(N), None, &[]);
        says(
            &s,
            REVOKED,
            "as revoked by entry 100, but entry 60 revoked it",
        );
        // Events from entry N on are not kept.
        let view = serde_json::json!({"status": "valid", "revocation": null,
            "events": [{"index": 5}, {"index": N}, {"index": 7}, {"index": N + 1}]});
        let s = ServedStatus::of_view(id(1), &view, N).unwrap();
        assert_eq!(s, served(Valid, None, None, &[5, 7]));
    }

    #[test]
    fn malformed_views_are_refused() {
        use serde_json::json;
        let two = id(2).to_string();
        let upper = id(0xab).to_string().to_uppercase();
        for (view, says) in [
            (
                json!({"status": "void", "events": []}),
                "unknown status \"void\"",
            ),
            (json!({"status": 3, "events": []}), "unknown status 3"),
            (json!({"events": []}), "no status"),
            (
                json!({"status": "revoked", "revocation": {"reason": "fraud"}, "events": []}),
                "a revocation without an entry index",
            ),
            (
                json!({"status": "revoked", "revocation": {"index": "7"}, "events": []}),
                "a revocation without an entry index",
            ),
            (
                json!({"status": "valid", "events": [{"index": 5}, {"at": 6}]}),
                "an event without an entry index",
            ),
            (json!({"status": "valid"}), "no events list"),
            (
                json!({"status": "superseded", "superseded_by": upper, "events": []}),
                &format!("superseded_by \"{upper}\" is not a certificate ID"),
            ),
        ] {
            assert_eq!(ServedStatus::of_view(id(1), &view, N).unwrap_err(), says);
        }
        let view = json!({"status": "superseded", "superseded_by": two, "revocation": {"index": 9},
            "events": [{"index": 4}]});
        let s = ServedStatus::of_view(id(1), &view, N).unwrap();
        assert_eq!(s, served(Superseded, Some(9), Some(id(2)), &[4]));
    }

    #[test]
    fn served_events_are_events_of_it_once_each() {
        let is_event = |e: u64| [5, 7, 9].contains(&e);
        let check =
            |events: &[u64]| served_events_problem(&served(Valid, None, None, events), is_event);
        assert_eq!(check(&[5, 7, 9]), None);
        // One left out is found from the replay's side (check_served_status).
        assert_eq!(check(&[5, 9]), None);
        let serves = format!("the server serves certificate {}", id(1));
        let twice = format!("{serves} with its event of entry 7 twice");
        assert_eq!(check(&[5, 7, 7, 9]), Some(twice));
        // Served in any order, they are compared in the log's.
        let view = serde_json::json!({"status": "valid", "events": [{"index": 9}, {"index": 5}, {"index": 7}]});
        let s = ServedStatus::of_view(id(1), &view, N).unwrap();
        assert_eq!(&*s.events, &[5, 7, 9]);
        assert_eq!(served_events_problem(&s, is_event), None);
        let other =
            format!("{serves} with entry 6 as its event, but entry 6 is not an event of it");
        assert_eq!(check(&[5, 6, 7]), Some(other));
    }

    /// What a view shows of an event is compared whatever the order of its JSON keys, and
    /// any changed value counts.
    #[test]
    fn history_digests_ignore_key_order_only() {
        let a = json!({"signer": "s", "integrated_time": "t",
            "event": {"event": "shipped", "location": {"country": "CN", "place": "P"}, "n": [1, 2.5]}});
        let b = json!({"event": {"n": [1, 2.5], "location": {"place": "P", "country": "CN"},
            "event": "shipped"}, "integrated_time": "t", "signer": "s"});
        assert_eq!(history_digest(&a), history_digest(&b));
        let mut c = b.clone();
        c["event"]["event"] = "customs_released".into();
        assert_ne!(history_digest(&a), history_digest(&c));
        let mut d = b.clone();
        d["event"]["n"] = json!([2.5, 1]);
        assert_ne!(history_digest(&a), history_digest(&d));
        let view = json!({"events": [json!({"index": 4}).as_object().unwrap().clone()
            .into_iter().chain(a.as_object().unwrap().clone()).collect::<serde_json::Map<_, _>>(),
            {"index": 12, "signer": "late"}], "revocation": null});
        assert_eq!(shown_history(&view, 10), vec![(4, history_digest(&a))]);
    }

    /// Kept for every certificate until the replay is whole: 72 bytes and its events.
    #[test]
    fn what_is_kept_of_a_served_view_is_small() {
        assert!(std::mem::size_of::<ServedStatus>() <= 72);
    }
}

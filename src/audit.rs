//! Audit: re-verifies a whole log from its entries alone, trusting nothing else.
//!
//! The [`Auditor`] is fed the entries in order and checks, for each: the canonical entry form,
//! its index, the hash chain (`prev`), the leaf hash the tree recorded for it (when the source
//! has one), the payload rules, the signer's registration and role in force at that point of
//! the log, the envelope signature under the key in force, and the business rules (replayed
//! with the same [`crate::state`] functions the sequencer uses). At the end it checks the
//! Merkle root of the entries against the signed checkpoint. The first bad index is reported.
//! A local store's kept seal signatures, which lookups serve, are checked too ([`check_seals`]).
//!
//! The auditor is pure; [`audit_store`] feeds it from a local store, and a remote auditor can
//! feed it entries fetched over HTTP.

use crate::certificate::CertificateId;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::entry::Entry;
use crate::keys::PublicKey;
use crate::merkle::{self, Hash, NodeId, TreeBuilder};
use crate::payload::{self, Payload};
use crate::state::{self, Accepted, Empty, Overlay, StateRead};
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
    /// The Merkle nodes completed so far, when kept ([`Auditor::resume`]).
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
/// checkpoint: they are checked too, entry by entry, and reported ([`CatchingUp`]).
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
    let mut auditor = Auditor::new();
    let mut audit = |auditor: &mut Auditor, from: u64, to: u64| {
        audit_stored(store, auditor, from, to, key, &cp.origin, |done| {
            progress(done, total);
        })
    };
    audit(&mut auditor, 0, cp.size)?;
    let mut report = auditor.check_root(&checkpoint, key)?;
    if let Some((stored, target_size)) = target {
        audit(&mut auditor, cp.size, stored)?;
        report.catching_up = Some(CatchingUp {
            entries: stored - cp.size,
            target_size,
        });
    }
    Ok(report)
}

/// Feeds entries `from..to` of `store`, with their kept seals, to `auditor`.
fn audit_stored(
    store: &Store,
    auditor: &mut Auditor,
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
        for i in next..end {
            let read = || -> Result<_, StoreError> {
                let recorded = store.node(NodeId { level: 0, index: i })?;
                Ok((store.entry(i)?, recorded, store.seal_signature(i)?))
            };
            let (bytes, recorded, seal) = match read() {
                Ok((Some(bytes), recorded, seal)) => (bytes, recorded, seal),
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
/// [`Auditor`], and the seal served for each certificate is checked as [`check_seals`] checks
/// a store's (one more request per certificate). Returns the report and the log key used.
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
        check_served_seals(client, next, &chunk, &key, &cp.origin, jobs)?;
        next = end;
        progress(next, cp.size);
    }
    match auditor.finish(&checkpoint, &key) {
        Ok(report) => {
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

/// Checks the seal the server serves for each certificate entry of `entries` (the entries
/// from `start`), over `jobs` connections: the remote counterpart of [`check_seals`]. The seal
/// in `GET /api/v1/certificates/{id}` is what a lookup and the status page show, so it must be
/// this entry's (index, time, certificate) and verify under `log_key` for this origin and the
/// certificate's unit. The first bad index is reported; a server that cannot be asked is
/// [`AuditError::Read`].
fn check_served_seals(
    client: &crate::client::Client,
    start: u64,
    entries: &[(Vec<u8>, Option<Hash>)],
    log_key: &PublicKey,
    origin: &str,
    jobs: usize,
) -> Result<(), AuditError> {
    let certificates: Vec<SealFacts> = (start..)
        .zip(entries)
        .filter_map(|(index, (bytes, _))| SealFacts::of(index, bytes)?.ok())
        .collect();
    let checked = in_parallel(
        0..certificates.len() as u64,
        jobs,
        |k| {
            let facts = &certificates[k as usize];
            let served = served_seal(client, facts.index, &facts.certificate_id)?;
            if served != facts.seal(log_key, served.signature) {
                return Err(bad(
                    facts.index,
                    "the seal the server serves for it is not its entry's (index, time, certificate or log key differ)",
                ));
            }
            facts.verify(&served, log_key, origin).map_err(|e| {
                bad(
                    facts.index,
                    format!("the seal the server serves for it is not valid ({e})"),
                )
            })
        },
        |_| false,
    );
    let mut failures: Vec<AuditError> = checked.into_iter().filter_map(|(_, r)| r.err()).collect();
    // A server that cannot be asked stops the audit as unfinished, whatever else was found.
    failures.sort_by_key(|e| (!matches!(e, AuditError::Read(_)), e.index()));
    failures.into_iter().next().map_or(Ok(()), Err)
}

/// The seal the server serves for certificate `id`, logged at `index`.
fn served_seal(
    client: &crate::client::Client,
    index: u64,
    id: &CertificateId,
) -> Result<crate::seal::Seal, AuditError> {
    use crate::client::ClientError;
    let view = match client.certificate(&id.to_string()) {
        Ok(v) => v,
        Err(ClientError::Status { status, .. }) if (400..500).contains(&status) => {
            return Err(bad(
                index,
                format!("the server does not serve its certificate {id} (HTTP {status})"),
            ));
        }
        Err(ClientError::BadAnswer { reason, .. }) => {
            return Err(bad(
                index,
                format!("the server's answer for its certificate is malformed: {reason}"),
            ));
        }
        Err(e) => return Err(AuditError::Read(e.to_string())),
    };
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

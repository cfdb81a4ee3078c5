//! Checking a remote ledger's receipt (SPEC §6, the answer to `POST /api/v1/entries`) against
//! a pinned log key, trusting nothing the server said.
//!
//! A receipt is worth something only when: its checkpoint is signed by the pinned log key; its
//! inclusion proof is against that very checkpoint and proves its leaf hash at its index; the
//! entry at that index is the envelope that was submitted (its bytes hash to that leaf hash);
//! and, for a certificate, the seal is signed by the log key for the submitted certificate's
//! GTIN and serial, names the same index and certificate ID, and the QR URL carries that seal.
//! These are pure functions; the client fetches, this module judges.

use crate::certificate::CertificateId;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::dsse::Envelope;
use crate::entry::{self, Entry};
use crate::keys::PublicKey;
use crate::merkle::{self, Hash, MerkleError};
use crate::payload::Payload;
use crate::seal::{self, Seal, SealError};
use serde::Deserialize;
use serde_json::Value;

/// Why a receipt is not a valid proof that the submission was logged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReceiptError {
    /// The answer does not have the receipt's shape.
    #[error("the receipt is malformed: {0}")]
    Malformed(String),
    /// The checkpoint is not signed by the pinned log key (or does not parse).
    #[error("the receipt's checkpoint does not verify under the pinned log key: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The inclusion proof is against another tree than the checkpoint beside it.
    #[error(
        "the inclusion proof is for tree size {proof_size}, root {proof_root}, but the signed checkpoint has size {size}, root {root}"
    )]
    ProofNotForCheckpoint {
        /// The proof's tree size.
        proof_size: u64,
        /// The proof's root (hex).
        proof_root: String,
        /// The checkpoint's size.
        size: u64,
        /// The checkpoint's root (hex).
        root: String,
    },
    /// The inclusion proof does not prove the leaf hash at the index.
    #[error("the inclusion proof of entry {index} does not verify: {source}")]
    Inclusion {
        /// The entry index.
        index: u64,
        /// Why.
        source: MerkleError,
    },
    /// The entry served at the index is not the submitted envelope, or not the proven leaf.
    #[error("entry {index}: {problem}")]
    Entry {
        /// The entry index.
        index: u64,
        /// What is wrong.
        problem: String,
    },
    /// A certificate's receipt lacks its seal.
    #[error("the receipt of a certificate has no seal")]
    MissingSeal,
    /// The seal does not verify for the submitted certificate.
    #[error("the seal does not verify for this certificate: {0}")]
    Seal(#[from] SealError),
    /// The seal, the certificate ID or the QR URL disagree with the receipt or the submission.
    #[error("the receipt contradicts itself or the submission: {0}")]
    Mismatch(String),
}

/// The inclusion proof of a receipt: against the checkpoint returned beside it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReceiptProof {
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The checkpoint's root.
    #[serde(with = "crate::ledger::hex_hash")]
    pub root: Hash,
    /// The RFC 9162 proof path, hex.
    pub proof: Vec<String>,
}

/// A receipt as a remote ledger answered it (unverified).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteReceipt {
    /// The entry index.
    pub index: u64,
    /// The entry's leaf hash.
    #[serde(with = "crate::ledger::hex_hash")]
    pub leaf_hash: Hash,
    /// When the log sequenced the entry (RFC 3339 UTC, milliseconds).
    pub integrated_time: String,
    /// The certificate ID, for certificates.
    #[serde(default)]
    pub certificate_id: Option<String>,
    /// The seal (base64url), for certificates.
    #[serde(default)]
    pub seal: Option<String>,
    /// The QR content, for certificates.
    #[serde(default)]
    pub qr_url: Option<String>,
    /// For a certificate, its status now (`valid`, `revoked`, `superseded`): not signed, the
    /// ledger's word.
    #[serde(default)]
    pub status: Option<String>,
    /// For a party registration, whether it is the one in force now: not signed, the
    /// ledger's word.
    #[serde(default)]
    pub in_force: Option<bool>,
    /// The signed checkpoint.
    pub checkpoint: String,
    /// The inclusion proof against that checkpoint.
    pub inclusion_proof: ReceiptProof,
}

impl RemoteReceipt {
    /// Why what the answer stands for is no longer in force, when the ledger says so: a
    /// certificate revoked or superseded, a registration replaced since.
    pub fn not_in_force(&self) -> Option<String> {
        match (&self.status, self.in_force) {
            (Some(status), _) if status != "valid" => Some(format!(
                "the certificate is {status}: its label would scan as {status}"
            )),
            (_, Some(false)) => Some(
                "a later registration of the party replaced it, so it is not in force; logging \
                 the same envelope again changes nothing: to register the party this way \
                 again, change the payload (for example its `extensions`) and sign it"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl RemoteReceipt {
    /// Reads a receipt from the server's JSON answer.
    pub fn from_json(v: &Value) -> Result<RemoteReceipt, ReceiptError> {
        RemoteReceipt::deserialize(v).map_err(|e| ReceiptError::Malformed(e.to_string()))
    }
}

/// What a verified receipt establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// The signed checkpoint that includes the entry.
    pub checkpoint: Checkpoint,
    /// The verified seal, for certificates.
    pub seal: Option<Seal>,
}

/// Checks a receipt for `envelope` (whose checked payload is `payload`) under the pinned
/// `log_key`: checkpoint signature, inclusion of the leaf hash, and for a certificate the
/// seal, certificate ID and QR URL. `entry_bytes`, the entry the server serves at the
/// receipt's index, ties the proven leaf hash to the submitted envelope; without it, the
/// proof shows only that *some* entry is logged there.
pub fn verify(
    receipt: &RemoteReceipt,
    log_key: &PublicKey,
    envelope: &Envelope,
    payload: &Payload,
    entry_bytes: Option<&[u8]>,
) -> Result<VerifiedReceipt, ReceiptError> {
    let cp = Checkpoint::open(&receipt.checkpoint, log_key)?;
    let p = &receipt.inclusion_proof;
    if p.tree_size != cp.size || p.root != cp.root {
        return Err(ReceiptError::ProofNotForCheckpoint {
            proof_size: p.tree_size,
            proof_root: hex::encode(p.root),
            size: cp.size,
            root: hex::encode(cp.root),
        });
    }
    let proof: Vec<Hash> = p
        .proof
        .iter()
        .map(|h| crate::client::parse_hash(h))
        .collect::<Option<_>>()
        .ok_or_else(|| ReceiptError::Malformed("the proof holds a non-hash".into()))?;
    merkle::verify_inclusion(&receipt.leaf_hash, receipt.index, cp.size, &proof, &cp.root)
        .map_err(|source| ReceiptError::Inclusion {
            index: receipt.index,
            source,
        })?;
    let time_ms = entry::parse_time_ms(&receipt.integrated_time).ok_or_else(|| {
        ReceiptError::Malformed(format!(
            "integrated_time {:?} is not RFC 3339 UTC with milliseconds",
            receipt.integrated_time
        ))
    })?;
    if let Some(bytes) = entry_bytes {
        check_entry(receipt, envelope, time_ms, bytes)?;
    }
    let seal = match payload {
        Payload::Certificate(c) => Some(check_seal(
            receipt,
            log_key,
            envelope,
            &c.product.gtin,
            &c.product.serial,
            time_ms,
        )?),
        _ => None,
    };
    Ok(VerifiedReceipt {
        checkpoint: cp,
        seal,
    })
}

/// The entry at the receipt's index must hash to its leaf hash and hold the submitted envelope.
fn check_entry(
    receipt: &RemoteReceipt,
    envelope: &Envelope,
    time_ms: u64,
    bytes: &[u8],
) -> Result<(), ReceiptError> {
    let index = receipt.index;
    let bad = |problem: &str| ReceiptError::Entry {
        index,
        problem: problem.to_owned(),
    };
    if merkle::leaf_hash(bytes) != receipt.leaf_hash {
        return Err(bad(
            "the entry served there does not hash to the receipt's leaf hash",
        ));
    }
    let e = Entry::parse(bytes).map_err(|e| bad(&format!("the entry does not parse: {e}")))?;
    if e.index != index {
        return Err(bad(&format!("the entry says it is entry {}", e.index)));
    }
    if e.envelope.digest() != envelope.digest() {
        return Err(bad(
            "the entry holds another envelope than the one submitted",
        ));
    }
    if e.integrated_time_ms != time_ms {
        return Err(bad(
            "the entry's integrated_time differs from the receipt's",
        ));
    }
    Ok(())
}

fn check_seal(
    receipt: &RemoteReceipt,
    log_key: &PublicKey,
    envelope: &Envelope,
    gtin: &str,
    serial: &str,
    time_ms: u64,
) -> Result<Seal, ReceiptError> {
    let text = receipt.seal.as_deref().ok_or(ReceiptError::MissingSeal)?;
    let s = Seal::from_base64url(text)?;
    s.verify(log_key, log_key.name(), gtin, serial)?;
    let id = CertificateId::of_payload(&envelope.payload);
    let mismatch = |what: String| Err(ReceiptError::Mismatch(what));
    if s.index != receipt.index {
        return mismatch(format!(
            "the seal names entry {}, the receipt entry {}",
            s.index, receipt.index
        ));
    }
    if s.certificate_id != id.0 {
        return mismatch(format!(
            "the seal names certificate {}, the submitted certificate is {id}",
            hex::encode(s.certificate_id)
        ));
    }
    if s.integrated_time != time_ms / 1000 {
        return mismatch("the seal's time differs from the receipt's integrated_time".into());
    }
    if receipt.certificate_id.as_deref() != Some(id.to_string().as_str()) {
        return mismatch(format!(
            "the receipt names certificate {:?}, the submitted certificate is {id}",
            receipt.certificate_id
        ));
    }
    if let Some(url) = &receipt.qr_url {
        let link = seal::parse_digital_link(url)?;
        if link.gtin != gtin || link.serial != serial || link.seal != Some(s) {
            return mismatch(format!(
                "the QR URL {url} does not carry this unit's GTIN, serial and seal"
            ));
        }
    }
    Ok(s)
}

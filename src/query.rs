//! The read side of the ledger: certificates with their status, history and proof, products,
//! parties, entries and proofs, in the JSON shapes of SPEC §6.
//!
//! Every answer is built from O(log n) sled reads plus the entries it shows; nothing here
//! scans the log.

use crate::certificate::CertificateId;
use crate::entry::Entry;
use crate::ledger::{Head, InclusionProof, Ledger, hex_hash};
use crate::merkle::{self, Hash};
use crate::seal;
use crate::state::{self, CertRecord, CertStatus, StateRead};
use crate::tiles::Tile;
use crate::tlog_proof::TlogProof;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Why a query has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// Nothing with that name or number is logged (404).
    #[error("{0}")]
    NotFound(String),
    /// The question itself is invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// It is logged, but the checkpoint answers are made against does not cover it yet (503:
    /// ask again in a moment), e.g. while the witnesses have not cosigned a newer one.
    #[error("{0}")]
    NotYet(String),
    /// The ledger failed to read its own storage (500).
    #[error("ledger storage: {0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> QueryError {
    QueryError::Internal(e.to_string())
}

/// Checks that `(gtin, serial)` can name a unit: a GTIN-14 with its check digit and a GS1
/// AI 21 serial, as every logged certificate has (SPEC §3.2). Anything else is malformed, and
/// must not be looked up: the unit key is the two side by side, which only a GTIN of exactly
/// 14 digits keeps unambiguous (a 13-digit "GTIN" would read another unit's record).
pub fn check_unit(gtin: &str, serial: &str) -> Result<(), QueryError> {
    if !crate::gs1::gtin14_is_valid(gtin) {
        return Err(QueryError::BadRequest(format!(
            "GTIN {gtin:?} is not a GTIN-14: 14 digits, the last one the GS1 check digit"
        )));
    }
    if !crate::gs1::is_valid_serial(serial) {
        return Err(QueryError::BadRequest(format!(
            "serial {serial:?} is not a GS1 serial (AI 21): 1 to 20 characters of the GS1 \
             character set (letters, digits and !\"%&'()*+,-./:;<=>?_)"
        )));
    }
    Ok(())
}

/// A revocation or event entry in a certificate's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    /// Entry index.
    pub index: u64,
    /// When it was logged.
    pub integrated_time: String,
    /// The signer's party name.
    pub signer: String,
    /// The payload (SPEC §3.3 or §3.4).
    #[serde(flatten)]
    pub body: Value,
}

/// The issuer of a certificate, as shown beside it.
#[derive(Debug, Clone, Serialize)]
pub struct Issuer {
    /// Party name.
    pub name: String,
    /// Display name, if registered.
    pub display_name: Option<String>,
    /// Country, if registered.
    pub country: Option<String>,
}

/// A certificate with its status, history and proof: `GET /api/v1/certificates/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateView {
    /// The certificate ID.
    pub certificate_id: CertificateId,
    /// valid, revoked or superseded.
    pub status: CertStatus,
    /// The certificate payload, byte for byte as signed (embedded, not re-encoded).
    pub certificate: Box<serde_json::value::RawValue>,
    /// Who signed it.
    pub issuer: Issuer,
    /// Entry index.
    pub index: u64,
    /// When it was logged.
    pub integrated_time: String,
    /// The seal, base64url.
    pub seal: String,
    /// The QR content, when the ledger knows its base URL.
    pub qr_url: Option<String>,
    /// Events, oldest first.
    pub events: Vec<HistoryItem>,
    /// The revocation, if revoked.
    pub revocation: Option<HistoryItem>,
    /// The certificate this one replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<CertificateId>,
    /// The certificate that replaced this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<CertificateId>,
    /// Inclusion proof of the entry against `checkpoint`.
    pub inclusion_proof: InclusionProof,
    /// The signed checkpoint.
    pub checkpoint: String,
    /// The unit's GTIN (also inside `certificate`).
    #[serde(skip)]
    pub gtin: String,
    /// The unit's serial (also inside `certificate`).
    #[serde(skip)]
    pub serial: String,
}

impl Ledger {
    fn entry_at(&self, index: u64) -> Result<(sled::IVec, Entry), QueryError> {
        let bytes = self
            .store()
            .entry(index)
            .map_err(internal)?
            .ok_or_else(|| QueryError::Internal(format!("entry {index} missing")))?;
        let entry = Entry::parse_stored(&bytes).map_err(internal)?;
        Ok((bytes, entry))
    }

    fn proof_against(&self, index: u64, head: &Head) -> Result<InclusionProof, QueryError> {
        Ok(InclusionProof {
            tree_size: head.size,
            root: head.root,
            proof: merkle::inclusion_proof(index, head.size, self.store()).map_err(internal)?,
        })
    }

    fn view(
        &self,
        id: &CertificateId,
        rec: CertRecord,
        head: &Head,
    ) -> Result<CertificateView, QueryError> {
        let store = self.store();
        let (_, entry) = self.entry_at(rec.index)?;
        /// The one field of the payload the view needs besides the payload itself.
        #[derive(serde::Deserialize)]
        struct Supersedes<'a> {
            #[serde(borrow)]
            supersedes: Option<std::borrow::Cow<'a, str>>,
        }
        let supersedes = match rec.known {
            Some(k) => k.supersedes,
            None => serde_json::from_slice::<Supersedes>(&entry.envelope.payload)
                .map_err(internal)?
                .supersedes
                .and_then(|s| s.parse().ok()),
        };
        let integrated_time = entry.integrated_time();
        let certificate = String::from_utf8(entry.envelope.payload)
            .map_err(internal)
            .and_then(|text| serde_json::value::RawValue::from_string(text).map_err(internal))?;
        let party = match store.party_record(&rec.issuer).map_err(internal)? {
            Some(p) => self.party_at(p, head)?,
            None => None,
        };
        let issuer = Issuer {
            name: rec.issuer.clone(),
            display_name: party.as_ref().and_then(|p| p.party.display_name.clone()),
            country: party.as_ref().and_then(|p| p.party.country.clone()),
        };
        let seal = self.seal_of(id, &rec).map_err(internal)?;
        let qr_url = self
            .base_url()
            .map(|b| seal::qr_url(b, &rec.gtin, &rec.serial, &seal));
        let mut events = Vec::new();
        let mut revocation = None;
        // Records of layout format 4 say whether there is any history to look for.
        let history = if rec.known.is_some_and(|k| !k.has_history) {
            Vec::new()
        } else {
            store
                .scan_state(&state::key::history_prefix(id))
                .map_err(internal)?
        };
        for (k, kind) in history {
            let index = k
                .get(k.len().saturating_sub(8)..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| QueryError::Internal("history key".into()))?;
            if index >= head.size {
                continue;
            }
            let (_, e) = self.entry_at(index)?;
            let item = HistoryItem {
                index,
                integrated_time: e.integrated_time(),
                signer: e.envelope.signature.keyid.name.clone(),
                body: json!({ if &*kind == b"revocation" { "revocation" } else { "event" }:
                    serde_json::from_slice::<Value>(&e.envelope.payload).map_err(internal)? }),
            };
            if &*kind == b"revocation" {
                revocation = Some(item);
            } else {
                events.push(item);
            }
        }
        let (status, superseded_by) = self.status_at(&rec, head)?;
        Ok(CertificateView {
            certificate_id: *id,
            status,
            certificate,
            issuer,
            index: rec.index,
            integrated_time,
            seal: seal.to_base64url(),
            qr_url,
            events,
            revocation,
            supersedes,
            superseded_by,
            inclusion_proof: self.proof_against(rec.index, head)?,
            checkpoint: head.checkpoint.to_string(),
            gtin: rec.gtin,
            serial: rec.serial,
        })
    }

    /// A certificate's status and successor as of `head`. The records may already hold a group
    /// commit that is written but not yet flushed and published; an answer leaves out what the
    /// checkpoint beside it does not cover (a revocation, a superseding certificate, an event,
    /// filtered where the view is built), so that its status, history and proof describe one tree,
    /// and nobody is shown a change that a crash before the flush would undo.
    fn status_at(
        &self,
        rec: &CertRecord,
        head: &Head,
    ) -> Result<(CertStatus, Option<CertificateId>), QueryError> {
        let superseded_by = match rec.superseded_by {
            Some(next) => state::certificate(self.store(), &next)
                .map_err(internal)?
                .filter(|r| r.index < head.size)
                .map(|_| next),
            None => None,
        };
        let before_revocation = if superseded_by.is_some() {
            CertStatus::Superseded
        } else {
            CertStatus::Valid
        };
        let status = match rec.status {
            // Revoked in a commit the checkpoint does not cover yet.
            CertStatus::Revoked if rec.revoked_at.is_some_and(|i| i >= head.size) => {
                before_revocation
            }
            CertStatus::Revoked => CertStatus::Revoked,
            CertStatus::Superseded | CertStatus::Valid => before_revocation,
        };
        Ok((status, superseded_by))
    }

    /// A certificate with its status, history and an inclusion proof against the latest checkpoint.
    ///
    /// A certificate whose group commit is written but not yet flushed and published (its
    /// record is readable, the checkpoint does not cover it yet) is not logged as far as
    /// readers know: it is not found until its submitter has been answered.
    pub fn certificate(&self, id: &CertificateId) -> Result<CertificateView, QueryError> {
        let head = self.served_head();
        let rec = self.covered_certificate(id, &head)?;
        self.view(id, rec, &head)
    }

    /// A certificate's record, if `head` covers its entry (see [`Ledger::certificate`]).
    fn covered_certificate(
        &self,
        id: &CertificateId,
        head: &Head,
    ) -> Result<CertRecord, QueryError> {
        match state::certificate(self.store(), id).map_err(internal)? {
            Some(r) if r.index < head.size => Ok(r),
            // Durable, but not yet covered by the checkpoint served (witnesses). One whose
            // commit is still being written is not logged yet: a crash would undo it.
            Some(r) if r.index < self.durable_size() => Err(QueryError::NotYet(format!(
                "certificate {id} is logged (entry {}), but the checkpoint answers are made against covers {} entries: ask again in a moment",
                r.index, head.size
            ))),
            _ => Err(QueryError::NotFound(format!(
                "certificate {id} is not in the log"
            ))),
        }
    }

    /// A certificate's entry as a C2SP tlog-proof (SPEC §8) against the latest checkpoint,
    /// the exact entry bytes in its `extra` line: whoever holds it and the log key can check
    /// offline that the ledger logged this certificate ([`crate::tlog_proof`]).
    pub fn certificate_proof(&self, id: &CertificateId) -> Result<TlogProof, QueryError> {
        let head = self.served_head();
        let rec = self.covered_certificate(id, &head)?;
        let (bytes, _) = self.entry_at(rec.index)?;
        Ok(TlogProof {
            extra: Some(bytes.to_vec()),
            index: rec.index,
            proof: self.proof_against(rec.index, &head)?.proof,
            checkpoint: head.checkpoint.to_string(),
        })
    }

    /// Every certificate of a unit, newest first (those the latest checkpoint covers: see
    /// [`Ledger::certificate`]).
    pub fn product(&self, gtin: &str, serial: &str) -> Result<Vec<CertificateView>, QueryError> {
        check_unit(gtin, serial)?;
        let head = self.served_head();
        let mut out = Vec::new();
        let unit = state::unit(self.store(), gtin, serial).map_err(internal)?;
        let latest = self.durable_size();
        let mut logged = false;
        for id in unit.certificates {
            let rec = state::certificate(self.store(), &id)
                .map_err(internal)?
                .ok_or_else(|| QueryError::Internal(format!("certificate {id} record missing")))?;
            logged |= rec.index < latest;
            if rec.index < head.size {
                out.push(self.view(&id, rec, &head)?);
            }
        }
        if out.is_empty() && logged {
            return Err(QueryError::NotYet(format!(
                "a certificate of GTIN {gtin}, serial {serial} is logged, but the checkpoint answers are made against does not cover it yet: ask again in a moment"
            )));
        }
        if out.is_empty() {
            return Err(QueryError::NotFound(format!(
                "no certificate is logged for GTIN {gtin}, serial {serial}"
            )));
        }
        out.reverse();
        Ok(out)
    }

    fn party_json(rec: &state::PartyRecord) -> Value {
        let mut v = serde_json::to_value(&rec.party).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.insert("index".into(), rec.index.into());
        }
        v
    }

    /// A party's registration as of `head`: `rec`, its current one, unless that is in a group
    /// commit the checkpoint does not cover yet (see [`Ledger::status_at`]); then the one
    /// before it, read back from the log (none if it had none).
    fn party_at(
        &self,
        rec: Arc<state::PartyRecord>,
        head: &Head,
    ) -> Result<Option<Arc<state::PartyRecord>>, QueryError> {
        if rec.index < head.size {
            return Ok(Some(rec));
        }
        let history = self
            .store()
            .scan_state(&state::key::party_history_prefix(&rec.party.name))
            .map_err(internal)?;
        let before = history
            .iter()
            .filter_map(|(k, _)| k.get(k.len().checked_sub(8)?..)?.try_into().ok())
            .map(u64::from_be_bytes)
            .filter(|&i| i < head.size)
            .max();
        let Some(index) = before else {
            return Ok(None);
        };
        let (_, e) = self.entry_at(index)?;
        match crate::payload::parse(&e.envelope.payload_type, &e.envelope.payload) {
            Ok(crate::payload::Payload::Party(party)) => {
                Ok(Some(Arc::new(state::PartyRecord { index, party })))
            }
            _ => Err(QueryError::Internal(format!(
                "entry {index}, a registration of {}, is not a party entry",
                rec.party.name
            ))),
        }
    }

    /// The registered parties (the trust list), by name.
    pub fn parties(&self) -> Result<Vec<Value>, QueryError> {
        let head = self.served_head();
        let mut out = Vec::new();
        for (k, v) in self.store().scan_state(b"p").map_err(internal)? {
            let rec = state::decode_party(&k, &v).map_err(internal)?;
            if let Some(rec) = self.party_at(Arc::new(rec), &head)? {
                out.push(Self::party_json(&rec));
            }
        }
        Ok(out)
    }

    /// One party's current registration (as of the latest checkpoint).
    pub fn party(&self, name: &str) -> Result<Value, QueryError> {
        let head = self.served_head();
        let not_registered = || QueryError::NotFound(format!("party {name} is not registered"));
        let rec = self
            .store()
            .party_record(name)
            .map_err(internal)?
            .ok_or_else(not_registered)?;
        let rec = self.party_at(rec, &head)?.ok_or_else(not_registered)?;
        Ok(Self::party_json(&rec))
    }

    /// An entry: `{index, leaf (base64 of the exact bytes), leaf_hash, entry (parsed)}`.
    pub fn entry_json(&self, index: u64) -> Result<Value, QueryError> {
        let size = self.head().size;
        if index >= size {
            return Err(QueryError::NotFound(format!(
                "entry {index} does not exist: the log has {size} entries"
            )));
        }
        let (bytes, _) = self.entry_at(index)?;
        let parsed: Value = serde_json::from_slice(&bytes).map_err(internal)?;
        Ok(json!({
            "index": index,
            "leaf": base64::engine::general_purpose::STANDARD.encode(&bytes),
            "leaf_hash": hex::encode(merkle::leaf_hash(&bytes)),
            "entry": parsed,
        }))
    }

    /// An inclusion proof of entry `index` in the tree of `tree_size` entries.
    pub fn inclusion_json(&self, index: u64, tree_size: u64) -> Result<Value, QueryError> {
        let size = self.head().size;
        if tree_size > size {
            return Err(QueryError::NotFound(format!(
                "tree size {tree_size} is beyond the log's {size} entries"
            )));
        }
        if index >= tree_size {
            return Err(QueryError::BadRequest(format!(
                "index {index} is not below tree_size {tree_size}"
            )));
        }
        let leaf: Hash = self
            .store()
            .node(merkle::NodeId { level: 0, index })
            .map_err(internal)?
            .ok_or_else(|| QueryError::Internal(format!("leaf {index} missing")))?;
        let proof = merkle::inclusion_proof(index, tree_size, self.store()).map_err(internal)?;
        Ok(json!({
            "index": index,
            "tree_size": tree_size,
            "leaf_hash": hex::encode(leaf),
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        }))
    }

    /// A consistency proof between two tree sizes.
    pub fn consistency_json(&self, first: u64, second: u64) -> Result<Value, QueryError> {
        let size = self.head().size;
        if second > size {
            return Err(QueryError::NotFound(format!(
                "tree size {second} is beyond the log's {size} entries"
            )));
        }
        if first > second {
            return Err(QueryError::BadRequest(format!(
                "first ({first}) must not exceed second ({second})"
            )));
        }
        let proof = merkle::consistency_proof(first, second, self.store()).map_err(internal)?;
        Ok(json!({
            "first": first,
            "second": second,
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        }))
    }

    /// What a verifier pins: `{origin, log_key, tree_size, root}`.
    pub fn log_json(&self) -> Value {
        #[derive(Serialize)]
        struct Log<'a> {
            origin: &'a str,
            log_key: String,
            tree_size: u64,
            #[serde(with = "hex_hash")]
            root: Hash,
        }
        let head = self.served_head();
        serde_json::to_value(Log {
            origin: self.origin(),
            log_key: self.log_key().to_vkey(),
            tree_size: head.size,
            root: head.root,
        })
        .unwrap_or(Value::Null)
    }

    /// A `tlog-tiles` resource (SPEC §8) of the tree the latest checkpoint covers: a Merkle
    /// tile's hashes back to back, or an entry bundle. Not found while that tree does not
    /// have all of it; the answer then names the partial tile it does have, if any.
    pub fn tile(&self, tile: &Tile) -> Result<Vec<u8>, QueryError> {
        let size = self.head().size;
        if !tile.is_in(size) {
            let has = tile.available_width(size);
            let hint = if has > 0 && has < u64::from(tile.width) {
                let partial = Tile {
                    width: has as u16,
                    ..*tile
                };
                format!("; it has {}", partial.path())
            } else {
                String::new()
            };
            return Err(QueryError::NotFound(format!(
                "{} is not in the log's tree of {size} entries{hint}",
                tile.path()
            )));
        }
        self.store()
            .tile(tile, size)
            .map_err(internal)?
            .ok_or_else(|| QueryError::Internal(format!("{} is missing", tile.path())))
    }

    /// The seal tile beside an entry bundle ([`Tile::seal_path`]): for each entry of the
    /// bundle, its seal signature if it is a certificate (kept, or signed again), 64 zero
    /// bytes otherwise. Not found while the tree does not have the bundle.
    pub fn seal_tile(&self, tile: &Tile) -> Result<Vec<u8>, QueryError> {
        let size = self.head().size;
        let range = tile.entries().filter(|_| tile.is_in(size)).ok_or_else(|| {
            QueryError::NotFound(format!(
                "{} is not in the log's tree of {size} entries",
                tile.seal_path()
            ))
        })?;
        let kept = self
            .store()
            .seal_signatures(range.clone())
            .map_err(internal)?;
        let mut out = Vec::with_capacity(kept.len() * crate::tiles::SEAL_BYTES);
        for (index, kept) in range.zip(kept) {
            let sig = match kept {
                Some(sig) => sig,
                // Not kept: a certificate logged before seals were kept, or another entry.
                None => self.seal_of_entry(index)?.unwrap_or([0; 64]),
            };
            out.extend_from_slice(&sig);
        }
        Ok(out)
    }

    /// The seal signature of entry `index` if it is a certificate.
    fn seal_of_entry(&self, index: u64) -> Result<Option<[u8; 64]>, QueryError> {
        let Some(id) = self.entry_at(index)?.1.certificate_id() else {
            return Ok(None);
        };
        Ok(self.seal(&id).map_err(internal)?.map(|s| s.signature))
    }
}

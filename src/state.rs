//! The ledger's derived state, and the rules of SPEC §3 that depend on it.
//!
//! What the log has already accepted (registered parties, certificates and their status, the
//! valid certificate of each unit, logged envelopes) is kept as key-value records. The rules
//! that need that state, the signer's registration and role, duplicates, supersession,
//! revocation, events on revoked certificates, are plain functions over a [`StateRead`] view:
//! the sequencer runs them over sled plus the batch being built, and `audit` runs the very same
//! functions over an in-memory replay of the log. Each accepted submission yields the list of
//! writes that brings the state up to date.

use crate::certificate::CertificateId;
use crate::keys::{KeyRef, PublicKey};
use crate::merkle::Hash;
use crate::party::{Party, PartyStatus, Role};
use crate::payload::{Payload, PayloadType};
use crate::records::Records;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A failure to read the state: the storage failed or holds a record it cannot decode.
#[derive(Debug, Clone, thiserror::Error)]
#[error("ledger state unreadable: {0}")]
pub struct ReadError(pub String);

/// Read access to the state records.
pub trait StateRead {
    /// The record under `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError>;

    /// A party's current registration. Stores may cache the decoded record.
    fn party_record(&self, name: &str) -> Result<Option<Arc<PartyRecord>>, ReadError> {
        let k = key::party(name);
        self.get(&k)?
            .map(|v| decode_party(&k, &v).map(Arc::new))
            .transpose()
    }
}

/// One change to the state: a value to store, or `None` to delete the key.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// Key layout of the state records. Each kind has its own first byte.
pub mod key {
    use super::*;

    /// Current registration of a party, by name.
    pub fn party(name: &str) -> Vec<u8> {
        [b"p", name.as_bytes()].concat()
    }
    /// Prefix of all registrations of a party (`r` name 0x00 index).
    pub fn party_history_prefix(name: &str) -> Vec<u8> {
        [b"r", name.as_bytes(), b"\0"].concat()
    }
    /// One registration of a party, by entry index.
    pub fn party_history(name: &str, index: u64) -> Vec<u8> {
        [party_history_prefix(name), index.to_be_bytes().to_vec()].concat()
    }
    /// A certificate's record, by ID.
    pub fn certificate(id: &CertificateId) -> Vec<u8> {
        [b"c".as_slice(), &id.0].concat()
    }
    /// A unit's certificates, by (gtin, serial). The GTIN has a fixed length (a GTIN-14,
    /// checked at admission and, for lookups, by [`crate::query::check_unit`]), so the key is
    /// unambiguous.
    pub fn unit(gtin: &str, serial: &str) -> Vec<u8> {
        [b"u", gtin.as_bytes(), serial.as_bytes()].concat()
    }
    /// Prefix of the revocation and event entries that refer to a certificate.
    pub fn history_prefix(id: &CertificateId) -> Vec<u8> {
        [b"v".as_slice(), &id.0].concat()
    }
    /// One revocation or event entry of a certificate, by entry index.
    pub fn history(id: &CertificateId, index: u64) -> Vec<u8> {
        [history_prefix(id), index.to_be_bytes().to_vec()].concat()
    }
    /// The value under a [`history`] key for an event entry.
    pub const EVENT: &[u8] = b"event";
    /// The value under a [`history`] key for a revocation entry.
    pub const REVOCATION: &[u8] = b"revocation";
    /// The certificate and entry index a [`history`] key names; `None` for any other key.
    pub fn parse_history(key: &[u8]) -> Option<(CertificateId, u64)> {
        let rest = key.strip_prefix(b"v")?;
        let (id, index) = rest.split_first_chunk::<16>()?;
        Some((
            CertificateId(*id),
            u64::from_be_bytes(index.try_into().ok()?),
        ))
    }
    /// The entry index of a logged envelope, by envelope digest (certificates are found
    /// through their record instead).
    pub fn envelope(digest: &Hash) -> Vec<u8> {
        [b"h".as_slice(), digest].concat()
    }
}

/// Status of a certificate (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertStatus {
    /// The unit's valid certificate.
    Valid,
    /// Revoked by its issuer or the operator.
    Revoked,
    /// Replaced by a newer certificate of the same issuer for the same unit.
    Superseded,
}

impl CertStatus {
    /// The lowercase name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Valid => "valid",
            CertStatus::Revoked => "revoked",
            CertStatus::Superseded => "superseded",
        }
    }
}

/// The certificates of one physical unit (gtin, serial).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnitRecord {
    /// The unit's valid certificate, if any (at most one: SPEC §3.2).
    pub valid: Option<CertificateId>,
    /// Every certificate of the unit, oldest first.
    pub certificates: Vec<CertificateId>,
}

/// The current registration of a party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartyRecord {
    /// Entry index of this registration.
    pub index: u64,
    /// The registration itself.
    pub party: Party,
}

/// What the ledger knows of a certificate beyond its payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertRecord {
    /// Entry index of the certificate.
    pub index: u64,
    /// When it was logged, Unix milliseconds (the seal carries it in seconds).
    pub integrated_time_ms: u64,
    /// Name of the remanufacturer that signed it.
    pub issuer: String,
    /// The unit's GTIN-14.
    pub gtin: String,
    /// The unit's serial number.
    pub serial: String,
    /// Current status.
    pub status: CertStatus,
    /// The certificate that replaced it, when superseded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<CertificateId>,
    /// Entry index of its revocation, when revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// Digest of the logged envelope: a resubmission of it is answered with this entry.
    #[serde(with = "crate::ledger::hex_hash")]
    pub envelope_digest: Hash,
    /// What a lookup needs that only the log would otherwise tell; `None` in records written
    /// before layout format 4, whose lookups read the payload and scan the history instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<Known>,
}

/// What a certificate record of layout format 4 or later keeps so that a lookup need not read
/// it elsewhere.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Known {
    /// Whether any revocation or event entry refers to the certificate: most have none, and
    /// a lookup then skips the history scan.
    pub has_history: bool,
    /// The certificate its payload names as the one it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<CertificateId>,
}

/// Why the state refuses a submission. Each maps to one HTTP status of SPEC §6.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuleError {
    /// The signer is not a registered party.
    #[error("unknown signer {0}: register the party (operator-signed party entry) first")]
    UnknownSigner(KeyRef),
    /// The signer's name is registered with another key.
    #[error("signer {signer} is not the key in force for {name} (registered key {current})")]
    NotCurrentKey {
        /// The reference the envelope names.
        signer: KeyRef,
        /// The party name.
        name: String,
        /// The registered key.
        current: KeyRef,
    },
    /// The signer is suspended.
    #[error("party {0} is suspended and may not sign")]
    Suspended(String),
    /// The signer's role may not sign this payload.
    #[error("party {name} has role {role}, which may not sign {what}")]
    RoleNotAllowed {
        /// The party name.
        name: String,
        /// Its role.
        role: Role,
        /// What it tried to sign.
        what: String,
    },
    /// A remanufacturer tried to revoke another issuer's certificate.
    #[error(
        "certificate {certificate} was issued by {issuer}; only its issuer or the operator may revoke it"
    )]
    NotIssuer {
        /// The certificate.
        certificate: CertificateId,
        /// Its issuer.
        issuer: String,
    },
    /// An operator's registration of itself that leaves it without the operator role or
    /// suspends it: another operator must sign that, so that one always remains.
    #[error(
        "{0} is an operator and may not demote or suspend itself: another operator must sign that registration, so that the ledger keeps an operator who can register parties"
    )]
    OperatorDemotesItself(String),
    /// The log is empty and this is not the operator's self-registration.
    #[error("the first entry must register the operator (role operator, signed by its own key)")]
    GenesisRequired,
    /// The certificate is not in the log.
    #[error("certificate {0} is not in the log")]
    UnknownCertificate(CertificateId),
    /// The certificate is revoked.
    #[error("certificate {0} is revoked")]
    Revoked(CertificateId),
    /// A certificate with the same ID (the same payload) is already logged.
    #[error("certificate {0} is already logged")]
    CertificateExists(CertificateId),
    /// The unit already has a valid certificate.
    #[error(
        "unit {gtin}/{serial} already has valid certificate {current}; a new one must supersede it and be signed by its issuer"
    )]
    UnitHasValidCertificate {
        /// GTIN.
        gtin: String,
        /// Serial.
        serial: String,
        /// The valid certificate.
        current: CertificateId,
    },
    /// `supersedes` names a certificate that cannot be superseded by this one.
    #[error("supersedes names {named}, which {why}")]
    BadSupersede {
        /// The named certificate.
        named: CertificateId,
        /// Why it cannot be superseded.
        why: String,
    },
    /// The state could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The broad class of a refusal; the HTTP layer maps it to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// 400: the request is not well-formed.
    Malformed,
    /// 401: bad signature or unknown signer.
    Unauthorized,
    /// 403: role not allowed or party suspended.
    Forbidden,
    /// 404: refers to something unknown.
    NotFound,
    /// 409: conflicts with the log's history.
    Conflict,
    /// 413: too large.
    TooLarge,
    /// 422: well-formed but invalid content.
    Invalid,
    /// 405: a read-only mirror takes no submissions.
    ReadOnly,
    /// 500: the ledger failed.
    Internal,
}

impl RefusalKind {
    /// The HTTP status code of SPEC §6.
    pub fn status(self) -> u16 {
        match self {
            RefusalKind::Malformed => 400,
            RefusalKind::Unauthorized => 401,
            RefusalKind::Forbidden => 403,
            RefusalKind::NotFound => 404,
            RefusalKind::Conflict => 409,
            RefusalKind::TooLarge => 413,
            RefusalKind::Invalid => 422,
            RefusalKind::ReadOnly => 405,
            RefusalKind::Internal => 500,
        }
    }

    /// A short stable name, for metrics and problem types.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Malformed => "malformed",
            RefusalKind::Unauthorized => "unauthorized",
            RefusalKind::Forbidden => "forbidden",
            RefusalKind::NotFound => "not_found",
            RefusalKind::Conflict => "conflict",
            RefusalKind::TooLarge => "too_large",
            RefusalKind::Invalid => "invalid",
            RefusalKind::ReadOnly => "read_only",
            RefusalKind::Internal => "internal",
        }
    }
}

impl RuleError {
    /// The class of this refusal.
    pub fn kind(&self) -> RefusalKind {
        match self {
            RuleError::UnknownSigner(_) | RuleError::NotCurrentKey { .. } => {
                RefusalKind::Unauthorized
            }
            RuleError::Suspended(_)
            | RuleError::RoleNotAllowed { .. }
            | RuleError::NotIssuer { .. }
            | RuleError::OperatorDemotesItself(_)
            | RuleError::GenesisRequired => RefusalKind::Forbidden,
            RuleError::UnknownCertificate(_) => RefusalKind::NotFound,
            RuleError::Revoked(_)
            | RuleError::CertificateExists(_)
            | RuleError::UnitHasValidCertificate { .. }
            | RuleError::BadSupersede { .. } => RefusalKind::Conflict,
            RuleError::Read(_) => RefusalKind::Internal,
        }
    }
}

/// The first byte of a record in binary form. JSON records start with `{`.
const BINARY: u8 = 1;

/// How a record is stored. The two records every certificate has ([`CertRecord`] and
/// [`UnitRecord`]) have a compact binary form (≈ 100 and ≈ 36 bytes instead of ≈ 230 and ≈ 90
/// as JSON): they are most of the state, and every append rewrites the storage buckets that
/// hold them. Other records are JSON. JSON records written by earlier versions are still read.
trait Record: Serialize + for<'de> Deserialize<'de> {
    /// The binary form, version byte first, if the record has one.
    fn to_binary(&self) -> Option<Vec<u8>> {
        None
    }
    /// Reads the binary form (after the version byte).
    fn from_binary(_: &mut Bytes<'_>) -> Option<Self> {
        None
    }
}

fn decode<T: Record>(key: &[u8], bytes: &[u8]) -> Result<T, ReadError> {
    let corrupt = |e: &dyn std::fmt::Display| {
        ReadError(format!(
            "record {} is corrupt: {e}",
            String::from_utf8_lossy(key)
        ))
    };
    if let Some(rest) = bytes.strip_prefix(&[BINARY]) {
        let mut r = Bytes(rest);
        return T::from_binary(&mut r)
            .filter(|_| r.0.is_empty())
            .ok_or_else(|| corrupt(&"binary form truncated or malformed"));
    }
    serde_json::from_slice(bytes).map_err(|e| corrupt(&e))
}

fn encode<T: Record>(value: &T) -> Vec<u8> {
    // Records are plain data structures: serialization cannot fail.
    value
        .to_binary()
        .unwrap_or_else(|| serde_json::to_vec(value).unwrap_or_default())
}

/// A reader over a binary record.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }
    fn id(&mut self) -> Option<CertificateId> {
        Some(CertificateId(self.array()?))
    }
    fn str(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

/// Appends a string with its u16 length; `None` when it is too long for that.
fn put_str(out: &mut Vec<u8>, s: &str) -> Option<()> {
    out.extend_from_slice(&u16::try_from(s.len()).ok()?.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Some(())
}

impl Record for PartyRecord {}

/// `index, integrated_time_ms, status, flags (1: superseded_by follows, 2: revoked_at
/// follows, 4: [`Known`] is recorded, 8: it has history, 16: its `supersedes` follows),
/// envelope_digest, [superseded_by], [revoked_at], [supersedes], issuer, gtin, serial`.
/// (Flags above 3 are format 4: earlier versions refuse such a record as damaged.)
impl Record for CertRecord {
    fn to_binary(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(128);
        out.push(BINARY);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.integrated_time_ms.to_be_bytes());
        out.push(match self.status {
            CertStatus::Valid => 0,
            CertStatus::Revoked => 1,
            CertStatus::Superseded => 2,
        });
        let known = self.known.map_or(0, |k| {
            4 | (u8::from(k.has_history) << 3) | (u8::from(k.supersedes.is_some()) << 4)
        });
        out.push(
            u8::from(self.superseded_by.is_some())
                | (u8::from(self.revoked_at.is_some()) << 1)
                | known,
        );
        out.extend_from_slice(&self.envelope_digest);
        if let Some(id) = &self.superseded_by {
            out.extend_from_slice(&id.0);
        }
        if let Some(at) = self.revoked_at {
            out.extend_from_slice(&at.to_be_bytes());
        }
        if let Some(id) = self.known.and_then(|k| k.supersedes) {
            out.extend_from_slice(&id.0);
        }
        put_str(&mut out, &self.issuer)?;
        put_str(&mut out, &self.gtin)?;
        put_str(&mut out, &self.serial)?;
        Some(out)
    }

    fn from_binary(r: &mut Bytes<'_>) -> Option<Self> {
        let index = r.u64()?;
        let integrated_time_ms = r.u64()?;
        let status = match r.u8()? {
            0 => CertStatus::Valid,
            1 => CertStatus::Revoked,
            2 => CertStatus::Superseded,
            _ => return None,
        };
        let flags = r.u8()?;
        // Without bit 4, bits 8 and 16 mean nothing: such a record is damaged.
        if flags > 31 || (flags & 4 == 0 && flags > 3) {
            return None;
        }
        let envelope_digest = r.array()?;
        let superseded_by = if flags & 1 != 0 { Some(r.id()?) } else { None };
        let revoked_at = if flags & 2 != 0 { Some(r.u64()?) } else { None };
        let known = if flags & 4 != 0 {
            Some(Known {
                has_history: flags & 8 != 0,
                supersedes: if flags & 16 != 0 { Some(r.id()?) } else { None },
            })
        } else {
            None
        };
        Some(CertRecord {
            index,
            integrated_time_ms,
            issuer: r.str()?,
            gtin: r.str()?,
            serial: r.str()?,
            status,
            superseded_by,
            revoked_at,
            envelope_digest,
            known,
        })
    }
}

/// `flags (1: valid follows), [valid], u32 count, certificates`.
impl Record for UnitRecord {
    fn to_binary(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(22 + 16 * self.certificates.len());
        out.push(BINARY);
        out.push(u8::from(self.valid.is_some()));
        if let Some(id) = &self.valid {
            out.extend_from_slice(&id.0);
        }
        out.extend_from_slice(&u32::try_from(self.certificates.len()).ok()?.to_be_bytes());
        for id in &self.certificates {
            out.extend_from_slice(&id.0);
        }
        Some(out)
    }

    fn from_binary(r: &mut Bytes<'_>) -> Option<Self> {
        let valid = match r.u8()? {
            0 => None,
            1 => Some(r.id()?),
            _ => return None,
        };
        let n = u32::from_be_bytes(r.array()?) as usize;
        if n > r.0.len() / 16 {
            return None;
        }
        let certificates = (0..n).map(|_| r.id()).collect::<Option<Vec<_>>>()?;
        Some(UnitRecord {
            valid,
            certificates,
        })
    }
}

/// Decodes a stored party record.
pub fn decode_party(key: &[u8], bytes: &[u8]) -> Result<PartyRecord, ReadError> {
    decode(key, bytes)
}

/// What the state record under `key` is about, in words, for audit reports.
pub fn record_name(key: &[u8]) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let index = |b: &[u8]| <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes);
    let id = |b: &[u8]| <[u8; 16]>::try_from(b).ok().map(CertificateId);
    let (kind, rest) = key.split_first().unwrap_or((&0, &[]));
    let named = match kind {
        b'p' => Some(format!("the current registration of party {}", text(rest))),
        b'r' => rest
            .split_last_chunk::<9>()
            .filter(|(_, tail)| tail[0] == 0)
            .and_then(|(name, tail)| {
                Some(format!(
                    "party {}'s registration at entry {}",
                    text(name),
                    index(&tail[1..])?
                ))
            }),
        b'c' => id(rest).map(|id| format!("the record of certificate {id}")),
        b'u' if rest.len() >= 14 => Some(format!(
            "the certificates of unit {}/{}",
            text(&rest[..14]),
            text(&rest[14..])
        )),
        b'v' => key::parse_history(key)
            .map(|(id, at)| format!("entry {at} in the history of certificate {id}")),
        b'h' => Some(format!("the entry of envelope {}", hex::encode(rest))),
        _ => None,
    };
    named.unwrap_or_else(|| format!("record {}", text(key)))
}

/// What differs between a stored state record and the one a replay of the log makes under
/// `key`, in words; `None` when they say the same. Records are compared by meaning, not by
/// bytes: stores converted from earlier layouts keep some records in JSON, and certificate
/// records without [`Known`] (written before format 4; lookups then read the log instead).
pub fn record_difference(
    key: &[u8],
    stored: &[u8],
    replayed: &[u8],
) -> Result<Option<String>, ReadError> {
    fn field<T: PartialEq + std::fmt::Debug>(
        out: &mut Vec<String>,
        name: &str,
        stored: &T,
        replayed: &T,
    ) {
        if stored != replayed {
            out.push(format!(
                "{name} is {stored:?} in the store, {replayed:?} by the log"
            ));
        }
    }
    let mut out = Vec::new();
    match key.first() {
        Some(b'c') => {
            let (s, mut r): (CertRecord, CertRecord) =
                (decode(key, stored)?, decode(key, replayed)?);
            if s.known.is_none() {
                r.known = None;
            }
            field(&mut out, "index", &s.index, &r.index);
            field(
                &mut out,
                "integrated time",
                &s.integrated_time_ms,
                &r.integrated_time_ms,
            );
            field(&mut out, "issuer", &s.issuer, &r.issuer);
            field(
                &mut out,
                "unit",
                &(&s.gtin, &s.serial),
                &(&r.gtin, &r.serial),
            );
            field(&mut out, "status", &s.status, &r.status);
            field(&mut out, "successor", &s.superseded_by, &r.superseded_by);
            field(&mut out, "revocation entry", &s.revoked_at, &r.revoked_at);
            field(
                &mut out,
                "envelope digest",
                &hex::encode(s.envelope_digest),
                &hex::encode(r.envelope_digest),
            );
            field(&mut out, "what lookups know of it", &s.known, &r.known);
        }
        Some(b'u') => {
            let (s, r): (UnitRecord, UnitRecord) = (decode(key, stored)?, decode(key, replayed)?);
            field(&mut out, "valid certificate", &s.valid, &r.valid);
            field(&mut out, "certificates", &s.certificates, &r.certificates);
        }
        Some(b'p') => {
            let (s, r): (PartyRecord, PartyRecord) = (decode(key, stored)?, decode(key, replayed)?);
            field(&mut out, "registration entry", &s.index, &r.index);
            field(&mut out, "registration", &s.party, &r.party);
        }
        Some(b'h') => {
            let entry = |v: &[u8]| match <[u8; 8]>::try_from(v) {
                Ok(b) => format!("entry {}", u64::from_be_bytes(b)),
                Err(_) => format!("0x{}", hex::encode(v)),
            };
            field(&mut out, "value", &entry(stored), &entry(replayed));
        }
        _ => field(
            &mut out,
            "value",
            &String::from_utf8_lossy(stored),
            &String::from_utf8_lossy(replayed),
        ),
    }
    Ok((!out.is_empty()).then(|| out.join("; ")))
}

/// Reads a certificate's record.
pub fn certificate<R: StateRead + ?Sized>(
    view: &R,
    id: &CertificateId,
) -> Result<Option<CertRecord>, ReadError> {
    let k = key::certificate(id);
    view.get(&k)?.map(|v| decode(&k, &v)).transpose()
}

/// Reads the entry index of an already logged envelope. A certificate is found through its
/// record (`certificate_id` given), anything else through the envelope index.
pub fn logged_envelope<R: StateRead + ?Sized>(
    view: &R,
    digest: &Hash,
    certificate_id: Option<&CertificateId>,
) -> Result<Option<u64>, ReadError> {
    if let Some(id) = certificate_id {
        return Ok(certificate(view, id)?
            .filter(|r| r.envelope_digest == *digest)
            .map(|r| r.index));
    }
    let k = key::envelope(digest);
    match view.get(&k)? {
        None => Ok(None),
        Some(v) => {
            let b: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| ReadError("envelope index record is corrupt".into()))?;
            Ok(Some(u64::from_be_bytes(b)))
        }
    }
}

/// Reads the certificates of a unit.
pub fn unit<R: StateRead + ?Sized>(
    view: &R,
    gtin: &str,
    serial: &str,
) -> Result<UnitRecord, ReadError> {
    let k = key::unit(gtin, serial);
    Ok(view
        .get(&k)?
        .map(|v| decode(&k, &v))
        .transpose()?
        .unwrap_or_default())
}

/// Reads the valid certificate of a unit.
pub fn unit_valid<R: StateRead + ?Sized>(
    view: &R,
    gtin: &str,
    serial: &str,
) -> Result<Option<CertificateId>, ReadError> {
    Ok(unit(view, gtin, serial)?.valid)
}

/// What the payload is, for messages.
fn describe(payload: &Payload) -> String {
    match payload {
        Payload::Party(_) => "party registrations".into(),
        Payload::Certificate(_) => "certificates".into(),
        Payload::Revocation(_) => "revocations".into(),
        Payload::Event(e) => format!("{} events", e.event.as_str()),
    }
}

/// Who may revoke a certificate (SPEC §3.3): the remanufacturer that issued it, or an operator.
pub fn may_revoke(signer: &str, role: Role, issuer: &str) -> bool {
    role == Role::Operator || signer == issuer
}

/// Finds the key a submission must be verified with, and checks that its signer is a
/// registered, active party whose role may sign this payload. For the first entry of an empty
/// log, the key is the one the operator's self-registration carries.
pub fn signer_key<R: StateRead + ?Sized>(
    view: &R,
    tree_size: u64,
    signer: &KeyRef,
    payload: &Payload,
) -> Result<(PublicKey, Role), RuleError> {
    if tree_size == 0 {
        return match payload {
            Payload::Party(p)
                if p.role == Role::Operator
                    && p.status == PartyStatus::Active
                    && p.key.reference() == *signer =>
            {
                Ok((p.key.clone(), Role::Operator))
            }
            _ => Err(RuleError::GenesisRequired),
        };
    }
    let rec = registered_signer(view, signer)?;
    let p = &rec.party;
    if !payload.role_may_sign(p.role) {
        return Err(RuleError::RoleNotAllowed {
            name: p.name.clone(),
            role: p.role,
            what: describe(payload),
        });
    }
    Ok((p.key.clone(), p.role))
}

/// The checks of [`signer_key`] that need only the envelope, for a log that is not empty: the
/// signer is a registered, active party under this key, and its role may sign this type of
/// payload (for events, some kind of event). Admission runs them before the signature and the
/// payload, so that a forged or unauthorised envelope is refused as such (401, 403) whatever
/// it carries, at the cost of a lookup.
pub fn signer_for_type<R: StateRead + ?Sized>(
    view: &R,
    signer: &KeyRef,
    payload_type: PayloadType,
) -> Result<(PublicKey, Role), RuleError> {
    let rec = registered_signer(view, signer)?;
    let p = &rec.party;
    if !payload_type.signer_roles().contains(&p.role) {
        return Err(RuleError::RoleNotAllowed {
            name: p.name.clone(),
            role: p.role,
            what: match payload_type {
                PayloadType::Party => "party registrations",
                PayloadType::Certificate => "certificates",
                PayloadType::Revocation => "revocations",
                PayloadType::Event => "events",
            }
            .into(),
        });
    }
    Ok((p.key.clone(), p.role))
}

/// The registration in force of a signer: refused when the name is unknown, registered with
/// another key, or suspended.
fn registered_signer<R: StateRead + ?Sized>(
    view: &R,
    signer: &KeyRef,
) -> Result<Arc<PartyRecord>, RuleError> {
    let rec = view
        .party_record(&signer.name)?
        .ok_or_else(|| RuleError::UnknownSigner(signer.clone()))?;
    let p = &rec.party;
    if p.key.reference() != *signer {
        return Err(RuleError::NotCurrentKey {
            signer: signer.clone(),
            name: p.name.clone(),
            current: p.key.reference(),
        });
    }
    if p.status == PartyStatus::Suspended {
        return Err(RuleError::Suspended(p.name.clone()));
    }
    Ok(rec)
}

/// A submission that passed the stateless checks and its signature, ready for the rules.
pub struct Accepted<'a> {
    /// The signer's party name.
    pub signer: &'a str,
    /// The signer's role at admission.
    pub role: Role,
    /// The parsed payload.
    pub payload: &'a Payload,
    /// The certificate ID, for certificate payloads.
    pub certificate_id: Option<CertificateId>,
    /// The envelope digest, for idempotent resubmission.
    pub digest: Hash,
    /// The log's time for the entry, Unix milliseconds.
    pub time_ms: u64,
    /// A new submission, which the ledger's admission policy applies to as well as SPEC §3:
    /// rules added since entries were first logged (an operator may not demote itself; a
    /// re-issue names the unit's latest certificate) hold for what the ledger accepts now,
    /// not for entries a log already holds, which audits and mirrors replay (`false`).
    pub admission: bool,
}

/// Applies the business rules of SPEC §3 (duplicates, supersession, revocation, events on
/// revoked certificates) to a submission about to become entry `index`, and returns the
/// writes that record it. Nothing is written when it is refused.
pub fn apply<R: StateRead + ?Sized>(
    view: &R,
    sub: &Accepted<'_>,
    index: u64,
) -> Result<Vec<Write>, RuleError> {
    let mut w: Vec<Write> = Vec::with_capacity(4);
    if sub.certificate_id.is_none() {
        w.push((
            key::envelope(&sub.digest),
            Some(index.to_be_bytes().to_vec()),
        ));
    }
    match sub.payload {
        Payload::Party(p) => {
            // Party entries are signed by an active operator: as long as none demotes or
            // suspends itself, one is always left to register parties and revoke.
            if sub.admission
                && p.name == sub.signer
                && (p.role != Role::Operator || p.status != PartyStatus::Active)
            {
                return Err(RuleError::OperatorDemotesItself(p.name.clone()));
            }
            let rec = PartyRecord {
                index,
                party: p.clone(),
            };
            w.push((key::party(&p.name), Some(encode(&rec))));
            w.push((key::party_history(&p.name, index), Some(Vec::new())));
        }
        Payload::Certificate(c) => {
            let id = sub
                .certificate_id
                .ok_or_else(|| ReadError("certificate submitted without its ID".into()))?;
            let (gtin, serial) = (c.product.gtin.as_str(), c.product.serial.as_str());
            if certificate(view, &id)?.is_some() {
                return Err(RuleError::CertificateExists(id));
            }
            let mut unit_rec = unit(view, gtin, serial)?;
            let current = unit_rec.valid;
            if let Some(named) = c.supersedes {
                let old = certificate(view, &named)?.ok_or_else(|| RuleError::BadSupersede {
                    named,
                    why: "is not in the log".into(),
                })?;
                if old.gtin != gtin || old.serial != serial {
                    return Err(RuleError::BadSupersede {
                        named,
                        why: format!("certifies another unit ({}/{})", old.gtin, old.serial),
                    });
                }
                if old.issuer != sub.signer {
                    return Err(RuleError::BadSupersede {
                        named,
                        why: format!("was issued by {}, not by {}", old.issuer, sub.signer),
                    });
                }
                match current {
                    Some(cur) if cur == named => {
                        let mut old = old;
                        old.status = CertStatus::Superseded;
                        old.superseded_by = Some(id);
                        w.push((key::certificate(&named), Some(encode(&old))));
                    }
                    Some(cur) => {
                        return Err(RuleError::BadSupersede {
                            named,
                            why: format!("is not the unit's valid certificate ({cur} is)"),
                        });
                    }
                    // Re-issuing after a revocation may name the revoked certificate, the
                    // unit's latest, which stays as it is; naming an earlier one would fork
                    // the unit's chain of supersessions.
                    None => {
                        let latest = unit_rec.certificates.last().copied();
                        if sub.admission && latest != Some(named) {
                            return Err(RuleError::BadSupersede {
                                named,
                                why: match latest {
                                    Some(latest) => format!(
                                        "is not the unit's latest certificate ({latest} is, revoked): \
                                         name that one, or nothing"
                                    ),
                                    None => "is not among the unit's certificates".into(),
                                },
                            });
                        }
                    }
                }
            } else if let Some(current) = current {
                return Err(RuleError::UnitHasValidCertificate {
                    gtin: gtin.to_owned(),
                    serial: serial.to_owned(),
                    current,
                });
            }
            let rec = CertRecord {
                index,
                integrated_time_ms: sub.time_ms,
                issuer: sub.signer.to_owned(),
                gtin: gtin.to_owned(),
                serial: serial.to_owned(),
                status: CertStatus::Valid,
                superseded_by: None,
                revoked_at: None,
                envelope_digest: sub.digest,
                known: Some(Known {
                    has_history: false,
                    supersedes: c.supersedes,
                }),
            };
            w.push((key::certificate(&id), Some(encode(&rec))));
            unit_rec.valid = Some(id);
            unit_rec.certificates.push(id);
            w.push((key::unit(gtin, serial), Some(encode(&unit_rec))));
        }
        Payload::Revocation(r) => {
            let id = r.certificate_id;
            let mut rec = certificate(view, &id)?.ok_or(RuleError::UnknownCertificate(id))?;
            if rec.status == CertStatus::Revoked {
                return Err(RuleError::Revoked(id));
            }
            if !may_revoke(sub.signer, sub.role, &rec.issuer) {
                return Err(RuleError::NotIssuer {
                    certificate: id,
                    issuer: rec.issuer,
                });
            }
            if rec.status == CertStatus::Valid {
                let mut unit_rec = unit(view, &rec.gtin, &rec.serial)?;
                unit_rec.valid = None;
                w.push((key::unit(&rec.gtin, &rec.serial), Some(encode(&unit_rec))));
            }
            rec.status = CertStatus::Revoked;
            rec.revoked_at = Some(index);
            if let Some(k) = &mut rec.known {
                k.has_history = true;
            }
            w.push((key::certificate(&id), Some(encode(&rec))));
            w.push((key::history(&id, index), Some(key::REVOCATION.to_vec())));
        }
        Payload::Event(e) => {
            let id = e.certificate_id;
            let mut rec = certificate(view, &id)?.ok_or(RuleError::UnknownCertificate(id))?;
            if rec.status == CertStatus::Revoked {
                return Err(RuleError::Revoked(id));
            }
            // The record is rewritten for the first event only: later ones find it said.
            if let Some(k) = rec.known.as_mut().filter(|k| !k.has_history) {
                k.has_history = true;
                w.push((key::certificate(&id), Some(encode(&rec))));
            }
            w.push((key::history(&id, index), Some(key::EVENT.to_vec())));
        }
    }
    Ok(w)
}

/// Records by key, `None` for a key without one.
type Answers = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// Pending writes layered over a base view: the batch being built sees its own earlier
/// submissions, and audit replays a whole log in memory.
///
/// Made with [`Overlay::remembering`], it also keeps what the base answered, so that the
/// rules, which look up the same record several times (is the envelope logged, does the
/// certificate exist), read the store once; the base must then not change while the overlay
/// lives (the sequencer writes only after the batch is built).
pub struct Overlay<'a, R: ?Sized> {
    base: &'a R,
    writes: Records,
    /// The base's answers, when remembering.
    read: Option<std::cell::RefCell<Answers>>,
}

impl<'a, R: StateRead + ?Sized> Overlay<'a, R> {
    /// An empty overlay over `base`.
    pub fn new(base: &'a R) -> Self {
        Overlay {
            base,
            writes: Records::new(),
            read: None,
        }
    }

    /// An empty overlay over `base` that remembers the base's answers (see [`Overlay`]).
    pub fn remembering(base: &'a R) -> Self {
        Overlay {
            read: Some(std::cell::RefCell::default()),
            ..Overlay::new(base)
        }
    }

    /// Records writes; later ones win.
    pub fn apply(&mut self, writes: Vec<Write>) {
        for (k, v) in writes {
            self.writes.insert(&k, v.as_deref());
        }
    }

    /// The pending writes, in no particular order (`None`: the key is deleted).
    pub fn writes(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.writes.iter()
    }

    /// The pending writes, one per key, in no particular order.
    pub fn to_writes(&self) -> Vec<Write> {
        self.writes
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect()
    }

    /// The pending writes, packed (see [`Records`]).
    pub fn into_records(self) -> Records {
        self.writes
    }
}

impl<R: StateRead + ?Sized> StateRead for Overlay<'_, R> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.map(<[u8]>::to_vec));
        }
        let Some(read) = &self.read else {
            return self.base.get(key);
        };
        if let Some(v) = read.borrow().get(key) {
            return Ok(v.clone());
        }
        let v = self.base.get(key)?;
        read.borrow_mut().insert(key.to_vec(), v.clone());
        Ok(v)
    }

    fn party_record(&self, name: &str) -> Result<Option<Arc<PartyRecord>>, ReadError> {
        let k = key::party(name);
        match self.writes.get(&k) {
            Some(Some(v)) => Ok(Some(Arc::new(decode_party(&k, v)?))),
            Some(None) => Ok(None),
            None => self.base.party_record(name),
        }
    }
}

/// An empty state, the base of an in-memory replay.
pub struct Empty;

impl StateRead for Empty {
    fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_record(superseded: bool, revoked: bool) -> CertRecord {
        CertRecord {
            index: 1_234_567,
            integrated_time_ms: 1_764_000_000_123,
            issuer: "suzhou-reman.example".into(),
            gtin: "06901234567892".into(),
            serial: "SZ-ÄÖ/%21".into(),
            status: if revoked {
                CertStatus::Revoked
            } else {
                CertStatus::Valid
            },
            superseded_by: superseded.then_some(CertificateId([7; 16])),
            revoked_at: revoked.then_some(99),
            envelope_digest: [9; 32],
            known: Some(Known {
                has_history: revoked,
                supersedes: superseded.then_some(CertificateId([8; 16])),
            }),
        }
    }

    /// Rules of the admission policy hold for new submissions, not for entries a log already
    /// holds: a log that logged an operator's own suspension before the ledger refused it
    /// still audits, and mirrors still follow it.
    #[test]
    fn admission_rules_are_not_applied_to_entries_already_logged() {
        let key = crate::keys::PrivateKey::from_seed("op.example", &[5; 32]).unwrap();
        let party = Party {
            name: "op.example".into(),
            role: Role::Operator,
            display_name: None,
            country: None,
            key: key.public().clone(),
            status: PartyStatus::Suspended,
            extensions: None,
        };
        let payload = Payload::Party(party);
        let accepted = |admission| Accepted {
            signer: "op.example",
            role: Role::Operator,
            payload: &payload,
            certificate_id: None,
            digest: [0; 32],
            time_ms: 0,
            admission,
        };
        let e = apply(&Empty, &accepted(true), 5).unwrap_err();
        assert!(matches!(e, RuleError::OperatorDemotesItself(_)), "{e}");
        assert!(!apply(&Empty, &accepted(false), 5).unwrap().is_empty());
    }

    #[test]
    fn history_keys_are_read_back() {
        let id = CertificateId([7; 16]);
        let k = key::history(&id, 1_234_567_890_123);
        assert_eq!(key::parse_history(&k), Some((id, 1_234_567_890_123)));
        assert_eq!(key::parse_history(&k[..k.len() - 1]), None);
        assert_eq!(key::parse_history(&key::certificate(&id)), None);
        assert_eq!(key::parse_history(&[k.as_slice(), &[0]].concat()), None);
    }

    #[test]
    fn records_round_trip_in_binary_and_are_small() {
        for (s, r) in [(false, false), (true, false), (false, true), (true, true)] {
            for known in [
                None,
                Some(Known {
                    has_history: false,
                    supersedes: None,
                }),
                Some(Known {
                    has_history: true,
                    supersedes: Some(CertificateId([5; 16])),
                }),
                cert_record(s, r).known,
            ] {
                let rec = CertRecord {
                    known,
                    ..cert_record(s, r)
                };
                let bytes = encode(&rec);
                assert_eq!(bytes[0], BINARY);
                assert!(bytes.len() < serde_json::to_vec(&rec).unwrap().len() / 2 + 30);
                assert_eq!(decode::<CertRecord>(b"c", &bytes).unwrap(), rec);
            }
        }
        for unit in [
            UnitRecord::default(),
            UnitRecord {
                valid: Some(CertificateId([1; 16])),
                certificates: vec![CertificateId([2; 16]), CertificateId([1; 16])],
            },
        ] {
            let bytes = encode(&unit);
            assert_eq!(decode::<UnitRecord>(b"u", &bytes).unwrap(), unit);
        }
    }

    /// Stores of layout format 1 hold their records as JSON: still read.
    #[test]
    fn json_records_of_earlier_versions_are_read() {
        let rec = CertRecord {
            known: None,
            ..cert_record(true, true)
        };
        let json = serde_json::to_vec(&rec).unwrap();
        assert_eq!(decode::<CertRecord>(b"c", &json).unwrap(), rec);
        let unit = UnitRecord {
            valid: None,
            certificates: vec![CertificateId([3; 16])],
        };
        let json = serde_json::to_vec(&unit).unwrap();
        assert_eq!(decode::<UnitRecord>(b"u", &json).unwrap(), unit);
    }

    #[test]
    fn damaged_binary_records_are_refused() {
        let bytes = encode(&cert_record(true, true));
        for cut in 1..bytes.len() {
            assert!(
                decode::<CertRecord>(b"c", &bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<CertRecord>(b"c", &longer).is_err());
        let mut bad_status = bytes.clone();
        bad_status[17] = 9;
        assert!(decode::<CertRecord>(b"c", &bad_status).is_err());
        // Flags: history bits without the bit that says they are recorded, or unknown bits.
        let plain = encode(&CertRecord {
            known: None,
            ..cert_record(false, false)
        });
        assert_eq!(plain[18], 0);
        for flags in [8, 16, 24, 32, 36, 128] {
            let mut bad = plain.clone();
            bad[18] = flags;
            assert!(decode::<CertRecord>(b"c", &bad).is_err(), "flags {flags}");
        }
        // A unit claiming more certificates than it holds is refused, not allocated.
        let mut unit = vec![BINARY, 0];
        unit.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = decode::<UnitRecord>(b"u1", &unit).unwrap_err();
        assert!(err.0.contains("record u1 is corrupt"), "{}", err.0);
    }

    #[test]
    fn records_are_compared_by_meaning() {
        let k = key::certificate(&CertificateId([1; 16]));
        let rec = cert_record(true, true);
        let binary = encode(&rec);
        // Earlier versions' JSON, and a record written before format 4 (no `Known`), say the
        // same as the binary record a replay makes.
        let json = serde_json::to_vec(&rec).unwrap();
        assert_eq!(record_difference(&k, &json, &binary).unwrap(), None);
        let legacy = encode(&CertRecord {
            known: None,
            ..rec.clone()
        });
        assert_eq!(record_difference(&k, &legacy, &binary).unwrap(), None);
        // ... but a record that claims to know, and knows wrong, differs.
        let wrong = encode(&CertRecord {
            known: Some(Known {
                has_history: false,
                supersedes: None,
            }),
            ..rec.clone()
        });
        let diff = record_difference(&k, &wrong, &binary).unwrap().unwrap();
        assert!(diff.starts_with("what lookups know of it is"), "{diff}");
        let two = encode(&CertRecord {
            index: 5,
            status: CertStatus::Valid,
            ..rec.clone()
        });
        let diff = record_difference(&k, &two, &binary).unwrap().unwrap();
        assert_eq!(
            diff,
            "index is 5 in the store, 1234567 by the log; status is Valid in the store, Revoked by the log"
        );
        assert!(record_difference(&k, b"{", &binary).is_err());
        let e = key::envelope(&[2; 32]);
        let diff = record_difference(&e, &7u64.to_be_bytes(), &[1, 2]).unwrap();
        assert_eq!(
            diff.as_deref(),
            Some("value is \"entry 7\" in the store, \"0x0102\" by the log")
        );
    }

    #[test]
    fn records_are_named() {
        let id = CertificateId([0xab; 16]);
        let hexid = "ab".repeat(16);
        assert_eq!(
            record_name(&key::certificate(&id)),
            format!("the record of certificate {hexid}")
        );
        assert_eq!(
            record_name(&key::history(&id, 42)),
            format!("entry 42 in the history of certificate {hexid}")
        );
        assert_eq!(
            record_name(&key::unit("06901234567892", "SN/1")),
            "the certificates of unit 06901234567892/SN/1"
        );
        assert_eq!(
            record_name(&key::party("acme.example")),
            "the current registration of party acme.example"
        );
        assert_eq!(
            record_name(&key::party_history("acme.example", 3)),
            "party acme.example's registration at entry 3"
        );
        assert_eq!(
            record_name(&key::envelope(&[0; 32])),
            format!("the entry of envelope {}", "00".repeat(32))
        );
        // Keys of no known shape are named as they are.
        for k in [&b"c12"[..], b"r", b"rname", b"v", b"zz", b""] {
            assert_eq!(
                record_name(k),
                format!("record {}", String::from_utf8_lossy(k))
            );
        }
    }
}

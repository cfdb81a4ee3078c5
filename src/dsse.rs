//! Signed submissions (SPEC §3): DSSE envelopes with exactly one Ed25519 signature.
//!
//! Every write to the ledger is a DSSE ("Dead Simple Signing Envelope") whose signature covers
//! the pre-authentication encoding `PAE(payloadType, payload)`, so the type is signed together
//! with the bytes and a payload can never be reinterpreted as another type.
//!
//! The envelope only carries bytes: whether the payload is a valid certificate, party, ... is
//! the domain model's business. This module is strict about the envelope itself, because its
//! canonical JSON form ([`Envelope::to_json`]) is embedded byte-for-byte in log entries and
//! its digest identifies a submission: any leniency here would let two different byte strings
//! mean the same envelope.

use crate::keys::{KeyError, KeyRef, PrivateKey, PublicKey};
use crate::payload::Text;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// The largest payload, in bytes after base64 decoding, that an envelope may carry (32 KiB).
pub const MAX_PAYLOAD: usize = crate::payload::MAX_PAYLOAD_BYTES;

/// Length in bytes of an Ed25519 signature.
const SIG_LEN: usize = 64;

/// Why an envelope was refused, when parsing, signing or verifying it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    /// The input is not syntactically valid JSON.
    #[error("envelope is not valid JSON: {0}")]
    NotJson(String),
    /// The JSON text is valid but its top level is not an object.
    #[error(
        "envelope must be a JSON object {{\"payloadType\", \"payload\", \"signatures\"}}, found {0}"
    )]
    NotObject(&'static str),
    /// A JSON object has the same key twice (which value counts would be ambiguous).
    #[error("duplicate key {key:?} in {location}: each key may appear only once")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Where: `envelope` or `signature`.
        location: &'static str,
    },
    /// A JSON object has a key the envelope format does not define.
    #[error("unknown field {field:?} in {location}: allowed fields are {allowed}")]
    UnknownField {
        /// The unknown key.
        field: String,
        /// Where: `envelope` or `signature`.
        location: &'static str,
        /// The fields allowed there.
        allowed: &'static str,
    },
    /// A required field is absent.
    #[error("missing field {field:?} in {location}")]
    MissingField {
        /// The missing field.
        field: &'static str,
        /// Where: `envelope` or `signature`.
        location: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("field {field:?} must be {expected}, found {found}")]
    WrongType {
        /// The field (`signatures[0]` for an array element).
        field: &'static str,
        /// The JSON type expected.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// `payloadType` is the empty string.
    #[error(
        "payloadType is empty: name the payload type, e.g. application/vnd.reman-ledger.certificate.v1+json"
    )]
    EmptyPayloadType,
    /// `payload` is not canonical standard base64.
    #[error(
        "payload is not canonical standard base64 (alphabet A-Z a-z 0-9 + /, '=' padding required, no whitespace, unused bits zero)"
    )]
    PayloadNotBase64,
    /// The decoded payload is larger than [`MAX_PAYLOAD`].
    #[error("payload has {0} bytes, more than the maximum of 32768 bytes (32 KiB)")]
    PayloadTooLarge(usize),
    /// `signatures` is an empty array.
    #[error("envelope has no signature: exactly one signature is required")]
    NoSignature,
    /// `signatures` has more than one element.
    #[error("envelope has {0} signatures: exactly one signature is required")]
    TooManySignatures(usize),
    /// The signature's `keyid` is not a signer reference.
    #[error(
        "signature keyid {0:?} is not a signer reference: expected <name>+<8 lowercase hex key ID>"
    )]
    BadKeyId(String),
    /// The signature's `sig` is not canonical standard base64.
    #[error("signature sig is not canonical standard base64 ('=' padding required, no whitespace)")]
    SigNotBase64,
    /// The signature's `sig` does not decode to 64 bytes.
    #[error("signature sig has {0} bytes, expected a 64-byte Ed25519 signature")]
    SigBadLength(usize),
    /// The envelope names a different signer than the key it is checked against.
    #[error("envelope is signed by {found}, not by the expected key {expected}")]
    WrongKey {
        /// The reference of the key the envelope was checked against.
        expected: String,
        /// The signer reference in the envelope.
        found: String,
    },
    /// The signature does not verify over `PAE(payloadType, payload)`.
    #[error(
        "signature by {0} does not verify over the payload type and payload: the envelope was altered or signed with another key"
    )]
    BadSignature(String),
}

/// The single signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The signer reference `<name>+<keyid hex>`, used to find the signer's registered key.
    pub keyid: KeyRef,
    /// The Ed25519 signature over `PAE(payloadType, payload)`.
    pub sig: [u8; 64],
}

/// A DSSE envelope with exactly one signature: a signed, typed payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// The payload type, e.g. `application/vnd.reman-ledger.certificate.v1+json`.
    pub payload_type: String,
    /// The payload bytes (at most [`MAX_PAYLOAD`]).
    pub payload: Vec<u8>,
    /// The signature.
    pub signature: Signature,
}

/// DSSE v1 pre-authentication encoding: the exact bytes a signature covers.
///
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN being the byte length in ASCII
/// decimal. Binding the length-prefixed type into the signed bytes stops type confusion.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    let mut out = Vec::with_capacity(head.len() + payload.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

fn check_payload(payload_type: &str, payload: &[u8]) -> Result<(), DsseError> {
    if payload_type.is_empty() {
        return Err(DsseError::EmptyPayloadType);
    }
    if payload.len() > MAX_PAYLOAD {
        return Err(DsseError::PayloadTooLarge(payload.len()));
    }
    Ok(())
}

impl Envelope {
    /// Signs `payload` as `payload_type` with `key`, refusing an empty type or an oversized
    /// payload (so that every envelope this returns would also pass [`Envelope::parse`]).
    pub fn sign(
        payload_type: &str,
        payload: Vec<u8>,
        key: &PrivateKey,
    ) -> Result<Envelope, DsseError> {
        check_payload(payload_type, &payload)?;
        let sig = key.sign(&pae(payload_type, &payload));
        Ok(Envelope {
            payload_type: payload_type.to_owned(),
            payload,
            signature: Signature {
                keyid: key.public().reference(),
                sig,
            },
        })
    }

    /// Parses an envelope strictly: exactly the fields `payloadType`, `payload` and
    /// `signatures` (one element with exactly `keyid` and `sig`), no duplicate keys, canonical
    /// standard base64, a non-empty type and a payload of at most [`MAX_PAYLOAD`] bytes.
    ///
    /// Insignificant JSON whitespace is accepted; [`Envelope::to_json`] gives the canonical form.
    pub fn parse(json: &[u8]) -> Result<Envelope, DsseError> {
        Envelope::parse_parts(json).map(|(envelope, _, _)| envelope)
    }

    /// [`Envelope::parse`], together with the envelope's canonical JSON ([`Envelope::to_json`]),
    /// built from the base64 texts as submitted (parsing checks that they are the canonical
    /// encodings) instead of encoding the payload again.
    pub fn parse_canonical(json: &[u8]) -> Result<(Envelope, String), DsseError> {
        let (envelope, payload_b64, sig_b64) = Envelope::parse_parts(json)?;
        let canonical = canonical_json(
            &envelope.payload_type,
            &payload_b64,
            &envelope.signature.keyid.to_string(),
            &sig_b64,
        );
        Ok((envelope, canonical))
    }

    /// The envelope and its payload's and signature's base64 texts.
    fn parse_parts(json: &[u8]) -> Result<(Envelope, Cow<'_, str>, Cow<'_, str>), DsseError> {
        match parse_fast(json) {
            Some(parts) => Ok(parts),
            None => Envelope::parse_strict(json),
        }
    }

    /// The strict parse, which names the exact fault of a refused envelope.
    fn parse_strict(json: &[u8]) -> Result<(Envelope, Cow<'_, str>, Cow<'_, str>), DsseError> {
        let value: Json =
            serde_json::from_slice(json).map_err(|e| DsseError::NotJson(e.to_string()))?;
        let Json::Obj(fields) = value else {
            return Err(DsseError::NotObject(value.kind()));
        };
        let [payload_type, payload, signatures] = take_fields(
            fields,
            "envelope",
            ["payloadType", "payload", "signatures"],
            "payloadType, payload, signatures",
        )?;
        let payload_type = expect_str(payload_type, "payloadType")?;
        let payload = expect_str(payload, "payload")?;
        let Json::Arr(mut signatures) = signatures else {
            return Err(DsseError::WrongType {
                field: "signatures",
                expected: "an array",
                found: signatures.kind(),
            });
        };

        if payload_type.is_empty() {
            return Err(DsseError::EmptyPayloadType);
        }
        let payload_bytes = decode_b64(&payload).ok_or(DsseError::PayloadNotBase64)?;
        check_payload(&payload_type, &payload_bytes)?;

        let signature = match signatures.len() {
            0 => return Err(DsseError::NoSignature),
            1 => signatures.pop().ok_or(DsseError::NoSignature)?,
            n => return Err(DsseError::TooManySignatures(n)),
        };
        let Json::Obj(sig_fields) = signature else {
            return Err(DsseError::WrongType {
                field: "signatures[0]",
                expected: "an object",
                found: signature.kind(),
            });
        };
        let [keyid, sig] = take_fields(sig_fields, "signature", ["keyid", "sig"], "keyid, sig")?;
        let keyid = expect_str(keyid, "keyid")?;
        let sig = expect_str(sig, "sig")?;
        let keyid: KeyRef = keyid
            .parse()
            .map_err(|_: KeyError| DsseError::BadKeyId(keyid.clone()))?;
        let sig_b64 = sig;
        let sig = decode_b64(&sig_b64).ok_or(DsseError::SigNotBase64)?;
        let sig: [u8; SIG_LEN] = sig
            .as_slice()
            .try_into()
            .map_err(|_| DsseError::SigBadLength(sig.len()))?;

        Ok((
            Envelope {
                payload_type,
                payload: payload_bytes,
                signature: Signature { keyid, sig },
            },
            Cow::Owned(payload),
            Cow::Owned(sig_b64),
        ))
    }

    /// The canonical compact JSON form:
    /// `{"payloadType":"…","payload":"<b64std>","signatures":[{"keyid":"name+id","sig":"<b64std>"}]}`.
    ///
    /// Deterministic (fixed field order, no whitespace, serde_json string escaping), and
    /// [`Envelope::parse`] gives back an equal envelope: log entries embed these exact bytes.
    pub fn to_json(&self) -> String {
        canonical_json(
            &self.payload_type,
            &B64.encode(&self.payload),
            &self.signature.keyid.to_string(),
            &B64.encode(self.signature.sig),
        )
    }

    /// SHA-256 of [`Envelope::to_json`]: identifies an envelope, whatever whitespace it was
    /// submitted with, so a resubmission can be recognised and answered idempotently.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.to_json().as_bytes()).into()
    }

    /// Checks that the envelope names `key` as its signer and that the signature verifies
    /// (strict Ed25519) over `PAE(payloadType, payload)`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), DsseError> {
        let expected = key.reference();
        if self.signature.keyid != expected {
            return Err(DsseError::WrongKey {
                expected: expected.to_string(),
                found: self.signature.keyid.to_string(),
            });
        }
        key.verify(&pae(&self.payload_type, &self.payload), &self.signature.sig)
            .map_err(|_| DsseError::BadSignature(expected.to_string()))
    }
}

/// The common case in one pass over the input, borrowing its strings: an envelope of exactly
/// the expected shape whose every field is valid. `None` for anything else, which the strict
/// path ([`Envelope::parse`]) then parses again to name the exact fault: this path may only
/// accept what that one accepts, never more.
fn parse_fast(json: &[u8]) -> Option<(Envelope, Cow<'_, str>, Cow<'_, str>)> {
    let fast: FastEnvelope<'_> = serde_json::from_slice(json).ok()?;
    if fast.payload_type.is_empty() {
        return None;
    }
    let payload = decode_b64(&fast.payload)?;
    check_payload(&fast.payload_type, &payload).ok()?;
    let keyid: KeyRef = fast.keyid.parse().ok()?;
    let sig: [u8; SIG_LEN] = decode_b64(&fast.sig)?.as_slice().try_into().ok()?;
    Some((
        Envelope {
            payload_type: fast.payload_type.into_owned(),
            payload,
            signature: Signature { keyid, sig },
        },
        fast.payload,
        fast.sig,
    ))
}

/// An envelope object with exactly `payloadType`, `payload` (strings) and `signatures` (an
/// array of exactly one object with exactly the strings `keyid` and `sig`), each key once.
struct FastEnvelope<'a> {
    payload_type: Cow<'a, str>,
    payload: Cow<'a, str>,
    keyid: Cow<'a, str>,
    sig: Cow<'a, str>,
}

/// Fills `slot` with the next value, refusing a second one.
fn fill<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::custom("duplicate key"));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Deserialize<'de> for FastEnvelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FastEnvelopeVisitor)
    }
}

struct FastEnvelopeVisitor;

impl<'de> Visitor<'de> for FastEnvelopeVisitor {
    type Value = FastEnvelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an envelope object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FastEnvelope<'de>, A::Error> {
        let (mut payload_type, mut payload, mut signatures) = (None, None, None);
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                "payloadType" => fill(&mut map, &mut payload_type)?,
                "payload" => fill(&mut map, &mut payload)?,
                "signatures" => fill(&mut map, &mut signatures)?,
                _ => return Err(de::Error::custom("unknown key")),
            }
        }
        let missing = || de::Error::custom("missing key");
        let (Some(Text(payload_type)), Some(Text(payload)), Some(FastSignatures(keyid, sig))) =
            (payload_type, payload, signatures)
        else {
            return Err(missing());
        };
        Ok(FastEnvelope {
            payload_type,
            payload,
            keyid,
            sig,
        })
    }
}

/// `[{"keyid": "…", "sig": "…"}]`, exactly one signature.
struct FastSignatures<'a>(Cow<'a, str>, Cow<'a, str>);

impl<'de> Deserialize<'de> for FastSignatures<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(FastSignaturesVisitor)
    }
}

struct FastSignaturesVisitor;

impl<'de> Visitor<'de> for FastSignaturesVisitor {
    type Value = FastSignatures<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of one signature")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FastSignatures<'de>, A::Error> {
        let one = seq
            .next_element::<FastSignature<'de>>()?
            .ok_or_else(|| de::Error::custom("no signature"))?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("more than one signature"));
        }
        Ok(one.0)
    }
}

/// One signature object.
struct FastSignature<'a>(FastSignatures<'a>);

impl<'de> Deserialize<'de> for FastSignature<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FastSignatureVisitor)
    }
}

struct FastSignatureVisitor;

impl<'de> Visitor<'de> for FastSignatureVisitor {
    type Value = FastSignature<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a signature object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FastSignature<'de>, A::Error> {
        let (mut keyid, mut sig) = (None, None);
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                "keyid" => fill(&mut map, &mut keyid)?,
                "sig" => fill(&mut map, &mut sig)?,
                _ => return Err(de::Error::custom("unknown key")),
            }
        }
        match (keyid, sig) {
            (Some(Text(keyid)), Some(Text(sig))) => Ok(FastSignature(FastSignatures(keyid, sig))),
            _ => Err(de::Error::custom("missing key")),
        }
    }
}

/// The canonical envelope JSON from its parts, the payload and signature already in
/// canonical standard base64.
fn canonical_json(payload_type: &str, payload_b64: &str, keyid: &str, sig_b64: &str) -> String {
    format!(
        r#"{{"payloadType":{},"payload":"{}","signatures":[{{"keyid":{},"sig":"{}"}}]}}"#,
        json_string(payload_type),
        payload_b64,
        json_string(keyid),
        sig_b64,
    )
}

/// JSON string literal for `s`. Serialising a `&str` cannot fail; the fallback only keeps
/// this free of panics.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// Decodes canonical standard base64 only. The engine (`STANDARD`: canonical padding
/// required, non-zero unused bits refused) accepts nothing else, so the canonical encoding of
/// what it decodes is the input itself, which `decode_b64_is_canonical_only` checks
/// exhaustively over short inputs (only the last quantum can be spelled two ways); the
/// length check keeps the rule visible without encoding the payload again.
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let raw = B64.decode(s).ok()?;
    (s.len() == raw.len().div_ceil(3) * 4).then_some(raw)
}

fn expect_str(value: Json, field: &'static str) -> Result<String, DsseError> {
    match value {
        Json::Str(s) => Ok(s),
        other => Err(DsseError::WrongType {
            field,
            expected: "a string",
            found: other.kind(),
        }),
    }
}

/// Takes exactly the `names` fields out of a JSON object, in that order, refusing duplicate,
/// unknown and missing keys.
fn take_fields<const N: usize>(
    fields: Vec<(String, Json)>,
    location: &'static str,
    names: [&'static str; N],
    allowed: &'static str,
) -> Result<[Json; N], DsseError> {
    let mut found: [Option<Json>; N] = std::array::from_fn(|_| None);
    // Duplicates first: they make the object ambiguous whatever its keys are.
    let mut seen = HashSet::with_capacity(fields.len());
    for (key, _) in &fields {
        if !seen.insert(key.as_str()) {
            return Err(DsseError::DuplicateKey {
                key: key.clone(),
                location,
            });
        }
    }
    for (key, value) in fields {
        let Some(slot) = names.iter().position(|n| *n == key) else {
            return Err(DsseError::UnknownField {
                field: key,
                location,
                allowed,
            });
        };
        found[slot] = Some(value);
    }
    let mut out: [Json; N] = std::array::from_fn(|_| Json::Null);
    for (i, slot) in found.into_iter().enumerate() {
        out[i] = slot.ok_or(DsseError::MissingField {
            field: names[i],
            location,
        })?;
    }
    Ok(out)
}

/// A JSON value that keeps every key of an object, duplicates included, in order: the usual
/// map types silently keep only one value of a duplicated key, which strict parsing must refuse.
#[derive(Debug)]
enum Json {
    Null,
    Bool,
    Num,
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool => "a boolean",
            Json::Num => "a number",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Num)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Num)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Num)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Json, E> {
        Ok(Json::Str(s.to_owned()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Json, E> {
        Ok(Json::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            entries.push((k, v));
        }
        Ok(Json::Obj(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_of_empty_parts() {
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn pae_counts_bytes_not_characters() {
        // "ä" is two UTF-8 bytes.
        assert_eq!(pae("ä", b"x"), "DSSEv1 2 ä 1 x".as_bytes().to_vec());
    }

    #[test]
    fn json_keeps_duplicate_keys() {
        let v: Json = serde_json::from_str(r#"{"a":1,"a":[true,null,"s"]}"#).unwrap();
        let Json::Obj(fields) = v else { panic!() };
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].0, "a");
        assert_eq!(fields[1].0, "a");
    }

    #[test]
    fn decode_b64_is_canonical_only() {
        assert_eq!(decode_b64("aGk=").unwrap(), b"hi");
        assert!(decode_b64("aGk").is_none());
        assert!(decode_b64("aGl=").is_none());
        assert!(decode_b64("aG k=").is_none());
        assert!(decode_b64("-_8=").is_none());
        assert_eq!(decode_b64("").unwrap(), b"");
        // Every string of up to 6 characters over an alphabet that exercises padding,
        // unused bits and foreign characters, and of 8 over a smaller one: accepted exactly
        // when it is the canonical encoding of what it decodes to.
        let wide = &['A', 'B', 'Q', 'g', 'w', '/', '+', '=', '-', ' '][..];
        let narrow = &['A', 'Q', 'w', '/', '='][..];
        let cases = (0..=6u32).map(|len| (wide, len)).chain([(narrow, 8)]);
        for (alphabet, len) in cases {
            for mut n in 0..alphabet.len().pow(len) {
                let mut s = String::new();
                for _ in 0..len {
                    s.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let canonical = B64.decode(&s).is_ok_and(|raw| B64.encode(raw) == s);
                assert_eq!(decode_b64(&s).is_some(), canonical, "{s:?}");
            }
        }
    }

    #[test]
    fn the_fast_parse_accepts_only_what_the_strict_parse_accepts() {
        let key = PrivateKey::generate("a.example").unwrap();
        let good = Envelope::sign("t", b"{}".to_vec(), &key).unwrap().to_json();
        let sig = good.split("\"signatures\":").nth(1).unwrap();
        let sig = &sig[1..sig.len() - 2];
        let cases = [
            good.clone(),
            format!(" {good} "),
            format!("[{good}]"),
            format!("{good}x"),
            good.replace("\"payloadType\"", "\"payloadType\":\"t\",\"payloadType\""),
            good.replace("\"payload\":", "\"extra\":1,\"payload\":"),
            good.replace("\"payloadType\":\"t\",", ""),
            good.replace("\"payloadType\":\"t\"", "\"payloadType\":\"\""),
            good.replace("\"payloadType\":\"t\"", "\"payloadType\":1"),
            good.replace("\"payload\":\"e30=\"", "\"payload\":\"e30\""),
            good.replace("\"payload\":\"e30=\"", "\"payload\":\"e31=\""),
            good.replace("\"payload\":\"e30=\"", "\"payload\":[\"e30=\"]"),
            good.replace(sig, ""),
            good.replace(sig, &format!("{sig},{sig}")),
            good.replace(sig, &format!("[{}]", &sig[1..sig.len() - 1])),
            good.replace("\"keyid\"", "\"sig\":\"AA==\",\"keyid\""),
            good.replace("\"keyid\":", "\"x\":1,\"keyid\":"),
            good.replace("a.example+", "a.example*"),
            good.replace("\"sig\":\"", "\"sig\":\"AAAA"),
            good.replace("\"sig\":\"", "\"sig\":\" "),
            "{}".to_owned(),
            "null".to_owned(),
        ];
        let mut accepted = 0;
        for text in &cases {
            let strict = Envelope::parse_strict(text.as_bytes());
            match parse_fast(text.as_bytes()) {
                Some((env, p, s)) => {
                    accepted += 1;
                    let (senv, sp, ss) = strict.unwrap_or_else(|e| panic!("{text}: {e}"));
                    assert_eq!((env, p, s), (senv, sp, ss), "{text}");
                }
                None => assert!(
                    strict.is_err(),
                    "fast path refused a valid envelope: {text}"
                ),
            }
        }
        assert_eq!(accepted, 2);
    }

    #[test]
    fn parse_canonical_gives_to_json_whatever_the_spelling() {
        let key = PrivateKey::generate("a.example/x").unwrap();
        // A payload whose base64 holds '/' and '+', which JSON may spell escaped.
        let env = Envelope::sign("t/x", vec![0xfb, 0xff, 0xbf, 0x3e, 0x3f], &key).unwrap();
        let canonical = env.to_json();
        let spaced = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&canonical).unwrap(),
        )
        .unwrap();
        let escaped = canonical.replace('/', "\\/");
        assert_ne!(escaped, canonical);
        for text in [canonical.clone(), spaced, escaped] {
            let (parsed, json) = Envelope::parse_canonical(text.as_bytes()).unwrap();
            assert_eq!(parsed, env);
            assert_eq!(json, canonical);
        }
    }
}

//! Payloads of signed submissions (SPEC §3): from `payloadType` and payload bytes to a checked
//! domain value.
//!
//! [`parse`] is the one entry point the ledger uses. It first decides whether the bytes are a
//! well-formed payload at all (known type, at most 32 KiB, UTF-8, one JSON object without
//! duplicate keys: otherwise "malformed", HTTP 400), then whether the content is acceptable
//! (known fields of the right types, and every rule of the payload type: otherwise "invalid
//! content", HTTP 422).

use crate::certificate::{Certificate, CertificateError, CertificateId};
use crate::event::{Event, EventError};
use crate::party::{Party, PartyError, PartyJson, Role};
use crate::revocation::Revocation;
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// The largest payload accepted, in bytes (32 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 32 * 1024;

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    /// The `payloadType` is none of the four known media types.
    #[error(
        "unknown payloadType {0:?}: expected one of application/vnd.reman-ledger.{{party,certificate,revocation,event}}.v1+json"
    )]
    UnknownType(String),
    /// The payload is larger than 32 KiB.
    #[error("payload has {size} bytes: at most 32768 (32 KiB) are accepted")]
    TooLarge {
        /// The payload size in bytes.
        size: usize,
    },
    /// The payload is not UTF-8.
    #[error(
        "payload is not valid UTF-8 (first bad byte at offset {offset}): encode the JSON as UTF-8"
    )]
    InvalidUtf8 {
        /// The offset of the first invalid byte.
        offset: usize,
    },
    /// The payload is not JSON.
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    /// The payload is JSON but not an object.
    #[error("payload is a JSON {0}: expected a JSON object")]
    NotAnObject(&'static str),
    /// An object in the payload has the same key twice, so its meaning would depend on the
    /// reader.
    #[error("payload has a duplicate JSON key ({0}): each key may appear only once per object")]
    DuplicateKey(String),
    /// The JSON does not have the payload type's shape: unknown or missing field, wrong type,
    /// unknown enumeration value, malformed identifier.
    #[error("payload does not match the {payload_type} schema: {message}")]
    Schema {
        /// The payload type whose shape was expected.
        payload_type: PayloadType,
        /// What is wrong, as reported by the JSON decoder (names the field or value).
        message: String,
    },
    /// A party rule is broken.
    #[error(transparent)]
    Party(#[from] PartyError),
    /// A certificate rule is broken.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// An event rule is broken.
    #[error(transparent)]
    Event(#[from] EventError),
}

impl PayloadError {
    /// True when the bytes are not a well-formed payload at all (unknown type, too large, not
    /// UTF-8, not one JSON object, duplicate keys): HTTP 400. False when the payload is
    /// well-formed but its content is refused: HTTP 422.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            PayloadError::UnknownType(_)
                | PayloadError::TooLarge { .. }
                | PayloadError::InvalidUtf8 { .. }
                | PayloadError::NotJson(_)
                | PayloadError::NotAnObject(_)
                | PayloadError::DuplicateKey(_)
        )
    }
}

/// The four payload types of SPEC §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// `application/vnd.reman-ledger.party.v1+json`
    Party,
    /// `application/vnd.reman-ledger.certificate.v1+json`
    Certificate,
    /// `application/vnd.reman-ledger.revocation.v1+json`
    Revocation,
    /// `application/vnd.reman-ledger.event.v1+json`
    Event,
}

impl PayloadType {
    /// Every payload type.
    pub const ALL: [PayloadType; 4] = [
        PayloadType::Party,
        PayloadType::Certificate,
        PayloadType::Revocation,
        PayloadType::Event,
    ];

    /// The DSSE `payloadType` media type.
    pub fn media_type(self) -> &'static str {
        match self {
            PayloadType::Party => "application/vnd.reman-ledger.party.v1+json",
            PayloadType::Certificate => "application/vnd.reman-ledger.certificate.v1+json",
            PayloadType::Revocation => "application/vnd.reman-ledger.revocation.v1+json",
            PayloadType::Event => "application/vnd.reman-ledger.event.v1+json",
        }
    }

    /// The payload type of a DSSE `payloadType`. The match is exact (the type is signed, so
    /// only one spelling is accepted).
    pub fn from_media_type(media_type: &str) -> Option<PayloadType> {
        PayloadType::ALL
            .into_iter()
            .find(|t| t.media_type() == media_type)
    }

    /// The roles that may sign payloads of this type: for events, those that may sign some
    /// kind of event ([`Payload::signer_roles`] says which kind).
    pub fn signer_roles(self) -> &'static [Role] {
        match self {
            PayloadType::Party => PARTY_SIGNERS,
            PayloadType::Certificate => CERTIFICATE_SIGNERS,
            PayloadType::Revocation => REVOCATION_SIGNERS,
            PayloadType::Event => EVENT_SIGNERS,
        }
    }

    /// The short name, as in `sign --type party|certificate|revocation|event`.
    pub fn name(self) -> &'static str {
        match self {
            PayloadType::Party => "party",
            PayloadType::Certificate => "certificate",
            PayloadType::Revocation => "revocation",
            PayloadType::Event => "event",
        }
    }

    /// The payload type of a short name (`party`, `certificate`, `revocation`, `event`).
    pub fn from_name(name: &str) -> Option<PayloadType> {
        PayloadType::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who may register or update a party (SPEC §3): an operator.
pub const PARTY_SIGNERS: &[Role] = &[Role::Operator];
/// Who may issue a certificate (SPEC §3): a remanufacturer.
pub const CERTIFICATE_SIGNERS: &[Role] = &[Role::Remanufacturer];
/// Who may revoke a certificate (SPEC §3): a remanufacturer (its issuer, see
/// [`crate::state::may_revoke`]) or an operator.
pub const REVOCATION_SIGNERS: &[Role] = &[Role::Remanufacturer, Role::Operator];

/// Who may sign some kind of event (SPEC §3.4): every role but the operator.
pub const EVENT_SIGNERS: &[Role] = &[
    Role::Remanufacturer,
    Role::Importer,
    Role::Customs,
    Role::Certifier,
];

/// A checked payload.
// A certificate is larger than the other variants, but a payload is parsed once per submission
// and matched in place, so boxing it would cost an allocation and buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A party registration.
    Party(Party),
    /// A certificate.
    Certificate(Certificate),
    /// A revocation.
    Revocation(Revocation),
    /// A traceability event.
    Event(Event),
}

impl Payload {
    /// The payload's type.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Party(_) => PayloadType::Party,
            Payload::Certificate(_) => PayloadType::Certificate,
            Payload::Revocation(_) => PayloadType::Revocation,
            Payload::Event(_) => PayloadType::Event,
        }
    }

    /// Whether a signer with `role` may sign this payload, by the static table of SPEC §3:
    /// party by an operator, certificate by a remanufacturer, revocation by a remanufacturer
    /// or an operator, event by the roles of its kind. That a revoking remanufacturer is the
    /// certificate's issuer, and that the signer is active, is checked by the ledger.
    pub fn role_may_sign(&self, role: Role) -> bool {
        self.signer_roles().contains(&role)
    }

    /// The roles that may sign this payload (the table of [`Payload::role_may_sign`]).
    pub fn signer_roles(&self) -> &'static [Role] {
        match self {
            Payload::Event(e) => e.event.allowed_roles(),
            p => p.payload_type().signer_roles(),
        }
    }

    /// The certificate a revocation or an event is about (`None` for parties and
    /// certificates, whose own ID is computed from the payload bytes).
    pub fn target_certificate(&self) -> Option<CertificateId> {
        match self {
            Payload::Revocation(r) => Some(r.certificate_id),
            Payload::Event(e) => Some(e.certificate_id),
            Payload::Party(_) | Payload::Certificate(_) => None,
        }
    }
}

/// Parses and checks a payload of the given DSSE `payloadType`.
///
/// Refuses, as malformed: an unknown type, more than [`MAX_PAYLOAD_BYTES`], invalid UTF-8,
/// anything but one JSON object, duplicate keys. Then, as invalid content: unknown or missing
/// fields, wrong JSON types, and every rule of the payload type.
pub fn parse(payload_type: &str, bytes: &[u8]) -> Result<Payload, PayloadError> {
    let ty = PayloadType::from_media_type(payload_type)
        .ok_or_else(|| PayloadError::UnknownType(payload_type.to_owned()))?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge { size: bytes.len() });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| PayloadError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    check_json_object(text, ty)?;

    let schema = |e: serde_json::Error| PayloadError::Schema {
        payload_type: ty,
        message: e.to_string(),
    };
    Ok(match ty {
        PayloadType::Party => {
            let json: PartyJson = serde_json::from_str(text).map_err(schema)?;
            let party = Party::try_from(json)?;
            party.validate()?;
            Payload::Party(party)
        }
        PayloadType::Certificate => {
            let cert: Certificate = serde_json::from_str(text).map_err(schema)?;
            cert.validate()?;
            Payload::Certificate(cert)
        }
        PayloadType::Revocation => Payload::Revocation(serde_json::from_str(text).map_err(schema)?),
        PayloadType::Event => {
            let event: Event = serde_json::from_str(text).map_err(schema)?;
            event.validate()?;
            Payload::Event(event)
        }
    })
}

/// Checks that `text` is exactly one JSON value, that it is an object, and that no object in
/// it repeats a key (JSON parsers disagree on which duplicate wins, so a signed payload with
/// duplicates could mean one thing to the ledger and another to a verifier).
///
/// It also refuses an array where SPEC §3 has none (see [`ARRAY_FIELDS`]), as content that
/// does not match the schema of `ty`.
fn check_json_object(text: &str, ty: PayloadType) -> Result<(), PayloadError> {
    match serde_json::from_str::<JsonShape>(text) {
        Ok(JsonShape("object")) => Ok(()),
        Ok(JsonShape(kind)) => Err(PayloadError::NotAnObject(kind)),
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            let message = e.to_string();
            if message.starts_with(MISPLACED_ARRAY) {
                Err(PayloadError::Schema {
                    payload_type: ty,
                    message,
                })
            } else {
                Err(PayloadError::DuplicateKey(message))
            }
        }
        Err(e) => Err(PayloadError::NotJson(e.to_string())),
    }
}

/// The only payload fields whose value is a JSON array (SPEC §3.2), of strings or objects.
/// Anywhere else an array stands where an object or a single value belongs, and a derived
/// decoder would read it as an object's fields in order (`"product": ["0950...", ...]`): the
/// payload would then be logged and served back in a form no client expects.
pub const ARRAY_FIELDS: &[&str] = &["standards", "steps", "replaced_parts", "tests"];

/// How the shape check's refusal of a misplaced array starts (told apart from a repeated key).
const MISPLACED_ARRAY: &str = "an array where the schema has none";

/// The kind of a JSON value ("object", "array", ...), read without keeping the value, after
/// checking that no object inside it has a duplicate key.
struct JsonShape(&'static str);

impl<'de> Deserialize<'de> for JsonShape {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor { free: false })
    }
}

/// Reads one value's shape; `free` inside `extensions`, whose content the schema leaves open
/// (arrays anywhere), where only repeated keys are refused.
#[derive(Clone, Copy)]
struct ShapeVisitor {
    free: bool,
}

impl<'de> de::DeserializeSeed<'de> for ShapeVisitor {
    type Value = JsonShape;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<JsonShape, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = JsonShape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<JsonShape, E> {
        Ok(JsonShape("boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<JsonShape, E> {
        Ok(JsonShape("number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<JsonShape, E> {
        Ok(JsonShape("number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<JsonShape, E> {
        Ok(JsonShape("number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<JsonShape, E> {
        Ok(JsonShape("string"))
    }
    fn visit_unit<E>(self) -> Result<JsonShape, E> {
        Ok(JsonShape("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonShape, A::Error> {
        while let Some(JsonShape(kind)) = seq.next_element_seed(self)? {
            if kind == "array" && !self.free {
                return Err(de::Error::custom(format_args!(
                    "{MISPLACED_ARRAY}: an array inside an array (the elements of {} are strings or objects)",
                    ARRAY_FIELDS.join(", ")
                )));
            }
        }
        Ok(JsonShape("array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonShape, A::Error> {
        // Payload objects have a handful of keys: a linear search over keys borrowed from the
        // input (unescaped copies only when they hold escapes) beats hashing owned copies.
        // Past a few keys, a set keeps a large object's check linear.
        const LINEAR: usize = 16;
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        let mut many: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let repeated = match &mut many {
                Some(set) => set.contains(&key),
                None => seen.contains(&key),
            };
            if repeated {
                return Err(de::Error::custom(format_args!("{key:?} appears twice")));
            }
            let value = ShapeVisitor {
                free: self.free || key == "extensions",
            };
            let JsonShape(kind) = map.next_value_seed(value)?;
            if kind == "array" && !value.free && !ARRAY_FIELDS.contains(&key.as_ref()) {
                return Err(de::Error::custom(format_args!(
                    "{MISPLACED_ARRAY}: {key:?} is an array (only {} are)",
                    ARRAY_FIELDS.join(", ")
                )));
            }
            match &mut many {
                Some(set) => {
                    set.insert(key);
                }
                None => {
                    seen.push(key);
                    if seen.len() > LINEAR {
                        many = Some(seen.drain(..).collect());
                    }
                }
            }
        }
        Ok(JsonShape("object"))
    }
}

/// A JSON string (an object key, or a value read as text) as the parser gives it: borrowed
/// from the input when it holds no escapes, unescaped into an owned copy otherwise (so `"a"`
/// and `"\u0061"` are the same key). The envelope's one-pass parser reads its fields with it too.
pub(crate) struct Text<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_signers_are_those_of_some_kind_of_event() {
        let mut of_kinds: Vec<Role> = crate::event::EventKind::ALL
            .into_iter()
            .flat_map(|k| k.allowed_roles().iter().copied())
            .collect();
        of_kinds.sort_by_key(|r| r.as_str());
        of_kinds.dedup();
        let mut listed = EVENT_SIGNERS.to_vec();
        listed.sort_by_key(|r| r.as_str());
        assert_eq!(listed, of_kinds);
    }

    #[test]
    fn shape_of_each_json_kind() {
        for (text, kind) in [
            ("{}", "object"),
            ("[]", "array"),
            ("\"x\"", "string"),
            ("1", "number"),
            ("-1", "number"),
            ("1.5", "number"),
            ("true", "boolean"),
            ("null", "null"),
        ] {
            assert_eq!(serde_json::from_str::<JsonShape>(text).unwrap().0, kind);
        }
    }

    #[test]
    fn duplicate_keys_found_at_any_depth() {
        assert!(matches!(
            check_json_object(r#"{"a":[{"b":1,"c":{"d":1,"d":2}}]}"#, PayloadType::Certificate),
            Err(PayloadError::DuplicateKey(m)) if m.contains("\"d\" appears twice")
        ));
        // The same key in sibling objects is fine; escaped spellings are the same key.
        assert!(
            check_json_object(r#"{"a":{"x":1},"b":{"x":1}}"#, PayloadType::Certificate).is_ok()
        );
        assert!(matches!(
            check_json_object(r#"{"a":1,"\u0061":2}"#, PayloadType::Certificate),
            Err(PayloadError::DuplicateKey(_))
        ));
        // Large objects too, wherever the repeat is.
        let keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(
            check_json_object(&format!("{{{}}}", keys.join(",")), PayloadType::Certificate).is_ok()
        );
        for repeat in [3, 50, 99] {
            let text = format!("{{{},\"k{repeat}\":0}}", keys.join(","));
            assert!(matches!(
                check_json_object(&text, PayloadType::Certificate),
                Err(PayloadError::DuplicateKey(m)) if m.contains(&format!("\"k{repeat}\" appears twice"))
            ));
        }
    }
}

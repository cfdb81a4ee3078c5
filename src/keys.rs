//! Keys and names (SPEC §2): Ed25519 keys named as in C2SP signed-note v1.0.0.
//!
//! A key has a name, a 32-bit key ID derived from the name and the public key, a public text
//! form (the "vkey") and a private text form. Every signature in the ledger, on checkpoints,
//! envelopes and seals, is made and checked through the two types here, so the strict
//! verification rule and the weak-key rule live in one place.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The signed-note algorithm byte for Ed25519, the only algorithm the ledger accepts.
pub const ALG_ED25519: u8 = 0x01;

/// The longest key name the ledger accepts.
pub const MAX_NAME_LEN: usize = 100;

/// Why a key, key name or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The name is empty, too long, or has a character outside `A-Z a-z 0-9 . _ - /`.
    #[error("invalid key name {0:?}: use 1-100 characters from A-Z a-z 0-9 . _ - /")]
    InvalidName(String),
    /// The text does not have the `name+keyid+base64` shape.
    #[error("malformed public key {0:?}: expected <name>+<8 hex key ID>+<base64 key>")]
    MalformedPublicKey(String),
    /// The text does not have the `PRIVATE+KEY+name+keyid+base64` shape.
    #[error("malformed private key: expected PRIVATE+KEY+<name>+<8 hex key ID>+<base64 key>")]
    MalformedPrivateKey,
    /// A signer reference is not `<name>+<8 hex key ID>`.
    #[error("malformed signer reference {0:?}: expected <name>+<8 lowercase hex key ID>")]
    MalformedReference(String),
    /// The key material is not valid standard base64.
    #[error("key material is not valid standard base64")]
    BadBase64,
    /// The key's algorithm byte is not Ed25519 (0x01).
    #[error("unknown key algorithm byte 0x{0:02x}: only Ed25519 (0x01) is supported")]
    UnknownAlgorithm(u8),
    /// The decoded key has the wrong length.
    #[error("key material has {0} bytes, expected 33 (algorithm byte and 32-byte key)")]
    BadLength(usize),
    /// The key ID written in the text is not the one the name and key give.
    #[error("key ID mismatch for {name}: text says {stated:08x}, name and key give {computed:08x}")]
    KeyIdMismatch {
        /// The key name.
        name: String,
        /// The key ID written in the text.
        stated: u32,
        /// The key ID computed from name and key.
        computed: u32,
    },
    /// The public key is not a valid curve point.
    #[error("public key is not a valid Ed25519 point")]
    InvalidPoint,
    /// The public key's bytes are not the canonical encoding of its point (RFC 8032
    /// §5.1.3: a y coordinate of p or more, or x = 0 with the sign bit set): the same point
    /// would have a second encoding, and so a second key ID.
    #[error(
        "public key is not in canonical form (RFC 8032 §5.1.3): export it again from its private key"
    )]
    NonCanonicalKey,
    /// The public key has small order: signatures under it prove nothing.
    #[error("weak Ed25519 public key (small order) refused")]
    WeakKey,
    /// The signature does not verify (strict verification).
    #[error("signature does not verify under key {0}")]
    BadSignature(String),
    /// The system random generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
}

/// Returns whether `name` is a valid key name: 1-100 characters from `A-Z a-z 0-9 . _ - /`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(KeyError::InvalidName(name.to_owned()))
    }
}

/// A 32-bit key ID: the first four bytes of `SHA-256(name || "\n" || 0x01 || pubkey)`.
///
/// Displayed as 8 lowercase hex digits; carried big-endian in signature lines and seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl KeyId {
    /// Computes the key ID of a named Ed25519 public key.
    pub fn compute(name: &str, public_key: &[u8; 32]) -> KeyId {
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update([b'\n', ALG_ED25519]);
        h.update(public_key);
        let d = h.finalize();
        KeyId(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
    }

    /// The four big-endian bytes, as they appear in signatures and seals.
    pub fn to_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    /// Parses exactly 8 lowercase hex digits.
    pub fn parse_hex(s: &str) -> Option<KeyId> {
        if s.len() != 8 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u32::from_str_radix(s, 16).ok().map(KeyId)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A signer reference, `<name>+<keyid hex>`: names a key without carrying it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    /// The key name.
    pub name: String,
    /// The key ID.
    pub id: KeyId,
}

impl FromStr for KeyRef {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::MalformedReference(s.to_owned());
        let (name, id) = s.rsplit_once('+').ok_or_else(bad)?;
        if !is_valid_name(name) {
            return Err(bad());
        }
        let id = KeyId::parse_hex(id).ok_or_else(bad)?;
        Ok(KeyRef {
            name: name.to_owned(),
            id,
        })
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.name, self.id)
    }
}

fn decode_key_material(b64: &str) -> Result<[u8; 32], KeyError> {
    let raw = B64.decode(b64).map_err(|_| KeyError::BadBase64)?;
    if raw.len() != 33 {
        return Err(match raw.first() {
            Some(&alg) if alg != ALG_ED25519 => KeyError::UnknownAlgorithm(alg),
            _ => KeyError::BadLength(raw.len()),
        });
    }
    if raw[0] != ALG_ED25519 {
        return Err(KeyError::UnknownAlgorithm(raw[0]));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&raw[1..]);
    Ok(key)
}

fn encode_key_material(key: &[u8; 32]) -> String {
    let mut raw = [0u8; 33];
    raw[0] = ALG_ED25519;
    raw[1..].copy_from_slice(key);
    B64.encode(raw)
}

/// A named Ed25519 public key (a "vkey"), the only thing needed to check a signature.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    id: KeyId,
    key: VerifyingKey,
}

impl PublicKey {
    /// Builds a named public key from raw key bytes, refusing invalid names, invalid points
    /// and weak (small-order) keys.
    pub fn from_bytes(name: &str, key: &[u8; 32]) -> Result<PublicKey, KeyError> {
        check_name(name)?;
        let vk = VerifyingKey::from_bytes(key).map_err(|_| KeyError::InvalidPoint)?;
        if vk.is_weak() {
            return Err(KeyError::WeakKey);
        }
        Ok(PublicKey {
            name: name.to_owned(),
            id: KeyId::compute(name, key),
            key: vk,
        })
    }

    /// Whether the key's bytes are the canonical encoding of its point (RFC 8032 §5.1.3).
    /// The ledger registers only such keys ([`KeyError::NonCanonicalKey`]); keys registered
    /// before it checked are still read, so that their logs still audit.
    pub fn is_canonical(&self) -> bool {
        self.key.to_edwards().compress().as_bytes() == self.key.as_bytes()
    }

    /// Parses the vkey text `<name>+<keyid hex>+<base64(0x01 || pubkey32)>`, checking that the
    /// stated key ID is the one the name and key give.
    pub fn parse(vkey: &str) -> Result<PublicKey, KeyError> {
        let bad = || KeyError::MalformedPublicKey(vkey.to_owned());
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        check_name(name)?;
        let stated = KeyId::parse_hex(id).ok_or_else(bad)?;
        let key = decode_key_material(material)?;
        let pk = PublicKey::from_bytes(name, &key)?;
        if pk.id != stated {
            return Err(KeyError::KeyIdMismatch {
                name: name.to_owned(),
                stated: stated.0,
                computed: pk.id.0,
            });
        }
        Ok(pk)
    }

    /// The vkey text form.
    pub fn to_vkey(&self) -> String {
        format!(
            "{}+{}+{}",
            self.name,
            self.id,
            encode_key_material(self.key.as_bytes())
        )
    }

    /// The Ed25519 key itself, for the formats that sign with the same key pair under another
    /// signature type (a witness's cosignatures).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The signer reference `<name>+<keyid hex>`.
    pub fn reference(&self) -> KeyRef {
        KeyRef {
            name: self.name.clone(),
            id: self.id,
        }
    }

    /// The raw 32 public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Checks a signature with strict Ed25519 verification (no malleable or small-order forms).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Result<(), KeyError> {
        let sig = Signature::from_bytes(sig);
        self.key
            .verify_strict(msg, &sig)
            .map_err(|_| KeyError::BadSignature(self.reference().to_string()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        PublicKey::parse(s)
    }
}

/// A named Ed25519 private key. Its `Debug` form never shows the secret.
#[derive(Clone)]
pub struct PrivateKey {
    public: PublicKey,
    signing: SigningKey,
}

impl PrivateKey {
    /// Generates a fresh key from the operating system's random generator.
    pub fn generate(name: &str) -> Result<PrivateKey, KeyError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        rand_core::OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| KeyError::Random(e.to_string()))?;
        PrivateKey::from_seed(name, &seed)
    }

    /// Builds a named key from its 32-byte seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<PrivateKey, KeyError> {
        let signing = SigningKey::from_bytes(seed);
        let public = PublicKey::from_bytes(name, signing.verifying_key().as_bytes())?;
        Ok(PrivateKey { public, signing })
    }

    /// Parses `PRIVATE+KEY+<name>+<keyid hex>+<base64(0x01 || seed32)>` (surrounding
    /// whitespace, such as a final newline in a key file, is ignored).
    pub fn parse(text: &str) -> Result<PrivateKey, KeyError> {
        let text = text.trim();
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(KeyError::MalformedPrivateKey)?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::MalformedPrivateKey);
        };
        check_name(name)?;
        let stated = KeyId::parse_hex(id).ok_or(KeyError::MalformedPrivateKey)?;
        let seed = decode_key_material(material)?;
        let key = PrivateKey::from_seed(name, &seed)?;
        if key.public.id != stated {
            return Err(KeyError::KeyIdMismatch {
                name: name.to_owned(),
                stated: stated.0,
                computed: key.public.id.0,
            });
        }
        Ok(key)
    }

    /// The private key text (one line, no newline). Handle with care: it is the secret.
    pub fn to_text(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.public.name,
            self.public.id,
            encode_key_material(self.signing.as_bytes())
        )
    }

    /// The matching public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.public.name
    }

    /// The key ID.
    pub fn id(&self) -> KeyId {
        self.public.id
    }

    /// Signs a message (deterministic Ed25519).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PrivateKey({}, secret redacted)",
            self.public.reference()
        )
    }
}

use rand_core::RngCore as _;

#[cfg(test)]
mod tests {
    use super::*;

    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";

    #[test]
    fn golang_vector_keys_round_trip() {
        let pk = PublicKey::parse(PETER_VKEY).unwrap();
        assert_eq!(pk.to_vkey(), PETER_VKEY);
        let sk = PrivateKey::parse(PETER_SKEY).unwrap();
        assert_eq!(sk.to_text(), PETER_SKEY);
        assert_eq!(sk.public(), &pk);
        assert_eq!(pk.reference().to_string(), "PeterNeumann+c74f20a3");
    }

    #[test]
    fn refuses_other_algorithm() {
        // Same key material, algorithm byte changed to 0x02.
        let raw = B64
            .decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .unwrap();
        let mut raw2 = raw.clone();
        raw2[0] = 2;
        let vkey = format!("PeterNeumann+c74f20a3+{}", B64.encode(raw2));
        assert_eq!(PublicKey::parse(&vkey), Err(KeyError::UnknownAlgorithm(2)));
    }

    #[test]
    fn refuses_id_mismatch_and_bad_names() {
        let vkey = PETER_VKEY.replace("c74f20a3", "c74f20a4");
        assert!(matches!(
            PublicKey::parse(&vkey),
            Err(KeyError::KeyIdMismatch { .. })
        ));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name(&"a".repeat(101)));
        assert!(is_valid_name("gearbox-works.example/eu_1"));
        assert!(PrivateKey::generate("bad name").is_err());
    }

    #[test]
    fn refuses_weak_key() {
        // The identity point (small order) encoded as y = 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::from_bytes("weak", &identity),
            Err(KeyError::WeakKey)
        );
    }

    #[test]
    fn sign_and_verify_strict() {
        let sk = PrivateKey::generate("test.example").unwrap();
        let sig = sk.sign(b"hello");
        sk.public().verify(b"hello", &sig).unwrap();
        assert!(sk.public().verify(b"hellp", &sig).is_err());
        assert!(!format!("{sk:?}").contains(&sk.to_text()[20..]));
    }
}

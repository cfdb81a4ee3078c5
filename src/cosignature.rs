//! C2SP `tlog-cosignature` v1 with Ed25519 (signature type 0x04), SPEC §8: a witness's
//! timestamped statement that a checkpoint is the largest tree consistent with everything it
//! has seen of that log.
//!
//! A cosignature is a note signature line on the checkpoint,
//! `— <witness name> base64(key ID || u64 timestamp || Ed25519 signature)`, over
//! `"cosignature/v1\ntime <timestamp>\n" || checkpoint body`. The key ID is
//! `SHA-256(name || "\n" || 0x04 || public key)[:4]`, so a witness key signs cosignatures
//! under another key ID than the same key would sign notes under. The name is not signed: a
//! witness key must serve one witness name only. Pure: no I/O.

use crate::keys::{KeyId, PrivateKey, PublicKey, is_valid_name};
use crate::note::NoteSignature;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

/// The signature type byte of an Ed25519 cosignature key (in its key ID and vkey).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The largest timestamp a cosignature may carry (2^63 − 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Why a cosigner key or a cosignature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    /// The vkey text is not `<name>+<key ID>+<base64(0x04 || key)>`.
    #[error(
        "{0:?} is not a cosigner key: expected <name>+<8 hex key ID>+<base64 of 0x04 and the 32-byte Ed25519 key>"
    )]
    BadKey(String),
    /// A vkey of another signature type.
    #[error(
        "the key has signature type 0x{0:02x}, not 0x04 (Ed25519 cosignature/v1), as a .pub file holds a key: give the witness's cosigner key, which `reman-ledger witness` prints when it starts"
    )]
    WrongType(u8),
    /// The stated key ID is not the one the name and key give.
    #[error("the key ID {stated} does not match the name and key (computed {computed})")]
    KeyIdMismatch {
        /// The key ID in the text.
        stated: KeyId,
        /// The key ID computed.
        computed: KeyId,
    },
    /// Not a usable Ed25519 public key (not a curve point, or of small order).
    #[error("the cosigner key is not a valid Ed25519 public key")]
    InvalidKey,
    /// A signature line of this witness that is not a valid cosignature.
    #[error("the cosignature of {witness} does not verify: {why}")]
    Invalid {
        /// The witness name.
        witness: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// A witness's public key for Ed25519 cosignatures.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    id: KeyId,
    key: VerifyingKey,
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

fn key_id(name: &str, key: &[u8; 32]) -> KeyId {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_COSIGNATURE_V1]);
    h.update(key);
    let d = h.finalize();
    KeyId(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
}

impl CosignerKey {
    /// A named cosigner key from raw Ed25519 key bytes; refuses invalid names, points that are
    /// not on the curve and weak (small-order) keys.
    pub fn from_bytes(name: &str, key: &[u8; 32]) -> Result<CosignerKey, CosignatureError> {
        if !is_valid_name(name) {
            return Err(CosignatureError::BadKey(name.to_owned()));
        }
        let vk = VerifyingKey::from_bytes(key).map_err(|_| CosignatureError::InvalidKey)?;
        if vk.is_weak() {
            return Err(CosignatureError::InvalidKey);
        }
        Ok(CosignerKey {
            name: name.to_owned(),
            id: key_id(name, key),
            key: vk,
        })
    }

    /// The cosigner key of a witness's private key (the same key pair, type 0x04).
    pub fn of(witness: &PrivateKey) -> CosignerKey {
        let public = witness.public();
        CosignerKey {
            name: public.name().to_owned(),
            id: key_id(public.name(), public.as_bytes()),
            key: *public.verifying_key(),
        }
    }

    /// Whether this is the same Ed25519 key pair as `key` (of another signature type): a
    /// log's own key must not be taken as its witness, whose cosignatures the log could then
    /// make itself.
    pub fn same_key_as(&self, key: &PublicKey) -> bool {
        self.key == *key.verifying_key()
    }

    /// Parses a cosigner vkey, `<name>+<key ID>+<base64(0x04 || key)>`.
    pub fn parse(vkey: &str) -> Result<CosignerKey, CosignatureError> {
        let bad = || CosignatureError::BadKey(vkey.to_owned());
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let stated = KeyId::parse_hex(id).ok_or_else(bad)?;
        let raw = B64.decode(material).map_err(|_| bad())?;
        match raw.split_first() {
            Some((&ALG_COSIGNATURE_V1, key)) => {
                let key: [u8; 32] = key.try_into().map_err(|_| bad())?;
                let k = CosignerKey::from_bytes(name, &key)?;
                if k.id != stated {
                    return Err(CosignatureError::KeyIdMismatch {
                        stated,
                        computed: k.id,
                    });
                }
                Ok(k)
            }
            Some((&other, _)) => Err(CosignatureError::WrongType(other)),
            None => Err(bad()),
        }
    }

    /// The vkey text.
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_COSIGNATURE_V1);
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, self.id, B64.encode(raw))
    }

    /// The witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cosignature key ID.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Whether a note signature line is this witness's (same name and key ID).
    pub fn signed(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.id
    }

    /// Verifies this witness's cosignature `sig` over the checkpoint `body` (its text, with
    /// the final newline, without signature lines); returns its timestamp.
    pub fn verify(&self, body: &str, sig: &NoteSignature) -> Result<u64, CosignatureError> {
        let invalid = |why| CosignatureError::Invalid {
            witness: self.name.clone(),
            why,
        };
        if !self.signed(sig) {
            return Err(invalid("it is another key's signature"));
        }
        let (ts, signature) = sig
            .signature
            .split_first_chunk::<8>()
            .ok_or_else(|| invalid("it is too short"))?;
        let timestamp = u64::from_be_bytes(*ts);
        if timestamp > MAX_TIMESTAMP {
            return Err(invalid("its timestamp exceeds 2^63 - 1"));
        }
        let signature: [u8; 64] = signature
            .try_into()
            .map_err(|_| invalid("its signature is not 64 bytes"))?;
        self.key
            .verify_strict(
                message(body, timestamp).as_bytes(),
                &Signature::from_bytes(&signature),
            )
            .map_err(|_| invalid("the signature does not match the checkpoint"))?;
        Ok(timestamp)
    }
}

/// What a cosignature signs: `cosignature/v1`, `time <timestamp>`, then the checkpoint body.
pub fn message(body: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

/// The witness's cosignature of the checkpoint `body` at `timestamp` (POSIX seconds, at most
/// [`MAX_TIMESTAMP`]: larger values are clamped), as a note signature line.
pub fn cosign(witness: &PrivateKey, body: &str, timestamp: u64) -> NoteSignature {
    let timestamp = timestamp.min(MAX_TIMESTAMP);
    let mut signature = Vec::with_capacity(72);
    signature.extend_from_slice(&timestamp.to_be_bytes());
    signature.extend_from_slice(&witness.sign(message(body, timestamp).as_bytes()));
    NoteSignature {
        name: witness.name().to_owned(),
        key_id: CosignerKey::of(witness).id,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    const BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness() -> PrivateKey {
        PrivateKey::from_seed("witness.example.com/w1", &[4; 32]).unwrap()
    }

    #[test]
    fn a_cosignature_is_the_c2sp_message_signed_under_the_0x04_key_id() {
        let w = witness();
        let sig = cosign(&w, BODY, 1_679_315_147);
        // Built independently of the module: key ID over 0x04, the C2SP message.
        let public = w.public().as_bytes();
        let mut h = Sha256::new();
        h.update(b"witness.example.com/w1\n\x04");
        h.update(public);
        let id = h.finalize();
        assert_eq!(sig.key_id.to_bytes(), id[..4]);
        assert_ne!(sig.key_id, w.public().id(), "a note key ID is over 0x01");
        assert_eq!(&sig.signature[..8], &1_679_315_147u64.to_be_bytes());
        let msg = "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let s = Signature::from_bytes(sig.signature[8..].try_into().unwrap());
        VerifyingKey::from_bytes(public)
            .unwrap()
            .verify(msg.as_bytes(), &s)
            .unwrap();
        let line = sig.to_line();
        assert!(line.starts_with("— witness.example.com/w1 "), "{line}");
        assert_eq!(
            B64.decode(line.trim_end().rsplit(' ').next().unwrap())
                .unwrap()
                .len(),
            76
        );
        assert_eq!(CosignerKey::of(&w).verify(BODY, &sig), Ok(1_679_315_147));
    }

    #[test]
    fn cosigner_vkeys_round_trip_and_refuse_other_types() {
        let k = CosignerKey::of(&witness());
        let vkey = k.to_vkey();
        assert!(vkey.starts_with(&format!("witness.example.com/w1+{}+", k.id())));
        assert_eq!(CosignerKey::parse(&vkey), Ok(k.clone()));
        // The same key as a note key (type 0x01) is not a cosigner key, but the same pair.
        let note_vkey = witness().public().to_vkey();
        assert_eq!(
            CosignerKey::parse(&note_vkey),
            Err(CosignatureError::WrongType(1))
        );
        assert!(k.same_key_as(witness().public()));
        assert!(!k.same_key_as(PrivateKey::generate("other.example").unwrap().public()));
        let (name_id, _) = vkey.rsplit_once('+').unwrap();
        let other_id = format!("{}+00000000+{}", k.name(), vkey.rsplit('+').next().unwrap());
        assert!(matches!(
            CosignerKey::parse(&other_id),
            Err(CosignatureError::KeyIdMismatch { .. })
        ));
        for bad in [
            "",
            "name",
            &format!("{name_id}+!!!"),
            &format!("{name_id}+{}", B64.encode([4u8; 10])),
            "bad name+00000000+BA==",
        ] {
            assert!(CosignerKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cosignature_of_another_body_key_or_time_does_not_verify() {
        let w = witness();
        let k = CosignerKey::of(&w);
        let sig = cosign(&w, BODY, 1000);
        assert!(
            k.verify(&BODY.replace("20852163", "20852164"), &sig)
                .is_err()
        );
        let mut later = sig.clone();
        later.signature[7] ^= 1;
        assert!(k.verify(BODY, &later).is_err());
        let mut short = sig.clone();
        short.signature.truncate(70);
        assert!(k.verify(BODY, &short).is_err());
        let other = PrivateKey::from_seed("witness.example.com/w1", &[5; 32]).unwrap();
        assert!(CosignerKey::of(&other).verify(BODY, &sig).is_err());
        let mut huge = cosign(&w, BODY, u64::MAX);
        assert_eq!(k.verify(BODY, &huge), Ok(MAX_TIMESTAMP));
        huge.signature[0] = 0xff;
        assert!(k.verify(BODY, &huge).is_err());
    }
}

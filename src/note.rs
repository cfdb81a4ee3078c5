//! Signed notes (C2SP `signed-note` v1.0.0): text followed by Ed25519 signature lines.
//!
//! A signed note is the note text (ending in a newline), one blank line, then one or more
//! signature lines `— <key name> <base64(key ID || signature)>`. Checkpoints (SPEC §4) are
//! signed notes, so this module is where the exact syntax and the verification rules live:
//! signatures by unknown keys are ignored, every signature by a known key must verify, and at
//! least one must.

use crate::keys::{KeyError, KeyId, KeyRef, PrivateKey, PublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// The most signature lines a note may carry. The spec asks verifiers to accept at least 16
/// and to cap the number, so that a hostile note cannot make us parse forever.
pub const MAX_SIGNATURES: usize = 100;

/// What starts every signature line: U+2014 EM DASH and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note could not be signed, parsed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text to sign is empty or does not end with a newline.
    #[error("note text must be non-empty and end with a newline (\\n)")]
    TextNotTerminated,
    /// The signed message does not end with a newline after its last signature line.
    #[error("signed note must end with a newline after its last signature line")]
    MessageNotTerminated,
    /// The note contains an ASCII control character other than newline.
    #[error(
        "control character U+{code:04X} at byte {offset}: notes may contain no control characters other than newline"
    )]
    ControlCharacter {
        /// The offending character.
        code: u32,
        /// Its byte offset in the note.
        offset: usize,
    },
    /// There is no blank line followed by signature lines.
    #[error(
        "no signature block: expected the text, one blank line, then one or more signature lines"
    )]
    MissingSignatureBlock,
    /// A signature line does not have the `— <name> <base64>` shape.
    #[error("signature line {line} is malformed: {reason}")]
    MalformedSignatureLine {
        /// 1-based number of the signature line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A signature line's signature is not valid standard base64.
    #[error("signature line {line}: signature is not valid standard base64 (RFC 4648 §4, padded)")]
    BadBase64 {
        /// 1-based number of the signature line.
        line: usize,
    },
    /// The note has more signature lines than [`MAX_SIGNATURES`].
    #[error("note has {found} signature lines; at most {max} are accepted")]
    TooManySignatures {
        /// The number of signature lines found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// No key was given to sign with.
    #[error("no signing key given: a signed note needs at least one signature")]
    NoSigners,
    /// A verifier key was refused (for example, an algorithm other than Ed25519).
    #[error("verifier key refused: {0}")]
    Key(#[from] KeyError),
    /// A signature by a known key (same name and key ID) does not verify.
    #[error("signature by {0} does not verify: the note was altered or signed by another key")]
    BadSignature(KeyRef),
    /// A line carries a known key's name with another key ID, and no known key signed the note.
    #[error(
        "signature by {name} has key ID {found}, but the known key of that name has key ID {expected}: wrong or rotated key?"
    )]
    KeyIdMismatch {
        /// The key name.
        name: String,
        /// The key ID of the known key.
        expected: KeyId,
        /// The key ID on the signature line.
        found: KeyId,
    },
    /// No signature line is by a known key.
    #[error("note is not signed by any known key (known: {known})")]
    NoKnownSignature {
        /// The known keys' references, comma-separated.
        known: String,
    },
}

/// One signature line of a note: who signed (name and key ID) and the signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID, the first four bytes of the decoded signature.
    pub key_id: KeyId,
    /// The signature bytes that follow the key ID (64 bytes for Ed25519).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line `— <name> <base64(keyid || signature)>\n`.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }

    /// The signer reference `<name>+<keyid hex>`.
    pub fn key_ref(&self) -> KeyRef {
        KeyRef {
            name: self.name.clone(),
            id: self.key_id,
        }
    }
}

/// A note: its text (with the final newline) and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline, without the separating blank line.
    pub text: String,
    /// The signatures: all lines for [`parse`], only the verified ones for [`open`].
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// The signed-note form: text, blank line, signature lines. Use it to pass a note on, for
    /// example after appending a cosignature; it does not check the fields again.
    pub fn to_signed_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for sig in &self.signatures {
            out.push_str(&sig.to_line());
        }
        out
    }
}

/// Whether `name` is a key name as signed-note allows it: non-empty, no Unicode space, no `+`.
/// (Ledger keys are stricter, see [`crate::keys::is_valid_name`]; other signers, such as
/// witnesses, need only this.)
fn is_note_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '+')
}

/// Refuses ASCII control characters other than newline.
fn check_controls(s: &str) -> Result<(), NoteError> {
    match s.char_indices().find(|&(_, c)| c < ' ' && c != '\n') {
        Some((offset, c)) => Err(NoteError::ControlCharacter {
            code: u32::from(c),
            offset,
        }),
        None => Ok(()),
    }
}

/// Checks that `text` can be the text of a signed note: non-empty, ends with a newline, and
/// has no control character other than newline.
pub fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::TextNotTerminated);
    }
    check_controls(text)
}

/// Signs `text` with each key and returns the signed note: text, blank line, one signature
/// line per key (in the order given; a key given twice signs once).
pub fn sign(text: &str, keys: &[&PrivateKey]) -> Result<String, NoteError> {
    check_text(text)?;
    if keys.is_empty() {
        return Err(NoteError::NoSigners);
    }
    let mut out = String::with_capacity(text.len() + 1 + keys.len() * 110);
    out.push_str(text);
    out.push('\n');
    let mut done: Vec<KeyRef> = Vec::with_capacity(keys.len());
    for key in keys {
        let reference = key.public().reference();
        if done.contains(&reference) {
            continue;
        }
        let sig = NoteSignature {
            name: key.name().to_owned(),
            key_id: key.id(),
            signature: key.sign(text.as_bytes()).to_vec(),
        };
        out.push_str(&sig.to_line());
        done.push(reference);
    }
    Ok(out)
}

/// Parses one signature line (without its newline); `n` is its 1-based number.
fn parse_line(line: &str, n: usize) -> Result<NoteSignature, NoteError> {
    let malformed = |reason: &str| NoteError::MalformedSignatureLine {
        line: n,
        reason: reason.to_owned(),
    };
    let rest = match line.strip_prefix(SIG_PREFIX) {
        Some(rest) => rest,
        None if line.starts_with('\u{2014}') => {
            return Err(malformed("the em dash must be followed by one space"));
        }
        None => {
            return Err(malformed(
                "it must start with an em dash (U+2014) and a space",
            ));
        }
    };
    let (name, b64) = rest
        .split_once(' ')
        .ok_or_else(|| malformed("expected a space between the key name and the signature"))?;
    if !is_note_name(name) {
        return Err(malformed(
            "the key name must be non-empty and contain no spaces or '+'",
        ));
    }
    if b64.is_empty() {
        return Err(malformed("the signature is missing after the key name"));
    }
    let raw = B64
        .decode(b64)
        .map_err(|_| NoteError::BadBase64 { line: n })?;
    // A 4-byte key ID and at least one signature byte.
    let (id, signature) = match raw.split_first_chunk::<4>() {
        Some((id, signature)) if !signature.is_empty() => (id, signature),
        _ => {
            return Err(malformed(&format!(
                "the signature decodes to {} bytes; expected a 4-byte key ID and a signature",
                raw.len()
            )));
        }
    };
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: KeyId(u32::from_be_bytes(*id)),
        signature: signature.to_vec(),
    })
}

/// Parses a signed note without checking any signature: the syntax only.
///
/// The text is everything up to and including the newline before the last blank line; every
/// line after it must be a signature line. Do not trust the text of a note that was only
/// parsed: use [`open`].
pub fn parse(msg: &str) -> Result<Note, NoteError> {
    check_controls(msg)?;
    // The text is separated from the signatures by the last empty line.
    let split = msg.rfind("\n\n").ok_or(NoteError::MissingSignatureBlock)?;
    let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
    if sigs.is_empty() {
        return Err(NoteError::MissingSignatureBlock);
    }
    if !sigs.ends_with('\n') {
        return Err(NoteError::MessageNotTerminated);
    }
    let found = sigs.matches('\n').count();
    if found > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            found,
            max: MAX_SIGNATURES,
        });
    }
    let signatures = sigs
        .split_terminator('\n')
        .enumerate()
        .map(|(i, line)| parse_line(line, i + 1))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Note {
        text: text.to_owned(),
        signatures,
    })
}

/// Parses a signed note and checks its signatures against the known keys.
///
/// Succeeds when at least one signature is by a known key (same name and key ID) and every
/// signature by a known key verifies (strict Ed25519). Signatures by unknown keys are ignored,
/// as the spec requires (this is what allows key rotation and cosigning). The returned note
/// holds only the verified signatures, each once; use [`parse`] to see all of them.
pub fn open(msg: &str, known: &[&PublicKey]) -> Result<Note, NoteError> {
    let note = parse(msg)?;

    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut mismatch: Option<NoteError> = None;
    for sig in &note.signatures {
        // Two trusted keys could share a name and a 32-bit key ID (a collision in the trust
        // list); the signature then only has to verify under one of them.
        let mut matching = known
            .iter()
            .filter(|k| k.name() == sig.name && k.id() == sig.key_id)
            .peekable();
        if matching.peek().is_none() {
            // Unknown key: ignored, but remember a known name under another key ID to explain
            // the failure if nothing verifies.
            if mismatch.is_none()
                && let Some(k) = known.iter().find(|k| k.name() == sig.name)
            {
                mismatch = Some(NoteError::KeyIdMismatch {
                    name: sig.name.clone(),
                    expected: k.id(),
                    found: sig.key_id,
                });
            }
            continue;
        }
        let bytes: &[u8; 64] = sig
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| NoteError::BadSignature(sig.key_ref()))?;
        if !matching.any(|k| k.verify(note.text.as_bytes(), bytes).is_ok()) {
            return Err(NoteError::BadSignature(sig.key_ref()));
        }
        if !verified
            .iter()
            .any(|v| v.name == sig.name && v.key_id == sig.key_id)
        {
            verified.push(sig.clone());
        }
    }

    if verified.is_empty() {
        return Err(mismatch.unwrap_or_else(|| NoteError::NoKnownSignature {
            known: known
                .iter()
                .map(|k| k.reference().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }));
    }
    Ok(Note {
        text: note.text,
        signatures: verified,
    })
}

/// Like [`open`], with the known keys given as vkey texts (`<name>+<keyid>+<base64 key>`).
/// A vkey that does not parse, for example one whose algorithm byte is not Ed25519 (0x01),
/// is refused with [`NoteError::Key`].
pub fn open_with_vkeys(msg: &str, vkeys: &[&str]) -> Result<Note, NoteError> {
    let keys = vkeys
        .iter()
        .map(|v| PublicKey::parse(v))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&PublicKey> = keys.iter().collect();
    open(msg, &refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_names() {
        assert!(is_note_name("example.com/foo"));
        assert!(is_note_name("ünïcode"));
        assert!(!is_note_name(""));
        assert!(!is_note_name("a+b"));
        assert!(!is_note_name("a\u{a0}b"));
        assert!(!is_note_name("a\u{2003}b"));
    }

    #[test]
    fn line_round_trip() {
        let sig = NoteSignature {
            name: "n".into(),
            key_id: KeyId(0x01020304),
            signature: vec![9; 64],
        };
        let line = sig.to_line();
        assert!(line.starts_with("\u{2014} n AQIDBA"));
        let parsed = parse_line(line.trim_end_matches('\n'), 1).unwrap();
        assert_eq!(parsed, sig);
    }

    #[test]
    fn short_signatures() {
        // Exactly a key ID, no signature bytes.
        let line = format!("{SIG_PREFIX}n {}", B64.encode([1, 2, 3, 4]));
        assert!(matches!(
            parse_line(&line, 3),
            Err(NoteError::MalformedSignatureLine { line: 3, .. })
        ));
        let line = format!("{SIG_PREFIX}n {}", B64.encode([1, 2, 3, 4, 5]));
        assert_eq!(parse_line(&line, 1).unwrap().signature, vec![5]);
    }

    #[test]
    fn control_offset() {
        assert_eq!(
            check_text("ab\tc\n"),
            Err(NoteError::ControlCharacter { code: 9, offset: 2 })
        );
        assert!(matches!(
            check_text("a\r\n"),
            Err(NoteError::ControlCharacter {
                code: 13,
                offset: 1
            })
        ));
    }
}

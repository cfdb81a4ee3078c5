//! Checkpoints (C2SP `tlog-checkpoint` v1.0.0): the log's signed tree head (SPEC §4).
//!
//! The body is the origin line, the decimal tree size, the base64 root hash and optional
//! extension lines; it is signed as a signed note by the log key, whose name is the origin.
//! A verifier pins the log key and learns the tree size and root it may check proofs against.

use crate::keys::{PrivateKey, PublicKey};
use crate::note::{self, NoteError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Why a checkpoint could not be parsed, signed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The body does not end with a newline.
    #[error("checkpoint body must end with a newline (\\n)")]
    MissingNewline,
    /// The body contains an ASCII control character other than newline.
    #[error(
        "checkpoint contains a control character: only printable text and newlines are allowed"
    )]
    ControlCharacter,
    /// The body has fewer than the three mandatory lines.
    #[error("checkpoint has {0} lines; expected origin, tree size and root hash lines")]
    TooFewLines(usize),
    /// The origin line is empty.
    #[error("checkpoint origin (first line) is empty")]
    EmptyOrigin,
    /// The tree size line is not a plain decimal number.
    #[error("tree size {0:?} is not a decimal number (digits 0-9 only)")]
    SizeNotDecimal(String),
    /// The tree size has a leading zero.
    #[error("tree size {0:?} has a leading zero: write it without (only an empty tree is \"0\")")]
    SizeLeadingZero(String),
    /// The tree size does not fit in 64 bits.
    #[error("tree size {0:?} does not fit in an unsigned 64-bit integer")]
    SizeTooLarge(String),
    /// The root hash line is not valid standard base64.
    #[error("root hash {0:?} is not valid standard base64 (RFC 4648 §4, padded)")]
    RootNotBase64(String),
    /// The root hash does not decode to 32 bytes.
    #[error("root hash is {0} bytes; expected a 32-byte SHA-256 hash")]
    RootWrongLength(usize),
    /// An extension line is empty.
    #[error("extension line {0} is empty; extension lines must be non-empty")]
    EmptyExtension(usize),
    /// A field would break the line structure (it contains a newline).
    #[error("checkpoint {0} contains a newline")]
    FieldHasNewline(&'static str),
    /// The log key's name is not the checkpoint's origin.
    #[error(
        "log key name {key_name:?} differs from checkpoint origin {origin:?}: the log key's name must be the origin"
    )]
    OriginKeyMismatch {
        /// The checkpoint origin.
        origin: String,
        /// The log key's name.
        key_name: String,
    },
    /// The signed note is malformed or its signature does not verify.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
}

/// A tree head: the log's origin, tree size and RFC 6962 root hash at that size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin, a unique name for the log (and the log key's name).
    pub origin: String,
    /// The number of entries in the tree.
    pub size: u64,
    /// The Merkle tree root hash at `size`.
    pub root: [u8; 32],
    /// Optional extension lines, each non-empty, without newline.
    pub extensions: Vec<String>,
}

/// Parses the tree size line: decimal, no sign, no leading zero unless it is "0".
fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CheckpointError::SizeNotDecimal(s.to_owned()));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(CheckpointError::SizeLeadingZero(s.to_owned()));
    }
    s.parse()
        .map_err(|_| CheckpointError::SizeTooLarge(s.to_owned()))
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n` followed by one line per extension.
    pub fn to_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for ext in &self.extensions {
            body.push_str(ext);
            body.push('\n');
        }
        body
    }

    /// Parses a checkpoint body (the note text, ending in a newline). This checks syntax only;
    /// a body from outside must come through [`Checkpoint::open`].
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let Some(text) = text.strip_suffix('\n') else {
            return Err(CheckpointError::MissingNewline);
        };
        if text.contains(|c: char| c < ' ' && c != '\n') {
            return Err(CheckpointError::ControlCharacter);
        }
        let lines: Vec<&str> = text.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines(lines.len()));
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(size)?;
        let raw = B64
            .decode(root)
            .map_err(|_| CheckpointError::RootNotBase64((*root).to_owned()))?;
        let root: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| CheckpointError::RootWrongLength(raw.len()))?;
        if let Some(i) = extensions.iter().position(|e| e.is_empty()) {
            return Err(CheckpointError::EmptyExtension(i + 1));
        }
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        })
    }

    /// Checks that the fields make a well-formed body, so that what is signed parses back to
    /// exactly this checkpoint.
    fn check_fields(&self) -> Result<(), CheckpointError> {
        if self.origin.contains('\n') {
            return Err(CheckpointError::FieldHasNewline("origin"));
        }
        if self.extensions.iter().any(|e| e.contains('\n')) {
            return Err(CheckpointError::FieldHasNewline("extension line"));
        }
        Checkpoint::parse_body(&self.to_body()).map(|_| ())
    }

    /// Signs the checkpoint with the log key and returns the signed note. The key's name must
    /// be the origin.
    pub fn sign(&self, log_key: &PrivateKey) -> Result<String, CheckpointError> {
        self.check_fields()?;
        if log_key.name() != self.origin {
            return Err(CheckpointError::OriginKeyMismatch {
                origin: self.origin.clone(),
                key_name: log_key.name().to_owned(),
            });
        }
        Ok(note::sign(&self.to_body(), &[log_key])?)
    }

    /// Verifies a signed checkpoint with the log key and parses it. Other signatures (for
    /// example witness cosignatures) are ignored; the origin must be the log key's name.
    pub fn open(signed: &str, log_key: &PublicKey) -> Result<Self, CheckpointError> {
        let note = note::open(signed, &[log_key])?;
        let cp = Checkpoint::parse_body(&note.text)?;
        if cp.origin != log_key.name() {
            return Err(CheckpointError::OriginKeyMismatch {
                origin: cp.origin,
                key_name: log_key.name().to_owned(),
            });
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert!(matches!(
            parse_size("18446744073709551616"),
            Err(CheckpointError::SizeTooLarge(_))
        ));
        assert!(matches!(
            parse_size("00"),
            Err(CheckpointError::SizeLeadingZero(_))
        ));
        for bad in ["", "+1", "-1", " 1", "1 ", "1e3", "١"] {
            assert!(
                matches!(parse_size(bad), Err(CheckpointError::SizeNotDecimal(_))),
                "{bad:?}"
            );
        }
    }
}

//! C2SP `tlog-proof` v1 (SPEC §8): an offline-verifiable proof that an entry is in the log.
//!
//! A proof is text: the line `c2sp.org/tlog-proof@v1`, an optional `extra <base64>` line, the
//! line `index <N>`, the inclusion proof (one base64 SHA-256 hash per line, from the leaf's
//! sibling up), an empty line, and the log's signed checkpoint verbatim. Whoever holds it and
//! the log's public key can check, with no network, that the entry is in the tree the log
//! signed. This ledger puts the exact entry bytes in `extra`, so that the proof of a
//! certificate carries the certificate itself: the entry's leaf hash is recomputed from them,
//! never taken from the proof. Pure: no I/O.

use crate::c2sp::{self, HashLinesError};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::keys::PublicKey;
use crate::merkle::{self, Hash, MerkleError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// The first line of every proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The file extension C2SP recommends for a stored proof.
pub const EXTENSION: &str = "tlog-proof";

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The text is not a tlog-proof.
    #[error("not a c2sp.org/tlog-proof@v1 proof: {0}")]
    Malformed(String),
    /// The proof carries no entry bytes (`extra`), so there is nothing to check it against.
    #[error(
        "the proof carries no entry (no `extra` line): this ledger's proofs carry the entry \
         bytes; get a fresh one from GET /api/v1/certificates/{{id}}/proof"
    )]
    NoEntry,
    /// The checkpoint is malformed, not signed by the log key, or of another log.
    #[error("its checkpoint does not verify under the log key: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The entry is not at that index of the checkpoint's tree.
    #[error("the entry is not entry {index} of the checkpoint's tree: {source}")]
    NotIncluded {
        /// The index the proof claims.
        index: u64,
        /// Why the inclusion proof fails.
        source: MerkleError,
    },
}

/// A parsed (or to be written) tlog-proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque extra data: here, the exact entry bytes. Not authenticated by itself: only
    /// their leaf hash, through the inclusion proof.
    pub extra: Option<Vec<u8>>,
    /// The entry's index in the log.
    pub index: u64,
    /// The inclusion proof in the checkpoint's tree, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim (ends with a newline).
    pub checkpoint: String,
}

impl TlogProof {
    /// The proof as text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        c2sp::write_hash_lines(&mut out, &self.proof);
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a proof. Refuses anything but the exact v1 layout: a wrong first line, a
    /// non-canonical index, a hash that is not 32 bytes of padded standard base64, a missing
    /// empty line or checkpoint.
    pub fn parse(text: &str) -> Result<TlogProof, ProofError> {
        let bad = |why: &str| ProofError::Malformed(why.to_owned());
        let mut rest = text;
        let mut line = || -> Result<&str, ProofError> {
            let (l, r) = rest
                .split_once('\n')
                .ok_or_else(|| bad("it ends before the empty line that precedes the checkpoint"))?;
            rest = r;
            Ok(l)
        };
        if line()? != HEADER {
            return Err(bad("its first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut next = line()?;
        let extra = match next.strip_prefix("extra ") {
            Some(b64) => {
                let bytes = B64
                    .decode(b64)
                    .map_err(|_| bad("its extra line is not standard base64"))?;
                next = line()?;
                Some(bytes)
            }
            None => None,
        };
        let index = next
            .strip_prefix("index ")
            .and_then(c2sp::decimal)
            .ok_or_else(|| bad("it has no `index N` line (N decimal, no leading zeros)"))?;
        let (proof, rest) = c2sp::read_hash_lines(rest, usize::MAX).map_err(|e| match e {
            HashLinesError::Unterminated => {
                bad("it ends before the empty line that precedes the checkpoint")
            }
            _ => bad("a proof line is not a base64 SHA-256 hash"),
        })?;
        if rest.is_empty() {
            return Err(bad("it has no checkpoint after the empty line"));
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: rest.to_owned(),
        })
    }

    /// Checks that the entry whose leaf hash is `leaf` is entry [`TlogProof::index`] of the
    /// tree of the checkpoint, and that `log_key` signed that checkpoint. Returns the
    /// checkpoint.
    pub fn verify(&self, leaf: &Hash, log_key: &PublicKey) -> Result<Checkpoint, ProofError> {
        let cp = Checkpoint::open(&self.checkpoint, log_key)?;
        merkle::verify_inclusion(leaf, self.index, cp.size, &self.proof, &cp.root).map_err(
            |source| ProofError::NotIncluded {
                index: self.index,
                source,
            },
        )?;
        Ok(cp)
    }

    /// [`TlogProof::verify`] for a proof that carries its entry in `extra`, as this ledger's
    /// do: returns the checkpoint and the entry bytes, now shown to be logged.
    pub fn verify_entry(&self, log_key: &PublicKey) -> Result<(Checkpoint, &[u8]), ProofError> {
        let entry = self.extra.as_deref().ok_or(ProofError::NoEntry)?;
        let cp = self.verify(&merkle::leaf_hash(entry), log_key)?;
        Ok((cp, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::merkle::MemoryTree;

    fn log() -> (PrivateKey, MemoryTree, Vec<Vec<u8>>) {
        let key = PrivateKey::from_seed("example.com/log", &[7; 32]).unwrap();
        let entries: Vec<Vec<u8>> = (0..13u8).map(|i| vec![b'e', i]).collect();
        let tree = MemoryTree::from_leaves(entries.iter().map(|e| merkle::leaf_hash(e)));
        (key, tree, entries)
    }

    fn proof_of(index: u64) -> (PrivateKey, TlogProof) {
        let (key, tree, entries) = log();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: tree.size(),
            root: tree.root(),
            extensions: vec![],
        };
        let p = TlogProof {
            extra: Some(entries[index as usize].clone()),
            index,
            proof: merkle::inclusion_proof(index, tree.size(), &tree).unwrap(),
            checkpoint: cp.sign(&key).unwrap(),
        };
        (key, p)
    }

    #[test]
    fn a_proof_round_trips_through_its_text_and_verifies() {
        for index in [0, 5, 12] {
            let (key, p) = proof_of(index);
            let text = p.to_text();
            assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
            assert!(text.contains(&format!("\nindex {index}\n")));
            assert!(text.ends_with(&p.checkpoint));
            let back = TlogProof::parse(&text).unwrap();
            assert_eq!(back, p);
            let (cp, entry) = back.verify_entry(key.public()).unwrap();
            assert_eq!(cp.size, 13);
            assert_eq!(entry, [b'e', index as u8]);
        }
    }

    #[test]
    fn the_c2sp_example_layout_parses() {
        // The layout of the specification's example (its signatures elided there, so a
        // checkpoint of ours stands in for the last part).
        let (_, p) = proof_of(3);
        let text = format!(
            "c2sp.org/tlog-proof@v1\nextra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6\nindex 73894\n\
             gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\nB95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n\n{}",
            p.checkpoint
        );
        let parsed = TlogProof::parse(&text).unwrap();
        assert_eq!(parsed.index, 73894);
        assert_eq!(
            parsed.extra.as_deref(),
            Some(&b"age-v1.2.1-darwin-arm64.tar.gz"[..])
        );
        assert_eq!(parsed.proof.len(), 2);
        assert_eq!(parsed.to_text(), text);
        // Without extra, and with an empty proof (a tree of one entry).
        let short = format!("c2sp.org/tlog-proof@v1\nindex 0\n\n{}", p.checkpoint);
        let parsed = TlogProof::parse(&short).unwrap();
        assert_eq!((parsed.extra, parsed.proof.len()), (None, 0));
    }

    /// The proof with its first hash line one base64 quantum short (24 bytes, not 32).
    fn cut_first_hash(text: &str) -> String {
        let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
        let l = &mut lines[3];
        l.truncate(l.len() - 12);
        lines.join("\n")
    }

    #[test]
    fn malformed_proofs_are_refused() {
        let (_, p) = proof_of(3);
        let good = p.to_text();
        let cases: Vec<(String, &str)> = vec![
            (
                good.replacen("tlog-proof@v1", "tlog-proof@v2", 1),
                "first line",
            ),
            (format!("\n{good}"), "first line"),
            (good.replacen("index 3", "index 03", 1), "index"),
            (good.replacen("index 3", "index -3", 1), "index"),
            (good.replacen("index 3", "index", 1), "index"),
            (good.replacen("index 3\n", "", 1), "index"),
            (good.replacen("extra ", "extra !", 1), "extra"),
            (cut_first_hash(&good), "proof line"),
            (good.replacen("\n\n", "\n", 1), "proof line"),
            (
                good[..good.find("\n\n").unwrap() + 2].to_owned(),
                "checkpoint",
            ),
            ("c2sp.org/tlog-proof@v1".to_owned(), "ends"),
            (String::new(), "ends"),
        ];
        for (text, what) in cases {
            match TlogProof::parse(&text) {
                Err(ProofError::Malformed(why)) => assert!(why.contains(what), "{what}: {why}"),
                other => panic!("{what}: {other:?}\n{text}"),
            }
        }
    }

    #[test]
    fn a_proof_of_another_entry_key_or_tree_does_not_verify() {
        let (key, p) = proof_of(5);
        // Another entry's bytes.
        let mut other = p.clone();
        other.extra = Some(b"e\x06".to_vec());
        assert!(matches!(
            other.verify_entry(key.public()),
            Err(ProofError::NotIncluded { index: 5, .. })
        ));
        // The same entry claimed at another index.
        let mut moved = p.clone();
        moved.index = 4;
        assert!(matches!(
            moved.verify_entry(key.public()),
            Err(ProofError::NotIncluded { index: 4, .. })
        ));
        // A proof hash changed, or one dropped.
        let mut bent = p.clone();
        bent.proof[0][0] ^= 1;
        assert!(matches!(
            bent.verify_entry(key.public()),
            Err(ProofError::NotIncluded { .. })
        ));
        let mut short = p.clone();
        short.proof.pop();
        assert!(matches!(
            short.verify_entry(key.public()),
            Err(ProofError::NotIncluded { .. })
        ));
        // Another log key of the same name, a checkpoint edited, no entry.
        let stranger = PrivateKey::from_seed("example.com/log", &[8; 32]).unwrap();
        assert!(matches!(
            p.verify_entry(stranger.public()),
            Err(ProofError::Checkpoint(_))
        ));
        let mut edited = p.clone();
        edited.checkpoint = edited.checkpoint.replacen("\n13\n", "\n12\n", 1);
        assert!(matches!(
            edited.verify_entry(key.public()),
            Err(ProofError::Checkpoint(_))
        ));
        let mut bare = p.clone();
        bare.extra = None;
        assert_eq!(bare.verify_entry(key.public()), Err(ProofError::NoEntry));
        assert!(p.verify_entry(key.public()).is_ok());
    }
}

//! C2SP `tlog-witness` (SPEC §8): the rules by which a witness cosigns a log's checkpoint.
//!
//! An independent party (the customs authority of an importing country, say) runs a witness
//! that knows the log keys of the ledgers it watches and remembers, per log, the latest tree it
//! cosigned. A log asks it to cosign a new checkpoint with `POST /add-checkpoint`, sending the
//! size of the tree the witness last cosigned and a consistency proof from it. The witness
//! cosigns only a checkpoint that the log key signed and that extends what it cosigned before,
//! so no one, the ledger's operator included, can show two different histories to two parties
//! (or rewrite one) while both carry the witness's cosignature. This module parses the request
//! and decides; the witness service ([`crate::witness_service`]) keeps the state. Pure: no I/O.

use crate::c2sp::{self, HashLinesError};
use crate::checkpoint::Checkpoint;
use crate::keys::PublicKey;
use crate::merkle::{self, Hash};

/// The most consistency proof lines a request may carry (tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;

/// The largest request body a witness reads: 63 hashes and a checkpoint with the 16
/// signatures signed-note requires notes to be accepted with, each of which may be a
/// post-quantum signature of nearly 5 kB.
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;

/// The media type of a 409 answer's body: the size the witness last cosigned.
pub const SIZE_MEDIA_TYPE: &str = "text/x.tlog.size";

/// Why a witness refuses to cosign, with the HTTP status tlog-witness gives each case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The body is not an add-checkpoint request, or its old size exceeds the checkpoint's
    /// (400).
    #[error("malformed add-checkpoint request: {0}")]
    Malformed(String),
    /// The witness watches no log of that origin (404).
    #[error("this witness does not watch the log {0:?}")]
    UnknownLog(String),
    /// No signature on the checkpoint verifies under the log's key (403).
    #[error("the checkpoint is not signed by the key of {origin}: {why}")]
    NotSigned {
        /// The log's origin.
        origin: String,
        /// Why the signatures do not verify.
        why: String,
    },
    /// The old size is not the size the witness last cosigned (409: ask again from
    /// `latest`).
    #[error(
        "the witness last cosigned a tree of {latest} entries of this log, not {old}: send a \
         consistency proof from size {latest}"
    )]
    WrongOldSize {
        /// The size the request said.
        old: u64,
        /// The size the witness last cosigned (0 if none).
        latest: u64,
    },
    /// The same size as the tree last cosigned, with another root: a fork (409, without the
    /// size body of [`Refusal::WrongOldSize`], which says "ask again from this size").
    #[error(
        "the checkpoint has {size} entries, as the one the witness cosigned, but another root: \
         the log forked"
    )]
    Fork {
        /// The tree size.
        size: u64,
    },
    /// The consistency proof does not verify (422).
    #[error("the consistency proof from size {old} to {size} does not verify: {why}")]
    BadProof {
        /// The old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
        /// Why.
        why: String,
    },
}

impl Refusal {
    /// The HTTP status of the refusal (tlog-witness).
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::UnknownLog(_) => 404,
            Refusal::NotSigned { .. } => 403,
            Refusal::WrongOldSize { .. } | Refusal::Fork { .. } => 409,
            Refusal::BadProof { .. } => 422,
        }
    }

    /// For a 409 about the old size, the size the witness last cosigned: the answer's body
    /// (`text/x.tlog.size`).
    pub fn latest_size(&self) -> Option<u64> {
        match self {
            Refusal::WrongOldSize { latest, .. } => Some(*latest),
            _ => None,
        }
    }
}

/// A parsed `add-checkpoint` request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the tree the witness last cosigned, as the log believes.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

impl AddCheckpoint {
    /// The request body: `old N`, one base64 hash per line, an empty line, the checkpoint.
    pub fn to_body(&self) -> String {
        let mut out = format!("old {}\n", self.old);
        c2sp::write_hash_lines(&mut out, &self.proof);
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a request body.
    pub fn parse(body: &str) -> Result<AddCheckpoint, Refusal> {
        let bad = |why: &str| Refusal::Malformed(why.to_owned());
        let (first, rest) = body
            .split_once('\n')
            .ok_or_else(|| bad("it has no `old N` line"))?;
        let old = first
            .strip_prefix("old ")
            .and_then(c2sp::decimal)
            .ok_or_else(|| bad("its first line is not `old N` (N decimal, no leading zeros)"))?;
        let (proof, rest) = c2sp::read_hash_lines(rest, MAX_PROOF_LINES).map_err(|e| match e {
            HashLinesError::Unterminated => {
                bad("it ends before the empty line that precedes the checkpoint")
            }
            HashLinesError::NotAHash => {
                bad("a consistency proof line is not a base64 SHA-256 hash")
            }
            HashLinesError::TooMany => bad("it has more than 63 consistency proof lines"),
        })?;
        if rest.is_empty() {
            return Err(bad("it has no checkpoint after the empty line"));
        }
        Ok(AddCheckpoint {
            old,
            proof,
            checkpoint: rest.to_owned(),
        })
    }
}

/// What a witness remembers of one log: the latest tree it cosigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    /// Its size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

/// Decides a request. `logs` are the log keys the witness trusts (a key's name is its log's
/// origin); `latest` is what it last cosigned of the origin the checkpoint names (its first
/// line), if anything. The order of the checks is
/// tlog-witness's: the origin (404), the signature (403), the sizes (400, 409), then the
/// proof (422) or, at the same size, the root (409). On success the caller cosigns the
/// checkpoint and remembers it, both under one lock with the check.
pub fn decide(
    req: &AddCheckpoint,
    logs: &[PublicKey],
    latest: Option<Latest>,
) -> Result<Checkpoint, Refusal> {
    let origin = req.checkpoint.lines().next().unwrap_or_default();
    let keys: Vec<&PublicKey> = logs.iter().filter(|k| k.name() == origin).collect();
    if keys.is_empty() {
        return Err(Refusal::UnknownLog(origin.to_owned()));
    }
    // A note or checkpoint that does not parse is a malformed request (400); one that parses
    // but is not signed by the log's key is refused as such (403).
    crate::note::parse(&req.checkpoint)
        .map_err(|e| e.to_string())
        .and_then(|note| Checkpoint::parse_body(&note.text).map_err(|e| e.to_string()))
        .map_err(|e| Refusal::Malformed(format!("its checkpoint is malformed: {e}")))?;
    let mut last_error = String::new();
    let mut opened = None;
    for key in keys {
        match Checkpoint::open(&req.checkpoint, key) {
            Ok(cp) => {
                opened = Some(cp);
                break;
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    let cp = opened.ok_or_else(|| Refusal::NotSigned {
        origin: origin.to_owned(),
        why: last_error,
    })?;
    if req.old > cp.size {
        return Err(Refusal::Malformed(format!(
            "its old size {} exceeds the checkpoint's {}",
            req.old, cp.size
        )));
    }
    let known = latest.unwrap_or(Latest {
        size: 0,
        root: merkle::EMPTY_ROOT,
    });
    if req.old != known.size {
        return Err(Refusal::WrongOldSize {
            old: req.old,
            latest: known.size,
        });
    }
    // At size 0 too: the empty tree has one root (tlog-witness: "the witness MUST check that
    // the root hashes are also identical").
    if req.old == cp.size {
        if cp.root != known.root {
            return Err(Refusal::Fork { size: cp.size });
        }
        if !req.proof.is_empty() {
            return Err(bad_proof(
                req,
                &cp,
                "a proof between equal sizes must be empty",
            ));
        }
        return Ok(cp);
    }
    if req.old == 0 {
        if !req.proof.is_empty() {
            return Err(bad_proof(req, &cp, "a proof from size 0 must be empty"));
        }
        return Ok(cp);
    }
    merkle::verify_consistency(known.size, cp.size, &known.root, &cp.root, &req.proof)
        .map_err(|e| bad_proof(req, &cp, &e.to_string()))?;
    Ok(cp)
}

fn bad_proof(req: &AddCheckpoint, cp: &Checkpoint, why: &str) -> Refusal {
    Refusal::BadProof {
        old: req.old,
        size: cp.size,
        why: why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::merkle::MemoryTree;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    const ORIGIN: &str = "example.com/log";

    fn log_key() -> PrivateKey {
        PrivateKey::from_seed(ORIGIN, &[1; 32]).unwrap()
    }

    /// A tree of `size` leaves (leaf i is the hash of `i`, or of `i + 1000` past `fork_at`).
    fn tree(size: u64, fork_at: u64) -> MemoryTree {
        MemoryTree::from_leaves((0..size).map(|i| {
            let v = if i >= fork_at { i + 1000 } else { i };
            merkle::leaf_hash(&v.to_be_bytes())
        }))
    }

    fn checkpoint(t: &MemoryTree, key: &PrivateKey) -> String {
        Checkpoint {
            origin: key.name().to_owned(),
            size: t.size(),
            root: t.root(),
            extensions: vec![],
        }
        .sign(key)
        .unwrap()
    }

    fn request(old: u64, t: &MemoryTree) -> AddCheckpoint {
        AddCheckpoint {
            old,
            proof: if old == 0 {
                vec![]
            } else {
                merkle::consistency_proof(old, t.size(), t).unwrap()
            },
            checkpoint: checkpoint(t, &log_key()),
        }
    }

    fn at(size: u64, t: &MemoryTree) -> Option<Latest> {
        Some(Latest {
            size,
            root: merkle::root(size, t).unwrap(),
        })
    }

    #[test]
    fn requests_round_trip_through_their_body() {
        let t = tree(20, u64::MAX);
        let req = request(13, &t);
        let body = req.to_body();
        assert!(body.starts_with("old 13\n"));
        assert_eq!(AddCheckpoint::parse(&body), Ok(req));
        let first = request(0, &t);
        assert!(
            first
                .to_body()
                .starts_with("old 0\n\nexample.com/log\n20\n")
        );
        assert_eq!(AddCheckpoint::parse(&first.to_body()), Ok(first));
    }

    #[test]
    fn malformed_bodies_are_refused_with_400() {
        let t = tree(20, u64::MAX);
        let good = request(13, &t).to_body();
        let many = format!(
            "old 1\n{}\n{}",
            format!("{}\n", B64.encode([0u8; 32])).repeat(64),
            checkpoint(&t, &log_key())
        );
        for (body, what) in [
            (String::new(), "old"),
            ("old 1".to_owned(), "old"),
            (good.replacen("old 13", "old 013", 1), "old N"),
            (good.replacen("old 13", "old -1", 1), "old N"),
            (good.replacen("old 13", "new 13", 1), "old N"),
            (good.replacen("old 13\n", "old 13\n!!!\n", 1), "base64"),
            (
                good[..good.find("\n\n").unwrap() + 2].to_owned(),
                "no checkpoint",
            ),
            (good.replacen("\n\n", "\n", 1), "base64"),
            (many, "more than 63"),
        ] {
            let e = AddCheckpoint::parse(&body).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.to_string().contains(what), "{what}: {e}");
        }
    }

    #[test]
    fn a_consistent_checkpoint_of_a_known_log_is_accepted() {
        let t = tree(300, u64::MAX);
        let logs = [log_key().public().clone()];
        // First contact: nothing remembered, old 0, no proof.
        let cp = decide(&request(0, &t), &logs, None).unwrap();
        assert_eq!((cp.size, cp.root), (300, t.root()));
        // From an earlier cosigned size, with its consistency proof.
        for old in [1, 2, 255, 256, 299] {
            decide(&request(old, &t), &logs, at(old, &t)).unwrap();
        }
        // The same checkpoint again.
        let mut same = request(0, &t);
        same.old = 300;
        decide(&same, &logs, at(300, &t)).unwrap();
    }

    #[test]
    fn each_refusal_has_the_status_tlog_witness_gives_it() {
        let t = tree(300, u64::MAX);
        let logs = [log_key().public().clone()];
        let status =
            |req: &AddCheckpoint, latest: Option<Latest>| decide(req, &logs, latest).unwrap_err();
        // 404: another origin.
        let stranger = PrivateKey::from_seed("other.example/log", &[2; 32]).unwrap();
        let mut r = request(0, &t);
        r.checkpoint = checkpoint(&t, &stranger);
        assert_eq!(status(&r, None).status(), 404);
        // 403: the origin's name, another key.
        let impostor = PrivateKey::from_seed(ORIGIN, &[3; 32]).unwrap();
        r.checkpoint = checkpoint(&t, &impostor);
        assert_eq!(status(&r, None).status(), 403);
        // 400: old beyond the checkpoint.
        let mut r = request(0, &t);
        r.old = 301;
        assert_eq!(status(&r, None).status(), 400);
        // 409: old is not what the witness cosigned, with the size it did.
        let e = status(&request(0, &t), at(100, &t));
        assert_eq!((e.status(), e.latest_size()), (409, Some(100)));
        let e = status(&request(50, &t), at(100, &t));
        assert_eq!((e.status(), e.latest_size()), (409, Some(100)));
        let e = status(&request(50, &t), None);
        assert_eq!((e.status(), e.latest_size()), (409, Some(0)));
        // 409: the same size, another root (a fork).
        let fork = tree(300, 200);
        let mut r = request(0, &fork);
        r.old = 300;
        let e = status(&r, at(300, &t));
        // Without a size: "ask again from 300" would be wrong.
        assert_eq!((e.status(), e.latest_size()), (409, None));
        // At size 0 too: the empty tree has one root.
        let empty = tree(0, u64::MAX);
        decide(&request(0, &empty), &logs, None).unwrap();
        let mut r = request(0, &empty);
        r.checkpoint = Checkpoint {
            origin: ORIGIN.into(),
            size: 0,
            root: [7; 32],
            extensions: vec![],
        }
        .sign(&log_key())
        .unwrap();
        let e = status(&r, None);
        assert!(matches!(e, Refusal::Fork { size: 0 }), "{e}");
        // 400: a checkpoint that does not parse (a size with a leading zero, no final
        // newline), signed or not.
        let good = request(0, &t).checkpoint;
        for bad in [
            good.replacen("\n300\n", "\n0300\n", 1),
            good.trim_end().to_owned(),
        ] {
            let mut r = request(0, &t);
            r.checkpoint = bad;
            assert_eq!(status(&r, None).status(), 400, "{:?}", r.checkpoint);
        }
        // 422: a fork at a larger size, a bent proof, a proof from 0.
        let e = status(&request(250, &fork), at(250, &t));
        assert_eq!(e.status(), 422, "{e}");
        let mut r = request(100, &t);
        r.proof[0][0] ^= 1;
        assert_eq!(status(&r, at(100, &t)).status(), 422);
        r.proof.pop();
        assert_eq!(status(&r, at(100, &t)).status(), 422);
        let mut r = request(0, &t);
        r.proof = vec![[0; 32]];
        assert_eq!(status(&r, None).status(), 422);
    }
}

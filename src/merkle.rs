//! RFC 6962 / RFC 9162 Merkle tree maths (SPEC §4), pure, over stored complete-subtree hashes.
//!
//! The log stores each *complete* subtree hash once, when it becomes complete (it never changes
//! after that). Every hash a root or proof needs, including the "ephemeral" hash of an incomplete
//! right edge, is the right-to-left fold of the O(log n) complete subtrees covering its leaf
//! range. So a root or a proof reads O(log n) stored hashes, in one batch, and never walks the
//! tree.
//!
//! Proof shapes and verification follow RFC 9162 §2.1.3-§2.1.4 as implemented by
//! transparency-dev/merkle (`proof/proof.go`, `proof/verify.go`): consistency proofs from size 0
//! or between equal sizes are empty, and a first size larger than the second is an error.

use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::ops::Range;

/// A SHA-256 hash: leaf hashes, node hashes and roots.
pub type Hash = [u8; 32];

/// The root of the empty tree (size 0): SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The RFC 6962 leaf hash of an entry: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// The RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A complete subtree: the hash of leaves `[index << level, (index + 1) << level)`.
///
/// Level 0 nodes are the leaf hashes. A node is stored once it is complete and never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0 = a leaf hash).
    pub level: u8,
    /// Position among the nodes of this level, counted from the left.
    pub index: u64,
}

impl NodeId {
    /// The node at `level`, `index`.
    pub fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }

    /// The leaves this node covers, or `None` if that range does not fit in `u64`.
    pub fn leaf_range(&self) -> Option<Range<u64>> {
        let level = u32::from(self.level);
        let width = 1u64.checked_shl(level)?;
        let start = self.index.checked_mul(width)?;
        let end = start.checked_add(width)?;
        Some(start..end)
    }

    /// Whether this node is complete (and so stored) in a tree of `size` leaves.
    pub fn is_complete_in(&self, size: u64) -> bool {
        self.leaf_range().is_some_and(|r| r.end <= size)
    }
}

/// Reads stored complete-subtree hashes: the store implements it on sled, [`MemoryTree`] in memory.
pub trait HashReader {
    /// Why the store could not answer.
    type Error;

    /// Returns the hash of every node of `ids`, in the same order, exactly one per id.
    ///
    /// Callers only ask for nodes complete in the tree size they work on. An answer with another
    /// number of hashes makes the caller fail with [`MerkleError::WrongHashCount`].
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

/// Why a Merkle proof could not be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index is not inside the tree.
    #[error("leaf index {index} is out of range for a tree of size {size}: expected index < size")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error(
        "first tree size {first} is larger than second tree size {second}: expected first <= second"
    )]
    SizesOutOfOrder {
        /// The first (older) tree size.
        first: u64,
        /// The second (newer) tree size.
        second: u64,
    },
    /// The proof does not have the number of hashes its sizes and index call for.
    #[error("proof has {got} hashes, but these tree sizes and index need exactly {expected}")]
    WrongProofLength {
        /// The number of hashes in the proof.
        got: usize,
        /// The number the proof must have.
        expected: usize,
    },
    /// The inclusion proof does not lead to the given root.
    #[error(
        "inclusion proof does not lead to the expected root: it gives {}, expected {}; the leaf, index, tree size or proof is wrong",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    RootMismatch {
        /// The root the leaf and proof give.
        computed: Hash,
        /// The root the proof was checked against.
        expected: Hash,
    },
    /// The consistency proof does not lead to the given root of the first (older) tree.
    #[error(
        "consistency proof does not match the first tree's root: it gives {}, expected {}; the first size, first root or proof is wrong",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    FirstRootMismatch {
        /// The first-tree root the proof gives.
        computed: Hash,
        /// The first-tree root the proof was checked against.
        expected: Hash,
    },
    /// The consistency proof does not lead to the given root of the second (newer) tree.
    #[error(
        "consistency proof does not match the second tree's root: it gives {}, expected {}; the tree was rewritten, or a size, root or proof is wrong",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    SecondRootMismatch {
        /// The second-tree root the proof gives.
        computed: Hash,
        /// The second-tree root the proof was checked against.
        expected: Hash,
    },
    /// Two roots claimed for the same tree size differ: the log forked or a root is wrong.
    #[error(
        "two different roots for the same tree size {size}: {} and {}; the log forked or a root is wrong",
        hex::encode(.first),
        hex::encode(.second)
    )]
    RootsDiffer {
        /// The tree size both roots claim.
        size: u64,
        /// The first root.
        first: Hash,
        /// The second root.
        second: Hash,
    },
    /// The hash store answered with another number of hashes than asked for.
    #[error(
        "the hash store returned {returned} hashes for {requested} requested tree nodes; is the tree size larger than the stored tree?"
    )]
    WrongHashCount {
        /// How many node hashes were asked for.
        requested: usize,
        /// How many the store returned.
        returned: usize,
    },
}

/// Why a root, proof or builder could not be made from stored hashes.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// The request itself is invalid, or the store's answer is inconsistent.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// The store failed to read the hashes.
    #[error("reading stored Merkle tree hashes failed: {0}")]
    Read(#[source] E),
}

impl From<ReadError<Infallible>> for MerkleError {
    /// An in-memory reader cannot fail to read, so only the Merkle error remains.
    fn from(e: ReadError<Infallible>) -> Self {
        match e {
            ReadError::Merkle(m) => m,
            ReadError::Read(never) => match never {},
        }
    }
}

/// The complete subtrees covering leaves `[begin, end)`, left to right (the fewest possible).
///
/// Their right-to-left fold with [`node_hash`] is the RFC 6962 hash of that range whenever the
/// range is a subtree of the RFC tree (as every root and proof element is). Empty if
/// `begin >= end`.
pub fn covering_nodes(begin: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    push_covering_nodes(begin, end, &mut out);
    out
}

/// Appends the covering nodes of `[begin, end)` to `out`; returns how many were appended.
fn push_covering_nodes(mut begin: u64, end: u64, out: &mut Vec<NodeId>) -> usize {
    let before = out.len();
    while begin < end {
        // The largest aligned block starting at `begin` that does not pass `end`.
        let fits = 63 - (end - begin).leading_zeros();
        let level = begin.trailing_zeros().min(fits);
        out.push(NodeId {
            level: level as u8,
            index: begin >> level,
        });
        begin += 1u64 << level;
    }
    out.len() - before
}

/// Folds hashes of adjacent subtrees right to left: `H(a, H(b, H(c, d)))`.
fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    hashes
        .iter()
        .rev()
        .copied()
        .reduce(|right, left| node_hash(&left, &right))
}

/// Reads `ids` in one call, checking the store answered one hash per id (a tile, a proof, a
/// root: every reader of stored hashes goes through here).
pub fn read_exact<R: HashReader>(ids: &[NodeId], r: &R) -> Result<Vec<Hash>, ReadError<R::Error>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = r.read_hashes(ids).map_err(ReadError::Read)?;
    if hashes.len() != ids.len() {
        return Err(MerkleError::WrongHashCount {
            requested: ids.len(),
            returned: hashes.len(),
        }
        .into());
    }
    Ok(hashes)
}

/// The RFC 6962 hashes of the leaf ranges `ranges`, from one batched read of their covering nodes.
fn range_hashes<R: HashReader>(
    ranges: &[(u64, u64)],
    r: &R,
) -> Result<Vec<Hash>, ReadError<R::Error>> {
    let mut ids = Vec::new();
    let mut counts = Vec::with_capacity(ranges.len());
    for &(begin, end) in ranges {
        counts.push(push_covering_nodes(begin, end, &mut ids));
    }
    let hashes = read_exact(&ids, r)?;
    let mut out = Vec::with_capacity(ranges.len());
    let mut rest = hashes.as_slice();
    for n in counts {
        let (these, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        // Ranges are never empty, so a fold always has something; EMPTY_ROOT is unreachable.
        out.push(fold_right(these).unwrap_or(EMPTY_ROOT));
    }
    Ok(out)
}

/// The largest power of two strictly below `n` (`n >= 2`): RFC 6962's split point `k`.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root of the first `size` leaves of the stored tree (`EMPTY_ROOT` for 0).
///
/// Reads the popcount(size) complete subtrees covering `[0, size)`, in one call.
pub fn root<R: HashReader>(size: u64, r: &R) -> Result<Hash, ReadError<R::Error>> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    let hashes = range_hashes(&[(0, size)], r)?;
    Ok(hashes.first().copied().unwrap_or(EMPTY_ROOT))
}

/// The leaf ranges whose hashes form the RFC 6962 PATH(index, D[0:size]), bottom-up.
fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let (mut lo, mut hi) = (0u64, size);
    let mut top_down = Vec::new();
    while hi - lo > 1 {
        let mid = lo + split_point(hi - lo);
        if index < mid {
            top_down.push((mid, hi));
            hi = mid;
        } else {
            top_down.push((lo, mid));
            lo = mid;
        }
    }
    top_down.reverse();
    top_down
}

/// The RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves.
///
/// Reads at most about 2·log2(size) stored hashes, in one call.
pub fn inclusion_proof<R: HashReader>(
    index: u64,
    size: u64,
    r: &R,
) -> Result<Vec<Hash>, ReadError<R::Error>> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size }.into());
    }
    range_hashes(&inclusion_ranges(index, size), r)
}

/// The leaf ranges whose hashes form the RFC 6962 PROOF(first, D[0:second]), in proof order.
///
/// Needs `0 < first < second`.
fn consistency_ranges(first: u64, second: u64) -> Vec<(u64, u64)> {
    // SUBPROOF(m, D[lo:hi], b), unrolled: `first` stays an absolute leaf position and
    // lo < first <= hi holds throughout.
    let (mut lo, mut hi) = (0u64, second);
    let mut complete = true; // RFC 6962's `b`: still on the path of the first tree's own root
    let mut top_down = Vec::new();
    while first != hi {
        let mid = lo + split_point(hi - lo);
        if first <= mid {
            top_down.push((mid, hi));
            hi = mid;
        } else {
            top_down.push((lo, mid));
            lo = mid;
            complete = false;
        }
    }
    let mut out = Vec::with_capacity(top_down.len() + 1);
    if !complete {
        // The first tree's root is not a node of the second tree: the proof starts with the
        // subtree where it ends.
        out.push((lo, hi));
    }
    out.extend(top_down.into_iter().rev());
    out
}

/// The RFC 9162 consistency proof from the tree of `first` leaves to the tree of `second`.
///
/// Empty when `first` is 0 or equals `second`. Reads at most about 2·log2(second) stored
/// hashes, in one call.
pub fn consistency_proof<R: HashReader>(
    first: u64,
    second: u64,
    r: &R,
) -> Result<Vec<Hash>, ReadError<R::Error>> {
    if first > second {
        return Err(MerkleError::SizesOutOfOrder { first, second }.into());
    }
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    range_hashes(&consistency_ranges(first, second), r)
}

/// Splits an inclusion proof of `index` in a tree of `size` into its inner part (siblings below
/// the point where the leaf's path leaves the tree's right edge) and border part.
fn decompose_inclusion(index: u64, size: u64) -> (usize, usize) {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner as usize, border as usize)
}

/// Hashes `seed` up through the inner proof: the bits of `index` say on which side it sits.
fn chain_inner(seed: Hash, proof: &[Hash], index: u64) -> Hash {
    proof.iter().enumerate().fold(seed, |acc, (i, h)| {
        if (index >> i) & 1 == 0 {
            node_hash(&acc, h)
        } else {
            node_hash(h, &acc)
        }
    })
}

/// Like [`chain_inner`] but only through the left siblings: the path of a tree's right edge.
fn chain_inner_right(seed: Hash, proof: &[Hash], index: u64) -> Hash {
    proof.iter().enumerate().fold(seed, |acc, (i, h)| {
        if (index >> i) & 1 == 1 {
            node_hash(h, &acc)
        } else {
            acc
        }
    })
}

/// Hashes `seed` up the right border: every proof hash is a left sibling.
fn chain_border_right(seed: Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(seed, |acc, h| node_hash(h, &acc))
}

/// Checks that `leaf` (a leaf hash) is entry `index` of the tree of `size` leaves with `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let (inner, border) = decompose_inclusion(index, size);
    if proof.len() != inner + border {
        return Err(MerkleError::WrongProofLength {
            got: proof.len(),
            expected: inner + border,
        });
    }
    let (inner_proof, border_proof) = proof.split_at(inner);
    let computed = chain_border_right(chain_inner(*leaf, inner_proof, index), border_proof);
    if computed != *root {
        return Err(MerkleError::RootMismatch {
            computed,
            expected: *root,
        });
    }
    Ok(())
}

/// Checks that the tree of `second` leaves with `second_root` extends the tree of `first` leaves
/// with `first_root` (append-only), using an RFC 9162 consistency proof.
///
/// Equal sizes need an empty proof and equal roots. Size 0 needs an empty proof and
/// `first_root == EMPTY_ROOT` (stricter than transparency-dev/merkle, which ignores that root).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if first > second {
        return Err(MerkleError::SizesOutOfOrder { first, second });
    }
    if first == second || first == 0 {
        if !proof.is_empty() {
            return Err(MerkleError::WrongProofLength {
                got: proof.len(),
                expected: 0,
            });
        }
        if first == 0 {
            if *first_root != EMPTY_ROOT {
                return Err(MerkleError::FirstRootMismatch {
                    computed: EMPTY_ROOT,
                    expected: *first_root,
                });
            }
        } else if first_root != second_root {
            return Err(MerkleError::RootsDiffer {
                size: first,
                first: *first_root,
                second: *second_root,
            });
        }
        return Ok(());
    }

    // The proof is the inclusion proof, in the second tree, of the largest complete subtree
    // ending at `first` (preceded by that subtree's hash unless it is the whole first tree).
    let (inner, border) = decompose_inclusion(first - 1, second);
    let shift = first.trailing_zeros() as usize;
    let inner = inner.saturating_sub(shift);
    let first_is_complete = first == 1u64 << shift;
    let (seed, rest) = if first_is_complete {
        (*first_root, proof)
    } else {
        match proof.split_first() {
            Some((seed, rest)) => (*seed, rest),
            None => {
                return Err(MerkleError::WrongProofLength {
                    got: 0,
                    expected: 1 + inner + border,
                });
            }
        }
    };
    if rest.len() != inner + border {
        let start = usize::from(!first_is_complete);
        return Err(MerkleError::WrongProofLength {
            got: proof.len(),
            expected: start + inner + border,
        });
    }
    let (inner_proof, border_proof) = rest.split_at(inner);
    let mask = (first - 1) >> shift;

    let computed1 = chain_border_right(chain_inner_right(seed, inner_proof, mask), border_proof);
    if computed1 != *first_root {
        return Err(MerkleError::FirstRootMismatch {
            computed: computed1,
            expected: *first_root,
        });
    }
    let computed2 = chain_border_right(chain_inner(seed, inner_proof, mask), border_proof);
    if computed2 != *second_root {
        return Err(MerkleError::SecondRootMismatch {
            computed: computed2,
            expected: *second_root,
        });
    }
    Ok(())
}

/// The right edge of a growing tree: one hash per complete subtree covering `[0, size)`.
///
/// [`TreeBuilder::push`] appends a leaf hash and returns the nodes that became complete, which
/// the caller stores. The ledger uses it to append; audit uses it to recompute a root while
/// streaming entries, in O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeBuilder {
    size: u64,
    /// `(level, hash)` of the covering subtrees, left to right: levels strictly decrease.
    edge: Vec<(u8, Hash)>,
}

impl TreeBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the right edge of the stored tree of `size` leaves: reads popcount(size) hashes
    /// in one call.
    pub fn from_reader<R: HashReader>(size: u64, r: &R) -> Result<Self, ReadError<R::Error>> {
        let ids = covering_nodes(0, size);
        let hashes = read_exact(&ids, r)?;
        let edge = ids.iter().map(|id| id.level).zip(hashes).collect();
        Ok(TreeBuilder { size, edge })
    }

    /// The number of leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. Returns the nodes that became complete: the leaf itself at level 0,
    /// then each parent it completed, bottom-up.
    ///
    /// A tree cannot hold more than `u64::MAX` leaves; pushing past that is not supported.
    pub fn push(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        let mut done = Vec::with_capacity(1 + index.trailing_ones() as usize);
        done.push((NodeId { level: 0, index }, leaf));
        let (mut level, mut hash) = (0u8, leaf);
        // Merge with the edge's rightmost subtrees while they are the same height.
        while let Some(&(l, left)) = self.edge.last() {
            if l != level {
                break;
            }
            self.edge.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            done.push((
                NodeId {
                    level,
                    index: index >> level,
                },
                hash,
            ));
        }
        self.edge.push((level, hash));
        self.size = self.size.wrapping_add(1);
        done
    }

    /// The complete subtrees covering `[0, size)`, left to right: with the nodes appended
    /// after them, they are every node an inclusion proof of a later leaf can need.
    pub fn edge_nodes(&self) -> Vec<(NodeId, Hash)> {
        covering_nodes(0, self.size)
            .into_iter()
            .zip(self.edge.iter().map(|&(_, h)| h))
            .collect()
    }

    /// The root of the tree so far (`EMPTY_ROOT` when empty).
    pub fn root(&self) -> Hash {
        let hashes: Vec<Hash> = self.edge.iter().map(|&(_, h)| h).collect();
        fold_right(&hashes).unwrap_or(EMPTY_ROOT)
    }
}

/// An in-memory tree that stores every complete node; a [`HashReader`] that cannot fail.
///
/// For tests, tools and small logs. Asking it for a node it does not have (beyond its size)
/// yields a short answer, which the proof functions report as [`MerkleError::WrongHashCount`].
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is the hash of node `(l, i)`.
    levels: Vec<Vec<Hash>>,
    builder: TreeBuilder,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree of the given leaf hashes, in order.
    pub fn from_leaves<I: IntoIterator<Item = Hash>>(leaves: I) -> Self {
        let mut t = Self::new();
        for leaf in leaves {
            t.push(leaf);
        }
        t
    }

    /// Appends a leaf hash, storing every node it completes.
    pub fn push(&mut self, leaf: Hash) {
        for (id, hash) in self.builder.push(leaf) {
            let level = usize::from(id.level);
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            if let Some(row) = self.levels.get_mut(level) {
                row.push(hash);
            }
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.builder.size()
    }

    /// The root of the whole tree (`EMPTY_ROOT` when empty).
    pub fn root(&self) -> Hash {
        self.builder.root()
    }

    /// The stored hash of a node, if it is complete in this tree.
    pub fn get(&self, id: NodeId) -> Option<Hash> {
        let index = usize::try_from(id.index).ok()?;
        self.levels.get(usize::from(id.level))?.get(index).copied()
    }
}

impl HashReader for MemoryTree {
    type Error = Infallible;

    /// Answers the hashes of `ids` up to the first node it does not have.
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Infallible> {
        Ok(ids.iter().map_while(|&id| self.get(id)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
    }

    #[test]
    fn covering_nodes_are_minimal_and_aligned() {
        assert!(covering_nodes(0, 0).is_empty());
        assert_eq!(
            covering_nodes(0, 13),
            vec![NodeId::new(3, 0), NodeId::new(2, 2), NodeId::new(0, 12)]
        );
        assert_eq!(
            covering_nodes(5, 16),
            vec![NodeId::new(0, 5), NodeId::new(1, 3), NodeId::new(3, 1)]
        );
        assert_eq!(covering_nodes(0, u64::MAX).len(), 64);
        // Every range is covered exactly, by aligned blocks.
        for begin in 0..70u64 {
            for end in begin..70 {
                let mut at = begin;
                for id in covering_nodes(begin, end) {
                    let r = id.leaf_range().unwrap();
                    assert_eq!(r.start, at);
                    at = r.end;
                }
                assert_eq!(at, end);
            }
        }
    }

    #[test]
    fn split_point_is_largest_power_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn decomposition_handles_the_top_bit() {
        // index ^ (size - 1) may use bit 63: the shift must not overflow.
        assert_eq!(decompose_inclusion(0, (1 << 63) + 1), (64, 0));
        assert_eq!(decompose_inclusion(5, 8), (2, 1));
    }

    #[test]
    fn node_id_ranges() {
        assert_eq!(NodeId::new(3, 2).leaf_range(), Some(16..24));
        assert_eq!(NodeId::new(64, 0).leaf_range(), None);
        assert_eq!(NodeId::new(1, u64::MAX).leaf_range(), None);
        assert!(NodeId::new(2, 1).is_complete_in(8));
        assert!(!NodeId::new(2, 1).is_complete_in(7));
    }

    #[test]
    fn consistency_ranges_match_rfc_example() {
        // RFC 6962 §2.1.3 tree of 7 leaves: PROOF(3, D[7]) = [c, d, g, l] =
        // leaf 2, leaf 3, [0,2), [4,7).
        assert_eq!(
            consistency_ranges(3, 7),
            vec![(2, 3), (3, 4), (0, 2), (4, 7)]
        );
        // PROOF(4, D[7]) = [l]; PROOF(6, D[7]) = [i, j, k] = [4,6), leaf 6, [0,4).
        assert_eq!(consistency_ranges(4, 7), vec![(4, 7)]);
        assert_eq!(consistency_ranges(6, 7), vec![(4, 6), (6, 7), (0, 4)]);
    }
}

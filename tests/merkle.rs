//! Merkle tree maths against public vectors, a naive RFC 6962 reference, and a counting store.

use proptest::prelude::*;
use reman_ledger::merkle::{
    EMPTY_ROOT, Hash, HashReader, MemoryTree, MerkleError, NodeId, ReadError, TreeBuilder,
    consistency_proof, covering_nodes, inclusion_proof, leaf_hash, node_hash, root,
    verify_consistency, verify_inclusion,
};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::convert::Infallible;

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/vectors/rfc6962-merkle.json"
));

fn h(hex_str: &str) -> Hash {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

fn hashes(v: &serde_json::Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| h(x.as_str().unwrap()))
        .collect()
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap()
}

/// The leaf data of the property-test trees: distinct per index.
fn test_leaf(i: u64) -> Hash {
    leaf_hash(format!("entry {i}").as_bytes())
}

fn tree(n: u64) -> MemoryTree {
    MemoryTree::from_leaves((0..n).map(test_leaf))
}

// ---------------------------------------------------------------------------------------------
// Naive reference: RFC 6962 §2.1 MTH, PATH and PROOF/SUBPROOF, recursive on leaf ranges.
// Memoised on (lo, hi) only so the exhaustive loops stay fast; the recursion is the RFC's.

struct Reference {
    leaves: Vec<Hash>,
    memo: RefCell<HashMap<(usize, usize), Hash>>,
}

impl Reference {
    fn new(n: u64) -> Self {
        Reference {
            leaves: (0..n).map(test_leaf).collect(),
            memo: RefCell::new(HashMap::new()),
        }
    }

    fn k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// MTH(D[lo:hi]).
    fn mth(&self, lo: usize, hi: usize) -> Hash {
        if let Some(x) = self.memo.borrow().get(&(lo, hi)) {
            return *x;
        }
        let x = match hi - lo {
            0 => EMPTY_ROOT,
            1 => self.leaves[lo],
            n => {
                let k = Self::k(n);
                node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi))
            }
        };
        self.memo.borrow_mut().insert((lo, hi), x);
        x
    }

    /// PATH(m, D[lo:hi]), m relative to lo.
    fn path(&self, m: usize, lo: usize, hi: usize) -> Vec<Hash> {
        let n = hi - lo;
        if n == 1 {
            return vec![];
        }
        let k = Self::k(n);
        if m < k {
            let mut p = self.path(m, lo, lo + k);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.path(m - k, lo + k, hi);
            p.push(self.mth(lo, lo + k));
            p
        }
    }

    /// SUBPROOF(m, D[lo:hi], b), m relative to lo.
    fn subproof(&self, m: usize, lo: usize, hi: usize, b: bool) -> Vec<Hash> {
        let n = hi - lo;
        if m == n {
            return if b { vec![] } else { vec![self.mth(lo, hi)] };
        }
        let k = Self::k(n);
        if m <= k {
            let mut p = self.subproof(m, lo, lo + k, b);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.subproof(m - k, lo + k, hi, false);
            p.push(self.mth(lo, lo + k));
            p
        }
    }

    fn proof(&self, m: usize, n: usize) -> Vec<Hash> {
        if m == 0 {
            return vec![];
        }
        self.subproof(m, 0, n, true)
    }
}

// ---------------------------------------------------------------------------------------------
// Public vectors.

#[test]
fn vectors_roots_by_size() {
    let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let leaves: Vec<Hash> = v["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| leaf_hash(&hex::decode(x.as_str().unwrap()).unwrap()))
        .collect();
    let full = MemoryTree::from_leaves(leaves.iter().copied());
    let roots = v["roots_by_size"].as_object().unwrap();
    assert_eq!(roots.len(), 9);
    let mut builder = TreeBuilder::new();
    for (size, want) in roots {
        let size: u64 = size.parse().unwrap();
        let want = h(want.as_str().unwrap());
        assert_eq!(root(size, &full).unwrap(), want, "root of size {size}");
        let prefix = MemoryTree::from_leaves(leaves[..size as usize].iter().copied());
        assert_eq!(prefix.root(), want);
        assert_eq!(prefix.size(), size);
    }
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(builder.root(), h(roots[&i.to_string()].as_str().unwrap()));
        builder.push(*leaf);
    }
    assert_eq!(builder.root(), h(roots["8"].as_str().unwrap()));
    assert_eq!(EMPTY_ROOT, h(roots["0"].as_str().unwrap()));
}

#[test]
fn vectors_inclusion() {
    let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let leaves: Vec<Hash> = v["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| leaf_hash(&hex::decode(x.as_str().unwrap()).unwrap()))
        .collect();
    let full = MemoryTree::from_leaves(leaves.iter().copied());
    let cases = v["inclusion"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for c in cases {
        let (size, index) = (u(&c["size"]), u(&c["index"]));
        let want = hashes(&c["proof"]);
        let got = inclusion_proof(index, size, &full).unwrap();
        assert_eq!(got, want, "inclusion proof of {index} in {size}");
        let r = h(v["roots_by_size"][size.to_string()].as_str().unwrap());
        verify_inclusion(&leaves[index as usize], index, size, &want, &r).unwrap();
    }
}

#[test]
fn vectors_consistency() {
    let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let leaves: Vec<Hash> = v["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| leaf_hash(&hex::decode(x.as_str().unwrap()).unwrap()))
        .collect();
    let full = MemoryTree::from_leaves(leaves.iter().copied());
    let cases = v["consistency"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let (first, second) = (u(&c["first"]), u(&c["second"]));
        let want = hashes(&c["proof"]);
        let got = consistency_proof(first, second, &full).unwrap();
        assert_eq!(got, want, "consistency proof {first} -> {second}");
        let r1 = h(v["roots_by_size"][first.to_string()].as_str().unwrap());
        let r2 = h(v["roots_by_size"][second.to_string()].as_str().unwrap());
        verify_consistency(first, second, &r1, &r2, &want).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Exhaustive comparison with the reference on every tree size up to 300.

const MAX: u64 = 300;

#[test]
fn exhaustive_inclusion_and_roots() {
    let t = tree(MAX);
    let reference = Reference::new(MAX);
    let mut builder = TreeBuilder::new();
    assert_eq!(builder.root(), EMPTY_ROOT);
    assert_eq!(root(0, &t).unwrap(), EMPTY_ROOT);
    for n in 1..=MAX {
        builder.push(test_leaf(n - 1));
        let r = root(n, &t).unwrap();
        assert_eq!(r, reference.mth(0, n as usize), "root of size {n}");
        assert_eq!(builder.root(), r, "builder root of size {n}");
        assert_eq!(builder.size(), n);
        for i in 0..n {
            let p = inclusion_proof(i, n, &t).unwrap();
            assert_eq!(
                p,
                reference.path(i as usize, 0, n as usize),
                "path {i} in {n}"
            );
            verify_inclusion(&test_leaf(i), i, n, &p, &r).unwrap();
        }
    }
}

#[test]
fn exhaustive_consistency() {
    let t = tree(MAX);
    let reference = Reference::new(MAX);
    let roots: Vec<Hash> = (0..=MAX).map(|n| root(n, &t).unwrap()).collect();
    for n in 0..=MAX {
        for m in 0..=n {
            let p = consistency_proof(m, n, &t).unwrap();
            assert_eq!(
                p,
                reference.proof(m as usize, n as usize),
                "proof {m} -> {n}"
            );
            verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &p).unwrap();
        }
    }
}

#[test]
fn builder_emits_exactly_the_stored_nodes() {
    let t = tree(MAX);
    let mut builder = TreeBuilder::new();
    let mut emitted = Vec::new();
    for i in 0..MAX {
        let done = builder.push(test_leaf(i));
        // The leaf first, then parents bottom-up.
        assert_eq!(done[0], (NodeId::new(0, i), test_leaf(i)));
        assert_eq!(done.len() as u32, 1 + i.trailing_ones());
        for (k, (id, _)) in done.iter().enumerate() {
            assert_eq!(id.level as usize, k);
            assert_eq!(id.leaf_range().unwrap().end, i + 1);
        }
        emitted.extend(done);
    }
    // Every complete node of a 300-leaf tree, once: 300 + 150 + 75 + 37 + 18 + 9 + 4 + 2 + 1.
    assert_eq!(emitted.len(), 596);
    for (id, hash) in emitted {
        assert_eq!(t.get(id), Some(hash), "{id:?}");
    }
}

#[test]
fn builder_from_reader_then_push_equals_from_scratch() {
    let t = tree(MAX);
    for n in 0..=MAX {
        let mut resumed = TreeBuilder::from_reader(n, &t).unwrap();
        assert_eq!(resumed.size(), n);
        assert_eq!(resumed.root(), root(n, &t).unwrap());
        // A few pushes are enough to exercise the merge with every rebuilt edge.
        let mut scratch = TreeBuilder::new();
        for i in 0..n {
            scratch.push(test_leaf(i));
        }
        for i in n..(n + 9).min(MAX) {
            assert_eq!(resumed.push(test_leaf(i)), scratch.push(test_leaf(i)));
            assert_eq!(resumed.root(), scratch.root());
            assert_eq!(resumed.root(), root(i + 1, &t).unwrap());
        }
        assert_eq!(resumed, scratch);
    }
}

// ---------------------------------------------------------------------------------------------
// Bad inputs: each gets its specific error.

fn five() -> (MemoryTree, Vec<Hash>) {
    let t = tree(8);
    let roots = (0..=8).map(|n| root(n, &t).unwrap()).collect();
    (t, roots)
}

#[test]
fn index_out_of_range() {
    let (t, roots) = five();
    let e = MerkleError::from(inclusion_proof(5, 5, &t).unwrap_err());
    assert_eq!(e, MerkleError::IndexOutOfRange { index: 5, size: 5 });
    let e = MerkleError::from(inclusion_proof(0, 0, &t).unwrap_err());
    assert_eq!(e, MerkleError::IndexOutOfRange { index: 0, size: 0 });
    let p = inclusion_proof(4, 5, &t).unwrap();
    assert_eq!(
        verify_inclusion(&test_leaf(4), 5, 5, &p, &roots[5]),
        Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert_eq!(
        verify_inclusion(&test_leaf(0), 0, 0, &[], &EMPTY_ROOT),
        Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
    );
}

#[test]
fn sizes_out_of_order() {
    let (t, roots) = five();
    let e = MerkleError::from(consistency_proof(6, 5, &t).unwrap_err());
    assert_eq!(
        e,
        MerkleError::SizesOutOfOrder {
            first: 6,
            second: 5
        }
    );
    assert_eq!(
        verify_consistency(6, 5, &roots[6], &roots[5], &[]),
        Err(MerkleError::SizesOutOfOrder {
            first: 6,
            second: 5
        })
    );
}

#[test]
fn inclusion_wrong_length() {
    let (t, roots) = five();
    let mut p = inclusion_proof(2, 5, &t).unwrap();
    assert_eq!(p.len(), 3);
    p.push([7; 32]);
    assert_eq!(
        verify_inclusion(&test_leaf(2), 2, 5, &p, &roots[5]),
        Err(MerkleError::WrongProofLength {
            got: 4,
            expected: 3
        })
    );
    p.truncate(2);
    assert_eq!(
        verify_inclusion(&test_leaf(2), 2, 5, &p, &roots[5]),
        Err(MerkleError::WrongProofLength {
            got: 2,
            expected: 3
        })
    );
    // A single-leaf tree's proof is empty.
    assert_eq!(
        verify_inclusion(&test_leaf(0), 0, 1, &[roots[1]], &roots[1]),
        Err(MerkleError::WrongProofLength {
            got: 1,
            expected: 0
        })
    );
}

#[test]
fn inclusion_root_mismatch() {
    let (t, roots) = five();
    let p = inclusion_proof(2, 5, &t).unwrap();
    let e = verify_inclusion(&test_leaf(3), 2, 5, &p, &roots[5]).unwrap_err();
    assert!(
        matches!(e, MerkleError::RootMismatch { expected, .. } if expected == roots[5]),
        "{e:?}"
    );
    // Right leaf, proof for another size checked against that size's root.
    let e = verify_inclusion(&test_leaf(2), 2, 6, &p, &roots[6]).unwrap_err();
    assert!(matches!(e, MerkleError::RootMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains(&hex::encode(roots[6])));
}

#[test]
fn consistency_equal_and_empty_sizes() {
    let (t, roots) = five();
    assert!(consistency_proof(5, 5, &t).unwrap().is_empty());
    assert!(consistency_proof(0, 5, &t).unwrap().is_empty());
    assert!(consistency_proof(0, 0, &t).unwrap().is_empty());
    verify_consistency(5, 5, &roots[5], &roots[5], &[]).unwrap();
    verify_consistency(0, 5, &EMPTY_ROOT, &roots[5], &[]).unwrap();
    verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]).unwrap();
    assert_eq!(
        verify_consistency(5, 5, &roots[5], &roots[6], &[]),
        Err(MerkleError::RootsDiffer {
            size: 5,
            first: roots[5],
            second: roots[6]
        })
    );
    assert_eq!(
        verify_consistency(5, 5, &roots[5], &roots[5], &[roots[1]]),
        Err(MerkleError::WrongProofLength {
            got: 1,
            expected: 0
        })
    );
    assert_eq!(
        verify_consistency(0, 5, &EMPTY_ROOT, &roots[5], &[roots[1]]),
        Err(MerkleError::WrongProofLength {
            got: 1,
            expected: 0
        })
    );
    assert_eq!(
        verify_consistency(0, 5, &roots[1], &roots[5], &[]),
        Err(MerkleError::FirstRootMismatch {
            computed: EMPTY_ROOT,
            expected: roots[1]
        })
    );
}

#[test]
fn consistency_wrong_length() {
    let (t, roots) = five();
    // 3 -> 7: seed plus 3 hashes (size 3 is not a power of two).
    let p = consistency_proof(3, 7, &t).unwrap();
    assert_eq!(p.len(), 4);
    assert_eq!(
        verify_consistency(3, 7, &roots[3], &roots[7], &p[..3]),
        Err(MerkleError::WrongProofLength {
            got: 3,
            expected: 4
        })
    );
    assert_eq!(
        verify_consistency(3, 7, &roots[3], &roots[7], &[]),
        Err(MerkleError::WrongProofLength {
            got: 0,
            expected: 4
        })
    );
    // 4 -> 7: size 4 is a power of two, so no seed: one hash.
    let p = consistency_proof(4, 7, &t).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(
        verify_consistency(4, 7, &roots[4], &roots[7], &[]),
        Err(MerkleError::WrongProofLength {
            got: 0,
            expected: 1
        })
    );
    let long = [p[0], p[0]];
    assert_eq!(
        verify_consistency(4, 7, &roots[4], &roots[7], &long),
        Err(MerkleError::WrongProofLength {
            got: 2,
            expected: 1
        })
    );
}

#[test]
fn consistency_root_mismatches() {
    let (t, roots) = five();
    let p = consistency_proof(3, 7, &t).unwrap();
    let e = verify_consistency(3, 7, &roots[4], &roots[7], &p).unwrap_err();
    assert_eq!(
        e,
        MerkleError::FirstRootMismatch {
            computed: roots[3],
            expected: roots[4]
        }
    );
    let e = verify_consistency(3, 7, &roots[3], &roots[8], &p).unwrap_err();
    assert_eq!(
        e,
        MerkleError::SecondRootMismatch {
            computed: roots[7],
            expected: roots[8]
        }
    );
    // A forked second tree: same size, one leaf changed.
    let mut forked = MemoryTree::new();
    for i in 0..7 {
        forked.push(if i == 5 {
            leaf_hash(b"forged")
        } else {
            test_leaf(i)
        });
    }
    let e = verify_consistency(3, 7, &roots[3], &forked.root(), &p).unwrap_err();
    assert!(matches!(e, MerkleError::SecondRootMismatch { .. }), "{e:?}");
}

#[test]
fn reading_beyond_the_stored_tree() {
    let (t, _) = five();
    let e = MerkleError::from(root(9, &t).unwrap_err());
    assert_eq!(
        e,
        MerkleError::WrongHashCount {
            requested: 2,
            returned: 1
        }
    );
    // Leaf 8 of a 9-leaf tree only needs the stored node (3, 0): that works.
    assert_eq!(inclusion_proof(8, 9, &t).unwrap(), vec![t.root()]);
    let e = MerkleError::from(inclusion_proof(3, 12, &t).unwrap_err());
    assert!(matches!(e, MerkleError::WrongHashCount { .. }), "{e:?}");
    let e = MerkleError::from(consistency_proof(3, 12, &t).unwrap_err());
    assert!(matches!(e, MerkleError::WrongHashCount { .. }), "{e:?}");
    let e = MerkleError::from(TreeBuilder::from_reader(12, &t).unwrap_err());
    assert!(matches!(e, MerkleError::WrongHashCount { .. }), "{e:?}");
}

/// A store whose reads fail.
struct Broken;

impl HashReader for Broken {
    type Error = std::io::Error;
    fn read_hashes(&self, _: &[NodeId]) -> Result<Vec<Hash>, std::io::Error> {
        Err(std::io::Error::other("disk on fire"))
    }
}

#[test]
fn store_errors_pass_through() {
    let e = inclusion_proof(1, 5, &Broken).unwrap_err();
    assert!(matches!(e, ReadError::Read(ref io) if io.to_string() == "disk on fire"));
    assert!(e.to_string().contains("disk on fire"));
    assert!(matches!(root(5, &Broken), Err(ReadError::Read(_))));
    assert!(matches!(
        consistency_proof(2, 5, &Broken),
        Err(ReadError::Read(_))
    ));
    assert!(matches!(
        TreeBuilder::from_reader(5, &Broken),
        Err(ReadError::Read(_))
    ));
    // Nothing to read: no call, no error.
    assert_eq!(root(0, &Broken).unwrap(), EMPTY_ROOT);
    assert!(inclusion_proof(0, 1, &Broken).unwrap().is_empty());
    assert!(consistency_proof(0, 5, &Broken).unwrap().is_empty());
    assert!(consistency_proof(5, 5, &Broken).unwrap().is_empty());
    assert_eq!(
        TreeBuilder::from_reader(0, &Broken).unwrap().root(),
        EMPTY_ROOT
    );
    // Bad requests are reported as such before any read.
    assert!(matches!(
        inclusion_proof(5, 5, &Broken),
        Err(ReadError::Merkle(MerkleError::IndexOutOfRange { .. }))
    ));
}

// ---------------------------------------------------------------------------------------------
// Read counts over a huge virtual tree.

/// Answers any node with a hash of its id, counting calls and hashes read.
struct Counting {
    size: u64,
    calls: Cell<usize>,
    read: Cell<usize>,
}

impl Counting {
    fn take(&self) -> (usize, usize) {
        (self.calls.replace(0), self.read.replace(0))
    }
}

impl HashReader for Counting {
    type Error = Infallible;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Infallible> {
        self.calls.set(self.calls.get() + 1);
        self.read.set(self.read.get() + ids.len());
        Ok(ids
            .iter()
            .map(|id| {
                assert!(id.is_complete_in(self.size), "asked for incomplete {id:?}");
                let mut b = [0u8; 9];
                b[0] = id.level;
                b[1..].copy_from_slice(&id.index.to_be_bytes());
                leaf_hash(&b)
            })
            .collect())
    }
}

/// Checks read counts for trees of `n` leaves; returns the largest inclusion-proof read.
fn check_read_counts(n: u64) -> usize {
    let bound = (2.0 * (n as f64).log2() + 2.0) as usize;
    let r = Counting {
        size: n,
        calls: Cell::new(0),
        read: Cell::new(0),
    };
    // Edges plus a spread of positions.
    let mut points: Vec<u64> = vec![
        0,
        1,
        2,
        n / 2,
        n - 3,
        n - 2,
        n - 1,
        (1 << 23) - 1,
        1 << 23,
        6_291_456,
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        points.push(x % n);
    }
    let mut worst = 0;
    for &i in &points {
        let p = inclusion_proof(i, n, &r).unwrap();
        let (calls, read) = r.take();
        assert_eq!(calls, 1, "inclusion of {i}: one batched read");
        assert!(read <= bound, "inclusion of {i} read {read} > {bound}");
        assert!(read >= p.len());
        worst = worst.max(read);
    }
    for &m in &points {
        let m = m.max(1);
        let p = consistency_proof(m, n, &r).unwrap();
        let (calls, read) = r.take();
        assert!(calls <= 1);
        assert!(
            read <= bound,
            "consistency {m} -> {n} read {read} > {bound}"
        );
        assert!(read >= p.len());
    }
    for &m in points.iter().take(200) {
        for second in [m + 1, m + 1000, n] {
            let second = second.min(n);
            consistency_proof(m, second, &r).unwrap();
            let (calls, read) = r.take();
            assert!(calls <= 1);
            assert!(read <= bound, "consistency {m} -> {second} read {read}");
        }
    }
    let b = TreeBuilder::from_reader(n, &r).unwrap();
    assert_eq!(b.size(), n);
    assert_eq!(r.take(), (1, n.count_ones() as usize));
    root(n, &r).unwrap();
    assert_eq!(r.take(), (1, n.count_ones() as usize));
    assert_eq!(covering_nodes(0, n).len(), n.count_ones() as usize);
    worst
}

#[test]
fn proofs_read_logarithmically_many_hashes() {
    // 10,000,000 has 8 one bits, so the incomplete right edge costs only a few extra reads
    // beside the 24-hash path (30 is the true maximum, reached e.g. at leaf 6,291,456).
    assert_eq!(check_read_counts(10_000_000), 30);
    // 2^24 - 1 has all bits set: leaf 0's incomplete sibling covers 23 complete subtrees, beside
    // 23 perfect-subtree siblings: 46 reads, the 2·log2(n) worst case.
    assert_eq!(check_read_counts((1 << 24) - 1), 46);
}

// ---------------------------------------------------------------------------------------------
// Random tampering.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tampered_inclusion_fails(
        n in 1u64..=MAX,
        i_seed: u64,
        other_seed: u64,
        pos_seed: usize,
        bit in 0u8..8,
    ) {
        let t = tree(n);
        let i = i_seed % n;
        let r = t.root();
        let p = inclusion_proof(i, n, &t).unwrap();
        prop_assert!(verify_inclusion(&test_leaf(i), i, n, &p, &r).is_ok());

        if !p.is_empty() {
            let mut bad = p.clone();
            let k = pos_seed % (bad.len() * 32);
            bad[k / 32][k % 32] ^= 1 << bit;
            let is_mismatch = matches!(
                verify_inclusion(&test_leaf(i), i, n, &bad, &r),
                Err(MerkleError::RootMismatch { .. })
            );
            prop_assert!(is_mismatch);
        }
        // Another index of the same tree.
        let j = other_seed % n;
        if j != i {
            prop_assert!(verify_inclusion(&test_leaf(i), j, n, &p, &r).is_err());
        }
        // Another size, checked against that size's root (a root pins its size).
        let m = 1 + other_seed % MAX;
        if m != n && i < m {
            let rm = tree(m).root();
            prop_assert!(verify_inclusion(&test_leaf(i), i, m, &p, &rm).is_err());
        }
        // A flipped leaf.
        let mut leaf = test_leaf(i);
        leaf[pos_seed % 32] ^= 1 << bit;
        prop_assert!(verify_inclusion(&leaf, i, n, &p, &r).is_err());
    }

    #[test]
    fn tampered_consistency_fails(
        a in 1u64..=MAX,
        b in 1u64..=MAX,
        other_seed: u64,
        pos_seed: usize,
        bit in 0u8..8,
    ) {
        let (m, n) = (a.min(b), a.max(b));
        let t = tree(n);
        let (rm, rn) = (root(m, &t).unwrap(), root(n, &t).unwrap());
        let p = consistency_proof(m, n, &t).unwrap();
        prop_assert!(verify_consistency(m, n, &rm, &rn, &p).is_ok());

        if !p.is_empty() {
            let mut bad = p.clone();
            let k = pos_seed % (bad.len() * 32);
            bad[k / 32][k % 32] ^= 1 << bit;
            prop_assert!(verify_consistency(m, n, &rm, &rn, &bad).is_err());
        }
        // Other sizes, checked against those sizes' roots.
        let big = tree(MAX);
        let m2 = 1 + other_seed % n;
        if m2 != m {
            let r2 = root(m2, &big).unwrap();
            prop_assert!(verify_consistency(m2, n, &r2, &rn, &p).is_err());
        }
        let n2 = m + (other_seed >> 20) % (MAX - m + 1);
        if n2 != n {
            let r2 = root(n2, &big).unwrap();
            prop_assert!(verify_consistency(m, n2, &rm, &r2, &p).is_err());
        }
        // A flipped root.
        let mut bad_rn = rn;
        bad_rn[pos_seed % 32] ^= 1 << bit;
        prop_assert!(verify_consistency(m, n, &rm, &bad_rn, &p).is_err());
    }
}

//! The store's layout at a size where it matters: thousands of entries, so that upper Merkle
//! nodes (level 6 and above) exist, are written to tiles and are read back from them after a
//! reopen, when nothing is cached in memory.

mod common;

use common::*;
use reman_ledger::ledger::Ledger;
use reman_ledger::merkle::{self, MemoryTree, NodeId};
use reman_ledger::payload::PayloadType;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Appends `n` distinct certificates from a few threads.
fn grow(ledger: &Arc<Ledger>, n: u64) {
    let signer = Arc::new(key("suzhou-reman.example"));
    let next = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (ledger, signer, next) = (ledger.clone(), signer.clone(), next.clone());
            s.spawn(move || {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= n {
                        break;
                    }
                    let json = certificate_json(&gtin(k), &format!("ST-{k:06}"), None);
                    let r = ledger
                        .submit(&sign(PayloadType::Certificate, &json, &signer))
                        .unwrap();
                    assert!(r.created);
                }
            });
        }
    });
}

/// Every leaf hash of the log, from the stored entries.
fn memory_tree(ledger: &Ledger) -> MemoryTree {
    let size = ledger.head().size;
    MemoryTree::from_leaves(
        (0..size).map(|i| merkle::leaf_hash(&ledger.store().entry(i).unwrap().unwrap())),
    )
}

/// Inclusion and consistency proofs from the store are those of the in-memory tree of the
/// same entries, and verify against the signed root.
fn check_proofs(ledger: &Ledger, tree: &MemoryTree) {
    let head = ledger.head();
    let n = head.size;
    assert_eq!(tree.root(), head.root);
    let store = ledger.store();
    for i in (0..n).step_by(97).chain([0, n / 2, n - 1]) {
        let proof = merkle::inclusion_proof(i, n, store).unwrap();
        assert_eq!(
            proof,
            merkle::inclusion_proof(i, n, tree).unwrap(),
            "leaf {i}"
        );
        let leaf = tree.get(NodeId::new(0, i)).unwrap();
        merkle::verify_inclusion(&leaf, i, n, &proof, &head.root).unwrap();
    }
    for m in (1..n).step_by(331).chain([4096, 4097, n - 1]) {
        let proof = merkle::consistency_proof(m, n, store).unwrap();
        assert_eq!(
            proof,
            merkle::consistency_proof(m, n, tree).unwrap(),
            "size {m}"
        );
        let first_root = merkle::root(m, tree).unwrap();
        merkle::verify_consistency(m, n, &first_root, &head.root, &proof).unwrap();
    }
    // Every stored upper node is the tree's node.
    for level in 6..=12u8 {
        for index in 0..(n >> level) {
            let id = NodeId::new(level, index);
            assert_eq!(
                store.node(id).unwrap(),
                tree.get(id),
                "node {level}/{index}"
            );
        }
    }
}

#[test]
fn upper_nodes_come_from_tiles_before_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(demo_ledger(dir.path()).0);
    // More than one full tile of level-6 nodes (64 x 64 leaves).
    grow(&ledger, 4400);
    let tree = memory_tree(&ledger);
    check_proofs(&ledger, &tree);

    // Tiles hold whole consecutive runs of hashes, 64 at most, from the tile's first node.
    let tiles: Vec<_> = ledger
        .store()
        .scan_prefix(b"T")
        .map(|r| r.unwrap())
        .collect();
    assert!(tiles.len() >= 7, "one tile per upper level at least");
    for (k, v) in &tiles {
        let level = k[1];
        let tile = u64::from_be_bytes(k[2..10].try_into().unwrap());
        assert!(!v.is_empty() && v.len() % 32 == 0 && v.len() <= 64 * 32);
        for (j, h) in v.chunks(32).enumerate() {
            let id = NodeId::new(level, tile * 64 + j as u64);
            assert_eq!(tree.get(id).unwrap().as_slice(), h, "tile node {id:?}");
        }
    }
    let full = tiles
        .iter()
        .filter(|(k, v)| k[1] == 6 && v.len() == 64 * 32);
    assert_eq!(full.count(), 1, "the first level-6 tile is full");

    // A reopened ledger has nothing in memory: proofs read the tiles.
    let ledger = Arc::into_inner(ledger).unwrap();
    ledger.close().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path(), log_key(), config()).unwrap());
    check_proofs(&ledger, &tree);

    // And it keeps extending them.
    let before = ledger.head().size;
    {
        let signer = key("rhein-reman.example");
        for k in 0..300u64 {
            let json = certificate_json(&gtin(500_000 + k), &format!("RE-{k:06}"), None);
            ledger
                .submit(&sign(PayloadType::Certificate, &json, &signer))
                .unwrap();
        }
    }
    assert_eq!(ledger.head().size, before + 300);
    check_proofs(&ledger, &memory_tree(&ledger));
}

//! The store's layout at a size where it matters: thousands of entries, so that upper Merkle
//! nodes (level 6 and above) exist, are written to tiles and are read back from them after a
//! reopen, when nothing is cached in memory.

mod common;

use common::*;
use reman_ledger::ledger::{Ledger, LedgerConfig};
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

/// Every certificate `grow` logged is found by its unit, and the packed state holds each
/// certificate record once, in key order, across its many buckets.
fn check_lookups(ledger: &Ledger, n: u64, demo_certificates: usize) {
    for k in (0..n).step_by(37).chain([n - 1]) {
        let views = ledger.product(&gtin(k), &format!("ST-{k:06}")).unwrap();
        assert_eq!(views.len(), 1, "unit {k}");
    }
    let records = ledger.store().scan_state(b"c").unwrap();
    assert_eq!(records.len(), n as usize + demo_certificates);
    assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
    let buckets = ledger.store().scan_prefix(b"S").count();
    assert!(buckets > 100, "{buckets} buckets");
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
    for m in (1..n)
        .step_by(331)
        .chain([4096, 4097, n - 1])
        .filter(|&m| m < n)
    {
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
    let demo_certificates = ledger.store().scan_state(b"c").unwrap().len();
    // More than one full tile of level-6 nodes (64 x 64 leaves).
    grow(&ledger, 4400);
    let tree = memory_tree(&ledger);
    check_proofs(&ledger, &tree);
    check_lookups(&ledger, 4400, demo_certificates);

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
    check_lookups(&ledger, 4400, demo_certificates);

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

/// A proof against the latest tree size reads from sled only the node block of its leaf: the
/// upper nodes and the block at the right edge (whose partial subtree every such proof folds)
/// are kept in memory by the commits, and a proof of a leaf inside that block reads nothing.
#[test]
fn a_proof_reads_only_its_own_leaf_block_from_sled() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(demo_ledger(dir.path()).0);
    grow(&ledger, 200);
    let n = ledger.head().size;
    assert!(
        !n.is_multiple_of(64),
        "the right edge block is partial: {n}"
    );
    let tree = memory_tree(&ledger);
    // The sled reads of a proof of leaf `i`, which must be the right one.
    let reads = |ledger: &Ledger, i: u64| {
        let store = ledger.store();
        let before = store.reads();
        let proof = merkle::inclusion_proof(i, n, store).unwrap();
        assert_eq!(
            proof,
            merkle::inclusion_proof(i, n, &tree).unwrap(),
            "leaf {i}"
        );
        store.reads() - before
    };
    for i in [0, 5, 63, 64, 100, 127, 128] {
        assert_eq!(reads(&ledger, i), 1, "leaf {i} of {n}");
    }
    for i in [n - 1, n - 2, n / 64 * 64] {
        assert_eq!(
            reads(&ledger, i),
            0,
            "leaf {i} of {n}, in the right edge block"
        );
    }

    // A reopened store reads the right edge block once, as it opens; its proofs read their
    // leaf's block and, the first time, the tiles of the upper nodes.
    let ledger = Arc::into_inner(ledger).unwrap();
    ledger.close().unwrap();
    let ledger = Ledger::open(dir.path(), log_key(), config()).unwrap();
    merkle::inclusion_proof(5, n, ledger.store()).unwrap();
    assert_eq!(reads(&ledger, 5), 1);
    assert_eq!(reads(&ledger, n - 1), 0);
}

/// Appending a certificate reads from sled only the two state buckets its rules look at (its
/// record's and its unit's); the commit rewrites them from those reads, and the receipt's proof
/// finds every node in memory.
#[test]
fn a_certificate_append_reads_its_two_buckets_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = demo_ledger(dir.path()).0;
    let signer = key("rhein-reman.example");
    for k in 0..20u64 {
        let json = certificate_json(&gtin(600_000 + k), &format!("RD-{k:06}"), None);
        let before = ledger.store().reads();
        let r = ledger
            .submit(&sign(PayloadType::Certificate, &json, &signer))
            .unwrap();
        assert!(r.created);
        assert_eq!(ledger.store().reads() - before, 2, "append {k}");
    }
    let tree = memory_tree(&ledger);
    check_proofs(&ledger, &tree);
}

/// A store written by the previous layout (format 1: one sled key per state record, lower
/// Merkle nodes in the runs) is converted at its first open and loses nothing: it audits, every
/// certificate reads as in a ledger of the same data written by this version, and it keeps
/// growing across the block its old and new leaves share.
#[test]
fn a_format_1_store_is_converted_at_its_first_open() {
    use reman_ledger::audit::audit_store;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("fixtures/legacy-store-v1"), dir.path());
    let ledger = Arc::new(Ledger::open(dir.path(), log_key(), config()).unwrap());
    assert_eq!(ledger.head().size, 89);

    // No key of the old layout is left: the state records are packed in buckets.
    let raw: Vec<Vec<u8>> = ledger
        .store()
        .scan_prefix(b"")
        .map(|r| r.unwrap().0.to_vec())
        .collect();
    assert!(
        raw.iter().all(|k| !k[0].is_ascii_lowercase()),
        "old keys left"
    );
    assert!(raw.iter().any(|k| k[0] == b'S'));
    audit_store(ledger.store(), None, |_, _| {}).unwrap();

    // The same certificates with the same status and history as a fresh demo ledger.
    let fresh_dir = tempfile::tempdir().unwrap();
    let (fresh, _) = demo_ledger(fresh_dir.path());
    let certificates = certificate_ids(&ledger);
    assert!(certificates.len() >= 30);
    assert_eq!(certificates, certificate_ids(&fresh));
    for id in &certificates {
        let (old, new) = (
            ledger.certificate(id).unwrap(),
            fresh.certificate(id).unwrap(),
        );
        assert_eq!(old.status, new.status, "{id}");
        assert_eq!(old.index, new.index, "{id}");
        assert_eq!(old.events.len(), new.events.len(), "{id}");
        assert_eq!(old.revocation.is_some(), new.revocation.is_some(), "{id}");
        assert_eq!(old.supersedes, new.supersedes, "{id}");
    }
    // The same parties (the operator's details are those `serve --demo` gives it).
    let names_and_keys = |l: &Ledger| -> Vec<(String, String)> {
        l.parties()
            .unwrap()
            .iter()
            .map(|p| (p["name"].to_string(), p["key"].to_string()))
            .collect()
    };
    assert_eq!(names_and_keys(&ledger), names_and_keys(&fresh));
    assert_eq!(ledger.parties().unwrap().len(), 9);

    // Leaves 64..88 of block 1 are in the old runs; new ones join them in a block record.
    let signer = key("kyoto-imaging.example");
    for k in 0..60u64 {
        let json = certificate_json(&gtin(700_000 + k), &format!("UP-{k:06}"), None);
        let r = ledger
            .submit(&sign(PayloadType::Certificate, &json, &signer))
            .unwrap();
        assert!(r.created);
    }
    let tree = memory_tree(&ledger);
    check_proofs(&ledger, &tree);
    let ledger = Arc::into_inner(ledger).unwrap();
    ledger.close().unwrap();
    let ledger = Ledger::open(dir.path(), log_key(), config()).unwrap();
    check_proofs(&ledger, &tree);
    audit_store(ledger.store(), None, |_, _| {}).unwrap();
}

/// The first byte of each stored run, by run key: 0 for a plain run, 0xC4 for a compressed one.
fn run_kinds(ledger: &Ledger) -> Vec<u8> {
    ledger
        .store()
        .scan_prefix(b"R")
        .map(|r| r.unwrap().1[0])
        .collect()
}

/// A store of format 2 (every run plain) reads as it is, with no conversion; its first new
/// batch writes compressed runs and records format 3 with them; old and new entries read the
/// same before and after a reopen, and it audits.
#[test]
fn a_format_2_store_reads_as_it_is_and_grows_with_compressed_runs() {
    use reman_ledger::audit::audit_store;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("fixtures/legacy-store-v2"), dir.path());
    let format = |l: &Ledger| -> Vec<u8> {
        let meta: Vec<_> = l
            .store()
            .scan_prefix(b"Mformat")
            .map(|r| r.unwrap().1.to_vec())
            .collect();
        meta.concat()
    };
    let ledger = Arc::new(Ledger::open(dir.path(), log_key(), config()).unwrap());
    assert_eq!(ledger.head().size, 113);
    assert_eq!(format(&ledger), [2], "opening alone changes nothing");
    let kinds = run_kinds(&ledger);
    assert!(
        !kinds.is_empty() && kinds.iter().all(|&k| k == 0),
        "{kinds:?}"
    );
    let old: Vec<Vec<u8>> = (0..113)
        .map(|i| ledger.store().entry(i).unwrap().unwrap().to_vec())
        .collect();
    audit_store(ledger.store(), None, |_, _| {}).unwrap();

    // Concurrent submitters, so that batches hold several entries and their runs compress.
    let signer = Arc::new(key("texas-reman.example"));
    let handles: Vec<_> = (0..16u64)
        .map(|t| {
            let (ledger, signer) = (ledger.clone(), signer.clone());
            std::thread::spawn(move || {
                for k in 0..8u64 {
                    let n = t * 8 + k;
                    let json = certificate_json(&gtin(800_000 + n), &format!("V3-{n:06}"), None);
                    let r = ledger
                        .submit(&sign(PayloadType::Certificate, &json, &signer))
                        .unwrap();
                    assert!(r.created);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(ledger.head().size, 113 + 128);
    assert_eq!(format(&ledger), [reman_ledger::store::FORMAT]);
    let kinds = run_kinds(&ledger);
    assert!(kinds.contains(&0xC4), "no run was compressed: {kinds:?}");
    assert!(kinds.iter().all(|&k| k == 0 || k == 0xC4), "{kinds:?}");
    let new: Vec<Vec<u8>> = (113..241)
        .map(|i| ledger.store().entry(i).unwrap().unwrap().to_vec())
        .collect();
    let tree = memory_tree(&ledger);
    check_proofs(&ledger, &tree);

    let ledger = Arc::into_inner(ledger).unwrap();
    ledger.close().unwrap();
    let ledger = Ledger::open(dir.path(), log_key(), config()).unwrap();
    for (i, bytes) in old.iter().chain(new.iter()).enumerate() {
        assert_eq!(
            &ledger.store().entry(i as u64).unwrap().unwrap().to_vec(),
            bytes,
            "entry {i}"
        );
    }
    check_proofs(&ledger, &tree);
    audit_store(ledger.store(), None, |_, _| {}).unwrap();
}

/// A compressed run damaged on disk is reported as a corrupt store, naming the compressed
/// run, on every read of its entries: never a panic, never other bytes.
#[test]
fn a_damaged_compressed_run_is_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let l = Arc::new(demo_ledger(dir.path()).0);
    let signer = Arc::new(key("suzhou-reman.example"));
    let handles: Vec<_> = (0..16u64)
        .map(|n| {
            let (l, signer) = (l.clone(), signer.clone());
            std::thread::spawn(move || {
                let json = certificate_json(&gtin(900_000 + n), &format!("DMG-{n:03}"), None);
                l.submit(&sign(PayloadType::Certificate, &json, &signer))
                    .unwrap()
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let packed: Vec<(Vec<u8>, Vec<u8>)> = l
        .store()
        .scan_prefix(b"R")
        .map(|r| r.unwrap())
        .filter(|(_, v)| v[0] == 0xC4)
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    let (key, value) = packed.first().expect("a compressed run").clone();
    let first = u64::from_be_bytes(key[1..9].try_into().unwrap());
    Arc::into_inner(l).unwrap().close().unwrap();
    let damaged = [
        // The LZ4 data cut short.
        value[..value.len() / 2].to_vec(),
        // A plain length far beyond what a run can hold.
        [&[0xC4], &u32::MAX.to_be_bytes()[..], &value[5..]].concat(),
        // The header alone, cut.
        vec![0xC4, 0, 0],
    ];
    for bad in damaged {
        {
            let db = raw_sled(dir.path());
            db.insert(&key, bad).unwrap();
            db.flush().unwrap();
        }
        let store = reman_ledger::store::Store::open(dir.path()).unwrap();
        let err = store.entry(first).unwrap_err().to_string();
        assert!(err.contains("storage is corrupt: compressed run"), "{err}");
        drop(store);
    }
}

/// A store whose layout is newer than this version reads is refused with a clear error, and
/// left as it is.
#[test]
fn a_store_of_a_newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    new_ledger(dir.path()).close().unwrap();
    let raw = || raw_sled(dir.path());
    let newer = [reman_ledger::store::FORMAT + 1];
    {
        let db = raw();
        db.insert(b"Mformat", &newer).unwrap();
        db.flush().unwrap();
    }
    let err = match reman_ledger::store::Store::open(dir.path()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a newer layout opened"),
    };
    assert!(err.contains("newer than this version reads"), "{err}");
    assert_eq!(raw().get(b"Mformat").unwrap().unwrap().as_ref(), newer);
}

/// The newest recovery snapshot sled has written in `dir`: the log position it covers.
fn newest_snapshot(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
        })
        .max()
        .unwrap_or(0)
}

/// sled writes its recovery snapshot only when it opens, so a store closed after many appends
/// would replay them all at its next open. Closing the ledger leaves a snapshot that covers
/// everything written: the next open reads it instead of replaying the log.
#[test]
fn closing_leaves_a_recovery_snapshot_of_everything_written() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(demo_ledger(dir.path()).0);
    let opened_at = newest_snapshot(dir.path());
    grow(&ledger, 300);
    assert_eq!(
        newest_snapshot(dir.path()),
        opened_at,
        "no snapshot while running"
    );
    Arc::into_inner(ledger).unwrap().close().unwrap();
    let closed_at = newest_snapshot(dir.path());
    assert!(closed_at > opened_at, "{closed_at:x} after {opened_at:x}");
    // Opening again finds nothing more to replay: its snapshot is the same one.
    let ledger = Ledger::open(dir.path(), log_key(), config()).unwrap();
    assert_eq!(newest_snapshot(dir.path()), closed_at);
    assert_eq!(ledger.head().size, 89 + 300);
}

/// A ledger that runs on has sled write a fresh recovery snapshot every `snapshot_every`
/// entries, without a restart, so that a crash replays only what came since. Lookups and entry
/// reads from other threads keep answering while sled is closed and reopened under them.
#[test]
fn a_running_ledger_refreshes_its_recovery_snapshot_while_serving_reads() {
    use reman_ledger::audit::audit_store;
    use reman_ledger::certificate::CertificateId;
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        snapshot_every: 100,
        ..config()
    };
    let ledger = Arc::new(demo_ledger_with(dir.path(), config.clone()).0);
    let ids: Arc<Vec<CertificateId>> = Arc::new(
        ledger
            .store()
            .scan_state(b"c")
            .unwrap()
            .into_iter()
            .map(|(k, _)| CertificateId(k[1..].try_into().unwrap()))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let (ledger, ids, stop, reads) =
                (ledger.clone(), ids.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    ledger.certificate(&ids[i % ids.len()]).unwrap();
                    assert!(ledger.store().entry((i % 89) as u64).unwrap().is_some());
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let signer = Arc::new(key("rhein-reman.example"));
    let mut last = newest_snapshot(dir.path());
    for round in 0..3u64 {
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (ledger, signer) = (ledger.clone(), signer.clone());
                s.spawn(move || {
                    for k in 0..30u64 {
                        let n = round * 240 + t * 30 + k;
                        let json =
                            certificate_json(&gtin(600_000 + n), &format!("SN-{n:05}"), None);
                        let r = ledger
                            .submit(&sign(PayloadType::Certificate, &json, &signer))
                            .unwrap();
                        assert!(r.created);
                    }
                });
            }
        });
        let now = newest_snapshot(dir.path());
        assert!(
            now > last,
            "round {round}: no new snapshot ({now:x} after {last:x})"
        );
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(ledger.head().size, 89 + 720);
    let tree = memory_tree(&ledger);
    Arc::into_inner(ledger).unwrap().close().unwrap();
    let ledger = Ledger::open(dir.path(), log_key(), config).unwrap();
    assert_eq!(ledger.head().size, 89 + 720);
    check_proofs(&ledger, &tree);
    audit_store(ledger.store(), None, |_, _| {}).unwrap();
}

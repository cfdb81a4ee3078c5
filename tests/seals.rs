//! Seal signatures kept with their entries (derived data, see `reman_ledger::store`): a
//! lookup serves the very seal of the certificate's receipt without signing again; a seal
//! never kept (a store from before) is signed again when read; a damaged list is reported
//! (and replaced by the next write to it), and `audit` checks every one kept.

mod common;

use common::*;
use reman_ledger::audit::audit_store;
use reman_ledger::certificate::CertificateId;
use reman_ledger::entry::Entry;
use reman_ledger::ledger::{Ledger, Receipt};
use reman_ledger::payload::{self, Payload, PayloadType};
use reman_ledger::seal::Seal;
use reman_ledger::store::Store;
use std::sync::Arc;

/// Appends `n` distinct certificates from 8 threads (so batches hold several); their receipts.
fn grow(ledger: &Arc<Ledger>, n: u64, first: u64) -> Vec<Receipt> {
    let signer = Arc::new(key("suzhou-reman.example"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (ledger, signer) = (ledger.clone(), signer.clone());
            std::thread::spawn(move || {
                (first + t..first + n)
                    .step_by(8)
                    .map(|k| {
                        let json = certificate_json(&gtin(k), &format!("SEAL-{k:06}"), None);
                        let r = ledger
                            .submit(&sign(PayloadType::Certificate, &json, &signer))
                            .unwrap();
                        assert!(r.created);
                        r
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

fn receipt_seal(r: &Receipt) -> Seal {
    Seal::from_base64url(r.seal.as_deref().unwrap()).unwrap()
}

/// The certificate entries of a store: (index, ID, GTIN, serial).
fn certificates(store: &Store) -> Vec<(u64, CertificateId, String, String)> {
    (0..store.size().unwrap())
        .filter_map(|i| {
            let e = Entry::parse(&store.entry(i).unwrap().unwrap()).unwrap();
            match payload::parse(&e.envelope.payload_type, &e.envelope.payload).unwrap() {
                Payload::Certificate(c) => Some((
                    i,
                    CertificateId::of_payload(&e.envelope.payload),
                    c.product.gtin,
                    c.product.serial,
                )),
                _ => None,
            }
        })
        .collect()
}

/// The seal a lookup serves, checked under the log key for its unit.
fn served_seal(ledger: &Ledger, id: &CertificateId, gtin: &str, serial: &str) -> Seal {
    let view = ledger.certificate(id).unwrap();
    let seal = Seal::from_base64url(&view.seal).unwrap();
    seal.verify(log_key().public(), ledger.origin(), gtin, serial)
        .unwrap();
    seal
}

#[test]
fn every_receipts_seal_is_kept_and_served_as_it_was_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(demo_ledger(dir.path()).0);
    let receipts = grow(&ledger, 700, 0);
    for r in &receipts {
        let id = r.certificate_id.unwrap();
        assert_eq!(
            ledger.seal(&id).unwrap(),
            Some(receipt_seal(r)),
            "entry {}",
            r.index
        );
    }
    // Each batch's seals are kept with the next batch, the last batch's once the ledger idles.
    let kept = |l: &Ledger| {
        receipts
            .iter()
            .filter(|r| {
                l.store().seal_signature(r.index).unwrap() == Some(receipt_seal(r).signature)
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while kept(&ledger) < receipts.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(kept(&ledger), receipts.len());
    assert_eq!(
        ledger.store().seal_signature(0).unwrap(),
        None,
        "entry 0 registers the operator"
    );
    // After a restart every seal is read, not signed: those of blocks the log had moved
    // past were written with later batches, the rest (held in memory) when it closed.
    Arc::into_inner(ledger).unwrap().close().unwrap();
    let ledger = Ledger::open(dir.path(), log_key(), config()).unwrap();
    let certs = certificates(ledger.store());
    for r in &receipts {
        let kept = ledger.store().seal_signature(r.index).unwrap();
        assert_eq!(kept, Some(receipt_seal(r).signature), "entry {}", r.index);
        let (_, id, gtin, serial) = certs.iter().find(|c| c.0 == r.index).unwrap();
        assert_eq!(served_seal(&ledger, id, gtin, serial), receipt_seal(r));
    }
    audit_store(ledger.store(), None, |_, _| {}).unwrap();
}

/// A ledger that stopped without closing held the seals of its last blocks in memory only:
/// the next open signs and keeps them (the same seals), so that an export holds them.
#[test]
fn seals_lost_by_a_stop_without_closing_are_kept_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(demo_ledger(dir.path()).0);
    let receipts = grow(&ledger, 100, 0);
    let size = ledger.head().size;
    // Dropped, not closed: what a crash leaves, as far as seals go.
    drop(Arc::into_inner(ledger).unwrap());
    let store = Store::open(dir.path()).unwrap();
    let open_blocks = (size / 64).saturating_sub(1) * 64;
    let lost = receipts
        .iter()
        .filter(|r| r.index >= open_blocks)
        .filter(|r| store.seal_signature(r.index).unwrap().is_none())
        .count();
    assert!(lost > 0, "the test must lose some seals");
    drop(store);
    let ledger = Ledger::open(dir.path(), log_key(), config()).unwrap();
    // All of them: those of the last batch may lie in blocks before the last two.
    for r in &receipts {
        assert_eq!(
            ledger.store().seal_signature(r.index).unwrap(),
            Some(receipt_seal(r).signature),
            "entry {}",
            r.index
        );
    }
    audit_store(ledger.store(), None, |_, _| {}).unwrap();
}

/// A lookup's proof pages in its leaf's node block anyway: the seals are kept in a record that
/// sorts right after that block (so sled usually keeps the two in one tree node), and the
/// block itself holds only node hashes, so that a proof alone pages in no more than it needs.
#[test]
fn seals_are_kept_beside_their_entries_node_block() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(demo_ledger(dir.path()).0);
    let first = ledger.head().size;
    let receipts = grow(&ledger, 300, 0);
    let size = ledger.head().size;
    Arc::into_inner(ledger).unwrap().close().unwrap();
    let db = raw_sled(dir.path());
    assert_eq!(db.scan_prefix(b"Q").count(), 0, "no seal records of 256");
    // Every block the log had moved a whole block past when it stopped, and wholly made of
    // the certificates appended here.
    let blocks = (first.div_ceil(64)..(size / 64).saturating_sub(1)).collect::<Vec<_>>();
    assert!(blocks.len() >= 2, "{blocks:?}");
    for block in blocks {
        let key = [&b"B"[..], &block.to_be_bytes()].concat();
        let hashes = db.get(&key).unwrap().unwrap();
        assert_eq!(hashes.len(), 1 + 32 * 126, "block {block}: its hashes only");
        let (next, list) = db.get_gt(&key).unwrap().unwrap();
        assert_eq!(&next[..], &seal_list_key(block)[..], "block {block}");
        assert_eq!(list.len(), 8 + 64 * 64, "block {block}");
        assert_eq!(&list[..8], &[0xff; 8], "block {block}");
        for (offset, sig) in list[8..].chunks(64).enumerate() {
            let index = block * 64 + offset as u64;
            let r = receipts.iter().find(|r| r.index == index).unwrap();
            assert_eq!(sig, &receipt_seal(r).signature[..], "entry {index}");
        }
    }
}

/// A seal list's mask marks exactly the block's certificate entries, bit `i % 8` of byte
/// `i / 8` for its entry `i`: the demo data's first blocks mix parties, certificates,
/// revocations and events.
#[test]
fn a_seal_list_marks_exactly_its_blocks_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = demo_ledger(dir.path());
    let certs: Vec<u64> = certificates(ledger.store()).iter().map(|c| c.0).collect();
    let size = ledger.head().size;
    ledger.store().write_seals(Vec::new()).unwrap();
    ledger.close().unwrap();
    let db = raw_sled(dir.path());
    for block in 0..size.div_ceil(64) {
        let mut mask = [0u8; 8];
        for i in certs.iter().filter(|&&i| i / 64 == block) {
            mask[(i % 64 / 8) as usize] |= 1 << (i % 8);
        }
        let list = db.get(seal_list_key(block)).unwrap();
        let Some(list) = list else {
            assert_eq!(
                mask, [0; 8],
                "block {block} has certificates but no seal list"
            );
            continue;
        };
        assert!(
            mask != [0; 8] && mask != [0xff; 8],
            "block {block}: {mask:?}"
        );
        assert_eq!(&list[..8], &mask, "block {block}");
        let n: u32 = mask.iter().map(|b| b.count_ones()).sum();
        assert_eq!(list.len(), 8 + 64 * n as usize, "block {block}");
    }
}

#[test]
fn a_seal_that_was_never_kept_is_signed_again_when_read() {
    // Written before seals were kept: none is, but for the last two blocks', which the
    // ledger keeps when it opens (as after a stop without closing).
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("fixtures/legacy-store-v2"), dir.path());
    let ledger = Ledger::open(dir.path(), log_key(), config()).unwrap();
    let last_blocks = (ledger.head().size / 64).saturating_sub(1) * 64;
    let certs = certificates(ledger.store());
    assert!(certs.len() > 30, "{} certificates", certs.len());
    for (index, id, gtin, serial) in &certs {
        let kept = ledger.store().seal_signature(*index).unwrap();
        assert_eq!(kept.is_some(), *index >= last_blocks, "entry {index}");
        if let Some(kept) = kept {
            assert_eq!(kept, served_seal(&ledger, id, gtin, serial).signature);
        }
    }
    // None kept (this store is all in its last two blocks): each is signed again.
    for (index, ..) in &certs {
        ledger.store().raw_put_seal(*index, None).unwrap();
    }
    for (index, id, gtin, serial) in certs {
        assert_eq!(ledger.store().seal_signature(index).unwrap(), None);
        let served = served_seal(&ledger, &id, &gtin, &serial);
        assert_eq!((served.index, served.certificate_id), (index, id.0));
    }
}

/// The legacy store (no seal kept), with `seals` planted into it, as a store.
fn legacy_with(seals: impl FnOnce(&Store) -> Vec<(u64, [u8; 64])>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("fixtures/legacy-store-v2"), dir.path());
    let store = Store::open(dir.path()).unwrap();
    for (index, sig) in seals(&store) {
        store.raw_put_seal(index, Some(sig)).unwrap();
    }
    (dir, store)
}

/// The genuine seal signature of certificate entry `index` of `store`.
fn genuine(store: &Store, index: u64) -> [u8; 64] {
    let (_, id, gtin, serial) = certificates(store)
        .into_iter()
        .find(|c| c.0 == index)
        .unwrap();
    let e = Entry::parse(&store.entry(index).unwrap().unwrap()).unwrap();
    let log = log_key();
    Seal::sign(
        &log,
        log.name(),
        &gtin,
        &serial,
        index,
        e.integrated_time_ms / 1000,
        id.0,
    )
    .signature
}

/// The legacy store with the genuine seal of every certificate kept.
fn legacy_with_genuine_seals() -> (tempfile::TempDir, Store) {
    legacy_with(|s| {
        certificates(s)
            .iter()
            .map(|c| (c.0, genuine(s, c.0)))
            .collect()
    })
}

/// The legacy store (no seal kept), and two of its certificates in one block of 64 entries.
fn legacy_pair() -> (tempfile::TempDir, Store, u64, u64) {
    let (dir, store) = legacy_with(|_| Vec::new());
    let (a, b) = certificates(&store)
        .windows(2)
        .map(|w| (w[0].0, w[1].0))
        .find(|&(a, b)| a / 64 == b / 64)
        .unwrap();
    (dir, store, a, b)
}

/// The sled key of the seal list of node block `block`: the block's key, then `s`.
fn seal_list_key(block: u64) -> Vec<u8> {
    [&b"B"[..], &block.to_be_bytes(), b"s"].concat()
}

#[test]
fn audit_passes_genuine_kept_seals() {
    let (_d, store) = legacy_with_genuine_seals();
    let report = audit_store(&store, None, |_, _| {}).unwrap();
    assert_eq!(report.entries, 113);
}

#[test]
fn audit_reports_a_kept_seal_of_another_entry_at_its_index() {
    let mut pair = [0, 0];
    let (_d, store) = legacy_with(|s| {
        let certs = certificates(s);
        pair = [certs[3].0, certs[9].0];
        // The genuine signatures of two certificates, each kept for the other.
        vec![
            (pair[0], genuine(s, pair[1])),
            (pair[1], genuine(s, pair[0])),
        ]
    });
    let before = (store.size().unwrap(), store.checkpoint().unwrap());
    let e = audit_store(&store, None, |_, _| {}).unwrap_err();
    assert_eq!(e.index(), Some(pair[0]), "{e}");
    assert!(
        e.to_string().contains("kept seal signature is not valid"),
        "{e}"
    );
    assert_eq!((store.size().unwrap(), store.checkpoint().unwrap()), before);
    // What audit catches is what lookups would serve: the kept signature, not a new one.
    let (id, swapped) = (certificates(&store)[3].1, genuine(&store, pair[1]));
    store.close().unwrap();
    let ledger = Ledger::open(_d.path(), log_key(), config()).unwrap();
    let served = Seal::from_base64url(&ledger.certificate(&id).unwrap().seal).unwrap();
    assert_eq!(served.signature, swapped);
}

#[test]
fn audit_reports_a_seal_kept_for_an_entry_that_is_not_a_certificate() {
    let (_d, store) = legacy_with(|s| vec![(0, genuine(s, certificates(s)[0].0))]);
    let e = audit_store(&store, None, |_, _| {}).unwrap_err();
    assert_eq!(e.index(), Some(0), "{e}");
    assert!(e.to_string().contains("a party entry"), "{e}");
}

#[test]
fn a_damaged_seal_list_is_reported_not_misread_and_lookups_sign_again() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = demo_ledger(dir.path());
    let (index, id, _, _) = certificates(ledger.store())[0].clone();
    assert!(ledger.store().seal_signature(index).unwrap().is_some());
    // A log this short has not moved past its first seal block: write it out.
    ledger.store().write_seals(Vec::new()).unwrap();
    ledger.close().unwrap();
    {
        // The seal list holding the entry's, its last byte cut off.
        let db = raw_sled(dir.path());
        let key = seal_list_key(index / 64);
        let list = db.get(&key).unwrap().unwrap();
        db.insert(&key, &list[..list.len() - 1]).unwrap();
        db.flush().unwrap();
    }
    let ledger = Ledger::open(dir.path(), log_key(), config()).unwrap();
    // Not misread: the store refuses it; the ledger signs the seal again, so a lookup still
    // answers with a genuine seal, and audit names the damage.
    let e = ledger
        .store()
        .seal_signature(index)
        .unwrap_err()
        .to_string();
    assert!(e.contains("storage is corrupt: seal list"), "{e}");
    let view = ledger.certificate(&id).unwrap();
    let seal = reman_ledger::seal::Seal::from_base64url(&view.seal).unwrap();
    assert_eq!(seal.signature, genuine(ledger.store(), index));
    let e = audit_store(ledger.store(), None, |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("seal list"), "{e}");
}

/// A damaged seal list does not stop the log: the next write to it replaces it, and what it
/// held is signed again when read.
#[test]
fn a_damaged_seal_list_is_replaced_by_the_next_write_to_it() {
    let (dir, store, a, b) = legacy_pair();
    store.write_seals(vec![(a, genuine(&store, a))]).unwrap();
    store.close().unwrap();
    let key = seal_list_key(a / 64);
    {
        let db = raw_sled(dir.path());
        db.insert(&key, &b"damaged"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert!(store.seal_signature(a).is_err());
    store.write_seals(vec![(b, genuine(&store, b))]).unwrap();
    assert_eq!(store.seal_signature(a).unwrap(), None);
    assert_eq!(store.seal_signature(b).unwrap(), Some(genuine(&store, b)));
    assert_eq!(audit_store(&store, None, |_, _| {}).unwrap().entries, 113);
}

/// Signatures of one seal list handed over at different times (a late receipt) are kept
/// together, and a signature kept stays what it was.
#[test]
fn seals_of_one_block_written_apart_are_kept_together() {
    let (_dir, store, a, b) = legacy_pair();
    store.write_seals(vec![(a, genuine(&store, a))]).unwrap();
    store
        .write_seals(vec![(b, genuine(&store, b)), (a, [7; 64])])
        .unwrap();
    assert_eq!(store.seal_signature(a).unwrap(), Some(genuine(&store, a)));
    assert_eq!(store.seal_signature(b).unwrap(), Some(genuine(&store, b)));
    assert_eq!(audit_store(&store, None, |_, _| {}).unwrap().entries, 113);
}

/// Truncating a store's entries (a repair tool) drops their kept seals with them, and only
/// theirs: an entry appended there later must not meet a seal made for another.
#[test]
fn truncating_entries_drops_their_kept_seals_and_keeps_the_others() {
    let (_d, store) = legacy_with_genuine_seals();
    let certs = certificates(&store);
    let cut = certs[certs.len() / 2].0;
    store.raw_truncate_entries(cut).unwrap();
    for (index, ..) in &certs {
        let kept = store.seal_signature(*index).unwrap();
        assert_eq!(kept.is_some(), *index < cut, "entry {index}");
    }
}

/// A cut inside a block keeps that block's earlier seals, drops its later ones and removes
/// the lists of the blocks after it; seals held in memory for the dropped entries go too.
#[test]
fn truncating_inside_a_block_removes_the_lists_after_it_and_the_held_seals() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("fixtures/legacy-store-v2"), dir.path());
    let store = Store::open(dir.path()).unwrap();
    let certs: Vec<u64> = certificates(&store).iter().map(|c| c.0).collect();
    let (before, after): (Vec<u64>, Vec<u64>) = certs.iter().partition(|&&i| i < 64);
    assert!(before.len() >= 2 && !after.is_empty(), "{certs:?}");
    // Block 0's list written, block 1's held in memory.
    let written: Vec<_> = before.iter().map(|&i| (i, genuine(&store, i))).collect();
    store.write_seals(written).unwrap();
    store.hold_seals(after.iter().map(|&i| (i, genuine(&store, i))).collect());
    let cut = before[before.len() / 2];
    let seals: Vec<_> = certs.iter().map(|&i| (i, genuine(&store, i))).collect();
    store.raw_truncate_entries(cut).unwrap();
    for &(i, seal) in &seals {
        let kept = store.seal_signature(i).unwrap();
        assert_eq!(kept, (i < cut).then_some(seal), "entry {i}");
    }
    // Nothing held is written later for the dropped entries.
    store.write_seals(Vec::new()).unwrap();
    store.close().unwrap();
    let db = raw_sled(dir.path());
    assert!(db.get(seal_list_key(1)).unwrap().is_none());
    let list = db.get(seal_list_key(0)).unwrap().unwrap();
    let kept = before.iter().filter(|&&i| i < cut).count();
    assert_eq!(list.len(), 8 + 64 * kept);
}

/// A cut at a block's first entry removes that block's list whole.
#[test]
fn truncating_at_a_block_boundary_removes_that_blocks_list() {
    let (d, store) = legacy_with_genuine_seals();
    let certs: Vec<u64> = certificates(&store).iter().map(|c| c.0).collect();
    assert!(certs.iter().any(|&i| i >= 64), "{certs:?}");
    store.raw_truncate_entries(64).unwrap();
    for &i in &certs {
        assert_eq!(
            store.seal_signature(i).unwrap().is_some(),
            i < 64,
            "entry {i}"
        );
    }
    store.close().unwrap();
    let db = raw_sled(d.path());
    assert!(db.get(seal_list_key(1)).unwrap().is_none());
    assert!(
        db.get([&b"B"[..], &1u64.to_be_bytes()].concat())
            .unwrap()
            .is_some(),
        "nodes kept"
    );
}

/// Seal records of the earlier `Q` layout (by block of 256 entries) are no longer read: the
/// first open deletes them and nothing else, and lookups serve the same seals as before.
#[test]
fn seal_records_of_the_earlier_layout_are_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = demo_ledger(dir.path());
    let (index, id, gtin, serial) = certificates(ledger.store())[0].clone();
    let seal = served_seal(&ledger, &id, &gtin, &serial);
    ledger.close().unwrap();
    let others = {
        let db = raw_sled(dir.path());
        let others: Vec<_> = db.iter().map(Result::unwrap).collect();
        // A block of 256 entries' seals as sessions 5 and 6 wrote them: a mask, then signatures.
        let mut old = vec![0u8; 32];
        old[(index / 8) as usize] |= 1 << (index % 8);
        old.extend_from_slice(&seal.signature);
        db.insert([&b"Q"[..], &0u64.to_be_bytes()].concat(), old)
            .unwrap();
        db.insert([&b"Q"[..], &1u64.to_be_bytes()].concat(), vec![0u8; 32])
            .unwrap();
        db.flush().unwrap();
        others
    };
    let ledger = Ledger::open(dir.path(), log_key(), config()).unwrap();
    assert_eq!(served_seal(&ledger, &id, &gtin, &serial), seal);
    ledger.close().unwrap();
    let db = raw_sled(dir.path());
    assert_eq!(db.scan_prefix(b"Q").count(), 0);
    let after: Vec<_> = db.iter().map(Result::unwrap).collect();
    assert_eq!(after, others, "everything else is as it was");
}

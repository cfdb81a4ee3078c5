//! `audit --data` compares what a store derives from its log and keeps beside it with what the
//! log's entries make: the state records (what lookups, the resolver and the admission rules
//! answer from) with a replay of the log, and the stored Merkle nodes (what proofs are made of)
//! with the entries' tree; and it checks that the store keeps nothing beyond its log (runs of
//! entries, seals, upper nodes) and that its runs of entries do not overlap. A record changed,
//! added, deleted or moved on disk, a node changed or missing, or anything planted beyond the
//! log is reported, though every entry still verifies. One test per kind of tampering, on a
//! copy of a real demo store.

mod common;

use common::*;
use reman_ledger::audit::{AuditError, audit_store};
use reman_ledger::certificate::CertificateId;
use reman_ledger::ledger::Ledger;
use reman_ledger::payload::PayloadType;
use reman_ledger::state::{self, CertRecord, CertStatus, StateRead, UnitRecord, key};
use reman_ledger::store::Store;
use std::process::Command;

/// The audit's finding, which must be about derived data, not an entry.
fn derived_finding(store: &Store) -> (String, String) {
    match audit_store(store, Some(log_key().public()), |_, _| {}) {
        Err(e @ AuditError::Derived { .. }) => {
            assert_eq!(e.index(), None, "no entry is bad: {e}");
            let text = e.to_string();
            assert!(text.contains("restore the data directory"), "{text}");
            let AuditError::Derived { record, problem } = e else {
                unreachable!()
            };
            (record, problem)
        }
        other => panic!("expected a state finding, got {other:?}"),
    }
}

/// Every certificate record of the store, by ID.
fn certificates(store: &Store) -> Vec<(CertificateId, CertRecord)> {
    store
        .scan_state(b"c")
        .unwrap()
        .into_iter()
        .map(|(k, _)| {
            let id = CertificateId(k[1..].try_into().unwrap());
            (id, state::certificate(store, &id).unwrap().unwrap())
        })
        .collect()
}

fn first_with(store: &Store, status: CertStatus) -> (CertificateId, CertRecord) {
    certificates(store)
        .into_iter()
        .find(|(_, r)| r.status == status)
        .unwrap_or_else(|| panic!("the demo has no {status:?} certificate"))
}

#[test]
fn the_untouched_demo_store_passes() {
    let (_d, store) = demo_store_copy();
    let report = audit_store(&store, Some(log_key().public()), |_, _| {}).unwrap();
    let kept = store.scan_state(b"").unwrap().len() as u64;
    assert!(kept > 89, "two or more records per certificate: {kept}");
    assert_eq!(report.state_records, Some(kept));
}

/// The attack that matters most: a revoked certificate made valid again for lookups.
#[test]
fn a_revocation_hidden_in_a_certificate_record_is_reported() {
    let (_d, store) = demo_store_copy();
    let (id, mut rec) = first_with(&store, CertStatus::Revoked);
    rec.status = CertStatus::Valid;
    rec.revoked_at = None;
    store
        .raw_put_state(
            &key::certificate(&id),
            Some(&serde_json::to_vec(&rec).unwrap()),
        )
        .unwrap();
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, format!("the record of certificate {id}"));
    assert!(
        problem.contains("status is Valid in the store, Revoked by the log"),
        "{problem}"
    );
    assert!(
        problem.contains("revocation entry is None in the store"),
        "{problem}"
    );
}

#[test]
fn a_unit_record_naming_another_valid_certificate_is_reported() {
    let (_d, store) = demo_store_copy();
    let (old, rec) = first_with(&store, CertStatus::Superseded);
    let k = key::unit(&rec.gtin, &rec.serial);
    let mut unit: UnitRecord = state::unit(&store, &rec.gtin, &rec.serial).unwrap();
    assert_ne!(unit.valid, Some(old));
    unit.valid = Some(old);
    store
        .raw_put_state(&k, Some(&serde_json::to_vec(&unit).unwrap()))
        .unwrap();
    let (record, problem) = derived_finding(&store);
    assert_eq!(
        record,
        format!("the certificates of unit {}/{}", rec.gtin, rec.serial)
    );
    assert!(
        problem.starts_with("valid certificate is Some"),
        "{problem}"
    );
}

#[test]
fn a_party_given_another_role_is_reported() {
    let (_d, store) = demo_store_copy();
    let (k, v) = store
        .scan_state(b"p")
        .unwrap()
        .into_iter()
        .find(|(_, v)| String::from_utf8_lossy(v).contains("\"remanufacturer\""))
        .expect("a remanufacturer's registration");
    let mut rec: serde_json::Value = serde_json::from_slice(&v).unwrap();
    rec["party"]["role"] = "operator".into();
    store
        .raw_put_state(&k, Some(&serde_json::to_vec(&rec).unwrap()))
        .unwrap();
    let (record, problem) = derived_finding(&store);
    assert!(
        record.starts_with("the current registration of party "),
        "{record}"
    );
    assert!(problem.starts_with("registration is Party {"), "{problem}");
    assert!(problem.contains("role: Operator"), "{problem}");
}

#[test]
fn a_deleted_event_is_reported_missing() {
    let (_d, store) = demo_store_copy();
    let (k, _) = store
        .scan_state(b"v")
        .unwrap()
        .into_iter()
        .find(|(_, v)| v == key::EVENT)
        .expect("an event in the demo");
    let (id, at) = key::parse_history(&k).unwrap();
    store.raw_put_state(&k, None).unwrap();
    let (record, problem) = derived_finding(&store);
    assert_eq!(
        record,
        format!("entry {at} in the history of certificate {id}")
    );
    assert!(problem.contains("the store does not hold it"), "{problem}");
}

#[test]
fn a_certificate_record_no_entry_makes_is_reported() {
    let (_d, store) = demo_store_copy();
    let (_, rec) = first_with(&store, CertStatus::Valid);
    let forged = CertificateId([0x5a; 16]);
    store
        .raw_put_state(
            &key::certificate(&forged),
            Some(&serde_json::to_vec(&rec).unwrap()),
        )
        .unwrap();
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, format!("the record of certificate {forged}"));
    assert!(
        problem.contains("no entry of the log makes it"),
        "{problem}"
    );
}

#[test]
fn an_envelope_index_pointing_elsewhere_is_reported() {
    let (_d, store) = demo_store_copy();
    let (k, v) = store.scan_state(b"h").unwrap().into_iter().next().unwrap();
    let at = u64::from_be_bytes(v.try_into().unwrap());
    store
        .raw_put_state(&k, Some(&(at + 1).to_be_bytes()))
        .unwrap();
    let (record, problem) = derived_finding(&store);
    assert!(record.starts_with("the entry of envelope "), "{record}");
    assert_eq!(
        problem,
        format!(
            "value is \"entry {}\" in the store, \"entry {at}\" by the log",
            at + 1
        )
    );
}

#[test]
fn a_record_that_does_not_decode_is_reported() {
    let (_d, store) = demo_store_copy();
    let (id, _) = first_with(&store, CertStatus::Valid);
    store
        .raw_put_state(&key::certificate(&id), Some(&[1, 2, 3]))
        .unwrap();
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, format!("the record of certificate {id}"));
    assert!(problem.contains("is corrupt"), "{problem}");
}

/// A record moved into the bucket before its own: still on disk, but where a lookup does not
/// look (lookups read the bucket whose key range holds the key).
#[test]
fn a_record_moved_out_of_its_buckets_key_range_is_reported() {
    use reman_ledger::bucket::Bucket;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine_demo(), dir.path());
    let moved = {
        let db = raw_sled(dir.path());
        let buckets: Vec<_> = db.scan_prefix(b"S").map(Result::unwrap).collect();
        assert!(buckets.len() >= 2, "the demo's state fills several buckets");
        let (ka, va) = &buckets[0];
        let (kb, vb) = &buckets[1];
        let (mut a, mut b) = (Bucket::decode(va).unwrap(), Bucket::decode(vb).unwrap());
        let first = b.first_key().unwrap().to_vec();
        assert_eq!(&kb[1..], first.as_slice());
        let value = reman_ledger::bucket::find(vb, &first)
            .unwrap()
            .unwrap()
            .to_vec();
        // The bucket keeps its key (its range still starts there) without its first record.
        b.set(&first, None);
        a.set(&first, Some(value));
        db.insert(ka, a.encode()).unwrap();
        db.insert(kb, b.encode()).unwrap();
        db.flush().unwrap();
        first
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.get(&moved).unwrap(),
        None,
        "lookups no longer find it"
    );
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, "the store's state records");
    assert!(
        problem.contains("outside its bucket's key range"),
        "{problem}"
    );
}

/// A copy of the demo store with `change` made to its raw sled records.
fn changed_raw(change: impl FnOnce(&sled::Db)) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine_demo(), dir.path());
    {
        let db = raw_sled(dir.path());
        change(&db);
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// Flips one byte of the value stored under `key` in a copy of the demo store, at `at`.
fn flip_stored(key: &[u8], at: usize) -> (tempfile::TempDir, Store) {
    changed_raw(|db| {
        let mut v = db.get(key).unwrap().expect("stored").to_vec();
        v[at] ^= 0x20;
        db.insert(key, v).unwrap();
    })
}

fn run_key(first: u64) -> Vec<u8> {
    [&b"R"[..], &first.to_be_bytes()].concat()
}

/// A plain run of entries as the store lays it out (`u32 n_entries, u32 n_nodes`, the
/// entries' end offsets as u32, then the entries back to back), without nodes.
fn plain_run(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = (entries.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&0u32.to_be_bytes());
    let mut end = 0u32;
    for e in entries {
        end += e.len() as u32;
        out.extend_from_slice(&end.to_be_bytes());
    }
    for e in entries {
        out.extend_from_slice(e);
    }
    out
}

/// The first run made to hold entries 0..3 as well: the runs from 1 and 2 start inside it.
/// Entry bundles read a run at a time, lookups by index: a forged copy of entry 1 there was
/// served in bundles while every entry read by index verified (review finding).
#[test]
fn overlapping_runs_of_entries_are_reported() {
    let (_d, store) = demo_store_copy();
    let entries: Vec<Vec<u8>> = (0..3)
        .map(|i| store.entry(i).unwrap().unwrap().to_vec())
        .collect();
    drop(store);
    let mut forged = entries.clone();
    forged[1][20] ^= 1;
    let (_d, store) = changed_raw(|db| {
        db.insert(run_key(0), plain_run(&forged)).unwrap();
    });
    // Bundles serve what lookups serve: entry 1 from its own run.
    assert_eq!(
        store.entries(0..3).unwrap()[1].as_ref(),
        entries[1].as_slice()
    );
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, "the runs of entries from 0 and from 1");
    assert!(
        problem.starts_with("they overlap: the first holds 3 entries, up to 2"),
        "{problem}"
    );
}

#[test]
fn a_run_of_entries_past_the_log_is_reported() {
    let (_d, store) = changed_raw(|db| {
        let last = db.get(run_key(88)).unwrap().unwrap();
        db.insert(run_key(95), last).unwrap();
    });
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, "what the store keeps beyond its log");
    assert_eq!(
        problem,
        "a run of entries from 95 is stored past the log's 89 entries"
    );
}

/// A seal planted for the next entry would be served for it once it is logged.
#[test]
fn a_seal_kept_past_the_log_is_reported() {
    let (_d, store) = demo_store_copy();
    store.raw_put_seal(89, Some([7; 64])).unwrap();
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, "what the store keeps beyond its log");
    assert_eq!(
        problem,
        "a seal signature is kept for entry 89, past the log's 89 entries"
    );
}

/// A hash planted after the last complete upper node: node (6, 1), which the log does not
/// complete before 128 entries. The appends that complete it write it over the planted one
/// (they left the tile as it was: review finding).
#[test]
fn an_upper_merkle_node_past_the_log_is_reported_and_replaced_by_the_next_appends() {
    let tile = [&[b'T', 6][..], &0u64.to_be_bytes()].concat();
    let (d, store) = changed_raw(|db| {
        let mut v = db.get(&tile).unwrap().unwrap().to_vec();
        assert_eq!(v.len(), 32);
        v.extend_from_slice(&[0x33; 32]);
        db.insert(&tile, v).unwrap();
    });
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, "what the store keeps beyond its log");
    assert_eq!(
        problem,
        "the tile of Merkle nodes 0..2 at level 6 holds nodes past the 1 subtrees of that level the log completes"
    );
    drop(store);
    let l = Ledger::open(d.path(), log_key(), config()).unwrap();
    let suzhou = key("suzhou-reman.example");
    for i in 0..40 {
        let json = certificate_json(&gtin(5000 + i), &format!("TILE-{i}"), None);
        l.submit(&sign(PayloadType::Certificate, &json, &suzhou))
            .unwrap();
    }
    assert!(l.head().size >= 128);
    l.close().unwrap();
    let store = Store::open(d.path()).unwrap();
    audit_store(&store, Some(log_key().public()), |_, _| {}).unwrap();
}

/// Block 1 (leaves 64..89) made to hold 24 leaves: entry 88's leaf hash is gone (the block's
/// nodes above the leaves are the same for 24 and 25 leaves). The server then refused to start.
#[test]
fn a_missing_leaf_hash_is_reported() {
    let block = [&b"B"[..], &1u64.to_be_bytes()].concat();
    let (_d, store) = changed_raw(|db| {
        let v = db.get(&block).unwrap().unwrap();
        assert_eq!(v[0], 25);
        let cut = [&[24u8][..], &v[1..1 + 32 * 24], &v[1 + 32 * 25..]].concat();
        db.insert(&block, cut).unwrap();
    });
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, "the leaf hash of entry 88");
    assert!(problem.contains("does not hold it"), "{problem}");
}

#[test]
fn a_tree_size_record_other_than_the_logs_is_reported() {
    let (_d, store) = changed_raw(|db| {
        db.insert(b"Msize", &88u64.to_be_bytes()).unwrap();
    });
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, "the store's tree size");
    assert_eq!(problem, "it is 88; its entries and checkpoint make 89");
}

/// A node of the block of the first 64 leaves (`B`, block 0: a count byte, then the hashes
/// of levels 0, 1, ...): the first node of level 1, right after the 64 leaf hashes.
#[test]
fn a_changed_lower_merkle_node_is_reported() {
    let mut key = vec![b'B'];
    key.extend_from_slice(&0u64.to_be_bytes());
    let (_d, store) = flip_stored(&key, 1 + 32 * 64);
    let (record, problem) = derived_finding(&store);
    assert_eq!(record, "the Merkle node at level 1, index 0 (entries 0..2)");
    assert!(
        problem.contains("proofs made from it do not verify"),
        "{problem}"
    );
}

/// An upper node, kept in a tile of its level (`T`, level 6, tile 0): the root of the first
/// 64 entries.
#[test]
fn a_changed_upper_merkle_node_is_reported() {
    let mut key = vec![b'T', 6];
    key.extend_from_slice(&0u64.to_be_bytes());
    let (_d, store) = flip_stored(&key, 5);
    let (record, problem) = derived_finding(&store);
    assert_eq!(
        record,
        "the Merkle node at level 6, index 0 (entries 0..64)"
    );
    assert!(
        problem.contains("proofs made from it do not verify"),
        "{problem}"
    );
}

/// The binary: exit 1, AUDIT FAILED naming the record; `--json` has no bad index (the entries
/// are sound) and the reason.
#[test]
fn the_cli_exits_1_and_names_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(pristine_demo(), &data);
    let id = {
        let store = Store::open(&data).unwrap();
        let (id, mut rec) = first_with(&store, CertStatus::Revoked);
        rec.status = CertStatus::Valid;
        store
            .raw_put_state(
                &key::certificate(&id),
                Some(&serde_json::to_vec(&rec).unwrap()),
            )
            .unwrap();
        id
    };
    let run = |json: bool| {
        let mut args = vec!["audit", "--data", "data"];
        args.extend(json.then_some("--json"));
        Command::new(env!("CARGO_BIN_EXE_reman-ledger"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "AUDIT FAILED: the record of certificate {id}: status"
        )),
        "{err}"
    );
    let out = run(true);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad_index"], serde_json::Value::Null);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains(&id.to_string())),
        "{v}"
    );
}

/// A changed last entry whose leaf hash was changed with it in its node block (the time of an
/// entry is not under any signature) is a log that does not match its signed checkpoint, not a
/// damaged node: the derived data is judged only once the entries and checkpoint have held
/// (review finding: the level-1 node above it was reported as damaged, "the entries and
/// checkpoint verify").
#[test]
fn a_changed_last_entry_with_its_leaf_hash_is_a_root_mismatch_not_a_damaged_node() {
    let (d, store) = demo_store_copy();
    drop(store);
    {
        let l = Ledger::open(d.path(), log_key(), config()).unwrap();
        let json = certificate_json(&gtin(6001), "EVEN-1", None);
        l.submit(&sign(
            PayloadType::Certificate,
            &json,
            &key("suzhou-reman.example"),
        ))
        .unwrap();
        assert_eq!(l.head().size, 90);
        l.close().unwrap();
    }
    let store = Store::open(d.path()).unwrap();
    let mut entry = store.entry(89).unwrap().unwrap().to_vec();
    let at = entry.windows(2).position(|w| w == b"Z\"").unwrap() - 1;
    entry[at] = if entry[at] < b'9' {
        entry[at] + 1
    } else {
        entry[at] - 1
    };
    store.raw_put_entry(89, &entry).unwrap();
    drop(store);
    let block = [&b"B"[..], &1u64.to_be_bytes()].concat();
    let (_d2, store) = {
        let db = raw_sled(d.path());
        let mut v = db.get(&block).unwrap().unwrap().to_vec();
        assert_eq!(v[0], 26);
        let leaf = reman_ledger::merkle::leaf_hash(&entry);
        v[1 + 32 * 25..1 + 32 * 26].copy_from_slice(&leaf);
        db.insert(&block, v).unwrap();
        db.flush().unwrap();
        drop(db);
        let store = Store::open(d.path()).unwrap();
        (d, store)
    };
    let e = audit_store(&store, Some(log_key().public()), |_, _| {}).unwrap_err();
    assert!(matches!(e, AuditError::RootMismatch { size: 90 }), "{e}");
}

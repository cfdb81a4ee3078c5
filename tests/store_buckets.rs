//! State records packed in buckets (store layout format 2), driven through `Store::commit` on a
//! real sled directory and compared with a plain ordered map: lookups, prefix scans, deletes,
//! repeated keys in one commit, keys that are prefixes of others or hold 0x00 / 0xFF, across
//! splits and reopens; scans while commits split the buckets they walk; damaged buckets.

mod common;

use common::*;
use proptest::prelude::*;
use reman_ledger::bucket::{self, MAX_BYTES};
use reman_ledger::ledger::Ledger;
use reman_ledger::payload::PayloadType;
use reman_ledger::state::StateRead;
use reman_ledger::store::{Commit, Store};
use std::collections::BTreeMap;
use std::path::Path;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn commit(store: &Store, state: Writes) {
    store
        .commit(Commit {
            state,
            ..Commit::default()
        })
        .unwrap();
}

fn apply(model: &mut Model, writes: &Writes) {
    for (k, v) in writes {
        match v {
            Some(v) => model.insert(k.clone(), v.clone()),
            None => model.remove(k),
        };
    }
}

/// The records of `model` whose key starts with `prefix`, in key order.
fn model_scan(model: &Model, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .range(prefix.to_vec()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The raw buckets: every record lies in `[start, next start)`, only the first bucket (`S`)
/// may be empty, and a bucket over the size limit holds one record.
fn check_buckets(store: &Store) {
    let raw: Vec<(Vec<u8>, Vec<u8>)> = store
        .scan_prefix(b"S")
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect();
    for (i, (start, value)) in raw.iter().enumerate() {
        let start = &start[1..];
        let next = raw.get(i + 1).map(|(k, _)| &k[1..]);
        let records: Vec<_> = bucket::records(value).map(|r| r.unwrap()).collect();
        assert!(i == 0 || !records.is_empty(), "empty bucket {start:?}");
        if i == 0 {
            assert!(start.is_empty(), "the first bucket starts at the empty key");
        }
        assert!(value.len() <= MAX_BYTES || records.len() == 1);
        for (k, _) in records {
            assert!(k >= start, "{k:?} before its bucket {start:?}");
            assert!(next.is_none_or(|n| k < n), "{k:?} past its bucket");
        }
    }
}

/// Every lookup and every prefix scan of `store` is the model's.
fn check(store: &Store, model: &Model, probes: &[Vec<u8>]) {
    for k in probes.iter().chain(model.keys()) {
        assert_eq!(store.get(k).unwrap(), model.get(k).cloned(), "get {k:?}");
    }
    for p in probes.iter().filter(|p| p.len() <= 2) {
        assert_eq!(
            store.scan_state(p).unwrap(),
            model_scan(model, p),
            "scan {p:?}"
        );
    }
    assert_eq!(store.scan_state(b"").unwrap(), model_scan(model, b""));
    check_buckets(store);
}

const ALPHABET: [u8; 5] = [0x00, 0x01, b'a', b'b', 0xFF];

/// Every key over [`ALPHABET`] up to `len` bytes, the empty key included.
fn all_keys(len: usize) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    let mut last = vec![Vec::new()];
    for _ in 0..len {
        last = last
            .iter()
            .flat_map(|k: &Vec<u8>| ALPHABET.iter().map(move |b| [k.as_slice(), &[*b]].concat()))
            .collect();
        out.extend(last.iter().cloned());
    }
    out
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(ALPHABET.to_vec()), 0..5)
}

fn write_strategy() -> impl Strategy<Value = (Vec<u8>, Option<Vec<u8>>)> {
    (
        key_strategy(),
        prop_oneof![
            1 => Just(None),
            3 => (0usize..160, any::<u8>()).prop_map(|(n, b)| Some(vec![b; n])),
        ],
    )
}

fn reopen(dir: &Path, store: Store) -> Store {
    drop(store);
    Store::open(dir).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random commits of sets, deletes and repeated keys read back as an ordered map would,
    /// after every commit and after a reopen.
    #[test]
    fn buckets_read_as_an_ordered_map(
        commits in prop::collection::vec(prop::collection::vec(write_strategy(), 0..40), 1..14)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut model = Model::new();
        let probes = all_keys(3);
        for (i, writes) in commits.into_iter().enumerate() {
            apply(&mut model, &writes);
            commit(&store, writes);
            check(&store, &model, &probes);
            if i % 5 == 4 {
                store = reopen(dir.path(), store);
                check(&store, &model, &probes);
            }
        }
        let store = reopen(dir.path(), store);
        check(&store, &model, &probes);
    }
}

fn filler(i: u32) -> Vec<u8> {
    [b"k".as_slice(), &i.to_be_bytes()].concat()
}

/// Enough records under `k` for several buckets: returns the model.
fn fill(store: &Store, n: u32) -> Model {
    let writes: Writes = (0..n).map(|i| (filler(i), Some(vec![7; 60]))).collect();
    let mut model = Model::new();
    apply(&mut model, &writes);
    commit(store, writes);
    model
}

/// The raw bucket starts, without the `S`.
fn starts(store: &Store) -> Vec<Vec<u8>> {
    store
        .scan_prefix(b"S")
        .map(|r| r.unwrap().0[1..].to_vec())
        .collect()
}

/// The last write of a key in one commit wins, whether it sets or deletes, and whatever the
/// bucket holds already.
#[test]
fn the_last_write_of_a_key_in_a_commit_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut model = fill(&store, 200);
    let writes: Writes = vec![
        (filler(5), Some(b"first".to_vec())),
        (filler(5), Some(b"second".to_vec())),
        (filler(6), Some(b"set".to_vec())),
        (filler(6), None),
        (b"new".to_vec(), None),
        (b"new".to_vec(), Some(b"kept".to_vec())),
        (filler(150), Some(b"a".to_vec())),
        (filler(150), None),
        (filler(150), Some(b"b".to_vec())),
    ];
    apply(&mut model, &writes);
    commit(&store, writes);
    assert_eq!(store.get(&filler(5)).unwrap(), Some(b"second".to_vec()));
    assert_eq!(store.get(&filler(6)).unwrap(), None);
    assert_eq!(store.get(b"new").unwrap(), Some(b"kept".to_vec()));
    assert_eq!(store.get(&filler(150)).unwrap(), Some(b"b".to_vec()));
    check(&store, &model, &[]);
}

/// Deleting a bucket's first record keeps its other records findable; deleting all the
/// records of a bucket that is not the first removes it, and its range falls to the bucket
/// before, which then takes new records of that range.
#[test]
fn deleting_first_and_last_records_of_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut model = fill(&store, 200);
    let before = starts(&store);
    assert!(before.len() > 5, "{} buckets", before.len());
    let probes: Vec<Vec<u8>> = before.clone();

    // The first record of the third bucket.
    let third = before[2].clone();
    let w: Writes = vec![(third.clone(), None)];
    apply(&mut model, &w);
    commit(&store, w);
    check(&store, &model, &probes);
    assert!(
        starts(&store).contains(&third),
        "the bucket keeps its start"
    );

    // Every record of the fourth bucket.
    let (lo, hi) = (before[3].clone(), before[4].clone());
    let w: Writes = model
        .range(lo.clone()..hi.clone())
        .map(|(k, _)| (k.clone(), None))
        .collect();
    apply(&mut model, &w);
    commit(&store, w);
    check(&store, &model, &probes);
    assert!(!starts(&store).contains(&lo), "the empty bucket is gone");

    // A record in the removed range goes to the bucket before it.
    let w: Writes = vec![(lo.clone(), Some(b"back".to_vec()))];
    apply(&mut model, &w);
    commit(&store, w);
    check(&store, &model, &probes);

    // Every record of the first bucket, then everything: the first bucket stays, empty.
    let w: Writes = model.keys().map(|k| (k.clone(), None)).collect();
    apply(&mut model, &w);
    commit(&store, w);
    check(&store, &model, &probes);
    assert_eq!(starts(&store), vec![Vec::<u8>::new()]);
    let store = reopen(dir.path(), store);
    check(&store, &model, &probes);
}

/// Prefix scans whose prefix spans many buckets, falls between two buckets' records, equals
/// a bucket's start, or precedes every bucket.
#[test]
fn prefix_scans_across_and_between_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut model = fill(&store, 300);
    let w: Writes = vec![
        (b"j\xff".to_vec(), Some(b"before".to_vec())),
        (b"l".to_vec(), Some(b"after".to_vec())),
        (b"k".to_vec(), Some(b"the prefix itself".to_vec())),
    ];
    apply(&mut model, &w);
    commit(&store, w);
    let s = starts(&store);
    let mut probes: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\0".to_vec(),
        b"j".to_vec(),
        b"k".to_vec(),
        b"k\0".to_vec(),
        b"k\0\0".to_vec(),
        b"k\0\0\x01".to_vec(),
        b"k\0\0\xff".to_vec(),
        b"k\x01".to_vec(),
        b"l".to_vec(),
        b"m".to_vec(),
        b"\xff".to_vec(),
    ];
    for start in &s {
        probes.push(start.clone());
        // Just before and after a start, and a prefix of it.
        let mut before = start.clone();
        if let Some(last) = before.last_mut() {
            *last = last.saturating_sub(1);
        }
        probes.push(before);
        probes.push([start.as_slice(), b"\0"].concat());
        probes.push(start[..start.len().saturating_sub(1)].to_vec());
    }
    for p in &probes {
        assert_eq!(store.scan_state(p).unwrap(), model_scan(&model, p), "{p:?}");
    }
    assert!(store.scan_state(b"k").unwrap().len() == 301);
}

/// Random 9-byte keys under `k`, like the digests and IDs state keys are made of: sled
/// separates its nodes by the shortest prefix that tells two keys apart, so a bucket split
/// off from the last bucket of a node often lands in the next node.
fn random_keys(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            // splitmix64
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            [b"k".as_slice(), &(z ^ (z >> 31)).to_be_bytes()].concat()
        })
        .collect()
}

/// A scan reads its buckets one by one while commits go on; when a commit splits a bucket
/// the scan has already read, the records moved to the new bucket after it must not be
/// returned a second time (nor out of order), and no record present throughout may be
/// missed.
#[test]
fn a_scan_concurrent_with_splits_returns_each_record_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let initial = random_keys(1, 300);
    commit(
        &store,
        initial
            .iter()
            .map(|k| (k.clone(), Some(vec![1; 40])))
            .collect(),
    );
    let done = AtomicBool::new(false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    let bad = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut scans = 0u64;
            while !done.load(Ordering::Relaxed) {
                let got = store.scan_state(b"k").unwrap();
                scans += 1;
                if let Some(w) = got.windows(2).find(|w| w[0].0 >= w[1].0) {
                    return Some(format!("scan {scans}: {:?} then {:?}", w[0].0, w[1].0));
                }
                let old = got.iter().filter(|(_, v)| v[0] == 1).count();
                if old != initial.len() {
                    return Some(format!("scan {scans}: {old} of the first records"));
                }
            }
            None
        });
        // Each commit adds large records all over the range and removes those of a few
        // commits before: many splits per commit, and the number of buckets stays small.
        let fresh = random_keys(2, 200_000);
        for (i, keys) in fresh.chunks(20).enumerate() {
            let mut writes: Writes = keys
                .iter()
                .map(|k| (k.clone(), Some(vec![2; 300])))
                .collect();
            if i >= 5 {
                writes.extend(
                    fresh[(i - 5) * 20..(i - 4) * 20]
                        .iter()
                        .map(|k| (k.clone(), None)),
                );
            }
            commit(&store, writes);
            if reader.is_finished() || std::time::Instant::now() > deadline {
                break;
            }
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert_eq!(bad, None);
}

/// A damaged bucket is a clear error for lookups, scans and commits that touch it, not a
/// panic, and a commit refused for it writes nothing.
#[test]
fn a_damaged_bucket_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let model = fill(&store, 200);
    let s = starts(&store);
    let victim = s[3].clone();
    // The last record of the bucket, where the damage is.
    let probe = model.range(..s[4].clone()).next_back().unwrap().0.clone();
    let victim_key = [b"S".as_slice(), &victim].concat();
    drop(store);
    {
        let db = raw_sled(dir.path());
        let good = db.get(&victim_key).unwrap().unwrap();
        // Truncated in the middle of a record.
        db.insert(&victim_key, &good[..good.len() - 3]).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let err = store.get(&probe).unwrap_err().to_string();
    assert!(err.contains("state bucket is corrupt"), "{err}");
    let err = store.scan_state(b"k").unwrap_err().to_string();
    assert!(err.contains("state bucket is corrupt"), "{err}");
    // Other buckets still read.
    assert!(store.get(&filler(0)).unwrap().is_some());
    let before: Vec<_> = store.scan_prefix(b"").map(|r| r.unwrap()).collect();
    let err = store
        .commit(Commit {
            state: vec![(filler(0), None), (probe.clone(), Some(b"x".to_vec()))],
            size: 9,
            ..Commit::default()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("state bucket is corrupt"), "{err}");
    let after: Vec<_> = store.scan_prefix(b"").map(|r| r.unwrap()).collect();
    assert_eq!(before, after, "a refused commit wrote something");

    // Keys out of order, and garbage lengths.
    drop(store);
    for damaged in [
        [0u8, 1, b'z', 0, 0, 0, 0, 0, 1, b'a', 0, 0, 0, 0].to_vec(),
        vec![0xFF; 40],
    ] {
        {
            let db = raw_sled(dir.path());
            db.insert(&victim_key, damaged).unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let err = store
            .commit(Commit {
                state: vec![(probe.clone(), Some(b"x".to_vec()))],
                ..Commit::default()
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("state bucket is corrupt"), "{err}");
        drop(store);
    }
}

/// A record whose key is longer than a bucket's length field holds is refused before anything
/// is written (it would otherwise be stored with a wrapped length and damage its bucket).
#[test]
fn a_record_too_large_for_a_bucket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let model = fill(&store, 50);
    let before: Vec<_> = store.scan_prefix(b"").map(|r| r.unwrap()).collect();
    let err = store
        .commit(Commit {
            state: vec![(filler(0), None), (vec![b'k'; 65_536], Some(b"x".to_vec()))],
            size: 9,
            ..Commit::default()
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("65536-byte key") && err.contains("cannot be stored"),
        "{err}"
    );
    let after: Vec<_> = store.scan_prefix(b"").map(|r| r.unwrap()).collect();
    assert_eq!(before, after, "a refused commit wrote something");
    check(&store, &model, &[]);
}

/// A certificate with many events: its history records (25-byte keys) span several buckets,
/// interleaved with other certificates' histories, and read back complete and in order, before
/// and after a reopen.
#[test]
fn a_long_history_spans_buckets_and_reads_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let k = key("suzhou-reman.example");
    let read = |f: &str| std::fs::read_to_string(root().join("fixtures/examples").join(f)).unwrap();
    let ids: Vec<String> = (0..3u64)
        .map(|i| {
            let json = certificate_json(&gtin(800_000 + i), &format!("HX-{i}"), None);
            let r = l
                .submit(&sign(PayloadType::Certificate, &json, &k))
                .unwrap();
            r.certificate_id.unwrap().to_string()
        })
        .collect();
    let event = read("event.json");
    let n = 130;
    for e in 0..n {
        for id in &ids {
            let json = event
                .replace("CERTIFICATE_ID", id)
                .replace("invoice SZR-EX-2026-1128", &format!("invoice {e}"));
            l.submit(&sign(PayloadType::Event, &json, &k)).unwrap();
        }
    }
    let check = |l: &Ledger| {
        for id in &ids {
            let id = id.parse().unwrap();
            let view = l.certificate(&id).unwrap();
            assert_eq!(view.events.len(), n, "{id}");
            assert!(view.events.windows(2).all(|w| w[0].index < w[1].index));
            for (e, item) in view.events.iter().enumerate() {
                assert_eq!(
                    item.body["event"]["reference"],
                    format!("invoice {e}"),
                    "{id}"
                );
            }
            let history = l
                .store()
                .scan_state(&reman_ledger::state::key::history_prefix(&id))
                .unwrap();
            assert_eq!(history.len(), n);
        }
        let buckets = l.store().scan_prefix(b"Sv").count();
        assert!(buckets >= 6, "{buckets} history buckets");
    };
    check(&l);
    l.close().unwrap();
    let l = Ledger::open(dir.path(), log_key(), config()).unwrap();
    check(&l);
    reman_ledger::audit::audit_store(l.store(), None, |_, _| {}).unwrap();
}

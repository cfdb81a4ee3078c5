//! The conversion of a format 1 store (one sled key per state record) to format 2 (buckets),
//! interrupted at each point a crash can leave it: the next open must finish it, lose nothing
//! and read nothing stale.

mod common;

use common::*;
use reman_ledger::audit::audit_store;
use reman_ledger::ledger::Ledger;
use reman_ledger::payload::PayloadType;
use std::path::Path;

type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// A fresh copy of the committed format 1 store.
fn legacy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("fixtures/legacy-store-v1"), dir.path());
    dir
}

/// The format 1 store's state records: its keys with a lowercase first byte.
fn old_records(db: &sled::Db) -> Records {
    db.range::<&[u8], _>(&b"a"[..]..&b"{"[..])
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// The converted store holds exactly the old state records, in buckets, and no old key; it
/// audits, reads its certificates, and takes new entries.
fn check_converted(dir: &Path, expected: &Records) {
    let ledger = Ledger::open(dir, log_key(), config()).unwrap();
    assert_eq!(ledger.head().size, 89);
    assert_eq!(&ledger.store().scan_state(b"").unwrap(), expected);
    for (k, v) in expected {
        use reman_ledger::state::StateRead;
        assert_eq!(ledger.store().get(k).unwrap().as_ref(), Some(v));
    }
    let stray = ledger
        .store()
        .scan_prefix(b"")
        .map(|r| r.unwrap().0)
        .filter(|k| k[0].is_ascii_lowercase())
        .count();
    assert_eq!(stray, 0, "old keys left");
    audit_store(ledger.store(), None, |_, _| {}).unwrap();
    let certificates = ledger.store().scan_state(b"c").unwrap();
    assert!(certificates.len() >= 30);
    for (k, _) in &certificates {
        let id = reman_ledger::certificate::CertificateId(k[1..].try_into().unwrap());
        ledger.certificate(&id).unwrap();
    }
    assert_eq!(ledger.parties().unwrap().len(), 9);
    let json = certificate_json(&gtin(900_001), "UPG-1", None);
    let r = ledger
        .submit(&sign(
            PayloadType::Certificate,
            &json,
            &key("kyoto-imaging.example"),
        ))
        .unwrap();
    assert!(r.created);
    ledger.close().unwrap();
}

/// The legacy store's state records, read from a copy of it.
fn expected_records() -> Records {
    let dir = legacy();
    old_records(&raw_sled(dir.path()))
}

/// A crash during the packing pass, before the format is recorded: some buckets written
/// (including damaged and stale ones), no `Mformat`. The next open discards them and packs
/// again from the old keys.
#[test]
fn a_conversion_interrupted_before_the_format_is_recorded_is_redone() {
    let expected = expected_records();
    assert!(expected.len() > 100);
    let dir = legacy();
    {
        let db = raw_sled(dir.path());
        // Half the buckets of a first pass, as it writes them.
        let mut bucket = reman_ledger::bucket::Bucket::default();
        for (k, v) in expected.iter().take(expected.len() / 2) {
            bucket.set(k, Some(v.clone()));
        }
        for (i, part) in bucket.split().into_iter().enumerate() {
            let key = if i == 0 {
                b"S".to_vec()
            } else {
                [b"S".as_slice(), part.first_key().unwrap()].concat()
            };
            db.insert(key, part.encode()).unwrap();
        }
        // A bucket holding a stale value of a record that exists, another a record that
        // does not, and a damaged one.
        let (k, _) = &expected[expected.len() - 3];
        let mut stale = reman_ledger::bucket::Bucket::default();
        stale.set(k, Some(b"stale".to_vec()));
        stale.set(&[k.as_slice(), b"\0"].concat(), Some(b"ghost".to_vec()));
        db.insert([b"S".as_slice(), k].concat(), stale.encode())
            .unwrap();
        db.insert(b"Szzz", vec![0xFF; 9]).unwrap();
        assert!(db.get(b"Mformat").unwrap().is_none());
        db.flush().unwrap();
    }
    check_converted(dir.path(), &expected);
    // And a second open has nothing left to do.
    check_converted_again(dir.path(), &expected);
}

/// After the conversion and one more certificate: everything still reads.
fn check_converted_again(dir: &Path, expected: &Records) {
    let ledger = Ledger::open(dir, log_key(), config()).unwrap();
    assert_eq!(ledger.head().size, 90);
    let state = ledger.store().scan_state(b"").unwrap();
    for r in expected {
        // A new certificate changes no earlier record.
        assert!(state.contains(r), "{:?}", String::from_utf8_lossy(&r.0));
    }
    audit_store(ledger.store(), None, |_, _| {}).unwrap();
}

/// A crash after the format is recorded, while the old keys are being deleted: some old keys
/// are left, some with values that no longer hold. The store reads only its buckets, and the
/// next open deletes the rest of the old keys.
#[test]
fn a_conversion_interrupted_while_deleting_the_old_keys_is_finished() {
    let expected = expected_records();
    let dir = legacy();
    // A complete conversion ...
    drop(reman_ledger::store::Store::open(dir.path()).unwrap());
    {
        let db = raw_sled(dir.path());
        assert!(old_records(&db).is_empty());
        assert_eq!(
            db.get(b"Mformat").unwrap().unwrap().as_ref(),
            [reman_ledger::store::FORMAT]
        );
        // ... whose deletion of old keys did not finish: every third is back, some changed,
        // and one that never existed.
        for (i, (k, v)) in expected.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            let v = if i % 2 == 0 {
                v.clone()
            } else {
                b"changed".to_vec()
            };
            db.insert(k, v).unwrap();
        }
        db.insert(b"zz-never", b"x".as_slice()).unwrap();
        db.flush().unwrap();
    }
    check_converted(dir.path(), &expected);
    check_converted_again(dir.path(), &expected);
}

/// An untouched format 1 store converts to exactly its records.
#[test]
fn the_conversion_of_an_untouched_format_1_store_keeps_every_record() {
    let expected = expected_records();
    let dir = legacy();
    check_converted(dir.path(), &expected);
    check_converted_again(dir.path(), &expected);
}

/// A store of the current layout whose format record was removed (damage, or tampering) holds
/// buckets and no old keys: it is not a format 1 store, and converting it would drop every
/// state record. It is refused, unchanged; `audit` too leaves it as it was (review finding:
/// the audit's own open emptied the state).
#[test]
fn a_current_store_without_its_format_record_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine_demo(), dir.path());
    let before = {
        let db = raw_sled(dir.path());
        db.remove(b"Mformat").unwrap();
        db.flush().unwrap();
        all_records(&db)
    };
    refused(
        dir.path(),
        "layout format record is missing",
        "nothing was changed",
    );
    assert!(
        before == all_records(&raw_sled(dir.path())),
        "the store was changed"
    );
}

/// A `conf` file whose segment size is not the one the data was written with makes sled panic
/// while opening: the store says so and `audit` exits 2 with that message, instead of
/// crashing (review finding: exit 101).
#[test]
fn a_conf_file_that_does_not_fit_the_data_is_a_damaged_store_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine_demo(), dir.path());
    // sled's `conf`: text lines, then a CRC that sled only warns about.
    let conf = dir.path().join("conf");
    let bytes = std::fs::read(&conf).unwrap();
    let line = format!("segment_size: {}", reman_ledger::store::SEGMENT_SIZE);
    let at = bytes
        .windows(line.len())
        .position(|w| w == line.as_bytes())
        .unwrap();
    let changed = [
        &bytes[..at],
        b"segment_size: 4096",
        &bytes[at + line.len()..],
    ]
    .concat();
    std::fs::write(&conf, changed).unwrap();
    refused(
        dir.path(),
        "sled failed while opening",
        "its `conf` file or its data is damaged",
    );
}

/// Every raw sled record of `db`.
fn all_records(db: &sled::Db) -> Records {
    db.iter()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
}

/// The store in `dir` does not open (the error says `open_says`), and `audit --data` exits 2
/// saying `audit_says`.
fn refused(dir: &Path, open_says: &str, audit_says: &str) {
    let err = match reman_ledger::store::Store::open(dir) {
        Ok(_) => panic!("opened a store that should be refused ({open_says})"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(open_says), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reman-ledger"))
        .args(["audit", "--data"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(audit_says), "{stderr}");
}

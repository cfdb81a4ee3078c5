//! `audit` finds the first bad entry of a tampered store.

mod common;

use common::*;
use proptest::prelude::*;
use reman_ledger::audit::{AuditError, audit_store};
use reman_ledger::ledger::Ledger;
use reman_ledger::store::Store;

fn first_bad(store: &Store) -> Option<u64> {
    match audit_store(store, Some(log_key().public()), |_, _| {}) {
        Ok(_) => None,
        Err(e) => Some(e.index().unwrap_or_else(|| panic!("no index in {e}"))),
    }
}

#[test]
fn the_untouched_demo_store_passes() {
    let (_d, store) = demo_store_copy();
    let report = audit_store(&store, Some(log_key().public()), |_, _| {}).unwrap();
    assert_eq!(report.entries, 89);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn changing_any_byte_of_any_entry_is_reported_at_that_entry(
        index in 0u64..89, pos in any::<prop::sample::Index>(), delta in 1u8..=255,
    ) {
        let (_d, store) = demo_store_copy();
        let mut bytes = store.entry(index).unwrap().unwrap().to_vec();
        let p = pos.index(bytes.len());
        bytes[p] = bytes[p].wrapping_add(delta);
        store.raw_put_entry(index, &bytes).unwrap();
        prop_assert_eq!(first_bad(&store), Some(index));
    }
}

#[test]
fn changing_the_time_of_the_last_entry_is_reported_there() {
    // The time is not covered by any signature: only the tree records it.
    let (_d, store) = demo_store_copy();
    let bytes = store.entry(88).unwrap().unwrap().to_vec();
    let text = String::from_utf8(bytes).unwrap();
    let pos = text.find("\"integrated_time\":\"").unwrap() + 19;
    let mut changed = text.clone().into_bytes();
    changed[pos + 3] = if changed[pos + 3] == b'5' { b'4' } else { b'5' };
    store.raw_put_entry(88, &changed).unwrap();
    assert_eq!(first_bad(&store), Some(88));
}

#[test]
fn dropping_the_last_entries_is_reported_at_the_first_missing_one() {
    for drop in [1u64, 5, 40] {
        let (_d, store) = demo_store_copy();
        store.raw_truncate_entries(89 - drop).unwrap();
        let err = audit_store(&store, None, |_, _| {}).unwrap_err();
        assert!(matches!(err, AuditError::Missing { .. }), "{err}");
        assert_eq!(err.index(), Some(89 - drop));
    }
}

#[test]
fn swapping_two_entries_is_reported_at_the_first_of_them() {
    for (i, j) in [(3u64, 4u64), (10, 60), (0, 88)] {
        let (_d, store) = demo_store_copy();
        let a = store.entry(i).unwrap().unwrap().to_vec();
        let b = store.entry(j).unwrap().unwrap().to_vec();
        store.raw_put_entry(i, &b).unwrap();
        store.raw_put_entry(j, &a).unwrap();
        assert_eq!(first_bad(&store), Some(i), "swap {i} {j}");
    }
}

#[test]
fn a_checkpoint_under_another_key_is_refused() {
    let (_d, store) = demo_store_copy();
    let other = reman_ledger::keys::PrivateKey::generate("reman-ledger.example/log").unwrap();
    let err = audit_store(&store, Some(other.public()), |_, _| {}).unwrap_err();
    assert!(matches!(err, AuditError::Checkpoint(_)), "{err}");
}

#[test]
fn the_audited_copy_still_opens_as_a_ledger() {
    let (d, store) = demo_store_copy();
    drop(store);
    let l = Ledger::open(d.path(), log_key(), config()).unwrap();
    assert_eq!(l.head().size, 89);
}

/// A stored run of entries that no longer decodes (cut short on disk) is tampering at the
/// run's first entry, not an unreadable store: `audit` names that entry (exit 1 from the CLI,
/// where an unreadable store is 2). Found in review: it was reported as a read error.
#[test]
fn a_run_that_no_longer_decodes_is_reported_at_its_first_entry() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine_demo(), dir.path());
    let first = {
        let db = raw_sled(dir.path());
        // The last run of the demo log, cut after six bytes: its header no longer holds.
        let (k, v) = db.scan_prefix(b"R").last().unwrap().unwrap();
        db.insert(&k, &v[..6]).unwrap();
        db.flush().unwrap();
        u64::from_be_bytes(k[1..9].try_into().unwrap())
    };
    let store = Store::open(dir.path()).unwrap();
    let e = audit_store(&store, Some(log_key().public()), |_, _| {}).unwrap_err();
    assert!(matches!(e, AuditError::Entry { .. }), "{e:?}");
    assert_eq!(e.index(), Some(first), "{e}");
    assert!(e.to_string().contains("corrupt"), "{e}");
}

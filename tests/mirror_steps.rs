//! A mirror's step (SPEC §8, `Ledger::follow`) through the library on real sled directories:
//! the entries, seals, checkpoint and consistency proof a real ledger holds are given to a
//! mirror, whole or changed. What verifies is stored, and serves the same answers; each bad
//! input is refused with its own error and leaves the mirror's store exactly as it was.

mod common;

use common::{config, demo_ledger, key, log_key, new_ledger, operator, snapshot};
use reman_ledger::audit::{AuditError, audit_store};
use reman_ledger::certificate::CertificateId;
use reman_ledger::entry::Entry;
use reman_ledger::ledger::{Ledger, LedgerConfig, LedgerError, OperatorDetails, SubmitError};
use reman_ledger::merkle;
use reman_ledger::mirror::{FollowStep, MirrorError};
use reman_ledger::payload::{self, Payload};
use std::collections::BTreeMap;
use std::path::Path;

/// The certificate ID of a certificate entry.
fn certificate_of(bytes: &[u8]) -> Option<CertificateId> {
    let e = Entry::parse(bytes).unwrap();
    match payload::parse(&e.envelope.payload_type, &e.envelope.payload).unwrap() {
        Payload::Certificate(_) => Some(CertificateId::of_payload(&e.envelope.payload)),
        _ => None,
    }
}

/// What the ledger `up` holds for entries `from..to`: their bytes, their certificates' seals,
/// its checkpoint and, when `to` ends before it, the consistency proof to it.
fn step(up: &Ledger, from: u64, to: u64) -> FollowStep {
    let head = up.head();
    let entries: Vec<Vec<u8>> = up
        .store()
        .entries(from..to)
        .unwrap()
        .iter()
        .map(|e| e.to_vec())
        .collect();
    let mut seals = BTreeMap::new();
    for (index, bytes) in (from..).zip(&entries) {
        if let Some(id) = certificate_of(bytes) {
            seals.insert(index, up.seal(&id).unwrap().unwrap().signature);
        }
    }
    let consistency = if to < head.size {
        merkle::consistency_proof(to, head.size, up.store()).unwrap()
    } else {
        Vec::new()
    };
    FollowStep {
        entries,
        seals,
        checkpoint: head.checkpoint.to_string(),
        consistency,
    }
}

fn mirror(dir: &Path) -> Ledger {
    Ledger::open_mirror(dir, log_key().public().clone(), config()).unwrap()
}

/// The demo ledger (89 entries) and an empty mirror of it.
struct Setup {
    up: Ledger,
    mirror: Ledger,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn setup() -> Setup {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (up, _) = demo_ledger(a.path());
    let mirror = mirror(b.path());
    Setup {
        up,
        mirror,
        _dirs: (a, b),
    }
}

/// Follows with `step`, expecting a refusal; checks that nothing was written.
fn refused(mirror: &Ledger, step: FollowStep) -> MirrorError {
    let (before, head) = (snapshot(mirror), mirror.head());
    let err = mirror.follow(step).unwrap_err();
    assert_eq!(snapshot(mirror), before, "a refused step wrote: {err}");
    assert_eq!(mirror.head().size, head.size);
    assert_eq!(mirror.head().checkpoint, head.checkpoint);
    err
}

#[test]
fn a_mirror_stores_the_log_in_verified_steps_and_answers_as_the_ledger_does() {
    let s = setup();
    let (up, m) = (&s.up, &s.mirror);
    let size = up.head().size;
    assert_eq!(size, 89);
    assert_eq!(m.behind(), None);
    assert!(m.head().checkpoint.is_empty());
    // A first step ends before the checkpoint: vouched for by a consistency proof, and the
    // mirror says it is catching up.
    let head = m.follow(step(up, 0, 40)).unwrap();
    assert_eq!(head.size, 40);
    assert_eq!(m.behind(), Some((40, size)));
    m.follow(step(up, 40, size)).unwrap();
    assert_eq!(m.behind(), None);
    assert_eq!(m.head(), up.head());
    // The same answers, seals and proofs included.
    let ids = common::certificate_ids(up);
    assert!(ids.len() >= 30);
    for id in &ids {
        let (a, b) = (up.certificate(id).unwrap(), m.certificate(id).unwrap());
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap()
        );
    }
    assert_eq!(m.parties().unwrap(), up.parties().unwrap());
    // A mirror takes no submissions.
    let before = snapshot(m);
    let err = m
        .submit(&common::sign(
            reman_ledger::payload::PayloadType::Certificate,
            &common::certificate_json(&common::gtin(4242), "MIRROR-1", None),
            &key("suzhou-reman.example"),
        ))
        .unwrap_err();
    assert!(matches!(err, SubmitError::Mirror), "{err}");
    assert_eq!(err.kind().status(), 405);
    assert_eq!(snapshot(m), before);
    // Nothing new: a step of no entries at the same checkpoint changes nothing.
    m.follow(step(up, size, size)).unwrap();
    assert_eq!(snapshot(m), before);
}

#[test]
fn a_mirror_reopens_where_it_stopped_even_mid_catch_up_and_audits_clean() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (up, _) = demo_ledger(a.path());
    let m = mirror(b.path());
    m.follow(step(&up, 0, 50)).unwrap();
    m.close().unwrap();
    let m = mirror(b.path());
    assert_eq!(m.behind(), Some((50, 89)));
    assert_eq!(m.head().size, 50);
    m.follow(step(&up, 50, 89)).unwrap();
    m.close().unwrap();
    let m = mirror(b.path());
    assert_eq!(m.head(), up.head());
    // Every seal was kept durably: a mirror cannot sign one again.
    for id in common::certificate_ids(&up) {
        assert_eq!(
            m.certificate(&id).unwrap().seal,
            up.certificate(&id).unwrap().seal
        );
    }
    // The mirror's store is a ledger store that `audit --data` checks like any other, kept
    // seals included.
    let report = audit_store(m.store(), Some(log_key().public()), |_, _| {}).unwrap();
    assert_eq!(report.entries, 89);
    // Pinned to another key, it does not open.
    m.close().unwrap();
    let other = key("suzhou-reman.example").public().clone();
    match Ledger::open_mirror(b.path(), other, config()) {
        Err(LedgerError::WrongLogKey { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened under another key"),
    }
}

#[test]
fn a_changed_entry_is_refused_with_its_index() {
    let s = setup();
    let mut st = step(&s.up, 0, 89);
    // A character of entry 17's signed payload (base64) changed.
    let e = &mut st.entries[17];
    let at = e.windows(10).position(|w| w == b"\"payload\":").unwrap() + 20;
    e[at] = if e[at] == b'A' { b'B' } else { b'A' };
    match refused(&s.mirror, st) {
        MirrorError::Entry(AuditError::Entry { index: 17, .. }) => {}
        e => panic!("{e}"),
    }
}

#[test]
fn swapped_or_dropped_entries_are_refused_with_the_first_bad_index() {
    let s = setup();
    let mut st = step(&s.up, 0, 89);
    st.entries.swap(30, 31);
    match refused(&s.mirror, st) {
        MirrorError::Entry(AuditError::Entry { index: 30, .. }) => {}
        e => panic!("{e}"),
    }
    let mut st = step(&s.up, 0, 89);
    st.entries.remove(5);
    st.seals.retain(|i, _| *i < 88);
    match refused(&s.mirror, st) {
        MirrorError::Entry(AuditError::Entry { index: 5, .. }) => {}
        e => panic!("{e}"),
    }
}

#[test]
fn entries_beyond_the_checkpoint_are_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = new_ledger(a.path());
    let genesis = up.head().checkpoint.to_string();
    reman_ledger::demo::load(&up, &common::demo_jsonl(), &common::demo_keys()).unwrap();
    let m = mirror(b.path());
    let mut st = step(&up, 0, 2);
    st.checkpoint = genesis;
    match refused(&m, st) {
        MirrorError::BeyondCheckpoint { end: 2, size: 1 } => {}
        e => panic!("{e}"),
    }
}

#[test]
fn a_step_without_a_valid_consistency_proof_is_a_fork() {
    let s = setup();
    let mut st = step(&s.up, 0, 40);
    st.consistency[0][0] ^= 1;
    assert!(matches!(refused(&s.mirror, st), MirrorError::Fork(_)));
    let mut st = step(&s.up, 0, 40);
    st.consistency.clear();
    assert!(matches!(refused(&s.mirror, st), MirrorError::Fork(_)));
}

#[test]
fn entries_whose_root_is_not_the_checkpoints_are_a_fork() {
    // Another ledger under the same log key: its own history, its own signed checkpoints.
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let up = new_ledger(a.path());
    let other = Ledger::init(
        b.path(),
        log_key(),
        &operator(),
        &OperatorDetails {
            display_name: Some("Another operator".into()),
            country: Some("DE".into()),
        },
        LedgerConfig::default(),
    )
    .unwrap();
    let m = mirror(c.path());
    let mut st = step(&up, 0, 1);
    st.checkpoint = other.head().checkpoint.to_string();
    match refused(&m, st) {
        MirrorError::Fork(why) => assert!(why.contains("root"), "{why}"),
        e => panic!("{e}"),
    }
}

#[test]
fn a_checkpoint_not_signed_by_the_log_key_is_refused() {
    let s = setup();
    let mut st = step(&s.up, 0, 89);
    // Signed by a key of the same name that is not the pinned one.
    let forger = reman_ledger::keys::PrivateKey::generate("reman-ledger.example/log").unwrap();
    let cp =
        reman_ledger::checkpoint::Checkpoint::open(&st.checkpoint, log_key().public()).unwrap();
    st.checkpoint = cp.sign(&forger).unwrap();
    assert!(matches!(refused(&s.mirror, st), MirrorError::Checkpoint(_)));
}

#[test]
fn a_missing_or_false_seal_is_refused_with_its_index() {
    let s = setup();
    let st = step(&s.up, 0, 89);
    let (&first, _) = st.seals.iter().next().unwrap();
    let mut missing = st.clone();
    missing.seals.remove(&first);
    match refused(&s.mirror, missing) {
        MirrorError::Seal { index, problem } => {
            assert_eq!(index, first);
            assert!(problem.contains("no seal"), "{problem}");
        }
        e => panic!("{e}"),
    }
    let mut false_seal = st.clone();
    false_seal.seals.get_mut(&first).unwrap()[3] ^= 1;
    match refused(&s.mirror, false_seal) {
        MirrorError::Seal { index, .. } => assert_eq!(index, first),
        e => panic!("{e}"),
    }
    // Entry 0 registers the operator: a seal for it is not a certificate's.
    let mut stray = st.clone();
    stray.seals.insert(0, st.seals[&first]);
    match refused(&s.mirror, stray) {
        MirrorError::Seal { index: 0, .. } => {}
        e => panic!("{e}"),
    }
    // A seal for an entry the step does not append.
    let mut outside = step(&s.up, 0, 40);
    outside.seals.insert(60, st.seals[&first]);
    match refused(&s.mirror, outside) {
        MirrorError::Seal { index: 60, .. } => {}
        e => panic!("{e}"),
    }
}

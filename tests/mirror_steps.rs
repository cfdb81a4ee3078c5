//! A mirror's step (SPEC §8, `Ledger::follow`) through the library on real sled directories:
//! the entries, seals, checkpoint and consistency proof a real ledger holds are given to a
//! mirror, whole or changed. What verifies is stored, and serves the same answers; each bad
//! input is refused with its own error and leaves the mirror's store exactly as it was.

mod common;

use common::{config, demo_ledger, key, log_key, new_ledger, operator, snapshot};
use reman_ledger::audit::{AuditError, audit_store};
use reman_ledger::certificate::CertificateId;
use reman_ledger::checkpoint::Checkpoint;
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

/// What the ledger `up` holds for entries `from..to` (see [`step`]), with the proof that its
/// checkpoint extends the one `m` holds.
fn step_for(m: &Ledger, up: &Ledger, from: u64, to: u64) -> FollowStep {
    let mut st = step(up, from, to);
    let size = up.head().size;
    if let Some(held) = m.held_checkpoint().unwrap() {
        let had = Checkpoint::open(&held, log_key().public()).unwrap();
        if had.size < size {
            st.extends = merkle::consistency_proof(had.size, size, up.store()).unwrap();
        }
    }
    st
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
        extends: Vec::new(),
        consistency,
    }
}

/// Signs `st`'s checkpoint again over its entries as given, with the log key: what a log
/// that logged them would serve.
fn signed_over(mut st: FollowStep) -> FollowStep {
    let mut tree = merkle::TreeBuilder::new();
    for e in &st.entries {
        tree.push(merkle::leaf_hash(e));
    }
    let cp = Checkpoint {
        origin: log_key().name().to_owned(),
        size: tree.size(),
        root: tree.root(),
        extensions: vec![],
    };
    st.checkpoint = cp.sign(&log_key()).unwrap();
    st
}

/// Logs `n` new certificates of the demo remanufacturer in Suzhou, numbered from `from`.
fn log_more(l: &Ledger, from: u64, n: u64) {
    let signer = key("suzhou-reman.example");
    for i in from..from + n {
        let json = common::certificate_json(&common::gtin(9000 + i), &format!("MORE-{i}"), None);
        l.submit(&common::sign(
            reman_ledger::payload::PayloadType::Certificate,
            &json,
            &signer,
        ))
        .unwrap();
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
    // mirror says it is catching up; it has no checkpoint whose tree it stores whole yet.
    let head = m.follow(step(up, 0, 40)).unwrap();
    assert_eq!(head.size, 0);
    assert!(head.checkpoint.is_empty());
    assert_eq!(m.stored_size(), 40);
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
    assert_eq!((m.head().size, m.stored_size()), (0, 50));
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

/// Changes a character of entry `i`'s signed payload (base64).
fn change_entry(st: &mut FollowStep, i: usize) {
    let e = &mut st.entries[i];
    let at = e.windows(10).position(|w| w == b"\"payload\":").unwrap() + 20;
    e[at] = if e[at] == b'A' { b'B' } else { b'A' };
}

#[test]
fn entries_the_checkpoint_does_not_sign_are_refused_and_tried_again() {
    let s = setup();
    // Changed on the way: not the log's doing, so not evidence against it.
    let mut st = step(&s.up, 0, 89);
    change_entry(&mut st, 17);
    let e = refused(&s.mirror, st);
    assert!(
        matches!(
            e,
            MirrorError::NotCovered {
                start: 0,
                end: 89,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_transient());
    // The same ending before the checkpoint, where a consistency proof vouches for them.
    let mut st = step(&s.up, 0, 40);
    change_entry(&mut st, 17);
    assert!(matches!(
        refused(&s.mirror, st),
        MirrorError::NotCovered { .. }
    ));
    // And entries from another ledger under the same log key, with this one's checkpoint.
    let (b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let other = another_ledger(b.path());
    let m = mirror(c.path());
    let mut st = step(&other, 0, 1);
    st.checkpoint = new_ledger(tempfile::tempdir().unwrap().path())
        .head()
        .checkpoint
        .to_string();
    assert!(matches!(refused(&m, st), MirrorError::NotCovered { .. }));
}

#[test]
fn a_signed_entry_that_breaks_the_rules_stops_following_at_its_index() {
    let s = setup();
    // A log that signed a changed entry: its checkpoint covers it, the audit refuses it.
    let mut st = step(&s.up, 0, 89);
    change_entry(&mut st, 17);
    let e = refused(&s.mirror, signed_over(st));
    match &e {
        MirrorError::Entry(AuditError::Entry { index: 17, .. }) => {}
        e => panic!("{e}"),
    }
    assert!(!e.is_transient());
    let mut st = step(&s.up, 0, 89);
    st.entries.swap(30, 31);
    match refused(&s.mirror, signed_over(st)) {
        MirrorError::Entry(AuditError::Entry { index: 30, .. }) => {}
        e => panic!("{e}"),
    }
    let mut st = step(&s.up, 0, 89);
    st.entries.remove(5);
    st.seals.retain(|i, _| *i < 88);
    match refused(&s.mirror, signed_over(st)) {
        MirrorError::Entry(AuditError::Entry { index: 5, .. }) => {}
        e => panic!("{e}"),
    }
}

/// Another ledger under the same log key: its own history, its own signed checkpoints.
fn another_ledger(dir: &Path) -> Ledger {
    Ledger::init(
        dir,
        log_key(),
        &operator(),
        &OperatorDetails {
            display_name: Some("Another operator".into()),
            country: Some("DE".into()),
        },
        LedgerConfig::default(),
    )
    .unwrap()
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
fn a_fork_at_the_same_size_stops_following_with_both_checkpoints() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let up = new_ledger(a.path());
    let other = another_ledger(b.path());
    let m = mirror(c.path());
    m.follow(step(&up, 0, 1)).unwrap();
    let held = m.head().checkpoint.to_string();
    let e = refused(&m, step(&other, 1, 1));
    match &e {
        MirrorError::Fork { size: 1, evidence } => {
            assert_eq!(evidence.held, held);
            assert_eq!(evidence.presented, other.head().checkpoint.to_string());
        }
        e => panic!("{e}"),
    }
    assert!(!e.is_transient());
}

#[test]
fn an_older_checkpoint_or_one_not_proven_to_extend_the_held_one_is_refused() {
    let s = setup();
    let (up, m) = (&s.up, &s.mirror);
    let old = up.head().checkpoint.to_string();
    m.follow(step(up, 0, 89)).unwrap();
    log_more(up, 0, 300);
    // Not proven: no consistency proof from the held checkpoint.
    let mut st = step_for(m, up, 89, 389);
    st.extends.clear();
    let e = refused(m, st);
    assert!(
        matches!(
            e,
            MirrorError::NotProven {
                had: 89,
                now: 389,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_transient() && e.evidence().is_some());
    // A proof that does not verify.
    let mut st = step_for(m, up, 89, 389);
    st.extends[0][0] ^= 1;
    assert!(matches!(refused(m, st), MirrorError::NotProven { .. }));
    // Caught up, then shown the older checkpoint again.
    m.follow(step_for(m, up, 89, 389)).unwrap();
    let mut st = step(up, 389, 389);
    st.checkpoint = old;
    let e = refused(m, st);
    assert!(
        matches!(
            e,
            MirrorError::Rollback {
                had: 389,
                now: 89,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_transient());
}

#[test]
fn a_mirror_catching_up_goes_on_serving_its_head() {
    let s = setup();
    let (up, m) = (&s.up, &s.mirror);
    m.follow(step(up, 0, 89)).unwrap();
    let old_ids = common::certificate_ids(up);
    log_more(up, 0, 600);
    assert_eq!(up.head().size, 689);
    // Two steps of 256 of the 600 new entries: the head stays the checkpoint of 89.
    m.follow(step_for(m, up, 89, 345)).unwrap();
    m.follow(step_for(m, up, 345, 601)).unwrap();
    assert_eq!(m.behind(), Some((601, 689)));
    assert_eq!(m.head().size, 89);
    for id in &old_ids {
        let view = m.certificate(id).unwrap();
        assert_eq!(view.inclusion_proof.tree_size, 89);
        assert_eq!(view.checkpoint, m.head().checkpoint.to_string());
    }
    // What only the checkpoint it catches up to covers is not shown yet.
    let new_ids: Vec<_> = common::certificate_ids(up)
        .into_iter()
        .filter(|id| !old_ids.contains(id))
        .collect();
    assert_eq!(new_ids.len(), 600);
    assert!(matches!(
        m.certificate(&new_ids[0]),
        Err(reman_ledger::query::QueryError::NotYet(_))
    ));
    assert!(m.entry_json(500).is_err());
    // Reopened mid-catch-up, the same; then the last step makes the head the new tree.
    let Setup {
        up,
        mirror: m,
        _dirs,
    } = s;
    m.close().unwrap();
    let m = mirror(_dirs.1.path());
    assert_eq!(m.head().size, 89);
    assert_eq!(m.behind(), Some((601, 689)));
    m.follow(step_for(&m, &up, 601, 689)).unwrap();
    assert_eq!(m.head(), up.head());
    assert_eq!(m.behind(), None);
    for id in &new_ids {
        assert_eq!(
            m.certificate(id).unwrap().seal,
            up.certificate(id).unwrap().seal
        );
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

#[test]
fn a_mirror_caught_mid_catch_up_audits_its_tree_and_checks_the_entries_beyond_it() {
    let s = setup();
    let (up, m) = (&s.up, &s.mirror);
    m.follow(step(up, 0, 89)).unwrap();
    log_more(up, 0, 600);
    m.follow(step_for(m, up, 89, 345)).unwrap();
    assert_eq!(m.behind(), Some((345, 689)));
    let report = audit_store(m.store(), Some(log_key().public()), |_, _| {}).unwrap();
    assert_eq!((report.entries, report.tree_size), (89, 89));
    assert_eq!(
        report.catching_up,
        Some(reman_ledger::audit::CatchingUp {
            entries: 256,
            target_size: 689
        })
    );
    // So does `audit --data` on its directory, once the mirror is closed.
    let dir = s._dirs.1.path().to_owned();
    let Setup { mirror: m, .. } = s;
    m.close().unwrap();
    let audit = |dir: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_reman-ledger"))
            .args(["audit", "--data"])
            .arg(dir)
            .arg("--log-key")
            .arg(common::root().join("keys/log.key.pub"))
            .output()
            .unwrap()
    };
    let o = audit(&dir);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.starts_with("OK: 89 entries"), "{out}");
    assert!(
        out.contains("and 256 more entries this mirror stores while catching up to a tree of 689, each checked"),
        "{out}"
    );
    // An entry beyond the checkpoint changed on disk is found at its index: the tree does
    // not cover it yet, the entry checks do.
    let m = mirror(&dir);
    let mut bytes = m.store().entry(300).unwrap().unwrap().to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    m.store().raw_put_entry(300, &bytes).unwrap();
    let err = audit_store(m.store(), Some(log_key().public()), |_, _| {}).unwrap_err();
    assert_eq!(err.index(), Some(300), "{err}");
    m.close().unwrap();
    let o = audit(&dir);
    assert_eq!(o.status.code(), Some(1));
}

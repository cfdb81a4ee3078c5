//! What a certificate record of layout format 4 keeps for lookups (`state::Known`): whether
//! the certificate has history, and what it supersedes. A lookup trusts these marks instead
//! of scanning and parsing, so each entry that changes them must set them, and records
//! written before (no marks) must still be looked up the long way.

mod common;

use common::*;
use reman_ledger::certificate::CertificateId;
use reman_ledger::keys::PrivateKey;
use reman_ledger::ledger::Ledger;
use reman_ledger::payload::PayloadType;
use reman_ledger::state::{self, CertRecord, Known};
use std::sync::Arc;

const SUZHOU: &str = "suzhou-reman.example";
const HAMBURG: &str = "hamburg-import.example";

fn log(l: &Ledger, kind: PayloadType, json: &str, signer: &PrivateKey) {
    let r = l.submit(&sign(kind, json, signer)).unwrap();
    assert!(r.created);
}

fn log_certificate(l: &Ledger, json: &str) -> CertificateId {
    let r = l
        .submit(&sign(PayloadType::Certificate, json, &key(SUZHOU)))
        .unwrap();
    r.certificate_id.unwrap()
}

fn event(l: &Ledger, id: &CertificateId, event: &str, signer: &str) {
    let json = format!(
        r#"{{"certificate_id":"{id}","event":"{event}","time":"2026-11-25T09:30:00+08:00"}}"#
    );
    log(l, PayloadType::Event, &json, &key(signer));
}

fn revoke(l: &Ledger, id: &CertificateId) {
    let json = format!(r#"{{"certificate_id":"{id}","reason":"recall","note":"bad batch"}}"#);
    log(l, PayloadType::Revocation, &json, &key(SUZHOU));
}

fn record(l: &Ledger, id: &CertificateId) -> CertRecord {
    state::certificate(l.store(), id).unwrap().unwrap()
}

/// The revocation and event entries the store holds for `id`, found by scanning.
fn scanned_history(l: &Ledger, id: &CertificateId) -> usize {
    l.store()
        .scan_state(&state::key::history_prefix(id))
        .unwrap()
        .len()
}

/// Every certificate's lookup shows exactly the history the store holds for it.
fn every_lookup_shows_its_history(l: &Ledger) -> usize {
    let ids = certificate_ids(l);
    let mut with_history = 0;
    for id in &ids {
        let v = l.certificate(id).unwrap();
        let shown = v.events.len() + usize::from(v.revocation.is_some());
        assert_eq!(shown, scanned_history(l, id), "certificate {id}");
        with_history += usize::from(shown > 0);
    }
    with_history
}

#[test]
fn a_new_certificate_says_it_has_no_history_until_an_event_or_a_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let first = log_certificate(&l, &certificate_json(&gtin(9101), "H-1", None));
    let second = log_certificate(&l, &certificate_json(&gtin(9102), "H-2", None));
    for id in [&first, &second] {
        assert_eq!(
            record(&l, id).known,
            Some(Known {
                has_history: false,
                supersedes: None
            })
        );
        let v = l.certificate(id).unwrap();
        assert!(v.events.is_empty() && v.revocation.is_none());
    }

    event(&l, &first, "shipped", SUZHOU);
    assert!(record(&l, &first).known.unwrap().has_history);
    event(&l, &first, "received", HAMBURG);
    let v = l.certificate(&first).unwrap();
    assert_eq!(v.events.len(), 2, "{:?}", v.events);

    revoke(&l, &second);
    assert!(record(&l, &second).known.unwrap().has_history);
    let v = l.certificate(&second).unwrap();
    assert!(v.revocation.is_some() && v.events.is_empty());
    assert_eq!(every_lookup_shows_its_history(&l), 2 + demo_with_history());
}

/// The demo data's certificates with history (its revocations and events).
fn demo_with_history() -> usize {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, _) = demo_ledger(dir.path());
    let n = every_lookup_shows_its_history(&fresh);
    assert!(n > 0, "the demo data has events and revocations");
    n
}

#[test]
fn a_lookup_of_a_certificate_without_history_reads_less_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let quiet = log_certificate(&l, &certificate_json(&gtin(9201), "Q-1", None));
    let busy = log_certificate(&l, &certificate_json(&gtin(9202), "Q-2", None));
    event(&l, &busy, "shipped", SUZHOU);
    let reads = |id: &CertificateId| {
        let before = l.store().reads();
        l.certificate(id).unwrap();
        l.store().reads() - before
    };
    // The one with an event reads its history bucket and the event's entry besides.
    assert_eq!(reads(&busy), reads(&quiet) + 2);
}

#[test]
fn a_superseding_certificate_keeps_what_it_supersedes() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let g = gtin(9301);
    let old = log_certificate(&l, &certificate_json(&g, "S-1", None));
    let new = log_certificate(&l, &certificate_json(&g, "S-1", Some(&old.to_string())));
    assert_eq!(record(&l, &new).known.unwrap().supersedes, Some(old));
    assert_eq!(record(&l, &old).known.unwrap().supersedes, None);
    assert_eq!(l.certificate(&new).unwrap().supersedes, Some(old));
    assert_eq!(l.certificate(&old).unwrap().supersedes, None);
}

/// A store of format 2 (records without marks, written by an earlier version): its
/// certificates' histories are found by scanning, also for events logged after the upgrade,
/// and its certificates that supersede others still say so.
#[test]
fn records_without_marks_are_looked_up_the_long_way() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("fixtures/legacy-store-v2"), dir.path());
    let l = Arc::new(Ledger::open(dir.path(), log_key(), config()).unwrap());
    let ids = certificate_ids(&l);
    assert!(ids.iter().all(|id| record(&l, id).known.is_none()));
    let before = every_lookup_shows_its_history(&l);
    assert!(before > 0, "the legacy store has certificates with history");

    // An event on an old certificate without history: its record stays unmarked (nothing
    // says whether it had history before), and the lookup finds the event.
    let quiet = ids
        .iter()
        .find(|id| {
            scanned_history(&l, id) == 0 && {
                let r = record(&l, id);
                r.issuer == SUZHOU && r.status == state::CertStatus::Valid
            }
        })
        .copied()
        .expect("a valid Suzhou certificate without history in the legacy store");
    event(&l, &quiet, "shipped", SUZHOU);
    assert_eq!(record(&l, &quiet).known, None);
    assert_eq!(l.certificate(&quiet).unwrap().events.len(), 1);
    assert_eq!(every_lookup_shows_its_history(&l), before + 1);

    // Superseding is read from the payload of an unmarked record.
    let superseding: Vec<_> = ids
        .iter()
        .filter_map(|id| record(&l, id).superseded_by.map(|newer| (*id, newer)))
        .collect();
    assert!(
        !superseding.is_empty(),
        "the legacy store has a superseded certificate"
    );
    for (older, newer) in superseding {
        assert_eq!(l.certificate(&newer).unwrap().supersedes, Some(older));
    }
}

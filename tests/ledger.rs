//! The ledger core through its public API, on a real sled directory.

mod common;

use common::*;
use reman_ledger::audit::audit_store;
use reman_ledger::certificate::CertificateId;
use reman_ledger::checkpoint::Checkpoint;
use reman_ledger::dsse::Envelope;
use reman_ledger::keys::PrivateKey;
use reman_ledger::ledger::{Ledger, LedgerConfig, SubmitError};
use reman_ledger::merkle;
use reman_ledger::payload::PayloadType;
use reman_ledger::seal::{self, Seal};
use reman_ledger::state::{self, CertStatus, RefusalKind, RuleError};
use std::sync::Arc;

/// A receipt's checkpoint is the log's, covers the entry, and the proof verifies against it.
fn check_receipt(l: &Ledger, r: &reman_ledger::ledger::Receipt) {
    let cp = Checkpoint::open(&r.checkpoint, l.log_key()).unwrap();
    assert!(
        cp.size > r.index,
        "a head of size {} for entry {}",
        cp.size,
        r.index
    );
    merkle::verify_inclusion(
        &r.leaf_hash,
        r.index,
        cp.size,
        &r.inclusion_proof.proof,
        &cp.root,
    )
    .unwrap();
}

fn status(l: &Ledger, id: &CertificateId) -> CertStatus {
    state::certificate(l.store(), id).unwrap().unwrap().status
}

#[test]
fn demo_data_set_loads_audits_and_has_the_expected_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let (l, report) = demo_ledger(dir.path());
    assert_eq!(report.logged, 88);
    assert_eq!(l.head().size, 89);
    let mut counts = std::collections::HashMap::new();
    for id in report.certificates.values() {
        *counts.entry(status(&l, id)).or_insert(0) += 1;
    }
    assert_eq!(counts.get(&CertStatus::Valid), Some(&33));
    assert_eq!(counts.get(&CertStatus::Superseded), Some(&2));
    assert_eq!(counts.get(&CertStatus::Revoked), Some(&3));
    assert_eq!(
        status(&l, &report.certificates["eng-002"]),
        CertStatus::Superseded
    );
    assert_eq!(
        status(&l, &report.certificates["alt-003"]),
        CertStatus::Revoked
    );
    let audit = audit_store(l.store(), Some(l.log_key()), |_, _| {}).unwrap();
    assert_eq!(audit.tree_size, 89);
    assert_eq!(audit.by_type["certificate"], 38);
    // Loading the same data again logs nothing new.
    let again = reman_ledger::demo::load(&l, &demo_jsonl(), &demo_keys()).unwrap();
    assert_eq!((again.logged, again.existing), (0, 88));
    assert_eq!(l.head().size, 89);
}

#[test]
fn a_receipt_carries_a_verifiable_entry_checkpoint_proof_and_seal() {
    let dir = tempfile::tempdir().unwrap();
    let l = new_ledger(dir.path());
    let (g, serial) = (gtin(77), "RM-2026/0001");
    let r = l
        .submit(&party_json_env("suzhou-reman.example", "remanufacturer"))
        .unwrap();
    assert!(r.created);
    let body = sign(
        PayloadType::Certificate,
        &certificate_json(&g, serial, None),
        &key("suzhou-reman.example"),
    );
    let r = l.submit(&body).unwrap();
    assert!(r.created);
    assert_eq!(r.index, 2);
    let entry = l.store().entry(2).unwrap().unwrap();
    assert_eq!(r.leaf_hash, merkle::leaf_hash(&entry));
    let cp = Checkpoint::open(&r.checkpoint, l.log_key()).unwrap();
    assert_eq!((cp.size, cp.root), (3, r.inclusion_proof.root));
    assert_eq!(r.inclusion_proof.tree_size, 3);
    merkle::verify_inclusion(&r.leaf_hash, 2, 3, &r.inclusion_proof.proof, &cp.root).unwrap();
    let id = r.certificate_id.unwrap();
    assert_eq!(
        id,
        CertificateId::of_payload(certificate_json(&g, serial, None).as_bytes())
    );
    let seal = Seal::from_base64url(r.seal.as_deref().unwrap()).unwrap();
    seal.verify(l.log_key(), l.origin(), &g, serial).unwrap();
    assert_eq!((seal.index, seal.certificate_id), (2, id.0));
    let link = seal::parse_digital_link(r.qr_url.as_deref().unwrap()).unwrap();
    assert_eq!(
        (link.gtin.as_str(), link.serial.as_str()),
        (g.as_str(), serial)
    );
    assert_eq!(link.base_url, "https://ledger.example");
    assert_eq!(link.seal.unwrap(), seal);
    // The chain: entry 2's prev is entry 1's leaf hash.
    let e2: serde_json::Value = serde_json::from_slice(&entry).unwrap();
    let e1 = l.store().entry(1).unwrap().unwrap();
    assert_eq!(e2["prev"], hex::encode(merkle::leaf_hash(&e1)));
}

fn party_json_env(name: &str, role: &str) -> Vec<u8> {
    party_env_for(&key(name), role)
}

/// A party registration of `k`'s name and key, signed by the operator.
fn party_env_for(k: &PrivateKey, role: &str) -> Vec<u8> {
    let name = k.name();
    let json = format!(
        r#"{{"name":"{name}","role":"{role}","display_name":"Test party","country":"CN","key":"{}","status":"active"}}"#,
        k.public().to_vkey()
    );
    sign(PayloadType::Party, &json, &operator())
}

#[test]
fn resubmitting_an_envelope_returns_the_original_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let body = sign(
        PayloadType::Certificate,
        &certificate_json(&gtin(5), "X-1", None),
        &key("suzhou-reman.example"),
    );
    let first = l.submit(&body).unwrap();
    let before = snapshot(&l);
    // The same envelope, spelled with other whitespace, is the same envelope.
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let pretty = serde_json::to_vec_pretty(&v).unwrap();
    for b in [body.clone(), pretty] {
        let again = l.submit(&b).unwrap();
        assert!(!again.created);
        assert_eq!(again.index, first.index);
        assert_eq!(again.leaf_hash, first.leaf_hash);
        assert_eq!(again.integrated_time, first.integrated_time);
        assert_eq!(again.seal, first.seal);
        assert_eq!(again.certificate_id, first.certificate_id);
    }
    assert_eq!(snapshot(&l), before);
}

#[test]
fn resubmitting_after_the_signer_was_suspended_still_returns_the_original_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let signer = key("texas-reman.example");
    let body = sign(
        PayloadType::Certificate,
        &certificate_json(&gtin(6), "S-1", None),
        &signer,
    );
    let first = l.submit(&body).unwrap();
    let json = format!(
        r#"{{"name":"texas-reman.example","role":"remanufacturer","country":"US","key":"{}","status":"suspended"}}"#,
        signer.public().to_vkey()
    );
    l.submit(&sign(PayloadType::Party, &json, &operator()))
        .unwrap();
    let before = snapshot(&l);
    // The entry was logged while its signer was in force: it is answered, not refused.
    let again = l.submit(&body).unwrap();
    assert!(!again.created);
    assert_eq!(
        (again.index, again.leaf_hash, again.seal.clone()),
        (first.index, first.leaf_hash, first.seal.clone())
    );
    assert_eq!(snapshot(&l), before);
    // A new certificate of the suspended signer is refused.
    let e = l
        .submit(&sign(
            PayloadType::Certificate,
            &certificate_json(&gtin(6), "S-2", None),
            &signer,
        ))
        .unwrap_err();
    assert!(
        matches!(e, SubmitError::Rule(RuleError::Suspended(_))),
        "{e}"
    );
    assert_eq!(snapshot(&l), before);
}

#[test]
fn reopening_gives_the_same_root_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let head = l.head();
    l.close().unwrap();
    let l = Ledger::open(dir.path(), log_key(), config()).unwrap();
    let again = l.head();
    assert_eq!((again.size, again.root), (head.size, head.root));
    assert_eq!(again.checkpoint, head.checkpoint);
    // It goes on appending where it stopped, on the same chain.
    let r = l
        .submit(&sign(
            PayloadType::Certificate,
            &certificate_json(&gtin(9), "AFTER-REOPEN", None),
            &key("rhein-reman.example"),
        ))
        .unwrap();
    assert_eq!(r.index, head.size);
    audit_store(l.store(), None, |_, _| {}).unwrap();
}

#[test]
fn opening_with_another_log_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    new_ledger(dir.path()).close().unwrap();
    let other = PrivateKey::generate("other.example/log").unwrap();
    assert!(matches!(
        Ledger::open(dir.path(), other, config()),
        Err(reman_ledger::ledger::LedgerError::WrongLogKey { .. })
    ));
}

#[test]
fn sixty_four_concurrent_submitters_get_distinct_indices_and_valid_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let l = Arc::new(l);
    let signers = [
        "suzhou-reman.example",
        "rhein-reman.example",
        "texas-reman.example",
        "kyoto-imaging.example",
    ];
    let bodies: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            sign(
                PayloadType::Certificate,
                &certificate_json(&gtin(1000 + i), &format!("C-{i}"), None),
                &key(signers[i as usize % 4]),
            )
        })
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(64));
    let handles: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let (l, barrier) = (l.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                l.submit(&b).unwrap()
            })
        })
        .collect();
    let receipts: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut indices: Vec<u64> = receipts.iter().map(|r| r.index).collect();
    indices.sort();
    assert_eq!(indices, (89..153).collect::<Vec<_>>());
    for r in &receipts {
        check_receipt(&l, r);
    }
    assert_eq!(l.head().size, 153);
    audit_store(l.store(), None, |_, _| {}).unwrap();
}

/// Duplicates race their originals into the same and the next group commits: each envelope
/// is logged once, and every answer, new or "already logged", carries a checkpoint that covers
/// its entry and a proof that verifies against it (an answer sent before its batch's head is
/// published would fail here).
#[test]
fn the_same_envelope_from_many_threads_at_once_is_logged_once_and_every_answer_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let l = Arc::new(l);
    let k = key("rhein-reman.example");
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..48)
            .map(|i| {
                sign(
                    PayloadType::Certificate,
                    &certificate_json(&gtin(7000 + i), &format!("DUP-{i}"), None),
                    &k,
                )
            })
            .collect(),
    );
    let threads = 8;
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (l, bodies, barrier) = (l.clone(), bodies.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                // Two groups of four threads walk the envelopes from two offsets: each
                // envelope is submitted by four threads at once, then by four more later.
                (0..bodies.len())
                    .map(|i| {
                        let n = (i + (t % 2) * 24) % bodies.len();
                        (n, l.submit(&bodies[n]).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut by_envelope: std::collections::HashMap<usize, Vec<_>> = Default::default();
    for h in handles {
        for (n, r) in h.join().unwrap() {
            by_envelope.entry(n).or_default().push(r);
        }
    }
    assert_eq!(by_envelope.len(), 48);
    for (n, receipts) in &by_envelope {
        assert_eq!(receipts.len(), threads);
        let created = receipts.iter().filter(|r| r.created).count();
        assert_eq!(created, 1, "envelope {n} was logged {created} times");
        for r in receipts {
            assert_eq!(r.index, receipts[0].index);
            check_receipt(&l, r);
        }
    }
    assert_eq!(l.head().size, 89 + 48);
    audit_store(l.store(), None, |_, _| {}).unwrap();
}

#[test]
fn a_lone_submission_does_not_wait_for_the_linger() {
    let dir = tempfile::tempdir().unwrap();
    let l = new_ledger_with(
        dir.path(),
        LedgerConfig {
            linger: std::time::Duration::from_secs(30),
            ..config()
        },
    );
    for i in 0..3 {
        let k = PrivateKey::generate(&format!("lone-{i}.example")).unwrap();
        let body = party_env_for(&k, "importer");
        let start = std::time::Instant::now();
        l.submit(&body).unwrap();
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }
    assert_eq!(l.head().size, 4);
}

#[test]
fn concurrent_submitters_share_group_commits_while_others_are_being_checked() {
    let dir = tempfile::tempdir().unwrap();
    let l = Arc::new(new_ledger_with(
        dir.path(),
        LedgerConfig {
            linger: std::time::Duration::from_millis(300),
            ..config()
        },
    ));
    let before = l.stats().batch_size.count();
    let bodies: Vec<Vec<u8>> = (0..16)
        .map(|i| {
            let k = PrivateKey::generate(&format!("group-{i}.example")).unwrap();
            party_env_for(&k, "importer")
        })
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(bodies.len()));
    let handles: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let (l, barrier) = (l.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                l.submit(&b).unwrap().index
            })
        })
        .collect();
    let mut indices: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    indices.sort();
    assert_eq!(indices, (1..17).collect::<Vec<_>>());
    let batches = l.stats().batch_size.count() - before;
    assert!(
        batches < 16,
        "16 concurrent submissions took {batches} commits"
    );
    audit_store(l.store(), None, |_, _| {}).unwrap();
}

/// Logs a certificate payload signed by `k`; its certificate ID.
fn log_certificate(l: &Ledger, json: &str, k: &PrivateKey) -> CertificateId {
    let r = l.submit(&sign(PayloadType::Certificate, json, k)).unwrap();
    assert!(r.created);
    r.certificate_id.unwrap()
}

#[test]
fn superseding_by_the_same_issuer_marks_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let k = key("texas-reman.example");
    let g = gtin(4242);
    let old = log_certificate(&l, &certificate_json(&g, "S/1", None), &k);
    let new = log_certificate(&l, &certificate_json(&g, "S/1", Some(&old.to_string())), &k);
    assert_eq!(status(&l, &old), CertStatus::Superseded);
    assert_eq!(status(&l, &new), CertStatus::Valid);
    assert_eq!(state::unit_valid(l.store(), &g, "S/1").unwrap(), Some(new));
    let (old_view, new_view) = (l.certificate(&old).unwrap(), l.certificate(&new).unwrap());
    assert_eq!(
        (old_view.supersedes, old_view.superseded_by),
        (None, Some(new))
    );
    assert_eq!(
        (new_view.supersedes, new_view.superseded_by),
        (Some(old), None)
    );
}

/// A lookup embeds the certificate exactly as its issuer signed it, spacing and escapes
/// included, and still reads the fields it shows beside it (here `supersedes`, escaped).
#[test]
fn a_lookup_shows_the_certificate_byte_for_byte_as_signed() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let k = key("texas-reman.example");
    let g = gtin(4343);
    let old = log_certificate(&l, &certificate_json(&g, "B/1", None), &k);
    let hex = old.to_string();
    // The first hex digit written as a \u escape: the same string to a JSON reader.
    let escaped = format!("\\u00{:02x}{}", hex.as_bytes()[0], &hex[1..]);
    let text = certificate_json(&g, "B/1", Some(&escaped))
        .replace("{\"product\":{", "{\n  \"product\" : {")
        .replace("diesel engine", "diesel engine \\u00e9");
    let new = log_certificate(&l, &text, &k);
    let view = l.certificate(&new).unwrap();
    assert_eq!(view.certificate.get(), text);
    assert_eq!(view.supersedes, Some(old));
    let json = serde_json::to_string(&view).unwrap();
    assert!(json.contains(&format!("\"certificate\":{text}")), "{json}");
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        parsed["certificate"]["product"]["name"],
        "Remanufactured 2.0 L diesel engine \u{e9}"
    );
}

#[test]
fn after_a_revocation_the_unit_can_be_certified_again() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let k = key("kyoto-imaging.example");
    let g = gtin(31);
    let id = l
        .submit(&sign(
            PayloadType::Certificate,
            &certificate_json(&g, "K1", None),
            &k,
        ))
        .unwrap()
        .certificate_id
        .unwrap();
    l.submit(&sign(
        PayloadType::Revocation,
        &format!(r#"{{"certificate_id":"{id}","reason":"error","note":"wrong serial"}}"#),
        &k,
    ))
    .unwrap();
    assert_eq!(status(&l, &id), CertStatus::Revoked);
    assert_eq!(state::unit_valid(l.store(), &g, "K1").unwrap(), None);
    let mut again = certificate_json(&g, "K1", None);
    again = again.replace("\"warranty_months\":24", "\"warranty_months\":36");
    l.submit(&sign(PayloadType::Certificate, &again, &k))
        .unwrap();
}

#[test]
fn a_rotated_key_can_no_longer_sign_but_its_entries_stay_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let new_key = PrivateKey::generate("suzhou-reman.example").unwrap();
    let json = format!(
        r#"{{"name":"suzhou-reman.example","role":"remanufacturer","country":"CN","key":"{}","status":"active"}}"#,
        new_key.public().to_vkey()
    );
    l.submit(&sign(PayloadType::Party, &json, &operator()))
        .unwrap();
    let before = snapshot(&l);
    let old = key("suzhou-reman.example");
    let err = l
        .submit(&sign(
            PayloadType::Certificate,
            &certificate_json(&gtin(55), "R-1", None),
            &old,
        ))
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::Rule(RuleError::NotCurrentKey { .. })),
        "{err}"
    );
    assert_eq!(err.kind().status(), 401);
    assert_eq!(snapshot(&l), before);
    l.submit(&sign(
        PayloadType::Certificate,
        &certificate_json(&gtin(55), "R-1", None),
        &new_key,
    ))
    .unwrap();
    audit_store(l.store(), None, |_, _| {}).unwrap();
}

/// Submits `body` to a demo ledger (after `setup`) and checks the refusal and that nothing
/// at all was written.
fn refused(setup: impl Fn(&Ledger), body: impl Fn() -> Vec<u8>) -> SubmitError {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    setup(&l);
    let before = snapshot(&l);
    let head = l.head();
    let err = l.submit(&body()).unwrap_err();
    assert_eq!(snapshot(&l), before, "a refused submission wrote something");
    let after = l.head();
    assert_eq!((after.size, after.root), (head.size, head.root));
    err
}

fn demo_cert_id(label: &str) -> CertificateId {
    let envs = reman_ledger::demo::envelopes(&demo_jsonl(), &demo_keys()).unwrap();
    let (_, env) = envs.iter().find(|(l, _)| l == label).unwrap();
    CertificateId::of_payload(&env.payload)
}

#[test]
fn refuses_a_body_over_the_size_limit() {
    let e = refused(|_| {}, || vec![b' '; 70_000]);
    assert!(matches!(e, SubmitError::TooLarge(70_000)));
    assert_eq!(e.kind(), RefusalKind::TooLarge);
}

#[test]
fn refuses_a_malformed_envelope() {
    let e = refused(|_| {}, || b"{\"payloadType\":".to_vec());
    assert!(matches!(e, SubmitError::Envelope(_)));
    assert_eq!(e.kind().status(), 400);
}

#[test]
fn refuses_an_unknown_payload_type() {
    let e = refused(
        |_| {},
        || {
            Envelope::sign(
                "application/x-unknown",
                b"{}".to_vec(),
                &key("suzhou-reman.example"),
            )
            .unwrap()
            .to_json()
            .into_bytes()
        },
    );
    assert!(matches!(e, SubmitError::Payload(_)));
    assert_eq!(e.kind().status(), 400);
}

#[test]
fn refuses_a_certificate_with_a_failed_test() {
    let e = refused(
        |_| {},
        || {
            let json = certificate_json(&gtin(1), "F-1", None).replace("\"pass\"", "\"fail\"");
            sign(
                PayloadType::Certificate,
                &json,
                &key("suzhou-reman.example"),
            )
        },
    );
    assert!(matches!(e, SubmitError::Payload(_)), "{e}");
    assert_eq!(e.kind().status(), 422);
}

#[test]
fn refuses_a_certificate_with_an_unknown_field() {
    let e = refused(
        |_| {},
        || {
            let json = certificate_json(&gtin(1), "F-1", None).replace(
                "\"warranty_months\"",
                "\"colour\":\"red\",\"warranty_months\"",
            );
            sign(
                PayloadType::Certificate,
                &json,
                &key("suzhou-reman.example"),
            )
        },
    );
    assert!(e.to_string().contains("colour"), "{e}");
    assert_eq!(e.kind().status(), 422);
}

#[test]
fn refuses_a_certificate_with_a_bad_gtin_check_digit() {
    let e = refused(
        |_| {},
        || {
            let mut g = gtin(1);
            let last = (g.pop().unwrap() as u8 - b'0' + 1) % 10;
            g.push((b'0' + last) as char);
            sign(
                PayloadType::Certificate,
                &certificate_json(&g, "F-1", None),
                &key("suzhou-reman.example"),
            )
        },
    );
    assert_eq!(e.kind().status(), 422, "{e}");
}

#[test]
fn refuses_an_unknown_signer() {
    let e = refused(
        |_| {},
        || {
            let stranger = PrivateKey::generate("stranger.example").unwrap();
            sign(
                PayloadType::Certificate,
                &certificate_json(&gtin(1), "U-1", None),
                &stranger,
            )
        },
    );
    assert!(
        matches!(e, SubmitError::Rule(RuleError::UnknownSigner(_))),
        "{e}"
    );
    assert_eq!(e.kind().status(), 401);
}

#[test]
fn refuses_a_bad_signature() {
    let e = refused(
        |_| {},
        || {
            let k = key("suzhou-reman.example");
            let mut env = Envelope::sign(
                PayloadType::Certificate.media_type(),
                certificate_json(&gtin(1), "B-1", None).into_bytes(),
                &k,
            )
            .unwrap();
            env.payload = certificate_json(&gtin(2), "B-1", None).into_bytes();
            env.to_json().into_bytes()
        },
    );
    assert!(matches!(e, SubmitError::BadSignature(_)), "{e}");
    assert_eq!(e.kind().status(), 401);
}

#[test]
fn refuses_a_certificate_signed_by_customs() {
    let e = refused(
        |_| {},
        || {
            sign(
                PayloadType::Certificate,
                &certificate_json(&gtin(1), "R-1", None),
                &key("customs-shanghai.example"),
            )
        },
    );
    assert!(
        matches!(e, SubmitError::Rule(RuleError::RoleNotAllowed { .. })),
        "{e}"
    );
    assert_eq!(e.kind().status(), 403);
}

#[test]
fn refuses_a_party_registration_not_signed_by_the_operator() {
    let e = refused(
        |_| {},
        || {
            let k = PrivateKey::generate("rogue.example").unwrap();
            let json = format!(
                r#"{{"name":"rogue.example","role":"remanufacturer","country":"CN","key":"{}","status":"active"}}"#,
                k.public().to_vkey()
            );
            sign(PayloadType::Party, &json, &key("suzhou-reman.example"))
        },
    );
    assert!(
        matches!(e, SubmitError::Rule(RuleError::RoleNotAllowed { .. })),
        "{e}"
    );
    assert_eq!(e.kind().status(), 403);
}

#[test]
fn refuses_an_event_by_a_role_the_event_table_does_not_allow() {
    let id = demo_cert_id("eng-001");
    let e = refused(
        |_| {},
        move || {
            let json = format!(
                r#"{{"certificate_id":"{id}","event":"customs_released","time":"2026-11-25T09:30:00+08:00"}}"#
            );
            sign(PayloadType::Event, &json, &key("hamburg-import.example"))
        },
    );
    assert!(
        matches!(e, SubmitError::Rule(RuleError::RoleNotAllowed { .. })),
        "{e}"
    );
    assert_eq!(e.kind().status(), 403);
}

#[test]
fn refuses_a_suspended_party() {
    let e = refused(
        |l| {
            let k = key("texas-reman.example");
            let json = format!(
                r#"{{"name":"texas-reman.example","role":"remanufacturer","country":"US","key":"{}","status":"suspended"}}"#,
                k.public().to_vkey()
            );
            l.submit(&sign(PayloadType::Party, &json, &operator()))
                .unwrap();
        },
        || {
            sign(
                PayloadType::Certificate,
                &certificate_json(&gtin(1), "T-1", None),
                &key("texas-reman.example"),
            )
        },
    );
    assert!(
        matches!(e, SubmitError::Rule(RuleError::Suspended(_))),
        "{e}"
    );
    assert_eq!(e.kind().status(), 403);
}

#[test]
fn refuses_a_second_valid_certificate_for_a_unit() {
    let e = refused(
        |_| {},
        || {
            // eng-001 of the demo data: same unit, no supersedes.
            let json = certificate_json("09506001200513", "SZ-2026/000871", None);
            sign(
                PayloadType::Certificate,
                &json,
                &key("suzhou-reman.example"),
            )
        },
    );
    assert!(
        matches!(
            e,
            SubmitError::Rule(RuleError::UnitHasValidCertificate { .. })
        ),
        "{e}"
    );
    assert_eq!(e.kind().status(), 409);
}

#[test]
fn refuses_a_supersession_by_another_issuer() {
    let id = demo_cert_id("eng-001");
    let e = refused(
        |_| {},
        move || {
            let json = certificate_json("09506001200513", "SZ-2026/000871", Some(&id.to_string()));
            sign(PayloadType::Certificate, &json, &key("rhein-reman.example"))
        },
    );
    assert!(
        matches!(e, SubmitError::Rule(RuleError::BadSupersede { .. })),
        "{e}"
    );
    assert_eq!(e.kind().status(), 409);
}

#[test]
fn refuses_a_supersession_of_a_certificate_that_is_not_the_valid_one() {
    let old = demo_cert_id("eng-002");
    let e = refused(
        |_| {},
        move || {
            let json = certificate_json(&gtin(1), "N-1", Some(&old.to_string()));
            sign(
                PayloadType::Certificate,
                &json,
                &key("suzhou-reman.example"),
            )
        },
    );
    assert!(
        matches!(e, SubmitError::Rule(RuleError::BadSupersede { .. })),
        "{e}"
    );
    assert_eq!(e.kind().status(), 409);
}

#[test]
fn refuses_a_revocation_by_another_remanufacturer() {
    let id = demo_cert_id("eng-001");
    let e = refused(
        |_| {},
        move || {
            let json = format!(r#"{{"certificate_id":"{id}","reason":"fraud","note":"x"}}"#);
            sign(PayloadType::Revocation, &json, &key("rhein-reman.example"))
        },
    );
    assert!(
        matches!(e, SubmitError::Rule(RuleError::NotIssuer { .. })),
        "{e}"
    );
    assert_eq!(e.kind().status(), 403);
}

#[test]
fn refuses_a_second_revocation() {
    let id = demo_cert_id("alt-003");
    let e = refused(
        |_| {},
        move || {
            let json = format!(r#"{{"certificate_id":"{id}","reason":"other","note":"again"}}"#);
            sign(PayloadType::Revocation, &json, &operator())
        },
    );
    assert!(matches!(e, SubmitError::Rule(RuleError::Revoked(_))), "{e}");
    assert_eq!(e.kind().status(), 409);
}

#[test]
fn refuses_an_event_on_a_revoked_certificate() {
    let id = demo_cert_id("alt-003");
    let e = refused(
        |_| {},
        move || {
            let json = format!(
                r#"{{"certificate_id":"{id}","event":"received","time":"2026-11-27T10:00:00+01:00"}}"#
            );
            sign(PayloadType::Event, &json, &key("hamburg-import.example"))
        },
    );
    assert!(matches!(e, SubmitError::Rule(RuleError::Revoked(_))), "{e}");
    assert_eq!(e.kind().status(), 409);
}

#[test]
fn refuses_an_event_on_an_unknown_certificate() {
    let e = refused(
        |_| {},
        || {
            let json = r#"{"certificate_id":"00112233445566778899aabbccddeeff","event":"received","time":"2026-11-27T10:00:00+01:00"}"#;
            sign(PayloadType::Event, json, &key("hamburg-import.example"))
        },
    );
    assert!(
        matches!(e, SubmitError::Rule(RuleError::UnknownCertificate(_))),
        "{e}"
    );
    assert_eq!(e.kind().status(), 404);
}

#[test]
fn a_certificate_view_has_status_history_issuer_and_a_proof() {
    let dir = tempfile::tempdir().unwrap();
    let (l, report) = demo_ledger(dir.path());
    let id = report.certificates["alt-003"];
    let v = l.certificate(&id).unwrap();
    assert_eq!(v.status, CertStatus::Revoked);
    assert_eq!(v.issuer.name, "texas-reman.example");
    assert_eq!(v.issuer.country.as_deref(), Some("US"));
    assert_eq!(v.events.len(), 4);
    let rev = v.revocation.as_ref().unwrap();
    assert_eq!(rev.body["revocation"]["reason"], "recall");
    let json = serde_json::to_value(&v).unwrap();
    for field in [
        "certificate_id",
        "status",
        "certificate",
        "issuer",
        "index",
        "integrated_time",
        "seal",
        "qr_url",
        "events",
        "revocation",
        "inclusion_proof",
        "checkpoint",
    ] {
        assert!(json.get(field).is_some(), "missing {field}");
    }
    assert_eq!(json["status"], "revoked");
    assert_eq!(json["events"][0]["event"]["event"], "shipped");
    let cp = Checkpoint::open(&v.checkpoint, l.log_key()).unwrap();
    let leaf = merkle::leaf_hash(&l.store().entry(v.index).unwrap().unwrap());
    merkle::verify_inclusion(&leaf, v.index, cp.size, &v.inclusion_proof.proof, &cp.root).unwrap();
    let seal = Seal::from_base64url(&v.seal).unwrap();
    seal.verify(l.log_key(), l.origin(), &v.gtin, &v.serial)
        .unwrap();

    // The superseded unit lists both certificates, newest first.
    let old = report.certificates["eng-002"];
    let new = report.certificates["eng-002-r1"];
    let ov = l.certificate(&old).unwrap();
    assert_eq!(ov.superseded_by, Some(new));
    let all = l.product(&ov.gtin, &ov.serial).unwrap();
    let ids: Vec<_> = all.iter().map(|c| c.certificate_id).collect();
    assert_eq!(ids, vec![new, old]);
    assert!(matches!(
        l.certificate(&CertificateId([7; 16])),
        Err(reman_ledger::query::QueryError::NotFound(_))
    ));
    assert_eq!(l.parties().unwrap().len(), 9);
}

#[test]
fn the_readme_tour_payloads_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let read = |f: &str| std::fs::read_to_string(root().join("fixtures/examples").join(f)).unwrap();
    let k = key("suzhou-reman.example");
    let r = l
        .submit(&sign(
            PayloadType::Certificate,
            &read("certificate.json"),
            &k,
        ))
        .unwrap();
    let id = r.certificate_id.unwrap().to_string();
    let event = read("event.json").replace("CERTIFICATE_ID", &id);
    l.submit(&sign(PayloadType::Event, &event, &k)).unwrap();
    let revocation = read("revocation.json").replace("CERTIFICATE_ID", &id);
    l.submit(&sign(PayloadType::Revocation, &revocation, &k))
        .unwrap();
    assert_eq!(status(&l, &r.certificate_id.unwrap()), CertStatus::Revoked);
}

/// A ledger where suzhou-reman.example may sign certificates.
fn ledger_with_suzhou() -> (tempfile::TempDir, Arc<Ledger>) {
    let dir = tempfile::tempdir().unwrap();
    let l = Arc::new(new_ledger(dir.path()));
    l.submit(&party_json_env("suzhou-reman.example", "remanufacturer"))
        .unwrap();
    (dir, l)
}

/// Submits `change` while another thread keeps looking at the ledger with `look`, which is
/// told whether the submitter had been answered before it looked and returns what it found
/// wrong. Returns the receipt and every complaint.
fn look_while_submitting(
    l: &Arc<Ledger>,
    change: &[u8],
    look: impl Fn(&Ledger, bool) -> Vec<String> + Send + 'static,
) -> (reman_ledger::ledger::Receipt, Vec<String>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (l, done) = (l.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            loop {
                // Read first: when set, the submitter was answered before this look.
                let answered = done.load(Ordering::SeqCst);
                seen.extend(look(&l, answered));
                if answered {
                    break seen;
                }
            }
        })
    };
    let receipt = l.submit(change).unwrap();
    done.store(true, Ordering::SeqCst);
    (receipt, watcher.join().unwrap())
}

/// A certificate whose group commit is written but not yet published is not found (404 over
/// HTTP), and once its submitter is answered it is found with a proof: it is never an internal
/// error (found in review: its record was readable during the flush, before the checkpoint
/// covered it, and the proof against that checkpoint failed).
#[test]
fn a_certificate_being_committed_is_not_found_or_found_never_an_error() {
    use reman_ledger::query::QueryError;
    let (_dir, l) = ledger_with_suzhou();
    let signer = key("suzhou-reman.example");
    let mut errors: Vec<String> = Vec::new();
    for i in 0..60 {
        let payload = certificate_json(&gtin(i), "RM-1", None);
        let id = CertificateId::of_payload(payload.as_bytes());
        let env = sign(PayloadType::Certificate, &payload, &signer);
        let (_, seen) = look_while_submitting(&l, &env, move |l, answered| {
            let cert = l.certificate(&id).map(|_| ());
            let unit = l.product(&gtin(i), "RM-1").map(|_| ());
            [cert, unit]
                .into_iter()
                .filter_map(|r| match r {
                    Ok(()) => None,
                    Err(QueryError::NotFound(_)) if !answered => None,
                    Err(e) => Some(format!("answered {answered}: {e}")),
                })
                .collect()
        });
        errors.extend(seen);
    }
    assert!(
        errors.is_empty(),
        "{} errors, first: {}",
        errors.len(),
        errors[0]
    );
}

/// While a revocation or a superseding certificate is written but not yet published, a lookup
/// of the certificate it changes shows it as before; from its publication on, as after. The
/// status, the history and the successor always agree with the checkpoint of the same answer
/// (found in review: a lookup showed "revoked", citing an entry its checkpoint did not cover,
/// that a crash before the flush would have undone).
#[test]
fn a_lookup_shows_a_revocation_or_supersession_only_with_the_checkpoint_that_covers_it() {
    let (_dir, l) = ledger_with_suzhou();
    let k = key("suzhou-reman.example");
    let mut wrong: Vec<String> = Vec::new();
    for i in 0..40 {
        let first = certificate_json(&gtin(i), "RM-1", None);
        let id = log_certificate(&l, &first, &k);
        // Even rounds revoke it, odd rounds supersede it.
        let (change, next) = if i % 2 == 0 {
            let json =
                format!(r#"{{"certificate_id":"{id}","reason":"recall","note":"round {i}"}}"#);
            (sign(PayloadType::Revocation, &json, &k), None)
        } else {
            let json = certificate_json(&gtin(i), "RM-1", Some(&id.to_string()))
                .replace("\"warranty_months\":24", "\"warranty_months\":36");
            let next = CertificateId::of_payload(json.as_bytes());
            (sign(PayloadType::Certificate, &json, &k), Some(next))
        };
        let (receipt, seen) = look_while_submitting(&l, &change, move |l, answered| {
            let v = match l.certificate(&id) {
                Ok(v) => v,
                Err(e) => return vec![e.to_string()],
            };
            let size = v.inclusion_proof.tree_size;
            let changed = match (&v.revocation, v.superseded_by) {
                (Some(r), None) if v.status == CertStatus::Revoked && r.index < size => true,
                // Its successor is covered by a checkpoint at least as new.
                (None, Some(n))
                    if v.status == CertStatus::Superseded && l.certificate(&n).is_ok() =>
                {
                    true
                }
                (None, None) if v.status == CertStatus::Valid => false,
                _ => {
                    return vec![format!(
                        "status {:?}, revocation {:?}, superseded_by {:?}, tree size {size}",
                        v.status,
                        v.revocation.as_ref().map(|r| r.index),
                        v.superseded_by
                    )];
                }
            };
            if answered && !changed {
                return vec!["unchanged after its submitter was answered".into()];
            }
            Vec::new()
        });
        assert_eq!(receipt.certificate_id, next);
        wrong.extend(seen);
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers, first: {}",
        wrong.len(),
        wrong[0]
    );
}

/// A party's registration is answered as of the checkpoint: while its new registration is
/// written but not yet published, `party` and `parties` show the one before; once its
/// submitter is answered, the new one. Never an index the checkpoint does not cover.
#[test]
fn a_party_lookup_shows_a_new_registration_only_once_the_checkpoint_covers_it() {
    let (_dir, l) = ledger_with_suzhou();
    let k = key("suzhou-reman.example");
    let mut wrong: Vec<String> = Vec::new();
    for i in 0..40 {
        let json = format!(
            r#"{{"name":"suzhou-reman.example","role":"remanufacturer","display_name":"Suzhou {i}","country":"CN","key":"{}","status":"active"}}"#,
            k.public().to_vkey()
        );
        let change = sign(PayloadType::Party, &json, &operator());
        let (receipt, seen) = look_while_submitting(&l, &change, move |l, answered| {
            let one = l.party("suzhou-reman.example").unwrap();
            let all = l.parties().unwrap();
            let listed = all
                .iter()
                .find(|p| p["name"] == "suzhou-reman.example")
                .cloned()
                .unwrap_or_default();
            // The head only grows: what it covers now, it covered when the answer was made.
            let size = l.head().size;
            let mut out = Vec::new();
            for (what, p) in [("party", &one), ("parties", &listed)] {
                let index = p["index"].as_u64().unwrap_or(u64::MAX);
                if index >= size {
                    out.push(format!("{what}: index {index} beyond tree size {size}"));
                }
                if answered && p["display_name"] != format!("Suzhou {i}") {
                    out.push(format!("{what}: still {} once answered", p["display_name"]));
                }
            }
            out
        });
        assert_eq!(receipt.certificate_id, None);
        wrong.extend(seen);
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers, first: {}",
        wrong.len(),
        wrong[0]
    );
}

/// A party registration of the demo operator's own name and key, signed by `signer`.
fn operator_registration(role: &str, status: &str, signer: &PrivateKey) -> Vec<u8> {
    let op = operator();
    let json = format!(
        r#"{{"name":"{}","role":"{role}","country":"CN","key":"{}","status":"{status}"}}"#,
        op.name(),
        op.public().to_vkey()
    );
    sign(PayloadType::Party, &json, signer)
}

#[test]
fn refuses_an_operator_demoting_or_suspending_itself() {
    for (role, status) in [("customs", "active"), ("operator", "suspended")] {
        let e = refused(|_| {}, || operator_registration(role, status, &operator()));
        assert!(
            matches!(e, SubmitError::Rule(RuleError::OperatorDemotesItself(_))),
            "{role}/{status}: {e}"
        );
        assert_eq!(e.kind().status(), 403);
        assert!(e.to_string().contains("another operator"), "{e}");
    }
}

#[test]
fn another_operator_may_suspend_an_operator_and_the_log_still_audits() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let second = PrivateKey::generate("second-operator.example").unwrap();
    assert!(
        l.submit(&party_env_for(&second, "operator"))
            .unwrap()
            .created
    );
    // The first operator re-registers itself (same role, same key): allowed.
    assert!(
        l.submit(&operator_registration("operator", "active", &operator()))
            .unwrap()
            .created
    );
    let r = l
        .submit(&operator_registration("operator", "suspended", &second))
        .unwrap();
    assert!(r.created);
    let e = l
        .submit(&party_json_env("hamburg-import.example", "importer"))
        .unwrap_err();
    assert!(
        matches!(e, SubmitError::Rule(RuleError::Suspended(_))),
        "{e}"
    );
    l.close().unwrap();
    audit_store(
        &reman_ledger::store::Store::open(dir.path()).unwrap(),
        None,
        |_, _| {},
    )
    .unwrap();
}

#[test]
fn refuses_a_reissue_that_names_an_earlier_certificate_than_the_revoked_one() {
    // A, then B supersedes A, then B is revoked: a new certificate may name B, not A.
    let k = key("kyoto-imaging.example");
    let g = gtin(77);
    let ids = std::sync::Mutex::new(None);
    let e = refused(
        |l| {
            let a = log_certificate(l, &certificate_json(&g, "R1", None), &k);
            let b = log_certificate(
                l,
                &certificate_json(&g, "R1", Some(&a.to_string()))
                    .replace("\"warranty_months\":24", "\"warranty_months\":30"),
                &k,
            );
            l.submit(&sign(
                PayloadType::Revocation,
                &format!(r#"{{"certificate_id":"{b}","reason":"error","note":""}}"#),
                &k,
            ))
            .unwrap();
            *ids.lock().unwrap() = Some((a, b));
        },
        || {
            let (a, _) = ids.lock().unwrap().unwrap();
            let json = certificate_json(&g, "R1", Some(&a.to_string()))
                .replace("\"warranty_months\":24", "\"warranty_months\":36");
            sign(PayloadType::Certificate, &json, &k)
        },
    );
    let (_, b) = ids.lock().unwrap().unwrap();
    assert!(
        matches!(&e, SubmitError::Rule(RuleError::BadSupersede { .. })),
        "{e}"
    );
    assert!(
        e.to_string().contains(&b.to_string()),
        "names the latest: {e}"
    );
    assert_eq!(e.kind().status(), 409);
}

#[test]
fn a_reissue_may_name_the_revoked_certificate_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = demo_ledger(dir.path());
    let k = key("kyoto-imaging.example");
    let g = gtin(78);
    let a = log_certificate(&l, &certificate_json(&g, "R2", None), &k);
    l.submit(&sign(
        PayloadType::Revocation,
        &format!(r#"{{"certificate_id":"{a}","reason":"error","note":""}}"#),
        &k,
    ))
    .unwrap();
    let again = certificate_json(&g, "R2", Some(&a.to_string()));
    let b = log_certificate(&l, &again, &k);
    assert_eq!(status(&l, &a), CertStatus::Revoked);
    assert_eq!(status(&l, &b), CertStatus::Valid);
}

//! `receipt::verify`: a real ledger's receipt verifies under its log key, and every way a
//! lying server could change it is refused with a clear error.

mod common;

use common::*;
use reman_ledger::dsse::Envelope;
use reman_ledger::payload::{self, PayloadType};
use reman_ledger::receipt::{ReceiptError, RemoteReceipt, verify};
use serde_json::Value;

/// What kind of error a changed receipt must give.
type Expect = fn(&ReceiptError) -> bool;

struct Fixture {
    _dir: tempfile::TempDir,
    receipt: Value,
    envelope: Envelope,
    entry: Vec<u8>,
    other_entry: Vec<u8>,
}

/// A ledger with two certificates logged; the receipt of the second.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let l = new_ledger(dir.path());
    let suzhou = key("suzhou-reman.example");
    let party = format!(
        r#"{{"name":"suzhou-reman.example","role":"remanufacturer","display_name":"Suzhou","country":"CN","key":"{}","status":"active"}}"#,
        suzhou.public().to_vkey()
    );
    l.submit(&sign(PayloadType::Party, &party, &operator()))
        .unwrap();
    let first = sign(
        PayloadType::Certificate,
        &certificate_json(&gtin(7), "RC-1", None),
        &suzhou,
    );
    l.submit(&first).unwrap();
    let bytes = sign(
        PayloadType::Certificate,
        &certificate_json(&gtin(7), "RC/2", None),
        &suzhou,
    );
    let r = l.submit(&bytes).unwrap();
    let receipt = serde_json::to_value(&r).unwrap();
    let entry = l.store().entry(r.index).unwrap().unwrap().to_vec();
    let other_entry = l.store().entry(r.index - 1).unwrap().unwrap().to_vec();
    l.close().unwrap();
    Fixture {
        _dir: dir,
        receipt,
        envelope: Envelope::parse(&bytes).unwrap(),
        entry,
        other_entry,
    }
}

fn check(f: &Fixture, receipt: &Value, entry: Option<&[u8]>) -> Result<(), ReceiptError> {
    let r = RemoteReceipt::from_json(receipt)?;
    let p = payload::parse(&f.envelope.payload_type, &f.envelope.payload).unwrap();
    verify(&r, log_key().public(), &f.envelope, &p, entry).map(|_| ())
}

#[test]
fn a_real_receipt_verifies_with_its_entry_and_seal() {
    let f = fixture();
    let r = RemoteReceipt::from_json(&f.receipt).unwrap();
    let p = payload::parse(&f.envelope.payload_type, &f.envelope.payload).unwrap();
    let v = verify(&r, log_key().public(), &f.envelope, &p, Some(&f.entry)).unwrap();
    assert_eq!(v.checkpoint.size, 4);
    assert_eq!(v.seal.unwrap().index, 3);
}

#[test]
fn every_change_a_server_could_make_is_refused() {
    let f = fixture();
    let with = |path: &[&str], value: Value| {
        let mut v = f.receipt.clone();
        let mut slot = &mut v;
        for k in path {
            slot = if let Ok(i) = k.parse::<usize>() {
                &mut slot[i]
            } else {
                &mut slot[*k]
            };
        }
        *slot = value;
        v
    };
    let zeros = "00".repeat(32);
    let other_serial_url = f.receipt["qr_url"]
        .as_str()
        .unwrap()
        .replace("RC%2F2", "RC-1");
    let forged_seal = {
        let mut seal = f.receipt["seal"].as_str().unwrap().to_owned().into_bytes();
        seal[60] = if seal[60] == b'A' { b'B' } else { b'A' };
        String::from_utf8(seal).unwrap()
    };
    let cases: Vec<(&str, Value, Expect)> = vec![
        ("index", with(&["index"], 2.into()), |e| {
            matches!(e, ReceiptError::Inclusion { .. })
        }),
        (
            "leaf hash",
            with(&["leaf_hash"], zeros.clone().into()),
            |e| matches!(e, ReceiptError::Inclusion { .. }),
        ),
        (
            "proof hash",
            with(&["inclusion_proof", "proof", "0"], zeros.clone().into()),
            |e| matches!(e, ReceiptError::Inclusion { .. }),
        ),
        (
            "proof root",
            with(&["inclusion_proof", "root"], zeros.clone().into()),
            |e| matches!(e, ReceiptError::ProofNotForCheckpoint { .. }),
        ),
        (
            "proof size",
            with(&["inclusion_proof", "tree_size"], 3.into()),
            |e| matches!(e, ReceiptError::ProofNotForCheckpoint { .. }),
        ),
        (
            "checkpoint",
            with(
                &["checkpoint"],
                f.receipt["checkpoint"]
                    .as_str()
                    .unwrap()
                    .replacen("\n4\n", "\n5\n", 1)
                    .into(),
            ),
            |e| matches!(e, ReceiptError::Checkpoint(_)),
        ),
        ("no seal", with(&["seal"], Value::Null), |e| {
            matches!(e, ReceiptError::MissingSeal)
        }),
        ("forged seal", with(&["seal"], forged_seal.into()), |e| {
            matches!(e, ReceiptError::Seal(_))
        }),
        (
            "certificate id",
            with(&["certificate_id"], "0".repeat(32).into()),
            |e| matches!(e, ReceiptError::Mismatch(_)),
        ),
        (
            "QR URL of another serial",
            with(&["qr_url"], other_serial_url.into()),
            |e| matches!(e, ReceiptError::Mismatch(_)),
        ),
        (
            "time",
            with(
                &["integrated_time"],
                f.receipt["integrated_time"]
                    .as_str()
                    .unwrap()
                    .replace(".", "x")
                    .into(),
            ),
            |e| matches!(e, ReceiptError::Malformed(_)),
        ),
        ("shape", with(&["index"], "three".into()), |e| {
            matches!(e, ReceiptError::Malformed(_))
        }),
    ];
    for (what, receipt, expected) in cases {
        let e = check(&f, &receipt, None).expect_err(what);
        assert!(expected(&e), "{what}: {e:?}");
        assert!(!e.to_string().is_empty());
    }
    assert!(check(&f, &f.receipt, None).is_ok());
}

#[test]
fn the_entry_served_must_be_the_submitted_envelope_at_that_index() {
    let f = fixture();
    assert!(check(&f, &f.receipt, Some(&f.entry)).is_ok());
    let e = check(&f, &f.receipt, Some(&f.other_entry)).unwrap_err();
    assert!(
        e.to_string()
            .contains("does not hash to the receipt's leaf hash"),
        "{e}"
    );
    let mut changed = f.entry.clone();
    let at = changed.len() - 40;
    changed[at] ^= 1;
    assert!(matches!(
        check(&f, &f.receipt, Some(&changed)),
        Err(ReceiptError::Entry { index: 3, .. })
    ));
}

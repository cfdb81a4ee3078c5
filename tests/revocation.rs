//! Revocations (SPEC §3.3): the example parses; shape errors are 422 and name what is wrong.

mod spec_examples;

use reman_ledger::payload::{Payload, PayloadType, parse};
use reman_ledger::revocation::RevocationReason;
use serde_json::{Value, json};
use spec_examples::*;

const TY: PayloadType = PayloadType::Revocation;

fn schema(mutate: impl FnOnce(&mut Value)) -> String {
    schema_message(parse_mutated(TY, &revocation_text(), mutate))
}

#[test]
fn example_parses() {
    let Payload::Revocation(r) = parse(TY.media_type(), revocation_text().as_bytes()).unwrap()
    else {
        panic!("not a revocation")
    };
    assert_eq!(r.certificate_id.to_string(), CERT_ID);
    assert_eq!(r.reason, RevocationReason::Recall);
    assert_eq!(r.note.as_deref(), Some("free text"));
}

#[test]
fn every_reason_parses_and_note_is_optional() {
    for (s, reason) in [
        ("recall", RevocationReason::Recall),
        ("fraud", RevocationReason::Fraud),
        ("error", RevocationReason::Error),
        ("other", RevocationReason::Other),
    ] {
        let Ok(Payload::Revocation(r)) = parse_mutated(TY, &revocation_text(), |v| {
            set(v, "/reason", json!(s));
            remove(v, "", "note");
        }) else {
            panic!("{s}")
        };
        assert_eq!(r.reason, reason);
        assert_eq!(r.reason.as_str(), s);
        assert_eq!(r.note, None);
    }
}

#[test]
fn unknown_reason() {
    let msg = schema(|v| set(v, "/reason", json!("because")));
    assert!(msg.contains("unknown variant `because`"), "{msg}");
    assert!(msg.contains("`recall`") && msg.contains("`other`"), "{msg}");
}

#[test]
fn malformed_certificate_id() {
    for bad in [
        "E3B0C44298FC1C149AFBF4C8996FB924",
        "e3b0c44298fc1c149afbf4c8996fb92",
        "",
    ] {
        let msg = schema(|v| set(v, "/certificate_id", json!(bad)));
        assert!(msg.contains("32 lowercase hex digits"), "{msg}");
    }
}

#[test]
fn missing_certificate_id() {
    let msg = schema(|v| remove(v, "", "certificate_id"));
    assert!(msg.contains("missing field `certificate_id`"), "{msg}");
}

#[test]
fn unknown_field_is_named() {
    let msg = schema(|v| set(v, "/revoked_by", json!("x")));
    assert!(msg.contains("unknown field `revoked_by`"), "{msg}");
}

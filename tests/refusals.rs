//! Every bad input of SPEC §3 refused by the ledger itself, each with its own error and HTTP
//! class, and nothing written: all cases run against one shared demo ledger, whose whole
//! store must be byte-for-byte unchanged after each refusal.

mod common;

use common::*;
use reman_ledger::certificate::CertificateError as C;
use reman_ledger::dsse::DsseError as D;
use reman_ledger::keys::{KeyError, PrivateKey};
use reman_ledger::ledger::{Ledger, SubmitError};
use reman_ledger::party::PartyError;
use reman_ledger::payload::{PayloadError as P, PayloadType};
use reman_ledger::state::RuleError;
use std::sync::OnceLock;

fn ledger() -> &'static Ledger {
    static L: OnceLock<(tempfile::TempDir, Ledger)> = OnceLock::new();
    &L.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (l, _) = demo_ledger(dir.path());
        (dir, l)
    })
    .1
}

/// Submits `body`, checks that nothing at all changed, and returns the refusal.
fn refuse(body: &[u8]) -> SubmitError {
    let l = ledger();
    let before = snapshot(l);
    let err = l.submit(body).expect_err("accepted a bad submission");
    assert_eq!(snapshot(l), before, "a refusal wrote something: {err}");
    err
}

/// A valid certificate with one change made to its JSON.
fn cert_with(edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_str(&certificate_json(&gtin(777_001), "REF-1", None)).unwrap();
    edit(&mut v);
    sign(
        PayloadType::Certificate,
        &v.to_string(),
        &key("suzhou-reman.example"),
    )
}

fn cert_error(edit: impl Fn(&mut serde_json::Value)) -> C {
    let e = refuse(&cert_with(edit));
    assert_eq!(e.kind().status(), 422, "{e:?}");
    match e {
        SubmitError::Payload(P::Certificate(c)) => c,
        e => panic!("expected a certificate rule error, got {e:?}"),
    }
}

#[test]
fn a_serial_longer_than_20_characters() {
    let e = cert_error(|v| v["product"]["serial"] = "ABCDEFGHIJKLMNOPQRSTU".into());
    assert!(matches!(e, C::SerialLength { .. }), "{e:?}");
}

#[test]
fn a_serial_outside_the_gs1_character_set() {
    let e = cert_error(|v| v["product"]["serial"] = "RM 2026#1".into());
    assert!(matches!(e, C::SerialCharacter { .. }), "{e:?}");
}

#[test]
fn an_hs_code_of_seven_digits() {
    let e = cert_error(|v| v["product"]["hs_code"] = "8408201".into());
    assert!(matches!(e, C::InvalidHsCode(_)), "{e:?}");
}

#[test]
fn a_country_that_is_not_iso_3166() {
    let e = cert_error(|v| v["core"]["origin_country"] = "UK".into());
    assert!(matches!(e, C::InvalidCountry { .. }), "{e:?}");
}

#[test]
fn a_date_that_does_not_exist() {
    let e = cert_error(|v| v["process"]["completed"] = "2026-02-30".into());
    assert!(matches!(e, C::InvalidDate { .. }), "{e:?}");
}

#[test]
fn a_certificate_issued_before_its_unit_was_completed() {
    let e = cert_error(|v| v["issued"] = "2026-11-01".into());
    assert!(matches!(e, C::IssuedBeforeCompleted { .. }), "{e:?}");
}

#[test]
fn no_standard() {
    let e = cert_error(|v| v["process"]["standards"] = serde_json::json!([]));
    assert!(matches!(e, C::NoStandards), "{e:?}");
}

#[test]
fn no_test() {
    let e = cert_error(|v| v["process"]["tests"] = serde_json::json!([]));
    assert!(matches!(e, C::NoTests), "{e:?}");
}

#[test]
fn a_warranty_of_zero_months() {
    let e = cert_error(|v| v["warranty_months"] = 0.into());
    assert!(matches!(e, C::NoWarranty), "{e:?}");
}

#[test]
fn an_empty_marking() {
    let e = cert_error(|v| v["marking"] = "".into());
    assert!(matches!(e, C::EmptyMarking), "{e:?}");
}

#[test]
fn a_missing_required_field() {
    let e = refuse(&cert_with(|v| {
        v.as_object_mut().unwrap().remove("issued");
    }));
    assert!(
        matches!(&e, SubmitError::Payload(P::Schema { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("issued"), "{e}");
    assert_eq!(e.kind().status(), 422);
}

#[test]
fn a_product_given_as_an_array_of_its_fields() {
    let e = refuse(&cert_with(|v| {
        let p = &v["product"];
        let fields: Vec<serde_json::Value> = ["gtin", "serial", "name", "category", "hs_code"]
            .iter()
            .map(|k| p[*k].clone())
            .collect();
        v["product"] = fields.into();
    }));
    assert!(
        matches!(&e, SubmitError::Payload(P::Schema { message, .. }) if message.contains("\"product\" is an array")),
        "{e:?}"
    );
    assert_eq!(e.kind().status(), 422);
}

/// The key error of a party registration whose key is these raw 32 bytes (its key ID
/// computed over them, so that only the key itself is wrong).
fn party_key_error(name: &str, pk: [u8; 32]) -> KeyError {
    use base64::Engine as _;
    let material = base64::engine::general_purpose::STANDARD.encode([&[1u8][..], &pk].concat());
    let id = reman_ledger::keys::KeyId::compute(name, &pk);
    let json = format!(
        r#"{{"name":"{name}","role":"importer","country":"DE","key":"{name}+{id}+{material}","status":"active"}}"#
    );
    let e = refuse(&sign(PayloadType::Party, &json, &operator()));
    assert_eq!(e.kind().status(), 422);
    match e {
        SubmitError::Payload(P::Party(PartyError::Key(k))) => k,
        e => panic!("expected a key error, got {e:?}"),
    }
}

#[test]
fn a_party_with_a_weak_key() {
    // The identity point, small order: a "signature" under it proves nothing.
    let mut pk = [0u8; 32];
    pk[0] = 1;
    let e = party_key_error("weak.example", pk);
    assert!(matches!(e, KeyError::WeakKey), "{e:?}");
}

#[test]
fn a_party_with_a_key_not_in_canonical_form() {
    // y = p + 3 (p = 2^255 - 19): the point y = 3, encoded with a y coordinate of p or more.
    let mut pk = [0xffu8; 32];
    pk[0] = 0xed + 3;
    pk[31] = 0x7f;
    let e = party_key_error("odd.example", pk);
    assert!(matches!(e, KeyError::NonCanonicalKey), "{e:?}");
}

#[test]
fn a_party_whose_key_has_another_name() {
    let other = PrivateKey::generate("someone-else.example").unwrap();
    let json = format!(
        r#"{{"name":"importer.example","role":"importer","country":"DE","key":"{}","status":"active"}}"#,
        other.public().to_vkey()
    );
    let e = refuse(&sign(PayloadType::Party, &json, &operator()));
    assert!(
        matches!(
            e,
            SubmitError::Payload(P::Party(PartyError::KeyNameMismatch { .. }))
        ),
        "{e:?}"
    );
}

#[test]
fn an_event_time_without_offset() {
    let json = r#"{"certificate_id":"00112233445566778899aabbccddeeff","event":"shipped","time":"2026-11-25 09:30"}"#;
    let e = refuse(&sign(
        PayloadType::Event,
        json,
        &key("suzhou-reman.example"),
    ));
    assert!(matches!(e, SubmitError::Payload(P::Event(_))), "{e:?}");
    assert_eq!(e.kind().status(), 422);
}

fn envelope_error(edit: impl Fn(&mut serde_json::Value)) -> D {
    let mut v: serde_json::Value = serde_json::from_slice(&cert_with(|_| {})).unwrap();
    edit(&mut v);
    match refuse(v.to_string().as_bytes()) {
        SubmitError::Envelope(d) => d,
        e => panic!("expected an envelope error, got {e:?}"),
    }
}

#[test]
fn an_envelope_with_two_signatures() {
    let e = envelope_error(|v| {
        let s = v["signatures"][0].clone();
        v["signatures"].as_array_mut().unwrap().push(s);
    });
    assert!(matches!(e, D::TooManySignatures(2)), "{e:?}");
}

#[test]
fn an_envelope_whose_payload_is_not_base64() {
    let e = envelope_error(|v| v["payload"] = "not base64!".into());
    assert!(matches!(e, D::PayloadNotBase64), "{e:?}");
}

#[test]
fn a_signature_of_the_wrong_length() {
    let e = envelope_error(|v| v["signatures"][0]["sig"] = "AAAA".into());
    assert!(matches!(e, D::SigBadLength(3)), "{e:?}");
}

#[test]
fn an_envelope_with_an_unknown_field() {
    let e = envelope_error(|v| v["extra"] = 1.into());
    assert!(matches!(e, D::UnknownField { .. }), "{e:?}");
}

#[test]
fn a_payload_over_32_kib_is_too_large() {
    // Our signer refuses to make such an envelope: build it by hand.
    let mut v: serde_json::Value =
        serde_json::from_str(&certificate_json(&gtin(777_002), "REF-2", None)).unwrap();
    v["extensions"] = serde_json::json!({ "padding": "x".repeat(33_000) });
    let mut env = reman_ledger::dsse::Envelope::sign(
        PayloadType::Certificate.media_type(),
        b"{}".to_vec(),
        &key("suzhou-reman.example"),
    )
    .unwrap();
    env.payload = v.to_string().into_bytes();
    let e = refuse(env.to_json().as_bytes());
    assert!(
        matches!(e, SubmitError::Envelope(D::PayloadTooLarge(_))),
        "{e:?}"
    );
    assert_eq!(e.kind().status(), 413);
}

// Who signed is checked first, then the signature, then what was signed: a forged or
// unauthorised envelope is refused as such (401, 403), whatever its payload says.

/// A certificate whose tests include a `fail` (422 when its issuer signs it).
fn failing_certificate() -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&certificate_json(&gtin(777_003), "REF-3", None)).unwrap();
    v["process"]["tests"][0]["result"] = "fail".into();
    v.to_string()
}

#[test]
fn an_unknown_signer_is_refused_before_its_payload_is_read() {
    let stranger = PrivateKey::generate("stranger.example").unwrap();
    let e = refuse(&sign(
        PayloadType::Certificate,
        &failing_certificate(),
        &stranger,
    ));
    assert!(
        matches!(e, SubmitError::Rule(RuleError::UnknownSigner(_))),
        "{e:?}"
    );
    assert_eq!(e.kind().status(), 401);
    // Not even JSON: still the signer.
    let e = refuse(&sign(
        PayloadType::Certificate,
        "{\"a\":1,\"a\":2}",
        &stranger,
    ));
    assert_eq!(e.kind().status(), 401, "{e:?}");
}

#[test]
fn a_forged_signature_is_refused_before_its_payload_is_read() {
    // Signed by a stranger, but naming a registered remanufacturer's key.
    let stranger = PrivateKey::generate("suzhou-reman.example").unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&sign(
        PayloadType::Certificate,
        &failing_certificate(),
        &stranger,
    ))
    .unwrap();
    v["signatures"][0]["keyid"] = key("suzhou-reman.example")
        .public()
        .reference()
        .to_string()
        .into();
    let e = refuse(v.to_string().as_bytes());
    assert!(matches!(e, SubmitError::BadSignature(_)), "{e:?}");
    assert_eq!(e.kind().status(), 401);
}

#[test]
fn a_role_that_may_not_sign_the_type_is_refused_before_its_payload_is_read() {
    let e = refuse(&sign(
        PayloadType::Certificate,
        &failing_certificate(),
        &key("hamburg-import.example"),
    ));
    assert!(
        matches!(e, SubmitError::Rule(RuleError::RoleNotAllowed { .. })),
        "{e:?}"
    );
    assert_eq!(e.kind().status(), 403);
    // An operator signs no kind of event.
    let e = refuse(&sign(PayloadType::Event, "not json", &operator()));
    assert!(
        matches!(e, SubmitError::Rule(RuleError::RoleNotAllowed { .. })),
        "{e:?}"
    );
}

//! The payload parser (SPEC §3): malformed (400) versus invalid content (422), media types,
//! and the static role table.

mod spec_examples;

use reman_ledger::party::Role;
use reman_ledger::payload::{MAX_PAYLOAD_BYTES, Payload, PayloadError, PayloadType, parse};
use serde_json::json;
use spec_examples::*;

const CERT: &str = "application/vnd.reman-ledger.certificate.v1+json";
const REVOCATION: &str = "application/vnd.reman-ledger.revocation.v1+json";

fn malformed(r: Result<Payload, PayloadError>) -> PayloadError {
    let e = r.expect_err("expected a refusal");
    assert!(
        e.is_malformed(),
        "expected a malformed (400) error, got {e:?}"
    );
    e
}

#[test]
fn media_types_of_spec() {
    let expected = [
        (
            PayloadType::Party,
            "application/vnd.reman-ledger.party.v1+json",
            "party",
        ),
        (PayloadType::Certificate, CERT, "certificate"),
        (PayloadType::Revocation, REVOCATION, "revocation"),
        (
            PayloadType::Event,
            "application/vnd.reman-ledger.event.v1+json",
            "event",
        ),
    ];
    for (ty, media, name) in expected {
        assert_eq!(ty.media_type(), media);
        assert_eq!(PayloadType::from_media_type(media), Some(ty));
        assert_eq!(ty.name(), name);
        assert_eq!(PayloadType::from_name(name), Some(ty));
    }
    assert_eq!(PayloadType::from_media_type("application/json"), None);
    assert_eq!(
        PayloadType::from_media_type("application/vnd.reman-ledger.certificate.v2+json"),
        None
    );
    assert_eq!(PayloadType::from_name("Party"), None);
}

#[test]
fn unknown_payload_type() {
    let e = malformed(parse(
        "application/vnd.reman-ledger.Certificate.v1+json",
        certificate_text().as_bytes(),
    ));
    assert_eq!(
        e,
        PayloadError::UnknownType("application/vnd.reman-ledger.Certificate.v1+json".into())
    );
}

/// A revocation whose note pads it to exactly `len` bytes.
fn revocation_of_len(len: usize) -> Vec<u8> {
    let empty = format!(r#"{{"certificate_id":"{CERT_ID}","reason":"other","note":""}}"#);
    let note = "x".repeat(len - empty.len());
    let text = format!(r#"{{"certificate_id":"{CERT_ID}","reason":"other","note":"{note}"}}"#);
    assert_eq!(text.len(), len);
    text.into_bytes()
}

#[test]
fn exactly_32_kib_is_accepted() {
    assert_eq!(MAX_PAYLOAD_BYTES, 32768);
    parse(REVOCATION, &revocation_of_len(32768)).unwrap();
}

#[test]
fn more_than_32_kib() {
    let e = malformed(parse(REVOCATION, &revocation_of_len(32769)));
    assert_eq!(e, PayloadError::TooLarge { size: 32769 });
}

#[test]
fn invalid_utf8() {
    let mut bytes = revocation_text().into_bytes();
    let pos = bytes.len() - 5; // inside the note
    bytes[pos] = 0xff;
    let e = malformed(parse(REVOCATION, &bytes));
    assert_eq!(e, PayloadError::InvalidUtf8 { offset: pos });
}

#[test]
fn not_json() {
    for bad in [
        "",
        "{",
        "{\"a\":}",
        "{'a': 1}",
        "{} {}",
        "{}x",
        "\u{feff}{}",
    ] {
        let e = malformed(parse(REVOCATION, bad.as_bytes()));
        assert!(matches!(e, PayloadError::NotJson(_)), "{bad:?}: {e:?}");
    }
}

#[test]
fn lone_surrogate_is_not_json() {
    let e = malformed(parse(REVOCATION, br#"{"note":"\ud800"}"#));
    assert!(matches!(e, PayloadError::NotJson(_)), "{e:?}");
}

#[test]
fn out_of_range_number_is_not_json() {
    let e = malformed(parse(REVOCATION, br#"{"note":1e400}"#));
    assert!(matches!(e, PayloadError::NotJson(_)), "{e:?}");
}

#[test]
fn not_an_object() {
    for (text, kind) in [
        ("[]", "array"),
        ("null", "null"),
        ("\"{}\"", "string"),
        ("42", "number"),
        ("true", "boolean"),
    ] {
        let e = malformed(parse(REVOCATION, text.as_bytes()));
        assert_eq!(e, PayloadError::NotAnObject(kind));
    }
}

#[test]
fn duplicate_top_level_key() {
    let text = format!(r#"{{"certificate_id":"{CERT_ID}","reason":"recall","reason":"fraud"}}"#);
    let e = malformed(parse(REVOCATION, text.as_bytes()));
    assert!(
        matches!(&e, PayloadError::DuplicateKey(m) if m.contains("\"reason\"")),
        "{e:?}"
    );
}

#[test]
fn duplicate_key_inside_extensions() {
    let text = certificate_text().replace(
        "\"supersedes\": null",
        "\"supersedes\": null, \"extensions\": {\"a\": 1, \"a\": 2}",
    );
    let e = malformed(parse(CERT, text.as_bytes()));
    assert!(matches!(e, PayloadError::DuplicateKey(_)), "{e:?}");
}

#[test]
fn content_errors_are_not_malformed() {
    let e = parse(CERT, b"{}").unwrap_err();
    assert!(!e.is_malformed());
    match e {
        PayloadError::Schema {
            payload_type,
            message,
        } => {
            assert_eq!(payload_type, PayloadType::Certificate);
            assert!(message.contains("missing field `product`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_type_parses_to_its_variant() {
    let cases = [
        (PayloadType::Party, party_text()),
        (PayloadType::Certificate, certificate_text()),
        (PayloadType::Revocation, revocation_text()),
        (PayloadType::Event, event_text()),
    ];
    for (ty, text) in cases {
        let p = parse(ty.media_type(), text.as_bytes()).unwrap();
        assert_eq!(p.payload_type(), ty);
    }
    // A certificate sent as another type is refused as content, not as malformed.
    let e = parse(REVOCATION, certificate_text().as_bytes()).unwrap_err();
    assert!(matches!(
        e,
        PayloadError::Schema {
            payload_type: PayloadType::Revocation,
            ..
        }
    ));
}

#[test]
fn target_certificate() {
    let r = parse(REVOCATION, revocation_text().as_bytes()).unwrap();
    assert_eq!(r.target_certificate(), Some(CERT_ID.parse().unwrap()));
    let e = parse(PayloadType::Event.media_type(), event_text().as_bytes()).unwrap();
    assert_eq!(e.target_certificate(), Some(CERT_ID.parse().unwrap()));
    let c = parse(CERT, certificate_text().as_bytes()).unwrap();
    assert_eq!(c.target_certificate(), None);
}

fn may_sign(p: &Payload) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|&r| p.role_may_sign(r))
        .collect()
}

#[test]
fn static_role_table() {
    use Role::*;
    let party = parse(PayloadType::Party.media_type(), party_text().as_bytes()).unwrap();
    assert_eq!(may_sign(&party), [Operator]);
    let cert = parse(CERT, certificate_text().as_bytes()).unwrap();
    assert_eq!(may_sign(&cert), [Remanufacturer]);
    let rev = parse(REVOCATION, revocation_text().as_bytes()).unwrap();
    assert_eq!(may_sign(&rev), [Operator, Remanufacturer]);

    let event_as = |kind: &str| {
        parse_mutated(PayloadType::Event, &event_text(), |v| {
            set(v, "/event", json!(kind))
        })
        .unwrap()
    };
    assert_eq!(may_sign(&event_as("customs_released")), [Customs]);
    assert_eq!(may_sign(&event_as("shipped")), [Remanufacturer, Importer]);
    assert_eq!(may_sign(&event_as("installed")), [Importer]);
    assert_eq!(may_sign(&event_as("tested")), [Certifier]);
}

/// An array where SPEC §3 has an object or a single value is refused as content that does not
/// match the schema (422), never read as an object's fields in order (found by fuzzing: such a
/// certificate was logged and served back with `product` as an array).
#[test]
fn arrays_stand_only_where_the_schema_has_them() {
    const EVENT: &str = "application/vnd.reman-ledger.event.v1+json";
    let product = r#""product": ["09506000999999", "RM-2025-000123", "Remanufactured 2.0 L diesel engine", "engine", "840820", "Example Motors", "EM-20TD-11"]"#;
    let cert = certificate_text();
    let start = cert.find("\"product\": {").unwrap();
    let end = cert[start..].find('}').unwrap() + start + 1;
    let cases = [
        (CERT, format!("{}{product}{}", &cert[..start], &cert[end..]), "\"product\" is an array"),
        (
            CERT,
            cert.replace(
                r#""tests": [{"name": "dynamometer power test", "result": "pass", "same_as_new_product": true}]"#,
                r#""tests": [["dynamometer power test", "pass", true]]"#,
            ),
            "an array inside an array",
        ),
        (
            CERT,
            cert.replace(
                r#""environment": {"mass_kg": 182.5, "material_reuse_pct": 72.0, "energy_saved_kwh": 1200,
                 "co2e_saved_kg": 850, "method": "supplier LCA 2026"}"#,
                r#""environment": []"#,
            ),
            "\"environment\" is an array",
        ),
        (
            EVENT,
            event_text().replace(
                r#""location": {"country": "CN", "place": "Shanghai Yangshan port"}"#,
                r#""location": ["CN", "Shanghai Yangshan port"]"#,
            ),
            "\"location\" is an array",
        ),
    ];
    for (ty, text, why) in cases {
        assert_ne!(text, cert, "{why}: the case changed nothing");
        let e = parse(ty, text.as_bytes()).unwrap_err();
        assert!(!e.is_malformed(), "{why}: {e:?}");
        match e {
            PayloadError::Schema {
                payload_type,
                message,
            } => {
                assert_eq!(payload_type.media_type(), ty, "{why}");
                assert!(message.contains(why), "{why} not in {message}")
            }
            other => panic!("{why}: {other:?}"),
        }
    }
    // The arrays of the schema, and any JSON inside `extensions`, are still taken.
    assert!(parse(CERT, cert.as_bytes()).is_ok());
    let extended = cert.replace(
        "\"supersedes\": null",
        "\"supersedes\": null, \"extensions\": {\"lots\": [[1, 2], {\"a\": [3]}]}",
    );
    assert!(parse(CERT, extended.as_bytes()).is_ok(), "{extended}");
}

//! Parties (SPEC §3.1): the example parses, and each rule, broken alone, gives its error.

mod spec_examples;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reman_ledger::keys::{KeyError, KeyId, PrivateKey};
use reman_ledger::party::{Party, PartyError, PartyStatus, Role};
use reman_ledger::payload::{Payload, PayloadError, PayloadType, parse};
use serde_json::{Value, json};
use spec_examples::*;

const TY: PayloadType = PayloadType::Party;

fn party_err(mutate: impl FnOnce(&mut Value)) -> PartyError {
    match parse_mutated(TY, &party_text(), mutate) {
        Err(e @ PayloadError::Party(_)) => {
            assert!(!e.is_malformed(), "content errors are 422");
            let PayloadError::Party(inner) = e else {
                unreachable!()
            };
            inner
        }
        other => panic!("expected a party error, got {other:?}"),
    }
}

fn schema(mutate: impl FnOnce(&mut Value)) -> String {
    schema_message(parse_mutated(TY, &party_text(), mutate))
}

/// A syntactically perfect vkey for a small-order point (the identity, y = 1).
fn weak_vkey(name: &str) -> String {
    let mut point = [0u8; 32];
    point[0] = 1;
    let mut material = vec![0x01];
    material.extend_from_slice(&point);
    format!(
        "{name}+{}+{}",
        KeyId::compute(name, &point),
        B64.encode(material)
    )
}

#[test]
fn spec_example_parses() {
    let Payload::Party(p) = parse(TY.media_type(), party_text().as_bytes()).unwrap() else {
        panic!("not a party")
    };
    assert_eq!(p.name, "gearbox-works.example");
    assert_eq!(p.role, Role::Remanufacturer);
    assert_eq!(p.display_name.as_deref(), Some("Gearbox Works Ltd"));
    assert_eq!(p.country.as_deref(), Some("CN"));
    assert_eq!(&p.key, gearbox_key().public());
    assert_eq!(p.status, PartyStatus::Active);
    assert!(p.is_active());
}

#[test]
fn serializes_key_as_vkey_and_round_trips() {
    let Payload::Party(p) = parse(TY.media_type(), party_text().as_bytes()).unwrap() else {
        panic!()
    };
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["key"], json!(gearbox_key().public().to_vkey()));
    assert_eq!(v["role"], json!("remanufacturer"));
    assert_eq!(v["status"], json!("active"));
    let back: Party = serde_json::from_value(v).unwrap();
    assert_eq!(back, p);
}

#[test]
fn every_role_and_status_parses() {
    for role in Role::ALL {
        let Ok(Payload::Party(p)) =
            parse_mutated(TY, &party_text(), |v| set(v, "/role", json!(role.as_str())))
        else {
            panic!("{role}")
        };
        assert_eq!(p.role, role);
    }
    let Ok(Payload::Party(p)) =
        parse_mutated(TY, &party_text(), |v| set(v, "/status", json!("suspended")))
    else {
        panic!()
    };
    assert_eq!(p.status, PartyStatus::Suspended);
    assert!(!p.is_active());
}

#[test]
fn invalid_name() {
    let e = party_err(|v| set(v, "/name", json!("gearbox works")));
    assert_eq!(e, PartyError::InvalidName("gearbox works".into()));
}

#[test]
fn key_name_differs_from_party_name() {
    let other = PrivateKey::from_seed("someone-else.example", &[7; 32]).unwrap();
    let e = party_err(|v| set(v, "/key", json!(other.public().to_vkey())));
    assert_eq!(
        e,
        PartyError::KeyNameMismatch {
            name: "gearbox-works.example".into(),
            key_name: "someone-else.example".into()
        }
    );
}

#[test]
fn weak_key_refused() {
    let e = party_err(|v| set(v, "/key", json!(weak_vkey("gearbox-works.example"))));
    assert_eq!(e, PartyError::Key(KeyError::WeakKey));
    assert!(e.to_string().contains("weak"));
}

#[test]
fn malformed_key_refused() {
    let e = party_err(|v| set(v, "/key", json!("not a key")));
    assert!(
        matches!(e, PartyError::Key(KeyError::MalformedPublicKey(_))),
        "{e:?}"
    );
}

#[test]
fn key_id_mismatch_refused() {
    let vkey = gearbox_key().public().to_vkey();
    let id = gearbox_key().id().to_string();
    let wrong = if id == "00000000" {
        "00000001"
    } else {
        "00000000"
    };
    let e = party_err(|v| set(v, "/key", json!(vkey.replace(&id, wrong))));
    assert!(
        matches!(e, PartyError::Key(KeyError::KeyIdMismatch { .. })),
        "{e:?}"
    );
}

#[test]
fn country_not_iso() {
    for bad in ["UK", "EU", "XX", "cn"] {
        let e = party_err(|v| set(v, "/country", json!(bad)));
        assert_eq!(e, PartyError::InvalidCountry(bad.into()));
    }
}

#[test]
fn unknown_role_is_a_schema_error() {
    let msg = schema(|v| set(v, "/role", json!("admin")));
    assert!(msg.contains("unknown variant `admin`"), "{msg}");
    assert!(msg.contains("`remanufacturer`"), "{msg}");
}

#[test]
fn unknown_status_is_a_schema_error() {
    let msg = schema(|v| set(v, "/status", json!("deleted")));
    assert!(msg.contains("unknown variant `deleted`"), "{msg}");
}

#[test]
fn unknown_field_is_named() {
    let msg = schema(|v| set(v, "/email", json!("a@b.example")));
    assert!(msg.contains("unknown field `email`"), "{msg}");
}

#[test]
fn missing_key_is_a_schema_error() {
    let msg = schema(|v| remove(v, "", "key"));
    assert!(msg.contains("missing field `key`"), "{msg}");
}

#[test]
fn display_name_and_extensions_are_optional() {
    parse_mutated(TY, &party_text(), |v| remove(v, "", "display_name")).unwrap();
    parse_mutated(TY, &party_text(), |v| {
        set(v, "/extensions", json!({"lei": "x"}))
    })
    .unwrap();
}

#[test]
fn direct_deserialize_refuses_weak_key_too() {
    let mut v: Value = serde_json::from_str(&party_text()).unwrap();
    set(&mut v, "/key", json!(weak_vkey("gearbox-works.example")));
    let err = serde_json::from_value::<Party>(v).unwrap_err();
    assert!(err.to_string().contains("weak"), "{err}");
}

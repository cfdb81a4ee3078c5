//! Events (SPEC §3.4): the example parses, the role table, and each rule broken alone.

mod spec_examples;

use reman_ledger::event::{EventError, EventKind};
use reman_ledger::party::Role;
use reman_ledger::payload::{Payload, PayloadError, PayloadType, parse};
use serde_json::{Value, json};
use spec_examples::*;

const TY: PayloadType = PayloadType::Event;

fn event_err(mutate: impl FnOnce(&mut Value)) -> EventError {
    match parse_mutated(TY, &event_text(), mutate) {
        Err(e @ PayloadError::Event(_)) => {
            assert!(!e.is_malformed(), "content errors are 422");
            let PayloadError::Event(inner) = e else {
                unreachable!()
            };
            inner
        }
        other => panic!("expected an event error, got {other:?}"),
    }
}

fn schema(mutate: impl FnOnce(&mut Value)) -> String {
    schema_message(parse_mutated(TY, &event_text(), mutate))
}

#[test]
fn spec_example_parses() {
    let Payload::Event(e) = parse(TY.media_type(), event_text().as_bytes()).unwrap() else {
        panic!("not an event")
    };
    assert_eq!(e.certificate_id.to_string(), CERT_ID);
    assert_eq!(e.event, EventKind::CustomsReleased);
    assert_eq!(e.time, "2026-11-25T09:30:00+08:00");
    let t = e.parsed_time().unwrap();
    assert_eq!(t.unix_timestamp(), 1_795_570_200); // 2026-11-25T01:30:00Z
    let loc = e.location.as_ref().unwrap();
    assert_eq!(loc.country, "CN");
    assert_eq!(loc.place.as_deref(), Some("Shanghai Yangshan port"));
    assert_eq!(e.reference.as_deref(), Some("declaration 2231-2026-0001"));
    assert_eq!(e.note.as_deref(), Some(""));
}

#[test]
fn role_table_of_spec() {
    use EventKind::*;
    use Role::*;
    let table: [(EventKind, &[Role]); 10] = [
        (Shipped, &[Remanufacturer, Importer]),
        (CustomsInspected, &[Customs]),
        (CustomsReleased, &[Customs]),
        (CustomsRefused, &[Customs]),
        (Received, &[Importer]),
        (OwnershipTransferred, &[Importer]),
        (Installed, &[Importer]),
        (ReturnedAsCore, &[Remanufacturer, Importer]),
        (Scrapped, &[Remanufacturer, Importer]),
        (Tested, &[Certifier]),
    ];
    for (kind, roles) in table {
        assert_eq!(kind.allowed_roles(), roles, "{kind}");
        // No event may be signed by the operator.
        assert!(!kind.allowed_roles().contains(&Operator));
    }
}

#[test]
fn every_kind_parses_by_its_snake_case_name() {
    for kind in EventKind::ALL {
        let Ok(Payload::Event(e)) = parse_mutated(TY, &event_text(), |v| {
            set(v, "/event", json!(kind.as_str()))
        }) else {
            panic!("{kind}")
        };
        assert_eq!(e.event, kind);
    }
}

#[test]
fn unknown_event_kind() {
    let msg = schema(|v| set(v, "/event", json!("CustomsReleased")));
    assert!(msg.contains("unknown variant `CustomsReleased`"), "{msg}");
    assert!(msg.contains("`customs_released`"), "{msg}");
}

#[test]
fn time_without_offset() {
    let e = event_err(|v| set(v, "/time", json!("2026-11-25T09:30:00")));
    assert_eq!(e, EventError::InvalidTime("2026-11-25T09:30:00".into()));
}

#[test]
fn time_not_rfc3339() {
    for bad in [
        "2026-11-25",
        "2026-11-25 09:30",
        "25/11/2026 09:30:00+08:00",
        "2026-02-30T09:30:00Z",
        "1795570200",
    ] {
        let e = event_err(|v| set(v, "/time", json!(bad)));
        assert_eq!(e, EventError::InvalidTime(bad.into()));
    }
}

#[test]
fn time_in_utc_and_with_fraction_accepted() {
    for ok in ["2026-11-25T01:30:00Z", "2026-11-25T01:30:00.123-05:00"] {
        parse_mutated(TY, &event_text(), |v| set(v, "/time", json!(ok))).unwrap();
    }
}

#[test]
fn location_country_not_iso() {
    let e = event_err(|v| set(v, "/location/country", json!("XX")));
    assert_eq!(e, EventError::InvalidCountry("XX".into()));
}

#[test]
fn location_without_country_is_a_schema_error() {
    let msg = schema(|v| remove(v, "/location", "country"));
    assert!(msg.contains("missing field `country`"), "{msg}");
}

#[test]
fn optional_fields_may_be_left_out() {
    parse_mutated(TY, &event_text(), |v| {
        remove(v, "", "location");
        remove(v, "", "reference");
        remove(v, "", "note");
    })
    .unwrap();
}

#[test]
fn malformed_certificate_id() {
    let msg = schema(|v| set(v, "/certificate_id", json!("<32 hex>")));
    assert!(msg.contains("32 lowercase hex digits"), "{msg}");
}

#[test]
fn unknown_field_is_named() {
    let msg = schema(|v| set(v, "/location/port_code", json!("CNSHA")));
    assert!(msg.contains("unknown field `port_code`"), "{msg}");
}

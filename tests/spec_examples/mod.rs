//! Shared test data: the SPEC §3 examples, copied verbatim, and mutation helpers.
#![allow(dead_code)]

use reman_ledger::keys::PrivateKey;
use reman_ledger::payload::{Payload, PayloadError, PayloadType, parse};
use serde_json::Value;

/// SPEC §3.2, verbatim.
pub const SPEC_CERTIFICATE: &str = r#"{"product": {"gtin": "09506000999995", "serial": "RM-2025-000123",
             "name": "Remanufactured 2.0 L diesel engine", "category": "engine",
             "hs_code": "840820", "oem": "Example Motors", "part_number": "EM-20TD-11"},
 "core": {"origin_country": "DE", "source": "end-of-life vehicle dismantler", "core_id": "CORE-00042"},
 "process": {"facility": "Suzhou plant 2", "country": "CN", "completed": "2026-11-20",
             "standards": ["GB/T 34600-2017"],
             "steps": ["disassembly", "cleaning", "inspection", "repair", "reassembly", "testing"],
             "replaced_parts": [{"part": "piston ring set", "new": true}],
             "tests": [{"name": "dynamometer power test", "result": "pass", "same_as_new_product": true}]},
 "warranty_months": 24,
 "marking": "再制造产品 / Remanufactured",
 "environment": {"mass_kg": 182.5, "material_reuse_pct": 72.0, "energy_saved_kwh": 1200,
                 "co2e_saved_kg": 850, "method": "supplier LCA 2026"},
 "issued": "2026-11-21",
 "supersedes": null}"#;

/// The SPEC example GTIN, whose GS1 check digit is wrong, and the corrected one.
pub const SPEC_GTIN: &str = "09506000999995";
/// `0950600099999` with its GS1 check digit, 9.
pub const FIXED_GTIN: &str = "09506000999999";

/// The SPEC §3.2 example text with only the GTIN check digit corrected.
pub fn certificate_text() -> String {
    SPEC_CERTIFICATE.replace(SPEC_GTIN, FIXED_GTIN)
}

/// SPEC §3.1, verbatim (the key is filled in by [`party_text`]).
pub const SPEC_PARTY: &str = r#"{"name": "gearbox-works.example", "role": "remanufacturer", "display_name": "Gearbox Works Ltd",
 "country": "CN", "key": "<vkey>", "status": "active"}"#;

/// A fixed key for the party `gearbox-works.example`.
pub fn gearbox_key() -> PrivateKey {
    PrivateKey::from_seed("gearbox-works.example", &[7; 32]).unwrap()
}

/// The SPEC §3.1 example with a real vkey.
pub fn party_text() -> String {
    SPEC_PARTY.replace("<vkey>", &gearbox_key().public().to_vkey())
}

/// A certificate ID used by revocations and events.
pub const CERT_ID: &str = "e3b0c44298fc1c149afbf4c8996fb924";

/// SPEC §3.3 (the placeholders filled in).
pub fn revocation_text() -> String {
    format!(r#"{{"certificate_id": "{CERT_ID}", "reason": "recall", "note": "free text"}}"#)
}

/// SPEC §3.4, verbatim (the certificate ID is filled in by [`event_text`]).
pub const SPEC_EVENT: &str = r#"{"certificate_id": "<32 hex>", "event": "customs_released", "time": "2026-11-25T09:30:00+08:00",
 "location": {"country": "CN", "place": "Shanghai Yangshan port"}, "reference": "declaration 2231-2026-0001", "note": ""}"#;

/// The SPEC §3.4 example with a real certificate ID.
pub fn event_text() -> String {
    SPEC_EVENT.replace("<32 hex>", CERT_ID)
}

/// Parses `text` as JSON, applies `mutate`, and runs the payload parser on the result.
pub fn parse_mutated(
    ty: PayloadType,
    text: &str,
    mutate: impl FnOnce(&mut Value),
) -> Result<Payload, PayloadError> {
    let mut v: Value = serde_json::from_str(text).unwrap();
    mutate(&mut v);
    parse(ty.media_type(), &serde_json::to_vec(&v).unwrap())
}

/// Sets the value at a JSON pointer: replaces it, or adds it to its parent object.
pub fn set(v: &mut Value, pointer: &str, new: Value) {
    if let Some(slot) = v.pointer_mut(pointer) {
        *slot = new;
        return;
    }
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {parent:?}"))
        .insert(key.to_owned(), new);
}

/// Removes a member of the object at a JSON pointer.
pub fn remove(v: &mut Value, pointer: &str, key: &str) {
    v.pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap()
        .remove(key)
        .unwrap_or_else(|| panic!("no {pointer}/{key}"));
}

/// Unwraps a schema (422) error and returns its message.
pub fn schema_message(r: Result<Payload, PayloadError>) -> String {
    match r {
        Err(e @ PayloadError::Schema { .. }) => {
            assert!(!e.is_malformed());
            let PayloadError::Schema { message, .. } = e else {
                unreachable!()
            };
            message
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
}

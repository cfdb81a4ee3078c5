//! Certificates (SPEC §3.2): the example parses, and each rule, broken alone, gives its error.

mod spec_examples;

use reman_ledger::certificate::{CertificateError, CertificateId, TestOutcome};
use reman_ledger::payload::{Payload, PayloadError, PayloadType, parse};
use serde_json::{Value, json};
use spec_examples::*;

const TY: PayloadType = PayloadType::Certificate;

fn cert_err(mutate: impl FnOnce(&mut Value)) -> CertificateError {
    match parse_mutated(TY, &certificate_text(), mutate) {
        Err(e @ PayloadError::Certificate(_)) => {
            assert!(!e.is_malformed(), "content errors are 422");
            let PayloadError::Certificate(inner) = e else {
                unreachable!()
            };
            inner
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

fn cert_ok(mutate: impl FnOnce(&mut Value)) {
    if let Err(e) = parse_mutated(TY, &certificate_text(), mutate) {
        panic!("expected acceptance, got {e}");
    }
}

fn schema(mutate: impl FnOnce(&mut Value)) -> String {
    schema_message(parse_mutated(TY, &certificate_text(), mutate))
}

#[test]
fn spec_example_verbatim_is_refused_for_its_check_digit() {
    // The SPEC example's GTIN does not pass the GS1 check digit rule the SPEC itself requires.
    let err = parse(TY.media_type(), SPEC_CERTIFICATE.as_bytes()).unwrap_err();
    assert!(!err.is_malformed());
    assert_eq!(
        err,
        PayloadError::Certificate(CertificateError::GtinCheckDigit {
            gtin: SPEC_GTIN.into(),
            expected: 9
        })
    );
}

#[test]
fn spec_example_with_corrected_gtin_parses() {
    let text = certificate_text();
    let Payload::Certificate(c) = parse(TY.media_type(), text.as_bytes()).unwrap() else {
        panic!("not a certificate")
    };
    assert_eq!(c.product.gtin, FIXED_GTIN);
    assert_eq!(c.product.serial, "RM-2025-000123");
    assert_eq!(c.product.category.as_deref(), Some("engine"));
    assert_eq!(c.core.origin_country, "DE");
    assert_eq!(c.process.country, "CN");
    assert_eq!(c.process.steps.as_ref().unwrap().len(), 6);
    assert_eq!(
        c.process.replaced_parts.as_ref().unwrap()[0].new,
        Some(true)
    );
    assert_eq!(c.process.tests[0].result, TestOutcome::Pass);
    assert_eq!(c.warranty_months, 24);
    assert_eq!(c.marking, "再制造产品 / Remanufactured");
    let env = c.environment.as_ref().unwrap();
    assert_eq!(env.mass_kg, Some(182.5));
    assert_eq!(env.energy_saved_kwh, Some(1200.0));
    assert_eq!(c.issued, "2026-11-21");
    assert_eq!(c.supersedes, None);
    assert_eq!(c.extensions, None);
    // Serializing and parsing again gives the same certificate.
    let again = serde_json::to_vec(&c).unwrap();
    assert_eq!(
        parse(TY.media_type(), &again).unwrap(),
        Payload::Certificate(c)
    );
}

#[test]
fn minimal_certificate_parses() {
    let text = json!({
        "product": {"gtin": "09506000134352", "serial": "1", "name": "starter", "hs_code": "8511400000"},
        "core": {"origin_country": "FR"},
        "process": {"country": "PL", "completed": "2024-02-29", "standards": ["EN 45553"],
                    "tests": [{"name": "bench", "result": "pass"}]},
        "warranty_months": 1, "marking": "Remanufactured", "issued": "2024-02-29"
    });
    parse(TY.media_type(), text.to_string().as_bytes()).unwrap();
}

#[test]
fn certificate_id_known_answers() {
    // SHA-256("") = e3b0c442 98fc1c14 9afbf4c8 996fb924 27ae41e4 ...
    assert_eq!(
        CertificateId::of_payload(b"").to_string(),
        "e3b0c44298fc1c149afbf4c8996fb924"
    );
    // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 b00361a3 ...
    let id = CertificateId::of_payload(b"abc");
    assert_eq!(id.to_string(), "ba7816bf8f01cfea414140de5dae2223");
    assert_eq!(id.0[0], 0xba);
    assert_eq!(
        "ba7816bf8f01cfea414140de5dae2223".parse::<CertificateId>(),
        Ok(id)
    );
    assert_eq!(
        serde_json::to_string(&id).unwrap(),
        "\"ba7816bf8f01cfea414140de5dae2223\""
    );
}

#[test]
fn certificate_id_malformed() {
    for bad in [
        "",
        "BA7816BF8F01CFEA414140DE5DAE2223",
        "ba7816bf8f01cfea414140de5dae222",
        "ba7816bf8f01cfea414140de5dae22230",
        "ba7816bf8f01cfea414140de5dae222g",
    ] {
        assert_eq!(
            bad.parse::<CertificateId>(),
            Err(CertificateError::MalformedId(bad.into()))
        );
    }
}

// ---- product ----

#[test]
fn gtin_wrong_check_digit() {
    let e = cert_err(|v| set(v, "/product/gtin", json!("09506000134353")));
    assert_eq!(
        e,
        CertificateError::GtinCheckDigit {
            gtin: "09506000134353".into(),
            expected: 2
        }
    );
    assert!(e.to_string().contains("check digit 2"));
}

#[test]
fn gtin_not_padded_to_14() {
    let e = cert_err(|v| set(v, "/product/gtin", json!("9506000134352")));
    assert_eq!(e, CertificateError::GtinFormat("9506000134352".into()));
    assert!(e.to_string().contains("left-pad"));
}

#[test]
fn gtin_with_letters() {
    let e = cert_err(|v| set(v, "/product/gtin", json!("0950600013435X")));
    assert_eq!(e, CertificateError::GtinFormat("0950600013435X".into()));
}

#[test]
fn gtin_as_number_is_a_schema_error() {
    let msg = schema(|v| set(v, "/product/gtin", json!(9506000134352u64)));
    assert!(msg.contains("expected a string"), "{msg}");
}

#[test]
fn serial_empty() {
    let e = cert_err(|v| set(v, "/product/serial", json!("")));
    assert_eq!(
        e,
        CertificateError::SerialLength {
            serial: String::new(),
            length: 0
        }
    );
}

#[test]
fn serial_too_long() {
    let long = "A".repeat(21);
    let e = cert_err(|v| set(v, "/product/serial", json!(long)));
    assert_eq!(
        e,
        CertificateError::SerialLength {
            serial: long.clone(),
            length: 21
        }
    );
    cert_ok(|v| set(v, "/product/serial", json!("A".repeat(20))));
}

#[test]
fn serial_bad_character() {
    let e = cert_err(|v| set(v, "/product/serial", json!("RM 2025#1")));
    assert_eq!(
        e,
        CertificateError::SerialCharacter {
            serial: "RM 2025#1".into(),
            character: ' '
        }
    );
    let e = cert_err(|v| set(v, "/product/serial", json!("RM-№1")));
    assert!(matches!(
        e,
        CertificateError::SerialCharacter {
            character: '№', ..
        }
    ));
}

#[test]
fn name_empty() {
    assert_eq!(
        cert_err(|v| set(v, "/product/name", json!(""))),
        CertificateError::EmptyName
    );
    assert_eq!(
        cert_err(|v| set(v, "/product/name", json!("  \t"))),
        CertificateError::EmptyName
    );
}

#[test]
fn hs_code_wrong_length() {
    for bad in ["84082", "8408201", "840820100", "84082010000"] {
        let e = cert_err(|v| set(v, "/product/hs_code", json!(bad)));
        assert_eq!(e, CertificateError::InvalidHsCode(bad.into()));
    }
    cert_ok(|v| set(v, "/product/hs_code", json!("84082010")));
    cert_ok(|v| set(v, "/product/hs_code", json!("8408201000")));
}

#[test]
fn hs_code_with_dots() {
    let e = cert_err(|v| set(v, "/product/hs_code", json!("8408.20")));
    assert_eq!(e, CertificateError::InvalidHsCode("8408.20".into()));
}

// ---- countries ----

#[test]
fn origin_country_not_iso() {
    for bad in ["UK", "EU", "XX", "de", "DEU"] {
        let e = cert_err(|v| set(v, "/core/origin_country", json!(bad)));
        assert_eq!(
            e,
            CertificateError::InvalidCountry {
                field: "core.origin_country",
                value: bad.into()
            }
        );
    }
}

#[test]
fn process_country_not_iso() {
    let e = cert_err(|v| set(v, "/process/country", json!("cn")));
    assert_eq!(
        e,
        CertificateError::InvalidCountry {
            field: "process.country",
            value: "cn".into()
        }
    );
}

// ---- dates ----

#[test]
fn completed_not_a_calendar_date() {
    let e = cert_err(|v| set(v, "/process/completed", json!("2026-02-30")));
    assert_eq!(
        e,
        CertificateError::InvalidDate {
            field: "process.completed",
            value: "2026-02-30".into()
        }
    );
}

#[test]
fn issued_not_yyyy_mm_dd() {
    for bad in [
        "2026-11-21T00:00:00Z",
        "21.11.2026",
        "2026-11-1",
        "20261121",
    ] {
        let e = cert_err(|v| set(v, "/issued", json!(bad)));
        assert_eq!(
            e,
            CertificateError::InvalidDate {
                field: "issued",
                value: bad.into()
            }
        );
    }
}

#[test]
fn issued_before_completed() {
    let e = cert_err(|v| set(v, "/issued", json!("2026-11-19")));
    assert_eq!(
        e,
        CertificateError::IssuedBeforeCompleted {
            issued: "2026-11-19".into(),
            completed: "2026-11-20".into()
        }
    );
    // The same day is fine.
    cert_ok(|v| set(v, "/issued", json!("2026-11-20")));
}

// ---- standards and tests ----

#[test]
fn no_standards() {
    assert_eq!(
        cert_err(|v| set(v, "/process/standards", json!([]))),
        CertificateError::NoStandards
    );
}

#[test]
fn empty_standard() {
    assert_eq!(
        cert_err(|v| set(v, "/process/standards", json!(["GB/T 34600-2017", " "]))),
        CertificateError::EmptyStandard { index: 1 }
    );
}

#[test]
fn missing_standards_is_a_schema_error() {
    let msg = schema(|v| remove(v, "/process", "standards"));
    assert!(msg.contains("missing field `standards`"), "{msg}");
}

#[test]
fn no_tests() {
    assert_eq!(
        cert_err(|v| set(v, "/process/tests", json!([]))),
        CertificateError::NoTests
    );
}

#[test]
fn empty_test_name() {
    assert_eq!(
        cert_err(|v| set(v, "/process/tests/0/name", json!(""))),
        CertificateError::EmptyTestName { index: 0 }
    );
}

#[test]
fn failed_test_is_refused() {
    let e = cert_err(|v| {
        set(
            v,
            "/process/tests",
            json!([
                {"name": "dynamometer power test", "result": "pass"},
                {"name": "oil leak test", "result": "fail"}
            ]),
        )
    });
    assert_eq!(
        e,
        CertificateError::FailedTest {
            name: "oil leak test".into()
        }
    );
    assert!(
        e.to_string()
            .contains("a unit that failed a test is not a remanufactured product")
    );
}

#[test]
fn test_result_neither_pass_nor_fail() {
    let msg = schema(|v| set(v, "/process/tests/0/result", json!("passed")));
    assert!(msg.contains("unknown variant `passed`"), "{msg}");
    assert!(msg.contains("`pass`") && msg.contains("`fail`"), "{msg}");
}

// ---- warranty, marking ----

#[test]
fn warranty_zero() {
    let e = cert_err(|v| set(v, "/warranty_months", json!(0)));
    assert_eq!(e, CertificateError::NoWarranty);
}

#[test]
fn warranty_negative_or_fractional_is_a_schema_error() {
    let msg = schema(|v| set(v, "/warranty_months", json!(-1)));
    assert!(msg.contains("invalid value: integer `-1`"), "{msg}");
    let msg = schema(|v| set(v, "/warranty_months", json!(1.5)));
    assert!(msg.contains("floating point"), "{msg}");
}

#[test]
fn marking_empty() {
    assert_eq!(
        cert_err(|v| set(v, "/marking", json!(""))),
        CertificateError::EmptyMarking
    );
}

// ---- environment ----

#[test]
fn environment_negative() {
    for field in [
        "mass_kg",
        "material_reuse_pct",
        "energy_saved_kwh",
        "co2e_saved_kg",
    ] {
        let e = cert_err(|v| set(v, &format!("/environment/{field}"), json!(-0.5)));
        match e {
            CertificateError::NegativeEnvironmentValue { field: f, value } => {
                assert_eq!(f, format!("environment.{field}"));
                assert_eq!(value, -0.5);
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn reuse_pct_over_100() {
    let e = cert_err(|v| set(v, "/environment/material_reuse_pct", json!(100.5)));
    assert_eq!(e, CertificateError::ReusePctOver100(100.5));
    cert_ok(|v| set(v, "/environment/material_reuse_pct", json!(100)));
    cert_ok(|v| set(v, "/environment/material_reuse_pct", json!(0)));
}

#[test]
fn environment_is_optional() {
    cert_ok(|v| remove(v, "", "environment"));
}

// ---- unknown fields, extensions, supersedes ----

#[test]
fn unknown_top_level_field_is_named() {
    let msg = schema(|v| set(v, "/colour", json!("red")));
    assert!(msg.contains("unknown field `colour`"), "{msg}");
}

#[test]
fn unknown_nested_field_is_named() {
    let msg = schema(|v| set(v, "/product/colour", json!("red")));
    assert!(msg.contains("unknown field `colour`"), "{msg}");
    let msg = schema(|v| set(v, "/process/tests/0/operator", json!("J. Li")));
    assert!(msg.contains("unknown field `operator`"), "{msg}");
    let msg = schema(|v| set(v, "/environment/water_l", json!(3)));
    assert!(msg.contains("unknown field `water_l`"), "{msg}");
}

#[test]
fn missing_required_field_is_named() {
    let msg = schema(|v| remove(v, "/product", "gtin"));
    assert!(msg.contains("missing field `gtin`"), "{msg}");
    let msg = schema(|v| remove(v, "", "issued"));
    assert!(msg.contains("missing field `issued`"), "{msg}");
}

#[test]
fn anything_goes_inside_extensions() {
    cert_ok(|v| {
        set(
            v,
            "/extensions",
            json!({"eu_dpp": {"id": "x", "any": [1, null, {"deep": true}]}}),
        )
    });
    let msg = schema(|v| set(v, "/extensions", json!([1])));
    assert!(msg.contains("expected a map"), "{msg}");
}

#[test]
fn supersedes_valid_id() {
    let text = certificate_text().replace(
        "\"supersedes\": null",
        &format!("\"supersedes\": \"{CERT_ID}\""),
    );
    let Payload::Certificate(c) = parse(TY.media_type(), text.as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(c.supersedes, Some(CERT_ID.parse().unwrap()));
}

#[test]
fn supersedes_malformed_id() {
    let msg = schema(|v| set(v, "/supersedes", json!("E3B0C44298FC1C149AFBF4C8996FB924")));
    assert!(msg.contains("32 lowercase hex digits"), "{msg}");
}

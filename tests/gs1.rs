//! GS1 identifiers: known-answer GTINs, the AI 21 serial set and HS codes.

use reman_ledger::gs1::{check_digit, gtin14_is_valid, is_valid_hs_code, is_valid_serial};

/// Real GTINs whose check digits were computed by hand with the GS1 mod-10 rule.
const VALID_GTIN14: [&str; 6] = [
    // GS1's own Digital Link example GTIN.
    "09506000134352",
    // EAN-13 4006381333931 and 5901234123457, padded to 14 digits.
    "04006381333931",
    "05901234123457",
    // GS1 US example GTIN-12 614141000036, padded.
    "00614141000036",
    // A GTIN-14 with packaging indicator 1 on the same item reference.
    "10614141000033",
    // The SPEC §3.2 example with its check digit corrected (0950600099999 -> 9).
    "09506000999999",
];

#[test]
fn known_gtins_are_valid() {
    for g in VALID_GTIN14 {
        assert!(gtin14_is_valid(g), "{g}");
    }
}

#[test]
fn known_check_digits() {
    assert_eq!(check_digit("0950600013435"), Some(2));
    assert_eq!(check_digit("0400638133393"), Some(1));
    assert_eq!(check_digit("0590123412345"), Some(7));
    assert_eq!(check_digit("0061414100003"), Some(6));
    assert_eq!(check_digit("1061414100003"), Some(3));
    assert_eq!(check_digit("0950600099999"), Some(9));
}

#[test]
fn spec_example_gtin_has_a_wrong_check_digit() {
    // SPEC §3.2 shows 09506000999995, but the GS1 check digit of 0950600099999 is 9.
    assert!(!gtin14_is_valid("09506000999995"));
}

#[test]
fn every_wrong_check_digit_is_refused() {
    for d in 0..=9u8 {
        let g = format!("0950600013435{d}");
        assert_eq!(gtin14_is_valid(&g), d == 2, "{g}");
    }
}

#[test]
fn gtin_shape_is_refused() {
    for bad in [
        "",
        "9506000134352",   // 13 digits: must be padded
        "009506000134352", // 15 digits
        "0950600013435a",
        "0950600013435 ",
        " 09506000134352",
        "0950600013435２", // full-width digit
    ] {
        assert!(!gtin14_is_valid(bad), "{bad:?}");
    }
}

#[test]
fn check_digit_needs_13_digits() {
    assert_eq!(check_digit("095060001343"), None);
    assert_eq!(check_digit("09506000134352"), None);
    assert_eq!(check_digit("095060001343x"), None);
}

#[test]
fn serials_in_the_82_character_set() {
    assert!(is_valid_serial("RM-2025-000123"));
    assert!(is_valid_serial("1"));
    assert!(is_valid_serial("!\"%&'()*+,-./:;<=>?_"));
    assert!(is_valid_serial("ABCDEFGHIJKLMNOPQRST")); // exactly 20
    assert!(is_valid_serial("abcdefghijklmnopqrst"));
}

#[test]
fn serials_refused() {
    for bad in [
        "",
        "ABCDEFGHIJKLMNOPQRSTU", // 21
        "RM 2025",               // space
        "RM#1",
        "RM~1",
        "RM@1",
        "RM\\1",
        "RÉ-1",
        "再制造",
    ] {
        assert!(!is_valid_serial(bad), "{bad:?}");
    }
}

#[test]
fn hs_codes() {
    for ok in ["840820", "84082010", "8408201000"] {
        assert!(is_valid_hs_code(ok), "{ok}");
    }
    for bad in [
        "",
        "84082",
        "8408201",
        "840820100",
        "84082010000",
        "8408.20",
        "84082a",
    ] {
        assert!(!is_valid_hs_code(bad), "{bad:?}");
    }
}

/// SPEC §3.2: clients left-pad GTIN-8/12/13 with zeros; nothing else is padded.
#[test]
fn short_gtins_are_padded_to_14_digits_and_nothing_else() {
    use reman_ledger::gs1::{gtin14_is_valid, pad_to_gtin14};
    assert_eq!(pad_to_gtin14("96385074").as_deref(), Some("00000096385074"));
    assert_eq!(
        pad_to_gtin14("036000291452").as_deref(),
        Some("00036000291452")
    );
    assert_eq!(
        pad_to_gtin14("4006381333931").as_deref(),
        Some("04006381333931")
    );
    assert!(gtin14_is_valid(&pad_to_gtin14("4006381333931").unwrap()));
    for not_short in [
        "09506007770010",
        "1234567",
        "123456789",
        "40063813339X1",
        "",
    ] {
        assert_eq!(pad_to_gtin14(not_short), None, "{not_short:?}");
    }
}

//! ISO 3166-1 alpha-2 codes.

use reman_ledger::country::{ALPHA2, COUNT, is_iso3166_alpha2};

#[test]
fn exactly_the_249_assigned_codes() {
    assert_eq!(COUNT, 249);
    assert_eq!(ALPHA2.len(), 249);
    assert!(ALPHA2.iter().all(|c| is_iso3166_alpha2(c)));
}

#[test]
fn common_and_edge_codes_accepted() {
    for c in [
        "CN", "DE", "US", "GB", "AD", "ZW", "SS", "BQ", "CW", "SX", "AX", "TW", "PS",
    ] {
        assert!(is_iso3166_alpha2(c), "{c}");
    }
}

#[test]
fn unassigned_reserved_and_malformed_refused() {
    for c in [
        "UK", "EU", "XX", "XK", "AN", "YU", "ZZ", "AA", "QM", "cn", "Cn", "", "C", "CHN", "C1",
    ] {
        assert!(!is_iso3166_alpha2(c), "{c:?}");
    }
}

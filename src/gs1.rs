//! GS1 identifiers used by certificates (SPEC §3.2): GTIN-14 with its mod-10 check digit,
//! serial numbers (GS1 Application Identifier 21) and HS tariff codes.
//!
//! These are plain predicates so that the certificate rules, the GS1 Digital Link resolver and
//! the command line all judge identifiers the same way.

/// The number of digits of a GTIN-14.
pub const GTIN14_LEN: usize = 14;

/// The longest serial number GS1 AI 21 allows.
pub const MAX_SERIAL_LEN: usize = 20;

/// Computes the GS1 mod-10 check digit of the 13 data digits of a GTIN-14.
///
/// Weights alternate 3, 1, 3, ... from the leftmost data digit (so the digit next to the check
/// digit has weight 3), and the check digit brings the weighted sum to a multiple of 10.
/// Returns `None` unless `digits13` is exactly 13 ASCII digits.
pub fn check_digit(digits13: &str) -> Option<u8> {
    if digits13.len() != GTIN14_LEN - 1 || !digits13.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = digits13
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 { 3 * d } else { d }
        })
        .sum();
    // The result is in 0..=9, so the narrowing cannot lose anything.
    Some(((10 - sum % 10) % 10) as u8)
}

/// Returns whether `gtin` is a GTIN-14: exactly 14 ASCII digits whose last digit is the GS1
/// check digit of the first 13. Shorter GTINs must be left-padded with zeros first.
pub fn gtin14_is_valid(gtin: &str) -> bool {
    match (
        gtin.get(..GTIN14_LEN - 1),
        gtin.as_bytes().get(GTIN14_LEN - 1),
    ) {
        (Some(data), Some(&last)) if gtin.len() == GTIN14_LEN && last.is_ascii_digit() => {
            check_digit(data) == Some(last - b'0')
        }
        _ => false,
    }
}

/// A GTIN-8, GTIN-12 or GTIN-13 left-padded with zeros to 14 digits, as SPEC §3.2 asks
/// clients to send it; `None` for anything else (a GTIN-14 needs no padding, other lengths
/// are not GTINs).
pub fn pad_to_gtin14(gtin: &str) -> Option<String> {
    (matches!(gtin.len(), 8 | 12 | 13) && gtin.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{gtin:0>GTIN14_LEN$}"))
}

/// Returns whether `c` belongs to the GS1 AI encodable character set 82:
/// `! " % & ' ( ) * + , - . / 0-9 : ; < = > ? A-Z _ a-z`.
pub fn is_cset82(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '!' | '"'
                | '%'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | '-'
                | '.'
                | '/'
                | ':'
                | ';'
                | '<'
                | '='
                | '>'
                | '?'
                | '_'
        )
}

/// Returns whether `serial` is a valid GS1 AI 21 serial number: 1 to 20 characters, all from
/// the GS1 82-character set (see [`is_cset82`]).
pub fn is_valid_serial(serial: &str) -> bool {
    // Every character of the set is ASCII, so counting bytes after the set check is exact.
    serial.chars().all(is_cset82) && (1..=MAX_SERIAL_LEN).contains(&serial.len())
}

/// Returns whether `code` is a Harmonized System tariff code: 6, 8 or 10 ASCII digits
/// (the international 6-digit heading, optionally with national sub-headings).
pub fn is_valid_hs_code(code: &str) -> bool {
    matches!(code.len(), 6 | 8 | 10) && code.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cset82_has_exactly_82_characters() {
        let n = (0u8..=127).filter(|&b| is_cset82(char::from(b))).count();
        assert_eq!(n, 82);
        for c in [
            '#', '$', '@', '[', '\\', ']', '^', '`', '{', '|', '}', '~', ' ',
        ] {
            assert!(!is_cset82(c), "{c:?} is not in set 82");
        }
    }

    #[test]
    fn check_digit_of_all_zeros_and_all_nines() {
        assert_eq!(check_digit("0000000000000"), Some(0));
        // 7 threes and 6 ones: 9 * (7 * 3 + 6) = 243, so the check digit is 7.
        assert_eq!(check_digit("9999999999999"), Some(7));
    }
}

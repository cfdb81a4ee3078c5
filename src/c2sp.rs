//! Line-level pieces shared by the C2SP text formats this ledger speaks (tlog-tiles paths,
//! tlog-proof, tlog-witness requests): canonical decimals and base64 hash lines. Pure.

use crate::merkle::Hash;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// A canonical ASCII decimal: digits only, no leading zero (but `0` itself), within `u64`.
pub fn decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Why hash lines could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashLinesError {
    /// The text ends before the empty line that closes the hashes.
    Unterminated,
    /// A line is not a standard base64 SHA-256 hash.
    NotAHash,
    /// More lines than the format allows.
    TooMany,
}

/// Reads newline-terminated base64 SHA-256 hash lines up to and including the empty line that
/// closes them, at most `max`; returns the hashes and the text after the empty line.
pub fn read_hash_lines(mut text: &str, max: usize) -> Result<(Vec<Hash>, &str), HashLinesError> {
    let mut hashes = Vec::new();
    loop {
        let (line, rest) = text.split_once('\n').ok_or(HashLinesError::Unterminated)?;
        text = rest;
        if line.is_empty() {
            return Ok((hashes, text));
        }
        if hashes.len() == max {
            return Err(HashLinesError::TooMany);
        }
        let h = B64
            .decode(line)
            .ok()
            .and_then(|b| Hash::try_from(b.as_slice()).ok())
            .ok_or(HashLinesError::NotAHash)?;
        hashes.push(h);
    }
}

/// Writes each hash as a base64 line, then the empty line that closes them.
pub fn write_hash_lines(out: &mut String, hashes: &[Hash]) {
    for h in hashes {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_canonical() {
        for (s, n) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("18446744073709551615", Some(u64::MAX)),
        ] {
            assert_eq!(decimal(s), n, "{s}");
        }
        for s in [
            "",
            "00",
            "01",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1a",
            "18446744073709551616",
            "٣",
        ] {
            assert_eq!(decimal(s), None, "{s:?}");
        }
    }

    #[test]
    fn hash_lines_round_trip_and_stop_at_the_empty_line() {
        let hashes = [[1u8; 32], [2u8; 32]];
        let mut text = String::new();
        write_hash_lines(&mut text, &hashes);
        text.push_str("rest\n");
        let (read, rest) = read_hash_lines(&text, 63).unwrap();
        assert_eq!((read.as_slice(), rest), (&hashes[..], "rest\n"));
        assert_eq!(read_hash_lines("\nx", 0), Ok((vec![], "x")));
        assert_eq!(read_hash_lines(&text, 1), Err(HashLinesError::TooMany));
        assert_eq!(
            read_hash_lines("AAAA\n\n", 9),
            Err(HashLinesError::NotAHash)
        );
        assert_eq!(read_hash_lines("!\n\n", 9), Err(HashLinesError::NotAHash));
        let unterminated = B64.encode([0u8; 32]) + "\n";
        assert_eq!(
            read_hash_lines(&unterminated, 9),
            Err(HashLinesError::Unterminated)
        );
    }
}

//! Log entries (SPEC §4): the exact bytes the log hashes, stores, serves and audits.
//!
//! An entry is written by the log as compact JSON with a fixed field order:
//! `{"v":1,"index":N,"integrated_time":"…Z","prev":"<64 hex>","envelope":{…}}`.
//! Because the bytes are what is hashed, [`Entry::parse`] accepts only the canonical form that
//! [`Entry::to_bytes`] writes: any other spelling of the same content is a different entry.

use crate::dsse::{DsseError, Envelope};
use crate::merkle::Hash;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The largest entry the log writes (the C2SP tlog-tiles entry-bundle limit).
pub const MAX_ENTRY_BYTES: usize = 65_535;

/// The entry format version.
pub const VERSION: u64 = 1;

/// Why bytes are not a valid log entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Not JSON of the entry shape.
    #[error("entry is not a JSON object with v, index, integrated_time, prev, envelope: {0}")]
    Json(String),
    /// An unsupported format version.
    #[error("entry format version {0} is not supported (expected 1)")]
    Version(u64),
    /// The time is not RFC 3339 UTC with milliseconds.
    #[error(
        "integrated_time {0:?} is not RFC 3339 UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)"
    )]
    Time(String),
    /// `prev` is not 64 lowercase hex digits.
    #[error("prev {0:?} is not 64 lowercase hex digits")]
    Prev(String),
    /// The embedded envelope is invalid.
    #[error("entry envelope: {0}")]
    Envelope(#[from] DsseError),
    /// The bytes are valid content but not in the canonical form the log writes.
    #[error("entry bytes are not in the canonical form the log writes")]
    NotCanonical,
    /// The entry is larger than the log allows.
    #[error("entry of {0} bytes exceeds the limit of 65535 bytes")]
    TooLarge(usize),
}

/// One logged submission, as the log wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, from 0.
    pub index: u64,
    /// The log's clock when it sequenced the entry, Unix milliseconds.
    pub integrated_time_ms: u64,
    /// Leaf hash of the previous entry (zeros for entry 0): the hash chain.
    pub prev: Hash,
    /// The signed submission.
    pub envelope: Envelope,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry<'a> {
    v: u64,
    index: u64,
    integrated_time: String,
    prev: String,
    #[serde(borrow)]
    envelope: &'a RawValue,
}

/// The last millisecond of year 9999: [`format_time_ms`] writes four-digit years only.
const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// Formats Unix milliseconds as RFC 3339 UTC with exactly three fractional digits.
///
/// Written by hand rather than with `time`'s formatter: every lookup formats one (and every
/// read of a stored entry checks one), and the generic formatter cost more than the rest of
/// the entry's parse.
pub fn format_time_ms(ms: u64) -> String {
    if ms > MAX_TIME_MS {
        // Beyond year 9999: never produced by a sane clock; keep the number visible.
        return format!("@{ms}");
    }
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let fields = [
        (year / 100) as u32,
        (year % 100) as u32,
        month,
        day,
        ms_of_day as u32 / 3_600_000,
        ms_of_day as u32 / 60_000 % 60,
        ms_of_day as u32 / 1000 % 60,
    ];
    let mut out = *b"0000-00-00T00:00:00.000Z";
    for (at, v) in [0, 2, 5, 8, 11, 14, 17].into_iter().zip(fields) {
        out[at] = b'0' + (v / 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    }
    let millis = (ms % 1000) as u32;
    out[20] = b'0' + (millis / 100) as u8;
    out[21] = b'0' + (millis / 10 % 10) as u8;
    out[22] = b'0' + (millis % 10) as u8;
    out.iter().map(|&b| b as char).collect()
}

/// Parses the log's time form back to Unix milliseconds (only the exact form
/// [`format_time_ms`] writes: `YYYY-MM-DDTHH:MM:SS.mmmZ`, a real date from 1970 to 9999).
pub fn parse_time_ms(s: &str) -> Option<u64> {
    let b: &[u8; 24] = s.as_bytes().try_into().ok()?;
    let num = |at: usize, len: usize| -> Option<u64> {
        b[at..at + len].iter().try_fold(0u64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
        })
    };
    let punctuation = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if punctuation.iter().any(|&(at, c)| b[at] != c) || &b[19..20] != b"." || b[23] != b'Z' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second, millis) = (num(11, 2)?, num(14, 2)?, num(17, 2)?, num(20, 3)?);
    let month_days = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if year < 1970 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date from 1970 on (H. Hinnant's
/// `days_from_civil`, with March as the first month so that leap days come last).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (y / 400, y % 400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let (era, day_of_era) = (z / 146_097, z % 146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn parse_hash_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).ok()?;
    Some(h)
}

impl Entry {
    /// The exact bytes of the entry: what the log hashes and serves.
    pub fn to_bytes(&self) -> Vec<u8> {
        Entry::encode(
            self.index,
            self.integrated_time_ms,
            &self.prev,
            &self.envelope.to_json(),
        )
    }

    /// The entry bytes from their parts, the envelope already in its canonical JSON
    /// ([`Envelope::to_json`]), so that the sequencer does not encode it twice.
    pub fn encode(
        index: u64,
        integrated_time_ms: u64,
        prev: &Hash,
        envelope_json: &str,
    ) -> Vec<u8> {
        Entry::encode_at(
            index,
            &format_time_ms(integrated_time_ms),
            prev,
            envelope_json,
        )
    }

    /// [`Entry::encode`] with the time already in the log's text form ([`format_time_ms`]):
    /// a batch's entries share one time, which the sequencer formats once.
    pub fn encode_at(
        index: u64,
        integrated_time: &str,
        prev: &Hash,
        envelope_json: &str,
    ) -> Vec<u8> {
        let env = envelope_json;
        let mut out = Vec::with_capacity(env.len() + 160);
        out.extend_from_slice(b"{\"v\":1,\"index\":");
        out.extend_from_slice(index.to_string().as_bytes());
        out.extend_from_slice(b",\"integrated_time\":\"");
        out.extend_from_slice(integrated_time.as_bytes());
        out.extend_from_slice(b"\",\"prev\":\"");
        let mut prev_hex = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(prev, &mut prev_hex);
        out.extend_from_slice(&prev_hex);
        out.extend_from_slice(b"\",\"envelope\":");
        out.extend_from_slice(env.as_bytes());
        out.push(b'}');
        out
    }

    /// Parses entry bytes, accepting only the canonical form.
    pub fn parse(bytes: &[u8]) -> Result<Entry, EntryError> {
        let entry = Entry::parse_stored(bytes)?;
        if entry.to_bytes() != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }

    /// The certificate ID, when the entry logs a certificate (by its envelope's payload type;
    /// the payload itself was checked when it was logged).
    pub fn certificate_id(&self) -> Option<crate::certificate::CertificateId> {
        (self.envelope.payload_type == crate::payload::PayloadType::Certificate.media_type())
            .then(|| crate::certificate::CertificateId::of_payload(&self.envelope.payload))
    }

    /// Parses entry bytes read back from this ledger's own store, to serve them: every check
    /// of [`Entry::parse`] but the last, the canonical form, which the sequencer's encoding
    /// guarantees and `audit` checks (re-encoding took a third of the parse).
    pub fn parse_stored(bytes: &[u8]) -> Result<Entry, EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge(bytes.len()));
        }
        let raw: RawEntry<'_> =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Json(e.to_string()))?;
        if raw.v != VERSION {
            return Err(EntryError::Version(raw.v));
        }
        let integrated_time_ms = parse_time_ms(&raw.integrated_time)
            .ok_or_else(|| EntryError::Time(raw.integrated_time.clone()))?;
        let prev = parse_hash_hex(&raw.prev).ok_or_else(|| EntryError::Prev(raw.prev.clone()))?;
        let envelope = Envelope::parse(raw.envelope.get().as_bytes())?;
        Ok(Entry {
            index: raw.index,
            integrated_time_ms,
            prev,
            envelope,
        })
    }

    /// The integrated time in the log's text form.
    pub fn integrated_time(&self) -> String {
        format_time_ms(self.integrated_time_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_form() {
        assert_eq!(
            format_time_ms(1_795_896_000_123),
            "2026-11-28T20:00:00.123Z"
        );
        assert_eq!(
            parse_time_ms("2026-11-28T20:00:00.123Z"),
            Some(1_795_896_000_123)
        );
        assert_eq!(parse_time_ms("2026-11-28T20:00:00.12Z"), None);
        assert_eq!(parse_time_ms("2026-11-28T21:00:00.123+01:00"), None);
    }

    /// What `time`'s RFC 3339 formatter and parser make of Unix milliseconds: the reference
    /// the hand-written functions must match exactly.
    fn reference_format(ms: u64) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
            .expect("within year 9999");
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            ms % 1000
        )
    }

    fn reference_parse(s: &str) -> Option<u64> {
        use time::format_description::well_known::Rfc3339;
        let t = time::OffsetDateTime::parse(s, &Rfc3339).ok()?;
        let ms = u64::try_from(t.unix_timestamp()).ok()? * 1000 + u64::from(t.millisecond());
        (reference_format(ms) == s).then_some(ms)
    }

    #[test]
    fn time_form_matches_the_time_crate_everywhere() {
        // Every day from 1970 to 2200 at a varying time of day, then a spread to year 9999.
        let mut points: Vec<u64> = (0..80_400u64)
            .map(|d| d * 86_400_000 + (d * 7_777_777) % 86_400_000)
            .collect();
        points.extend((0..20_000u64).map(|i| i * (MAX_TIME_MS / 20_000) + i % 1000));
        points.extend([
            0,
            999,
            86_399_999,
            951_782_400_000,
            4_107_542_399_999,
            MAX_TIME_MS,
        ]);
        for ms in points {
            let text = format_time_ms(ms);
            assert_eq!(text, reference_format(ms), "{ms}");
            assert_eq!(parse_time_ms(&text), Some(ms), "{text}");
        }
        assert_eq!(
            format_time_ms(MAX_TIME_MS + 1),
            format!("@{}", MAX_TIME_MS + 1)
        );
    }

    #[test]
    fn time_parse_refuses_what_the_time_crate_refuses() {
        let cases = [
            "2026-11-28T20:00:00.123Z",
            "2024-02-29T23:59:59.999Z",
            "2023-02-29T00:00:00.000Z",
            "2100-02-29T00:00:00.000Z",
            "2000-02-29T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-00-10T00:00:00.000Z",
            "2026-01-00T00:00:00.000Z",
            "2026-01-01T24:00:00.000Z",
            "2026-01-01T23:60:00.000Z",
            "2026-01-01T23:59:60.000Z",
            "2026-01-01t23:59:59.000Z",
            "2026-01-01T23:59:59.000z",
            "2026-01-01 23:59:59.000Z",
            "2026-01-01T23:59:59,000Z",
            "1969-12-31T23:59:59.999Z",
            "1970-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
            "+2026-01-01T00:00:00.000Z",
            "2026-1-01T00:00:00.000Z",
            "2026-01-01T00:00:00.0000Z",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.000+00:00",
            "20２6-01-01T00:00:00.000Z",
            "",
        ];
        for s in cases {
            assert_eq!(parse_time_ms(s), reference_parse(s), "{s:?}");
        }
    }
}

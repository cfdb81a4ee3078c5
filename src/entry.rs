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
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

/// Formats Unix milliseconds as RFC 3339 UTC with exactly three fractional digits.
pub fn format_time_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let millis = ms % 1000;
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            millis
        ),
        // Beyond year 9999: never produced by a sane clock; keep the number visible.
        Err(_) => format!("@{ms}"),
    }
}

/// Parses the log's time form back to Unix milliseconds (only the exact form it writes).
pub fn parse_time_ms(s: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let ms = u64::try_from(t.unix_timestamp()).ok()? * 1000 + u64::from(t.millisecond());
    (format_time_ms(ms) == s).then_some(ms)
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
}

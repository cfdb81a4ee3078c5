//! The seal and the QR code URL (SPEC §5).
//!
//! A seal is the ledger's compact signed receipt for one certificate: 101 big-endian bytes
//! that name the log key, the entry index, the integration time and the certificate ID, with
//! an Ed25519 signature by the log key that also binds the log origin, the GTIN and the serial.
//! It travels in the QR code as a GS1 Digital Link URI, so a customs officer can check it
//! offline with nothing but the ledger's public key.

use crate::keys::{KeyId, PrivateKey, PublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

/// Length in bytes of a seal.
pub const SEAL_LEN: usize = 101;

/// The only seal format version.
pub const SEAL_VERSION: u8 = 0x01;

/// Length of the signed header: version, key ID, index, integrated time, certificate ID.
pub const HEADER_LEN: usize = 37;

/// Domain-separation prefix of the signed message, so a seal signature can never be taken
/// for any other signature made by the log key.
pub const SEAL_CONTEXT: &str = "reman-ledger/seal/v1\n";

/// Why a seal or a Digital Link URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The seal does not have exactly 101 bytes.
    #[error("seal has {0} bytes, expected 101")]
    BadLength(usize),
    /// The seal's first byte is not the supported version.
    #[error("unsupported seal version 0x{0:02x}: only version 0x01 is supported")]
    UnsupportedVersion(u8),
    /// The seal text is not unpadded base64url.
    #[error(
        "seal is not valid base64url (alphabet A-Z a-z 0-9 - _, no '=' padding, no whitespace)"
    )]
    BadBase64,
    /// The seal was made by another log key than the one it is checked against.
    #[error("seal was made by log key {seal}, not by the expected log key {expected}")]
    WrongKey {
        /// The key ID in the seal.
        seal: KeyId,
        /// The ID of the key the seal was checked against.
        expected: KeyId,
    },
    /// The seal signature does not verify for this origin, GTIN and serial.
    #[error(
        "seal signature does not verify: the seal was altered or belongs to another origin, GTIN or serial"
    )]
    BadSignature,
    /// A percent-encoded text has a `%` not followed by two hex digits, or is not UTF-8.
    #[error("bad percent-encoding in {0:?}: use %XX with two hex digits for UTF-8 bytes")]
    BadPercentEncoding(String),
    /// The URL does not end in `/01/<14-digit GTIN>/21/<serial>`.
    #[error("not a GS1 Digital Link for a serialised item: {0}")]
    NotDigitalLink(String),
    /// The URL has more than one `seal` query parameter.
    #[error("the URL has more than one seal parameter: keep exactly one")]
    DuplicateSeal,
    /// A base URL that QR links cannot be built on.
    #[error("base URL {0:?} must be http:// or https://, with a host, and no query or fragment")]
    BadBaseUrl(String),
}

/// The ledger's signed receipt for one logged certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seal {
    /// ID of the log key that signed the seal.
    pub key_id: KeyId,
    /// Index of the certificate's entry in the log.
    pub index: u64,
    /// When the log sequenced the entry, in Unix seconds.
    pub integrated_time: u64,
    /// The certificate ID (first 16 bytes of SHA-256 of the payload).
    pub certificate_id: [u8; 16],
    /// Ed25519 signature by the log key over [`Seal::signed_message`].
    pub signature: [u8; 64],
}

impl Seal {
    /// Makes the seal of the certificate for (`gtin`, `serial`) logged at `index`.
    pub fn sign(
        log_key: &PrivateKey,
        origin: &str,
        gtin: &str,
        serial: &str,
        index: u64,
        integrated_time: u64,
        certificate_id: [u8; 16],
    ) -> Seal {
        let mut seal = Seal {
            key_id: log_key.id(),
            index,
            integrated_time,
            certificate_id,
            signature: [0; 64],
        };
        let msg = Seal::signed_message(origin, gtin, serial, &seal.header());
        seal.signature = log_key.sign(&msg);
        seal
    }

    /// The message the log key signs:
    /// `"reman-ledger/seal/v1\n" || origin || "\n" || gtin || "\n" || serial || "\n" || header`,
    /// `header` being the first 37 bytes of the seal.
    pub fn signed_message(
        origin: &str,
        gtin: &str,
        serial: &str,
        header: &[u8; HEADER_LEN],
    ) -> Vec<u8> {
        let mut m = Vec::with_capacity(
            SEAL_CONTEXT.len() + origin.len() + gtin.len() + serial.len() + 3 + HEADER_LEN,
        );
        m.extend_from_slice(SEAL_CONTEXT.as_bytes());
        for part in [origin, gtin, serial] {
            m.extend_from_slice(part.as_bytes());
            m.push(b'\n');
        }
        m.extend_from_slice(header);
        m
    }

    /// The signed header, bytes 0..37 of the seal.
    fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = SEAL_VERSION;
        h[1..5].copy_from_slice(&self.key_id.to_bytes());
        h[5..13].copy_from_slice(&self.index.to_be_bytes());
        h[13..21].copy_from_slice(&self.integrated_time.to_be_bytes());
        h[21..37].copy_from_slice(&self.certificate_id);
        h
    }

    /// The 101-byte binary form (big-endian fields).
    pub fn to_bytes(&self) -> [u8; SEAL_LEN] {
        let mut b = [0u8; SEAL_LEN];
        b[..HEADER_LEN].copy_from_slice(&self.header());
        b[HEADER_LEN..].copy_from_slice(&self.signature);
        b
    }

    /// Parses the binary form: exactly 101 bytes, version byte 0x01. The signature is not
    /// checked here; use [`Seal::verify`].
    pub fn from_bytes(b: &[u8]) -> Result<Seal, SealError> {
        let b: &[u8; SEAL_LEN] = b.try_into().map_err(|_| SealError::BadLength(b.len()))?;
        if b[0] != SEAL_VERSION {
            return Err(SealError::UnsupportedVersion(b[0]));
        }
        // The slices below have fixed in-range bounds on a 101-byte array.
        let mut key_id = [0u8; 4];
        let mut index = [0u8; 8];
        let mut time = [0u8; 8];
        let mut certificate_id = [0u8; 16];
        let mut signature = [0u8; 64];
        key_id.copy_from_slice(&b[1..5]);
        index.copy_from_slice(&b[5..13]);
        time.copy_from_slice(&b[13..21]);
        certificate_id.copy_from_slice(&b[21..37]);
        signature.copy_from_slice(&b[37..]);
        Ok(Seal {
            key_id: KeyId(u32::from_be_bytes(key_id)),
            index: u64::from_be_bytes(index),
            integrated_time: u64::from_be_bytes(time),
            certificate_id,
            signature,
        })
    }

    /// The text form carried in the QR URL: base64url without padding (135 characters).
    pub fn to_base64url(&self) -> String {
        B64URL.encode(self.to_bytes())
    }

    /// Parses the text form strictly: unpadded base64url with zero unused bits, then
    /// [`Seal::from_bytes`].
    pub fn from_base64url(s: &str) -> Result<Seal, SealError> {
        let raw = B64URL.decode(s).map_err(|_| SealError::BadBase64)?;
        Seal::from_bytes(&raw)
    }

    /// Checks that the seal was made by `log_key` for this origin, GTIN and serial.
    pub fn verify(
        &self,
        log_key: &PublicKey,
        origin: &str,
        gtin: &str,
        serial: &str,
    ) -> Result<(), SealError> {
        if self.key_id != log_key.id() {
            return Err(SealError::WrongKey {
                seal: self.key_id,
                expected: log_key.id(),
            });
        }
        let msg = Seal::signed_message(origin, gtin, serial, &self.header());
        log_key
            .verify(&msg, &self.signature)
            .map_err(|_| SealError::BadSignature)
    }
}

/// GS1 Digital Link percent-encoding of an AI 21 serial: unreserved URI characters
/// (`A-Z a-z 0-9 - . _ ~`) stay, every other byte becomes `%XX` (uppercase hex), as the
/// GS1 Digital Link standard requires, so `/`, `?`, `#`, `%`, `&` ... cannot break the URL.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Decodes `%XX` sequences (either hex case, as RFC 3986 allows); other characters are kept
/// as they are. Refuses a `%` without two hex digits and a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Result<String, SealError> {
    let bad = || SealError::BadPercentEncoding(s.to_owned());
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes
                .get(i + 1)
                .and_then(|&c| hex_value(c))
                .ok_or_else(bad)?;
            let lo = bytes
                .get(i + 2)
                .and_then(|&c| hex_value(c))
                .ok_or_else(bad)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Checks that QR links can be built on `base_url`: `http://` or `https://`, a host, and no
/// query, fragment or whitespace (the QR content appends a path and its own query).
pub fn check_base_url(base_url: &str) -> Result<(), SealError> {
    let rest = base_url
        .strip_prefix("https://")
        .or_else(|| base_url.strip_prefix("http://"));
    match rest {
        Some(r)
            if !r.is_empty()
                && !r.starts_with('/')
                && !r.contains(['?', '#'])
                && !r.chars().any(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(SealError::BadBaseUrl(base_url.to_owned())),
    }
}

/// QR content: `<base_url>/01/<gtin14>/21/<serial percent-encoded>?seal=<base64url>`, a GS1
/// Digital Link URI. A trailing `/` of `base_url` is dropped.
pub fn qr_url(base_url: &str, gtin: &str, serial: &str, seal: &Seal) -> String {
    let base = base_url.strip_suffix('/').unwrap_or(base_url);
    format!(
        "{base}/01/{}/21/{}?seal={}",
        percent_encode(gtin),
        percent_encode(serial),
        seal.to_base64url()
    )
}

/// A parsed GS1 Digital Link URI for a serialised item, as read from a QR code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitalLink {
    /// Everything before `/01/`: the resolver's base URL.
    pub base_url: String,
    /// The GTIN-14 (14 digits; the check digit is not checked here).
    pub gtin: String,
    /// The serial, percent-decoded.
    pub serial: String,
    /// The seal from the `seal` query parameter, if present (not yet verified).
    pub seal: Option<Seal>,
}

/// Parses a Digital Link URL, the inverse of [`qr_url`]: the path must end in
/// `/01/<14 digits>/21/<serial>`; a fragment and query parameters other than `seal` are ignored.
pub fn parse_digital_link(url: &str) -> Result<DigitalLink, SealError> {
    let not_link = |why: &str| SealError::NotDigitalLink(format!("{why} in {url:?}"));
    let url_no_fragment = url.split_once('#').map_or(url, |(u, _)| u);
    let (path, query) = match url_no_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url_no_fragment, None),
    };

    // The last four path segments are "01", the GTIN, "21" and the serial; the serial is
    // percent-encoded, so it contains no '/', and everything before "/01/" is the base URL.
    let mut parts = path.rsplitn(5, '/');
    let (Some(serial), Some(ai21), Some(gtin), Some(ai01), Some(base)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(not_link("no /01/<GTIN>/21/<serial> path"));
    };
    if ai01 != "01" || ai21 != "21" {
        return Err(not_link("the path does not end in /01/<GTIN>/21/<serial>"));
    }
    if gtin.len() != 14 || !gtin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_link("the GTIN after /01/ is not 14 digits"));
    }
    if serial.is_empty() {
        return Err(not_link("the serial after /21/ is empty"));
    }
    let serial = percent_decode(serial)?;

    let mut seal = None;
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        if let Some(value) = param.strip_prefix("seal=") {
            if seal.is_some() {
                return Err(SealError::DuplicateSeal);
            }
            seal = Some(Seal::from_base64url(value)?);
        }
    }

    Ok(DigitalLink {
        base_url: base.to_owned(),
        gtin: gtin.to_owned(),
        serial,
        seal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_examples() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(percent_encode("RM/2025%1&\"x"), "RM%2F2025%251%26%22x");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_decode("%c3%A9").unwrap(), "é");
        assert!(matches!(
            percent_decode("%2"),
            Err(SealError::BadPercentEncoding(_))
        ));
        assert!(matches!(
            percent_decode("%zz"),
            Err(SealError::BadPercentEncoding(_))
        ));
        assert!(matches!(
            percent_decode("%FF"),
            Err(SealError::BadPercentEncoding(_))
        ));
    }

    #[test]
    fn header_layout() {
        let seal = Seal {
            key_id: KeyId(0x0a0b0c0d),
            index: 1,
            integrated_time: 2,
            certificate_id: [3; 16],
            signature: [4; 64],
        };
        let h = seal.header();
        assert_eq!(h[0], 1);
        assert_eq!(&h[1..5], &[0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(h[12], 1);
        assert_eq!(h[20], 2);
        assert_eq!(&seal.to_bytes()[..37], &h);
    }
}

//! The seal and the QR URL (SPEC §5) through the public API only.

use reman_ledger::keys::{KeyId, PrivateKey};
use reman_ledger::seal::{
    DigitalLink, SEAL_LEN, Seal, SealError, parse_digital_link, percent_decode, percent_encode,
    qr_url,
};

/// RFC 8032 §7.1 TEST 1 secret key.
const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const ORIGIN: &str = "ledger.example";
const GTIN: &str = "09506000999995";
const SERIAL: &str = "RM-2025-000123";
const INDEX: u64 = 0x0102_0304_0506_0708;
const TIME: u64 = 1_795_896_000;

/// Expected bytes, computed independently with Python (hashlib, `cryptography` Ed25519):
/// key ID = SHA-256("ledger.example\n\x01" || pubkey)[0..4] = 3d9d4b31.
const EXPECTED_HEADER: &str = "01\
    3d9d4b31\
    0102030405060708\
    000000006b0b32c0\
    a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
const EXPECTED_SIG: &str = "9f6440d5a89641b8621c0730b17268cbf483a2f5ca3060cfbcbcc8fba6b443a8\
    f95539130630afb693f14cf55f16b47a9b574dcb0bc232a9f4d7f077f5f80500";
const EXPECTED_B64URL: &str = "AT2dSzEBAgMEBQYHCAAAAABrCzLAoKGio6SlpqeoqaqrrK2ur59kQNWolkG4YhwHMLFyaMv0g6L1yjBgz7y8yPumtEOo-VU5EwYwr7aT8Uz1Xxa0eptXTcsLwjKp9Nfwd_X4BQA";

fn log_key() -> PrivateKey {
    let seed: [u8; 32] = hex::decode(RFC8032_SEED).unwrap().try_into().unwrap();
    PrivateKey::from_seed(ORIGIN, &seed).unwrap()
}

fn cert_id() -> [u8; 16] {
    std::array::from_fn(|i| 0xa0 + i as u8)
}

fn seal() -> Seal {
    Seal::sign(&log_key(), ORIGIN, GTIN, SERIAL, INDEX, TIME, cert_id())
}

#[test]
fn field_layout_known_answer() {
    let s = seal();
    assert_eq!(s.key_id, KeyId(0x3d9d4b31));
    let b = s.to_bytes();
    assert_eq!(b.len(), SEAL_LEN);
    assert_eq!(SEAL_LEN, 101);
    // Field by field, at the SPEC offsets, big-endian.
    assert_eq!(b[0], 0x01);
    assert_eq!(&b[1..5], &[0x3d, 0x9d, 0x4b, 0x31]);
    assert_eq!(&b[5..13], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&b[13..21], &[0, 0, 0, 0, 0x6b, 0x0b, 0x32, 0xc0]);
    assert_eq!(&b[21..37], &cert_id());
    assert_eq!(&b[37..101], &s.signature);
    // The whole seal, against the independently computed answer.
    let expected =
        hex::decode(EXPECTED_HEADER.replace(' ', "") + &EXPECTED_SIG.replace(' ', "")).unwrap();
    assert_eq!(b.to_vec(), expected);
    assert_eq!(s.to_base64url(), EXPECTED_B64URL);
}

#[test]
fn signed_message_known_answer() {
    let header: [u8; 37] = hex::decode(EXPECTED_HEADER.replace(' ', ""))
        .unwrap()
        .try_into()
        .unwrap();
    let mut expected =
        b"reman-ledger/seal/v1\nledger.example\n09506000999995\nRM-2025-000123\n".to_vec();
    expected.extend_from_slice(&header);
    assert_eq!(
        Seal::signed_message(ORIGIN, GTIN, SERIAL, &header),
        expected
    );
    // The signature is a plain Ed25519 signature over that message.
    let sig: [u8; 64] = hex::decode(EXPECTED_SIG.replace(' ', ""))
        .unwrap()
        .try_into()
        .unwrap();
    log_key().public().verify(&expected, &sig).unwrap();
}

#[test]
fn bytes_and_base64url_round_trip() {
    let s = seal();
    assert_eq!(Seal::from_bytes(&s.to_bytes()), Ok(s));
    let text = s.to_base64url();
    assert_eq!(text.len(), 135);
    assert!(!text.contains('='));
    assert!(
        text.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_eq!(Seal::from_base64url(&text), Ok(s));

    let extreme = Seal {
        key_id: KeyId(u32::MAX),
        index: u64::MAX,
        integrated_time: 0,
        certificate_id: [0xff; 16],
        signature: [0; 64],
    };
    assert_eq!(Seal::from_bytes(&extreme.to_bytes()), Ok(extreme));
    assert_eq!(Seal::from_base64url(&extreme.to_base64url()), Ok(extreme));
}

#[test]
fn verifies_only_for_same_origin_gtin_serial_and_key() {
    let s = seal();
    let k = log_key();
    s.verify(k.public(), ORIGIN, GTIN, SERIAL).unwrap();

    assert_eq!(
        s.verify(k.public(), "other.example", GTIN, SERIAL),
        Err(SealError::BadSignature)
    );
    assert_eq!(
        s.verify(k.public(), ORIGIN, "09506000999988", SERIAL),
        Err(SealError::BadSignature)
    );
    assert_eq!(
        s.verify(k.public(), ORIGIN, GTIN, "RM-2025-000124"),
        Err(SealError::BadSignature)
    );
    // Moving text between fields must not keep the signature valid.
    assert_eq!(
        s.verify(k.public(), ORIGIN, GTIN, "RM-2025-000123\n"),
        Err(SealError::BadSignature)
    );

    let other = PrivateKey::from_seed(ORIGIN, &[9; 32]).unwrap();
    assert_eq!(
        s.verify(other.public(), ORIGIN, GTIN, SERIAL),
        Err(SealError::WrongKey {
            seal: s.key_id,
            expected: other.id()
        })
    );
}

#[test]
fn any_flipped_byte_fails() {
    let k = log_key();
    let good = seal().to_bytes();
    for pos in 0..SEAL_LEN {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = good;
            b[pos] ^= mask;
            let result =
                Seal::from_bytes(&b).and_then(|s| s.verify(k.public(), ORIGIN, GTIN, SERIAL));
            assert!(result.is_err(), "byte {pos} ^ {mask:#04x} accepted");
            // Where it fails tells that every field is covered: version, key ID, signature.
            let expected_kind = match pos {
                0 => "version",
                1..=4 => "key",
                _ => "signature",
            };
            let kind = match result {
                Err(SealError::UnsupportedVersion(_)) => "version",
                Err(SealError::WrongKey { .. }) => "key",
                Err(SealError::BadSignature) => "signature",
                other => panic!("byte {pos}: unexpected {other:?}"),
            };
            assert_eq!(kind, expected_kind, "byte {pos}");
        }
    }
}

#[test]
fn refuses_wrong_version() {
    for v in [0x00u8, 0x02, 0xff] {
        let mut b = seal().to_bytes();
        b[0] = v;
        assert_eq!(Seal::from_bytes(&b), Err(SealError::UnsupportedVersion(v)));
    }
}

#[test]
fn refuses_wrong_length() {
    let b = seal().to_bytes();
    assert_eq!(Seal::from_bytes(&b[..100]), Err(SealError::BadLength(100)));
    assert_eq!(Seal::from_bytes(&[]), Err(SealError::BadLength(0)));
    let mut long = b.to_vec();
    long.push(0);
    assert_eq!(Seal::from_bytes(&long), Err(SealError::BadLength(102)));

    // Valid base64url of the wrong length.
    let text = seal().to_base64url();
    assert_eq!(
        Seal::from_base64url(&text[..132]),
        Err(SealError::BadLength(99))
    );
    assert_eq!(Seal::from_base64url(""), Err(SealError::BadLength(0)));
}

#[test]
fn refuses_bad_base64url() {
    let text = seal().to_base64url();
    let last = text.len() - 1;
    let cases = [
        format!("{text}="),                         // padding
        text.replace('-', "+"),                     // standard alphabet
        text.replace('_', "/"),                     // standard alphabet
        format!("{} {}", &text[..60], &text[60..]), // whitespace
        format!("{text}\n"),                        // trailing newline
        format!("{}B", &text[..last]),              // unused bits not zero ("A" = 0 is canonical)
        format!("{}!", &text[..last]),              // not base64 at all
        format!("{text}A"), // impossible length (136 = 4k+4 fine, so 1 more)
    ];
    for (i, bad) in cases.iter().enumerate() {
        // The last case, 136 characters, decodes to 102 bytes: that is a length error.
        if i == cases.len() - 1 {
            assert_eq!(Seal::from_base64url(bad), Err(SealError::BadLength(102)));
            continue;
        }
        assert_eq!(
            Seal::from_base64url(bad),
            Err(SealError::BadBase64),
            "{bad:?}"
        );
    }
    assert_eq!(
        Seal::from_base64url(&format!("{text}AA")),
        Err(SealError::BadBase64)
    );
}

#[test]
fn percent_encoding() {
    assert_eq!(percent_encode("RM/2025%1&\"x"), "RM%2F2025%251%26%22x");
    assert_eq!(percent_encode("A-z_0.9~"), "A-z_0.9~");
    assert_eq!(percent_encode("a b+c?d#e"), "a%20b%2Bc%3Fd%23e");
    assert_eq!(
        percent_decode("RM%2F2025%251%26%22x").unwrap(),
        "RM/2025%1&\"x"
    );
    assert_eq!(percent_decode("%2f").unwrap(), "/");
    for bad in ["%", "%4", "%G0", "a%2", "%C3"] {
        assert_eq!(
            percent_decode(bad),
            Err(SealError::BadPercentEncoding(bad.to_owned())),
            "{bad:?}"
        );
    }
}

#[test]
fn qr_url_format() {
    let s = seal();
    let expected = format!(
        "https://ledger.example/01/09506000999995/21/RM%2F2025%251%26%22x?seal={EXPECTED_B64URL}"
    );
    assert_eq!(
        qr_url("https://ledger.example/", GTIN, "RM/2025%1&\"x", &s),
        expected
    );
    assert_eq!(
        qr_url("https://ledger.example", GTIN, "RM/2025%1&\"x", &s),
        expected
    );
}

#[test]
fn qr_url_round_trips_every_gs1_character() {
    // The GS1 AI 82-character set, in chunks of at most 20 (the AI 21 limit), plus serials
    // with the characters that matter most to a URL parser.
    let gs1 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
    assert_eq!(gs1.len(), 82);
    let chunks: Vec<String> = gs1
        .as_bytes()
        .chunks(20)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let mut serials: Vec<&str> = chunks.iter().map(String::as_str).collect();
    serials.extend([
        "RM/2025%1&\"x",
        "a?b=c&d",
        "/01/x/21/y",
        "%25",
        "+",
        "1",
        "21",
    ]);

    let k = log_key();
    for serial in serials {
        let s = Seal::sign(&k, ORIGIN, GTIN, serial, 7, TIME, cert_id());
        let url = qr_url("https://ledger.example/resolver/", GTIN, serial, &s);
        assert!(!url.contains('#') && url.matches('?').count() == 1, "{url}");
        let link = parse_digital_link(&url).unwrap();
        assert_eq!(
            link,
            DigitalLink {
                base_url: "https://ledger.example/resolver".into(),
                gtin: GTIN.into(),
                serial: serial.into(),
                seal: Some(s),
            },
            "{serial:?}"
        );
        link.seal
            .unwrap()
            .verify(k.public(), ORIGIN, &link.gtin, &link.serial)
            .unwrap();
    }
}

#[test]
fn parse_digital_link_variants() {
    let s = seal();
    let b64 = s.to_base64url();

    // Without a seal.
    let link = parse_digital_link("https://id.example/01/09506000999995/21/RM-1").unwrap();
    assert_eq!(link.base_url, "https://id.example");
    assert_eq!(link.serial, "RM-1");
    assert_eq!(link.seal, None);

    // Other query parameters and a fragment are ignored.
    let url = format!("https://id.example/01/{GTIN}/21/{SERIAL}?linkType=gs1:pip&seal={b64}&x#top");
    let link = parse_digital_link(&url).unwrap();
    assert_eq!(link.seal, Some(s));
    assert_eq!(link.serial, SERIAL);

    // The last /01/…/21/… of the path is the item; anything before it is the base URL.
    let url = format!("https://id.example/01/{GTIN}/21/old/v2/01/{GTIN}/21/{SERIAL}?seal={b64}");
    let link = parse_digital_link(&url).unwrap();
    assert_eq!(
        link.base_url,
        format!("https://id.example/01/{GTIN}/21/old/v2")
    );
    assert_eq!(link.serial, SERIAL);

    // A relative link (empty base URL), as qr_url("", …) makes it.
    let link = parse_digital_link(&qr_url("", GTIN, "x", &s)).unwrap();
    assert_eq!(link.base_url, "");
    assert_eq!(link.serial, "x");
}

#[test]
fn parse_digital_link_refusals() {
    let b64 = seal().to_base64url();
    for bad in [
        "https://id.example/",
        "https://id.example/01/09506000999995",
        "https://id.example/01/09506000999995/21/",
        "https://id.example/01/9506000999995/21/RM-1",
        "https://id.example/01/0950600099999X/21/RM-1",
        "https://id.example/01/09506000999995/10/LOT/21",
        "https://id.example/01/09506000999995/21/RM-1/extra",
        "https://id.example/02/09506000999995/21/RM-1",
        "",
    ] {
        assert!(
            matches!(parse_digital_link(bad), Err(SealError::NotDigitalLink(_))),
            "{bad:?}: {:?}",
            parse_digital_link(bad)
        );
    }
    assert!(matches!(
        parse_digital_link("https://id.example/01/09506000999995/21/RM%2"),
        Err(SealError::BadPercentEncoding(_))
    ));
    assert_eq!(
        parse_digital_link(&format!(
            "https://id.example/01/{GTIN}/21/x?seal={b64}&seal={b64}"
        )),
        Err(SealError::DuplicateSeal)
    );
    assert_eq!(
        parse_digital_link(&format!("https://id.example/01/{GTIN}/21/x?seal={b64}=")),
        Err(SealError::BadBase64)
    );
    assert_eq!(
        parse_digital_link(&format!(
            "https://id.example/01/{GTIN}/21/x?seal={}",
            &b64[..100]
        )),
        Err(SealError::BadLength(75))
    );
}

#[test]
fn base_urls_that_cannot_carry_qr_links_are_refused() {
    use reman_ledger::seal::{SealError, check_base_url};
    for ok in [
        "https://ledger.example",
        "http://127.0.0.1:8080/",
        "https://x.example/reman",
    ] {
        assert_eq!(check_base_url(ok), Ok(()), "{ok}");
    }
    for bad in [
        "ftp://x",
        "ledger.example",
        "https://",
        "https://x?y=1",
        "https://x#f",
        "https://a b",
    ] {
        assert!(
            matches!(check_base_url(bad), Err(SealError::BadBaseUrl(_))),
            "{bad}"
        );
    }
}

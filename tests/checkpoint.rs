//! Checkpoints (C2SP tlog-checkpoint v1.0.0): body format, signing, opening, every refusal.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reman_ledger::checkpoint::{Checkpoint, CheckpointError};
use reman_ledger::keys::{KeyError, PrivateKey, PublicKey};
use reman_ledger::note::{self, NoteError};

const ORIGIN: &str = "ledger.example/log";

fn log_key() -> PrivateKey {
    PrivateKey::from_seed(ORIGIN, &[7; 32]).unwrap()
}

/// RFC 6962 root of the empty tree: SHA-256 of the empty string.
const EMPTY_ROOT_B64: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

fn sample() -> Checkpoint {
    let mut root = [0u8; 32];
    for (i, b) in root.iter_mut().enumerate() {
        *b = i as u8;
    }
    Checkpoint {
        origin: ORIGIN.into(),
        size: 20852163,
        root,
        extensions: vec![],
    }
}

fn body(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn body_format_is_exact() {
    let cp = sample();
    assert_eq!(
        cp.to_body(),
        "ledger.example/log\n20852163\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    );
    let mut ext = cp.clone();
    ext.extensions = vec!["ext one".into(), "— two".into()];
    assert_eq!(
        ext.to_body(),
        format!("{}ext one\n\u{2014} two\n", cp.to_body())
    );
    assert_eq!(Checkpoint::parse_body(&ext.to_body()).unwrap(), ext);
}

#[test]
fn parses_c2sp_example_body() {
    // The example of tlog-checkpoint.md.
    let text =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let cp = Checkpoint::parse_body(text).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(
        B64.encode(cp.root),
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    );
    assert!(cp.extensions.is_empty());
    assert_eq!(cp.to_body(), text);
}

#[test]
fn empty_tree_and_max_size() {
    let cp = Checkpoint::parse_body(&body(&[ORIGIN, "0", EMPTY_ROOT_B64])).unwrap();
    assert_eq!(cp.size, 0);
    assert_eq!(
        hex::encode(cp.root),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let cp =
        Checkpoint::parse_body(&body(&[ORIGIN, "18446744073709551615", EMPTY_ROOT_B64])).unwrap();
    assert_eq!(cp.size, u64::MAX);
}

#[test]
fn sign_and_open_round_trip() {
    let key = log_key();
    let cp = sample();
    let signed = cp.sign(&key).unwrap();
    // Shape: body, blank line, one signature line by the origin.
    let (text, sigs) = signed.split_once("\n\n").unwrap();
    assert_eq!(format!("{text}\n"), cp.to_body());
    assert!(sigs.starts_with(&format!("\u{2014} {ORIGIN} ")));
    assert_eq!(sigs.matches('\n').count(), 1);
    // Deterministic.
    assert_eq!(cp.sign(&key).unwrap(), signed);
    assert_eq!(Checkpoint::open(&signed, key.public()).unwrap(), cp);
    // It is an ordinary signed note.
    assert_eq!(
        note::open(&signed, &[key.public()]).unwrap().text,
        cp.to_body()
    );
}

#[test]
fn open_ignores_cosignatures() {
    let key = log_key();
    let witness = PrivateKey::from_seed("witness.example", &[8; 32]).unwrap();
    let cp = sample();
    let signed = note::sign(&cp.to_body(), &[&key, &witness]).unwrap();
    assert_eq!(Checkpoint::open(&signed, key.public()).unwrap(), cp);
}

#[test]
fn refuses_key_name_other_than_origin() {
    let other = PrivateKey::from_seed("other.example/log", &[7; 32]).unwrap();
    let cp = sample();
    let want = CheckpointError::OriginKeyMismatch {
        origin: ORIGIN.into(),
        key_name: "other.example/log".into(),
    };
    assert_eq!(cp.sign(&other), Err(want.clone()));
    // A note signed by a key of another name over this body: verifies, but is refused.
    let signed = note::sign(&cp.to_body(), &[&other]).unwrap();
    assert_eq!(Checkpoint::open(&signed, other.public()), Err(want));
}

#[test]
fn refuses_wrong_key_and_tampering() {
    let key = log_key();
    let signed = sample().sign(&key).unwrap();
    // Another key with the same name: key ID mismatch.
    let impostor = PrivateKey::from_seed(ORIGIN, &[9; 32]).unwrap();
    assert!(matches!(
        Checkpoint::open(&signed, impostor.public()),
        Err(CheckpointError::Note(NoteError::KeyIdMismatch { .. }))
    ));
    // A different size under the real key.
    let tampered = signed.replacen("20852163", "20852164", 1);
    assert_eq!(
        Checkpoint::open(&tampered, key.public()),
        Err(CheckpointError::Note(NoteError::BadSignature(
            key.public().reference()
        )))
    );
    // Not a note at all.
    assert_eq!(
        Checkpoint::open(&sample().to_body(), key.public()),
        Err(CheckpointError::Note(NoteError::MissingSignatureBlock))
    );
    // Unknown algorithm in a vkey is refused before any checkpoint is read.
    let vkey = key.public().to_vkey();
    let (head, material) = vkey.rsplit_once('+').unwrap();
    let mut raw = B64.decode(material).unwrap();
    raw[0] = 0x04;
    assert_eq!(
        PublicKey::parse(&format!("{head}+{}", B64.encode(raw))),
        Err(KeyError::UnknownAlgorithm(0x04))
    );
}

#[test]
fn open_checks_body_after_signature() {
    // A validly signed note whose body is not a checkpoint.
    let key = log_key();
    let signed = note::sign(&body(&[ORIGIN, "012", EMPTY_ROOT_B64]), &[&key]).unwrap();
    assert_eq!(
        Checkpoint::open(&signed, key.public()),
        Err(CheckpointError::SizeLeadingZero("012".into()))
    );
}

fn parse(lines: &[&str]) -> Result<Checkpoint, CheckpointError> {
    Checkpoint::parse_body(&body(lines))
}

#[test]
fn refuses_missing_newline() {
    let text = sample().to_body();
    assert_eq!(
        Checkpoint::parse_body(text.trim_end()),
        Err(CheckpointError::MissingNewline)
    );
    assert_eq!(
        Checkpoint::parse_body(""),
        Err(CheckpointError::MissingNewline)
    );
}

#[test]
fn refuses_too_few_lines() {
    assert_eq!(parse(&[ORIGIN, "5"]), Err(CheckpointError::TooFewLines(2)));
    assert_eq!(parse(&[ORIGIN]), Err(CheckpointError::TooFewLines(1)));
}

#[test]
fn refuses_empty_origin() {
    assert_eq!(
        parse(&["", "5", EMPTY_ROOT_B64]),
        Err(CheckpointError::EmptyOrigin)
    );
    let mut cp = sample();
    cp.origin.clear();
    assert_eq!(cp.sign(&log_key()), Err(CheckpointError::EmptyOrigin));
}

#[test]
fn refuses_bad_sizes() {
    for bad in ["", "+5", "-5", " 5", "5 ", "0x10", "1_000", "5.0", "٥"] {
        assert_eq!(
            parse(&[ORIGIN, bad, EMPTY_ROOT_B64]),
            Err(CheckpointError::SizeNotDecimal(bad.into())),
            "{bad:?}"
        );
    }
    for bad in ["00", "05", "0001"] {
        assert_eq!(
            parse(&[ORIGIN, bad, EMPTY_ROOT_B64]),
            Err(CheckpointError::SizeLeadingZero(bad.into()))
        );
    }
    for bad in ["18446744073709551616", "99999999999999999999999"] {
        assert_eq!(
            parse(&[ORIGIN, bad, EMPTY_ROOT_B64]),
            Err(CheckpointError::SizeTooLarge(bad.into()))
        );
    }
}

#[test]
fn refuses_bad_roots() {
    let unpadded = EMPTY_ROOT_B64.trim_end_matches('=');
    let urlsafe = B64.encode([0xfb; 32]).replace('+', "-").replace('/', "_");
    for bad in [
        "not base64!",
        unpadded,
        &urlsafe,
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=",
    ] {
        assert_eq!(
            parse(&[ORIGIN, "5", bad]),
            Err(CheckpointError::RootNotBase64(bad.into())),
            "{bad:?}"
        );
    }
    for (len, b64) in [
        (0, String::new()),
        (31, B64.encode([1; 31])),
        (33, B64.encode([1; 33])),
    ] {
        assert_eq!(
            parse(&[ORIGIN, "5", &b64]),
            Err(CheckpointError::RootWrongLength(len))
        );
    }
    // A hex root is not base64 of 32 bytes either.
    assert_eq!(
        parse(&[ORIGIN, "5", &hex::encode([0u8; 32])]),
        Err(CheckpointError::RootWrongLength(48))
    );
}

#[test]
fn refuses_empty_extension_lines() {
    assert_eq!(
        parse(&[ORIGIN, "5", EMPTY_ROOT_B64, "ext", ""]),
        Err(CheckpointError::EmptyExtension(2))
    );
    // A blank line right after the root (as if a signature block were glued on).
    assert_eq!(
        parse(&[ORIGIN, "5", EMPTY_ROOT_B64, ""]),
        Err(CheckpointError::EmptyExtension(1))
    );
    let mut cp = sample();
    cp.extensions = vec![String::new()];
    assert_eq!(cp.sign(&log_key()), Err(CheckpointError::EmptyExtension(1)));
}

#[test]
fn refuses_control_characters_and_embedded_newlines() {
    assert_eq!(
        parse(&["ledger\texample", "5", EMPTY_ROOT_B64]),
        Err(CheckpointError::ControlCharacter)
    );
    assert_eq!(
        Checkpoint::parse_body(&format!("{ORIGIN}\r\n5\n{EMPTY_ROOT_B64}\n")),
        Err(CheckpointError::ControlCharacter)
    );
    let mut cp = sample();
    cp.origin = format!("{ORIGIN}\n6");
    assert_eq!(
        cp.sign(&log_key()),
        Err(CheckpointError::FieldHasNewline("origin"))
    );
    let mut cp = sample();
    cp.extensions = vec!["a\nb".into()];
    assert_eq!(
        cp.sign(&log_key()),
        Err(CheckpointError::FieldHasNewline("extension line"))
    );
}

//! Signed notes (C2SP signed-note v1.0.0): known-answer vectors and every refusal.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reman_ledger::keys::{KeyError, KeyId, PrivateKey, PublicKey};
use reman_ledger::note::{self, MAX_SIGNATURES, Note, NoteError, NoteSignature};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/vectors/signed-note.md"
));

/// One section of `signed-note.md`.
#[derive(Default, Debug)]
struct Section {
    vkeys: Vec<String>,
    skeys: Vec<String>,
    text: String,
    lines: Vec<String>,
}

impl Section {
    fn message(&self) -> String {
        format!("{}\n{}", self.text, self.lines.concat())
    }
}

/// Reads the vkey/skey/text/signature lines of each `## ` section of the fixture.
fn sections() -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in VECTORS.lines() {
        if line.starts_with("## ") {
            out.push(Section::default());
            continue;
        }
        let Some(s) = out.last_mut() else { continue };
        if let Some(v) = line.strip_prefix("vkey: ") {
            s.vkeys.push(v.to_owned());
        } else if let Some(v) = line.strip_prefix("skey: ") {
            s.skeys.push(v.to_owned());
        } else if let Some(v) = line.strip_prefix("text: ") {
            s.text = serde_json::from_str(v).unwrap();
        } else if line.starts_with("\u{2014} ") {
            s.lines.push(format!("{line}\n"));
        }
    }
    assert_eq!(out.len(), 2, "fixture has two sections");
    out
}

fn golang() -> Section {
    sections().remove(0)
}

fn peter() -> PublicKey {
    PublicKey::parse(&golang().vkeys[0]).unwrap()
}

fn enoch() -> PublicKey {
    PublicKey::parse(&golang().vkeys[1]).unwrap()
}

fn peter_private() -> PrivateKey {
    PrivateKey::parse(&golang().skeys[0]).unwrap()
}

const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";

#[test]
fn fixture_is_what_we_expect() {
    let g = golang();
    assert_eq!(g.text, TEXT);
    assert_eq!(g.vkeys.len(), 2);
    assert_eq!(g.lines.len(), 2);
    assert_eq!(peter().id(), KeyId(0xc74f20a3));
    assert_eq!(enoch().id(), KeyId(0xaf0cfe78));
}

#[test]
fn golang_vectors_parse() {
    let g = golang();
    let n = note::parse(&g.message()).unwrap();
    assert_eq!(n.text, TEXT);
    assert_eq!(n.signatures.len(), 2);
    assert_eq!(n.signatures[0].name, "PeterNeumann");
    assert_eq!(n.signatures[0].key_id, KeyId(0xc74f20a3));
    assert_eq!(n.signatures[0].signature.len(), 64);
    assert_eq!(n.signatures[1].name, "EnochRoot");
    assert_eq!(n.signatures[1].key_id, KeyId(0xaf0cfe78));
    assert_eq!(n.signatures[0].to_line(), g.lines[0]);
    assert_eq!(n.signatures[1].to_line(), g.lines[1]);
    assert_eq!(n.to_signed_text(), g.message());
}

#[test]
fn golang_vectors_open_with_each_and_both_keys() {
    let g = golang();
    let msg = g.message();
    let (p, e) = (peter(), enoch());

    let n = note::open(&msg, &[&p]).unwrap();
    assert_eq!(n.text, TEXT);
    assert_eq!(n.signatures.len(), 1, "EnochRoot's signature is ignored");
    assert_eq!(n.signatures[0].name, "PeterNeumann");

    let n = note::open(&msg, &[&e]).unwrap();
    assert_eq!(n.signatures.len(), 1);
    assert_eq!(n.signatures[0].name, "EnochRoot");

    let n = note::open(&msg, &[&e, &p]).unwrap();
    let names: Vec<&str> = n.signatures.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["PeterNeumann", "EnochRoot"]);

    // The vkey-text form gives the same.
    let vkeys: Vec<&str> = g.vkeys.iter().map(String::as_str).collect();
    assert_eq!(note::open_with_vkeys(&msg, &vkeys).unwrap(), n);
}

#[test]
fn golang_vector_resign_reproduces_line() {
    let g = golang();
    let signed = note::sign(TEXT, &[&peter_private()]).unwrap();
    assert_eq!(signed, format!("{TEXT}\n{}", g.lines[0]));
}

#[test]
fn c2sp_example_vector() {
    let c = sections().remove(1);
    assert_eq!(c.text, "This is an example message.\n");
    let key = PublicKey::parse(&c.vkeys[0]).unwrap();
    assert_eq!(key.name(), "example.com/foo");
    assert_eq!(key.id(), KeyId(0x530d903a));
    let msg = c.message();
    let n = note::open(&msg, &[&key]).unwrap();
    assert_eq!(n.text, c.text);
    assert_eq!(n.signatures.len(), 1);
    assert_eq!(n.signatures[0].to_line(), c.lines[0]);
    // The golang keys know nothing of it.
    assert!(matches!(
        note::open(&msg, &[&peter()]),
        Err(NoteError::NoKnownSignature { .. })
    ));
}

#[test]
fn sign_then_open_round_trip_multiple_signers() {
    let a = PrivateKey::from_seed("a.example/log", &[1; 32]).unwrap();
    let b = PrivateKey::from_seed("b.example/witness", &[2; 32]).unwrap();
    let text = "line one\n\nline three after an empty line\n";
    let signed = note::sign(text, &[&a, &b, &a]).unwrap();
    let parsed = note::parse(&signed).unwrap();
    assert_eq!(parsed.text, text);
    assert_eq!(parsed.signatures.len(), 2, "a key given twice signs once");
    let n = note::open(&signed, &[b.public()]).unwrap();
    assert_eq!(n.text, text);
    assert_eq!(n.signatures[0].name, "b.example/witness");
}

#[test]
fn unknown_signatures_are_ignored_even_if_unparseable_as_keys() {
    // A witness-style name allowed by signed-note but not by ledger keys, with a bogus signature.
    let g = golang();
    let extra = NoteSignature {
        name: "witness.example/ü".into(),
        key_id: KeyId(7),
        signature: vec![0; 72],
    };
    let msg = format!("{}{}", g.message(), extra.to_line());
    let all = note::parse(&msg).unwrap();
    assert_eq!(all.signatures[2], extra);
    let n = note::open(&msg, &[&peter()]).unwrap();
    assert_eq!(n.signatures.len(), 1);
}

#[test]
fn refuses_unknown_algorithm_vkey() {
    let g = golang();
    let (head, material) = g.vkeys[0].rsplit_once('+').unwrap();
    let mut raw = B64.decode(material).unwrap();
    raw[0] = 0x02;
    let vkey = format!("{head}+{}", B64.encode(raw));
    assert_eq!(
        note::open_with_vkeys(&g.message(), &[&vkey]),
        Err(NoteError::Key(KeyError::UnknownAlgorithm(0x02)))
    );
}

#[test]
fn refuses_key_id_mismatch() {
    // A key with PeterNeumann's name but other key material: other key ID.
    let impostor = PrivateKey::from_seed("PeterNeumann", &[9; 32]).unwrap();
    assert_ne!(impostor.id(), peter().id());
    let msg = note::sign(TEXT, &[&impostor]).unwrap();
    assert_eq!(
        note::open(&msg, &[&peter()]),
        Err(NoteError::KeyIdMismatch {
            name: "PeterNeumann".into(),
            expected: KeyId(0xc74f20a3),
            found: impostor.id(),
        })
    );
    // When the real key also signed, the impostor line is merely ignored.
    let both = note::sign(TEXT, &[&impostor, &peter_private()]).unwrap();
    assert_eq!(note::open(&both, &[&peter()]).unwrap().signatures.len(), 1);
}

fn malformed_line(line: &str) -> Result<Note, NoteError> {
    note::parse(&format!("{TEXT}\n{line}\n"))
}

fn assert_malformed(line: &str) {
    assert!(
        matches!(
            malformed_line(line),
            Err(NoteError::MalformedSignatureLine { line: 1, .. })
        ),
        "{line:?} gave {:?}",
        malformed_line(line)
    );
}

#[test]
fn refuses_malformed_signature_lines() {
    let good = golang().lines[0].trim_end().to_owned();
    let b64 = good.rsplit_once(' ').unwrap().1.to_owned();
    assert!(malformed_line(&good).is_ok());
    // No em dash: a hyphen, an en dash, nothing.
    assert_malformed(&good.replacen('\u{2014}', "-", 1));
    assert_malformed(&good.replacen('\u{2014}', "\u{2013}", 1));
    assert_malformed(good.trim_start_matches("\u{2014} "));
    // No space after the em dash.
    assert_malformed(&good.replacen("\u{2014} ", "\u{2014}", 1));
    // No space between name and signature.
    assert_malformed(&format!("\u{2014} PeterNeumann{b64}"));
    // Empty name.
    assert_malformed(&format!("\u{2014}  {b64}"));
    // Name with '+'.
    assert_malformed(&format!("\u{2014} Peter+Neumann {b64}"));
    // Missing signature.
    assert_malformed("\u{2014} PeterNeumann ");
    // Too short for a key ID (3 bytes), and a bare key ID (4 bytes).
    assert_malformed(&format!("\u{2014} PeterNeumann {}", B64.encode([1, 2, 3])));
    assert_malformed(&format!(
        "\u{2014} PeterNeumann {}",
        B64.encode([1, 2, 3, 4])
    ));
    // The second line is the bad one.
    let msg = format!("{TEXT}\n{good}\nnot a signature\n");
    assert!(matches!(
        note::parse(&msg),
        Err(NoteError::MalformedSignatureLine { line: 2, .. })
    ));
}

#[test]
fn refuses_bad_base64() {
    let good = golang().lines[0].trim_end().to_owned();
    for bad in [
        good.replacen('x', "!", 1),            // not in the alphabet
        good.trim_end_matches('=').to_owned(), // padding dropped
        good.replace('/', "_"),                // URL alphabet
        format!("{good} extra"),               // trailing field
        format!("{good}A"),                    // wrong length
    ] {
        assert_eq!(
            malformed_line(&bad),
            Err(NoteError::BadBase64 { line: 1 }),
            "{bad:?}"
        );
    }
}

#[test]
fn refuses_missing_signature_block() {
    let line = &golang().lines[0];
    for msg in [
        TEXT.to_owned(),                      // no signatures at all
        format!("{TEXT}\n"),                  // blank line, nothing after
        format!("{TEXT}{line}"),              // no blank line
        String::new(),                        // empty
        format!("{}{line}", TEXT.trim_end()), // neither newline nor blank line
    ] {
        assert_eq!(
            note::parse(&msg),
            Err(NoteError::MissingSignatureBlock),
            "{msg:?}"
        );
    }
}

#[test]
fn refuses_missing_final_newline() {
    // The message must end with a newline after the last signature line.
    let g = golang();
    let msg = g.message();
    assert_eq!(
        note::parse(msg.trim_end_matches('\n')),
        Err(NoteError::MessageNotTerminated)
    );
    // The text to sign must end with a newline and be non-empty.
    let k = peter_private();
    assert_eq!(
        note::sign(TEXT.trim_end(), &[&k]),
        Err(NoteError::TextNotTerminated)
    );
    assert_eq!(note::sign("", &[&k]), Err(NoteError::TextNotTerminated));
    assert_eq!(note::sign(TEXT, &[]), Err(NoteError::NoSigners));
}

#[test]
fn refuses_control_characters() {
    let k = peter_private();
    assert!(matches!(
        note::sign("tab\there\n", &[&k]),
        Err(NoteError::ControlCharacter { code: 9, offset: 3 })
    ));
    let signed = note::sign("crlf\n", &[&k]).unwrap();
    let crlf = signed.replacen("crlf\n", "crlf\r\n", 1);
    assert!(matches!(
        note::parse(&crlf),
        Err(NoteError::ControlCharacter { code: 13, .. })
    ));
}

#[test]
fn refuses_signature_that_does_not_verify() {
    let g = golang();
    let p = peter();
    // Text altered.
    let msg = g.message().replacen("answer", "Answer", 1);
    assert_eq!(
        note::open(&msg, &[&p]),
        Err(NoteError::BadSignature(p.reference()))
    );
    // Signature bytes altered (key ID intact).
    let n = note::parse(&g.message()).unwrap();
    let mut bad = n.signatures[0].clone();
    bad.signature[10] ^= 1;
    let msg = format!("{TEXT}\n{}", bad.to_line());
    assert_eq!(
        note::open(&msg, &[&p]),
        Err(NoteError::BadSignature(p.reference()))
    );
    // Wrong signature length for Ed25519.
    bad.signature.truncate(63);
    let msg = format!("{TEXT}\n{}", bad.to_line());
    assert_eq!(
        note::open(&msg, &[&p]),
        Err(NoteError::BadSignature(p.reference()))
    );
    // A bad signature by a known key spoils the note even if another known key verifies.
    let mut spoiled = n.signatures[0].clone();
    spoiled.signature[0] ^= 1;
    let msg = format!("{TEXT}\n{}{}", g.lines[1], spoiled.to_line());
    assert_eq!(
        note::open(&msg, &[&p, &enoch()]),
        Err(NoteError::BadSignature(p.reference()))
    );
}

#[test]
fn refuses_note_without_known_signature() {
    let g = golang();
    let other = PrivateKey::from_seed("other.example", &[3; 32]).unwrap();
    let err = note::open(&g.message(), &[other.public()]).unwrap_err();
    assert_eq!(
        err,
        NoteError::NoKnownSignature {
            known: other.public().reference().to_string()
        }
    );
    assert!(err.to_string().contains("other.example+"));
    assert!(matches!(
        note::open(&g.message(), &[]),
        Err(NoteError::NoKnownSignature { .. })
    ));
}

#[test]
fn refuses_too_many_signatures() {
    let g = golang();
    let line = &g.lines[1];
    // MAX_SIGNATURES lines are fine (the real one among them).
    let ok = format!("{TEXT}\n{}{}", g.lines[0], line.repeat(MAX_SIGNATURES - 1));
    assert_eq!(note::open(&ok, &[&peter()]).unwrap().signatures.len(), 1);
    let too_many = format!("{TEXT}\n{}{}", g.lines[0], line.repeat(MAX_SIGNATURES));
    assert_eq!(
        note::parse(&too_many),
        Err(NoteError::TooManySignatures {
            found: MAX_SIGNATURES + 1,
            max: MAX_SIGNATURES
        })
    );
}

#[test]
fn same_key_given_twice_is_fine() {
    let (p, p2) = (peter(), peter());
    let n = note::open(&golang().message(), &[&p, &p2]).unwrap();
    assert_eq!(n.signatures.len(), 1);
}

#[test]
fn text_may_hold_empty_lines_and_dashes() {
    let k = PrivateKey::from_seed("k", &[5; 32]).unwrap();
    let text = "\u{2014} looks like a signature\n\n\nbut is text\n\n";
    let signed = note::sign(text, &[&k]).unwrap();
    let n = note::open(&signed, &[k.public()]).unwrap();
    assert_eq!(n.text, text);
}

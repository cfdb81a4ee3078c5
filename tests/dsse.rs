//! DSSE envelopes (SPEC §3) through the public API only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reman_ledger::dsse::{DsseError, Envelope, MAX_PAYLOAD, pae};
use reman_ledger::keys::PrivateKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/vectors/dsse-pae.json"
));

const CERT_TYPE: &str = "application/vnd.reman-ledger.certificate.v1+json";

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

/// The RFC 8032 TEST 1 key used by the DSSE test vectors, under a ledger key name.
fn vector_key(name: &str) -> PrivateKey {
    let v = vectors();
    let seed: [u8; 32] = hex::decode(v["key"]["seed"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = PrivateKey::from_seed(name, &seed).unwrap();
    assert_eq!(
        hex::encode(key.public().as_bytes()),
        v["key"]["public"].as_str().unwrap()
    );
    key
}

fn key(name: &str, byte: u8) -> PrivateKey {
    PrivateKey::from_seed(name, &[byte; 32]).unwrap()
}

fn signed() -> Envelope {
    Envelope::sign(
        CERT_TYPE,
        br#"{"warranty_months":24}"#.to_vec(),
        &key("gearbox-works.example", 7),
    )
    .unwrap()
}

/// A valid envelope as a JSON value, to be altered by the refusal tests.
fn good_json() -> Value {
    serde_json::from_str(&signed().to_json()).unwrap()
}

fn parse_value(v: &Value) -> Result<Envelope, DsseError> {
    Envelope::parse(v.to_string().as_bytes())
}

#[test]
fn pae_hello_world_known_answer() {
    // The example of the DSSE protocol specification.
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    let v = vectors();
    let hello = &v["vectors"][0];
    assert_eq!(hello["id"], "hello-world");
    assert!(
        v["source"]
            .as_str()
            .unwrap()
            .contains("secure-systems-lab/dsse")
    );
    assert_eq!(
        pae(
            hello["payloadType"].as_str().unwrap(),
            &B64.decode(hello["payload"].as_str().unwrap()).unwrap()
        ),
        hello["pae_text"].as_str().unwrap().as_bytes()
    );
}

#[test]
fn pae_and_signature_vectors() {
    let v = vectors();
    let vecs = v["vectors"].as_array().unwrap();
    assert_eq!(vecs.len(), 4);
    let key = vector_key("A");
    let mut signed_vectors = 0;
    for vector in vecs {
        let id = vector["id"].as_str().unwrap();
        assert!(vector["source"].as_str().is_some(), "{id}: no source");
        let payload_type = vector["payloadType"].as_str().unwrap();
        let payload = B64.decode(vector["payload"].as_str().unwrap()).unwrap();
        let expected_pae = hex::decode(vector["pae_hex"].as_str().unwrap()).unwrap();
        assert_eq!(pae(payload_type, &payload), expected_pae, "{id}: PAE");

        if let Some(sig) = vector["sig"].as_str() {
            signed_vectors += 1;
            // Ed25519 is deterministic: signing must give the vector's signature.
            let env = Envelope::sign(payload_type, payload.clone(), &key).unwrap();
            assert_eq!(B64.encode(env.signature.sig), sig, "{id}: signature");
            // And the vector's signature, carried in a ledger envelope, verifies.
            let text = json!({
                "payloadType": payload_type,
                "payload": vector["payload"],
                "signatures": [{"keyid": key.public().reference().to_string(), "sig": sig}],
            });
            let parsed = parse_value(&text).unwrap();
            assert_eq!(parsed.payload, payload);
            parsed.verify(key.public()).unwrap();
        }
    }
    assert_eq!(signed_vectors, 3);
}

#[test]
fn sign_to_json_parse_verify_round_trip() {
    let k = key("gearbox-works.example", 7);
    let env = signed();
    let text = env.to_json();
    let back = Envelope::parse(text.as_bytes()).unwrap();
    assert_eq!(back, env);
    assert_eq!(back.to_json(), text);
    back.verify(k.public()).unwrap();
    assert_eq!(back.signature.keyid, k.public().reference());
}

#[test]
fn to_json_is_the_canonical_compact_form() {
    let env = signed();
    let expected = format!(
        r#"{{"payloadType":"{CERT_TYPE}","payload":"{}","signatures":[{{"keyid":"{}","sig":"{}"}}]}}"#,
        B64.encode(br#"{"warranty_months":24}"#),
        env.signature.keyid,
        B64.encode(env.signature.sig)
    );
    assert_eq!(env.to_json(), expected);
    assert!(env.to_json().starts_with(
        r#"{"payloadType":"application/vnd.reman-ledger.certificate.v1+json","payload":"eyJ3YXJyYW50eV9tb250aHMiOjI0fQ==","signatures":[{"keyid":"gearbox-works.example+"#
    ));
}

#[test]
fn to_json_escapes_awkward_payload_types_and_round_trips() {
    let k = key("ops.example", 1);
    for t in [
        "a\"b\\c",
        "line\nbreak\ttab\u{1}",
        "再制造产品/type",
        "</script>",
    ] {
        let env = Envelope::sign(t, b"{}".to_vec(), &k).unwrap();
        let text = env.to_json();
        assert!(!text.contains('\n'));
        let back = Envelope::parse(text.as_bytes()).unwrap();
        assert_eq!(back, env, "{t:?}");
        assert_eq!(back.to_json(), text);
        back.verify(k.public()).unwrap();
    }
}

#[test]
fn digest_is_sha256_of_canonical_json_and_ignores_whitespace() {
    let env = signed();
    let expected: [u8; 32] = Sha256::digest(env.to_json().as_bytes()).into();
    assert_eq!(env.digest(), expected);

    // The same envelope submitted pretty-printed, with fields in another order.
    let v = good_json();
    let pretty = format!(
        "{{\n  \"signatures\": [ {{ \"sig\": {}, \"keyid\": {} }} ],\n  \"payload\": {},\n  \"payloadType\": {}\n}}\n",
        v["signatures"][0]["sig"], v["signatures"][0]["keyid"], v["payload"], v["payloadType"]
    );
    let reparsed = Envelope::parse(pretty.as_bytes()).unwrap();
    assert_eq!(reparsed.digest(), env.digest());

    // A different payload gives a different digest.
    let other =
        Envelope::sign(CERT_TYPE, b"{}".to_vec(), &key("gearbox-works.example", 7)).unwrap();
    assert_ne!(other.digest(), env.digest());
}

#[test]
fn refuses_non_json() {
    for bad in [
        &b""[..],
        b"{",
        b"not json",
        b"{\"payloadType\":}",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(Envelope::parse(bad), Err(DsseError::NotJson(_))),
            "{bad:?}"
        );
    }
    // Trailing garbage after the object.
    let text = format!("{} x", signed().to_json());
    assert!(matches!(
        Envelope::parse(text.as_bytes()),
        Err(DsseError::NotJson(_))
    ));
}

#[test]
fn refuses_non_object() {
    for (bad, kind) in [
        ("[]", "an array"),
        ("\"envelope\"", "a string"),
        ("null", "null"),
        ("42", "a number"),
        ("true", "a boolean"),
    ] {
        assert_eq!(
            Envelope::parse(bad.as_bytes()),
            Err(DsseError::NotObject(kind))
        );
    }
}

#[test]
fn refuses_unknown_fields_at_every_level() {
    let mut v = good_json();
    v["extra"] = json!(1);
    assert!(matches!(
        parse_value(&v),
        Err(DsseError::UnknownField { ref field, location: "envelope", .. }) if field == "extra"
    ));

    let mut v = good_json();
    v["signatures"][0]["cert"] = json!("x");
    assert!(matches!(
        parse_value(&v),
        Err(DsseError::UnknownField { ref field, location: "signature", .. }) if field == "cert"
    ));
}

#[test]
fn refuses_missing_fields() {
    for field in ["payloadType", "payload", "signatures"] {
        let mut v = good_json();
        v.as_object_mut().unwrap().remove(field);
        assert_eq!(
            parse_value(&v),
            Err(DsseError::MissingField {
                field,
                location: "envelope"
            }),
            "{field}"
        );
    }
    for field in ["keyid", "sig"] {
        let mut v = good_json();
        v["signatures"][0].as_object_mut().unwrap().remove(field);
        assert_eq!(
            parse_value(&v),
            Err(DsseError::MissingField {
                field,
                location: "signature"
            }),
            "{field}"
        );
    }
}

#[test]
fn refuses_wrong_json_types() {
    let cases: [(&str, Value, &str); 5] = [
        ("payloadType", json!(1), "payloadType"),
        ("payload", json!(null), "payload"),
        ("signatures", json!({}), "signatures"),
        ("signatures", json!(["sig"]), "signatures[0]"),
        ("signatures", json!([{"keyid": 5, "sig": ""}]), "keyid"),
    ];
    for (field, value, reported) in cases {
        let mut v = good_json();
        v[field] = value;
        assert!(
            matches!(parse_value(&v), Err(DsseError::WrongType { field, .. }) if field == reported),
            "{reported}: {:?}",
            parse_value(&v)
        );
    }
}

#[test]
fn refuses_empty_payload_type() {
    let mut v = good_json();
    v["payloadType"] = json!("");
    assert_eq!(parse_value(&v), Err(DsseError::EmptyPayloadType));
    assert_eq!(
        Envelope::sign("", b"{}".to_vec(), &key("a", 1)),
        Err(DsseError::EmptyPayloadType)
    );
}

#[test]
fn refuses_non_canonical_payload_base64() {
    // "hi" is "aGk=" in canonical standard base64.
    for bad in [
        "aGk",      // padding missing
        "aGl=",     // unused bits not zero
        "aG k=",    // whitespace
        "aGk=\n",   // trailing newline
        "aGk==",    // too much padding
        "-_8=",     // URL-safe alphabet
        "aGk=aGk=", // padding in the middle
        "%%%%",     // not base64 at all
    ] {
        let mut v = good_json();
        v["payload"] = json!(bad);
        assert_eq!(parse_value(&v), Err(DsseError::PayloadNotBase64), "{bad:?}");
    }
    let mut v = good_json();
    v["payload"] = json!("aGk=");
    // Canonical base64 is accepted (the signature then fails, which is verify's business).
    assert_eq!(parse_value(&v).unwrap().payload, b"hi");
}

#[test]
fn refuses_payload_larger_than_max() {
    let k = key("gearbox-works.example", 7);
    let at_max = Envelope::sign(CERT_TYPE, vec![b'x'; MAX_PAYLOAD], &k).unwrap();
    let back = Envelope::parse(at_max.to_json().as_bytes()).unwrap();
    back.verify(k.public()).unwrap();

    let mut v = good_json();
    v["payload"] = json!(B64.encode(vec![b'x'; MAX_PAYLOAD + 1]));
    assert_eq!(
        parse_value(&v),
        Err(DsseError::PayloadTooLarge(MAX_PAYLOAD + 1))
    );
    assert_eq!(
        Envelope::sign(CERT_TYPE, vec![0; MAX_PAYLOAD + 1], &k),
        Err(DsseError::PayloadTooLarge(MAX_PAYLOAD + 1))
    );
}

#[test]
fn refuses_zero_or_several_signatures() {
    let mut v = good_json();
    v["signatures"] = json!([]);
    assert_eq!(parse_value(&v), Err(DsseError::NoSignature));

    let mut v = good_json();
    let one = v["signatures"][0].clone();
    v["signatures"] = json!([one.clone(), one]);
    assert_eq!(parse_value(&v), Err(DsseError::TooManySignatures(2)));
}

#[test]
fn refuses_bad_keyid() {
    for bad in [
        "",
        "gearbox-works.example",
        "gearbox-works.example+ABCDEF12",
        "gearbox-works.example+abcdef1",
        "bad name+01234567",
        "+01234567",
        "gearbox-works.example+01234567+AAAA",
    ] {
        let mut v = good_json();
        v["signatures"][0]["keyid"] = json!(bad);
        assert_eq!(
            parse_value(&v),
            Err(DsseError::BadKeyId(bad.to_owned())),
            "{bad:?}"
        );
    }
}

#[test]
fn refuses_bad_sig() {
    for bad in ["not base64!", "AAAA AAAA", "AA", "-_-_"] {
        let mut v = good_json();
        v["signatures"][0]["sig"] = json!(bad);
        assert_eq!(parse_value(&v), Err(DsseError::SigNotBase64), "{bad:?}");
    }
    for len in [0, 63, 65] {
        let mut v = good_json();
        v["signatures"][0]["sig"] = json!(B64.encode(vec![1u8; len]));
        assert_eq!(parse_value(&v), Err(DsseError::SigBadLength(len)), "{len}");
    }
}

#[test]
fn refuses_duplicate_keys() {
    let env = signed();
    let text = env.to_json();
    // Top level: a second payloadType after the first.
    let dup_top = text.replacen(
        "{\"payloadType\":",
        "{\"payloadType\":\"application/vnd.other+json\",\"payloadType\":",
        1,
    );
    assert_eq!(
        Envelope::parse(dup_top.as_bytes()),
        Err(DsseError::DuplicateKey {
            key: "payloadType".into(),
            location: "envelope"
        })
    );
    // Inside the signature: a second keyid.
    let dup_sig = text.replacen(
        "[{\"keyid\":",
        "[{\"keyid\":\"mallory.example+01234567\",\"keyid\":",
        1,
    );
    assert_eq!(
        Envelope::parse(dup_sig.as_bytes()),
        Err(DsseError::DuplicateKey {
            key: "keyid".into(),
            location: "signature"
        })
    );
    // A duplicate is refused even when the other fields are fine and it comes first.
    let first = text.replacen("{\"payloadType\":", "{\"payload\":\"\",\"payloadType\":", 1);
    assert!(matches!(
        Envelope::parse(first.as_bytes()),
        Err(DsseError::DuplicateKey { ref key, .. }) if key == "payload"
    ));
}

#[test]
fn verify_refuses_another_key() {
    let env = signed();
    // Same name, another key: the key ID in the reference differs.
    let other = key("gearbox-works.example", 8);
    assert_eq!(
        env.verify(other.public()),
        Err(DsseError::WrongKey {
            expected: other.public().reference().to_string(),
            found: env.signature.keyid.to_string(),
        })
    );
    // Another name.
    assert!(matches!(
        env.verify(key("turbo.example", 7).public()),
        Err(DsseError::WrongKey { .. })
    ));
}

#[test]
fn verify_refuses_bad_signatures() {
    let k = key("gearbox-works.example", 7);
    let expected = Err(DsseError::BadSignature(k.public().reference().to_string()));

    let mut env = signed();
    env.payload.push(b' ');
    assert_eq!(env.verify(k.public()), expected);

    let mut env = signed();
    env.payload_type = "application/vnd.reman-ledger.event.v1+json".into();
    assert_eq!(env.verify(k.public()), expected);

    for i in [0, 31, 32, 63] {
        let mut env = signed();
        env.signature.sig[i] ^= 0x01;
        assert_eq!(env.verify(k.public()), expected, "byte {i}");
    }

    // A signature over the bare payload, not over PAE, is refused.
    let mut env = signed();
    env.signature.sig = k.sign(&env.payload);
    assert_eq!(env.verify(k.public()), expected);
}

#[test]
fn error_messages_say_what_is_expected() {
    let mut v = good_json();
    v["signatures"] = json!([]);
    let msg = parse_value(&v).unwrap_err().to_string();
    assert!(msg.contains("exactly one signature"), "{msg}");
    let mut v = good_json();
    v["payload"] = json!("aGk");
    let msg = parse_value(&v).unwrap_err().to_string();
    assert!(msg.contains("padding"), "{msg}");
}

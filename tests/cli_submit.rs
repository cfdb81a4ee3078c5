//! `reman-ledger submit` against a real `serve --demo` on a loopback port: new and repeated
//! submissions, every kind of refusal (exit 1, the problem printed, nothing logged), receipt
//! verification under a pinned log key, and I/O errors (exit 2).

mod cli_support;
mod common;

use cli_support::*;
use common::{certificate_json, gtin, key, sign};
use reman_ledger::keys::PrivateKey;
use reman_ledger::payload::PayloadType;

/// Writes a certificate envelope signed by the demo remanufacturer into the server's directory.
fn envelope(s: &Served, name: &str, serial: &str) -> std::path::PathBuf {
    let env = sign(
        PayloadType::Certificate,
        &certificate_json(&gtin(101), serial, None),
        &key("suzhou-reman.example"),
    );
    let path = s.path(name);
    std::fs::write(&path, env).unwrap();
    path
}

#[test]
fn new_then_already_logged_with_the_receipt_verified() {
    let s = Served::demo();
    let env = envelope(&s, "cert.json", "SUB-1");
    let url = s.url.as_str();
    let out = bin(
        &[
            "submit",
            "--server",
            url,
            "--log-key",
            "keys/log.key.pub",
            "cert.json",
        ],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.starts_with("logged: new entry 89\n"), "{o}");
    for want in [
        "certificate ID: ",
        &format!("QR URL: {url}/01/{}/21/SUB-1?seal=", gtin(101)),
        "tree size: 90 ",
        "receipt verified under the pinned log key reman-ledger.example/log+",
        "seal valid",
    ] {
        assert!(o.contains(want), "{want:?} not in {o}");
    }

    // Again, from standard input, with the log key given as vkey text: the existing entry.
    let vkey = std::fs::read_to_string(s.path("keys/log.key.pub")).unwrap();
    let again = bin_stdin(
        &["submit", "--server", url, "--log-key", vkey.trim(), "-"],
        s.dir.path(),
        &std::fs::read(&env).unwrap(),
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let o = text(&again.stdout);
    assert!(o.starts_with("already logged: entry 89 "), "{o}");
    assert!(o.contains("receipt verified"), "{o}");

    // --json prints the server's receipt.
    let j = bin(
        &["submit", "--server", url, "--json", "cert.json"],
        s.dir.path(),
    );
    assert_eq!(j.status.code(), Some(0), "{}", text(&j.stderr));
    let receipt = json(&j);
    assert_eq!(receipt["index"], 89);
    assert_eq!(receipt["certificate_id"].as_str().unwrap().len(), 32);
    assert!(receipt["inclusion_proof"]["proof"].is_array());
    assert_eq!(s.tree_size(), 90);
}

#[test]
fn a_receipt_under_another_log_key_is_not_valid() {
    let s = Served::demo();
    envelope(&s, "cert.json", "SUB-2");
    // The operator's key is a real key, but not the log's: the checkpoint does not verify.
    let out = bin(
        &[
            "submit",
            "--server",
            &s.url,
            "--log-key",
            "keys/operator.key.pub",
            "cert.json",
        ],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("RECEIPT NOT VALID"), "{e}");
    assert!(e.contains("checkpoint does not verify"), "{e}");
    assert!(
        !text(&out.stdout).contains("logged"),
        "{}",
        text(&out.stdout)
    );

    // A key with the log's name but other key material: refused as well.
    let impostor = PrivateKey::generate("reman-ledger.example/log").unwrap();
    let out = bin(
        &[
            "submit",
            "--server",
            &s.url,
            "--log-key",
            &impostor.public().to_vkey(),
            "cert.json",
        ],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("RECEIPT NOT VALID"));
}

#[test]
fn refusals_exit_1_with_the_problem_and_log_nothing() {
    let s = Served::demo();
    let url = s.url.as_str();
    let suzhou = key("suzhou-reman.example");
    // A certificate to conflict with.
    envelope(&s, "first.json", "DUP-1");
    let first = bin(&["submit", "--server", url, "first.json"], s.dir.path());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let size = s.tree_size();

    let cert = |serial: &str| certificate_json(&gtin(102), serial, None);
    let mut bad_sig = sign(PayloadType::Certificate, &cert("R-1"), &suzhou);
    // Change one character of the signature's base64 (keeping it valid base64).
    let text_env = String::from_utf8(bad_sig.clone()).unwrap();
    let at = text_env.find("\"sig\":\"").unwrap() + 8;
    bad_sig[at] = if bad_sig[at] == b'A' { b'B' } else { b'A' };
    let stranger = PrivateKey::generate("stranger.example").unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("bad signature", bad_sig, 401, "signature"),
        (
            "unknown signer",
            sign(PayloadType::Certificate, &cert("R-2"), &stranger),
            401,
            "stranger.example",
        ),
        (
            "wrong role",
            sign(
                PayloadType::Certificate,
                &cert("R-3"),
                &key("customs-shanghai.example"),
            ),
            403,
            "customs",
        ),
        (
            "duplicate",
            sign(
                PayloadType::Certificate,
                &certificate_json(&gtin(101), "DUP-1", None).replace("2026-11-21", "2026-11-22"),
                &suzhou,
            ),
            409,
            "DUP-1",
        ),
        (
            "failed test",
            sign(
                PayloadType::Certificate,
                &cert("R-5").replace("\"pass\"", "\"fail\""),
                &suzhou,
            ),
            422,
            "fail",
        ),
    ];
    for (what, env, status, mention) in cases {
        std::fs::write(s.path("bad.json"), &env).unwrap();
        let out = bin(&["submit", "--server", url, "bad.json"], s.dir.path());
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out.stderr));
        let e = text(&out.stderr);
        assert!(
            e.starts_with(&format!("REFUSED by the ledger: HTTP {status} ")),
            "{what}: {e}"
        );
        assert!(e.contains(mention), "{what}: {mention:?} not in {e}");
        assert!(out.stdout.is_empty(), "{what}: {}", text(&out.stdout));
        // --json prints the RFC 9457 problem.
        let out = bin(
            &["submit", "--server", url, "--json", "bad.json"],
            s.dir.path(),
        );
        assert_eq!(out.status.code(), Some(1), "{what}");
        let p = json(&out);
        assert_eq!(p["status"], status, "{what}: {p}");
        assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
        assert_eq!(s.tree_size(), size, "{what}: something was logged");
    }

    // The same refusal for an envelope made by `sign` itself, which warns of it (exit 1) and
    // signs it all the same.
    std::fs::write(
        s.path("failed.json"),
        cert("R-6").replace("\"pass\"", "\"fail\""),
    )
    .unwrap();
    let signed = bin(
        &[
            "sign",
            "--key",
            "keys/parties/suzhou-reman.example.key",
            "--type",
            "certificate",
            "failed.json",
        ],
        s.dir.path(),
    );
    assert_eq!(signed.status.code(), Some(1), "{}", text(&signed.stderr));
    std::fs::write(s.path("failed.envelope.json"), &signed.stdout).unwrap();
    let out = bin(
        &["submit", "--server", url, "failed.envelope.json"],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("REFUSED by the ledger: HTTP 422 "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(s.tree_size(), size, "a failed certificate was logged");
}

#[test]
fn io_and_usage_errors_exit_2() {
    let s = Served::demo();
    envelope(&s, "cert.json", "IO-1");
    let dead = dead_url();
    let out = bin(&["submit", "--server", &dead, "cert.json"], s.dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("Connection refused"),
        "{}",
        text(&out.stderr)
    );
    let out = bin(
        &["submit", "--server", &s.url, "missing.json"],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.json"));
    let out = bin(
        &["submit", "--server", "127.0.0.1:8080", "cert.json"],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("http://"),
        "{}",
        text(&out.stderr)
    );
    let out = bin(
        &[
            "submit",
            "--server",
            &s.url,
            "--log-key",
            "nothing-here.pub",
            "cert.json",
        ],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--log-key nothing-here.pub: no such file"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        bin(&["submit", "cert.json"], s.dir.path()).status.code(),
        Some(2)
    );
    // None of these logged anything.
    assert_eq!(s.tree_size(), 89);
}

#[test]
fn help_explains_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let top = bin(&["--help"], dir.path());
    assert!(top.status.success());
    let t = text(&top.stdout);
    for cmd in [
        "keygen",
        "init",
        "sign",
        "submit",
        "issue",
        "serve",
        "audit",
        "Exit codes",
    ] {
        assert!(t.contains(cmd), "top help lacks {cmd}: {t}");
    }
    for (cmd, wants) in [
        ("submit", &["--log-key", "--json", "Exit 0", "Example"][..]),
        (
            "issue",
            &["--qr-dir", "--jobs", ".jsonl", "index.csv", "Example"][..],
        ),
        (
            "audit",
            &["--server", "--data", "not pinned", "Examples"][..],
        ),
        ("sign", &["--type", "Example"][..]),
        ("keygen", &["--name", "Example"][..]),
        ("init", &["--origin", "Example"][..]),
        ("serve", &["--demo", "Example"][..]),
    ] {
        let h = bin(&[cmd, "--help"], dir.path());
        assert!(h.status.success());
        let h = text(&h.stdout);
        for w in wants {
            assert!(h.contains(w), "{cmd} --help lacks {w:?}: {h}");
        }
    }
}

/// Logged before, but no longer in force: the existing entry (200), and exit 1 saying why.
#[test]
fn a_resubmission_no_longer_in_force_exits_1_and_says_why() {
    let s = Served::demo();
    let url = s.url.as_str();
    let submit = |file: &str, bytes: &[u8]| {
        std::fs::write(s.path(file), bytes).unwrap();
        bin(&["submit", "--server", url, file], s.dir.path())
    };
    let party = PrivateKey::generate("lyon-import.example").unwrap();
    let registration = |status: &str| {
        let json = format!(
            r#"{{"name":"lyon-import.example","role":"importer","country":"FR","key":"{}","status":"{status}"}}"#,
            party.public().to_vkey()
        );
        sign(PayloadType::Party, &json, &common::operator())
    };
    let active = registration("active");
    assert_eq!(submit("active.json", &active).status.code(), Some(0));
    assert_eq!(
        submit("suspend.json", &registration("suspended"))
            .status
            .code(),
        Some(0)
    );
    let again = submit("active.json", &active);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stdout));
    assert!(text(&again.stdout).starts_with("already logged: entry 89 "));
    let err = text(&again.stderr);
    assert!(err.contains("NOT IN FORCE: entry 89"), "{err}");
    assert!(err.contains("change the payload"), "{err}");
    let j = bin(
        &["submit", "--server", url, "--json", "active.json"],
        s.dir.path(),
    );
    assert_eq!(json(&j)["in_force"], false);

    // A certificate revoked since.
    let cert = envelope(&s, "cert.json", "SUB-9");
    let first = bin(
        &["submit", "--server", url, "--json", "cert.json"],
        s.dir.path(),
    );
    assert_eq!(json(&first)["status"], "valid");
    let id = json(&first)["certificate_id"].as_str().unwrap().to_owned();
    let revocation = sign(
        PayloadType::Revocation,
        &format!(r#"{{"certificate_id":"{id}","reason":"error","note":""}}"#),
        &key("suzhou-reman.example"),
    );
    assert_eq!(submit("revoke.json", &revocation).status.code(), Some(0));
    let again = bin(
        &["submit", "--server", url, cert.to_str().unwrap()],
        s.dir.path(),
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("the certificate is revoked"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(s.tree_size(), 93);
}

//! `reman-ledger issue` against a real `serve --demo` on a loopback port: a directory and a
//! JSON Lines file of certificates with local refusals and conflicts, QR codes written and
//! decodable, the second run answered as already logged, and the exit codes.

mod cli_support;
mod common;

use cli_support::*;
use common::{certificate_json, gtin};
use reman_ledger::seal::{Seal, parse_digital_link};
use serde_json::Value;

const SUZHOU: &str = "keys/parties/suzhou-reman.example.key";

fn cert(item: u64, serial: &str) -> String {
    certificate_json(&gtin(item), serial, None)
}

fn items(summary: &Value) -> &Vec<Value> {
    summary["items"].as_array().unwrap()
}

#[test]
fn a_mixed_batch_reports_each_refusal_with_its_source_and_exits_1() {
    let s = Served::demo();
    // Yesterday's certificate for unit D-0, issued from a single file.
    std::fs::write(s.path("yesterday.json"), cert(201, "D-0")).unwrap();
    let out = bin(
        &[
            "issue",
            "--key",
            SUZHOU,
            "--server",
            &s.url,
            "yesterday.json",
        ],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(": 1 logged, 0 already logged, 0 refused"));
    // One certificate issued: its entry and certificate ID are on the summary.
    let id = reman_ledger::certificate::CertificateId::of_payload(cert(201, "D-0").as_bytes());
    assert!(
        text(&out.stdout).contains(&format!(
            "  yesterday.json: logged as entry 89, certificate {id}"
        )),
        "{}",
        text(&out.stdout)
    );
    let dir = s.path("today");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.json"), cert(201, "D-1")).unwrap();
    std::fs::write(dir.join("c.json"), cert(201, "D-2")).unwrap();
    // Invalid locally: a failed test. Refused here, never sent.
    std::fs::write(
        dir.join("b.json"),
        cert(201, "D-3").replace("\"pass\"", "\"fail\""),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a payload").unwrap();
    // Line 3 is a second, different certificate for unit D-0: the ledger refuses it (409).
    let lines = [
        cert(202, "L-1"),
        String::new(),
        cert(201, "D-0").replace("2026-11-21", "2026-11-22"),
        "{\"product\": 1}".to_owned(),
        cert(202, "L-2"),
    ];
    std::fs::write(s.path("batch.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = bin(
        &[
            "issue",
            "--key",
            SUZHOU,
            "--server",
            &s.url,
            "--log-key",
            "keys/log.key.pub",
            "--jobs",
            "3",
            "--json",
            "today",
            "batch.jsonl",
        ],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let sum = json(&out);
    assert_eq!(sum["total"], 7, "{sum}");
    assert_eq!(sum["logged"], 4, "{sum}");
    assert_eq!(sum["already_logged"], 0, "{sum}");
    assert_eq!(sum["refused"], 3, "{sum}");
    assert_eq!(sum["receipts_verified"], true);
    let sources: Vec<&str> = items(&sum)
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        [
            "today/a.json",
            "today/b.json",
            "today/c.json",
            "batch.jsonl:1",
            "batch.jsonl:3",
            "batch.jsonl:4",
            "batch.jsonl:5"
        ]
    );
    let by = |src: &str| items(&sum).iter().find(|i| i["source"] == src).unwrap();
    let b = by("today/b.json");
    assert_eq!(b["status"], "refused");
    assert!(b.get("http_status").is_none(), "{b}");
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.contains("refused locally, not sent") && reason.contains("fail"),
        "{reason}"
    );
    let dup = by("batch.jsonl:3");
    assert_eq!(dup["status"], "refused");
    assert_eq!(dup["http_status"], 409);
    assert!(
        dup["reason"].as_str().unwrap().contains("HTTP 409"),
        "{dup}"
    );
    let schema = by("batch.jsonl:4");
    assert!(
        schema["reason"].as_str().unwrap().contains("schema"),
        "{schema}"
    );
    let a = by("today/a.json");
    assert_eq!(a["status"], "logged");
    assert_eq!(a["http_status"], 201);
    assert_eq!(a["gtin"], gtin(201));
    assert_eq!(a["serial"], "D-1");
    // 89 demo entries + D-0 + the 4 logged; nothing of the refused ones.
    assert_eq!(s.tree_size(), 94);

    // The human summary names every refusal with its file[:line] and reason.
    let out = bin(
        &[
            "issue",
            "--key",
            SUZHOU,
            "--server",
            &s.url,
            "today",
            "batch.jsonl",
        ],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    assert!(
        t.starts_with("issued 7 payload(s) to http://")
            && t.contains(": 0 logged, 4 already logged, 3 refused"),
        "{t}"
    );
    assert!(
        t.contains("\n  today/b.json: refused locally, not sent: "),
        "{t}"
    );
    assert!(t.contains("\n  batch.jsonl:3: HTTP 409 "), "{t}");
    assert!(t.contains("\n  batch.jsonl:4: refused locally"), "{t}");
    assert!(
        t.contains("\n4 receipt(s) not verified: give --log-key"),
        "{t}"
    );
    assert_eq!(s.tree_size(), 94);
}

#[test]
fn a_good_batch_writes_decodable_qr_codes_and_a_second_run_is_already_logged() {
    let s = Served::demo();
    // A GTIN-13 is padded to a GTIN-14 by the client (SPEC §3.2).
    let short = cert(301, "Q-3").replace(
        &format!("\"{}\"", gtin(301)),
        &format!("\"{}\"", &gtin(301)[1..]),
    );
    let lines = [cert(301, "Q-1"), cert(301, r#"Q/2,\"a"#), short];
    std::fs::write(s.path("good.jsonl"), lines.join("\n")).unwrap();
    let args = [
        "issue",
        "--key",
        SUZHOU,
        "--server",
        &s.url,
        "--log-key",
        "keys/log.key.pub",
        "--qr-dir",
        "labels",
        "--json",
        "good.jsonl",
    ];
    let out = bin(&args, s.dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let sum = json(&out);
    assert_eq!(sum["logged"], 3, "{sum}");
    assert_eq!(sum["refused"], 0);
    let log_key = reman_ledger::keyfile::read_public(&s.path("keys/log.key.pub")).unwrap();
    for item in items(&sum) {
        let url = item["qr_url"].as_str().unwrap();
        let file = s.path(item["qr_file"].as_str().unwrap());
        assert!(file.starts_with(s.path("labels")), "{file:?}");
        let decoded = reman_ledger::qr::decode_image(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(decoded, vec![url.to_owned()]);
        let link = parse_digital_link(url).unwrap();
        assert_eq!(link.gtin, item["gtin"].as_str().unwrap());
        assert_eq!(link.serial, item["serial"].as_str().unwrap());
        let seal: Seal = link.seal.unwrap();
        seal.verify(
            &log_key,
            "reman-ledger.example/log",
            &link.gtin,
            &link.serial,
        )
        .unwrap();
        assert_eq!(seal.index, item["index"].as_u64().unwrap());
        assert_eq!(
            hex::encode(seal.certificate_id),
            item["certificate_id"].as_str().unwrap()
        );
    }
    assert_eq!(items(&sum)[2]["gtin"], gtin(301));
    let names: Vec<String> = items(&sum)
        .iter()
        .map(|i| {
            std::path::Path::new(i["qr_file"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        names[1].starts_with(&format!("{}_Q_2__a_", gtin(301))),
        "{names:?}"
    );
    let csv = std::fs::read_to_string(s.path("labels/index.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "file,source,gtin,serial,certificate_id,index,qr_url"
    );
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(
        rows[1].starts_with(&format!("{},good.jsonl:1,{},Q-1,", names[0], gtin(301))),
        "{csv}"
    );
    assert!(rows[2].contains(r#","Q/2,""a","#), "{csv}");

    // The same batch again: all already logged, same entries, exit 0.
    let out = bin(&args, s.dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let again = json(&out);
    assert_eq!(again["already_logged"], 3, "{again}");
    assert_eq!(again["logged"], 0);
    for (a, b) in items(&sum).iter().zip(items(&again)) {
        assert_eq!(a["index"], b["index"]);
        assert_eq!(a["qr_url"], b["qr_url"]);
        assert_eq!(b["status"], "already_logged");
        assert_eq!(b["http_status"], 200);
    }
    assert_eq!(s.tree_size(), 92);

    // Events and revocations go the same way, from a directory; no QR codes for them.
    let id = items(&sum)[0]["certificate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::create_dir(s.path("later")).unwrap();
    let example = |name: &str| {
        std::fs::read_to_string(root().join("fixtures/examples").join(name))
            .unwrap()
            .replace("CERTIFICATE_ID", &id)
    };
    std::fs::write(s.path("later/1-shipped.json"), example("event.json")).unwrap();
    let out = bin(
        &[
            "issue",
            "--key",
            SUZHOU,
            "--server",
            &s.url,
            "--type",
            "event",
            "--log-key",
            "keys/log.key.pub",
            "later",
        ],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    std::fs::write(s.path("revoke.json"), example("revocation.json")).unwrap();
    let out = bin(
        &[
            "issue",
            "--key",
            SUZHOU,
            "--server",
            &s.url,
            "--type",
            "revocation",
            "--json",
            "revoke.json",
        ],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(json(&out)["logged"], 1);
    assert_eq!(s.tree_size(), 94);
}

#[test]
fn unreachable_ledgers_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("c.json"), cert(401, "U-1")).unwrap();
    std::fs::write(
        d.join("b.jsonl"),
        [cert(401, "U-2"), cert(401, "U-3")].join("\n"),
    )
    .unwrap();
    std::fs::create_dir(d.join("empty")).unwrap();
    let key = root().join(SUZHOU);
    let key = key.to_str().unwrap();
    let dead = dead_url();
    let out = bin(
        &[
            "issue", "--key", key, "--server", &dead, "--jobs", "1", "--json", "c.json", "b.jsonl",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let sum = json(&out);
    assert_eq!(sum["failed"], 1, "{sum}");
    assert_eq!(sum["not_sent"], 2, "{sum}");
    assert!(
        items(&sum)[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Connection refused")
    );
    let pub_key = root().join("keys/log.key.pub");
    let out = bin(
        &[
            "issue",
            "--key",
            key,
            "--server",
            &dead,
            "--log-key",
            pub_key.to_str().unwrap(),
            "c.json",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out.stdout);
    assert!(t.contains("run the same command again"), "{t}");
    // Nothing was logged, so no receipt is said to be verified (found by a newcomer's run).
    assert!(!t.contains("receipt"), "{t}");

    // An event issued without --type event is refused locally, never sent, with the hint.
    let event = std::fs::read_to_string(root().join("fixtures/examples/event.json"))
        .unwrap()
        .replace("CERTIFICATE_ID", &"cd".repeat(16));
    std::fs::write(d.join("event.json"), event).unwrap();
    let out = bin(&["issue", "--key", key, "--server", &dead, "event.json"], d);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains(
            "event.json: refused locally, not sent: payload does not match the certificate schema"
        ) && t.contains("(a valid event payload: give --type event)"),
        "{t}"
    );

    for (args, says) in [
        (
            vec!["issue", "--key", key, "--server", &dead, "missing.json"],
            "missing.json",
        ),
        (
            vec!["issue", "--key", key, "--server", &dead, "empty"],
            "no payload found",
        ),
        (
            vec!["issue", "--key", "nokey", "--server", &dead, "c.json"],
            "nokey",
        ),
        (
            vec![
                "issue", "--key", key, "--server", &dead, "--type", "event", "--qr-dir", "q",
                "c.json",
            ],
            "--qr-dir",
        ),
        (
            vec![
                "issue", "--key", key, "--server", &dead, "--jobs", "0", "c.json",
            ],
            "--jobs",
        ),
        (vec!["issue", "--key", key, "--server", &dead], "INPUT"),
    ] {
        let out = bin(&args, d);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!d.join("q").exists());
}

/// Issuing again a certificate revoked since: no label is written, and it counts as refused.
#[test]
fn a_certificate_revoked_since_gets_no_label_when_issued_again() {
    let s = Served::demo();
    std::fs::write(s.path("c.json"), cert(301, "RV-1")).unwrap();
    let issue = || {
        bin(
            &[
                "issue", "--key", SUZHOU, "--server", &s.url, "--qr-dir", "labels", "--json",
                "c.json",
            ],
            s.dir.path(),
        )
    };
    let first = issue();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let id = items(&json(&first))[0]["certificate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::remove_dir_all(s.path("labels")).unwrap();
    std::fs::write(
        s.path("revoke.json"),
        format!(r#"{{"certificate_id":"{id}","reason":"recall","note":""}}"#),
    )
    .unwrap();
    let o = bin(
        &[
            "sign",
            "--key",
            SUZHOU,
            "--type",
            "revocation",
            "revoke.json",
        ],
        s.dir.path(),
    );
    std::fs::write(s.path("revoke.env"), &o.stdout).unwrap();
    let o = bin(&["submit", "--server", &s.url, "revoke.env"], s.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let again = issue();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stdout));
    let summary = json(&again);
    let item = &items(&summary)[0];
    assert_eq!(item["status"], "refused", "{item}");
    let why = item["reason"].as_str().unwrap_or_default();
    assert!(why.contains("the certificate is revoked"), "{item}");
    assert!(why.contains("no label written"), "{item}");
    let labels = std::fs::read_dir(s.path("labels")).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
        .count()
    });
    assert_eq!(labels, 0);
}

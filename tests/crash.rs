//! Durability: the real server is killed (SIGKILL) in the middle of concurrent submissions;
//! after each crash the store reopens, audits clean, holds every entry it acknowledged, and
//! every tree head it handed out (in receipts and as its published checkpoint) is one of the
//! reopened log's. A SIGKILL loses only what sled had not yet handed to the kernel, so this
//! catches heads published before their batch was written, not before it was fsynced (a power
//! cut): that order is kept by the sequencer, which publishes a head only after `flush`.

mod common;

use common::*;
use reman_ledger::audit::audit_store;
use reman_ledger::certificate::CertificateId;
use reman_ledger::payload::PayloadType;
use reman_ledger::state;
use reman_ledger::store::Store;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts `reman-ledger serve` on a free loopback port and returns it with its address.
fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reman-ledger"))
        .args(["serve", "--data", "data", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = served_address(&mut child);
    (child, addr)
}

/// One POST over a fresh connection; the status and body, or None if the server died.
fn post(addr: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "POST /api/v1/entries HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split("\r\n\r\n").nth(1)?.to_owned();
    Some((status, body))
}

/// The tree size and root (hex) of the checkpoint the server publishes now, if it answers.
fn published_head(addr: &str) -> Option<(u64, String)> {
    use base64::Engine;
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req =
        format!("GET /api/v1/checkpoint HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let body = resp.split("\r\n\r\n").nth(1)?;
    let mut lines = body.lines().skip(1);
    let size = lines.next()?.parse().ok()?;
    let root = base64::engine::general_purpose::STANDARD
        .decode(lines.next()?)
        .ok()?;
    Some((size, hex::encode(root)))
}

#[test]
fn acknowledged_entries_survive_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // The server creates its ledger with the project's demo keys on first start.
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    for f in ["log.key", "operator.key"] {
        std::fs::copy(root().join("keys").join(f), dir.path().join("keys").join(f)).unwrap();
    }
    let (child, addr) = start(dir.path());
    // Register one remanufacturer (operator-signed), then crash repeatedly under load.
    let k = key("suzhou-reman.example");
    let party = format!(
        r#"{{"name":"suzhou-reman.example","role":"remanufacturer","country":"CN","key":"{}","status":"active"}}"#,
        k.public().to_vkey()
    );
    let (st, _) = post(&addr, &sign(PayloadType::Party, &party, &operator())).unwrap();
    assert_eq!(st, 201);
    let mut child = Some(child);
    let mut addr = addr;
    let acked: Arc<Mutex<Vec<(u64, CertificateId)>>> = Arc::default();
    // (tree size, root hex) of every receipt's inclusion proof and every checkpoint read.
    let heads: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let mut next_item = 0u64;
    for round in 0..3 {
        let bodies: Vec<Vec<u8>> = (0..2000)
            .map(|i| {
                let n = next_item + i;
                sign(
                    PayloadType::Certificate,
                    &certificate_json(&gtin(50_000 + n), &format!("CRASH-{n}"), None),
                    &k,
                )
            })
            .collect();
        next_item += 2000;
        let before = acked.lock().unwrap().len();
        let bodies = Arc::new(bodies);
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let (bodies, acked, heads, addr) =
                    (bodies.clone(), acked.clone(), heads.clone(), addr.clone());
                std::thread::spawn(move || {
                    for b in bodies.iter().skip(w).step_by(8) {
                        let Some((status, body)) = post(&addr, b) else {
                            break;
                        };
                        assert!(status == 201 || status >= 500, "status {status}: {body}");
                        if status == 201 {
                            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                            let id = v["certificate_id"].as_str().unwrap().parse().unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .push((v["index"].as_u64().unwrap(), id));
                            let p = &v["inclusion_proof"];
                            heads.lock().unwrap().push((
                                p["tree_size"].as_u64().unwrap(),
                                p["root"].as_str().unwrap().to_owned(),
                            ));
                        }
                    }
                })
            })
            .collect();
        // Meanwhile, the published checkpoint, as often as it can be read.
        let poller = {
            let (heads, addr) = (heads.clone(), addr.clone());
            std::thread::spawn(move || {
                while let Some(head) = published_head(&addr) {
                    heads.lock().unwrap().push(head);
                }
            })
        };
        // Let some appends through, then kill the server without warning, mid-stream.
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() < before + 100 + 50 * round as usize
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut c = child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
        for w in workers {
            w.join().unwrap();
        }
        poller.join().unwrap();
        // The store reopens, audits clean and holds every acknowledged entry.
        {
            let store = Store::open(&dir.path().join("data")).unwrap();
            let report = audit_store(&store, Some(log_key().public()), |_, _| {}).unwrap();
            let acked = acked.lock().unwrap();
            assert!(
                acked.len() > before,
                "round {round}: nothing was acknowledged"
            );
            assert!(
                acked.len() < before + 2000,
                "round {round}: the kill came after the last submission"
            );
            eprintln!(
                "round {round}: {} acknowledged so far, {} entries after the crash",
                acked.len(),
                report.tree_size
            );
            for (index, id) in acked.iter() {
                assert!(*index < report.tree_size, "acknowledged entry {index} lost");
                let rec = state::certificate(&store, id).unwrap().unwrap();
                assert_eq!(rec.index, *index);
            }
            for (size, root) in heads.lock().unwrap().iter() {
                assert!(
                    *size <= report.tree_size,
                    "a head of size {size} was handed out, {} entries survived",
                    report.tree_size
                );
                let kept = reman_ledger::merkle::root(*size, &store).unwrap();
                assert_eq!(&hex::encode(kept), root, "the root of size {size} changed");
            }
        }
        let (c, a) = start(dir.path());
        child = Some(c);
        addr = a;
    }
    let mut c = child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
}

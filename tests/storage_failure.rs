//! A storage failure under the real server: the disk refuses to grow the store (a file-size
//! limit on the server process, so the kernel answers its writes with a real `EFBIG`, as a
//! full disk answers `ENOSPC`). The submission whose commit failed is told it was not
//! acknowledged and may have been logged (500, with what failed and what to do), every later one is refused at once (503); `/healthz` and
//! `/metrics` say the ledger is halted, and the signed checkpoint is still served (once a
//! write failed, sled answers the reads it cannot serve from memory with that failure: 500s
//! that say what to do). Restarted on a disk that has room, the ledger holds every entry it acknowledged,
//! audits clean and takes writes again.

mod common;

use common::*;
use reman_ledger::audit::audit_store;
use reman_ledger::payload::PayloadType;
use reman_ledger::store::Store;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server, killed when dropped (also when an assertion fails).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `reman-ledger serve` on `dir/data`, under a file-size limit of `limit_kib` KiB if
/// given (with SIGXFSZ ignored, so that a write past it fails instead of killing the server).
fn start(dir: &Path, limit_kib: Option<u64>) -> (Server, String) {
    run_limited(dir, limit_kib, "serve --data data --listen 127.0.0.1:0")
}

/// Runs `reman-ledger ARGS` (a server) in `dir`, under a file-size limit as [`start`] does.
fn run_limited(dir: &Path, limit_kib: Option<u64>, args: &str) -> (Server, String) {
    let run = format!("exec \"$0\" {args}");
    let script = match limit_kib {
        Some(k) => format!("trap '' XFSZ; ulimit -f {k} && {run}"),
        None => run,
    };
    let mut child = Command::new("bash")
        .args(["-c", &script, env!("CARGO_BIN_EXE_reman-ledger")])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = served_address(&mut child);
    (Server(child), addr)
}

/// One request over a fresh connection: the status and body.
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A certificate of the demo remanufacturer with about 30 KB of random hex, which compresses
/// poorly (the store compresses runs of entries), so that a few fill the room left on disk.
fn big_certificate(n: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ n.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let report: String = (0..1900)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:016x}", x)
        })
        .collect();
    let mut cert: Value = serde_json::from_str(&certificate_json(
        &gtin(5000 + n),
        &format!("DISK-{n}"),
        None,
    ))
    .unwrap();
    cert["extensions"] = serde_json::json!({ "inspection_report": report });
    sign(
        PayloadType::Certificate,
        &cert.to_string(),
        &key("suzhou-reman.example"),
    )
}

#[test]
fn a_disk_that_refuses_to_grow_halts_writes_and_a_restart_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    for f in ["log.key", "operator.key"] {
        std::fs::copy(root().join("keys").join(f), dir.path().join("keys").join(f)).unwrap();
    }
    let data = dir.path().join("data");
    let (ledger, _) = demo_ledger(&data);
    ledger.close().unwrap();
    let db_len = std::fs::metadata(data.join("db")).unwrap().len();

    // Room for a few more kilobytes past the store's sled file as it is.
    let (server, addr) = start(dir.path(), Some(db_len / 1024 + 64));
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut failed = None;
    for n in 0..400 {
        let envelope = big_certificate(n);
        let (status, body) = request(&addr, "POST", "/api/v1/entries", &envelope);
        if status == 201 {
            let r = json(&body);
            acked.push((
                r["index"].as_u64().unwrap(),
                r["leaf_hash"].as_str().unwrap().to_owned(),
            ));
        } else {
            failed = Some((n, status, body, envelope));
            break;
        }
    }
    let (n, status, body, failed_envelope) = failed.expect("the disk never refused a write");
    // The submission whose commit failed: not acknowledged, why, and what to do.
    assert_eq!(status, 500, "{body}");
    let detail = json(&body)["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.starts_with("not acknowledged, storage failed"),
        "{detail}"
    );
    assert!(
        detail.contains("submit it again once the ledger is back"),
        "{detail}"
    );
    assert!(detail.contains("File too large (os error 27)"), "{detail}");
    assert!(!detail.contains("Os {"), "{detail}");

    // From then on writes are refused at once, with what to do.
    let (status, body) = request(&addr, "POST", "/api/v1/entries", &big_certificate(n + 1));
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("stopped accepting writes after a storage failure; restart it"),
        "{body}"
    );
    let (status, body) = request(&addr, "GET", "/healthz", b"");
    assert_eq!(status, 503, "{body}");
    let health = json(&body);
    assert_eq!(health["status"], "halted");
    let reason = health["halted"]["reason"].as_str().unwrap();
    assert!(reason.contains("File too large (os error 27)"), "{reason}");
    let (_, metrics) = request(&addr, "GET", "/metrics", b"");
    assert!(metrics.contains("\nreman_ledger_halted 1\n"), "{metrics}");
    // The last checkpoint signed is still served; what sled must read says what to do.
    let (status, body) = request(&addr, "GET", "/checkpoint", b"");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("\n{}\n", 89 + acked.len())),
        "{body}"
    );
    for (index, leaf) in acked.last().into_iter().chain([&(0, String::new())]) {
        let (status, body) = request(&addr, "GET", &format!("/api/v1/entries/{index}"), b"");
        match status {
            200 if *index > 0 => assert_eq!(json(&body)["leaf_hash"], leaf.as_str()),
            200 => assert_eq!(json(&body)["index"], 0),
            500 => assert!(
                body.contains(
                    "File too large (os error 27): free disk space or raise the file-size limit, then restart"
                ),
                "{body}"
            ),
            _ => panic!("{status} {body}"),
        }
    }
    drop(server);

    // Restarted where the disk has room: everything acknowledged is there, nothing else but
    // (at most) the batch that failed, and writes are taken again.
    let (server, addr) = start(dir.path(), None);
    let (status, body) = request(&addr, "GET", "/healthz", b"");
    assert_eq!(status, 200, "{body}");
    let size = json(&body)["tree_size"].as_u64().unwrap();
    let logged = 89 + acked.len() as u64;
    assert!(
        size == logged || size == logged + 1,
        "{size} after {logged}"
    );
    for (index, leaf) in &acked {
        let (_, body) = request(&addr, "GET", &format!("/api/v1/entries/{index}"), b"");
        assert_eq!(json(&body)["leaf_hash"], leaf.as_str());
    }
    let (status, body) = request(&addr, "POST", "/api/v1/entries", &failed_envelope);
    assert!(status == 201 || status == 200, "{status} {body}");
    let (_, metrics) = request(&addr, "GET", "/metrics", b"");
    assert!(metrics.contains("\nreman_ledger_halted 0\n"), "{metrics}");
    drop(server);
    let store = Store::open(&data).unwrap();
    let report = audit_store(&store, Some(log_key().public()), |_, _| {}).unwrap();
    assert!(report.entries > logged);
}

#[test]
fn a_mirror_whose_disk_refuses_a_step_says_so_and_follows_again_once_restarted() {
    // The ledger it follows, on a disk with room.
    let up_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(up_dir.path().join("keys")).unwrap();
    for f in ["log.key", "operator.key"] {
        std::fs::copy(
            root().join("keys").join(f),
            up_dir.path().join("keys").join(f),
        )
        .unwrap();
    }
    let (ledger, _) = demo_ledger(&up_dir.path().join("data"));
    ledger.close().unwrap();
    let (_upstream, up) = start(up_dir.path(), None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::copy(
        root().join("keys/log.key.pub"),
        dir.path().join("keys/log.key.pub"),
    )
    .unwrap();
    let mirror_args = format!(
        "mirror --from http://{up} --log-key keys/log.key.pub --data m --listen 127.0.0.1:0 --interval-ms 50"
    );
    let health = |addr: &str| {
        let (status, body) = request(addr, "GET", "/healthz", b"");
        (status, json(&body))
    };
    let wait_for = |addr: &str, what: &str, done: &dyn Fn(u16, &Value) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, h) = health(addr);
            if done(status, &h) {
                return h;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never {what}: {status} {h}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // A mirror with room for the demo log, and little more.
    let (mirror, addr) = run_limited(dir.path(), Some(2048), &mirror_args);
    wait_for(&addr, "followed the demo log", &|s, h| {
        s == 200 && h["tree_size"] == 89
    });
    for n in 0..120 {
        let (status, body) = request(&up, "POST", "/api/v1/entries", &big_certificate(n));
        assert_eq!(status, 201, "{body}");
    }
    let h = wait_for(&addr, "halted", &|s, _| s == 503);
    assert_eq!(h["status"], "halted", "{h}");
    let reason = h["halted"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("a mirror step could not be stored")
            && reason.contains("File too large (os error 27)"),
        "{reason}"
    );
    assert_eq!(h["mirror"]["state"], "stopped", "{h}");
    let (_, metrics) = request(&addr, "GET", "/metrics", b"");
    assert!(metrics.contains("\nreman_ledger_halted 1\n"), "{metrics}");
    drop(mirror);

    // Restarted on a disk with room, it follows again (no --resume: its disk failed, not the
    // log it follows) and holds the whole log, which audits clean.
    let (mirror, addr) = run_limited(dir.path(), None, &mirror_args);
    let size = 89 + 120;
    wait_for(&addr, "caught up", &|s, h| {
        s == 200 && h["tree_size"] == size && h["mirror"]["behind"].is_null()
    });
    drop(mirror);
    let store = Store::open(&dir.path().join("m")).unwrap();
    let report = audit_store(&store, Some(log_key().public()), |_, _| {}).unwrap();
    assert_eq!(report.entries, size);
}

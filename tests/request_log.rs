//! The real server's request log: one line per request on stderr, written in chunks shortly
//! after the requests (src/logging.rs), and nothing left behind when it stops.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `reman-ledger serve` with its stderr in `log` and returns it with its address.
fn start(dir: &Path, log: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reman-ledger"))
        .args(["serve", "--data", "data", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let addr = served_address(&mut child);
    (child, addr)
}

fn get(addr: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn request_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("reman_ledger::http"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_request_is_logged_in_order_soon_after_it_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("keys"), &dir.path().join("keys"));
    let log = dir.path().join("stderr.log");
    let (mut server, addr) = start(dir.path(), &log);
    let paths: Vec<String> = (0..50)
        .map(|i| format!("/api/v1/entries/{i}"))
        .chain(["/healthz".to_owned(), "/no/such/page".to_owned()])
        .collect();
    let statuses: Vec<u16> = paths.iter().map(|p| get(&addr, p)).collect();
    assert_eq!(statuses[0], 200);
    assert_eq!(
        statuses[1], 404,
        "a new ledger holds only its genesis entry"
    );
    assert_eq!(*statuses.last().unwrap(), 404);

    // Written within a moment, while the server runs, not only when it stops.
    let deadline = Instant::now() + Duration::from_secs(5);
    while request_lines(&log).len() < paths.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let lines = request_lines(&log);
    assert_eq!(lines.len(), paths.len(), "{lines:#?}");
    for ((line, path), status) in lines.iter().zip(&paths).zip(&statuses) {
        assert!(line.contains(&format!("path={path} ")), "{line} for {path}");
        assert!(
            line.contains(&format!("status={status}")),
            "{line} for {path}"
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

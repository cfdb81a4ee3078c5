//! The limits a server puts on its clients' connections (src/server.rs), over a real loopback
//! socket: slow and idle clients are closed, at most so many connections are open, and a
//! shutdown does not wait for idle ones.

mod common;

use common::*;
use reman_ledger::api::{self, ServeOptions};
use reman_ledger::ledger::Ledger;
use reman_ledger::server::ConnectionLimits;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    ledger: Arc<Ledger>,
    _dir: tempfile::TempDir,
}

async fn start(limits: ConnectionLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let ledger = tokio::task::spawn_blocking(move || new_ledger(&path))
        .await
        .unwrap();
    let ledger = Arc::new(ledger);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = ServeOptions {
        connections: limits,
        ..ServeOptions::default()
    };
    let task = tokio::spawn(api::serve(listener, ledger.clone(), opts, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        shutdown: Some(tx),
        task,
        ledger,
        _dir: dir,
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n\r\n";

/// Reads one answer's status line and headers, then its body of Content-Length bytes.
async fn read_answer(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "the connection closed before an answer");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    head
}

/// Waits until the server closes `s`; how long that took.
async fn closed_after(s: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the server kept the connection open")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    start.elapsed()
}

async fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: ledger\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn limits(max_connections: usize, header_timeout_ms: u64) -> ConnectionLimits {
    ConnectionLimits {
        max_connections,
        header_timeout: Duration::from_millis(header_timeout_ms),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_its_headers_too_slowly_is_closed_while_others_are_served() {
    let server = start(limits(64, 600)).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: le")
        .await
        .unwrap();
    // Another client is answered meanwhile.
    let mut other = TcpStream::connect(server.addr).await.unwrap();
    other.write_all(HEALTHZ).await.unwrap();
    assert!(read_answer(&mut other).await.starts_with("HTTP/1.1 200"));
    // A byte now and then does not keep the slow one alive: the deadline is for the headers.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if slow.write_all(b"x").await.is_err() {
            break;
        }
    }
    let waited = closed_after(&mut slow).await;
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert!(
        metric(
            server.addr,
            "reman_ledger_connections_header_timeouts_total"
        )
        .await
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = start(limits(64, 500)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..2 {
        // Within the timeout, the connection is kept for the next request.
        s.write_all(HEALTHZ).await.unwrap();
        assert!(read_answer(&mut s).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waited = closed_after(&mut s).await;
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_limit_a_client_waits_until_a_connection_closes() {
    let server = start(limits(2, 60_000)).await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    first.write_all(HEALTHZ).await.unwrap();
    read_answer(&mut first).await;
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    second.write_all(HEALTHZ).await.unwrap();
    read_answer(&mut second).await;
    // The third connects (the kernel's queue) but is not served while two are open.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), third.read(&mut byte))
            .await
            .is_err(),
        "the third connection was served beyond the limit"
    );
    drop(first);
    let answered = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut third))
        .await
        .expect("the third connection was not served once one closed");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    drop(second);
    drop(third);
    assert!(metric(server.addr, "reman_ledger_connections_at_limit_total").await >= 1);
    assert!(metric(server.addr, "reman_ledger_connections_accepted_total").await >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_closes_idle_connections_at_once_and_the_ledger_closes() {
    let mut server = start(limits(64, 60_000)).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(HEALTHZ).await.unwrap();
    read_answer(&mut idle).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let start = Instant::now();
    server.shutdown.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("the server waited for idle connections")
        .unwrap()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(closed_after(&mut idle).await < Duration::from_secs(1));
    assert!(closed_after(&mut silent).await < Duration::from_secs(1));
    api::close_ledger(server.ledger, Duration::from_secs(5))
        .await
        .unwrap();
}

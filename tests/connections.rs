//! The limits a server puts on its clients' connections (src/server.rs), over a real loopback
//! socket: slow, idle and non-reading clients are closed, at most so many connections are
//! open, and a shutdown does not wait for idle ones nor, past its grace, for busy ones.

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
    start_with(limits, Duration::from_secs(10)).await
}

async fn start_with(limits: ConnectionLimits, grace: Duration) -> Server {
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
        shutdown_grace: grace,
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
        ..ConnectionLimits::default()
    }
}

/// A client that asks for many answers and reads none: its socket's receive buffer is small,
/// so the server's writes soon block.
async fn non_reader(addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let request = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: ledger\r\n\r\n".repeat(200);
    s.write_all(&request).await.unwrap();
    s
}

/// Waits (at most 10 s) until the open-connections gauge is `n`.
async fn open_becomes(addr: std::net::SocketAddr, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The connection asking counts itself.
        let open = metric(addr, "reman_ledger_connections_open").await - 1;
        if open == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{open} connections open, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_answers_is_closed_after_the_write_timeout() {
    let server = start(ConnectionLimits {
        max_connections: 2,
        header_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_millis(500),
    })
    .await;
    let _first = non_reader(server.addr).await;
    let _second = non_reader(server.addr).await;
    // Both slots are taken until their writes time out; then others are served again.
    let mut other = TcpStream::connect(server.addr).await.unwrap();
    other.write_all(HEALTHZ).await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(8), read_answer(&mut other))
        .await
        .expect("the non-reading clients kept every connection");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    drop(other);
    // Their connections are counted closed, as every other is, each for its write timeout.
    open_becomes(server.addr, 0).await;
    assert!(metric(server.addr, "reman_ledger_connections_write_timeouts_total").await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_drops_connections_still_busy_after_its_grace_and_lets_go_of_the_ledger() {
    let mut server = start_with(
        ConnectionLimits {
            max_connections: 64,
            header_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
        },
        Duration::from_millis(500),
    )
    .await;
    let _stuck = non_reader(server.addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    server.shutdown.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("the server waited for a client that does not read")
        .unwrap()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    // Nothing the server ran holds the ledger: it closes cleanly, not by a flush only.
    assert_eq!(Arc::strong_count(&server.ledger), 1);
    api::close_ledger(server.ledger, Duration::from_secs(5))
        .await
        .unwrap();
}

#[test]
fn the_connection_limit_fits_the_open_file_limit() {
    use reman_ledger::server::{RESERVED_FILES, fit_to_open_files, parse_max_open_files};
    assert_eq!(fit_to_open_files(1024, None), (1024, false));
    assert_eq!(fit_to_open_files(1024, Some(20_000)), (1024, false));
    assert_eq!(
        fit_to_open_files(1024, Some(1024)),
        (1024 - RESERVED_FILES as usize, true)
    );
    assert_eq!(fit_to_open_files(1024, Some(10)), (1, true));
    let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                  Max cpu time              unlimited            unlimited            seconds   \n\
                  Max open files            1024                 524288               files     \n";
    assert_eq!(parse_max_open_files(limits), Some(1024));
    let unlimited = "Max open files            unlimited            unlimited            files\n";
    assert_eq!(parse_max_open_files(unlimited), None);
    assert_eq!(parse_max_open_files(""), None);
}

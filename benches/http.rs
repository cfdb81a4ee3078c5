//! Issue 3's speed figures (and issue 5, item 2): a load generator over real HTTP on loopback,
//! beside the limits it is compared with, all measured in the same run on the same machine.
//!
//! Run: `cargo bench --bench http` (every mode), or for example
//! `cargo bench --bench http -- --mode lookup,append --connections 64 --duration 5 --json`.
//! `-- --help` lists the options.
//!
//! What runs where (all on this machine, sharing its cores):
//! - the real server is the `reman-ledger` binary (`serve --demo` on a fresh temp directory,
//!   i.e. production code and configuration, request log lines included, written to a file
//!   in that directory), spawned as a child
//!   process so that its CPU time can be read from `/proc/<pid>/stat` alone;
//! - the reference is a trivial axum server (one route answering a short constant body),
//!   spawned the same way: this bench binary re-executed with `--serve-trivial`;
//! - the load generator is this process: its own multi-thread tokio runtime, C keep-alive
//!   HTTP/1.1 connections (hyper `http1::handshake` over a `TcpStream`, one per task, reused
//!   for every request of the task), one request in flight per connection.
//!
//! Cargo builds the binary for benches (`CARGO_BIN_EXE_reman-ledger`); it is copied into the
//! temp directory first, so that another build into the shared target directory cannot swap it
//! during the run.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use reman_ledger::certificate::CertificateId;
use reman_ledger::dsse::{Envelope, pae};
use reman_ledger::keys::{PrivateKey, PublicKey};
use reman_ledger::payload::PayloadType;
use reman_ledger::tiles::{Tile, TileKind};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The read and write modes, in the order they run (`append` grows the log; `lookup-new`
/// then reads what it appended).
const MODES: &[&str] = &[
    "trivial",
    "healthz",
    "lookup",
    "resolver",
    "scan",
    "qr",
    "append",
    "lookup-new",
    "tile",
    "bundle",
];

const USAGE: &str = "\
usage: cargo bench --bench http -- [options]
  --mode M[,M...]     modes to run (default: all): trivial healthz lookup resolver scan qr append
                      lookup-new (the certificates `append` logged, each once in turn: every
                      answer rendered afresh, from compressed runs; needs append) tile
                      bundle (tlog-tiles: level-0 Merkle tiles / entry bundles spread over the
                      tree, full ones once append has grown it past 256 entries)
  --connections C     keep-alive connections, one request in flight each (default 64, max 1024)
  --duration S        measured seconds per mode (default 5, max 300)
  --warmup S          unmeasured seconds before each mode (default 1, max 60)
  --requests N        measure N requests per mode instead of a duration (max 10,000,000)
  --append-n N        certificate envelopes pre-signed for `append` (default 60000, max 1000000)
  --server-log LEVEL  RUST_LOG of the ledger server (default info: one log line per request)
  --server URL        drive an already running ledger (http://HOST:PORT, started with
                      `serve --demo`) instead of starting one; appends are new certificates
                      for this run, so the same server can be driven again
  --server-pid PID    that server's process, for its CPU time per request (else not measured)
  --json              print the results as one JSON object instead of the table";

/// Answers slower than this fail the run (the server's own request timeout is 10 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Options {
    modes: Vec<String>,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    requests: Option<u64>,
    append_n: usize,
    server_log: String,
    /// An already running ledger to drive, and its process if known.
    server: Option<SocketAddr>,
    server_pid: Option<u32>,
    json: bool,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        modes: MODES.iter().map(|m| m.to_string()).collect(),
        connections: 64,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        requests: None,
        append_n: 60_000,
        server_log: "info".into(),
        server: None,
        server_pid: None,
        json: false,
    };
    let mut it = args.iter();
    let secs = |v: &str, max: f64| -> Result<Duration, String> {
        match v.parse::<f64>() {
            Ok(s) if s >= 0.0 && s <= max => Ok(Duration::from_secs_f64(s)),
            _ => Err(format!("expected seconds between 0 and {max}, got {v:?}")),
        }
    };
    let count = |v: &str, min: u64, max: u64| -> Result<u64, String> {
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "expected a whole number from {min} to {max}, got {v:?}"
            )),
        }
    };
    while let Some(a) = it.next() {
        // `--name=value` or `--name value`.
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name {
            "--bench" => {} // passed by `cargo bench`
            "--json" => o.json = true,
            "--help" | "-h" => return Err(String::new()),
            "--mode" => {
                let v = value()?;
                o.modes = Vec::new();
                for m in v.split(',').filter(|m| !m.is_empty()) {
                    if !MODES.contains(&m) {
                        return Err(format!("unknown mode {m:?}; modes: {}", MODES.join(" ")));
                    }
                    o.modes.push(m.to_string());
                }
                // Run in the fixed order whatever the order given.
                o.modes
                    .sort_by_key(|m| MODES.iter().position(|x| x == m).unwrap_or(usize::MAX));
                o.modes.dedup();
                if o.modes.iter().any(|m| m == "lookup-new")
                    && !o.modes.iter().any(|m| m == "append")
                {
                    return Err("mode lookup-new reads what append logged: add append".into());
                }
            }
            "--connections" | "-c" => o.connections = count(&value()?, 1, 1024)? as usize,
            "--duration" => o.duration = secs(&value()?, 300.0)?,
            "--warmup" => o.warmup = secs(&value()?, 60.0)?,
            "--requests" => o.requests = Some(count(&value()?, 1, 10_000_000)?),
            "--append-n" => o.append_n = count(&value()?, 1, 1_000_000)? as usize,
            "--server-log" => o.server_log = value()?,
            "--server" => {
                let v = value()?;
                let hostport = v
                    .strip_prefix("http://")
                    .map(|h| h.trim_end_matches('/'))
                    .ok_or_else(|| format!("--server: expected http://HOST:PORT, got {v:?}"))?;
                let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("--server: cannot resolve {hostport:?}"))?;
                o.server = Some(addr);
            }
            "--server-pid" => o.server_pid = Some(count(&value()?, 1, u64::from(u32::MAX))? as u32),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.modes.is_empty() {
        return Err("no mode selected".into());
    }
    if o.requests.is_none() && o.duration.is_zero() {
        return Err("--duration must be above 0".into());
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Child servers
// ---------------------------------------------------------------------------------------------

/// A server child process, killed when dropped (also when the run fails).
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `cmd` and waits for the line on its stdout that names its address: the first
    /// `http://HOST:PORT` after `marker`.
    fn start(mut cmd: Command, marker: &str) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("{cmd:?} exited before saying where it listens");
            }
            if let Some(rest) = line.split(marker).nth(1)
                && let Some(a) = rest.split("http://").nth(1)
            {
                let a = a.split_whitespace().next().unwrap_or("");
                break a.parse::<SocketAddr>().unwrap();
            }
        };
        assert!(addr.ip().is_loopback(), "{addr} is not a loopback address");
        // Keep reading whatever else it prints, so that it can never block on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        Server { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The reference: an axum server with one route answering a short constant body, on a
/// default multi-thread runtime like the real server's, with TCP_NODELAY like it. Exits when
/// its stdin closes (so it never outlives the load generator).
fn serve_trivial() {
    use axum::serve::ListenerExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "trivial server on http://{}",
            listener.local_addr().unwrap()
        );
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let parent_gone = async {
            let _ = tokio::task::spawn_blocking(|| {
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
            })
            .await;
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(parent_gone)
            .await
            .unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Load generator
// ---------------------------------------------------------------------------------------------

/// Makes the request of sequence number `i`, or None when there is no more work.
type MakeRequest = dyn Fn(usize) -> Option<Request<Full<Bytes>>> + Send + Sync;

struct Mode {
    name: &'static str,
    what: String,
    server: SocketAddr,
    server_pid: Option<u32>,
    expect: StatusCode,
    make: Arc<MakeRequest>,
}

#[derive(Default)]
struct Outcome {
    name: String,
    what: String,
    requests: usize,
    window_s: f64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    bytes_per_answer: f64,
    server_cpu_us: f64,
    loadgen_cpu_us: f64,
    server_cpu_util: f64,
    loadgen_cpu_util: f64,
}

/// What one connection saw after the warm-up.
#[derive(Default)]
struct TaskLog {
    /// Latencies in µs of the requests that started after the warm-up and ended in time.
    lat_us: Vec<u32>,
    /// When the last counted one ended.
    last_done: Option<Instant>,
    body_bytes: u64,
}

fn get(addr: SocketAddr, path: &str, accept: &'static str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", addr.to_string())
        .header("accept", accept)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn post(addr: SocketAddr, path: &str, body: Bytes) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(body))
        .unwrap()
}

/// One keep-alive connection: requests one after the other until the end, the request budget
/// or the work runs out.
#[allow(clippy::too_many_arguments)]
async fn connection(
    mode: Arc<Mode>,
    next: Arc<AtomicUsize>,
    budget: Option<Arc<AtomicU64>>,
    after_warmup: Arc<AtomicU64>,
    warm_end: Instant,
    end: Instant,
) -> Result<TaskLog, String> {
    let stream = tokio::net::TcpStream::connect(mode.server)
        .await
        .map_err(|e| format!("connect {}: {e}", mode.server))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut log = TaskLog::default();
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let measured = start >= warm_end;
        if measured && let Some(b) = &budget {
            // Requests mode: claim one of the N measured requests.
            if b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
            {
                break;
            }
        }
        let Some(req) = (mode.make)(next.fetch_add(1, Ordering::Relaxed)) else {
            break;
        };
        let what = format!("{} {}", req.method(), req.uri());
        let answer = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        let (status, body) = match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(format!("{what}: {e}")),
            Err(_) => return Err(format!("{what}: no answer in {REQUEST_TIMEOUT:?}")),
        };
        let done = Instant::now();
        if status != mode.expect {
            return Err(format!(
                "{what}: answered {status}, expected {}: {}",
                mode.expect,
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ));
        }
        if done >= warm_end {
            after_warmup.fetch_add(1, Ordering::Relaxed);
        }
        if measured && (budget.is_some() || done <= end) {
            log.lat_us
                .push(u32::try_from(done.duration_since(start).as_micros()).unwrap_or(u32::MAX));
            log.last_done = Some(done);
            log.body_bytes += body.len() as u64;
        }
    }
    Ok(log)
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1e3
}

async fn run_mode(mode: Mode, o: &Options) -> Result<Outcome, String> {
    let mode = Arc::new(mode);
    let next = Arc::new(AtomicUsize::new(0));
    let after_warmup = Arc::new(AtomicU64::new(0));
    let budget = o.requests.map(|n| Arc::new(AtomicU64::new(n)));
    let t0 = Instant::now();
    let warm_end = t0 + o.warmup;
    // With a request budget the run ends when it is spent (bounded anyway by 10 minutes).
    let end = warm_end
        + if o.requests.is_some() {
            Duration::from_secs(600)
        } else {
            o.duration
        };
    let me = std::process::id().to_string();
    // Without a process to read, the server's CPU reads as NaN.
    let server = mode
        .server_pid
        .map_or_else(|| "unknown".to_string(), |p| p.to_string());
    // CPU counters at the end of the warm-up (sampled by a task of its own).
    let sampler = {
        let (me, server) = (me.clone(), server.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(warm_end.into()).await;
            (
                support::cpu_seconds(&server),
                support::cpu_seconds(&me),
                Instant::now(),
            )
        })
    };
    let tasks: Vec<_> = (0..o.connections)
        .map(|_| {
            tokio::spawn(connection(
                mode.clone(),
                next.clone(),
                budget.clone(),
                after_warmup.clone(),
                warm_end,
                end,
            ))
        })
        .collect();
    let mut logs = Vec::new();
    let mut failure = None;
    for t in tasks {
        match t.await {
            Ok(Ok(l)) => logs.push(l),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(format!("connection task failed: {e}"))),
        }
    }
    let (server_cpu1, me_cpu1, sampled_at) = sampler.await.map_err(|e| e.to_string())?;
    let (server_cpu2, me_cpu2, finished_at) = (
        support::cpu_seconds(&server),
        support::cpu_seconds(&me),
        Instant::now(),
    );
    if let Some(e) = failure {
        return Err(format!("mode {}: {e}", mode.name));
    }
    let mut lat: Vec<u32> = logs.iter().flat_map(|l| l.lat_us.iter().copied()).collect();
    lat.sort_unstable();
    let last = logs.iter().filter_map(|l| l.last_done).max();
    let window_s = last.map_or(0.0, |l| l.duration_since(warm_end).as_secs_f64());
    let n = lat.len();
    if n == 0 {
        return Err(format!(
            "mode {}: no request completed after the warm-up (too little work?)",
            mode.name
        ));
    }
    let body_bytes: u64 = logs.iter().map(|l| l.body_bytes).sum();
    // CPU per request: over everything that completed between the two samples.
    let done = after_warmup.load(Ordering::Relaxed).max(1) as f64;
    let cpu_window = finished_at.duration_since(sampled_at).as_secs_f64();
    Ok(Outcome {
        name: mode.name.into(),
        what: mode.what.clone(),
        requests: n,
        window_s,
        rate: n as f64 / window_s,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        p999_ms: percentile(&lat, 0.999),
        max_ms: percentile(&lat, 1.0),
        bytes_per_answer: body_bytes as f64 / n as f64,
        server_cpu_us: (server_cpu2 - server_cpu1) / done * 1e6,
        loadgen_cpu_us: (me_cpu2 - me_cpu1) / done * 1e6,
        server_cpu_util: (server_cpu2 - server_cpu1) / cpu_window,
        loadgen_cpu_util: (me_cpu2 - me_cpu1) / cpu_window,
    })
}

// ---------------------------------------------------------------------------------------------
// Crypto reference and work
// ---------------------------------------------------------------------------------------------

/// Operations per second of `op` on this thread, over about `secs` seconds.
fn rate_of(secs: f64, mut op: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    let mut n = 0;
    loop {
        for _ in 0..64 {
            op(n);
            n += 1;
        }
        let e = start.elapsed().as_secs_f64();
        if e >= secs {
            return n as f64 / e;
        }
    }
}

/// Single-core Ed25519 `sign` and `verify_strict` rates over DSSE messages of certificates.
fn crypto_rates(keys: &[PrivateKey]) -> (f64, f64) {
    let msgs: Vec<Vec<u8>> = (0..256)
        .map(|i| {
            let json = certificate_json(&gtin(900_000 + i), &format!("REF-{i:06}"), None);
            pae(PayloadType::Certificate.media_type(), json.as_bytes())
        })
        .collect();
    let sigs: Vec<[u8; 64]> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % keys.len()].sign(m))
        .collect();
    let pubs: Vec<&PublicKey> = keys.iter().map(|k| k.public()).collect();
    let sign = rate_of(1.0, |i| {
        std::hint::black_box(keys[i % keys.len()].sign(&msgs[i % msgs.len()]));
    });
    let verify = rate_of(1.0, |i| {
        let j = i % msgs.len();
        assert!(pubs[j % pubs.len()].verify(&msgs[j], &sigs[j]).is_ok());
    });
    (sign, verify)
}

/// `n` distinct certificate envelopes of the 4 demo remanufacturers, as request bodies;
/// signed on every core.
fn presign(n: usize, keys: &[PrivateKey], threads: usize) -> Vec<Bytes> {
    // Distinct units in every run (a running server may already hold an earlier run's).
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64 & 0xff_ffff);
    let next = AtomicUsize::new(0);
    let chunk = 1024;
    let mut parts: Vec<(usize, Vec<Bytes>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let from = next.fetch_add(chunk, Ordering::Relaxed);
                        if from >= n {
                            break out;
                        }
                        let bodies = (from..(from + chunk).min(n))
                            .map(|i| {
                                let json = certificate_json(
                                    &gtin(i as u64),
                                    &format!("H{run:06x}-{i:08}"),
                                    None,
                                );
                                let env = Envelope::sign(
                                    PayloadType::Certificate.media_type(),
                                    json.into_bytes(),
                                    &keys[i % keys.len()],
                                )
                                .unwrap();
                                Bytes::from(env.to_json().into_bytes())
                            })
                            .collect();
                        out.push((from, bodies));
                    }
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    parts.sort_by_key(|(from, _)| *from);
    parts.into_iter().flat_map(|(_, b)| b).collect()
}

/// A demo certificate: its ID and product.
struct DemoCert {
    id: CertificateId,
    gtin: String,
    serial: String,
}

fn demo_certificates() -> Vec<DemoCert> {
    reman_ledger::demo::envelopes(&demo_jsonl(), &demo_keys())
        .unwrap()
        .into_iter()
        .filter(|(_, e)| e.payload_type == PayloadType::Certificate.media_type())
        .map(|(_, e)| {
            let v: Value = serde_json::from_slice(&e.payload).unwrap();
            DemoCert {
                id: CertificateId::of_payload(&e.payload),
                gtin: v["product"]["gtin"].as_str().unwrap().to_owned(),
                serial: v["product"]["serial"].as_str().unwrap().to_owned(),
            }
        })
        .collect()
}

/// The path and query of each certificate's `qr_url` (the link a customs officer's phone
/// opens after scanning: the resolver with the seal, which the server verifies).
/// The tree size of the ledger's latest checkpoint (its second line).
async fn tree_size(addr: SocketAddr) -> u64 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(get(addr, "/checkpoint", "text/plain"))
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("not a checkpoint: {text}"))
}

async fn scan_paths(addr: SocketAddr, ids: &[CertificateId]) -> Vec<String> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for id in ids {
        let req = get(
            addr,
            &format!("/api/v1/certificates/{id}"),
            "application/json",
        );
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "demo certificate {id} at http://{addr}: the server must hold the demo data set (serve --demo)"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        if let Some(url) = v["qr_url"].as_str()
            && let Some(i) = url.find("/01/")
        {
            out.push(url[i..].to_owned());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn ledger_server(dir: &Path, log_level: &str) -> Server {
    // Our own copy: another build into the shared target directory cannot replace it mid-run.
    let exe = dir.join("reman-ledger");
    std::fs::copy(env!("CARGO_BIN_EXE_reman-ledger"), &exe)
        .unwrap_or_else(|e| panic!("cannot copy the reman-ledger binary: {e}"));
    let mut cmd = Command::new(&exe);
    cmd.current_dir(root()) // the demo data set and the demo keys live in the project
        .arg("serve")
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--log-key")
        .arg(root().join("keys/log.key"))
        .args(["--listen", "127.0.0.1:0", "--demo"])
        .args(["--base-url", "https://ledger.example"])
        .env("RUST_LOG", log_level)
        .stdin(Stdio::null())
        // A file, as in production (not /dev/null, where writing a line costs nothing).
        .stderr(
            std::fs::File::create(dir.join("server.log"))
                .unwrap_or_else(|e| panic!("cannot create the server's log file: {e}")),
        );
    Server::start(cmd, "serving ")
}

fn trivial_server() -> Server {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--serve-trivial")
        .stdin(Stdio::piped())
        .stderr(Stdio::inherit());
    Server::start(cmd, "trivial server on ")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--serve-trivial") {
        serve_trivial();
        return;
    }
    let o = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let say = |s: String| {
        if !o.json {
            println!("{s}");
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let load_before = load_average();
    let signers = [
        "suzhou-reman.example",
        "rhein-reman.example",
        "texas-reman.example",
        "kyoto-imaging.example",
    ];
    let keys: Vec<PrivateKey> = signers.iter().map(|s| key(s)).collect();

    // The crypto reference first, while none of our servers runs.
    let (sign_rate, verify_rate) = crypto_rates(&keys);
    let crypto_limit = cores as f64 / (1.0 / verify_rate + 1.0 / sign_rate);
    say(format!(
        "crypto reference, 1 core: Ed25519 sign {sign_rate:.0}/s, verify_strict {verify_rate:.0}/s \
         -> verify+sign limit over {cores} cores: {crypto_limit:.0}/s"
    ));

    let with_append = o.modes.iter().any(|m| m == "append");
    let bodies = if with_append {
        let t = Instant::now();
        let b = presign(o.append_n, &keys, cores);
        say(format!(
            "pre-signed {} distinct certificate envelopes ({} remanufacturers, {:.0} bytes each) in {:.1} s",
            b.len(),
            keys.len(),
            b.iter().map(|x| x.len()).sum::<usize>() as f64 / b.len() as f64,
            t.elapsed().as_secs_f64()
        ));
        Arc::new(b)
    } else {
        Arc::new(Vec::new())
    };

    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let ledger = match o.server {
        None => Some(ledger_server(dir.path(), &o.server_log)),
        Some(_) => None,
    };
    let (ledger_addr, ledger_pid) = match &ledger {
        Some(l) => (l.addr, Some(l.pid())),
        None => (o.server.unwrap_or_else(|| unreachable!()), o.server_pid),
    };
    let trivial = trivial_server();
    say(format!(
        "ledger server: {} (pid {}, http://{ledger_addr}, {}); trivial axum server (pid {}, http://{})",
        if ledger.is_some() {
            "reman-ledger serve --demo"
        } else {
            "already running"
        },
        ledger_pid.map_or_else(
            || "unknown: no server CPU figures".into(),
            |p| p.to_string()
        ),
        if ledger.is_some() {
            format!(
                "RUST_LOG={}, started in {:.1} s",
                o.server_log,
                t.elapsed().as_secs_f64()
            )
        } else {
            "given by --server".into()
        },
        trivial.pid(),
        trivial.addr
    ));
    say(format!(
        "machine: {cores} cores, shared by the load generator ({cores} tokio workers) and both \
         servers (each a {cores}-worker tokio runtime); load average before the run: {load_before}"
    ));
    say(format!(
        "load: {} keep-alive HTTP/1.1 connections, one request in flight each; {}",
        o.connections,
        match o.requests {
            Some(n) => format!("{n} requests per mode after {:?} warm-up", o.warmup),
            None => format!("{:?} per mode after {:?} warm-up", o.duration, o.warmup),
        }
    ));

    let certs = demo_certificates();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    let scans = rt.block_on(scan_paths(
        ledger_addr,
        &certs.iter().map(|c| c.id).collect::<Vec<_>>(),
    ));
    assert!(!scans.is_empty(), "no certificate has a qr_url");

    let (la, ta) = (ledger_addr, trivial.addr);
    // The IDs of the pre-signed certificates, and how many of them `append` sent (each had
    // to be logged), for `lookup-new`.
    let new_ids: Arc<Vec<String>> = Arc::new(
        bodies
            .iter()
            .filter_map(|b| Envelope::parse(b).ok())
            .map(|e| CertificateId::of_payload(&e.payload).to_string())
            .collect(),
    );
    let appended = Arc::new(AtomicUsize::new(0));
    let ids: Arc<Vec<String>> = Arc::new(certs.iter().map(|c| c.id.to_string()).collect());
    // One resolver path per product (a superseded certificate's product appears once).
    let mut products: Vec<String> = certs
        .iter()
        .map(|c| {
            format!(
                "/01/{}/21/{}",
                c.gtin,
                reman_ledger::seal::percent_encode(&c.serial)
            )
        })
        .collect();
    products.sort();
    products.dedup();
    let products = Arc::new(products);
    let scans = Arc::new(scans);
    let mut outcomes = Vec::new();
    for name in &o.modes {
        let (ids, products, scans, bodies) =
            (ids.clone(), products.clone(), scans.clone(), bodies.clone());
        let (new_ids, appended) = (new_ids.clone(), appended.clone());
        let mode = match name.as_str() {
            "trivial" => Mode {
                name: "trivial",
                what: "GET / of the trivial axum server (constant \"ok\")".into(),
                server: ta,
                server_pid: Some(trivial.pid()),
                expect: StatusCode::OK,
                make: Arc::new(move |_| Some(get(ta, "/", "text/plain"))),
            },
            "healthz" => Mode {
                name: "healthz",
                what: "GET /healthz".into(),
                server: la,
                server_pid: ledger_pid,
                expect: StatusCode::OK,
                make: Arc::new(move |_| Some(get(la, "/healthz", "application/json"))),
            },
            "lookup" => Mode {
                name: "lookup",
                what: format!(
                    "GET /api/v1/certificates/{{id}} (JSON with inclusion proof), {} demo IDs round-robin",
                    ids.len()
                ),
                server: la,
                server_pid: ledger_pid,
                expect: StatusCode::OK,
                make: Arc::new(move |i| {
                    Some(get(
                        la,
                        &format!("/api/v1/certificates/{}", ids[i % ids.len()]),
                        "application/json",
                    ))
                }),
            },
            "resolver" => Mode {
                name: "resolver",
                what: format!(
                    "GET /01/{{gtin}}/21/{{serial}}, Accept: text/html (status page), {} products",
                    products.len()
                ),
                server: la,
                server_pid: ledger_pid,
                expect: StatusCode::OK,
                make: Arc::new(move |i| Some(get(la, &products[i % products.len()], "text/html"))),
            },
            "scan" => Mode {
                name: "scan",
                what: format!(
                    "GET of each certificate's qr_url (resolver page with ?seal=, verified), {} links",
                    scans.len()
                ),
                server: la,
                server_pid: ledger_pid,
                expect: StatusCode::OK,
                make: Arc::new(move |i| Some(get(la, &scans[i % scans.len()], "text/html"))),
            },
            "qr" => Mode {
                name: "qr",
                what: format!(
                    "GET /api/v1/certificates/{{id}}/qr.png, {} demo IDs",
                    ids.len()
                ),
                server: la,
                server_pid: ledger_pid,
                expect: StatusCode::OK,
                make: Arc::new(move |i| {
                    Some(get(
                        la,
                        &format!("/api/v1/certificates/{}/qr.png", ids[i % ids.len()]),
                        "image/png",
                    ))
                }),
            },
            "append" => Mode {
                name: "append",
                what: format!(
                    "POST /api/v1/entries, distinct pre-signed certificates (of {}), each must answer 201",
                    bodies.len()
                ),
                server: la,
                server_pid: ledger_pid,
                expect: StatusCode::CREATED,
                make: Arc::new(move |i| {
                    let b = bodies.get(i)?;
                    appended.fetch_max(i + 1, Ordering::Relaxed);
                    Some(post(la, "/api/v1/entries", b.clone()))
                }),
            },
            "lookup-new" => {
                let n = appended.load(Ordering::Relaxed).min(new_ids.len());
                Mode {
                    name: "lookup-new",
                    what: format!(
                        "GET /api/v1/certificates/{{id}} of the {n} certificates append logged, each in turn (more than the answer cache holds: every answer rendered from the store)"
                    ),
                    server: la,
                    server_pid: ledger_pid,
                    expect: StatusCode::OK,
                    make: Arc::new(move |i| {
                        (n > 0).then(|| {
                            get(
                                la,
                                &format!("/api/v1/certificates/{}", new_ids[i % n]),
                                "application/json",
                            )
                        })
                    }),
                }
            }
            "tile" | "bundle" => {
                let size = rt.block_on(tree_size(la));
                let (kind, mode_name, what) = if name == "tile" {
                    (TileKind::Hashes(0), "tile", "level-0 Merkle tiles")
                } else {
                    (
                        TileKind::Entries,
                        "bundle",
                        "entry bundles (not compressed)",
                    )
                };
                let full = size / 256;
                Mode {
                    name: mode_name,
                    what: format!(
                        "GET /tile/...: {what} of the {size}-entry tree, {}",
                        if full > 0 {
                            format!("the {full} full ones, spread")
                        } else {
                            "its one partial tile".into()
                        }
                    ),
                    server: la,
                    server_pid: ledger_pid,
                    expect: StatusCode::OK,
                    make: Arc::new(move |i| {
                        let tile = match full {
                            0 => Tile {
                                kind,
                                index: 0,
                                width: size as u16,
                            },
                            _ => Tile {
                                kind,
                                index: (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % full,
                                width: 256,
                            },
                        };
                        Some(get(
                            la,
                            &format!("/{}", tile.path()),
                            "application/octet-stream",
                        ))
                    }),
                }
            }
            other => unreachable!("mode {other}"),
        };
        match rt.block_on(run_mode(mode, &o)) {
            Ok(out) => {
                if name == "append" && out.window_s + 0.05 < o.duration.as_secs_f64() {
                    say(format!(
                        "note: the {} pre-signed envelopes ran out after {:.1} s; raise --append-n",
                        o.append_n, out.window_s
                    ));
                }
                outcomes.push(out);
            }
            Err(e) => {
                eprintln!("FAILED: {e}");
                std::process::exit(1);
            }
        }
    }
    let load_after = load_average();
    drop(rt);
    drop(ledger);
    drop(trivial);

    // Ratios.
    let find = |m: &str| outcomes.iter().find(|x| x.name == m);
    let trivial = find("trivial");
    let mut ratios = serde_json::Map::new();
    for m in ["healthz", "lookup", "resolver", "scan", "qr", "lookup-new"] {
        if let (Some(x), Some(t)) = (find(m), trivial) {
            ratios.insert(format!("{m}_over_trivial"), json!(x.rate / t.rate));
            // The same comparison in server CPU per request, less sensitive to other jobs.
            ratios.insert(
                format!("{m}_over_trivial_by_server_cpu"),
                json!(t.server_cpu_us / x.server_cpu_us),
            );
        }
    }
    if let Some(a) = find("append") {
        ratios.insert(
            "append_over_crypto_limit".into(),
            json!(a.rate / crypto_limit),
        );
    }

    if o.json {
        let modes: Vec<Value> = outcomes
            .iter()
            .map(|x| {
                json!({
                    "mode": x.name, "what": x.what, "requests": x.requests,
                    "window_s": x.window_s, "rate_per_s": x.rate,
                    "p50_ms": x.p50_ms, "p99_ms": x.p99_ms, "p999_ms": x.p999_ms,
                    "max_ms": x.max_ms, "bytes_per_answer": x.bytes_per_answer,
                    "server_cpu_us_per_request": x.server_cpu_us,
                    "loadgen_cpu_us_per_request": x.loadgen_cpu_us,
                    "server_cpu_cores": x.server_cpu_util,
                    "loadgen_cpu_cores": x.loadgen_cpu_util,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "machine": {"cores": cores, "load_average_before": load_before,
                            "load_average_after": load_after,
                            "shared": "load generator, ledger server and trivial server run on the same cores"},
                "config": {"connections": o.connections, "duration_s": o.duration.as_secs_f64(),
                           "warmup_s": o.warmup.as_secs_f64(), "requests": o.requests,
                           "server_log": o.server_log},
                "crypto": {"sign_per_s_1core": sign_rate, "verify_strict_per_s_1core": verify_rate,
                           "verify_plus_sign_limit_all_cores": crypto_limit},
                "modes": modes,
                "ratios": ratios,
            })
        );
        return;
    }
    println!();
    println!(
        "{:<9} {:>8} {:>9} {:>8} {:>8} {:>9} {:>8} {:>10} {:>10}",
        "mode",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "server µs",
        "loadgen µs"
    );
    for x in &outcomes {
        println!(
            "{:<9} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>9.2} {:>8.1} {:>10.0} {:>10.0}",
            x.name,
            x.requests,
            x.rate,
            x.p50_ms,
            x.p99_ms,
            x.p999_ms,
            x.max_ms,
            x.server_cpu_us,
            x.loadgen_cpu_us
        );
    }
    println!(
        "(server µs / loadgen µs: CPU time per request of the server process / of this process, \
         user+system, all threads; load average after: {load_after})"
    );
    println!();
    for x in &outcomes {
        println!(
            "{:<9} {}; {:.0} bytes per answer; server used {:.2} cores, load generator {:.2}",
            x.name, x.what, x.bytes_per_answer, x.server_cpu_util, x.loadgen_cpu_util
        );
    }
    println!();
    for m in ["healthz", "lookup", "resolver", "scan", "qr", "lookup-new"] {
        if let Some(r) = ratios.get(&format!("{m}_over_trivial")) {
            let target = if m == "lookup" || m == "lookup-new" {
                "  (target >= 0.50)"
            } else {
                ""
            };
            let by_cpu = &ratios[&format!("{m}_over_trivial_by_server_cpu")];
            println!(
                "ratio {m:<8} / trivial            = {:.2}{target}; by server CPU per request: {:.2}",
                r.as_f64().unwrap_or(f64::NAN),
                by_cpu.as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    if let Some(a) = outcomes.iter().find(|x| x.name == "append") {
        println!(
            "ratio append   / verify+sign limit  = {:.2}  (target >= 0.50); appends p99 {:.1} ms (target < 50 ms); \
             server CPU per append {:.0} µs vs {:.0} µs of verify+sign",
            a.rate / crypto_limit,
            a.p99_ms,
            a.server_cpu_us,
            1e6 / verify_rate + 1e6 / sign_rate
        );
    }
}

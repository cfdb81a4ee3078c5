//! The real binary as a server and as a client: `serve --demo` on a loopback port in a temp
//! directory holding copies of the demo keys and data set, and the client commands run
//! against it.
#![allow(dead_code)]

use crate::common::{certificate_json, copy_dir, gtin, key, served_address, sign};
use reman_ledger::payload::PayloadType;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary in `cwd`.
pub fn bin(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reman-ledger"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Runs the binary in `cwd` with `input` on standard input.
pub fn bin_stdin(args: &[&str], cwd: &Path, input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reman-ledger"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    child.wait_with_output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The JSON on a command's standard output (its stderr shown if there is none).
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// A real `reman-ledger serve` in its own temp directory (keys/, fixtures/demo/, data/).
pub struct Served {
    child: Option<Child>,
    /// More arguments of every `serve` it starts.
    extra: Vec<String>,
    /// The server's base URL.
    pub url: String,
    /// The working directory: keys/ and the sled data/ are in it.
    pub dir: tempfile::TempDir,
}

impl Served {
    /// A new ledger with the demo data set (89 entries), served on a free loopback port.
    pub fn demo() -> Served {
        Served::demo_with(&[])
    }

    /// [`Served::demo`], with more arguments to `serve` (kept across restarts).
    pub fn demo_with(extra: &[&str]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&root().join("keys"), &dir.path().join("keys"));
        copy_dir(
            &root().join("fixtures/demo"),
            &dir.path().join("fixtures/demo"),
        );
        let mut s = Served {
            child: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            url: String::new(),
            dir,
        };
        s.start(true);
        s
    }

    fn start(&mut self, demo: bool) {
        let mut args = vec!["serve", "--data", "data", "--listen", "127.0.0.1:0"];
        if demo {
            args.push("--demo");
        }
        args.extend(self.extra.iter().map(String::as_str));
        let (child, url) = spawn_server(&args, self.dir.path());
        self.url = url;
        self.child = Some(child);
    }

    /// Stops the server cleanly (SIGTERM: it flushes and releases the sled directory).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_server(child);
        }
    }

    /// Starts the server again on the same data directory (a new port).
    pub fn restart(&mut self) {
        self.stop();
        self.start(false);
    }

    /// Path of a file in the working directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The tree size the server reports now.
    pub fn tree_size(&self) -> u64 {
        reman_ledger::client::Client::new(&self.url)
            .unwrap()
            .log()
            .unwrap()
            .tree_size
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A base URL where nothing listens: a port bound and released at once.
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// Logs `n` new certificates of the demo remanufacturer in Suzhou over HTTP, numbered from
/// `from` (each must answer 201).
pub fn log_certificates(url: &str, from: u64, n: u64) {
    let client = reman_ledger::client::Client::new(url).unwrap();
    let signer = key("suzhou-reman.example");
    for i in from..from + n {
        let json = certificate_json(&gtin(7000 + i), &format!("TILE-{i}"), None);
        let answer = client
            .submit(&sign(PayloadType::Certificate, &json, &signer))
            .unwrap();
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
}

/// Starts the binary with `args` in `cwd` (a `serve` or `witness` on port 0) and waits until
/// it says where it listens: the child and its base URL.
pub fn spawn_server(args: &[&str], cwd: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reman-ledger"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = served_address(&mut child);
    (child, format!("http://{addr}"))
}

/// Stops a server started by [`spawn_server`] cleanly (SIGTERM), waiting up to 20 s; kills it
/// and panics if it does not stop.
pub fn stop_server(mut child: Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not stop on SIGTERM");
}

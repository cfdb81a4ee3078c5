//! `verify` (SPEC §7) end to end: the real binary, offline with the log key and online against
//! real ledgers served on loopback ports (sled in temp directories), with its exit codes.
//! Every run gets its own HOME and state file: the user's real configuration is never read.

mod common;
mod proxy;

use common::*;
use reman_ledger::api::{self, ServeOptions};
use reman_ledger::certificate::CertificateId;
use reman_ledger::keys::PrivateKey;
use reman_ledger::ledger::Ledger;
use reman_ledger::payload::PayloadType;
use reman_ledger::tlog_proof::TlogProof;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const LOG_PUB: &str = "keys/log.key.pub";

/// A ledger served over HTTP on a loopback port from its own thread, until dropped.
struct Server {
    url: String,
    ledger: Arc<Ledger>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(dir: tempfile::TempDir, ledger: Ledger) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let ledger = Arc::new(ledger);
        let served = ledger.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                api::serve(listener, served, ServeOptions::default(), async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        Server {
            url,
            ledger,
            shutdown: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// A server of the demo data set (89 entries), and its certificate IDs by label.
    fn demo() -> (Server, std::collections::HashMap<String, CertificateId>) {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, report) = demo_ledger(dir.path());
        (Server::start(dir, ledger), report.certificates)
    }

    /// The QR URL of a certificate.
    fn qr_url(&self, id: &CertificateId) -> String {
        self.ledger.certificate(id).unwrap().qr_url.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Logs `n` new certificates (GTINs from `first_item` on) with the demo remanufacturer.
fn add_certificates(ledger: &Ledger, first_item: u64, n: u64) -> Vec<CertificateId> {
    let suzhou = key("suzhou-reman.example");
    (first_item..first_item + n)
        .map(|i| {
            let json = certificate_json(&gtin(i), &format!("EXTRA-{i}"), None);
            let r = ledger
                .submit(&sign(PayloadType::Certificate, &json, &suzhou))
                .unwrap();
            r.certificate_id.unwrap()
        })
        .collect()
}

/// A new ledger under the demo log key with only its genesis entry and the registration of
/// the demo remanufacturer.
fn small_ledger(dir: &Path) -> Ledger {
    with_remanufacturer(new_ledger(dir))
}

/// `ledger` with the demo remanufacturer registered.
fn with_remanufacturer(ledger: Ledger) -> Ledger {
    let k = key("suzhou-reman.example");
    let json = format!(
        r#"{{"name":"suzhou-reman.example","role":"remanufacturer","display_name":"Suzhou test","country":"CN","key":"{}","status":"active"}}"#,
        k.public().to_vkey()
    );
    ledger
        .submit(&sign(PayloadType::Party, &json, &operator()))
        .unwrap();
    ledger
}

/// A private HOME for one or more runs, with the demo log key's public file in `keys/`.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::copy(root().join(LOG_PUB), dir.path().join(LOG_PUB)).unwrap();
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default state file under this HOME.
    fn state(&self) -> PathBuf {
        self.path()
            .join(".local/state/reman-ledger/checkpoints.json")
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reman-ledger"));
        cmd.arg("verify")
            .args(args)
            .current_dir(self.path())
            .env("HOME", self.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("REMAN_LEDGER_TRUST")
            .env_remove("REMAN_LEDGER_STATE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    fn valid(&self) -> &Run {
        self.expect(0);
        assert_eq!(self.stdout.lines().last(), Some("VALID"), "{}", self.stdout);
        self
    }
    /// Exit 1 with a last line `INVALID: ...` that contains `why`.
    fn invalid(&self, why: &str) -> &Run {
        self.expect(1);
        let last = self.stdout.lines().last().unwrap_or("");
        assert!(last.starts_with("INVALID: "), "{}", self.stdout);
        assert!(last.contains(why), "{why:?} not in {last:?}");
        self
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
    fn has(&self, text: &str) -> &Run {
        assert!(
            self.stdout.contains(text),
            "{text:?} not in:\n{}",
            self.stdout
        );
        self
    }
}

/// A JSON report's checks as (name, ok), in order.
fn checks_of(j: &Value) -> Vec<(&str, bool)> {
    j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["ok"].as_bool().unwrap()))
        .collect()
}

fn log_vkey() -> String {
    log_key().public().to_vkey()
}

#[test]
fn offline_a_real_qr_url_verifies_with_the_log_key_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, report) = demo_ledger(dir.path());
    let id = report.certificates["eng-001"];
    let view = ledger.certificate(&id).unwrap();
    let url = view.qr_url.clone().unwrap();
    ledger.close().unwrap();
    let home = Home::new();

    // The vkey text, then the .pub file.
    home.run(&["--log-key", &log_vkey(), &url])
        .valid()
        .has("GTIN:        09506001200513")
        .has("serial:      SZ-2026/000871")
        .has(&format!("certificate: {id}"))
        .has(&format!("index:       {}", view.index))
        .has("issuer:      not in the seal (verify with --server URL to see it)");
    home.run(&["--log-key", LOG_PUB, &url]).valid();

    let j = home
        .run(&["--log-key", LOG_PUB, "--json", &url])
        .valid_json();
    assert_eq!(j["verdict"], "VALID");
    assert_eq!(j["valid"], true);
    assert_eq!(j["product"]["gtin"], "09506001200513");
    assert_eq!(j["product"]["serial"], "SZ-2026/000871");
    assert_eq!(j["certificate_id"], id.to_string());
    assert_eq!(j["index"], view.index);
    assert_eq!(
        j["integrated_time"].as_str().unwrap(),
        format!("{}Z", &view.integrated_time[..19])
    );
    assert_eq!(j["issuer"], Value::Null);
    assert_eq!(j["log"]["origin"], "reman-ledger.example/log");
    assert_eq!(j["log"]["key_id"], log_key().id().to_string());
    let checks = checks_of(&j);
    assert_eq!(checks, [("label", true), ("seal", true)]);

    // The trust file: --trust, $REMAN_LEDGER_TRUST, then the XDG default; other logs' keys
    // and comments beside the one the seal names.
    let other = PrivateKey::generate("other-ledger.example/log").unwrap();
    let trust = format!(
        "# logs I trust\n{}\n\n{}   # the demo ledger\n",
        other.public().to_vkey(),
        log_vkey()
    );
    let file = home.path().join("my-trust");
    std::fs::write(&file, &trust).unwrap();
    home.run(&["--trust", "my-trust", &url]).valid();
    home.run_env(&[&url], &[("REMAN_LEDGER_TRUST", &file)])
        .valid();
    let config = home.path().join("config");
    std::fs::create_dir_all(config.join("reman-ledger")).unwrap();
    std::fs::write(config.join("reman-ledger/trusted-logs"), &trust).unwrap();
    home.run_env(&[&url], &[("XDG_CONFIG_HOME", &config)])
        .valid()
        .has("trust file");
    // Offline never writes a state file.
    assert!(!home.state().exists());
}

impl Run {
    fn valid_json(&self) -> Value {
        self.expect(0);
        self.json()
    }
}

#[test]
fn offline_a_wrong_log_key_or_a_tampered_url_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, report) = demo_ledger(dir.path());
    let url = ledger
        .certificate(&report.certificates["eng-001"])
        .unwrap()
        .qr_url
        .unwrap();
    ledger.close().unwrap();
    let home = Home::new();

    // Another key, even one with the log's own name: INVALID, exit 1.
    let impostor = PrivateKey::generate("reman-ledger.example/log").unwrap();
    let stranger = PrivateKey::generate("other-ledger.example/log").unwrap();
    for k in [&impostor, &stranger] {
        home.run(&["--log-key", &k.public().to_vkey(), &url])
            .invalid("not by the log key");
    }
    let trust = home.path().join("trust");
    std::fs::write(&trust, format!("{}\n", stranger.public().to_vkey())).unwrap();
    home.run(&["--trust", "trust", &url])
        .invalid("not by the log key");
    std::fs::write(
        &trust,
        format!(
            "{}\n{}\n",
            stranger.public().to_vkey(),
            impostor.public().to_vkey()
        ),
    )
    .unwrap();
    home.run(&["--trust", "trust", &url])
        .invalid("none of the 2 keys");

    // Tampered links: another serial, another GTIN, a changed seal character (in the signed
    // header and in the signature), a cut seal, no seal, a second seal, not a ledger link.
    let (head, seal) = url.split_once("?seal=").unwrap();
    let flip = |s: &str, at: usize| {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let cases = [
        (
            url.replace("SZ-2026%2F000871", "SZ-2026%2F000872"),
            "seal signature does not verify",
        ),
        (
            url.replace("09506001200513", "09506001200674"),
            "seal signature does not verify",
        ),
        (
            format!("{head}?seal={}", flip(seal, 10)),
            "seal signature does not verify",
        ),
        (
            format!("{head}?seal={}", flip(seal, 100)),
            "seal signature does not verify",
        ),
        (
            format!("{head}?seal={}", &seal[..seal.len() - 4]),
            "damaged or altered",
        ),
        (head.to_owned(), "carries no seal"),
        (format!("{url}&seal={seal}"), "more than one seal"),
        (
            "https://phishing.example/verify?id=42".to_owned(),
            "does not hold a ledger link",
        ),
    ];
    for (bad, why) in &cases {
        let r = home.run(&["--log-key", LOG_PUB, bad]);
        r.invalid(why);
        let j = home.run(&["--log-key", LOG_PUB, "--json", bad]);
        j.expect(1);
        let j = j.json();
        assert_eq!(j["verdict"], "INVALID", "{bad}");
        assert_eq!(j["valid"], false);
        assert!(j["reason"].as_str().unwrap().contains(why), "{j}");
        let last = j["checks"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["ok"], false, "{j}");
    }
}

#[test]
fn usage_and_io_errors_exit_2() {
    let home = Home::new();
    let id = "0123456789abcdef0123456789abcdef";
    let url = "https://ledger.example/01/09506001200513/21/X?seal=AQ";

    // A certificate ID needs a server; offline needs a key.
    let r = home.run(&["--log-key", LOG_PUB, id]);
    r.expect(2);
    assert!(r.stderr.contains("add --server URL"), "{}", r.stderr);
    let r = home.run(&[url]);
    r.expect(2);
    assert!(r.stderr.contains("no log key"), "{}", r.stderr);
    assert!(r.stderr.contains("--log-key"), "{}", r.stderr);

    // Bad --log-key values: garbage, a private key file, an empty file, a missing trust file.
    let r = home.run(&["--log-key", "not-a-key", url]);
    r.expect(2);
    assert!(
        r.stderr
            .contains("--log-key not-a-key: no such file (give the log's public key file"),
        "{}",
        r.stderr
    );
    let r = home.run(&["--log-key", "not+a+key", url]);
    r.expect(2);
    assert!(r.stderr.contains("neither a log key"), "{}", r.stderr);
    std::fs::copy(root().join("keys/log.key"), home.path().join("log.key")).unwrap();
    let r = home.run(&["--log-key", "log.key", url]);
    r.expect(2);
    assert!(r.stderr.contains("holds a private key"), "{}", r.stderr);
    std::fs::write(home.path().join("empty.pub"), "# nothing\n").unwrap();
    let r = home.run(&["--log-key", "empty.pub", url]);
    r.expect(2);
    assert!(r.stderr.contains("holds no log key"), "{}", r.stderr);
    let r = home.run(&["--trust", "missing-trust", url]);
    r.expect(2);
    assert!(r.stderr.contains("missing-trust"), "{}", r.stderr);
    std::fs::write(home.path().join("bad-trust"), "# ok\nnot+a+key\n").unwrap();
    let r = home.run(&["--trust", "bad-trust", url]);
    r.expect(2);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);

    // Images: missing, not an image, an image without a QR code.
    let r = home.run(&["--log-key", LOG_PUB, "label.png"]);
    r.expect(2);
    assert!(r.stderr.contains("label.png: no such file"), "{}", r.stderr);
    // A file name that holds many hex digits is still a missing file.
    for name in [
        "DSC_20260101_1234567890ABCDEF",
        "label-deadbeefcafe-0123456789ab",
    ] {
        let r = home.run(&["--log-key", LOG_PUB, name]);
        r.expect(2);
        assert!(
            r.stderr.contains(&format!("{name}: no such file")),
            "{}",
            r.stderr
        );
    }
    // A mistyped certificate ID is said to be one, not a missing file.
    for (typo, what) in [
        (&id[1..], "it has 31 digits"),
        (
            &format!("{}x", &id[1..]),
            "'x' at position 32 is not a hex digit",
        ),
    ] {
        let r = home.run(&["--log-key", LOG_PUB, typo]);
        r.expect(2);
        assert!(
            r.stderr.contains(&format!(
                "{typo} is not a certificate ID (32 hex digits): {what}; nor is it a file"
            )),
            "{}",
            r.stderr
        );
    }
    std::fs::write(home.path().join("notes.txt"), "hello").unwrap();
    let r = home.run(&["--log-key", LOG_PUB, "notes.txt"]);
    r.expect(2);
    assert!(r.stderr.contains("not a PNG or JPEG"), "{}", r.stderr);
    let blank = image::GrayImage::from_pixel(200, 200, image::Luma([255]));
    blank.save(home.path().join("blank.png")).unwrap();
    let r = home.run(&["--log-key", LOG_PUB, "--json", "blank.png"]);
    r.expect(2);
    assert!(r.stderr.contains("no QR code found"), "{}", r.stderr);
    assert_eq!(r.json()["verdict"], "ERROR");

    // A bad server URL; an unreachable server (a port nobody listens on).
    let r = home.run(&["--server", "ledger.example", id]);
    r.expect(2);
    assert!(r.stderr.contains("--server"), "{}", r.stderr);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = home.run(&[
        "--server",
        &format!("http://127.0.0.1:{port}"),
        "--log-key",
        LOG_PUB,
        "--json",
        id,
    ]);
    r.expect(2);
    assert!(
        r.stderr.contains("cannot check with the server"),
        "{}",
        r.stderr
    );
    assert_eq!(r.json()["verdict"], "ERROR");
    assert!(!home.state().exists());
}

#[test]
fn help_explains_targets_keys_state_and_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_reman-ledger"))
        .args(["verify", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "TARGET",
        "--log-key",
        "--server",
        "--trust",
        "--state",
        "--json",
        "PNG or JPEG",
        "certificate ID",
        "REMAN_LEDGER_TRUST",
        "REMAN_LEDGER_STATE",
        "trusted-logs",
        "checkpoints.json",
        "Exit codes: 0 VALID; 1",
        "rewrote",
    ] {
        assert!(
            help.contains(needle),
            "{needle:?} not in verify --help:\n{help}"
        );
    }
}

#[test]
fn online_a_valid_certificate_with_its_events_proofs_and_issuer() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    let id = ids["eng-001"];
    let url = server.qr_url(&id);

    let r = home.run(&["--server", &server.url, "--log-key", LOG_PUB, &url]);
    r.valid()
        .has("product:     Remanufactured 2.8 L common-rail diesel engine")
        .has("issuer:      Suzhou Greenpower Remanufacturing Co., Ltd. (suzhou-reman.example, CN)")
        .has("status:      valid")
        .has("customs_released")
        .has("Shanghai Yangshan")
        .has("by customs-shanghai.example");
    assert!(home.state().exists(), "the state file is created");

    let j = home
        .run(&[
            "--server",
            &server.url,
            "--log-key",
            LOG_PUB,
            "--json",
            &url,
        ])
        .valid_json();
    assert_eq!(j["status"], "valid");
    assert_eq!(j["issuer"]["name"], "suzhou-reman.example");
    assert_eq!(j["issuer"]["country"], "CN");
    assert_eq!(j["events"].as_array().unwrap().len(), 8);
    assert_eq!(j["events"][0]["event"], "shipped");
    assert_eq!(j["checkpoint"]["tree_size"], 89);
    assert_eq!(j["previous_checkpoint"]["tree_size"], 89);
    let names: Vec<&str> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|c| assert_eq!(c["ok"], true, "{c}"))
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in [
        "label",
        "log_key",
        "seal",
        "checkpoint",
        "consistency",
        "entry",
        "inclusion",
        "issuer",
        "events",
        "status",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }

    // By certificate ID: the same facts, and the seal the server shows is checked too.
    home.run(&[
        "--server",
        &server.url,
        "--log-key",
        LOG_PUB,
        &id.to_string(),
    ])
    .valid()
    .has("product:     Remanufactured 2.8 L common-rail diesel engine");

    // A photo of the label (here its QR image, turned a quarter) reads the same.
    let png = reman_ledger::qr::png(&url, 400).unwrap();
    let img = image::load_from_memory(&png).unwrap().into_luma8();
    image::imageops::rotate90(&img)
        .save(home.path().join("label.png"))
        .unwrap();
    home.run(&["--server", &server.url, "--log-key", LOG_PUB, "label.png"])
        .valid()
        .has("status:      valid")
        .has("installed");

    // The log grows: the next verification proves the new tree extends the one seen.
    add_certificates(&server.ledger, 700, 3);
    home.run(&["--server", &server.url, "--log-key", LOG_PUB, &url])
        .valid()
        .has("extends the one of size 89 seen before");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(home.state()).unwrap()).unwrap();
    assert_eq!(state["logs"][0]["tree_size"], 92);
    assert_eq!(state["logs"][0]["servers"][0], server.url);
}

#[test]
fn online_without_a_pinned_key_the_first_key_is_trusted_and_remembered() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    let url = server.qr_url(&ids["gbx-001"]);
    // Without a pinned key, an online check is refused unless first-use trust is asked for:
    // a counterfeiter's own ledger would otherwise vouch for its own labels.
    let r = home.run(&["--server", &server.url, &url]);
    r.expect(2);
    assert!(r.stderr.contains("no log key is pinned"), "{}", r.stderr);
    assert!(!home.state().exists(), "nothing is remembered");
    let r = home.run(&["--server", &server.url, "--trust-on-first-use", &url]);
    r.valid().has("trusted on first use");
    assert!(
        r.stderr.contains("warning: no log key is pinned"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&log_vkey()), "{}", r.stderr);
    let r = home.run(&["--server", &server.url, &url]);
    r.valid().has("remembered in the state file");
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);

    // Another log under the same origin at that address later: its key differs from the
    // remembered one.
    drop(server);
    let other_key = PrivateKey::generate("reman-ledger.example/log").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::init(
        dir.path(),
        other_key,
        &operator(),
        &reman_ledger::ledger::OperatorDetails::default(),
        config(),
    )
    .unwrap();
    let impostor = Server::start(dir, ledger);
    let state = home.state().display().to_string();
    let r = home.run(&[
        "--server",
        &impostor.url,
        "--state",
        &state,
        &ids["gbx-001"].to_string(),
    ]);
    r.invalid("not the log");
}

#[test]
fn online_revoked_superseded_and_unknown_certificates_are_invalid() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    let s = server.url.as_str();

    let r = home.run(&[
        "--server",
        s,
        "--log-key",
        LOG_PUB,
        &server.qr_url(&ids["alt-003"]),
    ]);
    r.invalid("REVOKED (recall)")
        .has("status:      revoked")
        .has("revoked:     recall on ");
    let j = home
        .run(&[
            "--server",
            s,
            "--log-key",
            LOG_PUB,
            "--json",
            &ids["tc-003"].to_string(),
        ])
        .json();
    assert_eq!(j["verdict"], "INVALID");
    assert_eq!(j["status"], "revoked");
    assert_eq!(j["revocation"]["reason"], "fraud");
    assert_eq!(j["revocation"]["signer"], "operator.reman-ledger.example");

    let successor = ids["eng-002-r1"].to_string();
    home.run(&[
        "--server",
        s,
        "--log-key",
        LOG_PUB,
        &server.qr_url(&ids["eng-002"]),
    ])
    .invalid(&format!("SUPERSEDED by certificate {successor}"));
    home.run(&[
        "--server",
        s,
        "--log-key",
        LOG_PUB,
        &server.qr_url(&ids["eng-002-r1"]),
    ])
    .valid();

    // An ID nobody logged; and a genuinely sealed label (same log key) from another history,
    // which this ledger never logged.
    home.run(&[
        "--server",
        s,
        "--log-key",
        LOG_PUB,
        "0123456789abcdef0123456789abcdef",
    ])
    .invalid("has no certificate");
    let dir = tempfile::tempdir().unwrap();
    let other = small_ledger(dir.path());
    let foreign = add_certificates(&other, 900, 1)[0];
    let foreign_url = other.certificate(&foreign).unwrap().qr_url.unwrap();
    other.close().unwrap();
    home.run(&["--log-key", LOG_PUB, &foreign_url]).valid();
    home.run(&["--server", s, "--log-key", LOG_PUB, &foreign_url])
        .invalid("has no certificate");

    // The server presents another log than the pinned key's.
    let stranger = PrivateKey::generate("other-ledger.example/log").unwrap();
    home.run(&[
        "--server",
        s,
        "--log-key",
        &stranger.public().to_vkey(),
        &ids["eng-001"].to_string(),
    ])
    .invalid("none of the keys of --log-key");
}

#[test]
fn online_a_server_that_rewrote_or_rolled_back_its_history_is_caught() {
    let (a, ids) = Server::demo();
    let home = Home::new();
    let state_file = home.path().join("state/sub/checkpoints.json");
    let state = state_file.display().to_string();
    let url = a.qr_url(&ids["eng-001"]);
    let verify = |server: &Server, target: &str| {
        home.run(&[
            "--server",
            &server.url,
            "--log-key",
            LOG_PUB,
            "--state",
            &state,
            target,
        ])
    };
    verify(&a, &url).valid();
    let seen = std::fs::read_to_string(&state_file).unwrap();
    assert!(seen.contains("\"tree_size\": 89"), "{seen}");

    // B: the same log key, another history (the same data logged at other times), longer.
    let dir = tempfile::tempdir().unwrap();
    let (ledger_b, ids_b) = demo_ledger(dir.path());
    add_certificates(&ledger_b, 800, 5);
    let b = Server::start(dir, ledger_b);
    let r = verify(&b, &ids_b.certificates["eng-001"].to_string());
    r.invalid("not consistent").has("rewrote its history");
    r.has("--- remembered ---").has("--- presented ---");
    // Where the checkpoint seen before is kept, and the innocent cause, are said.
    assert!(
        r.stderr.contains(&format!(
            "warning: the checkpoint of size 89 seen before is remembered in {state} (last seen "
        )) && r.stderr.contains(&format!(
            ", at {}); this log signs with the public demo key, so a demo ledger created again looks exactly like this",
            a.url
        )),
        "{}",
        r.stderr
    );
    let j = home
        .run(&[
            "--server",
            &b.url,
            "--log-key",
            LOG_PUB,
            "--state",
            &state,
            "--json",
            &url,
        ])
        .json();
    assert_eq!(j["verdict"], "INVALID");
    assert_eq!(j["previous_checkpoint"]["tree_size"], 89);
    assert_eq!(j["checkpoint"]["tree_size"], 94);
    assert!(
        j["evidence"]["remembered"]
            .as_str()
            .unwrap()
            .contains("\n89\n")
    );
    assert!(
        j["evidence"]["presented"]
            .as_str()
            .unwrap()
            .contains("\n94\n")
    );
    // The remembered checkpoint is kept, not replaced by the rewritten history's.
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), seen);

    // C: the same key, a shorter history: a rollback.
    let dir = tempfile::tempdir().unwrap();
    let ledger_c = small_ledger(dir.path());
    let c_id = add_certificates(&ledger_c, 810, 1)[0];
    let c = Server::start(dir, ledger_c);
    let r = verify(&c, &c_id.to_string());
    r.invalid("rolled back");
    assert!(
        r.stderr
            .contains("delete that file's entry for reman-ledger.example/log"),
        "{}",
        r.stderr
    );

    // D: the same key, another history of the same size: a fork.
    let dir = tempfile::tempdir().unwrap();
    let (ledger_d, _) = demo_ledger(dir.path());
    let d = Server::start(dir, ledger_d);
    verify(&d, &url).invalid("two different trees of size 89");
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), seen);

    // A itself is still fine.
    verify(&a, &url).valid();

    // Two histories under a key of its own (not the public demo key): the state file is said
    // to be the evidence, with no innocent explanation offered.
    let own = PrivateKey::generate("ledger.example/log").unwrap();
    let own_pub = home.path().join("own.pub");
    std::fs::write(&own_pub, own.public().to_vkey()).unwrap();
    let history = |certificates: u64| {
        let dir = tempfile::tempdir().unwrap();
        let ledger = with_remanufacturer(
            Ledger::init(
                dir.path(),
                own.clone(),
                &operator(),
                &reman_ledger::ledger::OperatorDetails::default(),
                config(),
            )
            .unwrap(),
        );
        let ids = add_certificates(&ledger, 820, certificates);
        (Server::start(dir, ledger), ids[0])
    };
    let ((e, e_id), (f, f_id)) = (history(1), history(2));
    let own_state = home.path().join("own-state.json").display().to_string();
    let run = |server: &Server, id: &CertificateId| {
        home.run(&[
            "--server",
            &server.url,
            "--log-key",
            own_pub.to_str().unwrap(),
            "--state",
            &own_state,
            &id.to_string(),
        ])
    };
    run(&f, &f_id).valid();
    let r = run(&e, &e_id);
    r.invalid("rolled back");
    assert!(
        r.stderr.contains(
            "; keep that file: with the checkpoint presented now, it is the evidence that ledger.example/log showed two histories under one key"
        ) && !r.stderr.contains("demo"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_damaged_state_file_is_an_error_and_left_alone() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    let url = server.qr_url(&ids["eng-001"]);
    let state = home.path().join("checkpoints.json");
    let args = |extra: &str| {
        vec![
            "--server".to_owned(),
            server.url.clone(),
            "--log-key".to_owned(),
            LOG_PUB.to_owned(),
            "--state".to_owned(),
            state.display().to_string(),
            extra.to_owned(),
        ]
    };
    let run = |a: Vec<String>| home.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    run(args(&url)).valid();
    // A record whose size no longer matches its signed checkpoint.
    let text = std::fs::read_to_string(&state).unwrap();
    let bad = text.replace("\"tree_size\": 89", "\"tree_size\": 9");
    std::fs::write(&state, &bad).unwrap();
    let r = run(args(&url));
    r.expect(2);
    assert!(r.stderr.contains("is damaged"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), bad);
    std::fs::write(&state, "{").unwrap();
    run(args(&url)).expect(2);
    // $REMAN_LEDGER_STATE names it too.
    std::fs::remove_file(&state).unwrap();
    home.run_env(
        &["--server", &server.url, "--log-key", LOG_PUB, &url],
        &[("REMAN_LEDGER_STATE", &state)],
    )
    .valid();
    assert!(state.exists());
    assert!(!home.state().exists());
}

/// With a checkpoint seen before, a server that answers the consistency proof with an error
/// (here 500) has not proven that it kept its history: INVALID (exit 1), not an I/O error,
/// and the remembered checkpoint stays as it was.
#[test]
fn a_server_error_instead_of_a_consistency_proof_is_invalid() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    let url = server.qr_url(&ids["gbx-001"]);
    home.run(&["--server", &server.url, "--log-key", LOG_PUB, &url])
        .valid();
    let remembered = std::fs::read(home.state()).unwrap();
    add_certificates(&server.ledger, 800, 2);
    let proxy = proxy::start(&server.url, |path, _| {
        path.starts_with("/api/v1/proof/consistency")
            .then(|| (500, b"{\"title\":\"Internal Server Error\"}".to_vec()))
    });
    home.run(&["--server", &proxy, "--log-key", LOG_PUB, &url])
        .invalid("not consistent");
    assert_eq!(std::fs::read(home.state()).unwrap(), remembered);
    // The honest server proves it.
    home.run(&["--server", &server.url, "--log-key", LOG_PUB, &url])
        .valid()
        .has("extends the one of size");
}

/// A TARGET file far larger than any label photo is refused before it is read (exit 2).
#[test]
fn a_huge_target_file_is_refused_unread() {
    let home = Home::new();
    let path = home.path().join("huge.png");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(reman_ledger::verify::MAX_PHOTO_BYTES + 1)
        .unwrap();
    let r = home.run(&["--log-key", LOG_PUB, "huge.png"]);
    r.expect(2);
    assert!(
        r.stderr.contains("is not a photo of a label"),
        "{}",
        r.stderr
    );
}

/// The certificate's tlog-proof as `GET /api/v1/certificates/{id}/proof` serves it, with its
/// content type and disposition.
fn served_proof(url: &str, id: &str) -> (u16, String, String, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut resp = agent
        .get(format!("{url}/api/v1/certificates/{id}/proof"))
        .call()
        .unwrap();
    let header = |name| {
        resp.headers()
            .get(name)
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
    };
    let (ct, cd) = (header("content-type"), header("content-disposition"));
    let body = resp.body_mut().read_to_string().unwrap();
    (resp.status().as_u16(), ct, cd, body)
}

#[test]
fn a_tlog_proof_verifies_offline_with_the_log_key_alone_and_online_with_the_server() {
    let (server, ids) = Server::demo();
    let id = ids["eng-001"];
    let (status, ct, cd, text) = served_proof(&server.url, &id.to_string());
    assert_eq!(status, 200, "{text}");
    assert_eq!(ct, "text/plain; charset=utf-8");
    assert_eq!(cd, format!("inline; filename=\"{id}.tlog-proof\""));
    let proof = TlogProof::parse(&text).unwrap();
    let view = server.ledger.certificate(&id).unwrap();
    assert_eq!(proof.index, view.index);
    assert_eq!(proof.checkpoint, *server.ledger.head().checkpoint);
    assert_eq!(
        proof.extra.as_deref(),
        Some(&server.ledger.store().entry(view.index).unwrap().unwrap()[..])
    );

    let home = Home::new();
    let file = home.path().join(format!("{id}.tlog-proof"));
    std::fs::write(&file, &text).unwrap();
    let file = file.to_str().unwrap();
    home.run(&["--log-key", LOG_PUB, file])
        .valid()
        .has("GTIN:        09506001200513")
        .has("serial:      SZ-2026/000871")
        .has(&format!("certificate: {id}"))
        .has(&format!("index:       {}", view.index))
        .has("issuer:      not checked offline (verify with --server URL to see it)");
    let j = home
        .run(&["--log-key", LOG_PUB, "--json", file])
        .valid_json();
    let checks = checks_of(&j);
    assert_eq!(checks, [("proof", true), ("proof", true)]);
    assert_eq!(j["certificate_id"], id.to_string());
    assert_eq!(j["checkpoint"]["tree_size"], 89);
    assert_eq!(j["log"]["origin"], "reman-ledger.example/log");

    // Online, the ledger is then asked about that certificate.
    let j = home
        .run(&[
            "--log-key",
            LOG_PUB,
            "--server",
            &server.url,
            "--json",
            file,
        ])
        .valid_json();
    assert_eq!(j["status"], "valid");
    assert_eq!(j["issuer"]["name"], "suzhou-reman.example");
    // That online check remembered the log's key in the state file: with --server, a proof
    // of that log is then checked under it without --log-key.
    let j = home
        .run(&["--server", &server.url, "--json", file])
        .valid_json();
    assert_eq!(j["status"], "valid");
    assert!(
        j["log"]["key_source"]
            .as_str()
            .is_some_and(|s| s.contains("remembered from an earlier online check")),
        "{j}"
    );
    // Offline, only a pinned key will do.
    home.run(&["--json", file]).expect(2);
    // A fresh state file knows no key: still a usage error.
    let other = Home::new();
    other.run(&["--server", &server.url, file]).expect(2);

    // An unknown or malformed certificate ID has no proof.
    let (status, ct, _, _) = served_proof(&server.url, &"0".repeat(32));
    assert_eq!((status, ct.as_str()), (404, "application/problem+json"));
    let (status, _, _, _) = served_proof(&server.url, "not-an-id");
    assert_eq!(status, 400);
}

#[test]
fn a_tampered_or_foreign_tlog_proof_is_invalid() {
    let (server, ids) = Server::demo();
    let id = ids["eng-001"];
    let (_, _, _, text) = served_proof(&server.url, &id.to_string());
    let good = TlogProof::parse(&text).unwrap();
    let home = Home::new();
    let check = |name: &str, proof_text: &str, key: &str, why: &str| {
        let file = home.path().join(format!("{name}.tlog-proof"));
        std::fs::write(&file, proof_text).unwrap();
        home.run(&["--log-key", key, file.to_str().unwrap()])
            .invalid(why);
    };
    let with = |f: &dyn Fn(&mut TlogProof)| {
        let mut p = good.clone();
        f(&mut p);
        p.to_text()
    };
    let good_file = home.path().join("good.tlog-proof");
    std::fs::write(&good_file, &text).unwrap();
    let good_file = good_file.to_str().unwrap();
    home.run(&["--log-key", LOG_PUB, good_file]).valid();
    // The entry back-dated by a year: still a well-formed entry, not the one logged.
    let mut twin = good.clone();
    twin.extra = Some(
        String::from_utf8(good.extra.clone().unwrap())
            .unwrap()
            .replacen(
                "\"integrated_time\":\"2026-",
                "\"integrated_time\":\"2025-",
                1,
            )
            .into_bytes(),
    );
    assert_ne!(twin.extra, good.extra);
    // A key of the same name that is not the log's, and another log's key.
    let impostor = PrivateKey::generate("reman-ledger.example/log")
        .unwrap()
        .public()
        .to_vkey();
    let other = PrivateKey::generate("other-ledger.example/log")
        .unwrap()
        .public()
        .to_vkey();
    let cases: [(&str, String, &str, &str); 8] = [
        ("altered-entry", twin.to_text(), LOG_PUB, "is not entry"),
        ("moved", with(&|p| p.index += 1), LOG_PUB, "is not entry"),
        (
            "bent",
            with(&|p| p.proof[0][5] ^= 1),
            LOG_PUB,
            "is not entry",
        ),
        (
            "edited-checkpoint",
            with(&|p| p.checkpoint = p.checkpoint.replacen("\n89\n", "\n90\n", 1)),
            LOG_PUB,
            "not signed by the log key",
        ),
        (
            "garbage",
            "hello\n".into(),
            LOG_PUB,
            "not a c2sp.org/tlog-proof@v1 proof",
        ),
        (
            "no-entry",
            with(&|p| p.extra = None),
            LOG_PUB,
            "carries no entry",
        ),
        (
            "impostor",
            text.clone(),
            &impostor,
            "not signed by the log key",
        ),
        (
            "other-log",
            text.clone(),
            &other,
            "whose key is not in --log-key",
        ),
    ];
    for (name, proof_text, key, why) in &cases {
        check(name, proof_text, key, why);
    }
    // A genuine proof of an entry that is not a certificate (the operator's registration).
    let store = server.ledger.store();
    let size = server.ledger.head().size;
    let party = TlogProof {
        extra: Some(store.entry(0).unwrap().unwrap().to_vec()),
        index: 0,
        proof: reman_ledger::merkle::inclusion_proof(0, size, store).unwrap(),
        checkpoint: server.ledger.head().checkpoint.to_string(),
    };
    check(
        "party",
        &party.to_text(),
        LOG_PUB,
        "it is not a certificate",
    );

    // No key to check against, or no such file: usage errors (exit 2).
    let run = home.run(&[good_file]);
    run.expect(2);
    assert!(
        run.stderr
            .contains("a tlog-proof is checked against the log's key"),
        "{}",
        run.stderr
    );
    let run = home.run(&["--log-key", LOG_PUB, "missing.tlog-proof"]);
    run.expect(2);
    assert!(run.stderr.contains("missing.tlog-proof"), "{}", run.stderr);
}

#[test]
fn a_tlog_proof_of_a_fork_or_a_history_the_ledger_rolled_back_is_invalid_online() {
    // Two ledgers under the demo log key with the demo data set: the same certificates at the
    // same indices, logged at other times, so two histories (a fork) of one log.
    let (a, ids) = Server::demo();
    let (b, _) = Server::demo();
    let id = ids["eng-001"].to_string();
    let home = Home::new();
    let save = |name: &str, url: &str| {
        let (status, _, _, text) = served_proof(url, &id);
        assert_eq!(status, 200);
        let file = home.path().join(name);
        std::fs::write(&file, text).unwrap();
        file.to_str().unwrap().to_owned()
    };
    let from_b = save("b.tlog-proof", &b.url);
    // Offline, b's proof is genuine: the log key signed b's checkpoint.
    home.run(&["--log-key", LOG_PUB, &from_b]).valid();
    // Asked, a shows a tree that does not extend the one b's proof signed.
    let run = home.run(&["--log-key", LOG_PUB, "--server", &a.url, "--json", &from_b]);
    run.expect(1);
    let j = run.json();
    assert!(
        j["reason"].as_str().unwrap().contains("the log forked"),
        "{}",
        j["reason"]
    );
    assert!(
        j["evidence"]["remembered"]
            .as_str()
            .unwrap()
            .contains("\n89\n")
    );
    assert_ne!(j["evidence"]["remembered"], j["evidence"]["presented"]);

    // b grows; its proof is now of a larger tree than a holds: a rolled back, as seen from b.
    add_certificates(&b.ledger, 500, 3);
    let from_b92 = save("b92.tlog-proof", &b.url);
    let state = home.path().join("b92.state");
    let run = home.run(&[
        "--log-key",
        LOG_PUB,
        "--server",
        &a.url,
        "--state",
        state.to_str().unwrap(),
        &from_b92,
    ]);
    run.invalid("rolled its history back");

    // A proof of a's own history agrees, and a file saved under any name is known by its
    // first line.
    let from_a = save("proof-of-a", &a.url);
    home.run(&["--log-key", LOG_PUB, "--server", &a.url, &from_a])
        .valid()
        .has("the ledger's tree of 89 entries extends the proof's tree of 89");
}

/// A ledger whose history exercises what `verify` checks of the signers of events and
/// revocations. Entries, in order:
///  0 genesis, 1 suzhou-reman (remanufacturer), 2 certificate C (by suzhou-reman),
///  3 port-x as importer, 4 port-x as customs, 5 port-x: `customs_released` on C,
///  6 port-y as customs, 7 port-y suspended, 8 port-y active again, 9 port-y:
///  `customs_inspected` on C, 10 port-z as customs (key z1), 11 port-z: `customs_inspected` on
///  C with key z1, 12 port-z's key rotated to z2, 13 certificate D (by suzhou-reman),
///  14 other-reman as remanufacturer, 15 other-reman as operator, 16 other-reman revokes D,
///  17 port-q as customs (key q1), 18 port-q's key rotated to q2, 19 port-q:
///  `customs_inspected` on C with key q2, 20 port-x suspended (after it signed),
///  21 certificate E (by suzhou-reman), 22 suzhou-reman revokes E, 23 other-reman's key
///  rotated (after it revoked D).
/// Every entry is honest; the tests make a lying server point a signer at an older
/// registration of its (the ones the checks must refuse).
struct SignerHistory {
    ledger: Ledger,
    c: CertificateId,
    d: CertificateId,
    e: CertificateId,
}

fn signer_history(dir: &Path) -> SignerHistory {
    let ledger = small_ledger(dir);
    let suzhou = key("suzhou-reman.example");
    let k = |name: &str, seed: u8| PrivateKey::from_seed(name, &[seed; 32]).unwrap();
    let port_x = k("port-x.example", 1);
    let port_y = k("port-y.example", 2);
    let (z1, z2) = (k("port-z.example", 3), k("port-z.example", 4));
    let (other, other2) = (k("other-reman.example", 5), k("other-reman.example", 6));
    let (q1, q2) = (k("port-q.example", 7), k("port-q.example", 8));
    let submit = |kind, json: &str, signer: &PrivateKey| {
        let r = ledger.submit(&sign(kind, json, signer)).unwrap();
        (r.index, r.certificate_id)
    };
    // Each registration says when it was made, so that none is the resubmission of another.
    let made = std::cell::Cell::new(0);
    let register = |k: &PrivateKey, role: &str, status: &str| {
        made.set(made.get() + 1);
        let json = format!(
            r#"{{"name":"{}","role":"{role}","display_name":"registration {}","country":"NL","key":"{}","status":"{status}"}}"#,
            k.public().name(),
            made.get(),
            k.public().to_vkey()
        );
        submit(PayloadType::Party, &json, &operator()).0
    };
    let event = |id: &CertificateId, what: &str, signer: &PrivateKey| {
        let json = format!(
            r#"{{"certificate_id":"{id}","event":"{what}","time":"2026-11-25T09:30:00+08:00"}}"#
        );
        submit(PayloadType::Event, &json, signer).0
    };
    let certificate = |item: u64, serial: &str| {
        let (i, id) = submit(
            PayloadType::Certificate,
            &certificate_json(&gtin(item), serial, None),
            &suzhou,
        );
        (i, id.unwrap())
    };
    let revoke = |id: &CertificateId, signer: &PrivateKey| {
        let json = format!(r#"{{"certificate_id":"{id}","reason":"error","note":""}}"#);
        submit(PayloadType::Revocation, &json, signer).0
    };
    let (i, c) = certificate(900, "SIGNERS-C");
    assert_eq!(i, 2);
    let indices = [
        register(&port_x, "importer", "active"),
        register(&port_x, "customs", "active"),
        event(&c, "customs_released", &port_x),
        register(&port_y, "customs", "active"),
        register(&port_y, "customs", "suspended"),
        register(&port_y, "customs", "active"),
        event(&c, "customs_inspected", &port_y),
        register(&z1, "customs", "active"),
        event(&c, "customs_inspected", &z1),
        register(&z2, "customs", "active"),
    ];
    assert_eq!(indices, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    let (i, d) = certificate(901, "SIGNERS-D");
    assert_eq!(i, 13);
    let indices = [
        register(&other, "remanufacturer", "active"),
        register(&other, "operator", "active"),
        revoke(&d, &other),
        register(&q1, "customs", "active"),
        register(&q2, "customs", "active"),
        event(&c, "customs_inspected", &q2),
        register(&port_x, "customs", "suspended"),
    ];
    assert_eq!(indices, [14, 15, 16, 17, 18, 19, 20]);
    let (i, e) = certificate(902, "SIGNERS-E");
    assert_eq!(i, 21);
    assert_eq!(revoke(&e, &suzhou), 22);
    assert_eq!(register(&other2, "operator", "active"), 23);
    SignerHistory { ledger, c, d, e }
}

/// The party answer with its registration's entry index replaced.
fn registration_at(body: &[u8], index: u64) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    v["index"] = index.into();
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn the_signers_of_events_and_revocations_are_checked_against_their_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let SignerHistory { ledger, c, d, e } = signer_history(dir.path());
    let server = Server::start(dir, ledger);
    let home = Home::new();
    let verify = |url: &str, id: &CertificateId| {
        home.run(&["--server", url, "--log-key", LOG_PUB, &id.to_string()])
    };

    // The honest server: each event's signer is checked as far as its registrations allow,
    // and the report says how far; the one signed with a key rotated since is a warning.
    let r = verify(&server.url, &c);
    r.valid().has(
        "4 event(s), each in the log; 2 signed by a party of a role that may sign it; 1 signed with the registered key of a party registered again since (its role then not judged here); 1 signed with another key of its party, NOT checked here (see the warnings)",
    );
    assert!(
        r.stderr.contains(
            "warning: the customs_inspected event (entry 11) is signed with a key of port-z.example"
        ),
        "{}",
        r.stderr
    );
    // A revocation by an operator (its key rotated since: a warning), and one by the issuer.
    let r = verify(&server.url, &d);
    r.invalid("REVOKED (error)");
    assert!(
        r.stderr.contains(
            "warning: the revocation (entry 16) is signed with a key of other-reman.example"
        ),
        "{}",
        r.stderr
    );
    verify(&server.url, &e)
        .invalid("REVOKED (error)")
        .has("by suzhou-reman.example");

    // A lying server that points a signer at a registration of its not in force when it
    // signed, or at another party's, or at no entry of the log, or says it is unknown: each is
    // refused by name.
    type Case = (
        fn(&str, &[u8]) -> Option<(u16, Vec<u8>)>,
        char,
        &'static str,
    );
    let cases: [Case; 8] = [
        (
            |p, b| (p == "/api/v1/parties/port-x.example").then(|| (200, registration_at(b, 3))),
            'c',
            "port-x.example was registered as importer (entry 3) when the customs_released event (entry 5) was logged, and only customs may sign customs_released events",
        ),
        (
            |p, b| (p == "/api/v1/parties/port-y.example").then(|| (200, registration_at(b, 7))),
            'c',
            "port-y.example was suspended (registration in entry 7) when the customs_inspected event (entry 9) was logged",
        ),
        (
            |p, b| (p == "/api/v1/parties/port-q.example").then(|| (200, registration_at(b, 17))),
            'c',
            "of port-q.example, but the registration in force since entry 17 carries key",
        ),
        (
            |p, b| (p == "/api/v1/parties/port-x.example").then(|| (200, registration_at(b, 1))),
            'c',
            "entry 1 is not the registration of port-x.example",
        ),
        (
            |p, b| (p == "/api/v1/parties/port-x.example").then(|| (200, registration_at(b, 999))),
            'c',
            "the registration entry 999 is not in the log's tree of size 24",
        ),
        (
            |p, _| {
                (p == "/api/v1/parties/port-y.example")
                    .then(|| (404, br#"{"title":"Not found","status":404}"#.to_vec()))
            },
            'c',
            "the signer of the customs_inspected event (entry 9), port-y.example, is not a registered party",
        ),
        (
            |p, b| {
                (p == "/api/v1/parties/port-y.example").then(|| {
                    let mut v: Value = serde_json::from_slice(b).unwrap();
                    v.as_object_mut().unwrap().remove("index");
                    (200, serde_json::to_vec(&v).unwrap())
                })
            },
            'c',
            "the server does not say where the registration of port-y.example is logged",
        ),
        (
            |p, b| {
                (p == "/api/v1/parties/other-reman.example").then(|| (200, registration_at(b, 14)))
            },
            'd',
            "the revocation (entry 16) is signed by other-reman.example, registered as remanufacturer (entry 14), which did not issue the certificate (suzhou-reman.example did); only the issuing remanufacturer or an operator may revoke a certificate",
        ),
    ];
    for (rewrite, of, why) in cases {
        let proxy = proxy::start(&server.url, rewrite);
        verify(&proxy, if of == 'c' { &c } else { &d }).invalid(why);
    }
}

/// A dishonest operator's log: the last entry, a customs event, carries the customs
/// authority's key ID but a signature that does not verify, and the log's tree and signed
/// checkpoint were made again over it (with the log key), so every proof checks out. No honest
/// ledger writes such an entry; it is forged here on disk with the store's own functions.
fn forge_last_signature(dir: &Path) -> u64 {
    use reman_ledger::checkpoint::Checkpoint;
    use reman_ledger::entry::Entry;
    use reman_ledger::merkle::{TreeBuilder, leaf_hash};
    use reman_ledger::store::{Commit, Store};
    let store = Store::open(dir).unwrap();
    let size = store.size().unwrap();
    let last = size - 1;
    let mut entry = Entry::parse(&store.entry(last).unwrap().unwrap()).unwrap();
    entry.envelope.signature.sig[40] ^= 0x01;
    let forged = entry.to_bytes();
    store.raw_put_entry(last, &forged).unwrap();
    let mut tree = TreeBuilder::from_reader(last, &store).unwrap();
    let nodes = tree.push(leaf_hash(&forged));
    let checkpoint = Checkpoint {
        origin: log_key().public().name().to_owned(),
        size,
        root: tree.root(),
        extensions: vec![],
    }
    .sign(&log_key())
    .unwrap();
    store
        .commit(Commit {
            nodes,
            size,
            checkpoint,
            log_key: store.log_key().unwrap().unwrap(),
            ..Default::default()
        })
        .unwrap();
    store.close().unwrap();
    last
}

#[test]
fn an_event_whose_signature_does_not_verify_under_its_signers_registered_key_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = small_ledger(dir.path());
    let port = PrivateKey::from_seed("port-x.example", &[1; 32]).unwrap();
    let json = format!(
        r#"{{"name":"port-x.example","role":"customs","display_name":"Port X","country":"NL","key":"{}","status":"active"}}"#,
        port.public().to_vkey()
    );
    ledger
        .submit(&sign(PayloadType::Party, &json, &operator()))
        .unwrap();
    let c = add_certificates(&ledger, 950, 1).remove(0);
    let json = format!(
        r#"{{"certificate_id":"{c}","event":"customs_released","time":"2026-11-25T09:30:00+08:00"}}"#
    );
    let event = ledger
        .submit(&sign(PayloadType::Event, &json, &port))
        .unwrap()
        .index;
    ledger.close().unwrap();
    let forged = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), forged.path());
    assert_eq!(forge_last_signature(forged.path()), event);

    let verify = |home: &Home, dir: &Path| {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir, copy.path());
        let ledger = Ledger::open(copy.path(), log_key(), config()).unwrap();
        let server = Server::start(copy, ledger);
        home.run(&[
            "--server",
            &server.url,
            "--log-key",
            LOG_PUB,
            &c.to_string(),
        ])
    };
    // The history as logged verifies. Forged, it is refused at the event, by name, by a
    // verifier that never saw the log before (its inclusion and the log's checkpoint check
    // out), and as a rewritten history by one that did.
    let (seen, new) = (Home::new(), Home::new());
    verify(&seen, dir.path()).valid();
    verify(&new, forged.path()).invalid(&format!(
        "the signature of the customs_released event (entry {event}) does not verify under port-x.example's registered key"
    ));
    verify(&seen, forged.path()).invalid("the log signed two different trees of size");
    // And an audit of the forged store names the entry.
    let store = reman_ledger::store::Store::open(forged.path()).unwrap();
    let err =
        reman_ledger::audit::audit_store(&store, Some(log_key().public()), |_, _| {}).unwrap_err();
    assert_eq!(err.index(), Some(event), "{err}");
}

/// A proxy rewrite (a `fn`, as the proxy takes) that changes every certificate view with
/// the closure given.
macro_rules! view_rewrite {
    ($change:expr) => {
        |p: &str, b: &[u8]| is_view(p).then(|| (200, changed_view(b, $change)))
    };
}

/// A certificate view's JSON, changed by `change`.
fn changed_view(body: &[u8], change: fn(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    change(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn is_view(path: &str) -> bool {
    path.starts_with("/api/v1/certificates/") && path.matches('/').count() == 4
}

#[test]
fn a_server_that_repeats_misplaces_or_reorders_events_or_hides_a_revocations_entry() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    let eng = ids["eng-001"];
    let verify = |url: &str, id: &CertificateId, json: bool| {
        let id = id.to_string();
        let mut args = vec!["--server", url, "--log-key", LOG_PUB, id.as_str()];
        if json {
            args.push("--json");
        }
        home.run(&args)
    };
    type Case = (
        fn(&str, &[u8]) -> Option<(u16, Vec<u8>)>,
        &'static str,
        &'static str,
    );
    let cases: [Case; 5] = [
        (
            // Each event listed twice: the history would show two customs releases.
            view_rewrite!(|v| {
                let events = v["events"].as_array().unwrap().clone();
                v["events"] = Value::Array([events.clone(), events].concat());
            }),
            "eng-001",
            "more than once among the certificate's events",
        ),
        (
            // An entry before the certificate shown as its event.
            view_rewrite!(|v| {
                v["events"].as_array_mut().unwrap()[0]["index"] = 1.into();
            }),
            "eng-001",
            "the server lists entry 1 as an event of certificate",
        ),
        (
            // A revocation shown without the entry that would prove it.
            view_rewrite!(|v| {
                v["revocation"].as_object_mut().unwrap().remove("index");
            }),
            "alt-003",
            "the server shows a revocation without its entry index",
        ),
        (
            // An entry before the certificate shown as its revocation.
            view_rewrite!(|v| {
                v["revocation"]["index"] = 1.into();
            }),
            "alt-003",
            "a revocation comes after its certificate",
        ),
        (
            // The view names another certificate's entry.
            view_rewrite!(|v| {
                let i = v["index"].as_u64().unwrap();
                v["index"] = (i + 1).into();
            }),
            "eng-001",
            "the server names the wrong entry for it",
        ),
    ];
    for (rewrite, label, why) in cases {
        let proxy = proxy::start(&server.url, rewrite);
        verify(&proxy, &ids[label], false).invalid(why);
    }

    // Events listed newest first are checked and shown in the log's order.
    let proxy = proxy::start(
        &server.url,
        view_rewrite!(|v| {
            v["events"].as_array_mut().unwrap().reverse();
        }),
    );
    let j = verify(&proxy, &eng, true).valid_json();
    let shown: Vec<u64> = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(shown.len(), 8);
    assert!(shown.windows(2).all(|w| w[0] < w[1]), "{shown:?}");
    assert_eq!(j["events"][0]["event"], "shipped");
}

#[test]
fn a_server_that_hides_a_revocation_is_valid_and_the_report_says_the_status_is_its_word() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    let proxy = proxy::start(
        &server.url,
        view_rewrite!(|v| {
            v["status"] = "valid".into();
            v["revocation"] = Value::Null;
        }),
    );
    // Not provable from the certificate's entries: the report does not claim it is.
    home.run(&[
        "--server",
        &proxy,
        "--log-key",
        LOG_PUB,
        &ids["alt-003"].to_string(),
    ])
    .valid()
    .has("valid, as the server says")
    .has("a revocation it leaves out is not caught by this check");
    let help = Command::new(env!("CARGO_BIN_EXE_reman-ledger"))
        .args(["verify", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("a mirror you run"), "{help}");
    assert!(
        !help.contains("witnesses that cosign its checkpoints, rule"),
        "{help}"
    );
}

#[test]
fn a_server_too_slow_over_all_its_answers_fails_the_check_as_unfinished() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    // Each entry and proof answer comes after 400 ms: well within a request's own timeout,
    // but eng-001's 8 events take two such answers each.
    let proxy = proxy::start(&server.url, |p, _| {
        if p.starts_with("/api/v1/entries/") || p.starts_with("/api/v1/proof/") {
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
        None
    });
    let started = std::time::Instant::now();
    let r = home.run(&[
        "--server",
        &proxy,
        "--log-key",
        LOG_PUB,
        "--time-limit",
        "2",
        &ids["eng-001"].to_string(),
    ]);
    r.expect(2);
    assert!(
        r.stderr.contains(
            "the server's answers took more than 2 s in all, the time limit of this check"
        ),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    home.run(&["--server", &proxy, "--time-limit", "0", "x"])
        .expect(2);
    // With time enough, the same slow server's answers verify.
    home.run(&[
        "--server",
        &proxy,
        "--log-key",
        LOG_PUB,
        "--time-limit",
        "60",
        &ids["eng-001"].to_string(),
    ])
    .valid();
}

#[test]
fn the_report_shows_where_a_labels_link_leads_and_warns_when_it_is_not_the_ledger() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    let genuine = server.qr_url(&ids["eng-001"]);
    let (ledger_site, path) = genuine.split_at(genuine.find("/01/").unwrap());
    let elsewhere = format!("https://Ledger-Check.example{path}");

    // Offline: the seal does not cover the site, so the report shows it; and the status.
    home.run(&["--log-key", LOG_PUB, &elsewhere])
        .valid()
        .has("link:        https://ledger-check.example (where the label's QR code leads)")
        .has("status:      not checked offline");
    // Online: the site is not the ledger's.
    let r = home.run(&["--server", &server.url, "--log-key", LOG_PUB, &elsewhere]);
    r.valid();
    assert!(
        r.stderr.contains(&format!(
            "the label's QR code leads to https://ledger-check.example, but this ledger's labels lead to {ledger_site}"
        )),
        "{}",
        r.stderr
    );
    let r = home.run(&["--server", &server.url, "--log-key", LOG_PUB, &genuine]);
    r.valid();
    assert!(!r.stderr.contains("leads to"), "{}", r.stderr);

    // A QR code holding a link that is not a web link is not a ledger's label.
    let img = home.path().join("ftp-label.png");
    let ftp = format!("ftp://ledger.example{path}");
    std::fs::write(&img, reman_ledger::qr::png(&ftp, 400).unwrap()).unwrap();
    home.run(&["--log-key", LOG_PUB, img.to_str().unwrap()])
        .invalid("not a web link (http:// or https://)");
}

#[test]
fn a_server_presenting_its_key_under_another_origin_is_named_as_it_presents_itself() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    let proxy = proxy::start(&server.url, |p, b| {
        (p == "/api/v1/log").then(|| {
            let v = changed_view(b, |v| v["origin"] = "other.example/log".into());
            (200, v)
        })
    });
    home.run(&[
        "--server",
        &proxy,
        "--log-key",
        LOG_PUB,
        &ids["eng-001"].to_string(),
    ])
    .invalid("presents the log other.example/log with the key of reman-ledger.example/log");
}

/// With a checkpoint seen before, a grown log must prove that its tree extends it: a refusal
/// is INVALID (as a server error is: a fork must not hide behind errors), but a server too slow
/// to answer within the check's time limit leaves the check open (exit 2) and is not accused
/// of rewriting its history. Nothing is remembered from a check that did not pass.
#[test]
fn online_a_refused_consistency_proof_is_invalid_and_a_slow_server_is_not_accused() {
    let (server, ids) = Server::demo();
    let home = Home::new();
    let state_file = home.path().join("checkpoints.json");
    let state = state_file.display().to_string();
    let eng = ids["eng-001"].to_string();
    let verify = |url: &str| {
        home.run(&[
            "--server",
            url,
            "--log-key",
            LOG_PUB,
            "--state",
            &state,
            "--time-limit",
            "2",
            &eng,
        ])
    };
    verify(&server.url).valid();
    let seen = std::fs::read_to_string(&state_file).unwrap();
    add_certificates(&server.ledger, 900, 3);
    let slow = proxy::start(&server.url, |p, _| {
        if p.starts_with("/api/v1/proof/consistency") {
            std::thread::sleep(std::time::Duration::from_secs(4));
        }
        None
    });
    let r = verify(&slow);
    r.expect(2);
    assert!(
        r.stderr.contains("took more than 2 s in all"),
        "{}",
        r.stderr
    );
    for said in [&r.stdout, &r.stderr] {
        assert!(!said.contains("rewr"), "{said}");
    }
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), seen);
    let refusing = proxy::start(&server.url, |p, _| {
        p.starts_with("/api/v1/proof/consistency")
            .then(|| (404, br#"{"title":"Not Found"}"#.to_vec()))
    });
    verify(&refusing)
        .invalid("not consistent")
        .has("HTTP 404")
        .has("treat it as rewritten");
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), seen);
    // The honest server proves it, and the grown checkpoint is remembered.
    verify(&server.url)
        .valid()
        .has("extends the one of size 89 seen before");
    assert_ne!(std::fs::read_to_string(&state_file).unwrap(), seen);
}

//! `reman-ledger mirror` (SPEC §8): the real binary following a real `serve` over loopback
//! HTTP, through the tile API, and serving the same read API; in front of a lying proxy, a
//! ledger that rolls back and one that forks, it stops following, says why and writes
//! nothing it could not verify.

mod cli_support;
mod common;
mod proxy;

use cli_support::{Served, bin, log_certificates, spawn_server, stop_server, text};
use common::copy_dir;
use reman_ledger::client::Client;
use reman_ledger::seal::Seal;
use serde_json::Value;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A running `reman-ledger mirror` in its own directory (keys/log.key.pub, data in `m/`).
struct Mirror {
    child: Option<Child>,
    url: String,
    upstream: String,
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

impl Mirror {
    fn start(upstream: &str, extra: &[&str]) -> Mirror {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&cli_support::root().join("keys"), &dir.path().join("keys"));
        let mut m = Mirror {
            child: None,
            url: String::new(),
            upstream: upstream.to_owned(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            dir,
        };
        m.run();
        m
    }

    fn run(&mut self) {
        let mut args = vec![
            "mirror",
            "--from",
            &self.upstream,
            "--data",
            "m",
            "--listen",
            "127.0.0.1:0",
            "--interval-ms",
            "50",
        ];
        if !self.extra.iter().any(|a| a == "--log-key") {
            args.extend(["--log-key", "keys/log.key.pub"]);
        }
        args.extend(self.extra.iter().map(String::as_str));
        let (child, url) = spawn_server(&args, self.dir.path());
        self.child = Some(child);
        self.url = url;
    }

    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_server(c);
        }
    }

    fn health(&self) -> Value {
        let body = Client::new(&self.url)
            .unwrap()
            .get_path("/healthz", "application/json")
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// Waits (up to 30 s) until `/healthz` satisfies `done`; returns it.
    fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let h = self.health();
            if done(&h) {
                return h;
            }
            assert!(Instant::now() < deadline, "mirror never {what}: {h}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_size(&self, size: u64) {
        self.wait_for(&format!("reached {size} entries"), |h| {
            h["tree_size"] == size && h["mirror"]["behind"].is_null()
        });
    }

    /// Waits until following stopped; returns `/healthz`'s `mirror` object.
    fn wait_stopped(&self) -> Value {
        self.wait_for("stopped following", |h| h["mirror"]["state"] == "stopped")["mirror"].clone()
    }

    /// Waits until a round failed (and will be tried again) with an error containing `what`;
    /// returns the `last_error` object.
    fn wait_refused(&self, what: &str) -> Value {
        let h = self.wait_for(&format!("refused with {what:?}"), |h| {
            h["mirror"]["last_error"]["error"]
                .as_str()
                .is_some_and(|e| e.contains(what))
        });
        assert_eq!(h["mirror"]["state"], "following", "{h}");
        h["mirror"]["last_error"].clone()
    }

    fn get(&self, path: &str) -> Vec<u8> {
        Client::new(&self.url)
            .unwrap()
            .get_path(path, "application/json")
            .unwrap()
    }

    /// The size of the mirror's store, read from its directory (the mirror stopped).
    fn stored_size(&mut self) -> u64 {
        self.stop();
        reman_ledger::store::Store::open(&self.dir.path().join("m"))
            .unwrap()
            .size()
            .unwrap()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn get(url: &str, path: &str) -> Vec<u8> {
    Client::new(url)
        .unwrap()
        .get_path(path, "application/json")
        .unwrap()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The IDs of the certificates the ledger at `url` has logged.
fn certificate_ids(url: &str) -> Vec<String> {
    let parties = json(&get(url, "/api/v1/parties"));
    assert!(parties.as_array().unwrap().len() >= 6);
    let log = Client::new(url).unwrap().log().unwrap();
    let client = Client::new(url).unwrap();
    let mut ids = Vec::new();
    for i in 0..log.tree_size {
        let e = client.entry(i).unwrap();
        let entry = reman_ledger::entry::Entry::parse(&e.leaf).unwrap();
        if entry.envelope.payload_type
            == reman_ledger::payload::PayloadType::Certificate.media_type()
        {
            ids.push(
                reman_ledger::certificate::CertificateId::of_payload(&entry.envelope.payload)
                    .to_string(),
            );
        }
    }
    ids
}

#[test]
fn a_mirror_follows_a_ledger_and_serves_the_same_read_api() {
    let up = Served::demo();
    log_certificates(&up.url, 1000, 600);
    // Steps of one tile: the catch-up goes through full and partial bundles of several tiles
    // and consistency proofs.
    let mut m = Mirror::start(&up.url, &["--step-entries", "256"]);
    m.wait_size(689);
    for path in [
        "/checkpoint",
        "/api/v1/log",
        "/api/v1/parties",
        "/tile/0/000",
        "/tile/0/002.p/177",
        "/tile/1/000.p/2",
        "/tile/entries/001",
        "/tile/entries/002.p/177",
        "/api/v1/entries/42",
        "/api/v1/entries/600",
        "/api/v1/proof/consistency?first=10&second=689",
    ] {
        assert_eq!(get(&up.url, path), m.get(path), "{path}");
    }
    let ids = certificate_ids(&up.url);
    assert!(ids.len() >= 630);
    for id in ids.iter().step_by(7) {
        let (mut a, mut b) = (
            json(&get(&up.url, &format!("/api/v1/certificates/{id}"))),
            json(&m.get(&format!("/api/v1/certificates/{id}"))),
        );
        // The same seal; the QR link names the server that answers.
        let (qa, qb) = (a["qr_url"].take(), b["qr_url"].take());
        let (qa, qb) = (qa.as_str().unwrap(), qb.as_str().unwrap());
        assert!(qb.starts_with(&m.url), "{qb}");
        assert_eq!(qa.strip_prefix(&up.url), qb.strip_prefix(&m.url));
        assert_eq!(a, b, "certificate {id}");
        let proof = format!("/api/v1/certificates/{id}/proof");
        assert_eq!(get(&up.url, &proof), m.get(&proof));
    }
    // Read-only: a submission is a 405 problem, and nothing is written.
    let envelope = common::sign(
        reman_ledger::payload::PayloadType::Certificate,
        &common::certificate_json(&common::gtin(4242), "MIRROR-1", None),
        &common::key("suzhou-reman.example"),
    );
    let answer = Client::new(&m.url).unwrap().submit(&envelope).unwrap_err();
    assert_eq!(answer.status(), Some(405), "{answer}");
    assert!(answer.to_string().contains("read-only mirror"), "{answer}");
    assert_eq!(m.health()["tree_size"], 689);
    // New entries are followed.
    log_certificates(&up.url, 0, 3);
    m.wait_size(692);
    assert_eq!(get(&up.url, "/checkpoint"), m.get("/checkpoint"));
    let metrics = text(&m.get("/metrics"));
    for line in [
        "reman_mirror_stored_entries 692\n",
        "reman_mirror_checkpoint_entries 692\n",
        "reman_mirror_following 1\n",
        "reman_mirror_failed_rounds 0\n",
        "reman_ledger_served_tree_size 692\n",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // Verified against the mirror alone: online verification and a remote audit.
    let id = &ids[0];
    let o = bin(
        &[
            "verify",
            "--state",
            "state.json",
            "--log-key",
            "keys/log.key.pub",
            "--server",
            &m.url,
            id,
        ],
        m.dir.path(),
    );
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("VALID"));
    let o = bin(
        &["audit", "--log-key", "keys/log.key.pub", "--server", &m.url],
        m.dir.path(),
    );
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    // Its store audits clean, and a restarted mirror goes on from it.
    m.stop();
    let o = bin(&["audit", "--data", "m"], m.dir.path());
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        text(&o.stdout).contains("692 entries"),
        "{}",
        text(&o.stdout)
    );
    m.run();
    assert_eq!(m.health()["tree_size"], 692);
    log_certificates(&up.url, 3, 1);
    m.wait_size(693);
}

/// Changes a byte of the payload of the entry bundle's 11th entry.
fn change_an_entry(path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    if !path.starts_with("/tile/entries/") {
        return None;
    }
    let mut b = body.to_vec();
    let tenth = b
        .windows(10)
        .enumerate()
        .filter(|(_, w)| *w == b"\"payload\":")
        .nth(10)?
        .0;
    b[tenth + 30] ^= 0x01;
    Some((200, b))
}

#[test]
fn a_mirror_reads_entry_bundles_gzipped_without_asking() {
    let up = Served::demo();
    log_certificates(&up.url, 3000, 200);
    let m = Mirror::start(&proxy::start_gzipping(&up.url), &[]);
    m.wait_size(289);
    for path in [
        "/checkpoint",
        "/tile/entries/001.p/33",
        "/api/v1/entries/250",
    ] {
        assert_eq!(get(&up.url, path), m.get(path), "{path}");
    }
}

#[test]
fn a_mirror_refuses_a_changed_entry_and_writes_nothing() {
    let up = Served::demo();
    let lying = proxy::start(&up.url, change_an_entry);
    let mut m = Mirror::start(&lying, &[]);
    // Unsigned bytes changed on the way are no evidence against the log: tried again.
    m.wait_refused("are not the ones the log's checkpoint signs");
    // Nothing to serve: no checkpoint verified.
    let err = Client::new(&m.url)
        .unwrap()
        .get_path("/checkpoint", "text/plain")
        .unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    // A phone scanning a label meanwhile gets a page that says so, not JSON.
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut page = agent
        .get(format!("{}/01/09506000134352/21/RM-1", m.url))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .call()
        .unwrap();
    assert_eq!(page.status().as_u16(), 503);
    assert_eq!(page.headers()["retry-after"], "5");
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let text = page.body_mut().read_to_string().unwrap();
    assert!(
        text.contains("this mirror has not yet verified any checkpoint"),
        "{text}"
    );
    assert_eq!(m.stored_size(), 0);
}

/// Serves every certificate with `change` made to its seal.
fn change_seals(body: &[u8], change: fn(&mut Seal)) -> Option<(u16, Vec<u8>)> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let mut seal = Seal::from_base64url(v["seal"].as_str()?).ok()?;
    change(&mut seal);
    v["seal"] = seal.to_base64url().into();
    Some((200, serde_json::to_vec(&v).unwrap()))
}

/// Changes one bit of every seal, in seal tiles and in certificate views.
fn forge_seals(path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    if path.starts_with("/seals/") {
        let mut b = body.to_vec();
        for seal in b.chunks_exact_mut(64).filter(|s| s.iter().any(|&x| x != 0)) {
            seal[7] ^= 1;
        }
        return Some((200, b));
    }
    path.starts_with("/api/v1/certificates/")
        .then(|| change_seals(body, |s| s.signature[7] ^= 1))
        .flatten()
}

/// Changes one bit of every seal in seal tiles only (a damaged copy a cache keeps).
fn forge_seal_tiles(path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    path.starts_with("/seals/")
        .then(|| forge_seals(path, body))
        .flatten()
}

/// Serves no seal tiles (as a ledger of an earlier version), and certificate views whose
/// seals name the next entry.
fn misplace_seals(path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    if path.starts_with("/seals/") {
        return Some((404, b"not found".to_vec()));
    }
    path.starts_with("/api/v1/certificates/")
        .then(|| change_seals(body, |s| s.index += 1))
        .flatten()
}

#[test]
fn a_mirror_refuses_a_forged_seal_and_writes_nothing() {
    let up = Served::demo();
    let mut m = Mirror::start(&proxy::start(&up.url, forge_seals), &[]);
    m.wait_refused("seal signature is not valid");
    assert_eq!(m.stored_size(), 0);
}

#[test]
fn a_mirror_reads_each_seal_a_seal_tile_has_wrong_from_its_certificate() {
    let up = Served::demo();
    let m = Mirror::start(&proxy::start(&up.url, forge_seal_tiles), &[]);
    m.wait_size(89);
    let id = &certificate_ids(&up.url)[0];
    let path = format!("/api/v1/certificates/{id}");
    assert_eq!(
        json(&get(&up.url, &path))["seal"],
        json(&m.get(&path))["seal"]
    );
}

#[test]
fn a_mirror_refuses_a_seal_served_for_another_entry_and_writes_nothing() {
    let up = Served::demo();
    let mut m = Mirror::start(&proxy::start(&up.url, misplace_seals), &[]);
    m.wait_refused("a seal for entry");
    assert_eq!(m.stored_size(), 0);
}

#[test]
fn a_mirror_pinned_to_another_key_refuses_the_checkpoint_and_writes_nothing() {
    let up = Served::demo();
    let mut m = Mirror::start(
        &up.url,
        &["--log-key", "keys/parties/suzhou-reman.example.key.pub"],
    );
    m.wait_refused("checkpoint is not valid");
    assert_eq!(m.stored_size(), 0);
}

/// A ledger served on a fixed loopback address from `dir/<data>` (keys and demo data in
/// `dir`), so that another history can be served at the same URL.
fn serve_at(dir: &Path, data: &str, addr: &str, demo: bool) -> Child {
    let mut args = vec!["serve", "--data", data, "--listen", addr];
    if demo {
        args.push("--demo");
    }
    spawn_server(&args, dir).0
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn a_mirror_refuses_a_rollback_stops_at_a_fork_and_keeps_serving_what_it_verified() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&cli_support::root().join("keys"), &dir.path().join("keys"));
    copy_dir(
        &cli_support::root().join("fixtures/demo"),
        &dir.path().join("fixtures/demo"),
    );
    let addr = free_addr();
    let url = format!("http://{addr}");
    // The demo log (89 entries), kept aside; then 3 more entries.
    stop_server(serve_at(dir.path(), "data", &addr, true));
    copy_dir(&dir.path().join("data"), &dir.path().join("old"));
    let up = serve_at(dir.path(), "data", &addr, false);
    log_certificates(&url, 0, 3);
    let mut m = Mirror::start(&url, &[]);
    m.wait_size(92);
    let verified = m.get("/checkpoint");
    // The operator serves the older copy: refused (it could also be an old checkpoint
    // replayed on the way), with both checkpoints; the mirror serves what it verified.
    stop_server(up);
    let old = serve_at(dir.path(), "old", &addr, false);
    let refused = m.wait_refused("older than the one of 92");
    let held = String::from_utf8(verified.clone()).unwrap();
    assert_eq!(refused["evidence"]["held"], held.as_str());
    assert!(
        refused["evidence"]["presented"]
            .as_str()
            .unwrap()
            .contains("\n89\n")
    );
    assert_eq!(m.get("/checkpoint"), verified);
    assert_eq!(m.health()["tree_size"], 92);
    // ... then grows the old copy into another history of 92 entries: two signed trees of
    // one size, a fork. Following stops, with both checkpoints.
    log_certificates(&url, 100, 3);
    let stopped = m.wait_stopped();
    assert!(
        stopped["reason"].as_str().unwrap().contains("forked"),
        "{stopped}"
    );
    assert_eq!(stopped["evidence"]["held"], held.as_str());
    assert_eq!(m.get("/checkpoint"), verified);
    assert!(text(&m.get("/metrics")).contains("reman_mirror_following 0\n"));
    // The stop is kept: restarted (the followed ledger gone, so nothing could be found
    // again), the mirror still says why and does not follow until told to.
    stop_server(old);
    m.stop();
    m.run();
    let again = m.wait_stopped();
    assert_eq!(again["reason"], stopped["reason"]);
    assert_eq!(again["evidence"], stopped["evidence"]);
    m.stop();
    m.extra.push("--resume".into());
    m.run();
    m.wait_refused("cannot read the followed ledger");
    assert_eq!(m.stored_size(), 92);
}

/// SPEC §8: the export is served "unchanged" by any static server, and a mirror follows it:
/// entries from the bundles, seals from the seal tiles, consistency proofs made from the
/// Merkle tiles (a static server has no proof API).
#[test]
fn a_mirror_follows_a_static_export_of_a_ledger() {
    let mut up = Served::demo();
    up.stop();
    let public = up.path("public");
    let export = |up: &Served| {
        let o = bin(
            &["export", "--data", "data", "--out", "public"],
            up.dir.path(),
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    export(&up);
    let site = proxy::static_files(public);
    let mut m = Mirror::start(&site, &["--step-entries", "256"]);
    m.wait_size(89);
    // The log grows past two tiles; the export follows; the mirror catches up in steps of a
    // tile, each proved consistent with the new checkpoint from the tiles alone.
    up.restart();
    log_certificates(&up.url, 5000, 600);
    up.stop();
    export(&up);
    m.wait_size(689);
    up.restart();
    for path in [
        "/checkpoint",
        "/tile/entries/001",
        "/tile/entries/002.p/177",
        "/seals/001",
        "/api/v1/entries/600",
        "/api/v1/proof/consistency?first=89&second=689",
    ] {
        assert_eq!(get(&up.url, path), m.get(path), "{path}");
    }
    // Its lookups carry the ledger's seals, which it cannot sign itself.
    let ids = certificate_ids(&up.url);
    for id in ids.iter().step_by(50) {
        let path = format!("/api/v1/certificates/{id}");
        let (a, b) = (json(&get(&up.url, &path)), json(&m.get(&path)));
        assert_eq!(a["seal"], b["seal"], "{id}");
        assert!(b["seal"].is_string(), "{b}");
    }
    m.stop();
    let o = bin(&["audit", "--data", "m"], m.dir.path());
    assert!(o.status.success(), "{}", text(&o.stdout));
}

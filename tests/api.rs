//! The HTTP API of SPEC §6 over a real loopback socket: `serve` on 127.0.0.1:0, a hyper client.

mod common;

use axum::body::Bytes;
use base64::Engine;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reman_ledger::api::{self, ROUTES, ServeOptions};
use reman_ledger::checkpoint::Checkpoint;
use reman_ledger::keys::{PrivateKey, PublicKey};
use reman_ledger::ledger::{Ledger, LedgerConfig};
use reman_ledger::merkle::{self, Hash};
use reman_ledger::payload::PayloadType;
use reman_ledger::qr;
use reman_ledger::seal::Seal;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SUZHOU: &str = "suzhou-reman.example";
const RHEIN: &str = "rhein-reman.example";
const HAMBURG: &str = "hamburg-import.example";
const CUSTOMS: &str = "customs-shanghai.example";

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    ledger: Arc<Ledger>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    dir: tempfile::TempDir,
}

struct Resp {
    status: u16,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }
    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .map_or("", |v| v.to_str().unwrap())
    }
    /// Asserts an RFC 9457 problem with this status, and returns it.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type(), "application/problem+json");
        let p = self.json();
        assert_eq!(p["status"], status, "{p}");
        assert!(
            p["type"]
                .as_str()
                .unwrap()
                .starts_with("https://reman-ledger.example/problems/"),
            "{p}"
        );
        assert!(!p["title"].as_str().unwrap().is_empty(), "{p}");
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{p}");
        assert_eq!(p.as_object().unwrap().len(), 4, "{p}");
        p
    }
}

/// Starts a server over a new ledger holding only its genesis entry.
async fn start(opts: ServeOptions) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let ledger = tokio::task::spawn_blocking(move || new_ledger(&path))
        .await
        .unwrap();
    start_with(dir, Arc::new(ledger), opts).await
}

async fn start_with(dir: tempfile::TempDir, ledger: Arc<Ledger>, opts: ServeOptions) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(api::serve(listener, ledger.clone(), opts, async move {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}"),
        addr,
        client: Client::builder(TokioExecutor::new()).build_http(),
        ledger,
        shutdown: Some(tx),
        task: Some(task),
        dir,
    }
}

impl Server {
    async fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut b = axum::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self
            .client
            .request(b.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }
    async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], b"").await
    }
    async fn post(&self, body: &[u8]) -> Resp {
        self.req(
            "POST",
            "/api/v1/entries",
            &[("content-type", "application/json")],
            body,
        )
        .await
    }
    async fn post_ok(&self, body: &[u8], status: u16) -> Value {
        let r = self.post(body).await;
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.content_type(), "application/json");
        r.json()
    }
    /// What must not change when a submission is refused: the log head and every stored record.
    async fn state(&self) -> (Value, Vec<(Vec<u8>, Vec<u8>)>) {
        let log = self.get("/api/v1/log").await.json();
        let l = self.ledger.clone();
        let snap = tokio::task::spawn_blocking(move || snapshot(&l))
            .await
            .unwrap();
        (log, snap)
    }
    async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
        drop(self.client);
        api::close_ledger(self.ledger, Duration::from_secs(5))
            .await
            .unwrap();
        self.dir
    }
}

fn party_json(name: &str, role: &str, status: &str) -> String {
    format!(
        r#"{{"name":"{name}","role":"{role}","display_name":"Party {name}","country":"DE","key":"{}","status":"{status}"}}"#,
        key(name).public().to_vkey()
    )
}

fn party_env(name: &str, role: &str, status: &str) -> Vec<u8> {
    sign(
        PayloadType::Party,
        &party_json(name, role, status),
        &operator(),
    )
}

fn cert_env(g: &str, serial: &str, supersedes: Option<&str>, signer: &str) -> Vec<u8> {
    sign(
        PayloadType::Certificate,
        &certificate_json(g, serial, supersedes),
        &key(signer),
    )
}

fn event_env(id: &str, event: &str, signer: &str) -> Vec<u8> {
    let json = format!(
        r#"{{"certificate_id":"{id}","event":"{event}","time":"2026-11-25T09:30:00+08:00","location":{{"country":"CN","place":"Shanghai Yangshan port"}},"reference":"declaration 2231-2026-0001","note":""}}"#
    );
    sign(PayloadType::Event, &json, &key(signer))
}

fn revocation_env(id: &str, signer: &PrivateKey) -> Vec<u8> {
    let json = format!(r#"{{"certificate_id":"{id}","reason":"recall","note":"bad batch"}}"#);
    sign(PayloadType::Revocation, &json, signer)
}

fn hex32(v: &Value) -> Hash {
    let mut h = [0u8; 32];
    hex::decode_to_slice(v.as_str().unwrap(), &mut h).unwrap();
    h
}

fn hexes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(hex32).collect()
}

/// Checks an `inclusion_proof` + `checkpoint` pair of an answer for the entry at `index`.
fn check_proof(answer: &Value, leaf: &Hash, index: u64, log_key: &PublicKey) {
    let cp = Checkpoint::open(answer["checkpoint"].as_str().unwrap(), log_key).unwrap();
    let p = &answer["inclusion_proof"];
    assert_eq!(p["tree_size"], cp.size);
    assert_eq!(hex32(&p["root"]), cp.root);
    merkle::verify_inclusion(leaf, index, cp.size, &hexes(&p["proof"]), &cp.root).unwrap();
}

const MULTIPART: &str = "multipart/form-data; boundary=XyZzY";

/// A multipart/form-data body with one file field `photo`.
fn multipart(file: &[u8]) -> Vec<u8> {
    let mut b = b"--XyZzY\r\ncontent-disposition: form-data; name=\"photo\"; filename=\"label.png\"\r\ncontent-type: image/png\r\n\r\n".to_vec();
    b.extend_from_slice(file);
    b.extend_from_slice(b"\r\n--XyZzY--\r\n");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_lifecycle_register_issue_events_revoke_reissue() {
    let s = start(ServeOptions::default()).await;
    let log = s.get("/api/v1/log").await;
    assert_eq!(log.status, 200);
    let log = log.json();
    assert_eq!(log["origin"], "reman-ledger.example/log");
    assert_eq!(log["tree_size"], 1);
    assert_eq!(log["log_key"], log_key().public().to_vkey());
    let lk = PublicKey::parse(log["log_key"].as_str().unwrap()).unwrap();

    // Register a remanufacturer and an importer (operator-signed).
    let env = party_env(SUZHOU, "remanufacturer", "active");
    let r = s.post(&env).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.headers["location"], "/api/v1/entries/1");
    let reg = r.json();
    assert_eq!(reg["index"], 1);
    assert!(reg.get("certificate_id").is_none() && reg.get("seal").is_none());
    check_proof(&reg, &hex32(&reg["leaf_hash"]), 1, &lk);
    // The same envelope again: 200 and the same entry, nothing new.
    let again = s.post_ok(&env, 200).await;
    assert_eq!(again["index"], 1);
    assert_eq!(again["leaf_hash"], reg["leaf_hash"]);
    assert_eq!(again["integrated_time"], reg["integrated_time"]);
    s.post_ok(&party_env(HAMBURG, "importer", "active"), 201)
        .await;

    // Issue a certificate.
    let g = gtin(4242);
    let serial = "RM-2026/0001";
    let issued = s.post_ok(&cert_env(&g, serial, None, SUZHOU), 201).await;
    let id = issued["certificate_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(issued["index"], 3);
    let seal = Seal::from_base64url(issued["seal"].as_str().unwrap()).unwrap();
    seal.verify(&lk, "reman-ledger.example/log", &g, serial)
        .unwrap();
    assert_eq!(
        issued["qr_url"],
        format!(
            "https://ledger.example/01/{g}/21/RM-2026%2F0001?seal={}",
            issued["seal"].as_str().unwrap()
        )
    );
    check_proof(&issued, &hex32(&issued["leaf_hash"]), 3, &lk);

    // The entry: exact bytes, leaf hash, parsed form.
    let e = s.get("/api/v1/entries/3").await;
    assert_eq!(e.status, 200);
    assert!(
        e.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let e = e.json();
    let leaf = base64::engine::general_purpose::STANDARD
        .decode(e["leaf"].as_str().unwrap())
        .unwrap();
    assert_eq!(merkle::leaf_hash(&leaf), hex32(&e["leaf_hash"]));
    assert_eq!(e["leaf_hash"], issued["leaf_hash"]);
    assert_eq!(e["index"], 3);
    assert_eq!(e["entry"], serde_json::from_slice::<Value>(&leaf).unwrap());
    assert_eq!(e["entry"]["integrated_time"], issued["integrated_time"]);

    // GET the certificate: valid, and its proof verifies against its checkpoint.
    let c = s.get(&format!("/api/v1/certificates/{id}")).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.content_type(), "application/json");
    let c = c.json();
    assert_eq!(c["certificate_id"], id);
    assert_eq!(c["status"], "valid");
    assert_eq!(c["index"], 3);
    assert_eq!(c["seal"], issued["seal"]);
    assert_eq!(c["qr_url"], issued["qr_url"]);
    assert_eq!(c["certificate"]["product"]["gtin"], g);
    assert_eq!(c["certificate"]["product"]["serial"], serial);
    assert_eq!(c["issuer"]["name"], SUZHOU);
    assert_eq!(c["events"], json!([]));
    assert!(c["revocation"].is_null());
    check_proof(&c, &hex32(&e["leaf_hash"]), 3, &lk);

    // The QR link resolves: the verdict is valid and the seal checks out.
    let link = issued["qr_url"]
        .as_str()
        .unwrap()
        .strip_prefix("https://ledger.example")
        .unwrap()
        .to_owned();
    let res = s
        .req("GET", &link, &[("accept", "application/json")], b"")
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let res = res.json();
    assert_eq!(res["verdict"], "valid");
    assert_eq!(res["seal_check"], json!({"result": "valid"}));
    assert_eq!(res["certificate_id"], id);
    assert_eq!(res["proof_verified"], true);
    assert_eq!(res["certificates"][0]["certificate_id"], id);
    // Its `certificates` are the product JSON itself, beside the seal's verdict.
    let product_path = link
        .split('?')
        .next()
        .unwrap()
        .replacen("/01/", "/api/v1/products/", 1)
        .replacen("/21/", "/", 1);
    let product = s.get(&product_path).await;
    assert_eq!(product.status, 200, "{product_path}");
    assert_eq!(res["certificates"], product.json());

    // Scan: the served QR image decodes to the same link, which leads to the status page.
    let png = s.get(&format!("/api/v1/certificates/{id}/qr.png")).await;
    assert_eq!(png.status, 200);
    assert_eq!(png.content_type(), "image/png");
    let codes = qr::decode_image(&png.body).unwrap();
    assert_eq!(codes, vec![issued["qr_url"].as_str().unwrap().to_owned()]);
    let scanned = s
        .req(
            "POST",
            "/scan",
            &[("content-type", MULTIPART)],
            &multipart(&png.body),
        )
        .await;
    assert_eq!(scanned.status, 303, "{}", scanned.text());
    assert_eq!(scanned.headers["location"].to_str().unwrap(), link);
    let page = s.get(&link).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type(), "text/html; charset=utf-8");
    assert!(
        page.text().contains("banner verdict-valid"),
        "{}",
        page.text()
    );
    let svg = s
        .get(&format!("/api/v1/certificates/{id}/qr.svg?size=400"))
        .await;
    assert_eq!(svg.status, 200);
    assert_eq!(svg.content_type(), "image/svg+xml");
    assert!(svg.text().contains("<svg"));

    // Events: a shipment by the issuer, a receipt by the importer.
    s.post_ok(&event_env(&id, "shipped", SUZHOU), 201).await;
    let ev = s.post_ok(&event_env(&id, "received", HAMBURG), 201).await;
    assert_eq!(ev["index"], 5);
    let c = s.get(&format!("/api/v1/certificates/{id}")).await.json();
    let events = c["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event"]["event"], "shipped");
    assert_eq!(events[1]["event"]["event"], "received");
    assert_eq!(events[1]["index"], 5);
    assert!(events[1]["signer"].as_str().unwrap().starts_with(HAMBURG));
    check_proof(&c, &hex32(&e["leaf_hash"]), 3, &lk);

    // Revoke (by the issuer): the new status everywhere.
    let rv = s.post_ok(&revocation_env(&id, &key(SUZHOU)), 201).await;
    let c = s.get(&format!("/api/v1/certificates/{id}")).await.json();
    assert_eq!(c["status"], "revoked");
    assert_eq!(c["revocation"]["index"], rv["index"]);
    assert_eq!(c["revocation"]["revocation"]["reason"], "recall");
    let res = s
        .req("GET", &link, &[("accept", "application/json")], b"")
        .await
        .json();
    assert_eq!(res["verdict"], "revoked");
    assert_eq!(res["seal_check"]["result"], "valid");
    let page = s.get(&link).await;
    assert!(page.text().contains("banner verdict-revoked"));
    let product_path = format!("/api/v1/products/{g}/RM-2026%2F0001");
    let p = s.get(&product_path).await;
    assert_eq!(p.status, 200);
    let p = p.json();
    assert_eq!(p.as_array().unwrap().len(), 1);
    assert_eq!(p[0]["status"], "revoked");
    assert_eq!(p[0]["certificate"]["product"]["gtin"], g);
    assert_eq!(p[0]["certificate"]["product"]["serial"], serial);
    // The serial's `/` may also come unencoded.
    let p2 = s.get(&format!("/api/v1/products/{g}/{serial}")).await;
    assert_eq!(p2.status, 200, "{}", p2.text());
    assert_eq!(p2.json()[0]["certificate_id"], id);

    // Certified again after the revocation: the product lists both, newest first.
    let body = certificate_json(&g, serial, None)
        .replace("\"warranty_months\":24", "\"warranty_months\":36");
    let second = s
        .post_ok(&sign(PayloadType::Certificate, &body, &key(SUZHOU)), 201)
        .await;
    let p = s.get(&product_path).await.json();
    let certs = p.as_array().unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0]["certificate_id"], second["certificate_id"]);
    assert_eq!(certs[0]["status"], "valid");
    assert_eq!(certs[1]["certificate_id"], id);
    assert_eq!(certs[1]["status"], "revoked");
    assert_eq!(certs[1]["events"].as_array().unwrap().len(), 2);

    // The old label's seal still names the revoked certificate; without a seal the verdict is
    // about the newest certificate.
    let res = s
        .req("GET", &link, &[("accept", "application/json")], b"")
        .await
        .json();
    assert_eq!(
        (res["verdict"].as_str(), res["certificate_id"].as_str()),
        (Some("revoked"), Some(id.as_str()))
    );
    let bare = link.split('?').next().unwrap();
    let res = s
        .req("GET", bare, &[("accept", "application/json")], b"")
        .await
        .json();
    assert_eq!(res["verdict"], "valid");
    assert_eq!(res["seal_check"], json!({"result": "not_given"}));
    assert_eq!(res["certificate_id"], second["certificate_id"]);

    // The log, the checkpoint and the proofs agree with each other.
    let log = s.get("/api/v1/log").await.json();
    assert_eq!(log["tree_size"], 8);
    for path in ["/checkpoint", "/api/v1/checkpoint"] {
        let cp = s.get(path).await;
        assert_eq!(cp.status, 200);
        assert_eq!(cp.content_type(), "text/plain; charset=utf-8");
        let opened = Checkpoint::open(&cp.text(), &lk).unwrap();
        assert_eq!(opened.size, 8);
        assert_eq!(hex::encode(opened.root), log["root"].as_str().unwrap());
    }
    let inc = s.get("/api/v1/proof/inclusion?index=3&tree_size=8").await;
    assert_eq!(inc.status, 200);
    let inc = inc.json();
    assert_eq!(
        (inc["index"].clone(), inc["tree_size"].clone()),
        (json!(3), json!(8))
    );
    assert_eq!(inc["leaf_hash"], e["leaf_hash"]);
    merkle::verify_inclusion(
        &hex32(&inc["leaf_hash"]),
        3,
        8,
        &hexes(&inc["proof"]),
        &hex32(&log["root"]),
    )
    .unwrap();
    // Consistency from the checkpoint the certificate's receipt carried to the current one.
    let old = Checkpoint::open(issued["checkpoint"].as_str().unwrap(), &lk).unwrap();
    let cons = s
        .get(&format!(
            "/api/v1/proof/consistency?first={}&second=8",
            old.size
        ))
        .await;
    assert_eq!(cons.status, 200);
    let cons = cons.json();
    assert_eq!(cons["first"], old.size);
    assert_eq!(cons["second"], 8);
    merkle::verify_consistency(
        old.size,
        8,
        &old.root,
        &hex32(&log["root"]),
        &hexes(&cons["proof"]),
    )
    .unwrap();

    // The trust list.
    let parties = s.get("/api/v1/parties").await;
    assert_eq!(parties.status, 200);
    let parties = parties.json();
    let names: Vec<&str> = parties
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in ["operator.reman-ledger.example", SUZHOU, HAMBURG] {
        assert!(names.contains(&n), "{names:?}");
    }
    let p = s.get(&format!("/api/v1/parties/{SUZHOU}")).await;
    assert_eq!(p.status, 200);
    let p = p.json();
    assert_eq!(p["role"], "remanufacturer");
    assert_eq!(p["key"], key(SUZHOU).public().to_vkey());
    assert_eq!(p["index"], 1);

    let h = s.get("/healthz").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json(), json!({"status": "ok", "tree_size": 8}));

    // The metrics saw all of it.
    let m = s.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.content_type().starts_with("text/plain; version=0.0.4"));
    let m = m.text();
    for line in [
        "reman_ledger_entries_appended_total{type=\"party\"} 2",
        "reman_ledger_entries_appended_total{type=\"certificate\"} 2",
        "reman_ledger_entries_appended_total{type=\"event\"} 2",
        "reman_ledger_entries_appended_total{type=\"revocation\"} 1",
        "reman_ledger_tree_size 8",
        "reman_ledger_append_latency_seconds_count{} 7",
        // The sequencer counts every entry it appended, the genesis entry included.
        "reman_ledger_batch_size_sum{} 8",
        "reman_ledger_http_request_duration_seconds_count{route=\"/api/v1/entries\",status_class=\"2xx\"} 8",
        "reman_ledger_http_request_duration_seconds_count{route=\"/api/v1/certificates/{id}\",status_class=\"2xx\"} 3",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    // Each group commit's write and flush are timed: one observation of each per batch.
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("missing {name} in\n{m}"))
    };
    let batches = value("reman_ledger_batch_size_count{}");
    assert!(batches >= 1.0);
    for phase in ["write", "flush"] {
        let count = format!("reman_ledger_commit_seconds_count{{phase=\"{phase}\"}}");
        let inf = format!("reman_ledger_commit_seconds_bucket{{phase=\"{phase}\",le=\"+Inf\"}}");
        assert_eq!(value(&count), batches, "{phase}");
        assert_eq!(value(&inf), batches, "{phase}");
        assert!(
            value(&format!(
                "reman_ledger_commit_seconds_sum{{phase=\"{phase}\"}}"
            )) > 0.0
        );
    }

    // Graceful shutdown flushes: the ledger reopens with everything.
    let dir = s.stop().await;
    let path = dir.path().to_owned();
    let size = tokio::task::spawn_blocking(move || {
        let l = Ledger::open(&path, log_key(), LedgerConfig::default()).unwrap();
        l.head().size
    })
    .await
    .unwrap();
    assert_eq!(size, 8);
}

/// A ledger with parties and certificates to be refused against: a valid certificate `valid`
/// (of `gtin(1)`/`U-1`, issued by Suzhou) and a revoked one.
async fn populated() -> (Server, String, String) {
    let s = start(ServeOptions::default()).await;
    s.post_ok(&party_env(SUZHOU, "remanufacturer", "active"), 201)
        .await;
    s.post_ok(&party_env(RHEIN, "remanufacturer", "suspended"), 201)
        .await;
    s.post_ok(&party_env(HAMBURG, "importer", "active"), 201)
        .await;
    s.post_ok(&party_env(CUSTOMS, "customs", "active"), 201)
        .await;
    let valid = s
        .post_ok(&cert_env(&gtin(1), "U-1", None, SUZHOU), 201)
        .await;
    let revoked = s
        .post_ok(&cert_env(&gtin(2), "U-2", None, SUZHOU), 201)
        .await;
    let revoked = revoked["certificate_id"].as_str().unwrap().to_owned();
    s.post_ok(&revocation_env(&revoked, &key(SUZHOU)), 201)
        .await;
    (
        s,
        valid["certificate_id"].as_str().unwrap().to_owned(),
        revoked,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_problem_with_its_status_and_changes_nothing() {
    let (s, valid, revoked) = populated().await;
    let good = cert_env(&gtin(3), "U-3", None, SUZHOU);
    let mut bad_sig: Value = serde_json::from_slice(&good).unwrap();
    let sig = bad_sig["signatures"][0]["sig"].as_str().unwrap().to_owned();
    // Another first character: still base64 of 64 bytes, but another signature.
    let flipped = match sig.strip_prefix('A') {
        Some(rest) => format!("B{rest}"),
        None => format!("A{}", sig.get(1..).unwrap()),
    };
    bad_sig["signatures"][0]["sig"] = flipped.into();
    let stranger = PrivateKey::from_seed("stranger.example", &[7u8; 32]).unwrap();
    let failing = certificate_json(&gtin(4), "U-4", None)
        .replace("\"result\":\"pass\"", "\"result\":\"fail\"");
    // Another certificate (another payload) for the unit that already has a valid one.
    let other_for_valid_unit = certificate_json(&gtin(1), "U-1", None)
        .replace("\"warranty_months\":24", "\"warranty_months\":12");
    let unknown_field = certificate_json(&gtin(5), "U-5", None)
        .replace("\"issued\"", "\"colour\":\"red\",\"issued\"");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not JSON", b"this is not an envelope".to_vec(), 400, "malformed"),
        ("empty body", Vec::new(), 400, "malformed"),
        ("no signature", br#"{"payloadType":"application/vnd.reman-ledger.certificate.v1+json","payload":"e30=","signatures":[]}"#.to_vec(), 400, "malformed"),
        ("bad signature", serde_json::to_vec(&bad_sig).unwrap(), 401, "unauthorized"),
        ("unknown signer", sign(PayloadType::Certificate, &certificate_json(&gtin(6), "U-6", None), &stranger), 401, "unauthorized"),
        ("customs may not certify", cert_env(&gtin(7), "U-7", None, CUSTOMS), 403, "forbidden"),
        ("suspended party", cert_env(&gtin(8), "U-8", None, RHEIN), 403, "forbidden"),
        ("importer may not register parties", sign(PayloadType::Party, &party_json(SUZHOU, "operator", "active"), &key(HAMBURG)), 403, "forbidden"),
        ("event on an unknown certificate", event_env("00112233445566778899aabbccddeeff", "received", HAMBURG), 404, "not_found"),
        ("second valid certificate for a unit", sign(PayloadType::Certificate, &other_for_valid_unit, &key(SUZHOU)), 409, "conflict"),
        ("event on a revoked certificate", event_env(&revoked, "received", HAMBURG), 409, "conflict"),
        ("second revocation", revocation_env(&revoked, &operator()), 409, "conflict"),
        ("a failed test", sign(PayloadType::Certificate, &failing, &key(SUZHOU)), 422, "invalid"),
        ("an unknown field", sign(PayloadType::Certificate, &unknown_field, &key(SUZHOU)), 422, "invalid"),
        ("over 64 KiB", vec![b' '; 64 * 1024 + 1], 413, "too_large"),
    ];
    let _ = valid;
    for (what, body, status, kind) in cases {
        let before = s.state().await;
        let r = s.post(&body).await;
        let p = r.problem(status);
        assert_eq!(
            p["type"],
            format!("https://reman-ledger.example/problems/{kind}"),
            "{what}: {p}"
        );
        assert_eq!(s.state().await, before, "{what} changed the ledger");
    }
    // The role is not allowed: the detail says so.
    let p = s
        .post(&cert_env(&gtin(9), "U-9", None, CUSTOMS))
        .await
        .problem(403);
    assert!(p["detail"].as_str().unwrap().contains("customs"), "{p}");
    // Refusals are counted by reason.
    let m = s.get("/metrics").await.text();
    for line in [
        "reman_ledger_refusals_total{reason=\"malformed\"} 3",
        "reman_ledger_refusals_total{reason=\"unauthorized\"} 2",
        "reman_ledger_refusals_total{reason=\"forbidden\"} 4",
        "reman_ledger_refusals_total{reason=\"not_found\"} 1",
        "reman_ledger_refusals_total{reason=\"conflict\"} 3",
        "reman_ledger_refusals_total{reason=\"invalid\"} 2",
        "reman_ledger_refusals_total{reason=\"too_large\"} 1",
        "reman_ledger_http_request_duration_seconds_count{route=\"/api/v1/entries\",status_class=\"4xx\"} 16",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_errors_are_problems() {
    let (s, valid, _) = populated().await;
    let before = s.state().await;
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("GET", "/api/v1/certificates/xyz", 400, "malformed"),
        (
            "GET",
            "/api/v1/certificates/00112233445566778899AABBCCDDEEFF",
            400,
            "malformed",
        ),
        (
            "GET",
            "/api/v1/certificates/00112233445566778899aabbccddeeff",
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/certificates/00112233445566778899aabbccddeeff/nope",
            404,
            "no_route",
        ),
        ("GET", "/api/v1/entries/-1", 400, "malformed"),
        ("GET", "/api/v1/entries/1e3", 400, "malformed"),
        (
            "GET",
            "/api/v1/entries/99999999999999999999999",
            400,
            "malformed",
        ),
        ("GET", "/api/v1/entries/9", 404, "not_found"),
        (
            "GET",
            "/api/v1/products/09506000000015/NOPE",
            404,
            "not_found",
        ),
        ("GET", "/api/v1/parties/nobody.example", 404, "not_found"),
        ("GET", "/api/v1/proof/inclusion", 400, "malformed"),
        ("GET", "/api/v1/proof/inclusion?index=1", 400, "malformed"),
        (
            "GET",
            "/api/v1/proof/inclusion?index=x&tree_size=2",
            400,
            "malformed",
        ),
        (
            "GET",
            "/api/v1/proof/inclusion?index=5&tree_size=2",
            400,
            "malformed",
        ),
        (
            "GET",
            "/api/v1/proof/inclusion?index=1&tree_size=1000",
            404,
            "not_found",
        ),
        ("GET", "/api/v1/proof/consistency?first=2", 400, "malformed"),
        (
            "GET",
            "/api/v1/proof/consistency?first=5&second=2",
            400,
            "malformed",
        ),
        (
            "GET",
            "/api/v1/proof/consistency?first=1&second=1000",
            404,
            "not_found",
        ),
        ("GET", "/no/such/route", 404, "no_route"),
        (
            "GET",
            "/api/v1/certificates/00112233445566778899aabbccddeeff/qr.png",
            404,
            "not_found",
        ),
        ("GET", "/api/v1/certificates/nope/qr.svg", 400, "malformed"),
        (
            "GET",
            "/api/v1/certificates/{valid}/qr.png?size=10",
            400,
            "malformed",
        ),
        (
            "GET",
            "/api/v1/certificates/{valid}/qr.png?size=99999",
            400,
            "malformed",
        ),
        (
            "GET",
            "/api/v1/certificates/{valid}/qr.svg?size=big",
            400,
            "malformed",
        ),
        ("DELETE", "/api/v1/log", 405, "method_not_allowed"),
        ("GET", "/api/v1/entries", 405, "method_not_allowed"),
        ("PUT", "/api/v1/entries", 405, "method_not_allowed"),
    ];
    for (method, path, status, kind) in cases {
        let path = &path.replace("{valid}", &valid);
        let r = s.req(method, path, &[], b"").await;
        let p = r.problem(status);
        assert_eq!(
            p["type"],
            format!("https://reman-ledger.example/problems/{kind}"),
            "{method} {path}: {p}"
        );
        if status == 405 {
            assert!(r.headers.contains_key("allow"), "{path}");
        }
    }
    let r = s.get("/api/v1/entries").await;
    assert!(r.headers["allow"].to_str().unwrap().contains("POST"));
    let _ = valid;
    assert_eq!(s.state().await, before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_parameter_given_twice_is_refused_not_guessed() {
    let (s, valid, _) = populated().await;
    let before = s.state().await;
    for (path, name) in [
        (
            "/api/v1/proof/inclusion?index=1&tree_size=8&index=2",
            "index",
        ),
        (
            "/api/v1/proof/inclusion?index=1&tree_size=8&tree_size=8",
            "tree_size",
        ),
        (
            "/api/v1/proof/consistency?first=2&first=3&second=8",
            "first",
        ),
        (
            &format!("/api/v1/certificates/{valid}/qr.png?size=300&size=600"),
            "size",
        ),
        (
            &format!("/api/v1/certificates/{valid}/qr.svg?size=300&size=300"),
            "size",
        ),
    ] {
        let p = s.get(path).await.problem(400);
        assert_eq!(
            p["type"], "https://reman-ledger.example/problems/malformed",
            "{path}: {p}"
        );
        assert_eq!(
            p["detail"],
            format!("the query parameter {name} is given more than once: give it once"),
            "{path}"
        );
    }
    // Given once, the same parameters are answered.
    assert_eq!(
        s.get("/api/v1/proof/inclusion?index=1&tree_size=8")
            .await
            .status,
        200
    );
    assert_eq!(
        s.get(&format!("/api/v1/certificates/{valid}/qr.png?size=300"))
            .await
            .status,
        200
    );
    assert_eq!(s.state().await, before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_served_and_in_the_openapi_document() {
    let (s, valid, _) = populated().await;
    let qr_png = s
        .get(&format!("/api/v1/certificates/{valid}/qr.png"))
        .await
        .body;
    let r = s.get("/api/v1/openapi.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "application/json");
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"));
    let paths = doc["paths"].as_object().unwrap();
    let listed: Vec<_> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(api::registered_routes(), listed);
    let mut documented = 0;
    for (p, ops) in paths {
        documented += ops.as_object().unwrap().len();
        assert!(
            ROUTES.iter().any(|r| api::openapi_path(r.path) == *p),
            "{p} documented but not a route"
        );
    }
    assert_eq!(documented, ROUTES.len());
    for route in ROUTES {
        assert!(
            paths[&api::openapi_path(route.path)][route.method.to_ascii_lowercase()].is_object(),
            "{} {} is not documented",
            route.method,
            route.path
        );
        // Each route answers from its own handler (not the fallback).
        let path = route
            .path
            .replace("{index}", "1")
            .replace("{id}", &valid)
            .replace("{gtin}", &gtin(1))
            .replace("{*serial}", "U-1")
            .replace("{*name}", SUZHOU)
            .replace("{*path}", "0/000.p/1");
        let path = match route.path {
            "/api/v1/proof/inclusion" => format!("{path}?index=1&tree_size=2"),
            "/api/v1/proof/consistency" => format!("{path}?first=1&second=2"),
            "/lookup" => format!("{path}?id={valid}"),
            "/seals/{*path}" => "/seals/000.p/1".into(),
            _ => path,
        };
        let (headers, body) = match route.path {
            "/api/v1/entries" => (vec![], party_env(SUZHOU, "remanufacturer", "active")),
            "/scan" => (vec![("content-type", MULTIPART)], multipart(&qr_png)),
            _ => (vec![], Vec::new()),
        };
        let r = s.req(route.method, &path, &headers, &body).await;
        assert!(
            matches!(r.status, 200 | 201 | 303),
            "{} {path}: {} {}",
            route.method,
            r.status,
            r.text()
        );
        // HEAD works on every GET route.
        if route.method == "GET" {
            let h = s.req("HEAD", &path, &[], b"").await;
            assert_eq!(h.status, r.status, "HEAD {path}");
            assert!(h.body.is_empty());
        }
    }
    s.stop().await;
}

async fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8], pause: Duration) -> String {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(body).await.unwrap();
    tokio::time::sleep(pause).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn raw_problem(resp: &str, status: u16, kind: &str) {
    assert!(resp.starts_with(&format!("HTTP/1.1 {status} ")), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{resp}"
    );
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let p: Value = serde_json::from_str(body).unwrap();
    assert_eq!(p["status"], status);
    assert_eq!(
        p["type"],
        format!("https://reman-ledger.example/problems/{kind}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_senders_and_oversized_bodies_are_cut_off() {
    let s = start(ServeOptions {
        body_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    })
    .await;
    let before = s.state().await;
    // A body that never completes: 408 after the body deadline.
    let head = "POST /api/v1/entries HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
    let started = std::time::Instant::now();
    let resp = raw(s.addr, head, b"{\"payloadType\":", Duration::ZERO).await;
    raw_problem(&resp, 408, "body_timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A declared length over the limit: 413 at once, without reading the body.
    let head = "POST /api/v1/entries HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 70000\r\n\r\n";
    raw_problem(
        &raw(s.addr, head, b"", Duration::ZERO).await,
        413,
        "too_large",
    );
    // A chunked body that grows over the limit: 413 too.
    let head = "POST /api/v1/entries HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n";
    let mut body = Vec::new();
    for _ in 0..3 {
        body.extend_from_slice(format!("{:x}\r\n", 30000).as_bytes());
        body.extend(std::iter::repeat_n(b' ', 30000));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    raw_problem(
        &raw(s.addr, head, &body, Duration::ZERO).await,
        413,
        "too_large",
    );
    assert_eq!(s.state().await, before);
    let m = s.get("/metrics").await.text();
    assert!(
        m.contains("reman_ledger_refusals_total{reason=\"body_timeout\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("reman_ledger_refusals_total{reason=\"too_large\"} 2\n"),
        "{m}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_request_timeout_is_a_503_problem() {
    let s = start(ServeOptions {
        request_timeout: Duration::from_millis(200),
        body_timeout: Duration::from_secs(5),
        ..ServeOptions::default()
    })
    .await;
    let head = "POST /api/v1/entries HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 1000\r\n\r\n";
    let resp = raw(s.addr, head, b"{", Duration::ZERO).await;
    raw_problem(&resp, 503, "timeout");
    assert!(
        resp.to_ascii_lowercase().contains("retry-after: 1"),
        "{resp}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_are_all_logged_and_batched() {
    let s = Arc::new(start(ServeOptions::default()).await);
    s.post_ok(&party_env(SUZHOU, "remanufacturer", "active"), 201)
        .await;
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.post_ok(&cert_env(&gtin(100 + i), "C-1", None, SUZHOU), 201)
                .await["index"]
                .as_u64()
                .unwrap()
        }));
    }
    let mut indexes = Vec::new();
    for t in tasks {
        indexes.push(t.await.unwrap());
    }
    indexes.sort();
    assert_eq!(indexes, (2..42).collect::<Vec<_>>());
    let m = s.get("/metrics").await.text();
    assert!(m.contains("reman_ledger_entries_appended_total{type=\"certificate\"} 40\n"));
    // Every entry the sequencer appended (genesis included) is in some batch.
    assert!(m.contains("reman_ledger_batch_size_sum{} 42\n"), "{m}");
    assert_eq!(s.get("/healthz").await.json()["tree_size"], 42);
    let s = Arc::try_unwrap(s).ok().unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_checks_seals_and_negotiates_html_or_json() {
    let s = start(ServeOptions::default()).await;
    s.post_ok(&party_env(SUZHOU, "remanufacturer", "active"), 201)
        .await;
    let a = s
        .post_ok(&cert_env(&gtin(11), "A-1", None, SUZHOU), 201)
        .await;
    let b = s
        .post_ok(&cert_env(&gtin(12), "B-1", None, SUZHOU), 201)
        .await;
    let json_accept = [("accept", "application/json")];
    let a_path = format!("/01/{}/21/A-1", gtin(11));
    let seal_a = a["seal"].as_str().unwrap();
    let seal_b = b["seal"].as_str().unwrap();
    // B's genuine seal on A's label: a seal for another product.
    let r = s
        .req("GET", &format!("{a_path}?seal={seal_b}"), &json_accept, b"")
        .await
        .json();
    assert_eq!(r["verdict"], "seal_invalid");
    assert_eq!(
        r["seal_check"],
        json!({"result": "other_product", "certificate_id": b["certificate_id"]})
    );
    // A tampered seal (one character of the signature changed).
    let mut t = seal_a.to_owned();
    // Character 60 lies inside the signature (bytes 37..101).
    let c = if &t[60..61] == "A" { "B" } else { "A" };
    t.replace_range(60..61, c);
    let r = s
        .req("GET", &format!("{a_path}?seal={t}"), &json_accept, b"")
        .await
        .json();
    assert_eq!(r["verdict"], "seal_invalid");
    assert_eq!(r["seal_check"]["result"], "invalid");
    assert!(
        r["seal_check"]["detail"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{r}"
    );
    // Not a seal at all.
    let r = s
        .req("GET", &format!("{a_path}?seal=!!"), &json_accept, b"")
        .await
        .json();
    assert_eq!(r["seal_check"]["result"], "invalid");
    // The right seal.
    let r = s
        .req("GET", &format!("{a_path}?seal={seal_a}"), &json_accept, b"")
        .await
        .json();
    assert_eq!(r["verdict"], "valid");
    // An unknown unit: 404, a problem for JSON and a page for browsers.
    let unknown = format!("/01/{}/21/NOPE", gtin(13));
    s.req("GET", &unknown, &json_accept, b"").await.problem(404);
    let r = s
        .req(
            "GET",
            &unknown,
            &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
            b"",
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.content_type(), "text/html; charset=utf-8");
    assert!(r.text().contains("banner verdict-unknown"));
    let r = s
        .req(
            "GET",
            &format!("{a_path}?seal={seal_b}"),
            &[("accept", "text/html")],
            b"",
        )
        .await;
    assert!(r.text().contains("banner verdict-seal-invalid"));
    let r = s
        .req(
            "GET",
            &format!("{a_path}?seal={seal_a}"),
            &[("accept", "text/html")],
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "text/html; charset=utf-8");
    // Two seals, the genuine one first or last: refused, not judged by either (which one
    // counts must not depend on the order of the parameters).
    for two in [
        format!("{a_path}?seal={seal_a}&seal={seal_b}"),
        format!("{a_path}?seal={seal_b}&seal={seal_a}"),
        format!("{a_path}?seal={seal_a}&seal={seal_a}"),
    ] {
        let p = s.req("GET", &two, &json_accept, b"").await.problem(400);
        assert!(
            p["detail"].as_str().unwrap().contains("more than one seal"),
            "{p}"
        );
        let r = s.req("GET", &two, &[("accept", "text/html")], b"").await;
        assert_eq!(r.status, 400, "{two}");
        assert!(r.text().contains("more than one seal"), "{}", r.text());
        assert!(!r.text().contains("banner verdict-valid"), "{}", r.text());
    }
    s.stop().await;
}

/// Two different requests never share a cached answer: a crafted request answered "SEAL
/// INVALID" must not be what the genuine label's link shows next (found in review: the keys
/// were the parts side by side, and a serial may hold `/` and `?`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_resolver_request_does_not_change_what_a_genuine_label_shows() {
    let s = start(ServeOptions::default()).await;
    s.post_ok(&party_env(SUZHOU, "remanufacturer", "active"), 201)
        .await;
    let g = gtin(4242);
    let html_accept = [("accept", "text/html")];
    for serial in ["RM/2025/1", "RM?1"] {
        let issued = s.post_ok(&cert_env(&g, serial, None, SUZHOU), 201).await;
        let seal = issued["seal"].as_str().unwrap();
        let link = issued["qr_url"]
            .as_str()
            .unwrap()
            .strip_prefix("https://ledger.example")
            .unwrap()
            .to_owned();
        // Each crafted request, asked first, would have been cached under the genuine
        // link's key: GTIN "<g>/RM" with serial "2025/1", or serial "RM" with seal "1?<seal>".
        let crafted = if serial.contains('/') {
            format!("/01/{g}%2FRM/21/2025%2F1?seal={seal}")
        } else {
            format!("/01/{g}/21/RM?seal=1%3F{seal}")
        };
        let c = s.req("GET", &crafted, &html_accept, b"").await;
        assert_ne!(c.status, 200, "{crafted}: {}", c.text());
        let genuine = s.req("GET", &link, &html_accept, b"").await;
        assert_eq!(genuine.status, 200, "{link}: {}", genuine.text());
        assert!(genuine.text().contains("banner verdict-valid"), "{link}");
    }
    s.stop().await;
}

/// GS1 Digital Link allows a GTIN-8, -12 or -13 in `/01/`: the resolver answers with a
/// permanent redirect to the GTIN-14 form, seal and serial kept, which then verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_link_with_a_shorter_gtin_leads_to_its_gtin14_form() {
    let s = start(ServeOptions::default()).await;
    s.post_ok(&party_env(SUZHOU, "remanufacturer", "active"), 201)
        .await;
    let g = gtin(4242);
    assert!(g.starts_with('0'));
    let issued = s.post_ok(&cert_env(&g, "RM/7", None, SUZHOU), 201).await;
    let seal = issued["seal"].as_str().unwrap();
    let r = s
        .get(&format!("/01/{}/21/RM%2F7?seal={seal}", &g[1..]))
        .await;
    assert_eq!(r.status, 301, "{}", r.text());
    let location = r.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/01/{g}/21/RM%2F7?seal={seal}"));
    let page = s
        .req("GET", &location, &[("accept", "text/html")], b"")
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("banner verdict-valid"));
    // A seal that is no seal stays one parameter on the way.
    let r = s
        .get(&format!("/01/{}/21/RM%2F7?seal=a%26b", &g[1..]))
        .await;
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("/01/{g}/21/RM%2F7?seal=a%26b")
    );
    // Thirteen digits whose GTIN-14 form fails the check digit are malformed, not redirected.
    let mut bad = g[1..].to_owned();
    let last = if bad.ends_with('0') { "1" } else { "0" };
    bad.replace_range(12.., last);
    let json_accept = [("accept", "application/json")];
    s.req("GET", &format!("/01/{bad}/21/RM%2F7"), &json_accept, b"")
        .await
        .problem(400);
    s.stop().await;
}

/// A GTIN that is not a GTIN-14, or a serial outside GS1 AI 21, is malformed (400) on every
/// path that looks a unit up, and never reads another unit's record (found in review: the
/// unit key is GTIN and serial side by side, so "0950600004242" + "8RM-1" read
/// "09506000042428" + "RM-1").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_lookup_with_a_malformed_gtin_or_serial_is_refused() {
    let s = start(ServeOptions::default()).await;
    s.post_ok(&party_env(SUZHOU, "remanufacturer", "active"), 201)
        .await;
    let g = gtin(4242);
    s.post_ok(&cert_env(&g, "RM-1", None, SUZHOU), 201).await;
    assert_eq!(
        s.get(&format!("/api/v1/products/{g}/RM-1")).await.status,
        200
    );
    let (g13, last) = g.split_at(13);
    let mut bad_check = g.clone();
    bad_check.replace_range(13.., if last == "0" { "1" } else { "0" });
    let json_accept = [("accept", "application/json")];
    for (gtin, serial) in [
        (g13.to_owned(), format!("{last}RM-1")),
        (bad_check, "RM-1".to_owned()),
        (g.clone(), "RM 1".to_owned()),
        (g.clone(), "R".repeat(21)),
    ] {
        let enc = reman_ledger::seal::percent_encode(&serial);
        let p = s
            .get(&format!("/api/v1/products/{gtin}/{enc}"))
            .await
            .problem(400);
        assert!(p["detail"].as_str().unwrap().contains("GS1"), "{p}");
        let path = format!("/01/{gtin}/21/{enc}");
        s.req("GET", &path, &json_accept, b"").await.problem(400);
        let page = s.req("GET", &path, &[("accept", "text/html")], b"").await;
        assert_eq!(page.status, 400, "{path}");
        assert_eq!(page.content_type(), "text/html; charset=utf-8");
        assert!(page.text().contains("not a GS1 serial") || page.text().contains("GTIN-14"));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_lookup_and_scan_lead_to_the_status_page() {
    let (s, valid, _) = populated().await;
    let home = s.get("/").await;
    assert_eq!(home.status, 200);
    assert_eq!(home.content_type(), "text/html; charset=utf-8");
    let view = s.get(&format!("/api/v1/certificates/{valid}")).await.json();
    let seal = view["seal"].as_str().unwrap();
    let g = gtin(1);
    // By certificate ID (any case): to the status page with the seal.
    let r = s.get(&format!("/lookup?id={}", valid.to_uppercase())).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], format!("/01/{g}/21/U-1?seal={seal}"));
    // By GTIN (short form, left-padded) and serial (percent-encoded in the link).
    let short = g.trim_start_matches('0');
    let r = s.get(&format!("/lookup?gtin={short}&serial=A%2FB-1")).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], format!("/01/{g}/21/A%2FB-1"));
    // Mistakes come back as the home page with a message, not as JSON.
    for (q, status) in [
        ("gtin=09506000000019&serial=X", 400),
        ("gtin=&serial=", 400),
        ("id=xyz", 400),
        ("id=00112233445566778899aabbccddeeff", 404),
    ] {
        let r = s.get(&format!("/lookup?{q}")).await;
        assert_eq!(r.status, status, "{q}");
        assert_eq!(r.content_type(), "text/html; charset=utf-8", "{q}");
    }
    // Scan: not an image, no file, not a multipart form.
    let r = s
        .req(
            "POST",
            "/scan",
            &[("content-type", MULTIPART)],
            &multipart(b"hello"),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.content_type(), "text/html; charset=utf-8");
    let r = s
        .req(
            "POST",
            "/scan",
            &[("content-type", MULTIPART)],
            b"--XyZzY--\r\n",
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .req(
            "POST",
            "/scan",
            &[("content-type", "application/json")],
            b"{}",
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.content_type(), "text/html; charset=utf-8");
    // A QR code that is not a ledger link.
    let other = qr::png("https://example.com/hello", qr::DEFAULT_SIZE).unwrap();
    let r = s
        .req(
            "POST",
            "/scan",
            &[("content-type", MULTIPART)],
            &multipart(&other),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    s.stop().await;
}

/// What a browser sends when it follows a link (Firefox and Safari; Chrome adds image types
/// before `*/*;q=0.8`).
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// The resolver weighs the `Accept` field by RFC 9110 (found by fuzzing: it was matched as
/// text, so `text/html;q=0.1, application/json` got the page): a client that weighs JSON above
/// HTML gets JSON, a browser or a client without `Accept` the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_answers_json_only_when_it_weighs_more_than_html() {
    let (s, valid, _) = populated().await;
    let unit = format!("/01/{}/21/U-1", gtin(1));
    let unknown = format!("/01/{}/21/NOPE", gtin(13));
    for accept in [
        &[("accept", "text/html;q=0.1, application/json")][..],
        &[("accept", "application/json, text/html;q=0.9")],
        &[("accept", "application/problem+json")],
        &[
            ("accept", "text/html;q=0.1"),
            ("accept", "application/json"),
        ],
    ] {
        let r = s.req("GET", &unit, accept, b"").await;
        assert_eq!(r.status, 200, "{accept:?}: {}", r.text());
        assert_eq!(r.content_type(), "application/json", "{accept:?}");
        assert_eq!(r.json()["certificate_id"], valid.as_str(), "{accept:?}");
        let p = s.req("GET", &unknown, accept, b"").await.problem(404);
        assert!(
            p["detail"].as_str().unwrap().contains("no certificate"),
            "{p}"
        );
    }
    for accept in [
        &[("accept", BROWSER_ACCEPT)][..],
        &[("accept", "*/*")],
        &[],
        &[("accept", "application/json;q=0, text/html")],
        &[("accept", "application/json, text/html")],
        &[("accept", "application/json;q=2")],
    ] {
        let r = s.req("GET", &unit, accept, b"").await;
        assert_eq!(r.status, 200, "{accept:?}");
        assert_eq!(r.content_type(), "text/html; charset=utf-8", "{accept:?}");
        assert!(r.text().contains("banner verdict-valid"), "{accept:?}");
        let r = s.req("GET", &unknown, accept, b"").await;
        assert_eq!(r.status, 404, "{accept:?}");
        assert_eq!(r.content_type(), "text/html; charset=utf-8", "{accept:?}");
    }
    s.stop().await;
}

/// `/lookup` answers its mistakes as problems to a client that prefers JSON, with the status
/// of the page a browser gets (found by fuzzing: always the page, while the OpenAPI document
/// said problem+json); what it looks up is a redirect either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_mistakes_are_problems_for_json_clients_and_pages_for_browsers() {
    let (s, valid, _) = populated().await;
    let json = [("accept", "application/json")];
    let weighted = [("accept", "text/html;q=0.5, application/problem+json")];
    for (q, status, detail) in [
        (
            "gtin=09506000000019&serial=X",
            400,
            "09506000000019 is not a valid GTIN",
        ),
        (
            "gtin=&serial=",
            400,
            "Enter a GTIN and a serial number, or a certificate ID.",
        ),
        (
            "gtin=09506000000019",
            400,
            "Enter a GTIN and a serial number",
        ),
        ("id=xyz", 400, "A certificate ID is 32 hexadecimal digits"),
        (
            "id=00112233445566778899aabbccddeeff",
            404,
            "No certificate 00112233445566778899aabbccddeeff is in the ledger.",
        ),
    ] {
        let path = format!("/lookup?{q}");
        for accept in [&json, &weighted] {
            let p = s.req("GET", &path, accept, b"").await.problem(status);
            assert!(p["detail"].as_str().unwrap().contains(detail), "{q}: {p}");
        }
        for accept in [&[("accept", BROWSER_ACCEPT)][..], &[]] {
            let page = s.req("GET", &path, accept, b"").await;
            assert_eq!(page.status, status, "{q}");
            assert_eq!(page.content_type(), "text/html; charset=utf-8", "{q}");
            assert!(page.text().contains(detail), "{q}: {}", page.text());
            assert!(page.text().contains("action=\"/lookup\""), "{q}");
        }
    }
    // Found: the same redirect for every client; followed with its Accept, the product JSON.
    let r = s
        .req("GET", &format!("/lookup?id={valid}"), &json, b"")
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.headers["location"].to_str().unwrap().to_owned();
    let found = s.req("GET", &location, &json, b"").await;
    assert_eq!(found.content_type(), "application/json");
    assert_eq!(found.json()["certificate_id"], valid.as_str());
    s.stop().await;
}

/// Errors that do not come from a page route's handler (here axum's 405 for a method the
/// route does not take) are pages for browsers too, with their headers, and problems for JSON
/// clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_from_outside_a_page_handler_are_pages_for_browsers() {
    let s = start(ServeOptions::default()).await;
    let path = "/01/09506000134352/21/RM-1";
    let page = s
        .req("DELETE", path, &[("accept", BROWSER_ACCEPT)], b"")
        .await;
    assert_eq!(page.status, 405);
    assert_eq!(page.content_type(), "text/html; charset=utf-8");
    assert!(page.headers.contains_key("allow"), "{:?}", page.headers);
    assert!(
        page.text().contains("DELETE is not allowed on"),
        "{}",
        page.text()
    );
    let p = s
        .req("DELETE", path, &[("accept", "application/json")], b"")
        .await
        .problem(405);
    assert_eq!(p["title"], "Method not allowed", "{p}");
    s.stop().await;
}

/// `/scan` answers a photo it cannot read as a problem to a client that prefers JSON, with the
/// status of the page a browser gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_refusals_are_problems_for_json_clients_and_pages_for_browsers() {
    let s = start(ServeOptions::default()).await;
    let other = qr::png("https://example.com/hello", qr::DEFAULT_SIZE).unwrap();
    let cases: [(&str, Vec<u8>, u16, &str); 4] = [
        // Not an image.
        (
            MULTIPART,
            multipart(b"hello"),
            422,
            "is not a PNG or JPEG image",
        ),
        // A QR code, but not a ledger link.
        (MULTIPART, multipart(&other), 422, "not a certificate link"),
        // No file.
        (MULTIPART, b"--XyZzY--\r\n".to_vec(), 400, "Choose a photo"),
        // Not a multipart form.
        (
            "application/json",
            b"{}".to_vec(),
            400,
            "multipart/form-data",
        ),
    ];
    for (ctype, body, status, detail) in &cases {
        for accept in ["application/json", "text/html;q=0.1, application/json"] {
            let p = s
                .req(
                    "POST",
                    "/scan",
                    &[("content-type", ctype), ("accept", accept)],
                    body,
                )
                .await
                .problem(*status);
            assert!(
                p["detail"].as_str().unwrap().contains(detail),
                "{detail}: {p}"
            );
        }
        for accept in [&[("accept", BROWSER_ACCEPT)][..], &[]] {
            let mut headers = vec![("content-type", *ctype)];
            headers.extend_from_slice(accept);
            let page = s.req("POST", "/scan", &headers, body).await;
            assert_eq!(page.status, *status, "{detail}");
            assert_eq!(page.content_type(), "text/html; charset=utf-8", "{detail}");
            assert!(page.text().contains(detail), "{detail}: {}", page.text());
        }
    }
    s.stop().await;
}

/// The OpenAPI document says which routes answer their errors as pages unless the client
/// prefers JSON: the resolver, /lookup and /scan; every other error is problem+json only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_says_which_errors_are_negotiated() {
    let s = start(ServeOptions::default()).await;
    let doc = s.get("/api/v1/openapi.json").await.json();
    let negotiated = ["/01/{gtin}/21/{serial}", "/lookup", "/scan"];
    let mut seen = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for (status, answer) in op["responses"].as_object().unwrap() {
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                let content = answer["content"].as_object().unwrap();
                // Not an error but an answer of its own (/healthz once writes are halted).
                if !content.contains_key("application/problem+json") {
                    continue;
                }
                let page = content.contains_key("text/html; charset=utf-8");
                assert_eq!(
                    page,
                    negotiated.contains(&path.as_str()),
                    "{method} {path} {status}"
                );
                seen += usize::from(page);
            }
        }
    }
    // 400 and 404 of the resolver and /lookup, 400, 408, 413 and 422 of /scan at least.
    assert!(seen >= 8, "{seen}");
    s.stop().await;
}

/// A photo tiled with QR finder patterns (found by fuzzing) is answered promptly, 422 "no QR
/// code", and the server goes on answering: it kept a core busy for minutes and took gigabytes
/// before the decoder refused such pictures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_tiled_with_finder_patterns_is_refused_promptly() {
    let img = finder_tiling(512, 512, 1);
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let s = start(ServeOptions::default()).await;
    let started = std::time::Instant::now();
    let res = s
        .req(
            "POST",
            "/scan",
            &[("content-type", MULTIPART)],
            &multipart(&png),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.text());
    assert!(res.text().contains("no QR code"), "{}", res.text());
    // Loose: it tells seconds from the minutes it took.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.get("/healthz").await.status, 200);
}

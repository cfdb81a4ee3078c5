//! Shared test setup: a real ledger on a real sled directory in a temp dir, with the demo keys.
#![allow(dead_code)]

use reman_ledger::dsse::Envelope;
use reman_ledger::keyfile;
use reman_ledger::keys::PrivateKey;
use reman_ledger::ledger::{Ledger, LedgerConfig, OperatorDetails};
use reman_ledger::payload::PayloadType;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn demo_keys() -> HashMap<String, PrivateKey> {
    keyfile::read_dir_keys(&root().join("keys")).unwrap()
}

pub fn key(name: &str) -> PrivateKey {
    demo_keys().remove(name).unwrap()
}

pub fn log_key() -> PrivateKey {
    key("reman-ledger.example/log")
}

pub fn operator() -> PrivateKey {
    key("operator.reman-ledger.example")
}

pub fn demo_jsonl() -> String {
    std::fs::read_to_string(root().join("fixtures/demo/demo.jsonl")).unwrap()
}

pub fn config() -> LedgerConfig {
    LedgerConfig {
        base_url: Some("https://ledger.example".into()),
        ..LedgerConfig::default()
    }
}

/// A new ledger with only its genesis entry.
pub fn new_ledger(dir: &Path) -> Ledger {
    new_ledger_with(dir, config())
}

/// A new ledger with only its genesis entry, with this configuration.
pub fn new_ledger_with(dir: &Path, config: LedgerConfig) -> Ledger {
    Ledger::init(
        dir,
        log_key(),
        &operator(),
        &OperatorDetails {
            display_name: Some("Demo ledger operator".into()),
            country: Some("CN".into()),
        },
        config,
    )
    .unwrap()
}

/// A new ledger with the whole demo data set loaded.
pub fn demo_ledger(dir: &Path) -> (Ledger, reman_ledger::demo::DemoReport) {
    demo_ledger_with(dir, config())
}

/// A new ledger with the whole demo data set loaded, with this configuration.
pub fn demo_ledger_with(
    dir: &Path,
    config: LedgerConfig,
) -> (Ledger, reman_ledger::demo::DemoReport) {
    let l = new_ledger_with(dir, config);
    let report = reman_ledger::demo::load(&l, &demo_jsonl(), &demo_keys()).unwrap();
    (l, report)
}

/// Signs a payload given as JSON text.
pub fn sign(kind: PayloadType, json: &str, signer: &PrivateKey) -> Vec<u8> {
    Envelope::sign(kind.media_type(), json.as_bytes().to_vec(), signer)
        .unwrap()
        .to_json()
        .into_bytes()
}

/// Every key and value of the store: to prove that a refusal wrote nothing.
pub fn snapshot(l: &Ledger) -> Vec<(Vec<u8>, Vec<u8>)> {
    l.store()
        .scan_prefix(b"")
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// A valid certificate payload for a unit, as JSON text.
pub fn certificate_json(gtin: &str, serial: &str, supersedes: Option<&str>) -> String {
    let sup = supersedes.map_or("null".to_string(), |s| format!("\"{s}\""));
    format!(
        r#"{{"product":{{"gtin":"{gtin}","serial":"{serial}","name":"Remanufactured 2.0 L diesel engine","category":"engine","hs_code":"840820","oem":"Example Motors","part_number":"EM-20TD-11"}},"core":{{"origin_country":"DE","source":"end-of-life vehicle dismantler","core_id":"CORE-00042"}},"process":{{"facility":"Suzhou plant 2","country":"CN","completed":"2026-11-20","standards":["GB/T 34600-2017"],"steps":["disassembly","cleaning","inspection","repair","reassembly","testing"],"replaced_parts":[{{"part":"piston ring set","new":true}}],"tests":[{{"name":"dynamometer power test","result":"pass","same_as_new_product":true}}]}},"warranty_months":24,"marking":"再制造产品 / Remanufactured","environment":{{"mass_kg":182.5,"material_reuse_pct":72.0,"energy_saved_kwh":1200,"co2e_saved_kg":850,"method":"supplier LCA 2026"}},"issued":"2026-11-21","supersedes":{sup}}}"#
    )
}

/// A valid GTIN-14 for an item number (GS1 check digit computed).
pub fn gtin(item: u64) -> String {
    let body = format!("0950600{:06}", item % 1_000_000);
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// Copies a directory tree (a sled directory, to tamper with or convert a copy).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Raw sled access to a closed store: to damage it, or to plant what another version wrote.
pub fn raw_sled(dir: &Path) -> sled::Db {
    let config = sled::Config::new()
        .path(dir)
        .segment_size(reman_ledger::store::SEGMENT_SIZE);
    // A store just closed may hold the directory's lock for a moment.
    for _ in 0..200 {
        if let Ok(db) = config.open() {
            return db;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    config.open().unwrap()
}

/// Every certificate the ledger's store holds a record of, in key order.
pub fn certificate_ids(l: &Ledger) -> Vec<reman_ledger::certificate::CertificateId> {
    l.store()
        .scan_state(b"c")
        .unwrap()
        .into_iter()
        .map(|(k, _)| reman_ledger::certificate::CertificateId(k[1..].try_into().unwrap()))
        .collect()
}

/// Reads a just started `reman-ledger serve`'s stdout until it says where it listens, then
/// keeps draining it (so that the server never blocks on a full pipe) and returns the address
/// (`HOST:PORT`). Kills and reaps the server, then panics, if it never says so within 30 s.
pub fn served_address(child: &mut std::process::Child) -> String {
    use std::io::{BufRead, BufReader};
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.split(" on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            std::thread::spawn(move || lines.for_each(drop));
            return addr;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not start");
}

/// A picture tiled with QR finder patterns (7 modules and a 1-module gap each way, `module`
/// pixels per module), `width` × `height` pixels: what made the QR decoder work for minutes.
pub fn finder_tiling(width: u32, height: u32, module: u32) -> image::GrayImage {
    const ROWS: [u8; 8] = [
        0b1111111, 0b1000001, 0b1011101, 0b1011101, 0b1011101, 0b1000001, 0b1111111, 0,
    ];
    image::GrayImage::from_fn(width, height, |x, y| {
        let (mx, my) = (x / module, y / module);
        let dark = mx % 8 < 7 && ROWS[(my % 8) as usize] >> (6 - mx % 8) & 1 == 1;
        image::Luma([if dark { 0 } else { 255 }])
    })
}

/// The data directory of a demo ledger (parties, certificates, supersessions, revocations,
/// events), built once per test binary and closed, to copy from.
pub fn pristine_demo() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (l, _) = demo_ledger(dir.path());
        l.close().unwrap();
        dir
    })
    .path()
}

/// A copy of [`pristine_demo`], opened as a store, for a test to tamper with.
pub fn demo_store_copy() -> (tempfile::TempDir, reman_ledger::store::Store) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine_demo(), dir.path());
    let store = reman_ledger::store::Store::open(dir.path()).unwrap();
    (dir, store)
}

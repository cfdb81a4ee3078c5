//! Issue 5, items 3 and 4: how the ledger behaves as it grows. Builds real sled stores through
//! the library's public API (`Ledger::submit`, the very path of `POST /api/v1/entries`) and
//! measures, in a fresh child process per measurement, the open time, resident memory, lookup
//! and proof times and the disk used per entry.
//!
//! Run (stores are kept between runs, so each size is built once):
//!
//! ```sh
//! cargo bench --bench scale -- build   --dir /work/scale/s --n 100000    # grow the store to N
//! cargo bench --bench scale -- measure --dir /work/scale/s               # open, RSS, proofs, disk
//! cargo bench --bench scale -- measure --dir /work/scale/s --json
//! ```
//!
//! `build` opens the store (or creates it: `init`, then the demo data set for the parties) and
//! submits distinct certificates of the 4 demo remanufacturers from many threads, each thread
//! signing its envelope and then calling `Ledger::submit`, until the log holds N entries. It can
//! be stopped and run again: it continues where it stopped. Beside the store it keeps
//! `<dir>.json` (the certificate numbers used, for lookups, and the build time).
//!
//! `measure` runs itself as a child process (`--child`), so the figures are that process's
//! own: open time (`Ledger::open`), VmRSS/VmHWM from `/proc/self/status` after the open and
//! after the lookups, then `--lookups` random certificate lookups (`Ledger::certificate`: the
//! record, the entry, the inclusion proof, the seal), inclusion and consistency proofs from
//! the store at the full size, and the directory's disk usage (as `du`) per entry against the
//! mean entry size.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::*;
use reman_ledger::certificate::CertificateId;
use reman_ledger::dsse::Envelope;
use reman_ledger::keys::PrivateKey;
use reman_ledger::ledger::Ledger;
use reman_ledger::merkle;
use reman_ledger::payload::PayloadType;
use reman_ledger::tiles::{Tile, TileKind};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The same allocator as the `reman-ledger` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: cargo bench --bench scale -- build --dir DIR --n N [--threads T]
       cargo bench --bench scale -- measure --dir DIR [--lookups L] [--json]
  build     grow the ledger in DIR (created if needed) to N entries with distinct certificates
            of the 4 demo remanufacturers, submitted by T threads (default 64)
  measure   in a fresh child process: open time, resident memory, L random certificate
            lookups (default 10000) and proofs, disk bytes per entry";

/// The demo remanufacturers, each with the kind of product it certifies.
const MAKERS: [(&str, &str, &str, &str); 4] = [
    (
        "suzhou-reman.example",
        "Remanufactured 2.0 L diesel engine",
        "engine",
        "840820",
    ),
    (
        "rhein-reman.example",
        "Remanufactured 6-speed manual gearbox",
        "gearbox",
        "870840",
    ),
    (
        "texas-reman.example",
        "Remanufactured turbocharger",
        "turbocharger",
        "841480",
    ),
    (
        "kyoto-imaging.example",
        "Remanufactured toner cartridge",
        "printer cartridge",
        "844399",
    ),
];

/// The payload of bench certificate number `k`: a distinct unit per number, the product of
/// its remanufacturer `k % 4`.
fn payload(k: u64) -> Vec<u8> {
    let (_, name, category, hs) = MAKERS[(k % 4) as usize];
    certificate_json(&gtin(k), &format!("SC-{k:010}"), None)
        .replace("Remanufactured 2.0 L diesel engine", name)
        .replace(
            "\"category\":\"engine\"",
            &format!("\"category\":\"{category}\""),
        )
        .replace("\"hs_code\":\"840820\"", &format!("\"hs_code\":\"{hs}\""))
        .into_bytes()
}

/// What `build` records beside the store.
fn meta_path(dir: &Path) -> PathBuf {
    let mut p = dir.as_os_str().to_owned();
    p.push(".json");
    PathBuf::from(p)
}

fn read_meta(dir: &Path) -> Value {
    std::fs::read(meta_path(dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}))
}

fn write_meta(dir: &Path, meta: &Value) {
    std::fs::write(meta_path(dir), serde_json::to_vec_pretty(meta).unwrap()).unwrap();
}

/// A value of `/proc/self/status` in KiB (VmRSS, VmHWM).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Disk usage of a directory tree: (allocated bytes as `du` counts them, apparent bytes).
fn du(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut alloc = 0;
    let mut apparent = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                alloc += m.blocks() * 512;
                apparent += m.len();
            }
        }
    }
    (alloc, apparent)
}

/// splitmix64: reproducible pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn open_or_init(dir: &Path) -> Ledger {
    let has_store = dir.join("conf").exists();
    if has_store {
        Ledger::open(dir, log_key(), config()).unwrap()
    } else {
        std::fs::create_dir_all(dir).unwrap();
        demo_ledger(dir).0
    }
}

fn build(dir: &Path, target: u64, threads: usize) {
    let t_open = Instant::now();
    let ledger = Arc::new(open_or_init(dir));
    let open_s = t_open.elapsed().as_secs_f64();
    let mut meta = read_meta(dir);
    let start_size = ledger.head().size;
    // Certificate numbers: [first_k, next_k) were claimed by earlier runs; an interrupted run
    // may have left some of them unlogged, so this run starts again at the first one it cannot
    // be sure of (a resubmission is answered as already logged).
    let first_k = meta["first_k"].as_u64().unwrap_or(start_size);
    let next_k = meta["next_k"].as_u64().unwrap_or(first_k);
    eprintln!(
        "{}: {start_size} entries (opened in {open_s:.2} s); growing to {target} with {threads} submitter threads",
        dir.display()
    );
    if start_size >= target {
        return;
    }
    let keys: Arc<Vec<PrivateKey>> = Arc::new(MAKERS.iter().map(|m| key(m.0)).collect());
    let claim = Arc::new(AtomicU64::new(next_k));
    let stop = Arc::new(AtomicBool::new(false));
    let (created, existing) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let t0 = Instant::now();
    let cpu0 = support::cpu_seconds("self");
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (ledger, keys, claim, stop) =
                (ledger.clone(), keys.clone(), claim.clone(), stop.clone());
            let (created, existing) = (created.clone(), existing.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if ledger.head().size >= target {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    let k = claim.fetch_add(1, Ordering::Relaxed);
                    let env = Envelope::sign(
                        PayloadType::Certificate.media_type(),
                        payload(k),
                        &keys[(k % 4) as usize],
                    )
                    .unwrap();
                    let r = ledger.submit(env.to_json().as_bytes()).unwrap();
                    if r.created { &created } else { &existing }.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut last = (Instant::now(), start_size);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if last.0.elapsed() >= Duration::from_secs(30) {
            let size = ledger.head().size;
            let rate = (size - last.1) as f64 / last.0.elapsed().as_secs_f64();
            let (disk, _) = du(dir);
            eprintln!(
                "  {size} entries, {rate:.0}/s over the last 30 s, {:.2} GiB on disk, RSS {} MiB",
                disk as f64 / (1u64 << 30) as f64,
                status_kib("VmRSS") / 1024
            );
            last = (Instant::now(), size);
            meta["first_k"] = json!(first_k);
            meta["next_k"] = json!(next_k); // still unsure beyond: see above
            write_meta(dir, &meta);
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = support::cpu_seconds("self") - cpu0;
    let size = ledger.head().size;
    let made = created.load(Ordering::Relaxed);
    eprintln!(
        "  done: {size} entries; {made} appended in {secs:.0} s ({:.0}/s, {:.0} µs CPU each); {} already logged",
        made as f64 / secs,
        cpu / made.max(1) as f64 * 1e6,
        existing.load(Ordering::Relaxed)
    );
    let t = Instant::now();
    match Arc::try_unwrap(ledger) {
        Ok(l) => l.close().unwrap(),
        Err(_) => panic!("ledger still shared"),
    }
    eprintln!("  closed in {:.1} s", t.elapsed().as_secs_f64());
    meta["first_k"] = json!(first_k);
    meta["next_k"] = json!(claim.load(Ordering::Relaxed));
    meta["size"] = json!(size);
    let mut runs = meta["runs"].as_array().cloned().unwrap_or_default();
    runs.push(
        json!({"from": start_size, "to": size, "appended": made, "seconds": secs,
                     "cpu_seconds": cpu, "threads": threads}),
    );
    meta["runs"] = json!(runs);
    write_meta(dir, &meta);
}

fn percentiles(mut us: Vec<f64>) -> Value {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1];
    json!({"mean_us": us.iter().sum::<f64>() / us.len() as f64, "p50_us": at(0.5),
           "p99_us": at(0.99), "max_us": at(1.0), "count": us.len()})
}

/// The measurement, in this (child) process.
fn child(dir: &Path, lookups: usize) {
    let rss_start = status_kib("VmRSS");
    let t = Instant::now();
    let ledger = Ledger::open(dir, log_key(), config()).unwrap();
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let (rss_open, hwm_open) = (status_kib("VmRSS"), status_kib("VmHWM"));
    let n = ledger.head().size;
    let meta = read_meta(dir);
    let first_k = meta["first_k"].as_u64().unwrap_or(0);
    let next_k = meta["next_k"].as_u64().unwrap_or(first_k + 1);
    let store = ledger.store();
    let mut rng = Rng(0x5ca1e);

    // Random certificate lookups: what GET /api/v1/certificates/{id} does below HTTP.
    let mut lookup_us = Vec::with_capacity(lookups);
    let mut missing = 0;
    let reads0 = store.reads();
    let t_lookups = Instant::now();
    while lookup_us.len() < lookups {
        let k = first_k + rng.below(next_k - first_k);
        let id = CertificateId::of_payload(&payload(k));
        let t = Instant::now();
        match ledger.certificate(&id) {
            Ok(v) => {
                std::hint::black_box(v);
                lookup_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            Err(e) => {
                missing += 1;
                if missing > lookups {
                    panic!(
                        "more than {lookups} bench certificates are missing from {}; the last: {e}",
                        dir.display()
                    );
                }
            }
        }
    }
    let lookups_s = t_lookups.elapsed().as_secs_f64();
    let lookup_reads = (store.reads() - reads0) as f64 / (lookups + missing) as f64;
    let (rss_lookups, hwm_lookups) = (status_kib("VmRSS"), status_kib("VmHWM"));

    // Proofs straight from the store at the full size, at random leaves and first sizes.
    let mut incl_us = Vec::with_capacity(lookups);
    let reads0 = store.reads();
    for _ in 0..lookups {
        let i = rng.below(n);
        let t = Instant::now();
        std::hint::black_box(merkle::inclusion_proof(i, n, store).unwrap());
        incl_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let incl_reads = (store.reads() - reads0) as f64 / lookups as f64;
    let mut cons_us = Vec::with_capacity(lookups);
    let reads0 = store.reads();
    for _ in 0..lookups {
        let m = 1 + rng.below(n - 1);
        let t = Instant::now();
        std::hint::black_box(merkle::consistency_proof(m, n, store).unwrap());
        cons_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let cons_reads = (store.reads() - reads0) as f64 / lookups as f64;
    // Entry reads and the mean entry size, over random entries.
    let mut entry_us = Vec::with_capacity(lookups);
    let mut entry_bytes = 0u64;
    for _ in 0..lookups {
        let i = rng.below(n);
        let t = Instant::now();
        let e = store.entry(i).unwrap().unwrap();
        entry_us.push(t.elapsed().as_secs_f64() * 1e6);
        entry_bytes += e.len() as u64;
    }
    let mean_entry = entry_bytes as f64 / lookups as f64;
    // tlog-tiles (SPEC §8): a random full level-0 tile (4 node blocks) and entry bundle (its
    // runs), as `GET /tile/...` reads them; fewer than the lookups, a bundle is 256 entries.
    let tiles_n = (lookups / 10).max(1);
    let full_tiles = (n / 256).max(1);
    let mut tile_us = Vec::with_capacity(tiles_n);
    let reads0 = store.reads();
    for _ in 0..tiles_n {
        let tile = Tile {
            kind: TileKind::Hashes(0),
            index: rng.below(full_tiles),
            width: 256.min(n) as u16,
        };
        let t = Instant::now();
        std::hint::black_box(store.tile(&tile, n).unwrap().unwrap());
        tile_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let tile_reads = (store.reads() - reads0) as f64 / tiles_n as f64;
    let mut bundle_us = Vec::with_capacity(tiles_n);
    let reads0 = store.reads();
    for _ in 0..tiles_n {
        let tile = Tile {
            kind: TileKind::Entries,
            index: rng.below(full_tiles),
            width: 256.min(n) as u16,
        };
        let t = Instant::now();
        std::hint::black_box(store.tile(&tile, n).unwrap().unwrap());
        bundle_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let bundle_reads = (store.reads() - reads0) as f64 / tiles_n as f64;
    // A kept seal signature, read on its own at random entries, beside signing one again
    // (what a lookup would do without it): which of the two a lookup should prefer here.
    let mut seal_us = Vec::with_capacity(lookups);
    let reads0 = store.reads();
    for _ in 0..lookups {
        let i = rng.below(n);
        let t = Instant::now();
        std::hint::black_box(store.seal_signature(i).unwrap());
        seal_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let seal_reads = (store.reads() - reads0) as f64 / lookups as f64;
    let log_key = log_key();
    let mut sign_us = Vec::with_capacity(lookups);
    for i in 0..lookups {
        let msg = [i as u8; 113];
        let t = Instant::now();
        std::hint::black_box(log_key.sign(&msg));
        sign_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (rss_end, hwm_end) = (status_kib("VmRSS"), status_kib("VmHWM"));
    let (disk, apparent) = du(dir);
    let t = Instant::now();
    drop(ledger);
    let close_ms = t.elapsed().as_secs_f64() * 1e3;
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "{}",
        json!({
            "dir": dir.display().to_string(), "entries": n, "log2_n": (n as f64).log2(),
            "open_ms": open_ms, "close_ms": close_ms,
            "rss_mib": {"process_start": mib(rss_start), "after_open": mib(rss_open),
                        "hwm_after_open": mib(hwm_open), "after_lookups": mib(rss_lookups),
                        "hwm_after_lookups": mib(hwm_lookups), "end": mib(rss_end),
                        "hwm_end": mib(hwm_end)},
            "lookups": {"count": lookups, "seconds": lookups_s, "per_s": lookups as f64 / lookups_s,
                        "latency": percentiles(lookup_us), "sled_reads_each": lookup_reads},
            "inclusion_proof": percentiles(incl_us),
            "inclusion_proof_sled_reads": incl_reads,
            "consistency_proof": percentiles(cons_us),
            "consistency_proof_sled_reads": cons_reads,
            "entry_read": percentiles(entry_us),
            "level0_tile": percentiles(tile_us),
            "level0_tile_sled_reads": tile_reads,
            "entry_bundle": percentiles(bundle_us),
            "entry_bundle_sled_reads": bundle_reads,
            "kept_seal_read": percentiles(seal_us),
            "kept_seal_read_sled_reads": seal_reads,
            "seal_signed_again": percentiles(sign_us),
            "disk": {"du_bytes": disk, "apparent_bytes": apparent,
                     "du_bytes_per_entry": disk as f64 / n as f64,
                     "mean_entry_bytes": mean_entry,
                     "du_over_entry_bytes": disk as f64 / (mean_entry * n as f64)},
            "build": meta["runs"],
        })
    );
}

fn measure(dir: &Path, lookups: usize, as_json: bool) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--child")
        .arg(dir)
        .arg(lookups.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the measuring child failed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    if as_json {
        println!("{v}");
        return;
    }
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(f64::NAN);
    println!(
        "{} : {} entries (log2 n = {:.1})",
        v["dir"].as_str().unwrap_or(""),
        v["entries"],
        f("/log2_n")
    );
    println!(
        "  open (Ledger::open, fresh process): {:.1} ms; close {:.1} ms",
        f("/open_ms"),
        f("/close_ms")
    );
    println!(
        "  resident memory: {:.0} MiB after open (peak {:.0}), {:.0} MiB after {} lookups (peak {:.0}), {:.0} MiB at the end (peak {:.0})",
        f("/rss_mib/after_open"),
        f("/rss_mib/hwm_after_open"),
        f("/rss_mib/after_lookups"),
        v["lookups"]["count"],
        f("/rss_mib/hwm_after_lookups"),
        f("/rss_mib/end"),
        f("/rss_mib/hwm_end")
    );
    for (what, p, reads) in [
        (
            "certificate lookup",
            "/lookups/latency",
            "/lookups/sled_reads_each",
        ),
        (
            "inclusion proof",
            "/inclusion_proof",
            "/inclusion_proof_sled_reads",
        ),
        (
            "consistency proof",
            "/consistency_proof",
            "/consistency_proof_sled_reads",
        ),
        ("entry read", "/entry_read", "/none"),
        ("level-0 tile", "/level0_tile", "/level0_tile_sled_reads"),
        ("entry bundle", "/entry_bundle", "/entry_bundle_sled_reads"),
        (
            "kept seal read",
            "/kept_seal_read",
            "/kept_seal_read_sled_reads",
        ),
        ("seal signed again", "/seal_signed_again", "/zero"),
    ] {
        println!(
            "  {what:<19} mean {:>8.1} µs, p50 {:>8.1} µs, p99 {:>8.1} µs, max {:>9.1} µs; {:.1} sled reads each",
            f(&format!("{p}/mean_us")),
            f(&format!("{p}/p50_us")),
            f(&format!("{p}/p99_us")),
            f(&format!("{p}/max_us")),
            match reads {
                "/none" => 1.0,
                "/zero" => 0.0,
                _ => f(reads),
            }
        );
    }
    println!(
        "  disk: {:.2} GiB (du), {:.0} bytes per entry; mean entry {:.0} bytes; ratio {:.2}",
        f("/disk/du_bytes") / (1u64 << 30) as f64,
        f("/disk/du_bytes_per_entry"),
        f("/disk/mean_entry_bytes"),
        f("/disk/du_over_entry_bytes")
    );
}

fn main() {
    // The ledger's own log lines (snapshot refreshes, conversions), when RUST_LOG asks for them.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(Path::new(&args[1]), args[2].parse().unwrap());
        return;
    }
    let mut dir = None;
    let mut n = None;
    let mut threads = 64usize;
    let mut lookups = 10_000usize;
    let mut as_json = false;
    let mut it = args.iter().skip(1);
    let fail = |e: &str| -> ! {
        eprintln!("error: {e}\n{USAGE}");
        std::process::exit(2)
    };
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| fail(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(value())),
            "--n" => {
                n = Some(
                    value()
                        .parse::<f64>()
                        .unwrap_or_else(|_| fail("--n: a number")) as u64,
                )
            }
            "--threads" => {
                threads = value()
                    .parse()
                    .unwrap_or_else(|_| fail("--threads: a number"))
            }
            "--lookups" => {
                lookups = value()
                    .parse()
                    .unwrap_or_else(|_| fail("--lookups: a number"))
            }
            "--json" => as_json = true,
            other => fail(&format!("unknown option {other:?}")),
        }
    }
    let Some(dir) = dir else {
        fail("--dir is required")
    };
    match args.first().map(String::as_str) {
        Some("build") => build(
            &dir,
            n.unwrap_or_else(|| fail("--n is required")),
            threads.max(1),
        ),
        Some("measure") => measure(&dir, lookups.max(1), as_json),
        _ => fail("expected build or measure"),
    }
}

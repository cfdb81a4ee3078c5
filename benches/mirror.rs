//! A mirror's catch-up (SPEC §8): how fast a new mirror fetches, verifies and stores a log it
//! follows over loopback HTTP (`mirroring::sync`, what `reman-ledger mirror` runs), beside the
//! raw `verify_strict` rate of the same machine measured in the same run, and beside `audit`
//! of the same entries on the mirror's own store (the same checks without the network).
//!
//! Run: `cargo bench --bench mirror` (optional: `-- N` certificates on top of the demo data
//! set, default 20,000). Each certificate entry costs a mirror two signature checks (the
//! envelope's and the seal's, the latter after one more request, since a mirror cannot sign
//! seals), so the limit taken is `cores × verify_strict / 2` entries per second.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::*;
use reman_ledger::dsse::Envelope;
use reman_ledger::ledger::Ledger;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The same allocator as the `reman-ledger` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let keys: Vec<_> = [
        "suzhou-reman.example",
        "rhein-reman.example",
        "texas-reman.example",
        "kyoto-imaging.example",
    ]
    .iter()
    .map(|s| key(s))
    .collect();
    let pubs: Vec<_> = keys.iter().map(|k| k.public().clone()).collect();
    let envs: Vec<Envelope> = support::certificate_envelopes(n, "MIRROR", &keys);
    let v1 = support::verify_rate(&envs, &pubs, 1);
    let vall = support::verify_rate(&envs, &pubs, cores);
    let limit = cores as f64 * v1 / 2.0;
    println!(
        "machine: {cores} cores; raw verify_strict {v1:.0}/s on 1 core, {vall:.0}/s on {cores}"
    );
    println!(
        "limit of a mirror's checks (2 signatures per certificate entry): {limit:.0} entries/s"
    );

    // The followed ledger: the demo data set and N certificates, served over loopback.
    let up_dir = tempfile::tempdir().unwrap();
    let (up, _) = demo_ledger(up_dir.path());
    let up = Arc::new(up);
    let bodies: Vec<Vec<u8>> = envs.iter().map(|e| e.to_json().into_bytes()).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..64 {
            s.spawn(|| {
                while let Some(b) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                    up.submit(b).unwrap();
                }
            });
        }
    });
    let size = up.head().size;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(reman_ledger::api::serve(
        listener,
        up.clone(),
        reman_ledger::api::ServeOptions::default(),
        std::future::pending(),
    ));
    println!("followed ledger: {size} entries at {url}");

    let client = reman_ledger::client::Client::new(&url).unwrap();
    for step in [reman_ledger::mirroring::STEP_ENTRIES, 256] {
        let dir = tempfile::tempdir().unwrap();
        let m = Ledger::open_mirror(dir.path(), log_key().public().clone(), config()).unwrap();
        let cpu0 = support::cpu_seconds("self");
        let t = Instant::now();
        let round = reman_ledger::mirroring::sync(&m, &client, step, &Default::default()).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let cpu = support::cpu_seconds("self") - cpu0;
        assert_eq!(round.size, size);
        assert_eq!(m.head(), up.head());
        let rate = size as f64 / secs;
        println!(
            "catch-up, steps of {step:>5} entries: {size} entries in {secs:.2} s = {rate:.0} entries/s \
             (ratio {:.2} of the limit); CPU of mirror and followed ledger together {:.0} µs per entry",
            rate / limit,
            cpu / size as f64 * 1e6
        );
        if step == 256 {
            continue;
        }
        let t = Instant::now();
        let report =
            reman_ledger::audit::audit_store(m.store(), Some(log_key().public()), |_, _| {})
                .unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "reference: audit --data of the mirror's store, the same checks without the network: \
             {} entries in {secs:.2} s = {:.0} entries/s (ratio {:.2})",
            report.entries,
            report.entries as f64 / secs,
            report.entries as f64 / secs / limit
        );
    }
}

//! Issue 2's speed figure: in-process durable appends with group commit, beside the raw
//! Ed25519 `verify_strict` rate of the same machine, measured in the same run.
//!
//! Run: `cargo bench --bench append` (optional: `-- N C` for N appends from C submitters).
//!
//! Two runs, each on a fresh ledger: C OS threads each blocked in `Ledger::submit`, then C
//! tasks on a tokio runtime with one worker per core, each awaiting `Ledger::submit_async`
//! (how the HTTP server submits). `APPEND_STYLE=threads` or `tasks` runs one of them;
//! `APPEND_ONLY=1` skips the reference rates (for profiling).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::*;
use reman_ledger::dsse::Envelope;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The same allocator as the `reman-ledger` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let conc: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let signers = [
        "suzhou-reman.example",
        "rhein-reman.example",
        "texas-reman.example",
        "kyoto-imaging.example",
    ];
    let keys: Vec<_> = signers.iter().map(|s| key(s)).collect();
    let pubs: Vec<_> = keys.iter().map(|k| k.public().clone()).collect();
    let envs: Vec<Envelope> = support::certificate_envelopes(n, "BENCH", &keys);
    let bodies: Vec<Vec<u8>> = envs.iter().map(|e| e.to_json().into_bytes()).collect();

    let skip_verify = std::env::var_os("APPEND_ONLY").is_some();
    // Not measured: NaN, so that every figure derived from it reads NaN instead of a number.
    let (v1, vall) = if skip_verify {
        (f64::NAN, f64::NAN)
    } else {
        (
            support::verify_rate(&envs, &pubs, 1),
            support::verify_rate(&envs, &pubs, cores),
        )
    };

    println!("machine: {cores} cores; {n} certificate envelopes, {conc} concurrent submitters");
    println!("raw verify_strict, 1 core:        {v1:>10.0} /s");
    println!("raw verify_strict, {cores} cores:       {vall:>10.0} /s");
    let bodies = Arc::new(bodies);
    let only = std::env::var("APPEND_STYLE").ok();
    for style in [Style::Threads, Style::Tasks] {
        if only.as_deref().is_some_and(|o| o != style.name()) {
            continue;
        }
        run(style, &bodies, conc, cores, v1);
    }
}

/// How the concurrent submitters reach the ledger.
#[derive(Clone, Copy)]
enum Style {
    /// One OS thread per submitter, each blocked in [`reman_ledger::ledger::Ledger::submit`].
    Threads,
    /// One task per submitter on a tokio runtime with a worker per core, each awaiting
    /// [`reman_ledger::ledger::Ledger::submit_async`]: what the HTTP server does.
    Tasks,
}

impl Style {
    fn name(self) -> &'static str {
        match self {
            Style::Threads => "threads",
            Style::Tasks => "tasks",
        }
    }
}

fn run(style: Style, bodies: &Arc<Vec<Vec<u8>>>, conc: usize, cores: usize, v1: f64) {
    let n = bodies.len();
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = demo_ledger(dir.path());
    let ledger = Arc::new(ledger);
    let start_size = ledger.head().size;
    let reads0 = ledger.store().reads();
    let next = Arc::new(AtomicUsize::new(0));
    // Each submitter logs entries until none is left; what it returns is the tree size of
    // each receipt (one per group commit).
    let submitter = |l: Arc<reman_ledger::ledger::Ledger>, next: Arc<AtomicUsize>| {
        let bodies = bodies.clone();
        async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                let r = l.submit_async(&bodies[i]).await.unwrap();
                assert!(r.created);
                seen.push(r.inclusion_proof.tree_size);
            }
            seen
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    let cpu0 = support::cpu_seconds("self");
    let start = Instant::now();
    let sizes: Vec<Vec<u64>> = match style {
        Style::Threads => std::thread::scope(|s| {
            let hs: Vec<_> = (0..conc)
                .map(|_| {
                    let (l, next, bodies) = (ledger.clone(), next.clone(), bodies.clone());
                    s.spawn(move || {
                        let mut seen = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= bodies.len() {
                                break;
                            }
                            let r = l.submit(&bodies[i]).unwrap();
                            assert!(r.created);
                            seen.push(r.inclusion_proof.tree_size);
                        }
                        seen
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        }),
        Style::Tasks => runtime.block_on(async {
            let hs: Vec<_> = (0..conc)
                .map(|_| tokio::spawn(submitter(ledger.clone(), next.clone())))
                .collect();
            let mut all = Vec::new();
            for h in hs {
                all.push(h.await.unwrap());
            }
            all
        }),
    };
    let secs = start.elapsed().as_secs_f64();
    let cpu_us = (support::cpu_seconds("self") - cpu0) / n as f64 * 1e6;
    drop(runtime);
    let appends = n as f64 / secs;
    let mut commits: Vec<u64> = sizes.into_iter().flatten().collect();
    commits.sort();
    commits.dedup();
    assert_eq!(ledger.head().size, start_size + n as u64);
    let disk = ledger.store().disk_bytes().unwrap_or(0);
    let reads = (ledger.store().reads() - reads0) as f64 / n as f64;

    let how = match style {
        Style::Threads => format!("{conc} threads, blocking submit"),
        Style::Tasks => format!("{conc} tasks on {cores} tokio workers, submit_async"),
    };
    println!("\n[{}] {how}", style.name());
    println!("durable appends (group commit):   {appends:>10.0} /s");
    println!(
        "CPU per append (user + system, all threads): {cpu_us:.0} µs; 1-core verify_strict: {:.0} µs",
        1e6 / v1
    );
    println!(
        "group commits: {}, mean batch {:.1} entries; sled lookups per append: {reads:.2}",
        commits.len(),
        n as f64 / commits.len() as f64
    );
    println!(
        "ratio appends / (1-core verify x {cores} cores) = {:.2}  (target >= 0.50)",
        appends / (v1 * cores as f64)
    );
    let st = ledger.stats();
    let ms = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
    println!(
        "sequencer time: build {:.0} ms, sign {:.0} ms, write {:.0} ms + flush {:.0} ms (of {:.0} ms wall)",
        ms(&st.build_ns),
        ms(&st.sign_ns),
        ms(&st.commit_ns) - ms(&st.flush_ns),
        ms(&st.flush_ns),
        secs * 1e3
    );
    println!(
        "sled size on disk after the run: {:.1} MiB",
        disk as f64 / 1048576.0
    );
}

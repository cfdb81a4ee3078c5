//! Issue 5, item 1: the pure core's speed beside the raw primitives it is built on, measured in
//! the same run on the same machine.
//!
//! Run: `cargo bench --bench core` (every case, about a minute, most of it building the
//! 10^7-leaf tree); `-- --quick` for shorter samples; `-- --max-n 1000000` for smaller trees;
//! `-- --filter proof` for the cases whose name contains a word; `-- --json` for one JSON object.
//!
//! Each case is timed by a small helper (no criterion: build time matters on this machine):
//! the number of iterations per sample is calibrated to about a fifth of the time budget, five
//! samples are taken, and the median ns/op is reported. Each case is also given as a ratio to
//! its natural reference (the raw Ed25519 or SHA-256 operation it wraps, or log2(n) for proofs).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use ed25519_dalek::{Signer as _, SigningKey};
use reman_ledger::checkpoint::Checkpoint;
use reman_ledger::dsse::{Envelope, pae};
use reman_ledger::entry::Entry;
use reman_ledger::merkle::{self, Hash, HashReader, MemoryTree, NodeId, TreeBuilder};
use reman_ledger::payload::{self, PayloadType};
use reman_ledger::seal::Seal;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The same allocator as the `reman-ledger` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: cargo bench --bench core -- [options]
  --quick          shorter samples (0.1 s budget per case instead of 0.5 s)
  --max-n N        largest tree for the proof cases (default 10000000, from 1000)
  --filter WORD    only the cases whose name contains WORD
  --json           print the results as one JSON object";

struct Options {
    budget: Duration,
    max_n: u64,
    filter: Option<String>,
    json: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        budget: Duration::from_millis(500),
        max_n: 10_000_000,
        filter: None,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--quick" => o.budget = Duration::from_millis(100),
            "--json" => o.json = true,
            "--max-n" => {
                let v = it.next().ok_or("--max-n needs a value")?;
                o.max_n = v
                    .parse()
                    .ok()
                    .filter(|n| (1000..=100_000_000).contains(n))
                    .ok_or_else(|| format!("--max-n: expected 1000 to 100000000, got {v:?}"))?;
            }
            "--filter" => o.filter = Some(it.next().ok_or("--filter needs a value")?),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(o)
}

/// Median ns per call of `op` over five samples, each of about `budget / 5`. `op` gets the
/// call's sequence number (to vary its input).
fn time_ns(budget: Duration, mut op: impl FnMut(u64)) -> f64 {
    let sample = budget / 5;
    let mut seq = 0u64;
    let mut run = |iters: u64| {
        let t = Instant::now();
        for _ in 0..iters {
            op(seq);
            seq = seq.wrapping_add(1);
        }
        t.elapsed()
    };
    // Calibrate: double the iterations until one batch takes a tenth of a sample.
    let mut iters = 1u64;
    loop {
        let e = run(iters);
        if e >= sample / 10 || iters >= 1 << 40 {
            let per = e.as_secs_f64() / iters as f64;
            iters = ((sample.as_secs_f64() / per.max(1e-10)) as u64).max(1);
            break;
        }
        iters *= 2;
    }
    let mut samples: Vec<f64> = (0..5)
        .map(|_| run(iters).as_secs_f64() * 1e9 / iters as f64)
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[2]
}

/// One measured case.
struct Case {
    group: &'static str,
    name: String,
    ns: f64,
    /// The ratio to the reference and what the reference is.
    ratio: Option<(f64, String)>,
    /// Extra figures (hash reads per proof, ...).
    extra: Vec<(&'static str, f64)>,
}

struct Bench {
    o: Options,
    cases: Vec<Case>,
}

impl Bench {
    fn wanted(&self, name: &str) -> bool {
        self.o.filter.as_deref().is_none_or(|f| name.contains(f))
    }

    /// Times `op` as case `name`; returns its ns/op (NaN when filtered out).
    fn case(&mut self, group: &'static str, name: &str, op: impl FnMut(u64)) -> f64 {
        if !self.wanted(name) {
            return f64::NAN;
        }
        let ns = time_ns(self.o.budget, op);
        if !self.o.json {
            eprintln!("  {name:<44} {ns:>12.1} ns/op");
        }
        self.cases.push(Case {
            group,
            name: name.to_owned(),
            ns,
            ratio: None,
            extra: Vec::new(),
        });
        ns
    }

    /// Like [`Bench::case`], with the ratio of its time to `reference_ns`.
    fn vs(
        &mut self,
        group: &'static str,
        name: &str,
        reference: (&str, f64),
        op: impl FnMut(u64),
    ) -> f64 {
        let ns = self.case(group, name, op);
        if let Some(c) = self.cases.last_mut().filter(|c| c.name == name) {
            c.ratio = Some((ns / reference.1, reference.0.to_owned()));
        }
        ns
    }

    fn extra(&mut self, name: &str, what: &'static str, value: f64) {
        if let Some(c) = self.cases.iter_mut().rev().find(|c| c.name == name) {
            c.extra.push((what, value));
        }
    }
}

/// A [`HashReader`] over a [`MemoryTree`] that counts the nodes asked for.
struct Counting<'a> {
    tree: &'a MemoryTree,
    calls: Cell<u64>,
    nodes: Cell<u64>,
}

impl HashReader for Counting<'_> {
    type Error = Infallible;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Infallible> {
        self.calls.set(self.calls.get() + 1);
        self.nodes.set(self.nodes.get() + ids.len() as u64);
        self.tree.read_hashes(ids)
    }
}

/// A pseudo-random index below `n` for call `i` (splitmix64): proofs of scattered leaves, as
/// lookups of random certificates make them.
fn scatter(i: u64, n: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % n
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let mut b = Bench {
        o,
        cases: Vec::new(),
    };
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_before = load_before.split_whitespace().take(3).collect::<Vec<_>>();

    // Realistic inputs: a certificate of the demo data set's shape, signed by a demo
    // remanufacturer, logged as entry 1,234,567 of a log.
    let signer = key("suzhou-reman.example");
    let log = log_key();
    let cert_json = certificate_json(&gtin(4242), "RM-2026-004242", None);
    let cert_type = PayloadType::Certificate.media_type();
    let env = Envelope::sign(cert_type, cert_json.clone().into_bytes(), &signer).unwrap();
    let env_json = env.to_json();
    let msg = pae(cert_type, cert_json.as_bytes());
    let entry_bytes = Entry::encode(1_234_567, 1_795_896_000_123, &[7u8; 32], &env_json);
    let seal_msg_len = Seal::signed_message(
        log.name(),
        &gtin(4242),
        "RM-2026-004242",
        &[0u8; reman_ledger::seal::HEADER_LEN],
    )
    .len();

    // The raw primitives, straight from ed25519-dalek and sha2.
    let sk = SigningKey::from_bytes(&[42u8; 32]);
    let vk = sk.verifying_key();
    let m64 = [0x5au8; 64];
    let kib = vec![0xa5u8; 1024];
    let sig64 = sk.sign(&m64);
    let sig_msg = sk.sign(&msg);
    eprintln!("references (raw ed25519-dalek / sha2):");
    let ref_sign64 = b.case("reference", "ed25519 sign, 64 B", |_| {
        black_box(sk.sign(black_box(&m64)));
    });
    let ref_verify64 = b.case("reference", "ed25519 verify_strict, 64 B", |_| {
        black_box(vk.verify_strict(black_box(&m64), &sig64)).unwrap();
    });
    let ref_sign_msg = b.case(
        "reference",
        &format!("ed25519 sign, DSSE PAE ({} B)", msg.len()),
        |_| {
            black_box(sk.sign(black_box(&msg)));
        },
    );
    let ref_verify_msg = b.case(
        "reference",
        &format!("ed25519 verify_strict, DSSE PAE ({} B)", msg.len()),
        |_| {
            black_box(vk.verify_strict(black_box(&msg), &sig_msg)).unwrap();
        },
    );
    let ref_sha64 = b.case("reference", "sha256, 64 B", |_| {
        black_box(Sha256::digest(black_box(&m64)));
    });
    let ref_sha1k = b.case("reference", "sha256, 1 KiB", |_| {
        black_box(Sha256::digest(black_box(&kib)));
    });
    let ref_sha_entry = b.case(
        "reference",
        &format!("sha256, entry bytes ({} B)", entry_bytes.len()),
        |_| {
            black_box(Sha256::digest(black_box(&entry_bytes)));
        },
    );

    eprintln!("pure core:");
    // Hashing.
    b.vs(
        "hash",
        "leaf hash of an entry",
        ("sha256 of the same bytes", ref_sha_entry),
        |_| {
            black_box(merkle::leaf_hash(black_box(&entry_bytes)));
        },
    );
    let (l, r) = ([3u8; 32], [4u8; 32]);
    let node_ns = b.vs(
        "hash",
        "node hash",
        ("sha256, 64 B (same 2 blocks)", ref_sha64),
        |_| {
            black_box(merkle::node_hash(black_box(&l), black_box(&r)));
        },
    );
    {
        let mut tb = TreeBuilder::new();
        b.vs(
            "hash",
            "tree builder push (amortized)",
            ("node hash", node_ns),
            |i| {
                black_box(tb.push([i as u8; 32]));
            },
        );
    }
    b.vs(
        "hash",
        "certificate ID (sha256 of the payload)",
        ("sha256, 1 KiB", ref_sha1k),
        |_| {
            black_box(reman_ledger::certificate::CertificateId::of_payload(
                black_box(cert_json.as_bytes()),
            ));
        },
    );

    // DSSE and the payload.
    let pk = signer.public().clone();
    let body = env_json.as_bytes();
    b.vs(
        "dsse",
        "DSSE verify (PAE + verify_strict)",
        ("raw verify_strict of the PAE", ref_verify_msg),
        |_| {
            black_box(&env).verify(&pk).unwrap();
        },
    );
    b.vs(
        "dsse",
        "DSSE envelope parse (JSON, base64)",
        ("raw verify_strict of the PAE", ref_verify_msg),
        |_| {
            black_box(Envelope::parse(black_box(body)).unwrap());
        },
    );
    b.vs(
        "dsse",
        "DSSE envelope sign",
        ("raw sign of the PAE", ref_sign_msg),
        |_| {
            black_box(Envelope::sign(cert_type, cert_json.clone().into_bytes(), &signer).unwrap());
        },
    );
    b.vs(
        "dsse",
        "DSSE envelope to canonical JSON",
        ("raw verify_strict of the PAE", ref_verify_msg),
        |_| {
            black_box(black_box(&env).to_json());
        },
    );
    b.vs(
        "payload",
        "certificate validation (parse + SPEC §3.2 rules)",
        ("raw verify_strict of the PAE", ref_verify_msg),
        |_| {
            black_box(payload::parse(cert_type, black_box(cert_json.as_bytes())).unwrap());
        },
    );
    if let payload::Payload::Certificate(c) =
        payload::parse(cert_type, cert_json.as_bytes()).unwrap()
    {
        b.vs(
            "payload",
            "certificate validation (rules only, parsed)",
            ("raw verify_strict of the PAE", ref_verify_msg),
            |_| {
                black_box(&c).validate().unwrap();
            },
        );
    }

    // Entries.
    b.vs(
        "entry",
        "entry encode",
        ("sha256 of the entry bytes", ref_sha_entry),
        |i| {
            black_box(Entry::encode(i, 1_795_896_000_123, &[7u8; 32], &env_json));
        },
    );
    b.vs(
        "entry",
        "entry parse (canonical check)",
        ("raw verify_strict of the PAE", ref_verify_msg),
        |_| {
            black_box(Entry::parse(black_box(&entry_bytes)).unwrap());
        },
    );

    // Seals.
    let cid = reman_ledger::certificate::CertificateId::of_payload(cert_json.as_bytes()).0;
    let g = gtin(4242);
    let seal = Seal::sign(
        &log,
        log.name(),
        &g,
        "RM-2026-004242",
        1_234_567,
        1_795_896_000,
        cid,
    );
    b.vs(
        "seal",
        &format!("seal sign ({seal_msg_len} B message)"),
        ("raw sign, 64 B", ref_sign64),
        |i| {
            black_box(Seal::sign(
                &log,
                log.name(),
                &g,
                "RM-2026-004242",
                i,
                1_795_896_000,
                cid,
            ));
        },
    );
    b.vs(
        "seal",
        "seal verify",
        ("raw verify_strict, 64 B", ref_verify64),
        |_| {
            black_box(&seal)
                .verify(log.public(), log.name(), &g, "RM-2026-004242")
                .unwrap();
        },
    );
    let seal_text = seal.to_base64url();
    b.vs(
        "seal",
        "seal from base64url + verify (a scan)",
        ("raw verify_strict, 64 B", ref_verify64),
        |_| {
            Seal::from_base64url(black_box(&seal_text))
                .unwrap()
                .verify(log.public(), log.name(), &g, "RM-2026-004242")
                .unwrap();
        },
    );

    // Checkpoints.
    let cp = |size: u64| Checkpoint {
        origin: log.name().to_owned(),
        size,
        root: [9u8; 32],
        extensions: vec![],
    };
    b.vs(
        "checkpoint",
        "checkpoint sign (signed note)",
        ("raw sign, 64 B", ref_sign64),
        |i| {
            black_box(cp(i).sign(&log).unwrap());
        },
    );
    let signed = cp(10_000_000).sign(&log).unwrap();
    b.vs(
        "checkpoint",
        "checkpoint open (parse + verify)",
        ("raw verify_strict, 64 B", ref_verify64),
        |_| {
            black_box(Checkpoint::open(black_box(&signed), log.public()).unwrap());
        },
    );

    // Proofs over stored node hashes: one tree of max_n leaves holds every smaller tree's
    // complete nodes too (a proof at size n reads only nodes complete in n).
    let sizes: Vec<u64> = [1_000u64, 10_000, 100_000, 1_000_000, 10_000_000]
        .into_iter()
        .filter(|&n| n <= b.o.max_n)
        .collect();
    let proof_cases = ["inclusion", "consistency", "verify"].iter().any(|w| {
        b.o.filter
            .as_deref()
            .is_none_or(|f| w.contains(f) || f.contains("proof"))
    });
    let mut proof_rows = Vec::new();
    if proof_cases && let Some(&max_n) = sizes.last() {
        let t = Instant::now();
        let tree = MemoryTree::from_leaves((0..max_n).map(|i| merkle::leaf_hash(&i.to_be_bytes())));
        let built = t.elapsed().as_secs_f64();
        if !b.o.json {
            eprintln!(
                "proofs: in-memory tree of {max_n} leaves ({:.0} MiB of node hashes) built in {built:.1} s",
                (2 * max_n * 32) as f64 / 1048576.0
            );
        }
        for &n in &sizes {
            let log2 = (n as f64).log2();
            let counting = Counting {
                tree: &tree,
                calls: Cell::new(0),
                nodes: Cell::new(0),
            };
            let samples = 10_000u64;
            for i in 0..samples {
                merkle::inclusion_proof(scatter(i, n), n, &counting).unwrap();
            }
            let reads = counting.nodes.get() as f64 / samples as f64;
            let calls = counting.calls.get() as f64 / samples as f64;
            let name = format!("inclusion proof, n = {n}");
            let incl = b.vs("proof", &name, ("log2(n) (ns per tree level)", log2), |i| {
                black_box(merkle::inclusion_proof(scatter(i, n), n, &tree).unwrap());
            });
            b.extra(&name, "hash_reads_per_proof", reads);
            b.extra(&name, "read_calls_per_proof", calls);
            b.extra(&name, "hash_reads_per_log2n", reads / log2);

            let counting = Counting {
                tree: &tree,
                calls: Cell::new(0),
                nodes: Cell::new(0),
            };
            for i in 0..samples {
                let first = 1 + scatter(i, n - 1);
                merkle::consistency_proof(first, n, &counting).unwrap();
            }
            let creads = counting.nodes.get() as f64 / samples as f64;
            let name = format!("consistency proof, m random < n = {n}");
            let cons = b.vs("proof", &name, ("log2(n) (ns per tree level)", log2), |i| {
                black_box(merkle::consistency_proof(1 + scatter(i, n - 1), n, &tree).unwrap());
            });
            b.extra(&name, "hash_reads_per_proof", creads);
            b.extra(&name, "hash_reads_per_log2n", creads / log2);

            // Verification of a proof of a fixed leaf: what a client does.
            let root = merkle::root(n, &tree).unwrap();
            let idx = scatter(7, n);
            let leaf = tree.get(NodeId::new(0, idx)).unwrap();
            let proof = merkle::inclusion_proof(idx, n, &tree).unwrap();
            let name = format!("inclusion verify, n = {n}");
            let ver = b.vs(
                "proof",
                &name,
                ("node hash x proof length", node_ns * proof.len() as f64),
                |_| {
                    merkle::verify_inclusion(&leaf, idx, n, black_box(&proof), &root).unwrap();
                },
            );
            proof_rows.push(json!({
                "n": n, "log2_n": log2,
                "inclusion_ns": incl, "inclusion_ns_per_log2n": incl / log2,
                "inclusion_hash_reads": reads,
                "consistency_ns": cons, "consistency_ns_per_log2n": cons / log2,
                "consistency_hash_reads": creads,
                "verify_inclusion_ns": ver,
            }));
        }
    }

    // Report.
    let crypto_limit = cores as f64 / ((ref_verify_msg + ref_sign64) * 1e-9);
    if b.o.json {
        let cases: Vec<_> = b
            .cases
            .iter()
            .map(|c| {
                let mut v = json!({
                    "group": c.group, "case": c.name, "ns_per_op": c.ns, "ops_per_s": 1e9 / c.ns,
                });
                if let Some((r, what)) = &c.ratio {
                    v["ratio"] = json!(r);
                    v["ratio_to"] = json!(what);
                }
                for (k, x) in &c.extra {
                    v[*k] = json!(x);
                }
                v
            })
            .collect();
        println!(
            "{}",
            json!({
                "machine": {"cores": cores, "load_average_before": load_before},
                "budget_s_per_case": b.o.budget.as_secs_f64(),
                "cases": cases,
                "proofs": proof_rows,
                "crypto_limit_appends_per_s_all_cores": crypto_limit,
            })
        );
        return;
    }
    println!();
    println!(
        "machine: {cores} cores; load average before the run {}; median of 5 samples of ~{:.0} ms per case",
        load_before.join(" "),
        b.o.budget.as_secs_f64() * 200.0
    );
    println!();
    println!(
        "| {:<11} | {:<48} | {:>11} | {:>12} | {:>8} | {:<30} |",
        "group", "case", "ns/op", "ops/s", "ratio", "to"
    );
    println!(
        "|{:-<13}|{:-<50}|{:->13}|{:->14}|{:->10}|{:-<32}|",
        "", "", "", "", "", ""
    );
    for c in &b.cases {
        let (r, to) = c
            .ratio
            .as_ref()
            .map_or((String::new(), String::new()), |(r, t)| {
                (format!("{r:.2}"), t.clone())
            });
        println!(
            "| {:<11} | {:<48} | {:>11.1} | {:>12.0} | {:>8} | {:<30} |",
            c.group,
            c.name,
            c.ns,
            1e9 / c.ns,
            r,
            to
        );
    }
    if !proof_rows.is_empty() {
        println!();
        println!(
            "| {:>10} | {:>6} | {:>12} | {:>14} | {:>11} | {:>14} | {:>14} | {:>11} | {:>10} |",
            "n",
            "log2 n",
            "inclusion ns",
            "ns per log2 n",
            "hash reads",
            "consistency ns",
            "ns per log2 n",
            "hash reads",
            "verify ns"
        );
        println!(
            "|{:->12}|{:->8}|{:->14}|{:->16}|{:->13}|{:->16}|{:->16}|{:->13}|{:->12}|",
            "", "", "", "", "", "", "", "", ""
        );
        for r in &proof_rows {
            let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "| {:>10} | {:>6.1} | {:>12.0} | {:>14.1} | {:>11.1} | {:>14.0} | {:>14.1} | {:>11.1} | {:>10.0} |",
                f("n"),
                f("log2_n"),
                f("inclusion_ns"),
                f("inclusion_ns_per_log2n"),
                f("inclusion_hash_reads"),
                f("consistency_ns"),
                f("consistency_ns_per_log2n"),
                f("consistency_hash_reads"),
                f("verify_inclusion_ns"),
            );
        }
    }
    println!();
    println!(
        "crypto limit of appends over {cores} cores (one verify_strict of the PAE + one 64 B sign each): {crypto_limit:.0}/s"
    );
}

//! Helpers the bench binaries share.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// User + system CPU seconds of a process so far (all its threads), from `/proc/<pid>/stat`
/// (`"self"` for this process); NaN if it cannot be read.
pub fn cpu_seconds(pid: &str) -> f64 {
    /// USER_HZ, the unit of utime and stime: 100 on every Linux architecture
    /// (`sysconf(_SC_CLK_TCK)`), a fixed part of the user-space ABI.
    const CLOCK_TICKS_PER_S: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // Fields 14 (utime) and 15 (stime); `fields[0]` is field 3.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / CLOCK_TICKS_PER_S
}

/// Raw `verify_strict` rate of `envs` (signed by `keys`, round robin) on `threads` threads:
/// the reference the benches' ratios are taken against.
pub fn verify_rate(
    envs: &[reman_ledger::dsse::Envelope],
    keys: &[reman_ledger::keys::PublicKey],
    threads: usize,
) -> f64 {
    let n = envs.len();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let next = next.clone();
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let e = &envs[i];
                    let k = &keys[i % keys.len()];
                    let msg = reman_ledger::dsse::pae(&e.payload_type, &e.payload);
                    assert!(k.verify(&msg, &e.signature.sig).is_ok());
                }
            });
        }
    });
    n as f64 / start.elapsed().as_secs_f64()
}

/// `n` distinct certificate envelopes (serials `<prefix>-00000000`...), signed by `keys` in
/// turn.
pub fn certificate_envelopes(
    n: usize,
    prefix: &str,
    keys: &[reman_ledger::keys::PrivateKey],
) -> Vec<reman_ledger::dsse::Envelope> {
    (0..n)
        .map(|i| {
            let json = crate::common::certificate_json(
                &crate::common::gtin(i as u64),
                &format!("{prefix}-{i:08}"),
                None,
            );
            reman_ledger::dsse::Envelope::sign(
                reman_ledger::payload::PayloadType::Certificate.media_type(),
                json.into_bytes(),
                &keys[i % keys.len()],
            )
            .unwrap()
        })
        .collect()
}

//! Lock-free histograms in the Prometheus text exposition format, written by hand: the
//! sequencer records its batch sizes in one, the HTTP layer its latencies.

use std::sync::atomic::{AtomicU64, Ordering};

/// Batch size buckets, in entries.
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Latency buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram with fixed buckets, updated without locks.
pub struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound, plus one for above the last bound (not cumulative).
    buckets: Box<[AtomicU64]>,
    /// Sum of the observations in base units (nanoseconds or entries).
    sum: AtomicU64,
    /// Base units per displayed unit (1e9 for seconds from nanoseconds).
    scale: f64,
}

impl Histogram {
    /// A histogram with these upper bounds; observations are divided by `scale` to compare.
    pub fn new(bounds: &'static [f64], scale: f64) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    /// Records one observation, in base units.
    pub fn observe(&self, base_units: u64) {
        let v = base_units as f64 / self.scale;
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(base_units, Ordering::Relaxed);
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines; `labels` is `k="v",` or empty.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write;
        let mut cumulative = 0u64;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.buckets.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cumulative}");
        }
        cumulative += self
            .buckets
            .get(self.bounds.len())
            .map_or(0, |c| c.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.scale;
        let labels = labels.trim_end_matches(',');
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

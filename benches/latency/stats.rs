//! Percentiles of latency samples, and how the tables print durations and sizes.

use std::time::Duration;

use crate::{KIB, MIB};

/// The distribution of a set of latency samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Summary {
    pub(crate) count: usize,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) p999: Duration,
    pub(crate) max: Duration,
    pub(crate) mean: Duration,
}

impl Summary {
    /// Summarises `samples`, which it sorts. `None` when there are none.
    pub(crate) fn of(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let total: Duration = samples.iter().sum();
        Some(Self {
            count: samples.len(),
            p50: percentile(samples, 0.50),
            p99: percentile(samples, 0.99),
            p999: percentile(samples, 0.999),
            max: samples[samples.len() - 1],
            mean: total / samples.len() as u32,
        })
    }
}

/// The nearest-rank percentile `p` (0 < p <= 1) of sorted, non-empty `sorted`: the smallest
/// sample at or below which at least that fraction of the samples lie.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in microseconds, to a tenth.
pub(crate) fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

/// A byte count in the largest binary unit that keeps it at 1 or more.
pub(crate) fn bytes(count: usize) -> String {
    if count >= MIB {
        format!("{:.2} MiB", count as f64 / MIB as f64)
    } else if count >= KIB {
        format!("{:.1} KiB", count as f64 / KIB as f64)
    } else {
        format!("{count} B")
    }
}

/// The header of a latency table, aligned with [`row`].
pub(crate) fn header() -> String {
    format!(
        "{:<28} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "samples", "p50", "p99", "p99.9", "max", "mean"
    )
}

/// One line of a latency table.
pub(crate) fn row(name: &str, summary: &Summary) -> String {
    format!(
        "{:<28} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        name,
        summary.count,
        micros(summary.p50),
        micros(summary.p99),
        micros(summary.p999),
        micros(summary.max),
        micros(summary.mean)
    )
}

/// "met" or "NOT met", for a target line.
pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

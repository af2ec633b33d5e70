//! Order statistics for the benches: figures are reported as percentiles or
//! min/median over several runs, never asserted.
//!
//! Included by several benches (each its own crate), each using part of it.
#![allow(dead_code)]

/// The `p` quantile (0..=1) of sorted samples; NaN when there are none, so
/// that a phase where nothing arrived prints as such instead of panicking.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn sort(v: &mut [f64]) {
    v.sort_by(f64::total_cmp);
}

/// "p50 … ms  p90 … ms  p99 … ms" of sorted samples in milliseconds.
pub fn p50_p90_p99(v: &[f64]) -> String {
    format!(
        "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms",
        percentile(v, 0.5),
        percentile(v, 0.9),
        percentile(v, 0.99)
    )
}

/// "min … / med …" of sorted samples in milliseconds.
pub fn min_med(v: &[f64]) -> String {
    format!("{:.1} / {:.1}", percentile(v, 0.0), percentile(v, 0.5))
}

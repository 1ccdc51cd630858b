//! Percentiles over a set of timings.

use std::time::Duration;

/// p50 / p90 / p99 / max of a sample, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median.
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

/// Summarises `samples` (must not be empty).
pub fn summarise(samples: &[Duration]) -> Summary {
    assert!(!samples.is_empty(), "no samples");
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let rank =
        |p: f64| ms[(((p / 100.0) * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    Summary {
        p50: rank(50.0),
        p90: rank(90.0),
        p99: rank(99.0),
        max: ms[ms.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let r = summarise(&s);
        assert_eq!((r.p50, r.p90, r.p99, r.max), (50.0, 90.0, 99.0, 100.0));
        let one = summarise(&[Duration::from_millis(7)]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
    }
}

//! The printed tables: the attach benchmarks' fixed-width table, and the
//! pieces the `cluster` and `bgp` benchmarks build theirs from (a grid sized
//! to its cells, latency rows under one header, MB as their targets count),
//! shared so that their tables read alike and are laid out by one piece of
//! code.

use crate::stats::{Summary, summarise};
use std::fmt::Write;
use std::time::Duration;

/// One row of the table: a label and its samples.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was timed.
    pub label: String,
    /// The samples.
    pub samples: Vec<Duration>,
}

impl Row {
    /// A row (`samples` must not be empty).
    pub fn new(label: impl Into<String>, samples: &[Duration]) -> Self {
        Row {
            label: label.into(),
            samples: samples.to_vec(),
        }
    }

    /// p50 / p99 / max of the samples.
    pub fn summary(&self) -> Summary {
        summarise(&self.samples)
    }
}

const LABEL_WIDTH: usize = 38;

/// The table: a header line and one line per row, milliseconds to two decimals.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<LABEL_WIDTH$} {:>5} {:>9} {:>9} {:>9}\n",
        "scenario", "n", "p50 ms", "p99 ms", "max ms"
    );
    for r in rows {
        let s = r.summary();
        writeln!(
            out,
            "{:<LABEL_WIDTH$} {:>5} {:>9.2} {:>9.2} {:>9.2}",
            r.label,
            r.samples.len(),
            s.p50,
            s.p99,
            s.max
        )
        .expect("write to a String");
    }
    out
}

/// `"peer p50 / base p50 = 12.3x"`, for the ratio lines under the table.
pub fn ratio(peer: &Row, base: &Row) -> String {
    let (p, b) = (peer.summary().p50, base.summary().p50);
    format!("{} p50 / {} p50 = {:.1}x", peer.label, base.label, p / b)
}

/// KiB as MB (10⁶ bytes), as the targets count.
pub fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// A table: columns as wide as their widest cell; the first column and
/// those in `left` flush left, the others right.
pub fn grid(header: &[&str], rows: &[Vec<String>], left: &[usize]) -> String {
    let head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let all: Vec<&Vec<String>> = std::iter::once(&head).chain(rows).collect();
    let width = |c: usize| {
        all.iter()
            .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let mut out = String::new();
    for r in all {
        let mut line = String::new();
        for (c, w) in widths.iter().enumerate() {
            let cell = r.get(c).map_or("", String::as_str);
            let pad = w - cell.chars().count();
            if c > 0 {
                line.push_str("  ");
            }
            if c == 0 || left.contains(&c) {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
        writeln!(out, "{}", line.trim_end()).expect("write to a String");
    }
    out
}

/// One row of a [`latency_table`]: label, n, p50, p90, p99, max (ms, two
/// decimals), target, verdict.
pub fn latency(label: &str, samples: &[Duration], target: &str, verdict: String) -> Vec<String> {
    let s = summarise(samples);
    let ms = |v: f64| format!("{v:.2}");
    vec![
        label.into(),
        samples.len().to_string(),
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
        target.into(),
        verdict,
    ]
}

/// A table of [`latency`] rows under their header.
pub fn latency_table(rows: &[Vec<String>]) -> String {
    let header = [
        "figure", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "target", "verdict",
    ];
    grid(&header, rows, &[6, 7])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn table_has_a_header_and_aligned_rows() {
        let t = table(&[Row::new("a", &ms(&[1, 2, 3])), Row::new("bb", &ms(&[10]))]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("scenario"));
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{t}");
        assert!(
            lines[1].ends_with(" 3      2.00      3.00      3.00"),
            "{t}"
        );
    }

    #[test]
    fn ratio_compares_medians() {
        let fast = Row::new("fast", &ms(&[1, 2, 100]));
        let slow = Row::new("slow", &ms(&[20, 30, 40]));
        assert_eq!(ratio(&slow, &fast), "slow p50 / fast p50 = 15.0x");
    }

    #[test]
    fn grid_aligns_columns_and_trims_lines() {
        let rows = vec![
            vec!["a".into(), "1.00".into(), "x".into()],
            vec!["longer".into(), "12.50".into(), String::new()],
        ];
        let t = grid(&["figure", "ms", "note"], &rows, &[2]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "figure     ms  note");
        assert_eq!(lines[1], "a        1.00  x");
        assert_eq!(lines[2], "longer  12.50");
    }

    #[test]
    fn latency_rows_line_up_under_their_header() {
        let t = latency_table(&[latency("x", &ms(&[1, 2, 3]), "p99 ≤ 5", "pass".into())]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "figure  n  p50 ms  p90 ms  p99 ms  max ms  target   verdict"
        );
        assert_eq!(
            lines[1],
            "x       3    2.00    3.00    3.00    3.00  p99 ≤ 5  pass"
        );
        assert!((mb(97_657) - 100.0).abs() < 0.01);
    }
}

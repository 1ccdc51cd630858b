//! The printed table.

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
}

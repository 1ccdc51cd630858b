//! The `grpc` benchmark's table: one line per measured quantity, the issue's
//! targets beside trellis's numbers with a pass/MISS verdict, and the
//! issue's reference figures beside the peers'.

use crate::grpc::{CONCURRENT, Curve};
use crate::stats::summarise;
use std::fmt::Write;
use std::time::Duration;

/// Which number of a line a target bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// The median of the samples.
    P50,
    /// The 99th percentile.
    P99,
    /// A line's single value (wall time, memory).
    Value,
}

/// An upper bound on one number of a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What it bounds.
    pub metric: Metric,
    /// The bound, in the line's unit.
    pub limit: f64,
    /// How it is printed: `p50≤3`.
    pub text: String,
}

impl Target {
    fn new(metric: Metric, limit: f64, text: impl Into<String>) -> Self {
        Target {
            metric,
            limit,
            text: text.into(),
        }
    }
}

/// The issue's targets for trellis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goals {
    /// Attach p50, ms (3 without a port, 5 with one).
    pub attach_p50: f64,
    /// Attach p99, ms.
    pub attach_p99: f64,
    /// p50 at the highest level at most this times p50 at 1 endpoint.
    pub growth: f64,
    /// Detach p50, ms.
    pub detach_p50: f64,
    /// RSS at the highest level, MB.
    pub rss_mb: f64,
}

impl Goals {
    /// The issue's targets, without (`false`) or with a published port.
    pub fn issue(port: bool) -> Self {
        Goals {
            attach_p50: if port { 5.0 } else { 3.0 },
            attach_p99: 15.0,
            growth: 1.5,
            detach_p50: 25.0,
            rss_mb: 30.0,
        }
    }
}

/// How a curve's lines are judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Judge {
    /// Against targets, with a verdict.
    Goals(Goals),
    /// Shown beside a figure from the issue, no verdict.
    Reference(String),
}

/// One printed line, already formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What was measured.
    pub label: String,
    /// Sample count (empty for single values).
    pub n: String,
    /// p50, or the single value with its unit.
    pub p50: String,
    /// p99, or a second figure (peak memory).
    pub p99: String,
    /// The target(s) or reference.
    pub target: String,
    /// `pass`, `MISS: …`, or empty.
    pub verdict: String,
}

/// `pass` when every target holds for the numbers `get` gives, else
/// `MISS: ` and the targets missed; empty without targets.
pub fn verdict(targets: &[Target], get: impl Fn(Metric) -> f64) -> String {
    if targets.is_empty() {
        return String::new();
    }
    let missed: Vec<&str> = targets
        .iter()
        .filter(|t| get(t.metric) > t.limit)
        .map(|t| t.text.as_str())
        .collect();
    if missed.is_empty() {
        "pass".into()
    } else {
        format!("MISS: {}", missed.join(", "))
    }
}

fn texts(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A line of latency samples (ms), judged against `targets` (or showing
/// `reference`).
pub fn latency(
    label: String,
    samples: &[Duration],
    targets: &[Target],
    reference: Option<&str>,
) -> Line {
    let s = summarise(samples);
    Line {
        label,
        n: samples.len().to_string(),
        p50: format!("{:.2} ms", s.p50),
        p99: format!("{:.2} ms", s.p99),
        target: reference.map_or_else(|| texts(targets), str::to_owned),
        verdict: verdict(targets, |m| if m == Metric::P99 { s.p99 } else { s.p50 }),
    }
}

/// A line of one value, judged against `targets` (all on [`Metric::Value`]).
pub fn value(label: String, value: f64, unit: &str, second: String, targets: &[Target]) -> Line {
    Line {
        label,
        n: String::new(),
        p50: format!("{value:.1} {unit}"),
        p99: second,
        target: texts(targets),
        verdict: verdict(targets, |_| value),
    }
}

/// The lines of one peer's curve, named `name` (`trellisd, port`), and notes
/// for under the table (failures).
pub fn curve_lines(name: &str, curve: &Curve, judge: &Judge) -> (Vec<Line>, Vec<String>) {
    let goals = match judge {
        Judge::Goals(g) => Some(*g),
        Judge::Reference(_) => None,
    };
    let reference = match judge {
        Judge::Reference(r) => Some(r.as_str()),
        Judge::Goals(_) => None,
    };
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    let first_p50 = curve.attach.first().map(|(_, s)| summarise(s).p50);
    let last = curve.attach.len().saturating_sub(1);
    for (i, (level, samples)) in curve.attach.iter().enumerate() {
        let mut targets = Vec::new();
        if let Some(g) = goals {
            targets.push(Target::new(
                Metric::P50,
                g.attach_p50,
                format!("p50≤{}", g.attach_p50),
            ));
            targets.push(Target::new(
                Metric::P99,
                g.attach_p99,
                format!("p99≤{}", g.attach_p99),
            ));
            if i == last
                && i > 0
                && let Some(base) = first_p50
            {
                let limit = g.growth * base;
                targets.push(Target::new(
                    Metric::P50,
                    limit,
                    format!("p50≤{}×@1={limit:.2}", g.growth),
                ));
            }
        }
        let label = format!("{name}: attach @{level}");
        lines.push(latency(label, samples, &targets, reference));
    }
    if !curve.detach.is_empty() {
        let targets: Vec<Target> = goals
            .map(|g| Target::new(Metric::P50, g.detach_p50, format!("p50≤{}", g.detach_p50)))
            .into_iter()
            .collect();
        lines.push(latency(
            format!("{name}: detach (probes, all levels)"),
            &curve.detach,
            &targets,
            None,
        ));
    }
    let at = curve.attach.last().map_or(0, |(l, _)| *l);
    let from = curve.concurrent_from;
    let to = from + CONCURRENT;
    for (what, arrow, result) in [
        ("attaches", format!("{from}→{to}"), &curve.concurrent),
        ("detaches", format!("{to}→{from}"), &curve.concurrent_detach),
    ] {
        let label = format!("{name}: {CONCURRENT} concurrent {what} @{arrow}");
        match result {
            Some(Ok(wall)) => {
                let ms = wall.as_secs_f64() * 1e3;
                lines.push(value(label, ms, "ms", "(wall)".into(), &[]));
            }
            Some(Err(e)) => {
                lines.push(failed(label));
                notes.push(format!("{name}: concurrent {what} failed: {e}"));
            }
            None => {}
        }
    }
    match curve.detach_settled {
        Some(Duration::ZERO) => notes.push(format!(
            "{name}: kernel deletions finished: the host was back to {from} veths at the first \
             look after the last of the {CONCURRENT} concurrent detach answers"
        )),
        Some(settled) => notes.push(format!(
            "{name}: kernel deletions finished {:.0} ms after the last of the {CONCURRENT} \
             concurrent detach answers (the start of the look that found {from} veths)",
            settled.as_secs_f64() * 1e3
        )),
        None => {}
    }
    if let Some(trips) = &curve.round_trips {
        let label = format!("{name}: API round trip @{at} (GetEndpoint, not found)");
        lines.push(latency(label, trips, &[], None));
    }
    if let Some((rss, hwm)) = curve.memory {
        let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
        let targets: Vec<Target> = goals
            .map(|g| Target::new(Metric::Value, g.rss_mb, format!("≤{} MB", g.rss_mb)))
            .into_iter()
            .collect();
        lines.push(value(
            format!("{name}: daemon RSS @{at}"),
            mb(rss),
            "MB",
            format!("peak {:.1} MB", mb(hwm)),
            &targets,
        ));
    }
    (lines, notes)
}

/// A line for a step that failed (the reason goes in a note).
fn failed(label: String) -> Line {
    Line {
        label,
        n: String::new(),
        p50: "failed".into(),
        p99: String::new(),
        target: String::new(),
        verdict: String::new(),
    }
}

/// The table: a header and the lines, columns as wide as their widest cell.
pub fn table(lines: &[Line]) -> String {
    let header = Line {
        label: "scenario".into(),
        n: "n".into(),
        p50: "p50 | value".into(),
        p99: "p99 | other".into(),
        target: "target".into(),
        verdict: "verdict".into(),
    };
    let all: Vec<&Line> = std::iter::once(&header).chain(lines).collect();
    let w = |f: fn(&Line) -> &str| all.iter().map(|l| f(l).chars().count()).max().unwrap_or(0);
    let (wl, wn, w5, w9, wt) = (
        w(|l| &l.label),
        w(|l| &l.n),
        w(|l| &l.p50),
        w(|l| &l.p99),
        w(|l| &l.target),
    );
    let mut out = String::new();
    for l in all {
        let row = format!(
            "{:<wl$}  {:>wn$}  {:>w5$}  {:>w9$}  {:<wt$}  {}",
            l.label, l.n, l.p50, l.p99, l.target, l.verdict
        );
        writeln!(out, "{}", row.trim_end()).expect("write to a String");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn verdict_names_every_target_missed() {
        let t = [
            Target::new(Metric::P50, 3.0, "p50≤3"),
            Target::new(Metric::P99, 15.0, "p99≤15"),
        ];
        let get = |p50, p99| move |m| if m == Metric::P50 { p50 } else { p99 };
        assert_eq!(verdict(&t, get(2.0, 14.0)), "pass");
        assert_eq!(verdict(&t, get(3.0, 15.0)), "pass", "bounds are inclusive");
        assert_eq!(verdict(&t, get(2.0, 16.0)), "MISS: p99≤15");
        assert_eq!(verdict(&t, get(4.0, 16.0)), "MISS: p50≤3, p99≤15");
        assert_eq!(verdict(&[], get(9.0, 9.0)), "");
    }

    fn curve() -> Curve {
        Curve {
            attach: vec![
                (1, ms(&[2, 2, 2])),
                (100, ms(&[2, 3, 3])),
                (1000, ms(&[4, 4, 20])),
            ],
            detach: ms(&[20, 21, 22]),
            fill: ms(&[1]),
            memory: Some((20_000, 25_000)),
            round_trips: Some(ms(&[1, 1, 2])),
            concurrent: Some(Ok(Duration::from_millis(150))),
            concurrent_from: 923,
            concurrent_detach: Some(Ok(Duration::from_millis(90))),
            detach_settled: Some(Duration::from_millis(40)),
        }
    }

    #[test]
    fn trellis_lines_carry_targets_and_verdicts() {
        let (lines, notes) = curve_lines("trellisd", &curve(), &Judge::Goals(Goals::issue(false)));
        assert_eq!(
            notes,
            [
                "trellisd: kernel deletions finished 40 ms after the last of the 100 concurrent \
                 detach answers (the start of the look that found 923 veths)"
            ]
        );
        let mut at_once = curve();
        at_once.detach_settled = Some(Duration::ZERO);
        let (_, notes) = curve_lines("t", &at_once, &Judge::Goals(Goals::issue(false)));
        assert!(notes[0].contains("at the first look"), "{notes:?}");
        let labels: Vec<&str> = lines.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "trellisd: attach @1",
                "trellisd: attach @100",
                "trellisd: attach @1000",
                "trellisd: detach (probes, all levels)",
                "trellisd: 100 concurrent attaches @923→1023",
                "trellisd: 100 concurrent detaches @1023→923",
                "trellisd: API round trip @1000 (GetEndpoint, not found)",
                "trellisd: daemon RSS @1000",
            ]
        );
        assert_eq!(
            (lines[0].p50.as_str(), lines[0].verdict.as_str()),
            ("2.00 ms", "pass")
        );
        assert_eq!(lines[0].target, "p50≤3, p99≤15");
        // @1000: p50 4 > 3 and > 1.5 × 2; p99 20 > 15.
        assert_eq!(lines[2].target, "p50≤3, p99≤15, p50≤1.5×@1=3.00");
        assert_eq!(lines[2].verdict, "MISS: p50≤3, p99≤15, p50≤1.5×@1=3.00");
        assert_eq!(
            lines[1].target, "p50≤3, p99≤15",
            "growth only at the top level"
        );
        assert_eq!(
            (lines[3].target.as_str(), lines[3].verdict.as_str()),
            ("p50≤25", "pass")
        );
        assert_eq!(lines[4].p50, "150.0 ms");
        assert_eq!(lines[4].verdict, "");
        assert_eq!(
            (lines[5].p50.as_str(), lines[5].p99.as_str()),
            ("90.0 ms", "(wall)")
        );
        assert_eq!(
            (lines[6].p50.as_str(), lines[6].p99.as_str()),
            ("1.00 ms", "2.00 ms")
        );
        assert_eq!(lines[6].verdict, "", "the round trip is not judged");
        // 20 000 KiB = 20.48 MB.
        assert_eq!(
            (lines[7].p50.as_str(), lines[7].p99.as_str()),
            ("20.5 MB", "peak 25.6 MB")
        );
        assert_eq!(lines[7].verdict, "pass");
        assert_eq!(Goals::issue(true).attach_p50, 5.0);
    }

    #[test]
    fn peer_lines_show_the_reference_and_no_verdict() {
        let mut c = curve();
        c.memory = None;
        c.round_trips = None;
        c.concurrent = Some(Err("boom".into()));
        c.concurrent_detach = Some(Err("not run".into()));
        c.detach_settled = None;
        let (lines, notes) = curve_lines("cni", &c, &Judge::Reference("issue: ~22".into()));
        assert_eq!(
            lines.len(),
            6,
            "no memory or round-trip line without a daemon"
        );
        assert!(
            lines[..3]
                .iter()
                .all(|l| l.target == "issue: ~22" && l.verdict.is_empty())
        );
        assert_eq!(lines[3].target, "");
        assert_eq!(lines[4].p50, "failed");
        assert_eq!(lines[5].p50, "failed");
        assert_eq!(
            notes,
            [
                "cni: concurrent attaches failed: boom",
                "cni: concurrent detaches failed: not run"
            ]
        );
    }

    #[test]
    fn table_columns_line_up() {
        let (lines, _) = curve_lines("trellisd", &curve(), &Judge::Goals(Goals::issue(true)));
        let t = table(&lines);
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), lines.len() + 1);
        assert!(rows[0].starts_with("scenario"));
        // The p50 column ends at the same character on every row.
        let end = |r: &str, cell: &str| {
            r.find(cell)
                .map(|i| r[..i].chars().count() + cell.chars().count())
        };
        assert_eq!(end(rows[1], "2.00 ms"), end(rows[0], "p50 | value"));
        assert_eq!(end(rows[5], "150.0 ms"), end(rows[0], "p50 | value"));
    }
}

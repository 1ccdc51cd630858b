//! The robustness report: every fault a test injects and every kind of bad
//! input it tries, with the outcome the test observed — one JSON line per
//! fact, written while the test runs.
//!
//! Why lines and not a hand-kept table: the report in `docs/robustness.md`
//! must say what the tests saw, not what someone believed. `scripts/test`
//! empties `target/robustness/`, points [`ENV`] at it, runs every tier, and
//! renders the lines with `trellis-lab report` into the document. A test
//! records only after it has observed the outcome (the error's code and
//! message, the count of leaked objects), so a fault whose test panicked
//! earlier has no row — the table never claims more than ran.
//!
//! Without [`ENV`] set (a plain `cargo test`), [`record`] writes nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The environment variable naming the directory the lines go to.
pub const ENV: &str = "TRELLIS_REPORT_DIR";

/// Records one fault or bad input: the `area` of the system it hit (a short
/// heading such as `trellisd`, `CNI plugin`, `cluster`), what was done, and
/// what the test observed. The test's name is taken from its thread (libtest
/// names each test's thread after the test).
pub fn record(area: &str, fault: &str, observed: &str) {
    let Some(dir) = std::env::var_os(ENV) else {
        return;
    };
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_owned)
        .unwrap_or_else(binary_name);
    let line = serde_json::json!({
        "area": area,
        "fault": fault,
        "observed": observed,
        "test": format!("{}::{test}", binary_name()),
    });
    let dir = Path::new(&dir);
    let path = dir.join(format!("{}-{}.jsonl", binary_name(), std::process::id()));
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let mut f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)?;
        // One write per line: lines from a binary's parallel tests never
        // interleave (O_APPEND), and each binary has its own file.
        f.write_all(format!("{line}\n").as_bytes())
    });
    if let Err(e) = written {
        panic!("{ENV}: cannot record to {}: {e}", path.display());
    }
}

/// The test binary's name without cargo's hash (`limits`, `trellisd`).
fn binary_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_owned()
        }
        _ => stem,
    }
}

/// One recorded fact.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    /// The part of the system the fault hit.
    pub area: String,
    /// What was done.
    pub fault: String,
    /// What the test observed.
    pub observed: String,
    /// `binary::test` that did it.
    pub test: String,
}

/// Reads every line under `dir` (files ending `.jsonl`); a line that is not a
/// row is an error, naming the file.
pub fn read(dir: &Path) -> std::io::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for file in files {
        for (n, line) in std::fs::read_to_string(&file)?.lines().enumerate() {
            let bad = || {
                std::io::Error::other(format!(
                    "{}:{}: not a report row: {line}",
                    file.display(),
                    n + 1
                ))
            };
            let v: serde_json::Value = serde_json::from_str(line).map_err(|_| bad())?;
            let field = |k: &str| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .map(str::to_owned)
                    .ok_or_else(bad)
            };
            rows.push(Row {
                area: field("area")?,
                fault: field("fault")?,
                observed: field("observed")?,
                test: field("test")?,
            });
        }
    }
    Ok(rows)
}

/// The report as Markdown: one table per area, rows sorted by fault; a fault
/// recorded more than once by the same test (a loop, a retry) shows its last
/// outcome and how many times it was tried. `preamble` goes under the title.
pub fn render(rows: &[Row], preamble: &str) -> String {
    // area -> (fault, test) -> (times, last observed)
    type Faults<'a> = BTreeMap<(&'a str, &'a str), (usize, &'a str)>;
    let mut areas: BTreeMap<&str, Faults> = BTreeMap::new();
    for r in rows {
        let e = areas
            .entry(&r.area)
            .or_default()
            .entry((&r.fault, &r.test))
            .or_insert((0, ""));
        e.0 += 1;
        e.1 = &r.observed;
    }
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = String::from("# Robustness report\n\n");
    out.push_str(preamble.trim_end());
    out.push_str("\n\n");
    let total: usize = areas.values().map(BTreeMap::len).sum();
    out.push_str(&format!(
        "{total} faults and bad inputs in {} areas.\n",
        areas.len()
    ));
    for (area, faults) in &areas {
        out.push_str(&format!(
            "\n## {area}\n\n| Fault or input | Observed | Test |\n|---|---|---|\n"
        ));
        for ((fault, test), (times, observed)) in faults {
            let times = if *times > 1 {
                format!(" (×{times})")
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| {}{times} | {} | `{}` |\n",
                cell(fault),
                cell(observed),
                cell(test)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(area: &str, fault: &str, observed: &str, test: &str) -> Row {
        Row {
            area: area.into(),
            fault: fault.into(),
            observed: observed.into(),
            test: test.into(),
        }
    }

    #[test]
    fn rows_are_grouped_by_area_and_repeats_counted() {
        let rows = [
            row("trellisd", "SIGKILL", "restarted, 0 leaks", "soak::a"),
            row("CNI plugin", "bad | json", "code 6", "protocol::b"),
            row("trellisd", "SIGKILL", "restarted, 1 retried", "soak::a"),
        ];
        let md = render(&rows, "Made by a test.");
        assert!(md.contains("2 faults and bad inputs in 2 areas."), "{md}");
        let cni = md.find("## CNI plugin").unwrap();
        let d = md.find("## trellisd").unwrap();
        assert!(cni < d, "areas in order: {md}");
        assert!(
            md.contains("| bad \\| json | code 6 | `protocol::b` |"),
            "{md}"
        );
        assert!(
            md.contains("| SIGKILL (×2) | restarted, 1 retried | `soak::a` |"),
            "{md}"
        );
    }

    #[test]
    fn lines_written_are_read_back_and_garbage_is_an_error() {
        let dir = std::env::temp_dir().join(format!("trellis-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let line = serde_json::json!({"area": "a", "fault": "f", "observed": "o", "test": "t"});
        std::fs::write(dir.join("x.jsonl"), format!("{line}\n")).unwrap();
        assert_eq!(read(&dir).unwrap(), vec![row("a", "f", "o", "t")]);
        std::fs::write(dir.join("y.jsonl"), "not json\n").unwrap();
        let e = read(&dir).unwrap_err().to_string();
        assert!(e.contains("y.jsonl:1: not a report row"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! BIRD's control socket, spoken directly: what `birdc` does, without a
//! process per query, so that polling BIRD's table every few milliseconds
//! costs BIRD one CLI command and the bench one round trip on a unix socket.
//!
//! The protocol (BIRD 2): the daemon greets with `0001 BIRD 2.0.12 ready.`;
//! each command is one line; each reply line is a 4-digit code followed by
//! `-` (more lines follow) or a space (the last line), or a space alone (a
//! continuation of the previous code). Codes 8xxx and 9xxx are errors.

use anyhow::{Context, Result, bail, ensure};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// One connection to a BIRD's control socket.
pub struct BirdCtl {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl BirdCtl {
    /// Connects to the socket at `path` and reads the greeting.
    pub fn connect(path: &Path) -> Result<Self> {
        let s = UnixStream::connect(path)
            .with_context(|| format!("connect to BIRD's socket {}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let writer = s.try_clone()?;
        let mut c = BirdCtl {
            reader: BufReader::new(s),
            writer,
        };
        let hello = c.reply().context("BIRD's greeting")?;
        ensure!(
            hello.iter().any(|l| l.contains("ready")),
            "BIRD greeted with {hello:?}"
        );
        Ok(c)
    }

    /// Sends `command` and returns the text of its reply, one entry per line.
    pub fn command(&mut self, command: &str) -> Result<Vec<String>> {
        writeln!(self.writer, "{command}").context("write to BIRD's socket")?;
        self.reply().with_context(|| format!("BIRD: {command}"))
    }

    /// How many routes protocol `protocol` put in `table`.
    pub fn count(&mut self, table: &str, protocol: &str) -> Result<usize> {
        let reply = self.command(&format!(
            "show route table {table} protocol {protocol} count"
        ))?;
        reply
            .iter()
            .find_map(|l| parse_count(l))
            .with_context(|| format!("no route count in BIRD's reply {reply:?}"))
    }

    fn reply(&mut self) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .context("read BIRD's socket")?;
            ensure!(n > 0, "BIRD closed its socket");
            let line = line.trim_end_matches('\n');
            match parse_line(line) {
                Some((code, last, text)) => {
                    if code >= 8000 {
                        bail!("BIRD error {code}: {text}");
                    }
                    lines.push(text.to_owned());
                    if last {
                        return Ok(lines);
                    }
                }
                None => lines.push(line.trim_start().to_owned()),
            }
        }
    }
}

/// A coded reply line: (code, whether it is the last line, its text).
fn parse_line(line: &str) -> Option<(u32, bool, &str)> {
    let code = line.get(..4)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let last = match line.as_bytes().get(4) {
        Some(b' ') | None => true,
        Some(b'-') => false,
        _ => return None,
    };
    Some((code.parse().ok()?, last, line.get(5..).unwrap_or("")))
}

/// The matching count of `N of M routes for K networks in table T`.
fn parse_count(line: &str) -> Option<usize> {
    let mut w = line.split_whitespace();
    let n = w.next()?.parse().ok()?;
    (w.next()? == "of").then_some(n)
}

/// `BIRD version 2.0.12`, or why not.
pub fn version() -> String {
    match std::process::Command::new("bird").arg("--version").output() {
        Ok(o) => {
            let mut text = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            if text.is_empty() {
                text = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            }
            text
        }
        Err(e) => format!("? ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_coded_lines() {
        assert_eq!(
            parse_line("0001 BIRD 2.0.12 ready."),
            Some((1, true, "BIRD 2.0.12 ready."))
        );
        assert_eq!(
            parse_line("1007-10.0.0.0/26 unicast [n0]"),
            Some((1007, false, "10.0.0.0/26 unicast [n0]"))
        );
        assert_eq!(parse_line("0000"), Some((0, true, "")));
        assert_eq!(parse_line(" \tvia 10.99.0.1"), None);
        assert_eq!(parse_line("10.0"), None);
    }

    #[test]
    fn reads_bird_2_route_counts() {
        assert_eq!(
            parse_count("10000 of 10001 routes for 10001 networks in table master4"),
            Some(10000)
        );
        assert_eq!(
            parse_count("0 of 1 routes for 1 networks in table master6"),
            Some(0)
        );
        assert_eq!(parse_count("Total: 3 of 3 routes"), None);
        assert_eq!(parse_count("BIRD 2.0.12 ready."), None);
    }
}

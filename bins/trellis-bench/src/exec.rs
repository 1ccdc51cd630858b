//! Timed execs of a peer's binary from inside the benchmark's host namespace.
//!
//! A child process inherits the network namespace of the thread that forks it,
//! so the exec happens on a fresh thread that has joined the host namespace
//! ([`Netns::enter`]); the benchmark's own threads never move. The clock starts
//! after that thread exists and stops when the child has exited and its output
//! is read: spawn, the peer's work, exit. Thread creation and `setns` are not
//! timed (a runtime forks from a thread already in its namespace).

use anyhow::{Context, Result, ensure};
use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use trellis_testlab::Netns;

/// One exec: program, arguments, the whole environment, and what to write on stdin.
#[derive(Debug, Clone)]
pub struct Exec {
    /// Path of the binary.
    pub program: String,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// The child's entire environment (nothing is inherited).
    pub env: Vec<(String, OsString)>,
    /// Written to the child's stdin, which is then closed.
    pub stdin: String,
}

impl Exec {
    /// Runs the exec from a thread inside `host` and returns how long it took
    /// and what it printed on stdout; an error (with its output) if it failed.
    pub fn run_in(self, host: &Netns) -> Result<(Duration, String)> {
        host.enter(move || self.run_here())
    }

    fn run_here(self) -> Result<(Duration, String)> {
        let start = Instant::now();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.program))?;
        // A plugin that fails early may close stdin before reading it all; its
        // exit status and output below say why, so a write error is not fatal.
        let write = child
            .stdin
            .take()
            .context("child stdin")?
            .write_all(self.stdin.as_bytes());
        let out = child
            .wait_with_output()
            .with_context(|| format!("wait for {}", self.program))?;
        let took = start.elapsed();
        ensure!(
            out.status.success(),
            "{} {:?} failed ({}): {}{}{}",
            self.program,
            self.args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            write
                .err()
                .map(|e| format!(" (stdin: {e})"))
                .unwrap_or_default(),
        );
        Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
    }
}

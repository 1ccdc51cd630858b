//! Benchmark 2: N prefixes to a BIRD peer, from the speaker alone.
//!
//! The speaker runs in a child process ([`super::speaker`]) in the lab's
//! host namespace; BIRD (no kernel install: its table alone is timed) in
//! the router namespace. Once the session is Established and idle, four
//! steps, each timed from just before the child's `set_routes` (its
//! `CLOCK_MONOTONIC` stamp) to the first poll of BIRD's control socket that
//! sees the step done — polls every [`POLL`], so a time is late by at most
//! that plus one query:
//!
//! 1. announce N IPv4 /26s, until BIRD's `master4` holds N from the peer;
//! 2. withdraw them all (`set_routes` of nothing), until it holds none;
//! 3. (unless `--no-v6`) announce N IPv6 /122s, until `master6` holds N;
//! 4. withdraw them, until none.
//!
//! The steps run `--rounds` times on the one session (the first round pays
//! for cold caches and first allocations). After each step the child's
//! counters give the UPDATEs it took; after each step of the first round,
//! and after the last round, the child's and BIRD's VmRSS/VmHWM are read.

use super::birdctl::BirdCtl;
use super::lab::{self, BIRD_PROTOCOL, HOST, Lab};
use super::speaker;
use crate::daemon::{memory, tail};
use anyhow::{Context, Result, bail, ensure};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use trellis_testlab::Netns;

/// How often BIRD's table is counted during a step.
pub const POLL: Duration = Duration::from_millis(1);
/// How long one step may take.
pub const STEP_LIMIT: Duration = Duration::from_secs(60);

/// One step of the benchmark, over every round.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// What was done.
    pub label: String,
    /// Per round: `set_routes` → BIRD's table done.
    pub bird: Vec<Duration>,
    /// Per round: `set_routes` → the child saw the peer's `advertised`
    /// complete (the last UPDATE written to the socket).
    pub sent: Vec<Duration>,
    /// Per round: UPDATE messages the step took.
    pub updates: Vec<u64>,
    /// Prefixes announced or withdrawn in the step.
    pub prefixes: usize,
    /// The speaker's (VmRSS, VmHWM) after the step's first round, KiB.
    pub speaker: (u64, u64),
    /// BIRD's (VmRSS, VmHWM) after the step's first round, KiB.
    pub bird_memory: (u64, u64),
    /// Count queries made while waiting, and how long each took.
    pub queries: Vec<Duration>,
}

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct Bulk {
    /// Prefixes per family.
    pub prefixes: usize,
    /// The speaker's start → session Established and synced.
    pub session_up: Duration,
    /// Rounds of the steps.
    pub rounds: usize,
    /// The speaker's (VmRSS, VmHWM), session up, no routes, KiB.
    pub speaker_idle: (u64, u64),
    /// The speaker's (VmRSS, VmHWM) after the last round, KiB.
    pub speaker_end: (u64, u64),
    /// BIRD's, then.
    pub bird_idle: (u64, u64),
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// Runs the steps `rounds` times with `n` prefixes per family (`v6`:
/// IPv6 too), on one session.
pub fn run(n: usize, v6: bool, rounds: usize) -> Result<Bulk> {
    let lab = Lab::build(false);
    let mut child = Child::start(&lab.host, n)?;
    let up = child.ask("established")?;
    let (session_up, mut updates) = parse_ok(&up)?;
    lab.router
        .wait_established(IpAddr::V4(HOST), lab::ESTABLISH_WITHIN);
    let mut ctl = BirdCtl::connect(&lab.router.dir().join("bird.ctl"))?;
    let mut out = Bulk {
        prefixes: n,
        session_up,
        rounds,
        speaker_end: (0, 0),
        speaker_idle: memory(child.pid())?,
        bird_idle: lab.bird_memory()?,
        steps: Vec::new(),
    };
    let mut plan = vec![
        (
            "announce v4",
            "master4",
            n,
            format!("announce {n} IPv4 /26"),
        ),
        ("withdraw", "master4", 0, format!("withdraw {n} IPv4 /26")),
    ];
    if v6 {
        plan.push((
            "announce v6",
            "master6",
            n,
            format!("announce {n} IPv6 /122"),
        ));
        plan.push(("withdraw", "master6", 0, format!("withdraw {n} IPv6 /122")));
    }
    out.steps = plan
        .iter()
        .map(|p| Step {
            label: p.3.clone(),
            prefixes: n,
            ..Step::default()
        })
        .collect();
    for round in 0..rounds {
        for ((command, table, target, label), step) in plan.iter().zip(&mut out.steps) {
            child.send(command)?;
            let queries = wait_count(&mut ctl, table, *target).with_context(|| {
                format!(
                    "{label}, round {round}: BIRD's log:\n{}",
                    tail(&lab.router.log())
                )
            })?;
            let done = super::mono();
            let reply = child.read()?;
            let (t0, t1, counters) = parse_done(&reply)?;
            let now = counters["updates_out"]
                .as_u64()
                .with_context(|| format!("no updates_out in {counters}"))?;
            step.bird.push(done.saturating_sub(t0));
            step.sent.push(t1.saturating_sub(t0));
            step.updates.push(now - updates);
            step.queries.extend(queries);
            updates = now;
            if round == 0 {
                step.speaker = memory(child.pid())?;
                step.bird_memory = lab.bird_memory()?;
            }
        }
    }
    out.speaker_end = memory(child.pid())?;
    child.send("quit")?;
    child.wait()?;
    drop(ctl);
    drop(lab);
    Ok(out)
}

/// Polls BIRD until `table` holds `target` routes of the peer; how long
/// each query took.
fn wait_count(ctl: &mut BirdCtl, table: &str, target: usize) -> Result<Vec<Duration>> {
    let deadline = Instant::now() + STEP_LIMIT;
    let mut queries = Vec::new();
    loop {
        let asked = Instant::now();
        let n = ctl.count(table, BIRD_PROTOCOL)?;
        queries.push(asked.elapsed());
        if n == target {
            return Ok(queries);
        }
        ensure!(
            Instant::now() < deadline,
            "BIRD's {table} holds {n} routes of the peer, not {target}, after {STEP_LIMIT:?}"
        );
        std::thread::sleep(POLL);
    }
}

/// `ok <µs> <updates>` → (session up, UPDATEs sent so far).
fn parse_ok(reply: &str) -> Result<(Duration, u64)> {
    let mut w = reply.split(' ');
    match (w.next(), w.next(), w.next(), w.next()) {
        (Some("ok"), Some(us), Some(n), None) => match (us.parse(), n.parse()) {
            (Ok(us), Ok(n)) => Ok((Duration::from_micros(us), n)),
            _ => bail!("the speaker answered {reply:?}"),
        },
        _ => bail!("the speaker answered {reply:?}"),
    }
}

/// `done <t0> <t1> <counters>` → (t0, t1, counters).
fn parse_done(reply: &str) -> Result<(Duration, Duration, serde_json::Value)> {
    let mut w = reply.splitn(4, ' ');
    let (Some("done"), Some(t0), Some(t1), Some(json)) = (w.next(), w.next(), w.next(), w.next())
    else {
        bail!("the speaker answered {reply:?}");
    };
    let ns = |s: &str| -> Result<Duration> {
        Ok(Duration::from_nanos(
            s.parse().with_context(|| format!("{s:?} in {reply:?}"))?,
        ))
    };
    let counters = serde_json::from_str(json).with_context(|| format!("counters in {reply:?}"))?;
    Ok((ns(t0)?, ns(t1)?, counters))
}

/// The speaker child: this binary, `bgp-speaker`, in the host namespace.
struct Child {
    proc: std::process::Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
    // Last: removed after the child is gone.
    _dir: tempfile::TempDir,
}

impl Child {
    fn start(host: &Netns, n: usize) -> Result<Child> {
        let me = std::env::current_exe().context("where is this binary")?;
        let dir = tempfile::tempdir().context("tempdir for the speaker's log")?;
        let log = dir.path().join("speaker.log");
        let stderr = std::fs::File::create(&log).context("the speaker's log file")?;
        // The spawning thread is the main thread: PR_SET_PDEATHSIG fires
        // when the bench ends, not before.
        let mut proc = Command::new("ip")
            .args(["netns", "exec", host.name()])
            .arg(me)
            .args([speaker::SUBCOMMAND, "--prefixes", &n.to_string()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("spawn the speaker child")?;
        let stdin = proc.stdin.take().context("the child's stdin")?;
        let stdout = BufReader::new(proc.stdout.take().context("the child's stdout")?);
        Ok(Child {
            proc,
            stdin,
            stdout,
            log,
            _dir: dir,
        })
    }

    /// Its pid (`ip netns exec` execs it: the child is the speaker).
    fn pid(&self) -> u32 {
        self.proc.id()
    }

    fn send(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| anyhow::anyhow!("tell the speaker {line:?}: {e}\n{}", self.log()))
    }

    fn read(&mut self) -> Result<String> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .context("read the speaker")?;
        ensure!(n > 0, "the speaker exited:\n{}", self.log());
        Ok(line.trim_end().to_owned())
    }

    fn ask(&mut self, line: &str) -> Result<String> {
        self.send(line)?;
        self.read()
    }

    fn wait(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.proc.try_wait()?.is_none() {
            ensure!(
                Instant::now() < deadline,
                "the speaker still runs 10 s after quit"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn log(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.proc.try_wait() {
            let _ = self.proc.kill();
        }
        let _ = self.proc.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_speakers_done_line() {
        let (t0, t1, c) =
            parse_done(r#"done 1000000 3500000 {"updates_out":14,"opens_in":1}"#).unwrap();
        assert_eq!(t0, Duration::from_millis(1));
        assert_eq!(t1, Duration::from_micros(3500));
        assert_eq!(c["updates_out"].as_u64(), Some(14));
        assert!(parse_done("ok 12").is_err());
        assert_eq!(
            parse_ok("ok 1200 2").unwrap(),
            (Duration::from_micros(1200), 2)
        );
        assert!(parse_ok("ok 12").is_err());
        assert!(parse_ok("ok x 2").is_err());
        assert!(parse_done("done x 1 {}").is_err());
        assert!(parse_done("done 1 2 {").is_err());
    }
}

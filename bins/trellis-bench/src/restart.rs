//! `trellis-bench restart`: how long a node is without a working trellisd
//! when the daemon restarts with N endpoints on it.
//!
//! For each N, on a fresh host namespace: trellisd starts, creates the bridge
//! network (as the `grpc` benchmark's) and N endpoints are attached (untimed,
//! [`BATCH`] at a time, no published ports). Then the daemon is stopped twice
//! and started again on the same state directory and socket each time:
//!
//! * **kill**: SIGKILL, as a crash or an OOM kill; the store is not closed,
//!   the stale socket stays behind;
//! * **clean**: SIGTERM, waiting for it to exit, as systemd stops it.
//!
//! Each clock starts just before the spawn and reads two moments:
//!
//! * **start → serving**: the first `Status` call on the unix socket that is
//!   answered (a fresh connection and call every [`SERVING_POLL`]);
//! * **start → converged**: the first `Status` that answers `ready` (polled
//!   every [`READY_POLL`]), i.e. the start-up reconcile has finished.
//!
//! A trellisd that reconciles before it binds its socket serves and
//! converges at nearly the same moment; one that serves while it reconciles
//! answers `ready = false` first. After each restart, untimed: the daemon
//! must still list N endpoints and the host must hold the very same N veths
//! (same names and interface indexes): a restart must not destroy working
//! endpoints, and the run fails loudly if one did.

use crate::daemon::Daemon;
use crate::grpc::{Peer, Slot, wait_empty};
use crate::scenarios::SUBNET_BASE;
use crate::trellisd::{NETWORK, Trellisd};
use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tonic::transport::Channel;
use trellis_proto::v1::{AgentClient, ListEndpointsRequest, StatusRequest, StatusResponse};
use trellis_testlab::Netns;

/// The default endpoint counts.
pub const DEFAULT_COUNTS: [usize; 2] = [100, 1000];
/// Endpoints attached at once while filling the host (untimed).
pub const BATCH: usize = 50;
/// How often a connection and `Status` call are tried until one is answered.
pub const SERVING_POLL: Duration = Duration::from_millis(2);
/// How often `Status` is asked once it answers, until it says `ready`.
pub const READY_POLL: Duration = Duration::from_millis(5);
/// How long after the spawn the daemon may take to converge.
pub const CONVERGE_LIMIT: Duration = Duration::from_secs(180);
/// The endpoint count the targets are for.
pub const TARGET_N: usize = 1000;
/// The targets at [`TARGET_N`]: start → serving, ms.
pub const SERVING_TARGET_MS: f64 = 1000.0;
/// Start → converged, ms.
pub const CONVERGED_TARGET_MS: f64 = 5000.0;
/// Converged at 1000 at most this many times converged at 100.
pub const GROWTH_TARGET: f64 = 15.0;

/// How the daemon was stopped before it was started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL.
    Kill,
    /// SIGTERM, then waiting for the exit.
    Clean,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Stop::Kill => "kill",
            Stop::Clean => "clean",
        })
    }
}

/// One restart with `n` endpoints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Endpoints on the host.
    pub n: usize,
    /// How the daemon was stopped.
    pub stop: Stop,
    /// Spawn → first `Status` answered.
    pub serving: Duration,
    /// Spawn → first `Status` answering `ready`.
    pub converged: Duration,
}

/// Runs the restarts for every count of `counts` (ascending), each on a fresh
/// host namespace, with `binary`.
pub fn run(rt: &Runtime, binary: &Path, counts: &[usize]) -> Result<Vec<Outcome>> {
    let max = counts.iter().copied().max().unwrap_or(0);
    eprintln!("making {max} container namespaces ...");
    let containers: Vec<Netns> = (0..max).map(|i| Netns::new(&format!("r{i}"))).collect();
    let mut outcomes = Vec::new();
    for &n in counts {
        eprintln!("running: restarts with {n} endpoints ...");
        let t = Instant::now();
        let host = Netns::new("restart-host");
        let result = restarts(rt, binary, &host, &containers[..n]);
        // The daemon is dead; deleting the host takes the veths with it.
        drop(host);
        wait_empty(&[&containers[0], &containers[n - 1]])?;
        eprintln!("  done in {:.1} s", t.elapsed().as_secs_f64());
        outcomes.extend(result.with_context(|| format!("restarts with {n} endpoints"))?);
    }
    Ok(outcomes)
}

/// Fills `host` with one endpoint per container, then kills and restarts
/// the daemon, then stops and restarts it.
fn restarts(
    rt: &Runtime,
    binary: &Path,
    host: &Netns,
    containers: &[Netns],
) -> Result<Vec<Outcome>> {
    let n = containers.len();
    let subnet = format!("{SUBNET_BASE}/16");
    let mut trellisd = Trellisd::start(rt, binary, host, &subnet)?;
    let slots: Vec<Slot> = containers
        .iter()
        .enumerate()
        .map(|(index, ns)| Slot {
            index,
            id: format!("restart{index}"),
            netns: ns.path(),
            port: None,
        })
        .collect();
    for batch in slots.chunks(BATCH) {
        trellisd.attach_concurrently(batch)?;
    }
    let before = veths(host);
    ensure!(
        before.len() == n,
        "host has {} veths after {n} attaches",
        before.len()
    );
    let mut outcomes = Vec::new();
    for stop in [Stop::Kill, Stop::Clean] {
        let daemon = trellisd.daemon_mut();
        match stop {
            Stop::Kill => daemon.kill()?,
            Stop::Clean => daemon.stop()?,
        }
        let start = Instant::now();
        daemon.start_again()?;
        let (serving, converged) = rt.block_on(watch(daemon, start, n))?;
        rt.block_on(check_endpoints(daemon.socket(), n))
            .with_context(|| format!("after a restart ({stop}) with {n} endpoints"))?;
        let after = veths(host);
        ensure!(
            after == before,
            "after a restart ({stop}) with {n} endpoints the host has {} veths, and {} of the {n} \
             there before are gone: a restart must not destroy working endpoints",
            after.len(),
            before.difference(&after).count()
        );
        outcomes.push(Outcome {
            n,
            stop,
            serving,
            converged,
        });
    }
    Ok(outcomes)
}

/// The host's veths as `ifindex: name` (a veth made again gets a new index).
fn veths(host: &Netns) -> BTreeSet<String> {
    host.ip("-o link show type veth")
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            Some(format!("{}:{}", f.next()?, f.next()?))
        })
        .collect()
}

/// One fresh connection and one `Status` call.
async fn status_once(socket: &Path) -> Result<(AgentClient<Channel>, StatusResponse)> {
    let mut client = trellis_proto::connect_unix(socket).await?;
    let status = client.status(StatusRequest {}).await?.into_inner();
    Ok((client, status))
}

/// Watches the daemon spawned at `start` with `n` endpoints: the times to
/// its first answer and to its first `ready`.
async fn watch(daemon: &mut Daemon, start: Instant, n: usize) -> Result<(Duration, Duration)> {
    let alive = |daemon: &mut Daemon| -> Result<()> {
        if let Some(status) = daemon.exited()? {
            bail!(
                "trellisd with {n} endpoints exited while starting ({status}):\n{}",
                daemon.log()
            );
        }
        ensure!(
            start.elapsed() < CONVERGE_LIMIT,
            "trellisd with {n} endpoints has not converged {} s after its start:\n{}",
            CONVERGE_LIMIT.as_secs(),
            daemon.log()
        );
        Ok(())
    };
    let call = Duration::from_secs(1);
    let (mut client, mut status) = loop {
        alive(daemon)?;
        if let Ok(Ok(answer)) = tokio::time::timeout(call, status_once(daemon.socket())).await {
            break answer;
        }
        tokio::time::sleep(SERVING_POLL).await;
    };
    let serving = start.elapsed();
    while !status.ready {
        alive(daemon)?;
        tokio::time::sleep(READY_POLL).await;
        status = client
            .status(StatusRequest {})
            .await
            .context("Status while converging")?
            .into_inner();
    }
    Ok((serving, start.elapsed()))
}

/// Whether the daemon on `socket` counts and lists `n` endpoints.
async fn check_endpoints(socket: &Path, n: usize) -> Result<()> {
    let (mut client, status) = status_once(socket).await?;
    ensure!(
        status.endpoints as usize == n,
        "Status counts {} endpoints, expected {n}",
        status.endpoints
    );
    let listed = client
        .list_endpoints(ListEndpointsRequest {
            network: NETWORK.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .endpoints
        .len();
    ensure!(
        listed == n,
        "ListEndpoints lists {listed} endpoints, expected {n}"
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The table: one row per restart, the targets and a verdict beside
/// the rows at [`TARGET_N`].
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{:>6}  {:<7}  {:>15}  {:>17}  {}\n",
        "N", "stopped", "start→serving", "start→converged", "target"
    );
    for o in outcomes {
        let (serving, converged) = (ms(o.serving), ms(o.converged));
        let target = if o.n == TARGET_N {
            let mut missed = Vec::new();
            if serving > SERVING_TARGET_MS {
                missed.push("serving");
            }
            if converged > CONVERGED_TARGET_MS {
                missed.push("converged");
            }
            let verdict = if missed.is_empty() {
                "pass".to_owned()
            } else {
                format!("MISS: {}", missed.join(", "))
            };
            format!("serving≤{SERVING_TARGET_MS} ms, converged≤{CONVERGED_TARGET_MS} ms  {verdict}")
        } else {
            String::new()
        };
        let row = format!(
            "{:>6}  {:<7}  {:>12.1} ms  {:>14.1} ms  {target}",
            o.n, o.stop, serving, converged
        );
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

/// What is printed under the header: [`table`], [`ratios`], the targets.
pub fn report(outcomes: &[Outcome]) -> String {
    let mut out = table(outcomes);
    out.push('\n');
    for line in ratios(outcomes) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!(
        "targets (issue 10), at {TARGET_N} endpoints: serving ≤{SERVING_TARGET_MS} ms, \
         converged ≤{CONVERGED_TARGET_MS} ms; converged @1000 ≤{GROWTH_TARGET}× converged @100\n"
    ));
    out
}

/// Per stop kind: converged at the largest N over converged at the
/// smallest, judged against [`GROWTH_TARGET`] when those are 1000 and 100.
pub fn ratios(outcomes: &[Outcome]) -> Vec<String> {
    let mut lines = Vec::new();
    for stop in [Stop::Kill, Stop::Clean] {
        let of_kind: Vec<&Outcome> = outcomes.iter().filter(|o| o.stop == stop).collect();
        let (Some(lo), Some(hi)) = (
            of_kind.iter().min_by_key(|o| o.n),
            of_kind.iter().max_by_key(|o| o.n),
        ) else {
            continue;
        };
        if lo.n == hi.n {
            continue;
        }
        let r = ms(hi.converged) / ms(lo.converged);
        let verdict = match (lo.n, hi.n) {
            (100, TARGET_N) if r <= GROWTH_TARGET => "pass",
            (100, TARGET_N) => "MISS",
            _ => "not judged: the target is for 1000 / 100",
        };
        lines.push(format!(
            "converged @{} / @{}, {stop}: {:.1} ms / {:.1} ms = {r:.1}× (target @1000/@100 ≤{GROWTH_TARGET}×: {verdict})",
            hi.n,
            lo.n,
            ms(hi.converged),
            ms(lo.converged)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(n: usize, stop: Stop, serving: u64, converged: u64) -> Outcome {
        Outcome {
            n,
            stop,
            serving: Duration::from_millis(serving),
            converged: Duration::from_millis(converged),
        }
    }

    #[test]
    fn the_table_judges_only_the_rows_at_1000() {
        let t = table(&[
            o(100, Stop::Kill, 50, 60),
            o(1000, Stop::Kill, 900, 5200),
            o(1000, Stop::Clean, 800, 4000),
        ]);
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(
            rows,
            [
                "     N  stopped    start→serving    start→converged  target",
                "   100  kill             50.0 ms            60.0 ms",
                "  1000  kill            900.0 ms          5200.0 ms  serving≤1000 ms, converged≤5000 ms  MISS: converged",
                "  1000  clean           800.0 ms          4000.0 ms  serving≤1000 ms, converged≤5000 ms  pass",
            ]
        );
    }

    #[test]
    fn ratios_set_the_largest_count_against_the_smallest_per_stop_kind() {
        let all = [
            o(100, Stop::Kill, 50, 100),
            o(1000, Stop::Kill, 60, 1600),
            o(100, Stop::Clean, 50, 200),
            o(1000, Stop::Clean, 60, 1000),
        ];
        assert_eq!(
            ratios(&all),
            [
                "converged @1000 / @100, kill: 1600.0 ms / 100.0 ms = 16.0× (target @1000/@100 ≤15×: MISS)",
                "converged @1000 / @100, clean: 1000.0 ms / 200.0 ms = 5.0× (target @1000/@100 ≤15×: pass)",
            ]
        );
        let small = [o(20, Stop::Kill, 5, 10), o(100, Stop::Kill, 6, 30)];
        assert_eq!(
            ratios(&small),
            [
                "converged @100 / @20, kill: 30.0 ms / 10.0 ms = 3.0× (target @1000/@100 ≤15×: not judged: the target is for 1000 / 100)"
            ]
        );
        assert!(
            ratios(&[o(100, Stop::Kill, 5, 10)]).is_empty(),
            "one count: no ratio"
        );
    }
}

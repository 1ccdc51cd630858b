//! The controller under load: a fresh trellis-controller (its own
//! namespace, its state in a temporary directory — or, on etcd, a fresh
//! etcd cluster on that namespace's loopback — its unix socket only,
//! default lease) driven by a [`Fleet`] of simulated nodes, its CPU read
//! from `/proc/<pid>/stat` and its memory from `/proc/<pid>/status`.
//!
//! In order:
//! 1. **claims, quiet**: `claimers` registered nodes claim `claims` blocks
//!    between them, each node one claim after another, all nodes at once;
//! 2. **join**: the rest of the `nodes` register (64 at a time) and keep
//!    their leases from then on;
//! 3. each of them claims one block (64 at once), then every node reports
//!    its usage once (the writes a node's first report after a claim
//!    makes);
//! 4. **watches**: every node opens a Watch (32 at a time, each waiting
//!    for its snapshot), as nodes joining one after another would;
//! 5. **claims, watched**: the claimers claim `watched_claims` more, each
//!    claim fanned out to every watcher; then how long until every watcher
//!    has seen every one of them;
//! 6. **steady window**: nothing but the nodes' KeepAlives (usage
//!    unchanged) and idle watches, for `window`: the controller's CPU over
//!    it; then its RSS and peak RSS, and whether every node is still alive;
//! 7. the watches closed (the leases still kept), the RSS again: what the
//!    watch streams themselves hold.

use super::fleet::{ClaimRun, Fleet};
use super::procfs::{CpuMeter, CpuUse};
use super::store::{Backing, REPLICA_PORT, Store, wait_for_office};
use crate::daemon::Daemon;
use anyhow::{Context, Result, ensure};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use trellis_proto::v1::{self as pb, ControllerClient};
use trellis_testlab::Netns;

/// The pool every claim of the load comes from: 262 144 blocks of /26.
pub const LOAD_POOL: (&str, &str) = ("load-v4", "10.0.0.0/8");
/// Registrations, per-node claims and usage reports in flight at once.
pub const PARALLEL: usize = 64;
/// Watches being opened at once.
pub const WATCH_PARALLEL: usize = 32;
/// How long every watcher may take to see the watched claims.
pub const FANOUT_LIMIT: Duration = Duration::from_secs(60);

/// What the load is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    /// Simulated nodes in all.
    pub nodes: usize,
    /// Of which this many make the claims of steps 1 and 5.
    pub claimers: usize,
    /// Claims of step 1.
    pub claims: usize,
    /// Claims of step 5.
    pub watched_claims: usize,
    /// Whether the nodes watch (steps 4, 5).
    pub watch: bool,
    /// The steady window.
    pub window: Duration,
}

/// What one step cost: its wall time, the controller's CPU and the load
/// generator's (this process: on a small machine the two share the cores,
/// so a busy generator slows the controller down), and the controller's
/// VmRSS when it ended.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// Wall time.
    pub wall: Duration,
    /// The controller's CPU over it.
    pub cpu: CpuUse,
    /// The load generator's CPU over it.
    pub gen_cpu: CpuUse,
    /// The controller's VmRSS at its end, KiB.
    pub rss: u64,
}

/// The meters of one step.
struct Meters<'a> {
    daemon: &'a Daemon,
    ctl: CpuMeter,
    gen_cpu: CpuMeter,
    start: Instant,
}

impl<'a> Meters<'a> {
    fn start(daemon: &'a Daemon, ticks: u64) -> Result<Self> {
        Ok(Meters {
            daemon,
            ctl: CpuMeter::start(daemon.pid(), ticks)?,
            gen_cpu: CpuMeter::start(std::process::id(), ticks)?,
            start: Instant::now(),
        })
    }

    fn stop(&self) -> Result<Timed> {
        Ok(Timed {
            wall: self.start.elapsed(),
            cpu: self.ctl.stop()?,
            gen_cpu: self.gen_cpu.stop()?,
            rss: self.daemon.memory()?.0,
        })
    }
}

/// What the load measured.
#[derive(Debug)]
pub struct Load {
    /// Step 1.
    pub quiet: (ClaimRun, Timed),
    /// Step 2.
    pub join: Timed,
    /// Step 3: the claims.
    pub node_claims: (ClaimRun, Timed),
    /// Step 3: the usage reports.
    pub usage: Timed,
    /// Step 4, when the nodes watch, and the largest snapshot's encoded
    /// size in bytes and its number of parts.
    pub watches: Option<(Timed, (usize, usize))>,
    /// Step 5, when the nodes watch, and how long after the last claim's
    /// answer every watcher had seen every claim (or why not).
    pub watched: Option<(ClaimRun, Timed, Result<Duration, String>)>,
    /// Step 6.
    pub window: Timed,
    /// KeepAlives answered, and failed, over the window.
    pub keepalives: (u64, u64),
    /// The keep-alive interval the controller answered.
    pub interval: Duration,
    /// (VmRSS, VmHWM) KiB after the window.
    pub memory: (u64, u64),
    /// VmRSS KiB of the controller just started, before any node.
    pub idle_rss: u64,
    /// Step 7: VmRSS KiB a second after the watches closed.
    pub unwatched_rss: Option<u64>,
    /// Its status after the window.
    pub status: pb::ControllerStatusResponse,
    /// The first failure of a KeepAlive or a Watch, if any.
    pub first_failure: Option<String>,
    /// Watch streams that failed.
    pub watch_failures: u64,
    /// On etcd: each member's (VmRSS, VmHWM) KiB after the window.
    pub etcd_memory: Option<Vec<(u64, u64)>>,
}

/// Runs the load of `plan` against a fresh controller `binary` on a fresh
/// `store`.
pub fn run(rt: &Runtime, binary: &Path, plan: &LoadPlan, ticks: u64, store: Store) -> Result<Load> {
    let ns = Netns::new("ctl2");
    let backing = Backing::start(store, &ns)?;
    let args = backing.controller_args("ctl-0", REPLICA_PORT);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = Daemon::start_with(binary, &ns, &args)?;
    let result = rt
        .block_on(wait_for_office(daemon.socket()))
        .and_then(|_| drive(rt, &daemon, plan, ticks));
    let mut load = result
        .with_context(|| format!("controller log (tail):\n{}{}", daemon.log(), backing.logs()))?;
    if let Some(etcd) = &backing.etcd {
        load.etcd_memory = Some(etcd.memory()?);
    }
    Ok(load)
}

fn drive(rt: &Runtime, daemon: &Daemon, plan: &LoadPlan, ticks: u64) -> Result<Load> {
    let meter = || Meters::start(daemon, ticks);
    let socket = daemon.socket();
    let idle_rss = daemon.memory()?.0;
    let step = |what: String| eprintln!("  load: {what} ...");
    rt.block_on(async {
        let mut admin = ControllerClient::new(trellis_proto::channel_unix(socket).await?);
        admin
            .create_pool(pb::CreatePoolRequest {
                spec: Some(pb::PoolSpec {
                    name: LOAD_POOL.0.into(),
                    prefix: LOAD_POOL.1.into(),
                    mode: pb::PoolMode::Routed.into(),
                    max_blocks_per_node: 1 << 20,
                    ..Default::default()
                }),
            })
            .await?;
        let mut fleet = Fleet::new();
        let k = plan.claimers.min(plan.nodes);
        fleet.join(socket, 0..k, PARALLEL).await?;
        step(format!("{} claims by {k} nodes", plan.claims));
        let m = meter()?;
        let quiet = fleet.claim_many(0..k, LOAD_POOL.0, plan.claims).await;
        let quiet = (quiet, m.stop()?);

        step(format!("{} nodes register", plan.nodes - k));
        let m = meter()?;
        fleet.join(socket, k..plan.nodes, PARALLEL).await?;
        let join = m.stop()?;
        step(format!("{} nodes claim one block each", plan.nodes - k));
        let m = meter()?;
        let claims = fleet.claim_each(k..plan.nodes, LOAD_POOL.0, PARALLEL).await;
        let node_claims = (claims, m.stop()?);
        let m = meter()?;
        fleet.report_usage(PARALLEL).await?;
        let usage = m.stop()?;

        let (mut watches, mut watched) = (None, None);
        if plan.watch {
            step(format!("{} watches open", plan.nodes));
            let m = meter()?;
            let snapshot = fleet.watch_all(WATCH_PARALLEL).await?;
            watches = Some((m.stop()?, snapshot));
            step(format!(
                "{} claims, watched by {}",
                plan.watched_claims, plan.nodes
            ));
            watched = Some(watched_claims(&fleet, k, plan, &meter).await?);
        }

        step(format!("steady window of {} s", plan.window.as_secs()));
        let before = counts(&fleet);
        let m = meter()?;
        tokio::time::sleep(plan.window).await;
        let window = m.stop()?;
        let after = counts(&fleet);
        let memory = daemon.memory()?;
        let status = admin
            .controller_status(pb::ControllerStatusRequest {})
            .await?
            .into_inner();
        let mut unwatched_rss = None;
        if plan.watch {
            fleet.close_watches().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            unwatched_rss = Some(daemon.memory()?.0);
        }
        let c = &fleet.counters;
        let first_failure = c
            .first_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        anyhow::Ok(Load {
            quiet,
            join,
            node_claims,
            usage,
            watches,
            watched,
            window,
            keepalives: (after.0 - before.0, after.1 - before.1),
            interval: fleet.interval,
            memory,
            idle_rss,
            unwatched_rss,
            status,
            first_failure,
            watch_failures: c.watch_failures.load(Ordering::Relaxed),
            etcd_memory: None,
        })
    })
}

/// (KeepAlives answered, failed) so far.
fn counts(fleet: &Fleet) -> (u64, u64) {
    let c = &fleet.counters;
    (
        c.keepalives.load(Ordering::Relaxed),
        c.keepalive_failures.load(Ordering::Relaxed),
    )
}

/// Step 5: the claims, the CPU over them, and when every watcher had seen
/// every one (counted from the end of the claims).
async fn watched_claims<'a>(
    fleet: &Fleet,
    k: usize,
    plan: &LoadPlan,
    meter: &impl Fn() -> Result<Meters<'a>>,
) -> Result<(ClaimRun, Timed, Result<Duration, String>)> {
    let seen = || fleet.counters.block_events.load(Ordering::Relaxed);
    let base = seen();
    let m = meter()?;
    let run = fleet
        .claim_many(0..k, LOAD_POOL.0, plan.watched_claims)
        .await;
    let done = Instant::now();
    let want = base + (run.latencies.len() * fleet.nodes.len()) as u64;
    let fanout = loop {
        if seen() >= want {
            break Ok(done.elapsed());
        }
        if done.elapsed() > FANOUT_LIMIT
            || fleet.counters.watch_failures.load(Ordering::Relaxed) > 0
        {
            break Err(format!(
                "after {:.1} s the watchers had seen {} of {} claims",
                done.elapsed().as_secs_f64(),
                seen() - base,
                want - base
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let timed = m.stop()?;
    ensure!(
        !run.latencies.is_empty(),
        "every watched claim failed: {:?}",
        run.first_error
    );
    Ok((run, timed, fanout))
}

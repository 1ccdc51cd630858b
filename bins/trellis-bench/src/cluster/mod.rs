//! `trellis-bench cluster`: cluster mode against its targets (issue 11),
//! every figure measured in one run on one machine, with the real binaries.
//!
//! 1. **Attach stays local.** Attach p50/p90/p99 on a node joined to the
//!    controller (network `pods`, from a routed pool of /26 blocks) beside
//!    the same on a standalone node (a routed /16), interleaved round by
//!    round on the same lab ([`attach`]). Target: cluster p50 within 10 %
//!    of standalone.
//! 2. **A new block is routed everywhere fast.** A block claimed for node A
//!    → the route to it in node B's kernel, timed by an rtnetlink monitor
//!    in B's namespace ([`routes`]). Target: p99 ≤ 100 ms.
//! 3. **The controller scales.** On a fresh controller: block claims per
//!    second from several nodes at once; then 1000 simulated nodes (a load
//!    generator speaking the controller API, [`fleet`]) register, claim,
//!    watch and keep their leases; the controller's CPU over a steady
//!    window and its RSS ([`load`]). Target: RSS ≤ 100 MB.
//!
//! Everything runs in namespaces the bench makes ([`rig`]); the daemons
//! talk over unix sockets only, so no traffic leaves the lab, and a Ctrl-C
//! kills the daemons (they are registered in [`crate::daemon`]) and removes
//! the namespaces.

mod attach;
mod fleet;
mod load;
mod procfs;
mod report;
mod rig;
mod routes;

use crate::daemon;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use trellis_proto::v1::{self as pb, ControllerClient};
use trellis_testlab::require_root;

/// Default samples of figures 1 and 2.
pub const DEFAULT_SAMPLES: usize = 100;
/// Default simulated nodes.
pub const DEFAULT_NODES: usize = 1000;
/// Default claims of the quiet claim rate.
pub const DEFAULT_CLAIMS: usize = 1000;
/// Default steady window, seconds.
pub const DEFAULT_WINDOW_SECS: usize = 15;
/// Nodes making the claims of the claim-rate figures.
pub const CLAIMERS: usize = 8;
/// Claims made while every simulated node watches.
pub const WATCHED_CLAIMS: usize = 100;

/// The options of `trellis-bench cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Samples of figures 1 and 2.
    pub samples: usize,
    /// Simulated nodes of figure 3.
    pub nodes: usize,
    /// Claims of the quiet claim rate.
    pub claims: usize,
    /// The steady window.
    pub window_secs: usize,
    /// Whether the simulated nodes watch.
    pub watch: bool,
    /// The trellisd binary, if named.
    pub trellisd: Option<PathBuf>,
    /// The trellis-controller binary, if named.
    pub controller: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            samples: DEFAULT_SAMPLES,
            nodes: DEFAULT_NODES,
            claims: DEFAULT_CLAIMS,
            window_secs: DEFAULT_WINDOW_SECS,
            watch: true,
            trellisd: None,
            controller: None,
        }
    }
}

impl crate::Flags for Options {
    fn flag<'a>(&mut self, flag: &'a str, rest: &mut dyn Iterator<Item = &'a str>) -> Result<bool> {
        match flag {
            "--samples" => self.samples = crate::number(rest, flag, 1..=10_000)?,
            // Underlay addresses 10.200.0.1 … stay distinct up to here.
            "--nodes" => self.nodes = crate::number(rest, flag, 1..=50_000)?,
            "--claims" => self.claims = crate::number(rest, flag, 1..=100_000)?,
            "--window" => self.window_secs = crate::number(rest, flag, 1..=600)?,
            "--no-watch" => self.watch = false,
            "--trellisd" => self.trellisd = Some(crate::path(rest, flag)?),
            "--controller" => self.controller = Some(crate::path(rest, flag)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Runs the benchmark and prints its tables.
pub fn run(o: &Options) -> Result<()> {
    require_root();
    let trellisd = daemon::locate(o.trellisd.as_deref())?;
    let controller = daemon::locate_binary(
        o.controller.as_deref(),
        "trellis-controller",
        "--controller",
    )?;
    let ticks = procfs::clock_ticks()?;
    crate::print_header(&format!(
        "trellis-bench cluster: attach on a cluster node vs standalone ({s} rounds), block claim → \
         route on another node ({s} claims), controller claim rate and {n} simulated nodes",
        s = o.samples,
        n = o.nodes
    ));
    println!("trellisd: {}", trellisd.display());
    println!("trellis-controller: {}", controller.display());
    println!(
        "what: the real daemons in the bench's namespaces, over unix sockets only (the \
         controller serves its socket; trellisd --controller unix:…). Latencies are timed from \
         before a request to its decoded answer; a route from the claim to the kernel's \
         notification in B's namespace. The controller's CPU is utime+stime from /proc/<pid>/stat \
         over the window, as % of one core; RSS is VmRSS/VmHWM."
    );
    let run_start = Instant::now();
    let rt = crate::runtime()?;

    eprintln!("building the cluster lab: controller, h1 and h2 joined, h3 standalone ...");
    let mut rig = rig::Rig::start(&rt, &trellisd, &controller)?;
    eprintln!(
        "running: {} interleaved attach/detach rounds ...",
        o.samples
    );
    let attach = attach::interleaved(&rt, &mut rig.a, &mut rig.solo, o.samples)?;
    eprintln!(
        "running: {} claims for h1, each until routed on h2 ...",
        o.samples
    );
    let routes =
        routes::claim_to_route(&rt, &mut rig.ctl, rig.a.name, &rig.lab.hosts[1], o.samples)
            .with_context(|| {
                format!(
                    "h2's log (tail):\n{}\ncontroller's log (tail):\n{}",
                    rig.b.daemon.log(),
                    rig.controller.log()
                )
            })?;
    let held = blocks_of(&rt, &mut rig.ctl, rig::CLUSTER_POOL.0, rig.a.name)?;
    drop(rig);

    let plan = load::LoadPlan {
        nodes: o.nodes,
        claimers: CLAIMERS,
        claims: o.claims,
        watched_claims: WATCHED_CLAIMS,
        watch: o.watch,
        window: Duration::from_secs(o.window_secs as u64),
    };
    eprintln!("running: a fresh controller under load ...");
    let load = load::run(&rt, &controller, &plan, ticks)?;

    println!();
    print!("{}", report::latencies(&attach, &routes));
    println!(
        "h1 held {held} block(s) of {} after the attaches: allocation stayed on the node.",
        rig::CLUSTER_POOL.0
    );
    println!(
        "{} of {} routes were in B's kernel before the bench had the claim's answer (counted 0 \
         from the answer).",
        routes.route_first,
        routes.from_answer.len()
    );
    println!();
    print!("{}", report::controller(&load, &plan));
    println!(
        "ctl CPU / gen CPU: the controller's / the load generator's (this process, on the same \
         cores) CPU over the step, % of one core; RSS MB: the controller's VmRSS at the step's end."
    );
    if let Some(f) = &load.first_failure {
        println!(
            "first KeepAlive/Watch failure: {f} ({} watch streams failed)",
            load.watch_failures
        );
    }
    println!("total run time {:.0} s", run_start.elapsed().as_secs_f64());
    Ok(())
}

/// How many blocks of `pool` node `node` holds.
fn blocks_of(
    rt: &tokio::runtime::Runtime,
    ctl: &mut ControllerClient<Channel>,
    pool: &str,
    node: &str,
) -> Result<usize> {
    let r = rt.block_on(ctl.list_blocks(pb::ListBlocksRequest {
        pool: pool.into(),
        node: node.into(),
    }))?;
    Ok(r.into_inner().blocks.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_option() {
        let o: Options = crate::options([
            "--samples",
            "20",
            "--nodes",
            "300",
            "--claims",
            "50",
            "--window",
            "5",
            "--no-watch",
            "--trellisd",
            "/x/trellisd",
            "--controller",
            "/x/trellis-controller",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (o.samples, o.nodes, o.claims, o.window_secs),
            (20, 300, 50, 5)
        );
        assert!(!o.watch);
        assert_eq!(o.trellisd, Some("/x/trellisd".into()));
        assert_eq!(o.controller, Some("/x/trellis-controller".into()));
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for bad in [
            &["--samples", "0"][..],
            &["--nodes", "60000"],
            &["--window"],
            &["--controller"],
            &["--max", "3"],
        ] {
            let o = crate::options::<Options>(bad.iter().copied());
            assert!(o.is_err(), "{bad:?}");
        }
    }
}

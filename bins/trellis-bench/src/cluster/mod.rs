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
//! kills the daemons (they are registered in [`crate::daemon`]) and etcd
//! ([`crate::etcd`]) and removes the namespaces.
//!
//! **On etcd** (issue 13; `--store etcd`, or `--store redb,etcd` for both
//! in one run, the store-bound figures side by side at the end): figures 2
//! and 3 again with the controller on a fresh three-member etcd cluster
//! (Debian's etcd, on the loopback of the controller's namespace; a fresh
//! one for the load too), the controller one replica on it. The target of
//! figure 2 is then issue 13's, p99 ≤ 250 ms. Then, with etcd among the
//! stores, **leader failover** ([`failover`]): three replicas on etcd, the
//! leader killed `--failovers` times (default 5; 0 skips it); kill → a
//! replica serving, and kill → a node's claim answered again through
//! trellis-member's client over every replica's address. Target: ≤ 5 s.
//!
//! Why here, not a bench of its own: the store-bound figures are this
//! bench's own measurements on another store, best read beside the redb
//! ones in the same tables; failover is the one figure that needs a rig of
//! its own, and it is cheap (about 3 s a round), so one command prints
//! every figure issue 13 asks for.

mod attach;
mod failover;
mod fleet;
mod load;
mod procfs;
mod report;
mod rig;
mod routes;
mod store;

use crate::daemon;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};
pub use store::Store;
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
/// Default leader failovers, with etcd among the stores.
pub const DEFAULT_FAILOVERS: usize = 5;

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
    /// The stores the controller runs on, one whole run each, in order.
    pub stores: Vec<Store>,
    /// Leader failovers to time, with etcd among the stores.
    pub failovers: usize,
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
            stores: vec![Store::Redb],
            failovers: DEFAULT_FAILOVERS,
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
            "--store" => {
                let list = rest
                    .next()
                    .context("--store needs redb, etcd or redb,etcd")?;
                self.stores = Store::parse_list(list)?;
            }
            "--failovers" => self.failovers = crate::number(rest, flag, 0..=100)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// What one store's run measured.
pub struct StoreRun {
    /// The store the controller ran on.
    pub store: Store,
    /// Figure 1.
    pub attach: attach::Interleaved,
    /// Figure 2.
    pub routes: routes::Propagation,
    /// Blocks of the cluster pool A held after the attaches.
    pub held: usize,
    /// Figure 3.
    pub load: load::Load,
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
    let on_etcd = o.stores.contains(&Store::Etcd);
    let failovers = if on_etcd { o.failovers } else { 0 };
    let names: Vec<&str> = o.stores.iter().map(|s| s.name()).collect();
    let failover_title = if failovers > 0 {
        format!(", leader failover on etcd ({failovers} rounds)")
    } else {
        String::new()
    };
    crate::print_header(&format!(
        "trellis-bench cluster: attach on a cluster node vs standalone ({s} rounds), block claim → \
         route on another node ({s} claims), controller claim rate and {n} simulated nodes; \
         controller store: {stores}{failover_title}",
        s = o.samples,
        n = o.nodes,
        stores = names.join(", then "),
    ));
    println!("trellisd: {}", trellisd.display());
    println!("trellis-controller: {}", controller.display());
    if on_etcd {
        println!(
            "etcd: {} ({} members per cluster, each cluster fresh)",
            crate::etcd::version()?,
            store::ETCD_MEMBERS
        );
    }
    println!(
        "what: the real daemons in the bench's namespaces, over unix sockets only (the \
         controller serves its socket; trellisd --controller unix:…). Latencies are timed from \
         before a request to its decoded answer; a route from the claim to the kernel's \
         notification in B's namespace. The controller's CPU is utime+stime from /proc/<pid>/stat \
         over the window, as % of one core; RSS is VmRSS/VmHWM."
    );
    if on_etcd {
        println!(
            "on etcd: {m} etcd members on the loopback of the controller's namespace (fresh for \
             the lab and again for the load), the controller one replica on them (--store \
             etcd://…, electing itself before the run; it also listens on 127.0.0.1:{p} there, \
             unused); its nodes and the load still on its unix socket.",
            m = store::ETCD_MEMBERS,
            p = store::REPLICA_PORT
        );
    }
    if failovers > 0 {
        println!(
            "failover: {r} replicas on {m} etcd members in a namespace of their own, each on \
             127.0.0.1:PORT there (--insecure-tcp, --advertise-url http://127.0.0.1:PORT, \
             --leader-ttl {ttl}); the bench's clients in that namespace over TCP. Each round the \
             leader is SIGKILLed; from the kill: the survivors asked ControllerStatus every {pr} \
             ms until one answers OK; a node's ClaimBlock through trellis-member's GrpcController \
             given all {r} addresses, retried every {cr} ms, until answered OK. Then the killed \
             replica is started again and must follow the new leader.",
            r = failover::REPLICAS,
            m = store::ETCD_MEMBERS,
            ttl = failover::LEADER_TTL,
            pr = failover::PROBE_EVERY.as_millis(),
            cr = failover::CLAIM_RETRY.as_millis(),
        );
    }
    let run_start = Instant::now();
    let rt = crate::runtime()?;
    let plan = load::LoadPlan {
        nodes: o.nodes,
        claimers: CLAIMERS,
        claims: o.claims,
        watched_claims: WATCHED_CLAIMS,
        watch: o.watch,
        window: Duration::from_secs(o.window_secs as u64),
    };
    let mut runs = Vec::with_capacity(o.stores.len());
    for &store in &o.stores {
        runs.push(run_store(
            &rt,
            &trellisd,
            &controller,
            store,
            o,
            &plan,
            ticks,
        )?);
    }
    let failover = (failovers > 0).then(|| {
        eprintln!(
            "running: leader failover, {failovers} rounds: {} etcd members, {} controller replicas ...",
            store::ETCD_MEMBERS,
            failover::REPLICAS
        );
        failover::run(&controller, failovers)
    });

    for run in &runs {
        println!();
        if runs.len() > 1 {
            println!("== controller on {} ==", run.store.name());
        }
        print_run(run, &plan);
    }
    if runs.len() > 1 {
        println!();
        println!("== the stores side by side ==");
        print!("{}", report::side_by_side(&runs, &plan));
    }
    let failed = match failover {
        Some(Ok(f)) => {
            println!();
            println!(
                "== leader failover: {} replicas on etcd, the leader SIGKILLed {} times ==",
                failover::REPLICAS,
                f.rounds.len()
            );
            print!("{}", report::failover(&f));
            None
        }
        Some(Err(e)) => Some(e),
        None => None,
    };
    println!("total run time {:.0} s", run_start.elapsed().as_secs_f64());
    match failed {
        Some(e) => Err(e.context("leader failover")),
        None => Ok(()),
    }
}

/// Figures 1 to 3 with the controller on `store`.
fn run_store(
    rt: &tokio::runtime::Runtime,
    trellisd: &std::path::Path,
    controller: &std::path::Path,
    store: Store,
    o: &Options,
    plan: &load::LoadPlan,
    ticks: u64,
) -> Result<StoreRun> {
    let on = store.name();
    eprintln!("building the cluster lab: controller on {on}, h1 and h2 joined, h3 standalone ...");
    let mut rig = rig::Rig::start(rt, trellisd, controller, store)?;
    eprintln!(
        "running: {} interleaved attach/detach rounds ...",
        o.samples
    );
    let attach = attach::interleaved(rt, &mut rig.a, &mut rig.solo, o.samples)?;
    eprintln!(
        "running: {} claims for h1, each until routed on h2 ...",
        o.samples
    );
    let routes = routes::claim_to_route(rt, &mut rig.ctl, rig.a.name, &rig.lab.hosts[1], o.samples)
        .with_context(|| {
            format!(
                "h2's log (tail):\n{}\ncontroller's log (tail):\n{}{}",
                rig.b.daemon.log(),
                rig.controller.log(),
                rig.backing.logs()
            )
        })?;
    let held = blocks_of(rt, &mut rig.ctl, rig::CLUSTER_POOL.0, rig.a.name)?;
    drop(rig);

    eprintln!("running: a fresh controller on {on} under load ...");
    let load = load::run(rt, controller, plan, ticks, store)?;
    Ok(StoreRun {
        store,
        attach,
        routes,
        held,
        load,
    })
}

/// The tables of one store's run, and the lines under them.
fn print_run(run: &StoreRun, plan: &load::LoadPlan) {
    let (routes, load) = (&run.routes, &run.load);
    print!(
        "{}",
        report::latencies(&run.attach, routes, run.store.route_p99_ms())
    );
    println!(
        "h1 held {} block(s) of {} after the attaches: allocation stayed on the node.",
        run.held,
        rig::CLUSTER_POOL.0
    );
    println!(
        "{} of {} routes were in B's kernel before the bench had the claim's answer (counted 0 \
         from the answer).",
        routes.route_first,
        routes.from_answer.len()
    );
    println!();
    print!("{}", report::controller(load, plan));
    println!(
        "ctl CPU / gen CPU: the controller's / the load generator's (this process, on the same \
         cores) CPU over the step, % of one core; RSS MB: the controller's VmRSS at the step's end."
    );
    if let Some(members) = &load.etcd_memory {
        let rss: Vec<String> = members
            .iter()
            .map(|(rss, hwm)| {
                format!(
                    "{:.1} MB (peak {:.1})",
                    crate::report::mb(*rss),
                    crate::report::mb(*hwm)
                )
            })
            .collect();
        println!(
            "etcd members' RSS at the end of the load (not in the controller's): {}",
            rss.join(", ")
        );
    }
    if let Some(f) = &load.first_failure {
        println!(
            "first KeepAlive/Watch failure: {f} ({} watch streams failed)",
            load.watch_failures
        );
    }
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
            "--store",
            "etcd",
            "--failovers",
            "2",
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
        assert_eq!((o.stores, o.failovers), (vec![Store::Etcd], 2));
        let d = Options::default();
        assert_eq!(
            (d.stores, d.failovers),
            (vec![Store::Redb], DEFAULT_FAILOVERS)
        );
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for bad in [
            &["--samples", "0"][..],
            &["--nodes", "60000"],
            &["--window"],
            &["--controller"],
            &["--max", "3"],
            &["--store"],
            &["--store", "mysql"],
            &["--failovers", "101"],
        ] {
            let o = crate::options::<Options>(bad.iter().copied());
            assert!(o.is_err(), "{bad:?}");
        }
    }
}

//! `trellis-bench attach [--count N]`: how long it takes to give a container
//! its network, trellis against the peers a runtime would otherwise use, all
//! measured in the same run on the same machine.
//!
//! What is measured, per container, one container at a time:
//!
//! * **trellis attach**: [`trellis_agent::Agent::attach`] with kernel backends
//!   aimed at the benchmark's host namespace: IPAM allocation, a veth whose
//!   peer is created straight in the container namespace and enslaved to the
//!   bridge, the container's address, its default route, the endpoint record.
//!   No published port. Twice: with the in-memory store, and with the redb
//!   store in a file, where every store commit is fsync'd before it returns
//!   (IPAM and the record are several commits per attach), so that row shows
//!   what durability costs on this disk. Detach is timed the same way.
//! * **CNI `bridge` + `host-local`** (Debian's `containernetworking-plugins`):
//!   one exec of the plugin per ADD or DEL, timed from spawn to exit. The
//!   process spawn (and the plugin exec'ing `host-local` in turn) is part of
//!   the number on purpose: it is what a runtime pays for every container with
//!   CNI, while trellis is a library call into a running agent. Whether a
//!   gRPC hop to the agent eats into that difference is a later scenario.
//! * **netavark** (podman's, Debian's 1.4), when installed: one exec per
//!   setup/teardown. It does no IPAM (podman passes static addresses), and
//!   1.4 has no firewall-less driver: the NAT row includes its `iptables`
//!   execs, the internal row has neither NAT nor a default route.
//!
//! Why in namespaces: nothing touches the machine's own network namespace.
//! Each scenario builds a fresh host namespace and one fresh namespace per
//! container, and deletes them all when it ends, error or not; creating and
//! deleting namespaces is never timed. Each scenario starts from an empty host
//! namespace, so no scenario inherits another's links.
//!
//! Deleting a veth costs the kernel itself 10–20 ms on the development VM
//! (unregistering a device waits for RCU grace periods), whoever asks for it:
//! the teardown rows of every peer are dominated by that wait.
//!
//! Read the numbers with the header: they are latencies on a small, possibly
//! shared machine; p99 and max carry its noise (and the first sample of each
//! peer pays for cold caches and, for CNI and netavark, creating the bridge).

mod bgp;
mod cluster;
mod cni;
mod daemon;
mod etcd;
mod exec;
mod floor;
mod grpc;
mod grpc_report;
mod monitor;
mod netavark;
mod peers;
mod podman;
mod podman_report;
mod report;
mod restart;
mod scenarios;
mod stats;
mod trellisd;

use anyhow::{Context, Result, bail, ensure};
use report::{Row, ratio, table};
use scenarios::{Mode, StoreKind, Timings};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use trellis_link::BRIDGE_MAX_PORTS;
use trellis_testlab::require_root;

/// The default number of containers per scenario.
const DEFAULT_COUNT: usize = 200;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Cli {
    /// Bridge-mode attach/detach latency, `count` containers per scenario.
    Attach { count: usize },
    /// Routed-mode attach/detach latency, `count` containers per scenario.
    Routed { count: usize },
    /// trellisd over gRPC beside the peers, up to `max` endpoints.
    Grpc {
        max: usize,
        samples: usize,
        trellisd: Option<PathBuf>,
        /// Run the peers' curves too (`--no-peers`: trellisd's only, e.g.
        /// to measure an older trellisd beside a run that had them).
        peers: bool,
    },
    /// trellisd restarted with N endpoints, for each N of `counts`.
    Restart {
        counts: Vec<usize>,
        trellisd: Option<PathBuf>,
    },
    /// Cluster mode: attach vs standalone, claim → route, the controller
    /// under load.
    Cluster(cluster::Options),
    /// BGP export: block claimed → route in BIRD, bulk prefixes to BIRD.
    Bgp(bgp::Options),
    /// `podman run` with trellis-cni, the CNI bridge plugin and netavark.
    Podman(podman::Options),
    /// The speaker child of `bgp` (hidden), with its arguments.
    BgpSpeaker(Vec<String>),
    /// Print usage.
    Help,
}

const USAGE: &str =
    "usage: trellis-bench attach|routed [--count N]   (default N = 200; run as root)
       trellis-bench grpc [--max N] [--samples S] [--trellisd PATH] [--no-peers]
       trellis-bench restart [--counts N,M,...] [--trellisd PATH]
       trellis-bench cluster [--samples S] [--nodes N] [--claims C] [--window SECS]
                             [--no-watch] [--trellisd PATH] [--controller PATH]
                             [--store redb|etcd|redb,etcd] [--failovers F]
       trellis-bench bgp [--blocks B] [--prefixes P] [--rounds R] [--no-v6]
                         [--trellisd PATH]
       trellis-bench podman [--runs N]
  attach   bridge mode beside CNI bridge+host-local and netavark
  routed   routed mode beside CNI ptp+host-local
  grpc     the trellisd binary over its unix socket beside CNI bridge(+portmap) and
           netavark: attach p50/p99 at 1, 100 and N endpoints (S probes each,
           default N = 1000, S = 100), detach, 100 concurrent attaches then
           detaches, RSS at N, the kernel's own floor
  restart  trellisd killed (SIGKILL) and stopped (SIGTERM) with N endpoints, for
           each N of the counts (default 100,1000): start → serving, start →
           converged (Status ready)
  cluster  trellis-controller with trellisd joined over unix sockets: attach p50/p90/p99
           on a cluster node vs a standalone one (S rounds, default 100), block
           claimed for node A → route on node B (S claims), claims/s at the
           controller, then N simulated nodes (default 1000) registering, claiming,
           watching and keeping leases: the controller's CPU over a steady window
           (default 15 s) and its RSS; the targets beside the numbers. --store: the
           controller's store (default redb); etcd: a fresh 3-member etcd on loopback in
           the bench's namespaces; redb,etcd: both, side by side. With etcd, also leader
           failover: 3 replicas, the leader SIGKILLed F times (default 5, 0 skips):
           kill → a replica serving, kill → a node's claim answered; target ≤ 5 s
  bgp      trellisd exporting to BIRD 2 (namespaces, a veth): block claimed by an attach →
           route in BIRD's table, p50/p90/p99 over B blocks (default 100, 64 attaches
           each; target p99 ≤ 50 ms); then the speaker alone in a child process: P
           prefixes (default 10000) IPv4, then IPv6, announced and withdrawn until BIRD
           has them all / none, R rounds (default 10); UPDATEs sent, speaker and BIRD RSS
  podman   podman 4.3 in the bench's namespaces: the wall time of `podman run --rm --network
           NET busybox true` on a trellis-cni bridge network (trellisd in the harness's
           namespaces), the CNI bridge plugin + host-local and netavark (podman network create),
           and --network none as podman's own floor: p50/p90/max over N runs each (default 20,
           after 2 uncounted), interleaved round-robin, each setup in a fresh host namespace";

fn number(
    it: &mut dyn Iterator<Item = &str>,
    flag: &str,
    range: RangeInclusive<usize>,
) -> Result<usize> {
    let v = it
        .next()
        .with_context(|| format!("{flag} needs a number"))?;
    let n: usize = v
        .parse()
        .with_context(|| format!("{flag} {v:?} is not a number"))?;
    ensure!(
        range.contains(&n),
        "{flag} must be {}..={}, got {n}",
        range.start(),
        range.end()
    );
    Ok(n)
}

/// The path after `flag`.
fn path(it: &mut dyn Iterator<Item = &str>, flag: &str) -> Result<PathBuf> {
    let v = it.next().with_context(|| format!("{flag} needs a path"))?;
    Ok(PathBuf::from(v))
}

/// A benchmark's options, read one flag at a time by [`options`].
trait Flags: Default {
    /// Takes `flag`, and its value from `rest` if it has one; `Ok(false)`
    /// for a flag this benchmark does not have.
    fn flag<'a>(&mut self, flag: &'a str, rest: &mut dyn Iterator<Item = &'a str>) -> Result<bool>;
}

/// A benchmark's options from the words after its name: its defaults,
/// changed by each flag in turn; `None` for `--help`.
fn options<'a, O: Flags>(words: impl IntoIterator<Item = &'a str>) -> Result<Option<O>> {
    let mut it = words.into_iter();
    let mut o = O::default();
    while let Some(arg) = it.next() {
        if matches!(arg, "-h" | "--help") {
            return Ok(None);
        }
        if !o.flag(arg, &mut it)? {
            bail!("unknown option {arg:?}\n{USAGE}");
        }
    }
    Ok(Some(o))
}

fn parse_grpc<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<Cli> {
    let (mut max, mut samples, mut trellisd) = (grpc::DEFAULT_MAX, grpc::DEFAULT_SAMPLES, None);
    let mut peers = true;
    while let Some(arg) = it.next() {
        match arg {
            "--no-peers" => peers = false,
            // Host ports 10000 + index stay below 65536, addresses in a /16.
            "--max" => max = number(&mut it, "--max", 1..=50_000)?,
            "--samples" => samples = number(&mut it, "--samples", 1..=10_000)?,
            "--trellisd" => trellisd = Some(path(&mut it, arg)?),
            "-h" | "--help" => return Ok(Cli::Help),
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    Ok(Cli::Grpc {
        max,
        samples,
        trellisd,
        peers,
    })
}

fn parse_restart<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<Cli> {
    let (mut counts, mut trellisd) = (restart::DEFAULT_COUNTS.to_vec(), None);
    while let Some(arg) = it.next() {
        match arg {
            "--counts" => {
                let v = it.next().context("--counts needs numbers, e.g. 100,1000")?;
                counts = v
                    .split(',')
                    .map(|n| number(&mut std::iter::once(n), "--counts", 1..=BRIDGE_MAX_PORTS))
                    .collect::<Result<_>>()?;
                counts.sort_unstable();
                counts.dedup();
            }
            "--trellisd" => trellisd = Some(path(&mut it, arg)?),
            "-h" | "--help" => return Ok(Cli::Help),
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    Ok(Cli::Restart { counts, trellisd })
}

fn parse(args: &[String]) -> Result<Cli> {
    let mut it = args.iter().map(String::as_str);
    let routed = match it.next() {
        Some("attach") => false,
        Some("routed") => true,
        Some("grpc") => return parse_grpc(it),
        Some("restart") => return parse_restart(it),
        Some("cluster") => return Ok(options(it)?.map_or(Cli::Help, Cli::Cluster)),
        Some("bgp") => return Ok(options(it)?.map_or(Cli::Help, Cli::Bgp)),
        Some("podman") => return Ok(options(it)?.map_or(Cli::Help, Cli::Podman)),
        Some(bgp::speaker::SUBCOMMAND) => {
            return Ok(Cli::BgpSpeaker(it.map(str::to_owned).collect()));
        }
        Some("-h" | "--help" | "help") => return Ok(Cli::Help),
        Some(other) => bail!("unknown benchmark {other:?}\n{USAGE}"),
        None => bail!("no benchmark named\n{USAGE}"),
    };
    let mut count = DEFAULT_COUNT;
    while let Some(arg) = it.next() {
        match arg {
            "--count" | "-n" => {
                let v = it.next().context("--count needs a number")?;
                count = v
                    .parse()
                    .with_context(|| format!("--count {v:?} is not a number"))?;
                if !(1..=60_000).contains(&count) {
                    bail!("--count must be 1..=60000 (one /16), got {count}");
                }
            }
            "-h" | "--help" => return Ok(Cli::Help),
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    Ok(if routed {
        Cli::Routed { count }
    } else {
        Cli::Attach { count }
    })
}

fn main() -> Result<()> {
    stop_cleanly_on_signals()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args)? {
        Cli::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Cli::Attach { count } => attach(count),
        Cli::Routed { count } => routed(count),
        Cli::Grpc {
            max,
            samples,
            trellisd,
            peers,
        } => grpc_bench(max, samples, trellisd.as_deref(), peers),
        Cli::Restart { counts, trellisd } => restart_bench(&counts, trellisd.as_deref()),
        Cli::Cluster(options) => cluster::run(&options),
        Cli::Bgp(options) => bgp::run(&options),
        Cli::Podman(options) => podman::run(&options),
        Cli::BgpSpeaker(args) => bgp::speaker::main(&args),
    }
}

/// SIGINT, SIGTERM and SIGHUP stop the bench without leaving its daemons
/// or namespaces behind (a run at 1000 makes over a thousand): the signals
/// are blocked in every thread (threads started later inherit the mask;
/// children get a clean one), and one thread waits for them, kills the
/// daemons, deletes the namespaces and exits.
fn stop_cleanly_on_signals() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()
        .context("block SIGINT, SIGTERM and SIGHUP")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(signal) = set.wait() else { return };
            eprintln!("trellis-bench: {signal}: stopping daemons and removing namespaces ...");
            daemon::kill_all();
            etcd::kill_members();
            bgp::kill_routers();
            let h = trellis_testlab::podman::remove_own_harnesses();
            if h > 0 {
                eprintln!("trellis-bench: removed {h} podman harnesses");
            }
            let n = trellis_testlab::remove_own_namespaces();
            eprintln!("trellis-bench: removed {n} namespaces");
            std::process::exit(128 + signal as i32);
        })
        .context("start the signal thread")?;
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn routed(count: usize) -> Result<()> {
    require_root();
    print_header(&format!(
        "trellis-bench routed: {count} containers per scenario, one at a time"
    ));
    let rt = runtime()?;
    let step = |what: &str| eprintln!("running: {what} x {count} ...");
    step("trellis routed attach/detach, memory store");
    let mem = scenarios::trellis(&rt, count, StoreKind::Memory, Mode::Routed)?;
    step("trellis routed attach/detach, redb store");
    let redb = scenarios::trellis(&rt, count, StoreKind::Redb, Mode::Routed)?;
    step("cni ptp+host-local ADD/DEL");
    let cni = scenarios::cni(count, "ptp")?;
    let attach_mem = Row::new("trellis routed attach (memory store)", &mem.setup);
    let attach_redb = Row::new("trellis routed attach (redb store)", &redb.setup);
    let cni_add = Row::new("cni ptp+host-local ADD", &cni.setup);
    let detach_mem = Row::new("trellis routed detach (memory)", &mem.teardown);
    let cni_del = Row::new("cni ptp DEL", &cni.teardown);
    let rows = [
        attach_mem.clone(),
        attach_redb.clone(),
        cni_add.clone(),
        detach_mem.clone(),
        cni_del.clone(),
    ];
    println!();
    print!("{}", table(&rows));
    println!();
    println!("{}", ratio(&cni_add, &attach_mem));
    println!("{}", ratio(&cni_add, &attach_redb));
    println!("{}", ratio(&cni_del, &detach_mem));
    Ok(())
}

fn attach(count: usize) -> Result<()> {
    require_root();
    print_header(&format!(
        "trellis-bench attach: {count} containers per scenario, one at a time"
    ));
    let rt = runtime()?;

    let step = |what: &str| eprintln!("running: {what} x {count} ...");
    step("trellis attach/detach, memory store");
    let mem = scenarios::trellis(&rt, count, StoreKind::Memory, Mode::Bridge)?;
    step("trellis attach/detach, redb store");
    let redb = scenarios::trellis(&rt, count, StoreKind::Redb, Mode::Bridge)?;
    step("cni bridge+host-local ADD/DEL");
    let cni = scenarios::cni(count, "bridge")?;
    step("netavark setup/teardown, NAT");
    let nv_nat = scenarios::netavark_bridge(count, false);
    step("netavark setup/teardown, internal");
    let nv_int = scenarios::netavark_bridge(count, true);

    let attach_mem = Row::new("trellis attach (memory store)", &mem.setup);
    let attach_redb = Row::new("trellis attach (redb store)", &redb.setup);
    let cni_add = Row::new("cni bridge+host-local ADD", &cni.setup);
    let detach_mem = Row::new("trellis detach (memory)", &mem.teardown);
    let detach_redb = Row::new("trellis detach (redb)", &redb.teardown);
    let cni_del = Row::new("cni bridge DEL", &cni.teardown);
    let mut setups = vec![attach_mem.clone(), attach_redb.clone(), cni_add.clone()];
    let mut teardowns = vec![detach_mem.clone(), detach_redb, cni_del.clone()];
    let mut skipped = Vec::new();
    let mut nv_rows = Vec::new();
    for (what, result) in [("NAT, iptables", &nv_nat), ("internal", &nv_int)] {
        match result {
            Ok(t) => {
                let setup = Row::new(format!("netavark setup ({what})"), &t.setup);
                nv_rows.push(setup.clone());
                setups.push(setup);
                teardowns.push(Row::new(format!("netavark teardown ({what})"), &t.teardown));
            }
            Err(e) => skipped.push(format!("netavark ({what}) skipped: {e:#}")),
        }
    }

    println!();
    print!("{}", table(&[setups, teardowns].concat()));
    println!();
    println!("{}", ratio(&cni_add, &attach_mem));
    println!("{}", ratio(&cni_add, &attach_redb));
    println!("{}", ratio(&cni_del, &detach_mem));
    for nv in &nv_rows {
        println!("{}", ratio(nv, &attach_mem));
    }
    println!();
    let total = |label: &str, t: &Timings| {
        println!(
            "{label}: all {} torn down, one after another, in {:.0} ms",
            t.teardown.len(),
            t.teardown_total.as_secs_f64() * 1e3
        );
    };
    total("trellis detach (memory)", &mem);
    total("trellis detach (redb)", &redb);
    total("cni bridge DEL", &cni);
    for (label, t) in [
        ("netavark teardown (NAT)", &nv_nat),
        ("netavark teardown (internal)", &nv_int),
    ] {
        if let Ok(t) = t {
            total(label, t);
        }
    }
    for s in &skipped {
        println!("{s}");
    }
    Ok(())
}

/// One curve of the `grpc` benchmark: who, with or without a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Trellisd,
    TrellisCni,
    Cni,
    Netavark,
}

/// The eight curves of `trellis-bench grpc`, in the order they run and print.
const GRPC_CURVES: [(Who, bool, &str); 8] = [
    (Who::Trellisd, false, "trellisd, no port"),
    (Who::Trellisd, true, "trellisd, 1 port"),
    (Who::TrellisCni, false, "trellis-cni (exec), no port"),
    (Who::TrellisCni, true, "trellis-cni (exec), 1 port"),
    (Who::Cni, false, "cni bridge+host-local"),
    (Who::Cni, true, "cni bridge+host-local+portmap"),
    (Who::Netavark, false, "netavark (NAT), no port"),
    (Who::Netavark, true, "netavark (NAT), 1 port"),
];

/// How a curve is judged: trellis against the issue's targets, the peers
/// beside the issue's figures for this kind of machine.
fn judge(who: Who, port: bool) -> grpc_report::Judge {
    use grpc_report::{Goals, Judge};
    match (who, port) {
        (Who::Trellisd, port) => Judge::Goals(Goals::issue(port)),
        // Issue 14: the plugin's ADD p50, process start included, ≤ 4 ms.
        (Who::TrellisCni, port) => Judge::Goals(Goals {
            attach_p50: if port { 6.0 } else { 4.0 },
            ..Goals::issue(port)
        }),
        (Who::Cni, false) => Judge::Reference("issue: ~21–24 ms".into()),
        (Who::Cni, true) => Judge::Reference("issue: ~55 ms".into()),
        (Who::Netavark, false) => Judge::Reference("issue: ~30 ms".into()),
        (Who::Netavark, true) => Judge::Reference("issue: ~45 ms".into()),
    }
}

fn grpc_bench(max: usize, samples: usize, explicit: Option<&Path>, peers: bool) -> Result<()> {
    let title = format!(
        "trellis-bench grpc: attach p50/p99 at endpoint levels {:?} ({samples} probes each), \
         detach, {c} concurrent attaches and {c} concurrent detaches, RSS at {max}",
        grpc::levels(max),
        c = grpc::CONCURRENT
    );
    let binary = start_trellisd_bench(&title, explicit)?;
    println!(
        "what: at level L the host holds L-1 endpoints; one probe container is then attached \
         (timed: the host now has L endpoints) and detached (timed), {samples} times. \
         Fill attaches are not in the table. trellisd: gRPC on its unix socket, state in \
         redb (fsync'd), in a fresh host netns; peers: one exec per plugin call, spawn to exit."
    );
    let run_start = Instant::now();
    let rt = runtime()?;
    eprintln!(
        "making {} container namespaces ...",
        max + 1 + grpc::CONCURRENT
    );
    let t = Instant::now();
    let containers = grpc::Containers::new(max);
    eprintln!("  made in {:.1} s", t.elapsed().as_secs_f64());
    let subnet = format!("{}/16", scenarios::SUBNET_BASE);

    let mut lines = Vec::new();
    let mut notes = Vec::new();
    // trellisd's curves, to set against the kernel floor.
    let mut trellisd_curves = Vec::new();
    // The kernel floor fills its own bridge interleaved with the first
    // trellisd curve's fill (see `floor::KernelFloor`).
    let mut floor: Option<floor::KernelFloor> = None;
    let mut floor_fill = Vec::new();
    for (who, port, name) in GRPC_CURVES {
        if !peers && who != Who::Trellisd {
            continue;
        }
        let with_floor = who == Who::Trellisd && !port;
        eprintln!(
            "running: {name}, up to {max} endpoints{} ...",
            if with_floor {
                ", interleaved with the kernel floor"
            } else {
                ""
            }
        );
        let t = Instant::now();
        let host = trellis_testlab::Netns::new("bench-host");
        let veths = |with_retired: bool| {
            host.ip("-o link show type veth")
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .filter(|n| {
                    with_retired || !trellis_link::is_retired_name(n.split('@').next().unwrap_or(n))
                })
                .count()
        };
        if with_floor {
            match rt.block_on(floor::KernelFloor::new()) {
                Ok(f) => floor = Some(f),
                Err(e) => notes.push(format!("kernel floor: skipped: {e:#}")),
            }
        }
        // The floor exists only during the curve it is interleaved with.
        let mut after_fill = |i: usize| -> Result<()> {
            match floor.as_mut() {
                Some(f) => rt
                    .block_on(f.fill_one(&containers.fill[i]))
                    .context("kernel floor fill"),
                None => Ok(()),
            }
        };
        let result = (|| {
            let mut peer: Box<dyn grpc::Peer + '_> = match who {
                Who::Trellisd => Box::new(trellisd::Trellisd::start(&rt, &binary, &host, &subnet)?),
                Who::TrellisCni => {
                    let plugin = daemon::locate_binary(None, "trellis-cni", "--trellis-cni")?;
                    Box::new(peers::TrellisCni::new(
                        &rt, &binary, plugin, &host, &subnet,
                    )?)
                }
                Who::Cni => {
                    if port {
                        iptables_usable(&host)?;
                    }
                    Box::new(peers::Cni::new(&host, &subnet)?)
                }
                Who::Netavark => Box::new(peers::Netavark::new(&host, scenarios::SUBNET_BASE)?),
            };
            grpc::run(
                peer.as_mut(),
                &containers,
                samples,
                port,
                &veths,
                &mut after_fill,
            )
        })();
        // Before the host goes: its teardown would run beside them.
        if let Some(mut f) = floor.take() {
            match rt.block_on(f.retire_last()) {
                Ok(note) => notes.push(note),
                Err(e) => notes.push(format!("kernel floor retirements: skipped: {e:#}")),
            }
            floor_fill = std::mem::take(&mut f.fill);
            f.remove();
        }
        // The daemon is dead (peer dropped); deleting the host takes every
        // veth, bridge, nftables/iptables rule with it.
        drop(host);
        containers.wait_empty()?;
        eprintln!("  done in {:.1} s", t.elapsed().as_secs_f64());
        match result {
            Ok(curve) => {
                let (l, n) = grpc_report::curve_lines(name, &curve, &judge(who, port));
                lines.extend(l);
                notes.extend(n);
                notes.push(fill_note(name, &curve.fill));
                if who == Who::Trellisd {
                    trellisd_curves.push((name, curve));
                }
            }
            Err(e) => notes.push(format!("{name}: skipped: {e:#}")),
        }
    }
    if !floor_fill.is_empty() {
        notes.push(fill_note(
            "kernel floor (trellis-link only: veth made, enslaved, up, container side \
             addressed and routed; no daemon, IPAM or store; each fill right after \
             trellisd's no-port fill of the same container)",
            &floor_fill,
        ));
        if let Some(f) = floor::Floor::of(&floor_fill) {
            notes.push(f.note());
            notes.extend(
                trellisd_curves
                    .iter()
                    .filter_map(|(name, curve)| floor::gaps(name, curve, &f)),
            );
        }
    }
    println!();
    print!("{}", grpc_report::table(&lines));
    println!();
    for n in notes {
        println!("{n}");
    }
    println!(
        "total run time {:.0} s (namespaces made once, each curve on a fresh host namespace)",
        run_start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn restart_bench(counts: &[usize], explicit: Option<&Path>) -> Result<()> {
    let title = format!(
        "trellis-bench restart: trellisd killed (SIGKILL) and stopped (SIGTERM), then started \
         again, with {counts:?} endpoints"
    );
    let binary = start_trellisd_bench(&title, explicit)?;
    println!(
        "what: on a fresh host netns, N endpoints are attached (untimed), then trellisd is killed \
         and started again on the same state, then stopped cleanly and started again. From just \
         before each spawn: serving = first Status answered on the unix socket (tried every {} ms), \
         converged = first Status answering ready (every {} ms). After each: N endpoints listed \
         and the same N veths on the host, or the run fails.",
        restart::SERVING_POLL.as_millis(),
        restart::READY_POLL.as_millis()
    );
    let run_start = Instant::now();
    let rt = runtime()?;
    let outcomes = restart::run(&rt, &binary, counts)?;
    println!();
    print!("{}", restart::report(&outcomes));
    println!("total run time {:.0} s", run_start.elapsed().as_secs_f64());
    Ok(())
}

/// Whether `iptables` works in `host` (portmap needs it); why not, if not.
fn iptables_usable(host: &trellis_testlab::Netns) -> Result<()> {
    let out = host.exec(&["iptables", "-t", "nat", "-S"]);
    ensure!(
        out.status.success(),
        "portmap needs iptables, and `iptables -t nat -S` fails in the host netns: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A note on the untimed-for-the-table fill: how the attach cost moves as
/// the host fills up (first and last tenth of the fills).
fn fill_note(name: &str, fill: &[Duration]) -> String {
    if fill.is_empty() {
        return format!("{name}: no fill");
    }
    let tenth = fill.len().div_ceil(10);
    let first = stats::summarise(&fill[..tenth]).p50;
    let last = stats::summarise(&fill[fill.len() - tenth..]).p50;
    let total: Duration = fill.iter().sum();
    format!(
        "{name}: fill of {} one after another took {:.1} s; p50 of the first {tenth} {first:.2} ms, of the last {tenth} {last:.2} ms",
        fill.len(),
        total.as_secs_f64()
    )
}

/// The start of a benchmark of the trellisd binary: root required, the
/// binary found (`explicit`, or beside this one), the header under `title`
/// printed with the binary's path; the binary.
fn start_trellisd_bench(title: &str, explicit: Option<&Path>) -> Result<PathBuf> {
    require_root();
    let binary = daemon::locate(explicit)?;
    print_header(title);
    println!("trellisd: {}", binary.display());
    Ok(binary)
}

fn print_header(title: &str) {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|e| format!("? ({e})"))
    };
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let plugins = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "containernetworking-plugins"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "?".into(),
            |o| String::from_utf8_lossy(&o.stdout).into_owned(),
        );
    let netavark = netavark::binary()
        .ok()
        .and_then(|b| Command::new(b).arg("--version").output().ok())
        .map_or_else(
            || "not installed".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    println!("{title}");
    println!("cpus: {nproc} x {cpu}");
    println!("kernel: {}", read("/proc/sys/kernel/osrelease"));
    println!("load average at start: {}", read("/proc/loadavg"));
    println!(
        "cni plugins: containernetworking-plugins {plugins} in {}",
        cni::CNI_PATH
    );
    println!("netavark: {netavark}");
    let dir = std::env::temp_dir();
    match fsync_probe(&dir, 50) {
        Ok(s) => println!(
            "redb store: a file in {}, where a 4 KiB write + fdatasync takes p50 {:.2} ms, max {:.2} ms",
            dir.display(),
            s.p50,
            s.max
        ),
        Err(e) => println!(
            "redb store: a file in {} (fsync probe failed: {e})",
            dir.display()
        ),
    }
    if cfg!(debug_assertions) {
        println!("WARNING: debug build; numbers are only meaningful with --release");
    }
}

/// What one durable write costs on the disk under `dir`: `n` times a 4 KiB
/// write followed by `fdatasync`, in a temporary file (the redb row pays a few
/// of these per attach).
fn fsync_probe(dir: &std::path::Path, n: usize) -> std::io::Result<stats::Summary> {
    use std::io::{Seek, Write};
    let mut f = tempfile::tempfile_in(dir)?;
    let block = [0u8; 4096];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = std::time::Instant::now();
        f.rewind()?;
        f.write_all(&block)?;
        f.sync_data()?;
        samples.push(start.elapsed());
    }
    Ok(stats::summarise(&samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_attach_with_and_without_count() {
        assert_eq!(
            parse(&args(&["attach"])).unwrap(),
            Cli::Attach { count: 200 }
        );
        assert_eq!(
            parse(&args(&["attach", "--count", "7"])).unwrap(),
            Cli::Attach { count: 7 }
        );
        assert_eq!(
            parse(&args(&["routed", "-n", "3"])).unwrap(),
            Cli::Routed { count: 3 }
        );
        assert_eq!(parse(&args(&["--help"])).unwrap(), Cli::Help);
    }

    #[test]
    fn parses_grpc_with_defaults_and_options() {
        assert_eq!(
            parse(&args(&["grpc"])).unwrap(),
            Cli::Grpc {
                max: 1000,
                samples: 100,
                trellisd: None,
                peers: true
            }
        );
        assert_eq!(
            parse(&args(&[
                "grpc",
                "--max",
                "300",
                "--samples",
                "20",
                "--trellisd",
                "/x/trellisd"
            ]))
            .unwrap(),
            Cli::Grpc {
                max: 300,
                samples: 20,
                trellisd: Some("/x/trellisd".into()),
                peers: true
            }
        );
        assert_eq!(parse(&args(&["grpc", "-h"])).unwrap(), Cli::Help);
    }

    #[test]
    fn parses_restart_counts_sorted_and_deduplicated() {
        assert_eq!(
            parse(&args(&["restart"])).unwrap(),
            Cli::Restart {
                counts: vec![100, 1000],
                trellisd: None
            }
        );
        assert_eq!(
            parse(&args(&[
                "restart",
                "--counts",
                "100,20,100",
                "--trellisd",
                "/x/trellisd"
            ]))
            .unwrap(),
            Cli::Restart {
                counts: vec![20, 100],
                trellisd: Some("/x/trellisd".into())
            }
        );
        assert_eq!(
            parse(&args(&["restart", "--counts", "7"])).unwrap(),
            Cli::Restart {
                counts: vec![7],
                trellisd: None
            }
        );
        assert_eq!(parse(&args(&["restart", "--help"])).unwrap(), Cli::Help);
    }

    #[test]
    fn refuses_restart_counts_it_cannot_run() {
        for bad in ["", "0", "1024", "100,", "100,x", "-5", "100;1000"] {
            let e = parse(&args(&["restart", "--counts", bad]));
            assert!(e.is_err(), "--counts {bad:?} accepted: {e:?}");
        }
        assert!(parse(&args(&["restart", "--counts"])).is_err());
        assert!(parse(&args(&["restart", "--max", "10"])).is_err());
        assert!(parse(&args(&["restart", "--trellisd"])).is_err());
    }

    #[test]
    fn parses_cluster_with_defaults() {
        assert_eq!(
            parse(&args(&["cluster"])).unwrap(),
            Cli::Cluster(cluster::Options::default())
        );
        assert_eq!(parse(&args(&["cluster", "--help"])).unwrap(), Cli::Help);
        assert!(parse(&args(&["cluster", "--count", "3"])).is_err());
        let Cli::Cluster(o) = parse(&args(&["cluster", "--store", "redb,etcd"])).unwrap() else {
            panic!("not the cluster bench")
        };
        assert_eq!(o.stores, [cluster::Store::Redb, cluster::Store::Etcd]);
        assert!(parse(&args(&["cluster", "--store", "etcd3"])).is_err());
    }

    #[test]
    fn parses_bgp_and_its_hidden_speaker() {
        assert_eq!(
            parse(&args(&["bgp"])).unwrap(),
            Cli::Bgp(bgp::Options::default())
        );
        assert_eq!(parse(&args(&["bgp", "--help"])).unwrap(), Cli::Help);
        assert!(parse(&args(&["bgp", "--count", "3"])).is_err());
        assert_eq!(
            parse(&args(&["bgp-speaker", "--prefixes", "7"])).unwrap(),
            Cli::BgpSpeaker(args(&["--prefixes", "7"]))
        );
    }

    #[test]
    fn parses_podman_runs() {
        assert_eq!(
            parse(&args(&["podman"])).unwrap(),
            Cli::Podman(podman::Options { runs: 20 })
        );
        assert_eq!(
            parse(&args(&["podman", "--runs", "10"])).unwrap(),
            Cli::Podman(podman::Options { runs: 10 })
        );
        assert_eq!(parse(&args(&["podman", "--help"])).unwrap(), Cli::Help);
        for bad in [
            &["podman", "--runs"][..],
            &["podman", "--runs", "0"],
            &["podman", "--runs", "x"],
            &["podman", "--count", "3"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["grpc", "--max", "0"])).is_err());
        assert!(parse(&args(&["grpc", "--max", "60000"])).is_err());
        assert!(parse(&args(&["grpc", "--samples"])).is_err());
        assert!(parse(&args(&["grpc", "--trellisd"])).is_err());
        assert!(parse(&args(&["grpc", "--count", "3"])).is_err());
        assert!(parse(&args(&["attach", "--count"])).is_err());
        assert!(parse(&args(&["attach", "--count", "0"])).is_err());
        assert!(parse(&args(&["attach", "--count", "x"])).is_err());
        assert!(parse(&args(&["attach", "--fast"])).is_err());
    }
}

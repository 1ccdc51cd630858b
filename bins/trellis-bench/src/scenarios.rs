//! One function per scenario. Each builds what it needs from scratch (a fresh
//! host namespace, one fresh namespace per container, its own state
//! directory), times only the operations it compares, checks their effect
//! untimed, and removes everything when it returns, error or not (every
//! namespace is a [`Netns`], deleted on drop).
//!
//! Operations run one at a time, as a runtime starting containers one after
//! another issues them: these are latencies, not throughput.

use crate::{cni, netavark};
use anyhow::{Context, Result, ensure};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use trellis_agent::{Agent, AttachRequest, Backends, NetworkMode, NetworkSpec};
use trellis_store::{KvStore, MemoryStore, RedbStore};
use trellis_testlab::Netns;
use trellis_types::{ContainerId, IfName, NetnsPath};

/// Every scenario's containers live in this /16 (each in its own host namespace).
pub const SUBNET_BASE: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 0);

/// What a scenario measured.
#[derive(Debug, Default)]
pub struct Timings {
    /// One sample per container set up (attach, ADD, setup).
    pub setup: Vec<Duration>,
    /// One sample per container torn down (detach, DEL, teardown).
    pub teardown: Vec<Duration>,
    /// Wall time of tearing all of them down, one after another.
    pub teardown_total: Duration,
}

/// Where trellis keeps IPAM and endpoint records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `MemoryStore`: nothing survives the process.
    Memory,
    /// `RedbStore` in a file: every commit is fsync'd before it returns.
    Redb,
}

/// A benchmark's host namespace and `count` container namespaces (untimed).
struct Lab {
    host: Netns,
    containers: Vec<Netns>,
}

impl Lab {
    fn new(count: usize) -> Self {
        let host = Netns::new("bench-host");
        let containers = (0..count).map(|i| Netns::new(&format!("c{i}"))).collect();
        Lab { host, containers }
    }

    /// Checks, untimed, that the host has `n` veths, and (when `n > 0`) that
    /// the first and last containers have an IPv4 address on `eth0` and, if
    /// `default_route`, a default route.
    fn check(&self, n: usize, default_route: bool) -> Result<()> {
        let veths = self.host.ip("-o link show type veth").lines().count();
        ensure!(veths == n, "host has {veths} veths, expected {n}");
        if n == 0 {
            return Ok(());
        }
        for c in [&self.containers[0], &self.containers[n - 1]] {
            let addr = c.ip("-4 -o addr show dev eth0");
            ensure!(addr.contains("inet "), "{}: no address: {addr}", c.name());
            let route = c.ip("route show default");
            ensure!(
                route.contains("default") == default_route,
                "{}: default route {route:?}, expected one: {default_route}",
                c.name()
            );
        }
        Ok(())
    }
}

/// Which of trellis's network modes a scenario attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Docker's model: a bridge port, the address with the subnet's prefix.
    Bridge,
    /// Calico's model: a /32, proxy-ARP on the host end, a host route.
    Routed,
}

fn network_spec(mode: Mode) -> Result<NetworkSpec> {
    let mode = match mode {
        Mode::Bridge => NetworkMode::Bridge {
            bridge: IfName::parse("bridge", "tbench0")?,
        },
        Mode::Routed => NetworkMode::Routed,
    };
    Ok(NetworkSpec {
        subnet_pool: None,
        cluster_pools: Vec::new(),
        name: "bench".parse().unwrap(),
        subnets: vec![format!("{SUBNET_BASE}/16").parse()?],
        gateway: None,
        mode,
        masquerade: false,
        mtu: None,
        internal: false,
        routable: false,
        reach: Vec::new(),
    })
}

/// trellis's library-level attach (IPAM, veth with its peer created in the
/// container namespace, addresses, routes, record) and detach, through
/// [`Agent`] with kernel backends aimed at the host namespace.
pub fn trellis(rt: &Runtime, count: usize, store: StoreKind, mode: Mode) -> Result<Timings> {
    let lab = Lab::new(count);
    let dir = tempfile::tempdir().context("tempdir for the store")?;
    let timings = rt.block_on(async {
        let store: Arc<dyn KvStore> = match store {
            StoreKind::Memory => Arc::new(MemoryStore::new()),
            StoreKind::Redb => Arc::new(RedbStore::open(dir.path().join("trellis.redb"))?),
        };
        let host = NetnsPath::parse("netns", &lab.host.path_str())?;
        let agent = Agent::open(Backends::kernel(Some(&host), store).await?, "bench").await?;
        agent.create_network(network_spec(mode)?).await?;
        let eth0 = IfName::parse("ifname", "eth0")?;
        let mut t = Timings::default();
        let mut ids = Vec::with_capacity(count);
        for (i, c) in lab.containers.iter().enumerate() {
            let req = AttachRequest {
                network: "bench".parse().unwrap(),
                container: ContainerId::parse("container", &format!("bench{i}"))?,
                netns: NetnsPath::parse("netns", &c.path_str())?,
                ifname: eth0.clone(),
                ports: vec![],
                fixed_addresses: Vec::new(),
                labels: Default::default(),
                mac: None,
            };
            ids.push(req.container.clone());
            let start = Instant::now();
            agent.attach(req).await?;
            t.setup.push(start.elapsed());
        }
        lab.check(count, true)?;
        let all = Instant::now();
        for id in &ids {
            let start = Instant::now();
            agent.detach(id, &eth0).await?;
            t.teardown.push(start.elapsed());
        }
        t.teardown_total = all.elapsed();
        lab.check(0, false)?;
        agent.delete_network("bench").await?;
        anyhow::Ok(t)
    })?;
    Ok(timings)
}

/// A CNI reference plugin (`bridge` or `ptp`) with `host-local` IPAM: one
/// exec per ADD and per DEL. `bridge` creates its bridge on the first ADD
/// (trellis creates its bridge with the network, untimed): only the first
/// sample pays for it.
pub fn cni(count: usize, plugin: &str) -> Result<Timings> {
    let lab = Lab::new(count);
    let dir = tempfile::tempdir().context("tempdir for host-local")?;
    let cfg = cni::config(plugin, &format!("{SUBNET_BASE}/16"), dir.path());
    let mut t = Timings::default();
    for (i, c) in lab.containers.iter().enumerate() {
        let took = cni::run(
            &lab.host,
            plugin,
            "ADD",
            &cfg,
            &format!("bench{i}"),
            &c.path(),
        )?;
        t.setup.push(took);
    }
    lab.check(count, true)?;
    let all = Instant::now();
    for (i, c) in lab.containers.iter().enumerate() {
        let took = cni::run(
            &lab.host,
            plugin,
            "DEL",
            &cfg,
            &format!("bench{i}"),
            &c.path(),
        )?;
        t.teardown.push(took);
    }
    t.teardown_total = all.elapsed();
    lab.check(0, false)?;
    Ok(t)
}

/// podman's netavark, bridge driver, addresses given as static IPs (netavark
/// has no IPAM). `internal`: no NAT and no default route; otherwise NAT
/// through iptables, as podman's default network has.
pub fn netavark_bridge(count: usize, internal: bool) -> Result<Timings> {
    let binary = netavark::binary()?;
    let lab = Lab::new(count);
    let dir = tempfile::tempdir().context("tempdir for netavark's config")?;
    let mut t = Timings::default();
    let options: Vec<String> = (0..count)
        .map(|i| netavark::options(SUBNET_BASE, i, internal, None))
        .collect();
    let run = |cmd, i: usize, c: &Netns| {
        netavark::run(&lab.host, binary, cmd, dir.path(), &c.path(), &options[i])
    };
    for (i, c) in lab.containers.iter().enumerate() {
        t.setup.push(run("setup", i, c)?);
    }
    lab.check(count, !internal)?;
    let all = Instant::now();
    for (i, c) in lab.containers.iter().enumerate() {
        t.teardown.push(run("teardown", i, c)?);
    }
    t.teardown_total = all.elapsed();
    lab.check(0, false)?;
    Ok(t)
}

//! Benchmark 1: a block claimed by an attach → the route to it in BIRD's
//! table.
//!
//! trellisd (the real binary, a `[bgp]` section in its config file, its
//! peer BIRD, active from trellisd's side) serves a routed network of
//! /26 blocks. In standalone mode IPAM claims a block when the node's
//! blocks are full, and every address of a routed block is usable: the
//! 1st, 65th, 129th … attach claims one. A sequential burst of
//! `blocks × 64` attaches (over gRPC, each waiting for its answer, as a
//! runtime starting that many containers one after another) fills them.
//!
//! A sample is one newly claimed block: from just before the attach that
//! claimed it was sent (the first attach answered with an address in it)
//! to the route's arrival in the router namespace's kernel (see
//! [`RouteMonitor`], keeping BIRD's routes, [`RTPROT_BIRD`]: BIRD writes
//! each route it learns there at once). The rest of the burst keeps running
//! meanwhile, so trellisd's export loop, the speaker and BIRD work under the
//! load of further attaches — what a busy node does.
//!
//! Container namespaces are used sparingly: each holds 64 endpoints of the
//! burst (`eth0` … `eth63`; the container's routes are create-or-replace,
//! so the last one's default route wins and nothing conflicts), so 40
//! blocks cost 100 namespaces instead of 6,400. Each endpoint is still its
//! own veth, host route, IPAM address and store record.

use super::lab::{self, HOST, Lab};
use crate::daemon::Daemon;
use crate::monitor::{RTPROT_BIRD, RouteMonitor};
use anyhow::{Context, Result, ensure};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use trellis_proto::v1::{
    AgentClient, AttachRequest, BgpClient, CreateNetworkRequest, ListBgpPeersRequest, NetworkMode,
    NetworkSpec, StatusRequest,
};
use trellis_testlab::Netns;

/// The routed network's pool.
pub const POOL: &str = "10.244.0.0/16";
/// Its block size (trellis's default for IPv4).
pub const BLOCK_LEN: u8 = 26;
/// Attaches per block (every address of a routed block is usable).
pub const PER_BLOCK: usize = 64;
/// How long after the burst every route may take to arrive.
pub const ROUTE_LIMIT: Duration = Duration::from_secs(10);

/// What the burst measured.
#[derive(Debug, Default)]
pub struct Claims {
    /// Per block, in the order claimed: the claiming attach's start →
    /// route in BIRD's table.
    pub from_start: Vec<Duration>,
    /// Per block: the claiming attach's answer → route (0 when the route
    /// came first).
    pub from_answer: Vec<Duration>,
    /// Blocks whose route arrived before the claiming attach's answer.
    pub route_first: usize,
    /// The claiming attaches' round trips, in the order claimed.
    pub claim_attach: Vec<Duration>,
    /// Every other attach of the burst, in order.
    pub other_attach: Vec<Duration>,
    /// The whole burst, first attach sent to last answered.
    pub burst: Duration,
    /// Routes in BIRD's `show route all` via the host, after the burst.
    pub bird_routes: usize,
    /// UPDATEs trellisd sent BIRD during the burst.
    pub updates: u64,
    /// Prefixes trellisd announced during the burst.
    pub announced: u64,
    /// From trellisd's start to the session Established at BIRD.
    pub session_up: Duration,
    /// trellisd's (VmRSS, VmHWM) after the burst, KiB.
    pub trellisd_memory: (u64, u64),
    /// The host namespace deleted → the kernel done destroying its veths.
    pub host_removed: Duration,
}

/// trellisd's config file: BGP export to BIRD.
fn config() -> String {
    format!(
        "[bgp]\nasn = {}\nrouter_id = \"{HOST}\"\n\n[[bgp.peers]]\naddress = \"{}\"\nasn = {}\n",
        lab::OUR_AS,
        lab::ROUTER,
        lab::ROUTER_AS
    )
}

/// Runs the burst: `blocks` blocks of [`PER_BLOCK`] attaches.
pub fn run(rt: &Runtime, trellisd: &Path, blocks: usize) -> Result<Claims> {
    let t = Instant::now();
    let lab = Lab::build(true);
    let mut routes = RouteMonitor::start(&lab.router_ns, RTPROT_BIRD)?;
    let dir = tempfile::tempdir().context("tempdir for trellisd's config")?;
    let cfg = dir.path().join("trellisd.toml");
    std::fs::write(&cfg, config()).context("write trellisd's config")?;
    let cfg = cfg.to_string_lossy().into_owned();
    let started = Instant::now();
    let daemon = Daemon::start_with(trellisd, &lab.host, &["--node", "bench", "--config", &cfg])?;
    let fail = |e: anyhow::Error| e.context(format!("trellisd's log (tail):\n{}", daemon.log()));
    let (mut agent, mut bgp) = rt.block_on(clients(&daemon)).map_err(fail)?;
    lab.router
        .wait_established(IpAddr::V4(HOST), lab::ESTABLISH_WITHIN);
    let session_up = started.elapsed();
    rt.block_on(agent.create_network(CreateNetworkRequest {
        spec: Some(NetworkSpec {
            name: "pods".into(),
            mode: NetworkMode::Routed as i32,
            subnets: vec![POOL.into()],
            ..Default::default()
        }),
    }))
    .map_err(|e| fail(e.into()))?;
    let before = rt.block_on(counters(&mut bgp)).map_err(fail)?;
    let containers: Vec<Netns> = (0..blocks).map(|i| Netns::new(&format!("bc{i}"))).collect();
    eprintln!(
        "  lab, trellisd and {blocks} container namespaces ready in {:.1} s; session up {:.0} ms \
         after trellisd's start",
        t.elapsed().as_secs_f64(),
        session_up.as_secs_f64() * 1e3
    );

    let mut out = Claims {
        session_up,
        ..Claims::default()
    };
    // The claiming attaches: block, start, answer.
    let mut claimed: Vec<(IpNet, Instant, Instant)> = Vec::new();
    let mut seen = BTreeSet::new();
    let burst = Instant::now();
    for i in 0..blocks * PER_BLOCK {
        let req = AttachRequest {
            network: "pods".into(),
            container_id: format!("b{i}"),
            netns: containers[i / PER_BLOCK].path_str(),
            ifname: format!("eth{}", i % PER_BLOCK),
            ..Default::default()
        };
        let start = Instant::now();
        let ep = rt.block_on(agent.attach(req));
        let answered = Instant::now();
        let ep = ep
            .map_err(|e| fail(anyhow::anyhow!("Attach #{i}: {} {}", e.code(), e.message())))?
            .into_inner();
        let block = block_of(&ep.addresses)
            .with_context(|| format!("Attach #{i}: no IPv4 address in {:?}", ep.addresses))?;
        if seen.insert(block) {
            claimed.push((block, start, answered));
            out.claim_attach.push(answered - start);
        } else {
            out.other_attach.push(answered - start);
        }
    }
    out.burst = burst.elapsed();
    ensure!(
        claimed.len() == blocks,
        "{} attaches claimed {} blocks, not {blocks}: is the block size still /{BLOCK_LEN}?",
        blocks * PER_BLOCK,
        claimed.len()
    );
    let want: Vec<IpNet> = claimed.iter().map(|c| c.0).collect();
    let arrived = routes.wait_all(&want, ROUTE_LIMIT).map_err(fail)?;
    for (block, start, answered) in &claimed {
        let at = arrived[block];
        out.from_start.push(at.saturating_duration_since(*start));
        out.from_answer
            .push(at.saturating_duration_since(*answered));
        out.route_first += usize::from(at < *answered);
    }

    // BIRD's own word: every block, via the host.
    let in_bird: BTreeSet<IpNet> = lab
        .router
        .routes()
        .into_iter()
        .filter(|r| r.next_hop == IpAddr::V4(HOST) && !r.stale)
        .map(|r| r.prefix)
        .collect();
    let missing: Vec<&IpNet> = want.iter().filter(|b| !in_bird.contains(b)).collect();
    ensure!(
        missing.is_empty(),
        "BIRD's `show route all` lacks {} of the {blocks} blocks, e.g. {}",
        missing.len(),
        missing[0]
    );
    out.bird_routes = in_bird.len();
    let after = rt.block_on(counters(&mut bgp)).map_err(fail)?;
    out.updates = after.0 - before.0;
    out.announced = after.1 - before.1;
    out.trellisd_memory = daemon.memory()?;

    // The host namespace goes first, alone: the kernel destroys a deleted
    // namespace's devices later, in a batch, and the containers' veth ends
    // go with that batch; waiting for them keeps that work out of the next
    // benchmark.
    drop((agent, bgp));
    drop(daemon);
    drop(routes);
    let Lab {
        registered,
        router,
        host,
        router_ns,
    } = lab;
    drop(router);
    drop(registered);
    let t = Instant::now();
    drop(host);
    wait_veths_gone(&containers)?;
    out.host_removed = t.elapsed();
    eprintln!(
        "  host namespace ({} veths) deleted and destroyed in {:.1} s",
        blocks * PER_BLOCK + 1,
        out.host_removed.as_secs_f64()
    );
    drop(containers);
    drop(router_ns);
    Ok(out)
}

/// Waits (up to 60 s) until no container namespace has a veth left.
fn wait_veths_gone(containers: &[Netns]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for c in containers {
        while !c.ip("-o link show type veth").trim().is_empty() {
            ensure!(
                Instant::now() < deadline,
                "container namespace {} still has veths 60 s after the host namespace was deleted",
                c.name()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Agent and BGP clients of `daemon`, once it answers Status ready.
async fn clients(
    daemon: &Daemon,
) -> Result<(
    AgentClient<tonic::transport::Channel>,
    BgpClient<tonic::transport::Channel>,
)> {
    let mut agent = trellis_proto::connect_unix(daemon.socket()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent.status(StatusRequest {}).await?.into_inner().ready {
        ensure!(Instant::now() < deadline, "trellisd not ready after 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bgp = BgpClient::new(trellis_proto::channel_unix(daemon.socket()).await?);
    Ok((agent, bgp))
}

/// trellisd's (UPDATEs sent, prefixes announced) to its one peer.
async fn counters(bgp: &mut BgpClient<tonic::transport::Channel>) -> Result<(u64, u64)> {
    let peers = bgp
        .list_peers(ListBgpPeersRequest {})
        .await?
        .into_inner()
        .peers;
    ensure!(
        peers.len() == 1,
        "trellisd lists {} BGP peers, not 1",
        peers.len()
    );
    let c = peers[0].counters.unwrap_or_default();
    Ok((c.updates_out, c.prefixes_announced))
}

/// The /26 block of the first IPv4 address of an endpoint.
fn block_of(addresses: &[String]) -> Option<IpNet> {
    addresses.iter().find_map(|a| {
        let ip: IpAddr = a.split('/').next()?.parse().ok()?;
        ip.is_ipv4()
            .then(|| IpNet::new(ip, BLOCK_LEN).ok().map(|n| n.trunc()))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_names_its_block() {
        let b = |a: &[&str]| block_of(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            b(&["fd00::5/128", "10.244.1.77/32"]),
            Some("10.244.1.64/26".parse().unwrap())
        );
        assert_eq!(
            b(&["10.244.0.0/32"]),
            Some("10.244.0.0/26".parse().unwrap())
        );
        assert_eq!(b(&["fd00::5/128"]), None);
        assert_eq!(b(&[]), None);
    }

    #[test]
    fn the_config_peers_bird_from_the_host() {
        let c = config();
        assert!(
            c.starts_with("[bgp]\nasn = 4200000002\nrouter_id = \"10.99.0.1\"\n"),
            "{c}"
        );
        assert!(
            c.contains("[[bgp.peers]]\naddress = \"10.99.0.2\"\nasn = 65000\n"),
            "{c}"
        );
    }
}

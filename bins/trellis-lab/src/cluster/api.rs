//! The lab's calls on the daemons' gRPC APIs: the cluster defined on the
//! controller, the networks and containers on the nodes, and the waits for
//! the cluster to converge.

use anyhow::{Context, Result, bail};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use trellis_proto::v1 as pb;
use trellis_testlab::Netns;
use trellis_testlab::cluster::HOST_IPS;

/// trellis's route protocol number: its host-gw routes to other nodes.
pub(super) const TRELLIS_ROUTE_PROTO: &str = "116";
/// How long the cluster gets to converge (networks served, routes in place).
const CONVERGE_WITHIN: Duration = Duration::from_secs(20);

/// The routed pool with the cluster network `pods`, and the bridge pool.
pub(super) async fn define(ctl: &mut pb::ControllerClient<Channel>) -> Result<()> {
    for (name, prefix, mode, block_size) in [
        ("pods-v4", "10.244.0.0/16", pb::PoolMode::Routed, 0),
        ("web-v4", "10.10.0.0/16", pb::PoolMode::Bridge, 24),
    ] {
        let spec = pb::PoolSpec {
            name: name.into(),
            prefix: prefix.into(),
            mode: mode.into(),
            block_size,
            outgoing_nat: true,
            ..Default::default()
        };
        ctl.create_pool(pb::CreatePoolRequest { spec: Some(spec) })
            .await
            .with_context(|| format!("create pool {name}"))?;
    }
    let spec = pb::ClusterNetworkSpec {
        name: "pods".into(),
        pools: vec!["pods-v4".into()],
        mtu: 0,
    };
    ctl.create_cluster_network(pb::CreateClusterNetworkRequest { spec: Some(spec) })
        .await
        .context("create cluster network pods")?;
    println!(
        "controller: pool pods-v4 10.244.0.0/16 routed (/26 blocks), cluster network pods; \
         pool web-v4 10.10.0.0/16 bridge (/24 per node)"
    );
    Ok(())
}

/// Waits until node `i` serves the cluster network `pods`.
pub(crate) async fn wait_for_pods(agent: &mut pb::AgentClient<Channel>, i: usize) -> Result<()> {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let networks = agent
            .list_networks(pb::ListNetworksRequest {})
            .await?
            .into_inner()
            .networks;
        if networks
            .iter()
            .any(|n| n.spec.as_ref().is_some_and(|s| s.name == "pods"))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("h{} does not serve `pods` after {CONVERGE_WITHIN:?}", i + 1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the bridge network `web` with its subnet from `web-v4`; the subnet.
pub(super) async fn create_web(agent: &mut pb::AgentClient<Channel>) -> Result<String> {
    let spec = pb::NetworkSpec {
        name: "web".into(),
        mode: pb::NetworkMode::Bridge.into(),
        bridge: "trweb0".into(),
        outgoing_nat: true,
        subnet_pool: "web-v4".into(),
        ..Default::default()
    };
    let net = agent
        .create_network(pb::CreateNetworkRequest { spec: Some(spec) })
        .await
        .context("create network web")?
        .into_inner();
    let subnets = net.spec.map(|s| s.subnets).unwrap_or_default();
    subnets
        .into_iter()
        .next()
        .context("network web came without a subnet")
}

/// Attaches container `id` (namespace `ns`) to `network`; its address.
pub(crate) async fn attach(
    agent: &mut pb::AgentClient<Channel>,
    network: &str,
    id: &str,
    ns: &Netns,
) -> Result<IpAddr> {
    // A node serves `pods` as soon as it sees the network, a moment before
    // its registration lets it claim blocks: UNAVAILABLE meanwhile.
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let ep = loop {
        let r = agent
            .attach(pb::AttachRequest {
                network: network.into(),
                container_id: id.into(),
                netns: ns.path_str(),
                ..Default::default()
            })
            .await;
        match r {
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => {
                break r
                    .with_context(|| format!("attach {id} to {network}"))?
                    .into_inner();
            }
        }
    };
    let first = ep
        .addresses
        .first()
        .context("an endpoint without addresses")?;
    let ip = first.split('/').next().unwrap_or_default();
    ip.parse()
        .with_context(|| format!("endpoint address {first:?} of {id}"))
}

/// Waits until every host routes every other node's blocks via that node.
pub(super) async fn wait_for_routes(
    hosts: &[Netns],
    ctl: &mut pb::ControllerClient<Channel>,
) -> Result<()> {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let mut missing = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let routes = host.ip(&format!("route show proto {TRELLIS_ROUTE_PROTO}"));
            for (j, via) in HOST_IPS.iter().enumerate().filter(|(j, _)| *j != i) {
                let node = format!("h{}", j + 1);
                let blocks = ctl
                    .list_blocks(pb::ListBlocksRequest {
                        node,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .blocks;
                for b in blocks {
                    if !routes.contains(&format!("{} via {via}", b.prefix)) {
                        missing.push(format!("h{}: {} via {via}", i + 1, b.prefix));
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "routes missing after {CONVERGE_WITHIN:?}: {}",
                missing.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! The lab of `trellis-bench cluster`: testlab's cluster lab (an underlay
//! switch, a controller's machine, three hosts), the real trellis-controller
//! in the controller's namespace serving its unix socket only, trellisd on
//! h1 and h2 joined to it over that socket (a unix socket is a file, not a
//! network: no TCP, nothing outside the lab's namespaces), and trellisd on
//! h3 standalone.
//!
//! ```text
//!  ctl  trellis-controller   --socket S (only)
//!       [--store etcd: 3 etcd members on ctl's loopback; the controller one
//!        replica on them, also listening on 127.0.0.1:7444 there]
//!  h1   trellisd --controller unix:S --node-address 10.1.253.101   "A"
//!  h2   trellisd --controller unix:S --node-address 10.1.253.102   "B"
//!  h3   trellisd (standalone)
//! ```

use super::store::{Backing, REPLICA_PORT, Store, wait_for_office};
use crate::daemon::Daemon;
use anyhow::{Context, Result, ensure};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tonic::transport::Channel;
use trellis_proto::v1::{self as pb, AgentClient, ControllerClient};
use trellis_testlab::cluster::{ClusterLab, HOST_IPS};

/// The cluster network the cluster node attaches to, and its routed pool.
pub const CLUSTER_NET: &str = "pods";
/// The routed pool of [`CLUSTER_NET`] (default /26 blocks).
pub const CLUSTER_POOL: (&str, &str) = ("pods-v4", "10.244.0.0/16");
/// The standalone node's routed network: the same prefix size.
pub const SOLO_NET: (&str, &str) = ("solo", "10.245.0.0/16");
/// A routed pool no network uses, for claims made straight at the
/// controller on A's behalf: small blocks, a cap high enough for any run.
pub const CLAIM_POOL: (&str, &str, u32) = ("claims-v4", "10.250.0.0/16", 29);

/// A trellisd and a client of it.
pub struct Node {
    /// Its name in the cluster (or the lab's, standalone).
    pub name: &'static str,
    /// The agent API on its unix socket.
    pub agent: AgentClient<Channel>,
    /// The process (declared after the client: dropped after it).
    pub daemon: Daemon,
}

/// The running lab; daemons are killed before the namespaces go.
pub struct Rig {
    /// A, cluster member (h1).
    pub a: Node,
    /// B, cluster member (h2).
    pub b: Node,
    /// Standalone (h3).
    pub solo: Node,
    /// The controller API on its unix socket.
    pub ctl: ControllerClient<Channel>,
    /// The controller process.
    pub controller: Daemon,
    /// Its store's processes (etcd), killed after the controller.
    pub backing: Backing,
    /// The namespaces (last: removed after every daemon is dead).
    pub lab: ClusterLab,
}

impl Rig {
    /// Builds the lab, starts the controller on `store` (and etcd, for
    /// etcd) and waits until it serves, defines the pools and the cluster
    /// network, starts the three trellisd, and waits until the members
    /// serve the cluster network.
    pub fn start(rt: &Runtime, trellisd: &Path, controller: &Path, store: Store) -> Result<Rig> {
        let lab = ClusterLab::build();
        let backing = Backing::start(store, &lab.ctl)?;
        let args = backing.controller_args("ctl-0", REPLICA_PORT);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ctl_daemon = Daemon::start_with(controller, &lab.ctl, &args)?;
        let mut ctl = rt
            .block_on(async {
                wait_for_office(ctl_daemon.socket()).await?;
                let ch = trellis_proto::channel_unix(ctl_daemon.socket()).await?;
                anyhow::Ok(ControllerClient::new(ch))
            })
            .with_context(|| {
                format!(
                    "controller's log (tail):\n{}{}",
                    ctl_daemon.log(),
                    backing.logs()
                )
            })?;
        rt.block_on(define(&mut ctl))
            .with_context(|| format!("define the pools:\n{}", ctl_daemon.log()))?;
        let url = format!("unix:{}", ctl_daemon.socket().display());
        let member = |i: usize, name: &'static str| -> Result<Node> {
            let ip = HOST_IPS[i].to_string();
            let args = ["--node", name, "--controller", &url, "--node-address", &ip];
            let daemon = Daemon::start_with(trellisd, &lab.hosts[i], &args)?;
            connect(rt, name, daemon)
        };
        let a = member(0, "h1")?;
        let b = member(1, "h2")?;
        let solo = connect(
            rt,
            "h3",
            Daemon::start_with(trellisd, &lab.hosts[2], &["--node", "h3"])?,
        )?;
        let mut rig = Rig {
            a,
            b,
            solo,
            ctl,
            controller: ctl_daemon,
            backing,
            lab,
        };
        for node in [&mut rig.a, &mut rig.b] {
            wait_for_network(rt, node, CLUSTER_NET)?;
        }
        rt.block_on(create_solo(&mut rig.solo.agent))
            .with_context(|| {
                format!("create the standalone network:\n{}", rig.solo.daemon.log())
            })?;
        Ok(rig)
    }
}

/// A client of the trellisd `daemon`, once it answers `Status` ready.
fn connect(rt: &Runtime, name: &'static str, daemon: Daemon) -> Result<Node> {
    let agent = rt.block_on(async {
        let mut agent = trellis_proto::connect_unix(daemon.socket()).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !agent.status(pb::StatusRequest {}).await?.into_inner().ready {
            ensure!(Instant::now() < deadline, "{name} not ready after 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(agent)
    });
    let agent = agent.with_context(|| format!("trellisd {name}:\n{}", daemon.log()))?;
    Ok(Node {
        name,
        agent,
        daemon,
    })
}

/// The pools and the cluster network.
async fn define(ctl: &mut ControllerClient<Channel>) -> Result<()> {
    let pool = |name: &str, prefix: &str, block_size: u32, max: u32| pb::CreatePoolRequest {
        spec: Some(pb::PoolSpec {
            name: name.into(),
            prefix: prefix.into(),
            block_size,
            mode: pb::PoolMode::Routed.into(),
            outgoing_nat: false,
            max_blocks_per_node: max,
        }),
    };
    ctl.create_pool(pool(CLUSTER_POOL.0, CLUSTER_POOL.1, 0, 0))
        .await?;
    let (name, prefix, size) = CLAIM_POOL;
    ctl.create_pool(pool(name, prefix, size, 1 << 16)).await?;
    ctl.create_cluster_network(pb::CreateClusterNetworkRequest {
        spec: Some(pb::ClusterNetworkSpec {
            name: CLUSTER_NET.into(),
            pools: vec![CLUSTER_POOL.0.into()],
            mtu: 0,
        }),
    })
    .await?;
    Ok(())
}

/// The standalone routed network, as the cluster network but local.
async fn create_solo(agent: &mut AgentClient<Channel>) -> Result<()> {
    agent
        .create_network(pb::CreateNetworkRequest {
            spec: Some(pb::NetworkSpec {
                name: SOLO_NET.0.into(),
                mode: pb::NetworkMode::Routed.into(),
                subnets: vec![SOLO_NET.1.into()],
                outgoing_nat: false,
                ..Default::default()
            }),
        })
        .await?;
    Ok(())
}

/// Waits (up to 30 s) until `node` serves `network`.
fn wait_for_network(rt: &Runtime, node: &mut Node, network: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nets = rt
            .block_on(node.agent.list_networks(pb::ListNetworksRequest {}))?
            .into_inner()
            .networks;
        if nets
            .iter()
            .any(|n| n.spec.as_ref().is_some_and(|s| s.name == network))
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{} does not serve the cluster network {network:?} 30 s after it started:\n{}",
            node.name,
            node.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! The cluster as this node last heard of it, kept by the watch, and what
//! follows from it for this node — as values: the routes to other nodes'
//! blocks, the blocks that are this node's, the cluster's networks as the
//! agent defines them. Pure, so it is tested by comparing values.

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use trellis_agent::{ClusterPool, NetworkMode, NetworkSpec};
use trellis_cluster::{Block, ClusterNetworkSpec, Event, Node, Pool, PoolMode, watch::Change};
use trellis_route::PeerRoute;
use trellis_types::{NetworkName, NodeName, PoolName};

/// The cluster at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The last revision applied.
    pub revision: u64,
    /// Pools.
    pub pools: BTreeMap<PoolName, Pool>,
    /// Cluster networks.
    pub networks: BTreeMap<NetworkName, ClusterNetworkSpec>,
    /// Nodes.
    pub nodes: BTreeMap<NodeName, Node>,
    /// Blocks, by pool and prefix.
    pub blocks: BTreeMap<(PoolName, IpNet), Block>,
}

impl ClusterView {
    /// Applies one watch event: a snapshot replaces everything.
    pub fn apply(&mut self, e: Event) {
        match e {
            Event::Snapshot(s) => {
                let s = std::sync::Arc::unwrap_or_clone(s);
                *self = ClusterView {
                    revision: s.revision,
                    pools: s
                        .pools
                        .into_iter()
                        .map(|p| (p.spec.name.clone(), p))
                        .collect(),
                    networks: s
                        .networks
                        .into_iter()
                        .map(|n| (n.spec.name.clone(), n.spec))
                        .collect(),
                    nodes: s
                        .nodes
                        .into_iter()
                        .map(|n| (n.record.spec.name.clone(), n))
                        .collect(),
                    blocks: s
                        .blocks
                        .into_iter()
                        .map(|b| ((b.pool.clone(), b.prefix), b))
                        .collect(),
                };
            }
            Event::Change(rev, c) => {
                self.revision = self.revision.max(rev);
                match c {
                    Change::Pool(p) => {
                        self.pools.insert(p.spec.name.clone(), p);
                    }
                    Change::PoolDeleted(n) => {
                        self.pools.remove(&n);
                    }
                    Change::Network(n) => {
                        self.networks.insert(n.spec.name.clone(), n.spec);
                    }
                    Change::NetworkDeleted(n) => {
                        self.networks.remove(&n);
                    }
                    Change::Node(n) => {
                        self.nodes.insert(n.record.spec.name.clone(), n);
                    }
                    Change::NodeDeleted(n) => {
                        self.nodes.remove(&n);
                    }
                    Change::Block(b) => {
                        self.blocks.insert((b.pool.clone(), b.prefix), b);
                    }
                    Change::BlockDeleted(p, b) => {
                        self.blocks.remove(&(p, b));
                    }
                }
            }
        }
    }

    /// One route per block of another node, via that node's underlay
    /// address of the block's family (host-gw), sorted. A block whose
    /// owner has no address of its family gets none.
    pub fn peer_routes(&self, me: &NodeName) -> Vec<PeerRoute> {
        let mut out: Vec<PeerRoute> = self
            .blocks
            .values()
            .filter(|b| &b.record.node != me)
            .filter_map(|b| {
                let spec = self.nodes.get(&b.record.node).map(|n| &n.record.spec);
                let via: Option<IpAddr> = match b.prefix {
                    IpNet::V4(_) => spec
                        .and_then(|s| s.address_v4)
                        .or(b.address_v4)
                        .map(IpAddr::V4),
                    IpNet::V6(_) => spec
                        .and_then(|s| s.address_v6)
                        .or(b.address_v6)
                        .map(IpAddr::V6),
                };
                Some(PeerRoute {
                    block: b.prefix,
                    via: via?,
                })
            })
            .collect();
        out.sort();
        out
    }

    /// The blocks this node holds, by pool.
    pub fn my_blocks(&self, me: &NodeName) -> Vec<(PoolName, IpNet)> {
        self.blocks
            .values()
            .filter(|b| &b.record.node == me)
            .map(|b| (b.pool.clone(), b.prefix))
            .collect()
    }

    /// The cluster's routed networks as the agent defines them: the pools'
    /// prefixes as subnets, blocks granted by the controller at the pools'
    /// block size. A network naming a pool this node has not heard of (or
    /// a pool that is not routed) is left out until it has.
    pub fn network_specs(&self) -> Vec<NetworkSpec> {
        self.networks
            .values()
            .filter_map(|n| {
                let pools: Vec<&Pool> = n
                    .pools
                    .iter()
                    .map(|p| {
                        self.pools
                            .get(p)
                            .filter(|p| p.spec.mode == PoolMode::Routed)
                    })
                    .collect::<Option<_>>()?;
                Some(NetworkSpec {
                    name: n.name.clone(),
                    mode: NetworkMode::Routed,
                    subnets: pools.iter().map(|p| p.spec.prefix).collect(),
                    gateway: None,
                    masquerade: pools.iter().any(|p| p.spec.outgoing_nat),
                    mtu: n.mtu,
                    internal: false,
                    routable: false,
                    reach: Vec::new(),
                    subnet_pool: None,
                    cluster_pools: pools
                        .iter()
                        .map(|p| ClusterPool {
                            name: p.spec.name.clone(),
                            block_len: p.spec.block_len,
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// The agent's pool that controller pool `pool` feeds: the pool of the
    /// cluster network that uses it (`<network>.v4`/`.v6`).
    pub fn local_pool(&self, pool: &PoolName) -> Option<PoolName> {
        let prefix = self.pools.get(pool)?.spec.prefix;
        self.networks
            .values()
            .find(|n| n.pools.contains(pool))
            .map(|n| PoolName::of(&n.name, prefix))
    }
}

//! What netctl prints of the controller's answers, as plain serialisable
//! structs: the spec's fields flattened beside the status's (as
//! [`crate::view::NetworkView`] does), snake_case names, enums as lowercase
//! words, times as the raw milliseconds the API carries (tables show them
//! for people). Field names are part of netctl's interface: rename none.

use std::collections::BTreeMap;

use serde::Serialize;
use trellis_proto::v1;

/// `routed`, `bridge` or `unspecified`.
pub fn pool_mode(mode: i32) -> &'static str {
    match v1::PoolMode::try_from(mode) {
        Ok(v1::PoolMode::Routed) => "routed",
        Ok(v1::PoolMode::Bridge) => "bridge",
        _ => "unspecified",
    }
}

/// `ready`, `draining`, `dead` or `unspecified`.
pub fn node_state(state: i32) -> &'static str {
    match v1::NodeState::try_from(state) {
        Ok(v1::NodeState::Ready) => "ready",
        Ok(v1::NodeState::Draining) => "draining",
        Ok(v1::NodeState::Dead) => "dead",
        _ => "unspecified",
    }
}

/// `dead_owner`, `unknown_owner`, `usage_without_block` or `unspecified`.
pub fn problem_kind(kind: i32) -> &'static str {
    use v1::ipam_problem::Kind;
    match Kind::try_from(kind) {
        Ok(Kind::DeadOwner) => "dead_owner",
        Ok(Kind::UnknownOwner) => "unknown_owner",
        Ok(Kind::UsageWithoutBlock) => "usage_without_block",
        Ok(Kind::NotHeldByNode) => "not_held_by_node",
        Ok(Kind::HeldWithoutGrant) => "held_without_grant",
        Ok(Kind::NodeUnreadable) => "node_unreadable",
        _ => "unspecified",
    }
}

/// A pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolView {
    /// Its name.
    pub name: String,
    /// Its prefix.
    pub prefix: String,
    /// `routed`, `bridge` or `unspecified`.
    pub mode: String,
    /// The prefix length of its blocks.
    pub block_size: u32,
    /// Whether traffic from the pool to outside every pool is masqueraded.
    pub outgoing_nat: bool,
    /// The most blocks one node may hold.
    pub max_blocks_per_node: u32,
    /// How many blocks the pool has.
    pub blocks_total: u64,
    /// How many of them are held.
    pub blocks_held: u64,
}

impl From<v1::Pool> for PoolView {
    fn from(p: v1::Pool) -> Self {
        let spec = p.spec.unwrap_or_default();
        PoolView {
            name: spec.name,
            prefix: spec.prefix,
            mode: pool_mode(spec.mode).to_owned(),
            block_size: spec.block_size,
            outgoing_nat: spec.outgoing_nat,
            max_blocks_per_node: spec.max_blocks_per_node,
            blocks_total: p.blocks_total,
            blocks_held: p.blocks_held,
        }
    }
}

/// A cluster network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterNetworkView {
    /// Its name.
    pub name: String,
    /// The routed pools it takes addresses from.
    pub pools: Vec<String>,
    /// The MTU; 0 for the kernel's default.
    pub mtu: u32,
    /// The store revision it was last written at.
    pub revision: u64,
}

impl From<v1::ClusterNetwork> for ClusterNetworkView {
    fn from(n: v1::ClusterNetwork) -> Self {
        let spec = n.spec.unwrap_or_default();
        ClusterNetworkView {
            name: spec.name,
            pools: spec.pools,
            mtu: spec.mtu,
            revision: n.revision,
        }
    }
}

/// A node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// `ready`, `draining`, `dead` or `unspecified`.
    pub state: String,
    /// Its underlay IPv4 address; empty if none.
    pub address_v4: String,
    /// Its underlay IPv6 address; empty if none.
    pub address_v6: String,
    /// Labels, sorted by key.
    pub labels: BTreeMap<String, String>,
    /// Where the controller reads it (its Agent API); empty: it cannot.
    pub agent_address: String,
    /// Milliseconds since its lease was last renewed.
    pub lease_age_ms: u64,
    /// Unix time in milliseconds of its registration.
    pub registered_unix_ms: u64,
    /// How many blocks it holds.
    pub blocks: u32,
}

impl From<v1::Node> for NodeView {
    fn from(n: v1::Node) -> Self {
        let spec = n.spec.unwrap_or_default();
        NodeView {
            name: spec.name,
            state: node_state(n.state).to_owned(),
            address_v4: spec.address_v4,
            address_v6: spec.address_v6,
            labels: spec.labels.into_iter().collect(),
            agent_address: spec.agent_address,
            lease_age_ms: n.lease_age_ms,
            registered_unix_ms: n.registered_unix_ms,
            blocks: n.blocks,
        }
    }
}

/// A block and the node that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockView {
    /// Its pool.
    pub pool: String,
    /// Its prefix.
    pub prefix: String,
    /// The node that holds it.
    pub node: String,
    /// Unix time in milliseconds of the claim.
    pub claimed_unix_ms: u64,
    /// Addresses in use, as the node last reported.
    pub used: u32,
    /// Whether the node has reported its use (`used` is 0 until it has).
    pub reported: bool,
    /// The node's underlay IPv4 address: the next hop to the block.
    pub node_address_v4: String,
    /// The node's underlay IPv6 address.
    pub node_address_v6: String,
}

impl From<v1::Block> for BlockView {
    fn from(b: v1::Block) -> Self {
        BlockView {
            pool: b.pool,
            prefix: b.prefix,
            node: b.node,
            claimed_unix_ms: b.claimed_unix_ms,
            used: b.used,
            reported: b.reported,
            node_address_v4: b.node_address_v4,
            node_address_v6: b.node_address_v6,
        }
    }
}

impl BlockView {
    /// The node's address of the block's family: where other nodes route it.
    pub fn next_hop(&self) -> &str {
        if self.prefix.contains(':') {
            &self.node_address_v6
        } else {
            &self.node_address_v4
        }
    }
}

/// The answer of `block release`: the block that no longer is the node's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleasedBlockView {
    /// Its pool.
    pub pool: String,
    /// Its prefix.
    pub prefix: String,
    /// The node that held it.
    pub node: String,
}

/// The answer of `node rm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedNodeView {
    /// The node removed.
    pub name: String,
    /// The blocks released with it.
    pub released: Vec<String>,
}

/// One finding of `ipam check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpamProblemView {
    /// `dead_owner`, `unknown_owner`, `usage_without_block`,
    /// `not_held_by_node`, `held_without_grant`, `node_unreadable` or
    /// `unspecified`.
    pub kind: String,
    /// The block's pool.
    pub pool: String,
    /// The block's prefix (empty for a finding about a whole node).
    pub prefix: String,
    /// The node concerned.
    pub node: String,
    /// One line, for people.
    pub detail: String,
    /// Whether `ipam release` would release the block.
    pub releasable: bool,
}

impl From<v1::IpamProblem> for IpamProblemView {
    fn from(p: v1::IpamProblem) -> Self {
        IpamProblemView {
            kind: problem_kind(p.kind).to_owned(),
            pool: p.pool,
            prefix: p.prefix,
            node: p.node,
            detail: p.detail,
            releasable: p.releasable,
        }
    }
}

/// The answer of `ipam check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpamCheckView {
    /// Whether nothing was found.
    pub ok: bool,
    /// What was found.
    pub problems: Vec<IpamProblemView>,
}

impl From<v1::CheckIpamResponse> for IpamCheckView {
    fn from(r: v1::CheckIpamResponse) -> Self {
        IpamCheckView {
            ok: r.problems.is_empty(),
            problems: r.problems.into_iter().map(Into::into).collect(),
        }
    }
}

/// The answer of `ipam release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpamReleaseView {
    /// The prefixes of the blocks released.
    pub released: Vec<String>,
}

/// The answer of `cluster status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControllerStatusView {
    /// The controller's version.
    pub version: String,
    /// The store's revision.
    pub revision: u64,
    /// How many nodes are registered.
    pub nodes: u32,
    /// How many of them are ready.
    pub nodes_ready: u32,
    /// How many pools exist.
    pub pools: u32,
    /// How many blocks nodes hold.
    pub blocks: u32,
}

impl From<v1::ControllerStatusResponse> for ControllerStatusView {
    fn from(s: v1::ControllerStatusResponse) -> Self {
        ControllerStatusView {
            version: s.version,
            revision: s.revision,
            nodes: s.nodes,
            nodes_ready: s.nodes_ready,
            pools: s.pools,
            blocks: s.blocks,
        }
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;

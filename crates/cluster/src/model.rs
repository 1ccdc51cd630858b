//! What the controller stores and answers: pools, cluster networks, nodes,
//! blocks. The stored forms are JSON; the views add what is only known at
//! read time (a node's lease age, a block's reported usage).

use crate::Error;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use trellis_types::{AgentAddress, InvalidInput, NetworkName, NodeName, PoolName, check_prefix};

/// What a pool's blocks are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// Blocks of /32 (/128) container addresses for routed networks; a node
    /// may hold many, and other nodes route each one to it.
    Routed,
    /// One block per node, the subnet of that node's bridge network
    /// (flannel's per-host subnet).
    Bridge,
}

/// Default block of a routed IPv4 pool: /26, 64 addresses.
pub const ROUTED_BLOCK_V4: u8 = 26;
/// Default block of a routed IPv6 pool: /122.
pub const ROUTED_BLOCK_V6: u8 = 122;
/// Default per-node subnet of a bridge IPv4 pool: /24, as flannel.
pub const BRIDGE_BLOCK_V4: u8 = 24;
/// Default per-node subnet of a bridge IPv6 pool: /120.
pub const BRIDGE_BLOCK_V6: u8 = 120;
/// Default cap on the blocks of one routed pool one node may hold.
pub const DEFAULT_MAX_BLOCKS_PER_NODE: u32 = 64;
/// Host bits of a routed block: 2..=12 (4 to 4096 addresses), the block
/// sizes a node's own IPAM keeps records of.
const ROUTED_HOST_BITS: std::ops::RangeInclusive<u8> = 2..=12;

/// A validated pool definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// The pool's name.
    pub name: PoolName,
    /// Its prefix, host bits clear.
    pub prefix: IpNet,
    /// The prefix length of each block.
    pub block_len: u8,
    /// What its blocks are for.
    pub mode: PoolMode,
    /// Masquerade traffic from the pool to anywhere outside every pool.
    pub outgoing_nat: bool,
    /// The most blocks of this pool one node may hold.
    pub max_blocks_per_node: u32,
}

impl PoolSpec {
    /// Validates a pool definition; `block_len` and `max_blocks_per_node`
    /// of `0` take the defaults of the mode and family.
    pub fn new(
        name: &str,
        prefix: IpNet,
        block_len: u8,
        mode: PoolMode,
        outgoing_nat: bool,
        max_blocks_per_node: u32,
    ) -> Result<Self, InvalidInput> {
        let name = PoolName::parse("spec.name", name)?;
        let prefix = check_prefix("spec.prefix", prefix)?;
        let v4 = matches!(prefix, IpNet::V4(_));
        let block_len = match (block_len, mode, v4) {
            (0, PoolMode::Routed, true) => ROUTED_BLOCK_V4,
            (0, PoolMode::Routed, false) => ROUTED_BLOCK_V6,
            (0, PoolMode::Bridge, true) => BRIDGE_BLOCK_V4,
            (0, PoolMode::Bridge, false) => BRIDGE_BLOCK_V6,
            (n, ..) => n,
        };
        let max = prefix.max_prefix_len();
        let host_bits = max.saturating_sub(block_len);
        if block_len > max || block_len < prefix.prefix_len() {
            return Err(InvalidInput::new(
                "spec.block_size",
                block_len,
                format!(
                    "a block must lie inside the pool: between /{} and /{}",
                    prefix.prefix_len(),
                    max
                ),
            ));
        }
        if mode == PoolMode::Routed && !ROUTED_HOST_BITS.contains(&host_bits) {
            return Err(InvalidInput::new(
                "spec.block_size",
                block_len,
                format!(
                    "a routed block holds 4 to 4096 addresses: /{} to /{}",
                    max - ROUTED_HOST_BITS.end(),
                    max - ROUTED_HOST_BITS.start()
                ),
            ));
        }
        if mode == PoolMode::Bridge && host_bits < 2 {
            return Err(InvalidInput::new(
                "spec.block_size",
                block_len,
                format!(
                    "a bridge subnet needs at least 4 addresses: /{} at most",
                    max - 2
                ),
            ));
        }
        let max_blocks_per_node = match (mode, max_blocks_per_node) {
            (PoolMode::Bridge, 0 | 1) => 1,
            (PoolMode::Bridge, n) => {
                return Err(InvalidInput::new(
                    "spec.max_blocks_per_node",
                    n,
                    "a node holds one subnet of a bridge pool",
                ));
            }
            (PoolMode::Routed, 0) => DEFAULT_MAX_BLOCKS_PER_NODE,
            (PoolMode::Routed, n) => n,
        };
        Ok(PoolSpec {
            name,
            prefix,
            block_len,
            mode,
            outgoing_nat,
            max_blocks_per_node,
        })
    }

    /// How many blocks the pool holds (saturating: an IPv6 pool may hold
    /// more than `u64::MAX`).
    pub fn block_count(&self) -> u64 {
        let bits = u32::from(self.block_len - self.prefix.prefix_len());
        1u64.checked_shl(bits).unwrap_or(u64::MAX)
    }

    /// The blocks of the pool, in address order.
    pub fn blocks(&self) -> impl Iterator<Item = IpNet> + use<> {
        self.prefix
            .subnets(self.block_len)
            .expect("block_len was checked against the prefix")
    }

    /// Whether `block` is one of the pool's blocks.
    pub fn holds_block(&self, block: IpNet) -> bool {
        block.prefix_len() == self.block_len && self.prefix.contains(&block)
    }
}

/// A stored pool: its definition and how many blocks are held (kept in the
/// record, so a claim, a release and a delete of the pool meet on one key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The definition.
    pub spec: PoolSpec,
    /// Blocks held by nodes.
    pub held: u64,
}

/// A routed network served by every node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNetworkSpec {
    /// The name nodes serve it under.
    pub name: NetworkName,
    /// Its routed pools, at most one per family.
    pub pools: Vec<PoolName>,
    /// The containers' MTU; `None` leaves the kernel's default.
    pub mtu: Option<u32>,
}

/// A stored cluster network and the revision it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNetwork {
    /// The definition.
    pub spec: ClusterNetworkSpec,
    /// The store revision of its last write.
    pub revision: u64,
}

/// What a node says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// The node's name.
    pub name: NodeName,
    /// Its IPv4 underlay address: where other nodes route its blocks.
    pub address_v4: Option<Ipv4Addr>,
    /// Its IPv6 underlay address.
    pub address_v6: Option<Ipv6Addr>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Where the controller reads the node (its Agent API over mutual TLS);
    /// `None`: the node cannot be read. (Absent from records written before
    /// nodes registered one.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_address: Option<AgentAddress>,
}

/// A node's lifecycle as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Its lease is alive.
    Ready,
    /// Alive, but claims no new block.
    Draining,
    /// Its lease lapsed.
    Dead,
}

/// A stored node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// What it registered.
    pub spec: NodeSpec,
    /// Unix time in milliseconds of its first registration.
    pub registered_unix_ms: u64,
    /// Whether an operator drained it.
    pub draining: bool,
    /// Whether its lease lapsed (set by the lease sweeper, cleared when it
    /// comes back).
    pub dead: bool,
    /// The blocks it holds per pool (the per-node cap is checked against
    /// this, in the same commit as the claim).
    pub held: BTreeMap<PoolName, u32>,
    /// Addresses in use per block, as the node last reported (kept in the
    /// controller's memory, not the store: filled in when answered).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<IpNet, u32>,
}

impl NodeRecord {
    /// Its state.
    pub fn state(&self) -> NodeState {
        if self.dead {
            NodeState::Dead
        } else if self.draining {
            NodeState::Draining
        } else {
            NodeState::Ready
        }
    }

    /// How many blocks it holds in all.
    pub fn blocks(&self) -> u32 {
        self.held.values().fold(0u32, |a, n| a.saturating_add(*n))
    }
}

/// A node as answered: the record and its lease's age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The stored record.
    pub record: NodeRecord,
    /// Time since the lease was last renewed, as this controller saw it
    /// (since the controller started, for a node not heard from since).
    pub lease_age: std::time::Duration,
}

/// A stored block: who holds it, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// The holder.
    pub node: NodeName,
    /// Unix time in milliseconds of the claim.
    pub claimed_unix_ms: u64,
}

/// A block as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Its pool.
    pub pool: PoolName,
    /// Its prefix.
    pub prefix: IpNet,
    /// Who holds it, since when.
    pub record: BlockRecord,
    /// Addresses in use as the holder last reported (`None`: not reported).
    pub used: Option<u32>,
    /// The holder's underlay addresses (the next hop to the block).
    pub address_v4: Option<Ipv4Addr>,
    /// See `address_v4`.
    pub address_v6: Option<Ipv6Addr>,
}

/// A node's report of one block's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockUsage {
    /// The block.
    pub prefix: IpNet,
    /// Addresses handed out in it.
    pub used: u32,
}

/// What an IPAM check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// Held by a node whose lease lapsed.
    DeadOwner,
    /// Held by a node that does not exist.
    UnknownOwner,
    /// A node reports addresses in a block it does not hold.
    UsageWithoutBlock,
    /// The controller gives the block to a node whose own IPAM does not
    /// hold it (read from the node).
    NotHeldByNode,
    /// A node's own IPAM holds a block the controller does not give it
    /// (read from the node).
    HeldWithoutGrant,
    /// The node's Agent API could not be read: its blocks were not compared.
    NodeUnreadable,
}

/// One finding of [`Controller::check_ipam`](crate::Controller::check_ipam).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamProblem {
    /// What kind.
    pub kind: ProblemKind,
    /// The pool of the block (empty when unknown).
    pub pool: Option<PoolName>,
    /// The block (`None` for a finding about a whole node:
    /// [`ProblemKind::NodeUnreadable`]).
    pub prefix: Option<IpNet>,
    /// The node concerned.
    pub node: NodeName,
    /// One line, for people.
    pub detail: String,
    /// Whether [`Controller::release_ipam`](crate::Controller::release_ipam)
    /// would release the block.
    pub releasable: bool,
}

/// Decodes a stored record, naming the key when it is corrupt.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// Encodes a record for the store.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise")
}

//! What this node holds of the cluster's pools, read from its own IPAM:
//! the node's side of the controller's block map.
//!
//! The controller counts blocks: each block of a routed pool a node
//! claimed, and the one subnet a bridge network took from a bridge pool.
//! The node's IPAM counts the same blocks for its routed networks, but
//! carves a bridge network's subnet into blocks of its own; so a bridge
//! subnet is answered as the one block the controller knows, its usage
//! summed. The member reports this usage to the controller at every
//! renewal, and the controller's IPAM check compares it, read through the
//! Agent API, with its block map.

use crate::agent::Agent;
use crate::error::Error;
use ipnet::IpNet;
use trellis_types::{NetworkName, PoolName};

/// One block of a cluster pool, as this node's IPAM records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBlock {
    /// The local network that allocates from it.
    pub network: NetworkName,
    /// The controller pool it was granted from.
    pub pool: PoolName,
    /// The block (a bridge network's whole subnet).
    pub prefix: IpNet,
    /// Addresses handed out in it.
    pub used: u32,
    /// Addresses still free (none in a frozen block).
    pub free: u32,
    /// No new address is handed out of it (the node found the controller
    /// does not count it as its own).
    pub frozen: bool,
}

impl Agent {
    /// Every block of a cluster pool this node holds, by network and then
    /// address; empty on a standalone node.
    pub async fn held_blocks(&self) -> Result<Vec<HeldBlock>, Error> {
        let mut out = Vec::new();
        for net in self.networks() {
            for (local, subnet) in net.pools() {
                let Some(source) = net.cluster_pool_of(local.as_str()) else {
                    continue;
                };
                let blocks = self.ipam.block_usage(local.as_str()).await?;
                let held = |prefix, used, free, frozen| HeldBlock {
                    network: net.spec.name.clone(),
                    pool: source.name.clone(),
                    prefix,
                    used,
                    free,
                    frozen,
                };
                if net.spec.subnet_pool.is_some() {
                    // A bridge network's whole subnet is one cluster block.
                    let used = blocks.iter().map(|b| b.used).sum();
                    let free = blocks.iter().map(|b| b.free).sum();
                    let frozen = blocks.iter().any(|b| b.frozen);
                    out.push(held(subnet, used, free, frozen));
                } else {
                    out.extend(
                        blocks
                            .iter()
                            .map(|b| held(b.cidr, b.used, b.free, b.frozen)),
                    );
                }
            }
        }
        Ok(out)
    }
}

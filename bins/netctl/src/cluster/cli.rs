//! The controller's subcommands, flattened into [`crate::cli::Command`].
//!
//! Prefixes are parsed here ([`crate::parse::prefix`]), so a malformed one
//! fails with exit code 2 before any connection is made.

use clap::{Args, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::cli::EndpointFilter;
use crate::parse;

/// `netctl pool|cnet|node|block|ipam|cluster …`
#[derive(Debug, Subcommand)]
pub enum ControllerCmd {
    /// Create, list, inspect and remove address pools (controller).
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Create, list, inspect and remove cluster networks (controller).
    #[command(subcommand, visible_alias = "cluster-network")]
    Cnet(CnetCmd),
    /// List, inspect, drain and remove nodes (controller).
    #[command(subcommand)]
    Node(NodeCmd),
    /// List, claim and release address blocks (controller).
    #[command(subcommand)]
    Block(BlockCmd),
    /// Find blocks held wrongly and release them (controller).
    #[command(subcommand)]
    Ipam(IpamCmd),
    /// Show the controller's status.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

/// `netctl pool …`
#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Create a pool: a prefix carved into blocks that nodes claim.
    Create(PoolCreate),
    /// Show a pool.
    #[command(visible_alias = "inspect")]
    Get {
        /// The pool's name.
        name: String,
    },
    /// List pools.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove pools (refused while blocks are held or a cluster network
    /// uses them; an unknown pool is no error).
    #[command(visible_alias = "remove")]
    Rm {
        /// Names of pools.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// What a pool's blocks are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolMode {
    /// Blocks for routed networks: an address per container, a route per
    /// block between nodes.
    Routed,
    /// One block per node, the subnet of the node's bridge network.
    Bridge,
}

/// `netctl pool create`
#[derive(Debug, Args)]
pub struct PoolCreate {
    /// The pool's name.
    pub name: String,
    /// The pool's prefix, host bits zero (10.244.0.0/16, fd00:10:244::/56).
    #[arg(long, value_name = "CIDR", value_parser = parse::prefix)]
    pub prefix: IpNet,
    /// The prefix length of a block, e.g. 26 (default: the controller's,
    /// /26 or /122 routed, /24 or /120 bridge).
    #[arg(long, value_name = "LEN", value_parser = parse::block_size)]
    pub block_size: Option<u8>,
    /// Routed or bridge.
    #[arg(long, value_enum, default_value_t = PoolMode::Routed)]
    pub mode: PoolMode,
    /// Masquerade traffic from the pool to anywhere outside every pool.
    #[arg(long)]
    pub outgoing_nat: bool,
    /// The most blocks of the pool one node may hold (default: the
    /// controller's; bridge pools are always 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_blocks_per_node: Option<u32>,
}

/// `netctl cnet …`
#[derive(Debug, Subcommand)]
pub enum CnetCmd {
    /// Create a cluster network: a routed network every node serves.
    Create(CnetCreate),
    /// Show a cluster network.
    #[command(visible_alias = "inspect")]
    Get {
        /// The network's name.
        name: String,
    },
    /// List cluster networks.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove cluster networks (an unknown one is no error).
    #[command(visible_alias = "remove")]
    Rm {
        /// Names of cluster networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `netctl cnet create`
#[derive(Debug, Args)]
pub struct CnetCreate {
    /// The network's name, as nodes serve it.
    pub name: String,
    /// A routed pool to take addresses from; at most one per family.
    #[arg(long = "pool", value_name = "POOL", required = true)]
    pub pools: Vec<String>,
    /// MTU of the containers' interfaces (default: the kernel's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(68..=65535))]
    pub mtu: Option<u32>,
}

/// `netctl node …`
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List a node's endpoints, read live from its Agent API by the
    /// controller (the node must have registered an Agent API address).
    Endpoints {
        /// The node's name.
        name: String,
        /// Which endpoints.
        #[command(flatten)]
        filter: EndpointFilter,
    },
    /// List nodes.
    #[command(visible_alias = "list")]
    Ls,
    /// Show a node.
    #[command(visible_alias = "inspect")]
    Get {
        /// The node's name.
        name: String,
    },
    /// Stop a node claiming new blocks; the blocks it holds stay its own.
    Drain {
        /// The node's name.
        name: String,
    },
    /// Forget a node and release its blocks (refused while it is alive or
    /// reports addresses in use, unless --force).
    #[command(visible_alias = "remove")]
    Rm {
        /// The node's name.
        name: String,
        /// Remove it even while it is alive or uses addresses.
        #[arg(long)]
        force: bool,
    },
}

/// `netctl block …`
#[derive(Debug, Subcommand)]
pub enum BlockCmd {
    /// List blocks, optionally filtered.
    #[command(visible_alias = "list")]
    Ls(BlockFilter),
    /// Claim a block of a pool for a node.
    Claim(BlockOwner),
    /// Release a block a node holds (one nobody holds is no error).
    Release(BlockRelease),
}

/// Filters of `block ls`; every filter given must match.
#[derive(Debug, Args)]
pub struct BlockFilter {
    /// Only blocks of this pool.
    #[arg(long)]
    pub pool: Option<String>,
    /// Only blocks this node holds.
    #[arg(long)]
    pub node: Option<String>,
}

/// A node and a pool: who claims a block, and where from.
#[derive(Debug, Args)]
pub struct BlockOwner {
    /// The node.
    #[arg(long)]
    pub node: String,
    /// The pool.
    #[arg(long)]
    pub pool: String,
}

/// `netctl block release`
#[derive(Debug, Args)]
pub struct BlockRelease {
    /// The node that holds the block, and its pool.
    #[command(flatten)]
    pub owner: BlockOwner,
    /// The block's prefix.
    #[arg(value_name = "PREFIX", value_parser = parse::prefix)]
    pub prefix: IpNet,
}

/// `netctl ipam …`
#[derive(Debug, Subcommand)]
pub enum IpamCmd {
    /// List blocks held by dead or unknown nodes, addresses used outside a
    /// node's blocks, and where the block map and a node's own IPAM (read
    /// live from its Agent API) disagree (exit code 11 when there are any).
    Check,
    /// Release the blocks `ipam check` names as releasable: those listed,
    /// or all of them.
    Release {
        /// Blocks to release (each must be releasable); none: every
        /// releasable block.
        #[arg(value_name = "PREFIX", value_parser = parse::prefix)]
        prefixes: Vec<IpNet>,
    },
}

/// `netctl cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Show the controller's version, revision and counts.
    Status,
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;

//! The controller's key layout in its store.
//!
//! ```text
//! cluster/pools/<pool>                 a pool and how many blocks are held
//! cluster/networks/<network>           a cluster network
//! cluster/nodes/<node>                 a node: registration, blocks held per
//!                                      pool, reported usage
//! cluster/blocks/<pool>/<addr>-<len>   a block's holder
//! ```
//!
//! A block is one key: two claims of it are two `put_if(Absent)` on that key,
//! so it can never have two owners.

use ipnet::IpNet;
use trellis_types::{NetworkName, NodeName, PoolName};

/// Everything the controller keeps.
pub const ROOT: &str = "cluster";
/// Pools.
pub const POOLS: &str = "cluster/pools";
/// Cluster networks.
pub const NETWORKS: &str = "cluster/networks";
/// Nodes.
pub const NODES: &str = "cluster/nodes";
/// Blocks.
pub const BLOCKS: &str = "cluster/blocks";

/// The key of pool `name`.
pub fn pool(name: &PoolName) -> String {
    format!("{POOLS}/{name}")
}

/// The key of cluster network `name`.
pub fn network(name: &NetworkName) -> String {
    format!("{NETWORKS}/{name}")
}

/// The key of node `name`.
pub fn node(name: &NodeName) -> String {
    format!("{NODES}/{name}")
}

/// The prefix of pool `pool`'s blocks.
pub fn pool_blocks(pool: &PoolName) -> String {
    format!("{BLOCKS}/{pool}")
}

/// The key of block `prefix` of pool `pool`.
pub fn block(pool: &PoolName, prefix: IpNet) -> String {
    format!("{BLOCKS}/{pool}/{}-{}", prefix.addr(), prefix.prefix_len())
}

/// What a key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A pool.
    Pool(PoolName),
    /// A cluster network.
    Network(NetworkName),
    /// A node.
    Node(NodeName),
    /// A block.
    Block(PoolName, IpNet),
}

/// Parses a key of the layout above; `None` for anything else.
pub fn parse(key: &str) -> Option<Key> {
    let rest = key.strip_prefix(ROOT)?.strip_prefix('/')?;
    let (kind, rest) = rest.split_once('/')?;
    match kind {
        "pools" => PoolName::parse("key", rest).ok().map(Key::Pool),
        "networks" => NetworkName::parse("key", rest).ok().map(Key::Network),
        "nodes" => NodeName::parse("key", rest).ok().map(Key::Node),
        "blocks" => {
            let (pool, block) = rest.split_once('/')?;
            let (addr, len) = block.rsplit_once('-')?;
            let prefix = format!("{addr}/{len}").parse().ok()?;
            Some(Key::Block(PoolName::parse("key", pool).ok()?, prefix))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_to_what_made_them() {
        let pool = PoolName::parse("p", "pod.v4").unwrap();
        let v4: IpNet = "10.244.1.64/26".parse().unwrap();
        let v6: IpNet = "fd00::40/122".parse().unwrap();
        assert_eq!(block(&pool, v4), "cluster/blocks/pod.v4/10.244.1.64-26");
        assert_eq!(parse(&block(&pool, v4)), Some(Key::Block(pool.clone(), v4)));
        assert_eq!(parse(&block(&pool, v6)), Some(Key::Block(pool.clone(), v6)));
        assert_eq!(parse(&self::pool(&pool)), Some(Key::Pool(pool)));
        let n = NodeName::parse("n", "host-1").unwrap();
        assert_eq!(parse(&node(&n)), Some(Key::Node(n)));
        assert_eq!(parse("cluster/other/x"), None);
        assert_eq!(parse("cluster/blocks/p/nonsense"), None);
    }
}

//! Controller requests in: every field checked and turned into a core type.
//!
//! Sizes are bounded here, as on the agent's edge (the text and label
//! bounds are the agent's: [`crate::input`]); names become [`NodeName`],
//! [`PoolName`] and [`NetworkName`], addresses and prefixes their `std` and
//! `ipnet` types, and a pool's definition is judged whole by
//! [`PoolSpec::new`]. Errors name the field as the proto spells it
//! (`spec.mode`, `usage.prefix`).

use crate::input::{bounded, labels_in, parse, required, text};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use trellis_cluster::{BlockUsage, ClusterNetworkSpec, NodeSpec, PoolMode, PoolSpec};
use trellis_proto::v1 as pb;
use trellis_types::{AgentAddress, InvalidInput, NetworkName, NodeName, PoolName, check_prefix};

pub use crate::input::network_name;

/// Most pools of one cluster network (the core takes one per family).
pub const MAX_NETWORK_POOLS: usize = 8;
/// Most blocks in one usage report or one IPAM release.
pub const MAX_BLOCKS: usize = 65536;

type Result<T> = std::result::Result<T, InvalidInput>;

/// A node's name (as `field`); required.
pub fn node_name(field: &'static str, s: &str) -> Result<NodeName> {
    NodeName::parse(field, required(field, s)?)
}

/// A pool's name (as `field`); required.
pub fn pool_name(field: &'static str, s: &str) -> Result<PoolName> {
    PoolName::parse(field, required(field, s)?)
}

/// A block's prefix (as `field`): a prefix with its host bits clear.
pub fn prefix(field: &'static str, s: &str) -> Result<IpNet> {
    let net = parse::<IpNet>(
        field,
        required(field, s)?,
        "not a prefix like 10.244.1.0/26 or fd00::40/122",
    )?;
    check_prefix(field, net)
}

/// A filter field: empty matches everything.
fn optional<T>(s: &str, f: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
    if s.is_empty() {
        Ok(None)
    } else {
        f(s).map(Some)
    }
}

/// A pool definition; defaults and the block size are the core's to judge.
pub fn pool_spec(spec: Option<pb::PoolSpec>) -> Result<PoolSpec> {
    let spec = spec.ok_or_else(|| InvalidInput::new("spec", "", "spec is required"))?;
    let name = text("spec.name", &spec.name)?;
    let prefix = parse::<IpNet>(
        "spec.prefix",
        required("spec.prefix", &spec.prefix)?,
        "not a prefix like 10.244.0.0/16 or fd00:10:244::/56",
    )?;
    let block_len = u8::try_from(spec.block_size).map_err(|_| {
        InvalidInput::new(
            "spec.block_size",
            spec.block_size,
            "not a prefix length (0 takes the default)",
        )
    })?;
    let mode = match pb::PoolMode::try_from(spec.mode) {
        Ok(pb::PoolMode::Routed) => PoolMode::Routed,
        Ok(pb::PoolMode::Bridge) => PoolMode::Bridge,
        _ => {
            return Err(InvalidInput::new(
                "spec.mode",
                spec.mode,
                "mode must be POOL_MODE_ROUTED or POOL_MODE_BRIDGE",
            ));
        }
    };
    PoolSpec::new(
        name,
        prefix,
        block_len,
        mode,
        spec.outgoing_nat,
        spec.max_blocks_per_node,
    )
}

/// A cluster network definition.
pub fn network_spec(spec: Option<pb::ClusterNetworkSpec>) -> Result<ClusterNetworkSpec> {
    let spec = spec.ok_or_else(|| InvalidInput::new("spec", "", "spec is required"))?;
    let name = NetworkName::parse("spec.name", text("spec.name", &spec.name)?)?;
    bounded("spec.pools", &spec.pools, MAX_NETWORK_POOLS)?;
    let pools = spec
        .pools
        .iter()
        .map(|p| pool_name("spec.pools", p))
        .collect::<Result<Vec<_>>>()?;
    // The pools' families are the core's to read; IPv6's 1280 minimum is
    // for the node that builds the interfaces to apply.
    let mtu = match spec.mtu {
        0 => None,
        m if (68..=65535).contains(&m) => Some(m),
        m => {
            let why = "mtu must be 0 (default) or 68 to 65535";
            return Err(InvalidInput::new("spec.mtu", m, why));
        }
    };
    Ok(ClusterNetworkSpec { name, pools, mtu })
}

/// What a node registers: its name, at least one underlay address, labels,
/// and where its Agent API is read (optional).
pub fn node_spec(spec: Option<pb::NodeSpec>) -> Result<NodeSpec> {
    let spec = spec.ok_or_else(|| InvalidInput::new("spec", "", "spec is required"))?;
    let name = node_name("spec.name", &spec.name)?;
    let address_v4 = optional(&spec.address_v4, |a| {
        underlay::<Ipv4Addr>("spec.address_v4", a, "not an IPv4 address")
    })?;
    let address_v6 = optional(&spec.address_v6, |a| {
        underlay::<Ipv6Addr>("spec.address_v6", a, "not an IPv6 address")
    })?;
    if address_v4.is_none() && address_v6.is_none() {
        return Err(InvalidInput::new(
            "spec.address_v4",
            "",
            "a node needs an underlay address: address_v4, address_v6 or both",
        ));
    }
    let agent_address = optional(&spec.agent_address, |a| {
        AgentAddress::parse("spec.agent_address", a)
    })?;
    Ok(NodeSpec {
        name,
        address_v4,
        address_v6,
        labels: labels_in("spec.labels", spec.labels)?,
        agent_address,
    })
}

/// An underlay address: other nodes route blocks to it, so it must be one
/// host's (not `0.0.0.0`, `::` or a multicast group).
fn underlay<T: std::str::FromStr + Into<IpAddr> + Copy>(
    field: &'static str,
    s: &str,
    why: &str,
) -> Result<T> {
    let addr = parse::<T>(field, s, why)?;
    let ip: IpAddr = addr.into();
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(InvalidInput::new(
            field,
            s,
            "not a host's address (unspecified or multicast)",
        ));
    }
    Ok(addr)
}

/// A keep-alive's usage report. The pool of each block is checked when
/// given; the core keys usage by prefix alone.
pub fn usage(usage: &[pb::BlockUsage]) -> Result<Vec<BlockUsage>> {
    bounded("usage", usage, MAX_BLOCKS)?;
    usage
        .iter()
        .map(|u| {
            optional(&u.pool, |p| pool_name("usage.pool", p))?;
            Ok(BlockUsage {
                prefix: prefix("usage.prefix", &u.prefix)?,
                used: u.used,
            })
        })
        .collect()
}

/// A block listing's filter: empty fields match everything.
pub fn block_filter(r: &pb::ListBlocksRequest) -> Result<(Option<PoolName>, Option<NodeName>)> {
    let pool = optional(&r.pool, |p| pool_name("pool", p))?;
    let node = optional(&r.node, |n| node_name("node", n))?;
    Ok((pool, node))
}

/// The prefixes of an IPAM release (empty: every releasable block).
pub fn prefixes(prefixes: &[String]) -> Result<Vec<IpNet>> {
    bounded("prefixes", prefixes, MAX_BLOCKS)?;
    prefixes.iter().map(|p| prefix("prefixes", p)).collect()
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;

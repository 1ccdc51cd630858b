//! Text for people of the controller's answers, in the shapes netctl prints
//! trellisd's: aligned columns for lists, `Key: value` blocks for single
//! objects (both from [`crate::render`]), short summaries for removals.

use super::view::{
    BlockView, ClusterNetworkView, ControllerStatusView, IpamCheckView, IpamReleaseView, NodeView,
    PoolView, ReleasedBlockView, RemovedNodeView,
};
use crate::render::{block, join, mtu, on_off, one, or_dash, or_none, table};
use crate::time::{duration, utc};

/// `/26`; empty (a `-` cell) for 0.
fn block_size(len: u32) -> String {
    if len == 0 {
        String::new()
    } else {
        format!("/{len}")
    }
}

/// A count whose 0 means "the controller's default"; empty for 0.
fn count(n: u32) -> String {
    if n == 0 { String::new() } else { n.to_string() }
}

/// `pool ls`.
pub fn pools(list: &[PoolView]) -> String {
    let headers = [
        "NAME",
        "PREFIX",
        "MODE",
        "BLOCK",
        "NAT",
        "MAX PER NODE",
        "HELD/TOTAL",
    ];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.prefix.clone(),
                p.mode.clone(),
                block_size(p.block_size),
                on_off(p.outgoing_nat),
                count(p.max_blocks_per_node),
                format!("{}/{}", p.blocks_held, p.blocks_total),
            ]
        })
        .collect();
    table(&headers, &rows)
}

/// `pool get`, `pool create`.
pub fn pool(p: &PoolView) -> String {
    block(&[
        ("Name", one(&p.name)),
        ("Prefix", one(&p.prefix)),
        ("Mode", one(&p.mode)),
        ("Block size", one(or_dash(&block_size(p.block_size)))),
        ("Outgoing NAT", one(on_off(p.outgoing_nat))),
        (
            "Max blocks per node",
            one(or_dash(&count(p.max_blocks_per_node))),
        ),
        ("Blocks held", one(p.blocks_held)),
        ("Blocks total", one(p.blocks_total)),
    ])
}

/// `cnet ls`.
pub fn networks(list: &[ClusterNetworkView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            let revision = n.revision.to_string();
            vec![n.name.clone(), join(&n.pools), mtu(n.mtu), revision]
        })
        .collect();
    table(&["NAME", "POOLS", "MTU", "REVISION"], &rows)
}

/// `cnet get`, `cnet create`.
pub fn network(n: &ClusterNetworkView) -> String {
    block(&[
        ("Name", one(&n.name)),
        ("Pools", or_none(&n.pools)),
        ("MTU", one(or_dash(&mtu(n.mtu)))),
        ("Revision", one(n.revision)),
    ])
}

/// A node's underlay addresses, IPv4 first, those it has.
fn addresses(v4: &str, v6: &str) -> Vec<String> {
    [v4, v6]
        .into_iter()
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `node ls`.
pub fn nodes(list: &[NodeView]) -> String {
    let headers = [
        "NAME",
        "STATE",
        "ADDRESSES",
        "BLOCKS",
        "LEASE AGE",
        "AGENT API",
    ];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.state.clone(),
                join(&addresses(&n.address_v4, &n.address_v6)),
                n.blocks.to_string(),
                duration(n.lease_age_ms),
                n.agent_address.clone(),
            ]
        })
        .collect();
    table(&headers, &rows)
}

/// `node get`, `node drain`.
pub fn node(n: &NodeView) -> String {
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    block(&[
        ("Name", one(&n.name)),
        ("State", one(&n.state)),
        (
            "Addresses",
            or_none(&addresses(&n.address_v4, &n.address_v6)),
        ),
        ("Labels", or_none(&labels)),
        ("Agent API", one(or_dash(&n.agent_address))),
        ("Blocks", one(n.blocks)),
        ("Lease age", one(duration(n.lease_age_ms))),
        ("Registered", one(or_dash(&utc(n.registered_unix_ms)))),
    ])
}

/// `released N block(s)`, then one prefix per line, indented.
fn released(prefixes: &[String]) -> String {
    let mut out = format!("released {} block(s)\n", prefixes.len());
    for prefix in prefixes {
        out.push_str(&format!("  {prefix}\n"));
    }
    out
}

/// `node rm`: the node, then the blocks released with it.
pub fn removed_node(r: &RemovedNodeView) -> String {
    format!("{}: {}", r.name, released(&r.released))
}

/// Addresses in use, or empty (a `-` cell) when the node has not reported.
fn used(b: &BlockView) -> String {
    if b.reported {
        b.used.to_string()
    } else {
        String::new()
    }
}

/// `block ls`.
pub fn blocks(list: &[BlockView]) -> String {
    let headers = ["POOL", "PREFIX", "NODE", "NEXT HOP", "USED", "CLAIMED"];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            vec![
                b.pool.clone(),
                b.prefix.clone(),
                b.node.clone(),
                b.next_hop().to_owned(),
                used(b),
                utc(b.claimed_unix_ms),
            ]
        })
        .collect();
    table(&headers, &rows)
}

/// `block claim`.
pub fn claimed(b: &BlockView) -> String {
    let hops = addresses(&b.node_address_v4, &b.node_address_v6);
    let used = match used(b).as_str() {
        "" => "not reported".to_owned(),
        n => n.to_owned(),
    };
    block(&[
        ("Pool", one(&b.pool)),
        ("Prefix", one(&b.prefix)),
        ("Node", one(&b.node)),
        ("Node addresses", or_none(&hops)),
        ("Used", one(used)),
        ("Claimed", one(or_dash(&utc(b.claimed_unix_ms)))),
    ])
}

/// `block release`: the prefix, as `network rm` prints names.
pub fn released_block(r: &ReleasedBlockView) -> String {
    format!("{}\n", r.prefix)
}

/// `ipam check`: `ok`, or how many problems and a table of them.
pub fn ipam_check(c: &IpamCheckView) -> String {
    if c.problems.is_empty() {
        return "ipam: ok\n".to_owned();
    }
    let headers = ["KIND", "POOL", "PREFIX", "NODE", "RELEASABLE", "DETAIL"];
    let rows: Vec<Vec<String>> = c
        .problems
        .iter()
        .map(|p| {
            let releasable = if p.releasable { "yes" } else { "no" };
            vec![
                p.kind.clone(),
                p.pool.clone(),
                p.prefix.clone(),
                p.node.clone(),
                releasable.to_owned(),
                p.detail.clone(),
            ]
        })
        .collect();
    format!(
        "ipam: {} problem(s)\n{}",
        c.problems.len(),
        table(&headers, &rows)
    )
}

/// `ipam release`: what was released, as `gc` prints what it removed.
pub fn ipam_release(r: &IpamReleaseView) -> String {
    released(&r.released)
}

/// `cluster status`.
pub fn status(s: &ControllerStatusView) -> String {
    block(&[
        ("Version", one(or_dash(&s.version))),
        ("Revision", one(s.revision)),
        ("Nodes", one(s.nodes)),
        ("Nodes ready", one(s.nodes_ready)),
        ("Pools", one(s.pools)),
        ("Blocks", one(s.blocks)),
    ])
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;

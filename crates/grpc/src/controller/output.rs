//! Controller replies out: core records as proto messages, addresses and
//! prefixes as text, durations as milliseconds.

use std::sync::Arc;
use std::time::Duration;
use trellis_cluster::{
    Block, Change, ClusterNetwork, Config, Event, IpamProblem, Node, NodeState, Pool, PoolMode,
    ProblemKind, Snapshot,
};
use trellis_proto::v1 as pb;

fn text<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Milliseconds, saturating.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A pool with its block counts.
pub fn pool(p: Pool) -> pb::Pool {
    let s = &p.spec;
    let mode = match s.mode {
        PoolMode::Routed => pb::PoolMode::Routed,
        PoolMode::Bridge => pb::PoolMode::Bridge,
    };
    pb::Pool {
        blocks_total: s.block_count(),
        blocks_held: p.held,
        spec: Some(pb::PoolSpec {
            name: s.name.to_string(),
            prefix: s.prefix.to_string(),
            block_size: s.block_len.into(),
            mode: mode.into(),
            outgoing_nat: s.outgoing_nat,
            max_blocks_per_node: s.max_blocks_per_node,
        }),
    }
}

/// A cluster network.
pub fn network(n: ClusterNetwork) -> pb::ClusterNetwork {
    pb::ClusterNetwork {
        spec: Some(pb::ClusterNetworkSpec {
            name: n.spec.name.into(),
            pools: n.spec.pools.into_iter().map(String::from).collect(),
            mtu: n.spec.mtu.unwrap_or(0),
        }),
        revision: n.revision,
    }
}

/// A node's state.
pub fn node_state(s: NodeState) -> pb::NodeState {
    match s {
        NodeState::Ready => pb::NodeState::Ready,
        NodeState::Draining => pb::NodeState::Draining,
        NodeState::Dead => pb::NodeState::Dead,
    }
}

/// A node, with its lease's age.
pub fn node(n: Node) -> pb::Node {
    let r = n.record;
    pb::Node {
        state: node_state(r.state()).into(),
        lease_age_ms: ms(n.lease_age),
        registered_unix_ms: r.registered_unix_ms,
        blocks: r.held.values().fold(0u32, |a, b| a.saturating_add(*b)),
        spec: Some(pb::NodeSpec {
            name: r.spec.name.into(),
            address_v4: text(r.spec.address_v4),
            address_v6: text(r.spec.address_v6),
            labels: r.spec.labels.into_iter().collect(),
            agent_address: text(r.spec.agent_address),
        }),
    }
}

/// A registration's answer: the node, and the lease both sides count by.
pub fn registered(n: Node, config: &Config) -> pb::RegisterNodeResponse {
    pb::RegisterNodeResponse {
        node: Some(node(n)),
        keepalive_interval_ms: ms(config.lease_ttl / 3),
        lease_ttl_ms: ms(config.lease_ttl),
        grace_ms: ms(config.grace),
    }
}

/// A block, with its holder's usage and underlay addresses.
pub fn block(b: Block) -> pb::Block {
    pb::Block {
        pool: b.pool.into(),
        prefix: b.prefix.to_string(),
        node: b.record.node.into(),
        claimed_unix_ms: b.record.claimed_unix_ms,
        used: b.used.unwrap_or(0),
        reported: b.used.is_some(),
        node_address_v4: text(b.address_v4),
        node_address_v6: text(b.address_v6),
    }
}

/// Prefixes as text.
pub fn prefixes(p: Vec<ipnet::IpNet>) -> Vec<String> {
    p.iter().map(ToString::to_string).collect()
}

/// One finding of an IPAM check.
pub fn problem(p: IpamProblem) -> pb::IpamProblem {
    use pb::ipam_problem::Kind;
    let kind = match p.kind {
        ProblemKind::DeadOwner => Kind::DeadOwner,
        ProblemKind::UnknownOwner => Kind::UnknownOwner,
        ProblemKind::UsageWithoutBlock => Kind::UsageWithoutBlock,
        ProblemKind::NotHeldByNode => Kind::NotHeldByNode,
        ProblemKind::HeldWithoutGrant => Kind::HeldWithoutGrant,
        ProblemKind::NodeUnreadable => Kind::NodeUnreadable,
    };
    pb::IpamProblem {
        kind: kind.into(),
        pool: text(p.pool),
        prefix: text(p.prefix),
        node: p.node.into(),
        detail: p.detail,
        releasable: p.releasable,
    }
}

/// Counts and the revision of a snapshot, with this build's version.
pub fn status(s: &Snapshot) -> pb::ControllerStatusResponse {
    let ready = s
        .nodes
        .iter()
        .filter(|n| n.record.state() == NodeState::Ready);
    pb::ControllerStatusResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        revision: s.revision,
        nodes: count(s.nodes.len()),
        nodes_ready: count(ready.count()),
        pools: count(s.pools.len()),
        blocks: count(s.blocks.len()),
    }
}

/// A watch event. A delete carries the deleted object's key fields only
/// (a pool's or network's or node's name, a block's pool and prefix) with
/// `deleted` set.
/// Objects in one part of a snapshot. A watch's snapshot holds every node
/// and block of the cluster; sent whole it is one message that grows with
/// the cluster, and each connection's encode buffer grows to the largest
/// message it sent and stays that size (a thousand watching nodes held a
/// third of a gigabyte that way). In parts, no message grows.
pub const SNAPSHOT_PART: usize = 16;

/// A watch event as the messages that carry it: a change is one, a snapshot
/// is parts of at most `part` objects (at least one part, the last with
/// `more` false), each made only when it is asked for, so a watcher's
/// connection holds the parts it has not sent yet as the cluster's own
/// types, never as all its messages at once.
pub fn events(e: Event, part: usize) -> Box<dyn Iterator<Item = pb::ControllerEvent> + Send> {
    use pb::controller_event::Event as E;
    match e {
        Event::Snapshot(s) => Box::new(SnapshotParts::new(s, part).map(|s| pb::ControllerEvent {
            event: Some(E::Snapshot(s)),
        })),
        Event::Change(revision, c) => Box::new(std::iter::once(pb::ControllerEvent {
            event: Some(E::Change(change(revision, c))),
        })),
    }
}

/// A snapshot's parts, in order: pools, networks, nodes, blocks. The
/// snapshot is shared with the other watches that opened with it; each part
/// copies its objects out as it is made.
struct SnapshotParts {
    s: Arc<Snapshot>,
    part: usize,
    /// Objects already sent, counted across the four lists.
    sent: usize,
    done: bool,
}

impl SnapshotParts {
    fn new(s: Arc<Snapshot>, part: usize) -> Self {
        SnapshotParts {
            s,
            part: part.max(1),
            sent: 0,
            done: false,
        }
    }
}

impl Iterator for SnapshotParts {
    type Item = pb::ControllerSnapshot;

    fn next(&mut self) -> Option<pb::ControllerSnapshot> {
        if self.done {
            return None;
        }
        let s = &*self.s;
        let mut out = pb::ControllerSnapshot {
            revision: s.revision,
            reset: s.reset,
            ..Default::default()
        };
        let (pools, networks, nodes) = (s.pools.len(), s.networks.len(), s.nodes.len());
        let total = pools + networks + nodes + s.blocks.len();
        let end = (self.sent + self.part).min(total);
        for i in self.sent..end {
            if i < pools {
                out.pools.push(pool(s.pools[i].clone()));
            } else if i < pools + networks {
                out.networks.push(network(s.networks[i - pools].clone()));
            } else if i < pools + networks + nodes {
                out.nodes.push(node(s.nodes[i - pools - networks].clone()));
            } else {
                out.blocks
                    .push(block(s.blocks[i - pools - networks - nodes].clone()));
            }
        }
        self.sent = end;
        out.more = end < total;
        self.done = !out.more;
        Some(out)
    }
}

fn change(revision: u64, c: Change) -> pb::ControllerChange {
    use pb::controller_change::Object as O;
    let (object, deleted) = match c {
        Change::Pool(p) => (O::Pool(pool(p)), false),
        Change::Network(n) => (O::Network(network(n)), false),
        Change::Node(n) => (O::Node(node(n)), false),
        Change::Block(b) => (O::Block(block(b)), false),
        Change::PoolDeleted(name) => {
            let spec = pb::PoolSpec {
                name: name.into(),
                ..Default::default()
            };
            let p = pb::Pool {
                spec: Some(spec),
                ..Default::default()
            };
            (O::Pool(p), true)
        }
        Change::NetworkDeleted(name) => {
            let spec = pb::ClusterNetworkSpec {
                name: name.into(),
                ..Default::default()
            };
            let n = pb::ClusterNetwork {
                spec: Some(spec),
                revision,
            };
            (O::Network(n), true)
        }
        Change::NodeDeleted(name) => {
            let spec = pb::NodeSpec {
                name: name.into(),
                ..Default::default()
            };
            let n = pb::Node {
                spec: Some(spec),
                ..Default::default()
            };
            (O::Node(n), true)
        }
        Change::BlockDeleted(pool, prefix) => {
            let b = pb::Block {
                pool: pool.into(),
                prefix: prefix.to_string(),
                ..Default::default()
            };
            (O::Block(b), true)
        }
    };
    pb::ControllerChange {
        revision,
        object: Some(object),
        deleted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_cluster::PoolSpec;

    #[test]
    fn an_ipv6_pools_block_count_saturates() {
        let spec = PoolSpec::new(
            "v6",
            "fd00::/56".parse().unwrap(),
            0,
            PoolMode::Routed,
            false,
            0,
        )
        .unwrap();
        let p = pool(Pool { spec, held: 2 });
        assert_eq!((p.blocks_total, p.blocks_held), (u64::MAX, 2));
        assert_eq!(p.spec.unwrap().block_size, 122);
    }

    #[test]
    fn a_deleted_block_carries_its_key_only() {
        let mut e = events(
            Event::Change(
                9,
                Change::BlockDeleted("pods".parse().unwrap(), "10.244.0.64/26".parse().unwrap()),
            ),
            SNAPSHOT_PART,
        )
        .collect::<Vec<_>>();
        assert_eq!(e.len(), 1);
        let e = e.remove(0);
        let Some(pb::controller_event::Event::Change(c)) = e.event else {
            panic!("a change");
        };
        assert!(c.deleted);
        assert_eq!(c.revision, 9);
        let Some(pb::controller_change::Object::Block(b)) = c.object else {
            panic!("a block");
        };
        assert_eq!(
            (b.pool.as_str(), b.prefix.as_str()),
            ("pods", "10.244.0.64/26")
        );
        assert_eq!((b.node.as_str(), b.reported), ("", false));
    }

    fn node_named(name: &str) -> Node {
        Node {
            record: trellis_cluster::NodeRecord {
                spec: trellis_cluster::NodeSpec {
                    name: name.parse().unwrap(),
                    address_v4: None,
                    address_v6: None,
                    labels: Default::default(),
                    agent_address: None,
                },
                registered_unix_ms: 0,
                draining: false,
                dead: false,
                held: Default::default(),
                usage: Default::default(),
            },
            lease_age: Duration::ZERO,
        }
    }

    fn parts(nodes: usize, part: usize) -> Vec<pb::ControllerSnapshot> {
        let spec = PoolSpec::new(
            "pods",
            "10.244.0.0/16".parse().unwrap(),
            26,
            PoolMode::Routed,
            false,
            0,
        )
        .unwrap();
        let snapshot = Snapshot {
            revision: 7,
            reset: true,
            pools: vec![Pool { spec, held: 0 }],
            networks: vec![],
            nodes: (0..nodes).map(|i| node_named(&format!("n{i}"))).collect(),
            blocks: vec![],
        };
        events(Event::Snapshot(Arc::new(snapshot)), part)
            .map(|e| match e.event {
                Some(pb::controller_event::Event::Snapshot(s)) => s,
                other => panic!("a snapshot part, not {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_snapshot_goes_out_in_parts_of_bounded_size_in_order() {
        // A pool and 150 nodes in parts of 64: 64 + 64 + 23.
        let p = parts(150, 64);
        let sizes: Vec<_> = p
            .iter()
            .map(|s| s.pools.len() + s.networks.len() + s.nodes.len() + s.blocks.len())
            .collect();
        assert_eq!(sizes, [64, 64, 23]);
        let more: Vec<_> = p.iter().map(|s| s.more).collect();
        assert_eq!(more, [true, true, false]);
        assert!(p.iter().all(|s| s.revision == 7 && s.reset));
        assert_eq!(p[0].pools.len(), 1, "pools come first");
        let names: Vec<_> = p
            .iter()
            .flat_map(|s| &s.nodes)
            .map(|n| n.spec.as_ref().unwrap().name.clone())
            .collect();
        let want: Vec<_> = (0..150).map(|i| format!("n{i}")).collect();
        assert_eq!(names, want, "every node once, in order");
    }

    #[test]
    fn a_small_or_empty_snapshot_is_one_part() {
        let p = parts(3, 64);
        assert_eq!((p.len(), p[0].more, p[0].nodes.len()), (1, false, 3));
        // Exactly full: no empty trailing part.
        let p = parts(63, 64);
        assert_eq!((p.len(), p[0].more), (1, false));
    }

    #[test]
    fn the_lease_is_answered_in_milliseconds() {
        let config = Config {
            lease_ttl: Duration::from_secs(15),
            grace: Duration::from_secs(600),
            ..Config::default()
        };
        let n = Node {
            record: trellis_cluster::NodeRecord {
                spec: trellis_cluster::NodeSpec {
                    name: "n1".parse().unwrap(),
                    address_v4: Some("192.0.2.1".parse().unwrap()),
                    address_v6: None,
                    labels: Default::default(),
                    agent_address: Some("https://192.0.2.1:7444".parse().unwrap()),
                },
                registered_unix_ms: 5,
                draining: true,
                dead: false,
                held: [("pods".parse().unwrap(), 3)].into(),
                usage: Default::default(),
            },
            lease_age: Duration::from_millis(1500),
        };
        let r = registered(n, &config);
        assert_eq!(
            (r.keepalive_interval_ms, r.lease_ttl_ms, r.grace_ms),
            (5000, 15000, 600_000)
        );
        let n = r.node.unwrap();
        assert_eq!(n.state, pb::NodeState::Draining as i32);
        assert_eq!((n.lease_age_ms, n.blocks), (1500, 3));
        let spec = n.spec.unwrap();
        assert_eq!(spec.address_v6, "");
        assert_eq!(spec.agent_address, "https://192.0.2.1:7444");
    }

    #[test]
    fn a_finding_about_a_whole_node_has_no_prefix() {
        let p = problem(IpamProblem {
            kind: ProblemKind::NodeUnreadable,
            pool: None,
            prefix: None,
            node: "h2".parse().unwrap(),
            detail: "unreachable".into(),
            releasable: false,
        });
        assert_eq!(p.kind, pb::ipam_problem::Kind::NodeUnreadable as i32);
        assert_eq!(
            (p.prefix.as_str(), p.pool.as_str(), p.node.as_str()),
            ("", "", "h2")
        );
        let p = problem(IpamProblem {
            kind: ProblemKind::HeldWithoutGrant,
            pool: Some("pods".parse().unwrap()),
            prefix: Some("10.244.0.64/26".parse().unwrap()),
            node: "h1".parse().unwrap(),
            detail: String::new(),
            releasable: false,
        });
        assert_eq!(
            (p.kind, p.prefix.as_str()),
            (
                pb::ipam_problem::Kind::HeldWithoutGrant as i32,
                "10.244.0.64/26"
            )
        );
    }
}

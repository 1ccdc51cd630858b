//! Golden tests of the controller's tables, blocks and JSON/YAML output.

use std::collections::BTreeMap;

use super::*;
use crate::cli::Format;
use crate::cluster::view::IpamProblemView;
use crate::render::output;

fn pods() -> PoolView {
    PoolView {
        name: "pods".into(),
        prefix: "10.244.0.0/16".into(),
        mode: "routed".into(),
        block_size: 26,
        outgoing_nat: true,
        max_blocks_per_node: 64,
        blocks_total: 1024,
        blocks_held: 3,
    }
}

fn node1() -> NodeView {
    NodeView {
        name: "node1".into(),
        state: "ready".into(),
        address_v4: "192.0.2.11".into(),
        address_v6: "2001:db8::11".into(),
        labels: BTreeMap::from([("rack".into(), "r1".into()), ("zone".into(), "a".into())]),
        agent_address: "https://192.0.2.11:7444".into(),
        lease_age_ms: 1_500,
        registered_unix_ms: 1_700_000_000_000,
        blocks: 2,
    }
}

fn block64() -> BlockView {
    BlockView {
        pool: "pods".into(),
        prefix: "10.244.0.64/26".into(),
        node: "node1".into(),
        claimed_unix_ms: 1_700_000_000_000,
        used: 5,
        reported: true,
        node_address_v4: "192.0.2.11".into(),
        node_address_v6: "2001:db8::11".into(),
    }
}

#[test]
fn pool_table_and_block() {
    let bridge = PoolView {
        name: "hosts".into(),
        prefix: "fd00:10:244::/56".into(),
        mode: "bridge".into(),
        block_size: 120,
        outgoing_nat: false,
        max_blocks_per_node: 0,
        blocks_total: 65536,
        blocks_held: 0,
    };
    let want = "\
NAME    PREFIX             MODE     BLOCK   NAT   MAX PER NODE   HELD/TOTAL
pods    10.244.0.0/16      routed   /26     on    64             3/1024
hosts   fd00:10:244::/56   bridge   /120    off   -              0/65536
";
    assert_eq!(pools(&[pods(), bridge]), want);
    let want = "\
Name:                 pods
Prefix:               10.244.0.0/16
Mode:                 routed
Block size:           /26
Outgoing NAT:         on
Max blocks per node:  64
Blocks held:          3
Blocks total:         1024
";
    assert_eq!(pool(&pods()), want);
}

#[test]
fn cluster_network_table_and_block() {
    let n = ClusterNetworkView {
        name: "pods".into(),
        pools: vec!["pods".into(), "pods6".into()],
        mtu: 1450,
        revision: 42,
    };
    let plain = ClusterNetworkView {
        name: "edge".into(),
        pools: vec!["edge".into()],
        mtu: 0,
        revision: 7,
    };
    let want = "\
NAME   POOLS        MTU    REVISION
pods   pods,pods6   1450   42
edge   edge         -      7
";
    assert_eq!(networks(&[n.clone(), plain]), want);
    let want = "\
Name:      pods
Pools:
  pods
  pods6
MTU:       1450
Revision:  42
";
    assert_eq!(network(&n), want);
}

#[test]
fn node_table_and_block() {
    let dead = NodeView {
        name: "node2".into(),
        state: "dead".into(),
        address_v4: "192.0.2.12".into(),
        address_v6: String::new(),
        labels: BTreeMap::new(),
        agent_address: String::new(),
        lease_age_ms: 7_380_000,
        registered_unix_ms: 0,
        blocks: 0,
    };
    let want = "\
NAME    STATE   ADDRESSES                 BLOCKS   LEASE AGE   AGENT API
node1   ready   192.0.2.11,2001:db8::11   2        1.5s        https://192.0.2.11:7444
node2   dead    192.0.2.12                0        2h03m       -
";
    assert_eq!(nodes(&[node1(), dead.clone()]), want);
    let want = "\
Name:        node1
State:       ready
Addresses:
  192.0.2.11
  2001:db8::11
Labels:
  rack=r1
  zone=a
Agent API:   https://192.0.2.11:7444
Blocks:      2
Lease age:   1.5s
Registered:  2023-11-14T22:13:20Z
";
    assert_eq!(node(&node1()), want);
    let want = "\
Name:        node2
State:       dead
Addresses:   192.0.2.12
Labels:      -
Agent API:   -
Blocks:      0
Lease age:   2h03m
Registered:  -
";
    assert_eq!(node(&dead), want);
    let removed = RemovedNodeView {
        name: "node2".into(),
        released: vec!["10.244.0.0/26".into(), "10.244.0.64/26".into()],
    };
    let want = "node2: released 2 block(s)\n  10.244.0.0/26\n  10.244.0.64/26\n";
    assert_eq!(removed_node(&removed), want);
}

#[test]
fn block_table_shows_the_next_hop_of_the_family() {
    let v6 = BlockView {
        pool: "pods6".into(),
        prefix: "fd00:10:244::40/122".into(),
        used: 0,
        reported: false,
        ..block64()
    };
    let want = "\
POOL    PREFIX                NODE    NEXT HOP       USED   CLAIMED
pods    10.244.0.64/26        node1   192.0.2.11     5      2023-11-14T22:13:20Z
pods6   fd00:10:244::40/122   node1   2001:db8::11   -      2023-11-14T22:13:20Z
";
    assert_eq!(blocks(&[block64(), v6.clone()]), want);
    let want = "\
Pool:            pods6
Prefix:          fd00:10:244::40/122
Node:            node1
Node addresses:
  192.0.2.11
  2001:db8::11
Used:            not reported
Claimed:         2023-11-14T22:13:20Z
";
    assert_eq!(claimed(&v6), want);
    let r = ReleasedBlockView {
        pool: "pods".into(),
        prefix: "10.244.0.64/26".into(),
        node: "node1".into(),
    };
    assert_eq!(released_block(&r), "10.244.0.64/26\n");
}

#[test]
fn ipam_check_and_release_texts() {
    let mut c = IpamCheckView {
        ok: true,
        problems: vec![],
    };
    assert_eq!(ipam_check(&c), "ipam: ok\n");
    c.ok = false;
    c.problems = vec![
        IpamProblemView {
            kind: "dead_owner".into(),
            pool: "pods".into(),
            prefix: "10.244.0.0/26".into(),
            node: "node2".into(),
            detail: "lease lapsed 2h03m ago".into(),
            releasable: true,
        },
        IpamProblemView {
            kind: "usage_without_block".into(),
            pool: "pods".into(),
            prefix: "10.244.1.0/26".into(),
            node: "node1".into(),
            detail: "node1 reports 3 addresses".into(),
            releasable: false,
        },
    ];
    let want = "\
ipam: 2 problem(s)
KIND                  POOL   PREFIX          NODE    RELEASABLE   DETAIL
dead_owner            pods   10.244.0.0/26   node2   yes          lease lapsed 2h03m ago
usage_without_block   pods   10.244.1.0/26   node1   no           node1 reports 3 addresses
";
    assert_eq!(ipam_check(&c), want);
    let r = IpamReleaseView {
        released: vec!["10.244.0.0/26".into()],
    };
    assert_eq!(ipam_release(&r), "released 1 block(s)\n  10.244.0.0/26\n");
    let none = IpamReleaseView { released: vec![] };
    assert_eq!(ipam_release(&none), "released 0 block(s)\n");
}

#[test]
fn status_block() {
    let s = ControllerStatusView {
        version: "0.1.0".into(),
        revision: 1234,
        nodes: 3,
        nodes_ready: 2,
        pools: 2,
        blocks: 17,
    };
    let want = "\
Version:      0.1.0
Revision:     1234
Nodes:        3
Nodes ready:  2
Pools:        2
Blocks:       17
";
    assert_eq!(status(&s), want);
}

#[test]
fn empty_lists_print_headers_only() {
    assert_eq!(
        pools(&[]),
        "NAME   PREFIX   MODE   BLOCK   NAT   MAX PER NODE   HELD/TOTAL\n"
    );
    assert_eq!(networks(&[]), "NAME   POOLS   MTU   REVISION\n");
    assert_eq!(
        nodes(&[]),
        "NAME   STATE   ADDRESSES   BLOCKS   LEASE AGE   AGENT API\n"
    );
    assert_eq!(
        blocks(&[]),
        "POOL   PREFIX   NODE   NEXT HOP   USED   CLAIMED\n"
    );
}

/// The sorted key names of a JSON object.
fn keys(v: &serde_json::Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(|k| k.as_str()).collect()
}

#[test]
fn json_keeps_snake_case_field_names() {
    let text = output(Format::Json, &[pods()][..], pools).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want = [
        "block_size",
        "blocks_held",
        "blocks_total",
        "max_blocks_per_node",
        "mode",
        "name",
        "outgoing_nat",
        "prefix",
    ];
    assert_eq!(keys(&v[0]), want);
    assert_eq!(v[0]["mode"], "routed");

    let text = output(Format::Json, &node1(), node).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want = [
        "address_v4",
        "address_v6",
        "agent_address",
        "blocks",
        "labels",
        "lease_age_ms",
        "name",
        "registered_unix_ms",
        "state",
    ];
    assert_eq!(keys(&v), want);
    assert_eq!(v["state"], "ready");
    assert_eq!(v["labels"]["rack"], "r1");
    assert_eq!(v["registered_unix_ms"], 1_700_000_000_000u64);

    let text = output(Format::Json, &block64(), claimed).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want = [
        "claimed_unix_ms",
        "node",
        "node_address_v4",
        "node_address_v6",
        "pool",
        "prefix",
        "reported",
        "used",
    ];
    assert_eq!(keys(&v), want);
}

#[test]
fn yaml_output_golden() {
    let check = IpamCheckView {
        ok: false,
        problems: vec![IpamProblemView {
            kind: "unknown_owner".into(),
            pool: "pods".into(),
            prefix: "10.244.0.0/26".into(),
            node: "gone".into(),
            detail: "node gone is not registered".into(),
            releasable: true,
        }],
    };
    let want = "\
ok: false
problems:
- kind: unknown_owner
  pool: pods
  prefix: 10.244.0.0/26
  node: gone
  detail: node gone is not registered
  releasable: true
";
    assert_eq!(output(Format::Yaml, &check, ipam_check).unwrap(), want);
    let n = ClusterNetworkView {
        name: "pods".into(),
        pools: vec!["pods".into()],
        mtu: 0,
        revision: 9,
    };
    let want = "name: pods\npools:\n- pods\nmtu: 0\nrevision: 9\n";
    assert_eq!(output(Format::Yaml, &n, network).unwrap(), want);
    let s = ControllerStatusView {
        version: "0.1.0".into(),
        revision: 5,
        nodes: 1,
        nodes_ready: 1,
        pools: 1,
        blocks: 0,
    };
    let want = "version: 0.1.0\nrevision: 5\nnodes: 1\nnodes_ready: 1\npools: 1\nblocks: 0\n";
    assert_eq!(output(Format::Yaml, &s, status).unwrap(), want);
    let r = RemovedNodeView {
        name: "node2".into(),
        released: vec![],
    };
    assert_eq!(
        output(Format::Yaml, &r, removed_node).unwrap(),
        "name: node2\nreleased: []\n"
    );
}

//! Unit tests of the views: proto messages flattened, enums as words.

use super::*;

#[test]
fn enums_are_lowercase_words() {
    let words = |state| {
        NodeView::from(v1::Node {
            state,
            ..Default::default()
        })
        .state
    };
    let states = [
        (v1::NodeState::Ready, "ready"),
        (v1::NodeState::Draining, "draining"),
        (v1::NodeState::Dead, "dead"),
        (v1::NodeState::Unspecified, "unspecified"),
    ];
    for (state, want) in states {
        assert_eq!(words(state as i32), want);
    }
    assert_eq!(words(99), "unspecified", "a state newer than netctl");
    let mode = |mode: v1::PoolMode| {
        let spec = v1::PoolSpec {
            mode: mode as i32,
            ..Default::default()
        };
        PoolView::from(v1::Pool {
            spec: Some(spec),
            ..Default::default()
        })
        .mode
    };
    assert_eq!(mode(v1::PoolMode::Routed), "routed");
    assert_eq!(mode(v1::PoolMode::Bridge), "bridge");
    use v1::ipam_problem::Kind;
    let kind = |k: Kind| {
        let p = v1::IpamProblem {
            kind: k as i32,
            ..Default::default()
        };
        IpamProblemView::from(p).kind
    };
    assert_eq!(kind(Kind::DeadOwner), "dead_owner");
    assert_eq!(kind(Kind::UnknownOwner), "unknown_owner");
    assert_eq!(kind(Kind::UsageWithoutBlock), "usage_without_block");
    assert_eq!(kind(Kind::NotHeldByNode), "not_held_by_node");
    assert_eq!(kind(Kind::HeldWithoutGrant), "held_without_grant");
    assert_eq!(kind(Kind::NodeUnreadable), "node_unreadable");
}

#[test]
fn views_flatten_the_proto_messages() {
    let mut labels = std::collections::HashMap::new();
    labels.insert("zone".to_string(), "a".to_string());
    labels.insert("rack".to_string(), "r1".to_string());
    let n = v1::Node {
        spec: Some(v1::NodeSpec {
            name: "node1".into(),
            address_v4: "192.0.2.11".into(),
            address_v6: "2001:db8::11".into(),
            labels,
            agent_address: "https://192.0.2.11:7444".into(),
        }),
        state: v1::NodeState::Ready as i32,
        lease_age_ms: 1_500,
        registered_unix_ms: 1_700_000_000_000,
        blocks: 2,
    };
    let view = NodeView::from(n);
    assert_eq!(
        (view.name.as_str(), view.state.as_str()),
        ("node1", "ready")
    );
    assert_eq!(view.address_v6, "2001:db8::11");
    assert_eq!(view.agent_address, "https://192.0.2.11:7444");
    let labels: Vec<_> = view
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(labels, ["rack=r1", "zone=a"], "sorted by key");
    assert_eq!(
        (view.lease_age_ms, view.registered_unix_ms, view.blocks),
        (1_500, 1_700_000_000_000, 2)
    );
    let b = BlockView::from(v1::Block {
        prefix: "fd00:10:244::40/122".into(),
        node_address_v4: "192.0.2.11".into(),
        node_address_v6: "2001:db8::11".into(),
        ..Default::default()
    });
    assert_eq!(
        b.next_hop(),
        "2001:db8::11",
        "the address of the block's family"
    );
    let problems = v1::CheckIpamResponse {
        problems: vec![v1::IpamProblem::default()],
    };
    assert!(!IpamCheckView::from(problems).ok);
    assert!(IpamCheckView::from(v1::CheckIpamResponse::default()).ok);
}

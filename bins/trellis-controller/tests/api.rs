//! The API over the unix socket: pools, nodes, blocks, watch, status and
//! health, and the codes of refusals with the names they carry.

use crate::util::{Daemon, claim, node, routed_pool};
use tonic::Code;
use trellis_proto::v1 as pb;
use trellis_proto::v1::controller_change::Object;
use trellis_proto::v1::controller_event::Event;

#[tokio::test]
async fn pools_nodes_and_blocks_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--lease-ttl=15s", "--grace=10m"]);
    let mut c = d.client().await;

    let pool = c
        .create_pool(routed_pool("pods", "10.244.0.0/24", 26))
        .await;
    let pool = pool.unwrap().into_inner();
    assert_eq!((pool.blocks_total, pool.blocks_held), (4, 0));
    assert_eq!(pool.spec.unwrap().max_blocks_per_node, 64);

    let r = c.register_node(node("n1", "192.0.2.1")).await.unwrap();
    let r = r.into_inner();
    assert_eq!(
        (r.keepalive_interval_ms, r.lease_ttl_ms, r.grace_ms),
        (5_000, 15_000, 600_000)
    );
    assert_eq!(r.node.unwrap().state, pb::NodeState::Ready as i32);
    let mut n2 = node("n2", "192.0.2.2");
    n2.spec.as_mut().unwrap().address_v6 = "2001:db8::2".into();
    c.register_node(n2).await.unwrap();

    let b1 = c
        .claim_block(claim("n1", "pods"))
        .await
        .unwrap()
        .into_inner();
    let b2 = c
        .claim_block(claim("n2", "pods"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (b1.prefix.as_str(), b1.node.as_str()),
        ("10.244.0.0/26", "n1")
    );
    assert_eq!(b1.node_address_v4, "192.0.2.1");
    assert_eq!(
        (b2.prefix.as_str(), b2.node_address_v6.as_str()),
        ("10.244.0.64/26", "2001:db8::2")
    );

    let all = c.list_blocks(pb::ListBlocksRequest::default()).await;
    assert_eq!(
        all.unwrap().into_inner().blocks,
        vec![b1.clone(), b2.clone()]
    );
    let only_n2 = pb::ListBlocksRequest {
        node: "n2".into(),
        ..Default::default()
    };
    let only_n2 = c.list_blocks(only_n2).await.unwrap().into_inner().blocks;
    assert_eq!(only_n2, vec![b2]);

    let usage = pb::KeepAliveRequest {
        node: "n1".into(),
        usage: vec![pb::BlockUsage {
            pool: "pods".into(),
            prefix: "10.244.0.0/26".into(),
            used: 3,
        }],
    };
    let k = c.keep_alive(usage).await.unwrap().into_inner();
    assert_eq!(
        (k.lease_ttl_ms, k.state),
        (15_000, pb::NodeState::Ready as i32)
    );
    let mine = pb::ListBlocksRequest {
        node: "n1".into(),
        ..Default::default()
    };
    let b1 = &c.list_blocks(mine).await.unwrap().into_inner().blocks[0];
    assert_eq!((b1.used, b1.reported), (3, true));

    let get = pb::GetPoolRequest {
        name: "pods".into(),
    };
    let pool = c.get_pool(get).await.unwrap().into_inner();
    assert_eq!((pool.blocks_total, pool.blocks_held), (4, 2));
    let nodes = c
        .list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.iter().map(|n| n.blocks).collect::<Vec<_>>(), [1, 1]);

    let s = c.controller_status(pb::ControllerStatusRequest {}).await;
    let s = s.unwrap().into_inner();
    assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
    assert_eq!((s.nodes, s.nodes_ready, s.pools, s.blocks), (2, 2, 1, 2));
    assert!(s.revision > 0);
}

#[tokio::test]
async fn watch_sees_a_claim_and_a_release_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let mut c = d.client().await;
    c.create_pool(routed_pool("pods", "10.244.0.0/16", 0))
        .await
        .unwrap();
    c.register_node(node("n1", "192.0.2.1")).await.unwrap();

    let req = pb::ControllerWatchRequest { from_revision: 0 };
    let mut w = c.watch(req).await.unwrap().into_inner();
    let Some(Event::Snapshot(snap)) = w.message().await.unwrap().unwrap().event else {
        panic!("a snapshot first");
    };
    assert_eq!(
        (snap.pools.len(), snap.nodes.len(), snap.blocks.len()),
        (1, 1, 0)
    );
    assert!(!snap.reset);

    let b = c
        .claim_block(claim("n1", "pods"))
        .await
        .unwrap()
        .into_inner();
    let release = pb::ReleaseBlockRequest {
        node: "n1".into(),
        pool: "pods".into(),
        prefix: b.prefix.clone(),
    };
    c.release_block(release).await.unwrap();

    // The claim writes the block, the pool and the node in one commit; the
    // release deletes the block. Read until both block changes are seen.
    let mut blocks = Vec::new();
    while blocks.len() < 2 {
        let Some(Event::Change(ch)) = w.message().await.unwrap().unwrap().event else {
            panic!("changes after the snapshot");
        };
        assert!(ch.revision > snap.revision);
        if let Some(Object::Block(block)) = ch.object {
            blocks.push((ch.revision, ch.deleted, block));
        }
    }
    let (claimed_at, deleted, claimed) = &blocks[0];
    assert!(!deleted);
    assert_eq!(claimed, &b);
    let (_, deleted, gone) = &blocks[1];
    assert!(deleted);
    let key_only = pb::Block {
        pool: "pods".into(),
        prefix: b.prefix.clone(),
        ..Default::default()
    };
    assert_eq!(gone, &key_only);

    // Resumed from the claim's revision: the claim again, no snapshot.
    let req = pb::ControllerWatchRequest {
        from_revision: *claimed_at,
    };
    let mut resumed = c.watch(req).await.unwrap().into_inner();
    let Some(Event::Change(ch)) = resumed.message().await.unwrap().unwrap().event else {
        panic!("a change, not a snapshot");
    };
    assert_eq!(ch.revision, *claimed_at);
}

#[tokio::test]
async fn refusals_carry_their_code_and_name_what_is_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let mut c = d.client().await;

    let mut unspecified = routed_pool("p", "10.1.0.0/24", 0);
    unspecified.spec.as_mut().unwrap().mode = 0;
    let e = c.create_pool(unspecified).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("spec.mode "), "{}", e.message());

    let e = c.register_node(node("n1", "fd00::1")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with("spec.address_v4 \"fd00::1\""),
        "{}",
        e.message()
    );

    let e = c.claim_block(claim("n1", "no/such")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("pool "), "{}", e.message());

    // Two blocks of /25 in a /24.
    c.create_pool(routed_pool("small", "10.1.0.0/24", 25))
        .await
        .unwrap();
    c.register_node(node("n1", "192.0.2.1")).await.unwrap();
    c.register_node(node("n2", "192.0.2.2")).await.unwrap();
    c.claim_block(claim("n1", "small")).await.unwrap();
    c.claim_block(claim("n2", "small")).await.unwrap();
    let e = c.claim_block(claim("n1", "small")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("pool \"small\""), "{}", e.message());

    let e = c
        .delete_pool(pb::DeletePoolRequest {
            name: "small".into(),
        })
        .await;
    let e = e.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("pool \"small\""), "{}", e.message());

    let e = c
        .create_pool(routed_pool("over", "10.1.0.0/16", 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let e = c
        .get_pool(pb::GetPoolRequest {
            name: "nope".into(),
        })
        .await;
    assert_eq!(e.unwrap_err().code(), Code::NotFound);
    let alive = pb::KeepAliveRequest {
        node: "ghost".into(),
        usage: vec![],
    };
    let e = c.keep_alive(alive).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let release = pb::ReleaseBlockRequest {
        node: "n2".into(),
        pool: "small".into(),
        prefix: "10.1.0.0/25".into(),
    };
    let e = c.release_block(release).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "held by n1: {e:?}");
}

#[tokio::test]
async fn health_is_served_beside_the_controller() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let channel = trellis_proto::channel_unix(&d.socket).await.unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", trellis_proto::CONTROLLER_SERVICE_NAME] {
        let req = HealthCheckRequest {
            service: service.into(),
        };
        let r = health.check(req).await.unwrap().into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
}

/// The controller bounds its calls as trellisd does: with room for two
/// calls and one watch, a storm of 200 claims by 200 nodes gets quick
/// UNAVAILABLE answers beside its successes (each success a block of its
/// own, and no other block held afterwards) and a second watch is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_calls_gets_quick_refusals_and_every_answer_is_true() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--max-in-flight=2", "--max-watches=1"]);
    let mut c = d.client().await;
    c.create_pool(routed_pool("pods", "10.244.0.0/16", 26))
        .await
        .unwrap();
    const NODES: usize = 200;
    for i in 0..NODES {
        let addr = format!("192.0.2.{}", i % 250 + 1);
        // Registration itself may be refused in the storm below, not here:
        // one at a time, each waits for the last.
        c.register_node(node(&format!("n{i}"), &addr))
            .await
            .unwrap();
    }
    let _watch = c
        .watch(pb::ControllerWatchRequest { from_revision: 0 })
        .await
        .expect("a watch within the limit")
        .into_inner();
    let second = c
        .watch(pb::ControllerWatchRequest { from_revision: 0 })
        .await
        .expect_err("a second watch is refused");
    assert_eq!(second.code(), Code::Unavailable, "{second:?}");
    assert_eq!(
        second.message(),
        "trellis-controller is busy: 1 watches open (limit 1); retry"
    );

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..NODES {
        let mut c = c.clone();
        calls.spawn(async move { c.claim_block(claim(&format!("n{i}"), "pods")).await });
    }
    let (mut claimed, mut refused) = (std::collections::BTreeSet::new(), 0);
    while let Some(answer) = calls.join_next().await {
        match answer.unwrap() {
            Ok(b) => assert!(claimed.insert(b.into_inner().prefix), "a block given twice"),
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                assert_eq!(
                    e.message(),
                    "trellis-controller is busy: 2 requests in flight (limit 2); retry"
                );
                refused += 1;
            }
        }
    }
    assert!(
        claimed.len() >= 2 && refused >= 1,
        "{} claimed, {refused} refused",
        claimed.len()
    );
    assert_eq!(claimed.len() + refused, NODES);
    let held = c
        .list_blocks(pb::ListBlocksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .blocks;
    assert_eq!(
        held.len(),
        claimed.len(),
        "every answered claim, and no other"
    );
    trellis_testlab::report::record(
        "trellis-controller",
        &format!(
            "{NODES} ClaimBlock calls at once against --max-in-flight=2, and a second Watch against --max-watches=1"
        ),
        &format!(
            "{} claimed (each a block of its own, all in ListBlocks), {refused} refused UNAVAILABLE \"trellis-controller is busy: 2 requests in flight (limit 2); retry\"; the watch refused the same way",
            claimed.len()
        ),
    );
}

//! Unit tests of the controller's logic over a memory store, with paused
//! time for leases.

use crate::*;
use futures::StreamExt;
use ipnet::IpNet;
use std::sync::Arc;
use std::time::Duration;
use trellis_store::MemoryStore;
use trellis_types::{NetworkName, NodeName, PoolName};

fn controller() -> Arc<Controller> {
    controller_on(Arc::new(MemoryStore::new()))
}

fn controller_on(store: Arc<MemoryStore>) -> Arc<Controller> {
    Arc::new(Controller::new(store, Config::default()))
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn pool_name(s: &str) -> PoolName {
    s.parse().unwrap()
}

fn node_name(s: &str) -> NodeName {
    s.parse().unwrap()
}

fn routed(name: &str, prefix: &str, block: u8, cap: u32) -> PoolSpec {
    PoolSpec::new(name, net(prefix), block, PoolMode::Routed, true, cap).unwrap()
}

async fn register(c: &Controller, name: &str, v4: &str) -> Node {
    c.register_node(NodeSpec {
        name: node_name(name),
        address_v4: Some(v4.parse().unwrap()),
        address_v6: None,
        labels: Default::default(),
        agent_address: None,
    })
    .await
    .unwrap()
}

#[test]
fn pool_specs_take_defaults_and_name_the_field_they_refuse() {
    let p = PoolSpec::new("p", net("10.244.0.0/16"), 0, PoolMode::Routed, false, 0).unwrap();
    assert_eq!(
        (p.block_len, p.max_blocks_per_node),
        (26, DEFAULT_MAX_BLOCKS_PER_NODE)
    );
    let b = PoolSpec::new("b", net("10.10.0.0/16"), 0, PoolMode::Bridge, false, 0).unwrap();
    assert_eq!((b.block_len, b.max_blocks_per_node), (24, 1));
    let v6 = PoolSpec::new("p6", net("fd00::/48"), 0, PoolMode::Routed, false, 0).unwrap();
    assert_eq!(v6.block_len, 122);
    for (prefix, block, mode, cap, field) in [
        ("10.244.0.1/16", 26, PoolMode::Routed, 0, "spec.prefix"),
        ("10.244.0.0/16", 8, PoolMode::Routed, 0, "spec.block_size"),
        ("10.244.0.0/16", 33, PoolMode::Routed, 0, "spec.block_size"),
        ("10.244.0.0/16", 18, PoolMode::Routed, 0, "spec.block_size"),
        ("10.244.0.0/16", 31, PoolMode::Bridge, 0, "spec.block_size"),
        (
            "10.244.0.0/16",
            24,
            PoolMode::Bridge,
            2,
            "spec.max_blocks_per_node",
        ),
    ] {
        let e = PoolSpec::new("p", net(prefix), block, mode, false, cap).unwrap_err();
        assert_eq!(e.field, field, "{prefix} /{block}: {e}");
    }
    let e = PoolSpec::new("a/b", net("10.0.0.0/8"), 0, PoolMode::Routed, false, 0).unwrap_err();
    assert_eq!(e.field, "spec.name");
}

#[tokio::test]
async fn overlapping_pools_are_refused_and_the_same_pool_twice_is_the_pool() {
    let c = controller();
    let p = c
        .create_pool(routed("a", "10.244.0.0/16", 26, 0))
        .await
        .unwrap();
    assert_eq!(c.create_pool(p.spec.clone()).await.unwrap(), p);
    let e = c
        .create_pool(routed("b", "10.244.8.0/24", 26, 0))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::AlreadyExists);
    assert!(e.to_string().contains("overlaps pool \"a\""), "{e}");
    let e = c
        .create_pool(routed("a", "10.99.0.0/16", 26, 0))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::AlreadyExists);
    c.create_pool(routed("c", "10.245.0.0/16", 26, 0))
        .await
        .unwrap();
    assert_eq!(c.list_pools().await.unwrap().len(), 2);
    assert!(check_invariants(&**c.store()).await.unwrap().is_empty());
}

#[tokio::test]
async fn claims_take_free_blocks_in_order_up_to_the_cap_and_the_pool() {
    let c = controller();
    let pool = pool_name("small");
    c.create_pool(routed("small", "10.1.0.0/24", 26, 3))
        .await
        .unwrap();
    let e = c.claim_block(&node_name("ghost"), &pool).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::NotFound, "{e}");
    register(&c, "a", "192.0.2.1").await;
    register(&c, "b", "192.0.2.2").await;
    let a = node_name("a");
    let b = node_name("b");
    let first = c.claim_block(&a, &pool).await.unwrap();
    assert_eq!(first.prefix, net("10.1.0.0/26"));
    assert_eq!(first.address_v4, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(
        c.claim_block(&b, &pool).await.unwrap().prefix,
        net("10.1.0.64/26")
    );
    c.claim_block(&a, &pool).await.unwrap();
    c.claim_block(&a, &pool).await.unwrap();
    let e = c.claim_block(&a, &pool).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::ResourceExhausted);
    assert!(e.to_string().contains("its cap"), "{e}");
    // The pool has 4 blocks, all held now.
    let e = c.claim_block(&b, &pool).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::ResourceExhausted);
    assert!(
        e.to_string().contains("pool \"small\" has no free block"),
        "{e}"
    );
    assert_eq!(c.pool(&pool).await.unwrap().held, 4);
    assert_eq!(c.list_blocks(Some(&pool), Some(&a)).await.unwrap().len(), 3);
    let e = c.release_block(&b, &pool, first.prefix).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::FailedPrecondition, "{e}");
    c.release_block(&a, &pool, first.prefix).await.unwrap();
    c.release_block(&a, &pool, first.prefix).await.unwrap();
    assert_eq!(c.claim_block(&b, &pool).await.unwrap().prefix, first.prefix);
    assert!(check_invariants(&**c.store()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_bridge_pool_gives_each_node_one_subnet() {
    let c = controller();
    let pool = pool_name("br");
    let spec = PoolSpec::new("br", net("10.10.0.0/16"), 0, PoolMode::Bridge, true, 0).unwrap();
    c.create_pool(spec).await.unwrap();
    register(&c, "a", "192.0.2.1").await;
    register(&c, "b", "192.0.2.2").await;
    let a1 = c.claim_block(&node_name("a"), &pool).await.unwrap();
    let a2 = c.claim_block(&node_name("a"), &pool).await.unwrap();
    let b1 = c.claim_block(&node_name("b"), &pool).await.unwrap();
    assert_eq!(a1.prefix, a2.prefix);
    assert_eq!(
        (a1.prefix, b1.prefix),
        (net("10.10.0.0/24"), net("10.10.1.0/24"))
    );
}

#[tokio::test]
async fn a_pool_with_held_blocks_or_a_network_is_not_deleted() {
    let c = controller();
    let pool = pool_name("p");
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    register(&c, "a", "192.0.2.1").await;
    let b = c.claim_block(&node_name("a"), &pool).await.unwrap();
    let e = c.delete_pool(&pool).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::FailedPrecondition);
    assert!(e.to_string().contains("1 blocks held"), "{e}");
    c.release_block(&node_name("a"), &pool, b.prefix)
        .await
        .unwrap();
    let spec = ClusterNetworkSpec {
        name: "pods".parse().unwrap(),
        pools: vec![pool.clone()],
        mtu: None,
    };
    c.create_cluster_network(spec.clone()).await.unwrap();
    let e = c.delete_pool(&pool).await.unwrap_err();
    assert!(e.to_string().contains("cluster network \"pods\""), "{e}");
    c.delete_cluster_network(&spec.name).await.unwrap();
    c.delete_pool(&pool).await.unwrap();
    c.delete_pool(&pool).await.unwrap();
    assert!(c.list_pools().await.unwrap().is_empty());
}

#[tokio::test]
async fn cluster_networks_take_routed_pools_one_per_family() {
    let c = controller();
    c.create_pool(routed("v4", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    c.create_pool(routed("v4b", "10.2.0.0/16", 26, 0))
        .await
        .unwrap();
    c.create_pool(routed("v6", "fd00:1::/64", 0, 0))
        .await
        .unwrap();
    let br = PoolSpec::new("br", net("10.3.0.0/16"), 0, PoolMode::Bridge, true, 0).unwrap();
    c.create_pool(br).await.unwrap();
    let spec = |pools: &[&str]| ClusterNetworkSpec {
        name: NetworkName::parse("n", "pods").unwrap(),
        pools: pools.iter().map(|p| pool_name(p)).collect(),
        mtu: Some(1400),
    };
    for bad in [&["v4", "v4b"][..], &["br"], &[]] {
        let e = c.create_cluster_network(spec(bad)).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::InvalidArgument, "{bad:?}: {e}");
    }
    let e = c.create_cluster_network(spec(&["nope"])).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::NotFound);
    let n = c.create_cluster_network(spec(&["v4", "v6"])).await.unwrap();
    assert_eq!(
        c.create_cluster_network(spec(&["v4", "v6"])).await.unwrap(),
        n
    );
    let e = c.create_cluster_network(spec(&["v4"])).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::AlreadyExists);
    assert_eq!(c.list_cluster_networks().await.unwrap(), vec![n]);
}

#[tokio::test(start_paused = true)]
async fn a_silent_node_dies_and_loses_its_blocks_only_after_the_grace() {
    let c = controller();
    let pool = pool_name("p");
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    register(&c, "a", "192.0.2.1").await;
    register(&c, "b", "192.0.2.2").await;
    let (a, b) = (node_name("a"), node_name("b"));
    let held = c.claim_block(&a, &pool).await.unwrap();
    c.claim_block(&b, &pool).await.unwrap();
    let ttl = c.config().lease_ttl;
    let grace = c.config().grace;

    tokio::time::advance(ttl / 2).await;
    c.keep_alive(&b, &[]).await.unwrap();
    tokio::time::advance(ttl / 2 + Duration::from_secs(1)).await;
    let r = c.sweep().await.unwrap();
    assert_eq!(r.died, vec![a.clone()]);
    assert_eq!(c.node(&a).await.unwrap().record.state(), NodeState::Dead);
    let e = c.claim_block(&a, &pool).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::FailedPrecondition, "{e}");
    let problems = c.check_ipam().await.unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(
        (problems[0].kind, problems[0].releasable),
        (ProblemKind::DeadOwner, false)
    );

    // Dead, but within the grace: it keeps its block and comes back.
    tokio::time::advance(grace / 2).await;
    c.keep_alive(&b, &[]).await.unwrap();
    assert_eq!(c.sweep().await.unwrap(), SweepReport::default());
    assert_eq!(c.keep_alive(&a, &[]).await.unwrap(), NodeState::Ready);
    assert_eq!(
        c.list_blocks(None, Some(&a)).await.unwrap()[0].prefix,
        held.prefix
    );

    // Silent again, past lease and grace: its block goes back.
    tokio::time::advance(ttl + grace + Duration::from_secs(1)).await;
    c.keep_alive(&b, &[]).await.unwrap();
    let r = c.sweep().await.unwrap();
    assert_eq!(r.died, vec![a.clone()]);
    let r = c.sweep().await.unwrap();
    assert_eq!(r.released, vec![held.prefix]);
    assert!(c.list_blocks(None, Some(&a)).await.unwrap().is_empty());
    assert_eq!(c.list_blocks(None, Some(&b)).await.unwrap().len(), 1);
    assert!(check_invariants(&**c.store()).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_task_runs_on_its_own() {
    let c = controller();
    register(&c, "a", "192.0.2.1").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(Arc::clone(&c).run_sweeper(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(c.config().lease_ttl * 2).await;
    assert_eq!(
        c.node(&node_name("a")).await.unwrap().record.state(),
        NodeState::Dead
    );
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn keep_alive_records_usage_and_check_finds_usage_without_a_block() {
    let c = controller();
    let pool = pool_name("p");
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    register(&c, "a", "192.0.2.1").await;
    register(&c, "b", "192.0.2.2").await;
    let a = node_name("a");
    let e = c.keep_alive(&node_name("ghost"), &[]).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::FailedPrecondition);
    let blk = c.claim_block(&a, &pool).await.unwrap();
    let usage = [BlockUsage {
        prefix: blk.prefix,
        used: 5,
    }];
    c.keep_alive(&a, &usage).await.unwrap();
    assert_eq!(c.list_blocks(None, None).await.unwrap()[0].used, Some(5));
    // b claims to use a's block.
    c.keep_alive(&node_name("b"), &usage).await.unwrap();
    let p = c.check_ipam().await.unwrap();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        (p[0].kind, p[0].node.as_str()),
        (ProblemKind::UsageWithoutBlock, "b")
    );
    assert!(p[0].detail.contains("node \"a\" does"), "{}", p[0].detail);
    let e = c.release_ipam(&[blk.prefix]).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::InvalidArgument);
}

#[tokio::test]
async fn drained_nodes_claim_nothing_and_removal_asks_for_force_while_alive() {
    let c = controller();
    let pool = pool_name("p");
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    register(&c, "a", "192.0.2.1").await;
    let a = node_name("a");
    let blk = c.claim_block(&a, &pool).await.unwrap();
    assert_eq!(
        c.drain_node(&a).await.unwrap().record.state(),
        NodeState::Draining
    );
    let e = c.claim_block(&a, &pool).await.unwrap_err();
    assert!(e.to_string().contains("draining"), "{e}");
    let e = c.remove_node(&a, false).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::FailedPrecondition);
    assert_eq!(c.remove_node(&a, true).await.unwrap(), vec![blk.prefix]);
    assert!(c.list_nodes().await.unwrap().is_empty());
    assert_eq!(c.pool(&pool).await.unwrap().held, 0);
    assert!(c.remove_node(&a, false).await.unwrap().is_empty());
    assert!(check_invariants(&**c.store()).await.unwrap().is_empty());
}

#[tokio::test]
async fn watch_gives_a_snapshot_then_changes_and_resumes_from_a_revision() {
    let c = controller();
    let pool = pool_name("p");
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    register(&c, "a", "192.0.2.1").await;
    let mut w = c.watch(0).await.unwrap();
    let Some(Ok(Event::Snapshot(s))) = w.next().await else {
        panic!("no snapshot first")
    };
    assert_eq!(
        (s.pools.len(), s.nodes.len(), s.blocks.len(), s.reset),
        (1, 1, 0, false)
    );
    let blk = c.claim_block(&node_name("a"), &pool).await.unwrap();
    // The claim's three writes: block, pool, node.
    let mut seen = Vec::new();
    let mut last = 0;
    for _ in 0..3 {
        let Some(Ok(Event::Change(rev, ch))) = w.next().await else {
            panic!("no change")
        };
        assert!(rev > s.revision && rev > last);
        last = rev;
        seen.push(ch);
    }
    assert!(
        seen.iter()
            .any(|ch| matches!(ch, Change::Block(b) if b.prefix == blk.prefix
        && b.address_v4 == Some("192.0.2.1".parse().unwrap()))),
        "{seen:?}"
    );
    c.release_block(&node_name("a"), &pool, blk.prefix)
        .await
        .unwrap();
    // Resumed after the claim: the release comes first.
    let mut resumed = c.watch(last + 1).await.unwrap();
    let Some(Ok(Event::Change(_, first))) = resumed.next().await else {
        panic!("no change on resume")
    };
    assert_eq!(first, Change::BlockDeleted(pool, blk.prefix));
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_gets_a_fresh_snapshot() {
    let c = controller_on(Arc::new(MemoryStore::with_history(4)));
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    for i in 0..10 {
        register(&c, &format!("n{i}"), "192.0.2.1").await;
    }
    let mut w = c.watch(1).await.unwrap();
    let Some(Ok(Event::Snapshot(s))) = w.next().await else {
        panic!("no snapshot")
    };
    assert!(s.reset);
    assert_eq!(s.nodes.len(), 10);
}

/// Watches that open together share one snapshot (one read of the store),
/// and a watch given a snapshot older than the last write still gets that
/// write as a change after it: nothing is lost by sharing.
#[tokio::test(start_paused = true)]
async fn watches_opened_together_share_a_snapshot_and_miss_no_change() {
    let c = controller();
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    register(&c, "a", "192.0.2.1").await;
    let first = |e: Option<Result<Event, Error>>| match e {
        Some(Ok(Event::Snapshot(s))) => s,
        other => panic!("no snapshot first: {other:?}"),
    };
    let mut w1 = c.watch(0).await.unwrap();
    let s1 = first(w1.next().await);
    // A write after the shared snapshot was read.
    register(&c, "b", "192.0.2.2").await;
    let mut w2 = c.watch(0).await.unwrap();
    let s2 = first(w2.next().await);
    assert!(
        Arc::ptr_eq(&s1, &s2),
        "the second watch read the store again"
    );
    assert_eq!(s2.nodes.len(), 1);
    let Some(Ok(Event::Change(rev, Change::Node(n)))) = w2.next().await else {
        panic!("the write after the shared snapshot was not replayed")
    };
    assert!(rev > s2.revision);
    assert_eq!(n.record.spec.name, node_name("b"));
    // Once it has aged, a watch reads a new one, with both nodes.
    tokio::time::advance(SHARED_SNAPSHOT_AGE).await;
    let mut w3 = c.watch(0).await.unwrap();
    let s3 = first(w3.next().await);
    assert!(!Arc::ptr_eq(&s1, &s3));
    assert_eq!(s3.nodes.len(), 2);
}

/// A change is typed once for all watches: the second watch gets the
/// first's typing (here: a block whose owner's address was read when the
/// first watch typed it, so a node changed since does not show through).
#[tokio::test]
async fn a_change_is_typed_once_for_every_watch() {
    let c = controller();
    let pool = pool_name("p");
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    register(&c, "a", "192.0.2.1").await;
    let from = c.snapshot().await.unwrap().revision + 1;
    let blk = c.claim_block(&node_name("a"), &pool).await.unwrap();
    let block_of = |e: Option<Result<Event, Error>>| match e {
        Some(Ok(Event::Change(rev, Change::Block(b)))) => (rev, b),
        other => panic!("a block's change first: {other:?}"),
    };
    let (rev, b1) = block_of(c.watch(from).await.unwrap().next().await);
    assert_eq!(b1.prefix, blk.prefix);
    // The owner's address changes: a watch that typed the block anew would
    // see 192.0.2.9.
    register(&c, "a", "192.0.2.9").await;
    let (rev2, b2) = block_of(c.watch(from).await.unwrap().next().await);
    assert_eq!((rev2, &b2), (rev, &b1));
    assert_eq!(b2.address_v4, Some("192.0.2.1".parse().unwrap()));
}

/// A shared snapshot older than the store's history is not used: the watch
/// gets a fresh one rather than a gap.
#[tokio::test(start_paused = true)]
async fn a_shared_snapshot_past_the_history_is_read_again() {
    let c = controller_on(Arc::new(MemoryStore::with_history(4)));
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    let mut w1 = c.watch(0).await.unwrap();
    let Some(Ok(Event::Snapshot(s1))) = w1.next().await else {
        panic!("no snapshot")
    };
    for i in 0..10 {
        register(&c, &format!("n{i}"), "192.0.2.1").await;
    }
    let mut w2 = c.watch(0).await.unwrap();
    let Some(Ok(Event::Snapshot(s2))) = w2.next().await else {
        panic!("no snapshot")
    };
    assert!(!Arc::ptr_eq(&s1, &s2));
    assert_eq!((s2.nodes.len(), s2.reset), (10, false));
}

/// Many claimers at once on one pool, from several nodes: every claim that
/// succeeds gets a block no other claim got, and the store's invariants
/// hold after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(trellis_store::RedbStore::open(dir.path().join("c.redb")).unwrap());
    let c = Arc::new(Controller::new(store, Config::default()));
    let pool = pool_name("p");
    // 64 blocks for 8 nodes × 10 claims: some claims must find it full.
    c.create_pool(routed("p", "10.1.0.0/20", 26, 0))
        .await
        .unwrap();
    for n in 0..8 {
        register(&c, &format!("n{n}"), "192.0.2.1").await;
    }
    let mut tasks = Vec::new();
    for n in 0..8 {
        for _ in 0..10 {
            let (c, pool) = (Arc::clone(&c), pool.clone());
            let node = node_name(&format!("n{n}"));
            tasks.push(tokio::spawn(
                async move { c.claim_block(&node, &pool).await },
            ));
        }
    }
    let mut got = Vec::new();
    let mut full = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(b) => got.push(b.prefix),
            Err(e) if e.class() == ErrorClass::ResourceExhausted => full += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((got.len(), full), (64, 16));
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 64, "a block was given twice");
    assert!(check_invariants(&**c.store()).await.unwrap().is_empty());
    assert_eq!(c.list_blocks(None, None).await.unwrap().len(), 64);
}

/// On a store where every call is a round trip (1 ms, etcd's order), 64
/// claimers of one pool at once each get a block at their first attempt:
/// claims of a pool take turns in the controller instead of racing each
/// other's compare-and-swap (which, with one attempt allowed, all but one
/// of a round would lose).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_of_one_pool_take_turns_and_never_conflict() {
    let store = Arc::new(trellis_store::InstrumentedStore::with_latency(
        Duration::from_millis(1),
    ));
    let c = Arc::new(Controller::new(
        store.clone(),
        Config {
            max_attempts: 1,
            ..Config::default()
        },
    ));
    let pool = pool_name("p");
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    for n in 0..64 {
        register(&c, &format!("n{n}"), "192.0.2.1").await;
    }
    let before = store.commits();
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let (c, pool) = (Arc::clone(&c), pool.clone());
            let node = node_name(&format!("n{n}"));
            tokio::spawn(async move { c.claim_block(&node, &pool).await })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().unwrap().prefix);
    }
    assert_eq!(store.commits() - before, 64, "a claim committed twice");
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 64, "a block was given twice");
    assert!(check_invariants(&**c.store()).await.unwrap().is_empty());
}

/// A claim whose commit was applied but whose answer was lost (etcd:
/// `Indeterminate`) answers the block it wrote: no second block.
#[tokio::test]
async fn a_claim_whose_answer_was_lost_answers_the_block_it_wrote() {
    let store = Arc::new(trellis_store::InstrumentedStore::default());
    let c = Controller::new(store.clone(), Config::default());
    let pool = pool_name("p");
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    register(&c, "n", "192.0.2.1").await;
    store.lose_next_outcome();
    let b = c.claim_block(&node_name("n"), &pool).await.unwrap();
    let held = c.list_blocks(None, Some(&node_name("n"))).await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].prefix, b.prefix);
    assert!(check_invariants(&**c.store()).await.unwrap().is_empty());
}

mod fan_out;

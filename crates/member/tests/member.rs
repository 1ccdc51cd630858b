//! The member's logic against the controller's core in this process and an
//! agent on trellis-fake's kernel, with paused time: blocks claimed on
//! demand and ahead of need, host-gw routes following the block map, the
//! cluster's networks defined, fencing when the controller is out of reach,
//! and peers off-link reported instead of routed.

use async_trait::async_trait;
use ipnet::IpNet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use trellis_agent::{Agent, AttachRequest, Backends, ErrorClass};
use trellis_cluster::{
    Block, BlockUsage, ClusterNetworkSpec, Config, Controller, NodeSpec, NodeState, PoolMode,
    PoolSpec,
};
use trellis_fake::FakeKernel;
use trellis_link::{LinkRef, Links, Ns};
use trellis_member::api::Events;
use trellis_member::{ApiError, ControllerApi, Lease, LocalController, Member, MemberConfig};
use trellis_route::{PeerRoute, Route, Routes};
use trellis_store::MemoryStore;
use trellis_types::{ContainerId, IfName, NodeName, PoolName};

/// The controller in this process, which can be made unreachable.
struct Flaky {
    inner: LocalController,
    down: AtomicBool,
    /// The block map's changes are held back (a watch that lags).
    lagging: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), ApiError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ApiError::Unreachable("connection refused (test)".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl ControllerApi for Flaky {
    async fn register(&self, spec: &NodeSpec) -> Result<Lease, ApiError> {
        self.check()?;
        self.inner.register(spec).await
    }
    async fn keep_alive(&self, n: &NodeName, u: &[BlockUsage]) -> Result<NodeState, ApiError> {
        self.check()?;
        self.inner.keep_alive(n, u).await
    }
    async fn claim_block(&self, n: &NodeName, p: &PoolName) -> Result<Block, ApiError> {
        self.check()?;
        self.inner.claim_block(n, p).await
    }
    async fn release_block(&self, n: &NodeName, p: &PoolName, b: IpNet) -> Result<(), ApiError> {
        self.check()?;
        self.inner.release_block(n, p, b).await
    }
    async fn watch(&self, from: u64) -> Result<Events, ApiError> {
        use futures::StreamExt;
        self.check()?;
        let lagging = self.lagging.clone();
        let events = self.inner.watch(from).await?;
        Ok(events
            .then(move |e| {
                let lagging = lagging.clone();
                async move {
                    while lagging.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    e
                }
            })
            .boxed())
    }
}

fn node(name: &str, v4: &str) -> NodeSpec {
    NodeSpec {
        name: name.parse().unwrap(),
        address_v4: Some(v4.parse().unwrap()),
        address_v6: None,
        labels: Default::default(),
        agent_address: None,
    }
}

fn host() -> FakeKernel {
    let k = FakeKernel::new();
    k.add_device(&Ns::Host, "eth0", &["10.1.253.101/24"]);
    let eth0 = IfName::parse("ifname", "eth0").unwrap();
    k.add_route(
        &Ns::Host,
        Route::default_via("10.1.253.1".parse().unwrap(), eth0),
        4,
    );
    k
}

async fn attach(k: &FakeKernel, a: &Agent, c: &str) -> Result<IpNet, trellis_agent::Error> {
    let netns = k.add_netns(&format!("/run/netns/{c}"));
    let lo = LinkRef::Name(IfName::parse("ifname", "lo").unwrap());
    k.set_up(&Ns::Path(netns.clone()), &lo).await.unwrap();
    let ep = a
        .attach(AttachRequest {
            network: "pods".parse().unwrap(),
            container: ContainerId::parse("container_id", c).unwrap(),
            netns,
            ifname: IfName::parse("ifname", "eth0").unwrap(),
            ports: Vec::new(),
            fixed_addresses: Vec::new(),
            labels: Default::default(),
            mac: None,
        })
        .await?;
    Ok(ep.addresses[0])
}

struct World {
    ctl: Arc<Controller>,
    api: Arc<Flaky>,
    kernel: FakeKernel,
    agent: Arc<Agent>,
    member: Arc<Member>,
    _run: tokio::task::JoinHandle<()>,
}

/// A controller with routed pool `pods-v4` (10.244.0.0/16 in /29 blocks)
/// and cluster network `pods`; node `b` (10.1.253.102) holding one block;
/// node `a` on the fake kernel, its member running.
async fn world(ttl: Duration, grace: Duration) -> World {
    let ctl = Arc::new(Controller::new(
        Arc::new(MemoryStore::new()),
        Config {
            lease_ttl: ttl,
            grace,
            ..Config::default()
        },
    ));
    let pool = PoolSpec::new(
        "pods-v4",
        "10.244.0.0/16".parse().unwrap(),
        29,
        PoolMode::Routed,
        true,
        0,
    )
    .unwrap();
    ctl.create_pool(pool).await.unwrap();
    ctl.create_cluster_network(ClusterNetworkSpec {
        name: "pods".parse().unwrap(),
        pools: vec!["pods-v4".parse().unwrap()],
        mtu: None,
    })
    .await
    .unwrap();
    ctl.register_node(node("b", "10.1.253.102")).await.unwrap();
    ctl.claim_block(&"b".parse().unwrap(), &"pods-v4".parse().unwrap())
        .await
        .unwrap();
    let api = Arc::new(Flaky {
        inner: LocalController(ctl.clone()),
        down: AtomicBool::new(false),
        lagging: Arc::new(AtomicBool::new(false)),
    });
    let kernel = host();
    let be = Backends::on(kernel.clone(), Arc::new(MemoryStore::new()));
    let agent = Arc::new(Agent::open(be, "a").await.unwrap());
    agent.reconcile().await.unwrap();
    let mut cfg = MemberConfig::new(node("a", "10.1.253.101"));
    cfg.claim_ahead = 2;
    cfg.release_empty_after = Duration::from_secs(30);
    let member = Member::join(agent.clone(), api.clone(), cfg);
    let run = tokio::spawn(member.clone().run(std::future::pending()));
    World {
        ctl,
        api,
        kernel,
        agent,
        member,
        _run: run,
    }
}

/// Waits (in paused time) until `ok` holds, at most `limit`.
async fn until(limit: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !ok().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_member_serves_the_cluster_network_and_routes_to_the_other_nodes_blocks() {
    let w = world(Duration::from_secs(3), Duration::from_secs(30)).await;
    until(Duration::from_secs(5), async || {
        w.agent.network("pods").is_ok()
    })
    .await;
    let net = w.agent.network("pods").unwrap();
    assert!(net.granted());
    let b_block: IpNet = "10.244.0.0/29".parse().unwrap();
    let to_b = PeerRoute {
        block: b_block,
        via: "10.1.253.102".parse().unwrap(),
    };
    until(Duration::from_secs(5), async || {
        w.kernel.list_peer_routes().await.unwrap() == vec![to_b]
    })
    .await;

    // Eight addresses per block: the first attach claims one; the claims
    // ahead of need keep at least two free.
    let mut got = Vec::new();
    for i in 0..10 {
        got.push(attach(&w.kernel, &w.agent, &format!("c{i}")).await.unwrap());
    }
    assert!(
        got.iter().all(|ip| !b_block.contains(&ip.addr())),
        "{got:?}"
    );
    let a: NodeName = "a".parse().unwrap();
    let mine = w.ctl.list_blocks(None, Some(&a)).await.unwrap();
    assert!(mine.len() >= 2, "{mine:?}");
    // Usage reaches the controller with the next renewal.
    until(Duration::from_secs(5), async || {
        let blocks = w.ctl.list_blocks(None, Some(&a)).await.unwrap();
        blocks.iter().filter_map(|b| b.used).sum::<u32>() == 10
    })
    .await;
    // What the node's own IPAM holds is what the controller gives it
    // (the IPAM check's comparison, on the agent's side).
    let held = w.agent.held_blocks().await.unwrap();
    let mut given: Vec<IpNet> = w
        .ctl
        .list_blocks(None, Some(&a))
        .await
        .unwrap()
        .iter()
        .map(|b| b.prefix)
        .collect();
    given.sort();
    assert_eq!(held.iter().map(|h| h.prefix).collect::<Vec<_>>(), given);
    assert!(
        held.iter()
            .all(|h| h.pool == "pods-v4" && h.network == "pods" && !h.frozen),
        "{held:?}"
    );
    assert_eq!(held.iter().map(|h| h.used).sum::<u32>(), 10);

    // b gets a second block: a routes to it; b leaves: routes go.
    let b: NodeName = "b".parse().unwrap();
    let pool: PoolName = "pods-v4".parse().unwrap();
    let second = w.ctl.claim_block(&b, &pool).await.unwrap().prefix;
    until(Duration::from_secs(5), async || {
        w.kernel.list_peer_routes().await.unwrap().len() == 2
    })
    .await;
    w.ctl.remove_node(&b, true).await.unwrap();
    until(Duration::from_secs(5), async || {
        w.kernel.list_peer_routes().await.unwrap().is_empty()
    })
    .await;
    let _ = second;
    assert!(
        w.agent.status().await.warnings.is_empty(),
        "{:?}",
        w.agent.status().await.warnings
    );
}

#[tokio::test(start_paused = true)]
async fn a_member_out_of_contact_keeps_attaching_from_held_blocks_until_fenced() {
    let ttl = Duration::from_secs(3);
    let grace = Duration::from_secs(30);
    let w = world(ttl, grace).await;
    until(Duration::from_secs(5), async || {
        w.agent.network("pods").is_ok()
    })
    .await;
    attach(&w.kernel, &w.agent, "first").await.unwrap();
    w.api.down.store(true, Ordering::SeqCst);
    // Out of contact but not fenced: attaches go on from held blocks.
    tokio::time::sleep(ttl * 2).await;
    attach(&w.kernel, &w.agent, "during").await.unwrap();
    let warnings = w.agent.status().await.warnings;
    assert!(
        warnings
            .iter()
            .any(|s| s.contains("controller unreachable")),
        "{warnings:?}"
    );
    // Past lease + grace less the margin: fenced, before the controller
    // could give the blocks away.
    tokio::time::sleep(ttl + grace).await;
    let e = attach(&w.kernel, &w.agent, "late").await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Unavailable);
    assert!(e.to_string().contains("fenced"), "{e}");
    assert!(
        w.agent
            .status()
            .await
            .warnings
            .iter()
            .any(|s| s.contains("fenced"))
    );
    // The controller back: the node renews and attaches again, its blocks
    // its own all along.
    w.api.down.store(false, Ordering::SeqCst);
    until(Duration::from_secs(10), async || {
        w.member.view().revision > 0 && w.agent.status().await.warnings.is_empty()
    })
    .await;
    attach(&w.kernel, &w.agent, "after").await.unwrap();
    let a: NodeName = "a".parse().unwrap();
    assert!(!w.ctl.list_blocks(None, Some(&a)).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_peer_off_link_is_reported_not_routed() {
    let w = world(Duration::from_secs(3), Duration::from_secs(30)).await;
    w.ctl.register_node(node("far", "192.0.2.9")).await.unwrap();
    let far: NodeName = "far".parse().unwrap();
    w.ctl
        .claim_block(&far, &"pods-v4".parse().unwrap())
        .await
        .unwrap();
    until(Duration::from_secs(5), async || {
        w.agent
            .status()
            .await
            .warnings
            .iter()
            .any(|s| s.contains("far (192.0.2.9) is not on a directly connected subnet"))
    })
    .await;
    let routes = w.kernel.list_peer_routes().await.unwrap();
    assert_eq!(routes.len(), 1, "only b's block: {routes:?}");
}

#[tokio::test(start_paused = true)]
async fn empty_blocks_go_back_but_never_the_last() {
    let w = world(Duration::from_secs(3), Duration::from_secs(30)).await;
    until(Duration::from_secs(5), async || {
        w.agent.network("pods").is_ok()
    })
    .await;
    for i in 0..12 {
        attach(&w.kernel, &w.agent, &format!("c{i}")).await.unwrap();
    }
    let a: NodeName = "a".parse().unwrap();
    let held = w.ctl.list_blocks(None, Some(&a)).await.unwrap().len();
    assert!(held >= 2);
    for i in 0..12 {
        w.agent
            .detach(
                &ContainerId::parse("c", &format!("c{i}")).unwrap(),
                &IfName::parse("i", "eth0").unwrap(),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    until(Duration::from_secs(10), async || {
        w.ctl.list_blocks(None, Some(&a)).await.unwrap().len() == 1
    })
    .await;
    let usage = w.agent.ipam().block_usage("pods.v4").await.unwrap();
    assert_eq!(usage.len(), 1);
    assert!(
        trellis_cluster::check_invariants(&**w.ctl.store())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A node that starts again while the controller is out of reach keeps
/// its cluster network and its routes to the other nodes' blocks: an empty
/// view (no snapshot yet) is not "no networks and no peers".
#[tokio::test(start_paused = true)]
async fn a_restart_without_the_controller_takes_nothing_down() {
    let w = world(Duration::from_secs(3), Duration::from_secs(30)).await;
    until(Duration::from_secs(5), async || {
        w.agent.network("pods").is_ok() && !w.kernel.list_peer_routes().await.unwrap().is_empty()
    })
    .await;
    let routes = w.kernel.list_peer_routes().await.unwrap();
    // The restart: a new agent and member on the same store and kernel,
    // the controller down.
    w._run.abort();
    w.api.down.store(true, Ordering::SeqCst);
    let be = Backends::on(w.kernel.clone(), w.agent.store().clone());
    let agent = Arc::new(Agent::open(be, "a").await.unwrap());
    agent.reconcile().await.unwrap();
    let mut cfg = MemberConfig::new(node("a", "10.1.253.101"));
    cfg.claim_ahead = 2;
    let member = Member::join(agent.clone(), w.api.clone(), cfg);
    let _run = tokio::spawn(member.run(std::future::pending()));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        agent.network("pods").is_ok(),
        "the cluster network was deleted"
    );
    assert_eq!(w.kernel.list_peer_routes().await.unwrap(), routes);
}

/// A block given back is not adopted again by a sync whose view of the
/// block map still shows it as the node's (the release not seen yet): the
/// controller may give it to another node at once.
#[tokio::test(start_paused = true)]
async fn a_block_given_back_is_not_taken_again_while_the_view_lags() {
    let w = world(Duration::from_secs(3), Duration::from_secs(30)).await;
    // A peer off-link: every sync leaves a warning, so every tick syncs
    // again in full.
    w.ctl.register_node(node("far", "192.0.2.9")).await.unwrap();
    let far: NodeName = "far".parse().unwrap();
    let pool: PoolName = "pods-v4".parse().unwrap();
    w.ctl.claim_block(&far, &pool).await.unwrap();
    until(Duration::from_secs(5), async || {
        w.agent.network("pods").is_ok()
    })
    .await;
    for i in 0..12 {
        attach(&w.kernel, &w.agent, &format!("c{i}")).await.unwrap();
    }
    let a: NodeName = "a".parse().unwrap();
    assert!(w.ctl.list_blocks(None, Some(&a)).await.unwrap().len() >= 2);
    for i in 0..12 {
        w.agent
            .detach(
                &ContainerId::parse("c", &format!("c{i}")).unwrap(),
                &IfName::parse("i", "eth0").unwrap(),
            )
            .await
            .unwrap();
    }
    // The view is up to date; the releases the node is about to make stay
    // unseen.
    until(Duration::from_secs(5), async || {
        let given = w.ctl.list_blocks(None, Some(&a)).await.unwrap().len();
        w.member.view().my_blocks(&a).len() == given
    })
    .await;
    w.api.lagging.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let given: Vec<IpNet> = w
        .ctl
        .list_blocks(None, Some(&a))
        .await
        .unwrap()
        .iter()
        .map(|b| b.prefix)
        .collect();
    assert_eq!(given.len(), 1, "the empty blocks were given back");
    let held: Vec<IpNet> = w
        .agent
        .held_blocks()
        .await
        .unwrap()
        .iter()
        .map(|h| h.prefix)
        .collect();
    assert_eq!(
        held, given,
        "the node holds blocks the controller gave back"
    );
    w.api.lagging.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held: Vec<IpNet> = w
        .agent
        .held_blocks()
        .await
        .unwrap()
        .iter()
        .map(|h| h.prefix)
        .collect();
    assert_eq!(held, given);
}

#[tokio::test(start_paused = true)]
async fn blocks_the_controller_takes_back_give_no_new_address_here() {
    let w = world(Duration::from_secs(3), Duration::from_secs(30)).await;
    until(Duration::from_secs(5), async || {
        w.agent.network("pods").is_ok()
    })
    .await;
    for i in 0..3 {
        attach(&w.kernel, &w.agent, &format!("c{i}")).await.unwrap();
    }
    let a: NodeName = "a".parse().unwrap();
    let pool: PoolName = "pods-v4".parse().unwrap();
    let busy = w.ctl.list_blocks(None, Some(&a)).await.unwrap()[0].prefix;
    // A second block given to the node by the controller: adopted, empty.
    let empty = w.ctl.claim_block(&a, &pool).await.unwrap().prefix;
    until(Duration::from_secs(5), async || {
        w.agent
            .held_blocks()
            .await
            .unwrap()
            .iter()
            .any(|h| h.prefix == empty)
    })
    .await;

    // An operator takes both back (as if the node had been out of contact
    // past its grace): the empty one leaves the node's IPAM, the busy one
    // is frozen and said so.
    w.ctl.release_block(&a, &pool, empty).await.unwrap();
    w.ctl.release_block(&a, &pool, busy).await.unwrap();
    // ... and gives them to node b, the lowest free blocks.
    let b: NodeName = "b".parse().unwrap();
    let mut to_b = vec![
        w.ctl.claim_block(&b, &pool).await.unwrap().prefix,
        w.ctl.claim_block(&b, &pool).await.unwrap().prefix,
    ];
    to_b.sort();
    let mut taken = vec![empty, busy];
    taken.sort();
    assert_eq!(to_b, taken);
    until(Duration::from_secs(5), async || {
        let held = w.agent.held_blocks().await.unwrap();
        !held.iter().any(|h| h.prefix == empty) && held.iter().any(|h| h.prefix == busy && h.frozen)
    })
    .await;
    let warnings = w.agent.status().await.warnings;
    assert!(
        warnings
            .iter()
            .any(|s| s.contains(&busy.to_string()) && s.contains("does not count it")),
        "{warnings:?}"
    );
    // New attaches take addresses only from blocks the controller gives
    // this node, never from b's.
    for i in 10..14 {
        let ip = attach(&w.kernel, &w.agent, &format!("c{i}")).await.unwrap();
        let given = w.ctl.list_blocks(None, Some(&a)).await.unwrap();
        assert!(
            given.iter().any(|b| b.prefix.contains(&ip.addr())),
            "{ip} is not in a block the controller gives node a: {given:?}"
        );
        assert!(!empty.contains(&ip.addr()) && !busy.contains(&ip.addr()));
    }
    // Once its containers are gone the frozen block is forgotten too, and
    // the warning with it.
    let in_busy: Vec<String> = w
        .agent
        .endpoints()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.addresses.iter().any(|ip| busy.contains(&ip.addr())))
        .map(|e| e.request.container.to_string())
        .collect();
    assert!(!in_busy.is_empty());
    for c in &in_busy {
        w.agent
            .detach(
                &ContainerId::parse("c", c).unwrap(),
                &IfName::parse("i", "eth0").unwrap(),
            )
            .await
            .unwrap();
    }
    until(Duration::from_secs(10), async || {
        !w.agent
            .held_blocks()
            .await
            .unwrap()
            .iter()
            .any(|h| h.prefix == busy)
            && w.agent.status().await.warnings.is_empty()
    })
    .await;
}

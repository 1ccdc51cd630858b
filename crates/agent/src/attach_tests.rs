//! Rollback: a failure injected at each step of an attach leaves nothing behind
//! (no address in IPAM, no veth, no published port, no record, no held port),
//! on the fake kernel, which holds state; the mocks remain for the one test
//! that must pause an attach half-way.

use crate::{Agent, AttachRequest, Backends, Error, NetworkMode, NetworkSpec, PortSpec};
use std::io;
use std::sync::{Arc, Mutex};
use trellis_fake::{Errno, FakeKernel};
use trellis_link::{
    KernelError, LinkError, LinkRef, Links, MockLinks, NetnsId, Ns, ReservedNetns, VethInfo,
};
use trellis_nat::{MockHostFirewall, MockNat};
use trellis_route::{MockRoutes, RouteError};
use trellis_store::{InstrumentedStore, KvStore, MemoryStore};
use trellis_types::{ContainerId, Handle, IfName, NetnsPath, Protocol};

/// The step at which the injected failure happens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Fail {
    Veth,
    /// The host side of a routed port (bridge mode has none).
    HostSide,
    /// The container side: addresses, up, routes.
    Container,
    Publish,
    /// Deleting a veth (detach).
    Unplug,
    Nothing,
}

/// What the mocks saw being undone.
#[derive(Default, Debug)]
pub(crate) struct Seen {
    pub(crate) deleted: Vec<String>,
    unpublished: usize,
    /// The number of published ports of each NAT `sync`.
    synced_ports: Vec<usize>,
}

fn kernel(op: &'static str) -> KernelError {
    KernelError {
        op,
        subject: "test".into(),
        source: io::Error::from_raw_os_error(libc_eio()),
    }
}

fn libc_eio() -> i32 {
    5 // EIO
}

/// Holds `create_veth` until the test says go: it reports on `reached` and
/// waits on `go` (blocking a runtime worker; the tests run multi-threaded).
struct Gate {
    reached: std::sync::mpsc::Sender<()>,
    go: Mutex<std::sync::mpsc::Receiver<()>>,
}

fn backends(fail: Fail, seen: Arc<Mutex<Seen>>) -> Backends {
    backends_gated(fail, seen, None)
}

fn backends_gated(fail: Fail, seen: Arc<Mutex<Seen>>, gate: Option<Gate>) -> Backends {
    let mut links = MockLinks::new();
    links.expect_ensure_bridge().returning(|_| Ok(7));
    links.expect_link_exists().returning(|_, _| Ok(false));
    links
        .expect_check_netns()
        .returning(|_| Ok(NetnsId { dev: 4, ino: 100 }));
    links.expect_reserved_netns().returning(|| {
        let id = NetnsId { dev: 4, ino: 1 };
        vec![ReservedNetns {
            id,
            what: "the host",
        }]
    });
    links.expect_host_addresses().returning(|| Ok(Vec::new()));
    links.expect_host_listeners().returning(|_| Ok(Vec::new()));
    links
        .expect_list_links_with_prefix()
        .returning(|_, _| Ok(Vec::new()));
    links.expect_create_veth().returning(move |_| {
        if let Some(g) = &gate {
            g.reached.send(()).unwrap();
            g.go.lock().unwrap().recv().unwrap();
        }
        veth_or(fail)
    });
    links
        .expect_setup_container()
        .returning(move |_, _| match fail {
            Fail::Container => Err(LinkError::Kernel(kernel("add address"))),
            _ => Ok(()),
        });
    links
        .expect_enable_host_forwarding()
        .returning(|_, _| Ok(()));
    let s = seen.clone();
    links.expect_retire_veth().returning(move |n, _| {
        if fail == Fail::Unplug {
            return Err(LinkError::Kernel(kernel("take out of service")));
        }
        s.lock().unwrap().deleted.push(n.to_string());
        Ok(Some(trellis_link::retired_name()))
    });
    links.expect_delete_links().returning(|_| Ok(()));
    // Bridges (a network's delete).
    links.expect_delete_link().returning(|_| Ok(()));
    let mut routes = MockRoutes::new();
    routes.expect_add_routes().returning(|_, _| Ok(()));
    routes.expect_delete_routes().returning(|_, _| Ok(()));
    routes.expect_list_routes().returning(|_| Ok(Vec::new()));
    routes.expect_host_routes().returning(|| Ok(Vec::new()));
    routes
        .expect_setup_routed_host()
        .returning(move |_| match fail {
            Fail::HostSide => Err(RouteError::Kernel(kernel("add route"))),
            _ => Ok(()),
        });
    let mut nat = MockNat::new();
    nat.expect_ensure_table().returning(|| Ok(()));
    nat.expect_list_networks().returning(|| Ok(Vec::new()));
    nat.expect_list_pools().returning(|| Ok(Vec::new()));
    nat.expect_list_published().returning(|| Ok(Vec::new()));
    nat.expect_list_reach().returning(|| Ok(Vec::new()));
    nat.expect_set_reach().returning(|_| Ok(()));
    let s = seen.clone();
    nat.expect_sync().returning(move |st| {
        s.lock().unwrap().synced_ports.push(st.ports.len());
        Ok(())
    });
    nat.expect_add_network().returning(|_| Ok(()));
    nat.expect_add_pool().returning(|_| Ok(()));
    nat.expect_remove_network().returning(|_| Ok(()));
    nat.expect_remove_pool().returning(|_| Ok(()));
    nat.expect_remove_all().returning(|| Ok(()));
    nat.expect_publish().returning(move |_| match fail {
        Fail::Publish => Err(trellis_nat::Error::Kernel {
            op: "publish",
            errno: libc_eio(),
            detail: None,
        }),
        _ => Ok(()),
    });
    let s = seen.clone();
    nat.expect_unpublish().returning(move |_| {
        s.lock().unwrap().unpublished += 1;
        Ok(())
    });
    Backends {
        links: Arc::new(links),
        routes: Arc::new(routes),
        nat: Arc::new(nat),
        hostfw: Arc::new(hostfw()),
        store: Arc::new(MemoryStore::new()),
    }
}

fn hostfw() -> MockHostFirewall {
    let mut fw = MockHostFirewall::new();
    fw.expect_admit().returning(|_| Ok(Vec::new()));
    fw.expect_check_admitted().returning(|_| Ok(Vec::new()));
    fw
}

fn veth_or(fail: Fail) -> Result<VethInfo, LinkError> {
    match fail {
        Fail::Veth => Err(LinkError::Kernel(kernel("create veth"))),
        _ => Ok(VethInfo {
            host_ifindex: 10,
            container_ifindex: 2,
            container_mac: [2, 0, 0, 0, 0, 1],
        }),
    }
}

pub(crate) fn request(id: &str, port: u32) -> AttachRequest {
    AttachRequest {
        network: "n".parse().unwrap(),
        container: ContainerId::parse("container_id", id).unwrap(),
        netns: NetnsPath::parse("netns", "/run/netns/x").unwrap(),
        ifname: IfName::parse("ifname", "eth0").unwrap(),
        ports: vec![PortSpec::new(Protocol::Tcp, port, 80).unwrap()],
        fixed_addresses: Vec::new(),
        labels: Default::default(),
        mac: None,
    }
}

pub(crate) async fn agent_failing_at(fail: Fail, routed: bool) -> (Agent, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let agent = Agent::open(backends(fail, seen.clone()), "node")
        .await
        .unwrap();
    agent.create_network(network_spec(routed)).await.unwrap();
    (agent, seen)
}

fn network_spec(routed: bool) -> NetworkSpec {
    let mode = if routed {
        NetworkMode::Routed
    } else {
        NetworkMode::Bridge {
            bridge: IfName::parse("bridge", "tbr").unwrap(),
        }
    };
    NetworkSpec {
        subnet_pool: None,
        cluster_pools: Vec::new(),
        name: "n".parse().unwrap(),
        subnets: vec!["10.5.0.0/24".parse().unwrap()],
        gateway: None,
        mode,
        masquerade: true,
        mtu: None,
        internal: false,
        routable: false,
        reach: Vec::new(),
    }
}

/// A host on the fake kernel with a container namespace, and an agent with
/// network "n" on it (routed or bridge), reconciled.
async fn on_fake(routed: bool, store: Arc<dyn KvStore>) -> (Agent, FakeKernel) {
    let kernel = FakeKernel::new();
    kernel.add_device(&Ns::Host, "eth0", &["10.1.253.101/24"]);
    let netns = kernel.add_netns("/run/netns/x");
    let lo = LinkRef::Name(IfName::parse("ifname", "lo").unwrap());
    kernel.set_up(&Ns::Path(netns), &lo).await.unwrap();
    let be = Backends::on(kernel.clone(), store);
    let agent = Agent::open(be, "node").await.unwrap();
    agent.reconcile().await.unwrap();
    agent.create_network(network_spec(routed)).await.unwrap();
    (agent, kernel)
}

#[tokio::test]
async fn a_failure_at_each_step_leaves_nothing_behind() {
    let bridge = ["create_veth", "setup_container", "publish"].map(|f| (f, false));
    let routed = [
        "create_veth",
        "setup_routed_host",
        "setup_container",
        "publish",
    ]
    .map(|f| (f, true));
    for (step, routed) in bridge.into_iter().chain(routed) {
        let (agent, kernel) = on_fake(routed, Arc::new(MemoryStore::new())).await;
        if routed {
            // The first attach claims a block and blackholes it, which
            // stays with the block; claim it before the failing attach.
            let r = request("c0", 9000);
            agent.attach(r.clone()).await.unwrap();
            agent.detach(&r.container, &r.ifname).await.unwrap();
            agent.settle().await;
        }
        let before = kernel.snapshot();
        kernel.fail_next(step, Errno::EIO);
        let err = agent.attach(request("c1", 8081)).await.unwrap_err();
        let what = format!("{step} (routed: {routed})");
        assert!(
            matches!(err, Error::Link(_) | Error::Route(_) | Error::Nat(_)),
            "{what}: {err}"
        );
        assert!(
            kernel.pending_faults().is_empty(),
            "{what}: the step was not reached"
        );
        assert_eq!(
            kernel.snapshot(),
            before,
            "{what}: the kernel kept something"
        );
        let usage = agent.ipam().usage("n.v4").await.unwrap();
        assert_eq!(usage.used, 0, "{what}: address leaked");
        assert!(
            agent.endpoints().await.unwrap().is_empty(),
            "{what}: record left"
        );
        // The host port was released: the same port can be claimed again.
        agent
            .ports
            .claim(&request("c2", 8081).handle(), &request("c2", 8081).ports)
            .unwrap();
    }
}

#[tokio::test]
async fn a_refused_record_write_makes_nothing() {
    let store = Arc::new(InstrumentedStore::refusing("nodes/node/endpoints"));
    let (agent, kernel) = on_fake(false, store).await;
    let before = kernel.snapshot();
    kernel.take_calls();
    let err = agent.attach(request("c1", 8081)).await.unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(
        agent.ipam().usage("n.v4").await.unwrap().used,
        0,
        "address taken without a record"
    );
    assert_eq!(kernel.snapshot(), before);
    let writes: Vec<String> = kernel.writes().iter().map(ToString::to_string).collect();
    assert!(writes.is_empty(), "the kernel was touched: {writes:?}");
    agent
        .ports
        .claim(&request("c2", 8081).handle(), &request("c2", 8081).ports)
        .unwrap();
}

#[tokio::test]
async fn an_attach_and_a_detach_each_commit_to_the_store_once() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut be = backends(Fail::Nothing, seen.clone());
    let store = Arc::new(InstrumentedStore::default());
    be.store = store.clone();
    let agent = Agent::open(be, "node").await.unwrap();
    for routed in [false, true] {
        let mut spec = network_spec(routed);
        spec.name = format!("n{}", u8::from(routed)).parse().unwrap();
        spec.subnets = if routed {
            vec![
                "10.6.0.0/24".parse().unwrap(),
                "fd00:6::/64".parse().unwrap(),
            ]
        } else {
            vec!["10.5.0.0/24".parse().unwrap()]
        };
        agent.create_network(spec.clone()).await.unwrap();
        for (i, id) in ["a", "b"].iter().enumerate() {
            let mut req = request(
                &format!("{id}{routed}"),
                9000 + i as u32 + 10 * u32::from(routed),
            );
            req.network = spec.name.clone();
            let before = store.commits();
            let ep = agent.attach(req.clone()).await.unwrap();
            let commits = store.commits() - before;
            // The first attach also claims the block(s): still one commit.
            assert_eq!(
                commits, 1,
                "attach {id} (routed: {routed}) committed {commits} times"
            );
            assert_eq!(ep.addresses.len(), spec.subnets.len());
            let recorded = agent.endpoint(&req.container, &req.ifname).await.unwrap();
            assert_eq!(recorded, Some(ep), "the record is the endpoint returned");
            let before = store.commits();
            agent.detach(&req.container, &req.ifname).await.unwrap();
            let commits = store.commits() - before;
            assert_eq!(
                commits, 1,
                "detach {id} (routed: {routed}) committed {commits} times"
            );
            assert_eq!(
                agent.endpoint(&req.container, &req.ifname).await.unwrap(),
                None
            );
        }
    }
    for pool in ["n0.v4", "n1.v4", "n1.v6"] {
        assert_eq!(agent.ipam().usage(pool).await.unwrap().used, 0, "{pool}");
    }
}

#[tokio::test]
async fn the_same_attach_twice_returns_the_same_endpoint() {
    let (agent, _) = agent_failing_at(Fail::Nothing, false).await;
    let a = agent.attach(request("c1", 8081)).await.unwrap();
    let b = agent.attach(request("c1", 8081)).await.unwrap();
    assert_eq!(a, b);
    let other = agent.attach(request("c1", 8082)).await.unwrap_err();
    assert!(matches!(other, Error::EndpointExists(_)), "{other}");
    assert_eq!(agent.ipam().usage("n.v4").await.unwrap().used, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attach_under_way_is_not_shown_nor_collected_until_it_ends() {
    let (reached_tx, reached) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    let gate = Gate {
        reached: reached_tx,
        go: Mutex::new(go_rx),
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let be = backends_gated(Fail::Nothing, seen.clone(), Some(gate));
    let store = be.store.clone();
    let agent = Arc::new(Agent::open(be, "node").await.unwrap());
    // Reconciled (an attach of a record answered before the start-up
    // reconcile first makes sure of its veth, which these mocks hold none of).
    agent.reconcile().await.unwrap();
    agent.create_network(network_spec(false)).await.unwrap();
    let req = request("c1", 8081);
    let task = tokio::spawn({
        let (agent, req) = (agent.clone(), req.clone());
        async move { agent.attach(req).await }
    });
    tokio::task::spawn_blocking(move || reached.recv().unwrap())
        .await
        .unwrap();

    // The record is committed (with the address) but the veth is still
    // being made: readers do not see an endpoint, a sweep leaves it alone,
    // and a second attach of it is refused rather than answered early.
    let raw = store.list("nodes/node/endpoints").await.unwrap();
    assert_eq!(
        raw.entries.len(),
        1,
        "the record is written before plumbing"
    );
    assert_eq!(
        agent.endpoint(&req.container, &req.ifname).await.unwrap(),
        None
    );
    assert!(agent.endpoints().await.unwrap().is_empty());
    assert_eq!(agent.status().await.endpoints, 0);
    let gc = agent.garbage_collect(None, &[]).await.unwrap();
    assert!(gc.removed.is_empty() && gc.errors.is_empty(), "{gc:?}");
    let again = agent.attach(req.clone()).await.unwrap_err();
    assert!(again.to_string().contains("under way"), "{again}");
    let detach = agent.detach(&req.container, &req.ifname).await.unwrap_err();
    assert!(matches!(detach, Error::Busy(_)), "{detach}");
    assert_eq!(detach.class(), crate::ErrorClass::Unavailable);

    go.send(()).unwrap();
    let ep = task.await.unwrap().unwrap();
    assert_eq!(
        agent.endpoint(&req.container, &req.ifname).await.unwrap(),
        Some(ep.clone())
    );
    assert_eq!(
        agent.attach(req).await.unwrap(),
        ep,
        "now the same attach is answered"
    );
    assert!(
        seen.lock().unwrap().deleted.is_empty(),
        "the sweep deleted a veth"
    );
}

#[tokio::test]
async fn a_failed_detach_keeps_the_record_and_the_addresses_for_a_retry() {
    let (agent, kernel) = on_fake(false, Arc::new(MemoryStore::new())).await;
    let req = request("c1", 8081);
    let ep = agent.attach(req.clone()).await.unwrap();
    kernel.fail_next("retire_veth", Errno::EIO);
    let err = agent.detach(&req.container, &req.ifname).await.unwrap_err();
    assert!(matches!(err, Error::Teardown { .. }), "{err}");
    assert_eq!(
        agent.endpoint(&req.container, &req.ifname).await.unwrap(),
        Some(ep.clone())
    );
    assert_eq!(
        agent.ipam().usage("n.v4").await.unwrap().used,
        1,
        "address released early"
    );
    let port_still_held = agent
        .ports
        .claim(&request("c2", 8081).handle(), &request("c2", 8081).ports);
    assert!(port_still_held.is_err(), "the host port was given up");
    // The retry finishes the job, and nothing of trellis is left but the
    // network's own objects.
    agent.detach(&req.container, &req.ifname).await.unwrap();
    assert_eq!(agent.ipam().usage("n.v4").await.unwrap().used, 0);
    let veth = kernel.link(&Ns::Host, ep.host_ifname.as_str());
    assert!(veth.is_none(), "{veth:?}");
    agent.settle().await;
    let host = &kernel.snapshot().namespaces["host"];
    assert!(
        host.links
            .iter()
            .all(|l| l.kind != trellis_fake::LinkKind::Bridge || l.name.as_str() == "tbr"),
        "{host:?}"
    );
    assert!(
        host.links
            .iter()
            .all(|l| !l.name.as_str().starts_with("tr") || l.name.as_str() == "tbr"),
        "a retired veth was never deleted: {host:?}"
    );
}

/// What a crash loses with the store's last commit of an attach: the
/// endpoint's record and its addresses (the kernel keeps what was made).
async fn lose_last_commit(store: &Arc<dyn KvStore>, handle: &Handle) {
    trellis_ipam::Ipam::new(store.clone(), "node")
        .release(handle)
        .await
        .unwrap();
    let key = format!("nodes/node/endpoints/{handle}");
    store
        .delete_if(&key, trellis_store::Expect::Any)
        .await
        .unwrap();
}

/// A crash after an attach made its veth (and published its port) but
/// before its record was durable: the store comes back without the record,
/// the kernel with the veth. The retried attach, answered before reconcile
/// has taken the leftover away (it leaves handles under way alone), clears
/// it and succeeds, and the node holds the one endpoint the record says.
#[tokio::test]
async fn an_attach_retried_after_a_crash_clears_what_the_cut_off_one_left() {
    for routed in [false, true] {
        let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let (first, kernel) = on_fake(routed, store.clone()).await;
        let req = request("c1", 8081);
        let lost = first.attach(req.clone()).await.unwrap();
        // The crash: the record and the addresses are lost with the store's
        // last commit, the kernel keeps what the attach made.
        drop(first);
        let handle = req.handle();
        lose_last_commit(&store, &handle).await;
        let be = Backends::on(kernel.clone(), store);
        let agent = Agent::open(be, "node").await.unwrap();
        assert!(agent.endpoints().await.unwrap().is_empty());
        let ep = agent
            .attach(req.clone())
            .await
            .unwrap_or_else(|e| panic!("routed {routed}: the retried attach: {e}"));
        assert_eq!(ep.host_ifname, lost.host_ifname);
        assert_eq!(
            agent.endpoint(&req.container, &req.ifname).await.unwrap(),
            Some(ep.clone())
        );
        agent.settle().await;
        // Exactly what the record explains: reconcile finds nothing to do.
        let report = agent.reconcile().await.unwrap();
        assert!(
            report.removed.is_empty() && report.repaired.is_empty() && report.errors.is_empty(),
            "routed {routed}: {report:?}"
        );
        assert!(kernel.link(&Ns::Host, ep.host_ifname.as_str()).is_some());
    }
}

/// A crash after an attach's record was durable and before its veth was
/// made: the same attach retried before the start-up reconcile has run is
/// answered only once the container has its interface again.
#[tokio::test]
async fn an_attach_retried_before_reconcile_is_answered_once_plumbed() {
    for routed in [false, true] {
        let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let (first, kernel) = on_fake(routed, store.clone()).await;
        let req = request("c1", 8081);
        let ep = first.attach(req.clone()).await.unwrap();
        drop(first);
        // What the crash kept of the kernel side: nothing.
        kernel.delete_link(&ep.host_ifname).await.unwrap();
        let agent = Agent::open(Backends::on(kernel.clone(), store), "node")
            .await
            .unwrap();
        assert!(
            !agent
                .check(&req.container, &req.ifname)
                .await
                .unwrap()
                .is_empty()
        );
        let again = agent.attach(req.clone()).await.unwrap();
        assert_eq!(again, ep);
        let problems = agent.check(&req.container, &req.ifname).await.unwrap();
        assert!(problems.is_empty(), "routed {routed}: {problems:?}");
        // Reconcile finds it whole.
        let report = agent.reconcile().await.unwrap();
        assert!(
            report.repaired.is_empty() && report.errors.is_empty(),
            "routed {routed}: {report:?}"
        );
    }
}

/// A veth retired without its container end (as reconcile retires one no
/// record explains) keeps the container's interface name until the reaper
/// deletes the pair — across a crash, until the next start's sweep. An
/// attach of that interface meanwhile (the retry of the attach a crash cut
/// off) waits for the deletion and succeeds.
#[tokio::test]
async fn an_attach_waits_for_the_retired_veth_that_holds_its_interface_name() {
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let (first, kernel) = on_fake(false, store.clone()).await;
    let req = request("c1", 8081);
    let lost = first.attach(req.clone()).await.unwrap();
    // The crash: the record and the addresses lost; the host end retired
    // (renamed) with the container end left as it was, not yet deleted.
    drop(first);
    let handle = req.handle();
    lose_last_commit(&store, &handle).await;
    let retired = kernel
        .retire_veth(&lost.host_ifname, None)
        .await
        .unwrap()
        .expect("retired");
    let netns = Ns::Path(req.netns.clone());
    assert!(
        kernel.link(&netns, "eth0").is_some(),
        "the container end keeps its name"
    );
    let agent = Agent::open(Backends::on(kernel.clone(), store), "node")
        .await
        .unwrap();
    let ep = agent.attach(req.clone()).await.unwrap();
    assert!(kernel.link(&Ns::Host, retired.as_str()).is_none());
    let problems = agent.check(&req.container, &req.ifname).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(ep.host_ifname, lost.host_ifname);
}

//! Check, reconcile and garbage collection against real kernel state: things
//! are broken or left behind by hand with `ip` and `nft` in the test's own
//! namespaces, `check` names them, and `reconcile` / `garbage_collect`
//! restore exactly what the records say — no more, no less.

mod util;

use std::net::SocketAddr;
use trellis_agent::{Agent, Endpoint, ReconcileReport};
use trellis_testlab::{Netns, TcpServer, require_root, tcp_request};
use trellis_types::{ContainerId, Handle, IfName, Protocol};
use util::{agent_in, attach, bridge_spec, routed_spec};

async fn problems(agent: &Agent, ep: &Endpoint) -> Vec<String> {
    let h = ep.request.handle();
    agent.check(&h.container, &h.ifname).await.unwrap()
}

async fn assert_healthy(agent: &Agent, eps: &[&Endpoint]) {
    for ep in eps {
        let p = problems(agent, ep).await;
        assert!(p.is_empty(), "{}: {p:?}", ep.request.container);
    }
}

fn has(list: &[String], needle: &str) -> bool {
    list.iter().any(|p| p.contains(needle))
}

fn nft(host: &Netns, verb: &str, elem: &str) {
    host.exec_ok(&["nft", verb, "element", "inet", "trellis", "ports4", elem]);
}

/// Two networks (bridge "b", routed "r") on `host`.
async fn setup(host: &Netns) -> Agent {
    let agent = agent_in(host).await;
    assert_eq!(agent.reconcile().await.unwrap(), ReconcileReport::default());
    let spec = bridge_spec("b", "192.168.172.0/24", "tbrb");
    agent.create_network(spec).await.unwrap();
    let spec = routed_spec("r", &["10.247.0.0/16"]);
    agent.create_network(spec).await.unwrap();
    agent
}

fn reach(host: &Netns, ep: &Endpoint, ns: &Netns) {
    let addr = SocketAddr::new(ep.addresses[0].addr(), 80);
    let _server = TcpServer::start(ns, addr, "c");
    tcp_request(host, addr).unwrap_or_else(|e| panic!("host reaches {addr}: {e}"));
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_what_was_broken_and_reconcile_repairs_it() {
    require_root();
    let host = Netns::new("host");
    let agent = setup(&host).await;
    let (c1, p1) = (Netns::new("c1"), Netns::new("p1"));
    let ep1 = attach(&agent, "b", "c1", &c1, &[(Protocol::Tcp, 8086, 80)]).await;
    let ep2 = attach(&agent, "r", "p1", &p1, &[]).await;
    assert_healthy(&agent, &[&ep1, &ep2]).await;
    let (addr1, addr2) = (ep1.addresses[0], ep2.addresses[0].addr());
    let (veth1, veth2) = (ep1.host_ifname.as_str(), ep2.host_ifname.as_str());

    // The container side: an address and the route that went with it.
    c1.ip("addr flush dev eth0");
    let p = problems(&agent, &ep1).await;
    assert!(has(&p, &format!("lacks address {addr1}")), "{p:?}");
    assert!(has(&p, "container route 0.0.0.0/0"), "{p:?}");
    c1.ip(&format!("addr add {addr1} dev eth0"));
    c1.ip("route add default via 192.168.172.1 proto 116");
    assert_healthy(&agent, &[&ep1]).await;

    // The bridge (its ports fall off it), a published port, a routed host
    // route and neighbour, a routed veth.
    host.ip("link del tbrb");
    nft(&host, "delete", "{ tcp . 8086 }");
    host.ip(&format!("route del {addr2}/32 dev {veth2}"));
    host.ip(&format!("neigh del {addr2} dev {veth2}"));
    let knob = format!("net.ipv4.conf.{veth2}.proxy_arp");
    host.exec_ok(&["sysctl", "-qw", &format!("{knob}=0")]);
    let p = problems(&agent, &ep1).await;
    assert!(has(&p, "bridge tbrb is missing"), "{p:?}");
    assert!(has(&p, "published port 8086/tcp"), "{p:?}");
    let p = problems(&agent, &ep2).await;
    assert!(
        has(&p, &format!("host route {addr2}/32 dev {veth2} is missing")),
        "{p:?}"
    );
    assert!(has(&p, &format!("neighbour {addr2}")), "{p:?}");
    assert!(
        has(&p, &format!("host veth {veth2} has proxy_arp off")),
        "{p:?}"
    );

    let r = agent.reconcile().await.unwrap();
    assert!(r.errors.is_empty() && r.detached.is_empty(), "{r:?}");
    assert!(has(&r.repaired, "bridge tbrb"), "{r:?}");
    assert!(has(&r.repaired, &format!("veth {veth1}")), "{r:?}");
    assert!(has(&r.repaired, "host routes of p1/eth0"), "{r:?}");
    assert!(has(&r.repaired, "nftables"), "{r:?}");
    assert_healthy(&agent, &[&ep1, &ep2]).await;
    assert_eq!(host.exec_ok(&["sysctl", "-n", &knob]).trim(), "1");
    reach(&host, &ep1, &c1);
    let nft_rules = host.exec_ok(&["nft", "list", "table", "inet", "trellis"]);
    assert!(nft_rules.contains("8086"), "{nft_rules}");

    // A routed veth gone (the container end goes with it): plumbed again
    // with the same address.
    host.ip(&format!("link del {veth2}"));
    let p = problems(&agent, &ep2).await;
    assert!(has(&p, &format!("host veth {veth2} is missing")), "{p:?}");
    assert!(has(&p, "container interface eth0 is missing"), "{p:?}");
    let r = agent.reconcile().await.unwrap();
    assert!(has(&r.repaired, &format!("veth {veth2}")), "{r:?}");
    assert_healthy(&agent, &[&ep1, &ep2]).await;
    reach(&host, &ep2, &p1);

    // The container sides drifted (or were never finished: a crash after
    // the record's commit): a bridge container without its address and
    // route, a routed one whose eth0 is down and lacks its routes. Both are
    // plumbed again with their recorded addresses.
    c1.ip("addr flush dev eth0");
    p1.ip("route flush dev eth0");
    p1.ip("link set eth0 down");
    let r = agent.reconcile().await.unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    for ep in [&ep1, &ep2] {
        let veth = ep.host_ifname.as_str();
        assert!(
            has(
                &r.repaired,
                &format!("veth {veth} of {} (container side", ep.request.handle())
            ),
            "{r:?}"
        );
    }
    assert_healthy(&agent, &[&ep1, &ep2]).await;
    reach(&host, &ep1, &c1);
    reach(&host, &ep2, &p1);

    // Healthy now: another reconcile changes nothing.
    assert_eq!(agent.reconcile().await.unwrap(), ReconcileReport::default());
}

fn ghost() -> Handle {
    let c = ContainerId::parse("container_id", "ghost").unwrap();
    Handle::new(c, IfName::parse("ifname", "eth0").unwrap())
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_removes_what_no_record_explains() {
    require_root();
    let host = Netns::new("host");
    let agent = setup(&host).await;
    let (c1, p1, c2) = (Netns::new("c1"), Netns::new("p1"), Netns::new("c2"));
    let ep1 = attach(&agent, "b", "c1", &c1, &[(Protocol::Tcp, 8086, 80)]).await;
    let ep2 = attach(&agent, "r", "p1", &p1, &[]).await;
    let gone = attach(&agent, "b", "c2", &c2, &[(Protocol::Tcp, 8087, 80)]).await;
    let block = agent.ipam().owned_blocks("r.v4").await.unwrap()[0];

    // Left behind, as by a crash: a trellis veth, routes of protocol 116 (a
    // blackhole of a block this host does not own), an IPAM allocation, a
    // published-port element. Missing: the owned block's blackhole. Gone:
    // c2's namespace (its veth goes with it).
    host.ip("link add tr0123456789abc type veth peer name orphanpeer");
    host.ip("route add blackhole 10.99.0.0/26 proto 116");
    host.ip("route add 10.98.0.0/24 via 192.168.172.50 proto 116");
    host.ip(&format!("route del blackhole {block}"));
    agent.ipam().allocate("b.v4", &ghost()).await.unwrap();
    nft(&host, "add", "{ tcp . 9999 : 192.168.172.50 . 80 }");
    drop(c2);

    let r = agent.reconcile().await.unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.detached, vec![gone.request.handle()]);
    assert!(has(&r.removed, "veth tr0123456789abc"), "{r:?}");
    assert!(has(&r.removed, "route blackhole 10.99.0.0/26"), "{r:?}");
    assert!(has(&r.removed, "allocation of ghost/eth0"), "{r:?}");
    assert!(
        has(&r.repaired, &format!("route blackhole {block}")),
        "{r:?}"
    );
    assert!(has(&r.repaired, "nftables"), "{r:?}");

    assert!(!host.ip("-o link show").contains("tr0123456789abc"));
    let routes = host.ip("route show proto 116");
    assert!(!routes.contains("10.99.0.0"), "{routes}");
    assert!(routes.contains(&format!("blackhole {block}")), "{routes}");
    assert!(
        routes.contains("10.98.0.0/24 via"),
        "peer routes are not ours to judge: {routes}"
    );
    let table = host.exec_ok(&["nft", "list", "table", "inet", "trellis"]);
    assert!(
        !table.contains("9999") && !table.contains("8087"),
        "{table}"
    );
    assert!(table.contains("8086"), "{table}");
    assert!(
        agent
            .ipam()
            .addresses_of(&ghost())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        agent
            .ipam()
            .addresses_of(&gone.request.handle())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(agent.endpoints().await.unwrap().len(), 2);
    assert_healthy(&agent, &[&ep1, &ep2]).await;
    assert!(agent.status().await.ready);
    assert_eq!(agent.reconcile().await.unwrap(), ReconcileReport::default());
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collect_keeps_only_the_valid_endpoints() {
    require_root();
    let host = Netns::new("host");
    let agent = setup(&host).await;
    let ns: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("g{i}"))).collect();
    let mut eps = Vec::new();
    for (i, n) in ns.iter().enumerate() {
        let port = (8090 + i) as u32;
        eps.push(
            attach(
                &agent,
                "b",
                &format!("g{i}"),
                n,
                &[(Protocol::Tcp, port, 80)],
            )
            .await,
        );
    }
    eps.push(attach(&agent, "r", "g3", &Netns::new("g3"), &[]).await);
    host.ip("link add tr0123456789abd type veth peer name orphanpeer");
    agent.ipam().allocate("b.v4", &ghost()).await.unwrap();

    let valid = [eps[0].request.handle()];
    let report = agent.garbage_collect(None, &valid).await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    let mut removed = report.removed.clone();
    removed.sort();
    let mut want: Vec<Handle> = eps[1..].iter().map(|e| e.request.handle()).collect();
    want.push(ghost());
    want.sort();
    assert_eq!(removed, want);
    let links = host.ip("-o link show");
    assert!(links.contains(eps[0].host_ifname.as_str()));
    assert_eq!(links.matches(": tr").count(), 1, "{links}");
    let table = host.exec_ok(&["nft", "list", "table", "inet", "trellis"]);
    assert!(table.contains("8090") && !table.contains("8091"), "{table}");
    assert_eq!(agent.endpoints().await.unwrap().len(), 1);
    assert_healthy(&agent, &[&eps[0]]).await;
    reach(&host, &eps[0], &ns[0]);
}

/// Two nodes (each a host namespace with its own agent) share one store, as
/// the store and IPAM are built for: each sees, reconciles and collects only
/// its own endpoints, and each may publish the same host port.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_store_each_keep_to_their_own() {
    require_root();
    let store: std::sync::Arc<dyn trellis_store::KvStore> =
        std::sync::Arc::new(trellis_store::MemoryStore::new());
    let (h1, h2) = (Netns::new("h1"), Netns::new("h2"));
    for (h, addr) in [(&h1, "192.0.2.1/32"), (&h2, "192.0.2.2/32")] {
        // A host address to reach containers from (a routed port's own
        // gateway address is host-scoped).
        h.ip("link set lo up");
        h.ip(&format!("addr add {addr} dev lo"));
    }
    let a1 = util::node_on(&h1, store.clone(), "node1").await;
    let a2 = util::node_on(&h2, store.clone(), "node2").await;
    let spec = util::routed_spec("r", &["10.246.0.0/16"]);
    a1.create_network(spec).await.unwrap();
    // node2 learns the definition from the store, and plumbs it when it
    // reconciles.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while a2.network("r").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "node2 never saw network r"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    a2.reconcile().await.unwrap();

    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let port = [(Protocol::Tcp, 8088, 80)];
    let ep1 = attach(&a1, "r", "c1", &c1, &port).await;
    let ep2 = attach(&a2, "r", "c2", &c2, &port).await;
    assert_ne!(ep1.addresses, ep2.addresses);
    let mine =
        |eps: Vec<Endpoint>| -> Vec<Handle> { eps.iter().map(|e| e.request.handle()).collect() };
    assert_eq!(
        mine(a1.endpoints().await.unwrap()),
        vec![ep1.request.handle()]
    );
    assert_eq!(
        mine(a2.endpoints().await.unwrap()),
        vec![ep2.request.handle()]
    );
    let (b1, b2) = (
        a1.ipam().owned_blocks("r.v4").await.unwrap(),
        a2.ipam().owned_blocks("r.v4").await.unwrap(),
    );
    assert!(
        !b1.is_empty() && !b2.is_empty() && b1 != b2,
        "{b1:?} {b2:?}"
    );

    // node1's reconcile and GC leave node2's endpoint alone (before, node1
    // would have plumbed c2 into its own host, and GC would have detached it).
    let r = a1.reconcile().await.unwrap();
    assert_eq!(r, ReconcileReport::default());
    let gc = a1
        .garbage_collect(None, &[ep1.request.handle()])
        .await
        .unwrap();
    assert!(gc.removed.is_empty() && gc.errors.is_empty(), "{gc:?}");
    assert_eq!(
        mine(a2.endpoints().await.unwrap()),
        vec![ep2.request.handle()]
    );
    assert_healthy(&a2, &[&ep2]).await;
    assert_healthy(&a1, &[&ep1]).await;
    assert!(!h1.ip("-o link show").contains(ep2.host_ifname.as_str()));
    reach(&h1, &ep1, &c1);
    reach(&h2, &ep2, &c2);

    // node2's GC with nothing valid removes its own endpoint only.
    let gc = a2.garbage_collect(None, &[]).await.unwrap();
    assert_eq!(gc.removed.first(), Some(&ep2.request.handle()), "{gc:?}");
    assert_eq!(
        mine(a1.endpoints().await.unwrap()),
        vec![ep1.request.handle()]
    );
    assert_healthy(&a1, &[&ep1]).await;

    // node2 has no endpoint left, node1 has one: the shared definition is
    // not deleted under it.
    let e = a2.delete_network("r").await.unwrap_err();
    assert!(e.to_string().contains("endpoint"), "{e}");
    assert!(a2.network("r").is_ok() && a1.network("r").is_ok());
}

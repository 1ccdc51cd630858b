//! Garbage collection scoped to one network (CNI GC runs once per network
//! configuration): only that network's endpoints are judged by the list;
//! other networks' stay even though not listed.

use crate::util::{agent, bridge_network, container, host, request, routed_network};
use std::collections::BTreeSet;
use trellis_agent::{Agent, ErrorClass, NetworkMode, NetworkSpec};
use trellis_link::Ns;
use trellis_types::{Handle, IfName, NetnsPath, NetworkName};

fn name(s: &str) -> NetworkName {
    s.parse().unwrap()
}

fn db_network() -> NetworkSpec {
    NetworkSpec {
        name: name("db"),
        mode: NetworkMode::Bridge {
            bridge: IfName::parse("bridge", "trellis1").unwrap(),
        },
        subnets: vec!["192.168.170.0/24".parse().unwrap()],
        ..bridge_network()
    }
}

async fn handles(agent: &Agent) -> BTreeSet<String> {
    let eps = agent.endpoints().await.unwrap();
    eps.iter().map(|e| e.request.handle().to_string()).collect()
}

fn shown(h: &[Handle]) -> BTreeSet<String> {
    h.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn a_collection_scoped_to_a_network_leaves_other_networks_endpoints() {
    let kernel = host();
    let (c1, c2, c3) = (
        container(&kernel, "/run/netns/c1").await,
        container(&kernel, "/run/netns/c2").await,
        container(&kernel, "/run/netns/c3").await,
    );
    let agent = agent(&kernel).await;
    agent.create_network(bridge_network()).await.unwrap();
    agent.create_network(routed_network()).await.unwrap();
    let c1_web = agent.attach(request("web", "c1", &c1, None)).await.unwrap();
    let c2_web = agent.attach(request("web", "c2", &c2, None)).await.unwrap();
    let c3_pods = agent
        .attach(request("pods", "c3", &c3, None))
        .await
        .unwrap();
    // The same container on both networks.
    let mut second = request("pods", "c1", &c1, None);
    second.ifname = IfName::parse("ifname", "eth1").unwrap();
    let c1_pods = agent.attach(second).await.unwrap();

    // web: c1/eth0 is kept, c2/eth0 goes; pods' endpoints are not listed
    // and stay.
    let keep = [c1_web.request.handle()];
    let gc = agent
        .garbage_collect(Some(&name("web")), &keep)
        .await
        .unwrap();
    assert!(gc.errors.is_empty(), "{gc:?}");
    assert_eq!(shown(&gc.removed), shown(&[c2_web.request.handle()]));
    assert_eq!(
        handles(&agent).await,
        BTreeSet::from(["c1/eth0".into(), "c1/eth1".into(), "c3/eth0".into()])
    );
    assert!(
        kernel
            .link(&Ns::Host, c2_web.host_ifname.as_str())
            .is_none()
    );
    // (c1's second interface is not checked: both of its networks want the
    // container's default route, and one of them has it.)
    for ep in [&c1_web, &c3_pods] {
        let h = ep.request.handle();
        let problems = agent.check(&h.container, &h.ifname).await.unwrap();
        assert!(problems.is_empty(), "{h}: {problems:?}");
    }
    assert!(
        kernel
            .link(&Ns::Host, c1_pods.host_ifname.as_str())
            .is_some()
    );

    // pods with nothing to keep: both of its endpoints go, web's stays.
    let gc = agent
        .garbage_collect(Some(&name("pods")), &[])
        .await
        .unwrap();
    assert!(gc.errors.is_empty(), "{gc:?}");
    let want = [c1_pods.request.handle(), c3_pods.request.handle()];
    assert_eq!(shown(&gc.removed), shown(&want));
    assert_eq!(handles(&agent).await, BTreeSet::from(["c1/eth0".into()]));
    let eth0 = kernel.link(&Ns::Path(c1.clone()), "eth0");
    assert!(eth0.is_some(), "c1's web interface was taken");
    assert!(kernel.link(&Ns::Path(c1), "eth1").is_none());

    // Unscoped, as before: everything not listed goes.
    let gc = agent.garbage_collect(None, &[]).await.unwrap();
    assert_eq!(shown(&gc.removed), shown(&keep));
    assert!(agent.endpoints().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_scoped_collection_reports_the_leaked_allocations_of_its_network_only() {
    let kernel = host();
    let agent = agent(&kernel).await;
    agent.create_network(bridge_network()).await.unwrap();
    agent.create_network(db_network()).await.unwrap();
    // Addresses no record explains (an attach that crashed half-way), one
    // in each network's pool.
    let netns = NetnsPath::parse("netns", "/run/netns/x").unwrap();
    let ghost = |id: &str| request("web", id, &netns, None).handle();
    let ip = |s: &str| s.parse().unwrap();
    let ipam = agent.ipam();
    let (in_web, in_db) = (ghost("ghostweb"), ghost("ghostdb"));
    ipam.allocate_specific("web.v4", &in_web, ip("192.168.169.9"))
        .await
        .unwrap();
    ipam.allocate_specific("db.v4", &in_db, ip("192.168.170.9"))
        .await
        .unwrap();

    let gc = agent.garbage_collect(Some(&name("db")), &[]).await.unwrap();
    assert!(gc.errors.is_empty(), "{gc:?}");
    assert_eq!(shown(&gc.removed), shown(std::slice::from_ref(&in_db)));
    // The convergence covers the node: web's leak is released too (no
    // record explains it, whatever the scope), but is not db's to report.
    for pool in ["web.v4", "db.v4"] {
        assert_eq!(ipam.usage(pool).await.unwrap().used, 0, "{pool}");
    }
}

#[tokio::test]
async fn a_collection_scoped_to_an_unknown_network_is_not_found_and_removes_nothing() {
    let kernel = host();
    let c1 = container(&kernel, "/run/netns/c1").await;
    let agent = agent(&kernel).await;
    agent.create_network(bridge_network()).await.unwrap();
    agent.attach(request("web", "c1", &c1, None)).await.unwrap();
    let before = kernel.snapshot();
    let e = agent
        .garbage_collect(Some(&name("nope")), &[])
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::NotFound, "{e}");
    assert!(e.to_string().contains("\"nope\""), "{e}");
    assert_eq!(handles(&agent).await, BTreeSet::from(["c1/eth0".into()]));
    assert_eq!(kernel.snapshot(), before);
}

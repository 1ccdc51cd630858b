//! The seed's Calico section, reproduced: routed pods with a /32 (/128), the
//! link-local gateway 169.254.1.1 answered by proxy-ARP at ee:ee:ee:ee:ee:ee,
//! a host route per pod, outgoing NAT for pool traffic leaving the pools —
//! built by trellis inside a lab of namespaces and proven with real traffic.

mod util;

use std::net::{IpAddr, SocketAddr};
use trellis_agent::Endpoint;
use trellis_testlab::Snapshot;
use trellis_testlab::seed::{EXTERNAL_IP, HOST_IP, HOST_IP6, SeedLab};
use trellis_testlab::{Netns, TcpServer, require_root, seen_ip, tcp_request};
use util::{agent_in, attach, routed_spec};

fn addr(ep: &Endpoint, v6: bool) -> IpAddr {
    ep.addresses
        .iter()
        .map(|a| a.addr())
        .find(|a| a.is_ipv6() == v6)
        .expect("an address of that family")
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_calico_routed_pods_end_to_end() {
    require_root();
    let lab = SeedLab::build();
    let before = Snapshot::take(&lab.host);
    let agent = agent_in(&lab.host).await;
    let spec = routed_spec("calico", &["10.244.0.0/16", "fd00:10:244::/56"]);
    agent.create_network(spec).await.unwrap();
    let (p1, p2) = (Netns::new("p1"), Netns::new("p2"));
    let ep1 = attach(&agent, "calico", "p1", &p1, &[]).await;
    let ep2 = attach(&agent, "calico", "p2", &p2, &[]).await;
    let (ip1, ip2) = (addr(&ep1, false), addr(&ep2, false));
    assert_eq!(ep1.addresses[0].prefix_len(), 32, "{:?}", ep1.addresses);

    // The pod's view: a /32, the gateway on the link, the default route via it.
    let routes = p1.ip("route show");
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0"),
        "{routes}"
    );
    assert!(routes.contains("169.254.1.1 dev eth0"), "{routes}");
    assert!(p1.ip("addr show eth0").contains(&format!("{ip1}/32")));

    // A routed pod reaches the external server; with outgoing NAT the server
    // sees the host.
    let ext = lab.external_server(80);
    let reply = tcp_request(&p1, ext.addr()).expect("p1 reaches the external server");
    assert_eq!(seen_ip(&reply), IpAddr::V4(HOST_IP));

    // Its neighbour table shows 169.254.1.1 at ee:ee:ee:ee:ee:ee, answered by
    // proxy-ARP on the host end, whose proxy_arp reads 1.
    let neigh = p1.ip("neigh show 169.254.1.1");
    assert!(neigh.contains("ee:ee:ee:ee:ee:ee"), "{neigh}");
    let knob = format!("net.ipv4.conf.{}.proxy_arp", ep1.host_ifname);
    assert_eq!(lab.host.read_sysctl(&knob), "1");

    // Two routed pods on one host reach each other, without NAT.
    let web2 = TcpServer::start(&p2, SocketAddr::new(ip2, 80), "p2");
    let reply = tcp_request(&p1, web2.addr()).expect("p1 reaches p2");
    assert_eq!(seen_ip(&reply), ip1);

    // Pod ↔ host.
    let on_host = TcpServer::start(&lab.host, (HOST_IP, 9000).into(), "host");
    let reply = tcp_request(&p1, on_host.addr()).expect("p1 reaches the host");
    assert_eq!(seen_ip(&reply), ip1);
    let reply = tcp_request(&lab.host, web2.addr()).expect("the host reaches p2");
    assert!(reply.starts_with("p2 "), "{reply}");

    // IPv6 pods reach each other and the external host.
    let (ip1v6, ip2v6) = (addr(&ep1, true), addr(&ep2, true));
    let web2v6 = TcpServer::start(&p2, SocketAddr::new(ip2v6, 80), "p2v6");
    let reply = tcp_request(&p1, web2v6.addr()).expect("p1 reaches p2 over IPv6");
    assert_eq!(seen_ip(&reply), ip1v6);
    let ext6 = lab.external_server6(80);
    let reply = tcp_request(&p1, ext6.addr()).expect("p1 reaches the external server over IPv6");
    assert_eq!(seen_ip(&reply), IpAddr::V6(HOST_IP6));

    // Removing a pod leaves nothing of it: interface, routes, neighbours, IPAM.
    drop((web2, web2v6));
    for (ep, ns) in [(&ep2, &p2), (&ep1, &p1)] {
        let h = ep.request.handle();
        agent.detach(&h.container, &h.ifname).await.unwrap();
        agent.settle().await;
        let host_if = ep.host_ifname.as_str();
        assert!(!lab.host.ip("-o link show").contains(host_if));
        assert!(!lab.host.ip("route show table all").contains(host_if));
        assert!(!lab.host.ip("neigh show proxy").contains(host_if));
        assert!(!lab.host.ip("neigh show").contains(host_if));
        assert!(agent.ipam().addresses_of(&h).await.unwrap().is_empty());
        assert_eq!(ns.ip("-o link show").lines().count(), 1, "only lo is left");
    }
    // The owned blocks' blackholes stay while the network exists…
    assert!(
        lab.host
            .ip("route show proto 116")
            .contains("blackhole 10.244.")
    );
    agent.delete_network("calico").await.unwrap();
    // …and go with it: nothing of trellis is left in the host namespace.
    assert_eq!(before, Snapshot::take(&lab.host));
    assert_ne!(ip1, IpAddr::V4(EXTERNAL_IP));
}

/// Calico users' pitfall: the kernel answers proxy-ARP only for targets it has
/// a route to, so a host without a default route used to leave pods unable to
/// resolve 169.254.1.1. trellis's routed ports answer anyway.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_pods_work_on_a_host_without_a_default_route() {
    require_root();
    let lab = SeedLab::build();
    lab.host.ip("route del default");
    lab.host.ip("-6 route del default");
    assert!(!lab.host.ip("route show").contains("default"));
    let agent = agent_in(&lab.host).await;
    let spec = routed_spec("calico", &["10.244.0.0/16", "fd00:10:244::/56"]);
    agent.create_network(spec).await.unwrap();
    let (p1, p2) = (Netns::new("p1"), Netns::new("p2"));
    let ep1 = attach(&agent, "calico", "p1", &p1, &[]).await;
    let ep2 = attach(&agent, "calico", "p2", &p2, &[]).await;

    let on_host = TcpServer::start(&lab.host, (HOST_IP, 9000).into(), "host");
    let reply = tcp_request(&p1, on_host.addr()).expect("p1 reaches the host");
    assert_eq!(seen_ip(&reply), addr(&ep1, false));
    let neigh = p1.ip("neigh show 169.254.1.1");
    assert!(neigh.contains("ee:ee:ee:ee:ee:ee"), "{neigh}");
    for v6 in [false, true] {
        let web = TcpServer::start(&p2, SocketAddr::new(addr(&ep2, v6), 80), "p2");
        let reply = tcp_request(&p1, web.addr()).expect("p1 reaches p2");
        assert_eq!(seen_ip(&reply), addr(&ep1, v6));
    }
    for ep in [&ep1, &ep2] {
        let h = ep.request.handle();
        agent.detach(&h.container, &h.ifname).await.unwrap();
    }
    agent.delete_network("calico").await.unwrap();
}

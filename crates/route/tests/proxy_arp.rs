//! The seed's proxy-ARP lab, and the proxy-ARP pitfall routed mode works
//! around: Linux answers a proxy-ARP request only for a target it has a
//! unicast route to through another interface (`arp_process` →
//! `arp_fwd_proxy`).

use crate::util::{HOST_IP, RoutedLab};
use std::net::SocketAddr;
use trellis_route::*;
use trellis_testlab::{Netns, TcpServer, seen_ip, tcp_request};

/// The seed's lab: client 100.64.0.235/24 with a default gateway that does
/// not exist (100.0.0.1), a router with proxy-ARP on its client side
/// (100.64.0.1/24) and 100.64.200.1/24 on the server side, and the server
/// 100.64.200.236/24.
struct SeedProxyArpLab {
    client: Netns,
    router: Netns,
    server: Netns,
}

impl SeedProxyArpLab {
    fn build() -> Self {
        trellis_testlab::require_root();
        let (client, router, server) = (Netns::new("cli"), Netns::new("rtr"), Netns::new("srv"));
        router.veth_to("e1", &client, "eth0");
        router.veth_to("e2", &server, "eth0");
        client.ip("addr add 100.64.0.235/24 dev eth0");
        client.ip("route add default via 100.0.0.1 dev eth0 onlink");
        router.ip("addr add 100.64.0.1/24 dev e1");
        router.ip("addr add 100.64.200.1/24 dev e2");
        router.sysctl("net.ipv4.ip_forward", "1");
        router.sysctl("net.ipv4.conf.e1.proxy_arp", "1");
        router.sysctl("net.ipv4.neigh.e1.proxy_delay", "0");
        // The seed's router has a route to everything (its uplink); without
        // one covering 100.0.0.1 it would not proxy for it (the pitfall).
        router.ip("route add default via 100.64.200.236");
        server.ip("addr add 100.64.200.236/24 dev eth0");
        server.ip("route add default via 100.64.200.1");
        SeedProxyArpLab {
            client,
            router,
            server,
        }
    }
}

fn mac_of(ns: &Netns, dev: &str) -> String {
    let shown = ns.ip(&format!("link show {dev}"));
    let mut words = shown.split_whitespace();
    words.find(|w| *w == "link/ether");
    words.next().expect("a MAC").to_owned()
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn seed_lab_client_reaches_the_server_through_a_gateway_that_does_not_exist() {
    let lab = SeedProxyArpLab::build();
    let server = TcpServer::start(&lab.server, "100.64.200.236:7301".parse().unwrap(), "srv");
    let reply = tcp_request(&lab.client, server.addr()).expect("client → server");
    assert_eq!(seen_ip(&reply).to_string(), "100.64.0.235", "{reply}");
    let neigh = lab.client.ip("neigh show 100.0.0.1 dev eth0");
    let router_mac = mac_of(&lab.router, "e1");
    assert!(
        neigh.contains(&format!("lladdr {router_mac}")),
        "100.0.0.1 is at the router's MAC {router_mac}: {neigh}"
    );

    lab.router.sysctl("net.ipv4.conf.e1.proxy_arp", "0");
    lab.client.ip("neigh flush dev eth0");
    tcp_request(&lab.client, server.addr()).expect_err("no proxy-ARP, no gateway");
    let neigh = lab.client.ip("neigh show 100.0.0.1 dev eth0");
    assert!(!neigh.contains("lladdr"), "{neigh}");
}

fn host_server(lab: &RoutedLab, port: u16) -> TcpServer {
    TcpServer::start(
        &lab.host,
        SocketAddr::new(HOST_IP.parse().unwrap(), port),
        "host",
    )
}

fn gateway_resolved(pod: &Netns) -> bool {
    let neigh = pod.ip("neigh show 169.254.1.1 dev eth0");
    neigh.contains("lladdr ee:ee:ee:ee:ee:ee")
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn a_host_without_a_default_route_answers_for_169_254_1_1_all_the_same() {
    let lab = RoutedLab::new().await;
    let pod = Netns::new("pod");
    let port = "tr00000000000c1";
    let info = lab.attach(port, &pod, &["10.8.0.9"]).await;
    let server = host_server(&lab, 7302);
    tcp_request(&pod, server.addr()).expect("trellis's port answers");
    assert!(gateway_resolved(&pod));

    // Calico's port: the same knobs, minus the gateway address on the port.
    // Removing a device's last IPv4 address makes the kernel flush its IPv4
    // routes and neighbours (`fib_inetaddr_event` → `fib_disable_ip`), so
    // the container's host route and neighbour are put back.
    lab.host.ip(&format!("addr del 169.254.1.1/32 dev {port}"));
    let ep = RoutedEndpoint {
        host_if: crate::util::ifn(port),
        host_ifindex: info.host_ifindex,
        addresses: vec!["10.8.0.9".parse().unwrap()],
        container_mac: info.container_mac,
    };
    lab.routes
        .add_routes(&Ns::Host, &ep.host_routes())
        .await
        .unwrap();
    lab.routes
        .add_neighbours(&Ns::Host, &ep.neighbours())
        .await
        .unwrap();
    pod.ip("neigh flush dev eth0");
    tcp_request(&pod, server.addr()).expect_err("proxy-ARP alone: no route to 169.254.1.1");
    assert!(!gateway_resolved(&pod), "{}", pod.ip("neigh"));

    // The kernel's rule, shown: once the host has a route covering
    // 169.254.1.1 through another interface, proxy-ARP answers.
    let _upstream = lab.add_upstream();
    pod.ip("neigh flush dev eth0");
    tcp_request(&pod, server.addr()).expect("proxy-ARP with a default route");
    assert!(gateway_resolved(&pod));

    // trellis's fix does not need that route: put the port back as trellis
    // makes it and take the default route away again.
    lab.host.ip("route del default");
    lab.routes.setup_routed_host(&ep).await.unwrap();
    pod.ip("neigh flush dev eth0");
    tcp_request(&pod, server.addr()).expect("answered without any route to 169.254.1.1");
    assert!(gateway_resolved(&pod));
    // Even where arp_ignore=1 is set host-wide (kube-proxy's IPVS mode): the
    // gateway is an address of the incoming interface.
    lab.host.sysctl("net.ipv4.conf.all.arp_ignore", "1");
    pod.ip("neigh flush dev eth0");
    tcp_request(&pod, server.addr()).expect("answered under arp_ignore=1");
    assert!(gateway_resolved(&pod));
}

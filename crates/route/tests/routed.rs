//! Routed mode (Calico's model) in namespaces: pods with /32s behind a host
//! that answers for `169.254.1.1` — with no default route on the host.

use crate::util::{HOST_IP, HOST_IP6, RoutedLab, ifn, read_net_sysctl};
use std::net::SocketAddr;
use std::time::Instant;
use trellis_link::Links;
use trellis_route::*;
use trellis_testlab::{Netns, TcpServer, seen_ip, tcp_request};

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn two_routed_pods_reach_each_other_and_the_host_without_a_default_route() {
    let lab = RoutedLab::new().await;
    let (a, b) = (Netns::new("pa"), Netns::new("pb"));
    let a_veth = lab.attach("tr00000000000a1", &a, &["10.8.0.2"]).await;
    lab.attach("tr00000000000b1", &b, &["10.8.0.3"]).await;
    assert!(
        !lab.host.ip("route").contains("default"),
        "no default route"
    );

    let on_b = TcpServer::start(&b, sock("10.8.0.3", 7101), "b");
    let reply = tcp_request(&a, on_b.addr()).expect("pod a → pod b");
    assert_eq!(seen_ip(&reply).to_string(), "10.8.0.2", "{reply}");
    let on_host = TcpServer::start(&lab.host, sock(HOST_IP, 7102), "host");
    let reply = tcp_request(&a, on_host.addr()).expect("pod → host");
    assert_eq!(seen_ip(&reply).to_string(), "10.8.0.2", "{reply}");
    let on_a = TcpServer::start(&a, sock("10.8.0.2", 7103), "a");
    let reply = tcp_request(&lab.host, on_a.addr()).expect("host → pod");
    assert_eq!(
        seen_ip(&reply).to_string(),
        HOST_IP,
        "the host talks from its own address, not the scope-host gateway: {reply}"
    );

    let neigh = a.ip("neigh show 169.254.1.1 dev eth0");
    assert!(neigh.contains("lladdr ee:ee:ee:ee:ee:ee"), "{neigh}");
    let shown = a.ip("route");
    assert!(
        shown.contains("default via 169.254.1.1 dev eth0 proto 116")
            && shown.contains("169.254.1.1 dev eth0 proto 116 scope link"),
        "{shown}"
    );
    assert!(a.ip("addr show dev eth0").contains("inet 10.8.0.2/32"));
    let port = "tr00000000000a1";
    for (key, want) in [
        (format!("ipv4/conf/{port}/proxy_arp"), "1"),
        (format!("ipv4/conf/{port}/forwarding"), "1"),
        (format!("ipv4/neigh/{port}/proxy_delay"), "0"),
        ("ipv4/ip_forward".to_owned(), "1"),
    ] {
        assert_eq!(read_net_sysctl(&lab.host, &key), want, "{key}");
    }
    let host_routes = lab.host.ip("route show proto 116");
    assert!(
        host_routes.contains(&format!("10.8.0.2 dev {port} scope link")),
        "{host_routes}"
    );
    let host_neigh = lab.host.ip(&format!("neigh show dev {port}"));
    assert!(host_neigh.contains("10.8.0.2 lladdr") && host_neigh.contains("PERMANENT"));
    // What `check` reads back: the permanent entry, with the container's MAC
    // (beside whatever else the kernel holds, such as IPv6 multicast).
    let listed = lab
        .routes
        .list_neighbours(&Ns::Host, &ifn(port))
        .await
        .unwrap();
    let want = Neighbour {
        ip: "10.8.0.2".parse().unwrap(),
        mac: a_veth.container_mac,
        dev: ifn(port),
    };
    assert!(listed.contains(&want), "{listed:?}");
    let link = lab.host.ip(&format!("link show {port}"));
    assert!(link.contains("link/ether ee:ee:ee:ee:ee:ee"), "{link}");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn dual_stack_pods_talk_over_ipv6_at_once_without_waiting_for_dad() {
    let lab = RoutedLab::new().await;
    let (a, b) = (Netns::new("pa"), Netns::new("pb"));
    lab.attach("tr00000000000a2", &a, &["10.8.0.2", "fd00:8::2"])
        .await;
    let on_host = TcpServer::start(&lab.host, sock(HOST_IP6, 7201), "host");
    let t = Instant::now();
    lab.attach("tr00000000000b2", &b, &["10.8.0.3", "fd00:8::3"])
        .await;
    // Right after the attach, before any traffic: with DAD the pod's address
    // and the host port's gateway would be "tentative" (unusable) for ≥ 1 s.
    // Checked by state, not by a stopwatch, which a loaded machine defeats.
    let pod = b.ip("-6 addr show dev eth0 scope global");
    let port = lab.host.ip("-6 addr show dev tr00000000000b2");
    for (what, addrs) in [("pod", &pod), ("host port", &port)] {
        assert!(
            addrs.contains("inet6 "),
            "{what} has no IPv6 address: {addrs}"
        );
        assert!(
            !addrs.contains("tentative"),
            "{what} waits for DAD: {addrs}"
        );
    }
    let reply = tcp_request(&b, on_host.addr()).expect("pod b → host over IPv6");
    assert_eq!(seen_ip(&reply).to_string(), "fd00:8::3", "{reply}");
    eprintln!(
        "dual-stack attach + first IPv6 connection: {:?}",
        t.elapsed()
    );

    let on_a = TcpServer::start(&a, sock("fd00:8::2", 7202), "a");
    let reply = tcp_request(&b, on_a.addr()).expect("pod b → pod a over IPv6");
    assert_eq!(seen_ip(&reply).to_string(), "fd00:8::3", "{reply}");
    let on_a4 = TcpServer::start(&a, sock("10.8.0.2", 7203), "a");
    let reply = tcp_request(&b, on_a4.addr()).expect("and over IPv4");
    assert_eq!(seen_ip(&reply).to_string(), "10.8.0.3", "{reply}");

    let addrs = lab.host.ip("-6 addr show dev tr00000000000b2");
    assert!(
        addrs.contains("inet6 fe80::ecee:eeff:feee:eeee/64 scope link nodad")
            && addrs.matches("inet6").count() == 1,
        "only the gateway, no autoconfigured link-local: {addrs}"
    );
    assert_eq!(
        read_net_sysctl(&lab.host, "ipv6/conf/tr00000000000b2/accept_ra"),
        "0"
    );
    let neigh = b.ip("-6 neigh show dev eth0");
    assert!(
        neigh.contains("fe80::ecee:eeff:feee:eeee lladdr ee:ee:ee:ee:ee:ee router"),
        "{neigh}"
    );
    let routes = b.ip("-6 route");
    assert!(
        routes.contains("default via fe80::ecee:eeff:feee:eeee dev eth0 proto 116"),
        "{routes}"
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn deleting_the_veth_leaves_no_route_neighbour_or_interface() {
    let lab = RoutedLab::new().await;
    let a = Netns::new("pa");
    let port = "tr00000000000a3";
    let info = lab.attach(port, &a, &["10.8.0.2", "fd00:8::2"]).await;
    lab.routes
        .setup_routed_host(&RoutedEndpoint {
            host_if: ifn(port),
            host_ifindex: info.host_ifindex,
            addresses: vec!["10.8.0.2".parse().unwrap(), "fd00:8::2".parse().unwrap()],
            container_mac: info.container_mac,
        })
        .await
        .expect("setting up the host side twice is a no-op");
    assert_eq!(lab.routes.list_routes(&Ns::Host).await.unwrap().len(), 2);

    lab.links.delete_link(&ifn(port)).await.unwrap();
    assert!(lab.routes.list_routes(&Ns::Host).await.unwrap().is_empty());
    assert_eq!(lab.host.ip("route show proto 116"), "");
    assert_eq!(lab.host.ip("-6 route show proto 116"), "");
    for family in ["-4", "-6"] {
        let neigh = lab.host.ip(&format!("{family} neigh show"));
        assert!(
            !neigh.contains("10.8.0.2") && !neigh.contains("fd00:8::2"),
            "{neigh}"
        );
    }
    assert!(!lab.links.link_exists(&Ns::Host, &ifn(port)).await.unwrap());
    assert!(!lab.host.ip("addr").contains("169.254.1.1"));
}

//! Privileged tests of trellis-route: every one builds its own namespaces (a
//! "host" with a bridge, and "containers") and never touches the machine's own.

mod blocks;
mod proxy_arp;
mod routed;
mod util;

use std::time::{Duration, Instant};
use trellis_link::{ContainerIface, LinkRef, Links, VethSpec, format_mac};
use trellis_route::*;
use trellis_testlab::{Netns, TcpServer, seen_ip, tcp_request};
use util::{Lab, at, ifn, nspath};

fn default_route() -> Route {
    Route::default_via("192.168.169.1".parse().unwrap(), ifn("eth0"))
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn container_default_route_via_the_bridge_gateway_reaches_beyond_the_subnet() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    lab.attach("tr0000000000001", &c, "192.168.169.2/24").await;
    let ns = at(&c);
    lab.routes
        .add_routes(&ns, &[default_route()])
        .await
        .unwrap();
    lab.routes
        .add_routes(&ns, &[default_route()])
        .await
        .expect("adding twice is a no-op");
    let shown = c.ip("route");
    assert!(
        shown.contains("default via 192.168.169.1 dev eth0 proto 116"),
        "{shown}"
    );
    assert_eq!(shown.matches("default").count(), 1, "{shown}");

    // An address on the host beyond the container's subnet: reachable only
    // through the default route.
    lab.host.ip("addr add 10.250.0.1/32 dev lo");
    let server = TcpServer::start(&lab.host, "10.250.0.1:7071".parse().unwrap(), "host");
    let reply = tcp_request(&c, server.addr()).unwrap();
    assert_eq!(seen_ip(&reply).to_string(), "192.168.169.2", "{reply}");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn only_trellis_routes_are_listed_and_deletes_are_idempotent() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    lab.attach("tr0000000000002", &c, "192.168.169.3/24").await;
    let ns = at(&c);
    let ours = vec![
        default_route(),
        Route::blackhole("10.8.0.0/26".parse().unwrap()),
    ];
    lab.routes.add_routes(&ns, &ours).await.unwrap();
    c.ip("route add 10.99.0.0/16 via 192.168.169.1");
    let mut listed = lab.routes.list_routes(&ns).await.unwrap();
    listed.sort_by_key(|r| r.to_string());
    assert_eq!(
        listed,
        vec![
            default_route(),
            Route::blackhole("10.8.0.0/26".parse().unwrap())
        ]
    );

    lab.routes.delete_routes(&ns, &ours).await.unwrap();
    lab.routes
        .delete_routes(&ns, &ours)
        .await
        .expect("deleting twice is a no-op");
    assert!(lab.routes.list_routes(&ns).await.unwrap().is_empty());
    let shown = c.ip("route");
    assert!(
        shown.contains("10.99.0.0/16") && !shown.contains("default"),
        "{shown}"
    );
    // Someone else's route of the same shape is not deleted by trellis.
    c.ip("route add default via 192.168.169.1");
    lab.routes
        .delete_routes(&ns, &[default_route()])
        .await
        .unwrap();
    assert!(
        c.ip("route").contains("default via 192.168.169.1"),
        "protocol is part of the match"
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn routed_mode_shapes_host_routes_and_permanent_neighbours() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    let spec = VethSpec {
        host_name: ifn("tr0000000000003"),
        container_netns: nspath(&c),
        container_name: ifn("eth0"),
        mtu: None,
        container_mac: None,
        host_mac: Some([0xee; 6]),
        master: None,
        host_ipv6: true,
    };
    let info = lab.links.create_veth(&spec).await.unwrap();
    let iface = ContainerIface {
        netns: nspath(&c),
        link: LinkRef::Index(info.container_ifindex),
        addresses: vec!["10.8.0.5/32".parse().unwrap()],
        ipv6: true,
    };
    lab.links.setup_container_iface(&iface).await.unwrap();
    let gw = "169.254.1.1".parse().unwrap();
    let inside = [
        Route::on_link("169.254.1.1/32".parse().unwrap(), ifn("eth0")),
        Route::default_via(gw, ifn("eth0")),
    ];
    lab.routes
        .add_routes(&at(&c), &inside)
        .await
        .expect("scope link gateway first, then default, in one call");
    let host_side = [
        Route::on_link("10.8.0.5/32".parse().unwrap(), ifn("tr0000000000003")),
        Route::blackhole("10.8.0.0/26".parse().unwrap()),
    ];
    lab.routes.add_routes(&Ns::Host, &host_side).await.unwrap();
    let shown = lab.host.ip("route");
    assert!(
        shown.contains("10.8.0.5 dev tr0000000000003 proto 116 scope link"),
        "{shown}"
    );
    assert!(shown.contains("blackhole 10.8.0.0/26 proto 116"), "{shown}");

    let neigh = Neighbour {
        ip: gw,
        mac: [0xee; 6],
        dev: ifn("eth0"),
    };
    lab.routes
        .add_neighbours(&at(&c), std::slice::from_ref(&neigh))
        .await
        .unwrap();
    lab.routes
        .add_neighbours(&at(&c), std::slice::from_ref(&neigh))
        .await
        .unwrap();
    let shown = c.ip("neigh show dev eth0");
    assert!(
        shown.contains("169.254.1.1 lladdr ee:ee:ee:ee:ee:ee PERMANENT"),
        "{shown}"
    );
    lab.routes
        .delete_neighbours(&at(&c), std::slice::from_ref(&neigh))
        .await
        .unwrap();
    lab.routes
        .delete_neighbours(&at(&c), std::slice::from_ref(&neigh))
        .await
        .unwrap();
    assert!(!c.ip("neigh show dev eth0").contains("169.254.1.1"));

    // Deleting the veth takes its routes; deleting them afterwards is still fine.
    lab.links.delete_link(&spec.host_name).await.unwrap();
    lab.routes
        .delete_routes(&Ns::Host, &host_side)
        .await
        .unwrap();
    assert!(lab.routes.list_routes(&Ns::Host).await.unwrap().is_empty());
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn neighbours_are_read_back_with_their_macs_in_any_namespace() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    lab.attach("tr0000000000004", &c, "192.168.169.4/24").await;
    let ours = Neighbour {
        ip: "192.168.169.50".parse().unwrap(),
        mac: [2, 0, 0, 0, 0, 0x50],
        dev: ifn("eth0"),
    };
    lab.routes
        .add_neighbours(&at(&c), std::slice::from_ref(&ours))
        .await
        .unwrap();
    // Someone else's entry is listed too: this is a read of the kernel.
    c.ip("neigh add fd00::51 lladdr 02:00:00:00:00:51 dev eth0");
    let mut seen = lab
        .routes
        .list_neighbours(&at(&c), &ifn("eth0"))
        .await
        .unwrap();
    // The kernel's own multicast entries (`ff02::16`, for MLD) come and go
    // with IPv6 timing; they are not what this test is about.
    seen.retain(|n| !n.ip.is_multicast());
    seen.sort_by_key(|n| n.ip);
    let theirs = Neighbour {
        ip: "fd00::51".parse().unwrap(),
        mac: [2, 0, 0, 0, 0, 0x51],
        dev: ifn("eth0"),
    };
    assert_eq!(seen, [ours, theirs]);

    // On the host, the container's entry as the host learnt it (ARP, for
    // a connection to the container), on the bridge and not on its port.
    let server = TcpServer::start(&c, "192.168.169.4:7072".parse().unwrap(), "ctr");
    tcp_request(&lab.host, server.addr()).unwrap();
    let on_host = lab
        .routes
        .list_neighbours(&Ns::Host, &ifn("br0"))
        .await
        .unwrap();
    let mac = c.ip("link show eth0");
    assert!(
        on_host
            .iter()
            .any(|n| n.ip.to_string() == "192.168.169.4" && mac.contains(&format_mac(&n.mac))),
        "{on_host:?} vs {mac}"
    );
    assert!(
        lab.routes
            .list_neighbours(&Ns::Host, &ifn("tr0000000000004"))
            .await
            .unwrap()
            .iter()
            .all(|n| n.ip.is_multicast()),
        "entries of the bridge are not its port's"
    );

    let gone = ifn("nope0");
    assert!(
        lab.routes
            .list_neighbours(&Ns::Host, &gone)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        lab.routes
            .list_neighbours(&at(&c), &gone)
            .await
            .unwrap()
            .is_empty()
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn missing_devices_and_bad_netns_are_typed_errors() {
    let lab = Lab::new().await;
    let err = lab
        .routes
        .add_routes(
            &Ns::Host,
            &[Route::on_link("10.0.0.0/24".parse().unwrap(), ifn("nope0"))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RouteError::NoSuchDevice { dev, .. } if dev == "nope0"),
        "{err}"
    );
    let bad = Ns::Path(
        trellis_types::NetnsPath::parse("netns", "/run/netns/trellis-does-not-exist").unwrap(),
    );
    let err = lab
        .routes
        .add_routes(&bad, &[default_route()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RouteError::Netns(NetnsError::Invalid(i)) if i.field == "netns"),
        "{err}"
    );
    let mut r = default_route();
    r.dst = "10.0.0.1/24".parse().unwrap();
    let err = lab
        .routes
        .add_routes(
            &Ns::Host,
            &[Route::blackhole("10.1.0.0/16".parse().unwrap()), r],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RouteError::Invalid(i) if i.field == "dst"),
        "{err}"
    );
    assert!(
        lab.routes.list_routes(&Ns::Host).await.unwrap().is_empty(),
        "checked before anything was sent"
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn twelve_attaches_each_get_their_default_route() {
    const N: usize = 12;
    let lab = Lab::new().await;
    let containers: Vec<Netns> = (0..N).map(|_| Netns::new("ctr")).collect();
    let mut took: Vec<Duration> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let t = Instant::now();
        lab.attach(
            &format!("tr{i:013x}"),
            c,
            &format!("192.168.169.{}/24", 10 + i),
        )
        .await;
        lab.routes
            .add_routes(&at(c), &[default_route()])
            .await
            .unwrap();
        took.push(t.elapsed());
    }
    took.sort();
    // Printed for the curious; speed is trellis-bench's business, not a test's.
    eprintln!(
        "attach (veth + container addresses/up + default route): p50 {:?}, max {:?}",
        took[N / 2],
        took[N - 1]
    );
    for c in &containers {
        let routes = c.ip("route show default");
        assert!(routes.contains("proto 116"), "{}: {routes}", c.name());
    }
}

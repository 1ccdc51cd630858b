//! The seed's Docker section, reproduced: a bridge network built by trellis's
//! library crates inside a lab of namespaces, every path of the blog post
//! exercised with real traffic, and nothing left behind afterwards.

mod util;

use std::net::{IpAddr, SocketAddr};
use trellis_testlab::Snapshot;
use trellis_testlab::seed::{EXTERNAL_IP, HOST_IP, PC_IP, SeedLab};
use trellis_testlab::{Netns, TcpServer, require_root, seen_ip, tcp_request};
use trellis_types::Protocol;
use util::{agent_in, attach, bridge_spec};

fn v4(ip: std::net::Ipv4Addr) -> IpAddr {
    IpAddr::V4(ip)
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_docker_bridge_network_end_to_end() {
    require_root();
    let lab = SeedLab::build();
    let before = Snapshot::take(&lab.host);
    let agent = agent_in(&lab.host).await;
    let net = agent
        .create_network(bridge_spec("seed", "192.168.169.0/24", "tdocker0"))
        .await
        .unwrap();
    assert_eq!(net.gateways[0], "192.168.169.1".parse::<IpAddr>().unwrap());

    let (c3, c4) = (Netns::new("c3"), Netns::new("c4"));
    let ep3 = attach(&agent, "seed", "c3", &c3, &[]).await;
    let ep4 = attach(&agent, "seed", "c4", &c4, &[(Protocol::Tcp, 8081, 80)]).await;
    let (ip3, ip4) = (ep3.addresses[0].addr(), ep4.addresses[0].addr());
    let web = TcpServer::start(&c4, SocketAddr::new(ip4, 80), "c4");
    let ext = lab.external_server(80);

    // Container → external server: the server sees the host's address (SNAT).
    let reply = tcp_request(&c3, ext.addr()).expect("c3 reaches the external server");
    assert_eq!(seen_ip(&reply), v4(HOST_IP), "{reply}");

    // PC → host:8081 reaches the container's :80, which sees the PC itself.
    let reply = tcp_request(&lab.pc, (HOST_IP, 8081).into()).expect("pc reaches host:8081");
    assert!(reply.starts_with("c4 "), "{reply}");
    assert_eq!(seen_ip(&reply), v4(PC_IP));

    // The host itself reaches its own published port.
    let reply = tcp_request(&lab.host, (HOST_IP, 8081).into()).expect("host reaches host:8081");
    assert!(reply.starts_with("c4 "), "{reply}");

    // The PC with the seed's static route reaches the container directly, no NAT.
    lab.pc_route_via_host("192.168.169.0/24");
    let reply = tcp_request(&lab.pc, web.addr()).expect("pc reaches the container directly");
    assert_eq!(seen_ip(&reply), v4(PC_IP));

    // Container ↔ container on one bridge: no NAT either.
    let reply = tcp_request(&c3, web.addr()).expect("c3 reaches c4");
    assert_eq!(seen_ip(&reply), ip3);

    // Hairpin: a container reaches a published port of its bridge through the
    // host's address; the reply comes back through the host (masqueraded).
    let reply = tcp_request(&c3, (HOST_IP, 8081).into()).expect("c3 reaches host:8081");
    assert!(reply.starts_with("c4 "), "{reply}");
    assert_eq!(seen_ip(&reply), net.gateways[0]);
    let reply = tcp_request(&c4, (HOST_IP, 8081).into()).expect("c4 reaches itself via host:8081");
    assert!(reply.starts_with("c4 "), "{reply}");

    // The external server has no route to the containers: without SNAT, c3's
    // traffic would die there. (Checks the lab proves what it claims.)
    assert!(
        lab.ext
            .ip("route show")
            .lines()
            .all(|l| !l.contains("192.168.169"))
    );
    assert_ne!(ip3, v4(EXTERNAL_IP));

    // Detach c4: its veth, address and published port go.
    drop(web);
    let handle4 = ep4.request.handle();
    agent
        .detach(&handle4.container, &handle4.ifname)
        .await
        .unwrap();
    assert!(
        !lab.host
            .ip("-o link show")
            .contains(ep4.host_ifname.as_str())
    );
    assert!(
        agent
            .ipam()
            .addresses_of(&handle4)
            .await
            .unwrap()
            .is_empty()
    );
    let ruleset = lab.host.exec_ok(&["nft", "list", "ruleset"]);
    assert!(!ruleset.contains("8081"), "{ruleset}");
    assert!(tcp_request(&lab.pc, (HOST_IP, 8081).into()).is_err());
    // Detach is idempotent.
    agent
        .detach(&handle4.container, &handle4.ifname)
        .await
        .unwrap();

    // Removing the network leaves nothing of trellis in the host namespace.
    let handle3 = ep3.request.handle();
    assert!(
        agent.delete_network("seed").await.is_err(),
        "c3 is still attached"
    );
    agent
        .detach(&handle3.container, &handle3.ifname)
        .await
        .unwrap();
    agent.delete_network("seed").await.unwrap();
    agent.settle().await;
    let after = Snapshot::take(&lab.host);
    assert_eq!(
        before, after,
        "trellis left something in the host namespace"
    );
    assert!(agent.endpoints().await.unwrap().is_empty());
}

/// A routable bridge network (issue 12): the seed's direct routing as a
/// network option. Behind a host firewall that drops forwarding, the PC —
/// with a route to the subnet via the host, as the seed types by hand and
/// BGP will announce — reaches a container, which sees the PC's own
/// address; the container reaches the PC by its own address too (no
/// masquerade), where a container of a normal bridge network beside it is
/// masqueraded behind the host. The two networks stay apart, and only the
/// routable subnet is exported.
///
/// A normal bridge network is reachable by such a route too (the seed's
/// scenario above, and the documented contract of `trellis_nat`'s forward
/// chain): what `routable` changes is the source address its containers
/// leave with, and that its subnet is announced.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_routable_bridge_network_is_reached_and_leaves_by_its_own_addresses() {
    require_root();
    let lab = SeedLab::build();
    lab.fresh_host(trellis_testlab::seed::DEBIAN_NFT_DROP);
    let agent = agent_in(&lab.host).await;
    let mut direct = bridge_spec("direct", "192.168.170.0/24", "tdirect0");
    (direct.routable, direct.masquerade) = (true, false);
    agent.create_network(direct).await.unwrap();
    let seed = bridge_spec("seed", "192.168.169.0/24", "tdocker0");
    agent.create_network(seed).await.unwrap();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let ep1 = attach(&agent, "direct", "c1", &c1, &[]).await;
    let ep2 = attach(&agent, "seed", "c2", &c2, &[]).await;
    let (ip1, ip2) = (ep1.addresses[0].addr(), ep2.addresses[0].addr());
    let web1 = TcpServer::start(&c1, SocketAddr::new(ip1, 80), "c1");
    let web2 = TcpServer::start(&c2, SocketAddr::new(ip2, 80), "c2");
    let pc = TcpServer::start(&lab.pc, SocketAddr::new(v4(PC_IP), 8080), "pc");
    lab.pc_route_via_host("192.168.170.0/24");

    // PC → container, unpublished port: routed in, the PC's own address seen.
    let reply = tcp_request(&lab.pc, web1.addr()).expect("pc reaches c1 directly");
    assert!(reply.starts_with("c1 "), "{reply}");
    assert_eq!(seen_ip(&reply), v4(PC_IP));
    // Container → PC: the container's own address, not the host's.
    let reply = tcp_request(&c1, pc.addr()).expect("c1 reaches the pc");
    assert_eq!(
        seen_ip(&reply),
        ip1,
        "a routable network is not masqueraded"
    );
    // The normal network beside it is masqueraded as before.
    let reply = tcp_request(&c2, pc.addr()).expect("c2 reaches the pc");
    assert_eq!(seen_ip(&reply), v4(HOST_IP));
    // Bridge isolation holds both ways: routable is about outside the host.
    assert!(
        tcp_request(&c2, web1.addr()).is_err(),
        "seed reaches direct"
    );
    assert!(
        tcp_request(&c1, web2.addr()).is_err(),
        "direct reaches seed"
    );

    let want: Vec<ipnet::IpNet> = vec!["192.168.170.0/24".parse().unwrap()];
    assert_eq!(agent.exported_prefixes().await.unwrap(), want);

    drop((web1, web2, pc));
    for ep in [ep1, ep2] {
        let h = ep.request.handle();
        agent.detach(&h.container, &h.ifname).await.unwrap();
    }
    for net in ["direct", "seed"] {
        agent.delete_network(net).await.unwrap();
    }
    agent.settle().await;
    assert!(agent.exported_prefixes().await.unwrap().is_empty());
    let ruleset = lab.host.exec_ok(&["nft", "list", "ruleset"]);
    assert!(!ruleset.contains("trellis"), "{ruleset}");
}

//! The lab itself, checked: namespaces come and go, traffic stays inside them.

use trellis_testlab::{Netns, TcpServer, require_root, seen_ip, tcp_request};

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn namespaces_are_removed_on_drop_even_after_a_panic() {
    require_root();
    let path = std::panic::catch_unwind(|| {
        let ns = Netns::new("panic");
        let path = ns.path();
        assert!(path.exists());
        std::panic::panic_any(path);
    })
    .unwrap_err();
    let path = path.downcast::<std::path::PathBuf>().unwrap();
    assert!(!path.exists(), "{} still exists", path.display());
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn two_namespaces_talk_over_a_veth_and_the_server_sees_the_client() {
    require_root();
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    a.veth_to("va", &b, "vb");
    a.ip("addr add 10.9.0.1/24 dev va");
    b.ip("addr add 10.9.0.2/24 dev vb");
    let server = TcpServer::start(&b, "10.9.0.2:7000".parse().unwrap(), "b");
    let reply = tcp_request(&a, server.addr()).unwrap();
    assert!(reply.starts_with("b "), "{reply}");
    assert_eq!(
        seen_ip(&reply),
        "10.9.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    // Nothing listens on another port: the request fails rather than hanging.
    assert!(tcp_request(&a, "10.9.0.2:7001".parse().unwrap()).is_err());
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn the_seed_lab_routes_the_host_to_the_external_server_and_the_pc_to_the_host() {
    use trellis_testlab::seed::{EXTERNAL_IP, HOST_IP, PC_IP, SeedLab};
    require_root();
    let lab = SeedLab::build();
    let server = lab.external_server(80);
    let reply = tcp_request(&lab.host, server.addr()).unwrap();
    assert_eq!(seen_ip(&reply), std::net::IpAddr::V4(HOST_IP));
    let on_host = TcpServer::start(&lab.host, (HOST_IP, 9000).into(), "host");
    let reply = tcp_request(&lab.pc, on_host.addr()).unwrap();
    assert_eq!(seen_ip(&reply), std::net::IpAddr::V4(PC_IP));
    // The PC has no route to the external server: the lab is closed.
    assert!(tcp_request(&lab.pc, (EXTERNAL_IP, 80).into()).is_err());
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn the_seed_lab_routes_ipv6_too() {
    use trellis_testlab::seed::{HOST_IP6, SeedLab};
    require_root();
    let lab = SeedLab::build();
    let server = lab.external_server6(80);
    let reply = tcp_request(&lab.host, server.addr()).unwrap();
    assert_eq!(seen_ip(&reply), std::net::IpAddr::V6(HOST_IP6));
}

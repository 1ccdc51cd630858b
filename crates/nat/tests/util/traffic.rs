//! The seed's Docker scenario end to end: a host with a bridge and two
//! containers, a PC and an upstream router (trellis-testlab's `SeedLab`).
//!
//! ```text
//!  ext 10.1.253.1 (+ 203.0.113.10, no route back to 192.168.169.0/24)
//!  pc  10.1.253.103
//!  host 10.1.253.101 ── br0 192.168.169.1/24 ── c1 192.168.169.3 (listens on :80)
//!                                            └─ c2 192.168.169.4
//! ```

use super::nat_in;
use std::net::{IpAddr, SocketAddr};
use trellis_nat::Nat;
use trellis_testlab::seed::{EXTERNAL_IP, HOST_IP, PC_IP, SeedLab};
use trellis_testlab::{Netns, TcpServer, seen_ip, tcp_request};

fn container(host: &Netns, role: &str, veth: &str, ip: &str) -> Netns {
    let c = Netns::new(role);
    host.veth_to(veth, &c, "eth0");
    host.ip(&format!("link set {veth} master br0"));
    c.ip(&format!("addr add {ip}/24 dev eth0"));
    c.ip("route add default via 192.168.169.1");
    c
}

fn addr(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// Who connects, to where, and which source address the server must see.
fn expect(from: &Netns, to: SocketAddr, tag: &str, seen: &str, why: &str) {
    let reply = tcp_request(from, to).unwrap_or_else(|e| panic!("{why}: connect to {to}: {e}"));
    assert!(
        reply.starts_with(tag),
        "{why}: reached {reply:?}, not {tag}"
    );
    assert_eq!(
        seen_ip(&reply),
        seen.parse::<IpAddr>().unwrap(),
        "{why}: {reply}"
    );
}

/// The seed lab plus a bridge `br0` with containers c1 and c2 in `host`.
struct Lab {
    seed: SeedLab,
    c1: Netns,
    c2: Netns,
}

fn build() -> Lab {
    trellis_testlab::require_root();
    let seed = SeedLab::build();
    seed.host.ip("link add br0 type bridge");
    seed.host.ip("addr add 192.168.169.1/24 dev br0");
    seed.host.ip("link set br0 up");
    let c1 = container(&seed.host, "c1", "vc1", "192.168.169.3");
    let c2 = container(&seed.host, "c2", "vc2", "192.168.169.4");
    Lab { seed, c1, c2 }
}

/// Publish 8081 -> c1:80, then check every path of the seed.
pub async fn traffic() {
    let Lab { seed: lab, c1, c2 } = build();
    let host = &lab.host;
    let nat = nat_in(host);
    nat.ensure_table().await.unwrap();
    nat.add_network(&super::net("192.168.169.0/24", "br0", true))
        .await
        .unwrap();
    nat.publish(&[super::tcp(8081, "192.168.169.3", 80)])
        .await
        .unwrap();
    let _web = TcpServer::start(&c1, addr([192, 168, 169, 3], 80), "c1");
    let _pc_srv = TcpServer::start(&lab.pc, addr(PC_IP, 9000), "pc");
    let _ext_srv = lab.external_server(9001);
    let published = addr(HOST_IP, 8081);

    expect(
        &lab.pc,
        published,
        "c1",
        "10.1.253.103",
        "from another host (prerouting DNAT)",
    );
    expect(
        host,
        published,
        "c1",
        "10.1.253.101",
        "from the host itself (output DNAT)",
    );
    expect(
        &c2,
        published,
        "c1",
        "192.168.169.1",
        "hairpin from the same bridge",
    );
    expect(
        &c1,
        addr(PC_IP, 9000),
        "pc",
        "10.1.253.101",
        "masquerade towards the PC",
    );
    expect(
        &c1,
        addr(EXTERNAL_IP, 9001),
        "ext",
        "10.1.253.101",
        "masquerade through the router",
    );
    expect(
        &c2,
        addr([192, 168, 169, 3], 80),
        "c1",
        "192.168.169.4",
        "same bridge, no NAT",
    );

    nat.unpublish(&[super::tcp(8081, "192.168.169.3", 80)])
        .await
        .unwrap();
    assert!(
        tcp_request(&lab.pc, published).is_err(),
        "unpublished port still reaches c1"
    );
    nat.remove_all().await.unwrap();
    assert!(
        tcp_request(&c1, addr(EXTERNAL_IP, 9001)).is_err(),
        "no masquerade after remove_all"
    );
}

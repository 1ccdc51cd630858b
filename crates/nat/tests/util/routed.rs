//! Routed mode (Calico's model) end to end: pods with /32 addresses behind
//! proxy-ARP, one pool with outgoing NAT and one without, and an outside
//! network that also holds a pod of the first pool "on another host".
//!
//! ```text
//!  ext  10.9.0.2/24 (+ 10.244.9.9: a pod of pool A on another host)
//!   │   routes 10.244.0.0/15 via 10.9.0.1
//!  host vout 10.9.0.1/24, default via 10.9.0.2
//!   ├─ cali1 (proxy_arp) ── pod1 10.244.1.5/32  pool A 10.244.0.0/16, nat_outgoing
//!   └─ cali2 (proxy_arp) ── pod2 10.245.0.7/32  pool B 10.245.0.0/16, no NAT
//! ```

use super::{nat_in, pool};
use std::net::{IpAddr, SocketAddr};
use trellis_nat::Nat;
use trellis_testlab::{Netns, TcpServer, require_root, seen_ip, tcp_request};

/// A routed pod: `ip`/32 on its `eth0`, default route via the link-local
/// gateway; on the host, a proxy-ARP veth end and a /32 route to it.
fn pod(host: &Netns, role: &str, veth: &str, ip: &str) -> Netns {
    let p = Netns::new(role);
    host.veth_to(veth, &p, "eth0");
    host.sysctl(&format!("net.ipv4.conf.{veth}.proxy_arp"), "1");
    host.ip(&format!("route add {ip}/32 dev {veth}"));
    p.ip(&format!("addr add {ip}/32 dev eth0"));
    p.ip("route add 169.254.1.1 dev eth0 scope link");
    p.ip("route add default via 169.254.1.1 dev eth0");
    p
}

struct Lab {
    host: Netns,
    ext: Netns,
    pod1: Netns,
    pod2: Netns,
}

fn build() -> Lab {
    require_root();
    let (host, ext) = (Netns::new("rhost"), Netns::new("rext"));
    host.veth_to("vout", &ext, "eth0");
    host.ip("addr add 10.9.0.1/24 dev vout");
    host.ip("route add default via 10.9.0.2");
    host.sysctl("net.ipv4.ip_forward", "1");
    ext.ip("addr add 10.9.0.2/24 dev eth0");
    ext.ip("addr add 10.244.9.9/32 dev lo");
    ext.ip("route add 10.244.0.0/15 via 10.9.0.1");
    host.ip("route add 10.244.9.9/32 via 10.9.0.2");
    let pod1 = pod(&host, "pod1", "cali1", "10.244.1.5");
    let pod2 = pod(&host, "pod2", "cali2", "10.245.0.7");
    Lab {
        host,
        ext,
        pod1,
        pod2,
    }
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// The source address the server at `to` sees for a connection from `from`.
fn seen(from: &Netns, to: SocketAddr, why: &str) -> IpAddr {
    let reply = tcp_request(from, to).unwrap_or_else(|e| panic!("{why}: connect to {to}: {e}"));
    seen_ip(&reply)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Pod to the world is masqueraded only with `nat_outgoing`; pod to any pool
/// address (same host or another) never is.
pub async fn routed() {
    let Lab {
        host,
        ext,
        pod1,
        pod2,
    } = build();
    let nat = nat_in(&host);
    nat.ensure_table().await.unwrap();
    let (a, b) = (pool("10.244.0.0/16", true), pool("10.245.0.0/16", false));
    nat.add_pool(&a).await.unwrap();
    nat.add_pool(&b).await.unwrap();
    let (world, remote, pod2_web) = (
        at("10.9.0.2", 9001),
        at("10.244.9.9", 9002),
        at("10.245.0.7", 80),
    );
    let _servers = [
        TcpServer::start(&ext, world, "ext"),
        TcpServer::start(&ext, remote, "remote"),
        TcpServer::start(&pod2, pod2_web, "pod2"),
    ];

    let host_ip = ip("10.9.0.1");
    assert_eq!(seen(&pod1, world, "pool A, nat_outgoing"), host_ip);
    assert_eq!(seen(&pod2, world, "pool B, no NAT"), ip("10.245.0.7"));
    assert_eq!(
        seen(&pod1, pod2_web, "to another pool, same host"),
        ip("10.244.1.5")
    );
    assert_eq!(
        seen(&pod1, remote, "same pool, another host"),
        ip("10.244.1.5")
    );

    nat.add_pool(&pool("10.244.0.0/16", false)).await.unwrap();
    assert_eq!(
        seen(&pod1, world, "nat_outgoing switched off"),
        ip("10.244.1.5")
    );
    nat.add_pool(&a).await.unwrap();
    assert_eq!(seen(&pod1, world, "nat_outgoing switched on"), host_ip);

    // Without pool B in the table, pod2 is just "the world" to pod1.
    nat.remove_pool(&b).await.unwrap();
    assert_ne!(seen(&pod1, pod2_web, "pool B removed"), ip("10.244.1.5"));
    nat.remove_all().await.unwrap();
    assert_eq!(seen(&pod1, world, "no table"), ip("10.244.1.5"));
}

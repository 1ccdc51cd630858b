//! The seed's Docker lab as namespaces: an underlay, a host, an upstream router
//! that also plays the external server, and a PC.
//!
//! ```text
//!  ext  10.1.253.1/24, 2001:db8:253::1/64 on the underlay; the "internet"
//!   │   server 203.0.113.10 and 2001:db8:ffff::10 on lo (no route back to
//!   │   container subnets: replies only work after SNAT)
//!  underlay (a bridge in its own namespace)
//!   ├─ host 10.1.253.101/24, 2001:db8:253::101/64, default via the router,
//!   │       forwarding on
//!   └─ pc   10.1.253.103/24, 2001:db8:253::103/64
//! ```
//!
//! trellis builds the container side (bridge, veths, NAT) inside `host`.

use crate::{Netns, TcpServer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The host's underlay address (the seed's 10.1.253.101).
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 253, 101);
/// The PC's underlay address (the seed's 10.1.253.103).
pub const PC_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 253, 103);
/// The upstream router's underlay address.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 253, 1);
/// The external server (TEST-NET-3), reachable only through the router.
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The host's underlay IPv6 address (documentation prefix).
pub const HOST_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x253, 0, 0, 0, 0, 0x101);
/// The PC's underlay IPv6 address.
pub const PC_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x253, 0, 0, 0, 0, 0x103);
/// The router's underlay IPv6 address.
pub const ROUTER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x253, 0, 0, 0, 0, 1);
/// The external server's IPv6 address.
pub const EXTERNAL_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);

/// iptables-nft's filter table after `iptables -P FORWARD DROP`.
pub const IPTABLES_NFT_DROP: &str = "table ip filter {
    chain FORWARD { type filter hook forward priority 0; policy drop; }
}";

/// Debian's /etc/nftables.conf with the forward policy set to drop.
pub const DEBIAN_NFT_DROP: &str = "table inet filter {
    chain input { type filter hook input priority filter; }
    chain forward { type filter hook forward priority filter; policy drop; }
    chain output { type filter hook output priority filter; }
}";

/// The namespaces of the seed's lab; all removed on drop.
pub struct SeedLab {
    /// The container host: trellis runs here.
    pub host: Netns,
    /// The upstream router, which also hosts the external server.
    pub ext: Netns,
    /// The PC that curls published ports.
    pub pc: Netns,
    /// The underlay switch.
    pub underlay: Netns,
}

impl SeedLab {
    /// Builds the lab. The host's uplink is `eth0`, as on a real machine.
    pub fn build() -> Self {
        let underlay = Netns::new("ul");
        let (host, ext, pc) = (Netns::new("host"), Netns::new("ext"), Netns::new("pc"));
        underlay.ip("link add ul0 type bridge");
        underlay.ip("link set ul0 up");
        for (ns, port, ip, ip6) in [
            (&host, "p-host", HOST_IP, HOST_IP6),
            (&ext, "p-ext", ROUTER_IP, ROUTER_IP6),
            (&pc, "p-pc", PC_IP, PC_IP6),
        ] {
            underlay.veth_to(port, ns, "eth0");
            underlay.ip(&format!("link set {port} master ul0"));
            ns.ip(&format!("addr add {ip}/24 dev eth0"));
            // nodad: the lab's addresses are unique by construction, and DAD
            // would hold them "tentative" (unusable) for a second or two.
            ns.ip(&format!("addr add {ip6}/64 dev eth0 nodad"));
        }
        host.ip(&format!("route add default via {ROUTER_IP}"));
        host.ip(&format!("-6 route add default via {ROUTER_IP6}"));
        host.sysctl("net.ipv4.ip_forward", "1");
        host.sysctl("net.ipv6.conf.all.forwarding", "1");
        ext.ip(&format!("addr add {EXTERNAL_IP}/32 dev lo"));
        ext.ip(&format!("addr add {EXTERNAL_IP6}/128 dev lo"));
        SeedLab {
            host,
            ext,
            pc,
            underlay,
        }
    }

    /// Makes the host look like a fresh server: forwarding off, the uplink
    /// taking router advertisements, and the firewall `ruleset` loaded (one
    /// of [`IPTABLES_NFT_DROP`], [`DEBIAN_NFT_DROP`], or another).
    pub fn fresh_host(&self, ruleset: &str) {
        self.host.sysctl("net.ipv4.ip_forward", "0");
        self.host.sysctl("net.ipv6.conf.all.forwarding", "0");
        self.host.sysctl("net.ipv6.conf.eth0.accept_ra", "1");
        self.host.exec_ok(&["nft", ruleset]);
    }

    /// Starts the external server on `EXTERNAL_IP:port`.
    pub fn external_server(&self, port: u16) -> TcpServer {
        TcpServer::start(
            &self.ext,
            SocketAddr::new(IpAddr::V4(EXTERNAL_IP), port),
            "ext",
        )
    }

    /// Starts the external server on `[EXTERNAL_IP6]:port`.
    pub fn external_server6(&self, port: u16) -> TcpServer {
        let addr = SocketAddr::new(IpAddr::V6(EXTERNAL_IP6), port);
        TcpServer::start(&self.ext, addr, "ext6")
    }

    /// Gives the PC the seed's static route to a container subnet via the host.
    pub fn pc_route_via_host(&self, subnet: &str) {
        self.pc.ip(&format!("route add {subnet} via {HOST_IP}"));
    }
}

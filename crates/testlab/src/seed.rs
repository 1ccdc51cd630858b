//! The seed's Docker lab as namespaces: an underlay, a host, an upstream router
//! that also plays the external server, and a PC.
//!
//! ```text
//!  ext  10.1.253.1/24 on the underlay; the "internet" server 203.0.113.10 on lo
//!   │        (no route back to container subnets: replies only work after SNAT)
//!  underlay (a bridge in its own namespace)
//!   ├─ host 10.1.253.101/24, default via 10.1.253.1, forwarding on
//!   └─ pc   10.1.253.103/24
//! ```
//!
//! trellis builds the container side (bridge, veths, NAT) inside `host`.

use crate::{Netns, TcpServer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The host's underlay address (the seed's 10.1.253.101).
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 253, 101);
/// The PC's underlay address (the seed's 10.1.253.103).
pub const PC_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 253, 103);
/// The upstream router's underlay address.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 253, 1);
/// The external server (TEST-NET-3), reachable only through the router.
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

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
        for (ns, port, ip) in [
            (&host, "p-host", HOST_IP),
            (&ext, "p-ext", ROUTER_IP),
            (&pc, "p-pc", PC_IP),
        ] {
            underlay.veth_to(port, ns, "eth0");
            underlay.ip(&format!("link set {port} master ul0"));
            ns.ip(&format!("addr add {ip}/24 dev eth0"));
        }
        host.ip(&format!("route add default via {ROUTER_IP}"));
        host.sysctl("net.ipv4.ip_forward", "1");
        ext.ip(&format!("addr add {EXTERNAL_IP}/32 dev lo"));
        SeedLab {
            host,
            ext,
            pc,
            underlay,
        }
    }

    /// Starts the external server on `EXTERNAL_IP:port`.
    pub fn external_server(&self, port: u16) -> TcpServer {
        TcpServer::start(
            &self.ext,
            SocketAddr::new(IpAddr::V4(EXTERNAL_IP), port),
            "ext",
        )
    }

    /// Gives the PC the seed's static route to a container subnet via the host.
    pub fn pc_route_via_host(&self, subnet: &str) {
        self.pc.ip(&format!("route add {subnet} via {HOST_IP}"));
    }
}

//! A cluster lab as namespaces: an underlay switch, a controller's machine,
//! three hosts, an upstream router that also plays the external server,
//! and a PC (DESIGN.md's test topology).
//!
//! ```text
//!  ext  10.1.253.1/24, the router; 203.0.113.10 on lo (the "internet",
//!   │   with no route back to container subnets)
//!  underlay (a bridge in its own namespace)
//!   ├─ ctl 10.1.253.2/24          the controller
//!   ├─ h1  10.1.253.101/24 ┐
//!   ├─ h2  10.1.253.102/24 ├ default via the router, forwarding on
//!   ├─ h3  10.1.253.104/24 ┘
//!   └─ pc  10.1.253.103/24
//! ```

use crate::seed::{EXTERNAL_IP, PC_IP, ROUTER_IP};
use crate::{Netns, TcpServer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The controller's machine's underlay address.
pub const CONTROLLER_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 253, 2);
/// The hosts' underlay addresses (10.1.253.103 is the PC's, as in the seed).
pub const HOST_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 1, 253, 101),
    Ipv4Addr::new(10, 1, 253, 102),
    Ipv4Addr::new(10, 1, 253, 104),
];

/// The namespaces of the cluster lab; all removed on drop.
pub struct ClusterLab {
    /// The hosts, `h1`..`h3`.
    pub hosts: Vec<Netns>,
    /// The controller's machine.
    pub ctl: Netns,
    /// The upstream router and external server.
    pub ext: Netns,
    /// The PC.
    pub pc: Netns,
    /// The underlay switch (kept for its lifetime).
    pub underlay: Netns,
}

impl ClusterLab {
    /// Builds the lab.
    pub fn build() -> Self {
        let underlay = Netns::new("ul");
        underlay.ip("link add ul0 type bridge");
        underlay.ip("link set ul0 up");
        let hosts: Vec<Netns> = (1..=3).map(|i| Netns::new(&format!("h{i}"))).collect();
        let (ctl, ext, pc) = (Netns::new("ctl"), Netns::new("ext"), Netns::new("pc"));
        let mut ends: Vec<(&Netns, String, Ipv4Addr)> = vec![
            (&ctl, "p-ctl".into(), CONTROLLER_IP),
            (&ext, "p-ext".into(), ROUTER_IP),
            (&pc, "p-pc".into(), PC_IP),
        ];
        for (i, h) in hosts.iter().enumerate() {
            ends.push((h, format!("p-h{}", i + 1), HOST_IPS[i]));
        }
        for (ns, port, ip) in ends {
            underlay.veth_to(&port, ns, "eth0");
            underlay.ip(&format!("link set {port} master ul0"));
            ns.ip(&format!("addr add {ip}/24 dev eth0"));
            ns.ip("link set lo up");
        }
        for h in &hosts {
            h.ip(&format!("route add default via {ROUTER_IP}"));
            h.sysctl("net.ipv4.ip_forward", "1");
        }
        ext.ip(&format!("addr add {EXTERNAL_IP}/32 dev lo"));
        ClusterLab {
            hosts,
            ctl,
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
}

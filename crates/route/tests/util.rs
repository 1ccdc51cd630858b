//! Helpers for the privileged tests: a host namespace with trellis pointed at
//! it, and containers attached to a bridge in it.

use trellis_link::{
    BridgeSpec, ContainerIface, LinkRef, Links, NetlinkLinks, Ns, VethInfo, VethSpec,
};
use trellis_route::NetlinkRoutes;
use trellis_testlab::Netns;
use trellis_types::{IfName, NetnsPath};

/// Parses an interface name (test input is known good).
pub fn ifn(s: &str) -> IfName {
    IfName::parse("ifname", s).unwrap()
}

/// The path of a test namespace as trellis takes it.
pub fn nspath(ns: &Netns) -> NetnsPath {
    NetnsPath::parse("netns", &ns.path_str()).unwrap()
}

/// A namespace as an operation target.
pub fn at(ns: &Netns) -> Ns {
    Ns::Path(nspath(ns))
}

/// A "host" namespace with a bridge `br0` (192.168.169.1/24), and trellis's
/// real links and routes pointed at it.
pub struct Lab {
    /// The namespace standing in for the host.
    pub host: Netns,
    /// Links, with `host` as host.
    pub links: NetlinkLinks,
    /// Routes, on the same sockets.
    pub routes: NetlinkRoutes,
    /// The bridge's index.
    pub bridge: u32,
}

impl Lab {
    /// Builds the host namespace and its bridge (panics unless root).
    pub async fn new() -> Self {
        trellis_testlab::require_root();
        let host = Netns::new("host");
        let links = NetlinkLinks::in_netns(&nspath(&host))
            .await
            .expect("netlink in host netns");
        let routes = NetlinkRoutes::new(links.sockets().clone());
        let spec = BridgeSpec {
            name: ifn("br0"),
            gateway: vec!["192.168.169.1/24".parse().unwrap()],
            mac: None,
            mtu: None,
        };
        let bridge = links.ensure_bridge(&spec).await.expect("bridge");
        Lab {
            host,
            links,
            routes,
            bridge,
        }
    }

    /// Attaches `c` to the bridge as `eth0` with `addr` (no routes yet).
    pub async fn attach(&self, host_name: &str, c: &Netns, addr: &str) -> VethInfo {
        let spec = VethSpec {
            host_name: ifn(host_name),
            container_netns: nspath(c),
            container_name: ifn("eth0"),
            mtu: None,
            container_mac: None,
            host_mac: None,
            master: Some(LinkRef::Index(self.bridge)),
        };
        let info = self.links.create_veth(&spec).await.expect("veth");
        let iface = ContainerIface {
            netns: nspath(c),
            link: LinkRef::Index(info.container_ifindex),
            addresses: vec![addr.parse().unwrap()],
        };
        self.links
            .setup_container_iface(&iface)
            .await
            .expect("container side");
        info
    }
}

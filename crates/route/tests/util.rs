//! Helpers for the privileged tests: a host namespace with trellis pointed at
//! it, and containers attached to a bridge in it or routed from it.

use std::net::IpAddr;
use trellis_link::{BridgeSpec, ContainerIface, LinkRef, Links, NetlinkLinks, VethInfo, VethSpec};
use trellis_route::routed::{container_routes, host_prefix};
use trellis_route::{Families, NetlinkRoutes, Ns, ROUTED_HOST_MAC, RoutedEndpoint, Routes};
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
            host_ipv6: false,
        };
        let info = self.links.create_veth(&spec).await.expect("veth");
        let iface = ContainerIface {
            netns: nspath(c),
            link: LinkRef::Index(info.container_ifindex),
            addresses: vec![addr.parse().unwrap()],
            ipv6: true,
        };
        self.links
            .setup_container_iface(&iface)
            .await
            .expect("container side");
        info
    }
}

/// A "host" namespace for routed mode: forwarding on, an address of its own
/// on `lo` ([`HOST_IP`], [`HOST_IP6`]), no default route (see
/// [`RoutedLab::add_upstream`]), and trellis pointed at it.
pub struct RoutedLab {
    /// The namespace standing in for the host.
    pub host: Netns,
    /// Links, with `host` as host.
    pub links: NetlinkLinks,
    /// Routes, on the same sockets.
    pub routes: NetlinkRoutes,
}

/// The routed host's own IPv4 address (on `lo`).
pub const HOST_IP: &str = "10.250.0.1";
/// The routed host's own IPv6 address (on `lo`).
pub const HOST_IP6: &str = "fd00:250::1";

impl RoutedLab {
    /// Builds the host namespace (panics unless root).
    pub async fn new() -> Self {
        trellis_testlab::require_root();
        let host = Netns::new("host");
        host.ip(&format!("addr add {HOST_IP}/32 dev lo"));
        host.ip(&format!("addr add {HOST_IP6}/128 dev lo"));
        let links = NetlinkLinks::in_netns(&nspath(&host))
            .await
            .expect("netlink in host netns");
        links
            .enable_host_forwarding(Families::DUAL, &[])
            .await
            .expect("host forwarding");
        let routes = NetlinkRoutes::new(links.sockets().clone());
        RoutedLab {
            host,
            links,
            routes,
        }
    }

    /// Attaches `c` in routed mode as `eth0` with `addrs` (bare IPs): veth,
    /// host side, container side; what the agent does, in three calls.
    pub async fn attach(&self, host_name: &str, c: &Netns, addrs: &[&str]) -> VethInfo {
        let ips: Vec<IpAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        let spec = VethSpec {
            host_name: ifn(host_name),
            container_netns: nspath(c),
            container_name: ifn("eth0"),
            mtu: None,
            container_mac: None,
            host_mac: Some(ROUTED_HOST_MAC),
            master: None,
            host_ipv6: true,
        };
        let info = self.links.create_veth(&spec).await.expect("veth");
        let ep = RoutedEndpoint {
            host_if: ifn(host_name),
            host_ifindex: info.host_ifindex,
            addresses: ips.clone(),
            container_mac: info.container_mac,
        };
        self.routes.setup_routed_host(&ep).await.expect("host side");
        let iface = ContainerIface {
            netns: nspath(c),
            link: LinkRef::Index(info.container_ifindex),
            addresses: ips.iter().map(|&ip| host_prefix(ip)).collect(),
            ipv6: true,
        };
        let routes = container_routes(Families::of(ips));
        self.links
            .setup_container(&iface, &routes)
            .await
            .expect("container side");
        info
    }

    /// Gives the host an upstream router namespace on `up0` (10.77.0.1/24 ↔
    /// 10.77.0.2/24) and a default route through it; returns the router.
    pub fn add_upstream(&self) -> Netns {
        let up = Netns::new("up");
        self.host.veth_to("up0", &up, "eth0");
        self.host.ip("addr add 10.77.0.1/24 dev up0");
        up.ip("addr add 10.77.0.2/24 dev eth0");
        self.host.ip("route add default via 10.77.0.2");
        up
    }
}

/// Reads `/proc/sys/net/<key>` inside `ns` (path form, so dots in names are safe).
pub fn read_net_sysctl(ns: &Netns, key: &str) -> String {
    let path = format!("/proc/sys/net/{key}");
    ns.enter(move || std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .trim()
        .to_owned()
}

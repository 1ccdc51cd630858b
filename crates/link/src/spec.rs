//! What callers ask for: bridges, veth pairs, link references, namespaces.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use trellis_types::{IfName, NetnsPath};

/// A MAC address (EUI-48).
pub type Mac = [u8; 6];

/// Which network namespace an operation runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ns {
    /// The host namespace the implementation was built for
    /// ([`crate::NetlinkLinks::current`] or [`crate::NetlinkLinks::in_netns`]).
    Host,
    /// Another namespace, usually a container's, opened for this call only.
    Path(NetnsPath),
}

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ns::Host => f.write_str("host netns"),
            Ns::Path(p) => write!(f, "netns {p}"),
        }
    }
}

/// An interface, by index or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LinkRef {
    /// By interface index (in the namespace the operation runs in).
    Index(u32),
    /// By name.
    Name(IfName),
}

impl fmt::Display for LinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkRef::Index(i) => write!(f, "ifindex {i}"),
            LinkRef::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// A Linux bridge as trellis wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// The bridge's name (`trellis0`).
    pub name: IfName,
    /// Gateway addresses with their prefix length (`192.168.169.1/24`).
    pub gateway: Vec<IpNet>,
    /// The MAC; `None` derives a stable one from the name ([`crate::bridge_mac`]).
    pub mac: Option<Mac>,
    /// The MTU; `None` leaves the kernel's choice.
    pub mtu: Option<u32>,
}

/// A veth pair: the host end stays in the host namespace, the peer is created
/// straight inside the container's namespace under its final name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// The host end's name (see [`crate::host_veth_name`]).
    pub host_name: IfName,
    /// The container's network namespace.
    pub container_netns: NetnsPath,
    /// The peer's name inside the container (`eth0`).
    pub container_name: IfName,
    /// MTU of both ends; `None` leaves the kernel's default.
    pub mtu: Option<u32>,
    /// The peer's MAC; `None` derives a stable one from `host_name`
    /// ([`crate::container_mac`]), so a retried attach gets the same MAC.
    pub container_mac: Option<Mac>,
    /// The host end's MAC (routed mode wants `ee:ee:ee:ee:ee:ee`); `None` lets
    /// the kernel pick a random one.
    pub host_mac: Option<Mac>,
    /// The bridge to enslave the host end to, if any.
    pub master: Option<LinkRef>,
    /// Whether the host end keeps IPv6. `false` (a bridge port, which needs
    /// no address of its own; a routed port of a network without IPv6):
    /// `disable_ipv6` is set on it before it comes up, so it never gets a
    /// link-local address, IPv6 routes or DAD/MLD traffic. On a host with
    /// many containers this matters: every IPv6 route of every port makes
    /// each link event walk the whole IPv6 routing table, and each port's
    /// DAD and MLD packets are flooded to every other port of its bridge.
    pub host_ipv6: bool,
}

/// What [`crate::Links::create_veth`] created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VethInfo {
    /// Index of the host end, in the host namespace.
    pub host_ifindex: u32,
    /// Index of the peer, in the container namespace.
    pub container_ifindex: u32,
    /// The peer's MAC.
    pub container_mac: Mac,
}

/// The container side of an attach, configured over one netlink socket opened
/// inside the container's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerIface {
    /// The container's network namespace.
    pub netns: NetnsPath,
    /// The interface inside it.
    pub link: LinkRef,
    /// Addresses to add (with prefix length, `192.168.169.2/24`).
    pub addresses: Vec<IpNet>,
    /// Whether the interface speaks IPv6 on its own. `false` (a network
    /// without IPv6): no link-local address is generated for it
    /// (`addr_gen_mode=none`, set before it comes up), so it sends no DAD,
    /// router solicitation or MLD report — traffic a bridge would flood to
    /// every other container.
    pub ipv6: bool,
}

/// A route inside a container, through the interface being configured
/// ([`crate::Links::setup_container`]); tagged [`crate::RTPROT_TRELLIS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContainerRoute {
    /// Destination prefix, without host bits (`0.0.0.0/0` is the default route).
    pub dst: IpNet,
    /// Gateway; `None` makes a `scope link` route (the destination is on the link).
    pub via: Option<IpAddr>,
}

impl ContainerRoute {
    /// `<ip>/32` (`/128`) `scope link`: the gateway is on the link even though
    /// no address of the container covers it (routed mode's `169.254.1.1`).
    pub fn on_link(ip: IpAddr) -> Self {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        Self {
            dst: IpNet::new(ip, len).expect("host prefix length"),
            via: None,
        }
    }

    /// `default via <gw>`.
    pub fn default_via(gw: IpAddr) -> Self {
        let dst = match gw {
            IpAddr::V4(_) => IpNet::V4(Default::default()),
            IpAddr::V6(_) => IpNet::V6(Default::default()),
        };
        Self { dst, via: Some(gw) }
    }

    /// The routes of a routed-mode container for `families`: `169.254.1.1
    /// scope link` and `default via 169.254.1.1`; `default via
    /// fe80::ecee:eeff:feee:eeee` (a link-local gateway needs no on-link
    /// route: the interface is given with it).
    pub fn routed_defaults(families: crate::Families) -> Vec<Self> {
        let mut routes = Vec::new();
        if families.v4 {
            let gw = IpAddr::V4(crate::ROUTED_GATEWAY_V4);
            routes.extend([Self::on_link(gw), Self::default_via(gw)]);
        }
        if families.v6 {
            routes.push(Self::default_via(IpAddr::V6(crate::ROUTED_GATEWAY_V6)));
        }
        routes
    }
}

impl fmt::Display for ContainerRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        match self.via {
            Some(via) => write!(f, " via {via}"),
            None => f.write_str(" scope link"),
        }
    }
}

/// One interface as a listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `IFLA_INFO_KIND` (`"bridge"`, `"veth"`), `None` for physical devices and `lo`.
    pub kind: Option<String>,
    /// Hardware address, if it is an Ethernet-like one.
    pub mac: Option<Mac>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Index of the bridge it is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_LINK`: for a veth, the peer's index (in the peer's namespace).
    pub link: Option<u32>,
}

/// Formats a MAC as `02:aa:bb:cc:dd:ee`.
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

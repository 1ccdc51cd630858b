//! What callers ask for (bridges, veth pairs, a container's interface) and
//! what they get back. Namespaces, link references and link summaries are
//! trellis-netlink's, shared with trellis-route.

use ipnet::IpNet;
use trellis_netlink::{LinkRef, LinkSummary, Mac};
use trellis_types::{IfName, NetnsPath};

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

/// Where the container end of a veth to retire is ([`crate::Links::retire_veth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetireEnd {
    /// The container's network namespace.
    pub netns: NetnsPath,
    /// The interface's name inside it.
    pub ifname: IfName,
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

/// A link with its addresses, as [`crate::Links::link_detail`] reads them:
/// what `check` compares an endpoint's record with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDetail {
    /// The link.
    pub link: LinkSummary,
    /// Its addresses with their prefix lengths (the local address of each,
    /// `IFA_LOCAL` where the kernel gives one).
    pub addresses: Vec<IpNet>,
}

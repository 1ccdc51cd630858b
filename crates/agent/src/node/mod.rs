//! The node's state as data: what trellis owns on a node, as one value.
//!
//! Every part of the agent that touches the kernel is built from four
//! pieces, the way routing daemons are:
//!
//! ```text
//!   networks, records, owned blocks, peer routes
//!        │ desired()  (pure)
//!        ▼
//!   NodeState ──┐
//!               ├─ diff()  (pure) ──▶ Vec<Change> ──▶ Executor ──▶ kernel
//!   NodeState ──┘
//!        ▲ observe()  (reads through Links, Routes, Nat)
//!   the kernel
//! ```
//!
//! * [`desired`] computes what the records want: bridges with their gateway
//!   addresses, each endpoint's veth (both ends, with addresses, routes,
//!   MACs), a routed endpoint's host routes and neighbours, a blackhole per
//!   owned block, peer routes, and the NAT table's elements.
//! * [`observe`] reads the same shape from the kernel, through the traits
//!   only (so a fake kernel serves the logic tests).
//! * [`diff`] turns the two into [`Change`]s, each carrying the sentences
//!   that say why, so `check` can *report* a diff, `reconcile` *apply* it
//!   and GC apply it after dropping endpoints; it is golden-tested.
//! * [`Executor`] is the one place that turns changes into kernel calls.
//!
//! Attach and detach use the same pieces on one endpoint's slice of the
//! state, so the fast path never walks the node: an attach applies
//! `diff(slice, nothing)`, a detach `diff(nothing, slice)`, and a failed
//! attach observes its slice and converges it back to nothing before it
//! answers.
//!
//! Ports are keyed by the host veth's name, the one thing the kernel and the
//! records share: a veth found in the kernel that no record explains has no
//! handle, and is an orphan.

mod desired;
mod diff;
mod exec;
mod observe;

#[cfg(test)]
mod diff_tests;

pub use desired::{desired, port};
pub use diff::{Change, diff};
pub use exec::{Applied, Executor};
pub use observe::{observe, observe_port};

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use trellis_link::{ContainerRoute, InetConf, Mac};
use trellis_nat::NatState;
use trellis_route::PeerRoute;
use trellis_types::{Handle, IfName, NetnsPath};

/// Everything trellis owns on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The bridges of bridge networks, by name.
    pub bridges: BTreeMap<IfName, Bridge>,
    /// The endpoints' veths and what hangs off them, by host veth name.
    pub ports: BTreeMap<IfName, Port>,
    /// A blackhole route per routed block this node owns.
    pub blackholes: BTreeSet<IpNet>,
    /// Routes to other nodes' blocks; `None` when nothing on this node
    /// manages them (then they are left as they are).
    pub peer_routes: Option<BTreeSet<PeerRoute>>,
    /// The elements of trellis's nftables table, sorted.
    pub nat: NatState,
}

/// A bridge with its gateway addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// Its name.
    pub name: IfName,
    /// The gateway addresses it must hold (it may hold more).
    pub addresses: BTreeSet<IpNet>,
    /// Its MTU; `None` in a desired state: the kernel's default.
    pub mtu: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// Its IPv4 settings as observed (`route_localnet` must be on: ports
    /// published on `127.0.0.1` reach containers through it); `None` in a
    /// desired state and when the kernel reported none.
    pub inet: Option<InetConf>,
}

/// One endpoint's veth pair and what hangs off it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Whose it is: known from a record; `None` when observed.
    pub handle: Option<Handle>,
    /// The host end.
    pub host: HostEnd,
    /// The container end; `None` when observed and not found (the
    /// namespace or the interface is gone).
    pub container: Option<ContainerEnd>,
    /// Routed ports: a `/32` (`/128`) `dev <veth> scope link` per address.
    pub host_routes: BTreeSet<IpNet>,
    /// Routed ports: a permanent neighbour (address, container MAC) per
    /// address, so the host never has to ARP for a container.
    pub neighbours: BTreeSet<(IpAddr, Mac)>,
}

impl Port {
    /// A port known only by its host veth's name (a detach without a record,
    /// or of a network no longer defined): it removes as a whole.
    pub fn named(name: IfName) -> Self {
        Port {
            handle: None,
            host: HostEnd {
                name,
                index: None,
                master: None,
                mac: None,
                mtu: None,
                up: true,
                routed: false,
                inet: None,
                ipv6: false,
            },
            container: None,
            host_routes: BTreeSet::new(),
            neighbours: BTreeSet::new(),
        }
    }
}

/// The host end of a veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEnd {
    /// `tr` + 13 hex digits.
    pub name: IfName,
    /// Its ifindex: observed only.
    pub index: Option<u32>,
    /// The bridge it is a port of (bridge mode).
    pub master: Option<IfName>,
    /// Its MAC; in a desired state `None` means any (a bridge port's is the
    /// kernel's choice) and `Some` the routed ports' `ee:ee:ee:ee:ee:ee`.
    pub mac: Option<Mac>,
    /// Its MTU; `None` in a desired state: the kernel's default.
    pub mtu: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// A routed port: proxy-ARP and forwarding on, the link-local gateway
    /// addresses (re-asserted with the port's routes and neighbours).
    pub routed: bool,
    /// Its IPv4 settings as observed (a routed port's `forwarding` and
    /// `proxy_arp` must be on); `None` in a desired state and when the
    /// kernel reported none.
    pub inet: Option<InetConf>,
    /// Whether the host end speaks IPv6 (routed ports of dual-stack
    /// networks). Desired only.
    pub ipv6: bool,
}

/// The container end of a veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEnd {
    /// The container's network namespace.
    pub netns: NetnsPath,
    /// The interface's name inside it.
    pub ifname: IfName,
    /// Its MAC: the record's (the one the attach asked for, else derived
    /// from the host veth's name); in a desired state `None` means any.
    pub mac: Option<Mac>,
    /// Administratively up.
    pub up: bool,
    /// Its addresses (a desired state lists those it must hold).
    pub addresses: BTreeSet<IpNet>,
    /// trellis's routes inside the container, in install order (an on-link
    /// route to a gateway precedes the default route through it).
    pub routes: Vec<ContainerRoute>,
    /// Whether the interface speaks IPv6 (has an IPv6 address). Desired only.
    pub ipv6: bool,
}

impl ContainerEnd {
    /// A container end known only by where it is (a detach: enough to
    /// retire it).
    pub fn at(netns: NetnsPath, ifname: IfName) -> Self {
        ContainerEnd {
            netns,
            ifname,
            mac: None,
            up: false,
            addresses: BTreeSet::new(),
            routes: Vec::new(),
            ipv6: false,
        }
    }
}

impl NodeState {
    /// The part of the state that concerns one port: that port, its bridge,
    /// and the published ports that lead to its addresses.
    pub fn slice(&self, host_ifname: &IfName) -> NodeState {
        let mut s = NodeState::default();
        if let Some(p) = self.ports.get(host_ifname) {
            let ips: BTreeSet<IpAddr> = p
                .container
                .iter()
                .flat_map(|c| c.addresses.iter().map(IpNet::addr))
                .collect();
            s.nat.ports = self
                .nat
                .ports
                .iter()
                .filter(|m| ips.contains(&m.container_ip))
                .copied()
                .collect();
            if let Some(b) = p.host.master.as_ref().and_then(|m| self.bridges.get(m)) {
                s.bridges.insert(b.name.clone(), b.clone());
            }
            s.ports.insert(host_ifname.clone(), p.clone());
        }
        s
    }
}

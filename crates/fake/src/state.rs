//! The in-memory machine: namespaces holding links, routes, neighbours and
//! sysctls, and the rules the kernel follows when one of them goes (a link
//! takes its routes, addresses, neighbours and veth peer with it).

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use trellis_link::{LinkSummary, Mac, NetnsId, Ns};
use trellis_route::{HostRoute, Neighbour, Route, RouteKind, Scope};
use trellis_types::{IfName, NetnsPath};

/// `rtm_protocol` of the routes the kernel derives from addresses.
pub const RTPROT_KERNEL: u8 = 2;

/// What sort of link it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// `lo`: every namespace is born with it, down and without addresses
    /// (the host's is up).
    Loopback,
    /// A device without a kind (`eth0`), as a test sets it up.
    Device,
    /// A Linux bridge.
    Bridge,
    /// One end of a veth pair; the other end is `peer_index` in `peer_ns`.
    Veth {
        /// The namespace of the other end.
        peer_ns: Ns,
        /// The other end's index there.
        peer_index: u32,
    },
}

/// One link as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLink {
    /// Interface index (unique across the whole fake, unlike the kernel's).
    pub index: u32,
    /// Name.
    pub name: IfName,
    /// What it is.
    pub kind: LinkKind,
    /// Hardware address.
    pub mac: Mac,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// The index of the bridge it is a port of.
    pub master: Option<u32>,
    /// Addresses with their prefix length, in the order they were added.
    pub addresses: Vec<IpNet>,
    /// Hairpin mode on its bridge port.
    pub hairpin: bool,
    /// Whether it speaks IPv6 on its own (`false`: `disable_ipv6` or
    /// `addr_gen_mode=none` was set through trellis).
    pub ipv6: bool,
}

impl FakeLink {
    pub(crate) fn new(index: u32, name: IfName, kind: LinkKind, mac: Mac) -> Self {
        let mtu = if kind == LinkKind::Loopback {
            65536
        } else {
            1500
        };
        Self {
            index,
            name,
            kind,
            mac,
            mtu,
            up: false,
            master: None,
            addresses: Vec::new(),
            hairpin: false,
            ipv6: true,
        }
    }

    /// As `Links::list_links_with_prefix` reports it.
    pub fn summary(&self) -> LinkSummary {
        let (kind, link) = match &self.kind {
            LinkKind::Loopback | LinkKind::Device => (None, None),
            LinkKind::Bridge => (Some("bridge".to_owned()), None),
            LinkKind::Veth { peer_index, .. } => (Some("veth".to_owned()), Some(*peer_index)),
        };
        LinkSummary {
            index: self.index,
            name: self.name.to_string(),
            kind,
            mac: (self.kind != LinkKind::Loopback).then_some(self.mac),
            mtu: Some(self.mtu),
            up: self.up,
            master: self.master,
            link,
            inet: None,
        }
    }

    /// Brings it up; `lo` gets its addresses as it does in the kernel.
    pub(crate) fn set_up(&mut self) {
        self.up = true;
        if self.kind == LinkKind::Loopback {
            for a in ["127.0.0.1/8", "::1/128"] {
                self.add_address(a.parse().expect("loopback address"));
            }
        }
    }

    pub(crate) fn add_address(&mut self, addr: IpNet) {
        if !self.addresses.contains(&addr) {
            self.addresses.push(addr);
        }
    }
}

/// A route with the protocol that installed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Installed {
    pub route: Route,
    pub protocol: u8,
}

/// A neighbour entry with the protocol that installed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Neigh {
    pub neighbour: Neighbour,
    pub protocol: u8,
}

/// One network namespace.
#[derive(Debug, Clone)]
pub(crate) struct NsState {
    pub id: NetnsId,
    pub links: BTreeMap<u32, FakeLink>,
    pub routes: Vec<Installed>,
    pub neighbours: Vec<Neigh>,
    pub sysctls: BTreeMap<String, String>,
}

impl NsState {
    pub fn new(id: NetnsId, lo_index: u32) -> Self {
        let lo = IfName::parse("ifname", "lo").expect("lo is a valid name");
        let links = BTreeMap::from([(
            lo_index,
            FakeLink::new(lo_index, lo, LinkKind::Loopback, [0; 6]),
        )]);
        Self {
            id,
            links,
            routes: Vec::new(),
            neighbours: Vec::new(),
            sysctls: BTreeMap::new(),
        }
    }

    /// `l` as a link dump reports it here: with its IPv4 settings, read from
    /// the sysctls written in this namespace (never written reads as off:
    /// the fake holds no defaults).
    pub fn summary(&self, l: &FakeLink) -> LinkSummary {
        let on = |knob: &str| {
            let key = format!("ipv4/conf/{}/{knob}", l.name);
            self.sysctls.get(&key).is_some_and(|v| v == "1")
        };
        LinkSummary {
            inet: Some(trellis_netlink::InetConf {
                forwarding: on("forwarding"),
                proxy_arp: on("proxy_arp"),
                route_localnet: on("route_localnet"),
            }),
            ..l.summary()
        }
    }

    pub fn by_name(&self, name: &str) -> Option<&FakeLink> {
        self.links.values().find(|l| l.name.as_str() == name)
    }

    pub fn by_name_mut(&mut self, name: &str) -> Option<&mut FakeLink> {
        self.links.values_mut().find(|l| l.name.as_str() == name)
    }

    /// The routes the kernel derives from the addresses of up links
    /// (`10.1.0.0/24 dev eth0 proto kernel scope link`). IPv6 link-local
    /// prefixes and `lo`'s (local table) are left out.
    pub fn connected(&self) -> Vec<HostRoute> {
        let mut out = Vec::new();
        for l in self
            .links
            .values()
            .filter(|l| l.up && l.kind != LinkKind::Loopback)
        {
            for a in &l.addresses {
                let host_len = if a.addr().is_ipv4() { 32 } else { 128 };
                if a.prefix_len() == host_len || is_v6_link_local(a.addr()) {
                    continue;
                }
                let mut route = Route::on_link(a.trunc(), l.name.clone());
                route.metric = a.addr().is_ipv6().then_some(256);
                out.push(HostRoute {
                    route,
                    protocol: RTPROT_KERNEL,
                });
            }
        }
        out
    }

    /// Every route of the main table as a dump reports it: installed ones,
    /// then the connected ones.
    pub fn main_table(&self) -> Vec<HostRoute> {
        let installed = self.routes.iter().map(|i| HostRoute {
            route: read_back(&i.route),
            protocol: i.protocol,
        });
        installed
            .chain(self.connected().into_iter().map(|mut h| {
                h.route = read_back(&h.route);
                h
            }))
            .collect()
    }

    /// Whether `via` can be a gateway (on `dev`, if given): covered by a
    /// route without a gateway, or a link-local IPv6 address with its device.
    pub fn reachable(&self, via: IpAddr, dev: Option<&IfName>) -> bool {
        if is_v6_link_local(via) {
            return dev.is_some();
        }
        let direct = self
            .routes
            .iter()
            .map(|i| &i.route)
            .cloned()
            .chain(self.connected().into_iter().map(|h| h.route));
        direct
            .filter(|r| r.kind == RouteKind::Unicast && r.via.is_none())
            .filter(|r| dev.is_none() || r.dev.as_ref() == dev)
            .any(|r| r.dst.contains(&via))
    }

    /// Forgets everything that hangs off link `name`: its routes, neighbours
    /// and per-interface sysctls; ports of a bridge of that index are freed.
    pub fn forget_link(&mut self, index: u32, name: &IfName) {
        self.routes.retain(|i| i.route.dev.as_ref() != Some(name));
        self.neighbours.retain(|n| &n.neighbour.dev != name);
        self.sysctls
            .retain(|k, _| sysctl_interface(k) != Some(name.as_str()));
        for port in self.links.values_mut().filter(|l| l.master == Some(index)) {
            port.master = None;
            port.hairpin = false;
        }
    }
}

/// The interface a per-interface sysctl key is about
/// (`ipv4/conf/<if>/…`, `ipv6/neigh/<if>/…`), if it is one.
pub(crate) fn sysctl_interface(key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.split('/').collect();
    (parts.len() > 2 && matches!(parts[0], "ipv4" | "ipv6") && matches!(parts[1], "conf" | "neigh"))
        .then(|| parts[2])
}

/// The kernel's metric for a route that names none.
pub(crate) fn effective_metric(route: &Route) -> u32 {
    route
        .metric
        .unwrap_or(if route.dst.addr().is_ipv6() { 1024 } else { 0 })
}

/// A route as a dump reports it: IPv6 routes always carry their metric
/// (1024 by default) and have no scope; an IPv4 metric of 0 is left out.
pub(crate) fn read_back(route: &Route) -> Route {
    let mut r = route.clone();
    if r.dst.addr().is_ipv6() {
        r.metric = Some(effective_metric(route));
        r.scope = Scope::Universe;
    } else if r.metric == Some(0) {
        r.metric = None;
    }
    r
}

fn is_v6_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Where a namespace lives in the fake's map.
pub(crate) fn key(ns: &Ns) -> String {
    match ns {
        Ns::Host => String::new(),
        Ns::Path(p) => p.to_string(),
    }
}

/// The `Ns` of a registered container path.
pub(crate) fn ns_of(path: &NetnsPath) -> Ns {
    Ns::Path(path.clone())
}

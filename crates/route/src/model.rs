//! Routes and neighbours as trellis describes them.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use trellis_netlink::{Mac, format_mac};
use trellis_types::IfName;

/// How far a route reaches (`rtm_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Via a gateway, or anywhere (`global`).
    #[default]
    Universe,
    /// On the link: the destination is directly attached (`scope link`).
    Link,
    /// This host only.
    Host,
}

/// What a route does with a packet (`rtm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RouteKind {
    /// Forward it.
    #[default]
    Unicast,
    /// Drop it silently (covering an owned block so it never leaks upstream).
    Blackhole,
    /// Drop it with ICMP unreachable.
    Unreachable,
    /// Drop it with ICMP prohibited.
    Prohibit,
}

/// One route in the main table, tagged [`crate::RTPROT_TRELLIS`] when installed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination prefix, without host bits (`0.0.0.0/0` is the default route).
    pub dst: IpNet,
    /// Gateway (`via`), same family as `dst`.
    pub via: Option<IpAddr>,
    /// Output device (`dev`), in the namespace the route goes into.
    pub dev: Option<IfName>,
    /// Scope.
    pub scope: Scope,
    /// Type.
    pub kind: RouteKind,
    /// Metric (`RTA_PRIORITY`); `None` is the kernel's default (0 for IPv4,
    /// 1024 for IPv6).
    pub metric: Option<u32>,
}

impl Route {
    /// `default via <gw> dev <dev>`: a container's default route.
    pub fn default_via(gw: IpAddr, dev: IfName) -> Self {
        let dst = match gw {
            IpAddr::V4(_) => IpNet::V4(Default::default()),
            IpAddr::V6(_) => IpNet::V6(Default::default()),
        };
        Self::via(dst, gw, Some(dev))
    }

    /// `<dst> via <gw> [dev <dev>]` (a peer host's block over the underlay).
    pub fn via(dst: IpNet, gw: IpAddr, dev: Option<IfName>) -> Self {
        Self {
            dst,
            via: Some(gw),
            dev,
            scope: Scope::Universe,
            kind: RouteKind::Unicast,
            metric: None,
        }
    }

    /// `<dst> dev <dev> scope link` (a container's /32 on its host veth, or the
    /// link-local gateway `169.254.1.1` inside a routed-mode container).
    pub fn on_link(dst: IpNet, dev: IfName) -> Self {
        Self {
            dst,
            via: None,
            dev: Some(dev),
            scope: Scope::Link,
            kind: RouteKind::Unicast,
            metric: None,
        }
    }

    /// `blackhole <dst>`.
    pub fn blackhole(dst: IpNet) -> Self {
        Self {
            dst,
            via: None,
            dev: None,
            scope: Scope::Universe,
            kind: RouteKind::Blackhole,
            metric: None,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RouteKind::Unicast => {}
            RouteKind::Blackhole => f.write_str("blackhole ")?,
            RouteKind::Unreachable => f.write_str("unreachable ")?,
            RouteKind::Prohibit => f.write_str("prohibit ")?,
        }
        write!(f, "{}", self.dst)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        Ok(())
    }
}

/// A route of the host's main table as the kernel holds it, whoever
/// installed it: what requests are checked against (a pool that overlaps a
/// directly connected route would cut the host off that link).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostRoute {
    /// The route.
    pub route: Route,
    /// Who installed it (`rtm_protocol`: 2 kernel, 3 boot, 4 static,
    /// [`crate::RTPROT_TRELLIS`] trellis).
    pub protocol: u8,
}

impl HostRoute {
    /// Whether the destination is reached on a link of the host, with no
    /// gateway: a subnet the host is attached to (`10.1.253.0/24 dev eth0`),
    /// IPv4 or IPv6, whatever its scope.
    pub fn is_connected(&self) -> bool {
        self.route.kind == RouteKind::Unicast
            && self.route.via.is_none()
            && self.route.dev.is_some()
    }
}

impl fmt::Display for HostRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.route.fmt(f)
    }
}

/// A permanent neighbour entry (ARP / NDP), e.g. a routed-mode container's
/// gateway `169.254.1.1` at `ee:ee:ee:ee:ee:ee`, which saves the first ARP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Neighbour {
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its MAC.
    pub mac: Mac,
    /// The device it is reached on.
    pub dev: IfName,
}

impl fmt::Display for Neighbour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lladdr {} dev {}",
            self.ip,
            format_mac(&self.mac),
            self.dev
        )
    }
}

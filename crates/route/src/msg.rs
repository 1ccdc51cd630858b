//! Pure builders and parsers: routes and neighbours as netlink messages, and
//! a routed host port's knobs and gateways ([`routed_port`] and its parts).

mod port;
pub use port::*;

use crate::RTPROT_TRELLIS;
use crate::model::{HostRoute, Neighbour, Route, RouteKind, Scope};
use ipnet::IpNet;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage as M};
use nix::errno::Errno;
use std::collections::HashMap;
use std::net::IpAddr;
use trellis_netlink::Mac;
use trellis_netlink::msg::{family, route_message};
use trellis_netlink::nl::{CHANGE, CREATE_REPLACE, DUMP, Request};
use trellis_types::{IfName, InvalidInput};

/// Errnos that mean a route is already gone.
pub const ROUTE_GONE: &[Errno] = &[Errno::ESRCH, Errno::ENOENT];
/// Errnos that mean a neighbour entry is already gone.
pub const NEIGH_GONE: &[Errno] = &[Errno::ENOENT];

/// Checks a route before anything is sent: no host bits in `dst`, `via` of
/// the same family, nothing to forward through on a blackhole.
pub fn check(route: &Route) -> Result<(), InvalidInput> {
    trellis_types::check_prefix("dst", route.dst)?;
    if let Some(via) = route.via
        && family(via) != family(route.dst.addr())
    {
        return Err(InvalidInput::new(
            "via",
            via,
            format!("is not of the same family as dst {}", route.dst),
        ));
    }
    if route.kind != RouteKind::Unicast && (route.via.is_some() || route.dev.is_some()) {
        return Err(InvalidInput::new(
            "kind",
            route,
            "a blackhole, unreachable or prohibit route takes no via or dev",
        ));
    }
    if route.kind == RouteKind::Unicast && route.via.is_none() && route.dev.is_none() {
        return Err(InvalidInput::new(
            "dev",
            route,
            "a unicast route needs a via or a dev",
        ));
    }
    Ok(())
}

fn message(route: &Route, oif: Option<u32>) -> RouteMessage {
    let scope = match route.scope {
        Scope::Universe => RouteScope::Universe,
        Scope::Link => RouteScope::Link,
        Scope::Host => RouteScope::Host,
    };
    let kind = match route.kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Prohibit => RouteType::Prohibit,
    };
    let mut msg = route_message(route.dst, route.via, oif, scope, kind);
    if let Some(metric) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    msg
}

/// Installs `route` (create or replace: installing twice is a no-op). `oif`
/// is the index of `route.dev`, resolved in the target namespace.
pub fn route_add(route: &Route, oif: Option<u32>) -> Result<Request, InvalidInput> {
    check(route)?;
    let msg = M::NewRoute(message(route, oif));
    Ok(Request::new(
        "add route",
        route.to_string(),
        CREATE_REPLACE,
        msg,
    ))
}

/// Removes `route` if it is trellis's (the protocol is part of the match);
/// a route that is already gone counts as removed.
pub fn route_delete(route: &Route, oif: Option<u32>) -> Result<Request, InvalidInput> {
    check(route)?;
    let msg = M::DelRoute(message(route, oif));
    Ok(Request::new("delete route", route.to_string(), CHANGE, msg).done_if(ROUTE_GONE))
}

/// Dumps the routes of every family.
pub fn dump_routes() -> Request {
    Request::new(
        "list routes",
        "",
        DUMP,
        M::GetRoute(RouteMessage::default()),
    )
}

/// The IP in a route attribute, if it is one.
pub(crate) fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Reads back a route trellis installed in the main table; `None` for
/// anyone else's (or one trellis cannot describe). `names` maps ifindex → name.
pub fn parse_route(msg: &RouteMessage, names: &HashMap<u32, String>) -> Option<Route> {
    parse_main_route(msg, names)
        .filter(|r| r.protocol == RTPROT_TRELLIS)
        .map(|r| r.route)
}

/// Reads back any route of the main table, whoever installed it; `None` for
/// other tables and for routes trellis cannot describe. A route whose next
/// hops are given as `RTA_VIA` or `RTA_MULTIPATH` gets the first gateway as
/// its `via`, so that it never reads as directly connected.
pub fn parse_main_route(msg: &RouteMessage, names: &HashMap<u32, String>) -> Option<HostRoute> {
    let h = &msg.header;
    let table = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Table(t) => Some(*t),
        _ => None,
    });
    if table.unwrap_or(u32::from(h.table)) != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let unspecified = match h.address_family {
        AddressFamily::Inet => IpAddr::V4(0.into()),
        AddressFamily::Inet6 => IpAddr::V6(0.into()),
        _ => return None,
    };
    let (mut dst, mut via, mut dev, mut metric) = (unspecified, None, None, None);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = ip_of(a)?,
            RouteAttribute::Gateway(a) => via = ip_of(a),
            RouteAttribute::Via(v) => via = via.or_else(|| via_of(v)),
            RouteAttribute::MultiPath(hops) => via = via.or_else(|| first_gateway(hops)),
            RouteAttribute::Oif(i) => dev = Some(IfName::parse("dev", names.get(i)?).ok()?),
            RouteAttribute::Priority(p) => metric = Some(*p),
            _ => {}
        }
    }
    let kind = match h.kind {
        RouteType::Unicast => RouteKind::Unicast,
        RouteType::BlackHole => RouteKind::Blackhole,
        RouteType::Unreachable => RouteKind::Unreachable,
        RouteType::Prohibit => RouteKind::Prohibit,
        _ => return None,
    };
    let scope = match h.scope {
        RouteScope::Link => Scope::Link,
        RouteScope::Host => Scope::Host,
        _ => Scope::Universe,
    };
    let dst = IpNet::new(dst, h.destination_prefix_length).ok()?;
    let route = Route {
        dst,
        via,
        dev,
        scope,
        kind,
        metric,
    };
    Some(HostRoute {
        route,
        protocol: u8::from(h.protocol),
    })
}

fn via_of(v: &RouteVia) -> Option<IpAddr> {
    match v {
        RouteVia::Inet(a) => Some(IpAddr::V4(*a)),
        RouteVia::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn first_gateway(hops: &[RouteNextHop]) -> Option<IpAddr> {
    hops.iter()
        .flat_map(|h| &h.attributes)
        .find_map(|a| match a {
            RouteAttribute::Gateway(g) => ip_of(g),
            RouteAttribute::Via(v) => via_of(v),
            _ => None,
        })
}

fn neighbour_message(n: &Neighbour, ifindex: u32) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family(n.ip);
    msg.header.ifindex = ifindex;
    msg.header.state = NeighbourState::Permanent;
    msg.header.kind = RouteType::Unicast;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(
            n.ip,
        )));
    msg
}

/// Installs a permanent neighbour entry (create or replace), tagged
/// [`RTPROT_TRELLIS`] (`NDA_PROTOCOL`).
pub fn neighbour_add(n: &Neighbour, ifindex: u32) -> Request {
    let mut msg = neighbour_message(n, ifindex);
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(n.mac.to_vec()));
    msg.attributes
        .push(NeighbourAttribute::Protocol(RouteProtocol::from(
            RTPROT_TRELLIS,
        )));
    Request::new(
        "add neighbour",
        n.to_string(),
        CREATE_REPLACE,
        M::NewNeighbour(msg),
    )
}

/// Removes a neighbour entry; one already gone counts as removed.
pub fn neighbour_delete(n: &Neighbour, ifindex: u32) -> Request {
    let msg = neighbour_message(n, ifindex);
    Request::new(
        "delete neighbour",
        n.to_string(),
        CHANGE,
        M::DelNeighbour(msg),
    )
    .done_if(NEIGH_GONE)
}

/// Dumps the neighbour entries of every device and family (the kernel
/// filters a neighbour dump by device only under strict checking, so the
/// caller picks its device's out). `dev` names what the caller is after,
/// for errors.
pub fn dump_neighbours(subject: &str) -> Request {
    Request::new(
        "list neighbours",
        subject,
        DUMP,
        M::GetNeighbour(NeighbourMessage::default()),
    )
}

/// Reads back a neighbour entry on `dev` (the device the caller resolved
/// `msg`'s ifindex to); `None` for one without an IP or a MAC (an entry
/// still `INCOMPLETE`, or one that `FAILED`).
pub fn parse_neighbour(msg: &NeighbourMessage, dev: &IfName) -> Option<Neighbour> {
    let mut ip = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = Mac::try_from(l.as_slice()).ok(),
            _ => {}
        }
    }
    Some(Neighbour {
        ip: ip?,
        mac: mac?,
        dev: dev.clone(),
    })
}

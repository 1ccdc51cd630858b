//! Peer routes: "block X via underlay address Y", one per block another host
//! owns (host-gw). Declarative: the caller says what the whole set should be,
//! [`peer_diff`] works out what to add and remove against what is installed.

use crate::RTPROT_TRELLIS;
use crate::model::Route;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteType};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use trellis_types::InvalidInput;

/// A route to another host's block through that host's underlay address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerRoute {
    /// The block (`10.8.1.0/26`), without host bits.
    pub block: IpNet,
    /// The peer host's underlay address, same family as `block`.
    pub via: IpAddr,
}

impl PeerRoute {
    /// As a [`Route`] (`<block> via <via>`; the kernel picks the device).
    pub fn route(&self) -> Route {
        Route::via(self.block, self.via, None)
    }
}

impl fmt::Display for PeerRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.block, self.via)
    }
}

/// What [`crate::Routes::set_peer_routes`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerRouteChanges {
    /// Installed, or replaced because their `via` changed.
    pub added: Vec<PeerRoute>,
    /// Removed: installed but no longer wanted.
    pub removed: Vec<PeerRoute>,
}

/// Checks a desired set: valid routes, each block at most once.
pub fn check_desired(desired: &[PeerRoute]) -> Result<(), InvalidInput> {
    let mut seen = HashMap::new();
    for p in desired {
        crate::msg::check(&p.route())?;
        if let Some(other) = seen.insert(p.block, p.via)
            && other != p.via
        {
            return Err(InvalidInput::new(
                "desired",
                p,
                format!("block {} is also routed via {other}", p.block),
            ));
        }
    }
    Ok(())
}

/// What to add (new blocks, or a changed `via`: installing replaces) and what
/// to remove (installed blocks no longer desired), in block order.
pub fn peer_diff(installed: &[PeerRoute], desired: &[PeerRoute]) -> PeerRouteChanges {
    let have: BTreeMap<IpNet, IpAddr> = installed.iter().map(|p| (p.block, p.via)).collect();
    let want: BTreeMap<IpNet, IpAddr> = desired.iter().map(|p| (p.block, p.via)).collect();
    let added = want
        .iter()
        .filter(|(b, v)| have.get(b) != Some(v))
        .map(|(&block, &via)| PeerRoute { block, via })
        .collect();
    let removed = have
        .iter()
        .filter(|(b, _)| !want.contains_key(b))
        .map(|(&block, &via)| PeerRoute { block, via })
        .collect();
    PeerRouteChanges { added, removed }
}

/// Reads back a peer route: trellis's ([`RTPROT_TRELLIS`]), main table,
/// unicast, with a gateway and a non-default destination. Container default
/// routes live in containers, and host routes to containers have no gateway,
/// so on the host this is exactly the set of peer routes.
pub fn parse_peer_route(msg: &RouteMessage) -> Option<PeerRoute> {
    let h = &msg.header;
    let table = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Table(t) => Some(*t),
        _ => None,
    });
    if u8::from(h.protocol) != RTPROT_TRELLIS
        || table.unwrap_or(u32::from(h.table)) != u32::from(RouteHeader::RT_TABLE_MAIN)
        || h.kind != RouteType::Unicast
        || h.destination_prefix_length == 0
        || !matches!(h.address_family, AddressFamily::Inet | AddressFamily::Inet6)
    {
        return None;
    }
    let (mut dst, mut via) = (None, None);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = crate::msg::ip_of(a),
            RouteAttribute::Gateway(a) => via = crate::msg::ip_of(a),
            _ => {}
        }
    }
    let block = IpNet::new(dst?, h.destination_prefix_length).ok()?;
    Some(PeerRoute { block, via: via? })
}

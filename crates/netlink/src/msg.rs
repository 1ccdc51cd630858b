//! The pure builders both siblings use: an address on a link (a container's
//! addresses and a bridge's gateway in trellis-link, a routed port's gateways
//! in trellis-route) and the one shape of a route trellis installs (a
//! container's routes in trellis-link, every other route in trellis-route).

use crate::RTPROT_TRELLIS;
use crate::nl::{CREATE_REPLACE, Request};
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::address::{AddressHeaderFlags, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::AddressMessageBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address family of `ip`, as netlink headers carry it.
pub fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Adds (or refreshes) an address on interface `index`; idempotent.
///
/// IPv6 addresses get `IFA_F_NODAD`: trellis's addresses are unique by
/// construction (IPAM, a bridge's or routed port's gateway), and duplicate
/// address detection would keep them `tentative` — unusable, with
/// `connect()` failing `EADDRNOTAVAIL` — for a second or more
/// (`addrconf_dad_begin`, one `retrans_time` per `dad_transmits`).
pub fn address_add(index: u32, subject: &str, addr: IpNet) -> Request {
    let mut msg: AddressMessage = match addr.addr() {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(a, addr.prefix_len())
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(a, addr.prefix_len())
            .build(),
    };
    if addr.addr().is_ipv6() {
        msg.header.flags |= AddressHeaderFlags::Nodad;
    }
    Request::new(
        "add address",
        format!("{addr} on {subject}"),
        CREATE_REPLACE,
        M::NewAddress(msg),
    )
}

/// Removes an address from interface `index`; one already gone is done.
pub fn address_del(index: u32, subject: &str, addr: IpNet) -> Request {
    let mut req = address_add(index, subject, addr);
    req.op = "remove address";
    req.flags = crate::nl::CHANGE;
    req.message = match req.message {
        M::NewAddress(m) => M::DelAddress(m),
        other => other,
    };
    req.done_if(&[nix::errno::Errno::EADDRNOTAVAIL, nix::errno::Errno::ENODEV])
}

/// A route message in the main table, tagged [`RTPROT_TRELLIS`]: the one
/// shape every trellis route starts from, so that whichever crate builds a
/// route, reconcile finds it by its tag.
pub fn route_message(
    dst: IpNet,
    via: Option<IpAddr>,
    oif: Option<u32>,
    scope: RouteScope,
    kind: RouteType,
) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = family(dst.addr());
    h.destination_prefix_length = dst.prefix_len();
    h.table = RouteHeader::RT_TABLE_MAIN;
    h.protocol = RouteProtocol::from(RTPROT_TRELLIS);
    h.scope = scope;
    h.kind = kind;
    if dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst.addr())));
    }
    if let Some(via) = via {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(via)));
    }
    if let Some(oif) = oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_create_or_replace_and_v6_skips_dad() {
        let req = address_add(3, "eth0", "10.0.0.2/24".parse().unwrap());
        assert_eq!(
            (req.op, req.subject.as_str(), req.flags),
            ("add address", "10.0.0.2/24 on eth0", CREATE_REPLACE)
        );
        let M::NewAddress(a) = req.message else {
            panic!()
        };
        assert_eq!((a.header.index, a.header.prefix_len), (3, 24));
        assert_eq!(a.attributes.len(), 3, "address, local, broadcast: {a:?}");
        assert!(a.header.flags.is_empty());
        let M::NewAddress(m) = address_add(3, "eth0", "fd00:8::2/128".parse().unwrap()).message
        else {
            panic!()
        };
        assert!(m.header.flags.contains(AddressHeaderFlags::Nodad));
    }

    #[test]
    fn routes_are_tagged_in_the_main_table_and_a_default_has_no_destination() {
        let msg = route_message(
            "0.0.0.0/0".parse().unwrap(),
            Some("10.0.0.1".parse().unwrap()),
            Some(4),
            RouteScope::Universe,
            RouteType::Unicast,
        );
        let h = &msg.header;
        assert_eq!(
            (h.address_family, h.protocol, h.table),
            (
                AddressFamily::Inet,
                RouteProtocol::Other(RTPROT_TRELLIS),
                RouteHeader::RT_TABLE_MAIN
            )
        );
        assert_eq!(
            msg.attributes,
            vec![
                RouteAttribute::Gateway("10.0.0.1".parse::<Ipv4Addr>().unwrap().into()),
                RouteAttribute::Oif(4),
            ]
        );
        let msg = route_message(
            "fd00:8::/64".parse().unwrap(),
            None,
            None,
            RouteScope::Universe,
            RouteType::BlackHole,
        );
        assert_eq!(msg.header.destination_prefix_length, 64);
        assert_eq!(
            msg.attributes,
            vec![RouteAttribute::Destination(
                "fd00:8::".parse::<Ipv6Addr>().unwrap().into()
            )]
        );
    }
}

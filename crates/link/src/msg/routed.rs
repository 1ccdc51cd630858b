//! Builders for routed mode (Calico's model): the per-interface knobs of a
//! host port, its gateway addresses, and routes tagged [`RTPROT_TRELLIS`].
//!
//! Everything here is one netlink message per concern, so a host port is
//! configured in one pipelined batch on the host socket, with no thread:
//!
//! * `forwarding` and `proxy_arp` are IPv4 devconf values, set by
//!   `RTM_SETLINK` with `IFLA_AF_SPEC` → `AF_INET` → `IFLA_INET_CONF`
//!   (`inet_set_link_af` → `ipv4_devconf_set`, the same store as the sysctl);
//! * `neigh.<if>.proxy_delay` is a neighbour-table parameter, set by
//!   `RTM_SETNEIGHTBL` (`neightbl_set`, `NDTPA_IFINDEX` + `NDTPA_PROXY_DELAY`);
//! * `addr_gen_mode=none` is `IFLA_AF_SPEC` → `AF_INET6` →
//!   `IFLA_INET6_ADDR_GEN_MODE` (`inet6_set_link_af`). The kernel refuses
//!   `IFLA_AF_SPEC` in the `RTM_NEWLINK` that creates a veth
//!   (`EAFNOSUPPORT`), so it goes in the same `RTM_SETLINK`, which is still in
//!   time: the host end has no carrier until the container end comes up, and
//!   `addrconf_notify` only makes the EUI-64 link-local at carrier-up.

use crate::RTPROT_TRELLIS;
use crate::nl::{CHANGE, CREATE_REPLACE, Request};
use crate::routed::{ROUTED_GATEWAY_V4, ROUTED_GATEWAY_V6, RoutedHostPort};
use crate::spec::ContainerRoute;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::address::AddressScope;
use netlink_packet_route::link::{
    AfSpecInet, AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InetDevConf, LinkAttribute, LinkMessage,
};
use netlink_packet_route::neighbour_table::{
    NeighbourTableAttribute, NeighbourTableMessage, NeighbourTableParameter,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use std::net::IpAddr;

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A route message in the main table, tagged [`RTPROT_TRELLIS`]: the one
/// shape every trellis route starts from (trellis-route builds on it).
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

/// A container route on interface `oif` (create or replace): `scope link`
/// without a gateway, `global` with one.
pub fn container_route_add(route: &ContainerRoute, oif: u32) -> Request {
    let scope = match route.via {
        None => RouteScope::Link,
        Some(_) => RouteScope::Universe,
    };
    let msg = route_message(route.dst, route.via, Some(oif), scope, RouteType::Unicast);
    Request::new(
        "add route",
        route.to_string(),
        CREATE_REPLACE,
        M::NewRoute(msg),
    )
}

/// Like [`super::address_add`], with an explicit scope.
pub fn address_add_scoped(index: u32, subject: &str, addr: IpNet, scope: AddressScope) -> Request {
    let mut req = super::address_add(index, subject, addr);
    if let M::NewAddress(msg) = &mut req.message {
        msg.header.scope = scope;
    }
    req
}

/// `forwarding=1`, `proxy_arp=1` (IPv4) and `addr_gen_mode=none` (IPv6) on
/// link `index`, in one `RTM_SETLINK`.
pub fn routed_port_conf(port: &RoutedHostPort) -> Request {
    let mut specs = Vec::new();
    if port.families.v4 {
        let mut conf = InetDevConf::default();
        conf.forwarding = 1;
        conf.proxy_arp = 1;
        specs.push(AfSpecUnspec::Inet(vec![AfSpecInet::DevConfRequest(conf)]));
    }
    if port.families.v6 {
        specs.push(AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            In6AddrGenMode::None,
        )]));
    }
    let mut msg = LinkMessage::default();
    msg.header.index = port.index;
    msg.attributes.push(LinkAttribute::AfSpecUnspec(specs));
    Request::new(
        "set routed knobs on",
        port.name.as_str(),
        CHANGE,
        M::SetLink(msg),
    )
}

/// `neigh.<if>.proxy_delay=0` in the ARP table: without it a proxy answer to
/// a broadcast request waits a random part of 0.8 s (`arp_process` →
/// `pneigh_enqueue`).
pub fn proxy_delay_zero(port: &RoutedHostPort) -> Request {
    let mut msg = NeighbourTableMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.attributes
        .push(NeighbourTableAttribute::Name("arp_cache".into()));
    msg.attributes.push(NeighbourTableAttribute::Parms(vec![
        NeighbourTableParameter::Ifindex(port.index),
        NeighbourTableParameter::ProxyDelay(0),
    ]));
    Request::new(
        "set proxy_delay on",
        port.name.as_str(),
        CHANGE,
        M::SetNeighbourTable(msg),
    )
}

/// The gateway addresses of a host port: `169.254.1.1/32 scope host` and
/// `fe80::ecee:eeff:feee:eeee/64` (no DAD). See [`crate::routed`] for why the
/// IPv4 gateway is an address of the port rather than only a proxy-ARP target.
pub fn gateway_addresses(port: &RoutedHostPort) -> Vec<Request> {
    let mut reqs = Vec::new();
    let name = port.name.as_str();
    if port.families.v4 {
        let gw = IpNet::new(IpAddr::V4(ROUTED_GATEWAY_V4), 32).expect("/32");
        reqs.push(address_add_scoped(port.index, name, gw, AddressScope::Host));
    }
    if port.families.v6 {
        let gw = IpNet::new(IpAddr::V6(ROUTED_GATEWAY_V6), 64).expect("/64");
        reqs.push(address_add_scoped(port.index, name, gw, AddressScope::Link));
    }
    reqs
}

/// Everything a routed host port needs that netlink can set, in order.
pub fn routed_port(port: &RoutedHostPort) -> Vec<Request> {
    let mut reqs = vec![routed_port_conf(port)];
    if port.families.v4 {
        reqs.push(proxy_delay_zero(port));
    }
    reqs.extend(gateway_addresses(port));
    reqs
}

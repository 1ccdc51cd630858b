//! Builders for a routed host port (Calico's model): its per-interface
//! knobs and its gateway addresses. See [`crate::routed`] for the kernel
//! rules behind each.
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

use crate::routed::{ROUTED_GATEWAY_V4, ROUTED_GATEWAY_V6, RoutedHostPort};
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
use std::net::IpAddr;
use trellis_netlink::msg::address_add;
use trellis_netlink::nl::{CHANGE, Request};

/// Like [`trellis_netlink::msg::address_add`], with an explicit scope.
pub fn address_add_scoped(index: u32, subject: &str, addr: IpNet, scope: AddressScope) -> Request {
    let mut req = address_add(index, subject, addr);
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

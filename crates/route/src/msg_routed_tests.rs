//! Golden-value tests of the routed host port's builders in `msg`.

use crate::msg::*;
use crate::{Families, RoutedHostPort};
use netlink_packet_core::Emitable;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressScope};
use netlink_packet_route::neighbour_table::{NeighbourTableAttribute, NeighbourTableParameter};
use trellis_netlink::nl::{CHANGE, CREATE_REPLACE};
use trellis_types::IfName;

fn port(families: Families) -> RoutedHostPort {
    RoutedHostPort {
        name: IfName::parse("ifname", "tr0123456789abc").unwrap(),
        index: 7,
        families,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn port_knobs_are_one_setlink_with_inet_conf_and_addr_gen_mode() {
    let req = routed_port_conf(&port(Families::DUAL));
    assert_eq!((req.op, req.flags), ("set routed knobs on", CHANGE));
    let M::SetLink(msg) = req.message else {
        panic!("{req:?}")
    };
    let mut buf = vec![0; msg.buffer_len()];
    msg.emit(&mut buf);
    // ifinfomsg: AF_UNSPEC, index 7, no flags, no change mask.
    assert_eq!(hex(&buf[..16]), "00000000070000000000000000000000");
    assert_eq!(
        hex(&buf[16..]),
        concat!(
            "28001a00", // IFLA_AF_SPEC, 40 bytes
            "18000200", // AF_INET, 24 bytes
            "14000180", // IFLA_INET_CONF | NLA_F_NESTED, 20 bytes
            "08000100", "01000000", // IPV4_DEVCONF_FORWARDING = 1
            "08000300", "01000000", // IPV4_DEVCONF_PROXY_ARP = 1
            "0c000a00", // AF_INET6, 12 bytes (the inner attribute padded)
            "05000800", "01000000", // IFLA_INET6_ADDR_GEN_MODE = NONE (padded)
        )
    );
    let v4 = routed_port_conf(&port(Families::V4));
    let M::SetLink(msg) = v4.message else {
        panic!()
    };
    assert_eq!(
        msg.buffer_len(),
        16 + 4 + 24,
        "no AF_INET6 part for IPv4 only"
    );
}

#[test]
fn proxy_delay_is_set_on_the_ports_arp_parms() {
    let req = proxy_delay_zero(&port(Families::V4));
    assert_eq!(req.flags, CHANGE);
    let M::SetNeighbourTable(msg) = req.message else {
        panic!("{req:?}")
    };
    assert_eq!(msg.header.family, AddressFamily::Inet);
    assert_eq!(
        msg.attributes,
        vec![
            NeighbourTableAttribute::Name("arp_cache".into()),
            NeighbourTableAttribute::Parms(vec![
                NeighbourTableParameter::Ifindex(7),
                NeighbourTableParameter::ProxyDelay(0),
            ]),
        ]
    );
}

#[test]
fn gateways_are_addresses_of_the_port_scope_host_and_without_dad() {
    let reqs = gateway_addresses(&port(Families::DUAL));
    let shapes: Vec<_> = reqs
        .iter()
        .map(|r| {
            let M::NewAddress(m) = &r.message else {
                panic!("{r:?}")
            };
            assert_eq!((r.flags, m.header.index), (CREATE_REPLACE, 7));
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(ip.to_string()),
                _ => None,
            });
            (local, m.header.prefix_len, m.header.scope, m.header.flags)
        })
        .collect();
    assert_eq!(
        shapes,
        vec![
            (
                Some("169.254.1.1".into()),
                32,
                AddressScope::Host,
                AddressHeaderFlags::empty()
            ),
            (
                Some("fe80::ecee:eeff:feee:eeee".into()),
                64,
                AddressScope::Link,
                AddressHeaderFlags::Nodad
            ),
        ]
    );
    let all = routed_port(&port(Families::V4));
    let ops: Vec<_> = all.iter().map(|r| r.op).collect();
    assert_eq!(
        ops,
        ["set routed knobs on", "set proxy_delay on", "add address"]
    );
    let v6: Vec<_> = routed_port(&port(Families::V6))
        .iter()
        .map(|r| r.op)
        .collect();
    assert_eq!(v6, ["set routed knobs on", "add address"]);
}

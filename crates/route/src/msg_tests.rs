//! Golden-value tests of the pure builders and parsers in `msg`.

use crate::msg::*;
use crate::{Neighbour, RTPROT_TRELLIS, Route, RouteKind, Scope};
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourState};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteProtocol, RouteScope, RouteType,
};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use trellis_netlink::nl::{CHANGE, CREATE_REPLACE};
use trellis_types::IfName;

fn ifn(s: &str) -> IfName {
    IfName::parse("ifname", s).unwrap()
}

#[test]
fn default_route_via_gateway_is_tagged_and_has_no_dst_attribute() {
    let r = Route::default_via("192.168.169.1".parse().unwrap(), ifn("eth0"));
    let req = route_add(&r, Some(5)).unwrap();
    assert_eq!(
        (req.op, req.subject.as_str(), req.flags),
        (
            "add route",
            "0.0.0.0/0 via 192.168.169.1 dev eth0",
            CREATE_REPLACE
        )
    );
    let M::NewRoute(m) = req.message else {
        panic!()
    };
    assert_eq!(m.header.protocol, RouteProtocol::Other(RTPROT_TRELLIS));
    assert_eq!(
        (m.header.destination_prefix_length, m.header.table),
        (0, 254)
    );
    assert_eq!(
        (m.header.scope, m.header.kind),
        (RouteScope::Universe, RouteType::Unicast)
    );
    assert_eq!(
        m.attributes,
        vec![
            RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(192, 168, 169, 1))),
            RouteAttribute::Oif(5),
        ]
    );
}

#[test]
fn blackhole_and_scope_link_routes() {
    let b = Route::blackhole("10.8.0.0/26".parse().unwrap());
    let M::NewRoute(m) = route_add(&b, None).unwrap().message else {
        panic!()
    };
    assert_eq!(m.header.kind, RouteType::BlackHole);
    assert_eq!(
        m.attributes,
        vec![RouteAttribute::Destination(RouteAddress::Inet(
            Ipv4Addr::new(10, 8, 0, 0)
        ))]
    );
    let l = Route::on_link("169.254.1.1/32".parse().unwrap(), ifn("eth0"));
    let M::NewRoute(m) = route_add(&l, Some(2)).unwrap().message else {
        panic!()
    };
    assert_eq!(
        (m.header.scope, m.header.destination_prefix_length),
        (RouteScope::Link, 32)
    );
}

#[test]
fn bad_routes_are_refused_naming_the_field() {
    let mut r = Route::default_via("192.168.169.1".parse().unwrap(), ifn("eth0"));
    r.dst = "10.0.0.1/24".parse().unwrap();
    assert_eq!(route_add(&r, Some(1)).unwrap_err().field, "dst");
    let r = Route::via(
        "fd00::/64".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        None,
    );
    assert_eq!(route_add(&r, None).unwrap_err().field, "via");
    let mut b = Route::blackhole("10.0.0.0/24".parse().unwrap());
    b.dev = Some(ifn("eth0"));
    assert_eq!(route_add(&b, Some(1)).unwrap_err().field, "kind");
    let mut r = Route::on_link("10.0.0.0/24".parse().unwrap(), ifn("eth0"));
    r.dev = None;
    assert_eq!(route_add(&r, None).unwrap_err().field, "dev");
}

#[test]
fn deletes_are_idempotent() {
    let r = Route::blackhole("10.8.0.0/26".parse().unwrap());
    let req = route_delete(&r, None).unwrap();
    assert_eq!((req.flags, req.done_if), (CHANGE, ROUTE_GONE));
    let n = Neighbour {
        ip: "169.254.1.1".parse().unwrap(),
        mac: [0xee; 6],
        dev: ifn("eth0"),
    };
    assert_eq!(neighbour_delete(&n, 3).done_if, NEIGH_GONE);
}

#[test]
fn what_is_built_parses_back_and_others_routes_are_ignored() {
    let names = HashMap::from([(5, "eth0".to_owned())]);
    for r in [
        Route::default_via("192.168.169.1".parse().unwrap(), ifn("eth0")),
        Route::via(
            "fd00:9::/64".parse().unwrap(),
            "fd00::1".parse().unwrap(),
            Some(ifn("eth0")),
        ),
        Route::blackhole("fd00:8::/64".parse().unwrap()),
        Route {
            metric: Some(7),
            scope: Scope::Link,
            ..Route::on_link("10.0.0.2/32".parse().unwrap(), ifn("eth0"))
        },
    ] {
        let oif = r.dev.as_ref().map(|_| 5);
        let M::NewRoute(m) = route_add(&r, oif).unwrap().message else {
            panic!()
        };
        assert_eq!(parse_route(&m, &names), Some(r));
        let mut foreign = m.clone();
        foreign.header.protocol = RouteProtocol::Boot;
        assert_eq!(parse_route(&foreign, &names), None);
    }
    assert_eq!(RouteKind::default(), RouteKind::Unicast);
}

#[test]
fn neighbours_are_permanent_and_tagged() {
    let n = Neighbour {
        ip: "169.254.1.1".parse().unwrap(),
        mac: [0xee; 6],
        dev: ifn("eth0"),
    };
    let M::NewNeighbour(m) = neighbour_add(&n, 3).message else {
        panic!()
    };
    assert_eq!(
        (m.header.ifindex, m.header.state),
        (3, NeighbourState::Permanent)
    );
    assert!(
        m.attributes
            .contains(&NeighbourAttribute::LinkLayerAddress(vec![0xee; 6]))
    );
    assert!(
        m.attributes
            .contains(&NeighbourAttribute::Protocol(RouteProtocol::Other(
                RTPROT_TRELLIS
            )))
    );
}

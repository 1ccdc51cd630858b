//! Golden-value tests of the routed-mode batch and the peer-route diff.

use crate::msg::route_add;
use crate::peer::{check_desired, parse_peer_route, peer_diff};
use crate::routed::routed_host;
use crate::{PeerRoute, Route, RoutedEndpoint};
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::neighbour::NeighbourAttribute;
use netlink_packet_route::route::{RouteAttribute, RouteProtocol, RouteScope};
use trellis_types::IfName;

fn endpoint(addrs: &[&str]) -> RoutedEndpoint {
    RoutedEndpoint {
        host_if: IfName::parse("ifname", "tr0123456789abc").unwrap(),
        host_ifindex: 9,
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        container_mac: [2, 0, 0, 0, 0, 5],
    }
}

#[test]
fn the_host_side_is_one_batch_knobs_then_routes_then_neighbours() {
    let reqs = routed_host(&endpoint(&["10.8.0.2", "fd00:8::2"])).unwrap();
    let ops: Vec<_> = reqs.iter().map(|r| (r.op, r.subject.as_str())).collect();
    assert_eq!(
        ops,
        [
            ("set routed knobs on", "tr0123456789abc"),
            ("set proxy_delay on", "tr0123456789abc"),
            ("add address", "169.254.1.1/32 on tr0123456789abc"),
            (
                "add address",
                "fe80::ecee:eeff:feee:eeee/64 on tr0123456789abc"
            ),
            ("add route", "10.8.0.2/32 dev tr0123456789abc"),
            ("add route", "fd00:8::2/128 dev tr0123456789abc"),
            (
                "add neighbour",
                "10.8.0.2 lladdr 02:00:00:00:00:05 dev tr0123456789abc"
            ),
            (
                "add neighbour",
                "fd00:8::2 lladdr 02:00:00:00:00:05 dev tr0123456789abc"
            ),
        ]
    );
    let M::NewRoute(r) = &reqs[4].message else {
        panic!()
    };
    assert_eq!(r.header.scope, RouteScope::Link);
    assert!(r.attributes.contains(&RouteAttribute::Oif(9)));
    let M::NewNeighbour(n) = &reqs[6].message else {
        panic!()
    };
    assert_eq!(n.header.ifindex, 9);
    assert!(
        n.attributes
            .contains(&NeighbourAttribute::LinkLayerAddress(vec![
                2, 0, 0, 0, 0, 5
            ]))
    );
    let err = routed_host(&endpoint(&[])).unwrap_err();
    assert_eq!(err.field, "addresses");
}

fn peer(block: &str, via: &str) -> PeerRoute {
    PeerRoute {
        block: block.parse().unwrap(),
        via: via.parse().unwrap(),
    }
}

#[test]
fn peer_diff_adds_new_and_moved_blocks_and_removes_unwanted_ones() {
    let installed = [
        peer("10.8.1.0/26", "10.1.253.102"),
        peer("10.8.2.0/26", "10.1.253.103"),
        peer("10.8.3.0/26", "10.1.253.104"),
    ];
    let desired = [
        peer("10.8.1.0/26", "10.1.253.102"),
        peer("10.8.2.0/26", "10.1.253.105"),
        peer("10.8.4.0/26", "10.1.253.106"),
    ];
    let d = peer_diff(&installed, &desired);
    assert_eq!(d.added, vec![desired[1], desired[2]]);
    assert_eq!(d.removed, vec![installed[2]]);
    assert_eq!(peer_diff(&desired, &desired), Default::default());
}

#[test]
fn desired_peer_routes_are_checked() {
    let same_block = [
        peer("10.8.1.0/26", "10.0.0.1"),
        peer("10.8.1.0/26", "10.0.0.2"),
    ];
    assert_eq!(check_desired(&same_block).unwrap_err().field, "desired");
    let dup = [
        peer("10.8.1.0/26", "10.0.0.1"),
        peer("10.8.1.0/26", "10.0.0.1"),
    ];
    assert!(check_desired(&dup).is_ok(), "a repeat is harmless");
    assert_eq!(
        check_desired(&[peer("10.8.1.1/26", "10.0.0.1")])
            .unwrap_err()
            .field,
        "dst"
    );
    assert_eq!(
        check_desired(&[peer("fd00::/64", "10.0.0.1")])
            .unwrap_err()
            .field,
        "via"
    );
}

#[test]
fn only_tagged_gateway_routes_read_back_as_peer_routes() {
    let p = peer("10.8.1.0/26", "10.1.253.102");
    let M::NewRoute(m) = route_add(&p.route(), None).unwrap().message else {
        panic!()
    };
    assert_eq!(parse_peer_route(&m), Some(p));
    let mut foreign = m.clone();
    foreign.header.protocol = RouteProtocol::Static;
    assert_eq!(parse_peer_route(&foreign), None);
    let gw = "169.254.1.1".parse().unwrap();
    let eth0 = IfName::parse("ifname", "eth0").unwrap();
    for other in [
        Route::blackhole("10.8.0.0/26".parse().unwrap()),
        Route::on_link("10.8.0.2/32".parse().unwrap(), eth0.clone()),
        Route::default_via(gw, eth0),
    ] {
        let oif = other.dev.as_ref().map(|_| 2);
        let M::NewRoute(m) = route_add(&other, oif).unwrap().message else {
            panic!()
        };
        assert_eq!(parse_peer_route(&m), None, "{other}");
    }
}

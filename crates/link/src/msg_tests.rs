//! Golden-value tests of the pure builders in `msg`.

use crate::msg::*;
use crate::{
    BridgeSpec, ContainerRoute, LinkRef, LinkSummary, RTPROT_TRELLIS, VethSpec, bridge_mac,
};
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo,
};
use netlink_packet_route::route::{RouteAttribute, RouteProtocol, RouteScope};
use nix::errno::Errno;
use trellis_netlink::nl::{CHANGE, CREATE_EXCL, CREATE_REPLACE};
use trellis_types::{IfName, NetnsPath};

fn ifn(s: &str) -> IfName {
    IfName::parse("ifname", s).unwrap()
}

fn bridge() -> BridgeSpec {
    BridgeSpec {
        name: ifn("br-test"),
        gateway: vec!["192.168.169.1/24".parse().unwrap()],
        mac: None,
        mtu: Some(1400),
    }
}

#[test]
fn bridge_create_sets_kind_mac_mtu_and_up() {
    let req = bridge_create(&bridge());
    assert_eq!(req.flags, CREATE_EXCL);
    let M::NewLink(l) = req.message else {
        panic!("{req:?}")
    };
    assert!(l.header.flags.contains(LinkFlags::Up) && l.header.change_mask.contains(LinkFlags::Up));
    assert_eq!(
        l.attributes,
        vec![
            LinkAttribute::IfName("br-test".into()),
            LinkAttribute::Address(bridge_mac(&ifn("br-test")).to_vec()),
            LinkAttribute::Mtu(1400),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ]
    );
}

#[test]
fn bridge_update_sends_only_what_differs() {
    let spec = bridge();
    let mut existing = LinkSummary {
        index: 7,
        name: "br-test".into(),
        kind: Some("bridge".into()),
        mac: Some(bridge_mac(&spec.name)),
        mtu: Some(1400),
        up: true,
        master: None,
        link: None,
        inet: None,
    };
    assert_eq!(
        bridge_update(&existing, &spec),
        None,
        "in line: nothing to send"
    );
    existing.mtu = Some(1500);
    existing.up = false;
    let req = bridge_update(&existing, &spec).unwrap();
    assert_eq!(req.flags, CHANGE);
    let M::SetLink(l) = req.message else { panic!() };
    assert_eq!(l.header.index, 7);
    assert_eq!(l.attributes, vec![LinkAttribute::Mtu(1400)]);
    assert!(l.header.change_mask.contains(LinkFlags::Up));
}

#[test]
fn veth_peer_is_born_in_the_container_netns_named_and_enslaved() {
    let spec = VethSpec {
        host_name: ifn("tr0123456789abc"),
        container_netns: NetnsPath::parse("netns", "/run/netns/c").unwrap(),
        container_name: ifn("eth0"),
        mtu: Some(1450),
        container_mac: None,
        host_mac: None,
        master: Some(LinkRef::Index(7)),
        host_ipv6: true,
    };
    let mac = [2, 0, 0, 0, 0, 1];
    let req = veth_create(&spec, 42, Some(7), mac);
    assert_eq!(req.op, "create veth");
    assert_eq!(req.subject, "tr0123456789abc (peer eth0 in /run/netns/c)");
    let M::NewLink(host) = req.message else {
        panic!()
    };
    assert!(host.header.flags.contains(LinkFlags::Up));
    // Without IPv6 on the host end it is created down: it comes up once
    // `disable_ipv6` is set.
    let no_v6 = VethSpec {
        host_ipv6: false,
        ..spec.clone()
    };
    let M::NewLink(down) = veth_create(&no_v6, 42, Some(7), mac).message else {
        panic!()
    };
    assert!(!down.header.flags.contains(LinkFlags::Up));
    assert!(!down.header.change_mask.contains(LinkFlags::Up));
    assert_eq!(
        &host.attributes[..3],
        &[
            LinkAttribute::IfName("tr0123456789abc".into()),
            LinkAttribute::Mtu(1450),
            LinkAttribute::Controller(7),
        ]
    );
    let LinkAttribute::LinkInfo(info) = &host.attributes[3] else {
        panic!()
    };
    assert_eq!(info[0], LinkInfo::Kind(InfoKind::Veth));
    let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = &info[1] else {
        panic!()
    };
    assert!(
        peer.header.change_mask.is_empty(),
        "peer up fails with ENOTCONN"
    );
    assert_eq!(
        peer.attributes,
        vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::NetNsFd(42),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::Mtu(1450),
        ]
    );
}

#[test]
fn deletes_are_idempotent_and_groups_batch() {
    let d = delete("tr0123456789abc");
    assert_eq!(d.done_if, &[Errno::ENODEV]);
    let M::DelLink(l) = delete_group(0x7400_1001).message else {
        panic!()
    };
    assert_eq!(l.header.index, 0);
    assert_eq!(l.attributes, vec![LinkAttribute::Group(0x7400_1001)]);
    assert_eq!(set_group("x", 5).done_if, &[Errno::ENODEV]);
}

#[test]
fn container_routes_are_tagged_and_scoped_by_their_gateway() {
    let gw = "169.254.1.1".parse().unwrap();
    let on_link = container_route_add(&ContainerRoute::on_link(gw), 3);
    assert_eq!(
        (on_link.op, on_link.subject.as_str(), on_link.flags),
        ("add route", "169.254.1.1/32 scope link", CREATE_REPLACE)
    );
    let M::NewRoute(m) = on_link.message else {
        panic!()
    };
    assert_eq!(
        (m.header.scope, m.header.protocol, m.header.table),
        (RouteScope::Link, RouteProtocol::Other(RTPROT_TRELLIS), 254)
    );
    let M::NewRoute(m) = container_route_add(&ContainerRoute::default_via(gw), 3).message else {
        panic!()
    };
    assert_eq!(m.header.scope, RouteScope::Universe);
    assert_eq!(
        m.attributes,
        vec![
            RouteAttribute::Gateway("169.254.1.1".parse::<std::net::Ipv4Addr>().unwrap().into()),
            RouteAttribute::Oif(3),
        ]
    );
}

#[test]
fn the_local_address_is_read_back_before_the_peer() {
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    let mut a = AddressMessage::default();
    a.header.prefix_len = 24;
    a.attributes = vec![
        AddressAttribute::Address("10.0.0.9".parse().unwrap()),
        AddressAttribute::Local("10.0.0.2".parse().unwrap()),
    ];
    assert_eq!(local_address(&a), Some("10.0.0.2/24".parse().unwrap()));
    a.attributes.remove(1);
    assert_eq!(local_address(&a), Some("10.0.0.9/24".parse().unwrap()));
    a.attributes.clear();
    assert_eq!(local_address(&a), None);
}

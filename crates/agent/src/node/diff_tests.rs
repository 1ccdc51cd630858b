//! Golden tests of `desired` and `diff`: a bridge network and a dual-stack
//! routed one, each with an endpoint, against observed states with one
//! kind of drift each. The expected changes are written out in full, as
//! `reconcile` reports them and `check` shows them.

use super::*;
use crate::model::{AttachRequest, Endpoint, Network, NetworkMode, NetworkSpec, PortSpec};
use crate::plan;
use std::net::IpAddr;
use trellis_link::ContainerRoute;
use trellis_types::{ContainerId, NetnsPath, Protocol};

fn ifname(s: &str) -> IfName {
    IfName::parse("ifname", s).unwrap()
}

fn spec(name: &str, mode: NetworkMode, subnets: &[&str]) -> NetworkSpec {
    NetworkSpec {
        subnet_pool: None,
        cluster_pools: Vec::new(),
        name: name.parse().unwrap(),
        mode,
        subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
        gateway: None,
        masquerade: true,
        mtu: None,
        internal: false,
        routable: false,
        reach: Vec::new(),
    }
}

fn bridge_net() -> Network {
    let mut spec = spec(
        "b",
        NetworkMode::Bridge {
            bridge: ifname("tbrb"),
        },
        &["192.168.172.0/24"],
    );
    spec.gateway = Some("192.168.172.1".parse().unwrap());
    Network {
        spec,
        gateways: vec!["192.168.172.1".parse().unwrap()],
        warnings: Vec::new(),
    }
}

fn routed_net() -> Network {
    let spec = spec(
        "r",
        NetworkMode::Routed,
        &["10.247.0.0/16", "fd00:247::/48"],
    );
    Network {
        gateways: crate::routed::gateways(&spec.subnets),
        spec,
        warnings: Vec::new(),
    }
}

fn endpoint(net: &Network, container: &str, ips: &[&str], ports: &[(u16, u16)]) -> Endpoint {
    let req = AttachRequest {
        network: net.spec.name.clone(),
        container: ContainerId::parse("container_id", container).unwrap(),
        netns: NetnsPath::parse("netns", &format!("/run/netns/{container}")).unwrap(),
        ifname: ifname("eth0"),
        ports: ports
            .iter()
            .map(|&(h, c)| PortSpec::new(Protocol::Tcp, h.into(), c.into()).unwrap())
            .collect(),
        fixed_addresses: Vec::new(),
        labels: Default::default(),
        mac: None,
    };
    let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
    plan::endpoint(&req, net, &ips)
}

struct World {
    networks: Vec<Network>,
    endpoints: Vec<Endpoint>,
    blocks: Vec<ipnet::IpNet>,
}

fn world() -> World {
    let (b, r) = (bridge_net(), routed_net());
    let endpoints = vec![
        endpoint(&b, "c1", &["192.168.172.2"], &[(8086, 80)]),
        endpoint(&r, "p1", &["10.247.0.5", "fd00:247::5"], &[]),
    ];
    World {
        networks: vec![b, r],
        endpoints,
        blocks: vec!["10.247.0.0/26".parse().unwrap()],
    }
}

impl World {
    fn desired(&self) -> NodeState {
        desired(&self.networks, &self.endpoints, &self.blocks, None)
    }
}

/// The state a kernel that holds exactly what is desired reads as: what
/// `observe` fills in (ifindex, MACs) filled in, what it cannot read (the
/// desired-only knobs) cleared.
fn as_observed(d: &NodeState) -> NodeState {
    let mut o = d.clone();
    for (i, p) in o.ports.values_mut().enumerate() {
        p.handle = None;
        p.host.index = Some(10 + i as u32);
        p.host.mac.get_or_insert([2, 0, 0, 0, 0, 1]);
        p.host.ipv6 = false;
        if let Some(c) = &mut p.container {
            c.ipv6 = false;
        }
    }
    o
}

fn golden(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| format!("{c}\n{}", indent(&c.problems())))
        .collect()
}

fn indent(lines: &[String]) -> String {
    lines.iter().map(|l| format!("  {l}\n")).collect()
}

fn veth(w: &World, container: &str) -> IfName {
    let ep = w
        .endpoints
        .iter()
        .find(|e| e.request.container.as_str() == container);
    ep.unwrap().host_ifname.clone()
}

#[test]
fn desired_state_of_a_bridge_and_a_routed_endpoint() {
    let w = world();
    let d = w.desired();
    let bridge = &d.bridges[&ifname("tbrb")];
    let addrs: Vec<String> = bridge.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(addrs, ["192.168.172.1/24"]);
    assert!(bridge.up);

    let c1 = &d.ports[&veth(&w, "c1")];
    assert_eq!(c1.host.master, Some(ifname("tbrb")));
    assert_eq!((c1.host.mac, c1.host.routed), (None, false));
    assert!(c1.host_routes.is_empty() && c1.neighbours.is_empty());
    let c = c1.container.as_ref().unwrap();
    let addrs: Vec<String> = c.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(addrs, ["192.168.172.2/24"]);
    let routes: Vec<String> = c.routes.iter().map(ToString::to_string).collect();
    assert_eq!(routes, ["0.0.0.0/0 via 192.168.172.1"]);

    let p1 = &d.ports[&veth(&w, "p1")];
    assert_eq!(p1.host.master, None);
    assert_eq!(p1.host.mac, Some(trellis_route::ROUTED_HOST_MAC));
    assert!(p1.host.routed && p1.host.ipv6);
    let routes: Vec<String> = p1.host_routes.iter().map(ToString::to_string).collect();
    assert_eq!(routes, ["10.247.0.5/32", "fd00:247::5/128"]);
    assert_eq!(p1.neighbours.len(), 2);
    let routes: Vec<String> = p1
        .container
        .as_ref()
        .unwrap()
        .routes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        routes,
        [
            "169.254.1.1/32 scope link",
            "0.0.0.0/0 via 169.254.1.1",
            "::/0 via fe80::ecee:eeff:feee:eeee"
        ]
    );

    let blackholes: Vec<String> = d.blackholes.iter().map(ToString::to_string).collect();
    assert_eq!(blackholes, ["10.247.0.0/26"]);
    assert_eq!(d.nat.networks.len(), 1);
    assert_eq!(d.nat.pools.len(), 2);
    assert_eq!(d.nat.ports.len(), 1);
    assert_eq!(d.peer_routes, None);
}

#[test]
fn a_kernel_that_matches_needs_no_change() {
    let d = world().desired();
    assert_eq!(diff(&d, &as_observed(&d)), Vec::new());
}

#[test]
fn an_empty_kernel_gets_everything_in_order() {
    let w = world();
    let (c1, p1) = (veth(&w, "c1"), veth(&w, "p1"));
    let changes = diff(&w.desired(), &NodeState::default());
    // Ports come in the order of their veths' names (tr0e… is p1's).
    assert!(p1 < c1);
    let want = format!(
        "bridge tbrb
  bridge tbrb is missing
blackholes 10.247.0.0/26
  route blackhole 10.247.0.0/26 is missing
veth {p1} of p1/eth0
  host veth {p1} is missing
  container interface eth0 is missing in netns /run/netns/p1 (a veth goes as a pair)
veth {c1} of c1/eth0
  host veth {c1} is missing
  container interface eth0 is missing in netns /run/netns/c1 (a veth goes as a pair)
nftables elements (networks, pools, published ports)
  nftables table differs from the networks
"
    );
    assert_eq!(golden(&changes), want);
}

#[test]
fn container_side_drift_is_mended_in_place() {
    let w = world();
    let d = w.desired();
    let mut o = as_observed(&d);
    let (c1, p1) = (veth(&w, "c1"), veth(&w, "p1"));
    // Inside c1: the address flushed (its default route went with it).
    let c = o.ports.get_mut(&c1).unwrap().container.as_mut().unwrap();
    c.addresses.clear();
    c.routes.clear();
    // Inside p1: eth0 down, its IPv6 default route deleted.
    let c = o.ports.get_mut(&p1).unwrap().container.as_mut().unwrap();
    c.up = false;
    c.routes.retain(|r| r.dst.addr().is_ipv4());
    let want = format!(
        "veth {p1} of p1/eth0 (container side: container interface eth0 is down; container route ::/0 via fe80::ecee:eeff:feee:eeee dev eth0 is missing)
  container interface eth0 is down
  container route ::/0 via fe80::ecee:eeff:feee:eeee dev eth0 is missing
veth {c1} of c1/eth0 (container side: container interface eth0 lacks address 192.168.172.2/24; container route 0.0.0.0/0 via 192.168.172.1 dev eth0 is missing)
  container interface eth0 lacks address 192.168.172.2/24
  container route 0.0.0.0/0 via 192.168.172.1 dev eth0 is missing
"
    );
    assert_eq!(golden(&diff(&d, &o)), want);
}

#[test]
fn host_side_drift() {
    let w = world();
    let d = w.desired();
    let mut o = as_observed(&d);
    let (c1, p1) = (veth(&w, "c1"), veth(&w, "p1"));
    // The bridge lost its address and went down; c1's veth fell off it.
    let b = o.bridges.get_mut(&ifname("tbrb")).unwrap();
    b.addresses.clear();
    b.up = false;
    o.ports.get_mut(&c1).unwrap().host.master = None;
    // p1: its IPv4 host route and neighbour deleted, the veth set down; a
    // stray route on it.
    let p = o.ports.get_mut(&p1).unwrap();
    p.host.up = false;
    p.host_routes.retain(|r| r.addr().is_ipv6());
    p.neighbours.retain(|(ip, _)| ip.is_ipv6());
    p.host_routes.insert("10.247.0.9/32".parse().unwrap());
    // A published port lost, a blackhole of a block no longer owned.
    o.nat.ports.clear();
    o.blackholes.insert("10.99.0.0/26".parse().unwrap());
    let mac = trellis_link::format_mac(&d.ports[&p1].container.as_ref().unwrap().mac.unwrap());
    let want = format!(
        "delete routes blackhole 10.99.0.0/26, 10.247.0.9/32 dev {p1}
  route blackhole 10.99.0.0/26 is not wanted
  route 10.247.0.9/32 dev {p1} is not wanted
bridge tbrb
  bridge tbrb lacks address 192.168.172.1/24
  bridge tbrb is down
veth {p1} up
  host veth {p1} is down
host routes of p1/eth0
  host route 10.247.0.5/32 dev {p1} is missing
  neighbour 10.247.0.5 lladdr {mac} dev {p1} is missing
veth {c1} of c1/eth0
  host veth {c1} is not a port of bridge tbrb
nftables elements: publish 8086/tcp -> 192.168.172.2:80
  published port 8086/tcp -> 192.168.172.2:80 is missing from nftables
"
    );
    assert_eq!(golden(&diff(&d, &o)), want);
}

#[test]
fn what_no_record_explains_goes_first() {
    let w = world();
    let d = w.desired();
    let mut o = as_observed(&d);
    let orphan = ifname("tr0123456789abc");
    let mut stray = o.ports[&veth(&w, "c1")].clone();
    stray.host.name = orphan.clone();
    stray.container = None;
    o.ports.insert(orphan, stray);
    let ghost = o.nat.ports[0].to_owned();
    let ghost = trellis_types::PortMapping {
        host_port: 9999,
        ..ghost
    };
    o.nat.ports.push(ghost);
    o.nat.ports.sort();
    let want = "nftables elements: unpublish 9999/tcp -> 192.168.172.2:80
  published port 9999/tcp -> 192.168.172.2:80 is not wanted
delete veths tr0123456789abc
  veth tr0123456789abc is not wanted
";
    assert_eq!(golden(&diff(&d, &o)), want);
}

#[test]
fn a_missing_container_interface_remakes_the_veth() {
    let w = world();
    let d = w.desired();
    let mut o = as_observed(&d);
    let p1 = veth(&w, "p1");
    o.ports.get_mut(&p1).unwrap().container = None;
    let want = format!(
        "veth {p1} of p1/eth0
  container interface eth0 is missing in netns /run/netns/p1
"
    );
    assert_eq!(golden(&diff(&d, &o)), want);
}

#[test]
fn the_last_network_gone_takes_the_table() {
    let w = world();
    let o = as_observed(&w.desired());
    let empty = desired(&[], &[], &[], None);
    let changes = diff(&empty, &o);
    assert_eq!(changes.last(), Some(&Change::RemoveNat));
    assert!(matches!(&changes[0], Change::DeletePorts(n) if n.len() == 2));
}

#[test]
fn peer_routes_are_left_alone_unless_managed() {
    let w = world();
    let mut o = as_observed(&w.desired());
    let peer = trellis_route::PeerRoute {
        block: "10.247.1.0/26".parse().unwrap(),
        via: "192.0.2.7".parse().unwrap(),
    };
    o.peer_routes = Some([peer].into());
    let unmanaged = w.desired();
    assert_eq!(diff(&unmanaged, &o), Vec::new());
    let managed = desired(&w.networks, &w.endpoints, &w.blocks, Some(&[]));
    assert_eq!(diff(&managed, &o), vec![Change::SetPeerRoutes(Vec::new())]);
}

#[test]
fn slices_attach_and_detach_one_endpoint() {
    let w = world();
    let d = w.desired();
    let c1 = veth(&w, "c1");
    let slice = d.slice(&c1);
    assert_eq!(slice.ports.len(), 1);
    assert!(slice.bridges.contains_key(&ifname("tbrb")));
    // Attach: make the port, publish its ports; the bridge is the
    // network's, and is taken as there.
    let there = NodeState {
        bridges: slice.bridges.clone(),
        ..NodeState::default()
    };
    let attach = diff(&slice, &there);
    let fresh = matches!(&attach[0], Change::CreatePort { replace: false, .. });
    assert!(fresh, "{attach:?}");
    assert!(matches!(&attach[1], Change::Publish(p) if p.len() == 1));
    assert_eq!(attach.len(), 2);
    // Detach: the reverse, unpublishing first.
    let mut gone = slice.clone();
    gone.ports.clear();
    gone.nat.ports.clear();
    let detach = diff(&gone, &as_observed(&slice));
    assert!(matches!(&detach[0], Change::Unpublish(p) if p.len() == 1));
    assert!(matches!(&detach[1], Change::DeletePorts(p) if p.len() == 1 && p[0].host.name == c1));
    assert_eq!(detach.len(), 2);
}

#[test]
fn container_routes_compare_by_destination_and_gateway() {
    let w = world();
    let d = w.desired();
    let mut o = as_observed(&d);
    let c1 = veth(&w, "c1");
    let c = o.ports.get_mut(&c1).unwrap().container.as_mut().unwrap();
    c.routes = vec![ContainerRoute::default_via(
        "192.168.172.254".parse().unwrap(),
    )];
    let changes = diff(&d, &o);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].problems(),
        ["container route 0.0.0.0/0 via 192.168.172.1 dev eth0 is missing"]
    );
}

#[test]
fn knobs_switched_off_by_hand_are_put_back() {
    let w = world();
    let d = w.desired();
    let mut o = as_observed(&d);
    let (c1, p1) = (veth(&w, "c1"), veth(&w, "p1"));
    let on = trellis_link::InetConf {
        forwarding: true,
        proxy_arp: true,
        route_localnet: true,
    };
    // As read back when all is well: nothing to do.
    o.bridges.get_mut(&ifname("tbrb")).unwrap().inet = Some(on);
    for p in o.ports.values_mut() {
        p.host.inet = Some(on);
    }
    assert_eq!(diff(&d, &o), Vec::new());
    // proxy_arp off on the routed port, route_localnet off on the bridge; a
    // bridge port's settings are not trellis's to judge.
    o.ports.get_mut(&p1).unwrap().host.inet = Some(trellis_link::InetConf {
        proxy_arp: false,
        ..on
    });
    o.ports.get_mut(&c1).unwrap().host.inet = Some(trellis_link::InetConf::default());
    o.bridges.get_mut(&ifname("tbrb")).unwrap().inet = Some(trellis_link::InetConf {
        route_localnet: false,
        ..on
    });
    let want = format!(
        "bridge tbrb
  bridge tbrb has route_localnet off
host routes of p1/eth0
  host veth {p1} has proxy_arp off
"
    );
    assert_eq!(golden(&diff(&d, &o)), want);
}

#[test]
fn a_container_end_with_another_mac_remakes_the_veth_with_the_records() {
    let mut w = world();
    // c1 asked for its MAC: the desired container end carries it.
    let asked: trellis_types::MacAddr = "0a:58:c0:a8:ac:02".parse().unwrap();
    let mut req = w.endpoints[0].request.clone();
    req.mac = Some(asked);
    w.endpoints[0] = plan::endpoint(&req, &w.networks[0], &["192.168.172.2".parse().unwrap()]);
    let d = w.desired();
    let c1 = veth(&w, "c1");
    assert_eq!(
        d.ports[&c1].container.as_ref().unwrap().mac,
        Some(asked.octets())
    );
    assert_eq!(diff(&d, &as_observed(&d)), Vec::new());
    let mut o = as_observed(&d);
    o.ports
        .get_mut(&c1)
        .unwrap()
        .container
        .as_mut()
        .unwrap()
        .mac = Some([2, 0, 0, 0, 0, 9]);
    let want = format!(
        "veth {c1} of c1/eth0
  container interface eth0 in netns /run/netns/c1 has MAC 02:00:00:00:00:09, not 0a:58:c0:a8:ac:02
"
    );
    let changes = diff(&d, &o);
    assert_eq!(golden(&changes), want);
    assert!(
        matches!(&changes[0], Change::CreatePort { replace: true, port, .. }
            if port.container.as_ref().unwrap().mac == Some(asked.octets())),
        "{changes:?}"
    );
}

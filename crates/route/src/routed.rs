//! Routed mode (Calico's model) on the host: what the host end of a
//! container's veth needs, and why; and the one call that sets it up with the
//! host's route and neighbour entry for each of the container's addresses.
//!
//! The container holds its address as a /32 (/128) and a default route via
//! the link-local gateway [`ROUTED_GATEWAY_V4`] (`169.254.1.1`, with a
//! `scope link` route to it) or [`ROUTED_GATEWAY_V6`] on `eth0`. The host end
//! has MAC [`ROUTED_HOST_MAC`] and is the container's only neighbour; the
//! host holds a `/32 dev <veth> scope link` route per container.
//!
//! # How the container's ARP for `169.254.1.1` is answered
//!
//! Calico relies on proxy-ARP alone: `arp_process` answers a request for an
//! address that is not local when `IN_DEV_FORWARD` is on for the incoming
//! device, `ip_route_input_noref(tip)` gives an `RTN_UNICAST` route, and
//! `arp_fwd_proxy` sees `proxy_arp` on and that route leaving through
//! *another* device. A host with no route covering `169.254.1.1` (no default
//! route: air-gapped, or routes learnt only for specific prefixes) therefore
//! never answers, and its containers cannot send anything (projectcalico
//! issue 3270). No route trick fixes that cleanly: a blackhole, unreachable or
//! blackhole-nexthop route is not `RTN_UNICAST`, a route out of the veth
//! itself fails the device check, and a unicast route out of `lo` would send
//! real packets to `169.254.1.1` round a forwarding loop.
//!
//! So trellis makes the gateway an address of every host port:
//! `169.254.1.1/32 scope host`. `arp_process` then takes its `RTN_LOCAL`
//! branch and answers with the port's MAC whatever the host's routes are,
//! and even under `arp_ignore=1` (set host-wide by kube-proxy's IPVS mode),
//! because the address is on the incoming device. `scope host` keeps it out
//! of source address selection (`inet_select_addr` skips addresses whose
//! scope is narrower than the route's `link`), so the host still talks to its
//! containers from its real address. The same address on many ports is fine:
//! each port has its own `local` route in the local table. A container's
//! `ping 169.254.1.1` is answered by the host, as a real gateway would.
//! `proxy_arp=1` (with `proxy_delay=0`) stays on for every other address a
//! container may ARP for, as in Calico.
//!
//! The gateway is the port's only IPv4 address, and removing a device's last
//! IPv4 address makes the kernel flush its IPv4 routes and neighbours
//! (`fib_inetaddr_event` → `fib_disable_ip`): whoever deletes it by hand
//! takes the container's host route with it. Setting the port up again
//! (idempotent) restores everything.
//!
//! # IPv6
//!
//! The host port carries its gateway `fe80::ecee:eeff:feee:eeee/64` as a real
//! address too, so neighbour discovery needs no `proxy_ndp`. Duplicate
//! address detection would keep it tentative (unusable) for a second or
//! more, so the port's automatic link-local is switched off
//! (`addr_gen_mode=none`, before the link has carrier) and the gateway is
//! added with `IFA_F_NODAD`; containers' /128s are added with `IFA_F_NODAD`
//! as well. `accept_ra=0` and per-interface `forwarding=1` exist only under
//! `/proc/sys` (`inet6_set_link_af` takes just a token and the address
//! generation mode): in the daemon, whose host namespace is its own, they are
//! written directly; for a host that is another namespace (tests), on one
//! namespace thread for all of them.
//!
//! # One batch
//!
//! [`routed_host`] puts the port's knobs and gateway addresses
//! ([`crate::msg::routed_port`]), a `/32` (`/128`) `scope link` route and a
//! permanent neighbour per address in one list, which
//! `Routes::setup_routed_host` sends pipelined on the host socket: one round
//! trip for the whole host side.
//!
//! # Host-wide switches
//!
//! `net.ipv4.ip_forward` and `net.ipv6.conf.all.forwarding` are host-wide:
//! set once per network, not per endpoint, for bridge and routed networks
//! alike (trellis-link's `Links::enable_host_forwarding`, which also keeps
//! router advertisements accepted where the host uses them).

use crate::model::{Neighbour, Route};
use crate::msg;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use trellis_netlink::nl::Request;
use trellis_netlink::{ContainerRoute, Families, Mac, SysctlKey};
use trellis_types::{IfName, InvalidInput};

/// The MAC of every routed host port (Calico's `ee:ee:ee:ee:ee:ee`).
pub const ROUTED_HOST_MAC: Mac = [0xee; 6];

/// The IPv4 gateway of every routed container.
pub const ROUTED_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The IPv6 gateway of every routed container: the EUI-64 link-local address
/// of [`ROUTED_HOST_MAC`].
pub const ROUTED_GATEWAY_V6: Ipv6Addr =
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// The host end of a routed endpoint's veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedHostPort {
    /// Its name (for `/proc/sys` keys and messages).
    pub name: IfName,
    /// Its index in the host namespace (trellis-link's `VethInfo::host_ifindex`).
    pub index: u32,
    /// The families the endpoint uses.
    pub families: Families,
}

/// The `/proc/sys/net` writes a host port needs that netlink cannot make:
/// for IPv6, `accept_ra=0` and `forwarding=1`. None for IPv4-only.
pub fn proc_knobs(port: &RoutedHostPort) -> Result<Vec<(SysctlKey, &'static str)>, InvalidInput> {
    if !port.families.v6 {
        return Ok(Vec::new());
    }
    Ok(vec![
        (SysctlKey::ipv6_conf(&port.name, "accept_ra")?, "0"),
        (SysctlKey::ipv6_conf(&port.name, "forwarding")?, "1"),
    ])
}

/// The host side of a routed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedEndpoint {
    /// The host end of the veth.
    pub host_if: IfName,
    /// Its index (trellis-link's `VethInfo::host_ifindex`): saves a lookup.
    pub host_ifindex: u32,
    /// The container's addresses (one IPv4, one IPv6, or both).
    pub addresses: Vec<IpAddr>,
    /// The container end's MAC (trellis-link's `VethInfo::container_mac`).
    pub container_mac: Mac,
}

impl RoutedEndpoint {
    /// Its host port.
    pub fn port(&self) -> RoutedHostPort {
        RoutedHostPort {
            name: self.host_if.clone(),
            index: self.host_ifindex,
            families: Families::of(self.addresses.iter().copied()),
        }
    }

    /// `<ip>/32` (`/128`) `dev <host_if> scope link`, one per address.
    pub fn host_routes(&self) -> Vec<Route> {
        self.addresses
            .iter()
            .map(|&ip| Route::on_link(host_prefix(ip), self.host_if.clone()))
            .collect()
    }

    /// `<ip> lladdr <container mac> dev <host_if> permanent`, one per address:
    /// the host never has to ARP or solicit for its own containers.
    pub fn neighbours(&self) -> Vec<Neighbour> {
        self.addresses
            .iter()
            .map(|&ip| Neighbour {
                ip,
                mac: self.container_mac,
                dev: self.host_if.clone(),
            })
            .collect()
    }
}

/// `ip/32` or `ip/128`.
pub fn host_prefix(ip: IpAddr) -> IpNet {
    IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("host prefix length")
}

/// The whole host side of a routed endpoint as one batch, in order: the
/// port's knobs and gateway addresses, then routes, then neighbours.
pub fn routed_host(ep: &RoutedEndpoint) -> Result<Vec<Request>, InvalidInput> {
    if ep.addresses.is_empty() {
        return Err(InvalidInput::new(
            "addresses",
            "[]",
            "a routed endpoint needs at least one address",
        ));
    }
    let index = Some(ep.host_ifindex);
    let mut reqs = msg::routed_port(&ep.port());
    for route in ep.host_routes() {
        reqs.push(msg::route_add(&route, index)?);
    }
    reqs.extend(
        ep.neighbours()
            .iter()
            .map(|n| msg::neighbour_add(n, ep.host_ifindex)),
    );
    Ok(reqs)
}

/// The routes of a routed-mode container for `families`, through its one
/// interface: `169.254.1.1 scope link` and `default via 169.254.1.1`;
/// `default via fe80::ecee:eeff:feee:eeee` (a link-local gateway needs no
/// on-link route: the interface is given with it). trellis-link installs
/// them (`Links::setup_container`).
pub fn container_routes(families: Families) -> Vec<ContainerRoute> {
    let mut routes = Vec::new();
    if families.v4 {
        let gw = IpAddr::V4(ROUTED_GATEWAY_V4);
        routes.extend([ContainerRoute::on_link(gw), ContainerRoute::default_via(gw)]);
    }
    if families.v6 {
        routes.push(ContainerRoute::default_via(IpAddr::V6(ROUTED_GATEWAY_V6)));
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v6_gateway_is_the_eui64_link_local_of_the_host_mac() {
        let m = ROUTED_HOST_MAC;
        // EUI-64: flip the universal/local bit, insert ff:fe in the middle.
        let eui = [m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]];
        let mut octets = [0u8; 16];
        octets[0] = 0xfe;
        octets[1] = 0x80;
        octets[8..].copy_from_slice(&eui);
        assert_eq!(Ipv6Addr::from(octets), ROUTED_GATEWAY_V6);
        assert_eq!(ROUTED_GATEWAY_V6.to_string(), "fe80::ecee:eeff:feee:eeee");
    }

    #[test]
    fn only_ipv6_needs_proc_knobs() {
        let port = RoutedHostPort {
            name: IfName::parse("ifname", "tr0123456789abc").unwrap(),
            index: 7,
            families: Families::V4,
        };
        assert!(proc_knobs(&port).unwrap().is_empty());
        let v6 = RoutedHostPort {
            families: Families::V6,
            ..port
        };
        let keys: Vec<String> = proc_knobs(&v6)
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            keys,
            [
                "net/ipv6/conf/tr0123456789abc/accept_ra=0",
                "net/ipv6/conf/tr0123456789abc/forwarding=1"
            ]
        );
    }

    #[test]
    fn a_routed_container_routes_via_the_link_local_gateways() {
        let shown: Vec<String> = container_routes(Families::DUAL)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "169.254.1.1/32 scope link",
                "0.0.0.0/0 via 169.254.1.1",
                "::/0 via fe80::ecee:eeff:feee:eeee"
            ]
        );
        assert_eq!(container_routes(Families::V6).len(), 1);
    }
}

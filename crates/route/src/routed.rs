//! Routed mode on the host: one call sets up the host end of a container's
//! veth and the host's route and neighbour entry for each of its addresses.

use crate::model::{Neighbour, Route};
use crate::msg;
use ipnet::IpNet;
use std::net::IpAddr;
use trellis_link::nl::Request;
use trellis_link::{Families, Mac, RoutedHostPort};
use trellis_types::{IfName, InvalidInput};

/// The host side of a routed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedEndpoint {
    /// The host end of the veth.
    pub host_if: IfName,
    /// Its index ([`trellis_link::VethInfo::host_ifindex`]): saves a lookup.
    pub host_ifindex: u32,
    /// The container's addresses (one IPv4, one IPv6, or both).
    pub addresses: Vec<IpAddr>,
    /// The container end's MAC ([`trellis_link::VethInfo::container_mac`]).
    pub container_mac: Mac,
}

impl RoutedEndpoint {
    /// The port as trellis-link describes it.
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
    let mut reqs = trellis_link::msg::routed_port(&ep.port());
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

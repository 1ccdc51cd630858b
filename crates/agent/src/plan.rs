//! The endpoint an attach will make, computed as data before anything is
//! plumbed.
//!
//! Everything an endpoint's record holds follows from the request, the
//! network and the addresses IPAM picks: the host veth's name derives from
//! (container, ifname), and so does the container's MAC unless the request
//! names one (the veth is then made with it), the addresses' prefix
//! lengths and the container's routes from the network's mode, the published
//! ports from the request. So the record can be written in the same store
//! transaction that takes the addresses — one durable commit per attach —
//! and the plumbing then applies exactly this plan.

use crate::model::{AttachRequest, Endpoint, Network, NetworkMode};
use ipnet::IpNet;
use std::net::IpAddr;
use trellis_link::{ContainerRoute, Families, container_mac, format_mac, host_veth_name};
use trellis_route::routed::container_routes;
use trellis_types::PortMapping;

/// What the container side of an endpoint gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerPlan {
    /// The container's addresses with the prefix length they are given:
    /// the subnet's on a bridge, /32 and /128 when routed.
    pub addresses: Vec<IpNet>,
    /// The container's routes: `default via <bridge address>` on a bridge;
    /// `169.254.1.1 scope link` and the link-local defaults when routed.
    pub routes: Vec<ContainerRoute>,
    /// Whether the interface speaks IPv6: only with an IPv6 address. On an
    /// IPv4-only network it gets no link-local address (as Docker turns
    /// IPv6 off in such containers), so it floods no DAD or MLD packets to
    /// the other containers of its bridge.
    pub ipv6: bool,
}

/// The container side of an endpoint of `net` holding `ips`.
pub(crate) fn container_plan(net: &Network, ips: &[IpAddr]) -> ContainerPlan {
    let ipv6 = ips.iter().any(IpAddr::is_ipv6);
    match &net.spec.mode {
        NetworkMode::Bridge { .. } => {
            let prefix = net.spec.subnets[0].prefix_len();
            ContainerPlan {
                addresses: ips.iter().map(|&ip| with_len(ip, prefix)).collect(),
                routes: vec![ContainerRoute::default_via(net.gateways[0])],
                ipv6,
            }
        }
        NetworkMode::Routed => ContainerPlan {
            addresses: ips
                .iter()
                .map(|&ip| with_len(ip, if ip.is_ipv4() { 32 } else { 128 }))
                .collect(),
            routes: container_routes(Families::of(ips.iter().copied())),
            ipv6,
        },
    }
}

fn with_len(ip: IpAddr, len: u8) -> IpNet {
    IpNet::new(ip, len).expect("prefix length of a valid subnet")
}

/// The request's ports, published to the container's address of the family
/// the host port's traffic uses: the host address's, for a port on one
/// address; IPv4 when the container has one, otherwise. (Validation refuses
/// a host address of a family the network has no subnet of.)
pub(crate) fn published(req: &AttachRequest, ips: &[IpAddr]) -> Vec<PortMapping> {
    let preferred = ips.iter().find(|ip| ip.is_ipv4()).or(ips.first());
    req.ports
        .iter()
        .filter_map(|p| {
            let ip = match p.host_ip {
                Some(h) => ips.iter().find(|ip| ip.is_ipv4() == h.is_ipv4()),
                None => preferred,
            };
            ip.map(|&ip| p.to(ip))
        })
        .collect()
}

/// The endpoint (and record) an attach of `req` to `net` with `ips` makes.
pub(crate) fn endpoint(req: &AttachRequest, net: &Network, ips: &[IpAddr]) -> Endpoint {
    let host_ifname = host_veth_name(&req.container, &req.ifname);
    let plan = container_plan(net, ips);
    Endpoint {
        request: req.clone(),
        addresses: plan.addresses,
        gateways: net.gateways.clone(),
        mac: req.mac.map_or_else(
            || format_mac(&container_mac(&host_ifname)),
            |m| m.to_string(),
        ),
        host_ifname,
        routes: plan.routes.iter().map(|r| r.dst).collect(),
        ports: published(req, ips),
    }
}

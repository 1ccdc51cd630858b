//! What the records want the node to hold: a pure function of the networks,
//! the endpoints' records, the routed blocks this node owns and the peer
//! routes.

use super::{Bridge, ContainerEnd, HostEnd, NodeState, Port};
use crate::model::{Endpoint, Network, NetworkMode};
use crate::network::{bridge_nat, bridge_spec, reach_pairs, routed_pools};
use crate::plan::container_plan;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;
use trellis_nat::NatState;
use trellis_route::PeerRoute;
use trellis_route::ROUTED_HOST_MAC;
use trellis_route::routed::host_prefix;
use trellis_types::MacAddr;

/// The node state `networks` and `endpoints` want, with a blackhole per
/// block in `blocks` and, when `peer_routes` is `Some`, exactly those peer
/// routes. An endpoint of a network that is not defined wants nothing.
pub fn desired(
    networks: &[Network],
    endpoints: &[Endpoint],
    blocks: &[IpNet],
    peer_routes: Option<&[PeerRoute]>,
) -> NodeState {
    let mut st = NodeState {
        blackholes: blocks.iter().copied().collect(),
        peer_routes: peer_routes.map(|p| p.iter().copied().collect()),
        ..NodeState::default()
    };
    for net in networks {
        match &net.spec.mode {
            NetworkMode::Bridge { bridge } => {
                let spec = bridge_spec(net);
                st.bridges.insert(
                    bridge.clone(),
                    Bridge {
                        name: bridge.clone(),
                        addresses: spec.gateway.into_iter().collect(),
                        mtu: net.spec.mtu,
                        up: true,
                        inet: None,
                    },
                );
                st.nat.networks.push(bridge_nat(net));
            }
            NetworkMode::Routed => st.nat.pools.extend(routed_pools(net)),
        }
    }
    st.nat.reach = reach_pairs(networks);
    for ep in endpoints {
        let Some(net) = networks.iter().find(|n| n.spec.name == ep.request.network) else {
            continue;
        };
        st.nat.ports.extend(ep.ports.iter().copied());
        st.ports.insert(ep.host_ifname.clone(), port(ep, net));
    }
    normalise(&mut st.nat);
    st
}

/// The port an endpoint of `net` wants, from its record.
pub fn port(ep: &Endpoint, net: &Network) -> Port {
    let req = &ep.request;
    let ips: Vec<IpAddr> = ep.addresses.iter().map(IpNet::addr).collect();
    let plan = container_plan(net, &ips);
    let mac = parse_mac(&ep.mac);
    let routed = net.spec.mode == NetworkMode::Routed;
    let (host_routes, neighbours) = if routed {
        (
            ips.iter().map(|&ip| host_prefix(ip)).collect(),
            mac.iter()
                .flat_map(|&m| ips.iter().map(move |&ip| (ip, m)))
                .collect(),
        )
    } else {
        (BTreeSet::new(), BTreeSet::new())
    };
    Port {
        handle: Some(req.handle()),
        host: HostEnd {
            name: ep.host_ifname.clone(),
            index: None,
            master: net.spec.bridge().cloned(),
            mac: routed.then_some(ROUTED_HOST_MAC),
            mtu: net.spec.mtu,
            up: true,
            routed,
            inet: None,
            ipv6: routed && net.spec.subnets.iter().any(|s| matches!(s, IpNet::V6(_))),
        },
        container: Some(ContainerEnd {
            netns: req.netns.clone(),
            ifname: req.ifname.clone(),
            mac,
            up: true,
            addresses: plan.addresses.into_iter().collect(),
            routes: plan.routes,
            ipv6: plan.ipv6,
        }),
        host_routes,
        neighbours,
    }
}

/// Sorts the NAT elements as the table lists them, so that two states
/// compare equal when they hold the same elements.
pub(crate) fn normalise(st: &mut NatState) {
    st.networks
        .sort_by_key(|n| (n.subnet, n.bridge.to_string(), n.masquerade, n.internal));
    st.reach.sort();
    st.pools.sort();
    st.ports.sort();
    st.ports.dedup();
}

/// `02:00:…` → bytes (a record's MAC was written by the agent, so it
/// parses; `None` would leave the container end's MAC unjudged).
fn parse_mac(s: &str) -> Option<trellis_link::Mac> {
    s.parse::<MacAddr>().ok().map(MacAddr::octets)
}

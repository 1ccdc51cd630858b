//! What the kernel holds, read into the shape of a [`NodeState`] through the
//! `Links`, `Routes` and `Nat` traits only.
//!
//! trellis finds its own objects by their tags: host veths named `tr…`,
//! routes of protocol 116, the `inet trellis` table. What it cannot find by
//! a tag — the bridges (named by the networks), the container ends (in
//! namespaces only the records name) and neighbours — it reads where the
//! `scope` (a desired state) says to look.

use super::desired::normalise;
use super::{Bridge, ContainerEnd, HostEnd, NodeState, Port};
use crate::Error;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use trellis_link::{ContainerRoute, LinkSummary, Links, Mac, Ns, is_host_veth_name};
use trellis_nat::{Nat, NatState};
use trellis_route::ROUTED_HOST_MAC;
use trellis_route::{Route, RouteKind, Routes};
use trellis_types::IfName;

/// How many ports `observe` reads at once: enough to overlap the kernel
/// round trips and namespace sessions of a large node, few enough not to
/// open hundreds of namespace threads together.
const PARALLEL_READS: usize = 16;

/// The kernel's state of what `scope` names, and of everything trellis
/// tagged: every `tr…` veth, every blackhole, the whole NAT table; peer
/// routes only when `scope` manages them.
pub async fn observe(
    links: &dyn Links,
    routes: &dyn Routes,
    nat: &dyn Nat,
    scope: &NodeState,
) -> Result<NodeState, Error> {
    let all = links.list_links_with_prefix(&Ns::Host, "").await?;
    let names: HashMap<u32, &str> = all.iter().map(|l| (l.index, l.name.as_str())).collect();
    let installed = routes.list_routes(&Ns::Host).await?;
    let mut st = NodeState::default();
    for name in scope.bridges.keys() {
        if let Some(l) = all.iter().find(|l| l.name == name.as_str()) {
            st.bridges
                .insert(name.clone(), read_bridge(links, name, l).await?);
        }
    }
    st.blackholes = installed
        .iter()
        .filter(|r| r.kind == RouteKind::Blackhole)
        .map(|r| r.dst)
        .collect();
    let mut by_dev = host_routes_by_dev(&installed);
    // The host side is one dump per kind of object (links, routes,
    // neighbours), whatever the number of ports.
    let mut neighbours_by_dev: BTreeMap<IfName, BTreeSet<(IpAddr, Mac)>> = BTreeMap::new();
    if scope.ports.values().any(|p| p.host.routed) {
        for n in routes.list_all_neighbours(&Ns::Host).await? {
            neighbours_by_dev
                .entry(n.dev)
                .or_default()
                .insert((n.ip, n.mac));
        }
    }
    // Each port's container side is a session inside its namespace:
    // independent reads, made a bounded number at a time.
    let reads = all
        .iter()
        .filter(|l| is_host_veth_name(&l.name))
        .filter_map(|l| Some((l, IfName::parse("ifname", &l.name).ok()?)))
        .map(|(l, name)| {
            let (want, on_dev) = (scope.ports.get(&name), by_dev.remove(&name));
            let neighbours = neighbours_by_dev.remove(&name).unwrap_or_default();
            let names = &names;
            async move {
                let port = read_port(links, routes, l, names, want, on_dev, neighbours).await?;
                Ok::<_, Error>((name, port))
            }
        })
        .collect::<Vec<_>>();
    let mut reads = futures::stream::iter(reads).buffer_unordered(PARALLEL_READS);
    while let Some(read) = reads.next().await {
        let (name, port) = read?;
        st.ports.insert(name, port);
    }
    if scope.peer_routes.is_some() {
        st.peer_routes = Some(routes.list_peer_routes().await?.into_iter().collect());
    }
    st.nat = read_nat(nat).await?;
    Ok(st)
}

/// The kernel's state of one port that `want` describes: the port (if its
/// host veth exists), its bridge, and the published ports among `want`'s.
/// A handful of reads (one link dump for the host's side), whatever the
/// size of the node.
pub async fn observe_port(
    links: &dyn Links,
    routes: &dyn Routes,
    nat: &dyn Nat,
    want: &NodeState,
) -> Result<NodeState, Error> {
    let all = links.list_links_with_prefix(&Ns::Host, "").await?;
    let names: HashMap<u32, &str> = all.iter().map(|l| (l.index, l.name.as_str())).collect();
    let mut st = NodeState::default();
    for name in want.bridges.keys() {
        if let Some(l) = all.iter().find(|l| l.name == name.as_str()) {
            st.bridges
                .insert(name.clone(), read_bridge(links, name, l).await?);
        }
    }
    for (name, port) in &want.ports {
        let Some(l) = all.iter().find(|l| l.name == name.as_str()) else {
            continue;
        };
        let on_dev = if port.host.routed {
            host_routes_by_dev(&routes.list_routes(&Ns::Host).await?).remove(name)
        } else {
            None
        };
        let neighbours = if port.host.routed {
            neighbours_of(&routes.list_neighbours(&Ns::Host, name).await?)
        } else {
            BTreeSet::new()
        };
        let observed = read_port(links, routes, l, &names, Some(port), on_dev, neighbours).await?;
        st.ports.insert(name.clone(), observed);
    }
    if !want.nat.ports.is_empty() {
        let published = listed(nat.list_published().await)?;
        st.nat.ports = published
            .into_iter()
            .filter(|p| want.nat.ports.contains(p))
            .collect();
    }
    Ok(st)
}

async fn read_bridge(links: &dyn Links, name: &IfName, l: &LinkSummary) -> Result<Bridge, Error> {
    let addresses = match links.link_detail(&Ns::Host, name).await? {
        Some(d) => d.addresses.into_iter().collect(),
        None => BTreeSet::new(),
    };
    Ok(Bridge {
        name: name.clone(),
        addresses,
        mtu: l.mtu,
        up: l.up,
        inet: l.inet,
    })
}

/// trellis's on-link host routes (no gateway) by their device.
fn host_routes_by_dev(installed: &[Route]) -> BTreeMap<IfName, BTreeSet<ipnet::IpNet>> {
    let mut by_dev: BTreeMap<IfName, BTreeSet<_>> = BTreeMap::new();
    for r in installed {
        if r.kind == RouteKind::Unicast
            && r.via.is_none()
            && let Some(dev) = &r.dev
        {
            by_dev.entry(dev.clone()).or_default().insert(r.dst);
        }
    }
    by_dev
}

/// (address, MAC) of each neighbour.
fn neighbours_of(found: &[trellis_route::Neighbour]) -> BTreeSet<(IpAddr, Mac)> {
    found.iter().map(|n| (n.ip, n.mac)).collect()
}

/// A host veth as found, with its container end when `want` says where to
/// look, its host routes and (routed, read by the caller) its neighbours.
#[allow(clippy::too_many_arguments)]
async fn read_port(
    links: &dyn Links,
    routes: &dyn Routes,
    l: &LinkSummary,
    names: &HashMap<u32, &str>,
    want: Option<&Port>,
    host_routes: Option<BTreeSet<ipnet::IpNet>>,
    neighbours: BTreeSet<(IpAddr, Mac)>,
) -> Result<Port, Error> {
    let name = IfName::parse("ifname", &l.name)?;
    let master = l
        .master
        .and_then(|i| names.get(&i))
        .and_then(|n| IfName::parse("master", n).ok());
    let routed = want.is_some_and(|w| w.host.routed);
    let neighbours = if routed { neighbours } else { BTreeSet::new() };
    let container = match want.and_then(|w| w.container.as_ref()) {
        Some(c) => read_container(links, routes, c).await?,
        None => None,
    };
    Ok(Port {
        handle: None,
        host: HostEnd {
            name,
            index: Some(l.index),
            master,
            mac: l.mac,
            mtu: l.mtu,
            up: l.up,
            routed: l.mac == Some(ROUTED_HOST_MAC),
            inet: l.inet,
            ipv6: false,
        },
        container,
        host_routes: host_routes.unwrap_or_default(),
        neighbours,
    })
}

/// The container end `want` names, or `None` if its namespace or its
/// interface is gone.
async fn read_container(
    links: &dyn Links,
    routes: &dyn Routes,
    want: &ContainerEnd,
) -> Result<Option<ContainerEnd>, Error> {
    if links.check_netns(&want.netns).is_err() {
        return Ok(None);
    }
    let ns = Ns::Path(want.netns.clone());
    let Some(detail) = links.link_detail(&ns, &want.ifname).await? else {
        return Ok(None);
    };
    let routes = routes
        .list_routes(&ns)
        .await?
        .into_iter()
        .filter(|r| r.dev.as_ref().is_none_or(|d| *d == want.ifname))
        .map(|r| ContainerRoute {
            dst: r.dst,
            via: r.via,
        })
        .collect();
    Ok(Some(ContainerEnd {
        netns: want.netns.clone(),
        ifname: want.ifname.clone(),
        mac: detail.link.mac,
        up: detail.link.up,
        addresses: detail.addresses.into_iter().collect(),
        routes,
        ipv6: false,
    }))
}

/// The NAT table's elements; no table reads as empty.
async fn read_nat(nat: &dyn Nat) -> Result<NatState, Error> {
    let mut st = NatState {
        networks: listed(nat.list_networks().await)?,
        pools: listed(nat.list_pools().await)?,
        ports: listed(nat.list_published().await)?,
        reach: listed(nat.list_reach().await)?,
    };
    normalise(&mut st);
    Ok(st)
}

fn listed<T>(r: Result<Vec<T>, trellis_nat::Error>) -> Result<Vec<T>, Error> {
    match r {
        Ok(v) => Ok(v),
        Err(trellis_nat::Error::NoTable(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

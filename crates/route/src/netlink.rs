//! [`NetlinkRoutes`]: the real [`Routes`], over rtnetlink.

use crate::error::RouteError;
use crate::model::{HostRoute, Neighbour, Route};
use crate::peer::{self, PeerRoute, PeerRouteChanges};
use crate::routed::{self, RoutedEndpoint};
use crate::{Routes, msg};
use async_trait::async_trait;
use netlink_packet_route::RouteNetlinkMessage;
use std::collections::HashMap;
use trellis_netlink::{LinkRef, Ns, Sockets, lookup, nl};
use trellis_types::{IfName, NetnsPath};

/// The real [`Routes`], on the [`Sockets`] trellis-link's implementation
/// uses too (one host socket for both).
#[derive(Clone, Debug)]
pub struct NetlinkRoutes {
    sockets: Sockets,
}

impl NetlinkRoutes {
    /// Uses the namespace the process is in as the host (the daemon).
    pub async fn current() -> Result<Self, RouteError> {
        Ok(Self::new(Sockets::current().await?))
    }

    /// Uses the namespace at `path` as the host (tests, labs).
    pub async fn in_netns(path: &NetnsPath) -> Result<Self, RouteError> {
        Ok(Self::new(Sockets::in_netns(path).await?))
    }

    /// Builds on existing sockets (`NetlinkLinks::sockets().clone()`).
    pub fn new(sockets: Sockets) -> Self {
        Self { sockets }
    }
}

/// Resolves device names to indexes in the namespace of `handle`; a missing
/// device maps to `None`.
async fn resolve<'a>(
    handle: &rtnetlink::Handle,
    names: impl Iterator<Item = &'a IfName>,
) -> Result<HashMap<IfName, Option<u32>>, RouteError> {
    let mut out = HashMap::new();
    for name in names {
        if out.contains_key(name) {
            continue;
        }
        let found = lookup::find_link(handle, &LinkRef::Name(name.clone())).await?;
        out.insert(name.clone(), found.map(|l| l.index));
    }
    Ok(out)
}

fn must(devs: &HashMap<IfName, Option<u32>>, dev: &IfName, ns: &Ns) -> Result<u32, RouteError> {
    devs.get(dev)
        .copied()
        .flatten()
        .ok_or_else(|| RouteError::NoSuchDevice {
            dev: dev.to_string(),
            ns: ns.to_string(),
        })
}

async fn link_names(handle: &rtnetlink::Handle) -> Result<HashMap<u32, String>, RouteError> {
    let links = lookup::list_links(handle).await?;
    Ok(links.into_iter().map(|l| (l.index, l.name)).collect())
}

#[async_trait]
impl Routes for NetlinkRoutes {
    async fn add_routes(&self, ns: &Ns, routes: &[Route]) -> Result<(), RouteError> {
        routes.iter().try_for_each(msg::check)?;
        let handle = self.sockets.handle(ns).await?;
        let devs = resolve(&handle, routes.iter().filter_map(|r| r.dev.as_ref())).await?;
        let mut reqs = Vec::with_capacity(routes.len());
        for route in routes {
            let oif = route.dev.as_ref().map(|d| must(&devs, d, ns)).transpose()?;
            reqs.push(msg::route_add(route, oif)?);
        }
        Ok(nl::apply(&handle, reqs).await?)
    }

    async fn delete_routes(&self, ns: &Ns, routes: &[Route]) -> Result<(), RouteError> {
        routes.iter().try_for_each(msg::check)?;
        let handle = self.sockets.handle(ns).await?;
        let devs = resolve(&handle, routes.iter().filter_map(|r| r.dev.as_ref())).await?;
        let mut reqs = Vec::with_capacity(routes.len());
        for route in routes {
            let oif = match &route.dev {
                // The device is gone, and its routes with it.
                Some(dev) if devs.get(dev).copied().flatten().is_none() => continue,
                Some(dev) => devs.get(dev).copied().flatten(),
                None => None,
            };
            reqs.push(msg::route_delete(route, oif)?);
        }
        Ok(nl::apply(&handle, reqs).await?)
    }

    async fn list_routes(&self, ns: &Ns) -> Result<Vec<Route>, RouteError> {
        let handle = self.sockets.handle(ns).await?;
        let names = link_names(&handle).await?;
        let msgs = nl::fetch(&handle, msg::dump_routes()).await?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => msg::parse_route(r, &names),
                _ => None,
            })
            .collect())
    }

    async fn host_routes(&self) -> Result<Vec<HostRoute>, RouteError> {
        let handle = self.sockets.host();
        let names = link_names(handle).await?;
        let msgs = nl::fetch(handle, msg::dump_routes()).await?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => msg::parse_main_route(r, &names),
                _ => None,
            })
            .collect())
    }

    async fn add_neighbours(&self, ns: &Ns, neighbours: &[Neighbour]) -> Result<(), RouteError> {
        let handle = self.sockets.handle(ns).await?;
        let devs = resolve(&handle, neighbours.iter().map(|n| &n.dev)).await?;
        let mut reqs = Vec::with_capacity(neighbours.len());
        for n in neighbours {
            reqs.push(msg::neighbour_add(n, must(&devs, &n.dev, ns)?));
        }
        Ok(nl::apply(&handle, reqs).await?)
    }

    async fn delete_neighbours(&self, ns: &Ns, neighbours: &[Neighbour]) -> Result<(), RouteError> {
        let handle = self.sockets.handle(ns).await?;
        let devs = resolve(&handle, neighbours.iter().map(|n| &n.dev)).await?;
        let reqs = neighbours
            .iter()
            .filter_map(|n| {
                devs.get(&n.dev)
                    .copied()
                    .flatten()
                    .map(|i| msg::neighbour_delete(n, i))
            })
            .collect();
        Ok(nl::apply(&handle, reqs).await?)
    }

    async fn list_neighbours(&self, ns: &Ns, dev: &IfName) -> Result<Vec<Neighbour>, RouteError> {
        let handle = self.sockets.handle(ns).await?;
        let Some(link) = lookup::find_link(&handle, &LinkRef::Name(dev.clone())).await? else {
            return Ok(Vec::new());
        };
        let answers = nl::fetch(&handle, msg::dump_neighbours(dev.as_str())).await?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == link.index => {
                    msg::parse_neighbour(n, dev)
                }
                _ => None,
            })
            .collect())
    }

    async fn list_all_neighbours(&self, ns: &Ns) -> Result<Vec<Neighbour>, RouteError> {
        let handle = self.sockets.handle(ns).await?;
        let names: std::collections::HashMap<u32, IfName> = lookup::list_links(&handle)
            .await?
            .into_iter()
            .filter_map(|l| Some((l.index, IfName::parse("ifname", &l.name).ok()?)))
            .collect();
        let answers = nl::fetch(&handle, msg::dump_neighbours(&ns.to_string())).await?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => {
                    msg::parse_neighbour(n, names.get(&n.header.ifindex)?)
                }
                _ => None,
            })
            .collect())
    }

    async fn setup_routed_host(&self, endpoint: &RoutedEndpoint) -> Result<(), RouteError> {
        let reqs = routed::routed_host(endpoint)?;
        // The IPv6 /proc knobs (none for IPv4-only) go alongside the batch.
        let knobs = routed::proc_knobs(&endpoint.port())?
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        let (netlink, proc) = tokio::join!(
            nl::apply(self.sockets.host(), reqs),
            self.sockets.write_sysctls(&Ns::Host, knobs),
        );
        netlink?;
        Ok(proc?)
    }

    async fn list_peer_routes(&self) -> Result<Vec<PeerRoute>, RouteError> {
        let msgs = nl::fetch(self.sockets.host(), msg::dump_routes()).await?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => peer::parse_peer_route(r),
                _ => None,
            })
            .collect())
    }

    async fn set_peer_routes(&self, desired: &[PeerRoute]) -> Result<PeerRouteChanges, RouteError> {
        peer::check_desired(desired)?;
        let installed = self.list_peer_routes().await?;
        let changes = peer::peer_diff(&installed, desired);
        let mut reqs = Vec::new();
        for p in &changes.removed {
            reqs.push(msg::route_delete(&p.route(), None)?);
        }
        for p in &changes.added {
            reqs.push(msg::route_add(&p.route(), None)?);
        }
        nl::apply(self.sockets.host(), reqs).await?;
        Ok(changes)
    }
}

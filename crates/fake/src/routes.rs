//! `Routes` on the fake: trellis's tagged routes and permanent neighbours,
//! following `NetlinkRoutes`' documented behaviour.

use crate::kernel::FakeKernel;
use crate::links::{self, kernel_error};
use crate::machine::Machine;
use crate::state::{Installed, Neigh, effective_metric};
use async_trait::async_trait;
use nix::errno::Errno;
use trellis_link::{LinkError, Ns, RTPROT_TRELLIS};
use trellis_netlink::NetnsError;
use trellis_route::{
    HostRoute, Neighbour, PeerRoute, PeerRouteChanges, Route, RouteError, RoutedEndpoint, Routes,
    msg, peer,
};
use trellis_types::IfName;

fn fault(op: &'static str, subject: String, errno: Errno) -> RouteError {
    kernel_error(op, subject, errno).into()
}

fn resolve(m: &Machine, ns: &Ns) -> Result<String, RouteError> {
    m.resolve(ns)
        .map_err(|e| RouteError::Netns(NetnsError::Invalid(e)))
}

/// Installs `route` in namespace `k`, tagged trellis's (create or replace:
/// the kernel's key is the destination and the metric). A gateway must be
/// reachable, as the kernel demands (`ENETUNREACH`).
pub(crate) fn install(m: &mut Machine, k: &str, route: &Route) -> Result<(), Errno> {
    let ns = m.ns_mut(k);
    if let Some(via) = route.via
        && !ns.reachable(via, route.dev.as_ref())
    {
        return Err(Errno::ENETUNREACH);
    }
    let metric = effective_metric(route);
    ns.routes
        .retain(|i| !(i.route.dst == route.dst && effective_metric(&i.route) == metric));
    ns.routes.push(Installed {
        route: route.clone(),
        protocol: RTPROT_TRELLIS,
    });
    Ok(())
}

/// Whether an installed route is the one a delete request names: trellis's,
/// same destination and kind, and the metric, gateway and device if given.
fn named_by(i: &Installed, r: &Route) -> bool {
    i.protocol == RTPROT_TRELLIS
        && i.route.dst == r.dst
        && i.route.kind == r.kind
        && (r.metric.is_none() || effective_metric(&i.route) == effective_metric(r))
        && (r.via.is_none() || i.route.via == r.via)
        && (r.dev.is_none() || i.route.dev == r.dev)
}

fn no_such_device(dev: &impl ToString, ns: &Ns) -> RouteError {
    RouteError::NoSuchDevice {
        dev: dev.to_string(),
        ns: ns.to_string(),
    }
}

fn add_routes(m: &mut Machine, ns: &Ns, routes: &[Route]) -> Result<(), RouteError> {
    routes.iter().try_for_each(msg::check)?;
    let k = resolve(m, ns)?;
    for dev in routes.iter().filter_map(|r| r.dev.as_ref()) {
        if m.ns(&k).by_name(dev.as_str()).is_none() {
            return Err(no_such_device(dev, ns));
        }
    }
    for r in routes {
        install(m, &k, r).map_err(|e| fault("add route", r.to_string(), e))?;
    }
    Ok(())
}

fn add_neighbours(m: &mut Machine, ns: &Ns, neighbours: &[Neighbour]) -> Result<(), RouteError> {
    let k = resolve(m, ns)?;
    if let Some(n) = neighbours
        .iter()
        .find(|n| m.ns(&k).by_name(n.dev.as_str()).is_none())
    {
        return Err(no_such_device(&n.dev, ns));
    }
    let table = &mut m.ns_mut(&k).neighbours;
    for n in neighbours {
        table.retain(|o| !(o.neighbour.ip == n.ip && o.neighbour.dev == n.dev));
        table.push(Neigh {
            neighbour: n.clone(),
            protocol: RTPROT_TRELLIS,
        });
    }
    Ok(())
}

fn peer_routes(m: &Machine) -> Vec<PeerRoute> {
    m.host()
        .routes
        .iter()
        .filter(|i| i.protocol == RTPROT_TRELLIS && i.route.dst.prefix_len() > 0)
        .filter(|i| i.route.kind == trellis_route::RouteKind::Unicast)
        .filter_map(|i| {
            Some(PeerRoute {
                block: i.route.dst,
                via: i.route.via?,
            })
        })
        .collect()
}

fn setup_routed_host(m: &mut Machine, ep: &RoutedEndpoint) -> Result<(), RouteError> {
    // Checks the endpoint (at least one address) as the real batch does.
    trellis_route::routed::routed_host(ep)?;
    links::setup_routed_host_port_on(m, &ep.port()).map_err(|e| match e {
        LinkError::Kernel(k) => RouteError::Kernel(k),
        LinkError::Invalid(i) => RouteError::Invalid(i),
        other => RouteError::NoSuchDevice {
            dev: ep.host_if.to_string(),
            ns: other.to_string(),
        },
    })?;
    add_routes(m, &Ns::Host, &ep.host_routes())?;
    add_neighbours(m, &Ns::Host, &ep.neighbours())
}

#[async_trait]
impl Routes for FakeKernel {
    async fn list_neighbours(&self, ns: &Ns, dev: &IfName) -> Result<Vec<Neighbour>, RouteError> {
        let s = format!("{dev} in {ns}");
        self.call("list_neighbours", s, fault, |m| {
            let k = resolve(m, ns)?;
            Ok(m.ns(&k)
                .neighbours
                .iter()
                .map(|n| n.neighbour.clone())
                .filter(|n| n.dev == *dev)
                .collect())
        })
    }

    async fn list_all_neighbours(&self, ns: &Ns) -> Result<Vec<Neighbour>, RouteError> {
        self.call("list_all_neighbours", ns.to_string(), fault, |m| {
            let k = resolve(m, ns)?;
            Ok(m.ns(&k)
                .neighbours
                .iter()
                .map(|n| n.neighbour.clone())
                .collect())
        })
    }

    async fn add_routes(&self, ns: &Ns, routes: &[Route]) -> Result<(), RouteError> {
        let s = format!("{} routes in {ns}", routes.len());
        self.call("add_routes", s, fault, |m| add_routes(m, ns, routes))
    }

    async fn delete_routes(&self, ns: &Ns, routes: &[Route]) -> Result<(), RouteError> {
        let s = format!("{} routes in {ns}", routes.len());
        self.call("delete_routes", s, fault, |m| {
            routes.iter().try_for_each(msg::check)?;
            let k = resolve(m, ns)?;
            let table = &mut m.ns_mut(&k).routes;
            for r in routes {
                // Only the first match goes, as with one RTM_DELROUTE.
                if let Some(i) = table.iter().position(|i| named_by(i, r)) {
                    table.remove(i);
                }
            }
            Ok(())
        })
    }

    async fn list_routes(&self, ns: &Ns) -> Result<Vec<Route>, RouteError> {
        self.call("list_routes", ns.to_string(), fault, |m| {
            let k = resolve(m, ns)?;
            let table = m.ns(&k).main_table().into_iter();
            Ok(table
                .filter(|h| h.protocol == RTPROT_TRELLIS)
                .map(|h| h.route)
                .collect())
        })
    }

    async fn host_routes(&self) -> Result<Vec<HostRoute>, RouteError> {
        self.call("host_routes", String::new(), fault, |m| {
            Ok(m.host().main_table())
        })
    }

    async fn add_neighbours(&self, ns: &Ns, neighbours: &[Neighbour]) -> Result<(), RouteError> {
        let s = format!("{} neighbours in {ns}", neighbours.len());
        self.call("add_neighbours", s, fault, |m| {
            add_neighbours(m, ns, neighbours)
        })
    }

    async fn delete_neighbours(&self, ns: &Ns, neighbours: &[Neighbour]) -> Result<(), RouteError> {
        let s = format!("{} neighbours in {ns}", neighbours.len());
        self.call("delete_neighbours", s, fault, |m| {
            let k = resolve(m, ns)?;
            let table = &mut m.ns_mut(&k).neighbours;
            table.retain(|o| {
                !neighbours
                    .iter()
                    .any(|n| o.neighbour.ip == n.ip && o.neighbour.dev == n.dev)
            });
            Ok(())
        })
    }

    async fn setup_routed_host(&self, endpoint: &RoutedEndpoint) -> Result<(), RouteError> {
        let s = endpoint.host_if.to_string();
        self.call("setup_routed_host", s, fault, |m| {
            setup_routed_host(m, endpoint)
        })
    }

    async fn list_peer_routes(&self) -> Result<Vec<PeerRoute>, RouteError> {
        self.call("list_peer_routes", String::new(), fault, |m| {
            Ok(peer_routes(m))
        })
    }

    async fn set_peer_routes(&self, desired: &[PeerRoute]) -> Result<PeerRouteChanges, RouteError> {
        let s = format!("{} peer routes", desired.len());
        self.call("set_peer_routes", s, fault, |m| {
            peer::check_desired(desired)?;
            let changes = peer::peer_diff(&peer_routes(m), desired);
            let table = &mut m.host_mut().routes;
            for p in &changes.removed {
                if let Some(i) = table.iter().position(|i| named_by(i, &p.route())) {
                    table.remove(i);
                }
            }
            for p in &changes.added {
                let r = p.route();
                install(m, "", &r).map_err(|e| fault("add route", r.to_string(), e))?;
            }
            Ok(changes)
        })
    }
}

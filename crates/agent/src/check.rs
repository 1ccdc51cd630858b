//! Check: does the kernel still hold what a record says an endpoint has?
//!
//! Read-only. Each problem is one sentence naming the object at fault, so
//! that an operator (or `netctl check`) can act on it; an empty list means
//! the endpoint is healthy. What `check` finds, [`Agent::reconcile`] repairs.

use crate::Error;
use crate::agent::Agent;
use crate::model::{Endpoint, Network, NetworkMode};
use crate::reconcile::parse_mac;
use std::collections::HashSet;
use trellis_link::{LinkDetail, LinkSummary, Ns, format_mac};
use trellis_route::ROUTED_HOST_MAC;
use trellis_route::routed::host_prefix;
use trellis_types::{ContainerId, Handle, IfName};

impl Agent {
    /// The differences between an endpoint's record and the kernel; empty
    /// when it is healthy. [`Error::EndpointNotFound`] if nothing is recorded.
    pub async fn check(
        &self,
        container: &ContainerId,
        ifname: &IfName,
    ) -> Result<Vec<String>, Error> {
        let handle = Handle::new(container.clone(), ifname.clone());
        let ep = self
            .endpoint(container, ifname)
            .await?
            .ok_or_else(|| Error::EndpointNotFound(handle.to_string()))?;
        let mut problems = Vec::new();
        let Ok(net) = self.network(&ep.request.network) else {
            problems.push(format!("network {:?} is not defined", ep.request.network));
            return Ok(problems);
        };
        match self.host_link(ep.host_ifname.as_str()).await? {
            None => problems.push(format!("host veth {} is missing", ep.host_ifname)),
            Some(l) => self.check_host_side(&ep, &net, &l, &mut problems).await?,
        }
        self.check_container_side(&ep, &mut problems).await?;
        let published = self.be.nat.list_published().await.unwrap_or_default();
        for p in ep.ports.iter().filter(|p| !published.contains(p)) {
            problems.push(format!(
                "published port {}/{} -> {}:{} is missing from nftables",
                p.host_port, p.protocol, p.container_ip, p.container_port
            ));
        }
        Ok(problems)
    }

    async fn check_host_side(
        &self,
        ep: &Endpoint,
        net: &Network,
        link: &LinkSummary,
        problems: &mut Vec<String>,
    ) -> Result<(), Error> {
        let name = &ep.host_ifname;
        if !link.up {
            problems.push(format!("host veth {name} is down"));
        }
        if let NetworkMode::Bridge { bridge } = &net.spec.mode {
            let index = self.host_link(bridge.as_str()).await?.map(|b| b.index);
            if index.is_none() {
                problems.push(format!("bridge {bridge} is missing"));
            } else if link.master != index {
                problems.push(format!("host veth {name} is not a port of bridge {bridge}"));
            }
            return Ok(());
        }
        if link.mac != Some(ROUTED_HOST_MAC) {
            let mac = link.mac.as_ref().map(format_mac).unwrap_or_default();
            let want = format_mac(&ROUTED_HOST_MAC);
            problems.push(format!("host veth {name} has MAC {mac}, not {want}"));
        }
        let routes: HashSet<_> = self
            .be
            .routes
            .list_routes(&Ns::Host)
            .await?
            .into_iter()
            .filter(|r| r.dev.as_ref() == Some(name))
            .map(|r| r.dst)
            .collect();
        let neighbours = self.be.routes.list_neighbours(&Ns::Host, name).await?;
        let mac = parse_mac(&ep.mac);
        for a in &ep.addresses {
            let dst = host_prefix(a.addr());
            if !routes.contains(&dst) {
                problems.push(format!("host route {dst} dev {name} is missing"));
            }
            if !neighbours
                .iter()
                .any(|n| n.ip == a.addr() && Some(n.mac) == mac)
            {
                problems.push(format!(
                    "neighbour {} lladdr {} dev {name} is missing",
                    a.addr(),
                    ep.mac
                ));
            }
        }
        Ok(())
    }

    /// What the container's side lacks (interface, up, addresses, routes).
    pub(crate) async fn check_container_side(
        &self,
        ep: &Endpoint,
        problems: &mut Vec<String>,
    ) -> Result<(), Error> {
        let req = &ep.request;
        if self.be.links.check_netns(&req.netns).is_err() {
            problems.push(format!("netns {} is gone", req.netns));
            return Ok(());
        }
        let ns = Ns::Path(req.netns.clone());
        let Some(LinkDetail { link, addresses }) =
            self.be.links.link_detail(&ns, &req.ifname).await?
        else {
            problems.push(format!(
                "container interface {} is missing in netns {}",
                req.ifname, req.netns
            ));
            return Ok(());
        };
        let ifname = &req.ifname;
        if !link.up {
            problems.push(format!("container interface {ifname} is down"));
        }
        for a in ep.addresses.iter().filter(|a| !addresses.contains(a)) {
            problems.push(format!("container interface {ifname} lacks address {a}"));
        }
        let routes: HashSet<_> = self
            .be
            .routes
            .list_routes(&ns)
            .await?
            .into_iter()
            .map(|r| r.dst)
            .collect();
        for dst in ep.routes.iter().filter(|d| !routes.contains(d)) {
            problems.push(format!("container route {dst} dev {ifname} is missing"));
        }
        Ok(())
    }
}

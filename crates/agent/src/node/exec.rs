//! The executor: the one place where [`Change`]s become kernel calls.
//!
//! Two ways to apply a list: [`Executor::apply_all`] stops at the first
//! failure (an attach, whose caller then converges its slice back to
//! nothing), [`Executor::apply`] goes on past failures and reports each
//! (reconcile and GC: one stuck object must not keep the rest from being
//! mended).

use super::{Change, Port};
use crate::Error;
use crate::guard::refused;
use crate::reaper::Reaper;
use futures::StreamExt;
use ipnet::IpNet;
use trellis_link::{BridgeSpec, ContainerIface, LinkRef, Links, Mac, Ns, RetireEnd, VethSpec};
use trellis_nat::Nat;
use trellis_route::{Route, RoutedEndpoint, Routes};

/// Applies changes through the kernel traits.
#[derive(Clone, Copy)]
pub struct Executor<'a> {
    /// Links: bridges, veths, addresses.
    pub links: &'a dyn Links,
    /// Routes and neighbours.
    pub routes: &'a dyn Routes,
    /// trellis's NAT table.
    pub nat: &'a dyn Nat,
    /// Where retired veths go to be deleted in batches.
    pub(crate) reaper: &'a Reaper,
}

/// What [`Executor::apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The changes made.
    pub done: Vec<Change>,
    /// The changes that failed, with why.
    pub failed: Vec<(Change, Error)>,
}

impl Executor<'_> {
    /// Applies every change in order, going on past failures.
    pub async fn apply(&self, changes: Vec<Change>) -> Applied {
        let mut a = Applied::default();
        for c in changes {
            match self.one(&c).await {
                Ok(()) => a.done.push(c),
                Err(e) => a.failed.push((c, e)),
            }
        }
        a
    }

    /// Applies the changes in order and stops at the first failure.
    pub async fn apply_all(&self, changes: &[Change]) -> Result<(), Error> {
        for c in changes {
            self.one(c).await?;
        }
        Ok(())
    }

    /// One change.
    async fn one(&self, c: &Change) -> Result<(), Error> {
        let host = Ns::Host;
        match c {
            Change::Unpublish(p) => self.nat.unpublish(p).await?,
            Change::DeletePorts(ports) => self.retire(ports).await?,
            Change::DeleteRoutes(r) => self.routes.delete_routes(&host, r).await?,
            Change::EnsureBridge { bridge, .. } => {
                let spec = BridgeSpec {
                    name: bridge.name.clone(),
                    gateway: bridge.addresses.iter().copied().collect(),
                    mac: None,
                    mtu: bridge.mtu,
                };
                self.links
                    .ensure_bridge(&spec)
                    .await
                    .map_err(refused("bridge", &bridge.name))?;
            }
            Change::AddBlackholes(blocks) => {
                let routes: Vec<Route> = blocks.iter().map(|&b| Route::blackhole(b)).collect();
                self.routes.add_routes(&host, &routes).await?;
            }
            Change::CreatePort { port, replace, .. } => {
                if *replace {
                    // A repair: what is left of the port goes first.
                    self.retire(std::slice::from_ref(port)).await?;
                }
                self.create_port(port).await?;
            }
            Change::SetHostUp(name) => {
                let link = LinkRef::Name(name.clone());
                self.links.set_up(&host, &link).await?;
            }
            Change::RoutedHost { port, .. } => {
                let index = port.host.index.unwrap_or_default();
                self.routed_host(port, index, container_mac(port)).await?;
            }
            Change::Container { port, .. } => {
                let c = port.container.as_ref().expect("a container side to mend");
                let iface = ContainerIface {
                    netns: c.netns.clone(),
                    link: LinkRef::Name(c.ifname.clone()),
                    addresses: c.addresses.iter().copied().collect(),
                    ipv6: c.ipv6,
                };
                self.links.setup_container(&iface, &c.routes).await?;
            }
            Change::SetPeerRoutes(r) => {
                self.routes.set_peer_routes(r).await?;
            }
            Change::SyncNat(state) => self.nat.sync(state).await?,
            Change::RemoveNat => self.nat.remove_all().await?,
            Change::Publish(p) => self.nat.publish(p).await?,
        }
        Ok(())
    }

    /// Retires the ports' veths — out of the way at once, names and
    /// addresses free — and queues them for the reaper's batched delete
    /// (see [`crate::reaper`]). Goes on past failures; reports the first.
    async fn retire(&self, ports: &[Port]) -> Result<(), Error> {
        /// Retirements under way at once (each is a host round trip, plus a
        /// namespace session when the container end is known).
        const AT_ONCE: usize = 32;
        let mut retired = Vec::with_capacity(ports.len());
        let mut first_error: Option<trellis_link::LinkError> = None;
        // Boxed as `Send` futures: a stream of borrowing closures trips
        // the compiler's higher-ranked `Send` inference in spawned callers.
        let links = self.links;
        let retirements: Vec<
            futures::future::BoxFuture<
                '_,
                Result<Option<trellis_types::IfName>, trellis_link::LinkError>,
            >,
        > = ports
            .iter()
            .map(|p| {
                let end = p.container.as_ref().map(|c| RetireEnd {
                    netns: c.netns.clone(),
                    ifname: c.ifname.clone(),
                });
                Box::pin(links.retire_veth(&p.host.name, end)) as futures::future::BoxFuture<'_, _>
            })
            .collect();
        let mut each = futures::stream::iter(retirements).buffer_unordered(AT_ONCE);
        while let Some(r) = each.next().await {
            match r {
                Ok(name) => retired.extend(name),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.reaper.submit(retired);
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }

    /// A veth with its peer born inside the container, then (routed) the host
    /// side in one batch before the container end comes up, then the
    /// container side in one session inside its namespace.
    /// The container end gets the record's MAC (`VethSpec::container_mac`),
    /// so a port made again keeps it and its record stays true.
    async fn create_port(&self, port: &Port) -> Result<(), Error> {
        let c = port
            .container
            .as_ref()
            .expect("a port to make has a container end");
        let spec = VethSpec {
            host_name: port.host.name.clone(),
            container_netns: c.netns.clone(),
            container_name: c.ifname.clone(),
            mtu: port.host.mtu,
            container_mac: c.mac,
            host_mac: port.host.mac,
            master: port.host.master.clone().map(LinkRef::Name),
            host_ipv6: port.host.ipv6,
        };
        let veth = self
            .links
            .create_veth(&spec)
            .await
            .map_err(refused("ifname", &c.ifname))?;
        if port.host.routed {
            self.routed_host(port, veth.host_ifindex, veth.container_mac)
                .await?;
        }
        let iface = ContainerIface {
            netns: c.netns.clone(),
            link: LinkRef::Index(veth.container_ifindex),
            addresses: c.addresses.iter().copied().collect(),
            ipv6: c.ipv6,
        };
        self.links.setup_container(&iface, &c.routes).await?;
        Ok(())
    }

    async fn routed_host(&self, port: &Port, index: u32, mac: Mac) -> Result<(), Error> {
        let c = port.container.as_ref();
        let endpoint = RoutedEndpoint {
            host_if: port.host.name.clone(),
            host_ifindex: index,
            addresses: c
                .iter()
                .flat_map(|c| c.addresses.iter().map(IpNet::addr))
                .collect(),
            container_mac: mac,
        };
        Ok(self.routes.setup_routed_host(&endpoint).await?)
    }
}

fn container_mac(port: &Port) -> Mac {
    port.container
        .as_ref()
        .and_then(|c| c.mac)
        .or_else(|| port.neighbours.first().map(|(_, m)| *m))
        .unwrap_or_default()
}

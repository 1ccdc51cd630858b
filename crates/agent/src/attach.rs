//! Attach and detach: the pipeline, and its undo.
//!
//! An attach runs its steps in order and pushes the undo of each step that
//! succeeded onto a stack; if a later step fails, the stack is unwound in
//! reverse and the first error is returned, so a failed attach leaves no
//! address, veth, route, port or record behind. Detach needs no record to
//! work: the veth name and the IPAM handle derive from (container, ifname), so
//! a detach after a crash at any point still finds everything.
//!
//! The steps common to both modes live here; what differs (the bridge port or
//! the routed port) lives in [`crate::bridge`] and [`crate::routed`].

use crate::agent::Agent;
use crate::events::Event;
use crate::model::{AttachRequest, Endpoint, Network, NetworkMode};
use crate::records::teardown_result;
use crate::{Error, Inflight};
use ipnet::IpNet;
use std::net::IpAddr;
use trellis_link::{VethInfo, format_mac, host_veth_name};
use trellis_types::{ContainerId, Handle, IfName, PortMapping};

/// A step to undo when a later step of an attach fails.
pub(crate) enum Undo {
    Ports(Handle),
    Addresses(Handle),
    Veth(IfName),
    Published(Vec<PortMapping>),
}

/// What the mode-specific part of an attach configured.
pub(crate) struct Port {
    /// The container's addresses, with the prefix length they were given.
    pub addresses: Vec<IpNet>,
    /// The destinations of the container's routes.
    pub routes: Vec<IpNet>,
}

impl Agent {
    /// Attaches a container to a network and returns the endpoint. The same
    /// request twice returns the same endpoint; the same container interface
    /// with other settings is [`Error::EndpointExists`].
    pub async fn attach(&self, req: AttachRequest) -> Result<Endpoint, Error> {
        let net = self.network(&req.network)?;
        crate::validate::check_request(&req, &net)?;
        let handle = req.handle();
        if let Some(ep) = self.records.endpoint(&handle).await? {
            return if ep.request == req {
                Ok(ep)
            } else {
                Err(Error::EndpointExists(handle.to_string()))
            };
        }
        let Some(_inflight) = Inflight::begin(self, &handle) else {
            let what = format!("{handle} (another attach of it is under way)");
            return Err(Error::EndpointExists(what));
        };
        let mut undo = Vec::new();
        match self.plumb(&req, &net, &mut undo).await {
            Ok(ep) => {
                self.emit(Event::EndpointAttached(ep.clone()));
                Ok(ep)
            }
            Err(e) => {
                self.unwind(undo).await;
                Err(e)
            }
        }
    }

    async fn plumb(
        &self,
        req: &AttachRequest,
        net: &Network,
        undo: &mut Vec<Undo>,
    ) -> Result<Endpoint, Error> {
        let handle = req.handle();
        // Bad input is refused before anything changes (not even IPAM's
        // next-fit cursor).
        self.be.links.check_netns(&req.netns)?;
        self.ports.claim(&handle, &req.ports)?;
        undo.push(Undo::Ports(handle.clone()));
        undo.push(Undo::Addresses(handle.clone()));
        let ips = self.allocate(net, &handle, &req.fixed_addresses).await?;
        let host_ifname = host_veth_name(&req.container, &req.ifname);
        let veth = self.create_veth(req, net, &host_ifname).await?;
        undo.push(Undo::Veth(host_ifname.clone()));
        let port = match &net.spec.mode {
            NetworkMode::Bridge { .. } => self.plumb_bridge_port(req, net, &veth, &ips).await?,
            NetworkMode::Routed => {
                self.plumb_routed_port(req, net, &host_ifname, &veth, &ips)
                    .await?
            }
        };
        let ports = self.publish(req, &ips, undo).await?;
        let ep = Endpoint {
            request: req.clone(),
            addresses: port.addresses,
            gateways: net.gateways.clone(),
            mac: format_mac(&veth.container_mac),
            host_ifname,
            routes: port.routes,
            ports,
        };
        self.records.create_endpoint(&ep).await?;
        Ok(ep)
    }

    /// One address per pool of the network: the fixed ones first (so that a
    /// taken one fails before anything else is allocated), then the next
    /// free ones, each under its pool's short allocation lock.
    pub(crate) async fn allocate(
        &self,
        net: &Network,
        handle: &Handle,
        fixed: &[IpAddr],
    ) -> Result<Vec<IpAddr>, Error> {
        let pools = net.pools();
        let mut ips: Vec<Option<IpAddr>> = vec![None; pools.len()];
        for (slot, (pool, cidr)) in ips.iter_mut().zip(&pools) {
            if let Some(&ip) = fixed.iter().find(|ip| cidr.contains(*ip)) {
                let lock = self.pool_lock(pool);
                let _held = lock.lock().await;
                self.ipam
                    .allocate_specific(pool, handle, ip)
                    .await
                    .map_err(fixed_field)?;
                *slot = Some(ip);
            }
        }
        for (slot, (pool, _)) in ips.iter_mut().zip(&pools) {
            if slot.is_none() {
                let lock = self.pool_lock(pool);
                let _held = lock.lock().await;
                *slot = Some(self.ipam.allocate(pool, handle).await?);
            }
        }
        Ok(ips.into_iter().flatten().collect())
    }

    /// Publishes the request's ports to the container's address of the same
    /// family as the host port's traffic (IPv4 when it has one).
    async fn publish(
        &self,
        req: &AttachRequest,
        ips: &[IpAddr],
        undo: &mut Vec<Undo>,
    ) -> Result<Vec<PortMapping>, Error> {
        let Some(&ip) = ips.iter().find(|ip| ip.is_ipv4()).or(ips.first()) else {
            return Ok(Vec::new());
        };
        let ports: Vec<PortMapping> = req.ports.iter().map(|p| p.to(ip)).collect();
        if !ports.is_empty() {
            self.be.nat.publish(&ports).await?;
            undo.push(Undo::Published(ports.clone()));
        }
        Ok(ports)
    }

    /// Undoes the steps of a failed attach, newest first; failures are logged
    /// and do not stop the rest.
    async fn unwind(&self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            let result = match step {
                Undo::Ports(h) => {
                    self.ports.release(&h);
                    Ok(())
                }
                Undo::Addresses(h) => self.ipam.release(&h).await.map(drop).map_err(Error::from),
                Undo::Veth(name) => self.be.links.delete_link(&name).await.map_err(Error::from),
                Undo::Published(p) => self.be.nat.unpublish(&p).await.map_err(Error::from),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "rollback of a failed attach left an error");
            }
        }
    }

    /// Detaches a container interface: unpublishes its ports, deletes its veth
    /// (the container end, and the host routes and neighbours on it, go with
    /// it), releases its addresses, forgets it. Unknown is done (CNI DEL
    /// semantics). Goes on past failures and reports them all; the record is
    /// kept when anything failed, so a retry finds it.
    pub async fn detach(&self, container: &ContainerId, ifname: &IfName) -> Result<(), Error> {
        let handle = Handle::new(container.clone(), ifname.clone());
        let record = self.records.endpoint(&handle).await?;
        let mut errors = Vec::new();
        if let Some(ep) = &record
            && !ep.ports.is_empty()
            && let Err(e) = self.be.nat.unpublish(&ep.ports).await
        {
            errors.push(e.to_string());
        }
        let veth = host_veth_name(container, ifname);
        if let Err(e) = self.be.links.delete_link(&veth).await {
            errors.push(e.to_string());
        }
        if let Err(e) = self.ipam.release(&handle).await {
            errors.push(e.to_string());
        }
        if !errors.is_empty() {
            return teardown_result(format!("endpoint {handle}"), errors);
        }
        self.ports.release(&handle);
        if let Some(ep) = record {
            self.records.delete_endpoint(&handle).await?;
            self.emit(Event::EndpointDetached(ep));
        }
        Ok(())
    }

    /// The endpoint of a container interface, if attached.
    pub async fn endpoint(
        &self,
        container: &ContainerId,
        ifname: &IfName,
    ) -> Result<Option<Endpoint>, Error> {
        let handle = Handle::new(container.clone(), ifname.clone());
        self.records.endpoint(&handle).await
    }

    pub(crate) async fn create_veth(
        &self,
        req: &AttachRequest,
        net: &Network,
        host_ifname: &IfName,
    ) -> Result<VethInfo, Error> {
        let spec = match &net.spec.mode {
            NetworkMode::Bridge { bridge } => {
                crate::bridge::veth_spec(req, net, bridge, host_ifname)
            }
            NetworkMode::Routed => crate::routed::veth_spec(req, net, host_ifname),
        };
        Ok(self.be.links.create_veth(&spec).await?)
    }
}

/// IPAM checks a fixed address as `ip`; the caller said `fixed_addresses`.
fn fixed_field(e: trellis_ipam::Error) -> Error {
    match e {
        trellis_ipam::Error::Invalid(mut bad) => {
            bad.field = "fixed_addresses";
            Error::Invalid(bad)
        }
        other => other.into(),
    }
}

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
use crate::plan::{self, ContainerPlan};
use crate::records::teardown_result;
use crate::{Error, Inflight};
use std::net::IpAddr;
use trellis_ipam::Want;
use trellis_link::{ContainerIface, LinkRef, VethInfo, host_veth_name};
use trellis_types::{ContainerId, Handle, IfName, PortMapping};

/// A step to undo when a later step of an attach fails.
pub(crate) enum Undo {
    Ports(Handle),
    /// The addresses and the record, taken in one commit.
    Allocation(Handle),
    Veth(IfName),
    Published(Vec<PortMapping>),
}

impl Agent {
    /// Attaches a container to a network and returns the endpoint. The same
    /// request twice returns the same endpoint; the same container interface
    /// with other settings is [`Error::EndpointExists`].
    pub async fn attach(&self, req: AttachRequest) -> Result<Endpoint, Error> {
        let net = self.network(&req.network)?;
        crate::validate::check_request(&req, &net)?;
        let handle = req.handle();
        // Marked under way before the record is read: the record is written
        // before the plumbing, so a record of an attach under way must not be
        // taken for a finished one.
        let Some(_inflight) = Inflight::begin(self, &handle) else {
            let what = format!("{handle} (another attach of it is under way)");
            return Err(Error::EndpointExists(what));
        };
        if let Some(ep) = self.records.endpoint(&handle).await? {
            return if ep.request == req {
                Ok(ep)
            } else {
                Err(Error::EndpointExists(handle.to_string()))
            };
        }
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

    /// The steps of an attach: claim the host ports, take the addresses and
    /// record the endpoint (one store commit), then plumb the plan — veth,
    /// the mode's port, published ports. The record is durable before any
    /// kernel object exists, so a crash at any later point leaves a record
    /// that reconcile repairs (or removes with its container).
    async fn plumb(
        &self,
        req: &AttachRequest,
        net: &Network,
        undo: &mut Vec<Undo>,
    ) -> Result<Endpoint, Error> {
        let handle = req.handle();
        // Bad input, and anything that would hurt the host, is refused
        // before anything changes (not even IPAM's next-fit cursor).
        self.check_attach_on_host(req).await?;
        self.ports.claim(&handle, &req.ports)?;
        undo.push(Undo::Ports(handle.clone()));
        let ips = self.allocate_recorded(req, net).await?;
        undo.push(Undo::Allocation(handle.clone()));
        let ep = plan::endpoint(req, net, &ips);
        let container = plan::container_plan(net, &ips);
        let veth = self.create_veth(req, net, &ep.host_ifname).await?;
        undo.push(Undo::Veth(ep.host_ifname.clone()));
        self.plumb_port(req, net, &ep.host_ifname, &veth, &container)
            .await?;
        if !ep.ports.is_empty() {
            self.be.nat.publish(&ep.ports).await?;
            undo.push(Undo::Published(ep.ports.clone()));
        }
        Ok(ep)
    }

    /// Takes one address per pool of the network (the fixed ones asked for,
    /// else the next free) and writes the endpoint's record, all in one
    /// store transaction, under the pools' short allocation locks.
    async fn allocate_recorded(
        &self,
        req: &AttachRequest,
        net: &Network,
    ) -> Result<Vec<IpAddr>, Error> {
        let handle = req.handle();
        let wants: Vec<Want> = net
            .pools()
            .into_iter()
            .map(
                |(pool, cidr)| match req.fixed_addresses.iter().find(|ip| cidr.contains(*ip)) {
                    Some(&ip) => Want::exactly(pool, ip),
                    // No record (read under the in-flight mark) means no
                    // address: the two are only ever committed together.
                    None => Want::fresh(pool),
                },
            )
            .collect();
        let locks: Vec<_> = wants.iter().map(|w| self.pool_lock(&w.pool)).collect();
        let mut held = Vec::with_capacity(locks.len());
        for lock in &locks {
            held.push(lock.lock().await);
        }
        let record = |ips: &[IpAddr]| vec![self.records.create_op(&plan::endpoint(req, net, ips))];
        let result = self.ipam.allocate_with(&handle, &wants, record).await;
        drop(held);
        result.map_err(|e| match e {
            trellis_ipam::Error::Invalid(mut bad) if bad.field == "ip" => {
                // IPAM checks a fixed address as `ip`; the caller said
                // `fixed_addresses`.
                bad.field = "fixed_addresses";
                Error::Invalid(bad)
            }
            trellis_ipam::Error::Precondition(_) => Error::EndpointExists(handle.to_string()),
            other => other.into(),
        })
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
                Undo::Allocation(h) => self
                    .ipam
                    .release_with(&h, vec![self.records.delete_op(&h)])
                    .await
                    .map(drop)
                    .map_err(Error::from),
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
    /// it), then releases its addresses and forgets it in one store commit.
    /// Unknown is done (CNI DEL semantics); an attach of it under way is
    /// [`Error::Busy`]. Goes on past kernel failures and
    /// reports them all; the addresses and the record are kept when anything
    /// failed, so a retry finds them.
    pub async fn detach(&self, container: &ContainerId, ifname: &IfName) -> Result<(), Error> {
        let handle = Handle::new(container.clone(), ifname.clone());
        // Tearing down what an attach is still building would race its own
        // undo; the caller retries once the attach has answered.
        if self.is_inflight(&handle) {
            return Err(Error::Busy(handle.to_string()));
        }
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
        if !errors.is_empty() {
            // Keep the record and the addresses: the veth may still carry
            // them, and a retry (or GC) finds everything where it was.
            return teardown_result(format!("endpoint {handle}"), errors);
        }
        // The addresses and the record go in one commit.
        let forget = vec![self.records.delete_op(&handle)];
        self.ipam.release_with(&handle, forget).await?;
        self.ports.release(&handle);
        if let Some(ep) = record {
            self.emit(Event::EndpointDetached(ep));
        }
        Ok(())
    }

    /// The endpoint of a container interface, if attached (an attach under
    /// way is not, yet).
    pub async fn endpoint(
        &self,
        container: &ContainerId,
        ifname: &IfName,
    ) -> Result<Option<Endpoint>, Error> {
        let handle = Handle::new(container.clone(), ifname.clone());
        if self.is_inflight(&handle) {
            return Ok(None);
        }
        self.records.endpoint(&handle).await
    }

    /// Plumbs a new veth as `plan` says: a routed port's host side first
    /// (see [`crate::routed`]), then the container side in one session inside
    /// its namespace (addresses, IPv6 off or on, up, routes). A bridge port
    /// needs nothing more on the host: the veth was made on its bridge.
    pub(crate) async fn plumb_port(
        &self,
        req: &AttachRequest,
        net: &Network,
        host_ifname: &IfName,
        veth: &VethInfo,
        plan: &ContainerPlan,
    ) -> Result<(), Error> {
        if net.spec.mode == NetworkMode::Routed {
            self.plumb_routed_host(net, host_ifname, veth, plan).await?;
        }
        let iface = ContainerIface {
            netns: req.netns.clone(),
            link: LinkRef::Index(veth.container_ifindex),
            addresses: plan.addresses.clone(),
            ipv6: plan.ipv6,
        };
        Ok(self.be.links.setup_container(&iface, &plan.routes).await?)
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
        let ifname = spec.container_name.clone();
        self.be
            .links
            .create_veth(&spec)
            .await
            .map_err(crate::guard::refused("ifname", &ifname))
    }
}

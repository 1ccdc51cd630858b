//! Attach and detach: the pipeline, and its undo.
//!
//! An attach runs its steps in order and pushes the undo of each step that
//! succeeded onto a stack; if a later step fails, the stack is unwound in
//! reverse and the first error is returned, so a failed attach leaves no
//! address, veth, route, port or record behind. Detach needs no record to
//! work: the veth name and the IPAM handle derive from (container, ifname), so
//! a detach after a crash at any point still finds everything.

use crate::Error;
use crate::agent::{Agent, with_prefix};
use crate::model::{AttachRequest, Endpoint, PortSpec};
use crate::records::teardown_result;
use trellis_link::{ContainerIface, LinkRef, Ns, VethSpec, format_mac, host_veth_name};
use trellis_route::Route;
use trellis_types::{ContainerId, Handle, IfName, PortMapping};

/// A step to undo when a later step of an attach fails.
enum Undo {
    Ports(Handle),
    Address(Handle),
    Veth(IfName),
    Published(Vec<PortMapping>),
}

impl Agent {
    /// Attaches a container to a network and returns the endpoint. The same
    /// request twice returns the same endpoint; the same container interface
    /// with other settings is [`Error::EndpointExists`].
    pub async fn attach(&self, req: AttachRequest) -> Result<Endpoint, Error> {
        let net = self.network(&req.network)?;
        let handle = req.handle();
        if let Some(ep) = self.records.endpoint(&handle).await? {
            return if ep.request == req {
                Ok(ep)
            } else {
                Err(Error::EndpointExists(handle.to_string()))
            };
        }
        let mut undo = Vec::new();
        match self.plumb(&req, &net, &mut undo).await {
            Ok(ep) => Ok(ep),
            Err(e) => {
                self.unwind(undo).await;
                Err(e)
            }
        }
    }

    async fn plumb(
        &self,
        req: &AttachRequest,
        net: &crate::model::Network,
        undo: &mut Vec<Undo>,
    ) -> Result<Endpoint, Error> {
        let handle = req.handle();
        // Bad input is refused before anything changes (not even IPAM's
        // next-fit cursor).
        self.be.links.check_netns(&req.netns)?;
        self.ports.claim(&handle, &req.ports)?;
        undo.push(Undo::Ports(handle.clone()));
        let ip = self.ipam.allocate(&net.spec.name, &handle).await?;
        undo.push(Undo::Address(handle.clone()));
        let host_ifname = host_veth_name(&req.container, &req.ifname);
        let veth = self
            .be
            .links
            .create_veth(&VethSpec {
                host_name: host_ifname.clone(),
                container_netns: req.netns.clone(),
                container_name: req.ifname.clone(),
                mtu: net.spec.mtu,
                container_mac: None,
                host_mac: None,
                master: Some(LinkRef::Name(net.spec.bridge.clone())),
            })
            .await?;
        undo.push(Undo::Veth(host_ifname.clone()));
        let address = with_prefix(net, ip);
        self.be
            .links
            .setup_container_iface(&ContainerIface {
                netns: req.netns.clone(),
                link: LinkRef::Index(veth.container_ifindex),
                addresses: vec![address],
            })
            .await?;
        let default = Route::default_via(net.gateway, req.ifname.clone());
        let ns = Ns::Path(req.netns.clone());
        self.be
            .routes
            .add_routes(&ns, std::slice::from_ref(&default))
            .await?;
        let ports: Vec<PortMapping> = req.ports.iter().map(|p: &PortSpec| p.to(ip)).collect();
        if !ports.is_empty() {
            self.be.nat.publish(&ports).await?;
            undo.push(Undo::Published(ports.clone()));
        }
        let ep = Endpoint {
            request: req.clone(),
            addresses: vec![address],
            gateway: net.gateway,
            mac: format_mac(&veth.container_mac),
            host_ifname,
            routes: vec![default.dst],
            ports,
        };
        self.records.create_endpoint(&ep).await?;
        Ok(ep)
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
                Undo::Address(h) => self.ipam.release(&h).await.map(drop).map_err(Error::from),
                Undo::Veth(name) => self.be.links.delete_link(&name).await.map_err(Error::from),
                Undo::Published(p) => self.be.nat.unpublish(&p).await.map_err(Error::from),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "rollback of a failed attach left an error");
            }
        }
    }

    /// Detaches a container interface: unpublishes its ports, deletes its veth
    /// (the container end goes with it), releases its address, forgets it.
    /// Unknown is done (CNI DEL semantics). Goes on past failures and reports
    /// them all; the record is kept when anything failed, so a retry finds it.
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
        if errors.is_empty() {
            self.ports.release(&handle);
            if record.is_some() {
                self.records.delete_endpoint(&handle).await?;
            }
        }
        teardown_result(format!("endpoint {handle}"), errors)
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
}

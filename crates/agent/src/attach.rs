//! Attach and detach: converge one endpoint's slice of the node state.
//!
//! An attach takes the addresses and writes the record (one store commit),
//! computes the endpoint's port as data ([`crate::node::port`]) and applies
//! `diff(slice, nothing)` — new blackholes, the port, its published ports —
//! through the one executor, stopping at the first failure. A failed attach
//! then observes its slice in the kernel and applies `diff(nothing,
//! observed)`, so whatever the failed step left (a veth, a published port)
//! is gone *before* the error is answered; then its addresses, record and
//! host ports are released. Detach applies `diff(nothing, slice)` for the
//! slice its record describes: no read of the node, and no record needed
//! (names derive from (container, ifname), so a detach after a crash at any
//! point still finds everything).

use crate::agent::Agent;
use crate::events::Event;
use crate::model::{AttachRequest, Endpoint, Network, NetworkMode};
use crate::node::{self, ContainerEnd, NodeState, Port, diff};
use crate::plan;
use crate::records::teardown_result;
use crate::{Detaching, Error, Inflight};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;
use trellis_ipam::Want;
use trellis_link::host_veth_name;
use trellis_types::{ContainerId, Handle, IfName, PoolName};

impl Agent {
    /// Attaches a container to a network and returns the endpoint. The same
    /// request twice returns the same endpoint; the same container interface
    /// with other settings is [`Error::EndpointExists`].
    pub async fn attach(&self, req: AttachRequest) -> Result<Endpoint, Error> {
        let net = self.network(req.network.as_str())?;
        crate::validate::check_request(&req, &net)?;
        // The reaper's batched deletes wait while attaches and detaches
        // are under way.
        let _busy = self.reaper.busy();
        let handle = req.handle();
        // Marked under way before the record is read: the record is written
        // before the plumbing, so a record of an attach under way must not be
        // taken for a finished one.
        let Some(_inflight) = Inflight::begin(self, &handle) else {
            let what = format!("{handle} (another attach of it is under way)");
            return Err(Error::EndpointExists(what));
        };
        if let Some(ep) = self.records.endpoint(&handle).await? {
            if ep.request == req {
                return Ok(ep);
            }
            if self.is_container_netns(&ep.request.netns) {
                return Err(Error::EndpointExists(handle.to_string()));
            }
            // A record of a container that is gone (its namespace with it),
            // which reconcile has not reached yet — it runs in the
            // background after a restart: it goes now, as reconcile would
            // take it, and this attach goes on.
            tracing::info!(%handle, netns = %ep.request.netns, "detaching a stale endpoint whose namespace is gone");
            self.detach_unchecked(&handle.container, &handle.ifname)
                .await?;
        }
        let ep = self.plumb(&req, &net).await?;
        self.emit(Event::EndpointAttached(ep.clone()));
        Ok(ep)
    }

    /// Claims the host ports, takes the addresses and records the endpoint
    /// (one store commit), then converges the endpoint's slice while that
    /// commit is made durable. It answers only once both are done, so an
    /// answered attach survives a crash; a crash before that leaves what
    /// reconcile removes or completes. A failure leaves nothing: not in the
    /// kernel, not in the store, no claimed port.
    async fn plumb(&self, req: &AttachRequest, net: &Network) -> Result<Endpoint, Error> {
        let handle = req.handle();
        // Bad input, and anything that would hurt the host, is refused
        // before anything changes (not even IPAM's next-fit cursor).
        self.check_attach_on_host(req).await?;
        self.ports.claim(&handle, &req.ports)?;
        let ips = match self.allocate_recorded(req, net).await {
            Ok(ips) => ips,
            Err(e) => {
                self.ports.release(&handle);
                return Err(e);
            }
        };
        let ep = plan::endpoint(req, net, &ips);
        let port = node::port(&ep, net);
        // The allocation and record are committed but not yet durable: the
        // store's fsync runs beside the kernel work. A crash before both
        // are done leaves a veth without a record (reconcile removes it) or
        // a record without a veth (reconcile makes it).
        let (made, synced) = tokio::join!(self.converge_new(&ep, net, &port), self.be.store.sync());
        let made = made.and(synced.map_err(Error::from));
        if let Err(e) = made {
            self.converge_to_nothing(&ep, port).await;
            let forget = vec![self.records.delete_op(&handle)];
            let held = recorded_addresses(&ep);
            if let Err(e) = self
                .ipam
                .release_addresses_with(&handle, &held, forget)
                .await
            {
                tracing::warn!(error = %e, %handle, "rollback of a failed attach kept its addresses");
            }
            self.ports.release(&handle);
            if net.spec.mode == NetworkMode::Routed {
                // A block IPAM claimed for it stays this node's.
                self.emit(Event::BlocksChanged);
            }
            return Err(e);
        }
        Ok(ep)
    }

    /// Applies `diff(slice, nothing)` for a new endpoint: blackholes for
    /// blocks IPAM has just claimed, the port, its published ports.
    async fn converge_new(&self, ep: &Endpoint, net: &Network, port: &Port) -> Result<(), Error> {
        let mut want = NodeState::default();
        if net.spec.mode == NetworkMode::Routed {
            want.blackholes = self.new_blocks(net).await?;
        }
        want.ports.insert(port.host.name.clone(), port.clone());
        want.nat.ports = ep.ports.clone();
        let changes = diff(&want, &NodeState::default());
        self.executor().apply_all(&changes).await?;
        let claimed = !want.blackholes.is_empty();
        self.blackholed
            .lock()
            .expect("blackholed lock")
            .extend(want.blackholes);
        if claimed {
            // Announced now, before the attach answers: BGP export follows
            // block changes alone, not every endpoint.
            self.emit(Event::BlocksChanged);
        }
        Ok(())
    }

    /// Observes what a failed attach left of its slice and removes it.
    async fn converge_to_nothing(&self, ep: &Endpoint, port: Port) {
        let mut slice = NodeState::default();
        slice.ports.insert(port.host.name.clone(), port);
        slice.nat.ports = ep.ports.clone();
        let be = &self.be;
        let left = match node::observe_port(&*be.links, &*be.routes, &*be.nat, &slice).await {
            Ok(left) => left,
            Err(e) => {
                // Unreadable: remove all the slice could hold (deletes are
                // idempotent).
                tracing::warn!(error = %e, "rollback could not read the kernel");
                slice
            }
        };
        let undo = diff(&NodeState::default(), &left);
        for (change, e) in self.executor().apply(undo).await.failed {
            tracing::warn!(error = %e, %change, "rollback of a failed attach left an error");
        }
        // A failure leaves nothing, not even a retired veth (the error
        // path can wait for the kernel's teardown).
        self.reaper.settle().await;
    }

    /// The blocks of a routed network this node owns that have no blackhole
    /// yet (IPAM may have just claimed one).
    async fn new_blocks(&self, net: &Network) -> Result<BTreeSet<IpNet>, Error> {
        let mut blocks = BTreeSet::new();
        for (pool, _) in net.pools() {
            blocks.extend(self.ipam.owned_blocks(pool.as_str()).await?);
        }
        let known = self.blackholed.lock().expect("blackholed lock");
        blocks.retain(|b| !known.contains(b));
        Ok(blocks)
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
        let granted = net.granted();
        if granted {
            // Fenced: the controller may soon give this node's blocks away.
            self.membership()?.may_allocate().map_err(Error::Cluster)?;
        }
        let mut result = self
            .ipam
            .allocate_unsynced_with(&handle, &wants, record)
            .await;
        // A granted pool is full: one more block from the controller (under
        // the pool's lock, so a burst of attaches claims one, not many).
        for _ in 0..2 {
            let Err(trellis_ipam::Error::NoGrantedRoom { pool, .. }) = &result else {
                break;
            };
            let Some(source) = net.cluster_pool_of(pool) else {
                break;
            };
            if let Err(e) = self.grow(&source.name, pool).await {
                drop(held);
                return Err(e);
            }
            result = self
                .ipam
                .allocate_unsynced_with(&handle, &wants, record)
                .await;
        }
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

    /// Detaches a container interface: unpublishes its ports, retires its
    /// veth (both ends down and renamed out of the way, the container end's
    /// addresses removed, the host routes and neighbours gone with the host
    /// end; the kernel's slow delete follows in a batch, see
    /// [`crate::reaper`]), then releases its addresses and forgets it in one
    /// store commit. The same interface can be attached again at once.
    /// Unknown is done (CNI DEL semantics); an attach of it under way is
    /// [`Error::Busy`]. Goes on past kernel failures and
    /// reports them all; the addresses and the record are kept when anything
    /// failed, so a retry finds them.
    pub async fn detach(&self, container: &ContainerId, ifname: &IfName) -> Result<(), Error> {
        let handle = Handle::new(container.clone(), ifname.clone());
        // Tearing down what an attach is still building would race its own
        // rollback; the caller retries once the attach has answered.
        if self.is_inflight(&handle) {
            return Err(Error::Busy(handle.to_string()));
        }
        self.detach_unchecked(container, ifname).await
    }

    /// [`Agent::detach`] without the check for an attach under way (for an
    /// attach that finds a stale record of its own handle).
    async fn detach_unchecked(
        &self,
        container: &ContainerId,
        ifname: &IfName,
    ) -> Result<(), Error> {
        let _busy = self.reaper.busy();
        let handle = Handle::new(container.clone(), ifname.clone());
        let _detaching = Detaching::begin(self, &handle);
        let record = self.records.endpoint(&handle).await?;
        // What the slice holds is named by the veth and the record's ports
        // (and where its container end is): the port removes as a whole.
        let veth = host_veth_name(container, ifname);
        let mut slice = NodeState::default();
        let mut port = Port::named(veth.clone());
        if let Some(ep) = &record {
            slice.nat.ports = ep.ports.clone();
            port.container = Some(ContainerEnd::at(
                ep.request.netns.clone(),
                ep.request.ifname.clone(),
            ));
        }
        slice.ports.insert(veth, port);
        let failed = self
            .executor()
            .apply(diff(&NodeState::default(), &slice))
            .await
            .failed;
        if !failed.is_empty() {
            // Keep the record and the addresses: the veth may still carry
            // them, and a retry (or GC) finds everything where it was.
            let errors = failed.iter().map(|(_, e)| e.to_string()).collect();
            return teardown_result(format!("endpoint {handle}"), errors);
        }
        // No record, no addresses: the two are only ever committed together.
        if let Some(ep) = record {
            // The addresses and the record go in one commit, reading only
            // the blocks the record names.
            let forget = vec![self.records.delete_op(&handle)];
            let held = recorded_addresses(&ep);
            self.ipam
                .release_addresses_with(&handle, &held, forget)
                .await?;
            self.ports.release(&handle);
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
}

/// The (pool, address) pairs an endpoint's record says it holds.
fn recorded_addresses(ep: &Endpoint) -> Vec<(PoolName, IpAddr)> {
    ep.addresses
        .iter()
        .map(|a| (PoolName::of(&ep.request.network, a.addr()), a.addr()))
        .collect()
}

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
use trellis_types::{ContainerId, Handle, IfName, PoolName, PortMapping};

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
        // A detach or a convergence's repair of it finishes first.
        let _locked = self.lock_endpoint(&handle).await;
        if let Some(ep) = self.records.endpoint(&handle).await? {
            if ep.request == req {
                // After a restart, the record may be of an attach a crash
                // cut off before its veth was made or set up: the caller
                // retrying it is answered once the container has it.
                // (Once reconciled, a record is plumbed.)
                if !self.reconciled.load(std::sync::atomic::Ordering::Acquire) {
                    self.converge_endpoint(&ep, &net).await?;
                }
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
            self.detach_locked(&handle.container, &handle.ifname)
                .await?;
        }
        let ep = self.plumb(&req, &net).await?;
        self.emit(Event::EndpointAttached(ep.clone()));
        Ok(ep)
    }

    /// Converges a recorded endpoint's slice — its port, its bridge and the
    /// ports published to it — to its record, as observed now; the changes
    /// made. The caller holds the endpoint's lock: a request's, or a
    /// convergence's repair (see [`Agent::repair_endpoint`]).
    pub(crate) async fn converge_endpoint(
        &self,
        ep: &Endpoint,
        net: &Network,
    ) -> Result<Vec<node::Change>, Error> {
        let want = node::desired(
            std::slice::from_ref(net),
            std::slice::from_ref(ep),
            &[],
            None,
        )
        .slice(&ep.host_ifname);
        let be = &self.be;
        let have = node::observe_port(&*be.links, &*be.routes, &*be.nat, &want).await?;
        let changes = diff(&want, &have);
        if !changes.is_empty() {
            let handle = ep.request.handle();
            tracing::info!(%handle, changes = changes.len(), "making an endpoint whole again");
            self.executor().apply_all(&changes).await?;
        }
        Ok(changes)
    }

    /// A convergence's repair of the recorded endpoint `handle`: under its
    /// lock, unless a request of it is under way (which finishes, or undoes,
    /// its own work), against the endpoint's record and kernel objects as
    /// they are now — the convergence's view, read before, may be older
    /// than a request that began since. The changes made.
    pub(crate) async fn repair_endpoint(
        &self,
        handle: &Handle,
    ) -> Result<Vec<node::Change>, Error> {
        // Requests mark themselves before they take the lock: one that
        // holds it is seen here, and is not waited for.
        let under_way = || {
            self.is_inflight(handle)
                || self
                    .detaching
                    .lock()
                    .expect("detaching lock")
                    .contains_key(handle)
        };
        if under_way() {
            return Ok(Vec::new());
        }
        let _locked = self.lock_endpoint(handle).await;
        if under_way() {
            return Ok(Vec::new());
        }
        let Some(ep) = self.records.endpoint(handle).await? else {
            return Ok(Vec::new());
        };
        let net = self.network(ep.request.network.as_str())?;
        self.converge_endpoint(&ep, &net).await
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
        let (made, synced) = tokio::join!(
            self.converge_new_over_leftovers(&ep, net, &port),
            self.be.store.sync()
        );
        let made = made.and(synced.map_err(Error::from));
        if let Err(e) = made {
            self.converge_to_nothing(ep.ports.clone(), port).await;
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

    /// [`Agent::converge_new`], and once more if the endpoint's own veth
    /// name, or one of the host ports it claimed, was taken in the kernel.
    /// Names derive from (container, ifname), this handle has no record
    /// (the caller read none) and is marked under way, and no other record
    /// holds its host ports (it claimed them): such a veth or published
    /// port is what an attach or detach of it left when a crash cut it off
    /// — an attach whose record and addresses were never made durable (the
    /// store came back with the commit before) but whose veth and ports
    /// were made, or a detach stopped half-way. Reconcile removes such
    /// leftovers but leaves handles under way alone, so a retry of the
    /// cut-off call can meet them. They go as a failed attach's rollback
    /// takes its own, and the attach goes on: retrying a call cut off by a
    /// crash succeeds.
    async fn converge_new_over_leftovers(
        &self,
        ep: &Endpoint,
        net: &Network,
        port: &Port,
    ) -> Result<(), Error> {
        match self.converge_new(ep, net, port).await {
            Err(e) if left_by_a_crash(&e, ep, port) => {
                let handle = ep.request.handle();
                tracing::info!(%handle, found = %e, "removing what an interrupted attach or detach of this endpoint left");
                let mut published = ep.ports.clone();
                match self.be.nat.list_published().await {
                    Ok(all) => published.extend(
                        all.into_iter()
                            .filter(|p| ep.ports.iter().any(|m| m.clashes_with(p))),
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot list the published ports"),
                }
                self.converge_to_nothing(published, port.clone()).await;
                // Retired veths still waiting for their batched delete — a
                // crash's, or those reconcile took for orphans (their
                // container ends keep their names until the pair goes) —
                // go first: one may still hold the interface's name.
                if let Err(e) = self.reaper.sweep(&*self.be.links).await {
                    tracing::warn!(error = %e, "cannot list the retired veths");
                }
                self.reaper.settle().await;
                self.converge_new(ep, net, port).await
            }
            other => other,
        }
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

    /// Observes what a failed attach left of its slice (its port, and the
    /// `published` mappings) and removes it.
    async fn converge_to_nothing(&self, published: Vec<PortMapping>, port: Port) {
        let mut slice = NodeState::default();
        slice.ports.insert(port.host.name.clone(), port);
        slice.nat.ports = published;
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

    /// [`Agent::detach`] without the check for an attach under way, under
    /// the endpoint's lock.
    async fn detach_unchecked(
        &self,
        container: &ContainerId,
        ifname: &IfName,
    ) -> Result<(), Error> {
        let handle = Handle::new(container.clone(), ifname.clone());
        let _detaching = Detaching::begin(self, &handle);
        let _locked = self.lock_endpoint(&handle).await;
        self.detach_locked(container, ifname).await
    }

    /// [`Agent::detach_unchecked`] for a caller that holds the endpoint's
    /// lock (an attach that finds a stale record of its own handle).
    async fn detach_locked(&self, container: &ContainerId, ifname: &IfName) -> Result<(), Error> {
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

/// Whether `e`, met making `ep`'s slice, may be a kernel object of the
/// slice's own that was there already: its veth's name, its container
/// end's name (held by a retired veth not yet deleted, or someone else's —
/// then the second try meets it again), or one of its host ports (see
/// [`Agent::converge_new_over_leftovers`]).
fn left_by_a_crash(e: &Error, ep: &Endpoint, port: &Port) -> bool {
    match e {
        Error::Link(trellis_link::LinkError::AlreadyExists { name }) => {
            let container_end = port
                .container
                .as_ref()
                .map(|c| format!("{} in {}", c.ifname, c.netns));
            name == port.host.name.as_str() || Some(name) == container_end.as_ref()
        }
        Error::Nat(trellis_nat::Error::PortInUse {
            protocol,
            host_port,
            ..
        }) => ep
            .ports
            .iter()
            .any(|m| m.protocol == *protocol && m.host_port == *host_port),
        _ => false,
    }
}

/// The (pool, address) pairs an endpoint's record says it holds.
fn recorded_addresses(ep: &Endpoint) -> Vec<(PoolName, IpAddr)> {
    ep.addresses
        .iter()
        .map(|a| (PoolName::of(&ep.request.network, a.addr()), a.addr()))
        .collect()
}

//! Garbage collection, and the node-wide convergence it shares with
//! reconcile.
//!
//! GC forgets the endpoints the orchestrator no longer knows, then
//! converges the node: the desired state (networks, the remaining records,
//! owned blocks) is diffed against the kernel as observed and the diff is
//! applied through the one executor, so whatever trellis owns that no record
//! explains — veths named `tr…`, routes of protocol 116, elements of the
//! `inet trellis` table — goes, and IPAM allocations no record explains are
//! released. Everything is collected, nothing is fatal: one stuck object
//! must not keep the rest from being cleaned. Attaches under way are left to
//! themselves: their veths are not judged and their published ports are
//! neither added nor taken.
//!
//! A collection may be scoped to one network (CNI's GC runs once per network
//! configuration, listing only that network's attachments): then only that
//! network's endpoints are judged by the list, and other networks' are left
//! alone even though not listed. The convergence that follows still covers
//! the node — what it removes is what *no record* explains, whichever
//! network it once served, so a scoped collection cannot take another
//! network's endpoint — but the allocations it reports released are only
//! those of the network's pools, and its errors are all reported (a kernel
//! that cannot be read, or a stuck object, concerns every network).

use crate::Error;
use crate::agent::Agent;
use crate::model::{Endpoint, NetworkMode};
use crate::node::{self, Change, diff};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use trellis_link::host_veth_name;
use trellis_types::{Handle, IfName, NetworkName, PortMapping};

/// What [`Agent::garbage_collect`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Endpoints detached and IPAM handles released (of the network's pools
    /// only, when the collection was scoped to one).
    pub removed: Vec<Handle>,
    /// Failures, each naming its object; the sweep went on past them.
    pub errors: Vec<String>,
}

/// What a convergence of the node removed, put back, released or failed at.
#[derive(Debug, Default)]
pub(crate) struct Converged {
    pub removed: Vec<String>,
    pub repaired: Vec<String>,
    pub released: Vec<Released>,
    pub errors: Vec<String>,
}

/// An allocation no record explained, released by a convergence.
#[derive(Debug)]
pub(crate) struct Released {
    /// Whose it was.
    pub handle: Handle,
    /// The pools it held addresses of.
    pub pools: BTreeSet<String>,
}

impl Agent {
    /// Detaches every recorded endpoint whose handle is not in `valid` —
    /// with `network`, only that network's endpoints, leaving the others
    /// alone — then converges the node (see the module's docs for what a
    /// scoped collection reports of it). Errors are collected in the report,
    /// not returned; a `network` that is not defined is
    /// [`Error::NetworkNotFound`], before anything is removed.
    pub async fn garbage_collect(
        &self,
        network: Option<&NetworkName>,
        valid: &[Handle],
    ) -> Result<GcReport, Error> {
        let pools: Option<BTreeSet<String>> = match network {
            Some(n) => {
                let net = self.network(n.as_str())?;
                Some(net.pools().into_iter().map(|(p, _)| p.into()).collect())
            }
            None => None,
        };
        let valid: HashSet<&Handle> = valid.iter().collect();
        let mut report = GcReport::default();
        for ep in self.records.endpoints().await? {
            if network.is_some_and(|n| *n != ep.request.network) {
                continue;
            }
            let h = ep.request.handle();
            if valid.contains(&h) || self.is_inflight(&h) {
                continue;
            }
            match self.detach(&h.container, &h.ifname).await {
                Ok(()) => report.removed.push(h),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        let c = self.converge().await?;
        let in_scope = |r: &Released| pools.as_ref().is_none_or(|p| !p.is_disjoint(&r.pools));
        report.removed.extend(
            c.released
                .into_iter()
                .filter(|r| in_scope(r))
                .map(|r| r.handle),
        );
        report.errors.extend(c.errors);
        Ok(report)
    }

    /// The handles an attach or a detach is working on now: a convergence
    /// round judges neither (their records and kernel objects are between
    /// two states).
    fn under_way(&self) -> HashSet<Handle> {
        let mut h = self.inflight.lock().expect("inflight lock").clone();
        h.extend(
            self.detaching
                .lock()
                .expect("detaching lock")
                .keys()
                .cloned(),
        );
        h
    }

    pub(crate) fn is_inflight(&self, h: &Handle) -> bool {
        self.inflight.lock().expect("inflight lock").contains(h)
    }

    /// Makes the kernel what the records want: `diff(desired, observed)`
    /// applied, going on past failures; then releases allocations no record
    /// explains.
    pub(crate) async fn converge(&self) -> Result<Converged, Error> {
        // No network is made or deleted while this round judges them all.
        let _networks = self.network_changes.lock().await;
        let mut c = Converged::default();
        let records = self.records.endpoints().await?;
        let mut inflight = self.under_way();
        let blocks = match self.owned_routed_blocks().await {
            Ok(blocks) => blocks,
            Err(e) => {
                // Without them every blackhole would look orphaned.
                c.errors.push(format!("owned blocks: {e}"));
                return Ok(c);
            }
        };
        let settled: Vec<Endpoint> = records
            .iter()
            .filter(|e| !inflight.contains(&e.request.handle()))
            .cloned()
            .collect();
        let peers = self.peer_routes();
        let mut want = node::desired(&self.networks(), &settled, &blocks, peers.as_deref());
        let be = &self.be;
        let mut have = match node::observe(&*be.links, &*be.routes, &*be.nat, &want).await {
            Ok(have) => have,
            Err(e) => {
                c.errors.push(format!("observe the kernel: {e}"));
                return Ok(c);
            }
        };
        // Endpoints attached or detached while the kernel was read are not
        // judged by this round: a record is written before its veth is made
        // and deleted after it is gone, so a second listing catches every
        // attach whose veth was observed, and every detach that took one.
        let later = self.records.endpoints().await?;
        inflight.extend(self.under_way());
        let before: HashSet<Handle> = records.iter().map(|e| e.request.handle()).collect();
        let after: HashSet<Handle> = later.iter().map(|e| e.request.handle()).collect();
        inflight.extend(before.symmetric_difference(&after).cloned());
        // Blocks claimed while the kernel was read (an attach's first in a
        // new block) keep the blackhole that attach installed.
        match self.owned_routed_blocks().await {
            Ok(now) => want.blackholes.extend(now),
            Err(e) => {
                c.errors.push(format!("owned blocks: {e}"));
                return Ok(c);
            }
        }
        for h in &inflight {
            let veth = host_veth_name(&h.container, &h.ifname);
            want.ports.remove(&veth);
            have.ports.remove(&veth);
        }
        // Their published ports stay as they are: neither added nor taken.
        for ep in records.iter().chain(&later) {
            if inflight.contains(&ep.request.handle()) {
                let mine = |p: &PortMapping| ep.ports.contains(p);
                want.nat.ports.retain(|p| !mine(p));
                let published = have.nat.ports.iter().filter(|p| mine(p));
                want.nat.ports.extend(published.copied());
            }
        }
        want.nat.ports.sort();
        want.nat.ports.dedup();
        // The cluster's prefixes: destinations never masqueraded to.
        want.nat.pools = crate::membership::with_cluster_prefixes(
            std::mem::take(&mut want.nat.pools),
            &self.cluster_prefixes(),
        );
        if !(want.nat.networks.is_empty() && want.nat.pools.is_empty())
            && let Err(e) = be.nat.ensure_table().await
        {
            // The skeleton's rules drift too; they are re-asserted here.
            c.errors.push(format!("ensure nftables table: {e}"));
        }
        // A recorded endpoint's repairs are made apart, each under the
        // endpoint's lock against a fresh look at it (`repair_endpoint`): a
        // request of it may have begun since the kernel was read, and a
        // repair from this older view would undo it (a veth made again
        // under a detach, or replaced under the attach that completed it).
        let (changes, repairs) = endpoint_repairs(diff(&want, &have), &settled, &inflight);
        let applied = self.executor().apply(changes).await;
        for change in &applied.done {
            let into = if change.removes() {
                &mut c.removed
            } else {
                &mut c.repaired
            };
            into.extend(change.objects());
        }
        for (change, e) in &applied.failed {
            c.errors.push(format!("{change}: {e}"));
        }
        for h in repairs {
            match self.repair_endpoint(&h).await {
                Ok(done) => c.repaired.extend(done.iter().flat_map(Change::objects)),
                Err(e) => c.errors.push(format!("endpoint {h}: {e}")),
            }
        }
        *self.blackholed.lock().expect("blackholed lock") = want.blackholes.into_iter().collect();
        self.release_leaks(&records, &inflight, &mut c).await;
        // Not a request's path: what it retired is deleted before it
        // reports (a veth it reports removed is gone).
        self.reaper.settle().await;
        Ok(c)
    }

    /// Releases this node's allocations that no record (nor an attach under
    /// way) explains.
    async fn release_leaks(
        &self,
        records: &[Endpoint],
        inflight: &HashSet<Handle>,
        c: &mut Converged,
    ) {
        let wanted: HashSet<Handle> = records
            .iter()
            .map(|e| e.request.handle())
            .chain(inflight.iter().cloned())
            .collect();
        let leaks = match self.ipam.check_leaks(&wanted).await {
            Ok(leaks) => leaks,
            Err(e) => {
                c.errors.push(format!("check ipam leaks: {e}"));
                return;
            }
        };
        // Allocations of other hosts (a shared store) are theirs to judge.
        let mut handles: BTreeMap<Handle, BTreeSet<String>> = BTreeMap::new();
        for a in leaks.into_iter().filter(|a| self.node == a.host()) {
            handles.entry(a.handle).or_default().insert(a.pool);
        }
        // An attach that committed after `records` was listed is no leak: its
        // record went in with its addresses, so a listing taken now has it.
        match self.records.endpoints().await {
            Ok(now) => {
                for ep in now {
                    handles.remove(&ep.request.handle());
                }
            }
            Err(e) => {
                c.errors.push(format!("list records: {e}"));
                return;
            }
        }
        handles.retain(|h, _| !self.is_inflight(h));
        for (h, pools) in handles {
            match self.ipam.release(&h).await {
                Ok(_) => {
                    c.removed.push(format!("allocation of {h}"));
                    c.released.push(Released { handle: h, pools });
                }
                Err(e) => c.errors.push(format!("release {h}: {e}")),
            }
        }
    }

    /// The blocks of routed networks this node owns, read afresh.
    pub(crate) async fn owned_routed_blocks(&self) -> Result<Vec<IpNet>, Error> {
        let mut blocks = Vec::new();
        for net in self.networks() {
            if net.spec.mode != NetworkMode::Routed {
                continue;
            }
            for (pool, _) in net.pools() {
                blocks.extend(self.ipam.refresh_owned_blocks(pool.as_str()).await?);
            }
        }
        Ok(blocks)
    }
}

/// Splits a convergence's `changes` into the node's and the recorded
/// endpoints to repair apart: a change to the port of a `settled` endpoint
/// (not `inflight`), or publishing one of its ports, names that endpoint
/// instead (see [`Agent::repair_endpoint`]).
fn endpoint_repairs(
    changes: Vec<Change>,
    settled: &[Endpoint],
    inflight: &HashSet<Handle>,
) -> (Vec<Change>, BTreeSet<Handle>) {
    let mine: Vec<&Endpoint> = settled
        .iter()
        .filter(|e| !inflight.contains(&e.request.handle()))
        .collect();
    let by_veth: HashMap<&IfName, Handle> = mine
        .iter()
        .map(|e| (&e.host_ifname, e.request.handle()))
        .collect();
    let by_port: BTreeMap<&PortMapping, Handle> = mine
        .iter()
        .flat_map(|e| e.ports.iter().map(|p| (p, e.request.handle())))
        .collect();
    let mut rest = Vec::new();
    let mut repairs = BTreeSet::new();
    for c in changes {
        let veth = match &c {
            Change::CreatePort { port, .. }
            | Change::RoutedHost { port, .. }
            | Change::Container { port, .. } => Some(&port.host.name),
            Change::SetHostUp(name) => Some(name),
            _ => None,
        };
        if let Some(h) = veth.and_then(|v| by_veth.get(v)) {
            repairs.insert(h.clone());
            continue;
        }
        if let Change::Publish(ports) = &c {
            let (theirs, others): (Vec<PortMapping>, Vec<PortMapping>) =
                ports.iter().partition(|p| by_port.contains_key(p));
            repairs.extend(theirs.iter().map(|p| by_port[p].clone()));
            if !others.is_empty() {
                rest.push(Change::Publish(others));
            }
            continue;
        }
        rest.push(c);
    }
    (rest, repairs)
}

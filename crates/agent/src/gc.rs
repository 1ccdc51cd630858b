//! Garbage collection: forget endpoints the orchestrator no longer knows, and
//! remove what trellis owns in the kernel and in IPAM that no record explains.
//!
//! trellis finds its own things by their tags — host veths named `tr…`,
//! routes of protocol 116, the `inet trellis` table, IPAM handles — so the
//! sweep compares each tagged set with what the records want and removes the
//! difference. Everything is collected, nothing is fatal: one stuck object
//! must not keep the rest from being cleaned. Attaches under way are treated
//! as recorded, so a sweep never tears down an attach racing it.

use crate::Error;
use crate::agent::Agent;
use crate::model::{Endpoint, NetworkMode};
use crate::network::{bridge_nat, reach_pairs, routed_pools};
use ipnet::IpNet;
use std::collections::{BTreeSet, HashSet};
use trellis_link::{HOST_VETH_PREFIX, Ns, host_veth_name, is_host_veth_name};
use trellis_nat::NatState;
use trellis_route::{Route, RouteKind, routed::host_prefix};
use trellis_types::{Handle, IfName};

/// What [`Agent::garbage_collect`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Endpoints detached and IPAM handles released.
    pub removed: Vec<Handle>,
    /// Failures, each naming its object; the sweep went on past them.
    pub errors: Vec<String>,
}

/// What a sweep of orphans removed, added back, or failed at.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    pub removed: Vec<String>,
    pub repaired: Vec<String>,
    pub released: Vec<Handle>,
    pub errors: Vec<String>,
}

impl Sweep {
    fn note<T>(&mut self, what: &str, r: Result<T, impl std::fmt::Display>) -> Option<T> {
        r.map_err(|e| self.errors.push(format!("{what}: {e}"))).ok()
    }
}

impl Agent {
    /// Detaches every recorded endpoint whose handle is not in `valid`, then
    /// removes orphans (veths, routes, NAT elements, IPAM allocations).
    /// Errors are collected in the report, not returned.
    pub async fn garbage_collect(&self, valid: &[Handle]) -> Result<GcReport, Error> {
        let valid: HashSet<&Handle> = valid.iter().collect();
        let mut report = GcReport::default();
        for ep in self.records.endpoints().await? {
            let h = ep.request.handle();
            if valid.contains(&h) || self.is_inflight(&h) {
                continue;
            }
            match self.detach(&h.container, &h.ifname).await {
                Ok(()) => report.removed.push(h),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        let sweep = self.sweep().await?;
        report.removed.extend(sweep.released);
        report.errors.extend(sweep.errors);
        Ok(report)
    }

    pub(crate) fn is_inflight(&self, h: &Handle) -> bool {
        self.inflight.lock().expect("inflight lock").contains(h)
    }

    /// Removes orphan veths, routes, NAT elements and allocations, against the
    /// records as they are now; adds back missing blackholes and NAT elements.
    pub(crate) async fn sweep(&self) -> Result<Sweep, Error> {
        let records = self.records.endpoints().await?;
        let mut s = Sweep::default();
        self.sweep_veths(&records, &mut s).await;
        self.sweep_allocations(&records, &mut s).await;
        self.sweep_routes(&records, &mut s).await;
        self.sync_nat(&records, &mut s).await;
        Ok(s)
    }

    fn wanted_handles(&self, records: &[Endpoint]) -> HashSet<Handle> {
        let inflight = self.inflight.lock().expect("inflight lock").clone();
        records
            .iter()
            .map(|e| e.request.handle())
            .chain(inflight)
            .collect()
    }

    async fn sweep_veths(&self, records: &[Endpoint], s: &mut Sweep) {
        let wanted: HashSet<IfName> = self
            .wanted_handles(records)
            .iter()
            .map(|h| host_veth_name(&h.container, &h.ifname))
            .collect();
        let listed = self
            .be
            .links
            .list_links_with_prefix(&Ns::Host, HOST_VETH_PREFIX)
            .await;
        let Some(links) = s.note("list host veths", listed) else {
            return;
        };
        let orphans: Vec<IfName> = links
            .iter()
            .filter(|l| is_host_veth_name(&l.name))
            .filter_map(|l| IfName::parse("ifname", &l.name).ok())
            .filter(|n| !wanted.contains(n))
            .collect();
        if orphans.is_empty() {
            return;
        }
        let deleted = self.be.links.delete_links(&orphans).await;
        if s.note("delete orphan veths", deleted).is_some() {
            s.removed
                .extend(orphans.iter().map(|n| format!("veth {n}")));
        }
    }

    async fn sweep_allocations(&self, records: &[Endpoint], s: &mut Sweep) {
        let wanted = self.wanted_handles(records);
        let Some(leaks) = s.note("check ipam leaks", self.ipam.check_leaks(&wanted).await) else {
            return;
        };
        // Allocations of other hosts (a shared store) are theirs to judge.
        let handles: BTreeSet<Handle> = leaks
            .into_iter()
            .filter(|a| a.host() == self.node)
            .map(|a| a.handle)
            .collect();
        for h in handles {
            if s.note(&format!("release {h}"), self.ipam.release(&h).await)
                .is_some()
            {
                s.removed.push(format!("allocation of {h}"));
                s.released.push(h);
            }
        }
    }

    /// Makes trellis's host routes (protocol 116) exactly what records want:
    /// a /32 (/128) per routed address on its veth, a blackhole per owned
    /// block of a routed network. Peer routes (`via`, no device) are the
    /// cross-host layer's and are left alone.
    async fn sweep_routes(&self, records: &[Endpoint], s: &mut Sweep) {
        let Some(blocks) = self.owned_routed_blocks(s).await else {
            return;
        };
        let mut wanted: HashSet<Route> = blocks.iter().map(|&b| Route::blackhole(b)).collect();
        for ep in records
            .iter()
            .filter(|e| self.is_routed(&e.request.network))
        {
            for a in &ep.addresses {
                wanted.insert(Route::on_link(
                    host_prefix(a.addr()),
                    ep.host_ifname.clone(),
                ));
            }
        }
        let Some(installed) = s.note("list routes", self.be.routes.list_routes(&Ns::Host).await)
        else {
            return;
        };
        let ours = |r: &Route| {
            r.kind == RouteKind::Blackhole
                || (r.via.is_none()
                    && r.dev
                        .as_ref()
                        .is_some_and(|d| is_host_veth_name(d.as_str())))
        };
        let extra: Vec<Route> = installed
            .iter()
            .filter(|r| ours(r) && !wanted.contains(&normal(r)))
            .cloned()
            .collect();
        if !extra.is_empty()
            && s.note(
                "delete orphan routes",
                self.be.routes.delete_routes(&Ns::Host, &extra).await,
            )
            .is_some()
        {
            s.removed.extend(extra.iter().map(|r| format!("route {r}")));
        }
        let have: HashSet<Route> = installed.iter().map(normal).collect();
        let missing: Vec<Route> = blocks
            .iter()
            .map(|&b| Route::blackhole(b))
            .filter(|r| !have.contains(r))
            .collect();
        if !missing.is_empty()
            && s.note(
                "add blackholes",
                self.be.routes.add_routes(&Ns::Host, &missing).await,
            )
            .is_some()
        {
            s.repaired
                .extend(missing.iter().map(|r| format!("route {r}")));
        }
        *self.blackholed.lock().expect("blackholed lock") = blocks.into_iter().collect();
    }

    async fn owned_routed_blocks(&self, s: &mut Sweep) -> Option<Vec<IpNet>> {
        let mut blocks = Vec::new();
        for net in self.networks() {
            if net.spec.mode != NetworkMode::Routed {
                continue;
            }
            for (pool, _) in net.pools() {
                let owned = self.ipam.refresh_owned_blocks(&pool).await;
                blocks.extend(s.note(&format!("owned blocks of {pool}"), owned)?);
            }
        }
        Some(blocks)
    }

    fn is_routed(&self, network: &str) -> bool {
        self.network(network)
            .is_ok_and(|n| n.spec.mode == NetworkMode::Routed)
    }

    /// Makes the NAT table's elements what the records want, touching the
    /// table only when they differ; an idle host (no network) holds no table.
    async fn sync_nat(&self, records: &[Endpoint], s: &mut Sweep) {
        let have = self.nat_listing().await;
        let want = self.nat_state(records, have.as_ref());
        if want == NatState::default() {
            if have.as_ref().is_none_or(|h| *h != NatState::default()) {
                s.note("remove nftables table", self.be.nat.remove_all().await);
            }
            return;
        }
        if s.note("ensure nftables table", self.be.nat.ensure_table().await)
            .is_none()
        {
            return;
        }
        if have.as_ref() != Some(&want)
            && s.note("sync nftables table", self.be.nat.sync(&want).await)
                .is_some()
        {
            s.repaired
                .push("nftables elements (networks, pools, published ports)".into());
        }
    }

    /// The elements the records want. The ports of an attach under way (its
    /// record is written before it publishes them) are left as they are in
    /// `have`: neither added for it nor taken from it.
    fn nat_state(&self, records: &[Endpoint], have: Option<&NatState>) -> NatState {
        let mut st = NatState::default();
        let networks = self.networks();
        for net in &networks {
            match net.spec.mode {
                NetworkMode::Bridge { .. } => st.networks.push(bridge_nat(net)),
                NetworkMode::Routed => st.pools.extend(routed_pools(net)),
            }
        }
        st.reach = reach_pairs(&networks);
        let have_ports: HashSet<_> = have.iter().flat_map(|h| h.ports.iter()).collect();
        for ep in records {
            let inflight = self.is_inflight(&ep.request.handle());
            st.ports.extend(
                ep.ports
                    .iter()
                    .filter(|p| !inflight || have_ports.contains(p))
                    .copied(),
            );
        }
        normalise(&mut st);
        st
    }

    /// The table's elements, or `None` if they cannot be read (no table
    /// reads as empty).
    async fn nat_listing(&self) -> Option<NatState> {
        let mut st = NatState {
            networks: listed(self.be.nat.list_networks().await)?,
            pools: listed(self.be.nat.list_pools().await)?,
            ports: listed(self.be.nat.list_published().await)?,
            reach: listed(self.be.nat.list_reach().await)?,
        };
        normalise(&mut st);
        Some(st)
    }
}

fn listed<T>(r: Result<Vec<T>, trellis_nat::Error>) -> Option<Vec<T>> {
    match r {
        Ok(v) => Some(v),
        Err(trellis_nat::Error::NoTable(_)) => Some(Vec::new()),
        Err(_) => None,
    }
}

fn normalise(st: &mut NatState) {
    st.networks
        .sort_by_key(|n| (n.subnet, n.bridge.to_string(), n.masquerade, n.internal));
    st.reach.sort();
    st.pools.sort();
    st.ports.sort();
}

/// A listed route as the agent would have built it (metric and scope as the
/// constructors set them), for comparison.
fn normal(r: &Route) -> Route {
    match r.kind {
        RouteKind::Blackhole => Route::blackhole(r.dst),
        _ => match (&r.dev, r.via) {
            (Some(dev), None) => Route::on_link(r.dst, dev.clone()),
            _ => r.clone(),
        },
    }
}

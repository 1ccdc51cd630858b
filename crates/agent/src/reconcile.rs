//! Start-up reconciliation: make the kernel match the records again without
//! disturbing what already matches.
//!
//! After a restart (or a crash at any point) the records are the truth about
//! which containers are attached. Reconcile:
//!
//! 1. brings each network's host side in line (bridge and its gateway,
//!    forwarding switches) — idempotent calls that change nothing that is right;
//! 2. detaches endpoints whose network namespace is gone (the container died
//!    while trellis was down) or whose network is no longer defined;
//! 3. repairs the rest: a veth that is gone or off its bridge, or whose
//!    container side lacks its interface, an address or a route (changed by
//!    hand, or never finished: the record is committed before the plumbing),
//!    is plumbed again with the recorded addresses; a routed endpoint's host
//!    routes and neighbours are installed again (create-or-replace, so present
//!    ones are untouched);
//! 4. sweeps orphans (see [`crate::gc`]): unrecorded veths, routes, NAT
//!    elements and IPAM allocations, and puts back missing blackholes and NAT
//!    elements. NAT is rewritten only when its elements differ.
//!
//! Working containers keep every kernel object they use, so their traffic
//! flows on through a restart.

use crate::Error;
use crate::agent::Agent;
use crate::model::{Endpoint, Network, NetworkMode};
use crate::network::bridge_spec;
use crate::plan::container_plan;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use trellis_link::{LinkSummary, Mac, Ns, format_mac};
use trellis_route::{Route, RoutedEndpoint, routed::host_prefix};
use trellis_types::Handle;

/// What [`Agent::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Endpoints detached because their netns (or network) is gone.
    pub detached: Vec<Handle>,
    /// Orphans removed: veths, routes, allocations, NAT elements (described).
    pub removed: Vec<String>,
    /// Missing pieces put back (described).
    pub repaired: Vec<String>,
    /// Failures; reconciliation went on past each.
    pub errors: Vec<String>,
}

impl Agent {
    /// Reconciles the kernel with the records (run at start-up, before
    /// serving; safe to run again any time). Marks the agent ready.
    pub async fn reconcile(&self) -> Result<ReconcileReport, Error> {
        let mut r = ReconcileReport::default();
        for net in self.networks() {
            if let Err(e) = self.repair_network(&net, &mut r).await {
                r.errors.push(format!("network {:?}: {e}", net.spec.name));
            }
        }
        let installed: HashSet<Route> = match self.be.routes.list_routes(&Ns::Host).await {
            Ok(routes) => routes.into_iter().collect(),
            Err(e) => {
                r.errors.push(format!("list routes: {e}"));
                HashSet::new()
            }
        };
        // Attaches under way are theirs to finish (or undo).
        for ep in self.endpoints().await? {
            let h = ep.request.handle();
            if let Err(e) = self.reconcile_endpoint(&ep, &installed, &mut r).await {
                r.errors.push(format!("endpoint {h}: {e}"));
            }
        }
        let sweep = self.sweep().await?;
        r.removed.extend(sweep.removed);
        r.repaired.extend(sweep.repaired);
        r.errors.extend(sweep.errors);
        self.sync_host_firewall().await;
        self.reconciled.store(true, Ordering::Release);
        tracing::info!(?r, "reconciled");
        Ok(r)
    }

    async fn repair_network(&self, net: &Network, r: &mut ReconcileReport) -> Result<(), Error> {
        self.enable_forwarding(net).await?;
        match &net.spec.mode {
            NetworkMode::Bridge { bridge } => {
                let there = self.be.links.link_exists(&Ns::Host, bridge).await?;
                self.be.links.ensure_bridge(&bridge_spec(net)).await?;
                if !there {
                    r.repaired.push(format!("bridge {bridge}"));
                }
            }
            NetworkMode::Routed => {}
        }
        Ok(())
    }

    async fn reconcile_endpoint(
        &self,
        ep: &Endpoint,
        installed: &HashSet<Route>,
        r: &mut ReconcileReport,
    ) -> Result<(), Error> {
        let req = &ep.request;
        let h = req.handle();
        let net = match self.network(&req.network) {
            Ok(net) if self.is_container_netns(&req.netns) => net,
            _ => {
                self.detach(&h.container, &h.ifname).await?;
                r.detached.push(h);
                return Ok(());
            }
        };
        let host = self.host_veth(ep).await?;
        let bridge_index = match net.spec.bridge() {
            Some(b) => self.host_link(b.as_str()).await?.map(|l| l.index),
            None => None,
        };
        let healthy_host = match host {
            Some(l) if net.spec.bridge().is_none() || l.master == bridge_index => {
                if net.spec.mode == NetworkMode::Routed {
                    self.repair_routed_host(ep, &l, installed, r).await?;
                }
                true
            }
            _ => false,
        };
        if !healthy_host {
            self.replumb(ep, &net).await?;
            r.repaired.push(format!("veth {} of {h}", ep.host_ifname));
            return Ok(());
        }
        // The container side: drifted by hand, or never finished (a crash
        // between the record's commit and the end of the plumbing).
        let mut lacking = Vec::new();
        self.check_container_side(ep, &mut lacking).await?;
        if !lacking.is_empty() {
            self.replumb(ep, &net).await?;
            r.repaired.push(format!(
                "veth {} of {h} (container side: {})",
                ep.host_ifname,
                lacking.join("; ")
            ));
        }
        Ok(())
    }

    async fn host_veth(&self, ep: &Endpoint) -> Result<Option<LinkSummary>, Error> {
        self.host_link(ep.host_ifname.as_str()).await
    }

    pub(crate) async fn host_link(&self, name: &str) -> Result<Option<LinkSummary>, Error> {
        let links = self
            .be
            .links
            .list_links_with_prefix(&Ns::Host, name)
            .await?;
        Ok(links.into_iter().find(|l| l.name == name))
    }

    /// Installs a routed endpoint's host routes, neighbours and port knobs
    /// again (create-or-replace: what is there stays as it is).
    async fn repair_routed_host(
        &self,
        ep: &Endpoint,
        link: &LinkSummary,
        installed: &HashSet<Route>,
        r: &mut ReconcileReport,
    ) -> Result<(), Error> {
        let endpoint = RoutedEndpoint {
            host_if: ep.host_ifname.clone(),
            host_ifindex: link.index,
            addresses: ep.addresses.iter().map(|a| a.addr()).collect(),
            container_mac: parse_mac(&ep.mac).unwrap_or_default(),
        };
        let missing = ep.addresses.iter().any(|a| {
            let want = Route::on_link(host_prefix(a.addr()), ep.host_ifname.clone());
            !installed
                .iter()
                .any(|r| r.dst == want.dst && r.dev == want.dev)
        });
        self.be.routes.setup_routed_host(&endpoint).await?;
        if missing {
            r.repaired
                .push(format!("host routes of {}", ep.request.handle()));
        }
        Ok(())
    }

    /// Plumbs a recorded endpoint again with its recorded addresses (its veth
    /// is gone, or off its bridge): the container's interface is re-created.
    async fn replumb(&self, ep: &Endpoint, net: &Network) -> Result<(), Error> {
        let req = &ep.request;
        self.be.links.delete_link(&ep.host_ifname).await?;
        let veth = self.create_veth(req, net, &ep.host_ifname).await?;
        let ips: Vec<IpAddr> = ep.addresses.iter().map(|a| a.addr()).collect();
        let plan = container_plan(net, &ips);
        self.plumb_port(req, net, &ep.host_ifname, &veth, &plan)
            .await?;
        let mac = format_mac(&veth.container_mac);
        if mac != ep.mac {
            let mut fresh = ep.clone();
            fresh.mac = mac;
            self.records.put_endpoint(&fresh).await?;
        }
        Ok(())
    }
}

/// `02:00:…` → bytes.
pub(crate) fn parse_mac(s: &str) -> Option<Mac> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    Mac::try_from(bytes.as_slice()).ok()
}

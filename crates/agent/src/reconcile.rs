//! Reconcile: make the kernel what the records say again, without disturbing
//! what already matches.
//!
//! After a restart (or a crash at any point) the records are the truth about
//! which containers are attached. Reconcile:
//!
//! 1. turns the forwarding switches each network needs on again;
//! 2. detaches endpoints whose network namespace is gone (the container died
//!    while trellis was down) or whose network is no longer defined;
//! 3. converges the node ([`Agent::converge`]): the desired state of every
//!    network and endpoint, diffed against the kernel as observed, and the
//!    diff applied — veths, routes and NAT elements no record explains go;
//!    what a record explains but is missing or drifted comes back, as gently
//!    as the fault allows (see [`crate::node::diff`]);
//! 4. releases IPAM allocations no record explains.
//!
//! Working containers keep every kernel object they use, so their traffic
//! flows on through a restart.

use crate::Error;
use crate::agent::Agent;
use std::sync::atomic::Ordering;
use trellis_types::Handle;

/// What [`Agent::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Endpoints detached because their netns (or network) is gone.
    pub detached: Vec<Handle>,
    /// Orphans removed: veths, routes, allocations (described).
    pub removed: Vec<String>,
    /// Missing or drifted pieces put back (described).
    pub repaired: Vec<String>,
    /// Failures; reconciliation went on past each.
    pub errors: Vec<String>,
}

impl Agent {
    /// Reconciles the kernel with the records (run at start-up, and
    /// periodically after; safe to run again any time, beside requests).
    /// Marks the agent ready.
    pub async fn reconcile(&self) -> Result<ReconcileReport, Error> {
        let mut r = ReconcileReport::default();
        for net in self.networks() {
            if let Err(e) = self.enable_forwarding(&net).await {
                r.errors.push(format!("network {:?}: {e}", net.spec.name));
            }
        }
        // Attaches under way are theirs to finish (or undo).
        for ep in self.endpoints().await? {
            let req = &ep.request;
            if self.network(req.network.as_str()).is_ok() && self.is_container_netns(&req.netns) {
                continue;
            }
            let h = req.handle();
            match self.detach(&h.container, &h.ifname).await {
                Ok(()) => r.detached.push(h),
                Err(e) => r.errors.push(format!("endpoint {h}: {e}")),
            }
        }
        let c = self.converge().await?;
        // Deletions a crash interrupted: retired veths not yet deleted.
        match self.reaper.sweep(&*self.be.links).await {
            Ok(0) => {}
            Ok(n) => r.removed.push(format!("{n} retired veths")),
            Err(e) => r.errors.push(format!("retired veths: {e}")),
        }
        r.removed.extend(c.removed);
        r.repaired.extend(c.repaired);
        r.errors.extend(c.errors);
        self.sync_host_firewall().await;
        self.reconciled.store(true, Ordering::Release);
        // Its caller reports (trellisd runs it every 30 s by default).
        tracing::debug!(?r, "reconciled");
        Ok(r)
    }
}

//! Readiness: whether the node core can serve, and if not, why.

use std::sync::atomic::Ordering;

/// The node core's readiness and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// True when `reasons` is empty.
    pub ready: bool,
    /// Why it is not ready (empty when it is).
    pub reasons: Vec<String>,
    /// Networks defined.
    pub networks: usize,
    /// Endpoints recorded.
    pub endpoints: usize,
    /// What trellis could not do on the host for its networks' traffic (a
    /// host firewall chain it cannot amend, its rules missing after a
    /// firewall reload), and what is wrong with the node's cluster membership
    /// (the controller out of reach, and since when; the node fenced; peers
    /// not directly reachable), one line each. Warnings do not make it
    /// unready: trellis itself can serve (degraded).
    pub warnings: Vec<String>,
}

impl crate::Agent {
    /// Readiness: start-up reconciliation has run, the store answers, and
    /// (with networks defined) trellis's nftables table can be read.
    pub async fn status(&self) -> Status {
        let mut reasons = Vec::new();
        if !self.reconciled.load(Ordering::Acquire) {
            reasons.push("start-up reconciliation has not finished yet".to_owned());
        }
        let endpoints = match self.endpoints().await {
            Ok(eps) => eps.len(),
            Err(e) => {
                reasons.push(format!("store unreadable: {e}"));
                0
            }
        };
        let networks = self.networks().len();
        // A read, not `ensure_table`: asking for readiness must not rewrite
        // the ruleset (monitoring polls this).
        if networks > 0
            && let Err(e) = self.be.nat.list_networks().await
        {
            reasons.push(format!("nftables table unreadable: {e}"));
        }
        Status {
            ready: reasons.is_empty(),
            reasons,
            networks,
            endpoints,
            warnings: {
                let mut w = self.host_firewall_warnings().await;
                w.extend(self.cluster_warnings());
                w
            },
        }
    }
}

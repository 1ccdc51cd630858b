//! The prefixes this node should announce to routers (by BGP), as data.
//!
//! The agent decides *what* is announced; a speaker (trellis-bgp) decides how
//! and to whom. The set is computed afresh on every call from the records
//! and IPAM, never cached, so it cannot drift from what the node holds.

use crate::Error;
use crate::agent::Agent;
use crate::model::Network;
use ipnet::IpNet;

impl Agent {
    /// The prefixes this node should announce now, sorted and each once:
    /// every block of a routed network this node owns (local or granted by
    /// a cluster controller, frozen ones included while their addresses are
    /// in use here), and the subnet of every `routable` bridge network.
    ///
    /// When the set may have changed, an [`crate::Event`] follows
    /// ([`Agent::subscribe`]): `NetworkCreated`/`NetworkDeleted` (a routable
    /// network's subnet, a routed network's blocks) or `BlocksChanged` (a
    /// block an attach claimed, sent once its blackhole is in place and
    /// before the attach answers; a cluster block adopted or retired; a
    /// block claimed by an attach that then failed). Endpoint events never
    /// change the set, so a subscriber re-reads it on those two kinds alone
    /// (and after `Lagged`); events that change nothing are harmless.
    pub async fn exported_prefixes(&self) -> Result<Vec<IpNet>, Error> {
        let mut out = self.owned_routed_blocks().await?;
        out.extend(routable_subnets(&self.networks()));
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// The subnets of the routable bridge networks among `nets`.
pub(crate) fn routable_subnets(nets: &[Network]) -> Vec<IpNet> {
    nets.iter()
        .filter(|n| n.spec.routable && n.spec.bridge().is_some())
        .flat_map(|n| n.spec.subnets.iter().copied())
        .collect()
}

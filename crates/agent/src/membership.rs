//! The agent's seam to a cluster: where a node in a cluster gets its
//! blocks, whether it may hand out addresses now, and which routes lead to
//! the other nodes' blocks.
//!
//! The agent stays a node core: it never speaks to the controller itself.
//! A [`Membership`] (trellis-member's, over the controller's gRPC API, or a
//! test's) is given to it with [`Agent::join`]; the agent asks it for a
//! block when a granted pool is full, asks it before every allocation in a
//! granted pool whether the node is fenced, and is told the host-gw routes
//! ([`Agent::set_peer_routes`]) and the cluster's prefixes
//! ([`Agent::set_cluster_prefixes`]); [`Agent::status`] asks it what is
//! wrong.

use crate::agent::Agent;
use crate::error::{Error, ErrorClass};
use crate::events::Event;
use crate::model::{ClusterPool, Network, NetworkSpec};
use crate::node::Change;
use async_trait::async_trait;
use ipnet::IpNet;
use trellis_nat::RoutedPool;
use trellis_route::PeerRoute;
use trellis_types::{InvalidInput, PoolName};

/// A membership's answer when it cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster: {message}")]
pub struct MembershipError {
    /// How the agent's caller should see it (UNAVAILABLE for a controller
    /// out of reach or a fenced node, RESOURCE_EXHAUSTED for a full pool).
    pub class: ErrorClass,
    /// What went wrong, naming the pool, block or controller.
    pub message: String,
}

/// A node's membership of a cluster, as the agent uses it.
#[async_trait]
pub trait Membership: Send + Sync {
    /// Whether this node may hand out addresses of its granted blocks now:
    /// not when it has been out of contact with the controller for so long
    /// that the controller may give its blocks away (fencing).
    fn may_allocate(&self) -> Result<(), MembershipError>;

    /// Claims one more block of controller pool `pool` for this node; the
    /// agent adopts it into its own IPAM. For a bridge pool, the node's one
    /// subnet (the same one every time).
    async fn claim_block(&self, pool: &PoolName) -> Result<IpNet, MembershipError>;

    /// Gives block `block` of controller pool `pool` back.
    async fn release_block(&self, pool: &PoolName, block: IpNet) -> Result<(), MembershipError>;

    /// What is wrong with the membership now (the controller out of reach
    /// and since when, the node fenced, peers off-link), one line each, for
    /// [`Agent::status`].
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Agent {
    /// Makes this agent a member of a cluster through `membership`.
    pub fn join(&self, membership: std::sync::Arc<dyn Membership>) {
        *self.membership.write().expect("membership lock") = Some(membership);
    }

    /// The membership, if the node is in a cluster.
    pub(crate) fn membership(&self) -> Result<std::sync::Arc<dyn Membership>, Error> {
        self.membership
            .read()
            .expect("membership lock")
            .clone()
            .ok_or_else(|| {
                Error::Cluster(MembershipError {
                    class: ErrorClass::FailedPrecondition,
                    message: "this node is not in a cluster (trellisd --controller)".into(),
                })
            })
    }

    /// Makes the routes to other nodes' blocks exactly `routes` (host-gw:
    /// each block via its owner's underlay address), now and at every
    /// convergence after. What no longer appears is removed.
    pub async fn set_peer_routes(&self, mut routes: Vec<PeerRoute>) -> Result<(), Error> {
        routes.sort();
        routes.dedup();
        *self.peer_routes.lock().expect("peer routes lock") = Some(routes.clone());
        self.executor()
            .apply_all(&[Change::SetPeerRoutes(routes)])
            .await
    }

    /// The peer routes the node is told to hold (`None`: not managed).
    pub(crate) fn peer_routes(&self) -> Option<Vec<PeerRoute>> {
        self.peer_routes.lock().expect("peer routes lock").clone()
    }

    /// Makes `prefixes` (every pool of the cluster: routed pools and the
    /// bridge pools nodes take their subnets from) destinations that no
    /// container's traffic is masqueraded to, so that containers on
    /// different nodes see each other's true addresses. Kept through every
    /// convergence after.
    pub async fn set_cluster_prefixes(&self, mut prefixes: Vec<IpNet>) -> Result<(), Error> {
        prefixes.sort();
        prefixes.dedup();
        // Kept for convergence whether or not the kernel takes it now.
        *self.cluster_prefixes.lock().expect("cluster prefixes lock") = prefixes.clone();
        let nat = &self.be.nat;
        let have = nat.list_pools().await?;
        let own: Vec<RoutedPool> = self
            .networks()
            .iter()
            .filter(|n| n.spec.mode == crate::model::NetworkMode::Routed)
            .flat_map(crate::network::routed_pools)
            .collect();
        let want = with_cluster_prefixes(own, &prefixes);
        if !want.is_empty() {
            nat.ensure_table().await?;
        }
        for p in have.iter().filter(|p| !want.contains(p)) {
            nat.remove_pool(p).await?;
        }
        for p in want.iter().filter(|p| !have.contains(p)) {
            nat.add_pool(p).await?;
        }
        Ok(())
    }

    pub(crate) fn cluster_prefixes(&self) -> Vec<IpNet> {
        self.cluster_prefixes
            .lock()
            .expect("cluster prefixes lock")
            .clone()
    }

    /// What the membership reports as wrong, asked now.
    pub(crate) fn cluster_warnings(&self) -> Vec<String> {
        let m = self.membership.read().expect("membership lock").clone();
        m.map(|m| m.warnings()).unwrap_or_default()
    }

    /// Claims a block of controller pool `pool` and adopts it into local
    /// pool `local`.
    pub(crate) async fn grow(&self, pool: &PoolName, local: &str) -> Result<IpNet, Error> {
        let m = self.membership()?;
        let block = m.claim_block(pool).await.map_err(Error::Cluster)?;
        self.ipam.adopt_block(local, block).await?;
        // Owned now, whether or not the attach that asked succeeds.
        self.emit(Event::BlocksChanged);
        Ok(block)
    }

    /// Adopts block `block`, already this node's at the controller, into
    /// local pool `local` (blocks claimed ahead of need, or claimed before
    /// a restart). Whether it was new (then [`Event::BlocksChanged`] is
    /// emitted).
    pub async fn adopt_block(&self, local: &PoolName, block: IpNet) -> Result<bool, Error> {
        let new = self.ipam.adopt_block(local.as_str(), block).await?;
        if new {
            self.emit(Event::BlocksChanged);
        }
        Ok(new)
    }

    /// Hands no new address out of block `block` of local pool `local`
    /// (the controller no longer counts it as this node's); whether it was
    /// frozen now. Adopting it again thaws it.
    pub async fn freeze_block(&self, local: &PoolName, block: IpNet) -> Result<bool, Error> {
        Ok(self.ipam.freeze_block(local.as_str(), block).await?)
    }

    /// Forgets block `block` of local pool `local` if no address in it is
    /// in use (its blackhole goes too), so that it can be given back to the
    /// controller; whether it did. An attach that takes an address in it
    /// first keeps it. Emits [`Event::BlocksChanged`] when it did.
    pub async fn retire_block(&self, local: &PoolName, block: IpNet) -> Result<bool, Error> {
        if !self.ipam.retire_block(local.as_str(), block).await? {
            return Ok(false);
        }
        // No longer this node's (announced or not), whatever follows.
        self.emit(Event::BlocksChanged);
        self.blackholed
            .lock()
            .expect("blackholed lock")
            .remove(&block);
        let hole = trellis_route::Route::blackhole(block);
        self.executor()
            .apply_all(&[Change::DeleteRoutes(vec![hole])])
            .await?;
        Ok(true)
    }

    /// The addresses among `peers` this host does not reach on a link of
    /// its own (no connected route of the host holds them): host-gw routes
    /// via them cannot work, and the kernel refuses them.
    pub async fn off_link(
        &self,
        peers: &[std::net::IpAddr],
    ) -> Result<Vec<std::net::IpAddr>, Error> {
        let routes = self.be.routes.host_routes().await?;
        let connected: Vec<IpNet> = routes
            .iter()
            .filter(|r| r.is_connected() && r.protocol != trellis_route::RTPROT_TRELLIS)
            .map(|r| r.route.dst)
            .collect();
        Ok(peers
            .iter()
            .filter(|ip| !connected.iter().any(|n| n.contains(*ip)))
            .copied()
            .collect())
    }

    /// [`Agent::create_network`] of a bridge network whose subnet comes
    /// from a cluster pool.
    pub(crate) async fn create_with_cluster_subnet(
        &self,
        spec: NetworkSpec,
    ) -> Result<Network, Error> {
        let Some(pool) = spec.subnet_pool.clone() else {
            return self.create_network_now(spec).await;
        };
        // The subnet comes from the cluster: this node's one subnet of
        // `pool`, the same one each time it is asked for.
        check_subnet_pool(&spec)?;
        // Before a subnet is claimed for a spec that would be refused.
        crate::network::check_isolation(&spec)?;
        if let Ok(existing) = self.network(spec.name.as_str()) {
            let mut asked = spec;
            asked.subnets = existing.spec.subnets.clone();
            asked.cluster_pools = existing.spec.cluster_pools.clone();
            asked.gateway = asked.gateway.or(existing.spec.gateway);
            return self.create_network_now(asked).await;
        }
        let membership = self.membership()?;
        let subnet = membership.claim_block(&pool).await?;
        let mut spec = spec;
        spec.subnets = vec![subnet];
        spec.cluster_pools = vec![ClusterPool {
            name: pool.clone(),
            block_len: subnet.prefix_len(),
        }];
        let created = self.create_network_now(spec).await;
        let in_use = self
            .networks()
            .iter()
            .any(|n| n.spec.subnets.contains(&subnet));
        if created.is_err()
            && !in_use
            && let Err(e) = membership.release_block(&pool, subnet).await
        {
            tracing::warn!(error = %e, %subnet, "a failed network create kept its cluster subnet");
        }
        created
    }
}

/// A subnet from a cluster pool: a bridge network's, and only that.
fn check_subnet_pool(spec: &NetworkSpec) -> Result<(), InvalidInput> {
    let pool = spec
        .subnet_pool
        .as_ref()
        .map(|p| p.as_str())
        .unwrap_or_default();
    if spec.bridge().is_none() {
        let why = "only a bridge network takes its subnet from a cluster pool (a cluster's routed networks are defined on the controller)";
        return Err(InvalidInput::new("subnet_pool", pool, why));
    }
    if !spec.subnets.is_empty() {
        let why = "give either subnets or a subnet_pool, not both";
        return Err(InvalidInput::new(
            "subnets",
            format!("{:?}", spec.subnets),
            why,
        ));
    }
    if spec.gateway.is_some() {
        let why = "the gateway of a subnet from a cluster pool is its first host address";
        return Err(InvalidInput::new(
            "gateway",
            format!("{:?}", spec.gateway),
            why,
        ));
    }
    Ok(())
}

/// The routed pools `pools` of the node's networks, with each cluster
/// prefix that none of them covers added as a pool without outgoing NAT
/// (a destination never masqueraded to), sorted.
pub(crate) fn with_cluster_prefixes(
    mut pools: Vec<RoutedPool>,
    prefixes: &[IpNet],
) -> Vec<RoutedPool> {
    for &cidr in prefixes {
        if !pools
            .iter()
            .any(|p| p.cidr.contains(&cidr) || cidr.contains(&p.cidr))
        {
            pools.push(RoutedPool {
                cidr,
                nat_outgoing: false,
            });
        }
    }
    pools.sort();
    pools.dedup();
    pools
}

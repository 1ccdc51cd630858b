//! Pools and cluster networks.

use crate::model::{ClusterNetwork, ClusterNetworkSpec, Pool, PoolMode, PoolSpec, decode, encode};
use crate::{Controller, Error, keys};
use trellis_store::{Expect, Op};
use trellis_types::{InvalidInput, IpFamily, NetworkName, PoolName};

/// Bumped with every pool created, in the same commit: two creates of
/// overlapping pools that both read the pools before either wrote cannot
/// both commit.
const POOL_GUARD: &str = "cluster/guards/pools";

impl Controller {
    /// Creates a pool. The same definition twice is the pool; another pool
    /// of that name, or one whose prefix overlaps, is ALREADY_EXISTS.
    pub async fn create_pool(&self, spec: PoolSpec) -> Result<Pool, Error> {
        let spec = &spec;
        let what = || format!("pool {:?}", spec.name.as_str());
        self.retry(what, || async move {
            let guard = self.store.get(POOL_GUARD).await?;
            let pools = self.list_pools().await?;
            if let Some(p) = pools.iter().find(|p| p.spec.name == spec.name) {
                return if &p.spec == spec {
                    Ok(p.clone())
                } else {
                    Err(Error::AlreadyExists(format!(
                        "pool {:?} already exists with other settings ({})",
                        spec.name.as_str(),
                        p.spec.prefix
                    )))
                };
            }
            if let Some(p) = pools.iter().find(|p| overlap(p.spec.prefix, spec.prefix)) {
                return Err(Error::AlreadyExists(format!(
                    "pool prefix {} overlaps pool {:?} ({})",
                    spec.prefix,
                    p.spec.name.as_str(),
                    p.spec.prefix
                )));
            }
            let pool = Pool {
                spec: spec.clone(),
                held: 0,
            };
            let bump = guard
                .as_ref()
                .map_or(0, |g| decode::<u64>(POOL_GUARD, &g.value).unwrap_or(0));
            let guard_expect = guard.map_or(Expect::Absent, |g| Expect::Revision(g.revision));
            self.store
                .txn(vec![
                    Op::put(keys::pool(&spec.name), encode(&pool), Expect::Absent),
                    Op::put(POOL_GUARD, encode(&(bump + 1)), guard_expect),
                ])
                .await?;
            Ok(pool)
        })
        .await
    }

    /// Pool `name`.
    pub async fn pool(&self, name: &PoolName) -> Result<Pool, Error> {
        Ok(self.read_pool(name).await?.0)
    }

    /// Every pool, by name.
    pub async fn list_pools(&self) -> Result<Vec<Pool>, Error> {
        let listing = self.store.list(keys::POOLS).await?;
        listing
            .entries
            .iter()
            .map(|(k, v)| decode(k, &v.value))
            .collect()
    }

    /// Deletes pool `name`: FAILED_PRECONDITION while a node holds a block
    /// of it or a cluster network uses it; unknown is done.
    pub async fn delete_pool(&self, name: &PoolName) -> Result<(), Error> {
        let what = || format!("pool {:?}", name.as_str());
        self.retry(what, || async move {
            let (pool, rev) = match self.read_pool(name).await {
                Ok(p) => p,
                Err(Error::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            if pool.held > 0 {
                return Err(Error::Precondition(format!(
                    "pool {:?} has {} blocks held by nodes (release them, or remove the nodes)",
                    name.as_str(),
                    pool.held
                )));
            }
            if let Some(n) = self
                .list_cluster_networks()
                .await?
                .into_iter()
                .find(|n| n.spec.pools.contains(name))
            {
                return Err(Error::Precondition(format!(
                    "pool {:?} is used by cluster network {:?}",
                    name.as_str(),
                    n.spec.name.as_str()
                )));
            }
            // Claims and network creations re-write the pool record, so
            // one that slipped in since the read makes this conflict.
            self.store
                .delete_if(&keys::pool(name), Expect::Revision(rev))
                .await?;
            Ok(())
        })
        .await
    }

    /// Creates a cluster network over routed pools (at most one per
    /// family). The same definition twice is the network.
    pub async fn create_cluster_network(
        &self,
        spec: ClusterNetworkSpec,
    ) -> Result<ClusterNetwork, Error> {
        if spec.pools.is_empty() {
            return Err(
                InvalidInput::new("spec.pools", "", "a cluster network needs a pool").into(),
            );
        }
        let spec = &spec;
        let what = || format!("cluster network {:?}", spec.name.as_str());
        self.retry(what, || async move {
            let key = keys::network(&spec.name);
            if let Some(v) = self.store.get(&key).await? {
                let old: ClusterNetworkSpec = decode(&key, &v.value)?;
                return if &old == spec {
                    Ok(ClusterNetwork {
                        spec: old,
                        revision: v.revision,
                    })
                } else {
                    Err(Error::AlreadyExists(format!(
                        "cluster network {:?} already exists with other settings",
                        spec.name.as_str()
                    )))
                };
            }
            let mut ops = vec![Op::put(key, encode(&spec), Expect::Absent)];
            let mut families = Vec::new();
            for name in &spec.pools {
                let (pool, rev) = self.read_pool(name).await?;
                if pool.spec.mode != PoolMode::Routed {
                    return Err(InvalidInput::new(
                        "spec.pools",
                        name,
                        "a cluster network takes routed pools (bridge pools give nodes their bridge subnets)",
                    )
                    .into());
                }
                let family = IpFamily::from(pool.spec.prefix);
                if families.contains(&family) {
                    return Err(InvalidInput::new(
                        "spec.pools",
                        name,
                        "at most one pool per address family",
                    )
                    .into());
                }
                families.push(family);
                // Re-written unchanged, so that a concurrent delete of the
                // pool conflicts with this commit.
                ops.push(Op::put(keys::pool(name), encode(&pool), Expect::Revision(rev)));
            }
            self.store.txn(ops).await?;
            // The network's own revision (a transaction's writes may each
            // have one).
            self.cluster_network(&spec.name).await
        })
        .await
    }

    /// Cluster network `name`.
    pub async fn cluster_network(&self, name: &NetworkName) -> Result<ClusterNetwork, Error> {
        let key = keys::network(name);
        let v = self.store.get(&key).await?;
        let v = v.ok_or_else(|| Error::NotFound(format!("cluster network {:?}", name.as_str())))?;
        Ok(ClusterNetwork {
            spec: decode(&key, &v.value)?,
            revision: v.revision,
        })
    }

    /// Every cluster network, by name.
    pub async fn list_cluster_networks(&self) -> Result<Vec<ClusterNetwork>, Error> {
        let listing = self.store.list(keys::NETWORKS).await?;
        listing
            .entries
            .iter()
            .map(|(k, v)| {
                Ok(ClusterNetwork {
                    spec: decode(k, &v.value)?,
                    revision: v.revision,
                })
            })
            .collect()
    }

    /// Deletes cluster network `name` (nodes stop serving it as they learn
    /// of it, refusing while they have endpoints on it); unknown is done.
    pub async fn delete_cluster_network(&self, name: &NetworkName) -> Result<(), Error> {
        self.store
            .delete_if(&keys::network(name), Expect::Any)
            .await?;
        Ok(())
    }
}

fn overlap(a: ipnet::IpNet, b: ipnet::IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

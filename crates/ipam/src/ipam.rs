//! [`Ipam`]: the allocator handle, pool management and store plumbing.

use crate::block::Block;
use crate::cache::Affinity;
use crate::pool::{Pool, PoolSet, PoolSpec, check_name};
use crate::{Error, scan};
use ipnet::IpNet;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use trellis_store::{Expect, KvStore};

/// How many times a step that lost a compare-and-swap is re-run by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 64;

/// Store key of the pool set.
pub(crate) const POOLS_KEY: &str = "ipam/pools";
/// Store prefix of all block records.
pub(crate) const BLOCKS_PREFIX: &str = "ipam/blocks";

/// Store key of block `cidr` of `pool` (`/` in the prefix becomes `-`).
pub(crate) fn block_key(pool: &str, cidr: IpNet) -> String {
    format!(
        "{BLOCKS_PREFIX}/{pool}/{}-{}",
        cidr.network(),
        cidr.prefix_len()
    )
}

/// Store prefix of the blocks of `pool`.
pub(crate) fn pool_blocks_prefix(pool: &str) -> String {
    format!("{BLOCKS_PREFIX}/{pool}")
}

/// An address allocator for one host, over a shared store.
///
/// Any number of `Ipam`s (in one process or many, for one host or several)
/// may share a store; compare-and-swap keeps their allocations disjoint.
pub struct Ipam {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) host: String,
    /// Per pool: the prefixes of the blocks this host owns or borrowed
    /// from. A hint only; block contents are always read from the store.
    pub(crate) cache: Mutex<HashMap<String, Affinity>>,
    /// Per pool: the owned block the last allocation used (a hint).
    pub(crate) hints: Mutex<HashMap<String, IpNet>>,
    max_attempts: u32,
    /// Never borrow from another host's block (see [`Ipam::with_strict_affinity`]).
    pub(crate) strict_affinity: bool,
}

impl Ipam {
    /// An allocator for `host` (the node name blocks are claimed for).
    pub fn new(store: Arc<dyn KvStore>, host: impl Into<String>) -> Self {
        Self {
            store,
            host: host.into(),
            cache: Mutex::default(),
            hints: Mutex::default(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            strict_affinity: false,
        }
    }

    /// Sets how many times a step that lost a compare-and-swap is re-run
    /// before [`Error::Contention`] (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// With `strict`, [`Ipam::allocate`] never borrows an address from
    /// another host's block: when this host's blocks are full and none is
    /// left to claim, it fails with [`Error::Exhausted`] (Calico's
    /// `strictAffinity`). Off by default.
    pub fn with_strict_affinity(mut self, strict: bool) -> Self {
        self.strict_affinity = strict;
        self
    }

    /// The same allocator (cache included) over another store.
    #[cfg(test)]
    pub(crate) fn with_store(mut self, store: Arc<dyn KvStore>) -> Self {
        self.store = store;
        self
    }

    /// The host this allocator claims blocks for.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Creates a pool. Refuses bad input ([`Error::Invalid`] naming the field:
    /// host bits set, overlap with an existing pool, block size out of range,
    /// gateway outside the pool) and duplicate names ([`Error::PoolExists`]),
    /// changing nothing.
    pub async fn create_pool(&self, spec: PoolSpec) -> Result<Pool, Error> {
        let name = spec.name.clone();
        self.retrying(&name, move || {
            let spec = spec.clone();
            async move {
                let (mut set, expect) = self.read_pools().await?;
                let pool = Pool::validate(spec, &set)?;
                set.pools.insert(pool.name.clone(), pool.clone());
                self.write_pools(&set, expect).await?;
                Ok(Some(pool))
            }
        })
        .await
    }

    /// Deletes an empty pool and its block records. Fails with
    /// [`Error::PoolInUse`] while any address is allocated and with
    /// [`Error::PoolNotFound`] for an unknown pool.
    pub async fn delete_pool(&self, name: &str) -> Result<(), Error> {
        check_name("name", name)?;
        let blocks = self
            .retrying(name, move || async move {
                let (mut set, expect) = self.read_pools().await?;
                if set.pools.remove(name).is_none() {
                    return Err(Error::PoolNotFound {
                        pool: name.to_owned(),
                    });
                }
                let blocks = self.list_blocks(name).await?;
                let used: u128 = blocks
                    .iter()
                    .map(|(_, b, _)| u128::from(b.used.count()))
                    .sum();
                if used > 0 {
                    return Err(Error::PoolInUse {
                        pool: name.to_owned(),
                        used,
                    });
                }
                self.write_pools(&set, expect).await?;
                Ok(Some(blocks))
            })
            .await?;
        self.forget_cached(name);
        for (key, _, rev) in blocks {
            self.store.delete_if(&key, Expect::Revision(rev)).await?;
        }
        Ok(())
    }

    /// All pools, by name.
    pub async fn list_pools(&self) -> Result<Vec<Pool>, Error> {
        Ok(self.read_pools().await?.0.pools.into_values().collect())
    }

    /// The pool called `name`.
    pub async fn pool(&self, name: &str) -> Result<Pool, Error> {
        let (mut set, _) = self.read_pools().await?;
        set.pools.remove(name).ok_or_else(|| Error::PoolNotFound {
            pool: name.to_owned(),
        })
    }

    /// Runs `attempt` until it returns `Some`, re-running it when it returns
    /// `None` or loses a compare-and-swap, at most `max_attempts` times.
    pub(crate) async fn retrying<T, F, Fut>(&self, pool: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, Error>>,
    {
        for n in 1..=self.max_attempts {
            match attempt().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => tracing::debug!(pool, attempt = n, "stale view, re-reading"),
                Err(Error::Store(e)) if e.is_conflict() => {
                    tracing::debug!(pool, attempt = n, error = %e, "lost a compare-and-swap");
                }
                Err(e) => return Err(e),
            }
            tokio::task::yield_now().await;
        }
        Err(Error::Contention {
            pool: pool.to_owned(),
            attempts: self.max_attempts,
        })
    }

    /// All pools (one record, one read) and what a write of it expects.
    pub(crate) async fn read_pools(&self) -> Result<(PoolSet, Expect), Error> {
        match self.store.get(POOLS_KEY).await? {
            None => Ok((PoolSet::default(), Expect::Absent)),
            Some(v) => {
                let set = serde_json::from_slice(&v.value).map_err(|e| Error::Corrupt {
                    key: POOLS_KEY.to_owned(),
                    reason: e.to_string(),
                })?;
                Ok((set, Expect::Revision(v.revision)))
            }
        }
    }

    async fn write_pools(&self, set: &PoolSet, expect: Expect) -> Result<(), Error> {
        let bytes = serde_json::to_vec(set).unwrap_or_default();
        self.store.put_if(POOLS_KEY, bytes, expect).await?;
        Ok(())
    }

    /// The block under `key` and its revision.
    pub(crate) async fn read_block(&self, key: &str) -> Result<Option<(Block, u64)>, Error> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some(v) => Ok(Some((Block::decode(key, &v.value)?, v.revision))),
        }
    }

    /// All blocks of `pool`: key, record, revision.
    pub(crate) async fn list_blocks(&self, pool: &str) -> Result<Vec<(String, Block, u64)>, Error> {
        scan::decode_listing(self.store.list(&pool_blocks_prefix(pool)).await?)
    }
}

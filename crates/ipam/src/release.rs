//! Release of the addresses a caller's record names: reads only their blocks.
//!
//! [`Ipam::release_with`] finds a handle's addresses by listing every block
//! of every pool, which costs as much as the cluster is large. A caller that
//! recorded what the handle holds (the agent's endpoint record, committed
//! with the allocation) does not need the search: the block of an address
//! follows from its pool's prefix and block size, so the release reads the
//! pool list and the named blocks only, and writes those that change.

use crate::alloc::{Effect, Staged};
use crate::ipam::{Ipam, block_key};
use crate::pool::PoolSet;
use crate::scan::allocation_at;
use crate::{Allocation, Error};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use trellis_store::{Expect, Op};
use trellis_types::{Handle, PoolName};

/// The named addresses grouped by the block that holds them, in pools that
/// exist and inside their pool's prefix; the rest are dropped (nothing of
/// theirs can be held).
type ByBlock<'a> = BTreeMap<(&'a PoolName, IpNet), BTreeSet<IpAddr>>;

impl Ipam {
    /// Releases the addresses `addresses` names (pool and address), each
    /// only if `handle` holds it, and commits `extra` with it: the block
    /// writes and the caller's writes all land, or none does (one store
    /// transaction, each block written back compare-and-swap on the revision
    /// it was read at; a lost swap re-reads and re-runs the whole release,
    /// like [`Ipam::release_with`]). A conflict on one of `extra`'s keys
    /// fails with [`Error::Precondition`]. Returns what was released, by
    /// pool and address.
    ///
    /// Costs one read of the pool list and one read per block the addresses
    /// fall in, however many blocks the pools have: it is meant for a caller
    /// that recorded what the handle holds when it allocated (the agent's
    /// detach), so no block is searched.
    ///
    /// An address held by another handle is left alone: a stale record (one
    /// that outlived a release by [`Ipam::release`] or a leak sweep, its
    /// address since handed to another container) must never free someone
    /// else's address. Addresses of `handle` that `addresses` does not name
    /// are kept too. Idempotent: an address already free, in a block or pool
    /// that no longer exists, or outside its pool's prefix, is skipped, not
    /// an error, so a repeated detach succeeds and releases nothing.
    pub async fn release_addresses_with(
        &self,
        handle: &Handle,
        addresses: &[(PoolName, IpAddr)],
        extra: Vec<Op>,
    ) -> Result<Vec<Allocation>, Error> {
        let label = format!("addresses of {handle}");
        let extra = &extra;
        self.retrying(&label, move || async move {
            let (pools, _) = self.read_pools().await?;
            let mut released = Vec::new();
            let mut staged = Vec::new();
            for ((pool, cidr), ips) in by_block(&pools, addresses) {
                if let Some(write) = self
                    .release_in(pool, cidr, &ips, handle, &mut released)
                    .await?
                {
                    staged.push(write);
                }
            }
            self.commit(staged, extra.clone()).await?;
            Ok(Some(released))
        })
        .await
    }

    /// Reads block `cidr` of `pool` and frees those of `ips` that `handle`
    /// holds, adding them to `released`; the block's write, if any changed.
    async fn release_in(
        &self,
        pool: &PoolName,
        cidr: IpNet,
        ips: &BTreeSet<IpAddr>,
        handle: &Handle,
        released: &mut Vec<Allocation>,
    ) -> Result<Option<Staged>, Error> {
        let key = block_key(pool.as_str(), cidr);
        let Some((mut block, rev)) = self.read_block(&key).await? else {
            tracing::debug!(%pool, block = %cidr, %handle, "block gone: nothing to release");
            return Ok(None);
        };
        if block.cidr != cidr {
            return Err(Error::Corrupt {
                key,
                reason: format!("holds block {}", block.cidr),
            });
        }
        let before = released.len();
        for ip in ips {
            let ordinal = block.ordinal(*ip);
            match block.holder(ordinal) {
                Some(h) if h == handle => {
                    released.push(allocation_at(pool.as_str(), &block, ordinal, h));
                    block.unassign(ordinal);
                }
                Some(other) => {
                    tracing::warn!(%pool, %ip, %handle, holder = %other,
                        "address recorded for one handle is held by another: left alone");
                }
                None => tracing::debug!(%pool, %ip, %handle, "address already free"),
            }
        }
        Ok((released.len() > before).then(|| Staged {
            pool: pool.to_string(),
            block,
            expect: Expect::Revision(rev),
            effect: Effect::Known,
        }))
    }
}

/// Groups `addresses` by pool and block, dropping duplicates, addresses of
/// pools not in `pools` and addresses outside their pool's prefix.
fn by_block<'a>(pools: &PoolSet, addresses: &'a [(PoolName, IpAddr)]) -> ByBlock<'a> {
    let mut out = ByBlock::new();
    for (name, ip) in addresses {
        match pools.pools.get(name.as_str()) {
            Some(pool) if pool.cidr.contains(ip) => {
                out.entry((name, pool.block_of(*ip)))
                    .or_default()
                    .insert(*ip);
            }
            Some(pool) => {
                tracing::debug!(pool = %name, %ip, cidr = %pool.cidr, "address outside its pool: nothing to release");
            }
            None => tracing::debug!(pool = %name, %ip, "pool gone: nothing to release"),
        }
    }
    out
}

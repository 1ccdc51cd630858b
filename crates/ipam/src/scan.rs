//! Operations that look across blocks: release by handle, queries, leaks.

use crate::Error;
use crate::alloc::{Effect, Staged};
use crate::block::Block;
use crate::ipam::{BLOCKS_PREFIX, Ipam};
use std::collections::HashSet;
use std::net::IpAddr;
use trellis_store::{Expect, Listing, Op};
use trellis_types::Handle;

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Allocation {
    /// The pool it came from.
    pub pool: String,
    /// The address.
    pub ip: IpAddr,
    /// Who holds it.
    pub handle: Handle,
    /// The host the address's block is affine to.
    pub block_host: String,
    /// The host that borrowed the address from `block_host`'s block, if it
    /// is not `block_host` itself: that host routes and announces the /32
    /// (/128), and `block_host` never hands the address out meanwhile.
    pub borrower: Option<String>,
}

impl Allocation {
    /// The host the address is in use on: its borrower, or its block's host.
    pub fn host(&self) -> &str {
        self.borrower.as_deref().unwrap_or(&self.block_host)
    }
}

/// Every allocation recorded in `block` of `pool`.
pub(crate) fn allocations_in<'a>(
    pool: &'a str,
    block: &'a Block,
) -> impl Iterator<Item = Allocation> + 'a {
    block
        .handles
        .iter()
        .map(move |(ord, h)| allocation_at(pool, block, *ord, h))
}

/// The allocation of `ordinal` in `block` of `pool`, held by `handle`.
pub(crate) fn allocation_at(
    pool: &str,
    block: &Block,
    ordinal: u32,
    handle: &Handle,
) -> Allocation {
    Allocation {
        pool: pool.to_owned(),
        ip: block.ip(ordinal),
        handle: handle.clone(),
        block_host: block.host.clone(),
        borrower: block.borrowers.get(&ordinal).cloned(),
    }
}

/// How a pool's addresses are spent. `reserved + used + free == capacity`,
/// where `free` is counted from the block records (and from the size of the
/// blocks not claimed yet), not derived from the other numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Addresses the pool spans.
    pub capacity: u128,
    /// Addresses never handed out (network, broadcast, gateway).
    pub reserved: u128,
    /// Addresses allocated to a handle.
    pub used: u128,
    /// Addresses that can still be allocated.
    pub free: u128,
    /// Blocks claimed by some host.
    pub claimed_blocks: u128,
}

impl Ipam {
    /// Releases every address `handle` holds, in all pools. Idempotent:
    /// releasing an unknown handle, or twice, succeeds and returns nothing.
    /// Returns what was released.
    pub async fn release(&self, handle: &Handle) -> Result<Vec<Allocation>, Error> {
        self.release_with(handle, Vec::new()).await
    }

    /// Like [`Ipam::release`], and commits `extra` with it: the block writes
    /// and the caller's writes all land, or none does (one store
    /// transaction). A conflict on one of `extra`'s keys fails with
    /// [`Error::Precondition`]. Reads every block of every pool; a caller
    /// that knows which addresses the handle holds uses
    /// [`Ipam::release_addresses_with`], which reads only their blocks.
    pub async fn release_with(
        &self,
        handle: &Handle,
        extra: Vec<Op>,
    ) -> Result<Vec<Allocation>, Error> {
        let label = format!("blocks of {handle}");
        let extra = &extra;
        self.retrying(&label, move || async move {
            let mut released = Vec::new();
            let mut staged = Vec::new();
            for (pool, mut block, rev) in self.all_blocks().await? {
                let held: Vec<Allocation> = allocations_in(&pool, &block)
                    .filter(|a| &a.handle == handle)
                    .collect();
                if held.is_empty() {
                    continue;
                }
                released.extend(held);
                block.release(handle);
                staged.push(Staged {
                    pool,
                    block,
                    expect: Expect::Revision(rev),
                    effect: Effect::Known,
                });
            }
            self.commit(staged, extra.clone()).await?;
            Ok(Some(released))
        })
        .await
    }

    /// Every address `handle` holds, in all pools.
    pub async fn addresses_of(&self, handle: &Handle) -> Result<Vec<Allocation>, Error> {
        let mut out: Vec<_> = self
            .allocations()
            .await?
            .into_iter()
            .filter(|a| &a.handle == handle)
            .collect();
        out.sort();
        Ok(out)
    }

    /// Allocations whose handle is not in `valid` (containers that are gone),
    /// for the caller to [`release`](Ipam::release).
    pub async fn check_leaks(&self, valid: &HashSet<Handle>) -> Result<Vec<Allocation>, Error> {
        let mut out: Vec<_> = self
            .allocations()
            .await?
            .into_iter()
            .filter(|a| !valid.contains(&a.handle))
            .collect();
        out.sort();
        Ok(out)
    }

    /// How `pool`'s addresses are spent.
    pub async fn usage(&self, pool: &str) -> Result<Usage, Error> {
        let spec = self.pool(pool).await?;
        let blocks = self.list_blocks(pool).await?;
        let reserved = spec.reserved();
        let claimed: HashSet<_> = blocks.iter().map(|(_, b, _)| b.cidr).collect();
        let reserved_unclaimed = reserved
            .iter()
            .filter(|ip| !claimed.contains(&spec.block_of(**ip)))
            .count() as u128;
        let unclaimed = spec.block_count() - claimed.len() as u128;
        let free_claimed: u128 = blocks.iter().map(|(_, b, _)| u128::from(b.free())).sum();
        Ok(Usage {
            capacity: spec.capacity(),
            reserved: reserved.len() as u128,
            used: blocks
                .iter()
                .map(|(_, b, _)| u128::from(b.used.count()))
                .sum(),
            free: free_claimed + unclaimed * u128::from(spec.block_size()) - reserved_unclaimed,
            claimed_blocks: claimed.len() as u128,
        })
    }

    /// Every allocation in every pool.
    async fn allocations(&self) -> Result<Vec<Allocation>, Error> {
        let mut out = Vec::new();
        for (pool, block, _) in self.all_blocks().await? {
            out.extend(allocations_in(&pool, &block));
        }
        Ok(out)
    }

    /// All block records of all pools: pool name, record, revision.
    async fn all_blocks(&self) -> Result<Vec<(String, Block, u64)>, Error> {
        let listing = self.store.list(BLOCKS_PREFIX).await?;
        let blocks = decode_listing(listing)?;
        Ok(blocks
            .into_iter()
            .map(|(key, block, rev)| (pool_of_key(&key).to_owned(), block, rev))
            .collect())
    }
}

/// The pool segment of a block key (`ipam/blocks/<pool>/<block>`).
fn pool_of_key(key: &str) -> &str {
    let rest = key.strip_prefix(BLOCKS_PREFIX).unwrap_or(key);
    rest.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

/// Decodes a listing of block records: key, record, revision.
pub(crate) fn decode_listing(listing: Listing) -> Result<Vec<(String, Block, u64)>, Error> {
    listing
        .entries
        .into_iter()
        .map(|(key, v)| {
            let block = Block::decode(&key, &v.value)?;
            Ok((key, block, v.revision))
        })
        .collect()
}

//! Allocation: from an owned block, by claiming a block, by borrowing from
//! another host's block, or a fixed address.

use crate::block::Block;
use crate::cache::Affinity;
use crate::ipam::{Ipam, block_key};
use crate::pool::check_name;
use crate::{Error, Pool};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use trellis_store::Expect;
use trellis_types::Handle;

/// What the cached blocks say about one allocation.
enum Found {
    /// The handle holds this address already.
    Held(IpAddr),
    /// An owned block with a free address, and its revision.
    Room(Block, u64),
    /// The owned blocks are full.
    Full,
    /// A cached block is gone: re-list.
    Stale,
}

impl Ipam {
    /// Allocates an address from `pool` for `handle`: from a block this host
    /// owns (next-fit), else from a newly claimed block, else (unless
    /// [strict affinity](Ipam::with_strict_affinity)) by borrowing a free
    /// address from another host's block, recorded as held by this host.
    /// Idempotent: a handle that already holds an address of the pool for
    /// this host (in its own blocks or borrowed) gets that address back.
    /// Fails with [`Error::Exhausted`] when no address is left to take.
    pub async fn allocate(&self, pool: &str, handle: &Handle) -> Result<IpAddr, Error> {
        check_name("pool", pool)?;
        self.retrying(pool, move || self.try_allocate(pool, handle))
            .await
    }

    /// One attempt of [`Ipam::allocate`]; `None` means "re-run".
    async fn try_allocate(&self, pool: &str, handle: &Handle) -> Result<Option<IpAddr>, Error> {
        let Some(cached) = self.cached(pool) else {
            return self.refresh(pool).await.map(|_| None);
        };
        match self.look_in_cached(pool, handle, &cached).await? {
            Found::Held(ip) => Ok(Some(ip)),
            Found::Stale => {
                self.forget_cached(pool);
                Ok(None)
            }
            Found::Room(mut block, rev) => {
                let Some(ip) = block.allocate_next(handle, &self.host) else {
                    return Ok(None);
                };
                self.write_block(pool, &block, Expect::Revision(rev))
                    .await?;
                Ok(Some(ip))
            }
            Found::Full => self.claim_or_borrow(pool, handle, &cached).await,
        }
    }

    /// Reads the cached blocks (usually one owned, none borrowed from): the
    /// handle's address if it holds one, else the first owned block with room.
    async fn look_in_cached(
        &self,
        pool: &str,
        handle: &Handle,
        cached: &Affinity,
    ) -> Result<Found, Error> {
        let mut with_room = None;
        for (i, cidr) in cached.owned.iter().chain(&cached.borrowed).enumerate() {
            let Some((block, rev)) = self.read_block(&block_key(pool, *cidr)).await? else {
                // The block went away (pool deleted?): look again.
                return Ok(Found::Stale);
            };
            if let Some(ordinal) = block.find_for(handle, &self.host) {
                return Ok(Found::Held(block.ip(ordinal)));
            }
            let owned = i < cached.owned.len();
            if owned && with_room.is_none() && block.free() > 0 {
                with_room = Some((block, rev));
            }
        }
        Ok(with_room.map_or(Found::Full, |(b, rev)| Found::Room(b, rev)))
    }

    /// Lists the pool's blocks, caches what this host holds, returns them
    /// with their revisions.
    pub(crate) async fn refresh(&self, pool: &str) -> Result<Vec<(Block, u64)>, Error> {
        let blocks: Vec<(Block, u64)> = self
            .list_blocks(pool)
            .await?
            .into_iter()
            .map(|(_, b, rev)| (b, rev))
            .collect();
        self.set_cached(
            pool,
            Affinity::of(&self.host, blocks.iter().map(|(b, _)| b)),
        );
        Ok(blocks)
    }

    /// The host's cached blocks are full: claims the lowest unclaimed block
    /// with a free address and allocates from it, or else borrows. `None`
    /// when the cache was stale (another allocator of this host claimed,
    /// borrowed or released meanwhile) or the claim lost a race.
    async fn claim_or_borrow(
        &self,
        pool: &str,
        handle: &Handle,
        cached: &Affinity,
    ) -> Result<Option<IpAddr>, Error> {
        let spec = self.pool(pool).await?;
        let blocks = self.refresh(pool).await?;
        let own_room = blocks
            .iter()
            .any(|(b, _)| b.host == self.host && b.free() > 0);
        if own_room || self.cached(pool).as_ref() != Some(cached) {
            return Ok(None);
        }
        let claimed: Vec<IpNet> = blocks.iter().map(|(b, _)| b.cidr).collect();
        let Some(mut block) = first_unclaimed(&spec, &claimed, &self.host) else {
            return self.borrow(pool, handle, blocks).await;
        };
        let Some(ip) = block.allocate_next(handle, &self.host) else {
            return Ok(None);
        };
        self.write_block(pool, &block, Expect::Absent).await?;
        tracing::info!(pool, block = %block.cidr, host = %self.host, "claimed block");
        self.add_owned(pool, block.cidr);
        Ok(Some(ip))
    }

    /// Allocates exactly `ip` from `pool` to `handle` (to restore a known
    /// address). Idempotent for the same handle. Fails with [`Error::Invalid`]
    /// (field `ip`) for an address outside the pool or reserved, and with
    /// [`Error::AddressTaken`] when another handle holds it. The address's
    /// block is claimed for this host if unclaimed; in a block owned by
    /// another host the address is recorded as borrowed by this host.
    pub async fn allocate_specific(
        &self,
        pool: &str,
        handle: &Handle,
        ip: IpAddr,
    ) -> Result<(), Error> {
        check_name("pool", pool)?;
        let spec = self.pool(pool).await?;
        spec.check_specific(ip)?;
        let spec = &spec;
        self.retrying(pool, move || self.try_allocate_specific(spec, handle, ip))
            .await
    }

    async fn try_allocate_specific(
        &self,
        pool: &Pool,
        handle: &Handle,
        ip: IpAddr,
    ) -> Result<Option<()>, Error> {
        let cidr = pool.block_of(ip);
        let (mut block, expect) = match self.read_block(&block_key(&pool.name, cidr)).await? {
            Some((block, rev)) => (block, Expect::Revision(rev)),
            None => (Block::new(pool, cidr, &self.host), Expect::Absent),
        };
        let ordinal = block.ordinal(ip);
        match block.holder(ordinal) {
            Some(h) if h == handle => return Ok(Some(())),
            Some(h) => {
                return Err(Error::AddressTaken {
                    pool: pool.name.clone(),
                    ip,
                    holder: h.clone(),
                });
            }
            None => block.assign(ordinal, handle, &self.host),
        }
        self.write_block(&pool.name, &block, expect).await?;
        if expect == Expect::Absent {
            self.add_owned(&pool.name, cidr);
        } else if block.host != self.host {
            self.add_borrowed(&pool.name, cidr);
        }
        Ok(Some(()))
    }
}

/// The lowest block of `pool` not in `claimed` that has a free address, as a
/// fresh record affine to `host`.
fn first_unclaimed(pool: &Pool, claimed: &[IpNet], host: &str) -> Option<Block> {
    let claimed: HashSet<&IpNet> = claimed.iter().collect();
    pool.blocks()
        .filter(|cidr| !claimed.contains(cidr))
        .map(|cidr| Block::new(pool, cidr, host))
        .find(|b| b.free() > 0)
}

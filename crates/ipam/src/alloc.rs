//! Allocation: from an owned block, by claiming a block, or a fixed address.

use crate::block::Block;
use crate::ipam::{Ipam, block_key};
use crate::pool::check_name;
use crate::{Error, Pool};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use trellis_store::Expect;
use trellis_types::Handle;

impl Ipam {
    /// Allocates an address from `pool` for `handle`: from a block this host
    /// owns (next-fit), else from a newly claimed block. Idempotent: a handle
    /// that already holds an address in one of this host's blocks of the pool
    /// gets that address back. Fails with [`Error::Exhausted`] when the host's
    /// blocks are full and no block is left to claim.
    pub async fn allocate(&self, pool: &str, handle: &Handle) -> Result<IpAddr, Error> {
        check_name("pool", pool)?;
        self.retrying(pool, move || self.try_allocate(pool, handle))
            .await
    }

    /// One attempt of [`Ipam::allocate`]; `None` means "re-run".
    async fn try_allocate(&self, pool: &str, handle: &Handle) -> Result<Option<IpAddr>, Error> {
        let owned = match self.cached_owned(pool) {
            Some(owned) => owned,
            None => return self.refresh_owned(pool).await.map(|_| None),
        };
        let mut with_room = None;
        for cidr in &owned {
            let Some((block, rev)) = self.read_block(&block_key(pool, *cidr)).await? else {
                // The block went away (pool deleted?): look again.
                self.forget_owned(pool);
                return Ok(None);
            };
            if let Some(ordinal) = block.find(handle) {
                return Ok(Some(block.ip(ordinal)));
            }
            if with_room.is_none() && block.free() > 0 {
                with_room = Some((block, rev));
            }
        }
        if let Some((mut block, rev)) = with_room {
            let Some(ip) = block.allocate_next(handle) else {
                return Ok(None);
            };
            self.write_block(pool, &block, Expect::Revision(rev))
                .await?;
            return Ok(Some(ip));
        }
        self.claim_and_allocate(pool, handle, &owned).await
    }

    /// Lists the pool's blocks and caches the prefixes of this host's.
    async fn refresh_owned(&self, pool: &str) -> Result<Vec<IpNet>, Error> {
        let blocks = self.list_blocks(pool).await?;
        let mine: Vec<IpNet> = blocks
            .iter()
            .filter(|(_, b, _)| b.host == self.host)
            .map(|(_, b, _)| b.cidr)
            .collect();
        self.set_owned(pool, mine.clone());
        Ok(blocks.into_iter().map(|(_, b, _)| b.cidr).collect())
    }

    /// Claims the lowest unclaimed block with a free address and allocates
    /// from it. `None` when the host's cached blocks were stale (another
    /// allocator of this host claimed one) or the claim lost a race.
    async fn claim_and_allocate(
        &self,
        pool: &str,
        handle: &Handle,
        cached: &[IpNet],
    ) -> Result<Option<IpAddr>, Error> {
        let spec = self.pool(pool).await?;
        let claimed = self.refresh_owned(pool).await?;
        if self.cached_owned(pool).as_deref() != Some(cached) {
            return Ok(None);
        }
        let Some(mut block) = first_unclaimed(&spec, &claimed, &self.host) else {
            return Err(Error::Exhausted {
                pool: pool.to_owned(),
                host: self.host.clone(),
            });
        };
        let Some(ip) = block.allocate_next(handle) else {
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
    /// block is claimed for this host if unclaimed; a block owned by another
    /// host is written into as it is.
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
            None => block.assign(ordinal, handle),
        }
        self.write_block(&pool.name, &block, expect).await?;
        if expect == Expect::Absent {
            self.add_owned(&pool.name, cidr);
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

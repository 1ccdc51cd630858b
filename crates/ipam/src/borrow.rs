//! Routed mode across hosts: the blocks a host owns (it routes and announces
//! each as a whole, with a blackhole for its unused addresses), and addresses
//! borrowed from other hosts' blocks (announced and routed one by one).
//!
//! Borrowing is Calico's behaviour without strict affinity: when a host's
//! blocks are full and no block is left to claim, it takes a free address
//! from another host's block rather than failing while the pool still has
//! room. The block record keeps the borrower per address, so the owning host
//! never hands it out again until it is released (the `used` bit is set like
//! for any allocation), and both hosts can tell which /32 (/128) is routed
//! where: the borrower announces it, the owner routes it to the borrower
//! instead of into its blackhole.

use crate::alloc::{Effect, Pick, Staged};
use crate::block::Block;
use crate::pool::check_name;
use crate::scan::allocations_in;
use crate::{Allocation, Error, Ipam};
use ipnet::IpNet;
use std::cmp::Reverse;
use trellis_store::Expect;
use trellis_types::Handle;

impl Ipam {
    /// The blocks of `pool` this host holds affinity for, sorted. Cheap: from
    /// the allocator's cache, kept in sync by its own claims and by every
    /// allocation that lists the pool; the store is read only the first time
    /// (or after [`Ipam::refresh_owned_blocks`] is needed: blocks claimed by
    /// another allocator of the same host are seen once this one re-lists).
    pub async fn owned_blocks(&self, pool: &str) -> Result<Vec<IpNet>, Error> {
        check_name("pool", pool)?;
        match self.cached(pool) {
            Some(a) => Ok(a.owned),
            None => self.refresh_owned_blocks(pool).await,
        }
    }

    /// Like [`Ipam::owned_blocks`], but lists the pool's blocks in the store
    /// first (start-up reconciliation). Fails with [`Error::PoolNotFound`]
    /// for an unknown pool.
    pub async fn refresh_owned_blocks(&self, pool: &str) -> Result<Vec<IpNet>, Error> {
        check_name("pool", pool)?;
        self.pool(pool).await?;
        self.refresh(pool).await?;
        Ok(self.cached(pool).unwrap_or_default().owned)
    }

    /// The addresses of `pool` this host borrowed from other hosts' blocks:
    /// the /32s (/128s) it routes and announces one by one.
    pub async fn borrowed(&self, pool: &str) -> Result<Vec<Allocation>, Error> {
        let host = self.host.clone();
        self.allocations_where(pool, |a| a.borrower.as_deref() == Some(&host))
            .await
    }

    /// The addresses of this host's blocks in `pool` that other hosts
    /// borrowed: routed to their borrower, not into this host's blackhole.
    pub async fn lent(&self, pool: &str) -> Result<Vec<Allocation>, Error> {
        let host = self.host.clone();
        self.allocations_where(pool, |a| a.block_host == host && a.borrower.is_some())
            .await
    }

    async fn allocations_where(
        &self,
        pool: &str,
        keep: impl Fn(&Allocation) -> bool,
    ) -> Result<Vec<Allocation>, Error> {
        check_name("pool", pool)?;
        self.pool(pool).await?;
        let mut out: Vec<Allocation> = self
            .list_blocks(pool)
            .await?
            .iter()
            .flat_map(|(_, b, _)| allocations_in(pool, b))
            .filter(|a| keep(a))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every block of `pool` is claimed and this host's are full: borrows a
    /// free address from the other host's block with the most free
    /// addresses (leaving nearly full blocks to their owners), or fails with
    /// [`Error::Exhausted`] when the pool is full (or affinity is strict).
    /// A handle that already borrowed an address gets it back. `None` when
    /// the attempt is to be re-run. Stages the write; nothing is written.
    pub(crate) async fn borrow(
        &self,
        pool: &str,
        handle: &Handle,
        blocks: Vec<(Block, u64)>,
    ) -> Result<Option<Pick>, Error> {
        if let Some(ip) = blocks
            .iter()
            .find_map(|(b, _)| b.find_for(handle, &self.host).map(|ord| b.ip(ord)))
        {
            return Ok(Some((ip, None)));
        }
        let exhausted = || Error::Exhausted {
            pool: pool.to_owned(),
            host: self.host.clone(),
        };
        if self.strict_affinity {
            return Err(exhausted());
        }
        let Some((block, rev)) = blocks
            .into_iter()
            .filter(|(b, _)| b.host != self.host && b.free() > 0)
            .max_by_key(|(b, _)| (b.free(), Reverse(b.cidr)))
        else {
            return Err(exhausted());
        };
        let expect = Expect::Revision(rev);
        Ok(Staged::take_next(
            pool,
            block,
            handle,
            &self.host,
            expect,
            Effect::Borrowed,
        ))
    }
}

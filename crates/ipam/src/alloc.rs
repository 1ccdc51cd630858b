//! Allocation: from an owned block, by claiming a block, by borrowing from
//! another host's block, or a fixed address.
//!
//! Each attempt only *reads* and stages the one block write it needs
//! ([`Staged`]); the staged writes of one allocation (one per pool asked for)
//! and any writes the caller adds are then committed together — one
//! `put_if` when there is one write, else one store transaction. So an agent
//! can take a container's IPv4 and IPv6 addresses and record the endpoint
//! that holds them in a single commit (a single fsync), and a lost
//! compare-and-swap re-runs the whole attempt with nothing half-written.

use crate::block::Block;
use crate::cache::Affinity;
use crate::ipam::{Ipam, block_key};
use crate::pool::check_name;
use crate::{Error, Pool};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use trellis_store::{Expect, Op};
use trellis_types::{Handle, InvalidInput};

/// One address an allocation asks for: the next free one of a pool, or a
/// fixed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The pool to allocate from.
    pub pool: String,
    /// Exactly this address (to restore a known one), or `None` for the
    /// next free one.
    pub fixed: Option<IpAddr>,
    /// The caller knows the handle holds no address of this pool (see
    /// [`Want::fresh`]).
    pub fresh: bool,
}

impl Want {
    /// The next free address of `pool`.
    pub fn next(pool: impl Into<String>) -> Self {
        Want {
            pool: pool.into(),
            fixed: None,
            fresh: false,
        }
    }

    /// The next free address of `pool`, for a handle the caller knows holds
    /// none in it — the agent knows, because an endpoint's record and its
    /// addresses are committed together, so no record means no address.
    /// The search then skips looking through every block this host holds
    /// for the handle's address and starts at the block the last allocation
    /// used: one block read however many blocks the host owns. (Asked for a
    /// handle that does hold an address, it hands out a second one.)
    pub fn fresh(pool: impl Into<String>) -> Self {
        Want {
            fresh: true,
            ..Want::next(pool)
        }
    }

    /// Exactly `ip` from `pool`.
    pub fn exactly(pool: impl Into<String>, ip: IpAddr) -> Self {
        Want {
            pool: pool.into(),
            fixed: Some(ip),
            fresh: false,
        }
    }
}

/// A block write an attempt wants to make, and what it tells this host's
/// cache once it is committed.
pub(crate) struct Staged {
    pub pool: String,
    pub block: Block,
    pub expect: Expect,
    pub effect: Effect,
}

/// What a committed [`Staged`] write means for the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Nothing new: a block already known.
    Known,
    /// This host claimed the block.
    Claimed,
    /// This host borrowed an address in another host's block.
    Borrowed,
}

impl Staged {
    /// Takes the next free address of `block` for `handle` (next-fit) and
    /// stages the block's write; `None` when the block turned out full.
    pub(crate) fn take_next(
        pool: &str,
        mut block: Block,
        handle: &Handle,
        host: &str,
        expect: Expect,
        effect: Effect,
    ) -> Option<Pick> {
        let ip = block.allocate_next(handle, host)?;
        let write = Staged {
            pool: pool.to_owned(),
            block,
            expect,
            effect,
        };
        Some((ip, Some(write)))
    }

    fn op(&self) -> Op {
        let key = block_key(&self.pool, self.block.cidr);
        Op::put(key, self.block.encode(), self.expect)
    }
}

/// One attempt's answer for one address: the address, and the block write
/// that takes it (`None` when the handle holds it already).
pub(crate) type Pick = (IpAddr, Option<Staged>);

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
        let ips = self
            .allocate_with(handle, &[Want::next(pool)], |_| Vec::new())
            .await?;
        Ok(ips[0])
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
        self.allocate_with(handle, &[Want::exactly(pool, ip)], |_| Vec::new())
            .await
            .map(drop)
    }

    /// Allocates one address per [`Want`] (each of another pool) for
    /// `handle`, as [`Ipam::allocate`] and [`Ipam::allocate_specific`] do,
    /// and commits them together with the writes `extra` returns for the
    /// chosen addresses (in `wants` order): all of it lands, or none.
    ///
    /// `extra` may run more than once (once per attempt, when a concurrent
    /// allocator wins a compare-and-swap); it should only build writes. A
    /// conflict on one of its own keys is not retried: it fails with
    /// [`Error::Precondition`], and nothing is allocated.
    pub async fn allocate_with(
        &self,
        handle: &Handle,
        wants: &[Want],
        extra: impl Fn(&[IpAddr]) -> Vec<Op>,
    ) -> Result<Vec<IpAddr>, Error> {
        self.allocate_with_as(handle, wants, extra, true).await
    }

    /// [`Ipam::allocate_with`], committed with
    /// [`trellis_store::KvStore::txn_unsynced`]: the allocation is visible
    /// (and held) at once, and durable only after the caller's
    /// [`trellis_store::KvStore::sync`] — so the caller can overlap the
    /// store's fsync with its own work. A crash before that sync loses the
    /// allocation (and `extra`'s writes) whole.
    pub async fn allocate_unsynced_with(
        &self,
        handle: &Handle,
        wants: &[Want],
        extra: impl Fn(&[IpAddr]) -> Vec<Op>,
    ) -> Result<Vec<IpAddr>, Error> {
        self.allocate_with_as(handle, wants, extra, false).await
    }

    async fn allocate_with_as(
        &self,
        handle: &Handle,
        wants: &[Want],
        extra: impl Fn(&[IpAddr]) -> Vec<Op>,
        synced: bool,
    ) -> Result<Vec<IpAddr>, Error> {
        let specs = self.check_wants(wants).await?;
        let label = wants.first().map(|w| w.pool.as_str()).unwrap_or_default();
        let (specs, extra) = (&specs, &extra);
        self.retrying(label, move || async move {
            let mut ips = Vec::with_capacity(wants.len());
            let mut staged = Vec::with_capacity(wants.len());
            for (want, spec) in wants.iter().zip(specs) {
                let pick = match (want.fixed, spec) {
                    (Some(ip), Some(spec)) => self.try_allocate_specific(spec, handle, ip).await?,
                    _ => self.try_allocate(&want.pool, handle, want.fresh).await?,
                };
                let Some((ip, write)) = pick else {
                    return Ok(None);
                };
                ips.push(ip);
                staged.extend(write);
            }
            self.commit_as(staged, extra(&ips), synced).await?;
            Ok(Some(ips))
        })
        .await
    }

    /// Checks the pool names (each once) and the fixed addresses before
    /// anything is read for allocation; the specs of the fixed ones' pools.
    async fn check_wants(&self, wants: &[Want]) -> Result<Vec<Option<Pool>>, Error> {
        let mut seen = HashSet::new();
        let mut specs = Vec::with_capacity(wants.len());
        for want in wants {
            check_name("pool", &want.pool)?;
            if !seen.insert(want.pool.as_str()) {
                let reason = "asked for twice in one allocation";
                return Err(InvalidInput::new("pool", &want.pool, reason).into());
            }
            specs.push(match want.fixed {
                Some(ip) => {
                    let spec = self.pool(&want.pool).await?;
                    spec.check_specific(ip)?;
                    Some(spec)
                }
                None => None,
            });
        }
        Ok(specs)
    }

    /// Commits the staged block writes and the caller's `extra` writes as one
    /// (a lone put needs no transaction), then tells the cache.
    pub(crate) async fn commit(&self, staged: Vec<Staged>, extra: Vec<Op>) -> Result<(), Error> {
        self.commit_as(staged, extra, true).await
    }

    /// [`Ipam::commit`]; `synced: false` commits with `txn_unsynced`.
    async fn commit_as(
        &self,
        staged: Vec<Staged>,
        extra: Vec<Op>,
        synced: bool,
    ) -> Result<(), Error> {
        let extra_keys: HashSet<String> = extra.iter().map(|op| op.key().to_owned()).collect();
        let mut ops: Vec<Op> = staged.iter().map(Staged::op).collect();
        ops.extend(extra);
        let written = match ops.as_slice() {
            [] => Ok(()),
            _ if !synced => self.store.txn_unsynced(ops).await.map(drop),
            [Op::Put { .. }] => match ops.pop() {
                Some(Op::Put {
                    key,
                    value,
                    expected,
                }) => self.store.put_if(&key, value, expected).await.map(drop),
                _ => unreachable!("matched one put"),
            },
            _ => self.store.txn(ops).await.map(drop),
        };
        match written {
            Err(trellis_store::Error::Conflict {
                key,
                expected,
                actual,
            }) if extra_keys.contains(&key) => {
                let e = trellis_store::Error::Conflict {
                    key,
                    expected,
                    actual,
                };
                Err(Error::Precondition(e))
            }
            Err(e) => Err(e.into()),
            Ok(()) => {
                for s in &staged {
                    self.committed(s);
                }
                Ok(())
            }
        }
    }

    /// Brings the cache up to date with a committed block write.
    fn committed(&self, s: &Staged) {
        if s.block.host == self.host {
            self.set_hint(&s.pool, s.block.cidr, s.block.free() > 0);
        }
        match s.effect {
            Effect::Known => {}
            Effect::Claimed => {
                tracing::info!(pool = %s.pool, block = %s.block.cidr, host = %self.host, "claimed block");
                self.add_owned(&s.pool, s.block.cidr);
            }
            Effect::Borrowed => {
                tracing::info!(pool = %s.pool, block = %s.block.cidr, owner = %s.block.host, host = %self.host, "borrowed address");
                self.add_borrowed(&s.pool, s.block.cidr);
            }
        }
    }

    /// One attempt at the next free address of `pool`; `None` means "re-run".
    /// `fresh`: the handle holds no address of the pool (see [`Want::fresh`]).
    async fn try_allocate(
        &self,
        pool: &str,
        handle: &Handle,
        fresh: bool,
    ) -> Result<Option<Pick>, Error> {
        let Some(cached) = self.cached(pool) else {
            return self.refresh(pool).await.map(|_| None);
        };
        let hinted = match self.hint(pool) {
            Some(cidr) if fresh && cached.owned.contains(&cidr) => {
                self.read_block(&block_key(pool, cidr)).await?
            }
            _ => None,
        };
        let found = match hinted {
            Some((block, rev)) if block.host == self.host && block.free() > 0 => {
                Found::Room(block, rev)
            }
            _ => self.look_in_cached(pool, handle, &cached).await?,
        };
        match found {
            Found::Held(ip) => Ok(Some((ip, None))),
            Found::Stale => {
                self.forget_cached(pool);
                Ok(None)
            }
            Found::Room(block, rev) => Ok(Staged::take_next(
                pool,
                block,
                handle,
                &self.host,
                Expect::Revision(rev),
                Effect::Known,
            )),
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
    /// with a free address and stages the claim, or else borrows. `None`
    /// when the cache was stale (another allocator of this host claimed,
    /// borrowed or released meanwhile).
    async fn claim_or_borrow(
        &self,
        pool: &str,
        handle: &Handle,
        cached: &Affinity,
    ) -> Result<Option<Pick>, Error> {
        let spec = self.pool(pool).await?;
        let blocks = self.refresh(pool).await?;
        let own_room = blocks
            .iter()
            .any(|(b, _)| b.host == self.host && b.free() > 0);
        if own_room || self.cached(pool).as_ref() != Some(cached) {
            return Ok(None);
        }
        if spec.granted {
            return Err(Error::NoGrantedRoom {
                pool: pool.to_owned(),
                host: self.host.clone(),
            });
        }
        let claimed: Vec<IpNet> = blocks.iter().map(|(b, _)| b.cidr).collect();
        let Some(block) = first_unclaimed(&spec, &claimed, &self.host) else {
            return self.borrow(pool, handle, blocks).await;
        };
        let (host, claim) = (&self.host, Effect::Claimed);
        Ok(Staged::take_next(
            pool,
            block,
            handle,
            host,
            Expect::Absent,
            claim,
        ))
    }

    async fn try_allocate_specific(
        &self,
        pool: &Pool,
        handle: &Handle,
        ip: IpAddr,
    ) -> Result<Option<Pick>, Error> {
        let cidr = pool.block_of(ip);
        let (mut block, expect) = match self.read_block(&block_key(&pool.name, cidr)).await? {
            Some((block, rev)) => (block, Expect::Revision(rev)),
            None if pool.granted => {
                let why = format!(
                    "not in a block of pool {:?} granted to this node",
                    pool.name
                );
                return Err(InvalidInput::new("ip", ip, why).into());
            }
            None => (Block::new(pool, cidr, &self.host), Expect::Absent),
        };
        let ordinal = block.ordinal(ip);
        match block.holder(ordinal) {
            Some(h) if h == handle => return Ok(Some((ip, None))),
            Some(h) => {
                return Err(Error::AddressTaken {
                    pool: pool.name.clone(),
                    ip,
                    holder: h.clone(),
                });
            }
            None => block.assign(ordinal, handle, &self.host),
        }
        let effect = if expect == Expect::Absent {
            Effect::Claimed
        } else if block.host != self.host {
            Effect::Borrowed
        } else {
            Effect::Known
        };
        let write = Staged {
            pool: pool.name.clone(),
            block,
            expect,
            effect,
        };
        Ok(Some((ip, Some(write))))
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

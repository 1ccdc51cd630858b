//! The per-pool cache of which blocks this host owns and which other hosts'
//! blocks it borrowed from: prefixes only, never contents (those are always
//! read from the store), so a stale entry costs a read, never a wrong answer.
//!
//! Beside it, a hint per pool: the owned block the last allocation used while
//! it still had room, where a fresh allocation looks first.
//!
//! It is kept in sync by the writes of this allocator (a claim adds an owned
//! block, a borrow a borrowed one) and replaced whole whenever an allocation
//! lists the pool's blocks anyway; [`Ipam::refresh_owned_blocks`] re-lists on
//! demand, for blocks claimed by another allocator of the same host.

use crate::Ipam;
use crate::block::Block;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::MutexGuard;

/// What this host holds in one pool, by block prefix, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Affinity {
    /// Blocks affine to this host.
    pub owned: Vec<IpNet>,
    /// Other hosts' blocks in which this host borrowed an address.
    pub borrowed: Vec<IpNet>,
}

impl Affinity {
    /// What `host` holds among `blocks`.
    pub(crate) fn of<'a>(host: &str, blocks: impl IntoIterator<Item = &'a Block>) -> Self {
        let mut a = Affinity::default();
        for b in blocks {
            if b.host == host {
                a.owned.push(b.cidr);
            } else if b.lends_to(host) {
                a.borrowed.push(b.cidr);
            }
        }
        a.owned.sort();
        a.borrowed.sort();
        a
    }
}

fn insert_sorted(list: &mut Vec<IpNet>, block: IpNet) {
    if let Err(at) = list.binary_search(&block) {
        list.insert(at, block);
    }
}

impl Ipam {
    fn cache(&self) -> MutexGuard<'_, HashMap<String, Affinity>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached affinity of this host in `pool`, if loaded.
    pub(crate) fn cached(&self, pool: &str) -> Option<Affinity> {
        self.cache().get(pool).cloned()
    }

    /// Replaces the cached affinity of this host in `pool`.
    pub(crate) fn set_cached(&self, pool: &str, affinity: Affinity) {
        self.cache().insert(pool.to_owned(), affinity);
    }

    /// Adds one block to the owned list (after claiming it).
    pub(crate) fn add_owned(&self, pool: &str, block: IpNet) {
        insert_sorted(
            &mut self.cache().entry(pool.to_owned()).or_default().owned,
            block,
        );
    }

    /// Adds one block to the borrowed-from list (after borrowing in it).
    pub(crate) fn add_borrowed(&self, pool: &str, block: IpNet) {
        insert_sorted(
            &mut self.cache().entry(pool.to_owned()).or_default().borrowed,
            block,
        );
    }

    /// Drops the cache for `pool`; the next allocation re-lists.
    pub(crate) fn forget_cached(&self, pool: &str) {
        self.cache().remove(pool);
        self.hints().remove(pool);
    }

    fn hints(&self) -> MutexGuard<'_, HashMap<String, IpNet>> {
        self.hints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The owned block of `pool` the last allocation used, while it had
    /// room: where a [fresh](crate::Want::fresh) allocation looks first.
    pub(crate) fn hint(&self, pool: &str) -> Option<IpNet> {
        self.hints().get(pool).copied()
    }

    /// Points the hint at `block` when it has `room`; forgets it when the
    /// hinted block has just filled up.
    pub(crate) fn set_hint(&self, pool: &str, block: IpNet, room: bool) {
        let mut hints = self.hints();
        if room {
            hints.insert(pool.to_owned(), block);
        } else if hints.get(pool) == Some(&block) {
            hints.remove(pool);
        }
    }
}

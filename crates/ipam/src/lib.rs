//! Pools, blocks and address allocation over a [`KvStore`](trellis_store::KvStore).
//!
//! # Model
//!
//! A **pool** is a prefix (IPv4 or IPv6) with a name. It is carved into
//! **blocks** of equal size (/26 or /122 by default, 64 addresses). A host
//! *claims* a block and then hands out its addresses to **handles** (a
//! container's interface). Claiming is what will let each host announce its
//! blocks as routes (routed mode, BGP) instead of one route per container.
//!
//! # Design decisions
//!
//! * **All state lives in the store; every write is a compare-and-swap.** An
//!   allocation reads the block record with its revision, changes it in
//!   memory, and writes it back with `put_if(Expect::Revision(rev))`. A block
//!   is claimed with `put_if(Expect::Absent)`. When another allocator wrote in
//!   between, the write fails with a conflict and the whole step is re-run
//!   from a fresh read, up to a bounded number of attempts
//!   ([`Error::Contention`] after that). So two allocators sharing a store —
//!   two processes, two hosts, or two tasks — can never hand out one address
//!   twice, with no lock and no leader.
//! * **The hot path is one read and one write.** Each [`Ipam`] caches which
//!   blocks of each pool its host owns or borrowed in (only the list of
//!   prefixes, never their contents): an allocation reads those blocks
//!   (usually one), and writes the one it allocates from. Only when they are
//!   all full does it list the pool's blocks (refreshing the cache) and claim
//!   a new one, or borrow.
//! * **An allocation commits with its caller's writes.**
//!   [`Ipam::allocate_with`] takes one address from each of several pools
//!   (a dual-stack container) and commits the block writes together with
//!   writes the caller builds from the chosen addresses (the agent's endpoint
//!   record) in one store transaction; [`Ipam::release_addresses_with`]
//!   is its mirror. So "address taken" and "endpoint recorded" are never
//!   apart, and an attach costs one durable commit instead of one per pool
//!   plus one.
//! * **A release reads only what the caller's record names.** Because the
//!   record and the addresses are committed together, the record says which
//!   addresses the handle holds; the block of each follows from its pool's
//!   prefix and block size. [`Ipam::release_addresses_with`] reads the pool
//!   list and those blocks (one or two), not every block of every pool as
//!   [`Ipam::release_with`] must, and frees an address only if the handle
//!   still holds it, so a stale record never frees another container's
//!   address. `release_with` (by handle alone, a full search) stays for
//!   callers without a record: leak sweeps, or a detach that finds no record
//!   and must still make sure nothing is left.
//! * **Next-fit inside a block.** Each block keeps a cursor; the search for a
//!   free address starts after the last one handed out and wraps around. A
//!   just-released address is therefore not reused before the rest of the
//!   block has been used, so a late packet or a stale ARP/neighbour entry for
//!   a dead container does not reach its successor straight away.
//! * **Borrowing across hosts** (routed mode, Calico without strict
//!   affinity): when a host's blocks are full and every block is claimed,
//!   `allocate` takes a free address from another host's block and the block
//!   records the borrower per address, so the owner never hands it out and
//!   each side knows where the /32 (/128) is routed ([`Ipam::borrowed`],
//!   [`Ipam::lent`], [`Allocation::borrower`]).
//!   [`Ipam::with_strict_affinity`] turns it off. [`Ipam::owned_blocks`]
//!   answers from the cache: the blocks a host announces and blackholes.
//! * **Reservations are a pool option.** [`Reserve::Bridge`] keeps the pool
//!   subnet's network, broadcast (IPv4) and gateway addresses out of use — the
//!   pool is one L2 subnet, so block boundaries inside it are not subnet
//!   boundaries and `.64` is an ordinary address. [`Reserve::None`] (routed
//!   mode) makes every address usable.
//! * **Blocks may be granted from outside** ([`PoolSpec::granted`]): in a
//!   cluster the controller decides which node holds a block, and the node
//!   adopts it ([`Ipam::adopt_block`]); allocation in such a pool never
//!   claims or borrows, and says so when the granted blocks are full
//!   ([`Error::NoGrantedRoom`]).
//! * **Compact records.** A block record is JSON holding two bitmaps (used,
//!   reserved; 64 bits for a /26) and the handle of each used ordinal.
//!
//! # Key layout
//!
//! ```text
//! ipam/pools                          all pools (one record: the overlap check
//!                                     and the insert are one CAS)
//! ipam/blocks/<pool>/<network>-<len>  one block: affinity host, cursor,
//!                                     bitmaps, handles, borrowers
//! ```
//!
//! # Limits (for now)
//!
//! * `release`, `release_with`, `addresses_of`, `usage` and `check_leaks`
//!   list block records (all pools, or one pool); they are not on the attach
//!   or detach hot path (`allocate_with` with [`Want::fresh`] and
//!   `release_addresses_with` are). A handle index can be added when
//!   clusters grow large.
//! * Blocks are never given up: a host keeps the blocks it claimed even when
//!   they are empty again (releasing a block to the pool is for the
//!   controller).
//! * Deleting a pool while allocators are working on it is not made safe:
//!   `delete_pool` refuses while any address is allocated, and then removes
//!   the pool before its blocks, so only a claim racing with the delete can
//!   leave an empty block record behind.

mod addr;
mod alloc;
mod block;
mod borrow;
mod cache;
mod error;
mod grant;
mod ipam;
mod pool;
mod release;
mod scan;

#[cfg(test)]
mod mock_tests;

pub use alloc::Want;
pub use error::Error;
pub use grant::BlockUse;
pub use ipam::{DEFAULT_MAX_ATTEMPTS, Ipam};
pub use pool::{DEFAULT_BLOCK_V4, DEFAULT_BLOCK_V6, Pool, PoolSpec, Reserve};
pub use scan::{Allocation, Usage};

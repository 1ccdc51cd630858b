//! The IPAM error type.

use std::net::IpAddr;
use trellis_types::{Handle, InvalidInput};

/// What can go wrong allocating addresses. Messages are lowercase and name the
/// pool, the address or the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input (a CIDR with host bits, overlapping pools, a gateway outside
    /// the pool, …); nothing was changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No pool of that name.
    #[error("pool {pool:?} not found")]
    PoolNotFound {
        /// The pool asked for.
        pool: String,
    },
    /// A pool of that name exists already.
    #[error("pool {pool:?} already exists")]
    PoolExists {
        /// The pool's name.
        pool: String,
    },
    /// The pool still has allocated addresses, so it cannot be deleted.
    #[error("pool {pool:?} still holds {used} allocated addresses")]
    PoolInUse {
        /// The pool's name.
        pool: String,
        /// How many addresses are allocated.
        used: u128,
    },
    /// No address left for this host in the pool: every block is claimed
    /// and full (or, with strict affinity, this host's blocks are full and
    /// none is left to claim).
    #[error(
        "pool {pool:?} is exhausted: no free address for host {host:?} in its blocks, \
         in an unclaimed block or to borrow"
    )]
    Exhausted {
        /// The pool's name.
        pool: String,
        /// The host that asked.
        host: String,
    },
    /// A pool whose blocks are granted from outside has no free address in
    /// the blocks granted to this host (more must be granted first).
    #[error(
        "pool {pool:?}: no free address in the blocks granted to host {host:?} \
         (a block must be claimed from the controller)"
    )]
    NoGrantedRoom {
        /// The pool's name.
        pool: String,
        /// The host that asked.
        host: String,
    },
    /// A specific address was asked for that another handle holds.
    #[error("address {ip} in pool {pool:?} is already allocated to {holder}")]
    AddressTaken {
        /// The pool's name.
        pool: String,
        /// The address asked for.
        ip: IpAddr,
        /// Who holds it.
        holder: Handle,
    },
    /// Concurrent writers kept winning the compare-and-swap.
    #[error("pool {pool:?}: gave up after {attempts} conflicting concurrent updates")]
    Contention {
        /// The pool (or `pools` for the pool list itself).
        pool: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A stored record could not be decoded.
    #[error("ipam record {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The store key of the record.
        key: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// A write the caller added to an allocation or release
    /// ([`Ipam::allocate_with`](crate::Ipam::allocate_with)) found its key in
    /// another state than it expected; nothing was written.
    #[error("a write committed with the allocation failed: {0}")]
    Precondition(#[source] trellis_store::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] trellis_store::Error),
}

//! The controller's error type, classified for the gRPC edge.

pub use trellis_types::ErrorClass;
use trellis_types::InvalidInput;

/// What can go wrong on the controller. Messages are lowercase and name the
/// pool, node, block or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Something named does not exist (`what` says what: `pool "p"`).
    #[error("{0} not found")]
    NotFound(String),
    /// Something to create exists already, or overlaps what exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// No free block in a pool, or a node's cap reached.
    #[error("{0}")]
    Exhausted(String),
    /// Not allowed in the state things are in (a pool with blocks held, a
    /// node draining, a block held by another node).
    #[error("{0}")]
    Precondition(String),
    /// A watch asked for a revision the store no longer holds.
    #[error("revision {0} is compacted away: watch from 0 for a fresh snapshot")]
    Compacted(u64),
    /// A watch was cut off: it fell too far behind the others, or the
    /// controller's watch of the store ended. The watcher watches again
    /// from the revision after the last one it saw.
    #[error("watch ended: {0}; watch again from the revision after the last one seen")]
    WatchEnded(String),
    /// Concurrent writers kept winning the compare-and-swap.
    #[error("{what}: gave up after {attempts} conflicting concurrent updates; retry")]
    Contention {
        /// What was being updated.
        what: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A stored record could not be decoded.
    #[error("controller record {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The store key.
        key: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] trellis_store::Error),
}

impl Error {
    /// The class the edge maps onto a status code.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Invalid(_) => ErrorClass::InvalidArgument,
            Error::NotFound(_) => ErrorClass::NotFound,
            Error::AlreadyExists(_) => ErrorClass::AlreadyExists,
            Error::Exhausted(_) => ErrorClass::ResourceExhausted,
            Error::Precondition(_) => ErrorClass::FailedPrecondition,
            Error::Compacted(_) => ErrorClass::OutOfRange,
            Error::Contention { .. } | Error::WatchEnded(_) => ErrorClass::Unavailable,
            Error::Store(trellis_store::Error::Compacted { .. }) => ErrorClass::OutOfRange,
            // The store was out of reach: the caller retries (every
            // operation is idempotent, claims through `claim_block`'s check).
            Error::Store(trellis_store::Error::Indeterminate { .. }) => ErrorClass::Unavailable,
            Error::Corrupt { .. } | Error::Store(_) => ErrorClass::Internal,
        }
    }
}

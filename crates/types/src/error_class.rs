//! The class of an error, shared by every core crate (the agent, the
//! controller) so that one edge mapping serves them all.

/// The class of an error, as a gRPC edge or a CLI reports it. The cores never
/// import tonic; the edge maps these one-to-one onto status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is malformed (`INVALID_ARGUMENT`).
    InvalidArgument,
    /// Something named does not exist (`NOT_FOUND`).
    NotFound,
    /// Something to create exists already, or overlaps what exists
    /// (`ALREADY_EXISTS`).
    AlreadyExists,
    /// A pool is full, or a node's cap reached (`RESOURCE_EXHAUSTED`).
    ResourceExhausted,
    /// The system is not in a state that allows this (`FAILED_PRECONDITION`).
    FailedPrecondition,
    /// A watch revision compacted away (`OUT_OF_RANGE`).
    OutOfRange,
    /// Contention that a retry may resolve (`UNAVAILABLE`).
    Unavailable,
    /// The kernel or the store failed (`INTERNAL`).
    Internal,
}

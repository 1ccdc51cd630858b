//! Errors of trellis-route.

use trellis_netlink::{KernelError, NetnsError};
use trellis_types::InvalidInput;

/// Everything that can go wrong in trellis-route.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Bad input, with the field named (`dst` with host bits set, a `via` of
    /// the other address family). Nothing was changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A route or neighbour names a device that does not exist in its netns.
    #[error("device {dev:?} does not exist in {ns}")]
    NoSuchDevice {
        /// The device name.
        dev: String,
        /// The namespace looked in.
        ns: String,
    },
    /// The namespace could not be opened or entered, or the work in it (a
    /// `/proc/sys` write) failed; a bad `netns` is [`NetnsError::Invalid`]
    /// naming the field.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The kernel refused a request.
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

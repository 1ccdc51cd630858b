//! Errors of trellis-netlink: what the kernel refused, and what failed on
//! this side of the socket.

use nix::errno::Errno;
use std::io;
use trellis_types::InvalidInput;

/// A netlink request the kernel refused (or that never got an answer).
///
/// Carries the operation (`"create veth"`) and what it was applied to
/// (`"tr0123456789abc"`) so that a log line alone says what failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {subject}: {source}")]
pub struct KernelError {
    /// What trellis asked for, lowercase (`"add address"`).
    pub op: &'static str,
    /// What it was asked for: an interface, an address, a route.
    pub subject: String,
    /// The kernel's answer (an errno) or the socket failure.
    #[source]
    pub source: io::Error,
}

impl KernelError {
    /// The errno the kernel answered with, if the failure was a kernel answer.
    pub fn errno(&self) -> Option<Errno> {
        self.source.raw_os_error().map(Errno::from_raw)
    }

    /// Whether the kernel answered with `errno`. Callers classify answers
    /// with it: `ENODEV` (no such link), `EEXIST` (name taken), `EBUSY`
    /// (a dump already under way) are not failures everywhere.
    pub fn is(&self, errno: Errno) -> bool {
        self.errno() == Some(errno)
    }
}

/// A namespace could not be opened or entered, or the work done in one
/// (opening its socket, writing its sysctls) failed. Never a kernel answer
/// to a request: that is a [`KernelError`].
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Bad input, with the field named: `netns` for a path that is not a
    /// network namespace, `sysctl` for a key that is not one. Nothing was
    /// changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A local I/O failure: a thread, a socket, a `/proc/sys` write.
    #[error("{op} {subject}: {source}")]
    Io {
        /// What trellis was doing (`"open netlink socket in"`).
        op: &'static str,
        /// What it was doing it to (`"netns /run/netns/c1"`).
        subject: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

impl NetnsError {
    /// The errno behind this error, if the failure carries one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetnsError::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            NetnsError::Invalid(_) => None,
        }
    }
}

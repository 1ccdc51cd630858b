//! Errors of trellis-link.

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

    /// Whether the kernel answered with `errno`.
    pub fn is(&self, errno: Errno) -> bool {
        self.errno() == Some(errno)
    }
}

/// How many ports a Linux bridge takes (`BR_MAX_PORTS` is 1024, port 0 is
/// never used).
pub const BRIDGE_MAX_PORTS: usize = 1023;

/// Everything that can go wrong in trellis-link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Bad input, with the field named (`netns` for a path that is not a
    /// network namespace). Nothing was changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// An interface of that name already exists where trellis wanted to create one.
    #[error("interface {name:?} already exists")]
    AlreadyExists {
        /// The name that is taken.
        name: String,
    },
    /// `ensure_bridge` found an interface of that name that is not a bridge.
    #[error("interface {name:?} exists but is {kind}, not a bridge")]
    NotABridge {
        /// The bridge name asked for.
        name: String,
        /// What the existing interface is (`"veth"`, `"a device without a kind"`).
        kind: String,
    },
    /// The bridge has no free port: a Linux bridge takes at most
    /// [`BRIDGE_MAX_PORTS`] ports (the kernel answers `EXFULL`).
    #[error(
        "bridge {bridge:?} is full: a Linux bridge takes at most {max} ports \
         (spread the containers over more networks)",
        max = BRIDGE_MAX_PORTS
    )]
    BridgeFull {
        /// The bridge asked for.
        bridge: String,
    },
    /// An interface that had to exist does not.
    #[error("interface {name:?} does not exist")]
    NotFound {
        /// The interface name or index.
        name: String,
    },
    /// The kernel refused a request.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A local I/O failure: a sysctl write, a thread, a socket.
    #[error("{op} {subject}: {source}")]
    Io {
        /// What trellis was doing.
        op: &'static str,
        /// What it was doing it to.
        subject: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

impl LinkError {
    /// The errno behind this error, if the kernel answered with one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            LinkError::Kernel(k) => k.errno(),
            LinkError::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }
}

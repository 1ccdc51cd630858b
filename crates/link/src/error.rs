//! Errors of trellis-link.

use nix::errno::Errno;
use std::io;
use trellis_netlink::{KernelError, NetnsError};
use trellis_types::InvalidInput;

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

/// A namespace that could not be opened or entered, or work in it that
/// failed, is the same [`LinkError`] it always was: bad input naming the
/// field, or I/O naming what trellis was doing.
impl From<NetnsError> for LinkError {
    fn from(e: NetnsError) -> Self {
        match e {
            NetnsError::Invalid(e) => LinkError::Invalid(e),
            NetnsError::Io {
                op,
                subject,
                source,
            } => LinkError::Io {
                op,
                subject,
                source,
            },
        }
    }
}

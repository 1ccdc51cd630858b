//! The error type of trellis-nat.

use std::io;
use trellis_types::{InvalidInput, PortMapping, Protocol};

/// What can go wrong when changing trellis's NAT table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input was refused before anything was sent; nothing changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A host port is already published (or appears twice in one request);
    /// nothing of the request was applied.
    #[error("{protocol} host port {host_port} is already published{}", existing.map(|e| format!(" as {e}")).unwrap_or_default())]
    PortInUse {
        /// The protocol of the conflicting port.
        protocol: Protocol,
        /// The conflicting host port.
        host_port: u16,
        /// The mapping that holds it, when known.
        existing: Option<PortMapping>,
    },
    /// trellis's table (or one of its sets) does not exist: call `ensure_table`.
    #[error("the nftables table inet {0} does not exist (ensure_table was not called)")]
    NoTable(&'static str),
    /// The kernel refused a request.
    #[error("nftables refused {op}: {}{}", io::Error::from_raw_os_error(*errno), detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Kernel {
        /// What trellis was doing (`publish`, `ensure_table`, …).
        op: &'static str,
        /// The errno the kernel answered.
        errno: i32,
        /// The kernel's extended-ack text, if any.
        detail: Option<String>,
    },
    /// The netlink socket failed, or the network namespace could not be entered.
    #[error("{op}: {source}")]
    Io {
        /// What trellis was doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

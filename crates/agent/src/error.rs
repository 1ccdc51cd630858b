//! The agent's error type, and the status class each error belongs to.

pub use trellis_types::ErrorClass;
use trellis_types::{InvalidInput, Protocol};

/// What can go wrong in the agent. Every message names the thing at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No network of that name.
    #[error("network {0:?} not found")]
    NetworkNotFound(String),
    /// No endpoint is recorded for that container interface.
    #[error("endpoint {0} not found")]
    EndpointNotFound(String),
    /// A network of that name exists already, with other settings.
    #[error("network {0:?} already exists with different settings")]
    NetworkExists(String),
    /// The network still has endpoints.
    #[error("network {network:?} still has {endpoints} endpoints; detach them first")]
    NetworkInUse {
        /// The network.
        network: String,
        /// How many endpoints are attached.
        endpoints: usize,
    },
    /// The container interface is attached already, with other settings.
    #[error("endpoint {0} is already attached with different settings")]
    EndpointExists(String),
    /// An attach of that container interface is under way; retry when it
    /// has finished.
    #[error("endpoint {0}: an attach of it is under way; retry when it has finished")]
    Busy(String),
    /// A host port is published by another endpoint (or twice in one request).
    #[error(
        "host port {}{host_port}/{protocol} is already published",
        on_address(host_ip)
    )]
    PortInUse {
        /// TCP or UDP.
        protocol: Protocol,
        /// The host address it was asked on (`None`: every address).
        host_ip: Option<std::net::IpAddr>,
        /// The host port.
        host_port: u16,
    },
    /// A host port is owned by a socket on the host (a listener, or a bound
    /// UDP socket): publishing it would take its traffic.
    #[error(
        "host port {host_port}/{protocol} is in use on the host: a socket is bound to {local} \
         (publishing it would take that port's traffic from it)"
    )]
    PortListening {
        /// TCP or UDP.
        protocol: Protocol,
        /// The host port.
        host_port: u16,
        /// The address the host's socket is bound to.
        local: std::net::SocketAddr,
    },
    /// A value would take something the host uses (an address, a directly
    /// connected route, a route's gateway); nothing was changed.
    #[error("{field} {value:?} {conflict}")]
    HostConflict {
        /// The request's field (`subnet`).
        field: &'static str,
        /// Its value.
        value: String,
        /// What of the host's it conflicts with.
        conflict: String,
    },
    /// The kernel refused (`EINVAL`) an object made of the caller's values,
    /// which passed trellis's checks: the value is bad for this kernel.
    #[error("{field} {value:?}: the kernel refused it: {source}")]
    KernelRefused {
        /// The request's field.
        field: &'static str,
        /// Its value.
        value: String,
        /// The kernel's answer.
        #[source]
        source: Box<Error>,
    },
    /// Address management failed.
    #[error(transparent)]
    Ipam(#[from] trellis_ipam::Error),
    /// A link operation failed.
    #[error(transparent)]
    Link(#[from] trellis_link::LinkError),
    /// A route operation failed.
    #[error(transparent)]
    Route(#[from] trellis_route::RouteError),
    /// A NAT operation failed.
    #[error(transparent)]
    Nat(#[from] trellis_nat::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] trellis_store::Error),
    /// A stored record could not be read back.
    #[error("record {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The store key.
        key: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// The cluster membership could not do what was needed (controller out
    /// of reach, the node fenced, a cluster pool full).
    #[error(transparent)]
    Cluster(#[from] crate::membership::MembershipError),
    /// Teardown went on past failures; these are all of them.
    #[error("teardown of {what} left errors: {}", errors.join("; "))]
    Teardown {
        /// What was being torn down.
        what: String,
        /// Every failure, in order.
        errors: Vec<String>,
    },
}

/// `127.0.0.1:` / `[::1]:` before a port published on one address.
fn on_address(ip: &Option<std::net::IpAddr>) -> String {
    match ip {
        Some(std::net::IpAddr::V4(ip)) => format!("{ip}:"),
        Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]:"),
        None => String::new(),
    }
}

impl Error {
    /// The class of this error, for status codes and exit codes.
    pub fn class(&self) -> ErrorClass {
        use ErrorClass::*;
        match self {
            Error::Invalid(_) | Error::KernelRefused { .. } => InvalidArgument,
            Error::NetworkNotFound(_) | Error::EndpointNotFound(_) => NotFound,
            Error::NetworkExists(_)
            | Error::EndpointExists(_)
            | Error::PortInUse { .. }
            | Error::PortListening { .. } => AlreadyExists,
            Error::HostConflict { .. } => FailedPrecondition,
            Error::NetworkInUse { .. } => FailedPrecondition,
            Error::Busy(_) => Unavailable,
            Error::Store(e) | Error::Ipam(trellis_ipam::Error::Store(e))
                if e.io_kind().is_some() =>
            {
                store_io_class(e)
            }
            Error::Cluster(e) => e.class,
            Error::Ipam(e) => ipam_class(e),
            Error::Link(trellis_link::LinkError::Invalid(_)) => InvalidArgument,
            Error::Link(trellis_link::LinkError::BridgeFull { .. }) => ResourceExhausted,
            // A name the caller chose is taken where it was to be created
            // (`eth0` in a namespace that has one).
            Error::Link(trellis_link::LinkError::AlreadyExists { .. }) => AlreadyExists,
            Error::Route(trellis_route::RouteError::Invalid(_)) => InvalidArgument,
            Error::Nat(trellis_nat::Error::PortInUse { .. }) => AlreadyExists,
            Error::Nat(trellis_nat::Error::Invalid(_)) => InvalidArgument,
            _ => Internal,
        }
    }
}

/// The state file could not be written (or read). The call changed
/// nothing, and the store takes the file up again by itself once it can be
/// written, so the same call succeeds then: `Unavailable`, or
/// `ResourceExhausted` for a full disk ("the entire file system is out of
/// space" is the gRPC status codes' own example of it).
fn store_io_class(e: &trellis_store::Error) -> ErrorClass {
    match e.io_kind() {
        Some(std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) => {
            ErrorClass::ResourceExhausted
        }
        _ => ErrorClass::Unavailable,
    }
}

fn ipam_class(e: &trellis_ipam::Error) -> ErrorClass {
    use trellis_ipam::Error as E;
    match e {
        E::Invalid(_) => ErrorClass::InvalidArgument,
        E::PoolNotFound { .. } => ErrorClass::NotFound,
        E::PoolExists { .. } | E::AddressTaken { .. } => ErrorClass::AlreadyExists,
        E::PoolInUse { .. } => ErrorClass::FailedPrecondition,
        E::Exhausted { .. } | E::NoGrantedRoom { .. } => ErrorClass::ResourceExhausted,
        E::Contention { .. } => ErrorClass::Unavailable,
        _ => ErrorClass::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn io(kind: ErrorKind) -> trellis_store::Error {
        trellis_store::Error::Io {
            path: "/var/lib/trellis/trellis.redb".into(),
            key: "k".into(),
            error: kind.into(),
        }
    }

    #[test]
    fn a_state_file_that_cannot_be_written_is_unavailable_or_full() {
        let full = Error::Store(io(ErrorKind::StorageFull));
        assert_eq!(full.class(), ErrorClass::ResourceExhausted);
        let read_only = Error::Store(io(ErrorKind::ReadOnlyFilesystem));
        assert_eq!(read_only.class(), ErrorClass::Unavailable);
        // The same through IPAM, which writes most of an attach.
        let via_ipam = Error::Ipam(trellis_ipam::Error::Store(io(ErrorKind::StorageFull)));
        assert_eq!(via_ipam.class(), ErrorClass::ResourceExhausted);
        let corrupt = Error::Store(trellis_store::Error::Corrupt {
            path: "/x".into(),
            reason: "r".into(),
        });
        assert_eq!(corrupt.class(), ErrorClass::Internal);
    }
}

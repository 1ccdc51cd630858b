//! Read-only facts about the host that requests are checked against before
//! anything changes: which network namespaces are never a container's, the
//! host's addresses, and the ports its processes listen on.
//!
//! Namespaces are compared by identity (the nsfs device and inode an open
//! namespace file reports), never by path: `/proc/self/ns/net`,
//! `/proc/<pid>/ns/net` and a bind mount under `/run/netns` all reach the same
//! namespace under different names.
//!
//! Listening sockets are read from `/proc/thread-self/net/{tcp,tcp6,udp,udp6}`
//! as seen from inside the host namespace (a thread that entered it sees that
//! namespace's tables; `/proc/net` would show the process's). The parsing is
//! a pure function over the text, tested without a kernel.

use crate::error::LinkError;
use ipnet::IpNet;
use nix::errno::Errno;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use trellis_netlink::netns::open_netns;
use trellis_types::{InvalidInput, NetnsPath, Protocol};

/// The identity of a namespace: the nsfs device and inode of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    /// `st_dev` of the namespace file.
    pub dev: u64,
    /// `st_ino` of the namespace file (the `4026531840` of `net:[4026531840]`).
    pub ino: u64,
}

impl NetnsId {
    /// The identity of the namespace behind an open namespace file.
    pub fn of(fd: &OwnedFd) -> io::Result<Self> {
        let meta = File::from(fd.try_clone()?).metadata()?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The identity of the namespace at `path`, if it can be read.
    pub fn at(path: &str) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// Opens `path` as [`trellis_netlink::netns::open_netns`] does (an
/// [`InvalidInput`] naming `netns` if it is not a network namespace) and
/// returns the identity of the namespace behind it.
pub fn netns_identity(path: &NetnsPath) -> Result<NetnsId, LinkError> {
    let fd = open_netns(path)?;
    NetnsId::of(&fd).map_err(|e| {
        LinkError::Invalid(InvalidInput::new(
            "netns",
            path,
            format!("cannot stat: {e}"),
        ))
    })
}

impl fmt::Display for NetnsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}

/// A network namespace that must never be handed to trellis as a container's,
/// and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedNetns {
    /// Its identity.
    pub id: NetnsId,
    /// What it is, lowercase (`"the host network namespace trellis plumbs"`).
    pub what: &'static str,
}

/// The namespaces that are never a container's: the host trellis plumbs, the
/// namespace this process runs in, and init's (pid 1), which is the
/// machine's own whenever trellis runs in a namespace of its own. `host` is
/// `None` when the host is the process's namespace. Ones that cannot be read
/// (`/proc/1` without the privilege) are left out.
pub fn reserved_netns(host: Option<&OwnedFd>) -> Vec<ReservedNetns> {
    let candidates = [
        (
            host.map_or_else(|| NetnsId::at("/proc/self/ns/net"), NetnsId::of),
            "the host network namespace that trellis plumbs",
        ),
        (
            NetnsId::at("/proc/self/ns/net"),
            "the network namespace trellis itself runs in",
        ),
        (
            NetnsId::at("/proc/1/ns/net"),
            "the network namespace of init (pid 1)",
        ),
    ];
    let mut out: Vec<ReservedNetns> = Vec::new();
    for (id, what) in candidates {
        match id {
            Ok(id) if !out.iter().any(|r| r.id == id) => out.push(ReservedNetns { id, what }),
            Ok(_) => {}
            Err(e) => tracing::debug!(what, error = %e, "namespace identity not readable"),
        }
    }
    out
}

/// An address of the host, on the interface that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    /// The interface (`eth0`).
    pub dev: String,
    /// The address with its prefix length (`10.1.253.101/24`).
    pub addr: IpNet,
}

impl fmt::Display for HostAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.addr, self.dev)
    }
}

/// A socket on the host that owns a port: a TCP listener or a bound,
/// unconnected UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The address and port it is bound to (`0.0.0.0:22`).
    pub local: SocketAddr,
}

/// A port trellis is about to publish: look for a host socket holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantedPort {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The one host address it would be published on (`None`: every one).
    pub host_ip: Option<IpAddr>,
    /// The host port.
    pub port: u16,
}

/// The socket of the calling thread's namespace that holds `want`, if any,
/// found the way Docker's proxy finds it: a fresh socket with `SO_REUSEADDR`
/// bound to the port fails with `EADDRINUSE` exactly when a listener (or a
/// bound UDP socket) holds it; connections in `TIME_WAIT` or established do
/// not count. The probe never listens. A bind looks up one hash bucket,
/// where reading `/proc/net/tcp` walks every bucket of the kernel's
/// established hash (measured: 10.8 ms for tcp + 6.9 ms for tcp6 with
/// 262144 buckets, on every attach that publishes a port). Reports the
/// address the failing bind asked for: `0.0.0.0:22` for a port on every
/// address (that bind also meets dual-stack `[::]` sockets), then `[::]:22`
/// v6-only for IPv6-only ones.
pub(crate) fn probe(want: WantedPort) -> std::io::Result<Option<Listener>> {
    let port = want.port;
    let asked: Vec<SocketAddr> = match want.host_ip {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => vec![
            (Ipv4Addr::UNSPECIFIED, port).into(),
            (Ipv6Addr::UNSPECIFIED, port).into(),
        ],
    };
    for local in asked {
        match bind_probe(want.protocol, local) {
            Ok(()) => {}
            Err(Errno::EADDRINUSE) => {
                return Ok(Some(Listener {
                    protocol: want.protocol,
                    local,
                }));
            }
            // No IPv6 here; an address that is not the host's holds nothing.
            Err(Errno::EAFNOSUPPORT | Errno::EADDRNOTAVAIL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

fn bind_probe(protocol: Protocol, local: SocketAddr) -> nix::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};
    use nix::sys::socket::{bind, setsockopt, socket};
    use std::os::fd::AsRawFd;
    let family = match local {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let kind = match protocol {
        Protocol::Tcp => SockType::Stream,
        Protocol::Udp => SockType::Datagram,
    };
    let fd = socket(family, kind, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if local.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(local))
}
